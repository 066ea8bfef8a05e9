/* wire.c: the request pool. Each slot is an nng REQ context with its own
 * aio. A slot's life: idle -> sending (nng_ctx_send) -> receiving
 * (nng_ctx_recv, started from the send's callback) -> done (queued for
 * the caller) -> idle. REQ's own resending is off: the caller decides what
 * to resend, and a new request on a context cancels the old one, so a late
 * reply to a timed-out request is dropped by nng. */
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <nng/protocol/reqrep0/req.h>

#include "log.h"
#include "nngerr.h"
#include "timeutil.h"

#define ACK_MAX_BYTES (4 << 20)

struct slot {
	struct fsim_wire *w;
	nng_ctx ctx;
	nng_aio *aio;
	bool ctx_open;
	bool sending; /* the aio is on the send; else on the receive */
	void *tag;
	int err; /* nng result of the failed step, 0 */
	nng_msg *reply;
	struct slot *next; /* in the done queue or the idle list */
};

struct fsim_wire {
	nng_socket *socks;
	int n_socks;
	struct slot *slots;
	int n_slots;
	struct slot *idle; /* caller's thread only */
	int n_idle;

	pthread_mutex_t mu; /* guards the done queue */
	pthread_cond_t cond;
	struct slot *done_head, *done_tail;
	bool woken; /* fsim_wire_wake was called */
};

/* slot_cb runs on an nng thread: it checks the result first, passes a
 * successful send on to the receive, and otherwise queues the slot. */
static void slot_cb(void *arg)
{
	struct slot *s = arg;
	struct fsim_wire *w = s->w;
	int rv = nng_aio_result(s->aio);

	if (s->sending) {
		if (rv == 0) {
			/* nng took the request: wait for its reply */
			s->sending = false;
			nng_ctx_recv(s->ctx, s->aio);
			return;
		}
		/* a failed send leaves the message ours */
		nng_msg_free(nng_aio_get_msg(s->aio));
		nng_aio_set_msg(s->aio, NULL);
		s->reply = NULL;
	} else if (rv == 0) {
		s->reply = nng_aio_get_msg(s->aio);
		nng_aio_set_msg(s->aio, NULL);
	} else {
		s->reply = NULL;
	}
	s->err = rv;
	pthread_mutex_lock(&w->mu);
	s->next = NULL;
	if (w->done_tail)
		w->done_tail->next = s;
	else
		w->done_head = s;
	w->done_tail = s;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

int fsim_wire_new(struct fsim_wire **out, const struct fsim_wire_opts *o)
{
	struct fsim_wire *w = calloc(1, sizeof(*w));
	pthread_condattr_t ca;
	int rv, err = 0;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	w->socks = calloc((size_t)o->sockets, sizeof(*w->socks));
	w->slots = calloc((size_t)o->slots, sizeof(*w->slots));
	if (!w->socks || !w->slots) {
		err = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < o->sockets; i++) {
		nng_socket *sk = &w->socks[i];

		if ((rv = nng_req0_open(sk)) != 0) {
			sh_err("could not open a req socket: %s", nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			goto fail;
		}
		w->n_socks++;
		if ((rv = nng_socket_set_ms(*sk, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) ||
		    (rv = nng_socket_set_size(*sk, NNG_OPT_RECVMAXSZ, ACK_MAX_BYTES)) ||
		    (rv = nng_socket_set_ms(*sk, NNG_OPT_RECONNMINT, 100)) ||
		    (rv = nng_socket_set_ms(*sk, NNG_OPT_RECONNMAXT, 2000))) {
			sh_err("could not set req socket options: %s", nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			goto fail;
		}
		if ((rv = nng_dial(*sk, o->url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
			sh_err("could not dial \"%s\": %s", o->url, nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			goto fail;
		}
	}
	for (int i = 0; i < o->slots; i++) {
		struct slot *s = &w->slots[i];

		s->w = w;
		if ((rv = nng_ctx_open(&s->ctx, w->socks[i % o->sockets])) != 0 ||
		    (s->ctx_open = true, rv = nng_ctx_set_ms(s->ctx, NNG_OPT_REQ_RESENDTIME,
							     NNG_DURATION_INFINITE)) != 0 ||
		    (rv = nng_aio_alloc(&s->aio, slot_cb, s)) != 0) {
			sh_err("could not set up request context %d: %s", i, nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			w->n_slots = i + 1;
			goto fail;
		}
		nng_aio_set_timeout(s->aio, o->timeout_ms);
		s->next = w->idle;
		w->idle = s;
		w->n_idle++;
	}
	w->n_slots = o->slots;
	*out = w;
	return 0;
fail:
	fsim_wire_free(w);
	return err ? err : -ENOMEM;
}

void fsim_wire_free(struct fsim_wire *w)
{
	if (!w)
		return;
	/* stop every aio first: after nng_aio_stop no callback runs */
	for (int i = 0; i < w->n_slots; i++)
		if (w->slots[i].aio)
			nng_aio_stop(w->slots[i].aio);
	for (struct slot *s = w->done_head; s; s = s->next)
		nng_msg_free(s->reply);
	for (int i = 0; i < w->n_slots; i++) {
		struct slot *s = &w->slots[i];

		if (s->aio) {
			nng_msg_free(nng_aio_get_msg(s->aio));
			nng_aio_free(s->aio);
		}
		if (s->ctx_open)
			nng_ctx_close(s->ctx);
	}
	for (int i = 0; i < w->n_socks; i++)
		nng_close(w->socks[i]);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w->slots);
	free(w->socks);
	free(w);
}

int fsim_wire_idle(const struct fsim_wire *w)
{
	return w->n_idle;
}

int fsim_wire_inflight(const struct fsim_wire *w)
{
	return w->n_slots - w->n_idle;
}

int fsim_wire_send(struct fsim_wire *w, nng_msg *msg, void *tag)
{
	struct slot *s = w->idle;

	if (!s) {
		nng_msg_free(msg);
		return -EBUSY;
	}
	w->idle = s->next;
	w->n_idle--;
	s->tag = tag;
	s->err = 0;
	s->reply = NULL;
	s->sending = true;
	nng_aio_set_msg(s->aio, msg);
	nng_ctx_send(s->ctx, s->aio);
	return 0;
}

void fsim_wire_wake(struct fsim_wire *w)
{
	pthread_mutex_lock(&w->mu);
	w->woken = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

int fsim_wire_poll(struct fsim_wire *w, int timeout_ms, fsim_wire_done_fn cb, void *arg)
{
	struct slot *list;
	int n = 0;

	pthread_mutex_lock(&w->mu);
	if (!w->done_head && timeout_ms > 0) {
		struct timespec dl;

		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * SH_NS_PER_MS;
		if (dl.tv_nsec >= SH_NS_PER_SEC) {
			dl.tv_sec++;
			dl.tv_nsec -= SH_NS_PER_SEC;
		}
		while (!w->done_head && !w->woken)
			if (pthread_cond_timedwait(&w->cond, &w->mu, &dl) == ETIMEDOUT)
				break;
	}
	list = w->done_head;
	w->done_head = w->done_tail = NULL;
	w->woken = false;
	pthread_mutex_unlock(&w->mu);

	while (list) {
		struct slot *s = list;
		nng_msg *reply = s->reply;
		void *tag = s->tag;
		int err = sh_errno_from_nng(s->err);

		list = s->next;
		s->reply = NULL;
		s->tag = NULL;
		s->next = w->idle;
		w->idle = s;
		w->n_idle++;
		cb(arg, tag, err, reply);
		n++;
	}
	return n;
}
