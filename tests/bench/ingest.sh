#!/usr/bin/env bash
# ingest.sh: the ingest benchmark runner. Starts a fresh spikehound-aggregator
# with an embedded PostgreSQL in a temp dir, drives it with bench_ingest in a
# few configurations, then runs the peer: pgbench inserting the same row
# shape (one summary row + 6 process rows per transaction) straight into the
# same cluster, so the database's own ceiling on this box is printed next to
# the aggregator's rate. Builds nothing.
#
# usage: tests/bench/ingest.sh [BUILD_DIR]     (default /work/main/build)
# environment: SH_BENCH_SECONDS (measured seconds per run, default 20),
#              SH_PG_BINDIR (default /usr/lib/postgresql/15/bin),
#              SH_BENCH_KEEP=1 keeps the temp dir (logs, cluster).
#
# Never fails on time: exits 0 when everything ran, 1 when something broke
# (the aggregator did not start or exited badly, a run failed, acks were
# rejected, the peer failed), 2 on bad usage.
set -u

BUILD=${1:-/work/main/build}
SECS=${SH_BENCH_SECONDS:-20}
PGBIN=${SH_PG_BINDIR:-/usr/lib/postgresql/15/bin}
AGG=$BUILD/aggregator/spikehound-aggregator
BENCH=$BUILD/tests/bench/bench_ingest

# label hosts threads batch: what each run simulates
CONFIGS=(
	"2000h-b1 2000 64 1"
	"2000h-b1-t256 2000 256 1"
	"2000h-b10 2000 64 10"
)

for f in "$AGG" "$BENCH" "$PGBIN/pgbench" "$PGBIN/psql"; do
	if [ ! -x "$f" ]; then
		echo "ingest.sh: \"$f\" is missing (build spikehound-aggregator and bench_ingest first)" >&2
		exit 2
	fi
done

TMP=$(mktemp -d /tmp/sh-bench-XXXXXX) || exit 1
chmod 755 "$TMP"
LOG=$TMP/aggregator.log
AGG_PID=
FAILED=0

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

# free_port prints a TCP port on 127.0.0.1 nobody listens on right now.
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

PORT=$(free_port) && HTTP_PORT=$(free_port) || { echo "ingest.sh: no free port" >&2; exit 1; }
URL=tcp://127.0.0.1:$PORT

echo "== ingest benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
echo "   load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$AGG" --data-dir "$TMP" --listen "$URL" --http "http://127.0.0.1:$HTTP_PORT" \
	--stats-interval 10s >"$LOG" 2>&1 &
AGG_PID=$!
for _ in $(seq 240); do
	grep -q " ready" "$LOG" 2>/dev/null && break
	kill -0 "$AGG_PID" 2>/dev/null || break
	sleep 0.25
done
if ! grep -q " ready" "$LOG" 2>/dev/null; then
	echo "ingest.sh: the aggregator did not start; its log:" >&2
	cat "$LOG" >&2
	exit 1
fi
PIDFILE=$TMP/pg/data/postmaster.pid
PG_PID=$(sed -n 1p "$PIDFILE")
PG_PORT=$(sed -n 4p "$PIDFILE")
PG_SOCK=$(sed -n 5p "$PIDFILE")
PSQL=("$PGBIN/psql" -X -q -At -h "$PG_SOCK" -p "$PG_PORT" -U spikehound -d spikehound)
echo "   aggregator pid $AGG_PID on $URL; PostgreSQL pid $PG_PID, socket $PG_SOCK"

# ---- the aggregator under simulated agents --------------------------------
SEED=$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ^ $$ ))
declare -A RES
for c in "${CONFIGS[@]}"; do
	set -- $c
	label=$1
	echo
	"$BENCH" --url "$URL" --hosts "$2" --threads "$3" --batch "$4" --seconds "$SECS" \
		--seed "$SEED" --agg-pid "$AGG_PID" --pg-pid "$PG_PID" --label "$label" \
		>"$TMP/$label.out" 2>&1
	rc=$?
	grep -v '^RESULT' "$TMP/$label.out"
	RES[$label]=$(grep '^RESULT' "$TMP/$label.out")
	if [ $rc -ne 0 ] || [ -z "${RES[$label]}" ]; then
		echo "ingest.sh: bench_ingest $label failed (exit $rc)" >&2
		FAILED=1
	fi
	if ! kill -0 "$AGG_PID" 2>/dev/null; then
		echo "ingest.sh: the aggregator died; its log:" >&2
		tail -20 "$LOG" >&2
		exit 1
	fi
