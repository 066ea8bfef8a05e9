/* query_kernels.c: GET /api/kernels, the kernel-version report (see
 * query_kernels.h). One parameterized statement sums the rollups of
 * sql/006_rollups.sql per cohort and kind and returns them as JSON; the
 * loop parses that, computes the intervals, comparisons and quantiles
 * (rates.h; PostgreSQL has no lgamma) and answers JSON, or HTML through
 * report_html.h.
 */
#include "query_kernels.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "log.h"
#include "query.h"
#include "rates.h"
#include "report_html.h"
#include "timeutil.h"

#define SINCE_DEFAULT (7 * 86400 * SH_NS_PER_SEC)
#define SINCE_MAX (400 * 86400 * SH_NS_PER_SEC)
#define LABEL_MAX 128
#define BASELINE_MAX 256
#define MAX_COHORTS 200 /* by host-hours; a report of more is unreadable */
#define MAX_CAUSES 5

/* TS turns a text parameter holding Unix ns into a timestamptz; NS turns
 * a timestamptz into Unix ns (as in query.c). */
#define TS(p) "(timestamptz 'epoch' + (" p "::bigint / 1000) * interval '1 microsecond')"
#define NS(c) "(extract(epoch FROM " c ") * 1000000000)::bigint"

/* KIND_SUMS sums the per-kind rollup columns of one group. */
#define KIND_SUMS                                                                           \
	" sum(events)::bigint AS events, sum(hist_count) AS hc, sum(hist_sum_ns) AS hs,"     \
	" json_build_array(sum(b00), sum(b01), sum(b02), sum(b03), sum(b04), sum(b05),"     \
	" sum(b06), sum(b07), sum(b08), sum(b09), sum(b10), sum(b11), sum(b12), sum(b13),"   \
	" sum(b14), sum(b15), sum(b16), sum(b17), sum(b18), sum(b19), sum(b20), sum(b21),"   \
	" sum(b22), sum(b23), sum(b24), sum(b25), sum(b26), sum(b27), sum(b28), sum(b29),"   \
	" sum(b30), sum(b31)) AS buckets"

/* The window's bounds, written out where they are used (not as a CTE) so
 * the planner sees their values: with a CTE it guesses a third of the
 * rows and picks sorts that spill to disk. */
#define T0 TS("$1")
#define T1 TS("$2")
#define H0 "date_trunc('hour', " T0 ", 'UTC')"
#define D0 "(" T0 " AT TIME ZONE 'UTC')::date"
#define D1 "(" T1 " AT TIME ZONE 'UTC')::date"

/* INCIDENT_HOSTS(cohort) lists every host of every incident overlapping the
 * window with its events and the rank-1 suspect, the cohort of the host
 * given by the expression. */
#define INCIDENT_HOSTS(cohort)                                                              \
	" inc AS (SELECT ih.incident_id, ih.host_id, ih.events, s.feature, " cohort " AS cohort" \
	"  FROM incidents i"                                                                \
	"  JOIN incident_suspects s ON s.incident_id = i.incident_id AND s.rank = 1"        \
	"  JOIN incident_hosts ih ON ih.incident_id = i.incident_id"                        \
	"  WHERE i.last_ts >= " T0 " AND i.first_ts <= " T1 ")"

/* CAUSES: the top MAX_CAUSES rank-1 suspects of each cohort by events. */
#define CAUSES                                                                              \
	" 'causes', (SELECT coalesce(json_agg(json_build_object('cohort', t.cohort,"          \
	"  'feature', t.feature, 'incidents', t.incidents, 'hosts', t.hosts, 'events', t.events)" \
	"  ORDER BY t.cohort, t.rn), '[]'::json) FROM"                                       \
	"  (SELECT g.*, row_number() OVER (PARTITION BY g.cohort"                            \
	"    ORDER BY g.events DESC, g.incidents DESC, g.feature) AS rn"                      \
	"   FROM (SELECT cohort, feature, count(DISTINCT incident_id) AS incidents,"          \
	"    count(DISTINCT host_id) AS hosts, sum(events)::bigint AS events"                 \
	"    FROM inc GROUP BY 1, 2) g) t WHERE t.rn <= 5)"

/* By kernel: $1 from, $2 to (Unix ns). Coverage, events and histograms
 * from the kernel-hour rollups (the window starts at the hour of $1);
 * hosts: those with a boot of the release that reported during the
 * window (boots.first_seen/last_seen: one row per boot, far cheaper than
 * the distinct hosts of a month of host-days). */
