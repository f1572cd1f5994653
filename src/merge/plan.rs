//! What a merge works from before DuckDB opens: the versions, the fields, the small inputs
//! (validated, naming file and line) and the hash that makes a merge of the same inputs a no-op.

use super::*;
use chrono::NaiveDate;

pub(super) struct Plan {
    pub previous: Option<u64>,
    pub merged_version: u64,
    /// The ODS snapshot the previous merge used.
    pub base_version: Option<u64>,
    /// (name, SQL type, team-owned) of every trust-table field.
    pub fields: Vec<(String, &'static str, bool)>,
    pub overrides: Vec<Override>,
    pub all_resolutions: Vec<resolutions::Resolution>,
    pub inputs_hash: String,
    pub today: NaiveDate,
}

impl Plan {
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|(f, _, _)| f.as_str()).collect()
    }
}

pub(super) enum Planned {
    /// The inputs equal the previous merge's: its report, marked `unchanged`.
    Unchanged(MergeReport),
    Merge(Plan),
}

pub(super) fn plan(job: &Job<'_>) -> Result<Planned, MergeError> {
    let Job {
        warehouse,
        pipeline,
        settings,
        ods,
        clock,
        ..
    } = *job;
    let previous = merged_versions(warehouse, pipeline).last().copied();
    let prev_report = previous.and_then(|v| read_report(warehouse, pipeline, v));
    let resolutions_path = resolutions::path(warehouse, pipeline);
    let today = clock.today();
    let fields = settings.all_fields();
    let field_names: Vec<&str> = fields.iter().map(|(f, _, _)| f.as_str()).collect();
    // Read (and validate) the small inputs first: what is in force today goes into the hash, so a
    // merge reruns when an override or an ignore lapses, and not merely because a day passed.
    let overrides = match &settings.overrides {
        Some(path) => read_overrides(path, &field_names, today)?,
        None => Vec::new(),
    };
    let all_resolutions = resolutions::read(&resolutions_path)?;
    let lapsed_ignores: Vec<&str> = all_resolutions
        .iter()
        .filter(|r| r.resolution == crate::model::states::ResolutionKind::Ignore && r.until.is_some_and(|u| u < today))
        .map(|r| r.conflict_id.as_str())
        .collect();

    let inputs_hash = sha256_hex(
        serde_json::json!({
            "ods": ods.content_hash,
            "ownership": settings.ownership,
            "local_fields": settings.local_fields,
            "local_table": file_sha(settings.local_table.as_deref())?,
            "overrides_in_force": overrides,
            "resolutions": file_sha(Some(&resolutions_path))?,
            "lapsed_ignores": lapsed_ignores,
            "schema": crate::model::SCHEMA_VERSION,
        })
        .to_string()
        .as_bytes(),
    );
    if let Some(prev) = &prev_report
        && prev.inputs_hash == inputs_hash
    {
        return Ok(Planned::Unchanged(MergeReport {
            status: crate::model::states::MergeStatus::Unchanged,
            ..prev.clone()
        }));
    }
    Ok(Planned::Merge(Plan {
        previous,
        merged_version: previous.map_or(1, |v| v + 1),
        base_version: prev_report.as_ref().map(|r| r.ods_version),
        fields,
        overrides,
        all_resolutions,
        inputs_hash,
        today,
    }))
}
