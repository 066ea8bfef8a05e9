/* repro_d_hog.c: incident D's culprit, a bursty higher-priority CPU hog.
 * Pinned to one CPU, it burns the CPU for BURST_MS every PERIOD_MS at
 * SCHED_FIFO priority 50 (or, with "nice", at nice -20 in the normal
 * class), so whatever else wants that CPU waits on its run queue during
 * each burst.
 *
 * usage: repro_d_hog CPU SECONDS [BURST_MS [PERIOD_MS [fifo|nice]]]
 *   defaults: 40 ms bursts every 200 ms, fifo. Prints the bursts done. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long long burst_ns = 40000000, period_ns = 200000000, end, next, t;
	struct sched_param sp = { .sched_priority = 50 };
	volatile unsigned long spin = 0;
	struct timespec ts;
	cpu_set_t set;
	long bursts = 0;
	int cpu, fifo = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: %s CPU SECONDS [BURST_MS [PERIOD_MS [fifo|nice]]]\n",
			argv[0]);
		return 2;
	}
	cpu = atoi(argv[1]);
	end = now_ns() + (long long)(atof(argv[2]) * 1e9);
	if (argc > 3)
		burst_ns = atoll(argv[3]) * 1000000LL;
	if (argc > 4)
		period_ns = atoll(argv[4]) * 1000000LL;
	if (argc > 5)
		fifo = strcmp(argv[5], "nice") != 0;
	prctl(PR_SET_NAME, "repro_d_hog");
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		fprintf(stderr, "sched_setaffinity(%d): %s\n", cpu, strerror(errno));
		return 1;
	}
	if (fifo && sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
		fprintf(stderr, "sched_setscheduler(SCHED_FIFO): %s\n", strerror(errno));
		return 1;
	}
	if (!fifo && setpriority(PRIO_PROCESS, 0, -20) != 0) {
		fprintf(stderr, "setpriority(-20): %s\n", strerror(errno));
		return 1;
	}
	next = now_ns();
	while ((t = now_ns()) < end) {
		long long stop = t + burst_ns;

		while (now_ns() < stop)
			spin++;
		bursts++;
		next += period_ns;
		if (next < now_ns())
			next = now_ns() + period_ns - burst_ns;
		ts.tv_sec = next / 1000000000LL;
		ts.tv_nsec = next % 1000000000LL;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	printf("bursts=%ld burst_ms=%lld period_ms=%lld policy=%s\n", bursts, burst_ns / 1000000,
	       period_ns / 1000000, fifo ? "fifo" : "nice");
	return 0;
}
