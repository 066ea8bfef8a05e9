/* det_syscall.c: the "syscall" detector's user side. Loads
 * det_syscall.bpf.c, attaches one pair of per-syscall tracepoints for each
 * timed call that this kernel has (the mmap family: mmap, munmap, mprotect,
 * mremap, brk, madvise; calls that should be fast: open, openat, openat2,
 * stat, lstat, fstat, newfstatat, statx) plus sched_switch, and turns each
 * call over syscall_threshold_ns into a "syscall" spike event: detail is the
 * call's name, the victim carries the kernel stack of its longest time off
 * CPU during the call (where it blocked) and its user stack at exit, and
 * when that time began with a preemption the task that got the CPU is the
 * culprit ("ran_instead"). Per-syscall tracepoints need tracefs (mounted
 * here if missing) and cost a tenth of raw_syscalls. */
#include "detect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "det_syscall.h"
#include "det_syscall.skel.h"
#include "events.h"
#include "bpfutil.h"
#include "log.h"
#include "timeutil.h"

#define MAX_EVENTS_PER_SEC 50
#define REPORT_EVERY_NS (60 * SH_NS_PER_SEC)
/* MAX_LINKS: two tracepoints per timed call, plus sched_switch. */
#define MAX_LINKS (2 * DET_SC_MAX + 1)

/* names are the calls as users know them, by enum det_syscall_nr. */
static const char *const names[DET_SC_MAX] = {
	[DET_SC_MMAP] = "mmap",		  [DET_SC_MUNMAP] = "munmap",
	[DET_SC_MPROTECT] = "mprotect",	  [DET_SC_MREMAP] = "mremap",
	[DET_SC_BRK] = "brk",		  [DET_SC_MADVISE] = "madvise",
	[DET_SC_OPENAT] = "openat",	  [DET_SC_OPENAT2] = "openat2",
	[DET_SC_OPEN] = "open",		  [DET_SC_NEWFSTATAT] = "newfstatat",
	[DET_SC_STATX] = "statx",	  [DET_SC_NEWSTAT] = "stat",
	[DET_SC_NEWLSTAT] = "lstat",	  [DET_SC_NEWFSTAT] = "fstat",
};

/* tp_names are the calls' tracepoint names (syscalls:sys_enter_<name>),
 * which the BPF programs are named after. */
static const char *const tp_names[DET_SC_MAX] = {
	[DET_SC_MMAP] = "mmap",		  [DET_SC_MUNMAP] = "munmap",
	[DET_SC_MPROTECT] = "mprotect",	  [DET_SC_MREMAP] = "mremap",
	[DET_SC_BRK] = "brk",		  [DET_SC_MADVISE] = "madvise",
	[DET_SC_OPENAT] = "openat",	  [DET_SC_OPENAT2] = "openat2",
	[DET_SC_OPEN] = "open",		  [DET_SC_NEWFSTATAT] = "newfstatat",
	[DET_SC_STATX] = "statx",	  [DET_SC_NEWSTAT] = "newstat",
	[DET_SC_NEWLSTAT] = "newlstat",	  [DET_SC_NEWFSTAT] = "newfstat",
};

struct det_syscall {
	struct agent_det_ctx ctx; /* a copy: the caller's may not outlive start */
	struct det_syscall_bpf *skel;
	struct ring_buffer *rb;
	struct bpf_link *links[MAX_LINKS];
	size_t nlinks;
	int64_t budget_sec;
	uint32_t budget_used;
	uint64_t received, emitted, suppressed, throttled, malformed;
	uint64_t reported_received;
	int64_t next_report_ns;
};

static size_t depth(int32_t d)
{
	return d > 0 ? (d > DET_SYSCALL_STACK_DEPTH ? DET_SYSCALL_STACK_DEPTH : (size_t)d) : 0;
}

static bool mmap_family(uint32_t nr)
{
	return nr <= DET_SC_MADVISE;
}

