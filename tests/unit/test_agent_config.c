/* test_agent_config.c: agent configuration: defaults, every key from a
 * file and as a flag, sizes and durations, file:line errors, all-or-nothing
 * loading, and that deploy/agent.conf.example loads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "timeutil.h"

#define MiB (1024ULL * 1024)

static char cfg_path[64];

static int setup(void **state)
{
	int fd;

	snprintf(cfg_path, sizeof(cfg_path), "/tmp/sh-agent-conf-XXXXXX");
	fd = mkstemp(cfg_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	unlink(cfg_path);
	return 0;
}

static void write_conf(const char *text)
{
	FILE *f = fopen(cfg_path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_defaults(void **state)
{
	struct agent_config c;

	agent_config_defaults(&c);
	assert_int_equal(c.n_aggregators, 1);
	assert_string_equal(c.aggregators[0], "tcp://127.0.0.1:7470");
	assert_true(c.interval_ns == 10 * SH_NS_PER_SEC);
	assert_int_equal(c.snapshot_every, 30);
	assert_string_equal(c.spool_dir, "/var/lib/spikehound/spool");
	assert_true(c.spool_cap_bytes == 64 * MiB);
	assert_true(c.spool_fsync);
	assert_int_equal(c.n_labels, 0);
	assert_string_equal(c.proc_root, "/proc");
	assert_string_equal(c.log_level, "info");
	assert_true(c.recorder_bytes == 32 * MiB);
	assert_int_equal(c.sample_hz, 99);
	assert_int_equal(c.topk_stacks, 50);
	agent_config_free(&c);
	agent_config_free(&c);
}

static void test_load_all_keys(void **state)
{
	struct agent_config c;
	char err[256] = "";

	write_conf("; a comment\n"
		   "# another\n"
		   "[agent]\n"
		   "aggregator = tcp://a:1, tcp://b:2\n"
		   "aggregator = ipc:///run/spikehound.sock\n"
		   "interval = 5s\n"
		   "snapshot_every = 12\n"
		   "spool_dir = /srv/spool\n"
		   "spool_cap = 512KiB   ; inline comment\n"
		   "spool_fsync = no\n"
		   "proc_root = /host/proc\n"
		   "log_level = debug\n"
		   "recorder_size = 1GiB\n"
		   "sample_hz = 49\n"
		   "topk_stacks = 200\n"
		   "\n"
		   "[labels]\n"
		   "rack = r12\n"
		   "role = db primary\n"
		   "rack = r13\n");
	agent_config_defaults(&c);
	assert_int_equal(agent_config_load(&c, cfg_path, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(c.n_aggregators, 3); /* the default was replaced */
	assert_string_equal(c.aggregators[0], "tcp://a:1");
	assert_string_equal(c.aggregators[1], "tcp://b:2");
	assert_string_equal(c.aggregators[2], "ipc:///run/spikehound.sock");
	assert_true(c.interval_ns == 5 * SH_NS_PER_SEC);
	assert_int_equal(c.snapshot_every, 12);
	assert_string_equal(c.spool_dir, "/srv/spool");
	assert_true(c.spool_cap_bytes == 512 * 1024);
	assert_false(c.spool_fsync);
	assert_string_equal(c.proc_root, "/host/proc");
	assert_string_equal(c.log_level, "debug");
	assert_true(c.recorder_bytes == 1024 * MiB);
	assert_int_equal(c.sample_hz, 49);
	assert_int_equal(c.topk_stacks, 200);
	assert_int_equal(c.n_labels, 2);
	assert_string_equal(c.labels[0].key, "rack");
	assert_string_equal(c.labels[0].value, "r13"); /* replaced, not duplicated */
	assert_string_equal(c.labels[1].value, "db primary");

	/* flags after the file, through the same setter */
	assert_int_equal(agent_config_set(&c, "interval", "250ms", err, sizeof(err)), -EINVAL);
	assert_int_equal(agent_config_set(&c, "interval", "2m", err, sizeof(err)), 0);
	assert_true(c.interval_ns == 120 * SH_NS_PER_SEC);
	assert_int_equal(agent_config_set(&c, "spool-cap", "64MiB", err, sizeof(err)), 0);
	assert_true(c.spool_cap_bytes == 64 * MiB);
	assert_int_equal(agent_config_set(&c, "aggregator", "tcp://c:3", err, sizeof(err)), 0);
	assert_int_equal(c.n_aggregators, 4);
	assert_int_equal(agent_config_set(&c, "label", "zone=eu-1=a", err, sizeof(err)), 0);
	assert_string_equal(c.labels[2].key, "zone");
	assert_string_equal(c.labels[2].value, "eu-1=a");
	agent_config_free(&c);
}

