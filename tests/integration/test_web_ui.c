/* test_web_ui.c: the aggregator's web pages end to end, against the real
 * aggregator on the "pg" fixture.
 *
 * Setup: a real capture (a spikehound.Capture built with protobuf-c,
 * zstd-compressed, SHA-256 over it) sent as CaptureChunk messages over nng
 * REQ, as an agent sends it; a second capture whose payload is not zstd
 * (its checksum right, so it is stored complete) and spike events of two
 * hosts, one with hostile strings.
 *
 * 1. The render routes: /api/capture/heatmap, flame (all, a range, the
 *    range against the time before it), folded and pprof answer with
 *    their content type and content (the SVGs are well-formed XML with
 *    the expected cells and frames; folded lines are "a;b;c N" and add up;
 *    the pprof profile gunzips and unpacks); bad ids, hosts and ranges give
 *    400/404/413 JSON, the corrupt payload 422 with the reason; a burst of
 *    parallel requests is answered 200 or 503, never dropped.
 * 2. The pages: /ui/ and its files with their content types and
 *    Cache-Control, unknown paths 404; then headless Chromium renders the
 *    spikes page (the default query finds the events, hostile strings
 *    shown as text), the captures page (the host's status) and the
 *    capture page (the heat map and a flame graph in the DOM; with a
 *    range in the URL, the range's and the differential flame graphs).
 *    Without chromium this part is skipped (exit 77 once the rest passed).
 * 3. SIGTERM during a burst of renders: answered or closed, clean exit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/http/http.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "profile.pb-c.h"
#include "spikehound.pb-c.h"
#include "support.h"
#include "xmlcheck.h"

#define NS 1000000000LL
#define MS 1000000LL
#define HOST_A "3eb00000000000000000000000000a01"
#define HOST_A_DASHED "3eb00000-0000-0000-0000-000000000a01"
#define BOOT_A "3eb00000-0000-4000-8000-00000000b001"
#define HOST_B "3eb00000000000000000000000000b02"
#define BOOT_B "3eb00000-0000-4000-8000-00000000b002"
#define CAP_GOOD "3eb0c0de-0001-4000-8000-000000000001"
#define CAP_BAD "3eb0c0de-0002-4000-8000-000000000002"
#define CAP_BIG "3eb0c0de-0003-4000-8000-000000000003"
#define HOSTILE "<img src=x onerror=alert(1)>"

static char dsn[1024], logpath[512], dir[256], url[64], http_url[64];
static pid_t agg = -1;
static nng_socket sock;
static const char *chromium;
static int64_t t0; /* the capture's +0, a whole second */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/* ---- HTTP ---------------------------------------------------------------- */

struct resp {
	int status;
	char ctype[128];
	char cache[128];
	char *body; /* NUL-terminated */
	size_t len;
};

