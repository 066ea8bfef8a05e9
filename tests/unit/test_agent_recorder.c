/* test_agent_recorder.c: the flight recorder: the cap is never exceeded,
 * the oldest records go first, interned stacks are shared and freed with
 * their last reference, time-range iteration, bad input, and the 120 s
 * sizing target at the default cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "recorder.h"
#include "sampler.h"
#include "symbolize.h"

#define MS 1000000LL

/* fill_stack makes a distinct stack for seed (depth frames). */
static void fill_stack(uint64_t *ips, int depth, uint64_t seed)
{
	for (int i = 0; i < depth; i++)
		ips[i] = 0xffffffff81000000ULL + seed * 4096 + (uint64_t)i * 16;
}

static int add(struct agent_recorder *r, int64_t ts, uint32_t cpu, uint64_t seed, int kd, int ud)
{
	uint64_t k[128], u[128];

	fill_stack(k, kd, seed);
	fill_stack(u, ud, seed + 1000000);
	return agent_recorder_add_sample(r, ts, cpu, 100 + (uint32_t)(seed % 7), 1000, 1, "worker",
					 0, k, (uint16_t)kd, u, (uint16_t)ud);
}

struct collect {
	int64_t first, last, prev;
	size_t n, samples, procs, blobs;
	int unordered;
	uint32_t ids[4096];
	size_t nids;
	const char *filename_seen;
	char blob[64];
};

static int collect_cb(void *ctx, const struct agent_record *rec)
{
	struct collect *c = ctx;

	if (!c->n)
		c->first = rec->ts_ns;
	else if (rec->ts_ns < c->prev)
		c->unordered++;
	c->prev = c->last = rec->ts_ns;
	c->n++;
	if (rec->type == AGENT_REC_SAMPLE) {
		const struct agent_stack *st = rec->sample.stack;
		bool seen = false;

		c->samples++;
		assert_true(st->kdepth <= 127 && st->udepth <= 127);
		for (size_t i = 0; i < c->nids; i++)
			seen |= c->ids[i] == st->id;
		if (!seen && c->nids < 4096)
			c->ids[c->nids++] = st->id;
	} else if (rec->type == AGENT_REC_PROC) {
		c->procs++;
		if (rec->proc.kind == AGENT_PROC_EXEC)
			c->filename_seen = rec->proc.filename;
	} else {
		c->blobs++;
		if (rec->blob.len <= sizeof(c->blob))
			memcpy(c->blob, rec->blob.data, rec->blob.len);
	}
	return 0;
}

static void test_cap_never_exceeded(void **state)
{
	struct agent_recorder *r = NULL;
	struct agent_recorder_stats st;
	const size_t cap = 256u << 10;

	assert_int_equal(agent_recorder_new(cap, &r), 0);
	for (int i = 0; i < 20000; i++) {
		/* Mix of unique and repeated stacks, depths up to 127. */
		uint64_t seed = i % 3 ? (uint64_t)i : 42;

		assert_int_equal(add(r, i * MS, (uint32_t)(i % 2), seed, i % 128, (i * 7) % 128), 0);
		if (i % 5 == 0)
			assert_int_equal(agent_recorder_add_blob(r, AGENT_REC_METRICS, i * MS, "m", 1), 0);
		assert_true(agent_recorder_bytes(r) <= cap);
	}
	agent_recorder_stats(r, &st);
	assert_true(st.bytes_used <= cap);
	assert_true(st.dropped_records > 0);
	assert_int_equal(st.rejected, 0);
	assert_true(st.stack_hits > 0);
	agent_recorder_free(r);
}