/* trim_tracing_frames drops the frames of the tracing machinery (the BPF
 * program, bpf_trace_run*) from the top of t's kernel stack. */
static void trim_tracing_frames(Spikehound__Task *t)
{
	size_t skip = 0;

	while (skip < t->n_kernel_stack &&
	       (strstr(t->kernel_stack[skip], "[bpf]") ||
		strncmp(t->kernel_stack[skip], "bpf_trace_run", 13) == 0 ||
		strncmp(t->kernel_stack[skip], "__bpf_trace_", 12) == 0))
		free(t->kernel_stack[skip++]);
	if (!skip)
		return;
	memmove(t->kernel_stack, t->kernel_stack + skip,
		(t->n_kernel_stack - skip) * sizeof(*t->kernel_stack));
	t->n_kernel_stack -= skip;
}

/* build turns one slow call into a SpikeEvent; NULL on ENOMEM. */
static Spikehound__SpikeEvent *build(struct det_syscall *s, const struct det_syscall_event *e)
{
	char comm[DET_SYSCALL_COMM_LEN + 1], path[DET_SYSCALL_PATH_LEN + 1];
	Spikehound__SpikeEvent *ev;
	Spikehound__Task *c, **v;
	int rv = 0;

	ev = malloc(sizeof(*ev));
	if (!ev)
		return NULL;
	spikehound__spike_event__init(ev);
	ev->kind = strdup("syscall");
	ev->detail = strdup(names[e->nr]);
	if (!ev->kind || !ev->detail)
		goto fail;
	ev->start_ns = (int64_t)e->enter_ns + s->ctx.wall_minus_mono_ns;
	ev->duration_ns = (int64_t)(e->exit_ns - e->enter_ns);
	ev->cpu = (int32_t)e->cpu;

	memcpy(comm, e->comm, DET_SYSCALL_COMM_LEN);
	comm[DET_SYSCALL_COMM_LEN] = '\0';
	ev->victim = agent_task_new((int32_t)e->pid, (int32_t)e->tid, comm, "victim");
	if (!ev->victim)
		goto fail;
	rv |= agent_task_set_kstack(ev->victim, s->ctx.sym, (const uint64_t *)e->bstack,
				    depth(e->bdepth));
	rv |= agent_task_set_ustack(ev->victim, s->ctx.sym, e->pid, (int64_t)e->exit_ns,
				    (const uint64_t *)e->ustack, depth(e->udepth));
	if (rv)
		goto fail;
	trim_tracing_frames(ev->victim);
	if (e->off_max_ns && e->off_max_preempted && e->next_tid && e->next_tid != e->tid) {
		memcpy(comm, e->next_comm, DET_SYSCALL_COMM_LEN);
		comm[DET_SYSCALL_COMM_LEN] = '\0';
		c = agent_task_new((int32_t)e->next_pid, (int32_t)e->next_tid, comm, "ran_instead");
		v = c ? malloc(sizeof(*v)) : NULL;
		if (!v) {
			spikehound__task__free_unpacked(c, NULL);
			goto fail;
		}
		v[0] = c;
		ev->culprits = v;
		ev->n_culprits = 1;
	}

	rv |= agent_event_attr(ev, "ret", "%lld", (long long)e->ret);
	rv |= agent_event_attr(ev, "off_cpu_ns", "%llu", (unsigned long long)e->off_cpu_ns);
	rv |= agent_event_attr(ev, "switches", "%u", e->switches);
	if (e->off_max_ns) {
		rv |= agent_event_attr(ev, "off_cpu_max_ns", "%llu",
				       (unsigned long long)e->off_max_ns);
		rv |= agent_event_attr(ev, "off_cpu_max_cause", "%s",
				       e->off_max_preempted ? "preempted" : "blocked");
	}
	if (mmap_family(e->nr) && e->nr != DET_SC_BRK) {
		rv |= agent_event_attr(ev, "addr", "0x%llx", (unsigned long long)e->args[0]);
		rv |= agent_event_attr(ev, "len", "%llu", (unsigned long long)e->args[1]);
	}
	memcpy(path, e->path, DET_SYSCALL_PATH_LEN);
	path[DET_SYSCALL_PATH_LEN] = '\0';
	if (path[0])
		rv |= agent_event_attr(ev, "path", "%s", path);
	if (rv)
		goto fail;
	return ev;
fail:
	spikehound__spike_event__free_unpacked(ev, NULL);
	return NULL;
}

