/* test_agent_hostinfo.c: host identity from a fake tree (data/proc-a,
 * data/etc-a), malformed ids, the Hello it fills, UTF-8 cleaning, and the
 * real host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "hostinfo.h"
#include "timeutil.h"

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_str(const char *dir, const char *rel, const char *s)
{
	char path[4096], *slash;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	for (slash = strchr(path + strlen(dir) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(s, f);
	fclose(f);
}

static void data_path(char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", SH_TEST_DATA, rel);
}

static void test_fake(void **state)
{
	char proc[4096], etc[4096];
	struct agent_hostinfo hi;
	Spikehound__Hello hello;
	Spikehound__Hello *u;
	uint8_t buf[2048];
	size_t len;

	data_path(proc, sizeof(proc), "proc-a");
	data_path(etc, sizeof(etc), "etc-a");
	assert_int_equal(agent_hostinfo_read(proc, etc, &hi), 0);
	assert_string_equal(hi.host_id, "3d1219c7c4c5404aaa1f6d2a48adfda4");
	assert_string_equal(hi.boot_id, "c9c162b1-5944-4721-a2f8-36b327e25cd7");
	assert_string_equal(hi.hostname, "db-17.example");
	assert_string_equal(hi.kernel_release, "6.1.0-18-amd64");
	assert_string_equal(hi.kernel_version, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)");
	assert_int_equal(hi.cpu_count, 2);
	assert_string_equal(hi.cpu_model, "AMD EPYC 7763 64-Core Processor");
	assert_true(hi.memory_bytes == 24683620ULL * 1024);
	assert_true(hi.boot_time_ns == 1795319765LL * SH_NS_PER_SEC);

	spikehound__hello__init(&hello);
	hello.sent_at_ns = 99;
	agent_hostinfo_to_hello(&hi, &hello);
	assert_ptr_equal(hello.host_id, hi.host_id); /* borrowed, not copied */
	assert_ptr_equal(hello.cpu_model, hi.cpu_model);
	assert_true(hello.sent_at_ns == 99);            /* left alone */
	assert_int_equal(hello.n_labels, 0);
	assert_true(strlen(hello.agent_version) > 0);
	len = spikehound__hello__get_packed_size(&hello);
	assert_true(len < sizeof(buf));
	spikehound__hello__pack(&hello, buf);
	u = spikehound__hello__unpack(NULL, len, buf);
	assert_non_null(u);
	assert_string_equal(u->boot_id, hi.boot_id);
	assert_string_equal(u->kernel_release, "6.1.0-18-amd64");
	assert_int_equal(u->cpu_count, 2);
	assert_true(u->memory_bytes == hi.memory_bytes);
	assert_true(u->boot_time_ns == hi.boot_time_ns);
	assert_true(u->sent_at_ns == 99);
	spikehound__hello__free_unpacked(u, NULL);
}

