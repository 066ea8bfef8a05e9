/* cli.c: spikehound, the user's command-line client of the aggregator's
 * query API (aggregator/query.h). It sends one HTTP request with nng's
 * HTTP client, parses the JSON answer with jansson and prints aligned
 * tables, or the JSON as is with --json. Strings in the data come from
 * agents and are untrusted: control characters, C1 controls and bidi
 * overrides are printed escaped so they cannot drive the terminal.
 *
 * Exit codes: 0 success, 1 runtime error (aggregator unreachable, error
 * answer), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define DEFAULT_SERVER "http://127.0.0.1:7471"
#define DEFAULT_TIMEOUT (10 * SH_NS_PER_SEC)
#define CMDLINE_WIDTH 80
#define EVIDENCE_WIDTH 60
#define TEXT_WIDTH 40

static const char time_formats[] =
	"now, a time relative to now (-60s, -5m, -2h), ISO 8601 in UTC or with a zone "
	"(2025-11-22T10:21:07Z, 2025-11-22 10:21:07.250, 2025-11-22T12:21:07+02:00) "
	"or Unix seconds (@1763806867)";
static const char duration_formats[] = "250ms, 30s, 5m, 2h, 1d or bare seconds (1.5)";

struct opts {
	const char *server;
	bool json;
	int64_t timeout_ns;
};

/* --- usage --- */

static const char usage_main[] =
	"usage: spikehound [--server URL] [--json] [--timeout DUR] COMMAND [OPTIONS]\n"
	"\n"
	"Ask the spikehound aggregator about latency spikes across the fleet.\n"
	"\n"
	"Commands:\n"
	"  hosts                        the hosts reporting to the aggregator\n"
	"  spikes --at TIME [--window DUR]\n"
	"                               spike events on all hosts within TIME +/- DUR\n"
	"  top --host H [--at TIME] [--window DUR]\n"
	"                               one host's per-second metrics and processes\n"
	"  stacks --host H [--from TIME] [--to TIME] [--folded]\n"
	"                               one host's on-CPU stacks merged over a time range\n"
	"  stats                        the aggregator's self-metrics\n"
	"  help [COMMAND]               this text, or a command's\n"
	"\n"
	"Options (before or after the command):\n"
	"  --server URL    the aggregator's query API (default " DEFAULT_SERVER ",\n"
	"                  or $SPIKEHOUND_SERVER when set)\n"
	"  --json          print the aggregator's JSON answer as is\n"
	"  --timeout DUR   give up after DUR (default 10s)\n"
	"  -h, --help      show help (spikehound COMMAND --help for a command's)\n"
	"\n"
	"TIME: now, -60s, -5m (relative to now), 2025-11-22T10:21:07Z, 2025-11-22 10:21:07.250\n"
	"      (ISO 8601, UTC unless a zone like +02:00 is given), @1763806867 (Unix seconds)\n"
	"DUR:  250ms, 30s, 5m, 2h, 1d\n"
	"\n"
	"Examples:\n"
	"  spikehound hosts\n"
	"  spikehound spikes --at 2025-11-22T10:21:07Z\n"
	"  spikehound spikes --at -10m --window 10m\n"
	"  spikehound top --host web-01 --at @1763806867 --window 10s\n"
	"  spikehound --server http://aggregator.example:7471 --json stats\n"
	"\n"
	"Exit status: 0 success, 1 runtime error, 2 usage error.\n";

static const char usage_hosts[] =
	"usage: spikehound hosts [--limit N] [--json]\n"
	"\n"
	"List the hosts that report to the aggregator: hostname, kernel release of\n"
	"their last boot, labels, when they were last heard from, and how many\n"
	"summaries their agent's spool had to drop.\n"
	"\n"
	"  --limit N   show at most N hosts (default 10000)\n"
	"\n"
	"Examples:\n"
	"  spikehound hosts\n"
	"  spikehound --json hosts | jq '.hosts[].hostname'\n";

static const char usage_spikes[] =
	"usage: spikehound spikes --at TIME [--window DUR] [--limit N] [--json]\n"
	"\n"
	"List the spike events of every host between TIME - DUR and TIME + DUR,\n"
	"oldest first: when, where, what kind, how long, who suffered and the\n"
	"evidence the agent found (the culprit first).\n"
	"\n"
	"  --at TIME      the time to search around (required)\n"
	"  --window DUR   how far to look on each side of TIME (default 10s)\n"
	"  --limit N      show at most N events (default 1000)\n"
	"\n"
	"TIME: now, -60s, -5m, 2025-11-22T10:21:07Z, 2025-11-22 10:21:07.250,\n"
	"      2025-11-22T12:21:07+02:00, @1763806867\n"
	"\n"
	"Examples:\n"
	"  spikehound spikes --at 2025-11-22T10:21:07Z\n"
	"  spikehound spikes --at -30m --window 30m --limit 50\n";

static const char usage_top[] =
	"usage: spikehound top --host H [--at TIME] [--window DUR] [--limit N] [--json]\n"
	"\n"
	"Show what one host was doing between TIME - DUR and TIME + DUR: its\n"
	"per-second metrics (CPU, load, pressure, memory, reclaim, dentries) and\n"
	"the processes alive then, including those that started or exited.\n"
	"\n"
	"  --host H       hostname, host_id or a unique host_id prefix (required)\n"
	"  --at TIME      the time to look around (default now)\n"
	"  --window DUR   how far to look on each side of TIME (default 30s, max 1h)\n"
	"  --limit N      show at most N processes (default 5000)\n"
	"\n"
	"Examples:\n"
	"  spikehound top --host web-01\n"
	"  spikehound top --host 1f3a9c --at 2025-11-22T10:21:07Z --window 10s\n";

