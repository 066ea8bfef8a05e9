/* test_agent_acct.c: the "acct" detector's logic (incident E): the
 * /proc/PID/stat and schedstat parsers on hostile text and a fake /proc
 * tree (tests/unit/data/acct-a), and the divergence rule on synthetic
 * timelines: the kernel bug's pattern (utime+stime frozen while the
 * scheduler's runtime grows, then a jump) is flagged once, with the jump;
 * healthy, idle, briefly diverging, exited, pid-reused and thread-churning
 * processes are not; the busiest-N selection still finds a frozen process
 * and keeps a suspect under watch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acct.h"

#define SEC 1000000000LL
#define MS 1000000LL
#define STEP (5 * SEC)
#define MAXP 32

/* ---- a simulated host: processes whose counters the test moves ---- */

struct sim_proc {
	int32_t pid;
	uint64_t start;
	const char *comm;
	int64_t stat_ns;  /* utime + stime */
	int64_t sched_ns; /* every thread's runtime */
	int64_t main_ns;  /* the main thread's runtime (cheap sample); -1: = sched_ns */
	uint32_t threads;
	uint64_t sig;
	int alive;
};

struct sim {
	struct agent_acct *a;
	struct sim_proc p[MAXP];
	size_t n;
	int64_t now;
	struct agent_acct_finding found[64];
	size_t nfound;
	int32_t examined[MAXP];
	size_t nexamined;
};

static void collect_cb(void *arg, const struct agent_acct_finding *f)
{
	struct sim *s = arg;

	assert_true(s->nfound < 64);
	s->found[s->nfound++] = *f;
}

static struct sim *sim_new(const struct agent_acct_opts *o)
{
	struct sim *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	assert_int_equal(agent_acct_new(o, &s->a), 0);
	s->now = 1000 * SEC;
	return s;
}

static void sim_free(struct sim *s)
{
	agent_acct_free(s->a);
	free(s);
}

static struct sim_proc *sim_add(struct sim *s, int32_t pid, const char *comm)
{
	struct sim_proc *p = &s->p[s->n++];

	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->start = 1000 + (uint64_t)pid;
	p->comm = comm;
	p->main_ns = -1;
	p->threads = 1;
	p->sig = (uint64_t)pid * 7919;
	p->alive = 1;
	return p;
}

/* run advances p by one interval (fill reports stat in whole clock ticks,
 * 10 ms, as the kernel does). */
static void run(struct sim_proc *p, int64_t sched_ns, int64_t stat_ns)
{
	p->sched_ns += sched_ns;
	p->stat_ns += stat_ns;
}

static void fill(struct agent_acct_sample *x, const struct sim_proc *p, int full)
{
	memset(x, 0, sizeof(*x));
	x->pid = p->pid;
	x->start_ticks = p->start;
	x->threads = p->threads;
	x->stat_ns = p->stat_ns / (10 * MS) * (10 * MS);
	x->sched_ns = full || p->main_ns < 0 ? p->sched_ns : p->main_ns;
	x->threads_sig = full ? p->sig : 0;
	snprintf(x->comm, sizeof(x->comm), "%s", p->comm);
}

/* sim_check is one check: rank on cheap samples, then check full samples
 * of the examined processes. Returns the findings it made. */
static size_t sim_check(struct sim *s)
{
	struct agent_acct_sample cheap[MAXP], full[MAXP];
	size_t nc = 0, nf = 0, before = s->nfound, found;

	for (size_t i = 0; i < s->n; i++)
		if (s->p[i].alive)
			fill(&cheap[nc++], &s->p[i], 0);
	assert_true(agent_acct_due(s->a, s->now));
	s->nexamined = agent_acct_rank(s->a, cheap, nc, s->examined, MAXP);
	for (size_t k = 0; k < s->nexamined; k++)
		for (size_t i = 0; i < s->n; i++)
			if (s->p[i].alive && s->p[i].pid == s->examined[k])
				fill(&full[nf++], &s->p[i], 1);
	found = agent_acct_check(s->a, s->now, full, nf, collect_cb, s);
	assert_int_equal(found, s->nfound - before);
	s->now += STEP;
	return found;
}

static int examined(const struct sim *s, int32_t pid)
{
	for (size_t k = 0; k < s->nexamined; k++)
		if (s->examined[k] == pid)
			return 1;
	return 0;
}

/* ---- parsers ---- */

