//! One place maps errors to exit codes: 0 ok, 1 a user or data problem the message explains
//! (bad pipeline file, upstream refused or inconsistent, lock held, bad input file), 2 anything
//! unexpected.

use crate::catalog::CatalogError;
use crate::diff::DiffError;
use crate::merge::MergeError;
use crate::pipeline::PipelineError;
use crate::snapshot::SnapshotError;
use crate::sources::SourceError;
use crate::sources::http::HttpError;

/// A problem with what the user asked for (arguments, missing snapshot), as opposed to a bug.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Exit codes: 1 for every failure the message explains (bad input, upstream refused or
/// incomplete, lock held, damaged or unwritable warehouse, full disk: whatever the user or the
/// environment must fix, including any failed run), 2 only for what looks like a bug.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    let user = error.chain().any(|e| {
        e.is::<UserError>()
            || e.is::<crate::pipeline::runner::RunError>()
            || e.is::<crate::pipeline::runner::CompletenessError>()
            || e.is::<crate::warehouse::WarehouseError>()
            || e.is::<crate::warehouse::lock::LockError>()
            || e.is::<std::io::Error>()
            || e.is::<SnapshotError>()
            || e.is::<PipelineError>()
            || e.is::<SourceError>()
            || e.is::<HttpError>()
            || e.is::<CatalogError>()
            || e.is::<crate::pipeline::guard::ShiftError>()
            || matches!(
                e.downcast_ref::<crate::report::ReportError>(),
                Some(crate::report::ReportError::Io { .. } | crate::report::ReportError::NoRun { .. })
            )
            || matches!(
                e.downcast_ref::<crate::ddl::DdlError>(),
                Some(crate::ddl::DdlError::Empty { .. } | crate::ddl::DdlError::Read { .. })
            )
            || matches!(e.downcast_ref::<DiffError>(), Some(DiffError::NotEnoughVersions { .. }))
            || matches!(
                e.downcast_ref::<MergeError>(),
                Some(MergeError::BadInput { .. } | MergeError::Input { .. })
            )
            || matches!(
                e.downcast_ref::<SnapshotError>(),
                Some(SnapshotError::NoSuchVersion { .. })
            )
    });
    if user { 1 } else { 2 }
}

/// True when the error is stdout closing early (`odsync runs | head`): not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The JSON document `--json` prints on stdout when a command fails: status, run id, pipeline,
/// stage, error, help and exit code (the error text already redacted).
pub fn failure_json(error: &anyhow::Error, text: &str, code: u8) -> String {
    let run = error
        .chain()
        .find_map(|e| e.downcast_ref::<crate::pipeline::runner::RunError>());
    let (message, help) = match text.split_once("\nHelp: ") {
        Some((m, h)) => (m.to_owned(), Some(h.trim().to_owned())),
        None => (text.to_owned(), None),
    };
    serde_json::to_string_pretty(&serde_json::json!({
        "status": "failed",
        "run_id": run.map(|r| r.run_id.clone()),
        "pipeline": run.map(|r| r.pipeline.clone()),
        "stage": run.map(|r| r.stage),
        "error": message,
        "help": help,
        "exit_code": code,
    }))
    .expect("serialises")
}
