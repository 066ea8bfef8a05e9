/* test_agg_copybuf.c: COPY text-format encoding: escapes, NULL, arrays,
 * timestamps, non-finite floats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "copybuf.h"

static void test_row(void **state)
{
	struct agg_copybuf b = { 0 };

	agg_copybuf_str(&b, "a\tb\nc\\d\re");
	agg_copybuf_null(&b);
	agg_copybuf_i64(&b, -42);
	agg_copybuf_f64(&b, NAN);
	agg_copybuf_f64(&b, -INFINITY);
	agg_copybuf_f64(&b, 0.5);
	agg_copybuf_end_row(&b);
	agg_copybuf_raw(&b, "", 1); /* NUL for string compare */
	assert_false(b.oom);
	assert_string_equal(b.data, "a\\tb\\nc\\\\d\\re\t\\N\t-42\tNaN\t-Infinity\t0.5\n");
	agg_copybuf_fini(&b);
}

static void test_arrays(void **state)
{
	struct agg_copybuf b = { 0 };

	agg_copybuf_array_begin(&b);
	agg_copybuf_array_end(&b);
	agg_copybuf_array_begin(&b);
	agg_copybuf_elem_i64(&b, 1);
	agg_copybuf_elem_i64(&b, 2);
	agg_copybuf_array_end(&b);
	agg_copybuf_array_begin(&b);
	agg_copybuf_elem_ts(&b, 1763806867LL * 1000000000LL + 1500);
	agg_copybuf_elem_f64(&b, 2.25);
	agg_copybuf_array_end(&b);
	agg_copybuf_end_row(&b);
	agg_copybuf_raw(&b, "", 1);
	assert_string_equal(b.data, "{}\t{1,2}\t{\"2025-11-22 10:21:07.000001+00\",2.25}\n");
	agg_copybuf_fini(&b);
}

static void test_text_array(void **state)
{
	struct agg_copybuf b = { 0 };

	agg_copybuf_array_begin(&b);
	agg_copybuf_elem_str(&b, "a\"b");
	agg_copybuf_elem_str(&b, "c\\d");
	agg_copybuf_elem_str(&b, "e\tf,{g}");
	agg_copybuf_array_end(&b);
	agg_copybuf_raw(&b, "", 1);
	/* COPY unescapes to {"a\"b","c\\d","e<TAB>f,{g}"}, an array of a"b, c\d, e<TAB>f,{g} */
	assert_string_equal(b.data, "{\"a\\\\\"b\",\"c\\\\\\\\d\",\"e\\tf,{g}\"}");
	agg_copybuf_fini(&b);
}

static void test_ts_before_epoch(void **state)
{
	char out[48];

	agg_format_ts(-1, out, sizeof(out));
	assert_string_equal(out, "1969-12-31 23:59:59.999999+00");
}

static void test_growth(void **state)
{
	struct agg_copybuf b = { 0 };
	char big[10000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 100; i++)
		agg_copybuf_str(&b, big);
	assert_false(b.oom);
	assert_int_equal(b.len, 100 * (sizeof(big) - 1) + 99);
	agg_copybuf_reset(&b);
	assert_int_equal(b.len, 0);
	agg_copybuf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_row),
		cmocka_unit_test(test_arrays),
		cmocka_unit_test(test_text_array),
		cmocka_unit_test(test_ts_before_epoch),
		cmocka_unit_test(test_growth),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
