-- Which organisations this merge has to decide again. Everything else is copied unchanged from
-- the previous trust table, which keeps a nightly merge proportional to what changed, not to the
-- size of the table.
--
-- {all_columns} is the trust table's field list, rendered by odsync from the pipeline's settings.
-- Inputs (created by odsync before this file runs; see src/merge/mod.rs):
--   ods_raw, base_raw      organisations of the new snapshot and of the one the last merge used
--   ods_changed            rows of ods_raw added or changed since the base (from the run's diff,
--   base_changed           or find_changed.sql), rows of base_raw changed or deleted since
--   prev_trusts            the previous merged trust table
--   local_long             the local table file, long format (code, field, value)
--   overrides_active       reviewed overrides that have not expired
--   resolutions            conflict resolutions recorded since (conflict_id, resolution, …)
--   prev_conflicts         every conflict known to the previous merge
--   prev_sources           cells of the previous trust table whose value did not come from ODS
--   local_codes            the codes the local table file lists
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
SELECT code FROM ods_changed
UNION SELECT code FROM base_changed
UNION SELECT code FROM local_edits
UNION SELECT code FROM overrides_active
UNION SELECT code FROM prev_conflicts WHERE status IN ('open', 'ignored')
UNION SELECT c.code FROM resolutions AS r JOIN prev_conflicts AS c USING (conflict_id);
-- Rows of the trust table whose ODS row neither changed nor left (rows only the team has, rows
-- kept after ODS deleted them) are not decided again: with no edit and no conflict, deciding them
-- again would give the row as it is.

-- Organisations touched for another reason (a local edit, an override, a conflict): their ODS
-- row did not change, so it is the same in the base and in the new snapshot, and is read once.
CREATE OR REPLACE TEMP TABLE unchanged_touched AS
SELECT * FROM ods_raw
WHERE code IN (
    SELECT code FROM touched_codes
    EXCEPT SELECT code FROM ods_changed
    EXCEPT SELECT code FROM base_changed
);

-- The ODS and base rows of every touched organisation, and whether it is in each.
-- Views: each is read once, by decide_fields.sql.
CREATE OR REPLACE TEMP VIEW ods_touched_rows AS
SELECT * FROM ods_changed UNION ALL SELECT * FROM unchanged_touched;
CREATE OR REPLACE TEMP VIEW base_touched_rows AS
SELECT * FROM base_changed UNION ALL SELECT * FROM unchanged_touched;

CREATE OR REPLACE TEMP TABLE touched AS
SELECT
    t.code,
    t.code IN (SELECT code FROM ods_changed UNION ALL SELECT code FROM unchanged_touched) AS in_ods,
    t.code IN (SELECT code FROM base_changed UNION ALL SELECT code FROM unchanged_touched) AS in_base
FROM touched_codes AS t;

-- Fresh organisations: new in ODS (in the new snapshot, not in the base), not in the previous
-- trust table, and nothing of the team's points at them (the local table does not list them, no
-- override, no conflict). Every cell of theirs is decided alike by the rules of
-- decide_fields.sql (the ODS value: `ods_update`, or `no_ods_change` where ODS has none; an empty
-- team-owned column: `local_field`), so they skip the cell-by-cell decision and come straight
-- from their ODS row (`fresh_decisions`, and `decided_trusts` in build_trusts.sql). Every
-- organisation of a first merge without team data is fresh; a nightly merge's are the new ones.
CREATE OR REPLACE TEMP TABLE fresh AS
SELECT t.code FROM touched AS t
WHERE t.in_ods AND NOT t.in_base
  AND NOT EXISTS (SELECT 1 FROM prev_trusts AS p WHERE p.code = t.code)
  AND NOT EXISTS (SELECT 1 FROM local_codes AS l WHERE l.code = t.code)
  AND NOT EXISTS (SELECT 1 FROM overrides_active AS o WHERE o.code = t.code)
  AND NOT EXISTS (SELECT 1 FROM prev_conflicts AS c WHERE c.code = t.code);

-- The organisations decided cell by cell: every touched one that is not fresh.
CREATE OR REPLACE TEMP TABLE touched_cells AS
SELECT * FROM touched AS t
WHERE NOT EXISTS (SELECT 1 FROM fresh AS f WHERE f.code = t.code);