done
echo
grep "ingest:" "$LOG" | tail -2 | sed 's/^/   aggregator: /'

# ---- the peer: pgbench, same row shape, same cluster ----------------------
# Per transaction: N summary rows built from the table's own columns (arrays
# of 10 per-second values, 20 stacks, 5 sampled processes) in one INSERT, and
# 6 process rows per summary (3 starts, 3 exits) in another; 8 clients. N=1
# is what one agent's request is worth; N=10 shows what batching buys the
# database itself.
# make_peer_script N prints the pgbench script.
make_peer_script() {
	"${PSQL[@]}" -F' ' -c "SELECT column_name, udt_name FROM information_schema.columns
		WHERE table_schema = 'public' AND table_name = 'summaries' ORDER BY ordinal_position" |
	awk -v seed="$RANDOM" -v nrows="$1" -v q="'" '
	function arr(n, kind,   s, i, v) {
		s = "{"
		for (i = 0; i < n; i++) {
			if (kind == "f") v = sprintf("%.2f", rand() * 100)
			else if (kind == "i") v = int(rand() * 1000000)
			else if (kind == "t") v = "\"2000-01-01 00:00:0" i "+00\""
			else v = "\"comm" i "\""
			s = s (i ? "," : "") v
		}
		return s "}"
	}
	BEGIN { srand(seed); host = "md5(:h::text || " q "h" q ")::uuid"; boot = "md5(:h::text || " q "b" q ")::uuid" }
	{
		col = $1; t = $2
		n = col ~ /^stack_/ ? 20 : (col ~ /^proc_/ ? 5 : 10)
		if (col == "host_id") v = host
		else if (col == "boot_id") v = boot
		else if (col == "seq") v = "SEQ"
		else if (col == "ts_start") v = "now() - interval " q "10 s" q
		else if (col == "ts_end" || col == "received_at") v = "now()"
		else if (t == "jsonb") v = q "{\"samples\":10012,\"samples_lost\":0,\"stack_errors\":3,\"user_stacks_depth1\":120,\"recorder_seconds\":28.5,\"recorder_bytes\":50331648,\"spool_dropped\":0,\"spool_bytes\":4096,\"events_suppressed\":0,\"agent_cpu_pct\":0.8,\"agent_rss_kb\":65536}" q
		else if (t == "_timestamptz") v = q arr(n, "t") q
		else if (t == "_float4" || t == "_float8") v = q arr(n, "f") q
		else if (t == "_int4" || t == "_int8") v = q arr(n, "i") q
		else if (t == "_text") v = q arr(n, "s") q
		else if (t == "int8" || t == "int4") v = "0"
		else next
		cols = cols (cols ? ", " : "") col
		vals = vals (vals ? ", " : "") v
	}
	END {
		print "\\set h random(1, 900000000000000)"
		print "BEGIN;"
		printf "INSERT INTO summaries (%s) VALUES", cols
		for (r = 0; r < nrows; r++) {
			row = vals
			sub(/SEQ/, ":h::bigint * 100 + " r, row)
			printf "%s (%s)", (r ? "," : ""), row
		}
		print ";"
		printf "INSERT INTO processes (host_id, boot_id, pid, start_time, ppid, uid, comm, exe, cmdline, cgroup, exit_time) VALUES"
		for (i = 0; i < 6 * nrows; i++)
			printf "%s (%s, %s, %d, now() - interval %s%d s%s, 1, 0, %spython3%s, %s/usr/bin/python3.11%s, %s/usr/bin/python3 /opt/app/worker.py --queue default --concurrency 4 --log-level info%s, %s/system.slice/app-worker.service%s, %s)", (i ? "," : ""), host, boot, 1000 + i, q, 5 + i, q, q, q, q, q, q, q, q, q, (i % 6 < 3 ? "NULL" : "now()")
		print ";"
		print "COMMIT;"
	}'
}

