//! Whether what a run fetched can be shown complete (counts, dated releases); else nothing is committed.

use super::*;

/// The run could not show that what it fetched is complete; nothing was committed.
#[derive(Debug, thiserror::Error)]
#[error("{message}\nHelp: {help}")]
pub struct CompletenessError {
    pub message: String,
    pub help: String,
}

impl Runner<'_> {
    /// A baseline from a dated release must leave the deltas a watermark `/sync` still reaches.
    pub(super) fn check_baseline_date(&self, fetched: &crate::sources::Fetched) -> Result<(), CompletenessError> {
        let Some(as_of) = fetched.as_of else {
            return Ok(());
        };
        let overlap = match &self.pipeline.config.source {
            crate::pipeline::SourceConfig::Ord(o) => o.overlap_days,
            crate::pipeline::SourceConfig::Fhir(f) => f.overlap_days,
            _ => 0,
        };
        let age = (self.clock.today() - as_of).num_days();
        if age + i64::from(overlap) + 1 > SYNC_MAX_DAYS {
            return Err(CompletenessError {
                message: format!(
                    "the baseline release at {} was published on {as_of}, {age} days ago: the deltas from {} cannot reach back that far ({SYNC_MAX_DAYS} days), so the changes since would be missed",
                    fetched.location,
                    self.source.kind()
                ),
                help: "download the latest monthly release from TRUD and point `baseline.location` at it, or remove `[baseline]` to baseline from the API. Nothing was committed".into(),
            });
        }
        Ok(())
    }

    /// What the run must show before it may commit: failures within the `[quality]` limits, and
    /// a baseline that found something (and, from FHIR, some relationships).
    pub(super) fn check_completeness(
        &self,
        source: &dyn Source,
        mode: &FetchMode,
        fetched: &crate::sources::Fetched,
        records_len: usize,
        failed: &[Quarantined],
        organisations: usize,
    ) -> Result<(), CompletenessError> {
        let quality = &self.pipeline.config.quality;
        let name = &self.pipeline.config.name;
        let examples = |n: usize| -> String {
            let mut text: Vec<String> = failed
                .iter()
                .take(n)
                .map(|q| {
                    format!(
                        "  - {}{}: {}",
                        q.code.as_deref().map(|c| format!("{c} at ")).unwrap_or_default(),
                        q.source,
                        q.reason
                    )
                })
                .collect();
            if failed.len() > n {
                text.push(format!("  … and {} more", failed.len() - n));
            }
            text.join("\n")
        };
        if source.supports_deltas() {
            let listed = fetched.metrics.listed.max(records_len as u64);
            let allowed = quality.allowed_failed_records(listed);
            if failed.len() as u64 > allowed {
                return Err(CompletenessError {
                    message: format!(
                        "{} of {listed} records could not be fetched or read, even when asked again (the pipeline allows {allowed}):\n{}",
                        failed.len(),
                        examples(10)
                    ),
                    help: format!(
                        "nothing was committed and the watermark did not move, so the next run asks for them again. If the source keeps failing for a few records, allow them in `[quality]` of `{name}` (max_failed_records or max_failed_share): they then keep their previous version and are retried by every run until they succeed"
                    ),
                });
            }
        } else {
            let lines = fetched.metrics.listed;
            let allowed = quality.allowed_bad_lines(lines);
            if failed.len() as u64 > allowed {
                return Err(CompletenessError {
                    message: format!(
                        "{} of {lines} lines of `{}` are not usable rows (the pipeline allows {allowed}): the file looks damaged or is not the configured kind of file:\n{}",
                        failed.len(),
                        fetched.location,
                        examples(10)
                    ),
                    help: format!(
                        "check the file (download it again); if these lines are expected, raise `max_bad_lines` or `max_bad_lines_share` in `[quality]` of `{name}`. Nothing was committed"
                    ),
                });
            }
        }
        if matches!(mode, FetchMode::Baseline { .. }) && organisations == 0 && !quality.allow_empty {
            return Err(CompletenessError {
                message: format!(
                    "the baseline found no organisation in scope at {} ({} listed, {} fetched)",
                    fetched.location, fetched.metrics.listed, fetched.metrics.records_fetched
                ),
                help: format!(
                    "an empty answer is almost always an upstream fault; check the scope with `odsync check {name}`. If the scope can really be empty, set `allow_empty = true` in `[quality]`. Nothing was committed"
                ),
            });
        }
        if let Some(0) = fetched.metrics.relationships
            && quality.require_relationships
            && (fetched.complete || records_len >= 10)
            && records_len > 0
        {
            return Err(CompletenessError {
                message: format!(
                    "the OrganizationAffiliation searches returned no relationship for {records_len} organisations: every ODS organisation has some (at least its geography)"
                ),
                help: format!(
                    "the affiliation answers look empty or broken; run again. If this scope really has no relationships, set `require_relationships = false` in `[quality]` of `{name}`. Nothing was committed"
                ),
            });
        }
        Ok(())
    }
}

/// The upstream answered less than a complete pull.
impl crate::error::Classify for CompletenessError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Environment
    }
}
