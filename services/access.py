"""Who may see what: the ONLY place where a person's roles and the deployment's settings turn a record,
a table or an export into what that person may see (ctDNA blinding, pseudonyms, identified or not).

Every page and every export gets its content through a :class:`Viewer`, so a new export cannot forget
a rule. Pure: no Streamlit, tested without a server.

Roles (from .streamlit/secrets.toml, `[stopher2.roles]`: role -> e-mail addresses or `group:<name>`
entries matched against the identity provider's `groups` claim):

* clinician: the patient pages (identified), the worklist;
* tumor_board: screening and the patient pages;
* researcher: cohorts and the model card, pseudonymous ids and days from day 0, no dates or free text;
* admin: the Data page, the audit log and the model card.

A person may hold several roles; they get the union. Without an identity provider the app runs in
**demo** mode: every page, synthetic data only.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from data.keyfile import KeyFileDamaged, local_key

ROLES = ("clinician", "tumor_board", "researcher", "admin")
DEMO = "demo"
ROLE_LABELS = {"clinician": "clinician", "tumor_board": "tumour board", "researcher": "researcher",
               "admin": "admin", DEMO: "demo (no sign-in)"}

#: page (url path; "" is Home) -> roles that may open it
PAGES: dict[str, frozenset[str]] = {
    "": frozenset({"clinician", "tumor_board", "researcher", "admin", DEMO}),
    "patient": frozenset({"clinician", "tumor_board", DEMO}),
    "tumor_board": frozenset({"tumor_board", DEMO}),
    "cohorts": frozenset({"researcher", DEMO}),
    "model_card": frozenset({"clinician", "tumor_board", "researcher", "admin", DEMO}),
    "data": frozenset({"admin", DEMO}),
    "audit": frozenset({"admin", DEMO}),
}
PAGE_TITLES = {"": "Home", "patient": "Patient review", "tumor_board": "Tumor board", "cohorts": "Cohorts",
               "model_card": "Model card", "data": "Data", "audit": "Audit log"}
#: exports each role may download (researchers get pseudonymized ones only)
EXPORTS: dict[str, frozenset[str]] = {
    "visit_summary": frozenset({"clinician", "tumor_board", DEMO}),
    "meeting_list": frozenset({"tumor_board", DEMO}),
    "meeting_sheets": frozenset({"tumor_board", DEMO}),
    "meeting_record": frozenset({"tumor_board", DEMO}),
    "cohort_table": frozenset({"researcher", DEMO}),
    "cohort_figure": frozenset({"researcher", DEMO}),
    "validation_report": frozenset({"admin", DEMO}),
    "audit_log": frozenset({"admin", DEMO}),
    "example_bundle": frozenset({"admin", DEMO}),
    "csv_templates": frozenset({"admin", DEMO}),
    "redcap_design": frozenset({"admin", DEMO}),
}
#: roles that may record the tumour board's decisions (everyone who opens a patient reads them)
RECORDS_DECISIONS = frozenset({"tumor_board", DEMO})
#: roles that see identified patients (ids and calendar dates); the others see pseudonyms and days
IDENTIFIED = frozenset({"clinician", "tumor_board", "admin", DEMO})


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    roles: tuple[str, ...]  # empty: signed in but given no role

    @property
    def label(self) -> str:
        return ", ".join(ROLE_LABELS[r] for r in self.roles) or "no role"

    @property
    def audit_role(self) -> str:
        return "+".join(self.roles) or "none"


def roles_for(email: str | None, groups: Iterable[str], config: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """The roles configuration gives this e-mail address or any of these groups (case-insensitive)."""
    email = (email or "").strip().lower()
    groups = {str(g).strip().lower() for g in groups or ()}
    out = []
    for role in ROLES:
        for entry in config.get(role, ()) or ():
            entry = str(entry).strip().lower()
            matched = entry[6:] in groups if entry.startswith("group:") else bool(entry) and entry == email
            if matched:
                out.append(role)
                break
    return tuple(out)


def may_open(roles: Iterable[str], page: str) -> bool:
    return bool(set(roles) & PAGES.get(page, frozenset()))


def may_export(roles: Iterable[str], export: str) -> bool:
    return bool(set(roles) & EXPORTS.get(export, frozenset()))


def identified(roles: Iterable[str]) -> bool:
    """May this person see patient ids and calendar dates? (researchers only: no)."""
    return bool(set(roles) & IDENTIFIED)


def ctdna_hidden(roles: Iterable[str], blinded_roles: Iterable[str]) -> bool:
    """ctDNA blinding: hidden when every role the person holds is blinded (a researcher-admin still sees it)."""
    roles, blinded = set(roles), set(blinded_roles)
    return bool(roles) and roles <= blinded


def refusal(roles: Iterable[str], page: str) -> str:
    """The sentence shown instead of a page the person may not open."""
    allowed = sorted(ROLE_LABELS[r] for r in PAGES.get(page, frozenset()) if r != DEMO)
    who = ", ".join(ROLE_LABELS[r] for r in roles) or "no role"
    return (f"The {PAGE_TITLES.get(page, page)} page is not open to your role ({who}). "
            f"It is for: {', '.join(allowed) or 'nobody'}. Ask an admin if you need it.")


# ------------------------------------------------------------------------------------ pseudonyms
#: A pseudonym key shorter than this is refused: it could be guessed.
MIN_PSEUDONYM_KEY_CHARS = 32
DEMO_KEY_FILE = ".pseudonym_key"


class AccessConfigError(RuntimeError):
    """The deployment's configuration cannot serve this person safely; the message says what to set."""


