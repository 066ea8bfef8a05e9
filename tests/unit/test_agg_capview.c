/* test_agg_capview.c: viewing captures (aggregator/capview.c): folded
 * stacks, pprof (parsed back), SVG flame graphs and heat maps (checked for
 * well-formed XML and hostile names), diffs, the timeline, and payloads
 * that are empty, garbage, truncated, corrupted or a zstd bomb. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "capview.h"
#include "profile.pb-c.h"
#include "xmlcheck.h"

#define NS 1000000000LL
#define MS 1000000LL
#define T0 (1763806860LL * NS) /* a whole second */

/* --- building captures --- */

static Spikehound__CaptureStack *stack(uint32_t id, int32_t pid, const char *comm,
				       const char *const *user, const char *const *bids,
				       const uint64_t *offs, size_t nu, const char *const *kern,
				       size_t nk)
{
	Spikehound__CaptureStack *st = calloc(1, sizeof(*st));

	spikehound__capture_stack__init(st);
	st->id = id;
	st->pid = pid;
	st->comm = (char *)comm;
	st->user_frames = (char **)user;
	st->n_user_frames = nu;
	st->user_build_ids = (char **)bids;
	st->n_user_build_ids = bids ? nu : 0;
	st->user_offsets = (uint64_t *)offs;
	st->n_user_offsets = offs ? nu : 0;
	st->kernel_frames = (char **)kern;
	st->n_kernel_frames = nk;
	return st;
}

struct builder {
	Spikehound__Capture cap;
	Spikehound__CaptureSample **samples;
	size_t n, capn;
};

static void add_sample(struct builder *b, int64_t t, uint32_t cpu, int32_t tid, uint32_t stack_id)
{
	Spikehound__CaptureSample *s = calloc(1, sizeof(*s));

	spikehound__capture_sample__init(s);
	s->time_ns = t;
	s->cpu = cpu;
	s->tid = tid;
	s->stack_id = stack_id;
	if (b->n == b->capn) {
		b->capn = b->capn ? b->capn * 2 : 64;
		b->samples = realloc(b->samples, b->capn * sizeof(*b->samples));
	}
	b->samples[b->n++] = s;
}

static const char *const s1_user[] = {"compute", "main"};
static const char *const s1_bids[] = {"aabb", "aabb"};
static const uint64_t s1_offs[] = {0x1100, 0x1000};
static const char *const s2_user[] = {"read_req", "main"};
static const char *const s2_bids[] = {"aabb", "aabb"};
static const uint64_t s2_offs[] = {0x1200, 0x1000};
static const char *const s2_kern[] = {"tcp_recvmsg", "entry_SYSCALL_64"};
static const char *const s3_user[] = {"[unknown] (/usr/bin/stress)"};
static const char *const s3_bids[] = {"ccdd"};
static const uint64_t s3_offs[] = {0x500};
static const char *const s4_user[] = {"<script>alert('&')</script>", "a;b\n\x1b[31mred",
				      "\xff\xfe bad \xe2\x80\xae utf8"};
static const char *const s4_kern[] = {"\"quote\" & <k>"};

/* make_payload builds the test capture and returns it zstd-compressed.
 * Samples: S1 (web: main;compute) 10 per second for 10 s on CPU 0; S2
 * (web: main;read_req + kernel) 30 at +5.400..+5.415 on CPU 1; S3
 * (stress) 5 in second 5 on CPU 2; S4 (hostile names) 2 in second 2; one
 * sample naming a missing stack at +1.5. One runq spike at +5.4 for
 * 200 ms. */
