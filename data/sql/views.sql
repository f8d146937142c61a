-- The CONTRACT views (architecture.md): researchers and other tools query these directly.
-- Day 0 is the index date: the day anti-HER2 therapy stopped (cohort 2) or enrolment (cohort 1).
-- Months are days / days_per_month, years days / days_per_year (clinical_constants, from data/clinical.py). The snapshot's "as of" date is its data cut-off (snapshot_info).

CREATE MACRO clinical_constant(constant_name) AS
    (SELECT value FROM clinical_constants WHERE name = constant_name);

CREATE MACRO months_between(from_date, to_date) AS
    date_diff('day', from_date, to_date) / clinical_constant('days_per_month');

CREATE MACRO years_between(from_date, to_date) AS
    date_diff('day', from_date, to_date) / clinical_constant('days_per_year');

-- Helper (not in the contract): index date and follow-up per patient.
-- Cohort 2's stop date is the earliest stop of an anti-HER2 agent that was running at enrolment
-- (stopped on or after enrolment minus 30 days); if none is recorded, the index falls back to
-- enrolment and patient_summary raises an alert saying so.
CREATE VIEW patient_index AS
WITH stop AS (
    SELECT t.patient_id, min(t.stopped_on) AS stopped_on
    FROM treatments t JOIN patients p USING (patient_id)
    WHERE t.agent_class = 'anti-HER2' AND t.started_on < p.enrolled_on
      AND t.stopped_on >= p.enrolled_on - INTERVAL 30 DAY
    GROUP BY t.patient_id
)
SELECT p.patient_id, p.cohort,
       CASE WHEN p.cohort = 2 THEN stop.stopped_on END AS stopped_on,
       CAST(coalesce(CASE WHEN p.cohort = 2 THEN stop.stopped_on END, p.enrolled_on) AS DATE) AS index_date,
       (p.cohort = 2 AND stop.stopped_on IS NULL) AS index_is_fallback
FROM patients p LEFT JOIN stop USING (patient_id);

CREATE VIEW outcomes AS
WITH e AS (
    SELECT e.patient_id,
           min(e.occurred_on) FILTER (WHERE e.event = 'progression') AS progressed_on,
           min(e.occurred_on) FILTER (WHERE e.event = 'death') AS died_on,
           min(e.occurred_on) FILTER (WHERE e.event = 'restart') AS restarted_on,
           min(e.occurred_on) FILTER (WHERE e.event = 'withdrawal') AS withdrew_on,
           max(e.occurred_on) FILTER (WHERE e.event IN ('last_contact', 'withdrawal', 'death')) AS last_followup_on
    FROM events e JOIN patient_index i USING (patient_id)
    WHERE e.occurred_on >= i.index_date
    GROUP BY e.patient_id
)
SELECT i.patient_id, i.cohort, i.index_date,
       months_between(i.index_date, coalesce(least(e.progressed_on, e.died_on), e.last_followup_on,
                                             (SELECT data_cutoff FROM snapshot_info))) AS pfs_months,
       e.progressed_on IS NOT NULL AS progressed,
       (e.progressed_on IS NOT NULL OR e.died_on IS NOT NULL) AS pfs_event,
       e.progressed_on, e.died_on, e.restarted_on, e.withdrew_on,
       coalesce(e.last_followup_on, (SELECT data_cutoff FROM snapshot_info)) AS last_followup_on,
       months_between(i.index_date, coalesce(e.died_on, e.last_followup_on,
                                             (SELECT data_cutoff FROM snapshot_info))) AS os_months,
       e.died_on IS NOT NULL AS died
FROM patient_index i LEFT JOIN e USING (patient_id);

CREATE VIEW ctdna_series AS
SELECT d.patient_id, d.drawn_on, date_diff('day', i.index_date, d.drawn_on) AS days_from_index,
       d.assay, d.value, d.unit, d.lod, d.detected, d.qc,
       -- a value relative to the assay's detection limit compares across assays of one patient
       CASE WHEN d.detected THEN d.value / d.lod END AS fold_over_lod
FROM ctdna_draws d JOIN patient_index i USING (patient_id);

CREATE VIEW scan_history AS
SELECT r.patient_id, r.scan_id, r.scanned_on, date_diff('day', i.index_date, r.scanned_on) AS days_from_index,
       s.modality, r.is_baseline, r.n_target_lesions, r.sld_mm, r.baseline_sld_mm, r.nadir_sld_mm, r.pd_threshold_mm,
       r.pct_from_baseline, r.pct_from_nadir, r.target_response, r.non_target_response, r.new_lesion,
       r.overall_response, r.note
