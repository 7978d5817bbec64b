"""SMTP for tests, on 127.0.0.1 only.

sink PORT: a slow SMTP server: answers every command, after a pause, and holds the session.
mailer PORT N: opens N sessions at once and walks each through HELO, MAIL FROM, RCPT TO,
DATA slowly, holding them all: one process talking to many SMTP sessions, as a bulk mailer.
"""
import socket
import socketserver
import sys
import threading
import time


class Session(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"220 sink ESMTP\r\n")
        for line in self.rfile:
            time.sleep(0.5)
            cmd = line.strip().upper()
            if cmd == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
            elif cmd == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def mail(port, i):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rwb")
    f.readline()
    for cmd in [b"HELO bulk.test", b"MAIL FROM:<offers@bulk.test>", b"RCPT TO:<user%d@example.test>" % i]:
        f.write(cmd + b"\r\n")
        f.flush()
        f.readline()
    time.sleep(600)


if sys.argv[1] == "sink":
    with Server(("127.0.0.1", int(sys.argv[2])), Session) as srv:
        print("listening", flush=True)
        srv.serve_forever()
else:
    port, n = int(sys.argv[2]), int(sys.argv[3])
    for i in range(n):
        threading.Thread(target=mail, args=(port, i), daemon=True).start()
    print("sending", flush=True)
    time.sleep(600)
