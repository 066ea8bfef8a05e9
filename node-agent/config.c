/* config.c: agent configuration: built-in defaults, the INI file (read with
 * libinih) and flags, which all go through agent_config_set. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "timeutil.h"

#define DEFAULT_AGGREGATOR "tcp://127.0.0.1:7470"
#define MiB (1024ULL * 1024)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void agent_config_defaults(struct agent_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->aggregators[0], sizeof(cfg->aggregators[0]), "%s", DEFAULT_AGGREGATOR);
	cfg->n_aggregators = 1;
	cfg->interval_ns = 10 * SH_NS_PER_SEC;
	cfg->snapshot_every = 30;
	snprintf(cfg->spool_dir, sizeof(cfg->spool_dir), "%s", "/var/lib/spikehound/spool");
	cfg->spool_cap_bytes = 64 * MiB;
	cfg->spool_fsync = true;
	cfg->drop_privileges = true;
	snprintf(cfg->proc_root, sizeof(cfg->proc_root), "%s", "/proc");
	snprintf(cfg->log_level, sizeof(cfg->log_level), "%s", "info");
	cfg->recorder_bytes = 32 * MiB;
	cfg->sample_hz = 99;
	cfg->topk_stacks = 50;
	snprintf(cfg->detectors, sizeof(cfg->detectors), "%s", "all");
	cfg->runq_threshold_ns = 10 * SH_NS_PER_MS;
	cfg->syscall_threshold_ns = 5 * SH_NS_PER_MS;
	cfg->mmap_lock_threshold_ns = 1 * SH_NS_PER_MS;
	cfg->reclaim_threshold_ns = 10 * SH_NS_PER_MS;
	cfg->softirq_threshold_ns = 10 * SH_NS_PER_MS;
	cfg->stall_threshold_ns = 20 * SH_NS_PER_MS;
	cfg->stall_hz = 250;
	cfg->event_burst = 20;
	cfg->event_rate = 60;
	snprintf(cfg->control, sizeof(cfg->control), "%s", "auto");
	cfg->capture_max_bytes = 64 * MiB;
	cfg->capture_chunk_bytes = 256 * 1024;
	cfg->capture_local_min_ns = SH_NS_PER_SEC;
	cfg->capture_local_interval_ns = 600 * SH_NS_PER_SEC;
	cfg->capture_before_ns = 30 * SH_NS_PER_SEC;
	cfg->capture_after_ns = 5 * SH_NS_PER_SEC;
}

/* capture durations share one parser: 0 to 1 hour */
static const struct {
	const char *key;
	size_t off;
} capture_durations[] = {
	{ "capture_local", offsetof(struct agent_config, capture_local_min_ns) },
	{ "capture_local_every", offsetof(struct agent_config, capture_local_interval_ns) },
	{ "capture_before", offsetof(struct agent_config, capture_before_ns) },
	{ "capture_after", offsetof(struct agent_config, capture_after_ns) },
};

/* detector thresholds share one parser: a duration from 10us to 60s */
static const struct {
	const char *key;
	size_t off;
} thresholds[] = {
	{ "runq_threshold", offsetof(struct agent_config, runq_threshold_ns) },
	{ "syscall_threshold", offsetof(struct agent_config, syscall_threshold_ns) },
	{ "mmap_lock_threshold", offsetof(struct agent_config, mmap_lock_threshold_ns) },
	{ "reclaim_threshold", offsetof(struct agent_config, reclaim_threshold_ns) },
	{ "softirq_threshold", offsetof(struct agent_config, softirq_threshold_ns) },
	{ "stall_threshold", offsetof(struct agent_config, stall_threshold_ns) },
};

int agent_config_control_url(const struct agent_config *cfg, char *buf, size_t len)
{
	const char *a = cfg->aggregators[0], *colon;
	char *end;
	long port;

	buf[0] = '\0';
	if (strcmp(cfg->control, "off") == 0)
		return -ENOENT;
	if (strcmp(cfg->control, "auto") != 0) {
		snprintf(buf, len, "%s", cfg->control);
		return 0;
	}
	if (cfg->n_aggregators == 0 || (colon = strrchr(a, ':')) == NULL)
		return -ENOENT;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65533 || strncmp(a, "ipc://", 6) == 0)
		return -ENOENT;
	snprintf(buf, len, "%.*s:%ld", (int)(colon - a), a, port + 2);
	return 0;
}

void agent_config_free(struct agent_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
}

