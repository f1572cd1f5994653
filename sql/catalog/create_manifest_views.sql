-- Every snapshot manifest as a row, and the latest version of each pipeline.
-- {manifests} is the list of manifests that parse, filled in by odsync (src/catalog/mod.rs):
-- a damaged manifest is left out (and reported by `odsync verify`) instead of breaking every view.
CREATE OR REPLACE VIEW snapshot_manifests AS
SELECT * FROM read_json(
    [{manifests}],
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

-- The day of each pipeline's latest snapshot, on the run's clock (`ODSYNC_NOW` when set): what
-- "today" means for the views that judge dates (future_dated, mergers), so a view shows what
-- the snapshot knew, not what the machine's clock says when someone queries it.
CREATE OR REPLACE VIEW snapshot_dates AS
SELECT m.pipeline, CAST(m.created_at AS DATE) AS snapshot_date
FROM snapshot_manifests AS m
JOIN latest_snapshots AS l USING (pipeline, version);
