/* main.c: spikehound-aggregator, the fleet's collection daemon: flags and
 * config, the embedded PostgreSQL (or a given server), migrations, then
 * one libuv loop running ingest, the query API and housekeeping. */
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nng/nng.h>
#include <uv.h>

#include "aggconfig.h"
#include "aggserve.h"
#include "log.h"
#include "migrate.h"
#include "nngerr.h"
#include "pgembed.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: spikehound-aggregator [options]\n"
		"\n"
		"Collects summaries and spike events from spikehound agents into PostgreSQL\n"
		"and serves the query API the spikehound CLI uses.\n"
		"\n"
		"options (each also settable as `key = value` in the config file's\n"
		"[aggregator] section; flags win):\n"
		"  -c, --config FILE        read settings from FILE\n"
		"      --listen URL         data plane the agents dial (default tcp://127.0.0.1:7470;\n"
		"                           use tcp://0.0.0.0:7470 to accept a fleet)\n"
		"      --http URL           query API (default http://127.0.0.1:7471)\n"
		"      --data-dir DIR       state directory (default /var/lib/spikehound/aggregator);\n"
		"                           holds the embedded PostgreSQL cluster\n"
		"      --db DSN             use this PostgreSQL server instead of the embedded one,\n"
		"                           e.g. \"host=/run/postgresql dbname=spikehound\"\n"
		"      --pg-bindir DIR      PostgreSQL binaries for the embedded cluster (default: newest\n"
		"                           /usr/lib/postgresql/*/bin)\n"
		"      --writers N          database connections writing batches (default 2)\n"
		"      --retention-days N   keep N days of summaries and events (default 14)\n"
		"      --stats-interval DUR log self-metrics every DUR (default 60s)\n"
		"      --max-request-bytes SIZE  reject larger agent requests (default 8MiB)\n"
		"      --log-level LEVEL    error, warn, info (default) or debug\n"
		"      --control-listen URL control plane the agents dial for capture commands\n"
		"                           (default \"auto\": --listen's port + 2, tcp://127.0.0.1:7472;\n"
		"                           \"off\" disables captures)\n"
		"      --set tls_cert=FILE --set tls_key=FILE [--set tls_ca=FILE]\n"
		"                           TLS for tls+tcp:// listen addresses (data and control);\n"
		"                           with tls_ca, agents must present a certificate it signed\n"
		"      --set KEY=VALUE      any config file key, e.g. --set capture_auto_min=50ms\n"
		"                           or --set correlate_gap=2s (see\n"
		"                           deploy/aggregator.conf.example); repeatable\n"
		"      --migrate-only       apply database migrations and exit\n"
		"  -h, --help               show this help\n"
		"  -V, --version            show the version\n"
		"\n"
		"Signals: SIGTERM/SIGINT stop gracefully (stop accepting, commit, acknowledge, exit).\n");
}

static int connect_blocking(const char *dsn, PGconn **out)
{
	PGconn *conn = PQconnectdb(dsn);

	if (PQstatus(conn) != CONNECTION_OK) {
		sh_err("could not connect to \"%s\": %s", dsn, PQerrorMessage(conn));
		PQfinish(conn);
		return -ECONNREFUSED;
	}
	*out = conn;
	return 0;
}

/* prepare_db applies migrations and creates the time partitions. */
static int prepare_db(const char *dsn, int retention_days)
{
	PGconn *conn = NULL;
	char err[1024];
	int applied = 0, rv;

	if ((rv = connect_blocking(dsn, &conn)) != 0)
		return rv;
	rv = agg_migrate(conn, err, sizeof(err), &applied);
	if (rv != 0) {
		sh_err("could not migrate the database: %s", err);
		goto cleanup;
	}
	if (applied)
		sh_info("applied %d database migration(s)", applied);
	rv = agg_partitions_ensure(conn, 2, 3, retention_days, err, sizeof(err));
	if (rv < 0)
		sh_err("could not create partitions: %s", err);
	else
		rv = 0;
cleanup:
	PQfinish(conn);
	return rv;
}