static void test_oldest_overwritten(void **state)
{
	struct agent_recorder *r = NULL;
	struct agent_recorder_stats st;
	struct collect c = { 0 };
	const int n = 50000;

	assert_int_equal(agent_recorder_new(64u << 10, &r), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(add(r, (int64_t)i * MS, 0, 1, 8, 8), 0);
	agent_recorder_foreach(r, INT64_MIN, INT64_MAX, collect_cb, &c);
	agent_recorder_stats(r, &st);
	assert_int_equal(c.unordered, 0);
	assert_int_equal(c.last, (int64_t)(n - 1) * MS); /* the newest is kept */
	assert_true(c.first > 0);			 /* the oldest went */
	assert_int_equal(c.n, st.records);
	assert_int_equal(st.records + st.dropped_records, (size_t)n);
	/* What is kept is a contiguous tail. */
	assert_int_equal((c.last - c.first) / MS + 1, (int64_t)c.n);
	assert_int_equal(st.oldest_ns, c.first);
	assert_int_equal(st.newest_ns, c.last);
	assert_true(st.seconds > 0);
	agent_recorder_free(r);
}

static void test_interned_stacks_freed(void **state)
{
	struct agent_recorder *r = NULL;
	struct agent_recorder_stats st;
	struct collect c = { 0 };
	int i;

	assert_int_equal(agent_recorder_new(64u << 10, &r), 0);
	/* 100 samples of one stack share one entry. */
	for (i = 0; i < 100; i++)
		assert_int_equal(add(r, i, 0, 7, 20, 20), 0);
	agent_recorder_stats(r, &st);
	assert_int_equal(st.stacks, 1);
	assert_int_equal(st.stack_hits, 99);
	agent_recorder_foreach(r, INT64_MIN, INT64_MAX, collect_cb, &c);
	assert_int_equal(c.nids, 1);

	/* Same frames but another comm or pid is another stack. */
	{
		uint64_t k[20], u[20];

		fill_stack(k, 20, 7);
		fill_stack(u, 20, 7 + 1000000);
		assert_int_equal(agent_recorder_add_sample(r, i++, 0, 100, 1, 1, "other", 0, k, 20,
							   u, 20),
				 0);
	}
	agent_recorder_stats(r, &st);
	assert_int_equal(st.stacks, 2);

	/* Push everything out with unique stacks: the shared ones go once
	 * their last sample is overwritten. */
	for (; i < 20000; i++)
		assert_int_equal(add(r, i, 0, 1000 + (uint64_t)i, 4, 4), 0);
	memset(&c, 0, sizeof(c));
	agent_recorder_foreach(r, INT64_MIN, INT64_MAX, collect_cb, &c);
	agent_recorder_stats(r, &st);
	assert_true(c.first >= 101);
	/* Exactly the stacks of the records kept are alive. */
	assert_int_equal(st.stacks, c.nids);
	assert_int_equal(st.stacks, c.samples);

	/* Fill with one stack again: the table shrinks to one live entry. */
	for (int j = 0; j < 20000; j++, i++)
		assert_int_equal(add(r, i, 0, 5, 4, 4), 0);
	agent_recorder_stats(r, &st);
	assert_int_equal(st.stacks, 1);
	agent_recorder_free(r);
}

static void test_time_range(void **state)
{
	struct agent_recorder *r = NULL;
	struct collect c = { 0 };

	assert_int_equal(agent_recorder_new(0, &r), 0);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(add(r, i * MS, (uint32_t)(i % 2), (uint64_t)i % 10, 5, 5), 0);
		if (i % 100 == 50) {
			assert_int_equal(agent_recorder_add_proc(r, i * MS, 0, AGENT_PROC_EXEC, 77, 1, 77,
								 0, 9, "ls", "/usr/bin/ls"),
					 0);
			assert_int_equal(agent_recorder_add_blob(r, AGENT_REC_METRICS, i * MS,
								 "metrics!", 9),
					 0);
		}
	}
	agent_recorder_foreach(r, 100 * MS, 200 * MS, collect_cb, &c);
	assert_int_equal(c.samples, 100);
	assert_int_equal(c.first, 100 * MS);
	assert_int_equal(c.last, 199 * MS);
	assert_int_equal(c.procs, 1);
	assert_int_equal(c.blobs, 1);
	assert_string_equal(c.blob, "metrics!");
	assert_non_null(c.filename_seen);
	assert_int_equal(c.unordered, 0);

	/* Empty and inverted ranges. */
	memset(&c, 0, sizeof(c));
	agent_recorder_foreach(r, 5000 * MS, 6000 * MS, collect_cb, &c);
	assert_int_equal(c.n, 0);
	agent_recorder_foreach(r, 200 * MS, 100 * MS, collect_cb, &c);
	assert_int_equal(c.n, 0);
	assert_true(agent_recorder_seconds(r) > 0.99 && agent_recorder_seconds(r) < 1.0);
	agent_recorder_free(r);
}

