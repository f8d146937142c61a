"""Build a real DuckDB snapshot and check the contract views, their invariants and the safety rules."""
import hashlib

import duckdb
import numpy as np
import pandas as pd
import pytest

from data import queries
from data.build import CONTRACT, BuildError, build_snapshot, build_synthetic
from data.store import Snapshot, connect_read_only

RESPONSES = {"CR", "PR", "SD", "PD", "NE", "NON-CR/NON-PD"}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("view", sorted(CONTRACT))
def test_every_contract_view_has_its_columns(snapshot, view):
    cols = snapshot.query("SELECT * FROM " + view + " LIMIT 0").columns
    assert set(CONTRACT[view]) <= set(cols)


def test_cohort_sizes(snapshot):
    s = snapshot.query("SELECT cohort, count(*) AS n FROM patient_summary GROUP BY cohort ORDER BY cohort")
    assert s["n"].tolist() == [30, 52]
    assert snapshot.query("SELECT count(*) AS n FROM outcomes")["n"][0] == 82


def test_response_codes_are_valid(snapshot):
    h = snapshot.query("SELECT * FROM scan_history")
    for col in ("target_response", "non_target_response", "overall_response"):
        # NED (no disease at baseline, nothing new) is an overall response only: no lesion has it
        assert set(h[col].dropna()) <= (RESPONSES | {"NED"} if col == "overall_response" else RESPONSES)
    no_disease = h[(h["n_target_lesions"] == 0) & h["non_target_response"].isna() & ~h["is_baseline"]
                   & ~h["new_lesion"].fillna(False).astype(bool)]
    assert len(no_disease) and (no_disease["overall_response"] == "NED").all()
    assert h.loc[h["is_baseline"], "overall_response"].isna().all()
    assert h.loc[~h["is_baseline"], "overall_response"].notna().all()
    assert h.groupby("patient_id")["is_baseline"].sum().eq(1).all()


def test_sld_equals_the_sum_of_target_diameters(snapshot):
    check = snapshot.query("""
        SELECT h.patient_id, h.scan_id, h.sld_mm, sum(l.diameter_mm) AS summed, count(l.diameter_mm) AS measured,
               count(*) AS n
        FROM scan_history h JOIN lesion_measurements l USING (patient_id, scan_id)
        WHERE l.kind = 'target' GROUP BY ALL""")
    assert len(check) > 50
    complete = check[check["measured"] == check["n"]]
    np.testing.assert_allclose(complete["sld_mm"], complete["summed"])
    assert check.loc[check["measured"] < check["n"], "sld_mm"].isna().all()


def test_progression_events_match_the_first_recist_pd(snapshot):
    m = snapshot.query("""
        SELECT o.patient_id, o.progressed_on, min(h.scanned_on) FILTER (WHERE h.overall_response = 'PD') AS first_pd
        FROM outcomes o LEFT JOIN scan_history h USING (patient_id) GROUP BY ALL""")
    assert m["progressed_on"].notna().sum() >= 5
    pd.testing.assert_series_equal(pd.to_datetime(m["progressed_on"]), pd.to_datetime(m["first_pd"]),
                                   check_names=False)


def test_outcomes_are_consistent(snapshot):
    o = snapshot.query("SELECT * FROM outcomes")
    assert (o["pfs_months"] >= 0).all() and (o["os_months"] >= o["pfs_months"] - 1e-9).all()
    assert (o["pfs_event"] == (o["progressed"] | o["died"])).all()
    assert (o.loc[o["progressed"], "pfs_months"].round(6) ==
            ((pd.to_datetime(o.loc[o["progressed"], "progressed_on"]) - pd.to_datetime(o.loc[o["progressed"], "index_date"])).dt.days
             / 30.4375).round(6)).all()


def test_index_date_is_the_stop_date_in_cohort_2_and_enrolment_in_cohort_1(snapshot):
    s = snapshot.query("""SELECT s.cohort, s.index_date, s.stopped_on, p.enrolled_on
                          FROM patient_summary s JOIN patients p USING (patient_id)""")
    c2, c1 = s[s["cohort"] == 2], s[s["cohort"] == 1]
    assert (c2["index_date"] == c2["stopped_on"]).all() and (c2["index_date"] >= c2["enrolled_on"]).all()
    assert (c1["index_date"] == c1["enrolled_on"]).all() and c1["stopped_on"].isna().all()


