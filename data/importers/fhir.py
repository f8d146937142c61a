"""HL7 FHIR R4 with mCODE profiles -> canonical tables, with a report of what was used and what was not.

Input: a Bundle (collection, transaction, searchset, batch), a single resource, NDJSON (one resource
per line), or a folder of .json / .ndjson files. Resources read:

* Patient -> patients (gender, birthDate for the age, deceasedDateTime -> a death event).
* ResearchSubject (study enrolment): period.start = enrolment, assignedArm/actualArm -> cohort by the
  arm map (default: names containing "continue" -> 1, "stop" -> 2). A patient with no ResearchSubject
  is imported as a screening candidate still on therapy (cohort 1, enrolled on the latest date in
  their record) and the report says so.
* Condition, mCODE primary cancer condition (breast by SNOMED or text) and secondary cancer condition
  (metastases: earliest onset = metastatic_on, distinct sites, visceral or brain).
* Observation: ER 85337-4, PR 85339-0, HER2 48676-1 (interpretation) and 18474-7 (IHC score),
  HER2 ISH 85318-4 / 85319-2, cancer disease status 97509-4 (worsened = progression, with its date),
  ECOG 89247-1, and ctDNA results for the codes in CTDNA_CODES (configurable).
* MedicationAdministration / MedicationRequest / MedicationStatement -> treatments (class by the
  RxNorm code or the name: data/importers/agents.py).
* QuestionnaireResponse -> questionnaire answers (instrument from the questionnaire's name, item
  from the linkId's trailing number).

Why no FHIR library: the maintained Python ones (fhir.resources) validate strictly against R5 or
R4B models and reject a whole resource for one unexpected element; an importer must read what it
can from R4 data and report the rest row by row, so we read the JSON ourselves.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from data.canonical import TABLES
from data.clinical import DAYS_PER_YEAR
from data.importers.agents import ANTI_HER2_RXNORM, agent_class
from data.validate import Report

LOINC_ER, LOINC_PR, LOINC_HER2, LOINC_HER2_IHC = "85337-4", "85339-0", "48676-1", "18474-7"
LOINC_HER2_ISH = ("85318-4", "85319-2")
LOINC_DISEASE_STATUS, LOINC_ECOG = "97509-4", "89247-1"
#: Observation codes read as ctDNA results (system|code or code); a deployment adds its assay's codes.
CTDNA_CODES = ("CTDNA", "MRD", "ctDNA", "http://stop-her2.example/ctdna|CTDNA")
POSITIVE = {"LA6576-8", "POS", "positive", "Positive", "detected", "Detected", "DET", "A", "H", "260373001"}
NEGATIVE = {"LA6577-6", "NEG", "negative", "Negative", "not detected", "Not detected", "ND", "N", "260415000"}
WORSENED = {"271299001"}  # SNOMED: patient's condition worsened (mCODE disease status)
BREAST_WORDS = ("breast",)
VISCERAL_WORDS = ("liver", "lung", "pleura", "peritone", "adrenal", "hepat", "pulmon")
BRAIN_WORDS = ("brain", "cerebr", "leptomening")


def _iter_resources(source: Path, report: Report):
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in (".json", ".ndjson")) if source.is_dir() else [source]
    if not paths:
        report.add("error", source.name, None, "", "", "no .json or .ndjson files")
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            report.add("error", path.name, None, "", "", f"cannot be read as UTF-8 text: {exc}")
            continue
        if path.suffix.lower() == ".ndjson":
            for n, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    obj = _parse(line, path.name, n, report)
                    if obj is not None:
                        yield from _unpack(obj, path.name, n, report)
        else:
            obj = _parse(text, path.name, 1, report)
            if obj is not None:
                yield from _unpack(obj, path.name, 1, report)


def _content(resource: dict) -> str:
    """What a resource says, without its bookkeeping (meta, narrative), to tell a copy from a rival."""
    return json.dumps({k: v for k, v in resource.items() if k not in ("meta", "text")}, sort_keys=True, default=str)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _parse(text: str, file: str, line: int, report: Report):
    """JSON as the standard defines it (no NaN or Infinity, which Python would accept), or a located finding;
    nesting too deep for the parser is a finding too, not a crash."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        report.add("error", file, line + exc.lineno - 1, "", text[:80] if "\n" not in text.strip() else "",
                   f"not valid JSON: {exc.msg}")
    except ValueError as exc:
        report.add("error", file, line, "", "", f"not valid JSON: {exc}")
    except RecursionError:
        report.add("error", file, line, "", "", "JSON nested too deeply to read")
    return None


