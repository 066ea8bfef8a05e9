/* test_badinput.c: hostile and broken agent requests against the real
 * aggregator (nng + PostgreSQL): truncated, malformed, oversized and
 * semantically invalid messages are rejected and counted by reason; a
 * well-behaved agent keeps being served; duplicates are stored once;
 * capture chunks that are malformed are refused, and a capture whose chunks
 * were truncated or corrupted is stored as failed with the reason, never as
 * complete; nothing crashes (this test also runs in the ASan+UBSan build). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/http/http.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spikehound.pb-c.h"
#include "support.h"

#define NS 1000000000LL
#define HOST "0badc0de0badc0de0badc0de0badc0de"
#define BOOT "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

static char dsn[1024], logpath[512], dir[256], url[64], http_url[64];
static pid_t agg = -1;
static nng_socket sock;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

struct req {
	Spikehound__AgentRequest r;
	Spikehound__Hello h;
	Spikehound__AgentMessage m[4], *mp[4];
	Spikehound__Summary s[4];
	Spikehound__MetricSecond ms[4], *msp[4];
	Spikehound__SpikeEvent e[4];
	Spikehound__Process p[4], *pp[4];
	Spikehound__CaptureChunk c[4];
};

/* build makes a valid request of n summaries with seqs from seq0. */
static void build(struct req *q, int n, uint64_t seq0)
{
	int64_t now = now_ns();

	memset(q, 0, sizeof(*q));
	spikehound__agent_request__init(&q->r);
	spikehound__hello__init(&q->h);
	q->h.host_id = HOST;
	q->h.boot_id = BOOT;
	q->h.hostname = "badinput-test";
	q->h.kernel_release = "6.18.0-test";
	q->h.cpu_count = 2;
	q->h.boot_time_ns = now - 3600 * NS;
	q->h.sent_at_ns = now;
	q->r.hello = &q->h;
	for (int i = 0; i < n; i++) {
		spikehound__agent_message__init(&q->m[i]);
		spikehound__summary__init(&q->s[i]);
		spikehound__metric_second__init(&q->ms[i]);
		spikehound__process__init(&q->p[i]);
		q->m[i].host_id = HOST;
		q->m[i].boot_id = BOOT;
		q->m[i].seq = seq0 + (uint64_t)i;
		q->m[i].created_ns = now;
		q->m[i].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
		q->m[i].summary = &q->s[i];
		q->s[i].start_ns = now - 10 * NS;
		q->s[i].end_ns = now;
		q->ms[i].time_ns = now - 5 * NS;
		q->ms[i].cpu_sys_pct = 12.5f;
		q->msp[i] = &q->ms[i];
		q->s[i].metrics = &q->msp[i];
		q->s[i].n_metrics = 1;
		q->p[i].pid = 1000 + i;
		q->p[i].ppid = 1;
		q->p[i].comm = "atop";
		q->p[i].cmdline = "atop -R -w /var/log/atop/x 600";
		q->p[i].start_time_ns = now - 60 * NS;
		q->pp[i] = &q->p[i];
		q->s[i].started = &q->pp[i];
		q->s[i].n_started = 1;
		q->mp[i] = &q->m[i];
	}
	q->r.messages = q->mp;
	q->r.n_messages = (size_t)n;
}

/* roundtrip sends len bytes and decodes the Ack (caller frees). */
static Spikehound__Ack *roundtrip(const void *data, size_t len)
{
	nng_msg *msg;
	Spikehound__Ack *ack;

	assert_int_equal(nng_msg_alloc(&msg, len), 0);
	memcpy(nng_msg_body(msg), data, len);
	assert_int_equal(nng_sendmsg(sock, msg, 0), 0);
	assert_int_equal(nng_recvmsg(sock, &msg, 0), 0);
	ack = spikehound__ack__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	assert_non_null(ack);
	return ack;
}

static Spikehound__Ack *send_req(struct req *q)
{
	size_t len = spikehound__agent_request__get_packed_size(&q->r);
	uint8_t *buf = malloc(len);
	Spikehound__Ack *ack;

	spikehound__agent_request__pack(&q->r, buf);
	ack = roundtrip(buf, len);
	free(buf);
	return ack;
}

static void expect_rejected(Spikehound__Ack *ack, const char *reason)
{
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__REJECTED);
	assert_string_equal(ack->reason, reason);
	spikehound__ack__free_unpacked(ack, NULL);
}

