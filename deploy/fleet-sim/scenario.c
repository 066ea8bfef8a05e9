/* scenario.c: parses a fleet-sim scenario file with inih. inih reports
 * the line of the first key its handler refuses; for checks that can only
 * run once a whole section is known (required keys, keys that do not fit
 * the cause's type) we keep each key's line ourselves, counting lines in
 * our own reader. */
#include "scenario.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "timeutil.h"

const char *const fsim_kind_names[FSIM_NKINDS] = {
	[FSIM_K_MMAP_LOCK] = "mmap_lock_wait",
	[FSIM_K_SYSCALL] = "syscall",
	[FSIM_K_RUNQ] = "runq",
	[FSIM_K_RECLAIM] = "reclaim",
	[FSIM_K_SOFTIRQ] = "softirq",
	[FSIM_K_CPU_STALL] = "cpu_stall",
	[FSIM_K_ACCOUNTING] = "accounting",
	[FSIM_K_PROBE] = "probe",
};

const char *const fsim_cause_type_names[] = {
	[FSIM_PERIODIC] = "periodic", [FSIM_BURST] = "burst",		[FSIM_RATE] = "rate",
	[FSIM_DECOY] = "decoy",	      [FSIM_REGRESSION] = "regression",
};
#define N_TYPES 5

/* The keys of a cause section; a cause remembers the line of each. */
enum ckey {
	CK_TYPE,
	CK_KIND,
	CK_DETAIL,
	CK_DURATION,
	CK_DURATION_SIGMA,
	CK_EVIDENCE,
	CK_VICTIM,
	CK_FEATURE,
	CK_COMM,
	CK_CMDLINE,
	CK_EXE,
	CK_HOSTS,
	CK_SPIKING,
	CK_PERIOD,
	CK_JITTER,
	CK_PHASE,
	CK_LIFETIME,
	CK_OFFSET,
	CK_KERNEL,
	CK_LABEL,
	CK_PROCESS,
	CK_RATE,
	CK_FRACTION,
	CK_SPREAD,
	CK_WITH,
	CK_FACTOR,
	CK_RATE_FACTOR,
	CK_HISTOGRAMS,
	CK_N
};

static const char *const ckey_names[CK_N] = {
	"type",	    "kind",	   "detail",	 "duration", "duration_sigma",
	"evidence", "victim",	   "feature",	 "comm",     "cmdline",
	"exe",	    "hosts",	   "spiking",	 "period",   "jitter",
	"phase",    "lifetime",	   "offset",	 "kernel",   "label",
	"process",  "rate",	   "fraction",	 "spread",   "with",
	"factor",   "rate_factor", "histograms",
};

#define B(k) (1u << (k))
#define COMMON (B(CK_TYPE) | B(CK_KIND) | B(CK_FEATURE))
#define SPIKES (B(CK_DETAIL) | B(CK_DURATION) | B(CK_DURATION_SIGMA) | B(CK_VICTIM))
#define PROC (B(CK_COMM) | B(CK_CMDLINE) | B(CK_EXE) | B(CK_HOSTS))
#define SCHED (B(CK_PERIOD) | B(CK_JITTER) | B(CK_PHASE) | B(CK_LIFETIME))
#define SELECT (B(CK_KERNEL) | B(CK_LABEL))

/* allowed[type]: the keys that mean something for that type. */
static const unsigned allowed[N_TYPES] = {
	[FSIM_PERIODIC] = COMMON | SPIKES | PROC | SCHED | SELECT | B(CK_EVIDENCE) | B(CK_SPIKING) |
			  B(CK_OFFSET),
	[FSIM_BURST] = COMMON | SPIKES | SELECT | B(CK_RATE) | B(CK_FRACTION) | B(CK_SPREAD),
	[FSIM_RATE] = COMMON | SPIKES | SELECT | B(CK_PROCESS) | B(CK_RATE) | B(CK_FRACTION),
	[FSIM_DECOY] = COMMON | PROC | SCHED | SELECT | B(CK_WITH),
	[FSIM_REGRESSION] = COMMON | SPIKES | B(CK_KERNEL) | B(CK_FACTOR) | B(CK_RATE_FACTOR) |
			    B(CK_HISTOGRAMS),
};

/* struct cause_src: what the parser keeps about a cause besides its values. */
struct cause_src {
	int line[CK_N];
	bool typed;
};

struct parse {
	struct fsim_scenario *sc;
	FILE *f;
	int line;	 /* the line the reader handed out last */
	int header_line; /* line of the last section header read */
	bool line_too_long;
	char last_section[128];
	struct cause_src *src; /* parallel to sc->causes */
	bool in_fleet;
	int fleet_seen[16]; /* [fleet] keys seen (line), by fleet_keys index */
	char err[512];
	int err_line;
};

