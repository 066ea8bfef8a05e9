/* capture.c: taking captures from the flight recorder (see capture.h). */
#include "capture.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "capwire.h"
#include "log.h"
#include "timeutil.h"

#define DEFAULT_CHUNK_BYTES (256u << 10)
#define MAX_CHUNK_BYTES (4u << 20)

struct stack_ent {
	uint32_t id;   /* recorder stack id */
	uint32_t idx;  /* index in the capture's stacks */
	UT_hash_handle hh;
};

struct vec {
	void **v;
	size_t n, cap;
};

struct take {
	const struct agent_capture_src *src;
	int64_t from_mono, to_mono;
	size_t raw_limit, raw_est;
	bool truncated;
	int err;
	struct stack_ent *stacks_by_id;
	struct vec stacks, samples, events, metrics, procs;
	int64_t first_mono, last_mono;
};

static int vec_push(struct vec *v, void *p)
{
	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 256;
		void **nv = realloc(v->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = nc;
	}
	v->v[v->n++] = p;
	return 0;
}

static char *xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

void agent_capture_sha256_hex(const void *data, size_t len, char out[65])
{
	sh_capwire_sha256_hex(data, len, out); /* "" when it fails */
}

/* stack_new makes the CaptureStack of st; NULL on allocation failure. */
static Spikehound__CaptureStack *stack_new(struct take *t, const struct agent_stack *st,
					   int64_t ts_mono, uint32_t idx)
{
	Spikehound__CaptureStack *cs = calloc(1, sizeof(*cs));
	struct agent_frame f;
	char frame[512], bid[2 * AGENT_BUILD_ID_MAX + 1];
	size_t est = 16;

	if (!cs)
		return NULL;
	spikehound__capture_stack__init(cs);
	cs->id = idx;
	cs->pid = (int32_t)st->pid;
	memcpy(frame, st->comm, 16);
	frame[16] = '\0';
	cs->comm = xstrdup(frame);
	cs->kernel_frames = calloc(st->kdepth ? st->kdepth : 1, sizeof(char *));
	cs->user_frames = calloc(st->udepth ? st->udepth : 1, sizeof(char *));
	cs->user_build_ids = calloc(st->udepth ? st->udepth : 1, sizeof(char *));
	cs->user_offsets = calloc(st->udepth ? st->udepth : 1, sizeof(uint64_t));
	if (!cs->comm || !cs->kernel_frames || !cs->user_frames || !cs->user_build_ids ||
	    !cs->user_offsets)
		goto fail;
	for (uint16_t i = 0; i < st->kdepth; i++) {
		uint64_t a = st->kips[i] - (i > 0 ? 1 : 0);

		memset(&f, 0, sizeof(f));
		f.kernel = true;
		if (t->src->sym)
			agent_symbolize_kernel(t->src->sym, a, &f);
		agent_frame_format(&f, frame, sizeof(frame));
		if (!(cs->kernel_frames[cs->n_kernel_frames++] = xstrdup(frame)))
			goto fail;
		est += strlen(frame) + 2;
	}
	for (uint16_t i = 0; i < st->udepth; i++) {
		uint64_t a = st->uips[i] - (i > 0 ? 1 : 0);

		memset(&f, 0, sizeof(f));
		if (t->src->sym)
			agent_symbolize_user(t->src->sym, st->pid, ts_mono, a, &f);
		agent_frame_format(&f, frame, sizeof(frame));
		sh_capwire_hex(f.build_id, f.build_id_len, bid);
		cs->user_offsets[i] = f.module ? f.file_offset : st->uips[i];
		if (!(cs->user_frames[i] = xstrdup(frame)) || !(cs->user_build_ids[i] = xstrdup(bid)))
			goto fail;
		cs->n_user_frames = cs->n_user_build_ids = cs->n_user_offsets = i + 1u;
		est += strlen(frame) + strlen(bid) + 14;
	}
	t->raw_est += est;
	return cs;
fail:
	spikehound__capture_stack__free_unpacked(cs, NULL);
	return NULL;
}

