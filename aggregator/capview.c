/* capview.c: viewing a capture — loading the payload and writing folded
 * stacks, pprof, SVG flame graphs, heat maps and a timeline (see
 * capview.h).
 *
 * Inside, a stack is one "key": its frames outermost first, separated by
 * ';', each frame led by one type character — 'p' process (the comm),
 * 'u' user, 'x' unresolved user, 'k' kernel, 'y' unresolved kernel — and
 * cleaned at load (no ';', no control characters, valid UTF-8). Sorting
 * keys frame by frame puts every stack below a frame next to each other,
 * so a flame graph is one pass over the sorted keys, as flamegraph.pl does.
 */
#include "capview.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "htmlout.h"
#include "profile.pb-c.h"
#include "timeutil.h"

#define NO_STACK UINT32_MAX
#define MISSING_KEY "p[missing stack]"
#define MAX_TIME_NS (7258118400LL * SH_NS_PER_SEC) /* 2200-01-01: later times are bogus */

/* --- growing text buffer --- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if (!(p = realloc(b->p, cap))) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_putc(struct sbuf *b, char c)
{
	sb_add(b, &c, 1);
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static __attribute__((format(printf, 2, 3))) void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		sb_add(b, tmp, (size_t)n);
		return;
	}
	{
		char *big = malloc((size_t)n + 1);

		if (!big) {
			b->oom = true;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		sb_add(b, big, (size_t)n);
		free(big);
	}
}

/* --- cleaning untrusted text --- */

#define CL_SEMI 1u  /* ';' becomes '_' */
#define CL_SPACE 2u /* ' ' becomes '_' */

/* utf8_dec decodes one strict UTF-8 character at s (NUL-terminated);
 * returns its length, or 0 when the bytes are not valid UTF-8. */
