/* report_html.c: the kernel report as one HTML page with inline SVG (see
 * report_html.h). Layout: a header saying what was measured and how, the
 * significant differences, the cohorts table, then per kind a spike-rate
 * chart (a dot per cohort with its interval as an error bar, on a linear
 * axis from 0) with its table, then per detector a latency chart (p50 and
 * p99 bars per cohort on a log axis) with its table, and the top incident
 * causes. Colours: baseline grey, other cohorts blue, significantly worse
 * red, significantly better green.
 */
#include "report_html.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "htmlout.h"
#include "timeutil.h"

#define CHART_W 860
#define LABEL_W 200  /* cohort names, left of the plot */
#define VALUE_W 250  /* the figures, right of the plot */
#define PLOT_W (CHART_W - LABEL_W - VALUE_W)
#define ROW_H 26
#define AXIS_H 34
#define TOP_PAD 8
#define RATE_SCALE 1000.0 /* shown per 1000 host-hours */

#define COL_BASE "#7f7f7f"
#define COL_OTHER "#1f77b4"
#define COL_WORSE "#d62728"
#define COL_BETTER "#2ca02c"
#define COL_P50 "#9ecae1"
#define COL_P99 "#08519c"

static const char style[] =
	"body{font-family:DejaVu Sans,Liberation Sans,Arial,sans-serif;margin:24px;color:#222;"
	"background:#fff;max-width:1200px}"
	"h1{font-size:22px}h2{font-size:18px;margin-top:28px}h3{font-size:15px;margin-top:20px}"
	"table{border-collapse:collapse;margin:8px 0 16px}"
	"th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right;font-size:13px;"
	"white-space:nowrap}"
	"th{background:#f3f3f3}td.l,th.l{text-align:left}"
	".worse{color:" COL_WORSE ";font-weight:bold}.better{color:" COL_BETTER ";font-weight:bold}"
	".base{color:#555;font-style:italic}.note{color:#555;font-size:13px}"
	"svg{display:block;margin:6px 0}svg text{font-size:12px;fill:#222}";

/* cohort_name writes a cohort's name ("(no KEY)" when the label is not set). */
static void cohort_name(FILE *out, json_t *report, json_t *cohort)
{
	const char *name = json_string_value(json_object_get(cohort, "cohort"));

	if (name) {
		agg_htmlout_escape_str(out, name[0] ? name : "(empty)");
	} else {
		fputs("(no ", out);
		agg_htmlout_escape_str(out, json_string_value(json_object_get(report, "label")));
		fputc(')', out);
	}
}

static double jnum(json_t *o, const char *key, double def)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : def;
}

/* fmt_num writes v with about 3 significant digits ("-" when missing). */
static void fmt_num(FILE *out, double v)
{
	if (!isfinite(v))
		fputs("-", out);
	else if (v == 0)
		fputs("0", out);
	else if (fabs(v) >= 1000)
		fprintf(out, "%.0f", v);
	else if (fabs(v) >= 100)
		fprintf(out, "%.1f", v);
	else if (fabs(v) >= 1)
		fprintf(out, "%.2f", v);
	else
		fprintf(out, "%.3g", v);
}

/* fmt_interval writes an interval "lo &#8211; hi" (fmt_num). */
static void fmt_interval(FILE *out, double lo, double hi)
{
	fmt_num(out, lo);
	fputs(" &#8211; ", out);
	fmt_num(out, hi);
}

/* fmt_us writes a latency given in microseconds with its unit. */
static void fmt_us(FILE *out, double us)
{
	if (!isfinite(us))
		fputs("-", out);
	else if (us < 1000)
		fprintf(out, "%.1f &#181;s", us);
	else if (us < 1e6)
		fprintf(out, "%.2f ms", us / 1e3);
	else
		fprintf(out, "%.2f s", us / 1e6);
}

static void fmt_p(FILE *out, double p)
{
	if (!isfinite(p))
		fputs("-", out);
	else if (p < 1e-300)
		fputs("&lt;1e-300", out);
	else if (p < 0.001)
		fprintf(out, "%.1e", p);
	else
		fprintf(out, "%.3f", p);
}

