/* cli_kernels.c: `spikehound kernels`, the kernel-version report: per
 * cohort (kernel release, or the value of a host label) the hosts,
 * host-hours, spike rates with exact 95% intervals, latency percentiles,
 * accounting anomalies and top incident causes, and which rates differ
 * significantly from the baseline cohort. The aggregator computes it all
 * (GET /api/kernels, query_kernels.h); this file prints it as tables,
 * passes the JSON through, or writes the HTML page (report_html.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_html.h"
#include "timeutil.h"

#include "cli.h"

#define SINCE_MAX (400 * 86400 * SH_NS_PER_SEC)
#define RATE_SCALE 1000.0 /* printed per 1000 host-hours */

const char cli_usage_kernels[] =
	"usage: spikehound kernels [--since DUR] [--by kernel|label=KEY] [--baseline NAME]\n"
	"                          [--html FILE] [--json]\n"
	"\n"
	"Is it the new kernel? Compare cohorts of hosts, by kernel release (or by\n"
	"the value of a host label), over the last DUR: hosts, host-hours, spike\n"
	"rate per kind with its exact 95% interval, accounting anomalies (kind\n"
	"\"accounting\"), p50/p99 latency per detector from the merged histograms,\n"
	"and the top causes (#1 suspects) of the incidents on each cohort's hosts.\n"
	"Every cohort's rates are compared with the baseline's (exact test,\n"
	"Holm-corrected over all comparisons); significant differences are\n"
	"marked \"*\" and listed first.\n"
	"\n"
	"  --since DUR       how far back to look (default 7d, at most 400d); by\n"
	"                    kernel the window starts at the hour, by label at the\n"
	"                    UTC day (the rollups' grain)\n"
	"  --by kernel       cohorts by kernel release (the default)\n"
	"  --by label=KEY    cohorts by the value of host label KEY (e.g. rack)\n"
	"  --baseline NAME   compare with this cohort (default: the one with the\n"
	"                    most host-hours)\n"
	"  --html FILE       also write the report as a self-contained HTML page with\n"
	"                    charts (\"-\": standard output, instead of the tables)\n"
	"  --json            print the aggregator's JSON report\n"
	"\n"
	"Examples:\n"
	"  spikehound kernels\n"
	"  spikehound kernels --since 30d --baseline 6.1.0-13-amd64 --html kernels.html\n"
	"  spikehound kernels --by label=rack --json | jq '.significant'\n";

/* jnum is a number member or NAN. */
static double jnum(json_t *o, const char *key)
{
	double v;

	return cli_jnum(o, key, &v) ? v : NAN;
}

/* cohort_cell is a cohort's name as a safe cell. */
static char *cohort_cell(json_t *doc, json_t *c, bool mark_base)
{
	json_t *name = json_object_get(c, "cohort");
	char *s, *out;

	if (json_is_string(name))
		s = cli_safe_text(json_string_value(name)[0] ? json_string_value(name) : "(empty)",
				  TEXT_WIDTH);
	else {
		char *key = cli_safe_text(cli_jstr(doc, "label"), TEXT_WIDTH);

		s = cli_fmt("(no %s)", key);
		free(key);
	}
	if (!mark_base || !json_is_true(json_object_get(c, "is_baseline")))
		return s;
	out = cli_fmt("%s (baseline)", s);
	free(s);
	return out;
}

/* num_cell formats v with about 3 significant digits. */
static char *num_cell(double v)
{
	if (!isfinite(v))
		return strdup("-");
	if (v == 0)
		return strdup("0");
	if (fabs(v) >= 1000)
		return cli_fmt("%.0f", v);
	if (fabs(v) >= 100)
		return cli_fmt("%.1f", v);
	if (fabs(v) >= 1)
		return cli_fmt("%.2f", v);
	return cli_fmt("%.3g", v);
}

static char *us_cell(double us)
{
	if (!isfinite(us))
		return strdup("-");
	return cli_fmt_duration((int64_t)llround(us * 1000));
}

static char *p_cell(double p)
{
	if (!isfinite(p))
		return strdup("-");
	if (p < 1e-300)
		return strdup("<1e-300");
	return cli_fmt(p < 0.001 ? "%.1e" : "%.3f", p);
}

