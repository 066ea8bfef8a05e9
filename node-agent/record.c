/* record.c: `spikehound-agent record` (sample for N seconds, print folded
 * stacks or JSON) and the recorder feed/summary helpers it shares with the
 * daemon. */
#include "record.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fsutil.h"
#include "log.h"
#include "timeutil.h"

#define FOLD_BUF (64u << 10)
#define NO_IDX UINT32_MAX

/* ---- feed callbacks ---- */

int agent_record_feed_sample_cb(void *ctx, const struct sh_sample_event *ev)
{
	struct agent_record_feed *feed = ctx;
	uint16_t kd = ev->kstack_depth > SH_MAX_STACK_DEPTH ? SH_MAX_STACK_DEPTH : ev->kstack_depth;
	uint16_t ud = ev->ustack_depth > SH_MAX_STACK_DEPTH ? SH_MAX_STACK_DEPTH : ev->ustack_depth;

	if (agent_recorder_add_sample(feed->rec, (int64_t)ev->hdr.ts_ns, ev->hdr.cpu, ev->pid,
				      ev->tid, ev->cgroup_id, ev->comm, ev->hdr.flags,
				      (const uint64_t *)ev->kstack, kd, (const uint64_t *)ev->ustack, ud) < 0)
		feed->rejected++;
	if (feed->sym && ud && ev->pid) {
		struct agent_frame_id ids[SH_MAX_STACK_DEPTH];
		bool have_ids = ev->ubuild_depth == ud; /* else the two walks differ */

		for (uint16_t i = 0; have_ids && i < ud; i++) {
			const struct sh_ubuild_frame *b = &ev->ubuild[i];

			if (b->status == SH_UBUILD_VALID) {
				memcpy(ids[i].build_id, b->build_id, SH_BUILD_ID_SIZE);
				ids[i].build_id_len = SH_BUILD_ID_SIZE;
				ids[i].file_offset = b->offset;
			} else {
				ids[i].build_id_len = 0;
				ids[i].file_offset = 0;
			}
		}
		/* once the maps are cached, the kernel's build ids are not needed */
		if (agent_symbolizer_note_stack(feed->sym, ev->pid, (int64_t)ev->hdr.ts_ns,
						(const uint64_t *)ev->ustack, have_ids ? ids : NULL,
						ud) == 1)
			return AGENT_SAMPLER_PID_MAPPED;
	}
	return 0;
}

int agent_record_feed_proc_cb(void *ctx, const struct sh_proc_event *ev)
{
	struct agent_record_feed *feed = ctx;
	int64_t ts = (int64_t)ev->hdr.ts_ns;
	char comm[SH_TASK_COMM_LEN + 1], fname[SH_FILENAME_LEN + 1];

	memcpy(comm, ev->comm, SH_TASK_COMM_LEN);
	comm[SH_TASK_COMM_LEN] = '\0';
	fname[0] = '\0';
	if (ev->hdr.type == SH_EVENT_EXEC) {
		memcpy(fname, ev->filename, SH_FILENAME_LEN);
		fname[SH_FILENAME_LEN] = '\0';
	}
	if (agent_recorder_add_proc(feed->rec, ts, ev->hdr.cpu, (enum agent_proc_kind)ev->hdr.type,
				    ev->pid, ev->ppid, ev->tid, ev->exit_code, ev->cgroup_id, comm,
				    fname) < 0)
		feed->rejected++;
	if (feed->sym && ev->hdr.type == SH_EVENT_EXEC) {
		agent_symbolizer_note_exe(feed->sym, fname);
		/* the kernel forgot the pid at exec; user space may have marked it
		 * again meanwhile, from maps read before the exec */
		if (agent_symbolizer_pid_exec(feed->sym, ev->pid, ts) == 1)
			return AGENT_SAMPLER_PID_MAPPED;
	} else if (feed->sym && ev->hdr.type == SH_EVENT_EXIT) {
		agent_symbolizer_pid_exit(feed->sym, ev->pid, ts);
	}
	return 0;
}

/* ---- folding ---- */

