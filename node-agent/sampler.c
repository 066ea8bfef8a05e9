/* sampler.c: loads the sampler BPF skeleton, keeps one software cpu-clock
 * perf event with the sampling program attached on every online CPU
 * (re-checked every second for hotplug), dispatches ring buffer records
 * to the caller's callbacks, and, as they ask, marks processes whose
 * samples need no build-id stack ("mapped_pids"). */
#include "sampler.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpfutil.h"
#include "log.h"
#include "sampler.skel.h"
#include "timeutil.h"

#define ONLINE_PATH "/sys/devices/system/cpu/online"

struct cpu_slot {
	struct bpf_link *link; /* owns the perf event fd */
	int pfd;	       /* borrowed from link */
	uint64_t enabled_ns;   /* the event's time_enabled at the last check */
};

struct agent_sampler {
	struct sampler_bpf *skel;
	struct ring_buffer *rb;
	struct bpf_link *lifecycle[3];
	struct cpu_slot *cpus; /* indexed by CPU number, ncpus entries */
	int ncpus;	       /* possible CPUs */
	int attached;
	struct agent_sampler_opts opts;
	agent_sample_cb on_sample;
	agent_proc_cb on_proc;
	void *ctx;
	int64_t next_cpu_check_ns;
	uint64_t received;
	uint64_t malformed;
	uint64_t attach_errors;
	uint64_t reopened;
	int open_errno_logged;
};

int agent_parse_cpu_list(const char *s, uint8_t *set, int n)
{
	const char *p = s;

	memset(set, 0, (size_t)n);
	while (*p && *p != '\n') {
		char *end;
		long a, b;

		a = strtol(p, &end, 10);
		if (end == p || a < 0)
			return -EINVAL;
		b = a;
		p = end;
		if (*p == '-') {
			p++;
			b = strtol(p, &end, 10);
			if (end == p || b < a)
				return -EINVAL;
			p = end;
		}
		for (long i = a; i <= b && i < n; i++)
			set[i] = 1;
		if (*p == ',')
			p++;
		else if (*p && *p != '\n')
			return -EINVAL;
	}
	return 0;
}

static int perf_event_open_cpu(int cpu, unsigned hz)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.freq = 1;
	attr.sample_freq = hz;
	attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED;
	return (int)syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
}

static int attach_cpu(struct agent_sampler *s, int cpu)
{
	struct bpf_link *link;
	int fd, err;

	fd = perf_event_open_cpu(cpu, s->opts.hz);
	if (fd < 0) {
		err = -errno;
		if (err == -ENODEV)
			return err; /* went offline meanwhile; retried at the next check */
		if (!s->open_errno_logged) {
			sh_warn("could not open cpu-clock perf event on cpu %d: %s", cpu, strerror(-err));
			s->open_errno_logged = 1;
		}
		s->attach_errors++;
		return err;
	}
	link = bpf_program__attach_perf_event(s->skel->progs.perf_cpu_clock, fd);
	if (!link) {
		err = -errno;
		close(fd);
		if (!s->open_errno_logged) {
			sh_warn("could not attach sampler on cpu %d: %s", cpu, strerror(-err));
			s->open_errno_logged = 1;
		}
		s->attach_errors++;
		return err;
	}
	s->cpus[cpu].link = link;
	s->cpus[cpu].pfd = fd;
	s->cpus[cpu].enabled_ns = 0;
	s->attached++;
	return 0;
}

static void detach_cpu(struct agent_sampler *s, int cpu)
{
	if (!s->cpus[cpu].link)
		return;
	bpf_link__destroy(s->cpus[cpu].link); /* closes the perf event fd */
	s->cpus[cpu].link = NULL;
	s->cpus[cpu].pfd = -1;
	s->attached--;
}

/* event_stalled says whether cpu's event stopped counting enabled time
 * since the last check: the CPU went offline and came back between two
 * checks, which leaves the old event off for good. */
static bool event_stalled(struct agent_sampler *s, int cpu)
{
	return agent_perf_event_stopped(s->cpus[cpu].pfd, &s->cpus[cpu].enabled_ns);
}

int agent_sampler_sync_cpus(struct agent_sampler *s)
{
	char buf[4096];
	uint8_t *online;
	ssize_t n;
	FILE *f;
	int err = 0;

	f = fopen(ONLINE_PATH, "re");
	if (!f)
		return -errno;
	n = (ssize_t)fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	online = calloc((size_t)s->ncpus, 1);
	if (!online)
		return -ENOMEM;
	err = agent_parse_cpu_list(buf, online, s->ncpus);
	if (err < 0)
		goto cleanup;
	for (int cpu = 0; cpu < s->ncpus; cpu++) {
		bool want = online[cpu] && (s->opts.cpu < 0 || s->opts.cpu == cpu);

		if (want && s->cpus[cpu].link && event_stalled(s, cpu)) {
			detach_cpu(s, cpu);
			s->reopened++;
		}
		if (want && !s->cpus[cpu].link)
			attach_cpu(s, cpu);
		else if (!want && s->cpus[cpu].link)
			detach_cpu(s, cpu);
	}
	err = s->attached;
cleanup:
	free(online);
	return err;
}

