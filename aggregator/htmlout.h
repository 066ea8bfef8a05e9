/* htmlout.h: writing text into HTML and SVG (XML) documents. Shared by the
 * capture views (capview.c: SVG flame graphs and heat maps) and the kernel
 * report page (report_html.c).
 */
#ifndef AGG_HTMLOUT_H
#define AGG_HTMLOUT_H

#include <stddef.h>
#include <stdio.h>

/* agg_htmlout_escape writes n bytes of s (borrowed) to out with the
 * characters HTML and XML give meaning (& < > " ') as entities and
 * control characters (below 0x20, 0x7f) as '?'. Other bytes, UTF-8
 * included, are written as they are. */
void agg_htmlout_escape(FILE *out, const char *s, size_t n);

/* agg_htmlout_escape_str is agg_htmlout_escape of the NUL-terminated s;
 * NULL writes nothing. */
void agg_htmlout_escape_str(FILE *out, const char *s);

#endif