static size_t utf8_dec(const unsigned char *s, uint32_t *cp)
{
	size_t n, i;
	uint32_t c = s[0], min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if ((c & 0xe0) == 0xc0) {
		n = 2, c &= 0x1f, min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		n = 3, c &= 0x0f, min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		n = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

static bool unsafe_cp(uint32_t c)
{
	return c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == 0x200e || c == 0x200f ||
	       (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) || c == 0xfeff;
}

/* clean appends s to b as valid UTF-8 without unsafe characters (each
 * replaced by '?'), cut after about max bytes. */
static void clean(struct sbuf *b, const char *s, unsigned fl, size_t max)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t start = b->len;

	while (*p && b->len - start < max && !b->oom) {
		uint32_t c;
		size_t n = utf8_dec(p, &c);

		if (n == 0) {
			sb_putc(b, '?');
			p++;
			continue;
		}
		if (unsafe_cp(c))
			sb_putc(b, '?');
		else if ((c == ';' && (fl & CL_SEMI)) || (c == ' ' && (fl & CL_SPACE)))
			sb_putc(b, '_');
		else
			sb_add(b, (const char *)p, n);
		p += n;
	}
}

/* cleaned returns s cleaned (malloc'd; NULL on allocation failure). */
static char *cleaned(const char *s, size_t max)
{
	struct sbuf b = {0};

	sb_add(&b, "", 0);
	clean(&b, s, 0, max);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* put_xml_raw writes untrusted text s cleaned and XML-escaped. */
static void put_xml_raw(FILE *out, const char *s, size_t max)
{
	struct sbuf b = {0};

	clean(&b, s, 0, max);
	if (b.p)
		agg_htmlout_escape(out, b.p, b.len);
	free(b.p);
}

/* --- small helpers --- */

static const char *str_or(const char *s, const char *def)
{
	return s && s[0] ? s : def;
}

/* fmt_clock writes ns as "10:21:07.250" (UTC) into buf (40 bytes). */
static const char *fmt_clock(int64_t ns, char *buf)
{
	if (ns <= 0 || ns > MAX_TIME_NS)
		return "-";
	sh_format_time(ns, buf, 40);
	buf[23] = '\0';
	return buf + 11;
}

/* fmt_time writes ns as "2025-11-22T10:21:07.250Z" into buf (40 bytes). */
static const char *fmt_time(int64_t ns, char *buf)
{
	if (ns <= 0 || ns > MAX_TIME_NS)
		return "-";
	return sh_format_time(ns, buf, 40);
}

/* fmt_dur writes a duration as "152.3ms" into buf (32 bytes). */
static const char *fmt_dur(int64_t ns, char *buf)
{
	double v = (double)ns;

	if (ns < 0)
		snprintf(buf, 32, "-");
	else if (ns < 1000)
		snprintf(buf, 32, "%" PRId64 "ns", ns);
	else if (ns < SH_NS_PER_MS)
		snprintf(buf, 32, "%.1fus", v / 1e3);
	else if (ns < SH_NS_PER_SEC)
		snprintf(buf, 32, "%.1fms", v / 1e6);
	else
		snprintf(buf, 32, "%.2fs", v / 1e9);
	return buf;
}

/* fmt_rel writes t - origin as "+5.400s" into buf (32 bytes). */
static const char *fmt_rel(int64_t t, int64_t origin, char *buf)
{
	int64_t d;

	if (__builtin_sub_overflow(t, origin, &d))
		return "-";
	snprintf(buf, 32, "%+.3fs", (double)d / 1e9);
	return buf;
}

/* rel_sec stores floor((t - origin) / 1 s) and the remainder; false when
 * that overflows. */
static bool rel_sec(int64_t t, int64_t origin, int64_t *sec, int64_t *rem)
{
	int64_t d;

	if (__builtin_sub_overflow(t, origin, &d))
		return false;
	*sec = d / SH_NS_PER_SEC;
	*rem = d % SH_NS_PER_SEC;
	if (*rem < 0) {
		*sec -= 1;
		*rem += SH_NS_PER_SEC;
	}
	return true;
}

/* sec_time returns origin + sec seconds, 0 when that overflows. */
static int64_t sec_time(int64_t origin, int64_t sec)
{
	int64_t t;

	if (__builtin_mul_overflow(sec, SH_NS_PER_SEC, &t) || __builtin_add_overflow(t, origin, &t))
		return 0;
	return t;
}

static uint64_t hash64(const void *k, size_t n)
{
	const unsigned char *p = k;
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* --- string map: byte keys with two counters each --- */

struct ent {
	char *key; /* NUL-terminated copy */
	size_t klen;
	uint64_t n[2];
	uint64_t h;
};

struct smap {
	struct ent *v;
	size_t nv, capv;
	uint32_t *idx; /* entry index + 1; 0: free */
	size_t nidx;   /* power of two */
};

static int smap_reindex(struct smap *m)
{
	size_t n = m->nidx ? m->nidx * 2 : 64;
	uint32_t *idx = calloc(n, sizeof(*idx));

	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < m->nv; i++) {
		size_t j = (size_t)m->v[i].h & (n - 1);

		while (idx[j])
			j = (j + 1) & (n - 1);
		idx[j] = (uint32_t)i + 1;
	}
	free(m->idx);
	m->idx = idx;
	m->nidx = n;
	return 0;
}

/* smap_find returns the index of key's entry, adding it when add is set;
 * -1 when absent (and not added), -2 on allocation failure. */
static long smap_find(struct smap *m, const void *key, size_t klen, bool add)
{
	uint64_t h = hash64(key, klen);
	size_t j;
	struct ent *e;

	if (!add && m->nidx == 0)
		return -1;
	if (add && (m->nv + 1) * 2 > m->nidx && (m->nv + 1 >= UINT32_MAX || smap_reindex(m) < 0))
		return -2;
	for (j = (size_t)h & (m->nidx - 1); m->idx[j]; j = (j + 1) & (m->nidx - 1)) {
		e = &m->v[m->idx[j] - 1];
		if (e->h == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return (long)(m->idx[j] - 1);
	}
	if (!add)
		return -1;
	if (m->nv == m->capv) {
		size_t cap = m->capv ? m->capv * 2 : 64;
		struct ent *v = realloc(m->v, cap * sizeof(*v));

		if (!v)
			return -2;
		m->v = v;
		m->capv = cap;
	}
	e = &m->v[m->nv];
	if (!(e->key = malloc(klen + 1)))
		return -2;
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	e->klen = klen;
	e->n[0] = e->n[1] = 0;
	e->h = h;
	m->idx[j] = (uint32_t)++m->nv;
	return (long)(m->nv - 1);
}

static void smap_fini(struct smap *m)
{
	for (size_t i = 0; i < m->nv; i++)
		free(m->v[i].key);
	free(m->v);
	free(m->idx);
	memset(m, 0, sizeof(*m));
}

/* --- loading --- */

struct idpair {
	uint32_t id, idx;
};

struct agg_capview {
	Spikehound__Capture *cap;
	char **keys;	  /* per stack: its key */
	uint32_t *sidx;	  /* per sample: index of its stack, NO_STACK when unknown */
	uint64_t missing; /* samples whose stack is not in the capture */
	int64_t first_ns, last_ns;
};

static __attribute__((format(printf, 3, 4))) void set_err(char *err, size_t errlen, const char *fmt,
							  ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* unzstd decompresses in into *out (malloc'd) of at most max bytes. */
static int unzstd(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *olen, char *err,
		  size_t errlen)
{
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	ZSTD_inBuffer ib = {in, len, 0};
	ZSTD_outBuffer ob = {NULL, 0, 0};
	size_t limit = max < SIZE_MAX ? max + 1 : max, ret;
	unsigned long long hint = ZSTD_getFrameContentSize(in, len);
	int rv = 0;

	*out = NULL;
	if (!dc) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (;;) {
		if (ob.pos == ob.size) {
			size_t n = ob.size ? ob.size * 2 : 256 * 1024;
			void *p;

			/* the declared size is a hint, trusted up to 32 times the input */
			if (ob.size == 0 && hint != ZSTD_CONTENTSIZE_UNKNOWN &&
			    hint != ZSTD_CONTENTSIZE_ERROR && hint > n && hint < limit &&
			    hint / 32 < len)
				n = (size_t)hint + 1;
			if (ob.size >= limit) {
				set_err(err, errlen, "capture too large: it expands past %zu bytes",
					max);
				rv = -EFBIG;
				break;
			}
			if (n > limit || n < ob.size)
				n = limit;
			if (!(p = realloc(ob.dst, n))) {
				set_err(err, errlen, "out of memory (%zu bytes)", n);
				rv = -ENOMEM;
				break;
			}
			ob.dst = p;
			ob.size = n;
		}
		ret = ZSTD_decompressStream(dc, &ob, &ib);
		if (ZSTD_isError(ret)) {
			set_err(err, errlen, "corrupt capture: zstd: %s", ZSTD_getErrorName(ret));
			rv = -EBADMSG;
			break;
		}
		if (ob.pos > max) {
			set_err(err, errlen, "capture too large: it expands past %zu bytes", max);
			rv = -EFBIG;
			break;
		}
		if (ib.pos == ib.size && ret == 0)
			break;
		if (ib.pos == ib.size && ob.pos < ob.size) {
			set_err(err, errlen,
				"truncated capture: the zstd data ends early (%zu bytes)", len);
			rv = -EBADMSG;
			break;
		}
	}
	ZSTD_freeDCtx(dc);
	if (rv < 0) {
		free(ob.dst);
		return rv;
	}
	*out = ob.dst;
	*olen = ob.pos;
	return 0;
}

static bool is_unknown(const char *f)
{
	return strncmp(f, "[unknown]", 9) == 0;
}

/* add_frame appends ";<type><cleaned name>" to b. */
static void add_frame(struct sbuf *b, const char *f, bool kernel)
{
	size_t at;

	f = f ? f : "";
	sb_putc(b, ';');
	at = b->len;
	sb_putc(b, kernel ? 'k' : 'u');
	clean(b, f, CL_SEMI, AGG_CAPVIEW_MAX_NAME);
	if (b->oom)
		return;
	if (b->len == at + 1) {
		sb_str(b, "[unknown]");
		b->p[at] = kernel ? 'y' : 'x';
	} else if (is_unknown(f)) {
		b->p[at] = kernel ? 'y' : 'x';
	}
}

static char *make_key(const Spikehound__CaptureStack *st)
{
	struct sbuf b = {0};
	size_t nu = st->n_user_frames < AGG_CAPVIEW_MAX_FRAMES ? st->n_user_frames
							       : AGG_CAPVIEW_MAX_FRAMES;
	size_t nk = st->n_kernel_frames < AGG_CAPVIEW_MAX_FRAMES ? st->n_kernel_frames
								 : AGG_CAPVIEW_MAX_FRAMES;

	sb_putc(&b, 'p');
	clean(&b, st->comm, CL_SEMI | CL_SPACE, 64);
	if (b.len == 1)
		sb_str(&b, "[unknown]");
	for (size_t i = nu; i-- > 0;)
		add_frame(&b, st->user_frames[i], false);
	for (size_t i = nk; i-- > 0;)
		add_frame(&b, st->kernel_frames[i], true);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

static int idpair_cmp(const void *a, const void *b)
{
	const struct idpair *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int index_capture(struct agg_capview *cv)
{
	const Spikehound__Capture *c = cv->cap;
	struct idpair *ids = NULL;
	size_t n = c->n_stacks, m = 0;

	if (n >= UINT32_MAX || c->n_samples >= SIZE_MAX / sizeof(uint32_t))
		return -EFBIG;
	cv->keys = calloc(n ? n : 1, sizeof(char *));
	cv->sidx = calloc(c->n_samples ? c->n_samples : 1, sizeof(uint32_t));
	ids = calloc(n ? n : 1, sizeof(*ids));
	if (!cv->keys || !cv->sidx || !ids) {
		free(ids);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (!(cv->keys[i] = make_key(c->stacks[i]))) {
			free(ids);
			return -ENOMEM;
		}
		ids[i].id = c->stacks[i]->id;
		ids[i].idx = (uint32_t)i;
	}
	qsort(ids, n, sizeof(*ids), idpair_cmp);
	/* keep the first stack of each id */
	for (size_t i = 0; i < n; i++)
		if (m == 0 || ids[m - 1].id != ids[i].id)
			ids[m++] = ids[i];
	for (size_t i = 0; i < c->n_samples; i++) {
		const Spikehound__CaptureSample *s = c->samples[i];
		struct idpair key = {s->stack_id, 0}, *hit = NULL;
		size_t lo = 0, hi = m;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (ids[mid].id < key.id) {
				lo = mid + 1;
			} else if (ids[mid].id > key.id) {
				hi = mid;
			} else {
				hit = &ids[mid];
				break;
			}
		}
		cv->sidx[i] = hit ? hit->idx : NO_STACK;
		if (!hit)
			cv->missing++;
		if (i == 0 || s->time_ns < cv->first_ns)
			cv->first_ns = s->time_ns;
		if (i == 0 || s->time_ns > cv->last_ns)
			cv->last_ns = s->time_ns;
	}
	free(ids);
	return 0;
}

int agg_capview_load(const void *data, size_t len, size_t max_raw, struct agg_capview **out,
		     char *err, size_t errlen)
{
	const uint8_t *d = data;
	struct agg_capview *cv;
	uint8_t *raw = NULL;
	size_t rlen = 0;
	uint32_t magic = 0;
	int rv;

	*out = NULL;
	set_err(err, errlen, "no error");
	if (!max_raw)
		max_raw = AGG_CAPVIEW_MAX_RAW;
	if (len == 0) {
		set_err(err, errlen, "not a capture: the payload is empty");
		return -EBADMSG;
	}
	if (len >= 4)
		magic = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
			(uint32_t)d[3] << 24;
	if (len < 4 || (magic != ZSTD_MAGICNUMBER &&
			(magic & ZSTD_MAGIC_SKIPPABLE_MASK) != ZSTD_MAGIC_SKIPPABLE_START)) {
		set_err(err, errlen, "not a capture: the data (%zu bytes) is not zstd-compressed",
			len);
		return -EBADMSG;
	}
	if ((rv = unzstd(d, len, max_raw, &raw, &rlen, err, errlen)) < 0)
		return rv;
	if (!(cv = calloc(1, sizeof(*cv)))) {
		free(raw);
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	cv->cap = spikehound__capture__unpack(NULL, rlen, raw);
	free(raw);
	if (!cv->cap) {
		set_err(err, errlen,
			"not a capture: the decompressed data (%zu bytes) is not a Capture message",
			rlen);
		agg_capview_free(cv);
		return -EBADMSG;
	}
	if ((rv = index_capture(cv)) < 0) {
		set_err(err, errlen,
			rv == -ENOMEM ? "out of memory" : "capture too large to index");
		agg_capview_free(cv);
		return rv;
	}
	*out = cv;
	return 0;
}

void agg_capview_free(struct agg_capview *cv)
{
	if (!cv)
		return;
	if (cv->keys)
		for (size_t i = 0; i < cv->cap->n_stacks; i++)
			free(cv->keys[i]);
	free(cv->keys);
	free(cv->sidx);
	if (cv->cap)
		spikehound__capture__free_unpacked(cv->cap, NULL);
	free(cv);
}

const Spikehound__Capture *agg_capview_capture(const struct agg_capview *cv)
{
	return cv->cap;
}

int64_t agg_capview_origin(const struct agg_capview *cv)
{
	if (cv->cap->from_ns > 0)
		return cv->cap->from_ns;
	if (cv->cap->held_from_ns > 0)
		return cv->cap->held_from_ns;
	return cv->first_ns;
}

void agg_capview_span(const struct agg_capview *cv, int64_t *first_ns, int64_t *last_ns)
{
	*first_ns = cv->first_ns;
	*last_ns = cv->last_ns;
}

static bool match(const struct agg_capview *cv, size_t i, const struct agg_capview_filter *f)
{
	const Spikehound__CaptureSample *s = cv->cap->samples[i];

	if (!f)
		return true;
	if ((f->from_ns && s->time_ns < f->from_ns) || (f->to_ns && s->time_ns >= f->to_ns))
		return false;
	if (f->has_cpu && s->cpu != f->cpu)
		return false;
	if (f->has_pid && (cv->sidx[i] == NO_STACK || cv->cap->stacks[cv->sidx[i]]->pid != f->pid))
		return false;
	return true;
}

uint64_t agg_capview_count(const struct agg_capview *cv, const struct agg_capview_filter *f)
{
	uint64_t n = 0;

	for (size_t i = 0; i < cv->cap->n_samples; i++)
		n += match(cv, i, f);
	return n;
}

int agg_capview_spike_window(const struct agg_capview *cv, int64_t *from_ns, int64_t *to_ns)
{
	const Spikehound__SpikeEvent *best = NULL;

	for (size_t i = 0; i < cv->cap->n_events; i++) {
		const Spikehound__SpikeEvent *e = cv->cap->events[i];

		if (e->duration_ns <= 0 || e->start_ns <= 0 || e->start_ns > MAX_TIME_NS ||
		    e->duration_ns > 3600 * SH_NS_PER_SEC)
			continue;
		if (!best || e->duration_ns > best->duration_ns)
			best = e;
	}
	if (!best)
		return -ENOENT;
	*from_ns = best->start_ns;
	*to_ns = best->start_ns + best->duration_ns;
	return 0;
}

/* --- text: header, timeline --- */

int agg_capview_write_header(FILE *out, const struct agg_capview *cv)
{
	const Spikehound__Capture *c = cv->cap;
	const Spikehound__Hello *h = c->host;
	char *id = cleaned(str_or(c->capture_id, "(no id)"), 64);
	char *trig = cleaned(str_or(c->trigger, "-"), 64);
	char tb[2][40], db[32];

	if (!id || !trig) {
		free(id);
		free(trig);
		return -ENOMEM;
	}
	fprintf(out, "capture %s, trigger %s\n", id, trig);
	if (h) {
		char *name = cleaned(str_or(h->hostname, "?"), 64);
		char *hid = cleaned(str_or(h->host_id, "?"), 64);
		char *kr = cleaned(str_or(h->kernel_release, "?"), 64);

		if (name && hid && kr)
			fprintf(out, "host %s (%s), kernel %s, %u CPUs\n", name, hid, kr,
				h->cpu_count);
		free(name);
		free(hid);
		free(kr);
	}
	fprintf(out, "asked %s .. %s", fmt_time(c->from_ns, tb[0]), fmt_time(c->to_ns, tb[1]));
	if (c->to_ns > c->from_ns && c->from_ns > 0)
		fprintf(out, " (%s)", fmt_dur(c->to_ns - c->from_ns, db));
	fprintf(out, "; held %s .. %s\n", fmt_time(c->held_from_ns, tb[0]),
		fmt_time(c->held_to_ns, tb[1]));
	fprintf(out,
		"%zu samples at %u Hz, %zu stacks, %zu spike events, %zu metric seconds, "
		"%zu process events, %zu processes\n",
		c->n_samples, c->sample_hz ? c->sample_hz : AGG_CAPVIEW_DEFAULT_HZ, c->n_stacks,
		c->n_events, c->n_metrics, c->n_procs, c->n_processes);
	if (c->truncated)
		fputs("TRUNCATED: the capture reached its size cap, the newest records are missing\n",
		      out);
	if (cv->missing)
		fprintf(out, "%" PRIu64 " samples name stacks missing from the capture\n",
			cv->missing);
	free(id);
	free(trig);
	return ferror(out) ? -EIO : 0;
}

static bool in_range(int64_t t, const struct agg_capview_filter *f)
{
	return !f || ((!f->from_ns || t >= f->from_ns) && (!f->to_ns || t < f->to_ns));
}

static int i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static long find_sec(const int64_t *v, size_t n, int64_t s)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid] < s)
			lo = mid + 1;
		else if (v[mid] > s)
			hi = mid;
		else
			return (long)mid;
	}
	return -1;
}

/* task_text appends "comm[pid/tid]" of t to b. */
static void task_text(struct sbuf *b, const Spikehound__Task *t)
{
	clean(b, str_or(t->comm, "?"), 0, 64);
	if (t->pid > 0 && t->tid > 0 && t->tid != t->pid)
		sb_printf(b, "[%d/%d]", t->pid, t->tid);
	else if (t->pid > 0)
		sb_printf(b, "[%d]", t->pid);
}

struct sec_row {
	uint64_t samples;
	const Spikehound__MetricSecond *m;
	unsigned events, procs;
};

static void print_psi(FILE *out, float v)
{
	if (v < 0 || !isfinite(v))
		fprintf(out, " %5s", "-");
	else
		fprintf(out, " %5.1f", v);
}

static void print_rows(FILE *out, const int64_t *secs, const struct sec_row *rows, size_t n,
		       int64_t origin)
{
	char cb[40];

	fprintf(out, "%-12s %6s %7s %5s %5s %5s %5s %5s %5s %8s %6s %5s\n", "TIME (UTC)", "+SEC",
		"SAMPLES", "USR%", "SYS%", "RUNQ", "PSI C", "PSI M", "PSI I", "PGSCAN", "SPIKES",
		"PROCS");
	for (size_t i = 0; i < n; i++) {
		const Spikehound__MetricSecond *m = rows[i].m;
		int64_t t = sec_time(origin, secs[i]);

		fprintf(out, "%-12s %+6" PRId64 " %7" PRIu64, fmt_clock(t, cb), secs[i],
			rows[i].samples);
		if (m) {
			fprintf(out, " %5.1f %5.1f %5u",
				isfinite(m->cpu_user_pct) ? m->cpu_user_pct : 0,
				isfinite(m->cpu_sys_pct) ? m->cpu_sys_pct : 0, m->procs_running);
			print_psi(out, m->psi_cpu_some_avg10);
			print_psi(out, m->psi_mem_some_avg10);
			print_psi(out, m->psi_io_some_avg10);
			fprintf(out, " %8" PRIu64, m->pgscan_direct + m->pgscan_kswapd);
		} else {
			fprintf(out, " %5s %5s %5s %5s %5s %5s %8s", "-", "-", "-", "-", "-", "-",
				"-");
		}
		fprintf(out, " %6u %5u\n", rows[i].events, rows[i].procs);
	}
}

static int print_events(FILE *out, const struct agg_capview *cv, const struct agg_capview_filter *f,
			int64_t origin)
{
	const Spikehound__Capture *c = cv->cap;
	struct sbuf b = {0};
	size_t shown = 0;

	for (size_t i = 0; i < c->n_events; i++) {
		const Spikehound__SpikeEvent *e = c->events[i];
		char cb[40], db[32], rb[32];

		if (!in_range(e->start_ns, f))
			continue;
		if (shown++ == 0)
			fprintf(out, "\n%-12s %10s %-16s %9s %4s  %-24s %s\n", "TIME (UTC)", "+SEC",
				"SPIKE", "DURATION", "CPU", "VICTIM", "CULPRITS; DETAIL");
		b.len = 0;
		sb_add(&b, "", 0);
		if (e->victim)
			task_text(&b, e->victim);
		else
			sb_putc(&b, '-');
		fprintf(out, "%-12s %10s ", fmt_clock(e->start_ns, cb),
			fmt_rel(e->start_ns, origin, rb));
		sb_putc(&b, '\0');
		clean(&b, str_or(e->kind, "?"), 0, 32);
		if (b.oom)
			break;
		fprintf(out, "%-16s %9s %4d  %-24s ", b.p + strlen(b.p) + 1,
			fmt_dur(e->duration_ns, db), e->cpu, b.p);
		b.len = 0;
		sb_add(&b, "", 0);
		for (size_t j = 0; j < e->n_culprits && j < 3; j++) {
			const Spikehound__Task *t = e->culprits[j];

			if (j)
				sb_str(&b, ", ");
			if (t->role && t->role[0]) {
				clean(&b, t->role, 0, 32);
				sb_putc(&b, ' ');
			}
			task_text(&b, t);
		}
		if (e->n_culprits > 3)
			sb_printf(&b, " +%zu more", e->n_culprits - 3);
		if (e->detail && e->detail[0]) {
			sb_str(&b, e->n_culprits ? "; " : "");
			clean(&b, e->detail, 0, 120);
		}
		fprintf(out, "%s\n", b.oom ? "?" : b.len ? b.p : "-");
	}
	free(b.p);
	return b.oom ? -ENOMEM : 0;
}

int agg_capview_write_timeline(FILE *out, const struct agg_capview *cv,
			       const struct agg_capview_filter *f)
{
	const Spikehound__Capture *c = cv->cap;
	int64_t origin = agg_capview_origin(cv), s, rem;
	size_t cap = c->n_samples + c->n_metrics + c->n_events + c->n_procs, n = 0, m = 0;
	int64_t *secs = malloc((cap ? cap : 1) * sizeof(*secs));
	struct sec_row *rows = NULL;
	int rv = 0;

	if (!secs)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_samples; i++)
		if (match(cv, i, f) && rel_sec(c->samples[i]->time_ns, origin, &s, &rem))
			secs[n++] = s;
	for (size_t i = 0; i < c->n_metrics; i++)
		if (in_range(c->metrics[i]->time_ns, f) &&
		    rel_sec(c->metrics[i]->time_ns, origin, &s, &rem))
			secs[n++] = s;
	for (size_t i = 0; i < c->n_events; i++)
		if (in_range(c->events[i]->start_ns, f) &&
		    rel_sec(c->events[i]->start_ns, origin, &s, &rem))
			secs[n++] = s;
	for (size_t i = 0; i < c->n_procs; i++)
		if (in_range(c->procs[i]->time_ns, f) &&
		    rel_sec(c->procs[i]->time_ns, origin, &s, &rem))
			secs[n++] = s;
	qsort(secs, n, sizeof(*secs), i64_cmp);
	for (size_t i = 0; i < n; i++)
		if (m == 0 || secs[m - 1] != secs[i])
			secs[m++] = secs[i];
	if (m == 0) {
		fputs("nothing recorded in this range\n", out);
		free(secs);
		return ferror(out) ? -EIO : 0;
	}
	if (!(rows = calloc(m, sizeof(*rows)))) {
		free(secs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->n_samples; i++) {
		long r;

		if (match(cv, i, f) && rel_sec(c->samples[i]->time_ns, origin, &s, &rem) &&
		    (r = find_sec(secs, m, s)) >= 0)
			rows[r].samples++;
	}
	for (size_t i = 0; i < c->n_metrics; i++) {
		long r;

		if (in_range(c->metrics[i]->time_ns, f) &&
		    rel_sec(c->metrics[i]->time_ns, origin, &s, &rem) &&
		    (r = find_sec(secs, m, s)) >= 0 && !rows[r].m)
			rows[r].m = c->metrics[i];
	}
	for (size_t i = 0; i < c->n_events; i++) {
		long r;

		if (in_range(c->events[i]->start_ns, f) &&
		    rel_sec(c->events[i]->start_ns, origin, &s, &rem) &&
		    (r = find_sec(secs, m, s)) >= 0)
			rows[r].events++;
	}
	for (size_t i = 0; i < c->n_procs; i++) {
		long r;

		if (in_range(c->procs[i]->time_ns, f) &&
		    rel_sec(c->procs[i]->time_ns, origin, &s, &rem) &&
		    (r = find_sec(secs, m, s)) >= 0)
			rows[r].procs++;
	}
	print_rows(out, secs, rows, m, origin);
	rv = print_events(out, cv, f, origin);
	free(rows);
	free(secs);
	if (rv < 0)
		return rv;
	return ferror(out) ? -EIO : 0;
}

/* --- JSON metadata --- */

static json_t *jstr(const char *s, size_t max)
{
	char *t = cleaned(s ? s : "", max);
	json_t *j = t ? json_string(t) : NULL;

	free(t);
	return j;
}

static json_t *task_json(const Spikehound__Task *t)
{
	return json_pack("{s:I, s:I, s:o, s:o}", "pid", (json_int_t)t->pid, "tid",
			 (json_int_t)t->tid, "comm", jstr(t->comm, 64), "role", jstr(t->role, 64));
}

json_t *agg_capview_meta_json(const struct agg_capview *cv, const struct agg_capview_filter *f)
{
	const Spikehound__Capture *c = cv->cap;
	const Spikehound__Hello *h = c->host;
	json_t *o, *events, *secs;
	int64_t origin = agg_capview_origin(cv);
	uint64_t *per = NULL, total = 0;
	int64_t s0 = 0, s1 = -1, s, rem;

	o = json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:{s:I, s:I, s:I, s:I, s:I, "
		      "s:I, s:I}}",
		      "capture_id", jstr(c->capture_id, 64), "trigger", jstr(c->trigger, 64),
		      "from_ns", (json_int_t)c->from_ns, "to_ns", (json_int_t)c->to_ns,
		      "held_from_ns", (json_int_t)c->held_from_ns, "held_to_ns",
		      (json_int_t)c->held_to_ns, "sample_hz",
		      (json_int_t)(c->sample_hz ? c->sample_hz : AGG_CAPVIEW_DEFAULT_HZ),
		      "truncated", (int)c->truncated, "origin_ns", (json_int_t)origin, "counts",
		      "samples", (json_int_t)c->n_samples, "stacks", (json_int_t)c->n_stacks,
		      "events", (json_int_t)c->n_events, "metrics", (json_int_t)c->n_metrics,
		      "procs", (json_int_t)c->n_procs, "processes", (json_int_t)c->n_processes,
		      "missing_stacks", (json_int_t)cv->missing);
	if (!o)
		return NULL;
	if (h)
		json_object_set_new(o, "host",
				    json_pack("{s:o, s:o, s:o, s:I}", "host_id",
					      jstr(h->host_id, 64), "hostname",
					      jstr(h->hostname, 256), "kernel_release",
					      jstr(h->kernel_release, 256), "cpu_count",
					      (json_int_t)h->cpu_count));
	events = json_array();
	for (size_t i = 0; events && i < c->n_events; i++) {
		const Spikehound__SpikeEvent *e = c->events[i];
		json_t *cul = json_array(), *ev;

		if (!in_range(e->start_ns, f))
			continue;
		for (size_t j = 0; cul && j < e->n_culprits; j++)
			json_array_append_new(cul, task_json(e->culprits[j]));
		ev = json_pack("{s:o, s:I, s:I, s:I, s:o, s:o}", "kind", jstr(e->kind, 64),
			       "start_ns", (json_int_t)e->start_ns, "duration_ns",
			       (json_int_t)e->duration_ns, "cpu", (json_int_t)e->cpu, "detail",
			       jstr(e->detail, 256), "culprits", cul ? cul : json_null());
		if (ev && e->victim)
			json_object_set_new(ev, "victim", task_json(e->victim));
		json_array_append_new(events, ev);
	}
	json_object_set_new(o, "events", events);
	/* samples per second of the selected range */
	for (size_t i = 0; i < c->n_samples; i++) {
		if (!match(cv, i, f) || !rel_sec(c->samples[i]->time_ns, origin, &s, &rem))
			continue;
		if (s1 < s0) {
			s0 = s1 = s;
		} else {
			s0 = s < s0 ? s : s0;
			s1 = s > s1 ? s : s1;
		}
		total++;
	}
	secs = json_array();
	if (total && s1 - s0 < AGG_CAPVIEW_MAX_SECONDS &&
	    (per = calloc((size_t)(s1 - s0 + 1), 8))) {
		for (size_t i = 0; i < c->n_samples; i++)
			if (match(cv, i, f) && rel_sec(c->samples[i]->time_ns, origin, &s, &rem))
				per[s - s0]++;
		for (int64_t k = 0; secs && k <= s1 - s0; k++)
			json_array_append_new(secs, json_pack("{s:I, s:I}", "t_ns",
							      (json_int_t)sec_time(origin, s0 + k),
							      "samples", (json_int_t)per[k]));
		free(per);
	}
	json_object_set_new(o, "seconds", secs);
	json_object_set_new(
		o, "window",
		json_pack("{s:I, s:I, s:I}", "from_ns", (json_int_t)(f ? f->from_ns : 0), "to_ns",
			  (json_int_t)(f ? f->to_ns : 0), "samples", (json_int_t)total));
	return o;
}

/* --- stack sets --- */

struct agg_capview_set {
	struct smap m;
	uint64_t total[2];
};

struct agg_capview_set *agg_capview_set_new(void)
{
	return calloc(1, sizeof(struct agg_capview_set));
}

void agg_capview_set_free(struct agg_capview_set *s)
{
	if (!s)
		return;
	smap_fini(&s->m);
	free(s);
}

int agg_capview_set_add(struct agg_capview_set *s, int col, const struct agg_capview *cv,
			const struct agg_capview_filter *f, uint64_t *added)
{
	size_t n = cv->cap->n_stacks;
	uint64_t *per, sum = 0;
	int rv = 0;

	if (added)
		*added = 0;
	if (col != 0 && col != 1)
		return -EINVAL;
	if (!(per = calloc(n + 1, sizeof(*per))))
		return -ENOMEM;
	for (size_t i = 0; i < cv->cap->n_samples; i++) {
		if (!match(cv, i, f))
			continue;
		per[cv->sidx[i] == NO_STACK ? n : cv->sidx[i]]++;
		sum++;
	}
	for (size_t j = 0; j <= n; j++) {
		const char *key = j < n ? cv->keys[j] : MISSING_KEY;
		long e;

		if (!per[j])
			continue;
		if ((e = smap_find(&s->m, key, strlen(key), true)) < 0) {
			rv = -ENOMEM;
			break;
		}
		s->m.v[e].n[col] += per[j];
		s->total[col] += per[j];
	}
	free(per);
	if (added && rv == 0)
		*added = sum;
	return rv;
}

uint64_t agg_capview_set_total(const struct agg_capview_set *s, int col)
{
	return col == 0 || col == 1 ? s->total[col] : 0;
}

size_t agg_capview_set_stacks(const struct agg_capview_set *s)
{
	return s->m.nv;
}

/* keycmp orders keys frame by frame (';' below every other byte). */
static int keycmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned ca = *a == ';' ? 1u : (unsigned char)*a;
		unsigned cb = *b == ';' ? 1u : (unsigned char)*b;

		if (ca != cb)
			return ca < cb ? -1 : 1;
		if (!ca)
			return 0;
	}
}

static int ent_key_cmp(const void *a, const void *b, void *arg)
{
	const struct ent *x = *(const struct ent *const *)a, *y = *(const struct ent *const *)b;

	return keycmp(x->key, y->key);
}

/* ent_count_cmp orders by the count of column *(int *)arg, largest first. */
static int ent_count_cmp(const void *a, const void *b, void *arg)
{
	const struct ent *x = *(const struct ent *const *)a, *y = *(const struct ent *const *)b;
	int col = *(int *)arg;

	if (x->n[col] != y->n[col])
		return x->n[col] > y->n[col] ? -1 : 1;
	return keycmp(x->key, y->key);
}

static const struct ent **sorted(const struct agg_capview_set *s,
				 int (*cmp)(const void *, const void *, void *), void *arg)
{
	const struct ent **v = malloc((s->m.nv ? s->m.nv : 1) * sizeof(*v));

	if (!v)
		return NULL;
	for (size_t i = 0; i < s->m.nv; i++)
		v[i] = &s->m.v[i];
	qsort_r(v, s->m.nv, sizeof(*v), cmp, arg);
	return v;
}

static bool is_kernel_type(char t)
{
	return t == 'k' || t == 'y';
}

/* render appends key as folded text (types dropped) to b. */
static void render(struct sbuf *b, const char *key, unsigned flags)
{
	const char *p = key;

	for (bool first = true;; first = false) {
		const char *e = strchr(p, ';');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (!first)
			sb_putc(b, ';');
		if (n > 0)
			sb_add(b, p + 1, n - 1);
		if ((flags & AGG_CAPVIEW_KSUFFIX) && is_kernel_type(p[0]))
			sb_str(b, "_[k]");
		if (!e)
			break;
		p = e + 1;
	}
}

int agg_capview_write_folded(FILE *out, const struct agg_capview_set *s, int col, unsigned flags)
{
	const struct ent **v = sorted(s, ent_key_cmp, NULL);
	struct sbuf b = {0};

	if (!v || (col != 0 && col != 1)) {
		free(v);
		return v ? -EINVAL : -ENOMEM;
	}
	for (size_t i = 0; i < s->m.nv && !b.oom; i++) {
		if (!v[i]->n[col])
			continue;
		b.len = 0;
		render(&b, v[i]->key, flags);
		if (!b.oom)
			fprintf(out, "%s %" PRIu64 "\n", b.p, v[i]->n[col]);
	}
	free(v);
	free(b.p);
	if (b.oom)
		return -ENOMEM;
	return ferror(out) ? -EIO : 0;
}

int agg_capview_write_folded_diff(FILE *out, const struct agg_capview_set *s, unsigned flags)
{
	const struct ent **v = sorted(s, ent_key_cmp, NULL);
	struct sbuf b = {0};

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < s->m.nv && !b.oom; i++) {
		b.len = 0;
		render(&b, v[i]->key, flags);
		if (!b.oom)
			fprintf(out, "%s %" PRIu64 " %" PRIu64 "\n", b.p, v[i]->n[0], v[i]->n[1]);
	}
	free(v);
	free(b.p);
	if (b.oom)
		return -ENOMEM;
	return ferror(out) ? -EIO : 0;
}

