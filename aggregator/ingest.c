/* ingest.c: the data plane: nng rep0 (raw) -> decode -> validate -> COPY
 * batch -> one transaction -> acks after COMMIT.
 *
 * Batching is group commit: requests that arrive while every writer
 * connection is busy accumulate in the filling batch, which goes to the
 * first writer that becomes idle. A full batch pauses reading from the
 * socket (nng then queues, and the agents wait) until a writer frees up.
 */
#include "ingest.h"

#include "capture.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "copybuf.h"
#include "db.h"
#include "log.h"
#include "timeutil.h"

#define NSTEPS 8 /* hello, msg, summary, proc, event, stack, hist, chunk */
#define HIST_SLOTS 32 /* the rollups' log2-microsecond buckets (sql/006) */
#define MAX_KNOWN_STACKS 1000000
#define HELLO_REFRESH_NS (30 * SH_NS_PER_SEC)
#define MAX_REASONS 48
#define LAT_BUCKETS 40

/* The staging tables, created on every writer connection. */
static const char setup_sql[] =
	"SET synchronous_commit = on;"
	"CREATE TEMP TABLE IF NOT EXISTS st_hello (host_id uuid, hostname text, labels jsonb,"
	" cpu_count int, cpu_model text, memory_bytes bigint, agent_version text, boot_id uuid,"
	" kernel_release text, kernel_version text, boot_time timestamptz,"
	" clock_skew_ms float8) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS st_msg (host_id uuid, boot_id uuid, seq bigint,"
	" kind text, dropped_before bigint, snapshot_ts timestamptz) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS st_new (host_id uuid, boot_id uuid, seq bigint,"
	" kernel_release text, labels_id bigint) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS st_summary (LIKE summaries INCLUDING STORAGE)"
	" WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS st_proc (host_id uuid, boot_id uuid, seq bigint,"
	" what char(1), pid int, start_time timestamptz, ppid int, uid int, comm text, exe text,"
	" cmdline text, cgroup text, exit_time timestamptz) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS st_event (LIKE spike_events) ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS st_stack (stack_id bigint, folded text)"
	" ON COMMIT DELETE ROWS;"
	"CREATE TEMP TABLE IF NOT EXISTS st_hist (host_id uuid, boot_id uuid, seq bigint,"
	" ts timestamptz, kind text, count float8, sum_ns float8, b float8[])"
	" ON COMMIT DELETE ROWS;" AGG_CAPTURE_STAGING_SQL;

/* HIST_BUCKETS(X) calls X(column suffix, 1-based array index) for the 32
 * histogram buckets of the rollup tables (b00 .. b31). */
#define HIST_BUCKETS(X)                                                                   \
	X("00", "1") X("01", "2") X("02", "3") X("03", "4") X("04", "5") X("05", "6")      \
	X("06", "7") X("07", "8") X("08", "9") X("09", "10") X("10", "11") X("11", "12")  \
	X("12", "13") X("13", "14") X("14", "15") X("15", "16") X("16", "17")            \
	X("17", "18") X("18", "19") X("19", "20") X("20", "21") X("21", "22")            \
	X("22", "23") X("23", "24") X("24", "25") X("25", "26") X("26", "27")            \
	X("27", "28") X("28", "29") X("29", "30") X("30", "31") X("31", "32")
/* an empty bucket is NULL (sql/006_rollups.sql) */
#define B_SUM(n, i) ", nullif(sum(b[" i "]), 0)"
#define B_ADD(n, i) ", b" n " = coalesce(r.b" n " + EXCLUDED.b" n ", r.b" n ", EXCLUDED.b" n ")"
#define KIND_ADD                                                                          \
	" events = r.events + EXCLUDED.events, hist_count = r.hist_count + EXCLUDED.hist_count," \
	" hist_sum_ns = r.hist_sum_ns + EXCLUDED.hist_sum_ns" HIST_BUCKETS(B_ADD)
#define COVERAGE_ADD                                                                      \
	" SET covered_s = r.covered_s + EXCLUDED.covered_s, summaries = r.summaries + EXCLUDED.summaries"
#define ROLLUP_SLOT "coalesce(nullif(current_setting('spikehound.rollup_slot', true), ''), '0')::smallint"

/* ROLLUP_SQL adds the new summaries and events of the batch to the rollups
 * of sql/006_rollups.sql, in one statement: c is the coverage of each new
 * summary, e one row per new event and per new histogram, each with the
 * kernel release and label set of its host (st_new; the label sets are
 * added to rollup_labelsets from the Hellos). Rows are grouped by
 * their key (an upsert may touch a row only once) and sorted by it, so
 * concurrent writers lock shared rows in the same order; the kernel and
 * label rows carry the writer's slot, so writers do not share them at all
 * (host-day rows are shared only by batches of the same host, which the
 * boots lock above already serializes). */
#define ROLLUP_SQL                                                                          \
	"WITH c AS (SELECT s.host_id, n.kernel_release AS k, n.labels_id AS l, s.ts_start AS t," \
	" least(greatest(date_part('epoch', s.ts_end - s.ts_start), 0), 86400) AS cov"      \
	" FROM st_summary s JOIN st_new n USING (host_id, boot_id, seq)),"                 \
	" e AS (SELECT n.kernel_release AS k, n.labels_id AS l, v.ts AS t, v.kind, 1 AS ev,"  \
	" 0::float8 AS hc, 0::float8 AS hs, NULL::float8[] AS b"                            \
	" FROM st_event v JOIN st_new n USING (host_id, boot_id, seq)"                     \
	" UNION ALL SELECT n.kernel_release, n.labels_id, h.ts, h.kind, 0, h.count, h.sum_ns," \
	" h.b FROM st_hist h JOIN st_new n USING (host_id, boot_id, seq)),"                \
	" hd AS (INSERT INTO rollup_host_day AS r (day, host_id, kernel_release, covered_s,"   \
	" summaries) SELECT (t AT TIME ZONE 'UTC')::date, host_id, k, sum(cov), count(*)"   \
	" FROM c GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"                                         \
	" ON CONFLICT (day, host_id, kernel_release) DO UPDATE" COVERAGE_ADD "),"           \
	" kh AS (INSERT INTO rollup_kernel_hour AS r (hour, kernel_release, slot, covered_s," \
	" summaries) SELECT date_trunc('hour', t, 'UTC'), k, " ROLLUP_SLOT ", sum(cov), count(*)" \
	" FROM c GROUP BY 1, 2 ORDER BY 1, 2"                                               \
	" ON CONFLICT (hour, kernel_release, slot) DO UPDATE" COVERAGE_ADD "),"             \
	" ld AS (INSERT INTO rollup_labels_day AS r (day, labels_id, kernel_release, slot,"   \
	" covered_s, summaries) SELECT (t AT TIME ZONE 'UTC')::date, l, k, " ROLLUP_SLOT ","  \
	" sum(cov), count(*) FROM c GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"                      \
	" ON CONFLICT (day, labels_id, kernel_release, slot) DO UPDATE" COVERAGE_ADD "),"   \
	" lk AS (INSERT INTO rollup_labels_day_kind AS r"                                   \
	" SELECT (t AT TIME ZONE 'UTC')::date, l, k, kind, " ROLLUP_SLOT ", sum(ev), sum(hc),"  \
	" sum(hs)" HIST_BUCKETS(B_SUM) " FROM e GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"     \
	" ON CONFLICT (day, labels_id, kernel_release, kind, slot) DO UPDATE SET" KIND_ADD ")" \
	" INSERT INTO rollup_kernel_hour_kind AS r"                                         \
	" SELECT date_trunc('hour', t, 'UTC'), k, kind, " ROLLUP_SLOT ", sum(ev), sum(hc),"  \
	" sum(hs)" HIST_BUCKETS(B_SUM) " FROM e GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"          \
	" ON CONFLICT (hour, kernel_release, kind, slot) DO UPDATE SET" KIND_ADD ";"

/* rollup_prepare_sql prepares ROLLUP_SQL once per writer connection (after
 * the staging tables exist): a statement this size takes milliseconds to
 * plan, which with small batches (an agent's request a few summaries at a
 * time) would cost more than running it. No parameters: the one generic
 * plan is used. */
