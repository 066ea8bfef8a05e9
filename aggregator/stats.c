/* stats.c: tail probabilities in log space, a robust Poisson baseline and
 * a period finder (see stats.h). */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LN10 2.302585092994045684

/* lchoose is ln C(n, k) for 0 <= k <= n. */
static double lchoose(int64_t n, int64_t k)
{
	return lgamma((double)n + 1) - lgamma((double)k + 1) - lgamma((double)(n - k) + 1);
}

double agg_stats_log10_fisher(int64_t a, int64_t b, int64_t c, int64_t d)
{
	int64_t n, k, big, hi;
	double base, first, m, s;

	a = a < 0 ? 0 : a;
	b = b < 0 ? 0 : b;
	c = c < 0 ? 0 : c;
	d = d < 0 ? 0 : d;
	n = a + b; /* spiking */
	k = a + c; /* with the feature */
	big = a + b + c + d;
	hi = n < k ? n : k;
	if (a == 0 || a > hi)
		return a == 0 ? 0 : -INFINITY;
	/* terms x = a..hi of C(k, x) C(big - k, n - x) / C(big, n); the
	 * support also needs n - x <= big - k */
	base = -lchoose(big, n);
	m = -INFINITY;
	for (int64_t x = a; x <= hi; x++) {
		double t;

		if (n - x > big - k)
			continue;
		t = lchoose(k, x) + lchoose(big - k, n - x);
		if (t > m)
			m = t;
	}
	if (m == -INFINITY)
		return -INFINITY;
	s = 0;
	for (int64_t x = a; x <= hi; x++) {
		if (n - x > big - k)
			continue;
		s += exp(lchoose(k, x) + lchoose(big - k, n - x) - m);
	}
	first = (m + log(s) + base) / LN10;
	return first > 0 ? 0 : first;
}

double agg_stats_fisher(int64_t a, int64_t b, int64_t c, int64_t d)
{
	return pow(10, agg_stats_log10_fisher(a, b, c, d));
}

double agg_stats_log10_poisson_sf(int64_t k, double mu)
{
	double lt, s, r, cdf;

	if (k <= 0)
		return 0;
	if (!(mu > 0))
		return -INFINITY;
	if ((double)k > mu) {
		/* sum the upper tail from its (largest) first term */
		lt = -mu + (double)k * log(mu) - lgamma((double)k + 1);
		s = 1;
		r = 1;
		for (int64_t j = k + 1; j < k + 100000; j++) {
			r *= mu / (double)j;
			s += r;
			if (r < 1e-17 * s)
				break;
		}
		lt = (lt + log(s)) / LN10;
		return lt > 0 ? 0 : lt;
	}
	/* k <= mu: the tail holds about half or more; 1 - cdf is accurate */
	lt = -mu + (double)(k - 1) * log(mu) - lgamma((double)k);
	r = 1;
	s = 1;
	for (int64_t j = k - 1; j > 0; j--) {
		r *= (double)j / mu;
		s += r;
		if (r < 1e-17 * s)
			break;
	}
	cdf = exp(lt) * s;
	if (cdf >= 1)
		return log10(1e-300);
	return log10(1 - cdf);
}

double agg_stats_poisson_sf(int64_t k, double mu)
{
	return pow(10, agg_stats_log10_poisson_sf(k, mu));
}

