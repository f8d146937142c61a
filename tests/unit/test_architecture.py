"""The house rules that keep the layers apart, checked on the source itself (architecture.md)."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from data import clinical
from tests.conftest import REPO

SOURCE = [p for p in REPO.rglob("*.py") if not {"tests", ".git", "benchmarks"} & set(p.relative_to(REPO).parts)]
UI = [p for p in SOURCE if p.relative_to(REPO).parts[0] in ("pages", "ui")] + [REPO / "app.py"]


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file, relative to the repository's packages."""
    out = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_the_source_files_are_found():
    assert len(UI) > 10 and any(p.name == "models.py" and p.parent.name == "services" for p in SOURCE)


@pytest.mark.parametrize("path", UI, ids=lambda p: str(p.relative_to(REPO)))
def test_pages_and_ui_never_import_the_trainer_or_a_model_module(path):
    for module, names in _imports(path):
        assert not module.startswith("model"), f"{path.name} imports {module}: go through services/models.py"
        assert not (module == "model" or "train" in names and module == "model"), path.name
    assert "model.train" not in path.read_text(), f"{path.name} names model.train: go through services/models.py"


@pytest.mark.parametrize("path", SOURCE, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_or_reaches_into_another_modules_private_names(path):
    tree = _tree(path)
    imported_modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in (
                "data", "model", "services", "ui", "pages"):
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports private {private} from {node.module}"
            imported_modules |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            imported_modules |= {(a.asname or a.name).split(".")[0] for a in node.names}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in imported_modules
                and node.value.id in {"components", "charts", "session", "access", "models", "importers", "queries",
                                      "predict", "train", "card", "cohorts", "frame", "exports", "store", "build"}):
            pytest.fail(f"{path.name} reaches into {node.value.id}.{node.attr}")


def test_the_trainer_does_not_import_the_predictor():
    """model/predict.py imports model/train.py (the fitted model's class); never the other way round."""
    train = REPO / "model" / "train.py"
    assert not [m for m, names in _imports(train) if m == "model.predict" or (m == "model" and "predict" in names)]


@pytest.mark.parametrize("path", sorted((REPO / "services").glob("*.py")), ids=lambda p: p.name)
def test_services_have_no_streamlit_inside(path):
    assert not [m for m, _ in _imports(path) if m.split(".")[0] == "streamlit"], path.name


# ------------------------------------------------------------------------- one source of truth
CONSTANTS = {name for name, value in vars(clinical).items()
             if name.isupper() and not name.startswith("_") and isinstance(value, int | float | str | tuple)}


def test_the_constants_module_holds_the_clinical_constants():
    assert {"DAYS_PER_MONTH", "DAYS_PER_YEAR", "MIN_FIRST_LINE_YEARS", "RESPONSE_CODES", "HORIZONS",
            "DEFAULT_HORIZON", "PD_PCT_FROM_NADIR", "HER2_RULE", "CTDNA_STALE_DAYS"} <= CONSTANTS


@pytest.mark.parametrize("path", SOURCE, ids=lambda p: str(p.relative_to(REPO)))
def test_each_clinical_constant_is_defined_once(path):
    if path == REPO / "data" / "clinical.py":
        return
    for node in _tree(path).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name):
                assert t.id not in CONSTANTS, f"{path.name} defines its own {t.id}: import it from data/clinical.py"


MAGIC = {"30.4375": "DAYS_PER_MONTH", "365.25": "DAYS_PER_YEAR"}


@pytest.mark.parametrize("path", SOURCE + sorted((REPO / "data" / "sql").glob("*.sql")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_types_a_clinical_number_or_code_list_of_its_own(path):
    if path == REPO / "data" / "clinical.py":
        return
    text = path.read_text()
    for literal, name in MAGIC.items():
        assert literal not in text, f"{path.name} types {literal}: use {name} (data/clinical.py)"
    codes = re.compile(r"""['"]CR['"],\s*['"]PR['"],\s*['"]SD['"],\s*['"]PD['"]""")
    assert not codes.search(text), f"{path.name} lists the response codes itself: use RESPONSE_CODES"
    if path.name == "views.sql":  # (schema.sql lists the IHC scores a column may hold: a domain, not the rule)
        assert "'3+'" not in text and "'2+' AND" not in text, f"{path.name} holds its own HER2 rule"


def test_the_sql_views_read_the_constants_from_the_table_python_writes(snapshot):
    written = dict(snapshot.query("SELECT name, value FROM clinical_constants").itertuples(index=False))
    assert written["days_per_month"] == clinical.DAYS_PER_MONTH and written["days_per_year"] == clinical.DAYS_PER_YEAR
    her2 = snapshot.query("""SELECT p.her2_ihc, p.her2_ish_amplified, f.her2_positive
                             FROM patients p JOIN model_features f USING (patient_id)""")
    for row in her2.itertuples(index=False):
        assert row.her2_positive == clinical.her2_positive(row.her2_ihc, row.her2_ish_amplified)


def test_importing_the_charts_changes_no_global_state():
    code = ("import json, plotly.io as pio\n"
            "before = (pio.templates.default, sorted(pio.templates), pio.templates['plotly'].to_plotly_json())\n"
            "import ui.charts\n"
            "after = (pio.templates.default, sorted(pio.templates), pio.templates['plotly'].to_plotly_json())\n"
            "print(json.dumps(before == after))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "true", out.stderr


def test_charts_only_draw_no_statistics_inside():
    text = (REPO / "ui" / "charts.py").read_text()
    for computation in ("qcut", "np.average", "groupby", "/ DAYS_PER_MONTH", "np.maximum("):
        assert computation not in text, f"ui/charts.py computes ({computation}): move it to data/ or model/"
