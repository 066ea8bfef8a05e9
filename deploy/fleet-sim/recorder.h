/* recorder.h: a simulated host's flight recorder: what the host generated
 * for its live intervals (spike events, metric seconds, process starts and
 * exits), kept packed for the last couple of minutes so that a capture
 * (capture.c) can be taken from it. Stack samples are not kept: a capture
 * draws them for its window from the host's usual stacks (gen.c) and the
 * spikes it holds. Everything runs on the simulator's one thread. */
#ifndef FSIM_RECORDER_H
#define FSIM_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* enum fsim_rec_type says which message a record holds. */
enum fsim_rec_type {
	FSIM_REC_METRICS, /* Spikehound__MetricSecond */
	FSIM_REC_EVENT,	  /* Spikehound__SpikeEvent */
	FSIM_REC_PROC,	  /* Spikehound__CaptureProcEvent */
};

/* struct fsim_rec is one packed record; t_ns is the host's clock. */
struct fsim_rec {
	int64_t t_ns;
	uint8_t *buf;
	uint32_t len;
	uint8_t type; /* enum fsim_rec_type */
};

/* struct fsim_recorder is one host's records in the order they were made
 * (per type that is time order). Zero-initialized it is empty. */
struct fsim_recorder {
	struct fsim_rec *v;
	size_t n, cap;
};

/* fsim_recorder_add packs msg (borrowed) as a record of type at host time
 * t_ns. Returns 0 or -ENOMEM. */
int fsim_recorder_add(struct fsim_recorder *r, enum fsim_rec_type type, int64_t t_ns,
		      const ProtobufCMessage *msg);

/* fsim_recorder_prune forgets the records older than before_ns. */
void fsim_recorder_prune(struct fsim_recorder *r, int64_t before_ns);

/* fsim_recorder_fini frees every record; r is empty afterwards. */
void fsim_recorder_fini(struct fsim_recorder *r);

#endif
