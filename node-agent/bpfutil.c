/* bpfutil.c: small helpers the agent's BPF users share. */
#include "bpfutil.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int agent_bpf_percpu_sum(int map_fd, uint64_t *sums, size_t n)
{
	int nr = libbpf_num_possible_cpus();
	uint64_t *vals;

	memset(sums, 0, n * sizeof(*sums));
	if (nr <= 0 || !(vals = calloc((size_t)nr, sizeof(*vals))))
		return -ENOMEM;
	for (uint32_t k = 0; k < n; k++) {
		if (bpf_map_lookup_elem(map_fd, &k, vals) < 0)
			continue;
		for (int c = 0; c < nr; c++)
			sums[k] += vals[c];
	}
	free(vals);
	return 0;
}

bool agent_perf_event_stopped(int pfd, uint64_t *enabled_ns)
{
	uint64_t v[2]; /* value, time_enabled */
	bool stopped;

	if (read(pfd, v, sizeof(v)) != (ssize_t)sizeof(v))
		return false;
	stopped = *enabled_ns && v[1] == *enabled_ns;
	*enabled_ns = v[1];
	return stopped;
}
