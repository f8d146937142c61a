"""Who may see what: role resolution, pages, exports, de-identification, ctDNA blinding."""
import pytest

from services import access

CONFIG = {"clinician": ["Dr.A@Site.org"], "tumor_board": ["group:TB", "dr.a@site.org"],
          "researcher": ["group:research"], "admin": ["dm@site.org"]}


def test_roles_come_from_email_or_group_case_insensitively_and_accumulate():
    assert access.roles_for("dr.a@site.org", [], CONFIG) == ("clinician", "tumor_board")
    assert access.roles_for("someone@else.org", ["tb"], CONFIG) == ("tumor_board",)
    assert access.roles_for("x@y.org", ["research", "other"], CONFIG) == ("researcher",)
    assert access.roles_for("nobody@site.org", ["staff"], CONFIG) == ()
    assert access.roles_for(None, None, CONFIG) == ()
    assert access.roles_for("group:research", [], CONFIG) == ()  # an e-mail never matches a group entry


@pytest.mark.parametrize("role,pages", [
    ("clinician", {"", "patient", "model_card"}),
    ("tumor_board", {"", "patient", "tumor_board", "model_card"}),
    ("researcher", {"", "cohorts", "model_card"}),
    ("admin", {"", "data", "audit", "model_card"}),
    (access.DEMO, set(access.PAGES)),
])
def test_each_role_opens_exactly_its_pages(role, pages):
    assert {p for p in access.PAGES if access.may_open([role], p)} == pages
    assert not access.may_open([role], "no_such_page")


def test_exports_and_identification_by_role():
    assert access.may_export(["tumor_board"], "meeting_list") and not access.may_export(["clinician"], "meeting_list")
    assert access.may_export(["admin"], "audit_log") and not access.may_export(["researcher"], "audit_log")
    assert not access.identified(["researcher"]) and access.identified(["researcher", "clinician"])
    assert access.identified(["clinician"]) and access.identified([access.DEMO])


def test_ctdna_is_hidden_only_when_every_role_held_is_blinded():
    assert access.ctdna_hidden(["clinician"], ["clinician", "tumor_board"])
    assert access.ctdna_hidden(["clinician", "tumor_board"], ["clinician", "tumor_board"])
    assert not access.ctdna_hidden(["clinician", "researcher"], ["clinician"])
    assert not access.ctdna_hidden(["clinician"], [])
    assert not access.ctdna_hidden([], ["clinician"])


def test_a_refusal_is_a_sentence_naming_the_page_and_who_may_open_it():
    text = access.refusal(["researcher"], "patient")
    assert text.startswith("The Patient review page is not open to your role (researcher).")
    assert "clinician" in text and "tumour board" in text and "demo" not in text


def _viewer(roles, blinded=("clinician",), key=b"k" * 32):
    return access.Viewer(access.Person("x@y.org", "x", tuple(roles)), tuple(blinded), key)


def test_the_viewer_removes_every_ctdna_column_alert_and_count_for_a_blinded_person():
    import pandas as pd

    patients = pd.DataFrame({"patient_id": ["A", "B"], "n_alerts": [3, 1], "n_ctdna_alerts": [2, 0],
                             "last_ctdna_detected": [True, False], "status": ["in follow-up"] * 2})
    blinded, open_ = _viewer(["clinician"]), _viewer(["researcher"])
    seen = blinded.patients(patients)
    assert seen["n_alerts"].tolist() == [1, 1] and not {"last_ctdna_detected", "n_ctdna_alerts"} & set(seen.columns)
    assert open_.patients(patients)["n_alerts"].tolist() == [3, 1]
    table = pd.DataFrame({"patient_id": ["A"], "probability": [0.8], "chance": [80.0], "interval": ["70-90%"],
                          "last ctDNA": ["detected"], "last_ctdna_on": [None], "no estimate because": [""]})
    shown = blinded.candidates(table)
    assert list(shown.columns) == ["patient_id", "no estimate because"] and shown.iloc[0, 1] == "ctDNA blinded"
    files = {"patients.csv": b"x", "ctdna_draws.csv": b"y"}
    assert blinded.bundle_files(files) == {"patients.csv": b"x"} and open_.bundle_files(files) == files


def test_the_viewer_blinds_a_patient_record():
    import pandas as pd

    from data.queries import PatientRecord

    summary = pd.Series({"alerts": ["ctDNA turned positive on 2026-01-01", "SLD +12%"],
                         "ctdna_alerts": ["ctDNA turned positive on 2026-01-01"], "last_ctdna_detected": True,
                         "last_ctdna_on": "2026-01-01"})
    timeline = pd.DataFrame({"track": ["ctDNA", "scan"], "label": ["detected", "SD"]})
    rec = PatientRecord(summary, pd.Series(dtype=object), timeline, pd.DataFrame({"value": [5.7]}),
                        pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    blind = _viewer(["clinician"]).record(rec)
    assert blind.summary["alerts"] == ["SLD +12%"] and blind.summary["last_ctdna_detected"] is None
    assert blind.ctdna.empty and blind.timeline["track"].tolist() == ["scan"]
    assert _viewer(["researcher"]).record(rec) is rec


def test_researchers_get_pseudonyms_from_the_secret_key_only():
    viewer = _viewer(["researcher"], key=None)
    with pytest.raises(access.AccessConfigError, match="pseudonym_key"):
        viewer.pseudonymous_ids(["STH-0001"])
    a, b = access.pseudonym("STH-0001", b"a" * 32), access.pseudonym("STH-0001", b"b" * 32)
    assert a != b and a.startswith("R-") and len(a) == 14


def test_a_blinded_person_gets_no_validation_finding_about_ctdna():
    import pandas as pd

    frame = pd.DataFrame({"severity": ["error", "warning"], "file": ["ctdna_draws.csv", "patients.csv"],
                          "row": [3, 4], "column": ["value", "age_at_enrolment"], "value": ["5.7", "130"],
                          "message": ["x", "y"]})
    assert _viewer(["clinician"]).findings(frame)["file"].tolist() == ["patients.csv"]
    assert len(_viewer(["admin"]).findings(frame)) == 2
