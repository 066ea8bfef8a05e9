/* test_agent_spool.c: the on-disk spool: cap and drop order, reload after a
 * restart, sequence numbers that are never reused, corrupt files, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"

#define BOOT "0f6a4f8e-1d2c-4b9a-8e7f-123456789abc"

/* Every test gets a fresh directory, removed afterwards. */
static int setup_dir(void **state)
{
	char *dir = strdup("/tmp/sh-test-spool-XXXXXX");

	if (!dir || !mkdtemp(dir)) {
		free(dir);
		return -1;
	}
	*state = dir;
	return 0;
}

static int teardown_dir(void **state)
{
	char *dir = *state, path[512];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (d) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
	free(dir);
	return 0;
}

/* fill writes a recognizable pattern for (seq, len). */
static void fill(uint8_t *buf, size_t len, uint64_t seq)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 31 + i * 7);
}

static void append_one(struct agent_spool *sp, int kind, const char *boot, uint64_t seq,
		       size_t len)
{
	uint8_t buf[4096];

	assert_true(len <= sizeof(buf));
	fill(buf, len, seq);
	assert_int_equal(agent_spool_append(sp, kind, boot, seq, buf, len), 0);
}

/* expect_contents peeks everything and compares kinds and seqs in order
 * (and the data against the pattern). */
static void expect_contents(struct agent_spool *sp, const int *kinds, const uint64_t *seqs,
			    size_t n)
{
	struct agent_spool_batch b = { 0 };
	uint8_t want[4096];

	assert_int_equal(agent_spool_peek(sp, 1000, SIZE_MAX, &b), 0);
	assert_int_equal(b.n, n);
	assert_int_equal(agent_spool_count(sp), n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(b.msgs[i].kind, kinds[i]);
		assert_true(b.msgs[i].seq == seqs[i]);
		assert_true(b.msgs[i].len <= sizeof(want));
		fill(want, b.msgs[i].len, b.msgs[i].seq);
		assert_memory_equal(b.msgs[i].data, want, b.msgs[i].len);
	}
	agent_spool_batch_free(&b);
	assert_null(b.msgs);
	assert_int_equal(b.n, 0);
}

/* entry_files lists the entry files in name order (caller frees). */
static int entry_files(const char *dir, struct dirent ***names)
{
	int n = scandir(dir, names, NULL, alphasort);
	int out = 0;

	assert_true(n >= 0);
	for (int i = 0; i < n; i++) {
		size_t l = strlen((*names)[i]->d_name);

		if (l > 4 && strcmp((*names)[i]->d_name + l - 4, ".msg") == 0)
			(*names)[out++] = (*names)[i];
		else
			free((*names)[i]);
	}
	return out;
}

