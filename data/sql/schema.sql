-- Canonical tables: what every source (synthetic, CSV bundle, SDTM, FHIR) is mapped to.
-- Checks here are the last line of defence; importers validate every row with a readable report first.

CREATE TABLE patients (
    patient_id          VARCHAR PRIMARY KEY,
    site                VARCHAR,
    cohort              INTEGER NOT NULL CHECK (cohort IN (1, 2)),
    enrolled_on         DATE NOT NULL,
    age_at_enrolment    INTEGER CHECK (age_at_enrolment BETWEEN 0 AND 120),
    sex                 VARCHAR CHECK (sex IN ('F', 'M', 'other')),
    er_status           VARCHAR CHECK (er_status IN ('positive', 'negative')),
    pr_status           VARCHAR CHECK (pr_status IN ('positive', 'negative')),
    her2_ihc            VARCHAR CHECK (her2_ihc IN ('0', '1+', '2+', '3+')),
    her2_ish_amplified  BOOLEAN,
    de_novo             BOOLEAN,
    metastatic_on       DATE,
    first_line_start    DATE,
    first_line_regimen  VARCHAR,
    best_response       VARCHAR CHECK (best_response IN ({response_codes})),
    visceral            BOOLEAN,
    brain_mets_history  BOOLEAN,
    n_metastatic_sites  INTEGER CHECK (n_metastatic_sites >= 0),
    pik3ca              VARCHAR,
    ecog                INTEGER CHECK (ecog BETWEEN 0 AND 4)
);

CREATE TABLE treatments (
    patient_id   VARCHAR NOT NULL,
    agent        VARCHAR NOT NULL,
    agent_class  VARCHAR NOT NULL CHECK (agent_class IN ('anti-HER2', 'chemotherapy', 'endocrine', 'other')),
    started_on   DATE NOT NULL,
    stopped_on   DATE CHECK (stopped_on IS NULL OR stopped_on >= started_on),
    stop_reason  VARCHAR
);

CREATE TABLE ctdna_draws (
    patient_id  VARCHAR NOT NULL,
    drawn_on    DATE NOT NULL,
    assay       VARCHAR NOT NULL,
    value       DOUBLE CHECK (value IS NULL OR value >= 0),
    unit        VARCHAR,
    lod         DOUBLE CHECK (lod IS NULL OR lod > 0),
    detected    BOOLEAN,
    qc          VARCHAR NOT NULL CHECK (qc IN ('pass', 'QNS', 'failed'))
);

CREATE TABLE scans (
    patient_id  VARCHAR NOT NULL,
    scan_id     VARCHAR NOT NULL,
    scanned_on  DATE NOT NULL,
    modality    VARCHAR,
    PRIMARY KEY (patient_id, scan_id)
);

CREATE TABLE lesion_measurements (
    patient_id   VARCHAR NOT NULL,
    scan_id      VARCHAR NOT NULL,
    lesion_id    VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL CHECK (kind IN ('target', 'non_target', 'new')),
    organ        VARCHAR,
    is_node      BOOLEAN NOT NULL DEFAULT false,
    diameter_mm  DOUBLE CHECK (diameter_mm IS NULL OR diameter_mm >= 0),
    status       VARCHAR CHECK (status IS NULL OR status IN ('present', 'absent', 'unequivocal_progression', 'equivocal'))
);

CREATE TABLE pro_responses (
    patient_id    VARCHAR NOT NULL,
    completed_on  DATE NOT NULL,
    instrument    VARCHAR NOT NULL,
    item          VARCHAR NOT NULL,
    response      DOUBLE
);

CREATE TABLE events (
    patient_id   VARCHAR NOT NULL,
    event        VARCHAR NOT NULL CHECK (event IN ('progression', 'restart', 'death', 'withdrawal', 'last_contact')),
    occurred_on  DATE NOT NULL,
    detail       VARCHAR
);

-- Progressions during first-line therapy before enrolment, with what the eligibility exceptions need.
CREATE TABLE first_line_progressions (
    patient_id          VARCHAR NOT NULL,
    progressed_on       DATE NOT NULL,
    site                VARCHAR CHECK (site IS NULL OR site IN ('brain_only', 'extracranial')),
    n_lesions           INTEGER CHECK (n_lesions IS NULL OR n_lesions >= 1),
    treated_with        VARCHAR CHECK (treated_with IS NULL OR treated_with IN ('local', 'endocrine_change', 'systemic')),
    symptomatic         BOOLEAN,
    on_steroids         BOOLEAN,
    on_anticonvulsants  BOOLEAN,
    cns_therapy_on      DATE
);

-- Derived at build time by the pure Python rules (data/recist.py, data/pro.py) and catalogues.
CREATE TABLE recist_assessments (
    patient_id VARCHAR, scan_id VARCHAR, scanned_on DATE, is_baseline BOOLEAN, n_target_lesions INTEGER,
    sld_mm DOUBLE, baseline_sld_mm DOUBLE, nadir_sld_mm DOUBLE, pd_threshold_mm DOUBLE, pct_from_baseline DOUBLE,
    pct_from_nadir DOUBLE, target_response VARCHAR, non_target_response VARCHAR, new_lesion BOOLEAN,
    overall_response VARCHAR, note VARCHAR
);
CREATE TABLE pro_scale_scores (
    patient_id VARCHAR, completed_on DATE, instrument VARCHAR, scale VARCHAR, score DOUBLE
);
CREATE TABLE pro_catalogue (
    instrument VARCHAR, scale VARCHAR, label VARCHAR, low DOUBLE, high DOUBLE,
    higher_is_better BOOLEAN, meaningful_change DOUBLE, cutoffs VARCHAR, source VARCHAR, alert BOOLEAN,
    PRIMARY KEY (instrument, scale)
);
CREATE TABLE eligibility_results (
    patient_id VARCHAR, criterion VARCHAR, text VARCHAR, met BOOLEAN, detail VARCHAR
);
-- Clinical constants the views need, written from their one Python source of truth.
CREATE TABLE clinical_constants (name VARCHAR PRIMARY KEY, value DOUBLE, source VARCHAR);
-- HER2 (ASCO/CAP 2018) and HR status per patient, classified at build by data/clinical.py (the one definition).
CREATE TABLE patient_classification (patient_id VARCHAR PRIMARY KEY, her2_positive BOOLEAN, her2_ihc3 BOOLEAN,
                                     hr_status VARCHAR);
CREATE TABLE snapshot_info (
    snapshot_id VARCHAR, source VARCHAR, is_synthetic BOOLEAN, created_at TIMESTAMP,
    data_cutoff DATE, seed BIGINT, n_patients BIGINT, builder_version VARCHAR
);
