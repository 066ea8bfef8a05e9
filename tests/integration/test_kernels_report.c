/* test_kernels_report.c: the kernel report end to end, against the real
 * aggregator and CLI.
 *
 * 1. Ingest keeps the rollups (sql/006_rollups.sql): summaries with a runq
 *    histogram and a spike event sent over nng show up in the host-day,
 *    kernel-hour and label-set-day rollups, summed; a resent (duplicate)
 *    request adds nothing.
 * 2. A synthetic fleet (test_kernels_report.sql: three kernel releases, one
 *    with 3x the runq spike rate and a runq histogram shifted 4x up) loaded
 *    with SQL: `spikehound kernels --json` flags that release, and only
 *    it, as significantly worse, with the p50 shifted; by label the rates
 *    do not differ; the incident causes land on their cohorts.
 * 3. `spikehound kernels --html F`, rendered by headless Chromium: the
 *    screenshot shows the charts (pixels of the chart colours, read with
 *    libpng, against a render of the same page without its SVG) and
 *    --dump-dom shows the SVG elements. Without chromium this part is
 *    skipped (exit 77 after 1 and 2 passed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <png.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spikehound.pb-c.h"
#include "support.h"

#define NS 1000000000LL
#define HOST "5eed0000000000000000000000000001"
#define BOOT "5eed0000-0000-4000-8000-000000000002"
#define TEST_KERNEL "6.18.0-rollup-test"
#define BAD_KERNEL "6.1.0-18-amd64"
#define BASE_KERNEL "6.1.0-13-amd64"

static char dsn[1024], logpath[512], dir[256], url[64], http_url[64];
static pid_t agg = -1;
static const char *chromium;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

/* ---- 1. ingest keeps the rollups ------------------------------------------ */

/* send_fixed sends a request of two summaries (runq histograms) and one
 * runq spike event, seqs 1..3, and checks that all three were stored or
 * (resent) acknowledged. */
static void send_fixed(nng_socket sock, int64_t t)
{
	static uint64_t b1[] = { 0, 0, 0, 0, 0, 10, 5, 1 };
	static uint64_t b2[] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
				 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3 }; /* folds into 31 */
	Spikehound__AgentRequest r = SPIKEHOUND__AGENT_REQUEST__INIT;
	Spikehound__Hello h = SPIKEHOUND__HELLO__INIT;
	Spikehound__AgentMessage m[3], *mp[3];
	Spikehound__Summary s[2];
	Spikehound__Histogram hist[2], *hp[2];
	Spikehound__SpikeEvent e = SPIKEHOUND__SPIKE_EVENT__INIT;
	Spikehound__Ack *ack;
	nng_msg *msg;
	size_t len;

	h.host_id = HOST;
	h.boot_id = BOOT;
	h.hostname = "rollup-test";
	h.kernel_release = TEST_KERNEL;
	h.boot_time_ns = t - 3600 * NS;
	h.sent_at_ns = t;
	r.hello = &h;
	for (int i = 0; i < 3; i++) {
		spikehound__agent_message__init(&m[i]);
		m[i].host_id = HOST;
		m[i].boot_id = BOOT;
		m[i].seq = (uint64_t)i + 1;
		m[i].created_ns = t;
		mp[i] = &m[i];
	}
	for (int i = 0; i < 2; i++) {
		spikehound__summary__init(&s[i]);
		spikehound__histogram__init(&hist[i]);
		s[i].start_ns = t - (20 - 10 * i) * NS;
		s[i].end_ns = s[i].start_ns + 10 * NS;
		hist[i].kind = "runq";
		hist[i].buckets = i == 0 ? b1 : b2;
		hist[i].n_buckets = i == 0 ? sizeof(b1) / sizeof(b1[0]) : sizeof(b2) / sizeof(b2[0]);
		hist[i].count = i == 0 ? 16 : 5;
		hist[i].sum_ns = 1000000;
		hp[i] = &hist[i];
		s[i].histograms = &hp[i];
		s[i].n_histograms = 1;
		m[i].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
		m[i].summary = &s[i];
	}
	e.kind = "runq";
	e.start_ns = t - 5 * NS;
	e.duration_ns = 20000000;
	e.cpu = 1;
	m[2].body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT;
	m[2].event = &e;
	r.messages = mp;
	r.n_messages = 3;

	len = spikehound__agent_request__get_packed_size(&r);
	assert_int_equal(nng_msg_alloc(&msg, len), 0);
	spikehound__agent_request__pack(&r, nng_msg_body(msg));
	assert_int_equal(nng_sendmsg(sock, msg, 0), 0);
	assert_int_equal(nng_recvmsg(sock, &msg, 0), 0);
	ack = spikehound__ack__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	assert_non_null(ack);
	assert_int_equal(ack->status, SPIKEHOUND__ACK__STATUS__OK);
	assert_int_equal(ack->n_items, 3);
	for (size_t i = 0; i < ack->n_items; i++) {
		if (!ack->items[i]->stored)
			fail_msg("message %zu not stored: %s", i, ack->items[i]->rejected);
	}
	spikehound__ack__free_unpacked(ack, NULL);
}