static void free_names(struct dirent **names, int n)
{
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static void test_cap_drops_oldest_summaries(void **state)
{
	const char *dir = *state;
	const size_t len = 100, size = AGENT_SPOOL_HDR_SIZE + 1 + len;
	struct agent_spool *sp;
	enum { S = AGENT_SPOOL_SUMMARY, E = AGENT_SPOOL_EVENT, C = AGENT_SPOOL_CHUNK };

	assert_int_equal(agent_spool_open(dir, 5 * size, false, &sp), 0);
	append_one(sp, S, "b", 1, len);
	append_one(sp, E, "b", 2, len);
	append_one(sp, S, "b", 3, len);
	append_one(sp, C, "b", 4, len);
	append_one(sp, S, "b", 5, len);
	assert_true(agent_spool_bytes(sp) == 5 * size);
	assert_true(agent_spool_dropped_take(sp) == 0);

	/* Full: a new event pushes out the oldest summary, not the older event. */
	append_one(sp, E, "b", 6, len);
	expect_contents(sp, (int[]){ E, S, C, S, E }, (uint64_t[]){ 2, 3, 4, 5, 6 }, 5);
	append_one(sp, S, "b", 7, len);
	expect_contents(sp, (int[]){ E, C, S, E, S }, (uint64_t[]){ 2, 4, 5, 6, 7 }, 5);
	assert_true(agent_spool_dropped_take(sp) == 2);
	assert_true(agent_spool_dropped_take(sp) == 0);

	/* Two summaries left: they go first, then the oldest of any kind. */
	append_one(sp, E, "b", 8, len);
	append_one(sp, E, "b", 9, len);
	expect_contents(sp, (int[]){ E, C, E, E, E }, (uint64_t[]){ 2, 4, 6, 8, 9 }, 5);
	append_one(sp, E, "b", 10, len);
	expect_contents(sp, (int[]){ C, E, E, E, E }, (uint64_t[]){ 4, 6, 8, 9, 10 }, 5);
	assert_true(agent_spool_bytes(sp) <= 5 * size);
	assert_true(agent_spool_dropped_take(sp) == 3);
	assert_true(agent_spool_dropped_total(sp) == 5);

	/* A bigger entry makes room by dropping as many as needed. */
	append_one(sp, S, "b", 11, len + 2 * size);
	expect_contents(sp, (int[]){ E, E, S }, (uint64_t[]){ 9, 10, 11 }, 3);
	assert_true(agent_spool_bytes(sp) == 5 * size);
	assert_true(agent_spool_dropped_take(sp) == 3);

	/* Only whole files count: what the directory holds matches the bytes. */
	{
		struct dirent **names;
		int n = entry_files(dir, &names);

		assert_int_equal(n, 3);
		free_names(names, n);
	}
	agent_spool_close(sp);
}

static void test_msgsize(void **state)
{
	const char *dir = *state;
	struct agent_spool *sp;
	uint8_t buf[200] = { 0 };
	const size_t cap = AGENT_SPOOL_HDR_SIZE + 1 + 100;

	assert_int_equal(agent_spool_open(dir, cap, false, &sp), 0);
	append_one(sp, AGENT_SPOOL_EVENT, "b", 1, 50);
	assert_int_equal(agent_spool_append(sp, AGENT_SPOOL_EVENT, "b", 2, buf, 101), -EMSGSIZE);
	assert_int_equal(agent_spool_count(sp), 1);
	assert_true(agent_spool_dropped_total(sp) == 0);
	/* Exactly the cap fits (after dropping everything else). */
	append_one(sp, AGENT_SPOOL_EVENT, "b", 3, 100);
	expect_contents(sp, (int[]){ AGENT_SPOOL_EVENT }, (uint64_t[]){ 3 }, 1);
	assert_true(agent_spool_dropped_total(sp) == 1);

	/* Bad arguments. */
	assert_int_equal(agent_spool_append(sp, 0, "b", 4, buf, 1), -EINVAL);
	assert_int_equal(agent_spool_append(sp, AGENT_SPOOL_EVENT, "", 4, buf, 1), -EINVAL);
	assert_int_equal(agent_spool_append(sp, AGENT_SPOOL_EVENT, "a b", 4, buf, 1), -EINVAL);
	assert_int_equal(agent_spool_append(sp, AGENT_SPOOL_EVENT, "b", 4, NULL, 1), -EINVAL);
	{
		struct agent_spool *other = sp;

		assert_int_equal(agent_spool_open(dir, 0, false, &other), -EINVAL);
		assert_null(other);
	}
	agent_spool_close(NULL);
	agent_spool_close(sp);
}

static void test_reload_keeps_order(void **state)
{
	const char *dir = *state;
	struct agent_spool *sp;
	int kinds[30];
	uint64_t seqs[30];
	size_t n = 0;

	assert_int_equal(agent_spool_open(dir, 1 << 20, true, &sp), 0);
	for (uint64_t i = 1; i <= 20; i++) {
		int kind = i % 3 == 0 ? AGENT_SPOOL_EVENT : AGENT_SPOOL_SUMMARY;

		append_one(sp, kind, BOOT, i, (size_t)(i * 37 % 500));
	}
	agent_spool_close(sp);

	assert_int_equal(agent_spool_open(dir, 1 << 20, true, &sp), 0);
	for (uint64_t i = 1; i <= 20; i++) {
		kinds[n] = i % 3 == 0 ? AGENT_SPOOL_EVENT : AGENT_SPOOL_SUMMARY;
		seqs[n++] = i;
	}
	expect_contents(sp, kinds, seqs, n);
	{
		struct agent_spool_batch b = { 0 };

		assert_int_equal(agent_spool_peek(sp, 1, SIZE_MAX, &b), 0);
		assert_string_equal(b.msgs[0].boot_id, BOOT);
		agent_spool_batch_free(&b);
	}
	/* Remove a few (one twice, one unknown), add more, restart again. */
	assert_int_equal(agent_spool_remove(sp, BOOT, 1), 0);
	assert_int_equal(agent_spool_remove(sp, BOOT, 2), 0);
	assert_int_equal(agent_spool_remove(sp, BOOT, 2), 0);
	assert_int_equal(agent_spool_remove(sp, BOOT, 999), 0);
	assert_int_equal(agent_spool_remove(sp, "other", 5), 0);
	assert_int_equal(agent_spool_remove(sp, BOOT, 10), 0);
	append_one(sp, AGENT_SPOOL_CHUNK, "newboot", 1, 3);
	agent_spool_close(sp);

	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	n = 0;
	for (uint64_t i = 3; i <= 20; i++) {
		if (i == 10)
			continue;
		kinds[n] = i % 3 == 0 ? AGENT_SPOOL_EVENT : AGENT_SPOOL_SUMMARY;
		seqs[n++] = i;
	}
	kinds[n] = AGENT_SPOOL_CHUNK;
	seqs[n++] = 1;
	expect_contents(sp, kinds, seqs, n);

	/* peek limits: by count, by bytes, but always at least one. */
	{
		struct agent_spool_batch b = { 0 };

		assert_int_equal(agent_spool_peek(sp, 4, SIZE_MAX, &b), 0);
		assert_int_equal(b.n, 4);
		assert_true(b.msgs[0].seq == 3 && b.msgs[3].seq == 6);
		/* peek frees what the batch held */
		assert_int_equal(agent_spool_peek(sp, 100, 1, &b), 0);
		assert_int_equal(b.n, 1);
		assert_true(b.msgs[0].seq == 3);
		assert_int_equal(agent_spool_peek(sp, 100, (3 * 37 % 500) + (4 * 37 % 500), &b), 0);
		assert_int_equal(b.n, 2);
		assert_true(b.bytes == (3 * 37 % 500) + (4 * 37 % 500));
		agent_spool_batch_free(&b);
		agent_spool_batch_free(&b);
	}
	agent_spool_close(sp);

	/* The cap shrank across a restart: the oldest summaries go. */
	assert_int_equal(agent_spool_open(dir, 2000, false, &sp), 0);
	assert_true(agent_spool_bytes(sp) <= 2000);
	assert_true(agent_spool_dropped_total(sp) > 0);
	{
		struct agent_spool_batch b = { 0 };

		assert_int_equal(agent_spool_peek(sp, 100, SIZE_MAX, &b), 0);
		/* every event is still there */
		assert_int_equal(b.n, agent_spool_count(sp));
		size_t ev = 0;

		for (size_t i = 0; i < b.n; i++) {
			if (b.msgs[i].kind == AGENT_SPOOL_EVENT)
				assert_true(b.msgs[i].seq == (uint64_t)(++ev) * 3);
		}
		assert_int_equal(ev, 6);
		agent_spool_batch_free(&b);
	}
	agent_spool_close(sp);
}

static void test_seq_never_reused(void **state)
{
	const char *dir = *state;
	char state_path[512], saved[512];
	struct agent_spool *sp;
	uint64_t seq, last = 0;
	int fd;
	ssize_t saved_len;

	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	/* a fresh boot starts at the wall clock in microseconds, above what a
	 * lost spool of the same boot could have used */
	{
		struct timespec ts;
		uint64_t now_us;

		clock_gettime(CLOCK_REALTIME, &ts);
		now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
		assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
		assert_true(seq > now_us - 1000000 && seq <= now_us + 1000000);
		last = seq;
	}
	assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
	assert_true(seq == last + 1);
	assert_int_equal(agent_spool_next_seq(sp, "bad boot", &seq), -EINVAL);
	agent_spool_close(sp);

	/* Many restarts, with and without appends: strictly increasing. */
	last = seq;
	for (int round = 0; round < 5; round++) {
		assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
		for (int i = 0; i < 700; i++) {
			assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
			assert_true(seq > last);
			last = seq;
		}
		if (round % 2)
			append_one(sp, AGENT_SPOOL_SUMMARY, BOOT, seq, 8);
		agent_spool_close(sp);
	}

	/* Simulated crash with the reservation file ahead of what was used:
	 * the next run continues above the reservation. */
	snprintf(state_path, sizeof(state_path), "%s/state", dir);
	fd = open(state_path, O_RDONLY);
	assert_true(fd >= 0);
	saved_len = read(fd, saved, sizeof(saved));
	close(fd);
	assert_true(saved_len > 0);
	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
	assert_true(seq > last);
	last = seq;
	/* (no close: the process "dies" here; nothing else to flush) */
	agent_spool_close(sp);

	/* The reverse: the state file is older than the spool's contents
	 * (restored from the saved copy, then removed altogether). */
	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	for (int i = 0; i < 2500; i++)
		assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
	assert_true(seq > last);
	last = seq;
	append_one(sp, AGENT_SPOOL_EVENT, BOOT, seq, 8);
	agent_spool_close(sp);
	fd = open(state_path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, saved, (size_t)saved_len), saved_len);
	close(fd);
	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
	assert_true(seq > last);
	last = seq;
	append_one(sp, AGENT_SPOOL_EVENT, BOOT, seq, 8);
	agent_spool_close(sp);
	/* State file gone: the spool's contents alone keep the numbering up. */
	assert_int_equal(unlink(state_path), 0);
	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
	assert_true(seq > last);

	/* A new boot starts afresh (at the clock), and keeps going across a
	 * restart. */
	assert_int_equal(agent_spool_next_seq(sp, "boot-two", &seq), 0);
	last = seq;
	assert_int_equal(agent_spool_next_seq(sp, "boot-two", &seq), 0);
	assert_true(seq == last + 1);
	last = seq;
	agent_spool_close(sp);
	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	assert_int_equal(agent_spool_next_seq(sp, "boot-two", &seq), 0);
	assert_true(seq > last);
	agent_spool_close(sp);
}

