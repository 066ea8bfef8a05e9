/* test_agent_sender.c: the sender thread against a real nng rep0 responder
 * (ipc, in the test thread) that decodes each AgentRequest and answers with
 * scripted Acks: in-order exactly-once delivery, RETRY, timeouts with late
 * replies, rejections, partial acks, prompt stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "sender.h"
#include "spikehound.pb-c.h"
#include "spool.h"

#define BOOT "6c3b9a1e-5f0d-4e2a-9b7c-0123456789ab"
#define SEC_NS 1000000000LL

struct fixture {
	char dir[64];
	char url[128];
	char *addrs[1];
	struct agent_spool *sp;
	nng_socket rep;
	struct agent_sender *snd;
	struct agent_sender_opts opts;
	uint64_t last_seq; /* the sender sends whatever seqs it finds: 1, 2, ... here */
};

static Spikehound__Hello__LabelsEntry label = SPIKEHOUND__HELLO__LABELS_ENTRY__INIT;
static Spikehound__Hello__LabelsEntry *labels[1] = { &label };

/* fill_hello runs on the sender thread: no asserts here. */
static void fill_hello(void *arg, Spikehound__Hello *h)
{
	h->host_id = arg;
	h->hostname = "testbox";
	h->boot_id = BOOT;
	h->n_labels = 1;
	h->labels = labels;
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SEC_NS + ts.tv_nsec;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
	static int n;
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/sh-test-sender-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->url, sizeof(f->url), "ipc:///tmp/sh-test-sender-%d-%d.ipc", (int)getpid(),
		 n++);
	if (agent_spool_open(f->dir, 16 << 20, false, &f->sp) != 0)
		return -1;
	if (nng_rep0_open(&f->rep) != 0 || nng_socket_set_ms(f->rep, NNG_OPT_RECVTIMEO, 5000) != 0 ||
	    nng_listen(f->rep, f->url, NULL, 0) != 0)
		return -1;
	label.key = "rack";
	label.value = "r1";
	f->addrs[0] = f->url;
	f->opts = (struct agent_sender_opts){
		.addrs = f->addrs,
		.n_addrs = 1,
		.spool = f->sp,
		.fill_hello = fill_hello,
		.hello_arg = "testhost",
		.reply_timeout_ms = 300,
		.backoff_min_ms = 10,
		.backoff_max_ms = 50,
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[512];
	struct dirent *de;
	DIR *d;

	agent_sender_stop(f->snd);
	nng_close(f->rep);
	agent_spool_close(f->sp);
	d = opendir(f->dir);
	if (d) {
		while ((de = readdir(d)) != NULL) {
			snprintf(path, sizeof(path), "%s/%s", f->dir, de->d_name);
			if (de->d_name[0] != '.')
				unlink(path);
		}
		closedir(d);
	}
	rmdir(f->dir);
	unlink(f->url + strlen("ipc://"));
	free(f);
	return 0;
}

/* spool_msg appends one event message (seq from the spool) and returns seq. */
static uint64_t spool_msg(struct fixture *f)
{
	Spikehound__AgentMessage m = SPIKEHOUND__AGENT_MESSAGE__INIT;
	Spikehound__SpikeEvent ev = SPIKEHOUND__SPIKE_EVENT__INIT;
	uint8_t buf[256];
	char detail[32];
	uint64_t seq;
	size_t len;

	seq = ++f->last_seq;
	snprintf(detail, sizeof(detail), "event %llu", (unsigned long long)seq);
	ev.kind = "runq";
	ev.detail = detail;
	ev.duration_ns = (int64_t)seq * 1000;
	m.host_id = "testhost";
	m.boot_id = BOOT;
	m.seq = seq;
	m.created_ns = wall_ns();
	m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
	m.event = &ev;
	len = spikehound__agent_message__get_packed_size(&m);
	assert_true(len <= sizeof(buf));
	spikehound__agent_message__pack(&m, buf);
	assert_int_equal(agent_spool_append(f->sp, AGENT_SPOOL_EVENT, BOOT, seq, buf, len), 0);
	return seq;
}

