/* det_stall.c: the "stall" detector: a CPU that ran with interrupts off.
 * Loads bpf/det_stall.bpf.c, keeps one software cpu-clock perf event at
 * stall_hz (fixed period, separate from the 99 Hz stack sampler) with the
 * sentinel program attached on every online CPU (re-checked every tick
 * for hotplug), and turns each gap the kernel side reports (longer than
 * stall_threshold on a busy CPU) into a "cpu_stall" spike event whose
 * culprit ("stall_stack") is the task and stacks at the sample that ended
 * the gap. */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "det_stall.h"
#include "det_stall.skel.h"
#include "detect.h"
#include "events.h"
#include "bpfutil.h"
#include "log.h"
#include "sampler.h" /* agent_parse_cpu_list */
#include "timeutil.h"

#define ONLINE_PATH "/sys/devices/system/cpu/online"
#define LOG_EVERY_S 60

struct stall_cpu {
	struct bpf_link *link; /* owns the perf event fd */
	int pfd;	       /* borrowed from link */
	uint64_t enabled_ns;   /* the event's time_enabled at the last check */
};

struct det_stall {
	struct agent_det_ctx ctx; /* a copy: the pointers in it are borrowed */
	struct det_stall_bpf *skel;
	struct ring_buffer *rb;
	struct stall_cpu *cpus; /* indexed by CPU number, ncpus entries */
	int ncpus;		/* possible CPUs */
	int attached;
	uint64_t period_ns;
	bool open_error_logged;
	/* counters since start */
	uint64_t received, malformed, build_errors, emitted, suppressed;
	uint64_t attach_errors, reopened;
	uint64_t logged; /* what the last log line had seen (stalls + errors) */
	int ticks;
};

static int perf_event_open_cpu(int cpu, uint64_t period_ns)
{
	struct perf_event_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.sample_period = period_ns; /* cpu-clock counts ns: a fixed timer period */
	attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED;
	return (int)syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
}

static int attach_cpu(struct det_stall *s, int cpu)
{
	struct bpf_link *link;
	int fd, err;

	fd = perf_event_open_cpu(cpu, s->period_ns);
	if (fd < 0) {
		err = -errno;
		if (err == -ENODEV)
			return err; /* went offline meanwhile; retried at the next tick */
		goto fail;
	}
	link = bpf_program__attach_perf_event(s->skel->progs.perf_stall_clock, fd);
	if (!link) {
		err = -errno;
		close(fd);
		goto fail;
	}
	s->cpus[cpu].link = link;
	s->cpus[cpu].pfd = fd;
	s->cpus[cpu].enabled_ns = 0;
	s->attached++;
	return 0;
fail:
	if (!s->open_error_logged) {
		sh_warn("stall: could not attach the sentinel on cpu %d: %s", cpu, strerror(-err));
		s->open_error_logged = true;
	}
	s->attach_errors++;
	return err;
}

static void detach_cpu(struct det_stall *s, int cpu)
{
	if (!s->cpus[cpu].link)
		return;
	bpf_link__destroy(s->cpus[cpu].link); /* closes the perf event fd */
	s->cpus[cpu].link = NULL;
	s->cpus[cpu].pfd = -1;
	s->attached--;
}

/* event_stopped says whether cpu's event stopped counting enabled time
 * since the last check (its CPU went offline and back: the old event
 * stays off for good). */
static bool event_stopped(struct det_stall *s, int cpu)
{
	return agent_perf_event_stopped(s->cpus[cpu].pfd, &s->cpus[cpu].enabled_ns);
}

/* sync_cpus attaches the sentinel to every online CPU and detaches it
 * from offline ones. Returns the number attached or a negative errno. */
static int sync_cpus(struct det_stall *s)
{
	char buf[4096];
	uint8_t *online;
	ssize_t n;
	FILE *f;
	int err;

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
		if (online[cpu] && s->cpus[cpu].link && event_stopped(s, cpu)) {
			detach_cpu(s, cpu);
			s->reopened++;
		}
		if (online[cpu] && !s->cpus[cpu].link)
			attach_cpu(s, cpu);
		else if (!online[cpu] && s->cpus[cpu].link)
			detach_cpu(s, cpu);
	}
	err = s->attached;
cleanup:
	free(online);
	return err;
}

static void read_counters(struct det_stall *s, uint64_t sums[SH_STALL_CNT_MAX])
{
	agent_bpf_percpu_sum(bpf_map__fd(s->skel->maps.counters), sums, SH_STALL_CNT_MAX);
}

/* comm_copy makes a NUL-terminated copy of a kernel comm. */
static void comm_copy(char dst[SH_STALL_COMM_LEN + 1], const char *src)
{
	memcpy(dst, src, SH_STALL_COMM_LEN);
	dst[SH_STALL_COMM_LEN] = '\0';
}

