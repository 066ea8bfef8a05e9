/* fsutil.h: small file helpers for /proc reading and crash-safe writes. */
#ifndef SH_FSUTIL_H
#define SH_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* sh_read_file reads at most cap-1 bytes of path into buf and
 * NUL-terminates it. Returns the length read or a negative errno. */
ssize_t sh_read_file(const char *path, char *buf, size_t cap);

/* sh_read_fileat is sh_read_file relative to a directory fd. */
ssize_t sh_read_fileat(int dirfd, const char *path, char *buf, size_t cap);

/* sh_mkdir_p creates path and its parents (mode 0755 unless given).
 * Returns 0 or a negative errno. */
int sh_mkdir_p(const char *path, unsigned mode);

/* sh_write_file_atomic writes data to path via a temp file and rename;
 * with do_fsync the file and its directory are fsynced. Returns 0 or a
 * negative errno; on failure path is unchanged. */
int sh_write_file_atomic(const char *path, const void *data, size_t len, int do_fsync);

#endif