declare -A PEER_TPS PEER_CPU
PEERS="1 10"
for n in $PEERS; do
	label=peer-pgbench-b$n
	echo
	echo "$label: pgbench -M prepared -c 8 -j 2 -T $SECS, $n summary row(s) + $((6 * n)) process rows per transaction"
	if ! make_peer_script "$n" >"$TMP/$label.sql" || ! grep -q "INSERT INTO summaries" "$TMP/$label.sql"; then
		echo "ingest.sh: could not build the peer script from the summaries table" >&2
		FAILED=1
		continue
	fi
	"$PGBIN/pgbench" -n -M prepared -c 8 -j 2 -T "$SECS" -f "$TMP/$label.sql" \
		-h "$PG_SOCK" -p "$PG_PORT" -U spikehound spikehound >"$TMP/$label.out" 2>&1 &
	PGB_PID=$!
	# the client here is pgbench: account its CPU in the "aggregator" slot
	sleep 0.5
	"$BENCH" --observe --seconds $((SECS - 1)) --agg-pid "$PGB_PID" --pg-pid "$PG_PID" \
		--label "$label" >"$TMP/$label-cpu.out" 2>&1
	wait "$PGB_PID"
	rc=$?
	PEER_TPS[$n]=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$TMP/$label.out" | head -1)
	PEER_CPU[$n]=$(grep '^RESULT' "$TMP/$label-cpu.out" 2>/dev/null)
	grep -E "^(latency average|tps|number of failed)" "$TMP/$label.out" | sed 's/^/  /'
	sed -n 's/^  cpu.*: aggregator \([0-9]*\)%, postgres \([0-9]*\)%.*busy \([0-9]*\)%/  cpu: postgres \2%, pgbench \1%, machine busy \3%/p' \
		"$TMP/$label-cpu.out"
	if [ $rc -ne 0 ] || [ -z "${PEER_TPS[$n]}" ]; then
		echo "ingest.sh: pgbench failed (exit $rc):" >&2
		tail -5 "$TMP/$label.out" >&2
		FAILED=1
	fi
done

# ---- stop (the aggregator stops its PostgreSQL) ----------------------------
kill -TERM "$AGG_PID"
wait "$AGG_PID"
rc=$?
AGG_PID=
if [ $rc -ne 0 ]; then
	echo "ingest.sh: the aggregator exited with status $rc; its log:" >&2
	tail -20 "$LOG" >&2
	FAILED=1
fi

# ---- the table ---------------------------------------------------------------
field() { # field RESULT-line key
	local kv
	for kv in $1; do
		[ "${kv%%=*}" = "$2" ] && { echo "${kv#*=}"; return; }
	done
	echo "-"
}
echo
echo "== results ($SECS s per run, CPU in % of one core, $(nproc) cores)"
printf "%-16s %11s %9s %9s %9s %6s %6s %7s %6s %9s\n" config summaries/s rows/s ack_p50 ack_p99 agg% pg% client% other% us/summary
for c in "${CONFIGS[@]}"; do
	set -- $c
	r=${RES[$1]:-}
	printf "%-16s %11s %9s %7sms %7sms %6s %6s %7s %6s %9s\n" "$1" "$(field "$r" summaries_s)" \
		"$(field "$r" rows_s)" "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" \
		"$(field "$r" agg_cpu)" "$(field "$r" pg_cpu)" "$(field "$r" bench_cpu)" \
		"$(field "$r" other_cpu)" "$(awk -v a="$(field "$r" agg_us)" -v p="$(field "$r" pg_us)" \
		'BEGIN { print (a == "-" ? "-" : a + p) }')"
	rej=$(field "$r" rejected)
	if [ "$rej" != "-" ] && [ "$rej" != 0 ]; then
		echo "ingest.sh: $1: $rej rejected" >&2
		FAILED=1
	fi
done
for n in $PEERS; do
	t=${PEER_TPS[$n]:-}
	[ -n "$t" ] || continue
	r=${PEER_CPU[$n]:-}
	awk -v l="peer-pgbench-b$n" -v t="$t" -v n="$n" -v pg="$(field "$r" pg_cpu)" \
		-v cl="$(field "$r" agg_cpu)" -v busy="$(field "$r" busy_cpu)" 'BEGIN {
		us = (pg != "-" && t > 0) ? sprintf("%.0f", pg * 1e4 / (t * n)) : "-"
		other = (busy != "-" && pg != "-" && cl != "-") ? busy - pg - cl : "-"
		if (other != "-" && other < 0) other = 0
		printf "%-16s %11.0f %9.0f %9s %9s %6s %6s %7s %6s %9s\n", l, t * n, t * n * 7, "-", "-", "-", pg, cl, other, us
	}'
done
echo "(summaries/s of a peer = pgbench tx/s x summaries per tx; rows = 7 per summary;"
echo " client% is bench_ingest, or pgbench for the peers; other% is everything else on the machine;"
echo " us/summary = CPU of aggregator + postgres per stored summary, the figure least disturbed by other%)"
exit $FAILED
