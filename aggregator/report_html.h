/* report_html.h: the kernel report (the document of query_kernels.h) as a
 * self-contained HTML page: inline CSS and inline SVG charts (spike rate
 * per cohort with its 95% interval as error bars, one chart per kind;
 * p50/p99 latency per detector per cohort on a log scale), every figure
 * also written as text in tables, the significant differences listed
 * first. No scripts, fonts, images or links to anything outside the page.
 * Strings from the data (cohort names, kinds, suspect features) come from
 * agents and are escaped.
 *
 * Used by the aggregator (GET /api/kernels?format=html) and the CLI
 * (spikehound kernels --html FILE). Not thread-safe only in that it uses
 * the report it is given; it keeps no state.
 */
#ifndef AGG_REPORT_HTML_H
#define AGG_REPORT_HTML_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* agg_report_html_write writes the page for report (borrowed) to out.
 * Returns 0, -EINVAL when report is not a kernel report, or -EIO when out
 * reports a write error. */
int agg_report_html_write(FILE *out, json_t *report);

/* agg_report_html returns the page as a NUL-terminated string (caller
 * frees) and its length in *len, or NULL (not a report, out of memory). */
char *agg_report_html(json_t *report, size_t *len);

#endif
