/* control.c: the control plane's long polls (see control.h). */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "log.h"
#include "timeutil.h"
#include "validate.h"

#define HOST_KEY_LEN 33
#define MAX_STATUSES 256
#define MAX_ID_LEN 64
#define MAX_PENDING_PER_HOST 64
#define TICK_MS 200

/* struct pending_cmd is one command waiting to be acknowledged by its host. */
struct pending_cmd {
	char id[MAX_ID_LEN + 1];
	int64_t expires_ns;
	uint8_t *packed; /* Spikehound__Command */
	size_t len;
};

/* struct host_ctl is a host's pending commands and held poll. */
struct host_ctl {
	char key[HOST_KEY_LEN];
	struct pending_cmd cmds[MAX_PENDING_PER_HOST];
	int ncmds;
	nng_msg *held;       /* the poll being held, owns it; NULL when none */
	int64_t deadline_ns; /* when to answer the held poll with nothing */
	UT_hash_handle hh;
};

struct agg_control {
	uv_loop_t *loop;
	struct agg_control_opts opts;
	nng_socket sock;
	bool sock_open;
	uv_poll_t recv_poll;
	uv_timer_t tick;
	int open_handles;
	bool stopping;
	void (*done_cb)(void *);
	void *done_arg;
	struct host_ctl *hosts;
	/* counters */
	uint64_t polls, polls_held, polls_answered_empty, commands_sent, statuses, refused,
		send_failures, pushed, expired;
};

static void host_key(const char *id, char *out)
{
	size_t n = 0;

	for (const char *p = id; *p && n < HOST_KEY_LEN - 1; p++)
		if (*p != '-')
			out[n++] = (char)(*p | 0x20);
	out[n] = '\0';
}

static struct host_ctl *host_get(struct agg_control *c, const char *key, bool create)
{
	struct host_ctl *h;

	HASH_FIND_STR(c->hosts, key, h);
	if (h || !create)
		return h;
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	snprintf(h->key, sizeof(h->key), "%s", key);
	HASH_ADD_STR(c->hosts, key, h);
	return h;
}

static void cmd_drop(struct host_ctl *h, int i)
{
	free(h->cmds[i].packed);
	h->cmds[i] = h->cmds[h->ncmds - 1];
	memset(&h->cmds[h->ncmds - 1], 0, sizeof(h->cmds[0]));
	h->ncmds--;
}

/* host_maybe_free frees h when it holds nothing. */
static void host_maybe_free(struct agg_control *c, struct host_ctl *h)
{
	if (h->ncmds == 0 && !h->held) {
		HASH_DEL(c->hosts, h);
		free(h);
	}
}

/* send_reply answers the poll msg (its header routes the reply); takes
 * ownership of msg. The commands are h's pending ones (h may be NULL). */
static void send_reply(struct agg_control *c, nng_msg *msg, struct host_ctl *h, const char *error)
{
	Spikehound__ControlReply rep = SPIKEHOUND__CONTROL_REPLY__INIT;
	Spikehound__Command *cmds[MAX_PENDING_PER_HOST];
	size_t n = 0, len;
	int64_t now = sh_now_wall_ns();

	for (int i = 0; h && i < h->ncmds; i++) {
		cmds[n] = spikehound__command__unpack(NULL, h->cmds[i].len, h->cmds[i].packed);
		if (cmds[n])
			n++;
	}
	rep.commands = cmds;
	rep.n_commands = n;
	rep.received_ns = now;
	rep.error = (char *)(error ? error : "");
	len = spikehound__control_reply__get_packed_size(&rep);
	nng_msg_clear(msg);
	if (nng_msg_realloc(msg, len) != 0) {
		nng_msg_free(msg);
		c->send_failures++;
	} else {
		spikehound__control_reply__pack(&rep, nng_msg_body(msg));
		if (nng_sendmsg(c->sock, msg, NNG_FLAG_NONBLOCK) != 0) {
			/* the agent went away; it polls again and gets them then */
			nng_msg_free(msg);
			c->send_failures++;
		} else {
			c->commands_sent += n;
			if (n == 0)
				c->polls_answered_empty++;
		}
	}
	for (size_t i = 0; i < n; i++)
		spikehound__command__free_unpacked(cmds[i], NULL);
}

