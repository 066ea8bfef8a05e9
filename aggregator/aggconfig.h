/* aggconfig.h: spikehound-aggregator's configuration: defaults, an INI
 * file ([aggregator] section) and command-line flags sharing one setter. */
#ifndef AGG_CONFIG_H
#define AGG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* struct agg_config holds every setting; strings are owned (malloc'd). */
struct agg_config {
	char *listen;       /* data plane, agents dial it: tcp://127.0.0.1:7470 */
	char *http;         /* query API: http://127.0.0.1:7471 */
	char *data_dir;     /* /var/lib/spikehound/aggregator */
	char *db;           /* PostgreSQL DSN; empty: embedded cluster in data_dir */
	char *pg_bindir;    /* PostgreSQL binaries for the embedded cluster; "" auto */
	char *log_level;    /* error|warn|info|debug */
	int writers;        /* ingest database connections */
	int retention_days; /* partitions older than this are dropped */
	int64_t stats_interval_ns;
	uint64_t max_request_bytes;
	/* the correlator (correlate.h): correlate_* keys */
	int64_t correlate_interval_ns;
	int64_t correlate_gap_ns;
	int correlate_min_hosts;
	int64_t correlate_lookback_ns;
	double correlate_burst_p;
	double correlate_recurring_p;
	double correlate_periodic_p;
	int correlate_min_events;
	int correlate_batch;
	int64_t correlate_suspects_interval_ns;
	int correlate_others_max;
	/* captures (capture.h, control.h): control_listen, capture_* keys */
	/* TLS of both planes (listen and control_listen as tls+tcp://): PEM
	 * files; tls_ca set = agents must present a certificate it signed */
	char *tls_cert, *tls_key, *tls_ca;
	char *control_listen;            /* agents dial it for commands; "auto" (default): listen's
					  * host with its port + 2 (tcp://127.0.0.1:7472); "" off */
	int64_t capture_before_ns;       /* window before the trigger time (30s) */
	int64_t capture_after_ns;        /* window after it (5s) */
	uint64_t capture_max_bytes;      /* compressed size cap per host (64MiB) */
	int64_t capture_auto_min_ns;     /* spikes this long trigger a capture (100ms; < 0 off) */
	int capture_auto_healthy;        /* healthy hosts asked for contrast (3) */
	int capture_auto_per_hour;       /* automatic captures per hour (30) */
	int64_t capture_auto_host_interval_ns; /* per host at most one per (10m) */
	int capture_retention_days;      /* (14) */
};

/* agg_config_defaults fills c with the defaults. Returns 0 or -ENOMEM. */
int agg_config_defaults(struct agg_config *c);

/* agg_config_set sets key to value (the same keys for the file and for
 * --key flags). Returns 0, or -EINVAL with a message in err. */
int agg_config_set(struct agg_config *c, const char *key, const char *value, char *err,
		   size_t errlen);

/* agg_config_load reads an INI file's [aggregator] section. Returns 0, or
 * a negative errno with "file:line: message" in err. */
int agg_config_load(struct agg_config *c, const char *path, char *err, size_t errlen);

/* agg_config_control_url writes the control-plane address to listen on
 * into buf (control_listen, or for "auto" the listen address with its port
 * + 2, as agents derive it too). Returns 0, or -ENOENT when the control
 * plane is off or no address can be derived (buf ""). */
int agg_config_control_url(const struct agg_config *c, char *buf, size_t len);

/* agg_config_free frees c's strings. */
void agg_config_free(struct agg_config *c);

#endif
