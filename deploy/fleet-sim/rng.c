/* rng.c: the simulator's random streams and the few distributions it
 * draws from (uniform, normal, lognormal, exponential, weighted choice). */
#include "rng.h"

#include <math.h>

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t v, int k)
{
	return (v << k) | (v >> (64 - k));
}

void fsim_rng_seed(struct fsim_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = fsim_hash(seed, stream);

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix(&x);
	if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3]))
		r->s[0] = 1;
}

uint64_t fsim_rng_next(struct fsim_rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double fsim_rng_unit(struct fsim_rng *r)
{
	return (double)(fsim_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t fsim_rng_below(struct fsim_rng *r, uint64_t n)
{
	return n ? fsim_rng_next(r) % n : 0;
}

double fsim_rng_range(struct fsim_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * fsim_rng_unit(r);
}

double fsim_rng_normal(struct fsim_rng *r)
{
	double u1 = fsim_rng_unit(r), u2 = fsim_rng_unit(r);

	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double fsim_rng_lognormal(struct fsim_rng *r, double median, double sigma)
{
	return median * exp(sigma * fsim_rng_normal(r));
}

double fsim_rng_exp(struct fsim_rng *r, double mean)
{
	return -mean * log(1.0 - fsim_rng_unit(r));
}

uint32_t fsim_rng_pick(struct fsim_rng *r, const double *weights, uint32_t n, double total)
{
	double x = fsim_rng_unit(r) * total;

	for (uint32_t i = 0; i < n; i++) {
		if (x < weights[i])
			return i;
		x -= weights[i];
	}
	return n ? n - 1 : 0;
}

uint64_t fsim_hash(uint64_t a, uint64_t b)
{
	uint64_t x = a ^ rotl(b, 32) ^ 0x6a09e667f3bcc909ULL;

	x = splitmix(&x);
	x ^= b * 0x9e3779b97f4a7c15ULL;
	return splitmix(&x);
}

double fsim_hash_unit(uint64_t h)
{
	return (double)(h >> 11) * 0x1.0p-53;
}
