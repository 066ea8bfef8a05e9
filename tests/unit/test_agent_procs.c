/* test_agent_procs.c: the process inventory: starts, exits, exec and pid
 * reuse between two fake /proc trees, hostile comm and cmdline contents,
 * garbage and truncated stat files, bounded memory under churn, and the real
 * /proc (this test's own process and children it makes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procs.h"
#include "timeutil.h"

#define BTIME_NS (1795319765LL * SH_NS_PER_SEC)

static char self_cmdline[4096];

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

static void point(const char *link, const char *tree)
{
	char target[4096];

	snprintf(target, sizeof(target), "%s/%s", SH_TEST_DATA, tree);
	unlink(link);
	assert_int_equal(symlink(target, link), 0);
}

static int64_t tick_ns(uint64_t ticks)
{
	return (int64_t)(ticks * (uint64_t)SH_NS_PER_SEC / (uint64_t)sysconf(_SC_CLK_TCK));
}

static const struct agent_proc *find(const struct agent_proc **arr, size_t n, int32_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (arr[i]->pid == pid)
			return arr[i];
	return NULL;
}

static const struct agent_proc *find_live(struct agent_procs *p, int32_t pid)
{
	const struct agent_proc *const *all;
	size_t n;

	assert_int_equal(agent_procs_snapshot(p, &all, &n), 0);
	for (size_t i = 0; i < n; i++)
		if (all[i]->pid == pid)
			return all[i];
	return NULL;
}

static void test_fake_trees(void **state)
{
	char tmp[] = "/tmp/sh-procs-XXXXXX", link[256];
	const struct agent_proc *const *all;
	const struct agent_proc *r;
	struct agent_proc_delta d;
	struct agent_procs p;
	Spikehound__Process pb;
	size_t n;

	assert_non_null(mkdtemp(tmp));
	snprintf(link, sizeof(link), "%s/proc", tmp);
	point(link, "proc-a");
	assert_int_equal(agent_procs_init(&p, link), 0);

	assert_int_equal(agent_procs_scan(&p, 1000, &d), 0);
	assert_true(d.initial);
	/* 1, 2, 7, 300, 4242, 4243; not 0123, 12abc or self */
	assert_int_equal(d.n_started, 6);
	assert_int_equal(d.n_exited, 0);
	assert_int_equal(d.n_changed, 0);
	assert_int_equal(agent_procs_count(&p), 6);

	r = find(d.started, d.n_started, 300);
	assert_non_null(r);
	assert_string_equal(r->comm, "a) b (c");
	assert_string_equal(r->cmdline, "atop -R -w /var/log/atop/x 600");
	assert_string_equal(r->exe, "/usr/bin/atop");
	assert_string_equal(r->cgroup, "/system.slice/atop.service"); /* v1 only: first line */
	assert_int_equal(r->ppid, 1);
	assert_int_equal(r->uid, 0);
	assert_true(r->start_ticks == 5000);
	assert_true(r->start_time_ns == BTIME_NS + tick_ns(5000));
	assert_true(r->exit_time_ns == 0);
	assert_false(r->kthread);

	r = find(d.started, d.n_started, 4242);
	assert_non_null(r);
	assert_string_equal(r->comm, "python3");
	assert_string_equal(r->cmdline, "python3 /opt/my app/run.py --name hello world");
	assert_string_equal(r->cgroup, "/user.slice/user-1000.slice/session-1.scope"); /* v2 wins */
	assert_int_equal(r->uid, 1000);

	r = find(d.started, d.n_started, 2);
	assert_non_null(r);
	assert_true(r->kthread);
	assert_string_equal(r->exe, "");
	assert_string_equal(r->cmdline, "");
	assert_string_equal(r->cgroup, "/");
	r = find(d.started, d.n_started, 1);
	assert_non_null(r);
	assert_string_equal(r->cmdline, "/sbin/init splash");
	assert_string_equal(r->exe, "/usr/lib/systemd/systemd");

	/* b: 300 exited; 4243 reused with a new start; 5000 new; 4242 exec'd;
	 * kworker 7 renamed (not reported) */
	point(link, "proc-b");
	assert_int_equal(agent_procs_scan(&p, 2000, &d), 0);
	assert_false(d.initial);
	assert_int_equal(d.n_started, 2);
	assert_int_equal(d.n_exited, 2);
	assert_int_equal(d.n_changed, 1);
	r = find(d.started, d.n_started, 4243);
	assert_non_null(r);
	assert_true(r->start_ticks == 7000);
	assert_string_equal(r->comm, "bash");
	assert_non_null(find(d.started, d.n_started, 5000));
	r = find(d.exited, d.n_exited, 4243);
	assert_non_null(r);
	assert_true(r->start_ticks == 6100 && r->exit_time_ns == 2000);
	assert_string_equal(r->cmdline, "sleep 60");
	r = find(d.exited, d.n_exited, 300);
	assert_non_null(r);
	assert_true(r->exit_time_ns == 2000);
	assert_string_equal(r->comm, "a) b (c");
	r = find(d.changed, d.n_changed, 4242);
	assert_non_null(r);
	assert_string_equal(r->comm, "myapp");
	assert_string_equal(r->cmdline, "myapp --serve");
	assert_string_equal(r->exe, "/opt/my app/bin/myapp");
	assert_true(r->start_ticks == 6000);
	r = find_live(&p, 7);
	assert_non_null(r);
	assert_string_equal(r->comm, "kworker/0:1-mm_percpu_wq");

	/* snapshot: sorted by pid */
	assert_int_equal(agent_procs_snapshot(&p, &all, &n), 0);
	assert_int_equal(n, 6);
	{
		static const int32_t want[] = { 1, 2, 7, 4242, 4243, 5000 };

		for (size_t i = 0; i < n; i++)
			assert_int_equal(all[i]->pid, want[i]);
	}

	/* to protobuf, borrowed strings */
	r = find_live(&p, 4242);
	agent_proc_to_process(r, &pb);
	assert_int_equal(pb.pid, 4242);
	assert_int_equal(pb.ppid, 1);
	assert_int_equal(pb.uid, 1000);
	assert_ptr_equal(pb.cmdline, r->cmdline);
	assert_string_equal(pb.cgroup, "/user.slice/user-1000.slice/session-1.scope");
	assert_true(pb.start_time_ns == BTIME_NS + tick_ns(6000));
	assert_true(pb.exit_time_ns == 0);
	{
		uint8_t buf[1024];
		size_t len = spikehound__process__pack(&pb, buf);
		Spikehound__Process *u = spikehound__process__unpack(NULL, len, buf);

		assert_non_null(u);
		assert_string_equal(u->exe, "/opt/my app/bin/myapp");
		assert_string_equal(u->comm, "myapp");
		spikehound__process__free_unpacked(u, NULL);
	}

	/* nothing new */
	assert_int_equal(agent_procs_scan(&p, 3000, &d), 0);
	assert_true(d.n_started == 0 && d.n_exited == 0 && d.n_changed == 0);
	assert_true(p.stats.started == 8 && p.stats.exited == 2 && p.stats.changed == 1);

	/* the tree vanishes: an error, and the inventory is unchanged */
	unlink(link);
	assert_int_equal(agent_procs_scan(&p, 4000, &d), -ENOENT);
	assert_int_equal(agent_procs_count(&p), 6);

	agent_procs_fini(&p);
	agent_procs_fini(&p);
	rm_rf(tmp);
}