static int add_sample(struct take *t, const struct agent_record *rec)
{
	const struct agent_stack *st = rec->sample.stack;
	struct stack_ent *e;
	Spikehound__CaptureSample *s;

	HASH_FIND(hh, t->stacks_by_id, &st->id, sizeof(st->id), e);
	if (!e) {
		Spikehound__CaptureStack *cs;

		if (!(e = calloc(1, sizeof(*e))))
			return -ENOMEM;
		e->id = st->id;
		e->idx = (uint32_t)t->stacks.n;
		if (!(cs = stack_new(t, st, rec->ts_ns, e->idx)) || vec_push(&t->stacks, cs) != 0) {
			if (cs)
				spikehound__capture_stack__free_unpacked(cs, NULL);
			free(e);
			return -ENOMEM;
		}
		HASH_ADD(hh, t->stacks_by_id, id, sizeof(e->id), e);
	}
	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	spikehound__capture_sample__init(s);
	s->time_ns = rec->ts_ns + t->src->wall_minus_mono_ns;
	s->cpu = rec->cpu;
	s->tid = (int32_t)rec->sample.tid;
	s->stack_id = e->idx;
	t->raw_est += 20;
	if (vec_push(&t->samples, s) != 0) {
		free(s);
		return -ENOMEM;
	}
	return 0;
}

static int add_proc(struct take *t, const struct agent_record *rec)
{
	Spikehound__CaptureProcEvent *p = calloc(1, sizeof(*p));
	char comm[17];

	if (!p)
		return -ENOMEM;
	spikehound__capture_proc_event__init(p);
	p->time_ns = rec->ts_ns + t->src->wall_minus_mono_ns;
	p->kind = xstrdup(rec->proc.kind == AGENT_PROC_EXEC   ? "exec"
			  : rec->proc.kind == AGENT_PROC_FORK ? "fork"
							      : "exit");
	p->pid = (int32_t)rec->proc.pid;
	p->ppid = (int32_t)rec->proc.ppid;
	p->tid = (int32_t)rec->proc.tid;
	memcpy(comm, rec->proc.comm, 16);
	comm[16] = '\0';
	p->comm = xstrdup(comm);
	p->filename = xstrdup(rec->proc.filename);
	p->exit_code = rec->proc.exit_code;
	if (!p->comm || !p->filename || !p->kind || vec_push(&t->procs, p) != 0) {
		spikehound__capture_proc_event__free_unpacked(p, NULL);
		return -ENOMEM;
	}
	t->raw_est += 40 + strlen(p->filename);
	return 0;
}

static int add_blob(struct take *t, const struct agent_record *rec)
{
	if (rec->type == AGENT_REC_METRICS) {
		Spikehound__MetricSecond *m =
			spikehound__metric_second__unpack(NULL, rec->blob.len, rec->blob.data);

		if (!m)
			return 0; /* not ours to judge: skip */
		if (vec_push(&t->metrics, m) != 0) {
			spikehound__metric_second__free_unpacked(m, NULL);
			return -ENOMEM;
		}
	} else {
		Spikehound__SpikeEvent *e =
			spikehound__spike_event__unpack(NULL, rec->blob.len, rec->blob.data);

		if (!e)
			return 0;
		if (vec_push(&t->events, e) != 0) {
			spikehound__spike_event__free_unpacked(e, NULL);
			return -ENOMEM;
		}
	}
	t->raw_est += rec->blob.len + 4;
	return 0;
}

static int visit_cb(void *ctx, const struct agent_record *rec)
{
	struct take *t = ctx;
	int rv = 0;

	if (t->raw_est > t->raw_limit) {
		t->truncated = true;
		return 1; /* stop: the newest part is left out */
	}
	if (!t->first_mono)
		t->first_mono = rec->ts_ns;
	t->last_mono = rec->ts_ns;
	switch (rec->type) {
	case AGENT_REC_SAMPLE:
		rv = add_sample(t, rec);
		break;
	case AGENT_REC_PROC:
		rv = add_proc(t, rec);
		break;
	case AGENT_REC_METRICS:
	case AGENT_REC_SPIKE:
		rv = add_blob(t, rec);
		break;
	}
	if (rv < 0) {
		t->err = rv;
		return 1;
	}
	return 0;
}

