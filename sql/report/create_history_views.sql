-- As-of queries over the SCD2 history of ODS organisations (latest_history: each pipeline's
-- newest history version). `SELECT * FROM organisations_as_of(DATE '2021-06-30')` gives every
-- organisation as odsync knew it on that date.
--
-- Future-dated events take effect from their date, not from the day ODS announced them: an
-- organisation whose start date (legal, else operational) is after `d` is not there yet, and one
-- whose end date (legal, else operational) is on or before `d` is `Inactive` in `status_as_of`
-- even when the snapshot of that day still said Active. `status` stays what ODS sent.
CREATE OR REPLACE MACRO organisations_as_of(d) AS TABLE
SELECT
    *,
    CASE WHEN coalesce(legal_end, operational_end) <= d THEN 'Inactive' ELSE status END AS status_as_of
FROM latest_history
WHERE valid_from <= d AND (valid_to IS NULL OR valid_to > d) AND change_kind <> 'deleted'
  AND NOT coalesce(coalesce(legal_start, operational_start) > d, false);

-- What ODS has announced for a later date: organisations that open or close after the day of
-- their pipeline's latest snapshot (the run's clock, `ODSYNC_NOW` when set, not the machine's)
-- and successions whose legal start is still to come. They are kept in the snapshots as ODS
-- sends them and marked here (and in `mergers.future_dated`) with the date they take effect.
CREATE OR REPLACE VIEW future_dated AS
SELECT o.pipeline, o.code, 'opens' AS event, coalesce(o.legal_start, o.operational_start) AS effective_date, NULL AS other_code
FROM latest_organisations AS o JOIN snapshot_dates AS d USING (pipeline)
WHERE coalesce(o.legal_start, o.operational_start) > d.snapshot_date
UNION ALL
SELECT o.pipeline, o.code, 'closes', coalesce(o.legal_end, o.operational_end), NULL
FROM latest_organisations AS o JOIN snapshot_dates AS d USING (pipeline)
WHERE coalesce(o.legal_end, o.operational_end) > d.snapshot_date
UNION ALL
SELECT e.pipeline, e.from_code, 'succeeded', e.legal_start, e.to_code
FROM successor_edges AS e JOIN snapshot_dates AS d USING (pipeline)
WHERE e.legal_start > d.snapshot_date;