static void link_bad(const char *tmp, const char *name)
{
	char target[4096], link[4096];

	snprintf(target, sizeof(target), "%s/proc-bad/%s", SH_TEST_DATA, name);
	snprintf(link, sizeof(link), "%s/%s", tmp, name);
	assert_int_equal(symlink(target, link), 0);
}

static void test_garbage(void **state)
{
	char tmp[] = "/tmp/sh-procs-XXXXXX", path[4096];
	struct agent_proc_delta d;
	struct agent_procs p;
	const struct agent_proc *r;

	/* no btime: init fails cleanly */
	snprintf(path, sizeof(path), "%s/proc-bad", SH_TEST_DATA);
	assert_int_equal(agent_procs_init(&p, path), -EINVAL);
	agent_procs_fini(&p);
	assert_true(agent_procs_init(&p, "/nonexistent") < 0);

	assert_non_null(mkdtemp(tmp));
	write_str(tmp, "stat", "cpu  1 2 3 4\nbtime 1795319765\n");
	for (int pid = 95; pid <= 99; pid++) {
		char name[16];

		snprintf(name, sizeof(name), "%d", pid);
		link_bad(tmp, name);
	}
	assert_int_equal(agent_procs_init(&p, tmp), 0);
	assert_int_equal(agent_procs_scan(&p, 1, &d), 0);
	/* 99 (no ')'), 98 (too few fields), 97 (empty), 96 (negative start)
	 * are skipped; 95 is kept with its odd bytes made valid UTF-8 */
	assert_int_equal(d.n_started, 1);
	r = d.started[0];
	assert_int_equal(r->pid, 95);
	assert_string_equal(r->comm, "fine");
	assert_string_equal(r->cmdline, "??bad utf8?");
	assert_string_equal(r->cgroup, "");
	assert_string_equal(r->exe, "");
	assert_true(r->uid == UINT32_MAX);
	agent_procs_fini(&p);
	rm_rf(tmp);
}

