-- Report views over the merged outputs (created once a merge exists).

-- Conflicts waiting for a decision: `odsync conflicts resolve <pipeline> <id> …`.
CREATE OR REPLACE VIEW open_conflicts AS
SELECT * FROM conflicts_latest WHERE status = 'open';

-- For every (code, field) of each pipeline's latest trust table: the value, where it came from
-- (ods, local_table, override, resolution), the snapshot version and run that set it, the rule
-- applied and when. Each merge records provenance only for what it decided, so the newest entry
-- per (code, field) across merges is the one in force.
CREATE OR REPLACE VIEW provenance_latest AS
SELECT p.* EXCLUDE (n, version), p.version AS merged_version
FROM (
    SELECT *, row_number() OVER (PARTITION BY pipeline, code, field ORDER BY version DESC) AS n
    FROM provenance_log
) AS p
SEMI JOIN latest_trusts AS t USING (pipeline, code)
WHERE p.n = 1;
