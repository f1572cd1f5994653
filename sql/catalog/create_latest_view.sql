-- `latest_<table>`: the rows of each pipeline's newest snapshot version only.
-- {table} is filled in by odsync (src/catalog/sql.rs).
CREATE OR REPLACE VIEW latest_{table} AS
SELECT t.*
FROM snapshot_{table} AS t
JOIN latest_snapshots AS l USING (pipeline, version);
