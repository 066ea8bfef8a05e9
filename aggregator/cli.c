/* cli.c: spikehound, the user's command-line client of the aggregator's
 * query API (aggregator/query.h). It sends one HTTP request with nng's
 * HTTP client, parses the JSON answer with jansson and prints aligned
 * tables, or the JSON as is with --json. Strings in the data come from
 * agents and are untrusted: control characters, C1 controls and bidi
 * overrides are printed escaped so they cannot drive the terminal.
 *
 * Exit codes: 0 success, 1 runtime error (aggregator unreachable, error
 * answer), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

#include "cli.h"

/* --- usage --- */

const char cli_usage_main[] =
	"usage: spikehound [--server URL] [--json] [--timeout DUR] COMMAND [OPTIONS]\n"
	"\n"
	"Ask the spikehound aggregator about latency spikes across the fleet.\n"
	"\n"
	"Commands:\n"
	"  hosts                        the hosts reporting to the aggregator\n"
	"  spikes --at TIME [--window DUR] [--kind K] [--label k=v]\n"
	"                               spike events on all hosts within TIME +/- DUR,\n"
	"                               grouped by incident\n"
	"  incidents [--since DUR]      fleet incidents (burst, periodic, recurring) and\n"
	"                               their top suspect\n"
	"  incident ID                  one incident: ranked suspects with their numbers,\n"
	"                               hosts, events\n"
	"  top --host H [--at TIME] [--window DUR]\n"
	"                               one host's per-second metrics and processes\n"
	"  stacks --host H [--from TIME] [--to TIME] [--folded]\n"
	"                               one host's on-CPU stacks merged over a time range\n"
	"  stats                        the aggregator's self-metrics\n"
	"  capture show|list|--host H   view and export captures, list them, ask for one\n"
	"  kernels [--since DUR] [--by kernel|label=KEY] [--html FILE]\n"
	"                               is it the new kernel? spike rates per cohort vs a baseline\n"
	"  help [COMMAND]               this text, or a command's\n"
	"\n"
	"Options (before or after the command):\n"
	"  --server URL    the aggregator's query API (default " DEFAULT_SERVER ",\n"
	"                  or $SPIKEHOUND_SERVER when set)\n"
	"  --json          print the aggregator's JSON answer as is\n"
	"  --timeout DUR   give up after DUR (default 10s)\n"
	"  -h, --help      show help (spikehound COMMAND --help for a command's)\n"
	"\n"
	"TIME: now, -60s, -5m (relative to now), 2025-11-22T10:21:07Z, 2025-11-22 10:21:07.250\n"
	"      (ISO 8601, UTC unless a zone like +02:00 is given), @1763806867 (Unix seconds)\n"
	"DUR:  250ms, 30s, 5m, 2h, 1d\n"
	"\n"
	"Examples:\n"
	"  spikehound hosts\n"
	"  spikehound spikes --at 2025-11-22T10:21:07Z\n"
	"  spikehound spikes --at -10m --window 10m\n"
	"  spikehound incidents --since 6h\n"
	"  spikehound incident 42\n"
	"  spikehound top --host web-01 --at @1763806867 --window 10s\n"
	"  spikehound --server http://aggregator.example:7471 --json stats\n"
	"\n"
	"Exit status: 0 success, 1 runtime error, 2 usage error.\n";

static const char usage_hosts[] =
	"usage: spikehound hosts [--limit N] [--json]\n"
	"\n"
	"List the hosts that report to the aggregator: hostname, kernel release of\n"
	"their last boot, labels, when they were last heard from, and how many\n"
	"summaries their agent's spool had to drop.\n"
	"\n"
	"  --limit N   show at most N hosts (default 10000)\n"
	"\n"
	"Examples:\n"
	"  spikehound hosts\n"
	"  spikehound --json hosts | jq '.hosts[].hostname'\n";

