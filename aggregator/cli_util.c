/* cli_util.c: what every spikehound CLI command shares: error and usage
 * messages, growing buffers, terminal-safe text, aligned tables, cells
 * formatted from JSON values, the HTTP request to the query API and the
 * option parser every command uses (see cli.h).
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

#include "cli.h"

const char cli_time_formats[] =
	"now, a time relative to now (-60s, -5m, -2h), ISO 8601 in UTC or with a zone "
	"(2025-11-22T10:21:07Z, 2025-11-22 10:21:07.250, 2025-11-22T12:21:07+02:00) "
	"or Unix seconds (@1763806867)";
const char cli_duration_formats[] = "250ms, 30s, 5m, 2h, 1d or bare seconds (1.5)";

void cli_usage_error(const char *usage, const char *fmt, ...)
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

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fputs("spikehound: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* --- safe text --- */

void cli_buf_add(struct cli_buf *b, const char *s, size_t n)
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

void cli_buf_printf(struct cli_buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	cli_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

char *cli_buf_take(struct cli_buf *b)
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
char *cli_safe_text(const char *s, size_t maxw)
{
	const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
	size_t n = strlen((const char *)p), w = 0;
	struct cli_buf b = {0};

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
			cli_buf_add(&b, "...", 3);
			break;
		}
		if (esc[0] != '\0') {
			cli_buf_add(&b, esc, strlen(esc));
			w += strlen(esc);
		} else {
			cli_buf_add(&b, (const char *)p, len);
			w++;
		}
		p += len;
		n -= len;
	}
	return cli_buf_take(&b);
}

/* text_width counts the code points of a safe text (its columns, for the
 * scripts spikehound prints; wide characters are counted as one). */
size_t cli_text_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++) {
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	}
	return w;
}

/* --- tables --- */

void cli_table_init(struct cli_table *t, const char *spec)
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
void cli_table_row(struct cli_table *t, char **cells)
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
	size_t w = cli_text_width(s), pad = width > w ? width - w : 0;

	if (right)
		printf("%*s", (int)pad, "");
	fputs(s, stdout);
	if (!right && !last)
		printf("%*s", (int)pad, "");
	if (!last)
		fputs("  ", stdout);
}