static int ringbuf_cb(void *ctx, void *data, size_t size)
{
	struct agent_sampler *s = ctx;
	const struct sh_event_header *h = data;
	int ret;

	if (size < sizeof(*h)) {
		s->malformed++;
		return 0;
	}
	switch (h->type) {
	case SH_EVENT_SAMPLE:
		if (size < sizeof(struct sh_sample_event)) {
			s->malformed++;
			return 0;
		}
		s->received++;
		ret = s->on_sample ? s->on_sample(s->ctx, data) : 0;
		if (ret == AGENT_SAMPLER_PID_MAPPED) {
			agent_sampler_pid_mapped(s, ((const struct sh_sample_event *)data)->pid);
			ret = 0;
		}
		return ret;
	case SH_EVENT_EXEC:
	case SH_EVENT_FORK:
	case SH_EVENT_EXIT:
		if (size < offsetof(struct sh_proc_event, filename) ||
		    (h->type == SH_EVENT_EXEC && size < sizeof(struct sh_proc_event))) {
			s->malformed++;
			return 0;
		}
		s->received++;
		ret = s->on_proc ? s->on_proc(s->ctx, data) : 0;
		if (ret == AGENT_SAMPLER_PID_MAPPED) {
			agent_sampler_pid_forget(s, ((const struct sh_proc_event *)data)->pid);
			ret = 0;
		}
		return ret;
	default:
		s->malformed++;
		return 0;
	}
}

static size_t default_ringbuf_bytes(int ncpus, unsigned hz)
{
	/* Half a second of samples from every CPU, at least 2 MiB. */
	size_t want = (size_t)ncpus * hz * sizeof(struct sh_sample_event) / 2;
	size_t sz = 2u << 20;

	while (sz < want && sz < (256u << 20))
		sz <<= 1;
	return sz;
}

