-- One view per snapshot table over every version of every pipeline in the warehouse:
-- `snapshot_<table>`, with `pipeline` (from the path) and `version` (the Hive partition, as a
-- number: `version=000042` → 42) columns.
-- {table} and {warehouse} are filled in by odsync (src/catalog/sql.rs); paths are absolute so the
-- catalog works from any working directory, in the duckdb CLI or Python, without odsync.
CREATE OR REPLACE VIEW snapshot_{table} AS
SELECT
    regexp_extract(filename, '([^/]+)/ods/version=[0-9]+/[^/]+$', 1) AS pipeline,
    * EXCLUDE (filename)
FROM read_parquet(
    '{warehouse}/*/ods/version=*/{table}.parquet',
    hive_partitioning = true,
    hive_types = {'version': BIGINT},
    filename = true,
    union_by_name = true
);
