/* test_agent_metrics.c: per-second host metrics: exact deltas and
 * percentages between two fake /proc trees (data/proc-a then proc-b), old
 * kernels without PSI, garbage and truncated files, and the real /proc. */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

static const char *const metric_files[] = {
	"stat",	   "loadavg", "pressure/cpu",	     "pressure/memory", "pressure/io",
	"meminfo", "vmstat",  "sys/fs/dentry-state", "softirqs",
};
#define N_METRIC_FILES (sizeof(metric_files) / sizeof(metric_files[0]))

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *dir, const char *rel, const void *data, size_t len)
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
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void write_str(const char *dir, const char *rel, const char *s)
{
	write_file(dir, rel, s, strlen(s));
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	char *buf = malloc(1 << 20);
	size_t n;

	assert_non_null(f);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* tmp/proc as a symlink to a data tree, so one sampler sees a and then b */
static void point(const char *link, const char *tree)
{
	char target[4096];

	snprintf(target, sizeof(target), "%s/%s", SH_TEST_DATA, tree);
	unlink(link);
	assert_int_equal(symlink(target, link), 0);
}

static void test_fake_deltas(void **state)
{
	char tmp[] = "/tmp/sh-metrics-XXXXXX", link[256];
	Spikehound__MetricSecond ms;
	struct agent_metrics m;

	assert_non_null(mkdtemp(tmp));
	snprintf(link, sizeof(link), "%s/proc", tmp);
	point(link, "proc-a");
	assert_int_equal(agent_metrics_init(&m, link), 0);

	/* the first sample primes: gauges only */
	assert_int_equal(agent_metrics_sample(&m, 1000, &ms), 0);
	assert_true(ms.time_ns == 1000);
	assert_true(ms.cpu_user_pct == 0 && ms.cpu_idle_pct == 0 && ms.cpu_sys_pct == 0);
	assert_true(ms.ctxt == 0 && ms.forks == 0 && ms.intr == 0 && ms.softirq_net_rx == 0);
	assert_true(ms.pgscan_direct == 0 && ms.allocstall == 0 && ms.psi_cpu_some_us == 0);
	assert_true(ms.load1 == 0.37f);
	assert_int_equal(ms.procs_running, 2);
	assert_int_equal(ms.procs_blocked, 0);
	assert_true(ms.psi_cpu_some_avg10 == 0.62f);
	assert_true(ms.psi_io_full_avg10 == 0.59f);
	assert_true(ms.mem_total_kb == 24683620);
	assert_true(ms.mem_available_kb == 24254200);
	assert_true(ms.slab_reclaimable_kb == 121892);
	assert_true(ms.slab_unreclaimable_kb == 24700);
	assert_true(ms.dentry_nr == 85692 && ms.dentry_unused == 84331 && ms.dentry_negative == 5510);

	point(link, "proc-b");
	assert_int_equal(agent_metrics_sample(&m, 2000, &ms), 0);
	/* ticks: user+nice 400, sys 200, idle 1200, iowait 100, irq 50,
	 * softirq 30, steal 20 of 2000 (guest is inside user, not added) */
	assert_true(ms.cpu_user_pct == 20.0f);
	assert_true(ms.cpu_sys_pct == 10.0f);
	assert_true(ms.cpu_idle_pct == 60.0f);
	assert_true(ms.cpu_iowait_pct == 5.0f);
	assert_true(ms.cpu_irq_pct == 2.5f);
	assert_true(ms.cpu_softirq_pct == 1.5f);
	assert_true(ms.cpu_steal_pct == 1.0f);
	assert_true(ms.load1 == 1.25f);
	assert_int_equal(ms.procs_running, 3);
	assert_int_equal(ms.procs_blocked, 1);
	assert_true(ms.psi_cpu_some_avg10 == 1.5f);
	assert_true(ms.psi_mem_some_avg10 == 0.25f);
	assert_true(ms.psi_mem_full_avg10 == 0.125f);
	assert_true(ms.psi_io_some_avg10 == 2.75f);
	assert_true(ms.psi_io_full_avg10 == 2.5f);
	assert_true(ms.psi_cpu_some_us == 10000);
	assert_true(ms.psi_mem_some_us == 500);
	assert_true(ms.psi_io_some_us == 10000);
	assert_true(ms.mem_free_kb == 23900000);
	assert_true(ms.mem_available_kb == 24200000);
	assert_true(ms.mem_cached_kb == 270000);
	assert_true(ms.slab_reclaimable_kb == 121000);
	assert_true(ms.slab_unreclaimable_kb == 25000);
	assert_true(ms.pgscan_direct == 50);  /* not pgscan_direct_throttle */
	assert_true(ms.pgscan_kswapd == 400); /* not pgscan_khugepaged */
	assert_true(ms.pgsteal_direct == 40);
	assert_true(ms.pgsteal_kswapd == 350);
	assert_true(ms.allocstall == 5);
	assert_true(ms.compact_stall == 2);
	assert_true(ms.dentry_nr == 90000 && ms.dentry_unused == 85000 && ms.dentry_negative == 6000);
	assert_true(ms.ctxt == 2000);
	assert_true(ms.forks == 10);
	assert_true(ms.intr == 1500);
	assert_true(ms.softirq_net_rx == 750);

	/* counters going backwards (b -> a) count as zero, never wrap */
	point(link, "proc-a");
	assert_int_equal(agent_metrics_sample(&m, 3000, &ms), 0);
	assert_true(ms.ctxt == 0 && ms.intr == 0 && ms.pgscan_direct == 0 && ms.psi_io_some_us == 0);
	assert_true(ms.cpu_user_pct == 0 && ms.cpu_idle_pct == 0);
	assert_int_equal(m.read_errors, 0);

	agent_metrics_fini(&m);
	agent_metrics_fini(&m); /* idempotent */
	rm_rf(tmp);
}

/* a kernel without PSI, with per-zone reclaim counters (< 4.8), a single
 * allocstall and a dentry-state whose 5th field is a dummy 0 */
static void write_old_tree(const char *dir, unsigned k)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "cpu  %u 0 %u %u\ncpu0 1 0 1 1\nintr %u 1 2\nctxt %u\nbtime 1\n"
		 "processes %u\nprocs_running 1\nprocs_blocked 0\n",
		 100 * k, 100 * k, 800 * k, 10 * k, 20 * k, 3 * k);
	write_str(dir, "stat", buf);
	write_str(dir, "loadavg", "0.00 0.00 0.00 1/10 1\n");
	snprintf(buf, sizeof(buf),
		 "MemTotal: 1000 kB\nMemFree: 500 kB\nCached: 100 kB\n");
	write_str(dir, "meminfo", buf);
	snprintf(buf, sizeof(buf),
		 "pgscan_kswapd_dma 0\npgscan_kswapd_dma32 %u\npgscan_kswapd_normal %u\n"
		 "pgscan_kswapd_movable 0\npgscan_direct_dma32 %u\npgscan_direct_normal %u\n"
		 "pgscan_direct_throttle %u\npgsteal_kswapd_normal %u\npgsteal_direct_normal %u\n"
		 "allocstall %u\ncompact_stall %u\n",
		 k, 2 * k, 3 * k, 4 * k, 1000 * k, 5 * k, 6 * k, 7 * k, 8 * k);
	write_str(dir, "vmstat", buf);
	write_str(dir, "sys/fs/dentry-state", "1000\t500\t45\t0\t0\t0\n");
	write_str(dir, "softirqs", "      CPU0\n  NET_RX: 5\n");
}

