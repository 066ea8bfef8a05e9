/* http.c: the aggregator's HTTP server. nng's HTTP server accepts and
 * parses requests on its threads; this file hands each one to the libuv
 * loop through a mutex-protected queue and a uv_async handle, routes it on
 * the loop, and completes nng's handler aio with the route's answer.
 *
 * Ownership of a request: an nng thread allocates it and queues it; from
 * then on only the loop touches it. Its handler aio stays unfinished until
 * the loop answers, so nng keeps the connection (and the aio) alive until
 * then. We never register a cancel function on that aio: nng cancels a
 * handler's aio only when its server stops, and agg_http_stop() answers
 * every request before it stops nng's server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "http.h"
#include "log.h"

/* How long agg_http_stop() lets the last answers reach their clients
 * before nng's server closes every connection. */
#define STOP_GRACE_MS 150
#define MAX_PARAMS 64
#define MAX_ROUTES 64

static const char shutdown_body[] = "{\"error\": \"the aggregator is shutting down\"}";

struct param {
	char *name;
	char *value;
};

struct agg_http_req {
	struct agg_http *http;
	nng_aio *aio; /* NULL once answered or failed by agg_http_stop() */
	struct agg_http_req *next; /* queue, then inflight list */
	struct agg_http_req *prev; /* inflight list */
	bool inflight;
	char *method;
	char *uri; /* raw: path and query */
	char *body;
	size_t body_len;
	/* filled on the loop by parse_uri() */
	char *path;
	struct param params[MAX_PARAMS];
	int nparams;
};

struct route {
	char *method;
	char *path;
	agg_http_route_cb cb;
	void *arg;
};

struct agg_http {
	uv_loop_t *loop;
	uv_async_t async;
	uv_timer_t timer;
	nng_http_server *server;
	int port;

	pthread_mutex_t mtx;
	/* protected by mtx */
	bool open;      /* the async handle is ready: queue requests */
	bool stopping;  /* answer new requests with 503 in nng's thread */
	struct agg_http_req *q_head, *q_tail;
	uint64_t nqueued;
	uint64_t requests;
	uint64_t errors;

	/* loop thread only */
	struct route routes[MAX_ROUTES];
	int nroutes;
	struct agg_http_req *inflight; /* dispatched, not yet answered */
	uint64_t ninflight;
	int nclosing;  /* handles whose close callback is still due */
	bool stopped;  /* agg_http_stop() was called */
};

static int nng_to_errno(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return -EINVAL;
	case NNG_EADDRINUSE:
		return -EADDRINUSE;
	case NNG_EPERM:
		return -EACCES;
	case NNG_ENOTSUP:
		return -ENOTSUP;
	case NNG_ETIMEDOUT:
		return -ETIMEDOUT;
	case NNG_ECONNREFUSED:
		return -ECONNREFUSED;
	default:
		return -EIO;
	}
}

static void req_free(struct agg_http_req *req)
{
	int i;

	if (req == NULL)
		return;
	for (i = 0; i < req->nparams; i++) {
		free(req->params[i].name);
		free(req->params[i].value);
	}
	free(req->path);
	free(req->method);
	free(req->uri);
	free(req->body);
	free(req);
}

/* finish_aio completes a handler aio with a response; after this the aio
 * belongs to nng again. Returns 0 or -ENOMEM (then nng closes the
 * connection). */
static int finish_aio(nng_aio *aio, int status, const char *content_type,
		      const char *const *headers, const void *body, size_t len)
{
	nng_http_res *res = NULL;
	bool cache_set = false;
	int rv;

	if ((rv = nng_http_res_alloc(&res)) != 0)
		goto fail;
	if ((rv = nng_http_res_set_status(res, (uint16_t)status)) != 0 ||
	    (rv = nng_http_res_set_header(res, "Content-Type", content_type)) != 0 ||
	    (rv = nng_http_res_set_header(res, "X-Content-Type-Options", "nosniff")) != 0)
		goto fail;
	for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2) {
		if (strcasecmp(headers[i], "Cache-Control") == 0)
			cache_set = true;
		if ((rv = nng_http_res_set_header(res, headers[i], headers[i + 1])) != 0)
			goto fail;
	}
	if (!cache_set && (rv = nng_http_res_set_header(res, "Cache-Control", "no-store")) != 0)
		goto fail;
	if (len > 0 && (rv = nng_http_res_copy_data(res, body, len)) != 0)
		goto fail;
	nng_aio_set_output(aio, 0, res);
	nng_aio_finish(aio, 0);
	return 0;