static void resp_free(struct resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* get fetches path from the aggregator's HTTP server. */
static struct resp get(const char *path)
{
	char full[1024];
	nng_url *u = NULL;
	nng_http_client *cli = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_aio *aio = NULL;
	struct resp r = {0};
	const char *h;
	void *body;
	size_t len;

	snprintf(full, sizeof(full), "%s%s", http_url, path);
	assert_int_equal(nng_url_parse(&u, full), 0);
	assert_int_equal(nng_http_client_alloc(&cli, u), 0);
	assert_int_equal(nng_http_req_alloc(&req, u), 0);
	assert_int_equal(nng_http_res_alloc(&res), 0);
	assert_int_equal(nng_aio_alloc(&aio, NULL, NULL), 0);
	nng_aio_set_timeout(aio, 60000);
	nng_http_client_transact(cli, req, res, aio);
	nng_aio_wait(aio);
	if (nng_aio_result(aio) != 0)
		fail_msg("GET %s failed: %s", path, nng_strerror(nng_aio_result(aio)));
	r.status = nng_http_res_get_status(res);
	if ((h = nng_http_res_get_header(res, "Content-Type")))
		snprintf(r.ctype, sizeof(r.ctype), "%s", h);
	if ((h = nng_http_res_get_header(res, "Cache-Control")))
		snprintf(r.cache, sizeof(r.cache), "%s", h);
	nng_http_res_get_data(res, &body, &len);
	r.body = malloc(len + 1);
	assert_non_null(r.body);
	if (len)
		memcpy(r.body, body, len);
	r.body[len] = '\0';
	r.len = len;
	nng_aio_free(aio);
	nng_http_res_free(res);
	nng_http_req_free(req);
	nng_http_client_free(cli);
	nng_url_free(u);
	return r;
}

/* expect_error GETs path and checks the status and a JSON error containing
 * needle (may be NULL). */
static void expect_error(const char *path, int status, const char *needle)
{
	struct resp r = get(path);
	json_t *j = json_loads(r.body, 0, NULL);
	const char *e = j ? json_string_value(json_object_get(j, "error")) : NULL;

	if (r.status != status || !e || strncmp(r.ctype, "application/json", 16) != 0 ||
	    (needle && !strstr(e, needle)))
		fail_msg("GET %s: want %d with a JSON error containing \"%s\", got %d %s: %s", path,
			 status, needle ? needle : "", r.status, r.ctype, r.body);
	json_decref(j);
	resp_free(&r);
}

/* ---- sending what an agent sends ---------------------------------------- */

static Spikehound__Ack *send_request(Spikehound__AgentRequest *r)
{
	size_t len = spikehound__agent_request__get_packed_size(r);
	Spikehound__Ack *ack;
	nng_msg *msg;

	assert_int_equal(nng_msg_alloc(&msg, len), 0);
	spikehound__agent_request__pack(r, nng_msg_body(msg));
	assert_int_equal(nng_sendmsg(sock, msg, 0), 0);
	assert_int_equal(nng_recvmsg(sock, &msg, 0), 0);
	ack = spikehound__ack__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	assert_non_null(ack);
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_int_equal(ack->n_items, r->n_messages);
	for (size_t i = 0; i < ack->n_items; i++)
		if (!ack->items[i]->stored)
			fail_msg("message %zu not stored: %s", i,
				 ack->items[i]->rejected ? ack->items[i]->rejected : "?");
	return ack;
}

static void hello(Spikehound__Hello *h, const char *host, const char *boot, const char *name)
{
	spikehound__hello__init(h);
	h->host_id = (char *)host;
	h->boot_id = (char *)boot;
	h->hostname = (char *)name;
	h->kernel_release = "6.1.0-18-amd64";
	h->cpu_count = 4;
	h->boot_time_ns = now_ns() - 3600 * NS;
	h->sent_at_ns = now_ns();
}

/* send_chunks sends payload as a capture of host A in chunks of csize. */
static void send_chunks(const char *id, const uint8_t *payload, size_t len, size_t csize,
			uint64_t seq0)
{
	Spikehound__AgentRequest r = SPIKEHOUND__AGENT_REQUEST__INIT;
	Spikehound__Hello h;
	Spikehound__AgentMessage m[8], *mp[8];
	Spikehound__CaptureChunk c[8];
	uint8_t md[32];
	unsigned int mdlen = 0;
	char sha[65];
	size_t n = (len + csize - 1) / csize;

	assert_true(n <= 8);
	assert_int_equal(EVP_Digest(payload, len, md, &mdlen, EVP_sha256(), NULL), 1);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(sha + 2 * i, 3, "%02x", md[i]);
	hello(&h, HOST_A, BOOT_A, "webui-a");
	r.hello = &h;
	for (size_t i = 0; i < n; i++) {
		spikehound__agent_message__init(&m[i]);
		spikehound__capture_chunk__init(&c[i]);
		m[i].host_id = HOST_A;
		m[i].boot_id = BOOT_A;
		m[i].seq = seq0 + i;
		m[i].created_ns = now_ns();
		m[i].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_CHUNK;
		m[i].chunk = &c[i];
		c[i].capture_id = (char *)id;
		c[i].index = (uint32_t)i;
		c[i].total = (uint32_t)n;
		c[i].data.data = (uint8_t *)payload + i * csize;
		c[i].data.len = i + 1 < n ? csize : len - i * csize;
		c[i].sha256 = sha;
		c[i].compressed_bytes = len;
		c[i].raw_bytes = 4 * len;
		c[i].from_ns = t0;
		c[i].to_ns = t0 + 10 * NS;
		c[i].trigger = "local:runq";
		mp[i] = &m[i];
	}
	r.messages = mp;
	r.n_messages = n;
	spikehound__ack__free_unpacked(send_request(&r), NULL);
}

/* send_spikes sends two runq spike events of host (30 s ago and 20 s ago). */
static void send_spikes(const char *host, const char *boot, const char *name, const char *comm,
			uint64_t seq0)
{
	Spikehound__AgentRequest r = SPIKEHOUND__AGENT_REQUEST__INIT;
	Spikehound__Hello h;
	Spikehound__AgentMessage m[2], *mp[2];
	Spikehound__SpikeEvent e[2];
	Spikehound__Task victim = SPIKEHOUND__TASK__INIT, culprit = SPIKEHOUND__TASK__INIT;
	Spikehound__Task *culprits[1] = {&culprit};

	hello(&h, host, boot, name);
	r.hello = &h;
	victim.pid = 100;
	victim.tid = 101;
	victim.comm = (char *)comm;
	culprit.pid = 300;
	culprit.tid = 301;
	culprit.comm = "stress";
	culprit.role = "ran_instead";
	for (int i = 0; i < 2; i++) {
		spikehound__agent_message__init(&m[i]);
		spikehound__spike_event__init(&e[i]);
		m[i].host_id = (char *)host;
		m[i].boot_id = (char *)boot;
		m[i].seq = seq0 + (uint64_t)i;
		m[i].created_ns = now_ns();
		m[i].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
		m[i].event = &e[i];
		e[i].kind = "runq";
		e[i].start_ns = now_ns() - (30 - 10 * i) * NS;
		e[i].duration_ns = (20 + 5 * i) * MS;
		e[i].cpu = 1;
		e[i].victim = &victim;
		e[i].culprits = culprits;
		e[i].n_culprits = 1;
		e[i].detail = (char *)(i ? HOSTILE : "waited behind stress");
		mp[i] = &m[i];
	}
	r.messages = mp;
	r.n_messages = 2;
	spikehound__ack__free_unpacked(send_request(&r), NULL);
}

/* ---- the capture ----------------------------------------------------------- */

static const char *const s1_user[] = {"compute", "main"};
static const char *const s2_user[] = {"read_req", "main"};
static const char *const s2_kern[] = {"tcp_recvmsg", "entry_SYSCALL_64"};
static const char *const s3_user[] = {"burn", "stress_main"};
static const char *const s4_user[] = {HOSTILE, "</svg><script>alert(2)</script>"};

static void stack(Spikehound__CaptureStack *st, uint32_t id, int32_t pid, const char *comm,
		  const char *const *user, size_t nu, const char *const *kern, size_t nk)
{
	spikehound__capture_stack__init(st);
	st->id = id;
	st->pid = pid;
	st->comm = (char *)comm;
	st->user_frames = (char **)user;
	st->n_user_frames = nu;
	st->kernel_frames = (char **)kern;
	st->n_kernel_frames = nk;
}

#define NSAMPLES (100 + 30 + 5 + 2)

/* make_payload builds the capture (zstd-compressed): S1 web main;compute
 * 10 per second for 10 s; S2 web main;read_req + kernel, 30 at
 * +5.400..+5.415; S3 stress 5 at +5.7..; S4 hostile names 2 at +2. One
 * runq spike at +5.4 for 200 ms. */
static uint8_t *make_payload(size_t *len)
{
	Spikehound__Capture cap = SPIKEHOUND__CAPTURE__INIT;
	Spikehound__CaptureStack st[4], *stp[4];
	Spikehound__CaptureSample smp[NSAMPLES], *sp[NSAMPLES];
	Spikehound__SpikeEvent ev = SPIKEHOUND__SPIKE_EVENT__INIT, *evs[1] = {&ev};
	Spikehound__Task victim = SPIKEHOUND__TASK__INIT;
	Spikehound__Hello host;
	size_t n = 0, rlen, zcap;
	uint8_t *raw, *z;

	stack(&st[0], 1, 100, "web", s1_user, 2, NULL, 0);
	stack(&st[1], 2, 100, "web", s2_user, 2, s2_kern, 2);
	stack(&st[2], 3, 300, "stress", s3_user, 2, NULL, 0);
	stack(&st[3], 4, 666, HOSTILE, s4_user, 2, NULL, 0);
	for (int i = 0; i < 4; i++)
		stp[i] = &st[i];
#define SAMPLE(t, c, tid_, id)                                                                     \
	do {                                                                                       \
		spikehound__capture_sample__init(&smp[n]);                                         \
		smp[n].time_ns = (t);                                                              \
		smp[n].cpu = (c);                                                                  \
		smp[n].tid = (tid_);                                                               \
		smp[n].stack_id = (id);                                                            \
		sp[n] = &smp[n];                                                                   \
		n++;                                                                               \
	} while (0)
	for (int s = 0; s < 10; s++)
		for (int k = 0; k < 10; k++)
			SAMPLE(t0 + s * NS + k * 100 * MS + 50 * MS, 0, 101, 1);
	for (int k = 0; k < 30; k++)
		SAMPLE(t0 + 5 * NS + 400 * MS + k * MS / 2, 1, 101, 2);
	for (int k = 0; k < 5; k++)
		SAMPLE(t0 + 5 * NS + 700 * MS + k * 10 * MS, 2, 301, 3);
	SAMPLE(t0 + 2 * NS + 10 * MS, 3, 667, 4);
	SAMPLE(t0 + 2 * NS + 30 * MS, 3, 667, 4);
#undef SAMPLE
	assert_int_equal(n, NSAMPLES);
	hello(&host, HOST_A, BOOT_A, "webui-a");
	cap.capture_id = CAP_GOOD;
	cap.host = &host;
	cap.from_ns = t0;
	cap.to_ns = t0 + 10 * NS;
	cap.held_from_ns = t0;
	cap.held_to_ns = t0 + 10 * NS;
	cap.trigger = "local:runq";
	cap.sample_hz = 100;
	cap.stacks = stp;
	cap.n_stacks = 4;
	cap.samples = sp;
	cap.n_samples = n;
	victim.pid = 100;
	victim.tid = 101;
	victim.comm = "web";
	ev.kind = "runq";
	ev.start_ns = t0 + 5 * NS + 400 * MS;
	ev.duration_ns = 200 * MS;
	ev.cpu = 1;
	ev.victim = &victim;
	cap.events = evs;
	cap.n_events = 1;

	rlen = spikehound__capture__get_packed_size(&cap);
	raw = malloc(rlen);
	assert_non_null(raw);
	spikehound__capture__pack(&cap, raw);
	zcap = ZSTD_compressBound(rlen);
	z = malloc(zcap);
	assert_non_null(z);
	*len = ZSTD_compress(z, zcap, raw, rlen, 3);
	assert_false(ZSTD_isError(*len));
	free(raw);
	return z;
}

#define BIG_STACKS 3000
#define BIG_SAMPLES 400000

/* make_big_payload builds a capture that takes a while to draw:
 * BIG_SAMPLES samples over 60 s on BIG_STACKS distinct stacks. */
static uint8_t *make_big_payload(size_t *len)
{
	Spikehound__Capture cap = SPIKEHOUND__CAPTURE__INIT;
	Spikehound__CaptureStack *st = calloc(BIG_STACKS, sizeof(*st)), **stp;
	Spikehound__CaptureSample *smp = calloc(BIG_SAMPLES, sizeof(*smp)), **sp;
	Spikehound__Hello host;
	char(*names)[3][32] = calloc(BIG_STACKS, sizeof(*names));
	char *frames[BIG_STACKS][3];
	size_t rlen, zcap;
	uint8_t *raw, *z;

	stp = calloc(BIG_STACKS, sizeof(*stp));
	sp = calloc(BIG_SAMPLES, sizeof(*sp));
	assert_true(st && smp && names && stp && sp);
	for (int i = 0; i < BIG_STACKS; i++) {
		for (int k = 0; k < 3; k++) {
			snprintf(names[i][k], sizeof(names[i][k]), "fn_%d_%d", k,
				 k == 2 ? i % 7 : i);
			frames[i][k] = names[i][k];
		}
		stack(&st[i], (uint32_t)i + 1, 1000 + i % 50, "big", (const char *const *)frames[i],
		      3, NULL, 0);
		stp[i] = &st[i];
	}
	for (int i = 0; i < BIG_SAMPLES; i++) {
		spikehound__capture_sample__init(&smp[i]);
		smp[i].time_ns = t0 + (int64_t)i * (60 * NS / BIG_SAMPLES);
		smp[i].cpu = (uint32_t)(i % 8);
		smp[i].tid = 1000 + i % 50;
		smp[i].stack_id = (uint32_t)(((int64_t)i * 7919) % BIG_STACKS) + 1;
		sp[i] = &smp[i];
	}
	hello(&host, HOST_A, BOOT_A, "webui-a");
	cap.capture_id = CAP_BIG;
	cap.host = &host;
	cap.from_ns = t0;
	cap.to_ns = t0 + 60 * NS;
	cap.trigger = "manual";
	cap.sample_hz = 99;
	cap.stacks = stp;
	cap.n_stacks = BIG_STACKS;
	cap.samples = sp;
	cap.n_samples = BIG_SAMPLES;
	rlen = spikehound__capture__get_packed_size(&cap);
	raw = malloc(rlen);
	assert_non_null(raw);
	spikehound__capture__pack(&cap, raw);
	zcap = ZSTD_compressBound(rlen);
	z = malloc(zcap);
	assert_non_null(z);
	*len = ZSTD_compress(z, zcap, raw, rlen, 1);
	assert_false(ZSTD_isError(*len));
	free(raw);
	free(st);
	free(smp);
	free(stp);
	free(sp);
	free(names);
	return z;
}

/* ---- checks ------------------------------------------------------------------ */

static size_t count_str(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* get_svg GETs path, checks 200 image/svg+xml and well-formed XML; returns
 * the body (caller frees) and the element counts. */
static char *get_svg(const char *path, size_t *nrect, size_t *ntext)
{
	struct resp r = get(path);

	if (r.status != 200)
		fail_msg("GET %s: %d %s", path, r.status, r.body);
	assert_string_equal(r.ctype, "image/svg+xml");
	if (!sht_xml_ok(r.body, nrect, ntext))
		fail_msg("GET %s: not well-formed XML:\n%.2000s", path, r.body);
	assert_non_null(strstr(r.body, "<svg"));
	assert_null(strstr(r.body, "<img")); /* hostile names are escaped */
	assert_null(strstr(r.body, "<script>alert"));
	return r.body;
}

/* check_folded checks every line is "frame;frame;... N" and returns the sum. */
static long check_folded(const char *body)
{
	long total = 0;
	const char *p = body;

	while (*p) {
		const char *nl = strchr(p, '\n'), *sp;
		char line[4096], *end;
		long v;

		assert_non_null(nl);
		assert_true((size_t)(nl - p) < sizeof(line));
		memcpy(line, p, (size_t)(nl - p));
		line[nl - p] = '\0';
		sp = strrchr(line, ' ');
		if (!sp || sp == line || !strchr(line, ';'))
			fail_msg("not a folded line: \"%s\"", line);
		v = strtol(sp + 1, &end, 10);
		if (*end || v <= 0)
			fail_msg("not a folded count: \"%s\"", line);
		total += v;
		p = nl + 1;
	}
	return total;
}

/* pprof_samples gunzips and unpacks a profile; returns its sample value sum. */
static long pprof_samples(const char *data, size_t len)
{
	Perftools__Profiles__Profile *p;
	z_stream zs = {0};
	size_t cap = 1 << 20;
	uint8_t *out = malloc(cap);
	long total = 0;
	int rv;

	assert_non_null(out);
	assert_true(len > 2 && (uint8_t)data[0] == 0x1f && (uint8_t)data[1] == 0x8b);
	assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
	zs.next_in = (Bytef *)data;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	rv = inflate(&zs, Z_FINISH);
	assert_int_equal(rv, Z_STREAM_END);
	p = perftools__profiles__profile__unpack(NULL, zs.total_out, out);
	inflateEnd(&zs);
	free(out);
	assert_non_null(p);
	assert_true(p->n_sample > 0);
	assert_true(p->n_function > 0);
	for (size_t i = 0; i < p->n_sample; i++) {
		assert_true(p->sample[i]->n_value >= 1);
		total += (long)p->sample[i]->value[0];
	}
	perftools__profiles__profile__free_unpacked(p, NULL);
	return total;
}

/* ---- 1. the render routes ------------------------------------------------------ */

static void test_render_routes(void **state)
{
	char path[512];
	size_t nrect, ntext;
	struct resp r;
	char *svg;

	(void)state;
	/* the heat map: 10 columns of 50 cells, axis labels */
	svg = get_svg("/api/capture/heatmap?id=" CAP_GOOD "&host=webui-a", &nrect, &ntext);
	assert_int_equal(count_str(svg, "<rect class=\"c\""), 10 * 50);
	assert_true(nrect >= 10 * 50 + 1);
	assert_true(ntext >= 10);
	assert_non_null(strstr(svg, "data-rows=\"50\""));
	free(svg);
	/* the host may be given by id, by id prefix, or left out (the only one) */
	svg = get_svg("/api/capture/heatmap?id=" CAP_GOOD "&host=" HOST_A_DASHED, &nrect, &ntext);
	free(svg);
	svg = get_svg("/api/capture/heatmap?id=" CAP_GOOD, &nrect, &ntext);
	free(svg);

	/* the flame graph of everything: every stack's frames */
	svg = get_svg("/api/capture/flame?id=" CAP_GOOD "&host=webui-a", &nrect, &ntext);
	assert_non_null(strstr(svg, "compute"));
	assert_non_null(strstr(svg, "read_req"));
	assert_non_null(strstr(svg, "tcp_recvmsg"));
	assert_non_null(strstr(svg, "burn"));
	assert_non_null(strstr(svg, "&lt;img src=x"));
	assert_true(nrect >= 8 && ntext >= 8);
	free(svg);
	/* a range: +5.400 .. +5.420 holds only the read_req samples ('+' as %2B
	 * and as a bare '+', which decodes to a space) */
	svg = get_svg("/api/capture/flame?id=" CAP_GOOD "&host=webui-a&from=%2B5.400&to=%2B5.420",
		      &nrect, &ntext);
	assert_non_null(strstr(svg, "read_req"));
	assert_null(strstr(svg, "compute"));
	assert_null(strstr(svg, "burn"));
	free(svg);
	svg = get_svg("/api/capture/flame?id=" CAP_GOOD "&from=+5.4s&to=+5420ms", &nrect, &ntext);
	assert_non_null(strstr(svg, "read_req"));
	assert_null(strstr(svg, "compute"));
	free(svg);
	/* the same range in Unix ns */
	snprintf(path, sizeof(path), "/api/capture/flame?id=%s&from=%lld&to=%lld", CAP_GOOD,
		 (long long)(t0 + 5400 * MS), (long long)(t0 + 5420 * MS));
	svg = get_svg(path, &nrect, &ntext);
	assert_non_null(strstr(svg, "read_req"));
	assert_null(strstr(svg, "compute"));
	free(svg);
	/* the differential one: +5 .. +6 against +4 .. +5 */
	svg = get_svg("/api/capture/flame?id=" CAP_GOOD
		      "&host=webui-a&from=%2B5&to=%2B6&diff=before",
		      &nrect, &ntext);
	assert_non_null(strstr(svg, "read_req"));
	assert_non_null(strstr(svg, "compute"));
	assert_true(nrect >= 4);
	free(svg);

	/* folded stacks: all samples, and the range */
	r = get("/api/capture/folded?id=" CAP_GOOD "&host=webui-a");
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, "text/plain; charset=utf-8");
	assert_int_equal(check_folded(r.body), NSAMPLES);
	assert_non_null(strstr(r.body, "web;main;compute 100\n"));
	assert_non_null(
		strstr(r.body, "web;main;read_req;entry_SYSCALL_64_[k];tcp_recvmsg_[k] 30\n"));
	resp_free(&r);
	r = get("/api/capture/folded?id=" CAP_GOOD "&host=webui-a&from=%2B5.4&to=%2B5.42");
	assert_int_equal(r.status, 200);
	assert_int_equal(check_folded(r.body), 30);
	resp_free(&r);

	/* pprof: gzipped, a Profile with every sample */
	r = get("/api/capture/pprof?id=" CAP_GOOD "&host=webui-a");
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, "application/octet-stream");
	assert_int_equal(pprof_samples(r.body, r.len), NSAMPLES);
	resp_free(&r);
	r = get("/api/capture/pprof?id=" CAP_GOOD "&from=%2B5&to=%2B6");
	assert_int_equal(r.status, 200);
	assert_int_equal(pprof_samples(r.body, r.len), 10 + 30 + 5);
	resp_free(&r);

	/* what is refused, as JSON */
	expect_error("/api/capture/heatmap", 400, "id");
	expect_error("/api/capture/heatmap?id=../../etc/passwd", 400, "id");
	expect_error("/api/capture/flame?id=3eb0c0de-0009-4000-8000-000000000009", 404,
		     "no such capture");
	expect_error("/api/capture/flame?id=" CAP_GOOD "&host=nosuchhost", 404, "no such");
	expect_error("/api/capture/flame?id=" CAP_GOOD "&from=yesterday-ish", 400, "from/to");
	expect_error("/api/capture/flame?id=" CAP_GOOD "&from=%2B6&to=%2B5", 400, "empty");
	expect_error("/api/capture/flame?id=" CAP_GOOD "&from=%2B5&to=%2B5000", 413, "longer");
	expect_error("/api/capture/flame?id=" CAP_GOOD "&diff=before", 400, "range");
	expect_error("/api/capture/flame?id=" CAP_GOOD "&from=%2B5&to=%2B6&diff=after", 400,
		     "diff");
	expect_error("/api/capture/flame?id=" CAP_GOOD "&from=%2B9.9&to=%2B9.91", 404,
		     "no samples");
	/* the corrupt payload, on every route: 422 with the reason */
	expect_error("/api/capture/heatmap?id=" CAP_BAD, 422, "corrupt");
	expect_error("/api/capture/flame?id=" CAP_BAD "&host=webui-a", 422, "corrupt");
	expect_error("/api/capture/folded?id=" CAP_BAD, 422, "corrupt");
	expect_error("/api/capture/pprof?id=" CAP_BAD, 422, "corrupt");
	/* the server is fine after all that */
	svg = get_svg("/api/capture/heatmap?id=" CAP_GOOD, &nrect, &ntext);
	free(svg);
}