double agg_stats_baseline(const int64_t *counts, size_t n, int64_t hosts, double log10_p,
			  int64_t min_count, bool *flagged)
{
	bool *own = NULL, *f = flagged;
	double total = 0, mu, zero_mu;
	int64_t zeros;

	if ((int64_t)n > hosts)
		hosts = (int64_t)n;
	if (hosts <= 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		total += (double)(counts[i] > 0 ? counts[i] : 0);
	mu = total / (double)hosts;
	zeros = hosts - (int64_t)n;
	if (zeros > 0) {
		zero_mu = -log((double)zeros / (double)hosts);
		if (zero_mu < mu)
			mu = zero_mu;
	}
	if (!f && n > 0 && !(f = own = calloc(n, sizeof(*f))))
		return mu;
	for (size_t i = 0; i < n; i++)
		f[i] = false;
	for (int round = 0; round < 50; round++) {
		bool changed = false;
		double sum = 0;
		int64_t left = hosts;

		for (size_t i = 0; i < n; i++) {
			bool v = counts[i] >= min_count &&
				 agg_stats_log10_poisson_sf(counts[i], mu) < log10_p;

			if (v != f[i])
				changed = true;
			f[i] = v;
		}
		for (size_t i = 0; i < n; i++) {
			if (f[i])
				left--;
			else
				sum += (double)(counts[i] > 0 ? counts[i] : 0);
		}
		mu = left > 0 ? sum / (double)left : 0;
		if (!changed && round > 0)
			break;
	}
	free(own);
	return mu;
}

void agg_period_opts_default(struct agg_period_opts *o)
{
	o->min_period_s = 3;
	o->tol_abs_s = 1;
	o->tol_rel = 0.01;
	o->min_occurrences = 4;
	o->max_step = 3;
	o->min_coverage = 0.5;
	o->max_log10_chance = -3;
}

double agg_stats_period_tol(const struct agg_period_opts *o, double p)
{
	double r = o->tol_rel * p;

	return r > o->tol_abs_s ? r : o->tol_abs_s;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* nearest returns the index of the occurrence nearest to target within
 * tol, or -1 (t sorted). */
static long nearest(const double *t, size_t n, double target, double tol)
{
	size_t lo = 0, hi = n;
	long best = -1;
	double bd = tol;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t[mid] < target - tol)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t j = lo; j < n && t[j] <= target + tol; j++) {
		double d = fabs(t[j] - target);

		if (d <= bd) {
			bd = d;
			best = (long)j;
		}
	}
	return best;
}

struct train {
	size_t *idx;  /* occurrence indexes */
	size_t *slot; /* slot number of each, from 0 */
	size_t len;
};

/* grow builds the train from anchor i for period p into tr (arrays of n). */
static void grow(const double *t, size_t n, size_t i, double p, double tol, int max_step,
		 struct train *tr)
{
	size_t cur = i, slot = 0;

	tr->len = 0;
	tr->idx[tr->len] = i;
	tr->slot[tr->len++] = 0;
	while (tr->len < n) {
		long j = -1;
		int k;

		for (k = 1; k <= max_step && j < 0; k++) {
			j = nearest(t, n, t[cur] + k * p, tol);
			if (j >= 0 && (size_t)j <= cur)
				j = -1;
		}
		if (j < 0)
			break;
		slot += (size_t)(k - 1);
		cur = (size_t)j;
		tr->idx[tr->len] = cur;
		tr->slot[tr->len++] = slot;
	}
}

int agg_stats_period(const double *t, size_t n, const struct agg_period_opts *o,
		     struct agg_period *out, bool *matched)
{
	double *gaps = NULL, *cand = NULL;
	size_t ngaps = 0, ncand = 0, *cand_n = NULL;
	bool *used = NULL;
	struct train tr = {0}, best = {0};
	double best_p = 0;
	int rv = 0;

