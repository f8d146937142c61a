"""Every AppTest starts from empty Streamlit caches, on the session's snapshot and model."""
import pytest
import streamlit as st


@pytest.fixture(autouse=True)
def fresh_caches(live_snapshot_env, live_model_env):
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(autouse=True)
def behind_the_deployment_proxy(monkeypatch):
    """AppTest sends no request headers, so no session would count as coming through the deployment's nginx,
    and a signed-in app offers downloads only through it. The app tests stand behind it; the gate itself is
    tested with real nginx (tests/integration/test_deploy.py, Chromium), and
    test_a_signed_in_server_reached_without_the_proxy_offers_no_download turns this off."""
    from data import downloads

    monkeypatch.setattr(downloads, "behind_the_gate", lambda headers: True)
