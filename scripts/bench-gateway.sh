#!/usr/bin/env bash
# Gateway benchmark (docs/benchmarks.md, "Gateway"): the latency added by
# agentd's gateway over calling the sim directly, next to the latency added
# by a bare httputil.ReverseProxy (agentd bench-proxy), at fixed rates,
# non-streaming and streaming (time to first event), in one run on
# 127.0.0.1. The gateway runs with auth (an agentd key), rate limits
# (requests and tokens, high enough not to bite), a two-key pool and usage
# accounting (a usage row per call in SQLite) on, logging at info to a file.
#
#   scripts/bench-gateway.sh                 # rates 200 and 1000, 10 s each
#   RATES="200" DURATION=5s scripts/bench-gateway.sh
#   AUTH_CACHE_TTL=-1s scripts/bench-gateway.sh   # auth.cache_ttl (default 1s; -1s: no cache)
#   ROUNDS=3 scripts/bench-gateway.sh        # each sim/proxy/gateway triple three times in a row
#       # (a line per phase, so scripts/bench.sh can take the median of the rounds)
#   SERVER_PIN="taskset -c 0 env GOMAXPROCS=1" LOAD_PIN="taskset -c 1" scripts/bench-gateway.sh
#       # command prefixes: servers on one core, load generator on the other (scripts/bench.sh sets them)
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${RATES:-"200 1000"}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
SERVER_PIN=${SERVER_PIN:-}
LOAD_PIN=${LOAD_PIN:-}
BIN=${AGENTD_BIN:-$(mktemp -d)/agentd}
DIR=$(mktemp -d)
SIM=127.0.0.1:18190 PROXY=127.0.0.1:18191 GW=127.0.0.1:18192
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

[ -x "$BIN" ] || go build -o "$BIN" ./cmd/agentd
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cat >"$DIR/agentd.yaml" <<YAML
server: {addr: "$GW"}
store: {url: "sqlite://$DIR/agentd.db"}
auth: {mode: keys, cache_ttl: "${AUTH_CACHE_TTL:-1s}"}
log: {level: info}
providers:
  anthropic:
    base_url: "http://$SIM"
    simulate: never
    keys: {sources: [{value: sim-key-1}, {value: sim-key-2}]}
    concurrency: {max_in_flight: 4096}
admission: {max_chats: 100000, max_streams: 100000}
rate_limits:
  key: {requests_per_minute: 10000000, tokens_per_minute: 100000000000}
  tenant: {requests_per_minute: 10000000, tokens_per_minute: 100000000000}
agents:
  - {name: demo, model: claude-sonnet-4-5}
YAML

$LOAD_PIN "$BIN" sim -addr "$SIM" -api-key sim-key-1,sim-key-2 2>"$DIR/sim.log" & pids+=($!)
$SERVER_PIN "$BIN" bench-proxy -addr "$PROXY" "http://$SIM" 2>"$DIR/proxy.log" & pids+=($!)
"$BIN" migrate -config "$DIR/agentd.yaml" >/dev/null 2>&1
KEY=$("$BIN" keys create -config "$DIR/agentd.yaml" -tenant bench -scopes chat 2>/dev/null | head -n1)
[ -n "$KEY" ] || { echo "could not create an API key" >&2; exit 1; }
$SERVER_PIN "$BIN" serve -config "$DIR/agentd.yaml" >"$DIR/agentd.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -fs "http://$GW/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

run() { # name url key rate stream
  local out
  out=$($LOAD_PIN "$BIN" load -messages $5 -rate "$4" -duration "$DURATION" -warmup "$WARMUP" -api-key "$3" "$2" 2>&1 | grep -E '^(rate|time to first)' || true)
  printf '%-8s %5s/s %-9s %s\n' "$1" "$4" "${5:-json}" "$(echo "$out" | tr '\n' ' ')"
}
for rate in $RATES; do
  for stream in "" "-stream"; do
    for _ in $(seq "$ROUNDS"); do
      run sim     "http://$SIM"   sim-key-1 "$rate" "$stream"
      run proxy   "http://$PROXY" sim-key-1 "$rate" "$stream"
      run gateway "http://$GW"    "$KEY"    "$rate" "$stream"
    done
  done
done
echo "usage rows written: $(sqlite3 "$DIR/agentd.db" 'select count(*) from usage' 2>/dev/null || echo '?')"
