/* rates.c: exact Poisson intervals and rate comparisons, Holm's correction
 * and log2-histogram quantiles for the kernel report (see rates.h).
 *
 * The incomplete gamma function uses its power series below x = a + 1 and
 * Legendre's continued fraction for the upper tail above; the incomplete
 * beta function uses its continued fraction on the side of the mean where
 * it converges fast, and the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) on the
 * other. Continued fractions are evaluated with the modified Lentz method.
 * Quantiles are found by bisection: slow-ish (about 100 evaluations) but
 * it cannot diverge, and a report needs a few dozen of them.
 */
#include "rates.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#define EPS 1e-15
#define TINY 1e-300
#define MAX_ITER 1000000
#define BISECT_ITER 200
#define REL_ERR (1 + 1e-7) /* R's binom.test tolerance for "as likely" */

/* lgamma is not thread-safe where it sets signgam; the report runs on one
 * thread (the loop, or the CLI) and its arguments here are positive. */

/* gamma_prefix is x^a e^-x / Gamma(a), in log space. */
static double log_gamma_prefix(double a, double x)
{
	return a * log(x) - x - lgamma(a);
}

/* gamma_series is P(a, x) by its power series (x < a + 1). */
static double gamma_series(double a, double x)
{
	double term = 1.0 / a, sum = term;

	for (int n = 1; n < MAX_ITER; n++) {
		term *= x / (a + n);
		sum += term;
		if (fabs(term) < fabs(sum) * EPS)
			break;
	}
	return sum * exp(log_gamma_prefix(a, x));
}

/* gamma_cfrac is Q(a, x) = 1 - P(a, x) by Legendre's continued fraction
 * (x >= a + 1). */
static double gamma_cfrac(double a, double x)
{
	double b = x + 1 - a, c = 1 / TINY, d = 1 / b, h = d;

	for (int i = 1; i < MAX_ITER; i++) {
		double an = -i * (i - a), del;

		b += 2;
		d = an * d + b;
		if (fabs(d) < TINY)
			d = TINY;
		c = b + an / c;
		if (fabs(c) < TINY)
			c = TINY;
		d = 1 / d;
		del = d * c;
		h *= del;
		if (fabs(del - 1) < EPS)
			break;
	}
	return exp(log_gamma_prefix(a, x)) * h;
}

double agg_rate_gamma_p(double a, double x)
{
	if (!(a > 0) || !(x >= 0) || isinf(a))
		return NAN;
	if (x == 0)
		return 0;
	if (isinf(x))
		return 1;
	if (x < a + 1)
		return gamma_series(a, x);
	return 1 - gamma_cfrac(a, x);
}

double agg_rate_gamma_quantile(double a, double p)
{
	double lo = 0, hi = a > 1 ? a : 1;

	if (!(a > 0) || isinf(a) || !(p >= 0) || !(p < 1))
		return NAN;
	if (p == 0)
		return 0;
	while (agg_rate_gamma_p(a, hi) < p) {
		lo = hi;
		hi *= 2;
		if (isinf(hi))
			return NAN;
	}
	for (int i = 0; i < BISECT_ITER && hi - lo > 1e-15 * hi; i++) {
		double mid = lo + (hi - lo) / 2;

		if (agg_rate_gamma_p(a, mid) < p)
			lo = mid;
		else
			hi = mid;
	}
	return lo + (hi - lo) / 2;
}

/* beta_cfrac is the continued fraction of I_x(a, b) without its prefix;
 * it converges fast for x < (a + 1) / (a + b + 2). */
static double beta_cfrac(double a, double b, double x)
{
	double c = 1, d = 1 - (a + b) * x / (a + 1), h;

	if (fabs(d) < TINY)
		d = TINY;
	d = 1 / d;
	h = d;
	for (int m = 1; m < MAX_ITER; m++) {
		double m2 = 2.0 * m, aa, del;

		/* even step */
		aa = m * (b - m) * x / ((a - 1 + m2) * (a + m2));
		d = 1 + aa * d;
		if (fabs(d) < TINY)
			d = TINY;
		c = 1 + aa / c;
		if (fabs(c) < TINY)
			c = TINY;
		d = 1 / d;
		h *= d * c;
		/* odd step */
		aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1 + m2));
		d = 1 + aa * d;
		if (fabs(d) < TINY)
			d = TINY;
		c = 1 + aa / c;
		if (fabs(c) < TINY)
			c = TINY;
		d = 1 / d;
		del = d * c;
		h *= del;
		if (fabs(del - 1) < EPS)
			break;
	}
	return h;
}