/* short_stack appends key rendered, keeping the comm and the innermost
 * frames when it is longer than max bytes. */
static void short_stack(struct sbuf *b, const char *key, size_t max)
{
	struct sbuf t = {0};
	const char *semi, *cut;

	render(&t, key, 0);
	if (t.oom) {
		b->oom = true;
		return;
	}
	semi = strchr(t.p, ';');
	if (t.len <= max || !semi) {
		sb_add(b, t.p, t.len);
		free(t.p);
		return;
	}
	cut = strchr(t.p + t.len - max + (size_t)(semi - t.p) + 3, ';');
	sb_add(b, t.p, (size_t)(semi - t.p));
	if (cut) {
		sb_str(b, ";..");
		sb_str(b, cut);
	} else {
		sb_str(b, ";..");
	}
	free(t.p);
}

int agg_capview_write_top(FILE *out, const struct agg_capview_set *s, int col, size_t n)
{
	const struct ent **v;
	struct sbuf b = {0};
	uint64_t total;

	if (col != 0 && col != 1)
		return -EINVAL;
	total = s->total[col];
	if (!(v = sorted(s, ent_count_cmp, &col)))
		return -ENOMEM;
	fprintf(out, "%8s %6s  %s\n", "SAMPLES", "%", "STACK (comm;outermost;...;innermost)");
	for (size_t i = 0; i < s->m.nv && i < n && v[i]->n[col] && !b.oom; i++) {
		b.len = 0;
		short_stack(&b, v[i]->key, 200);
		if (!b.oom)
			fprintf(out, "%8" PRIu64 " %6.1f  %s\n", v[i]->n[col],
				total ? 100.0 * (double)v[i]->n[col] / (double)total : 0.0, b.p);
	}
	free(v);
	free(b.p);
	if (b.oom)
		return -ENOMEM;
	return ferror(out) ? -EIO : 0;
}

