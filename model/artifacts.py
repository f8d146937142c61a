"""Where trained models are kept, and how a file is written and checked (no knowledge of any model).

A model is a joblib file beside a JSON manifest (sha256 of the file, library versions, snapshot, horizon,
the procedure's version and its headline figures). The manifest is signed (HMAC-SHA256 with the
deployment's key: $STOPHER2_MODEL_KEY, at least 32 characters; without it a random key made at first
use in the model folder, mode 0600). Loading checks, in this order and before anything is unpickled:
the manifest reads and names this snapshot and horizon, its signature is this deployment's, the file's
sha256 is the signed one, the procedure and library versions match. A pickle runs code when loaded, so
an unsigned or re-hashed file is refused before it is opened.

Saving is atomic without a window: the joblib file gets a name of its own (its sha256), then the
manifest that names it replaces the old one in one rename; a kill at any point leaves the old model
whole or the new one, and the file the old manifest named is removed only after the swap.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import joblib

from data.keyfile import KeyFileDamaged, local_key

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
#: Libraries whose version must match the one the model was trained with (a pickle is not portable).
PINNED_LIBRARIES = ("scikit-learn", "numpy", "joblib")
KEY_ENV = "STOPHER2_MODEL_KEY"
MIN_KEY_CHARS = 32
REQUIRED = ("file", "sha256", "snapshot_id", "horizon_months", "model_version", "versions", "signature")


class ModelUnavailable(RuntimeError):
    """No trustworthy model: the message says why and what to do. Pages keep working without it."""


def artifact_dir() -> Path:
    """Where trained models live: $STOPHER2_MODEL_DIR, else model/artifacts."""
    return Path(os.environ.get("STOPHER2_MODEL_DIR", ARTIFACT_DIR))


def _stem(snapshot_id: str, horizon) -> str:
    return f"{snapshot_id}-h{horizon}"


def artifact_paths(snapshot_id: str, horizon: int, folder: Path | None = None) -> tuple[Path, Path]:
    """(the model file the manifest names, the manifest); the file is the plain stem when there is no manifest."""
    folder = Path(folder or artifact_dir())
    manifest_path = folder / f"{_stem(snapshot_id, horizon)}.json"
    try:
        named = json.loads(manifest_path.read_text()).get("file")
    except (OSError, ValueError, AttributeError):
        named = None
    if not isinstance(named, str) or Path(named).name != named or not named.endswith(".joblib"):
        named = f"{_stem(snapshot_id, horizon)}.joblib"
    return folder / named, manifest_path


def signing_key(folder: Path | None = None) -> bytes:
    configured = os.environ.get(KEY_ENV)
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise ModelUnavailable(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters")
        return configured.encode("utf-8")
    folder = Path(folder or artifact_dir())
    try:
        return local_key(folder / ".signing_key", MIN_KEY_CHARS)
    except KeyFileDamaged as exc:
        raise ModelUnavailable(str(exc)) from exc


def signature(manifest: dict, folder: Path | None = None) -> str:
    body = json.dumps({k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True, default=str)
    return hmac.new(signing_key(folder), body.encode("utf-8"), hashlib.sha256).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write(obj, manifest: dict, snapshot_id: str, horizon: int, folder: Path | None = None) -> tuple[Path, Path]:
    """Write the model under a name of its own, then swap in its signed manifest (see the module's note)."""
    folder = Path(folder or artifact_dir())
    folder.mkdir(parents=True, exist_ok=True)
    old_file, manifest_path = artifact_paths(snapshot_id, horizon, folder)
    tmp = folder / f".{_stem(snapshot_id, horizon)}.{os.getpid()}.joblib.tmp"
    joblib.dump(obj, tmp, compress=3)
    sha = sha256_file(tmp)
    path = folder / f"{_stem(snapshot_id, horizon)}.{sha[:16]}.joblib"
    os.replace(tmp, path)
    manifest = {**manifest, "file": path.name, "sha256": sha, "snapshot_id": snapshot_id, "horizon_months": horizon}
    manifest["signature"] = signature(manifest, folder)
    _replace_text(manifest_path, json.dumps(manifest, indent=2, default=str))
    if old_file != path and old_file.exists():
        old_file.unlink(missing_ok=True)
    return path, manifest_path


def resign(manifest_path: Path, folder: Path | None = None) -> None:
    """Sign an edited manifest again (for an operator who knows what they changed; tests use it)."""
    manifest = json.loads(Path(manifest_path).read_text())
    manifest["signature"] = signature(manifest, folder or Path(manifest_path).parent)
    _replace_text(Path(manifest_path), json.dumps(manifest, indent=2, default=str))


def read_manifest(snapshot_id: str, horizon: int, folder: Path | None = None) -> dict:
    """The manifest, readable and complete, or ModelUnavailable saying what is wrong (nothing is unpickled)."""
    path, manifest_path = artifact_paths(snapshot_id, horizon, folder)
    if not manifest_path.exists():
        raise ModelUnavailable(f"no model has been trained on snapshot {snapshot_id} for {horizon} months "
                               "(`python -m model train`)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"the model's manifest {manifest_path.name} cannot be read ({exc}); the model will "
                               "not be loaded: retrain it") from exc
    if not isinstance(manifest, dict) or any(k not in manifest for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(manifest, dict) or k not in manifest]
        raise ModelUnavailable(f"the model's manifest {manifest_path.name} is incomplete (no {', '.join(missing)}); "
                               "the model will not be loaded: retrain it")
    if not path.exists():
        raise ModelUnavailable(f"the model file {path.name} named by its manifest is missing: retrain it")
    return manifest


def load_verified(snapshot_id: str, horizon: int, *, procedure_version: str, library_versions: dict,
                  expected_type: type, folder: Path | None = None):
    """The stored object, after every check in the module's note; ModelUnavailable with the reason otherwise."""
    manifest = read_manifest(snapshot_id, horizon, folder)
    path, manifest_path = artifact_paths(snapshot_id, horizon, folder)
    if manifest["snapshot_id"] != snapshot_id or str(manifest["horizon_months"]) != str(horizon):
        raise ModelUnavailable("the model's manifest names another snapshot or horizon: it will not be loaded")
    if not hmac.compare_digest(str(manifest.get("signature")), signature(manifest, manifest_path.parent)):
        raise ModelUnavailable(f"the model's manifest {manifest_path.name} is not signed by this deployment: it was "
                               "changed or made elsewhere, and will not be loaded; retrain with `python -m model train`")
    if sha256_file(path) != manifest["sha256"]:
        raise ModelUnavailable(f"the model file {path.name} does not match its manifest (sha256): it was "
                               "changed after training and will not be loaded; retrain with `python -m model train`")
    if manifest.get("model_version") != procedure_version:
        raise ModelUnavailable(f"the model was made by version {manifest.get('model_version')} of the training "
                               f"procedure, this installation is version {procedure_version}; retrain with "
                               "`python -m model train`")
    versions = manifest["versions"] if isinstance(manifest["versions"], dict) else {}
    for lib in PINNED_LIBRARIES:
        if versions.get(lib) != library_versions[lib]:
            raise ModelUnavailable(f"the model was trained with {lib} {versions.get(lib)}, this "
                                   f"installation has {library_versions[lib]}; retrain with `python -m model train`")
    try:
        obj = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - a signed file that will not load is still one sentence
        raise ModelUnavailable(f"the model file {path.name} cannot be loaded ({type(exc).__name__}): retrain it") from exc
    if not isinstance(obj, expected_type):
        raise ModelUnavailable(f"{path.name} does not hold a trained STOP-HER2 model")
    return obj


def manifests(folder: Path | None = None) -> list[dict]:
    """Every manifest in the folder, newest first (unreadable ones are skipped, not fatal)."""
    out = []
    folder = Path(folder or artifact_dir())
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out
