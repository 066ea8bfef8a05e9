/* sender.h: the agent's sender thread, which delivers the spool to the
 * aggregator.
 *
 * The thread waits for spool entries, sends the oldest of them as one
 * AgentRequest (a fresh Hello, then the spooled AgentMessage bytes as they
 * are) on an nng REQ socket dialed to every configured aggregator address, and
 * removes each entry the Ack reports stored or rejected. Anything else (Ack
 * status RETRY, no reply in time, a transport error) backs off exponentially
 * with jitter and sends the oldest entries again: nothing leaves the spool
 * without an acknowledgement. The thread touches only the spool and its own
 * state.
 */
#ifndef AGENT_SENDER_H
#define AGENT_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nngtls.h"
#include "spikehound.pb-c.h"
#include "spool.h"

/* AGENT_SENDER_REASONS_MAX is how many distinct rejection reasons are
 * counted separately; later ones are counted under "other". */
#define AGENT_SENDER_REASONS_MAX 8

/* agent_sender is a running sender thread, opaque; see agent_sender_start. */
struct agent_sender;

/* agent_sender_fill_hello_fn fills h (zero-initialized with
 * spikehound__hello__init before each request) on the sender thread. The
 * sender never frees anything h points at: strings and labels are borrowed
 * from the callee and must stay valid until the next call or until
 * agent_sender_stop returns. sent_at_ns is set by the sender afterwards. */
typedef void (*agent_sender_fill_hello_fn)(void *arg, Spikehound__Hello *h);

/* agent_sender_opts configures agent_sender_start; zero fields take the
 * defaults given. The struct and the addresses are borrowed only during
 * agent_sender_start. */
struct agent_sender_opts {
	char *const *addrs;                  /* nng URLs, e.g. "tcp://agg:7450" */
	const struct sh_tls *tls;            /* for tls+tcp:// URLs (NULL: none); borrowed */
	size_t n_addrs;                      /* at least 1 */
	struct agent_spool *spool;           /* borrowed: must outlive the sender */
	agent_sender_fill_hello_fn fill_hello; /* NULL: an empty Hello */
	void *hello_arg;
	size_t max_msgs;                     /* per request, default 64 */
	size_t max_bytes;                    /* per request, default 1 MiB */
	int reply_timeout_ms;                /* wait for an Ack, and for a connection
	                                        to send on; default 10000 */
	int backoff_min_ms;                  /* default 100 */
	int backoff_max_ms;                  /* default 5000 */
};

/* agent_sender_reason counts messages rejected for one reason. */
struct agent_sender_reason {
	char reason[64];
	uint64_t count;
};

/* agent_sender_stats is a snapshot of the sender's counters. */
struct agent_sender_stats {
	uint64_t requests;       /* requests sent, resends included */
	uint64_t sent;           /* messages sent, resends included */
	uint64_t acked;          /* messages reported stored and removed */
	uint64_t rejected;       /* messages reported rejected and removed */
	uint64_t retries;        /* failed attempts: RETRY, timeout, error */
	uint64_t timeouts;       /* attempts that got no reply in time */
	int last_error;          /* negative errno of the last failure, 0: none */
	char last_error_msg[128]; /* its description, "" when none */
	struct agent_sender_reason reasons[AGENT_SENDER_REASONS_MAX + 1];
	size_t n_reasons;        /* used entries of reasons[] */
};

/* agent_sender_start opens the REQ socket, dials every address in the
 * background (nng reconnects by itself) and starts the thread. On success
 * *out is a sender the caller ends with agent_sender_stop. Returns 0,
 * -EINVAL for bad options or an unusable address, or a negative errno. */
int agent_sender_start(struct agent_sender **out, const struct agent_sender_opts *opts);

/* agent_sender_stop interrupts whatever the thread waits for (spool, reply,
 * back-off), joins it, closes the socket and frees s (NULL is a no-op).
 * Entries not yet acknowledged stay in the spool. */
void agent_sender_stop(struct agent_sender *s);

/* agent_sender_get_stats copies the counters into *st (caller's). */
void agent_sender_get_stats(struct agent_sender *s, struct agent_sender_stats *st);

/* agent_sender_clock_skew estimates the aggregator's wall clock minus ours
 * (*skew_ns) from Ack.received_ns, assuming the request arrived after half of
 * the round trip; of the recent samples, the one with the shortest round trip
 * (*rtt_ns, may be NULL) is used. Returns 0, or -EAGAIN when no Ack has
 * carried received_ns yet. */
int agent_sender_clock_skew(struct agent_sender *s, int64_t *skew_ns, int64_t *rtt_ns);

#endif