static char *interval_cell(json_t *r)
{
	char *lo = num_cell(jnum(r, "ci_low") * RATE_SCALE), *hi = num_cell(jnum(r, "ci_high") * RATE_SCALE);
	char *s = cli_fmt("%s - %s", lo, hi);

	free(lo);
	free(hi);
	return s;
}

static void print_header(json_t *doc)
{
	char from[40], to[40];
	bool ok;
	const char *label = cli_jstr(doc, "label");
	char *base = cli_safe_text(cli_jstr(doc, "baseline"), TEXT_WIDTH);
	char *key = cli_safe_text(label, TEXT_WIDTH);

	sh_format_time(cli_jint(doc, "from_ns", &ok), from, sizeof(from));
	sh_format_time(cli_jint(doc, "to_ns", &ok), to, sizeof(to));
	printf("Kernel report, %s .. %s (%s rollups), cohorts by %s%s\n", from, to,
	       cli_jstr(doc, "granularity"), label[0] ? "host label " : "kernel release", key);
	printf("Baseline: %s (%s). Rates: spikes per 1000 host-hours with exact 95%% intervals;\n"
	       "each compared with the baseline's by an exact test, Holm-corrected over %" PRId64
	       " comparisons (alpha %g).\n\n",
	       base[0] ? base : "-", cli_jstr(doc, "baseline_reason"), cli_jint(doc, "comparisons", &ok),
	       jnum(doc, "alpha"));
	free(base);
	free(key);
}

static void print_significant(json_t *doc)
{
	json_t *sig = json_object_get(doc, "significant"), *s;
	size_t i;

	if (json_array_size(sig) == 0) {
		puts("Significant differences: none.\n");
		return;
	}
	puts("Significant differences from the baseline:");
	json_array_foreach (sig, i, s) {
		json_t *c = json_pack("{sO}", "cohort", json_object_get(s, "cohort"));
		char *name = cohort_cell(doc, c, false), *kind = cli_safe_text(cli_jstr(s, "kind"), TEXT_WIDTH);
		char *ratio = num_cell(jnum(s, "ratio")), *p = p_cell(jnum(s, "p_holm"));
		bool worse = strcmp(cli_jstr(s, "direction"), "better") != 0;

		printf("  * %s: %s spikes at %sx the baseline's rate (p = %s, Holm): %s\n", name, kind,
		       ratio, p, worse ? "WORSE" : "better");
		free(name);
		free(kind);
		free(ratio);
		free(p);
		json_decref(c);
	}
	fputc('\n', stdout);
}

static void print_cohorts(json_t *doc)
{
	struct cli_table t;
	json_t *c;
	size_t i;

	cli_table_init(&t, "COHORT|>HOSTS|>HOST-HOURS|>SUMMARIES|>ACCOUNTING|>PER 1k HH|>95% INTERVAL");
	json_array_foreach (json_object_get(doc, "cohorts"), i, c) {
		json_t *a = json_object_get(c, "accounting");
		char *cells[7];
		bool ok;

		cells[0] = cohort_cell(doc, c, true);
		cells[1] = cli_fmt("%" PRId64, cli_jint(c, "hosts", &ok));
		cells[2] = num_cell(jnum(c, "host_hours"));
		cells[3] = cli_fmt("%" PRId64, cli_jint(c, "summaries", &ok));
		if (json_is_object(a)) {
			cells[4] = cli_fmt("%" PRId64, cli_jint(a, "events", &ok));
			cells[5] = num_cell(jnum(a, "rate") * RATE_SCALE);
			cells[6] = interval_cell(a);
		} else {
			cells[4] = strdup("-");
			cells[5] = strdup("-");
			cells[6] = strdup("-");
		}
		cli_table_row(&t, cells);
	}
	cli_table_print(&t);
	cli_table_free(&t);
	fputc('\n', stdout);
}

