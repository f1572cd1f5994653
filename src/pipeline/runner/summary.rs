//! What a run reports: its record counts, its typed summary (printed, `--json`, the report) and stage times.

use super::*;

/// Record counts of one run.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct RecordCounts {
    /// Records received from the source this run.
    pub fetched: u64,
    /// Of those, byte-identical to the previous snapshot's copy.
    pub unchanged: u64,
    /// Quarantined records in the snapshot (new failures plus ones carried forward).
    pub quarantined: u64,
    /// Fetched records whose roles or status are outside the pipeline scope (left out, counted).
    pub out_of_scope: u64,
    /// Organisations removed because ODS announced their deletion (`/notifications`).
    pub deleted_by_ods: u64,
    /// Organisations in the resulting snapshot.
    pub organisations: u64,
    /// Of those, organisations whose rows were carried forward from the previous snapshot
    /// column-wise instead of being parsed again: the ones a delta did not fetch, and the records
    /// of a whole file byte-identical to their previous copy.
    pub carried: u64,
    /// Codes whose new version could not be fetched or parsed (within `[quality]` limits): they
    /// keep their previous version, the watermark stays, and every later run asks for them.
    pub pending: Vec<String>,
    /// Closed organisations a bulk file no longer lists (aged out of its publication window):
    /// kept as last published, not deleted (see `pipeline::window`).
    pub left_window: u64,
    /// Up to ten of their codes, in code order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_window_examples: Vec<String>,
}

/// The typed result of `odsync run`: printed, written to `--json`, checked by tests.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub pipeline: String,
    /// `succeeded` (a new version), `unchanged` (same content as the latest version) or `dry_run`.
    pub status: crate::model::states::RunStatus,
    pub mode: String,
    pub mode_reason: String,
    pub snapshot_version: u64,
    pub previous_version: Option<u64>,
    pub snapshot_path: PathBuf,
    pub watermark_before: Option<NaiveDate>,
    pub watermark_after: Option<NaiveDate>,
    pub records: RecordCounts,
    pub tables: BTreeMap<String, u64>,
    pub fetch: FetchMetrics,
    pub content_hash: String,
    /// Changes from the previous version (absent on a first run or an unchanged run).
    pub diff: Option<crate::diff::DiffSummary>,
    /// The trust-table merge of this snapshot (a no-op when no input changed).
    pub merge: Option<crate::merge::MergeReport>,
    /// Publication shifts the guard found and `--accept-shift` let through.
    pub accepted_shift: Vec<String>,
    /// Primary roles in the snapshot that the role mapping does not map (counts and examples).
    pub unmapped_roles: Vec<crate::pipeline::roles::UnmappedRole>,
    /// Role codes removed, renamed or added in ORD's `/roles` since the previous snapshot.
    pub code_system_changes: Vec<crate::pipeline::roles::CodeSystemChange>,
    /// Wall time of each stage, in the order they ran (not in the manifest: timings are not data).
    pub stages: Vec<StageTime>,
    pub duration_ms: u64,
    /// The run's HTML report (`<pipeline>/_reports/<run id>.html`), written after the commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: crate::model::states::Stage,
    pub ms: u64,
}
