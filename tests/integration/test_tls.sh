#!/bin/bash
# test_tls.sh: both planes over TLS, and who gets in. A throwaway CA signs
# the aggregator's certificate (localhost) and one agent's; a second CA
# ("rogue") signs nothing we trust. The real aggregator listens on
# tls+tcp:// for data and control with tls_ca set (mutual TLS), then:
#
# 1. agents that must not get in run for a while side by side: one with no
#    client certificate, one with a certificate of the rogue CA, one that
#    trusts only the rogue CA (so it must refuse the aggregator), one that
#    expects another server name, and one dialing plain tcp:// to the TLS
#    port: the database must hold no host, no summary;
# 2. the enrolled agent gets in: its host and summaries arrive, and a
#    capture asked over the TLS control plane completes;
# 3. configuration mistakes are refused with a clear message at start: an
#    aggregator on tls+tcp:// without a certificate, an agent dialing
#    tls+tcp:// without tls_ca, TLS files with a tcp:// address, a
#    certificate without its key.
#
# Environment (set by ctest): SH_AGG_BIN, SH_AGENT_BIN, SH_CLI_BIN,
# SH_TEST_DSN_FILE. Exits 77 (SKIP) when it cannot run here (not root:
# the agent loads BPF; no openssl to make certificates).
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" -eq 0 ] || sh_skip "the agent needs root (BPF)"
[ -r /sys/kernel/btf/vmlinux ] || sh_skip "kernel has no BTF (/sys/kernel/btf/vmlinux)"
command -v openssl >/dev/null || sh_skip "no openssl (to make the test certificates)"
[ -n "${SH_TEST_DSN_FILE:-}" ] && [ -f "$SH_TEST_DSN_FILE" ] || sh_skip "no PostgreSQL fixture"
for b in "${SH_AGG_BIN:-}" "${SH_AGENT_BIN:-}" "${SH_CLI_BIN:-}"; do
	[ -x "$b" ] || sh_fail "not built: $b"
done

# ---- certificates
P="$SH_DIR/pki"
mkdir -p "$P"
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
ca() {
	newkey "$P/$1.key" &&
		openssl req -x509 -new -key "$P/$1.key" -out "$P/$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null
}
# leaf NAME CA CN [SAN]
leaf() {
	newkey "$P/$1.key" &&
		openssl req -new -key "$P/$1.key" -out "$P/$1.csr" -subj "/CN=$3" 2>/dev/null &&
		printf 'basicConstraints=CA:FALSE\n%s\n' "${4:+subjectAltName=$4}" >"$P/$1.ext" &&
		openssl x509 -req -in "$P/$1.csr" -CA "$P/$2.pem" -CAkey "$P/$2.key" -CAcreateserial \
			-out "$P/$1.pem" -days 2 -extfile "$P/$1.ext" 2>/dev/null
}
ca ca && ca rogue && leaf server ca localhost DNS:localhost && leaf agent ca agent-1 &&
	leaf intruder rogue agent-2 || sh_fail "could not make the test certificates"

sh_fresh_db tls
sql() { sh_sql "$1"; }
PORT=$(sh_free_port)
HPORT=$(sh_free_port)
URL="tls+tcp://127.0.0.1:$PORT"
CURL="tls+tcp://127.0.0.1:$((PORT + 2))"
API="http://127.0.0.1:$HPORT"

# ---- 3a. an aggregator on tls+tcp:// without a certificate
out=$(timeout 20 "$SH_AGG_BIN" --db "$SH_DSN" --listen "$URL" --http "http://127.0.0.1:$(sh_free_port)" \
	--data-dir "$SH_DIR/agg0" 2>&1)
rc=$?
echo "$out" | grep -q "tls_cert and tls_key are required" && [ "$rc" -ne 0 ] ||
	sh_fail "an aggregator on tls+tcp:// without a certificate: exit $rc, said: $out"
sh_log "aggregator without a certificate refused: $(echo "$out" | grep -m1 'tls_cert')"

"$SH_AGG_BIN" --db "$SH_DSN" --listen "$URL" --http "$API" --data-dir "$SH_DIR/agg" --stats-interval 5s \
	--set "tls_cert=$P/server.pem" --set "tls_key=$P/server.key" --set "tls_ca=$P/ca.pem" \
	>"$SH_DIR/aggregator.log" 2>&1 &
SH_PIDS="$SH_PIDS $!"
for _ in $(seq 1 300); do grep -q ' ready' "$SH_DIR/aggregator.log" && break; sleep 0.1; done
grep -q ' ready' "$SH_DIR/aggregator.log" || sh_fail "the aggregator did not start"
grep -q "control: listening on $CURL" "$SH_DIR/aggregator.log" || sh_fail "no TLS control plane on $CURL"
sh_log "aggregator: data $URL, control $CURL, mutual TLS"

# agent NAME URL [flags]: start an agent in the background
agent() {
	local name=$1 url=$2
	shift 2
	"$SH_AGENT_BIN" run --aggregator "$url" --interval 1s --spool-dir "$SH_DIR/spool-$name" \
		--spool-fsync false --detectors none --capture-local 0 --label "who=$name" "$@" \
		>"$SH_DIR/agent-$name.log" 2>&1 &
	SH_PIDS="$! $SH_PIDS"
	eval "PID_$name=$!"
}

