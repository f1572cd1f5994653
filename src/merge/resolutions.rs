//! Conflict resolutions: an append-only log `<warehouse>/<pipeline>/resolutions.csv`, read by the
//! next merge. Every resolution records who, when and why.

use super::MergeError;
use crate::model::states::ResolutionKind;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub conflict_id: String,
    pub resolution: ResolutionKind,
    /// The custom value of a `set`.
    pub value: Option<String>,
    pub reason: Option<String>,
    pub by: String,
    pub at: String,
    /// An `ignore` lapses after this date.
    pub until: Option<NaiveDate>,
}

pub fn path(warehouse: &Path, pipeline: &str) -> PathBuf {
    warehouse.join(pipeline).join("resolutions.csv")
}

pub fn read(path: &Path) -> Result<Vec<Resolution>, MergeError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = super::open_csv(path)?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, r)| {
            r.map_err(|e| MergeError::BadInput {
                path: path.to_owned(),
                line: i as u64 + 2,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Checks one resolution against the conflicts that can still be resolved.
pub fn validate(r: &Resolution, resolvable: &BTreeSet<String>) -> Result<(), String> {
    if !resolvable.contains(&r.conflict_id) {
        return Err(format!(
            "no open conflict `{}`\nHelp: `odsync conflicts list <pipeline>` shows the open ones",
            r.conflict_id
        ));
    }
    if r.resolution == ResolutionKind::Set && r.value.is_none() {
        return Err("`set` needs a value".into());
    }
    if r.resolution == ResolutionKind::Ignore && r.reason.as_deref().is_none_or(str::is_empty) {
        return Err("`ignore` needs a reason".into());
    }
    if r.resolution != ResolutionKind::Ignore && r.until.is_some() {
        return Err("`until` only applies to `ignore`".into());
    }
    Ok(())
}

/// Appends resolutions to the log (rewritten through a temporary file and a rename).
pub fn append(path: &Path, new: &[Resolution]) -> Result<(), MergeError> {
    let mut all = read(path)?;
    all.extend_from_slice(new);
    let err = |e: String| MergeError::Input {
        path: path.to_owned(),
        message: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let tmp = path.with_extension("csv.tmp");
    {
        let mut writer = csv::Writer::from_path(&tmp).map_err(|e| err(e.to_string()))?;
        for r in &all {
            writer.serialize(r).map_err(|e| err(e.to_string()))?;
        }
        writer.flush().map_err(|e| err(e.to_string()))?;
    }
    // Durable before it is visible, and the rename itself durable: a recorded resolution is
    // never lost to a crash (callers hold the pipeline lock, so appends never race).
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        crate::warehouse::sync_dir(dir).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// One row of a bulk resolutions file given to `odsync conflicts apply`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRow {
    pub conflict_id: String,
    pub resolution: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub until: Option<NaiveDate>,
}

/// Reads and validates a whole bulk file before anything is applied; the first bad row is
/// reported with its line number.
pub fn read_bulk(
    path: &Path,
    resolvable: &BTreeSet<String>,
    by: &str,
    at: &str,
) -> Result<Vec<Resolution>, MergeError> {
    let mut reader = super::open_csv(path)?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, row) in reader.deserialize::<BulkRow>().enumerate() {
        let line = i as u64 + 2;
        let bad = |message: String| MergeError::BadInput {
            path: path.to_owned(),
            line,
            message,
        };
        let row = row.map_err(|e| bad(e.to_string()))?;
        if !seen.insert(row.conflict_id.clone()) {
            return Err(bad(format!("conflict `{}` appears twice", row.conflict_id)));
        }
        let resolution = row.resolution.parse().map_err(|_| {
            let known: Vec<&str> = ResolutionKind::ALL.iter().map(|k| k.as_str()).collect();
            bad(format!(
                "`{}` is not a resolution (one of: {})",
                row.resolution,
                known.join(", ")
            ))
        })?;
        let r = Resolution {
            conflict_id: row.conflict_id,
            resolution,
            value: row.value.filter(|v| !v.is_empty()),
            reason: row.reason.filter(|v| !v.is_empty()),
            by: by.to_owned(),
            at: at.to_owned(),
            until: row.until,
        };
        validate(&r, resolvable).map_err(bad)?;
        out.push(r);
    }
    Ok(out)
}
