"""The download gate nginx asks before it passes on a `/media/...` request (auth_request).

200 when this browser was granted this file at the click (data/downloads.py) and the download is on
record (`export_download` in the audit trail); 403 otherwise; 503 when the grants or the audit trail
cannot be read or written (fail closed: nginx then serves no file). Listens on 127.0.0.1 only: nginx is
its one client.
"""
from __future__ import annotations

import logging
import threading
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from data import audit, downloads

_LOG = logging.getLogger("stopher2.gate")


def decide(url_path: str, cookie_header: str) -> int:
    """The HTTP status for one request: nothing here raises."""
    try:
        jar = SimpleCookie(cookie_header or "")
    except CookieError:
        return 403
    morsel = jar.get(downloads.BROWSER_COOKIE)
    try:
        grant = downloads.granted(url_path, morsel.value if morsel else None)
        if grant is None:
            _LOG.warning("download refused: %s (no grant for this browser)", url_path[:200])
            return 403
        audit.record(grant["who"], grant["role"], "export_download", patient_id=grant["patient_id"],
                     snapshot_id=grant["snapshot_id"], detail=grant["detail"])
    except (downloads.DownloadsUnavailable, audit.AuditUnavailable) as exc:
        _LOG.error("download refused, cannot record it: %s", exc)
        return 503
    return 200


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the standard library's name
        status = decide(self.headers.get("X-Original-URI", ""), self.headers.get("Cookie", ""))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):  # nginx's access log already has every request
        pass


def serve(port: int) -> ThreadingHTTPServer:
    """Start the gate in a daemon thread; `.shutdown()` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, name="download-gate", daemon=True).start()
    return server
