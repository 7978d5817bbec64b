# A scripted stand-in for the collector, for tests/reporting.rs: listens on 127.0.0.1 (inside
# the test's loopback-only network namespace), forwards to the real collector, and answers
# report requests as its script says, one action per report request, in order:
#   pass       forward (and the answer back)
#   503 / 429  answer with Retry-After (3 s / 2 s), forward nothing
#   413        answer 413 to a batch of 2+ reports (a single report is forwarded, the action
#              waits for a batch)
#   reset      forward (the collector stores it), then send half an answer and reset the
#              connection (RST)
#   401        answer unknown_key, forward nothing: the agent enrolls again
#   400        answer bad_document, forward nothing; consumed by a single-report request
#              (a batch is refused too, so the agent splits it to find the report at fault)
# Every request is logged as one JSON line: time, path, action, report ids and sequences.
import gzip, http.client, http.server, json, socket, struct, sys, threading, time

listen_port, upstream_port, script, log_path = (
    int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4])
actions = [a for a in script if a]
lock = threading.Lock()
log = open(log_path, "a", buffering=1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def answer(self, status, doc, extra=()):
        data = json.dumps(doc).encode() if not isinstance(doc, bytes) else doc
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def forward(self, body):
        c = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("authorization", "content-type", "content-encoding")}
        c.request("POST", self.path, body, headers)
        r = c.getresponse()
        data = r.read()
        extra = [("Retry-After", r.getheader("Retry-After"))] if r.getheader("Retry-After") else []
        c.close()
        return r.status, data, extra

    def do_POST(self):
        body = self.body()
        entry = {"t": time.time(), "path": self.path, "action": "pass"}
        n = 0
        if self.path.endswith("/report"):
            try:
                raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                doc = json.loads(raw)
                entry["ids"] = [r["report_id"] for r in doc["reports"]]
                entry["seqs"] = [r["sequence"] for r in doc["reports"]]
                n = len(doc["reports"])
            except Exception as e:  # noqa: BLE001
                entry["error"] = str(e)
            with lock:
                action = actions[0] if actions else "pass"
                if action == "413" and n < 2:
                    action = "pass"
                elif action == "400" and n > 1:
                    action = "400-batch"  # refused, not consumed
                elif actions:
                    actions.pop(0)
            entry["action"] = action
        else:
            action = "pass"
        log.write(json.dumps(entry) + "\n")
        if action == "503":
            self.answer(503, {"code": "busy", "error": "scripted"}, [("Retry-After", "3")])
        elif action == "429":
            self.answer(429, {"code": "busy", "error": "scripted"}, [("Retry-After", "2")])
        elif action == "413":
            self.answer(413, {"code": "too_large", "error": "scripted"})
        elif action == "401":
            self.answer(401, {"code": "unknown_key", "error": "scripted"})
        elif action in ("400", "400-batch"):
            self.answer(400, {"code": "bad_document", "error": "scripted"})
        elif action == "reset":
            self.forward(body)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 400\r\n\r\n{\"schema_version\":1,\"resu")
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        else:
            status, data, extra = self.forward(body)
            self.answer(status, data, extra)

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):
            pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", listen_port), Handler)
print(f"standin on http://127.0.0.1:{listen_port}", file=sys.stderr, flush=True)
server.serve_forever()
