#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [PARALLEL]: run every fuzz target of the decoders
# of outside input for SECONDS each (default 10) with PARALLEL workers
# (default 1: the machine is shared), then print one line per target with
# its execs. A crash fails the script; go test writes the failing input to
# the package's testdata/fuzz/TARGET/ (commit it: it becomes a seed).
# See docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
secs=${1:-10}
par=${2:-1}
targets=(
  "./internal/server/fuzz FuzzDecodeChatRequest"
  "./internal/server/fuzz FuzzDecodeRunRequest"
  "./internal/gateway/reqscan FuzzScan"
  "./internal/gateway FuzzRelayStream"
  "./internal/llm/anthropic FuzzUpstreamStream"
  "./internal/config FuzzLoad"
  "./internal/tool FuzzSchemaValidate"
  "./internal/managed FuzzAgentRequest"
  "./internal/managed FuzzSessionCreateRequest"
  "./internal/managed FuzzSessionEvents"
  "./internal/run/sdkstream FuzzStreamJSONLine"
)
# Every Fuzz function of the module must be listed here.
listed=$(printf '%s\n' "${targets[@]}" | awk '{print $2}' | sort)
found=$(git grep -h -o '^func Fuzz[A-Za-z0-9_]*' -- '*_test.go' | sed 's/^func //' | sort)
if [ "$listed" != "$found" ]; then
  echo "fuzz.sh: the targets listed differ from the Fuzz functions in the tree:" >&2
  diff <(echo "$listed") <(echo "$found") >&2 || true
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
total=0
for t in "${targets[@]}"; do
  set -- $t
  pkg=$1 name=$2
  ok=""
  for attempt in 1 2; do
    if go test -run "^${name}\$" -fuzz "^${name}\$" -fuzztime "${secs}s" -parallel "$par" "$pkg" >"$log" 2>&1; then
      ok=1
      break
    fi
    # Go before 1.27 can fail a target with a bare "context deadline
    # exceeded" when -fuzztime ends while a worker is mid-input
    # (go.dev/issue/75804): no input failed, nothing was written to
    # testdata/fuzz. That one case is run again once; any real finding
    # (a written failing input, a panic, a t.Error) fails at once.
    if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' "$log" &&
      ! grep -Eq 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
      echo "fuzz.sh: $name ($pkg): fuzztime-deadline race of go.dev/issue/75804, no failing input; running it again" >&2
      continue
    fi
    break
  done
  if [ -z "$ok" ]; then
    cat "$log" >&2
    echo "fuzz.sh: $name ($pkg) FAILED" >&2
    exit 1
  fi
  # No progress line at all when the baseline corpus took the whole
  # fuzztime (a loaded machine): not a failure, the execs are unknown.
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n1 | awk '{print $2}' || true)
  total=$((total + ${execs:-0}))
  printf 'fuzz %-24s %-26s %4ss %10s execs\n' "$name" "$pkg" "$secs" "${execs:-?}"
done
printf 'fuzz total: %d execs\n' "$total"