static void test_ingest_rollups(void **state)
{
	nng_socket sock;
	int64_t t = now_ns();
	char sql[512];

	(void)state;
	assert_int_equal(nng_req0_open(&sock), 0);
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 30000);
	assert_int_equal(nng_dial(sock, url, NULL, 0), 0);
	send_fixed(sock, t);
	send_fixed(sock, t); /* resent: a duplicate, acknowledged, not counted again */
	nng_close(sock);

	/* sums: the two summaries may straddle an hour or a day */
	assert_int_equal(sht_query_i64(dsn, "SELECT sum(summaries) FROM rollup_host_day"
					    " WHERE kernel_release = '" TEST_KERNEL "'"), 2);
	assert_int_equal(sht_query_i64(dsn, "SELECT sum(covered_s)::bigint FROM rollup_host_day"
					    " WHERE kernel_release = '" TEST_KERNEL "'"), 20);
	assert_int_equal(sht_query_i64(dsn, "SELECT sum(summaries) FROM rollup_kernel_hour"
					    " WHERE kernel_release = '" TEST_KERNEL "'"), 2);
	assert_int_equal(sht_query_i64(dsn, "SELECT sum(covered_s)::bigint FROM rollup_kernel_hour"
					    " WHERE kernel_release = '" TEST_KERNEL "'"), 20);
	/* kind rows: 1 event; histograms added element-wise, the long one folded into b31 */
	snprintf(sql, sizeof(sql),
		 "SELECT sum(events) * 1000000 + sum(hist_count) * 10000 + sum(b05) * 100 + sum(b31)"
		 " FROM rollup_labels_day_kind WHERE kernel_release = '%s' AND kind = 'runq'",
		 TEST_KERNEL);
	assert_int_equal(sht_query_i64(dsn, sql), 1 * 1000000 + 21 * 10000 + 10 * 100 + 5);
	snprintf(sql, sizeof(sql),
		 "SELECT sum(events) * 1000000 + sum(hist_count) * 10000 + sum(b06) * 100 + sum(b07)"
		 " FROM rollup_kernel_hour_kind WHERE kernel_release = '%s' AND kind = 'runq'",
		 TEST_KERNEL);
	assert_int_equal(sht_query_i64(dsn, sql), 1 * 1000000 + 21 * 10000 + 5 * 100 + 1);
	assert_int_equal(sht_query_i64(dsn, "SELECT sum(summaries) FROM rollup_labels_day"
					    " WHERE kernel_release = '" TEST_KERNEL "'"), 2);
	assert_int_equal(sht_query_i64(dsn, "SELECT count(*) FROM rollup_labelsets s JOIN hosts h"
					    " ON s.labels = h.labels WHERE h.hostname = 'rollup-test'"), 1);
	assert_int_equal(sht_query_i64(dsn, "SELECT sum(hist_sum_ns)::bigint FROM rollup_labels_day_kind"
					    " WHERE kernel_release = '" TEST_KERNEL "'"), 2000000);
	/* out of the way of the fleet's report: this host's one event in
	 * 20 s would be a (real) significant excess */
	assert_true(sht_query_i64(dsn, "WITH a AS (DELETE FROM rollup_host_day WHERE kernel_release = '"
					    TEST_KERNEL "' RETURNING 1), b AS (DELETE FROM rollup_labels_day_kind"
					    " WHERE kernel_release = '" TEST_KERNEL "' RETURNING 1),"
					    " e AS (DELETE FROM rollup_labels_day WHERE kernel_release = '"
					    TEST_KERNEL "' RETURNING 1),"
					    " c AS (DELETE FROM rollup_kernel_hour WHERE kernel_release = '"
					    TEST_KERNEL "' RETURNING 1) , d AS (DELETE FROM rollup_kernel_hour_kind"
					    " WHERE kernel_release = '" TEST_KERNEL "' RETURNING 1)"
					    " SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM c)") >= 2);
	assert_int_equal(sht_query_i64(dsn, "WITH d AS (DELETE FROM boots WHERE kernel_release = '"
					    TEST_KERNEL "' RETURNING 1) SELECT count(*) FROM d"), 1);
}