FROM recist_assessments r
JOIN scans s USING (patient_id, scan_id)
JOIN patient_index i USING (patient_id);

-- Baseline = the last non-missing score in the window around the index date (pro.BASELINE_WINDOW).
CREATE VIEW pro_scores AS
WITH scored AS (
    SELECT s.*, date_diff('day', i.index_date, s.completed_on) AS days_from_index
    FROM pro_scale_scores s JOIN patient_index i USING (patient_id)
), baseline AS (
    SELECT patient_id, instrument, scale, arg_max(score, completed_on) AS baseline_score
    FROM scored
    WHERE score IS NOT NULL
      AND days_from_index BETWEEN clinical_constant('pro_baseline_days_before') * -1
                              AND clinical_constant('pro_baseline_days_after')
    GROUP BY ALL
)
SELECT s.patient_id, s.completed_on, s.days_from_index, s.instrument, s.scale, c.label, s.score,
       c.higher_is_better, b.baseline_score, s.score - b.baseline_score AS change_from_baseline,
       CASE WHEN c.meaningful_change IS NULL OR b.baseline_score IS NULL OR s.score IS NULL THEN NULL
            WHEN abs(s.score - b.baseline_score) < c.meaningful_change THEN 'none'
            WHEN (s.score > b.baseline_score) = c.higher_is_better THEN 'improved'
            ELSE 'worsened' END AS meaningful_change,
       c.meaningful_change AS meaningful_change_points
FROM scored s
JOIN pro_catalogue c USING (instrument, scale)
LEFT JOIN baseline b USING (patient_id, instrument, scale);

CREATE VIEW patient_timeline AS
WITH i AS (SELECT patient_id, index_date FROM patient_index),
tl AS (
    SELECT patient_id, CASE WHEN agent_class = 'anti-HER2' THEN 'anti-HER2' ELSE 'other therapy' END AS track,
           started_on AS starts_on, stopped_on AS ends_on,
           agent || CASE WHEN agent_class <> 'anti-HER2' THEN ' (' || agent_class || ')' ELSE '' END AS label,
           CAST(NULL AS DOUBLE) AS value, stop_reason AS detail
    FROM treatments
    UNION ALL
    SELECT patient_id, 'scan', scanned_on, NULL,
           CASE WHEN is_baseline THEN 'baseline' ELSE overall_response END, sld_mm,
           modality || coalesce('; ' || note, '')
    FROM scan_history
    UNION ALL
    SELECT patient_id, 'ctDNA', drawn_on, NULL,
           CASE WHEN qc <> 'pass' THEN 'QC ' || qc WHEN detected THEN 'detected' ELSE 'not detected' END,
           -- the level as a report gives it: 2 significant figures below 10 (5.7 MTM/mL), whole from 10
           value, assay || coalesce(' ' || CASE WHEN value >= 9.95 THEN CAST(CAST(round(value) AS BIGINT) AS VARCHAR)
                                              WHEN value > 0 THEN CAST(round(value, 1 - CAST(floor(log10(value)) AS INTEGER)) AS VARCHAR)
                                              ELSE CAST(value AS VARCHAR) END || ' ' || unit, '')
    FROM ctdna_draws
    UNION ALL
    SELECT patient_id, 'PRO', completed_on, NULL, string_agg(DISTINCT instrument, ', ' ORDER BY instrument),
           NULL, NULL
    FROM pro_responses GROUP BY patient_id, completed_on
    UNION ALL
    SELECT patient_id, 'event', occurred_on, NULL, event, NULL, detail
    FROM events
)
SELECT tl.patient_id, tl.track, tl.starts_on, tl.ends_on, tl.label, tl.value, tl.detail,
       date_diff('day', i.index_date, tl.starts_on) AS days_from_index,
       date_diff('day', i.index_date, tl.ends_on) AS end_days_from_index
FROM tl JOIN i USING (patient_id);