/* a burst of parallel renders of a big capture: each answered 200
 * (complete and valid) or 503 (busy: at most AGG_CAPWEB_MAX_RUNNING +
 * AGG_CAPWEB_MAX_WAITING = 8 are admitted), nothing lost */
#define BURST 24

static void test_burst(void **state)
{
	nng_url *u = NULL;
	nng_http_client *cli = NULL;
	nng_http_req *req[BURST];
	nng_http_res *res[BURST];
	nng_aio *aio[BURST];
	int ok = 0, busy = 0;
	char full[512];

	(void)state;
	snprintf(full, sizeof(full), "%s/api/capture/flame?id=%s&host=webui-a", http_url, CAP_BIG);
	assert_int_equal(nng_url_parse(&u, full), 0);
	assert_int_equal(nng_http_client_alloc(&cli, u), 0);
	for (int i = 0; i < BURST; i++) {
		assert_int_equal(nng_http_req_alloc(&req[i], u), 0);
		assert_int_equal(nng_http_res_alloc(&res[i]), 0);
		assert_int_equal(nng_aio_alloc(&aio[i], NULL, NULL), 0);
		nng_aio_set_timeout(aio[i], 60000);
		nng_http_client_transact(cli, req[i], res[i], aio[i]);
	}
	for (int i = 0; i < BURST; i++) {
		void *body;
		size_t len;
		int st;

		nng_aio_wait(aio[i]);
		assert_int_equal(nng_aio_result(aio[i]), 0);
		st = nng_http_res_get_status(res[i]);
		nng_http_res_get_data(res[i], &body, &len);
		if (st == 200) {
			ok++;
			assert_true(len > 100 && memmem(body, len, "</svg>", 6) != NULL);
		} else if (st == 503) {
			busy++;
			assert_non_null(memmem(body, len, "too many", 8));
		} else {
			fail_msg("burst request %d: status %d", i, st);
		}
		nng_aio_free(aio[i]);
		nng_http_res_free(res[i]);
		nng_http_req_free(req[i]);
	}
	nng_http_client_free(cli);
	nng_url_free(u);
	print_message("burst of %d: %d drawn, %d refused as busy\n", BURST, ok, busy);
	assert_true(ok >= 2);
	assert_true(busy >= 1);
	assert_int_equal(ok + busy, BURST);
}