/* nice_max rounds v up to 1, 2, 2.5 or 5 times a power of ten;
 * nice_ticks is how many equal steps divide such a maximum nicely. */
static double nice_max(double v)
{
	static const double steps[] = { 1, 2, 2.5, 5, 10 };
	double p;

	if (!(v > 0) || !isfinite(v))
		return 1;
	p = pow(10, floor(log10(v)));
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (steps[i] * p >= v)
			return steps[i] * p;
	return 10 * p;
}

static int nice_ticks(double max)
{
	double lead = max / pow(10, floor(log10(max)));

	return fabs(lead - 2) < 1e-9 ? 4 : 5;
}

/* entry_of finds the entry of kind in a cohort's list ("rates" or
 * "latency"). */
static json_t *entry_of(json_t *cohort, const char *list, const char *kind)
{
	json_t *r;
	size_t i;

	json_array_foreach (json_object_get(cohort, list), i, r) {
		const char *k = json_string_value(json_object_get(r, "kind"));

		if (k && strcmp(k, kind) == 0)
			return r;
	}
	return NULL;
}

/* verdict is "worse", "better" or NULL (not significantly different). */
static const char *verdict(json_t *rate)
{
	json_t *vs = json_object_get(rate, "vs_baseline");

	if (!json_is_true(json_object_get(vs, "significant")))
		return NULL;
	return json_string_value(json_object_get(vs, "direction"));
}

static const char *colour(json_t *cohort, json_t *rate)
{
	const char *v = verdict(rate);

	if (json_is_true(json_object_get(cohort, "is_baseline")))
		return COL_BASE;
	if (v && strcmp(v, "worse") == 0)
		return COL_WORSE;
	if (v && strcmp(v, "better") == 0)
		return COL_BETTER;
	return COL_OTHER;
}

/* svg_label writes a cohort label cut to fit the label column. */
static void svg_label(FILE *out, json_t *report, json_t *cohort, double y)
{
	fprintf(out, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", LABEL_W - 8, y + 4);
	cohort_name(out, report, cohort);
	fputs("</text>\n", out);
}

/* chart_open starts a chart h high, of CSS class cls, titled "<kind><what>". */
static void chart_open(FILE *out, int h, const char *cls, const char *kind, const char *what)
{
	fprintf(out,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" role=\"img\" class=\"%s\">\n<title>",
		CHART_W, h, CHART_W, h, cls);
	agg_htmlout_escape_str(out, kind);
	fputs(what, out);
	fputs("</title>\n", out);
}

/* grid_line draws a vertical grid line at x of a chart h high, with its
 * label (HTML) under the axis. */
static void grid_line(FILE *out, int h, double x, const char *label)
{
	fprintf(out,
		"<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#e5e5e5\"/>\n"
		"<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
		x, TOP_PAD, x, h - AXIS_H + 4, x, h - AXIS_H + 18, label);
}

/* axis_line draws the x axis of a chart h high. */
static void axis_line(FILE *out, int h)
{
	fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#444\"/>\n", LABEL_W,
		h - AXIS_H + 4, LABEL_W + PLOT_W, h - AXIS_H + 4);
}

