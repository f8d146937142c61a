"""The model's command line.

    python -m model train [--horizon H]              the day-0 classifier (kept for comparison on the card)
    python -m model estimate [--patient ID ... | --all] [--landmark-months S | --as-of YYYY-MM-DD]
                             [--horizon H] [--estimand pfs|off_therapy] [--snapshot FILE] [--model SNAPSHOT_ID]
                                                     the landmark estimate as CSV on standard output
    python -m model evaluate --synthetic-check [--estimator landmark|day-0] [--repeats N] [--variant V]
                                                     benchmarks of the whole procedure against the
                                                     generator's truth (the landmark one is stored for the card)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.clinical import DEFAULT_HORIZON, HORIZONS


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    from data.synth import VARIANTS

    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the model on the live snapshot and save it with its manifest")
    t.add_argument("--horizon", type=int, choices=HORIZONS, default=DEFAULT_HORIZON,
                   help=f"months (default {DEFAULT_HORIZON})")
    t.add_argument("--boot", type=int, default=200, help="bootstrap refits (>= 200 for the intervals)")
    x = sub.add_parser("estimate", help="the estimate as of a date (landmark model) as CSV on standard output")
    who = x.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", action="append", help="a patient id (repeat for several)")
    who.add_argument("--all", action="store_true", help="every patient of the snapshot")
    when = x.add_mutually_exclusive_group()
    when.add_argument("--landmark-months", type=float, help="S months after each patient's own day 0")
    when.add_argument("--as-of", help="YYYY-MM-DD (default: the data cut-off)")
    x.add_argument("--horizon", type=int, choices=HORIZONS, action="append",
                   help=f"months (repeat for several; default {DEFAULT_HORIZON})")
    x.add_argument("--estimand", choices=["pfs", "off_therapy"], default="pfs")
    x.add_argument("--snapshot", type=Path, help="score this snapshot file's patients (default: the live one)")
    x.add_argument("--model", help="the snapshot id whose landmark model answers (default: the scored snapshot's)")
    e = sub.add_parser("evaluate", help="benchmarks of the whole procedure (not part of the tests)")
    e.add_argument("--synthetic-check", action="store_true", required=True,
                   help="against the generator's true probabilities")
    e.add_argument("--estimator", choices=["landmark", "day-0"], default="landmark",
                   help="landmark: the estimate as of a date, stored for the model card (default); "
                        "day-0: the classifier kept for comparison")
    e.add_argument("--variant", action="append", choices=["default", *VARIANTS],
                   help="landmark: generator(s) to check (default: the default generator and every variant)")
    e.add_argument("--large", type=int, default=20000, help="day-0: patients in the large cohort")
    e.add_argument("--repeats", type=int, default=200, help="trial-size repetitions")
    e.add_argument("--boot", type=int, default=200, help="day-0: bootstrap refits per repetition")
    e.add_argument("--calibration-repeats", type=int, default=100,
                   help="landmark: trials per generator the interval calibration is measured on first "
                        "(0: keep the stored one)")
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

    if args.command == "estimate":
        return _estimate(args)

    if args.estimator == "landmark":
        from model import landmark_check

        variants = None if not args.variant else [None if v == "default" else v for v in args.variant]
        if args.calibration_repeats > 0:  # the intervals first (other seeds), then the check of them
            landmark_check.calibrate(args.calibration_repeats, args.jobs, progress=_progress)
            print(f"interval calibration stored in {landmark_check.INTERVAL_FILE}", file=sys.stderr)
        result = landmark_check.run(args.repeats, args.jobs, variants, progress=_progress)
        print(json.dumps(result, indent=1, default=float))
        print(f"stored in {landmark_check.BENCHMARK_FILE}", file=sys.stderr)
        return 0
    from model.synthetic_check import run

    print(json.dumps(run(args.large, args.repeats, args.boot, args.jobs, progress=_progress), indent=2))
    return 0


def _estimate(args) -> int:
    import pandas as pd

    from data.store import Snapshot, SnapshotMissing, snapshot_path
    from services import models

    try:
        snap = Snapshot(args.snapshot or snapshot_path())
    except (SnapshotMissing, OSError, Exception) as exc:  # noqa: BLE001 - a file that is not a snapshot
        print(f"cannot open the snapshot: {exc}", file=sys.stderr)
        return 2
    if args.as_of is not None:
        try:
            as_of = pd.Timestamp(args.as_of)
            if as_of.strftime("%Y-%m-%d") != args.as_of:
                raise ValueError
        except ValueError:
            print(f"--as-of {args.as_of!r} is not a date as YYYY-MM-DD", file=sys.stderr)
            return 2
        cutoff = pd.Timestamp(snap.info()["data_cutoff"])
        if as_of > cutoff:
            print(f"--as-of {args.as_of} is after the snapshot's data cut-off {cutoff:%Y-%m-%d}: nothing is known "
                  "then", file=sys.stderr)
            return 2
    else:
        as_of = None
    model_id = args.model or str(snap.info()["snapshot_id"])
    try:
        if args.model is None:
            models.ensure_landmark(snap, model_id)
        model = models.load_landmark(model_id)
    except models.ModelUnavailable as exc:
        print(f"no landmark model for snapshot {model_id}: {exc}", file=sys.stderr)
        return 2
    if args.patient:
        known = set(snap.query("SELECT patient_id FROM patients")["patient_id"])
        unknown = [p for p in args.patient if p not in known]
        if unknown:
            print(f"no patient with id {unknown[0]!r} in this snapshot", file=sys.stderr)
            return 2
    out = model.estimates(snap, args.horizon or [DEFAULT_HORIZON], as_of=as_of, landmark_months=args.landmark_months,
                          estimand=args.estimand, patient_ids=args.patient)
    out["as_of"] = pd.to_datetime(out["as_of"]).dt.strftime("%Y-%m-%d")
    out = out.round({"landmark_months": 2, "estimate": 4, "lower": 4, "upper": 4})
    from data.csvsafe import safe_csv

    sys.stdout.write(safe_csv(out).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