def pseudonym_key(settings: Mapping, demo: bool, folder: Path) -> bytes | None:
    """The secret that keys researcher pseudonyms: never derived from anything shown on screen.

    `[stopher2] pseudonym_key` from the deployment's secrets; in demo mode a random key made once and
    kept beside the snapshots (readable by the server's user only). None when a signed-in deployment
    has configured none: pseudonymous views then refuse with a sentence instead of guessing.
    """
    configured = settings.get("pseudonym_key")
    if configured:
        if len(str(configured)) < MIN_PSEUDONYM_KEY_CHARS:
            raise AccessConfigError(f"[stopher2] pseudonym_key is shorter than {MIN_PSEUDONYM_KEY_CHARS} characters; "
                                    "set a long random secret (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return str(configured).encode()
    if not demo:
        return None
    try:
        return local_key(Path(folder) / DEMO_KEY_FILE, MIN_PSEUDONYM_KEY_CHARS)
    except KeyFileDamaged as exc:
        raise AccessConfigError(str(exc)) from exc


def pseudonym(patient_id: str, key: bytes) -> str:
    """A stable pseudonymous id (HMAC-SHA256 with the secret key): the same patient, the same code."""
    return "R-" + hmac.new(key, str(patient_id).encode(), hashlib.sha256).hexdigest()[:12].upper()


# ------------------------------------------------------------------------------- what a viewer sees
#: Columns that carry a ctDNA result or call, wherever they appear (tables, lists, exports).
CTDNA_COLUMNS = ("last_ctdna_detected", "last_ctdna_on", "last ctDNA", "ctdna_detected_at_index",
                 "previous_ctdna_detected", "n_ctdna_alerts", "ctdna_alerts")
#: Columns of the candidates table that carry the estimate (it needs ctDNA, so blinding hides it too).
ESTIMATE_COLUMNS = ("probability", "low", "high", "chance", "interval", "low %", "high %")
CTDNA_BLINDED = ("ctDNA results are blinded for your role in this deployment (the trial assesses ctDNA "
                 "retrospectively). The estimate needs ctDNA, so it is not shown either.")


def without_ctdna(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if c in CTDNA_COLUMNS], errors="ignore")


def patients_seen(frame: pd.DataFrame, sees_ctdna: bool) -> pd.DataFrame:
    """The patient list (queries.patient_list) as someone who does or does not see ctDNA may see it."""
    if sees_ctdna:
        return frame.drop(columns=["n_ctdna_alerts"], errors="ignore")
    out = frame.copy()
    out["n_alerts"] = out["n_alerts"] - out["n_ctdna_alerts"]  # the alert count must not reveal a ctDNA alert
    if "alerts" in out.columns:  # nor the alerts named, nor the worklist's order by their kind
        hidden = out["ctdna_alerts"].map(lambda a: set(a) if a is not None else set())
        out["alerts"] = [[a for a in (alerts if alerts is not None else []) if a not in h]
                         for alerts, h in zip(out["alerts"], hidden, strict=True)]
        out["alert_kinds"] = out["alert_kinds"].map(lambda k: [x for x in (k if k is not None else []) if x != "ctDNA"])
    return without_ctdna(out)


