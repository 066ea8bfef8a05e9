/* capture_web.c: the capture view's server side (capture_web.h): fetch a
 * stored payload through the query connection, unpack and draw it with
 * capview.h on libuv's thread pool, answer on the loop.
 *
 * A request's life: the route (loop) checks the parameters and the
 * admission limit and queries the payload; the query's callback (loop)
 * copies its text (bytea, hex) into the job and starts the work, or parks
 * the job until a worker slot is free; work_cb (a pool thread) decodes,
 * unpacks and draws into a memory stream, touching only the job; after_cb
 * (loop) answers and starts the next parked job. Every admitted job is
 * counted in w->active until it has answered, so w outlives them all.
 */
#include "capture_web.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capview.h"
#include "log.h"
#include "timeutil.h"
#include "validate.h"

#define HOST_ARG_MAX 255
#define TIME_ARG_MAX 64

enum what { W_HEATMAP, W_FLAME, W_FOLDED, W_PPROF };

struct job {
	struct agg_capture_web *w;
	struct agg_http_req *req;
	uv_work_t work;
	struct job *next; /* waiting list */
	enum what what;
	bool diff;
	char id[40];
	/* the range: absent (0), Unix ns, or (rel) ns from the capture's origin */
	bool has_from, has_to, from_rel, to_rel;
	int64_t from_v, to_v;
	char *hex; /* the payload as PostgreSQL sent it (bytea text); the worker frees it */
	/* the answer, set by the worker */
	int status;
	const char *ctype;
	char *body; /* malloc'd */
	size_t len;
	char err[256];
};

struct agg_capture_web {
	uv_loop_t *loop;
	struct agg_db *db;
	unsigned active;  /* admitted and not yet answered */
	unsigned running; /* handed to the thread pool */
	struct job *wait_head, *wait_tail;
	bool stopping;
	struct agg_capture_web_stats stats;
};

/* $1 capture id, $2 host ("" for the only complete one), $3 largest payload:
 * (status, compressed length, payload when not larger than $3, hosts) */
static const char fetch_sql[] =
	"WITH m AS (SELECT h.host_id, h.status, h.payload, o.hostname FROM capture_hosts h"
	"  LEFT JOIN hosts o ON o.host_id = h.host_id WHERE h.capture_id = $1::uuid"
	"  AND ($2::text = '' OR h.host_id::text = lower($2::text) OR o.hostname = $2::text"
	"   OR (length($2::text) >= 4 AND starts_with(h.host_id::text, lower($2::text))))),"
	" c AS (SELECT * FROM m WHERE status = 'complete' ORDER BY hostname, host_id LIMIT 1)"
	" SELECT CASE WHEN (SELECT count(*) FROM m) = 0 THEN 404"
	"  WHEN (SELECT count(*) FROM m WHERE status = 'complete') <> 1 THEN 409"
	"  ELSE 200 END,"
	" (SELECT length(payload) FROM c),"
	" (SELECT CASE WHEN length(payload) <= $3::bigint THEN payload END FROM c),"
	" (SELECT string_agg(coalesce(hostname, host_id::text) || ' (' || status || ')', ', '"
	"   ORDER BY hostname, host_id) FROM m)";

static void maybe_free(struct agg_capture_web *w)
{
	if (w->stopping && w->active == 0)
		free(w);
}

static void job_free(struct job *job)
{
	if (!job)
		return;
	free(job->hex);
	free(job->body);
	free(job);
}

/* job_fail answers the job's request with a JSON error and retires it
 * (the caller then calls maybe_free(w)). */
