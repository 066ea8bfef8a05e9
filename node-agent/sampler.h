/* sampler.h: the agent's stack sampler. Loads bpf/sampler.bpf.c, opens a
 * software cpu-clock perf event (frequency mode) on every online CPU and
 * attaches the sampling program to each, follows CPU hotplug, and hands
 * the ring buffer's samples and process lifecycle events to callbacks.
 *
 * Threads: an agent_sampler is used by one thread (the collector), which
 * calls agent_sampler_poll in a loop; callbacks run on that thread. */
#ifndef AGENT_SAMPLER_H
#define AGENT_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../bpf/sampler.h" /* struct sh_sample_event, sh_proc_event */

struct agent_sampler;

/* agent_sampler_opts: settings; zero-initialize, then set what you need. */
struct agent_sampler_opts {
	unsigned hz;		/* sampling frequency; 0 means 99 */
	int cpu;		/* sample only this CPU; -1 every online CPU */
	uint32_t pid;		/* sample only this process (tgid); 0 all */
	size_t ringbuf_bytes;	/* BPF ring buffer size (power of 2); 0: sized by CPUs */
	bool skip_idle;		/* drop samples of the idle task */
	bool no_user_stacks;	/* do not read user stacks */
	bool no_user_build_ids;	/* do not read the user stack's build ids + offsets */
	bool no_kernel_stacks;	/* do not read kernel stacks */
	bool no_lifecycle;	/* do not attach the exec/fork/exit tracepoints */
	int cpu_check_ms;	/* period of the CPU hotplug check; 0 means 1000 */
};

/* AGENT_SAMPLER_PID_MAPPED: a callback's return value saying that the
 * mappings of the event's process are known to user space now (sample) or
 * no longer (exec, exit); see agent_sampler_pid_mapped. */
#define AGENT_SAMPLER_PID_MAPPED 1

/* agent_sample_cb receives one sample; ev is borrowed (valid only during
 * the call; the stacks past kstack_depth/ustack_depth/ubuild_depth are
 * garbage). Return 0; AGENT_SAMPLER_PID_MAPPED to have the process's later
 * samples come without the build-id stack (agent_sampler_pid_mapped); or
 * a negative errno to stop the current agent_sampler_poll. */
typedef int (*agent_sample_cb)(void *ctx, const struct sh_sample_event *ev);

/* agent_proc_cb receives one lifecycle event (borrowed, as above). For fork
 * and exit ev->filename is not part of the record and must not be read.
 * Return 0; AGENT_SAMPLER_PID_MAPPED to undo agent_sampler_pid_mapped for
 * the process (agent_sampler_pid_forget); or a negative errno as above. */
typedef int (*agent_proc_cb)(void *ctx, const struct sh_proc_event *ev);

/* agent_sampler_health: counters since agent_sampler_new. */
struct agent_sampler_health {
	uint64_t samples;	     /* samples taken by the BPF program (incl. lost) */
	uint64_t samples_lost;	     /* samples dropped: ring buffer full */
	uint64_t stack_errors;	     /* kernel + user stack reads that failed */
	uint64_t kstack_errors;
	uint64_t ustack_errors;
	uint64_t user_stacks_depth1; /* user stacks that stopped at depth 1 */
	uint64_t ubuild_errors;	     /* build-id user stack reads that failed */
	uint64_t proc_lost;	     /* lifecycle events dropped */
	uint64_t received;	     /* events delivered to callbacks */
	uint64_t malformed;	     /* ring buffer records too short or of unknown type */
	uint32_t cpus_attached;	     /* CPUs with an attached perf event now */
	uint64_t cpu_attach_errors;  /* perf_event_open/attach failures */
	uint64_t cpu_events_reopened; /* events found stopped (CPU went off and on) */
};

/* agent_sampler_new loads and attaches the sampler. opts may be NULL for
 * the defaults; on_sample/on_proc may be NULL; ctx is passed to both
 * (borrowed). Needs root (CAP_BPF + CAP_PERFMON). On success *out owns the
 * sampler (free with agent_sampler_free) and returns 0; otherwise a
 * negative errno and *out is untouched. */
int agent_sampler_new(const struct agent_sampler_opts *opts, agent_sample_cb on_sample,
		      agent_proc_cb on_proc, void *ctx, struct agent_sampler **out);

/* agent_sampler_poll waits up to timeout_ms for events and runs the
 * callbacks; every cpu_check_ms it also re-reads the online CPUs, opens or
 * closes per-CPU events, and reopens an event whose enabled time stopped
 * (its CPU went offline and back between two checks). Returns the number of events handled, or a
 * negative errno (-EINTR when a signal interrupted the wait, or a
 * callback's error). */
int agent_sampler_poll(struct agent_sampler *s, int timeout_ms);

/* agent_sampler_fd returns an fd that becomes readable when events are
 * waiting (the ring buffer's epoll fd), for callers with their own loop. */
int agent_sampler_fd(const struct agent_sampler *s);

/* agent_sampler_sync_cpus re-reads /sys/devices/system/cpu/online now and
 * opens/closes per-CPU events. Returns the number of CPUs attached or a
 * negative errno. */
int agent_sampler_sync_cpus(struct agent_sampler *s);

/* agent_sampler_pid_mapped tells the BPF program that user space has read
 * the mappings of process pid (as exec'd now): its samples then come
 * without the build-id stack (ubuild_depth 0) until it execs or exits, or
 * agent_sampler_pid_forget. Returns 0 or a negative errno. */
int agent_sampler_pid_mapped(struct agent_sampler *s, uint32_t pid);

/* agent_sampler_pid_forget undoes agent_sampler_pid_mapped (e.g. when the
 * exec event shows the mappings read may be the old image's). */
void agent_sampler_pid_forget(struct agent_sampler *s, uint32_t pid);

/* agent_sampler_health fills *h with the counters so far. */
void agent_sampler_health(const struct agent_sampler *s, struct agent_sampler_health *h);

/* agent_sampler_free detaches and frees s; NULL is a no-op. */
void agent_sampler_free(struct agent_sampler *s);

/* agent_parse_cpu_list parses a kernel CPU list ("0-3,5,7-8\n") into
 * set[0..n): set[i] = 1 when CPU i is listed. Returns 0 or -EINVAL. */
int agent_parse_cpu_list(const char *s, uint8_t *set, int n);

#endif
