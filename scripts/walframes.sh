#!/usr/bin/env bash
# What a running agentd writes to its SQLite WAL (docs/benchmarks.md,
# "Round 10"): traces the process's pwrite calls for a while (strace), splits
# the WAL frames into commits (a commit's last frame carries the database
# size) and names the table or index of each page (sqlite3's dbstat).
#
#   scripts/walframes.sh PID [SECONDS]      # default 5 s; run it under a steady load
#   REQUESTS=500 scripts/walframes.sh PID   # also print frames per request
#       # (the requests served during the trace: at a fixed rate, rate x SECONDS)
#
# Needs strace and the sqlite3 shell. Tracing slows every system call, so
# use it to count what is written, not to time it, and at a rate the traced
# process still keeps up with (on one core, 100 chats/s does; 400/s does
# not): a slowed process groups more commits. Page names come from the
# database as it is after the trace, so a page freed and reused meanwhile
# may carry its new owner's name.
set -euo pipefail
PID=${1:?usage: walframes.sh PID [SECONDS]}
SECS=${2:-5}
WAL="" FDS=""
for f in /proc/"$PID"/fd/*; do
	t=$(readlink "$f" || true)
	case $t in *-wal) WAL=$t FDS="$FDS ${f##*/}" ;; esac
done
[ -n "$WAL" ] || { echo "process $PID has no SQLite WAL open" >&2; exit 1; }
DB=${WAL%-wal}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
timeout -s INT "$SECS" strace -f -qq -p "$PID" -e trace=pwrite64 -o "$OUT" 2>/dev/null || true
python3 - "$OUT" "$DB" "$FDS" "${REQUESTS:-0}" <<'PY'
import collections, re, subprocess, sys

trace, db, fds, requests = sys.argv[1], sys.argv[2], set(sys.argv[3].split()), int(sys.argv[4])

def unescape(s):  # strace prints the buffer with C escapes
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] != "\\":
            out.append(ord(s[i])); i += 1; continue
        j = i + 1
        if s[j] in "01234567":
            k = j
            while k < len(s) and k < j + 3 and s[k] in "01234567": k += 1
            out.append(int(s[j:k], 8) & 255); i = k; continue
        out.append({"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8}.get(s[j], ord(s[j]))); i = j + 1
    return bytes(out)

owner = {}
page = int(subprocess.run(["sqlite3", "-readonly", db, "PRAGMA page_size"], capture_output=True, text=True).stdout.strip() or 4096)
rows = subprocess.run(["sqlite3", "-readonly", db, "SELECT pageno, name FROM dbstat"], capture_output=True, text=True).stdout
for line in rows.splitlines():
    p, name = line.split("|", 1)
    owner[int(p)] = name

commits, cur = [], []
for line in open(trace):
    # a frame header is a 24-byte pwrite: page number, then the database
    # size in pages after a commit (0 on the frames before the last)
    m = re.match(r'\d+\s+pwrite64\((\d+), "(.*)"(?:\.\.\.)?, 24, \d+\) = 24$', line.strip())
    if not m or m.group(1) not in fds: continue
    h = unescape(m.group(2))
    cur.append(int.from_bytes(h[0:4], "big"))
    if int.from_bytes(h[4:8], "big"): commits.append(cur); cur = []
frames = sum(len(c) for c in commits)
print("WAL %s: %d commits, %d frames (%.1f a commit, %.1f MB)" % (db + "-wal", len(commits), frames, frames / max(len(commits), 1), frames * (page + 24) / 1e6))
if requests:
    print("per request: %.1f commits, %.1f frames" % (len(commits) / requests, frames / requests))
by = collections.Counter(owner.get(p, "page %d" % p) for c in commits for p in c)
print("frames by table or index:")
for name, n in by.most_common(25):
    print("  %6d  %5.1f %%  %s" % (n, 100 * n / max(frames, 1), name))
PY
