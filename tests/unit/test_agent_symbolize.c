/* test_agent_symbolize.c: the symbolizer on a fake kallsyms, on this test
 * binary's own functions (ELF symbols, build id, file offsets), across
 * process exit, across exec generations of a fake /proc, and from the
 * kernel's build id + offset frames of processes whose maps were never
 * read (the build id -> file index, parsing on first use). */
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

static void self_exe(char *exe, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", exe, len - 1);

	assert_true(n > 0);
	exe[n] = '\0';
}

/* frame_id fills id as the kernel reports a frame: build id padded to 20. */
static void frame_id(struct agent_frame_id *id, const uint8_t *bid, int len, uint64_t off)
{
	memset(id, 0, sizeof(*id));
	memcpy(id->build_id, bid, (size_t)len);
	id->build_id_len = AGENT_BUILD_ID_MAX;
	id->file_offset = off;
}

/* libc_frame fills id with libc's build id and getppid's file offset (as
 * the kernel would report a frame there); build_id_len 0 if unknown. */
static void libc_frame(struct agent_frame_id *id)
{
	struct agent_symbolizer_opts o = { .no_kernel = true };
	struct agent_symbolizer *s = NULL;
	struct agent_frame f;

	memset(id, 0, sizeof(*id));
	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	if (agent_symbolize_user(s, (uint32_t)getpid(), INT64_MAX, (uint64_t)(uintptr_t)&getppid,
				 &f) == 0 &&
	    f.build_id_len)
		frame_id(id, f.build_id, f.build_id_len, f.file_offset);
	agent_symbolizer_free(s);
}

/* A process that exited before anyone read its maps (an empty fake /proc):
 * its frames carry only the kernel's build id + offset. The file is found
 * once a process exec'd it; its symbols are parsed only when named. */