static double share(uint64_t n, uint64_t total)
{
	return total ? (double)n / (double)total : 0.0;
}

static double ent_delta(const struct agg_capview_set *s, const struct ent *e)
{
	return share(e->n[1], s->total[1]) - share(e->n[0], s->total[0]);
}

/* ent_delta_cmp orders by the change of share in set arg, largest first. */
static int ent_delta_cmp(const void *a, const void *b, void *arg)
{
	const struct ent *x = *(const struct ent *const *)a, *y = *(const struct ent *const *)b;
	double dx = fabs(ent_delta(arg, x)), dy = fabs(ent_delta(arg, y));

	if (dx != dy)
		return dx > dy ? -1 : 1;
	return keycmp(x->key, y->key);
}

int agg_capview_write_diff_top(FILE *out, const struct agg_capview_set *s, size_t n)
{
	const struct ent **v;
	struct sbuf b = {0};

	if (!(v = sorted(s, ent_delta_cmp, (void *)s)))
		return -ENOMEM;
	fprintf(out, "%9s %8s %6s %8s %6s  %s\n", "CHANGE", "A", "A%", "B", "B%",
		"STACK (comm;outermost;...;innermost)");
	for (size_t i = 0; i < s->m.nv && i < n && !b.oom; i++) {
		double d = ent_delta(s, v[i]);

		if (d == 0)
			break;
		b.len = 0;
		short_stack(&b, v[i]->key, 200);
		if (!b.oom)
			fprintf(out, "%+7.1fpt %8" PRIu64 " %6.1f %8" PRIu64 " %6.1f  %s\n",
				100 * d, v[i]->n[0], 100 * share(v[i]->n[0], s->total[0]),
				v[i]->n[1], 100 * share(v[i]->n[1], s->total[1]), b.p);
	}
	free(v);
	free(b.p);
	if (b.oom)
		return -ENOMEM;
	return ferror(out) ? -EIO : 0;
}

