#!/usr/bin/env bash
# fleet_report.sh: query-side benchmark at fleet scale. Starts a fresh
# spikehound-aggregator with an embedded PostgreSQL in a temp dir, loads
# with SQL (generate_series) what 10,000 hosts would have left after 30
# days, and times the HTTP API:
#
#   1. the kernel report (GET /api/kernels, sql/006_rollups.sql): 30 days of
#      rollups for 10,000 hosts on 3 kernel releases (a quarter of the hosts
#      of the oldest upgraded half-way), labels rack (100 values), cluster
#      (10) and role (3): 300 label sets; a runq histogram every host-day,
#      accounting and mmap_lock_wait spikes, 600 incidents with ranked
#      suspects; rows as ingest's two writers would leave them (two slots);
#      by kernel and by label, several runs each, p50 and max. Peer: counting the same month's spikes per kernel
#      and kind straight from spike_events (no rollups; and that still has
#      no host-hours and no histograms);
#   2. spike search (GET /api/spikes?at=T&window=10s): 10 million
#      spike_events rows for the 10,000 hosts over the 30 days (~77 events
#      in a 20 s window), 200 random T, p50/p99/max. Peer: pgbench running
#      the bare index range scan over the same kind of windows.
#
# usage: tests/bench/fleet_report.sh [BUILD_DIR]     (default /work/main/build)
# environment: SH_BENCH_HOSTS (10000), SH_BENCH_DAYS (30), SH_BENCH_EVENTS
#              (10000000), SH_BENCH_RUNS (7 reports of each kind),
#              SH_BENCH_SEARCHES (200), SH_PG_BINDIR, SH_BENCH_KEEP=1 keeps
#              the temp dir. As root (PostgreSQL runs as user spikehound).
#
# Prints figures; never fails on time: exits 1 only when something broke
# (the aggregator did not start, a load or a request failed), 2 on bad usage.
set -u

BUILD=${1:-/work/main/build}
HOSTS=${SH_BENCH_HOSTS:-10000}
DAYS=${SH_BENCH_DAYS:-30}
EVENTS=${SH_BENCH_EVENTS:-10000000}
RUNS=${SH_BENCH_RUNS:-7}
SEARCHES=${SH_BENCH_SEARCHES:-200}
PGBIN=${SH_PG_BINDIR:-/usr/lib/postgresql/15/bin}
AGG=$BUILD/aggregator/spikehound-aggregator

for f in "$AGG" "$PGBIN/psql" "$PGBIN/pgbench"; do
	if [ ! -x "$f" ]; then
		echo "fleet_report.sh: \"$f\" is missing (build spikehound-aggregator first)" >&2
		exit 2
	fi
done
command -v curl >/dev/null || { echo "fleet_report.sh: curl is missing" >&2; exit 2; }

TMP=$(mktemp -d /tmp/sh-fleetbench-XXXXXX) || exit 1
chmod 755 "$TMP"
LOG=$TMP/aggregator.log
AGG_PID=

cleanup() {
	if [ -n "$AGG_PID" ] && kill -0 "$AGG_PID" 2>/dev/null; then
		kill -TERM "$AGG_PID" 2>/dev/null
		wait "$AGG_PID" 2>/dev/null
	fi
	if [ "${SH_BENCH_KEEP:-0}" = 1 ]; then
		echo "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

PORT=$(free_port) && HTTP_PORT=$(free_port) || { echo "fleet_report.sh: no free port" >&2; exit 1; }
API=http://127.0.0.1:$HTTP_PORT

echo "== fleet query benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
echo "   $HOSTS hosts, $DAYS days, $EVENTS spike events; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$AGG" --data-dir "$TMP" --listen "tcp://127.0.0.1:$PORT" --http "$API" \
	--retention-days $((DAYS + 30)) --stats-interval 600s >"$LOG" 2>&1 &
AGG_PID=$!
for _ in $(seq 240); do
	grep -q " ready" "$LOG" 2>/dev/null && break
	kill -0 "$AGG_PID" 2>/dev/null || break
	sleep 0.25
done
if ! grep -q " ready" "$LOG" 2>/dev/null; then
	echo "fleet_report.sh: the aggregator did not start; its log:" >&2
	cat "$LOG" >&2
	exit 1
fi
PIDFILE=$TMP/pg/data/postmaster.pid
PG_PORT=$(sed -n 4p "$PIDFILE")
PG_SOCK=$(sed -n 5p "$PIDFILE")
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U spikehound -d spikehound)

