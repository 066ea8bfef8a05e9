/* probe_target.c: the victim of scenario_probe.sh. It calls the noinline
 * function spikehound_slow_call CALLS times; a call usually takes ~0.1 ms
 * (a short sleep) and every SLOW_EVERY-th call (0: never) takes SLOW_MS
 * (a longer sleep: the thread blocks in the kernel). Each call returns its
 * index. After each call a USDT probe spikehound:call_done(latency_ns,
 * index) fires (a hand-written stapsdt note, so no <sys/sdt.h> is needed).
 *
 * It times every call itself and prints the ground truth on stdout:
 *   probe_target: pid P calls N slow S (>= THRESHOLD_MS ms) first_slow_unix T
 * where slow counts the calls whose own measured time reached
 * THRESHOLD_MS (default 5) and T is when the first of them started (Unix
 * seconds, wall clock; 0 if none), then the indices of those calls:
 *   probe_target: slow calls: I1 I2 ...
 * Usage: probe_target CALLS SLOW_EVERY SLOW_MS [THRESHOLD_MS] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* SH_USDT2 defines a USDT probe point PROVIDER:NAME with two 8-byte signed
 * arguments, as a SystemTap SDT v3 note (.note.stapsdt): the probe's
 * address (a nop), the .stapsdt.base address, no semaphore, the names, and
 * the arguments' locations in assembler syntax ("-8@%rax"). */
#define SH_USDT2(provider, name, x0, x1)                                                     \
	__asm__ __volatile__("990: nop\n"                                                    \
			     ".pushsection .note.stapsdt,\"?\",\"note\"\n"                   \
			     ".balign 4\n"                                                   \
			     ".4byte 992f-991f, 994f-993f, 3\n"                              \
			     "991: .asciz \"stapsdt\"\n"                                     \
			     "992: .balign 4\n"                                              \
			     "993: .8byte 990b\n"                                            \
			     ".8byte _.stapsdt.base\n"                                       \
			     ".8byte 0\n"                                                    \
			     ".asciz \"" #provider "\"\n"                                    \
			     ".asciz \"" #name "\"\n"                                        \
			     ".asciz \"-8@%[a0] -8@%[a1]\"\n"                                \
			     "994: .balign 4\n"                                              \
			     ".popsection\n"                                                 \
			     ".ifndef _.stapsdt.base\n"                                      \
			     ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n" \
			     ".weak _.stapsdt.base\n"                                        \
			     ".hidden _.stapsdt.base\n"                                      \
			     "_.stapsdt.base: .space 1\n"                                    \
			     ".size _.stapsdt.base, 1\n"                                     \
			     ".popsection\n"                                                 \
			     ".endif\n"                                                      \
			     :                                                               \
			     : [a0] "nor"((long)(x0)), [a1] "nor"((long)(x1)))

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static long slow_every, slow_us;

/* spikehound_slow_call is the probed function: external, never inlined,
 * called through a volatile pointer so the compiler cannot clone it. */
__attribute__((noinline)) long spikehound_slow_call(long i);

__attribute__((noinline)) long spikehound_slow_call(long i)
{
	if (slow_every > 0 && i % slow_every == slow_every - 1)
		sleep_us(slow_us);
	else
		sleep_us(100);
	return i;
}

static long (*volatile call_fn)(long) = spikehound_slow_call;

int main(int argc, char **argv)
{
	long calls, threshold_ms, slow = 0;
	struct timespec first_slow = { 0, 0 }, wall;
	long *slow_idx;

	if (argc < 4) {
		fprintf(stderr, "usage: probe_target CALLS SLOW_EVERY SLOW_MS [THRESHOLD_MS]\n");
		return 2;
	}
	calls = atol(argv[1]);
	slow_every = atol(argv[2]);
	slow_us = atol(argv[3]) * 1000;
	threshold_ms = argc > 4 ? atol(argv[4]) : 5;
	slow_idx = calloc((size_t)(calls > 0 ? calls : 1), sizeof(*slow_idx));
	if (!slow_idx)
		return 1;
	for (long i = 0; i < calls; i++) {
		int64_t t0, dt;
		long r;

		clock_gettime(CLOCK_REALTIME, &wall);
		t0 = now_ns();
		r = call_fn(i);

		dt = now_ns() - t0;
		SH_USDT2(spikehound, call_done, dt, r);
		if (dt >= threshold_ms * 1000000) {
			if (!slow)
				first_slow = wall;
			slow_idx[slow++] = r;
		}
	}
	printf("probe_target: pid %d calls %ld slow %ld (>= %ld ms) first_slow_unix %lld.%03ld\n",
	       (int)getpid(), calls, slow, threshold_ms, (long long)first_slow.tv_sec,
	       first_slow.tv_nsec / 1000000);
	printf("probe_target: slow calls:");
	for (long i = 0; i < slow; i++)
		printf(" %ld", slow_idx[i]);
	printf("\n");
	free(slow_idx);
	return 0;
}