/* rate_chart draws one kind's rates with their intervals. */
static void rate_chart(FILE *out, json_t *report, const char *kind)
{
	json_t *cohorts = json_object_get(report, "cohorts"), *c;
	size_t n = json_array_size(cohorts), i;
	double max = 0, scale;
	int h = TOP_PAD + (int)n * ROW_H + AXIS_H, ticks;

	json_array_foreach (cohorts, i, c) {
		json_t *r = entry_of(c, "rates", kind);
		double hi = jnum(r, "ci_high", NAN) * RATE_SCALE;

		if (isfinite(hi) && hi > max)
			max = hi;
	}
	max = nice_max(max);
	ticks = nice_ticks(max);
	scale = PLOT_W / max;
	chart_open(out, h, "rate-chart", kind, " spikes per 1000 host-hours with 95% intervals");
	/* grid and axis */
	for (int t = 0; t <= ticks; t++) {
		char label[32];

		snprintf(label, sizeof(label), "%g", max * t / ticks);
		grid_line(out, h, LABEL_W + (double)PLOT_W * t / ticks, label);
	}
	axis_line(out, h);
	fprintf(out,
		"<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">spikes per 1000 host-hours</text>\n",
		LABEL_W + PLOT_W / 2, h - 3);
	json_array_foreach (cohorts, i, c) {
		json_t *r = entry_of(c, "rates", kind);
		double y = TOP_PAD + ROW_H * (i + 0.5);
		double rate = jnum(r, "rate", NAN) * RATE_SCALE;
		double lo = jnum(r, "ci_low", NAN) * RATE_SCALE, hi = jnum(r, "ci_high", NAN) * RATE_SCALE;
		const char *col = colour(c, r), *v = verdict(r);

		svg_label(out, report, c, y);
		if (isfinite(lo) && isfinite(hi)) {
			double x0 = LABEL_W + lo * scale, x1 = LABEL_W + hi * scale;

			fprintf(out,
				"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n"
				"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n"
				"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n",
				x0, y, x1, y, col, x0, y - 6, x0, y + 6, col, x1, y - 6, x1, y + 6, col);
		}
		if (isfinite(rate))
			fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/>\n",
				LABEL_W + rate * scale, y, col);
		fprintf(out, "<text x=\"%d\" y=\"%.1f\"%s>", LABEL_W + PLOT_W + 10, y + 4,
			v ? (strcmp(v, "worse") == 0 ? " class=\"worse\" style=\"fill:" COL_WORSE "\""
						     : " class=\"better\" style=\"fill:" COL_BETTER "\"")
			  : "");
		fmt_num(out, rate);
		fputs(" [", out);
		fmt_interval(out, lo, hi);
		fprintf(out, "]%s</text>\n", v ? (strcmp(v, "worse") == 0 ? " worse" : " better") : "");
	}
	fputs("</svg>\n", out);
}

static void rate_table(FILE *out, json_t *report, const char *kind)
{
	json_t *c;
	size_t i;

	fputs("<table><tr><th class=\"l\">cohort</th><th>spikes</th><th>host-hours</th>"
	      "<th>per 1000 host-hours</th><th>95% interval</th><th>vs baseline</th>"
	      "<th>p</th><th>p (Holm)</th><th class=\"l\">verdict</th></tr>\n",
	      out);
	json_array_foreach (json_object_get(report, "cohorts"), i, c) {
		json_t *r = entry_of(c, "rates", kind), *vs = json_object_get(r, "vs_baseline");
		const char *v = verdict(r);

		fputs("<tr><td class=\"l\">", out);
		cohort_name(out, report, c);
		fprintf(out, "</td><td>%.0f</td><td>", jnum(r, "events", 0));
		fmt_num(out, jnum(c, "host_hours", NAN));
		fputs("</td><td>", out);
		fmt_num(out, jnum(r, "rate", NAN) * RATE_SCALE);
		fputs("</td><td>", out);
		fmt_interval(out, jnum(r, "ci_low", NAN) * RATE_SCALE,
			     jnum(r, "ci_high", NAN) * RATE_SCALE);
		fputs("</td><td>", out);
		if (json_is_object(vs)) {
			fmt_num(out, jnum(vs, "ratio", NAN));
			fputs("&#215;</td><td>", out);
			fmt_p(out, jnum(vs, "p_value", NAN));
			fputs("</td><td>", out);
			fmt_p(out, jnum(vs, "p_holm", NAN));
		} else {
			fputs("-</td><td>-</td><td>-", out);
		}
		if (json_is_true(json_object_get(c, "is_baseline")))
			fputs("</td><td class=\"l base\">baseline</td></tr>\n", out);
		else if (v)
			fprintf(out, "</td><td class=\"l %s\">significantly %s</td></tr>\n", v, v);
		else
			fputs("</td><td class=\"l\">not significant</td></tr>\n", out);
	}
	fputs("</table>\n", out);
}

