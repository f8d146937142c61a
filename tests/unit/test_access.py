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