# sql runs SQL (a string) and exits on failure.
sql() {
	if ! "${PSQL[@]}" -c "$1" >"$TMP/psql.out" 2>&1; then
		echo "fleet_report.sh: SQL failed:" >&2
		cat "$TMP/psql.out" >&2
		exit 1
	fi
	cat "$TMP/psql.out"
}

# stats "label" < numbers (seconds): prints n, p50, p99 and max in ms.
stats() {
	sort -g | awk -v l="$1" '{ v[NR] = $1 * 1000 } END {
		if (NR == 0) { printf "   %-34s no samples\n", l; exit }
		p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
		printf "   %-34s n=%-4d p50 %8.1f ms   p99 %8.1f ms   max %8.1f ms\n", l, NR, p50, p99, v[NR]
	}'
}

# ---- 1. rollups of a fleet-month ----------------------------------------------
echo
echo "-- loading $DAYS days x $HOSTS hosts of rollups"
t0=$(date +%s.%N)
sql "
CREATE TEMP TABLE b_host AS
SELECT i, md5('bench-host-' || i)::uuid AS host_id, md5('bench-boot-' || i)::uuid AS boot_id,
       (ARRAY['6.1.0-13-amd64', '6.1.0-17-amd64', '6.1.0-18-amd64'])[1 + i % 3] AS k,
       format('r%s', lpad((i % 100)::text, 2, '0')) AS rack
FROM generate_series(0, $HOSTS - 1) i;
INSERT INTO hosts (host_id, hostname, labels, last_boot_id)
SELECT host_id, format('sim-%s', lpad(i::text, 5, '0')),
       jsonb_build_object('rack', rack, 'cluster', 'c' || (i % 10), 'role', (ARRAY['web', 'db', 'cache'])[1 + i % 3]),
       boot_id FROM b_host;
INSERT INTO boots (host_id, boot_id, kernel_release) SELECT host_id, boot_id, k FROM b_host;
-- host-days; a quarter of the 6.1.0-13 hosts run 6.1.0-18 from day DAYS/2 on
CREATE TEMP TABLE b_hd AS
SELECT h.i, h.host_id, current_date - d AS day, d,
       CASE WHEN h.k = '6.1.0-13-amd64' AND h.i % 4 = 0 AND d < $DAYS / 2 THEN '6.1.0-18-amd64' ELSE h.k END AS k
FROM b_host h, generate_series(0, $DAYS - 1) d;
INSERT INTO rollup_host_day (day, host_id, kernel_release, covered_s, summaries)
SELECT day, host_id, k, CASE WHEN d = 0 THEN 3600 * extract(hour FROM now()) ELSE 86400 END,
       CASE WHEN d = 0 THEN 360 * extract(hour FROM now()) ELSE 8640 END FROM b_hd;
-- per host-day: a runq histogram and spikes, accounting anomalies on 1 in
-- 10 host-days, mmap_lock_wait spikes on 1 in 50 hosts
CREATE TEMP TABLE b_kind AS
SELECT day, host_id, k, 'runq' AS kind, (i + d) % 5 + CASE WHEN k = '6.1.0-18-amd64' THEN 6 ELSE 2 END AS events,
       8.6e7::float8 AS hc, 8.6e7 * 40000::float8 AS hs, 2e7::float8 AS b03, 3e7::float8 AS b04,
       2e7::float8 AS b05, 1e7::float8 AS b06, 4e6::float8 AS b07, 1e6::float8 AS b08, 2e5::float8 AS b09,
       4e4::float8 AS b10, 8e3::float8 AS b11, 1.6e3::float8 AS b12, 3e2::float8 AS b13,
       CASE WHEN k = '6.1.0-18-amd64' THEN 90 ELSE 30 END::float8 AS b14