static uint8_t *make_payload(size_t *len)
{
	struct builder b = {0};
	Spikehound__CaptureStack *stacks[4];
	Spikehound__SpikeEvent ev = SPIKEHOUND__SPIKE_EVENT__INIT, *evs[1] = {&ev};
	Spikehound__Task victim = SPIKEHOUND__TASK__INIT, culprit = SPIKEHOUND__TASK__INIT;
	Spikehound__Task *culprits[1] = {&culprit};
	Spikehound__MetricSecond ms[10], *msp[10];
	Spikehound__Hello host = SPIKEHOUND__HELLO__INIT;
	uint8_t *raw, *z;
	size_t rlen, zcap;

	spikehound__capture__init(&b.cap);
	stacks[0] = stack(1, 100, "web", s1_user, s1_bids, s1_offs, 2, NULL, 0);
	stacks[1] = stack(2, 100, "web", s2_user, s2_bids, s2_offs, 2, s2_kern, 2);
	stacks[2] = stack(3, 300, "stress", s3_user, s3_bids, s3_offs, 1, NULL, 0);
	stacks[3] = stack(4, 666, "evil;<x> &y", s4_user, NULL, NULL, 3, s4_kern, 1);
	for (int s = 0; s < 10; s++)
		for (int k = 0; k < 10; k++)
			add_sample(&b, T0 + s * NS + k * 100 * MS + 50 * MS, 0, 101, 1);
	for (int k = 0; k < 30; k++)
		add_sample(&b, T0 + 5 * NS + 400 * MS + k * MS / 2, 1, 101, 2);
	for (int k = 0; k < 5; k++)
		add_sample(&b, T0 + 5 * NS + 700 * MS + k * 10 * MS, 2, 301, 3);
	add_sample(&b, T0 + 2 * NS + 10 * MS, 3, 667, 4);
	add_sample(&b, T0 + 2 * NS + 30 * MS, 3, 667, 4);
	add_sample(&b, T0 + 1 * NS + 500 * MS, 3, 5, 99);

	host.hostname = "web-01";
	host.host_id = "0123456789abcdef0123456789abcdef";
	host.kernel_release = "6.1.0-18-amd64";
	host.cpu_count = 4;
	b.cap.capture_id = "7f1c2b9e-0000-4000-8000-000000000001";
	b.cap.host = &host;
	b.cap.from_ns = T0;
	b.cap.to_ns = T0 + 10 * NS;
	b.cap.held_from_ns = T0;
	b.cap.held_to_ns = T0 + 10 * NS;
	b.cap.trigger = "local:runq";
	b.cap.sample_hz = 100;
	b.cap.stacks = stacks;
	b.cap.n_stacks = 4;
	b.cap.samples = b.samples;
	b.cap.n_samples = b.n;

	victim.pid = 100;
	victim.tid = 101;
	victim.comm = "web";
	culprit.pid = 300;
	culprit.tid = 301;
	culprit.comm = "stress";
	culprit.role = "ran_instead";
	ev.kind = "runq";
	ev.start_ns = T0 + 5 * NS + 400 * MS;
	ev.duration_ns = 200 * MS;
	ev.cpu = 1;
	ev.victim = &victim;
	ev.culprits = culprits;
	ev.n_culprits = 1;
	ev.detail = "waited behind stress";
	b.cap.events = evs;
	b.cap.n_events = 1;
	for (int i = 0; i < 10; i++) {
		spikehound__metric_second__init(&ms[i]);
		ms[i].time_ns = T0 + i * NS;
		ms[i].cpu_user_pct = 10.0f + (float)i;
		ms[i].cpu_sys_pct = 2.5f;
		ms[i].procs_running = i == 5 ? 9 : 2;
		ms[i].psi_cpu_some_avg10 = -1;
		ms[i].pgscan_direct = i == 5 ? 1200 : 0;
		msp[i] = &ms[i];
	}
	b.cap.metrics = msp;
	b.cap.n_metrics = 10;

	rlen = spikehound__capture__get_packed_size(&b.cap);
	raw = malloc(rlen);
	spikehound__capture__pack(&b.cap, raw);
	zcap = ZSTD_compressBound(rlen);
	z = malloc(zcap);
	*len = ZSTD_compress(z, zcap, raw, rlen, 3);
	assert_false(ZSTD_isError(*len));
	free(raw);
	for (size_t i = 0; i < b.n; i++)
		free(b.samples[i]);
	free(b.samples);
	for (int i = 0; i < 4; i++)
		free(stacks[i]);
	return z;
}

static struct agg_capview *load_test_capture(void)
{
	struct agg_capview *cv = NULL;
	char err[AGG_CAPVIEW_ERRLEN];
	size_t len;
	uint8_t *z = make_payload(&len);

	assert_int_equal(agg_capview_load(z, len, 0, &cv, err, sizeof(err)), 0);
	free(z);
	return cv;
}

/* --- output helpers --- */

struct mem {
	char *p;
	size_t len;
	FILE *f;
};

static void mem_open(struct mem *m)
{
	m->p = NULL;
	m->len = 0;
	m->f = open_memstream(&m->p, &m->len);
	assert_non_null(m->f);
}

static void mem_close(struct mem *m)
{
	assert_int_equal(fclose(m->f), 0);
	m->f = NULL;
}

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* text_ok: valid UTF-8 with no control characters but newlines. */
static bool text_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = *p < 0x80		 ? 1
			   : (*p & 0xe0) == 0xc0 ? 2
			   : (*p & 0xf0) == 0xe0 ? 3
			   : (*p & 0xf8) == 0xf0 ? 4
						 : 0;

		if (n == 0 || (*p < 0x20 && *p != '\n') || *p == 0x7f)
			return false;
		for (size_t i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				return false;
		if (n == 3 && p[0] == 0xe2 && p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae)
			return false; /* bidi override */
		p += n;
	}
	return true;
}

