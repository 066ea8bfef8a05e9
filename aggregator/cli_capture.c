/* cli_capture.c: `spikehound capture`: view and export a capture (read
 * from a file, or downloaded from the aggregator), list captures, and ask
 * hosts for a new one. Turning the payload into text, SVG and pprof is
 * capview.c's job; this file parses options, fetches payloads and picks
 * hosts and windows.
 *
 * Aggregator routes used (capture.h): GET /api/captures?since=NS,
 * /api/capture?id=ID, /api/capture/data?id=ID&host=HOST_ID (the payload
 * as is) and /api/capture/new?host=H|label=K=V|all=1&at=NS&before=NS&after=NS.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capview.h"
#include "timeutil.h"

#include "cli.h"

#define MAX_FILE_BYTES (1024L << 20)
#define DEFAULT_TOP 20
#define DEFAULT_DIFF_BEFORE (5 * SH_NS_PER_SEC)

const char cli_usage_capture[] =
	"usage: spikehound capture show (ID [--host H] | --file F) [--from T] [--to T]\n"
	"                               [--cpu N] [--pid N] [--folded [--kernel-suffix]]\n"
	"                               [--pprof FILE] [--svg FILE] [--heatmap FILE]\n"
	"                               [--diff before[=DUR] | --diff-hosts] [--top N] [--json]\n"
	"       spikehound capture list [--since DUR] [--json]\n"
	"       spikehound capture (--host H | --label K=V | --all) [--at TIME]\n"
	"                          [--before DUR] [--after DUR] [--json]\n"
	"\n"
	"A capture is what hosts' flight recorders held for a time window: every\n"
	"stack sample (99 Hz per CPU), spike event, per-second metric and process\n"
	"start and exit. The aggregator takes one on a spike or incident, or when\n"
	"asked; `spikehound-agent record --capture F` writes one to a file.\n"
	"\n"
	"capture show: print a capture's timeline (per second: samples, CPU, run\n"
	"queue, pressure, reclaim, spikes; then the spike events) and its most\n"
	"frequent stacks, or export it.\n"
	"  ID              a capture id (see capture list); --host H picks the host\n"
	"                  (hostname or host_id; default: the first spiking host)\n"
	"  --file F        read the capture from file F instead of the aggregator\n"
	"  --from T --to T only samples in [T, T): a TIME, or +DUR from the capture's\n"
	"                  start (+0 in the timeline and heat map), e.g. +12.34s\n"
	"  --cpu N         only samples taken on CPU N\n"
	"  --pid N         only samples of process N\n"
	"  --folded        print folded stacks (\"comm;outer;...;inner count\", for\n"
	"                  flamegraph.pl or speedscope) instead of the timeline;\n"
	"                  kernel frames follow the user frames\n"
	"  --kernel-suffix mark kernel frames \"_[k]\" in folded stacks\n"
	"  --pprof FILE    write a gzipped pprof profile (go tool pprof, Pyroscope, Parca)\n"
	"  --svg FILE      write an SVG flame graph (with --diff*: a differential one)\n"
	"  --heatmap FILE  write an SVG sub-second heat map (columns: seconds, rows:\n"
	"                  20 ms within the second); click two cells to get the\n"
	"                  --from/--to of a range\n"
	"  --diff before[=DUR]\n"
	"                  compare the spike window (--from/--to, else the capture's\n"
	"                  longest spike event) with the DUR before it (default 5s)\n"
	"  --diff-hosts    compare the spiking hosts of capture ID with its healthy\n"
	"                  hosts (over --from/--to, else the whole capture)\n"
	"                  With a diff, --svg draws set B (spike, spiking hosts)\n"
	"                  coloured by the change of each frame's share (red: more,\n"
	"                  blue: less), --folded prints \"stack countA countB\"\n"
	"                  (difffolded.pl), and otherwise the stacks that changed\n"
	"                  most are listed.\n"
	"  --top N         how many stacks to list (default 20)\n"
	"  --json          print the capture's metadata, spike events and samples per\n"
	"                  second as JSON\n"
	"\n"
	"capture list: the captures asked for in the last DUR (--since, default 1h),\n"
	"with each host's role, transfer status and size.\n"
	"\n"
	"capture --host H | --label K=V | --all: ask the hosts (a hostname or host_id,\n"
	"those with label K=V, or every live host) for a capture of\n"
	"[TIME - before, TIME + after]: --at TIME (default now), --before DUR (default\n"
	"30s), --after DUR (default 5s).\n"
	"\n"
	"Examples:\n"
	"  spikehound capture --host web-01 --at -20s\n"
	"  spikehound capture list --since 1d\n"
	"  spikehound capture show 7f1c2b9e-... --heatmap heat.svg\n"
	"  spikehound capture show 7f1c2b9e-... --from +12.3s --to +12.6s --svg spike.svg\n"
	"  spikehound capture show 7f1c2b9e-... --diff before=10s --svg diff.svg\n"
	"  spikehound capture show 7f1c2b9e-... --diff-hosts --folded > hosts.diff\n"
	"  spikehound capture show --file cap.zst --pprof cap.pb.gz && go tool pprof -http=: cap.pb.gz\n";

/* --- helpers --- */

