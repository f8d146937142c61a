"""AppTest of the tumour board's decision record: recorded at the meeting, audited, refused with a sentence
when wrong, on the patient's page and timeline, and in the meeting's export."""
from __future__ import annotations

import functools
import json

import pandas as pd

from data import audit, decisions
from tests.app.test_pages import run_page


def _calls(monkeypatch, owner, name: str, noted=lambda *args, **kwargs: 1) -> list:
    """Replace owner.name by a wrapper that calls through and notes each call (what `noted` makes of its
    arguments) in the list returned."""
    calls, original = [], getattr(owner, name)

    @functools.wraps(original)
    def counted(*args, **kwargs):
        calls.append(noted(*args, **kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _submit(at):
    [button] = [b for b in at.button if b.label == "Record the decision"]
    return button.click().run()


def test_the_board_records_a_decision_and_the_patient_page_shows_it(situations):
    pid = situations["progressed"]
    at = run_page("pages/tumor_board.py")
    at.multiselect(key="meeting_picker").set_value([pid]).run()
    assert not at.exception, [e.value for e in at.exception]
    # nothing picked: refused with a sentence, nothing stored
    at.text_input(key="decision_reason").input("progressed on the last scan")
    _submit(at)
    assert any("pick one of" in e.value for e in at.error) and decisions.read().empty
    at.selectbox(key="decision_patient").set_value(pid)
    at.radio(key="decision_choice").set_value("restart")
    at.text_input(key="decision_reason").input("progressed <b>on</b> the last scan")
    at.text_area(key="decision_notes").input("restart trastuzumab + pertuzumab")
    _submit(at)
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"for {pid}: restart" in s.value for s in at.success)
    recorded = decisions.read()
    assert recorded[["patient_id", "decision", "reason", "recorded_by"]].values.tolist() == [
        [pid, "restart", "progressed <b>on</b> the last scan", "demo"]]
    assert audit.read(action="board_decision")["patient_id"].tolist() == [pid]
    shown = at.dataframe[-1].value  # the meeting's record
    assert shown["decision"].tolist() == ["restart"]
    assert any("Download the record of the" in b.proto.label for b in at.get("download_button"))

    # a second decision at the same meeting replaces the first; both stay
    at.selectbox(key="decision_patient").set_value(pid)
    at.radio(key="decision_choice").set_value("defer")
    at.text_input(key="decision_reason").input("wait for the brain MRI")
    _submit(at)
    assert any("replaces decision" in s.value for s in at.success)
    assert decisions.read()["current"].tolist() == [False, True]

    page = run_page("pages/patient.py", patient=pid)
    assert not page.exception, [e.value for e in page.exception]
    assert any("Tumour board" in i.value and "defer" in i.value for i in page.info)
    timeline = [json.loads(c.proto.spec) for c in page.get("plotly_chart")
                if json.loads(c.proto.spec)["layout"]["title"]["text"] == "Timeline"][0]
    board = [t for t in timeline["data"] if t.get("name") == "tumour board decision"]
    assert board and board[0]["text"] == ["defer"]


def test_the_meeting_date_is_the_one_picked_and_cannot_be_after_today(situations):
    from datetime import date

    at = run_page("pages/tumor_board.py")
    at.multiselect(key="meeting_picker").set_value([situations["stopped_stable"]]).run()
    picker = at.date_input(key="tb_meeting_date")
    assert picker.proto.max == decisions.latest_meeting_date().isoformat()  # later dates cannot be picked
    picker.set_value(date(2026, 11, 20)).run()
    at.radio(key="decision_choice").set_value("stop")
    at.text_input(key="decision_reason").input("ctDNA negative on three draws, CR on the last scan")
    _submit(at)
    recorded = decisions.read()
    assert recorded["meeting_date"].dt.strftime("%Y-%m-%d").tolist() == ["2026-11-20"]
    assert recorded["patient_id"].tolist() == [situations["stopped_stable"]]


def test_a_decision_is_kept_across_an_import(snapshot, snapshot_file, situations, tmp_path, monkeypatch):
    import shutil

    from data import importing
    from data.bundle import export_bundle
    from data.store import publish, snapshot_path

    folder = tmp_path / "snapshots"
    folder.mkdir()
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(folder))
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    shutil.copy(snapshot_file, folder / "synthetic-first.duckdb")
    publish(folder / "synthetic-first.duckdb")
    pid = situations["stopped_stable"]
    at = run_page("pages/tumor_board.py")
    at.multiselect(key="meeting_picker").set_value([pid]).run()
    at.radio(key="decision_choice").set_value("continue")
    at.text_input(key="decision_reason").input("patient prefers to stay off therapy")
    _submit(at)
    assert any(f"for {pid}: continue" in s.value for s in at.success)
    before = snapshot_path()
    export_bundle(snapshot, tmp_path / "bundle")
    importing.run_import("csv", tmp_path / "bundle")
    assert snapshot_path() != before  # a new snapshot is live
    from tests.app.test_access_matrix import run

    page = run("clinician", "pages/patient.py", patient=pid)  # imported data is real: signed in, not demo
    assert not page.exception, [e.value for e in page.exception]
    assert any("Tumour board" in i.value and "continue" in i.value for i in page.info)


