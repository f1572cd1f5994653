-- The hierarchy, dated and explained, from each pipeline's latest snapshot.
--
-- hierarchy: every parent link an organisation carries, current and historical, with its dates,
-- status and origin (an ORD relationship, or a bulk CSV column). The current parent odsync
-- derives from these is the trust table's parent_code / parent_relationship.
CREATE OR REPLACE VIEW hierarchy AS
SELECT
    pipeline,
    code AS child_code,
    target_code AS parent_code,
    rel_type,
    target_primary_role AS parent_primary_role,
    operational_start AS valid_from,
    operational_end AS valid_to,
    status,
    coalesce(source_field, 'ord') AS origin
FROM latest_relationships
WHERE rel_type IN ('RE2', 'RE3', 'RE4', 'RE5', 'RE6', 'RE8', 'COMMISSIONER', 'HIGH_LEVEL_HEALTH_GEOGRAPHY', 'NATIONAL_GROUPING', 'PARENT');

-- Active organisations whose parent is closed, or gone after a succession, with the parent's
-- active successor as the suggested new parent.
CREATE OR REPLACE VIEW orphans AS
SELECT
    o.pipeline,
    o.code,
    o.name,
    o.parent_code,
    o.parent_relationship,
    CASE WHEN p.code IS NULL THEN 'parent no longer in ODS' ELSE 'parent closed' END AS problem,
    s.active_successor_code AS suggested_parent
FROM latest_organisations AS o
LEFT JOIN latest_organisations AS p ON p.pipeline = o.pipeline AND p.code = o.parent_code
LEFT JOIN active_successors AS s ON s.pipeline = o.pipeline AND s.code = o.parent_code
WHERE o.parent_code IS NOT NULL
  AND coalesce(o.status, 'Active') = 'Active'
  AND (p.status = 'Inactive' OR (p.code IS NULL AND s.code IS NOT NULL));

-- Mergers: every succession with its effective (legal) date, whether it is still to come, and
-- what happened to the old body's children: how many now point at the successor and how many
-- still point at the old body (orphaned until ODS moves them).
CREATE OR REPLACE VIEW mergers AS
SELECT
    e.pipeline,
    e.from_code AS old_code,
    e.to_code AS new_code,
    e.legal_start AS effective_date,
    e.legal_start > (SELECT d.snapshot_date FROM snapshot_dates AS d WHERE d.pipeline = e.pipeline) AS future_dated,
    a.active_successor_code,
    (SELECT count(*) FROM latest_organisations AS c
     WHERE c.pipeline = e.pipeline AND c.parent_code = e.to_code
       AND EXISTS (SELECT 1 FROM hierarchy AS h
                   WHERE h.pipeline = c.pipeline AND h.child_code = c.code AND h.parent_code = e.from_code)) AS children_moved,
    (SELECT count(*) FROM latest_organisations AS c
     WHERE c.pipeline = e.pipeline AND c.parent_code = e.from_code AND coalesce(c.status, 'Active') = 'Active') AS children_orphaned
FROM successor_edges AS e
LEFT JOIN active_successors AS a ON a.pipeline = e.pipeline AND a.code = e.from_code;