static void start(struct fixture *f)
{
	assert_int_equal(agent_sender_start(&f->snd, &f->opts), 0);
}

/* check_req checks a decoded request: the Hello, and messages with seqs
 * first, first+1, ... (n of them) carrying what spool_msg put in. */
static void check_req(const Spikehound__AgentRequest *req, uint64_t first, size_t n)
{
	char detail[32];

	assert_non_null(req->hello);
	assert_string_equal(req->hello->host_id, "testhost");
	assert_string_equal(req->hello->boot_id, BOOT);
	assert_int_equal(req->hello->n_labels, 1);
	assert_string_equal(req->hello->labels[0]->key, "rack");
	assert_true(req->hello->sent_at_ns > wall_ns() - 60 * SEC_NS);
	assert_int_equal(req->n_messages, n);
	for (size_t i = 0; i < n; i++) {
		const Spikehound__AgentMessage *m = req->messages[i];

		assert_true(m->seq == first + i);
		assert_string_equal(m->boot_id, BOOT);
		assert_int_equal(m->body_case, SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT);
		snprintf(detail, sizeof(detail), "event %llu", (unsigned long long)m->seq);
		assert_string_equal(m->event->detail, detail);
		assert_true(m->event->duration_ns == (int64_t)m->seq * 1000);
	}
}

static Spikehound__AgentRequest *decode_req(nng_msg *msg)
{
	Spikehound__AgentRequest *req;

	req = spikehound__agent_request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	assert_non_null(req);
	return req;
}

static Spikehound__AgentRequest *recv_req(struct fixture *f)
{
	nng_msg *msg;

	assert_int_equal(nng_recvmsg(f->rep, &msg, 0), 0);
	return decode_req(msg);
}

/* make_ack answers req with status; the first n_items messages get an item,
 * stored unless reject names a reason for the seq (NULL reject: all
 * stored). */
static nng_msg *make_ack(const Spikehound__AgentRequest *req, int status, size_t n_items,
			 const char *(*reject)(uint64_t seq), int64_t received_ns)
{
	Spikehound__Ack ack = SPIKEHOUND__ACK__INIT;
	Spikehound__Ack__Item items[128], *pitems[128];
	nng_msg *msg;

	assert_true(n_items <= 128 && n_items <= req->n_messages);
	for (size_t i = 0; i < n_items; i++) {
		const char *reason = reject ? reject(req->messages[i]->seq) : NULL;

		spikehound__ack__item__init(&items[i]);
		items[i].boot_id = req->messages[i]->boot_id;
		items[i].seq = req->messages[i]->seq;
		items[i].stored = reason == NULL;
		if (reason)
			items[i].rejected = (char *)reason;
		pitems[i] = &items[i];
	}
	ack.status = status;
	ack.reason = status == SPIKEHOUND__ACK__STATUS__OK ? "" : "database unavailable";
	ack.n_items = n_items;
	ack.items = pitems;
	ack.received_ns = received_ns;
	assert_int_equal(nng_msg_alloc(&msg, spikehound__ack__get_packed_size(&ack)), 0);
	spikehound__ack__pack(&ack, nng_msg_body(msg));
	return msg;
}

static void reply(struct fixture *f, nng_msg *msg)
{
	assert_int_equal(nng_sendmsg(f->rep, msg, 0), 0);
}

static void wait_spool_empty(struct fixture *f)
{
	int64_t deadline = mono_ms() + 5000;

	while (agent_spool_count(f->sp) > 0 && mono_ms() < deadline)
		usleep(2000);
	assert_int_equal(agent_spool_count(f->sp), 0);
}

