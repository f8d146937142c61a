"""Sign-in, the signed-in person's roles, deployment settings, and the audit record of what they do.

Configuration lives in .streamlit/secrets.toml (see .streamlit/secrets.toml.example): `[auth]` for
the OpenID Connect identity provider (st.login), `[stopher2.roles]` for who holds which role, and
`[stopher2] ctdna_blinded_roles` for ctDNA blinding. Without `[auth]` the app is in demo mode.
"""
from __future__ import annotations

import logging

import streamlit as st

from data import audit, downloads
from data.store import snapshot_dir
from services import access

_LOG = logging.getLogger("stopher2.audit")
#: What the person sees when the audit trail cannot take a record: nothing of what was asked for is shown.
AUDIT_DOWN = ("This cannot be shown because the audit trail cannot record it. Nothing was shown or recorded; "
              "the operator has been told in the server log. Try again later.")


def _secrets() -> dict:
    try:
        return st.secrets.to_dict()
    except Exception:  # noqa: BLE001 - no secrets file at all is the demo configuration
        return {}


def auth_configured() -> bool:
    return bool(_secrets().get("auth"))


def settings() -> dict:
    return _secrets().get("stopher2", {}) or {}


def person() -> access.Person | None:
    """The person using this session: demo without an identity provider, None when not signed in."""
    if not auth_configured():
        return access.Person("demo", "Demo user", (access.DEMO,))
    if not st.user.get("is_logged_in", False):
        return None
    email = str(st.user.get("email") or "")
    groups = st.user.get("groups") or []
    if isinstance(groups, str):
        groups = [groups]
    roles = access.roles_for(email, groups, settings().get("roles", {}) or {})
    return access.Person(email, str(st.user.get("name") or email), roles)


def sign_in_or_stop() -> access.Person:
    """Show the sign-in screen (or the no-role screen) and stop, unless someone with a role is here."""
    who = person()
    if who is None:
        st.title("STOP-HER2 decision support")
        st.markdown("Patient data is shown only to signed-in members of the trial team.")
        st.button("Sign in", type="primary", on_click=st.login, key="sign_in")
        st.stop()
    if not who.roles:
        st.title("STOP-HER2 decision support")
        st.warning(f"You are signed in as **{who.email}**, but this account has no role in STOP-HER2. "
                   "Ask an admin to give you one.", icon="🔒")
        st.button("Sign out", on_click=st.logout, key="sign_out_no_role")
        st.stop()
    if not st.session_state.get("_signed_in_recorded") and who.roles != (access.DEMO,):
        record_or_stop("sign_in", detail=who.label)
        st.session_state["_signed_in_recorded"] = True  # only once the record is written
    return who


def ctdna_hidden(who: access.Person) -> bool:
    return access.ctdna_hidden(who.roles, settings().get("ctdna_blinded_roles", []) or [])


def viewer() -> access.Viewer:
    """The person with the deployment's settings: every page and export gets its content through it."""
    who = current()
    config = settings()
    try:
        key = access.pseudonym_key(config, access.DEMO in who.roles, snapshot_dir())
    except access.AccessConfigError:
        key = None  # researcher views then refuse with the sentence that says what to configure
    return access.Viewer(who, tuple(config.get("ctdna_blinded_roles", []) or []), key)


def pseudonym_problem() -> str | None:
    """Why pseudonymous views cannot be shown in this deployment (None when they can)."""
    try:
        key = access.pseudonym_key(settings(), access.DEMO in current().roles, snapshot_dir())
    except access.AccessConfigError as exc:
        return str(exc)
    return None if key is not None else ("This deployment has no pseudonym key: an admin must set "
                                         "[stopher2] pseudonym_key in .streamlit/secrets.toml.")


def current() -> access.Person:
    """The person, for pages (app.py has already stopped the run when there is none)."""
    who = person()
    return who if who is not None else access.Person("unknown", "unknown", ())


def record(action: str, patient_id: str | None = None, detail: str | None = None,
           snapshot_id: str | None = None) -> None:
    """Append to the audit trail as the current person, on the current snapshot."""
    who = person() or access.Person("anonymous", "anonymous", ())
    if snapshot_id is None:
        snapshot_id = st.session_state.get("_snapshot_id")
    audit.record(who.email, who.audit_role, action, patient_id=patient_id, snapshot_id=snapshot_id, detail=detail)


def record_or_stop(action: str, patient_id: str | None = None, detail: str | None = None) -> None:
    """Record, or fail closed: when the trail cannot take the record, say so, tell the operator, stop the run."""
    try:
        record(action, patient_id=patient_id, detail=detail)
    except audit.AuditUnavailable as exc:
        _LOG.error("audit trail unavailable, %s refused for %s: %s", action, patient_id or "-", exc)
        st.error(AUDIT_DOWN, icon="⛔")
        st.stop()


def record_or_log(action: str, patient_id: str | None = None, detail: str | None = None,
                  snapshot_id: str | None = None) -> None:
    """Record what shows no patient data (a refusal, a model fitted); when the trail is down, the server log
    says so and the run goes on (whatever then shows patient data fails closed on its own record)."""
    try:
        record(action, patient_id=patient_id, detail=detail, snapshot_id=snapshot_id)
    except audit.AuditUnavailable as exc:
        _LOG.error("audit trail unavailable, %s not recorded: %s", action, exc)


#: Why a signed-in deployment offers no download outside the proxy.
UNGATED = ("not offered here: this server is not reached through the deployment's proxy (`python -m deploy`), "
           "so Streamlit would hand the file to anyone holding its link. Ask the operator.")


def downloads_gated() -> bool:
    """May this session be offered downloads? With sign-in configured (real data), only through the
    deployment's nginx, which lets a download's file reach only the browser that clicked
    (data/downloads.py, deploy/gate.py). Demo mode shows synthetic data only and is served as it is."""
    return not auth_configured() or downloads.behind_the_gate(st.context.headers)


def export_button(kind: str, label: str, data, file_name: str, mime: str, key: str, patient_id: str | None = None,
                  container=None) -> None:
    """A download button for roles allowed this export. The bytes are handed over only when the person
    clicks, after the export is on record: nothing is served before a click, and nothing at all when the
    record cannot be written (the download then fails with Streamlit's message). Behind the deployment's
    proxy (deploy/) the file is then granted to this browser only, and fetching it is recorded too
    (data/downloads.py)."""
    who = current()
    if not access.may_export(who.roles, kind):
        return
    if not downloads_gated():
        (container or st).caption(f"{label}: {UNGATED}")
        return
    snapshot_id = st.session_state.get("_snapshot_id")
    # read now: the click runs outside the script; None when not behind the deployment's proxy
    browser = downloads.browser_token(st.context.cookies.get(downloads.BROWSER_COOKIE))
    detail = f"{kind}: {file_name}"

    def deliver():  # runs in a server thread at the click, outside the script: no st.* here
        audit.record(who.email, who.audit_role, "export", patient_id=patient_id, snapshot_id=snapshot_id,
                     detail=detail)
        payload = data() if callable(data) else data  # made now, for this click, when the caller deferred it too
        payload = payload.encode() if isinstance(payload, str) else payload
        if browser:
            downloads.grant(downloads.streamlit_file_id(payload, mime, file_name), browser, who.email,
                            who.audit_role, detail, patient_id=patient_id, snapshot_id=snapshot_id)
        return payload

    (container or st).download_button(label, deliver, file_name=file_name, mime=mime, key=key, on_click="ignore")
