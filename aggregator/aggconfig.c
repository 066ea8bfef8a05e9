/* aggconfig.c: spikehound-aggregator's configuration. */
#include "aggconfig.h"

#include <errno.h>
#include <ini.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "correlate.h"
#include "timeutil.h"

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -EINVAL;
	*out = n;
	return 0;
}

static int parse_size(const char *v, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = { { "", 1 },	   { "B", 1 },		{ "KiB", 1024 }, { "K", 1024 },
		      { "MiB", 1 << 20 }, { "M", 1 << 20 },	{ "GiB", 1 << 30 }, { "G", 1 << 30 } };
	char *end;
	double n;

	errno = 0;
	n = strtod(v, &end);
	if (errno || end == v || n < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			*out = (uint64_t)(n * (double)units[i].mult);
			return 0;
		}
	}
	return -EINVAL;
}

/* key_is tells whether key is name, with '-' accepted for '_'. */
static bool key_is(const char *key, const char *name)
{
	for (; *key && *name; key++, name++)
		if (*key != *name && !(*key == '-' && *name == '_'))
			return false;
	return *key == *name;
}

/* set_duration parses a duration in [lo, hi] into *dst. */
static int set_duration(const char *name, const char *value, int64_t lo, int64_t hi, int64_t *dst,
			char *err, size_t errlen)
{
	int64_t ns;

	if (sh_parse_duration(value, &ns) || ns < lo || ns > hi) {
		snprintf(err, errlen, "%s must be a duration from %gs to %gs, not \"%s\"", name,
			 (double)lo / 1e9, (double)hi / 1e9, value);
		return -EINVAL;
	}
	*dst = ns;
	return 0;
}

/* set_prob parses a probability in (0, 0.5) into *dst. */
static int set_prob(const char *name, const char *value, double *dst, char *err, size_t errlen)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(value, &end);
	if (errno || end == value || *end || !(v > 0) || !(v < 0.5)) {
		snprintf(err, errlen, "%s must be a probability between 0 and 0.5 (like 1e-6), not \"%s\"",
			 name, value);
		return -EINVAL;
	}
	*dst = v;
	return 0;
}

/* set_count parses an integer in [lo, hi] into *dst. */
static int set_count(const char *name, const char *value, long lo, long hi, int *dst, char *err,
		     size_t errlen)
{
	long n;

	if (parse_int(value, lo, hi, &n)) {
		snprintf(err, errlen, "%s must be a number from %ld to %ld, not \"%s\"", name, lo, hi,
			 value);
		return -EINVAL;
	}
	*dst = (int)n;
	return 0;
}

/* set_correlate handles the correlate_* keys; 1 when key is not one. */
static int set_correlate(struct agg_config *c, const char *key, const char *value, char *err,
			 size_t errlen)
{
	const int64_t s = SH_NS_PER_SEC;

	if (key_is(key, "correlate_interval"))
		return set_duration("correlate_interval", value, SH_NS_PER_MS * 10, 3600 * s,
				    &c->correlate_interval_ns, err, errlen);
	if (key_is(key, "correlate_gap"))
		return set_duration("correlate_gap", value, SH_NS_PER_MS, 600 * s,
				    &c->correlate_gap_ns, err, errlen);
	if (key_is(key, "correlate_lookback"))
		return set_duration("correlate_lookback", value, 600 * s, 7 * 86400 * s,
				    &c->correlate_lookback_ns, err, errlen);
	if (key_is(key, "correlate_suspects_interval"))
		return set_duration("correlate_suspects_interval", value, 0, 86400 * s,
				    &c->correlate_suspects_interval_ns, err, errlen);
	if (key_is(key, "correlate_min_hosts"))
		return set_count("correlate_min_hosts", value, 2, 100000, &c->correlate_min_hosts, err,
				 errlen);
	if (key_is(key, "correlate_min_events"))
		return set_count("correlate_min_events", value, 3, 1000, &c->correlate_min_events, err,
				 errlen);
	if (key_is(key, "correlate_batch"))
		return set_count("correlate_batch", value, 100, 1000000, &c->correlate_batch, err,
				 errlen);
	if (key_is(key, "correlate_others_max"))
		return set_count("correlate_others_max", value, 10, 1000000, &c->correlate_others_max,
				 err, errlen);
	if (key_is(key, "correlate_burst_p"))
		return set_prob("correlate_burst_p", value, &c->correlate_burst_p, err, errlen);
	if (key_is(key, "correlate_recurring_p"))
		return set_prob("correlate_recurring_p", value, &c->correlate_recurring_p, err, errlen);
	if (key_is(key, "correlate_periodic_p"))
		return set_prob("correlate_periodic_p", value, &c->correlate_periodic_p, err, errlen);
	return 1;
}

/* set_capture handles control_listen and the capture_* keys; 1 when key
 * is not one. */
