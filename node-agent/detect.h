/* detect.h: the spike detectors' common frame. Each detector lives in its
 * own det_<name>.c (BPF side in bpf/det_<name>.bpf.c: filter in the kernel
 * so only outliers cross to user space) and exports a const struct
 * agent_detector_ops named det_<name>_ops. The registry (detect.c) starts
 * the detectors the config enables, gives the collector loop their
 * descriptors, and polls them; a detector that cannot start (missing
 * tracepoint, not root) is logged and skipped, never fatal.
 *
 * Threads: everything runs on the collector thread. */
#ifndef AGENT_DETECT_H
#define AGENT_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct agent_events;
struct agent_recorder;
struct agent_symbolizer;

/* struct agent_det_ctx is what every detector gets: the struct itself is
 * valid only during start (copy what you keep); the objects it points to
 * live until the detector's stop. */
struct agent_det_ctx {
	const struct agent_config *cfg;
	struct agent_events *events;  /* where detected spikes go */
	struct agent_recorder *rec;   /* may be NULL (no BPF sampler) */
	struct agent_symbolizer *sym; /* may be NULL */
	int64_t wall_minus_mono_ns;   /* add to a BPF timestamp for wall time */
};

/* struct agent_detector_ops is one detector. Every callback but start may
 * be NULL. */
struct agent_detector_ops {
	const char *name; /* as in the config's "detectors" list */
	/* start loads and attaches; returns 0 and *state, or a negative errno
	 * (the reason logged by the detector) */
	int (*start)(const struct agent_det_ctx *ctx, void **state);
	/* fd returns a descriptor that becomes readable when there is work
	 * (e.g. a ring buffer's epoll fd), or -1 */
	int (*fd)(void *state);
	/* poll handles what is ready without blocking */
	void (*poll)(void *state);
	/* tick runs once a second (wall clock ns) */
	void (*tick)(void *state, int64_t wall_ns);
	/* stop detaches and frees state */
	void (*stop)(void *state);
};

struct agent_detectors;

/* agent_detectors_start starts every enabled detector. Returns 0 and *out
 * (even when no detector could start), or -ENOMEM. */
int agent_detectors_start(const struct agent_det_ctx *ctx, struct agent_detectors **out);

/* agent_detectors_fds writes up to max descriptors to watch; returns how
 * many. */
size_t agent_detectors_fds(struct agent_detectors *d, int *fds, size_t max);

/* agent_detectors_poll polls every running detector. */
void agent_detectors_poll(struct agent_detectors *d);

/* agent_detectors_tick runs every detector's once-a-second work. */
void agent_detectors_tick(struct agent_detectors *d, int64_t wall_ns);

/* agent_detectors_running returns how many detectors run, and writes their
 * names, comma separated, into buf. */
size_t agent_detectors_running(const struct agent_detectors *d, char *buf, size_t len);

/* agent_detectors_state returns the state of the running detector name
 * (for detector-specific calls such as agent_det_runq_histogram), or NULL
 * when it does not run. */
void *agent_detectors_state(const struct agent_detectors *d, const char *name);

/* agent_detectors_stop stops all and frees d; NULL is a no-op. */
void agent_detectors_stop(struct agent_detectors *d);

/* agent_detector_enabled tells whether name is in the config's list. */
bool agent_detector_enabled(const struct agent_config *cfg, const char *name);

/* agent_tracefs_ensure mounts tracefs at /sys/kernel/tracing when it is
 * not mounted (per-syscall tracepoints need it). Returns 0 or a negative
 * errno. */
int agent_tracefs_ensure(void);

#endif
