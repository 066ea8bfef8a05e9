/* http.h: the aggregator's HTTP server (query API and index page) on nng's
 * HTTP server, handing every request over to the libuv loop.
 *
 * nng calls its handlers on its own threads. The handler only copies the
 * method, the URI and the body into a request object, queues it and wakes
 * the loop (uv_async_send); the loop drains the whole queue and dispatches
 * each request to the route registered for its method and path. A route
 * answers exactly once, at once or later (after an SQL query), with
 * agg_http_respond() on the loop thread. Everything in this header is for
 * the loop thread only.
 *
 * Size limits: nng refuses a body of more than AGG_HTTP_MAX_REQUEST bytes
 * with 400 before reading it, and drops the connection when the request
 * line and headers do not fit its 8 KiB buffer. nng itself answers paths
 * outside "/", "/api/..." and "/ui/..." (the web pages) with 404 (HTML);
 * everything under them gets JSON errors from here.
 */
#ifndef AGG_HTTP_H
#define AGG_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* AGG_HTTP_DEFAULT_URL is where the server listens unless configured. */
#define AGG_HTTP_DEFAULT_URL "http://127.0.0.1:7471"

/* AGG_HTTP_MAX_REQUEST is the largest request body or URI accepted. */
#define AGG_HTTP_MAX_REQUEST (64 * 1024)

struct agg_http;
struct agg_http_req;

/* agg_http_route_cb handles one request on the loop thread. It owns req
 * until it passes it to agg_http_respond(), which it must do exactly once
 * (now or later); arg is the one given to agg_http_route(). */
typedef void (*agg_http_route_cb)(struct agg_http_req *req, void *arg);

/* struct agg_http_stats is the server's self-metrics. */
struct agg_http_stats {
	uint64_t requests;  /* requests that reached the server's handler */
	uint64_t errors;    /* of those, answered with a status >= 400 */
	uint64_t pending;   /* queued or being handled by a route right now */
};

/* agg_http_start binds an HTTP server to url (NULL: AGG_HTTP_DEFAULT_URL;
 * port 0 picks a free port, see agg_http_port) and starts serving requests
 * through loop. On success *httpp is the server, to be released with
 * agg_http_stop(). Returns 0, -EINVAL for a bad URL, -EADDRINUSE, -ENOMEM,
 * or another negative errno. */
int agg_http_start(uv_loop_t *loop, const char *url, struct agg_http **httpp);

/* agg_http_route registers cb for requests with this method ("GET"; HEAD
 * requests use the GET route) and exact, percent-decoded path ("/api/hosts";
 * a trailing '/' is ignored). path must be "/", "/api", "/ui" or start
 * with "/api/" or "/ui/".
 * method and path are copied; arg is borrowed until agg_http_stop(). Returns
 * 0, -EEXIST, -EINVAL or -ENOMEM. */
int agg_http_route(struct agg_http *http, const char *method, const char *path,
		   agg_http_route_cb cb, void *arg);

/* agg_http_port returns the TCP port the server listens on. */
int agg_http_port(const struct agg_http *http);

/* agg_http_get_stats fills *st with the server's counters. */
void agg_http_get_stats(struct agg_http *http, struct agg_http_stats *st);

/* agg_http_stop stops accepting requests, answers every queued and every
 * still unanswered request with 503 and, after a short grace period that
 * lets those answers reach the clients, stops nng's server and closes the
 * loop handles. http is freed once they are closed and every route has
 * answered its request (answers after the stop are discarded), so run the
 * loop to finish. */
void agg_http_stop(struct agg_http *http);

/* agg_http_req_method returns the request's method ("GET"); borrowed from
 * req. */
const char *agg_http_req_method(const struct agg_http_req *req);

/* agg_http_req_path returns the percent-decoded path ("/api/top"); borrowed
 * from req. */
const char *agg_http_req_path(const struct agg_http_req *req);

/* agg_http_req_param returns the percent-decoded value ('+' is a space) of
 * the first query-string parameter called name, "" for a parameter without
 * '=', or NULL when there is none; borrowed from req. */
const char *agg_http_req_param(const struct agg_http_req *req, const char *name);

/* agg_http_req_body returns the request body and stores its length in
 * *len (0 and a non-NULL pointer when there is none); borrowed from req. */
const void *agg_http_req_body(const struct agg_http_req *req, size_t *len);

/* agg_http_respond answers req with status, a Content-Type and body (len
 * bytes, copied; body may be NULL when len is 0) and frees req: it takes
 * ownership of req in every case. Returns 0; -ESHUTDOWN when the request
 * was already failed by agg_http_stop() (nothing is sent); -ENOMEM when
 * no response could be built (nng then closes the connection). */
int agg_http_respond(struct agg_http_req *req, int status, const char *content_type,
		     const void *body, size_t len);

/* agg_http_respond_headers is agg_http_respond() with extra response
 * headers: headers (borrowed for the call; may be NULL) is a NULL-ended
 * array of name, value pairs, e.g. { "Cache-Control", "max-age=60", NULL }.
 * Without a "Cache-Control" among them the answer says "no-store", as
 * agg_http_respond()'s do. Takes ownership of req like agg_http_respond(). */
int agg_http_respond_headers(struct agg_http_req *req, int status, const char *content_type,
			     const char *const *headers, const void *body, size_t len);

/* agg_http_respond_error answers req with status and the JSON body
 * {"error": "<message>"}, message formatted like printf; takes ownership
 * of req like agg_http_respond(). */
int agg_http_respond_error(struct agg_http_req *req, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
