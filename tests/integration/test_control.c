/* test_control.c: the control plane over real nng sockets: the
 * aggregator's long-poll server (aggregator/control.c) on a libuv loop and
 * the agent's poller thread (node-agent/control.c). A pushed command
 * reaches a waiting agent at once, is handed over once even when repeated,
 * its statuses come back, expired commands are refused, and hostile polls
 * get an error answer without disturbing a good agent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "control.h"   /* the aggregator's side */
#include "ctlclient.h" /* the agent's side */
#include "timeutil.h"

#define HOST "0123456789abcdef0123456789abcdef"

struct state {
	uv_loop_t loop;
	struct agg_control *ctl;
	char url[64];
	/* seen by the agent thread */
	atomic_int commands;
	atomic_llong first_cmd_ns;
	char last_cmd[80];
	/* seen by the loop */
	int statuses;
	char last_status[32], last_status_id[80];
};

static void fill_hello(void *arg, Spikehound__Hello *h)
{
	(void)arg;
	h->host_id = HOST;
	h->hostname = "test-host";
}

static void on_command(void *arg, const Spikehound__Command *cmd)
{
	struct state *s = arg;

	snprintf(s->last_cmd, sizeof(s->last_cmd), "%s", cmd->command_id);
	if (atomic_fetch_add(&s->commands, 1) == 0)
		atomic_store(&s->first_cmd_ns, sh_now_wall_ns());
}

static void status_cb(void *arg, const char *host_id, const Spikehound__CommandStatus *st)
{
	struct state *s = arg;

	assert_string_equal(host_id, HOST);
	s->statuses++;
	snprintf(s->last_status, sizeof(s->last_status), "%s", st->status);
	snprintf(s->last_status_id, sizeof(s->last_status_id), "%s", st->command_id);
}

/* run_until runs the loop until cond(s) or timeout; returns cond's value. */
static int run_until(struct state *s, int (*cond)(struct state *), int64_t timeout_ns)
{
	int64_t end = sh_now_wall_ns() + timeout_ns;

	while (!cond(s) && sh_now_wall_ns() < end)
		uv_run(&s->loop, UV_RUN_NOWAIT), nng_msleep(5);
	return cond(s);
}

static int held(struct state *s)
{
	return agg_control_connected(s->ctl, HOST);
}
static int got_accepted(struct state *s)
{
	return s->statuses > 0 && strcmp(s->last_status, "accepted") == 0;
}
static int got_done(struct state *s)
{
	return strcmp(s->last_status, "done") == 0;
}
static int got_expired(struct state *s)
{
	return strcmp(s->last_status, "expired") == 0;
}

static void stopped_cb(void *arg)
{
	*(int *)arg = 1;
}

static void push(struct state *s, const char *id, int64_t expires_ns)
{
	Spikehound__Command cmd = SPIKEHOUND__COMMAND__INIT;
	Spikehound__CaptureRequest req = SPIKEHOUND__CAPTURE_REQUEST__INIT;

	req.capture_id = (char *)id;
	req.from_ns = sh_now_wall_ns() - 30 * SH_NS_PER_SEC;
	req.to_ns = sh_now_wall_ns();
	cmd.command_id = (char *)id;
	cmd.expires_ns = expires_ns;
	cmd.capture = &req;
	assert_int_equal(agg_control_push(s->ctl, HOST, &cmd), 0);
}

static void aio_done_cb(void *arg)
{
	atomic_store((atomic_int *)arg, 1);
}

/* hostile sends raw bytes as a poll and returns the reply's error text. */
static void hostile(struct state *s, const void *data, size_t len, const char *want)
{
	nng_socket sock;
	nng_msg *msg;
	Spikehound__ControlReply *rep = NULL;
	nng_aio *aio;
	atomic_int done = 0;

	assert_int_equal(nng_req0_open(&sock), 0);
	assert_int_equal(nng_dial(sock, s->url, NULL, 0), 0);
	assert_int_equal(nng_msg_alloc(&msg, len), 0);
	memcpy(nng_msg_body(msg), data, len);
	assert_int_equal(nng_sendmsg(sock, msg, 0), 0);
	/* receive asynchronously while the loop serves the request */
	assert_int_equal(nng_aio_alloc(&aio, aio_done_cb, &done), 0);
	nng_aio_set_timeout(aio, 5000);
	nng_recv_aio(sock, aio);
	while (!atomic_load(&done)) {
		uv_run(&s->loop, UV_RUN_NOWAIT);
		nng_msleep(2);
	}
	if (nng_aio_result(aio) == 0) {
		msg = nng_aio_get_msg(aio);
		rep = spikehound__control_reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
		nng_msg_free(msg);
	}
	nng_aio_free(aio);
	assert_non_null(rep);
	assert_string_equal(rep->error, want);
	assert_int_equal(rep->n_commands, 0);
	spikehound__control_reply__free_unpacked(rep, NULL);
	nng_close(sock);
}