FROM b_hd
UNION ALL
SELECT day, host_id, k, 'accounting', 1, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL FROM b_hd WHERE (i + d) % 10 = 0
UNION ALL
SELECT day, host_id, k, 'mmap_lock_wait', 1 + (i + d) % 7, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL FROM b_hd WHERE i % 50 = 1;
-- the label sets, and the rows per label set, kernel and day, in two writer slots
CREATE TEMP TABLE b_lab AS
SELECT host_id, hashtextextended(labels::text, 0) AS l, labels FROM hosts;
INSERT INTO rollup_labelsets (labels_id, labels) SELECT DISTINCT ON (l) l, labels FROM b_lab ORDER BY l;
INSERT INTO rollup_labels_day (day, labels_id, kernel_release, slot, covered_s, summaries)
SELECT d.day, l.l, d.kernel_release, s, sum(d.covered_s) / 2, sum(d.summaries) / 2
FROM rollup_host_day d JOIN b_lab l USING (host_id), generate_series(0, 1) s GROUP BY 1, 2, 3, 4;
INSERT INTO rollup_labels_day_kind (day, labels_id, kernel_release, kind, slot, events, hist_count,
       hist_sum_ns, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14)
SELECT k.day, l.l, k.k, k.kind, s, sum(events) / 2, sum(hc) / 2, sum(hs) / 2, sum(b03) / 2,
       sum(b04) / 2, sum(b05) / 2, sum(b06) / 2, sum(b07) / 2, sum(b08) / 2, sum(b09) / 2,
       sum(b10) / 2, sum(b11) / 2, sum(b12) / 2, sum(b13) / 2, sum(b14) / 2
FROM b_kind k JOIN b_lab l USING (host_id), generate_series(0, 1) s GROUP BY 1, 2, 3, 4, 5;
-- kernel-hours: the host-days spread over their hours, in two writer slots
INSERT INTO rollup_kernel_hour (hour, kernel_release, slot, covered_s, summaries)
SELECT (day::timestamp AT TIME ZONE 'UTC') + h * interval '1 hour', kernel_release, s,
       sum(covered_s) / 48, sum(summaries) / 48
FROM rollup_host_day, generate_series(0, 23) h, generate_series(0, 1) s GROUP BY 1, 2, 3;
INSERT INTO rollup_kernel_hour_kind (hour, kernel_release, kind, slot, events, hist_count,
       hist_sum_ns, b03, b04, b05, b06, b07, b08, b09, b10, b11, b12, b13, b14)
SELECT (day::timestamp AT TIME ZONE 'UTC') + h * interval '1 hour', k, kind, s,
       sum(events) / 48, sum(hc) / 48, sum(hs) / 48, sum(b03) / 48, sum(b04) / 48, sum(b05) / 48,
       sum(b06) / 48, sum(b07) / 48, sum(b08) / 48, sum(b09) / 48, sum(b10) / 48, sum(b11) / 48,
       sum(b12) / 48, sum(b13) / 48, sum(b14) / 48
FROM b_kind, generate_series(0, 23) h, generate_series(0, 1) s GROUP BY 1, 2, 3, 4;
-- 600 incidents of 20 hosts each, suspects ranked (and left alone by the correlator)
INSERT INTO incidents (incident_id, kind, type, first_ts, last_ts, hosts, events, suspects_at)
SELECT 5000000 + n, 'runq', 'burst', now() - (n * interval '71 minutes'),
       now() - (n * interval '71 minutes') + interval '2 minutes', 20, 40, now() + interval '1 day'
FROM generate_series(1, 600) n;
INSERT INTO incident_suspects (incident_id, rank, feature, spiking_with, spiking_total, others_with,
       others_total, p_value, log10_p, score)
SELECT 5000000 + n, 1, (ARRAY['kernel:6.1.0-18-amd64', 'cmdline:atop -R -w /var/log/atop/atop_# #',
       'started:ss', 'label:rack=r07'])[1 + n % 4], 20, 20, 5, $HOSTS, 1e-20, -20, 20
