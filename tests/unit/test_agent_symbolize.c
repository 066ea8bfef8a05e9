/* test_agent_symbolize.c: the symbolizer on a fake kallsyms, on this test
 * binary's own functions (ELF symbols, build id, file offsets), across
 * process exit, and across exec generations of a fake /proc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "symbolize.h"
#include "timeutil.h"

__attribute__((noinline, used)) int sh_test_target_fn(int x)
{
	return x * 3 + 1;
}

static struct agent_symbolizer *new_fake_kernel(const char *file)
{
	struct agent_symbolizer_opts o = { .kallsyms_path = file };
	struct agent_symbolizer *s = NULL;

	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	return s;
}

static void test_kallsyms_parse(void **state)
{
	struct agent_symbolizer *s = new_fake_kernel(SH_TEST_DATA "/kallsyms_small");
	struct agent_frame f;
	char buf[128];

	/* 10 text symbols (t, T, W), the 'd' one skipped. */
	assert_int_equal(agent_symbolizer_kernel_symbols(s), 10);
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffff81002010ULL, &f), 0);
	assert_string_equal(f.name, "do_syscall_64");
	assert_int_equal(f.sym_offset, 0x10);
	assert_null(f.module);
	assert_true(f.kernel);
	/* The unsorted line (schedule) was sorted into place. */
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffff81001900ULL, &f), 0);
	assert_string_equal(f.name, "schedule");
	/* The data symbol does not end do_syscall_64. */
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffff81002500ULL, &f), 0);
	assert_string_equal(f.name, "do_syscall_64");
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffff81003008ULL, &f), 0);
	assert_string_equal(f.name, "weak_text_fn");
	/* Modules keep their name. */
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffffc0a00804ULL, &f), 0);
	assert_string_equal(f.name, "ext4_readpage");
	assert_string_equal(f.module, "ext4");
	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "ext4_readpage [ext4]");
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffffc0b00010ULL, &f), 0);
	assert_string_equal(f.module, "e1000");
	/* Before the first symbol, and far past the last: unknown. */
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffff80000000ULL, &f), -ENOENT);
	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "[unknown] ([kernel])");
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffffc1000000ULL, &f), -ENOENT);
	agent_symbolizer_free(s);
}

static void test_kallsyms_restricted_or_missing(void **state)
{
	struct agent_symbolizer *s = new_fake_kernel(SH_TEST_DATA "/kallsyms_restricted");
	struct agent_frame f;

	assert_int_equal(agent_symbolizer_kernel_symbols(s), 0);
	assert_int_equal(agent_symbolize_kernel(s, 0xffffffff81000000ULL, &f), -ENOENT);
	agent_symbolizer_free(s);
	s = new_fake_kernel(SH_TEST_DATA "/no-such-kallsyms");
	assert_int_equal(agent_symbolizer_kernel_symbols(s), 0);
	agent_symbolizer_free(s);
	agent_symbolizer_free(NULL);
}

static void test_resolve_self(void **state)
{
	struct agent_symbolizer_opts o = { .no_kernel = true };
	struct agent_symbolizer *s = NULL;
	struct agent_symbolizer_stats st;
	uint64_t addr = (uint64_t)(uintptr_t)&sh_test_target_fn + 2;
	uint8_t id[AGENT_BUILD_ID_MAX];
	struct agent_frame f;
	char exe[4096], buf[256];
	ssize_t n;
	int idlen;

	assert_int_equal(sh_test_target_fn(1), 4);
	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	assert_int_equal(agent_symbolizer_note_pid(s, (uint32_t)getpid(), sh_now_mono_ns()), 0);
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), INT64_MAX, addr, &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	assert_int_equal(f.sym_offset, 2);
	assert_false(f.kernel);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	assert_string_equal(f.module, exe);
	/* Build id as read from the file itself. */
	idlen = agent_elf_build_id(exe, id);
	if (idlen > 0) {
		assert_int_equal(f.build_id_len, idlen);
		assert_memory_equal(f.build_id, id, (size_t)idlen);
	}
	assert_true(f.file_offset > 0);
	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "sh_test_target_fn");

	/* A libc function through .dynsym. */
	addr = (uint64_t)(uintptr_t)&getppid;
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), INT64_MAX, addr, &f), 0);
	assert_non_null(strstr(f.name, "getppid"));
	assert_non_null(strstr(f.module, "libc"));

	/* Unmapped address: unknown, formatted without a module. */
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), INT64_MAX, 16, &f), -ENOENT);
	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "[unknown]");

	agent_symbolizer_stats(s, &st);
	assert_true(st.elf_files >= 2);
	assert_true(st.pid_maps == 1);
	agent_symbolizer_free(s);
}

