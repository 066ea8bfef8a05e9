/* test_common_timeutil.c: duration and time parsing as users type them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "timeutil.h"

static void test_durations(void **state)
{
	int64_t ns;

	assert_int_equal(sh_parse_duration("30s", &ns), 0);
	assert_true(ns == 30 * SH_NS_PER_SEC);
	assert_int_equal(sh_parse_duration("250ms", &ns), 0);
	assert_true(ns == 250 * SH_NS_PER_MS);
	assert_int_equal(sh_parse_duration("5m", &ns), 0);
	assert_true(ns == 300 * SH_NS_PER_SEC);
	assert_int_equal(sh_parse_duration("1.5", &ns), 0);
	assert_true(ns == 1500 * SH_NS_PER_MS);
	assert_int_equal(sh_parse_duration("2h", &ns), 0);
	assert_true(ns == 7200 * SH_NS_PER_SEC);
	assert_int_equal(sh_parse_duration("10x", &ns), -22);
	assert_int_equal(sh_parse_duration("", &ns), -22);
	assert_int_equal(sh_parse_duration("s", &ns), -22);
	assert_int_equal(sh_parse_duration("1e30d", &ns), -22);
}

static void test_times(void **state)
{
	int64_t now = 1763806867LL * SH_NS_PER_SEC, ns;
	char buf[40];

	assert_int_equal(sh_parse_time("now", now, &ns), 0);
	assert_true(ns == now);
	assert_int_equal(sh_parse_time("-60s", now, &ns), 0);
	assert_true(ns == now - 60 * SH_NS_PER_SEC);
	assert_int_equal(sh_parse_time("2025-11-22T10:21:07Z", now, &ns), 0);
	assert_true(ns == 1763806867LL * SH_NS_PER_SEC);
	assert_int_equal(sh_parse_time("2025-11-22 10:21:07.250", now, &ns), 0);
	assert_true(ns == 1763806867LL * SH_NS_PER_SEC + 250 * SH_NS_PER_MS);
	assert_int_equal(sh_parse_time("2025-11-22T12:21:07+02:00", now, &ns), 0);
	assert_true(ns == 1763806867LL * SH_NS_PER_SEC);
	assert_int_equal(sh_parse_time("@1763806867", now, &ns), 0);
	assert_true(ns == 1763806867LL * SH_NS_PER_SEC);
	assert_int_equal(sh_parse_time("yesterday", now, &ns), -22);
	assert_int_equal(sh_parse_time("2025-13-40T99:00:00", now, &ns), -22);
	assert_int_equal(sh_parse_time("2025-11-22T10:21:07Zjunk", now, &ns), -22);
	assert_string_equal(sh_format_time(1763806867LL * SH_NS_PER_SEC + 5 * SH_NS_PER_MS, buf,
					   sizeof(buf)),
			    "2025-11-22T10:21:07.005Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_times),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
