/* copybuf.c: rows in PostgreSQL's COPY text format. */
#include "copybuf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool reserve(struct agg_copybuf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + n <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void agg_copybuf_reset(struct agg_copybuf *b)
{
	b->len = 0;
	b->oom = false;
	b->in_row = false;
}

void agg_copybuf_fini(struct agg_copybuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void agg_copybuf_raw(struct agg_copybuf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

static void sep(struct agg_copybuf *b)
{
	if (b->in_row)
		agg_copybuf_raw(b, "\t", 1);
	b->in_row = true;
}

void agg_copybuf_str(struct agg_copybuf *b, const char *s)
{
	size_t n;

	sep(b);
	if (!s) {
		agg_copybuf_raw(b, "\\N", 2);
		return;
	}
	n = strlen(s);
	if (!reserve(b, n * 2))
		return;
	for (const char *p = s; *p; p++) {
		char c = *p, e = 0;

		switch (c) {
		case '\\': e = '\\'; break;
		case '\t': e = 't'; break;
		case '\n': e = 'n'; break;
		case '\r': e = 'r'; break;
		case '\b': e = 'b'; break;
		case '\f': e = 'f'; break;
		case '\v': e = 'v'; break;
		default: break;
		}
		if (e) {
			b->data[b->len++] = '\\';
			b->data[b->len++] = e;
		} else {
			b->data[b->len++] = c;
		}
	}
}

void agg_copybuf_i64(struct agg_copybuf *b, int64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

	sep(b);
	agg_copybuf_raw(b, tmp, (size_t)n);
}

static int fmt_f64(double v, char *tmp, size_t len)
{
	if (isnan(v))
		return snprintf(tmp, len, "NaN");
	if (isinf(v))
		return snprintf(tmp, len, v > 0 ? "Infinity" : "-Infinity");
	return snprintf(tmp, len, "%.9g", v);
}

void agg_copybuf_f64(struct agg_copybuf *b, double v)
{
	char tmp[40];
	int n = fmt_f64(v, tmp, sizeof(tmp));

	sep(b);
	agg_copybuf_raw(b, tmp, (size_t)n);
}

int agg_format_ts(int64_t ns, char *out, size_t len)
{
	int64_t secs = ns / 1000000000LL, rem = ns % 1000000000LL, us;
	time_t t;
	struct tm tm;

	if (rem < 0) {
		rem += 1000000000LL;
		secs -= 1;
	}
	us = rem / 1000;
	t = (time_t)secs;
	gmtime_r(&t, &tm);
	return snprintf(out, len, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)us);
}

void agg_copybuf_ts(struct agg_copybuf *b, int64_t ns)
{
	char tmp[48];
	int n = agg_format_ts(ns, tmp, sizeof(tmp));

	sep(b);
	agg_copybuf_raw(b, tmp, (size_t)n);
}

void agg_copybuf_null(struct agg_copybuf *b)
{
	sep(b);
	agg_copybuf_raw(b, "\\N", 2);
}

void agg_copybuf_bytea(struct agg_copybuf *b, const uint8_t *data, size_t len)
{
	static const char hex[] = "0123456789abcdef";

	sep(b);
	/* bytea's hex input "\x..." with the backslash escaped for COPY */
	if (!reserve(b, 3 + 2 * len))
		return;
	memcpy(b->data + b->len, "\\\\x", 3);
	b->len += 3;
	for (size_t i = 0; i < len; i++) {
		b->data[b->len++] = hex[data[i] >> 4];
		b->data[b->len++] = hex[data[i] & 15];
	}
}

void agg_copybuf_end_row(struct agg_copybuf *b)
{
	agg_copybuf_raw(b, "\n", 1);
	b->in_row = false;
}

/* Array elements: in_row tracks fields; a separate marker tracks whether
 * an element was written, kept in the byte before: '{' means none yet. */
void agg_copybuf_array_begin(struct agg_copybuf *b)
{
	sep(b);
	agg_copybuf_raw(b, "{", 1);
}

static void elem_sep(struct agg_copybuf *b)
{
	if (b->len && b->data[b->len - 1] != '{')
		agg_copybuf_raw(b, ",", 1);
}

void agg_copybuf_elem_i64(struct agg_copybuf *b, int64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

	elem_sep(b);
	agg_copybuf_raw(b, tmp, (size_t)n);
}

void agg_copybuf_elem_f64(struct agg_copybuf *b, double v)
{
	char tmp[40];
	int n = fmt_f64(v, tmp, sizeof(tmp));

	elem_sep(b);
	agg_copybuf_raw(b, tmp, (size_t)n);
}

void agg_copybuf_elem_ts(struct agg_copybuf *b, int64_t ns)
{
	char tmp[48];
	int n;

	elem_sep(b);
	tmp[0] = '"';
	n = agg_format_ts(ns, tmp + 1, sizeof(tmp) - 2);
	tmp[n + 1] = '"';
	agg_copybuf_raw(b, tmp, (size_t)n + 2);
}

void agg_copybuf_elem_str(struct agg_copybuf *b, const char *s)
{
	elem_sep(b);
	if (!reserve(b, strlen(s) * 4 + 2))
		return;
	b->data[b->len++] = '"';
	for (const char *p = s; *p; p++) {
		switch (*p) {
		case '"': /* array escape \" whose backslash COPY doubles */
			memcpy(b->data + b->len, "\\\\\"", 3);
			b->len += 3;
			break;
		case '\\': /* array \\ -> COPY \\\\ */
			memcpy(b->data + b->len, "\\\\\\\\", 4);
			b->len += 4;
			break;
		case '\t':
			memcpy(b->data + b->len, "\\t", 2);
			b->len += 2;
			break;
		case '\n':
			memcpy(b->data + b->len, "\\n", 2);
			b->len += 2;
			break;
		case '\r':
			memcpy(b->data + b->len, "\\r", 2);
			b->len += 2;
			break;
		default:
			b->data[b->len++] = *p;
		}
	}
	b->data[b->len++] = '"';
}

void agg_copybuf_array_end(struct agg_copybuf *b)
{
	agg_copybuf_raw(b, "}", 1);
}