FROM generate_series(1, 600) n;
INSERT INTO incident_hosts (incident_id, host_id, events, first_ts, last_ts)
SELECT 5000000 + n, md5('bench-host-' || ((n * 37 + j * 101) % $HOSTS))::uuid, 2,
       now() - (n * interval '71 minutes'), now() - (n * interval '71 minutes') + interval '2 minutes'
FROM generate_series(1, 600) n, generate_series(0, 19) j ON CONFLICT DO NOTHING;
" >/dev/null
sql "VACUUM ANALYZE hosts, boots, rollup_host_day, rollup_kernel_hour, rollup_kernel_hour_kind,
       rollup_labelsets, rollup_labels_day, rollup_labels_day_kind, incidents, incident_suspects,
       incident_hosts" >/dev/null
t1=$(date +%s.%N)
echo "   loaded in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s: $(sql "SELECT format('%s host-day, %s kernel-hour, %s kernel-hour-kind, %s label-set-day, %s label-set-day-kind rows (%s label sets), %s MB',
	(SELECT count(*) FROM rollup_host_day), (SELECT count(*) FROM rollup_kernel_hour),
	(SELECT count(*) FROM rollup_kernel_hour_kind), (SELECT count(*) FROM rollup_labels_day),
	(SELECT count(*) FROM rollup_labels_day_kind), (SELECT count(*) FROM rollup_labelsets),
	(SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['rollup_host_day', 'rollup_kernel_hour',
	 'rollup_kernel_hour_kind', 'rollup_labelsets', 'rollup_labels_day', 'rollup_labels_day_kind']::regclass[]) c) / 1048576)::bigint)")"

# time_get "label" URL: RUNS requests (one warm-up first), their stats.
time_get() {
	local label=$1 url=$2 code
	code=$(curl -s -o "$TMP/answer" -w '%{http_code}' "$url")
	if [ "$code" != 200 ]; then
		echo "fleet_report.sh: $url answered $code: $(head -c 300 "$TMP/answer")" >&2
		exit 1
	fi
	for _ in $(seq "$RUNS"); do
		curl -s -o /dev/null -w '%{time_total}\n' "$url"
	done | stats "$label"
}

echo
echo "-- the kernel report over HTTP ($RUNS runs each after one warm-up)"
time_get "by kernel, since 30d" "$API/api/kernels?since=${DAYS}d&baseline=6.1.0-13-amd64"
jq -r '"     (" + (.cohorts | length | tostring) + " cohorts, " + (.comparisons | tostring) + " comparisons, significant: " + ([.significant[] | .cohort + " " + .kind + " " + .direction] | join(", ")) + ")"' "$TMP/answer" 2>/dev/null
time_get "by kernel, since 1d" "$API/api/kernels?since=1d&baseline=6.1.0-13-amd64"
time_get "by label rack, since 30d" "$API/api/kernels?since=${DAYS}d&by=label:rack"
jq -r '"     (" + (.cohorts | length | tostring) + " cohorts, " + (.comparisons | tostring) + " comparisons)"' "$TMP/answer" 2>/dev/null
time_get "by label role, since 30d" "$API/api/kernels?since=${DAYS}d&by=label:role"
time_get "by kernel, since 30d, HTML page" "$API/api/kernels?since=${DAYS}d&baseline=6.1.0-13-amd64&format=html"

# ---- 2. spike events ----------------------------------------------------------
echo
echo "-- loading $EVENTS spike events for $HOSTS hosts over $DAYS days"
t0=$(date +%s.%N)
# daily partitions for the whole month; the correlator's queue trigger off
# for the load (it would queue every row), on again after
sql "SELECT sh_ensure_partitions($DAYS + 1, 3, $DAYS + 30);
DO \$\$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'spike_events_correlate') THEN
    ALTER TABLE spike_events DISABLE TRIGGER spike_events_correlate;
  END IF;
