/* control.c: the simulated hosts' long polls (see control.h).
 *
 * A host's poll: idle -> sending (nng_ctx_send) -> waiting (nng_ctx_recv,
 * started from the send's callback) -> done (queued) -> handled in
 * fsim_ctl_step -> the next poll, at once after an answer or a cut-short,
 * after a back-off after a failure. Cutting a held poll short (to send a
 * status) cancels its aio; the flag and the start of the receive are both
 * under the mutex, so a cancel cannot slip between them. */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "log.h"
#include "nngerr.h"
#include "timeutil.h"

#define ID_MAX 64
#define SEEN_MAX 32	 /* command ids remembered per host */
#define STATUS_MAX 32	 /* statuses waiting per host */
#define GROW_FIRST 4	 /* per-host arrays start this small (a fleet has many hosts) */
#define JOBS_PER_HOST 64 /* as the agent's capjobs */
#define SEND_TIMEOUT_MS 5000
#define RECV_SLACK_MS 10000 /* beyond wait_ms before a poll counts as lost */
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 5000
#define STARTS_PER_STEP 256 /* polls started per scan: a big fleet starts gradually */
#define SCAN_EVERY_NS (100 * SH_NS_PER_MS) /* hosts are looked over this often */
#define DUE_MARGIN_NS (300 * SH_NS_PER_MS) /* as the agent: records reach its recorder */
#define MAX_AHEAD_NS (600 * SH_NS_PER_SEC)
#define WARN_EVERY_NS (60 * SH_NS_PER_SEC)
#define REPLY_MAX_BYTES (16 << 20)

struct status {
	char id[ID_MAX + 1];
	char status[12];
	char reason[200];
};

/* grow makes room for at least need (> 0) items of size in array v of
 * capacity *cap (at most max): returns the array, maybe moved, or NULL on
 * ENOMEM (v is left as it was). */
static void *grow(void *v, int *cap, int need, int max, size_t size)
{
	int nc = *cap ? *cap : GROW_FIRST;
	void *nv;

	if (need <= *cap)
		return v;
	while (nc < need)
		nc *= 2;
	if (nc > max)
		nc = max;
	if (!(nv = realloc(v, (size_t)nc * size)))
		return NULL;
	*cap = nc;
	return nv;
}

/* struct hctl is one host's poll and command bookkeeping. */
struct hctl {
	struct fsim_ctl *c;
	uint32_t idx;
	nng_ctx ctx;
	bool ctx_open;
	nng_aio *aio;
	/* under c->mu */
	bool sending;	/* the aio is on the send; else on the receive */
	bool cut;	/* cut short by us */
	bool in_flight; /* the aio is busy */
	bool queued;	/* in the done queue */
	int err;
	nng_msg *reply;
	struct hctl *next; /* in the done queue */
	/* caller's thread only */
	int64_t retry_at_mono;
	int backoff_ms;
	struct status *st; /* to send */
	int nst, cap_st;
	bool fresh;	     /* a status was queued since the last poll left */
	struct status *sent; /* the statuses of the poll in flight */
	int nsent, cap_sent;
	struct status *seen; /* commands handled, with their last status (a ring) */
	int nseen, seen_next, cap_seen;
	int jobs;
};

struct fsim_ctl {
	struct fsim_ctl_opts o;
	char url[256];
	struct fsim_fleet *f;
	nng_socket *socks;
	int n_socks;
	struct hctl *hosts;
	uint32_t n_hosts, rr;
	struct fsim_ctl_job *jobs;
	size_t n_jobs, cap_jobs;
	struct fsim_ctl_stats st;
	int64_t warn_next_ns;
	uint64_t warn_suppressed;
	int64_t scan_next_mono;

	pthread_mutex_t mu; /* the done queue and the aio flags */
	struct hctl *done_head, *done_tail;
};

