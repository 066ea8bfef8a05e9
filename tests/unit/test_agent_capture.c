/* test_agent_capture.c: taking captures from a flight recorder filled with
 * known records: window selection, content, truncation at the size cap,
 * windows no longer held, and the chunked spool path (reassembled chunks
 * match their SHA-256 and decode to the same capture). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "capture.h"
#include "timeutil.h"

#define NS SH_NS_PER_SEC
#define OFF (1000000LL * NS) /* wall minus mono in these tests */
#define BOOT "11111111-2222-4333-8444-555555555555"
#define HOST "0123456789abcdef0123456789abcdef"

struct fixture {
	struct agent_recorder *rec;
	Spikehound__Hello hello;
};

/* fill: 10 s of samples at 100 Hz on 2 CPUs (3 distinct stacks), one
 * metrics blob per second, a spike event at 5 s, exec and exit events. */
static void fill(struct fixture *f, int64_t t0)
{
	uint64_t kips[3] = { 0xffffffff81000010ULL, 0xffffffff81000020ULL, 0xffffffff81000030ULL };
	uint64_t uips[2] = { 0x401000, 0x402000 };

	for (int i = 0; i < 1000; i++) {
		int64_t ts = t0 + (int64_t)i * NS / 100;

		for (uint32_t cpu = 0; cpu < 2; cpu++) {
			uint16_t kd = (uint16_t)(1 + (i + (int)cpu) % 3);

			assert_int_equal(agent_recorder_add_sample(f->rec, ts, cpu, 100 + cpu, 100 + cpu,
								   0, "burner", 0, kips, kd, uips,
								   2),
					 0);
		}
		if (i % 100 == 0) {
			Spikehound__MetricSecond m = SPIKEHOUND__METRIC_SECOND__INIT;
			uint8_t buf[256];

			m.time_ns = ts + OFF;
			m.cpu_user_pct = (float)i / 10;
			assert_int_equal(agent_recorder_add_blob(f->rec, AGENT_REC_METRICS, ts, buf,
								 spikehound__metric_second__pack(&m, buf)),
					 0);
		}
		if (i == 500) {
			Spikehound__SpikeEvent e = SPIKEHOUND__SPIKE_EVENT__INIT;
			uint8_t buf[256];

			e.kind = "mmap_lock_wait";
			e.start_ns = ts + OFF;
			e.duration_ns = 50 * SH_NS_PER_MS;
			assert_int_equal(agent_recorder_add_blob(f->rec, AGENT_REC_SPIKE, ts, buf,
								 spikehound__spike_event__pack(&e, buf)),
					 0);
			assert_int_equal(agent_recorder_add_proc(f->rec, ts, 0, AGENT_PROC_EXEC, 200, 1,
								 200, 0, 0, "ss", "/usr/bin/ss"),
					 0);
			assert_int_equal(agent_recorder_add_proc(f->rec, ts + 1000, 0, AGENT_PROC_EXIT,
								 200, 1, 200, 0, 0, "ss", NULL),
					 0);
		}
	}
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_int_equal(agent_recorder_new(8u << 20, &f->rec), 0);
	spikehound__hello__init(&f->hello);
	f->hello.host_id = HOST;
	f->hello.hostname = "capture-test";
	f->hello.kernel_release = "6.18.0-test";
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	agent_recorder_free(f->rec);
	free(f);
	return 0;
}

static Spikehound__Capture *decode(const uint8_t *z, size_t zlen)
{
	unsigned long long raw_len = ZSTD_getFrameContentSize(z, zlen);
	uint8_t *raw;
	Spikehound__Capture *c;

	assert_true(raw_len != ZSTD_CONTENTSIZE_ERROR && raw_len != ZSTD_CONTENTSIZE_UNKNOWN);
	raw = malloc(raw_len ? raw_len : 1);
	assert_int_equal(ZSTD_decompress(raw, raw_len, z, zlen), raw_len);
	c = spikehound__capture__unpack(NULL, raw_len, raw);
	free(raw);
	assert_non_null(c);
	return c;
}

static void src_init(struct fixture *f, struct agent_capture_src *src)
{
	memset(src, 0, sizeof(*src));
	src->rec = f->rec;
	src->hello = &f->hello;
	src->wall_minus_mono_ns = OFF;
	src->sample_hz = 100;
}

