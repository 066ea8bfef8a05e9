/* uuid.c: random UUIDs (see uuid.h). */
#include "uuid.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

#include "timeutil.h"

int sh_uuid_v4(char *out)
{
	uint8_t b[16];
	ssize_t got = getrandom(b, sizeof(b), GRND_NONBLOCK);
	int rv = 0;

	if (got != (ssize_t)sizeof(b)) {
		static uint64_t counter;
		uint64_t t = (uint64_t)sh_now_mono_ns() ^ ((uint64_t)sh_now_wall_ns() << 13);

		rv = got < 0 ? -errno : -EIO;
		counter++;
		for (int i = 0; i < 8; i++) {
			b[i] = (uint8_t)(t >> (8 * i));
			b[8 + i] = (uint8_t)(counter >> (8 * i));
		}
	}
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	snprintf(out, SH_UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
	return rv;
}
