"""The permission-change webhook's receiver for the benchmark drivers: records when idsync's
POST named each user, so a driver can tell how long a change took to be announced.
Standard library only."""

import http.server
import json
import threading
import time

_seen = {}
_lock = threading.Lock()


class _Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        now = time.monotonic()
        with _lock:
            for change in body.get("changes", body.get("users", [])):
                name = change.get("username") if isinstance(change, dict) else change
                _seen.setdefault(name, []).append(now)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def start(port):
    """Receives the webhook's POSTs on 127.0.0.1:port, in a background thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def wait(name, after, deadline_s=120):
    """The first time (time.monotonic) at or after `after` a POST named `name`, or None when
    none came within the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        with _lock:
            seen = [t for t in _seen.get(name, []) if t >= after]
        if seen:
            return seen[0]
        time.sleep(0.005)
    return None
