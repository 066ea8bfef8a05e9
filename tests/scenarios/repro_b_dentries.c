/* repro_b_dentries.c: fragments the dentry slab for incident B. It makes
 * two directories DIR/a and DIR/b and stat()s COUNT missing names in each
 * (fstatat relative to the open directories: one path component each),
 * alternating a/ and b/ so every slab page holds negative dentries of both;
 * then it removes DIR/b, which frees b's dentries and leaves (almost) every
 * dentry slab half empty on the node's partial list. Reading
 * /sys/kernel/slab/dentry/objects_partial then walks all those slabs with
 * interrupts off.
 *
 * usage: repro_b_dentries DIR COUNT [THREADS]
 * Prints what it did and how long it took; exits 0 on success. DIR/a is
 * left in place (the caller removes it, which frees the other half). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct worker {
	pthread_t th;
	int fda, fdb; /* DIR/a and DIR/b, borrowed */
	long from, to;
	int cpu;
	long missing; /* stat() calls that failed with ENOENT, as wanted */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* name_of writes "n<hex of i>" into buf (NUL-terminated). */
static void name_of(char *buf, long i)
{
	static const char hex[] = "0123456789abcdef";
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = hex[i & 15];
		i >>= 4;
	} while (i);
	*buf++ = 'n';
	while (n)
		*buf++ = tmp[--n];
	*buf = '\0';
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[32];
	struct stat st;
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	sched_setaffinity(0, sizeof(set), &set); /* best effort: one slab per CPU */
	for (long i = w->from; i < w->to; i++) {
		/* one path component per lookup: relative to the open directories */
		name_of(name, i);
		if (fstatat(w->fda, name, &st, 0) != 0 && errno == ENOENT)
			w->missing++;
		if (fstatat(w->fdb, name, &st, 0) != 0 && errno == ENOENT)
			w->missing++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct worker *ws;
	char path[4096];
	long count, threads, missing = 0;
	int fda, fdb;
	double t0, t1, t2;

	if (argc < 3) {
		fprintf(stderr, "usage: %s DIR COUNT [THREADS]\n", argv[0]);
		return 2;
	}
	count = strtol(argv[2], NULL, 10);
	threads = argc > 3 ? strtol(argv[3], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
	if (count <= 0 || threads <= 0 || threads > 256) {
		fprintf(stderr, "%s: bad COUNT or THREADS\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/a", argv[1]);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "%s: could not create \"%s\": %s\n", argv[0], path, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/b", argv[1]);
	if (mkdir(path, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "%s: could not create \"%s\": %s\n", argv[0], path, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/a", argv[1]);
	fda = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/b", argv[1]);
	fdb = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fda < 0 || fdb < 0) {
		fprintf(stderr, "%s: could not open the directories: %s\n", argv[0], strerror(errno));
		return 1;
	}
	ws = calloc((size_t)threads, sizeof(*ws));
	if (!ws)
		return 1;
	t0 = now_s();
	for (long t = 0; t < threads; t++) {
		ws[t].fda = fda;
		ws[t].fdb = fdb;
		ws[t].from = count * t / threads;
		ws[t].to = count * (t + 1) / threads;
		ws[t].cpu = (int)(t % sysconf(_SC_NPROCESSORS_ONLN));
		if (pthread_create(&ws[t].th, NULL, worker_main, &ws[t]) != 0) {
			fprintf(stderr, "%s: could not start a thread\n", argv[0]);
			return 1;
		}
	}
	for (long t = 0; t < threads; t++) {
		pthread_join(ws[t].th, NULL);
		missing += ws[t].missing;
	}
	t1 = now_s();
	close(fda);
	close(fdb);
	if (rmdir(path) != 0) {
		fprintf(stderr, "%s: could not remove \"%s\": %s\n", argv[0], path, strerror(errno));
		return 1;
	}
	t2 = now_s();
	printf("repro_b_dentries: %ld negative dentries made in %.1f s (%ld threads), "
	       "half freed by rmdir in %.1f s\n",
	       missing, t1 - t0, threads, t2 - t1);
	free(ws);
	return 0;
}
