//! What the publication-shift guard looks at in a diff, and its limits.

use super::*;

/// Row movements of a diff, for the publication-shift guard (`check_shift`).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ShiftStats {
    pub old_organisations: u64,
    pub new_organisations: u64,
    pub added: u64,
    pub deleted: u64,
    /// Organisations present in both versions.
    pub shared: u64,
    /// Changed values of shared rows per `table.field` (relationships per type:
    /// `relationships.target_code[HIGH_LEVEL_HEALTH_GEOGRAPHY]`).
    pub field_changes: BTreeMap<String, u64>,
}

/// Limits of the publication-shift guard (pipeline `[guard]`).
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShiftLimits {
    /// Largest share of organisations that may appear at once.
    #[serde(default = "ten_percent")]
    pub max_added_share: f64,
    /// Largest share of organisations that may vanish at once.
    #[serde(default = "ten_percent")]
    pub max_vanished_share: f64,
    /// Largest share of shared organisations on which one field may change.
    #[serde(default = "half")]
    pub max_field_change_share: f64,
}

pub(super) fn ten_percent() -> f64 {
    0.10
}
pub(super) fn half() -> f64 {
    0.50
}

impl Default for ShiftLimits {
    fn default() -> Self {
        ShiftLimits {
            max_added_share: ten_percent(),
            max_vanished_share: ten_percent(),
            max_field_change_share: half(),
        }
    }
}

/// Why a diff looks like a change of publication profile rather than organisational change
/// (docs/ods-reference.md 4.8): each reason names the movement, its count and share. Empty when the diff
/// is within the limits.
pub fn check_shift(stats: &ShiftStats, limits: &ShiftLimits) -> Vec<(String, String)> {
    let mut reasons = Vec::new();
    let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    let old = stats.old_organisations;
    if old > 0 && share(stats.added, old) > limits.max_added_share {
        reasons.push((
            "organisations.*".to_owned(),
            format!(
                "{} organisations appeared ({:.1}% of {old})",
                stats.added,
                100.0 * share(stats.added, old)
            ),
        ));
    }
    if old > 0 && share(stats.deleted, old) > limits.max_vanished_share {
        reasons.push((
            "organisations.*".to_owned(),
            format!(
                "{} organisations vanished ({:.1}% of {old})",
                stats.deleted,
                100.0 * share(stats.deleted, old)
            ),
        ));
    }
    let mut fields: Vec<(&String, &u64)> = stats
        .field_changes
        .iter()
        .filter(|(_, n)| stats.shared > 0 && share(**n, stats.shared) > limits.max_field_change_share)
        .collect();
    fields.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (field, n) in fields {
        reasons.push((
            field.clone(),
            format!(
                "{field} changed on {n} of {} shared organisations ({:.1}%)",
                stats.shared,
                100.0 * share(*n, stats.shared)
            ),
        ));
    }
    reasons
}
