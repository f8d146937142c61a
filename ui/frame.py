"""Make every page run inside app.py's frame, even on a fresh server's first deep link.

Streamlit treats a top-level ``pages/`` folder as a legacy (v1) multipage app until the first
script run calls ``st.navigation``. When the very first visitor of a fresh server opens a deep
link such as ``/patient?patient=STH-0001``, Streamlit runs pages/patient.py directly, without
app.py: no page config, no snapshot check, no sidebar. ``require()`` notices that and reruns
through app.py. The folder keeps its name because the product's layout (and other tools) expect
``pages/``; the browser test "deep link on a fresh server" guards this.

The rerun finds the page again only when its ``url_path`` equals the file's stem (Streamlit's legacy
mode names a page after its file), so app.py keeps them equal (tests/app/test_pages.py checks).
"""
from __future__ import annotations

import contextvars

import streamlit as st

_inside_app = contextvars.ContextVar("inside_app_frame", default=False)


def enter() -> None:
    """Called by app.py before it runs the selected page."""
    _inside_app.set(True)


def require() -> None:
    """Called first by every page: rerun through app.py if Streamlit ran the page on its own."""
    if _inside_app.get():
        return
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False  # what st.navigation itself sets on first use
    st.rerun()