static const char kernel_sql[] =
	"WITH cov AS (SELECT kernel_release AS cohort, sum(covered_s) AS covered_s,"
	"  sum(summaries)::bigint AS summaries"
	"  FROM rollup_kernel_hour WHERE hour >= " H0 " AND hour <= " T1 " GROUP BY 1),"
	" hc AS (SELECT kernel_release AS cohort, count(DISTINCT host_id) AS hosts FROM boots"
	"  WHERE last_seen >= " T0 " AND first_seen <= " T1 " GROUP BY 1),"
	" kinds AS (SELECT kernel_release AS cohort, kind," KIND_SUMS
	"  FROM rollup_kernel_hour_kind WHERE hour >= " H0 " AND hour <= " T1 " GROUP BY 1, 2),"
	INCIDENT_HOSTS("coalesce((SELECT d.kernel_release FROM rollup_host_day d"
		       " WHERE d.day = (ih.first_ts AT TIME ZONE 'UTC')::date AND d.host_id = ih.host_id"
		       " ORDER BY d.covered_s DESC LIMIT 1),"
		       " (SELECT b.kernel_release FROM boots b WHERE b.host_id = ih.host_id"
		       " ORDER BY b.last_seen DESC LIMIT 1))")
	" SELECT json_build_object('from_ns', " NS(H0) ", 'to_ns', $2::bigint,"
	" 'granularity', 'hour',"
	" 'cohorts', (SELECT coalesce(json_agg(json_build_object('cohort', coalesce(c.cohort, h.cohort),"
	"  'hosts', coalesce(h.hosts, 0), 'covered_s', coalesce(c.covered_s, 0),"
	"  'summaries', coalesce(c.summaries, 0))), '[]'::json)"
	"  FROM cov c FULL JOIN hc h ON h.cohort = c.cohort),"
	" 'kinds', (SELECT coalesce(json_agg(k), '[]'::json) FROM kinds k),"
	CAUSES ")::text";

/* By label: $1 from, $2 to (Unix ns), $3 the label key. Coverage, events
 * and histograms from the label-set day rollups (the window starts at the
 * UTC day of $1), each label set in the cohort of its value for the key
 * (NULL: not set): a few thousand rows a day, not one per host. Hosts as
 * by kernel, from boots, with the hosts' current labels. */
static const char label_sql[] =
	"WITH cov AS (SELECT s.labels->>$3::text AS cohort, sum(d.covered_s) AS covered_s,"
	"  sum(d.summaries)::bigint AS summaries FROM rollup_labels_day d"
	"  JOIN rollup_labelsets s USING (labels_id)"
	"  WHERE d.day >= " D0 " AND d.day <= " D1 " GROUP BY 1),"
	" hc AS (SELECT h.labels->>$3::text AS cohort, count(DISTINCT b.host_id) AS hosts"
	"  FROM boots b JOIN hosts h USING (host_id)"
	"  WHERE b.last_seen >= " T0 " AND b.first_seen <= " T1 " GROUP BY 1),"
	" kinds AS (SELECT s.labels->>$3::text AS cohort, k.kind," KIND_SUMS
	"  FROM rollup_labels_day_kind k JOIN rollup_labelsets s USING (labels_id)"
	"  WHERE k.day >= " D0 " AND k.day <= " D1 " GROUP BY 1, 2),"
	INCIDENT_HOSTS("(SELECT h.labels->>$3::text FROM hosts h WHERE h.host_id = ih.host_id)")
	" SELECT json_build_object('from_ns', " NS("(" D0 "::timestamp AT TIME ZONE 'UTC')") ","
	" 'to_ns', $2::bigint, 'granularity', 'day',"
	" 'cohorts', (SELECT coalesce(json_agg(json_build_object('cohort', coalesce(c.cohort, h.cohort),"
	"  'hosts', coalesce(h.hosts, 0), 'covered_s', coalesce(c.covered_s, 0),"
	"  'summaries', coalesce(c.summaries, 0))), '[]'::json)"
	"  FROM cov c FULL JOIN hc h ON coalesce(h.cohort, '') = coalesce(c.cohort, '')"
	"  AND (h.cohort IS NULL) = (c.cohort IS NULL)),"
	" 'kinds', (SELECT coalesce(json_agg(k), '[]'::json) FROM kinds k),"
	CAUSES ")::text";

