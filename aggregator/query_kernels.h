/* query_kernels.h: the kernel-version report, "is it the new kernel?":
 * per cohort of hosts (kernel release, or the value of one host label) the
 * hosts, host-hours, spike rate per host-hour with its exact 95% interval
 * per kind (accounting anomalies are kind "accounting"), per-detector
 * p50/p99 latency from the merged histograms, the top incident causes, and
 * which rates differ significantly from a baseline cohort.
 *
 *   GET /api/kernels [since=D] [by=kernel|label:KEY] [baseline=R] [format=json|html]
 *
 * since: how far back (default 7d, at most 400d); by: cohorts (default
 * kernel); baseline: the cohort the others are compared with (default the
 * one with the most host-hours; 404 when no cohort has that name); format
 * html answers the same report as a self-contained page (report_html.h).
 *
 * The sums come from the rollups of sql/006_rollups.sql in one statement
 * (by kernel: kernel-hour rows, the window starting at the hour; by label:
 * label-set-day rows, the labels as they were at ingest, the window
 * starting at the UTC day; hosts: those with a boot that reported in the
 * window); the statistics are computed here (rates.h), on the loop thread,
 * from the JSON the statement returns. Incident causes are the rank-1
 * suspects (sql/005_incidents.sql) of incidents overlapping the window,
 * counted on the cohort of each incident host.
 *
 * The report document:
 *   {"from_ns", "to_ns", "granularity": "hour"|"day", "by": "kernel"|"label:KEY",
 *    "label": KEY|null, "baseline", "baseline_reason": "requested"|"most host-hours",
 *    "confidence": 0.95, "alpha": 0.05, "correction": "holm", "comparisons": N,
 *    "kinds": [rate kinds], "latency_kinds": [histogram kinds],
 *    "cohorts": [{"cohort" (null: the label is not set), "hosts", "host_hours",
 *       "summaries", "is_baseline",
 *       "rates": [{"kind", "events", "rate", "ci_low", "ci_high",
 *                  "vs_baseline": null | {"ratio", "ratio_low", "ratio_high",
 *                     "p_value", "p_holm", "significant", "direction": "worse"|"better"}}],
 *       "accounting": {"events", "rate", "ci_low", "ci_high"} | null,
 *       "latency": [{"kind", "count", "mean_us", "p50_us", "p99_us", "buckets": [32]}],
 *       "causes": [{"feature", "incidents", "hosts", "events"}]}],
 *    "significant": [{"cohort", "kind", "direction", "ratio", "p_holm"}]}
 * Rates are per host-hour; a number that does not exist (a rate over no
 * host-hours, an infinite ratio) is null. Cohorts: the baseline first, then
 * by name (version order), the unset label last.
 */
#ifndef AGG_QUERY_KERNELS_H
#define AGG_QUERY_KERNELS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* AGG_KERNELS_CONFIDENCE is the confidence of the intervals; AGG_KERNELS_ALPHA
 * the family-wise error rate of the comparisons (Holm). */
#define AGG_KERNELS_CONFIDENCE 0.95
#define AGG_KERNELS_ALPHA 0.05

/* struct agg_kernels_query is what a report asks for; strings borrowed. */
struct agg_kernels_query {
	int64_t from_ns, to_ns;
	const char *label;    /* NULL: cohorts by kernel release; else by this host label */
	const char *baseline; /* NULL: the cohort with the most host-hours */
};

/* agg_kernels_build turns the rollup sums the report's statement returned,
 * raw (borrowed): {"from_ns", "to_ns", "granularity", "cohorts": [{"cohort",
 * "hosts", "covered_s", "summaries"}], "kinds": [{"cohort", "kind",
 * "events", "hc", "hs", "buckets"}], "causes": [{"cohort", "feature",
 * "incidents", "hosts", "events"}]}, into the report document above.
 * Returns a new reference (caller decrefs), or NULL with *status (404: the
 * requested baseline is no cohort; 500: malformed input or out of memory)
 * and a message in err. */
json_t *agg_kernels_build(json_t *raw, const struct agg_kernels_query *q, int *status,
			  char *err, size_t errlen);

/* agg_query_kernels_cb is the route of GET /api/kernels; arg is the
 * struct agg_query (query.h) whose db it uses. */
void agg_query_kernels_cb(struct agg_http_req *req, void *arg);

#endif
