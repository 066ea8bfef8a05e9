/* test_agg_stats.c: the correlator's statistics (aggregator/stats.c):
 * Fisher's exact test and Poisson tails against values computed exactly
 * (R's fisher.test(..., alternative = "greater") and ppois(..., lower.tail
 * = FALSE) give the same), the robust baseline, and the period finder on
 * trains with jitter, missing occurrences and background noise. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "stats.h"

/* close_to asserts |got - want| <= tol. */
static void close_to(double got, double want, double tol)
{
	if (!(fabs(got - want) <= tol))
		fail_msg("got %.12g, want %.12g (+/- %g)", got, want, tol);
}

static void test_fisher(void **state)
{
	/* log10 p from exact rational arithmetic */
	static const struct {
		int64_t a, b, c, d;
		double log10p;
	} cases[] = {
		{3, 1, 1, 3, -0.614649118635983},   /* the tea-tasting table: p = 0.2429 */
		{10, 0, 0, 10, -5.266598551124127}, /* 1 / C(20, 10) */
		{5, 0, 0, 35, -5.818231173757929},  /* 5 of 40 hosts, culprit only there */
		{48, 2, 3, 947, -75.0042266416905}, /* 48/50 spiking vs 3/950 others */
		{7, 3, 2, 8, -1.4573082499478112},
		{1, 9, 11, 3, -1.4615082430502468e-05}, /* depleted: p close to 1 */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double got = agg_stats_log10_fisher(cases[i].a, cases[i].b, cases[i].c, cases[i].d);

		close_to(got, cases[i].log10p, 1e-9 + 1e-10 * fabs(cases[i].log10p));
	}
	close_to(agg_stats_fisher(3, 1, 1, 3), 0.24285714285714285, 1e-12);
	close_to(agg_stats_fisher(10, 0, 0, 10), 5.412544112234515e-06, 1e-15);
	/* no spiking host has it, or every host has it: no evidence */
	assert_true(agg_stats_log10_fisher(0, 5, 0, 5) == 0);
	assert_true(agg_stats_log10_fisher(2, 0, 40, 0) == 0);
	assert_true(agg_stats_log10_fisher(50, 0, 950, 0) == 0);
	/* no others at all: nothing to compare with */
	assert_true(agg_stats_log10_fisher(5, 0, 0, 0) == 0);
	/* far below DBL_MIN still ranks: 1000/1000 vs 0/100000 */
	assert_true(agg_stats_log10_fisher(1000, 0, 0, 100000) < -1000);
	assert_true(agg_stats_fisher(1000, 0, 0, 100000) == 0);
	/* garbage in: negative counts are zero */
	assert_true(agg_stats_log10_fisher(-1, 3, 2, 1) == 0);
}

