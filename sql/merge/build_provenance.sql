-- Provenance of every value this merge set: where it came from (ods, local_table, override,
-- resolution), which snapshot version and run set it, and by which rule. A value that stayed as it
-- was (same value, same source) keeps the provenance an earlier merge recorded, so it still names
-- the run that really set it; the view `provenance_latest` picks the newest entry per
-- (code, field). A view: odsync reads it once, to write it.
CREATE OR REPLACE TEMP VIEW provenance AS
SELECT
    d.code,
    d.field,
    d.value,
    d.source,
    (SELECT ods_version FROM merge_params) AS snapshot_version,
    (SELECT run_id FROM merge_params) AS run_id,
    d.rule,
    (SELECT merged_at FROM merge_params) AS set_at
FROM decisions AS d
WHERE d.code IN (SELECT code FROM kept)
  AND (d.value IS DISTINCT FROM d.prev_value
       OR d.source IS DISTINCT FROM d.prev_source
       OR d.rule = 'conflict'
       OR d.rule LIKE 'resolution:%')
UNION ALL
-- A fresh organisation (select_touched.sql) is one entry, field '*' and rule 'fresh': every cell
-- of its new row is its ODS value, decided alike (decide_fields.sql), so its row in this version's
-- trust table says what each was, and `provenance_latest` (sql/report/create_merge_views.sql)
-- lists them cell by cell. A baseline wrote one entry per cell before: 6.25M rows at 250k
-- organisations, most of the merge's time and memory, for what one row per organisation says.
SELECT
    code, '*', NULL::VARCHAR, 'ods',
    (SELECT ods_version FROM merge_params), (SELECT run_id FROM merge_params), 'fresh', (SELECT merged_at FROM merge_params)
FROM fresh;

-- The cells of the new trust table whose value does not come from ODS or odsync's derivations
-- (local table, override, resolution): the next merge reads this instead of the whole provenance
-- log, and a cell it does not list is `ods` (or `derived` for derived columns).
CREATE OR REPLACE TEMP TABLE sources AS
-- Cells not decided again keep their source (every cell of a row that leaves is decided, so a
-- dropped row takes its entries with it).
SELECT s.code, s.field, s.source
FROM prev_sources AS s
ANTI JOIN decisions AS d USING (code, field)
UNION ALL
SELECT d.code, d.field, d.source
FROM decisions AS d
WHERE d.source NOT IN ('ods', 'derived') AND d.code IN (SELECT code FROM kept);
