/* cli_incidents.c: `spikehound incidents` (the fleet incidents the
 * correlator found, most recent first, each with its top suspect) and
 * `spikehound incident ID` (one incident: its hosts, every ranked suspect
 * with the numbers behind it, representative events), plus the text of
 * incidents and suspects that `spikehound spikes` uses for its groups.
 * Answers of GET /api/incidents and /api/incident (query.c). */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

#include "cli.h"

#define FEATURE_WIDTH 60

const char cli_usage_incidents[] =
	"usage: spikehound incidents [--since DUR | --from TIME --to TIME] [--limit N] [--json]\n"
	"\n"
	"List the fleet incidents the aggregator's correlator found, most recent\n"
	"first: spikes of one kind on many hosts close in time (burst), repeating\n"
	"with one period (periodic: every 600 s on 48 hosts), or far more often than\n"
	"on the rest of the fleet (recurring); with each its top suspect and the\n"
	"numbers behind it.\n"
	"\n"
	"  --since DUR   incidents seen within DUR before now (default 24h)\n"
	"  --from TIME   or those overlapping FROM .. TO\n"
	"  --to TIME\n"
	"  --limit N     show at most N incidents (default 100)\n"
	"\n"
	"Then: spikehound incident ID for its hosts, every suspect and its events.\n"
	"\n"
	"Examples:\n"
	"  spikehound incidents\n"
	"  spikehound incidents --since 7d --limit 20\n";

const char cli_usage_incident[] =
	"usage: spikehound incident ID [--limit N] [--json]\n"
	"\n"
	"Show one incident: its type, kind, period and time span; its suspects\n"
	"ranked, each with how many spiking hosts have it against how many others\n"
	"active at the same time (or, for processes started at the spike, spike\n"
	"windows against ordinary windows), Fisher's p, and in how many events\n"
	"the agent named that process as the culprit; its hosts; and one event\n"
	"of each of its first hosts with its evidence.\n"
	"\n"
	"  --limit N   list at most N hosts (default 1000)\n"
	"\n"
	"Examples:\n"
	"  spikehound incident 42\n"
	"  spikehound --json incident 42 | jq '.suspects[0]'\n";

char *cli_fmt_p(double log10_p)
{
	double e, m;

	if (!(log10_p < 0))
		return strdup("p=1");
	if (log10_p >= -3)
		return cli_fmt("p=%.2g", pow(10, log10_p));
	e = floor(log10_p);
	m = pow(10, log10_p - e);
	if (m >= 9.5) {
		m = 1;
		e += 1;
	}
	return cli_fmt("p=%.0fe%.0f", m, e);
}

char *cli_suspect_text(json_t *s, size_t feature_width)
{
	struct cli_buf b = {0};
	bool ok;
	int64_t sw = cli_jint(s, "spiking_with", &ok), st = cli_jint(s, "spiking_total", &ok);
	int64_t ow = cli_jint(s, "others_with", &ok), ot = cli_jint(s, "others_total", &ok);
	int64_t ev = cli_jint(s, "evidence_events", &ok), evt = cli_jint(s, "evidence_total", &ok);
	bool windows = strcmp(cli_jstr(s, "basis"), "windows") == 0;
	char *feature = cli_safe_text(cli_jstr(s, "feature"), feature_width);
	char *role = cli_safe_text(cli_jstr(s, "evidence_role"), TEXT_WIDTH);
	char *p;
	double lp = 0;

	cli_jnum(s, "log10_p", &lp);
	p = cli_fmt_p(lp);
	cli_buf_printf(&b, "%s   %s %" PRId64 "/%" PRId64 " %s vs %" PRId64 "/%" PRId64 " %s   %s",
		       feature, windows ? "in" : "on", sw, st,
		       windows ? "spike windows" : "spiking hosts", ow, ot,
		       windows ? "ordinary windows" : "others", p);
	if (ev > 0)
		cli_buf_printf(&b, "   %s in %" PRId64 "/%" PRId64 " events",
			       role[0] ? role : "culprit", ev, evt);
	free(feature);
	free(role);
	free(p);
	return cli_buf_take(&b);
}