	if (matched)
		memset(matched, 0, n * sizeof(*matched));
	if (n < (size_t)o->min_occurrences || n < 3)
		return 0;
	gaps = malloc((n - 1) * sizeof(*gaps));
	cand = malloc((n - 1) * sizeof(*cand));
	cand_n = malloc((n - 1) * sizeof(*cand_n));
	used = malloc(n * sizeof(*used));
	tr.idx = malloc(n * sizeof(*tr.idx));
	tr.slot = malloc(n * sizeof(*tr.slot));
	best.idx = malloc(n * sizeof(*best.idx));
	best.slot = malloc(n * sizeof(*best.slot));
	if (!gaps || !cand || !cand_n || !used || !tr.idx || !tr.slot || !best.idx || !best.slot) {
		rv = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		double g = t[i + 1] - t[i];

		if (g >= o->min_period_s)
			gaps[ngaps++] = g;
	}
	qsort(gaps, ngaps, sizeof(*gaps), cmp_double);
	/* group equal gaps (within tolerance): each group's median is one
	 * candidate, the largest groups first */
	for (size_t i = 0; i < ngaps;) {
		size_t j = i;

		while (j < ngaps && gaps[j] - gaps[i] <= agg_stats_period_tol(o, gaps[i]))
			j++;
		cand[ncand] = gaps[i + (j - i) / 2];
		cand_n[ncand++] = j - i;
		i = j;
	}
	for (size_t i = 1; i < ncand; i++) {
		for (size_t j = i; j > 0 && cand_n[j] > cand_n[j - 1]; j--) {
			double c = cand[j];
			size_t cn = cand_n[j];

			cand[j] = cand[j - 1];
			cand_n[j] = cand_n[j - 1];
			cand[j - 1] = c;
			cand_n[j - 1] = cn;
		}
	}
	if (ncand > 16)
		ncand = 16;
	best.len = 0;
	for (size_t c = 0; c < ncand; c++) {
		double p = cand[c], tol = agg_stats_period_tol(o, p);

		if (p < 2 * tol)
			continue;
		memset(used, 0, n * sizeof(*used));
		for (size_t i = 0; i < n; i++) {
			if (used[i])
				continue;
			grow(t, n, i, p, tol, o->max_step, &tr);
			for (size_t k = 0; k < tr.len; k++)
				used[tr.idx[k]] = true;
			if (tr.len > best.len) {
				memcpy(best.idx, tr.idx, tr.len * sizeof(*tr.idx));
				memcpy(best.slot, tr.slot, tr.len * sizeof(*tr.slot));
				best.len = tr.len;
				best_p = p;
			}
		}
	}
	if (best.len < (size_t)o->min_occurrences || best.len < 3)
		goto cleanup;
	{
		/* least squares of time against slot */
		double sx = 0, sy = 0, sxx = 0, sxy = 0, m = (double)best.len, den, p, a;
		double jitter = 0, span, rate, q, tol, chance;
		size_t slots = best.slot[best.len - 1] + 1;

		for (size_t k = 0; k < best.len; k++) {
			double x = (double)best.slot[k], y = t[best.idx[k]] - t[best.idx[0]];

			sx += x;
			sy += y;
			sxx += x * x;
			sxy += x * y;
		}
		den = m * sxx - sx * sx;
		p = den > 0 ? (m * sxy - sx * sy) / den : best_p;
		a = (sy - p * sx) / m;
		for (size_t k = 0; k < best.len; k++) {
			double r = fabs(t[best.idx[k]] - t[best.idx[0]] -
					(a + p * (double)best.slot[k]));

			if (r > jitter)
				jitter = r;
		}
		tol = agg_stats_period_tol(o, p);
		span = t[n - 1] - t[0] + p;
		rate = ((double)(n - best.len) + 1) / (span > 0 ? span : 1);
		q = 2 * tol * rate;
		chance = log10((double)ncand * (double)n);
		for (size_t k = 2; k < best.len; k++) {
			double step = (double)(best.slot[k] - best.slot[k - 1]) * q;

			chance += step < 1 ? log10(step) : 0;
		}
		out->period_s = p;
		out->jitter_s = jitter;
		out->first_s = t[best.idx[0]];
		out->log10_chance = chance;
		out->matched = best.len;
		out->slots = slots;
		if (p < o->min_period_s || (double)best.len < o->min_coverage * (double)slots ||
		    chance > o->max_log10_chance)
			goto cleanup;
		if (matched)
			for (size_t k = 0; k < best.len; k++)
				matched[best.idx[k]] = true;
		rv = 1;
	}
cleanup:
	free(gaps);
	free(cand);
	free(cand_n);
	free(used);
	free(tr.idx);
	free(tr.slot);
	free(best.idx);
	free(best.slot);
	return rv;
}
