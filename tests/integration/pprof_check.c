/* pprof_check.c: reads a gzipped pprof profile (what `spikehound capture
 * show --pprof FILE` writes) back with protobuf-c, the way a pprof reader
 * would, and prints what it holds: samples, the sum of the first sample
 * value, functions, and how many samples have a frame whose function name
 * contains NEEDLE (when given). Used by scenario tests.
 *
 * usage: pprof_check FILE [NEEDLE]
 * Exit status: 0 when the profile parsed and has samples (and, with
 * NEEDLE, at least one matching sample), 1 otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "profile.pb-c.h"

int main(int argc, char **argv)
{
	Perftools__Profiles__Profile *p;
	gzFile gz;
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0;
	long long total = 0;
	size_t matching = 0;
	int n;

	if (argc < 2) {
		fprintf(stderr, "usage: pprof_check FILE [NEEDLE]\n");
		return 1;
	}
	if (!(gz = gzopen(argv[1], "rb"))) {
		fprintf(stderr, "pprof_check: cannot open %s\n", argv[1]);
		return 1;
	}
	do {
		if (len + 65536 > cap) {
			cap = cap ? cap * 2 : 1 << 20;
			if (!(buf = realloc(buf, cap)))
				return 1;
		}
		n = gzread(gz, buf + len, 65536);
		if (n > 0)
			len += (size_t)n;
	} while (n > 0);
	gzclose(gz);
	if (n < 0) {
		fprintf(stderr, "pprof_check: %s is not valid gzip\n", argv[1]);
		return 1;
	}
	p = perftools__profiles__profile__unpack(NULL, len, buf);
	free(buf);
	if (!p) {
		fprintf(stderr, "pprof_check: %s is not a pprof Profile\n", argv[1]);
		return 1;
	}
	for (size_t i = 0; i < p->n_sample; i++) {
		const Perftools__Profiles__Sample *s = p->sample[i];
		int hit = 0;

		if (s->n_value > 0)
			total += s->value[0];
		for (size_t k = 0; argc > 2 && !hit && k < s->n_location_id; k++) {
			for (size_t l = 0; !hit && l < p->n_location; l++) {
				const Perftools__Profiles__Location *loc = p->location[l];

				if (loc->id != s->location_id[k])
					continue;
				for (size_t m = 0; !hit && m < loc->n_line; m++) {
					for (size_t f = 0; f < p->n_function; f++) {
						const Perftools__Profiles__Function *fn = p->function[f];

						if (fn->id == loc->line[m]->function_id && fn->name >= 0 &&
						    (size_t)fn->name < p->n_string_table &&
						    strstr(p->string_table[fn->name], argv[2])) {
							hit = 1;
							break;
						}
					}
				}
			}
		}
		matching += (size_t)hit;
	}
	printf("pprof: %zu samples (value sum %lld), %zu locations, %zu functions, %zu mappings",
	       p->n_sample, total, p->n_location, p->n_function, p->n_mapping);
	if (argc > 2)
		printf(", %zu samples through a function matching \"%s\"", matching, argv[2]);
	printf("\n");
	n = p->n_sample > 0 && (argc < 3 || matching > 0) ? 0 : 1;
	perftools__profiles__profile__free_unpacked(p, NULL);
	return n;
}
