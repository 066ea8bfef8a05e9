/* test_nng_restart.c: REQ clients keep getting answers across many restarts
 * of their REP peer, and closing them returns.
 *
 * nng 1.5.2 (Debian 12's) could lose a pipe for good when the pipe was
 * closed while one of its transfers completed: nng's only reaper thread then
 * waited for it forever, no dialer of the process dialed again and
 * nng_close hung (deploy/nng/ has the fix). An agent stayed disconnected
 * after an aggregator restart. This test hammers that window: 4 sockets
 * with 4 contexts each keep requests in flight while the server is closed
 * and opened again; after every restart each socket must be answered again
 * within 5 s. A watchdog turns a hang into a failure that says so.
 *
 *   test_nng_restart [RESTARTS]    (default 150) */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "nngerr.h"
#include "support.h"
#include "timeutil.h"

#define N_SOCKS 4
#define CTX_PER_SOCK 4
#define SERVER_WORKERS 4
#define RECONNECT_LIMIT_NS (5 * SH_NS_PER_SEC)

static char url[64];
static atomic_bool stopping;
static atomic_int phase; /* what the watchdog says if it fires */
static atomic_int restart_no;
static atomic_ullong answered[N_SOCKS];

static const char *phase_name[] = {"starting", "running restarts", "closing the clients",
				   "closing the server"};

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

static void on_alarm(int sig)
{
	char msg[200];
	int n;

	(void)sig;
	n = snprintf(msg, sizeof(msg),
		     "FAIL: hung for 30 s while %s (restart %d): nng's reaper is wedged (a pipe "
		     "closed mid-transfer; see deploy/nng/)\n",
		     phase_name[atomic_load(&phase)], atomic_load(&restart_no));
	if (write(2, msg, (size_t)n) < 0)
		_exit(1);
	_exit(1);
}

/* ---- the server: REP contexts answering with what they were sent.
 * Contexts and aios belong to the main thread, which stops the aios before
 * it joins the workers and closes anything (nng ids must not be used after
 * their socket is closed). */

struct worker {
	nng_ctx ctx;
	nng_aio *aio;
	pthread_t thread;
	const atomic_bool *stop;
};

struct server {
	nng_socket sock;
	atomic_bool stop;
	struct worker w[SERVER_WORKERS];
};

static void *serve(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load(w->stop)) {
		nng_ctx_recv(w->ctx, w->aio);
		nng_aio_wait(w->aio);
		if (nng_aio_result(w->aio) != 0)
			continue;	      /* stopped, or a lost pipe */
		nng_ctx_send(w->ctx, w->aio); /* the request goes back as the answer */
		nng_aio_wait(w->aio);
		if (nng_aio_result(w->aio) != 0) {
			nng_msg_free(nng_aio_get_msg(w->aio));
			nng_aio_set_msg(w->aio, NULL);
		}
	}
	return NULL;
}

static int server_start(struct server *s)
{
	int rv;

	atomic_store(&s->stop, false);
	if ((rv = nng_rep0_open(&s->sock)) != 0)
		return rv;
	/* the old listener's port may linger a moment */
	for (int i = 0; i < 50; i++) {
		if ((rv = nng_listen(s->sock, url, NULL, 0)) != NNG_EADDRINUSE)
			break;
		usleep(20000);
	}
	for (int i = 0; rv == 0 && i < SERVER_WORKERS; i++) {
		s->w[i].stop = &s->stop;
		if ((rv = nng_ctx_open(&s->w[i].ctx, s->sock)) != 0 ||
		    (rv = nng_aio_alloc(&s->w[i].aio, NULL, NULL)) != 0)
			break;
		pthread_create(&s->w[i].thread, NULL, serve, &s->w[i]);
	}
	return rv;
}

static void server_stop(struct server *s)
{
	atomic_store(&s->stop, true);
	for (int i = 0; i < SERVER_WORKERS; i++)
		nng_aio_stop(s->w[i].aio); /* fails the wait and every later operation */
	for (int i = 0; i < SERVER_WORKERS; i++) {
		pthread_join(s->w[i].thread, NULL);
		nng_aio_free(s->w[i].aio);
		nng_ctx_close(s->w[i].ctx);
	}
	nng_close(s->sock);
}

/* ---- the clients: each context sends, waits up to 1 s, sends again */

struct asker {
	int sock_idx;
	nng_ctx ctx;
	nng_aio *aio;
	pthread_t thread;
};