static void expire_cmds(struct agg_control *c, struct host_ctl *h, int64_t now)
{
	for (int i = h->ncmds - 1; i >= 0; i--) {
		if (h->cmds[i].expires_ns > 0 && h->cmds[i].expires_ns < now) {
			cmd_drop(h, i);
			c->expired++;
		}
	}
}

static void apply_statuses(struct agg_control *c, struct host_ctl *h, const char *key,
			   Spikehound__ControlPoll *poll)
{
	for (size_t i = 0; i < poll->n_statuses; i++) {
		Spikehound__CommandStatus *st = poll->statuses[i];

		if (!st->command_id || strlen(st->command_id) > MAX_ID_LEN)
			continue;
		agg_sanitize_utf8(st->command_id);
		if (st->status)
			agg_sanitize_utf8(st->status);
		if (st->reason) {
			agg_sanitize_utf8(st->reason);
			if (strlen(st->reason) > 512)
				st->reason[512] = '\0';
		}
		c->statuses++;
		/* any status means the agent has the command: stop repeating it */
		for (int k = 0; h && k < h->ncmds; k++) {
			if (strcmp(h->cmds[k].id, st->command_id) == 0) {
				cmd_drop(h, k);
				break;
			}
		}
		if (c->opts.status_cb)
			c->opts.status_cb(c->opts.status_arg, key, st);
	}
}

static void handle_poll(struct agg_control *c, nng_msg *msg)
{
	Spikehound__ControlPoll *poll;
	struct host_ctl *h;
	char key[HOST_KEY_LEN];
	int64_t now = sh_now_wall_ns(), wait;

	c->polls++;
	if (nng_msg_len(msg) > c->opts.max_poll_bytes) {
		c->refused++;
		send_reply(c, msg, NULL, "oversized");
		return;
	}
	poll = spikehound__control_poll__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	if (!poll) {
		c->refused++;
		send_reply(c, msg, NULL, "malformed");
		return;
	}
	if (!poll->hello || !poll->hello->host_id || !agg_is_uuid(poll->hello->host_id) ||
	    poll->n_statuses > MAX_STATUSES) {
		c->refused++;
		send_reply(c, msg, NULL, !poll->hello ? "no_hello" : "bad_poll");
		spikehound__control_poll__free_unpacked(poll, NULL);
		return;
	}
	host_key(poll->hello->host_id, key);
	h = host_get(c, key, false);
	apply_statuses(c, h, key, poll);
	if (h)
		expire_cmds(c, h, now);
	if (h && h->held) {
		/* the agent restarted or gave up on its earlier poll */
		send_reply(c, h->held, NULL, NULL);
		h->held = NULL;
	}
	if (h && h->ncmds > 0) {
		send_reply(c, msg, h, NULL);
	} else if (!c->stopping && poll->wait_ms > 0 && (h || (h = host_get(c, key, true)))) {
		wait = (int64_t)poll->wait_ms * 1000000;
		if (wait > c->opts.max_wait_ns)
			wait = c->opts.max_wait_ns;
		h->held = msg;
		h->deadline_ns = now + wait;
		c->polls_held++;
	} else {
		send_reply(c, msg, NULL, NULL);
	}
	if (h)
		host_maybe_free(c, h);
	spikehound__control_poll__free_unpacked(poll, NULL);
}