static void test_file_names_sort_in_append_order(void **state)
{
	const char *dir = *state;
	struct agent_spool *sp;
	struct dirent **names;
	int n;

	for (int round = 0; round < 3; round++) {
		assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
		for (int i = 0; i < 4; i++)
			append_one(sp, AGENT_SPOOL_EVENT, BOOT, (uint64_t)(round * 4 + i + 1), 10);
		/* drain most of it: a drained spool must still continue upwards */
		if (round == 1) {
			for (int i = 1; i <= 8; i++)
				assert_int_equal(agent_spool_remove(sp, BOOT, (uint64_t)i), 0);
		}
		agent_spool_close(sp);
	}
	n = entry_files(dir, &names);
	assert_int_equal(n, 4);
	for (int i = 1; i < n; i++) {
		assert_int_equal(strlen(names[i]->d_name), 24);
		assert_true(strcmp(names[i - 1]->d_name, names[i]->d_name) < 0);
	}
	free_names(names, n);
	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	expect_contents(sp, (int[]){ 2, 2, 2, 2 }, (uint64_t[]){ 9, 10, 11, 12 }, 4);
	agent_spool_close(sp);
}

static void corrupt_file(const char *dir, const char *name, long off, bool truncate_it)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	if (truncate_it) {
		assert_int_equal(ftruncate(fd, off), 0);
	} else {
		uint8_t c;

		assert_int_equal(pread(fd, &c, 1, off), 1);
		c ^= 0x40;
		assert_int_equal(pwrite(fd, &c, 1, off), 1);
	}
	close(fd);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_corrupt_entries(void **state)
{
	const char *dir = *state;
	char path[512];
	struct agent_spool *sp;
	struct dirent **names;
	int n;

	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	for (uint64_t i = 1; i <= 6; i++)
		append_one(sp, AGENT_SPOOL_EVENT, BOOT, i, 100);
	agent_spool_close(sp);

	n = entry_files(dir, &names);
	assert_int_equal(n, 6);
	corrupt_file(dir, names[1]->d_name, 80, false); /* a data byte flipped */
	corrupt_file(dir, names[3]->d_name, 60, true);  /* truncated */
	corrupt_file(dir, names[4]->d_name, 10, true);  /* truncated inside the header */
	free_names(names, n);
	write_file(dir, "00000000000000999999.msg", "xyz");
	write_file(dir, "00000000000001000000.msg.tmp", "half-written");
	write_file(dir, "state.tmp", "half-written");
	write_file(dir, "README", "not ours");

	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	assert_true(agent_spool_corrupt_total(sp) == 4);
	expect_contents(sp, (int[]){ 2, 2, 2 }, (uint64_t[]){ 1, 3, 6 }, 3);
	snprintf(path, sizeof(path), "%s/00000000000001000000.msg.tmp", dir);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/state.tmp", dir);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/README", dir);
	assert_int_equal(access(path, F_OK), 0);
	n = entry_files(dir, &names);
	assert_int_equal(n, 3);

	/* Broken or missing while open: found at peek, removed and counted. */
	corrupt_file(dir, names[0]->d_name, 30, false); /* in the boot id */
	snprintf(path, sizeof(path), "%s/%s", dir, names[1]->d_name);
	assert_int_equal(unlink(path), 0);
	free_names(names, n);
	expect_contents(sp, (int[]){ 2 }, (uint64_t[]){ 6 }, 1);
	assert_true(agent_spool_corrupt_total(sp) == 6);
	/* New entries go after everything that was there, even the junk name. */
	append_one(sp, AGENT_SPOOL_EVENT, BOOT, 7, 10);
	agent_spool_close(sp);
	n = entry_files(dir, &names);
	assert_int_equal(n, 2);
	assert_true(strcmp(names[1]->d_name, "00000000000000999999.msg") > 0);
	free_names(names, n);
	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	expect_contents(sp, (int[]){ 2, 2 }, (uint64_t[]){ 6, 7 }, 2);
	agent_spool_close(sp);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *wake_later(void *arg)
{
	usleep(50 * 1000);
	agent_spool_wake(arg);
	return NULL;
}

