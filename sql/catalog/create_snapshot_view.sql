-- One view per snapshot table over every version of every pipeline in the warehouse:
-- `snapshot_<table>`, with `pipeline` (from the path) and `version` (the Hive partition, as a
-- number: `version=000042` → 42) columns. Each table is its own dataset directory:
-- `<warehouse>/<pipeline>/<table>/version=NNNNNN/part-0.parquet`.
-- {table} and {warehouse} are filled in by odsync (src/catalog/sql.rs); paths are absolute so the
-- catalog works from any working directory, in the duckdb CLI or Python, without odsync.
CREATE OR REPLACE VIEW snapshot_{table} AS
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
