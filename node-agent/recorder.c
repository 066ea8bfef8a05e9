/* recorder.c: the flight recorder ring. Records live in a FIFO of chunks
 * allocated on demand; the oldest chunk is dropped whole when the cap
 * would be exceeded. Samples reference interned stacks (refcounted, in a
 * hash-indexed table whose memory is charged to the same cap). */
#include "recorder.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../bpf/sampler.h" /* SH_MAX_STACK_DEPTH */

#define MIN_CAP (64u << 10)
#define NO_ID UINT32_MAX

/* Records in a chunk; every record is 8-byte aligned, len includes the
 * header and padding. */
struct rec_hdr {
	int64_t ts;
	uint8_t type;
	uint8_t flags;
	uint16_t cpu;
	uint32_t len;
};

struct rec_sample {
	struct rec_hdr h;
	uint32_t stack_id;
	uint32_t tid;
};

struct rec_proc {
	struct rec_hdr h;
	uint32_t pid, ppid, tid;
	int32_t exit_code;
	uint64_t cgroup_id;
	char comm[16];
	char filename[]; /* NUL-terminated, padded */
};

struct rec_blob {
	struct rec_hdr h;
	uint32_t data_len;
	uint32_t pad;
	unsigned char data[];
};

struct chunk {
	struct chunk *next;
	size_t cap, used, acct;
	int64_t min_ts, max_ts;
	uint32_t nrec;
	uint32_t pad;
	unsigned char data[];
};

struct stack_ent {
	struct agent_stack pub;
	uint32_t refs;
	uint32_t hnext; /* next id in the hash bucket */
	uint64_t hash;
	size_t acct;
	uint64_t ips[]; /* kernel frames, then user frames */
};

struct agent_recorder {
	pthread_mutex_t mu;
	size_t cap;
	size_t chunk_size;
	struct chunk *head, *tail; /* oldest, newest */
	size_t chunk_bytes;
	size_t nrecords;
	/* stack table */
	struct stack_ent **ents; /* by id; a free slot holds (next_free << 1 | 1) */
	uint32_t nents_cap;
	uint32_t free_head;
	uint32_t nstacks;
	uint32_t *buckets;
	uint32_t nbuckets;
	size_t stack_bytes;
	/* counters */
	uint64_t dropped, rejected, samples_added, stack_hits;
};

/* acct is what an allocation of n bytes costs with glibc malloc. */
static size_t acct(size_t n)
{
	if (n >= (128u << 10))
		return (n + 16 + 4095) & ~(size_t)4095;
	n = (n + 8 + 15) & ~(size_t)15;
	return n < 32 ? 32 : n;
}

static size_t used_bytes(const struct agent_recorder *r)
{
	return acct(sizeof(*r)) + r->chunk_bytes + r->stack_bytes;
}

static bool slot_free(const struct stack_ent *e)
{
	return ((uintptr_t)e & 1) != 0;
}

static uint64_t stack_hash(uint32_t pid, uint64_t cgroup_id, const char *comm,
			   const uint64_t *kips, uint16_t kdepth, const uint64_t *uips,
			   uint16_t udepth)
{
	uint64_t h = 0xcbf29ce484222325ULL;

#define MIX(v)                                             \
	do {                                               \
		h ^= (uint64_t)(v);                        \
		h *= 0x100000001b3ULL;                     \
		h ^= h >> 32;                              \
	} while (0)
	MIX(pid);
	MIX(cgroup_id);
	MIX(((uint64_t)kdepth << 16) | udepth);
	for (int i = 0; i < 16 && comm[i]; i++)
		MIX((unsigned char)comm[i]);
	for (int i = 0; i < kdepth; i++)
		MIX(kips[i]);
	for (int i = 0; i < udepth; i++)
		MIX(uips[i]);
#undef MIX
	return h;
}

