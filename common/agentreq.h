/* agentreq.h: framing an AgentRequest (proto/spikehound.proto) by hand, as
 * the agent sends it: field 1 the Hello, then field 2 once per
 * AgentMessage, both length-delimited. The messages are already serialized
 * (the agent's spool, fleet-sim's outboxes hold them that way), so they are
 * copied in as they are instead of being decoded and encoded again.
 *
 * A request is sized first (the Hello's field plus each message's field)
 * and then written front to back into a buffer of exactly that size:
 *
 *	total = sh_agentreq_field_size(hlen) + sum of sh_agentreq_field_size(len)
 *	p = sh_agentreq_put_hello(p, hello, hlen);
 *	p = sh_agentreq_put_message(p, data, len); ...
 */
#ifndef SH_AGENTREQ_H
#define SH_AGENTREQ_H

#include <stddef.h>
#include <stdint.h>

#include "spikehound.pb-c.h"

/* sh_agentreq_field_size returns the bytes a field of len bytes takes in
 * an AgentRequest: its key, its length as a varint and the bytes. */
size_t sh_agentreq_field_size(size_t len);

/* sh_agentreq_put_hello writes the Hello field at p: hello (borrowed)
 * packed, hlen its spikehound__hello__get_packed_size. p must have
 * sh_agentreq_field_size(hlen) bytes; returns the byte after them. */
uint8_t *sh_agentreq_put_hello(uint8_t *p, const Spikehound__Hello *hello, size_t hlen);

/* sh_agentreq_put_message writes one AgentMessage field at p: the len
 * serialized bytes at msg (borrowed; NULL when len is 0). p must have
 * sh_agentreq_field_size(len) bytes; returns the byte after them. */
uint8_t *sh_agentreq_put_message(uint8_t *p, const void *msg, size_t len);

#endif