static void test_parse_stat(void **state)
{
	struct agent_acct_sample s;
	const char *line = "4242 (redis (x) srv) R 1 4242 4242 0 -1 4194560 10 0 0 0 "
			   "1234 56 0 0 20 -5 4 0 777 100000 200 18446744073709551615 1 1 0\n";

	(void)state;
	assert_int_equal(agent_acct_parse_stat(line, 100, &s), 0);
	assert_int_equal(s.pid, 4242);
	assert_string_equal(s.comm, "redis (x) srv");
	assert_int_equal(s.stat_ns, (1234 + 56) * 10 * MS);
	assert_int_equal(s.threads, 4);
	assert_int_equal(s.start_ticks, 777);
	/* USER_HZ 250 */
	assert_int_equal(agent_acct_parse_stat(line, 250, &s), 0);
	assert_int_equal(s.stat_ns, (1234 + 56) * 4 * MS);
	/* an overlong comm is cut, not overflowed */
	assert_int_equal(agent_acct_parse_stat("7 (aaaaaaaaaaaaaaaaaaaaaaaaaaaaa) S 1 1 1 0 -1 0 0 0 0 0 "
					       "1 1 0 0 20 0 1 0 5 0",
					       100, &s),
			 0);
	assert_int_equal(strlen(s.comm), AGENT_ACCT_COMM_LEN - 1);

	assert_int_equal(agent_acct_parse_stat("", 100, &s), -EINVAL);
	assert_int_equal(agent_acct_parse_stat("12 (x", 100, &s), -EINVAL);
	assert_int_equal(agent_acct_parse_stat("12 (x) S 1 2 3", 100, &s), -EINVAL);
	assert_int_equal(agent_acct_parse_stat("x (y) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5",
					       100, &s),
			 -EINVAL);
	assert_int_equal(agent_acct_parse_stat("12 (x) S", 100, &s), -EINVAL);
	assert_int_equal(agent_acct_parse_stat(line, 0, &s), -EINVAL);
}

static void test_parse_schedstat(void **state)
{
	int64_t v = -1;

	(void)state;
	assert_int_equal(agent_acct_parse_schedstat("2578982 5635669 3\n", &v), 0);
	assert_int_equal(v, 2578982);
	assert_int_equal(agent_acct_parse_schedstat("18000000000", &v), 0);
	assert_int_equal(v, 18000000000LL);
	assert_int_equal(agent_acct_parse_schedstat("", &v), -EINVAL);
	assert_int_equal(agent_acct_parse_schedstat("abc 1 2", &v), -EINVAL);
	assert_int_equal(agent_acct_parse_schedstat("12x 1 2", &v), -EINVAL);
}

static void test_fake_tree(void **state)
{
	const char *root = SH_TEST_DATA "/acct-a";
	struct agent_acct_sample *v = NULL, s;
	size_t n = 0;
	int seen = 0;

	(void)state;
	assert_int_equal(agent_acct_scan(root, 100, &v, &n), 0);
	assert_int_equal(n, 2); /* 300's stat is truncated, "abc" is no pid */
	for (size_t i = 0; i < n; i++) {
		if (v[i].pid == 100) {
			assert_string_equal(v[i].comm, "redis-server");
			assert_int_equal(v[i].stat_ns, 3 * SEC);
			assert_int_equal(v[i].sched_ns, 3 * SEC);
			assert_int_equal(v[i].threads, 1);
			assert_int_equal(v[i].start_ticks, 12345);
			seen |= 1;
		} else {
			assert_int_equal(v[i].pid, 200);
			assert_string_equal(v[i].comm, "my (odd) app");
			assert_int_equal(v[i].stat_ns, 2 * SEC);
			assert_int_equal(v[i].sched_ns, 1500 * MS); /* the main thread's */
			assert_int_equal(v[i].threads, 2);
			seen |= 2;
		}
	}
	assert_int_equal(seen, 3);
	free(v);

	assert_int_equal(agent_acct_read_full(root, 200, 100, &s), 0);
	assert_int_equal(s.sched_ns, 4 * SEC); /* 1.5 s + 2.5 s */
	assert_true(s.threads_sig != 0);
	assert_int_equal(agent_acct_read_full(root, 100, 100, &s), 0);
	assert_int_equal(s.sched_ns, 3 * SEC);
	assert_int_not_equal(agent_acct_read_cheap(root, 300, 100, &s), 0);
	assert_int_equal(agent_acct_read_full(root, 999, 100, &s), -ENOENT);
	assert_int_equal(agent_acct_read_cheap(root, 999, 100, &s), -ENOENT);
	assert_true(agent_acct_scan(SH_TEST_DATA "/no-such-dir", 100, &v, &n) < 0);
}