END \$\$;" >/dev/null
PER_DAY=$((EVENTS / DAYS))
for d in $(seq 0 $((DAYS - 1))); do
	sql "INSERT INTO spike_events (host_id, boot_id, seq, ts, duration_ns, kind, cpu, victim_pid,
	       victim_tid, victim_comm, detail)
	SELECT md5('bench-host-' || (n % $HOSTS))::uuid, md5('bench-boot-' || (n % $HOSTS))::uuid,
	       1000000 + $d * $PER_DAY + n,
	       date_trunc('day', now()) - interval '$d days' + (n::float8 / $PER_DAY) * interval '1 day',
	       1000000 + (n * 7919) % 50000000,
	       (ARRAY['runq', 'mmap_lock_wait', 'syscall', 'reclaim', 'softirq', 'cpu_stall', 'accounting', 'probe'])[1 + (n * 31) % 8],
	       (n % 64), 1000 + n % 30000, 1000 + n % 30000, 'worker', ''
	FROM generate_series(0::bigint, $PER_DAY - 1) n" >/dev/null
	printf '.'
done
echo
sql "DO \$\$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'spike_events_correlate') THEN
    ALTER TABLE spike_events ENABLE TRIGGER spike_events_correlate;
  END IF;
END \$\$;" >/dev/null
sql "VACUUM ANALYZE spike_events" >/dev/null
t1=$(date +%s.%N)
echo "   loaded in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s: $(sql "SELECT format('%s rows, %s MB with indexes',
	(SELECT count(*) FROM spike_events),
	(SELECT (sum(pg_total_relation_size(c.oid)) / 1048576)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	 WHERE i.inhparent = 'spike_events'::regclass))")"

NOW_S=$(date +%s)
FROM_S=$((NOW_S - DAYS * 86400 + 60))
echo
echo "-- spike search over HTTP: $SEARCHES random T in the $DAYS days, window 10s (T +/- 10 s)"
curl -s -o "$TMP/answer" "$API/api/spikes?at=@$((NOW_S - 86400))&window=10s"
jq -r '"     (a sample answer: " + (.spikes | length | tostring) + " spikes)"' "$TMP/answer" 2>/dev/null
for _ in $(seq "$SEARCHES"); do
	t=$((FROM_S + (RANDOM * 32768 + RANDOM) % (NOW_S - FROM_S - 120)))
	curl -s -o /dev/null -w '%{time_total}\n' "$API/api/spikes?at=@$t&window=10s"
done | stats "GET /api/spikes window 10s"

# ---- the peers -------------------------------------------------------------------
echo
echo "-- peers (same run, same cluster)"
for _ in 1 2 3; do
	s=$(date +%s.%N)
	sql "SELECT b.kernel_release, e.kind, count(*) FROM spike_events e JOIN boots b USING (host_id, boot_id)
	     WHERE e.ts >= now() - interval '$DAYS days' GROUP BY 1, 2" >/dev/null
	e=$(date +%s.%N)
	awk -v a="$s" -v b="$e" 'BEGIN { print b - a }'
done | stats "raw count per kernel+kind, psql"
cat >"$TMP/search.sql" <<EOF
\set t random($FROM_S, $((NOW_S - 120)))
SELECT * FROM spike_events WHERE ts >= to_timestamp(:t) - interval '10 s' AND ts <= to_timestamp(:t) + interval '10 s' ORDER BY ts LIMIT 1001;
EOF
"$PGBIN/pgbench" -n -c 1 -T 10 -f "$TMP/search.sql" -h "$PG_SOCK" -p "$PG_PORT" -U spikehound spikehound \
	>"$TMP/pgbench.out" 2>&1 || { echo "fleet_report.sh: pgbench failed:" >&2; tail -5 "$TMP/pgbench.out" >&2; exit 1; }
echo "   pgbench, bare range scan (1 client, 10 s): $(sed -n 's/^latency average = \(.*\)$/\1 average/p' "$TMP/pgbench.out"), $(sed -n 's/^tps = \([0-9.]*\).*/\1 tps/p' "$TMP/pgbench.out")"

echo
echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg) (figures move with other work on the machine)"
kill -TERM "$AGG_PID"
wait "$AGG_PID"
rc=$?
AGG_PID=
if [ $rc -ne 0 ]; then
	echo "fleet_report.sh: the aggregator exited with status $rc; its log:" >&2
	tail -20 "$LOG" >&2
	exit 1
fi
exit 0