/* ---- building the report --------------------------------------------- */

/* struct cohort is one cohort while the report is built. */
struct cohort {
	char *key;	    /* "=<name>", or "-" when the label is not set */
	const char *name;   /* borrowed from raw; NULL: the label is not set */
	double covered_s;
	int64_t hosts, summaries;
	json_t *kinds;	    /* kind -> raw kind row (references) */
	json_t *causes;	    /* [{"feature", ...}] */
	bool baseline;
	UT_hash_handle hh;
};

/* struct build is the state of one agg_kernels_build. */
struct build {
	struct cohort *by_key;
	struct cohort **list;
	size_t n;
	json_t *rate_kinds, *latency_kinds; /* sets: kind -> true */
	int status;
	char *err;
	size_t errlen;
};

static void fail(struct build *b, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct build *b, int status, const char *fmt, ...)
{
	va_list ap;

	if (b->status)
		return;
	b->status = status;
	va_start(ap, fmt);
	vsnprintf(b->err, b->errlen, fmt, ap);
	va_end(ap);
}

/* num is a JSON number, or null when v is not finite. */
static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static double jdouble(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static int64_t jint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	return json_is_real(v) ? (int64_t)json_real_value(v) : 0;
}

/* cohort_get finds the cohort named by the JSON value v (a string, or
 * null for "label not set"), creating it when create is true. */
static struct cohort *cohort_get(struct build *b, json_t *v, bool create)
{
	const char *name = json_string_value(v);
	struct cohort *c;
	char *key;
	size_t len;

	if (!name && !json_is_null(v))
		return NULL;
	len = name ? strlen(name) + 2 : 2;
	key = malloc(len);
	if (!key) {
		fail(b, 500, "out of memory");
		return NULL;
	}
	snprintf(key, len, "%s%s", name ? "=" : "-", name ? name : "");
	HASH_FIND_STR(b->by_key, key, c);
	if (c || !create) {
		free(key);
		return c;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->kinds = json_object()) || !(c->causes = json_array())) {
		if (c)
			json_decref(c->kinds);
		free(c);
		free(key);
		fail(b, 500, "out of memory");
		return NULL;
	}
	c->key = key;
	c->name = name;
	HASH_ADD_KEYPTR(hh, b->by_key, c->key, strlen(c->key), c);
	return c;
}

static void build_fini(struct build *b)
{
	struct cohort *c, *tmp;

	HASH_ITER(hh, b->by_key, c, tmp)
	{
		HASH_DEL(b->by_key, c);
		json_decref(c->kinds);
		json_decref(c->causes);
		free(c->key);
		free(c);
	}
	free(b->list);
	json_decref(b->rate_kinds);
	json_decref(b->latency_kinds);
}

/* load files raw's rows under their cohorts. */
static void load(struct build *b, json_t *raw)
{
	json_t *row;
	size_t i;

	json_array_foreach (json_object_get(raw, "cohorts"), i, row) {
		struct cohort *c = cohort_get(b, json_object_get(row, "cohort"), true);

		if (!c)
			continue;
		c->covered_s += jdouble(row, "covered_s");
		c->hosts += jint(row, "hosts");
		c->summaries += jint(row, "summaries");
	}
	json_array_foreach (json_object_get(raw, "kinds"), i, row) {
		struct cohort *c = cohort_get(b, json_object_get(row, "cohort"), true);
		const char *kind = json_string_value(json_object_get(row, "kind"));

		if (!c || !kind)
			continue;
		json_object_set(c->kinds, kind, row);
		if (jint(row, "events") > 0)
			json_object_set_new(b->rate_kinds, kind, json_true());
		if (jdouble(row, "hc") > 0)
			json_object_set_new(b->latency_kinds, kind, json_true());
	}
	json_array_foreach (json_object_get(raw, "causes"), i, row) {
		struct cohort *c = cohort_get(b, json_object_get(row, "cohort"), false);

		if (!c || json_array_size(c->causes) >= MAX_CAUSES)
			continue;
		json_array_append_new(c->causes,
				      json_pack("{sOsIsIsI}", "feature", json_object_get(row, "feature"),
						"incidents", (json_int_t)jint(row, "incidents"), "hosts",
						(json_int_t)jint(row, "hosts"), "events",
						(json_int_t)jint(row, "events")));
	}
}