static void job_fail(struct job *job, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void job_fail(struct job *job, int status, const char *fmt, ...)
{
	struct agg_capture_web *w = job->w;
	char msg[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (status == 413)
		w->stats.too_large++;
	agg_http_respond_error(job->req, status, "%s", msg);
	job_free(job);
	w->active--;
}

/* --- on a pool thread --- */

/* resolve turns a bound of the job into Unix ns (0: none). Returns 0 or
 * -EINVAL (out of range). */
static int resolve(bool has, bool rel, int64_t v, int64_t origin, int64_t *ns)
{
	*ns = 0;
	if (!has)
		return 0;
	if (!rel) {
		*ns = v;
		return v > 0 ? 0 : -EINVAL;
	}
	return __builtin_add_overflow(origin, v, ns) || *ns <= 0 ? -EINVAL : 0;
}

/* memstream_done closes f and moves what it holds into the job as a 200
 * answer, or sets a 500. */
static void memstream_done(struct job *job, FILE *f, char **bufp, size_t *sizep, int rv)
{
	/* fclose sets *bufp and *sizep */
	if (fclose(f) != 0 && rv == 0)
		rv = -EIO;
	if (rv != 0) {
		free(*bufp);
		job->status = 500;
		snprintf(job->err, sizeof(job->err), "could not draw the capture: %s",
			 strerror(-rv));
		return;
	}
	job->status = 200;
	job->body = *bufp;
	job->len = *sizep;
}

static void render(struct job *job, const struct agg_capview *cv)
{
	struct agg_capview_filter f = {0}, before = {0};
	struct agg_capview_set *set = NULL;
	int64_t origin = agg_capview_origin(cv);
	char *buf = NULL, hint[80], sub[160];
	size_t size = 0;
	FILE *out;
	int rv = 0;

	if (resolve(job->has_from, job->from_rel, job->from_v, origin, &f.from_ns) != 0 ||
	    resolve(job->has_to, job->to_rel, job->to_v, origin, &f.to_ns) != 0) {
		job->status = 400;
		snprintf(job->err, sizeof(job->err), "from/to out of range");
		return;
	}
	if (f.from_ns && f.to_ns && f.to_ns <= f.from_ns) {
		job->status = 400;
		snprintf(job->err, sizeof(job->err),
			 "the range is empty: \"to\" must be after \"from\"");
		return;
	}
	if (f.from_ns && f.to_ns && f.to_ns - f.from_ns > AGG_CAPVIEW_MAX_SECONDS * SH_NS_PER_SEC) {
		job->status = 413;
		snprintf(job->err, sizeof(job->err), "the range is longer than %d s",
			 AGG_CAPVIEW_MAX_SECONDS);
		return;
	}
	if (job->what == W_PPROF) {
		uint8_t *p = NULL;
		size_t len = 0;

		if ((rv = agg_capview_pprof(cv, &f, &p, &len)) != 0) {
			job->status = 500;
			snprintf(job->err, sizeof(job->err), "could not make the profile: %s",
				 strerror(-rv));
			return;
		}
		job->status = 200;
		job->body = (char *)p;
		job->len = len;
		job->ctype = "application/octet-stream";
		return;
	}
	if (!(out = open_memstream(&buf, &size))) {
		job->status = 500;
		snprintf(job->err, sizeof(job->err), "out of memory");
		return;
	}
	if (job->what == W_HEATMAP) {
		struct agg_capview_heatmap_opts o = {0};

		snprintf(hint, sizeof(hint), "spikehound capture show %s", job->id);
		o.cmd_hint = hint;
		rv = agg_capview_write_heatmap(out, cv, &f, &o);
		job->ctype = "image/svg+xml";
		if (rv == -ENODATA || rv == -E2BIG) {
			fclose(out);
			free(buf);
			job->status = rv == -ENODATA ? 404 : 413;
			snprintf(
				job->err, sizeof(job->err),
				rv == -ENODATA
					? "the capture holds no samples in the range"
					: "the capture spans more than %d s: pick a range with from= and to=",
				AGG_CAPVIEW_MAX_SECONDS);
			return;
		}
		memstream_done(job, out, &buf, &size, rv);
		return;
	}
	if (!(set = agg_capview_set_new())) {
		fclose(out);
		free(buf);
		job->status = 500;
		snprintf(job->err, sizeof(job->err), "out of memory");
		return;
	}
	if (job->diff) {
		before = f;
		before.from_ns = f.from_ns - (f.to_ns - f.from_ns);
		before.to_ns = f.from_ns;
		if (before.from_ns == 0)
			before.from_ns = 1; /* 0 would mean no bound */
		rv = agg_capview_set_add(set, 0, cv, &before, NULL);
		if (rv == 0)
			rv = agg_capview_set_add(set, 1, cv, &f, NULL);
	} else {
		rv = agg_capview_set_add(set, 0, cv, &f, NULL);
	}
	if (rv == 0 && job->what == W_FOLDED) {
		rv = agg_capview_write_folded(out, set, 0, AGG_CAPVIEW_KSUFFIX);
		job->ctype = "text/plain; charset=utf-8";
	} else if (rv == 0) {
		struct agg_capview_svg_opts o = {0};
		char la[64], lb[64];

		if (f.from_ns || f.to_ns)
			snprintf(sub, sizeof(sub), "capture %s, %+.3fs .. %+.3fs", job->id,
				 (double)((f.from_ns ? f.from_ns : origin) - origin) / 1e9,
				 f.to_ns ? (double)(f.to_ns - origin) / 1e9 : 0.0);
		else
			snprintf(sub, sizeof(sub), "capture %s, all samples", job->id);
		o.subtitle = sub;
		if (job->diff) {
			snprintf(la, sizeof(la), "the %.3f s before",
				 (double)(f.to_ns - f.from_ns) / 1e9);
			snprintf(lb, sizeof(lb), "the picked range");
			o.diff = true;
			o.label_a = la;
			o.label_b = lb;
		}
		rv = agg_capview_write_flamegraph(out, set, &o);
		job->ctype = "image/svg+xml";
		if (rv == -ENODATA) {
			fclose(out);
			free(buf);
			agg_capview_set_free(set);
			job->status = 404;
			snprintf(job->err, sizeof(job->err),
				 "the capture holds no samples in the range");
			return;
		}
	}
	agg_capview_set_free(set);
	memstream_done(job, out, &buf, &size, rv);
}

static void work_cb(uv_work_t *work)
{
	struct job *job = work->data;
	struct agg_capview *cv = NULL;
	unsigned char *bytes;
	size_t len = 0;
	int rv;

	bytes = PQunescapeBytea((const unsigned char *)job->hex, &len);
	free(job->hex);
	job->hex = NULL;
	if (!bytes) {
		job->status = 500;
		snprintf(job->err, sizeof(job->err), "out of memory");
		return;
	}
	rv = agg_capview_load(bytes, len, AGG_CAPWEB_MAX_RAW, &cv, job->err, sizeof(job->err));
	PQfreemem(bytes);
	if (rv != 0) {
		char why[sizeof(job->err)];

		memcpy(why, job->err, sizeof(why));
		job->status = rv == -EBADMSG ? 422 : rv == -EFBIG ? 413 : 500;
		snprintf(job->err, sizeof(job->err), "%s: %.200s",
			 rv == -EBADMSG ? "the stored capture is corrupt"
			 : rv == -EFBIG ? "the capture is too large to draw here (use the CLI)"
					: "could not load the capture",
			 why);
		return;
	}
	render(job, cv);
	agg_capview_free(cv);
}

/* --- on the loop --- */

static void start_job(struct job *job);

static void after_cb(uv_work_t *work, int status)
{
	struct job *job = work->data;
	struct agg_capture_web *w = job->w;
	char disp[96];
	const char *hdrs[7];
	int n = 0;

	w->running--;
	if (status != 0) {
		job->status = 500;
		snprintf(job->err, sizeof(job->err), "the render was cancelled");
	}
	if (job->status == 200) {
		w->stats.renders++;
		if (job->what == W_FOLDED || job->what == W_PPROF) {
			snprintf(disp, sizeof(disp), "attachment; filename=\"capture-%s.%s\"",
				 job->id, job->what == W_FOLDED ? "folded" : "pb.gz");
			hdrs[n++] = "Content-Disposition";
			hdrs[n++] = disp;
		} else {
			/* opened by itself, the SVG may run its own inline script and
			 * nothing else */
			hdrs[n++] = "Content-Security-Policy";
			hdrs[n++] =
				"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'";
		}
		/* a complete recording does not change */
		hdrs[n++] = "Cache-Control";
		hdrs[n++] = "private, max-age=300";
		hdrs[n] = NULL;
		agg_http_respond_headers(job->req, 200, job->ctype, hdrs, job->body, job->len);
		job->req = NULL;
		job_free(job);
		w->active--;
	} else {
		if (job->status == 422)
			w->stats.corrupt++;
		job_fail(job, job->status, "%s", job->err);
	}
	while (w->running < AGG_CAPWEB_MAX_RUNNING && w->wait_head) {
		struct job *next = w->wait_head;

		w->wait_head = next->next;
		if (!w->wait_head)
			w->wait_tail = NULL;
		next->next = NULL;
		start_job(next);
	}
	maybe_free(w);
}

static void start_job(struct job *job)
{
	struct agg_capture_web *w = job->w;
	int rv;

	job->work.data = job;
	if ((rv = uv_queue_work(w->loop, &job->work, work_cb, after_cb)) != 0) {
		job_fail(job, 500, "could not queue the render: %s", uv_strerror(rv));
		return;
	}
	w->running++;
}

static void fetch_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	struct job *job = arg;
	struct agg_capture_web *w = job->w;
	const char *hex;
	size_t hexlen;
	int code;

	(void)db;
	if (status < 0) {
		job_fail(job, status == -ECONNRESET || status == -ECANCELED ? 503 : 500,
			 "database query failed: %s", errmsg);
	} else if (w->stopping) {
		job_fail(job, 503, "the aggregator is shutting down");
	} else if (!res || PQntuples(res) != 1 || PQnfields(res) != 4) {
		job_fail(job, 500, "database query returned an unexpected result");
	} else if ((code = atoi(PQgetvalue(res, 0, 0))) == 404) {
		job_fail(job, 404, "no such capture, or no such host in it");
	} else if (code != 200) {
		job_fail(job, 409,
			 "no single complete recording to draw (hosts: %s); name one with host=",
			 PQgetvalue(res, 0, 3));
	} else if (PQgetisnull(res, 0, 2)) {
		job_fail(job, 413,
			 "the capture is %s bytes compressed; the web view draws at most %u MiB "
			 "(use `spikehound capture show`)",
			 PQgetvalue(res, 0, 1), AGG_CAPWEB_MAX_PAYLOAD >> 20);
	} else {
		hex = PQgetvalue(res, 0, 2);
		hexlen = (size_t)PQgetlength(res, 0, 2);
		if (!(job->hex = malloc(hexlen + 1))) {
			job_fail(job, 500, "out of memory");
		} else {
			memcpy(job->hex, hex, hexlen);
			job->hex[hexlen] = '\0';
			if (w->running < AGG_CAPWEB_MAX_RUNNING) {
				start_job(job);
			} else {
				if (w->wait_tail)
					w->wait_tail->next = job;
				else
					w->wait_head = job;
				w->wait_tail = job;
			}
		}
	}
	maybe_free(w);
}

/* parse_bound reads a from/to value on the loop (sh_parse_time is not for
 * the thread pool: glibc's timegm keeps state): "+DUR" or " DUR" (a
 * decoded '+'; *rel set) from the capture's origin, Unix ns, or what
 * sh_parse_time() accepts. Returns 0 or -EINVAL. */
static int parse_bound(const char *s, bool *rel, int64_t *ns)
{
	char *end;

	*rel = false;
	if (*s == '+' || *s == ' ') {
		*rel = true;
		return sh_parse_duration(s + 1, ns) == 0 && *ns >= 0 ? 0 : -EINVAL;
	}
	if (*s != '\0' && strspn(s, "0123456789") == strlen(s)) {
		long long v;

		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno || *end)
			return -EINVAL;
		*ns = v;
		return 0;
	}
	if (strspn(s, "0123456789.") == strlen(s))
		return -EINVAL; /* bare seconds: too easy to mix up with ns; or empty */
	return sh_parse_time(s, sh_now_wall_ns(), ns);
}

