/* control.h: the control plane. Agents never accept connections: each
 * dials the aggregator's control address with an nng REQ socket and sends
 * ControlPoll messages (a long poll). The aggregator answers at once with
 * the commands pending for that host, or holds the poll until a command for
 * the host is pushed or the poll's wait (at most max_wait) runs out, then
 * answers with none. A pending command is repeated in every answer until
 * the agent reports a status for its id (agents run a command id once), or
 * until it expires. The socket is an nng rep0 socket in raw mode under
 * uv_poll on the loop: nothing here blocks and held polls cost one message
 * each.
 *
 * Statuses the agents report are handed to the status callback on the loop
 * (the capture store records them). */
#ifndef AGG_CONTROL_H
#define AGG_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "nngtls.h"
#include "spikehound.pb-c.h"

struct agg_control;

/* agg_control_status_fn receives one status an agent reported; host_id is
 * 32 lowercase hex digits; everything is borrowed for the call. */
typedef void (*agg_control_status_fn)(void *arg, const char *host_id,
				      const Spikehound__CommandStatus *st);

/* agg_control_opts configures agg_control_start; strings borrowed for the call. */
struct agg_control_opts {
	const char *listen_url;    /* e.g. "tcp://127.0.0.1:7472" or "tls+tcp://..." */
	const struct sh_tls *tls;  /* TLS files for a tls+tcp:// listen_url (NULL: none) */
	int64_t max_wait_ns;       /* longest a poll is held (default 25 s) */
	size_t max_poll_bytes;     /* larger polls are refused (default 64 KiB) */
	agg_control_status_fn status_cb; /* may be NULL */
	void *status_arg;
};

/* agg_control_start listens on o->listen_url and serves polls on loop.
 * Returns 0 and *out, or a negative errno with the reason logged. */
int agg_control_start(uv_loop_t *loop, const struct agg_control_opts *o, struct agg_control **out);

/* agg_control_set_status_cb sets (or replaces) the status callback. */
void agg_control_set_status_cb(struct agg_control *c, agg_control_status_fn cb, void *arg);

/* agg_control_push queues cmd (copied) for host_id (32 hex digits or a
 * dashed UUID) and answers the host's held poll at once. Pushing a command
 * id that is already pending for the host replaces it. Returns 0, -EINVAL
 * (bad host id, no command id) or -ENOMEM. */
int agg_control_push(struct agg_control *c, const char *host_id, const Spikehound__Command *cmd);

/* agg_control_cancel forgets a pending command (by id) of host_id; a no-op
 * when there is none. */
void agg_control_cancel(struct agg_control *c, const char *host_id, const char *command_id);

/* agg_control_connected tells whether host_id has a poll held right now
 * (its agent is listening for commands). */
int agg_control_connected(struct agg_control *c, const char *host_id);

/* agg_control_stop answers every held poll with no commands, closes the
 * socket and frees c once its handles are closed, then calls done_cb(arg)
 * on the loop. */
void agg_control_stop(struct agg_control *c, void (*done_cb)(void *arg), void *arg);

/* agg_control_stats_json returns the counters as a JSON object string
 * (caller frees), or NULL on allocation failure. */
char *agg_control_stats_json(struct agg_control *c);

#endif
