/* test_agent_perfmap.c: JIT symbols from perf map files. The parser on a
 * fake /proc tree (pid namespaces, overlaps, malformed and partial lines,
 * hostile names, files that must not be read), and the symbolizer naming
 * an address in this process's own anonymous executable memory from a
 * real /tmp/perf-PID.map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "perfmap.h"
#include "symbolize.h"
#include "timeutil.h"

static char root[] = "/tmp/sh-perfmap-test-XXXXXX";

static void write_file(const char *path, const char *text, const char *mode)
{
	FILE *f = fopen(path, mode);

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* fake_proc makes ROOT/PID/{status,root/tmp/} with NSpid "PID NSPID". */
static void fake_proc(unsigned pid, unsigned nspid, char *map_path, size_t len)
{
	char p[512], status[128];

	snprintf(p, sizeof(p), "mkdir -p %s/%u/root/tmp", root, pid);
	assert_int_equal(system(p), 0);
	snprintf(p, sizeof(p), "%s/%u/status", root, pid);
	snprintf(status, sizeof(status), "Name:\tjava\nPid:\t%u\nNSpid:\t%u\t%u\n", pid, pid, nspid);
	write_file(p, status, "w");
	snprintf(map_path, len, "%s/%u/root/tmp/perf-%u.map", root, pid, nspid);
}

static void test_parse(void **state)
{
	struct agent_perfmap *pm;
	char map[512];
	uint64_t off = 0;
	const char *name;

	(void)state;
	assert_non_null(mkdtemp(root));
	/* the process is pid 17 in its own namespace: the file is perf-17.map */
	fake_proc(4242, 17, map, sizeof(map));
	write_file(map,
		   "7f0000001000 40 LInterpreter;\n"
		   "0x7f0000002000 0x100 Ljava/lang/String;::hashCode\n"
		   "garbage line\n"
		   "7f0000003000 zz bad size\n"
		   "7f0000004000 0 zero size\n"
		   "7f0000002080 10 inlined \x01\x1b[31mred\n" /* overlaps, later wins */
		   "7f0000005000 20 partial",	/* no newline: still being written */
		   "w");
	assert_int_equal(agent_perfmap_load(root, 4242, &pm), 0);
	assert_int_equal(agent_perfmap_count(pm), 3);
	name = agent_perfmap_lookup(pm, 0x7f0000001010, &off);
	assert_string_equal(name, "LInterpreter;");
	assert_int_equal(off, 0x10);
	assert_string_equal(agent_perfmap_lookup(pm, 0x7f0000002010, &off),
			    "Ljava/lang/String;::hashCode");
	assert_string_equal(agent_perfmap_lookup(pm, 0x7f0000002084, &off), "inlined ??[31mred");
	assert_int_equal(off, 4);
	assert_string_equal(agent_perfmap_lookup(pm, 0x7f00000020f0, &off),
			    "Ljava/lang/String;::hashCode");
	assert_null(agent_perfmap_lookup(pm, 0x7f0000001040, &off));
	assert_null(agent_perfmap_lookup(pm, 0x7f0000005004, &off));
	assert_null(agent_perfmap_lookup(pm, 0x1000, &off));
	assert_false(agent_perfmap_changed(pm, root, 4242));

	/* the partial line completed, and more code: changed, and read again */
	write_file(map, "\n7f0000006000 8 Lnew;\n", "a");
	assert_true(agent_perfmap_changed(pm, root, 4242));
	agent_perfmap_free(pm);
	assert_int_equal(agent_perfmap_load(root, 4242, &pm), 0);
	assert_int_equal(agent_perfmap_count(pm), 5);
	assert_string_equal(agent_perfmap_lookup(pm, 0x7f0000005004, &off), "partial");
	assert_string_equal(agent_perfmap_lookup(pm, 0x7f0000006000, &off), "Lnew;");
	agent_perfmap_free(pm);
}

static void test_refused(void **state)
{
	struct agent_perfmap *pm = NULL;
	char map[512], cmd[1200];

	(void)state;
	/* no map */
	fake_proc(5000, 5000, map, sizeof(map));
	assert_int_equal(agent_perfmap_load(root, 5000, &pm), -ENOENT);
	/* a symlink (to a file we own) is not followed */
	snprintf(cmd, sizeof(cmd), "ln -s %s/4242/status %s", root, map);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(agent_perfmap_load(root, 5000, &pm), -EPERM);
	/* a FIFO is not opened for reading (it would block) */
	fake_proc(5001, 5001, map, sizeof(map));
	assert_int_equal(mkfifo(map, 0600), 0);
	assert_int_equal(agent_perfmap_load(root, 5001, &pm), -EPERM);
	/* no such process */
	assert_int_equal(agent_perfmap_load(root, 5002, &pm), -ENOENT);
	assert_null(pm);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

/* the symbolizer: an address in our own anonymous executable memory */
static void test_symbolize_jit(void **state)
{
	struct agent_symbolizer_opts o = { .no_kernel = true };
	struct agent_symbolizer_stats st;
	struct agent_symbolizer *s;
	struct agent_frame f;
	char map[64], text[256];
	uint8_t *code;
	uint64_t base;

	(void)state;
	code = mmap(NULL, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		    0);
	assert_true(code != MAP_FAILED);
	base = (uint64_t)(uintptr_t)code;
	snprintf(map, sizeof(map), "/tmp/perf-%d.map", (int)getpid());
	snprintf(text, sizeof(text), "%llx 100 jit_compiled_loop\n%llx 80 jit_other\n",
		 (unsigned long long)base, (unsigned long long)base + 0x200);
	write_file(map, text, "w");
	assert_int_equal(agent_symbolizer_new(&o, &s), 0);
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), sh_now_mono_ns(), base + 0x42,
					      &f),
			 0);
	assert_string_equal(f.name, "jit_compiled_loop");
	assert_int_equal(f.sym_offset, 0x42);
	assert_string_equal(f.module, "[jit]");
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), sh_now_mono_ns(),
					      base + 0x210, &f),
			 0);
	assert_string_equal(f.name, "jit_other");
	/* past the last function: unnamed, the map is not read again at once */
	assert_int_equal(agent_symbolize_user(s, (uint32_t)getpid(), sh_now_mono_ns(),
					      base + 0x1000, &f),
			 -ENOENT);
	agent_symbolizer_stats(s, &st);
	assert_int_equal(st.jit, 2);
	assert_int_equal(st.perfmap_loads, 1);
	agent_symbolizer_free(s);
	unlink(map);
	munmap(code, 8192);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_symbolize_jit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
