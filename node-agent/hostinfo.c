/* hostinfo.c: reads the identity of the host and its boot from /proc, /etc
 * and uname(2), for the Hello at the head of every agent request. */
#include "hostinfo.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "fsutil.h"
#include "timeutil.h"

#ifndef SH_VERSION
#define SH_VERSION "unknown"
#endif

/* Length of the well-formed UTF-8 sequence at s, or 0 if there is none. */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	/* the NUL terminator is not a continuation byte, so this stops there */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

void agent_utf8_sanitize(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p) {
		size_t n = utf8_seq_len(p);

		if (n == 0) {
			*p++ = '?';
			continue;
		}
		p += n;
	}
}

/* Reads proc_root/rel (or any root) into buf, dropping trailing whitespace. */
static int read_line(const char *root, const char *rel, char *buf, size_t cap)
{
	char path[PATH_MAX];
	ssize_t n;

	if (snprintf(path, sizeof(path), "%s/%s", root, rel) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	n = sh_read_file(path, buf, cap);
	if (n < 0)
		return (int)n;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	return 0;
}

static int is_hex_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int valid_machine_id(const char *s)
{
	return strlen(s) == 32 && is_hex_lower(s, 32);
}

/* 8-4-4-4-12 hex digits */
static int valid_uuid(const char *s)
{
	static const int dash[] = { 8, 13, 18, 23 };

	if (strlen(s) != 36)
		return 0;
	for (int i = 0, d = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (s[i] != '-')
				return 0;
			d++;
			continue;
		}
		if (!is_hex_lower(s + i, 1))
			return 0;
	}
	return 1;
}

int agent_read_btime_ns(const char *proc_root, int64_t *ns)
{
	char path[PATH_MAX];
	char *buf = NULL, *p, *end;
	unsigned long long v;
	ssize_t n;
	int err = 0;

	if (snprintf(path, sizeof(path), "%s/stat", proc_root) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	/* /proc/stat is large on big machines (one line per CPU, one number
	 * per IRQ); btime comes after all of them */
	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	n = sh_read_file(path, buf, 1 << 20);
	if (n < 0) {
		err = (int)n;
		goto cleanup;
	}
	p = strstr(buf, "\nbtime ");
	if (!p) {
		err = -EINVAL;
		goto cleanup;
	}
	errno = 0;
	v = strtoull(p + 7, &end, 10);
	if (errno || end == p + 7 || v == 0 || v > (unsigned long long)(INT64_MAX / SH_NS_PER_SEC)) {
		err = -EINVAL;
		goto cleanup;
	}
	*ns = (int64_t)v * SH_NS_PER_SEC;
cleanup:
	free(buf);
	return err;
}

/* Finds "key:" at the start of a line of a "key: value" file and copies the
 * trimmed value into out. Returns 0 or -ENOENT. */
static int find_field(const char *buf, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);
	const char *line = buf;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t llen = nl ? (size_t)(nl - line) : strlen(line);

		if (llen > klen && strncmp(line, key, klen) == 0 &&
		    (line[klen] == ':' || line[klen] == ' ' || line[klen] == '\t')) {
			const char *v = line + klen, *e = line + llen;
			size_t vlen;

			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			if (v < e && *v == ':')
				v++;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && isspace((unsigned char)e[-1]))
				e--;
			vlen = (size_t)(e - v);
			if (vlen >= cap)
				vlen = cap - 1;
			memcpy(out, v, vlen);
			out[vlen] = '\0';
			return 0;
		}
		line = nl ? nl + 1 : NULL;
	}
	return -ENOENT;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