static const char usage_spikes[] =
	"usage: spikehound spikes --at TIME [--window DUR] [--kind K] [--label KEY=VALUE]\n"
	"                         [--limit N] [--json]\n"
	"\n"
	"List the spike events of every host between TIME - DUR and TIME + DUR,\n"
	"oldest first: when, where, what kind, how long, who suffered and the\n"
	"evidence the agent found (the culprit first). Spikes the correlator put\n"
	"into an incident are grouped under it with its top suspect; the others\n"
	"follow.\n"
	"\n"
	"  --at TIME          the time to search around (required)\n"
	"  --window DUR       how far to look on each side of TIME (default 10s)\n"
	"  --kind K           only spikes of kind K (mmap_lock_wait, syscall, runq,\n"
	"                     reclaim, softirq, cpu_stall, accounting, probe)\n"
	"  --label KEY=VALUE  only hosts with that label\n"
	"  --limit N          show at most N events (default 1000)\n"
	"\n"
	"TIME: now, -60s, -5m, 2025-11-22T10:21:07Z, 2025-11-22 10:21:07.250,\n"
	"      2025-11-22T12:21:07+02:00, @1763806867\n"
	"\n"
	"Examples:\n"
	"  spikehound spikes --at 2025-11-22T10:21:07Z\n"
	"  spikehound spikes --at -30m --window 30m --limit 50\n"
	"  spikehound spikes --at -1h --window 1h --kind mmap_lock_wait --label role=redis\n";

static const char usage_top[] =
	"usage: spikehound top --host H [--at TIME] [--window DUR] [--limit N] [--json]\n"
	"\n"
	"Show what one host was doing between TIME - DUR and TIME + DUR: its\n"
	"per-second metrics (CPU, load, pressure, memory, reclaim, dentries) and\n"
	"the processes alive then, including those that started or exited.\n"
	"\n"
	"  --host H       hostname, host_id or a unique host_id prefix (required)\n"
	"  --at TIME      the time to look around (default now)\n"
	"  --window DUR   how far to look on each side of TIME (default 30s, max 1h)\n"
	"  --limit N      show at most N processes (default 5000)\n"
	"\n"
	"Examples:\n"
	"  spikehound top --host web-01\n"
	"  spikehound top --host 1f3a9c --at 2025-11-22T10:21:07Z --window 10s\n";

static const char usage_stacks[] =
	"usage: spikehound stacks --host H [--from TIME] [--to TIME] [--folded] [--limit N] [--json]\n"
	"\n"
	"Merge the on-CPU stack samples one host's agent sent for the summary\n"
	"intervals overlapping FROM .. TO (each summary carries its interval's\n"
	"most frequent stacks), most frequent first.\n"
	"\n"
	"  --host H      hostname, host_id or a unique host_id prefix (required)\n"
	"  --from TIME   start of the range (default -60s)\n"
	"  --to TIME     end of the range (default now)\n"
	"  --folded      print \"comm;frame;...;frame count\" lines, for flamegraph.pl\n"
	"                or speedscope, instead of a table\n"
	"  --limit N     at most N distinct stacks (default 10000)\n"
	"\n"
	"Examples:\n"
	"  spikehound stacks --host web-01 --from -5m\n"
	"  spikehound stacks --host web-01 --from 2025-11-22T10:21:00Z --to 2025-11-22T10:22:00Z \\\n"
	"      --folded | flamegraph.pl > spike.svg\n";

static const char usage_stats[] =
	"usage: spikehound stats [--json]\n"
	"\n"
	"Show the aggregator's self-metrics (ingest, database, query API).\n"
	"\n"
	"Example:\n"
	"  spikehound stats\n";

/* REFUSED is one of top's options that hosts and stats know but refuse:
 * "hosts does not take option "--at"" rather than "unknown option". */
#define REFUSED(name) {name, required_argument, NULL, NULL, NULL}