static void test_delivers_in_order_once(void **state)
{
	struct fixture *f = *state;
	struct agent_sender_stats st;
	uint64_t next = 1, total = 150;
	int64_t skew, rtt;
	int requests = 0;

	for (uint64_t i = 0; i < total; i++)
		spool_msg(f);
	start(f);
	while (next <= total) {
		Spikehound__AgentRequest *req = recv_req(f);

		assert_true(req->n_messages >= 1 && req->n_messages <= 64);
		check_req(req, next, req->n_messages);
		next += req->n_messages;
		/* The aggregator's clock is 5 s ahead of ours. */
		reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__OK, req->n_messages, NULL,
				  wall_ns() + 5 * SEC_NS));
		spikehound__agent_request__free_unpacked(req, NULL);
		/* More arrive while the sender runs. */
		if (++requests == 1) {
			for (int i = 0; i < 30; i++)
				spool_msg(f);
			total += 30;
		}
	}
	wait_spool_empty(f);
	/* Nothing is sent twice. */
	{
		nng_msg *msg;

		assert_int_equal(nng_socket_set_ms(f->rep, NNG_OPT_RECVTIMEO, 200), 0);
		assert_int_equal(nng_recvmsg(f->rep, &msg, 0), NNG_ETIMEDOUT);
	}
	agent_sender_get_stats(f->snd, &st);
	assert_true(st.sent == 180);
	assert_true(st.acked == 180);
	assert_true(st.requests == (uint64_t)requests);
	assert_true(st.requests >= 3);
	assert_true(st.rejected == 0 && st.retries == 0 && st.timeouts == 0);
	assert_int_equal(st.last_error, 0);
	assert_int_equal(agent_sender_clock_skew(f->snd, &skew, &rtt), 0);
	assert_true(rtt >= 0 && rtt < SEC_NS);
	assert_true(skew > 5 * SEC_NS - SEC_NS / 2 && skew < 5 * SEC_NS + SEC_NS / 2);
}

static void test_retry_resends_same_batch(void **state)
{
	struct fixture *f = *state;
	struct agent_sender_stats st;
	Spikehound__AgentRequest *req;
	nng_msg *garbage;
	int64_t skew;

	for (int i = 0; i < 10; i++)
		spool_msg(f);
	f->opts.max_msgs = 4;
	start(f);
	assert_int_equal(agent_sender_clock_skew(f->snd, &skew, NULL), -EAGAIN);

	req = recv_req(f);
	check_req(req, 1, 4);
	reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__RETRY, 0, NULL, 0));
	spikehound__agent_request__free_unpacked(req, NULL);

	/* The same batch again; this time the reply is not an Ack at all. */
	req = recv_req(f);
	check_req(req, 1, 4);
	spikehound__agent_request__free_unpacked(req, NULL);
	assert_int_equal(nng_msg_alloc(&garbage, 0), 0);
	assert_int_equal(nng_msg_append(garbage, "\xff\xff\xff", 3), 0);
	reply(f, garbage);

	/* The aggregator said "retry", so once more; then the rest. */
	for (uint64_t first = 1; first <= 10; first += 4) {
		req = recv_req(f);
		check_req(req, first, first + 4 <= 11 ? 4 : 11 - first);
		reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__OK, req->n_messages, NULL, 0));
		spikehound__agent_request__free_unpacked(req, NULL);
	}
	wait_spool_empty(f);
	agent_sender_get_stats(f->snd, &st);
	assert_true(st.retries == 2);
	assert_true(st.timeouts == 0);
	assert_true(st.requests == 5);
	assert_true(st.sent == 18);
	assert_true(st.acked == 10);
	assert_int_equal(st.last_error, -EBADMSG);
	assert_true(st.last_error_msg[0] != '\0');
}

static const char *reject_all(uint64_t seq)
{
	return "stale";
}

static Spikehound__AgentRequest *ctx_recv(nng_ctx ctx, nng_aio *aio)
{
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	assert_int_equal(nng_aio_result(aio), 0);
	return decode_req(nng_aio_get_msg(aio));
}

