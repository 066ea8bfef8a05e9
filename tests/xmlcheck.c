/* xmlcheck.c: a small XML well-formedness check for the tests that read
 * the SVGs and pages spikehound writes (see xmlcheck.h). */
#include "xmlcheck.h"

#include <string.h>

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == ':' || c == '.';
}

static bool entity_ok(const char *s)
{
	size_t n = 1;

	if (s[n] == '#')
		n++;
	while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') ||
	       (s[n] >= 'A' && s[n] <= 'F' && s[1] == '#'))
		n++;
	return n > 1 && s[n] == ';';
}

bool sht_xml_ok(const char *s, size_t *nrect, size_t *ntext)
{
	const char *stack[128];
	size_t lens[128], depth = 0;
	int roots = 0;

	size_t dummy_r, dummy_t;

	if (!nrect)
		nrect = &dummy_r;
	if (!ntext)
		ntext = &dummy_t;
	*nrect = *ntext = 0;
	if (strncmp(s, "<?xml", 5) == 0) {
		if (!(s = strstr(s, "?>")))
			return false;
		s += 2;
	}
	while (*s) {
		if (*s == '&') {
			if (!entity_ok(s))
				return false;
			s++;
		} else if (*s != '<') {
			if (depth == 0 && *s != '\n' && *s != ' ')
				return false;
			s++;
		} else if (strncmp(s, "<![CDATA[", 9) == 0) {
			if (depth == 0 || !(s = strstr(s, "]]>")))
				return false;
			s += 3;
		} else if (strncmp(s, "<!--", 4) == 0) {
			if (!(s = strstr(s, "-->")))
				return false;
			s += 3;
		} else if (s[1] == '/') {
			const char *n = s + 2;
			size_t l = 0;

			while (name_char(n[l]))
				l++;
			if (depth == 0 || n[l] != '>' || l != lens[depth - 1] ||
			    strncmp(n, stack[depth - 1], l) != 0)
				return false;
			depth--;
			s = n + l + 1;
		} else {
			const char *n = s + 1;
			size_t l = 0;

			while (name_char(n[l]))
				l++;
			if (l == 0)
				return false;
			if (l == 4 && strncmp(n, "rect", 4) == 0)
				(*nrect)++;
			if (l == 4 && strncmp(n, "text", 4) == 0)
				(*ntext)++;
			s = n + l;
			for (;;) {
				while (*s == ' ' || *s == '\n' || *s == '\t')
					s++;
				if (*s == '>' || (s[0] == '/' && s[1] == '>'))
					break;
				if (!name_char(*s))
					return false;
				while (name_char(*s))
					s++;
				if (s[0] != '=' || s[1] != '"')
					return false;
				for (s += 2; *s != '"'; s++) {
					if (*s == '\0' || *s == '<')
						return false;
					if (*s == '&' && !entity_ok(s))
						return false;
				}
				s++;
			}
			if (depth == 0 && roots++)
				return false;
			if (*s == '/') {
				s += 2;
			} else {
				if (depth == 128)
					return false;
				stack[depth] = n;
				lens[depth++] = l;
				s++;
			}
		}
	}
	return depth == 0 && roots == 1;
}