static int cmd_hosts(struct cli_opts *o, int argc, char **argv)
{
	const char *limit_s = NULL;
	const struct cli_opt opts[] = {
		REFUSED("at"),
		REFUSED("window"),
		REFUSED("host"),
		{"limit", required_argument, cli_opt_str_cb, &limit_s, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"hosts", usage_hosts, opts, false};
	long limit = 10000;
	int64_t now = sh_now_wall_ns();
	struct cli_table t;
	struct cli_buf path = {0};
	json_t *doc, *hosts, *h;
	size_t i;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	if (limit_s != NULL && (rv = cli_parse_limit(limit_s, usage_hosts, &limit)) != 0)
		return rv;
	cli_buf_printf(&path, "/api/hosts?limit=%ld", limit);
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	hosts = json_object_get(doc, "hosts");
	if (json_array_size(hosts) == 0) {
		puts("no hosts have reported yet");
		json_decref(doc);
		return 0;
	}
	cli_table_init(&t, "HOST|KERNEL|LABELS|LAST SEEN|>SPOOL DROPS");
	json_array_foreach (hosts, i, h) {
		char *cells[5];
		struct cli_buf labels = {0};
		json_t *lv;
		const char *lk;
		bool ok;
		int64_t seen = cli_jint(h, "last_seen_ns", &ok);
		int64_t drops;

		json_object_foreach (json_object_get(h, "labels"), lk, lv) {
			char *ks = cli_safe_text(lk, TEXT_WIDTH);
			char *vs = json_is_string(lv) ? cli_safe_text(json_string_value(lv), TEXT_WIDTH) : NULL;

			if (vs == NULL) {
				char *dump = json_dumps(lv, JSON_COMPACT | JSON_ENCODE_ANY);

				vs = cli_safe_text(dump, TEXT_WIDTH);
				free(dump);
			}
			cli_buf_printf(&labels, "%s%s=%s", labels.len ? "," : "", ks, vs);
			free(ks);
			free(vs);
		}
		cells[0] = cli_cell_str(h, "hostname", TEXT_WIDTH);
		cells[1] = cli_cell_str(h, "kernel_release", TEXT_WIDTH);
		cells[2] = labels.len ? cli_buf_take(&labels) : strdup("-");
		free(labels.p);
		if (ok) {
			char tb[40], *age = cli_fmt_age(now - seen);

			cells[3] = cli_fmt("%s (%s)", sh_format_time(seen, tb, sizeof(tb)), age);
			free(age);
		} else {
			cells[3] = strdup("never");
		}
		drops = cli_jint(h, "spool_dropped", &ok);
		cells[4] = ok ? cli_fmt("%" PRId64, drops) : strdup("-");
		cli_table_row(&t, cells);
	}
	cli_table_print(&t);
	cli_table_free(&t);
	{
		bool ok;
		int64_t total = cli_jint(doc, "total", &ok);

		if (ok && total > (int64_t)json_array_size(hosts))
			printf("(%zu of %" PRId64 " hosts shown; see --limit)\n",
			       json_array_size(hosts), total);
	}
	json_decref(doc);
	return 0;
}

/* evidence_text summarizes a spike's evidence: the strongest culprit,
 * how many more there are, and the detector's detail. */
static char *evidence_text(json_t *ev, const char *detail)
{
	json_t *culprits = json_object_get(json_object_get(ev, "evidence"), "culprits");
	json_t *c = json_array_get(culprits, 0);
	struct cli_buf b = {0};
	char *s, *out;

	if (json_is_object(c)) {
		bool ok;
		int64_t pid = cli_jint(c, "pid", &ok);
		const char *role = cli_jstr(c, "role");

		if (role[0] != '\0')
			cli_buf_printf(&b, "%s ", role);
		cli_buf_add(&b, cli_jstr(c, "comm"), strlen(cli_jstr(c, "comm")));
		if (ok)
			cli_buf_printf(&b, "[%" PRId64 "]", pid);
		if (json_array_size(culprits) > 1)
			cli_buf_printf(&b, " +%zu more", json_array_size(culprits) - 1);
	}
	if (detail[0] != '\0') {
		if (b.len)
			cli_buf_add(&b, "; ", 2);
		cli_buf_add(&b, detail, strlen(detail));
	}
	s = cli_buf_take(&b);
	out = s[0] != '\0' ? cli_safe_text(s, EVIDENCE_WIDTH) : strdup("-");
	free(s);
	return out;
}

void cli_spikes_table(json_t *spikes)
{
	struct cli_table t;
	json_t *e;
	size_t i;

	cli_table_init(&t, "TIME|HOST|KIND|>DURATION|VICTIM|EVIDENCE");
	json_array_foreach (spikes, i, e) {
		char *cells[6];
		json_t *victim = json_object_get(e, "victim");
		bool ok, pid_ok;
		int64_t ts = cli_jint(e, "ts_ns", &ok);
		int64_t dur, pid = cli_jint(victim, "pid", &pid_ok);
		char *comm = cli_safe_text(cli_jstr(victim, "comm"), TEXT_WIDTH);

		cells[0] = ok ? cli_cell_time(ts) : strdup("-");
		cells[1] = cli_cell_str(e, "hostname", TEXT_WIDTH);
		cells[2] = cli_cell_str(e, "kind", TEXT_WIDTH);
		dur = cli_jint(e, "duration_ns", &ok);
		cells[3] = ok ? cli_fmt_duration(dur) : strdup("-");
		cells[4] = pid_ok && pid > 0 ? cli_fmt("%s[%" PRId64 "]", comm, pid)
					     : strdup(comm[0] ? comm : "-");
		free(comm);
		cells[5] = evidence_text(e, cli_jstr(e, "detail"));
		cli_table_row(&t, cells);
	}
	cli_table_print(&t);
	cli_table_free(&t);
}

/* spikes_of returns the spikes of incident id (0: of none), borrowed
 * references in a new array (caller decrefs). */
static json_t *spikes_of(json_t *spikes, int64_t id)
{
	json_t *out = json_array(), *e;
	size_t i;

	json_array_foreach (spikes, i, e) {
		bool ok;
		int64_t v = cli_jint(e, "incident_id", &ok);

		if ((ok ? v : 0) == id)
			json_array_append(out, e);
	}
	return out;
}

/* label_cb takes --label KEY=VALUE into a const char *. */
static int label_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	if (strchr(arg, '=') == NULL || arg[0] == '=') {
		cli_usage_error(usage, "bad --label \"%s\": expected KEY=VALUE, like rack=r07", arg);
		return EXIT_USAGE;
	}
	*(const char **)dst = arg;
	return 0;
}