static void test_bad(void **state)
{
	char proc[4096], etc[4096], bad[4096];
	char tmp[] = "/tmp/sh-hostinfo-XXXXXX", tproc[4200];
	struct agent_hostinfo hi;

	data_path(proc, sizeof(proc), "proc-a");
	data_path(etc, sizeof(etc), "etc-a");
	data_path(bad, sizeof(bad), "etc-bad");
	assert_int_equal(agent_hostinfo_read(proc, bad, &hi), -EINVAL);
	assert_int_equal(agent_hostinfo_read(proc, "/nonexistent", &hi), -ENOENT);
	data_path(bad, sizeof(bad), "proc-bad");
	assert_int_equal(agent_hostinfo_read(bad, etc, &hi), -EINVAL); /* boot_id */

	/* a minimal tree, then break one file at a time */
	assert_non_null(mkdtemp(tmp));
	snprintf(tproc, sizeof(tproc), "%s/proc", tmp);
	assert_int_equal(mkdir(tproc, 0755), 0);
	write_str(tmp, "etc/machine-id", "0123456789abcdef0123456789abcdef");
	write_str(tproc, "sys/kernel/random/boot_id", "00000000-0000-4000-8000-000000000000\n");
	write_str(tproc, "sys/kernel/osrelease", "5.4.0\n");
	write_str(tproc, "stat", "cpu  1 1 1 1\ncpu0 1 1 1 1\nbtime 1000\n");
	write_str(tproc, "meminfo", "MemTotal: 1024 kB\n");
	write_str(tproc, "cpuinfo", "processor\t: 0\nHardware\t: BCM2835\n"); /* arm: no model name */
	snprintf(etc, sizeof(etc), "%s/etc", tmp);
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), 0);
	assert_string_equal(hi.cpu_model, "");
	assert_string_equal(hi.hostname, "");
	assert_string_equal(hi.kernel_version, "");
	assert_int_equal(hi.cpu_count, 1);
	assert_true(hi.memory_bytes == 1024 * 1024);
	assert_true(hi.boot_time_ns == 1000 * SH_NS_PER_SEC);

	write_str(tmp, "etc/machine-id", "0123456789abcdef0123456789abcde\n"); /* 31 */
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tmp, "etc/machine-id", "0123456789abcdef0123456789abcdef0\n"); /* 33 */
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tmp, "etc/machine-id", "");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tmp, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), 0);

	write_str(tproc, "sys/kernel/random/boot_id", "00000000-0000-4000-8000-00000000000\n");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tproc, "sys/kernel/random/boot_id", "00000000-0000-4000-8000-000000000000\n");

	write_str(tproc, "stat", "cpu  1 1 1 1\nbtime x\n");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tproc, "stat", "cpu  1 1 1 1\nbtime");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tproc, "stat", "cpu  1 1 1 1\nbtime 1000\n");

	write_str(tproc, "meminfo", "MemTotal:");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tproc, "meminfo", "MemFree: 1 kB\n");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tproc, "meminfo", "MemTotal: 1024 kB\n");

	write_str(tproc, "sys/kernel/osrelease", "\n");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), -EINVAL);
	write_str(tproc, "sys/kernel/osrelease", "5.4.0\n");

	write_str(tproc, "sys/kernel/hostname", "h\xff\xfe" "st\n");
	assert_int_equal(agent_hostinfo_read(tproc, etc, &hi), 0);
	assert_string_equal(hi.hostname, "h??st");
	rm_rf(tmp);
}

static void test_utf8(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain", "plain" },
		{ "caf\xc3\xa9", "caf\xc3\xa9" },			/* é */
		{ "\xe2\x82\xac 5", "\xe2\x82\xac 5" },			/* € */
		{ "\xf0\x9f\x94\xa5", "\xf0\x9f\x94\xa5" },		/* 4-byte */
		{ "a\xc3", "a?" },					/* cut */
		{ "\xe2\x82", "??" },					/* cut 3-byte */
		{ "\xc0\xaf", "??" },					/* overlong */
		{ "\xed\xa0\x80", "???" },				/* surrogate */
		{ "\xf4\x90\x80\x80", "????" },				/* > U+10FFFF */
		{ "\x80x\xbf", "?x?" },					/* stray continuation */
		{ "", "" },
	};
	char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", cases[i].in);
		agent_utf8_sanitize(buf);
		assert_string_equal(buf, cases[i].out);
	}
}

static void test_real(void **state)
{
	struct agent_hostinfo hi;
	struct utsname u;
	struct timespec up;
	char host[256];
	int err;

	if (access("/etc/machine-id", R_OK) != 0)
		skip(); /* some containers have none */
	err = agent_hostinfo_read("/proc", "/etc", &hi);
	assert_int_equal(err, 0);
	assert_int_equal(uname(&u), 0);
	assert_string_equal(hi.kernel_release, u.release);
	assert_string_equal(hi.kernel_version, u.version);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_string_equal(hi.hostname, host);
	assert_int_equal(hi.cpu_count, (uint32_t)sysconf(_SC_NPROCESSORS_ONLN));
	assert_true(hi.memory_bytes > 0);
	assert_int_equal(strlen(hi.host_id), 32);
	assert_int_equal(strlen(hi.boot_id), 36);
	/* btime is whole seconds and drifts with NTP: a few seconds slack */
	clock_gettime(CLOCK_BOOTTIME, &up);
	{
		int64_t boot = sh_now_wall_ns() - (int64_t)up.tv_sec * SH_NS_PER_SEC - up.tv_nsec;
		int64_t diff = boot - hi.boot_time_ns;

		assert_true(diff > -5 * SH_NS_PER_SEC && diff < 5 * SH_NS_PER_SEC);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fake),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_real),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
