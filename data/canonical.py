"""The canonical tables every source is mapped to: columns, types, code lists, ranges and keys.

One source of truth for what a valid row is. The importers' validation (data/validate.py), the CSV
bundle templates and the README's format description are all made from it; data/sql/schema.sql
repeats the essential constraints as the database's last line of defence, and a test checks that
the two agree column by column.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "text", "int", "float", "date" or "bool"
    required: bool = False
    codes: tuple[str, ...] | None = None
    low: float | None = None  # inclusive unless low_open
    high: float | None = None
    low_open: bool = False
    description: str = ""
    default: object = None  # what an empty cell means, when it means something


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # no two rows may share these values
    #: (earlier, later): within a row, `later` may not be before `earlier` (both dates, either may be empty)
    order: tuple[tuple[str, str], ...] = ()
    #: (columns here, table, columns there): every non-empty combination must exist there
    references: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


from data.clinical import RESPONSE_CODES as RESPONSES  # noqa: E402

EVENTS = ("progression", "restart", "death", "withdrawal", "last_contact")
PATIENT = Column("patient_id", "text", True, description="trial patient identifier")
PATIENT_REF = ((("patient_id",), "patients", ("patient_id",)),)

TABLES: dict[str, Table] = {t.name: t for t in (
    Table("patients", "one row per enrolled patient", (
        PATIENT,
        Column("site", "text", description="enrolling site"),
        Column("cohort", "int", True, codes=("1", "2"), description="1 = continues anti-HER2 therapy, 2 = stops"),
        Column("enrolled_on", "date", True, description="date of enrolment"),
        Column("age_at_enrolment", "int", low=0, high=120, description="years"),
        Column("sex", "text", codes=("F", "M", "other")),
        Column("er_status", "text", codes=("positive", "negative")),
        Column("pr_status", "text", codes=("positive", "negative")),
        Column("her2_ihc", "text", codes=("0", "1+", "2+", "3+"), description="HER2 immunohistochemistry score"),
        Column("her2_ish_amplified", "bool", description="HER2 in-situ hybridisation amplified"),
        Column("de_novo", "bool", description="metastatic at first diagnosis"),
        Column("metastatic_on", "date", description="date metastatic disease was diagnosed"),
        Column("first_line_start", "date", description="start of first-line anti-HER2 therapy"),
        Column("first_line_regimen", "text"),
        Column("best_response", "text", codes=RESPONSES, description="best RECIST response to first line"),
        Column("visceral", "bool", description="visceral metastases"),
        Column("brain_mets_history", "bool", description="brain metastases ever"),
        Column("n_metastatic_sites", "int", low=0, high=30),
        Column("pik3ca", "text", description="PIK3CA status, free text (e.g. mutated, wild-type)"),
        Column("ecog", "int", low=0, high=4, description="ECOG performance status"),
    ), key=("patient_id",), order=(("metastatic_on", "first_line_start"), ("first_line_start", "enrolled_on"))),
    Table("treatments", "systemic therapy, one row per agent and period", (
        PATIENT,
        Column("agent", "text", True, description="e.g. trastuzumab, pertuzumab, T-DM1"),
        Column("agent_class", "text", True, codes=("anti-HER2", "chemotherapy", "endocrine", "other")),
        Column("started_on", "date", True),
        Column("stopped_on", "date", description="empty while ongoing"),
        Column("stop_reason", "text"),
    ), order=(("started_on", "stopped_on"),), references=PATIENT_REF),
    Table("ctdna_draws", "one row per ctDNA result", (
        PATIENT,
        Column("drawn_on", "date", True),
        Column("assay", "text", True),
        Column("value", "float", low=0, description="in `unit`; empty when not measurable"),
        Column("unit", "text", description="e.g. MTM/mL"),
        Column("lod", "float", low=0, low_open=True, description="the assay's limit of detection, in `unit`"),
        Column("detected", "bool"),
        Column("qc", "text", True, codes=("pass", "QNS", "failed"), description="QNS = quantity not sufficient"),
    ), key=("patient_id", "drawn_on", "assay"), references=PATIENT_REF),
    Table("scans", "one row per imaging timepoint", (
        PATIENT,
        Column("scan_id", "text", True, description="unique within the patient"),
        Column("scanned_on", "date", True),
        Column("modality", "text", description="CT, MRI, PET-CT, ..."),
    ), key=("patient_id", "scan_id"), references=PATIENT_REF),
    Table("lesion_measurements", "one row per lesion per scan (RECIST 1.1 responses are derived from these)", (
        PATIENT,
        Column("scan_id", "text", True),
        Column("lesion_id", "text", True, description="the same lesion keeps its id across scans"),
        Column("kind", "text", True, codes=("target", "non_target", "new")),
        Column("organ", "text"),
        Column("is_node", "bool", default=False, description="a lymph node (short axis is measured); empty = no"),
        Column("diameter_mm", "float", low=0, high=500, description="longest diameter (short axis for nodes)"),
        Column("status", "text", codes=("present", "absent", "unequivocal_progression", "equivocal"),
               description="for non-target and new lesions"),
    ), key=("patient_id", "scan_id", "lesion_id"),
        references=((("patient_id", "scan_id"), "scans", ("patient_id", "scan_id")),)),
    Table("pro_responses", "one row per questionnaire item answered", (
        PATIENT,
        Column("completed_on", "date", True),
        Column("instrument", "text", True, description="e.g. EORTC QLQ-C30"),
        Column("item", "text", True, description="item number or code as in the instrument"),
        Column("response", "float", description="the answer's code (ranges per instrument: data/pro.py); "
                                                "empty when unanswered"),
    ), key=("patient_id", "completed_on", "instrument", "item"), references=PATIENT_REF),
    Table("events", "outcomes and follow-up", (
        PATIENT,
        Column("event", "text", True, codes=EVENTS),
        Column("occurred_on", "date", True),
        Column("detail", "text"),
    ), references=PATIENT_REF),
    Table("first_line_progressions", "progressions during first-line therapy before enrolment", (
        PATIENT,
        Column("progressed_on", "date", True),
        Column("site", "text", codes=("brain_only", "extracranial")),
        Column("n_lesions", "int", low=1, high=100),
        Column("treated_with", "text", codes=("local", "endocrine_change", "systemic")),
        Column("symptomatic", "bool"),
        Column("on_steroids", "bool"),
        Column("on_anticonvulsants", "bool"),
        Column("cns_therapy_on", "date"),
    ), references=PATIENT_REF),
)}

#: Table -> column names, in load order (patients first: the others refer to it).
CANONICAL: dict[str, list[str]] = {name: t.column_names for name, t in TABLES.items()}