/* ---- 2. the report on a synthetic fleet ------------------------------------- */

/* run_capture runs cmd through the shell and returns its stdout (caller
 * frees); *status is its exit status. */
static char *run_capture(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	assert_non_null(p);
	do {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		n = fread(buf + len, 1, 4096, p);
		len += n;
	} while (n > 0);
	buf[len] = '\0';
	*status = pclose(p);
	return buf;
}

static json_t *report(const char *args)
{
	char cmd[1024];
	json_error_t err;
	json_t *doc;
	char *out;
	int st;

	snprintf(cmd, sizeof(cmd), "%s --server %s --json kernels %s", SH_CLI_BIN, http_url, args);
	out = run_capture(cmd, &st);
	if (st != 0)
		fail_msg("\"%s\" exited with %d: %s", cmd, st, out);
	doc = json_loads(out, 0, &err);
	if (!doc)
		fail_msg("not JSON (%s): %s", err.text, out);
	free(out);
	return doc;
}

static json_t *cohort(json_t *doc, const char *name)
{
	json_t *c;
	size_t i;

	json_array_foreach (json_object_get(doc, "cohorts"), i, c) {
		const char *n = json_string_value(json_object_get(c, "cohort"));

		if (n && strcmp(n, name) == 0)
			return c;
	}
	fail_msg("no cohort \"%s\"", name);
	return NULL;
}

static json_t *member(json_t *arr, const char *key, const char *value)
{
	json_t *x;
	size_t i;

	json_array_foreach (arr, i, x) {
		const char *v = json_string_value(json_object_get(x, key));

		if (v && strcmp(v, value) == 0)
			return x;
	}
	return NULL;
}

static void test_fleet_report(void **state)
{
	PGconn *c = PQconnectdb(dsn);
	json_t *doc, *sig, *bad, *base, *l_bad, *l_base, *r;
	FILE *f = fopen(SH_FLEET_SQL, "r");
	char *sql;
	long len;
	PGresult *res;

	(void)state;
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	sql = calloc(1, (size_t)len + 1);
	assert_non_null(sql);
	assert_int_equal(fread(sql, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fail_msg("loading the fleet failed: %s", PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
	free(sql);

	doc = report("--since 3d");
	assert_string_equal(json_string_value(json_object_get(doc, "baseline")), BASE_KERNEL);
	assert_string_equal(json_string_value(json_object_get(doc, "granularity")), "hour");
	assert_int_equal(json_array_size(json_object_get(doc, "cohorts")), 3);
	/* the regression and nothing else */
	sig = json_object_get(doc, "significant");
	assert_int_equal(json_array_size(sig), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(sig, 0), "cohort")), BAD_KERNEL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(sig, 0), "kind")), "runq");
	assert_string_equal(json_string_value(json_object_get(json_array_get(sig, 0), "direction")), "worse");
	bad = cohort(doc, BAD_KERNEL);
	base = cohort(doc, BASE_KERNEL);
	assert_int_equal(json_integer_value(json_object_get(bad, "hosts")), 100);
	assert_true(fabs(json_number_value(json_object_get(bad, "host_hours")) - 4800) < 1e-6);
	r = member(json_object_get(bad, "rates"), "kind", "runq");
	assert_int_equal(json_integer_value(json_object_get(r, "events")), 1440);
	assert_true(fabs(json_number_value(json_object_get(r, "rate")) - 0.3) < 1e-9);
	assert_true(json_number_value(json_object_get(r, "ci_low")) < 0.3 &&
		    json_number_value(json_object_get(r, "ci_high")) > 0.3);
	assert_true(fabs(json_number_value(json_object_get(json_object_get(r, "vs_baseline"), "ratio")) - 3) < 1e-9);
	r = member(json_object_get(cohort(doc, "6.1.0-17-amd64"), "rates"), "kind", "runq");
	assert_false(json_is_true(json_object_get(json_object_get(r, "vs_baseline"), "significant")));
	r = member(json_object_get(bad, "rates"), "kind", "accounting");
	assert_false(json_is_true(json_object_get(json_object_get(r, "vs_baseline"), "significant")));
	assert_true(json_is_object(json_object_get(bad, "accounting")));
	/* the shifted histogram: p50 and p99 four times the baseline's */
	l_bad = member(json_object_get(bad, "latency"), "kind", "runq");
	l_base = member(json_object_get(base, "latency"), "kind", "runq");
	assert_non_null(l_bad);
	assert_non_null(l_base);
	assert_true(fabs(json_number_value(json_object_get(l_bad, "p50_us")) /
			 json_number_value(json_object_get(l_base, "p50_us")) - 4) < 1e-9);
	assert_true(json_number_value(json_object_get(l_base, "p50_us")) > 32 &&
		    json_number_value(json_object_get(l_base, "p50_us")) < 64);
	/* the causes, each on its cohort */
	assert_non_null(member(json_object_get(bad, "causes"), "feature", "kernel:" BAD_KERNEL));
	assert_non_null(member(json_object_get(base, "causes"), "feature",
			       "cmdline:atop -R -w /var/log/atop/atop_# #"));
	json_decref(doc);

	/* a chosen baseline */
	doc = report("--since 3d --baseline 6.1.0-17-amd64");
	assert_string_equal(json_string_value(json_object_get(doc, "baseline_reason")), "requested");
	assert_int_equal(json_array_size(json_object_get(doc, "significant")), 1);
	json_decref(doc);

	/* by label: every rack has the same mix of kernels, nothing stands out */
	doc = report("--since 3d --by label=rack");
	assert_string_equal(json_string_value(json_object_get(doc, "granularity")), "day");
	assert_int_equal(json_array_size(json_object_get(doc, "cohorts")), 10);
	assert_int_equal(json_array_size(json_object_get(doc, "significant")), 0);
	assert_int_equal(json_integer_value(json_object_get(cohort(doc, "r3"), "hosts")), 30);
	json_decref(doc);
}