static void test_wait_and_wake(void **state)
{
	const char *dir = *state;
	struct agent_spool *sp;
	pthread_t t;
	int64_t t0;

	assert_int_equal(agent_spool_open(dir, 1 << 20, false, &sp), 0);
	t0 = now_ms();
	assert_int_equal(agent_spool_wait(sp, 30), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 25);
	assert_int_equal(agent_spool_wait(sp, 0), -ETIMEDOUT);

	assert_int_equal(pthread_create(&t, NULL, wake_later, sp), 0);
	t0 = now_ms();
	assert_int_equal(agent_spool_wait(sp, -1), -EINTR);
	assert_true(now_ms() - t0 < 5000);
	pthread_join(t, NULL);

	/* A wake with nobody waiting is kept for the next wait, once. */
	agent_spool_wake(sp);
	assert_int_equal(agent_spool_wait(sp, -1), -EINTR);
	assert_int_equal(agent_spool_wait(sp, 0), -ETIMEDOUT);

	append_one(sp, AGENT_SPOOL_EVENT, BOOT, 1, 1);
	assert_int_equal(agent_spool_wait(sp, -1), 0);
	assert_int_equal(agent_spool_wait(sp, 0), 0);
	agent_spool_close(sp);
}

#define N_THREADED 3000

struct reader_ctx {
	struct agent_spool *sp;
	uint64_t received, last_seq;
	bool in_order;
};

