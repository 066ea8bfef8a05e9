/* sender.c: the agent's sender thread, which delivers the spool to the
 * aggregator over an nng REQ socket.
 *
 * One request at a time: peek the oldest spool entries, frame them with a
 * fresh Hello into an AgentRequest, send, wait for the Ack, remove what it
 * reports stored or rejected. The spooled entries are already serialized
 * AgentMessages, so the request is framed by hand (common/agentreq.h) instead
 * of being decoded and encoded again. REQ's own resending is off: after a
 * failure we back off and send the oldest entries again as a new request,
 * and nng drops any late reply to the old one (its request id no longer
 * matches).
 */
#include "sender.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "agentreq.h"
#include "log.h"
#include "nngerr.h"
#include "timeutil.h"

#define DEFAULT_MAX_MSGS 64
#define DEFAULT_MAX_BYTES (1024 * 1024)
#define DEFAULT_REPLY_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_MIN_MS 100
#define DEFAULT_BACKOFF_MAX_MS 5000
#define ACK_MAX_BYTES (1024 * 1024)
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 5000
#define SKEW_SAMPLES 8
#define WARN_INTERVAL_NS (30 * SH_NS_PER_SEC)
#define REJECT_WARN_INTERVAL_NS (10 * SH_NS_PER_SEC)

struct skew_sample {
	int64_t skew_ns;
	int64_t rtt_ns;
};

struct agent_sender {
	/* Set by agent_sender_start, read-only afterwards. */
	struct agent_spool *spool;
	agent_sender_fill_hello_fn fill_hello;
	void *hello_arg;
	size_t max_msgs, max_bytes;
	int reply_timeout_ms, backoff_min_ms, backoff_max_ms;
	bool tls; /* some address is tls+tcp:// */
	nng_socket sock;
	pthread_t thread;

	/* Shared with other threads, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cond;              /* signalled by agent_sender_stop */
	bool stopping;
	struct agent_sender_stats st;
	struct skew_sample skew[SKEW_SAMPLES];
	size_t n_skew, skew_pos;

	/* The thread's own. */
	uint64_t rng;
	int backoff_ms;                   /* current delay, 0 after a success */
	uint64_t failed_attempts;         /* since the last success */
	int64_t fail_warn_next_ns;
	int64_t reject_warn_next_ns;
	uint64_t reject_suppressed;
};