static int by_host_hours(const void *x, const void *y)
{
	const struct cohort *a = *(struct cohort *const *)x, *b = *(struct cohort *const *)y;

	if (a->covered_s != b->covered_s)
		return a->covered_s > b->covered_s ? -1 : 1;
	if (!a->name || !b->name)
		return !a->name - !b->name;
	return strverscmp(a->name, b->name);
}

/* by_display: the baseline, then names in version order, unset last. */
static int by_display(const void *x, const void *y)
{
	const struct cohort *a = *(struct cohort *const *)x, *b = *(struct cohort *const *)y;

	if (a->baseline != b->baseline)
		return a->baseline ? -1 : 1;
	if (!a->name || !b->name)
		return !a->name - !b->name;
	return strverscmp(a->name, b->name);
}

/* sorted_keys returns the keys of a set object as a sorted array. */
static json_t *sorted_keys(json_t *set)
{
	size_t n = json_object_size(set), i = 0;
	const char **keys = calloc(n ? n : 1, sizeof(*keys));
	json_t *arr = json_array(), *v;
	const char *k;

	if (!keys || !arr) {
		free(keys);
		json_decref(arr);
		return NULL;
	}
	json_object_foreach (set, k, v)
		keys[i++] = k;
	for (size_t a = 1; a < n; a++) /* a handful of kinds: insertion sort */
		for (size_t c = a; c > 0 && strcmp(keys[c - 1], keys[c]) > 0; c--) {
			const char *t = keys[c];

			keys[c] = keys[c - 1];
			keys[c - 1] = t;
		}
	for (i = 0; i < n; i++)
		json_array_append_new(arr, json_string(keys[i]));
	free(keys);
	return arr;
}

/* choose lists the cohorts (at most MAX_COHORTS by host-hours, and always
 * the baseline) and picks the baseline. Returns it or NULL (failed). */
static struct cohort *choose(struct build *b, const struct agg_kernels_query *q, size_t *omitted)
{
	struct cohort *c, *tmp, *base = NULL;
	size_t n = HASH_COUNT(b->by_key), k = 0;

	b->list = calloc(n ? n : 1, sizeof(*b->list));
	if (!b->list) {
		fail(b, 500, "out of memory");
		return NULL;
	}
	HASH_ITER(hh, b->by_key, c, tmp)
	{
		b->list[k++] = c;
		if (q->baseline && c->name && strcmp(c->name, q->baseline) == 0)
			base = c;
	}
	qsort(b->list, n, sizeof(*b->list), by_host_hours);
	if (q->baseline && !base) {
		fail(b, 404, "no cohort \"%.200s\" in this window", q->baseline);
		return NULL;
	}
	if (!base && n > 0)
		base = b->list[0];
	b->n = n < MAX_COHORTS ? n : MAX_COHORTS;
	if (base && n > MAX_COHORTS) {
		bool in = false;

		for (size_t i = 0; i < b->n; i++)
			in = in || b->list[i] == base;
		if (!in)
			b->list[b->n - 1] = base;
	}
	*omitted = n - b->n;
	if (base)
		base->baseline = true;
	qsort(b->list, b->n, sizeof(*b->list), by_display);
	return base;
}

/* rate_json is {"events", "rate", "ci_low", "ci_high"} of k over hours. */
static json_t *rate_json(int64_t k, double hours)
{
	struct agg_rate_ci ci;

	if (agg_rate_poisson_ci(k, hours, AGG_KERNELS_CONFIDENCE, &ci) != 0)
		ci.rate = ci.low = ci.high = NAN;
	return json_pack("{sIsososo}", "events", (json_int_t)k, "rate", num(ci.rate), "ci_low",
			 num(ci.low), "ci_high", num(ci.high));
}

/* latency_json is the merged histogram of one cohort and kind. */
static json_t *latency_json(const char *kind, json_t *row)
{
	double h[AGG_RATE_HIST_SLOTS] = { 0 }, count = jdouble(row, "hc");
	json_t *buckets = json_array(), *v;
	size_t i;

	json_array_foreach (json_object_get(row, "buckets"), i, v) {
		if (i < AGG_RATE_HIST_SLOTS && json_is_number(v))
			h[i] = json_number_value(v);
	}
	for (i = 0; i < AGG_RATE_HIST_SLOTS; i++)
		json_array_append_new(buckets, json_real(h[i]));
	return json_pack("{sssososososo}", "kind", kind, "count", json_real(count), "mean_us",
			 num(count > 0 ? jdouble(row, "hs") / count / 1000 : NAN), "p50_us",
			 num(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.5)), "p99_us",
			 num(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.99)), "buckets",
			 buckets);
}