static int setup(void **state)
{
	int rv = sht_fresh_db("badinput", dsn, sizeof(dsn));
	char listen[64];

	if (rv == SHT_SKIP)
		exit(SHT_SKIP);
	if (rv != 0 || sht_mkdtemp("sh-badinput-", dir, sizeof(dir)) != 0)
		return -1;
	snprintf(logpath, sizeof(logpath), "%s/aggregator.log", dir);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", sht_free_port());
	snprintf(http_url, sizeof(http_url), "http://127.0.0.1:%d", sht_free_port());
	snprintf(listen, sizeof(listen), "%s", url);
	{
		char *argv[] = { SH_AGG_BIN, "--db", dsn, "--listen", listen, "--http", http_url,
				 "--data-dir", dir, "--stats-interval", "1s", NULL };

		agg = sht_spawn(argv, logpath);
	}
	if (agg < 0 || sht_wait_log(logpath, "ready", 30000) != 0) {
		fprintf(stderr, "aggregator did not start; log in %s\n", logpath);
		return -1;
	}
	assert_int_equal(nng_req0_open(&sock), 0);
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 20000);
	nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 1 << 20);
	assert_int_equal(nng_dial(sock, url, NULL, 0), 0);
	return 0;
}

static int teardown(void **state)
{
	int status;

	nng_close(sock);
	status = sht_stop(agg, SIGTERM, 30000);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "aggregator exited badly (status %d); log in %s\n", status, logpath);
		return -1;
	}
	sht_rm_rf(dir);
	return 0;
}

static void test_good_then_duplicate(void **state)
{
	struct req q;
	Spikehound__Ack *ack;
	char sql[512];

	build(&q, 2, 1);
	ack = send_req(&q);
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_int_equal(ack->n_items, 2);
	assert_true(ack->items[0]->stored && ack->items[1]->stored);
	assert_int_equal(ack->items[1]->seq, 2);
	spikehound__ack__free_unpacked(ack, NULL);
	/* the same messages again (a lost ack): stored once */
	ack = send_req(&q);
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_true(ack->items[0]->stored && ack->items[1]->stored);
	spikehound__ack__free_unpacked(ack, NULL);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM summaries WHERE host_id = '%s'", HOST);
	assert_int_equal(sht_query_i64(dsn, sql), 2);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM processes WHERE host_id = '%s' AND cmdline = "
		 "'atop -R -w /var/log/atop/x 600'",
		 HOST);
	assert_int_equal(sht_query_i64(dsn, sql), 2);
}

static void test_broken_bytes(void **state)
{
	struct req q;
	size_t len;
	uint8_t *buf, junk[64];
	char *big;

	build(&q, 2, 100);
	len = spikehound__agent_request__get_packed_size(&q.r);
	buf = malloc(len);
	spikehound__agent_request__pack(&q.r, buf);
	expect_rejected(roundtrip(buf, len / 2), "malformed");
	free(buf);
	memset(junk, 0xff, sizeof(junk));
	expect_rejected(roundtrip(junk, sizeof(junk)), "malformed");
	expect_rejected(roundtrip("", 0), "no_hello");
	/* 9 MiB: over the 8 MiB request limit, under the transport's cap */
	big = malloc(9 << 20);
	memset(big, 'x', 9 << 20);
	expect_rejected(roundtrip(big, 9 << 20), "oversized");
	free(big);
}