static size_t append(char *buf, size_t len, size_t pos, const char *s)
{
	while (*s && pos + 1 < len)
		buf[pos++] = *s++;
	buf[pos] = '\0';
	return pos;
}

size_t agent_fold_stack(struct agent_symbolizer *sym, const struct agent_stack *stack,
			int64_t ts_ns, char *buf, size_t len)
{
	char frame[512], comm[17];
	struct agent_frame f;
	size_t pos = 0;

	if (!len)
		return 0;
	memcpy(comm, stack->comm, 16);
	comm[16] = '\0';
	for (char *c = comm; *c; c++)
		if (*c == ';' || *c == ' ' || (unsigned char)*c < 0x20)
			*c = '_';
	buf[0] = '\0';
	pos = append(buf, len, pos, comm[0] ? comm : "[unknown]");
	for (int i = stack->udepth - 1; i >= 0; i--) {
		uint64_t a = stack->uips[i] - (i > 0 ? 1 : 0);

		if (sym)
			agent_symbolize_user(sym, stack->pid, ts_ns, a, &f);
		else
			memset(&f, 0, sizeof(f));
		agent_frame_format(&f, frame, sizeof(frame));
		pos = append(buf, len, pos, ";");
		pos = append(buf, len, pos, frame);
	}
	for (int i = stack->kdepth - 1; i >= 0; i--) {
		uint64_t a = stack->kips[i] - (i > 0 ? 1 : 0);

		if (sym) {
			agent_symbolize_kernel(sym, a, &f);
		} else {
			memset(&f, 0, sizeof(f));
			f.kernel = true;
		}
		agent_frame_format(&f, frame, sizeof(frame));
		pos = append(buf, len, pos, ";");
		pos = append(buf, len, pos, frame);
	}
	return pos;
}

/* fold_map: distinct strings with counts (entries in insertion order,
 * an open-addressing index over them), plus a stack id -> entry cache. */
struct fold_ent {
	char *s;
	uint64_t hash;
	uint64_t count;
	uint32_t pid; /* for per-process counts */
	char comm[16];
};

struct fold_map {
	struct fold_ent *v;
	size_t n, cap;
	uint32_t *idx;
	size_t nidx;
	uint32_t *by_id; /* stack id -> entry index + 1 */
	size_t nby_id;
	struct agent_symbolizer *sym;
	char *buf;
	int err;
	bool by_pid;
	uint64_t *cpu_samples; /* per CPU, optional */
	uint64_t *cpu_busy;    /* per CPU, samples not of the idle task (pid 0) */
	size_t ncpu;
};

static uint64_t str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void fold_map_fini(struct fold_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].s);
	free(m->v);
	free(m->idx);
	free(m->by_id);
	free(m->buf);
	free(m->cpu_samples);
	free(m->cpu_busy);
	memset(m, 0, sizeof(*m));
}

static int fold_map_reindex(struct fold_map *m)
{
	size_t nidx = m->nidx ? m->nidx * 2 : 1024;
	uint32_t *idx = malloc(nidx * sizeof(*idx));

	if (!idx)
		return -ENOMEM;
	memset(idx, 0xff, nidx * sizeof(*idx));
	for (size_t i = 0; i < m->n; i++) {
		size_t j = m->v[i].hash & (nidx - 1);

		while (idx[j] != NO_IDX)
			j = (j + 1) & (nidx - 1);
		idx[j] = (uint32_t)i;
	}
	free(m->idx);
	m->idx = idx;
	m->nidx = nidx;
	return 0;
}

/* fold_map_find returns the index of the entry for key (a string, or a pid
 * when by_pid), creating it; or NO_IDX on allocation failure. */
