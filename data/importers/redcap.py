"""REDCap exports -> canonical tables, through a declarative mapping; everything it does not cover is a finding.

Academic trials keep their case report forms in REDCap. What is read, from one folder of REDCap's own
export files (found by their header, whatever their names):

* the data dictionary (the metadata CSV: "Variable / Field Name", "Form Name", "Field Type", "Choices,
  Calculations, OR Slider Labels", "Text Validation Type OR Show Slider Number", "Identifier?", ...): each
  field's instrument, type, choices ("1, Yes | 0, No"), date validation type and identifier flag;
* the records (CSV with raw codes, or with labels: a value that is a choice's label is read as its code):
  one line per record, or per record x event x repeat instance, with `redcap_event_name`,
  `redcap_repeat_instrument`, `redcap_repeat_instance` and `redcap_data_access_group` when the project has
  them; a checkbox field is one `field___code` column per option (1 = ticked). Headers may be variable
  names or, as REDCap's "CSV (labels)" writes them, labels: a field's label ("Date of enrolment"), "Label
  (choice=Choice)" for a checkbox option, "Event Name", "Repeat Instrument", "Repeat Instance", "Data
  Access Group", "Complete?". A label is read back as its field through the dictionary, in the dictionary's
  order (REDCap exports fields in that order, so two fields with one label are told apart by place; a label
  that still names two fields, or none, is a finding). Event names written as labels ("Enrolment (Arm 1:
  Cohort 1)") are read through the events and arms files, a data access group written as its name through
  the data access groups file (`data_access_group_name`, `unique_group_name`); without that file the name
  is read as written, and the mapping's value map must name it (else an error, not a guess);
* for longitudinal projects the events file (`unique_event_name`, `arm_num`), so a record's arm is known;
* the mapping (below): a CSV whose header is `table,column,source,event,values`, in the folder or given
  with `--mapping FILE`.

The mapping, one row per canonical column filled (`data/importers/redcap_stop_her2/mapping.csv`):

* `table`, `column`: the canonical table and column (data/canonical.py). When several instruments fill one
  table (one questionnaire each), `table:name` names each group of rows (`pro_responses:qlq_c30`);
* `source`: a field of the dictionary; `field___code` for one checkbox option; `redcap_event_name`,
  `redcap_data_access_group`, `redcap_repeat_instance` or `redcap_arm` (the arm number of the line's
  event); `=text` for a constant (e.g. `=QLQ-C30`); or, for a questionnaire whose items are fields,
  `prefix*` (one row per field named prefix... that has a value) with the column whose source is `*`
  taking the rest of the field's name (`qlq_c30_q*` and `*` give item 1 to 30 from qlq_c30_q1 to qlq_c30_q30);
* `event`: the unique event name the value is read from (empty: whichever event holds it);
* `values`: a value map, `code=canonical|code=canonical`. A field with choices needs one: a choice the data
  uses that the map does not name is an error with its place, not a guess. Without choices, values are
  taken as they are (dates by the field's validation type: date_ymd, date_mdy, date_dmy, datetime_*).

Rows: `patients` gets one row per record (each column read from its event's line). Every other table gets
one row per line of the records (a record at an event, or one instance of a repeating instrument) where at
least one of the fields mapped to it has a value, and only at the events the mapping names for it.

Never imported: identifier fields (Identifier? = y: names, contacts, dates of birth) and free-text notes
are only ever read when mapped, and a mapping that names an identifier field is refused. Every field in
the records that the mapping does not use is listed as a warning ("not imported"), so nothing is dropped
silently. The tables then go through the same validation, located findings and atomic build as every source:
a finding names the records file, its line, and the REDCap field.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from data.bundle import read_bundle
from data.canonical import TABLES
from data.validate import Report

DICTIONARY_FIELD = "Variable / Field Name"
MAPPING_COLUMNS = ["table", "column", "source", "event", "values"]
SPECIAL = ("redcap_event_name", "redcap_data_access_group", "redcap_repeat_instance", "redcap_arm")
REDCAP_COLUMNS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance", "redcap_data_access_group",
                  "redcap_survey_identifier")
#: REDCap's date validation types -> the order of day, month and year in the value ("ymd" needs nothing).
DATE_ORDER = {"date_ymd": "ymd", "date_mdy": "mdy", "date_dmy": "dmy", "datetime_ymd": "ymd",
              "datetime_mdy": "mdy", "datetime_dmy": "dmy", "datetime_seconds_ymd": "ymd",
              "datetime_seconds_mdy": "mdy", "datetime_seconds_dmy": "dmy"}
#: The STOP-HER2 project's design (dictionary, events, arms) and its mapping: the template for a new mapping.
DESIGN = Path(__file__).with_name("redcap_stop_her2")


@dataclass(frozen=True)
class Field:
    name: str
    form: str
    kind: str  # REDCap field type: text, radio, dropdown, checkbox, yesno, truefalse, calc, notes, file, ...
    choices: dict  # code -> label
    validation: str
    identifier: bool
    label: str = ""  # the Field Label as a labels export writes it in a header (tags removed, spaces single)


def _s(value) -> str:
    """A cell as text ("" for an empty one: pandas reads it as NaN)."""
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value).strip()


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")


def parse_choices(text) -> dict:
    """REDCap's "1, Yes | 0, No" (also yesno/truefalse defaults) -> {"1": "Yes", "0": "No"}."""
    out = {}
    for part in str(text or "").split("|"):
        code, sep, label = part.strip().partition(",")
        if sep and code.strip():
            out[code.strip()] = label.strip()
    return out