/* frame_width returns the width of the frame whose tooltip starts with
 * title (-1 when absent). */
static double frame_width(const char *svg, const char *title)
{
	char key[256];
	const char *p;

	snprintf(key, sizeof(key), "<title>%s (", title);
	if (!(p = strstr(svg, key)) || !(p = strstr(p, "width=\"")))
		return -1;
	return strtod(p + 7, NULL);
}

/* frame_fill returns the fill of the frame whose tooltip starts with title. */
static const char *frame_fill(const char *svg, const char *title)
{
	static char fill[16];
	char key[256];
	const char *p;

	snprintf(key, sizeof(key), "<title>%s (", title);
	if (!(p = strstr(svg, key)) || !(p = strstr(p, "fill=\"")))
		return "";
	snprintf(fill, sizeof(fill), "%.7s", p + 6);
	return fill;
}

/* fill_blue tells whether "#rrggbb" is more blue than red. */
static bool fill_blue(const char *fill)
{
	unsigned r, g, b;

	assert_int_equal(sscanf(fill, "#%2x%2x%2x", &r, &g, &b), 3);
	return b > r;
}

/* --- tests --- */

static void test_folded(void **state)
{
	struct agg_capview *cv = load_test_capture();
	struct agg_capview_set *s = agg_capview_set_new();
	struct agg_capview_filter f = {0};
	uint64_t added;
	struct mem m;

	assert_int_equal(agg_capview_set_add(s, 0, cv, NULL, &added), 0);
	assert_int_equal(added, 138);
	assert_int_equal(agg_capview_set_total(s, 0), 138);
	assert_int_equal(agg_capview_set_stacks(s), 5);
	mem_open(&m);
	assert_int_equal(agg_capview_write_folded(m.f, s, 0, 0), 0);
	mem_close(&m);
	assert_non_null(strstr(m.p, "web;main;compute 100\n"));
	assert_non_null(strstr(m.p, "web;main;read_req;entry_SYSCALL_64;tcp_recvmsg 30\n"));
	assert_non_null(strstr(m.p, "stress;[unknown] (/usr/bin/stress) 5\n"));
	assert_non_null(strstr(m.p, "[missing stack] 1\n"));
	/* the hostile stack: one line, no ';' inside frames, no controls */
	assert_non_null(strstr(m.p, "evil_<x>_&y;"));
	assert_non_null(strstr(m.p, "a_b??[31mred"));
	assert_int_equal(count(m.p, "\n"), 5);
	assert_true(text_ok(m.p));
	free(m.p);

	mem_open(&m);
	assert_int_equal(agg_capview_write_folded(m.f, s, 0, AGG_CAPVIEW_KSUFFIX), 0);
	mem_close(&m);
	assert_non_null(strstr(m.p, "web;main;read_req;entry_SYSCALL_64_[k];tcp_recvmsg_[k] 30\n"));
	assert_non_null(strstr(m.p, "web;main;compute 100\n"));
	free(m.p);
	agg_capview_set_free(s);

	/* second 5 only; then CPU 1; then pid 300 */
	f.from_ns = T0 + 5 * NS;
	f.to_ns = T0 + 6 * NS;
	assert_int_equal(agg_capview_count(cv, &f), 45);
	s = agg_capview_set_new();
	assert_int_equal(agg_capview_set_add(s, 0, cv, &f, &added), 0);
	assert_int_equal(added, 45);
	mem_open(&m);
	assert_int_equal(agg_capview_write_folded(m.f, s, 0, 0), 0);
	mem_close(&m);
	assert_string_equal(m.p, "stress;[unknown] (/usr/bin/stress) 5\n"
				 "web;main;compute 10\n"
				 "web;main;read_req;entry_SYSCALL_64;tcp_recvmsg 30\n");
	free(m.p);
	agg_capview_set_free(s);
	f = (struct agg_capview_filter){.has_cpu = true, .cpu = 1};
	assert_int_equal(agg_capview_count(cv, &f), 30);
	f = (struct agg_capview_filter){.has_pid = true, .pid = 300};
	assert_int_equal(agg_capview_count(cv, &f), 5);

	/* top stacks */
	s = agg_capview_set_new();
	assert_int_equal(agg_capview_set_add(s, 0, cv, NULL, NULL), 0);
	mem_open(&m);
	assert_int_equal(agg_capview_write_top(m.f, s, 0, 2), 0);
	mem_close(&m);
	assert_int_equal(count(m.p, "\n"), 3);
	assert_non_null(strstr(m.p, "     100   72.5  web;main;compute\n"));
	free(m.p);
	agg_capview_set_free(s);
	agg_capview_free(cv);
}

