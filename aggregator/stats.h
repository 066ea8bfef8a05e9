/* stats.h: the small statistics the correlator (correlate.c) needs: tail
 * probabilities of the hypergeometric (Fisher's exact test) and Poisson
 * distributions, a robust fleet baseline for per-host event counts, and a
 * period finder for one host's spike times.
 *
 * Probabilities that matter here are often far below DBL_MIN (48 of 50
 * spiking hosts vs 3 of 950 others is p = 1e-75; a thousand hosts go much
 * further), so every tail is computed in log space with lgamma() and also
 * returned as log10 p; p itself underflows to 0 where log10 p does not.
 * Everything here is pure computation: no I/O, no allocation unless noted.
 */
#ifndef AGG_STATS_H
#define AGG_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* agg_stats_log10_fisher returns log10 of the one-sided (enrichment) p of
 * Fisher's exact test for the 2x2 table
 *
 *                 with feature   without
 *     spiking          a            b
 *     others           c            d
 *
 * that is P(X >= a) for X hypergeometric with the table's margins (R:
 * fisher.test(matrix(c(a, c, b, d), 2), alternative = "greater")). Negative
 * counts are treated as 0. Returns a value <= 0 (0 means p = 1). */
double agg_stats_log10_fisher(int64_t a, int64_t b, int64_t c, int64_t d);

/* agg_stats_fisher is agg_stats_log10_fisher as a probability (0 when it
 * underflows). */
double agg_stats_fisher(int64_t a, int64_t b, int64_t c, int64_t d);

/* agg_stats_log10_poisson_sf returns log10 P(X >= k) for X ~ Poisson(mu)
 * (R: ppois(k - 1, mu, lower.tail = FALSE)). k <= 0 gives 0 (p = 1); mu <= 0
 * with k > 0 gives -INFINITY. */
double agg_stats_log10_poisson_sf(int64_t k, double mu);

/* agg_stats_poisson_sf is agg_stats_log10_poisson_sf as a probability. */
double agg_stats_poisson_sf(int64_t k, double mu);

/* agg_stats_baseline estimates the fleet's baseline mean count per host of
 * one event kind over one time window, robustly against the hosts that are
 * far above it. counts[0..n-1] are the counts of the hosts that had at least
 * one event; hosts is how many hosts could have had one (hosts >= n; the
 * others had 0). A host is flagged when its count is >= min_count and
 * log10 P(Poisson(baseline) >= count) < log10_p. The estimate starts from
 * the smaller of the mean and the zero-fraction estimate -ln(zeros/hosts)
 * (which hosts far above cannot inflate much), then repeats: flag, take the
 * mean of the unflagged hosts, until the flagged set is stable. flagged
 * (n entries, may be NULL) receives the final verdicts. Returns the mean
 * count per unflagged host (>= 0). */
double agg_stats_baseline(const int64_t *counts, size_t n, int64_t hosts, double log10_p,
			  int64_t min_count, bool *flagged);

/* struct agg_period_opts: what counts as a period (see agg_stats_period). */
struct agg_period_opts {
	double min_period_s;	 /* shortest period considered (>= 2 * tolerance) */
	double tol_abs_s;	 /* an occurrence matches within max(tol_abs_s, */
	double tol_rel;		 /*   tol_rel * period) of its predicted time */
	int min_occurrences;	 /* at least this many matched occurrences */
	int max_step;		 /* at most max_step - 1 missing in a row */
	double min_coverage;	 /* matched / predicted slots of the train */
	double max_log10_chance; /* log10 of the expected number of trains this
				  * good that background events would form */
};

/* agg_period_opts_default: 1 s or 1 %, >= 4 occurrences, up to 2 missing in
 * a row, 50 % coverage, chance below 1e-3. */
void agg_period_opts_default(struct agg_period_opts *o);

/* struct agg_period: one train of equally spaced occurrences. */
struct agg_period {
	double period_s;     /* least-squares fit of time against slot number */
	double jitter_s;     /* largest distance of an occurrence from the fit */
	double first_s;	     /* time of the train's first occurrence */
	double log10_chance; /* log10 expected chance trains (see opts) */
	size_t matched;	     /* occurrences in the train */
	size_t slots;	     /* slots from first to last (matched + missing) */
};

/* agg_stats_period looks for the best periodic train in occurrence times
 * t[0..n-1] (seconds, sorted ascending, any origin). Candidate periods are
 * the gaps between consecutive occurrences; for each, trains are grown
 * greedily from every occurrence not yet in a train, stepping to the
 * occurrence nearest the time predicted 1..max_step periods ahead. The
 * train with the most occurrences is kept and judged: enough occurrences,
 * coverage, and the chance that background events (the occurrences outside
 * the train, spread evenly) would line up as well: with q = 2 * tolerance *
 * background rate, each step of k slots had probability k * q.
 * matched (n entries, may be NULL) is set for the train's occurrences.
 * Returns 1 with *out filled when a train passes, 0 when none does, or
 * -ENOMEM. */
int agg_stats_period(const double *t, size_t n, const struct agg_period_opts *o,
		     struct agg_period *out, bool *matched);

/* agg_stats_period_tol is the matching tolerance for period p under o. */
double agg_stats_period_tol(const struct agg_period_opts *o, double p);

#endif