static int stop_after_3_cb(void *ctx, const struct agent_record *rec)
{
	int *n = ctx;

	return ++*n == 3 ? 42 : 0;
}

static void test_bad_input(void **state)
{
	struct agent_recorder *r = NULL;
	struct agent_recorder_stats st;
	static char big[200u << 10];
	int n = 0;

	assert_int_equal(agent_recorder_new(1, &r), 0); /* raised to the minimum */
	agent_recorder_stats(r, &st);
	assert_int_equal(st.cap_bytes, 64u << 10);
	assert_int_equal(st.seconds, 0.0);
	assert_int_equal(agent_recorder_add_blob(r, AGENT_REC_SAMPLE, 0, "x", 1), -EINVAL);
	assert_int_equal(agent_recorder_add_blob(r, AGENT_REC_SPIKE, 0, big, sizeof(big)), -E2BIG);
	/* Depths beyond the BPF maximum are clamped, NULL comm accepted. */
	{
		uint64_t k[200] = { 0 };

		assert_int_equal(agent_recorder_add_sample(r, 1, 0, 1, 1, 0, NULL, 0, k, 200, NULL, 0),
				 0);
	}
	for (int i = 0; i < 10; i++)
		assert_int_equal(add(r, 10 + i, 0, 3, 2, 2), 0);
	assert_int_equal(agent_recorder_foreach(r, INT64_MIN, INT64_MAX, stop_after_3_cb, &n), 42);
	assert_int_equal(n, 3);
	agent_recorder_stats(r, &st);
	assert_int_equal(st.rejected, 1);
	assert_true(st.bytes_used <= st.cap_bytes);
	agent_recorder_free(r);
	agent_recorder_free(NULL);
}

/* 2 busy CPUs at 99 Hz for 150 s at the default cap, in the worst case:
 * every sample a distinct 40-frame stack (kernel 15 + user 25). */
static void test_holds_120s_at_default_cap(void **state)
{
	struct agent_recorder *r = NULL;
	struct agent_recorder_stats st;
	const int64_t period = 1000000000LL / 99;

	assert_int_equal(agent_recorder_new(0, &r), 0);
	for (int64_t t = 0; t < 150 * 99; t++)
		for (uint32_t cpu = 0; cpu < 2; cpu++)
			assert_int_equal(add(r, t * period, cpu, (uint64_t)t * 2 + cpu, 15, 25), 0);
	agent_recorder_stats(r, &st);
	print_message("recorder: unique 40-frame stacks, 2 CPUs x 99 Hz: %zu bytes for %.1f s "
		      "= %.0f bytes/s -> %.0f s at 32 MiB\n",
		      st.bytes_used, st.seconds, st.bytes_used / st.seconds,
		      (double)st.cap_bytes / (st.bytes_used / st.seconds));
	assert_true(st.seconds >= 149.0); /* nothing dropped yet */
	assert_int_equal(st.dropped_records, 0);
	assert_true((double)st.cap_bytes / (st.bytes_used / st.seconds) >= 120.0);
	agent_recorder_free(r);
}

/* The summary helpers: folded top-K and per-process counts, handed to a
 * Summary and freed with it, as the daemon will. */