/* a stat cut at every length, with comm full of ')' and spaces */
static void test_truncated_stat(void **state)
{
	static const char stat[] =
		"4242 (x) (y) z)) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 6000 "
		"3133440 390 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
	char tmp[] = "/tmp/sh-procs-XXXXXX";
	struct agent_proc_delta d;
	struct agent_procs p;
	size_t ok = 0;

	assert_non_null(mkdtemp(tmp));
	write_str(tmp, "stat", "btime 1\n"); /* no leading newline: not found */
	assert_int_equal(agent_procs_init(&p, tmp), -EINVAL);
	write_str(tmp, "stat", "cpu 1\nbtime 1795319765\n");
	assert_int_equal(agent_procs_init(&p, tmp), 0);
	write_str(tmp, "4242/cmdline", "x\0y\0");
	for (size_t cut = 0; cut <= sizeof(stat) - 1; cut++) {
		write_file(tmp, "4242/stat", stat, cut);
		assert_int_equal(agent_procs_scan(&p, 1, &d), 0);
		/* a cut inside starttime ("600" of "6000") is another
		 * (pid, start): the old one exits, so up to 2 */
		assert_true(d.n_started <= 1 && d.n_exited <= 1);
		if (d.n_started) {
			assert_string_equal(d.started[0]->comm, "x) (y) z)");
			ok++;
		}
	}
	/* complete once starttime (field 22) is whole */
	assert_true(ok > 0);
	write_file(tmp, "4242/stat", stat, sizeof(stat) - 1);
	assert_int_equal(agent_procs_scan(&p, 1, &d), 0);
	agent_procs_fini(&p);
	rm_rf(tmp);
}

/* months of fork churn in a fake tree: memory follows the live count */
static void test_churn_bounded(void **state)
{
	char tmp[] = "/tmp/sh-procs-XXXXXX", rel[64], stat[256], dir[4096];
	struct agent_proc_delta d;
	struct agent_procs p;
	size_t caps[3] = { 0 };
	int next = 1000;

	assert_non_null(mkdtemp(tmp));
	write_str(tmp, "stat", "cpu 1\nbtime 1795319765\n");
	assert_int_equal(agent_procs_init(&p, tmp), 0);
	for (int round = 0; round < 400; round++) {
		/* 20 live at a time: each round 5 exit and 5 start */
		while (next < 1000 + 20 + 5 * round) {
			snprintf(rel, sizeof(rel), "%d/stat", next);
			snprintf(stat, sizeof(stat), "%d (w%d) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0\n",
				 next, next, next);
			write_str(tmp, rel, stat);
			next++;
		}
		for (int pid = next - 25; round > 0 && pid < next - 20; pid++) {
			snprintf(dir, sizeof(dir), "%s/%d", tmp, pid);
			rm_rf(dir);
		}
		assert_int_equal(agent_procs_scan(&p, round, &d), 0);
		assert_int_equal(agent_procs_count(&p), 20);
		if (round > 0)
			assert_true(d.n_started == 5 && d.n_exited == 5);
		if (round == 10) {
			caps[0] = p.cap_started;
			caps[1] = p.cap_exited;
			caps[2] = HASH_CNT(hh, p.table);
		}
	}
	assert_true(p.cap_started == caps[0] && p.cap_exited == caps[1]);
	assert_true(p.table->hh.tbl->num_buckets <= 64);
	assert_true(p.stats.exited == 5 * 399);
	agent_procs_fini(&p); /* ASan's leak check covers the rest */
	rm_rf(tmp);
}

struct child {
	pid_t pid;
	int go[2];
};

static void *thread_fn(void *arg)
{
	int *fds = arg;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	char c;

	assert_int_equal(write(fds[1], &tid, sizeof(tid)), sizeof(tid));
	assert_int_equal(read(fds[0], &c, 1), 0); /* until closed */
	return NULL;
}