/* ---- 3. the page in a browser ------------------------------------------------ */

/* struct colour counts the screenshot's pixels close to one colour. */
struct colour {
	const char *name;
	int r, g, b;
	long n;
};

/* count_colours reads a PNG with libpng and counts, for each colour, the
 * pixels within 6 per channel of it. */
static void count_colours(const char *path, struct colour *cols, size_t ncols)
{
	png_image img;
	png_bytep px;

	memset(&img, 0, sizeof(img));
	img.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_file(&img, path))
		fail_msg("could not read \"%s\": %s", path, img.message);
	img.format = PNG_FORMAT_RGB;
	px = malloc(PNG_IMAGE_SIZE(img));
	assert_non_null(px);
	if (!png_image_finish_read(&img, NULL, px, 0, NULL))
		fail_msg("could not decode \"%s\": %s", path, img.message);
	for (size_t k = 0; k < ncols; k++)
		cols[k].n = 0;
	for (size_t i = 0; i < (size_t)img.width * img.height; i++) {
		const png_byte *p = px + 3 * i;

		for (size_t k = 0; k < ncols; k++) {
			if (abs(p[0] - cols[k].r) <= 6 && abs(p[1] - cols[k].g) <= 6 &&
			    abs(p[2] - cols[k].b) <= 6)
				cols[k].n++;
		}
	}
	free(px);
	png_image_free(&img);
}

/* strip_svg writes the page at src without its <svg> elements to dst. */
static void strip_svg(const char *src, const char *dst)
{
	FILE *in = fopen(src, "r"), *out = fopen(dst, "w");
	char *buf, *p, *q;
	long len;

	assert_non_null(in);
	assert_non_null(out);
	fseek(in, 0, SEEK_END);
	len = ftell(in);
	rewind(in);
	buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)len, in), (size_t)len);
	for (p = buf; (q = strstr(p, "<svg")) != NULL;) {
		fwrite(p, 1, (size_t)(q - p), out);
		p = strstr(q, "</svg>");
		assert_non_null(p);
		p += 6;
	}
	fputs(p, out);
	fclose(in);
	fclose(out);
	free(buf);
}

static void screenshot(const char *html, const char *png)
{
	char cmd[2048];
	int st;

	snprintf(cmd, sizeof(cmd),
		 "timeout 90 %s --headless --no-sandbox --disable-gpu --hide-scrollbars"
		 " --user-data-dir=%s/chrome --screenshot=%s --window-size=1280,2600 file://%s"
		 " >>%s/chromium.log 2>&1",
		 chromium, dir, png, html, dir);
	st = system(cmd);
	if (st != 0 || access(png, R_OK) != 0)
		fail_msg("chromium could not take a screenshot of \"%s\" (status %d; see %s/chromium.log)",
			 html, st, dir);
}