static void test_control_roundtrip(void **unused)
{
	struct state *s = calloc(1, sizeof(*s));
	struct agg_control_opts co = { 0 };
	struct agent_control_opts ao = { 0 };
	struct agent_control *agent = NULL;
	int port = 20000 + (int)(getpid() % 20000), stopped = 0;
	int64_t pushed_ns;
	uint8_t junk[64];

	(void)unused;
	assert_int_equal(uv_loop_init(&s->loop), 0);
	snprintf(s->url, sizeof(s->url), "tcp://127.0.0.1:%d", port);
	co.listen_url = s->url;
	co.status_cb = status_cb;
	co.status_arg = s;
	co.max_wait_ns = 2 * SH_NS_PER_SEC;
	assert_int_equal(agg_control_start(&s->loop, &co, &s->ctl), 0);

	ao.url = s->url;
	ao.fill_hello = fill_hello;
	ao.on_command = on_command;
	ao.cmd_arg = s;
	ao.wait_ms = 20000;
	ao.retry_ms = 100;
	assert_int_equal(agent_control_start(&agent, &ao), 0);

	/* the agent's poll is held, then a command reaches it at once */
	assert_true(run_until(s, held, 5 * SH_NS_PER_SEC));
	pushed_ns = sh_now_wall_ns();
	push(s, "11111111-1111-4111-8111-111111111111", pushed_ns + 60 * SH_NS_PER_SEC);
	assert_true(run_until(s, got_accepted, 5 * SH_NS_PER_SEC));
	assert_int_equal(atomic_load(&s->commands), 1);
	printf("command delivered %.1f ms after the push\n",
	       (double)(atomic_load(&s->first_cmd_ns) - pushed_ns) / 1e6);
	assert_true(atomic_load(&s->first_cmd_ns) - pushed_ns < 500 * SH_NS_PER_MS);
	assert_string_equal(s->last_cmd, "11111111-1111-4111-8111-111111111111");

	/* the same id again: not handed over twice, the status is repeated */
	s->statuses = 0;
	push(s, "11111111-1111-4111-8111-111111111111", pushed_ns + 60 * SH_NS_PER_SEC);
	assert_true(run_until(s, got_accepted, 5 * SH_NS_PER_SEC));
	assert_int_equal(atomic_load(&s->commands), 1);

	/* a status reported later wakes the poll and arrives */
	agent_control_report(agent, "11111111-1111-4111-8111-111111111111", "done", "");
	assert_true(run_until(s, got_done, 5 * SH_NS_PER_SEC));

	/* an expired command is dropped, never run */
	push(s, "22222222-2222-4222-8222-222222222222", sh_now_wall_ns() + 1);
	nng_msleep(300);
	run_until(s, got_expired, 300 * SH_NS_PER_MS);
	assert_int_equal(atomic_load(&s->commands), 1);
	{
		char *st = agg_control_stats_json(s->ctl);

		assert_non_null(strstr(st, "\"commands_expired\":1"));
		free(st);
	}

	/* hostile polls get an error answer */
	memset(junk, 0xff, sizeof(junk));
	hostile(s, junk, sizeof(junk), "malformed");
	hostile(s, "", 0, "no_hello");
	{
		Spikehound__ControlPoll p = SPIKEHOUND__CONTROL_POLL__INIT;
		Spikehound__Hello h = SPIKEHOUND__HELLO__INIT;
		uint8_t buf[256];
		size_t n;

		h.host_id = "not-a-host-id";
		p.hello = &h;
		n = spikehound__control_poll__pack(&p, buf);
		hostile(s, buf, n, "bad_poll");
	}
	{
		size_t big = 100 << 10; /* over the 64 KiB limit, under nng's */
		uint8_t *b = calloc(1, big);

		hostile(s, b, big, "oversized");
		free(b);
	}
	/* and the good agent still gets commands */
	push(s, "33333333-3333-4333-8333-333333333333", sh_now_wall_ns() + 60 * SH_NS_PER_SEC);
	s->statuses = 0;
	assert_true(run_until(s, got_accepted, 5 * SH_NS_PER_SEC));
	assert_int_equal(atomic_load(&s->commands), 2);
	assert_string_equal(s->last_status_id, "33333333-3333-4333-8333-333333333333");

	agent_control_stop(agent);
	agg_control_stop(s->ctl, stopped_cb, &stopped);
	while (!stopped)
		uv_run(&s->loop, UV_RUN_ONCE);
	assert_int_equal(uv_loop_close(&s->loop), 0);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
