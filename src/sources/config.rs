//! The `[source]` (and `[baseline]`) and `[http]` sections of a pipeline file: each source's
//! settings, strict (`deny_unknown_fields`), with their defaults. The pipeline file composes them
//! (`pipeline::PipelineConfig`); `pipeline::build` turns them into a source.

use super::http::HttpSettings;
use crate::model::csv_row::CsvKind;
use crate::model::states::SourceKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_ORD_BASE_URL: &str = "https://directory.spineservices.nhs.uk/ORD/2-0-0";

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    Ord(OrdSourceConfig),
    Csv(CsvSourceConfig),
    Fhir(FhirSourceConfig),
    #[serde(rename = "trud_xml")]
    TrudXml(TrudSourceConfig),
}

impl SourceConfig {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::Ord(_) => SourceKind::Ord,
            SourceConfig::Csv(_) => SourceKind::Csv,
            SourceConfig::Fhir(_) => SourceKind::Fhir,
            SourceConfig::TrudXml(_) => SourceKind::TrudXml,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrdSourceConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Days subtracted from the watermark before calling `/sync`: ODS's nightly future-date
    /// checker bumps LastChangeDate after the fact, so a one-day window would miss changes.
    #[serde(default = "default_overlap_days")]
    pub overlap_days: u32,
}

/// The ODS FHIR R4 API. The API key is never written in the pipeline file: it is read from the
/// environment variable `api_key_env` names, or else from the file `api_key_file` names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSourceConfig {
    #[serde(default = "default_fhir_base_url")]
    pub base_url: String,
    #[serde(default = "default_fhir_key_env")]
    pub api_key_env: String,
    #[serde(default)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// `_count` per search page (the API recommends ≤ 1,000; a 422 halves it).
    #[serde(default = "default_fhir_page_size")]
    pub page_size: u32,
    #[serde(default = "default_overlap_days")]
    pub overlap_days: u32,
}

fn default_fhir_base_url() -> String {
    "https://api.service.nhs.uk/organisation-data-terminology-api/fhir".into()
}
fn default_fhir_key_env() -> String {
    crate::env_vars::ODSYNC_FHIR_API_KEY.into()
}
fn default_fhir_page_size() -> u32 {
    1000
}

impl FhirSourceConfig {
    /// The API key, from the environment variable, else the file. Errors name where it was
    /// looked for, never what was found.
    pub fn api_key(&self) -> Result<String, String> {
        if let Ok(key) = std::env::var(&self.api_key_env)
            && !key.trim().is_empty()
        {
            return Ok(key.trim().to_owned());
        }
        if let Some(path) = &self.api_key_file {
            let key = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the FHIR API key file `{}`: {e}", path.display()))?;
            if key.trim().is_empty() {
                return Err(format!("the FHIR API key file `{}` is empty", path.display()));
            }
            return Ok(key.trim().to_owned());
        }
        Err(format!(
            "the FHIR source needs an API key: set the environment variable {} or name a file in `source.api_key_file`",
            self.api_key_env
        ))
    }
}

/// The TRUD XML release (item 341): a local path, since downloading needs a TRUD account.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrudSourceConfig {
    /// The release zip, an extracted `HSCOrgRefData_Full_*.xml` (or `_Archive_`), or a folder.
    pub location: PathBuf,
    /// The release zip's sha256 as TRUD publishes it (`archiveFileSha256`): checked when given.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Also read the archive file (organisations closed on or before 2017-03-31).
    #[serde(default = "yes")]
    pub archive: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// Which ODS file this is (etr, ets, epraccur, eccg, wlhb, wlhbsite).
    pub kind: CsvKind,
    /// A path or an http(s) URL, to a `.csv` or a `.zip` holding one.
    pub location: String,
    /// Overrides the primary role the file kind implies.
    #[serde(default)]
    pub primary_role: Option<String>,
    /// The CSV inside a zip, when it holds more than one.
    #[serde(default)]
    pub zip_entry: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// ORD asks callers to stay below 5 requests per second.
    #[serde(default = "default_rps")]
    pub requests_per_second: f64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff_base")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Put in the User-Agent so ODS can reach whoever runs this job (ODSYNC_CONTACT overrides).
    #[serde(default)]
    pub contact: Option<String>,
    /// A `Retry-After` longer than this fails the run at once instead of sleeping through it.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_secs: u64,
    /// The whole run's deadline (0: none). No request starts, and no retry waits, past it.
    #[serde(default = "default_deadline")]
    pub deadline_secs: u64,
}

fn default_max_retry_after() -> u64 {
    300
}
fn default_deadline() -> u64 {
    6 * 3600
}

impl Default for HttpConfig {
    fn default() -> Self {
        toml::from_str("").expect("every HttpConfig field has a default")
    }
}

fn default_base_url() -> String {
    DEFAULT_ORD_BASE_URL.to_owned()
}
fn default_overlap_days() -> u32 {
    2
}
fn default_rps() -> f64 {
    5.0
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_base() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    30_000
}

impl HttpConfig {
    pub fn settings(&self, contact_override: Option<&str>) -> HttpSettings {
        let contact = contact_override.or(self.contact.as_deref());
        HttpSettings {
            requests_per_second: self.requests_per_second,
            concurrency: self.concurrency,
            timeout: Duration::from_secs(self.timeout_secs),
            max_retries: self.max_retries,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            user_agent: match contact {
                Some(c) => format!("odsync/{} (+{c})", env!("CARGO_PKG_VERSION")),
                None => format!("odsync/{}", env!("CARGO_PKG_VERSION")),
            },
            max_retry_after: Duration::from_secs(self.max_retry_after_secs),
            // The clock starts when the client is built, at the start of the run.
            deadline: (self.deadline_secs > 0)
                .then(|| std::time::Instant::now() + Duration::from_secs(self.deadline_secs)),
            deadline_secs: self.deadline_secs,
        }
    }
}