static void test_semantic(void **state)
{
	struct req q;
	Spikehound__Ack *ack;
	char *mb = malloc(1 << 20);
	char sql[256];

	memset(mb, 'A', (1 << 20) - 1);
	mb[(1 << 20) - 1] = '\0';

	/* a megabyte hostname: the whole request is refused */
	build(&q, 1, 200);
	q.h.hostname = mb;
	expect_rejected(send_req(&q), "string_too_long");

	/* a request whose hello is not a host */
	build(&q, 1, 200);
	q.h.host_id = "../../etc/passwd";
	expect_rejected(send_req(&q), "bad_host_id");

	/* per message: each bad one refused with its reason, good ones kept */
	build(&q, 4, 10);
	q.s[0].end_ns = q.s[0].start_ns - NS;          /* negative duration */
	q.s[1].start_ns = now_ns() + 5LL * 365 * 86400 * NS; /* years ahead */
	q.s[1].end_ns = q.s[1].start_ns + NS;
	q.p[2].cmdline = mb;                           /* megabyte string */
	q.m[3].host_id = "ffffffffffffffffffffffffffffffff"; /* another host */
	ack = send_req(&q);
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_int_equal(ack->n_items, 4);
	assert_string_equal(ack->items[0]->rejected, "negative_duration");
	assert_string_equal(ack->items[1]->rejected, "time_in_future");
	assert_string_equal(ack->items[2]->rejected, "string_too_long");
	assert_string_equal(ack->items[3]->rejected, "host_mismatch");
	for (int i = 0; i < 4; i++)
		assert_false(ack->items[i]->stored);
	spikehound__ack__free_unpacked(ack, NULL);

	/* bad boot id and invalid UTF-8 in a good message */
	build(&q, 2, 20);
	q.m[0].boot_id = "not-a-boot";
	q.p[1].comm = "bad\xff\xfeutf8";
	ack = send_req(&q);
	assert_string_equal(ack->items[0]->rejected, "bad_boot_id");
	assert_true(ack->items[1]->stored);
	spikehound__ack__free_unpacked(ack, NULL);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM processes WHERE host_id = '%s' AND comm = 'bad??utf8'", HOST);
	assert_int_equal(sht_query_i64(dsn, sql), 1);

	/* an event with a negative duration, a duration of days, no kind */
	build(&q, 3, 30);
	for (int i = 0; i < 3; i++) {
		spikehound__spike_event__init(&q.e[i]);
		q.e[i].kind = "mmap_lock_wait";
		q.e[i].start_ns = now_ns() - NS;
		q.m[i].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
		q.m[i].event = &q.e[i];
	}
	q.e[0].duration_ns = -1;
	q.e[1].duration_ns = 3 * 86400 * NS;
	q.e[2].kind = "";
	ack = send_req(&q);
	assert_string_equal(ack->items[0]->rejected, "negative_duration");
	assert_string_equal(ack->items[1]->rejected, "duration_too_long");
	assert_string_equal(ack->items[2]->rejected, "missing_kind");
	spikehound__ack__free_unpacked(ack, NULL);
	free(mb);

	/* and the well-behaved agent is still served */
	build(&q, 1, 40);
	ack = send_req(&q);
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_true(ack->items[0]->stored);
	spikehound__ack__free_unpacked(ack, NULL);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM summaries WHERE host_id = '%s'", HOST);
	assert_int_equal(sht_query_i64(dsn, sql), 4); /* seqs 1, 2, 21, 40 */
}

/* http_get fetches url's body into a malloc'd string (caller frees). */
static char *http_get(const char *path)
{
	char full[256];
	nng_url *u = NULL;
	nng_http_client *cli = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_aio *aio = NULL;
	char *out = NULL;
	void *body;
	size_t len;

	snprintf(full, sizeof(full), "%s%s", http_url, path);
	if (nng_url_parse(&u, full) || nng_http_client_alloc(&cli, u) ||
	    nng_http_req_alloc(&req, u) || nng_http_res_alloc(&res) ||
	    nng_aio_alloc(&aio, NULL, NULL))
		goto cleanup;
	nng_aio_set_timeout(aio, 10000);
	nng_http_client_transact(cli, req, res, aio);
	nng_aio_wait(aio);
	if (nng_aio_result(aio) != 0 || nng_http_res_get_status(res) != 200)
		goto cleanup;
	nng_http_res_get_data(res, &body, &len);
	out = malloc(len + 1);
	memcpy(out, body, len);
	out[len] = '\0';
cleanup:
	if (aio)
		nng_aio_free(aio);
	if (res)
		nng_http_res_free(res);
	if (req)
		nng_http_req_free(req);
	if (cli)
		nng_http_client_free(cli);
	if (u)
		nng_url_free(u);
	return out;
}

/* --- capture chunks --- */

#define CAP_LEN 9000
#define CAP_CHUNK 3000

static uint8_t cap_payload[CAP_LEN];
static char cap_sha[65];

static void cap_init_payload(void)
{
	uint8_t md[32];
	unsigned int mdlen = 0;
	uint32_t x = 2463534242u;

	for (size_t i = 0; i < CAP_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		cap_payload[i] = (uint8_t)x;
	}
	assert_int_equal(EVP_Digest(cap_payload, CAP_LEN, md, &mdlen, EVP_sha256(), NULL), 1);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(cap_sha + 2 * i, 3, "%02x", md[i]);
}

/* build_chunks makes a request of n chunk messages (seqs from seq0) of
 * capture id, with chunk indexes idx[]; each chunk is its slice of
 * cap_payload, with the whole payload's size and SHA-256. */