fail:
	nng_http_res_free(res);
	nng_aio_finish(aio, rv);
	return -ENOMEM;
}

/* copy_str duplicates s, or returns NULL for NULL or on failure. */
static char *copy_str(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

/* request_cb is nng's handler for "/", "/api/..." and "/ui/...", running on an nng
 * thread: it copies the request, queues it for the loop and returns
 * without finishing aio (unless it answers at once with an error). */
static void request_cb(nng_aio *aio)
{
	nng_http_req *hreq = nng_aio_get_input(aio, 0);
	nng_http_handler *h = nng_aio_get_input(aio, 1);
	struct agg_http *http = nng_http_handler_get_data(h);
	struct agg_http_req *req;
	const char *uri = nng_http_req_get_uri(hreq);
	void *body;
	size_t body_len;
	int status = 0;

	nng_http_req_get_data(hreq, &body, &body_len);
	req = calloc(1, sizeof(*req));
	if (req != NULL) {
		req->http = http;
		req->aio = aio;
		req->method = copy_str(nng_http_req_get_method(hreq));
		req->uri = copy_str(uri);
		req->body = malloc(body_len + 1);
		if (req->body != NULL) {
			if (body_len > 0)
				memcpy(req->body, body, body_len);
			req->body[body_len] = '\0';
			req->body_len = body_len;
		}
	}
	if (req == NULL || req->method == NULL || req->uri == NULL || req->body == NULL)
		status = 500;
	else if (strlen(uri) > AGG_HTTP_MAX_REQUEST)
		status = 414; /* nng's 8 KiB header buffer makes this unlikely */
	else if (body_len > AGG_HTTP_MAX_REQUEST)
		status = 413; /* nng refuses these before reading them */

	pthread_mutex_lock(&http->mtx);
	http->requests++;
	if (status == 0 && (!http->open || http->stopping))
		status = 503;
	if (status != 0) {
		http->errors++;
	} else {
		if (http->q_tail != NULL)
			http->q_tail->next = req;
		else
			http->q_head = req;
		http->q_tail = req;
		http->nqueued++;
		/* Under the lock: agg_http_stop() sets stopping under it before
		 * it closes the handle, so the handle is alive here. */
		uv_async_send(&http->async);
	}
	pthread_mutex_unlock(&http->mtx);

	if (status == 0)
		return;
	req_free(req);
	if (status == 503) {
		finish_aio(aio, 503, "application/json", NULL, shutdown_body, sizeof(shutdown_body) - 1);
	} else if (status == 413 || status == 414) {
		static const char m[] = "{\"error\": \"request too large\"}";
		finish_aio(aio, status, "application/json", NULL, m, sizeof(m) - 1);
	} else {
		nng_aio_finish(aio, NNG_ENOMEM);
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* pct_decode decodes n bytes of s (%XX escapes, and '+' as a space when
 * plus_space) into a new string in *out (caller frees). Returns 0,
 * -EINVAL for a bad escape or an encoded NUL, or -ENOMEM. */
static int pct_decode(const char *s, size_t n, bool plus_space, char **out)
{
	char *d = malloc(n + 1);
	size_t i, j = 0;

	if (d == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi, lo;

			if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 ||
			    (lo = hexval(s[i + 2])) < 0 || (hi == 0 && lo == 0)) {
				free(d);
				return -EINVAL;
			}
			d[j++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (s[i] == '+' && plus_space) {
			d[j++] = ' ';
		} else {
			d[j++] = s[i];
		}
	}
	d[j] = '\0';
	*out = d;
	return 0;
}

/* parse_uri splits req->uri into the decoded path and parameters. Returns
 * 0, -EINVAL (bad encoding, too many parameters) or -ENOMEM. */
static int parse_uri(struct agg_http_req *req)
{
	const char *q = strchr(req->uri, '?');
	size_t plen = q != NULL ? (size_t)(q - req->uri) : strlen(req->uri);
	const char *p, *end;
	int rv;

	if ((rv = pct_decode(req->uri, plen, false, &req->path)) != 0)
		return rv;
	if (q == NULL)
		return 0;
	for (p = q + 1; *p != '\0'; p = *end != '\0' ? end + 1 : end) {
		const char *eq;
		struct param *pa;

		end = p + strcspn(p, "&");
		if (end == p)
			continue;
		if (req->nparams == MAX_PARAMS)
			return -EINVAL;
		eq = memchr(p, '=', (size_t)(end - p));
		pa = &req->params[req->nparams];
		if ((rv = pct_decode(p, (size_t)((eq != NULL ? eq : end) - p), true, &pa->name)) != 0)
			return rv;
		if (eq != NULL)
			rv = pct_decode(eq + 1, (size_t)(end - eq - 1), true, &pa->value);
		else
			rv = (pa->value = strdup("")) != NULL ? 0 : -ENOMEM;
		if (rv != 0) {
			free(pa->name);
			pa->name = NULL;
			return rv;
		}
		req->nparams++;
	}
	return 0;
}

/* path_eq compares a request path with a route path, ignoring one trailing
 * '/' on the request's side. */
static bool path_eq(const char *reqpath, const char *route)
{
	size_t n = strlen(route);

	if (strncmp(reqpath, route, n) != 0)
		return false;
	return reqpath[n] == '\0' || (reqpath[n] == '/' && reqpath[n + 1] == '\0' && n > 1);
}

static void inflight_add(struct agg_http *http, struct agg_http_req *req)
{
	req->prev = NULL;
	req->next = http->inflight;
	if (http->inflight != NULL)
		http->inflight->prev = req;
	http->inflight = req;
	req->inflight = true;
	http->ninflight++;
}

static void inflight_remove(struct agg_http *http, struct agg_http_req *req)
{
	if (!req->inflight)
		return;
	if (req->prev != NULL)
		req->prev->next = req->next;
	else
		http->inflight = req->next;
	if (req->next != NULL)
		req->next->prev = req->prev;
	req->next = req->prev = NULL;
	req->inflight = false;
	http->ninflight--;
}

static void http_free(struct agg_http *http)
{
	int i;

	for (i = 0; i < http->nroutes; i++) {
		free(http->routes[i].method);
		free(http->routes[i].path);
	}
	pthread_mutex_destroy(&http->mtx);
	free(http);
}

/* maybe_free frees http once it is stopped, its handles are closed and
 * every dispatched request has been answered. */
static void maybe_free(struct agg_http *http)
{
	if (http->stopped && http->nclosing == 0 && http->server == NULL && http->ninflight == 0)
		http_free(http);
}

static void dispatch(struct agg_http *http, struct agg_http_req *req)
{
	const char *method = req->method;
	bool path_known = false;
	int i, rv;

	/* Counted as in flight from here on, so that agg_http_stop() called
	 * by a route fails it and http outlives it. */
	inflight_add(http, req);
	if ((rv = parse_uri(req)) != 0) {
		if (rv == -ENOMEM)
			agg_http_respond_error(req, 500, "out of memory");
		else
			agg_http_respond_error(req, 400, "malformed URI (bad percent-encoding or more than %d parameters)",
					       MAX_PARAMS);
		return;
	}
	if (strcmp(method, "HEAD") == 0)
		method = "GET";
	for (i = 0; i < http->nroutes; i++) {
		struct route *r = &http->routes[i];

		if (!path_eq(req->path, r->path))
			continue;
		path_known = true;
		if (strcmp(method, r->method) == 0) {
			r->cb(req, r->arg);
			return;
		}
	}
	if (path_known)
		agg_http_respond_error(req, 405, "method %s is not allowed here", method);
	else
		agg_http_respond_error(req, 404, "no such endpoint: %s", req->path);
}

/* async_cb drains the whole queue: uv_async_send coalesces wake-ups. */
static void async_cb(uv_async_t *handle)
{
	struct agg_http *http = handle->data;
	struct agg_http_req *req, *next;

	pthread_mutex_lock(&http->mtx);
	req = http->q_head;
	http->q_head = http->q_tail = NULL;
	http->nqueued = 0;
	pthread_mutex_unlock(&http->mtx);

	for (; req != NULL; req = next) {
		next = req->next;
		req->next = NULL;
		if (http->stopped) {
			/* A route stopped the server while we were draining. */
			finish_aio(req->aio, 503, "application/json", NULL, shutdown_body,
				   sizeof(shutdown_body) - 1);
			pthread_mutex_lock(&http->mtx);
			http->errors++;
			pthread_mutex_unlock(&http->mtx);
			req_free(req);
			continue;
		}
		dispatch(http, req);
	}
}

static void close_cb(uv_handle_t *handle)
{
	struct agg_http *http = handle->data;

	http->nclosing--;
	maybe_free(http);
}

/* grace_cb runs after the grace period: stops nng's server (this waits for
 * its connections to finish; every handler aio is answered by now, and new
 * ones are answered in nng's threads) and closes our handles. */
static void grace_cb(uv_timer_t *timer)
{
	struct agg_http *http = timer->data;

	nng_http_server_stop(http->server);
	nng_http_server_release(http->server);
	http->server = NULL;
	http->nclosing = 2;
	uv_close((uv_handle_t *)&http->async, close_cb);
	uv_close((uv_handle_t *)&http->timer, close_cb);
}

void agg_http_stop(struct agg_http *http)
{
	struct agg_http_req *req, *next;
	uint64_t failed = 0;

	if (http == NULL || http->stopped)
		return;
	http->stopped = true;

	pthread_mutex_lock(&http->mtx);
	http->stopping = true;
	req = http->q_head;
	http->q_head = http->q_tail = NULL;
	http->nqueued = 0;
	pthread_mutex_unlock(&http->mtx);

	for (; req != NULL; req = next) {
		next = req->next;
		finish_aio(req->aio, 503, "application/json", NULL, shutdown_body,
			   sizeof(shutdown_body) - 1);
		req_free(req);
		failed++;
	}
	/* Requests a route still holds: answer the client now; the route's
	 * own answer will find req->aio NULL and only free req. */
	for (req = http->inflight; req != NULL; req = req->next) {
		if (req->aio == NULL)
			continue;
		finish_aio(req->aio, 503, "application/json", NULL, shutdown_body,
			   sizeof(shutdown_body) - 1);
		req->aio = NULL;
		failed++;
	}
	pthread_mutex_lock(&http->mtx);
	http->errors += failed;
	pthread_mutex_unlock(&http->mtx);

	uv_timer_start(&http->timer, grace_cb, STOP_GRACE_MS, 0);
}

int agg_http_start(uv_loop_t *loop, const char *url, struct agg_http **httpp)
{
	struct agg_http *http;
	nng_url *u = NULL;
	nng_http_handler *h_api = NULL, *h_root = NULL, *h_ui = NULL;
	nng_sockaddr sa;
	int rv;

	*httpp = NULL;
	if (url == NULL)
		url = AGG_HTTP_DEFAULT_URL;
	http = calloc(1, sizeof(*http));
	if (http == NULL)
		return -ENOMEM;
	http->loop = loop;
	if ((rv = pthread_mutex_init(&http->mtx, NULL)) != 0) {
		free(http);
		return -rv;
	}

	if ((rv = nng_url_parse(&u, url)) != 0) {
		sh_err("could not parse HTTP listen URL \"%s\": %s", url, nng_strerror(rv));
		goto fail;
	}
	if (strcmp(u->u_scheme, "http") != 0) {
		sh_err("HTTP listen URL \"%s\": only http:// is supported", url);
		rv = NNG_EINVAL;
		goto fail;
	}
	if ((rv = nng_http_server_hold(&http->server, u)) != 0) {
		sh_err("could not create HTTP server for \"%s\": %s", url, nng_strerror(rv));
		goto fail;
	}
	/* Three handlers: the "/api" tree, the "/ui" tree (the web pages)
	 * and the exact "/" for the index page. Any method: the loop answers
	 * 405 itself. */
	if ((rv = nng_http_handler_alloc(&h_api, "/api", request_cb)) != 0 ||
	    (rv = nng_http_handler_set_tree(h_api)) != 0 ||
	    (rv = nng_http_handler_set_method(h_api, NULL)) != 0 ||
	    (rv = nng_http_handler_collect_body(h_api, true, AGG_HTTP_MAX_REQUEST)) != 0 ||
	    (rv = nng_http_handler_set_data(h_api, http, NULL)) != 0 ||
	    (rv = nng_http_handler_alloc(&h_root, "/", request_cb)) != 0 ||
	    (rv = nng_http_handler_set_method(h_root, NULL)) != 0 ||
	    (rv = nng_http_handler_collect_body(h_root, true, AGG_HTTP_MAX_REQUEST)) != 0 ||
	    (rv = nng_http_handler_set_data(h_root, http, NULL)) != 0 ||
	    (rv = nng_http_handler_alloc(&h_ui, "/ui", request_cb)) != 0 ||
	    (rv = nng_http_handler_set_tree(h_ui)) != 0 ||
	    (rv = nng_http_handler_set_method(h_ui, NULL)) != 0 ||
	    (rv = nng_http_handler_collect_body(h_ui, true, AGG_HTTP_MAX_REQUEST)) != 0 ||
	    (rv = nng_http_handler_set_data(h_ui, http, NULL)) != 0) {
		sh_err("could not set up HTTP handlers: %s", nng_strerror(rv));
		goto fail;
	}
	if ((rv = nng_http_server_add_handler(http->server, h_api)) != 0) {
		sh_err("could not add HTTP handler \"/api\": %s", nng_strerror(rv));
		goto fail;
	}
	h_api = NULL; /* the server owns it now */
	if ((rv = nng_http_server_add_handler(http->server, h_root)) != 0) {
		sh_err("could not add HTTP handler \"/\": %s", nng_strerror(rv));
		goto fail;
	}
	h_root = NULL;
	if ((rv = nng_http_server_add_handler(http->server, h_ui)) != 0) {
		sh_err("could not add HTTP handler \"/ui\": %s", nng_strerror(rv));
		goto fail;
	}
	h_ui = NULL;
	if ((rv = nng_http_server_start(http->server)) != 0) {
		sh_err("could not listen on \"%s\": %s", url, nng_strerror(rv));
		goto fail;
	}
	if (nng_http_server_get_addr(http->server, &sa) == 0 && sa.s_family == NNG_AF_INET)
		http->port = ntohs(sa.s_in.sa_port);
	else if (nng_http_server_get_addr(http->server, &sa) == 0 && sa.s_family == NNG_AF_INET6)
		http->port = ntohs(sa.s_in6.sa_port);
	else
		http->port = atoi(u->u_port);
	nng_url_free(u);

	/* Requests that arrive before the handle exists are answered 503
	 * (open is still false); uv_async_init cannot fail on a live loop. */
	uv_async_init(loop, &http->async, async_cb);
	http->async.data = http;
	uv_timer_init(loop, &http->timer);
	http->timer.data = http;
	pthread_mutex_lock(&http->mtx);
	http->open = true;
	pthread_mutex_unlock(&http->mtx);
	*httpp = http;
	return 0;

fail:
	if (h_api != NULL)
		nng_http_handler_free(h_api);
	if (h_root != NULL)
		nng_http_handler_free(h_root);
	if (h_ui != NULL)
		nng_http_handler_free(h_ui);
	if (http->server != NULL)
		nng_http_server_release(http->server);
	nng_url_free(u);
	pthread_mutex_destroy(&http->mtx);
	free(http);
	return nng_to_errno(rv);
}

int agg_http_route(struct agg_http *http, const char *method, const char *path,
		   agg_http_route_cb cb, void *arg)
{
	struct route *r;
	int i;

	if (method == NULL || path == NULL || cb == NULL ||
	    (strcmp(path, "/") != 0 && strcmp(path, "/api") != 0 && strncmp(path, "/api/", 5) != 0 &&
	     strcmp(path, "/ui") != 0 && strncmp(path, "/ui/", 4) != 0))
		return -EINVAL;
	for (i = 0; i < http->nroutes; i++) {
		if (strcmp(http->routes[i].method, method) == 0 &&
		    strcmp(http->routes[i].path, path) == 0)
			return -EEXIST;
	}
	if (http->nroutes == MAX_ROUTES)
		return -ENOMEM;
	r = &http->routes[http->nroutes];
	r->method = strdup(method);
	r->path = strdup(path);
	if (r->method == NULL || r->path == NULL) {
		free(r->method);
		free(r->path);
		r->method = r->path = NULL;
		return -ENOMEM;
	}
	/* a trailing '/' is ignored (path_eq) */
	if (strlen(r->path) > 1 && r->path[strlen(r->path) - 1] == '/')
		r->path[strlen(r->path) - 1] = '\0';
	r->cb = cb;
	r->arg = arg;
	http->nroutes++;
	return 0;
}

int agg_http_port(const struct agg_http *http)
{
	return http->port;
}

void agg_http_get_stats(struct agg_http *http, struct agg_http_stats *st)
{
	pthread_mutex_lock(&http->mtx);
	st->requests = http->requests;
	st->errors = http->errors;
	st->pending = http->nqueued;
	pthread_mutex_unlock(&http->mtx);
	st->pending += http->ninflight;
}

const char *agg_http_req_method(const struct agg_http_req *req)
{
	return req->method;
}

const char *agg_http_req_path(const struct agg_http_req *req)
{
	return req->path;
}

const char *agg_http_req_param(const struct agg_http_req *req, const char *name)
{
	int i;

	for (i = 0; i < req->nparams; i++) {
		if (strcmp(req->params[i].name, name) == 0)
			return req->params[i].value;
	}
	return NULL;
}

const void *agg_http_req_body(const struct agg_http_req *req, size_t *len)
{
	*len = req->body_len;
	return req->body;
}

int agg_http_respond(struct agg_http_req *req, int status, const char *content_type,
		     const void *body, size_t len)
{
	return agg_http_respond_headers(req, status, content_type, NULL, body, len);
}

int agg_http_respond_headers(struct agg_http_req *req, int status, const char *content_type,
			     const char *const *headers, const void *body, size_t len)
{
	struct agg_http *http = req->http;
	nng_aio *aio = req->aio;
	int rv = -ESHUTDOWN;

	inflight_remove(http, req);
	req->aio = NULL;
	if (aio != NULL) {
		if (status >= 400) {
			pthread_mutex_lock(&http->mtx);
			http->errors++;
			pthread_mutex_unlock(&http->mtx);
		}
		rv = finish_aio(aio, status, content_type, headers, body, len);
	}
	req_free(req);
	maybe_free(http);
	return rv;
}

int agg_http_respond_error(struct agg_http_req *req, int status, const char *fmt, ...)
{
	char msg[512];
	json_t *obj;
	char *body = NULL;
	va_list ap;
	int rv;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* json_string rejects invalid UTF-8: fall back to a fixed text */
	obj = json_pack("{s:s}", "error", msg);
	if (obj == NULL)
		obj = json_pack("{s:s}", "error", "request failed (message not valid UTF-8)");
	if (obj != NULL)
		body = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (body == NULL) {
		static const char oom[] = "{\"error\":\"out of memory\"}";
		return agg_http_respond(req, status, "application/json", oom, sizeof(oom) - 1);
	}
	rv = agg_http_respond(req, status, "application/json", body, strlen(body));
	free(body);
	return rv;
}