def _unpack(obj, file: str, row: int, report: Report, url: str | None = None):
    if not isinstance(obj, dict) or "resourceType" not in obj:
        report.add("error", file, row, "resourceType", "", "not a FHIR resource (no resourceType)")
        return
    if not isinstance(obj["resourceType"], str):
        report.add("error", file, row, "resourceType", str(obj["resourceType"])[:40], "resourceType is not a name")
        return
    if "id" in obj and not isinstance(obj["id"], str):
        report.add("error", file, row, "id", str(obj["id"])[:40], "a resource id must be text")
        return
    if obj["resourceType"] == "Bundle":
        entries = obj.get("entry") or []
        for i, entry in enumerate(entries if isinstance(entries, list) else [], start=1):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):  # each entry gets the same checks as a resource on its own
                full_url = entry.get("fullUrl")
                yield from _unpack(resource, file, i, report, full_url if isinstance(full_url, str) else None)
        return
    yield file, row, url, obj


def _codes(concept) -> list[tuple[str, str, str]]:
    """(system, code, display) of every coding, plus the text as a display."""
    if not isinstance(concept, dict):
        return []
    out = [(c.get("system", ""), str(c.get("code", "")), c.get("display", "") or "")
           for c in concept.get("coding") or [] if isinstance(c, dict)]
    if concept.get("text"):
        out.append(("", "", concept["text"]))
    return out


def _has_code(concept, *codes) -> bool:
    return any(code in codes or f"{system}|{code}" in codes for system, code, _ in _codes(concept))


def _words(concept) -> str:
    return " ".join(f"{code} {display}" for _, code, display in _codes(concept)).lower()


def _date(value) -> str | None:
    """The date part of a FHIR date/dateTime; a partial date (YYYY-MM) becomes the 1st of the month."""
    if not isinstance(value, str):
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", value):
        return value[:10]
    if re.fullmatch(r"\d{4}-\d{2}", value):
        return value + "-01"
    return None


def _effective(resource) -> str | None:
    for key in ("effectiveDateTime", "occurrenceDateTime", "authored", "authoredOn", "onsetDateTime",
                "recordedDate", "issued"):
        if resource.get(key):
            return _date(resource[key])
    period = resource.get("effectivePeriod") or resource.get("period") or {}
    return _date(period.get("start"))


def _subject(resource, urls: dict) -> str | None:
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference") \
        if isinstance(resource.get("subject") or resource.get("patient"), dict) else None
    if not ref:
        return None
    if ref in urls:
        return urls[ref]
    return ref.split("/")[-1] if ref.startswith("Patient/") else None


def _sign(concept) -> bool | None:
    if not isinstance(concept, dict):
        return None
    values = {code for _, code, _ in _codes(concept)} | {display for _, _, display in _codes(concept)}
    if values & POSITIVE:
        return True
    if values & NEGATIVE:
        return False
    return None