static const char rollup_prepare_sql[] = "PREPARE sh_rollup AS " ROLLUP_SQL;

/* Everything after the COPYs: dedupe on the per-boot high-water mark, move
 * new rows into the real tables, add them to the rollups, advance the
 * marks, commit. */
static const char final_sql[] =
	"INSERT INTO hosts AS h (host_id, hostname, labels, cpu_count, cpu_model, memory_bytes,"
	" agent_version, last_boot_id, last_seen, clock_skew_ms)"
	" SELECT DISTINCT ON (host_id) host_id, hostname, labels, cpu_count, cpu_model,"
	" memory_bytes, agent_version, boot_id, now(), clock_skew_ms FROM st_hello"
	" ORDER BY host_id"
	" ON CONFLICT (host_id) DO UPDATE SET hostname = EXCLUDED.hostname,"
	" labels = EXCLUDED.labels, cpu_count = EXCLUDED.cpu_count,"
	" cpu_model = EXCLUDED.cpu_model, memory_bytes = EXCLUDED.memory_bytes,"
	" agent_version = EXCLUDED.agent_version, last_boot_id = EXCLUDED.last_boot_id,"
	" last_seen = now(), clock_skew_ms = EXCLUDED.clock_skew_ms;"
	/* a host's labels change only with its Hello: so do the label sets */
	"INSERT INTO rollup_labelsets (labels_id, labels) SELECT DISTINCT ON (1)"
	" hashtextextended(labels::text, 0), labels FROM st_hello ORDER BY 1"
	" ON CONFLICT DO NOTHING;"
	"INSERT INTO boots AS b (host_id, boot_id, kernel_release, kernel_version, boot_time)"
	" SELECT DISTINCT ON (host_id, boot_id) host_id, boot_id, kernel_release,"
	" kernel_version, boot_time FROM st_hello ORDER BY host_id, boot_id"
	" ON CONFLICT (host_id, boot_id) DO UPDATE SET kernel_release = EXCLUDED.kernel_release,"
	" kernel_version = EXCLUDED.kernel_version, boot_time = EXCLUDED.boot_time,"
	" last_seen = now();"
	"INSERT INTO hosts (host_id, hostname) SELECT DISTINCT host_id, '' FROM st_msg"
	" ON CONFLICT DO NOTHING;"
	"INSERT INTO boots (host_id, boot_id, kernel_release)"
	" SELECT DISTINCT host_id, boot_id, '' FROM st_msg ON CONFLICT DO NOTHING;"
	"SELECT 1 FROM boots b JOIN (SELECT DISTINCT host_id, boot_id FROM st_msg) s"
	" USING (host_id, boot_id) ORDER BY b.host_id, b.boot_id FOR UPDATE OF b;"
	/* the label set of the host (its key in rollup_labelsets): one index
	 * lookup per message (a join would hash all hosts on every batch) */
	"INSERT INTO st_new SELECT m.host_id, m.boot_id, m.seq, b.kernel_release,"
	" hashtextextended((SELECT h.labels FROM hosts h WHERE h.host_id = m.host_id)::text, 0)"
	" FROM st_msg m JOIN boots b USING (host_id, boot_id) WHERE m.seq > b.last_seq;"
	"INSERT INTO stacks (stack_id, folded) SELECT DISTINCT ON (stack_id) stack_id, folded"
	" FROM st_stack ORDER BY stack_id ON CONFLICT DO NOTHING;"
	"INSERT INTO summaries SELECT s.* FROM st_summary s JOIN st_new n"
	" USING (host_id, boot_id, seq);"
	"INSERT INTO spike_events SELECT e.* FROM st_event e JOIN st_new n"
	" USING (host_id, boot_id, seq);" AGG_CAPTURE_FINAL_SQL
	"INSERT INTO processes AS p (host_id, boot_id, pid, start_time, ppid, uid, comm, exe,"
	" cmdline, cgroup, exit_time)"
	" SELECT DISTINCT ON (q.host_id, q.boot_id, q.pid, q.start_time) q.host_id, q.boot_id,"
	" q.pid, q.start_time, q.ppid, q.uid, q.comm, q.exe, q.cmdline, q.cgroup, q.exit_time"
	" FROM st_proc q JOIN st_new n USING (host_id, boot_id, seq)"
	" ORDER BY q.host_id, q.boot_id, q.pid, q.start_time, q.exit_time DESC NULLS LAST,"
	" q.seq DESC"
	" ON CONFLICT (host_id, boot_id, pid, start_time) DO UPDATE"
	" SET exit_time = coalesce(EXCLUDED.exit_time, p.exit_time),"
	" exit_inferred = p.exit_inferred AND EXCLUDED.exit_time IS NULL,"
	" ppid = EXCLUDED.ppid, uid = EXCLUDED.uid, comm = EXCLUDED.comm, exe = EXCLUDED.exe,"
	" cmdline = EXCLUDED.cmdline, cgroup = EXCLUDED.cgroup"
	" WHERE (p.exit_time, p.ppid, p.comm, p.exe, p.cmdline, p.cgroup) IS DISTINCT FROM"
	" (coalesce(EXCLUDED.exit_time, p.exit_time), EXCLUDED.ppid, EXCLUDED.comm, EXCLUDED.exe,"
	" EXCLUDED.cmdline, EXCLUDED.cgroup);"
	"UPDATE processes p SET exit_time = m.snapshot_ts, exit_inferred = true"
	" FROM st_msg m JOIN st_new n USING (host_id, boot_id, seq)"
	" WHERE m.snapshot_ts IS NOT NULL AND p.host_id = m.host_id AND p.boot_id = m.boot_id"
	" AND p.exit_time IS NULL AND p.start_time < m.snapshot_ts AND NOT EXISTS"
	" (SELECT 1 FROM st_proc q WHERE q.what = 'n' AND q.host_id = m.host_id"
	" AND q.boot_id = m.boot_id AND q.seq = m.seq AND q.pid = p.pid"
	" AND q.start_time = p.start_time);"
	"UPDATE hosts h SET spool_dropped = h.spool_dropped + d.n FROM (SELECT m.host_id,"
	" sum(m.dropped_before) AS n FROM st_msg m JOIN st_new USING (host_id, boot_id, seq)"
	" GROUP BY 1) d WHERE h.host_id = d.host_id AND d.n > 0;"
	"EXECUTE sh_rollup;" /* ROLLUP_SQL, prepared by rollup_prepare_sql */
	"UPDATE boots b SET last_seq = n.mx, last_seen = now() FROM (SELECT host_id, boot_id,"
	" max(seq) AS mx FROM st_new GROUP BY 1, 2) n"
	" WHERE b.host_id = n.host_id AND b.boot_id = n.boot_id;"
	"COMMIT;";

/* The per-second metric columns, in summaries' column order. */
enum mtype { MT_F, MT_U32, MT_U64 };
static const struct mcol {
	const char *name;
	enum mtype type;
	size_t off;
} mcols[] = {
#define F(n) { #n, MT_F, offsetof(Spikehound__MetricSecond, n) }
#define U(n) { #n, MT_U32, offsetof(Spikehound__MetricSecond, n) }
#define L(n) { #n, MT_U64, offsetof(Spikehound__MetricSecond, n) }
	F(cpu_user_pct),      F(cpu_sys_pct),	     F(cpu_irq_pct),	    F(cpu_softirq_pct),
	F(cpu_iowait_pct),    F(cpu_steal_pct),	     F(cpu_idle_pct),	    F(load1),
	U(procs_running),     U(procs_blocked),	     F(psi_cpu_some_avg10), F(psi_mem_some_avg10),
	F(psi_mem_full_avg10), F(psi_io_some_avg10), F(psi_io_full_avg10),  L(psi_cpu_some_us),
	L(psi_mem_some_us),   L(psi_io_some_us),     L(mem_total_kb),	    L(mem_free_kb),
	L(mem_available_kb),  L(mem_cached_kb),	     L(slab_reclaimable_kb), L(slab_unreclaimable_kb),
	L(pgscan_direct),     L(pgscan_kswapd),	     L(pgsteal_direct),	    L(pgsteal_kswapd),
	L(allocstall),	      L(compact_stall),	     L(dentry_nr),	    L(dentry_unused),
	L(dentry_negative),   L(ctxt),		     L(forks),		    L(intr),
	L(softirq_net_rx),
#undef F
#undef U
#undef L
};

