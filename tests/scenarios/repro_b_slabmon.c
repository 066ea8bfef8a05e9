/* repro_b_slabmon.c: the "monitor" of incident B. It reads a slab
 * statistics file (normally /sys/kernel/slab/dentry/objects_partial, which
 * walks every partial slab of the cache with interrupts off) every
 * INTERVAL_MS for SECONDS, timing each read (the whole file), and prints
 * the count, the mean, fastest and slowest read and how many took over 5
 * and 20 ms. Its comm
 * ("repro_b_slabmon") is what the stall detector must name.
 *
 * usage: repro_b_slabmon FILE SECONDS [INTERVAL_MS] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	double end, max = 0, min = 0, sum = 0;
	long reads = 0, over5 = 0, over20 = 0, interval_ms;
	char buf[4096];

	if (argc < 3) {
		fprintf(stderr, "usage: %s FILE SECONDS [INTERVAL_MS]\n", argv[0]);
		return 2;
	}
	interval_ms = argc > 3 ? strtol(argv[3], NULL, 10) : 100;
	end = now_ms() + strtod(argv[2], NULL) * 1e3;
	while (now_ms() < end) {
		double t0, dt;
		int fd = open(argv[1], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			fprintf(stderr, "%s: could not open \"%s\": %s\n", argv[0], argv[1],
				strerror(errno));
			return 1;
		}
		t0 = now_ms();
		for (;;) { /* the whole file, as a monitor would */
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n == 0)
				break;
			if (n < 0) {
				fprintf(stderr, "%s: could not read \"%s\": %s\n", argv[0], argv[1],
					strerror(errno));
				close(fd);
				return 1;
			}
		}
		dt = now_ms() - t0;
		close(fd);
		reads++;
		sum += dt;
		if (dt > max)
			max = dt;
		if (reads == 1 || dt < min)
			min = dt;
		over5 += dt > 5.0;
		over20 += dt > 20.0;
		if (interval_ms > 0)
			usleep((useconds_t)interval_ms * 1000);
	}
	printf("repro_b_slabmon: %ld reads of %s, mean %.2f ms, min %.2f ms, max %.2f ms, "
	       "%ld over 5 ms, %ld over 20 ms\n",
	       reads, argv[1], reads ? sum / (double)reads : 0.0, min, max, over5, over20);
	return 0;
}