static int ringbuf_cb(void *arg, void *data, size_t size)
{
	struct det_syscall *s = arg;
	const struct det_syscall_event *e = data;
	int64_t sec = sh_now_mono_ns() / SH_NS_PER_SEC;
	Spikehound__SpikeEvent *ev;
	int cpus[2];

	if (size < sizeof(*e) || e->nr >= DET_SC_MAX) {
		s->malformed++;
		return 0;
	}
	s->received++;
	if (sec != s->budget_sec) {
		s->budget_sec = sec;
		s->budget_used = 0;
	}
	if (s->budget_used >= MAX_EVENTS_PER_SEC) {
		s->throttled++;
		return 0;
	}
	s->budget_used++;
	ev = build(s, e);
	if (!ev) {
		s->malformed++;
		return 0;
	}
	sh_debug("syscall: %.*s[%u] %s took %.2f ms, off CPU %.2f ms (longest %.2f ms, %s)",
		 DET_SYSCALL_COMM_LEN, e->comm, e->tid, names[e->nr],
		 (double)(e->exit_ns - e->enter_ns) / 1e6, (double)e->off_cpu_ns / 1e6,
		 (double)e->off_max_ns / 1e6, e->off_max_preempted ? "preempted" : "blocked");
	cpus[0] = (int)e->cpu;
	cpus[1] = (int)e->enter_cpu;
	if (agent_events_emit(s->ctx.events, ev, cpus, 2) == 0)
		s->emitted++;
	else
		s->suppressed++;
	return 0;
}

static void sum_counters(struct det_syscall *s, uint64_t *sums)
{
	agent_bpf_percpu_sum(bpf_map__fd(s->skel->maps.counters), sums, DET_SC_CNT_MAX);
}

static void syscall_stop(void *state)
{
	struct det_syscall *s = state;

	if (!s)
		return;
	for (size_t i = 0; i < s->nlinks; i++)
		bpf_link__destroy(s->links[i]);
	ring_buffer__free(s->rb);
	det_syscall_bpf__destroy(s->skel);
	free(s);
}

/* attach_all attaches every program whose tracepoint exists here; the
 * calls this kernel lacks (e.g. open and stat on arm64) are logged once.
 * Returns how many calls have both tracepoints attached. */
static int attach_all(struct det_syscall *s)
{
	bool entered[DET_SC_MAX] = { false };
	struct bpf_program *prog;
	char missing[256] = "";
	int ncalls = 0;
	size_t off = 0;

	bpf_object__for_each_program(prog, s->skel->obj)
	{
		const char *name = bpf_program__name(prog);
		bool enter = strncmp(name, "sys_enter_", 10) == 0;
		bool exit_ = strncmp(name, "sys_exit_", 9) == 0;
		const char *call = enter ? name + 10 : exit_ ? name + 9 : NULL;
		struct bpf_link *link = NULL;
		int nr = -1;

		for (int i = 0; call && i < DET_SC_MAX; i++)
			if (strcmp(call, tp_names[i]) == 0)
				nr = i;
		if (s->nlinks < MAX_LINKS)
			link = bpf_program__attach(prog);
		if (!link) {
			if (!call) {
				sh_warn("syscall: could not attach \"%s\" (no blocking stacks): %s",
					name, strerror(errno));
			} else if (enter && errno != ENOENT) {
				sh_warn("syscall: could not attach \"%s\": %s", name,
					strerror(errno));
			} else if (enter) {
				int n = snprintf(missing + off, sizeof(missing) - off, "%s%s",
						 off ? ", " : "", call);

				if (n > 0 && (size_t)n < sizeof(missing) - off)
					off += (size_t)n;
			}
			continue;
		}
		s->links[s->nlinks++] = link;
		if (enter && nr >= 0)
			entered[nr] = true;
		else if (exit_ && nr >= 0 && entered[nr])
			ncalls++;
	}
	if (off)
		sh_info("syscall: not timed here (no such tracepoint): %s", missing);
	return ncalls;
}

