/* repro_d_pingpong.c: incident D's victim, a latency-sensitive pair of
 * threads passing a token through two pipes, both pinned to one CPU. The
 * "repro_d_ping" thread sends a request every INTERVAL_US; "repro_d_pong"
 * answers at once. Every message carries its send time, so each hop (send
 * -> the other thread has it) is measured: a hop is the wakeup of the
 * receiver plus however long it waited for the CPU. So is how late the
 * ping thread wakes from its sleep between requests.
 *
 * usage: repro_d_pingpong CPU SECONDS [INTERVAL_US [NICE]]
 *   defaults: 2000 us, nice 0. Prints hops, the worst hop and how many
 *   took over 1 ms and over 10 ms, and the same for the sleeps' lateness. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

struct stats {
	long long hops, over_1ms, over_10ms, worst;
};

static int to_pong[2], to_ping[2];
static long long end_ns, interval_ns = 2000000;
static int cpu, nice_level;
static struct stats ping_st, pong_st, late_st;

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void note(struct stats *s, long long sent)
{
	long long d = now_ns() - sent;

	s->hops++;
	s->over_1ms += d > 1000000;
	s->over_10ms += d > 10000000;
	if (d > s->worst)
		s->worst = d;
}

static int setup_thread(const char *name)
{
	cpu_set_t set;

	prctl(PR_SET_NAME, name);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		fprintf(stderr, "sched_setaffinity(%d): %s\n", cpu, strerror(errno));
		return -1;
	}
	/* nice is per thread on Linux: tid 0 means the calling thread */
	if (nice_level && setpriority(PRIO_PROCESS, 0, nice_level) != 0) {
		fprintf(stderr, "setpriority(%d): %s\n", nice_level, strerror(errno));
		return -1;
	}
	return 0;
}

static void *pong_main(void *arg)
{
	long long t;

	(void)arg;
	if (setup_thread("repro_d_pong") != 0)
		exit(1);
	while (read(to_pong[0], &t, sizeof(t)) == (ssize_t)sizeof(t)) {
		if (t < 0)
			break;
		note(&pong_st, t);
		t = now_ns();
		if (write(to_ping[1], &t, sizeof(t)) != (ssize_t)sizeof(t))
			break;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct timespec gap;
	pthread_t pong;
	long long t;

	if (argc < 3) {
		fprintf(stderr, "usage: %s CPU SECONDS [INTERVAL_US [NICE]]\n", argv[0]);
		return 2;
	}
	cpu = atoi(argv[1]);
	end_ns = now_ns() + (long long)(atof(argv[2]) * 1e9);
	if (argc > 3)
		interval_ns = atoll(argv[3]) * 1000LL;
	if (argc > 4)
		nice_level = atoi(argv[4]);
	if (pipe(to_pong) != 0 || pipe(to_ping) != 0) {
		perror("pipe");
		return 1;
	}
	if (pthread_create(&pong, NULL, pong_main, NULL) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		return 1;
	}
	if (setup_thread("repro_d_ping") != 0)
		return 1;
	gap.tv_sec = interval_ns / 1000000000LL;
	gap.tv_nsec = interval_ns % 1000000000LL;
	while (now_ns() < end_ns) {
		t = now_ns();
		nanosleep(&gap, NULL);
		note(&late_st, t + interval_ns);
		t = now_ns();
		if (write(to_pong[1], &t, sizeof(t)) != (ssize_t)sizeof(t))
			break;
		if (read(to_ping[0], &t, sizeof(t)) != (ssize_t)sizeof(t))
			break;
		note(&ping_st, t);
	}
	t = -1;
	if (write(to_pong[1], &t, sizeof(t)) != (ssize_t)sizeof(t))
		return 1;
	pthread_join(pong, NULL);
	printf("hops=%lld over_1ms=%lld over_10ms=%lld worst_ms=%.3f sleeps=%lld late_over_1ms=%lld "
	       "late_over_10ms=%lld late_worst_ms=%.3f\n",
	       ping_st.hops + pong_st.hops, ping_st.over_1ms + pong_st.over_1ms,
	       ping_st.over_10ms + pong_st.over_10ms,
	       (ping_st.worst > pong_st.worst ? ping_st.worst : pong_st.worst) / 1e6, late_st.hops,
	       late_st.over_1ms, late_st.over_10ms, late_st.worst / 1e6);
	return 0;
}
