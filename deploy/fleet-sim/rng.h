/* rng.h: deterministic pseudo-random numbers for the fleet simulator.
 * Every host and every cause has its own stream (seeded from the run's
 * seed and the stream number), so what a host does does not depend on the
 * order in which the simulator happens to visit hosts. */
#ifndef FSIM_RNG_H
#define FSIM_RNG_H

#include <stdint.h>

/* struct fsim_rng is one stream (xoshiro256**). */
struct fsim_rng {
	uint64_t s[4];
};

/* fsim_rng_seed starts stream number stream of the run seeded with seed. */
void fsim_rng_seed(struct fsim_rng *r, uint64_t seed, uint64_t stream);

/* fsim_rng_next returns the next 64 random bits. */
uint64_t fsim_rng_next(struct fsim_rng *r);

/* fsim_rng_unit returns a double in [0, 1). */
double fsim_rng_unit(struct fsim_rng *r);

/* fsim_rng_below returns an integer in [0, n) (0 when n is 0). */
uint64_t fsim_rng_below(struct fsim_rng *r, uint64_t n);

/* fsim_rng_range returns a double in [lo, hi). */
double fsim_rng_range(struct fsim_rng *r, double lo, double hi);

/* fsim_rng_normal returns a standard normal deviate. */
double fsim_rng_normal(struct fsim_rng *r);

/* fsim_rng_lognormal returns a lognormal deviate with the given median and
 * sigma (of the underlying normal). */
double fsim_rng_lognormal(struct fsim_rng *r, double median, double sigma);

/* fsim_rng_exp returns an exponential deviate with the given mean. */
double fsim_rng_exp(struct fsim_rng *r, double mean);

/* fsim_rng_pick returns an index in [0, n) drawn with the given weights
 * (total is their sum, > 0). */
uint32_t fsim_rng_pick(struct fsim_rng *r, const double *weights, uint32_t n, double total);

/* fsim_hash mixes a and b into 64 well-spread bits (for decisions that must
 * not consume a stream, such as "is host h hit by firing n"). */
uint64_t fsim_hash(uint64_t a, uint64_t b);

/* fsim_hash_unit maps a hash to a double in [0, 1). */
double fsim_hash_unit(uint64_t h);

#endif