/* USAGE prints a usage error and evaluates to EXIT_USAGE. */
#define USAGE(...) (cli_usage_error(cli_usage_capture, __VA_ARGS__), EXIT_USAGE)

static int parse_uint(const char *name, const char *s, long max, long *v)
{
	char *end;

	errno = 0;
	*v = strtol(s, &end, 10);
	if (errno == 0 && end != s && *end == '\0' && *v >= 0 && *v <= max)
		return 0;
	cli_usage_error(cli_usage_capture, "bad %s \"%s\": expected a number from 0 to %ld", name,
			s, max);
	return EXIT_USAGE;
}

/* parse_when parses TIME or +DUR (from origin). */
static int parse_when(const char *name, const char *s, int64_t origin, int64_t *ns)
{
	int64_t d;

	if (s[0] == '+') {
		if (sh_parse_duration(s + 1, &d) != 0 || __builtin_add_overflow(origin, d, ns)) {
			cli_usage_error(
				cli_usage_capture,
				"bad %s \"%s\": expected +DUR (from the capture's start): %s", name,
				s, cli_duration_formats);
			return EXIT_USAGE;
		}
		return 0;
	}
	return cli_parse_time(name, s, cli_usage_capture, ns);
}

/* read_file reads all of path (at most MAX_FILE_BYTES) into *data. */
static int read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	size_t cap = 1 << 20, n = 0;
	uint8_t *buf = NULL;

	if (!f) {
		cli_error("could not open \"%s\": %s", path, strerror(errno));
		return EXIT_RUNTIME;
	}
	for (;;) {
		size_t got;

		if (!buf || n == cap) {
			uint8_t *p;

			if (buf)
				cap *= 2;
			if (n >= (size_t)MAX_FILE_BYTES) {
				cli_error("\"%s\" is larger than 1 GiB: not a capture", path);
				goto fail;
			}
			if (!(p = realloc(buf, cap))) {
				cli_error("out of memory reading \"%s\"", path);
				goto fail;
			}
			buf = p;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		cli_error("could not read \"%s\": %s", path, strerror(errno));
		goto fail;
	}
	if (f != stdin)
		fclose(f);
	*data = buf;
	*len = n;
	return 0;
fail:
	if (f != stdin)
		fclose(f);
	free(buf);
	return EXIT_RUNTIME;
}

/* load_bytes loads a payload; what names it in messages. */
static int load_bytes(const uint8_t *data, size_t len, const char *what, struct agg_capview **cv)
{
	char err[AGG_CAPVIEW_ERRLEN];
	char *shown;

	if (agg_capview_load(data, len, 0, cv, err, sizeof(err)) == 0)
		return 0;
	shown = cli_safe_text(what, 0);
	cli_error("%s: %s", shown, err);
	free(shown);
	return EXIT_RUNTIME;
}

/* open_out opens path for writing ("-": stdout). */
static FILE *open_out(const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");

	if (!f)
		cli_error("could not create \"%s\": %s", path, strerror(errno));
	return f;
}

static int close_out(FILE *f, const char *path)
{
	int bad = ferror(f);

	if (f == stdout)
		bad |= fflush(f) != 0;
	else
		bad |= fclose(f) != 0;
	if (bad) {
		cli_error("could not write \"%s\": %s", path, strerror(errno ? errno : EIO));
		return EXIT_RUNTIME;
	}
	return 0;
}

/* answer_error prints the aggregator's non-2xx answer. */
static void answer_error(int status, const char *body, size_t len)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	char *shown = cli_safe_text(msg ? msg : len < 300 ? body : "(no message)", 300);

	cli_error("the aggregator answered %d: %s", status, shown[0] ? shown : "(no message)");
	free(shown);
	json_decref(j);
}

/* --- the aggregator's captures --- */

static int fetch_meta(const struct cli_opts *o, const char *id, json_t **doc)
{
	struct cli_opts q = *o;
	struct cli_buf path = {0};
	int rv;

	q.json = false;
	cli_buf_add(&path, "/api/capture?id=", 16);
	cli_url_escape(&path, id);
	rv = cli_request(&q, path.p, doc);
	free(path.p);
	if (rv == 0 && !json_is_object(*doc)) {
		cli_error("the aggregator sent no capture object");
		json_decref(*doc);
		*doc = NULL;
		rv = EXIT_RUNTIME;
	}
	return rv;
}

static int fetch_capview(const struct cli_opts *o, const char *id, json_t *host,
			 struct agg_capview **cv)
{
	struct cli_buf path = {0}, what = {0};
	char *body = NULL;
	size_t len = 0;
	int status = 0, rv;