static void test_old_kernel(void **state)
{
	char tmp[] = "/tmp/sh-metrics-XXXXXX";
	Spikehound__MetricSecond ms;
	struct agent_metrics m;

	assert_non_null(mkdtemp(tmp));
	write_old_tree(tmp, 1);
	assert_int_equal(agent_metrics_init(&m, tmp), 0);
	assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
	write_old_tree(tmp, 3);
	assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
	assert_true(ms.psi_cpu_some_avg10 == -1 && ms.psi_mem_some_avg10 == -1 &&
		    ms.psi_mem_full_avg10 == -1 && ms.psi_io_some_avg10 == -1 &&
		    ms.psi_io_full_avg10 == -1);
	assert_true(ms.psi_cpu_some_us == 0 && ms.psi_mem_some_us == 0 && ms.psi_io_some_us == 0);
	assert_true(ms.pgscan_kswapd == 6);  /* (1+2) * 2 */
	assert_true(ms.pgscan_direct == 14); /* (3+4) * 2, not the throttle count */
	assert_true(ms.pgsteal_kswapd == 10);
	assert_true(ms.pgsteal_direct == 12);
	assert_true(ms.allocstall == 14);
	assert_true(ms.compact_stall == 16);
	assert_true(ms.dentry_negative == 0 && ms.dentry_nr == 1000);
	/* 4-field cpu line of an ancient kernel: user 200, sys 200, idle 1600 */
	assert_true(ms.cpu_user_pct == 10.0f && ms.cpu_sys_pct == 10.0f && ms.cpu_idle_pct == 80.0f);
	assert_true(ms.ctxt == 40 && ms.forks == 6 && ms.intr == 20);
	assert_true(ms.mem_available_kb == 0 && ms.mem_free_kb == 500);
	assert_int_equal(m.read_errors, 0); /* no PSI is not an error */
	agent_metrics_fini(&m);
	rm_rf(tmp);
}

