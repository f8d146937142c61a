"""Who may fetch an export's file: a download belongs to the browser that clicked for it.

Streamlit hands an export over at an `/media/<id>.<ext>` URL and serves that URL to anyone who asks, with
no cookie and no sign-in. In a deployment (deploy/) nginx asks `deploy/gate.py` before it passes such a
request on, and the gate answers from here:

* at the click, after the export's audit record, the app grants the file to the browser that clicked,
  named by its browser cookie (`BROWSER_COOKIE`, a random 128-bit value nginx sets; stored here only as
  its SHA-256, so this file cannot be used to impersonate anyone);
* the gate lets a request through only with a grant for that file and that cookie, not older than
  `GRANT_MINUTES`, and writes an `export_download` audit record before it does; without a record no file.

Kept beside the audit trail in an SQLite file ($STOPHER2_DOWNLOADS_DB, else downloads.sqlite next to the
audit file), or in the PostgreSQL database $STOPHER2_DATABASE_URL names (data/shared.py): every replica and
the gate share it, as they share the audit trail (the click may reach one host and the fetch another).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from data import audit, shared

#: Set by nginx (deploy/nginx.conf.template) on every response: a random value per browser.
BROWSER_COOKIE = "stopher2_browser"
#: A download link works this long after the click (long enough for a slow connection, short enough that a
#: copied link is useless later).
GRANT_MINUTES = 15
#: The browser cookie's shape ($request_id: 32 hex digits); nginx replaces a value of any other shape.
BROWSER_TOKEN = re.compile(r"^[0-9a-f]{32}$")
#: What a Streamlit download URL looks like: anything else is refused without a lookup.
MEDIA_PATH = re.compile(r"^/media/(?P<file_id>[0-9a-f]{16,128})\.[A-Za-z0-9]{1,10}$")
_GRANTS = """
CREATE TABLE IF NOT EXISTS grants (
    file_id TEXT NOT NULL, browser TEXT NOT NULL, granted_at TEXT NOT NULL,
    who TEXT NOT NULL, role TEXT NOT NULL, patient_id TEXT, snapshot_id TEXT, detail TEXT
);
CREATE INDEX IF NOT EXISTS grants_file ON grants (file_id, browser);
"""
SCHEMA = shared.Schema("downloads", _GRANTS, _GRANTS)  # plain SQL both backends read alike
#: nginx adds this header, with the deployment's gate secret, to every request it passes on (deploy/): a
#: browser that reaches a replica without nginx cannot know the secret, and its downloads would not be gated.
GATE_HEADER = "X-Stopher2-Gate"
GATE_SECRET_ENV = "STOPHER2_GATE_SECRET"


def behind_the_gate(headers) -> bool:
    """Did this session come through the deployment's nginx (so that its downloads are gated)?"""
    secret = os.environ.get(GATE_SECRET_ENV, "")
    try:
        presented = str(headers.get(GATE_HEADER, "") or "")
    except Exception:  # noqa: BLE001 - no request headers at all (AppTest, a bare script): not behind it
        return False
    return bool(secret) and hmac.compare_digest(presented.encode(), secret.encode())


class DownloadsUnavailable(RuntimeError):
    """The grants file cannot be read or written: no download is let through."""


def downloads_path() -> Path:
    configured = os.environ.get("STOPHER2_DOWNLOADS_DB")
    return Path(configured) if configured else audit.audit_path().with_name("downloads.sqlite")


def browser_token(cookie_value) -> str | None:
    """The browser cookie's value when it has the shape nginx gives it (32 hex digits), else None."""
    return cookie_value if isinstance(cookie_value, str) and BROWSER_TOKEN.match(cookie_value) else None


def _browser(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def _connect(path: Path | None) -> shared.Connection:
    return shared.connect(path or downloads_path(), SCHEMA)


def streamlit_file_id(payload: bytes, mime: str, file_name: str) -> str:
    """The id in the `/media` URL Streamlit will serve these bytes at (the download button's deferred
    file: its bytes, the button's mime type and file name). Streamlit computes it; this asks the same
    function, so a Streamlit upgrade that changes it shows as a refused download in the deploy tests,
    never as an open one."""
    from streamlit.runtime.memory_media_file_storage import _calculate_file_id

    return _calculate_file_id(payload, mime, file_name)


def grant(file_id: str, cookie_value: str, who: str, role: str, detail: str, patient_id: str | None = None,
          snapshot_id: str | None = None, path: Path | None = None, now: datetime | None = None) -> None:
    """Let this browser fetch this file for GRANT_MINUTES; grants past that are deleted here (only a live grant
    is ever looked up, and the click itself is in the audit trail), so the table holds minutes, not years."""
    now = now or datetime.now(UTC)
    try:
        con = _connect(path)
        try:
            con.execute("INSERT INTO grants VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (file_id, _browser(cookie_value), now.isoformat(timespec="seconds"), who,
                         role, patient_id, snapshot_id, detail))
            con.execute("DELETE FROM grants WHERE granted_at < ?",
                        ((now - timedelta(minutes=GRANT_MINUTES)).isoformat(timespec="seconds"),))
            if con.postgres:
                con.commit()  # SQLite's connection commits each statement itself (autocommit)
        finally:
            con.close()
    except (*shared.ERRORS, OSError) as exc:
        raise DownloadsUnavailable(f"the download grants cannot be written ({type(exc).__name__}: {exc})") from exc


def granted(url_path: str, cookie_value: str | None, path: Path | None = None,
            now: datetime | None = None) -> dict | None:
    """The grant that lets this browser fetch this URL now, or None."""
    match = MEDIA_PATH.match(url_path or "")
    if not match or not browser_token(cookie_value):
        return None
    since = ((now or datetime.now(UTC)) - timedelta(minutes=GRANT_MINUTES)).isoformat(timespec="seconds")
    try:
        con = _connect(path)
        try:
            rows = con.execute("SELECT who, role, patient_id, snapshot_id, detail FROM grants "
                               "WHERE file_id = ? AND browser = ? AND granted_at >= ? ORDER BY granted_at DESC LIMIT 1",
                               (match["file_id"], _browser(cookie_value), since))
        finally:
            con.close()
    except (*shared.ERRORS, OSError) as exc:
        raise DownloadsUnavailable(f"the download grants cannot be read ({type(exc).__name__}: {exc})") from exc
    return dict(zip(("who", "role", "patient_id", "snapshot_id", "detail"), rows[0], strict=True)) if rows else None