static int kind_default_ms(int kind)
{
	switch (kind) {
	case FSIM_K_MMAP_LOCK:
		return 60;
	case FSIM_K_SYSCALL:
		return 40;
	case FSIM_K_RUNQ:
		return 25;
	case FSIM_K_RECLAIM:
		return 50;
	case FSIM_K_SOFTIRQ:
		return 8;
	case FSIM_K_CPU_STALL:
		return 15;
	case FSIM_K_ACCOUNTING:
		return 20000;
	default:
		return 30;
	}
}

int fsim_kind_parse(const char *name)
{
	for (int i = 0; i < FSIM_NKINDS; i++)
		if (strcmp(name, fsim_kind_names[i]) == 0)
			return i;
	return -1;
}

void fsim_normalize_cmdline(const char *cmdline, char *out, size_t len)
{
	size_t n = 0;
	bool space = false;

	if (!len)
		return;
	while (*cmdline == ' ' || *cmdline == '\t')
		cmdline++;
	for (const char *p = cmdline; *p && n + 1 < len && n < 120; p++) {
		if (isspace((unsigned char)*p)) {
			space = true;
			continue;
		}
		if (space) {
			out[n++] = ' ';
			space = false;
			if (n + 1 >= len || n >= 120)
				break;
		}
		if (isdigit((unsigned char)*p)) {
			out[n++] = '#';
			while (isdigit((unsigned char)p[1]))
				p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
}

static void wlist_free(struct fsim_wlist *l)
{
	for (uint32_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->weights);
	memset(l, 0, sizeof(*l));
}

static int wlist_add(struct fsim_wlist *l, const char *name, size_t len, double w)
{
	char **nn = realloc(l->names, (l->n + 1) * sizeof(*nn));
	double *ww;

	if (!nn)
		return -ENOMEM;
	l->names = nn;
	ww = realloc(l->weights, (l->n + 1) * sizeof(*ww));
	if (!ww)
		return -ENOMEM;
	l->weights = ww;
	l->names[l->n] = strndup(name, len);
	if (!l->names[l->n])
		return -ENOMEM;
	l->weights[l->n] = w;
	l->n++;
	l->total += w;
	return 0;
}

/* wlist_parse parses "a:3, b, c:0.5" into l (replacing it); a bare number
 * N with numbered_prefix set means N names: "racks = 40" is r00..r39,
 * "clusters = 5" c1..c5. */
static int wlist_parse(struct fsim_wlist *l, const char *value, const char *numbered_prefix,
		       char *why, size_t whylen)
{
	struct fsim_wlist nl = {0};
	const char *p = value;
	char *end;
	long count;

	if (numbered_prefix) {
		errno = 0;
		count = strtol(value, &end, 10);
		if (!errno && end != value && *end == '\0') {
			if (count < 1 || count > 10000) {
				snprintf(why, whylen, "a count from 1 to 10000, not \"%s\"", value);
				return -EINVAL;
			}
			/* racks r00, r01, ...; clusters c1, c2, ... */
			bool racks = strcmp(numbered_prefix, "r") == 0;

			for (long i = 0; i < count; i++) {
				char name[32];
				int n = racks ? snprintf(name, sizeof(name),
							 count > 100 ? "%s%03ld" : "%s%02ld",
							 numbered_prefix, i)
					      : snprintf(name, sizeof(name), "%s%ld",
							 numbered_prefix, i + 1);

				if (wlist_add(&nl, name, (size_t)n, 1) != 0)
					goto oom;
			}
			wlist_free(l);
			*l = nl;
			return 0;
		}
	}
	while (*p) {
		const char *start, *stop, *colon = NULL;
		double w = 1;

		while (isspace((unsigned char)*p) || *p == ',')
			p++;
		if (!*p)
			break;
		start = p;
		while (*p && *p != ',')
			p++;
		stop = p;
		while (stop > start && isspace((unsigned char)stop[-1]))
			stop--;
		for (const char *q = start; q < stop; q++)
			if (*q == ':')
				colon = q;
		if (colon) {
			char num[64];
			size_t nlen = (size_t)(stop - colon - 1);

			if (nlen == 0 || nlen >= sizeof(num))
				goto bad;
			memcpy(num, colon + 1, nlen);
			num[nlen] = '\0';
			errno = 0;
			w = strtod(num, &end);
			if (errno || *end || !isfinite(w) || w < 0)
				goto bad;
			stop = colon;
			while (stop > start && isspace((unsigned char)stop[-1]))
				stop--;
		}
		if (stop == start)
			goto bad;
		for (const char *q = start; q < stop; q++)
			if (isspace((unsigned char)*q) || *q == '"')
				goto bad;
		for (uint32_t i = 0; i < nl.n; i++) {
			if (strlen(nl.names[i]) == (size_t)(stop - start) &&
			    memcmp(nl.names[i], start, (size_t)(stop - start)) == 0) {
				snprintf(why, whylen, "\"%.*s\" is listed twice",
					 (int)(stop - start), start);
				wlist_free(&nl);
				return -EINVAL;
			}
		}
		if (wlist_add(&nl, start, (size_t)(stop - start), w) != 0)
			goto oom;
	}
	if (nl.n == 0 || nl.total <= 0) {
		snprintf(why, whylen, "an empty list (or all weights 0)");
		wlist_free(&nl);
		return -EINVAL;
	}
	wlist_free(l);
	*l = nl;
	return 0;
bad:
	snprintf(why, whylen, "a list of name or name:weight separated by commas, not \"%s\"",
		 value);
	wlist_free(&nl);
	return -EINVAL;
oom:
	wlist_free(&nl);
	snprintf(why, whylen, "out of memory");
	return -ENOMEM;
}

static int set_list(struct fsim_wlist *l, const char *csv)
{
	char why[128];

	return wlist_parse(l, csv, NULL, why, sizeof(why));
}

int fsim_scenario_defaults(struct fsim_scenario *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->hosts = 100;
	sc->interval_ns = 10 * SH_NS_PER_SEC;
	sc->noise_rate = 2.0;
	sc->skew_ns = 50 * SH_NS_PER_MS;
	sc->skew_outliers = 0.01;
	sc->skew_outlier_ns = 5 * SH_NS_PER_SEC;
	if (set_list(&sc->kernels, "6.1.0-18-amd64:50, 6.1.0-21-amd64:35, 5.10.0-28-amd64:15") ||
	    set_list(&sc->clusters, "c1, c2, c3, c4") ||
	    set_list(&sc->roles, "web:40, db:15, cache:15, batch:30") ||
	    set_list(&sc->noise_kinds, "runq:35, syscall:25, mmap_lock_wait:10, reclaim:10, "
				       "softirq:10, cpu_stall:5, accounting:5")) {
		fsim_scenario_fini(sc);
		return -ENOMEM;
	}
	{
		char why[64];

		if (wlist_parse(&sc->racks, "40", "r", why, sizeof(why))) {
			fsim_scenario_fini(sc);
			return -ENOMEM;
		}
	}
	return 0;
}

static void cause_free(struct fsim_cause *c)
{
	free(c->name);
	free(c->detail);
	free(c->victim);
	free(c->feature);
	free(c->comm);
	free(c->cmdline);
	free(c->exe);
	free(c->sel_kernel);
	free(c->sel_label_key);
	free(c->sel_label_value);
	free(c->sel_process);
	free(c->with);
}

void fsim_scenario_fini(struct fsim_scenario *sc)
{
	free(sc->path);
	wlist_free(&sc->kernels);
	wlist_free(&sc->clusters);
	wlist_free(&sc->racks);
	wlist_free(&sc->roles);
	wlist_free(&sc->noise_kinds);
	for (size_t i = 0; i < sc->n_causes; i++)
		cause_free(&sc->causes[i]);
	free(sc->causes);
	memset(sc, 0, sizeof(*sc));
}

/* fail records the first error (at the current line) and returns 0 so
 * that inih stops there. */
static int fail(struct parse *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parse *ps, const char *fmt, ...)
{
	va_list ap;

	if (ps->err[0])
		return 0;
	va_start(ap, fmt);
	vsnprintf(ps->err, sizeof(ps->err), fmt, ap);
	va_end(ap);
	ps->err_line = ps->line;
	return 0;
}

static int parse_double(const char *v, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(v, &end);
	return (errno || end == v || *end || !isfinite(*out)) ? -EINVAL : 0;
}

static int parse_fraction(const char *v, double *out)
{
	size_t n = strlen(v);

	if (n > 1 && v[n - 1] == '%') {
		char buf[64];

		if (n >= sizeof(buf))
			return -EINVAL;
		memcpy(buf, v, n - 1);
		buf[n - 1] = '\0';
		if (parse_double(buf, out) != 0)
			return -EINVAL;
		*out /= 100;
	} else if (parse_double(v, out) != 0) {
		return -EINVAL;
	}
	return (*out < 0 || *out > 1) ? -EINVAL : 0;
}

static int parse_dur(const char *v, int64_t *out)
{
	return (sh_parse_duration(v, out) != 0 || *out < 0) ? -EINVAL : 0;
}

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static const char *const fleet_keys[] = {
	"hosts",       "interval", "kernels",	    "clusters",		"racks", "roles", "noise",
	"noise_kinds", "skew",	   "skew_outliers", "skew_outlier_max",
};
#define N_FLEET_KEYS (sizeof(fleet_keys) / sizeof(fleet_keys[0]))

static int fleet_key(struct parse *ps, const char *name, const char *v)
{
	struct fsim_scenario *sc = ps->sc;
	char why[256];
	size_t k;
	double d;

	for (k = 0; k < N_FLEET_KEYS; k++)
		if (strcmp(name, fleet_keys[k]) == 0)
			break;
	if (k == N_FLEET_KEYS)
		return fail(ps, "unknown key \"%s\" in [fleet]", name);
	if (ps->fleet_seen[k])
		return fail(ps, "\"%s\" is set twice in [fleet] (first on line %d)", name,
			    ps->fleet_seen[k]);
	ps->fleet_seen[k] = ps->line;
	switch (k) {
	case 0:
		if (parse_double(v, &d) || d < 1 || d > 1000000 || d != floor(d))
			return fail(ps,
				    "hosts: expected a whole number from 1 to 1000000, not \"%s\"",
				    v);
		sc->hosts = (uint32_t)d;
		return 1;
	case 1:
		if (parse_dur(v, &sc->interval_ns) || sc->interval_ns < SH_NS_PER_SEC ||
		    sc->interval_ns > 3600 * SH_NS_PER_SEC)
			return fail(ps, "interval: expected a duration from 1s to 1h, not \"%s\"",
				    v);
		return 1;
	case 2:
	case 3:
	case 4:
	case 5:
	case 7: {
		struct fsim_wlist *l = k == 2	? &sc->kernels
				       : k == 3 ? &sc->clusters
				       : k == 4 ? &sc->racks
				       : k == 5 ? &sc->roles
						: &sc->noise_kinds;
		const char *prefix = k == 3 ? "c" : k == 4 ? "r" : NULL;

		if (wlist_parse(l, v, prefix, why, sizeof(why)) != 0)
			return fail(ps, "%s: expected %s", name, why);
		if (k == 7) {
			for (uint32_t i = 0; i < l->n; i++)
				if (fsim_kind_parse(l->names[i]) < 0)
					return fail(ps, "noise_kinds: unknown kind \"%s\"",
						    l->names[i]);
		}
		if (k == 3 || k == 4 || k == 5) {
			for (uint32_t i = 0; i < l->n; i++)
				if (strlen(l->names[i]) > 64 || strchr(l->names[i], '='))
					return fail(ps, "%s: bad label value \"%s\"", name,
						    l->names[i]);
		}
		return 1;
	}
	case 6:
		if (parse_double(v, &sc->noise_rate) || sc->noise_rate < 0 || sc->noise_rate > 3600)
			return fail(
				ps,
				"noise: expected spikes per host-hour from 0 to 3600, not \"%s\"",
				v);
		return 1;
	case 8:
		if (parse_dur(v, &sc->skew_ns) || sc->skew_ns > 600 * SH_NS_PER_SEC)
			return fail(ps, "skew: expected a duration up to 10m, not \"%s\"", v);
		return 1;
	case 9:
		if (parse_fraction(v, &sc->skew_outliers))
			return fail(ps,
				    "skew_outliers: expected a fraction (0.01 or 1%%), not \"%s\"",
				    v);
		return 1;
	case 10:
		if (parse_dur(v, &sc->skew_outlier_ns) || sc->skew_outlier_ns < SH_NS_PER_SEC ||
		    sc->skew_outlier_ns > 600 * SH_NS_PER_SEC)
			return fail(
				ps,
				"skew_outlier_max: expected a duration from 1s to 10m, not \"%s\"",
				v);
		return 1;
	}
	return 1;
}

static struct fsim_cause *cause_get(struct parse *ps, const char *section)
{
	struct fsim_scenario *sc = ps->sc;
	struct fsim_cause *c;
	struct cause_src *s;

	for (size_t i = 0; i < sc->n_causes; i++)
		if (strcmp(sc->causes[i].name, section) == 0)
			return &sc->causes[i];
	c = realloc(sc->causes, (sc->n_causes + 1) * sizeof(*c));
	if (!c)
		return NULL;
	sc->causes = c;
	s = realloc(ps->src, (sc->n_causes + 1) * sizeof(*s));
	if (!s)
		return NULL;
	ps->src = s;
	memset(&s[sc->n_causes], 0, sizeof(*s));
	c = &sc->causes[sc->n_causes];
	memset(c, 0, sizeof(*c));
	c->name = strdup(section);
	if (!c->name)
		return NULL;
	c->line = ps->header_line;
	c->kind = -1;
	c->duration_sigma = 0.5;
	c->evidence = 0.8;
	c->hosts_mode = FSIM_COUNT_ALL;
	c->spiking = 1;
	c->fraction = -1; /* type's default, set in check_cause */
	c->spread_ns = SH_NS_PER_SEC / 2;
	c->offset_ns = 300 * SH_NS_PER_MS;
	c->with_cause = -1;
	c->factor = 2;
	c->rate_factor = 3;
	sc->n_causes++;
	return c;
}

static int cause_key(struct parse *ps, const char *section, const char *name, const char *v)
{
	struct fsim_cause *c = cause_get(ps, section);
	struct cause_src *src;
	int k, rv = 0;
	double d;

	if (!c)
		return fail(ps, "out of memory");
	src = &ps->src[c - ps->sc->causes];
	for (k = 0; k < CK_N; k++)
		if (strcmp(name, ckey_names[k]) == 0)
			break;
	if (k == CK_N)
		return fail(ps, "unknown key \"%s\" in [%s]", name, section);
	if (src->line[k])
		return fail(ps, "\"%s\" is set twice in [%s] (first on line %d)", name, section,
			    src->line[k]);
	src->line[k] = ps->line;
	switch (k) {
	case CK_TYPE:
		for (int t = 0; t < N_TYPES; t++) {
			if (strcmp(v, fsim_cause_type_names[t]) == 0) {
				c->type = (enum fsim_cause_type)t;
				src->typed = true;
				return 1;
			}
		}
		return fail(ps, "unknown type \"%s\" (periodic, burst, rate, decoy or regression)",
			    v);
	case CK_KIND:
		c->kind = fsim_kind_parse(v);
		if (c->kind < 0)
			return fail(ps,
				    "unknown kind \"%s\" (mmap_lock_wait, syscall, runq, reclaim, "
				    "softirq, cpu_stall, accounting, probe)",
				    v);
		return 1;
	case CK_DETAIL:
		rv = set_str(&c->detail, v);
		break;
	case CK_DURATION:
		if (parse_dur(v, &c->duration_ns) || c->duration_ns < 1000 ||
		    c->duration_ns > 600 * SH_NS_PER_SEC)
			return fail(ps, "duration: expected a duration from 1us to 10m, not \"%s\"",
				    v);
		return 1;
	case CK_DURATION_SIGMA:
		if (parse_double(v, &c->duration_sigma) || c->duration_sigma < 0 ||
		    c->duration_sigma > 3)
			return fail(ps, "duration_sigma: expected a number from 0 to 3, not \"%s\"",
				    v);
		return 1;
	case CK_EVIDENCE:
		if (parse_fraction(v, &c->evidence))
			return fail(ps, "evidence: expected a probability from 0 to 1, not \"%s\"",
				    v);
		return 1;
	case CK_VICTIM:
		rv = set_str(&c->victim, v);
		break;
	case CK_FEATURE:
		rv = set_str(&c->feature, v);
		break;
	case CK_COMM:
		if (strlen(v) > 15 || strpbrk(v, " /"))
			return fail(ps,
				    "comm: expected a process name of at most 15 characters "
				    "without spaces or '/', not \"%s\"",
				    v);
		rv = set_str(&c->comm, v);
		break;
	case CK_CMDLINE:
		rv = set_str(&c->cmdline, v);
		break;
	case CK_EXE:
		rv = set_str(&c->exe, v);
		break;
	case CK_HOSTS: {
		size_t n = strlen(v);

		if (strcmp(v, "all") == 0) {
			c->hosts_mode = FSIM_COUNT_ALL;
		} else if (n > 1 && v[n - 1] == '%' && parse_fraction(v, &d) == 0) {
			c->hosts_mode = FSIM_COUNT_PCT;
			c->hosts_value = d;
		} else if (parse_double(v, &d) == 0 && d >= 1 && d == floor(d) && d <= 1000000) {
			c->hosts_mode = FSIM_COUNT_N;
			c->hosts_value = d;
		} else {
			return fail(ps,
				    "hosts: expected \"all\", a count or a percentage (5%%), not "
				    "\"%s\"",
				    v);
		}
		return 1;
	}
	case CK_SPIKING:
		if (parse_fraction(v, &c->spiking))
			return fail(ps, "spiking: expected a fraction from 0 to 1, not \"%s\"", v);
		return 1;
	case CK_PERIOD:
		if (parse_dur(v, &c->period_ns) || c->period_ns < SH_NS_PER_SEC ||
		    c->period_ns > 86400 * SH_NS_PER_SEC)
			return fail(ps, "period: expected a duration from 1s to 1d, not \"%s\"", v);
		return 1;
	case CK_JITTER:
		if (parse_dur(v, &c->jitter_ns) || c->jitter_ns > 3600 * SH_NS_PER_SEC)
			return fail(ps, "jitter: expected a duration up to 1h, not \"%s\"", v);
		return 1;
	case CK_PHASE:
		if (strcmp(v, "random") == 0)
			c->phase_aligned = false;
		else if (strcmp(v, "aligned") == 0)
			c->phase_aligned = true;
		else
			return fail(ps, "phase: expected \"random\" or \"aligned\", not \"%s\"", v);
		return 1;
	case CK_LIFETIME:
		if (strcmp(v, "daemon") == 0) {
			c->lifetime_ns = 0;
			return 1;
		}
		if (parse_dur(v, &c->lifetime_ns) || c->lifetime_ns < SH_NS_PER_SEC ||
		    c->lifetime_ns > 86400 * SH_NS_PER_SEC)
			return fail(ps,
				    "lifetime: expected \"daemon\" or a duration from 1s to 1d "
				    "(the agent sees processes that live 1s or more), not \"%s\"",
				    v);
		return 1;
	case CK_OFFSET:
		if (parse_dur(v, &c->offset_ns) || c->offset_ns > 600 * SH_NS_PER_SEC)
			return fail(ps, "offset: expected a duration up to 10m, not \"%s\"", v);
		return 1;
	case CK_KERNEL:
		rv = set_str(&c->sel_kernel, v);
		break;
	case CK_LABEL: {
		const char *eq = strchr(v, '=');

		if (!eq || eq == v || !eq[1])
			return fail(ps, "label: expected key=value, not \"%s\"", v);
		free(c->sel_label_key);
		free(c->sel_label_value);
		c->sel_label_key = strndup(v, (size_t)(eq - v));
		c->sel_label_value = strdup(eq + 1);
		if (!c->sel_label_key || !c->sel_label_value)
			rv = -ENOMEM;
		break;
	}
	case CK_PROCESS:
		rv = set_str(&c->sel_process, v);
		break;
	case CK_RATE:
		if (parse_double(v, &c->rate) || c->rate <= 0 || c->rate > 36000)
			return fail(ps,
				    "rate: expected a number per hour above 0 (at most 36000), not "
				    "\"%s\"",
				    v);
		return 1;
	case CK_FRACTION:
		if (parse_fraction(v, &c->fraction))
			return fail(ps, "fraction: expected a fraction from 0 to 1, not \"%s\"", v);
		return 1;
	case CK_SPREAD:
		if (parse_dur(v, &c->spread_ns) || c->spread_ns > 600 * SH_NS_PER_SEC)
			return fail(ps, "spread: expected a duration up to 10m, not \"%s\"", v);
		return 1;
	case CK_WITH:
		rv = set_str(&c->with, v);
		break;
	case CK_FACTOR:
		if (parse_double(v, &c->factor) || c->factor < 0.01 || c->factor > 1000)
			return fail(ps, "factor: expected a number from 0.01 to 1000, not \"%s\"",
				    v);
		return 1;
	case CK_RATE_FACTOR:
		if (parse_double(v, &c->rate_factor) || c->rate_factor < 1 || c->rate_factor > 1000)
			return fail(ps, "rate_factor: expected a number from 1 to 1000, not \"%s\"",
				    v);
		return 1;
	case CK_HISTOGRAMS: {
		struct fsim_wlist l = {0};
		char why[256];

		if (wlist_parse(&l, v, NULL, why, sizeof(why)) != 0)
			return fail(ps, "histograms: expected %s", why);
		for (uint32_t i = 0; i < l.n; i++) {
			int kk = fsim_kind_parse(l.names[i]);

			if (kk < 0) {
				fail(ps, "histograms: unknown kind \"%s\"", l.names[i]);
				wlist_free(&l);
				return 0;
			}
			c->hist_kind[kk] = true;
		}
		wlist_free(&l);
		return 1;
	}
	}
	if (rv)
		return fail(ps, "out of memory");
	return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *ps = user;

	if (ps->line_too_long)
		return fail(ps, "line too long (at most 199 characters)");
	if (strcmp(section, ps->last_section) != 0) {
		/* a new section: refuse one that was closed before */
		bool seen = strcmp(section, "fleet") == 0 ? ps->in_fleet : false;

		for (size_t i = 0; !seen && i < ps->sc->n_causes; i++)
			seen = strcmp(ps->sc->causes[i].name, section) == 0;
		if (seen)
			return fail(ps, "section [%s] appears twice", section);
		snprintf(ps->last_section, sizeof(ps->last_section), "%s", section);
		if (strcmp(section, "fleet") == 0)
			ps->in_fleet = true;
	}
	if (!*section)
		return fail(ps, "key \"%s\" outside a section", name);
	if (strcmp(section, "fleet") == 0)
		return fleet_key(ps, name, value);
	if (strlen(section) > 64 || strpbrk(section, " #\"\\"))
		return fail(ps,
			    "section name \"%s\": use at most 64 characters, no spaces, '#', "
			    "quotes or backslashes",
			    section);
	return cause_key(ps, section, name, value);
}

/* reader is fgets that counts lines and notes section headers and lines
 * longer than inih's buffer. */
static char *reader(char *str, int num, void *stream)
{
	struct parse *ps = stream;
	char *s = fgets(str, num, ps->f);
	const char *p;
	size_t n;

	if (!s)
		return NULL;
	ps->line++;
	n = strlen(s);
	if (n == (size_t)num - 1 && s[n - 1] != '\n' && !feof(ps->f)) {
		int ch;

		ps->line_too_long = true;
		fail(ps, "line too long (at most %d characters)", num - 2);
		while ((ch = fgetc(ps->f)) != EOF && ch != '\n')
			;
	}
	for (p = s; *p == ' ' || *p == '\t'; p++)
		;
	if (*p == '[')
		ps->header_line = ps->line;
	return s;
}

/* cerr formats an error about cause c at line (or its header line). */
static int cerr(struct parse *ps, const struct fsim_cause *c, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int cerr(struct parse *ps, const struct fsim_cause *c, int line, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(ps->err, sizeof(ps->err), "[%s]: %s", c->name, msg);
	ps->err_line = line ? line : c->line;
	return -EINVAL;
}

static bool in_list(const struct fsim_wlist *l, const char *name)
{
	for (uint32_t i = 0; i < l->n; i++)
		if (strcmp(l->names[i], name) == 0)
			return true;
	return false;
}

/* feature_for fills c->feature when the file did not give one, or expands
 * the shorthands "process", "cmdline" and "started". */
static int resolve_feature(struct parse *ps, struct fsim_cause *c, const struct cause_src *src)
{
	char buf[512], norm[128];
	const char *f = c->feature;

	if (f && strchr(f, ':'))
		return 0;
	if (c->type == FSIM_PERIODIC || c->type == FSIM_DECOY) {
		if (!f && c->type == FSIM_DECOY)
			f = "process";
		else if (!f)
			f = c->lifetime_ns ? "started" : c->cmdline ? "cmdline" : "process";
		if (strcmp(f, "cmdline") == 0) {
			char tmpl[4096];
			size_t n = 0;
			const char *src_cmd = c->cmdline ? c->cmdline : c->comm;

			/* strftime conversions become digits, and digits '#' */
			for (const char *p = src_cmd; *p && n + 1 < sizeof(tmpl); p++) {
				if (*p == '%' && p[1] == '%') {
					tmpl[n++] = '%';
					p++;
				} else if (*p == '%' && p[1]) {
					tmpl[n++] = '0';
					p++;
				} else {
					tmpl[n++] = *p;
				}
			}
			tmpl[n] = '\0';
			fsim_normalize_cmdline(tmpl, norm, sizeof(norm));
			snprintf(buf, sizeof(buf), "cmdline:%s", norm);
		} else if (strcmp(f, "process") == 0 || strcmp(f, "started") == 0) {
			snprintf(buf, sizeof(buf), "%s:%s", f, c->comm);
		} else {
			return cerr(
				ps, c, src->line[CK_FEATURE],
				"feature: expected process, cmdline, started or a feature string "
				"with ':', not \"%s\"",
				f);
		}
	} else if (f) {
		return cerr(ps, c, src->line[CK_FEATURE],
			    "feature: expected a feature string with ':' (kernel:..., label:k=v, "
			    "process:...), not \"%s\"",
			    f);
	} else if (c->sel_kernel) {
		snprintf(buf, sizeof(buf), "kernel:%s", c->sel_kernel);
	} else if (c->sel_label_key) {
		snprintf(buf, sizeof(buf), "label:%s=%s", c->sel_label_key, c->sel_label_value);
	} else if (c->sel_process) {
		snprintf(buf, sizeof(buf), "process:%s", c->sel_process);
	} else {
		buf[0] = '\0';
	}
	return set_str(&c->feature, buf) ? cerr(ps, c, 0, "out of memory") : 0;
}

static int check_cause(struct parse *ps, size_t idx)
{
	struct fsim_scenario *sc = ps->sc;
	struct fsim_cause *c = &sc->causes[idx];
	const struct cause_src *src = &ps->src[idx];
	int nsel;

	if (!src->typed)
		return cerr(ps, c, 0,
			    "missing \"type\" (periodic, burst, rate, decoy or regression)");
	for (int k = 0; k < CK_N; k++) {
		if (src->line[k] && !(allowed[c->type] & B(k)))
			return cerr(ps, c, src->line[k], "\"%s\" does not apply to a %s cause",
				    ckey_names[k], fsim_cause_type_names[c->type]);
	}
	if (c->type == FSIM_REGRESSION && c->kind < 0)
		c->kind = FSIM_K_RUNQ;
	if (c->type != FSIM_DECOY && c->kind < 0)
		return cerr(ps, c, 0, "missing \"kind\"");
	if (c->kind == FSIM_K_PROBE)
		return cerr(ps, c, src->line[CK_KIND], "kind \"probe\" cannot be simulated");
	if ((c->type == FSIM_PERIODIC || c->type == FSIM_DECOY) && !c->comm)
		return cerr(ps, c, 0, "missing \"comm\" (the process)");
	if (c->type == FSIM_PERIODIC && !c->period_ns)
		return cerr(ps, c, 0, "missing \"period\"");
	if (c->type == FSIM_PERIODIC && !src->line[CK_HOSTS])
		return cerr(ps, c, 0, "missing \"hosts\" (how many hosts run %s: all, N or N%%)",
			    c->comm);
	if (c->type == FSIM_DECOY && src->line[CK_LIFETIME] && !c->period_ns && c->lifetime_ns)
		return cerr(ps, c, src->line[CK_LIFETIME],
			    "a decoy with a lifetime needs a period");
	if (c->lifetime_ns && c->period_ns && c->lifetime_ns >= c->period_ns)
		return cerr(ps, c, src->line[CK_LIFETIME],
			    "lifetime must be shorter than the period");
	if (c->jitter_ns && c->period_ns && 2 * c->jitter_ns >= c->period_ns)
		return cerr(ps, c, src->line[CK_JITTER], "jitter must be under half the period");
	if (c->lifetime_ns && c->offset_ns >= c->lifetime_ns)
		c->offset_ns = c->lifetime_ns / 2;
	nsel = !!c->sel_kernel + !!c->sel_label_key + !!c->sel_process;
	if ((c->type == FSIM_BURST || c->type == FSIM_RATE) && nsel == 0)
		return cerr(ps, c, 0, "missing the hosts: one of kernel, label%s",
			    c->type == FSIM_RATE ? " or process" : "");
	if (nsel > 1)
		return cerr(ps, c, 0, "use only one of kernel, label and process");
	if (c->type == FSIM_REGRESSION && !c->sel_kernel)
		return cerr(ps, c, 0, "missing \"kernel\"");
	if ((c->type == FSIM_BURST || c->type == FSIM_RATE) && c->rate <= 0)
		return cerr(ps, c, 0, "missing \"rate\"");
	if (c->sel_kernel && !in_list(&sc->kernels, c->sel_kernel))
		return cerr(ps, c, src->line[CK_KERNEL], "kernel \"%s\" is not in [fleet] kernels",
			    c->sel_kernel);
	if (c->sel_label_key) {
		const struct fsim_wlist *l = strcmp(c->sel_label_key, "cluster") == 0
						     ? &sc->clusters
					     : strcmp(c->sel_label_key, "rack") == 0 ? &sc->racks
					     : strcmp(c->sel_label_key, "role") == 0 ? &sc->roles
										     : NULL;

		if (!l)
			return cerr(ps, c, src->line[CK_LABEL],
				    "label key \"%s\": hosts have rack, cluster and role",
				    c->sel_label_key);
		if (!in_list(l, c->sel_label_value))
			return cerr(ps, c, src->line[CK_LABEL], "no %s is called \"%s\" in [fleet]",
				    c->sel_label_key, c->sel_label_value);
	}
	if (c->fraction < 0)
		c->fraction = c->type == FSIM_BURST ? 0.5 : 1;
	if (!c->duration_ns && c->kind >= 0)
		c->duration_ns = (int64_t)kind_default_ms(c->kind) * SH_NS_PER_MS;
	if (c->type == FSIM_REGRESSION) {
		bool any = false;

		for (int k = 0; k < FSIM_NKINDS; k++)
			any |= c->hist_kind[k];
		if (!any && c->kind != FSIM_K_ACCOUNTING && c->kind != FSIM_K_CPU_STALL)
			c->hist_kind[c->kind] = true;
	}
	if (c->with) {
		for (size_t i = 0; i < sc->n_causes; i++)
			if (i != idx && strcmp(sc->causes[i].name, c->with) == 0)
				c->with_cause = (int)i;
		if (c->with_cause < 0)
			return cerr(ps, c, src->line[CK_WITH], "with: no cause is called \"%s\"",
				    c->with);
		if (sc->causes[c->with_cause].type == FSIM_DECOY)
			return cerr(ps, c, src->line[CK_WITH], "with: \"%s\" is a decoy", c->with);
	}
	if (c->cmdline && strlen(c->cmdline) > 4000)
		return cerr(ps, c, src->line[CK_CMDLINE], "cmdline longer than 4000 bytes");
	return resolve_feature(ps, c, src);
}

int fsim_scenario_load(struct fsim_scenario *sc, const char *path, char *err, size_t errlen)
{
	struct parse ps = {0};
	int rv;

	if (fsim_scenario_defaults(sc) != 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	sc->path = strdup(path);
	ps.sc = sc;
	ps.f = fopen(path, "re");
	if (!ps.f || !sc->path) {
		rv = -errno;
		snprintf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
		if (ps.f)
			fclose(ps.f);
		fsim_scenario_fini(sc);
		return rv ? rv : -ENOMEM;
	}
	rv = ini_parse_stream(reader, &ps, handler, &ps);
	fclose(ps.f);
	if (rv != 0 && !ps.err[0]) {
		if (rv > 0) {
			snprintf(ps.err, sizeof(ps.err),
				 "syntax error (expected [section] or key = value)");
			ps.err_line = rv;
		} else {
			snprintf(ps.err, sizeof(ps.err), "could not parse (out of memory)");
		}
	}
	for (size_t i = 0; !ps.err[0] && i < sc->n_causes; i++)
		check_cause(&ps, i);
	if (!ps.err[0] && sc->noise_rate > 0) {
		for (uint32_t i = 0; i < sc->noise_kinds.n; i++)
			if (strcmp(sc->noise_kinds.names[i], "probe") == 0)
				snprintf(ps.err, sizeof(ps.err),
					 "noise_kinds: \"probe\" cannot be simulated");
		if (ps.err[0])
			ps.err_line = ps.fleet_seen[7];
	}
	free(ps.src);
	if (ps.err[0]) {
		snprintf(err, errlen, "%s:%d: %s", path, ps.err_line, ps.err);
		fsim_scenario_fini(sc);
		return -EINVAL;
	}
	return 0;
}
