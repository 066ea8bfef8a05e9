/* ctlclient.c: the agent's control-plane long poll (see ctlclient.h). */
#include "ctlclient.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "timeutil.h"

#define SEEN_MAX 256
#define STATUS_MAX 128
#define ID_MAX 64

struct status_item {
	char id[ID_MAX + 1];
	char status[16];
	char reason[256];
};

struct agent_control {
	struct agent_control_opts o;
	char url[256];
	nng_socket sock;
	nng_ctx ctx;
	nng_aio *aio;
	pthread_t thread;
	pthread_mutex_t mu;
	atomic_bool stop;
	bool waiting; /* a poll is in flight (aio may be cancelled) */
	/* statuses to send (under mu) */
	struct status_item st[STATUS_MAX];
	int nst;
	/* command ids already handed over, with their last status (control thread only) */
	struct status_item seen[SEEN_MAX];
	int nseen, seen_next;
	struct agent_control_stats stats; /* under mu */
};

static void queue_status(struct agent_control *c, const char *id, const char *status,
			 const char *reason)
{
	struct status_item *s = NULL;

	for (int i = 0; i < c->nst; i++)
		if (strcmp(c->st[i].id, id) == 0)
			s = &c->st[i];
	if (!s) {
		if (c->nst == STATUS_MAX)
			memmove(&c->st[0], &c->st[1], sizeof(c->st[0]) * (STATUS_MAX - 1)), c->nst--;
		s = &c->st[c->nst++];
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	snprintf(s->status, sizeof(s->status), "%s", status);
	snprintf(s->reason, sizeof(s->reason), "%s", reason ? reason : "");
}

static struct status_item *seen_find(struct agent_control *c, const char *id)
{
	for (int i = 0; i < c->nseen; i++)
		if (strcmp(c->seen[i].id, id) == 0)
			return &c->seen[i];
	return NULL;
}

void agent_control_report(struct agent_control *c, const char *command_id, const char *status,
			  const char *reason)
{
	pthread_mutex_lock(&c->mu);
	queue_status(c, command_id, status, reason);
	for (int i = 0; i < c->nseen; i++) {
		if (strcmp(c->seen[i].id, command_id) == 0) {
			snprintf(c->seen[i].status, sizeof(c->seen[i].status), "%s", status);
			snprintf(c->seen[i].reason, sizeof(c->seen[i].reason), "%s",
				 reason ? reason : "");
		}
	}
	/* wake the long poll so the status leaves now */
	if (c->waiting)
		nng_aio_cancel(c->aio);
	pthread_mutex_unlock(&c->mu);
}

static void handle_reply(struct agent_control *c, Spikehound__ControlReply *rep)
{
	int64_t now = sh_now_wall_ns();

	if (rep->error && rep->error[0]) {
		pthread_mutex_lock(&c->mu);
		c->stats.refused++;
		snprintf(c->stats.last_error, sizeof(c->stats.last_error), "refused: %s",
			 rep->error);
		pthread_mutex_unlock(&c->mu);
		return;
	}
	for (size_t i = 0; i < rep->n_commands; i++) {
		Spikehound__Command *cmd = rep->commands[i];
		struct status_item *s;

		if (!cmd->command_id || !cmd->command_id[0] || strlen(cmd->command_id) > ID_MAX)
			continue;
		pthread_mutex_lock(&c->mu);
		s = seen_find(c, cmd->command_id);
		if (s) {
			/* the aggregator did not get our status: say it again */
			c->stats.duplicates++;
			queue_status(c, s->id, s->status, s->reason);
			pthread_mutex_unlock(&c->mu);
			continue;
		}
		s = &c->seen[c->seen_next];
		c->seen_next = (c->seen_next + 1) % SEEN_MAX;
		if (c->nseen < SEEN_MAX)
			c->nseen++;
		snprintf(s->id, sizeof(s->id), "%s", cmd->command_id);
		c->stats.commands++;
		if (cmd->expires_ns > 0 && cmd->expires_ns < now) {
			snprintf(s->status, sizeof(s->status), "expired");
			snprintf(s->reason, sizeof(s->reason), "the command arrived after it expired");
			queue_status(c, s->id, s->status, s->reason);
			pthread_mutex_unlock(&c->mu);
			continue;
		}
		snprintf(s->status, sizeof(s->status), "accepted");
		s->reason[0] = '\0';
		queue_status(c, s->id, "accepted", "");
		pthread_mutex_unlock(&c->mu);
		if (c->o.on_command)
			c->o.on_command(c->o.cmd_arg, cmd);
	}
}

/* poll_once sends one poll and waits for its answer. Returns 0, or a
 * negative errno (-ECANCELED when woken by a status). */
static int poll_once(struct agent_control *c)
{
	Spikehound__ControlPoll poll = SPIKEHOUND__CONTROL_POLL__INIT;
	Spikehound__Hello hello = SPIKEHOUND__HELLO__INIT;
	Spikehound__CommandStatus sts[STATUS_MAX], *stp[STATUS_MAX];
	struct status_item copy[STATUS_MAX];
	Spikehound__ControlReply *rep;
	nng_msg *msg = NULL;
	int n, rv;
	size_t len;

	if (c->o.fill_hello)
		c->o.fill_hello(c->o.hello_arg, &hello);
	hello.sent_at_ns = sh_now_wall_ns();
	pthread_mutex_lock(&c->mu);
	n = c->nst;
	memcpy(copy, c->st, sizeof(copy[0]) * (size_t)n);
	pthread_mutex_unlock(&c->mu);
	for (int i = 0; i < n; i++) {
		spikehound__command_status__init(&sts[i]);
		sts[i].command_id = copy[i].id;
		sts[i].status = copy[i].status;
		sts[i].reason = copy[i].reason;
		stp[i] = &sts[i];
	}
	poll.hello = &hello;
	poll.statuses = stp;
	poll.n_statuses = (size_t)n;
	poll.wait_ms = (uint32_t)c->o.wait_ms;
	len = spikehound__control_poll__get_packed_size(&poll);
	if ((rv = nng_msg_alloc(&msg, len)) != 0)
		return -ENOMEM;
	spikehound__control_poll__pack(&poll, nng_msg_body(msg));
	nng_aio_set_msg(c->aio, msg);
	nng_aio_set_timeout(c->aio, 5000);
	nng_ctx_send(c->ctx, c->aio);
	nng_aio_wait(c->aio);
	if ((rv = nng_aio_result(c->aio)) != 0) {
		nng_msg_free(nng_aio_get_msg(c->aio));
		return rv == NNG_ETIMEDOUT ? -ETIMEDOUT : -EIO;
	}
	pthread_mutex_lock(&c->mu);
	c->stats.polls++;
	/* statuses sent: drop those not updated meanwhile */
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < c->nst; k++) {
			if (strcmp(c->st[k].id, copy[i].id) == 0 &&
			    strcmp(c->st[k].status, copy[i].status) == 0) {
				c->st[k] = c->st[--c->nst];
				break;
			}
		}
	}
	c->waiting = true;
	pthread_mutex_unlock(&c->mu);
	nng_aio_set_timeout(c->aio, c->o.wait_ms + 10000);
	nng_ctx_recv(c->ctx, c->aio);
	nng_aio_wait(c->aio);
	pthread_mutex_lock(&c->mu);
	c->waiting = false;
	pthread_mutex_unlock(&c->mu);
	if ((rv = nng_aio_result(c->aio)) != 0)
		return rv == NNG_ECANCELED ? -ECANCELED : rv == NNG_ETIMEDOUT ? -ETIMEDOUT : -EIO;
	msg = nng_aio_get_msg(c->aio);
	rep = spikehound__control_reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	if (!rep)
		return -EBADMSG;
	pthread_mutex_lock(&c->mu);
	c->stats.replies++;
	pthread_mutex_unlock(&c->mu);
	handle_reply(c, rep);
	spikehound__control_reply__free_unpacked(rep, NULL);
	return 0;
}

