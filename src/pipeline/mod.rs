//! Pipeline definitions: `pipelines/<name>.toml`, parsed strictly (unknown keys are errors) and
//! validated as a whole so that every problem in a file is reported at once.

pub mod build;
pub mod guard;
pub mod hierarchy;
pub mod merge_now;
pub mod roles;
pub mod runner;
pub mod window;

use crate::model::states::OrgStatus;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::merge::MergeConfig;
pub use crate::sources::config::{HttpConfig, SourceConfig, TrudSourceConfig};
pub use crate::sources::scope::ScopeConfig;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "pipeline `{name}` not found: no file `{path}`\nHelp: pipelines are TOML files under `pipelines/` (or set ODSYNC_PIPELINES_DIR); pass a name such as `nhs_trusts` or a path to a .toml file"
    )]
    NotFound { name: String, path: PathBuf },
    #[error("cannot read pipeline file `{path}`: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid pipeline file `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid pipeline file `{path}`:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Must match the file name (`nhs_trusts.toml` → `nhs_trusts`): it names the snapshot folder.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Warehouse directory (snapshots and catalog); a relative path is relative to the pipeline
    /// file's folder, like every path in the file. Overridden by `--warehouse` and
    /// `ODSYNC_WAREHOUSE`.
    #[serde(default)]
    pub warehouse: Option<PathBuf>,
    pub source: SourceConfig,
    /// Where baselines come from when not from `source` (the first run, `--full`, a watermark
    /// older than `/sync` reaches): a TRUD XML release, while `source` (ORD or FHIR) brings the
    /// daily deltas from the release's publication date on.
    #[serde(default)]
    pub baseline: Option<SourceConfig>,
    #[serde(default)]
    pub scope: ScopeConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub merge: MergeConfig,
    /// Publication-shift guard: a run that moves more than this stops before committing unless
    /// `--accept-shift` is given.
    #[serde(default)]
    pub guard: crate::diff::ShiftLimits,
    #[serde(default)]
    pub roles: RolesConfig,
    #[serde(default)]
    pub quality: QualityConfig,
}

/// The role mapping that derives `org_type`, `health_system` and `foundation_trust`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// Path of the mapping file (relative to the pipeline file's folder); default
    /// `role_mapping.toml` beside the pipeline file, else the mapping built into odsync (the
    /// repository's `pipelines/role_mapping.toml`).
    #[serde(default)]
    pub mapping: Option<PathBuf>,
}

/// The role mapping odsync ships (`pipelines/role_mapping.toml`), used when a pipeline names
/// none and has none beside it: a pipeline file kept in another folder (a scheduler's DAG
/// folder, a config repository) gets the same derived columns as one in `pipelines/`, never
/// silently none.
pub const BUILTIN_ROLE_MAPPING: &str = include_str!("../../pipelines/role_mapping.toml");

/// Where a pipeline's role mapping comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingSource {
    File(PathBuf),
    Builtin,
}

impl MappingSource {
    /// The mapping file's bytes (the built-in one's for `Builtin`).
    pub fn bytes(&self) -> std::io::Result<Vec<u8>> {
        match self {
            MappingSource::File(p) => std::fs::read(p),
            MappingSource::Builtin => Ok(BUILTIN_ROLE_MAPPING.as_bytes().to_vec()),
        }
    }

    pub fn load(&self) -> Result<roles::RoleMapping, String> {
        match self {
            MappingSource::File(p) => roles::load(p),
            MappingSource::Builtin => roles::parse(BUILTIN_ROLE_MAPPING, Path::new("(built-in role_mapping.toml)")),
        }
    }
}

impl Pipeline {
    /// The role mapping in force: the file the pipeline names, else `role_mapping.toml` beside
    /// it, else the built-in one.
    pub fn role_mapping(&self) -> MappingSource {
        let beside = self.path.with_file_name("role_mapping.toml");
        match &self.config.roles.mapping {
            Some(p) => MappingSource::File(p.clone()),
            None if beside.exists() => MappingSource::File(beside),
            None => MappingSource::Builtin,
        }
    }
}

