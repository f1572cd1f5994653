//! odsync: a batch ETL for NHS Organisation Data Service (ODS) data.
//!
//! The pipeline, one module per stage:
//! `sources` (ORD API, bulk CSV) fetch raw records → `model` parses them into the canonical
//! tables (quarantining what cannot be parsed) → `snapshot` commits an immutable, versioned
//! Parquet snapshot → `diff` computes the field-level changes from the previous version →
//! `catalog` records the run in DuckDB and exposes views over every snapshot and output.
//! `pipeline` holds the declarative pipeline files and the runner that sequences the stages;
//! `server` (the local ORD/FHIR-compatible server of the tests and the demo) and `bench` exist only
//! with the `testkit` feature: the shipped library has neither.
//! See ARCHITECTURE.md for the data flow and invariants.

#[cfg(feature = "testkit")]
pub(crate) mod bench;
pub(crate) mod catalog;
pub mod cli;
pub(crate) mod clock;
pub(crate) mod commands;
pub(crate) mod ddl;
pub(crate) mod diff;
pub(crate) mod engine;
pub mod env_vars;
pub mod error;
pub(crate) mod gc;
pub(crate) mod history;
pub(crate) mod merge;
pub(crate) mod model;
pub(crate) mod pipeline;
pub mod printer;
pub mod redact;
pub(crate) mod report;
#[cfg(feature = "testkit")]
pub mod server;
pub(crate) mod snapshot;
pub(crate) mod sources;
pub(crate) mod sql;
pub(crate) mod status;
pub(crate) mod verify;
pub(crate) mod warehouse;

pub use commands::outcome::{exit_code, failure_json};
pub use commands::run_cli;

/// What the integration tests exercise below the command line: the parsers, the diff and the
/// snapshot writer. Everything else is `pub(crate)`; with the `testkit` feature only.
#[cfg(feature = "testkit")]
pub mod testkit {
    pub use crate::diff::{RECODING_MIN_ORGS, diff_tables};
    pub use crate::model::states::SourceKind;
    pub use crate::model::{OrgRecord, Organisation, Period, csv_row, fhir_json, ord_json, ord_xml, tables};
    pub use crate::pipeline::{BUILTIN_ROLE_MAPPING, hierarchy, roles};
    pub use crate::snapshot::write_parquet;
    pub use crate::warehouse::Tables;
}
