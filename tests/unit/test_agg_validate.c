/* test_agg_validate.c: what the aggregator refuses, and why (the reason
 * names are counted and shown to operators, so they are part of the API). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

#define NS 1000000000LL
#define HOST "0123456789abcdef0123456789abcdef"
#define BOOT "6f1c1a53-2a8e-4a63-9d2b-0c1a2b3c4d5e"

struct fixture {
	Spikehound__AgentRequest req;
	Spikehound__Hello hello;
	Spikehound__AgentMessage msg[3], *msgs[3];
	Spikehound__Summary sum;
	Spikehound__MetricSecond ms, *mss[1];
	Spikehound__SpikeEvent ev;
	Spikehound__Process proc, *procs[1];
	int64_t now;
	char hostname[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->now = 1763806867LL * NS;
	spikehound__agent_request__init(&f->req);
	spikehound__hello__init(&f->hello);
	strcpy(f->hostname, "web-1");
	f->hello.host_id = HOST;
	f->hello.boot_id = BOOT;
	f->hello.hostname = f->hostname;
	f->hello.kernel_release = "6.18.0";
	f->hello.boot_time_ns = f->now - 3600 * NS;
	f->req.hello = &f->hello;
	spikehound__summary__init(&f->sum);
	f->sum.start_ns = f->now - 10 * NS;
	f->sum.end_ns = f->now;
	spikehound__metric_second__init(&f->ms);
	f->ms.time_ns = f->now - 5 * NS;
	f->mss[0] = &f->ms;
	f->sum.metrics = f->mss;
	f->sum.n_metrics = 1;
	spikehound__process__init(&f->proc);
	f->proc.pid = 42;
	f->proc.ppid = 1;
	f->proc.comm = "atop";
	f->proc.cmdline = "atop -R -w /var/log/atop/x 600";
	f->proc.start_time_ns = f->now - 100 * NS;
	f->procs[0] = &f->proc;
	f->sum.started = f->procs;
	f->sum.n_started = 1;
	spikehound__spike_event__init(&f->ev);
	f->ev.kind = "mmap_lock_wait";
	f->ev.start_ns = f->now - NS;
	f->ev.duration_ns = 5000000;
	for (int i = 0; i < 3; i++) {
		spikehound__agent_message__init(&f->msg[i]);
		f->msg[i].host_id = HOST;
		f->msg[i].boot_id = BOOT;
		f->msg[i].seq = (uint64_t)i + 1;
		f->msg[i].created_ns = f->now;
		f->msgs[i] = &f->msg[i];
	}
	f->msg[0].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
	f->msg[0].summary = &f->sum;
	f->msg[1].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
	f->msg[1].event = &f->ev;
	f->msg[2].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
	f->msg[2].event = &f->ev;
	f->req.messages = f->msgs;
	f->req.n_messages = 3;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static const char *check(struct fixture *f, const char **r)
{
	struct agg_limits l;

	agg_limits_default(&l);
	return agg_validate_request(&f->req, f->now, &l, r);
}

static void test_good(void **state)
{
	struct fixture *f = *state;
	const char *r[3];

	assert_null(check(f, r));
	assert_null(r[0]);
	assert_null(r[1]);
	assert_null(r[2]);
}

static void test_request_level(void **state)
{
	struct fixture *f = *state;
	const char *r[3];

	f->req.hello = NULL;
	assert_string_equal(check(f, r), "no_hello");
	f->req.hello = &f->hello;
	f->hello.host_id = "not-a-uuid";
	assert_string_equal(check(f, r), "bad_host_id");
	f->hello.host_id = HOST;
	f->hello.boot_id = "";
	assert_string_equal(check(f, r), "bad_boot_id");
	f->hello.boot_id = BOOT;
	f->hello.hostname = malloc(1 << 20);
	memset(f->hello.hostname, 'a', (1 << 20) - 1);
	f->hello.hostname[(1 << 20) - 1] = '\0';
	assert_string_equal(check(f, r), "string_too_long");
	free(f->hello.hostname);
	f->hello.hostname = f->hostname;
}

static void test_message_level(void **state)
{
	struct fixture *f = *state;
	const char *r[3];
	char huge[10000];

	f->msg[0].host_id = "ffffffffffffffffffffffffffffffff";
	f->ev.duration_ns = -5;
	f->msg[2].seq = 1; /* not above the summary's seq 1 */
	f->msg[0].host_id = HOST;
	assert_null(check(f, r));
	assert_null(r[0]);
	assert_string_equal(r[1], "negative_duration");
	assert_string_equal(r[2], "negative_duration");

	f->ev.duration_ns = 1;
	assert_null(check(f, r));
	assert_string_equal(r[2], "seq_order");

	f->msg[2].seq = 3;
	f->msg[1].host_id = "ffffffffffffffffffffffffffffffff";
	assert_null(check(f, r));
	assert_string_equal(r[1], "host_mismatch");
	f->msg[1].host_id = HOST;

	f->sum.start_ns = f->now + 10LL * 365 * 86400 * NS;
	assert_null(check(f, r));
	assert_string_equal(r[0], "time_in_future");
	f->sum.start_ns = f->now - 10 * NS;

	f->ev.start_ns = 1; /* 1970 */
	assert_null(check(f, r));
	assert_string_equal(r[1], "time_too_old");
	f->ev.start_ns = f->now - NS;

	memset(huge, 'x', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	f->proc.cmdline = huge;
	assert_null(check(f, r));
	assert_string_equal(r[0], "string_too_long");
	f->proc.cmdline = "ok";

	f->msg[2].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY__NOT_SET;
	assert_null(check(f, r));
	assert_string_equal(r[2], "empty_body");

	f->ms.time_ns = f->now + 100 * NS;
	assert_null(check(f, r));
	assert_string_equal(r[0], "metric_outside_interval");
}

static void test_utf8(void **state)
{
	char s[] = "ok \xff\xfe mid \xc3\xa9 \xe2\x82 end \xf0\x9f\x98\x80";

	assert_int_equal(agg_sanitize_utf8(s), 4);
	assert_string_equal(s, "ok ?? mid \xc3\xa9 ?? end \xf0\x9f\x98\x80");
	assert_true(agg_is_uuid(HOST));
	assert_true(agg_is_uuid(BOOT));
	assert_false(agg_is_uuid("6f1c1a53-2a8e-4a63-9d2b-0c1a2b3c4d5"));
	assert_false(agg_is_uuid("6f1c1a532a8e-4a63-9d2b-0c1a2b3c4d5e-"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_level, setup, teardown),
		cmocka_unit_test(test_utf8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
