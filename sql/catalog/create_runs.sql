-- The run log: one row per `odsync run`. Inserted as `running` when a run starts and updated when
-- it ends (succeeded | unchanged | failed). "Latest" means highest run_number, not latest clock
-- time: tests and the demo pin the clock, and a pinned clock may go backwards. A run that was killed stays `running` until the next
-- run of its pipeline marks it `abandoned`. The incremental watermark is read from here: it is the
-- watermark_after of the latest succeeded or unchanged run, so a failed run never moves it.
CREATE TABLE IF NOT EXISTS runs (
    run_id              VARCHAR PRIMARY KEY,
    pipeline            VARCHAR NOT NULL,
    run_number          BIGINT NOT NULL,    -- 1, 2, 3 … per pipeline, in the order runs started
    mode                VARCHAR NOT NULL,   -- baseline | incremental | codes
    mode_reason         VARCHAR,            -- why a baseline was chosen, or the /sync date
    source              VARCHAR NOT NULL,   -- ord | csv
    source_location     VARCHAR,            -- URL or path, never with credentials
    started_at          TIMESTAMP NOT NULL,
    finished_at         TIMESTAMP,
    status              VARCHAR NOT NULL,   -- running | succeeded | unchanged | failed | abandoned
    watermark_before    DATE,
    watermark_after     DATE,
    records_fetched     BIGINT,
    records_unchanged   BIGINT,
    records_quarantined BIGINT,
    snapshot_version    BIGINT,
    error               VARCHAR
);

-- Added after the first release: catalogs created before it gain the column here.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS accepted_shift VARCHAR;  -- shifts let through with --accept-shift
ALTER TABLE runs ADD COLUMN IF NOT EXISTS records_pending BIGINT;  -- records kept at their previous version, retried next run
