//! Sources: each upstream service behind one trait, each producing raw records for the canonical
//! model. A source only fetches; parsing, scope checks and quarantine happen in the runner so
//! every source is held to the same rules.

pub mod config;
pub mod csv_bulk;
pub mod fhir;
pub mod http;
pub mod ord;
pub mod scope;
pub mod trud_xml;

use crate::model::states::SourceKind;
use crate::model::tables::CodeSystemRole;
use crate::model::{Quarantined, RawRecord};
use chrono::NaiveDate;
use serde::Serialize;

/// What a run asks a source for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FetchMode {
    /// Everything in scope; replaces the previous snapshot.
    Baseline { reason: String },
    /// Records changed since a date; applied to the previous snapshot.
    Incremental { since: NaiveDate },
    /// Just these codes; applied to the previous snapshot.
    Codes { codes: Vec<crate::model::code::OdsCode> },
}

impl FetchMode {
    pub fn name(&self) -> &'static str {
        match self {
            FetchMode::Baseline { .. } => "baseline",
            FetchMode::Incremental { .. } => "incremental",
            FetchMode::Codes { .. } => "codes",
        }
    }
}

/// Counters a fetch reports (into the run summary, the manifest and tests).
#[derive(Debug, Default, Clone, Serialize)]
pub struct FetchMetrics {
    /// Codes the listing step returned (search pages or `/sync`), after de-duplication.
    pub listed: u64,
    /// `X-Total-Count` summed over the listing requests, where the server sent it.
    pub total_count_header: Option<u64>,
    pub records_fetched: u64,
    pub records_failed: u64,
    pub http: http::HttpMetrics,
    pub elapsed_ms: u64,
    /// Relationships found by a source that fetches them apart from the records (FHIR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationships: Option<u64>,
}

/// What a source hands the runner.
pub struct Fetched {
    pub records: Vec<RawRecord>,
    /// Records that could not be fetched or split (404, broken CSV line), with their reason.
    pub failures: Vec<Quarantined>,
    /// True when `records` is the whole scope; false when it is a delta to apply.
    pub complete: bool,
    /// ORD `/roles`, stored with the snapshot (None for sources that have no code system).
    pub code_system: Option<Vec<CodeSystemRole>>,
    /// Records ODS withdrew (ORD `/notifications`, fetched by incremental runs).
    pub deletions: Vec<crate::model::Deletion>,
    pub metrics: FetchMetrics,
    /// The source URL or path, safe to record (no credentials).
    pub location: String,
    /// Request parameters worth recording in the manifest (scope, since date, …).
    pub parameters: serde_json::Value,
    /// The parsed form of `records`, index for index, when the source had to parse them anyway
    /// (TRUD XML resolves duplicates and applies the scope while reading): the runner then does
    /// not parse them again. Empty when the source leaves parsing to the runner.
    pub parsed: Vec<crate::model::OrgRecord>,
    /// The date the data describes, when the source states it (a TRUD release's publication
    /// date): a baseline from it puts the watermark there, so API deltas start from that day.
    pub as_of: Option<NaiveDate>,
    /// Records the source read and left out because the pipeline scope excludes them.
    pub out_of_scope: u64,
}

/// `odsync check` results.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub location: String,
    pub reachable: bool,
    pub latency_ms: u64,
    pub total_in_scope: Option<u64>,
    pub sample_code: Option<String>,
    pub sample_name: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(
        "{url}: X-Total-Count says {expected} organisations but paging returned {got} distinct codes\nHelp: the listing changed while paging or the server pages differently; run again, and if it persists report it (nothing was committed)"
    )]
    TotalCountMismatch { url: String, expected: u64, got: u64 },
    #[error("{url}: unexpected response: {message}")]
    BadResponse { url: String, message: String },
    #[error(
        "{url}: the server refused the /sync date {since} (HTTP 406: ORD keeps 185 days of changes)\nHelp: run `odsync run <pipeline> --full` for a new baseline"
    )]
    SyncTooOld { url: String, since: NaiveDate },
    #[error("`{location}` is not a zip file: it starts with {looks_like}\nHelp: {help}")]
    NotAZip {
        location: String,
        looks_like: String,
        help: String,
    },
    #[error("`{location}`: {message}")]
    Csv { location: String, message: String },
    #[error("`{location}`: {message}\nHelp: {help}")]
    Trud {
        location: String,
        message: String,
        help: String,
    },
    #[error("cannot read `{path}`: {source}\nHelp: check `source.location` in the pipeline file")]
    Io { path: String, source: std::io::Error },
}

pub trait Source: Send + Sync {
    /// `ord`, `csv`, …: recorded in runs and manifests.
    fn kind(&self) -> SourceKind;
    /// Whether `FetchMode::Incremental` / `Codes` are meaningful (a bulk file is always whole).
    fn supports_deltas(&self) -> bool;
    /// `retry_codes`: codes earlier runs could not fetch (pending), asked for again by a delta.
    fn fetch(&self, mode: &FetchMode, retry_codes: &[String]) -> Result<Fetched, SourceError>;
    fn check(&self) -> Result<CheckReport, SourceError>;
}

impl crate::error::Classify for SourceError {
    fn class(&self) -> crate::error::ErrorClass {
        use crate::error::ErrorClass::*;
        match self {
            SourceError::Http(e) => e.class(),
            // The upstream answered inconsistently, or the file cannot be read.
            SourceError::TotalCountMismatch { .. } | SourceError::BadResponse { .. } | SourceError::Io { .. } => {
                Environment
            }
            // The pipeline points at the wrong file, or the watermark needs a `--full` run.
            SourceError::SyncTooOld { .. }
            | SourceError::NotAZip { .. }
            | SourceError::Csv { .. }
            | SourceError::Trud { .. } => User,
        }
    }
}
