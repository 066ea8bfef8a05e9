/* events.h: spike events from the detectors to the aggregator. A detector
 * hands over a filled Spikehound__SpikeEvent; this module rate-limits per
 * kind (a burst, then a steady rate, counting what it suppressed; a spike
 * longer than all of its kind sent in the last one to two minutes passes
 * an empty bucket, a few times a minute, so the worst is kept), waits a
 * moment so the flight recorder has the samples of the window, attaches
 * the recorder's samples on the involved CPUs during the window, stores
 * the event in the recorder, and spools it as its own AgentMessage at once
 * (the sender delivers it ahead of the next summary interval).
 *
 * Threads: the collector thread only (like the recorder feed). */
#ifndef AGENT_EVENTS_H
#define AGENT_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "spikehound.pb-c.h"

struct agent_recorder;
struct agent_symbolizer;
struct agent_spool;

/* struct agent_events_opts: borrowed pointers must outlive the events. */
struct agent_events_opts {
	struct agent_spool *spool;     /* required */
	struct agent_recorder *rec;    /* NULL: no window samples */
	struct agent_symbolizer *sym;  /* NULL: unsymbolized */
	const char *host_id, *boot_id; /* borrowed */
	uint32_t burst;                /* events per kind sent at once (20) */
	uint32_t per_minute;           /* then this many per minute per kind (60) */
	uint32_t escalations;          /* longer-than-recent spikes let through an
					* empty bucket per minute per kind (burst) */
	int64_t delay_ns;              /* wait before sending (200 ms) */
	size_t window_stacks;          /* top window stacks attached (10) */
	/* on_event (may be NULL) sees every emitted event, rate-limited or not,
	 * before it is queued (ev borrowed for the call): local capture triggers */
	void (*on_event)(void *arg, const Spikehound__SpikeEvent *ev);
	void *on_event_arg;
};

struct agent_events;

/* agent_events_new creates the event path. Returns 0 and *out (free with
 * agent_events_free), or -ENOMEM. */
int agent_events_new(const struct agent_events_opts *o, struct agent_events **out);

/* agent_events_free frees pending events unsent; NULL is a no-op. */
void agent_events_free(struct agent_events *e);

/* agent_events_emit takes ownership of ev (heap-allocated, freed with
 * spikehound__spike_event__free_unpacked(ev, NULL): every string and
 * sub-message must be malloc'd). ev->start_ns is wall-clock ns; cpus lists
 * the CPUs whose samples during the window are evidence (copied; may be
 * NULL). Returns 0, or -EBUSY when the kind's rate limit suppressed it
 * (counted and reported with the next event of that kind), or -EINVAL for
 * an event with a negative duration or no start time (dropped, counted). */
int agent_events_emit(struct agent_events *e, Spikehound__SpikeEvent *ev, const int *cpus,
		      size_t ncpus);

/* agent_events_flush sends the events whose delay has passed; call it
 * from the collector loop (cheap when nothing is pending). */
void agent_events_flush(struct agent_events *e);

/* agent_events_stats: counters since start. */
struct agent_events_stats {
	uint64_t emitted, sent, suppressed, spool_errors;
	uint64_t escalated; /* sent through an empty bucket as the longest yet */
	uint64_t invalid;   /* dropped: negative duration or no start time */
};

/* agent_events_get_stats copies the counters into *st. */
void agent_events_get_stats(const struct agent_events *e, struct agent_events_stats *st);

/* agent_task_new returns a malloc'd Task with copies of comm and role (for
 * building events; NULL strings become ""). NULL on allocation failure. */
Spikehound__Task *agent_task_new(int32_t pid, int32_t tid, const char *comm, const char *role);

/* agent_task_set_kstack symbolizes kernel addresses (innermost first) into
 * t->kernel_stack; agent_task_set_ustack does user frames of pid at ts_ns
 * (monotonic). Return 0 or -ENOMEM. */
int agent_task_set_kstack(Spikehound__Task *t, struct agent_symbolizer *sym, const uint64_t *ips,
			  size_t n);
int agent_task_set_ustack(Spikehound__Task *t, struct agent_symbolizer *sym, uint32_t pid,
			  int64_t ts_ns, const uint64_t *ips, size_t n);

/* agent_event_attr adds a key=value attribute (copied). 0 or -ENOMEM. */
int agent_event_attr(Spikehound__SpikeEvent *ev, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
