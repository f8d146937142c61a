"""CDISC SDTM (CSV or SAS XPT via pyreadstat) -> canonical tables, with a report of every choice and everything left out.

Domains read (file names are the lower-case domain, e.g. dm.csv, dm.csv.gz or dm.xpt; `_onco`
suffixes as in the pharmaverse examples are accepted):

* DM -> patients (USUBJID, SITEID, RFSTDTC = enrolment, AGE, SEX, ARMCD -> cohort by an arm map);
  DTHDTC -> a death event. Screen failures (ARMCD SCRNFAIL / no RFSTDTC) are not patients.
* SUPPDM (QNAM) -> the clinical characteristics SDTM has no standard variable for: HER2IHC
  (0, 1+, 2+, 3+), HER2ISH (Y/N), ER, PR (POSITIVE/NEGATIVE), DENOVO, VISCERAL, BRAINMET (Y/N),
  METDTC, FLSTDTC (first-line start), FLREGIM, BESTRESP, NMETSITE, ECOG, PIK3CA.
* EX -> treatments (EXTRT, EXSTDTC, EXENDTC; the class from the agent lists below).
* TU + TR -> scans and lesion measurements; RS is compared with our own RECIST 1.1 derivation
  (responses are always derived from the measurements, never taken from RS).
* QS -> questionnaire answers (QSCAT names the instrument; the item is QSTESTCD's trailing number, the
  last two digits of CDISC's EORTC codes: EOR0101 = QLQ-C30 item 1).
* LB or GF -> ctDNA results for the test codes in CTDNA_TESTCODES (LBSTRESN, LBSTRESU, LBLLOQ = limit
  of detection, LBSTRESC DETECTED/NOT DETECTED, LBSTAT NOT DONE = failed).
* DS -> events: DEATH -> death, PROGRESSIVE DISEASE -> progression, other discontinuations -> withdrawal;
  the last date seen anywhere for a subject -> last_contact.

Rules the report states row by row:

* Several evaluators per scan: one reader per patient for the whole series, so that lesions are
  followed by the same person (RECIST compares each scan with that reader's baseline and nadir):
  the reader whose records carry --ACPTFL = Y most often; without flags the INVESTIGATOR; else the
  first reader by id.
* Partial dates (ISO 8601 truncated): a missing day becomes the 1st of the month for findings and
  events (scans, draws, questionnaires, progression, death: the earliest possible, so progression-free
  time is never overstated) and the last day of the month for the end of therapy and enrolment
  (the index date: again the shorter progression-free time). A date without a month is not used.
* Lymph nodes (TULOC containing NODE): the short axis is LPERP when present, else the longest diameter.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from data import recist
from data.canonical import TABLES
from data.importers.agents import agent_class
from data.validate import Report

CTDNA_TESTCODES = ("CTDNA", "MRD", "CTDNAMTM", "CTDNAVAF", "CTDNATF")
#: STOP-HER2 arm codes; others need an explicit arm map (ARMCD=cohort).
DEFAULT_ARMS = {"CONT": 1, "CONTINUE": 1, "COHORT1": 1, "STOP": 2, "COHORT2": 2}
NOT_ENROLLED_ARMS = {"SCRNFAIL", "NOTASSGN", "NOTTRT"}
WITHDRAWAL_EXCLUDED = {"COMPLETED", "RANDOMIZED", "FINAL LAB VISIT", "FINAL RETRIEVAL VISIT", "DEATH",
                       "PROGRESSIVE DISEASE", "SCREEN FAILURE", "INFORMED CONSENT OBTAINED"}
from data.clinical import RESPONSE_CODES  # noqa: E402

SUPPDM = {"HER2IHC": "her2_ihc", "HER2ISH": "her2_ish_amplified", "ER": "er_status", "PR": "pr_status",
          "DENOVO": "de_novo", "VISCERAL": "visceral", "BRAINMET": "brain_mets_history", "METDTC": "metastatic_on",
          "FLSTDTC": "first_line_start", "FLREGIM": "first_line_regimen", "BESTRESP": "best_response",
          "NMETSITE": "n_metastatic_sites", "ECOG": "ecog", "PIK3CA": "pik3ca"}


#: The columns each domain's mapping reads directly: without one the domain is refused with its name.
REQUIRED_COLUMNS = {"dm": ("USUBJID",), "suppdm": ("USUBJID", "QNAM", "QVAL"), "ex": ("USUBJID", "EXTRT"),
                    "tr": ("USUBJID", "TRGRPID", "TRLNKID", "TRTESTCD"), "rs": ("USUBJID", "RSTESTCD", "RSSTRESC"),
                    "qs": ("USUBJID", "QSTESTCD"), "ds": ("USUBJID", "DSDECOD"), "tu": ("USUBJID",),
                    "sv": ("USUBJID",)}


# ------------------------------------------------------------------------------------ reading
def _domains(folder: Path, report: Report) -> dict[str, tuple[pd.DataFrame, str]]:
    out = {}
    for path in sorted(Path(folder).iterdir()):
        name = path.name.lower()
        kind = "csv" if name.endswith((".csv", ".csv.gz")) else "xpt" if name.endswith(".xpt") else None
        stem = name.split(".")[0].removesuffix("_onco")
        if kind is not None and not path.is_file():  # a folder named dm.csv
            report.add("error", path.name, None, "", "", "this is a folder, not a domain file")
            continue
        if kind == "csv":
            try:
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError, zlib.error) as exc:
                # OSError covers a .gz that is not gzip (gzip.BadGzipFile)
                report.add("error", path.name, None, "", "", f"not a readable CSV: {str(exc)[:200]}")
                continue
        elif kind == "xpt":
            import pyreadstat

            try:
                frame, _ = pyreadstat.read_xport(str(path))
            except Exception as exc:  # noqa: BLE001 - any unreadable transport file is reported, not fatal
                report.add("error", path.name, None, "", "", f"not a readable SAS XPT file: {exc}")
                continue
            frame = frame.astype(object).where(frame.notna(), None)
            for col in frame.columns:  # numbers become text like CSV cells, 63.0 -> "63"
                frame[col] = frame[col].map(lambda v: None if v is None or v == "" else
                                            (f"{v:g}" if isinstance(v, float) else str(v)))
        else:
            continue
        frame.columns = [str(c).upper() for c in frame.columns]
        frame.index = np.arange(len(frame)) + 2  # the line in the file (header = line 1)
        missing = [c for c in REQUIRED_COLUMNS.get(stem, ()) if c not in frame.columns]
        if missing:  # the domain cannot be mapped without them: a finding, and the domain is not used
            for column in missing:
                report.add("error", path.name, 1, column, "", f"required column of the {stem.upper()} domain missing")
            continue
        out[stem] = (frame, path.name)
    return out


def _partial_date(values: pd.Series, late: bool) -> tuple[pd.Series, pd.Series]:
    """ISO dates, possibly truncated or with a time: (dates, kind) where kind is '', 'month' or 'unusable'."""
    text = values.astype("string").str.strip().str.slice(0, 10)
    full = pd.to_datetime(text.where(text.str.len() == 10), format="%Y-%m-%d", errors="coerce")
    month = pd.to_datetime(text.where(text.str.len() == 7), format="%Y-%m", errors="coerce")
    if late:
        month = month + pd.offsets.MonthEnd(0)
    dates = full.fillna(month)
    kind = pd.Series("", index=values.index, dtype=object)
    kind[month.notna() & full.isna()] = "month"
    kind[text.notna() & (text != "") & dates.isna()] = "unusable"
    # the shape of a date (YYYY-MM or YYYY-MM-DD) that is no real day (2024-02-30, 2999-01-01 beyond what
    # can be stored) is an error: dropping it would silently move day 0 or hide a death
    shaped = text.str.fullmatch(r"\d{4}-\d{2}(-\d{2})?").fillna(False).astype(bool)
    kind[shaped & dates.isna()] = "invalid"
    return dates, kind


def _dates(frame: pd.DataFrame, column: str, file: str, report: Report, late: bool = False) -> pd.Series:
    if column not in frame:
        return pd.Series(pd.NaT, index=frame.index)
    dates, kind = _partial_date(frame[column], late)
    rule = "the last day of the month (end of therapy / enrolment)" if late else "the 1st of the month"
    for k, severity, message in (
            ("month", "warning", f"partial date: day missing, read as {rule}"),
            ("unusable", "warning", "partial date without a month (or unreadable): not used"),
            ("invalid", "error", "not a real calendar date (or beyond 2262): correct it in the source")):
        mask = kind == k
        if mask.any():
            _report_rows(report, severity, file, frame.index[mask], column, frame.loc[mask, column], message)
    return dates


def _report_rows(report, severity, file, rows, column, values, message, limit=200) -> None:
    rows, values = list(rows), list(values)
    for row, value in zip(rows[:limit], values[:limit], strict=True):
        report.add(severity, file, row, column, value, message)
    if len(rows) > limit:
        report.add(severity, file, None, column, "", f"{message}: {len(rows) - limit} more rows like this")


def _iso(dates: pd.Series) -> pd.Series:
    return dates.dt.strftime("%Y-%m-%d").astype(object).where(dates.notna(), None)


def _yes_no(value) -> str | None:
    v = str(value).strip().upper() if value is not None and not pd.isna(value) else ""
    return {"Y": "true", "YES": "true", "N": "false", "NO": "false"}.get(v)


def parse_arm_map(text: str | None) -> dict[str, int]:
    """'Pbo=1,Xan_Hi=2' -> {'PBO': 1, 'XAN_HI': 2}."""
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        code, _, cohort = part.partition("=")
        if cohort.strip() not in ("1", "2"):
            raise ValueError(f"arm map entry {part!r}: the cohort must be 1 or 2")
        out[code.strip().upper()] = int(cohort)
    return out


# ----------------------------------------------------------------------------------- mapping
def read(source, arm_map: dict[str, int] | str | None = None):
    """(raw canonical tables, file per table, source line per row, report)."""
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of SDTM domain files (.csv or .xpt)")
    arms = {**DEFAULT_ARMS, **(parse_arm_map(arm_map) if isinstance(arm_map, str) else
                               {k.upper(): v for k, v in (arm_map or {}).items()})}
    report = Report()
    domains = _domains(folder, report)
    if "dm" not in domains:
        report.add("error", "dm", None, "", "", "the DM domain (dm.csv or dm.xpt) is required: it lists the patients")
        return {}, {}, {}, report
    dm, dm_file = domains["dm"]
    tables, files, lines = {}, {}, {}

    # Patients ------------------------------------------------------------------------------
    armcd = dm.get("ARMCD", pd.Series(None, index=dm.index)).astype("string").str.upper()
    enrolled = _dates(dm, "RFSTDTC", dm_file, report, late=True)
    not_enrolled = armcd.isin(NOT_ENROLLED_ARMS).fillna(False) | enrolled.isna()
    if not_enrolled.any():
        _report_rows(report, "warning", dm_file, dm.index[not_enrolled], "ARMCD", dm.loc[not_enrolled, "ARMCD"]
                     if "ARMCD" in dm else [""] * int(not_enrolled.sum()),
                     "not enrolled (screen failure or no RFSTDTC): not imported")
    dm = dm[~not_enrolled]
    armcd, enrolled = armcd[~not_enrolled], enrolled[~not_enrolled]
    cohort = armcd.map(arms)
    for code in sorted(armcd[cohort.isna()].dropna().unique()):
        rows = dm.index[(armcd == code).fillna(False)]
        code = dm.loc[rows[0], "ARMCD"]  # as written in the file
        report.add("error", dm_file, int(rows[0]), "ARMCD", code,
                   f"arm {code} is not a STOP-HER2 cohort ({len(rows)} subjects): give an arm map, e.g. "
                   f"--arm-map {code}=1 (continues therapy) or {code}=2 (stops)")
    patients = pd.DataFrame({
        "patient_id": dm["USUBJID"], "site": dm.get("SITEID"),
        "cohort": cohort.astype("Int64").astype("string"), "enrolled_on": _iso(enrolled),
        "age_at_enrolment": dm.get("AGE"),
        "sex": dm.get("SEX", pd.Series(None, index=dm.index)).map({"F": "F", "M": "M", "U": None}).where(
            dm.get("SEX", pd.Series(None, index=dm.index)).isin(["F", "M", "U"]), "other"),
    }, index=dm.index)
    for col in TABLES["patients"].column_names:
        if col not in patients:
            patients[col] = None
    supp = domains.get("suppdm")
    if supp is not None:
        s, s_file = supp
        for qnam, column in SUPPDM.items():
            rows = s[s["QNAM"].str.upper() == qnam]
            values = rows.set_index("USUBJID")["QVAL"]
            values = values[~values.index.duplicated()]
            mapped = patients["patient_id"].map(values)
            if column in ("her2_ish_amplified", "de_novo", "visceral", "brain_mets_history"):
                mapped = mapped.map(_yes_no)
            elif column in ("er_status", "pr_status"):
                mapped = mapped.str.lower()
            elif column in ("metastatic_on", "first_line_start"):
                mapped = _iso(_partial_date(mapped, late=False)[0])
            patients[column] = mapped
    no_her2 = patients["her2_ihc"].isna()
    if no_her2.any():
        _report_rows(report, "warning", dm_file, patients.index[no_her2], "USUBJID", patients.loc[no_her2, "patient_id"],
                     "no HER2 status in the source (SUPPDM HER2IHC / HER2ISH): not shown to be a HER2-positive "
                     "trial patient; eligibility fails and the model refuses this patient")
    tables["patients"], files["patients"], lines["patients"] = patients, dm_file, patients.index.to_numpy()
    ids = set(patients["patient_id"])

    def ours(frame: pd.DataFrame, file: str) -> pd.DataFrame:
        unknown = ~frame["USUBJID"].isin(ids)
        if unknown.any():
            report.add("warning", file, int(frame.index[unknown][0]), "USUBJID", frame.loc[unknown, "USUBJID"].iloc[0],
                       f"{int(unknown.sum())} rows of {frame['USUBJID'][unknown].nunique()} subjects who are not "
                       "imported patients (see DM): not used")
        return frame[~unknown]

    # Treatments ---------------------------------------------------------------------------
    ex_pair = domains.get("ex")
    if ex_pair is not None:
        ex, ex_file = ex_pair
        ex = ours(ex, ex_file)
        start = _dates(ex, "EXSTDTC", ex_file, report)
        stop = _dates(ex, "EXENDTC", ex_file, report, late=True)
        treatments = pd.DataFrame({"patient_id": ex["USUBJID"], "agent": ex["EXTRT"].str.lower(),
                                   "agent_class": ex["EXTRT"].map(agent_class), "started_on": _iso(start),
                                   "stopped_on": _iso(stop), "stop_reason": None}, index=ex.index)
        keep = start.notna()
        tables["treatments"], files["treatments"], lines["treatments"] = treatments[keep], ex_file, ex.index[keep]
        if not (treatments["agent_class"] == "anti-HER2").any():
            report.add("warning", ex_file, None, "EXTRT", ", ".join(sorted(ex["EXTRT"].dropna().unique())[:5]),
                       "no anti-HER2 agent in EX: no patient has a stop date for the index (day 0)")
    else:
        tables["treatments"] = pd.DataFrame(columns=TABLES["treatments"].column_names)
        report.add("warning", "ex", None, "", "", "no EX domain: no treatments")

    # Tumours, scans, lesions, responses -----------------------------------------------------
    scans, lesions, scan_lines, lesion_lines = _tumours(domains, ours, report)
    tables["scans"], tables["lesion_measurements"] = scans, lesions
    files["scans"] = files["lesion_measurements"] = domains["tr"][1] if "tr" in domains else "tr"
    lines["scans"], lines["lesion_measurements"] = scan_lines, lesion_lines
    if "rs" in domains and not scans.empty:
        _compare_rs(domains["rs"], scans, lesions, ours, report)

    # Questionnaires, ctDNA, events ----------------------------------------------------------
    tables["pro_responses"], files["pro_responses"], lines["pro_responses"] = _questionnaires(domains, ours, report)
    tables["ctdna_draws"], files["ctdna_draws"], lines["ctdna_draws"] = _ctdna(domains, ours, report)
    tables["events"], files["events"], lines["events"] = _events(domains, dm, dm_file, ours, report,
                                                                  tables, scans)
    tables["first_line_progressions"] = pd.DataFrame(columns=TABLES["first_line_progressions"].column_names)
    return tables, files, {k: np.asarray(v) for k, v in lines.items()}, report


def _readers(tr: pd.DataFrame) -> pd.Series:
    """Who read each record: TREVALID (e.g. RADIOLOGIST 1), else TREVAL (e.g. INVESTIGATOR), else ""."""
    reader = tr["TREVALID"] if "TREVALID" in tr else pd.Series(None, index=tr.index, dtype=object)
    if "TREVAL" in tr:
        reader = reader.fillna(tr["TREVAL"])
    return reader.fillna("")


def _reader_per_patient(tr: pd.DataFrame, file: str, report: Report) -> pd.Series:
    """The evaluator id used for each patient (see the module's rules), per record."""
    reader = _readers(tr)
    accepted = tr.get("TRACPTFL", pd.Series(None, index=tr.index)).eq("Y")
    frame = pd.DataFrame({"pid": tr["USUBJID"], "reader": reader, "accepted": accepted,
                          "investigator": reader.str.upper().eq("INVESTIGATOR")})
    stats = frame.groupby(["pid", "reader"]).agg(accepted=("accepted", "sum"), inv=("investigator", "max")).reset_index()
    stats = stats.sort_values(["pid", "accepted", "inv", "reader"], ascending=[True, False, False, True])
    chosen = stats.drop_duplicates("pid").set_index("pid")["reader"]
    switched = stats[stats["accepted"] > 0].groupby("pid").size()
    for pid in switched[switched > 1].index[:50]:
        report.add("warning", file, None, "TRACPTFL", pid, "accepted records come from more than one reader: "
                   f"all scans are read by {chosen[pid]} (the reader accepted most often)")
    return tr["USUBJID"].map(chosen)


def _tumours(domains, ours, report):
    empty_scans = pd.DataFrame(columns=TABLES["scans"].column_names)
    empty_lesions = pd.DataFrame(columns=TABLES["lesion_measurements"].column_names)
    if "tr" not in domains:
        report.add("warning", "tr", None, "", "", "no TR domain: no scans or lesion measurements")
        return empty_scans, empty_lesions, [], []
    tr, file = domains["tr"]
    tr = ours(tr, file)
    tr = tr[_readers(tr) == _reader_per_patient(tr, file, report)]
    tr = tr.assign(_date=_dates(tr, "TRDTC", file, report))
    tr = tr[tr["_date"].notna()]
    visit = tr["VISITNUM"].fillna(tr.get("VISIT")) if "VISITNUM" in tr else tr["TRDTC"]
    tr = tr.assign(scan_id="V" + visit.astype(str).str.replace(r"\.0$", "", regex=True))
    scan_date = tr.groupby(["USUBJID", "scan_id"])["_date"].transform("min")
    tr = tr.assign(_date=scan_date)
    first = ~tr.duplicated(["USUBJID", "scan_id"])
    scans = pd.DataFrame({"patient_id": tr.loc[first, "USUBJID"], "scan_id": tr.loc[first, "scan_id"],
                          "scanned_on": _iso(tr.loc[first, "_date"]),
                          "modality": tr.loc[first].get("TRMETHOD")}, index=tr.index[first])
    # Lesion location and kind from TU (by link id), else TRGRPID.
    loc = pd.Series(dtype=object)
    if "tu" in domains:
        tu = domains["tu"][0]
        loc = tu.drop_duplicates(["USUBJID", "TULNKID"]).set_index(["USUBJID", "TULNKID"])["TULOC"]
    key = pd.MultiIndex.from_arrays([tr["USUBJID"], tr.get("TRLNKID")])
    organ = pd.Series(loc.reindex(key).to_numpy() if len(loc) else None, index=tr.index)
    group = tr["TRGRPID"].str.upper()
    test = tr["TRTESTCD"].str.upper()
    lesion = tr["TRLNKID"].notna()
    is_node = organ.astype("string").str.upper().str.contains("NODE").fillna(False).astype(bool)
    not_done = tr.get("TRSTAT", pd.Series(None, index=tr.index)).eq("NOT DONE")
    value = pd.to_numeric(tr["TRSTRESN"] if "TRSTRESN" in tr else tr["TRSTRESC"], errors="coerce").where(~not_done)
    target_long = lesion & group.eq("TARGET") & test.eq("LDIAM")
    target_short = lesion & group.eq("TARGET") & test.eq("LPERP")
    short = pd.Series(value[target_short].to_numpy(),
                      index=pd.MultiIndex.from_frame(tr.loc[target_short, ["USUBJID", "scan_id", "TRLNKID"]]))
    short = short[~short.index.duplicated()]
    t = tr[target_long]
    t_key = pd.MultiIndex.from_frame(t[["USUBJID", "scan_id", "TRLNKID"]])
    diameter = value[target_long].where(~is_node[target_long],
                                         pd.Series(short.reindex(t_key).to_numpy(), index=t.index)
                                         .fillna(value[target_long]))
    targets = pd.DataFrame({"patient_id": t["USUBJID"], "scan_id": t["scan_id"], "lesion_id": t["TRLNKID"],
                            "kind": "target", "organ": organ[target_long], "is_node": is_node[target_long],
                            "diameter_mm": diameter, "status": None})
    state = lesion & test.eq("TUMSTATE") & group.isin(["NON-TARGET", "NEW"])
    s = tr[state]
    status = s["TRSTRESC"].str.upper().map({"PRESENT": "present", "ABSENT": "absent",
                                            "UNEQUIVOCAL": "unequivocal_progression",
                                            "UNEQUIVOCAL PROGRESSION": "unequivocal_progression",
                                            "EQUIVOCAL": "equivocal"})
    for mask, message in ((status.isna() & not_done[state], "not done (TRSTAT): the lesion is not evaluable at this scan"),
                          (status.isna() & ~not_done[state],
                           "lesion state not recognised (PRESENT, ABSENT, UNEQUIVOCAL, EQUIVOCAL): not evaluable")):
        if mask.any():
            _report_rows(report, "warning", file, s.index[mask], "TRSTRESC", s.loc[mask, "TRSTRESC"], message)
    others = pd.DataFrame({"patient_id": s["USUBJID"], "scan_id": s["scan_id"], "lesion_id": s["TRLNKID"],
                           "kind": group[state].map({"NON-TARGET": "non_target", "NEW": "new"}),
                           "organ": organ[state], "is_node": is_node[state], "diameter_mm": None, "status": status})
    lesions = pd.concat([targets.astype(object), others.astype(object)])
    lesions["is_node"] = lesions["is_node"].map({True: "true", False: "false"})
    lesions["diameter_mm"] = lesions["diameter_mm"].astype("float64").map(
        lambda v: None if pd.isna(v) else repr(float(v)))
    lesions = lesions[~lesions.duplicated(["patient_id", "scan_id", "lesion_id"])]
    return scans.reset_index(drop=True), lesions.reset_index(drop=True), scans.index.to_numpy(), lesions.index.to_numpy()


def _compare_rs(rs_pair, scans, lesions, ours, report) -> None:
    """Where the file's overall response (RS) and our RECIST 1.1 derivation differ: a warning each."""
    rs, file = rs_pair
    rs = ours(rs, file)
    overall = rs[rs["RSTESTCD"].str.upper().eq("OVRLRESP")]
    if "RSACPTFL" in overall and overall["RSACPTFL"].eq("Y").any():
        overall = overall[overall["RSACPTFL"].eq("Y") | ~overall["USUBJID"].isin(
            overall.loc[overall["RSACPTFL"].eq("Y"), "USUBJID"])]
    visit = overall["VISITNUM"].fillna("") if "VISITNUM" in overall else overall.get("VISIT", "")
    overall = overall.assign(scan_id="V" + visit.astype(str).str.replace(r"\.0$", "", regex=True))
    m = scans.merge(lesions, on=["patient_id", "scan_id"], how="left")
    m["scanned_on"] = pd.to_datetime(m["scanned_on"])
    m["is_node"] = m["is_node"].eq("true")
    m["diameter_mm"] = pd.to_numeric(m["diameter_mm"])
    derived = recist.assess(m)[["patient_id", "scan_id", "overall_response"]]
    joined = overall.reset_index().merge(derived, left_on=["USUBJID", "scan_id"], right_on=["patient_id", "scan_id"])
    theirs = joined["RSSTRESC"].str.upper()
    comparable = theirs.isin(RESPONSE_CODES) & joined["overall_response"].notna()
    differ = comparable & (theirs != joined["overall_response"])
    report.add("warning", file, None, "RSSTRESC", "",
               f"overall response: our RECIST 1.1 derivation agrees with the file at {int((comparable & ~differ).sum())} "
               f"of {int(comparable.sum())} comparable scans; responses are always derived from the measurements")
    d = joined[differ]
    _report_rows(report, "warning", file, d["index"],
                 "RSSTRESC", d["RSSTRESC"] + " (ours: " + d["overall_response"] + ")",
                 "the file's overall response differs from our RECIST 1.1 derivation (ours is used)", limit=100)


def _questionnaires(domains, ours, report):
    columns = TABLES["pro_responses"].column_names
    if "qs" not in domains:
        return pd.DataFrame(columns=columns), "qs", []
    qs, file = domains["qs"]
    qs = ours(qs, file)
    cat = qs.get("QSCAT", pd.Series("", index=qs.index)).fillna("").str.upper()
    instrument = pd.Series(None, index=qs.index, dtype=object)
    instrument[cat.str.contains("QLQ-C30")] = "QLQ-C30"
    instrument[cat.str.contains("FCRI")] = "FCRI-SF"
    instrument[cat.str.contains("DECISION REGRET")] = "DRS"
    instrument[cat.str.contains("PROMIS") & cat.str.contains("ANXIETY")] = "PROMIS-Anxiety"
    instrument = instrument.fillna(qs.get("QSCAT"))
    # CDISC codes EORTC items as EOR + 2-digit questionnaire + 2-digit item (EOR0101 = QLQ-C30 item 1);
    # other instruments: the trailing number.
    code = qs["QSTESTCD"].astype("string")
    number = code.str.extract(r"^EOR\d{2}(\d{2})$")[0].fillna(code.str.extract(r"(\d+)$")[0])
    item = number.astype("Int64").astype("string")
    item = item.where(~cat.str.contains("PROMIS"), "TSCORE")
    when = _dates(qs, "QSDTC", file, report)
    out = pd.DataFrame({"patient_id": qs["USUBJID"], "completed_on": _iso(when), "instrument": instrument,
                        "item": item, "response": qs.get("QSSTRESN", qs.get("QSORRES"))}, index=qs.index)
    keep = when.notna()
    return out[keep], file, qs.index[keep].to_numpy()


def _ctdna(domains, ours, report):
    columns = TABLES["ctdna_draws"].column_names
    for name in ("lb", "gf"):
        if name not in domains:
            continue
        frame, file = domains[name]
        p = name.upper()
        codes = frame.get(f"{p}TESTCD", pd.Series("", index=frame.index)).fillna("").str.upper()
        frame = ours(frame[codes.isin(CTDNA_TESTCODES)], file)
        if frame.empty:
            report.add("warning", file, None, f"{p}TESTCD", "", f"no ctDNA results (test codes {', '.join(CTDNA_TESTCODES)})")
            return pd.DataFrame(columns=columns), file, []
        when = _dates(frame, f"{p}DTC", file, report)
        text = frame.get(f"{p}STRESC", pd.Series(None, index=frame.index)).fillna("").str.upper()
        detected = text.map({"DETECTED": "true", "POSITIVE": "true", "NOT DETECTED": "false", "NEGATIVE": "false"})
        status = frame.get(f"{p}STAT", pd.Series(None, index=frame.index)).fillna("")
        out = pd.DataFrame({"patient_id": frame["USUBJID"], "drawn_on": _iso(when),
                            "assay": frame.get(f"{p}METHOD", frame[f"{p}TESTCD"]).fillna(frame[f"{p}TESTCD"]),
                            "value": frame.get(f"{p}STRESN"), "unit": frame.get(f"{p}STRESU"),
                            "lod": frame.get(f"{p}LLOQ"), "detected": detected,
                            "qc": np.where(status.str.upper().eq("NOT DONE"), "failed", "pass")}, index=frame.index)
        keep = when.notna()
        return out[keep], file, frame.index[keep].to_numpy()
    return pd.DataFrame(columns=columns), "lb", []


def _events(domains, dm, dm_file, ours, report, tables, scans):
    parts, line_parts = [], []
    if "DTHDTC" in dm:
        death = _dates(dm, "DTHDTC", dm_file, report)
        d = dm[death.notna()]
        parts.append(pd.DataFrame({"patient_id": d["USUBJID"], "event": "death", "occurred_on": _iso(death[death.notna()]),
                                   "detail": "DM.DTHDTC"}))
        line_parts.append(d.index.to_numpy())
    file = dm_file
    if "ds" in domains:
        ds, file = domains["ds"]
        ds = ours(ds, file)
        decod = ds["DSDECOD"].fillna("").str.upper()
        kind = pd.Series(None, index=ds.index, dtype=object)
        kind[decod.eq("DEATH")] = "death"
        kind[decod.eq("PROGRESSIVE DISEASE")] = "progression"
        kind[kind.isna() & ~decod.isin(WITHDRAWAL_EXCLUDED) & ds.get("DSCAT", "").fillna("").str.upper()
             .eq("DISPOSITION EVENT")] = "withdrawal"
        when = _dates(ds, "DSSTDTC", file, report)
        keep = kind.notna() & when.notna()
        parts.append(pd.DataFrame({"patient_id": ds.loc[keep, "USUBJID"], "event": kind[keep],
                                   "occurred_on": _iso(when[keep]), "detail": "DS: " + ds.loc[keep, "DSDECOD"]}))
        line_parts.append(ds.index[keep].to_numpy())
    # Last contact: the latest date anywhere for the patient.
    dated = [(tables["patients"], "enrolled_on")]
    dated += [(tables[t], c) for t, c in (("treatments", "stopped_on"), ("treatments", "started_on"),
                                          ("pro_responses", "completed_on"), ("ctdna_draws", "drawn_on"))]
    dated.append((scans, "scanned_on"))
    if "sv" in domains:
        sv, sv_file = domains["sv"]
        sv = ours(sv, sv_file)
        dated.append((pd.DataFrame({"patient_id": sv["USUBJID"],
                                    "d": _iso(_partial_date(sv.get("SVSTDTC", pd.Series(dtype=object)), False)[0])}), "d"))
    stacked = pd.concat([f[["patient_id", c]].set_axis(["patient_id", "d"], axis=1) for f, c in dated if len(f)])
    stacked["d"] = pd.to_datetime(stacked["d"], errors="coerce")
    last = stacked.dropna().groupby("patient_id")["d"].max()
    parts.append(pd.DataFrame({"patient_id": last.index, "event": "last_contact", "occurred_on": _iso(last),
                               "detail": "latest date in the source"}))
    line_parts.append(np.full(len(last), None, dtype=object))  # derived: no source row
    events = pd.concat(parts, ignore_index=True)
    return events, f"{file} (events)", np.concatenate(line_parts) if line_parts else []

