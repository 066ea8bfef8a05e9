/* rates.h: the statistics of the kernel report (query_kernels.c): exact
 * Poisson intervals for spike rates, the exact comparison of two Poisson
 * rates, Holm's correction over many comparisons, and quantiles of merged
 * log2 latency histograms.
 *
 * Exact means no normal approximation: the interval of a rate is Garwood's
 * (chi-square, i.e. gamma, quantiles), the comparison is the conditional
 * binomial test (given k1 + k0 events, k1 is binomial with p = t1 / (t1 +
 * t0) when the rates are equal), two-sided like R's binom.test, so the
 * figures match R's poisson.test. The special functions are computed here
 * from lgamma(): regularized incomplete gamma and beta functions (series
 * and continued fractions) and their quantiles by bisection.
 *
 * Everything here is pure computation on the caller's thread; only
 * agg_rate_holm allocates. Bad arguments give NAN (or -EINVAL), never a
 * crash.
 */
#ifndef AGG_RATES_H
#define AGG_RATES_H

#include <stddef.h>
#include <stdint.h>

/* AGG_RATE_HIST_SLOTS is the number of log2-microsecond buckets of a
 * histogram: bucket 0 holds waits of 0 and 1 us, bucket i >= 1 those of
 * [2^i, 2^(i+1)) us, the last one everything from 2^31 us (the layout of
 * the agents' histograms and of the rollups in sql/006_rollups.sql). */
#define AGG_RATE_HIST_SLOTS 32

/* agg_rate_gamma_p returns the regularized lower incomplete gamma function
 * P(a, x) = gamma(a, x) / Gamma(a) (R: pgamma(x, a)) for a > 0, x >= 0;
 * NAN otherwise. */
double agg_rate_gamma_p(double a, double x);

/* agg_rate_gamma_quantile returns x with P(a, x) = p (R: qgamma(p, a)) for
 * a > 0, 0 <= p < 1; NAN otherwise. */
double agg_rate_gamma_quantile(double a, double p);

/* agg_rate_beta_i returns the regularized incomplete beta function
 * I_x(a, b) (R: pbeta(x, a, b)) for a, b > 0, 0 <= x <= 1; NAN otherwise. */
double agg_rate_beta_i(double a, double b, double x);

/* agg_rate_beta_quantile returns x with I_x(a, b) = p (R: qbeta(p, a, b))
 * for a, b > 0, 0 <= p <= 1; NAN otherwise. */
double agg_rate_beta_quantile(double a, double b, double p);

/* agg_rate_binom_cdf returns P(X <= k) for X ~ Binomial(n, p) (R:
 * pbinom(k, n, p)); NAN for n < 0 or p outside [0, 1]. */
double agg_rate_binom_cdf(int64_t k, int64_t n, double p);

/* agg_rate_binom_test returns the two-sided p-value of the exact binomial
 * test of x successes in n trials against probability p, the way R's
 * binom.test(x, n, p) computes it: the probability of every outcome no
 * more likely than x (with R's relative tolerance of 1e-7). NAN for bad
 * arguments (x outside [0, n], p outside [0, 1]). */
double agg_rate_binom_test(int64_t x, int64_t n, double p);

/* struct agg_rate_ci is a rate with its confidence interval. */
struct agg_rate_ci {
	double rate; /* k / t */
	double low;  /* 0 when k == 0 */
	double high;
};

/* agg_rate_poisson_ci computes the rate of k events over exposure t (say
 * host-hours) with Garwood's exact interval at confidence conf (0.95):
 * [qgamma((1-conf)/2, k), qgamma((1+conf)/2, k+1)] / t (R:
 * poisson.test(k, t)$conf.int). Returns 0, or -EINVAL when k < 0, t <= 0
 * or conf is outside (0, 1) (out is then all NAN). */
int agg_rate_poisson_ci(int64_t k, double t, double conf, struct agg_rate_ci *out);

/* struct agg_rate_cmp compares rate 1 with rate 0. */
struct agg_rate_cmp {
	double ratio;   /* (k1 / t1) / (k0 / t0); INFINITY when only k0 is 0, NAN when both */
	double low;     /* exact interval of the ratio (Clopper-Pearson on the split) */
	double high;    /* INFINITY when k0 is 0 */
	double p_value; /* two-sided conditional binomial test; 1 when k1 + k0 == 0 */
};

/* agg_rate_compare compares k1 events over exposure t1 with k0 over t0 (R:
 * poisson.test(c(k1, k0), c(t1, t0)), its p.value, estimate and
 * conf.int at conf). Returns 0, or -EINVAL for negative counts,
 * exposures <= 0 or conf outside (0, 1) (out is then all NAN). */
int agg_rate_compare(int64_t k1, double t1, int64_t k0, double t0, double conf,
		     struct agg_rate_cmp *out);

/* agg_rate_holm writes Holm's step-down adjusted p-values of p[0..n-1]
 * into adj[0..n-1] (R: p.adjust(p, "holm")); a NAN p stays NAN in adj and
 * does not count as a comparison. adj may be p. Returns 0 or -ENOMEM. */
int agg_rate_holm(const double *p, size_t n, double *adj);

/* agg_rate_hist_bucket_low and agg_rate_hist_bucket_high are the bounds of
 * bucket i in microseconds: [0, 2) for bucket 0, [2^i, 2^(i+1)) after
 * (the last bucket is open-ended; its high is taken as 2^(i+1)). */
double agg_rate_hist_bucket_low(size_t i);
double agg_rate_hist_bucket_high(size_t i);

/* agg_rate_hist_quantile returns the q-quantile (0 <= q <= 1) in
 * microseconds of a log2 histogram with n buckets (counts, as doubles so
 * merged fleet histograms cannot overflow), interpolated linearly within
 * the bucket that holds it. NAN when the histogram is empty, a count is
 * negative or q is outside [0, 1]. */
double agg_rate_hist_quantile(const double *buckets, size_t n, double q);

#endif
