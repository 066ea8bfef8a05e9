#!/bin/sh
# pg_fixture.sh: the throwaway PostgreSQL cluster that every "pg" test shares
# (CTest fixture "pg", see CMakeLists.txt next to this file).
#
#   pg_fixture.sh start DIR   initdb a fresh cluster into DIR/data, start it on
#                             a Unix socket only, create database
#                             "spikehound" and write its DSN to DIR/dsn
#                             (stops and discards a leftover cluster first)
#   pg_fixture.sh restart DIR stop the running cluster (fast) and start it again,
#                             keeping its data (for delivery tests)
#   pg_fixture.sh stop DIR    stop it and discard its data (the log stays)
#
# As root the cluster runs as $SH_TEST_PG_USER (default "spikehound", made by
# deploy/install-deps.sh), since PostgreSQL refuses to run as root; otherwise
# as the current user. Exits 77 (skip) with the reason when it cannot run.
# Environment: SH_TEST_PG_PORT (default 55432), SH_PG_BINDIR (default: the
# newest /usr/lib/postgresql/*/bin with initdb), SH_TEST_PG_USER.
#
# The cluster trades durability for speed (fsync off): it is thrown away.
set -eu

skip() {
	echo "SKIP: $*"
	exit 77
}
die() {
	echo "pg_fixture: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: pg_fixture.sh start|stop DIR"
cmd=$1
dir=$2
port=${SH_TEST_PG_PORT:-55432}

bindir=${SH_PG_BINDIR:-}
if [ -z "$bindir" ]; then
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && bindir=$d
	done
fi
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] ||
	skip "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin; set SH_PG_BINDIR"

# as_user CMD ARGS...: run a command as the cluster's user (no shell string).
if [ "$(id -u)" -eq 0 ]; then
	user=${SH_TEST_PG_USER:-spikehound}
	id -u "$user" >/dev/null 2>&1 ||
		skip "running as root and user \"$user\" does not exist (run deploy/install-deps.sh)"
	[ "$(id -u "$user")" -ne 0 ] || skip "user \"$user\" is root; PostgreSQL refuses to run as root"
	if command -v runuser >/dev/null 2>&1; then
		as_user() { runuser -u "$user" -- "$@"; }
	elif command -v setpriv >/dev/null 2>&1; then
		as_user() {
			setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@"
		}
	else
		skip "running as root without runuser or setpriv to switch to user \"$user\""
	fi
else
	user=$(id -un)
	as_user() { "$@"; }
fi

# The cluster, its socket and its log live in $run: DIR itself when the
# cluster's user can write there and the socket path fits in sun_path (107
# bytes), else a private directory under /tmp recorded in DIR/rundir.
stop_cluster() {
	if [ -f "$dir/rundir" ]; then
		run=$(cat "$dir/rundir")
	else
		run=$dir
	fi
	if [ -f "$run/data/postmaster.pid" ]; then
		as_user "$bindir/pg_ctl" stop -D "$run/data" -m fast -w -t 30 >/dev/null 2>&1 ||
			as_user "$bindir/pg_ctl" stop -D "$run/data" -m immediate -w -t 30 >/dev/null 2>&1 ||
			true
	fi
	rm -rf "$run/data" "$dir/dsn"
	if [ "$run" != "$dir" ]; then
		if [ -f "$run/postgresql.log" ]; then
			cp "$run/postgresql.log" "$dir/postgresql.log"
		fi
		rm -rf "$run"
		rm -f "$dir/rundir"
	fi
}

case $cmd in
start)
	mkdir -p "$dir"
	stop_cluster
	if [ "$(id -u)" -eq 0 ]; then
		chown "$user" "$dir"
	fi
	run=$dir
	case $dir in
	*[!A-Za-z0-9/._-]*) run= ;; # not safe in postgresql.conf or a DSN unquoted
	esac
	if [ -n "$run" ] && [ $((${#run} + 15)) -gt 107 ]; then
		run=
	fi
	if [ -n "$run" ] && ! as_user test -w "$run" -a -x "$run"; then
		run=
	fi
	if [ -z "$run" ]; then
		run=$(mktemp -d /tmp/shpgtest.XXXXXX)
		chmod 0755 "$run"
		if [ "$(id -u)" -eq 0 ]; then
			chown "$user" "$run"
		fi
		echo "$run" >"$dir/rundir"
	fi
	log=$run/postgresql.log
	rm -f "$log"

	as_user "$bindir/initdb" -D "$run/data" --username="$user" --auth-local=trust \
		--auth-host=reject -E UTF8 --no-locale --no-instructions --no-sync \
		>"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log" >&2
		die "initdb failed in \"$run/data\""
	}
	cat >>"$run/data/postgresql.conf" <<EOF

# pg_fixture.sh: a throwaway cluster for tests
listen_addresses = ''
port = $port
unix_socket_directories = '$run'
unix_socket_permissions = 0700
max_connections = 100
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] '
EOF
	if ! as_user "$bindir/pg_ctl" start -D "$run/data" -l "$log" -w -t 60 >/dev/null; then
		echo "pg_fixture: could not start PostgreSQL in \"$run/data\"; last lines of \"$log\":" >&2
		tail -n 20 "$log" >&2 || true
		exit 1
	fi
	as_user "$bindir/createdb" -h "$run" -p "$port" -U "$user" spikehound ||
		die "could not create database \"spikehound\" on \"$run\""
	printf 'host=%s port=%s dbname=spikehound user=%s\n' "$run" "$port" "$user" >"$dir/dsn.tmp"
	mv "$dir/dsn.tmp" "$dir/dsn"
	echo "pg_fixture: PostgreSQL ($("$bindir/postgres" --version)) running: $(cat "$dir/dsn")"
	;;
restart)
	if [ -f "$dir/rundir" ]; then
		run=$(cat "$dir/rundir")
	else
		run=$dir
	fi
	[ -f "$run/data/postmaster.pid" ] || die "no cluster running in \"$run/data\""
	as_user "$bindir/pg_ctl" restart -D "$run/data" -l "$run/postgresql.log" -m fast -w -t 60 \
		>/dev/null || die "could not restart the cluster in \"$run/data\""
	echo "pg_fixture: restarted the cluster in \"$run/data\""
	;;
stop)
	[ -d "$dir" ] || exit 0
	stop_cluster
	echo "pg_fixture: stopped the cluster in \"$dir\""
	;;
*)
	die "unknown command \"$cmd\" (start, restart or stop)"
	;;
esac
