-- Mergers and successions from the latest snapshot of each pipeline (ORD `Succs`).
--
-- successor_edges: one edge per succession, old → new, whichever record carried it (the old body
-- lists the new one as `Successor`, the new body lists the old one as `Predecessor`).
CREATE OR REPLACE VIEW successor_edges AS
SELECT DISTINCT pipeline, code AS from_code, target_code AS to_code, legal_start
FROM latest_successors WHERE type = 'Successor'
UNION
SELECT DISTINCT pipeline, target_code AS from_code, code AS to_code, legal_start
FROM latest_successors WHERE type = 'Predecessor';

-- Every chain of successions from each organisation, cycle-safe (a code never repeats on a path).
CREATE OR REPLACE VIEW successor_chains AS
WITH RECURSIVE walk(pipeline, start_code, code, depth, path) AS (
    SELECT pipeline, from_code, to_code, 1, [from_code, to_code] FROM successor_edges
    UNION ALL
    SELECT w.pipeline, w.start_code, e.to_code, w.depth + 1, list_append(w.path, e.to_code)
    FROM walk AS w
    JOIN successor_edges AS e ON e.pipeline = w.pipeline AND e.from_code = w.code
    WHERE NOT list_contains(w.path, e.to_code) AND w.depth < 100
)
SELECT * FROM walk;

-- The active successor of each organisation that has successors: the first active organisation
-- along each chain. Exactly one → `resolved`; none → `none` (a chain of closed bodies, or a
-- cycle); several → `ambiguous`, reported with the candidates and never guessed.
CREATE OR REPLACE VIEW active_successors AS
WITH reach AS (
    SELECT c.*, o.status
    FROM successor_chains AS c
    LEFT JOIN latest_organisations AS o ON o.pipeline = c.pipeline AND o.code = c.code
),
firsts AS (
    SELECT r.pipeline, r.start_code, r.code
    FROM reach AS r
    WHERE r.status = 'Active'
      AND NOT EXISTS (
          SELECT 1 FROM reach AS earlier
          WHERE earlier.pipeline = r.pipeline AND earlier.start_code = r.start_code
            AND earlier.status = 'Active' AND earlier.depth < r.depth
            AND list_contains(r.path, earlier.code)
      )
),
cycles AS (
    SELECT DISTINCT c.pipeline, c.start_code
    FROM successor_chains AS c
    JOIN successor_edges AS e ON e.pipeline = c.pipeline AND e.from_code = c.code
    WHERE list_contains(c.path, e.to_code)
),
direct AS (
    SELECT pipeline, from_code AS start_code, arg_max(to_code, legal_start) AS successor_code
    FROM successor_edges GROUP BY ALL
)
SELECT
    s.pipeline,
    s.start_code AS code,
    d.successor_code,
    CASE WHEN count(DISTINCT f.code) = 1 THEN min(f.code) END AS active_successor_code,
    CASE WHEN count(DISTINCT f.code) = 1 THEN 'resolved'
         WHEN count(DISTINCT f.code) > 1 THEN 'ambiguous'
         ELSE 'none' END AS resolution,
    list(DISTINCT f.code ORDER BY f.code) FILTER (WHERE f.code IS NOT NULL) AS active_candidates,
    cy.start_code IS NOT NULL AS in_cycle
FROM (SELECT DISTINCT pipeline, start_code FROM successor_chains) AS s
LEFT JOIN firsts AS f USING (pipeline, start_code)
LEFT JOIN direct AS d USING (pipeline, start_code)
LEFT JOIN cycles AS cy USING (pipeline, start_code)
GROUP BY s.pipeline, s.start_code, d.successor_code, cy.start_code;
