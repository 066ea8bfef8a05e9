/* repro_mmap_victim.c: the application of incident A (INCIDENTS.md). It
 * builds a large address space (many small touched VMAs, and optionally
 * one big touched VMA without huge pages, which smaps walks page by page
 * while holding mmap_lock), then loops mmap/munmap of a small region and
 * times each call until it gets SIGTERM/SIGINT or the duration passes.
 *
 * usage: repro_mmap_victim [-v VMAS] [-b BIG_MIB] [-s SECONDS] [-p PERIOD_US]
 *                          [-r READY_FILE]
 *   -v  small VMAs to create (pages of alternating protection; default 200000;
 *       needs vm.max_map_count above it)
 *   -b  one extra touched anonymous VMA of this many MiB (default 0)
 *   -s  stop after this many seconds (default 0: until a signal)
 *   -p  sleep this long between mmap/munmap pairs (default 200 us)
 *   -r  write "ready\n" to this file once the address space is built
 * Prints one line per second ("calls N max_us M over1ms K over5ms L"), a
 * "phase ..." line of the same counts since the last one on SIGUSR1, and a
 * total at exit. Exits 0, or 1 with a message on stderr. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop, phase_end;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		phase_end = 1;
	else
		stop = 1;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* build_small makes n VMAs out of one region: every page touched, then every
 * other page made read-only so no two neighbours merge. */
static int build_small(long n)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p;

	if (n <= 0)
		return 0;
	p = mmap(NULL, (size_t)n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "could not map %ld pages: %s\n", n, strerror(errno));
		return -1;
	}
	madvise(p, (size_t)n * page, MADV_NOHUGEPAGE);
	for (long i = 0; i < n; i++)
		p[i * page] = 1;
	for (long i = 1; i < n; i += 2) {
		if (mprotect(p + i * page, page, PROT_READ) != 0) {
			fprintf(stderr, "could not split the region at page %ld: %s (vm.max_map_count?)\n",
				i, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int build_big(long mib)
{
	size_t len = (size_t)mib << 20;
	char *p;

	if (mib <= 0)
		return 0;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "could not map %ld MiB: %s\n", mib, strerror(errno));
		return -1;
	}
	madvise(p, len, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < len; off += 4096)
		p[off] = 1;
	return 0;
}

int main(int argc, char **argv)
{
	long vmas = 200000, big = 0, seconds = 0, period_us = 200;
	const char *ready = NULL;
	long long start, next_report, total = 0, over1 = 0, over5 = 0, worst = 0;
	long long sec_calls = 0, sec_max = 0, sec_over1 = 0, sec_over5 = 0;
	long long ph_calls = 0, ph_max = 0, ph_over1 = 0, ph_over5 = 0;
	struct sigaction sa;
	int opt;

	while ((opt = getopt(argc, argv, "v:b:s:p:r:")) != -1) {
		switch (opt) {
		case 'v': vmas = atol(optarg); break;
		case 'b': big = atol(optarg); break;
		case 's': seconds = atol(optarg); break;
		case 'p': period_us = atol(optarg); break;
		case 'r': ready = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-v VMAS] [-b BIG_MIB] [-s SECONDS] [-p PERIOD_US] "
					"[-r READY_FILE]\n", argv[0]);
			return 1;
		}
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);

	if (build_small(vmas) != 0 || build_big(big) != 0)
		return 1;
	if (ready) {
		FILE *f = fopen(ready, "w");

		if (!f) {
			fprintf(stderr, "could not write \"%s\": %s\n", ready, strerror(errno));
			return 1;
		}
		fprintf(f, "ready\n");
		fclose(f);
	}
	printf("built %ld small VMAs and a %ld MiB VMA; looping mmap/munmap\n", vmas, big);
	fflush(stdout);

	start = now_ns();
	next_report = start + 1000000000LL;
	while (!stop && (!seconds || now_ns() - start < seconds * 1000000000LL)) {
		long long t0 = now_ns(), t1, t2;
		char *p = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);

		t1 = now_ns();
		if (p == MAP_FAILED) {
			fprintf(stderr, "mmap: %s\n", strerror(errno));
			return 1;
		}
		p[0] = 1;
		t2 = now_ns();
		munmap(p, 64 << 10);
		t2 = now_ns() - t2;
		t1 -= t0;
		for (int i = 0; i < 2; i++) {
			long long d = i ? t2 : t1;

			sec_calls++;
			ph_calls++;
			total++;
			if (d > sec_max)
				sec_max = d;
			if (d > ph_max)
				ph_max = d;
			if (d > worst)
				worst = d;
			if (d > 1000000) {
				sec_over1++;
				ph_over1++;
				over1++;
			}
			if (d > 5000000) {
				sec_over5++;
				ph_over5++;
				over5++;
			}
		}
		if (phase_end) {
			phase_end = 0;
			printf("phase calls %lld max_us %lld over1ms %lld over5ms %lld\n", ph_calls,
			       ph_max / 1000, ph_over1, ph_over5);
			fflush(stdout);
			ph_calls = ph_max = ph_over1 = ph_over5 = 0;
		}
		if (now_ns() >= next_report) {
			printf("calls %lld max_us %lld over1ms %lld over5ms %lld\n", sec_calls,
			       sec_max / 1000, sec_over1, sec_over5);
			fflush(stdout);
			sec_calls = sec_max = sec_over1 = sec_over5 = 0;
			next_report += 1000000000LL;
		}
		if (period_us > 0)
			usleep((useconds_t)period_us);
	}
	printf("total calls %lld max_us %lld over1ms %lld over5ms %lld\n", total, worst / 1000, over1,
	       over5);
	return 0;
}