static int set_capture(struct agg_config *c, const char *key, const char *value, char *err,
		       size_t errlen)
{
	const int64_t s = SH_NS_PER_SEC;

	if (key_is(key, "control_listen"))
		return set_str(&c->control_listen, strcmp(value, "off") == 0 ? "" : value);
	if (key_is(key, "tls_cert"))
		return set_str(&c->tls_cert, value);
	if (key_is(key, "tls_key"))
		return set_str(&c->tls_key, value);
	if (key_is(key, "tls_ca"))
		return set_str(&c->tls_ca, value);
	if (key_is(key, "capture_before"))
		return set_duration("capture_before", value, 0, 600 * s, &c->capture_before_ns, err,
				    errlen);
	if (key_is(key, "capture_after"))
		return set_duration("capture_after", value, 0, 600 * s, &c->capture_after_ns, err,
				    errlen);
	if (key_is(key, "capture_auto_min")) {
		if (strcmp(value, "off") == 0) {
			c->capture_auto_min_ns = -1;
			return 0;
		}
		return set_duration("capture_auto_min", value, 1, 3600 * s, &c->capture_auto_min_ns,
				    err, errlen);
	}
	if (key_is(key, "capture_auto_host_every"))
		return set_duration("capture_auto_host_every", value, 0, 86400 * s,
				    &c->capture_auto_host_interval_ns, err, errlen);
	if (key_is(key, "capture_auto_healthy"))
		return set_count("capture_auto_healthy", value, 0, 100, &c->capture_auto_healthy, err,
				 errlen);
	if (key_is(key, "capture_auto_per_hour"))
		return set_count("capture_auto_per_hour", value, 0, 100000, &c->capture_auto_per_hour,
				 err, errlen);
	if (key_is(key, "capture_retention_days"))
		return set_count("capture_retention_days", value, 1, 3650, &c->capture_retention_days,
				 err, errlen);
	if (key_is(key, "capture_max")) {
		uint64_t sz;

		if (parse_size(value, &sz) || sz < 4096 || sz > (1ULL << 30)) {
			snprintf(err, errlen, "capture_max must be a size from 4KiB to 1GiB, not \"%s\"",
				 value);
			return -EINVAL;
		}
		c->capture_max_bytes = sz;
		return 0;
	}
	return 1;
}

int agg_config_control_url(const struct agg_config *c, char *buf, size_t len)
{
	const char *colon;
	char *end;
	long port;

	buf[0] = '\0';
	if (!c->control_listen[0])
		return -ENOENT;
	if (strcmp(c->control_listen, "auto") != 0) {
		snprintf(buf, len, "%s", c->control_listen);
		return 0;
	}
	colon = strrchr(c->listen, ':');
	if (!colon || (strncmp(c->listen, "tcp://", 6) != 0 && strncmp(c->listen, "tls+tcp://", 10) != 0))
		return -ENOENT;
	port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65533)
		return -ENOENT;
	snprintf(buf, len, "%.*s:%ld", (int)(colon - c->listen), c->listen, port + 2);
	return 0;
}

int agg_config_defaults(struct agg_config *c)
{
	struct agg_correlate_opts co;

	memset(c, 0, sizeof(*c));
	agg_correlate_opts_default(&co);
	c->correlate_interval_ns = co.interval_ns;
	c->correlate_gap_ns = co.gap_ns;
	c->correlate_min_hosts = co.min_hosts;
	c->correlate_lookback_ns = co.lookback_ns;
	c->correlate_burst_p = co.burst_p;
	c->correlate_recurring_p = co.recurring_p;
	c->correlate_periodic_p = co.periodic_p;
	c->correlate_min_events = co.min_events;
	c->correlate_batch = co.batch;
	c->correlate_suspects_interval_ns = co.suspects_interval_ns;
	c->correlate_others_max = co.others_max;
	c->writers = 2;
	c->retention_days = 14;
	c->stats_interval_ns = 60 * SH_NS_PER_SEC;
	c->max_request_bytes = 8 << 20;
	c->capture_before_ns = 30 * SH_NS_PER_SEC;
	c->capture_after_ns = 5 * SH_NS_PER_SEC;
	c->capture_max_bytes = 64 << 20;
	c->capture_auto_min_ns = 100 * SH_NS_PER_MS;
	c->capture_auto_healthy = 3;
	c->capture_auto_per_hour = 30;
	c->capture_auto_host_interval_ns = 600 * SH_NS_PER_SEC;
	c->capture_retention_days = 14;
	if (set_str(&c->control_listen, "auto") || set_str(&c->tls_cert, "") ||
	    set_str(&c->tls_key, "") || set_str(&c->tls_ca, "") ||
	    set_str(&c->listen, "tcp://127.0.0.1:7470") || set_str(&c->http, "http://127.0.0.1:7471") ||
	    set_str(&c->data_dir, "/var/lib/spikehound/aggregator") || set_str(&c->db, "") ||
	    set_str(&c->pg_bindir, "") || set_str(&c->log_level, "info")) {
		agg_config_free(c);
		return -ENOMEM;
	}
	return 0;
}

