-- Provenance of every value this merge set: where it came from (ods, local_table, override,
-- resolution), which snapshot version and run set it, and by which rule. A value that stayed as it
-- was (same value, same source) keeps the provenance an earlier merge recorded, so it still names
-- the run that really set it; the view `provenance_latest` picks the newest entry per
-- (code, field). A view: odsync reads it once, to write it (a baseline's is one row per cell).
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
-- Every cell of a fresh organisation is new (decide_fields.sql).
SELECT
    code, field, value, source,
    (SELECT ods_version FROM merge_params), (SELECT run_id FROM merge_params), rule, (SELECT merged_at FROM merge_params)
FROM fresh_decisions;

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