struct item {
	char boot_id[40];
	uint64_t seq;
	const char *rejected; /* static reason, NULL when accepted */
};

/* struct pending is one request waiting for its batch to commit. */
struct pending {
	nng_msg *msg; /* the request: its header routes the reply, its body is
		       * kept to restage it alone if its batch fails on data */
	struct item *items;
	size_t n_items;
	int64_t received_ns;
	char host_key[40];
	uint64_t hello_hash;
	bool hello_staged;
};

/* struct staged_key is one (host, boot, seq) staged in a batch: a request
 * and its resend in the same batch must not store a message twice. */
struct staged_key {
	char key[96];
	UT_hash_handle hh;
};

struct batch {
	struct agg_ingest *ing;
	struct staged_key *staged; /* uthash set */
	int64_t *stack_ids; /* staged into st_stack: known once committed */
	size_t n_stack_ids, cap_stack_ids;
	struct pending **reqs;
	size_t n, cap;
	size_t n_msgs, n_accepted;
	struct agg_copybuf buf[NSTEPS];
	struct agg_db_copy steps[NSTEPS];
	int64_t submitted_ns;
	int writer;
	bool solo; /* a single request retried alone after a data error */
	struct batch *next;
};

struct hello_seen {
	char key[40];
	uint64_t hash;
	int64_t written_ns;
	double skew_ms;
	UT_hash_handle hh;
};

struct known_stack {
	int64_t id;
	UT_hash_handle hh;
};

struct reason_count {
	const char *reason;
	uint64_t n;
};

struct agg_ingest {
	uv_loop_t *loop;
	struct agg_ingest_opts opts;
	nng_socket sock;
	bool sock_open;
	uv_poll_t recv_poll;
	bool recv_polling;
	struct agg_db **writers;
	struct batch **inflight; /* per writer, NULL when idle */
	struct batch *filling;
	struct batch *solo_head, *solo_tail; /* restaged single requests, first */
	struct hello_seen *seen;
	struct known_stack *known; /* stack ids the database has */
	size_t n_known;
	char copy_sql[NSTEPS][2048];
	/* stopping */
	bool stopping;
	void (*done_cb)(void *);
	void *done_arg;
	uv_timer_t linger;
	int open_handles;
	/* self-metrics */
	atomic_int agents_connected;
	uint64_t requests, messages, stored, duplicates, rejected_msgs, rejected_reqs;
	uint64_t dup_in_batch; /* resent copies met in the batch of their original */
	uint64_t retries, batches, batch_msgs_max, bytes_in, send_failures;
	struct reason_count reasons[MAX_REASONS];
	uint64_t commit_lat[LAT_BUCKETS], ack_lat[LAT_BUCKETS];
	uint64_t last_log_requests, last_log_stored;
	int64_t started_ns, last_log_ns;
};

static void submit_batches(struct agg_ingest *ing);
static void maybe_finish_stop(struct agg_ingest *ing);

static void count_reason(struct agg_ingest *ing, const char *reason)
{
	for (int i = 0; i < MAX_REASONS; i++) {
		if (ing->reasons[i].reason == reason ||
		    (ing->reasons[i].reason && strcmp(ing->reasons[i].reason, reason) == 0)) {
			ing->reasons[i].n++;
			return;
		}
		if (!ing->reasons[i].reason) {
			ing->reasons[i].reason = reason;
			ing->reasons[i].n = 1;
			return;
		}
	}
}

/* lat_record files a latency (ns) into log2 buckets of microseconds. */
static void lat_record(uint64_t *h, int64_t ns)
{
	uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;
	int b = 0;

	while (us > 1 && b < LAT_BUCKETS - 1) {
		us >>= 1;
		b++;
	}
	h[b]++;
}

/* lat_quantile returns the upper bound (ms) of the bucket holding q. */
static double lat_quantile(const uint64_t *h, double q)
{
	uint64_t total = 0, acc = 0;

	for (int i = 0; i < LAT_BUCKETS; i++)
		total += h[i];
	if (!total)
		return 0;
	for (int i = 0; i < LAT_BUCKETS; i++) {
		acc += h[i];
		if ((double)acc >= q * (double)total)
			return (double)(1ULL << (i + 1)) / 1000.0;
	}
	return 0;
}

static void pending_free(struct pending *p)
{
	if (!p)
		return;
	if (p->msg)
		nng_msg_free(p->msg);
	free(p->items);
	free(p);
}

static struct batch *batch_new(struct agg_ingest *ing)
{
	struct batch *b = calloc(1, sizeof(*b));

	if (b)
		b->ing = ing;
	return b;
}

static void batch_free(struct batch *b)
{
	struct staged_key *k, *tmp;

	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		pending_free(b->reqs[i]);
	free(b->reqs);
	free(b->stack_ids);
	for (int i = 0; i < NSTEPS; i++)
		agg_copybuf_fini(&b->buf[i]);
	HASH_ITER(hh, b->staged, k, tmp) {
		HASH_DEL(b->staged, k);
		free(k);
	}
	free(b);
}

/* staged_once tells whether message m is staged in b for the first time
 * (and remembers it); false for a copy already staged (from a resend). */
static bool staged_once(struct batch *b, const Spikehound__AgentMessage *m)
{
	struct staged_key *k;
	char key[96];

	snprintf(key, sizeof(key), "%.36s/%.40s/%" PRIu64, m->host_id, m->boot_id, m->seq);
	for (char *c = key; *c; c++)
		*c = (char)(*c | 0x20); /* ids compare case-insensitively */
	HASH_FIND_STR(b->staged, key, k);
	if (k)
		return false;
	if ((k = calloc(1, sizeof(*k))) != NULL) {
		memcpy(k->key, key, sizeof(key));
		HASH_ADD_STR(b->staged, key, k);
	}
	return true;
}

static size_t batch_bytes(const struct batch *b)
{
	size_t n = 0;

	for (int i = 0; i < NSTEPS; i++)
		n += b->buf[i].len;
	return n;
}

static bool batch_full(const struct agg_ingest *ing, const struct batch *b)
{
	return b && (b->n >= ing->opts.max_batch_requests || batch_bytes(b) >= ing->opts.max_batch_bytes);
}

/* send_reply sends an Ack on the request's route; takes ownership of msg
 * (the request whose header routes the reply). */
static void send_reply(struct agg_ingest *ing, nng_msg *msg, const Spikehound__Ack *ack)
{
	size_t len = spikehound__ack__get_packed_size(ack);
	int rv;

	nng_msg_clear(msg);
	if (nng_msg_realloc(msg, len) != 0) {
		nng_msg_free(msg);
		ing->send_failures++;
		return;
	}
	spikehound__ack__pack(ack, nng_msg_body(msg));
	rv = nng_sendmsg(ing->sock, msg, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		/* the agent went away or is not reading: it will resend */
		nng_msg_free(msg);
		ing->send_failures++;
	}
}

static void reply_status(struct agg_ingest *ing, nng_msg *msg, Spikehound__Ack__Status st,
			 const char *reason, int64_t received_ns)
{
	Spikehound__Ack ack = SPIKEHOUND__ACK__INIT;

	ack.status = st;
	ack.reason = (char *)(reason ? reason : "");
	ack.received_ns = received_ns;
	send_reply(ing, msg, &ack);
}