	cli_buf_add(&path, "/api/capture/data?id=", 21);
	cli_url_escape(&path, id);
	cli_buf_add(&path, "&host=", 6);
	cli_url_escape(&path, cli_jstr(host, "host_id"));
	rv = cli_get(o, path.p, &status, &body, &len);
	free(path.p);
	if (rv != 0)
		return rv;
	if (status < 200 || status > 299) {
		answer_error(status, body, len);
		free(body);
		return EXIT_RUNTIME;
	}
	cli_buf_printf(&what, "capture %s of %s", id, cli_jstr(host, "hostname"));
	rv = load_bytes((const uint8_t *)body, len, what.p, cv);
	free(what.p);
	free(body);
	return rv;
}

static bool is_complete(json_t *h)
{
	return strcmp(cli_jstr(h, "status"), "complete") == 0;
}

/* host_state describes why host h has no payload. */
static char *host_state(json_t *h)
{
	bool ok1, ok2;
	int64_t chunks = cli_jint(h, "chunks", &ok1), total = cli_jint(h, "total", &ok2);
	const char *reason = cli_jstr(h, "reason");
	struct cli_buf b = {0};
	char *s;

	cli_buf_printf(&b, "%s: %s", cli_jstr(h, "hostname"), cli_jstr(h, "status"));
	if (ok1 && ok2 && total > 0)
		cli_buf_printf(&b, " (%" PRId64 "/%" PRId64 " chunks)", chunks, total);
	if (reason[0])
		cli_buf_printf(&b, " (%s)", reason);
	s = cli_safe_text(b.p, 0);
	free(b.p);
	return s;
}

/* pick_host chooses the host of capture doc to show: want (hostname,
 * host_id or a host_id prefix) or the first complete spiking host, else
 * requested, else any complete one. Returns it borrowed, or NULL after
 * saying why. */
static json_t *pick_host(json_t *doc, const char *id, const char *want)
{
	json_t *hosts = json_object_get(doc, "hosts"), *h, *found = NULL;
	static const char *const prefer[] = {"spiking", "requested", NULL};
	size_t i;

	if (want) {
		size_t wl = strlen(want);

		json_array_foreach(hosts, i, h)
		{
			const char *hid = cli_jstr(h, "host_id");

			if (strcmp(cli_jstr(h, "hostname"), want) == 0 || strcmp(hid, want) == 0) {
				found = h;
				break;
			}
			if (wl >= 4 && strncmp(hid, want, wl) == 0) {
				if (found) {
					cli_error(
						"host \"%s\" is ambiguous in capture %s: give more "
						"of its host_id",
						want, id);
					return NULL;
				}
				found = h;
			}
		}
		if (!found) {
			char *shown = cli_safe_text(want, TEXT_WIDTH);

			cli_error("capture %s has no host \"%s\"", id, shown);
			free(shown);
			return NULL;
		}
		if (!is_complete(found)) {
			char *st = host_state(found);

			cli_error("capture %s has no data of this host yet: %s", id, st);
			free(st);
			return NULL;
		}
		return found;
	}
	for (int p = 0; p <= 2; p++)
		json_array_foreach(hosts, i,
				   h) if (is_complete(h) &&
					  (!prefer[p] ||
					   strcmp(cli_jstr(h, "role"), prefer[p]) == 0)) return h;
	cli_error("capture %s has no complete host yet", id);
	json_array_foreach(hosts, i, h)
	{
		char *st = host_state(h);

		fprintf(stderr, "  %s\n", st);
		free(st);
	}
	return NULL;
}

/* --- capture show --- */

struct show {
	const char *id, *host, *file, *from_s, *to_s;
	const char *pprof, *svg, *heatmap;
	bool folded, ksuffix, diff_before, diff_hosts;
	int64_t before_ns;
	struct agg_capview_filter f;
	long top;
};

/* describe writes "host, FROM .. TO" for titles. */
static char *describe(const struct agg_capview *cv, int64_t from, int64_t to)
{
	const Spikehound__Capture *c = agg_capview_capture(cv);
	char fb[40], tb[40];
	struct cli_buf b = {0};
	char *s;

	cli_buf_printf(&b, "%s", c->host && c->host->hostname ? c->host->hostname : "?");
	if (from && to)
		cli_buf_printf(&b, ", %s .. %s", sh_format_time(from, fb, sizeof(fb)),
			       sh_format_time(to, tb, sizeof(tb)));
	s = cli_safe_text(b.p, 200);
	free(b.p);
	return s;
}

