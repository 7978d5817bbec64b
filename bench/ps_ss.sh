#!/bin/bash
# The ps + ss contender: the same inventory with the standard tools.
#
#   bench/ps_ss.sh           output to /dev/null (what is timed)
#   bench/ps_ss.sh --count   print "processes=N netns=K sockets=M" instead
#
# ps lists every process (with its ns/net inode, so the network namespaces are known
# without another walk of /proc); ss only sees the namespace it runs in, so it runs once
# per network namespace, entered through the first pid seen in it with nsenter.  ss -p
# walks every process's fd directory on each run to name socket owners.
set -u
count=0
[ "${1:-}" = --count ] && count=1
pslist=$(mktemp /tmp/aupbench-ps.XXXXXX)
trap 'rm -f "$pslist"' EXIT
ps -eo netns=,pid=,ppid=,uid=,comm=,args= >"$pslist"
# first pid of each network namespace (kernel threads show "-")
mapfile -t nspids < <(awk '$1 != "-" && !($1 in s) { s[$1]; print $2 }' "$pslist")
sockets=0
for pid in "${nspids[@]}"; do
  if [ "$count" = 1 ]; then
    n=$(nsenter --net="/proc/$pid/ns/net" ss -tuanpe -H 2>/dev/null | wc -l)
    sockets=$((sockets + n))
  else
    nsenter --net="/proc/$pid/ns/net" ss -tuanpe >/dev/null 2>&1 || true
  fi
done
if [ "$count" = 1 ]; then
  echo "processes=$(wc -l <"$pslist") netns=${#nspids[@]} sockets=$sockets"
fi
