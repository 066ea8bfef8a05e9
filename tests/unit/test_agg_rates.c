/* test_agg_rates.c: the kernel report's statistics (aggregator/rates.c)
 * against known values. The reference figures are R's (poisson.test,
 * binom.test, pgamma, pbeta, p.adjust) where its documentation prints them
 * (binom.test(682, 925, 3/4): p = 0.3825; poisson.test(137, 24.19893): CI
 * 4.753125 .. 6.692709; poisson.test(c(11, 21), c(800, 3011)): p =
 * 0.07967, ratio 1.971488, CI 0.8584264 .. 4.2772659), the rest computed
 * with 40-digit arithmetic (mpmath; exact rationals for the binomial
 * tests) following R's definitions. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rates.h"

/* close_rel asserts |got - want| <= rel * |want| + abs. */
static void close_rel(double got, double want, double rel, double abs_tol)
{
	if (!(fabs(got - want) <= rel * fabs(want) + abs_tol))
		fail_msg("got %.15g, want %.15g (rel %g, abs %g)", got, want, rel, abs_tol);
}

static void test_gamma_p(void **state)
{
	static const struct {
		double a, x, p;
	} cases[] = {
		{ 1, 1, 0.63212055882855768 },     /* 1 - e^-1 */
		{ 5, 3, 0.18473675547622793 },
		{ 0.5, 2, 0.95449973610364159 },   /* erf(sqrt 2) */
		{ 100, 90, 0.15822098918643017 },
		{ 1000, 1100, 0.99894067674607002 },
		{ 3, 0.1, 0.00015465307026467168 }, /* deep lower tail: series */
		{ 50, 80, 0.99986921602340859 },   /* continued fraction */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		close_rel(agg_rate_gamma_p(cases[i].a, cases[i].x), cases[i].p, 1e-12, 1e-15);
	assert_true(agg_rate_gamma_p(2, 0) == 0);
	assert_true(agg_rate_gamma_p(2, INFINITY) == 1);
	assert_true(isnan(agg_rate_gamma_p(0, 1)));
	assert_true(isnan(agg_rate_gamma_p(1, -1)));
	assert_true(isnan(agg_rate_gamma_p(NAN, 1)));
	/* the quantile inverts it */
	close_rel(agg_rate_gamma_quantile(5, 0.18473675547622793), 3, 1e-10, 0);
	close_rel(agg_rate_gamma_quantile(1000, 0.5), 999.666686426965182, 1e-10, 0);
	assert_true(agg_rate_gamma_quantile(3, 0) == 0);
	assert_true(isnan(agg_rate_gamma_quantile(3, 1)));
	assert_true(isnan(agg_rate_gamma_quantile(-3, 0.5)));
}

static void test_poisson_ci(void **state)
{
	static const struct {
		int64_t k;
		double t, low, high;
	} cases[] = {
		{ 0, 1, 0, 3.688879454113936 },
		{ 1, 1, 0.025317807984289876, 5.571643390938897 },
		{ 10, 1, 4.795388696132434, 18.39035604201778 },
		{ 137, 24.19893, 4.753124804848751, 6.692709334176073 }, /* R's example */
		{ 1000, 500, 1.8779460368153904, 2.1279042720326045 },
		{ 5, 2000, 0.0008117431950592102, 0.005834166039661333 },
	};
	struct agg_rate_ci ci;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(agg_rate_poisson_ci(cases[i].k, cases[i].t, 0.95, &ci), 0);
		close_rel(ci.rate, (double)cases[i].k / cases[i].t, 1e-15, 0);
		close_rel(ci.low, cases[i].low, 1e-10, 1e-15);
		close_rel(ci.high, cases[i].high, 1e-10, 0);
	}
	/* a million events: still exact and quick */
	assert_int_equal(agg_rate_poisson_ci(1000000, 1e6, 0.95, &ci), 0);
	assert_true(ci.low < 1 && ci.low > 0.997 && ci.high > 1 && ci.high < 1.003);
	assert_int_equal(agg_rate_poisson_ci(-1, 1, 0.95, &ci), -EINVAL);
	assert_true(isnan(ci.rate) && isnan(ci.low) && isnan(ci.high));
	assert_int_equal(agg_rate_poisson_ci(3, 0, 0.95, &ci), -EINVAL);
	assert_int_equal(agg_rate_poisson_ci(3, 1, 1, &ci), -EINVAL);
	assert_int_equal(agg_rate_poisson_ci(3, NAN, 0.95, &ci), -EINVAL);
}

