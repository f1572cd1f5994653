-- Which organisations this merge has to decide again. Everything else is copied unchanged from
-- the previous trust table, which keeps a nightly merge proportional to what changed, not to the
-- size of the table.
--
-- {all_columns} is the trust table's field list, rendered by odsync from the pipeline's settings.
-- Inputs (created by odsync before this file runs; see src/merge/mod.rs):
--   ods_org, base_org      organisations of the new snapshot and of the one the last merge used
--   prev_trusts            the previous merged trust table
--   local_long             the local table file, long format (code, field, value)
--   overrides_active       reviewed overrides that have not expired
--   resolutions            conflict resolutions recorded since (conflict_id, resolution, …)
--   prev_conflicts         every conflict known to the previous merge
--   prev_sources           cells of the previous trust table whose value did not come from ODS
CREATE OR REPLACE TEMP VIEW prev_local_wide AS
SELECT code, COLUMNS(* EXCLUDE (code, not_in_ods))::VARCHAR
FROM prev_trusts SEMI JOIN (SELECT DISTINCT code FROM local_long) USING (code);

CREATE OR REPLACE TEMP TABLE prev_long_local AS
SELECT code, field, value
FROM prev_local_wide UNPIVOT INCLUDE NULLS (value FOR field IN ({all_columns}));

CREATE OR REPLACE TEMP TABLE local_edits AS
-- A local table value is an edit only where it differs from the previous merged value.
SELECT l.code, l.field, l.value
FROM local_long AS l
LEFT JOIN prev_long_local AS p USING (code, field)
WHERE l.value IS DISTINCT FROM p.value;

CREATE OR REPLACE TEMP TABLE touched_codes AS
SELECT o.code FROM ods_org AS o LEFT JOIN base_org AS b USING (code)
WHERE b.code IS NULL OR o.row_hash IS DISTINCT FROM b.row_hash
UNION SELECT code FROM base_org WHERE code NOT IN (SELECT code FROM ods_org)
UNION SELECT code FROM prev_trusts WHERE code NOT IN (SELECT code FROM ods_org)
UNION SELECT code FROM local_edits
UNION SELECT code FROM overrides_active
UNION SELECT code FROM prev_conflicts WHERE status IN ('open', 'ignored')
UNION SELECT c.code FROM resolutions AS r JOIN prev_conflicts AS c USING (conflict_id);

-- Whether each touched organisation is in the new snapshot and in the base, computed once.
CREATE OR REPLACE TEMP TABLE touched AS
SELECT
    t.code,
    t.code IN (SELECT code FROM ods_org SEMI JOIN touched_codes USING (code)) AS in_ods,
    t.code IN (SELECT code FROM base_org SEMI JOIN touched_codes USING (code)) AS in_base
FROM touched_codes AS t;
