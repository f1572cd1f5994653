-- Views over a derived output (changes, merged trust tables, conflicts, provenance, history):
-- `{all_view}` holds every version of every pipeline, `{latest_view}` each pipeline's newest.
-- {warehouse}, {kind}, {table}, {all_view} and {latest_view} are filled in by odsync
-- (src/catalog/sql.rs, src/catalog/mod.rs OUTPUT_VIEWS).
CREATE OR REPLACE VIEW {all_view} AS
SELECT
    regexp_extract(filename, '([^/]+)/{kind}/version=[0-9]+/[^/]+$', 1) AS pipeline,
    * EXCLUDE (filename)
FROM read_parquet(
    '{warehouse}/*/{kind}/version=*/{table}.parquet',
    hive_partitioning = true,
    hive_types = {'version': BIGINT},
    filename = true,
    union_by_name = true
);

CREATE OR REPLACE VIEW {latest_view} AS
SELECT t.*
FROM {all_view} AS t
JOIN (SELECT pipeline, max(version) AS version FROM {all_view} GROUP BY pipeline) AS l
    USING (pipeline, version);
