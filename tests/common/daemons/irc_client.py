"""A minimal IRC client for tests/daemons.rs: registers with the server on 127.0.0.1,
joins a channel, prints WELCOMED, then stays connected answering PINGs until killed.
Usage: irc_client.py PORT NICK"""
import socket
import sys

port, nick = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :aupwatch test\r\n".encode())
sock.settimeout(None)
buf = b""
welcomed = False
while True:
    data = sock.recv(4096)
    if not data:
        print("server closed the connection", flush=True)
        sys.exit(1)
    buf += data
    while b"\r\n" in buf:
        line, buf = buf.split(b"\r\n", 1)
        parts = line.split(b" ")
        if parts[0] == b"PING":
            sock.sendall(b"PONG " + b" ".join(parts[1:]) + b"\r\n")
        elif len(parts) > 1 and parts[1] == b"001" and not welcomed:
            welcomed = True
            sock.sendall(b"JOIN #aupwatch\r\n")
            print("WELCOMED", flush=True)
