-- The three-way merge, one decision per (organisation, field), for the touched organisations.
--
--   base  = the ODS value the previous merge used
--   ods   = the ODS value of the new snapshot
--   local = the previous merged value with local edits applied (override > local table > previous)
--
-- Rules, first match wins (the `rule` column records which one applied):
--   resolution:<id>  a recorded resolution of this very conflict (accept_ods, keep_local, set, ignore)
--   ods_deleted      the organisation left ODS: keep local (row-level rules decide whether it stays)
--   not_in_ods       a row only the team has: keep local
--   conflict         an open conflict whose ODS value has not changed stays open (local value kept)
--   no_ods_change    ods = base: keep local
--   ods_update       ods ≠ base and local = base: take ods
--   converged        ods = local: take ods, no conflict
--   ods_wins         all differ, field owned by ODS: take ods (the overwritten local value is reported)
--   local_wins       all differ, field owned locally: keep local (the suppressed ODS value is reported)
--   conflict         all differ, field under review: keep local until resolved
--   local_field      a team-owned column: the local value
-- A conflict on one field never blocks the other fields of the same organisation.
-- The fresh organisations (select_touched.sql) are decided alike: an ODS value is taken
-- (`ods_update`), an empty one is kept empty (`no_ods_change`), a team-owned column is empty
-- (`local_field`); their rows come from build_trusts.sql, their provenance is one entry each
-- (build_provenance.sql) and their rules are counted at the end of this file.
-- {ods_casts}, {all_columns}, {cell_columns} and {cell_structs} are field lists
-- rendered by odsync.
CREATE OR REPLACE TEMP VIEW ods_touched AS
SELECT code, {ods_casts} FROM ods_touched_rows;
CREATE OR REPLACE TEMP VIEW base_touched AS
SELECT code, {ods_casts} FROM base_touched_rows;
-- prev_touched_rows: the touched organisations' rows of the previous trust table (odsync reads
-- the previous table once and splits it: src/merge/trusts.rs).
CREATE OR REPLACE TEMP VIEW prev_touched AS
SELECT code, COLUMNS(* EXCLUDE (code, not_in_ods))::VARCHAR FROM prev_touched_rows;

-- The cells an edit or a conflict points at, per organisation ('_row' for a row-level conflict).
CREATE OR REPLACE TEMP TABLE marked_cells AS
SELECT code, list(DISTINCT field) AS fields
FROM (
    SELECT code, field FROM overrides_active
    UNION ALL SELECT code, field FROM local_edits
    UNION ALL SELECT code, field FROM prev_conflicts WHERE status IN ('open', 'ignored')
)
GROUP BY code;

-- One row per cell to decide, with its ODS, base and previous value: the touched organisations'
-- three rows are joined once by code, then unpivoted together (team-owned fields have no ODS or
-- base value). A cell is decided when something could change it: its ODS value differs from the
-- base, an edit or a conflict points at it, or its whole row is in question (the organisation
-- left ODS, is new, is not in the previous table, closed, or has a row-level conflict). Any other
-- cell would be decided as it was (no_ods_change or local_field: previous value, previous
-- source), so it keeps its previous value without a decision.
-- {cell_columns} renders as name_ods, name_base, name_prev, … and {cell_structs}, per field, as
--   CASE WHEN all_fields OR name_ods IS DISTINCT FROM name_base OR list_contains(marked, 'name')
--        THEN {'ods': name_ods, 'base': name_base, 'prev': name_prev} END AS name
CREATE OR REPLACE TEMP TABLE cells AS
WITH joined AS (
    SELECT
        t.code,
        t.in_ods,
        t.in_base,
        p.code IS NOT NULL AS in_prev,
        coalesce(m.fields, []) AS marked,
        NOT t.in_ods OR NOT t.in_base OR p.code IS NULL
            OR (b.status = 'Active' AND o.status = 'Inactive')
            OR list_contains(coalesce(m.fields, []), '_row') AS all_fields,
        {cell_columns}
    FROM touched_cells AS t
    LEFT JOIN ods_touched AS o USING (code)
    LEFT JOIN base_touched AS b USING (code)
    LEFT JOIN prev_touched AS p USING (code)
    LEFT JOIN marked_cells AS m USING (code)
),
candidates AS (
    SELECT code, in_ods, in_base, in_prev, {cell_structs} FROM joined
)
SELECT code, in_ods, in_base, in_prev, field, cell.ods AS ods_value, cell.base AS base_value, cell.prev AS prev_value
FROM candidates UNPIVOT (cell FOR field IN ({all_columns}));