static int no_samples(const struct agg_capview *cv, const struct agg_capview_filter *f,
		      const char *what)
{
	int64_t first, last;
	char fb[40], tb[40], ab[40], bb[40];

	agg_capview_span(cv, &first, &last);
	if (agg_capview_count(cv, NULL) == 0) {
		cli_error("%s: the capture holds no stack samples", what);
		return EXIT_RUNTIME;
	}
	cli_error("%s: no samples in this window (%s .. %s%s); the capture holds samples "
		  "from %s to %s",
		  what, f->from_ns ? sh_format_time(f->from_ns, fb, sizeof(fb)) : "start",
		  f->to_ns ? sh_format_time(f->to_ns, tb, sizeof(tb)) : "end",
		  f->has_cpu || f->has_pid ? ", with the --cpu/--pid filter" : "",
		  sh_format_time(first, ab, sizeof(ab)), sh_format_time(last, bb, sizeof(bb)));
	return EXIT_RUNTIME;
}

static int write_svg(const struct agg_capview_set *set, const struct agg_capview_svg_opts *so,
		     const char *path)
{
	FILE *f = open_out(path);
	int rv;

	if (!f)
		return EXIT_RUNTIME;
	rv = agg_capview_write_flamegraph(f, set, so);
	if (close_out(f, path) != 0)
		return EXIT_RUNTIME;
	if (rv < 0) {
		cli_error("could not draw the flame graph: %s", strerror(-rv));
		return EXIT_RUNTIME;
	}
	return 0;
}

/* show_plain: the timeline, top stacks and the exports of one capture. */
static int show_plain(const struct cli_opts *o, const struct show *sh, struct agg_capview *cv)
{
	const struct agg_capview_filter *f = &sh->f;
	uint64_t n = agg_capview_count(cv, f);
	bool exports = sh->pprof || sh->svg || sh->heatmap;
	struct agg_capview_set *set = NULL;
	int rv = 0;

	if (o->json) {
		json_t *j = agg_capview_meta_json(cv, f);

		if (!j || json_dumpf(j, stdout, JSON_COMPACT) != 0) {
			json_decref(j);
			cli_error("could not print the JSON");
			return EXIT_RUNTIME;
		}
		fputc('\n', stdout);
		json_decref(j);
	}
	if ((sh->folded || exports) && n == 0)
		return no_samples(cv, f, "nothing to export");
	if (!(set = agg_capview_set_new()) || agg_capview_set_add(set, 0, cv, f, NULL) != 0) {
		agg_capview_set_free(set);
		cli_error("out of memory");
		return EXIT_RUNTIME;
	}
	if (sh->folded) {
		if (agg_capview_write_folded(stdout, set, 0, sh->ksuffix ? AGG_CAPVIEW_KSUFFIX : 0))
			rv = EXIT_RUNTIME;
	} else if (!exports && !o->json) {
		agg_capview_write_header(stdout, cv);
		fputc('\n', stdout);
		agg_capview_write_timeline(stdout, cv, f);
		fputc('\n', stdout);
		if (n == 0) {
			puts("no stack samples in this window");
		} else {
			printf("%" PRIu64 " samples, %zu distinct stacks\n", n,
			       agg_capview_set_stacks(set));
			agg_capview_write_top(stdout, set, 0, (size_t)sh->top);
		}
	}
	if (rv == 0 && sh->svg) {
		char *sub = describe(cv, f->from_ns, f->to_ns);
		struct agg_capview_svg_opts so = {.subtitle = sub};

		rv = write_svg(set, &so, sh->svg);
		free(sub);
		if (rv == 0 && strcmp(sh->svg, "-") != 0)
			fprintf(stderr, "flame graph of %" PRIu64 " samples written to %s\n", n,
				sh->svg);
	}
	if (rv == 0 && sh->pprof) {
		uint8_t *gz = NULL;
		size_t len = 0;
		FILE *out;
		int e = agg_capview_pprof(cv, f, &gz, &len);

		if (e < 0) {
			cli_error("could not make the pprof profile: %s", strerror(-e));
			rv = EXIT_RUNTIME;
		} else if (!(out = open_out(sh->pprof))) {
			rv = EXIT_RUNTIME;
		} else {
			fwrite(gz, 1, len, out);
			rv = close_out(out, sh->pprof);
			if (rv == 0 && strcmp(sh->pprof, "-") != 0)
				fprintf(stderr,
					"pprof profile of %" PRIu64 " samples written to %s\n", n,
					sh->pprof);
		}
		free(gz);
	}
	if (rv == 0 && sh->heatmap) {
		struct cli_buf hint = {0};
		struct agg_capview_heatmap_opts ho = {0};
		FILE *out = open_out(sh->heatmap);
		int e;

		if (sh->id)
			cli_buf_printf(&hint, "spikehound capture show %s%s%s", sh->id,
				       sh->host ? " --host " : "", sh->host ? sh->host : "");
		else
			cli_buf_printf(&hint, "spikehound capture show --file %s", sh->file);
		ho.cmd_hint = hint.p;
		if (!out) {
			rv = EXIT_RUNTIME;
		} else {
			e = agg_capview_write_heatmap(out, cv, f, &ho);
			rv = close_out(out, sh->heatmap);
			if (rv == 0 && e == -E2BIG) {
				cli_error("the range is too long for a heat map (at most %d s): "
					  "narrow it with --from/--to",
					  AGG_CAPVIEW_MAX_SECONDS);
				rv = EXIT_RUNTIME;
			} else if (rv == 0 && e < 0) {
				cli_error("could not draw the heat map: %s", strerror(-e));
				rv = EXIT_RUNTIME;
			} else if (rv == 0 && strcmp(sh->heatmap, "-") != 0) {
				fprintf(stderr, "heat map of %" PRIu64 " samples written to %s\n",
					n, sh->heatmap);
			}
		}
		free(hint.p);
	}
	agg_capview_set_free(set);
	return rv;
}