static void test_exited_process(void **state)
{
	struct agent_symbolizer_opts o = { .no_kernel = true };
	struct agent_symbolizer *s = NULL;
	uint64_t addr = (uint64_t)(uintptr_t)&sh_test_target_fn;
	struct agent_frame f;
	int64_t t_alive, t_exit;
	pid_t child;
	int status;

	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		pause();
		_exit(0);
	}
	t_alive = sh_now_mono_ns();
	/* Retry: the child may not have its maps visible at once. */
	assert_int_equal(agent_symbolizer_note_pid(s, (uint32_t)child, t_alive), 0);
	kill(child, SIGKILL);
	assert_int_equal(waitpid(child, &status, 0), child);
	t_exit = sh_now_mono_ns();
	agent_symbolizer_pid_exit(s, (uint32_t)child, t_exit);
	/* The process is gone; its cached maps still resolve older samples. */
	assert_int_equal(agent_symbolize_user(s, (uint32_t)child, t_alive, addr, &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	/* After the exit there is nothing to read any more. */
	assert_int_equal(agent_symbolize_user(s, (uint32_t)child, t_exit + 1, addr, &f), -ENOENT);
	assert_int_equal(agent_symbolizer_note_pid(s, (uint32_t)child, t_exit + 2), -ESRCH);
	agent_symbolizer_free(s);
}

static void write_maps(const char *dir, const char *exe, unsigned long start)
{
	char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/4242", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/4242/maps", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	/* The whole file mapped at offset 0: file offset = address - start. */
	fprintf(f, "%lx-%lx r-xp 00000000 00:00 12345 %s\n", start, start + 0x10000000UL, exe);
	fprintf(f, "7fff0000-7fff1000 r-xp 00000000 00:00 0 [vdso]\n");
	fclose(f);
}

/* find_offset returns the file offset of sh_test_target_fn, by resolving
 * it in our own process. */
static uint64_t target_file_offset(void)
{
	struct agent_symbolizer_opts o = { .no_kernel = true };
	struct agent_symbolizer *s = NULL;
	struct agent_frame f;
	uint64_t off;

	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), INT64_MAX,
					      (uint64_t)(uintptr_t)&sh_test_target_fn, &f),
			 0);
	off = f.file_offset;
	agent_symbolizer_free(s);
	return off;
}

static void test_exec_generations(void **state)
{
	char dir[] = "/tmp/sh_symtest_XXXXXX", exe[4096], buf[256];
	struct agent_symbolizer_opts o = { .no_kernel = true, .proc_root = dir };
	struct agent_symbolizer *s = NULL;
	uint64_t off = target_file_offset();
	struct agent_frame f;
	ssize_t n;

	assert_non_null(mkdtemp(dir));
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	write_maps(dir, exe, 0x400000);
	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	assert_int_equal(agent_symbolizer_note_pid(s, 4242, 100), 0);
	assert_int_equal(agent_symbolize_user(s, 4242, 150, 0x400000 + off, &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	assert_int_equal(f.file_offset, off);

	/* exec at t=200: the same file now mapped elsewhere. */
	agent_symbolizer_pid_exec(s, 4242, 200);
	write_maps(dir, exe, 0x10000000);
	assert_int_equal(agent_symbolizer_note_pid(s, 4242, 250), 0);
	/* A sample from before the exec resolves against the old maps... */
	assert_int_equal(agent_symbolize_user(s, 4242, 150, 0x400000 + off, &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	/* ...and one after it against the new ones. */
	assert_int_equal(agent_symbolize_user(s, 4242, 300, 0x10000000 + off, &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	assert_int_equal(agent_symbolize_user(s, 4242, 300, 0x400000 + off, &f), -ENOENT);
	/* [vdso] is mapped but has no file. */
	assert_int_equal(agent_symbolize_user(s, 4242, 300, 0x7fff0010, &f), -ENOENT);
	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "[unknown] ([vdso])");
	agent_symbolizer_free(s);

	snprintf(buf, sizeof(buf), "%s/4242/maps", dir);
	unlink(buf);
	snprintf(buf, sizeof(buf), "%s/4242", dir);
	rmdir(buf);
	rmdir(dir);
}

static void test_bounded_caches(void **state)
{
	struct agent_symbolizer_opts o = { .no_kernel = true, .max_pid_maps = 2 };
	struct agent_symbolizer *s = NULL;
	struct agent_symbolizer_stats st;
	pid_t kids[4];

	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	for (int i = 0; i < 4; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			pause();
			_exit(0);
		}
		assert_int_equal(agent_symbolizer_note_pid(s, (uint32_t)kids[i], 1), 0);
	}
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.pid_maps, 2);
	assert_int_equal(st.maps_evictions, 2);
	for (int i = 0; i < 4; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	agent_symbolizer_free(s);
}

static void test_frame_format(void **state)
{
	struct agent_frame f = { .name = "odd;name\n", .kernel = false };
	char buf[32];

	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "odd:name?");
	memset(&f, 0, sizeof(f));
	f.module = "/usr/lib/libfoo.so";
	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "[unknown] (/usr/lib/libfoo.so)");
	agent_frame_format(&f, buf, 8); /* truncated, terminated */
	assert_int_equal(strlen(buf), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kallsyms_parse),
		cmocka_unit_test(test_kallsyms_restricted_or_missing),
		cmocka_unit_test(test_resolve_self),
		cmocka_unit_test(test_exited_process),
		cmocka_unit_test(test_exec_generations),
		cmocka_unit_test(test_bounded_caches),
		cmocka_unit_test(test_frame_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