static void *reader_main(void *arg)
{
	struct reader_ctx *r = arg;
	struct agent_spool_batch b = { 0 };

	for (;;) {
		int err = agent_spool_wait(r->sp, 2000);

		if (err == -EINTR)
			break; /* writer done and spool drained */
		if (err)
			continue;
		/* No cmocka asserts off the test's thread: record instead. */
		if (agent_spool_peek(r->sp, 16, 4096, &b) != 0) {
			r->in_order = false;
			break;
		}
		for (size_t i = 0; i < b.n; i++) {
			uint8_t want[256];

			if (b.msgs[i].seq <= r->last_seq)
				r->in_order = false;
			r->last_seq = b.msgs[i].seq;
			fill(want, b.msgs[i].len, b.msgs[i].seq);
			if (b.msgs[i].len > sizeof(want) ||
			    memcmp(want, b.msgs[i].data, b.msgs[i].len) != 0)
				r->in_order = false;
			r->received++;
			if (agent_spool_remove(r->sp, b.msgs[i].boot_id, b.msgs[i].seq) != 0)
				r->in_order = false;
		}
	}
	agent_spool_batch_free(&b);
	return NULL;
}

static void test_two_threads(void **state)
{
	const char *dir = *state;
	struct reader_ctx r = { .in_order = true };
	struct agent_spool *sp;
	pthread_t t;
	uint64_t last = 0;

	/* Small cap: the writer outpaces the reader now and then, so drops
	 * happen while the reader reads. */
	assert_int_equal(agent_spool_open(dir, 40 * (AGENT_SPOOL_HDR_SIZE + 36 + 200), false, &sp),
			 0);
	r.sp = sp;
	assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
	for (int i = 0; i < N_THREADED; i++) {
		uint64_t seq;

		assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
		assert_true(seq > last);
		last = seq;
		append_one(sp, i % 5 ? AGENT_SPOOL_SUMMARY : AGENT_SPOOL_EVENT, BOOT, seq,
			   (size_t)(i % 200));
		(void)agent_spool_bytes(sp);
	}
	for (int i = 0; i < 1000 && agent_spool_count(sp) > 0; i++)
		usleep(5000);
	agent_spool_wake(sp);
	pthread_join(t, NULL);

	assert_true(r.in_order);
	assert_int_equal(agent_spool_count(sp), 0);
	assert_true(agent_spool_bytes(sp) == 0);
	/* An entry read just before a drop deletes it counts on both sides. */
	assert_true(r.received <= N_THREADED);
	assert_true(r.received + agent_spool_dropped_total(sp) >= N_THREADED);
	assert_true(r.received > 0);
	assert_true(agent_spool_corrupt_total(sp) == 0);
	agent_spool_close(sp);
}