static bool stack_eq(const struct stack_ent *e, uint64_t hash, uint32_t pid, uint64_t cgroup_id,
		     const char *comm, const uint64_t *kips, uint16_t kdepth, const uint64_t *uips,
		     uint16_t udepth)
{
	return e->hash == hash && e->pub.pid == pid && e->pub.cgroup_id == cgroup_id &&
	       e->pub.kdepth == kdepth && e->pub.udepth == udepth &&
	       strncmp(e->pub.comm, comm, 16) == 0 &&
	       (!kdepth || memcmp(e->ips, kips, kdepth * sizeof(*kips)) == 0) &&
	       (!udepth || memcmp(e->ips + kdepth, uips, udepth * sizeof(*uips)) == 0);
}

static void stack_unref(struct agent_recorder *r, uint32_t id)
{
	struct stack_ent *e = r->ents[id];
	uint32_t *pp;

	if (--e->refs)
		return;
	for (pp = &r->buckets[e->hash & (r->nbuckets - 1)]; *pp != NO_ID; pp = &r->ents[*pp]->hnext) {
		if (*pp == id) {
			*pp = e->hnext;
			break;
		}
	}
	r->stack_bytes -= e->acct;
	free(e);
	r->ents[id] = (struct stack_ent *)(((uintptr_t)r->free_head << 1) | 1);
	r->free_head = id;
	r->nstacks--;
}

static void chunk_drop_oldest(struct agent_recorder *r)
{
	struct chunk *c = r->head;
	size_t off = 0;

	while (off < c->used) {
		const struct rec_hdr *h = (const struct rec_hdr *)(c->data + off);

		if (h->type == AGENT_REC_SAMPLE)
			stack_unref(r, ((const struct rec_sample *)h)->stack_id);
		off += h->len;
	}
	r->head = c->next;
	if (!r->head)
		r->tail = NULL;
	r->chunk_bytes -= c->acct;
	r->nrecords -= c->nrec;
	r->dropped += c->nrec;
	free(c);
}

/* make_room drops the oldest chunks until extra more bytes fit under the
 * cap. keep (may be NULL) is a chunk that must survive (it is being
 * written). Returns 0 or -E2BIG. */
static int make_room(struct agent_recorder *r, size_t extra, const struct chunk *keep)
{
	while (used_bytes(r) + extra > r->cap) {
		if (!r->head || r->head == keep)
			return -E2BIG;
		chunk_drop_oldest(r);
	}
	return 0;
}

/* alloc_record returns space for a record of len bytes (a multiple of 8)
 * at the ring's newest end, dropping old chunks as needed. */
static void *alloc_record(struct agent_recorder *r, size_t len, int64_t ts)
{
	struct chunk *c = r->tail;
	unsigned char *p;

	if (!c || c->cap - c->used < len) {
		size_t cap = len > r->chunk_size ? len : r->chunk_size;
		size_t cost = acct(sizeof(*c) + cap);

		if (make_room(r, cost, NULL) < 0)
			return NULL;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		memset(c, 0, sizeof(*c));
		c->cap = cap;
		c->acct = cost;
		c->min_ts = INT64_MAX;
		c->max_ts = INT64_MIN;
		if (r->tail)
			r->tail->next = c;
		else
			r->head = c;
		r->tail = c;
		r->chunk_bytes += cost;
	}
	p = c->data + c->used;
	c->used += len;
	c->nrec++;
	if (ts < c->min_ts)
		c->min_ts = ts;
	if (ts > c->max_ts)
		c->max_ts = ts;
	r->nrecords++;
	memset(p, 0, len);
	return p;
}