@dataclass(frozen=True)
class Viewer:
    """A person with the deployment's settings: every record, table and export passes through here."""

    person: Person
    blinded_roles: tuple[str, ...] = ()
    key: bytes | None = None  # the pseudonym key (None: pseudonymous views are refused)

    @property
    def sees_ctdna(self) -> bool:
        return not ctdna_hidden(self.person.roles, self.blinded_roles)

    @property
    def identified(self) -> bool:
        return identified(self.person.roles)

    def may_open(self, page: str) -> bool:
        return may_open(self.person.roles, page)

    def may_export(self, export: str) -> bool:
        return may_export(self.person.roles, export)

    @property
    def records_decisions(self) -> bool:
        return bool(set(self.person.roles) & RECORDS_DECISIONS)

    # ------------------------------------------------------------------------------ patients
    def record(self, rec):
        """One patient's record (data.queries.PatientRecord): without any ctDNA result when blinded."""
        if self.sees_ctdna:
            return rec
        s = rec.summary.copy()
        ctdna_alerts = set(s.get("ctdna_alerts") if s.get("ctdna_alerts") is not None else [])
        s["alerts"] = [a for a in (s["alerts"] if s["alerts"] is not None else []) if a not in ctdna_alerts]
        for column in ("last_ctdna_detected", "last_ctdna_on", "ctdna_alerts"):
            if column in s:
                s[column] = None
        return replace(rec, summary=s, ctdna=rec.ctdna.iloc[0:0],
                       timeline=rec.timeline[rec.timeline["track"] != "ctDNA"].reset_index(drop=True))

    def patients(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The patient list (worklist, picker): alert counts without ctDNA alerts when blinded."""
        return patients_seen(frame, self.sees_ctdna)

    def candidates(self, table: pd.DataFrame) -> pd.DataFrame:
        """The tumour board's table: without ctDNA columns and the estimate when blinded."""
        if self.sees_ctdna:
            return table
        out = without_ctdna(table).drop(columns=list(ESTIMATE_COLUMNS), errors="ignore")
        if "no estimate because" in out.columns:
            out["no estimate because"] = "ctDNA blinded"
        if "not_applicable_because" in out.columns:
            out["not_applicable_because"] = "ctDNA blinded"
        return out

    def subgroups(self, table: pd.DataFrame) -> pd.DataFrame:
        """Model-card subgroups: the ctDNA subgroup is a ctDNA result count, hidden when blinded."""
        return table if self.sees_ctdna else table[~table["subgroup"].str.contains("ctDNA")].reset_index(drop=True)

    def findings(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A validation report (file, row, column, value, message): without findings on ctDNA files when blinded."""
        if self.sees_ctdna or "file" not in frame.columns:
            return frame
        about_ctdna = frame["file"].astype(str).str.lower().str.contains("ctdna|lb|gf", regex=True) | \
            frame["column"].astype(str).str.lower().str.contains("ctdna")
        return frame[~about_ctdna].reset_index(drop=True)

    def bundle_files(self, files: dict[str, bytes]) -> dict[str, bytes]:
        """The CSV bundle export (file name -> bytes): without the ctDNA draws when blinded."""
        return files if self.sees_ctdna else {name: data for name, data in files.items()
                                              if not name.startswith("ctdna")}

    # ----------------------------------------------------------------------------- researchers
    def pseudonymous_ids(self, ids: Iterable[str]) -> list[str]:
        if self.key is None:
            raise AccessConfigError("this deployment has no pseudonym key: an admin must set [stopher2] "
                                    "pseudonym_key in .streamlit/secrets.toml before researchers see patients")
        return [pseudonym(p, self.key) for p in ids]

    def research_extract(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One row per patient: pseudonym instead of id, no dates (time from day 0 only), no free text."""
        dates = [c for c in frame.columns if c.endswith("_on") or c.endswith("_date")]
        out = frame.drop(columns=dates + ["pseudonym"], errors="ignore").copy()
        out.insert(0, "pseudonym", self.pseudonymous_ids(out.pop("patient_id")))
        return out if self.sees_ctdna else without_ctdna(out)

    def audit_records(self, records: pd.DataFrame) -> pd.DataFrame:
        """The audit log as this person may read it (admins only open it; pseudonymous otherwise)."""
        if self.identified:
            return records
        out = records.copy()
        out["patient_id"] = [None if p is None or pd.isna(p) else self.pseudonymous_ids([p])[0]
                             for p in out["patient_id"]]
        return out.drop(columns=["detail"], errors="ignore")
