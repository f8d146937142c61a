"""A STOP-HER2 REDCap project, and any snapshot exported as that project's REDCap export.

`python -m data export --format redcap --out DIR` writes what REDCap itself would export from a plausible
STOP-HER2 project holding the snapshot's data, plus the mapping that brings it back:

* arms 1 and 2 are the cohorts (1 continues anti-HER2 therapy, 2 stops); each arm has an `enrolment` event
  (the enrolment instrument: one record's characteristics and eligibility) and a `follow_up` event where the
  logs are repeating instruments: treatment_log, ctdna_log, scan, lesion, outcome, first_line_progression,
  and one instrument per questionnaire with one field per item (qlq_c30_q1 ... qlq_c30_q30);
* the site is the record's data access group;
* coded columns are radio fields with numbered choices, yes/no columns yesno fields, dates date_ymd;
* files: dictionary.csv (the data dictionary), events.csv, arms.csv, data_access_groups.csv, records.csv (raw
  codes, or REDCap's "CSV (labels)": label values and, if asked, label headers), mapping.csv.

The dictionary and the mapping are made from data/canonical.py, so the design cannot drift from the
canonical tables; `data/importers/redcap_stop_her2/mapping.csv` is this design's mapping for the default
synthetic cohort. Importing the export gives the same snapshot (tested view by view).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from data.canonical import TABLES

#: canonical table -> (REDCap instrument, field prefix); patients is the non-repeating enrolment instrument.
INSTRUMENTS = {"patients": ("enrolment", ""), "treatments": ("treatment_log", "tx_"),
               "ctdna_draws": ("ctdna_log", "ct_"), "scans": ("scan", "sc_"),
               "lesion_measurements": ("lesion", "le_"), "events": ("outcome", "ev_"),
               "first_line_progressions": ("first_line_progression", "flp_")}
#: Columns REDCap itself provides: the record id, the arm (cohort) and the data access group (site).
BY_REDCAP = {"patient_id": "record_id", "cohort": "redcap_arm", "site": "redcap_data_access_group"}
DICTIONARY_HEADER = ["Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
                     "Choices, Calculations, OR Slider Labels", "Field Note",
                     "Text Validation Type OR Show Slider Number", "Text Validation Min", "Text Validation Max",
                     "Identifier?", "Branching Logic (Show field only if...)", "Required Field?"]


def slug(text: str) -> str:
    """A REDCap name: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def _field(column, prefix: str) -> tuple[dict, str]:
    """A dictionary row for one canonical column and the value map that reads it back."""
    name = prefix + column.name
    row = {"Variable / Field Name": name, "Field Type": "text", "Field Label": column.description or column.name}
    vmap = ""
    if column.codes:
        row["Field Type"] = "radio"
        row["Choices, Calculations, OR Slider Labels"] = " | ".join(f"{k}, {c}" for k, c in enumerate(column.codes, 1))
        vmap = "|".join(f"{k}={c}" for k, c in enumerate(column.codes, 1))
    elif column.type == "bool":
        row["Field Type"] = "yesno"
        vmap = "1=true|0=false"
    elif column.type == "date":
        row["Text Validation Type OR Show Slider Number"] = "date_ymd"
    elif column.type == "int":
        row["Text Validation Type OR Show Slider Number"] = "integer"
    elif column.type == "float":
        row["Text Validation Type OR Show Slider Number"] = "number"
    return row, vmap