static void test_garbage(void **state)
{
	char path[4096];
	Spikehound__MetricSecond ms;
	struct agent_metrics m;

	snprintf(path, sizeof(path), "%s/proc-bad", SH_TEST_DATA);
	assert_int_equal(agent_metrics_init(&m, path), 0);
	for (int i = 0; i < 3; i++) {
		assert_true(agent_metrics_sample(&m, 7, &ms) < 0);
		assert_true(ms.time_ns == 7);
		assert_true(ms.cpu_user_pct == 0 && ms.ctxt == 0 && ms.pgscan_direct == 0);
		assert_true(ms.psi_cpu_some_avg10 == -1 && ms.psi_mem_some_avg10 == -1 &&
			    ms.psi_io_some_avg10 == -1);
		assert_true(ms.mem_total_kb == 0 && ms.load1 == 0 && ms.softirq_net_rx == 0);
	}
	assert_true(m.read_errors > 0);
	agent_metrics_fini(&m);

	/* a root that does not exist at all */
	assert_int_equal(agent_metrics_init(&m, "/nonexistent/proc"), 0);
	assert_int_equal(agent_metrics_sample(&m, 0, &ms), -ENOENT);
	agent_metrics_fini(&m);
}

/* Every metric file cut at every length: a result or an error, never a
 * crash or an overread (run under ASan), and percentages stay sane. */
static void test_truncated(void **state)
{
	char tmp[] = "/tmp/sh-metrics-XXXXXX", path[4096];
	char *full[N_METRIC_FILES];
	size_t len[N_METRIC_FILES];
	Spikehound__MetricSecond ms;
	struct agent_metrics m;
	unsigned samples = 0;

	assert_non_null(mkdtemp(tmp));
	for (size_t i = 0; i < N_METRIC_FILES; i++) {
		snprintf(path, sizeof(path), "%s/proc-b/%s", SH_TEST_DATA, metric_files[i]);
		full[i] = slurp(path, &len[i]);
		write_file(tmp, metric_files[i], full[i], len[i]);
	}
	assert_int_equal(agent_metrics_init(&m, tmp), 0);
	for (size_t i = 0; i < N_METRIC_FILES; i++) {
		for (size_t cut = 0; cut < len[i]; cut++) {
			int err;

			write_file(tmp, metric_files[i], full[i], cut);
			err = agent_metrics_sample(&m, 0, &ms);
			assert_true(err == 0 || err == -EINVAL);
			if (strcmp(metric_files[i], "stat") != 0)
				assert_int_equal(err, 0);
			float sum = ms.cpu_user_pct + ms.cpu_sys_pct + ms.cpu_idle_pct +
				    ms.cpu_iowait_pct + ms.cpu_irq_pct + ms.cpu_softirq_pct +
				    ms.cpu_steal_pct;
			assert_true(sum == 0 || (sum > 99.9f && sum < 100.1f));
			samples++;
			/* restore and resample so the next cut has a full baseline */
			write_file(tmp, metric_files[i], full[i], len[i]);
			assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
		}
	}
	assert_true(samples > 1000);
	for (size_t i = 0; i < N_METRIC_FILES; i++)
		free(full[i]);
	agent_metrics_fini(&m);
	rm_rf(tmp);
}