def test_a_ctdna_blinded_role_reads_the_decision_but_not_its_free_text(situations):
    """A board's reason may cite ctDNA ('ctDNA detected, 5.7 MTM/mL'): a blinded role sees the decision only."""
    from datetime import date

    from tests.app.test_access_matrix import leaks, run

    pid = situations["stopped_stable"]
    decisions.record(decisions.Decision(date(2026, 11, 20), pid, "defer", "ctDNA detected, 5.7 MTM/mL on the last draw",
                                        "repeat ctDNA in 6 weeks"), who="b@x.org", role="tumor_board",
                     snapshot_id="s", known_patients=[pid])
    page = run("clinician", "pages/patient.py", patient=pid)  # clinicians are blinded in this configuration
    assert not page.exception, [e.value for e in page.exception]
    shown = [i.value for i in page.info if "Tumour board" in i.value]
    assert shown and "defer" in shown[0] and "MTM" not in shown[0] and "hidden" in shown[0]
    specs = [c.proto.spec for c in page.get("plotly_chart")]
    assert not any("MTM" in spec or "repeat ctDNA" in spec for spec in specs)
    assert not leaks(" ".join(shown))
    tables = " ".join(df.value.to_csv() for df in page.dataframe)
    assert "5.7" not in tables and "repeat ctDNA" not in tables


def test_a_decision_recorded_while_the_page_is_open_is_on_its_timeline_at_the_next_rerun(situations, monkeypatch):
    """Figures are built once per process for the same inputs (every rerun reused to rebuild all of them);
    the cache is keyed by the inputs' content, so a new decision on the timeline is a new figure, not a
    stale one."""
    from datetime import date

    from ui import charts

    built = _calls(monkeypatch, charts, "timeline_figure")
    pid = situations["progressed"]
    page = run_page("pages/patient.py", patient=pid)
    page.run()  # a rerun with nothing changed (a click elsewhere): the figure is reused
    assert len(built) == 1

    def board_traces(at):
        timeline = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                    if json.loads(c.proto.spec)["layout"]["title"]["text"] == "Timeline"][0]
        return [t for t in timeline["data"] if t.get("name") == "tumour board decision"]

    assert board_traces(page) == []
    decisions.record(decisions.Decision(date.today(), pid, "restart", "progressed on the last scan"), who="dr",
                     role="clinician", snapshot_id=None, known_patients={pid})
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert len(built) == 2 and board_traces(page)[0]["text"] == ["restart"]


