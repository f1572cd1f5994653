//! Every environment variable odsync reads, in one place. Precedence everywhere: command-line flag,
//! then environment variable, then pipeline file, then built-in default.

/// Warehouse directory (snapshots and `catalog.duckdb`); default `snapshots`.
pub const ODSYNC_WAREHOUSE: &str = "ODSYNC_WAREHOUSE";
/// Directory holding `<pipeline>.toml` files; default `pipelines`.
pub const ODSYNC_PIPELINES_DIR: &str = "ODSYNC_PIPELINES_DIR";
/// Overrides an ORD pipeline's `source.base_url` (the demo and tests point it at the local server).
pub const ODSYNC_ORD_BASE_URL: &str = "ODSYNC_ORD_BASE_URL";
/// Overrides a FHIR pipeline's `source.base_url` (the demo points it at the local server).
pub const ODSYNC_FHIR_BASE_URL: &str = "ODSYNC_FHIR_BASE_URL";
/// Contact put in the User-Agent (an email or URL), overriding `http.contact`.
pub const ODSYNC_CONTACT: &str = "ODSYNC_CONTACT";
/// Pins the clock (RFC 3339 or YYYY-MM-DD): deterministic runs in tests and the demo.
pub const ODSYNC_NOW: &str = "ODSYNC_NOW";
/// Log filter for stderr (tracing `EnvFilter` syntax, e.g. `info`, `odsync=debug`); default `warn`.
pub const ODSYNC_LOG: &str = "ODSYNC_LOG";

/// The ODS FHIR API key (the default `source.api_key_env` of a `fhir` pipeline). Never logged.
pub const ODSYNC_FHIR_API_KEY: &str = "ODSYNC_FHIR_API_KEY";
/// DuckDB memory limit of the merge and history stages (default half the machine's memory, at least 2 GB; they spill beyond it).
pub const ODSYNC_DUCKDB_MEMORY: &str = "ODSYNC_DUCKDB_MEMORY";
/// Seconds a command waits for another process to let go of `catalog.duckdb` (default 30). A run
/// that has committed never fails for it: its row waits in `<pipeline>/.pending-runs/`.
pub const ODSYNC_CATALOG_WAIT_SECS: &str = "ODSYNC_CATALOG_WAIT_SECS";
/// Test builds only (debug assertions): abort the process at the named step of the commit
/// protocol, as `kill -9` would (`commit:staged`, `commit:journal`, `commit:first-move`,
/// `commit:moved`, `run:staged`, `run:committed`, `merge:committed`, `resolve:recorded`).
pub const ODSYNC_FAILPOINT: &str = "ODSYNC_FAILPOINT";