/* "123", "64MiB", "512 KiB", "1GiB", "10B" (IEC suffixes, any case). */
static int parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {
		{ "", 1 },	     { "b", 1 },	   { "kib", 1ULL << 10 },
		{ "mib", 1ULL << 20 }, { "gib", 1ULL << 30 }, { "tib", 1ULL << 40 },
	};
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(p, units[i].suffix) != 0)
			continue;
		if (v > UINT64_MAX / units[i].mult)
			return -EINVAL;
		*out = v * units[i].mult;
		return 0;
	}
	return -EINVAL;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* nng addresses: scheme://rest, e.g. tcp://host:7470, ipc:///run/x.sock */
static bool valid_url(const char *s)
{
	const char *sep = strstr(s, "://");

	if (!sep || sep == s || sep[3] == '\0')
		return false;
	for (const char *c = s; c < sep; c++)
		if (!isalnum((unsigned char)*c) && *c != '+')
			return false;
	for (const char *c = s; *c; c++)
		if (isspace((unsigned char)*c))
			return false;
	return true;
}

/* Appends the comma-separated addresses in value; all or nothing. */
static int add_aggregators(struct agent_config *cfg, const char *value, char *err, size_t errlen)
{
	char urls[AGENT_CONFIG_MAX_AGGREGATORS][AGENT_CONFIG_URL_MAX];
	size_t base = cfg->aggregators_set ? cfg->n_aggregators : 0, n = 0;
	const char *p = value;

	for (;;) {
		const char *start, *end, *comma = strchr(p, ',');
		size_t len;

		end = comma ? comma : p + strlen(p);
		start = p;
		while (start < end && isspace((unsigned char)*start))
			start++;
		while (end > start && isspace((unsigned char)end[-1]))
			end--;
		len = (size_t)(end - start);
		if (len == 0) {
			set_err(err, errlen, "bad value for \"aggregator\": \"%s\" (empty address)", value);
			return -EINVAL;
		}
		if (base + n >= AGENT_CONFIG_MAX_AGGREGATORS) {
			set_err(err, errlen, "too many aggregator addresses (at most %d)",
				AGENT_CONFIG_MAX_AGGREGATORS);
			return -E2BIG;
		}
		if (len >= AGENT_CONFIG_URL_MAX) {
			set_err(err, errlen, "bad value for \"aggregator\": address longer than %d bytes",
				AGENT_CONFIG_URL_MAX - 1);
			return -EINVAL;
		}
		memcpy(urls[n], start, len);
		urls[n][len] = '\0';
		if (!valid_url(urls[n])) {
			set_err(err, errlen,
				"bad value for \"aggregator\": \"%s\" (expected an address such as tcp://host:7470)",
				urls[n]);
			return -EINVAL;
		}
		n++;
		if (!comma)
			break;
		p = comma + 1;
	}
	memcpy(cfg->aggregators[base], urls, n * sizeof(urls[0]));
	cfg->n_aggregators = base + n;
	cfg->aggregators_set = true;
	return 0;
}

int agent_config_label_set(struct agent_config *cfg, const char *key, const char *value,
			   char *err, size_t errlen)
{
	size_t i;

	if (!*key || strlen(key) >= AGENT_CONFIG_LABEL_KEY_MAX) {
		set_err(err, errlen, "bad label name \"%s\" (1 to %d bytes)", key,
			AGENT_CONFIG_LABEL_KEY_MAX - 1);
		return -EINVAL;
	}
	if (strlen(value) >= AGENT_CONFIG_LABEL_VALUE_MAX) {
		set_err(err, errlen, "bad value for label \"%s\": longer than %d bytes", key,
			AGENT_CONFIG_LABEL_VALUE_MAX - 1);
		return -EINVAL;
	}
	for (i = 0; i < cfg->n_labels; i++)
		if (strcmp(cfg->labels[i].key, key) == 0)
			break;
	if (i == AGENT_CONFIG_MAX_LABELS) {
		set_err(err, errlen, "too many labels (at most %d)", AGENT_CONFIG_MAX_LABELS);
		return -E2BIG;
	}
	snprintf(cfg->labels[i].key, sizeof(cfg->labels[i].key), "%s", key);
	snprintf(cfg->labels[i].value, sizeof(cfg->labels[i].value), "%s", value);
	if (i == cfg->n_labels)
		cfg->n_labels++;
	return 0;
}

static int set_path(char *dst, size_t cap, const char *key, const char *value, char *err,
		    size_t errlen)
{
	if (value[0] != '/' || strlen(value) >= cap) {
		set_err(err, errlen, "bad value for \"%s\": \"%s\" (expected an absolute path)", key,
			value);
		return -EINVAL;
	}
	snprintf(dst, cap, "%s", value);
	return 0;
}