static void test_summary_helpers(void **state)
{
	struct agent_symbolizer_opts o = { .kallsyms_path = SH_TEST_DATA "/kallsyms_small" };
	struct agent_symbolizer *sym = NULL;
	struct agent_recorder *r = NULL;
	Spikehound__Summary summary = SPIKEHOUND__SUMMARY__INIT;
	Spikehound__FoldedStack **stacks;
	Spikehound__ProcessSamples **procs;
	/* innermost first: schedule <- do_syscall_64, and startup_64 alone */
	uint64_t a[2] = { 0xffffffff81001810ULL, 0xffffffff81002020ULL };
	uint64_t b[1] = { 0xffffffff81000010ULL };
	uint64_t c2[2] = { 0xffffffff81001820ULL, 0xffffffff81002030ULL }; /* folds like a */
	size_t n;

	assert_int_equal(agent_symbolizer_new(&o, &sym), 0);
	assert_int_equal(agent_recorder_new(0, &r), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(agent_recorder_add_sample(r, i, 0, 0, 0, 0, "swapper/0", 0, b, 1, NULL, 0), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(agent_recorder_add_sample(r, 10 + i, 1, 0, 0, 0, "swapper/1", 0, b, 1, NULL, 0), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(agent_recorder_add_sample(r, 20 + i, 1, 9, 9, 0, "app", 0, a, 2, NULL, 0), 0);
		assert_int_equal(agent_recorder_add_sample(r, 30 + i, 1, 9, 9, 0, "app", 0, c2, 2, NULL, 0), 0);
	}
	assert_int_equal(agent_record_top_stacks(r, sym, INT64_MIN, INT64_MAX, 2, &stacks, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(stacks[0]->stack, "app;do_syscall_64;schedule");
	assert_int_equal(stacks[0]->count, 6);
	assert_string_equal(stacks[1]->stack, "swapper/0;startup_64");
	assert_int_equal(stacks[1]->count, 5);
	summary.stacks = stacks;
	summary.n_stacks = n;

	assert_int_equal(agent_record_proc_samples(r, 0, 25, &procs, &n), 0);
	assert_int_equal(n, 2); /* pid 0 (both idle tasks) and pid 9 */
	assert_int_equal(procs[0]->pid, 0);
	assert_int_equal(procs[0]->samples, 9);
	assert_string_equal(procs[0]->comm, "swapper/1");
	assert_int_equal(procs[1]->pid, 9);
	assert_int_equal(procs[1]->samples, 3);
	summary.proc_samples = procs;
	summary.n_proc_samples = n;
	/* The messages are plain malloc'd protobuf-c: the Summary frees them. */
	{
		size_t len = spikehound__summary__get_packed_size(&summary);
		uint8_t *buf = malloc(len);

		assert_non_null(buf);
		spikehound__summary__pack(&summary, buf);
		free(buf);
	}
	for (size_t i = 0; i < summary.n_stacks; i++) {
		free(summary.stacks[i]->stack);
		free(summary.stacks[i]);
	}
	free(summary.stacks);
	agent_record_free_proc_samples(summary.proc_samples, summary.n_proc_samples);

	/* Empty range: no array. */
	assert_int_equal(agent_record_top_stacks(r, sym, 1000, 2000, 0, &stacks, &n), 0);
	assert_null(stacks);
	assert_int_equal(n, 0);
	agent_record_free_stacks(NULL, 0);
	agent_recorder_free(r);
	agent_symbolizer_free(sym);
}

/* The CPU list parser the sampler's hotplug check feeds recorders with
 * (here for want of a sampler unit test: the sampler itself needs root). */
static void test_cpu_list_parse(void **state)
{
	uint8_t set[8];

	assert_int_equal(agent_parse_cpu_list("0-2,5,7\n", set, 8), 0);
	assert_memory_equal(set, ((uint8_t[]){ 1, 1, 1, 0, 0, 1, 0, 1 }), 8);
	assert_int_equal(agent_parse_cpu_list("1", set, 8), 0);
	assert_memory_equal(set, ((uint8_t[]){ 0, 1, 0, 0, 0, 0, 0, 0 }), 8);
	assert_int_equal(agent_parse_cpu_list("0-63", set, 8), 0); /* clipped */
	assert_int_equal(set[7], 1);
	assert_int_equal(agent_parse_cpu_list("3-1", set, 8), -EINVAL);
	assert_int_equal(agent_parse_cpu_list("a", set, 8), -EINVAL);
	assert_int_equal(agent_parse_cpu_list("1;2", set, 8), -EINVAL);
	assert_int_equal(agent_parse_cpu_list("-1", set, 8), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap_never_exceeded),
		cmocka_unit_test(test_oldest_overwritten),
		cmocka_unit_test(test_interned_stacks_freed),
		cmocka_unit_test(test_time_range),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_holds_120s_at_default_cap),
		cmocka_unit_test(test_summary_helpers),
		cmocka_unit_test(test_cpu_list_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