/* ---- the rule ---- */

/* The bug: a busy process whose stat stops while the scheduler runs it,
 * next to a healthy busy process and an idle one; then the jump. */
static void test_frozen_then_jump(void **state)
{
	struct sim *s = sim_new(NULL);
	struct sim_proc *bug = sim_add(s, 100, "redis-server");
	struct sim_proc *ok = sim_add(s, 200, "nginx");
	struct sim_proc *idle = sim_add(s, 300, "sshd");
	int64_t frozen_from;

	(void)state;
	for (int i = 0; i < 4; i++) { /* all healthy */
		run(bug, 1 * SEC, 1 * SEC);
		run(ok, 2500 * MS, 2500 * MS);
		run(idle, 1 * MS, 0);
		assert_int_equal(sim_check(s), 0);
	}
	frozen_from = s->now - STEP; /* the last healthy check */
	for (int i = 1; i <= 6; i++) {
		run(bug, 1 * SEC, 0); /* utime+stime frozen */
		run(ok, 2500 * MS + (i % 2) * 7 * MS, 2500 * MS + (i % 2) * 7 * MS);
		run(idle, 1 * MS, 0);
		assert_int_equal(sim_check(s), i == 3 ? 1 : 0);
		assert_true(examined(s, 100));
	}
	assert_int_equal(s->nfound, 1);
	assert_int_equal(s->found[0].pid, 100);
	assert_string_equal(s->found[0].comm, "redis-server");
	assert_int_equal(s->found[0].pattern, AGENT_ACCT_FROZEN);
	assert_string_equal(agent_acct_pattern_name(s->found[0].pattern), "stat_frozen");
	assert_int_equal(s->found[0].stat_ns, 0);
	assert_int_equal(s->found[0].sched_ns, 3 * SEC);
	assert_int_equal(s->found[0].checks, 3);
	assert_int_equal(s->found[0].from_ns, frozen_from);
	assert_int_equal(s->found[0].to_ns, frozen_from + 3 * STEP);

	/* the jump: stat catches up with the 6 s it missed */
	run(bug, 1 * SEC, 7 * SEC);
	run(ok, 2500 * MS, 2500 * MS);
	assert_int_equal(sim_check(s), 1);
	assert_int_equal(s->found[1].pid, 100);
	assert_int_equal(s->found[1].pattern, AGENT_ACCT_JUMP);
	assert_string_equal(agent_acct_pattern_name(AGENT_ACCT_JUMP), "stat_jump");
	assert_int_equal(s->found[1].stat_ns, 7 * SEC);
	assert_int_equal(s->found[1].sched_ns, 1 * SEC);

	/* healthy again: nothing more */
	for (int i = 0; i < 6; i++) {
		run(bug, 1 * SEC, 1 * SEC);
		run(ok, 2500 * MS, 2500 * MS);
		assert_int_equal(sim_check(s), 0);
	}
	sim_free(s);
}

/* Partial lag (stat at a third of the runtime) is "behind"; a process
 * whose stat runs ahead for long is "ahead". */
static void test_behind_and_ahead(void **state)
{
	struct sim *s = sim_new(NULL);
	struct sim_proc *lag = sim_add(s, 10, "lagger");
	struct sim_proc *fast = sim_add(s, 11, "racer");

	(void)state;
	for (int i = 0; i < 2; i++) {
		run(lag, 2 * SEC, 2 * SEC);
		run(fast, 1 * SEC, 1 * SEC);
		assert_int_equal(sim_check(s), 0);
	}
	for (int i = 1; i <= 4; i++) {
		run(lag, 3 * SEC, 1 * SEC);
		run(fast, 1 * SEC, 2 * SEC);
		assert_int_equal(sim_check(s), i == 3 ? 2 : 0);
	}
	assert_int_equal(s->nfound, 2);
	for (size_t i = 0; i < 2; i++) {
		if (s->found[i].pid == 10) {
			assert_int_equal(s->found[i].pattern, AGENT_ACCT_BEHIND);
			assert_int_equal(s->found[i].stat_ns, 3 * SEC);
			assert_int_equal(s->found[i].sched_ns, 9 * SEC);
		} else {
			assert_int_equal(s->found[i].pid, 11);
			assert_int_equal(s->found[i].pattern, AGENT_ACCT_AHEAD);
			assert_string_equal(agent_acct_pattern_name(AGENT_ACCT_AHEAD),
					    "stat_ahead_of_sched");
		}
	}
	/* a lag that ends without a jump: no jump finding */
	run(lag, 3 * SEC, 3 * SEC);
	run(fast, 1 * SEC, 1 * SEC);
	assert_int_equal(sim_check(s), 0);
	sim_free(s);
}