static void test_values(void **state)
{
	static const struct {
		const char *key, *value;
		int ok;
	} cases[] = {
		{ "spool_cap", "64MiB", 1 },	     { "spool_cap", "64mib", 1 },
		{ "spool_cap", "1048576", 1 },	     { "spool_cap", "1GiB", 1 },
		{ "spool_cap", "512 KiB", 1 },	     { "spool_cap", "100B", 1 },
		{ "spool_cap", "64MB", 0 },	     { "spool_cap", "64M", 0 },
		{ "spool_cap", "-1", 0 },	     { "spool_cap", "0", 0 },
		{ "spool_cap", "", 0 },		     { "spool_cap", "1.5GiB", 0 },
		{ "spool_cap", "99999999999GiB", 0 }, { "spool_cap", "18446744073709551616", 0 },
		{ "interval", "10s", 1 },	     { "interval", "1h", 1 },
		{ "interval", "0s", 0 },	     { "interval", "-5s", 0 },
		{ "interval", "2h", 0 },	     { "interval", "soon", 0 },
		{ "snapshot_every", "1", 1 },	     { "snapshot_every", "0", 0 },
		{ "snapshot_every", "3x", 0 },	     { "snapshot_every", "-3", 0 },
		{ "spool_fsync", "off", 1 },	     { "spool_fsync", "TRUE", 1 },
		{ "spool_fsync", "maybe", 0 },	     { "sample_hz", "10001", 0 },
		{ "sample_hz", "1", 1 },	     { "topk_stacks", "0", 0 },
		{ "log_level", "warn", 1 },	     { "log_level", "verbose", 0 },
		{ "proc_root", "relative/proc", 0 }, { "spool_dir", "", 0 },
		{ "aggregator", "localhost:7470", 0 }, { "aggregator", "tcp://a:1,,tcp://b:2", 0 },
		{ "aggregator", "tcp://a b:1", 0 },  { "aggregator", "", 0 },
		{ "label", "novalue", 0 },	     { "label", "=v", 0 },
		{ "label", "k=", 1 },		     { "bogus", "1", 0 },
		{ "recorder-size", "8MiB", 1 },	     { "spool_cap_bytes", "1", 0 },
	};
	struct agent_config c, before;
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc;

		agent_config_defaults(&c);
		before = c;
		err[0] = '\0';
		rc = agent_config_set(&c, cases[i].key, cases[i].value, err, sizeof(err));
		if (cases[i].ok) {
			if (rc != 0)
				fail_msg("%s = \"%s\": %s", cases[i].key, cases[i].value, err);
		} else {
			if (rc == 0)
				fail_msg("%s = \"%s\" was accepted", cases[i].key, cases[i].value);
			assert_true(strlen(err) > 0);
			assert_memory_equal(&c, &before, sizeof(c)); /* unchanged */
		}
	}
	agent_config_defaults(&c);
	assert_int_equal(agent_config_set(&c, "interval", "5q", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad value for \"interval\": \"5q\""));
	assert_int_equal(agent_config_set(&c, "bogus", "1", NULL, 0), -EINVAL); /* no err buffer */
}

