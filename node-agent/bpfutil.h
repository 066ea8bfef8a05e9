/* bpfutil.h: small helpers the agent's BPF users share. */
#ifndef AGENT_BPFUTIL_H
#define AGENT_BPFUTIL_H

#include <stddef.h>
#include <stdint.h>

/* agent_bpf_percpu_sum sums, over every possible CPU, the n u64 counters
 * (keys 0..n-1) of the per-CPU array map map_fd into sums[0..n). Counters
 * that cannot be read count as 0. Returns 0 or -ENOMEM. */
int agent_bpf_percpu_sum(int map_fd, uint64_t *sums, size_t n);

#endif