/* latency_chart draws p50 and p99 per cohort on a log axis (1 us .. ). */
static void latency_chart(FILE *out, json_t *report, const char *kind)
{
	json_t *cohorts = json_object_get(report, "cohorts"), *c;
	size_t n = json_array_size(cohorts), i;
	double max = 10, decades;
	int row = ROW_H + 8, h = TOP_PAD + (int)n * row + AXIS_H;

	json_array_foreach (cohorts, i, c) {
		double p99 = jnum(entry_of(c, "latency", kind), "p99_us", NAN);

		if (isfinite(p99) && p99 > max)
			max = p99;
	}
	decades = ceil(log10(max));
	chart_open(out, h, "latency-chart", kind, " latency p50 and p99 per cohort (log scale)");
	for (int d = 0; d <= (int)decades; d++) {
		static const char *const names[] = { "1 &#181;s", "10 &#181;s", "100 &#181;s", "1 ms",
						     "10 ms", "100 ms", "1 s", "10 s", "100 s", "1000 s" };

		grid_line(out, h, LABEL_W + PLOT_W * d / decades, d < 10 ? names[d] : "");
	}
	axis_line(out, h);
	fprintf(out,
		"<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"10\" fill=\"" COL_P50 "\"/>"
		"<text x=\"%d\" y=\"%d\">p50</text>"
		"<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"10\" fill=\"" COL_P99 "\"/>"
		"<text x=\"%d\" y=\"%d\">p99</text>\n",
		LABEL_W, h - 12, LABEL_W + 16, h - 3, LABEL_W + 56, h - 12, LABEL_W + 72, h - 3);
	json_array_foreach (cohorts, i, c) {
		json_t *l = entry_of(c, "latency", kind);
		double y = TOP_PAD + row * (double)i + 4;
		double p50 = jnum(l, "p50_us", NAN), p99 = jnum(l, "p99_us", NAN);
		double w50 = isfinite(p50) && p50 > 1 ? PLOT_W * log10(p50) / decades : 1;
		double w99 = isfinite(p99) && p99 > 1 ? PLOT_W * log10(p99) / decades : 1;

		svg_label(out, report, c, y + row / 2.0 - 4);
		if (!l)
			continue;
		fprintf(out,
			"<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"11\" fill=\"" COL_P50 "\"/>\n"
			"<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"11\" fill=\"" COL_P99 "\"/>\n"
			"<text x=\"%d\" y=\"%.1f\">",
			LABEL_W, y, w50, LABEL_W, y + 13, w99, LABEL_W + PLOT_W + 10, y + 16);
		fputs("p50 ", out);
		fmt_us(out, p50);
		fputs(", p99 ", out);
		fmt_us(out, p99);
		fputs("</text>\n", out);
	}
	fputs("</svg>\n", out);
}

static void latency_table(FILE *out, json_t *report, const char *kind)
{
	json_t *c;
	size_t i;

	fputs("<table><tr><th class=\"l\">cohort</th><th>waits</th><th>mean</th><th>p50</th>"
	      "<th>p99</th></tr>\n",
	      out);
	json_array_foreach (json_object_get(report, "cohorts"), i, c) {
		json_t *l = entry_of(c, "latency", kind);

		fputs("<tr><td class=\"l\">", out);
		cohort_name(out, report, c);
		fputs("</td><td>", out);
		fmt_num(out, jnum(l, "count", NAN));
		fputs("</td><td>", out);
		fmt_us(out, jnum(l, "mean_us", NAN));
		fputs("</td><td>", out);
		fmt_us(out, jnum(l, "p50_us", NAN));
		fputs("</td><td>", out);
		fmt_us(out, jnum(l, "p99_us", NAN));
		fputs("</td></tr>\n", out);
	}
	fputs("</table>\n", out);
}