/// Relative paths in a pipeline file name files beside it: they are resolved against the
/// file's folder once, when it is loaded, so a run started by cron, Airflow or from another
/// directory reads the same files as one started in the repository.
fn resolve_paths(config: &mut PipelineConfig, base: &Path) {
    let abs = |p: &mut PathBuf| {
        if p.is_relative() && !p.as_os_str().is_empty() {
            *p = base.join(&*p);
        }
    };
    let abs_source = |source: &mut SourceConfig| match source {
        SourceConfig::Csv(c) => {
            let is_url = c.location.starts_with("http://") || c.location.starts_with("https://");
            if !is_url && !c.location.trim().is_empty() && Path::new(&c.location).is_relative() {
                c.location = base.join(&c.location).to_string_lossy().into_owned();
            }
        }
        SourceConfig::TrudXml(t) => abs(&mut t.location),
        SourceConfig::Fhir(f) => {
            if let Some(k) = &mut f.api_key_file {
                abs(k);
            }
        }
        SourceConfig::Ord(_) => {}
    };
    abs_source(&mut config.source);
    if let Some(b) = &mut config.baseline {
        abs_source(b);
    }
    for p in [
        config.warehouse.as_mut(),
        config.roles.mapping.as_mut(),
        config.merge.local_table.as_mut(),
        config.merge.overrides.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        abs(p);
    }
}

/// What a run may tolerate and still commit (`[quality]`). By default nothing: a record that
/// cannot be fetched or parsed after retries fails the run, and so does an empty baseline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Records (API sources) that may fail after retries; each keeps its previous version, is
    /// recorded as pending and is retried by every later run. The allowance is the larger of
    /// this and `max_failed_share` of the records listed.
    #[serde(default)]
    pub max_failed_records: u64,
    #[serde(default)]
    pub max_failed_share: f64,
    /// Bulk files: unusable lines tolerated (quarantined with file:line; an organisation that was
    /// in the previous snapshot keeps its previous record). The larger of the two applies.
    #[serde(default = "default_max_bad_lines")]
    pub max_bad_lines: u64,
    #[serde(default = "default_max_bad_lines_share")]
    pub max_bad_lines_share: f64,
    /// A baseline that finds no organisation fails unless this is true.
    #[serde(default)]
    pub allow_empty: bool,
    /// FHIR: organisations fetched but no OrganizationAffiliation at all fails the run (every
    /// ODS organisation has relationships) unless this is false.
    #[serde(default = "yes")]
    pub require_relationships: bool,
}

impl Default for QualityConfig {
    fn default() -> Self {
        toml::from_str("").expect("every QualityConfig field has a default")
    }
}

impl QualityConfig {
    /// How many failures out of `total` the settings allow.
    pub fn allowed(count: u64, share: f64, total: u64) -> u64 {
        count.max((share.clamp(0.0, 1.0) * total as f64).floor() as u64)
    }
    pub fn allowed_failed_records(&self, listed: u64) -> u64 {
        Self::allowed(self.max_failed_records, self.max_failed_share, listed)
    }
    pub fn allowed_bad_lines(&self, lines: u64) -> u64 {
        Self::allowed(self.max_bad_lines, self.max_bad_lines_share, lines)
    }
}

fn yes() -> bool {
    true
}
fn default_max_bad_lines() -> u64 {
    10
}
fn default_max_bad_lines_share() -> f64 {
    0.01
}

/// A loaded, validated pipeline and the file it came from.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    pub config: PipelineConfig,
}

/// Finds a pipeline by name in `dir` (or takes `name_or_path` as a path when it ends in .toml).
pub fn locate(name_or_path: &str, dir: &Path) -> PathBuf {
    if name_or_path.ends_with(".toml") {
        PathBuf::from(name_or_path)
    } else {
        dir.join(format!("{name_or_path}.toml"))
    }
}

