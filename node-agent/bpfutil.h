/* bpfutil.h: small helpers the agent's BPF users share. */
#ifndef AGENT_BPFUTIL_H
#define AGENT_BPFUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* agent_bpf_percpu_sum sums, over every possible CPU, the n u64 counters
 * (keys 0..n-1) of the per-CPU array map map_fd into sums[0..n). Counters
 * that cannot be read count as 0. Returns 0 or -ENOMEM. */
int agent_bpf_percpu_sum(int map_fd, uint64_t *sums, size_t n);

/* agent_perf_event_stopped tells whether the per-CPU perf event pfd (read
 * format PERF_FORMAT_TOTAL_TIME_ENABLED) stopped counting enabled time
 * since the last call, whose reading *enabled_ns keeps: its CPU went
 * offline and came back, which leaves the old event off for good. */
bool agent_perf_event_stopped(int pfd, uint64_t *enabled_ns);

#endif
