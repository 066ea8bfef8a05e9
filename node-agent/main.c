/* main.c: spikehound-agent: subcommand dispatch and flag parsing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "nngerr.h"
#if __has_include("record.h")
#include "record.h"
#define HAVE_RECORD 1
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: spikehound-agent [run] [options]        the always-on agent (daemon)\n"
		"       spikehound-agent record --seconds N [--folded | --json] [options]\n"
		"                                               record N seconds and print them\n"
		"       spikehound-agent --help | --version\n"
		"\n"
		"run options (each also settable as `key = value` in the config file's [agent]\n"
		"section, labels in [labels]; flags win over the file):\n"
		"  -c, --config FILE        read settings from FILE (see deploy/agent.conf.example)\n"
		"      --aggregator URL     aggregator to send to (repeatable or comma-separated;\n"
		"                           default tcp://127.0.0.1:7470)\n"
		"      --interval DUR       summary interval (default 10s)\n"
		"      --label KEY=VALUE    a label of this host (repeatable), e.g. --label role=redis\n"
		"      --spool-dir DIR      where unacknowledged messages wait\n"
		"                           (default /var/lib/spikehound/spool)\n"
		"      --spool-cap SIZE     spool size limit, oldest summaries dropped first (64MiB)\n"
		"      --spool-fsync BOOL   fsync each spooled message (default true)\n"
		"      --snapshot-every N   full process list every N intervals (default 30)\n"
		"      --proc-root DIR      read /proc from DIR (tests; default /proc)\n"
		"      --recorder-size SIZE flight recorder memory cap (default 32MiB)\n"
		"      --sample-hz N        stack samples per second per CPU (default 99)\n"
		"      --detectors LIST     spike detectors: all (default), none, or a comma list of\n"
		"                           runq, syscall, mmap_lock, reclaim, softirq, stall, probe, acct\n"
		"      --runq-threshold DUR, --syscall-threshold DUR, --mmap-lock-threshold DUR,\n"
		"      --reclaim-threshold DUR, --softirq-threshold DUR, --stall-threshold DUR\n"
		"                           report latencies over these (10ms, 5ms, 1ms, 10ms, 10ms, 20ms)\n"
		"      --stall-hz N         CPU stall sentinel frequency (default 250)\n"
		"      --event-burst N, --event-rate N\n"
		"                           events per kind sent at once (20), then per minute (60)\n"
		"      --probe SPEC         user-defined probe (repeatable):\n"
		"                           uprobe:PATH:FUNCTION[:THRESHOLD]  slow calls (default 5ms)\n"
		"                           usdt:PATH:PROVIDER:NAME[:THRESHOLD]  each hit, or hits whose\n"
		"                           arg0 (a latency in ns) is over THRESHOLD\n"
		"      --control URL|auto|off\n"
		"                           control plane to poll for capture commands (default\n"
		"                           auto: the first aggregator's host, its port + 2)\n"
		"      --capture-max SIZE, --capture-chunk SIZE\n"
		"                           compressed cap of one capture (64MiB), chunk size (256KiB)\n"
		"      --capture-local DUR  capture itself on a spike this long (default 1s; 0: never),\n"
		"                           at most once per --capture-local-every (10m), from\n"
		"                           --capture-before (30s) before to --capture-after (5s) after\n"
		"      --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --tls-server-name NAME\n"
		"                           TLS for tls+tcp:// addresses: CAs the aggregator's\n"
		"                           certificate must chain to, this agent's certificate\n"
		"                           and key (mutual TLS), the name the aggregator's\n"
		"                           certificate must carry (default: the address's host)\n"
		"      --drop-privileges BOOL\n"
		"                           after loading BPF keep only the capabilities still needed\n"
		"                           (default true)\n"
		"      --log-level LEVEL    error, warn, info (default) or debug\n"
		"\n"
		"Run `spikehound-agent record --help` for the recorder's options.\n");
}

/* run_main parses run's flags over the config and runs the daemon. */
static int run_main(int argc, char **argv)
{
	struct agent_config cfg;
	char err[512];
	const char *config_path = NULL;
	int rv;

	agent_config_defaults(&cfg);
	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
			config_path = argv[++i];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			config_path = argv[i] + 9;
	}
	if (config_path && (rv = agent_config_load(&cfg, config_path, err, sizeof(err))) != 0) {
		if (rv == -EINVAL)
			fprintf(stderr, "spikehound-agent: %s\n", err);
		else
			fprintf(stderr, "spikehound-agent: could not read \"%s\": %s\n", config_path,
				strerror(-rv));
		return 2;
	}
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i], *key, *val;
		char keybuf[64];

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
			i++;
			continue;
		}
		if (strncmp(arg, "--config=", 9) == 0)
			continue;
		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "spikehound-agent: unexpected argument \"%s\" (see --help)\n", arg);
			return 2;
		}
		key = arg + 2;
		val = strchr(key, '=');
		if (val && strncmp(key, "label=", 6) != 0) {
			snprintf(keybuf, sizeof(keybuf), "%.*s", (int)(val - key), key);
			key = keybuf;
			val++;
		} else {
			if (i + 1 >= argc) {
				fprintf(stderr, "spikehound-agent: %s needs a value (see --help)\n", arg);
				return 2;
			}
			val = argv[++i];
		}
		if (agent_config_set(&cfg, key, val, err, sizeof(err)) != 0) {
			fprintf(stderr, "spikehound-agent: --%s: %s\n", key, err);
			return 2;
		}
	}
	if (sh_log_set_level(cfg.log_level) != 0)
		sh_log_set_level("info");
	sh_nng_warn_unpatched("spikehound-agent");
	rv = agent_daemon_run(&cfg);
	agent_config_free(&cfg);
	/* let nng's reaper finish what the closed sockets left to it */
	nng_fini();
	return rv == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	sh_log_set_prog("spikehound-agent");
	if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
			 strcmp(argv[1], "help") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)) {
		printf("spikehound-agent %s (%s)\n", SH_VERSION, sh_nng_describe());
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "record") == 0) {
#ifdef HAVE_RECORD
		return agent_record_main(argc - 1, argv + 1);
#else
		fprintf(stderr, "spikehound-agent: record is not built in this version\n");
		return 1;
#endif
	}
	if (argc > 1 && strcmp(argv[1], "run") == 0)
		return run_main(argc - 2, argv + 2);
	if (argc > 1 && argv[1][0] != '-') {
		fprintf(stderr, "spikehound-agent: unknown command \"%s\" (see --help)\n", argv[1]);
		return 2;
	}
	return run_main(argc - 1, argv + 1);
}
