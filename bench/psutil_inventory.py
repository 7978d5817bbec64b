#!/usr/bin/python3
"""The psutil contender: the same inventory as aupwatch, the way a Python tool would take it.

  /usr/bin/python3 bench/psutil_inventory.py

process_iter() with the attributes aupwatch records (pid, ppid, uids, name, cmdline, exe,
cpu_times, num_threads, nice, memory_info) plus, by hand because psutil has no API for
them, the ns/net link and /proc/<pid>/cgroup.  Then, because psutil (like ss) only sees the
sockets of the network namespace it runs in, it setns()es into each network namespace in turn
(through the first pid seen in it) and calls psutil.net_connections("inet") there, which
reads that namespace's tcp/tcp6/udp/udp6 tables and joins them to pids by walking every
process's fd directory.  Prints only counts, one line on stdout.
"""
import ctypes
import os
import sys

import psutil

CLONE_NEWNET = 0x40000000
ATTRS = ["pid", "ppid", "uids", "name", "cmdline", "exe", "cpu_times", "num_threads", "nice", "memory_info"]


def main() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    procs = 0
    namespaces: dict[str, int] = {}
    for p in psutil.process_iter(ATTRS, ad_value=None):
        procs += 1
        pid = p.info["pid"]
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
            with open(f"/proc/{pid}/cgroup", "rb") as f:
                f.read()
        except OSError:
            continue
        namespaces.setdefault(ns, pid)

    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    sockets = joined = unread = 0
    try:
        for ns, pid in namespaces.items():
            try:
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            except OSError:
                unread += 1
                continue
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    unread += 1
                    continue
            finally:
                os.close(fd)
            for c in psutil.net_connections("inet"):
                sockets += 1
                if c.pid is not None:
                    joined += 1
    finally:
        if libc.setns(own, CLONE_NEWNET) != 0:
            print("psutil_inventory: cannot return to own namespace", file=sys.stderr)
    print(f"processes={procs} netns={len(namespaces)} netns_unread={unread} sockets={sockets} joined={joined}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