/* show_diff: set A (before / healthy) vs set B (window / spiking). */
static int show_diff(const struct show *sh, struct agg_capview_set *set, const char *label_a,
		     const char *label_b, const char *subtitle)
{
	int rv = 0;

	if (sh->folded) {
		if (agg_capview_write_folded_diff(stdout, set,
						  sh->ksuffix ? AGG_CAPVIEW_KSUFFIX : 0))
			rv = EXIT_RUNTIME;
	} else if (!sh->svg) {
		printf("%s: %" PRIu64 " samples; %s: %" PRIu64 " samples\n", label_a,
		       agg_capview_set_total(set, 0), label_b, agg_capview_set_total(set, 1));
		printf("stacks whose share changed most (points of percentage, B minus A):\n");
		agg_capview_write_diff_top(stdout, set, (size_t)sh->top);
	}
	if (rv == 0 && sh->svg) {
		struct agg_capview_svg_opts so = {
			.diff = true, .subtitle = subtitle, .label_a = label_a, .label_b = label_b};

		rv = write_svg(set, &so, sh->svg);
		if (rv == 0 && strcmp(sh->svg, "-") != 0)
			fprintf(stderr, "differential flame graph (%s vs %s) written to %s\n",
				label_b, label_a, sh->svg);
	}
	return rv;
}

static int diff_before(const struct show *sh, struct agg_capview *cv)
{
	struct agg_capview_filter a = sh->f, b = sh->f;
	struct agg_capview_set *set = agg_capview_set_new();
	char fb[40], tb[40], *dur, *sub, label_a[64];
	int rv;

	if (!(b.from_ns && b.to_ns) && agg_capview_spike_window(cv, &b.from_ns, &b.to_ns) != 0) {
		agg_capview_set_free(set);
		cli_error(
			"no spike window: the capture holds no spike event; give --from and --to");
		return EXIT_RUNTIME;
	}
	a.to_ns = b.from_ns;
	a.from_ns = b.from_ns > sh->before_ns ? b.from_ns - sh->before_ns : 1;
	dur = cli_fmt_duration(sh->before_ns);
	snprintf(label_a, sizeof(label_a), "%s before", dur);
	free(dur);
	if (!set || agg_capview_set_add(set, 0, cv, &a, NULL) != 0 ||
	    agg_capview_set_add(set, 1, cv, &b, NULL) != 0) {
		agg_capview_set_free(set);
		cli_error("out of memory");
		return EXIT_RUNTIME;
	}
	if (agg_capview_set_total(set, 1) == 0) {
		agg_capview_set_free(set);
		return no_samples(cv, &b, "the spike window");
	}
	if (agg_capview_set_total(set, 0) == 0) {
		agg_capview_set_free(set);
		return no_samples(cv, &a, "the time before the spike window");
	}
	if (!sh->folded)
		printf("spike window %s .. %s vs the %s\n",
		       sh_format_time(b.from_ns, fb, sizeof(fb)),
		       sh_format_time(b.to_ns, tb, sizeof(tb)), label_a);
	sub = describe(cv, b.from_ns, b.to_ns);
	rv = show_diff(sh, set, label_a, "spike", sub);
	free(sub);
	agg_capview_set_free(set);
	return rv;
}