static void test_pprof(void **state)
{
	struct agg_capview *cv = load_test_capture();
	Perftools__Profiles__Profile *p;
	uint8_t *gz, *raw;
	size_t gzlen;
	uLongf rawlen = 1 << 20;
	z_stream zs = {0};
	int64_t count = 0, cpu_ns = 0;
	bool saw_compute = false, saw_tcp = false, saw_aabb = false, saw_ccdd = false,
	     saw_kernel = false, saw_unresolved = false, saw_comm = false, saw_cpu0 = false,
	     saw_pid = false;

	assert_int_equal(agg_capview_pprof(cv, NULL, &gz, &gzlen), 0);
	assert_true(gzlen > 18 && gz[0] == 0x1f && gz[1] == 0x8b);
	raw = malloc(rawlen);
	assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
	zs.next_in = gz;
	zs.avail_in = (uInt)gzlen;
	zs.next_out = raw;
	zs.avail_out = (uInt)rawlen;
	assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
	rawlen = zs.total_out;
	inflateEnd(&zs);
	p = perftools__profiles__profile__unpack(NULL, rawlen, raw);
	assert_non_null(p);
	assert_true(p->n_string_table > 0);
	assert_string_equal(p->string_table[0], "");
	assert_int_equal(p->n_sample_type, 2);
	assert_string_equal(p->string_table[p->sample_type[0]->type], "samples");
	assert_string_equal(p->string_table[p->sample_type[0]->unit], "count");
	assert_string_equal(p->string_table[p->sample_type[1]->type], "cpu");
	assert_string_equal(p->string_table[p->sample_type[1]->unit], "nanoseconds");
	assert_int_equal(p->period, 10 * MS);
	assert_int_equal(p->time_nanos, T0 + 50 * MS);
	assert_true(p->duration_nanos > 9 * NS && p->duration_nanos < 11 * NS);
	for (size_t i = 0; i < p->n_sample; i++) {
		Perftools__Profiles__Sample *s = p->sample[i];

		assert_int_equal(s->n_value, 2);
		assert_true(s->n_location_id > 0);
		count += s->value[0];
		cpu_ns += s->value[1];
		assert_int_equal(s->value[1], s->value[0] * 10 * MS);
		for (size_t j = 0; j < s->n_label; j++) {
			const char *k = p->string_table[s->label[j]->key];
			const char *v = p->string_table[s->label[j]->str];

			saw_comm |= strcmp(k, "comm") == 0 && strcmp(v, "stress") == 0;
			saw_cpu0 |= strcmp(k, "cpu") == 0 && strcmp(v, "0") == 0;
			saw_pid |= strcmp(k, "pid") == 0 && strcmp(v, "100") == 0;
		}
		for (size_t j = 0; j < s->n_location_id; j++) {
			bool found = false;

			for (size_t k = 0; k < p->n_location; k++)
				found |= p->location[k]->id == s->location_id[j];
			assert_true(found);
		}
	}
	assert_int_equal(count, 138);
	assert_int_equal(cpu_ns, 138 * 10 * MS);
	assert_true(saw_comm && saw_cpu0 && saw_pid);
	for (size_t i = 0; i < p->n_function; i++) {
		const char *name = p->string_table[p->function[i]->name];

		saw_compute |= strcmp(name, "compute") == 0;
		saw_tcp |= strcmp(name, "tcp_recvmsg") == 0;
		assert_null(strstr(name, "[unknown] (/usr/bin/stress)"));
	}
	assert_true(saw_compute && saw_tcp);
	for (size_t i = 0; i < p->n_mapping; i++) {
		const char *bid = p->string_table[p->mapping[i]->build_id];
		const char *file = p->string_table[p->mapping[i]->filename];

		if (strcmp(bid, "aabb") == 0) {
			saw_aabb = true;
			assert_true(p->mapping[i]->has_functions);
		}
		if (strcmp(bid, "ccdd") == 0) {
			saw_ccdd = true;
			assert_string_equal(file, "/usr/bin/stress");
			assert_false(p->mapping[i]->has_functions);
		}
		saw_kernel |= strcmp(file, "[kernel.kallsyms]") == 0;
	}
	assert_true(saw_aabb && saw_ccdd && saw_kernel);
	/* the unresolved stress frame: left for the viewer, by build id and offset */
	for (size_t i = 0; i < p->n_location; i++)
		if (p->location[i]->n_line == 0) {
			assert_int_equal(p->location[i]->address, 0x500);
			saw_unresolved = true;
		}
	assert_true(saw_unresolved);
	perftools__profiles__profile__free_unpacked(p, NULL);
	free(raw);
	free(gz);

	/* a filter: CPU 1 only */
	{
		struct agg_capview_filter f = {.has_cpu = true, .cpu = 1};

		assert_int_equal(agg_capview_pprof(cv, &f, &gz, &gzlen), 0);
		free(gz);
	}
	agg_capview_free(cv);
}