def test_ctdna_series_days_from_index(snapshot):
    c = snapshot.query("""SELECT c.*, o.index_date FROM ctdna_series c JOIN outcomes o USING (patient_id)""")
    days = (pd.to_datetime(c["drawn_on"]) - pd.to_datetime(c["index_date"])).dt.days
    assert (days == c["days_from_index"]).all()
    assert c.groupby("patient_id")["days_from_index"].min().eq(0).all()


def test_pro_scores_change_from_baseline_and_meaningful_change(snapshot):
    p = snapshot.query("SELECT * FROM pro_scores WHERE instrument = 'QLQ-C30'")
    assert set(p["scale"]) == {"QL2", "PF2", "RF2", "EF", "CF", "SF", "FA", "NV", "PA", "DY", "SL", "AP", "CO", "DI", "FI"}
    assert p["score"].dropna().between(0, 100).all()
    has = p.dropna(subset=["change_from_baseline"])
    np.testing.assert_allclose(has["change_from_baseline"], has["score"] - has["baseline_score"])
    big = has[has["change_from_baseline"].abs() >= 10]
    worse = big["higher_is_better"] != (big["change_from_baseline"] > 0)
    assert (big.loc[worse, "meaningful_change"] == "worsened").all()
    assert (big.loc[~worse, "meaningful_change"] == "improved").all()
    assert (has.loc[has["change_from_baseline"].abs() < 10, "meaningful_change"] == "none").all()


def test_timeline_has_every_track_and_the_index_is_day_zero(snapshot):
    t = snapshot.query("SELECT * FROM patient_timeline")
    assert {"anti-HER2", "other therapy", "scan", "ctDNA", "PRO", "event"} <= set(t["track"])
    assert (t.loc[t["track"] == "event", "label"].isin(["progression", "restart", "death", "withdrawal",
                                                        "last_contact"])).all()


def test_alerts_are_explained_sentences(snapshot):
    s = snapshot.query("SELECT patient_id, alerts FROM patient_summary")
    alerts = [a for row in s["alerts"] for a in row]
    assert alerts and all(isinstance(a, str) and len(a) > 15 for a in alerts)
    assert any(a.startswith("ctDNA") for a in alerts)


def test_a_progression_is_the_first_alert_and_says_whether_it_was_acted_on(snapshot):
    s = snapshot.query("SELECT s.patient_id, s.cohort, s.died, s.progressed, s.alerts, s.alert_kinds, s.ctdna_alerts, "
                       "s.on_anti_her2 FROM patient_summary s")
    progressed = s[s["progressed"]]
    assert len(progressed) and progressed["alerts"].map(lambda a: a[0].startswith("progression on ")).all()
    waiting = progressed[progressed["alert_kinds"].map(lambda k: k[0] == "progression not acted on")]
    assert len(waiting), "the synthetic cohort should have a progression nobody acted on yet"
    assert waiting["alerts"].map(lambda a: a[0].endswith("anti-HER2 therapy not restarted")).all()
    assert (waiting["cohort"] == 2).all() and not waiting["died"].any() and not waiting["on_anti_her2"].any()
    from data.clinical import ALERT_SEVERITY  # the SQL names each kind; the worklist ranks them by this list

    assert {k for kinds in s["alert_kinds"] for k in kinds} <= set(ALERT_SEVERITY)
    acted = progressed[progressed["alert_kinds"].map(lambda k: k[0] == "progression acted on")]
    # once a progression is on record and acted on, ctDNA alerts would only repeat what is known
    assert acted[~acted["died"]]["ctdna_alerts"].map(len).eq(0).all()


def test_the_sld_alert_says_how_far_and_needs_meaningful_growth(snapshot):
    from data.clinical import NEAR_PD_MIN_MM

    s = snapshot.query("SELECT alerts FROM patient_summary")
    sld = [a for row in s["alerts"] for a in row if a.startswith("SLD +")]
    for alert in sld:
        grown = int(alert.split("(+")[1].split(" mm")[0])
        assert grown >= NEAR_PD_MIN_MM and "mm to go" in alert, alert


def test_synthetic_truth_is_stored_for_model_checks_but_not_in_patient_views(snapshot):
    assert snapshot.query("SELECT count(*) AS n FROM synthetic_truth")["n"][0] == 82
    for view in CONTRACT:
        cols = snapshot.query("SELECT * FROM " + view + " LIMIT 0").columns
        assert not any(c.startswith("p_progression_free") or c == "latent_progression_on" for c in cols)