static void header(FILE *out, json_t *report)
{
	char from[40], to[40];
	const char *label = json_string_value(json_object_get(report, "label"));
	json_t *sig = json_object_get(report, "significant"), *s;
	size_t i;

	sh_format_time((int64_t)jnum(report, "from_ns", 0), from, sizeof(from));
	sh_format_time((int64_t)jnum(report, "to_ns", 0), to, sizeof(to));
	fputs("<h1>spikehound kernel report</h1>\n<p>", out);
	fprintf(out, "From %s to %s (%s rollups), cohorts by ", from, to,
		json_is_string(json_object_get(report, "granularity"))
			? json_string_value(json_object_get(report, "granularity"))
			: "?");
	if (label) {
		fputs("host label <b>", out);
		agg_htmlout_escape_str(out, label);
		fputs("</b>", out);
	} else {
		fputs("kernel release", out);
	}
	fputs(". Baseline: <b>", out);
	agg_htmlout_escape_str(out, json_string_value(json_object_get(report, "baseline")));
	fputs("</b> (", out);
	agg_htmlout_escape_str(out, json_string_value(json_object_get(report, "baseline_reason")));
	fputs(").</p>\n<p class=\"note\">Rates are spikes per 1000 host-hours of summaries "
	      "with exact 95% Poisson intervals (Garwood). Each cohort is compared with the "
	      "baseline, kind by kind, by the exact conditional binomial test; the p-values are "
	      "Holm-corrected over all ",
	      out);
	fprintf(out, "%.0f comparisons and called significant below %g.", jnum(report, "comparisons", 0),
		jnum(report, "alpha", 0.05));
	if (jnum(report, "cohorts_omitted", 0) > 0)
		fprintf(out, " %.0f smaller cohorts are not shown.", jnum(report, "cohorts_omitted", 0));
	fputs("</p>\n<h2>Significant differences from the baseline</h2>\n", out);
	if (json_array_size(sig) == 0) {
		fputs("<p>None: no cohort's spike rate differs significantly from the baseline's.</p>\n",
		      out);
		return;
	}
	fputs("<ul>\n", out);
	json_array_foreach (sig, i, s) {
		const char *dir = json_string_value(json_object_get(s, "direction"));
		const char *name = json_string_value(json_object_get(s, "cohort"));

		fprintf(out, "<li class=\"%s\">", dir && strcmp(dir, "better") == 0 ? "better" : "worse");
		if (name) {
			agg_htmlout_escape_str(out, name);
		} else {
			fputs("(no ", out);
			agg_htmlout_escape_str(out, label);
			fputc(')', out);
		}
		fputs(": ", out);
		agg_htmlout_escape_str(out, json_string_value(json_object_get(s, "kind")));
		fputs(" spikes at ", out);
		fmt_num(out, jnum(s, "ratio", INFINITY));
		fputs("&#215; the baseline's rate (p = ", out);
		fmt_p(out, jnum(s, "p_holm", NAN));
		fputs(", Holm): significantly ", out);
		agg_htmlout_escape_str(out, dir);
		fputs("</li>\n", out);
	}
	fputs("</ul>\n", out);
}

static void cohort_table(FILE *out, json_t *report)
{
	json_t *c;
	size_t i;

	fputs("<h2>Cohorts</h2>\n<table><tr><th class=\"l\">cohort</th><th>hosts</th>"
	      "<th>host-hours</th><th>summaries</th><th>accounting anomalies</th>"
	      "<th>per 1000 host-hours (95%)</th></tr>\n",
	      out);
	json_array_foreach (json_object_get(report, "cohorts"), i, c) {
		json_t *a = json_object_get(c, "accounting");

		fputs("<tr><td class=\"l\">", out);
		cohort_name(out, report, c);
		if (json_is_true(json_object_get(c, "is_baseline")))
			fputs(" <span class=\"base\">(baseline)</span>", out);
		fprintf(out, "</td><td>%.0f</td><td>", jnum(c, "hosts", 0));
		fmt_num(out, jnum(c, "host_hours", NAN));
		fprintf(out, "</td><td>%.0f</td>", jnum(c, "summaries", 0));
		if (json_is_object(a)) {
			fprintf(out, "<td>%.0f</td><td>", jnum(a, "events", 0));
			fmt_num(out, jnum(a, "rate", NAN) * RATE_SCALE);
			fputs(" [", out);
			fmt_interval(out, jnum(a, "ci_low", NAN) * RATE_SCALE,
				     jnum(a, "ci_high", NAN) * RATE_SCALE);
			fputs("]</td></tr>\n", out);
		} else {
			fputs("<td>-</td><td>-</td></tr>\n", out);
		}
	}
	fputs("</table>\n", out);
}