/* reply_pending answers one request of a finished batch and frees it. */
static void reply_pending(struct agg_ingest *ing, struct pending *p, int status, const char *err)
{
	Spikehound__Ack ack = SPIKEHOUND__ACK__INIT;
	Spikehound__Ack__Item *items = NULL, **ptrs = NULL;

	ack.received_ns = p->received_ns;
	if (status != 0) {
		ack.status = SPIKEHOUND__ACK__STATUS__RETRY;
		ack.reason = (char *)err;
	} else {
		items = calloc(p->n_items ? p->n_items : 1, sizeof(*items));
		ptrs = calloc(p->n_items ? p->n_items : 1, sizeof(*ptrs));
		if (!items || !ptrs) {
			ack.status = SPIKEHOUND__ACK__STATUS__RETRY;
			ack.reason = "out of memory";
		} else {
			for (size_t i = 0; i < p->n_items; i++) {
				spikehound__ack__item__init(&items[i]);
				items[i].boot_id = p->items[i].boot_id;
				items[i].seq = p->items[i].seq;
				items[i].stored = p->items[i].rejected == NULL;
				items[i].rejected = (char *)(p->items[i].rejected ? p->items[i].rejected : "");
				ptrs[i] = &items[i];
			}
			ack.items = ptrs;
			ack.n_items = p->n_items;
		}
	}
	send_reply(ing, p->msg, &ack);
	p->msg = NULL;
	lat_record(ing->ack_lat, sh_now_wall_ns() - p->received_ns);
	free(items);
	free(ptrs);
}

static void remember_hellos(struct agg_ingest *ing, struct batch *b, int64_t now)
{
	for (size_t i = 0; i < b->n; i++) {
		struct pending *p = b->reqs[i];
		struct hello_seen *s;

		if (!p->hello_staged)
			continue;
		HASH_FIND_STR(ing->seen, p->host_key, s);
		if (s) {
			s->hash = p->hello_hash;
			s->written_ns = now;
		}
	}
}

static void restage_alone(struct agg_ingest *ing, struct pending *p);

static void forget_stacks(struct agg_ingest *ing)
{
	struct known_stack *k, *tmp;

	HASH_ITER(hh, ing->known, k, tmp)
	{
		HASH_DEL(ing->known, k);
		free(k);
	}
	ing->n_known = 0;
}

static void remember_stacks(struct agg_ingest *ing, struct batch *b)
{
	if (ing->n_known + b->n_stack_ids > MAX_KNOWN_STACKS)
		forget_stacks(ing); /* bounded memory: relearn from new batches */
	for (size_t i = 0; i < b->n_stack_ids; i++) {
		struct known_stack *k;

		HASH_FIND(hh, ing->known, &b->stack_ids[i], sizeof(int64_t), k);
		if (k || !(k = malloc(sizeof(*k))))
			continue;
		k->id = b->stack_ids[i];
		HASH_ADD(hh, ing->known, id, sizeof(int64_t), k);
		ing->n_known++;
	}
}

static void batch_done_cb(struct agg_db *db, int status, PGresult *res, const char *errmsg,
			  void *arg)
{
	struct batch *b = arg;
	struct agg_ingest *ing = b->ing;
	int64_t now = sh_now_wall_ns();

	ing->inflight[b->writer] = NULL;
	lat_record(ing->commit_lat, now - b->submitted_ns);
	if (status == 0) {
		ing->stored += b->n_accepted;
		remember_hellos(ing, b, now);
		remember_stacks(ing, b);
		for (size_t i = 0; i < b->n; i++)
			reply_pending(ing, b->reqs[i], 0, NULL);
	} else if (status == -EINVAL && !b->solo) {
		/* the data of one request broke the transaction: retry each
		 * alone so that one cannot hold back the others */
		sh_warn("ingest: batch of %zu requests failed on data (%s): retrying each alone",
			b->n, errmsg);
		for (size_t i = 0; i < b->n; i++) {
			restage_alone(ing, b->reqs[i]);
			b->reqs[i] = NULL;
		}
	} else if (status == -EINVAL) {
		struct pending *p = b->reqs[0];

		/* validation let through data the database refuses (a bug on
		 * our side): reject the request's messages so the agent drops
		 * them instead of resending them forever, and say so loudly */
		sh_err("ingest: request refused by the database, rejecting its %zu messages: %s",
		       p->n_items, errmsg);
		for (size_t i = 0; i < p->n_items; i++) {
			if (!p->items[i].rejected) {
				p->items[i].rejected = "storage_rejected";
				count_reason(ing, "storage_rejected");
				ing->rejected_msgs++;
			}
		}
		reply_pending(ing, p, 0, NULL);
	} else {
		if (status != -ECANCELED)
			sh_warn("ingest: batch of %zu requests not stored: %s", b->n, errmsg);
		for (size_t i = 0; i < b->n; i++)
			reply_pending(ing, b->reqs[i], status,
				      errmsg && *errmsg ? errmsg : "database unavailable");
		ing->retries += b->n;
	}
	batch_free(b);
	(void)db;
	(void)res;
	submit_batches(ing);
	if (ing->stopping)
		maybe_finish_stop(ing);
}

static void recv_cb(uv_poll_t *h, int status, int events);

static void set_recv_polling(struct agg_ingest *ing, bool on)
{
	if (on == ing->recv_polling || !ing->sock_open)
		return;
	if (on)
		uv_poll_start(&ing->recv_poll, UV_READABLE, recv_cb);
	else
		uv_poll_stop(&ing->recv_poll);
	ing->recv_polling = on;
}

static void submit_batches(struct agg_ingest *ing)
{
	struct batch *b;
	int w;

again:
	b = ing->solo_head ? ing->solo_head : ing->filling;
	if (!b || b->n == 0)
		goto out;
	for (w = 0; w < ing->opts.writers; w++)
		if (!ing->inflight[w])
			break;
	if (w == ing->opts.writers)
		goto out;
	if (b == ing->solo_head) {
		ing->solo_head = b->next;
		if (!ing->solo_head)
			ing->solo_tail = NULL;
	} else {
		ing->filling = NULL;
	}
	for (int i = 0; i < NSTEPS; i++) {
		b->steps[i].sql = ing->copy_sql[i];
		b->steps[i].data = b->buf[i].data ? b->buf[i].data : "";
		b->steps[i].len = b->buf[i].len;
		if (b->buf[i].oom) {
			/* cannot stage: ask every agent of the batch to resend */
			for (size_t k = 0; k < b->n; k++)
				reply_pending(ing, b->reqs[k], -ENOMEM, "out of memory");
			batch_free(b);
			goto again;
		}
	}
	b->writer = w;
	b->submitted_ns = sh_now_wall_ns();
	ing->inflight[w] = b;
	ing->batches++;
	if (b->n_msgs > ing->batch_msgs_max)
		ing->batch_msgs_max = b->n_msgs;
	if (agg_db_copy_txn(ing->writers[w], NULL, b->steps, NSTEPS, final_sql, batch_done_cb, b) != 0) {
		ing->inflight[w] = NULL;
		for (size_t k = 0; k < b->n; k++)
			reply_pending(ing, b->reqs[k], -ENOMEM, "could not start transaction");
		batch_free(b);
	}
	goto again;
out:
	if (!ing->stopping)
		set_recv_polling(ing, !batch_full(ing, ing->filling));
}

/* i32 clamps an unsigned wire value into a PostgreSQL integer column;
 * values that do not fit (e.g. uid 4294967295 for "unknown") become -1. */
static int64_t i32(uint64_t v)
{
	return v > INT32_MAX ? -1 : (int64_t)v;
}

static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static void host_key(const char *id, char *out)
{
	size_t n = 0;

	for (const char *p = id; *p && n < 39; p++)
		if (*p != '-')
			out[n++] = (char)(*p | 0x20);
	out[n] = '\0';
}

static json_t *labels_json(const Spikehound__Hello *h)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < h->n_labels; i++)
		json_object_set_new(o, h->labels[i]->key, json_string(h->labels[i]->value));
	return o;
}

static void copy_json(struct agg_copybuf *b, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (!s) {
		if (j)
			b->oom = true;
		agg_copybuf_str(b, "{}");
	} else {
		agg_copybuf_str(b, s);
	}
	free(s);
	json_decref(j);
}

/* stage_hello writes the request's Hello into st_hello, unless the same
 * Hello was written for this host recently. */