static int diff_hosts(const struct cli_opts *o, const struct show *sh, json_t *doc)
{
	struct agg_capview_set *set = agg_capview_set_new();
	json_t *h;
	size_t i, n[2] = {0, 0};
	bool have_spiking = false;
	int rv = 0;

	if (!set) {
		cli_error("out of memory");
		return EXIT_RUNTIME;
	}
	json_array_foreach(json_object_get(doc, "hosts"), i, h) have_spiking |=
		is_complete(h) && strcmp(cli_jstr(h, "role"), "spiking") == 0;
	json_array_foreach(json_object_get(doc, "hosts"), i, h)
	{
		const char *role = cli_jstr(h, "role");
		struct agg_capview *cv = NULL;
		int col;

		if (!is_complete(h))
			continue;
		if (strcmp(role, "healthy") == 0)
			col = 0;
		else if (strcmp(role, have_spiking ? "spiking" : "requested") == 0)
			col = 1;
		else
			continue;
		if ((rv = fetch_capview(o, sh->id, h, &cv)) != 0)
			break;
		if (agg_capview_set_add(set, col, cv, &sh->f, NULL) != 0) {
			cli_error("out of memory");
			rv = EXIT_RUNTIME;
		}
		n[col]++;
		agg_capview_free(cv);
		if (rv)
			break;
	}
	if (rv == 0 && (n[0] == 0 || n[1] == 0)) {
		cli_error("capture %s has no complete %s host to compare with", sh->id,
			  n[0] == 0 ? "healthy" : "spiking");
		rv = EXIT_RUNTIME;
	} else if (rv == 0 &&
		   (agg_capview_set_total(set, 0) == 0 || agg_capview_set_total(set, 1) == 0)) {
		cli_error("no samples of the %s hosts in this window",
			  agg_capview_set_total(set, 0) == 0 ? "healthy" : "spiking");
		rv = EXIT_RUNTIME;
	}
	if (rv == 0) {
		char *sub =
			cli_fmt("capture %s: %zu spiking vs %zu healthy hosts", sh->id, n[1], n[0]);
		char *safe = cli_safe_text(sub, 200);

		rv = show_diff(sh, set, "healthy", "spiking", safe);
		free(sub);
		free(safe);
	}
	agg_capview_set_free(set);
	return rv;
}

/* cpu_cb and pid_cb take --cpu N and --pid N into a struct
 * agg_capview_filter. */
static int cpu_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	struct agg_capview_filter *f = dst;
	long v;
	int rv;

	if ((rv = parse_uint(flag, arg, 65535, &v)) != 0)
		return rv;
	f->has_cpu = true;
	f->cpu = (uint32_t)v;
	return 0;
}

static int pid_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	struct agg_capview_filter *f = dst;
	long v;
	int rv;

	if ((rv = parse_uint(flag, arg, INT32_MAX, &v)) != 0)
		return rv;
	f->has_pid = true;
	f->pid = (int32_t)v;
	return 0;
}

/* top_cb takes --top N into a long. */
static int top_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	return parse_uint(flag, arg, 100000, dst);
}

/* diff_cb takes --diff before[=DUR] into a struct show. */
static int diff_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	struct show *sh = dst;
	int rv;

	if (strncmp(arg, "before", 6) != 0 || (arg[6] && arg[6] != '='))
		return USAGE("bad --diff \"%s\": expected before or before=DUR", arg);
	if (arg[6] == '=' &&
	    (rv = cli_parse_dur("--diff before=", arg + 7, cli_usage_capture, &sh->before_ns)) != 0)
		return rv;
	if (sh->before_ns <= 0)
		return USAGE("bad --diff \"%s\": the duration must be positive", arg);
	sh->diff_before = true;
	return 0;
}