static uint32_t fold_map_find(struct fold_map *m, const char *s, uint32_t pid)
{
	uint64_t h = m->by_pid ? (uint64_t)pid * 0x9e3779b97f4a7c15ULL : str_hash(s);
	size_t j;

	if ((m->n + 1) * 2 > m->nidx && fold_map_reindex(m) < 0)
		return NO_IDX;
	for (j = h & (m->nidx - 1); m->idx[j] != NO_IDX; j = (j + 1) & (m->nidx - 1)) {
		const struct fold_ent *e = &m->v[m->idx[j]];

		if (e->hash == h && (m->by_pid ? e->pid == pid : strcmp(e->s, s) == 0))
			return m->idx[j];
	}
	if (m->n == m->cap) {
		size_t nc = m->cap ? m->cap * 2 : 256;
		struct fold_ent *v = realloc(m->v, nc * sizeof(*v));

		if (!v)
			return NO_IDX;
		m->v = v;
		m->cap = nc;
	}
	memset(&m->v[m->n], 0, sizeof(m->v[m->n]));
	m->v[m->n].hash = h;
	m->v[m->n].pid = pid;
	if (!m->by_pid) {
		m->v[m->n].s = strdup(s);
		if (!m->v[m->n].s)
			return NO_IDX;
	}
	m->idx[j] = (uint32_t)m->n;
	return (uint32_t)m->n++;
}

static int fold_visit_cb(void *ctx, const struct agent_record *rec)
{
	struct fold_map *m = ctx;
	const struct agent_stack *st;
	uint32_t idx;

	if (rec->type != AGENT_REC_SAMPLE)
		return 0;
	st = rec->sample.stack;
	if (m->cpu_samples && rec->cpu < m->ncpu) {
		m->cpu_samples[rec->cpu]++;
		if (st->pid)
			m->cpu_busy[rec->cpu]++;
	}
	if (m->by_pid) {
		idx = fold_map_find(m, NULL, st->pid);
		if (idx == NO_IDX)
			return m->err = -ENOMEM;
		memcpy(m->v[idx].comm, st->comm, sizeof(st->comm));
		m->v[idx].count++;
		return 0;
	}
	if (st->id >= m->nby_id) {
		size_t n = m->nby_id ? m->nby_id : 1024;
		uint32_t *p;

		while (n <= st->id)
			n *= 2;
		p = realloc(m->by_id, n * sizeof(*p));
		if (!p)
			return m->err = -ENOMEM;
		memset(p + m->nby_id, 0, (n - m->nby_id) * sizeof(*p));
		m->by_id = p;
		m->nby_id = n;
	}
	if (!m->by_id[st->id]) {
		agent_fold_stack(m->sym, st, rec->ts_ns, m->buf, FOLD_BUF);
		idx = fold_map_find(m, m->buf, 0);
		if (idx == NO_IDX)
			return m->err = -ENOMEM;
		m->by_id[st->id] = idx + 1;
	}
	m->v[m->by_id[st->id] - 1].count++;
	return 0;
}

static int fold_ent_cmp(const void *a, const void *b)
{
	const struct fold_ent *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	if (x->s && y->s)
		return strcmp(x->s, y->s);
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

/* fold_range fills m with the samples in [from, to), sorted by count. */
static int fold_range(struct fold_map *m, struct agent_recorder *r, struct agent_symbolizer *sym,
		      int64_t from_ns, int64_t to_ns, bool by_pid)
{
	memset(m, 0, sizeof(*m));
	m->sym = sym;
	m->by_pid = by_pid;
	m->buf = malloc(FOLD_BUF);
	if (!m->buf)
		return -ENOMEM;
	agent_recorder_foreach(r, from_ns, to_ns, fold_visit_cb, m);
	if (m->err)
		return m->err;
	if (m->n)
		qsort(m->v, m->n, sizeof(*m->v), fold_ent_cmp);
	return 0;
}

static uint32_t clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int agent_record_top_stacks(struct agent_recorder *r, struct agent_symbolizer *sym, int64_t from_ns,
			    int64_t to_ns, size_t k, Spikehound__FoldedStack ***out, size_t *n_out)
{
	Spikehound__FoldedStack **v = NULL;
	struct fold_map m;
	size_t n = 0;
	int err;

	*out = NULL;
	*n_out = 0;
	err = fold_range(&m, r, sym, from_ns, to_ns, false);
	if (err < 0)
		goto cleanup;
	n = k && k < m.n ? k : m.n;
	if (!n)
		goto cleanup;
	v = calloc(n, sizeof(*v));
	if (!v) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		Spikehound__FoldedStack init = SPIKEHOUND__FOLDED_STACK__INIT;

		v[i] = malloc(sizeof(*v[i]));
		if (!v[i]) {
			agent_record_free_stacks(v, i);
			v = NULL;
			err = -ENOMEM;
			goto cleanup;
		}
		*v[i] = init;
		v[i]->stack = m.v[i].s; /* ownership moves to the message */
		m.v[i].s = NULL;
		v[i]->count = clamp32(m.v[i].count);
	}
	*out = v;
	*n_out = n;
cleanup:
	fold_map_fini(&m);
	return err;
}