int agent_sampler_new(const struct agent_sampler_opts *opts, agent_sample_cb on_sample,
		      agent_proc_cb on_proc, void *ctx, struct agent_sampler **out)
{
	struct agent_sampler *s;
	size_t rb_bytes;
	int err;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (opts)
		s->opts = *opts;
	else
		s->opts.cpu = -1;
	if (!s->opts.hz)
		s->opts.hz = 99;
	if (s->opts.cpu_check_ms <= 0)
		s->opts.cpu_check_ms = 1000;
	s->on_sample = on_sample;
	s->on_proc = on_proc;
	s->ctx = ctx;

	s->ncpus = libbpf_num_possible_cpus();
	if (s->ncpus <= 0) {
		err = s->ncpus < 0 ? s->ncpus : -ENODEV;
		goto cleanup;
	}
	if (s->opts.cpu >= s->ncpus) {
		err = -EINVAL;
		goto cleanup;
	}
	s->cpus = calloc((size_t)s->ncpus, sizeof(*s->cpus));
	if (!s->cpus) {
		err = -ENOMEM;
		goto cleanup;
	}

	s->skel = sampler_bpf__open();
	if (!s->skel) {
		err = -errno;
		sh_err("could not open sampler BPF object: %s", strerror(-err));
		goto cleanup;
	}
	s->skel->rodata->filter_tgid = s->opts.pid;
	s->skel->rodata->skip_idle = s->opts.skip_idle;
	s->skel->rodata->user_stacks = !s->opts.no_user_stacks;
	s->skel->rodata->user_build_ids = !s->opts.no_user_stacks && !s->opts.no_user_build_ids;
	s->skel->rodata->kernel_stacks = !s->opts.no_kernel_stacks;
	rb_bytes = s->opts.ringbuf_bytes ? s->opts.ringbuf_bytes
					 : default_ringbuf_bytes(s->ncpus, s->opts.hz);
	err = bpf_map__set_max_entries(s->skel->maps.events, (uint32_t)rb_bytes);
	if (err < 0)
		goto cleanup;
	if (s->opts.no_lifecycle) {
		bpf_program__set_autoload(s->skel->progs.sched_process_exec, false);
		bpf_program__set_autoload(s->skel->progs.sched_process_fork, false);
		bpf_program__set_autoload(s->skel->progs.sched_process_exit, false);
	}
	err = sampler_bpf__load(s->skel);
	if (err < 0) {
		sh_err("could not load sampler BPF programs: %s", strerror(-err));
		goto cleanup;
	}
	if (!s->opts.no_lifecycle) {
		struct bpf_program *progs[3] = { s->skel->progs.sched_process_exec,
						 s->skel->progs.sched_process_fork,
						 s->skel->progs.sched_process_exit };

		for (int i = 0; i < 3; i++) {
			s->lifecycle[i] = bpf_program__attach(progs[i]);
			if (!s->lifecycle[i]) {
				err = -errno;
				sh_err("could not attach \"%s\": %s", bpf_program__name(progs[i]),
				       strerror(-err));
				goto cleanup;
			}
		}
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.events), ringbuf_cb, s, NULL);
	if (!s->rb) {
		err = -errno;
		sh_err("could not create ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	err = agent_sampler_sync_cpus(s);
	if (err < 0) {
		sh_err("could not read \"%s\": %s", ONLINE_PATH, strerror(-err));
		goto cleanup;
	}
	if (err == 0) {
		sh_err("could not attach the sampler to any CPU");
		err = -ENODEV;
		goto cleanup;
	}
	s->next_cpu_check_ns = sh_now_mono_ns() + (int64_t)s->opts.cpu_check_ms * SH_NS_PER_MS;
	*out = s;
	return 0;
cleanup:
	agent_sampler_free(s);
	return err;
}

int agent_sampler_poll(struct agent_sampler *s, int timeout_ms)
{
	int64_t now = sh_now_mono_ns();
	int n;

	if (now >= s->next_cpu_check_ns) {
		agent_sampler_sync_cpus(s); /* failures are counted in attach_errors */
		s->next_cpu_check_ns = now + (int64_t)s->opts.cpu_check_ms * SH_NS_PER_MS;
	}
	if (timeout_ms < 0 || timeout_ms > s->opts.cpu_check_ms)
		timeout_ms = s->opts.cpu_check_ms;
	n = ring_buffer__poll(s->rb, timeout_ms);
	/* records arrive without wakeups (see bpf/sampler.bpf.c): drain
	 * whatever is there even when the wait ended by timeout */
	if (n >= 0) {
		int m = ring_buffer__consume(s->rb);

		if (m > 0)
			n += m;
		else if (m < 0)
			n = m;
	}
	return n;
}

int agent_sampler_fd(const struct agent_sampler *s)
{
	return ring_buffer__epoll_fd(s->rb);
}

int agent_sampler_pid_mapped(struct agent_sampler *s, uint32_t pid)
{
	uint8_t one = 1;
	int err;

	err = bpf_map__update_elem(s->skel->maps.mapped_pids, &pid, sizeof(pid), &one, sizeof(one),
				   BPF_ANY);
	return err < 0 ? err : 0;
}

void agent_sampler_pid_forget(struct agent_sampler *s, uint32_t pid)
{
	bpf_map__delete_elem(s->skel->maps.mapped_pids, &pid, sizeof(pid), 0);
}

void agent_sampler_health(const struct agent_sampler *s, struct agent_sampler_health *h)
{
	uint64_t sums[SH_CNT_MAX];

	memset(h, 0, sizeof(*h));
	agent_bpf_percpu_sum(bpf_map__fd(s->skel->maps.counters), sums, SH_CNT_MAX);
	h->samples = sums[SH_CNT_SAMPLES];
	h->samples_lost = sums[SH_CNT_LOST];
	h->kstack_errors = sums[SH_CNT_KSTACK_ERR];
	h->ustack_errors = sums[SH_CNT_USTACK_ERR];
	h->stack_errors = h->kstack_errors + h->ustack_errors;
	h->user_stacks_depth1 = sums[SH_CNT_USTACK_DEPTH1];
	h->ubuild_errors = sums[SH_CNT_UBUILD_ERR];
	h->proc_lost = sums[SH_CNT_PROC_LOST];
	h->received = s->received;
	h->malformed = s->malformed;
	h->cpus_attached = (uint32_t)s->attached;
	h->cpu_attach_errors = s->attach_errors;
	h->cpu_events_reopened = s->reopened;
}

void agent_sampler_free(struct agent_sampler *s)
{
	if (!s)
		return;
	if (s->cpus) {
		for (int cpu = 0; cpu < s->ncpus; cpu++)
			detach_cpu(s, cpu);
		free(s->cpus);
	}
	for (int i = 0; i < 3; i++)
		bpf_link__destroy(s->lifecycle[i]);
	ring_buffer__free(s->rb);
	sampler_bpf__destroy(s->skel);
	free(s);
}