static int cmd_show(struct cli_opts *o, int argc, char **argv)
{
	struct show sh = {.before_ns = DEFAULT_DIFF_BEFORE, .top = DEFAULT_TOP};
	const struct cli_opt opts[] = {
		{"host", required_argument, cli_opt_str_cb, &sh.host, NULL},
		{"file", required_argument, cli_opt_str_cb, &sh.file, NULL},
		{"from", required_argument, cli_opt_str_cb, &sh.from_s, NULL},
		{"to", required_argument, cli_opt_str_cb, &sh.to_s, NULL},
		{"cpu", required_argument, cpu_cb, &sh.f, NULL},
		{"pid", required_argument, pid_cb, &sh.f, NULL},
		{"folded", no_argument, cli_opt_flag_cb, &sh.folded, NULL},
		{"kernel-suffix", no_argument, cli_opt_flag_cb, &sh.ksuffix, NULL},
		{"pprof", required_argument, cli_opt_str_cb, &sh.pprof, NULL},
		{"svg", required_argument, cli_opt_str_cb, &sh.svg, NULL},
		{"heatmap", required_argument, cli_opt_str_cb, &sh.heatmap, NULL},
		{"diff", required_argument, diff_cb, &sh, NULL},
		{"diff-hosts", no_argument, cli_opt_flag_cb, &sh.diff_hosts, NULL},
		{"top", required_argument, top_cb, &sh.top, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	/* options may follow the ID: capture show ID --host H */
	const struct cli_optspec spec = {"capture show", cli_usage_capture, opts, true};
	struct agg_capview *cv = NULL;
	json_t *doc = NULL, *host;
	int argi, rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, &argi)) != 0)
		return rv < 0 ? 0 : rv;
	if (argi < argc)
		sh.id = argv[argi++];
	if (argi < argc)
		return USAGE("unexpected argument \"%s\"", argv[argi]);
	if (!sh.id == !sh.file)
		return USAGE("capture show needs a capture ID or --file F%s",
			     sh.id ? " (not both)" : "");
	if (sh.file && sh.host)
		return USAGE("--host picks a host of a capture ID; %s has one host", "--file");
	if (sh.diff_before && sh.diff_hosts)
		return USAGE("choose one of --diff before and --diff-hosts");
	if (sh.diff_hosts && !sh.id)
		return USAGE("--diff-hosts compares the hosts of a capture ID, not a file");
	if ((sh.diff_before || sh.diff_hosts) && sh.pprof)
		return USAGE("--pprof exports one sample set, not a diff");
	if ((sh.diff_before || sh.diff_hosts) && o->json)
		return USAGE("--json prints a capture's metadata, not a diff");
	if (sh.folded && o->json)
		return USAGE("choose one of --folded and --json");
	if (sh.diff_before && !sh.from_s != !sh.to_s)
		return USAGE("--diff before takes the spike window from --from and --to (both), or "
			     "from the capture's longest spike event (neither)");
	if (sh.diff_hosts && sh.heatmap)
		return USAGE("--heatmap draws one host: leave out --diff-hosts");

	if (sh.id) {
		if ((rv = fetch_meta(o, sh.id, &doc)) != 0)
			return rv;
		if (!sh.diff_hosts) {
			if (!(host = pick_host(doc, sh.id, sh.host))) {
				json_decref(doc);
				return EXIT_RUNTIME;
			}
			if (!sh.host && json_array_size(json_object_get(doc, "hosts")) > 1) {
				char *name = cli_safe_text(cli_jstr(host, "hostname"), TEXT_WIDTH);

				fprintf(stderr,
					"showing host %s (%s) of %zu; --host picks another\n", name,
					cli_jstr(host, "role"),
					json_array_size(json_object_get(doc, "hosts")));
				free(name);
			}
			rv = fetch_capview(o, sh.id, host, &cv);
		}
	} else {
		uint8_t *data = NULL;
		size_t len = 0;

		if ((rv = read_file(sh.file, &data, &len)) == 0)
			rv = load_bytes(data, len, sh.file, &cv);
		free(data);
	}
	if (rv != 0)
		goto out;
	/* times: +DUR counts from the (first) capture's start */
	if (sh.from_s || sh.to_s) {
		int64_t origin = 0;

		if (cv) {
			origin = agg_capview_origin(cv);
		} else {
			bool ok;

			origin = cli_jint(doc, "from_ns", &ok);
		}
		if ((sh.from_s &&
		     (rv = parse_when("--from", sh.from_s, origin, &sh.f.from_ns)) != 0) ||
		    (sh.to_s && (rv = parse_when("--to", sh.to_s, origin, &sh.f.to_ns)) != 0))
			goto out;
		if (sh.f.from_ns && sh.f.to_ns && sh.f.to_ns <= sh.f.from_ns) {
			rv = USAGE("--from must be before --to");
			goto out;
		}
	}
	if (sh.diff_hosts)
		rv = diff_hosts(o, &sh, doc);
	else if (sh.diff_before)
		rv = diff_before(&sh, cv);
	else
		rv = show_plain(o, &sh, cv);
	if (rv == 0 && sh.diff_before && sh.heatmap) {
		struct show hm = sh;

		hm.svg = hm.pprof = NULL;
		hm.folded = false;
		hm.diff_before = false;
		/* show_plain prints the timeline when nothing is exported: only the heat map here */
		rv = show_plain(o, &hm, cv);
	}
out:
	agg_capview_free(cv);
	json_decref(doc);
	return rv;
}

/* --- capture list --- */