int agent_record_proc_samples(struct agent_recorder *r, int64_t from_ns, int64_t to_ns,
			      Spikehound__ProcessSamples ***out, size_t *n_out)
{
	Spikehound__ProcessSamples **v = NULL;
	struct fold_map m;
	int err;

	*out = NULL;
	*n_out = 0;
	err = fold_range(&m, r, NULL, from_ns, to_ns, true);
	if (err < 0 || !m.n)
		goto cleanup;
	v = calloc(m.n, sizeof(*v));
	if (!v) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (size_t i = 0; i < m.n; i++) {
		Spikehound__ProcessSamples init = SPIKEHOUND__PROCESS_SAMPLES__INIT;

		v[i] = malloc(sizeof(*v[i]));
		if (v[i]) {
			*v[i] = init;
			v[i]->comm = strndup(m.v[i].comm, 16);
		}
		if (!v[i] || !v[i]->comm) {
			if (v[i])
				v[i]->comm = NULL;
			agent_record_free_proc_samples(v, i + 1);
			v = NULL;
			err = -ENOMEM;
			goto cleanup;
		}
		v[i]->pid = (int32_t)m.v[i].pid;
		v[i]->samples = clamp32(m.v[i].count);
	}
	*out = v;
	*n_out = m.n;
cleanup:
	fold_map_fini(&m);
	return err;
}

void agent_record_free_stacks(Spikehound__FoldedStack **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!v[i])
			continue;
		if (v[i]->stack != protobuf_c_empty_string)
			free(v[i]->stack);
		free(v[i]);
	}
	free(v);
}

void agent_record_free_proc_samples(Spikehound__ProcessSamples **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!v[i])
			continue;
		if (v[i]->comm != protobuf_c_empty_string)
			free(v[i]->comm);
		free(v[i]);
	}
	free(v);
}

/* ---- JSON output ---- */

/* json_str prints s as a JSON string; invalid UTF-8 becomes U+FFFD. */
static void json_str(FILE *out, const char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strnlen(s, max);

	fputc('"', out);
	while (p < end) {
		unsigned char c = *p;
		int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
			: (c & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = n > 0 && p + n <= end && !(n == 2 && c < 0xc2);

		for (int i = 1; ok && i < n; i++)
			ok = (p[i] & 0xc0) == 0x80;
		if (!ok) {
			fputs("\\ufffd", out);
			p++;
			continue;
		}
		if (n > 1) {
			fwrite(p, 1, (size_t)n, out);
			p += n;
			continue;
		}
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20)
			fprintf(out, "\\u%04x", c);
		else
			fputc(c, out);
		p++;
	}
	fputc('"', out);
}

struct json_ctx {
	FILE *out;
	struct agent_symbolizer *sym;
	int64_t offset_ns; /* wall - monotonic */
	bool first;
	bool events;
	char frame[512];
};

static void json_time(struct json_ctx *j, int64_t mono)
{
	char tbuf[40];
	int64_t wall = mono + j->offset_ns;

	fprintf(j->out, "\"time\":\"%s\",\"time_ns\":%" PRId64 ",\"mono_ns\":%" PRId64,
		sh_format_time(wall, tbuf, sizeof(tbuf)), wall, mono);
}