static void stage_hello(struct agg_ingest *ing, struct batch *b, struct pending *p,
			Spikehound__Hello *h, int64_t now)
{
	struct agg_copybuf *c = &b->buf[0];
	struct hello_seen *s;
	int64_t sent = h->sent_at_ns;
	double skew;
	uint8_t *packed;
	size_t len;

	host_key(h->host_id, p->host_key);
	h->sent_at_ns = 0;
	len = spikehound__hello__get_packed_size(h);
	packed = malloc(len ? len : 1);
	if (packed) {
		spikehound__hello__pack(h, packed);
		p->hello_hash = fnv1a(packed, len, 1469598103934665603ULL);
		free(packed);
	}
	h->sent_at_ns = sent;
	skew = sent ? (double)(sent - now) / 1e6 : 0;
	HASH_FIND_STR(ing->seen, p->host_key, s);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (s) {
			memcpy(s->key, p->host_key, sizeof(s->key));
			s->skew_ms = skew;
			HASH_ADD_STR(ing->seen, key, s);
		}
	} else if (sent) {
		s->skew_ms = 0.8 * s->skew_ms + 0.2 * skew;
	}
	if (s && s->hash == p->hello_hash && now - s->written_ns < HELLO_REFRESH_NS)
		return;
	p->hello_staged = true;
	agg_copybuf_str(c, h->host_id);
	agg_copybuf_str(c, h->hostname ? h->hostname : "");
	copy_json(c, labels_json(h));
	agg_copybuf_i64(c, i32(h->cpu_count));
	agg_copybuf_str(c, h->cpu_model ? h->cpu_model : "");
	agg_copybuf_i64(c, (int64_t)(h->memory_bytes > INT64_MAX ? INT64_MAX : h->memory_bytes));
	agg_copybuf_str(c, h->agent_version ? h->agent_version : "");
	agg_copybuf_str(c, h->boot_id);
	agg_copybuf_str(c, h->kernel_release);
	agg_copybuf_str(c, h->kernel_version ? h->kernel_version : "");
	if (h->boot_time_ns > 0)
		agg_copybuf_ts(c, h->boot_time_ns);
	else
		agg_copybuf_null(c);
	if (s)
		agg_copybuf_f64(c, s->skew_ms);
	else
		agg_copybuf_null(c);
	agg_copybuf_end_row(c);
}

static void stage_proc(struct agg_copybuf *c, const Spikehound__AgentMessage *m, char what,
		       const Spikehound__Process *p)
{
	char w[2] = { what, 0 };

	agg_copybuf_str(c, m->host_id);
	agg_copybuf_str(c, m->boot_id);
	agg_copybuf_i64(c, (int64_t)m->seq);
	agg_copybuf_str(c, w);
	agg_copybuf_i64(c, p->pid);
	agg_copybuf_ts(c, p->start_time_ns);
	agg_copybuf_i64(c, p->ppid);
	agg_copybuf_i64(c, i32(p->uid));
	agg_copybuf_str(c, p->comm ? p->comm : "");
	agg_copybuf_str(c, p->exe ? p->exe : "");
	agg_copybuf_str(c, p->cmdline ? p->cmdline : "");
	agg_copybuf_str(c, p->cgroup ? p->cgroup : "");
	if (p->exit_time_ns)
		agg_copybuf_ts(c, p->exit_time_ns);
	else
		agg_copybuf_null(c);
	agg_copybuf_end_row(c);
}

static json_t *health_json(const Spikehound__AgentHealth *h)
{
	if (!h)
		return json_object();
	return json_pack("{sIsIsIsIsfsIsIsIsIsfsI}", "samples", (json_int_t)h->samples,
			 "samples_lost", (json_int_t)h->samples_lost, "stack_errors",
			 (json_int_t)h->stack_errors, "user_stacks_depth1",
			 (json_int_t)h->user_stacks_depth1, "recorder_seconds",
			 (double)h->recorder_seconds, "recorder_bytes", (json_int_t)h->recorder_bytes,
			 "spool_dropped", (json_int_t)h->spool_dropped, "spool_bytes",
			 (json_int_t)h->spool_bytes, "events_suppressed",
			 (json_int_t)h->events_suppressed, "agent_cpu_pct", (double)h->agent_cpu_pct,
			 "agent_rss_kb", (json_int_t)h->agent_rss_kb);
}

/* histograms_json is the summary's latency histograms keyed by kind. */
static json_t *histograms_json(const Spikehound__Summary *s)
{
	json_t *o = json_object();

	for (size_t i = 0; o && i < s->n_histograms; i++) {
		const Spikehound__Histogram *h = s->histograms[i];
		json_t *b = json_array();

		for (size_t k = 0; b && k < h->n_buckets; k++)
			json_array_append_new(b, json_integer((json_int_t)(h->buckets[k] > INT64_MAX ?
										   INT64_MAX : h->buckets[k])));
		json_object_set_new(o, h->kind,
				    json_pack("{sosIsI}", "buckets", b, "count",
					      (json_int_t)(h->count > INT64_MAX ? INT64_MAX : h->count),
					      "sum_ns",
					      (json_int_t)(h->sum_ns > INT64_MAX ? INT64_MAX : h->sum_ns)));
	}
	return o;
}

/* stack_id is the dictionary key of a folded stack. */
static int64_t stack_id(const char *folded)
{
	return (int64_t)fnv1a(folded, strlen(folded), 1469598103934665603ULL);
}

/* stage_stacks writes the summary's stack and per-process arrays, and
 * stages dictionary rows for stacks the database may not have. */
static void stage_stacks(struct batch *b, const Spikehound__Summary *s)
{
	struct agg_ingest *ing = b->ing;
	struct agg_copybuf *c = &b->buf[2], *d = &b->buf[5];
	uint64_t total = 0;

	agg_copybuf_array_begin(c);
	for (size_t i = 0; i < s->n_stacks; i++) {
		int64_t id = stack_id(s->stacks[i]->stack);
		struct known_stack *k;

		agg_copybuf_elem_i64(c, id);
		HASH_FIND(hh, ing->known, &id, sizeof(id), k);
		if (k)
			continue;
		if (b->n_stack_ids == b->cap_stack_ids) {
			size_t cap = b->cap_stack_ids ? b->cap_stack_ids * 2 : 256;
			int64_t *n = realloc(b->stack_ids, cap * sizeof(*n));

			if (!n) {
				d->oom = true;
				continue;
			}
			b->stack_ids = n;
			b->cap_stack_ids = cap;
		}
		b->stack_ids[b->n_stack_ids++] = id;
		agg_copybuf_i64(d, id);
		agg_copybuf_str(d, s->stacks[i]->stack);
		agg_copybuf_end_row(d);
	}
	agg_copybuf_array_end(c);
	agg_copybuf_array_begin(c);
	for (size_t i = 0; i < s->n_stacks; i++)
		agg_copybuf_elem_i64(c, i32(s->stacks[i]->count));
	agg_copybuf_array_end(c);
	agg_copybuf_array_begin(c);
	for (size_t i = 0; i < s->n_proc_samples; i++)
		agg_copybuf_elem_i64(c, s->proc_samples[i]->pid);
	agg_copybuf_array_end(c);
	agg_copybuf_array_begin(c);
	for (size_t i = 0; i < s->n_proc_samples; i++)
		agg_copybuf_elem_str(c, s->proc_samples[i]->comm ? s->proc_samples[i]->comm : "");
	agg_copybuf_array_end(c);
	agg_copybuf_array_begin(c);
	for (size_t i = 0; i < s->n_proc_samples; i++) {
		agg_copybuf_elem_i64(c, i32(s->proc_samples[i]->samples));
		total += s->proc_samples[i]->samples;
	}
	agg_copybuf_array_end(c);
	agg_copybuf_i64(c, (int64_t)total);
	copy_json(c, histograms_json(s));
}

static int64_t clamp64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* stage_hists writes one st_hist row per histogram of the summary, its
 * buckets folded into the rollups' HIST_SLOTS (the last one takes the rest). */
