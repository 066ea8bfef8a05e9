/* test_correlate.c: the correlator (aggregator/correlate.c) on a real loop
 * against a real PostgreSQL (the "pg" fixture). A fleet of 40 hosts is
 * written with SQL: summaries and processes everywhere (node_exporter on
 * every host: the decoy), a burst of runq spikes on 5 hosts whose clocks
 * are skewed by up to 5 s (backup-agent runs on them only and is named in
 * the events' evidence), a periodic mmap_lock_wait spike every 600 s on 10
 * hosts with different phases (atop -R runs there and on 2 quiet hosts),
 * and background noise. The correlator must find exactly two incidents
 * with the right type, hosts and #1 suspect, leave the noise alone, and
 * add a sixth host's late event to the burst. Works in a database of its
 * own, dropped at the end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <uv.h>

#include "correlate.h"
#include "migrate.h"

static char admin_dsn[1024], dsn[1200], dbname[64];
static PGconn *conn;

static bool read_dsn(void)
{
	const char *path = getenv("SH_TEST_DSN_FILE");
	FILE *f;

	if (!path || !*path) {
		printf("SKIP: SH_TEST_DSN_FILE is not set (run through ctest: fixture \"pg\")\n");
		return false;
	}
	if (!(f = fopen(path, "r"))) {
		printf("SKIP: no PostgreSQL fixture: cannot open \"%s\": %s\n", path,
		       strerror(errno));
		return false;
	}
	if (!fgets(admin_dsn, sizeof(admin_dsn), f))
		admin_dsn[0] = '\0';
	fclose(f);
	admin_dsn[strcspn(admin_dsn, "\n")] = '\0';
	if (!admin_dsn[0]) {
		printf("SKIP: \"%s\" is empty\n", path);
		return false;
	}
	return true;
}

static PGconn *connect_db(const char *db)
{
	const char *keys[] = {"dbname", "dbname", NULL};
	const char *vals[] = {admin_dsn, db, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("could not connect to \"%s\": %s", db, PQerrorMessage(c));
	return c;
}

static void exec_ok(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		fail_msg("\"%.200s\" failed: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}

/* query_text runs a query returning one value (NULL: "") into a static
 * buffer. */