/* A full file system before the cap: on a 128 KiB tmpfs (root only) the
 * spool keeps taking appends by dropping its oldest entries, counts them,
 * and what it keeps is the newest data, intact, also after a reopen. */
static void test_disk_full(void **state)
{
	const char *dir = *state;
	struct agent_spool *sp;
	struct agent_spool_batch b = { 0 };
	uint8_t want[4096];
	uint64_t seq = 0, first_kept;
	size_t n;

	if (geteuid() != 0 || mount("tmpfs", dir, "tmpfs", 0, "size=128k,mode=0700") != 0) {
		fprintf(stderr, "SKIP test_disk_full: cannot mount a small tmpfs (%s)\n",
			geteuid() ? "not root" : strerror(errno));
		skip();
	}
	assert_int_equal(agent_spool_open(dir, 64u << 20, false, &sp), 0);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
		append_one(sp, AGENT_SPOOL_SUMMARY, BOOT, seq, 4000);
	}
	/* an event when the disk is full: a summary makes room */
	assert_int_equal(agent_spool_next_seq(sp, BOOT, &seq), 0);
	append_one(sp, AGENT_SPOOL_EVENT, BOOT, seq, 3000);
	n = agent_spool_count(sp);
	print_message("128 KiB tmpfs: %zu entries kept, %llu dropped for a full disk\n", n,
		      (unsigned long long)agent_spool_disk_full_total(sp));
	assert_true(n >= 10 && n < 40);
	assert_int_equal(agent_spool_disk_full_total(sp), 101 - n);
	assert_int_equal(agent_spool_dropped_total(sp), 101 - n);
	agent_spool_close(sp);

	/* reopened: the newest entries, consecutive, intact, none corrupt */
	assert_int_equal(agent_spool_open(dir, 64u << 20, false, &sp), 0);
	assert_int_equal(agent_spool_count(sp), n);
	assert_int_equal(agent_spool_corrupt_total(sp), 0);
	assert_int_equal(agent_spool_peek(sp, 1000, SIZE_MAX, &b), 0);
	assert_int_equal(b.n, n);
	first_kept = b.msgs[0].seq;
	for (size_t i = 0; i < b.n; i++) {
		assert_true(b.msgs[i].seq == first_kept + i);
		fill(want, b.msgs[i].len, b.msgs[i].seq);
		assert_memory_equal(b.msgs[i].data, want, b.msgs[i].len);
	}
	assert_int_equal(b.msgs[b.n - 1].kind, AGENT_SPOOL_EVENT);
	assert_true(b.msgs[b.n - 1].seq == seq);
	agent_spool_batch_free(&b);
	agent_spool_close(sp);
}

static int teardown_mount(void **state)
{
	umount2(*state, MNT_DETACH);
	return teardown_dir(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cap_drops_oldest_summaries, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_msgsize, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_reload_keeps_order, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_seq_never_reused, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_file_names_sort_in_append_order, setup_dir,
						teardown_dir),
		cmocka_unit_test_setup_teardown(test_corrupt_entries, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_wait_and_wake, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_two_threads, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_disk_full, setup_dir, teardown_mount),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
