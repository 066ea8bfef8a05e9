/* wire.h: many requests in flight to the aggregator from one thread. A
 * few nng REQ sockets (one connection each) carry a pool of REQ contexts,
 * one request per context. nng completes sends and replies on its own
 * threads; the completions are queued and handed to the caller's thread
 * in fsim_wire_poll, so all simulator state stays on that thread. */
#ifndef FSIM_WIRE_H
#define FSIM_WIRE_H

#include <nng/nng.h>

struct fsim_wire;

struct fsim_wire_opts {
	const char *url; /* the aggregator's ingest address (borrowed) */
	int sockets;	 /* connections */
	int slots;	 /* requests in flight at most */
	int timeout_ms;	 /* for the send and, separately, for the reply */
};

/* fsim_wire_done_fn reports that request tag finished: err is 0 and reply
 * the Ack message (the callee takes ownership and frees it with
 * nng_msg_free), or err is a negative errno (-ETIMEDOUT: no reply in time)
 * and reply NULL. */
typedef void (*fsim_wire_done_fn)(void *arg, void *tag, int err, nng_msg *reply);

/* fsim_wire_new opens the sockets and starts dialing (in the background:
 * an absent aggregator shows up as timeouts). Returns 0 and *out, or a
 * negative errno (logged). */
int fsim_wire_new(struct fsim_wire **out, const struct fsim_wire_opts *o);

/* fsim_wire_free cancels what is in flight (without reporting it) and
 * closes everything. w may be NULL. */
void fsim_wire_free(struct fsim_wire *w);

/* fsim_wire_idle returns how many more requests may be sent now. */
int fsim_wire_idle(const struct fsim_wire *w);

/* fsim_wire_inflight returns how many requests are in flight. */
int fsim_wire_inflight(const struct fsim_wire *w);

/* fsim_wire_send sends msg as one request; takes ownership of msg in every
 * case. tag comes back in the done callback. Returns 0, or -EBUSY when no
 * slot is idle (msg is freed). */
int fsim_wire_send(struct fsim_wire *w, nng_msg *msg, void *tag);

/* fsim_wire_poll waits up to timeout_ms for completions and calls cb for
 * each (on this thread). Returns how many it reported. */
int fsim_wire_poll(struct fsim_wire *w, int timeout_ms, fsim_wire_done_fn cb, void *arg);

/* fsim_wire_wake makes a waiting (or the next) fsim_wire_poll return at
 * once; callable from any thread (others' completions use it). */
void fsim_wire_wake(struct fsim_wire *w);

#endif
