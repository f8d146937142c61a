"""Sign-in, the signed-in person's roles, deployment settings, and the audit record of what they do.

Configuration lives in .streamlit/secrets.toml (see .streamlit/secrets.toml.example): `[auth]` for
the OpenID Connect identity provider (st.login), `[stopher2.roles]` for who holds which role, and
`[stopher2] ctdna_blinded_roles` for ctDNA blinding. Without `[auth]` the app is in demo mode.
"""
from __future__ import annotations

import streamlit as st

from data import audit
from data.store import snapshot_dir
from services import access


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
        st.session_state["_signed_in_recorded"] = True
        record("sign_in", detail=who.label)
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


def export_button(kind: str, label: str, data, file_name: str, mime: str, key: str, patient_id: str | None = None,
                  container=None) -> None:
    """A download button for roles allowed this export; each download is recorded."""
    who = current()
    if not access.may_export(who.roles, kind):
        return
    (container or st).download_button(label, data, file_name=file_name, mime=mime, key=key,
                                      on_click=record, args=("export",),
                                      kwargs={"patient_id": patient_id, "detail": f"{kind}: {file_name}"})
