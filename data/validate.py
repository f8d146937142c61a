"""Check every row of incoming canonical tables and say, for a data manager, what is wrong and where.

`validate` turns raw tables (strings from a CSV, or values an importer mapped) into typed canonical
tables plus a Report of findings. Each finding names the file, the row (the line in the file, the
header being line 1, unless the importer gives its own), the column, the value and what is wrong,
with a severity: an *error* stops the import (nothing is written), a *warning* is imported and kept
in the report beside the snapshot.

The rules come from data/canonical.py: required columns and values, types, code lists, ranges,
dates (parseable as YYYY-MM-DD, not in the future, not before 1900, in order within a row), duplicate
keys, references between tables, and plausibility across tables (a date before the patient was
born; a scan, draw or questionnaire after their death; a ctDNA call that contradicts its own value
and detection limit).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import pandas as pd

from data import pro, recist
from data.canonical import TABLES, Column
from data.clinical import DAYS_PER_YEAR

#: At most this many findings per file, column and message are listed one by one; the rest are counted.
MAX_LISTED = 200
TRUE = {"true", "t", "yes", "y", "1"}
FALSE = {"false", "f", "no", "n", "0"}
EARLIEST = pd.Timestamp("1900-01-01")
#: No quantity this trial records comes near this in its own unit (ctDNA reaches ~1e4 MTM/mL, a diameter
#: 500 mm). A larger number is a typing or export error, and 1e308 would turn into infinity downstream.
MAX_MAGNITUDE = 1e9
#: The longest text a canonical column holds (an event's detail, a regimen) is a sentence or two.
MAX_TEXT_CHARS = 10_000


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    file: str
    row: int | None  # line in the file (header = 1), or the source's own row number
    column: str
    value: str
    message: str


class Report:
    """The findings of one import, in the order found."""

    COLUMNS = ["severity", "file", "row", "column", "value", "message"]

    def __init__(self, findings: list[Finding] | None = None):
        self.findings: list[Finding] = list(findings or [])
        # a source checked in parts (data/parts.py) meets a file-level problem once per part: said once
        self._said = {f for f in self.findings if f.row is None}
        self._listed: dict[tuple, int] = {}  # (severity, file, column, message) -> rows found so far
        self._more: dict[tuple, int] = {}  # the same -> the index of its "more rows like this" finding

    def add(self, severity: str, file: str, row, column: str, value, message: str) -> None:
        finding = Finding(severity, file, None if row is None else int(row), column,
                          "" if value is None or (not isinstance(value, str) and pd.isna(value))
                          else str(value)[:200], message)
        if finding.row is None:
            if finding in self._said:
                return
            self._said.add(finding)
        self.findings.append(finding)

    def listed(self, severity: str, file: str, rows, column: str, values, message: str) -> None:
        """One finding per row, up to MAX_LISTED per file, column and message over the whole source (all
        its parts), then one finding that counts the rest."""
        key = (severity, file, column, message)
        before = self._listed.get(key, 0)
        room = max(MAX_LISTED - before, 0)
        for row, value in zip(rows[:room], values[:room], strict=True):
            self.add(severity, file, row, column, value, message)
        total = before + len(rows)
        self._listed[key] = total
        if total > MAX_LISTED:
            more = Finding(severity, file, None, column, "", f"{message}: {total - MAX_LISTED} more rows like this")
            if key in self._more:
                self.findings[self._more[key]] = more
            else:
                self._more[key] = len(self.findings)
                self.findings.append(more)

    def extend(self, other: Report) -> None:
        self.findings.extend(other.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(f) for f in self.findings], columns=self.COLUMNS).astype({"row": "Int64"})

    def summary(self) -> str:
        if not self.findings:
            return "no problems found"
        first = self.errors[0] if self.errors else self.warnings[0]
        where = f"{first.file}" + (f", row {first.row}" if first.row is not None else "") + \
                (f", column {first.column}" if first.column else "")
        return (f"{len(self.errors)} error(s), {len(self.warnings)} warning(s); first: {where}: {first.message}"
                + (f" (value {first.value!r})" if first.value else ""))


class ImportRejected(ValueError):
    """The input has errors: nothing was written. `report` lists every finding."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(f"import refused, the live snapshot is unchanged: {report.summary()}")


