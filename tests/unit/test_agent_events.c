/* test_agent_events.c: the event path's rate limit. A burst of a kind goes
 * out, the rest is suppressed and counted (and reported with the next event
 * sent), other kinds are not affected, and a spike longer than every one
 * of its kind sent recently still passes an empty bucket (a few times a
 * minute), so a storm of small spikes never hides the worst one; an event
 * with a negative duration is dropped and counted, never sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "spool.h"
#include "timeutil.h"

#define HOST "0123456789abcdef0123456789abcdef"
#define BOOT "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

static Spikehound__SpikeEvent *mkev(const char *kind, int64_t ms)
{
	Spikehound__SpikeEvent *ev = malloc(sizeof(*ev));

	assert_non_null(ev);
	spikehound__spike_event__init(ev);
	ev->kind = strdup(kind);
	assert_non_null(ev->kind);
	ev->start_ns = sh_now_wall_ns() - ms * SH_NS_PER_MS;
	ev->duration_ns = ms * SH_NS_PER_MS;
	return ev;
}

static int emit(struct agent_events *e, const char *kind, int64_t ms)
{
	return agent_events_emit(e, mkev(kind, ms), NULL, 0);
}

static void test_rate_limit_keeps_the_worst(void **state)
{
	struct agent_events_opts o = { 0 };
	struct agent_events *e;
	struct agent_events_stats st;
	struct agent_spool *sp;
	struct agent_spool_batch b = { 0 };
	char dir[] = "/tmp/sh-events-test-XXXXXX", cmd[64];
	static const int64_t want_ms[] = { 1, 1, 1, 1, 1, 50, 60, 2, 70, 80, 90 };
	static const uint64_t want_suppressed[] = { 0, 0, 0, 0, 0, 11, 2, 0, 0, 0, 0 };
	size_t n_runq = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(agent_spool_open(dir, 64u << 20, false, &sp), 0);
	o.spool = sp;
	o.host_id = HOST;
	o.boot_id = BOOT;
	o.burst = 5;
	o.per_minute = 1; /* no refill to speak of while the test runs */
	o.delay_ns = 1;
	assert_int_equal(agent_events_new(&o, &e), 0);

	for (int i = 0; i < 5; i++)
		assert_int_equal(emit(e, "runq", 1), 0);
	/* the bucket is empty: spikes no longer than the longest sent wait */
	for (int i = 0; i < 11; i++)
		assert_int_equal(emit(e, "runq", 1), -EBUSY);
	/* longer than every runq spike sent: through */
	assert_int_equal(emit(e, "runq", 50), 0);
	assert_int_equal(emit(e, "runq", 40), -EBUSY);
	assert_int_equal(emit(e, "runq", 50), -EBUSY);
	assert_int_equal(emit(e, "runq", 60), 0);
	/* another kind has its own bucket */
	assert_int_equal(emit(e, "syscall", 2), 0);
	/* escalations are bounded (o.escalations defaults to the burst: 5) */
	assert_int_equal(emit(e, "runq", 70), 0);
	assert_int_equal(emit(e, "runq", 80), 0);
	assert_int_equal(emit(e, "runq", 90), 0);
	assert_int_equal(emit(e, "runq", 100), -EBUSY);
	/* a negative duration (a detector's clocks disagreed): dropped, counted */
	assert_int_equal(emit(e, "runq", -5), -EINVAL);

	agent_events_get_stats(e, &st);
	assert_int_equal(st.emitted, 26);
	assert_int_equal(st.suppressed, 14);
	assert_int_equal(st.escalated, 5);
	assert_int_equal(st.invalid, 1);

	agent_events_flush(e);
	assert_int_equal(agent_spool_peek(sp, 1000, 1u << 30, &b), 0);
	assert_int_equal(b.n, 11);
	for (size_t i = 0; i < b.n; i++) {
		Spikehound__AgentMessage *m =
			spikehound__agent_message__unpack(NULL, b.msgs[i].len, b.msgs[i].data);

		assert_non_null(m);
		assert_int_equal(m->body_case, SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT);
		assert_int_equal(m->event->duration_ns, want_ms[i] * SH_NS_PER_MS);
		if (strcmp(m->event->kind, "runq") == 0) {
			n_runq++;
			assert_int_equal(m->event->suppressed_before, want_suppressed[i]);
		} else {
			assert_string_equal(m->event->kind, "syscall");
		}
		spikehound__agent_message__free_unpacked(m, NULL);
	}
	assert_int_equal(n_runq, 10);
	agent_events_get_stats(e, &st);
	assert_int_equal(st.sent, 11);

	agent_spool_batch_free(&b);
	agent_events_free(e);
	agent_spool_close(sp);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rate_limit_keeps_the_worst),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