static void build_chunks(struct req *q, int n, uint64_t seq0, const char *id, const int *idx)
{
	build(q, n, seq0);
	for (int i = 0; i < n; i++) {
		Spikehound__CaptureChunk *c = &q->c[i];

		spikehound__capture_chunk__init(c);
		c->capture_id = (char *)id;
		c->index = (uint32_t)idx[i];
		c->total = CAP_LEN / CAP_CHUNK;
		c->data.data = cap_payload + (size_t)idx[i] * CAP_CHUNK;
		c->data.len = CAP_CHUNK;
		c->sha256 = cap_sha;
		c->compressed_bytes = CAP_LEN;
		c->raw_bytes = 4 * CAP_LEN;
		c->from_ns = now_ns() - 30 * NS;
		c->to_ns = now_ns() - NS;
		c->trigger = "test";
		q->m[i].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_CHUNK;
		q->m[i].chunk = c;
	}
}

/* send_all_stored sends q and asserts every message was stored. */
static void send_all_stored(struct req *q)
{
	Spikehound__Ack *ack = send_req(q);

	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_int_equal(ack->n_items, q->r.n_messages);
	for (size_t i = 0; i < ack->n_items; i++) {
		if (!ack->items[i]->stored)
			fail_msg("message %zu not stored: %s", i,
				 ack->items[i]->rejected ? ack->items[i]->rejected : "(no reason)");
	}
	spikehound__ack__free_unpacked(ack, NULL);
}

/* cap_state is "status|reason|payload ok|chunks left" of capture id. */
static void cap_state(const char *id, char *out, size_t len)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SELECT h.status || '|' || h.reason || '|' ||"
		 " coalesce(encode(sha256(h.payload), 'hex') = '%s', false) || '|' ||"
		 " (SELECT count(*) FROM capture_chunks k WHERE k.capture_id = h.capture_id)"
		 " FROM capture_hosts h WHERE h.capture_id = '%s' AND h.host_id = '%s'",
		 cap_sha, id, HOST);
	assert_int_equal(sht_query_text(dsn, sql, out, len), 0);
}

