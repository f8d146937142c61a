"""AppTest of every page: each patient situation renders without exception, with its four charts."""
import base64
import json
import re

import numpy as np

import pytest
from streamlit.testing.v1 import AppTest

from model import landmark
from tests.conftest import REPO

APP = str(REPO / "app.py")


def run_page(page: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    return at


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(array):
    """A plotly JSON array, plain or typed ({"dtype", "bdata"})."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
    return list(array)


def titles(specs):
    return [s["layout"]["title"]["text"] for s in specs]


FOUR = ("Timeline", "ctDNA", "Scans (RECIST 1.1)", "Patient-reported outcomes")


def the_four(at):
    """The timeline, ctDNA, scan and PRO charts, in page order (the risk card adds its own)."""
    return [s for s in charts(at) if s["layout"]["title"]["text"].startswith(FOUR)]


@pytest.mark.parametrize("situation", ["stopped_stable", "progressed", "continuing", "no_target_lesions"])
def test_patient_page_for_each_situation(situations, situation):
    pid = situations[situation]
    at = run_page("pages/patient.py", patient=pid)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="patient_picker").value == pid
    specs = the_four(at)
    assert titles(specs)[:2] == ["Timeline", "ctDNA"]
    assert titles(specs)[2].startswith("Scans (RECIST 1.1)")
    assert titles(specs)[3] == "Patient-reported outcomes"
    for spec in specs:
        assert spec["data"], "every chart draws data"
    assert specs[1]["layout"]["yaxis"]["type"] == "log"
    # header facts and the digest are there
    body = " ".join(m.value for m in at.markdown)
    assert "Cohort" in " ".join(c.value for c in at.caption)
    assert any(word in body for word in ("stopped", "continuing"))
    assert at.dataframe and at.table, "digest and scan table are shown"


def test_patient_picker_searches_instead_of_listing_a_large_cohort(monkeypatch, situations):
    """Above PICKER_LISTS_ALL_UP_TO patients the picker lists search matches, never the whole cohort."""
    from ui import components

    monkeypatch.setattr(components, "PICKER_LISTS_ALL_UP_TO", 10)
    monkeypatch.setattr(components, "PICKER_SHOWS", 5)
    opened, other = situations["progressed"], situations["stopped_stable"]
    at = run_page("pages/patient.py", patient=opened)
    assert not at.exception, [e.value for e in at.exception]
    picker = at.selectbox(key="patient_picker")
    assert picker.value == opened
    assert len(picker.options) <= 6  # the first 5 and the open patient
    assert any("patients match" in c.value for c in at.caption)
    at.text_input(key="patient_search").set_value(other[-4:].lower()).run()
    picker = at.selectbox(key="patient_picker")
    assert picker.value == opened, "searching does not switch patients"
    assert [o for o in picker.options if other in o], picker.options
    assert all(other[-4:] in o or opened in o for o in picker.options)
    picker.set_value(other).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["patient"] == [other] or at.query_params["patient"] == other
    assert other in " ".join(m.value for m in [*at.markdown, *at.header, *at.subheader, *at.caption])


@pytest.mark.parametrize("axis", ["days", "dates"])
def test_the_stacked_charts_share_one_x_range(situations, axis):
    at = run_page("pages/patient.py", patient=situations["progressed"])
    if axis == "dates":
        at.radio(key="axis").set_value("dates").run()
    specs = [c for c in charts(at) if c["layout"]["title"]["text"].startswith((*FOUR, "Estimated chance"))]
    ranges = {json.dumps(spec["layout"][k]["range"]) for spec in specs for k in spec["layout"]
              if k.startswith("xaxis")}
    assert len(specs) >= 4 and len(ranges) == 1, ranges


def test_the_scan_table_puts_the_overall_response_first_and_shows_no_none(situations):
    at = run_page("pages/patient.py", patient=situations["no_target_lesions"])
    table = next(t.value for t in at.table if "overall" in t.value.columns).reset_index()
    assert list(table.columns)[:3] == ["date", "day", "overall"]
    cells = table.astype(str).to_numpy().ravel().tolist()
    assert "None" not in cells and "nan" not in cells and "NED" in set(table["overall"])


def test_the_timeline_names_the_drug_on_each_therapy_bar(situations, snapshot):
    pid = situations["progressed"]
    drugs = set(snapshot.query("SELECT label FROM patient_timeline WHERE patient_id = ? AND track IN "
                               "('anti-HER2', 'other therapy')", [pid])["label"])
    at = run_page("pages/patient.py", patient=pid)
    timeline = next(c for c in charts(at) if c["layout"]["title"]["text"] == "Timeline")
    labels = " | ".join(a["text"] for a in timeline["layout"]["annotations"])
    assert drugs and all(drug in labels for drug in drugs)  # drugs given together share one label


def test_progressed_patient_shows_progression_on_timeline_and_ctdna(situations):
    at = run_page("pages/patient.py", patient=situations["progressed"])
    timeline, ctdna = the_four(at)[:2]
    assert any(t.get("name") == "progression" for t in timeline["data"])
    shapes = ctdna["layout"].get("shapes", [])
    assert any(s.get("line", {}).get("color") == "#d73027" for s in shapes)  # the progression line


def test_no_target_patient_gets_the_response_strip_not_an_sld_line(situations):
    at = run_page("pages/patient.py", patient=situations["no_target_lesions"])
    sld = the_four(at)[2]
    assert sld["layout"]["yaxis"]["type"] == "category"
    # the note is in the title, where "day 0" cannot print over it
    assert "No target lesions" in sld["layout"]["title"]["text"]
    assert "No target lesions" not in json.dumps(sld["layout"].get("annotations", []))


def test_switching_to_calendar_dates_redraws_every_chart(situations):
    at = run_page("pages/patient.py", patient=situations["stopped_stable"])
    at.radio(key="axis").set_value("dates").run()
    assert not at.exception
    for spec in the_four(at):
        xs = [x for trace in spec["data"] for x in (trace.get("x") or []) if x is not None]
        assert xs and all(isinstance(x, str) and x[:2] in ("19", "20") for x in xs[:5])


@pytest.mark.parametrize("hostile", ["STH-9999", "' OR 1=1 --", "<script>alert(1)</script>", "x" * 300])
def test_unknown_or_hostile_patient_id_is_not_found_and_nothing_is_rendered(hostile):
    at = run_page("pages/patient.py", patient=hostile)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "No patient with id" in errors[0]
    assert "<script>" not in errors[0] and "'" not in errors[0]
    assert len(errors[0]) < 120


def test_picking_another_patient_updates_the_url(situations):
    at = run_page("pages/patient.py", patient=situations["continuing"])
    at.selectbox(key="patient_picker").set_value(situations["progressed"]).run()
    assert not at.exception
    assert at.query_params["patient"] in (situations["progressed"], [situations["progressed"]])


def test_each_patient_gets_their_own_since_last_visit_date(situations, snapshot):
    from data import queries

    first, second = situations["continuing"], situations["progressed"]
    expected = {pid: queries.previous_visit(queries.patient_record(snapshot, pid).timeline) for pid in (first, second)}
    assert expected[first] != expected[second]
    at = run_page("pages/patient.py", patient=first)
    assert at.date_input(key=f"since_date:{first}").value == expected[first]
    at.selectbox(key="patient_picker").set_value(second).run()
    assert not at.exception
    # the second patient's own date, not the first one's carried over
    assert at.date_input(key=f"since_date:{second}").value == expected[second]


def test_months_off_therapy_stop_at_a_restart_on_the_header(snapshot):
    row = snapshot.query("SELECT patient_id, restarted_on FROM patient_summary WHERE cohort = 2 "
                         "AND restarted_on IS NOT NULL ORDER BY 1 LIMIT 1").iloc[0]
    at = run_page("pages/patient.py", patient=row["patient_id"])
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert f"until the restart on {row['restarted_on']:%Y-%m-%d}" in captions
    assert "Months off therapy" in captions


def test_the_digest_reads_as_words_and_rounded_levels(snapshot):
    import datetime as dt

    pid = snapshot.query("SELECT patient_id FROM patient_summary s WHERE EXISTS (SELECT 1 FROM ctdna_draws d WHERE "
                         "d.patient_id = s.patient_id AND d.detected AND d.value < 10) AND EXISTS (SELECT 1 FROM "
                         "events e WHERE e.patient_id = s.patient_id AND e.event = 'last_contact') ORDER BY 1 LIMIT 1"
                         ).iloc[0, 0]
    at = run_page("pages/patient.py", patient=pid)
    at.date_input(key=f"since_date:{pid}").set_value(dt.date(2000, 1, 1)).run()
    digest = next(d.value for d in at.dataframe if list(d.value.columns) == ["date", "what", "result", "detail"])
    cells = digest.astype(str).to_numpy().ravel().tolist()
    assert "None" not in cells and "nan" not in cells and not any("_" in c for c in digest["result"])
    assert "last contact" in set(digest["result"])
    levels = digest.loc[digest["what"] == "ctDNA", "detail"].str.extract(r" ([0-9.]+) ")[0].dropna()
    assert len(levels) and all(len(v.replace(".", "").lstrip("0")) <= 2 or "." not in v for v in levels), levels


def test_home_page_worklist_links_to_patient_pages():
    at = run_page("pages/home.py")
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 82
    assert table["open"].str.startswith("patient?patient=STH-").all()
    # ordered by clinical severity, each alert named: a progression nobody acted on comes first
    assert table["alerts"].iloc[0].startswith("progression on ") and "not restarted" in table["alerts"].iloc[0]
    assert "n_alerts" not in table.columns
    assert "Synthetic data" in " ".join(w.value for w in at.sidebar.warning)


def test_first_start_builds_the_snapshot_with_progress(tmp_path, monkeypatch):
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(tmp_path))
    monkeypatch.setenv("STOPHER2_MODEL_DIR", str(tmp_path / "models"))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    assert (tmp_path / "CURRENT").exists()
    status = at.main.children[0]
    assert type(status).__name__ == "Status" and status.proto.label == "Synthetic database ready"
    assert status.children[0].proto.value == 100  # the progress bar reached the end
    assert at.dataframe[0].value.shape[0] == 82  # and the page went on to show the cohort


def _at_risk_stopped(snapshot, detected: bool) -> str:
    """A cohort-2 patient in follow-up at the data cut-off whose last ctDNA call is `detected`."""
    return snapshot.query("""SELECT patient_id FROM patient_summary WHERE cohort = 2 AND status = 'in follow-up'
                             AND last_ctdna_detected = ? AND restarted_on IS NULL ORDER BY patient_id LIMIT 1""",
                          [detected]).iloc[0, 0]


def test_risk_card_gives_the_estimate_as_of_the_data_cutoff(snapshot):
    pid = _at_risk_stopped(snapshot, False)
    at = run_page("pages/patient.py", patient=pid)
    assert not at.exception
    body = " ".join(m.value for m in at.markdown)
    assert "95% interval" in body and "in 100" in body and "Patients like this one" in body
    cutoff = f"{snapshot.info()['data_cutoff']:%Y-%m-%d}"
    assert any(f"As of {cutoff}" in c.value for c in at.caption)
    assert at.date_input(key=f"as_of_{pid}").value.isoformat() == cutoff
    pct = int(re.search(r"### (\d+)%", body).group(1))
    icons = next(s for s in charts(at) if s["layout"]["title"]["text"].startswith("100 patients like this"))
    assert sum(len(values(t["x"])) for t in icons["data"]) == 100
    grey = sum(len(values(t["x"])) for t in icons["data"] if t["name"].startswith(("progress", "progress,")))
    assert grey == 100 - pct, "grey icons are 100 minus the estimate, not minus the upper bound"
    inputs = next(d.value for d in at.dataframe if "as of" in d.value.columns)
    assert {"input", "value", "as of"} <= set(inputs.columns) and (inputs["as of"] != "").all()
    brain = snapshot.query("SELECT brain_mets_history FROM patient_summary WHERE patient_id = ?", [pid]).iloc[0, 0]
    shown = inputs.set_index("input")["value"]  # every input the model uses is on the card, brain history too
    assert shown["history of brain metastases"] == ("yes" if brain else "no")
    assert {landmark.INPUT_LABELS[c] for c in landmark.ENROLMENT_INPUTS} <= set(shown.index)
    # months after stopping, the latest negative draw was taken off therapy: the card says which kind it is
    assert shown[landmark.INPUT_LABELS["ctdna_negative_on_therapy_only"]] == "no"
    assert any("Model card" in str(link.proto.label) for link in at.get("page_link"))


def test_a_patient_whose_ctdna_turned_positive_sees_the_estimate_fall(snapshot):
    pid = _at_risk_stopped(snapshot, True)
    at = run_page("pages/patient.py", patient=pid)
    assert not at.exception
    trajectory = next(s for s in charts(at) if s["layout"]["title"]["text"] == "Estimated chance over time")
    y = values(next(t for t in trajectory["data"] if t.get("mode") == "lines+markers")["y"])
    assert y[0] > 80 and y[-1] < y[0] - 20, list(y)
    now = int(re.search(r"### (\d+)%", " ".join(m.value for m in at.markdown)).group(1))
    negative = run_page("pages/patient.py", patient=_at_risk_stopped(snapshot, False))
    assert now < int(re.search(r"### (\d+)%", " ".join(m.value for m in negative.markdown)).group(1))


def test_an_interval_too_wide_to_lean_on_is_said_in_words(snapshot):
    """With the measured calibration a ctDNA-positive patient's interval spans most of the scale (on synthetic
    trials the truth of such patients ranged that far); the card says so instead of leaving the number alone."""
    from ui.risk_card import WIDE_INTERVAL_POINTS

    widths = {}
    for detected in (True, False):
        at = run_page("pages/patient.py", patient=_at_risk_stopped(snapshot, detected))
        assert not at.exception
        lo, hi = map(int, re.search(r"95% interval \*\*(\d+)% to (\d+)%", " ".join(m.value for m in at.markdown)).groups())
        warned = any("Do not lean on" in w.value for w in at.warning)
        assert warned == (hi - lo >= WIDE_INTERVAL_POINTS), (lo, hi)
        widths[detected] = hi - lo
    assert widths[True] >= WIDE_INTERVAL_POINTS > widths[False]


def test_the_estimate_over_time_ends_at_the_cards_number_on_the_data_cutoff(snapshot):
    """The line stopped at the last draw or 3-monthly landmark, months before the cut-off the card speaks of."""
    for detected in (True, False):
        at = run_page("pages/patient.py", patient=_at_risk_stopped(snapshot, detected))
        assert not at.exception
        card = int(re.search(r"### (\d+)%", " ".join(m.value for m in at.markdown)).group(1))
        trajectory = next(s for s in charts(at) if s["layout"]["title"]["text"] == "Estimated chance over time")
        line = next(t for t in trajectory["data"] if t.get("mode") == "lines+markers")
        assert values(line["customdata"])[-1] == f"{snapshot.info()['data_cutoff']:%Y-%m-%d}"
        assert round(values(line["y"])[-1]) == card
        # and in view: the shared x-range reaches it (it ended 30 days after the last contact, often before)
        assert trajectory["layout"]["xaxis"]["range"][1] >= values(line["x"])[-1]


def test_a_progressed_patient_gets_no_number_but_the_event_and_its_date(situations, snapshot):
    for cohort in (1, 2):
        pid = snapshot.query("SELECT patient_id, progressed_on FROM patient_summary WHERE cohort = ? AND progressed "
                             "ORDER BY patient_id LIMIT 1", [cohort])
        at = run_page("pages/patient.py", patient=pid.iloc[0, 0])
        assert not at.exception
        said = " ".join(e.value for e in at.warning)
        assert not at.error and "No estimate as of" in said and f"progressed on {pid.iloc[0, 1]:%Y-%m-%d}" in said
        assert not re.search(r"### \d+%", " ".join(m.value for m in at.markdown))
        assert not any(s["layout"]["title"]["text"].startswith("100 patients") for s in charts(at))
        assert len(the_four(at)) == 4  # the rest of the page is unaffected


def test_the_estimate_as_of_an_earlier_date_uses_what_was_known_then(snapshot):
    pid = _at_risk_stopped(snapshot, True)
    at = run_page("pages/patient.py", patient=pid)
    first = snapshot.query("SELECT min(drawn_on) FROM ctdna_series WHERE patient_id = ? AND detected", [pid]).iloc[0, 0]
    before = (first - __import__("datetime").timedelta(days=1)).date()
    at.date_input(key=f"as_of_{pid}").set_value(before).run()
    assert not at.exception
    earlier = int(re.search(r"### (\d+)%", " ".join(m.value for m in at.markdown)).group(1))
    assert any(f"As of {before:%Y-%m-%d}" in c.value for c in at.caption)
    assert earlier >= 80  # before the conversion: reassuring, as it was then


def test_horizon_setting_changes_the_question(situations, model_dir):
    at = run_page("pages/patient.py", patient=situations["stopped_stable"])
    assert "for the next 12 months" in " ".join(h.value for h in at.subheader)
    assert at.sidebar.selectbox(key="horizon_months").options == ["6", "12", "24"]
    at.sidebar.selectbox(key="horizon_months").set_value(24).run()
    assert "for the next 24 months" in " ".join(h.value for h in at.subheader)


def test_a_tampered_model_is_refused_and_the_page_still_works(situations, snapshot, model_dir, tmp_path, monkeypatch):
    import shutil

    from model.artifacts import artifact_paths
    from services import models

    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    monkeypatch.setenv("STOPHER2_MODEL_DIR", str(folder))
    sid = str(snapshot.info()["snapshot_id"])
    models.ensure_landmark(snapshot, sid)
    path, _ = artifact_paths(sid, models.LANDMARK, folder)
    path.write_bytes(path.read_bytes()[:-10] + b"tampered!!")
    at = run_page("pages/patient.py", patient=situations["stopped_stable"])
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "does not match its manifest (sha256)" in warning
    assert len(the_four(at)) == 4


def test_model_card_page(snapshot):
    pid = snapshot.query("""SELECT patient_id FROM model_features WHERE cohort = 2 AND ctdna_detected_at_index
                            IS NOT NULL AND progressed_on_or_before IS NULL ORDER BY patient_id LIMIT 1""").iloc[0, 0]
    at = run_page("pages/model_card.py", patient=pid)
    assert not at.exception, [e.value for e in at.exception]
    names = titles(charts(at))
    assert names[0].startswith("Calibration: predicted vs observed")
    assert any(n.startswith("ROC (apparent") for n in names)
    assert any(n.startswith("Decision curve (apparent") for n in names)  # drawn on the training patients: said so
    assert "the one figure to quote: cross-validated AUROC" in " ".join(m.value for m in at.markdown)
    assert any(n == "Calibration by subgroup" for n in names)
    calibration = charts(at)[0]
    assert any(a.get("text") == "this patient" for a in calibration["layout"].get("annotations", []))
    text = " ".join(m.value for m in at.markdown)
    for section in ("Intended use", "Population and data", "Outcome and horizon", "Predictors", "Model.",
                    "interval covers the true probability"):
        assert section in text
    subheaders = " ".join(h.value for h in at.subheader)
    assert "Validation" in subheaders and "Limitations" in subheaders and "Version history" in subheaders
    metrics = next(d.value for d in at.dataframe if "apparent" in d.value.columns)
    assert {"apparent", "optimism", "corrected", "ci_low", "ci_high"} <= set(metrics.columns)
    # the landmark model, which every number on the patient page comes from, comes first
    assert [h.value for h in at.header][:2] == ["The estimate as of a date (landmark model)",
                                                "For comparison: the day-0 classifier"]
    assert "treatment policy" in text and "Godambe" in text
    hazard = next(d.value for d in at.dataframe if "hazard_ratio" in d.value.columns)
    assert {"prior_hr", "lower", "upper"} <= set(hazard.columns)
    # a link naming two patients marks neither on the calibration plot (Streamlit alone would read the last)
    other = snapshot.query("SELECT patient_id FROM patients WHERE patient_id <> ? LIMIT 1", [pid]).iloc[0, 0]
    two = run_page("pages/model_card.py", patient=[other, pid])
    assert not two.exception
    assert not any(a.get("text") == "this patient" for a in charts(two)[0]["layout"].get("annotations", []))
    assert list(hazard["input"]) == [landmark.INPUT_LABELS[c] for c in landmark.INPUTS]  # brain history too
    assert any("with a ctDNA result (used)" in d.value.columns for d in at.dataframe)  # participant flow
    assert any("hazard per month" in d.value.columns for d in at.dataframe)  # with the HRs: the whole equation
    assert "The equation" in text and "Update plan" in text


def test_every_page_url_matches_its_file_so_deep_links_survive_a_fresh_server():
    source = (REPO / "app.py").read_text()
    pages = re.findall(r'st\.Page\("pages/(\w+)\.py"[^)]*?url_path="(\w+)"', source)
    assert pages and all(stem == url for stem, url in pages), pages


def test_tumor_board_funnel_candidates_filters_and_meeting_list():
    at = run_page("pages/tumor_board.py")
    assert not at.exception, [e.value for e in at.exception]
    funnel = charts(at)[0]
    assert funnel["data"][0]["type"] == "funnel"
    table = at.dataframe[0].value
    assert set(table["eligibility"]) <= {"eligible", "unknown"}  # the default filter
    # default: eligible before unknown, each by the estimate
    order = table["eligibility"].map({"eligible": 0, "unknown": 1}).tolist()
    assert order == sorted(order)
    for _, group in table.groupby("eligibility"):
        ranked = group["chance"].dropna().tolist()
        assert ranked == sorted(ranked, reverse=True)
    assert {"status", "last_followup_on"} <= set(table.columns)
    at.selectbox(key="tb_rank").set_value("lower end of the interval").run()
    lows = at.dataframe[0].value["interval"].str.extract(r"^(\d+)")[0].dropna().astype(int).tolist()
    assert lows == sorted(lows, reverse=True) and lows
    assert any("overlap" in i.value for i in at.info)  # the ranking says when intervals overlap
    at.multiselect(key="tb_status").set_value(["not eligible"]).run()
    not_eligible = at.dataframe[0].value
    gone = not_eligible[not_eligible["status"].isin(["withdrew", "died"])]
    assert len(gone) and gone["failing criteria"].str.contains("in_follow_up").all()  # never "eligible"
    assert (not_eligible["eligibility"] == "not eligible").all() and not_eligible["failing criteria"].str.len().min() > 0
    at.multiselect(key="tb_hr").set_value(["negative"]).run()
    assert (at.dataframe[0].value["hr_status"] == "negative").all()
    first = table["patient_id"].iloc[0]
    at.multiselect(key="meeting_picker").set_value([first]).run()
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert any("CSV" in label for label in labels) and any("printable" in label for label in labels)
    listed = at.dataframe[-1].value  # what the CSV holds: the horizon, the snapshot and its cut-off, rounded
    assert {"horizon_months", "snapshot_id", "data_cutoff"} <= set(listed.columns)
    years = listed["years_on_first_line"].dropna()
    assert (years == years.round(1)).all()


def test_cohorts_page_with_filters_and_pseudonymous_ids():
    at = run_page("pages/cohorts.py")
    assert not at.exception, [e.value for e in at.exception]
    names = titles(charts(at))
    assert names[:2] == ["By cohort", "By ctDNA at day 0"]
    assert any(n.startswith("Swimmer") for n in names) and any(n.startswith("ctDNA lead time") for n in names)
    assert any(n.startswith("Change from baseline") for n in names)
    assert any(n.startswith("Hazard ratios") for n in names) and any(n.startswith("Cumulative incidence") for n in names)
    assert any("self-selected" in w.value for w in at.warning)  # beside the comparisons
    figures = [n for n in names if not n.startswith("By ctDNA")] + ["By ctDNA at day 0"]
    exports_ = [b.proto.label for b in at.get("download_button")]
    assert exports_.count("CSV of the data drawn") == len(set(figures)) == 7
    first = at.dataframe[0].value.set_index("")
    assert "Kaplan-Meier" in " ".join(first.index) and "reverse Kaplan-Meier" in " ".join(first.index)
    swimmer = [c for c in charts(at) if c["layout"]["title"]["text"].startswith("Swimmer")][0]
    labels = swimmer["layout"]["yaxis"]["categoryarray"]
    assert all(label.startswith("R-") for label in labels) and not any("STH" in label for label in labels)
    at.multiselect(key="cohort_filter_hr_status").set_value(["negative"]).run()
    assert not at.exception
    table_one = at.dataframe[0].value.set_index("")
    n_all = int(table_one.loc["Patients", "all"])
    assert 0 < n_all < 82
    assert table_one.loc["ER positive", "all"].startswith("0 ")  # HR-negative only


def test_risk_card_refuses_when_no_ctdna_result_was_known_on_the_date(snapshot):
    rows = snapshot.query("""SELECT f.patient_id, f.index_date FROM model_features f JOIN patient_summary s
                             USING (patient_id) WHERE f.cohort = 2 AND f.ctdna_detected_at_index IS NULL
                             AND NOT s.progressed ORDER BY 1""")
    assert not rows.empty, "the synthetic cohort has QC failures at day 0"
    pid, day0 = rows.iloc[0, 0], rows.iloc[0, 1]
    at = run_page("pages/patient.py", patient=pid)
    at.date_input(key=f"as_of_{pid}").set_value(day0.date() if hasattr(day0, "date") else day0).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "no ctDNA result on or before" in " ".join(i.value for i in at.info)


@pytest.fixture
def two_kept_snapshots(snapshot_file, tmp_path, monkeypatch):
    """A snapshot folder holding two snapshots (copies of the test snapshot), the newer one live."""
    import os
    import shutil

    from data.store import publish

    folder = tmp_path / "snapshots"
    folder.mkdir()
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(folder))
    monkeypatch.delenv("STOPHER2_SNAPSHOT")
    older, newer = folder / "csv-older.duckdb", folder / "csv-newer.duckdb"
    shutil.copy(snapshot_file, older)
    publish(older)
    os.utime(older, (1, 1))
    shutil.copy(snapshot_file, newer)
    publish(newer)
    return folder, older, newer


def test_data_page_history_rollback_quality_and_templates(two_kept_snapshots):
    from data.store import snapshot_path

    folder, older, newer = two_kept_snapshots
    at = run_page("pages/data.py")
    assert not at.exception, [e.value for e in at.exception]
    assert [t.label for t in at.tabs] == ["Import", "Snapshots", "Data quality", "Templates"]
    assert at.radio(key="data_source").options == ["CSV bundle", "CDISC SDTM", "FHIR R4 / mCODE", "Parquet", "REDCap"]
    history = at.dataframe[0].value
    assert list(history["snapshot_id"]) == ["csv-newer", "csv-older"] and list(history["live"]) == [True, False]
    assert (history["rows: patients"] == 82).all()
    at.selectbox(key="rollback_target").set_value("csv-older")
    at.button(key="rollback").click().run()
    assert snapshot_path() == newer and any("Tick the box" in w.value for w in at.warning), "not without confirming"
    at.checkbox(key="rollback_sure").check().run()
    at.button(key="rollback").click().run()
    assert not at.exception and snapshot_path() == older
    assert any("csv-older is live again" in s.value for s in at.success)
    at.button(key="recheck").click().run()
    assert not at.exception and any("No problems found" in s.value for s in at.success)
    missing = at.dataframe[1].value
    assert {"table", "column", "missing", "missing_pct"} <= set(missing.columns)
    assert "patients" not in set(missing.loc[missing["column"] == "patient_id", "table"])
    design = next(b for b in at.get("download_button") if b.key == "redcap_design_dl")
    assert design.proto.HasField("deferred_file_id")  # made at the click, on record, like every export


def test_data_page_offers_every_registered_source(monkeypatch):
    from services import importers

    monkeypatch.setitem(importers.REGISTRY, "fake", importers.Importer("fake", "A new source", ("txt",), "one file",
                                                                         lambda source, **o: None))
    at = run_page("pages/data.py")
    assert not at.exception
    assert at.radio(key="data_source").options == [i.label for i in importers.REGISTRY.values()]
    assert "A new source" in at.radio(key="data_source").options


def test_the_risk_card_and_the_estimate_command_give_the_same_numbers(snapshot, snapshot_file, live_model_env):
    import io
    import os
    import subprocess
    import sys

    import pandas as pd

    pid = _at_risk_stopped(snapshot, True)
    env = {**os.environ, "STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(live_model_env)}
    out = subprocess.run([sys.executable, "-m", "model", "estimate", "--patient", pid, "--horizon", "12"],
                         capture_output=True, text=True, cwd=REPO, env=env, check=True)
    cli = pd.read_csv(io.StringIO(out.stdout))
    assert list(cli.columns) == ["patient_id", "as_of", "landmark_months", "horizon_months", "estimate", "lower",
                                 "upper", "refusal"]
    row = cli.iloc[0]
    assert row["as_of"] == f"{snapshot.info()['data_cutoff']:%Y-%m-%d}" and pd.isna(row["refusal"])
    at = run_page("pages/patient.py", patient=pid)
    body = " ".join(m.value for m in at.markdown)
    shown = re.search(r"### (\d+)%  \n95% interval \*\*(\d+)% to (\d+)%\*\*", body).groups()
    assert tuple(int(v) for v in shown) == tuple(round(100 * row[c]) for c in ("estimate", "lower", "upper"))
    # the command's other ways of asking, and its refusals
    every = subprocess.run([sys.executable, "-m", "model", "estimate", "--all", "--landmark-months", "6",
                            "--horizon", "6", "--horizon", "24"], capture_output=True, text=True, cwd=REPO, env=env)
    table = pd.read_csv(io.StringIO(every.stdout))
    assert every.returncode == 0 and len(table) == 2 * 82 and set(table["horizon_months"]) == {6, 24}
    assert (table["estimate"].notna() == table["refusal"].isna()).all()
    for bad, said in ((["--patient", "STH-9999"], "no patient with id"), (["--all", "--as-of", "2999-01-01"], "after"),
                      (["--all", "--as-of", "2026-02-30"], "not a date")):
        r = subprocess.run([sys.executable, "-m", "model", "estimate", *bad], capture_output=True, text=True, cwd=REPO,
                           env=env)
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr


def test_model_card_and_risk_card_quote_the_stored_synthetic_check_not_a_constant(snapshot, tmp_path, monkeypatch):
    from model import landmark_check
    from services.models import LANDMARK_VERSION
    from tests.unit.test_landmark_check import _rows

    path = tmp_path / "landmark.json"
    monkeypatch.setattr(landmark_check, "BENCHMARK_FILE", path)
    pid = _at_risk_stopped(snapshot, False)
    card = run_page("pages/model_card.py")
    assert any("Not measured for this version" in w.value for w in card.warning)
    risk = run_page("pages/patient.py", patient=pid)
    assert any("has not been measured for this version" in c.value for c in risk.caption)

    summary = landmark_check.summarise(_rows().assign(test_seed=lambda r: np.arange(len(r)) // 4 % 2))  # 2 trials
    path.write_text(json.dumps({
        "procedure_version": LANDMARK_VERSION, "measured_on": "2026-01-02T00:00:00+00:00", "repeats": 7,
        "interval": landmark_check.interval_digest(landmark_check.current_interval(LANDMARK_VERSION)),
        "patients_per_cohort": 82, "bars": landmark_check.BARS,
        "generators": {"default": {**summary, "about": "the default generator", "fitted": 7}}}, default=float))
    card = run_page("pages/model_card.py")
    assert not card.exception
    bars = next(d.value for d in card.dataframe if "bar" in d.value.columns).set_index("bar")
    assert bars.loc[landmark_check.BARS["mean_absolute_error"], "default"] == "0.020"
    assert bars.loc[landmark_check.BARS["group_coverage"], "default"].endswith("not met")
    low, high = summary["net_benefit_interval"]  # a shortfall is shown with its uncertainty over the trials
    assert f"(95% {low:+.4f} to {high:+.4f})" in bars.loc[landmark_check.BARS["net_benefit"], "default"]
    assert any("held the true chance 75% of the time" in w.value for w in card.warning)
    calibration = landmark_check.current_interval(LANDMARK_VERSION)
    text = " ".join(m.value for m in card.markdown)
    assert f"for each of {len(calibration['generators'])} generators" in text and "each weighing the same" in text
    risk = run_page("pages/patient.py", patient=pid)
    said = " ".join(c.value for c in risk.caption)
    assert "7 repetitions" in said and "held the true chance only 75%" in said and "ctDNA-negative" in said


HOSTILE_TEXT = {"first_line_regimen": "![x](http://127.0.0.1:9/leak.png) [Session expired: sign in again](http://evil)",
                "site": ":red[**SAFE TO STOP**]"}


def test_values_from_the_data_are_shown_as_text_never_as_markup(tmp_path, monkeypatch):
    """An imported regimen or site is shown as the characters it is: no image fetched, no link, no colour."""
    from data import synth
    from data.build import build_snapshot

    tables = synth.generate(12, seed=3)
    for column, value in HOSTILE_TEXT.items():
        tables["patients"][column] = tables["patients"][column].astype(object)
        tables["patients"].loc[0, column] = value
    path = tmp_path / "hostile.duckdb"
    build_snapshot(tables, source="synthetic", out=path, data_cutoff=synth.P["data_cutoff"])
    monkeypatch.setenv("STOPHER2_SNAPSHOT", str(path))
    pid = tables["patients"].loc[0, "patient_id"]
    at = run_page("pages/patient.py", patient=pid)
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value for e in [*at.markdown, *at.caption, *at.warning, *at.info, *at.success, *at.error]]
    header = next(v for v in shown if "first-line" in v)
    unescaped = [re.sub(r"\\.", "", v) for v in shown]  # what markdown would still read as markup
    for raw in ("![", "](", ":red[", "[Session expired"):
        assert not any(raw in v for v in unescaped), raw
    assert "\\!\\[x\\]\\(h\u200bttp\\://127.0.0.1\\:9/leak.png\\)" in header  # no image, no autolink
    assert r"\:red\[\*\*SAFE TO STOP\*\*\]" in header


def test_an_unwritable_audit_trail_shows_no_patient_on_any_run(situations, audit_db):
    """Fail closed: no record, no patient data, a sentence for the person (and one in the server log)."""
    from data import audit

    audit.record("setup@x.org", "admin", "sign_in")
    audit_db.write_bytes(b"this is not a database" * 100)  # a damaged or unwritable file (root ignores modes)
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["patient"] = situations["continuing"]
    at.switch_page("pages/patient.py")
    for _ in range(3):  # the first run, and every run after it
        at.run()
        assert not at.exception
        assert any("audit trail cannot record it" in e.value for e in at.error)
        assert not at.get("plotly_chart") and not any("first-line" in c.value for c in at.caption)


def test_a_shared_database_lost_mid_session_shows_nothing_and_the_page_recovers(situations, postgres_url,
                                                                                 postgres_server):
    """With the audit trail in PostgreSQL (several hosts): a patient is shown while the database answers; the
    next patient opened once it is gone is not shown (its opening cannot be recorded); the same session shows
    that patient when the database is back."""
    from data import audit

    first, second = situations["continuing"], situations["progressed"]
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["patient"] = first
    at.switch_page("pages/patient.py")
    at.run()
    assert not at.exception and at.get("plotly_chart")
    postgres_server.stop()
    try:
        at.selectbox(key="patient_picker").set_value(second).run()
        assert not at.exception
        assert any("audit trail cannot record it" in e.value for e in at.error)
        assert not at.get("plotly_chart") and not any("first-line" in c.value for c in at.caption)
    finally:
        postgres_server.start()
    at.run()
    assert not at.exception and at.get("plotly_chart") and not at.error
    assert any(second in c.value for c in [*at.caption, *at.markdown, *at.title, *at.header, *at.subheader])
    opened = audit.read(action="view_patient")
    assert list(opened["patient_id"]) == [second, first] and audit.verify()[0]  # nothing while it was gone


def test_exports_are_made_only_at_the_click_and_only_once_on_record(audit_db):
    """Nothing is served at a /media URL before the click; the click records first and then hands over the bytes."""
    from data import audit

    at = run_page("pages/audit.py")
    assert any("Kept in the SQLite file audit.sqlite on this host" in c.value for c in at.caption)
    button = next(b for b in at.get("download_button") if b.key == "audit_export")
    assert button.proto.HasField("deferred_file_id") and not button.proto.url
    assert audit.read(action="export").empty


def test_the_visit_summary_is_offered_made_at_the_click_and_on_record(situations, audit_db):
    from data import audit

    pid = situations["progressed"]
    at = run_page("pages/patient.py", patient=pid)
    button = next(b for b in at.get("download_button") if b.key == f"visit_summary:{pid}")
    assert button.proto.HasField("deferred_file_id") and not button.proto.url
    assert audit.read(action="export").empty  # nothing made or recorded before the click


def test_one_snapshot_per_run_even_when_the_live_pointer_moves_mid_run(tmp_path, monkeypatch, snapshot_file):
    """app.py checks the snapshot (demo mode: synthetic only); the page must show that same snapshot, not
    whatever the pointer names a moment later (a real one, here)."""
    from data import synth
    from data.build import build_snapshot
    from ui import components

    real = tmp_path / "real.duckdb"
    build_snapshot(synth.generate(12, seed=4), source="csv", out=real, data_cutoff=synth.P["data_cutoff"])
    calls = []

    def flipping():
        calls.append(1)
        return snapshot_file if len(calls) <= 2 else real  # the frame's two looks, then an import lands

    monkeypatch.setattr(components, "snapshot_path", flipping)
    at = run_page("pages/home.py")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe[0].value) == 82  # the synthetic snapshot the frame checked, not the real one


def test_demo_mode_holding_a_real_snapshot_shows_no_patient_and_offers_only_the_way_back(tmp_path, monkeypatch,
                                                                                          snapshot_file):
    import shutil

    from data import synth
    from data.build import build_snapshot
    from data.store import publish

    folder = tmp_path / "snapshots"
    folder.mkdir()
    shutil.copy(snapshot_file, folder / "synthetic-first.duckdb")
    build_snapshot(synth.generate(12, seed=4), source="csv", out=folder / "csv-real.duckdb",
                   data_cutoff=synth.P["data_cutoff"])
    shutil.copy(folder / "csv-real.duckdb", folder / "csv-older.duckdb")
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(folder))
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    publish(folder / "csv-real.duckdb")
    for page in ("pages/patient.py", "pages/data.py", "pages/audit.py", "pages/home.py"):
        at = run_page(page, patient="STH-0001")
        assert not at.exception, [e.value for e in at.exception]
        assert any("holds real patient data" in e.value for e in at.error)
        assert not at.get("plotly_chart") and not any("STH-" in str(d.value.to_csv()) for d in at.dataframe)
        assert at.selectbox(key="rollback_target").options == ["synthetic-first"]  # not the other real one