static void test_real_proc(void **state)
{
	const struct agent_proc *r;
	struct agent_proc_delta d;
	struct agent_procs p;
	int ready[2], hold[2], tpipe[2], tdone[2], tfds[2];
	pthread_t th;
	pid_t named, spaced, tid;
	char buf[4096], c;
	ssize_t n;
	struct timespec t0, t1;

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(hold), 0);
	named = fork();
	assert_true(named >= 0);
	if (named == 0) {
		close(ready[0]);
		close(hold[1]);
		prctl(PR_SET_NAME, "a) b (c", 0, 0, 0);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		while (read(hold[0], &c, 1) > 0)
			;
		_exit(0);
	}
	spaced = fork();
	assert_true(spaced >= 0);
	if (spaced == 0) {
		close(ready[0]);
		close(hold[1]); /* or sh never sees EOF */
		dup2(hold[0], 0);
		if (write(ready[1], "y", 1) != 1)
			_exit(1);
		execl("/bin/sh", "sh", "-c", "read x; exit 0", "spikehound test", "arg with  spaces",
		      (char *)NULL);
		_exit(127);
	}
	close(hold[0]);
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(read(ready[0], &c, 1), 1);
	/* give sh a moment to finish exec */
	for (int i = 0; i < 200; i++) {
		snprintf(buf, sizeof(buf), "/proc/%d/comm", spaced);
		FILE *f = fopen(buf, "r");

		n = f ? (ssize_t)fread(buf, 1, sizeof(buf) - 1, f) : 0;
		if (f)
			fclose(f);
		if (n >= 3 && strncmp(buf, "sh\n", 3) == 0)
			break;
		usleep(10000);
	}
	assert_int_equal(pipe(tpipe), 0);
	assert_int_equal(pipe(tdone), 0);
	tfds[0] = tdone[0];
	tfds[1] = tpipe[1];
	assert_int_equal(pthread_create(&th, NULL, thread_fn, tfds), 0);
	assert_int_equal(read(tpipe[0], &tid, sizeof(tid)), sizeof(tid));

	assert_int_equal(agent_procs_init(&p, "/proc"), 0);
	assert_int_equal(agent_procs_scan(&p, sh_now_wall_ns(), &d), 0);
	assert_true(d.initial);
	assert_true(d.n_started > 1);

	/* this process, as ps would show it */
	r = find(d.started, d.n_started, getpid());
	assert_non_null(r);
	assert_string_equal(r->cmdline, self_cmdline);
	assert_string_equal(r->comm, "test_agent_proc"); /* 15-byte TASK_COMM_LEN */
	assert_int_equal(r->ppid, getppid());
	assert_int_equal(r->uid, getuid());
	n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(r->exe, buf);
	assert_true(r->cgroup[0] == '/');
	assert_true(r->start_time_ns > 0 && r->start_time_ns <= sh_now_wall_ns() + SH_NS_PER_SEC);
	assert_null(find(d.started, d.n_started, tid)); /* threads are not processes */

	r = find(d.started, d.n_started, named);
	assert_non_null(r);
	assert_string_equal(r->comm, "a) b (c");
	assert_string_equal(r->cmdline, self_cmdline);
	assert_int_equal(r->ppid, getpid());
	r = find(d.started, d.n_started, spaced);
	assert_non_null(r);
	assert_string_equal(r->comm, "sh");
	assert_string_equal(r->cmdline, "sh -c read x; exit 0 spikehound test arg with  spaces");

	/* both exit */
	close(hold[1]);
	waitpid(named, NULL, 0);
	waitpid(spaced, NULL, 0);
	assert_int_equal(agent_procs_scan(&p, 42, &d), 0);
	assert_false(d.initial);
	r = find(d.exited, d.n_exited, named);
	assert_non_null(r);
	assert_true(r->exit_time_ns == 42);
	assert_non_null(find(d.exited, d.n_exited, spaced));
	assert_null(find(d.exited, d.n_exited, getpid()));

	/* steady state costs only stat reads: time it, for the record */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 50; i++)
		assert_int_equal(agent_procs_scan(&p, 43, &d), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("procs: %zu processes, %.1f us per steady-state scan\n", agent_procs_count(&p),
		      ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
			      50);

	agent_procs_fini(&p);
	close(tdone[1]);
	pthread_join(th, NULL);
	close(tdone[0]);
	close(tpipe[0]);
	close(tpipe[1]);
	close(ready[0]);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fake_trees),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_truncated_stat),
		cmocka_unit_test(test_churn_bounded),
		cmocka_unit_test(test_real_proc),
	};
	size_t off = 0;

	/* what /proc/self/cmdline should join to */
	for (int i = 0; i < argc; i++)
		off += (size_t)snprintf(self_cmdline + off, sizeof(self_cmdline) - off, "%s%s",
					i ? " " : "", argv[i]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