static void stage_hists(struct batch *b, const Spikehound__AgentMessage *m)
{
	const Spikehound__Summary *s = m->summary;
	struct agg_copybuf *c = &b->buf[6];

	for (size_t i = 0; i < s->n_histograms; i++) {
		const Spikehound__Histogram *h = s->histograms[i];
		uint64_t slot[HIST_SLOTS] = { 0 };

		for (size_t k = 0; k < h->n_buckets; k++) {
			uint64_t *v = &slot[k < HIST_SLOTS ? k : HIST_SLOTS - 1];

			*v = *v + h->buckets[k] < *v ? UINT64_MAX : *v + h->buckets[k];
		}
		agg_copybuf_str(c, m->host_id);
		agg_copybuf_str(c, m->boot_id);
		agg_copybuf_i64(c, (int64_t)m->seq);
		agg_copybuf_ts(c, s->start_ns);
		agg_copybuf_str(c, h->kind);
		/* integers, printed exactly; the columns are float8 */
		agg_copybuf_i64(c, clamp64(h->count));
		agg_copybuf_i64(c, clamp64(h->sum_ns));
		agg_copybuf_array_begin(c);
		for (int k = 0; k < HIST_SLOTS; k++)
			agg_copybuf_elem_i64(c, clamp64(slot[k]));
		agg_copybuf_array_end(c);
		agg_copybuf_end_row(c);
	}
}

static void stage_summary(struct batch *b, const Spikehound__AgentMessage *m)
{
	const Spikehound__Summary *s = m->summary;
	struct agg_copybuf *c = &b->buf[2], *pc = &b->buf[3];

	agg_copybuf_str(c, m->host_id);
	agg_copybuf_str(c, m->boot_id);
	agg_copybuf_i64(c, (int64_t)m->seq);
	agg_copybuf_ts(c, s->start_ns);
	agg_copybuf_ts(c, s->end_ns);
	agg_copybuf_ts(c, sh_now_wall_ns());
	agg_copybuf_i64(c, (int64_t)m->dropped_before);
	copy_json(c, health_json(s->health));
	agg_copybuf_array_begin(c);
	for (size_t i = 0; i < s->n_metrics; i++)
		agg_copybuf_elem_ts(c, s->metrics[i]->time_ns);
	agg_copybuf_array_end(c);
	for (size_t k = 0; k < sizeof(mcols) / sizeof(mcols[0]); k++) {
		agg_copybuf_array_begin(c);
		for (size_t i = 0; i < s->n_metrics; i++) {
			const char *base = (const char *)s->metrics[i];

			switch (mcols[k].type) {
			case MT_F:
				agg_copybuf_elem_f64(c, *(const float *)(base + mcols[k].off));
				break;
			case MT_U32:
				agg_copybuf_elem_i64(c, i32(*(const uint32_t *)(base + mcols[k].off)));
				break;
			case MT_U64: {
				uint64_t v = *(const uint64_t *)(base + mcols[k].off);

				agg_copybuf_elem_i64(c, (int64_t)(v > INT64_MAX ? INT64_MAX : v));
				break;
			}
			}
		}
		agg_copybuf_array_end(c);
	}
	stage_stacks(b, s);
	agg_copybuf_end_row(c);
	stage_hists(b, m);
	for (size_t i = 0; i < s->n_started; i++)
		stage_proc(pc, m, 's', s->started[i]);
	for (size_t i = 0; i < s->n_exited; i++)
		stage_proc(pc, m, 'e', s->exited[i]);
	for (size_t i = 0; i < s->n_snapshot; i++)
		stage_proc(pc, m, 'n', s->snapshot[i]);
}

static json_t *task_json(const Spikehound__Task *t)
{
	json_t *o, *ks, *us;

	if (!t)
		return json_null();
	ks = json_array();
	us = json_array();
	for (size_t i = 0; i < t->n_kernel_stack; i++)
		json_array_append_new(ks, json_string(t->kernel_stack[i]));
	for (size_t i = 0; i < t->n_user_stack; i++)
		json_array_append_new(us, json_string(t->user_stack[i]));
	o = json_pack("{sisisssssssIsoso}", "pid", (int)t->pid, "tid", (int)t->tid, "comm",
		      t->comm ? t->comm : "", "cgroup", t->cgroup ? t->cgroup : "", "role",
		      t->role ? t->role : "", "on_cpu_ns", (json_int_t)t->on_cpu_ns, "kernel_stack",
		      ks, "user_stack", us);
	return o ? o : json_null();
}

static void stage_event(struct batch *b, const Spikehound__AgentMessage *m)
{
	const Spikehound__SpikeEvent *e = m->event;
	struct agg_copybuf *c = &b->buf[4];
	const Spikehound__Task *v = e->victim;
	json_t *ev, *culprits = json_array(), *attrs = json_object(), *ws = json_array();

	for (size_t i = 0; i < e->n_culprits; i++)
		json_array_append_new(culprits, task_json(e->culprits[i]));
	for (size_t i = 0; i < e->n_attrs; i++)
		json_object_set_new(attrs, e->attrs[i]->key, json_string(e->attrs[i]->value));
	for (size_t i = 0; i < e->n_window_samples; i++)
		json_array_append_new(ws, json_pack("{sssI}", "stack", e->window_samples[i]->stack,
						    "count",
						    (json_int_t)e->window_samples[i]->count));
	ev = json_pack("{sososososI}", "victim", task_json(v), "culprits", culprits, "attrs",
		       attrs, "window_samples", ws, "suppressed", (json_int_t)e->suppressed_before);
	agg_copybuf_str(c, m->host_id);
	agg_copybuf_str(c, m->boot_id);
	agg_copybuf_i64(c, (int64_t)m->seq);
	agg_copybuf_ts(c, e->start_ns);
	agg_copybuf_i64(c, e->duration_ns);
	agg_copybuf_str(c, e->kind);
	agg_copybuf_i64(c, e->cpu);
	agg_copybuf_i64(c, v ? v->pid : 0);
	agg_copybuf_i64(c, v ? v->tid : 0);
	agg_copybuf_str(c, v && v->comm ? v->comm : "");
	agg_copybuf_str(c, v && v->cgroup ? v->cgroup : "");
	agg_copybuf_str(c, e->detail ? e->detail : "");
	copy_json(c, ev);
	agg_copybuf_ts(c, sh_now_wall_ns());
	agg_copybuf_end_row(c);
}

static void stage_msg(struct batch *b, const Spikehound__AgentMessage *m)
{
	struct agg_copybuf *c = &b->buf[1];
	bool summary = m->body_case == SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
	bool chunk = m->body_case == SPIKEHOUND__AGENT_MESSAGE__BODY_CHUNK;

	agg_copybuf_str(c, m->host_id);
	agg_copybuf_str(c, m->boot_id);
	agg_copybuf_i64(c, (int64_t)m->seq);
	agg_copybuf_str(c, summary ? "summary" : chunk ? "chunk" : "event");
	agg_copybuf_i64(c, (int64_t)(m->dropped_before > INT64_MAX ? 0 : m->dropped_before));
	if (summary && m->summary->has_snapshot)
		agg_copybuf_ts(c, m->summary->end_ns);
	else
		agg_copybuf_null(c);
	agg_copybuf_end_row(c);
	if (summary)
		stage_summary(b, m);
	else if (chunk)
		agg_capture_stage_chunk(&b->buf[7], m);
	else
		stage_event(b, m);
}

/* batch_add appends p to b; returns 0 or -ENOMEM. */
static int batch_add(struct batch *b, struct pending *p)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct pending **r = realloc(b->reqs, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		b->reqs = r;
		b->cap = cap;
	}
	b->reqs[b->n++] = p;
	return 0;
}

/* stage_request stages every accepted message of req (validated; p->items
 * hold the verdicts) into b. */
static void stage_request(struct agg_ingest *ing, struct batch *b, struct pending *p,
			  Spikehound__AgentRequest *req, int64_t now)
{
	stage_hello(ing, b, p, req->hello, now);
	for (size_t i = 0; i < req->n_messages; i++) {
		if (p->items[i].rejected)
			continue;
		if (!staged_once(b, req->messages[i])) {
			ing->dup_in_batch++;
			continue;
		}
		stage_msg(b, req->messages[i]);
		b->n_accepted++;
		b->n_msgs++;
	}
}

/* decode_validate unpacks p's request and validates it, filling p->items
 * when items is true. Returns the request (caller frees) or NULL with
 * *why set. */