static void test_flamegraph(void **state)
{
	struct agg_capview *cv = load_test_capture();
	struct agg_capview_set *s = agg_capview_set_new();
	struct agg_capview_svg_opts o = {.title = "t <&> \"x\"", .subtitle = "web-01 \x1b[0m"};
	double wc, wr, wall;
	struct mem m;

	assert_int_equal(agg_capview_set_add(s, 0, cv, NULL, NULL), 0);
	mem_open(&m);
	assert_int_equal(agg_capview_write_flamegraph(m.f, s, &o), 0);
	mem_close(&m);
	assert_true(sht_xml_ok(m.p, NULL, NULL));
	assert_true(text_ok(m.p));
	wc = frame_width(m.p, "compute");
	wr = frame_width(m.p, "read_req");
	wall = frame_width(m.p, "all");
	assert_true(wc > 0 && wr > 0);
	assert_true(fabs(wc / wr - 100.0 / 30.0) < 0.01);
	assert_true(fabs(wall - 1180) < 0.01);
	assert_true(fabs(frame_width(m.p, "main") / wall - 130.0 / 138.0) < 0.001);
	assert_true(frame_width(m.p, "tcp_recvmsg [kernel]") > 0);
	/* hostile names come out escaped */
	assert_non_null(strstr(m.p, "&lt;script&gt;alert(&#39;&amp;&#39;)&lt;/script&gt;"));
	assert_null(strstr(m.p, "<script>alert"));
	assert_non_null(strstr(m.p, "&quot;quote&quot; &amp; &lt;k&gt;"));
	assert_non_null(strstr(m.p, "t &lt;&amp;&gt; &quot;x&quot;"));
	/* kernel frames blue, user warm */
	assert_true(fill_blue(frame_fill(m.p, "tcp_recvmsg [kernel]")));
	assert_false(fill_blue(frame_fill(m.p, "compute")));
	free(m.p);

	/* an empty column draws nothing */
	mem_open(&m);
	o.diff = true;
	assert_int_equal(agg_capview_write_flamegraph(m.f, s, &o), -ENODATA);
	mem_close(&m);
	free(m.p);
	agg_capview_set_free(s);
	agg_capview_free(cv);
}

static void test_heatmap(void **state)
{
	struct agg_capview *cv = load_test_capture();
	struct agg_capview_heatmap_opts o = {.cmd_hint = "spikehound capture show --file x&y"};
	struct agg_capview_filter f = {0};
	struct mem m;
	const char *p, *best = NULL;
	long bestn = -1;

	mem_open(&m);
	assert_int_equal(agg_capview_write_heatmap(m.f, cv, NULL, &o), 0);
	mem_close(&m);
	assert_true(sht_xml_ok(m.p, NULL, NULL));
	assert_true(text_ok(m.p));
	assert_int_equal(count(m.p, "<rect class=\"c\""), 10 * 50);
	for (p = m.p; (p = strstr(p, "data-n=\"")) != NULL; p++) {
		long n = strtol(p + 8, NULL, 10);

		if (n > bestn) {
			bestn = n;
			best = p;
		}
	}
	assert_int_equal(bestn, 30);
	/* the busiest cell: second 5, 400..420 ms */
	while (best > m.p && strncmp(best, "<rect", 5) != 0)
		best--;
	assert_int_equal(strncmp(strstr(best, "data-s=\""), "data-s=\"5\" data-r=\"20\"", 22), 0);
	assert_non_null(strstr(m.p, "<title>spike: runq 200.0ms at +5.400s"));
	assert_non_null(strstr(m.p, "data-hint=\"spikehound capture show --file x&amp;y\""));
	free(m.p);

	/* rows and a range */
	o.rows = 10;
	f.from_ns = T0 + 2 * NS;
	f.to_ns = T0 + 4 * NS;
	mem_open(&m);
	assert_int_equal(agg_capview_write_heatmap(m.f, cv, &f, &o), 0);
	mem_close(&m);
	assert_int_equal(count(m.p, "<rect class=\"c\""), 2 * 10);
	free(m.p);

	/* nothing selected; a range too long */
	f = (struct agg_capview_filter){.has_cpu = true, .cpu = 42};
	mem_open(&m);
	assert_int_equal(agg_capview_write_heatmap(m.f, cv, &f, NULL), -ENODATA);
	f = (struct agg_capview_filter){.from_ns = T0, .to_ns = T0 + 7200 * NS};
	assert_int_equal(agg_capview_write_heatmap(m.f, cv, &f, NULL), -E2BIG);
	mem_close(&m);
	free(m.p);
	agg_capview_free(cv);
}