static void recv_cb(uv_poll_t *p, int status, int events)
{
	struct agg_control *c = p->data;

	(void)status;
	(void)events;
	for (int n = 0; n < 256 && !c->stopping; n++) {
		nng_msg *msg;
		int rv = nng_recvmsg(c->sock, &msg, NNG_FLAG_NONBLOCK);

		if (rv == NNG_EAGAIN)
			break;
		if (rv != 0) {
			sh_warn("control: receive failed: %s", nng_strerror(rv));
			break;
		}
		handle_poll(c, msg);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct agg_control *c = t->data;
	struct host_ctl *h, *tmp;
	int64_t now = sh_now_wall_ns();

	HASH_ITER(hh, c->hosts, h, tmp) {
		expire_cmds(c, h, now);
		if (h->held && (h->ncmds > 0 || h->deadline_ns <= now)) {
			send_reply(c, h->held, h, NULL);
			h->held = NULL;
		}
		host_maybe_free(c, h);
	}
}

void agg_control_set_status_cb(struct agg_control *c, agg_control_status_fn cb, void *arg)
{
	c->opts.status_cb = cb;
	c->opts.status_arg = arg;
}

int agg_control_push(struct agg_control *c, const char *host_id, const Spikehound__Command *cmd)
{
	char key[HOST_KEY_LEN];
	struct host_ctl *h;
	struct pending_cmd *pc = NULL;
	size_t len;

	if (!host_id || !agg_is_uuid(host_id) || !cmd->command_id || !cmd->command_id[0] ||
	    strlen(cmd->command_id) > MAX_ID_LEN)
		return -EINVAL;
	host_key(host_id, key);
	if (!(h = host_get(c, key, true)))
		return -ENOMEM;
	for (int i = 0; i < h->ncmds; i++)
		if (strcmp(h->cmds[i].id, cmd->command_id) == 0)
			pc = &h->cmds[i];
	if (!pc) {
		if (h->ncmds == MAX_PENDING_PER_HOST)
			cmd_drop(h, 0); /* the oldest gives way */
		pc = &h->cmds[h->ncmds++];
	}
	free(pc->packed);
	len = spikehound__command__get_packed_size(cmd);
	pc->packed = malloc(len ? len : 1);
	if (!pc->packed) {
		cmd_drop(h, (int)(pc - h->cmds));
		host_maybe_free(c, h);
		return -ENOMEM;
	}
	spikehound__command__pack(cmd, pc->packed);
	pc->len = len;
	pc->expires_ns = cmd->expires_ns;
	snprintf(pc->id, sizeof(pc->id), "%s", cmd->command_id);
	c->pushed++;
	if (h->held) {
		send_reply(c, h->held, h, NULL);
		h->held = NULL;
	}
	return 0;
}

void agg_control_cancel(struct agg_control *c, const char *host_id, const char *command_id)
{
	char key[HOST_KEY_LEN];
	struct host_ctl *h;

	host_key(host_id, key);
	if (!(h = host_get(c, key, false)))
		return;
	for (int i = 0; i < h->ncmds; i++) {
		if (strcmp(h->cmds[i].id, command_id) == 0) {
			cmd_drop(h, i);
			break;
		}
	}
	host_maybe_free(c, h);
}

int agg_control_connected(struct agg_control *c, const char *host_id)
{
	char key[HOST_KEY_LEN];
	struct host_ctl *h;

	host_key(host_id, key);
	h = host_get(c, key, false);
	return h && h->held;
}

int agg_control_start(uv_loop_t *loop, const struct agg_control_opts *o, struct agg_control **out)
{
	struct agg_control *c;
	int fd, rv, err;
	char tls_err[300];

	if (!o->listen_url || !o->listen_url[0])
		return -EINVAL;
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->loop = loop;
	c->opts = *o;
	c->opts.listen_url = NULL; /* borrowed for the call only */
	if (c->opts.max_wait_ns <= 0)
		c->opts.max_wait_ns = 25 * SH_NS_PER_SEC;
	if (c->opts.max_poll_bytes == 0)
		c->opts.max_poll_bytes = 64 << 10;
	if ((rv = nng_rep0_open_raw(&c->sock)) != 0) {
		sh_err("control: could not open socket: %s", nng_strerror(rv));
		err = -EIO;
		goto cleanup;
	}
	c->sock_open = true;
	nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, c->opts.max_poll_bytes * 2);
	nng_socket_set_int(c->sock, NNG_OPT_RECVBUF, 1024);
	nng_socket_set_int(c->sock, NNG_OPT_SENDBUF, 1024);
	if ((rv = sh_tls_listen(c->sock, o->listen_url, o->tls, tls_err, sizeof(tls_err))) != 0) {
		sh_err("control: could not listen on \"%s\": %s", o->listen_url, tls_err);
		err = rv == NNG_EADDRINUSE ? -EADDRINUSE : -EINVAL;
		goto cleanup;
	}
	if ((rv = nng_socket_get_int(c->sock, NNG_OPT_RECVFD, &fd)) != 0) {
		sh_err("control: no pollable receive descriptor: %s", nng_strerror(rv));
		err = -EIO;
		goto cleanup;
	}
	uv_poll_init(loop, &c->recv_poll, fd);
	c->recv_poll.data = c;
	uv_poll_start(&c->recv_poll, UV_READABLE, recv_cb);
	uv_timer_init(loop, &c->tick);
	c->tick.data = c;
	uv_timer_start(&c->tick, tick_cb, TICK_MS, TICK_MS);
	c->open_handles = 2;
	sh_info("control: listening on %s", o->listen_url);
	*out = c;
	return 0;
cleanup:
	if (c->sock_open)
		nng_close(c->sock);
	free(c);
	return err;
}