CREATE OR REPLACE TEMP TABLE decisions AS
WITH joined AS (
    SELECT
        c.code,
        c.field,
        f.is_local_field,
        f.ownership,
        c.base_value,
        c.ods_value,
        c.prev_value,
        ov.code IS NOT NULL AS has_override,
        ov.value AS override_value,
        le.code IS NOT NULL AS has_local_edit,
        le.value AS local_table_value,
        -- Cells not listed in prev_sources came from ODS (or are new).
        CASE WHEN NOT c.in_prev THEN NULL ELSE coalesce(pp.source, 'ods') END AS prev_source,
        c.in_ods,
        c.in_base
    FROM cells AS c
    JOIN merge_fields AS f USING (field)
    LEFT JOIN overrides_active AS ov USING (code, field)
    LEFT JOIN local_edits AS le USING (code, field)
    LEFT JOIN prev_sources AS pp USING (code, field)
),
with_local AS (
    SELECT
        *,
        CASE WHEN has_override THEN override_value WHEN has_local_edit THEN local_table_value ELSE prev_value END
            AS local_value,
        CASE WHEN has_override THEN 'override' WHEN has_local_edit THEN 'local_table' ELSE coalesce(prev_source, 'ods') END
            AS local_source
    FROM joined
),
with_resolution AS (
    -- The open (or ignored) conflict on the same (code, field, ODS value) is the same conflict:
    -- its id is the hash of exactly those three, so no hash is computed to find it.
    SELECT
        w.*,
        pc.conflict_id AS prev_conflict_id,
        r.resolution,
        r.value AS resolution_value,
        pc.status AS prev_conflict_status
    FROM with_local AS w
    LEFT JOIN prev_conflicts AS pc
        ON pc.code = w.code AND pc.field = w.field AND pc.ods_value IS NOT DISTINCT FROM w.ods_value
       AND pc.status IN ('open', 'ignored')
    LEFT JOIN latest_resolutions AS r
        ON r.conflict_id = pc.conflict_id
),
decided AS (
    SELECT
        code,
        field,
        is_local_field,
        ownership,
        in_ods,
        in_base,
        base_value,
        ods_value,
        local_value,
        prev_value,
        prev_source,
        prev_conflict_id,
        CASE
            WHEN is_local_field THEN 'local_field'
            WHEN resolution IS NOT NULL THEN 'resolution:' || prev_conflict_id
            WHEN NOT in_ods AND in_base THEN 'ods_deleted'
            WHEN NOT in_ods THEN 'not_in_ods'
            WHEN prev_conflict_status IS NOT NULL THEN 'conflict'
            WHEN ods_value IS NOT DISTINCT FROM base_value THEN 'no_ods_change'
            WHEN local_value IS NOT DISTINCT FROM base_value THEN 'ods_update'
            WHEN ods_value IS NOT DISTINCT FROM local_value THEN 'converged'
            WHEN ownership = 'ods' THEN 'ods_wins'
            WHEN ownership = 'local' THEN 'local_wins'
            ELSE 'conflict'
        END AS rule,
        resolution,
        CASE
            WHEN is_local_field THEN local_value
            WHEN resolution = 'accept_ods' THEN ods_value
            WHEN resolution = 'set' THEN resolution_value
            WHEN resolution IN ('keep_local', 'ignore') THEN local_value
            WHEN NOT in_ods THEN local_value
            WHEN prev_conflict_status IS NOT NULL THEN local_value
            WHEN ods_value IS NOT DISTINCT FROM base_value THEN local_value
            WHEN local_value IS NOT DISTINCT FROM base_value THEN ods_value
            WHEN ods_value IS NOT DISTINCT FROM local_value THEN ods_value
            WHEN ownership = 'ods' THEN ods_value
            ELSE local_value
        END AS value,
        CASE
            WHEN is_local_field THEN local_source
            WHEN resolution IS NOT NULL THEN 'resolution'
            WHEN NOT in_ods THEN local_source
            WHEN prev_conflict_status IS NOT NULL THEN local_source
            WHEN ods_value IS NOT DISTINCT FROM base_value THEN local_source
            WHEN local_value IS NOT DISTINCT FROM base_value THEN 'ods'
            WHEN ods_value IS NOT DISTINCT FROM local_value THEN 'ods'
            WHEN ownership = 'ods' THEN 'ods'
            ELSE local_source
        END AS source,
        -- An active ignore keeps the conflict visible as `ignored`; once it expires (odsync drops
        -- it from latest_resolutions) the conflict is open again.
        CASE WHEN resolution = 'ignore' THEN 'ignored' END AS ignored,
        -- Columns odsync derives from ODS data (the role mapping's org_type, health_system,
        -- foundation_trust; the hierarchy's parent_code, parent_relationship): what would be
        -- labelled `ods` is labelled `derived`.
        field IN ('org_type', 'health_system', 'foundation_trust', 'parent_code', 'parent_relationship') AS is_derived
    FROM with_resolution
)
SELECT
    * EXCLUDE (prev_conflict_id, is_derived) REPLACE (
        CASE WHEN is_derived AND source = 'ods' THEN 'derived' ELSE source END AS source,
        CASE WHEN is_derived AND prev_source = 'ods' THEN 'derived' ELSE prev_source END AS prev_source
    ),
    -- A conflict id is a hash of (code, field, ODS value), computed only where a conflict needs it.
    CASE
        WHEN prev_conflict_id IS NOT NULL THEN prev_conflict_id
        WHEN rule = 'conflict' THEN substr(sha256(code || '|' || field || '|' || coalesce(ods_value, '<null>')), 1, 16)
    END AS conflict_id
FROM decided;

-- The fresh cells' rules, counted without listing the cells: a team-owned column is `local_field`,
-- an ODS value `ods_update`, an empty one `no_ods_change`. {fresh_filled} renders as
-- count(o.<field>) + … over the ODS-owned fields; {ods_fields} and {local_fields} are how many
-- fields each kind has.
CREATE OR REPLACE TEMP TABLE fresh_rule_counts AS
WITH fresh_rows AS (
    SELECT count(*) AS n, {fresh_filled} AS filled
    FROM ods_changed AS o
    WHERE EXISTS (SELECT 1 FROM fresh AS f WHERE f.code = o.code)
)
SELECT rule, n FROM (
    SELECT 'local_field' AS rule, n * {local_fields} AS n FROM fresh_rows
    UNION ALL SELECT 'ods_update', filled FROM fresh_rows
    UNION ALL SELECT 'no_ods_change', n * {ods_fields} - filled FROM fresh_rows
)
WHERE n > 0;