static void ctl_cb(void *arg)
{
	struct hctl *hc = arg;
	struct fsim_ctl *c = hc->c;
	int rv = nng_aio_result(hc->aio);

	pthread_mutex_lock(&c->mu);
	if (hc->sending) {
		if (rv == 0 && !hc->cut) {
			/* the poll left: wait for its answer (held up to wait_ms) */
			hc->sending = false;
			nng_aio_set_timeout(hc->aio, c->o.wait_ms + RECV_SLACK_MS);
			nng_ctx_recv(hc->ctx, hc->aio);
			pthread_mutex_unlock(&c->mu);
			return;
		}
		if (rv != 0) /* a failed send leaves the message ours */
			nng_msg_free(nng_aio_get_msg(hc->aio));
		else if (hc->cut)
			rv = NNG_ECANCELED;
		nng_aio_set_msg(hc->aio, NULL);
		hc->reply = NULL;
	} else if (rv == 0) {
		hc->reply = nng_aio_get_msg(hc->aio);
		nng_aio_set_msg(hc->aio, NULL);
	} else {
		hc->reply = NULL;
	}
	hc->err = rv;
	hc->in_flight = false;
	hc->queued = true;
	hc->next = NULL;
	if (c->done_tail)
		c->done_tail->next = hc;
	else
		c->done_head = hc;
	c->done_tail = hc;
	pthread_mutex_unlock(&c->mu);
	if (c->o.wake)
		c->o.wake(c->o.wake_arg);
}

/* warn logs a control-plane problem at most once a minute. */
static void warn(struct fsim_ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct fsim_ctl *c, const char *fmt, ...)
{
	int64_t now = sh_now_mono_ns();
	char msg[256];
	va_list ap;

	if (now < c->warn_next_ns) {
		c->warn_suppressed++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->warn_suppressed)
		sh_warn("control: %s (and %" PRIu64 " more problems since the last warning)", msg,
			c->warn_suppressed);
	else
		sh_warn("control: %s", msg);
	c->warn_suppressed = 0;
	c->warn_next_ns = now + WARN_EVERY_NS;
}