static void test_limits(void **state)
{
	struct agent_config c;
	char err[256], kv[64];

	agent_config_defaults(&c);
	assert_int_equal(agent_config_set(&c, "aggregator",
					  "tcp://a:1,tcp://a:2,tcp://a:3,tcp://a:4,tcp://a:5", err,
					  sizeof(err)),
			 0);
	assert_int_equal(agent_config_set(&c, "aggregator", "tcp://a:6,tcp://a:7,tcp://a:8,tcp://a:9",
					  err, sizeof(err)),
			 -E2BIG);
	assert_int_equal(c.n_aggregators, 5); /* all or nothing */
	assert_int_equal(agent_config_set(&c, "aggregator", "tcp://a:6,tcp://a:7,tcp://a:8", err,
					  sizeof(err)),
			 0);
	assert_int_equal(c.n_aggregators, 8);

	for (int i = 0; i < AGENT_CONFIG_MAX_LABELS; i++) {
		snprintf(kv, sizeof(kv), "k%d=v", i);
		assert_int_equal(agent_config_set(&c, "label", kv, err, sizeof(err)), 0);
	}
	assert_int_equal(agent_config_set(&c, "label", "one=more", err, sizeof(err)), -E2BIG);
	assert_int_equal(agent_config_set(&c, "label", "k3=replaced", err, sizeof(err)), 0);
	assert_string_equal(c.labels[3].value, "replaced");
	{
		char big[400];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		assert_int_equal(agent_config_label_set(&c, "k1", big, err, sizeof(err)), -EINVAL);
		assert_int_equal(agent_config_label_set(&c, big, "v", err, sizeof(err)), -EINVAL);
	}
}

static void expect_error(const char *text, const char *want)
{
	struct agent_config c, before;
	char err[512] = "", full[600];

	write_conf(text);
	agent_config_defaults(&c);
	c.sample_hz = 7; /* something the file would not set */
	before = c;
	assert_int_equal(agent_config_load(&c, cfg_path, err, sizeof(err)), -EINVAL);
	snprintf(full, sizeof(full), "%s:%s", cfg_path, want);
	if (strncmp(err, full, strlen(full)) != 0)
		fail_msg("got \"%s\", want prefix \"%s\"", err, full);
	assert_memory_equal(&c, &before, sizeof(c)); /* all or nothing */
}

static void test_errors(void **state)
{
	struct agent_config c;
	char err[512], line[400];
	int rc;

	expect_error("[agent]\ninterval = 5s\nbogus = 1\n", "3: unknown key \"bogus\"");
	expect_error("[agent]\n\n\ninterval = fast\n", "4: bad value for \"interval\": \"fast\"");
	expect_error("interval = 5s\n[agnet]\nx = 1\n", "3: unknown section [agnet]");
	expect_error("[agent]\nspool_cap = 64MB\n", "2: bad value for \"spool_cap\"");
	expect_error("[agent]\nthis line has no equals sign\ninterval = x\n", "2: syntax error");
	expect_error("[agent]\ninterval = 5s\ninterval = x\nbogus = 1\n", "3: bad value"); /* first */
	expect_error("[agent]\nlabel = a=b\n", "2: unknown key \"label\"");
	expect_error("[labels]\n = v\n", "2: "); /* inih: empty name is a syntax error */
	expect_error("[agent]\naggregator = a,b,c,d,e,f,g,h,i\n", "2: bad value for \"aggregator\"");

	/* a line longer than inih's buffer is an error, not a silent cut */
	memset(line, 'a', sizeof(line));
	memcpy(line, "[agent]\nspool_dir = /", 21);
	memcpy(line + sizeof(line) - 2, "\n", 2);
	expect_error(line, "2: line too long");

	agent_config_defaults(&c);
	rc = agent_config_load(&c, "/nonexistent/agent.conf", err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	assert_non_null(strstr(err, "could not open \"/nonexistent/agent.conf\""));

	/* an empty file is fine */
	write_conf("");
	assert_int_equal(agent_config_load(&c, cfg_path, err, sizeof(err)), 0);
	assert_string_equal(c.aggregators[0], "tcp://127.0.0.1:7470");
}

static void test_example_loads(void **state)
{
	struct agent_config c, d;
	char path[4096], err[512] = "";

	snprintf(path, sizeof(path), "%s/../../../deploy/agent.conf.example", SH_TEST_DATA);
	agent_config_defaults(&c);
	agent_config_defaults(&d);
	if (agent_config_load(&c, path, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	/* everything is commented out: the example documents the defaults */
	assert_memory_equal(&c, &d, sizeof(c));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_load_all_keys),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_example_loads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