static void print_rates(json_t *doc)
{
	struct cli_table t;
	json_t *kinds = json_object_get(doc, "kinds"), *k, *c;
	size_t i, j;

	if (json_array_size(kinds) == 0) {
		puts("No spikes in this window.\n");
		return;
	}
	puts("Spike rate per 1000 host-hours:");
	cli_table_init(&t, "KIND|COHORT|>SPIKES|>RATE|>95% INTERVAL|>VS BASELINE|>P (HOLM)|SIGNIFICANT");
	json_array_foreach (kinds, i, k) {
		json_array_foreach (json_object_get(doc, "cohorts"), j, c) {
			json_t *r = NULL, *x, *vs;
			char *cells[8];
			size_t n;
			bool ok;

			json_array_foreach (json_object_get(c, "rates"), n, x) {
				if (json_equal(json_object_get(x, "kind"), k))
					r = x;
			}
			vs = json_object_get(r, "vs_baseline");
			cells[0] = cli_safe_text(json_string_value(k), TEXT_WIDTH);
			cells[1] = cohort_cell(doc, c, true);
			cells[2] = cli_fmt("%" PRId64, cli_jint(r, "events", &ok));
			cells[3] = num_cell(jnum(r, "rate") * RATE_SCALE);
			cells[4] = interval_cell(r);
			if (json_is_object(vs)) {
				char *ratio = num_cell(jnum(vs, "ratio"));

				cells[5] = cli_fmt("%sx", ratio);
				free(ratio);
				cells[6] = p_cell(jnum(vs, "p_holm"));
				if (json_is_true(json_object_get(vs, "significant")))
					cells[7] = strdup(strcmp(cli_jstr(vs, "direction"), "better") == 0
								  ? "* better"
								  : "* WORSE");
				else
					cells[7] = strdup("");
			} else {
				cells[5] = strdup("-");
				cells[6] = strdup("-");
				cells[7] = strdup("");
			}
			cli_table_row(&t, cells);
		}
	}
	cli_table_print(&t);
	cli_table_free(&t);
	fputc('\n', stdout);
}

static void print_latency(json_t *doc)
{
	struct cli_table t;
	json_t *kinds = json_object_get(doc, "latency_kinds"), *k, *c;
	size_t i, j;

	if (json_array_size(kinds) == 0)
		return;
	puts("Latency from the merged histograms:");
	cli_table_init(&t, "DETECTOR|COHORT|>WAITS|>MEAN|>P50|>P99");
	json_array_foreach (kinds, i, k) {
		json_array_foreach (json_object_get(doc, "cohorts"), j, c) {
			json_t *l = NULL, *x;
			char *cells[6];
			size_t n;

			json_array_foreach (json_object_get(c, "latency"), n, x) {
				if (json_equal(json_object_get(x, "kind"), k))
					l = x;
			}
			cells[0] = cli_safe_text(json_string_value(k), TEXT_WIDTH);
			cells[1] = cohort_cell(doc, c, true);
			cells[2] = l ? cli_cell_count(l, "count") : strdup("-");
			cells[3] = us_cell(jnum(l, "mean_us"));
			cells[4] = us_cell(jnum(l, "p50_us"));
			cells[5] = us_cell(jnum(l, "p99_us"));
			cli_table_row(&t, cells);
		}
	}
	cli_table_print(&t);
	cli_table_free(&t);
	fputc('\n', stdout);
}

static void print_causes(json_t *doc)
{
	struct cli_table t;
	json_t *c, *k;
	size_t i, j;
	bool any = false;

	json_array_foreach (json_object_get(doc, "cohorts"), i, c)
		any = any || json_array_size(json_object_get(c, "causes")) > 0;
	if (!any) {
		puts("No incidents with a ranked suspect in this window.");
		return;
	}
	puts("Top incident causes (the incidents' #1 suspect):");
	cli_table_init(&t, "COHORT|CAUSE|>INCIDENTS|>HOSTS|>SPIKES");
	json_array_foreach (json_object_get(doc, "cohorts"), i, c) {
		json_array_foreach (json_object_get(c, "causes"), j, k) {
			char *cells[5];
			bool ok;

			cells[0] = cohort_cell(doc, c, false);
			cells[1] = cli_cell_str(k, "feature", CMDLINE_WIDTH);
			cells[2] = cli_fmt("%" PRId64, cli_jint(k, "incidents", &ok));
			cells[3] = cli_fmt("%" PRId64, cli_jint(k, "hosts", &ok));
			cells[4] = cli_fmt("%" PRId64, cli_jint(k, "events", &ok));
			cli_table_row(&t, cells);
		}
	}
	cli_table_print(&t);
	cli_table_free(&t);
}

