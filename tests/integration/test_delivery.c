/* test_delivery.c: reliable delivery end to end. An agent (the real spool
 * and sender of agent_core) sends at least 10,000 messages to the real
 * aggregator while the aggregator is killed with SIGKILL twice and
 * PostgreSQL is restarted once. Afterwards the database must hold every
 * message exactly once and the spool must be empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sender.h"
#include "spikehound.pb-c.h"
#include "spool.h"
#include "support.h"

#define NS 1000000000LL
#define COUNT 10500
#define RATE 1000 /* messages per second */

static char dsn[1024], dir[256], logpath[300], url[64], host_id[40], boot_id[40];
static pid_t agg = -1;
static struct agent_spool *spool;
static atomic_int produced;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void random_uuid(char *out, bool dashed)
{
	unsigned char b[16];
	FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");

	if (dashed && f && fgets(out, 40, f)) {
		out[strcspn(out, "\n")] = '\0';
		fclose(f);
		return;
	}
	if (f)
		fclose(f);
	for (int i = 0; i < 16; i++)
		b[i] = (unsigned char)(rand() & 0xff);
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static void fill_hello_cb(void *arg, Spikehound__Hello *h)
{
	h->host_id = host_id;
	h->boot_id = boot_id;
	h->hostname = "delivery-test";
	h->kernel_release = "6.18.0-delivery";
	h->cpu_count = 2;
}

static void start_aggregator(void)
{
	char *argv[] = { SH_AGG_BIN, "--db", dsn, "--listen", url, "--data-dir", dir,
			 "--stats-interval", "2s", "--http", "http://127.0.0.1:0", NULL };
	off_t before = 0;
	FILE *f = fopen(logpath, "r");

	if (f) {
		fseek(f, 0, SEEK_END);
		before = ftell(f);
		fclose(f);
	}
	(void)before;
	agg = sht_spawn(argv, logpath);
	assert_true(agg > 0);
}

static void *producer(void *arg)
{
	int64_t t0 = now_ns();

	for (int i = 0; i < COUNT; i++) {
		Spikehound__AgentMessage m = SPIKEHOUND__AGENT_MESSAGE__INIT;
		Spikehound__Summary s = SPIKEHOUND__SUMMARY__INIT;
		Spikehound__MetricSecond ms = SPIKEHOUND__METRIC_SECOND__INIT, *msp = &ms;
		uint8_t buf[512];
		uint64_t seq;
		size_t len;
		int64_t now = now_ns(), due = t0 + (int64_t)i * NS / RATE;

		if (due > now)
			usleep((useconds_t)((due - now) / 1000));
		if (agent_spool_next_seq(spool, boot_id, &seq) != 0)
			abort();
		ms.time_ns = now - NS;
		ms.cpu_sys_pct = (float)(i % 100);
		ms.dentry_negative = seq;
		s.start_ns = now - NS;
		s.end_ns = now;
		s.metrics = &msp;
		s.n_metrics = 1;
		m.host_id = host_id;
		m.boot_id = boot_id;
		m.seq = seq;
		m.created_ns = now;
		m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY;
		m.summary = &s;
		len = spikehound__agent_message__pack(&m, buf);
		if (agent_spool_append(spool, AGENT_SPOOL_SUMMARY, boot_id, seq, buf, len) != 0)
			abort();
		atomic_store(&produced, i + 1);
	}
	return NULL;
}

static int restart_postgres(void)
{
	char fixture_dir[1024], cmd[2300];
	const char *f = getenv("SH_TEST_DSN_FILE");

	snprintf(fixture_dir, sizeof(fixture_dir), "%s", f);
	snprintf(cmd, sizeof(cmd), "sh '%s' restart '%s'", SH_PG_FIXTURE, dirname(fixture_dir));
	return system(cmd);
}

static void test_delivery_through_crashes(void **state)
{
	struct agent_sender_opts so = { 0 };
	struct agent_sender *sender = NULL;
	struct agent_sender_stats st;
	pthread_t th;
	char *addrs[1] = { url }, spooldir[300], sql[512];
	int64_t t0;
	int rv, step = 0;

	rv = sht_fresh_db("delivery", dsn, sizeof(dsn));
	if (rv == SHT_SKIP)
		skip();
	assert_int_equal(rv, 0);
	assert_int_equal(sht_mkdtemp("sh-delivery-", dir, sizeof(dir)), 0);
	snprintf(logpath, sizeof(logpath), "%s/aggregator.log", dir);
	snprintf(spooldir, sizeof(spooldir), "%s/spool", dir);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", sht_free_port());
	srand((unsigned)getpid());
	random_uuid(host_id, false);
	random_uuid(boot_id, true);

	start_aggregator();
	assert_int_equal(sht_wait_log(logpath, "ready", 30000), 0);
	/* fsync off: this measures the protocol, not the disk */
	assert_int_equal(agent_spool_open(spooldir, 512 << 20, false, &spool), 0);
	so.addrs = addrs;
	so.n_addrs = 1;
	so.spool = spool;
	so.fill_hello = fill_hello_cb;
	so.reply_timeout_ms = 3000;
	so.backoff_max_ms = 1000;
	assert_int_equal(agent_sender_start(&sender, &so), 0);
	assert_int_equal(pthread_create(&th, NULL, producer, NULL), 0);

	t0 = now_ns();
	for (;;) {
		int64_t el = (now_ns() - t0) / (NS / 10); /* tenths of a second */

		if (step == 0 && el >= 25) {
			printf("t=%.1fs: SIGKILL aggregator (%d produced)\n", el / 10.0,
			       atomic_load(&produced));
			sht_stop(agg, SIGKILL, 5000);
			step++;
		} else if (step == 1 && el >= 35) {
			printf("t=%.1fs: aggregator restarted\n", el / 10.0);
			start_aggregator();
			step++;
		} else if (step == 2 && el >= 55) {
			printf("t=%.1fs: restarting PostgreSQL (%d produced)\n", el / 10.0,
			       atomic_load(&produced));
			assert_int_equal(restart_postgres(), 0);
			step++;
		} else if (step == 3 && el >= 80) {
			printf("t=%.1fs: SIGKILL aggregator again (%d produced)\n", el / 10.0,
			       atomic_load(&produced));
			sht_stop(agg, SIGKILL, 5000);
			step++;
		} else if (step == 4 && el >= 90) {
			printf("t=%.1fs: aggregator restarted\n", el / 10.0);
			start_aggregator();
			step++;
		} else if (step == 5 && atomic_load(&produced) == COUNT && agent_spool_count(spool) == 0) {
			printf("t=%.1fs: all %d messages acknowledged\n", el / 10.0, COUNT);
			break;
		}
		if (el > 1500)
			fail_msg("not delivered after 150 s: %zu messages still spooled",
				 agent_spool_count(spool));
		usleep(50 * 1000);
	}
	pthread_join(th, NULL);
	agent_sender_get_stats(sender, &st);
	printf("sender: %llu requests, %llu messages sent (resends included), %llu acked, "
	       "%llu rejected, %llu retries, %llu timeouts\n",
	       (unsigned long long)st.requests, (unsigned long long)st.sent,
	       (unsigned long long)st.acked, (unsigned long long)st.rejected,
	       (unsigned long long)st.retries, (unsigned long long)st.timeouts);
	agent_sender_stop(sender);
	assert_int_equal(st.rejected, 0);
	assert_int_equal(agent_spool_dropped_total(spool), 0);
	assert_int_equal(agent_spool_count(spool), 0);
	agent_spool_close(spool);
	{
		DIR *d = opendir(spooldir);
		struct dirent *e;
		int msgs = 0;

		assert_non_null(d);
		while ((e = readdir(d)) != NULL)
			if (strstr(e->d_name, ".msg"))
				msgs++;
		closedir(d);
		assert_int_equal(msgs, 0);
	}
	/* every message exactly once */
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM summaries WHERE host_id = '%s'", host_id);
	assert_int_equal(sht_query_i64(dsn, sql), COUNT);
	snprintf(sql, sizeof(sql), "SELECT count(DISTINCT seq) FROM summaries WHERE host_id = '%s'",
		 host_id);
	assert_int_equal(sht_query_i64(dsn, sql), COUNT);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM summaries WHERE host_id = '%s' AND m_dentry_negative[1] = seq",
		 host_id);
	assert_int_equal(sht_query_i64(dsn, sql), COUNT);
	printf("database: %d summaries, %d distinct seqs, payloads match\n", COUNT, COUNT);
	assert_int_equal(WEXITSTATUS(sht_stop(agg, SIGTERM, 30000)), 0);
	sht_rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delivery_through_crashes),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