static void test_capture_window(void **state)
{
	struct fixture *f = *state;
	struct agent_capture_src src;
	struct agent_capture_result res;
	Spikehound__CaptureRequest req = SPIKEHOUND__CAPTURE_REQUEST__INIT;
	Spikehound__Capture *c;
	uint8_t *z;
	size_t zlen, nexec = 0;
	int64_t t0 = 100 * NS;

	fill(f, t0);
	src_init(f, &src);
	req.capture_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
	req.trigger = "manual";
	/* seconds 3..7 of the recording, in wall-clock time */
	req.from_ns = t0 + OFF + 3 * NS;
	req.to_ns = t0 + OFF + 7 * NS;
	assert_int_equal(agent_capture_build(&src, &req, &z, &zlen, &res), 0);
	assert_int_equal(res.samples, 800); /* 4 s x 100 Hz x 2 CPUs */
	assert_int_equal(res.metrics, 4);
	assert_int_equal(res.events, 1);
	assert_int_equal(res.procs, 2);
	assert_false(res.truncated);
	assert_true(res.compressed_bytes < res.raw_bytes);
	c = decode(z, zlen);
	assert_string_equal(c->capture_id, req.capture_id);
	assert_string_equal(c->host->hostname, "capture-test");
	assert_int_equal(c->n_samples, 800);
	assert_int_equal(c->n_stacks, 6); /* 3 kernel depths x 2 processes */
	/* the recorder held older records: the recording covers the asked start */
	assert_true(c->held_from_ns == req.from_ns && c->held_to_ns < req.to_ns);
	for (size_t i = 0; i < c->n_samples; i++) {
		assert_true(c->samples[i]->time_ns >= req.from_ns &&
			    c->samples[i]->time_ns < req.to_ns);
		assert_true(c->samples[i]->stack_id < c->n_stacks);
	}
	for (size_t i = 0; i < c->n_stacks; i++) {
		assert_string_equal(c->stacks[i]->comm, "burner");
		assert_int_equal(c->stacks[i]->n_user_frames, 2);
		assert_int_equal(c->stacks[i]->n_user_build_ids, 2);
		assert_true(c->stacks[i]->n_kernel_frames >= 1);
	}
	for (size_t i = 0; i < c->n_procs; i++)
		nexec += strcmp(c->procs[i]->kind, "exec") == 0 &&
			 strcmp(c->procs[i]->filename, "/usr/bin/ss") == 0;
	assert_int_equal(nexec, 1);
	assert_string_equal(c->events[0]->kind, "mmap_lock_wait");
	spikehound__capture__free_unpacked(c, NULL);
	free(z);

	/* only some parts */
	req.include = (char *[]){ "events", "metrics" };
	req.n_include = 2;
	assert_int_equal(agent_capture_build(&src, &req, &z, &zlen, &res), 0);
	c = decode(z, zlen);
	assert_int_equal(c->n_samples, 0);
	assert_int_equal(c->n_events, 1);
	spikehound__capture__free_unpacked(c, NULL);
	free(z);
}

static void test_capture_limits(void **state)
{
	struct fixture *f = *state;
	struct agent_capture_src src;
	struct agent_capture_result res;
	Spikehound__CaptureRequest req = SPIKEHOUND__CAPTURE_REQUEST__INIT;
	Spikehound__Capture *c;
	uint8_t *z;
	size_t zlen;
	int64_t t0 = 100 * NS;

	fill(f, t0);
	src_init(f, &src);
	req.capture_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
	/* a window the recorder no longer (or never) held */
	req.from_ns = t0 + OFF - 600 * NS;
	req.to_ns = t0 + OFF - 500 * NS;
	assert_int_equal(agent_capture_build(&src, &req, &z, &zlen, &res), -ENODATA);
	assert_non_null(strstr(res.error, "window_gone"));
	/* a bad window */
	req.from_ns = t0 + OFF + 5 * NS;
	req.to_ns = t0 + OFF + 4 * NS;
	assert_int_equal(agent_capture_build(&src, &req, &z, &zlen, &res), -EINVAL);
	req.to_ns = req.from_ns + 3600 * NS;
	assert_int_equal(agent_capture_build(&src, &req, &z, &zlen, &res), -EINVAL);
	/* a tiny cap truncates: the oldest part is kept */
	req.from_ns = t0 + OFF;
	req.to_ns = t0 + OFF + 10 * NS;
	req.max_bytes = 2048;
	assert_int_equal(agent_capture_build(&src, &req, &z, &zlen, &res), 0);
	assert_true(res.truncated);
	assert_true(zlen <= 2048);
	c = decode(z, zlen);
	assert_true(c->truncated);
	assert_true(c->n_samples > 0 && c->n_samples < 2000);
	assert_int_equal(c->samples[0]->time_ns, t0 + OFF);
	spikehound__capture__free_unpacked(c, NULL);
	free(z);
}