/* write_html writes the page to path ("-": stdout). Returns 0 or EXIT_RUNTIME. */
static int write_html(json_t *doc, const char *path)
{
	FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
	int rv;

	if (!f) {
		cli_error("could not create \"%s\": %s", path, strerror(errno));
		return EXIT_RUNTIME;
	}
	rv = agg_report_html_write(f, doc);
	if (f != stdout && fclose(f) != 0 && rv == 0)
		rv = -EIO;
	if (rv == -EINVAL) {
		cli_error("the aggregator's answer is not a kernel report");
		return EXIT_RUNTIME;
	}
	if (rv != 0) {
		cli_error("could not write \"%s\"", path);
		return EXIT_RUNTIME;
	}
	return 0;
}

/* since_cb parses --since DUR (more than 0, at most 400d) into an int64_t. */
static int since_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	int64_t *since = dst;

	if (sh_parse_duration(arg, since) != 0 || *since <= 0 || *since > SINCE_MAX) {
		cli_usage_error(usage, "bad --since \"%s\": expected a duration up to 400d: %s", arg,
				cli_duration_formats);
		return EXIT_USAGE;
	}
	return 0;
}

/* by_cb takes --by kernel or --by label=KEY into a const char *. */
static int by_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	if (strcmp(arg, "kernel") != 0 && (strncmp(arg, "label=", 6) != 0 || arg[6] == '\0')) {
		cli_usage_error(usage, "bad --by \"%s\": expected kernel or label=KEY", arg);
		return EXIT_USAGE;
	}
	*(const char **)dst = arg;
	return 0;
}

int cli_cmd_kernels(struct cli_opts *o, int argc, char **argv)
{
	const char *by = NULL, *baseline = NULL, *html = NULL;
	int64_t since = 7 * 86400 * SH_NS_PER_SEC;
	const struct cli_opt opts[] = {
		{"since", required_argument, since_cb, &since, NULL},
		{"by", required_argument, by_cb, &by, NULL},
		{"baseline", required_argument, cli_opt_str_cb, &baseline, NULL},
		{"html", required_argument, cli_opt_str_cb, &html, NULL},
		{NULL, 0, NULL, NULL, NULL},
	};
	const struct cli_optspec spec = {"kernels", cli_usage_kernels, opts, false};
	struct cli_opts q;
	struct cli_buf path = { 0 };
	json_t *doc = NULL;
	int rv;

	if ((rv = cli_parse_opts(o, argc, argv, &spec, NULL)) != 0)
		return rv < 0 ? 0 : rv;
	q = *o;
	cli_buf_printf(&path, "/api/kernels?since=%" PRId64 "ms", (int64_t)(since / SH_NS_PER_MS));
	if (by && strcmp(by, "kernel") != 0) {
		cli_buf_add(&path, "&by=label:", 10);
		cli_url_escape(&path, by + 6);
	}
	if (baseline) {
		cli_buf_add(&path, "&baseline=", 10);
		cli_url_escape(&path, baseline);
	}
	if (html)
		q.json = false; /* the page needs the document: printed below */
	rv = cli_request(&q, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;
	if (o->json && html && strcmp(html, "-") != 0) {
		char *s = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));

		if (s)
			puts(s);
		free(s);
	}
	if (html && (rv = write_html(doc, html)) != 0) {
		json_decref(doc);
		return rv;
	}
	if (!o->json && !(html && strcmp(html, "-") == 0)) {
		print_header(doc);
		print_significant(doc);
		print_cohorts(doc);
		print_rates(doc);
		print_latency(doc);
		print_causes(doc);
		if (html)
			printf("\n(the report with charts: %s)\n", html);
	}
	json_decref(doc);
	return 0;
}
