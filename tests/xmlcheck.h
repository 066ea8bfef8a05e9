/* xmlcheck.h: what the tests use to check that an SVG or XHTML document
 * spikehound writes would load in an XML parser (browsers parse SVG files
 * strictly): a unit test (the capture viewer's writers) and an integration
 * test (the aggregator's render routes) share it. */
#ifndef SH_TEST_XMLCHECK_H
#define SH_TEST_XMLCHECK_H

#include <stdbool.h>
#include <stddef.h>

/* sht_xml_ok checks well-formedness the way an XML parser would reject a
 * document: balanced, properly nested tags; quoted attributes without '<';
 * entities well formed; text only inside the one root element; CDATA and
 * comments closed. Counts the elements named "rect" and "text" into
 * *nrect and *ntext (either may be NULL). */
bool sht_xml_ok(const char *s, size_t *nrect, size_t *ntext);

#endif
