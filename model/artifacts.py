"""Where trained models are kept, and how a file is written and checked (no knowledge of any model).

A model is a joblib file beside a JSON manifest (sha256, library versions, snapshot, horizon, the
procedure's version and its headline figures). Writing goes through a temporary file and os.replace;
loading recomputes the sha256 and compares versions before anything is unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import joblib

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
#: Libraries whose version must match the one the model was trained with (a pickle is not portable).
PINNED_LIBRARIES = ("scikit-learn", "numpy", "joblib")


class ModelUnavailable(RuntimeError):
    """No trustworthy model: the message says why and what to do. Pages keep working without it."""


def artifact_dir() -> Path:
    """Where trained models live: $STOPHER2_MODEL_DIR, else model/artifacts."""
    return Path(os.environ.get("STOPHER2_MODEL_DIR", ARTIFACT_DIR))


def artifact_paths(snapshot_id: str, horizon: int, folder: Path | None = None) -> tuple[Path, Path]:
    folder = Path(folder or artifact_dir())
    stem = f"{snapshot_id}-h{horizon}"
    return folder / f"{stem}.joblib", folder / f"{stem}.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(obj, manifest: dict, snapshot_id: str, horizon: int, folder: Path | None = None) -> tuple[Path, Path]:
    """Write the joblib file, then its manifest (with the file's sha256), each atomically."""
    path, manifest_path = artifact_paths(snapshot_id, horizon, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump(obj, tmp, compress=3)
    tmp.replace(path)
    manifest = {**manifest, "file": path.name, "sha256": sha256_file(path), "snapshot_id": snapshot_id,
                "horizon_months": horizon}
    tmp = manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(manifest_path)
    return path, manifest_path


def read_manifest(snapshot_id: str, horizon: int, folder: Path | None = None) -> dict:
    path, manifest_path = artifact_paths(snapshot_id, horizon, folder)
    if not manifest_path.exists() or not path.exists():
        raise ModelUnavailable(f"no model has been trained on snapshot {snapshot_id} for {horizon} months "
                               "(`python -m model train`)")
    return json.loads(manifest_path.read_text())


def load_verified(snapshot_id: str, horizon: int, *, procedure_version: str, library_versions: dict,
                  expected_type: type, folder: Path | None = None):
    """The stored object after checking its sha256, the procedure's version and the pinned libraries."""
    manifest = read_manifest(snapshot_id, horizon, folder)
    path, _ = artifact_paths(snapshot_id, horizon, folder)
    if sha256_file(path) != manifest["sha256"]:
        raise ModelUnavailable(f"the model file {path.name} does not match its manifest (sha256): it was "
                               "changed after training and will not be loaded; retrain with `python -m model train`")
    if manifest.get("model_version") != procedure_version:
        raise ModelUnavailable(f"the model was made by version {manifest.get('model_version')} of the training "
                               f"procedure, this installation is version {procedure_version}; retrain with "
                               "`python -m model train`")
    for lib in PINNED_LIBRARIES:
        if manifest["versions"].get(lib) != library_versions[lib]:
            raise ModelUnavailable(f"the model was trained with {lib} {manifest['versions'].get(lib)}, this "
                                   f"installation has {library_versions[lib]}; retrain with `python -m model train`")
    if manifest["snapshot_id"] != snapshot_id or manifest["horizon_months"] != horizon:
        raise ModelUnavailable("the model's manifest names another snapshot or horizon")
    obj = joblib.load(path)
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
