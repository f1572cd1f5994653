-- Views over a derived output (changes, merged trust tables, conflicts, provenance, history):
-- `{all_view}` holds every version of every pipeline, `{latest_view}` each pipeline's newest.
-- Each table is its own dataset directory: `<warehouse>/<pipeline>/<table>/version=N/part-0.parquet`.
-- {warehouse}, {table}, {all_view} and {latest_view} are filled in by odsync
-- (src/catalog/sql.rs, src/catalog/mod.rs OUTPUT_VIEWS).
CREATE OR REPLACE VIEW {all_view} AS
SELECT
    regexp_extract(filename, '([^/]+)/{table}/version=[0-9]+/part-0\.parquet$', 1) AS pipeline,
    * EXCLUDE (filename)
FROM read_parquet(
    '{warehouse}/*/{table}/version=*/part-0.parquet',
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