int agg_config_set(struct agg_config *c, const char *key, const char *value, char *err,
		   size_t errlen)
{
	long n;
	int64_t ns;
	int rv;

	if (strcmp(key, "listen") == 0)
		return set_str(&c->listen, value);
	if (strcmp(key, "http") == 0)
		return set_str(&c->http, value);
	if (strcmp(key, "data_dir") == 0 || strcmp(key, "data-dir") == 0)
		return set_str(&c->data_dir, value);
	if (strcmp(key, "db") == 0)
		return set_str(&c->db, value);
	if (strcmp(key, "pg_bindir") == 0 || strcmp(key, "pg-bindir") == 0)
		return set_str(&c->pg_bindir, value);
	if (strcmp(key, "log_level") == 0 || strcmp(key, "log-level") == 0) {
		if (strcmp(value, "error") && strcmp(value, "warn") && strcmp(value, "info") &&
		    strcmp(value, "debug")) {
			snprintf(err, errlen, "log_level must be error, warn, info or debug, not \"%s\"",
				 value);
			return -EINVAL;
		}
		return set_str(&c->log_level, value);
	}
	if (strcmp(key, "writers") == 0) {
		if (parse_int(value, 1, 16, &n)) {
			snprintf(err, errlen, "writers must be a number from 1 to 16, not \"%s\"", value);
			return -EINVAL;
		}
		c->writers = (int)n;
		return 0;
	}
	if (strcmp(key, "retention_days") == 0 || strcmp(key, "retention-days") == 0) {
		if (parse_int(value, 2, 3650, &n)) {
			snprintf(err, errlen, "retention_days must be a number from 2 to 3650, not \"%s\"",
				 value);
			return -EINVAL;
		}
		c->retention_days = (int)n;
		return 0;
	}
	if (strcmp(key, "stats_interval") == 0 || strcmp(key, "stats-interval") == 0) {
		if (sh_parse_duration(value, &ns) || ns < SH_NS_PER_SEC) {
			snprintf(err, errlen, "stats_interval must be a duration of at least 1s, not \"%s\"",
				 value);
			return -EINVAL;
		}
		c->stats_interval_ns = ns;
		return 0;
	}
	if (strcmp(key, "max_request_bytes") == 0 || strcmp(key, "max-request-bytes") == 0) {
		uint64_t sz;

		if (parse_size(value, &sz) || sz < 4096 || sz > (1ULL << 30)) {
			snprintf(err, errlen,
				 "max_request_bytes must be a size from 4KiB to 1GiB, not \"%s\"", value);
			return -EINVAL;
		}
		c->max_request_bytes = sz;
		return 0;
	}
	if ((rv = set_correlate(c, key, value, err, errlen)) != 1)
		return rv;
	if ((rv = set_capture(c, key, value, err, errlen)) != 1)
		return rv;
	snprintf(err, errlen, "unknown setting \"%s\"", key);
	return -EINVAL;
}

struct load_ctx {
	struct agg_config *c;
	char *err;
	size_t errlen;
	const char *path;
	int failed;
	char msg[256];
};

/* ini_cb handles one setting; inih reports the line of the first one
 * that returns 0, and the message is kept in x->msg until then. */
static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *x = user;

	if (x->failed)
		return 1;
	if (strcmp(section, "aggregator") != 0) {
		snprintf(x->msg, sizeof(x->msg), "unknown section [%s] (expected [aggregator])",
			 section);
		x->failed = -EINVAL;
		return 0;
	}
	if (agg_config_set(x->c, name, value, x->msg, sizeof(x->msg)) != 0) {
		x->failed = -EINVAL;
		return 0;
	}
	return 1;
}

int agg_config_load(struct agg_config *c, const char *path, char *err, size_t errlen)
{
	struct load_ctx x = { c, err, errlen, path, 0, "" };
	FILE *f = fopen(path, "r");
	int rv;

	if (!f) {
		rv = -errno;
		snprintf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
		return rv;
	}
	rv = ini_parse_file(f, ini_cb, &x);
	fclose(f);
	if (x.failed) {
		snprintf(err, errlen, "%s:%d: %s", path, rv, x.msg);
		return x.failed;
	}
	if (rv > 0) {
		snprintf(err, errlen, "%s:%d: syntax error", path, rv);
		return -EINVAL;
	}
	return rv < 0 ? -EIO : 0;
}

void agg_config_free(struct agg_config *c)
{
	free(c->listen);
	free(c->control_listen);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_ca);
	free(c->http);
	free(c->data_dir);
	free(c->db);
	free(c->pg_bindir);
	free(c->log_level);
	memset(c, 0, sizeof(*c));
}