static bool is_stopping(struct agent_sender *s)
{
	bool stop;

	pthread_mutex_lock(&s->mu);
	stop = s->stopping;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/* rand_below returns a pseudo-random number in [0, n) (xorshift64*). */
static uint64_t rand_below(struct agent_sender *s, uint64_t n)
{
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return n ? (s->rng * 0x2545f4914f6cdd1dULL) % n : 0;
}

/* note_failure records a failed attempt (err, a negative errno) and logs it:
 * a warning when delivery starts failing and then at most every 30 s. */
static void note_failure(struct agent_sender *s, int err, bool timeout, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void note_failure(struct agent_sender *s, int err, bool timeout, const char *fmt, ...)
{
	char msg[128];
	int64_t now = sh_now_mono_ns();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&s->mu);
	s->st.retries++;
	if (timeout)
		s->st.timeouts++;
	s->st.last_error = err;
	snprintf(s->st.last_error_msg, sizeof(s->st.last_error_msg), "%s", msg);
	pthread_mutex_unlock(&s->mu);

	s->failed_attempts++;
	if (s->failed_attempts == 1 || now >= s->fail_warn_next_ns) {
		/* nng retries a refused TLS handshake silently: say what to check */
		sh_warn("could not deliver to the aggregator: %s (%" PRIu64
			" failed attempt%s; retrying)%s",
			msg, s->failed_attempts, s->failed_attempts == 1 ? "" : "s",
			s->tls && timeout ? "; over tls+tcp:// a refused TLS handshake looks like "
					    "this: check tls_ca, tls_cert/tls_key and tls_server_name" :
					    "");
		s->fail_warn_next_ns = now + WARN_INTERVAL_NS;
	} else {
		sh_debug("could not deliver to the aggregator: %s", msg);
	}
}

static void note_success(struct agent_sender *s)
{
	if (s->failed_attempts)
		sh_info("delivering to the aggregator again after %" PRIu64 " failed attempt%s",
			s->failed_attempts, s->failed_attempts == 1 ? "" : "s");
	s->failed_attempts = 0;
	s->backoff_ms = 0;
}

/* note_rejected counts one rejected message by reason (under mu) and warns at
 * most every 10 s. */
static void note_rejected(struct agent_sender *s, const char *boot_id, uint64_t seq,
			  const char *reason)
{
	struct agent_sender_stats *st = &s->st;
	int64_t now = sh_now_mono_ns();
	size_t i;

	pthread_mutex_lock(&s->mu);
	st->rejected++;
	for (i = 0; i < st->n_reasons && i < AGENT_SENDER_REASONS_MAX; i++) {
		if (strncmp(st->reasons[i].reason, reason, sizeof(st->reasons[i].reason) - 1) == 0)
			break;
	}
	if (i == st->n_reasons) {
		snprintf(st->reasons[i].reason, sizeof(st->reasons[i].reason), "%s",
			 i < AGENT_SENDER_REASONS_MAX ? reason : "other");
		st->n_reasons++;
	}
	st->reasons[i].count++;
	pthread_mutex_unlock(&s->mu);

	if (now >= s->reject_warn_next_ns) {
		if (s->reject_suppressed)
			sh_warn("aggregator rejected message %s/%" PRIu64 ": %s (and %" PRIu64
				" more since the last warning)",
				boot_id, seq, reason, s->reject_suppressed);
		else
			sh_warn("aggregator rejected message %s/%" PRIu64 ": %s", boot_id, seq,
				reason);
		s->reject_suppressed = 0;
		s->reject_warn_next_ns = now + REJECT_WARN_INTERVAL_NS;
	} else {
		s->reject_suppressed++;
	}
}

static void note_skew(struct agent_sender *s, int64_t received_ns, int64_t sent_wall_ns,
		      int64_t rtt_ns)
{
	pthread_mutex_lock(&s->mu);
	s->skew[s->skew_pos].skew_ns = received_ns - (sent_wall_ns + rtt_ns / 2);
	s->skew[s->skew_pos].rtt_ns = rtt_ns;
	s->skew_pos = (s->skew_pos + 1) % SKEW_SAMPLES;
	if (s->n_skew < SKEW_SAMPLES)
		s->n_skew++;
	pthread_mutex_unlock(&s->mu);
}

/* backoff_sleep sleeps for the next back-off delay (exponential, with
 * jitter: a random time in [delay/2, delay]) or until stopped. */
static void backoff_sleep(struct agent_sender *s)
{
	struct timespec deadline;
	int64_t ms;

	if (s->backoff_ms == 0)
		s->backoff_ms = s->backoff_min_ms;
	else if (s->backoff_ms < s->backoff_max_ms)
		s->backoff_ms = s->backoff_ms > s->backoff_max_ms / 2 ? s->backoff_max_ms :
									2 * s->backoff_ms;
	ms = s->backoff_ms / 2 + (int64_t)rand_below(s, (uint64_t)(s->backoff_ms / 2) + 1);

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += ms / 1000;
	deadline.tv_nsec += (ms % 1000) * SH_NS_PER_MS;
	if (deadline.tv_nsec >= SH_NS_PER_SEC) {
		deadline.tv_sec++;
		deadline.tv_nsec -= SH_NS_PER_SEC;
	}
	pthread_mutex_lock(&s->mu);
	while (!s->stopping) {
		if (pthread_cond_timedwait(&s->cond, &s->mu, &deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&s->mu);
}

/* build_request frames hello and the batch into a new request message
 * (*out, the caller's). Returns 0 or a negative errno. */
static int build_request(const Spikehound__Hello *hello, const struct agent_spool_batch *b,
			 nng_msg **out)
{
	size_t hlen = spikehound__hello__get_packed_size(hello);
	size_t total = sh_agentreq_field_size(hlen);
	nng_msg *msg;
	uint8_t *p;
	int rv;

	for (size_t i = 0; i < b->n; i++)
		total += sh_agentreq_field_size(b->msgs[i].len);
	rv = nng_msg_alloc(&msg, total);
	if (rv)
		return sh_errno_from_nng(rv);
	p = sh_agentreq_put_hello(nng_msg_body(msg), hello, hlen);
	for (size_t i = 0; i < b->n; i++)
		p = sh_agentreq_put_message(p, b->msgs[i].data, b->msgs[i].len);
	*out = msg;
	return 0;
}

/* apply_ack removes the batch's entries the ack reports stored or rejected
 * (items naming anything else are ignored). Returns how many were removed. */
static size_t apply_ack(struct agent_sender *s, const struct agent_spool_batch *b,
			const Spikehound__Ack *ack)
{
	size_t removed = 0, acked = 0;
	bool *done;

	done = calloc(b->n ? b->n : 1, sizeof(*done));
	if (!done)
		return 0; /* resent later; the aggregator stores idempotently */
	for (size_t k = 0; k < ack->n_items; k++) {
		const Spikehound__Ack__Item *it = ack->items[k];
		bool rejected = it->rejected && it->rejected[0];
		size_t i;

		if (!it->stored && !rejected)
			continue;
		for (i = 0; i < b->n; i++) {
			if (!done[i] && b->msgs[i].seq == it->seq && it->boot_id &&
			    strcmp(b->msgs[i].boot_id, it->boot_id) == 0)
				break;
		}
		if (i == b->n)
			continue;
		done[i] = true;
		agent_spool_remove(s->spool, b->msgs[i].boot_id, b->msgs[i].seq);
		removed++;
		if (it->stored)
			acked++;
		else
			note_rejected(s, b->msgs[i].boot_id, b->msgs[i].seq, it->rejected);
	}
	free(done);
	pthread_mutex_lock(&s->mu);
	s->st.acked += acked;
	pthread_mutex_unlock(&s->mu);
	return removed;
}

/* send_batch sends the oldest spool entries once. Returns 1 when the Ack
 * removed some, 0 when there was nothing to send, or a negative errno when
 * the attempt failed (already counted and logged; the caller backs off). */
static int send_batch(struct agent_sender *s)
{
	Spikehound__Hello hello = SPIKEHOUND__HELLO__INIT;
	struct agent_spool_batch b = { 0 };
	Spikehound__Ack *ack = NULL;
	nng_msg *msg = NULL, *reply = NULL;
	size_t overhead, budget, removed;
	int64_t t0, t1, sent_wall;
	int rv, err = 0;

	if (s->fill_hello)
		s->fill_hello(s->hello_arg, &hello);
	hello.sent_at_ns = sh_now_wall_ns();
	overhead = 11 + spikehound__hello__get_packed_size(&hello) + 6 * s->max_msgs;
	budget = s->max_bytes > overhead ? s->max_bytes - overhead : 1;
	err = agent_spool_peek(s->spool, s->max_msgs, budget, &b);
	if (err) {
		note_failure(s, err, false, "could not read the spool: %s", strerror(-err));
		goto cleanup;
	}
	if (b.n == 0)
		goto cleanup;

	sent_wall = sh_now_wall_ns();
	hello.sent_at_ns = sent_wall;
	err = build_request(&hello, &b, &msg);
	if (err) {
		note_failure(s, err, false, "could not build a request: %s", strerror(-err));
		goto cleanup;
	}
	t0 = sh_now_mono_ns();
	rv = nng_sendmsg(s->sock, msg, 0);
	if (rv) {
		/* The message is still ours when sending fails. */
		err = sh_errno_from_nng(rv);
		if (!is_stopping(s))
			note_failure(s, err, rv == NNG_ETIMEDOUT, "could not send: %s",
				     nng_strerror(rv));
		goto cleanup;
	}
	msg = NULL;
	pthread_mutex_lock(&s->mu);
	s->st.requests++;
	s->st.sent += b.n;
	pthread_mutex_unlock(&s->mu);

	rv = nng_recvmsg(s->sock, &reply, 0);
	if (rv) {
		err = sh_errno_from_nng(rv);
		if (!is_stopping(s))
			note_failure(s, err, rv == NNG_ETIMEDOUT, "no reply: %s", nng_strerror(rv));
		goto cleanup;
	}
	t1 = sh_now_mono_ns();
	ack = spikehound__ack__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
	if (!ack) {
		err = -EBADMSG;
		note_failure(s, err, false, "could not decode the ack (%zu bytes)",
			     nng_msg_len(reply));
		goto cleanup;
	}
	if (ack->received_ns)
		note_skew(s, ack->received_ns, sent_wall, t1 - t0);

	removed = apply_ack(s, &b, ack);
	if (ack->status == SPIKEHOUND__ACK__STATUS__RETRY) {
		err = -EAGAIN;
		note_failure(s, err, false, "aggregator asked to retry: %s",
			     ack->reason && ack->reason[0] ? ack->reason : "no reason given");
	} else if (removed == 0) {
		err = ack->status == SPIKEHOUND__ACK__STATUS__OK ? -EAGAIN : -EPROTO;
		note_failure(s, err, false, "aggregator %s the request: %s",
			     ack->status == SPIKEHOUND__ACK__STATUS__OK ? "acknowledged none of" :
									  "rejected",
			     ack->reason && ack->reason[0] ? ack->reason : "no reason given");
	} else {
		if (ack->status != SPIKEHOUND__ACK__STATUS__OK)
			sh_warn("aggregator rejected the request: %s",
				ack->reason && ack->reason[0] ? ack->reason : "no reason given");
		note_success(s);
		err = 1;
	}
cleanup:
	if (ack)
		spikehound__ack__free_unpacked(ack, NULL);
	nng_msg_free(reply);
	nng_msg_free(msg);
	agent_spool_batch_free(&b);
	return err;
}

static void *sender_main(void *arg)
{
	struct agent_sender *s = arg;

	while (!is_stopping(s)) {
		int err = agent_spool_wait(s->spool, -1);

		if (err)
			continue; /* woken (probably to stop) */
		if (send_batch(s) < 0 && !is_stopping(s))
			backoff_sleep(s);
	}
	return NULL;
}

int agent_sender_start(struct agent_sender **out, const struct agent_sender_opts *opts)
{
	struct agent_sender *s = NULL;
	pthread_condattr_t ca;
	bool mu_ok = false, cond_ok = false, sock_ok = false;
	char tls_err[300];
	int rv, err = 0;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!opts || !opts->spool || !opts->addrs || opts->n_addrs == 0 ||
	    opts->reply_timeout_ms < 0 || opts->backoff_min_ms < 0 || opts->backoff_max_ms < 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->spool = opts->spool;
	s->fill_hello = opts->fill_hello;
	s->hello_arg = opts->hello_arg;
	s->max_msgs = opts->max_msgs ? opts->max_msgs : DEFAULT_MAX_MSGS;
	s->max_bytes = opts->max_bytes ? opts->max_bytes : DEFAULT_MAX_BYTES;
	s->reply_timeout_ms = opts->reply_timeout_ms ? opts->reply_timeout_ms :
						       DEFAULT_REPLY_TIMEOUT_MS;
	s->backoff_min_ms = opts->backoff_min_ms ? opts->backoff_min_ms : DEFAULT_BACKOFF_MIN_MS;
	s->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
	if (s->backoff_max_ms < s->backoff_min_ms)
		s->backoff_max_ms = s->backoff_min_ms;
	s->rng = (uint64_t)sh_now_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)s;
	if (!s->rng)
		s->rng = 0x9e3779b97f4a7c15ULL;

	err = -pthread_mutex_init(&s->mu, NULL);
	if (err)
		goto cleanup;
	mu_ok = true;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	err = -pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (err)
		goto cleanup;
	cond_ok = true;

	rv = nng_req0_open(&s->sock);
	if (rv) {
		err = sh_errno_from_nng(rv);
		sh_err("could not open a req socket: %s", nng_strerror(rv));
		goto cleanup;
	}
	sock_ok = true;
	if ((rv = nng_socket_set_ms(s->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, s->reply_timeout_ms)) ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, s->reply_timeout_ms)) ||
	    (rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, ACK_MAX_BYTES)) ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS)) ||
	    (rv = nng_socket_set_ms(s->sock, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS))) {
		err = sh_errno_from_nng(rv);
		sh_err("could not set req socket options: %s", nng_strerror(rv));
		goto cleanup;
	}
	for (size_t i = 0; i < opts->n_addrs; i++) {
		if (!opts->addrs[i]) {
			err = -EINVAL;
			goto cleanup;
		}
		s->tls |= sh_tls_is_tls(opts->addrs[i]);
		rv = sh_tls_dial(s->sock, opts->addrs[i], opts->tls, NNG_FLAG_NONBLOCK, tls_err,
				 sizeof(tls_err));
		if (rv) {
			err = sh_errno_from_nng(rv);
			if (err == -ENOTSUP)
				err = -EINVAL;
			sh_err("could not dial \"%s\": %s", opts->addrs[i], tls_err);
			goto cleanup;
		}
	}
	err = -pthread_create(&s->thread, NULL, sender_main, s);
	if (err) {
		sh_err("could not start the sender thread: %s", strerror(-err));
		goto cleanup;
	}
	*out = s;
	return 0;
cleanup:
	if (sock_ok)
		nng_close(s->sock);
	if (cond_ok)
		pthread_cond_destroy(&s->cond);
	if (mu_ok)
		pthread_mutex_destroy(&s->mu);
	free(s);
	return err;
}

void agent_sender_stop(struct agent_sender *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	agent_spool_wake(s->spool);
	/* Closing the socket aborts a send or receive in progress (NNG_ECLOSED);
	 * the thread then sees stopping and leaves. */
	nng_close(s->sock);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void agent_sender_get_stats(struct agent_sender *s, struct agent_sender_stats *st)
{
	pthread_mutex_lock(&s->mu);
	*st = s->st;
	pthread_mutex_unlock(&s->mu);
}

int agent_sender_clock_skew(struct agent_sender *s, int64_t *skew_ns, int64_t *rtt_ns)
{
	int err = -EAGAIN;
	size_t best = 0;

	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n_skew; i++) {
		if (s->skew[i].rtt_ns < s->skew[best].rtt_ns)
			best = i;
	}
	if (s->n_skew) {
		if (skew_ns)
			*skew_ns = s->skew[best].skew_ns;
		if (rtt_ns)
			*rtt_ns = s->skew[best].rtt_ns;
		err = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return err;
}