CREATE VIEW patient_summary AS
-- alerts, most urgent first (data/clinical.ALERT_SEVERITY): progression, ctDNA, SLD near PD, PRO, the rest;
-- alert_kinds names the kind of each, so the worklist orders by severity after ctDNA blinding
SELECT * EXCLUDE (progression_alerts, sld_alerts, pro_alerts, other_alerts, progression_kind),
       list_concat(progression_alerts, ctdna_alerts, sld_alerts, pro_alerts, other_alerts) AS alerts,
       list_concat(CASE WHEN progression_kind IS NULL THEN [] ELSE [progression_kind] END,
                   CASE WHEN len(ctdna_alerts) > 0 THEN ['ctDNA'] ELSE [] END,
                   CASE WHEN len(sld_alerts) > 0 THEN ['SLD near PD'] ELSE [] END,
                   CASE WHEN len(pro_alerts) > 0 THEN ['PRO worsening'] ELSE [] END,
                   CASE WHEN len(other_alerts) > 0 THEN ['other'] ELSE [] END) AS alert_kinds
FROM (
WITH cutoff AS (SELECT data_cutoff AS as_of FROM snapshot_info),
draws AS (
    SELECT patient_id, drawn_on, detected,
           row_number() OVER (PARTITION BY patient_id ORDER BY drawn_on DESC) AS k
    FROM ctdna_draws WHERE qc = 'pass'
), last_draw AS (
    SELECT d1.patient_id, d1.drawn_on AS last_ctdna_on, d1.detected AS last_ctdna_detected,
           d2.detected AS previous_ctdna_detected
    FROM draws d1 LEFT JOIN draws d2 ON d2.patient_id = d1.patient_id AND d2.k = 2
    WHERE d1.k = 1
), any_draw AS (
    SELECT patient_id, arg_max(qc, drawn_on) AS last_draw_qc, max(drawn_on) AS last_draw_on
    FROM ctdna_draws GROUP BY patient_id
), last_scan AS (
    SELECT patient_id, arg_max(scanned_on, scanned_on) AS last_scan_on,
           arg_max(overall_response, scanned_on) AS last_overall_response,
           arg_max(pct_from_nadir, scanned_on) AS last_pct_from_nadir,
           arg_max(sld_mm - nadir_sld_mm, scanned_on) AS last_mm_from_nadir,
           arg_max(sld_mm, scanned_on) AS last_sld_mm, arg_max(pd_threshold_mm, scanned_on) AS last_pd_threshold_mm,
           arg_max(note, scanned_on) AS last_scan_note
    FROM scan_history WHERE NOT is_baseline GROUP BY patient_id
), pro_ranked AS (
    SELECT p.patient_id, p.instrument, p.scale, p.label, p.change_from_baseline, p.meaningful_change,
           row_number() OVER (PARTITION BY p.patient_id, p.instrument, p.scale ORDER BY p.completed_on DESC) AS k
    FROM pro_scores p JOIN pro_catalogue c USING (instrument, scale)
    WHERE c.alert AND p.score IS NOT NULL
), last_pro AS (
    -- sustained: worse by a meaningful amount on the last two questionnaires, not one noisy answer
    SELECT a.patient_id,
           string_agg(a.label || ' ' || CASE WHEN a.change_from_baseline > 0 THEN '+' ELSE '' END
                      || CAST(round(a.change_from_baseline) AS INTEGER), ', ' ORDER BY a.instrument, a.scale) AS worsened
    FROM pro_ranked a JOIN pro_ranked b
      ON b.patient_id = a.patient_id AND b.instrument = a.instrument AND b.scale = a.scale AND b.k = 2
    WHERE a.k = 1 AND a.meaningful_change = 'worsened' AND b.meaningful_change = 'worsened'
    GROUP BY a.patient_id
), anti_her2 AS (
    SELECT t.patient_id, bool_or(t.started_on <= a.as_of AND (t.stopped_on IS NULL OR t.stopped_on > a.as_of))
               AS on_anti_her2
    FROM treatments t, cutoff a WHERE t.agent_class = 'anti-HER2' GROUP BY t.patient_id
), progression AS (
    -- what was done about a progression: a restart event or an anti-HER2 start on or after it
    SELECT o.patient_id, o.progressed_on,
           (SELECT arg_min(e.detail, e.occurred_on) FROM events e
             WHERE e.patient_id = o.patient_id AND e.event = 'progression') AS detail,
           least((SELECT min(e.occurred_on) FROM events e WHERE e.patient_id = o.patient_id AND e.event = 'restart'
                    AND e.occurred_on >= o.progressed_on),
                 (SELECT min(t.started_on) FROM treatments t WHERE t.patient_id = o.patient_id
                    AND t.agent_class = 'anti-HER2' AND t.started_on >= o.progressed_on)) AS acted_on
    FROM outcomes o WHERE o.progressed
)
SELECT p.patient_id, p.cohort, p.site, i.index_date, i.stopped_on,
       months_between(i.index_date, a.as_of) AS months_since_index,
       coalesce(anti_her2.on_anti_her2, false) AS on_anti_her2,
       ls.last_overall_response, ls.last_scan_on,
       ld.last_ctdna_detected, ld.last_ctdna_on,
       o.progressed, o.progressed_on, o.died, o.died_on, o.restarted_on, o.last_followup_on,
       CASE WHEN o.died THEN 'died' WHEN o.progressed THEN 'progressed'
            WHEN o.withdrew_on IS NOT NULL THEN 'withdrew' ELSE 'in follow-up' END AS status,
       p.age_at_enrolment, p.sex, p.er_status, p.pr_status,
       pc.hr_status,
       p.her2_ihc, p.her2_ish_amplified, p.de_novo,
       p.first_line_regimen, p.best_response, p.visceral, p.brain_mets_history, p.n_metastatic_sites,
       years_between(p.first_line_start, i.index_date) AS years_on_first_line,
       CASE WHEN NOT o.progressed THEN NULL
            WHEN p.cohort = 2 AND NOT o.died AND pg.acted_on IS NULL AND NOT coalesce(anti_her2.on_anti_her2, false)
            THEN 'progression not acted on' ELSE 'progression acted on' END AS progression_kind,
       CASE WHEN o.progressed THEN ['progression on ' || strftime(o.progressed_on, '%Y-%m-%d')
            || coalesce(' (' || pg.detail || ')', '')
            || CASE WHEN o.died THEN ''
                    WHEN pg.acted_on IS NOT NULL
                    THEN ': anti-HER2 therapy ' || CASE WHEN p.cohort = 2 THEN 'restarted' ELSE 'started' END
                         || ' on ' || strftime(pg.acted_on, '%Y-%m-%d')
                    WHEN coalesce(anti_her2.on_anti_her2, false) THEN ': on anti-HER2 therapy at the data cut-off'
                    WHEN p.cohort = 2 THEN ': anti-HER2 therapy not restarted'
                    ELSE '' END]
            ELSE [] END AS progression_alerts,
       -- ctDNA alerts are for a patient still off therapy and progression-free: once a progression is on
       -- record and acted on (or the patient died) they would only repeat what is known
       CASE WHEN o.progressed AND (o.died OR pg.acted_on IS NOT NULL OR coalesce(anti_her2.on_anti_her2, false))
            THEN [] ELSE list_filter([
           CASE WHEN ld.last_ctdna_detected AND coalesce(NOT ld.previous_ctdna_detected, true)
                THEN 'ctDNA turned positive on ' || strftime(ld.last_ctdna_on, '%Y-%m-%d') END,
           CASE WHEN ld.last_ctdna_detected AND ld.previous_ctdna_detected
                THEN 'ctDNA detected on the last two draws (latest ' || strftime(ld.last_ctdna_on, '%Y-%m-%d') || ')' END,
           CASE WHEN ad.last_draw_qc <> 'pass'
                THEN 'last ctDNA draw (' || strftime(ad.last_draw_on, '%Y-%m-%d') || ') failed QC: ' || ad.last_draw_qc END
       ], lambda x: x IS NOT NULL) END AS ctdna_alerts,
       list_filter([
           CASE WHEN coalesce(ls.last_overall_response, '') <> 'PD'
                     AND ls.last_pct_from_nadir >= clinical_constant('near_pd_pct_from_nadir')
                     AND ls.last_mm_from_nadir >= clinical_constant('near_pd_min_mm')
                THEN 'SLD +' || CAST(round(ls.last_pct_from_nadir) AS INTEGER) || '% (+'
                     || CAST(round(ls.last_mm_from_nadir) AS INTEGER) || ' mm) from nadir on '
                     || strftime(ls.last_scan_on, '%Y-%m-%d') || ': PD at +'
                     || CAST(clinical_constant('pd_pct_from_nadir') AS INTEGER) || '% and +'
                     || CAST(clinical_constant('pd_min_absolute_mm') AS INTEGER) || ' mm ('
                     || CAST(round(greatest(ls.last_pd_threshold_mm - ls.last_sld_mm, 0)) AS INTEGER)
                     || ' mm to go)' END
       ], lambda x: x IS NOT NULL) AS sld_alerts,
       CASE WHEN lp.worsened IS NOT NULL THEN ['PRO worse than baseline on the last two questionnaires: ' || lp.worsened]
            ELSE [] END AS pro_alerts,
       list_filter([
           CASE WHEN ls.last_overall_response = 'NE' THEN 'last scan not evaluable (a target lesion was not measured)' END,
           CASE WHEN ls.last_scan_note LIKE 'equivocal new lesion: %' THEN 'last scan: ' || ls.last_scan_note END,
           CASE WHEN i.index_is_fallback THEN 'no anti-HER2 stop date recorded: day 0 is enrolment' END
       ], lambda x: x IS NOT NULL) AS other_alerts
FROM patients p
JOIN patient_index i USING (patient_id)
JOIN outcomes o USING (patient_id)
CROSS JOIN cutoff a
LEFT JOIN anti_her2 USING (patient_id)
LEFT JOIN last_scan ls USING (patient_id)
LEFT JOIN last_draw ld USING (patient_id)
LEFT JOIN any_draw ad USING (patient_id)
LEFT JOIN last_pro lp USING (patient_id)
LEFT JOIN patient_classification pc USING (patient_id)
LEFT JOIN progression pg USING (patient_id)
);
-- ctdna_alerts (not in the contract) names the alerts that carry a ctDNA result, so that ctDNA blinding
-- (services/access.py) removes exactly those.

