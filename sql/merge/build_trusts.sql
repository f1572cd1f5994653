-- The merged trust table: the decided rows of the touched organisations, pivoted back to one row
-- per organisation; every untouched row of the previous trust table stays as it was.
-- Rows deleted from ODS leave the table unless they were locally modified (then they stay, with
-- a delete_vs_modify conflict). Rows that were never in ODS stay and are flagged `not_in_ods`.
-- {typed_columns} is the typed column list odsync renders from the field list.
CREATE OR REPLACE TEMP TABLE decided_wide AS
PIVOT (SELECT code, field, value FROM decisions) ON field IN ({field_list}) USING first(value) GROUP BY code;

-- The touched organisations that stay in the table.
CREATE OR REPLACE TEMP TABLE kept AS
SELECT code FROM row_flags AS f
WHERE (f.in_ods OR NOT f.in_base OR f.locally_modified)
  AND NOT (NOT f.in_ods AND coalesce(f.row_resolution, '') = 'accept_ods');

-- The decided rows of the new trust table. odsync writes them, in code order, together with every
-- row of the previous trust table whose organisation was not touched (copied as it was, without
-- passing through SQL: see src/merge/trusts.rs).
CREATE OR REPLACE TEMP VIEW decided_trusts AS
SELECT {typed_columns}, NOT f.in_ods AND NOT f.in_base AS not_in_ods
FROM decided_wide AS w
JOIN row_flags AS f USING (code)
SEMI JOIN kept USING (code);
