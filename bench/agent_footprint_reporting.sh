#!/usr/bin/env bash
# agent_footprint_reporting.sh BINDIR MINUTES DIR - the agent's footprint with reporting to the
# collector on and off, side by side in the same minutes.
#
# Creates a loopback-only network namespace, starts BINDIR/aupwatch-collector (SQLite, on
# 127.0.0.1:8740) in it, and runs bench/agent_footprint.sh twice at once inside it: DIR/off
# (no [collector]) and DIR/on (reporting to that collector). Both agents scan the same host
# at the default 15 s interval. Prints both summaries; stops the collector (by pid) and
# removes the namespace on exit. MALLOC_ARENA_MAX=2 as the systemd unit sets.
set -euo pipefail
bindir=$(realpath "${1:?usage: $0 BINDIR MINUTES DIR}")
mins=${2:?usage: $0 BINDIR MINUTES DIR}
dir=$(realpath -m "${3:?usage: $0 BINDIR MINUTES DIR}")
here=$(dirname "$(realpath "$0")")
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (a network namespace)" >&2; exit 2; }
mkdir -p "$dir"
ns=aupw-fp-$$
coll_pid=
cleanup() {
  if [ -n "$coll_pid" ]; then kill "$coll_pid" 2>/dev/null || true; wait "$coll_pid" 2>/dev/null || true; fi
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
cat >"$dir/collector.toml" <<TOML
listen = "127.0.0.1:8740"
[database]
path = "$dir/collector.db"
TOML
secret=$("$bindir/aupwatch-collector" --config "$dir/collector.toml" secret create | sed -n '1s/^[^:]*: *//p')
# nsenter execs the collector: $! is its pid.
nsenter --net="/run/netns/$ns" -- "$bindir/aupwatch-collector" --config "$dir/collector.toml" serve 2>"$dir/collector.log" &
coll_pid=$!
for _ in $(seq 100); do grep -q 'http://' "$dir/collector.log" 2>/dev/null && break; sleep 0.1; done
export MALLOC_ARENA_MAX=2
nsenter --net="/run/netns/$ns" -- "$here/agent_footprint.sh" "$bindir/aupwatch" "$mins" "$dir/off" >"$dir/off.out" 2>&1 &
off=$!
nsenter --net="/run/netns/$ns" -- env COLLECTOR_URL=http://127.0.0.1:8740 ENROLL_SECRET="$secret" \
  "$here/agent_footprint.sh" "$bindir/aupwatch" "$mins" "$dir/on" >"$dir/on.out" 2>&1 &
on=$!
wait "$off" "$on"
echo "reporting off: $(tail -1 "$dir/off.out")"
echo "reporting on:  $(tail -1 "$dir/on.out")"
"$bindir/aupwatch-collector" --config "$dir/collector.toml" hosts || true