/* build_event turns one gap into a spike event; NULL on allocation
 * failure. */
static Spikehound__SpikeEvent *build_event(struct det_stall *s, const struct sh_stall_event *e)
{
	Spikehound__SpikeEvent *ev;
	Spikehound__Task *victim, *culprit;
	char comm[SH_STALL_COMM_LEN + 1], prev_comm[SH_STALL_COMM_LEN + 1], detail[96];
	double gap_ms = (double)e->gap_ns / 1e6;
	bool user = e->flags & SH_STALL_USER_MODE;
	size_t kd = e->kstack_depth < SH_STALL_STACK_DEPTH ? e->kstack_depth : SH_STALL_STACK_DEPTH;
	size_t ud = e->ustack_depth < SH_STALL_STACK_DEPTH ? e->ustack_depth : SH_STALL_STACK_DEPTH;
	int rv = 0;

	comm_copy(comm, e->comm);
	comm_copy(prev_comm, e->prev_comm);
	ev = malloc(sizeof(*ev));
	if (!ev)
		return NULL;
	spikehound__spike_event__init(ev);
	/* The timer fires as soon as interrupts come back on, which is in
	 * the kernel: a gap that ends in user mode was (nearly always) not
	 * the kernel holding them off but the vCPU not running (host
	 * preemption) or a late timer. Say so instead of blaming the task. */
	if (user)
		snprintf(detail, sizeof(detail), "no timer interrupt %.1f ms (ended in user mode)",
			 gap_ms);
	else
		snprintf(detail, sizeof(detail), "irqs off %.1f ms", gap_ms);
	ev->kind = strdup("cpu_stall");
	ev->detail = strdup(detail);
	ev->start_ns = (int64_t)(e->end_ns - e->gap_ns) + s->ctx.wall_minus_mono_ns;
	ev->duration_ns = (int64_t)e->gap_ns;
	ev->cpu = (int32_t)e->cpu;
	victim = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "victim");
	culprit = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "stall_stack");
	ev->victim = victim;
	ev->culprits = calloc(1, sizeof(*ev->culprits));
	if (!ev->kind || !ev->detail || !victim || !culprit || !ev->culprits) {
		spikehound__task__free_unpacked(culprit, NULL);
		goto fail;
	}
	ev->culprits[0] = culprit;
	ev->n_culprits = 1;
	if (kd)
		rv |= agent_task_set_kstack(culprit, s->ctx.sym, (const uint64_t *)e->kstack, kd);
	if (ud)
		rv |= agent_task_set_ustack(culprit, s->ctx.sym, e->pid, (int64_t)e->end_ns,
					    (const uint64_t *)e->ustack, ud);
	rv |= agent_event_attr(ev, "gap_ms", "%.3f", gap_ms);
	rv |= agent_event_attr(ev, "sentinel_period_ms", "%.3f", (double)e->period_ns / 1e6);
	rv |= agent_event_attr(ev, "ended_in", "%s", user ? "user" : "kernel");
	rv |= agent_event_attr(ev, "task_before", "%s pid %u tid %u", prev_comm, e->prev_pid,
			       e->prev_tid);
	rv |= agent_event_attr(ev, "same_task", "%s",
			       (e->flags & SH_STALL_SAME_TASK) ? "yes" : "no");
	rv |= agent_event_attr(ev, "cgroup_id", "%llu", (unsigned long long)e->cgroup_id);
	if (e->flags & SH_STALL_NO_IDLE_CHECK)
		rv |= agent_event_attr(ev, "idle_check", "unavailable");
	if (e->kstack_err)
		rv |= agent_event_attr(ev, "kstack_error", "%d", e->kstack_err);
	if (e->ustack_err)
		rv |= agent_event_attr(ev, "ustack_error", "%d", e->ustack_err);
	if (rv != 0)
		goto fail;
	return ev;
fail:
	spikehound__spike_event__free_unpacked(ev, NULL);
	return NULL;
}

static int ringbuf_cb(void *arg, void *data, size_t size)
{
	struct det_stall *s = arg;
	Spikehound__SpikeEvent *ev;
	int cpu;

	if (size < sizeof(struct sh_stall_event)) {
		s->malformed++;
		return 0;
	}
	s->received++;
	ev = build_event(s, data);
	if (!ev) {
		s->build_errors++; /* out of memory */
		return 0;
	}
	cpu = ev->cpu;
	sh_debug("stall: cpu %d %s, %s pid %d at the end%s%s", cpu, ev->detail, ev->victim->comm,
		 ev->victim->pid, ev->culprits[0]->n_kernel_stack ? " in " : "",
		 ev->culprits[0]->n_kernel_stack ? ev->culprits[0]->kernel_stack[0] : "");
	if (agent_events_emit(s->ctx.events, ev, &cpu, 1) == 0)
		s->emitted++;
	else
		s->suppressed++;
	return 0;
}

