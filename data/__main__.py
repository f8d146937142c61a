"""Build, import, export and roll back snapshots.

    python -m data build --source synthetic [--patients N] [--seed S] [--out PATH]
    python -m data build --source csv|sdtm|fhir|parquet|redcap PATH (any source in services/importers.py)
                         [--data-cutoff YYYY-MM-DD] [--arm-map ARM=1,ARM=2] [--mapping FILE] [--report FILE] [--out FILE]
    python -m data check --source csv|sdtm|fhir|parquet|redcap PATH [--arm-map ARM=1,ARM=2] [--mapping FILE]
                         (validate only; writes nothing)
    python -m data export --out DIR [--format csv|parquet|redcap]  (the live snapshot as a CSV bundle, Parquet by site,
                         or the STOP-HER2 REDCap project's export with its mapping)
    python -m data history | rollback SNAPSHOT_ID | parameters
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from services import importers

    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a snapshot and swap it in atomically")
    b.add_argument("--source", choices=["synthetic", *importers.names()], default="synthetic")
    b.add_argument("path", nargs="?", type=Path, help="the folder, .zip or file to import (not for synthetic)")
    b.add_argument("--data-cutoff", default=None, help="YYYY-MM-DD (default: the latest date in the data)")
    b.add_argument("--report", type=Path, default=None, help="also write the validation report (CSV) here")
    b.add_argument("--patients", type=int, default=82, help="synthetic cohort size (default 82)")
    b.add_argument("--seed", type=int, default=20230419)
    b.add_argument("--out", type=Path, default=None, help="write the snapshot to this file instead of making it the live one")
    b.add_argument("--arm-map", default=None, help="SDTM/FHIR arms to cohorts, e.g. CONT=1,STOP=2")
    b.add_argument("--mapping", type=Path, default=None, help="REDCap: the mapping CSV (else the one in PATH)")
    c = sub.add_parser("check", help="validate a source and print the report; writes nothing")
    c.add_argument("--source", choices=list(importers.names()), required=True)
    c.add_argument("path", type=Path)
    c.add_argument("--report", type=Path, default=None, help="write the report (CSV) here")
    c.add_argument("--arm-map", default=None, help="SDTM/FHIR arms to cohorts, e.g. CONT=1,STOP=2")
    c.add_argument("--mapping", type=Path, default=None, help="REDCap: the mapping CSV (else the one in PATH)")
    x = sub.add_parser("export", help="write the live snapshot's canonical tables as a CSV bundle, as Parquet or "
                                      "as a REDCap export")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--format", choices=["csv", "parquet", "redcap"], default="csv",
                   help="csv: one file per table; parquet: one folder per table, partitioned by site; redcap: the "
                        "STOP-HER2 REDCap project's export (dictionary, events, arms, records) and its mapping")
    sub.add_parser("history", help="list the kept snapshots")
    r = sub.add_parser("rollback", help="make a kept snapshot the live one again")
    r.add_argument("snapshot_id")
    sub.add_parser("parameters", help="print every synthetic-cohort parameter with its value and source")
    args = parser.parse_args(argv)
    if args.command in ("build", "rollback"):
        from data.store import clean_leftovers

        for name in clean_leftovers():
            print(f"removed {name}, left by a build or import that did not finish", file=sys.stderr)
    if args.command in ("check", "export", "history", "rollback") or \
            (args.command == "build" and args.source != "synthetic"):
        return _real_data(parser, args)
    if args.command == "parameters":
        from data.synth import parameter_table

        table = parameter_table()
        print("| parameter | value | source |\n|---|---|---|")
        for row in table.itertuples():
            print(f"| {row.name} | `{row.value}` | {row.source} |")
        return 0

    from data.build import BuildError, build_synthetic

    if args.patients < 2:
        parser.error("--patients must be at least 2")
    started = time.perf_counter()
    try:
        info = build_synthetic(args.patients, args.seed, out=args.out, progress=_progress)
    except BuildError as exc:
        print(f"build failed, the live snapshot is unchanged: {exc}", file=sys.stderr)
        return 2
    info["total_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(info, indent=2, default=str))
    return 0


def _print_report(report, path: Path | None) -> None:
    from data.csvsafe import safe_csv

    frame = report.frame()
    if path is not None:
        path.write_bytes(safe_csv(frame))
    shown = frame.head(50)
    if not shown.empty:
        print(shown.to_string(index=False), file=sys.stderr)
        if len(frame) > len(shown):
            print(f"... {len(frame) - len(shown)} more findings" + (f" in {path}" if path else ""), file=sys.stderr)


def _options(args) -> dict:
    options = {"arm_map": args.arm_map} if getattr(args, "arm_map", None) else {}
    if getattr(args, "mapping", None):
        options["mapping"] = args.mapping
    return options


def _record(action: str, snapshot_id: str, detail: str) -> None:
    """The command line changes what everyone sees: on record, as the operating-system user."""
    import getpass

    from data import audit

    try:
        audit.record(f"cli:{getpass.getuser()}", "operator", action, snapshot_id=snapshot_id, detail=detail)
    except audit.AuditUnavailable as exc:
        print(f"done, but NOT on record: {exc}", file=sys.stderr)


def _real_data(parser, args) -> int:
    from data import importing
    from data.store import Snapshot, SnapshotMissing, snapshot_path
    from data.validate import ImportRejected

    try:
        if args.command == "history":
            print(importing.history().to_string(index=False))
        elif args.command == "rollback":
            path = importing.rollback(args.snapshot_id)
            _record("rollback", args.snapshot_id, f"rolled back to {args.snapshot_id} (command line)")
            print(f"live snapshot is now {path.name}")
        elif args.command == "export":
            from data.bundle import export_bundle
            from data.importers import parquet, redcap_export

            write = {"parquet": parquet.export, "redcap": redcap_export.export}.get(args.format, export_bundle)
            for path in write(Snapshot(snapshot_path()), args.out):
                print(path)
        elif args.command == "check":
            _, report = importing.check(args.source, args.path, options=_options(args), keep_tables=False)
            _print_report(report, args.report)
            print(report.summary())
            return 0 if report.ok else 2
        else:
            if args.path is None:
                parser.error(f"--source {args.source} needs the PATH to import")
            info = importing.run_import(args.source, args.path, progress=_progress, data_cutoff=args.data_cutoff,
                                        out=args.out, options=_options(args))
            if args.out is None:
                _record("import", info["snapshot_id"], f"{args.source}: {args.path.name} (command line)")
            if args.report:
                Path(args.report).write_bytes(Path(info["report"]).read_bytes())
            print(json.dumps(info, indent=2, default=str))
    except ImportRejected as exc:
        _print_report(exc.report, args.report)
        print(exc, file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, SnapshotMissing) as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
