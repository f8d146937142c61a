"""`python -m data build --source synthetic [--patients N] [--seed S] [--out PATH]`; `python -m data parameters`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a snapshot and swap it in atomically")
    b.add_argument("--source", choices=["synthetic"], default="synthetic")
    b.add_argument("--patients", type=int, default=82, help="synthetic cohort size (default 82)")
    b.add_argument("--seed", type=int, default=20230419)
    b.add_argument("--out", type=Path, default=None, help="write the snapshot to this file instead of making it the live one")
    sub.add_parser("parameters", help="print every synthetic-cohort parameter with its value and source")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