def read_dictionary(path: Path) -> dict[str, Field]:
    frame = _csv(path)
    fields = {}
    for r in frame.to_dict("records"):
        name = _s(r.get(DICTIONARY_FIELD))
        if not name:
            continue
        kind = _s(r.get("Field Type"))
        choices = parse_choices(r.get("Choices, Calculations, OR Slider Labels")) if kind in (
            "radio", "dropdown", "checkbox") else {"yesno": {"1": "Yes", "0": "No"},
                                                   "truefalse": {"1": "True", "0": "False"}}.get(kind, {})
        fields[name] = Field(name, _s(r.get("Form Name")), kind, choices,
                             _s(r.get("Text Validation Type OR Show Slider Number")), _s(r.get("Identifier?")).lower() == "y",
                             _plain(r.get("Field Label")))
    return fields


def _plain(label) -> str:
    """A label as a header shows it: HTML tags removed, runs of white space made one space."""
    return " ".join(re.sub(r"<[^>]*>", " ", _s(label)).split())


def fields_for_mapping(dictionary: Path) -> pd.DataFrame:
    """Every field of a dictionary as the mapping needs to see it (a project with no records yet: list what to
    map): field, instrument, type, choices, validation, identifier."""
    return pd.DataFrame([{"field": f.name, "instrument": f.form, "type": f.kind,
                          "choices": " | ".join(f"{k}={v}" for k, v in f.choices.items()),
                          "validation": f.validation, "identifier": f.identifier}
                         for f in read_dictionary(dictionary).values()])


def _find_files(folder: Path, report: Report) -> dict[str, Path]:
    """The dictionary, the records, the events file and the mapping, recognised by their headers."""
    found = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.lower().endswith(".csv"):
            continue
        try:
            header = [h.strip().lower() for h in pd.read_csv(path, nrows=0, dtype=str, encoding="utf-8-sig").columns]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
            report.add("error", path.name, None, "", "", f"cannot be read as CSV: {str(exc).splitlines()[0][:200]}")
            continue
        if header and header[0] == DICTIONARY_FIELD.lower():
            kind = "dictionary"
        elif header[:3] == MAPPING_COLUMNS[:3]:  # its full header is checked when it is read
            kind = "mapping"
        elif "unique_event_name" in header and "arm_num" in header:
            kind = "events"
        elif header == ["arm_num", "name"] or header[:2] == ["arm_num", "arm_name"]:
            kind = "arms"  # read only to tell event labels apart ("Enrolment (Arm 1: Cohort 1)")
        elif {"data_access_group_name", "unique_group_name"} <= set(header):
            kind = "data access groups"  # read only to read a group written as its label
        else:
            kind = "records"
        if kind in found:
            report.add("error", path.name, None, "", "", f"a second {kind} file (the first is {found[kind].name}): "
                       "put one export per folder")
            continue
        found[kind] = path
    return found


