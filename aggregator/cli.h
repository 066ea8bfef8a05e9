/* cli.h: what the spikehound CLI's commands share (cli_util.c): error and
 * usage messages, growing buffers, terminal-safe text (strings from agents
 * are untrusted: control characters, C1 controls and bidi overrides are
 * shown escaped), aligned tables, cells formatted from JSON values, one
 * HTTP request to the aggregator's query API, and the table-driven option
 * parser every command uses. cli.c holds main() and the command table; a
 * command lives in cli.c or in its own cli_<name>.c and is declared below.
 *
 * Strings returned as char * are malloc'd: the caller frees them.
 */
#ifndef AGG_CLI_H
#define AGG_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2
#define DEFAULT_SERVER "http://127.0.0.1:7471"
#define DEFAULT_TIMEOUT (10 * SH_NS_PER_SEC)
#define CMDLINE_WIDTH 80
#define EVIDENCE_WIDTH 60
#define TEXT_WIDTH 40
#define MAXCOLS 20

/* cli_time_formats and cli_duration_formats describe what TIME and DUR
 * arguments accept, for error messages. */
extern const char cli_time_formats[];
extern const char cli_duration_formats[];

/* cli_usage_main is the program's --help text (cli.c). */
extern const char cli_usage_main[];

/* struct cli_opts: the options every command accepts. */
struct cli_opts {
	const char *server;
	bool json;
	int64_t timeout_ns;
};

/* struct cli_buf is a growing text buffer; zero-initialize it. Allocation
 * failure aborts the program (a CLI has nothing better to do). */
struct cli_buf {
	char *p;
	size_t len, cap;
};

/* struct cli_table collects rows of safe texts and prints them aligned. */
struct cli_table {
	int ncols;
	const char *head[MAXCOLS];
	bool right[MAXCOLS]; /* right-aligned (numbers) */
	char **cells;        /* nrows * ncols, safe texts */
	size_t nrows, cap;
};

/* cli_usage_error prints "spikehound: <message>", usage's first line and
 * where to find more, to stderr. */
void cli_usage_error(const char *usage, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));

/* cli_error prints "spikehound: <message>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_buf_add appends n bytes of s to b (kept NUL-terminated). */
void cli_buf_add(struct cli_buf *b, const char *s, size_t n);

/* cli_buf_printf appends formatted text to b. */
void cli_buf_printf(struct cli_buf *b, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));

/* cli_buf_take returns b's text (caller frees; "" when empty) and resets b. */
char *cli_buf_take(struct cli_buf *b);

/* cli_safe_text returns s with unsafe characters escaped, cut to maxw
 * columns with "..." (0: no limit). */
char *cli_safe_text(const char *s, size_t maxw);

/* cli_text_width returns the display width of a safe text. */
size_t cli_text_width(const char *s);

/* cli_table_init sets t's columns from spec: "HEAD|>NUM|..." ('>'
 * right-aligns). */
void cli_table_init(struct cli_table *t, const char *spec);

/* cli_table_row appends a row; takes ownership of cells[0..ncols-1] (not of
 * cells). */
void cli_table_row(struct cli_table *t, char **cells);

/* cli_table_print prints the header and rows aligned to stdout. */
void cli_table_print(struct cli_table *t);

/* cli_table_free frees t's cells. */
void cli_table_free(struct cli_table *t);

/* cli_fmt returns the formatted text. */
char *cli_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* cli_jint reads an integer member (*ok false when missing or not a number). */
int64_t cli_jint(json_t *o, const char *key, bool *ok);

/* cli_jstr returns a string member, borrowed, or "" when missing. */
const char *cli_jstr(json_t *o, const char *key);

/* cli_jnum reads a number member; false when missing. */
bool cli_jnum(json_t *o, const char *key, double *v);

/* Cells (safe texts) from JSON members and values. */
char *cli_cell_str(json_t *o, const char *key, size_t maxw);
char *cli_cell_time(int64_t ns);  /* 2025-11-22 10:21:07.250 UTC */
char *cli_cell_clock(int64_t ns); /* 10:21:07 */
char *cli_cell_fixed(json_t *o, const char *key, int decimals);
char *cli_cell_count(json_t *o, const char *key); /* 1.2k, 3.4M */
char *cli_cell_kb(double kb);
char *cli_fmt_age(int64_t d_ns);    /* "3s ago" */
char *cli_fmt_duration(int64_t ns); /* "12.5ms" */
char *cli_human(double v, double base, const char *const *suffix);

/* cli_url_escape appends s percent-encoded for a query string. */
void cli_url_escape(struct cli_buf *b, const char *s);

/* cli_get GETs path_query from the aggregator as is (no JSON parsing):
 * stores the HTTP status, the body (malloc'd, NUL-terminated; caller
 * frees) and its length. Returns 0, EXIT_USAGE for a bad server URL, or
 * EXIT_RUNTIME when the aggregator could not be reached (printed). */
int cli_get(const struct cli_opts *o, const char *path_query, int *status, char **body,
	    size_t *len);