static Spikehound__AgentRequest *decode_validate(struct agg_ingest *ing, struct pending *p,
						 int64_t now, bool items, const char **why)
{
	Spikehound__AgentRequest *req;
	const char **reasons;

	req = spikehound__agent_request__unpack(NULL, nng_msg_len(p->msg), nng_msg_body(p->msg));
	if (!req) {
		*why = "malformed";
		return NULL;
	}
	reasons = calloc(req->n_messages ? req->n_messages : 1, sizeof(*reasons));
	if (items && reasons)
		p->items = calloc(req->n_messages ? req->n_messages : 1, sizeof(*p->items));
	if (!reasons || (items && !p->items)) {
		free(reasons);
		spikehound__agent_request__free_unpacked(req, NULL);
		*why = NULL; /* out of memory */
		return NULL;
	}
	*why = agg_validate_request(req, now, &ing->opts.limits, reasons);
	if (*why) {
		free(reasons);
		spikehound__agent_request__free_unpacked(req, NULL);
		return NULL;
	}
	if (items) {
		p->n_items = req->n_messages;
		for (size_t i = 0; i < req->n_messages; i++) {
			Spikehound__AgentMessage *m = req->messages[i];

			if (m && m->boot_id)
				snprintf(p->items[i].boot_id, sizeof(p->items[i].boot_id), "%s",
					 m->boot_id);
			p->items[i].seq = m ? m->seq : 0;
			p->items[i].rejected = reasons[i];
			ing->messages++;
			if (reasons[i]) {
				count_reason(ing, reasons[i]);
				ing->rejected_msgs++;
			}
		}
	}
	free(reasons);
	return req;
}

/* restage_alone queues p as a batch of its own; takes ownership of p. */
static void restage_alone(struct agg_ingest *ing, struct pending *p)
{
	struct batch *b = batch_new(ing);
	Spikehound__AgentRequest *req = NULL;
	const char *why = NULL;

	if (b)
		req = decode_validate(ing, p, sh_now_wall_ns(), false, &why);
	if (!b || !req || batch_add(b, p) != 0) {
		reply_pending(ing, p, -ENOMEM, "out of memory");
		pending_free(p);
		batch_free(b);
		if (req)
			spikehound__agent_request__free_unpacked(req, NULL);
		return;
	}
	b->solo = true;
	p->hello_staged = false;
	stage_request(ing, b, p, req, p->received_ns);
	spikehound__agent_request__free_unpacked(req, NULL);
	if (ing->solo_tail)
		ing->solo_tail->next = b;
	else
		ing->solo_head = b;
	ing->solo_tail = b;
}

/* handle_request takes ownership of msg. */
static void handle_request(struct agg_ingest *ing, nng_msg *msg)
{
	int64_t now = sh_now_wall_ns();
	size_t len = nng_msg_len(msg);
	Spikehound__AgentRequest *req = NULL;
	const char *why = NULL;
	struct pending *p;

	ing->requests++;
	ing->bytes_in += len;
	if (len > ing->opts.max_request_bytes) {
		count_reason(ing, "oversized");
		ing->rejected_reqs++;
		reply_status(ing, msg, SPIKEHOUND__ACK__STATUS__REJECTED, "oversized", now);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		reply_status(ing, msg, SPIKEHOUND__ACK__STATUS__RETRY, "out of memory", now);
		return;
	}
	p->msg = msg;
	p->received_ns = now;
	req = decode_validate(ing, p, now, true, &why);
	if (!req) {
		p->msg = NULL;
		if (why) {
			count_reason(ing, why);
			ing->rejected_reqs++;
			reply_status(ing, msg, SPIKEHOUND__ACK__STATUS__REJECTED, why, now);
		} else {
			reply_status(ing, msg, SPIKEHOUND__ACK__STATUS__RETRY, "out of memory", now);
		}
		pending_free(p);
		return;
	}
	if ((!ing->filling && !(ing->filling = batch_new(ing))) ||
	    batch_add(ing->filling, p) != 0) {
		p->msg = NULL;
		reply_status(ing, msg, SPIKEHOUND__ACK__STATUS__RETRY, "out of memory", now);
		pending_free(p);
	} else {
		stage_request(ing, ing->filling, p, req, now);
	}
	spikehound__agent_request__free_unpacked(req, NULL);
}

static void recv_cb(uv_poll_t *h, int status, int events)
{
	struct agg_ingest *ing = h->data;
	int n = 0;

	if (ing->stopping)
		return;
	while (!batch_full(ing, ing->filling) && n < 256) {
		nng_msg *msg;
		int rv = nng_recvmsg(ing->sock, &msg, NNG_FLAG_NONBLOCK);

		if (rv == NNG_EAGAIN)
			break;
		if (rv != 0) {
			sh_warn("ingest: receive failed: %s", nng_strerror(rv));
			break;
		}
		handle_request(ing, msg);
		n++;
	}
	submit_batches(ing);
	/* more may be waiting: the descriptor stays readable, so the next
	 * loop iteration calls back again */
}

static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct agg_ingest *ing = arg;

	/* runs on an nng thread: touch only the atomic counter */
	if (ev == NNG_PIPE_EV_ADD_POST)
		atomic_fetch_add(&ing->agents_connected, 1);
	else if (ev == NNG_PIPE_EV_REM_POST)
		atomic_fetch_sub(&ing->agents_connected, 1);
}

void agg_ingest_opts_default(struct agg_ingest_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->writers = 2;
	o->max_request_bytes = 8 << 20;
	o->max_batch_requests = 2000;
	o->max_batch_bytes = 32 << 20;
	agg_limits_default(&o->limits);
}

static void build_copy_sql(struct agg_ingest *ing)
{
	char *s = ing->copy_sql[2];
	size_t n;

	snprintf(ing->copy_sql[0], sizeof(ing->copy_sql[0]), "COPY st_hello FROM STDIN");
	snprintf(ing->copy_sql[1], sizeof(ing->copy_sql[1]), "COPY st_msg FROM STDIN");
	n = (size_t)snprintf(s, sizeof(ing->copy_sql[2]),
			     "COPY st_summary (host_id, boot_id, seq, ts_start, ts_end, received_at,"
			     " dropped_before, health, m_time");
	for (size_t k = 0; k < sizeof(mcols) / sizeof(mcols[0]); k++)
		n += (size_t)snprintf(s + n, sizeof(ing->copy_sql[2]) - n, ", m_%s", mcols[k].name);
	snprintf(s + n, sizeof(ing->copy_sql[2]) - n,
		 ", stack_ids, stack_counts, proc_pids, proc_comms, proc_samples, samples_total,"
		 " histograms)"
		 " FROM STDIN");
	snprintf(ing->copy_sql[3], sizeof(ing->copy_sql[3]), "COPY st_proc FROM STDIN");
	/* named columns: spike_events grows columns ingest does not write
	 * (incident_id, set by the correlator) */
	snprintf(ing->copy_sql[4], sizeof(ing->copy_sql[4]),
		 "COPY st_event (host_id, boot_id, seq, ts, duration_ns, kind, cpu, victim_pid,"
		 " victim_tid, victim_comm, victim_cgroup, detail, evidence, received_at) FROM STDIN");
	snprintf(ing->copy_sql[5], sizeof(ing->copy_sql[5]), "COPY st_stack FROM STDIN");
	snprintf(ing->copy_sql[6], sizeof(ing->copy_sql[6]), "COPY st_hist FROM STDIN");
	snprintf(ing->copy_sql[7], sizeof(ing->copy_sql[7]), "%s", AGG_CAPTURE_COPY_SQL);
}