/* Counts the "cpuN" lines of proc_root/stat: the online CPUs. */
static uint32_t count_stat_cpus(const char *buf)
{
	const char *line = buf;
	uint32_t n = 0;

	while (line && *line) {
		if (strncmp(line, "cpu", 3) == 0 && isdigit((unsigned char)line[3]))
			n++;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return n;
}

int agent_hostinfo_read(const char *proc_root, const char *etc_root, struct agent_hostinfo *hi)
{
	int real = strcmp(proc_root, "/proc") == 0;
	char path[PATH_MAX], val[64];
	char *buf = NULL;
	ssize_t n;
	int err;

	memset(hi, 0, sizeof(*hi));
	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;

	/* read into a larger buffer so an overlong id is seen, not cut */
	err = read_line(etc_root, "machine-id", val, sizeof(val));
	if (err == 0 && !valid_machine_id(val))
		err = -EINVAL;
	if (err)
		goto cleanup;
	copy_str(hi->host_id, sizeof(hi->host_id), val);
	err = read_line(proc_root, "sys/kernel/random/boot_id", val, sizeof(val));
	if (err == 0 && !valid_uuid(val))
		err = -EINVAL;
	if (err)
		goto cleanup;
	copy_str(hi->boot_id, sizeof(hi->boot_id), val);

	if (real) {
		struct utsname u;

		if (uname(&u) < 0) {
			err = -errno;
			goto cleanup;
		}
		copy_str(hi->kernel_release, sizeof(hi->kernel_release), u.release);
		copy_str(hi->kernel_version, sizeof(hi->kernel_version), u.version);
		if (gethostname(hi->hostname, sizeof(hi->hostname) - 1) < 0)
			hi->hostname[0] = '\0';
		hi->hostname[sizeof(hi->hostname) - 1] = '\0';
	} else {
		err = read_line(proc_root, "sys/kernel/osrelease", hi->kernel_release,
				sizeof(hi->kernel_release));
		if (err)
			goto cleanup;
		if (read_line(proc_root, "sys/kernel/version", hi->kernel_version,
			      sizeof(hi->kernel_version)) < 0)
			hi->kernel_version[0] = '\0';
		if (read_line(proc_root, "sys/kernel/hostname", hi->hostname, sizeof(hi->hostname)) < 0)
			hi->hostname[0] = '\0';
	}
	if (hi->kernel_release[0] == '\0') {
		err = -EINVAL;
		goto cleanup;
	}

	err = agent_read_btime_ns(proc_root, &hi->boot_time_ns);
	if (err)
		goto cleanup;

	if (real) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		hi->cpu_count = c > 0 ? (uint32_t)c : 0;
	} else {
		snprintf(path, sizeof(path), "%s/stat", proc_root);
		n = sh_read_file(path, buf, 1 << 20);
		hi->cpu_count = n > 0 ? count_stat_cpus(buf) : 0;
	}

	/* cpuinfo can be hundreds of KiB; the first "model name" is near the top */
	snprintf(path, sizeof(path), "%s/cpuinfo", proc_root);
	n = sh_read_file(path, buf, 64 * 1024);
	if (n < 0 || find_field(buf, "model name", hi->cpu_model, sizeof(hi->cpu_model)) < 0)
		hi->cpu_model[0] = '\0';

	snprintf(path, sizeof(path), "%s/meminfo", proc_root);
	n = sh_read_file(path, buf, 64 * 1024);
	if (n < 0) {
		err = (int)n;
		goto cleanup;
	}
	if (find_field(buf, "MemTotal", val, sizeof(val)) < 0) {
		err = -EINVAL;
		goto cleanup;
	} else {
		char *end;
		unsigned long long kb;

		errno = 0;
		kb = strtoull(val, &end, 10);
		if (errno || end == val || kb == 0 || kb > UINT64_MAX / 1024) {
			err = -EINVAL;
			goto cleanup;
		}
		hi->memory_bytes = (uint64_t)kb * 1024;
	}

	agent_utf8_sanitize(hi->hostname);
	agent_utf8_sanitize(hi->kernel_release);
	agent_utf8_sanitize(hi->kernel_version);
	agent_utf8_sanitize(hi->cpu_model);
	err = 0;
cleanup:
	free(buf);
	return err;
}

void agent_hostinfo_to_hello(const struct agent_hostinfo *hi, Spikehound__Hello *out)
{
	/* protobuf-c's string fields are char *; nothing writes through them */
	out->host_id = (char *)hi->host_id;
	out->hostname = (char *)hi->hostname;
	out->boot_id = (char *)hi->boot_id;
	out->kernel_release = (char *)hi->kernel_release;
	out->kernel_version = (char *)hi->kernel_version;
	out->cpu_count = hi->cpu_count;
	out->cpu_model = (char *)hi->cpu_model;
	out->memory_bytes = hi->memory_bytes;
	out->boot_time_ns = hi->boot_time_ns;
	out->agent_version = (char *)SH_VERSION;
}