static const char *query_text(const char *sql)
{
	static char buf[4096];
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		fail_msg("\"%.200s\" failed: %s", sql, PQresultErrorMessage(res));
	snprintf(buf, sizeof(buf), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return buf;
}

static long query_long(const char *sql)
{
	return strtol(query_text(sql), NULL, 10);
}

static double query_double(const char *sql)
{
	return strtod(query_text(sql), NULL);
}

/* The fleet. Host i: host_id md5('host' || i), boot md5('boot' || i),
 * hostname sim-NN. Times are relative to t0, three hours ago. */
static const char fleet_sql[] =
	"CREATE TEMP TABLE t AS SELECT date_trunc('hour', now()) - interval '3 hours' AS t0;"
	"INSERT INTO hosts (host_id, hostname, labels, clock_skew_ms)"
	" SELECT md5('host' || i)::uuid, 'sim-' || lpad(i::text, 2, '0'),"
	"  jsonb_build_object('rack', 'r' || (i % 4), 'role', 'web'),"
	"  CASE i WHEN 2 THEN 5000 WHEN 3 THEN -3000 ELSE ((i * 37) % 19 - 9) * 50 END"
	" FROM generate_series(0, 39) i;"
	"INSERT INTO boots (host_id, boot_id, kernel_release)"
	" SELECT md5('host' || i)::uuid, md5('boot' || i)::uuid,"
	"  CASE WHEN i >= 30 THEN '6.1.0-21-amd64' ELSE '6.1.0-18-amd64' END"
	" FROM generate_series(0, 39) i;"
	"INSERT INTO summaries (host_id, boot_id, seq, ts_start, ts_end, m_time)"
	" SELECT md5('host' || i)::uuid, md5('boot' || i)::uuid, k,"
	"  t0 + (k - 6) * interval '10 minutes', t0 + (k - 5) * interval '10 minutes', '{}'"
	" FROM t, generate_series(0, 39) i, generate_series(0, 30) k;"
	"INSERT INTO processes (host_id, boot_id, pid, start_time, comm, exe, cmdline)"
	" SELECT md5('host' || i)::uuid, md5('boot' || i)::uuid, p.pid, t0 - interval '2 days',"
	"  p.comm, p.exe, p.cmdline FROM t, generate_series(0, 39) i, (VALUES"
	"  (1, 'systemd', '/usr/lib/systemd/systemd', '/sbin/init splash'),"
	"  (812, 'node_exporter', '/usr/bin/node_exporter',"
	"   '/usr/bin/node_exporter --web.listen-address=:9100')) p(pid, comm, exe, cmdline);"
	"INSERT INTO processes (host_id, boot_id, pid, start_time, comm, exe, cmdline)"
	" SELECT md5('host' || i)::uuid, md5('boot' || i)::uuid, 4242, t0 - interval '1 day',"
	"  'backup-agent', '/opt/backup/backup-agent', '/opt/backup/backup-agent --full --threads 8'"
	" FROM t, generate_series(0, 5) i;"
	"INSERT INTO processes (host_id, boot_id, pid, start_time, comm, exe, cmdline)"
	" SELECT md5('host' || i)::uuid, md5('boot' || i)::uuid, 900, t0 - interval '1 day',"
	"  'atop', '/usr/bin/atop', 'atop -R -w /var/log/atop/atop_20261122 600'"
	" FROM t, (SELECT generate_series(10, 19) UNION ALL VALUES (30), (31)) AS h(i);"
	/* tar started 2 s before the burst on its hosts (host clock) */
	"INSERT INTO processes (host_id, boot_id, pid, start_time, comm, exe, cmdline, exit_time)"
	" SELECT h.host_id, md5('boot' || i)::uuid, 5150,"
	"  t0 + interval '30 minutes' - interval '2 seconds' + h.clock_skew_ms * interval '1 millisecond',"
	"  'tar', '/usr/bin/tar', 'tar czf /backup/db.tgz /var/lib/db',"
	"  t0 + interval '30 minutes' + interval '5 seconds' + h.clock_skew_ms * interval '1 millisecond'"
	" FROM t, generate_series(0, 4) i JOIN hosts h ON h.host_id = md5('host' || i)::uuid;"
	/* the burst: true times within 1.2 s, host clocks skewed (host 2 by
	 * +5 s, host 3 by -3 s); host 5 is delivered late (below) */
	"INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, victim_pid,"
	" victim_comm, evidence)"
	" SELECT h.host_id, md5('boot' || i)::uuid, 100000 + i,"
	"  t0 + interval '30 minutes' + i * interval '300 milliseconds'"
	"  + h.clock_skew_ms * interval '1 millisecond', 40000000, 'runq', 777, 'redis-server',"
	"  '{\"culprits\": [{\"pid\": 4242, \"comm\": \"backup-agent\", \"role\": \"ran_instead\"}]}'"
	" FROM t, generate_series(0, 4) i JOIN hosts h ON h.host_id = md5('host' || i)::uuid;"
	/* the train: every 600 s +/- 0.3 s on hosts 10..19, phase 47 s apart,
	 * two events per occurrence on even hosts, host 12 misses one */
	"INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, victim_pid,"
	" victim_comm, evidence)"
	" SELECT md5('host' || i)::uuid, md5('boot' || i)::uuid, 200000 + k * 10 + j,"
	"  t0 + interval '5 minutes' + (i - 10) * interval '47 seconds' + k * interval '600 seconds'"
	"  + ((i * k * 7919) % 600 / 1000.0 - 0.3) * interval '1 second'"
	"  + j * interval '200 milliseconds' + h.clock_skew_ms * interval '1 millisecond',"
	"  120000000, 'mmap_lock_wait', 555, 'redis-server',"
	"  '{\"culprits\": [{\"pid\": 900, \"comm\": \"atop\", \"role\": \"holder\"}]}'"
	" FROM t, generate_series(10, 19) i, generate_series(0, 11) k, generate_series(0, 1) j,"
	"  hosts h WHERE h.host_id = md5('host' || i)::uuid AND (j = 0 OR i % 2 = 0)"
	"  AND NOT (i = 12 AND k = 5);"
	/* a kernel bug: hosts 32..35 (kernel 6.1.0-21) report accounting
	 * anomalies at random times, 8 each; no other host has any */
	"SELECT setseed(0.17);"
	"INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, victim_pid,"
	" victim_comm, evidence)"
	" SELECT md5('host' || i)::uuid, md5('boot' || i)::uuid, 400000 + k,"
	"  t0 + random() * interval '3 hours', 1000000000, 'accounting', 2020, 'redis-server', '{}'"
	" FROM t, generate_series(32, 35) i, generate_series(0, 7) k;"
	/* noise: 40 events of random kinds on random hosts over 3 hours */
	"SELECT setseed(0.42);"
	"INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, victim_pid,"
	" victim_comm, evidence)"
	" SELECT md5('host' || x.i)::uuid, md5('boot' || x.i)::uuid, 300000 + n,"
	"  t0 + x.r * interval '3 hours', 20000000, x.kind, 4321, 'postgres',"
	"  '{\"culprits\": [{\"pid\": 33, \"comm\": \"kworker/0:1\", \"role\": \"ran_instead\"}]}'"
	" FROM t, (SELECT n, floor(random() * 40)::int AS i, random() AS r,"
	"  (ARRAY['runq', 'syscall', 'reclaim', 'softirq', 'mmap_lock_wait'])"
	"  [1 + floor(random() * 5)::int] AS kind FROM generate_series(0, 39) n) x;";

static const char late_sql[] =
	"INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, victim_pid,"
	" victim_comm, evidence)"
	" SELECT h.host_id, md5('boot' || 5)::uuid, 100005,"
	"  t0 + interval '30 minutes' + interval '1500 milliseconds'"
	"  + h.clock_skew_ms * interval '1 millisecond', 40000000, 'runq', 777, 'redis-server',"
	"  '{\"culprits\": [{\"pid\": 4242, \"comm\": \"backup-agent\", \"role\": \"ran_instead\"}]}'"
	" FROM t, hosts h WHERE h.host_id = md5('host' || 5)::uuid";

struct run {
	uv_loop_t loop;
	uv_timer_t deadline;
	struct agg_correlate *c;
	int cycles, failures, step;
	bool stopped, timed_out;
	/* feed, when set, writes more rows while the correlator runs: called
	 * whenever it is idle; returns false when it has nothing more */
	bool (*feed)(int step);
};

static void stopped_cb(void *arg)
{
	struct run *r = arg;

	r->stopped = true;
	uv_close((uv_handle_t *)&r->deadline, NULL);
}

static void cycle_cb(void *arg, const struct agg_correlate_cycle *cy)
{
	struct run *r = arg;

	r->cycles++;
	if (cy->status != 0)
		r->failures++;
	/* done when a cycle found nothing to do (and nothing more comes) */
	if (cy->claimed == 0 && cy->suspects_ranked == 0 && !cy->more && !cy->suspects_more &&
	    r->c) {
		struct agg_correlate *c = r->c;

		if (r->feed && r->feed(r->step++)) {
			agg_correlate_kick(c);
			return;
		}
		r->c = NULL;
		agg_correlate_stop(c, stopped_cb, r);
	}
}

static void deadline_cb(uv_timer_t *t)
{
	struct run *r = t->data;

	r->timed_out = true;
	if (r->c) {
		struct agg_correlate *c = r->c;

		r->c = NULL;
		agg_correlate_stop(c, stopped_cb, r);
	}
}

/* correlate runs a correlator until it is idle and feed (may be NULL) has
 * nothing more. */
static void correlate(bool (*feed)(int step))
{
	struct agg_correlate_opts o;
	struct run r;

	memset(&r, 0, sizeof(r));
	r.feed = feed;
	assert_int_equal(uv_loop_init(&r.loop), 0);
	agg_correlate_opts_default(&o);
	o.dsn = dsn;
	o.interval_ns = 50 * 1000000LL;
	o.suspects_interval_ns = 0;
	o.cycle_cb = cycle_cb;
	o.cycle_arg = &r;
	assert_int_equal(agg_correlate_start(&r.loop, &o, &r.c), 0);
	uv_timer_init(&r.loop, &r.deadline);
	r.deadline.data = &r;
	uv_timer_start(&r.deadline, deadline_cb, 60000, 0);
	uv_run(&r.loop, UV_RUN_DEFAULT);
	assert_true(r.stopped);
	assert_false(r.timed_out);
	assert_int_equal(r.failures, 0);
	assert_true(r.cycles >= 2);
	assert_int_equal(uv_loop_close(&r.loop), 0);
}

static int setup(void **state)
{
	char err[512];
	int applied;

	snprintf(dbname, sizeof(dbname), "spikehound_test_correlate_%d", (int)getpid());
	{
		PGconn *admin = connect_db("spikehound");
		char sql[160];

		exec_ok(admin, "SET client_min_messages = warning");
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", dbname);
		exec_ok(admin, sql);
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
		exec_ok(admin, sql);
		PQfinish(admin);
	}
	snprintf(dsn, sizeof(dsn), "%s dbname=%s", admin_dsn, dbname);
	conn = connect_db(dbname);
	if (agg_migrate(conn, err, sizeof(err), &applied) != 0)
		fail_msg("migrations failed: %s", err);
	if (agg_partitions_ensure(conn, 2, 3, 14, err, sizeof(err)) < 0)
		fail_msg("partitions failed: %s", err);
	exec_ok(conn, "SET client_min_messages = warning");
	return 0;
}

static int teardown(void **state)
{
	PGconn *admin;
	char sql[160];

	PQfinish(conn);
	conn = NULL;
	if (getenv("SH_TEST_KEEP_DB")) {
		printf("keeping database %s\n", dbname);
		return 0;
	}
	admin = connect_db("spikehound");
	exec_ok(admin, "SET client_min_messages = warning");
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
	exec_ok(admin, sql);
	PQfinish(admin);
	return 0;
}

/* feed_live delivers a softirq train every 300 s on hosts 20..24 one event
 * at a time, in time order, as agents would send it live: each host's
 * period shows at a different cycle. */
static bool feed_live(int step)
{
	char sql[1024];
	int k = step / 5, i = 20 + step % 5;

	if (k >= 5)
		return false;
	snprintf(
		sql, sizeof(sql),
		"INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, victim_pid,"
		" victim_comm, evidence)"
		" SELECT md5('host%d')::uuid, md5('boot%d')::uuid, %d, t0 + interval '10 minutes'"
		" + %d * interval '31 seconds' + %d * interval '300 seconds'"
		" + %d * interval '100 milliseconds', 5000000, 'softirq', 0, 'swapper/1',"
		" '{\"culprits\": [{\"pid\": 666, \"comm\": \"ss\", \"role\": \"stall_stack\"}]}'"
		" FROM t",
		i, i, 500000 + k, i - 20, k, (i * k) % 5);
	exec_ok(conn, sql);
	return true;
}

static void test_cmdline_norm(void **state)
{
	assert_string_equal(query_text("SELECT sh_cmdline_norm("
				       "' atop  -R -w /var/log/atop/atop_20261122\t600 ')"),
			    "atop -R -w /var/log/atop/atop_# #");
	assert_int_equal(
		query_long("SELECT octet_length(sh_cmdline_norm(repeat('\xc3\xa9', 100)))"), 120);
}

static void test_incidents(void **state)
{
	char sql[512];
	long burst, per;

	exec_ok(conn, fleet_sql);
	assert_int_equal(query_long("SELECT count(*) FROM correlate_queue"), 255);
	correlate(NULL);

	assert_int_equal(query_long("SELECT count(*) FROM correlate_queue"), 0);
	/* exactly three incidents: noise forms none */
	assert_int_equal(query_long("SELECT count(*) FROM incidents"), 3);

	burst = query_long(
		"SELECT incident_id FROM incidents WHERE type = 'burst' AND kind = 'runq'");
	assert_true(burst > 0);
	snprintf(sql, sizeof(sql),
		 "SELECT string_agg(h.hostname, ',' ORDER BY h.hostname) FROM incident_hosts x"
		 " JOIN hosts h USING (host_id) WHERE x.incident_id = %ld",
		 burst);
	assert_string_equal(query_text(sql), "sim-00,sim-01,sim-02,sim-03,sim-04");
	snprintf(sql, sizeof(sql),
		 "SELECT hosts || '/' || events FROM incidents WHERE incident_id = %ld", burst);
	assert_string_equal(query_text(sql), "5/5");

	per = query_long("SELECT incident_id FROM incidents WHERE type = 'periodic'"
			 " AND kind = 'mmap_lock_wait'");
	assert_true(per > 0);
	snprintf(sql, sizeof(sql),
		 "SELECT string_agg(h.hostname, ',' ORDER BY h.hostname) FROM incident_hosts x"
		 " JOIN hosts h USING (host_id) WHERE x.incident_id = %ld",
		 per);
	assert_string_equal(query_text(sql), "sim-10,sim-11,sim-12,sim-13,sim-14,sim-15,sim-16,"
					     "sim-17,sim-18,sim-19");
	snprintf(sql, sizeof(sql),
		 "SELECT abs(period_s - 600) FROM incidents WHERE incident_id = %ld", per);
	assert_true(query_double(sql) < 0.5);
	snprintf(sql, sizeof(sql), "SELECT period_jitter_s FROM incidents WHERE incident_id = %ld",
		 per);
	assert_true(query_double(sql) < 1);
	/* every event of the train is in it (two per occurrence on even hosts) */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM spike_events WHERE seq BETWEEN 200000 AND 299999"
		 " AND incident_id IS DISTINCT FROM %ld",
		 per);
	assert_int_equal(query_long(sql), 0);
	/* noise stays out (one may fall on a train slot by chance) */
	assert_true(
		query_long("SELECT count(*) FROM spike_events WHERE seq BETWEEN 300000 AND 399999"
			   " AND incident_id IS NOT NULL") <= 1);

	/* suspects: the culprit first, with its numbers; never the decoy */
	snprintf(
		sql, sizeof(sql),
		"SELECT feature || ' ' || spiking_with || '/' || spiking_total || ' ' || others_with"
		" || '/' || others_total || ' ' || evidence_events || '/' || evidence_total"
		" || ' ' || evidence_role FROM incident_suspects WHERE incident_id = %ld AND rank = 1",
		burst);
	assert_string_equal(
		query_text(sql),
		"cmdline:/opt/backup/backup-agent --full --threads # 5/5 1/35 5/5 ran_instead");
	/* the process started at the spike, counted in spike vs ordinary windows */
	snprintf(sql, sizeof(sql),
		 "SELECT basis || ' ' || spiking_with || '/' || spiking_total || ' ' || others_with"
		 " || ' ' || (others_total >= 20) FROM incident_suspects"
		 " WHERE incident_id = %ld AND feature = 'started:tar'",
		 burst);
	assert_string_equal(query_text(sql), "windows 5/5 0 true");
	snprintf(
		sql, sizeof(sql),
		"SELECT feature || ' ' || spiking_with || '/' || spiking_total || ' ' || others_with"
		" || '/' || others_total || ' ' || evidence_role FROM incident_suspects"
		" WHERE incident_id = %ld AND rank = 1",
		per);
	assert_string_equal(query_text(sql),
			    "cmdline:atop -R -w /var/log/atop/atop_# # 10/10 2/30 holder");
	snprintf(sql, sizeof(sql),
		 "SELECT log10_p < -7 AND p_value < 1e-7 FROM incident_suspects"
		 " WHERE incident_id = %ld AND rank = 1",
		 per);
	assert_string_equal(query_text(sql), "t");
	assert_int_equal(query_long("SELECT count(*) FROM incident_suspects"
				    " WHERE rank = 1 AND feature LIKE '%node_exporter%'"),
			 0);
	assert_int_equal(query_long("SELECT count(*) FROM incidents WHERE suspects_at IS NULL"), 0);

	/* the kernel bug: one recurring incident, the kernel its #1 suspect */
	assert_string_equal(query_text("SELECT string_agg(h.hostname, ',' ORDER BY h.hostname)"
				       " FROM incidents i JOIN incident_hosts x USING (incident_id)"
				       " JOIN hosts h USING (host_id)"
				       " WHERE i.type = 'recurring' AND i.kind = 'accounting'"),
			    "sim-32,sim-33,sim-34,sim-35");
	assert_string_equal(
		query_text("SELECT feature || ' ' || spiking_with || '/' || spiking_total"
			   " || ' ' || others_with || '/' || others_total"
			   " FROM incident_suspects s JOIN incidents i USING (incident_id)"
			   " WHERE i.type = 'recurring' AND s.rank = 1"),
		"kernel:6.1.0-21-amd64 4/4 6/36");
	assert_int_equal(query_long("SELECT count(*) FROM spike_events WHERE kind = 'accounting'"
				    " AND incident_id IS NULL"),
			 0);

	/* a late event of a sixth host joins the burst */
	exec_ok(conn,
		"INSERT INTO processes (host_id, boot_id, pid, start_time, comm)"
		" SELECT md5('host5')::uuid, md5('boot5')::uuid, 31337, now() - interval '1 day',"
		" 'sshd' ON CONFLICT DO NOTHING");
	exec_ok(conn, late_sql);
	correlate(NULL);
	assert_int_equal(query_long("SELECT count(*) FROM incidents"), 3);
	snprintf(sql, sizeof(sql),
		 "SELECT hosts || '/' || events FROM incidents WHERE incident_id = %ld", burst);
	assert_string_equal(query_text(sql), "6/6");
	snprintf(sql, sizeof(sql),
		 "SELECT spiking_with || '/' || spiking_total FROM incident_suspects"
		 " WHERE incident_id = %ld AND rank = 1 AND feature LIKE '%%backup-agent%%'",
		 burst);
	assert_string_equal(query_text(sql), "6/6");

	/* a period that shows host by host, live: one incident of 5 hosts */
	correlate(feed_live);
	assert_int_equal(query_long("SELECT count(*) FROM incidents"), 4);
	assert_string_equal(query_text("SELECT string_agg(h.hostname, ',' ORDER BY h.hostname)"
				       " FROM incidents i JOIN incident_hosts x USING (incident_id)"
				       " JOIN hosts h USING (host_id)"
				       " WHERE i.type = 'periodic' AND i.kind = 'softirq'"),
			    "sim-20,sim-21,sim-22,sim-23,sim-24");
	assert_true(
		query_double("SELECT abs(period_s - 300) FROM incidents WHERE kind = 'softirq'") <
		0.5);
	assert_int_equal(query_long("SELECT count(*) FROM spike_events WHERE seq >= 500000"
				    " AND seq < 600000 AND incident_id IS NULL"),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmdline_norm),
		cmocka_unit_test(test_incidents),
	};

	if (!read_dsn())
		return 77;
	return cmocka_run_group_tests(tests, setup, teardown);
}