# ----------------------------------------------------------------------------------- helpers
def _listed(report: Report, severity: str, file: str, rows: pd.Series, column: str, values: pd.Series,
            message: str) -> None:
    """One finding per offending row, up to MAX_LISTED, then one that counts the rest (Report.listed)."""
    report.listed(severity, file, rows.tolist(), column, values.tolist(), message)


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | s.astype("string").str.strip().eq("")


def _convert(col: Column, raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Typed values and a mask of the non-empty values that could not be read."""
    blank = _blank(raw)
    text = raw.astype("string").str.strip()
    if col.type == "text":
        bad = (text.str.len() > MAX_TEXT_CHARS).fillna(False).astype(bool)
        return text.where(~blank & ~bad, pd.NA).astype(object).where(~blank & ~bad, None), bad
    if col.type in ("int", "float"):
        if pd.api.types.is_bool_dtype(raw):
            raw = raw.astype("Int64")
        num = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = ~blank & (num.isna() | ~np.isfinite(num.fillna(0)) | (num.abs() > MAX_MAGNITUDE).fillna(False))
        if col.type == "int":
            frac = num.notna() & (num.round() != num)
            bad |= frac
            num = num.where(~bad).round().astype("Int64")
        return num.where(~bad), bad
    if col.type == "date":
        if pd.api.types.is_datetime64_any_dtype(raw):
            values = pd.to_datetime(raw)
            return values.dt.normalize(), pd.Series(False, index=raw.index)
        values = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
        bad = ~blank & values.isna()
        return values, bad
    if col.type == "bool":
        low = text.str.lower()
        out = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        out[low.isin(TRUE).fillna(False).astype(bool)] = True
        out[low.isin(FALSE).fillna(False).astype(bool)] = False
        bad = ~blank & out.isna()
        return out, bad
    raise ValueError(f"unknown column type {col.type!r}")


TYPE_WORDS = {"text": f"a text of at most {MAX_TEXT_CHARS:,} characters",
              "int": f"a whole number between -{MAX_MAGNITUDE:,.0f} and {MAX_MAGNITUDE:,.0f}",
              "float": f"a number between -{MAX_MAGNITUDE:,.0f} and {MAX_MAGNITUDE:,.0f}",
              "date": "a date as YYYY-MM-DD",
              "bool": "true or false (also yes/no, 1/0)"}


# ---------------------------------------------------------------------------------- validate
def validate(raw: dict[str, pd.DataFrame], files: dict[str, str] | None = None,
             lines: dict[str, pd.Series] | None = None, today: date | None = None,
             report: Report | None = None) -> tuple[dict[str, pd.DataFrame], Report]:
    """Typed canonical tables and every finding. Tables with errors are still returned (for the report)."""
    files = {name: (files or {}).get(name, f"{name}.csv") for name in TABLES}
    report = report or Report()
    today_ts = pd.Timestamp(today or date.today())
    typed: dict[str, pd.DataFrame] = {}
    line_of: dict[str, pd.Series] = {}
    for extra in sorted(set(raw) - set(TABLES)):
        report.add("warning", f"{extra}", None, "", "", "not a canonical table: ignored")
    for name, table in TABLES.items():
        file = files[name]
        if name not in raw:
            report.add("error", file, None, "", "", f"table {name} is missing (columns: {', '.join(table.column_names)})")
            typed[name] = pd.DataFrame({c.name: _convert(c, pd.Series([], dtype=object))[0] for c in table.columns})
            line_of[name] = pd.Series(dtype="int64")
            continue
        frame = raw[name].reset_index(drop=True)
        line = (lines or {}).get(name)
        line = pd.Series(np.arange(len(frame)) + 2, index=frame.index) if line is None \
            else pd.Series(np.asarray(line, dtype=object), index=frame.index)
        for extra in [c for c in frame.columns if c not in table.column_names]:
            report.add("warning", file, None, str(extra), "", "unknown column: ignored")
        out = {}
        for col in table.columns:
            if col.name not in frame.columns:
                severity = "error" if col.required else "warning"
                report.add(severity, file, None, col.name, "",
                           "required column missing" if col.required else "optional column missing: left empty")
                out[col.name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
                if col.type != "text":
                    out[col.name] = _convert(col, out[col.name])[0]
                continue
            values, bad = _convert(col, frame[col.name])
            if col.default is not None:
                values = values.fillna(col.default)
            if bad.any():
                _listed(report, "error", file, line[bad], col.name, frame.loc[bad, col.name],
                        f"not {TYPE_WORDS[col.type]}")
            missing = values.isna() & ~bad
            if col.required and missing.any():
                _listed(report, "error", file, line[missing], col.name, frame.loc[missing, col.name],
                        "required value missing")
            present = values.notna()
            if col.codes is not None:
                as_text = values.astype("string") if col.type != "int" else values.astype("Int64").astype("string")
                wrong = present & ~as_text.isin(col.codes).fillna(False).astype(bool)
                if wrong.any():
                    _listed(report, "error", file, line[wrong], col.name, frame.loc[wrong, col.name],
                            f"not one of {', '.join(col.codes)}")
            if col.type in ("int", "float") and (col.low is not None or col.high is not None):
                num = values.astype("float64")
                low_bad = (num <= col.low) if col.low_open else (num < col.low) if col.low is not None else False
                high_bad = (num > col.high) if col.high is not None else False
                out_of_range = present & (low_bad | high_bad).fillna(False).astype(bool)
                if out_of_range.any():
                    bounds = (f"{'above' if col.low_open else 'at least'} {col.low:g}" if col.high is None
                              else f"between {col.low:g} and {col.high:g}")
                    _listed(report, "error", file, line[out_of_range], col.name, frame.loc[out_of_range, col.name],
                            f"out of range: must be {bounds}")
            if col.type == "date":
                future = present & (values > today_ts)
                if future.any():
                    _listed(report, "error", file, line[future], col.name, frame.loc[future, col.name],
                            f"in the future (after {today_ts:%Y-%m-%d})")
                ancient = present & (values < EARLIEST)
                if ancient.any():
                    _listed(report, "error", file, line[ancient], col.name, frame.loc[ancient, col.name],
                            "before 1900: not a plausible date")
            out[col.name] = values
        typed_frame = pd.DataFrame(out, index=frame.index)
        line_of[name] = line
        for earlier, later in table.order:
            both = typed_frame[earlier].notna() & typed_frame[later].notna()
            wrong = both & (typed_frame[later] < typed_frame[earlier])
            if wrong.any():
                _listed(report, "error", file, line[wrong], later, frame.loc[wrong, later].astype(str),
                        f"before {earlier} ({', '.join(typed_frame.loc[wrong, earlier].dt.strftime('%Y-%m-%d').unique()[:3])})")
        if table.key:
            keyed = typed_frame[list(table.key)]
            dup = keyed.notna().all(axis=1) & keyed.duplicated(keep="first")
            if dup.any():
                values = keyed[dup].astype(str).agg(" / ".join, axis=1)
                _listed(report, "error", file, line[dup], "+".join(table.key), values,
                        f"duplicate {' + '.join(table.key)}: the same key appears on an earlier row")
        typed[name] = typed_frame
    _check_references(typed, line_of, files, report)
    _check_plausibility(typed, line_of, files, report)
    for name in typed:
        typed[name] = typed[name][TABLES[name].column_names]
    return typed, report


def _check_references(typed, line_of, files, report) -> None:
    for name, table in TABLES.items():
        for here, other, there in table.references:
            frame = typed[name]
            if frame.empty or typed[other].empty and other != name:
                if not frame.empty:
                    _listed(report, "error", files[name], line_of[name], here[-1],
                            frame[here[-1]].astype(str), f"refers to {other}, which has no rows")
                continue
            target = typed[other][list(there)].dropna().astype(str).drop_duplicates()
            target.columns = list(here)
            keys = frame[list(here)].astype(str)
            merged = keys.merge(target.assign(_found=True), on=list(here), how="left")
            orphan = frame[list(here)].notna().all(axis=1).to_numpy() & merged["_found"].isna().to_numpy()
            if orphan.any():
                mask = pd.Series(orphan, index=frame.index)
                _listed(report, "error", files[name], line_of[name][mask], "+".join(here),
                        keys[mask].agg(" / ".join, axis=1), f"not found in {other}")


def _check_plausibility(typed, line_of, files, report) -> None:
    patients = typed["patients"]
    if patients.empty:
        return
    # Born at the latest on enrolment date minus (age + 1) years: a date before that is impossible.
    born_by = (patients["enrolled_on"] - pd.to_timedelta((patients["age_at_enrolment"].astype("float64") + 1) * DAYS_PER_YEAR,
                                                          unit="D"))
    born = pd.Series(born_by.to_numpy(), index=patients["patient_id"].astype(str)).dropna()
    born = born[~born.index.duplicated()]
    deaths = typed["events"]
    died = deaths[deaths["event"] == "death"].groupby(deaths["patient_id"].astype(str))["occurred_on"].min()
    for name, table in TABLES.items():
        frame = typed[name]
        if frame.empty:
            continue
        pid = frame["patient_id"].astype(str)
        for col in (c for c in table.columns if c.type == "date"):
            values = frame[col.name]
            limit = pd.to_datetime(pid.map(born))
            before = values.notna() & limit.notna() & (values < limit)
            if before.any():
                _listed(report, "error", files[name], line_of[name][before], col.name,
                        values[before].dt.strftime("%Y-%m-%d"), "before the patient was born (from age at enrolment)")
            if name in ("scans", "ctdna_draws", "pro_responses"):
                death = pd.to_datetime(pid.map(died))
                after = values.notna() & death.notna() & (values > death)
                if after.any():
                    _listed(report, "warning", files[name], line_of[name][after], col.name,
                            values[after].dt.strftime("%Y-%m-%d"), "after the patient's recorded death")
    answers = typed["pro_responses"]
    if not answers.empty:
        problems = pro.item_problems(answers)
        for message, severity in ((m, "warning" if m.startswith("unknown instrument") else "error")
                                  for m in problems[problems != ""].unique()):
            mask = problems == message
            column = "instrument" if severity == "warning" else "response" if "answer" in message or "T-score" in message \
                else "item"
            _listed(report, severity, files["pro_responses"], line_of["pro_responses"][mask], column,
                    answers.loc[mask, column].astype(str), message)
    draws = typed["ctdna_draws"]
    if not draws.empty:
        usable = draws["value"].notna() & draws["lod"].notna() & draws["detected"].notna() & (draws["qc"] == "pass")
        above = draws["value"].astype("float64") >= draws["lod"].astype("float64")
        contradiction = usable & (draws["detected"].astype("boolean") != above.astype("boolean")).fillna(False)
        if contradiction.any():
            _listed(report, "warning", files["ctdna_draws"], line_of["ctdna_draws"][contradiction], "detected",
                    draws.loc[contradiction, "detected"].astype(str),
                    "detected does not match value against the detection limit: the file's call is kept")
    lesions = typed["lesion_measurements"]
    if not lesions.empty and not typed["scans"].empty:
        problems = recist.measurability_problems(lesions, typed["scans"])
        for message in problems[problems != ""].unique():
            mask = problems == message
            column = "diameter_mm" if "measure" in message else "lesion_id"
            _listed(report, "warning", files["lesion_measurements"], line_of["lesion_measurements"][mask], column,
                    lesions.loc[mask, column].astype(str), message)