int main(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_HTTP, O_DATA, O_DB, O_BINDIR, O_WRITERS, O_RET, O_STATS, O_MAXREQ,
	       O_LOG, O_CONTROL, O_MIGRATE, O_SET };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "http", required_argument, NULL, O_HTTP },
		{ "data-dir", required_argument, NULL, O_DATA },
		{ "db", required_argument, NULL, O_DB },
		{ "pg-bindir", required_argument, NULL, O_BINDIR },
		{ "writers", required_argument, NULL, O_WRITERS },
		{ "retention-days", required_argument, NULL, O_RET },
		{ "stats-interval", required_argument, NULL, O_STATS },
		{ "max-request-bytes", required_argument, NULL, O_MAXREQ },
		{ "log-level", required_argument, NULL, O_LOG },
		{ "control-listen", required_argument, NULL, O_CONTROL },
		{ "migrate-only", no_argument, NULL, O_MIGRATE },
		{ "set", required_argument, NULL, O_SET },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const keys[] = {
		[O_LISTEN - O_LISTEN] = "listen",     [O_HTTP - O_LISTEN] = "http",
		[O_DATA - O_LISTEN] = "data_dir",     [O_DB - O_LISTEN] = "db",
		[O_BINDIR - O_LISTEN] = "pg_bindir",  [O_WRITERS - O_LISTEN] = "writers",
		[O_RET - O_LISTEN] = "retention_days", [O_STATS - O_LISTEN] = "stats_interval",
		[O_MAXREQ - O_LISTEN] = "max_request_bytes", [O_LOG - O_LISTEN] = "log_level",
		[O_CONTROL - O_LISTEN] = "control_listen",
	};
	struct agg_config cfg;
	struct agg_pgembed *pg = NULL;
	struct agg_serve_opts so;
	const char *config_path = NULL, *dsn;
	char err[1024];
	bool migrate_only = false;
	int opt, rv, status = 1;

	sh_log_set_prog("spikehound-aggregator");
	if (agg_config_defaults(&cfg) != 0) {
		fprintf(stderr, "spikehound-aggregator: out of memory\n");
		return 1;
	}
	/* first pass: the config file, so flags override it */
	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
			config_path = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			config_path = argv[i] + 9;
	}
	if (config_path && agg_config_load(&cfg, config_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "spikehound-aggregator: %s\n", err);
		agg_config_free(&cfg);
		return 2;
	}
	while ((opt = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			break;
		case 'h':
			usage(stdout);
			agg_config_free(&cfg);
			return 0;
		case 'V':
			printf("spikehound-aggregator %s (%s)\n", SH_VERSION, sh_nng_describe());
			agg_config_free(&cfg);
			return 0;
		case O_MIGRATE:
			migrate_only = true;
			break;
		case O_SET: {
			char key[64];
			const char *eq = strchr(optarg, '=');

			if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof(key)) {
				fprintf(stderr, "spikehound-aggregator: --set \"%s\": expected KEY=VALUE\n",
					optarg);
				agg_config_free(&cfg);
				return 2;
			}
			snprintf(key, sizeof(key), "%.*s", (int)(eq - optarg), optarg);
			if (agg_config_set(&cfg, key, eq + 1, err, sizeof(err))) {
				fprintf(stderr, "spikehound-aggregator: --set %s: %s\n", key, err);
				agg_config_free(&cfg);
				return 2;
			}
			break;
		}
		default:
			if (opt >= O_LISTEN && opt <= O_CONTROL) {
				if (agg_config_set(&cfg, keys[opt - O_LISTEN], optarg, err, sizeof(err))) {
					fprintf(stderr, "spikehound-aggregator: --%s: %s\n",
						longopts[opt - O_LISTEN + 1].name, err);
					agg_config_free(&cfg);
					return 2;
				}
				break;
			}
			usage(stderr);
			agg_config_free(&cfg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "spikehound-aggregator: unexpected argument \"%s\" (see --help)\n",
			argv[optind]);
		agg_config_free(&cfg);
		return 2;
	}
	sh_log_set_level(cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	sh_nng_warn_unpatched("spikehound-aggregator");

	dsn = cfg.db;
	if (!dsn[0]) {
		struct agg_pgembed_opts po = { 0 };

		po.data_dir = cfg.data_dir;
		po.bindir = cfg.pg_bindir[0] ? cfg.pg_bindir : NULL;
		sh_info("starting the embedded PostgreSQL in %s/pg", cfg.data_dir);
		if (agg_pgembed_start(&po, &pg, err, sizeof(err)) != 0) {
			sh_err("could not start the embedded PostgreSQL: %s", err);
			goto cleanup;
		}
		dsn = agg_pgembed_dsn(pg);
	}
	if (prepare_db(dsn, cfg.retention_days) != 0)
		goto cleanup;
	if (migrate_only) {
		status = 0;
		goto cleanup;
	}

	memset(&so, 0, sizeof(so));
	so.cfg = &cfg;
	so.dsn = dsn;
	rv = agg_serve(&so);
	status = rv == 0 ? 0 : 1;
cleanup:
	if (pg) {
		sh_info("stopping the embedded PostgreSQL");
		if (agg_pgembed_stop(pg, true) != 0)
			status = 1;
	}
	agg_config_free(&cfg);
	/* let nng's reaper finish what the closed sockets left to it */
	nng_fini();
	return status;
}