/* ---- 2. the pages -------------------------------------------------------------- */

static void test_ui_files(void **state)
{
	static const struct {
		const char *path, *ctype, *needle;
	} files[] = {
		{"/ui/", "text/html; charset=utf-8", "<script src=\"/ui/app.js\">"},
		{"/ui", "text/html; charset=utf-8", "<title>spikehound</title>"},
		{"/ui/index.html", "text/html; charset=utf-8", "<main id=\"main\">"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "sanitizeSVG"},
		{"/ui/app.css", "text/css; charset=utf-8", "rect.c"},
	};
	struct resp r;

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		r = get(files[i].path);
		if (r.status != 200)
			fail_msg("GET %s: %d %s", files[i].path, r.status, r.body);
		assert_string_equal(r.ctype, files[i].ctype);
		assert_string_equal(r.cache, "no-cache");
		assert_non_null(strstr(r.body, files[i].needle));
		resp_free(&r);
	}
	/* the JS never puts data in as markup */
	r = get("/ui/app.js");
	assert_null(strstr(r.body, "innerHTML"));
	assert_null(strstr(r.body, "outerHTML"));
	assert_null(strstr(r.body, "insertAdjacentHTML"));
	assert_null(strstr(r.body, "document.write"));
	assert_null(strstr(r.body, "eval("));
	resp_free(&r);
	/* only the fixed table is served */
	expect_error("/ui/nope.js", 404, "no such endpoint");
	/* (nng itself may refuse these, with its HTML 404) */
	for (size_t i = 0; i < 3; i++) {
		static const char *const bad[] = {"/ui/%2e%2e/%2e%2e/etc/passwd",
						  "/ui/app.js/..%2f..%2fetc%2fpasswd",
						  "/ui/../../etc/passwd"};

		r = get(bad[i]);
		if (r.status != 404 || strstr(r.body, "root:"))
			fail_msg("GET %s: %d %s", bad[i], r.status, r.body);
		resp_free(&r);
	}
	r = get("/api/stats");
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"capture_web\":{\"renders\":"));
	resp_free(&r);
}