static void take_fini(struct take *t)
{
	struct stack_ent *e, *tmp;

	HASH_ITER(hh, t->stacks_by_id, e, tmp) {
		HASH_DEL(t->stacks_by_id, e);
		free(e);
	}
	for (size_t i = 0; i < t->stacks.n; i++)
		spikehound__capture_stack__free_unpacked(t->stacks.v[i], NULL);
	for (size_t i = 0; i < t->samples.n; i++)
		free(t->samples.v[i]);
	for (size_t i = 0; i < t->procs.n; i++)
		spikehound__capture_proc_event__free_unpacked(t->procs.v[i], NULL);
	for (size_t i = 0; i < t->metrics.n; i++)
		spikehound__metric_second__free_unpacked(t->metrics.v[i], NULL);
	for (size_t i = 0; i < t->events.n; i++)
		spikehound__spike_event__free_unpacked(t->events.v[i], NULL);
	free(t->stacks.v);
	free(t->samples.v);
	free(t->procs.v);
	free(t->metrics.v);
	free(t->events.v);
}

int agent_capture_build(const struct agent_capture_src *src, const Spikehound__CaptureRequest *req,
			uint8_t **out, size_t *len, struct agent_capture_result *res)
{
	Spikehound__Capture cap = SPIKEHOUND__CAPTURE__INIT;
	struct agent_recorder_stats rs;
	struct take t = { 0 };
	uint64_t max_bytes = sh_capwire_max_bytes(req, src->default_max_bytes);
	uint8_t *z = NULL;
	size_t raw_len, zlen;
	int rv = 0;

	memset(res, 0, sizeof(*res));
	*out = NULL;
	*len = 0;
	if ((rv = sh_capwire_check_window(req, res->error, sizeof(res->error))) != 0)
		return rv;
	if (!src->rec) {
		snprintf(res->error, sizeof(res->error),
			 "no_recorder: this agent has no flight recorder (BPF unavailable)");
		return -ENODATA;
	}
	agent_recorder_stats(src->rec, &rs);
	t.src = src;
	t.from_mono = req->from_ns - src->wall_minus_mono_ns;
	t.to_mono = req->to_ns - src->wall_minus_mono_ns;
	if (rs.records == 0 || rs.oldest_ns >= t.to_mono || rs.newest_ns < t.from_mono) {
		snprintf(res->error, sizeof(res->error),
			 "window_gone: the recorder holds %.1f s (%.1f s to %.1f s ago), not the window asked for",
			 rs.seconds,
			 rs.records ? (double)(sh_now_mono_ns() - rs.oldest_ns) / 1e9 : 0.0,
			 rs.records ? (double)(sh_now_mono_ns() - rs.newest_ns) / 1e9 : 0.0);
		return -ENODATA;
	}
	t.raw_limit = max_bytes > SIZE_MAX / SH_CAPWIRE_RAW_PER_COMPRESSED
			      ? SIZE_MAX
			      : (size_t)max_bytes * SH_CAPWIRE_RAW_PER_COMPRESSED;
	agent_recorder_foreach(src->rec, t.from_mono, t.to_mono, visit_cb, &t);
	if (t.err) {
		snprintf(res->error, sizeof(res->error), "out of memory while reading the recorder");
		rv = t.err;
		goto out;
	}
	cap.capture_id = req->capture_id ? req->capture_id : "";
	cap.host = (Spikehound__Hello *)src->hello;
	cap.from_ns = req->from_ns;
	cap.to_ns = req->to_ns;
	/* the recording covers the window from the asked start when the
	 * recorder still held older records (idle CPUs leave no sample right
	 * at the start), else from its oldest record */
	agent_recorder_stats(src->rec, &rs);
	if (t.first_mono && rs.records && rs.oldest_ns <= t.from_mono)
		cap.held_from_ns = req->from_ns;
	else
		cap.held_from_ns = t.first_mono ? t.first_mono + src->wall_minus_mono_ns : 0;
	cap.held_to_ns = t.last_mono ? t.last_mono + src->wall_minus_mono_ns : 0;
	cap.trigger = req->trigger ? req->trigger : "";
	cap.truncated = t.truncated;
	cap.sample_hz = src->sample_hz;
	if (sh_capwire_wants(req, "samples")) {
		cap.stacks = (Spikehound__CaptureStack **)t.stacks.v;
		cap.n_stacks = t.stacks.n;
		cap.samples = (Spikehound__CaptureSample **)t.samples.v;
		cap.n_samples = t.samples.n;
	}
	if (sh_capwire_wants(req, "events")) {
		cap.events = (Spikehound__SpikeEvent **)t.events.v;
		cap.n_events = t.events.n;
	}
	if (sh_capwire_wants(req, "metrics")) {
		cap.metrics = (Spikehound__MetricSecond **)t.metrics.v;
		cap.n_metrics = t.metrics.n;
	}
	if (sh_capwire_wants(req, "procs")) {
		cap.procs = (Spikehound__CaptureProcEvent **)t.procs.v;
		cap.n_procs = t.procs.n;
		cap.processes = src->processes;
		cap.n_processes = src->processes ? src->n_processes : 0;
	}
	rv = sh_capwire_compress(&cap, max_bytes, &z, &zlen, &raw_len, res->error,
				 sizeof(res->error));
	if (rv)
		goto out;
	res->samples = cap.n_samples;
	res->stacks = cap.n_stacks;
	res->events = cap.n_events;
	res->metrics = cap.n_metrics;
	res->procs = cap.n_procs;
	res->raw_bytes = raw_len;
	res->compressed_bytes = zlen;
	res->held_from_ns = cap.held_from_ns;
	res->held_to_ns = cap.held_to_ns;
	res->truncated = t.truncated;
	*out = z;
	*len = zlen;
out:
	take_fini(&t);
	return rv;
}

