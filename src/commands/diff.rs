//! `odsync diff <pipeline> [--from V] [--to V]`.

use super::Globals;
use crate::cli::DiffArgs;
use crate::diff::{DiffError, DiffSummary, diff_versions};
use crate::snapshot::SnapshotStore;
use arrow::array::{Array, StringArray};
use std::process::ExitCode;

pub fn run(globals: &Globals, args: &DiffArgs) -> anyhow::Result<ExitCode> {
    let pipeline = globals.load_known(&args.pipeline)?;
    let name = pipeline
        .as_ref()
        .map_or(args.pipeline.clone(), |p| p.config.name.clone());
    let store = SnapshotStore::new(&globals.warehouse(pipeline.as_ref()), &name);
    let versions = store.versions()?;
    let to = args.to.or(versions.last().copied());
    let from = args
        .from
        .or_else(|| to.and_then(|t| versions.iter().rev().find(|v| **v < t).copied()));
    let (Some(from), Some(to)) = (from, to) else {
        return Err(DiffError::NotEnoughVersions {
            pipeline: name,
            count: versions.len(),
        }
        .into());
    };
    let diff = diff_versions(&store, from, to, globals.clock.today())?;
    let batch = diff.changes;
    let limit = args.limit;
    globals.printer.emit(&diff.summary, |s: &DiffSummary| {
        let mut out = format!(
            "{name}: version {} → {}: {} changes\n",
            s.from_version, s.to_version, s.changes
        );
        out.push_str(&summary_text(s));
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .cloned()
        };
        if let (Some(code), Some(table), Some(field), Some(old), Some(new), Some(kind)) = (
            col("code"),
            col("table"),
            col("field"),
            col("old_value"),
            col("new_value"),
            col("change_kind"),
        ) {
            let v = |a: &StringArray, i: usize| {
                if a.is_valid(i) {
                    a.value(i).to_owned()
                } else {
                    "∅".into()
                }
            };
            for i in 0..batch.num_rows().min(limit) {
                out.push_str(&format!(
                    "  {:<8} {:<11} {}.{}: {} → {}\n",
                    code.value(i),
                    kind.value(i),
                    table.value(i),
                    if field.is_valid(i) { field.value(i) } else { "*" },
                    v(&old, i),
                    v(&new, i)
                ));
            }
            if batch.num_rows() > limit {
                out.push_str(&format!(
                    "  … {} more (--limit, or query changes_latest)\n",
                    batch.num_rows() - limit
                ));
            }
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The counts of a diff as people read them (shared by `odsync diff` and `odsync run`).
pub fn summary_text(s: &DiffSummary) -> String {
    let list = |m: &std::collections::BTreeMap<String, u64>| -> String {
        if m.is_empty() {
            "none".into()
        } else {
            m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        }
    };
    let mut out = format!(
        "  organisations by kind (each once per kind it has): {}\n",
        list(&s.by_kind)
    );
    if !s.by_kind_publication_shift.is_empty() {
        out.push_str(&format!(
            "    of which a publication shift explains: {}\n",
            list(&s.by_kind_publication_shift)
        ));
    }
    if !s.recodings.is_empty() {
        let events: Vec<String> = s
            .recodings
            .iter()
            .take(8)
            .map(|r| format!("{} → {} ({})", r.old_code, r.new_code, r.organisations))
            .collect();
        out.push_str(&format!(
            "  recodings: {}{} (view `recodings`)\n",
            events.join(", "),
            if s.recodings.len() > 8 {
                format!(", and {} more", s.recodings.len() - 8)
            } else {
                String::new()
            }
        ));
    }
    if s.future_dated > 0 {
        out.push_str(&format!("  future-dated: {}\n", s.future_dated));
    }
    for n in &s.not_compared {
        out.push_str(&format!("  not compared: {n}\n"));
    }
    out
}