def test_snapshot_is_opened_read_only_with_extension_autoload_off(snapshot_file):
    con = connect_read_only(snapshot_file)
    try:
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM patients")
        settings = dict(con.execute("SELECT name, value FROM duckdb_settings() WHERE name IN "
                                    "('autoinstall_known_extensions', 'autoload_known_extensions')").fetchall())
        assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    finally:
        con.close()


def test_unknown_or_hostile_patient_ids_are_not_found(snapshot):
    for bad in ["STH-9999", "", "' OR 1=1 --", "<script>alert(1)</script>", "x" * 500, None]:
        with pytest.raises(queries.UnknownPatient):
            queries.patient_record(snapshot, bad)
    assert snapshot.query("SELECT count(*) AS n FROM patients")["n"][0] == 82


def test_patient_record_and_since_digest(snapshot, situations):
    rec = queries.patient_record(snapshot, situations["progressed"])
    assert rec.summary["patient_id"] == situations["progressed"]
    since = queries.previous_visit(rec.timeline)
    digest = queries.since(rec.timeline, since)
    assert (pd.to_datetime(digest["starts_on"]) > pd.Timestamp(since)).all()
    everything = queries.since(rec.timeline, "1900-01-01")
    assert len(everything) >= len(rec.scans) + len(rec.ctdna)


def test_failed_build_leaves_the_live_snapshot_byte_for_byte(tmp_path):
    live = tmp_path / "current.duckdb"
    build_synthetic(20, seed=3, out=live)
    before = sha256(live)
    from data import synth

    tables = synth.generate(20, seed=4)
    tables["scans"] = tables["scans"].drop(columns="scanned_on")
    with pytest.raises(BuildError, match="scans.*scanned_on"):
        build_snapshot(tables, source="synthetic", out=live)
    tables = synth.generate(20, seed=4)
    tables["ctdna_draws"]["patient_id"] = tables["ctdna_draws"]["patient_id"].astype(str)
    tables["ctdna_draws"].loc[0, "patient_id"] = "NOBODY"
    with pytest.raises(BuildError, match="NOBODY"):
        build_snapshot(tables, source="synthetic", out=live)
    tables = synth.generate(20, seed=4)
    tables["ctdna_draws"].loc[0, "value"] = -1.0  # refused by the schema's check, mid-build
    with pytest.raises(BuildError, match="ctdna_draws.*value"):
        build_snapshot(tables, source="synthetic", out=live)
    assert sha256(live) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.duckdb"]  # no temporary file left


def test_a_reader_keeps_working_while_a_new_snapshot_is_swapped_in(tmp_path, monkeypatch):
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(tmp_path))
    from data.store import SnapshotMissing, snapshot_path

    with pytest.raises(SnapshotMissing, match="python -m data build"):
        snapshot_path()
    build_synthetic(20, seed=3)
    reader = Snapshot(snapshot_path())
    build_synthetic(30, seed=5)  # a writer is never blocked by the open reader
    assert reader.query("SELECT count(*) AS n FROM patients")["n"][0] == 20  # the old file, intact
    fresh = Snapshot(snapshot_path())
    assert fresh.key != reader.key and fresh.query("SELECT count(*) AS n FROM patients")["n"][0] == 30
    reader.close()
    fresh.close()


def test_old_snapshots_are_pruned_but_the_live_one_is_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(tmp_path))
    from data.store import snapshot_path

    for seed in range(7):
        build_synthetic(5, seed=seed)
    assert len(list(tmp_path.glob("*.duckdb"))) == 5
    assert snapshot_path().exists()


def test_eligibility_view_has_every_criterion_for_every_patient(snapshot):
    e = snapshot.query("SELECT * FROM eligibility")
    from data.eligibility import CRITERIA

    assert e.groupby("patient_id").size().eq(len(CRITERIA)).all() and e["patient_id"].nunique() == 82
    gone = snapshot.query("SELECT patient_id FROM outcomes WHERE withdrew_on IS NOT NULL OR died")["patient_id"]
    follow = e[e["criterion"] == "in_follow_up"].set_index("patient_id")["met"]
    assert len(gone) and not follow[gone].any() and follow.drop(gone).all()
    stopped = snapshot.query("SELECT patient_id FROM patient_summary WHERE cohort = 2")["patient_id"]
    rule = e[(e["criterion"] == "not_stopped_or_progressed") & e["patient_id"].isin(stopped)]
    assert (rule["met"] == False).all()  # noqa: E712
    allowed = e[(e["criterion"] == "first_line_3y") & e["detail"].str.contains("allowed")
                & ~e["detail"].str.contains("RECIST progression")]
    assert len(allowed) >= 1 and (allowed["met"] == True).all()  # noqa: E712 (the exceptions in the cohort)