/* a file larger than the initial buffer is read whole, then no more growth */
static void test_big_file_and_no_growth(void **state)
{
	char tmp[] = "/tmp/sh-metrics-XXXXXX", path[4096];
	Spikehound__MetricSecond ms;
	struct agent_metrics m;
	size_t len, cap;
	char *stat, *big;
	char *buf;

	assert_non_null(mkdtemp(tmp));
	for (size_t i = 0; i < N_METRIC_FILES; i++) {
		char *c;

		snprintf(path, sizeof(path), "%s/proc-a/%s", SH_TEST_DATA, metric_files[i]);
		c = slurp(path, &len);
		write_file(tmp, metric_files[i], c, len);
		free(c);
	}
	/* 4096 CPUs: the "ctxt" line is ~300 KiB into /proc/stat */
	snprintf(path, sizeof(path), "%s/proc-a/stat", SH_TEST_DATA);
	stat = slurp(path, &len);
	big = malloc(1 << 21);
	assert_non_null(big);
	{
		char *nl = strchr(stat, '\n');
		size_t off = (size_t)(nl + 1 - stat);

		memcpy(big, stat, off);
		for (int c = 0; c < 4096; c++)
			off += (size_t)sprintf(big + off, "cpu%d 500 50 250 4000 100 25 50 25 15 0\n", c);
		strcpy(big + off, nl + 1);
		write_str(tmp, "stat", big);
	}
	assert_int_equal(agent_metrics_init(&m, tmp), 0);
	assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
	assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
	assert_int_equal(m.read_errors, 0);
	buf = m.buf;
	cap = m.cap;
	assert_true(cap > 64 * 1024);
	for (int i = 0; i < 200; i++)
		assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
	assert_ptr_equal(m.buf, buf);
	assert_true(m.cap == cap);
	free(stat);
	free(big);
	agent_metrics_fini(&m);
	rm_rf(tmp);
}

static void test_real_proc(void **state)
{
	struct timespec ts = { 1, 0 };
	Spikehound__MetricSecond ms;
	struct agent_metrics m;
	float sum;
	pid_t pid;

	assert_int_equal(agent_metrics_init(&m, "/proc"), 0);
	assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
	assert_true(ms.mem_total_kb > 0 && ms.mem_available_kb <= ms.mem_total_kb);
	assert_true(ms.dentry_nr > 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	nanosleep(&ts, NULL);
	assert_int_equal(agent_metrics_sample(&m, 0, &ms), 0);
	sum = ms.cpu_user_pct + ms.cpu_sys_pct + ms.cpu_idle_pct + ms.cpu_iowait_pct +
	      ms.cpu_irq_pct + ms.cpu_softirq_pct + ms.cpu_steal_pct;
	assert_true(sum > 99.0f && sum < 101.0f);
	assert_true(ms.forks >= 1);
	assert_true(ms.ctxt > 0 && ms.intr > 0);
	assert_true(ms.procs_running >= 1);
	assert_int_equal(m.read_errors, 0);
	agent_metrics_fini(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fake_deltas),
		cmocka_unit_test(test_old_kernel),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_big_file_and_no_growth),
		cmocka_unit_test(test_real_proc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
