/* test_agg_http.c: the HTTP server's hand-over from nng's threads to the
 * loop: routing, percent-decoding, answers now and later, many requests at
 * once, oversize and malformed requests, and a clean stop that fails the
 * requests a route still holds with 503 and leaves the loop empty. A
 * client thread drives the server with nng's HTTP client and raw sockets
 * while the test thread runs the loop; the client only records what it
 * saw, and the test thread checks it after the loop has ended. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "http.h"

#ifdef __SANITIZE_THREAD__
/* libnng is not instrumented: TSan cannot see the atomics and poller
 * hand-offs inside it and reports its own teardown of objects it
 * allocated in our client thread. Ignore accesses made inside
 * uninstrumented modules (their locks still order our code's accesses). */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
	return "ignore_noninstrumented_modules=1";
}
#endif

#define NPARALLEL 24
#define MAXRES 64

struct result {
	const char *what;
	int rv; /* nng error of the transaction, or -errno for raw sockets */
	int status;
	char body[512];
};

struct fixture {
	uv_loop_t loop;
	struct agg_http *http;
	int port;
	pthread_t client;
	struct result res[MAXRES];
	int nres;
	struct result parallel[NPARALLEL];
	struct agg_http_stats stats_at_stop;
	int late_respond_rv; /* agg_http_respond on a request failed by stop */
	int later_pending;
	int refused_rv;      /* connecting after the stop */
};

static struct fixture fx;

/* --- routes (loop thread) --- */

static void index_cb(struct agg_http_req *req, void *arg)
{
	static const char page[] = "<html>index</html>";

	agg_http_respond(req, 200, "text/html", page, sizeof(page) - 1);
}

/* echo_cb answers with the decoded path and parameters a, b, c, d, e. */
static void echo_cb(struct agg_http_req *req, void *arg)
{
	const char *names[] = {"a", "b", "c", "d", "e"};
	json_t *o = json_object();
	size_t i, len;
	char *s;

	json_object_set_new(o, "path", json_string(agg_http_req_path(req)));
	for (i = 0; i < 5; i++) {
		const char *v = agg_http_req_param(req, names[i]);

		json_object_set_new(o, names[i], v != NULL ? json_string(v) : json_null());
	}
	agg_http_req_body(req, &len);
	json_object_set_new(o, "body_len", json_integer((json_int_t)len));
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	assert_non_null(s);
	assert_int_equal(agg_http_respond(req, 200, "application/json", s, strlen(s)), 0);
	free(s);
}

struct later {
	uv_timer_t timer;
	struct agg_http_req *req;
};

static void later_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void later_timer_cb(uv_timer_t *t)
{
	struct later *l = t->data;
	char body[64];

	snprintf(body, sizeof(body), "{\"later\": \"%s\"}", agg_http_req_param(l->req, "n"));
	assert_int_equal(agg_http_respond(l->req, 200, "application/json", body, strlen(body)), 0);
	fx.later_pending--;
	uv_close((uv_handle_t *)&l->timer, later_close_cb);
}

/* later_cb answers 20 ms later, from a timer: the asynchronous path. */
static void later_cb(struct agg_http_req *req, void *arg)
{
	struct later *l = calloc(1, sizeof(*l));

	assert_non_null(l);
	l->req = req;
	uv_timer_init(&fx.loop, &l->timer);
	l->timer.data = l;
	fx.later_pending++;
	uv_timer_start(&l->timer, later_timer_cb, 20, 0);
}

/* hold_cb stops the server while holding its request, then answers it:
 * the client must get 503 and the late answer must be discarded. */
static void hold_cb(struct agg_http_req *req, void *arg)
{
	agg_http_get_stats(fx.http, &fx.stats_at_stop);
	agg_http_stop(fx.http);
	fx.late_respond_rv = agg_http_respond(req, 200, "text/plain", "too late", 8);
}

/* --- client (its own thread; records only) --- */

static struct result *next_result(const char *what)
{
	struct result *r = &fx.res[fx.nres++];

	r->what = what;
	return r;
}

static void transact(struct result *r, const char *method, const char *uri, const void *body,
		     size_t len)
{
	char url[256];
	nng_url *u = NULL;
	nng_http_client *cli = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_aio *aio = NULL;
	void *data;
	size_t dlen;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", fx.port);
	if ((r->rv = nng_url_parse(&u, url)) != 0 || (r->rv = nng_http_client_alloc(&cli, u)) != 0 ||
	    (r->rv = nng_http_req_alloc(&req, u)) != 0 || (r->rv = nng_http_res_alloc(&res)) != 0 ||
	    (r->rv = nng_aio_alloc(&aio, NULL, NULL)) != 0 ||
	    (r->rv = nng_http_req_set_method(req, method)) != 0 ||
	    (r->rv = nng_http_req_set_uri(req, uri)) != 0)
		goto out;
	if (len > 0 && (r->rv = nng_http_req_copy_data(req, body, len)) != 0)
		goto out;
	nng_aio_set_timeout(aio, 5000);
	nng_http_client_transact(cli, req, res, aio);
	nng_aio_wait(aio);
	if ((r->rv = nng_aio_result(aio)) != 0)
		goto out;
	r->status = nng_http_res_get_status(res);
	nng_http_res_get_data(res, &data, &dlen);
	if (dlen >= sizeof(r->body))
		dlen = sizeof(r->body) - 1;
	if (dlen > 0)
		memcpy(r->body, data, dlen);
	r->body[dlen] = '\0';
out:
	nng_aio_free(aio);
	nng_http_res_free(res);
	nng_http_req_free(req);
	nng_http_client_free(cli);
	nng_url_free(u);
}

