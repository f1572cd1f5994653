-- Every snapshot manifest as a row, and the latest version of each pipeline.
-- {warehouse} is filled in by odsync (src/catalog/sql.rs).
CREATE OR REPLACE VIEW snapshot_manifests AS
SELECT * FROM read_json(
    '{warehouse}/*/ods/version=*/manifest.json',
    format = 'auto',
    columns = {
        pipeline: 'VARCHAR',
        version: 'BIGINT',
        previous_version: 'BIGINT',
        run_id: 'VARCHAR',
        created_at: 'TIMESTAMP',
        mode: 'VARCHAR',
        watermark: 'DATE',
        schema_version: 'INTEGER',
        odsync_version: 'VARCHAR',
        content_hash: 'VARCHAR',
        source: 'JSON',
        tables: 'JSON'
    }
);

CREATE OR REPLACE VIEW latest_snapshots AS
SELECT pipeline, max(version) AS version
FROM snapshot_manifests
GROUP BY pipeline;
