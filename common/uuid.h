/* uuid.h: random (version 4) UUIDs for capture and command ids. */
#ifndef SH_UUID_H
#define SH_UUID_H

/* SH_UUID_LEN is the length of a dashed UUID, without the NUL. */
#define SH_UUID_LEN 36

/* sh_uuid_v4 writes a random UUID ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx",
 * lowercase) and a NUL into out (SH_UUID_LEN + 1 bytes), from getrandom();
 * returns 0, or a negative errno when no randomness was available (out
 * then holds a UUID from the clock, unique enough within one process). */
int sh_uuid_v4(char *out);

#endif
