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
