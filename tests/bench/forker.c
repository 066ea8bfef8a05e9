/* forker.c: the fork/exec-heavy workload of agent_soak.sh. WORKERS
 * processes each start short-lived children back to back for SECONDS: a
 * rotation of posix_spawn and fork+execve of a few small binaries
 * (/bin/true, /bin/echo, /bin/sh -c :, /usr/bin/env true, /bin/cat,
 * /usr/bin/expr), and plain forks that run forker_child_work and exit
 * without exec. Every new process maps its binaries at new (ASLR)
 * addresses, so a stack sampler sees a stream of distinct stacks, exec,
 * fork and exit events, and pids that die before their samples are read.
 * Children's output goes to /dev/null. Prints the rate every 30 s and the
 * totals at the end to stdout.
 * Usage: forker SECONDS [WORKERS]   (WORKERS default 2) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct job {
	const char *name;
	const char *path; /* NULL: fork without exec */
	char *const *argv;
	int use_fork;	  /* fork+execve rather than posix_spawn */
};

static char *const argv_true[] = { "true", NULL };
static char *const argv_echo[] = { "echo", "spikehound", NULL };
static char *const argv_sh[] = { "sh", "-c", ":", NULL };
static char *const argv_env[] = { "env", "true", NULL };
static char *const argv_cat[] = { "cat", "/dev/null", NULL };
static char *const argv_expr[] = { "expr", "6", "*", "7", NULL };

static const struct job jobs[] = {
	{ "spawn true", "/bin/true", argv_true, 0 },
	{ "fork+exec echo", "/bin/echo", argv_echo, 1 },
	{ "spawn sh -c :", "/bin/sh", argv_sh, 0 },
	{ "fork (no exec)", NULL, NULL, 1 },
	{ "spawn env true", "/usr/bin/env", argv_env, 0 },
	{ "fork+exec cat", "/bin/cat", argv_cat, 1 },
	{ "spawn expr", "/usr/bin/expr", argv_expr, 0 },
	{ "fork+exec true", "/bin/true", argv_true, 1 },
};
#define NJOBS (sizeof(jobs) / sizeof(jobs[0]))

/* counters shared by the workers: per job, started children */
static uint64_t *counts;

volatile uint64_t forker_sink;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* forker_child_work is what a fork without exec does before it exits. */
__attribute__((noinline)) uint64_t forker_child_work(uint64_t n)
{
	volatile uint64_t x = n;

	for (uint64_t i = 0; i < n; i++)
		x = x * 2862933555777941757ULL + 3037000493ULL;
	return x;
}

static pid_t start_job(const struct job *j, int devnull)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int rv;

	if (j->use_fork) {
		pid = fork();
		if (pid != 0)
			return pid;
		if (!j->path) {
			forker_sink = forker_child_work(20000);
			_exit(0);
		}
		dup2(devnull, 1);
		dup2(devnull, 2);
		execve(j->path, j->argv, environ);
		_exit(127);
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, devnull, 1);
	posix_spawn_file_actions_adddup2(&fa, devnull, 2);
	rv = posix_spawn(&pid, j->path, &fa, NULL, j->argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rv != 0) {
		errno = rv;
		return -1;
	}
	return pid;
}

static void worker(int w, double end)
{
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	uint64_t i = (uint64_t)w;

	if (devnull < 0) {
		perror("forker: /dev/null");
		_exit(1);
	}
	while (now_s() < end) {
		const struct job *j = &jobs[i % NJOBS];
		pid_t pid = start_job(j, devnull);
		int st;

		if (pid < 0) {
			fprintf(stderr, "forker: could not start \"%s\": %s\n", j->name, strerror(errno));
			usleep(10000);
			continue;
		}
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		__atomic_fetch_add(&counts[i % NJOBS], 1, __ATOMIC_RELAXED);
		i++;
	}
	_exit(0);
}

static uint64_t total(void)
{
	uint64_t t = 0;

	for (size_t k = 0; k < NJOBS; k++)
		t += __atomic_load_n(&counts[k], __ATOMIC_RELAXED);
	return t;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 10.0, start, end, next, last_t;
	int workers = argc > 2 ? atoi(argv[2]) : 2;
	uint64_t last = 0;
	pid_t pids[64];

	if (seconds <= 0 || workers < 1 || workers > 64) {
		fprintf(stderr, "usage: forker SECONDS [WORKERS (1-64)]\n");
		return 2;
	}
	counts = mmap(NULL, NJOBS * sizeof(*counts), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counts == MAP_FAILED) {
		perror("forker: mmap");
		return 1;
	}
	start = now_s();
	end = start + seconds;
	for (int w = 0; w < workers; w++) {
		pids[w] = fork();
		if (pids[w] < 0) {
			perror("forker: fork");
			return 1;
		}
		if (pids[w] == 0)
			worker(w, end);
	}
	next = start + 30;
	last_t = start;
	while (now_s() < end) {
		double t = now_s();

		if (t >= next) {
			uint64_t n = total();

			printf("forker: t=%.0fs %.0f processes/s\n", t - start,
			       (double)(n - last) / (t - last_t));
			fflush(stdout);
			last = n;
			last_t = t;
			next += 30;
		}
		usleep(200000);
	}
	for (int w = 0; w < workers; w++)
		waitpid(pids[w], NULL, 0);
	printf("forker: %" PRIu64 " processes in %.1f s by %d workers, %.0f/s\n", total(),
	       now_s() - start, workers, (double)total() / (now_s() - start));
	for (size_t k = 0; k < NJOBS; k++)
		printf("forker:   %-16s %" PRIu64 "\n", jobs[k].name, counts[k]);
	return 0;
}
