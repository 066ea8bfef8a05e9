/* recorder.h: the flight recorder. A time-ordered ring of records (stack
 * samples, process lifecycle events, per-second metric blobs, spike event
 * blobs) under a hard memory cap (default 32 MiB): when a record does not
 * fit, the oldest records are dropped first. Stacks are interned: stored
 * once in a stack table (with their process context: pid, comm, cgroup),
 * referenced by id and refcounted, freed when the last record using them
 * is dropped; the table's memory counts against the cap.
 *
 * Records are kept in arrival order, which is time order within a few
 * microseconds (the BPF ring buffer is shared by all CPUs); range
 * iteration filters each record by its own timestamp. Times are
 * CLOCK_MONOTONIC ns, as BPF gives them.
 *
 * Threads: every function takes the recorder's mutex, so a collector
 * thread can append while another thread iterates; callbacks run with the
 * mutex held and must not call back into the recorder. */
#ifndef AGENT_RECORDER_H
#define AGENT_RECORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent_recorder;

#define AGENT_RECORDER_DEFAULT_CAP (32u << 20)

/* agent_record_type: what a record holds. */
enum agent_record_type {
	AGENT_REC_SAMPLE = 1,
	AGENT_REC_PROC = 2,    /* exec, fork or exit */
	AGENT_REC_METRICS = 3, /* opaque per-second metrics blob */
	AGENT_REC_SPIKE = 4,   /* opaque spike event blob */
};

/* agent_stack: an interned stack with its process context. Stacks are
 * innermost frame first. Borrowed from the recorder: valid only while the
 * callback that received it runs. */
struct agent_stack {
	uint32_t id;
	uint32_t pid; /* tgid; user addresses are in this process */
	uint64_t cgroup_id;
	char comm[16];
	uint16_t kdepth;
	uint16_t udepth;
	const uint64_t *kips;
	const uint64_t *uips;
};

/* agent_proc_kind mirrors enum sh_event_type's lifecycle values. */
enum agent_proc_kind { AGENT_PROC_EXEC = 2, AGENT_PROC_FORK = 3, AGENT_PROC_EXIT = 4 };

/* agent_record: one record as iteration shows it (borrowed, valid only
 * during the callback). */
struct agent_record {
	enum agent_record_type type;
	int64_t ts_ns;
	uint32_t cpu;
	union {
		struct {
			uint32_t tid;
			uint16_t flags; /* enum sh_sample_flags */
			const struct agent_stack *stack;
		} sample;
		struct {
			enum agent_proc_kind kind;
			uint32_t pid, ppid, tid;
			int32_t exit_code;
			uint64_t cgroup_id;
			char comm[16];
			const char *filename; /* exec only, "" otherwise */
		} proc;
		struct {
			const void *data;
			size_t len;
		} blob; /* METRICS and SPIKE */
	};
};

/* agent_recorder_new creates a recorder capped at cap_bytes (0: the
 * default 32 MiB; at least 64 KiB). Returns 0 and *out (caller frees with
 * agent_recorder_free) or a negative errno. */
int agent_recorder_new(size_t cap_bytes, struct agent_recorder **out);

/* agent_recorder_free frees r and everything in it; NULL is a no-op. */
void agent_recorder_free(struct agent_recorder *r);

/* agent_recorder_add_sample appends one sample. kips/uips (innermost
 * first, borrowed: copied when the stack is new) with depths kdepth/udepth;
 * comm need not be NUL-terminated (16 bytes read). Returns 0, or -E2BIG
 * when the record cannot fit even in an empty recorder, or -ENOMEM. */
int agent_recorder_add_sample(struct agent_recorder *r, int64_t ts_ns, uint32_t cpu, uint32_t pid,
			      uint32_t tid, uint64_t cgroup_id, const char *comm, uint16_t flags,
			      const uint64_t *kips, uint16_t kdepth, const uint64_t *uips,
			      uint16_t udepth);

/* agent_recorder_add_proc appends a lifecycle event; filename may be NULL
 * (borrowed, copied). Returns 0 or a negative errno as above. */
int agent_recorder_add_proc(struct agent_recorder *r, int64_t ts_ns, uint32_t cpu,
			    enum agent_proc_kind kind, uint32_t pid, uint32_t ppid, uint32_t tid,
			    int32_t exit_code, uint64_t cgroup_id, const char *comm,
			    const char *filename);

/* agent_recorder_add_blob appends an opaque blob (type AGENT_REC_METRICS or
 * AGENT_REC_SPIKE; data borrowed, copied). Returns 0 or a negative errno. */
int agent_recorder_add_blob(struct agent_recorder *r, enum agent_record_type type, int64_t ts_ns,
			    const void *data, size_t len);

/* agent_recorder_visit_cb sees one record; return 0 to go on, anything
 * else stops the iteration and is returned by agent_recorder_foreach. */
typedef int (*agent_recorder_visit_cb)(void *ctx, const struct agent_record *rec);

/* agent_recorder_foreach calls cb, oldest first, for every record with
 * from_ns <= ts_ns < to_ns. Returns 0 or the callback's stop value. */
int agent_recorder_foreach(struct agent_recorder *r, int64_t from_ns, int64_t to_ns,
			   agent_recorder_visit_cb cb, void *ctx);

/* agent_recorder_stats: current contents. */
struct agent_recorder_stats {
	size_t cap_bytes;
	size_t bytes_used;   /* chunks + stack table + index; always <= cap_bytes */
	size_t chunk_bytes;  /* record storage */
	size_t stack_bytes;  /* interned stacks and their index */
	size_t records;
	size_t stacks;	     /* distinct interned stacks alive */
	int64_t oldest_ns, newest_ns; /* 0 when empty */
	double seconds;	     /* newest - oldest, in seconds */
	uint64_t dropped_records;  /* overwritten since creation */
	uint64_t rejected;	   /* records that could not be stored */
	uint64_t samples_added;
	uint64_t stack_hits;	   /* samples whose stack was already interned */
};

/* agent_recorder_stats fills *st. */
void agent_recorder_stats(struct agent_recorder *r, struct agent_recorder_stats *st);

/* agent_recorder_seconds returns the seconds of history held. */
double agent_recorder_seconds(struct agent_recorder *r);

/* agent_recorder_bytes returns the bytes in use (<= the cap). */
size_t agent_recorder_bytes(struct agent_recorder *r);

#endif
