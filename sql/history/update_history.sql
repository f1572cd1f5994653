-- SCD2 history of the ODS organisations of one pipeline, maintained incrementally from the diff.
-- Each snapshot version closes the current row of every organisation that changed or left ODS
-- (valid_to = the snapshot date) and opens a new current row for every organisation that changed
-- or arrived, listing the fields that changed. Untouched rows are carried over as they were.
--
-- Inputs (created by odsync, src/history.rs): prev_history (the previous history, or empty),
-- new_org (organisations of the new snapshot, fields as in the trust table), changes (the diff
-- into this snapshot; empty for the first one), history_params (version, run_id, snapshot_date).
-- (The column is `snapshot_version`: `version` is the Hive partition of the history output.)
CREATE OR REPLACE TEMP TABLE changed_codes AS
SELECT code,
       list(DISTINCT field ORDER BY field) FILTER (WHERE field IS NOT NULL) AS changed_fields,
       CASE WHEN bool_or(change_kind = 'deleted') THEN 'deleted'
            WHEN bool_or(change_kind = 'added') THEN 'added'
            ELSE 'changed' END AS change_kind
FROM changes
WHERE "table" = 'organisations'
GROUP BY code;

-- A view: odsync reads it once, into its COPY, which writes the rows in this ORDER BY's order
-- (building it as a table first and copying that took ~0.3 s more at 250k organisations).
CREATE OR REPLACE TEMP VIEW history AS
-- Rows that were already closed, and current rows of organisations that did not change.
SELECT * FROM prev_history
WHERE NOT is_current OR code NOT IN (SELECT code FROM changed_codes)
UNION ALL BY NAME
-- Current rows of changed organisations, now closed.
SELECT h.* REPLACE ((SELECT snapshot_date FROM history_params) AS valid_to, false AS is_current)
FROM prev_history AS h
WHERE h.is_current AND h.code IN (SELECT code FROM changed_codes)
UNION ALL BY NAME
-- New current rows: changed or added organisations (or every organisation, the first time).
SELECT
    o.*,
    (SELECT snapshot_date FROM history_params) AS valid_from,
    CAST(NULL AS DATE) AS valid_to,
    (SELECT version FROM history_params) AS snapshot_version,
    (SELECT run_id FROM history_params) AS run_id,
    coalesce(c.changed_fields, []) AS changed_fields,
    coalesce(c.change_kind, 'added') AS change_kind,
    true AS is_current
FROM new_org AS o
LEFT JOIN changed_codes AS c USING (code)
WHERE c.code IS NOT NULL OR NOT EXISTS (SELECT 1 FROM prev_history)
UNION ALL BY NAME
-- A tombstone for every organisation that left ODS: the code stays in history, marked deleted.
SELECT
    c.code,
    (SELECT snapshot_date FROM history_params) AS valid_from,
    CAST(NULL AS DATE) AS valid_to,
    (SELECT version FROM history_params) AS snapshot_version,
    (SELECT run_id FROM history_params) AS run_id,
    c.changed_fields,
    'deleted' AS change_kind,
    true AS is_current
FROM changed_codes AS c
WHERE c.change_kind = 'deleted'
ORDER BY code, valid_from, snapshot_version;