static void test_build_id_exec_index(void **state)
{
	char dir[] = "/tmp/sh_symtest_XXXXXX", exe[4096], buf[256];
	struct agent_symbolizer_opts o = { .no_kernel = true, .proc_root = dir };
	struct agent_symbolizer *s = NULL;
	struct agent_symbolizer_stats st;
	uint64_t off = target_file_offset(), ip = 0x55aa00000000ULL + off;
	uint64_t garbage[2] = { 0x7ffd00001234ULL, 0x3d };
	struct agent_frame_id ids[2];
	uint8_t bid[AGENT_BUILD_ID_MAX];
	struct agent_frame f;
	int len;

	self_exe(exe, sizeof(exe));
	len = agent_elf_build_id(exe, bid);
	if (len <= 0)
		skip(); /* built without a build id */
	assert_non_null(mkdtemp(dir));
	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	frame_id(&ids[0], bid, len, off);
	/* An unknown build id: the maps would tell its file, but are gone. */
	assert_int_equal(agent_symbolizer_note_stack(s, 4242, 100, &ip, ids, 1), -ESRCH);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.frames_build_id, 1);
	assert_int_equal(st.elf_loads, 0);
	assert_int_equal(st.maps_loads, 0);

	/* Nothing knows this build id yet: unresolved, but build id and offset kept. */
	assert_int_equal(agent_symbolize_user(s, 4242, 150, ip, &f), -ENOENT);
	assert_int_equal(f.build_id_len, len);
	assert_memory_equal(f.build_id, bid, (size_t)len);
	assert_int_equal(f.file_offset, off);
	assert_null(f.module);
	agent_frame_format(&f, buf, sizeof(buf));
	assert_string_equal(buf, "[unknown]");

	/* A process exec'd our binary: its build id is read when next missing. */
	agent_symbolizer_note_exe(s, "relative/paths/are/ignored");
	agent_symbolizer_note_exe(s, exe);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.exe_files, 1);
	assert_int_equal(st.exe_keys, 0);
	assert_int_equal(agent_symbolize_user(s, 4242, 150, ip, &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	assert_string_equal(f.module, exe);
	assert_int_equal(f.file_offset, off);
	assert_int_equal(f.build_id_len, len);
	/* The return-address form (addr - 1 of the next instruction) maps too. */
	assert_int_equal(agent_symbolize_user(s, 4242, 150, ip + 1, &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	/* libc: found as a library our binary needs (DT_NEEDED). */
	libc_frame(&ids[1]);
	if (ids[1].build_id_len) {
		uint64_t lip = 0x7f0000010000ULL + (ids[1].file_offset & 0xfff);

		assert_int_equal(agent_symbolizer_note_stack(s, 4242, 120, &lip, &ids[1], 1), 0);
		assert_int_equal(agent_symbolize_user(s, 4242, 150, lip, &f), 0);
		assert_non_null(strstr(f.name, "getppid"));
		assert_non_null(f.module);
		assert_non_null(strstr(f.module, "libc"));
	}
	agent_symbolizer_stats(s, &st);
	/* our binary, and the libraries it needs (libc at least) */
	assert_true(st.exe_keys >= 2);
	assert_true(st.exe_files >= 2);
	assert_int_equal(st.elf_loads, ids[1].build_id_len ? 2 : 1); /* parsed when named */
	assert_true(st.build_ids >= 2);
	assert_int_equal(st.resolved, ids[1].build_id_len ? 3 : 2);
	assert_int_equal(st.no_file, 1);

	/* Garbage frames (find_vma gave the next mapping: the offset
	 * underflowed; or below any mapping) are no hints. */
	frame_id(&ids[0], bid, len, 0xffffffffffc01234ULL);
	frame_id(&ids[1], bid, len, 0x3d);
	assert_int_equal(agent_symbolizer_note_stack(s, 4242, 160, garbage, ids, 2), 0);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.frames_unmapped, 2);
	assert_int_equal(agent_symbolize_user(s, 4242, 170, garbage[0], &f), -ENOENT);
	assert_null(f.module);
	assert_int_equal(f.build_id_len, 0);

	/* After an exec the old generation's hints answer only older samples. */
	agent_symbolizer_pid_exec(s, 4242, 200);
	assert_int_equal(agent_symbolize_user(s, 4242, 150, ip, &f), 0);
	assert_int_equal(agent_symbolize_user(s, 4242, 250, ip, &f), -ENOENT);
	agent_symbolizer_free(s);
	rmdir(dir);
}

/* Frames the kernel found in no file mapping (garbage of a frame pointer
 * walk) do not make the symbolizer re-read a live process's maps. */
static void test_unmapped_frames(void **state)
{
	char dir[] = "/tmp/sh_symtest_XXXXXX", exe[4096], path[4200];
	struct agent_symbolizer_opts o = { .no_kernel = true, .proc_root = dir };
	struct agent_symbolizer *s = NULL;
	struct agent_symbolizer_stats st;
	uint64_t off = target_file_offset();
	uint64_t ips[3] = { 0x400000 + off, 0x7ffd12345678ULL, 0x200000 };
	struct agent_frame_id ids[3];
	uint8_t bid[AGENT_BUILD_ID_MAX];
	struct agent_frame f;
	int len;

	self_exe(exe, sizeof(exe));
	len = agent_elf_build_id(exe, bid);
	if (len <= 0)
		skip();
	assert_non_null(mkdtemp(dir));
	write_maps(dir, exe, 0x400000);
	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	frame_id(&ids[0], bid, len, off);
	memset(&ids[1], 0, sizeof(ids[1])); /* address only: the stack */
	frame_id(&ids[2], bid, len, ips[2] - 0x400000); /* below the mapping: underflowed */
	/* the build id is new: the maps are read once, its file indexed; the
	 * sampler may stop sending build ids for this process (1, once) */
	assert_int_equal(agent_symbolizer_note_stack(s, 4242, 100, ips, ids, 3), 1);
	assert_int_equal(agent_symbolizer_note_stack(s, 4242, 101, ips, ids, 1), 0);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.maps_loads, 1);
	assert_int_equal(st.frames_build_id, 2);
	assert_int_equal(st.frames_ip_only, 1);
	assert_int_equal(st.frames_unmapped, 1);
	usleep(250 * 1000); /* past the maps refresh interval */
	assert_int_equal(agent_symbolize_user(s, 4242, 150, ips[1] - 1, &f), -ENOENT);
	assert_int_equal(agent_symbolize_user(s, 4242, 150, ips[2] - 1, &f), -ENOENT);
	assert_int_equal(agent_symbolize_user(s, 4242, 150, ips[0], &f), 0);
	assert_string_equal(f.name, "sh_test_target_fn");
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.maps_loads, 1);
	assert_int_equal(st.no_mapping, 2);
	/* an address never sampled may be newly mapped: that one re-reads */
	assert_int_equal(agent_symbolize_user(s, 4242, 150, 0x20000000, &f), -ENOENT);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.maps_loads, 2);

	/* exec: the generation that was reported mapped is closed (1); in the
	 * new one the build id is known, so the maps are read only once the
	 * process has lived on for 16 stacks */
	assert_int_equal(agent_symbolizer_pid_exec(s, 4242, 200), 1);
	for (int i = 0; i < 15; i++)
		assert_int_equal(agent_symbolizer_note_stack(s, 4242, 300 + i, ips, ids, 1), 0);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.maps_loads, 2);
	assert_int_equal(agent_symbolizer_note_stack(s, 4242, 400, ips, ids, 1), 1);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.maps_loads, 3);
	assert_int_equal(agent_symbolizer_pid_exit(s, 4242, 500), 1);
	agent_symbolizer_free(s);
	snprintf(path, sizeof(path), "%s/4242/maps", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/4242", dir);
	rmdir(path);
	rmdir(dir);
}

