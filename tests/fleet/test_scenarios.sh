#!/bin/bash
# test_scenarios.sh: every tests/fleet/*.scn parses (fleet-sim --check), and
# a broken scenario is refused with "file:line: message".
# Environment (set by ctest): SH_FLEET_SIM, SH_FLEET_DIR.
set -u
DIR=$(mktemp -d /tmp/sh-fleet-scn.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
fail() {
	echo "FAIL: $*"
	exit 1
}

for f in "$SH_FLEET_DIR"/*.scn; do
	"$SH_FLEET_SIM" --check --scenario "$f" || fail "$f does not parse"
done

# expect_error CONTENT LINE MESSAGE: the scenario CONTENT fails at LINE with MESSAGE.
expect_error() {
	printf '%b' "$1" >"$DIR/bad.scn"
	out=$("$SH_FLEET_SIM" --check --scenario "$DIR/bad.scn" 2>&1)
	rc=$?
	[ "$rc" -eq 2 ] || fail "exit $rc (want 2) for: $1"
	case $out in
	*"bad.scn:$2: "*"$3"*) echo "ok: $out" ;;
	*) fail "got \"$out\", want line $2 and \"$3\"" ;;
	esac
}
expect_error '[fleet]\nhosts = 10\nbogus = 1\n' 3 'unknown key "bogus"'
expect_error '[fleet]\nhosts = ten\n' 2 'hosts: expected'
expect_error '[fleet]\nhosts = 10\n\n[x]\ntype = periodic\nkind = runq\n' 4 'missing "comm"'
expect_error '[x]\ntype = rate\nkind = runq\nrate = 1\nlabel = cluster=nope\n' 5 'no cluster is called "nope"'
expect_error '[x]\ntype = burst\nkind = runq\nlabel = cluster=c1\nrate = 1\nperiod = 5s\n' 6 \
	'"period" does not apply to a burst cause'
expect_error '[x]\ntype = periodic\nkind = nope\n' 3 'unknown kind "nope"'
expect_error '[fleet]\nthis is no key\n' 2 'syntax error'
echo PASS