static void json_frames(struct json_ctx *j, const struct agent_stack *st, int64_t ts, bool kernel)
{
	int depth = kernel ? st->kdepth : st->udepth;
	const uint64_t *ips = kernel ? st->kips : st->uips;
	struct agent_frame f;

	fputc('[', j->out);
	for (int i = 0; i < depth; i++) {
		uint64_t a = ips[i] - (i > 0 ? 1 : 0);

		if (kernel)
			agent_symbolize_kernel(j->sym, a, &f);
		else
			agent_symbolize_user(j->sym, st->pid, ts, a, &f);
		agent_frame_format(&f, j->frame, sizeof(j->frame));
		fprintf(j->out, "%s{\"addr\":\"0x%" PRIx64 "\",\"name\":", i ? "," : "", ips[i]);
		json_str(j->out, j->frame, sizeof(j->frame));
		if (f.name)
			fprintf(j->out, ",\"offset\":%" PRIu64, f.sym_offset + (i > 0 ? 1 : 0));
		if (!kernel && f.module) {
			fputs(",\"module\":", j->out);
			json_str(j->out, f.module, 4096);
			fprintf(j->out, ",\"file_offset\":\"0x%" PRIx64 "\"", f.file_offset + (i > 0 ? 1 : 0));
			if (f.build_id_len) {
				fputs(",\"build_id\":\"", j->out);
				for (int b = 0; b < f.build_id_len; b++)
					fprintf(j->out, "%02x", f.build_id[b]);
				fputc('"', j->out);
			}
		}
		fputc('}', j->out);
	}
	fputc(']', j->out);
}

static int json_visit_cb(void *ctx, const struct agent_record *rec)
{
	struct json_ctx *j = ctx;
	static const char *const kinds[] = { [AGENT_PROC_EXEC] = "exec", [AGENT_PROC_FORK] = "fork",
					     [AGENT_PROC_EXIT] = "exit" };

	if (j->events ? rec->type != AGENT_REC_PROC : rec->type != AGENT_REC_SAMPLE)
		return 0;
	fputs(j->first ? "\n    {" : ",\n    {", j->out);
	j->first = false;
	json_time(j, rec->ts_ns);
	if (rec->type == AGENT_REC_SAMPLE) {
		const struct agent_stack *st = rec->sample.stack;

		fprintf(j->out, ",\"cpu\":%u,\"pid\":%u,\"tid\":%u,\"comm\":", rec->cpu, st->pid,
			rec->sample.tid);
		json_str(j->out, st->comm, sizeof(st->comm));
		fprintf(j->out, ",\"cgroup_id\":%" PRIu64 ",\"flags\":%u,\"kernel_stack\":",
			st->cgroup_id, rec->sample.flags);
		json_frames(j, st, rec->ts_ns, true);
		fputs(",\"user_stack\":", j->out);
		json_frames(j, st, rec->ts_ns, false);
	} else {
		int kind = rec->proc.kind;

		fprintf(j->out, ",\"type\":\"%s\",\"cpu\":%u,\"pid\":%u,\"ppid\":%u,\"tid\":%u,\"comm\":",
			kind >= AGENT_PROC_EXEC && kind <= AGENT_PROC_EXIT ? kinds[kind] : "unknown",
			rec->cpu, rec->proc.pid, rec->proc.ppid, rec->proc.tid);
		json_str(j->out, rec->proc.comm, sizeof(rec->proc.comm));
		fprintf(j->out, ",\"cgroup_id\":%" PRIu64, rec->proc.cgroup_id);
		if (kind == AGENT_PROC_EXEC) {
			fputs(",\"filename\":", j->out);
			json_str(j->out, rec->proc.filename, 4096);
		}
		if (kind == AGENT_PROC_EXIT)
			fprintf(j->out, ",\"exit_code\":%d", rec->proc.exit_code);
	}
	fputc('}', j->out);
	return 0;
}

/* ---- the command ---- */

static volatile sig_atomic_t stop_requested;

static void stop_cb(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: spikehound-agent record [--seconds N] [--folded | --json] [--hz F]\n"
		   "                               [--cpu C] [--pid P] [--memory MIB]\n"
		   "                               [--stats-every SECONDS]\n"
		   "Samples every CPU's stacks (kernel and user) for N seconds and prints\n"
		   "folded stacks (flamegraph.pl / speedscope) or JSON to stdout.\n"
		   "--stats-every prints a line of recorder, memory and symbolizer figures\n"
		   "to stderr every SECONDS while recording.\n");
}