-- Model inputs at a point in time, for two bases:
--   'index': as of day 0 (training, and the estimate at stopping); nothing measured later leaks in;
--   'now':   as of the data cut-off (the "if they stopped now" estimate for a patient still on therapy).
CREATE VIEW model_feature_points AS
SELECT patient_id, index_date AS as_of, 'index' AS basis FROM patient_index
UNION ALL
SELECT patient_id, (SELECT data_cutoff FROM snapshot_info), 'now' FROM patient_index;

CREATE VIEW model_features_all AS
WITH ct AS (
    SELECT f.patient_id, f.basis,
           arg_max(d.detected, d.drawn_on) AS ctdna_detected,
           arg_max(CASE WHEN d.detected THEN d.value / d.lod END, d.drawn_on) AS ctdna_fold,
           max(d.drawn_on) AS ctdna_drawn_on
    FROM model_feature_points f JOIN ctdna_draws d
      ON d.patient_id = f.patient_id AND d.drawn_on <= f.as_of AND d.qc = 'pass'
    GROUP BY f.patient_id, f.basis
), prior AS (
    SELECT f.patient_id, f.basis, min(e.occurred_on) AS progressed_on
    FROM model_feature_points f JOIN events e
      ON e.patient_id = f.patient_id AND e.event = 'progression' AND e.occurred_on <= f.as_of
    GROUP BY f.patient_id, f.basis
)
SELECT f.patient_id, f.basis, f.as_of, p.cohort,
       ct.ctdna_detected AS ctdna_detected_at_index,
       CASE WHEN ct.ctdna_detected THEN log10(greatest(ct.ctdna_fold, 1.0))
            WHEN NOT ct.ctdna_detected THEN 0.0 END AS ctdna_log10_fold_over_lod,
       date_diff('day', ct.ctdna_drawn_on, f.as_of) AS ctdna_days_before,
       CASE WHEN p.best_response IS NULL THEN NULL ELSE p.best_response = 'CR' END AS best_response_cr,
       p.visceral,
       CASE pc.hr_status WHEN 'positive' THEN true WHEN 'negative' THEN false END AS hr_positive,
       p.de_novo, p.brain_mets_history,
       years_between(p.first_line_start, f.as_of) AS years_on_first_line,
       p.age_at_enrolment + years_between(p.enrolled_on, f.as_of) AS age,
       p.n_metastatic_sites,
       pc.her2_ihc3,
       -- applicability, not model inputs
       pc.her2_positive,
       years_between(p.first_line_start, p.enrolled_on) AS years_on_first_line_at_enrolment,
       prior.progressed_on AS progressed_on_or_before
FROM model_feature_points f
JOIN patients p USING (patient_id)
LEFT JOIN patient_classification pc USING (patient_id)
LEFT JOIN ct USING (patient_id, basis)
LEFT JOIN prior USING (patient_id, basis);

CREATE VIEW model_features AS
SELECT * EXCLUDE (basis, as_of), as_of AS index_date FROM model_features_all WHERE basis = 'index';

-- Eligibility per patient x criterion as of the data cut-off (rules in data/eligibility.py);
-- met is NULL when an input is missing ("unknown", never "met").
CREATE VIEW eligibility AS
SELECT patient_id, criterion, text, met, detail FROM eligibility_results;
