/* config.h: the agent's configuration: defaults, an INI file (libinih,
 * sections [agent] and [labels]) and command-line flags, all through one
 * setter so "--interval 5s" and "interval = 5s" mean the same. */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* AGENT_CONFIG_MAX_AGGREGATORS is how many aggregator addresses fit. */
#define AGENT_CONFIG_MAX_AGGREGATORS 8
/* AGENT_CONFIG_URL_MAX is the size of one aggregator address, with NUL. */
#define AGENT_CONFIG_URL_MAX 256
/* AGENT_CONFIG_MAX_LABELS is how many labels fit. */
#define AGENT_CONFIG_MAX_LABELS 32
/* AGENT_CONFIG_LABEL_KEY_MAX is the size of a label key, with NUL. */
#define AGENT_CONFIG_LABEL_KEY_MAX 64
/* AGENT_CONFIG_LABEL_VALUE_MAX is the size of a label value, with NUL. */
#define AGENT_CONFIG_LABEL_VALUE_MAX 256

/* agent_config_label is one key=value from [labels] (or --label k=v). */
/* AGENT_CONFIG_MAX_PROBES is how many user-defined probes may be set. */
#define AGENT_CONFIG_MAX_PROBES 16

struct agent_config_label {
	char key[AGENT_CONFIG_LABEL_KEY_MAX];
	char value[AGENT_CONFIG_LABEL_VALUE_MAX];
};

/* agent_config is a plain value: all strings are buffers inside it, so it
 * may be copied with '=' and needs no freeing (agent_config_free exists
 * for symmetry and future heap fields). Keys are named in comments. */
struct agent_config {
	char aggregators[AGENT_CONFIG_MAX_AGGREGATORS][AGENT_CONFIG_URL_MAX]; /* aggregator */
	size_t n_aggregators;
	bool aggregators_set; /* private: an explicit aggregator replaced the default */
	int64_t interval_ns;       /* interval: summary interval, duration (10s) */
	uint32_t snapshot_every;   /* snapshot_every: intervals between full process lists (30) */
	char spool_dir[PATH_MAX];  /* spool_dir (/var/lib/spikehound/spool) */
	uint64_t spool_cap_bytes;  /* spool_cap: size (64MiB) */
	bool spool_fsync;          /* spool_fsync: bool (true) */
	bool drop_privileges;      /* drop_privileges: keep only the capabilities needed after
				    * the BPF setup (privs.h) (true) */
	struct agent_config_label labels[AGENT_CONFIG_MAX_LABELS]; /* [labels] k = v */
	size_t n_labels;
	char proc_root[PATH_MAX];  /* proc_root (/proc) */
	char log_level[16];        /* log_level: error, warn, info, debug (info) */
	uint64_t recorder_bytes;   /* recorder_size: size (32MiB) */
	uint32_t sample_hz;        /* sample_hz: stack samples per second per CPU (99) */
	uint32_t topk_stacks;      /* topk_stacks: folded stacks per summary (50) */
	/* spike detectors: thresholds (ns) above which an event is reported */
	char detectors[256];       /* detectors: comma list of names, or "all" (all) */
	int64_t runq_threshold_ns;      /* runq_threshold (10ms) */
	int64_t syscall_threshold_ns;   /* syscall_threshold (5ms) */
	int64_t mmap_lock_threshold_ns; /* mmap_lock_threshold (1ms) */
	int64_t reclaim_threshold_ns;   /* reclaim_threshold (10ms) */
	int64_t softirq_threshold_ns;   /* softirq_threshold (10ms) */
	int64_t stall_threshold_ns;     /* stall_threshold (20ms) */
	uint32_t stall_hz;              /* stall_hz: CPU stall sentinel frequency (250) */
	uint32_t event_burst;           /* event_burst: events per kind sent at once (20) */
	uint32_t event_rate;            /* event_rate: events per kind per minute after the burst (60) */
	char probes[AGENT_CONFIG_MAX_PROBES][AGENT_CONFIG_URL_MAX]; /* probe (repeatable):
					 * uprobe:PATH:FUNCTION[:THRESHOLD] or usdt:PATH:PROVIDER:NAME[:THRESHOLD] */
	size_t n_probes;
	/* TLS (aggregator and control addresses as tls+tcp://): PEM files */
	char tls_ca[PATH_MAX];          /* tls_ca: CAs the aggregator's certificate must chain to */
	char tls_cert[PATH_MAX];        /* tls_cert, tls_key: this agent's certificate and key, */
	char tls_key[PATH_MAX];         /* presented when the aggregator asks (mutual TLS) */
	char tls_server_name[256];      /* tls_server_name: the name the aggregator's certificate
					 * must carry (default: the address's host) */
	/* captures (the control plane and local triggers) */
	char control[AGENT_CONFIG_URL_MAX]; /* control: the aggregator's control address; "auto"
					     * (default): the first aggregator's host, port + 2;
					     * "off": take no commands */
	uint64_t capture_max_bytes;     /* capture_max: compressed size cap of a capture (64MiB) */
	uint64_t capture_chunk_bytes;   /* capture_chunk: chunk size on the wire (256KiB) */
	int64_t capture_local_min_ns;   /* capture_local: a spike at least this long makes the agent
					 * capture itself (0 = off; default 1s) */
	int64_t capture_local_interval_ns; /* capture_local_every: at most one local capture per (10m) */
	int64_t capture_before_ns;      /* capture_before: local captures start this long before (30s) */
	int64_t capture_after_ns;       /* capture_after: and end this long after the spike (5s) */
};