static size_t count_str(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static void test_html_in_browser(void **state)
{
	char page[512], blank[512], shot[512], shot0[512], cmd[2048];
	struct colour cols[] = {
		{ "other cohorts (blue)", 0x1f, 0x77, 0xb4, 0 },
		{ "significantly worse (red)", 0xd6, 0x27, 0x28, 0 },
		{ "p99 bars (dark blue)", 0x08, 0x51, 0x9c, 0 },
	}, blank_cols[3];
	char *out;
	int st;

	(void)state;
	snprintf(page, sizeof(page), "%s/kernels.html", dir);
	snprintf(blank, sizeof(blank), "%s/kernels-nosvg.html", dir);
	snprintf(shot, sizeof(shot), "%s/kernels.png", dir);
	snprintf(shot0, sizeof(shot0), "%s/kernels-nosvg.png", dir);
	snprintf(cmd, sizeof(cmd), "%s --server %s kernels --since 3d --html %s", SH_CLI_BIN, http_url,
		 page);
	out = run_capture(cmd, &st);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, BAD_KERNEL)); /* the tables were printed too */
	assert_non_null(strstr(out, "WORSE"));
	free(out);
	if (!chromium) {
		print_message("SKIP: chromium is not installed (deploy/install-deps.sh installs it); "
			      "the report's JSON checks passed, the page was not rendered\n");
		skip();
	}
	/* the DOM has the charts */
	snprintf(cmd, sizeof(cmd),
		 "timeout 90 %s --headless --no-sandbox --disable-gpu --user-data-dir=%s/chrome"
		 " --dump-dom file://%s 2>>%s/chromium.log",
		 chromium, dir, page, dir);
	out = run_capture(cmd, &st);
	assert_int_equal(st, 0);
	assert_int_equal(count_str(out, "<svg"), 3); /* accounting and runq rates, runq latency */
	assert_int_equal(count_str(out, "class=\"rate-chart\""), 2);
	assert_int_equal(count_str(out, "class=\"latency-chart\""), 1);
	assert_true(count_str(out, "<circle") >= 6);
	assert_true(count_str(out, "<rect") >= 6);
	assert_non_null(strstr(out, "significantly worse"));
	free(out);
	/* the screenshot shows them: chart colours, which the page without
	 * its SVG lacks */
	strip_svg(page, blank);
	screenshot(page, shot);
	screenshot(blank, shot0);
	count_colours(shot, cols, 3);
	memcpy(blank_cols, cols, sizeof(cols));
	count_colours(shot0, blank_cols, 3);
	for (size_t k = 0; k < 3; k++)
		print_message("%s: %ld pixels with the charts, %ld without\n", cols[k].name, cols[k].n,
			      blank_cols[k].n);
	assert_true(cols[0].n > 150 && blank_cols[0].n < 20);
	assert_true(cols[1].n > blank_cols[1].n + 100);
	assert_true(cols[2].n > 1000 && blank_cols[2].n < 20);
}

/* ---- setup --------------------------------------------------------------------- */

static int setup(void **state)
{
	int rv = sht_fresh_db("kernels", dsn, sizeof(dsn));
	char listen[64];

	(void)state;
	if (rv != 0)
		return rv;
	if (sht_mkdtemp("sh-kernels-", dir, sizeof(dir)) != 0)
		return -1;
	snprintf(logpath, sizeof(logpath), "%s/aggregator.log", dir);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", sht_free_port());
	snprintf(listen, sizeof(listen), "%s", url);
	snprintf(http_url, sizeof(http_url), "http://127.0.0.1:%d", sht_free_port());
	{
		char *argv[] = { SH_AGG_BIN, "--db", dsn, "--listen", listen, "--http", http_url,
				 "--data-dir", dir, "--stats-interval", "60s", NULL };

		agg = sht_spawn(argv, logpath);
	}
	if (agg < 0 || sht_wait_log(logpath, "ready", 60000) != 0) {
		fprintf(stderr, "the aggregator did not start; see %s\n", logpath);
		return -1;
	}
	chromium = sht_find_chromium();
	return 0;
}

static int teardown(void **state)
{
	int status;

	(void)state;
	if (agg > 0) {
		status = sht_stop(agg, SIGTERM, 30000);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fprintf(stderr, "the aggregator exited badly (status %d); see %s\n", status, logpath);
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
		cmocka_unit_test(test_ingest_rollups),
		cmocka_unit_test(test_fleet_report),
		cmocka_unit_test(test_html_in_browser),
	};
	int rv, pre;
	char probe[1024];

	/* no fixture: skip as a whole (the setup would fail) */
	if ((pre = sht_fixture_dsn(probe, sizeof(probe))) != 0)
		return pre == SHT_SKIP ? SHT_SKIP : 1;
	rv = cmocka_run_group_tests(tests, setup, teardown);
	if (rv == 0 && !sht_find_chromium()) {
		printf("SKIP: chromium is not installed: the page was not rendered\n");
		return SHT_SKIP;
	}
	return rv;
}
