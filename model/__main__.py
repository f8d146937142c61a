"""`python -m model train [--horizon H]`; `python -m model evaluate --synthetic-check`."""
from __future__ import annotations

import argparse
import json
import sys

from data.clinical import DEFAULT_HORIZON, HORIZONS


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the model on the live snapshot and save it with its manifest")
    t.add_argument("--horizon", type=int, choices=HORIZONS, default=DEFAULT_HORIZON,
                   help=f"months (default {DEFAULT_HORIZON})")
    t.add_argument("--boot", type=int, default=200, help="bootstrap refits (>= 200 for the intervals)")
    e = sub.add_parser("evaluate", help="benchmarks of the whole procedure (not part of the tests)")
    e.add_argument("--synthetic-check", action="store_true", required=True,
                   help="against the generator's true probabilities")
    e.add_argument("--large", type=int, default=20000, help="patients in the large cohort")
    e.add_argument("--repeats", type=int, default=200, help="trial-size repetitions for interval coverage")
    e.add_argument("--boot", type=int, default=200, help="bootstrap refits per repetition")
    e.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    if args.command == "train":
        from data.store import Snapshot, SnapshotMissing, snapshot_path
        from services import models

        if args.boot < 200:
            print("note: fewer than 200 bootstrap refits; intervals will be rough", file=sys.stderr)
        try:
            snap = Snapshot(snapshot_path())
        except SnapshotMissing as exc:
            print(exc, file=sys.stderr)
            return 2
        try:
            manifest = models.train_and_save(snap, args.horizon, progress=_progress, n_boot=args.boot)
        except ValueError as exc:  # too few patients or events: one sentence, not a traceback
            print(f"cannot train: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(manifest, indent=2))
        return 0

    from model.synthetic_check import run

    print(json.dumps(run(args.large, args.repeats, args.boot, args.jobs, progress=_progress), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
