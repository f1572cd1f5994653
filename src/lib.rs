//! odsync: a batch ETL for NHS Organisation Data Service (ODS) data.
//!
//! The pipeline, one module per stage:
//! `sources` (ORD API, bulk CSV) fetch raw records → `model` parses them into the canonical
//! tables (quarantining what cannot be parsed) → `snapshot` commits an immutable, versioned
//! Parquet snapshot → `catalog` records the run in DuckDB and exposes views over every snapshot.
//! `pipeline` holds the declarative pipeline files and the runner that sequences the stages;
//! `server` is the local ORD-compatible server used by tests and the demo.
//! See ARCHITECTURE.md for the data flow and invariants.

pub mod catalog;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod env_vars;
pub mod error;
pub mod model;
pub mod pipeline;
pub mod printer;
pub mod server;
pub mod snapshot;
pub mod sources;

pub use commands::run_cli;