/* Divergence for fewer than 3 checks, small differences, and a jump with
 * no flagged freeze before it are not flagged. */
static void test_blips_not_flagged(void **state)
{
	struct sim *s = sim_new(NULL);
	struct sim_proc *p = sim_add(s, 42, "blippy");
	struct sim_proc *small = sim_add(s, 43, "small");

	(void)state;
	run(p, 1 * SEC, 1 * SEC);
	run(small, 400 * MS, 0);
	assert_int_equal(sim_check(s), 0);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 2; i++) { /* two diverging checks */
			run(p, 1 * SEC, 0);
			run(small, 400 * MS, 0); /* frozen, but under 0.5 CPU-s */
			assert_int_equal(sim_check(s), 0);
		}
		run(p, 1 * SEC, 3 * SEC); /* catches up: a jump, but nothing was flagged */
		run(small, 400 * MS, 1200 * MS);
		assert_int_equal(sim_check(s), 0);
		run(p, 1 * SEC, 1 * SEC);
		assert_int_equal(sim_check(s), 0);
	}
	/* 30% off is within the ratio */
	for (int i = 0; i < 6; i++) {
		run(p, 4 * SEC, 2800 * MS);
		assert_int_equal(sim_check(s), 0);
	}
	assert_int_equal(s->nfound, 0);
	sim_free(s);
}

/* A frozen process that exits before the third check is not flagged and
 * its state is forgotten; a reused pid starts over. */
static void test_exit_and_pid_reuse(void **state)
{
	struct sim *s = sim_new(NULL);
	struct sim_proc *p = sim_add(s, 77, "shortlived");
	struct sim_proc *q = sim_add(s, 78, "other");

	(void)state;
	run(p, 1 * SEC, 1 * SEC);
	run(q, 1 * SEC, 1 * SEC);
	sim_check(s);
	run(p, 1 * SEC, 1 * SEC);
	run(q, 1 * SEC, 1 * SEC);
	sim_check(s);
	for (int i = 0; i < 2; i++) {
		run(p, 1 * SEC, 0);
		run(q, 1 * SEC, 1 * SEC);
		assert_int_equal(sim_check(s), 0);
	}
	assert_int_equal(agent_acct_tracked(s->a), 2);
	p->alive = 0;
	run(q, 1 * SEC, 1 * SEC);
	assert_int_equal(sim_check(s), 0);
	assert_int_equal(agent_acct_tracked(s->a), 1);

	/* the pid comes back as another process, with smaller counters:
	 * baseline, not a negative delta or a continued streak */
	p->alive = 1;
	p->start += 5000;
	p->stat_ns = 0;
	p->sched_ns = 0;
	p->comm = "newcomer";
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0); /* ranked only: no earlier counters */
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0); /* first full sample */
	for (int i = 1; i <= 3; i++) {
		run(p, 1 * SEC, 0);
		assert_int_equal(sim_check(s), i == 3 ? 1 : 0);
	}
	assert_int_equal(s->found[0].pid, 77);
	assert_string_equal(s->found[0].comm, "newcomer");
	sim_free(s);
}

/* A multi-threaded process whose thread exits loses that thread's runtime
 * from the sum: that check is neither a divergence nor the end of one. */
