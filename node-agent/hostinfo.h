/* hostinfo.h: the facts that identify a host and its boot (machine id, boot
 * id, kernel, CPUs, memory, boot time), read once at agent start and sent at
 * the head of every request as a Hello. */
#ifndef AGENT_HOSTINFO_H
#define AGENT_HOSTINFO_H

#include <stdint.h>

#include "spikehound.pb-c.h"

/* agent_hostinfo is a plain value: every string is a NUL-terminated buffer
 * inside the struct, valid UTF-8, possibly empty; no heap memory. */
struct agent_hostinfo {
	char host_id[33];         /* /etc/machine-id: 32 lowercase hex digits */
	char hostname[256];       /* gethostname(), or proc_root/sys/kernel/hostname */
	char boot_id[37];         /* proc_root/sys/kernel/random/boot_id (UUID) */
	char kernel_release[256]; /* uname -r */
	char kernel_version[512]; /* uname -v */
	uint32_t cpu_count;       /* online CPUs */
	char cpu_model[256];      /* first "model name" in cpuinfo, "" if none */
	uint64_t memory_bytes;    /* MemTotal */
	int64_t boot_time_ns;     /* btime from proc_root/stat, wall clock */
};

/* agent_hostinfo_read fills *hi from proc_root (normally "/proc") and
 * etc_root (normally "/etc"). When proc_root is exactly "/proc" the kernel
 * strings come from uname(2), the hostname from gethostname(2) and the CPU
 * count from sysconf(_SC_NPROCESSORS_ONLN); otherwise (a test tree) from
 * proc_root/sys/kernel/{osrelease,version,hostname} and the cpuN lines of
 * proc_root/stat. Returns 0, or a negative errno when an identity fact is
 * missing or malformed (-ENOENT, -EINVAL): machine-id, boot_id, kernel
 * release, btime, MemTotal. A missing "model name" is not an error. */
int agent_hostinfo_read(const char *proc_root, const char *etc_root, struct agent_hostinfo *hi);

/* agent_hostinfo_to_hello sets the host fields of *out (host_id, hostname,
 * boot_id, kernel_release, kernel_version, cpu_count, cpu_model,
 * memory_bytes, boot_time_ns, agent_version). out must already be
 * initialized (spikehound__hello__init); labels, clock_offset_ns and
 * sent_at_ns are left for the caller. The strings are borrowed from *hi
 * (and agent_version is a static string): *hi must outlive *out, and *out
 * must never be passed to spikehound__hello__free_unpacked. */
void agent_hostinfo_to_hello(const struct agent_hostinfo *hi, Spikehound__Hello *out);

/* agent_read_btime_ns reads "btime" from proc_root/stat into *ns (wall-clock
 * ns of boot, whole seconds). Shared by hostinfo and procs so that process
 * start times and the Hello agree. Returns 0, -ENOENT, or -EINVAL. */
int agent_read_btime_ns(const char *proc_root, int64_t *ns);

/* agent_utf8_sanitize replaces, in place, every byte of s that is not part
 * of a well-formed UTF-8 sequence with '?', so kernel-supplied strings
 * (comm, cmdline, hostname) are valid protobuf strings and PostgreSQL text.
 * The length is unchanged. */
void agent_utf8_sanitize(char *s);

#endif