static const char usage_stacks[] =
	"usage: spikehound stacks --host H [--from TIME] [--to TIME] [--folded] [--limit N] [--json]\n"
	"\n"
	"Merge the on-CPU stack samples one host's agent sent for the summary\n"
	"intervals overlapping FROM .. TO (each summary carries its interval's\n"
	"most frequent stacks), most frequent first.\n"
	"\n"
	"  --host H      hostname, host_id or a unique host_id prefix (required)\n"
	"  --from TIME   start of the range (default -60s)\n"
	"  --to TIME     end of the range (default now)\n"
	"  --folded      print \"comm;frame;...;frame count\" lines, for flamegraph.pl\n"
	"                or speedscope, instead of a table\n"
	"  --limit N     at most N distinct stacks (default 10000)\n"
	"\n"
	"Examples:\n"
	"  spikehound stacks --host web-01 --from -5m\n"
	"  spikehound stacks --host web-01 --from 2025-11-22T10:21:00Z --to 2025-11-22T10:22:00Z \\\n"
	"      --folded | flamegraph.pl > spike.svg\n";

static const char usage_stats[] =
	"usage: spikehound stats [--json]\n"
	"\n"
	"Show the aggregator's self-metrics (ingest, database, query API).\n"
	"\n"
	"Example:\n"
	"  spikehound stats\n";

static void usage_error(const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void usage_error(const char *usage, const char *fmt, ...)
{
	va_list ap;
	const char *nl = strchr(usage, '\n'), *cmd;

	fputs("spikehound: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/* the usage line, then where to find more: "usage: spikehound CMD" */
	fprintf(stderr, "%.*s\n", (int)(nl - usage), usage);
	cmd = usage + strlen("usage: spikehound ");
	if (*cmd == '[')
		fputs("Try 'spikehound --help' for more information.\n", stderr);
	else
		fprintf(stderr, "Try 'spikehound %.*s --help' for more information.\n",
			(int)strcspn(cmd, " \n"), cmd);
}

static void runtime_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void runtime_error(const char *fmt, ...)
{
	va_list ap;

	fputs("spikehound: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --- safe text --- */

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;

		while (b->len + n + 1 > cap)
			cap *= 2;
		p = realloc(b->p, cap);
		if (p == NULL) {
			fputs("spikehound: out of memory\n", stderr);
			exit(EXIT_RUNTIME);
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static char *buf_take(struct buf *b)
{
	char *p = b->p;

	if (p == NULL)
		p = strdup("");
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

/* utf8_next decodes one code point at s (n bytes left) into *cp and
 * returns its length, or 0 for an invalid sequence. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t v, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, v = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, v = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, v = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* unsafe_cp tells whether a code point could change how a terminal shows
 * what follows: C0 and C1 controls, DEL, bidi embeddings, overrides and
 * isolates, line and paragraph separators. */
static bool unsafe_cp(uint32_t cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f ||
	       cp == 0x061c || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff;
}

/* safe_text returns a copy of s fit for a terminal: unsafe code points as
 * \n, \t, \r, \e, \xHH or \uXXXX, invalid UTF-8 bytes as \xHH; at most
 * maxw characters (0: no limit), shortened with "...". Caller frees. */
static char *safe_text(const char *s, size_t maxw)
{
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)p), w = 0;
	struct buf b = {0};

	while (n > 0) {
		uint32_t cp;
		size_t len = utf8_next(p, n, &cp);
		char esc[16];

		if (len == 0) {
			snprintf(esc, sizeof(esc), "\\x%02x", p[0]);
			len = 1;
		} else if (!unsafe_cp(cp)) {
			esc[0] = '\0';
		} else if (cp == '\n') {
			strcpy(esc, "\\n");
		} else if (cp == '\t') {
			strcpy(esc, "\\t");
		} else if (cp == '\r') {
			strcpy(esc, "\\r");
		} else if (cp == 0x1b) {
			strcpy(esc, "\\e");
		} else if (cp < 0x100) {
			snprintf(esc, sizeof(esc), "\\x%02x", (unsigned)cp);
		} else {
			snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
		}
		if (maxw > 0 && w + (esc[0] ? strlen(esc) : 1) > maxw - 3 && n > len) {
			/* would not leave room for "..." before more text */
			buf_add(&b, "...", 3);
			break;
		}
		if (esc[0] != '\0') {
			buf_add(&b, esc, strlen(esc));
			w += strlen(esc);
		} else {
			buf_add(&b, (const char *)p, len);
			w++;
		}
		p += len;
		n -= len;
	}
	return buf_take(&b);
}

/* text_width counts the code points of a safe text (its columns, for the
 * scripts spikehound prints; wide characters are counted as one). */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	}
	return w;
}

/* --- tables --- */

#define MAXCOLS 20

struct table {
	int ncols;
	const char *head[MAXCOLS];
	bool right[MAXCOLS]; /* right-aligned (numbers) */
	char **cells;        /* nrows * ncols, safe texts */
	size_t nrows, cap;
};

static void table_init(struct table *t, const char *spec)
{
	/* spec: "HEAD|>NUM|..." with '>' for right-aligned columns */
	static char store[512];
	char *s, *tok, *save = NULL;

	memset(t, 0, sizeof(*t));
	snprintf(store, sizeof(store), "%s", spec);
	for (s = store; (tok = strtok_r(s, "|", &save)) != NULL && t->ncols < MAXCOLS; s = NULL) {
		t->right[t->ncols] = tok[0] == '>';
		t->head[t->ncols++] = tok[0] == '>' ? tok + 1 : tok;
	}
}

/* table_row adds a row of ncols cells; takes ownership of each (malloc'd,
 * already safe) cell. */
static void table_row(struct table *t, char **cells)
{
	int i;

	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **c = realloc(t->cells, cap * (size_t)t->ncols * sizeof(*c));

		if (c == NULL) {
			fputs("spikehound: out of memory\n", stderr);
			exit(EXIT_RUNTIME);
		}
		t->cells = c;
		t->cap = cap;
	}
	for (i = 0; i < t->ncols; i++)
		t->cells[t->nrows * (size_t)t->ncols + (size_t)i] = cells[i];
	t->nrows++;
}

static void print_cell(const char *s, size_t width, bool right, bool last)
{
	size_t w = text_width(s), pad = width > w ? width - w : 0;

	if (right)
		printf("%*s", (int)pad, "");
	fputs(s, stdout);
	if (!right && !last)
		printf("%*s", (int)pad, "");
	if (!last)
		fputs("  ", stdout);
}

static void table_print(struct table *t)
{
	size_t width[MAXCOLS] = {0}, r;
	int i;

	for (i = 0; i < t->ncols; i++)
		width[i] = text_width(t->head[i]);
	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			size_t w = text_width(t->cells[r * (size_t)t->ncols + (size_t)i]);

			if (w > width[i])
				width[i] = w;
		}
	}
	for (i = 0; i < t->ncols; i++)
		print_cell(t->head[i], width[i], t->right[i], i == t->ncols - 1);
	fputc('\n', stdout);
	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++)
			print_cell(t->cells[r * (size_t)t->ncols + (size_t)i], width[i], t->right[i],
				   i == t->ncols - 1);
		fputc('\n', stdout);
	}
}

