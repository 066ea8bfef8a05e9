/* repro_a_smaps_monitor.c: the monitor of incident A (INCIDENTS.md), like
 * `atop -R`: every PERIOD seconds it reads /proc/PID/smaps of the victim to
 * the end (each read() walks VMAs while holding the victim's mmap_lock for
 * read). Its comm is "smaps-monitor" so the culprit is recognizable.
 *
 * usage: repro_a_smaps_monitor PID [PERIOD_MS] [SECONDS]
 * Prints one line per pass (bytes, milliseconds). Runs until SIGTERM or
 * SECONDS (0: forever). Exits 0, or 1 with a message on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	static char buf[128 << 10]; /* cat's buffer size */
	long period_ms, seconds;
	long long start;
	char path[64];
	struct sigaction sa;

	if (argc < 2) {
		fprintf(stderr, "usage: %s PID [PERIOD_MS] [SECONDS]\n", argv[0]);
		return 1;
	}
	period_ms = argc > 2 ? atol(argv[2]) : 2000;
	seconds = argc > 3 ? atol(argv[3]) : 0;
	snprintf(path, sizeof(path), "/proc/%s/smaps", argv[1]);
	prctl(PR_SET_NAME, "smaps-monitor", 0, 0, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	start = now_ms();
	while (!stop && (!seconds || now_ms() - start < seconds * 1000)) {
		long long t0 = now_ms(), bytes = 0;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0) {
			fprintf(stderr, "could not open \"%s\": %s\n", path, strerror(errno));
			return 1;
		}
		while (!stop && (n = read(fd, buf, sizeof(buf))) > 0)
			bytes += n;
		close(fd);
		printf("pass %lld bytes %lld ms\n", bytes, now_ms() - t0);
		fflush(stdout);
		for (long long until = t0 + period_ms; !stop && now_ms() < until;)
			usleep(20000);
	}
	return 0;
}
