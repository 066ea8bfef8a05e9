/* copybuf.h: a growable buffer that writes rows in PostgreSQL's COPY text
 * format (tab-separated, \N for NULL, backslash escapes), including array
 * and timestamptz literals. Used by ingest to stage rows for COPY. */
#ifndef AGG_COPYBUF_H
#define AGG_COPYBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agg_copybuf {
	char *data;
	size_t len;
	size_t cap;
	bool oom;    /* an allocation failed: the content is incomplete */
	bool in_row; /* a field was written on the current row */
};

/* agg_copybuf_reset empties buf, keeping its memory. */
void agg_copybuf_reset(struct agg_copybuf *b);

/* agg_copybuf_fini frees buf's memory. */
void agg_copybuf_fini(struct agg_copybuf *b);

/* agg_copybuf_raw appends bytes as they are (no escaping, no separator). */
void agg_copybuf_raw(struct agg_copybuf *b, const char *s, size_t n);

/* agg_copybuf_str appends a text field, escaped; NULL s writes \N. */
void agg_copybuf_str(struct agg_copybuf *b, const char *s);

/* agg_copybuf_i64 appends an integer field. */
void agg_copybuf_i64(struct agg_copybuf *b, int64_t v);

/* agg_copybuf_f64 appends a floating point field (NaN, Infinity spelled
 * the way PostgreSQL reads them). */
void agg_copybuf_f64(struct agg_copybuf *b, double v);

/* agg_copybuf_ts appends a timestamptz field from Unix ns. */
void agg_copybuf_ts(struct agg_copybuf *b, int64_t ns);

/* agg_copybuf_bytea appends a bytea field (hex format) of len bytes. */
void agg_copybuf_bytea(struct agg_copybuf *b, const uint8_t *data, size_t len);

/* agg_copybuf_null appends \N. */
void agg_copybuf_null(struct agg_copybuf *b);

/* agg_copybuf_end_row ends the current row. */
void agg_copybuf_end_row(struct agg_copybuf *b);

/* agg_copybuf_array_begin / _elem_* / _array_end write an array field
 * "{a,b,c}"; elements are numbers or timestamps (no quoting needed but
 * for timestamps, which are double-quoted). */
void agg_copybuf_array_begin(struct agg_copybuf *b);
void agg_copybuf_elem_i64(struct agg_copybuf *b, int64_t v);
void agg_copybuf_elem_f64(struct agg_copybuf *b, double v);
void agg_copybuf_elem_ts(struct agg_copybuf *b, int64_t ns);
/* agg_copybuf_elem_str writes a double-quoted text element, escaped for
 * both the array literal and COPY. */
void agg_copybuf_elem_str(struct agg_copybuf *b, const char *s);
void agg_copybuf_array_end(struct agg_copybuf *b);

/* agg_format_ts writes ns as "2026-11-22 03:57:15.123456+00" into out (at
 * least 40 bytes). Returns the length. */
int agg_format_ts(int64_t ns, char *out, size_t len);

#endif