/* grow_table makes room for one more stack id and bucket load. */
static int grow_table(struct agent_recorder *r)
{
	if (r->free_head == NO_ID) {
		uint32_t ncap = r->nents_cap ? r->nents_cap * 2 : 256;
		size_t old = r->nents_cap ? acct(r->nents_cap * sizeof(*r->ents)) : 0;
		size_t nw = acct(ncap * sizeof(*r->ents));
		struct stack_ent **p;

		if (make_room(r, nw - old, r->tail) < 0)
			return -E2BIG;
		if (r->free_head != NO_ID)
			goto buckets; /* eviction freed ids */
		p = realloc(r->ents, ncap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		for (uint32_t i = ncap; i-- > r->nents_cap;) {
			p[i] = (struct stack_ent *)(((uintptr_t)r->free_head << 1) | 1);
			r->free_head = i;
		}
		r->ents = p;
		r->nents_cap = ncap;
		r->stack_bytes += nw - old;
	}
buckets:
	if (r->nstacks + 1 > r->nbuckets) {
		uint32_t nb = r->nbuckets ? r->nbuckets * 2 : 256;
		size_t old = r->nbuckets ? acct(r->nbuckets * sizeof(*r->buckets)) : 0;
		size_t nw = acct(nb * sizeof(*r->buckets));
		uint32_t *b;

		if (make_room(r, nw - old, r->tail) < 0)
			return -E2BIG;
		if (r->nstacks + 1 <= r->nbuckets)
			return 0;
		b = malloc(nb * sizeof(*b));
		if (!b)
			return -ENOMEM;
		for (uint32_t i = 0; i < nb; i++)
			b[i] = NO_ID;
		for (uint32_t id = 0; id < r->nents_cap; id++) {
			struct stack_ent *e = r->ents[id];

			if (slot_free(e))
				continue;
			e->hnext = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = id;
		}
		free(r->buckets);
		r->buckets = b;
		r->nbuckets = nb;
		r->stack_bytes += nw - old;
	}
	return 0;
}

/* intern returns the id of the stack (taking one reference), inserting it
 * when new. */
static int intern(struct agent_recorder *r, uint32_t pid, uint64_t cgroup_id, const char *comm,
		  const uint64_t *kips, uint16_t kdepth, const uint64_t *uips, uint16_t udepth,
		  uint32_t *id_out)
{
	uint64_t h = stack_hash(pid, cgroup_id, comm, kips, kdepth, uips, udepth);
	size_t sz = sizeof(struct stack_ent) + ((size_t)kdepth + udepth) * sizeof(uint64_t);
	struct stack_ent *e;
	uint32_t id;
	int err;

	if (r->nbuckets) {
		for (id = r->buckets[h & (r->nbuckets - 1)]; id != NO_ID; id = r->ents[id]->hnext) {
			e = r->ents[id];
			if (stack_eq(e, h, pid, cgroup_id, comm, kips, kdepth, uips, udepth)) {
				e->refs++;
				r->stack_hits++;
				*id_out = id;
				return 0;
			}
		}
	}
	err = grow_table(r);
	if (err < 0)
		return err;
	if (make_room(r, acct(sz), r->tail) < 0)
		return -E2BIG;
	e = malloc(sz);
	if (!e)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	id = r->free_head;
	r->free_head = (uint32_t)((uintptr_t)r->ents[id] >> 1);
	e->pub.id = id;
	e->pub.pid = pid;
	e->pub.cgroup_id = cgroup_id;
	memcpy(e->pub.comm, comm, strnlen(comm, sizeof(e->pub.comm) - 1));
	e->pub.kdepth = kdepth;
	e->pub.udepth = udepth;
	if (kdepth)
		memcpy(e->ips, kips, kdepth * sizeof(*kips));
	if (udepth)
		memcpy(e->ips + kdepth, uips, udepth * sizeof(*uips));
	e->pub.kips = e->ips;
	e->pub.uips = e->ips + kdepth;
	e->refs = 1;
	e->hash = h;
	e->acct = acct(sz);
	e->hnext = r->buckets[h & (r->nbuckets - 1)];
	r->buckets[h & (r->nbuckets - 1)] = id;
	r->ents[id] = e;
	r->nstacks++;
	r->stack_bytes += e->acct;
	*id_out = id;
	return 0;
}

int agent_recorder_add_sample(struct agent_recorder *r, int64_t ts_ns, uint32_t cpu, uint32_t pid,
			      uint32_t tid, uint64_t cgroup_id, const char *comm, uint16_t flags,
			      const uint64_t *kips, uint16_t kdepth, const uint64_t *uips,
			      uint16_t udepth)
{
	struct rec_sample *rec;
	char name[16] = { 0 };
	uint32_t id;
	int err;

	if (kdepth > SH_MAX_STACK_DEPTH)
		kdepth = SH_MAX_STACK_DEPTH;
	if (udepth > SH_MAX_STACK_DEPTH)
		udepth = SH_MAX_STACK_DEPTH;
	if (comm)
		memcpy(name, comm, strnlen(comm, 15));
	pthread_mutex_lock(&r->mu);
	/* The record first, so interning cannot drop the chunk it goes to. */
	rec = alloc_record(r, sizeof(*rec), ts_ns);
	if (!rec) {
		err = -E2BIG;
		goto cleanup;
	}
	rec->h.type = AGENT_REC_SAMPLE; /* stack_id filled below */
	rec->h.ts = ts_ns;
	rec->h.cpu = (uint16_t)cpu;
	rec->h.flags = (uint8_t)flags;
	rec->h.len = sizeof(*rec);
	rec->tid = tid;
	err = intern(r, pid, cgroup_id, name, kips, kdepth, uips, udepth, &id);
	if (err < 0) {
		/* Take the record back out: it is the newest in the tail chunk. */
		r->tail->used -= sizeof(*rec);
		r->tail->nrec--;
		r->nrecords--;
		goto cleanup;
	}
	rec->stack_id = id;
	r->samples_added++;
cleanup:
	if (err < 0)
		r->rejected++;
	pthread_mutex_unlock(&r->mu);
	return err;
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

int agent_recorder_add_proc(struct agent_recorder *r, int64_t ts_ns, uint32_t cpu,
			    enum agent_proc_kind kind, uint32_t pid, uint32_t ppid, uint32_t tid,
			    int32_t exit_code, uint64_t cgroup_id, const char *comm,
			    const char *filename)
{
	size_t flen = filename ? strnlen(filename, 4096) : 0;
	size_t len = pad8(sizeof(struct rec_proc) + flen + 1);
	struct rec_proc *rec;
	int err = 0;

	pthread_mutex_lock(&r->mu);
	rec = alloc_record(r, len, ts_ns);
	if (!rec) {
		err = -E2BIG;
		r->rejected++;
		goto cleanup;
	}
	rec->h.type = AGENT_REC_PROC;
	rec->h.ts = ts_ns;
	rec->h.cpu = (uint16_t)cpu;
	rec->h.flags = (uint8_t)kind;
	rec->h.len = (uint32_t)len;
	rec->pid = pid;
	rec->ppid = ppid;
	rec->tid = tid;
	rec->exit_code = exit_code;
	rec->cgroup_id = cgroup_id;
	if (comm)
		memcpy(rec->comm, comm, strnlen(comm, 15));
	if (flen)
		memcpy(rec->filename, filename, flen);
cleanup:
	pthread_mutex_unlock(&r->mu);
	return err;
}

int agent_recorder_add_blob(struct agent_recorder *r, enum agent_record_type type, int64_t ts_ns,
			    const void *data, size_t len)
{
	size_t total = pad8(sizeof(struct rec_blob) + len);
	struct rec_blob *rec;
	int err = 0;

	if (type != AGENT_REC_METRICS && type != AGENT_REC_SPIKE)
		return -EINVAL;
	if (len > UINT32_MAX / 2)
		return -E2BIG;
	pthread_mutex_lock(&r->mu);
	rec = alloc_record(r, total, ts_ns);
	if (!rec) {
		err = -E2BIG;
		r->rejected++;
		goto cleanup;
	}
	rec->h.type = (uint8_t)type;
	rec->h.ts = ts_ns;
	rec->h.len = (uint32_t)total;
	rec->data_len = (uint32_t)len;
	if (len)
		memcpy(rec->data, data, len);
cleanup:
	pthread_mutex_unlock(&r->mu);
	return err;
}

static void to_record(const struct agent_recorder *r, const struct rec_hdr *h,
		      struct agent_record *out)
{
	memset(out, 0, sizeof(*out));
	out->type = h->type;
	out->ts_ns = h->ts;
	out->cpu = h->cpu;
	switch (h->type) {
	case AGENT_REC_SAMPLE: {
		const struct rec_sample *s = (const struct rec_sample *)h;

		out->sample.tid = s->tid;
		out->sample.flags = h->flags;
		out->sample.stack = &r->ents[s->stack_id]->pub;
		break;
	}
	case AGENT_REC_PROC: {
		const struct rec_proc *p = (const struct rec_proc *)h;

		out->proc.kind = (enum agent_proc_kind)h->flags;
		out->proc.pid = p->pid;
		out->proc.ppid = p->ppid;
		out->proc.tid = p->tid;
		out->proc.exit_code = p->exit_code;
		out->proc.cgroup_id = p->cgroup_id;
		memcpy(out->proc.comm, p->comm, sizeof(p->comm));
		out->proc.filename = p->filename;
		break;
	}
	default: {
		const struct rec_blob *b = (const struct rec_blob *)h;

		out->blob.data = b->data;
		out->blob.len = b->data_len;
		break;
	}
	}
}

int agent_recorder_foreach(struct agent_recorder *r, int64_t from_ns, int64_t to_ns,
			   agent_recorder_visit_cb cb, void *ctx)
{
	struct agent_record rec;
	int ret = 0;

	pthread_mutex_lock(&r->mu);
	for (struct chunk *c = r->head; c && !ret; c = c->next) {
		size_t off = 0;

		if (!c->nrec || c->max_ts < from_ns || c->min_ts >= to_ns)
			continue;
		while (off < c->used && !ret) {
			const struct rec_hdr *h = (const struct rec_hdr *)(c->data + off);

			off += h->len;
			if (h->ts < from_ns || h->ts >= to_ns)
				continue;
			to_record(r, h, &rec);
			ret = cb(ctx, &rec);
		}
	}
	pthread_mutex_unlock(&r->mu);
	return ret;
}

static void stats_locked(struct agent_recorder *r, struct agent_recorder_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->cap_bytes = r->cap;
	st->bytes_used = used_bytes(r);
	st->chunk_bytes = r->chunk_bytes;
	st->stack_bytes = r->stack_bytes;
	st->records = r->nrecords;
	st->stacks = r->nstacks;
	st->dropped_records = r->dropped;
	st->rejected = r->rejected;
	st->samples_added = r->samples_added;
	st->stack_hits = r->stack_hits;
	if (r->nrecords) {
		int64_t lo = INT64_MAX, hi = INT64_MIN;

		for (struct chunk *c = r->head; c; c = c->next) {
			if (!c->nrec)
				continue;
			if (c->min_ts < lo)
				lo = c->min_ts;
			if (c->max_ts > hi)
				hi = c->max_ts;
		}
		st->oldest_ns = lo;
		st->newest_ns = hi;
		st->seconds = (double)(hi - lo) / 1e9;
	}
}

void agent_recorder_stats(struct agent_recorder *r, struct agent_recorder_stats *st)
{
	pthread_mutex_lock(&r->mu);
	stats_locked(r, st);
	pthread_mutex_unlock(&r->mu);
}

double agent_recorder_seconds(struct agent_recorder *r)
{
	struct agent_recorder_stats st;

	agent_recorder_stats(r, &st);
	return st.seconds;
}

size_t agent_recorder_bytes(struct agent_recorder *r)
{
	size_t n;

	pthread_mutex_lock(&r->mu);
	n = used_bytes(r);
	pthread_mutex_unlock(&r->mu);
	return n;
}

int agent_recorder_new(size_t cap_bytes, struct agent_recorder **out)
{
	struct agent_recorder *r;
	size_t cs;

	if (!cap_bytes)
		cap_bytes = AGENT_RECORDER_DEFAULT_CAP;
	if (cap_bytes < MIN_CAP)
		cap_bytes = MIN_CAP;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if (pthread_mutex_init(&r->mu, NULL) != 0) {
		free(r);
		return -ENOMEM;
	}
	r->cap = cap_bytes;
	/* 1/256 of the cap per chunk, 4..64 KiB (minus the malloc header). */
	cs = cap_bytes / 256;
	if (cs < 4096)
		cs = 4096;
	if (cs > (64u << 10))
		cs = 64u << 10;
	r->chunk_size = cs - sizeof(struct chunk) - 16;
	r->free_head = NO_ID;
	*out = r;
	return 0;
}

void agent_recorder_free(struct agent_recorder *r)
{
	if (!r)
		return;
	while (r->head)
		chunk_drop_oldest(r);
	free(r->ents);
	free(r->buckets);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