int agg_ingest_start(uv_loop_t *loop, const struct agg_ingest_opts *o, struct agg_ingest **out)
{
	struct agg_ingest *ing;
	int fd, rv, err = 0;
	char tls_err[300];

	ing = calloc(1, sizeof(*ing));
	if (!ing)
		return -ENOMEM;
	ing->loop = loop;
	ing->opts = *o;
	if (ing->opts.writers < 1)
		ing->opts.writers = 1;
	ing->started_ns = ing->last_log_ns = sh_now_wall_ns();
	build_copy_sql(ing);
	ing->writers = calloc((size_t)ing->opts.writers, sizeof(*ing->writers));
	ing->inflight = calloc((size_t)ing->opts.writers, sizeof(*ing->inflight));
	if (!ing->writers || !ing->inflight) {
		err = -ENOMEM;
		goto cleanup;
	}
	for (int i = 0; i < ing->opts.writers; i++) {
		char setup[sizeof(setup_sql) + sizeof(rollup_prepare_sql) + 64];

		/* each writer adds to its own kernel and label rollup rows (ROLLUP_SQL) */
		snprintf(setup, sizeof(setup), "%s%sSET spikehound.rollup_slot = '%d';", setup_sql,
			 rollup_prepare_sql, i);
		ing->writers[i] = agg_db_new(loop, o->dsn, "spikehound-ingest");
		if (!ing->writers[i] || agg_db_set_setup(ing->writers[i], setup) != 0) {
			err = -ENOMEM;
			goto cleanup;
		}
	}
	if ((rv = nng_rep0_open_raw(&ing->sock)) != 0) {
		sh_err("ingest: could not open socket: %s", nng_strerror(rv));
		err = -EIO;
		goto cleanup;
	}
	ing->sock_open = true;
	nng_socket_set_size(ing->sock, NNG_OPT_RECVMAXSZ, ing->opts.max_request_bytes * 2);
	nng_socket_set_int(ing->sock, NNG_OPT_RECVBUF, 1024);
	nng_socket_set_int(ing->sock, NNG_OPT_SENDBUF, 1024);
	nng_pipe_notify(ing->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, ing);
	nng_pipe_notify(ing->sock, NNG_PIPE_EV_REM_POST, pipe_cb, ing);
	if ((rv = sh_tls_listen(ing->sock, o->listen_url, o->tls, tls_err, sizeof(tls_err))) != 0) {
		sh_err("ingest: could not listen on \"%s\": %s", o->listen_url, tls_err);
		err = rv == NNG_EADDRINUSE ? -EADDRINUSE : -EINVAL;
		goto cleanup;
	}
	if ((rv = nng_socket_get_int(ing->sock, NNG_OPT_RECVFD, &fd)) != 0) {
		sh_err("ingest: no pollable receive descriptor: %s", nng_strerror(rv));
		err = -EIO;
		goto cleanup;
	}
	uv_poll_init(loop, &ing->recv_poll, fd);
	ing->recv_poll.data = ing;
	ing->open_handles++;
	set_recv_polling(ing, true);
	sh_info("ingest: listening on %s", o->listen_url);
	*out = ing;
	return 0;
cleanup:
	if (ing->sock_open)
		nng_close(ing->sock);
	for (int i = 0; ing->writers && i < ing->opts.writers; i++)
		agg_db_close(ing->writers[i]);
	free(ing->writers);
	free(ing->inflight);
	free(ing);
	return err;
}

static void stop_handle_closed_cb(uv_handle_t *h)
{
	struct agg_ingest *ing = h->data;
	void (*done)(void *) = ing->done_cb;
	void *arg = ing->done_arg;
	struct hello_seen *s, *tmp;

	if (--ing->open_handles > 0)
		return;
	HASH_ITER(hh, ing->seen, s, tmp)
	{
		HASH_DEL(ing->seen, s);
		free(s);
	}
	forget_stacks(ing);
	free(ing->writers);
	free(ing->inflight);
	free(ing);
	if (done)
		done(arg);
}

static void linger_cb(uv_timer_t *t)
{
	struct agg_ingest *ing = t->data;

	/* the last acks had their moment to leave: close */
	nng_close(ing->sock);
	ing->sock_open = false;
	for (int i = 0; i < ing->opts.writers; i++)
		agg_db_close(ing->writers[i]);
	uv_close((uv_handle_t *)&ing->linger, stop_handle_closed_cb);
	uv_close((uv_handle_t *)&ing->recv_poll, stop_handle_closed_cb);
}

static void maybe_finish_stop(struct agg_ingest *ing)
{
	if ((ing->filling && ing->filling->n) || ing->solo_head) {
		submit_batches(ing);
		if ((ing->filling && ing->filling->n) || ing->solo_head)
			return;
	}
	for (int i = 0; i < ing->opts.writers; i++)
		if (ing->inflight[i])
			return;
	if (uv_is_active((uv_handle_t *)&ing->linger) || uv_is_closing((uv_handle_t *)&ing->linger))
		return;
	batch_free(ing->filling);
	ing->filling = NULL;
	uv_timer_start(&ing->linger, linger_cb, 200, 0);
}

void agg_ingest_stop(struct agg_ingest *ing, void (*done_cb)(void *arg), void *arg)
{
	if (ing->stopping)
		return;
	ing->stopping = true;
	ing->done_cb = done_cb;
	ing->done_arg = arg;
	set_recv_polling(ing, false);
	uv_timer_init(ing->loop, &ing->linger);
	ing->linger.data = ing;
	ing->open_handles++;
	/* requests nng already queued for us are served: drain them */
	for (;;) {
		nng_msg *msg;

		if (nng_recvmsg(ing->sock, &msg, NNG_FLAG_NONBLOCK) != 0)
			break;
		handle_request(ing, msg);
	}
	sh_info("ingest: stopping: committing %zu pending requests",
		ing->filling ? ing->filling->n : (size_t)0);
	maybe_finish_stop(ing);
}

char *agg_ingest_stats_json(struct agg_ingest *ing)
{
	json_t *o, *r = json_object();
	char *s;

	for (int i = 0; i < MAX_REASONS && ing->reasons[i].reason; i++)
		json_object_set_new(r, ing->reasons[i].reason, json_integer((json_int_t)ing->reasons[i].n));
	o = json_pack("{sIsisIsIsIsIsIsIsIsIsIsIsfsfsfsfsosbsI}", "uptime_s",
		      (json_int_t)((sh_now_wall_ns() - ing->started_ns) / SH_NS_PER_SEC),
		      "agents_connected", atomic_load(&ing->agents_connected), "requests",
		      (json_int_t)ing->requests, "messages", (json_int_t)ing->messages, "stored",
		      (json_int_t)ing->stored, "rejected_messages", (json_int_t)ing->rejected_msgs,
		      "rejected_requests", (json_int_t)ing->rejected_reqs, "retries_sent",
		      (json_int_t)ing->retries, "batches", (json_int_t)ing->batches,
		      "batch_messages_max", (json_int_t)ing->batch_msgs_max, "bytes_in",
		      (json_int_t)ing->bytes_in, "reply_send_failures",
		      (json_int_t)ing->send_failures, "commit_ms_p50",
		      lat_quantile(ing->commit_lat, 0.5), "commit_ms_p99",
		      lat_quantile(ing->commit_lat, 0.99), "ack_ms_p50",
		      lat_quantile(ing->ack_lat, 0.5), "ack_ms_p99", lat_quantile(ing->ack_lat, 0.99),
		      "rejected_by_reason", r, "database_up",
		      (int)(ing->writers[0] && agg_db_ready(ing->writers[0])), "batch_mean_messages",
		      (json_int_t)(ing->batches ? (ing->stored + ing->rejected_msgs) / ing->batches : 0));
	if (!o)
		return NULL;
	json_object_set_new(o, "resends_in_same_batch", json_integer((json_int_t)ing->dup_in_batch));
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

void agg_ingest_log_stats(struct agg_ingest *ing)
{
	int64_t now = sh_now_wall_ns();
	double secs = (double)(now - ing->last_log_ns) / 1e9;
	uint64_t rejected = ing->rejected_msgs + ing->rejected_reqs;

	if (secs <= 0)
		secs = 1;
	sh_info("ingest: %d agents connected, %.1f requests/s, %.1f messages stored/s, "
		"%" PRIu64 " stored total, %" PRIu64 " rejected, %" PRIu64
		" retries, commit p50/p99 %.1f/%.1f ms, database %s",
		atomic_load(&ing->agents_connected),
		(double)(ing->requests - ing->last_log_requests) / secs,
		(double)(ing->stored - ing->last_log_stored) / secs, ing->stored, rejected,
		ing->retries, lat_quantile(ing->commit_lat, 0.5),
		lat_quantile(ing->commit_lat, 0.99),
		ing->writers[0] && agg_db_ready(ing->writers[0]) ? "up" : "DOWN");
	ing->last_log_ns = now;
	ing->last_log_requests = ing->requests;
	ing->last_log_stored = ing->stored;
}
