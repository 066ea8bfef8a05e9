# lib.sh: shared harness for incident reproducers (sourced by scenario_*.sh).
# A scenario starts the real aggregator (on the "pg" fixture's PostgreSQL,
# in a database of its own) and the real agent, makes the kernel misbehave,
# and asserts what a user would see. Everything it starts is stopped by the
# EXIT trap; it exits 77 (SKIP) with the reason when it cannot run here.
#
# Environment (set by ctest): SH_BUILD (build dir), SH_TEST_DSN_FILE.
# After sh_start: $SH_DSN, $SH_DIR (temp dir), $SH_HTTP (query API URL),
# $SH_CLI (spikehound CLI binary), $SH_AGENT_LOG, $SH_AGG_LOG.

set -u
SH_PIDS=""
SH_DIR=$(mktemp -d /tmp/sh-scenario.XXXXXX)
SH_CLEANUP_CMDS=""

sh_skip() { echo "SKIP: $*"; exit 77; }
sh_fail() { echo "FAIL: $*"; sh_dump_logs; exit 1; }
sh_log() { echo "[$(date +%T.%3N)] $*"; }

sh_dump_logs() {
	for f in "$SH_DIR"/*.log; do
		[ -f "$f" ] || continue
		echo "--- last lines of $f"
		tail -n 30 "$f"
	done
}

# sh_on_exit CMD: run CMD (a string) at exit, before the daemons stop.
sh_on_exit() { SH_CLEANUP_CMDS="$SH_CLEANUP_CMDS
$1"; }

sh_cleanup() {
	set +e
	eval "$SH_CLEANUP_CMDS"
	for pid in $SH_PIDS; do kill -TERM "$pid" 2>/dev/null; done
	for pid in $SH_PIDS; do
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	done
	rm -rf "$SH_DIR"
}
trap sh_cleanup EXIT

sh_require_root_bpf() {
	[ "$(id -u)" -eq 0 ] || sh_skip "needs root (BPF, /proc of other users, cgroups)"
	[ -r /sys/kernel/btf/vmlinux ] || sh_skip "kernel has no BTF (/sys/kernel/btf/vmlinux)"
}

# sh_fresh_db NAME: a new database on the fixture cluster; sets SH_DSN.
sh_fresh_db() {
	[ -n "${SH_TEST_DSN_FILE:-}" ] && [ -f "$SH_TEST_DSN_FILE" ] ||
		sh_skip "no PostgreSQL fixture (SH_TEST_DSN_FILE)"
	local base db
	base=$(cat "$SH_TEST_DSN_FILE")
	db="$1_$$"
	psql "$base" -qAt -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null ||
		sh_fail "could not create database $db"
	SH_DSN="$base dbname=$db"
	sh_on_exit "psql '$base' -qAt -c 'DROP DATABASE IF EXISTS $db' >/dev/null 2>&1"
}

sh_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# sh_start [agent flags...]: aggregator + agent (1 s interval so summaries
# arrive fast; every detector on with the defaults unless flags say).
# $SH_AGG_ARGS (optional) adds aggregator flags, e.g. "--set capture_auto_min=2ms".
sh_start() {
	local port hport
	sh_fresh_db "scenario"
	port=$(sh_free_port)
	hport=$(sh_free_port)
	SH_HTTP="http://127.0.0.1:$hport"
	SH_CLI="$SH_BUILD/aggregator/spikehound"
	SH_AGG_LOG="$SH_DIR/aggregator.log"
	SH_AGENT_LOG="$SH_DIR/agent.log"
	"$SH_BUILD/aggregator/spikehound-aggregator" --db "$SH_DSN" --listen "tcp://127.0.0.1:$port" \
		--http "$SH_HTTP" --data-dir "$SH_DIR/agg" --stats-interval 5s ${SH_AGG_ARGS:-} >"$SH_AGG_LOG" 2>&1 &
	SH_PIDS="$SH_PIDS $!"
	for _ in $(seq 1 300); do grep -q ' ready' "$SH_AGG_LOG" && break; sleep 0.1; done
	grep -q ' ready' "$SH_AGG_LOG" || sh_fail "aggregator did not start"
	"$SH_BUILD/node-agent/spikehound-agent" run --aggregator "tcp://127.0.0.1:$port" \
		--interval 2s --spool-dir "$SH_DIR/spool" --spool-fsync false "$@" >"$SH_AGENT_LOG" 2>&1 &
	SH_AGENT_PID=$!
	SH_PIDS="$SH_AGENT_PID $SH_PIDS"
	for _ in $(seq 1 300); do grep -q 'sending every' "$SH_AGENT_LOG" && break; sleep 0.1; done
	grep -q 'sending every' "$SH_AGENT_LOG" || sh_fail "agent did not start"
	sleep 1
}

# sh_sql SQL: one query on the scenario's database, unaligned output.
sh_sql() { psql "$SH_DSN" -qAt -F '|' -c "$1"; }

# sh_wait_sql SQL SECONDS: wait until SQL returns a non-empty, non-zero value.
sh_wait_sql() {
	local v
	for _ in $(seq 1 $(($2 * 4))); do
		v=$(sh_sql "$1" 2>/dev/null)
		[ -n "$v" ] && [ "$v" != "0" ] && { echo "$v"; return 0; }
		sleep 0.25
	done
	echo "${v:-}"
	return 1
}
