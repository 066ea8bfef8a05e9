/* repro_b_spin.c: keeps every online CPU busy for SECONDS (one child per
 * CPU, pinned, at nice 19 so it yields to everything else) so the stall
 * sentinel counts gaps on them: an idle CPU's missing timer ticks are not
 * stalls. The children die with the parent.
 *
 * usage: repro_b_spin SECONDS */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double secs;

	if (argc < 2) {
		fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
		return 2;
	}
	secs = strtod(argv[1], NULL);
	for (long c = 0; c < ncpu; c++) {
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid == 0) {
			cpu_set_t set;
			double end = now_s() + secs;
			volatile unsigned long x = 0;

			prctl(PR_SET_PDEATHSIG, SIGKILL); /* die with the parent */
			CPU_ZERO(&set);
			CPU_SET((int)c, &set);
			sched_setaffinity(0, sizeof(set), &set);
			setpriority(PRIO_PROCESS, 0, 19);
			while (now_s() < end)
				for (int i = 0; i < 100000; i++)
					x++;
			_exit(0);
		}
	}
	while (wait(NULL) > 0)
		;
	return 0;
}