static void *ask(void *arg)
{
	struct asker *a = arg;
	char body[512];

	memset(body, 'x', sizeof(body));
	while (!atomic_load(&stopping)) {
		nng_msg *m;

		if (nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, body, sizeof(body)) != 0)
			break;
		nng_aio_set_msg(a->aio, m);
		nng_ctx_send(a->ctx, a->aio);
		nng_aio_wait(a->aio);
		if (nng_aio_result(a->aio) != 0) {
			nng_msg_free(nng_aio_get_msg(a->aio));
			nng_aio_set_msg(a->aio, NULL);
			usleep(10000);
			continue;
		}
		nng_ctx_recv(a->ctx, a->aio);
		nng_aio_wait(a->aio);
		if (nng_aio_result(a->aio) == 0) {
			nng_msg_free(nng_aio_get_msg(a->aio));
			nng_aio_set_msg(a->aio, NULL);
			atomic_fetch_add(&answered[a->sock_idx], 1);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int restarts = argc > 1 ? atoi(argv[1]) : 150;
	nng_socket socks[N_SOCKS];
	struct asker askers[N_SOCKS][CTX_PER_SOCK];
	static struct server srv;
	uint64_t before[N_SOCKS];
	int64_t worst_ns = 0, sum_ns = 0;
	int port = sht_free_port(), rv;

	if (port <= 0) {
		printf("SKIP: no free TCP port on 127.0.0.1\n");
		return 77;
	}
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	signal(SIGALRM, on_alarm);
	printf("%s; %d restarts of the REP peer, %d REQ sockets x %d contexts\n", sh_nng_describe(),
	       restarts, N_SOCKS, CTX_PER_SOCK);
	fflush(stdout);

	alarm(30);
	if ((rv = server_start(&srv)) != 0)
		fail("could not listen on %s: %s", url, nng_strerror(rv));
	for (int i = 0; i < N_SOCKS; i++) {
		if ((rv = nng_req0_open(&socks[i])) != 0 ||
		    (rv = nng_socket_set_ms(socks[i], NNG_OPT_REQ_RESENDTIME,
					    NNG_DURATION_INFINITE)) != 0 ||
		    (rv = nng_socket_set_ms(socks[i], NNG_OPT_RECONNMINT, 20)) != 0 ||
		    (rv = nng_socket_set_ms(socks[i], NNG_OPT_RECONNMAXT, 200)) != 0 ||
		    (rv = nng_dial(socks[i], url, NULL, NNG_FLAG_NONBLOCK)) != 0)
			fail("could not set up REQ socket %d: %s", i, nng_strerror(rv));
		for (int k = 0; k < CTX_PER_SOCK; k++) {
			struct asker *a = &askers[i][k];

			a->sock_idx = i;
			if ((rv = nng_ctx_open(&a->ctx, socks[i])) != 0 ||
			    (rv = nng_aio_alloc(&a->aio, NULL, NULL)) != 0)
				fail("could not set up a REQ context: %s", nng_strerror(rv));
			nng_aio_set_timeout(a->aio, 1000);
			pthread_create(&a->thread, NULL, ask, a);
		}
	}

	atomic_store(&phase, 1);
	for (int r = 0; r <= restarts; r++) {
		int64_t t0 = sh_now_mono_ns(), took;

		/* every socket answered since the last restart */
		for (int i = 0; i < N_SOCKS; i++) {
			before[i] = atomic_load(&answered[i]);
			while (atomic_load(&answered[i]) == before[i]) {
				if (sh_now_mono_ns() - t0 > RECONNECT_LIMIT_NS)
					fail("restart %d: REQ socket %d got no answer in 5 s (%llu "
					     "before): it did not reconnect",
					     r, i, (unsigned long long)before[i]);
				usleep(2000);
			}
		}
		took = sh_now_mono_ns() - t0;
		if (r > 0) {
			sum_ns += took;
			if (took > worst_ns)
				worst_ns = took;
		}
		if (r == restarts)
			break;
		alarm(30);
		atomic_store(&restart_no, r + 1);
		/* let answers flow a moment, then restart the server mid-traffic */
		usleep(20000 + (unsigned)(r % 7) * 7000);
		server_stop(&srv);
		if ((rv = server_start(&srv)) != 0)
			fail("restart %d: could not listen again on %s: %s", r + 1, url,
			     nng_strerror(rv));
	}
	printf("every socket answered again after each of %d restarts: %.0f ms on average, "
	       "%.0f ms at worst\n",
	       restarts, restarts ? (double)sum_ns / restarts / 1e6 : 0.0, (double)worst_ns / 1e6);

	atomic_store(&phase, 2);
	alarm(30);
	atomic_store(&stopping, true);
	for (int i = 0; i < N_SOCKS; i++)
		for (int k = 0; k < CTX_PER_SOCK; k++)
			nng_aio_stop(askers[i][k].aio);
	for (int i = 0; i < N_SOCKS; i++) {
		for (int k = 0; k < CTX_PER_SOCK; k++) {
			pthread_join(askers[i][k].thread, NULL);
			nng_aio_free(askers[i][k].aio);
			nng_ctx_close(askers[i][k].ctx);
		}
		nng_close(socks[i]);
	}
	atomic_store(&phase, 3);
	server_stop(&srv);
	nng_fini();
	alarm(0);
	printf("PASS: clients and server closed\n");
	return 0;
}