static void test_diff(void **state)
{
	struct agg_capview *cv = load_test_capture();
	struct agg_capview_set *s = agg_capview_set_new();
	struct agg_capview_filter before = {.from_ns = T0, .to_ns = T0 + 5 * NS};
	struct agg_capview_filter spike = {.from_ns = T0 + 5 * NS, .to_ns = T0 + 6 * NS};
	struct agg_capview_svg_opts o = {.diff = true, .label_a = "before", .label_b = "spike"};
	struct mem m;
	int64_t from, to;

	assert_int_equal(agg_capview_spike_window(cv, &from, &to), 0);
	assert_int_equal(from, T0 + 5 * NS + 400 * MS);
	assert_int_equal(to, T0 + 5 * NS + 600 * MS);
	assert_int_equal(agg_capview_set_add(s, 0, cv, &before, NULL), 0);
	assert_int_equal(agg_capview_set_add(s, 1, cv, &spike, NULL), 0);
	assert_int_equal(agg_capview_set_total(s, 0), 53);
	assert_int_equal(agg_capview_set_total(s, 1), 45);
	mem_open(&m);
	assert_int_equal(agg_capview_write_folded_diff(m.f, s, 0), 0);
	mem_close(&m);
	assert_non_null(strstr(m.p, "web;main;compute 50 10\n"));
	assert_non_null(strstr(m.p, "web;main;read_req;entry_SYSCALL_64;tcp_recvmsg 0 30\n"));
	assert_non_null(strstr(m.p, "[missing stack] 1 0\n"));
	free(m.p);

	mem_open(&m);
	assert_int_equal(agg_capview_write_flamegraph(m.f, s, &o), 0);
	mem_close(&m);
	assert_true(sht_xml_ok(m.p, NULL, NULL));
	/* drawn on the spike's layout: read_req 30 of 45, compute 10 of 45 */
	assert_true(fabs(frame_width(m.p, "read_req") / frame_width(m.p, "compute") - 3.0) < 0.01);
	assert_int_equal(strncmp(frame_fill(m.p, "read_req"), "#ff", 3), 0);   /* more */
	assert_int_equal(strncmp(frame_fill(m.p, "compute") + 5, "ff", 2), 0); /* less */
	assert_string_equal(frame_fill(m.p, "compute"), "#3737ff"); /* the largest change */
	assert_non_null(strstr(m.p, "<title>read_req (spike: 30 samples, 66.67%; before: 0, 0.00%; "
				    "change +66.67 points)"));
	/* stacks only in A are not drawn */
	assert_int_equal(frame_width(m.p, "evil_&lt;x&gt;_&amp;y"), -1);
	free(m.p);

	mem_open(&m);
	assert_int_equal(agg_capview_write_diff_top(m.f, s, 2), 0);
	mem_close(&m);
	assert_non_null(
		strstr(m.p, " +66.7pt        0    0.0       30   66.7  web;main;read_req;"));
	assert_int_equal(count(m.p, "\n"), 3);
	free(m.p);
	agg_capview_set_free(s);
	agg_capview_free(cv);
}

static void test_timeline(void **state)
{
	struct agg_capview *cv = load_test_capture();
	struct agg_capview_filter f = {0};
	struct mem m;
	json_t *j;

	mem_open(&m);
	assert_int_equal(agg_capview_write_header(m.f, cv), 0);
	assert_int_equal(agg_capview_write_timeline(m.f, cv, NULL), 0);
	mem_close(&m);
	assert_true(text_ok(m.p));
	assert_non_null(
		strstr(m.p, "host web-01 (0123456789abcdef0123456789abcdef), kernel 6.1.0"));
	assert_non_null(strstr(m.p, "138 samples at 100 Hz, 4 stacks, 1 spike events"));
	assert_non_null(strstr(m.p, "1 samples name stacks missing"));
	/* second 5: 45 samples, run queue 9, pgscan 1200, one spike */
	assert_non_null(strstr(m.p, "10:21:05.000     +5      45  15.0   2.5     9     -   0.0   "
				    "0.0     1200      1     0\n"));
	assert_non_null(strstr(m.p, "runq"));
	assert_non_null(strstr(m.p, "web[100/101]"));
	assert_non_null(strstr(m.p, "ran_instead stress[300/301]; waited behind stress"));
	free(m.p);

	f.from_ns = T0 + 7 * NS;
	mem_open(&m);
	assert_int_equal(agg_capview_write_timeline(m.f, cv, &f), 0);
	mem_close(&m);
	assert_null(strstr(m.p, "+5 "));
	assert_null(strstr(m.p, "runq"));
	assert_non_null(strstr(m.p, "+9"));
	free(m.p);

	j = agg_capview_meta_json(cv, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "capture_id")),
			    "7f1c2b9e-0000-4000-8000-000000000001");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(j, "events"), 0), "kind")),
			    "runq");
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(j, "window"), "samples")), 138);
	assert_int_equal(json_array_size(json_object_get(j, "seconds")), 10);
	json_decref(j);
	agg_capview_free(cv);
}

