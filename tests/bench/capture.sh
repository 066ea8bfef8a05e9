#!/usr/bin/env bash
# capture.sh: how long a capture takes, from the trigger to the payload
# complete in PostgreSQL, with the real aggregator (embedded PostgreSQL in a
# temp dir) and fleet-sim's hosts answering on the control plane.
#
# For 1 host and for 20 hosts (each its own fleet-sim, its own label):
# SH_BENCH_REPS (20) captures of the last SH_BENCH_WINDOW s (10, ending at
# the trigger: at=now, after=0) asked with GET /api/capture/new?label=...;
# latency = from the route's answer to the first GET /api/capture?id= that
# shows every host complete (polled every 10 ms). Also the server's own
# figure (the latest capture_hosts.completed_at minus captures.requested_at)
# and the size: compressed bytes per host per second of recording (and per
# CPU-second), raw (serialized) bytes, chunks. The peer, from the same run:
# the data plane's ack round trip of fleet-sim's summaries and events
# (rtt_avg/rtt_max in its totals), which every chunk also pays.
#
# What a capture waits for: the agent takes it 300 ms after the window's end
# (records reach its recorder within that), then its chunks are acked one
# request (up to --batch 20 of 256 KiB, 4 MiB) at a time through the
# aggregator's group commit; the last chunk's transaction assembles the
# payload and checks its SHA-256. fleet-sim takes its hosts' captures one
# after the other on one thread (a real fleet takes them in parallel).
#
# usage: tests/bench/capture.sh [BUILD_DIR]     (default /work/main/build)
# environment: SH_BENCH_REPS (20), SH_BENCH_WINDOW (seconds, 10), SH_BENCH_CHUNK
#              (fleet-sim --capture-chunk, 256KiB), SH_BENCH_KEEP=1 keeps the
#              temp dir. As root (PostgreSQL runs as user spikehound).
#
# Prints figures; never fails on time: exits 1 only when something broke
# (the aggregator did not start, a capture failed or never completed), 2 on
# bad usage. Goal (issue 6): p50 under 1 s, p99 under 3 s.
set -u

BUILD=${1:-/work/main/build}
REPS=${SH_BENCH_REPS:-20}
WINDOW=${SH_BENCH_WINDOW:-10}
CHUNK=${SH_BENCH_CHUNK:-256KiB}
PGBIN=${SH_PG_BINDIR:-/usr/lib/postgresql/15/bin}
AGG=$BUILD/aggregator/spikehound-aggregator
SIM=$BUILD/deploy/fleet-sim/fleet-sim

for f in "$AGG" "$SIM" "$PGBIN/psql"; do
	if [ ! -x "$f" ]; then
		echo "capture.sh: \"$f\" is missing (build spikehound-aggregator and fleet-sim first)" >&2
		exit 2
	fi
done
command -v python3 >/dev/null || { echo "capture.sh: python3 is missing" >&2; exit 2; }

TMP=$(mktemp -d /tmp/sh-capbench-XXXXXX) || exit 1
chmod 755 "$TMP"
LOG=$TMP/aggregator.log
AGG_PID=
SIM_PID=