static void test_capture_chunks(void **state)
{
	static const char good[] = "6c0a2e9e-0001-4000-8000-000000000001";
	static const char trunc[] = "6c0a2e9e-0002-4000-8000-000000000002";
	static const char corrupt[] = "6c0a2e9e-0003-4000-8000-000000000003";
	static const char gone[] = "6c0a2e9e-0004-4000-8000-000000000004";
	static const int i2[] = { 2 }, i01[] = { 0, 1 }, i012[] = { 0, 1, 2 }, i0000[] = { 0, 0, 0, 0 };
	uint8_t half[CAP_CHUNK / 2], flipped[CAP_CHUNK];
	struct req q;
	Spikehound__Ack *ack;
	char st[512];
	uint8_t *huge;

	cap_init_payload();

	/* a good capture, chunks out of order over two requests: complete */
	build_chunks(&q, 1, 300, good, i2);
	send_all_stored(&q);
	cap_state(good, st, sizeof(st));
	assert_string_equal(st, "receiving||false|1");
	build_chunks(&q, 2, 301, good, i01);
	send_all_stored(&q);
	cap_state(good, st, sizeof(st));
	assert_string_equal(st, "complete||true|0");

	/* a truncated chunk: every message is acknowledged, the capture is
	 * stored as failed with the reason, and no chunk is left behind */
	build_chunks(&q, 3, 310, trunc, i012);
	memcpy(half, cap_payload + CAP_CHUNK, sizeof(half));
	q.c[1].data.data = half;
	q.c[1].data.len = sizeof(half);
	send_all_stored(&q);
	cap_state(trunc, st, sizeof(st));
	assert_string_equal(st, "failed|checksum mismatch: the assembled capture is corrupt|false|0");

	/* a corrupted chunk (one bit flipped, same length): failed too */
	build_chunks(&q, 3, 320, corrupt, i012);
	memcpy(flipped, cap_payload + 2 * CAP_CHUNK, sizeof(flipped));
	flipped[1234] ^= 0x10;
	q.c[2].data.data = flipped;
	send_all_stored(&q);
	cap_state(corrupt, st, sizeof(st));
	assert_string_equal(st, "failed|checksum mismatch: the assembled capture is corrupt|false|0");

	/* stray chunks (new messages) for captures already over change nothing
	 * and are not kept */
	build_chunks(&q, 2, 330, good, i01);
	q.c[1].capture_id = (char *)trunc;
	send_all_stored(&q);
	cap_state(good, st, sizeof(st));
	assert_string_equal(st, "complete||true|0");
	cap_state(trunc, st, sizeof(st));
	assert_string_equal(st, "failed|checksum mismatch: the assembled capture is corrupt|false|0");

	/* the agent's own failure (the window left its recorder) */
	build_chunks(&q, 1, 340, gone, i0000);
	q.c[0].error = "window_gone: the recorder holds nothing that old";
	q.c[0].data.len = 0;
	send_all_stored(&q);
	cap_state(gone, st, sizeof(st));
	assert_string_equal(st, "failed|window_gone: the recorder holds nothing that old|false|0");

	/* malformed chunks, each refused with its reason */
	build_chunks(&q, 4, 350, good, i0000);
	q.c[0].index = 3;                     /* index past the total */
	q.c[1].sha256 = "not a checksum";
	q.c[2].compressed_bytes = 0;
	q.c[3].capture_id = "../../captures";
	ack = send_req(&q);
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_int_equal(ack->n_items, 4);
	assert_string_equal(ack->items[0]->rejected, "bad_chunk_index");
	assert_string_equal(ack->items[1]->rejected, "bad_checksum");
	assert_string_equal(ack->items[2]->rejected, "bad_chunk_size");
	assert_string_equal(ack->items[3]->rejected, "bad_capture_id");
	spikehound__ack__free_unpacked(ack, NULL);

	/* a chunk over 4 MiB */
	huge = calloc(1, (4u << 20) + 1);
	assert_non_null(huge);
	build_chunks(&q, 1, 360, good, i0000);
	q.c[0].data.data = huge;
	q.c[0].data.len = (4u << 20) + 1;
	ack = send_req(&q);
	assert_int_equal(ack->n_items, 1);
	assert_string_equal(ack->items[0]->rejected, "chunk_too_large");
	spikehound__ack__free_unpacked(ack, NULL);
	free(huge);

	/* nothing else changed; the housekeeping counts the outcomes */
	cap_state(good, st, sizeof(st));
	assert_string_equal(st, "complete||true|0");
	for (int tries = 0;; tries++) {
		char *stats = http_get("/api/stats");
		json_t *j = stats ? json_loads(stats, 0, NULL) : NULL;
		json_t *c = j ? json_object_get(j, "captures") : NULL;
		long long ok = c ? json_integer_value(json_object_get(c, "hosts_complete")) : -1;
		long long bad = c ? json_integer_value(json_object_get(c, "hosts_failed")) : -1;
		long long corr = c ? json_integer_value(json_object_get(c, "hosts_corrupt")) : -1;

		json_decref(j);
		if (ok == 1 && bad == 3 && corr == 2) {
			free(stats);
			break;
		}
		if (tries == 100)
			fail_msg("capture counters: complete %lld failed %lld corrupt %lld, want 1 3 2 (%s)",
				 ok, bad, corr, stats ? stats : "no stats");
		free(stats);
		usleep(100 * 1000);
	}
}

static void test_counted(void **state)
{
	static const struct {
		const char *reason;
		int n;
	} want[] = {
		{ "malformed", 2 },	    { "no_hello", 1 },	       { "oversized", 1 },
		{ "string_too_long", 2 },   { "bad_host_id", 1 },      { "negative_duration", 2 },
		{ "time_in_future", 1 },    { "host_mismatch", 1 },    { "bad_boot_id", 1 },
		{ "duration_too_long", 1 }, { "missing_kind", 1 },
		{ "bad_chunk_index", 1 },   { "bad_checksum", 1 },     { "bad_chunk_size", 1 },
		{ "bad_capture_id", 1 },    { "chunk_too_large", 1 },
	};
	char *stats = http_get("/api/stats");
	json_t *j, *r;

	assert_non_null(stats);
	j = json_loads(stats, 0, NULL);
	assert_non_null(j);
	r = json_object_get(j, "rejected_by_reason");
	if (!r)
		r = json_object_get(json_object_get(j, "ingest"), "rejected_by_reason");
	assert_non_null(r);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		json_t *v = json_object_get(r, want[i].reason);

		if (!v || json_integer_value(v) != want[i].n)
			fail_msg("reason %s: counted %lld, want %d (stats: %s)", want[i].reason,
				 v ? (long long)json_integer_value(v) : -1LL, want[i].n, stats);
	}
	json_decref(j);
	free(stats);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_then_duplicate),
		cmocka_unit_test(test_broken_bytes),
		cmocka_unit_test(test_semantic),
		cmocka_unit_test(test_capture_chunks),
		cmocka_unit_test(test_counted),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