static void test_beta(void **state)
{
	static const struct {
		double a, b, x, p;
	} cases[] = {
		{ 2, 3, 0.4, 0.5248 },
		{ 0.5, 0.5, 0.3, 0.36901011956554538 },
		{ 10, 20, 0.3, 0.36400408107194423 },
		{ 200, 300, 0.45, 0.98814634562026288 },
		{ 1, 1, 0.77, 0.77 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double a = cases[i].a, b = cases[i].b;

		close_rel(agg_rate_beta_i(a, b, cases[i].x), cases[i].p, 1e-11, 1e-15);
		close_rel(agg_rate_beta_quantile(a, b, cases[i].p), cases[i].x, 1e-9, 1e-15);
	}
	assert_true(agg_rate_beta_i(2, 3, 0) == 0 && agg_rate_beta_i(2, 3, 1) == 1);
	assert_true(isnan(agg_rate_beta_i(0, 3, 0.5)));
	assert_true(isnan(agg_rate_beta_i(2, 3, 1.5)));
	assert_true(isnan(agg_rate_beta_quantile(2, 3, -0.1)));
}

static void test_binom(void **state)
{
	static const struct {
		int64_t x, n;
		double p, pv;
	} tests[] = {
		{ 682, 925, 0.75, 0.3824915595748517 },  /* R's example: 0.3825 */
		{ 7, 20, 0.5, 0.26317596435546875 },
		{ 3, 30, 0.2, 0.2513615603082072 },
		{ 11, 32, 800.0 / 3811, 0.07966863303332947 },
		{ 0, 10, 1.0 / 3, 0.037003166861420175 },
		{ 10, 10, 1.0 / 3, 1.6935087808430286e-05 },
		{ 60, 100, 0.5, 0.05688793364098079 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		close_rel(agg_rate_binom_test(tests[i].x, tests[i].n, tests[i].p), tests[i].pv, 1e-9,
			  1e-15);
	assert_true(agg_rate_binom_test(5, 10, 0.5) == 1); /* x at the mean */
	assert_true(agg_rate_binom_test(0, 0, 0.3) == 1);
	assert_true(agg_rate_binom_test(0, 5, 0) == 1 && agg_rate_binom_test(1, 5, 0) == 0);
	assert_true(isnan(agg_rate_binom_test(6, 5, 0.5)));
	assert_true(isnan(agg_rate_binom_test(1, 5, 1.5)));
	/* huge counts stay finite and quick: 3x the events on one side */
	assert_true(agg_rate_binom_test(300000, 400000, 0.5) < 1e-300);
	assert_true(agg_rate_binom_test(200300, 400000, 0.5) > 0.1);

	close_rel(agg_rate_binom_cdf(3, 10, 0.3), 0.6496107184000001, 1e-12, 0);
	close_rel(agg_rate_binom_cdf(50, 100, 0.45), 0.8654237868119475, 1e-11, 0);
	close_rel(agg_rate_binom_cdf(0, 5, 0.2), 0.32768, 1e-12, 0);
	assert_true(agg_rate_binom_cdf(-1, 5, 0.2) == 0 && agg_rate_binom_cdf(5, 5, 0.2) == 1);
	assert_true(isnan(agg_rate_binom_cdf(1, -5, 0.2)));
}

static void test_compare(void **state)
{
	struct agg_rate_cmp c;

	(void)state;
	/* R: poisson.test(c(11, 6 + 8 + 7), c(800, 1083 + 1050 + 878)) */
	assert_int_equal(agg_rate_compare(11, 800, 21, 3011, 0.95, &c), 0);
	close_rel(c.p_value, 0.07966863303332947, 1e-9, 0);
	close_rel(c.ratio, 1.9714880952380953, 1e-12, 0);
	close_rel(c.low, 0.85842640339164, 1e-8, 0);
	close_rel(c.high, 4.27726594365407, 1e-8, 0);
	/* three times the rate over the same exposure */
	assert_int_equal(agg_rate_compare(300, 1000, 100, 1000, 0.95, &c), 0);
	close_rel(c.ratio, 3, 1e-12, 0);
	close_rel(c.p_value, 2.5918869069720767e-24, 1e-7, 0);
	close_rel(c.low, 2.38476233017845, 1e-8, 0);
	close_rel(c.high, 3.80073339808727, 1e-8, 0);
	/* nothing on either side: no evidence at all */
	assert_int_equal(agg_rate_compare(0, 10, 0, 20, 0.95, &c), 0);
	assert_true(c.p_value == 1 && isnan(c.ratio) && c.low == 0 && isinf(c.high));
	/* none on the baseline side */
	assert_int_equal(agg_rate_compare(8, 10, 0, 10, 0.95, &c), 0);
	assert_true(isinf(c.ratio) && isinf(c.high) && c.low > 1 && c.p_value < 0.01);
	assert_int_equal(agg_rate_compare(-1, 10, 3, 10, 0.95, &c), -EINVAL);
	assert_true(isnan(c.p_value));
	assert_int_equal(agg_rate_compare(1, 0, 3, 10, 0.95, &c), -EINVAL);
	assert_int_equal(agg_rate_compare(INT64_MAX, 1, 3, 10, 0.95, &c), -EINVAL);
}

static void test_holm(void **state)
{
	/* R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") */
	double p[] = { 0.01, 0.04, 0.03, 0.005 }, adj[4];
	double q[] = { 0.02, NAN, 0.5, 0.01, 0.04 };

	(void)state;
	assert_int_equal(agg_rate_holm(p, 4, adj), 0);
	close_rel(adj[0], 0.03, 1e-15, 0);
	close_rel(adj[1], 0.06, 1e-15, 0);
	close_rel(adj[2], 0.06, 1e-15, 0);
	close_rel(adj[3], 0.02, 1e-15, 0);
	/* NAN is no comparison (m = 4), and adj may be the input */
	assert_int_equal(agg_rate_holm(q, 5, q), 0);
	close_rel(q[0], 0.06, 1e-15, 0);
	assert_true(isnan(q[1]));
	close_rel(q[2], 0.5, 1e-15, 0);
	close_rel(q[3], 0.04, 1e-15, 0);
	close_rel(q[4], 0.08, 1e-15, 0);
	assert_int_equal(agg_rate_holm(p, 0, adj), 0);
}

static void test_hist_quantile(void **state)
{
	double h[AGG_RATE_HIST_SLOTS] = { 0 }, empty[4] = { 0 }, bad[2] = { 1, -1 };

	(void)state;
	/* 10 waits in [2, 4) us and 10 in [4, 8) us */
	h[1] = 10;
	h[2] = 10;
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.25), 3, 1e-15, 0);
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.5), 4, 1e-15, 0);
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.75), 6, 1e-15, 0);
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0), 2, 1e-15, 0);
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 1), 8, 1e-15, 0);
	/* bucket 0 is [0, 2) us */
	h[0] = 20;
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.25), 1, 1e-15, 0);
	/* the p99 of 990 fast waits and 10 of 16-32 ms */
	for (int i = 0; i < AGG_RATE_HIST_SLOTS; i++)
		h[i] = 0;
	h[5] = 990;  /* 32-63 us */
	h[14] = 10;  /* 16384-32767 us */
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.5), 32 + 32 * 500.0 / 990, 1e-12, 0);
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.99), 64, 1e-12, 0);
	close_rel(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 0.995), 16384 + 16384 * 0.5, 1e-12, 0);
	close_rel(agg_rate_hist_bucket_low(0), 0, 0, 0);
	close_rel(agg_rate_hist_bucket_low(31), 2147483648.0, 0, 0);
	close_rel(agg_rate_hist_bucket_high(31), 4294967296.0, 0, 0);
	assert_true(isnan(agg_rate_hist_quantile(empty, 4, 0.5)));
	assert_true(isnan(agg_rate_hist_quantile(bad, 2, 0.5)));
	assert_true(isnan(agg_rate_hist_quantile(h, AGG_RATE_HIST_SLOTS, 1.5)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gamma_p),	  cmocka_unit_test(test_poisson_ci),
		cmocka_unit_test(test_beta),	  cmocka_unit_test(test_binom),
		cmocka_unit_test(test_compare),	  cmocka_unit_test(test_holm),
		cmocka_unit_test(test_hist_quantile),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
