/* main.c: fleet-sim, a fleet of synthetic spikehound agents in one process
 * speaking the real wire protocol to a real aggregator (see README.md):
 * options, the scenario, signals; run.c does the work. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "log.h"
#include "run.h"
#include "scenario.h"
#include "timeutil.h"

#define MAX_BACKFILL_NS (29LL * 86400 * SH_NS_PER_SEC) /* the aggregator takes 30 days */
#define RECORDER_SPAN_NS (120 * SH_NS_PER_SEC)	       /* as a real agent's default recorder */
#define CONTROL_WAIT_MS 20000			       /* as the real agent's polls */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	if (stop_requested < 2)
		stop_requested++;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fleet-sim [options]\n"
		"Simulates a fleet of spikehound agents (summaries and spike events over the real\n"
		"wire protocol) against a running spikehound-aggregator.\n"
		"\n"
		"  --aggregator URL         ingest address (default tcp://127.0.0.1:7470)\n"
		"  --scenario FILE          scenario (INI, see tests/fleet/README.md); default: a\n"
		"                           built-in fleet with baseline noise and no causes\n"
		"  --hosts N                number of hosts (overrides the scenario's)\n"
		"  --seed N                 random seed (default 1): same seed, same fleet and spikes\n"
		"  --interval DUR           live summary interval (default: the scenario's, 10s)\n"
		"  --backfill DUR           first generate history from now-DUR to now, as fast as\n"
		"                           the aggregator acknowledges (at most 29d)\n"
		"  --backfill-interval DUR  summary interval of that history (default 300s, <= 1h)\n"
		"  --backfill-step DUR      history summaries carry one metric second per DUR\n"
		"                           (default 30s)\n"
		"  --duration DUR           run live until DUR after the start; without it: live\n"
		"                           until stopped, or no live part after --backfill\n"
		"  --concurrency N          requests in flight (default 64)\n"
		"  --batch N                messages per request at most (default 20)\n"
		"  --sockets N              connections to the aggregator (default 4)\n"
		"  --timeout DUR            reply timeout before a resend (default 30s)\n"
		"  --max-request-bytes N    request size limit (default 4194304)\n"
		"  --truth FILE             write the ground truth (JSON lines, see fleet-spec)\n"
		"  --progress DUR           progress line on stderr every DUR (default 5s; 0: none)\n"
		"  --drain DUR              after SIGINT/SIGTERM wait this long for acks (default 10s)\n"
		"  --control URL|off        control plane address: every host long-polls it for\n"
		"                           capture commands (default: the --aggregator address\n"
		"                           with its port + 2, if it has one; off: none)\n"
		"  --capture-chunk SIZE     captures are sent in chunks of SIZE (default 256KiB;\n"
		"                           1KiB to 4MiB; K, KiB, M, MiB suffixes)\n"
		"  --log-level LEVEL        error, warn, info (default) or debug\n"
		"  --check                  only check the scenario file\n"
		"  -h, --help               this help\n"
		"\n"
		"Hosts keep the last 120 s of what they generated live (their flight recorder) and\n"
		"answer capture commands from it like the real agent.\n"
		"\n"
		"Totals go to stdout as \"name value\" lines. Exit status: 0 when every message\n"
		"was acknowledged, 1 when some were rejected or not acknowledged, 2 for a usage\n"
		"or scenario error, 3 when the simulation could not run.\n");
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* parse_size reads a byte count with an optional K, KiB, M or MiB suffix. */
static int parse_size(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {{"", 1},	    {"B", 1},	    {"K", 1024},
		     {"KiB", 1024}, {"M", 1 << 20}, {"MiB", 1 << 20}};
	char *end;
	unsigned long long v;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			if (v > hi / units[i].mult || v * units[i].mult < lo)
				return -EINVAL;
			*out = v * units[i].mult;
			return 0;
		}
	}
	return -EINVAL;
}

/* control_url_of derives the control address from the ingest address
 * "scheme://host:PORT" (port + 2); returns 0, or -EINVAL when it has no port. */
static int control_url_of(const char *url, char *out, size_t len)
{
	const char *colon = strrchr(url, ':');
	char *end;
	unsigned long port;

	if (!colon || colon[1] == '\0' || colon[1] == '/' || !strstr(url, "://"))
		return -EINVAL;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port + 2 > 65535)
		return -EINVAL;
	snprintf(out, len, "%.*s:%lu", (int)(colon - url), url, port + 2);
	return 0;
}