/* self_rss_kb returns this process's VmRSS in KiB (0 when unknown). */
static unsigned long self_rss_kb(void)
{
	char buf[4096], *p;
	unsigned long kb = 0;

	if (sh_read_file("/proc/self/status", buf, sizeof(buf)) <= 0)
		return 0;
	p = strstr(buf, "\nVmRSS:");
	if (p)
		sscanf(p + 7, "%lu", &kb);
	return kb;
}

/* print_stats prints one line of what the recording holds and costs so
 * far; elapsed_s is the time since recording started. */
static void print_stats(struct agent_recorder *rec, struct agent_symbolizer *sym,
			struct agent_sampler *sampler, double elapsed_s)
{
	struct agent_recorder_stats rst;
	struct agent_symbolizer_stats sst;
	struct agent_sampler_health h;

	agent_recorder_stats(rec, &rst);
	agent_symbolizer_stats(sym, &sst);
	agent_sampler_health(sampler, &h);
	fprintf(stderr,
		"record: stats t=%.1fs rss_kb=%lu bytes_used=%zu cap=%zu stack_bytes=%zu stacks=%zu"
		" records=%zu held_s=%.1f dropped=%" PRIu64 " rejected=%" PRIu64
		" samples=%" PRIu64 " lost=%" PRIu64 " proc_lost=%" PRIu64
		" elf_files=%zu elf_bytes=%zu pid_maps=%zu maps_bytes=%zu"
		" elf_loads=%" PRIu64 " maps_loads=%" PRIu64 " build_ids=%zu"
		" frames_build_id=%" PRIu64 " frames_ip_only=%" PRIu64 "\n",
		elapsed_s, self_rss_kb(), rst.bytes_used, rst.cap_bytes, rst.stack_bytes,
		rst.stacks, rst.records, rst.seconds, rst.dropped_records, rst.rejected, h.samples,
		h.samples_lost, h.proc_lost, sst.elf_files, sst.elf_bytes, sst.pid_maps,
		sst.maps_bytes, sst.elf_loads, sst.maps_loads, sst.build_ids, sst.frames_build_id,
		sst.frames_ip_only);
}