char *cli_incident_title(json_t *inc)
{
	struct cli_buf b = {0};
	bool ok;
	int64_t hosts = cli_jint(inc, "hosts", &ok), events = cli_jint(inc, "events", &ok);
	char *type = cli_safe_text(cli_jstr(inc, "type"), TEXT_WIDTH);
	char *kind = cli_safe_text(cli_jstr(inc, "kind"), TEXT_WIDTH);
	double period, jitter = 0;

	cli_buf_printf(&b, "%s %s", type, kind);
	if (cli_jnum(inc, "period_s", &period)) {
		cli_jnum(inc, "period_jitter_s", &jitter);
		cli_buf_printf(&b, " every %.1f s \u00b1 %.1f s", period, jitter);
	}
	cli_buf_printf(&b, " on %" PRId64 " host%s, %" PRId64 " event%s", hosts,
		       hosts == 1 ? "" : "s", events, events == 1 ? "" : "s");
	free(type);
	free(kind);
	return cli_buf_take(&b);
}

/* span_text is "first .. last" of an incident or host. */
static char *span_text(json_t *o)
{
	bool ok1, ok2;
	int64_t first = cli_jint(o, "first_ns", &ok1), last = cli_jint(o, "last_ns", &ok2);
	char fb[40], lb[40];

	if (!ok1 || !ok2)
		return strdup("-");
	sh_format_time(first, fb, sizeof(fb));
	sh_format_time(last, lb, sizeof(lb));
	return cli_fmt("%s .. %s", fb, lb);
}

/* top_text is the short form of a top suspect for the incidents table. */
static char *top_text(json_t *s)
{
	bool ok;
	char *feature, *p, *out;
	double lp = 0;

	if (!json_is_object(s))
		return strdup("-");
	feature = cli_safe_text(cli_jstr(s, "feature"), FEATURE_WIDTH);
	cli_jnum(s, "log10_p", &lp);
	p = cli_fmt_p(lp);
	out = cli_fmt("%s (%" PRId64 "/%" PRId64 " vs %" PRId64 "/%" PRId64 ", %s)", feature,
		      cli_jint(s, "spiking_with", &ok), cli_jint(s, "spiking_total", &ok),
		      cli_jint(s, "others_with", &ok), cli_jint(s, "others_total", &ok), p);
	free(feature);
	free(p);
	return out;
}

/* since_cb parses --since DUR (more than 0) into an int64_t. */
static int since_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	int64_t *since = dst;

	if (sh_parse_duration(arg, since) != 0 || *since <= 0) {
		cli_usage_error(usage, "bad --since \"%s\": expected %s", arg, cli_duration_formats);
		return EXIT_USAGE;
	}
	return 0;
}