static void route(struct agg_http_req *req, struct agg_capture_web *w, enum what what)
{
	const char *id = agg_http_req_param(req, "id"), *host = agg_http_req_param(req, "host");
	const char *from = agg_http_req_param(req, "from"), *to = agg_http_req_param(req, "to");
	const char *diff = agg_http_req_param(req, "diff");
	const char *params[3];
	char maxb[24];
	struct job *job;

	if (!id || !agg_is_uuid(id)) {
		agg_http_respond_error(req, 400,
				       "missing or bad parameter \"id\" (a capture id, a UUID)");
		return;
	}
	if (host && strlen(host) > HOST_ARG_MAX) {
		agg_http_respond_error(req, 400, "parameter \"host\" is too long");
		return;
	}
	if ((from && strlen(from) > TIME_ARG_MAX) || (to && strlen(to) > TIME_ARG_MAX)) {
		agg_http_respond_error(req, 400, "parameter \"from\" or \"to\" is too long");
		return;
	}
	if (diff && (what != W_FLAME || strcmp(diff, "before") != 0)) {
		agg_http_respond_error(
			req, 400, "bad diff \"%.32s\": only diff=before, on /api/capture/flame",
			diff);
		return;
	}
	if (diff && (!from || !to)) {
		agg_http_respond_error(req, 400, "diff=before needs a range: from= and to=");
		return;
	}
	if (w->stopping) {
		agg_http_respond_error(req, 503, "the aggregator is shutting down");
		return;
	}
	if (w->active >= AGG_CAPWEB_MAX_RUNNING + AGG_CAPWEB_MAX_WAITING) {
		static const char busy[] =
			"{\"error\": \"too many capture renders in progress; retry shortly\"}";
		static const char *const hdrs[] = {"Retry-After", "2", NULL};

		w->stats.refused++;
		agg_http_respond_headers(req, 503, "application/json", hdrs, busy,
					 sizeof(busy) - 1);
		return;
	}
	if (!agg_db_ready(w->db)) {
		agg_http_respond_error(req, 503, "database unavailable");
		return;
	}
	if (!(job = calloc(1, sizeof(*job)))) {
		agg_http_respond_error(req, 500, "out of memory");
		return;
	}
	job->w = w;
	job->req = req;
	job->what = what;
	job->diff = diff != NULL;
	snprintf(job->id, sizeof(job->id), "%s", id);
	job->has_from = from != NULL;
	job->has_to = to != NULL;
	if ((from && parse_bound(from, &job->from_rel, &job->from_v) != 0) ||
	    (to && parse_bound(to, &job->to_rel, &job->to_v) != 0)) {
		free(job);
		agg_http_respond_error(
			req, 400,
			"bad from/to: expected +SECONDS or +DUR from the capture's start "
			"(%%2B in a URL), Unix ns or a time like 2025-11-22T10:21:07Z");
		return;
	}
	if (from && to && job->from_rel == job->to_rel && job->to_v <= job->from_v) {
		free(job);
		agg_http_respond_error(req, 400,
				       "the range is empty: \"to\" must be after \"from\"");
		return;
	}
	snprintf(maxb, sizeof(maxb), "%u", AGG_CAPWEB_MAX_PAYLOAD);
	params[0] = id;
	params[1] = host ? host : "";
	params[2] = maxb;
	w->active++;
	if (agg_db_query(w->db, fetch_sql, 3, params, fetch_done_cb, job) < 0)
		job_fail(job, 503, "database unavailable"); /* not stopping: w stays */
}