pub fn load(name_or_path: &str, dir: &Path) -> Result<Pipeline, PipelineError> {
    let path = locate(name_or_path, dir);
    if !path.exists() {
        return Err(PipelineError::NotFound {
            name: name_or_path.to_owned(),
            path,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| PipelineError::Read {
        path: path.clone(),
        source,
    })?;
    let mut config = parse(&text, &path)?;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    resolve_paths(
        &mut config,
        &folder.canonicalize().unwrap_or_else(|_| folder.to_owned()),
    );
    let problems = validate(&config, &path);
    if !problems.is_empty() {
        return Err(PipelineError::Invalid { path, problems });
    }
    Ok(Pipeline { path, config })
}

/// Parses TOML; the error names the line, column and key (toml's own message does).
pub fn parse(text: &str, path: &Path) -> Result<PipelineConfig, PipelineError> {
    toml::from_str(text).map_err(|e| PipelineError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

fn validate_trud(trud: &TrudSourceConfig, section: &str, problems: &mut Vec<String>) {
    let text = trud.location.to_string_lossy();
    if text.trim().is_empty() {
        problems.push(format!("`{section}.location` is empty"));
    } else if text.starts_with("http://") || text.starts_with("https://") {
        problems.push(format!(
            "`{section}.location`: TRUD downloads need an account, so odsync reads a local copy: download the release and give its path"
        ));
    }
    if let Some(sha) = &trud.sha256
        && (sha.trim().len() != 64 || !sha.trim().chars().all(|c| c.is_ascii_hexdigit()))
    {
        problems.push(format!("`{section}.sha256`: `{sha}` is not 64 hex digits"));
    }
}

/// Every semantic problem in a parsed pipeline, each naming its key.
///
/// Long on purpose: a flat list of independent checks, one per key or rule, in file order.
pub fn validate(config: &PipelineConfig, path: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if config.name != stem {
        problems.push(format!(
            "`name` is `{}` but the file is `{stem}.toml`: they must match (the name is the snapshot folder)",
            config.name
        ));
    }
    if config.name.is_empty()
        || !config
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        problems.push(format!(
            "`name` `{}` must be non-empty and use only letters, digits, `_` and `-`",
            config.name
        ));
    }
    for (key, share) in [
        ("quality.max_failed_share", config.quality.max_failed_share),
        ("quality.max_bad_lines_share", config.quality.max_bad_lines_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            problems.push(format!("`{key}` is {share}: a share is between 0 and 1"));
        }
    }
    let role_ok = |r: &String| r.len() > 2 && r.starts_with("RO") && r[2..].chars().all(|c| c.is_ascii_digit());
    for (key, list) in [
        ("scope.primary_roles", &config.scope.primary_roles),
        ("scope.roles", &config.scope.roles),
    ] {
        for r in list.iter().filter(|r| !role_ok(r)) {
            problems.push(format!("`{key}`: `{r}` is not an ODS role id (like `RO197`)"));
        }
    }
    if let Some(status) = &config.scope.status
        && status != OrgStatus::Active.as_str()
        && status != OrgStatus::Inactive.as_str()
    {
        problems.push(format!("`scope.status`: `{status}` must be `Active` or `Inactive`"));
    }
    for rc in &config.scope.record_classes {
        if rc != "RC1" && rc != "RC2" {
            problems.push(format!(
                "`scope.record_classes`: `{rc}` must be `RC1` (organisation) or `RC2` (site)"
            ));
        }
    }
    match &config.baseline {
        None => {}
        Some(SourceConfig::TrudXml(trud)) => {
            validate_trud(trud, "baseline", &mut problems);
            if !matches!(config.source, SourceConfig::Ord(_) | SourceConfig::Fhir(_)) {
                problems.push(format!(
                    "`baseline` is for a pipeline whose `source` brings deltas (ord or fhir); `source.type` is `{}`, which is whole already",
                    config.source.kind()
                ));
            }
        }
        Some(other) => problems.push(format!(
            "`baseline.type` is `{}`: only `trud_xml` can be a baseline source",
            other.kind()
        )),
    }
    match &config.source {
        SourceConfig::TrudXml(trud) => validate_trud(trud, "source", &mut problems),
        SourceConfig::Ord(ord) => {
            if let Err(e) = reqwest::Url::parse(&ord.base_url) {
                problems.push(format!("`source.base_url`: `{}` is not a URL ({e})", ord.base_url));
            }
            // All of ODS record by record takes about 20 hours at 5 requests a second; with a
            // TRUD `[baseline]` only the daily changes come from the API, which is fine.
            if config.scope.primary_roles.is_empty() && config.scope.roles.is_empty() && config.baseline.is_none() {
                problems.push(
                    "`scope`: an ORD pipeline needs `primary_roles` or `roles` (fetching all of ODS record by record takes about 20 hours), or a TRUD `[baseline]` for all of ODS"
                        .into(),
                );
            }
            if ord.overlap_days > 30 {
                problems.push(format!("`source.overlap_days`: {} is more than 30", ord.overlap_days));
            }
        }
        SourceConfig::Fhir(fhir) => {
            if let Err(e) = reqwest::Url::parse(&fhir.base_url) {
                problems.push(format!("`source.base_url`: `{}` is not a URL ({e})", fhir.base_url));
            }
            if fhir.page_size == 0 || fhir.page_size > 5000 {
                problems.push(format!("`source.page_size`: {} must be 1 to 5000", fhir.page_size));
            }
            if fhir.overlap_days > 30 {
                problems.push(format!("`source.overlap_days`: {} is more than 30", fhir.overlap_days));
            }
        }
        SourceConfig::Csv(csv) => {
            if csv.location.trim().is_empty() {
                problems.push("`source.location` is empty".into());
            }
            if let Some(r) = &csv.primary_role
                && !role_ok(r)
            {
                problems.push(format!("`source.primary_role`: `{r}` is not an ODS role id"));
            }
        }
    }
    for field in config.merge.fields.keys() {
        if !crate::model::ODS_FIELDS.iter().any(|(f, _)| f == field) {
            problems.push(format!(
                "`merge.fields.{field}`: not an ODS field of the trust table (one of: {})",
                crate::model::ODS_FIELDS
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for field in &config.merge.local_fields {
        if crate::model::ODS_FIELDS.iter().any(|(f, _)| f == field) || field == "code" {
            problems.push(format!(
                "`merge.local_fields`: `{field}` is an ODS field; local fields are the team's own columns"
            ));
        } else if field.is_empty()
            || !field
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            problems.push(format!("`merge.local_fields`: `{field}` must be lower_snake_case"));
        }
    }
    if let Some(mapping) = &config.roles.mapping
        && let Err(e) = roles::load(mapping)
    {
        problems.push(format!("`roles.mapping`: {e}"));
    }
    let http = &config.http;
    if !(http.requests_per_second > 0.0 && http.requests_per_second <= 1000.0) {
        problems.push(format!(
            "`http.requests_per_second`: {} must be above 0 and at most 1000",
            http.requests_per_second
        ));
    }
    if !(1..=32).contains(&http.concurrency) {
        problems.push(format!("`http.concurrency`: {} must be 1 to 32", http.concurrency));
    }
    if http.timeout_secs == 0 {
        problems.push("`http.timeout_secs` must be at least 1".into());
    }
    if http.backoff_base_ms > http.backoff_max_ms {
        problems.push("`http.backoff_base_ms` is larger than `http.backoff_max_ms`".into());
    }
    problems
}

impl crate::error::Classify for PipelineError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let text = "name = \"x\"\n[source]\ntype = \"ord\"\nbase_ulr = \"http://x\"\n";
        let err = parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("base_ulr"), "{err}");
        assert!(err.contains("x.toml"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let text = "name = \"other\"\n[source]\ntype = \"ord\"\n[scope]\nprimary_roles = [\"R197\"]\n[http]\nconcurrency = 0\n";
        let config = parse(text, Path::new("x.toml")).unwrap();
        let problems = validate(&config, Path::new("pipelines/x.toml"));
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }
}
