-- As-of queries over the SCD2 history of ODS organisations (latest_history: each pipeline's
-- newest history version). `SELECT * FROM organisations_as_of(DATE '2021-06-30')` gives every
-- organisation as odsync knew it on that date.
CREATE OR REPLACE MACRO organisations_as_of(d) AS TABLE
SELECT * FROM latest_history
WHERE valid_from <= d AND (valid_to IS NULL OR valid_to > d) AND change_kind <> 'deleted';
