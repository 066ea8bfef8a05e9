/* jit_spin.c: a tiny "JIT runtime" for the perf map test. It generates
 * code at run time (an endless loop in an anonymous executable mapping),
 * announces it in /tmp/perf-PID.map as a JIT runtime would, and runs it
 * on a thread pinned to a CPU until the time is up; then it removes the
 * map and exits.
 * Usage: jit_spin SECONDS CPU */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *run(void *code)
{
	((void (*)(void))code)();
	return NULL;
}

int main(int argc, char **argv)
{
	/* pause; jmp back to it: an endless loop that stays in the JIT page */
	static const uint8_t loop[] = { 0xf3, 0x90, 0xeb, 0xfc };
	char map[64];
	cpu_set_t set;
	pthread_t t;
	uint8_t *code;
	FILE *f;
	int secs, cpu;

	if (argc != 3) {
		fprintf(stderr, "usage: jit_spin SECONDS CPU\n");
		return 2;
	}
	secs = atoi(argv[1]);
	cpu = atoi(argv[2]);
	code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (code == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(code, 0xcc, 4096);
	memcpy(code + 0x40, loop, sizeof(loop));
	if (mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0) {
		perror("mprotect");
		return 1;
	}
	snprintf(map, sizeof(map), "/tmp/perf-%d.map", (int)getpid());
	if (!(f = fopen(map, "w"))) {
		perror(map);
		return 1;
	}
	fprintf(f, "%llx 40 jit_prologue_stub\n%llx %zx jit_spin_loop\n",
		(unsigned long long)(uintptr_t)code, (unsigned long long)(uintptr_t)(code + 0x40),
		sizeof(loop));
	fclose(f);
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set); /* the thread inherits it */
	if (pthread_create(&t, NULL, run, code + 0x40) != 0) {
		unlink(map);
		return 1;
	}
	sleep((unsigned)secs);
	unlink(map);
	_exit(0);
}