/* report_cohorts returns the cohorts of the report with their rates,
 * comparisons with the baseline (Holm-corrected across all of them, the
 * significant ones also appended to significant), latencies and causes. */
static json_t *report_cohorts(struct build *b, struct cohort *base, json_t *kinds,
			      json_t *significant, size_t *ncmp)
{
	json_t *out = json_array(), **vs = NULL;
	double *p = NULL, *adj = NULL;
	size_t nk = json_array_size(kinds), m = 0, cap = b->n * (nk ? nk : 1);
	double base_hours = base ? base->covered_s / 3600 : 0;

	vs = calloc(cap ? cap : 1, sizeof(*vs));
	p = calloc(cap ? cap : 1, sizeof(*p));
	adj = calloc(cap ? cap : 1, sizeof(*adj));
	if (!out || !vs || !p || !adj) {
		fail(b, 500, "out of memory");
		goto cleanup;
	}
	for (size_t i = 0; i < b->n; i++) {
		struct cohort *c = b->list[i];
		double hours = c->covered_s / 3600;
		json_t *rates = json_array(), *lat = json_array(), *kv, *acc;
		const char *kind;
		size_t j;

		json_array_foreach (kinds, j, kv) {
			int64_t k = jint(json_object_get(c->kinds, json_string_value(kv)), "events");
			int64_t k0 = base ? jint(json_object_get(base->kinds, json_string_value(kv)), "events") : 0;
			json_t *r = rate_json(k, hours);
			struct agg_rate_cmp cmp;

			json_object_set(r, "kind", kv);
			if (c == base || !base || k + k0 == 0 ||
			    agg_rate_compare(k, hours, k0, base_hours, AGG_KERNELS_CONFIDENCE, &cmp) != 0) {
				/* nothing to compare: the baseline itself, no events, no time */
				json_object_set_new(r, "vs_baseline", json_null());
			} else {
				json_t *o = json_pack("{sosososo}", "ratio", num(cmp.ratio), "ratio_low",
						      num(cmp.low), "ratio_high", num(cmp.high),
						      "p_value", num(cmp.p_value));

				json_object_set_new(r, "vs_baseline", o);
				if (o && m < cap) {
					vs[m] = o;
					p[m++] = cmp.p_value;
				}
			}
			json_array_append_new(rates, r);
		}
		acc = json_object_get(c->kinds, "accounting");
		json_object_foreach (c->kinds, kind, kv) {
			if (json_object_get(b->latency_kinds, kind) && jdouble(kv, "hc") > 0)
				json_array_append_new(lat, latency_json(kind, kv));
		}
		json_array_append_new(
			out, json_pack("{sosIsosIsbsosososo}", "cohort",
				       c->name ? json_string(c->name) : json_null(), "hosts",
				       (json_int_t)c->hosts, "host_hours", json_real(hours), "summaries",
				       (json_int_t)c->summaries, "is_baseline", c->baseline, "rates",
				       rates, "accounting",
				       acc || json_object_get(b->rate_kinds, "accounting")
					       ? rate_json(jint(acc, "events"), hours)
					       : json_null(),
				       "latency", lat, "causes", json_incref(c->causes)));
	}
	if (agg_rate_holm(p, m, adj) != 0) {
		fail(b, 500, "out of memory");
		goto cleanup;
	}
	for (size_t i = 0; i < m; i++) {
		double ratio = jdouble(vs[i], "ratio");
		bool sig = adj[i] < AGG_KERNELS_ALPHA;
		const char *dir = json_is_null(json_object_get(vs[i], "ratio")) ||
						  ratio > 1 ? "worse" : "better";

		json_object_set_new(vs[i], "p_holm", num(adj[i]));
		json_object_set_new(vs[i], "significant", json_boolean(sig));
		json_object_set_new(vs[i], "direction", json_string(dir));
	}
	/* the significant differences, cohort by cohort */
	for (size_t i = 0; i < json_array_size(out); i++) {
		json_t *co = json_array_get(out, i), *r;
		size_t j;

		json_array_foreach (json_object_get(co, "rates"), j, r) {
			json_t *v = json_object_get(r, "vs_baseline");

			if (json_is_true(json_object_get(v, "significant")))
				json_array_append_new(
					significant,
					json_pack("{sOsOsOsOsO}", "cohort", json_object_get(co, "cohort"),
						  "kind", json_object_get(r, "kind"), "direction",
						  json_object_get(v, "direction"), "ratio",
						  json_object_get(v, "ratio"), "p_holm",
						  json_object_get(v, "p_holm")));
		}
	}
	*ncmp = m;
cleanup:
	free(vs);
	free(p);
	free(adj);
	if (b->status) {
		json_decref(out);
		return NULL;
	}
	return out;
}