static int syscall_start(const struct agent_det_ctx *ctx, void **state)
{
	struct det_syscall *s;
	int err;

	err = agent_tracefs_ensure();
	if (err < 0)
		return err; /* logged */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ctx = *ctx;
	s->skel = det_syscall_bpf__open();
	if (!s->skel) {
		err = -errno;
		sh_warn("syscall: could not open BPF object: %s", strerror(-err));
		goto cleanup;
	}
	s->skel->rodata->threshold_ns = (uint64_t)ctx->cfg->syscall_threshold_ns;
	err = det_syscall_bpf__load(s->skel);
	if (err < 0) {
		sh_warn("syscall: could not load BPF programs: %s", strerror(-err));
		goto cleanup;
	}
	if (attach_all(s) == 0) {
		err = -ENOENT;
		sh_warn("syscall: could not attach to any per-syscall tracepoint");
		goto cleanup;
	}
	s->rb = ring_buffer__new(bpf_map__fd(s->skel->maps.events), ringbuf_cb, s, NULL);
	if (!s->rb) {
		err = -errno;
		sh_warn("syscall: could not create ring buffer reader: %s", strerror(-err));
		goto cleanup;
	}
	s->next_report_ns = sh_now_mono_ns() + REPORT_EVERY_NS;
	sh_info("syscall: reporting mmap-family, open and stat calls over %.1f ms",
		(double)ctx->cfg->syscall_threshold_ns / 1e6);
	*state = s;
	return 0;
cleanup:
	syscall_stop(s);
	return err;
}

static int syscall_fd(void *state)
{
	struct det_syscall *s = state;

	return ring_buffer__epoll_fd(s->rb);
}

static void syscall_poll(void *state)
{
	struct det_syscall *s = state;

	ring_buffer__consume(s->rb);
}

static void syscall_tick(void *state, int64_t wall_ns)
{
	struct det_syscall *s = state;
	uint64_t c[DET_SC_CNT_MAX];
	int64_t now = sh_now_mono_ns();

	(void)wall_ns;
	if (now < s->next_report_ns)
		return;
	s->next_report_ns = now + REPORT_EVERY_NS;
	if (s->received == s->reported_received)
		return;
	s->reported_received = s->received;
	sum_counters(s, c);
	sh_info("syscall: %llu slow calls (%llu lost in the ring buffer), %llu sent, %llu "
		"rate-limited, %llu throttled, %llu malformed; %llu calls untimed, "
		"%llu stacks not kept",
		(unsigned long long)c[DET_SC_CNT_SLOW], (unsigned long long)c[DET_SC_CNT_LOST],
		(unsigned long long)s->emitted, (unsigned long long)s->suppressed,
		(unsigned long long)s->throttled, (unsigned long long)s->malformed,
		(unsigned long long)c[DET_SC_CNT_NO_STORAGE],
		(unsigned long long)c[DET_SC_CNT_NO_STACK]);
}

const struct agent_detector_ops det_syscall_ops = {
	.name = "syscall",
	.start = syscall_start,
	.fd = syscall_fd,
	.poll = syscall_poll,
	.tick = syscall_tick,
	.stop = syscall_stop,
};
