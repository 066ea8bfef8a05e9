# lib.sh: shared harness for incident reproducers (sourced by scenario_*.sh).
# A scenario starts the real aggregator (on the "pg" fixture's PostgreSQL,
# in a database of its own) and the real agent, makes the kernel misbehave,
# and asserts what a user would see. Everything it starts is stopped by the
# EXIT trap; it exits 77 (SKIP) with the reason when it cannot run here.
# The generic parts (sh_skip, sh_fail, sh_log, sh_on_exit, sh_fresh_db,
# sh_free_port, sh_sql, sh_require_root_bpf, $SH_DIR, $SH_PIDS) are in
# tests/lib.sh.
#
# Environment (set by ctest): SH_BUILD (build dir), SH_TEST_DSN_FILE.
# After sh_start: $SH_DSN, $SH_DIR (temp dir), $SH_HTTP (query API URL),
# $SH_CLI (spikehound CLI binary), $SH_AGENT_LOG, $SH_AGG_LOG.

. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

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