static int cmd_spikes(struct cli_opts *o, int argc, char **argv)
{
	const char *at_s = NULL, *window_s = NULL, *kind = NULL, *label = NULL;
	int64_t at, window = 10 * SH_NS_PER_SEC, from, to;
	long limit = 1000;
	const struct cli_opt opts[] = {
		{"at", required_argument, cli_opt_str_cb, &at_s, NULL},
		{"window", required_argument, cli_opt_str_cb, &window_s, NULL},
		{"limit", required_argument, cli_opt_limit_cb, &limit, NULL},
		{"kind", required_argument, cli_opt_str_cb, &kind, NULL},
		{"label", required_argument, label_cb, &label, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"spikes", usage_spikes, opts, false};
	struct cli_buf path = {0};
	json_t *doc, *spikes, *incidents, *inc, *rest;
	char fb[40], tb[40];
	size_t i, grouped = 0;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	if (at_s == NULL) {
		cli_usage_error(usage_spikes, "spikes needs --at TIME (the time to search around)");
		return EXIT_USAGE;
	}
	if ((rv = cli_parse_time("--at", at_s, usage_spikes, &at)) != 0 ||
	    (window_s != NULL &&
	     (rv = cli_parse_dur("--window", window_s, usage_spikes, &window)) != 0))
		return rv;
	if (window > 31 * 86400 * SH_NS_PER_SEC) {
		cli_usage_error(usage_spikes, "bad --window \"%s\": at most 31d on each side", window_s);
		return EXIT_USAGE;
	}
	cli_buf_printf(&path, "/api/spikes?at=%" PRId64 "&window=%" PRId64 "&limit=%ld", at, window,
		   limit);
	if (kind != NULL) {
		cli_buf_add(&path, "&kind=", 6);
		cli_url_escape(&path, kind);
	}
	if (label != NULL) {
		cli_buf_add(&path, "&label=", 7);
		cli_url_escape(&path, label);
	}
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	from = at - window;
	to = at + window;
	sh_format_time(from, fb, sizeof(fb));
	sh_format_time(to, tb, sizeof(tb));
	spikes = json_object_get(doc, "spikes");
	if (json_array_size(spikes) == 0) {
		printf("no spikes between %s and %s\n", fb, tb);
		json_decref(doc);
		return 0;
	}
	/* each incident with its spikes, then the spikes in none */
	incidents = json_object_get(doc, "incidents");
	json_array_foreach (incidents, i, inc) {
		bool ok;
		int64_t id = cli_jint(inc, "incident_id", &ok);
		json_t *mine, *top = json_object_get(inc, "top_suspect");
		char *title;

		if (!ok || json_array_size(mine = spikes_of(spikes, id)) == 0) {
			if (ok)
				json_decref(mine);
			continue;
		}
		title = cli_incident_title(inc);
		printf("%sincident #%" PRId64 ": %s\n", grouped ? "\n" : "", id, title);
		free(title);
		if (json_is_object(top)) {
			char *line = cli_suspect_text(top, 0);

			printf("  top suspect: %s\n", line);
			free(line);
		}
		cli_spikes_table(mine);
		grouped += json_array_size(mine);
		json_decref(mine);
	}
	rest = spikes_of(spikes, 0);
	if (json_array_size(rest) > 0) {
		if (grouped)
			puts("\nnot in an incident:");
		cli_spikes_table(rest);
	}
	json_decref(rest);
	printf("(%zu spike%s between %s and %s%s%s)\n", json_array_size(spikes),
	       json_array_size(spikes) == 1 ? "" : "s", fb, tb,
	       grouped ? ", grouped by incident" : "",
	       json_is_true(json_object_get(doc, "truncated")) ? "; more not shown, see --limit" : "");
	json_decref(doc);
	return 0;
}

static void print_metrics(json_t *metrics)
{
	struct cli_table t;
	json_t *m;
	size_t i;

	cli_table_init(&t, "TIME|>USR%|>SYS%|>IRQ%|>SIRQ%|>IOW%|>STEAL%|>LOAD1|>PSI CPU|>PSI MEM|"
		       ">PSI IO|>MEM AVAIL|>SLAB|>PGSCAN D|>PGSCAN K|>NEG DENT");
	json_array_foreach (metrics, i, m) {
		char *cells[16];
		bool ok;
		int64_t ts = cli_jint(m, "t_ns", &ok);
		double a, b;

		cells[0] = ok ? cli_cell_clock(ts) : strdup("-");
		cells[1] = cli_cell_fixed(m, "cpu_user_pct", 1);
		cells[2] = cli_cell_fixed(m, "cpu_sys_pct", 1);
		cells[3] = cli_cell_fixed(m, "cpu_irq_pct", 1);
		cells[4] = cli_cell_fixed(m, "cpu_softirq_pct", 1);
		cells[5] = cli_cell_fixed(m, "cpu_iowait_pct", 1);
		cells[6] = cli_cell_fixed(m, "cpu_steal_pct", 1);
		cells[7] = cli_cell_fixed(m, "load1", 2);
		cells[8] = cli_cell_fixed(m, "psi_cpu_some_avg10", 1);
		cells[9] = cli_cell_fixed(m, "psi_mem_some_avg10", 1);
		cells[10] = cli_cell_fixed(m, "psi_io_some_avg10", 1);
		cells[11] = cli_jnum(m, "mem_available_kb", &a) ? cli_cell_kb(a) : strdup("-");
		cells[12] = cli_jnum(m, "slab_reclaimable_kb", &a) && cli_jnum(m, "slab_unreclaimable_kb", &b)
				    ? cli_cell_kb(a + b)
				    : strdup("-");
		cells[13] = cli_cell_count(m, "pgscan_direct");
		cells[14] = cli_cell_count(m, "pgscan_kswapd");
		cells[15] = cli_cell_count(m, "dentry_negative");
		cli_table_row(&t, cells);
	}
	cli_table_print(&t);
	cli_table_free(&t);
}

static void print_processes(json_t *procs)
{
	struct cli_table t;
	json_t *p;
	size_t i;

	cli_table_init(&t, ">PID|>PPID|COMM|CMDLINE|STARTED|EXITED");
	json_array_foreach (procs, i, p) {
		char *cells[6];
		bool ok;
		int64_t v;

		v = cli_jint(p, "pid", &ok);
		cells[0] = ok ? cli_fmt("%" PRId64, v) : strdup("-");
		v = cli_jint(p, "ppid", &ok);
		cells[1] = ok ? cli_fmt("%" PRId64, v) : strdup("-");
		cells[2] = cli_cell_str(p, "comm", TEXT_WIDTH);
		cells[3] = cli_cell_str(p, "cmdline", CMDLINE_WIDTH);
		v = cli_jint(p, "start_ns", &ok);
		cells[4] = ok ? cli_cell_time(v) : strdup("-");
		v = cli_jint(p, "exit_ns", &ok);
		if (!ok) {
			cells[5] = strdup("-");
		} else {
			char tb[40];

			sh_format_time(v, tb, sizeof(tb));
			cells[5] = json_is_true(json_object_get(p, "exit_inferred"))
					   ? cli_fmt("%s (inferred)", tb)
					   : strdup(tb);
		}
		cli_table_row(&t, cells);
	}
	cli_table_print(&t);
	cli_table_free(&t);
}

static int cmd_top(struct cli_opts *o, int argc, char **argv)
{
	const char *at_s = NULL, *window_s = NULL, *host = NULL, *limit_s = NULL;
	const struct cli_opt opts[] = {
		{"at", required_argument, cli_opt_str_cb, &at_s, NULL},
		{"window", required_argument, cli_opt_str_cb, &window_s, NULL},
		{"host", required_argument, cli_opt_str_cb, &host, NULL},
		{"limit", required_argument, cli_opt_str_cb, &limit_s, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"top", usage_top, opts, false};
	int64_t at = sh_now_wall_ns(), window = 30 * SH_NS_PER_SEC;
	long limit = 5000;
	struct cli_buf path = {0};
	json_t *doc, *hj, *metrics, *procs;
	char fb[40], tb[40], *name, *id, *kernel;
	bool ok;
	int64_t total;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	if (host == NULL || host[0] == '\0') {
		cli_usage_error(usage_top, "top needs --host (a hostname, host_id or host_id prefix)");
		return EXIT_USAGE;
	}
	if ((at_s != NULL && (rv = cli_parse_time("--at", at_s, usage_top, &at)) != 0) ||
	    (window_s != NULL && (rv = cli_parse_dur("--window", window_s, usage_top, &window)) != 0) ||
	    (limit_s != NULL && (rv = cli_parse_limit(limit_s, usage_top, &limit)) != 0))
		return rv;
	if (window > 3600 * SH_NS_PER_SEC) {
		cli_usage_error(usage_top, "bad --window \"%s\": top shows at most 1h on each side",
			    window_s);
		return EXIT_USAGE;
	}
	cli_buf_add(&path, "/api/top?host=", 14);
	cli_url_escape(&path, host);
	cli_buf_printf(&path, "&at=%" PRId64 "&window=%" PRId64 "&limit=%ld", at, window, limit);
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	hj = json_object_get(doc, "host");
	name = cli_cell_str(hj, "hostname", TEXT_WIDTH);
	id = cli_cell_str(hj, "host_id", TEXT_WIDTH);
	kernel = cli_cell_str(hj, "kernel_release", TEXT_WIDTH);
	sh_format_time(at - window, fb, sizeof(fb));
	sh_format_time(at + window, tb, sizeof(tb));
	printf("%s (%s), kernel %s, %s .. %s\n\n", name, id, kernel, fb, tb);
	free(name);
	free(id);
	free(kernel);

	metrics = json_object_get(doc, "metrics");
	if (json_array_size(metrics) == 0)
		puts("no metrics in this window");
	else
		print_metrics(metrics);
	fputc('\n', stdout);
	procs = json_object_get(doc, "processes");
	if (json_array_size(procs) == 0) {
		puts("no processes known in this window");
	} else {
		print_processes(procs);
		total = cli_jint(doc, "processes_total", &ok);
		if (ok && total > (int64_t)json_array_size(procs))
			printf("(%zu of %" PRId64 " processes shown: those that started or exited "
			       "in the window first; see --limit)\n",
			       json_array_size(procs), total);
	}
	json_decref(doc);
	return 0;
}

/* print_flat prints a JSON value as "a.b.c: value" lines. */
static void print_flat(const char *prefix, json_t *v)
{
	if (json_is_object(v)) {
		const char *k;
		json_t *c;

		json_object_foreach (v, k, c) {
			struct cli_buf key = {0};

			if (prefix[0] != '\0')
				cli_buf_printf(&key, "%s.", prefix);
			cli_buf_add(&key, k, strlen(k));
			print_flat(key.p, c);
			free(key.p);
		}
	} else {
		char *dump = json_is_string(v) ? strdup(json_string_value(v))
					       : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		char *k = cli_safe_text(prefix, 0), *s = cli_safe_text(dump, 0);

		printf("%s: %s\n", k, s);
		free(k);
		free(s);
		free(dump);
	}
}

static int cmd_stacks(struct cli_opts *o, int argc, char **argv)
{
	const char *host = NULL;
	int64_t now = sh_now_wall_ns(), from = now - 60 * SH_NS_PER_SEC, to = now;
	long limit = 10000;
	bool folded = false, ok;
	const struct cli_opt opts[] = {
		{"host", required_argument, cli_opt_str_cb, &host, NULL},
		{"from", required_argument, cli_opt_time_cb, &from, NULL},
		{"to", required_argument, cli_opt_time_cb, &to, NULL},
		{"folded", no_argument, cli_opt_flag_cb, &folded, NULL},
		{"limit", required_argument, cli_opt_limit_cb, &limit, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"stacks", usage_stacks, opts, false};
	struct cli_buf path = {0};
	json_t *doc, *stacks, *st;
	size_t i;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	if (host == NULL || host[0] == '\0') {
		cli_usage_error(usage_stacks, "stacks needs --host (a hostname, host_id or host_id prefix)");
		return EXIT_USAGE;
	}
	if (to <= from) {
		cli_usage_error(usage_stacks, "--from must be before --to");
		return EXIT_USAGE;
	}
	cli_buf_add(&path, "/api/stacks?host=", 17);
	cli_url_escape(&path, host);
	cli_buf_printf(&path, "&from=%" PRId64 "&to=%" PRId64 "&limit=%ld", from, to, limit);
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;
	stacks = json_object_get(doc, "stacks");
	if (folded) {
		/* folded lines are data for other tools: printed as sent, one
		 * per line (the agent's frames hold no newlines) */
		json_array_foreach (stacks, i, st) {
			const char *text = cli_jstr(st, "stack");
			int64_t n = cli_jint(st, "count", &ok);

			if (text && ok && !strchr(text, '\n'))
				printf("%s %" PRId64 "\n", text, n);
		}
	} else {
		int64_t samples = cli_jint(doc, "samples", &ok), total = 0;
		char fb[40], tb[40], *name = cli_cell_str(json_object_get(doc, "host"), "hostname", TEXT_WIDTH);
		struct cli_table t;

		json_array_foreach (stacks, i, st)
			total += cli_jint(st, "count", &ok);
		sh_format_time(from, fb, sizeof(fb));
		sh_format_time(to, tb, sizeof(tb));
		printf("%s, %s .. %s: %" PRId64 " summaries, %" PRId64 " samples, %zu distinct stacks\n\n",
		       name, fb, tb, cli_jint(doc, "summaries", &ok), samples, json_array_size(stacks));
		free(name);
		if (json_array_size(stacks) == 0) {
			puts("no stacks in this range");
		} else {
			cli_table_init(&t, ">SAMPLES|>%|STACK (comm;outermost;...;innermost)");
			json_array_foreach (stacks, i, st) {
				int64_t n = cli_jint(st, "count", &ok);
				char *cells[3];

				if (i >= 50)
					break;
				cells[0] = cli_fmt("%" PRId64, n);
				cells[1] = cli_fmt("%.1f", total ? 100.0 * (double)n / (double)total : 0.0);
				cells[2] = cli_safe_text(cli_jstr(st, "stack"), 160);
				cli_table_row(&t, cells);
			}
			cli_table_print(&t);
			cli_table_free(&t);
			if (json_array_size(stacks) > 50)
				printf("(50 of %zu stacks shown; --folded prints all)\n",
				       json_array_size(stacks));
		}
	}
	json_decref(doc);
	return 0;
}

static int cmd_stats(struct cli_opts *o, int argc, char **argv)
{
	const struct cli_opt opts[] = {
		REFUSED("at"),
		REFUSED("window"),
		REFUSED("host"),
		REFUSED("limit"),
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"stats", usage_stats, opts, false};
	json_t *doc;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	if ((rv = cli_request(o, "/api/stats", &doc)) != 0 || doc == NULL)
		return rv;
	print_flat("", doc);
	json_decref(doc);
	return 0;
}

static const struct command {
	const char *name;
	int (*run)(struct cli_opts *o, int argc, char **argv);
	const char *usage;
} commands[] = {
	{"hosts", cmd_hosts, usage_hosts},
	{"spikes", cmd_spikes, usage_spikes},
	{"top", cmd_top, usage_top},
	{"stacks", cmd_stacks, usage_stacks},
	{"stats", cmd_stats, usage_stats},
	{"incidents", cli_cmd_incidents, cli_usage_incidents},
	{"incident", cli_cmd_incident, cli_usage_incident},
	{"capture", cli_cmd_capture, cli_usage_capture},
	{"kernels", cli_cmd_kernels, cli_usage_kernels},
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct cli_optspec spec = {NULL, cli_usage_main, NULL, false};
	struct cli_opts o = {.server = DEFAULT_SERVER, .timeout_ns = DEFAULT_TIMEOUT};
	const struct command *cmd;
	const char *env = getenv("SPIKEHOUND_SERVER");
	int argi, rv;

	if (env != NULL && env[0] != '\0')
		o.server = env;
	if ((rv = cli_parse_opts(&o, argc, argv, &spec, &argi)) != 0)
		return rv < 0 ? 0 : rv;
	if (argi >= argc) {
		cli_usage_error(cli_usage_main, "no command given (hosts, spikes, incidents, incident, top, stacks, stats)");
		return EXIT_USAGE;
	}
	if (strcmp(argv[argi], "help") == 0) {
		if (argi + 1 < argc) {
			if ((cmd = find_command(argv[argi + 1])) == NULL) {
				cli_usage_error(cli_usage_main, "no such command \"%s\"", argv[argi + 1]);
				return EXIT_USAGE;
			}
			fputs(cmd->usage, stdout);
		} else {
			fputs(cli_usage_main, stdout);
		}
		return 0;
	}
	if ((cmd = find_command(argv[argi])) == NULL) {
		char *shown = cli_safe_text(argv[argi], TEXT_WIDTH);

		cli_usage_error(cli_usage_main, "no such command \"%s\" (hosts, spikes, incidents, incident, top, stacks, stats)", shown);
		free(shown);
		return EXIT_USAGE;
	}
	rv = cmd->run(&o, argc - argi, argv + argi);
	if (fflush(stdout) != 0 && rv == 0) {
		cli_error("could not write the output: %s", strerror(errno));
		rv = EXIT_RUNTIME;
	}
	return rv;
}