static void causes_table(FILE *out, json_t *report)
{
	json_t *c, *k;
	size_t i, j;
	bool any = false;

	fputs("<h2>Top incident causes</h2>\n", out);
	json_array_foreach (json_object_get(report, "cohorts"), i, c)
		any = any || json_array_size(json_object_get(c, "causes")) > 0;
	if (!any) {
		fputs("<p>No incidents with a ranked suspect in this window.</p>\n", out);
		return;
	}
	fputs("<table><tr><th class=\"l\">cohort</th><th class=\"l\">#1 suspect of the "
	      "incidents</th><th>incidents</th><th>hosts</th><th>spikes</th></tr>\n",
	      out);
	json_array_foreach (json_object_get(report, "cohorts"), i, c) {
		json_array_foreach (json_object_get(c, "causes"), j, k) {
			fputs("<tr><td class=\"l\">", out);
			cohort_name(out, report, c);
			fputs("</td><td class=\"l\">", out);
			agg_htmlout_escape_str(out,
					       json_string_value(json_object_get(k, "feature")));
			fprintf(out, "</td><td>%.0f</td><td>%.0f</td><td>%.0f</td></tr>\n",
				jnum(k, "incidents", 0), jnum(k, "hosts", 0), jnum(k, "events", 0));
		}
	}
	fputs("</table>\n", out);
}

int agg_report_html_write(FILE *out, json_t *report)
{
	json_t *kinds = json_object_get(report, "kinds"), *lkinds = json_object_get(report, "latency_kinds");
	json_t *k;
	size_t i;

	if (!json_is_object(report) || !json_is_array(json_object_get(report, "cohorts")) ||
	    !json_is_array(kinds) || !json_is_array(lkinds))
		return -EINVAL;
	fprintf(out,
		"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
		"<meta name=\"viewport\" content=\"width=device-width\">\n"
		"<title>spikehound kernel report</title>\n<style>%s</style>\n</head><body>\n",
		style);
	header(out, report);
	cohort_table(out, report);
	fputs("<h2>Spike rate by kind</h2>\n", out);
	if (json_array_size(kinds) == 0)
		fputs("<p>No spikes in this window.</p>\n", out);
	json_array_foreach (kinds, i, k) {
		const char *kind = json_string_value(k);

		fputs("<h3>", out);
		agg_htmlout_escape_str(out, kind);
		fputs("</h3>\n", out);
		rate_chart(out, report, kind);
		rate_table(out, report, kind);
	}
	fputs("<h2>Latency by detector</h2>\n", out);
	if (json_array_size(lkinds) == 0)
		fputs("<p>No latency histograms in this window.</p>\n", out);
	json_array_foreach (lkinds, i, k) {
		const char *kind = json_string_value(k);

		fputs("<h3>", out);
		agg_htmlout_escape_str(out, kind);
		fputs("</h3>\n", out);
		latency_chart(out, report, kind);
		latency_table(out, report, kind);
	}
	causes_table(out, report);
	fputs("<p class=\"note\">Made by spikehound from its rollups; every figure on this page is "
	      "also in the JSON report (spikehound kernels --json).</p>\n</body></html>\n",
	      out);
	return ferror(out) ? -EIO : 0;
}

char *agg_report_html(json_t *report, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	int rv;

	if (!f)
		return NULL;
	rv = agg_report_html_write(f, report);
	if (fclose(f) != 0 || rv != 0) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}
