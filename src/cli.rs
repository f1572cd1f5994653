//! Command-line types (clap derive) only: no logic here. `commands/` turns these into settings.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "odsync",
    version,
    about = "Batch ETL for NHS Organisation Data Service (ODS) data: fetch, snapshot, record runs",
    after_help = "Examples:\n  odsync run nhs_trusts              # nightly job: baseline or incremental as needed\n  odsync run nhs_trusts --full       # force a full baseline\n  odsync snapshots list nhs_trusts\n  odsync runs --json\n\nExit codes: 0 ok, 1 user or data problem (bad pipeline, upstream refused, lock held), 2 unexpected."
)]
pub struct Cli {
    /// Warehouse directory holding snapshots and catalog.duckdb [default: pipeline's `warehouse`, else `snapshots`]
    #[arg(long, global = true, env = "ODSYNC_WAREHOUSE")]
    pub warehouse: Option<PathBuf>,
    /// Directory of pipeline files
    #[arg(long, global = true, env = "ODSYNC_PIPELINES_DIR", default_value = "pipelines")]
    pub pipelines_dir: PathBuf,
    /// Print a machine-readable JSON summary on stdout instead of text
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a pipeline's scope and commit a new snapshot version (the scheduled job)
    #[command(
        after_help = "Examples:\n  odsync run nhs_trusts\n  odsync run nhs_trusts --full\n  odsync run nhs_trusts --codes RWR,RVV --json\n\nThe first run, a run with --full, or one whose watermark is more than 185 days old is a baseline\n(search the whole scope); otherwise an ORD pipeline runs incrementally from /sync. A run whose\ncontent equals the latest snapshot records `unchanged` and writes no version. A failed run\ncommits nothing and does not move the watermark."
    )]
    Run(RunArgs),
    /// Test the connection: reachability, latency, and that one record parses
    #[command(after_help = "Example:\n  odsync check nhs_trusts")]
    Check(CheckArgs),
    /// List or show snapshot versions
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
    /// List recorded runs (newest first)
    #[command(after_help = "Examples:\n  odsync runs\n  odsync runs nhs_trusts --limit 5 --json")]
    Runs(RunsArgs),
    /// Run SQL against the catalog (runs table and snapshot views) and print the result
    #[command(
        after_help = "Examples:\n  odsync query \"SELECT code, name FROM latest_organisations WHERE pipeline = 'demo' LIMIT 5\"\n  odsync query \"SELECT * FROM runs\" --json\n\nViews: snapshot_<table> and latest_<table> for organisations, roles, relationships, successors,\ncode_system_roles, quarantine, raw; snapshot_manifests; latest_snapshots. The same queries work in\nthe duckdb CLI or Python on <warehouse>/catalog.duckdb."
    )]
    Query(QueryArgs),
    /// Check pipeline files and report every problem at once
    #[command(
        after_help = "Examples:\n  odsync validate              # every file in the pipelines directory\n  odsync validate nhs_trusts demo"
    )]
    Validate(ValidateArgs),
    /// Serve ORD fixture states on 127.0.0.1 (the local ORD-compatible test server)
    #[command(
        after_help = "Example:\n  odsync serve --states tests/fixtures/ord-states --state demo-2021 --port-file /tmp/ord.port\n\nSwitch state: curl -X POST http://127.0.0.1:PORT/_admin/state/demo-2025-07\nInject faults: curl -X POST -d '[{\"path_contains\":\"/organisations/RWR\",\"action\":{\"kind\":\"status\",\"status\":503}}]' http://127.0.0.1:PORT/_admin/faults"
    )]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline name (pipelines/<name>.toml) or path to a .toml file
    pub pipeline: String,
    /// Force a baseline instead of an incremental run
    #[arg(long, conflicts_with = "codes")]
    pub full: bool,
    /// Refresh only these ODS codes (comma-separated) on top of the latest snapshot
    #[arg(long, value_delimiter = ',')]
    pub codes: Option<Vec<String>>,
    /// Override the ORD base URL
    #[arg(long, env = "ODSYNC_ORD_BASE_URL")]
    pub base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub pipeline: String,
    #[arg(long, env = "ODSYNC_ORD_BASE_URL")]
    pub base_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// List the versions of a pipeline's snapshots
    List { pipeline: String },
    /// Show one version's manifest (default: the latest)
    Show {
        pipeline: String,
        #[arg(long)]
        version: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this pipeline's runs
    pub pipeline: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// One SQL statement (a SELECT)
    pub sql: String,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline names or paths [default: every .toml in the pipelines directory]
    pub pipelines: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of fixture states (folders with a state.toml)
    #[arg(long)]
    pub states: PathBuf,
    /// State to serve first
    #[arg(long)]
    pub state: String,
    /// Port on 127.0.0.1 (0 = any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Write the chosen port to this file once listening
    #[arg(long)]
    pub port_file: Option<PathBuf>,
}