def read(source, arm_map: dict[str, int] | str | None = None, ctdna_codes: tuple[str, ...] = CTDNA_CODES):
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    report = Report()
    file = source.name
    resources = list(_iter_resources(source, report))
    urls = {}
    for _file, _row, url, r in resources:
        if r.get("resourceType") == "Patient" and r.get("id"):
            urls[f"Patient/{r['id']}"] = r["id"]
            if url:
                urls[url] = r["id"]
    arms = {k.lower(): v for k, v in (_arm_map(arm_map)).items()}
    patients: dict[str, dict] = {}
    lines: dict[str, list] = {name: [] for name in TABLES}
    rows: dict[str, list] = {name: [] for name in TABLES}
    seen: dict[str, list] = {}
    unused: dict[str, int] = {}

    for f, row, _, r in resources:
        try:
            if r.get("resourceType") == "Patient":
                pid = r.get("id")
                if not pid:
                    report.add("error", f, row, "id", "", "Patient without an id")
                    continue
                if pid in patients:
                    first_file, first_row = patients[pid]["_row"]
                    if _content(r) == patients[pid]["_content"]:  # the same Patient twice (a Bundle and its file)
                        continue
                    # two different Patients with one id: which one is meant is not ours to guess
                    report.add("error", f, row, "id", pid, f"a second, different Patient with this id (the first: "
                               f"{first_file}, line {first_row}): keep one")
                    continue
                gender = {"female": "F", "male": "M", "other": "other"}.get(r.get("gender"))
                patients[pid] = {"patient_id": pid, "sex": gender, "_born": _date(r.get("birthDate")), "_row": (f, row),
                                 "cohort": None, "enrolled_on": None, "_content": _content(r)}
                if r.get("deceasedDateTime"):
                    rows["events"].append({"patient_id": pid, "event": "death", "occurred_on": _date(r["deceasedDateTime"]),
                                           "detail": "Patient.deceasedDateTime"})
                    lines["events"].append(row)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            # a field of the wrong type (a list where an object belongs, a number for a date): one
            # located finding for the resource, never a traceback
            report.add("error", f, row, "resourceType", str(r.get("resourceType"))[:40],
                       f"this resource cannot be read: a field has the wrong type ({type(exc).__name__}: {str(exc)[:120]})")
    for f, row, _, r in resources:
        try:
            kind = r.get("resourceType")
            if kind == "Patient":
                continue
            pid = _subject(r, urls) if kind != "ResearchSubject" else \
                urls.get((r.get("individual") or {}).get("reference", ""))
            if pid is None or pid not in patients:
                unused[f"{kind} without a known patient"] = unused.get(f"{kind} without a known patient", 0) + 1
                continue
            p = patients[pid]
            when = _effective(r)
            if when:
                seen.setdefault(pid, []).append(when)
            if kind == "ResearchSubject":
                arm = str(r.get("actualArm") or r.get("assignedArm") or "")
                p["enrolled_on"] = _date((r.get("period") or {}).get("start"))
                p["cohort"] = arms.get(arm.lower()) or (1 if "continu" in arm.lower() else 2 if "stop" in arm.lower() else None)
                if p["cohort"] is None:
                    report.add("error", f, row, "assignedArm", arm, "arm is not a STOP-HER2 cohort: give an arm map")
            elif kind == "Condition":
                profiles = " ".join((r.get("meta") or {}).get("profile") or [])
                words = _words(r.get("code"))
                if "secondary-cancer-condition" in profiles:
                    p.setdefault("_mets", []).append((when, " ".join(_words(s) for s in r.get("bodySite") or []) or words))
                elif "primary-cancer-condition" in profiles:
                    p["_primary"] = when
                    p["_breast"] = p.get("_breast", False) or any(w in words for w in BREAST_WORDS)
                else:
                    unused["Condition (not a cancer condition)"] = unused.get("Condition (not a cancer condition)", 0) + 1
            elif kind == "Observation":
                _observation(r, p, f, row, when, rows, lines, ctdna_codes, report, unused)
            elif kind in ("MedicationAdministration", "MedicationRequest", "MedicationStatement"):
                concept = r.get("medicationCodeableConcept") or {}
                names = [display for _, _, display in _codes(concept) if display]
                codes = [code for system, code, _ in _codes(concept) if "rxnorm" in system.lower()]
                agent = next((ANTI_HER2_RXNORM[c] for c in codes if c in ANTI_HER2_RXNORM), None) or \
                    (names[0].lower() if names else None)
                if not agent:
                    report.add("warning", f, row, "medicationCodeableConcept", "", f"{kind} without a medication name: not used")
                    continue
                period = r.get("effectivePeriod") or {}
                bounds = {}
                for dosage in r.get("dosageInstruction") or []:
                    bounds = ((dosage.get("timing") or {}).get("repeat") or {}).get("boundsPeriod") or bounds
                start = _date(period.get("start") or bounds.get("start")) or when
                stop = _date(period.get("end") or bounds.get("end"))
                if stop is None and kind == "MedicationAdministration":
                    stop = start
                if start is None:
                    report.add("warning", f, row, "effective", "", f"{kind} without a date: not used")
                    continue
                rows["treatments"].append({"patient_id": pid, "agent": agent, "agent_class": agent_class(agent),
                                           "started_on": start, "stopped_on": stop,
                                           "stop_reason": r.get("status") if r.get("status") in ("stopped", "completed") else None})
                lines["treatments"].append(row)
            elif kind == "QuestionnaireResponse":
                _questionnaire(r, pid, f, row, when, rows, lines, report)
            else:
                unused[kind] = unused.get(kind, 0) + 1
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:  # as for Patients above
            report.add("error", f, row, "resourceType", str(r.get("resourceType"))[:40],
                       f"this resource cannot be read: a field has the wrong type ({type(exc).__name__}: {str(exc)[:120]})")

    for kind, n in sorted(unused.items()):
        report.add("warning", file, None, "resourceType", kind, f"{n} resource(s) not used by STOP-HER2")
    for pid, p in patients.items():
        f, row = p["_row"]
        dates = sorted(seen.get(pid, []))
        if p["cohort"] is None and p["enrolled_on"] is None:
            p["cohort"], p["enrolled_on"] = 1, (dates[-1] if dates else None)
            report.add("warning", f, row, "ResearchSubject", pid, "no ResearchSubject: imported as a screening "
                       "candidate still on therapy (cohort 1), enrolled on the latest date in the record")
        if p["enrolled_on"] is None:
            report.add("warning", f, row, "enrolled_on", pid, "no enrolment date (ResearchSubject.period.start) and "
                       "no dated record: nothing to show on a timeline, not imported")
            continue
        if p["_born"] and p["enrolled_on"]:
            p["age_at_enrolment"] = str(int((pd.Timestamp(p["enrolled_on"]) - pd.Timestamp(p["_born"])).days // DAYS_PER_YEAR))
        if not p.get("_breast"):
            report.add("warning", f, row, "Condition", pid, "no primary breast cancer condition: not a STOP-HER2 patient")
        her2 = p.get("_her2")
        if her2 is False:
            report.add("warning", f, row, "Observation 48676-1", pid, "HER2-NEGATIVE: not a STOP-HER2 patient; "
                       "eligibility fails and the model refuses this patient")
        elif her2 is None and p.get("her2_ihc") is None:
            report.add("warning", f, row, "Observation 48676-1", pid, "no HER2 result: HER2 status unknown")
        mets = sorted((m for m in p.get("_mets", []) if m[0]), key=lambda m: m[0])
        if mets:
            p["metastatic_on"] = mets[0][0]
            sites = {m[1] for m in p.get("_mets", [])}
            p["n_metastatic_sites"] = str(len(sites))
            p["visceral"] = "true" if any(any(w in s for w in VISCERAL_WORDS) for s in sites) else "false"
            p["brain_mets_history"] = "true" if any(any(w in s for w in BRAIN_WORDS) for s in sites) else "false"
            if p.get("_primary"):
                gap = (pd.Timestamp(mets[0][0]) - pd.Timestamp(p["_primary"])).days
                p["de_novo"] = "true" if gap <= 90 else "false"
        rows["patients"].append({k: v for k, v in p.items() if not k.startswith("_")})
        lines["patients"].append(row)
        if dates:
            rows["events"].append({"patient_id": pid, "event": "last_contact", "occurred_on": dates[-1],
                                   "detail": "latest date in the record"})
            lines["events"].append(None)

    tables = {}
    for name, table in TABLES.items():
        frame = pd.DataFrame(rows[name])
        for col in table.column_names:
            if col not in frame:
                frame[col] = None
        tables[name] = frame[table.column_names]
    files = {name: file for name in TABLES}
    return tables, files, {k: np.asarray(v, dtype=object) for k, v in lines.items()}, report


def _arm_map(arm_map) -> dict[str, int]:
    if isinstance(arm_map, str):
        from data.importers.sdtm import parse_arm_map

        return parse_arm_map(arm_map)
    return dict(arm_map or {})


def _observation(r, p, f, row, when, rows, lines, ctdna_codes, report, unused) -> None:
    code = r.get("code")
    value = r.get("valueCodeableConcept")
    if _has_code(code, LOINC_HER2):
        p["_her2"] = _sign(value)
        if p["_her2"] is False:
            p["her2_ish_amplified"] = "false"
    elif _has_code(code, LOINC_HER2_IHC):
        text = (r.get("valueString") or _words(value)).strip()
        score = re.search(r"\b([0-3])\s*\+?", text)
        p["her2_ihc"] = None if score is None else ("0" if score.group(1) == "0" else score.group(1) + "+")
    elif _has_code(code, *LOINC_HER2_ISH):
        sign = _sign(value)
        p["her2_ish_amplified"] = None if sign is None else ("true" if sign else "false")
    elif _has_code(code, LOINC_ER) or _has_code(code, LOINC_PR):
        sign = _sign(value)
        p["er_status" if _has_code(code, LOINC_ER) else "pr_status"] = \
            None if sign is None else ("positive" if sign else "negative")
    elif _has_code(code, LOINC_DISEASE_STATUS):
        if _has_code(value, *WORSENED) and when:
            rows["events"].append({"patient_id": p["patient_id"], "event": "progression", "occurred_on": when,
                                   "detail": "mCODE cancer disease status: worsened"})
            lines["events"].append(row)
    elif _has_code(code, LOINC_ECOG):
        v = r.get("valueInteger")
        if v is None:
            match = re.search(r"\b([0-4])\b", _words(value))
            v = match.group(1) if match else None
        p["ecog"] = None if v is None else str(v)
    elif _has_code(code, *ctdna_codes):
        quantity = r.get("valueQuantity") or {}
        low = ((r.get("referenceRange") or [{}])[0].get("low") or {}).get("value")
        detected = _sign(r.get("interpretation", [{}])[0] if r.get("interpretation") else value)
        status = r.get("status", "final")
        rows["ctdna_draws"].append({
            "patient_id": p["patient_id"], "drawn_on": when, "assay": (r.get("method") or {}).get("text") or "ctDNA",
            "value": quantity.get("value"), "unit": quantity.get("unit"), "lod": low,
            "detected": None if detected is None else ("true" if detected else "false"),
            "qc": "failed" if status in ("cancelled", "entered-in-error") or r.get("dataAbsentReason") else "pass"})
        lines["ctdna_draws"].append(row)
    else:
        unused["Observation (other codes)"] = unused.get("Observation (other codes)", 0) + 1


def _questionnaire(r, pid, f, row, when, rows, lines, report) -> None:
    name = str(r.get("questionnaire") or "").upper()
    instrument = ("QLQ-C30" if "QLQ-C30" in name or "QLQC30" in name else "FCRI-SF" if "FCRI" in name
                  else "DRS" if "DECISION" in name or "DRS" in name else "PROMIS-Anxiety" if "PROMIS" in name
                  else (r.get("questionnaire") or "unknown"))

    def walk(items):
        for item in items or []:
            yield item
            yield from walk(item.get("item"))

    for item in walk(r.get("item")):
        for answer in item.get("answer") or []:
            value = answer.get("valueInteger", answer.get("valueDecimal"))
            if value is None and isinstance(answer.get("valueCoding"), dict):
                value = answer["valueCoding"].get("code")
            number = re.search(r"(\d+)$", str(item.get("linkId", "")))
            rows["pro_responses"].append({"patient_id": pid, "completed_on": when, "instrument": instrument,
                                          "item": "TSCORE" if instrument.startswith("PROMIS") else
                                          (number.group(1).lstrip("0") or "0") if number else item.get("linkId"),
                                          "response": None if value is None else str(value)})
            lines["pro_responses"].append(row)
