/* mixload.c: a CPU workload with known shares for agent_vs_perf.sh. Pins
 * itself to one CPU and, for SECONDS, calls four leaf functions in rounds
 * of about 1 ms; each runs the same loop body for 4, 3, 2 and 1 units, so
 * they take 40%, 30%, 20% and 10% of the process's CPU time (the round
 * loop itself is a fraction of a percent). Built like the burner (frame
 * pointers, -O1, no inlining) so user stacks unwind and the leaves keep
 * their names. Usage: mixload SECONDS [CPU]   (CPU default 0) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

volatile uint64_t mix_sink;

/* The four leaves: the same loop with different constants (so no two are
 * folded into one). The stack variable keeps the frame pointer setup. */
#define MIX_LOOP(n, a, c)                        \
	do {                                     \
		volatile uint64_t x = (n);       \
		for (uint64_t i = 0; i < (n); i++) \
			x = x * (a) + (c);       \
		return x;                        \
	} while (0)

__attribute__((noinline)) uint64_t mix_hot40(uint64_t n)
{
	MIX_LOOP(n, 6364136223846793005ULL, 1442695040888963407ULL);
}

__attribute__((noinline)) uint64_t mix_warm30(uint64_t n)
{
	MIX_LOOP(n, 2862933555777941757ULL, 3037000493ULL);
}

__attribute__((noinline)) uint64_t mix_mild20(uint64_t n)
{
	MIX_LOOP(n, 3935559000370003845ULL, 2691343689449507681ULL);
}

__attribute__((noinline)) uint64_t mix_cool10(uint64_t n)
{
	MIX_LOOP(n, 3202034522624059733ULL, 4354685564936845319ULL);
}

/* mix_round calls each leaf once: the caller every stack shares. */
__attribute__((noinline)) static uint64_t mix_round(uint64_t unit)
{
	return mix_hot40(4 * unit) ^ mix_warm30(3 * unit) ^ mix_mild20(2 * unit) ^
	       mix_cool10(unit);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5.0, t0, end;
	int cpu = argc > 2 ? atoi(argv[2]) : 0;
	uint64_t unit, rounds = 0;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		perror("mixload: sched_setaffinity");
		return 1;
	}
	/* one unit is about 0.1 ms, so a round is about 1 ms */
	t0 = now_s();
	mix_sink = mix_cool10(1000000);
	unit = (uint64_t)(1000000 * 0.0001 / (now_s() - t0 + 1e-9));
	if (unit < 100)
		unit = 100;
	end = now_s() + seconds;
	while (now_s() < end) {
		mix_sink ^= mix_round(unit);
		rounds++;
	}
	printf("mixload: %llu rounds of %llu-iteration units on cpu %d\n",
	       (unsigned long long)rounds, (unsigned long long)unit, cpu);
	return 0;
}
