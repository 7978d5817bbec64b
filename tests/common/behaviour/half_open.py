"""Half-open TCP connections on loopback, for scan tests.

tarpit N: listens on 127.0.0.1:20001..20000+N with a backlog of 0 and fills each accept
queue with one connection it never accepts, so further SYNs are dropped and connectors stay
in SYN_SENT. Prints "ready".
sweep N: connects (non-blocking) to each of those ports and holds the sockets: a scan.
"""
import socket
import sys
import time

mode, n = sys.argv[1], int(sys.argv[2])
ports = range(20001, 20001 + n)
keep = []
for p in ports:
    if mode == "tarpit":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", p))
        listener.listen(0)
        keep.append(listener)
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", p))
    except BlockingIOError:
        pass
    keep.append(c)
print("ready", flush=True)
time.sleep(600)