static void test_capture_spool(void **state)
{
	struct fixture *f = *state;
	struct agent_capture_src src;
	struct agent_capture_result res;
	Spikehound__CaptureRequest req = SPIKEHOUND__CAPTURE_REQUEST__INIT;
	struct agent_spool *sp;
	struct agent_spool_batch b = { 0 };
	char dir[] = "/tmp/sh-capture-test-XXXXXX", sha[65], cmd[96];
	uint8_t *whole = NULL;
	size_t wlen = 0;
	uint32_t total = 0;
	Spikehound__Capture *c;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(agent_spool_open(dir, 64u << 20, false, &sp), 0);
	fill(f, 100 * NS);
	src_init(f, &src);
	req.capture_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
	req.from_ns = 100 * NS + OFF;
	req.to_ns = 110 * NS + OFF;
	assert_int_equal(agent_capture_spool(&src, &req, sp, HOST, BOOT, 1024, &res), 0);
	assert_true(res.chunks > 1);
	assert_int_equal(agent_spool_peek(sp, 100000, 1u << 30, &b), 0);
	assert_int_equal(b.n, res.chunks);
	for (size_t i = 0; i < b.n; i++) {
		Spikehound__AgentMessage *m =
			spikehound__agent_message__unpack(NULL, b.msgs[i].len, b.msgs[i].data);

		assert_non_null(m);
		assert_int_equal(b.msgs[i].kind, AGENT_SPOOL_CHUNK);
		assert_int_equal(m->body_case, SPIKEHOUND__AGENT_MESSAGE__BODY_CHUNK);
		assert_int_equal(m->chunk->index, i);
		assert_string_equal(m->chunk->error, "");
		assert_int_equal(m->chunk->compressed_bytes, res.compressed_bytes);
		total = m->chunk->total;
		whole = realloc(whole, wlen + m->chunk->data.len);
		memcpy(whole + wlen, m->chunk->data.data, m->chunk->data.len);
		wlen += m->chunk->data.len;
		if (i == b.n - 1) {
			agent_capture_sha256_hex(whole, wlen, sha);
			assert_string_equal(sha, m->chunk->sha256);
		}
		spikehound__agent_message__free_unpacked(m, NULL);
	}
	assert_int_equal(total, res.chunks);
	assert_int_equal(wlen, res.compressed_bytes);
	c = decode(whole, wlen);
	assert_int_equal(c->n_samples, 2000);
	spikehound__capture__free_unpacked(c, NULL);
	agent_spool_batch_free(&b);

	/* a window that is gone: one chunk carrying the error */
	req.capture_id = "bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee";
	req.from_ns = OFF;
	req.to_ns = OFF + NS;
	assert_int_equal(agent_capture_spool(&src, &req, sp, HOST, BOOT, 1024, &res), 0);
	assert_int_equal(agent_spool_peek(sp, 100000, 1u << 30, &b), 0);
	{
		Spikehound__AgentMessage *m = spikehound__agent_message__unpack(
			NULL, b.msgs[b.n - 1].len, b.msgs[b.n - 1].data);

		assert_non_null(m);
		assert_int_equal(m->chunk->total, 0);
		assert_non_null(strstr(m->chunk->error, "window_gone"));
		spikehound__agent_message__free_unpacked(m, NULL);
	}
	agent_spool_batch_free(&b);
	agent_spool_close(sp);
	free(whole);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_capture_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capture_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capture_spool, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