def _mapping(path: Path, fields: dict[str, Field], events: set, report: Report) -> pd.DataFrame | None:
    name = path.name
    m = _csv(path).fillna("")
    m = m.rename(columns=lambda c: str(c).strip().lower())
    if list(m.columns) != MAPPING_COLUMNS:
        report.add("error", name, 1, "", ",".join(m.columns), f"the header must be {','.join(MAPPING_COLUMNS)}")
        return None
    if m.empty:
        report.add("error", name, None, "", "", "the mapping maps nothing: one row per canonical column to fill")
        return None
    ok = True
    for i, r in enumerate(m.to_dict("records"), start=2):  # line 1 is the header
        table, column, source, event = (r["table"].strip().split(":")[0], r["column"].strip(), r["source"].strip(),
                                        r["event"].strip())
        if table not in TABLES:
            report.add("error", name, i, "table", table, f"not a canonical table: one of {', '.join(TABLES)}")
            ok = False
        elif column not in TABLES[table].column_names:
            report.add("error", name, i, "column", column, f"not a column of {table}")
            ok = False
        base = source.split("___")[0]
        if source.startswith("=") or source in SPECIAL or source == "*":
            pass
        elif source.endswith("*"):
            if not any(f.startswith(source[:-1]) for f in fields):
                report.add("error", name, i, "source", source, "no field of the data dictionary starts so")
                ok = False
        elif base not in fields:
            report.add("error", name, i, "source", source, "not a field of the data dictionary")
            ok = False
        elif fields[base].identifier:
            report.add("error", name, i, "source", source, "an identifier field (Identifier? = y in the dictionary) "
                       "is never imported")
            ok = False
        elif "___" in source and source.split("___", 1)[1] not in fields[base].choices:
            report.add("error", name, i, "source", source, f"{base} has no checkbox option "
                       f"{source.split('___', 1)[1]!r}")
            ok = False
        if event and events and event not in events:
            report.add("error", name, i, "event", event, "not an event of the project (events file)")
            ok = False
        for pair in filter(None, (p.strip() for p in r["values"].split("|"))):
            if "=" not in pair:
                report.add("error", name, i, "values", pair, "a value map entry is code=canonical")
                ok = False
    for group in m["table"].unique():
        if "patient_id" not in set(m.loc[m["table"] == group, "column"]):
            report.add("error", name, None, "column", group, f"{group}: no source mapped to patient_id")
            ok = False
    return m if ok else None


def _value_map(text: str) -> dict:
    return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in text.split("|") if "=" in p)}


_DATE_PATTERNS = {"ymd": r"(\d{4})-(\d{1,2})-(\d{1,2})", "mdy": r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})",
                  "dmy": r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})"}


def _date(value: str, validation: str) -> str | None:
    """ISO date, or None when the value is not a date in the field's order. Raw exports write Y-M-D whatever
    the display format; a labels export may write the display order."""
    text = value.strip().split(" ")[0]
    m = re.fullmatch(_DATE_PATTERNS["ymd"], text)
    if m:
        y, mo, d = m.groups()
    else:
        order = DATE_ORDER.get(validation, "ymd")
        m = re.fullmatch(_DATE_PATTERNS.get(order, "$^"), text)
        if not m:
            return None
        a, b, y = m.groups()
        mo, d = (a, b) if order == "mdy" else (b, a)
    try:
        return pd.Timestamp(int(y), int(mo), int(d)).strftime("%Y-%m-%d")
    except ValueError:
        return None