static void test_bad_payloads(void **state)
{
	struct agg_capview *cv = (void *)1;
	char err[AGG_CAPVIEW_ERRLEN];
	uint8_t *z, *big, *bomb, junk[100];
	size_t len, blen, raw = 64u << 20;
	static const char garbage[] = "hello, this is not a capture";

	assert_int_equal(agg_capview_load("", 0, 0, &cv, err, sizeof(err)), -EBADMSG);
	assert_null(cv);
	assert_non_null(strstr(err, "empty"));
	assert_int_equal(agg_capview_load(garbage, sizeof(garbage), 0, &cv, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "not zstd-compressed"));

	/* truncated */
	z = make_payload(&len);
	assert_int_equal(agg_capview_load(z, len / 2, 0, &cv, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "truncated"));
	assert_null(cv);
	/* trailing garbage */
	big = malloc(len + 8);
	memcpy(big, z, len);
	memcpy(big + len, "trailing", 8);
	assert_int_equal(agg_capview_load(big, len + 8, 0, &cv, err, sizeof(err)), -EBADMSG);
	free(big);
	/* a limit below the real size */
	assert_int_equal(agg_capview_load(z, len, 100, &cv, err, sizeof(err)), -EFBIG);
	free(z);

	/* valid zstd, not a Capture */
	memset(junk, 0xff, sizeof(junk));
	z = malloc(ZSTD_compressBound(sizeof(junk)));
	len = ZSTD_compress(z, ZSTD_compressBound(sizeof(junk)), junk, sizeof(junk), 1);
	assert_int_equal(agg_capview_load(z, len, 0, &cv, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "not a Capture"));
	free(z);

	/* a zstd bomb: 64 MiB of zeros in a few KiB, with a 1 MiB limit */
	big = calloc(1, raw);
	bomb = malloc(ZSTD_compressBound(raw));
	blen = ZSTD_compress(bomb, ZSTD_compressBound(raw), big, raw, 1);
	free(big);
	assert_true(blen < 64 * 1024);
	assert_int_equal(agg_capview_load(bomb, blen, 1u << 20, &cv, err, sizeof(err)), -EFBIG);
	assert_non_null(strstr(err, "too large"));
	assert_null(cv);
	free(bomb);
}

/* run_all runs every writer over cv: nothing may crash. */
static void run_all(struct agg_capview *cv)
{
	struct agg_capview_set *s = agg_capview_set_new();
	struct agg_capview_svg_opts o = {0};
	struct mem m;
	uint8_t *gz;
	size_t gzlen;
	json_t *j;
	int64_t a, b;

	assert_int_equal(agg_capview_set_add(s, 0, cv, NULL, NULL), 0);
	assert_int_equal(agg_capview_set_add(s, 1, cv, NULL, NULL), 0);
	mem_open(&m);
	agg_capview_write_header(m.f, cv);
	agg_capview_write_timeline(m.f, cv, NULL);
	agg_capview_write_folded(m.f, s, 0, AGG_CAPVIEW_KSUFFIX);
	agg_capview_write_folded_diff(m.f, s, 0);
	agg_capview_write_top(m.f, s, 0, 10);
	agg_capview_write_diff_top(m.f, s, 10);
	agg_capview_write_heatmap(m.f, cv, NULL, NULL);
	mem_close(&m);
	assert_true(text_ok(m.p));
	free(m.p);
	mem_open(&m);
	if (agg_capview_write_flamegraph(m.f, s, &o) == 0) {
		mem_close(&m);
		assert_true(sht_xml_ok(m.p, NULL, NULL));
	} else {
		mem_close(&m);
	}
	free(m.p);
	o.diff = true;
	mem_open(&m);
	agg_capview_write_flamegraph(m.f, s, &o);
	mem_close(&m);
	free(m.p);
	if (agg_capview_pprof(cv, NULL, &gz, &gzlen) == 0)
		free(gz);
	j = agg_capview_meta_json(cv, NULL);
	json_decref(j);
	agg_capview_spike_window(cv, &a, &b);
	agg_capview_set_free(s);
}

