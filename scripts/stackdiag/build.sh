#!/usr/bin/env bash
# Builds a diagnostic agentd that reports, every second, the goroutine
# stacks per kind of goroutine (by start function) to the file named by
# AGENTD_STACKDIAG, for example:
#
#   scripts/stackdiag/build.sh /tmp/agentd-stackdiag
#   AGENTD_STACKDIAG=/tmp/stacks.txt /tmp/agentd-stackdiag serve -config ...
#   cat /tmp/stacks.txt   # goroutines, total KB, average bytes, start function
#
# It adds scripts/stackdiag/runtime_stackstat.go.in to the Go runtime with
# `go build -overlay` (the toolchain's sources are not touched) and builds
# with the stackdiag tag (cmd/agentd/stackdiag.go). Not for production.
set -euo pipefail
out=${1:?usage: build.sh OUTPUT}
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/overlay.json" <<JSON
{"Replace": {"$(go env GOROOT)/src/runtime/zz_agentd_stackstat.go": "$root/scripts/stackdiag/runtime_stackstat.go.in"}}
JSON
cd "$root"
go build -tags stackdiag -overlay "$tmp/overlay.json" -o "$out" ./cmd/agentd
echo "built $out"
