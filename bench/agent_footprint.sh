#!/usr/bin/env bash
# agent_footprint.sh BINARY MINUTES DIR - the agent's own CPU and memory, by the kernel's books.
#
# Starts `BINARY agent` with a config in DIR/cfg (interval 15 s, bundled signatures only,
# syslog off, event log and status socket under DIR), samples /proc/<pid>/stat utime + stime
# (fields 14 + 15) and /proc/<pid>/status VmHWM / VmRSS every 60 s for MINUTES minutes, stops
# the agent (SIGTERM, by pid) and prints CPU-seconds per hour from minute 1 on (start-up,
# which loads and compiles the signatures and takes the cold inventory, is excluded).
# Environment variables (MALLOC_ARENA_MAX=2, as the systemd unit sets) pass to the agent.
# The load is whatever runs on the host: `bench/run --hold --scales S` gives ~370
# processes and 1k sockets in a loopback-only namespace. Opens no network socket itself.
# With RELOADS=N (N >= 1) the agent is sent SIGHUP N times, 30 s apart from 30 s on (a reload:
# config and signatures loaded again, the old set released); the last line then also gives
# the peak before the first reload and the RSS at the end, so a reload that raises memory
# for good shows.
# INTERVAL=2s (default 15s) sets the agent's scan interval.
# With COLLECTOR_URL and ENROLL_SECRET set the agent also reports to that collector
# (machine_id footprint-<pid>); bench/agent_footprint_reporting.sh runs both ways side by
# side against a collector in a loopback-only network namespace.
set -euo pipefail
bin=${1:?usage: $0 BINARY MINUTES DIR}
mins=${2:?usage: $0 BINARY MINUTES DIR}
dir=${3:?usage: $0 BINARY MINUTES DIR}
[ "$mins" -ge 2 ] || { echo "$0: MINUTES must be at least 2" >&2; exit 2; }
mkdir -p "$dir/cfg" "$dir/state"
# The config directory is watched for changes: keep it apart from the files written here.
cat >"$dir/cfg/agent.toml" <<EOF
interval = "${INTERVAL:-15s}"
local_signatures_dir = ""
state_dir = "$dir/state"
[status]
socket = "$dir/agent.sock"
[syslog]
enabled = false
EOF
if [ -n "${COLLECTOR_URL:-}" ]; then
  cat >>"$dir/cfg/agent.toml" <<EOF
[collector]
url = "$COLLECTOR_URL"
enroll_secret = "${ENROLL_SECRET:?ENROLL_SECRET goes with COLLECTOR_URL}"
machine_id = "footprint-$$"
EOF
fi
"$bin" agent --config "$dir/cfg/agent.toml" >"$dir/agent.log" 2>&1 &
pid=$!
reloads=${RELOADS:-0}
reloader=
: >"$dir/reloads"
if [ "$reloads" -gt 0 ]; then
  (
    for _ in $(seq 1 "$reloads"); do
      sleep 30
      hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status" 2>/dev/null) || exit 0
      kill -HUP "$pid" 2>/dev/null || exit 0
      printf '%s SIGHUP VmHWM_kB_before=%s\n' "$(date +%s)" "$hwm" >>"$dir/reloads"
    done
  ) &
  reloader=$!
fi
trap 'kill -TERM "$pid" 2>/dev/null || true; [ -z "$reloader" ] || kill "$reloader" 2>/dev/null || true' EXIT
tck=$(getconf CLK_TCK)
: >"$dir/samples"
for i in $(seq 0 "$mins"); do
  [ "$i" -eq 0 ] || sleep 60
  kill -0 "$pid" 2>/dev/null || { echo "$0: the agent exited; see $dir/agent.log" >&2; exit 1; }
  # comm is "aupwatch" (no spaces), so the fields split plainly.
  read -r -a st <"/proc/$pid/stat"
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  printf '%s min=%d ticks=%d VmHWM_kB=%s VmRSS_kB=%s\n' "$(date +%s)" "$i" \
    $((st[13] + st[14])) "$hwm" "$rss" | tee -a "$dir/samples"
done
kill -TERM "$pid"
wait "$pid" || true
[ -z "$reloader" ] || wait "$reloader" 2>/dev/null || true
trap - EXIT
first=$(awk -F= 'NR == 1 {print $2}' "$dir/reloads")
awk -v tck="$tck" -v reloads="$(wc -l <"$dir/reloads")" -v before="${first:-0}" '
  { split($3, t, "="); ticks[NR] = t[2]; at[NR] = $1; split($4, h, "="); hwm = h[2]
    split($5, r, "="); rss = r[2] }
  END {
    cpu = (ticks[NR] - ticks[2]) / tck; secs = at[NR] - at[2]
    printf "steady state over %d s: %.2f CPU-s = %.2f CPU-s per hour; peak RSS (VmHWM) %.1f MB",
      secs, cpu, cpu * 3600 / secs, hwm / 1000
    if (reloads > 0)
      printf "; %d reloads: peak %.1f MB before the first, RSS %.1f MB at the end",
        reloads, before / 1000, rss / 1000
    printf "\n"
  }' "$dir/samples"
