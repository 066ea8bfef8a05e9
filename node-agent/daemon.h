/* daemon.h: `spikehound-agent run`: the always-on agent. Every second it
 * samples host metrics and rescans the process inventory; every interval it
 * builds a Summary, appends it to the spool and lets the sender deliver it
 * to the aggregator(s). Stops gracefully on SIGTERM/SIGINT. */
#ifndef AGENT_DAEMON_H
#define AGENT_DAEMON_H

#include "config.h"

/* agent_daemon_run runs the agent with cfg (borrowed) until SIGTERM or
 * SIGINT. Returns 0 after a clean stop, or a negative errno when it could
 * not start (the reason is logged). */
int agent_daemon_run(const struct agent_config *cfg);

#endif