def test_a_cached_figure_sent_again_is_not_converted_again(situations, monkeypatch):
    """plotly's to_dict deep-copies and base64-encodes every trace at each call: a rerun that reused every
    cached figure still converted all of them again (14 % of the server's time under load). Now each figure is
    converted once, when it is built, and a rerun sends the very same chart specs."""
    import plotly.basedatatypes

    converted = _calls(monkeypatch, plotly.basedatatypes.BaseFigure, "to_dict")
    page = run_page("pages/patient.py", patient=situations["progressed"])
    first = [c.proto.spec for c in page.get("plotly_chart")]
    assert len(first) >= 5 and converted
    converted.clear()
    page.run()  # a rerun with nothing changed
    assert not page.exception, [e.value for e in page.exception]
    assert converted == []
    assert [c.proto.spec for c in page.get("plotly_chart")] == first


def test_the_figure_cache_key_reads_every_row_of_a_long_frame(monkeypatch):
    """Streamlit's own hash reads a sample of 10,000 rows from a frame of 50,000 or more: a change in one row
    could have given the stale figure. Such frames were never cached; now every row is in the key, so they are
    cached and a change anywhere is a new figure."""
    import plotly.graph_objects as go

    from ui import charts, components

    built = []

    def rows_figure(frame):
        built.append(int((frame["label"] == "b").sum()))
        return go.Figure()

    monkeypatch.setattr(charts, "rows_figure", rows_figure, raising=False)
    long = pd.DataFrame({"x": range(60_000), "label": "a"})
    components.chart(charts.rows_figure, long, key="long")
    components.chart(charts.rows_figure, long.copy(), key="again")
    assert built == [0]  # the same content: built once
    for row in (0, 12_345, 31_337, 47_000, 59_999):
        changed = long.copy()
        changed.loc[row, "label"] = "b"
        components.chart(charts.rows_figure, changed, key=f"row {row}")
    assert built == [0, 1, 1, 1, 1, 1]  # each one-row change seen


def test_a_patients_first_visit_after_a_neighbours_runs_no_query_of_its_own(situations, monkeypatch):
    """A first visit to a patient ran ten queries and the landmark rows for that patient alone: three quarters
    of the server's time when twenty sessions opened patients at random. The first visit now fetches and
    estimates the patient's neighbours too, so the next patient's first visit reads what is already there."""
    from data.store import Snapshot

    first = run_page("pages/patient.py", patient=situations["stopped_stable"])
    assert not first.exception, [e.value for e in first.exception]
    asked = _calls(monkeypatch, Snapshot, "query", noted=lambda self, sql, params=None: sql)
    second = run_page("pages/patient.py", patient=situations["progressed"])
    assert not second.exception, [e.value for e in second.exception]
    assert len(second.get("plotly_chart")) >= 5
    patient_views = [q for q in asked if any(v in q for v in ("patient_timeline", "ctdna_series", "pro_scores"))]
    assert patient_views == [], patient_views


def test_the_digest_is_made_once_per_timeline_and_a_new_decision_is_in_it(situations, monkeypatch):
    """The since-last-visit digest was made at every run of every session (an eighth of the server's time under
    20 sessions). It is kept per timeline content: another session on the same patient and a rerun reuse it,
    and a tumour-board decision, which is on the timeline, makes it again with the decision in it."""
    from datetime import date

    from data import queries

    made = _calls(monkeypatch, queries, "since")
    pid = situations["progressed"]
    page = run_page("pages/patient.py", patient=pid)
    other = run_page("pages/patient.py", patient=pid)  # another clinician's session, the same patient
    page.run()
    assert not page.exception and not other.exception
    assert len(made) == 1

    def digest(at):
        [table] = [d.value for d in at.dataframe if list(d.value.columns) == ["date", "what", "result", "detail"]]
        return table

    assert "restart" not in set(digest(page)["result"])
    decisions.record(decisions.Decision(date.today(), pid, "restart", "progressed on the last scan"), who="dr",
                     role="clinician", snapshot_id=None, known_patients={pid})
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert len(made) == 2 and "restart" in set(digest(page)["result"])