static void table_free(struct table *t)
{
	size_t i;

	for (i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

/* --- formatting JSON values --- */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
	char tmp[256];
	va_list ap;

	va_start(ap, f);
	vsnprintf(tmp, sizeof(tmp), f, ap);
	va_end(ap);
	return strdup(tmp);
}

static int64_t jint(json_t *o, const char *key, bool *ok)
{
	json_t *v = json_object_get(o, key);

	if (json_is_integer(v)) {
		*ok = true;
		return (int64_t)json_integer_value(v);
	}
	if (json_is_real(v)) {
		*ok = true;
		return (int64_t)json_real_value(v);
	}
	*ok = false;
	return 0;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

/* cell_str: a string field as a safe cell ("-" when missing or empty). */
static char *cell_str(json_t *o, const char *key, size_t maxw)
{
	const char *s = jstr(o, key);

	return s[0] != '\0' ? safe_text(s, maxw) : strdup("-");
}

static char *cell_time(int64_t ns)
{
	char buf[40];

	return strdup(sh_format_time(ns, buf, sizeof(buf)));
}

/* cell_clock: the time of day of ns, HH:MM:SS. */
static char *cell_clock(int64_t ns)
{
	char buf[40];

	sh_format_time(ns, buf, sizeof(buf));
	return fmt("%.8s", buf + 11);
}

static char *fmt_age(int64_t d_ns)
{
	bool future = d_ns < 0;
	int64_t s = (future ? -d_ns : d_ns) / SH_NS_PER_SEC;
	char n[32];

	if (s < 1)
		return strdup("just now");
	if (s < 120)
		snprintf(n, sizeof(n), "%" PRId64 "s", s);
	else if (s < 7200)
		snprintf(n, sizeof(n), "%" PRId64 "m", s / 60);
	else if (s < 2 * 86400)
		snprintf(n, sizeof(n), "%" PRId64 "h", s / 3600);
	else
		snprintf(n, sizeof(n), "%" PRId64 "d", s / 86400);
	return future ? fmt("in %s", n) : fmt("%s ago", n);
}

static char *fmt_duration(int64_t ns)
{
	if (ns < 0)
		return strdup("-");
	if (ns < 1000)
		return fmt("%" PRId64 "ns", ns);
	if (ns < 1000000)
		return fmt("%.1fus", (double)ns / 1e3);
	if (ns < 1000000000)
		return fmt("%.1fms", (double)ns / 1e6);
	return fmt("%.2fs", (double)ns / 1e9);
}


/* jnum reads a number field; false when it is missing, null or not a
 * number (PostgreSQL writes non-finite reals as strings). */
static bool jnum(json_t *o, const char *key, double *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_number(j))
		return false;
	*v = json_number_value(j);
	return true;
}

/* cell_fixed: a number with the given decimals, "-" when absent or
 * negative (the agent's "not available"). */
static char *cell_fixed(json_t *o, const char *key, int decimals)
{
	double v;

	if (!jnum(o, key, &v) || v < 0)
		return strdup("-");
	return fmt("%.*f", decimals, v);
}

/* human: v scaled by 1000 (or 1024) with a suffix: 524288 -> "524k". */
static char *human(double v, double base, const char *const *suffix)
{
	int i = 0;

	while ((v >= base || v <= -base) && suffix[i + 1] != NULL) {
		v /= base;
		i++;
	}
	if (i == 0)
		return fmt("%.0f%s", v, suffix[0]);
	return fmt(v < 10 && v > -10 ? "%.1f%s" : "%.0f%s", v, suffix[i]);
}

static char *cell_count(json_t *o, const char *key)
{
	static const char *const si[] = {"", "k", "M", "G", "T", NULL};
	double v;

	if (!jnum(o, key, &v) || v < 0)
		return strdup("-");
	return human(v, 1000, si);
}

static char *cell_kb(double kb)
{
	static const char *const iec[] = {"K", "M", "G", "T", NULL};

	return human(kb, 1024, iec);
}

/* --- HTTP --- */

/* url_escape appends s percent-encoded for a query string value. */
static void url_escape(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			buf_add(b, (const char *)&c, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};

			buf_add(b, e, 3);
		}
	}
}

static const char *reach_error(int rv)
{
	switch (rv) {
	case NNG_ECONNREFUSED:
		return "connection refused (is spikehound-aggregator running?)";
	case NNG_ETIMEDOUT:
		return "no answer in time (see --timeout)";
	case NNG_EADDRINVAL:
		return "could not resolve the address";
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_ECLOSED:
		return "the connection was closed before an answer came";
	case NNG_EUNREACHABLE:
		return "host unreachable";
	case NNG_ENOTSUP:
		return "this URL scheme is not supported (use http://)";
	case NNG_EPROTO:
		return "the server did not answer with valid HTTP";
	default:
		return nng_strerror(rv);
	}
}

/* get sends GET path_query to the server and stores the status and the
 * body (malloc'd, NUL-terminated) in *status, *body and *len. Returns 0,
 * EXIT_USAGE for a bad server URL, EXIT_RUNTIME when the server could not
 * be reached (after saying why). */