/* --- flame graphs --- */

struct fr {
	const char *name; /* into a key: the type character, then the name */
	size_t nlen;	  /* including the type character */
	unsigned depth;	  /* 0: the root */
	uint64_t x, w;	  /* in samples of the drawn column */
	uint64_t a;	  /* samples of the other column */
};

struct frvec {
	struct fr *v;
	size_t n, cap;
};

static int fr_push(struct frvec *fv, const struct fr *f)
{
	if (fv->n == fv->cap) {
		size_t cap = fv->cap ? fv->cap * 2 : 256;
		struct fr *v = realloc(fv->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		fv->v = v;
		fv->cap = cap;
	}
	fv->v[fv->n++] = *f;
	return 0;
}

/* build_frames lays out column lay of s: one frame per node of the stack
 * tree with its x and width in samples, and the other column's samples. */
static int build_frames(const struct agg_capview_set *s, int lay, struct frvec *fv)
{
	const struct ent **v = sorted(s, ent_key_cmp, NULL);
	struct fr *open = NULL, root = {"pall", 4, 0, 0, 0, 0};
	size_t nopen = 0, capopen = 0;
	uint64_t cum = 0;
	int oth = 1 - lay, rv = 0;

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < s->m.nv && rv == 0; i++) {
		const char *p = v[i]->key;
		size_t d = 0;

		while (*p) {
			const char *q = strchr(p, ';');
			size_t n = q ? (size_t)(q - p) : strlen(p);

			if (d >= nopen || open[d].nlen != n || memcmp(open[d].name, p, n) != 0)
				break;
			d++;
			p = q ? q + 1 : p + n;
		}
		while (nopen > d && rv == 0) {
			nopen--;
			open[nopen].w = cum - open[nopen].x;
			if (open[nopen].w)
				rv = fr_push(fv, &open[nopen]);
		}
		while (*p && rv == 0) {
			const char *q = strchr(p, ';');
			size_t n = q ? (size_t)(q - p) : strlen(p);

			if (nopen == capopen) {
				size_t cap = capopen ? capopen * 2 : 64;
				struct fr *o = realloc(open, cap * sizeof(*o));

				if (!o) {
					rv = -ENOMEM;
					break;
				}
				open = o;
				capopen = cap;
			}
			open[nopen] = (struct fr){p, n, (unsigned)nopen + 1, cum, 0, 0};
			nopen++;
			p = q ? q + 1 : p + n;
		}
		cum += v[i]->n[lay];
		for (size_t k = 0; k < nopen; k++)
			open[k].a += v[i]->n[oth];
	}
	while (nopen > 0 && rv == 0) {
		nopen--;
		open[nopen].w = cum - open[nopen].x;
		if (open[nopen].w)
			rv = fr_push(fv, &open[nopen]);
	}
	root.w = cum;
	root.a = s->total[oth];
	if (rv == 0 && cum)
		rv = fr_push(fv, &root);
	free(open);
	free(v);
	return rv;
}

static uint32_t hash32(const char *s, size_t n)
{
	uint64_t h = hash64(s, n);

	return (uint32_t)(h ^ (h >> 32));
}

static void type_colour(const struct fr *f, char *buf, size_t len)
{
	uint32_t h = hash32(f->name + 1, f->nlen - 1);
	unsigned r, g, b;

	if (f->depth == 0) {
		r = g = b = 200;
	} else {
		switch (f->name[0]) {
		case 'u':
			r = 215 + h % 40, g = 95 + (h >> 8) % 110, b = 30 + (h >> 16) % 40;
			break;
		case 'k':
			r = 70 + h % 50, g = 140 + (h >> 8) % 55, b = 205 + (h >> 16) % 45;
			break;
		case 'p':
			r = 175 + h % 35, g = 140 + (h >> 8) % 30, b = 215 + (h >> 16) % 35;
			break;
		default: /* unresolved */
			r = g = b = 160 + h % 40;
		}
	}
	snprintf(buf, len, "#%02x%02x%02x", r, g, b);
}

static void diff_colour(double d, double maxabs, char *buf, size_t len)
{
	double t = maxabs > 0 ? fabs(d) / maxabs : 0;
	unsigned c = (unsigned)lround(255 - 200 * (t > 1 ? 1 : t));

	if (d > 0)
		snprintf(buf, len, "#ff%02x%02x", c, c);
	else if (d < 0)
		snprintf(buf, len, "#%02x%02xff", c, c);
	else
		snprintf(buf, len, "#ffffff");
}

/* put_fit writes as much of n bytes of clean text s as fits in chars
 * characters ("..": cut), XML-escaped. */
static void put_fit(FILE *out, const char *s, size_t n, size_t chars)
{
	size_t count = 0, i = 0, cut = 0;

	while (i < n) {
		size_t step = 1;

		while (i + step < n && ((unsigned char)s[i + step] & 0xc0) == 0x80)
			step++;
		if (count == chars - 2 && cut == 0)
			cut = i;
		count++;
		i += step;
		if (count > chars)
			break;
	}
	if (count <= chars) {
		agg_htmlout_escape(out, s, n);
	} else {
		agg_htmlout_escape(out, s, cut);
		fputs("..", out);
	}
}

static void svg_head(FILE *out, unsigned w, unsigned h)
{
	fprintf(out,
		"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%u\" "
		"height=\"%u\" viewBox=\"0 0 %u %u\">\n"
		"<style>text{font-family:monospace;font-size:11px;fill:#000}"
		" .ti{font-size:16px} .sub{fill:#444} g.f:hover rect{stroke:#000;stroke-width:0.6}"
		" rect.c:hover{stroke:#000;stroke-width:1}</style>\n"
		"<rect x=\"0\" y=\"0\" width=\"%u\" height=\"%u\" fill=\"#fafafa\"/>\n",
		w, h, w, h, w, h);
}

#define FG_PAD 10
#define FG_FRAME_H 16
#define FG_TOP 66
#define FG_BOTTOM 24
#define CHAR_W 6.7

int agg_capview_write_flamegraph(FILE *out, const struct agg_capview_set *s,
				 const struct agg_capview_svg_opts *o)
{
	static const struct agg_capview_svg_opts defaults = {0};
	struct frvec fv = {0};
	unsigned width, height, maxdepth = 0;
	int lay, rv;
	double scale, maxabs = 0;
	uint64_t total, atotal;
	char fill[16];

	o = o ? o : &defaults;
	lay = o->diff ? 1 : 0;
	total = s->total[lay];
	atotal = s->total[1 - lay];
	width = o->width >= 200 ? o->width : 1200;
	if (total == 0)
		return -ENODATA;
	if ((rv = build_frames(s, lay, &fv)) < 0) {
		free(fv.v);
		return rv;
	}
	scale = (double)(width - 2 * FG_PAD) / (double)total;
	for (size_t i = 0; i < fv.n; i++) {
		const struct fr *f = &fv.v[i];

		if ((double)f->w * scale < 0.1)
			continue;
		if (f->depth > maxdepth)
			maxdepth = f->depth;
		if (o->diff) {
			double d = share(f->w, total) - share(f->a, atotal);

			if (fabs(d) > maxabs)
				maxabs = fabs(d);
		}
	}
	height = FG_TOP + (maxdepth + 1) * FG_FRAME_H + FG_BOTTOM;
	svg_head(out, width, height);
	fprintf(out, "<text class=\"ti\" x=\"%u\" y=\"22\" text-anchor=\"middle\">", width / 2);
	put_xml_raw(out, str_or(o->title, o->diff ? "Differential Flame Graph" : "Flame Graph"),
		    200);
	fputs("</text>\n", out);
	if (o->subtitle) {
		fprintf(out, "<text class=\"sub\" x=\"%u\" y=\"40\" text-anchor=\"middle\">",
			width / 2);
		put_xml_raw(out, o->subtitle, 300);
		fputs("</text>\n", out);
	}
	fprintf(out, "<text class=\"sub\" x=\"%d\" y=\"58\">", FG_PAD);
	if (o->diff) {
		fputs("width: samples of ", out);
		put_xml_raw(out, str_or(o->label_b, "B"), 60);
		fprintf(out, " (%" PRIu64 "); red: a larger share than in ", total);
		put_xml_raw(out, str_or(o->label_a, "A"), 60);
		fprintf(out,
			" (%" PRIu64 "), blue: a smaller one; the strongest colour is "
			"%.1f percentage points</text>\n",
			atotal, 100 * maxabs);
	} else {
		fprintf(out,
			"%" PRIu64 " samples; colours: user (warm), kernel (blue), "
			"unresolved (grey), process (purple)</text>\n",
			total);
	}
	for (size_t i = 0; i < fv.n; i++) {
		const struct fr *f = &fv.v[i];
		double x = FG_PAD + (double)f->x * scale, w = (double)f->w * scale;
		unsigned y = FG_TOP + (maxdepth - f->depth) * FG_FRAME_H;
		const char *name = f->depth ? f->name + 1 : "all";
		size_t nlen = f->depth ? f->nlen - 1 : 3;

		if (w < 0.1)
			continue;
		fputs("<g class=\"f\"><title>", out);
		agg_htmlout_escape(out, name, nlen);
		if (f->depth && is_kernel_type(f->name[0]))
			fputs(" [kernel]", out);
		if (o->diff) {
			double d = share(f->w, total) - share(f->a, atotal);

			fputs(" (", out);
			put_xml_raw(out, str_or(o->label_b, "B"), 60);
			fprintf(out, ": %" PRIu64 " samples, %.2f%%; ", f->w,
				100 * share(f->w, total));
			put_xml_raw(out, str_or(o->label_a, "A"), 60);
			fprintf(out, ": %" PRIu64 ", %.2f%%; change %+.2f points)", f->a,
				100 * share(f->a, atotal), 100 * d);
			diff_colour(d, maxabs, fill, sizeof(fill));
		} else {
			fprintf(out, " (%" PRIu64 " samples, %.2f%%)", f->w,
				100 * share(f->w, total));
			type_colour(f, fill, sizeof(fill));
		}
		fprintf(out,
			"</title><rect x=\"%.2f\" y=\"%u\" width=\"%.3f\" height=\"%d\" fill=\"%s\" "
			"rx=\"2\"/>",
			x, y, w, FG_FRAME_H - 1, fill);
		if (w >= 3 * CHAR_W) {
			fprintf(out, "<text x=\"%.2f\" y=\"%u\">", x + 3, y + FG_FRAME_H - 4);
			put_fit(out, name, nlen, (size_t)((w - 6) / CHAR_W));
			fputs("</text>", out);
		}
		fputs("</g>\n", out);
	}
	fputs("</svg>\n", out);
	free(fv.v);
	return ferror(out) ? -EIO : 0;
}