def read(source, mapping=None, **_options):
    """(tables, files, lines, report) like every importer."""
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of REDCap export files")
    report = Report()
    found = _find_files(folder, report)
    if mapping:
        found["mapping"] = Path(mapping)
    for kind, what in (("dictionary", "the data dictionary (metadata CSV)"), ("records", "the records (CSV export)"),
                       ("mapping", "the mapping (table,column,source,event,values; the STOP-HER2 project's: "
                                   "data/importers/redcap_stop_her2/mapping.csv)")):
        if kind not in found:
            report.add("error", folder.name, None, "", "", f"{what} is missing")
    if not report.ok:
        return {}, {}, {}, report
    try:  # a file that CSV cannot parse (a ragged row, a quote left open) is a finding that names it
        current = found["dictionary"]
        fields = read_dictionary(current)
        current = found.get("events")
        events_frame = _csv(current) if current else pd.DataFrame(columns=["unique_event_name", "arm_num"])
        arm_of = dict(zip(events_frame["unique_event_name"], events_frame["arm_num"], strict=True))
        current = found["mapping"]
        m = _mapping(current, fields, set(arm_of), report)
        current = found.get("arms")
        arms = _csv(current) if current else pd.DataFrame(columns=["arm_num", "name"])
        current = found.get("data access groups")
        groups = _csv(current) if current else pd.DataFrame(columns=["data_access_group_name", "unique_group_name"])
        current = found["records"]
        records = _csv(current)
        records.columns = _header(current)  # as written: pandas renames a repeated "x" to "x.1"
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, KeyError, ValueError, OSError) as exc:
        report.add("error", Path(current).name, None, "", "", f"cannot be read: {str(exc).splitlines()[0][:200]}")
        return {}, {}, {}, report
    records_name = found["records"].name
    labelled = len(records.columns) and records.columns[0] not in fields  # raw exports start with the record id
    if labelled:
        records.columns = _field_names(list(records.columns), fields, records_name, report)
    duplicated = records.columns[records.columns.duplicated()].unique()
    for column in duplicated:  # a column read twice is a guess
        report.add("error", records_name, 1, column, "", "this column appears more than once")
    if m is None or records.empty or len(duplicated):
        if records.empty:
            report.add("error", records_name, None, "", "", "no records")
        return {}, {}, {}, report
    record_id = records.columns[0]
    records["_line"] = range(2, len(records) + 2)
    if "redcap_event_name" in records:
        records["redcap_event_name"] = _event_names(records, events_frame, arms, records_name, report)
        records["redcap_arm"] = records["redcap_event_name"].map(arm_of)
    if "redcap_data_access_group" in records and len(groups):  # a group written as its name (labels export)
        unique = dict(zip(groups["data_access_group_name"].map(_s), groups["unique_group_name"].map(_s), strict=True))
        unique |= {u: u for u in unique.values()}
        records["redcap_data_access_group"] = records["redcap_data_access_group"].map(lambda v: unique.get(_s(v), v))
    _not_mapped(records, fields, m, record_id, records_name, report)
    members, lines = {}, {}
    m["group"] = m["table"].str.strip()
    m["table"] = m["group"].str.split(":").str[0]
    for table, groups in m.groupby("table", sort=False):
        made = [_table(table, rows, records, fields, record_id, records_name, report)
                for _, rows in groups.groupby("group", sort=False)]
        members[f"{table}.csv"] = pd.concat([f for f, _ in made], ignore_index=True).to_csv(index=False).encode()
        lines[table] = pd.concat([w for _, w in made], ignore_index=True)
    for table, spec in TABLES.items():  # a table the project does not collect is empty, and said so
        if f"{table}.csv" not in members:
            members[f"{table}.csv"] = (",".join(spec.column_names) + "\n").encode()
            lines[table] = pd.Series([], dtype="int64")
            report.add("warning", found["mapping"].name, None, "table", table,
                       f"the mapping fills nothing in {table}: it is imported empty")
    tables, _, _, csv_report = read_bundle(members)
    for f in csv_report.findings:  # named by the REDCap records line and field, not the text form made here
        table = f.file.removesuffix(".csv")
        line = None if f.row is None else _line_of(lines.get(table), f.row)
        field = m[(m["table"] == table) & (m["column"] == f.column)]["source"]
        column = f"{f.column} (from {field.iloc[0]})" if len(field) else f.column
        report.add(f.severity, records_name if line is not None else f"{records_name} -> {table}", line, column,
                   f.value, f.message)
    files = {table: f"{records_name} (via {found['mapping'].name})" for table in tables}
    out_lines = {t: pd.Series(lines[t].to_numpy(), index=frame.index) for t, frame in tables.items()
                 if len(lines[t]) == len(frame)}
    return tables, files, out_lines, report


#: The headers a labels export writes for REDCap's own columns.
HEADER_LABELS = {"Event Name": "redcap_event_name", "Repeat Instrument": "redcap_repeat_instrument",
                 "Repeat Instance": "redcap_repeat_instance", "Data Access Group": "redcap_data_access_group",
                 "Survey Identifier": "redcap_survey_identifier"}


