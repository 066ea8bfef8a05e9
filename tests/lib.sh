# lib.sh: what the shell tests share (sourced): a temp dir, SKIP/FAIL with
# the reason, timestamps, processes and databases cleaned up at exit, free
# ports. tests/scenarios/lib.sh builds the incident scenarios' harness on it.
#
# After sourcing: $SH_DIR (temp dir, removed at exit; its *.log files are
# shown when a test fails). Add pids to $SH_PIDS to have them stopped at
# exit (SIGTERM, SIGKILL after 10 s); sh_on_exit CMD runs CMD before that
# (the daemons are still up: a database is dropped WITH (FORCE)).

set -u
SH_PIDS=""
SH_DIR=$(mktemp -d /tmp/sh-test.XXXXXX)
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

# sh_on_exit CMD: run CMD (a string) at exit, before the daemons stop;
# the last registered runs first (a database goes before its tablespace).
sh_on_exit() { SH_CLEANUP_CMDS="$1
$SH_CLEANUP_CMDS"; }

# sh_stop PID...: SIGTERM, then SIGKILL whatever still runs after 10 s.
sh_stop() {
	local pid
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "$@"; do
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	done
}

sh_cleanup() {
	set +e
	eval "$SH_CLEANUP_CMDS"
	# shellcheck disable=SC2086
	sh_stop $SH_PIDS
	rm -rf "$SH_DIR"
}
trap sh_cleanup EXIT

sh_require_root_bpf() {
	[ "$(id -u)" -eq 0 ] || sh_skip "needs root (BPF, /proc of other users, cgroups)"
	[ -r /sys/kernel/btf/vmlinux ] || sh_skip "kernel has no BTF (/sys/kernel/btf/vmlinux)"
}

sh_free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# sh_fresh_db NAME: a new database NAME_PID on the "pg" fixture's cluster
# (dropped at exit); sets SH_BASE_DSN (the fixture) and SH_DSN.
sh_fresh_db() {
	[ -n "${SH_TEST_DSN_FILE:-}" ] && [ -f "$SH_TEST_DSN_FILE" ] ||
		sh_skip "no PostgreSQL fixture (SH_TEST_DSN_FILE)"
	command -v psql >/dev/null || sh_skip "no psql"
	local db="$1_$$"
	SH_BASE_DSN=$(cat "$SH_TEST_DSN_FILE")
	psql "$SH_BASE_DSN" -qAt -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" \
		-c "CREATE DATABASE $db${2:+ TABLESPACE $2}" >/dev/null ||
		sh_fail "could not create database $db"
	SH_DSN="$SH_BASE_DSN dbname=$db"
	sh_on_exit "psql '$SH_BASE_DSN' -qAt -c 'DROP DATABASE IF EXISTS $db WITH (FORCE)' >/dev/null 2>&1"
}

# sh_sql SQL: one query on $SH_DSN, unaligned, '|' between columns.
sh_sql() { psql "$SH_DSN" -qAt -F '|' -c "$1"; }

# sh_wait_log FILE TEXT SECONDS: wait until FILE contains TEXT.
sh_wait_log() {
	for _ in $(seq 1 $(($3 * 10))); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