def test_the_canonical_spec_and_the_database_schema_agree_column_by_column():
    """data/canonical.py drives validation; schema.sql is the last line of defence: they must not drift."""
    import duckdb

    from data.build import schema_sql
    from data.canonical import TABLES

    con = duckdb.connect()
    con.execute(schema_sql())
    sql_types = {"text": "VARCHAR", "int": "INTEGER", "float": "DOUBLE", "date": "DATE", "bool": "BOOLEAN"}
    for name, table in TABLES.items():
        rows = con.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                           "WHERE table_name = ? ORDER BY ordinal_position", [name]).fetchall()
        assert [r[0] for r in rows] == table.column_names, name
        for (column, data_type, nullable), spec in zip(rows, table.columns, strict=True):
            assert data_type == sql_types[spec.type], f"{name}.{column}"
            if nullable == "NO" and column != "is_node":  # is_node has a default: empty means false
                assert spec.required, f"{name}.{column} is NOT NULL in the schema but optional in the spec"


def test_stored_views_equal_their_definitions_and_one_patient_reads_few_rows(tmp_path):
    """The build stores the per-patient views in patient order; their rows must equal views.sql's."""
    from data import synth
    from data.build import MATERIALIZED

    tables = synth.generate(120, 11)
    stored, computed = tmp_path / "stored.duckdb", tmp_path / "computed.duckdb"
    build_snapshot(tables, source="synthetic", out=stored, data_cutoff=synth.P["data_cutoff"])
    build_snapshot(tables, source="synthetic", out=computed, data_cutoff=synth.P["data_cutoff"], materialize=False)
    a, b = Snapshot(stored), Snapshot(computed)
    for view in [*MATERIALIZED, *CONTRACT]:
        left, right = (s.query("SELECT * FROM " + view + " ORDER BY ALL") for s in (a, b))
        assert len(left) > 0, view
        pd.testing.assert_frame_equal(left, right, obj=view)
    assert a.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'patient_summary_rows'")[
        "n"][0] == 1
    assert b.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name LIKE '%_rows'")["n"][0] == 0
    # rows stored in patient order: the summary's patient ids come out sorted without being asked
    ids = a.query("SELECT patient_id FROM patient_summary_rows")["patient_id"]
    assert ids.is_monotonic_increasing


def _parts(tables: dict, n_parts: int) -> list[dict]:
    """The same cohort cut into parts by patient (every row of a patient in one part)."""
    ids = tables["patients"]["patient_id"].astype(str).to_numpy()
    cuts = [set(chunk) for chunk in np.array_split(ids, n_parts)]
    return [{name: frame if "patient_id" not in frame.columns
             else frame[frame["patient_id"].astype(str).isin(cut)].reset_index(drop=True)
             for name, frame in tables.items()} for cut in cuts]


def _contract_rows(path) -> dict[str, pd.DataFrame]:
    from data.build import MATERIALIZED

    snap = Snapshot(path)
    return {view: snap.query("SELECT * FROM " + view + " ORDER BY ALL") for view in [*MATERIALIZED, *CONTRACT]}


def test_a_cohort_built_in_parts_is_the_cohort_built_whole(tmp_path):
    """Registry size is written part by part (memory of one part); the snapshot must not depend on the cut."""
    from data import synth

    tables = synth.generate(90, 12)
    whole, parted = tmp_path / "whole.duckdb", tmp_path / "parts.duckdb"
    build_snapshot(tables, source="synthetic", out=whole)  # cut-off: the latest date, taken across parts too
    build_snapshot(iter(_parts(tables, 4)), source="synthetic", out=parted)
    left, right = _contract_rows(whole), _contract_rows(parted)
    for view in left:
        assert len(left[view]) > 0, view
        pd.testing.assert_frame_equal(left[view], right[view], obj=view)
    for check in ("SELECT data_cutoff, n_patients FROM snapshot_info", "SELECT * FROM synthetic_parameters ORDER BY ALL",
                  "SELECT * FROM synthetic_truth ORDER BY ALL", "SELECT * FROM recist_assessments ORDER BY ALL"):
        pd.testing.assert_frame_equal(Snapshot(whole).query(check), Snapshot(parted).query(check), obj=check)


