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
    /// Print nothing on success but what --json asks for: no summary text, no progress, logs
    /// only for errors (the exit code says how it went)
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Log lines on stderr as text, or as one JSON object per line (with the run id and stage)
    /// for log collectors
    #[arg(long, global = true, env = "ODSYNC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch a pipeline's scope and commit a new snapshot version (the scheduled job)
    #[command(
        after_help = "Examples:\n  odsync run nhs_trusts\n  odsync run nhs_trusts --full\n  odsync run nhs_trusts --codes RWR,RVV --json\n  odsync run gp_practices --dry-run      # what tonight's run would change, nothing committed\n\nThe first run, a run with --full, or one whose watermark is more than 185 days old is a baseline\n(search the whole scope); otherwise an ORD pipeline runs incrementally from /sync. A run whose\ncontent equals the latest snapshot records `unchanged` and writes no version. A failed run\ncommits nothing and does not move the watermark."
    )]
    Run(RunArgs),
    /// Test the connection: reachability, latency, and that one record parses
    #[command(after_help = "Example:\n  odsync check nhs_trusts")]
    Check(CheckArgs),
    /// Field-level changes between two snapshot versions (default: the latest two)
    #[command(
        after_help = "Examples:\n  odsync diff nhs_trusts\n  odsync diff nhs_trusts --from 3 --to 7 --json\n\nChange kinds: added, deleted, closed, reopened, opened, renamed, reparented, succeeded, changed,\nmetadata; each organisation counts once per kind. Recoding events: the `recodings` view.\nEvery run writes the changes into the previous version as <warehouse>/<pipeline>/changes/version=N/part-0.parquet;\nquery them with `odsync query \"SELECT * FROM changes_latest\"`."
    )]
    Diff(DiffArgs),
    /// Merge the latest snapshot into the trust table now (runs also merge, as their last stage)
    #[command(
        after_help = "Example:\n  odsync merge nhs_trusts\n\nA merge whose inputs (snapshot, local table, overrides, resolutions) are unchanged is a no-op."
    )]
    Merge(PipelineArg),
    /// List, show and resolve merge conflicts
    #[command(subcommand)]
    Conflicts(ConflictsCommand),
    /// Where each value of the merged trust table came from
    #[command(
        after_help = "Examples:\n  odsync provenance nhs_trusts RWR\n  odsync provenance nhs_trusts RWR --field name --json"
    )]
    Provenance(ProvenanceArgs),
    /// SCD2 history of an organisation, or every organisation as of a date
    #[command(
        after_help = "Examples:\n  odsync history nhs_trusts RWR\n  odsync history nhs_trusts --as-of 2021-06-30\n  odsync history nhs_trusts RWR --as-of 2021-06-30 --json"
    )]
    History(HistoryArgs),
    /// List or show snapshot versions
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
    /// Is each pipeline healthy? Last run and success, watermark age, pending, quarantine, open conflicts
    #[command(
        after_help = "Examples:\n  odsync status                       # every pipeline in the warehouse\n  odsync status nhs_trusts --json\n  odsync status --max-hours-since-success 26 --max-open-conflicts 50   # from cron or a monitor\n\nExit codes: 0 every pipeline healthy, 3 a threshold is crossed (the problems are listed),\n1 a user problem (unknown pipeline), 2 unexpected."
    )]
    Status(StatusArgs),
    /// List recorded runs (newest first)
    #[command(after_help = "Examples:\n  odsync runs\n  odsync runs nhs_trusts --limit 5 --json")]
    Runs(RunsArgs),
    /// Check a pipeline's (or every pipeline's) files against their manifests; --repair moves damaged latest versions aside
    #[command(
        after_help = "Examples:\n  odsync verify\n  odsync verify nhs_trusts --json\n  odsync verify nhs_trusts --repair   # then: odsync run nhs_trusts --full\n\nChecks every table file's size and sha256 against its manifest and its Parquet footer, version\ncontinuity, the outputs of every published version (and none for unpublished ones), the\nresolutions log and an unfinished commit. Exit 1 names each problem with the command that repairs it."
    )]
    Verify(VerifyArgs),
    /// Remove old versions of a pipeline, never the latest nor what merges, history or open conflicts need
    #[command(
        after_help = "Examples:\n  odsync gc nhs_trusts --keep 30 --dry-run\n  odsync gc nhs_trusts --keep 10 --keep-days 90\n\nA version is kept when either rule keeps it (one of the last N, or younger than D days), and\nalways: the latest snapshot, the snapshot each kept merge was made on, the latest history and merge.\n--dry-run lists what would go and why the rest stays."
    )]
    Gc(GcArgs),
    /// Move a warehouse written before one directory per table into the current layout
    #[command(
        after_help = "Examples:\n  odsync migrate\n  odsync migrate --warehouse /data/ods --json\n\nEvery pipeline folder of the warehouse still in the first layout (<pipeline>/ods/version=N/<table>.parquet)\nis moved to <pipeline>/<table>/version=N/part-0.parquet with its manifests under <pipeline>/_meta/,\nthrough a commit journal (a crash finishes on the next command), and the catalog views are\nrecreated. `run`, `merge` and `gc` do this on their own; run it after an upgrade so that `status`,\n`query` and analysts' readers see the new layout at once. Nothing to do is not an error."
    )]
    Migrate,
    /// Print external-table statements for a pipeline's table directories, or the table reference
    #[command(
        after_help = "Examples:\n  odsync ddl demo --dialect duckdb\n  odsync ddl nhs_trusts --dialect spark --location s3://lake/odsync/nhs_trusts --schema ods\n  odsync ddl nhs_trusts --dialect trino --location s3://lake/odsync/nhs_trusts\n  odsync ddl nhs_trusts --dialect bigquery --location gs://lake/odsync/nhs_trusts --schema my_dataset\n  odsync ddl demo --dialect markdown > docs/tables.md\n\nOne statement per table directory (<pipeline>/<table>/version=N/part-0.parquet), with `version` as the\npartition column; the columns are read from each table's latest Parquet file. --location is the pipeline\nfolder as the engine sees it (default: its local path)."
    )]
    Ddl(DdlArgs),
    /// Write the HTML report of a pipeline's run (default: its latest run)
    #[command(
        after_help = "Examples:\n  odsync report demo\n  odsync report nhs_trusts --run 20250716T020000Z-nhs_trusts-0042 --out /tmp/run.html\n\nEvery run writes its report to <warehouse>/<pipeline>/_reports/<run id>.html (and latest.html); this\nwrites it again from the saved run summary and the committed warehouse (with the recent runs as they\nare now). The page is self-contained: open it offline, print it, mail it."
    )]
    Report(ReportArgs),
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
    /// Benchmark snapshot write, diff and merge on synthetic data (`make bench`)
    #[command(hide = true)]
    #[cfg(feature = "testkit")]
    Bench(BenchArgs),
    /// Serve ORD fixture states on 127.0.0.1 (the local ORD-compatible test server)
    #[command(
        after_help = "Example:\n  odsync serve --states tests/fixtures/ord-states --state demo-2021 --port-file /tmp/ord.port\n\nSwitch state: curl -X POST http://127.0.0.1:PORT/_admin/state/demo-2025-07\nInject faults: curl -X POST -d '[{\"path_contains\":\"/organisations/RWR\",\"action\":{\"kind\":\"status\",\"status\":503}}]' http://127.0.0.1:PORT/_admin/faults"
    )]
    #[cfg(feature = "testkit")]
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
    /// Override the FHIR base URL
    #[arg(long, env = "ODSYNC_FHIR_BASE_URL")]
    pub fhir_base_url: Option<String>,
    /// Commit even if the snapshot moves more than the pipeline's `[guard]` limits (a
    /// publication shift); recorded in the run and the manifest
    #[arg(long)]
    pub accept_shift: bool,
    /// Fetch, parse, diff and merge in a scratch area and report what would change and which
    /// conflicts would open; commit nothing, move no watermark, record no run
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PipelineArg {
    pub pipeline: String,
}