/* --- heat map --- */

#define HM_LEFT 70
#define HM_TOP 56
#define HM_AXIS 64

static const char heatmap_js[] =
	"<script><![CDATA[\n"
	"(function () {\n"
	"  var map = document.getElementById('heatmap'), sel = document.getElementById('sel');\n"
	"  var rows = +map.getAttribute('data-rows'), hint = sel.getAttribute('data-hint');\n"
	"  var start = null, marked = [];\n"
	"  function at(c) { return +c.getAttribute('data-s') + c.getAttribute('data-r') / rows; }\n"
	"  function fmt(v) { return '+' + v.toFixed(3) + 's'; }\n"
	"  function mark(c, on) { c.style.stroke = on ? '#000' : ''; c.style.strokeWidth = on ? 1.5 : ''; }\n"
	"  var cells = document.querySelectorAll('rect.c');\n"
	"  for (var i = 0; i < cells.length; i++) cells[i].addEventListener('click', function (ev) {\n"
	"    var c = ev.currentTarget, t = at(c);\n"
	"    if (start === null) {\n"
	"      marked.forEach(function (m) { mark(m, false); }); marked = [c]; mark(c, true);\n"
	"      start = t; sel.textContent = 'range from ' + fmt(t) + ': click the cell where it ends';\n"
	"    } else {\n"
	"      var lo = Math.min(start, t), hi = Math.max(start, t) + 1 / rows;\n"
	"      marked.push(c); mark(c, true); start = null;\n"
	"      sel.textContent = (hint ? hint + ' ' : '') + '--from ' + fmt(lo) + ' --to ' + fmt(hi);\n"
	"    }\n"
	"  });\n"
	"})();\n"
	"]]></script>\n";

static void heat_colour(uint64_t n, uint64_t max, char *buf, size_t len)
{
	double t;

	if (n == 0 || max == 0) {
		snprintf(buf, len, "#f0f0f0");
		return;
	}
	t = (double)n / (double)max;
	snprintf(buf, len, "#%02x%02x%02x", (unsigned)lround(255 - 100 * t),
		 (unsigned)lround(235 * (1 - t)), (unsigned)lround(170 * (1 - t) * (1 - t)));
}

