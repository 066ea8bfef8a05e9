/* repro_c_negdentries.c: incident C's dentry-creating culprit. Like the
 * NSS library probing the file system, it stat()s files that do not exist
 * as fast as it can, each name new, so every call leaves one more negative
 * dentry in the dcache. Run inside a memory-limited cgroup, the dentries
 * are charged to it and the cgroup's reclaim (shrink_slab, the superblock
 * shrinker) stalls the very stat() that hit the limit.
 *
 * usage: repro_c_negdentries DIR [COUNT] [SECONDS]
 *   stat()s DIR/neg-<i> for i = 0.. until COUNT calls (default 5000000) or
 *   SECONDS (default 60) have passed, whichever is first. Prints one line:
 *   calls, elapsed, worst call and how many calls took over 1 ms / 10 ms. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long long count = 5000000, deadline, start, worst = 0, worst_at = 0, t0, d;
	long long over_1ms = 0, over_10ms = 0, i;
	double seconds = 60;
	char path[4096];
	struct stat st;
	int len;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [COUNT] [SECONDS]\n", argv[0]);
		return 2;
	}
	if (argc > 2)
		count = atoll(argv[2]);
	if (argc > 3)
		seconds = atof(argv[3]);
	len = snprintf(path, sizeof(path), "%s/neg-", argv[1]);
	if (len <= 0 || (size_t)len > sizeof(path) - 32) {
		fprintf(stderr, "directory name too long\n");
		return 2;
	}
	start = now_ns();
	deadline = start + (long long)(seconds * 1e9);
	for (i = 0; i < count; i++) {
		snprintf(path + len, sizeof(path) - (size_t)len, "%lld", i);
		t0 = now_ns();
		if (stat(path, &st) == 0 || errno != ENOENT) {
			fprintf(stderr, "stat(\"%s\"): unexpected %s\n", path,
				errno ? strerror(errno) : "success");
			return 1;
		}
		d = now_ns() - t0;
		if (d > worst) {
			worst = d;
			worst_at = t0;
		}
		over_1ms += d > 1000000;
		over_10ms += d > 10000000;
		if ((i & 1023) == 0 && t0 > deadline)
			break;
	}
	printf("calls=%lld elapsed_ms=%.0f worst_ms=%.3f worst_at_s=%.3f over_1ms=%lld "
	       "over_10ms=%lld\n",
	       i, (now_ns() - start) / 1e6, worst / 1e6, (worst_at - start) / 1e9, over_1ms,
	       over_10ms);
	return 0;
}