static void heatmap_cb(struct agg_http_req *req, void *arg)
{
	route(req, arg, W_HEATMAP);
}

static void flame_cb(struct agg_http_req *req, void *arg)
{
	route(req, arg, W_FLAME);
}

static void folded_cb(struct agg_http_req *req, void *arg)
{
	route(req, arg, W_FOLDED);
}

static void pprof_cb(struct agg_http_req *req, void *arg)
{
	route(req, arg, W_PPROF);
}

int agg_capture_web_register(struct agg_capture_web *w, struct agg_http *http)
{
	static const struct {
		const char *path;
		agg_http_route_cb cb;
	} routes[] = {
		{"/api/capture/heatmap", heatmap_cb},
		{"/api/capture/flame", flame_cb},
		{"/api/capture/folded", folded_cb},
		{"/api/capture/pprof", pprof_cb},
	};
	int rv;

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if ((rv = agg_http_route(http, "GET", routes[i].path, routes[i].cb, w)) < 0)
			return rv;
	return 0;
}

int agg_capture_web_new(uv_loop_t *loop, struct agg_db *db, struct agg_capture_web **out)
{
	struct agg_capture_web *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->loop = loop;
	w->db = db;
	*out = w;
	return 0;
}

void agg_capture_web_get_stats(const struct agg_capture_web *w, struct agg_capture_web_stats *st)
{
	*st = w->stats;
}

void agg_capture_web_stop(struct agg_capture_web *w)
{
	struct job *job, *next;

	if (!w || w->stopping)
		return;
	w->stopping = true;
	job = w->wait_head;
	w->wait_head = w->wait_tail = NULL;
	for (; job; job = next) {
		next = job->next;
		job_fail(job, 503, "the aggregator is shutting down");
	}
	maybe_free(w);
}
