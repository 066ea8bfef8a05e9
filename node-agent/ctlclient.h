/* ctlclient.h: the agent's side of the control plane. A thread dials the
 * configured aggregator's control address (the agent never listens) and
 * long-polls it with ControlPoll messages; commands in the answers are
 * handed to the daemon once per command id (the aggregator repeats a
 * command until it has a status for it), and the statuses the daemon
 * reports ride on the next poll. Commands are only ever taken from answers
 * to the agent's own polls on the socket it dialed.
 */
#ifndef AGENT_CTLCLIENT_H
#define AGENT_CTLCLIENT_H

#include <stdint.h>

#include "sender.h"
#include "spikehound.pb-c.h"

struct agent_control;

/* agent_control_cmd_fn receives a new command on the control thread; cmd
 * is borrowed for the call (copy what you keep). It must not block: queue
 * the work and wake the daemon. */
typedef void (*agent_control_cmd_fn)(void *arg, const Spikehound__Command *cmd);

/* agent_control_opts; borrowed for agent_control_start only. */
struct agent_control_opts {
	const char *url;                     /* tcp://aggregator:7472 */
	const struct sh_tls *tls;            /* for a tls+tcp:// url (NULL: none); borrowed */
	agent_sender_fill_hello_fn fill_hello; /* called on the control thread */
	void *hello_arg;
	agent_control_cmd_fn on_command;
	void *cmd_arg;
	int wait_ms;                         /* long-poll wait, default 20000 */
	int retry_ms;                        /* pause after a failed poll, default 1000 */
};

/* agent_control_stats: counters. */
struct agent_control_stats {
	uint64_t polls, replies, failures, commands, duplicates, refused;
	char last_error[96];
};

/* agent_control_start dials and starts the thread. Returns 0 and *out or a
 * negative errno (-EINVAL for an unusable URL). */
int agent_control_start(struct agent_control **out, const struct agent_control_opts *o);

/* agent_control_report queues a status for command_id ("accepted", "done",
 * "failed", "expired"); thread-safe; strings are copied. The poll in
 * flight is not interrupted: the status goes with the next one (the daemon
 * reports "accepted" at once, so a capture's chunks are the real answer). */
void agent_control_report(struct agent_control *c, const char *command_id, const char *status,
			  const char *reason);

/* agent_control_get_stats fills *st (thread-safe). */
void agent_control_get_stats(struct agent_control *c, struct agent_control_stats *st);

/* agent_control_stop stops the thread, closes the socket and frees c; NULL
 * is a no-op. */
void agent_control_stop(struct agent_control *c);

#endif