stop_pid() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
cleanup() {
	stop_pid "$SIM_PID"
	stop_pid "$AGG_PID"
	if [ "${SH_BENCH_KEEP:-0}" = 1 ]; then
		echo "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
die() {
	echo "capture.sh: $*" >&2
	[ -f "$LOG" ] && tail -n 20 "$LOG" >&2
	exit 1
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PORT=$(free_port) && HTTP_PORT=$(free_port) && CTL_PORT=$(free_port) || die "no free port"
API=http://127.0.0.1:$HTTP_PORT

echo "== capture benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
echo "   $REPS captures of the last ${WINDOW}s per configuration, chunks of $CHUNK;" \
	"load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$AGG" --data-dir "$TMP" --listen "tcp://127.0.0.1:$PORT" --http "$API" \
	--control-listen "tcp://127.0.0.1:$CTL_PORT" --set capture_auto_min=off \
	--stats-interval 600s >"$LOG" 2>&1 &
AGG_PID=$!
for _ in $(seq 240); do
	grep -q " ready" "$LOG" 2>/dev/null && break
	kill -0 "$AGG_PID" 2>/dev/null || break
	sleep 0.25
done
grep -q " ready" "$LOG" 2>/dev/null || die "the aggregator did not start"
PIDFILE=$TMP/pg/data/postmaster.pid
PSQL=("$PGBIN/psql" -X -q -At -F '|' -v ON_ERROR_STOP=1 -h "$(sed -n 5p "$PIDFILE")"
	-p "$(sed -n 4p "$PIDFILE")" -U spikehound -d spikehound)
sql() { "${PSQL[@]}" -c "$1" || die "SQL failed: $1"; }

# run_config NAME HOSTS: a fleet of HOSTS hosts labelled cluster=NAME, REPS
# captures of it; appends its row to $TMP/rows.
run_config() {
	local name=$1 hosts=$2 n
	cat >"$TMP/$name.scn" <<EOF
[fleet]
hosts = $hosts
clusters = $name
noise = 20
EOF
	"$SIM" --aggregator "tcp://127.0.0.1:$PORT" --control "tcp://127.0.0.1:$CTL_PORT" \
		--scenario "$TMP/$name.scn" --seed "$hosts" --capture-chunk "$CHUNK" \
		--progress 0 --drain 10s >"$TMP/$name.totals" 2>"$TMP/$name.sim.log" &
	SIM_PID=$!
	# every host heard from, and the window's worth of history recorded
	for _ in $(seq 600); do
		n=$(sql "SELECT count(*) FROM hosts WHERE labels->>'cluster' = '$name'")
		[ "$n" -ge "$hosts" ] && break
		kill -0 "$SIM_PID" 2>/dev/null || die "fleet-sim ended early ($TMP/$name.sim.log)"
		sleep 0.1
	done
	[ "$n" -ge "$hosts" ] || die "fleet-sim's $hosts hosts did not show up"
	sleep "$WINDOW"
	python3 - "$API" "$name" "$hosts" "$REPS" "${WINDOW}s" >"$TMP/$name.lat" 2>"$TMP/$name.err" <<'EOF' || die "$name: $(tail -n 3 "$TMP/$name.err")"
import json, sys, time, urllib.request
api, name, hosts, reps, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def get(path):
    with urllib.request.urlopen(api + path, timeout=10) as r:
        return json.load(r)
for rep in range(reps):
    ans = get("/api/capture/new?label=cluster=%s&at=now&before=%s&after=0" % (name, window))
    t1 = time.monotonic()
    cid = ans["capture_id"]
    assert ans["hosts"] == hosts, ans
    while True:
        c = get("/api/capture?id=" + cid)
        st = [h["status"] for h in c["hosts"]]
        if all(s == "complete" for s in st):
            break
        bad = [(h["hostname"], h["status"], h["reason"]) for h in c["hosts"]
               if h["status"] in ("failed", "expired")]
        if bad:
            sys.exit("capture %s: %s" % (cid, bad))
        if time.monotonic() - t1 > 60:
            sys.exit("capture %s not complete after 60 s: %s" % (cid, st))
        time.sleep(0.01)
    print(cid, "%.6f" % (time.monotonic() - t1))
    time.sleep(1.0)
EOF
	stop_pid "$SIM_PID"
	SIM_PID=
	local ids
	ids=$(cut -d' ' -f1 "$TMP/$name.lat" | sed "s/.*/'&'/" | paste -sd, -)
	# server side: the last host's completed_at minus requested_at, per capture
	sql "SELECT extract(epoch FROM max(h.completed_at) - c.requested_at)
		FROM captures c JOIN capture_hosts h USING (capture_id)
		WHERE c.capture_id IN ($ids) GROUP BY c.capture_id, c.requested_at" >"$TMP/$name.srv"
	local size
	size=$(sql "SELECT round(avg(h.compressed_bytes / w.s)), round(avg(h.compressed_bytes / w.s / o.cpu_count)),
			round(avg(h.raw_bytes / w.s)), round(avg(h.total_chunks), 1), sum(o.cpu_count) / count(DISTINCT c.capture_id)
		FROM captures c JOIN capture_hosts h USING (capture_id) JOIN hosts o USING (host_id),
		LATERAL (SELECT extract(epoch FROM c.to_ts - c.from_ts) AS s) w
		WHERE c.capture_id IN ($ids)")
	python3 - "$name" "$hosts" "$TMP/$name.lat" "$TMP/$name.srv" "$size" "$TMP/$name.totals" >>"$TMP/rows" <<'EOF'
import sys
name, hosts, lat, srv, size, totals = sys.argv[1:]
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int((len(v) - 1) * p + 0.5))]
a = [float(l.split()[1]) * 1e3 for l in open(lat)]
b = [float(l) * 1e3 for l in open(srv) if l.strip()]
bps, bpcs, raw, chunks, cpus = size.split("|")
t = dict(l.split()[:2] for l in open(totals) if len(l.split()) >= 2)
print("%-9s %5d %5s %8.0f %8.0f %8.0f %8.0f %8.0f %11s %9s %10s %7s   %s/%s ms" % (
    "%s host%s" % (hosts, "" if hosts == "1" else "s"), len(a), cpus, pct(a, .5), pct(a, .99),
    max(a), pct(b, .5), pct(b, .99), bps, bpcs, raw, chunks,
    t.get("rtt_avg_ms", "-"), t.get("rtt_max_ms", "-")))
EOF
}

run_config bench1 1
run_config bench20 20

echo
echo "   latency: from the /api/capture/new answer to every host complete (client, polled),"
echo "   and the server's own (latest completed_at - requested_at); size per host per second"
echo "   of recording; peer: fleet-sim's data-plane ack round trip (avg/max) in the same run"
echo
printf '%-9s %5s %5s %8s %8s %8s %8s %8s %11s %9s %10s %7s   %s\n' config reps cpus \
	p50_ms p99_ms max_ms srv_p50 srv_p99 bytes/host/s B/cpu/s raw/host/s chunks "peer: ack rtt avg/max"
cat "$TMP/rows"
echo
echo "   goal: p50 < 1000 ms, p99 < 3000 ms; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