/* cli_request GETs path_query from the aggregator and parses the JSON
 * answer into *doc (caller decrefs). With o->json it prints the answer to
 * stdout as is and leaves *doc NULL. Errors are printed. Returns 0 or
 * EXIT_RUNTIME. */
int cli_request(const struct cli_opts *o, const char *path_query, json_t **doc);

/* cli_opt_fn parses an option's value arg (NULL for a no_argument option)
 * into dst; flag is the option as "--name", for messages. Returns 0 or
 * EXIT_USAGE (message printed, with usage's first line). */
typedef int cli_opt_fn(void *dst, const char *flag, const char *arg, const char *usage);

/* struct cli_opt is one long option of a command, besides the global
 * --server, --json, --timeout and --help. has_arg is getopt's no_argument
 * or required_argument. parse NULL: the option is known but the command
 * refuses it ("hosts does not take option ..."). seen, when not NULL, is
 * set once the option has been parsed. dst and seen are borrowed. */
struct cli_opt {
	const char *name;
	int has_arg;
	cli_opt_fn *parse;
	void *dst;
	bool *seen;
};

/* struct cli_optspec describes a command's options for cli_parse_opts.
 * name is the command in "unknown option ... for NAME" (NULL: the
 * program's own options before the command); usage is printed for -h and
 * --help; opts ends with an entry whose name is NULL (opts NULL: only the
 * global options). With permute, options may follow operands (capture show
 * ID --host H); otherwise the first operand ends the options. */
struct cli_optspec {
	const char *name;
	const char *usage;
	const struct cli_opt *opts;
	bool permute;
};

/* cli_parse_opts runs getopt over argv[1..argc-1] for spec's options and
 * the global ones (into o), calling each option's parse in the order
 * given. With argi NULL an operand is an error; otherwise *argi is set to
 * the index of the first operand (argc: none) for the caller. Returns 0, -1
 * after printing the usage for -h or --help, EXIT_USAGE (message printed),
 * or EXIT_RUNTIME when spec has more than 32 options (a bug). */
int cli_parse_opts(struct cli_opts *o, int argc, char **argv, const struct cli_optspec *spec,
		   int *argi);

/* cli_opt_flag_cb sets a bool; cli_opt_str_cb stores the value (a const
 * char *, borrowed from argv); cli_opt_time_cb parses a TIME and
 * cli_opt_dur_cb a duration of at least 0 (int64_t nanoseconds);
 * cli_opt_limit_cb parses a --limit (long). For struct cli_opt's parse. */
cli_opt_fn cli_opt_flag_cb;
cli_opt_fn cli_opt_str_cb;
cli_opt_fn cli_opt_time_cb;
cli_opt_fn cli_opt_dur_cb;
cli_opt_fn cli_opt_limit_cb;

/* cli_parse_time, cli_parse_dur and cli_parse_limit parse the value s of
 * option flag (a TIME, a duration of at least 0, a --limit); 0 or
 * EXIT_USAGE (message printed). */
int cli_parse_time(const char *flag, const char *s, const char *usage, int64_t *ns);
int cli_parse_dur(const char *flag, const char *s, const char *usage, int64_t *ns);
int cli_parse_limit(const char *s, const char *usage, long *limit);

/* cli_usage_capture and cli_cmd_capture: `spikehound capture` (cli_capture.c):
 * view and export captures, list them, ask for new ones. */
extern const char cli_usage_capture[];
int cli_cmd_capture(struct cli_opts *o, int argc, char **argv);

/* cli_usage_incidents, cli_cmd_incidents: `spikehound incidents`;
 * cli_usage_incident, cli_cmd_incident: `spikehound incident ID`
 * (cli_incidents.c). */
extern const char cli_usage_incidents[];
int cli_cmd_incidents(struct cli_opts *o, int argc, char **argv);
extern const char cli_usage_incident[];
int cli_cmd_incident(struct cli_opts *o, int argc, char **argv);

/* cli_fmt_p formats a p-value from its log10: "p=0.0023", "p=2e-73". */
char *cli_fmt_p(double log10_p);

/* cli_suspect_text is one suspect of the API as a line: "FEATURE   on
 * 48/50 spiking hosts vs 3/950 others   p=2e-73   holder in 45/48 events"
 * (feature cut to feature_width columns, 0: not cut; safe text). */
char *cli_suspect_text(json_t *suspect, size_t feature_width);

/* cli_incident_title is an incident of the API as "periodic mmap_lock_wait
 * every 600.0 s ± 0.4 s on 48 hosts, 312 events" (safe text). */
char *cli_incident_title(json_t *incident);

/* cli_spikes_table prints spike events of the API (a JSON array) as the
 * table `spikehound spikes` shows (cli.c). */
void cli_spikes_table(json_t *spikes);

/* cli_usage_kernels and cli_cmd_kernels: `spikehound kernels` (cli_kernels.c):
 * the kernel-version report as tables, JSON or an HTML page. */
extern const char cli_usage_kernels[];
int cli_cmd_kernels(struct cli_opts *o, int argc, char **argv);

#endif
