//! The pipeline file's `[merge]` section: who owns each trust-table field, the team's own columns
//! and files. Owned by the merge stage; the pipeline file composes it.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Who owns a trust-table field when ODS and a local edit disagree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// ODS always wins; an overwritten local value is reported.
    Ods,
    /// The local value always wins; the suppressed ODS change is reported.
    Local,
    /// A disagreement becomes a conflict to resolve; the local value stays meanwhile.
    #[default]
    Review,
}

impl Ownership {
    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Ods => "ods",
            Ownership::Local => "local",
            Ownership::Review => "review",
        }
    }
}

/// The trust table and its three-way merge (see `merge`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MergeConfig {
    /// Ownership per ODS field; fields not listed use `default_ownership`.
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, Ownership>,
    #[serde(default)]
    pub default_ownership: Ownership,
    /// Columns the team owns (e.g. trust_type, display_name, network): never set from ODS.
    #[serde(default)]
    pub local_fields: Vec<String>,
    /// The team's own table (CSV with a header, or Parquet), keyed by `code`: e.g. a nightly ERP
    /// export. Empty cells mean "no local value".
    #[serde(default)]
    pub local_table: Option<PathBuf>,
    /// Reviewed overrides (code, field, value, reason, author, expires); default
    /// `<pipeline file folder>/<name>.overrides.csv` when that file exists.
    #[serde(default)]
    pub overrides: Option<PathBuf>,
}
