/* capture_web.h: a capture drawn for the web pages — the FlameScope-style
 * heat map, flame graphs of a picked time range (plain, or against the
 * seconds before it), and the range's folded stacks and pprof profile —
 * rendered by the aggregator from the payload stored in capture_hosts.
 *
 * Routes (errors are JSON {"error": ...}):
 *   GET /api/capture/heatmap id=UUID [host=H] [from=T] [to=T]      image/svg+xml
 *   GET /api/capture/flame   id=UUID [host=H] [from=T to=T] [diff=before]
 *                                                                   image/svg+xml
 *   GET /api/capture/folded  id=UUID [host=H] [from=T] [to=T]      text/plain
 *   GET /api/capture/pprof   id=UUID [host=H] [from=T] [to=T]      application/octet-stream
 *                                                                   (a gzipped profile.proto)
 * H is a hostname, host_id or host_id prefix of a host of the capture
 * (without it: the capture's only complete recording). T is "+SECONDS" or
 * "+DUR" from the capture's origin (the heat map's +0; in a URL the '+' is
 * written %2B, a bare '+' decodes to a space, which is accepted too), Unix
 * ns, or what sh_parse_time() accepts. diff=before draws the range
 * coloured against the same length of time just before it.
 *
 * Statuses: 400 bad parameter, 404 no such capture / host / no samples in
 * the range, 409 no single complete recording, 413 payload or range too
 * large (AGG_CAPWEB_MAX_PAYLOAD compressed, AGG_CAPWEB_MAX_RAW unpacked,
 * AGG_CAPVIEW_MAX_SECONDS of range), 422 corrupt payload (with the
 * reason), 503 busy (more than AGG_CAPWEB_MAX_RUNNING renders plus
 * AGG_CAPWEB_MAX_WAITING waiting) or database unavailable.
 *
 * Threads: the routes, the payload fetch (through the async db given to
 * agg_capture_web_new) and the answers run on the loop thread; unpacking
 * and drawing run on libuv's thread pool (uv_queue_work), one
 * agg_capview per request, at most AGG_CAPWEB_MAX_RUNNING at a time. The
 * loop copies the fetched text to the request before queueing the work;
 * the worker touches nothing else, the loop nothing of a running request.
 */
#ifndef AGG_CAPTURE_WEB_H
#define AGG_CAPTURE_WEB_H

#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "http.h"

/* AGG_CAPWEB_MAX_RUNNING renders run at once; AGG_CAPWEB_MAX_WAITING more
 * are admitted (fetching or waiting for a worker), beyond that 503. */
#define AGG_CAPWEB_MAX_RUNNING 2
#define AGG_CAPWEB_MAX_WAITING 6
/* AGG_CAPWEB_MAX_PAYLOAD is the largest compressed payload drawn. */
#define AGG_CAPWEB_MAX_PAYLOAD (64u << 20)
/* AGG_CAPWEB_MAX_RAW is the largest decompressed payload drawn. */
#define AGG_CAPWEB_MAX_RAW (512u << 20)

struct agg_capture_web;

/* struct agg_capture_web_stats: counters since the start. */
struct agg_capture_web_stats {
	uint64_t renders;   /* answered by a worker with 200 */
	uint64_t refused;   /* 503: too many renders in progress */
	uint64_t corrupt;   /* 422: payloads that did not unpack */
	uint64_t too_large; /* 413 */
};

/* agg_capture_web_new makes the renderer; db (the query connection) is
 * borrowed until agg_capture_web_stop(). Returns 0 and *out, or -ENOMEM. */
int agg_capture_web_new(uv_loop_t *loop, struct agg_db *db, struct agg_capture_web **out);

/* agg_capture_web_register adds the routes above to http; w is borrowed
 * until agg_capture_web_stop(). Returns 0 or agg_http_route()'s error. */
int agg_capture_web_register(struct agg_capture_web *w, struct agg_http *http);

/* agg_capture_web_get_stats fills *st. */
void agg_capture_web_get_stats(const struct agg_capture_web *w, struct agg_capture_web_stats *st);

/* agg_capture_web_stop answers the requests waiting for a worker with 503
 * and frees w once the fetches and renders under way have answered (run
 * the loop: uv_run waits for the thread-pool work). Call it after
 * agg_http_stop(); NULL is a no-op. */
void agg_capture_web_stop(struct agg_capture_web *w);

#endif
