//! The role mapping: ODS role codes → the trust table's `org_type`, `health_system` and flags
//! (`foundation_trust`), from a TOML file under `pipelines/` (docs/ods-reference.md 5). Applied to every
//! parsed record before the snapshot is built, so the derived columns are diffed, merged (with
//! provenance source `derived`) and kept in history like any other field. Primary roles that no
//! rule maps are reported per run, never silently ignored.

use crate::model::OrgRecord;
use crate::model::states::CodeChange;
use crate::model::states::OrgStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// First matching rule wins, in file order.
    #[serde(default, rename = "type")]
    pub types: Vec<TypeRule>,
    #[serde(default, rename = "flag")]
    pub flags: Vec<FlagRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    pub primary_role: String,
    /// A non-primary role the record must also carry (e.g. RO318 for an ICB).
    #[serde(default)]
    pub with_role: Option<String>,
    /// Only records in this country (e.g. `WALES` for Welsh trusts).
    #[serde(default)]
    pub country: Option<String>,
    /// Only codes starting with this (e.g. `W` for Welsh GP practices, whose bulk-file rows carry
    /// no country).
    #[serde(default)]
    pub code_prefix: Option<String>,
    pub org_type: String,
    pub health_system: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlagRule {
    pub role: String,
    /// Only `foundation_trust` exists as a flag column today.
    pub flag: String,
}

/// A primary role no rule maps, with how often and where it was seen.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnmappedRole {
    pub role_id: String,
    pub organisations: u64,
    pub examples: Vec<String>,
}

/// A change in ORD's `/roles` code system since the previous snapshot. A role code that vanishes
/// or is renamed silently changes what a role filter or a mapping rule selects (CCGs becoming
/// sub-ICB locations shrank results from 248 to 142), so every run reports them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CodeSystemChange {
    pub role_id: String,
    pub change: CodeChange,
    pub old_name: Option<String>,
    pub new_name: Option<String>,
    /// The pipeline names this role (its scope or role mapping): worth acting on.
    pub used_by_pipeline: bool,
}

/// Compares two versions of the code system; empty when either side has none (a first run, or a
/// source such as the bulk CSVs that has no code system).
pub fn compare_code_systems(
    previous: &[crate::model::tables::CodeSystemRole],
    current: &[crate::model::tables::CodeSystemRole],
    used: &dyn Fn(&str) -> bool,
) -> Vec<CodeSystemChange> {
    if previous.is_empty() || current.is_empty() {
        return Vec::new();
    }
    let index = |roles: &[crate::model::tables::CodeSystemRole]| -> BTreeMap<String, Option<String>> {
        roles
            .iter()
            .map(|r| (r.role_id.clone(), r.display_name.clone()))
            .collect()
    };
    let (old, new) = (index(previous), index(current));
    let change =
        |role_id: &str, kind: CodeChange, old_name: Option<&Option<String>>, new_name: Option<&Option<String>>| {
            CodeSystemChange {
                role_id: role_id.to_owned(),
                change: kind,
                old_name: old_name.cloned().flatten(),
                new_name: new_name.cloned().flatten(),
                used_by_pipeline: used(role_id),
            }
        };
    let mut out = Vec::new();
    for (id, name) in &old {
        match new.get(id) {
            None => out.push(change(id, CodeChange::Removed, Some(name), None)),
            Some(n) if n != name => out.push(change(id, CodeChange::Renamed, Some(name), Some(n))),
            Some(_) => {}
        }
    }
    for (id, name) in &new {
        if !old.contains_key(id) {
            out.push(change(id, CodeChange::Added, None, Some(name)));
        }
    }
    out.sort_by(|a, b| (a.change.as_str(), a.role_id.as_str()).cmp(&(b.change.as_str(), b.role_id.as_str())));
    out
}

impl RoleMapping {
    /// Every role code a rule of this mapping names.
    pub fn role_ids(&self) -> impl Iterator<Item = &str> {
        self.types
            .iter()
            .flat_map(|t| std::iter::once(t.primary_role.as_str()).chain(t.with_role.as_deref()))
            .chain(self.flags.iter().map(|f| f.role.as_str()))
    }
}

pub fn load(path: &Path) -> Result<RoleMapping, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, path)
}

/// Parses a mapping's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<RoleMapping, String> {
    let mapping: RoleMapping = toml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    for f in &mapping.flags {
        if f.flag != "foundation_trust" {
            return Err(format!(
                "{}: flag `{}` is not a trust table column (only `foundation_trust`)",
                path.display(),
                f.flag
            ));
        }
    }
    Ok(mapping)
}

impl RoleMapping {
    /// Sets the derived columns of one record. Only active roles count; for a closed
    /// organisation, the roles it held when it closed (ending no earlier than it did), so a
    /// closed GP practice stays a GP practice instead of losing its type.
    pub fn apply(&self, rec: &mut OrgRecord) {
        let org_closed = rec.organisation.status.as_deref() == Some(OrgStatus::Inactive.as_str());
        let org_end = rec.organisation.operational.end;
        let active = |id: &str| {
            rec.roles.iter().any(|r| {
                r.role_id == id
                    && if org_closed {
                        match (r.operational.end, org_end) {
                            (Some(role_end), Some(end)) => role_end >= end,
                            _ => true,
                        }
                    } else {
                        r.status.as_deref() != Some(OrgStatus::Inactive.as_str())
                    }
            })
        };
        let org = &rec.organisation;
        let rule = self.types.iter().find(|t| {
            org.primary_role.as_deref() == Some(t.primary_role.as_str())
                && t.with_role.as_deref().is_none_or(&active)
                && t.country.as_deref().is_none_or(|c| org.country.as_deref() == Some(c))
                && t.code_prefix.as_deref().is_none_or(|p| org.code.starts_with(p))
        });
        let (org_type, health_system) = rule.map_or((None, None), |t| {
            (Some(t.org_type.clone()), Some(t.health_system.clone()))
        });
        let foundation_trust = (!self.flags.is_empty()).then(|| self.flags.iter().any(|f| active(&f.role)));
        let org = &mut rec.organisation;
        org.org_type = org_type;
        org.health_system = health_system;
        org.foundation_trust = foundation_trust;
    }
}

/// Primary roles of organisations the mapping gave no type (counts, up to five example codes in
/// code order), read from a built `organisations` table (carried rows included).
pub fn unmapped_in(organisations: &[arrow::array::RecordBatch]) -> Vec<UnmappedRole> {
    use arrow::array::{Array, StringArray};
    let mut seen: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    for part in organisations {
        let col = |name: &str| {
            part.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .expect("the organisations table has its text columns")
        };
        let (codes, roles, types) = (col("code"), col("primary_role"), col("org_type"));
        for i in (0..part.num_rows()).filter(|&i| types.is_null(i)) {
            let role = if roles.is_null(i) { "(none)" } else { roles.value(i) };
            let entry = seen.entry(role.to_owned()).or_default();
            entry.0 += 1;
            if entry.1.len() < 5 {
                entry.1.push(codes.value(i).to_owned());
            }
        }
    }
    seen.into_iter()
        .map(|(role_id, (organisations, examples))| UnmappedRole {
            role_id,
            organisations,
            examples,
        })
        .collect()
}
