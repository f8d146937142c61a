"""A secret made once on this host and kept in a file only the server's user can read.

Used where a deployment configured no secret of its own (demo mode): the audit chain's key, the
model signing key, the pseudonym key. Several processes start together (the app, a CLI import, the
trainer's workers), so the file must appear whole or not at all: it is written under a private name,
flushed, and then hard-linked into place, which fails when another process got there first. A
reader therefore never sees a half-written or empty key (with a plain O_EXCL create it could, and a
process that read "" chained its records with an empty key).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_CHARS = 64  # 32 random bytes, hex


class KeyFileDamaged(RuntimeError):
    """The key file exists but does not hold a key: refuse rather than sign or chain with it."""


def local_key(path: Path, min_chars: int = KEY_CHARS) -> bytes:
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(KEY_CHARS // 2))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: everyone uses that one
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text().strip()
    if len(key) < min_chars:
        raise KeyFileDamaged(f"the key file {path} is damaged (it holds {len(key)} of at least {min_chars} "
                             "characters); delete it and restart, or configure a secret")
    return key.encode("utf-8")
