/* recorder.c: a simulated host's recent records (see recorder.h). */
#include "recorder.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fsim_recorder_add(struct fsim_recorder *r, enum fsim_rec_type type, int64_t t_ns,
		      const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	struct fsim_rec *e;
	uint8_t *buf;

	if (len > UINT32_MAX)
		return -EMSGSIZE;
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		struct fsim_rec *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	if (!(buf = malloc(len ? len : 1)))
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	e = &r->v[r->n++];
	e->t_ns = t_ns;
	e->buf = buf;
	e->len = (uint32_t)len;
	e->type = (uint8_t)type;
	return 0;
}

void fsim_recorder_prune(struct fsim_recorder *r, int64_t before_ns)
{
	size_t k = 0;

	for (size_t i = 0; i < r->n; i++) {
		if (r->v[i].t_ns < before_ns)
			free(r->v[i].buf);
		else
			r->v[k++] = r->v[i];
	}
	r->n = k;
}

void fsim_recorder_fini(struct fsim_recorder *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].buf);
	free(r->v);
	memset(r, 0, sizeof(*r));
}
