#!/usr/bin/env bash
# Every row of issue 25's table in one run, side by side, with the ratio of
# each measure to its target (docs/benchmarks.md, "One command"). Bounded in
# time (about 5-7 minutes with the defaults), 127.0.0.1 only. When the
# machine has 2 CPUs or more and taskset exists, each server under test runs
# alone on CPU 0 with GOMAXPROCS=1 and the load generator and the simulator
# on CPU 1 (PIN=0 turns that off). The machine may be shared: `uptime`'s load
# average is printed before each row and in the summary.
#
#   scripts/bench.sh
#   ONLY="chat runs" scripts/bench.sh          # some rows: gateway chat runs held start
#   GW_DURATION=10s CHAT_DURATION=20s RUNS_N=5000 HELD_CHATS=2000 scripts/bench.sh   # longer
#
# Knobs (defaults): GW_RATES ("200 1000"), GW_DURATION (5s), GW_WARMUP (1s),
# GW_ROUNDS (3: the floor and the gateway measured in three alternating
# rounds; the summary compares the medians of their added latencies);
# CHAT_RATE (400), CHAT_DURATION (10s), CHAT_MAX_RATE (3000, the offered
# rate of the saturation run), CHAT_MAX_DURATION (5s); RUNS_N (1000),
# RUNS_SUBMITTERS (32); HELD_CHATS (1000), HELD_HOLD (10s); STARTS (5).
# AGENTD_BIN: the agentd binary of the gateway, chat and start rows (default:
# built from this tree), to compare two builds row by row; the runs and held
# rows always test this tree.
# PostgreSQL rows need AGENTD_TEST_POSTGRES_URL (skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY=${ONLY:-"gateway chat runs held start"}
GW_RATES=${GW_RATES:-"200 1000"} GW_DURATION=${GW_DURATION:-5s} GW_WARMUP=${GW_WARMUP:-1s} GW_ROUNDS=${GW_ROUNDS:-3}
CHAT_RATE=${CHAT_RATE:-400} CHAT_DURATION=${CHAT_DURATION:-10s}
CHAT_MAX_RATE=${CHAT_MAX_RATE:-3000} CHAT_MAX_DURATION=${CHAT_MAX_DURATION:-5s}
RUNS_N=${RUNS_N:-1000} RUNS_SUBMITTERS=${RUNS_SUBMITTERS:-32}
HELD_CHATS=${HELD_CHATS:-1000} HELD_HOLD=${HELD_HOLD:-10s}
STARTS=${STARTS:-5}

DIR=$(mktemp -d)
RES=$DIR/results # key<TAB>value lines, read by the summary
pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
has() { [[ " $ONLY " == *" $1 "* ]]; }
put() { printf '%s\t%s\n' "$1" "$2" >>"$RES"; }
load_avg() { uptime | sed 's/.*load average: //'; }
section() { echo; echo "== $1 (load average $(load_avg), $(date -u +%H:%M:%SZ))"; put "load:$2" "$(load_avg | cut -d, -f1)"; }