#[derive(Debug, Subcommand)]
pub enum ConflictsCommand {
    /// Conflicts of the latest merge (default: open and ignored ones)
    List {
        pipeline: String,
        /// Include resolved and superseded conflicts
        #[arg(long)]
        all: bool,
    },
    /// One conflict in full
    Show { pipeline: String, id: String },
    /// Record a resolution; it applies at the next merge (or now, with --merge)
    #[command(
        after_help = "Examples:\n  odsync conflicts resolve nhs_trusts 3f2a9c1b0d4e5f60 --accept-ods\n  odsync conflicts resolve nhs_trusts 3f2a9c1b0d4e5f60 --set \"KINGSTON HOSPITAL\" --reason \"board name\" --merge\n  odsync conflicts resolve nhs_trusts 3f2a9c1b0d4e5f60 --ignore --reason \"awaiting ODS correction\" --until 2026-01-31"
    )]
    Resolve(ResolveArgs),
    /// Record many resolutions from a CSV (conflict_id,resolution,value,reason,until), validated as a whole first
    Apply {
        pipeline: String,
        file: std::path::PathBuf,
        /// Who decided [default: $USER]
        #[arg(long, env = "USER")]
        by: Option<String>,
        /// Merge right away
        #[arg(long)]
        merge: bool,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("resolution").required(true).args(["accept_ods", "keep_local", "set", "ignore"])))]