def _header(path: Path) -> list[str]:
    """The records' header as written (a repeated name stays repeated)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [h.strip() for h in next(csv.reader(f), [])]


def _field_names(header: list[str], fields: dict[str, Field], name: str, report: Report) -> list[str]:
    """A labels export's headers -> field names, through the dictionary's labels. A label shared by several
    fields is read in dictionary order when the header holds it once for each of them (REDCap writes fields in
    dictionary order); otherwise which field it means is a guess, and a finding. A label no field has stays as
    written (then "not in the data dictionary")."""
    def key(text):
        option = re.fullmatch(r"(.*) \(choice=(.*)\)", text)
        return (option.group(1), option.group(2)) if option else (text, None)
    meaning = {}  # (label, choice label or None) -> the column names it stands for, in dictionary order
    for f in fields.values():
        if f.kind == "descriptive":  # display text only: never a column
            continue
        if f.kind == "checkbox":
            for code, choice in f.choices.items():
                meaning.setdefault((f.label, _plain(choice)), []).append(f"{f.name}___{code}")
        else:
            meaning.setdefault((f.label, None), []).append(f.name)
    texts = [_plain(h) for h in header]
    times = pd.Series(texts).value_counts().to_dict()
    seen: dict[str, int] = {}
    out, form = [], ""
    for line_column, text in enumerate(texts, start=1):
        if text in HEADER_LABELS:
            out.append(HEADER_LABELS[text])
            continue
        if text == "Complete?":  # the form status closes each form's columns
            out.append(f"{form}_complete" if form else f"_status_{line_column}")
            continue
        if text == "Survey Timestamp":
            out.append(f"_survey_timestamp_{line_column}")
            continue
        names = meaning.get(key(text), [])
        k = seen.get(text, 0)
        seen[text] = k + 1
        if len(names) > 1 and times[text] != len(names):
            report.add("error", name, 1, text, "", f"{len(names)} fields have this label ({', '.join(names[:5])}): "
                       "export the records with variable names as headers, or give the fields different labels")
            out.append(text)
        elif names and k < len(names):
            out.append(names[k])
            form = fields[names[k].split("___")[0]].form
        else:
            out.append(text)
    return out


def _event_names(records, events, arms, name, report) -> pd.Series:
    """Unique event names, whether written as such or as labels ("Enrolment", or "Enrolment (Arm 1: Cohort 1)" in
    a project with several arms); a name the events file does not know is an error on its line."""
    column = records["redcap_event_name"]
    if events.empty:
        return column
    arm_names = dict(zip(arms["arm_num"].map(_s), arms.iloc[:, 1].map(_s), strict=True)) if len(arms.columns) > 1 else {}
    by_label: dict[str, list[str]] = {}
    for r in events.to_dict("records"):
        label, arm, unique = _s(r.get("event_name")), _s(r.get("arm_num")), _s(r.get("unique_event_name"))
        by_label.setdefault(label, []).append(unique)
        by_label.setdefault(f"{label} (Arm {arm}: {arm_names.get(arm, '')})", []).append(unique)
    known = set(events["unique_event_name"].map(_s))
    out = []
    for value, line in zip(column, records["_line"], strict=True):
        text = _s(value)
        if text in known or not text:
            out.append(text or None)
            continue
        unique = by_label.get(text, [])
        if len(unique) != 1:
            report.add("error", name, int(line), "redcap_event_name", text,
                       "not an event of the project (events file)" if not unique else
                       f"this event label is in several arms ({', '.join(unique)}): which one is a guess")
        out.append(unique[0] if len(unique) == 1 else None)
    return pd.Series(out, index=column.index, dtype=object)


def _line_of(lines: pd.Series | None, row: int):
    """The records file's line for the made table's data row `row` (row 2 = the first data row of the CSV)."""
    if lines is None or not 2 <= row < len(lines) + 2:
        return None
    return int(lines.iloc[row - 2])


def _not_mapped(records, fields, m, record_id, name, report) -> None:
    """A warning for every field in the records that holds data and that the mapping does not use."""
    used = {s.split("___")[0] for s in m["source"]}
    stars = tuple(s[:-1] for s in m["source"] if s.endswith("*") and s != "*")
    forms = {f.form for f in fields.values()}
    said = set()
    for column in records.columns:
        base = column.split("___")[0]
        if column.startswith("_") or column in (*REDCAP_COLUMNS, "redcap_arm", record_id) or base in used \
                or (stars and column.startswith(stars)):
            continue
        if column.endswith("_complete") and column.removesuffix("_complete") in forms:
            continue  # REDCap's own form status (0 incomplete, 1 unverified, 2 complete), not data
        if base in said or not records[column].notna().any():
            continue
        said.add(base)
        field = fields.get(base)
        why = ("an identifier field: never imported" if field is not None and field.identifier
               else f"instrument {field.form}" if field is not None else "not in the data dictionary")
        report.add("warning", name, None, base, "", f"not imported: the mapping does not use this field ({why})")


def _value(raw, source: str, fields: dict, value_map: dict, where: tuple, report: Report):
    """One mapped value: a choice label read back as its code, a date in ISO order, then the value map."""
    name, line = where
    if raw is None or (not isinstance(raw, str) and pd.isna(raw)) or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    field = fields.get(source.split("___")[0])
    if field is not None and field.choices and "___" not in source:
        if text not in field.choices:
            by_label = {v: k for k, v in field.choices.items()}
            if text not in by_label:
                report.add("error", name, line, source, text, f"not a choice of {field.name} "
                           f"({', '.join(field.choices)})")
                return None
            text = by_label[text]
        if text not in value_map:
            report.add("error", name, line, source, text, f"choice {text} ({field.choices[text]}) of {field.name} is "
                       "not in the mapping's value map: say what it means")
            return None
        return value_map[text]
    if field is not None and "___" in source:
        text = {"checked": "1", "unchecked": "0"}.get(text.lower(), text)
    if field is not None and field.validation.startswith(("date", "datetime")):
        iso = _date(text, field.validation)
        if iso is None:
            report.add("error", name, line, source, text, f"not a date in {field.name}'s format ({field.validation})")
            return None
        text = iso
    if value_map:
        if text not in value_map:
            report.add("error", name, line, source, text, f"{text!r} is not in the mapping's value map for {source}")
            return None
        return value_map[text]
    return text


def _table(table, rows, records, fields, record_id, name, report):
    """One canonical table from the records, and the records line each of its rows came from."""
    specs = [(r["column"].strip(), r["source"].strip(), r["event"].strip(), _value_map(r["values"]))
             for r in rows.to_dict("records")]
    # the fields that make a line a row of this table (the record id is on every line)
    data_sources = [s for _, s, _, _ in specs if not s.startswith("=") and s not in SPECIAL and s != record_id]
    columns = TABLES[table].column_names
    out, where = [], []
    if table == "patients":
        for rid, group in records.groupby(record_id, sort=False):
            row = {c: None for c in columns}
            for column, source, event, vmap in specs:
                g = group[group["redcap_event_name"] == event] if event and "redcap_event_name" in group else group
                row[column] = _first(g, source, fields, vmap, record_id, rid, name, report)
            out.append(row)
            where.append(int(group["_line"].iloc[0]))
    else:
        events = {e for _, _, e, _ in specs if e}
        lines = records
        if events and "redcap_event_name" in records:
            lines = records[records["redcap_event_name"].isin(events)]
        has = lines[[s for s in data_sources if s in lines]].notna().any(axis=1) if data_sources else \
            pd.Series(True, index=lines.index)
        star = next((src for _, src, _, _ in specs if src.endswith("*") and src != "*"), None)
        starred = [f for f in fields if star and f.startswith(star[:-1]) and f in lines]
        if star:  # a questionnaire's items as fields: one row per item answered
            has = lines[starred].notna().any(axis=1) if starred else pd.Series(False, index=lines.index)
        for r in lines[has].to_dict("records"):
            for item_field in (f for f in starred if _s(r.get(f))) if star else [None]:
                row = {c: None for c in columns}
                for column, source, _, vmap in specs:
                    if source.startswith("="):
                        row[column] = source[1:]
                        continue
                    if source == "*":
                        raw, source = item_field[len(star) - 1:], "*"
                    elif source == star:
                        raw, source = r.get(item_field), item_field
                    else:
                        raw = r[record_id] if source == record_id else r.get(source)
                    row[column] = _value(raw, source, fields, vmap, (name, r["_line"]), report)
                out.append(row)
                where.append(int(r["_line"]))
    return pd.DataFrame(out, columns=columns), pd.Series(where, dtype="int64")


def _first(group, source, fields, vmap, record_id, rid, name, report):
    if source.startswith("="):
        return source[1:]
    if source == record_id:
        return str(rid)
    if source not in group:
        return None
    values = group[source].dropna()
    if values.empty:
        return None
    line = int(group.loc[values.index[0], "_line"])
    return _value(values.iloc[0], source, fields, vmap, (name, line), report)


def design_files() -> dict[str, bytes]:
    """The shipped STOP-HER2 REDCap design and mapping, by file name (the Data page's download)."""
    return {p.name: p.read_bytes() for p in sorted(DESIGN.glob("*.csv"))}
