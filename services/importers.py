"""Which importer reads: every source registered once by name (compare Datasette's plugin hooks).

The CLI (`python -m data build|check --source NAME`), the import pipeline (data/importing.py) and the
Data page all read this registry. Adding a source is one module under data/importers/ plus one
:class:`Importer` entry here: its reader turns the source into canonical tables, the file names they
came from, the row line numbers and a Report (or, for a source too large for memory, the same handed out in
parts of patients: data/parts.py); validation and the atomic build are the same for all.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Importer:
    name: str  # the --source value
    label: str  # what the Data page calls it
    file_types: tuple[str, ...]  # extensions the Data page accepts
    description: str
    read: Callable  # (source, **options) -> (tables, files, lines, report), or (parts, files, report)
    options: tuple[str, ...] = ()  # keyword options the reader takes (e.g. arm_map)
    single_file: bool = False  # one uploaded file is passed as that file, not its folder


def _read_csv(source, **_options):
    from pathlib import Path

    from data import parts
    from data.bundle import read_bundle

    if not isinstance(source, dict) and Path(source).is_dir():  # on disk: staged, any size
        return parts.csv_folder(Path(source))
    return read_bundle(source)  # a .zip or an upload: bounded by its upload size


def _read_sdtm(source, **options):
    from data.importers import sdtm

    return sdtm.read(source, **options)


def _read_fhir(source, **options):
    from data.importers import fhir

    return fhir.read(source, **options)


def _read_parquet(source, **options):
    from data.importers import parquet

    return parquet.read(source, **options)


def _read_redcap(source, **options):
    from data.importers import redcap

    return redcap.read(source, **options)


REGISTRY: dict[str, Importer] = {i.name: i for i in (
    Importer("csv", "CSV bundle", ("csv", "zip"),
             "One CSV per canonical table (or a .zip of them): the Templates tab has one per table.", _read_csv),
    Importer("sdtm", "CDISC SDTM", ("csv", "xpt"),
             "Domain files dm, ex, tu, tr, rs, qs, lb/gf, ds, sv, suppdm (.csv or .xpt).", _read_sdtm, ("arm_map",)),
    Importer("fhir", "FHIR R4 / mCODE", ("json", "ndjson"), "Bundles, single resources or NDJSON.", _read_fhir,
             ("arm_map",), single_file=True),
    Importer("parquet", "Parquet", ("parquet",),
             "One <table>.parquet per canonical table, or <table>/ folders partitioned by site (the exchange "
             "layout `python -m data export --format parquet` writes).", _read_parquet),
    Importer("redcap", "REDCap", ("csv",),
             "REDCap's own exports: the data dictionary, the records (raw or labels), the events file for a "
             "longitudinal project, and a mapping (table,column,source,event,values) from REDCap fields to the "
             "canonical columns. Upload them together; the Templates tab has the STOP-HER2 design and its mapping.", _read_redcap, ("mapping",)),
)}


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Importer:
    """The importer registered as `name`; ValueError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}: one of {', '.join(REGISTRY)}") from None


def read(name: str, source, options: dict | None = None):
    """Read a source with its registered importer, passing only the options that importer takes:
    (parts, files, report), the parts being data/parts.py's."""
    importer = get(name)
    options = options or {}
    unknown = set(options) - set(importer.options)
    if unknown:
        raise ValueError(f"the {importer.label} importer takes no option {', '.join(sorted(unknown))}")
    read = importer.read(source, **options)
    if len(read) == 4:  # whole tables: cut into parts of patients here, like a staged source's
        from data.parts import InMemory

        tables, files, lines, report = read
        return InMemory(tables, lines), files, report
    return read