static void *control_main(void *arg)
{
	struct agent_control *c = arg;

	while (!atomic_load(&c->stop)) {
		int rv = poll_once(c);

		if (rv == 0 || rv == -ECANCELED)
			continue;
		pthread_mutex_lock(&c->mu);
		c->stats.failures++;
		snprintf(c->stats.last_error, sizeof(c->stats.last_error), "%s", strerror(-rv));
		pthread_mutex_unlock(&c->mu);
		for (int i = 0; i < c->o.retry_ms / 50 && !atomic_load(&c->stop); i++)
			nng_msleep(50);
	}
	return NULL;
}

int agent_control_start(struct agent_control **out, const struct agent_control_opts *o)
{
	struct agent_control *c;
	char tls_err[300];
	int rv;

	if (!o->url || !o->url[0] || strlen(o->url) >= sizeof(c->url))
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->o = *o;
	snprintf(c->url, sizeof(c->url), "%s", o->url);
	c->o.url = c->url;
	if (c->o.wait_ms <= 0)
		c->o.wait_ms = 20000;
	if (c->o.retry_ms <= 0)
		c->o.retry_ms = 1000;
	pthread_mutex_init(&c->mu, NULL);
	if ((rv = nng_req0_open(&c->sock)) != 0)
		goto fail;
	/* a lost answer is not resent by REQ: the next poll asks again */
	nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, 16 << 20);
	if ((rv = nng_ctx_open(&c->ctx, c->sock)) != 0 || (rv = nng_aio_alloc(&c->aio, NULL, NULL)) != 0)
		goto fail_sock;
	if ((rv = sh_tls_dial(c->sock, c->url, o->tls, NNG_FLAG_NONBLOCK, tls_err,
			      sizeof(tls_err))) != 0) {
		sh_err("control: cannot dial \"%s\": %s", c->url, tls_err);
		rv = NNG_EINVAL;
		goto fail_sock;
	}
	if (pthread_create(&c->thread, NULL, control_main, c) != 0) {
		rv = NNG_ENOMEM;
		goto fail_sock;
	}
	*out = c;
	return 0;
fail_sock:
	if (c->aio)
		nng_aio_free(c->aio);
	nng_close(c->sock);
fail:
	pthread_mutex_destroy(&c->mu);
	free(c);
	return rv == NNG_EINVAL || rv == NNG_EADDRINVAL ? -EINVAL : -ENOMEM;
}

void agent_control_get_stats(struct agent_control *c, struct agent_control_stats *st)
{
	pthread_mutex_lock(&c->mu);
	*st = c->stats;
	pthread_mutex_unlock(&c->mu);
}

void agent_control_stop(struct agent_control *c)
{
	if (!c)
		return;
	atomic_store(&c->stop, true);
	nng_close(c->sock); /* fails the poll in flight and every later one */
	pthread_join(c->thread, NULL);
	nng_aio_free(c->aio);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