static int cmd_list(struct cli_opts *o, int argc, char **argv)
{
	int64_t since = 3600 * SH_NS_PER_SEC;
	const struct cli_opt opts[] = {
		{"since", required_argument, cli_opt_dur_cb, &since, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"capture list", cli_usage_capture, opts, false};
	struct cli_buf path = {0};
	json_t *doc, *caps, *cap, *h;
	struct cli_table t;
	size_t i, j;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	cli_buf_printf(&path, "/api/captures?since=%" PRId64, since);
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;
	caps = json_object_get(doc, "captures");
	if (json_array_size(caps) == 0) {
		char *d = cli_fmt_duration(since);

		printf("no captures in the last %s\n", d);
		free(d);
		json_decref(doc);
		return 0;
	}
	cli_table_init(&t,
		       "CAPTURE|REQUESTED|TRIGGER|WINDOW|HOST|ROLE|STATUS|>CHUNKS|>SIZE|REASON");
	json_array_foreach(caps, i, cap)
	{
		json_t *hosts = json_object_get(cap, "hosts");
		bool ok1, ok2;
		int64_t from = cli_jint(cap, "from_ns", &ok1), to = cli_jint(cap, "to_ns", &ok2);

		for (j = 0; j == 0 || j < json_array_size(hosts); j++) {
			char *cells[10];
			bool ok, okt;
			int64_t v;

			h = json_array_get(hosts, j);
			if (j == 0) {
				cells[0] = cli_cell_str(cap, "capture_id", TEXT_WIDTH);
				v = cli_jint(cap, "requested_ns", &ok);
				cells[1] = ok ? cli_cell_time(v) : strdup("-");
				cells[2] = cli_cell_str(cap, "trigger", TEXT_WIDTH);
				if (ok1 && ok2 && to >= from) {
					char *clock = cli_cell_clock(from),
					     *d = cli_fmt_duration(to - from);

					cells[3] = cli_fmt("%s +%s", clock, d);
					free(clock);
					free(d);
				} else {
					cells[3] = strdup("-");
				}
			} else {
				cells[0] = strdup("");
				cells[1] = strdup("");
				cells[2] = strdup("");
				cells[3] = strdup("");
			}
			if (h) {
				cells[4] = cli_cell_str(h, "hostname", TEXT_WIDTH);
				cells[5] = cli_cell_str(h, "role", TEXT_WIDTH);
				cells[6] = cli_cell_str(h, "status", TEXT_WIDTH);
				v = cli_jint(h, "chunks", &ok);
				{
					int64_t total = cli_jint(h, "total", &okt);

					cells[7] =
						ok && okt && total > 0
							? cli_fmt("%" PRId64 "/%" PRId64, v, total)
							: strdup("-");
				}
				v = cli_jint(h, "bytes", &ok);
				cells[8] =
					ok && v > 0 ? cli_cell_kb((double)v / 1024.0) : strdup("-");
				cells[9] = cli_cell_str(h, "reason", EVIDENCE_WIDTH);
			} else {
				for (int k = 4; k < 10; k++)
					cells[k] = strdup("-");
			}
			cli_table_row(&t, cells);
		}
	}
	cli_table_print(&t);
	cli_table_free(&t);
	json_decref(doc);
	return 0;
}

/* --- capture --host H | --label K=V | --all --- */

static int cmd_new(struct cli_opts *o, int argc, char **argv)
{
	const char *host = NULL, *label = NULL;
	bool all = false;
	int64_t at = sh_now_wall_ns(), before = 30 * SH_NS_PER_SEC, after = 5 * SH_NS_PER_SEC;
	const struct cli_opt opts[] = {
		{"host", required_argument, cli_opt_str_cb, &host, NULL},
		{"label", required_argument, cli_opt_str_cb, &label, NULL},
		{"all", no_argument, cli_opt_flag_cb, &all, NULL},
		{"at", required_argument, cli_opt_time_cb, &at, NULL},
		{"before", required_argument, cli_opt_dur_cb, &before, NULL},
		{"after", required_argument, cli_opt_dur_cb, &after, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"capture", cli_usage_capture, opts, false};
	struct cli_buf path = {0};
	json_t *doc;
	int argi, rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, &argi)) != 0)
		return rv < 0 ? 0 : rv;
	if (argi < argc)
		return USAGE("no such capture command \"%s\" (show, list, or --host H to ask "
			     "for a capture)",
			     argv[argi]);
	if ((host != NULL) + (label != NULL) + all != 1)
		return USAGE("capture needs exactly one of --host H, --label K=V and --all");
	if (label && (!strchr(label, '=') || label[0] == '='))
		return USAGE("bad --label \"%s\": expected KEY=VALUE", label);
	if (before + after <= 0 || before + after > 600 * SH_NS_PER_SEC)
		return USAGE("--before plus --after must be more than 0 and at most 10m");
	cli_buf_add(&path, "/api/capture/new?", 17);
	if (host) {
		cli_buf_add(&path, "host=", 5);
		cli_url_escape(&path, host);
	} else if (label) {
		cli_buf_add(&path, "label=", 6);
		cli_url_escape(&path, label);
	} else {
		cli_buf_add(&path, "all=1", 5);
	}
	cli_buf_printf(&path, "&at=%" PRId64 "&before=%" PRId64 "&after=%" PRId64, at, before,
		       after);
	rv = cli_request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;
	{
		bool ok;
		int64_t n = cli_jint(doc, "hosts", &ok);
		char *id = cli_cell_str(doc, "capture_id", TEXT_WIDTH);

		printf("capture %s asked of %" PRId64 " host%s\n", id, ok ? n : 0,
		       ok && n == 1 ? "" : "s");
		printf("follow it: spikehound capture list\nview it:   spikehound capture show %s\n",
		       id);
		free(id);
	}
	json_decref(doc);
	return 0;
}

int cli_cmd_capture(struct cli_opts *o, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "show") == 0)
		return cmd_show(o, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "list") == 0)
		return cmd_list(o, argc - 1, argv + 1);
	if (argc < 2) {
		cli_usage_error(cli_usage_capture,
				"capture needs show, list, or --host H / --label K=V / --all");
		return EXIT_USAGE;
	}
	return cmd_new(o, argc, argv);
}