static void ctx_send(nng_ctx ctx, nng_aio *aio, nng_msg *msg)
{
	nng_aio_set_msg(aio, msg);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	assert_int_equal(nng_aio_result(aio), 0);
}

static void test_timeout_then_late_answer(void **state)
{
	struct fixture *f = *state;
	struct agent_sender_stats st;
	Spikehound__AgentRequest *a, *b;
	nng_ctx c1, c2;
	nng_aio *aio;
	int64_t t0;

	for (int i = 0; i < 10; i++)
		spool_msg(f);
	f->opts.reply_timeout_ms = 400;
	assert_int_equal(nng_aio_alloc(&aio, NULL, NULL), 0);
	nng_aio_set_timeout(aio, 5000);
	assert_int_equal(nng_ctx_open(&c1, f->rep), 0);
	assert_int_equal(nng_ctx_open(&c2, f->rep), 0);
	start(f);

	/* The first request gets no answer in time... */
	a = ctx_recv(c1, aio);
	check_req(a, 1, 10);
	t0 = mono_ms();
	b = ctx_recv(c2, aio);
	assert_true(mono_ms() - t0 >= 300);
	check_req(b, 1, 10);
	/* ...then a late answer to it (which would reject everything) arrives
	 * before the answer to the resend: the sender must ignore it. */
	ctx_send(c1, aio, make_ack(a, SPIKEHOUND__ACK__STATUS__OK, a->n_messages, reject_all, 0));
	ctx_send(c2, aio, make_ack(b, SPIKEHOUND__ACK__STATUS__OK, b->n_messages, NULL, 0));
	spikehound__agent_request__free_unpacked(a, NULL);
	spikehound__agent_request__free_unpacked(b, NULL);

	wait_spool_empty(f);
	agent_sender_get_stats(f->snd, &st);
	assert_true(st.acked == 10);
	assert_true(st.rejected == 0);
	assert_true(st.timeouts == 1 && st.retries == 1);
	assert_true(st.requests == 2);
	assert_int_equal(st.last_error, -ETIMEDOUT);

	/* And the aggregator being away for a while loses nothing either. */
	nng_close(f->rep);
	for (int i = 0; i < 5; i++)
		spool_msg(f);
	usleep(100 * 1000);
	assert_int_equal(agent_spool_count(f->sp), 5);
	assert_int_equal(nng_rep0_open(&f->rep), 0);
	/* nng redials with its own back-off (at most 5 s). */
	assert_int_equal(nng_socket_set_ms(f->rep, NNG_OPT_RECVTIMEO, 8000), 0);
	assert_int_equal(nng_listen(f->rep, f->url, NULL, 0), 0);
	{
		uint64_t next = 11;

		while (next <= 15) {
			Spikehound__AgentRequest *req = recv_req(f);

			assert_true(req->n_messages >= 1 && req->messages[0]->seq == next);
			check_req(req, next, req->n_messages);
			next += req->n_messages;
			reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__OK, req->n_messages, NULL,
					  0));
			spikehound__agent_request__free_unpacked(req, NULL);
		}
	}
	wait_spool_empty(f);
	agent_sender_get_stats(f->snd, &st);
	assert_true(st.acked == 15);
	nng_aio_free(aio);
}

static const char *reject_some(uint64_t seq)
{
	if (seq == 3 || seq == 8)
		return "bad kind";
	if (seq == 5)
		return "too old";
	return NULL;
}

