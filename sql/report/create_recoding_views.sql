-- Recoding events (src/diff/kinds.rs): one row per event of each diff, where at least three
-- organisations moved from one parent code to the same other code in one run (area teams → STPs,
-- 3-character ICB codes → 5-character ones, CCG mergers). Each change row the event explains
-- carries its id in `snapshot_changes.event`.
--
-- Changes written before the `event` column existed read it as NULL (UNION BY NAME with the
-- column's shape), so this view binds on any warehouse.
CREATE OR REPLACE VIEW recodings AS
WITH c AS (
    SELECT * FROM (SELECT NULL::VARCHAR AS event LIMIT 0)
    UNION ALL BY NAME
    SELECT * FROM snapshot_changes
)
SELECT
    pipeline,
    version,
    event,
    split_part(event, '>', 1) AS old_code,
    split_part(event, '>', 2) AS new_code,
    count(DISTINCT code) AS organisations,
    list(DISTINCT CASE WHEN "table" = 'organisations' THEN field ELSE "table" || '.' || field END
         ORDER BY CASE WHEN "table" = 'organisations' THEN field ELSE "table" || '.' || field END) AS fields,
    list(DISTINCT code ORDER BY code)[1:5] AS examples
FROM c
WHERE event IS NOT NULL
GROUP BY pipeline, version, event;
