//! The one integration-test binary: the real `odsync` binary against the local ORD-compatible
//! server and the real ODS files under tests/fixtures.

mod common;

mod architecture;
mod cases;
mod catalog;
mod cli;
mod csv_source;
mod diff;
mod fault_matrix;
mod fhir_source;
mod layout;
mod merge;
mod ods_truth;
mod operations;
mod ord_source;
mod trud;
mod trust;
