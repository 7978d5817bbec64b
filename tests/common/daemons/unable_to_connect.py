# An HTTP server, not a proxy, whose answer to every request (CONNECT and absolute-form GET
# included) is Tinyproxy's own error page, "500 Unable to connect": what a proxy that tried
# and failed says. tests/probe.rs: the canary sees nothing, so the probe must not call it
# open. Usage: python3 unable_to_connect.py PORT
import http.server
import sys

PAGE = (
    b"<html><head><title>500 Unable to connect</title></head><body>"
    b"<h1>Unable to connect</h1><p>Tinyproxy was unable to connect to the remote web server.</p>"
    b"</body></html>\n"
)


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        self.send_response(500, "Unable to connect")
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(PAGE)

    do_GET = do_POST = do_HEAD = do_CONNECT = answer


http.server.HTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
