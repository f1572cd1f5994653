//! odsync: a batch ETL for NHS Organisation Data Service (ODS) data.
//!
//! The pipeline, one module per stage:
//! `sources` (ORD API, bulk CSV) fetch raw records → `model` parses them into the canonical
//! tables (quarantining what cannot be parsed) → `snapshot` commits an immutable, versioned
//! Parquet snapshot → `diff` computes the field-level changes from the previous version →
//! `catalog` records the run in DuckDB and exposes views over every snapshot and output.
//! `pipeline` holds the declarative pipeline files and the runner that sequences the stages;
//! `server` is the local ORD-compatible server used by tests and the demo.
//! See ARCHITECTURE.md for the data flow and invariants.

pub mod bench;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod ddl;
pub mod diff;
pub mod engine;
pub mod env_vars;
pub mod error;
pub mod gc;
pub mod history;
pub mod merge;
pub mod model;
pub mod pipeline;
pub mod printer;
pub mod redact;
pub mod report;
pub mod server;
pub mod snapshot;
pub mod sources;
pub mod sql;
pub mod status;
pub mod verify;
pub mod warehouse;

pub use commands::run_cli;