def _items(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Questionnaire -> its items in the data, in their natural order (1, 2, ..., 10)."""
    def key(item):
        return (0, int(item), "") if str(item).isdigit() else (1, 0, str(item))
    return {q: sorted(g["item"].astype(str).unique(), key=key) for q, g in frame.groupby("instrument")}


def design(questionnaires: dict[str, list[str]], sites: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data dictionary and the mapping of the STOP-HER2 project, for these questionnaires and sites."""
    rows = [{"Variable / Field Name": "record_id", "Form Name": "enrolment", "Field Type": "text",
             "Field Label": "STOP-HER2 patient id"}]
    mapping = [("patients", "patient_id", "record_id", "", ""), ("patients", "cohort", "redcap_arm", "", "1=1|2=2"),
               ("patients", "site", "redcap_data_access_group", "", "|".join(f"{slug(s)}={s}" for s in sites))]
    for table, (form, prefix) in INSTRUMENTS.items():
        if table != "patients":
            mapping.append((table, "patient_id", "record_id", "", ""))
        for column in TABLES[table].columns:
            if column.name in (BY_REDCAP if table == "patients" else ("patient_id",)):
                continue
            row, vmap = _field(column, prefix)
            rows.append(row | {"Form Name": form})
            mapping.append((table, column.name, row["Variable / Field Name"], "", vmap))
    for questionnaire, items in questionnaires.items():
        form = slug(questionnaire)
        rows.append({"Variable / Field Name": f"{form}_date", "Form Name": form, "Field Type": "text",
                     "Field Label": f"{questionnaire}: date completed",
                     "Text Validation Type OR Show Slider Number": "date_ymd"})
        rows += [{"Variable / Field Name": f"{form}_q{slug(i)}", "Form Name": form, "Field Type": "text",
                  "Field Label": f"{questionnaire} item {i}", "Text Validation Type OR Show Slider Number": "number"}
                 for i in items]
        group = f"pro_responses:{form}"
        renamed = "|".join(f"{slug(i)}={i}" for i in items if slug(i) != i)
        mapping += [(group, "patient_id", "record_id", "", ""), (group, "completed_on", f"{form}_date", "", ""),
                    (group, "instrument", f"={questionnaire}", "", ""), (group, "item", "*", "", renamed),
                    (group, "response", f"{form}_q*", "", "")]
    dictionary = pd.DataFrame(rows, columns=DICTIONARY_HEADER)
    return dictionary, pd.DataFrame(mapping, columns=["table", "column", "source", "event", "values"])


def _text(frame: pd.DataFrame, table: str, labels: bool = False) -> pd.DataFrame:
    """Canonical values as REDCap writes them: ISO dates, 1/0 for yes/no, choice numbers, exact numbers (with
    `labels`, as REDCap's "CSV (labels)" export writes choices: the choice's label, Yes/No)."""
    out = pd.DataFrame(index=frame.index)
    for column in TABLES[table].columns:
        if column.name not in frame:
            continue
        s = frame[column.name]
        if column.codes:
            codes = {c: (c if labels else str(k)) for k, c in enumerate(column.codes, 1)}
            out[column.name] = s.astype(object).map(lambda v, codes=codes: None if pd.isna(v) else codes[str(v)])
        elif column.type == "bool":
            yes_no = {True: "Yes", False: "No"} if labels else {True: "1", False: "0"}
            out[column.name] = s.astype("boolean").map(yes_no).astype(object).where(s.notna(), None)
        elif column.type == "date":
            out[column.name] = pd.to_datetime(s).dt.strftime("%Y-%m-%d").astype(object).where(s.notna(), None)
        elif column.type == "int":
            out[column.name] = s.astype("Int64").astype("string").astype(object).where(s.notna(), None)
        elif column.type == "float":
            out[column.name] = s.astype("float64").map(lambda x: repr(float(x))).astype(object).where(s.notna(), None)
        else:
            out[column.name] = s.astype(object).where(s.notna(), None)
    return out


def export(snap, folder: Path, labels: bool = False, label_headers: bool = False) -> list[Path]:
    """Write the snapshot as a REDCap export of the STOP-HER2 project (files above) into `folder`. `labels`: the
    values as REDCap's "CSV (labels)" writes them (a choice's label, Yes/No, "Enrolment (Arm 1: Cohort 1:
    continue)", the data access group's name); `label_headers`: the headers too (field labels, "Event Name")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {name: snap.query("SELECT " + ", ".join(t.column_names) + " FROM " + name)  # names from TABLES only
              for name, t in TABLES.items()}
    patients = tables["patients"]
    questionnaires = _items(tables["pro_responses"])
    sites = sorted(patients["site"].dropna().astype(str).unique())
    dictionary, mapping = design(questionnaires, sites)
    arm = dict(zip(patients["patient_id"], patients["cohort"].astype(int), strict=True))
    base = {"record_id": None, "redcap_event_name": None, "redcap_repeat_instrument": None,
            "redcap_repeat_instance": None, "redcap_data_access_group": None}
    lines = []
    enrol = _text(patients, "patients", labels)
    for (_, p), (_, values) in zip(patients.iterrows(), enrol.iterrows(), strict=True):
        lines.append(base | {"record_id": p["patient_id"], "redcap_event_name": f"enrolment_arm_{arm[p['patient_id']]}",
                             "redcap_data_access_group": None if pd.isna(p["site"]) else slug(p["site"])}
                     | {c: v for c, v in values.items() if c not in BY_REDCAP})
    for table, (form, prefix) in INSTRUMENTS.items():
        if table == "patients":
            continue
        frame = tables[table]
        values = _text(frame, table, labels)
        instance = frame.groupby("patient_id").cumcount() + 1
        for i in frame.index:
            pid = frame.at[i, "patient_id"]
            lines.append(base | {"record_id": pid, "redcap_event_name": f"follow_up_arm_{arm[pid]}",
                                 "redcap_repeat_instrument": form, "redcap_repeat_instance": str(int(instance[i]))}
                         | {prefix + c: v for c, v in values.loc[i].items() if c != "patient_id"})
    pro = tables["pro_responses"]
    for (pid, completed, questionnaire), g in pro.groupby(["patient_id", "completed_on", "instrument"], sort=True):
        form = slug(questionnaire)
        lines.append(base | {"record_id": pid, "redcap_event_name": f"follow_up_arm_{arm[pid]}",
                             "redcap_repeat_instrument": form, "redcap_data_access_group": None,
                             f"{form}_date": pd.Timestamp(completed).strftime("%Y-%m-%d")}
                     | {f"{form}_q{slug(item)}": None if pd.isna(r) else repr(float(r))
                        for item, r in zip(g["item"].astype(str), g["response"], strict=True)})
    records = pd.DataFrame(lines, columns=[*base, *dictionary["Variable / Field Name"].iloc[1:]])
    # a repeating questionnaire's instance number counts within the record and instrument, as REDCap's does
    pro_lines = records["redcap_repeat_instance"].isna() & records["redcap_repeat_instrument"].notna()
    records.loc[pro_lines, "redcap_repeat_instance"] = (
        records[pro_lines].groupby(["record_id", "redcap_repeat_instrument"]).cumcount() + 1).astype(str)
    events = pd.DataFrame([{"event_name": name.title(), "arm_num": a, "unique_event_name": f"{name}_arm_{a}",
                            "custom_event_label": "", "event_id": ""}
                           for a in (1, 2) for name in ("enrolment", "follow_up")])
    arms = pd.DataFrame({"arm_num": [1, 2], "name": ["Cohort 1: continue", "Cohort 2: stop"]})
    groups = pd.DataFrame({"data_access_group_name": sites, "unique_group_name": [slug(s) for s in sites]})
    if labels:
        arm_name = dict(zip(arms["arm_num"], arms["name"], strict=True))
        event_label = {e["unique_event_name"]: f"{e['event_name']} (Arm {e['arm_num']}: {arm_name[e['arm_num']]})"
                       for e in events.to_dict("records")}
        records["redcap_event_name"] = records["redcap_event_name"].map(event_label)
        records["redcap_repeat_instrument"] = records["redcap_repeat_instrument"].map(
            lambda form: form.replace("_", " ").title(), na_action="ignore")
        site_of = dict(zip(groups["unique_group_name"], groups["data_access_group_name"], strict=True))
        records["redcap_data_access_group"] = records["redcap_data_access_group"].map(site_of)
    if label_headers:  # every field's label, as the dictionary gives it; REDCap's own columns by their labels
        label_of = dict(zip(dictionary["Variable / Field Name"], dictionary["Field Label"], strict=True))
        label_of |= {"redcap_event_name": "Event Name", "redcap_repeat_instrument": "Repeat Instrument",
                     "redcap_repeat_instance": "Repeat Instance", "redcap_data_access_group": "Data Access Group"}
        records.columns = [label_of[c] for c in records.columns]
    written = []
    for name, frame in (("dictionary", dictionary), ("events", events), ("arms", arms), ("records", records),
                        ("mapping", mapping), ("data_access_groups", groups)):
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    return written