static void test_corrupted(void **state)
{
	char err[AGG_CAPVIEW_ERRLEN];
	size_t len, ok = 0;
	uint8_t *z = make_payload(&len), *c = malloc(len);
	struct agg_capview *cv;

	/* every prefix */
	for (size_t n = 0; n < len; n++) {
		if (agg_capview_load(z, n, 0, &cv, err, sizeof(err)) == 0) {
			run_all(cv);
			agg_capview_free(cv);
		}
	}
	/* every byte flipped: an error, or a capture the writers survive */
	for (size_t i = 0; i < len; i++) {
		memcpy(c, z, len);
		c[i] ^= (uint8_t)(0x5a + i);
		if (agg_capview_load(c, len, 0, &cv, err, sizeof(err)) == 0) {
			ok++;
			run_all(cv);
			agg_capview_free(cv);
		} else {
			assert_true(strlen(err) > 0);
		}
	}
	free(c);
	free(z);
	(void)ok;
}

/* compress_capture packs and compresses c. */
static uint8_t *compress_capture(const Spikehound__Capture *c, size_t *len)
{
	size_t rlen = spikehound__capture__get_packed_size(c);
	uint8_t *raw = malloc(rlen ? rlen : 1), *z;

	spikehound__capture__pack(c, raw);
	z = malloc(ZSTD_compressBound(rlen));
	*len = ZSTD_compress(z, ZSTD_compressBound(rlen), raw, rlen, 1);
	free(raw);
	return z;
}

static void test_hostile_structure(void **state)
{
	Spikehound__Capture cap = SPIKEHOUND__CAPTURE__INIT;
	Spikehound__CaptureStack st = SPIKEHOUND__CAPTURE_STACK__INIT, *stp[2] = {&st, &st};
	Spikehound__CaptureSample s[4], *sp[4];
	Spikehound__SpikeEvent ev = SPIKEHOUND__SPIKE_EVENT__INIT, *evp[2] = {&ev, &ev};
	Spikehound__MetricSecond met = SPIKEHOUND__METRIC_SECOND__INIT, *metp[1] = {&met};
	static const char *const user[] = {"", "x", "[unknown]"};
	static const char *const bids[] = {"zz-not-hex"};
	static const uint64_t offs[] = {UINT64_MAX};
	static const int64_t times[] = {INT64_MIN, INT64_MAX, 0, -5};
	char err[AGG_CAPVIEW_ERRLEN];
	struct agg_capview *cv;
	uint8_t *z;
	size_t len;

	st.id = 7;
	st.comm = "";
	st.user_frames = (char **)user;
	st.n_user_frames = 3;
	st.user_build_ids = (char **)bids; /* fewer than frames */
	st.n_user_build_ids = 1;
	st.user_offsets = (uint64_t *)offs;
	st.n_user_offsets = 1;
	for (int i = 0; i < 4; i++) {
		spikehound__capture_sample__init(&s[i]);
		s[i].time_ns = times[i];
		s[i].stack_id = i == 3 ? 12345 : 7;
		s[i].cpu = UINT32_MAX;
		sp[i] = &s[i];
	}
	ev.start_ns = INT64_MAX;
	ev.duration_ns = INT64_MIN;
	met.time_ns = INT64_MIN;
	met.cpu_user_pct = NAN;
	met.psi_mem_some_avg10 = INFINITY;
	cap.stacks = stp; /* a duplicate id */
	cap.n_stacks = 2;
	cap.samples = sp;
	cap.n_samples = 4;
	cap.events = evp;
	cap.n_events = 2;
	cap.metrics = metp;
	cap.n_metrics = 1;
	cap.from_ns = INT64_MAX;
	cap.sample_hz = 1000000000;
	z = compress_capture(&cap, &len);
	assert_int_equal(agg_capview_load(z, len, 0, &cv, err, sizeof(err)), 0);
	run_all(cv);
	agg_capview_free(cv);
	free(z);

	/* an empty capture */
	cap = (Spikehound__Capture)SPIKEHOUND__CAPTURE__INIT;
	z = compress_capture(&cap, &len);
	assert_int_equal(agg_capview_load(z, len, 0, &cv, err, sizeof(err)), 0);
	assert_int_equal(agg_capview_count(cv, NULL), 0);
	run_all(cv);
	agg_capview_free(cv);
	free(z);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_folded),
		cmocka_unit_test(test_pprof),
		cmocka_unit_test(test_flamegraph),
		cmocka_unit_test(test_heatmap),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_timeline),
		cmocka_unit_test(test_bad_payloads),
		cmocka_unit_test(test_corrupted),
		cmocka_unit_test(test_hostile_structure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