json_t *agg_kernels_build(json_t *raw, const struct agg_kernels_query *q, int *status,
			  char *err, size_t errlen)
{
	struct build b = { .err = err, .errlen = errlen };
	struct cohort *base;
	json_t *doc = NULL, *kinds = NULL, *lkinds = NULL, *cohorts = NULL, *sig = NULL;
	size_t omitted = 0, ncmp = 0;
	char by[LABEL_MAX + 8];

	if (errlen)
		err[0] = '\0';
	if (!json_is_object(raw) || !json_is_array(json_object_get(raw, "cohorts")) ||
	    !json_is_array(json_object_get(raw, "kinds"))) {
		*status = 500;
		snprintf(err, errlen, "the report's query returned no rollup sums");
		return NULL;
	}
	b.rate_kinds = json_object();
	b.latency_kinds = json_object();
	sig = json_array();
	if (!b.rate_kinds || !b.latency_kinds || !sig)
		fail(&b, 500, "out of memory");
	if (!b.status)
		load(&b, raw);
	base = b.status ? NULL : choose(&b, q, &omitted);
	if (!b.status) {
		kinds = sorted_keys(b.rate_kinds);
		lkinds = sorted_keys(b.latency_kinds);
		if (!kinds || !lkinds)
			fail(&b, 500, "out of memory");
	}
	if (!b.status)
		cohorts = report_cohorts(&b, base, kinds, sig, &ncmp);
	if (!b.status) {
		snprintf(by, sizeof(by), q->label ? "label:%s" : "kernel", q->label);
		doc = json_pack("{sO?sO?sO?sssosssssfsfsssIsosososIsoso}", "from_ns",
				json_object_get(raw, "from_ns"), "to_ns", json_object_get(raw, "to_ns"),
				"granularity", json_object_get(raw, "granularity"), "by", by, "label",
				q->label ? json_string(q->label) : json_null(), "baseline",
				base && base->name ? base->name : "", "baseline_reason",
				q->baseline ? "requested" : "most host-hours", "confidence",
				AGG_KERNELS_CONFIDENCE, "alpha", AGG_KERNELS_ALPHA, "correction", "holm",
				"comparisons", (json_int_t)ncmp, "kinds", kinds, "latency_kinds", lkinds,
				"cohorts", cohorts, "cohorts_omitted", (json_int_t)omitted,
				"significant", sig, "baseline_cohort",
				base ? (base->name ? json_string(base->name) : json_null()) : json_null());
		kinds = lkinds = cohorts = sig = NULL;
		if (!doc)
			fail(&b, 500, "out of memory");
	}
	json_decref(kinds);
	json_decref(lkinds);
	json_decref(cohorts);
	json_decref(sig);
	*status = b.status ? b.status : 200;
	build_fini(&b);
	return doc;
}

/* ---- the route ----------------------------------------------------------- */

/* struct kernels_req is one GET /api/kernels waiting for its statement. */
struct kernels_req {
	struct agg_http_req *req;
	struct agg_kernels_query q;
	bool html;
	char label[LABEL_MAX + 1];
	char baseline[BASELINE_MAX + 1];
};

static void respond_report(struct kernels_req *k, json_t *doc)
{
	char *body = NULL;
	size_t len = 0;

	if (k->html) {
		body = agg_report_html(doc, &len);
		if (body)
			agg_http_respond(k->req, 200, "text/html; charset=utf-8", body, len);
	} else {
		body = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
		if (body)
			agg_http_respond(k->req, 200, "application/json", body, strlen(body));
	}
	if (!body)
		agg_http_respond_error(k->req, 500, "out of memory");
	free(body);
}

