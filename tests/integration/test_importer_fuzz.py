"""Property tests of the SDTM and FHIR importers (the CSV bundle's are in test_import.py): whatever a
field holds, reading and validating a source ends in findings that name their file, never a traceback."""
import gzip
import io
import json
import shutil

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data import importing
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"
ARMS = {"arm_map": "Pbo=1,Xan_Lo=2,Xan_Hi=2"}  # the pilot study's arms, only to test the mechanics
FHIR_BUNDLE = "Bundle-mcode-patient-bundle-jenny-m.json"

JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False),
              st.text(max_size=20), st.sampled_from(["", "2024-02-30", "Patient/", "urn:uuid:x", "<b>x</b>"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)
CELL = st.one_of(st.text(max_size=16), st.sampled_from(["", "2024-02-30", "2999-01-01", "1e308", "NaN", "=1+1",
                                                         "--", "2024", "2024-13", "\x00"]))


def _paths(node, here=()):
    """Every place in a JSON document a value sits (dict keys and list positions)."""
    yield here
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*here, i))


def _set(doc, path, value):
    if not path:
        return value
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


def _assert_located(report) -> None:
    frame = report.frame()
    errors = frame[frame["severity"] == "error"]
    assert errors["message"].str.len().gt(0).all()
    assert errors["file"].astype(str).str.len().gt(0).all(), errors.to_string()
    assert not errors["message"].str.contains("Traceback|object of type|NoneType", regex=True).any()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.integers(0, 10**6), value=JSON_VALUE)
def test_any_fhir_field_holding_anything_is_a_located_finding(tmp_path_factory, where, value):
    doc = json.loads((FIXTURES / "fhir-mcode" / FHIR_BUNDLE).read_text())
    paths = list(_paths(doc))
    doc = _set(doc, paths[where % len(paths)], value)
    folder = tmp_path_factory.mktemp("fhir")
    (folder / FHIR_BUNDLE).write_text(json.dumps(doc))
    _, report = importing.check("fhir", folder)  # a traceback fails the test
    _assert_located(report)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(domain=st.sampled_from(["dm", "ex", "ds", "tr_onco", "tu_onco", "rs_onco", "sv"]), row=st.integers(0, 10**6),
       column=st.integers(0, 10**6), value=CELL)
def test_any_sdtm_cell_holding_anything_is_a_located_finding(tmp_path_factory, domain, row, column, value):
    folder = tmp_path_factory.mktemp("sdtm")
    for p in (FIXTURES / "sdtm-pharmaverse").iterdir():
        shutil.copy(p, folder / p.name)
    path = folder / f"{domain}.csv.gz"
    frame = pd.read_csv(io.BytesIO(gzip.decompress(path.read_bytes())), dtype=str, keep_default_na=False)
    frame.iloc[row % len(frame), column % frame.shape[1]] = value
    path.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    _, report = importing.check("sdtm", folder, options=ARMS)
    _assert_located(report)

