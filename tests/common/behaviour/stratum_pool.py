"""A small Stratum mining pool for tests: one JSON-RPC object per line over TCP.

Answers mining.subscribe, mining.authorize (and logs "authorized <worker>"), sends one
mining.notify job, accepts every mining.submit. Listens on 127.0.0.1 only.
Usage: stratum_pool.py PORT
"""
import json
import socketserver
import sys


class Miner(socketserver.StreamRequestHandler):
    def handle(self):
        for raw in self.rfile:
            try:
                msg = json.loads(raw)
            except ValueError:
                return
            method, mid = msg.get("method"), msg.get("id")
            if method == "mining.subscribe":
                reply = {"id": mid, "result": [[["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]], "08000002", 4], "error": None}
            elif method == "mining.authorize":
                reply = {"id": mid, "result": True, "error": None}
                print("authorized", msg.get("params", ["?"])[0], flush=True)
            elif method == "mining.submit":
                reply = {"id": mid, "result": True, "error": None}
            else:
                reply = {"id": mid, "result": None, "error": [20, "unknown method", None]}
            self.wfile.write((json.dumps(reply) + "\n").encode())
            if method == "mining.authorize":
                job = {"id": None, "method": "mining.notify", "params": ["job1", "00" * 32, "01", "02", [], "20000000", "1d00ffff", "5f5e1000", True]}
                self.wfile.write((json.dumps(job) + "\n").encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Miner) as s:
        print("listening", flush=True)
        s.serve_forever()
