//! The fetch stage: what earlier runs left to retry, the fetch itself, and the previous
//! snapshot's raw records with which the fetched ones are compared.

use super::*;

/// What the fetch stage hands on.
pub(super) struct Fetch {
    pub(super) fetched: crate::sources::Fetched,
    /// The previous snapshot's raw records (a delta is applied to them; a failed record of any
    /// run keeps its previous copy).
    pub(super) previous_raw: Vec<RawRecord>,
    /// The previous snapshot's `raw` table as read (the records above point into it): a delta
    /// carries the untouched records' rows from these batches instead of decoding the file again.
    pub(super) previous_raw_batches: Vec<arrow::array::RecordBatch>,
    pub(super) previous_quarantine: Vec<Quarantined>,
    /// Codes of the fetched records byte-identical to their previous copy.
    pub(super) unchanged: std::collections::HashSet<String>,
    pub(super) laps: StageTimes,
}

impl Runner<'_> {
    pub(super) fn fetch_stage(&self, step: Step<'_>) -> Result<Fetch, (Stage, anyhow::Error)> {
        let Step {
            store,
            source,
            from_baseline_source,
            previous,
            mode,
            ..
        } = step;
        let config = &self.pipeline.config;
        let baseline = matches!(mode, FetchMode::Baseline { .. });
        let tolerate = |what: &str, e| tolerate_damage(baseline, &config.name, what, e);
        let previous_quarantine = match previous.map(|m| store.read_quarantine(m.version)) {
            Some(Ok(q)) => q,
            Some(Err(e)) => {
                tolerate("quarantine", e)?;
                Vec::new()
            }
            None => Vec::new(),
        };
        // Codes earlier runs could not fetch (quarantined with a code by an API source): every
        // later delta asks for them again until they succeed.
        let retry_codes: Vec<String> = match previous {
            // (Records a TRUD baseline quarantined are asked of the API by the deltas after it.)
            Some(m)
                if source.supports_deltas()
                    && (m.source.kind == source.kind()
                        || self.baseline_source.as_ref().is_some_and(|b| b.kind() == m.source.kind)) =>
            {
                previous_quarantine
                    .iter()
                    .filter_map(|q| q.code.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        };
        let mut laps = StageTimes::start();
        let fetched = source.fetch(mode, &retry_codes).map_err(|e| (Stage::Fetch, e.into()))?;
        laps.lap(Stage::Fetch);
        if from_baseline_source {
            self.check_baseline_date(&fetched)
                .map_err(|e| (Stage::Fetch, e.into()))?;
        }

        // A baseline needs the previous records only to keep the previous copy of a record that
        // fails; a delta is applied to them.
        let (previous_raw, previous_raw_batches) = match previous.map(|m| store.read_raw_columns(m.version)) {
            Some(Ok(raw)) => raw,
            Some(Err(e)) => {
                tolerate("raw records", e)?;
                Default::default()
            }
            None => Default::default(),
        };
        // Only a delta carries raw rows forward (a whole file's raw rows are today's).
        let previous_raw_batches = if fetched.complete {
            Vec::new()
        } else {
            previous_raw_batches
        };
        laps.lap(Stage::ReadPrevious);
        // Byte-identical to the previous copy (a map of borrowed payloads: no hashing needed).
        let previous_payload: std::collections::HashMap<&str, &[u8]> = previous_raw
            .iter()
            .map(|r| (r.code.as_str(), r.payload.as_slice()))
            .collect();
        let unchanged: std::collections::HashSet<String> = fetched
            .records
            .iter()
            .filter(|r| previous_payload.get(r.code.as_str()) == Some(&r.payload.as_slice()))
            .map(|r| r.code.clone())
            .collect();
        drop(previous_payload);

        Ok(Fetch {
            fetched,
            previous_raw,
            previous_raw_batches,
            previous_quarantine,
            unchanged,
            laps,
        })
    }
}
