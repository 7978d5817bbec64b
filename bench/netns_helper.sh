#!/usr/bin/env bash
# What the network-namespace helper costs: `aupwatch inventory` (one cold inventory, every
# namespace's sockets read once) on a host with K extra loopback-only namespaces, each with one
# listener (microsocks on 127.0.0.1), three ways, interleaved round by round:
#   setns   root, entering each namespace itself (CAP_SYS_ADMIN)
#   helper  an unprivileged user with the agent's two capabilities, sockets from
#           `aupwatch netns-helper` (running with CAP_SYS_ADMIN only; its CPU counted too)
#   procnet the same user without the helper: /proc/<pid>/net text for foreign namespaces
# Prints per way the median and min-max of wall time and CPU (user+sys), and what each saw.
#
# Usage, as root, from the repository root: bench/netns_helper.sh [K] [ROUNDS] [BINARY]
# (defaults 20, 7, target/release/aupwatch). Everything it starts is killed by pid and the
# namespaces are deleted at exit.
set -euo pipefail
K="${1:-20}"
ROUNDS="${2:-7}"
BIN="$(realpath "${3:-${CARGO_TARGET_DIR:-target}/release/aupwatch}")"
USER_ID=64321
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for p in microsocks setpriv ip nsenter python3; do
  command -v "$p" >/dev/null || { echo "missing: $p" >&2; exit 1; }
done
DIR="$(mktemp -d /tmp/aupw-nsbench-XXXXXX)"
chmod 755 "$DIR"
cp "$BIN" "$DIR/aupwatch"  # reachable by the unprivileged user
chmod 755 "$DIR/aupwatch"
PIDS=()
NAMES=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NAMES[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
for i in $(seq 1 "$K"); do
  n="aupnsb-$$-$i"
  ip netns add "$n"
  ip -n "$n" link set lo up
  [ "$(ip -n "$n" -o link show | wc -l)" = 1 ] || { echo "$n: not loopback-only" >&2; exit 1; }
  NAMES+=("$n")
  nsenter --net="/run/netns/$n" -- microsocks -i 127.0.0.1 -p 1080 >/dev/null 2>&1 &
  PIDS+=("$!")
done
setpriv --bounding-set=-all,+sys_admin --inh-caps=-all,+sys_admin -- \
  "$DIR/aupwatch" netns-helper --socket "$DIR/netns.sock" --allow "$USER_ID" --idle-exit 0 \
  2>"$DIR/helper.log" &
HELPER=$!
PIDS+=("$HELPER")
for _ in $(seq 100); do [ -S "$DIR/netns.sock" ] && break; sleep 0.05; done
chown "root:$USER_ID" "$DIR/netns.sock"
sleep 0.5

python3 - "$DIR" "$HELPER" "$ROUNDS" "$USER_ID" <<'EOF'
import json, os, resource, statistics, subprocess, sys, time
d, helper, rounds, uid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
bin_ = f"{d}/aupwatch"
agent = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
         "--inh-caps=-all,+sys_ptrace,+dac_read_search",
         "--ambient-caps=-all,+sys_ptrace,+dac_read_search", "--"]
ways = {
    "setns":   [bin_, "inventory", "--netns-helper", f"{d}/absent.sock"],
    "helper":  agent + [bin_, "inventory", "--netns-helper", f"{d}/netns.sock"],
    "procnet": agent + [bin_, "inventory", "--netns-helper", f"{d}/absent.sock"],
}
def helper_cpu():
    f = open(f"/proc/{helper}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def run(cmd):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN); h0 = helper_cpu(); t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    wall = time.monotonic() - t0; r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, helper_cpu() - h0, json.loads(out)
def seen(doc):
    src = {}
    for s in doc["socket_sources"]:
        src[s["source"]] = src.get(s["source"], 0) + 1
    return f'{len(doc["sockets"])} sockets, sources {src}'
res = {w: [] for w in ways}
names = list(ways)
for w in names:  # warm-up, and what each sees
    print(f"{w:8} saw {seen(run(ways[w])[3])}")
for r in range(rounds):
    order = names[r % 3:] + names[:r % 3]
    for w in order:
        res[w].append(run(ways[w])[:3])
print(f"\n{rounds} rounds, order rotated each round; medians (min-max)")
print("| way | wall ms | CPU ms (agent side) | helper CPU ms |")
print("|---|---|---|---|")
for w in names:
    wall = [x[0] * 1000 for x in res[w]]; cpu = [x[1] * 1000 for x in res[w]]; h = [x[2] * 1000 for x in res[w]]
    fmt = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
    print(f"| {w} | {fmt(wall)} | {fmt(cpu)} | {fmt(h)} |")
# The helper's CPU in clock ticks is coarse per run: its total over all timed helper runs,
# per request (one request per foreign namespace and run).
k = sum(1 for s in run(ways["setns"])[3]["socket_sources"]) - 1
total = sum(x[2] for x in res["helper"])
print(f"\nhelper CPU over {rounds} runs x {k} requests: {total*1000:.0f} ms, "
      f"{total*1e6/(rounds*k):.0f} us per request")
EOF