static void test_poisson(void **state)
{
	static const struct {
		int64_t k;
		double mu, log10p;
	} cases[] = {
		{10, 2, -4.33256502618}, /* ppois(9, 2, lower.tail = FALSE) = 4.6498e-05 */
		{4, 0.375, -3.21354259214}, {12, 0.66, -11.1099033642}, {1, 0.5, -0.405089102855},
		{3, 3, -0.238967280059},    {5, 20, -7.35907113506e-6}, {12, 3.6, -3.43142054387},
		{100, 10, -62.267719676},   {30, 1, -32.8437291356},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		close_to(agg_stats_log10_poisson_sf(cases[i].k, cases[i].mu), cases[i].log10p,
			 1e-8 + 1e-9 * fabs(cases[i].log10p));
	close_to(agg_stats_poisson_sf(10, 2), 4.64980750173e-5, 1e-14);
	assert_true(agg_stats_log10_poisson_sf(0, 5) == 0);
	assert_true(agg_stats_log10_poisson_sf(-3, 5) == 0);
	assert_true(isinf(agg_stats_log10_poisson_sf(1, 0)));
	assert_true(agg_stats_log10_poisson_sf(5000, 1) < -10000);
}

static void test_baseline(void **state)
{
	/* 1000 hosts: 700 with noise of mean 0.375 (180 x 1, 34 x 2, 4 x 3,
	 * one unlucky host with 4), 300 on a bad kernel with 12 each */
	int64_t counts[519];
	bool flagged[519];
	size_t n = 0, nflag = 0;
	double mu;

	for (int i = 0; i < 180; i++)
		counts[n++] = 1;
	for (int i = 0; i < 34; i++)
		counts[n++] = 2;
	for (int i = 0; i < 4; i++)
		counts[n++] = 3;
	counts[n++] = 4;
	for (int i = 0; i < 300; i++)
		counts[n++] = 12;
	assert_int_equal(n, 519);
	mu = agg_stats_baseline(counts, n, 1000, -6, 4, flagged);
	for (size_t i = 0; i < n; i++)
		nflag += flagged[i];
	assert_int_equal(nflag, 300);
	for (size_t i = 0; i < 219; i++)
		assert_false(flagged[i]); /* not even the host with 4 */
	close_to(mu, (180 + 68 + 12 + 4) / 700.0, 1e-9);

	/* a kind nobody has but a few hosts: every one with >= 4 stands out */
	counts[0] = 6;
	counts[1] = 5;
	counts[2] = 1;
	mu = agg_stats_baseline(counts, 3, 1000, -6, 4, flagged);
	assert_true(flagged[0] && flagged[1] && !flagged[2]);
	close_to(mu, 1 / 998.0, 1e-12);

	/* plain noise: nothing flagged, mean kept */
	for (int i = 0; i < 100; i++)
		counts[i] = 1 + (i % 3 == 0);
	mu = agg_stats_baseline(counts, 100, 100, -6, 4, NULL);
	close_to(mu, 134 / 100.0, 1e-9);
	assert_true(agg_stats_baseline(NULL, 0, 0, -6, 4, NULL) == 0);
}

/* lcg is a small deterministic random number generator in [0, 1). */
static double lcg(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(*s >> 11) / 9007199254740992.0;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* poisson_times fills t with n event times of rate r per s after 0. */
static void poisson_times(double *t, size_t n, double r, uint64_t *s)
{
	double now = 0;

	for (size_t i = 0; i < n; i++) {
		now += -log(1 - lcg(s)) / r;
		t[i] = now;
	}
}

static void test_period(void **state)
{
	struct agg_period_opts o;
	struct agg_period p;
	double t[200];
	bool m[200];
	uint64_t seed = 42;
	size_t n = 0;

	agg_period_opts_default(&o);
	/* every 600 s +/- 0.4 s from phase 123 s, occurrence 4 missing, two
	 * noise occurrences in between */
	for (int k = 0; k < 12; k++)
		if (k != 4)
			t[n++] = 123 + 600.0 * k + (lcg(&seed) - 0.5) * 0.8;
	t[n++] = 1000;
	t[n++] = 4321;
	qsort(t, n, sizeof(t[0]), cmp_d);
	assert_int_equal(agg_stats_period(t, n, &o, &p, m), 1);
	close_to(p.period_s, 600, 0.3);
	assert_true(p.jitter_s <= 0.8);
	assert_int_equal(p.matched, 11);
	assert_int_equal(p.slots, 12);
	for (size_t i = 0; i < n; i++)
		assert_true(m[i] == (t[i] != 1000 && t[i] != 4321));

	/* three occurrences are not a period */
	t[0] = 10, t[1] = 70, t[2] = 130;
	assert_int_equal(agg_stats_period(t, 3, &o, &p, m), 0);

	/* background noise: 0.5 events per hour over 12 hours, and a busy host
	 * with 100 per hour, find nothing */
	for (int rep = 0; rep < 50; rep++) {
		poisson_times(t, 6, 0.5 / 3600, &seed);
		assert_int_equal(agg_stats_period(t, 6, &o, &p, m), 0);
	}
	for (int rep = 0; rep < 5; rep++) {
		poisson_times(t, 200, 100.0 / 3600, &seed);
		assert_int_equal(agg_stats_period(t, 200, &o, &p, m), 0);
	}

	/* the busy host with a 60 s train over an hour in its noise */
	poisson_times(t, 140, 100.0 / 3600, &seed);
	for (int k = 0; k < 60; k++)
		t[140 + k] = 7.5 + 60.0 * k;
	qsort(t, 200, sizeof(t[0]), cmp_d);
	assert_int_equal(agg_stats_period(t, 200, &o, &p, m), 1);
	close_to(p.period_s, 60, 0.05);
	assert_true(p.matched >= 60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fisher),
		cmocka_unit_test(test_poisson),
		cmocka_unit_test(test_baseline),
		cmocka_unit_test(test_period),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