static int64_t cpu_time_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * SH_NS_PER_SEC +
	       ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static int64_t clock_offset_ns(void)
{
	int64_t best = 0, best_gap = INT64_MAX;

	for (int i = 0; i < 3; i++) {
		int64_t m0 = sh_now_mono_ns(), w = sh_now_wall_ns(), m1 = sh_now_mono_ns();

		if (m1 - m0 < best_gap) {
			best_gap = m1 - m0;
			best = w - (m0 + (m1 - m0) / 2);
		}
	}
	return best;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

int agent_record_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 's' }, { "folded", no_argument, NULL, 'f' },
		{ "json", no_argument, NULL, 'j' },	     { "hz", required_argument, NULL, 'F' },
		{ "cpu", required_argument, NULL, 'c' },     { "pid", required_argument, NULL, 'p' },
		{ "memory", required_argument, NULL, 'm' },  { "help", no_argument, NULL, 'h' },
		{ "stats-every", required_argument, NULL, 'S' }, { NULL, 0, NULL, 0 },
	};
	struct agent_sampler_opts sopts = { .cpu = -1 };
	struct agent_symbolizer *sym = NULL;
	struct agent_recorder *rec = NULL;
	struct agent_sampler *sampler = NULL;
	struct agent_record_feed feed = { 0 };
	struct agent_sampler_health h;
	struct agent_recorder_stats rst;
	struct agent_symbolizer_stats sst;
	struct sigaction sa, old_int, old_term;
	long seconds = 10, hz = 99, cpu = -1, pid = 0, mib = 32, stats_every = 0;
	bool json = false, handlers = false;
	int64_t start, end, now, cpu0, offset, next_stats = INT64_MAX;
	double wall_s, cpu_pct;
	struct fold_map m = { 0 };
	int opt, err, status = 1;

	optind = 0; /* glibc: full re-initialization, main() may have used getopt */
	while ((opt = getopt_long(argc, argv, "s:fjF:c:p:m:S:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			if (parse_long(optarg, 1, 86400, &seconds) < 0)
				goto bad_arg;
			break;
		case 'f':
			json = false;
			break;
		case 'j':
			json = true;
			break;
		case 'F':
			if (parse_long(optarg, 1, 100000, &hz) < 0)
				goto bad_arg;
			break;
		case 'c':
			if (parse_long(optarg, 0, 1 << 20, &cpu) < 0)
				goto bad_arg;
			break;
		case 'p':
			if (parse_long(optarg, 1, INT32_MAX, &pid) < 0)
				goto bad_arg;
			break;
		case 'm':
			if (parse_long(optarg, 1, 1 << 16, &mib) < 0)
				goto bad_arg;
			break;
		case 'S':
			if (parse_long(optarg, 1, 86400, &stats_every) < 0)
				goto bad_arg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "record: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	sopts.hz = (unsigned)hz;
	sopts.cpu = (int)cpu;
	sopts.pid = (uint32_t)pid;

	err = agent_symbolizer_new(NULL, &sym);
	if (err < 0) {
		sh_err("could not create symbolizer: %s", strerror(-err));
		goto cleanup;
	}
	if (!agent_symbolizer_kernel_symbols(sym))
		sh_warn("no kernel symbols from \"/proc/kallsyms\": kernel frames stay unresolved");
	err = agent_recorder_new((size_t)mib << 20, &rec);
	if (err < 0) {
		sh_err("could not create flight recorder: %s", strerror(-err));
		goto cleanup;
	}
	feed.rec = rec;
	feed.sym = sym;
	err = agent_sampler_new(&sopts, agent_record_feed_sample_cb, agent_record_feed_proc_cb, &feed,
				&sampler);
	if (err < 0) {
		sh_err("could not start the sampler: %s%s", strerror(-err),
		       err == -EPERM ? " (run as root)" : "");
		goto cleanup;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop_cb;
	sigemptyset(&sa.sa_mask);
	stop_requested = 0;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	handlers = true;

	offset = clock_offset_ns();
	cpu0 = cpu_time_ns();
	start = sh_now_mono_ns();
	end = start + seconds * SH_NS_PER_SEC;
	if (stats_every) {
		print_stats(rec, sym, sampler, 0.0);
		next_stats = start + stats_every * SH_NS_PER_SEC;
	}
	while (!stop_requested && (now = sh_now_mono_ns()) < end) {
		int64_t left_ms = (end - now) / SH_NS_PER_MS + 1;

		if (now >= next_stats) {
			print_stats(rec, sym, sampler, (double)(now - start) / 1e9);
			next_stats += stats_every * SH_NS_PER_SEC;
		}

		err = agent_sampler_poll(sampler, left_ms < 200 ? (int)left_ms : 200);
		if (err < 0 && err != -EINTR) {
			sh_err("could not poll the sampler: %s", strerror(-err));
			goto cleanup;
		}
	}
	agent_sampler_poll(sampler, 0); /* drain */
	now = sh_now_mono_ns();
	if (stats_every)
		print_stats(rec, sym, sampler, (double)(now - start) / 1e9);
	wall_s = (double)(now - start) / 1e9;
	cpu_pct = 100.0 * (double)(cpu_time_ns() - cpu0) / (double)(now - start);
	agent_sampler_health(sampler, &h);
	agent_sampler_free(sampler);
	sampler = NULL;

	if (json) {
		struct json_ctx j = { .out = stdout, .sym = sym, .offset_ns = offset, .first = true };
		char tbuf[40];

		printf("{\"clock_offset_ns\":%" PRId64 ",\"hz\":%ld,\"start\":\"%s\",\"seconds\":%.3f,"
		       "\n  \"samples\":[",
		       offset, hz, sh_format_time(start + offset, tbuf, sizeof(tbuf)), wall_s);
		agent_recorder_foreach(rec, INT64_MIN, INT64_MAX, json_visit_cb, &j);
		printf("\n  ],\n  \"events\":[");
		j.first = true;
		j.events = true;
		agent_recorder_foreach(rec, INT64_MIN, INT64_MAX, json_visit_cb, &j);
		printf("\n  ],\n  \"health\":{\"samples\":%" PRIu64 ",\"samples_lost\":%" PRIu64
		       ",\"stack_errors\":%" PRIu64 ",\"user_stacks_depth1\":%" PRIu64 "}}\n",
		       h.samples, h.samples_lost, h.stack_errors, h.user_stacks_depth1);
	} else {
		err = fold_range(&m, rec, sym, INT64_MIN, INT64_MAX, false);
		if (err < 0) {
			sh_err("could not fold stacks: %s", strerror(-err));
			goto cleanup;
		}
		for (size_t i = 0; i < m.n; i++)
			printf("%s %" PRIu64 "\n", m.v[i].s, m.v[i].count);
		fold_map_fini(&m);
	}
	if (fflush(stdout) != 0) {
		sh_err("could not write output: %s", strerror(errno));
		goto cleanup;
	}

	/* Statistics: per-CPU sample rates, health, recorder, cost. */
	memset(&m, 0, sizeof(m));
	m.ncpu = 4096;
	m.cpu_samples = calloc(m.ncpu, sizeof(*m.cpu_samples));
	m.cpu_busy = calloc(m.ncpu, sizeof(*m.cpu_busy));
	m.by_pid = true;
	agent_recorder_stats(rec, &rst);
	if (m.cpu_samples && m.cpu_busy) {
		/* Over what the recorder still holds when it had to drop. */
		double span = rst.dropped_records && rst.seconds > 0 ? rst.seconds : wall_s;

		agent_recorder_foreach(rec, INT64_MIN, INT64_MAX, fold_visit_cb, &m);
		for (size_t c = 0; c < m.ncpu; c++)
			if (m.cpu_samples[c])
				fprintf(stderr,
					"record: cpu %zu: %" PRIu64 " samples, %.1f/s; %" PRIu64
					" not idle, %.1f/s\n",
					c, m.cpu_samples[c], (double)m.cpu_samples[c] / span,
					m.cpu_busy[c], (double)m.cpu_busy[c] / span);
	}
	fold_map_fini(&m);
	agent_symbolizer_stats(sym, &sst);
	fprintf(stderr,
		"record: user frames sampled: %" PRIu64 " with build id + offset, %" PRIu64
		" address only, %" PRIu64 " unmapped (%" PRIu64
		" build-id stack reads failed); symbolized: %" PRIu64
		" resolved, %" PRIu64 " build id or file without an ELF file found, %" PRIu64
		" without a mapping, %" PRIu64 " other (no file or symbol there)\n"
		"record: symbolizer: %" PRIu64 " maps reads, %" PRIu64 " ELF files parsed,"
		" %zu build ids indexed, %" PRIu64 " exec'd files read\n",
		sst.frames_build_id, sst.frames_ip_only, sst.frames_unmapped, h.ubuild_errors,
		sst.resolved, sst.no_file, sst.no_mapping, sst.other, sst.maps_loads, sst.elf_loads,
		sst.build_ids, sst.exe_keys);
	fprintf(stderr,
		"record: %.1f s, %" PRIu64 " samples, %" PRIu64 " lost, %" PRIu64
		" stack errors, %" PRIu64 " user stacks of depth 1, %" PRIu64 " lifecycle lost\n"
		"record: recorder %zu bytes (%zu in %zu stacks), %zu records, %.1f s held, %.0f bytes/s\n"
		"record: agent cpu %.2f%% of one CPU while recording\n",
		wall_s, h.samples, h.samples_lost, h.stack_errors, h.user_stacks_depth1, h.proc_lost,
		rst.bytes_used, rst.stack_bytes, rst.stacks, rst.records, rst.seconds,
		rst.seconds > 0 ? (double)rst.bytes_used / rst.seconds : 0.0, cpu_pct);
	status = 0;
	goto cleanup;
bad_arg:
	fprintf(stderr, "record: bad value \"%s\" for an option\n", optarg);
	usage(stderr);
	return 2;
cleanup:
	if (handlers) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
	}
	fold_map_fini(&m);
	agent_sampler_free(sampler);
	agent_recorder_free(rec);
	agent_symbolizer_free(sym);
	return status;
}