def test_a_synthetic_build_of_one_part_is_todays_cohort_and_larger_ones_are_numbered_across_parts(tmp_path):
    from data import synth
    from data.build import build_synthetic

    build_synthetic(82, seed=20230419, out=tmp_path / "parts.duckdb")
    build_snapshot(synth.generate(82, 20230419), source="synthetic", out=tmp_path / "whole.duckdb",
                   data_cutoff=synth.P["data_cutoff"])
    left, right = _contract_rows(tmp_path / "parts.duckdb"), _contract_rows(tmp_path / "whole.duckdb")
    for view in left:
        pd.testing.assert_frame_equal(left[view], right[view], obj=view)
    parts = list(synth.generate_parts(7, seed=3, part_size=3))  # 3 + 3 + 1: the last part of one patient
    ids = [i for p in parts for i in p["patients"]["patient_id"]]
    assert ids == [f"STH-{i:04d}" for i in range(1, 8)]
    assert [len(p["patients"]) for p in parts] == [3, 3, 1]
    assert {str(i) for i in parts[2]["pro_responses"]["patient_id"]} <= {"STH-0007"}
    assert parts[1]["patients"]["age_at_enrolment"].tolist() != parts[0]["patients"]["age_at_enrolment"].tolist()


def test_a_patient_repeated_in_another_part_or_a_row_without_patient_is_refused(tmp_path):
    from data import synth

    parts = _parts(synth.generate(20, 5), 2)
    parts[1]["patients"] = pd.concat([parts[1]["patients"], parts[0]["patients"].iloc[[0]]], ignore_index=True)
    with pytest.raises(BuildError, match="patients.*STH-0001"):
        build_snapshot(iter(parts), source="synthetic", out=tmp_path / "dup.duckdb")
    parts = _parts(synth.generate(20, 5), 2)
    parts[1]["patients"] = parts[1]["patients"].iloc[1:]
    with pytest.raises(BuildError, match="is not in patients"):
        build_snapshot(iter(parts), source="synthetic", out=tmp_path / "orphan.duckdb")
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_parts_made_one_ahead_in_a_thread_build_the_same_snapshot_and_a_failure_stops_the_thread(tmp_path):
    """The synthetic build generates the next part while this one is written; the snapshot must not
    change, and a part that fails to generate (or to write) must stop the thread and leave nothing."""
    import threading

    from data import synth
    from data.build import _one_ahead

    tables = synth.generate(40, 8)
    build_snapshot(iter(_parts(tables, 4)), source="synthetic", out=tmp_path / "plain.duckdb")
    build_snapshot(_one_ahead(iter(_parts(tables, 4))), source="synthetic", out=tmp_path / "ahead.duckdb")
    left, right = _contract_rows(tmp_path / "plain.duckdb"), _contract_rows(tmp_path / "ahead.duckdb")
    for view in left:
        pd.testing.assert_frame_equal(left[view], right[view], obj=view)

    made = []

    def failing():
        for k, part in enumerate(_parts(tables, 4)):
            if k == 2:
                raise RuntimeError("the third part could not be made")
            made.append(k)
            yield part

    with pytest.raises(RuntimeError, match="third part"):
        build_snapshot(_one_ahead(failing()), source="synthetic", out=tmp_path / "failed.duckdb")
    bad = _parts(tables, 4)
    bad[1]["scans"] = bad[1]["scans"].drop(columns=["modality"])  # refused while the thread makes the next
    with pytest.raises(BuildError, match="lacks column"):
        build_snapshot(_one_ahead(iter(bad)), source="synthetic", out=tmp_path / "refused.duckdb")
    assert made == [0, 1]
    assert not [t for t in threading.enumerate() if t.name == "next synthetic part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ahead.duckdb", "plain.duckdb"]


def test_a_synthetic_build_in_parts_reports_progress_that_only_moves_forward(tmp_path):
    """The first start and `python -m data build` draw one bar: generating part k must not send it back to
    the start while part k-1 is being written."""
    seen = []
    build_synthetic(2100, seed=4, out=tmp_path / "p.duckdb", progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions), seen
    assert sum("writing part" in m for _, m in seen) == 2  # parts 2 and 3 of 1,000 + 1,000 + 100