static void closed_cb(uv_handle_t *hd)
{
	struct agg_control *c = hd->data;
	void (*done)(void *) = c->done_cb;
	void *arg = c->done_arg;
	struct host_ctl *h, *tmp;

	if (--c->open_handles > 0)
		return;
	HASH_ITER(hh, c->hosts, h, tmp) {
		while (h->ncmds > 0)
			cmd_drop(h, h->ncmds - 1);
		HASH_DEL(c->hosts, h);
		free(h);
	}
	free(c);
	if (done)
		done(arg);
}

void agg_control_stop(struct agg_control *c, void (*done_cb)(void *arg), void *arg)
{
	struct host_ctl *h, *tmp;

	c->stopping = true;
	c->done_cb = done_cb;
	c->done_arg = arg;
	HASH_ITER(hh, c->hosts, h, tmp) {
		if (h->held) {
			send_reply(c, h->held, NULL, NULL);
			h->held = NULL;
		}
	}
	uv_poll_stop(&c->recv_poll);
	uv_timer_stop(&c->tick);
	/* close the socket after the last send: nng flushes queued replies
	 * best-effort; agents poll again after a restart anyway */
	nng_close(c->sock);
	c->sock_open = false;
	uv_close((uv_handle_t *)&c->recv_poll, closed_cb);
	uv_close((uv_handle_t *)&c->tick, closed_cb);
}

char *agg_control_stats_json(struct agg_control *c)
{
	struct host_ctl *h, *tmp;
	unsigned held = 0, pending = 0;
	char *out = malloc(512);

	if (!out)
		return NULL;
	HASH_ITER(hh, c->hosts, h, tmp) {
		held += h->held != NULL;
		pending += (unsigned)h->ncmds;
	}
	snprintf(out, 512,
		 "{\"polls\":%" PRIu64 ",\"polls_held_now\":%u,\"commands_pending\":%u,"
		 "\"commands_pushed\":%" PRIu64 ",\"commands_sent\":%" PRIu64
		 ",\"commands_expired\":%" PRIu64 ",\"statuses\":%" PRIu64
		 ",\"polls_refused\":%" PRIu64 ",\"send_failures\":%" PRIu64 "}",
		 c->polls, held, pending, c->pushed, c->commands_sent, c->expired, c->statuses,
		 c->refused, c->send_failures);
	return out;
}