/* raw sends text as is over TCP and records the status of the answer
 * (0 when the server closed without one). */
static void raw(struct result *r, const char *text)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
	struct timeval tv = {.tv_sec = 5};
	char buf[512];
	size_t off = 0, len = strlen(text);
	ssize_t n;
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		r->rv = -errno;
		close(fd);
		return;
	}
	while (off < len && (n = send(fd, text + off, len - off, MSG_NOSIGNAL)) > 0)
		off += (size_t)n;
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	if (n > 0) {
		buf[n] = '\0';
		sscanf(buf, "HTTP/1.1 %d", &r->status);
		snprintf(r->body, sizeof(r->body), "%s", buf);
	}
	close(fd);
}

static void *client_main(void *arg)
{
	nng_http_client *cli;
	nng_url *u;
	nng_http_req *reqs[NPARALLEL];
	nng_http_res *ress[NPARALLEL];
	nng_aio *aios[NPARALLEL];
	char url[128], *big;
	int i;

	transact(next_result("index"), "GET", "/", NULL, 0);
	transact(next_result("echo"), "GET",
		 "/api/echo/?a=1&b=hello%20world&c=x+y%2By&d&e=%C3%A9%26%3D", NULL, 0);
	transact(next_result("unknown api"), "GET", "/api/nope", NULL, 0);
	transact(next_result("unknown path"), "GET", "/nope", NULL, 0);
	transact(next_result("wrong method"), "DELETE", "/api/echo", NULL, 0);
	transact(next_result("post body"), "POST", "/api/body", "0123456789", 10);
	transact(next_result("head"), "HEAD", "/api/echo", NULL, 0);
	raw(next_result("bad escape"), "GET /api/echo?a=%zz HTTP/1.1\r\nHost: x\r\n\r\n");
	raw(next_result("encoded nul"), "GET /api/echo?a=%00 HTTP/1.1\r\nHost: x\r\n\r\n");
	raw(next_result("oversize body"),
	    "POST /api/body HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
	big = malloc(AGG_HTTP_MAX_REQUEST + 64);
	if (big != NULL) {
		memset(big, 'a', AGG_HTTP_MAX_REQUEST + 1);
		big[AGG_HTTP_MAX_REQUEST + 1] = '\0';
		transact(next_result("max body"), "POST", "/api/body", big, AGG_HTTP_MAX_REQUEST);
		transact(next_result("max+1 body"), "POST", "/api/body", big,
			 AGG_HTTP_MAX_REQUEST + 1);
		free(big);
	}

	/* Many at once, answered later: the loop drains a coalesced queue. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", fx.port);
	nng_url_parse(&u, url);
	nng_http_client_alloc(&cli, u);
	for (i = 0; i < NPARALLEL; i++) {
		char uri[64];

		snprintf(uri, sizeof(uri), "/api/later?n=%d", i);
		nng_http_req_alloc(&reqs[i], u);
		nng_http_req_set_uri(reqs[i], uri);
		nng_http_res_alloc(&ress[i]);
		nng_aio_alloc(&aios[i], NULL, NULL);
		nng_aio_set_timeout(aios[i], 5000);
		nng_http_client_transact(cli, reqs[i], ress[i], aios[i]);
	}
	for (i = 0; i < NPARALLEL; i++) {
		struct result *r = &fx.parallel[i];
		void *data;
		size_t dlen;

		nng_aio_wait(aios[i]);
		if ((r->rv = nng_aio_result(aios[i])) == 0) {
			r->status = nng_http_res_get_status(ress[i]);
			nng_http_res_get_data(ress[i], &data, &dlen);
			if (dlen >= sizeof(r->body))
				dlen = sizeof(r->body) - 1;
			if (dlen > 0)
				memcpy(r->body, data, dlen);
			r->body[dlen] = '\0';
		}
		nng_aio_free(aios[i]);
		nng_http_req_free(reqs[i]);
		nng_http_res_free(ress[i]);
	}
	nng_http_client_free(cli);
	nng_url_free(u);

	/* The route stops the server while holding this request. */
	raw(next_result("stop"), "GET /api/hold HTTP/1.1\r\nHost: x\r\n\r\n");
	usleep(500 * 1000);
	raw(next_result("after stop"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	return NULL;
}

static struct result *find(const char *what)
{
	int i;

	for (i = 0; i < fx.nres; i++) {
		if (strcmp(fx.res[i].what, what) == 0)
			return &fx.res[i];
	}
	fail_msg("no result for %s", what);
	return NULL;
}

static void test_serve_and_stop(void **state)
{
	struct result *r;
	int i;

	memset(&fx, 0, sizeof(fx));
	assert_int_equal(uv_loop_init(&fx.loop), 0);
	assert_int_equal(agg_http_start(&fx.loop, "http://127.0.0.1:0", &fx.http), 0);
	fx.port = agg_http_port(fx.http);
	assert_true(fx.port > 0);
	assert_int_equal(agg_http_route(fx.http, "GET", "/", index_cb, NULL), 0);
	assert_int_equal(agg_http_route(fx.http, "GET", "/api/echo", echo_cb, NULL), 0);
	assert_int_equal(agg_http_route(fx.http, "POST", "/api/body", echo_cb, NULL), 0);
	assert_int_equal(agg_http_route(fx.http, "GET", "/api/later", later_cb, NULL), 0);
	assert_int_equal(agg_http_route(fx.http, "GET", "/api/hold", hold_cb, NULL), 0);
	assert_int_equal(agg_http_route(fx.http, "GET", "/api/echo", echo_cb, NULL), -EEXIST);
	assert_int_equal(agg_http_route(fx.http, "GET", "/elsewhere", echo_cb, NULL), -EINVAL);

	assert_int_equal(pthread_create(&fx.client, NULL, client_main, NULL), 0);
	uv_run(&fx.loop, UV_RUN_DEFAULT);
	assert_int_equal(pthread_join(fx.client, NULL), 0);
	assert_int_equal(uv_loop_close(&fx.loop), 0);

	r = find("index");
	assert_int_equal(r->rv, 0);
	assert_int_equal(r->status, 200);
	assert_string_equal(r->body, "<html>index</html>");

	r = find("echo");
	assert_int_equal(r->status, 200);
	assert_string_equal(r->body, "{\"a\":\"1\",\"b\":\"hello world\",\"body_len\":0,\"c\":\"x y+y\","
				     "\"d\":\"\",\"e\":\"\xc3\xa9&=\",\"path\":\"/api/echo/\"}");

	r = find("unknown api");
	assert_int_equal(r->status, 404);
	assert_non_null(strstr(r->body, "\"error\""));
	assert_non_null(strstr(r->body, "/api/nope"));
	assert_int_equal(find("unknown path")->status, 404);

	r = find("wrong method");
	assert_int_equal(r->status, 405);
	assert_non_null(strstr(r->body, "DELETE"));

	r = find("post body");
	assert_int_equal(r->status, 200);
	assert_non_null(strstr(r->body, "\"body_len\":10"));

	r = find("head");
	assert_int_equal(r->rv, 0);
	assert_int_equal(r->status, 200);

	r = find("bad escape");
	assert_int_equal(r->status, 400);
	assert_non_null(strstr(r->body, "percent-encoding"));
	assert_int_equal(find("encoded nul")->status, 400);
	assert_int_equal(find("oversize body")->status, 400);

	r = find("max body");
	assert_int_equal(r->status, 200);
	assert_non_null(strstr(r->body, "\"body_len\":65536"));
	r = find("max+1 body");
	assert_true(r->rv != 0 || r->status == 400);

	for (i = 0; i < NPARALLEL; i++) {
		char want[64];

		assert_int_equal(fx.parallel[i].rv, 0);
		assert_int_equal(fx.parallel[i].status, 200);
		snprintf(want, sizeof(want), "{\"later\": \"%d\"}", i);
		assert_string_equal(fx.parallel[i].body, want);
	}
	assert_int_equal(fx.later_pending, 0);

	r = find("stop");
	assert_int_equal(r->rv, 0);
	assert_int_equal(r->status, 503);
	assert_non_null(strstr(r->body, "shutting down"));
	assert_int_equal(fx.late_respond_rv, -ESHUTDOWN);

	r = find("after stop");
	assert_int_equal(r->rv, -ECONNREFUSED);

	/* What reached the handler before the stop: index, echo, unknown
	 * api, wrong method, post body, head, the two raw ones, max body
	 * (nng itself answers unknown paths and oversize bodies), the
	 * parallel ones and the hold request, pending while it is counted;
	 * 404, 405 and 2x 400 were errors. */
	assert_int_equal(fx.stats_at_stop.requests, 9 + NPARALLEL + 1);
	assert_int_equal(fx.stats_at_stop.errors, 4);
	assert_int_equal(fx.stats_at_stop.pending, 1);
}

static void test_start_errors(void **state)
{
	uv_loop_t loop;
	struct agg_http *a, *b;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(agg_http_start(&loop, "tcp://127.0.0.1:0", &b), -EINVAL);
	assert_null(b);
	assert_int_equal(agg_http_start(&loop, "http://[::1", &b), -EINVAL);
	assert_int_equal(agg_http_start(&loop, "http://127.0.0.1:0", &a), 0);
	{
		char url[64];

		snprintf(url, sizeof(url), "http://127.0.0.1:%d", agg_http_port(a));
		assert_int_equal(agg_http_start(&loop, url, &b), -EADDRINUSE);
	}
	agg_http_stop(a);
	agg_http_stop(a); /* idempotent */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serve_and_stop),
		cmocka_unit_test(test_start_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
