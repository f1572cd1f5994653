-- Report views over the merged outputs (created once a merge exists).

-- Conflicts waiting for a decision: `odsync conflicts resolve <pipeline> <id> …`.
CREATE OR REPLACE VIEW open_conflicts AS
SELECT * FROM conflicts_latest WHERE status = 'open';

-- For every (code, field) of each pipeline's latest trust table: the value, where it came from
-- (ods, derived, local_table, override, resolution), the snapshot version and run that set it,
-- the rule applied and when. Each merge records provenance only for what it decided, so the
-- newest entry per (code, field) across merges is the one in force.
-- A fresh organisation's entry (field '*', rule 'fresh': sql/merge/build_provenance.sql) stands
-- for every column of its row, decided alike: `ods_update` where ODS has a value,
-- `no_ods_change` where it is empty, `local_field` for a team-owned column, source `derived` for
-- the columns odsync derives. Its cells are read from the latest trust table: a cell a later
-- merge changed has a newer entry, which wins, so one without is as the entry's merge left it.
-- A pipeline's columns are its latest trust file's (parquet_schema): `latest_trusts` unions
-- every pipeline's columns by name. {warehouse} and {ods_fields} (the ODS-owned columns,
-- src/model/mod.rs ODS_FIELDS) are filled in by odsync (src/catalog/mod.rs).
CREATE OR REPLACE VIEW provenance_latest AS
WITH trust_columns AS (
    SELECT pipeline, field
    FROM (
        SELECT
            regexp_extract(file_name, '([^/]+)/trusts/version=[0-9]+/part-0\.parquet$', 1) AS pipeline,
            CAST(regexp_extract(file_name, '/version=([0-9]+)/part-0\.parquet$', 1) AS BIGINT) AS version,
            name AS field
        FROM parquet_schema('{warehouse}/*/trusts/version=*/part-0.parquet')
        WHERE num_children IS NULL AND name NOT IN ('code', 'not_in_ods')
    )
    QUALIFY version = max(version) OVER (PARTITION BY pipeline)
),
fresh_cells AS (
    SELECT pipeline, code, field, value
    FROM (
        SELECT pipeline, code, COLUMNS(* EXCLUDE (pipeline, code, not_in_ods, version))::VARCHAR
        FROM latest_trusts AS t
        SEMI JOIN (SELECT pipeline, code FROM provenance_log WHERE field = '*') AS f USING (pipeline, code)
    ) UNPIVOT INCLUDE NULLS (value FOR field IN (COLUMNS(* EXCLUDE (pipeline, code))))
    SEMI JOIN trust_columns USING (pipeline, field)
),
entries AS (
    SELECT pipeline, code, field, value, source, snapshot_version, run_id, rule, set_at, version
    FROM provenance_log
    WHERE field <> '*'
    UNION ALL
    SELECT
        e.pipeline, e.code, c.field, c.value,
        CASE WHEN c.field IN ('org_type', 'health_system', 'foundation_trust', 'parent_code', 'parent_relationship')
             THEN 'derived' ELSE 'ods' END,
        e.snapshot_version, e.run_id,
        CASE WHEN c.field NOT IN ({ods_fields}) THEN 'local_field'
             WHEN c.value IS NULL THEN 'no_ods_change' ELSE 'ods_update' END,
        e.set_at, e.version
    FROM provenance_log AS e
    JOIN fresh_cells AS c USING (pipeline, code)
    WHERE e.field = '*'
)
SELECT p.* EXCLUDE (n, version), p.version AS merged_version
FROM (
    SELECT *, row_number() OVER (PARTITION BY pipeline, code, field ORDER BY version DESC) AS n
    FROM entries
) AS p
SEMI JOIN latest_trusts AS t USING (pipeline, code)
WHERE p.n = 1;