static void kernels_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			    void *arg)
{
	struct kernels_req *k = arg;
	json_t *raw = NULL, *doc = NULL;
	json_error_t jerr;
	char err[256];
	int code;

	(void)db;
	if (status < 0) {
		if (status == -EIO || status == -EINVAL) {
			sh_err("kernel report query failed: %s", errmsg);
			agg_http_respond_error(k->req, 500, "database query failed: %s", errmsg);
		} else {
			agg_http_respond_error(k->req, 503, "database unavailable: %s", errmsg);
		}
		goto cleanup;
	}
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) != 1 || PQgetisnull(res, 0, 0)) {
		agg_http_respond_error(k->req, 500, "database query returned an unexpected result");
		goto cleanup;
	}
	raw = json_loadb(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 0, &jerr);
	if (!raw) {
		sh_err("kernel report: the rollup sums are not JSON: %s", jerr.text);
		agg_http_respond_error(k->req, 500, "database query returned no document");
		goto cleanup;
	}
	doc = agg_kernels_build(raw, &k->q, &code, err, sizeof(err));
	if (!doc)
		agg_http_respond_error(k->req, code, "%s", err);
	else
		respond_report(k, doc);
cleanup:
	json_decref(raw);
	json_decref(doc);
	free(k);
}

void agg_query_kernels_cb(struct agg_http_req *req, void *arg)
{
	struct agg_query *q = arg;
	const char *since_s = agg_http_req_param(req, "since");
	const char *by = agg_http_req_param(req, "by");
	const char *baseline = agg_http_req_param(req, "baseline");
	const char *format = agg_http_req_param(req, "format");
	char from_s[24], to_s[24];
	const char *params[3] = { from_s, to_s, NULL };
	int64_t since = SINCE_DEFAULT, now = sh_now_wall_ns();
	struct kernels_req *k;
	int rv;

	if (since_s && (sh_parse_duration(since_s, &since) != 0 || since <= 0 || since > SINCE_MAX)) {
		agg_http_respond_error(req, 400,
				       "bad since \"%.64s\": expected a duration like 6h, 7d, 30d (at most 400d)",
				       since_s);
		return;
	}
	if (by && strcmp(by, "kernel") != 0 &&
	    (strncmp(by, "label:", 6) != 0 || by[6] == '\0' || strlen(by + 6) > LABEL_MAX)) {
		agg_http_respond_error(req, 400,
				       "bad by \"%.64s\": expected \"kernel\" or \"label:KEY\" (KEY at most %d bytes)",
				       by, LABEL_MAX);
		return;
	}
	if (baseline && (baseline[0] == '\0' || strlen(baseline) > BASELINE_MAX)) {
		agg_http_respond_error(req, 400, "bad baseline: expected a cohort name of 1 to %d bytes",
				       BASELINE_MAX);
		return;
	}
	if (format && strcmp(format, "json") != 0 && strcmp(format, "html") != 0) {
		agg_http_respond_error(req, 400, "bad format \"%.64s\": expected json or html", format);
		return;
	}
	if (!agg_db_ready(q->db)) {
		agg_http_respond_error(req, 503, "database unavailable");
		return;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		agg_http_respond_error(req, 500, "out of memory");
		return;
	}
	k->req = req;
	k->html = format && strcmp(format, "html") == 0;
	k->q.from_ns = now - since;
	k->q.to_ns = now;
	if (by && strcmp(by, "kernel") != 0) {
		snprintf(k->label, sizeof(k->label), "%s", by + 6);
		k->q.label = k->label;
		params[2] = k->label;
	}
	if (baseline) {
		snprintf(k->baseline, sizeof(k->baseline), "%s", baseline);
		k->q.baseline = k->baseline;
	}
	snprintf(from_s, sizeof(from_s), "%" PRId64, k->q.from_ns);
	snprintf(to_s, sizeof(to_s), "%" PRId64, k->q.to_ns);
	rv = agg_db_query(q->db, k->q.label ? label_sql : kernel_sql, k->q.label ? 3 : 2, params,
			  kernels_done_cb, k);
	if (rv < 0) {
		agg_http_respond_error(req, rv == -ENOMEM ? 500 : 503,
				       "could not queue the database query: %s", strerror(-rv));
		free(k);
	}
}