int cli_cmd_incidents(struct cli_opts *o, int argc, char **argv)
{
	int64_t since = 86400 * SH_NS_PER_SEC, from = 0, to = 0;
	bool have_since = false, have_from = false, have_to = false, ok;
	long limit = 100;
	const struct cli_opt opts[] = {
		{"since", required_argument, since_cb, &since, &have_since},
		{"from", required_argument, cli_opt_time_cb, &from, &have_from},
		{"to", required_argument, cli_opt_time_cb, &to, &have_to},
		{"limit", required_argument, cli_opt_limit_cb, &limit, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"incidents", cli_usage_incidents, opts, false};
	struct cli_buf path = {0};
	struct cli_table t;
	json_t *doc, *incs, *inc;
	size_t i;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	if (have_since && (have_from || have_to)) {
		cli_usage_error(cli_usage_incidents,
				"give either --since or --from/--to, not both");
		return EXIT_USAGE;
	}
	if (have_from || have_to) {
		if (!have_to)
			to = sh_now_wall_ns();
		if (!have_from)
			from = to - since;
		if (to < from) {
			cli_usage_error(cli_usage_incidents, "--from must be before --to");
			return EXIT_USAGE;
		}
		cli_buf_printf(&path, "/api/incidents?from=%" PRId64 "&to=%" PRId64 "&limit=%ld",
			       from, to, limit);
	} else {
		cli_buf_printf(&path, "/api/incidents?since=%" PRId64 "&limit=%ld", since, limit);
	}
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	incs = json_object_get(doc, "incidents");
	if (json_array_size(incs) == 0) {
		char fb[40], tb[40];

		printf("no incidents between %s and %s\n",
		       sh_format_time(cli_jint(doc, "from_ns", &ok), fb, sizeof(fb)),
		       sh_format_time(cli_jint(doc, "to_ns", &ok), tb, sizeof(tb)));
		json_decref(doc);
		return 0;
	}
	cli_table_init(&t, ">ID|TYPE|KIND|>HOSTS|>EVENTS|FIRST|LAST|PERIOD|TOP SUSPECT");
	json_array_foreach(incs, i, inc)
	{
		char *cells[9];
		int64_t v;
		double period, jitter = 0;

		v = cli_jint(inc, "incident_id", &ok);
		cells[0] = ok ? cli_fmt("%" PRId64, v) : strdup("-");
		cells[1] = cli_cell_str(inc, "type", TEXT_WIDTH);
		cells[2] = cli_cell_str(inc, "kind", TEXT_WIDTH);
		v = cli_jint(inc, "hosts", &ok);
		cells[3] = ok ? cli_fmt("%" PRId64, v) : strdup("-");
		v = cli_jint(inc, "events", &ok);
		cells[4] = ok ? cli_fmt("%" PRId64, v) : strdup("-");
		v = cli_jint(inc, "first_ns", &ok);
		cells[5] = ok ? cli_cell_time(v) : strdup("-");
		v = cli_jint(inc, "last_ns", &ok);
		cells[6] = ok ? cli_cell_time(v) : strdup("-");
		if (cli_jnum(inc, "period_s", &period)) {
			cli_jnum(inc, "period_jitter_s", &jitter);
			cells[7] = cli_fmt("%.1fs \u00b1 %.1fs", period, jitter);
		} else {
			cells[7] = strdup("-");
		}
		cells[8] = top_text(json_object_get(inc, "top_suspect"));
		cli_table_row(&t, cells);
	}
	cli_table_print(&t);
	cli_table_free(&t);
	{
		int64_t total = cli_jint(doc, "total", &ok);

		if (ok && total > (int64_t)json_array_size(incs))
			printf("(%zu of %" PRId64 " incidents shown; see --limit)\n",
			       json_array_size(incs), total);
	}
	json_decref(doc);
	return 0;
}

/* print_suspects prints the ranked suspects with their numbers. */
static void print_suspects(json_t *suspects)
{
	json_t *s;
	size_t i;

	if (json_array_size(suspects) == 0) {
		puts("no suspects (not ranked yet, or nothing sets the spiking hosts apart)");
		return;
	}
	puts("suspects (ranked by -log10 p + 3 x share of events naming the process):");
	json_array_foreach(suspects, i, s)
	{
		bool ok;
		int64_t rank = cli_jint(s, "rank", &ok);
		char *line = cli_suspect_text(s, 0);
		const char *example = cli_jstr(s, "example");
		const char *feature = cli_jstr(s, "feature");

		printf("  #%" PRId64 " %s\n", ok ? rank : (int64_t)i + 1, line);
		/* the raw command line, when the feature is not it already */
		if (example[0] != '\0' && strncmp(feature, "label:", 6) != 0 &&
		    strncmp(feature, "kernel:", 7) != 0) {
			char *ex = cli_safe_text(example, CMDLINE_WIDTH);

			printf("      e.g. %s\n", ex);
			free(ex);
		}
		free(line);
	}
}

static void print_hosts(json_t *hosts)
{
	struct cli_table t;
	json_t *h;
	size_t i;

	cli_table_init(&t, "HOST|KERNEL|>EVENTS|FIRST|LAST|PERIOD|>SKEW MS");
	json_array_foreach(hosts, i, h)
	{
		char *cells[7];
		bool ok;
		int64_t v;
		double period, jitter = 0, skew;

		cells[0] = cli_cell_str(h, "hostname", TEXT_WIDTH);
		cells[1] = cli_cell_str(h, "kernel_release", TEXT_WIDTH);
		v = cli_jint(h, "events", &ok);
		cells[2] = ok ? cli_fmt("%" PRId64, v) : strdup("-");
		v = cli_jint(h, "first_ns", &ok);
		cells[3] = ok ? cli_cell_time(v) : strdup("-");
		v = cli_jint(h, "last_ns", &ok);
		cells[4] = ok ? cli_cell_time(v) : strdup("-");
		if (cli_jnum(h, "period_s", &period)) {
			cli_jnum(h, "period_jitter_s", &jitter);
			cells[5] = cli_fmt("%.2fs \u00b1 %.2fs", period, jitter);
		} else {
			cells[5] = strdup("-");
		}
		cells[6] =
			cli_jnum(h, "clock_skew_ms", &skew) ? cli_fmt("%.0f", skew) : strdup("-");
		cli_table_row(&t, cells);
	}
	cli_table_print(&t);
	cli_table_free(&t);
}

int cli_cmd_incident(struct cli_opts *o, int argc, char **argv)
{
	const char *id_s = NULL;
	long limit = 1000;
	const struct cli_opt opts[] = {
		{"limit", required_argument, cli_opt_limit_cb, &limit, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"incident", cli_usage_incident, opts, false};
	struct cli_buf path = {0};
	json_t *doc, *inc, *hosts, *events;
	char *end, *title, *span;
	long long id;
	bool ok;
	int64_t total;
	int argi, rv;

	/* the ID may come first (spikehound incident 42 --json) or last */
	if (argc > 1 && argv[1][0] != '-') {
		id_s = argv[1];
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	if ((rv = cli_parse_opts(o, argc, argv, &spec, &argi)) != 0)
		return rv < 0 ? 0 : rv;
	if (argi < argc && id_s == NULL)
		id_s = argv[argi++];
	if (argi < argc) {
		cli_usage_error(cli_usage_incident, "unexpected argument \"%s\"", argv[argi]);
		return EXIT_USAGE;
	}
	if (id_s == NULL) {
		cli_usage_error(cli_usage_incident,
				"incident needs an ID (from spikehound incidents)");
		return EXIT_USAGE;
	}
	id = strtoll(id_s, &end, 10);
	if (end == id_s || *end != '\0' || id < 1) {
		char *shown = cli_safe_text(id_s, TEXT_WIDTH);

		cli_usage_error(cli_usage_incident, "bad incident ID \"%s\": expected a number",
				shown);
		free(shown);
		return EXIT_USAGE;
	}
	cli_buf_printf(&path, "/api/incident?id=%lld&limit=%ld", id, limit);
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	inc = json_object_get(doc, "incident");
	title = cli_incident_title(inc);
	span = span_text(inc);
	printf("incident #%lld: %s\n%s\n\n", id, title, span);
	free(title);
	free(span);
	print_suspects(json_object_get(doc, "suspects"));
	fputc('\n', stdout);
	hosts = json_object_get(doc, "hosts");
	total = cli_jint(inc, "hosts", &ok);
	printf("hosts (%" PRId64 "):\n", ok ? total : (int64_t)json_array_size(hosts));
	print_hosts(hosts);
	if (ok && total > (int64_t)json_array_size(hosts))
		printf("(%zu of %" PRId64 " hosts shown; see --limit)\n", json_array_size(hosts),
		       total);
	events = json_object_get(doc, "events");
	if (json_array_size(events) > 0) {
		puts("\nan event of each of its first hosts:");
		cli_spikes_table(events);
	}
	json_decref(doc);
	return 0;
}