/* agent_config_defaults fills *cfg with the built-in defaults. */
void agent_config_defaults(struct agent_config *cfg);

/* agent_config_set sets one [agent] key from its text form, exactly as in
 * the file; '-' in key counts as '_' so flags can be spelled --spool-cap.
 * "aggregator" appends (comma-separated lists allowed; the first explicit
 * one replaces the default); "label" takes "key=value" and adds or
 * replaces a label. Returns 0, or -EINVAL (unknown key, bad value) /
 * -E2BIG (too many aggregators or labels) with a message in err (errlen
 * bytes, may be NULL/0), e.g. `bad value for "interval": "5q" (expected a
 * duration such as 10s)`. On error *cfg is unchanged. */
int agent_config_set(struct agent_config *cfg, const char *key, const char *value, char *err,
		     size_t errlen);

/* agent_config_load reads the INI file at path over *cfg (normally after
 * agent_config_defaults; flags are applied after it). Sections: [agent]
 * (keys of agent_config_set; keys before any section count as [agent])
 * and [labels]. Returns 0, -errno if the file cannot be read, or -EINVAL
 * with "path:line: message" in err for syntax errors, unknown sections or
 * keys and bad values. All or nothing: on error *cfg is unchanged. */
int agent_config_load(struct agent_config *cfg, const char *path, char *err, size_t errlen);

/* agent_config_label_set adds or replaces one label. Returns 0, -EINVAL
 * (empty or overlong key or value) or -E2BIG (table full), with a message
 * in err. */
int agent_config_label_set(struct agent_config *cfg, const char *key, const char *value,
			   char *err, size_t errlen);

/* agent_config_control_url writes the control-plane address to dial into
 * buf: the "control" key, or for "auto" the first aggregator's address
 * with its port + 2 (tcp://agg:7470 -> tcp://agg:7472). Returns 0, or
 * -ENOENT when commands are off or no address can be derived (buf "").*/
int agent_config_control_url(const struct agent_config *cfg, char *buf, size_t len);

/* agent_config_free releases what *cfg owns (nothing today) and resets it
 * to zero; safe to call twice. */
void agent_config_free(struct agent_config *cfg);

#endif