static unsigned nice_step(unsigned min)
{
	static const unsigned steps[] = {1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
		if (steps[i] >= min)
			return steps[i];
	return 3600;
}

int agg_capview_write_heatmap(FILE *out, const struct agg_capview *cv,
			      const struct agg_capview_filter *f,
			      const struct agg_capview_heatmap_opts *o)
{
	static const struct agg_capview_heatmap_opts defaults = {0};
	const Spikehound__Capture *c = cv->cap;
	int64_t origin = agg_capview_origin(cv), first = 0, last = 0, from, to, c0, c1, s, rem;
	uint64_t nmatch = 0, max = 0, *cells;
	unsigned rows, cw, ch, width, height, step, gw, gh;
	size_t ncols;
	char fill[16], cb[40];

	o = o ? o : &defaults;
	rows = o->rows ? o->rows : 50;
	if (rows > 1000)
		return -EINVAL;
	for (size_t i = 0; i < c->n_samples; i++) {
		int64_t t = c->samples[i]->time_ns;

		if (!match(cv, i, f))
			continue;
		if (nmatch++ == 0 || t < first)
			first = t;
		if (nmatch == 1 || t > last)
			last = t;
	}
	from = f && f->from_ns ? f->from_ns : first;
	to = f && f->to_ns ? f->to_ns : last < INT64_MAX ? last + 1 : last;
	if ((!nmatch && !(f && f->from_ns && f->to_ns)) || to <= from)
		return -ENODATA;
	if (!rel_sec(from, origin, &c0, &rem) || !rel_sec(to - 1, origin, &c1, &rem) ||
	    c1 - c0 >= AGG_CAPVIEW_MAX_SECONDS)
		return -E2BIG;
	ncols = (size_t)(c1 - c0 + 1);
	if (!(cells = calloc(ncols * rows, sizeof(*cells))))
		return -ENOMEM;
	for (size_t i = 0; i < c->n_samples; i++) {
		int64_t t = c->samples[i]->time_ns;
		size_t k;

		if (!match(cv, i, f) || t < from || t >= to || !rel_sec(t, origin, &s, &rem))
			continue;
		k = (size_t)(s - c0) * rows + (size_t)(rem * rows / SH_NS_PER_SEC);
		if (++cells[k] > max)
			max = cells[k];
	}
	cw = 1200 / (unsigned)ncols;
	cw = cw < 4 ? 4 : cw > 24 ? 24 : cw;
	ch = 400 / rows;
	ch = ch < 2 ? 2 : ch > 16 ? 16 : ch;
	gw = cw * (unsigned)ncols;
	gh = ch * rows;
	width = HM_LEFT + gw + 30;
	width = width < 760 ? 760 : width;
	height = HM_TOP + gh + HM_AXIS;
	svg_head(out, width, height);
	/* the group carries the rows per second for the script */
	fprintf(out, "<g id=\"heatmap\" data-rows=\"%u\">\n", rows);
	fprintf(out, "<text class=\"ti\" x=\"%d\" y=\"20\">", HM_LEFT);
	if (o->title) {
		put_xml_raw(out, o->title, 200);
	} else {
		fputs("Heat map of capture ", out);
		put_xml_raw(out, str_or(c->capture_id, "?"), 64);
		if (c->host) {
			fputs(" of ", out);
			put_xml_raw(out, str_or(c->host->hostname, "?"), 64);
		}
	}
	fprintf(out, "</text>\n<text class=\"sub\" x=\"%d\" y=\"36\">", HM_LEFT);
	fprintf(out,
		"%" PRIu64 " samples (darkest cell: %" PRIu64 "); +0 = %s; rows: %g ms "
		"within the second",
		nmatch, max, fmt_time(origin, cb), 1000.0 / rows);
	fputs("</text>\n", out);
	fprintf(out, "<text id=\"sel\" x=\"%d\" y=\"50\" data-hint=\"", HM_LEFT);
	if (o->cmd_hint)
		put_xml_raw(out, o->cmd_hint, 200);
	fputs("\">click two cells to pick a range</text>\n", out);
	/* y axis */
	for (unsigned r = 0; r < rows; r += rows >= 10 ? rows / 10 : 1)
		fprintf(out, "<text x=\"%d\" y=\"%u\" text-anchor=\"end\">%u ms</text>\n",
			HM_LEFT - 4, HM_TOP + r * ch + (ch < 10 ? ch : 10), r * 1000 / rows);
	for (size_t col = 0; col < ncols; col++) {
		for (unsigned r = 0; r < rows; r++) {
			uint64_t n = cells[col * rows + r];
			int64_t sec = c0 + (int64_t)col;
			double t0 = (double)sec + (double)r / rows;

			heat_colour(n, max, fill, sizeof(fill));
			fprintf(out,
				"<rect class=\"c\" x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" "
				"fill=\"%s\" data-s=\"%" PRId64 "\" data-r=\"%u\" data-n=\"%" PRIu64
				"\"",
				HM_LEFT + (unsigned)col * cw, HM_TOP + r * ch, cw, ch, fill, sec, r,
				n);
			if (n)
				fprintf(out,
					"><title>%+.3fs .. %+.3fs: %" PRIu64
					" samples</title></rect>\n",
					t0, t0 + 1.0 / rows, n);
			else
				fputs("/>\n", out);
		}
	}
	/* x axis */
	step = nice_step((60 + cw - 1) / cw);
	for (size_t col = 0; col < ncols; col++) {
		int64_t sec = c0 + (int64_t)col;
		unsigned x = HM_LEFT + (unsigned)col * cw;

		if (sec % step != 0)
			continue;
		fprintf(out, "<line x1=\"%u\" y1=\"%u\" x2=\"%u\" y2=\"%u\" stroke=\"#666\"/>", x,
			HM_TOP + gh, x, HM_TOP + gh + 4);
		fprintf(out, "<text x=\"%u\" y=\"%u\">%+" PRId64 "s</text>", x, HM_TOP + gh + 15,
			sec);
		fprintf(out, "<text class=\"sub\" x=\"%u\" y=\"%u\">%s</text>\n", x,
			HM_TOP + gh + 27, fmt_clock(sec_time(origin, sec), cb));
	}
	/* spike events under the axis */
	for (size_t i = 0; i < c->n_events; i++) {
		const Spikehound__SpikeEvent *e = c->events[i];
		int64_t es, erem;
		double x, w;
		char db[32], rb[32];

		if (e->start_ns < from || e->start_ns >= to ||
		    !rel_sec(e->start_ns, origin, &es, &erem))
			continue;
		x = HM_LEFT + ((double)(es - c0) + (double)erem / 1e9) * cw;
		w = e->duration_ns > 0 && e->duration_ns < 3600 * SH_NS_PER_SEC
			    ? (double)e->duration_ns / 1e9 * cw
			    : 0;
		w = w < 2 ? 2 : w;
		fprintf(out, "<g class=\"ev\"><title>spike: ");
		put_xml_raw(out, str_or(e->kind, "?"), 64);
		fprintf(out, " %s at %s", fmt_dur(e->duration_ns, db),
			fmt_rel(e->start_ns, origin, rb));
		if (e->victim) {
			fputs(", victim ", out);
			put_xml_raw(out, str_or(e->victim->comm, "?"), 64);
			fprintf(out, "[%d]", e->victim->pid);
		}
		fprintf(out,
			"</title><line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%u\" stroke=\"#c00\" "
			"stroke-opacity=\"0.5\"/><rect x=\"%.1f\" y=\"%u\" width=\"%.1f\" height=\"6\" "
			"fill=\"#c00\"/></g>\n",
			x, HM_TOP, x, HM_TOP + gh, x, HM_TOP + gh + 34, w);
	}
	fprintf(out,
		"<text class=\"sub\" x=\"%d\" y=\"%u\">red marks: spike events (hover for "
		"details)</text>\n",
		HM_LEFT, HM_TOP + gh + 56);
	fputs("</g>\n", out);
	fputs(heatmap_js, out);
	fputs("</svg>\n", out);
	free(cells);
	return ferror(out) ? -EIO : 0;
}

/* --- pprof --- */

typedef Perftools__Profiles__Profile PProfile;
typedef Perftools__Profiles__Sample PSample;
typedef Perftools__Profiles__Location PLocation;
typedef Perftools__Profiles__Function PFunction;
typedef Perftools__Profiles__Mapping PMapping;
typedef Perftools__Profiles__Label PLabel;
typedef Perftools__Profiles__Line PLine;
typedef Perftools__Profiles__ValueType PValueType;

/* struct pp builds a Profile whose every part is malloc'd, so
 * perftools__profiles__profile__free_unpacked frees it. */
struct pp {
	PProfile *p;
	struct smap strs, fns, locs, maps, samples;
	size_t cap_str, cap_fn, cap_loc, cap_map, cap_sample;
	bool *map_unresolved; /* per mapping: holds locations without functions */
	bool oom;
};

static int64_t pp_str(struct pp *x, const char *s)
{
	long e;

	if (x->oom)
		return 0;
	if ((e = smap_find(&x->strs, s, strlen(s), true)) < 0) {
		x->oom = true;
		return 0;
	}
	if (!x->strs.v[e].n[1]) { /* new */
		if (x->p->n_string_table == x->cap_str) {
			size_t cap = x->cap_str ? x->cap_str * 2 : 64;
			char **v = realloc(x->p->string_table, cap * sizeof(*v));

			if (!v) {
				x->oom = true;
				return 0;
			}
			x->p->string_table = v;
			x->cap_str = cap;
		}
		if (!(x->p->string_table[x->p->n_string_table] = strdup(s))) {
			x->oom = true;
			return 0;
		}
		x->strs.v[e].n[0] = x->p->n_string_table++;
		x->strs.v[e].n[1] = 1;
	}
	return (int64_t)x->strs.v[e].n[0];
}

/* grow_ptrs returns the array of n pointers p with room for one more: p
 * itself or a larger copy; NULL on allocation failure (p unchanged). */
static void *grow_ptrs(void *p, size_t n, size_t *cap)
{
	size_t c;
	void *q;

	if (n < *cap)
		return p;
	c = *cap ? *cap * 2 : 64;
	if (!(q = realloc(p, c * sizeof(void *))))
		return NULL;
	*cap = c;
	return q;
}

static uint64_t pp_function(struct pp *x, const char *name, char type)
{
	char key[AGG_CAPVIEW_MAX_NAME + 16];
	PFunction *fn, **fv;
	long e;
	int n = snprintf(key, sizeof(key), "%c%s", type, name);

	if (x->oom || n < 0)
		return 0;
	if ((e = smap_find(&x->fns, key, strlen(key), true)) < 0) {
		x->oom = true;
		return 0;
	}
	if (x->fns.v[e].n[0])
		return x->fns.v[e].n[0];
	if (!(fv = grow_ptrs(x->p->function, x->p->n_function, &x->cap_fn))) {
		x->oom = true;
		return 0;
	}
	x->p->function = fv;
	if (!(fn = malloc(sizeof(*fn)))) {
		x->oom = true;
		return 0;
	}
	perftools__profiles__function__init(fn);
	fn->id = x->p->n_function + 1;
	fn->name = fn->system_name = pp_str(x, name);
	x->p->function[x->p->n_function++] = fn;
	x->fns.v[e].n[0] = fn->id;
	return fn->id;
}

static uint64_t pp_mapping(struct pp *x, const char *key, const char *build_id,
			   const char *filename)
{
	PMapping *m, **mv;
	long e;

	if (x->oom)
		return 0;
	if ((e = smap_find(&x->maps, key, strlen(key), true)) < 0) {
		x->oom = true;
		return 0;
	}
	if (x->maps.v[e].n[0]) {
		m = x->p->mapping[x->maps.v[e].n[0] - 1];
		if (m->filename == 0 && filename && filename[0])
			m->filename = pp_str(x, filename);
		return m->id;
	}
	if (!(mv = grow_ptrs(x->p->mapping, x->p->n_mapping, &x->cap_map))) {
		x->oom = true;
		return 0;
	}
	x->p->mapping = mv;
	if (!(m = malloc(sizeof(*m)))) {
		x->oom = true;
		return 0;
	}
	perftools__profiles__mapping__init(m);
	m->id = x->p->n_mapping + 1;
	m->build_id = build_id && build_id[0] ? pp_str(x, build_id) : 0;
	m->filename = filename && filename[0] ? pp_str(x, filename) : 0;
	x->p->mapping[x->p->n_mapping++] = m;
	x->maps.v[e].n[0] = m->id;
	return m->id;
}

/* hex_build_id copies s to out when it is a plausible hex build id, else "". */
static void hex_build_id(const char *s, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	if (!s)
		return;
	for (; s[n]; n++)
		if (n + 1 >= len || !((s[n] >= '0' && s[n] <= '9') ||
				      (s[n] >= 'a' && s[n] <= 'f') || (s[n] >= 'A' && s[n] <= 'F')))
			return;
	memcpy(out, s, n + 1);
}

/* unknown_module stores the module of "[unknown] (module)" in out. */
static void unknown_module(const char *name, size_t n, char *out, size_t len)
{
	out[0] = '\0';
	if (n > 12 && strncmp(name, "[unknown] (", 11) == 0 && name[n - 1] == ')' && n - 12 < len) {
		memcpy(out, name + 11, n - 12);
		out[n - 12] = '\0';
	}
}

/* pp_location returns the id of the location of one frame. */
static uint64_t pp_location(struct pp *x, char type, const char *name, const char *bid,
			    uint64_t offset)
{
	char module[AGG_CAPVIEW_MAX_NAME], mkey[AGG_CAPVIEW_MAX_NAME + 8];
	struct sbuf key = {0};
	PLocation *l, **lv;
	uint64_t map = 0, fn = 0;
	bool kernel = is_kernel_type(type), with_fn;
	long e;

	unknown_module(name, strlen(name), module, sizeof(module));
	if (kernel) {
		snprintf(mkey, sizeof(mkey), "k");
		map = pp_mapping(x, mkey, NULL, "[kernel.kallsyms]");
		offset = 0;
	} else if (bid[0]) {
		snprintf(mkey, sizeof(mkey), "b%s", bid);
		map = pp_mapping(x, mkey, bid, module);
	} else if (module[0]) {
		snprintf(mkey, sizeof(mkey), "m%s", module);
		map = pp_mapping(x, mkey, NULL, module);
	}
	/* unresolved frames in a mapping with a build id are left for the
	 * viewer to symbolize; every other frame gets a function */
	with_fn = !(type == 'x' && bid[0]);
	sb_printf(&key, "%c%" PRIu64 "/%" PRIx64 "/", type, map, offset);
	if (with_fn)
		sb_str(&key, name);
	if (key.oom || x->oom) {
		free(key.p);
		x->oom = true;
		return 0;
	}
	e = smap_find(&x->locs, key.p, key.len, true);
	free(key.p);
	if (e < 0) {
		x->oom = true;
		return 0;
	}
	if (x->locs.v[e].n[0])
		return x->locs.v[e].n[0];
	if (with_fn && !(fn = pp_function(x, name, type)))
		return 0;
	if (!(lv = grow_ptrs(x->p->location, x->p->n_location, &x->cap_loc))) {
		x->oom = true;
		return 0;
	}
	x->p->location = lv;
	if (!(l = malloc(sizeof(*l)))) {
		x->oom = true;
		return 0;
	}
	perftools__profiles__location__init(l);
	l->id = x->p->n_location + 1;
	l->mapping_id = map;
	l->address = offset;
	x->p->location[x->p->n_location++] = l;
	if (with_fn) {
		PLine *ln = malloc(sizeof(*ln));

		if (!ln || !(l->line = malloc(sizeof(*l->line)))) {
			free(ln);
			x->oom = true;
			return 0;
		}
		perftools__profiles__line__init(ln);
		ln->function_id = fn;
		l->line[0] = ln;
		l->n_line = 1;
	}
	if (map) {
		PMapping *m = x->p->mapping[map - 1];

		if (!with_fn)
			x->map_unresolved[map - 1] = true;
		if (offset >= m->memory_limit)
			m->memory_limit = offset + 1;
	}
	x->locs.v[e].n[0] = l->id;
	return l->id;
}

/* stack_locations fills *ids (malloc'd) with the locations of stack j of
 * cv, leaf first. */
static int stack_locations(struct pp *x, const struct agg_capview *cv, uint32_t j, uint64_t **ids,
			   size_t *n)
{
	const Spikehound__CaptureStack *st = j == NO_STACK ? NULL : cv->cap->stacks[j];
	const char *key = st ? cv->keys[j] : MISSING_KEY, *frames[2 * AGG_CAPVIEW_MAX_FRAMES + 1];
	size_t lens[2 * AGG_CAPVIEW_MAX_FRAMES + 1], nf = 0, nu = 0;
	char name[AGG_CAPVIEW_MAX_NAME + 8], bid[130];

	for (const char *p = key; nf < sizeof(lens) / sizeof(lens[0]);) {
		const char *q = strchr(p, ';');

		frames[nf] = p;
		lens[nf++] = q ? (size_t)(q - p) : strlen(p);
		if (!q)
			break;
		p = q + 1;
	}
	for (size_t i = 1; i < nf; i++)
		nu += !is_kernel_type(frames[i][0]);
	*n = 0;
	if (!(*ids = malloc((nf ? nf : 1) * sizeof(**ids))))
		return -ENOMEM;
	if (nf == 1) { /* no frames: the comm is in the labels */
		snprintf(name, sizeof(name), "%s", st ? "[no stack]" : "[missing stack]");
		if (!((*ids)[0] = pp_location(x, 'u', name, "", 0)))
			return -ENOMEM;
		*n = 1;
		return 0;
	}
	for (size_t i = nf; i-- > 1;) {
		char type = frames[i][0];
		uint64_t off = 0, id;

		snprintf(name, sizeof(name), "%.*s", (int)lens[i] - 1, frames[i] + 1);
		bid[0] = '\0';
		if (!is_kernel_type(type) && st) {
			size_t ui = nu - i; /* frames[1] is user frame nu-1 */

			if (ui < st->n_user_build_ids)
				hex_build_id(st->user_build_ids[ui], bid, sizeof(bid));
			if (ui < st->n_user_offsets)
				off = st->user_offsets[ui];
		}
		if (!(id = pp_location(x, type, name, bid, off)))
			return -ENOMEM;
		(*ids)[(*n)++] = id;
	}
	return 0;
}

/* label makes a string label (str, or num as text: viewers such as
 * Pyroscope keep only string labels, and pprof drops numeric zeros). */
static PLabel *label(struct pp *x, const char *key, const char *str, int64_t num)
{
	PLabel *l = malloc(sizeof(*l));
	char buf[24];

	if (!l) {
		x->oom = true;
		return NULL;
	}
	perftools__profiles__label__init(l);
	l->key = pp_str(x, key);
	if (!str) {
		snprintf(buf, sizeof(buf), "%" PRId64, num);
		str = buf;
	}
	l->str = pp_str(x, str);
	return l;
}

struct sample_key {
	uint32_t stack;
	int32_t tid;
	uint32_t cpu;
};

static int pp_build(struct pp *x, const struct agg_capview *cv, const struct agg_capview_filter *f)
{
	const Spikehound__Capture *c = cv->cap;
	uint32_t hz = c->sample_hz ? c->sample_hz : AGG_CAPVIEW_DEFAULT_HZ;
	int64_t period = SH_NS_PER_SEC / hz, first = 0, last = 0;
	uint64_t **locs = NULL;
	size_t *nlocs = NULL, ns = c->n_stacks + 1;
	uint64_t nmatch = 0;
	int rv = 0;

	pp_str(x, "");
	if (!(x->p->sample_type = calloc(2, sizeof(PValueType *))) ||
	    !(x->p->sample_type[0] = malloc(sizeof(PValueType))))
		return -ENOMEM;
	x->p->n_sample_type = 1;
	if (!(x->p->sample_type[1] = malloc(sizeof(PValueType))))
		return -ENOMEM;
	x->p->n_sample_type = 2;
	if (!(x->p->period_type = malloc(sizeof(PValueType))))
		return -ENOMEM;
	perftools__profiles__value_type__init(x->p->sample_type[0]);
	perftools__profiles__value_type__init(x->p->sample_type[1]);
	perftools__profiles__value_type__init(x->p->period_type);
	x->p->sample_type[0]->type = pp_str(x, "samples");
	x->p->sample_type[0]->unit = pp_str(x, "count");
	x->p->sample_type[1]->type = x->p->period_type->type = pp_str(x, "cpu");
	x->p->sample_type[1]->unit = x->p->period_type->unit = pp_str(x, "nanoseconds");
	x->p->default_sample_type = pp_str(x, "cpu");
	x->p->period = period;

	/* samples counted per (stack, thread, CPU) */
	for (size_t i = 0; i < c->n_samples; i++) {
		const Spikehound__CaptureSample *s = c->samples[i];
		struct sample_key k = {cv->sidx[i], s->tid, s->cpu};
		long e;

		if (!match(cv, i, f))
			continue;
		if (nmatch++ == 0 || s->time_ns < first)
			first = s->time_ns;
		if (nmatch == 1 || s->time_ns > last)
			last = s->time_ns;
		if ((e = smap_find(&x->samples, &k, sizeof(k), true)) < 0)
			return -ENOMEM;
		x->samples.v[e].n[0]++;
	}
	x->p->time_nanos = f && f->from_ns ? f->from_ns : first;
	if (f && f->to_ns)
		last = f->to_ns;
	else if (__builtin_add_overflow(last, period, &last))
		last = INT64_MAX;
	if (__builtin_sub_overflow(last, x->p->time_nanos, &x->p->duration_nanos) ||
	    x->p->duration_nanos < 0)
		x->p->duration_nanos = 0;

	locs = calloc(ns, sizeof(*locs));
	nlocs = calloc(ns, sizeof(*nlocs));
	if (!locs || !nlocs ||
	    !(x->p->sample = calloc(x->samples.nv ? x->samples.nv : 1, sizeof(PSample *)))) {
		rv = -ENOMEM;
		goto out;
	}
	x->cap_sample = x->samples.nv;
	for (size_t i = 0; i < x->samples.nv && rv == 0; i++) {
		struct sample_key k;
		const Spikehound__CaptureStack *st;
		size_t slot;
		PSample *ps;
		char comm[80];

		memcpy(&k, x->samples.v[i].key, sizeof(k));
		slot = k.stack == NO_STACK ? c->n_stacks : k.stack;
		st = k.stack == NO_STACK ? NULL : c->stacks[k.stack];
		if (!locs[slot] &&
		    (rv = stack_locations(x, cv, k.stack, &locs[slot], &nlocs[slot])) < 0)
			break;
		if (!(ps = malloc(sizeof(*ps)))) {
			rv = -ENOMEM;
			break;
		}
		perftools__profiles__sample__init(ps);
		x->p->sample[x->p->n_sample++] = ps;
		ps->location_id = malloc(nlocs[slot] * sizeof(uint64_t));
		ps->value = malloc(2 * sizeof(int64_t));
		ps->label = calloc(4, sizeof(PLabel *));
		if (!ps->location_id || !ps->value || !ps->label) {
			rv = -ENOMEM;
			break;
		}
		memcpy(ps->location_id, locs[slot], nlocs[slot] * sizeof(uint64_t));
		ps->n_location_id = nlocs[slot];
		ps->n_value = 2;
		ps->value[0] = (int64_t)x->samples.v[i].n[0];
		ps->value[1] = (int64_t)x->samples.v[i].n[0] * period;
		{
			const char *key = st ? cv->keys[k.stack] : MISSING_KEY;
			const char *semi = strchr(key, ';');
			size_t n = semi ? (size_t)(semi - key) : strlen(key);

			snprintf(comm, sizeof(comm), "%.*s", (int)n - 1, key + 1);
		}
		if (st && (ps->label[ps->n_label] = label(x, "pid", NULL, st->pid)))
			ps->n_label++;
		if ((ps->label[ps->n_label] = label(x, "tid", NULL, k.tid)))
			ps->n_label++;
		if ((ps->label[ps->n_label] = label(x, "cpu", NULL, k.cpu)))
			ps->n_label++;
		if ((ps->label[ps->n_label] = label(x, "comm", comm, 0)))
			ps->n_label++;
		if (x->oom)
			rv = -ENOMEM;
	}
	for (size_t i = 0; i < x->p->n_mapping; i++)
		x->p->mapping[i]->has_functions = !x->map_unresolved[i];
	if (rv == 0) {
		struct sbuf b = {0};
		char *id = cleaned(str_or(c->capture_id, "?"), 64);
		char *host = cleaned(c->host ? str_or(c->host->hostname, "?") : "?", 64);

		if (id && host)
			sb_printf(&b, "spikehound capture %s of %s", id, host);
		free(id);
		free(host);
		if (b.p && !b.oom && (x->p->comment = malloc(sizeof(int64_t)))) {
			x->p->comment[0] = pp_str(x, b.p);
			x->p->n_comment = 1;
		}
		free(b.p);
	}
	if (x->oom)
		rv = -ENOMEM;
out:
	if (locs)
		for (size_t i = 0; i < ns; i++)
			free(locs[i]);
	free(locs);
	free(nlocs);
	return rv;
}

static int gzip(const uint8_t *in, size_t len, uint8_t **out, size_t *olen)
{
	z_stream zs;
	uLong bound;
	uint8_t *buf;

	if (len > UINT32_MAX)
		return -EFBIG;
	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return -ENOMEM;
	bound = deflateBound(&zs, (uLong)len) + 32;
	if (!(buf = malloc(bound))) {
		deflateEnd(&zs);
		return -ENOMEM;
	}
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = buf;
	zs.avail_out = (uInt)bound;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&zs);
		free(buf);
		return -EIO;
	}
	*olen = zs.total_out;
	*out = buf;
	deflateEnd(&zs);
	return 0;
}