int agent_config_set(struct agent_config *cfg, const char *key, const char *value, char *err,
		     size_t errlen)
{
	char k[32];
	size_t i;

	for (i = 0; key[i] && i < sizeof(k) - 1; i++)
		k[i] = key[i] == '-' ? '_' : key[i];
	k[i] = '\0';
	if (key[i]) {
		set_err(err, errlen, "unknown key \"%s\"", key);
		return -EINVAL;
	}

	if (strcmp(k, "aggregator") == 0)
		return add_aggregators(cfg, value, err, errlen);
	if (strcmp(k, "interval") == 0) {
		int64_t ns;

		if (sh_parse_duration(value, &ns) < 0 || ns < SH_NS_PER_SEC || ns > 3600 * SH_NS_PER_SEC) {
			set_err(err, errlen,
				"bad value for \"interval\": \"%s\" (expected a duration from 1s to 1h, such as 10s)",
				value);
			return -EINVAL;
		}
		cfg->interval_ns = ns;
		return 0;
	}
	if (strcmp(k, "snapshot_every") == 0) {
		if (parse_u32(value, 1, 1000000, &cfg->snapshot_every) < 0) {
			set_err(err, errlen,
				"bad value for \"snapshot_every\": \"%s\" (expected a whole number of intervals, at least 1)",
				value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "spool_dir") == 0)
		return set_path(cfg->spool_dir, sizeof(cfg->spool_dir), "spool_dir", value, err, errlen);
	if (strcmp(k, "proc_root") == 0)
		return set_path(cfg->proc_root, sizeof(cfg->proc_root), "proc_root", value, err, errlen);
	if (strcmp(k, "tls_ca") == 0)
		return set_path(cfg->tls_ca, sizeof(cfg->tls_ca), "tls_ca", value, err, errlen);
	if (strcmp(k, "tls_cert") == 0)
		return set_path(cfg->tls_cert, sizeof(cfg->tls_cert), "tls_cert", value, err, errlen);
	if (strcmp(k, "tls_key") == 0)
		return set_path(cfg->tls_key, sizeof(cfg->tls_key), "tls_key", value, err, errlen);
	if (strcmp(k, "tls_server_name") == 0) {
		if (!value[0] || strlen(value) >= sizeof(cfg->tls_server_name) ||
		    strpbrk(value, " /:\t")) {
			set_err(err, errlen,
				"bad value for \"tls_server_name\": \"%s\" (expected a host name such as aggregator.example.com)",
				value);
			return -EINVAL;
		}
		snprintf(cfg->tls_server_name, sizeof(cfg->tls_server_name), "%s", value);
		return 0;
	}
	if (strcmp(k, "spool_cap") == 0 || strcmp(k, "recorder_size") == 0) {
		uint64_t v;

		if (parse_size(value, &v) < 0 || v == 0) {
			set_err(err, errlen,
				"bad value for \"%s\": \"%s\" (expected a size such as 64MiB, 512KiB, 1GiB or bytes)",
				k, value);
			return -EINVAL;
		}
		if (k[0] == 's')
			cfg->spool_cap_bytes = v;
		else
			cfg->recorder_bytes = v;
		return 0;
	}
	if (strcmp(k, "drop_privileges") == 0) {
		if (parse_bool(value, &cfg->drop_privileges) < 0) {
			set_err(err, errlen,
				"bad value for \"drop_privileges\": \"%s\" (expected true or false)",
				value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "spool_fsync") == 0) {
		if (parse_bool(value, &cfg->spool_fsync) < 0) {
			set_err(err, errlen, "bad value for \"spool_fsync\": \"%s\" (expected true or false)",
				value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "log_level") == 0) {
		static const char *const levels[] = { "error", "warn", "info", "debug" };

		for (i = 0; i < 4; i++) {
			if (strcmp(value, levels[i]) == 0) {
				snprintf(cfg->log_level, sizeof(cfg->log_level), "%s", value);
				return 0;
			}
		}
		set_err(err, errlen,
			"bad value for \"log_level\": \"%s\" (expected error, warn, info or debug)", value);
		return -EINVAL;
	}
	if (strcmp(k, "sample_hz") == 0) {
		if (parse_u32(value, 1, 10000, &cfg->sample_hz) < 0) {
			set_err(err, errlen, "bad value for \"sample_hz\": \"%s\" (expected 1 to 10000)",
				value);
			return -EINVAL;
		}
		return 0;
	}
	for (i = 0; i < sizeof(thresholds) / sizeof(thresholds[0]); i++) {
		int64_t ns;

		if (strcmp(k, thresholds[i].key) != 0)
			continue;
		if (sh_parse_duration(value, &ns) < 0 || ns < 10000 || ns > 60 * SH_NS_PER_SEC) {
			set_err(err, errlen,
				"bad value for \"%s\": \"%s\" (expected a duration from 10us to 60s, such as 5ms)",
				k, value);
			return -EINVAL;
		}
		*(int64_t *)((char *)cfg + thresholds[i].off) = ns;
		return 0;
	}
	for (i = 0; i < sizeof(capture_durations) / sizeof(capture_durations[0]); i++) {
		int64_t ns;

		if (strcmp(k, capture_durations[i].key) != 0)
			continue;
		if (sh_parse_duration(value, &ns) < 0 || ns < 0 || ns > 3600 * SH_NS_PER_SEC) {
			set_err(err, errlen,
				"bad value for \"%s\": \"%s\" (expected a duration from 0 to 1h, such as 30s)",
				k, value);
			return -EINVAL;
		}
		*(int64_t *)((char *)cfg + capture_durations[i].off) = ns;
		return 0;
	}
	if (strcmp(k, "capture_max") == 0 || strcmp(k, "capture_chunk") == 0) {
		uint64_t v;
		bool chunk = k[8] == 'c';

		if (parse_size(value, &v) < 0 || v < 1024 || (chunk && v > 4 * MiB)) {
			set_err(err, errlen,
				"bad value for \"%s\": \"%s\" (expected a size from 1KiB%s, such as %s)", k,
				value, chunk ? " to 4MiB" : "", chunk ? "256KiB" : "64MiB");
			return -EINVAL;
		}
		*(chunk ? &cfg->capture_chunk_bytes : &cfg->capture_max_bytes) = v;
		return 0;
	}
	if (strcmp(k, "control") == 0) {
		if (strcmp(value, "auto") != 0 && strcmp(value, "off") != 0 &&
		    strncmp(value, "tcp://", 6) != 0 && strncmp(value, "tls+tcp://", 10) != 0 &&
		    strncmp(value, "ipc://", 6) != 0) {
			set_err(err, errlen,
				"bad value for \"control\": \"%s\" (expected auto, off or an address such as tcp://aggregator:7472)",
				value);
			return -EINVAL;
		}
		if (strlen(value) >= sizeof(cfg->control)) {
			set_err(err, errlen, "bad value for \"control\": too long");
			return -EINVAL;
		}
		snprintf(cfg->control, sizeof(cfg->control), "%s", value);
		return 0;
	}
	if (strcmp(k, "detectors") == 0) {
		if (strlen(value) >= sizeof(cfg->detectors)) {
			set_err(err, errlen, "bad value for \"detectors\": too long");
			return -EINVAL;
		}
		snprintf(cfg->detectors, sizeof(cfg->detectors), "%s", value);
		return 0;
	}
	if (strcmp(k, "stall_hz") == 0 || strcmp(k, "event_burst") == 0 ||
	    strcmp(k, "event_rate") == 0) {
		uint32_t *dst = k[0] == 's' ? &cfg->stall_hz :
				k[6] == 'b' ? &cfg->event_burst : &cfg->event_rate;

		if (parse_u32(value, k[0] == 's' ? 10 : 1, k[0] == 's' ? 10000 : 100000, dst) < 0) {
			set_err(err, errlen, "bad value for \"%s\": \"%s\" (expected a whole number%s)", k,
				value, k[0] == 's' ? " from 10 to 10000" : " from 1 to 100000");
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "probe") == 0) {
		if (strncmp(value, "uprobe:", 7) != 0 && strncmp(value, "usdt:", 5) != 0) {
			set_err(err, errlen,
				"bad value for \"probe\": \"%s\" (expected uprobe:PATH:FUNCTION[:THRESHOLD] "
				"or usdt:PATH:PROVIDER:NAME[:THRESHOLD])",
				value);
			return -EINVAL;
		}
		if (cfg->n_probes >= AGENT_CONFIG_MAX_PROBES) {
			set_err(err, errlen, "too many probes (at most %d)", AGENT_CONFIG_MAX_PROBES);
			return -E2BIG;
		}
		if (strlen(value) >= sizeof(cfg->probes[0])) {
			set_err(err, errlen, "bad value for \"probe\": too long");
			return -EINVAL;
		}
		snprintf(cfg->probes[cfg->n_probes++], sizeof(cfg->probes[0]), "%s", value);
		return 0;
	}
	if (strcmp(k, "topk_stacks") == 0) {
		if (parse_u32(value, 1, 100000, &cfg->topk_stacks) < 0) {
			set_err(err, errlen, "bad value for \"topk_stacks\": \"%s\" (expected 1 to 100000)",
				value);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(k, "label") == 0) {
		const char *eq = strchr(value, '=');
		char lk[AGENT_CONFIG_LABEL_KEY_MAX];
		size_t len;

		if (!eq) {
			set_err(err, errlen, "bad value for \"label\": \"%s\" (expected key=value)", value);
			return -EINVAL;
		}
		len = (size_t)(eq - value);
		if (len == 0 || len >= sizeof(lk)) {
			set_err(err, errlen, "bad value for \"label\": \"%s\" (label name must be 1 to %d bytes)",
				value, AGENT_CONFIG_LABEL_KEY_MAX - 1);
			return -EINVAL;
		}
		memcpy(lk, value, len);
		lk[len] = '\0';
		return agent_config_label_set(cfg, lk, eq + 1, err, errlen);
	}
	set_err(err, errlen, "unknown key \"%s\"", key);
	return -EINVAL;
}

/* libinih state: the config being built, and the first error with its line
 * (inih counts one line per reader call; so does line_cb). */
struct load_ctx {
	struct agent_config *cfg;
	FILE *f;
	int line;
	int err_line;
	char msg[512];
};

static char *line_cb(char *str, int num, void *stream)
{
	struct load_ctx *ctx = stream;
	size_t len;
	int c;

	if (!fgets(str, num, ctx->f))
		return NULL;
	ctx->line++;
	len = strlen(str);
	if (len > 0 && str[len - 1] != '\n' && !feof(ctx->f)) {
		/* longer than inih's line buffer: drop the rest, report it */
		while ((c = fgetc(ctx->f)) != EOF && c != '\n')
			;
		if (!ctx->err_line) {
			ctx->err_line = ctx->line;
			snprintf(ctx->msg, sizeof(ctx->msg), "line too long (at most %d characters)",
				 num - 2);
		}
	}
	return str;
}

static int handler_cb(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;
	char msg[sizeof(ctx->msg)];
	int err;

	if (strcmp(section, "labels") == 0) {
		err = agent_config_label_set(ctx->cfg, name, value, msg, sizeof(msg));
	} else if (section[0] == '\0' || strcmp(section, "agent") == 0) {
		if (strcmp(name, "label") == 0) {
			snprintf(msg, sizeof(msg), "unknown key \"label\" (put labels in [labels])");
			err = -EINVAL;
		} else {
			err = agent_config_set(ctx->cfg, name, value, msg, sizeof(msg));
		}
	} else {
		snprintf(msg, sizeof(msg), "unknown section [%s]", section);
		err = -EINVAL;
	}
	if (err == 0)
		return 1;
	if (!ctx->err_line) {
		ctx->err_line = ctx->line;
		snprintf(ctx->msg, sizeof(ctx->msg), "%s", msg);
	}
	return 0;
}

int agent_config_load(struct agent_config *cfg, const char *path, char *err, size_t errlen)
{
	struct load_ctx ctx = { 0 };
	struct agent_config *tmp = NULL;
	int rc, ret = 0;

	tmp = malloc(sizeof(*tmp));
	if (!tmp) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*tmp = *cfg;
	ctx.cfg = tmp;
	ctx.f = fopen(path, "re");
	if (!ctx.f) {
		ret = -errno;
		set_err(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
		goto cleanup;
	}
	rc = ini_parse_stream(line_cb, &ctx, handler_cb, &ctx);
	if (rc == 0 && ferror(ctx.f)) {
		ret = -EIO;
		set_err(err, errlen, "could not read \"%s\"", path);
		goto cleanup;
	}
	if (rc < 0) {
		ret = -ENOMEM;
		set_err(err, errlen, "%s: out of memory", path);
		goto cleanup;
	}
	if (ctx.err_line && (rc == 0 || ctx.err_line <= rc)) {
		ret = -EINVAL;
		set_err(err, errlen, "%s:%d: %s", path, ctx.err_line, ctx.msg);
		goto cleanup;
	}
	if (rc > 0) {
		ret = -EINVAL;
		set_err(err, errlen, "%s:%d: syntax error (expected [section], key = value or a comment)",
			path, rc);
		goto cleanup;
	}
	*cfg = *tmp;
cleanup:
	if (ctx.f)
		fclose(ctx.f);
	free(tmp);
	return ret;
}