int fsim_ctl_new(struct fsim_ctl **out, const struct fsim_ctl_opts *o, struct fsim_fleet *f)
{
	struct fsim_ctl *c;
	int rv, err = -ENOMEM;

	*out = NULL;
	if (!o->url || strlen(o->url) >= sizeof(c->url))
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	c->o = *o;
	snprintf(c->url, sizeof(c->url), "%s", o->url);
	c->o.url = c->url;
	if (c->o.wait_ms <= 0)
		c->o.wait_ms = 20000;
	if (c->o.sockets <= 0)
		c->o.sockets = 2;
	c->f = f;
	c->socks = calloc((size_t)c->o.sockets, sizeof(*c->socks));
	c->hosts = calloc(f->n_hosts, sizeof(*c->hosts));
	if (!c->socks || !c->hosts)
		goto fail;
	for (int i = 0; i < c->o.sockets; i++) {
		nng_socket *sk = &c->socks[i];

		if ((rv = nng_req0_open(sk)) != 0) {
			sh_err("control: could not open a req socket: %s", nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			goto fail;
		}
		c->n_socks++;
		/* a lost answer is not resent by REQ: the next poll asks again */
		if ((rv = nng_socket_set_ms(*sk, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) ||
		    (rv = nng_socket_set_size(*sk, NNG_OPT_RECVMAXSZ, REPLY_MAX_BYTES)) ||
		    (rv = nng_socket_set_ms(*sk, NNG_OPT_RECONNMINT, 100)) ||
		    (rv = nng_socket_set_ms(*sk, NNG_OPT_RECONNMAXT, 2000))) {
			sh_err("control: could not set req socket options: %s", nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			goto fail;
		}
		if ((rv = nng_dial(*sk, c->url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
			sh_err("control: could not dial \"%s\": %s", c->url, nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			goto fail;
		}
	}
	for (uint32_t i = 0; i < f->n_hosts; i++) {
		struct hctl *hc = &c->hosts[i];

		hc->c = c;
		hc->idx = i;
		c->n_hosts = i + 1;
		if ((rv = nng_ctx_open(&hc->ctx, c->socks[i % (uint32_t)c->n_socks])) != 0 ||
		    (hc->ctx_open = true, rv = nng_ctx_set_ms(hc->ctx, NNG_OPT_REQ_RESENDTIME,
							      NNG_DURATION_INFINITE)) != 0 ||
		    (rv = nng_aio_alloc(&hc->aio, ctl_cb, hc)) != 0) {
			sh_err("control: could not set up the context of host %u: %s", i,
			       nng_strerror(rv));
			err = sh_errno_from_nng(rv);
			goto fail;
		}
	}
	sh_info("control: %u hosts long-poll %s (wait %d ms)", f->n_hosts, c->url, c->o.wait_ms);
	*out = c;
	return 0;
fail:
	fsim_ctl_free(c);
	return err;
}

void fsim_ctl_stop(struct fsim_ctl *c)
{
	/* after nng_aio_stop no callback runs */
	for (uint32_t i = 0; i < c->n_hosts; i++)
		if (c->hosts[i].aio)
			nng_aio_stop(c->hosts[i].aio);
}

void fsim_ctl_free(struct fsim_ctl *c)
{
	if (!c)
		return;
	fsim_ctl_stop(c);
	for (struct hctl *hc = c->done_head; hc; hc = hc->next)
		nng_msg_free(hc->reply);
	for (uint32_t i = 0; i < c->n_hosts; i++) {
		struct hctl *hc = &c->hosts[i];

		if (hc->aio) {
			nng_msg_free(nng_aio_get_msg(hc->aio));
			nng_aio_free(hc->aio);
		}
		if (hc->ctx_open)
			nng_ctx_close(hc->ctx);
		free(hc->st);
		free(hc->sent);
		free(hc->seen);
	}
	for (int i = 0; i < c->n_socks; i++)
		nng_close(c->socks[i]);
	for (size_t i = 0; i < c->n_jobs; i++)
		fsim_ctl_job_fini(&c->jobs[i]);
	free(c->jobs);
	pthread_mutex_destroy(&c->mu);
	free(c->hosts);
	free(c->socks);
	free(c);
}

/* queue_status puts a status to send; a newer one of the same command
 * replaces the older. */
static void queue_status(struct hctl *hc, const char *id, const char *status, const char *reason)
{
	struct status *s = NULL, *v;

	for (int i = 0; i < hc->nst && !s; i++)
		if (strcmp(hc->st[i].id, id) == 0)
			s = &hc->st[i];
	if (!s) {
		if (hc->nst == STATUS_MAX) {
			memmove(&hc->st[0], &hc->st[1], sizeof(hc->st[0]) * (STATUS_MAX - 1));
			hc->nst--;
		}
		if (!(v = grow(hc->st, &hc->cap_st, hc->nst + 1, STATUS_MAX, sizeof(*hc->st))))
			return; /* the aggregator repeats the command; we answer then */
		hc->st = v;
		s = &hc->st[hc->nst++];
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->status, sizeof(s->status), "%s", status);
	snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
	hc->fresh = true;
}

static struct status *seen_find(struct hctl *hc, const char *id)
{
	for (int i = 0; i < hc->nseen; i++)
		if (strcmp(hc->seen[i].id, id) == 0)
			return &hc->seen[i];
	return NULL;
}

/* seen_add remembers command id with its status; NULL on ENOMEM. */
static struct status *seen_add(struct hctl *hc, const char *id, const char *status,
			       const char *reason)
{
	struct status *s, *v;

	/* appended until full, then the oldest is overwritten */
	if (hc->nseen < SEEN_MAX) {
		if (!(v = grow(hc->seen, &hc->cap_seen, hc->nseen + 1, SEEN_MAX,
			       sizeof(*hc->seen))))
			return NULL;
		hc->seen = v;
	}
	s = &hc->seen[hc->seen_next];
	hc->seen_next = (hc->seen_next + 1) % SEEN_MAX;
	if (hc->nseen < SEEN_MAX)
		hc->nseen++;
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->status, sizeof(s->status), "%s", status);
	snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
	return s;
}

/* reply_status answers a new command at once (not a capture to take). */
static void reply_status(struct fsim_ctl *c, struct hctl *hc, const char *id, const char *status,
			 const char *reason)
{
	seen_add(hc, id, status, reason);
	queue_status(hc, id, status, reason);
	c->st.rejected++;
}

static int add_job(struct fsim_ctl *c, struct hctl *hc, const Spikehound__Command *cmd)
{
	const struct fsim_host *h = &c->f->hosts[hc->idx];
	Spikehound__CaptureRequest *copy;
	struct fsim_ctl_job *j;
	size_t len = spikehound__capture_request__get_packed_size(cmd->capture);
	uint8_t *buf;

	if (c->n_jobs == c->cap_jobs) {
		size_t cap = c->cap_jobs ? 2 * c->cap_jobs : 16;
		struct fsim_ctl_job *v = realloc(c->jobs, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->jobs = v;
		c->cap_jobs = cap;
	}
	/* a deep copy: pack and unpack */
	if (!(buf = malloc(len ? len : 1)))
		return -ENOMEM;
	spikehound__capture_request__pack(cmd->capture, buf);
	copy = spikehound__capture_request__unpack(NULL, len, buf);
	free(buf);
	if (!copy)
		return -ENOMEM;
	j = &c->jobs[c->n_jobs++];
	j->host = hc->idx;
	snprintf(j->command_id, sizeof(j->command_id), "%s", cmd->command_id);
	j->req = copy;
	/* the window is on the host's clock */
	j->due_ns = copy->to_ns - h->skew_ns + DUE_MARGIN_NS;
	hc->jobs++;
	return 0;
}

static void handle_commands(struct fsim_ctl *c, struct hctl *hc, Spikehound__ControlReply *rep,
			    int64_t now_ns)
{
	const struct fsim_host *h = &c->f->hosts[hc->idx];
	int64_t host_now = now_ns + h->skew_ns;

	for (size_t i = 0; i < rep->n_commands; i++) {
		const Spikehound__Command *cmd = rep->commands[i];
		struct status *s;

		if (!cmd->command_id || !cmd->command_id[0] || strlen(cmd->command_id) > ID_MAX)
			continue;
		if ((s = seen_find(hc, cmd->command_id)) != NULL) {
			/* the aggregator did not get our status: say it again */
			c->st.duplicates++;
			queue_status(hc, s->id, s->status, s->reason);
			continue;
		}
		c->st.commands++;
		if (cmd->expires_ns > 0 && cmd->expires_ns < host_now) {
			reply_status(c, hc, cmd->command_id, "expired",
				     "the command arrived after it expired");
		} else if (!cmd->capture) {
			reply_status(c, hc, cmd->command_id, "failed",
				     "unknown command: this agent only takes captures");
		} else if (cmd->capture->to_ns > host_now + MAX_AHEAD_NS) {
			reply_status(c, hc, cmd->command_id, "failed",
				     "bad window: it ends more than 10 minutes from now");
		} else if (hc->jobs >= JOBS_PER_HOST) {
			reply_status(c, hc, cmd->command_id, "failed",
				     "busy: too many captures pending on this agent");
		} else if (add_job(c, hc, cmd) != 0) {
			reply_status(c, hc, cmd->command_id, "failed",
				     "out of memory while queueing the capture");
		} else {
			seen_add(hc, cmd->command_id, "accepted", "");
			queue_status(hc, cmd->command_id, "accepted", "");
			c->st.captures++;
		}
	}
}

static void backoff(struct hctl *hc)
{
	struct fsim_host *h = &hc->c->f->hosts[hc->idx];

	hc->backoff_ms = hc->backoff_ms ? hc->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (hc->backoff_ms > BACKOFF_MAX_MS)
		hc->backoff_ms = BACKOFF_MAX_MS;
	/* not from the host's stream: control timing must not change its data */
	hc->retry_at_mono =
		sh_now_mono_ns() +
		(int64_t)(hc->backoff_ms / 2 + (int)(fsim_hash((uint64_t)sh_now_mono_ns(), h->idx) %
						     (uint64_t)(hc->backoff_ms / 2 + 1))) *
			SH_NS_PER_MS;
}

/* handle_done settles one finished poll. */
static void handle_done(struct fsim_ctl *c, struct hctl *hc, int err, bool cut, nng_msg *reply,
			int64_t now_ns)
{
	const struct fsim_host *h = &c->f->hosts[hc->idx];
	Spikehound__ControlReply *rep;

	if (err != 0) {
		if (cut && err == NNG_ECANCELED)
			return; /* cut short for statuses: poll again at once */
		c->st.failures++;
		warn(c, "poll of %s failed: %s; polling again", h->hostname, nng_strerror(err));
		backoff(hc);
		return;
	}
	rep = spikehound__control_reply__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
	nng_msg_free(reply);
	if (!rep) {
		c->st.failures++;
		warn(c, "could not decode an answer to %s", h->hostname);
		backoff(hc);
		return;
	}
	if (rep->error && rep->error[0]) {
		c->st.refused++;
		warn(c, "the aggregator refused a poll of %s: %s", h->hostname, rep->error);
		backoff(hc);
		spikehound__control_reply__free_unpacked(rep, NULL);
		return;
	}
	c->st.polls++;
	hc->backoff_ms = 0;
	/* the statuses of this poll arrived: drop those not updated since */
	for (int i = 0; i < hc->nsent; i++) {
		for (int k = 0; k < hc->nst; k++) {
			if (strcmp(hc->st[k].id, hc->sent[i].id) == 0 &&
			    strcmp(hc->st[k].status, hc->sent[i].status) == 0) {
				hc->st[k] = hc->st[--hc->nst];
				c->st.statuses++;
				break;
			}
		}
	}
	hc->nsent = 0;
	handle_commands(c, hc, rep, now_ns);
	spikehound__control_reply__free_unpacked(rep, NULL);
}

/* start_poll sends host hc's next poll. Returns 0 or a negative errno. */
static int start_poll(struct fsim_ctl *c, struct hctl *hc, int64_t now_ns)
{
	Spikehound__ControlPoll poll = SPIKEHOUND__CONTROL_POLL__INIT;
	Spikehound__CommandStatus sts[STATUS_MAX], *stp[STATUS_MAX];
	struct fsim_hello hello;
	nng_msg *msg;
	size_t len;
	int rv;

	fsim_host_hello(c->f, &c->f->hosts[hc->idx], now_ns, &hello);
	if (hc->nst > 0) {
		struct status *v =
			grow(hc->sent, &hc->cap_sent, hc->nst, STATUS_MAX, sizeof(*hc->sent));

		if (!v)
			return -ENOMEM;
		hc->sent = v;
	}
	for (int i = 0; i < hc->nst; i++) {
		spikehound__command_status__init(&sts[i]);
		sts[i].command_id = hc->st[i].id;
		sts[i].status = hc->st[i].status;
		sts[i].reason = hc->st[i].reason;
		stp[i] = &sts[i];
		hc->sent[i] = hc->st[i];
	}
	hc->nsent = hc->nst;
	hc->fresh = false;
	poll.hello = &hello.hello;
	poll.statuses = stp;
	poll.n_statuses = (size_t)hc->nst;
	poll.wait_ms = (uint32_t)c->o.wait_ms;
	len = spikehound__control_poll__get_packed_size(&poll);
	if ((rv = nng_msg_alloc(&msg, len)) != 0)
		return sh_errno_from_nng(rv);
	spikehound__control_poll__pack(&poll, nng_msg_body(msg));
	pthread_mutex_lock(&c->mu);
	hc->sending = true;
	hc->cut = false;
	hc->in_flight = true;
	nng_aio_set_msg(hc->aio, msg);
	nng_aio_set_timeout(hc->aio, SEND_TIMEOUT_MS);
	nng_ctx_send(hc->ctx, hc->aio);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* cut_short cuts host hc's held poll short when statuses wait for the
 * next one; under c->mu. */
static void cut_short(struct hctl *hc)
{
	if (hc->in_flight && hc->fresh && !hc->cut && !hc->sending) {
		hc->cut = true;
		nng_aio_cancel(hc->aio);
	}
}

static void poll_now(struct fsim_ctl *c, struct hctl *hc, int64_t now_ns)
{
	if (start_poll(c, hc, now_ns) != 0) {
		c->st.failures++;
		backoff(hc);
	}
}

void fsim_ctl_step(struct fsim_ctl *c, int64_t now_ns)
{
	struct hctl *list;
	int64_t now_mono = sh_now_mono_ns();
	int started = 0;

	pthread_mutex_lock(&c->mu);
	list = c->done_head;
	c->done_head = c->done_tail = NULL;
	pthread_mutex_unlock(&c->mu);
	while (list) {
		struct hctl *hc = list;
		nng_msg *reply;
		int err;
		bool cut;

		list = hc->next;
		pthread_mutex_lock(&c->mu);
		reply = hc->reply;
		err = hc->err;
		cut = hc->cut;
		hc->reply = NULL;
		hc->next = NULL;
		hc->queued = false;
		pthread_mutex_unlock(&c->mu);
		handle_done(c, hc, err, cut, reply, now_ns);
		/* answered or cut short: the next poll leaves at once */
		if (hc->retry_at_mono <= now_mono)
			poll_now(c, hc, now_ns);
	}
	if (now_mono < c->scan_next_mono)
		return;
	c->scan_next_mono = now_mono + SCAN_EVERY_NS;
	/* the first polls (a few at a time), those after a back-off, and
	 * held polls whose statuses could not be cut short before */
	for (uint32_t n = 0; n < c->n_hosts; n++) {
		struct hctl *hc = &c->hosts[c->rr];
		bool busy;

		c->rr = (c->rr + 1) % c->n_hosts;
		pthread_mutex_lock(&c->mu);
		busy = hc->in_flight || hc->queued;
		cut_short(hc);
		pthread_mutex_unlock(&c->mu);
		if (busy || hc->retry_at_mono > now_mono || started >= STARTS_PER_STEP)
			continue;
		poll_now(c, hc, now_ns);
		started++;
	}
}

bool fsim_ctl_next_job(struct fsim_ctl *c, int64_t now_ns, struct fsim_ctl_job *job)
{
	size_t best = c->n_jobs;

	for (size_t i = 0; i < c->n_jobs; i++)
		if (c->jobs[i].due_ns <= now_ns &&
		    (best == c->n_jobs || c->jobs[i].due_ns < c->jobs[best].due_ns))
			best = i;
	if (best == c->n_jobs)
		return false;
	*job = c->jobs[best];
	c->jobs[best] = c->jobs[--c->n_jobs];
	c->hosts[job->host].jobs--;
	return true;
}

int64_t fsim_ctl_next_due(const struct fsim_ctl *c)
{
	int64_t next = INT64_MAX;

	for (size_t i = 0; i < c->n_jobs; i++)
		if (c->jobs[i].due_ns < next)
			next = c->jobs[i].due_ns;
	return next;
}

void fsim_ctl_job_fini(struct fsim_ctl_job *job)
{
	if (job->req)
		spikehound__capture_request__free_unpacked(job->req, NULL);
	job->req = NULL;
}

void fsim_ctl_report(struct fsim_ctl *c, uint32_t host, const char *command_id, const char *status,
		     const char *reason)
{
	struct hctl *hc = &c->hosts[host];
	struct status *s = seen_find(hc, command_id);

	if (s) {
		snprintf(s->status, sizeof(s->status), "%s", status);
		snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
	}
	/* sent with the next poll: cut a held one short */
	queue_status(hc, command_id, status, reason);
	pthread_mutex_lock(&c->mu);
	cut_short(hc);
	pthread_mutex_unlock(&c->mu);
}

const struct fsim_ctl_stats *fsim_ctl_stats(const struct fsim_ctl *c)
{
	return &c->st;
}