# ---- 3b-d. agent configuration mistakes
check_refused() {
	local what=$1 want=$2
	shift 2
	out=$(timeout 20 "$SH_AGENT_BIN" run --interval 1s --spool-dir "$SH_DIR/spool-x" --spool-fsync false \
		--detectors none "$@" 2>&1)
	rc=$?
	echo "$out" | grep -q "$want" && [ "$rc" -ne 0 ] || sh_fail "$what: exit $rc, said: $out"
	sh_log "refused ($what): $(echo "$out" | grep -m1 "$want")"
}
check_refused "tls+tcp:// without tls_ca" "tls_ca is required" --aggregator "$URL"
check_refused "TLS files with tcp://" "is not a tls+tcp:// address" \
	--aggregator "tcp://127.0.0.1:$PORT" --tls-ca "$P/ca.pem" --control off
check_refused "a certificate without its key" "set both or neither" \
	--aggregator "$URL" --tls-ca "$P/ca.pem" --tls-cert "$P/agent.pem"

# ---- 1. agents that must not get in
SN="--tls-server-name localhost"
agent nocert "$URL" --tls-ca "$P/ca.pem" $SN
agent intruder "$URL" --tls-ca "$P/ca.pem" --tls-cert "$P/intruder.pem" --tls-key "$P/intruder.key" $SN
agent distrust "$URL" --tls-ca "$P/rogue.pem" --tls-cert "$P/agent.pem" --tls-key "$P/agent.key" $SN
agent wrongname "$URL" --tls-ca "$P/ca.pem" --tls-cert "$P/agent.pem" --tls-key "$P/agent.key" \
	--tls-server-name aggregator.example
agent plain "tcp://127.0.0.1:$PORT" --control "tcp://127.0.0.1:$((PORT + 2))"
sh_log "5 agents that must not get in: running for 12 s"
sleep 12
for n in nocert intruder distrust wrongname plain; do
	eval "pid=\$PID_$n"
	kill -0 "$pid" 2>/dev/null || sh_fail "agent $n exited (it should keep trying): $(tail -3 "$SH_DIR/agent-$n.log")"
done
got=$(sql "SELECT (SELECT count(*) FROM hosts), (SELECT count(*) FROM summaries), (SELECT count(*) FROM capture_hosts)")
sh_log "hosts|summaries|capture hosts stored = $got"
[ "$got" = "0|0|0" ] || sh_fail "something got in: $got"
for n in nocert intruder distrust wrongname plain; do
	eval "kill -TERM \$PID_$n"
done
for n in nocert intruder distrust wrongname plain; do
	eval "pid=\$PID_$n"
	wait "$pid" 2>/dev/null
	sh_log "agent $n: $(grep -c 'could not deliver\|no reply\|could not send' "$SH_DIR/agent-$n.log") delivery warnings, e.g. $(grep -m1 -o 'could not deliver.*\|no reply.*\|could not send.*' "$SH_DIR/agent-$n.log" | cut -c1-200)"
done

# ---- 2. the enrolled agent
agent good "$URL" --tls-ca "$P/ca.pem" --tls-cert "$P/agent.pem" --tls-key "$P/agent.key" $SN
for _ in $(seq 1 80); do
	n=$(sql "SELECT count(*) FROM summaries")
	[ "${n:-0}" -ge 3 ] && break
	sleep 0.25
done
[ "${n:-0}" -ge 3 ] || sh_fail "the enrolled agent's summaries did not arrive ($n)"
H=$(sql "SELECT host_id FROM hosts WHERE labels->>'who' = 'good'")
[ -n "$H" ] || sh_fail "the enrolled agent's host is not known"
grep -q "control plane: polling $CURL" "$SH_DIR/agent-good.log" || sh_fail "the agent does not poll $CURL"
sh_log "enrolled agent: host $H, $n summaries"
sleep 6 # history for the capture window
out=$("$SH_CLI_BIN" --server "$API" capture --host "$H" --at now --before 5s --after 1s 2>&1) ||
	sh_fail "spikehound capture failed: $out"
ID=$(echo "$out" | awk '$1 == "capture" && $3 == "asked" { print $2; exit }')
[ -n "$ID" ] || sh_fail "no capture id in: $out"
for _ in $(seq 1 120); do
	st=$(sql "SELECT status FROM capture_hosts WHERE capture_id = '$ID'")
	[ "$st" = complete ] && break
	sleep 0.25
done
[ "$st" = complete ] || sh_fail "capture $ID over the TLS control plane: status $st"
got=$(sql "SELECT total_chunks || ' chunks, ' || compressed_bytes || ' bytes, sha256 ' ||
	(encode(sha256(payload), 'hex') = sha256) FROM capture_hosts WHERE capture_id = '$ID'")
sh_log "capture $ID over TLS: complete, $got"
echo "$got" | grep -q "sha256 true" || sh_fail "capture payload does not match its checksum"
sh_log "PASS"