static void test_thread_churn(void **state)
{
	struct sim *s = sim_new(NULL);
	struct sim_proc *mt = sim_add(s, 500, "java");
	struct sim_proc *bug = sim_add(s, 501, "redis-mt");

	(void)state;
	mt->threads = 8;
	mt->main_ns = 0; /* the main thread sleeps; workers burn */
	bug->threads = 4;
	for (int i = 0; i < 3; i++) {
		run(mt, 4 * SEC, 4 * SEC);
		run(bug, 2 * SEC, 2 * SEC);
		bug->main_ns = bug->sched_ns / 4;
		assert_int_equal(sim_check(s), 0);
	}
	/* a worker with 30 s of runtime exits: the sum drops, stat does not */
	mt->sched_ns -= 30 * SEC;
	mt->threads = 7;
	mt->sig ^= 0x1234;
	run(mt, 4 * SEC, 4 * SEC);
	run(bug, 2 * SEC, 0);
	bug->main_ns = bug->sched_ns / 4;
	assert_int_equal(sim_check(s), 0);
	/* the frozen one: a thread is born in the middle of its freeze */
	bug->sig ^= 0x77;
	run(mt, 4 * SEC, 4 * SEC);
	run(bug, 2 * SEC, 0);
	bug->main_ns = bug->sched_ns / 4;
	assert_int_equal(sim_check(s), 0); /* held, not counted */
	run(mt, 4 * SEC, 4 * SEC);
	run(bug, 2 * SEC, 0);
	bug->main_ns = bug->sched_ns / 4;
	assert_int_equal(sim_check(s), 0);
	run(mt, 4 * SEC, 4 * SEC);
	run(bug, 2 * SEC, 0);
	bug->main_ns = bug->sched_ns / 4;
	assert_int_equal(sim_check(s), 1); /* third diverging check */
	assert_int_equal(s->found[0].pid, 501);
	assert_int_equal(s->found[0].pattern, AGENT_ACCT_FROZEN);
	assert_int_equal(s->found[0].threads, 4);
	sim_free(s);
}

/* Only the busiest top_n are examined, by the larger of Δstat and the main
 * thread's Δruntime (a frozen stat does not hide a busy process), and a
 * suspect stays examined while busier processes come along. */
static void test_top_n(void **state)
{
	struct agent_acct_opts o = { .top_n = 3 };
	struct sim *s = sim_new(&o);
	struct sim_proc *bug, *p[10];

	(void)state;
	for (int i = 0; i < 10; i++)
		p[i] = sim_add(s, 1000 + i, "worker");
	bug = sim_add(s, 2000, "victim");
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 10; i++)
			run(p[i], 2 * SEC + i * 20 * MS, 2 * SEC + i * 20 * MS);
		run(bug, 3 * SEC, 3 * SEC);
		sim_check(s);
	}
	assert_int_equal(s->nexamined, 3);
	assert_true(examined(s, 2000));
	assert_true(examined(s, 1009));
	assert_true(examined(s, 1008));
	assert_false(examined(s, 1000));
	/* frozen: still the busiest by runtime */
	run(bug, 3 * SEC, 0);
	for (int i = 0; i < 10; i++)
		run(p[i], 2 * SEC, 2 * SEC);
	assert_int_equal(sim_check(s), 0);
	assert_true(examined(s, 2000));
	/* others get busier than the suspect: it is still examined */
	for (int k = 1; k <= 2; k++) {
		run(bug, 3 * SEC, 0);
		for (int i = 0; i < 10; i++)
			run(p[i], 5 * SEC, 5 * SEC);
		assert_int_equal(sim_check(s), k == 2 ? 1 : 0);
		assert_true(examined(s, 2000));
		assert_int_equal(s->nexamined, 4);
	}
	assert_int_equal(s->found[0].pid, 2000);
	sim_free(s);
}

/* Nonsense (counters going backwards) and long gaps rebaseline. */
static void test_bad_input_and_gaps(void **state)
{
	struct sim *s = sim_new(NULL);
	struct sim_proc *p = sim_add(s, 9, "weird");

	(void)state;
	for (int i = 0; i < 2; i++) {
		run(p, 1 * SEC, 1 * SEC);
		sim_check(s);
	}
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	p->stat_ns -= 50 * SEC; /* backwards */
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	/* a long pause of the agent: the next check is a new baseline */
	s->now += 60 * SEC;
	run(p, 13 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 0);
	run(p, 1 * SEC, 0);
	assert_int_equal(sim_check(s), 1);
	/* a check too soon is not due */
	assert_false(agent_acct_due(s->a, s->now - STEP + SEC));
	assert_true(agent_acct_due(s->a, s->now));
	agent_acct_free(NULL);
	assert_int_equal(agent_acct_check(s->a, s->now, NULL, 0, collect_cb, s), 0);
	assert_int_equal(agent_acct_rank(s->a, NULL, 0, NULL, 0), 0);
	assert_int_equal(agent_acct_tracked(s->a), 0);
	sim_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_stat),
		cmocka_unit_test(test_parse_schedstat),
		cmocka_unit_test(test_fake_tree),
		cmocka_unit_test(test_frozen_then_jump),
		cmocka_unit_test(test_behind_and_ahead),
		cmocka_unit_test(test_blips_not_flagged),
		cmocka_unit_test(test_exit_and_pid_reuse),
		cmocka_unit_test(test_thread_churn),
		cmocka_unit_test(test_top_n),
		cmocka_unit_test(test_bad_input_and_gaps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