/* The build id of a file mapped by a live process (read when one of its
 * frames is named) names the frames of a process that is gone. */
static void test_build_id_from_maps(void **state)
{
	struct agent_symbolizer_opts o = { .no_kernel = true };
	uint64_t addr = (uint64_t)(uintptr_t)&getppid, ip;
	struct agent_symbolizer *s = NULL;
	struct agent_symbolizer_stats st;
	struct agent_frame_id id;
	struct agent_frame f;
	char module[4096];
	pid_t child;

	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), INT64_MAX, addr, &f), 0);
	if (!f.build_id_len)
		skip(); /* a libc without a build id */
	snprintf(module, sizeof(module), "%s", f.module);
	frame_id(&id, f.build_id, f.build_id_len, f.file_offset);
	/* a pid that is certainly gone: a reaped child */
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	ip = 0x7f0000000000ULL + (f.file_offset & 0xfff) + 0x10000;
	assert_int_equal(agent_symbolizer_note_stack(s, (uint32_t)child, 10, &ip, &id, 1), 0);
	agent_symbolizer_pid_exit(s, (uint32_t)child, 20);
	assert_int_equal(agent_symbolize_user(s, (uint32_t)child, 15, ip, &f), 0);
	assert_non_null(strstr(f.name, "getppid"));
	assert_string_equal(f.module, module);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.elf_loads, 1); /* libc, parsed once */
	assert_int_equal(st.pid_maps, 2);
	agent_symbolizer_free(s);
}

/* A build id no file is known for, with a separate debug file: named
 * from the debug file alone (libc6-dbg here; skipped without it). */
static void test_build_id_debug_only(void **state)
{
	struct agent_symbolizer_opts o = { .no_kernel = true };
	uint64_t addr = (uint64_t)(uintptr_t)&getppid, ip;
	struct agent_symbolizer *s = NULL;
	struct agent_frame_id id;
	struct agent_frame f;
	char dbg[128], dir[] = "/tmp/sh_symtest_XXXXXX";
	int n;

	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), INT64_MAX, addr, &f), 0);
	n = snprintf(dbg, sizeof(dbg), "/usr/lib/debug/.build-id/%02x/", f.build_id[0]);
	for (int i = 1; i < f.build_id_len; i++)
		n += snprintf(dbg + n, sizeof(dbg) - (size_t)n, "%02x", f.build_id[i]);
	snprintf(dbg + n, sizeof(dbg) - (size_t)n, ".debug");
	frame_id(&id, f.build_id, f.build_id_len, f.file_offset);
	agent_symbolizer_free(s);
	if (!f.build_id_len || access(dbg, R_OK) != 0)
		skip();
	/* a fresh symbolizer that has seen no maps */
	assert_non_null(mkdtemp(dir));
	o.proc_root = dir;
	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	ip = 0x7f0000010000ULL + (id.file_offset & 0xfff);
	assert_int_equal(agent_symbolizer_note_stack(s, 4242, 10, &ip, &id, 1), -ESRCH);
	assert_int_equal(agent_symbolize_user(s, 4242, 15, ip, &f), 0);
	assert_non_null(strstr(f.name, "getppid"));
	assert_null(f.module);
	agent_symbolizer_free(s);
	rmdir(dir);
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
		cmocka_unit_test(test_build_id_exec_index),
		cmocka_unit_test(test_build_id_from_maps),
		cmocka_unit_test(test_unmapped_frames),
		cmocka_unit_test(test_build_id_debug_only),
		cmocka_unit_test(test_frame_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