pub struct ResolveArgs {
    pub pipeline: String,
    /// Conflict id (from `odsync conflicts list`)
    pub id: String,
    /// Take the ODS value
    #[arg(long)]
    pub accept_ods: bool,
    /// Keep the local value
    #[arg(long)]
    pub keep_local: bool,
    /// Use this value instead
    #[arg(long, value_name = "VALUE")]
    pub set: Option<String>,
    /// Keep the local value and stop reporting this conflict (needs --reason; --until to lapse)
    #[arg(long, requires = "reason")]
    pub ignore: bool,
    #[arg(long)]
    pub reason: Option<String>,
    /// Last day an --ignore applies (YYYY-MM-DD)
    #[arg(long, requires = "ignore")]
    pub until: Option<chrono::NaiveDate>,
    /// Who decided [default: $USER]
    #[arg(long, env = "USER")]
    pub by: Option<String>,
    /// Merge right away
    #[arg(long)]
    pub merge: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub pipeline: String,
    pub code: Option<String>,
    /// Show the rows valid on this date (YYYY-MM-DD)
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
}

#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    pub pipeline: String,
    pub code: String,
    #[arg(long)]
    pub field: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub pipeline: String,
    /// Older version [default: the one before --to]
    #[arg(long)]
    pub from: Option<u64>,
    /// Newer version [default: the latest]
    #[arg(long)]
    pub to: Option<u64>,
    /// Changes to list in text output
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub pipeline: String,
    /// Override the ORD base URL
    #[arg(long, env = "ODSYNC_ORD_BASE_URL")]
    pub base_url: Option<String>,
    /// Override the FHIR base URL
    #[arg(long, env = "ODSYNC_FHIR_BASE_URL")]
    pub fhir_base_url: Option<String>,
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
pub struct ReportArgs {
    pub pipeline: String,
    /// The run (its id); default the pipeline's latest run with a saved summary
    #[arg(long)]
    pub run: Option<String>,
    /// Where to write the page (default: <warehouse>/<pipeline>/_reports/<run id>.html)
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DdlDialect {
    Duckdb,
    Spark,
    Trino,
    Bigquery,
    /// The table reference (docs/tables.md): every table, column, type and meaning
    Markdown,
}

#[derive(Debug, Args)]
pub struct DdlArgs {
    pub pipeline: String,
    #[arg(long, value_enum)]
    pub dialect: DdlDialect,
    /// The pipeline folder as the engine sees it (e.g. s3://bucket/odsync/<pipeline>); default its local path
    #[arg(long)]
    pub location: Option<String>,
    /// Schema, database or dataset to create the tables in
    #[arg(long, default_value = "odsync")]
    pub schema: String,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    pub pipeline: String,
    /// Keep the last N snapshot versions
    #[arg(long)]
    pub keep: Option<u64>,
    /// Keep versions younger than D days
    #[arg(long)]
    pub keep_days: Option<u64>,
    /// Say what would be removed and why the rest stays; remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this pipeline (default: every pipeline in the warehouse)
    pub pipeline: Option<String>,
    /// Move damaged versions at the end of the sequence into `<pipeline>/damaged/` and reset the
    /// watermark, so the next run rebuilds them as a baseline
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this pipeline (default: every pipeline in the warehouse)
    pub pipeline: Option<String>,
    /// Unhealthy when the last successful run is older than this
    #[arg(long, default_value_t = 48)]
    pub max_hours_since_success: u64,
    /// Unhealthy when fewer days are left before the watermark is beyond /sync's 185-day reach
    #[arg(long, default_value_t = 30)]
    pub min_sync_days_left: i64,
    /// Unhealthy with more pending codes than this
    #[arg(long, default_value_t = 0)]
    pub max_pending: u64,
    /// Unhealthy with more quarantined records than this (default: no limit)
    #[arg(long)]
    pub max_quarantined: Option<u64>,
    /// Unhealthy with more open conflicts than this (default: no limit)
    #[arg(long)]
    pub max_open_conflicts: Option<u64>,
    /// Unhealthy when the oldest open conflict is older than this many days
    #[arg(long, default_value_t = 30)]
    pub max_conflict_age_days: i64,
}

#[derive(Debug, clap::Args)]
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

#[cfg(feature = "testkit")]
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Organisation counts to run
    #[arg(long, value_delimiter = ',', default_value = "250000,1000000")]
    pub rows: Vec<usize>,
    /// Scratch directory (removed afterwards)
    #[arg(long, default_value = "target/bench")]
    pub work: std::path::PathBuf,
    /// Also write the synthetic pairs here as plain Parquet files, for outside tools
    #[arg(long)]
    pub write_pair: Option<std::path::PathBuf>,
    /// Internal: run one stage in this process (the parent runs each stage in a child)
    #[arg(long, hide = true)]
    pub stage: Option<String>,
}

#[cfg(feature = "testkit")]
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
    /// Instead of serving: write the state as a TRUD XML release zip (derived data) to this path
    #[arg(long)]
    pub write_trud: Option<PathBuf>,
    /// The release's publication date [default: the state's served_on]
    #[arg(long, requires = "write_trud")]
    pub published: Option<chrono::NaiveDate>,
}
