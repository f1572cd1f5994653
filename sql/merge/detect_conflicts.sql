-- Conflicts as data. A conflict id is a hash of (code, field, ODS value): the same disagreement
-- keeps its id from run to run, and a new ODS value makes a new conflict (the old one is then
-- `superseded`). Row-level `delete_vs_modify` conflicts use the field `_row`.
CREATE OR REPLACE TEMP TABLE row_flags AS
WITH flags AS (
    SELECT
        t.code,
        t.in_ods,
        t.in_base,
        -- Locally modified: an ODS field whose local value differs from the ODS base value. Every
        -- cell is decided when a row left ODS or closed, the two cases where this matters.
        coalesce(d.locally_modified, false) AS locally_modified,
        coalesce(d.closed_now, false) AS closed_now
    FROM touched_cells AS t
    LEFT JOIN (
        SELECT
            code,
            bool_or(NOT is_local_field AND local_value IS DISTINCT FROM base_value) AS locally_modified,
            bool_or(field = 'status' AND base_value = 'Active' AND ods_value = 'Inactive') AS closed_now
        FROM decisions
        GROUP BY code
    ) AS d USING (code)
),
with_id AS (
    SELECT *, substr(sha256(code || '|_row|' || CASE WHEN in_ods THEN 'closed' ELSE 'deleted' END), 1, 16) AS row_conflict_id
    FROM flags
)
SELECT
    w.*,
    pc.conflict_id IS NOT NULL AS row_conflict_was_open,
    r.resolution AS row_resolution
FROM with_id AS w
LEFT JOIN prev_conflicts AS pc ON pc.conflict_id = w.row_conflict_id AND pc.status IN ('open', 'ignored')
LEFT JOIN latest_resolutions AS r ON r.conflict_id = pc.conflict_id;

CREATE OR REPLACE TEMP TABLE current_conflicts AS
SELECT conflict_id, code, field, 'field' AS kind, base_value, local_value, ods_value,
       CASE WHEN ignored = 'ignored' THEN 'ignored' ELSE 'open' END AS status
FROM decisions
WHERE (rule = 'conflict' OR ignored = 'ignored') AND in_ods
UNION ALL
-- A row deleted or closed in ODS while locally modified; it stays open until resolved
-- (accept_ods drops a deleted row, keep_local keeps it).
SELECT
    row_conflict_id, code, '_row', 'delete_vs_modify', 'in ODS', 'locally modified',
    CASE WHEN in_ods THEN 'closed in ODS' ELSE 'deleted from ODS' END,
    CASE WHEN row_resolution = 'ignore' THEN 'ignored' ELSE 'open' END
FROM row_flags
WHERE ((in_base AND locally_modified AND (NOT in_ods OR closed_now)) OR row_conflict_was_open)
  AND (row_resolution IS NULL OR row_resolution = 'ignore');

CREATE OR REPLACE TEMP TABLE conflicts AS
WITH resolved_now AS (
    SELECT conflict_id, resolution FROM decisions WHERE resolution IS NOT NULL AND resolution <> 'ignore'
    UNION ALL
    SELECT row_conflict_id, row_resolution FROM row_flags WHERE row_resolution IS NOT NULL AND row_resolution <> 'ignore'
)
-- Still (or newly) in conflict.
SELECT
    c.conflict_id, c.code, c.field, c.kind, c.base_value, c.local_value, c.ods_value,
    coalesce(p.first_seen_run, (SELECT run_id FROM merge_params)) AS first_seen_run,
    (SELECT run_id FROM merge_params) AS last_seen_run,
    c.status,
    CAST(NULL AS VARCHAR) AS resolution,
    CAST(NULL AS VARCHAR) AS resolution_value,
    CAST(NULL AS VARCHAR) AS resolved_by,
    CAST(NULL AS VARCHAR) AS resolved_at,
    r.reason AS reason
FROM current_conflicts AS c
LEFT JOIN prev_conflicts AS p USING (conflict_id)
LEFT JOIN latest_resolutions AS r ON r.conflict_id = c.conflict_id AND c.status = 'ignored'
UNION ALL
-- Known before and not in conflict now: resolved by a resolution, or superseded (ODS moved on,
-- or the values converged).
SELECT
    p.conflict_id, p.code, p.field, p.kind, p.base_value, p.local_value, p.ods_value,
    p.first_seen_run,
    p.last_seen_run,
    CASE WHEN p.status IN ('open', 'ignored') AND rn.conflict_id IS NOT NULL THEN 'resolved'
         WHEN p.status IN ('open', 'ignored') THEN 'superseded'
         ELSE p.status END,
    CASE WHEN rn.conflict_id IS NOT NULL THEN r.resolution ELSE p.resolution END,
    CASE WHEN rn.conflict_id IS NOT NULL THEN r.value ELSE p.resolution_value END,
    CASE WHEN rn.conflict_id IS NOT NULL THEN r.resolved_by ELSE p.resolved_by END,
    CASE WHEN rn.conflict_id IS NOT NULL THEN r.resolved_at ELSE p.resolved_at END,
    CASE WHEN rn.conflict_id IS NOT NULL THEN r.reason ELSE p.reason END
FROM prev_conflicts AS p
LEFT JOIN resolved_now AS rn USING (conflict_id)
LEFT JOIN latest_resolutions AS r USING (conflict_id)
WHERE p.conflict_id NOT IN (SELECT conflict_id FROM current_conflicts);