SERVER_PIN="" LOAD_PIN=""
if [ "${PIN:-1}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	SERVER_PIN="taskset -c 0 env GOMAXPROCS=1" LOAD_PIN="taskset -c 1"
fi
echo "agentd bench: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(go version | cut -d' ' -f3-4), $(nproc) CPUs, pinning: ${SERVER_PIN:-off}"
echo "load average at start: $(load_avg)"
put "load:start" "$(load_avg | cut -d, -f1)"

BIN=$DIR/agentd
go build -o "$BIN" ./cmd/agentd
if [ -n "${AGENTD_BIN:-}" ]; then
	BIN=$AGENTD_BIN
	echo "agentd under test: $BIN"
fi
go build -trimpath -ldflags='-s -w' -o "$DIR/agentd-stripped" ./cmd/agentd
put binary_mb "$(awk -v b="$(stat -c %s "$DIR/agentd-stripped")" 'BEGIN{printf "%.1f", b/1e6}')"

# lat FILE: "p50 p99" in ms from the load generator's "rate ..." line;
# ttfe FILE: the same from its "time to first event" line.
ms() { python3 -c '
import re,sys
units={"ns":1e-6,"µs":1e-3,"us":1e-3,"ms":1,"s":1e3,"m":6e4}
def d(s):
    t=0
    for n,u in re.findall(r"([0-9.]+)(ns|µs|us|ms|s|m)",s): t+=float(n)*units[u]
    return t
line=[l for l in open(sys.argv[1]) if l.startswith(sys.argv[2])]
if not line: print("nan nan"); sys.exit()
l=line[-1]
p50=re.search(r"p50 (\S+)",l).group(1); p99=re.search(r"p99 (\S+)",l).group(1)
print("%.3f %.3f"%(d(p50),d(p99)))' "$1" "$2"; }
rate_of() { sed -n 's/^rate \([0-9.]*\)\/s.*/\1/p' "$1" | tail -n1; }

# ---- (5) start to ready ---------------------------------------------------
if has start; then
	section "start to ready, stripped binary" start
	cat >"$DIR/start.yaml" <<YAML
server: {addr: "127.0.0.1:18290"}
store: {url: "sqlite://$DIR/start.db"}
auth: {mode: none}
providers: {anthropic: {base_url: "http://127.0.0.1:18291", simulate: never, api_key: x}}
agents: [{name: demo, model: claude-sonnet-4-5}]
YAML
	"$BIN" migrate -config "$DIR/start.yaml" >/dev/null 2>&1
	for i in $(seq "$STARTS"); do
		t0=$(date +%s%N)
		$SERVER_PIN "$DIR/agentd-stripped" serve -config "$DIR/start.yaml" >"$DIR/start.log" 2>&1 & p=$!
		ok=0
		for _ in $(seq 2000); do curl -fs -o /dev/null "http://127.0.0.1:18290/readyz" 2>/dev/null && { ok=1; break; }; sleep 0.002; done
		t1=$(date +%s%N)
		kill "$p"; wait "$p" 2>/dev/null || true
		[ $ok = 1 ] && echo "$(((t1 - t0) / 1000000))" >>"$DIR/starts" || echo "start $i: not ready" >&2
	done
	echo "start to ready (ms, $STARTS starts, curl /readyz every ~2 ms): $(tr '\n' ' ' <"$DIR/starts")"
	put start_ms "$(sort -n "$DIR/starts" | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')"
	echo "stripped binary (-trimpath -ldflags='-s -w'): $(grep binary_mb "$RES" | cut -f2) MB"
fi

# ---- (1) gateway ----------------------------------------------------------
if has gateway; then
	section "gateway /v1/messages vs bare reverse proxy (scripts/bench-gateway.sh)" gateway
	AGENTD_BIN=$BIN RATES=$GW_RATES DURATION=$GW_DURATION WARMUP=$GW_WARMUP ROUNDS=$GW_ROUNDS \
		SERVER_PIN=$SERVER_PIN LOAD_PIN=$LOAD_PIN scripts/bench-gateway.sh | tee "$DIR/gw.out"
	python3 - "$DIR/gw.out" >>"$RES" <<'PY'
import re,sys,statistics
units={"ns":1e-6,"µs":1e-3,"us":1e-3,"ms":1,"s":1e3,"m":6e4}
def d(s): return sum(float(n)*units[u] for n,u in re.findall(r"([0-9.]+)(ns|µs|us|ms|s|m)",s))
v={} # (who, rate, kind) -> [(p50, p99, start lag p99)] in round order
for l in open(sys.argv[1]):
    m=re.match(r"(\w+)\s+(\d+)/s\s+(\S+)\s+(.*)",l)
    if not m: continue
    who,rate,kind,rest=m.groups()
    kind="sse" if kind=="-stream" else "json"
    # for SSE the time to the first event is what the client waits for
    part=rest.split("time to first event:")[-1] if kind=="sse" and "time to first event:" in rest else rest
    p50=re.search(r"p50 (\S+)",part); p99=re.search(r"p99 (\S+)",part)
    lag=re.search(r"start lag p50 \S+ p99 (\S+)",rest)
    if p50 and p99: v.setdefault((who,rate,kind),[]).append((d(p50.group(1)),d(p99.group(1)),d(lag.group(1)) if lag else 0))
for (who,rate,kind),gs in v.items():
    if who!="gateway": continue
    ss=v.get(("sim",rate,kind),[]); fs=v.get(("proxy",rate,kind),[])
    rounds=list(zip(ss,fs,gs))
    if not rounds: continue
    # the worst start lag p99 of all the phases: above 2 ms the load
    # generator itself was held up by the machine, and the p99s say so
    lag=max(max(s[2],f[2],g[2]) for s,f,g in rounds)
    for i,q in enumerate(("p50","p99")):
        # each round's added latency is over that round's own sim phase;
        # the medians over the rounds are compared
        fl=[f[i]-s[i] for s,f,g in rounds]; gw=[g[i]-s[i] for s,f,g in rounds]
        print("gw:%s:%s:%s\t%.3f %.3f %.3f %d %s %s"%(rate,kind,q,statistics.median(fl),statistics.median(gw),lag,len(rounds),
            ",".join("%.3f"%x for x in fl),",".join("%.3f"%x for x in gw)))
PY
fi

# ---- (2) /v1/chat persisted, SQLite --------------------------------------
if has chat; then
	section "/v1/chat persisted, one step, SQLite" chat
	SIM=127.0.0.1:18390 API=127.0.0.1:18392
	cat >"$DIR/chat.yaml" <<YAML
server: {addr: "$API"}
store: {url: "sqlite://$DIR/chat.db"}
auth: {mode: none}
log: {level: info}
providers: {anthropic: {base_url: "http://$SIM", simulate: never, api_key: sim-key, concurrency: {max_in_flight: 4096}}}
admission: {max_chats: 100000, max_streams: 100000}
agents: [{name: demo, model: claude-sonnet-4-5}]
YAML
	$LOAD_PIN "$BIN" sim -addr "$SIM" -api-key sim-key 2>"$DIR/chat-sim.log" & pids+=($!)
	"$BIN" migrate -config "$DIR/chat.yaml" >/dev/null 2>&1
	$SERVER_PIN "$BIN" serve -config "$DIR/chat.yaml" >"$DIR/chat-agentd.log" 2>&1 & pids+=($!)
	for _ in $(seq 200); do curl -fs -o /dev/null "http://$API/readyz" 2>/dev/null && break; sleep 0.05; done
	# the floor: the one streamed model call agentd makes for a chat, straight to the sim
	$LOAD_PIN "$BIN" load -messages -stream -api-key sim-key -rate "$CHAT_RATE" -duration "$CHAT_DURATION" -warmup 1s "http://$SIM" >"$DIR/chat-direct.out" 2>&1 || true
	$LOAD_PIN "$BIN" load -rate "$CHAT_RATE" -duration "$CHAT_DURATION" -warmup 1s "http://$API" >"$DIR/chat-agentd.out" 2>&1 || true
	$LOAD_PIN "$BIN" load -rate "$CHAT_MAX_RATE" -max-in-flight 256 -duration "$CHAT_MAX_DURATION" -warmup 1s "http://$API" >"$DIR/chat-max.out" 2>&1 || true
	echo "direct sim (stream): $(grep '^rate' "$DIR/chat-direct.out" || tail -n2 "$DIR/chat-direct.out")"
	echo "agentd /v1/chat:     $(grep '^rate' "$DIR/chat-agentd.out" || tail -n2 "$DIR/chat-agentd.out")"
	echo "saturation:          $(grep '^rate' "$DIR/chat-max.out" || tail -n2 "$DIR/chat-max.out")"
	read -r d50 d99 <<<"$(ms "$DIR/chat-direct.out" rate)"
	read -r a50 a99 <<<"$(ms "$DIR/chat-agentd.out" rate)"
	put chat_added_p50 "$(python3 -c "print('%.3f'%($a50-$d50))")"
	put chat_added_p99 "$(python3 -c "print('%.3f'%($a99-$d99))")"
	put chat_max "$(rate_of "$DIR/chat-max.out")"
	put chat_rate "$CHAT_RATE"
	kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=()
fi

# ---- (3) async runs end to end ------------------------------------------
if has runs; then
	section "async runs, submit -> succeeded, one step, default worker config, $RUNS_SUBMITTERS submitters" runs
	AGENTD_BENCH_RUNS=$RUNS_N AGENTD_BENCH_SUBMITTERS=$RUNS_SUBMITTERS \
		go test -count=1 -run '^TestRunsThroughput$' -v ./internal/run/ 2>&1 | grep -E 'runs/s|FAIL|SKIP|^ok' | tee "$DIR/runs.out" || true
	for b in sqlite postgres; do
		v=$(sed -n "s/.*$b: .*: \([0-9.]*\) runs\/s end to end.*/\1/p" "$DIR/runs.out" | tail -n1)
		[ -z "$v" ] || put "runs_$b" "$v"
	done
fi

# ---- (4) memory per held streaming chat --------------------------------
if has held; then
	for client in http1 h2c; do
		section "memory per held streaming chat, client $client, $HELD_CHATS chats held $HELD_HOLD" "held_$client"
		AGENTD_BENCH_HELD_CLIENT=$client AGENTD_BENCH_HELD_CHATS=$HELD_CHATS AGENTD_BENCH_HOLD=$HELD_HOLD \
			go test -run '^$' -bench BenchmarkHeldStreamingChats -benchtime 1x ./cmd/agentd 2>&1 | grep -E 'Benchmark|FAIL|^ok' | tee "$DIR/held-$client.out" || true
		v=$(sed -n 's/.* \([0-9.]*\) rss-peak-B\/chat.*/\1/p' "$DIR/held-$client.out" | tail -n1)
		[ -z "$v" ] || put "held_$client" "$(python3 -c "print('%.1f'%($v/1000))")"
	done
fi

# ---- summary --------------------------------------------------------------
echo
echo "== summary (load average at the end $(load_avg)); a ratio ≤ 1 meets the target"
python3 - "$RES" <<'PY'
import sys
r={}
for l in open(sys.argv[1]):
    k,v=l.rstrip("\n").split("\t"); r[k]=v
def load(k): return r.get("load:"+k,"?")
rows=[]
def row(path,measured,target,ratio,ld):
    rows.append((path,measured,target,"—" if ratio is None else "%.2f"%ratio,ld))
for k in sorted(k for k in r if k.startswith("gw:")):
    _,rate,kind,q=k.split(":"); f=r[k].split(); floor,gw,lag=map(float,f[:3])
    ratio=(gw/floor/1.3) if floor>0 and gw>=0 else None
    m="%.3f ms (floor %.3f)"%(gw,floor)
    if len(f)>3 and int(f[3])>1: m="median of %s rounds %s; rounds: gateway %s, floor %s"%(f[3],m,f[5],f[4])
    if q=="p99" and lag>2: m+=", disturbed: start lag p99 %.1f ms"%lag; ratio=None
    row("gateway %s/s %s %s added"%(rate,kind.upper(),q),m,"≤ 1.3× floor",ratio,load("gateway"))
if "chat_added_p50" in r:
    for q,t in (("p50",0.3),("p99",3.0)):
        v=float(r["chat_added_"+q]); row("/v1/chat SQLite added %s at %s/s"%(q,r.get("chat_rate","?")),"%.3f ms"%v,"≤ %g ms"%t,v/t,load("chat"))
if r.get("chat_max"):
    v=float(r["chat_max"]); row("/v1/chat SQLite max chats/s, one core","%.0f/s"%v,"≥ 2000/s",2000/v if v else None,load("chat"))
for b,t in (("sqlite",500),("postgres",1000)):
    if "runs_"+b in r:
        v=float(r["runs_"+b]); row("async runs/s, %s"%b,"%.0f/s"%v,"≥ %d/s"%t,t/v if v else None,load("runs"))
for c in ("http1","h2c"):
    if "held_"+c in r:
        v=float(r["held_"+c]); row("held streaming chat, peak RSS, %s client"%c,"%.1f KB"%v,"≤ 50 KB",v/50,load("held_"+c))
if "start_ms" in r:
    v=float(r["start_ms"]); row("start to ready (median)","%.0f ms"%v,"≤ 200 ms",v/200,load("start"))
if "binary_mb" in r:
    v=float(r["binary_mb"]); row("stripped binary","%.1f MB"%v,"≤ 60 MB",v/60,load("start"))
print("| path | measured | target | ratio | load |")
print("|---|---|---|---:|---:|")
for x in rows: print("| %s | %s | %s | %s | %s |"%x)
print("\nratio: for 'at most' targets measured/target, for 'at least' targets target/measured; above 1 misses the target. gateway ratio = (gateway added / floor added) / 1.3, added = p(target) - p(sim) in the same round, the medians over the rounds; SSE is the time to the first event; — where an added figure is negative (the sim's own phase was slower) or the phase was disturbed.")
PY