/* beta_tail is I_x(a, b) for x on the fast side of the mean. */
static double beta_tail(double a, double b, double x)
{
	double lp = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);

	return exp(lp) * beta_cfrac(a, b, x) / a;
}

double agg_rate_beta_i(double a, double b, double x)
{
	if (!(a > 0) || !(b > 0) || isinf(a) || isinf(b) || !(x >= 0) || !(x <= 1))
		return NAN;
	if (x == 0)
		return 0;
	if (x == 1)
		return 1;
	if (x < (a + 1) / (a + b + 2))
		return beta_tail(a, b, x);
	return 1 - beta_tail(b, a, 1 - x);
}

/* beta_upper is 1 - I_x(a, b) without cancellation on the fast side. */
static double beta_upper(double a, double b, double x)
{
	if (x <= 0)
		return 1;
	if (x >= 1)
		return 0;
	if (x < (a + 1) / (a + b + 2))
		return 1 - beta_tail(a, b, x);
	return beta_tail(b, a, 1 - x);
}

double agg_rate_beta_quantile(double a, double b, double p)
{
	double lo = 0, hi = 1;

	if (!(a > 0) || !(b > 0) || isinf(a) || isinf(b) || !(p >= 0) || !(p <= 1))
		return NAN;
	if (p == 0)
		return 0;
	if (p == 1)
		return 1;
	for (int i = 0; i < BISECT_ITER && hi - lo > 1e-16 * hi; i++) {
		double mid = lo + (hi - lo) / 2;

		if (agg_rate_beta_i(a, b, mid) < p)
			lo = mid;
		else
			hi = mid;
	}
	return lo + (hi - lo) / 2;
}

/* binom_cdf is P(X <= k); binom_sf is P(X >= k); both for valid n, p. */
static double binom_cdf(int64_t k, int64_t n, double p)
{
	if (k < 0)
		return 0;
	if (k >= n || p <= 0)
		return 1;
	if (p >= 1)
		return 0;
	/* P(X <= k) = I_{1-p}(n - k, k + 1) = 1 - I_p(k + 1, n - k) */
	return beta_upper((double)k + 1, (double)(n - k), p);
}

static double binom_sf(int64_t k, int64_t n, double p)
{
	if (k <= 0)
		return 1;
	if (k > n || p <= 0)
		return 0;
	if (p >= 1)
		return 1;
	return agg_rate_beta_i((double)k, (double)(n - k + 1), p);
}

double agg_rate_binom_cdf(int64_t k, int64_t n, double p)
{
	if (n < 0 || !(p >= 0) || !(p <= 1))
		return NAN;
	return binom_cdf(k, n, p);
}

/* log_dbinom is log P(X = k) for 0 <= k <= n, 0 < p < 1. */
static double log_dbinom(int64_t k, int64_t n, double p)
{
	double kd = (double)k, nd = (double)n;

	return lgamma(nd + 1) - lgamma(kd + 1) - lgamma(nd - kd + 1) + kd * log(p) +
	       (nd - kd) * log1p(-p);
}

double agg_rate_binom_test(int64_t x, int64_t n, double p)
{
	double m, ld, pv;

	if (n < 0 || x < 0 || x > n || !(p >= 0) || !(p <= 1))
		return NAN;
	if (n == 0)
		return 1;
	if (p == 0)
		return x == 0 ? 1 : 0;
	if (p == 1)
		return x == n ? 1 : 0;
	m = (double)n * p;
	if ((double)x == m)
		return 1;
	ld = log_dbinom(x, n, p) + log(REL_ERR);
	if ((double)x < m) {
		/* on [ceil(m), n] the probabilities do not increase: find the
		 * first j there as unlikely as x; every i >= j counts */
		int64_t lo = (int64_t)ceil(m), hi = n + 1;

		while (lo < hi) {
			int64_t mid = lo + (hi - lo) / 2;

			if (log_dbinom(mid, n, p) <= ld)
				hi = mid;
			else
				lo = mid + 1;
		}
		pv = binom_cdf(x, n, p) + binom_sf(lo, n, p);
	} else {
		/* on [0, floor(m)] they do not decrease: find the last i
		 * there as unlikely as x; every i' <= i counts */
		int64_t lo = -1, hi = (int64_t)floor(m);

		while (lo < hi) {
			int64_t mid = hi - (hi - lo) / 2;

			if (log_dbinom(mid, n, p) <= ld)
				lo = mid;
			else
				hi = mid - 1;
		}
		pv = binom_cdf(lo, n, p) + binom_sf(x, n, p);
	}
	return pv < 1 ? pv : 1;
}

