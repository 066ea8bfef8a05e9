/* agentreq.c: framing an AgentRequest by hand (see agentreq.h). */
#include "agentreq.h"

#include <string.h>

/* Protobuf keys of AgentRequest's fields (field number << 3 | wire type 2). */
#define KEY_HELLO 0x0a
#define KEY_MESSAGE 0x12

static size_t varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

size_t sh_agentreq_field_size(size_t len)
{
	return 1 + varint_len(len) + len;
}

uint8_t *sh_agentreq_put_hello(uint8_t *p, const Spikehound__Hello *hello, size_t hlen)
{
	*p++ = KEY_HELLO;
	p = put_varint(p, hlen);
	return p + spikehound__hello__pack(hello, p);
}

uint8_t *sh_agentreq_put_message(uint8_t *p, const void *msg, size_t len)
{
	*p++ = KEY_MESSAGE;
	p = put_varint(p, len);
	if (len)
		memcpy(p, msg, len);
	return p + len;
}