static void stall_stop(void *state)
{
	struct det_stall *s = state;

	if (!s)
		return;
	if (s->cpus) {
		for (int cpu = 0; cpu < s->ncpus; cpu++)
			detach_cpu(s, cpu);
		free(s->cpus);
	}
	ring_buffer__free(s->rb);
	det_stall_bpf__destroy(s->skel);
	free(s);
}

static int stall_start(const struct agent_det_ctx *ctx, void **state)
{
	struct det_stall *s;
	uint32_t hz = ctx->cfg->stall_hz ? ctx->cfg->stall_hz : 250;
	int err;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = *ctx;
	s->period_ns = (uint64_t)SH_NS_PER_SEC / hz;
	s->ncpus = libbpf_num_possible_cpus();
	if (s->ncpus <= 0) {
		err = s->ncpus < 0 ? s->ncpus : -ENODEV;
		sh_warn("stall: could not count the possible CPUs: %s", strerror(-err));
		goto cleanup;
	}
	s->cpus = calloc((size_t)s->ncpus, sizeof(*s->cpus));
	if (!s->cpus) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (int cpu = 0; cpu < s->ncpus; cpu++)
		s->cpus[cpu].pfd = -1;
	s->skel = det_stall_bpf__open();
	if (!s->skel) {
		err = -errno;
		sh_warn("stall: could not open the BPF object: %s", strerror(-err));
		goto cleanup;
	}
	s->skel->rodata->threshold_ns = (uint64_t)ctx->cfg->stall_threshold_ns;
	s->skel->rodata->period_ns = s->period_ns;
	err = det_stall_bpf__load(s->skel);
	if (err < 0) {
		sh_warn("stall: could not load the BPF program: %s", strerror(-err));
		goto cleanup;
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.events), ringbuf_cb, s, NULL);
	if (!s->rb) {
		err = -errno;
		sh_warn("stall: could not create the ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	err = sync_cpus(s);
	if (err < 0) {
		sh_warn("stall: could not read \"%s\": %s", ONLINE_PATH, strerror(-err));
		goto cleanup;
	}
	if (err == 0) {
		sh_warn("stall: could not attach the sentinel to any CPU");
		err = -ENODEV;
		goto cleanup;
	}
	if ((uint64_t)ctx->cfg->stall_threshold_ns < 2 * s->period_ns)
		sh_warn("stall: stall_threshold %.1f ms is under two sentinel periods (%.1f ms at "
			"%u Hz): timer jitter will be reported; raise stall_hz",
			(double)ctx->cfg->stall_threshold_ns / 1e6, (double)s->period_ns / 1e6, hz);
	sh_info("stall: sentinel at %u Hz on %d CPUs, reporting busy-CPU gaps over %.1f ms", hz,
		s->attached, (double)ctx->cfg->stall_threshold_ns / 1e6);
	*state = s;
	return 0;
cleanup:
	stall_stop(s);
	return err;
}

static int stall_fd(void *state)
{
	struct det_stall *s = state;

	return ring_buffer__epoll_fd(s->rb);
}

static void stall_poll(void *state)
{
	struct det_stall *s = state;

	ring_buffer__consume(s->rb);
}

static void stall_tick(void *state, int64_t wall_ns)
{
	struct det_stall *s = state;
	uint64_t c[SH_STALL_CNT_MAX], seen;

	(void)wall_ns;
	sync_cpus(s); /* failures are counted in attach_errors */
	if (++s->ticks % LOG_EVERY_S)
		return;
	/* a line a minute, only when something happened since the last */
	read_counters(s, c);
	seen = c[SH_STALL_CNT_GAPS] + s->malformed + s->build_errors + s->attach_errors;
	if (seen == s->logged)
		return;
	s->logged = seen;
	sh_info("stall: since start %llu samples, %llu stalls (%llu lost in the ring buffer, "
		"%llu rate-limited, %llu malformed, %llu not built), %llu idle gaps ignored, "
		"%d CPUs, %llu attach errors",
		(unsigned long long)c[SH_STALL_CNT_SAMPLES], (unsigned long long)c[SH_STALL_CNT_GAPS],
		(unsigned long long)c[SH_STALL_CNT_LOST], (unsigned long long)s->suppressed,
		(unsigned long long)s->malformed, (unsigned long long)s->build_errors,
		(unsigned long long)c[SH_STALL_CNT_IDLE_GAPS], s->attached,
		(unsigned long long)s->attach_errors);
}

const struct agent_detector_ops det_stall_ops = {
	.name = "stall",
	.start = stall_start,
	.fd = stall_fd,
	.poll = stall_poll,
	.tick = stall_tick,
	.stop = stall_stop,
};