static int get(const struct opts *o, const char *path_query, int *status, char **body,
	       size_t *len)
{
	struct buf url = {0};
	const char *base = o->server;
	size_t blen = strlen(base);
	nng_url *u = NULL;
	nng_http_client *cli = NULL;
	nng_http_req *req = NULL;
	nng_http_res *res = NULL;
	nng_aio *aio = NULL;
	void *data;
	size_t dlen;
	int rv, ret = EXIT_RUNTIME;

	while (blen > 0 && base[blen - 1] == '/')
		blen--;
	buf_add(&url, base, blen);
	buf_add(&url, path_query, strlen(path_query));
	if (strncmp(base, "http://", 7) != 0 || (rv = nng_url_parse(&u, url.p)) != 0) {
		usage_error(usage_main, "bad server URL \"%s\": expected http://HOST:PORT", base);
		free(url.p);
		return EXIT_USAGE;
	}
	if ((rv = nng_http_client_alloc(&cli, u)) != 0 || (rv = nng_http_req_alloc(&req, u)) != 0 ||
	    (rv = nng_http_res_alloc(&res)) != 0 || (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0 ||
	    (rv = nng_http_req_set_header(req, "Accept", "application/json")) != 0 ||
	    (rv = nng_http_req_set_header(req, "User-Agent", "spikehound/" SH_VERSION)) != 0) {
		runtime_error("could not set up the HTTP request: %s", nng_strerror(rv));
		goto out;
	}
	nng_aio_set_timeout(aio, (nng_duration)(o->timeout_ns / SH_NS_PER_MS));
	nng_http_client_transact(cli, req, res, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		char *shown = safe_text(base, 0);

		if (rv == NNG_ETIMEDOUT) {
			char *d = fmt_duration(o->timeout_ns);

			runtime_error("could not reach the aggregator at %s: no answer within %s "
				      "(see --timeout)", shown, d);
			free(d);
		} else {
			runtime_error("could not reach the aggregator at %s: %s", shown,
				      reach_error(rv));
		}
		free(shown);
		goto out;
	}
	*status = nng_http_res_get_status(res);
	nng_http_res_get_data(res, &data, &dlen);
	*body = malloc(dlen + 1);
	if (*body == NULL) {
		runtime_error("out of memory");
		goto out;
	}
	if (dlen > 0)
		memcpy(*body, data, dlen);
	(*body)[dlen] = '\0';
	*len = dlen;
	ret = 0;
out:
	nng_aio_free(aio);
	nng_http_res_free(res);
	nng_http_req_free(req);
	nng_http_client_free(cli);
	nng_url_free(u);
	free(url.p);
	return ret;
}

/* request runs one GET and hands the parsed answer to *doc (caller
 * decrefs); with --json it prints the answer and sets *doc to NULL.
 * Returns 0 or an exit code (after saying what went wrong). */
static int request(const struct opts *o, const char *path_query, json_t **doc)
{
	json_error_t jerr;
	char *body = NULL;
	size_t len = 0;
	int status = 0, rv;
	json_t *j;

	*doc = NULL;
	if ((rv = get(o, path_query, &status, &body, &len)) != 0)
		return rv;
	j = json_loadb(body, len, 0, &jerr);
	if (status < 200 || status > 299) {
		const char *msg = json_string_value(json_object_get(j, "error"));
		char *shown = safe_text(msg != NULL ? msg : body, 300);

		if (o->json && j != NULL)
			printf("%s\n", body);
		runtime_error("the aggregator answered %d: %s", status,
			      shown[0] != '\0' ? shown : "(no message)");
		free(shown);
		rv = EXIT_RUNTIME;
	} else if (o->json) {
		fwrite(body, 1, len, stdout);
		if (len == 0 || body[len - 1] != '\n')
			fputc('\n', stdout);
		rv = 0;
	} else if (j == NULL) {
		runtime_error("the aggregator sent invalid JSON: %s (line %d)", jerr.text, jerr.line);
		rv = EXIT_RUNTIME;
	} else {
		*doc = j;
		j = NULL;
		rv = 0;
	}
	json_decref(j);
	free(body);
	return rv;
}

/* --- commands --- */

enum {
	OPT_SERVER = 256,
	OPT_JSON,
	OPT_TIMEOUT,
	OPT_AT,
	OPT_WINDOW,
	OPT_HOST,
	OPT_LIMIT,
	OPT_HELP,
};

/* global_opt handles an option every command accepts; returns 0, 1 when
 * the option was not a global one, or EXIT_USAGE. */
static int global_opt(struct opts *o, int c, const char *usage)
{
	switch (c) {
	case OPT_SERVER:
		o->server = optarg;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	case OPT_TIMEOUT:
		if (sh_parse_duration(optarg, &o->timeout_ns) != 0 || o->timeout_ns <= 0) {
			usage_error(usage, "bad --timeout \"%s\": expected a positive duration: %s",
				    optarg, duration_formats);
			return EXIT_USAGE;
		}
		return 0;
	default:
		return 1;
	}
}

#define GLOBAL_LONGOPTS                                                               \
	{"server", required_argument, NULL, OPT_SERVER},                              \
		{"json", no_argument, NULL, OPT_JSON},                                \
		{"timeout", required_argument, NULL, OPT_TIMEOUT},                    \
		{"help", no_argument, NULL, OPT_HELP}

static int parse_time_arg(const char *name, const char *s, const char *usage, int64_t *ns)
{
	if (sh_parse_time(s, sh_now_wall_ns(), ns) == 0)
		return 0;
	usage_error(usage, "bad %s \"%s\": expected %s", name, s, time_formats);
	return EXIT_USAGE;
}

static int parse_window_arg(const char *s, const char *usage, int64_t *ns)
{
	if (sh_parse_duration(s, ns) == 0 && *ns >= 0)
		return 0;
	usage_error(usage, "bad --window \"%s\": expected a duration: %s", s, duration_formats);
	return EXIT_USAGE;
}

static int parse_limit_arg(const char *s, const char *usage, long *limit)
{
	char *end;

	errno = 0;
	*limit = strtol(s, &end, 10);
	if (errno == 0 && end != s && *end == '\0' && *limit > 0 && *limit <= 1000000)
		return 0;
	usage_error(usage, "bad --limit \"%s\": expected a number from 1 to 1000000", s);
	return EXIT_USAGE;
}

/* parse_cmd_opts runs getopt over a command's arguments; fills the
 * command's own options through the pointers it was given (NULL: the
 * command has no such option). Returns 0, -1 after printing --help, or
 * EXIT_USAGE. */
static int parse_cmd_opts(struct opts *o, int argc, char **argv, const char *usage,
			  const char **at, const char **window, const char **host,
			  const char **limit)
{
	static const struct option longopts[] = {
		GLOBAL_LONGOPTS,
		{"at", required_argument, NULL, OPT_AT},
		{"window", required_argument, NULL, OPT_WINDOW},
		{"host", required_argument, NULL, OPT_HOST},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{NULL, 0, NULL, 0},
	};
	int c, rv;

	optind = 0; /* glibc: full re-initialization for the command's argv */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		const char **slot = NULL;

		if (c == 'h' || c == OPT_HELP) {
			fputs(usage, stdout);
			return -1;
		}
		if ((rv = global_opt(o, c, usage)) != 1) {
			if (rv != 0)
				return rv;
			continue;
		}
		switch (c) {
		case OPT_AT:
			slot = at;
			break;
		case OPT_WINDOW:
			slot = window;
			break;
		case OPT_HOST:
			slot = host;
			break;
		case OPT_LIMIT:
			slot = limit;
			break;
		case ':':
			usage_error(usage, "option %s needs a value", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			usage_error(usage, "unknown option \"%s\" for %s", argv[optind - 1], argv[0]);
			return EXIT_USAGE;
		}
		if (slot == NULL) {
			usage_error(usage, "%s does not take option \"%s\"", argv[0], argv[optind - 1]);
			return EXIT_USAGE;
		}
		*slot = optarg;
	}
	if (optind < argc) {
		usage_error(usage, "unexpected argument \"%s\"", argv[optind]);
		return EXIT_USAGE;
	}
	return 0;
}

static int cmd_hosts(struct opts *o, int argc, char **argv)
{
	const char *limit_s = NULL;
	long limit = 10000;
	int64_t now = sh_now_wall_ns();
	struct table t;
	struct buf path = {0};
	json_t *doc, *hosts, *h;
	size_t i;
	int rv;

	if ((rv = parse_cmd_opts(o, argc, argv, usage_hosts, NULL, NULL, NULL, &limit_s)) != 0)
		return rv < 0 ? 0 : rv;
	if (limit_s != NULL && (rv = parse_limit_arg(limit_s, usage_hosts, &limit)) != 0)
		return rv;
	buf_printf(&path, "/api/hosts?limit=%ld", limit);
	rv = request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	hosts = json_object_get(doc, "hosts");
	if (json_array_size(hosts) == 0) {
		puts("no hosts have reported yet");
		json_decref(doc);
		return 0;
	}
	table_init(&t, "HOST|KERNEL|LABELS|LAST SEEN|>SPOOL DROPS");
	json_array_foreach (hosts, i, h) {
		char *cells[5];
		struct buf labels = {0};
		json_t *lv;
		const char *lk;
		bool ok;
		int64_t seen = jint(h, "last_seen_ns", &ok);
		int64_t drops;

		json_object_foreach (json_object_get(h, "labels"), lk, lv) {
			char *ks = safe_text(lk, TEXT_WIDTH);
			char *vs = json_is_string(lv) ? safe_text(json_string_value(lv), TEXT_WIDTH) : NULL;

			if (vs == NULL) {
				char *dump = json_dumps(lv, JSON_COMPACT | JSON_ENCODE_ANY);

				vs = safe_text(dump, TEXT_WIDTH);
				free(dump);
			}
			buf_printf(&labels, "%s%s=%s", labels.len ? "," : "", ks, vs);
			free(ks);
			free(vs);
		}
		cells[0] = cell_str(h, "hostname", TEXT_WIDTH);
		cells[1] = cell_str(h, "kernel_release", TEXT_WIDTH);
		cells[2] = labels.len ? buf_take(&labels) : strdup("-");
		free(labels.p);
		if (ok) {
			char tb[40], *age = fmt_age(now - seen);

			cells[3] = fmt("%s (%s)", sh_format_time(seen, tb, sizeof(tb)), age);
			free(age);
		} else {
			cells[3] = strdup("never");
		}
		drops = jint(h, "spool_dropped", &ok);
		cells[4] = ok ? fmt("%" PRId64, drops) : strdup("-");
		table_row(&t, cells);
	}
	table_print(&t);
	table_free(&t);
	{
		bool ok;
		int64_t total = jint(doc, "total", &ok);

		if (ok && total > (int64_t)json_array_size(hosts))
			printf("(%zu of %" PRId64 " hosts shown; see --limit)\n",
			       json_array_size(hosts), total);
	}
	json_decref(doc);
	return 0;
}

/* evidence_text summarizes a spike's evidence: the strongest culprit,
 * how many more there are, and the detector's detail. */
static char *evidence_text(json_t *ev, const char *detail)
{
	json_t *culprits = json_object_get(json_object_get(ev, "evidence"), "culprits");
	json_t *c = json_array_get(culprits, 0);
	struct buf b = {0};
	char *s, *out;

	if (json_is_object(c)) {
		bool ok;
		int64_t pid = jint(c, "pid", &ok);
		const char *role = jstr(c, "role");

		if (role[0] != '\0')
			buf_printf(&b, "%s ", role);
		buf_add(&b, jstr(c, "comm"), strlen(jstr(c, "comm")));
		if (ok)
			buf_printf(&b, "[%" PRId64 "]", pid);
		if (json_array_size(culprits) > 1)
			buf_printf(&b, " +%zu more", json_array_size(culprits) - 1);
	}
	if (detail[0] != '\0') {
		if (b.len)
			buf_add(&b, "; ", 2);
		buf_add(&b, detail, strlen(detail));
	}
	s = buf_take(&b);
	out = s[0] != '\0' ? safe_text(s, EVIDENCE_WIDTH) : strdup("-");
	free(s);
	return out;
}

static int cmd_spikes(struct opts *o, int argc, char **argv)
{
	const char *at_s = NULL, *window_s = NULL, *limit_s = NULL;
	int64_t at, window = 10 * SH_NS_PER_SEC, from, to;
	long limit = 1000;
	struct buf path = {0};
	json_t *doc, *spikes, *e;
	struct table t;
	char fb[40], tb[40];
	size_t i;
	int rv;

	rv = parse_cmd_opts(o, argc, argv, usage_spikes, &at_s, &window_s, NULL, &limit_s);
	if (rv != 0)
		return rv < 0 ? 0 : rv;
	if (at_s == NULL) {
		usage_error(usage_spikes, "spikes needs --at TIME (the time to search around)");
		return EXIT_USAGE;
	}
	if ((rv = parse_time_arg("--at", at_s, usage_spikes, &at)) != 0 ||
	    (window_s != NULL && (rv = parse_window_arg(window_s, usage_spikes, &window)) != 0) ||
	    (limit_s != NULL && (rv = parse_limit_arg(limit_s, usage_spikes, &limit)) != 0))
		return rv;
	if (window > 31 * 86400 * SH_NS_PER_SEC) {
		usage_error(usage_spikes, "bad --window \"%s\": at most 31d on each side", window_s);
		return EXIT_USAGE;
	}
	buf_printf(&path, "/api/spikes?at=%" PRId64 "&window=%" PRId64 "&limit=%ld", at, window,
		   limit);
	rv = request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	from = at - window;
	to = at + window;
	sh_format_time(from, fb, sizeof(fb));
	sh_format_time(to, tb, sizeof(tb));
	spikes = json_object_get(doc, "spikes");
	if (json_array_size(spikes) == 0) {
		printf("no spikes between %s and %s\n", fb, tb);
		json_decref(doc);
		return 0;
	}
	table_init(&t, "TIME|HOST|KIND|>DURATION|VICTIM|EVIDENCE");
	json_array_foreach (spikes, i, e) {
		char *cells[6];
		json_t *victim = json_object_get(e, "victim");
		bool ok, pid_ok;
		int64_t ts = jint(e, "ts_ns", &ok);
		int64_t dur, pid = jint(victim, "pid", &pid_ok);
		char *comm = safe_text(jstr(victim, "comm"), TEXT_WIDTH);

		cells[0] = ok ? cell_time(ts) : strdup("-");
		cells[1] = cell_str(e, "hostname", TEXT_WIDTH);
		cells[2] = cell_str(e, "kind", TEXT_WIDTH);
		dur = jint(e, "duration_ns", &ok);
		cells[3] = ok ? fmt_duration(dur) : strdup("-");
		cells[4] = pid_ok && pid > 0 ? fmt("%s[%" PRId64 "]", comm, pid)
					     : strdup(comm[0] ? comm : "-");
		free(comm);
		cells[5] = evidence_text(e, jstr(e, "detail"));
		table_row(&t, cells);
	}
	table_print(&t);
	table_free(&t);
	printf("(%zu spike%s between %s and %s%s)\n", json_array_size(spikes),
	       json_array_size(spikes) == 1 ? "" : "s", fb, tb,
	       json_is_true(json_object_get(doc, "truncated")) ? "; more not shown, see --limit" : "");
	json_decref(doc);
	return 0;
}

static void print_metrics(json_t *metrics)
{
	struct table t;
	json_t *m;
	size_t i;

	table_init(&t, "TIME|>USR%|>SYS%|>IRQ%|>SIRQ%|>IOW%|>STEAL%|>LOAD1|>PSI CPU|>PSI MEM|"
		       ">PSI IO|>MEM AVAIL|>SLAB|>PGSCAN D|>PGSCAN K|>NEG DENT");
	json_array_foreach (metrics, i, m) {
		char *cells[16];
		bool ok;
		int64_t ts = jint(m, "t_ns", &ok);
		double a, b;

		cells[0] = ok ? cell_clock(ts) : strdup("-");
		cells[1] = cell_fixed(m, "cpu_user_pct", 1);
		cells[2] = cell_fixed(m, "cpu_sys_pct", 1);
		cells[3] = cell_fixed(m, "cpu_irq_pct", 1);
		cells[4] = cell_fixed(m, "cpu_softirq_pct", 1);
		cells[5] = cell_fixed(m, "cpu_iowait_pct", 1);
		cells[6] = cell_fixed(m, "cpu_steal_pct", 1);
		cells[7] = cell_fixed(m, "load1", 2);
		cells[8] = cell_fixed(m, "psi_cpu_some_avg10", 1);
		cells[9] = cell_fixed(m, "psi_mem_some_avg10", 1);
		cells[10] = cell_fixed(m, "psi_io_some_avg10", 1);
		cells[11] = jnum(m, "mem_available_kb", &a) ? cell_kb(a) : strdup("-");
		cells[12] = jnum(m, "slab_reclaimable_kb", &a) && jnum(m, "slab_unreclaimable_kb", &b)
				    ? cell_kb(a + b)
				    : strdup("-");
		cells[13] = cell_count(m, "pgscan_direct");
		cells[14] = cell_count(m, "pgscan_kswapd");
		cells[15] = cell_count(m, "dentry_negative");
		table_row(&t, cells);
	}
	table_print(&t);
	table_free(&t);
}

static void print_processes(json_t *procs)
{
	struct table t;
	json_t *p;
	size_t i;

	table_init(&t, ">PID|>PPID|COMM|CMDLINE|STARTED|EXITED");
	json_array_foreach (procs, i, p) {
		char *cells[6];
		bool ok;
		int64_t v;

		v = jint(p, "pid", &ok);
		cells[0] = ok ? fmt("%" PRId64, v) : strdup("-");
		v = jint(p, "ppid", &ok);
		cells[1] = ok ? fmt("%" PRId64, v) : strdup("-");
		cells[2] = cell_str(p, "comm", TEXT_WIDTH);
		cells[3] = cell_str(p, "cmdline", CMDLINE_WIDTH);
		v = jint(p, "start_ns", &ok);
		cells[4] = ok ? cell_time(v) : strdup("-");
		v = jint(p, "exit_ns", &ok);
		if (!ok) {
			cells[5] = strdup("-");
		} else {
			char tb[40];

			sh_format_time(v, tb, sizeof(tb));
			cells[5] = json_is_true(json_object_get(p, "exit_inferred"))
					   ? fmt("%s (inferred)", tb)
					   : strdup(tb);
		}
		table_row(&t, cells);
	}
	table_print(&t);
	table_free(&t);
}

static int cmd_top(struct opts *o, int argc, char **argv)
{
	const char *at_s = NULL, *window_s = NULL, *host = NULL, *limit_s = NULL;
	int64_t at = sh_now_wall_ns(), window = 30 * SH_NS_PER_SEC;
	long limit = 5000;
	struct buf path = {0};
	json_t *doc, *hj, *metrics, *procs;
	char fb[40], tb[40], *name, *id, *kernel;
	bool ok;
	int64_t total;
	int rv;

	rv = parse_cmd_opts(o, argc, argv, usage_top, &at_s, &window_s, &host, &limit_s);
	if (rv != 0)
		return rv < 0 ? 0 : rv;
	if (host == NULL || host[0] == '\0') {
		usage_error(usage_top, "top needs --host (a hostname, host_id or host_id prefix)");
		return EXIT_USAGE;
	}
	if ((at_s != NULL && (rv = parse_time_arg("--at", at_s, usage_top, &at)) != 0) ||
	    (window_s != NULL && (rv = parse_window_arg(window_s, usage_top, &window)) != 0) ||
	    (limit_s != NULL && (rv = parse_limit_arg(limit_s, usage_top, &limit)) != 0))
		return rv;
	if (window > 3600 * SH_NS_PER_SEC) {
		usage_error(usage_top, "bad --window \"%s\": top shows at most 1h on each side",
			    window_s);
		return EXIT_USAGE;
	}
	buf_add(&path, "/api/top?host=", 14);
	url_escape(&path, host);
	buf_printf(&path, "&at=%" PRId64 "&window=%" PRId64 "&limit=%ld", at, window, limit);
	rv = request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;

	hj = json_object_get(doc, "host");
	name = cell_str(hj, "hostname", TEXT_WIDTH);
	id = cell_str(hj, "host_id", TEXT_WIDTH);
	kernel = cell_str(hj, "kernel_release", TEXT_WIDTH);
	sh_format_time(at - window, fb, sizeof(fb));
	sh_format_time(at + window, tb, sizeof(tb));
	printf("%s (%s), kernel %s, %s .. %s\n\n", name, id, kernel, fb, tb);
	free(name);
	free(id);
	free(kernel);

	metrics = json_object_get(doc, "metrics");
	if (json_array_size(metrics) == 0)
		puts("no metrics in this window");
	else
		print_metrics(metrics);
	fputc('\n', stdout);
	procs = json_object_get(doc, "processes");
	if (json_array_size(procs) == 0) {
		puts("no processes known in this window");
	} else {
		print_processes(procs);
		total = jint(doc, "processes_total", &ok);
		if (ok && total > (int64_t)json_array_size(procs))
			printf("(%zu of %" PRId64 " processes shown: those that started or exited "
			       "in the window first; see --limit)\n",
			       json_array_size(procs), total);
	}
	json_decref(doc);
	return 0;
}

/* print_flat prints a JSON value as "a.b.c: value" lines. */
static void print_flat(const char *prefix, json_t *v)
{
	if (json_is_object(v)) {
		const char *k;
		json_t *c;

		json_object_foreach (v, k, c) {
			struct buf key = {0};

			if (prefix[0] != '\0')
				buf_printf(&key, "%s.", prefix);
			buf_add(&key, k, strlen(k));
			print_flat(key.p, c);
			free(key.p);
		}
	} else {
		char *dump = json_is_string(v) ? strdup(json_string_value(v))
					       : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		char *k = safe_text(prefix, 0), *s = safe_text(dump, 0);

		printf("%s: %s\n", k, s);
		free(k);
		free(s);
		free(dump);
	}
}

static int cmd_stacks(struct opts *o, int argc, char **argv)
{
	enum { OPT_FROM = OPT_HELP + 1, OPT_TO, OPT_FOLDED };
	static const struct option longopts[] = {
		GLOBAL_LONGOPTS,
		{"host", required_argument, NULL, OPT_HOST},
		{"from", required_argument, NULL, OPT_FROM},
		{"to", required_argument, NULL, OPT_TO},
		{"folded", no_argument, NULL, OPT_FOLDED},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{NULL, 0, NULL, 0},
	};
	const char *host = NULL;
	int64_t now = sh_now_wall_ns(), from = now - 60 * SH_NS_PER_SEC, to = now;
	long limit = 10000;
	bool folded = false, ok;
	struct buf path = {0};
	json_t *doc, *stacks, *st;
	size_t i;
	int c, rv;

	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		if (c == 'h' || c == OPT_HELP) {
			fputs(usage_stacks, stdout);
			return 0;
		}
		if ((rv = global_opt(o, c, usage_stacks)) != 1) {
			if (rv != 0)
				return rv;
			continue;
		}
		switch (c) {
		case OPT_HOST:
			host = optarg;
			break;
		case OPT_FROM:
			if ((rv = parse_time_arg("--from", optarg, usage_stacks, &from)) != 0)
				return rv;
			break;
		case OPT_TO:
			if ((rv = parse_time_arg("--to", optarg, usage_stacks, &to)) != 0)
				return rv;
			break;
		case OPT_FOLDED:
			folded = true;
			break;
		case OPT_LIMIT:
			if ((rv = parse_limit_arg(optarg, usage_stacks, &limit)) != 0)
				return rv;
			break;
		case ':':
			usage_error(usage_stacks, "option %s needs a value", argv[optind - 1]);
			return EXIT_USAGE;
		default:
			usage_error(usage_stacks, "unknown option \"%s\" for stacks", argv[optind - 1]);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		usage_error(usage_stacks, "unexpected argument \"%s\"", argv[optind]);
		return EXIT_USAGE;
	}
	if (host == NULL || host[0] == '\0') {
		usage_error(usage_stacks, "stacks needs --host (a hostname, host_id or host_id prefix)");
		return EXIT_USAGE;
	}
	if (to <= from) {
		usage_error(usage_stacks, "--from must be before --to");
		return EXIT_USAGE;
	}
	buf_add(&path, "/api/stacks?host=", 17);
	url_escape(&path, host);
	buf_printf(&path, "&from=%" PRId64 "&to=%" PRId64 "&limit=%ld", from, to, limit);
	rv = request(o, path.p, &doc);
	free(path.p);
	if (rv != 0 || doc == NULL)
		return rv;
	stacks = json_object_get(doc, "stacks");
	if (folded) {
		/* folded lines are data for other tools: printed as sent, one
		 * per line (the agent's frames hold no newlines) */
		json_array_foreach (stacks, i, st) {
			const char *text = jstr(st, "stack");
			int64_t n = jint(st, "count", &ok);

			if (text && ok && !strchr(text, '\n'))
				printf("%s %" PRId64 "\n", text, n);
		}
	} else {
		int64_t samples = jint(doc, "samples", &ok), total = 0;
		char fb[40], tb[40], *name = cell_str(json_object_get(doc, "host"), "hostname", TEXT_WIDTH);
		struct table t;

		json_array_foreach (stacks, i, st)
			total += jint(st, "count", &ok);
		sh_format_time(from, fb, sizeof(fb));
		sh_format_time(to, tb, sizeof(tb));
		printf("%s, %s .. %s: %" PRId64 " summaries, %" PRId64 " samples, %zu distinct stacks\n\n",
		       name, fb, tb, jint(doc, "summaries", &ok), samples, json_array_size(stacks));
		free(name);
		if (json_array_size(stacks) == 0) {
			puts("no stacks in this range");
		} else {
			table_init(&t, ">SAMPLES|>%|STACK (comm;outermost;...;innermost)");
			json_array_foreach (stacks, i, st) {
				int64_t n = jint(st, "count", &ok);
				char *cells[3];

				if (i >= 50)
					break;
				cells[0] = fmt("%" PRId64, n);
				cells[1] = fmt("%.1f", total ? 100.0 * (double)n / (double)total : 0.0);
				cells[2] = safe_text(jstr(st, "stack"), 160);
				table_row(&t, cells);
			}
			table_print(&t);
			table_free(&t);
			if (json_array_size(stacks) > 50)
				printf("(50 of %zu stacks shown; --folded prints all)\n",
				       json_array_size(stacks));
		}
	}
	json_decref(doc);
	return 0;
}

static int cmd_stats(struct opts *o, int argc, char **argv)
{
	json_t *doc;
	int rv;

	rv = parse_cmd_opts(o, argc, argv, usage_stats, NULL, NULL, NULL, NULL);
	if (rv != 0)
		return rv < 0 ? 0 : rv;
	if ((rv = request(o, "/api/stats", &doc)) != 0 || doc == NULL)
		return rv;
	print_flat("", doc);
	json_decref(doc);
	return 0;
}

static const struct command {
	const char *name;
	int (*run)(struct opts *o, int argc, char **argv);
	const char *usage;
} commands[] = {
	{"hosts", cmd_hosts, usage_hosts},
	{"spikes", cmd_spikes, usage_spikes},
	{"top", cmd_top, usage_top},
	{"stacks", cmd_stacks, usage_stacks},
	{"stats", cmd_stats, usage_stats},
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {GLOBAL_LONGOPTS, {NULL, 0, NULL, 0}};
	struct opts o = {.server = DEFAULT_SERVER, .timeout_ns = DEFAULT_TIMEOUT};
	const struct command *cmd;
	const char *env = getenv("SPIKEHOUND_SERVER");
	int c, rv;

	if (env != NULL && env[0] != '\0')
		o.server = env;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		if (c == 'h' || c == OPT_HELP) {
			fputs(usage_main, stdout);
			return 0;
		}
		if ((rv = global_opt(&o, c, usage_main)) == 0)
			continue;
		if (rv == 1 && c == ':')
			usage_error(usage_main, "option \"%s\" needs a value", argv[optind - 1]);
		else if (rv == 1)
			usage_error(usage_main, "unknown option \"%s\"", argv[optind - 1]);
		return EXIT_USAGE;
	}
	if (optind >= argc) {
		usage_error(usage_main, "no command given (hosts, spikes, top, stacks, stats)");
		return EXIT_USAGE;
	}
	if (strcmp(argv[optind], "help") == 0) {
		if (optind + 1 < argc) {
			if ((cmd = find_command(argv[optind + 1])) == NULL) {
				usage_error(usage_main, "no such command \"%s\"", argv[optind + 1]);
				return EXIT_USAGE;
			}
			fputs(cmd->usage, stdout);
		} else {
			fputs(usage_main, stdout);
		}
		return 0;
	}
	if ((cmd = find_command(argv[optind])) == NULL) {
		char *shown = safe_text(argv[optind], TEXT_WIDTH);

		usage_error(usage_main, "no such command \"%s\" (hosts, spikes, top, stacks, stats)", shown);
		free(shown);
		return EXIT_USAGE;
	}
	rv = cmd->run(&o, argc - optind, argv + optind);
	if (fflush(stdout) != 0 && rv == 0) {
		runtime_error("could not write the output: %s", strerror(errno));
		rv = EXIT_RUNTIME;
	}
	return rv;
}
