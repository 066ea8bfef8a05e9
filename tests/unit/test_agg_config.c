/* test_agg_config.c: the aggregator's settings: defaults, the example
 * file, flags sharing the setter, and clear errors for broken files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggconfig.h"

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_defaults_and_example(void **state)
{
	struct agg_config c;
	char err[256];

	assert_int_equal(agg_config_defaults(&c), 0);
	assert_string_equal(c.listen, "tcp://127.0.0.1:7470");
	assert_string_equal(c.http, "http://127.0.0.1:7471");
	assert_int_equal(c.writers, 2);
	assert_int_equal(agg_config_load(&c, SH_SOURCE_DIR "/deploy/aggregator.conf.example", err,
					 sizeof(err)),
			 0);
	assert_string_equal(c.db, "");
	assert_int_equal(c.retention_days, 14);
	agg_config_free(&c);
}

static void test_file_and_flags(void **state)
{
	struct agg_config c;
	char err[256], path[] = "/tmp/sh-aggconf-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	write_file(path, "[aggregator]\nlisten = tcp://0.0.0.0:9000\nwriters = 4\n"
			 "max_request_bytes = 2MiB\nstats_interval = 5s\n");
	assert_int_equal(agg_config_defaults(&c), 0);
	assert_int_equal(agg_config_load(&c, path, err, sizeof(err)), 0);
	assert_string_equal(c.listen, "tcp://0.0.0.0:9000");
	assert_int_equal(c.writers, 4);
	assert_int_equal(c.max_request_bytes, 2 << 20);
	assert_true(c.stats_interval_ns == 5000000000LL);
	assert_int_equal(agg_config_set(&c, "writers", "1", err, sizeof(err)), 0);
	assert_int_equal(c.writers, 1);

	write_file(path, "[aggregator]\nlisten = x\nwriterz = 4\n");
	assert_int_equal(agg_config_load(&c, path, err, sizeof(err)), -22);
	assert_non_null(strstr(err, ":3: unknown setting \"writerz\""));
	write_file(path, "[aggregator]\nwriters = lots\n");
	assert_int_equal(agg_config_load(&c, path, err, sizeof(err)), -22);
	assert_non_null(strstr(err, ":2: writers must be a number"));
	write_file(path, "[agent]\ninterval = 5s\n");
	assert_int_equal(agg_config_load(&c, path, err, sizeof(err)), -22);
	assert_non_null(strstr(err, "unknown section [agent]"));
	assert_int_equal(agg_config_set(&c, "stats_interval", "10ms", err, sizeof(err)), -22);
	assert_int_equal(agg_config_set(&c, "log_level", "loud", err, sizeof(err)), -22);
	assert_true(agg_config_load(&c, "/nonexistent/x.conf", err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "could not open"));
	unlink(path);
	agg_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_example),
		cmocka_unit_test(test_file_and_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
