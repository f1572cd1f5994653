-- The merged trust table: the decided rows of the touched organisations, pivoted back to one row
-- per organisation; every untouched row of the previous trust table stays as it was.
-- Rows deleted from ODS leave the table unless they were locally modified (then they stay, with
-- a delete_vs_modify conflict). Rows that were never in ODS stay and are flagged `not_in_ods`.

-- Only the cells whose decided value differs from the previous trust table are pivoted (a few per
-- touched organisation); the other cells of a touched row are its previous values.
-- `<field>_n` counts the changed cells, so a value changed to NULL is told from no change.
CREATE OR REPLACE TEMP TABLE decided_wide AS
PIVOT (SELECT code, field, value FROM decisions WHERE value IS DISTINCT FROM prev_value)
ON field IN ({field_list}) USING first(value) AS v, count(*) AS n GROUP BY code;

-- The touched organisations that stay in the table.
CREATE OR REPLACE TEMP TABLE kept AS
SELECT code FROM row_flags AS f
WHERE (f.in_ods OR NOT f.in_base OR f.locally_modified)
  AND NOT (NOT f.in_ods AND coalesce(f.row_resolution, '') = 'accept_ods');

-- The decided rows of the new trust table. odsync writes them, in code order, together with every
-- row of the previous trust table whose organisation was not touched (copied as it was, without
-- passing through SQL: see src/merge/trusts.rs).
-- {merged_columns} renders, per field, as
--   CASE WHEN w.<field>_n > 0 THEN CAST(w.<field>_v AS <type>) ELSE p.<field> END AS <field>
CREATE OR REPLACE TEMP VIEW decided_trusts AS
SELECT f.code, {merged_columns}, NOT f.in_ods AND NOT f.in_base AS not_in_ods
FROM row_flags AS f
SEMI JOIN kept USING (code)
LEFT JOIN decided_wide AS w USING (code)
LEFT JOIN prev_touched_rows AS p USING (code)
UNION ALL
-- The fresh organisations' rows, straight from ODS (select_touched.sql). {fresh_columns} renders,
-- per field, as CAST(CAST(o.<field> AS VARCHAR) AS <type>) AS <field>, the value the cells above
-- would carry (NULL for a team-owned column).
SELECT o.code, {fresh_columns}, false AS not_in_ods
FROM ods_changed AS o
WHERE EXISTS (SELECT 1 FROM fresh AS f WHERE f.code = o.code);