static void test_rejected_and_partial(void **state)
{
	struct fixture *f = *state;
	struct agent_sender_stats st;
	Spikehound__AgentRequest *req;
	nng_msg *msg;

	for (int i = 0; i < 10; i++)
		spool_msg(f);
	start(f);

	/* The request as a whole is refused: nothing is dropped, it comes again. */
	req = recv_req(f);
	check_req(req, 1, 10);
	reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__REJECTED, 0, NULL, 0));
	spikehound__agent_request__free_unpacked(req, NULL);

	/* Items only for the first five (two rejected); 6..10 must come again. */
	req = recv_req(f);
	check_req(req, 1, 10);
	reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__OK, 5, reject_some, 0));
	spikehound__agent_request__free_unpacked(req, NULL);

	req = recv_req(f);
	check_req(req, 6, 5);
	/* An item for something not in the request is ignored. */
	req->messages[0]->seq = 999;
	msg = make_ack(req, SPIKEHOUND__ACK__STATUS__OK, 5, reject_some, 0);
	reply(f, msg);
	spikehound__agent_request__free_unpacked(req, NULL);

	req = recv_req(f);
	check_req(req, 6, 1);
	reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__OK, 1, NULL, 0));
	spikehound__agent_request__free_unpacked(req, NULL);

	wait_spool_empty(f);
	agent_sender_get_stats(f->snd, &st);
	assert_true(st.acked == 7);
	assert_true(st.rejected == 3);
	assert_true(st.retries == 1);
	assert_int_equal(st.n_reasons, 2);
	assert_string_equal(st.reasons[0].reason, "bad kind");
	assert_true(st.reasons[0].count == 2);
	assert_string_equal(st.reasons[1].reason, "too old");
	assert_true(st.reasons[1].count == 1);
	assert_int_equal(st.last_error, -EPROTO);
}

static void test_stop_is_prompt(void **state)
{
	struct fixture *f = *state;
	Spikehound__AgentRequest *req;
	char url[160], *addrs[1] = { url };
	int64_t t0;

	/* Idle, waiting for the spool. */
	f->opts.reply_timeout_ms = 10000;
	f->opts.backoff_min_ms = 5000;
	start(f);
	usleep(50 * 1000);
	t0 = mono_ms();
	agent_sender_stop(f->snd);
	f->snd = NULL;
	assert_true(mono_ms() - t0 < 1000);

	/* Waiting for a reply that does not come. */
	spool_msg(f);
	start(f);
	req = recv_req(f);
	check_req(req, 1, 1);
	spikehound__agent_request__free_unpacked(req, NULL);
	t0 = mono_ms();
	agent_sender_stop(f->snd);
	f->snd = NULL;
	assert_true(mono_ms() - t0 < 1000);
	assert_int_equal(agent_spool_count(f->sp), 1);

	/* Sending with no aggregator listening at all. */
	snprintf(url, sizeof(url), "%s-nobody", f->url);
	f->opts.addrs = addrs;
	start(f);
	usleep(100 * 1000);
	t0 = mono_ms();
	agent_sender_stop(f->snd);
	f->snd = NULL;
	assert_true(mono_ms() - t0 < 1000);

	/* In the middle of a back-off. */
	f->opts.addrs = f->addrs;
	start(f);
	req = recv_req(f);
	reply(f, make_ack(req, SPIKEHOUND__ACK__STATUS__RETRY, 0, NULL, 0));
	spikehound__agent_request__free_unpacked(req, NULL);
	usleep(100 * 1000);
	t0 = mono_ms();
	agent_sender_stop(f->snd);
	f->snd = NULL;
	assert_true(mono_ms() - t0 < 1000);
	assert_int_equal(agent_spool_count(f->sp), 1);
}

static void test_bad_options(void **state)
{
	struct fixture *f = *state;
	struct agent_sender_opts o = f->opts;
	char *bad[1] = { "nosuchscheme://x" };
	struct agent_sender *s = NULL;

	o.n_addrs = 0;
	assert_int_equal(agent_sender_start(&s, &o), -EINVAL);
	assert_null(s);
	o = f->opts;
	o.spool = NULL;
	assert_int_equal(agent_sender_start(&s, &o), -EINVAL);
	o = f->opts;
	o.addrs = bad;
	assert_int_equal(agent_sender_start(&s, &o), -EINVAL);
	assert_int_equal(agent_sender_start(NULL, &o), -EINVAL);
	agent_sender_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_delivers_in_order_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_resends_same_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_then_late_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rejected_and_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_is_prompt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
