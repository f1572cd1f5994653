-- Which organisations differ between the base and the new snapshot, for a merge that did not get
-- them from the run's diff (`odsync merge`, `odsync conflicts resolve --merge`, or a base that is
-- not the previous snapshot). A run's merge skips this file: the diff already read those rows
-- and hands them over as ods_changed and base_changed.
--
-- row_hash covers every field of a row, so two narrow columns decide it; only the rows that
-- differ are then read in full.
CREATE OR REPLACE TABLE changed_codes AS
SELECT code
FROM (SELECT code, row_hash FROM ods_raw) AS o
FULL JOIN (SELECT code, row_hash FROM base_raw) AS b USING (code)
WHERE o.row_hash IS DISTINCT FROM b.row_hash;

-- Rows of the new snapshot that were added or changed, rows of the base that changed or left.
CREATE OR REPLACE TABLE ods_changed AS
SELECT * FROM ods_raw SEMI JOIN changed_codes USING (code);
CREATE OR REPLACE TABLE base_changed AS
SELECT * FROM base_raw SEMI JOIN changed_codes USING (code);
