#!/usr/bin/env python3
"""Development only: serves the dashboard's assets with sample.json answers, so the page can be
worked on without a daemon. Not used by the daemon or the tests.

    python3 tools/dashboard-dev/serve.py 8099   # then open http://127.0.0.1:8099/
"""
import json
import pathlib
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = pathlib.Path(__file__).resolve().parent
ASSETS = HERE.parent.parent / "src/daemon/http/dashboard/assets"
SAMPLE = json.loads((HERE / "sample.json").read_text())
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}


def charts():
    import datetime
    today = datetime.date.today()
    days = [(today - datetime.timedelta(days=29 - i)).isoformat() for i in range(30)]
    rnd = random.Random(14)
    series = lambda hi: [rnd.randint(0, hi) for _ in days]
    return {"days": days, "decisions": {k: series(hi) for k, hi in
            [("pass", 30), ("rewrite", 6), ("switch", 5), ("refuse", 2)]},
            "transcodes_prevented": series(8), "throttled_hours": series(5),
            "scrobbles_sent": series(12)}


class Handler(BaseHTTPRequestHandler):
    def send(self, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            path = "/assets/index.html"
        if path.startswith("/assets/"):
            f = ASSETS / path[len("/assets/"):]
            if f.is_file() and f.parent == ASSETS:
                return self.send(200, f.read_bytes(), TYPES.get(f.suffix, "text/plain"))
        if path == "/api/dashboard/summary":
            return self.send(200, SAMPLE["summary"])
        if path == "/api/dashboard/decisions":
            return self.send(200, SAMPLE["decisions"])
        if path.startswith("/api/dashboard/decisions/"):
            return self.send(200, SAMPLE["detail"])
        if path == "/api/dashboard/charts":
            return self.send(200, charts())
        return self.send(404, {"error": "not found"})

    def do_POST(self):
        return self.send(200, {"ok": True, "message": f"{self.path}: done (sample)"})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8099
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