/* dump_dom renders the page at fragment with headless Chromium and returns
 * the DOM (caller frees). */
static char *dump_dom(const char *fragment)
{
	char cmd[2048];
	FILE *p;
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	int st;

	snprintf(cmd, sizeof(cmd),
		 "timeout 120 %s --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome"
		 " --virtual-time-budget=20000 --dump-dom '%s/ui/%s' 2>>%s/chromium.log",
		 chromium, dir, http_url, fragment, dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	do {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 1 << 20;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		n = fread(buf + len, 1, 4096, p);
		len += n;
	} while (n > 0);
	buf[len] = '\0';
	st = pclose(p);
	if (st != 0)
		fail_msg("chromium failed (status %d) on %s; see %s/chromium.log", st, fragment,
			 dir);
	if (getenv("SH_TEST_KEEP")) {
		/* for a look: DIR/page-N.png */
		static int shot;

		snprintf(
			cmd, sizeof(cmd),
			"timeout 120 %s --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome"
			" --virtual-time-budget=20000 --hide-scrollbars --window-size=1400,1800"
			" --screenshot=%s/page-%d.png '%s/ui/%s' >>%s/chromium.log 2>&1",
			chromium, dir, dir, shot++, http_url, fragment, dir);
		if (system(cmd) != 0)
			print_message("no screenshot of %s\n", fragment);
	}
	return buf;
}

static void test_pages_in_browser(void **state)
{
	char frag[256];
	char *dom;

	(void)state;
	if (!chromium) {
		print_message(
			"SKIP: chromium is not installed (deploy/install-deps.sh installs it); "
			"the routes passed, the pages were not rendered\n");
		skip();
	}
	/* the spikes page's default query (now +- 1 h) finds both hosts'
	 * events; the hostile strings are text */
	dom = dump_dom("#spikes");
	if (count_str(dom, "<tr class=\"spike\">") != 4)
		fail_msg("want 4 spike rows, got %zu:\n%.6000s",
			 count_str(dom, "<tr class=\"spike\">"),
			 strstr(dom, "spikes-result") ? strstr(dom, "spikes-result") : dom);
	assert_non_null(strstr(dom, "webui-a"));
	assert_non_null(strstr(dom, "webui-b"));
	assert_non_null(strstr(dom, "runq"));
	assert_non_null(strstr(dom, "stress[300/301] (ran_instead)"));
	assert_non_null(strstr(dom, "&lt;img src=x onerror=alert(1)&gt;"));
	assert_null(strstr(dom, "<img"));
	assert_non_null(strstr(dom, "href=\"#captures?host=" HOST_A_DASHED "\""));
	free(dom);

	/* the captures page: the capture, its host and status */
	dom = dump_dom("#captures");
	assert_non_null(strstr(dom, CAP_GOOD));
	assert_non_null(strstr(dom, CAP_BAD));
	assert_true(count_str(dom, "<tr class=\"capture-host\">") >= 2);
	assert_non_null(strstr(dom, "<span class=\"status-complete\">complete</span>"));
	assert_non_null(strstr(dom, "href=\"#capture/" CAP_GOOD "/" HOST_A_DASHED "\""));
	free(dom);

	/* the capture page: status, heat map cells, a flame graph, downloads */
	snprintf(frag, sizeof(frag), "#capture/%s/%s", CAP_GOOD, HOST_A_DASHED);
	dom = dump_dom(frag);
	assert_non_null(strstr(dom, "id=\"host-status\">complete<"));
	if (count_str(dom, "<rect class=\"c\"") != 10 * 50)
		fail_msg("want the heat map's 500 cells:\n%.4000s", dom);
	assert_non_null(strstr(dom, "read_req")); /* the flame graph */
	assert_null(strstr(dom, "<script>alert"));
	assert_null(strstr(dom, "<img"));
	assert_non_null(strstr(dom, "/api/capture/pprof?id=" CAP_GOOD));
	assert_non_null(strstr(dom, "/api/capture/folded?id=" CAP_GOOD));
	free(dom);

	/* a range picked (as a click on two cells leaves it in the URL): the
	 * range's flame graph and the differential one against the time before */
	snprintf(frag, sizeof(frag), "#capture/%s/%s?from=5.000&to=6.000", CAP_GOOD, HOST_A_DASHED);
	dom = dump_dom(frag);
	assert_non_null(strstr(dom, "Range +5.000s .. +6.000s (1000 ms)"));
	assert_non_null(strstr(dom, "Differential Flame Graph"));
	assert_non_null(strstr(dom, "the 1.000 s before"));
	assert_non_null(strstr(dom, "/api/capture/pprof?id=" CAP_GOOD "&amp;host=" HOST_A_DASHED
				    "&amp;from=%2B5.000&amp;to=%2B6.000"));
	free(dom);

	/* the incidents: the list, and one with its ranked suspects' numbers */
	dom = dump_dom("#incidents");
	if (!strstr(dom, "href=\"#incident/900001\"") ||
	    !strstr(dom, "cmdline:atop -R -w /var/log/atop/atop_# #"))
		fail_msg("want incident 900001 and its top suspect:\n%.4000s",
			 strstr(dom, "<main") ? strstr(dom, "<main") : dom);
	free(dom);
	dom = dump_dom("#incident/900001");
	if (count_str(dom, "<tr class=\"suspect\">") != 2)
		fail_msg("want 2 suspects:\n%.4000s",
			 strstr(dom, "<main") ? strstr(dom, "<main") : dom);
	assert_non_null(strstr(dom, "cmdline:atop -R -w /var/log/atop/atop_# #"));
	assert_non_null(strstr(dom, "comm:&lt;img src=x onerror=alert(1)&gt;"));
	assert_non_null(strstr(dom, ">9 / 10<"));  /* spiking hosts with it */
	assert_non_null(strstr(dom, ">1 / 40<"));  /* other hosts with it */
	assert_non_null(strstr(dom, ">1.20e-8<")); /* p */
	assert_null(strstr(dom, "<img"));
	free(dom);

	/* the kernel report is framed */
	dom = dump_dom("#kernels");
	assert_non_null(strstr(
		dom, "<iframe class=\"report\" src=\"/api/kernels?since=7d&amp;format=html\""));
	free(dom);

	/* the corrupt one says why */
	snprintf(frag, sizeof(frag), "#capture/%s/%s", CAP_BAD, HOST_A_DASHED);
	dom = dump_dom(frag);
	assert_non_null(strstr(dom, "the stored capture is corrupt"));
	free(dom);
}

/* ---- 3. a graceful stop with renders under way ----------------------------------- */

/* SIGTERM while a burst of big renders runs: every request is answered
 * (drawn, refused or 503 for the stop) or its connection closed, and the
 * aggregator exits 0 (under ASan: without leaks or use after free). */
static void test_stop_during_renders(void **state)
{
	nng_url *u = NULL;
	nng_http_client *cli = NULL;
	nng_http_req *req[BURST];
	nng_http_res *res[BURST];
	nng_aio *aio[BURST];
	char full[512];
	int status, answered = 0;

	(void)state;
	snprintf(full, sizeof(full), "%s/api/capture/heatmap?id=%s", http_url, CAP_BIG);
	assert_int_equal(nng_url_parse(&u, full), 0);
	assert_int_equal(nng_http_client_alloc(&cli, u), 0);
	for (int i = 0; i < BURST; i++) {
		assert_int_equal(nng_http_req_alloc(&req[i], u), 0);
		assert_int_equal(nng_http_res_alloc(&res[i]), 0);
		assert_int_equal(nng_aio_alloc(&aio[i], NULL, NULL), 0);
		nng_aio_set_timeout(aio[i], 60000);
		nng_http_client_transact(cli, req[i], res[i], aio[i]);
	}
	usleep(30 * 1000);
	status = sht_stop(agg, SIGTERM, 60000);
	agg = -1;
	for (int i = 0; i < BURST; i++) {
		nng_aio_wait(aio[i]);
		if (nng_aio_result(aio[i]) == 0) {
			int st = nng_http_res_get_status(res[i]);

			answered++;
			if (st != 200 && st != 503)
				fail_msg("request %d during the stop: status %d", i, st);
		}
		nng_aio_free(aio[i]);
		nng_http_res_free(res[i]);
		nng_http_req_free(req[i]);
	}
	nng_http_client_free(cli);
	nng_url_free(u);
	print_message("stop during a burst of %d: %d answered\n", BURST, answered);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the aggregator exited badly (status %d); see %s", status, logpath);
}

/* ---- setup ------------------------------------------------------------------------ */

static int setup(void **state)
{
	int rv = sht_fresh_db("webui", dsn, sizeof(dsn));
	uint8_t *payload, junk[5000];
	size_t len;
	char sql[256], st[64];

	(void)state;
	if (rv != 0)
		return rv;
	if (sht_mkdtemp("sh-webui-", dir, sizeof(dir)) != 0)
		return -1;
	snprintf(logpath, sizeof(logpath), "%s/aggregator.log", dir);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", sht_free_port());
	snprintf(http_url, sizeof(http_url), "http://127.0.0.1:%d", sht_free_port());
	{
		char *argv[] = {SH_AGG_BIN, "--db",	  dsn, "--listen",	   url,	  "--http",
				http_url,   "--data-dir", dir, "--stats-interval", "60s", NULL};

		agg = sht_spawn(argv, logpath);
	}
	if (agg < 0 || sht_wait_log(logpath, "ready", 60000) != 0) {
		fprintf(stderr, "the aggregator did not start; see %s\n", logpath);
		return -1;
	}
	if (nng_req0_open(&sock) != 0)
		return -1;
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 30000);
	nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	if (nng_dial(sock, url, NULL, 0) != 0)
		return -1;

	t0 = (now_ns() / NS - 60) * NS;
	payload = make_payload(&len);
	send_chunks(CAP_GOOD, payload, len, len / 3 + 1, 1);
	free(payload);
	/* not zstd, but its checksum is right: stored complete, unreadable */
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 7 + 3);
	send_chunks(CAP_BAD, junk, sizeof(junk), 2000, 10);
	payload = make_big_payload(&len);
	send_chunks(CAP_BIG, payload, len, (len + 7) / 8 > 1024 ? (len + 7) / 8 : 1024, 40);
	free(payload);
	send_spikes(HOST_A, BOOT_A, "webui-a", "web", 60); /* seqs only grow */
	send_spikes(HOST_B, BOOT_B, "webui-b", HOSTILE, 30);
	for (const char *id = CAP_GOOD;; id = strcmp(id, CAP_GOOD) == 0 ? CAP_BAD : CAP_BIG) {
		snprintf(sql, sizeof(sql),
			 "SELECT status FROM capture_hosts WHERE capture_id = '%s'", id);
		if (sht_query_text(dsn, sql, st, sizeof(st)) != 0 || strcmp(st, "complete") != 0) {
			fprintf(stderr, "capture %s: status \"%s\", want complete\n", id, st);
			return -1;
		}
		if (strcmp(id, CAP_BIG) == 0)
			break;
	}
	/* an incident with ranked suspects, as the correlator writes them
	 * (ranked now: the correlator leaves it alone) */
	if (sht_query_i64(
		    dsn,
		    "WITH i AS (INSERT INTO incidents (incident_id, kind, type, first_ts,"
		    " last_ts, hosts, events, updated_at, suspects_at) VALUES (900001,"
		    " 'runq', 'burst', now() - interval '5 minutes',"
		    " now() - interval '4 minutes', 10, 25, now() - interval '1 minute',"
		    " now())"
		    " RETURNING 1), s AS (INSERT INTO incident_suspects (incident_id, rank,"
		    " feature, spiking_with, spiking_total, others_with, others_total, p_value,"
		    " log10_p, score, evidence_events, evidence_total, evidence_role, example)"
		    " VALUES (900001, 1, 'cmdline:atop -R -w /var/log/atop/atop_# #', 9, 10, 1,"
		    " 40, 1.2e-8, -7.92, 9.9, 20, 25, 'ran_instead', 'atop -R -w x 600'),"
		    " (900001, 2, 'comm:" HOSTILE "', 3, 10, 2, 40, 0.2, -0.7, 0.7, 0, 25, '',"
		    " '') RETURNING 1) SELECT (SELECT count(*) FROM i) + (SELECT count(*) FROM s)") !=
	    3)
		return -1;
	chromium = sht_find_chromium();
	return 0;
}

static int teardown(void **state)
{
	int status;

	(void)state;
	nng_close(sock);
	if (agg > 0) {
		status = sht_stop(agg, SIGTERM, 30000);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "the aggregator exited badly (status %d); see %s\n", status,
				logpath);
			return -1;
		}
	}
	if (getenv("SH_TEST_KEEP") == NULL)
		sht_rm_rf(dir);
	else
		fprintf(stderr, "kept %s\n", dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_routes),
		cmocka_unit_test(test_burst),
		cmocka_unit_test(test_ui_files),
		cmocka_unit_test(test_pages_in_browser),
		cmocka_unit_test(test_stop_during_renders), /* last: stops the aggregator */
	};
	char probe[1024];
	int rv, pre;

	if ((pre = sht_fixture_dsn(probe, sizeof(probe))) != 0)
		return pre == SHT_SKIP ? SHT_SKIP : 1;
	rv = cmocka_run_group_tests(tests, setup, teardown);
	if (rv == 0 && !sht_find_chromium()) {
		printf("SKIP: chromium is not installed: the pages were not rendered\n");
		return SHT_SKIP;
	}
	return rv;
}
