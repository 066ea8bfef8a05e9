/* loops.c: syscall-heavy workloads for agent_overhead.sh, where a sampler's
 * cost shows (each sample interrupts them in or near the kernel). One
 * process per CPU in CPUS (pinned), each running MODE for SECONDS:
 *   getpid  the getpid() system call in a loop
 *   mmap    mmap of one anonymous page, touch it, munmap, in a loop
 * Prints "loops: MODE N ops/s M ops/cpu-s" to stdout: the processes' rates
 * summed, per second of wall time and per second of their own CPU time
 * (sched runtime, which on kernels without IRQ time accounting includes
 * the interrupts that hit them, such as a sampler's). The second figure is
 * what other load on a shared machine disturbs least.
 * Usage: loops MODE SECONDS [CPUS]   (CPUS default: every online CPU) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double clock_s(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* Each loop checks the clock every 1024 operations. */
__attribute__((noinline)) static uint64_t loop_getpid(double end)
{
	uint64_t n = 0;

	do {
		for (int i = 0; i < 1024; i++)
			syscall(SYS_getpid); /* glibc no longer caches, but be explicit */
		n += 1024;
	} while (now_s() < end);
	return n;
}

__attribute__((noinline)) static uint64_t loop_mmap(double end, long page)
{
	uint64_t n = 0;

	do {
		for (int i = 0; i < 1024; i++) {
			char *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (p == MAP_FAILED) {
				perror("loops: mmap");
				exit(1);
			}
			p[0] = 1;
			munmap(p, (size_t)page);
		}
		n += 1024;
	} while (now_s() < end);
	return n;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	double seconds = argc > 2 ? atof(argv[2]) : 0, end;
	int ncpu = argc > 3 ? atoi(argv[3]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
	int fds[2];
	double total = 0, total_cpu = 0;

	if ((strcmp(mode, "getpid") && strcmp(mode, "mmap")) || seconds <= 0 || ncpu < 1) {
		fprintf(stderr, "usage: loops getpid|mmap SECONDS [CPUS]\n");
		return 2;
	}
	if (pipe(fds) != 0) {
		perror("loops: pipe");
		return 1;
	}
	end = now_s() + seconds;
	for (int c = 0; c < ncpu; c++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("loops: fork");
			return 1;
		}
		if (pid == 0) {
			cpu_set_t set;
			double t0, c0, rate[2];
			uint64_t n;

			CPU_ZERO(&set);
			CPU_SET(c, &set);
			sched_setaffinity(0, sizeof(set), &set);
			t0 = now_s();
			c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
			n = strcmp(mode, "getpid") == 0 ? loop_getpid(end)
							: loop_mmap(end, sysconf(_SC_PAGESIZE));
			rate[0] = (double)n / (now_s() - t0);
			rate[1] = (double)n / (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
			if (write(fds[1], rate, sizeof(rate)) != sizeof(rate))
				_exit(1);
			_exit(0);
		}
	}
	close(fds[1]);
	for (int c = 0; c < ncpu; c++) {
		double rate[2];

		if (read(fds[0], rate, sizeof(rate)) == sizeof(rate)) {
			total += rate[0];
			total_cpu += rate[1];
		}
	}
	while (wait(NULL) > 0)
		;
	printf("loops: %s %.0f ops/s %.0f ops/cpu-s\n", mode, total, total_cpu);
	return 0;
}
