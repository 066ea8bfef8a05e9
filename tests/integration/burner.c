/* burner.c: a CPU burner for the sampler's integration test. Pins itself
 * to one CPU and spins in spikehound_burn_hot for N seconds. Built with
 * -fno-omit-frame-pointer -O1 so user stacks unwind through frame
 * pointers. Usage: burner SECONDS [CPU] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

volatile uint64_t spikehound_burn_sink;

/* spikehound_burn_hot is the function the test expects to see on top of
 * the burner's stacks. */
__attribute__((noinline)) uint64_t spikehound_burn_hot(uint64_t n)
{
	/* A stack variable: GCC omits the frame pointer setup of leaf
	 * functions that use no stack, even with -mno-omit-leaf-frame-pointer,
	 * and the unwinder would then skip the caller. */
	volatile uint64_t x = n;

	for (uint64_t i = 0; i < n; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		spikehound_burn_sink = x;
	}
	return x;
}

__attribute__((noinline)) static uint64_t burn_outer(uint64_t n)
{
	return spikehound_burn_hot(n) ^ 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5.0, end;
	int cpu = argc > 2 ? atoi(argv[2]) : 1;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		perror("burner: sched_setaffinity");
		return 1;
	}
	end = now_s() + seconds;
	while (now_s() < end)
		spikehound_burn_sink ^= burn_outer(200000);
	return 0;
}
