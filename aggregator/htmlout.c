/* htmlout.c: writing text into HTML and SVG documents (see htmlout.h). */
#include "htmlout.h"

#include <string.h>

void agg_htmlout_escape(FILE *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '&':
			fputs("&amp;", out);
			break;
		case '<':
			fputs("&lt;", out);
			break;
		case '>':
			fputs("&gt;", out);
			break;
		case '"':
			fputs("&quot;", out);
			break;
		case '\'':
			fputs("&#39;", out);
			break;
		default:
			fputc(c < 0x20 || c == 0x7f ? '?' : c, out);
		}
	}
}

void agg_htmlout_escape_str(FILE *out, const char *s)
{
	if (s)
		agg_htmlout_escape(out, s, strlen(s));
}
