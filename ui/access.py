"""Who may see what: roles from configuration, the pages and exports each role may use. Pure rules.

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
    "meeting_list": frozenset({"tumor_board", DEMO}),
    "meeting_sheets": frozenset({"tumor_board", DEMO}),
    "cohort_table": frozenset({"researcher", DEMO}),
    "validation_report": frozenset({"admin", DEMO}),
    "audit_log": frozenset({"admin", DEMO}),
    "example_bundle": frozenset({"admin", DEMO}),
}
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