int agg_capview_pprof(const struct agg_capview *cv, const struct agg_capview_filter *f,
		      uint8_t **out, size_t *len)
{
	struct pp x = {0};
	uint8_t *raw = NULL;
	size_t rlen;
	int rv;

	*out = NULL;
	*len = 0;
	if (!(x.p = malloc(sizeof(*x.p))))
		return -ENOMEM;
	perftools__profiles__profile__init(x.p);
	/* at most one mapping per location, locations at most one per frame */
	x.map_unresolved = NULL;
	{
		size_t frames = 1;

		for (size_t i = 0; i < cv->cap->n_stacks; i++)
			frames += cv->cap->stacks[i]->n_user_frames + 1;
		if (!(x.map_unresolved = calloc(frames, sizeof(bool)))) {
			perftools__profiles__profile__free_unpacked(x.p, NULL);
			return -ENOMEM;
		}
	}
	rv = pp_build(&x, cv, f);
	if (rv == 0) {
		rlen = perftools__profiles__profile__get_packed_size(x.p);
		if (!(raw = malloc(rlen ? rlen : 1)))
			rv = -ENOMEM;
		else
			perftools__profiles__profile__pack(x.p, raw);
	}
	if (rv == 0)
		rv = gzip(raw, rlen, out, len);
	free(raw);
	free(x.map_unresolved);
	smap_fini(&x.strs);
	smap_fini(&x.fns);
	smap_fini(&x.locs);
	smap_fini(&x.maps);
	smap_fini(&x.samples);
	perftools__profiles__profile__free_unpacked(x.p, NULL);
	return rv;
}