static int parse_dur(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	int64_t v;

	if (sh_parse_duration(s, &v) != 0 || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		O_AGG = 256,
		O_SCEN,
		O_HOSTS,
		O_SEED,
		O_INTERVAL,
		O_BACKFILL,
		O_BF_INTERVAL,
		O_BF_STEP,
		O_DURATION,
		O_CONC,
		O_BATCH,
		O_SOCKETS,
		O_TIMEOUT,
		O_MAXREQ,
		O_TRUTH,
		O_PROGRESS,
		O_DRAIN,
		O_LOG,
		O_CHECK,
		O_CONTROL,
		O_CHUNK,
	};
	static const struct option longopts[] = {
		{"aggregator", required_argument, NULL, O_AGG},
		{"scenario", required_argument, NULL, O_SCEN},
		{"hosts", required_argument, NULL, O_HOSTS},
		{"seed", required_argument, NULL, O_SEED},
		{"interval", required_argument, NULL, O_INTERVAL},
		{"backfill", required_argument, NULL, O_BACKFILL},
		{"backfill-interval", required_argument, NULL, O_BF_INTERVAL},
		{"backfill-step", required_argument, NULL, O_BF_STEP},
		{"duration", required_argument, NULL, O_DURATION},
		{"concurrency", required_argument, NULL, O_CONC},
		{"batch", required_argument, NULL, O_BATCH},
		{"sockets", required_argument, NULL, O_SOCKETS},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"max-request-bytes", required_argument, NULL, O_MAXREQ},
		{"truth", required_argument, NULL, O_TRUTH},
		{"progress", required_argument, NULL, O_PROGRESS},
		{"drain", required_argument, NULL, O_DRAIN},
		{"log-level", required_argument, NULL, O_LOG},
		{"check", no_argument, NULL, O_CHECK},
		{"control", required_argument, NULL, O_CONTROL},
		{"capture-chunk", required_argument, NULL, O_CHUNK},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct fsim_run_opts o = {
		.url = "tcp://127.0.0.1:7470",
		.seed = 1,
		.duration_ns = -2, /* not given */
		.backfill_interval_ns = 300 * SH_NS_PER_SEC,
		.backfill_step_ns = 30 * SH_NS_PER_SEC,
		.concurrency = 64,
		.batch = 20,
		.sockets = 4,
		.timeout_ms = 30000,
		.max_request_bytes = 4 << 20,
		.progress_ns = 5 * SH_NS_PER_SEC,
		.drain_ns = 10 * SH_NS_PER_SEC,
		.control_wait_ms = CONTROL_WAIT_MS,
		.capture_chunk_bytes = 256 << 10,
		.recorder_span_ns = RECORDER_SPAN_NS,
	};
	const char *control = NULL;
	char control_buf[512];
	struct fsim_scenario sc;
	const char *scenario = NULL, *bad = NULL;
	uint64_t hosts = 0, u;
	int64_t interval = 0, d;
	char err[1024];
	bool check = false;
	struct sigaction sa;
	int opt, rv;

	sh_log_set_prog("fleet-sim");
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage(stdout);
			return 0;
		case O_AGG:
			o.url = optarg;
			break;
		case O_SCEN:
			scenario = optarg;
			break;
		case O_HOSTS:
			if (parse_u64(optarg, 1, 1000000, &hosts))
				bad = "--hosts: expected a number from 1 to 1000000";
			break;
		case O_SEED:
			if (parse_u64(optarg, 0, UINT64_MAX, &o.seed))
				bad = "--seed: expected a non-negative number";
			break;
		case O_INTERVAL:
			if (parse_dur(optarg, SH_NS_PER_SEC, 3600 * SH_NS_PER_SEC, &interval))
				bad = "--interval: expected a duration from 1s to 1h";
			break;
		case O_BACKFILL:
			if (parse_dur(optarg, 1, MAX_BACKFILL_NS, &o.backfill_ns))
				bad = "--backfill: expected a duration up to 29d (the aggregator refuses data "
				      "older than 30 days)";
			break;
		case O_BF_INTERVAL:
			if (parse_dur(optarg, SH_NS_PER_SEC, 3600 * SH_NS_PER_SEC,
				      &o.backfill_interval_ns))
				bad = "--backfill-interval: expected a duration from 1s to 1h (the aggregator "
				      "refuses longer summaries)";
			break;
		case O_BF_STEP:
			if (parse_dur(optarg, SH_NS_PER_SEC, 3600 * SH_NS_PER_SEC,
				      &o.backfill_step_ns))
				bad = "--backfill-step: expected a duration from 1s to 1h";
			break;
		case O_DURATION:
			if (parse_dur(optarg, 0, 3650LL * 86400 * SH_NS_PER_SEC, &o.duration_ns))
				bad = "--duration: expected a duration";
			break;
		case O_CONC:
			if (parse_u64(optarg, 1, 4096, &u))
				bad = "--concurrency: expected a number from 1 to 4096";
			o.concurrency = (int)u;
			break;
		case O_BATCH:
			if (parse_u64(optarg, 1, 1000, &u))
				bad = "--batch: expected a number from 1 to 1000 (the aggregator's limit)";
			o.batch = (int)u;
			break;
		case O_SOCKETS:
			if (parse_u64(optarg, 1, 64, &u))
				bad = "--sockets: expected a number from 1 to 64";
			o.sockets = (int)u;
			break;
		case O_TIMEOUT:
			if (parse_dur(optarg, 100 * SH_NS_PER_MS, 3600 * SH_NS_PER_SEC, &d))
				bad = "--timeout: expected a duration from 100ms to 1h";
			o.timeout_ms = (int)(d / SH_NS_PER_MS);
			break;
		case O_MAXREQ:
			if (parse_u64(optarg, 4096, 1ULL << 30, &u))
				bad = "--max-request-bytes: expected a size from 4096 to 1073741824";
			o.max_request_bytes = (size_t)u;
			break;
		case O_TRUTH:
			o.truth_path = optarg;
			break;
		case O_PROGRESS:
			if (parse_dur(optarg, 0, 86400 * SH_NS_PER_SEC, &o.progress_ns))
				bad = "--progress: expected a duration";
			break;
		case O_DRAIN:
			if (parse_dur(optarg, 0, 86400 * SH_NS_PER_SEC, &o.drain_ns))
				bad = "--drain: expected a duration";
			break;
		case O_LOG:
			if (sh_log_set_level(optarg) != 0)
				bad = "--log-level: expected error, warn, info or debug";
			break;
		case O_CHECK:
			check = true;
			break;
		case O_CONTROL:
			control = optarg;
			break;
		case O_CHUNK:
			if (parse_size(optarg, 1024, 4 << 20, &u))
				bad = "--capture-chunk: expected a size from 1KiB to 4MiB";
			o.capture_chunk_bytes = (size_t)u;
			break;
		default:
			usage(stderr);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "fleet-sim: %s, not \"%s\"\n", bad, optarg);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fleet-sim: unexpected argument \"%s\" (see --help)\n",
			argv[optind]);
		return 2;
	}
	if (o.backfill_step_ns > o.backfill_interval_ns)
		o.backfill_step_ns = o.backfill_interval_ns;
	if (control && strcmp(control, "off") == 0) {
		o.control_url = NULL;
	} else if (control) {
		o.control_url = control;
	} else if (control_url_of(o.url, control_buf, sizeof(control_buf)) == 0) {
		o.control_url = control_buf;
	} else {
		sh_info("no control plane: \"%s\" has no port to derive its address from "
			"(give --control URL)",
			o.url);
		o.control_url = NULL;
	}

	rv = scenario ? fsim_scenario_load(&sc, scenario, err, sizeof(err))
		      : fsim_scenario_defaults(&sc);
	if (rv != 0) {
		fprintf(stderr, "fleet-sim: %s\n", scenario ? err : "out of memory");
		return 2;
	}
	if (check) {
		printf("%s: ok: %u hosts, %zu causes\n", scenario ? scenario : "(defaults)",
		       sc.hosts, sc.n_causes);
		for (size_t i = 0; i < sc.n_causes; i++)
			printf("  [%s] %s %s, feature \"%s\"\n", sc.causes[i].name,
			       fsim_cause_type_names[sc.causes[i].type],
			       sc.causes[i].kind >= 0 ? fsim_kind_names[sc.causes[i].kind] : "-",
			       sc.causes[i].feature ? sc.causes[i].feature : "");
		fsim_scenario_fini(&sc);
		return 0;
	}
	o.sc = &sc;
	o.hosts = hosts ? (uint32_t)hosts : sc.hosts;
	o.interval_ns = interval ? interval : sc.interval_ns;
	if (o.duration_ns == -2)
		o.duration_ns = o.backfill_ns ? 0 : -1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	rv = fsim_run(&o, &stop_requested);
	fsim_scenario_fini(&sc);
	/* let nng's reaper finish what the closed sockets left to it */
	nng_fini();
	if (rv < 0) {
		fprintf(stderr, "fleet-sim: %s\n", strerror(-rv));
		return 3;
	}
	return rv;
}