void cli_table_print(struct cli_table *t)
{
	size_t width[MAXCOLS] = {0}, r;
	int i;

	for (i = 0; i < t->ncols; i++)
		width[i] = cli_text_width(t->head[i]);
	for (r = 0; r < t->nrows; r++) {
		for (i = 0; i < t->ncols; i++) {
			size_t w = cli_text_width(t->cells[r * (size_t)t->ncols + (size_t)i]);

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

void cli_table_free(struct cli_table *t)
{
	size_t i;

	for (i = 0; i < t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

/* --- formatting JSON values --- */

char *cli_fmt(const char *f, ...)
{
	char tmp[256];
	va_list ap;

	va_start(ap, f);
	vsnprintf(tmp, sizeof(tmp), f, ap);
	va_end(ap);
	return strdup(tmp);
}

int64_t cli_jint(json_t *o, const char *key, bool *ok)
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

const char *cli_jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : "";
}

/* cell_str: a string field as a safe cell ("-" when missing or empty). */
char *cli_cell_str(json_t *o, const char *key, size_t maxw)
{
	const char *s = cli_jstr(o, key);

	return s[0] != '\0' ? cli_safe_text(s, maxw) : strdup("-");
}

char *cli_cell_time(int64_t ns)
{
	char buf[40];

	return strdup(sh_format_time(ns, buf, sizeof(buf)));
}

/* cell_clock: the time of day of ns, HH:MM:SS. */
char *cli_cell_clock(int64_t ns)
{
	char buf[40];

	sh_format_time(ns, buf, sizeof(buf));
	return cli_fmt("%.8s", buf + 11);
}

char *cli_fmt_age(int64_t d_ns)
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
	return future ? cli_fmt("in %s", n) : cli_fmt("%s ago", n);
}

char *cli_fmt_duration(int64_t ns)
{
	if (ns < 0)
		return strdup("-");
	if (ns < 1000)
		return cli_fmt("%" PRId64 "ns", ns);
	if (ns < 1000000)
		return cli_fmt("%.1fus", (double)ns / 1e3);
	if (ns < 1000000000)
		return cli_fmt("%.1fms", (double)ns / 1e6);
	return cli_fmt("%.2fs", (double)ns / 1e9);
}


/* jnum reads a number field; false when it is missing, null or not a
 * number (PostgreSQL writes non-finite reals as strings). */
bool cli_jnum(json_t *o, const char *key, double *v)
{
	json_t *j = json_object_get(o, key);

	if (!json_is_number(j))
		return false;
	*v = json_number_value(j);
	return true;
}

/* cell_fixed: a number with the given decimals, "-" when absent or
 * negative (the agent's "not available"). */
char *cli_cell_fixed(json_t *o, const char *key, int decimals)
{
	double v;

	if (!cli_jnum(o, key, &v) || v < 0)
		return strdup("-");
	return cli_fmt("%.*f", decimals, v);
}

/* human: v scaled by 1000 (or 1024) with a suffix: 524288 -> "524k". */
char *cli_human(double v, double base, const char *const *suffix)
{
	int i = 0;

	while ((v >= base || v <= -base) && suffix[i + 1] != NULL) {
		v /= base;
		i++;
	}
	if (i == 0)
		return cli_fmt("%.0f%s", v, suffix[0]);
	return cli_fmt(v < 10 && v > -10 ? "%.1f%s" : "%.0f%s", v, suffix[i]);
}

char *cli_cell_count(json_t *o, const char *key)
{
	static const char *const si[] = {"", "k", "M", "G", "T", NULL};
	double v;

	if (!cli_jnum(o, key, &v) || v < 0)
		return strdup("-");
	return cli_human(v, 1000, si);
}

char *cli_cell_kb(double kb)
{
	static const char *const iec[] = {"K", "M", "G", "T", NULL};

	return cli_human(kb, 1024, iec);
}

/* --- HTTP --- */

/* url_escape appends s percent-encoded for a query string value. */
void cli_url_escape(struct cli_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~') {
			cli_buf_add(b, (const char *)&c, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};

			cli_buf_add(b, e, 3);
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

/* cli_get sends GET path_query to the server and stores the status and
 * the body (malloc'd, NUL-terminated) in *status, *body and *len. Returns
 * 0, EXIT_USAGE for a bad server URL, EXIT_RUNTIME when the server could
 * not be reached (after saying why). */
int cli_get(const struct cli_opts *o, const char *path_query, int *status, char **body,
	    size_t *len)
{
	struct cli_buf url = {0};
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
	cli_buf_add(&url, base, blen);
	cli_buf_add(&url, path_query, strlen(path_query));
	if (strncmp(base, "http://", 7) != 0 || (rv = nng_url_parse(&u, url.p)) != 0) {
		cli_usage_error(cli_usage_main, "bad server URL \"%s\": expected http://HOST:PORT", base);
		free(url.p);
		return EXIT_USAGE;
	}
	if ((rv = nng_http_client_alloc(&cli, u)) != 0 || (rv = nng_http_req_alloc(&req, u)) != 0 ||
	    (rv = nng_http_res_alloc(&res)) != 0 || (rv = nng_aio_alloc(&aio, NULL, NULL)) != 0 ||
	    (rv = nng_http_req_set_header(req, "Accept", "application/json")) != 0 ||
	    (rv = nng_http_req_set_header(req, "User-Agent", "spikehound/" SH_VERSION)) != 0) {
		cli_error("could not set up the HTTP request: %s", nng_strerror(rv));
		goto out;
	}
	nng_aio_set_timeout(aio, (nng_duration)(o->timeout_ns / SH_NS_PER_MS));
	nng_http_client_transact(cli, req, res, aio);
	nng_aio_wait(aio);
	if ((rv = nng_aio_result(aio)) != 0) {
		char *shown = cli_safe_text(base, 0);

		if (rv == NNG_ETIMEDOUT) {
			char *d = cli_fmt_duration(o->timeout_ns);

			cli_error("could not reach the aggregator at %s: no answer within %s "
				      "(see --timeout)", shown, d);
			free(d);
		} else {
			cli_error("could not reach the aggregator at %s: %s", shown,
				      reach_error(rv));
		}
		free(shown);
		goto out;
	}
	*status = nng_http_res_get_status(res);
	nng_http_res_get_data(res, &data, &dlen);
	*body = malloc(dlen + 1);
	if (*body == NULL) {
		cli_error("out of memory");
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
int cli_request(const struct cli_opts *o, const char *path_query, json_t **doc)
{
	json_error_t jerr;
	char *body = NULL;
	size_t len = 0;
	int status = 0, rv;
	json_t *j;

	*doc = NULL;
	if ((rv = cli_get(o, path_query, &status, &body, &len)) != 0)
		return rv;
	j = json_loadb(body, len, 0, &jerr);
	if (status < 200 || status > 299) {
		const char *msg = json_string_value(json_object_get(j, "error"));
		char *shown = cli_safe_text(msg != NULL ? msg : body, 300);

		if (o->json && j != NULL)
			printf("%s\n", body);
		cli_error("the aggregator answered %d: %s", status,
			      shown[0] != '\0' ? shown : "(no message)");
		free(shown);
		rv = EXIT_RUNTIME;
	} else if (o->json) {
		fwrite(body, 1, len, stdout);
		if (len == 0 || body[len - 1] != '\n')
			fputc('\n', stdout);
		rv = 0;
	} else if (j == NULL) {
		cli_error("the aggregator sent invalid JSON: %s (line %d)", jerr.text, jerr.line);
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

/* --- options --- */

/* Values getopt_long returns for the global options and, from OPT_CMD on,
 * for a command's options (OPT_CMD + index in struct cli_optspec's opts). */
enum { OPT_SERVER = 256, OPT_JSON, OPT_TIMEOUT, OPT_HELP, OPT_CMD = 300 };

#define MAX_CMD_OPTS 32

static const struct option global_longopts[] = {
	{"server", required_argument, NULL, OPT_SERVER},
	{"json", no_argument, NULL, OPT_JSON},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"help", no_argument, NULL, OPT_HELP},
};

#define NGLOBAL (sizeof(global_longopts) / sizeof(global_longopts[0]))

/* global_opt handles an option every command accepts: 0 or EXIT_USAGE. */
static int global_opt(struct cli_opts *o, int c, const char *arg, const char *usage)
{
	switch (c) {
	case OPT_SERVER:
		o->server = arg;
		return 0;
	case OPT_JSON:
		o->json = true;
		return 0;
	default: /* OPT_TIMEOUT */
		if (sh_parse_duration(arg, &o->timeout_ns) != 0 || o->timeout_ns <= 0) {
			cli_usage_error(usage, "bad --timeout \"%s\": expected a positive duration: %s",
					arg, cli_duration_formats);
			return EXIT_USAGE;
		}
		return 0;
	}
}

int cli_parse_opts(struct cli_opts *o, int argc, char **argv, const struct cli_optspec *spec,
		   int *argi)
{
	struct option longopts[NGLOBAL + MAX_CMD_OPTS + 1];
	const char *usage = spec->usage;
	size_t n = NGLOBAL, i;
	int c, rv;

	memcpy(longopts, global_longopts, sizeof(global_longopts));
	for (i = 0; spec->opts != NULL && spec->opts[i].name != NULL; i++) {
		if (i == MAX_CMD_OPTS) {
			cli_error("%s has more than %d options", spec->name, MAX_CMD_OPTS);
			return EXIT_RUNTIME;
		}
		longopts[n++] = (struct option){spec->opts[i].name, spec->opts[i].has_arg, NULL,
						OPT_CMD + (int)i};
	}
	longopts[n] = (struct option){NULL, 0, NULL, 0};

	optind = 0; /* glibc: full re-initialization for this argv */
	opterr = 0;
	while ((c = getopt_long(argc, argv, spec->permute ? ":h" : "+:h", longopts, NULL)) != -1) {
		const struct cli_opt *opt;
		char flag[64];

		if (c == 'h' || c == OPT_HELP) {
			fputs(usage, stdout);
			return -1;
		}
		if (c >= OPT_SERVER && c < OPT_HELP) {
			if ((rv = global_opt(o, c, optarg, usage)) != 0)
				return rv;
			continue;
		}
		if (c == ':') {
			if (spec->name == NULL)
				cli_usage_error(usage, "option \"%s\" needs a value", argv[optind - 1]);
			else
				cli_usage_error(usage, "option %s needs a value", argv[optind - 1]);
			return EXIT_USAGE;
		}
		if (c < OPT_CMD) { /* '?': unknown, ambiguous or given a value it does not take */
			if (spec->name == NULL)
				cli_usage_error(usage, "unknown option \"%s\"", argv[optind - 1]);
			else
				cli_usage_error(usage, "unknown option \"%s\" for %s", argv[optind - 1],
						spec->name);
			return EXIT_USAGE;
		}
		opt = &spec->opts[c - OPT_CMD];
		if (opt->parse == NULL) {
			cli_usage_error(usage, "%s does not take option \"%s\"", spec->name,
					argv[optind - 1]);
			return EXIT_USAGE;
		}
		snprintf(flag, sizeof(flag), "--%s", opt->name);
		if ((rv = opt->parse(opt->dst, flag, optarg, usage)) != 0)
			return rv;
		if (opt->seen != NULL)
			*opt->seen = true;
	}
	if (argi != NULL) {
		*argi = optind;
	} else if (optind < argc) {
		cli_usage_error(usage, "unexpected argument \"%s\"", argv[optind]);
		return EXIT_USAGE;
	}
	return 0;
}

int cli_opt_flag_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	*(bool *)dst = true;
	return 0;
}

int cli_opt_str_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	*(const char **)dst = arg;
	return 0;
}

int cli_opt_time_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	return cli_parse_time(flag, arg, usage, dst);
}

int cli_opt_dur_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	return cli_parse_dur(flag, arg, usage, dst);
}

int cli_opt_limit_cb(void *dst, const char *flag, const char *arg, const char *usage)
{
	return cli_parse_limit(arg, usage, dst);
}

int cli_parse_time(const char *flag, const char *s, const char *usage, int64_t *ns)
{
	if (sh_parse_time(s, sh_now_wall_ns(), ns) == 0)
		return 0;
	cli_usage_error(usage, "bad %s \"%s\": expected %s", flag, s, cli_time_formats);
	return EXIT_USAGE;
}

int cli_parse_dur(const char *flag, const char *s, const char *usage, int64_t *ns)
{
	if (sh_parse_duration(s, ns) == 0 && *ns >= 0)
		return 0;
	cli_usage_error(usage, "bad %s \"%s\": expected a duration: %s", flag, s,
			cli_duration_formats);
	return EXIT_USAGE;
}

int cli_parse_limit(const char *s, const char *usage, long *limit)
{
	char *end;

	errno = 0;
	*limit = strtol(s, &end, 10);
	if (errno == 0 && end != s && *end == '\0' && *limit > 0 && *limit <= 1000000)
		return 0;
	cli_usage_error(usage, "bad --limit \"%s\": expected a number from 1 to 1000000", s);
	return EXIT_USAGE;
}