/* spool_chunk spools one chunk message. */
static int spool_chunk(struct agent_spool *spool, const char *host_id, const char *boot_id,
		       Spikehound__CaptureChunk *ch)
{
	Spikehound__AgentMessage m = SPIKEHOUND__AGENT_MESSAGE__INIT;
	uint64_t seq;
	uint8_t *buf;
	size_t len;
	int rv;

	if ((rv = agent_spool_next_seq(spool, boot_id, &seq)) != 0)
		return rv;
	m.host_id = (char *)host_id;
	m.boot_id = (char *)boot_id;
	m.seq = seq;
	m.created_ns = sh_now_wall_ns();
	m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_CHUNK;
	m.chunk = ch;
	len = spikehound__agent_message__get_packed_size(&m);
	if (!(buf = malloc(len)))
		return -ENOMEM;
	spikehound__agent_message__pack(&m, buf);
	rv = agent_spool_append(spool, AGENT_SPOOL_CHUNK, boot_id, seq, buf, len);
	free(buf);
	return rv;
}

int agent_capture_spool(const struct agent_capture_src *src, const Spikehound__CaptureRequest *req,
			struct agent_spool *spool, const char *host_id, const char *boot_id,
			size_t chunk_bytes, struct agent_capture_result *res)
{
	Spikehound__CaptureChunk ch;
	uint8_t *data = NULL;
	size_t len = 0;
	char sha[65];
	int rv;

	if (chunk_bytes == 0)
		chunk_bytes = DEFAULT_CHUNK_BYTES;
	if (chunk_bytes > MAX_CHUNK_BYTES)
		chunk_bytes = MAX_CHUNK_BYTES;
	sh_capwire_chunk_init(&ch, req);
	rv = agent_capture_build(src, req, &data, &len, res);
	if (rv < 0) {
		ch.error = res->error;
		return spool_chunk(spool, host_id, boot_id, &ch);
	}
	agent_capture_sha256_hex(data, len, sha);
	ch.sha256 = sha;
	ch.total = sh_capwire_chunk_count(len, chunk_bytes);
	ch.compressed_bytes = len;
	ch.raw_bytes = res->raw_bytes;
	ch.from_ns = res->held_from_ns;
	ch.to_ns = res->held_to_ns;
	for (uint32_t i = 0; i < ch.total && rv == 0; i++) {
		sh_capwire_chunk_slice(&ch, data, len, chunk_bytes, i);
		rv = spool_chunk(spool, host_id, boot_id, &ch);
	}
	res->chunks = ch.total;
	free(data);
	return rv;
}
