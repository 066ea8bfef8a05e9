/* webui.c: serves the embedded web pages (webui.h) on the loop thread. */
#include "webui.h"

#include <errno.h>
#include <string.h>

/* CSP: the app loads only its own script and style and talks only to its
 * own origin; SVGs it inlines arrive through fetch() and are stripped of
 * scripts first (app.js). Inline style attributes stay allowed: they come
 * with the aggregator's own SVGs. */
static const char *const ui_headers[] = {
	"Cache-Control",
	"no-cache",
	"Content-Security-Policy",
	"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
	"img-src 'self' data:; object-src 'none'; frame-src 'self'; base-uri 'none'; "
	"form-action 'self'; frame-ancestors 'self'",
	"Referrer-Policy",
	"no-referrer",
	NULL,
};

static void file_cb(struct agg_http_req *req, void *arg)
{
	const struct agg_webui_file *f = arg;

	agg_http_respond_headers(req, 200, f->content_type, ui_headers, f->data, f->len);
}

int agg_webui_register(struct agg_http *http)
{
	const struct agg_webui_file *index = NULL;
	int rv;

	for (const struct agg_webui_file *f = agg_webui_files; f->path; f++) {
		if ((rv = agg_http_route(http, "GET", f->path, file_cb, (void *)f)) < 0)
			return rv;
		if (strcmp(f->path, "/ui/index.html") == 0)
			index = f;
	}
	if (!index)
		return -ENOENT;
	return agg_http_route(http, "GET", "/ui", file_cb, (void *)index);
}