int agg_rate_poisson_ci(int64_t k, double t, double conf, struct agg_rate_ci *out)
{
	double alpha = 1 - conf;

	out->rate = out->low = out->high = NAN;
	if (k < 0 || !(t > 0) || isinf(t) || !(conf > 0) || !(conf < 1))
		return -EINVAL;
	out->rate = (double)k / t;
	out->low = k == 0 ? 0 : agg_rate_gamma_quantile((double)k, alpha / 2) / t;
	out->high = agg_rate_gamma_quantile((double)k + 1, 1 - alpha / 2) / t;
	return 0;
}

int agg_rate_compare(int64_t k1, double t1, int64_t k0, double t0, double conf,
		     struct agg_rate_cmp *out)
{
	double alpha = 1 - conf, p0, lo, hi, scale;
	int64_t n;

	out->ratio = out->low = out->high = out->p_value = NAN;
	if (k1 < 0 || k0 < 0 || k1 > INT64_MAX - k0 || !(t1 > 0) || !(t0 > 0) || isinf(t1) ||
	    isinf(t0) || !(conf > 0) || !(conf < 1))
		return -EINVAL;
	n = k1 + k0;
	p0 = t1 / (t1 + t0);
	scale = t0 / t1;
	if (n == 0) {
		out->p_value = 1;
		out->low = 0;
		out->high = INFINITY;
		return 0;
	}
	out->ratio = k0 == 0 ? INFINITY : ((double)k1 / t1) / ((double)k0 / t0);
	out->p_value = agg_rate_binom_test(k1, n, p0);
	/* Clopper-Pearson for the share of rate 1 in the events, mapped to
	 * the ratio: share = r t1 / (r t1 + t0) <=> r = share / (1 - share) t0 / t1 */
	lo = k1 == 0 ? 0 : agg_rate_beta_quantile((double)k1, (double)(n - k1 + 1), alpha / 2);
	hi = k1 == n ? 1 : agg_rate_beta_quantile((double)k1 + 1, (double)(n - k1), 1 - alpha / 2);
	out->low = lo / (1 - lo) * scale;
	out->high = hi >= 1 ? INFINITY : hi / (1 - hi) * scale;
	return 0;
}

/* struct ranked is one p-value and where it came from. */
struct ranked {
	double p;
	size_t i;
};

static int ranked_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->p != y->p)
		return x->p < y->p ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i); /* stable */
}

int agg_rate_holm(const double *p, size_t n, double *adj)
{
	struct ranked *r;
	size_t m = 0;
	double run = 0;

	if (n == 0)
		return 0;
	r = malloc(n * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!isnan(p[i]))
			r[m++] = (struct ranked){ p[i], i };
	}
	qsort(r, m, sizeof(*r), ranked_cmp);
	/* adj may be p: every p was copied into r before the first write */
	for (size_t i = 0; i < n; i++) {
		if (isnan(p[i]))
			adj[i] = NAN;
	}
	for (size_t k = 0; k < m; k++) {
		double v = (double)(m - k) * r[k].p;

		if (v > 1)
			v = 1;
		if (v > run)
			run = v;
		adj[r[k].i] = run;
	}
	free(r);
	return 0;
}

double agg_rate_hist_bucket_low(size_t i)
{
	return i == 0 ? 0 : ldexp(1, (int)(i < 1023 ? i : 1023));
}

double agg_rate_hist_bucket_high(size_t i)
{
	return ldexp(1, (int)(i < 1022 ? i + 1 : 1023));
}

double agg_rate_hist_quantile(const double *buckets, size_t n, double q)
{
	double total = 0, target, acc = 0;
	size_t last = 0;

	if (!(q >= 0) || !(q <= 1))
		return NAN;
	for (size_t i = 0; i < n; i++) {
		if (!(buckets[i] >= 0) || isinf(buckets[i]))
			return NAN;
		total += buckets[i];
		if (buckets[i] > 0)
			last = i;
	}
	if (!(total > 0))
		return NAN;
	target = q * total;
	for (size_t i = 0; i < n; i++) {
		double lo, hi;

		if (buckets[i] <= 0)
			continue;
		if (acc + buckets[i] < target && i != last) {
			acc += buckets[i];
			continue;
		}
		lo = agg_rate_hist_bucket_low(i);
		hi = agg_rate_hist_bucket_high(i);
		if (target <= acc)
			return lo;
		if (target >= acc + buckets[i])
			return hi;
		return lo + (hi - lo) * (target - acc) / buckets[i];
	}
	return NAN; /* not reached */
}
