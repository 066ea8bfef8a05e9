/* fsutil.c: small file helpers for /proc reading and crash-safe writes. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ssize_t sh_read_fileat(int dirfd, const char *path, char *buf, size_t cap)
{
	size_t off = 0;
	int fd, err;

	if (cap == 0)
		return -EINVAL;
	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (off < cap - 1) {
		ssize_t n = read(fd, buf + off, cap - 1 - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			close(fd);
			buf[0] = '\0';
			return err;
		}
		if (n == 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	return (ssize_t)off;
}

ssize_t sh_read_file(const char *path, char *buf, size_t cap)
{
	return sh_read_fileat(AT_FDCWD, path, buf, cap);
}

int sh_mkdir_p(const char *path, unsigned mode)
{
	char tmp[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(tmp))
		return -ENAMETOOLONG;
	if (!mode)
		mode = 0755;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int sh_write_file_atomic(const char *path, const void *data, size_t len, int do_fsync)
{
	char tmp[4200], dir[4200];
	const char *p = data;
	size_t off = 0;
	int fd, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto cleanup;
		}
		off += (size_t)n;
	}
	if (do_fsync && fsync(fd) < 0) {
		err = -errno;
		goto cleanup;
	}
	if (close(fd) < 0) {
		fd = -1;
		err = -errno;
		goto cleanup;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		err = -errno;
		goto cleanup;
	}
	if (do_fsync) {
		int dfd;

		snprintf(dir, sizeof(dir), "%s", path);
		dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return 0;
cleanup:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return err;
}
