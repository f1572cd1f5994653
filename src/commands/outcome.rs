//! A failed command's outcome: its exit code and the `--json` failure document. The class comes
//! from the errors themselves ([`Classify`]); this is the one list of the crate's error types,
//! at the top of the import graph where every type is visible.

use crate::error::{Classify, ErrorClass};
use crate::pipeline::runner::RunError;

/// The class of one error of a chain, when its type classifies itself.
fn class_of(e: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    fn try_as<T: Classify + std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
        e.downcast_ref::<T>().map(Classify::class)
    }
    try_as::<crate::error::UserError>(e)
        .or_else(|| try_as::<std::io::Error>(e))
        .or_else(|| try_as::<crate::pipeline::PipelineError>(e))
        .or_else(|| try_as::<crate::pipeline::runner::CompletenessError>(e))
        .or_else(|| try_as::<crate::pipeline::guard::ShiftError>(e))
        .or_else(|| try_as::<crate::sources::SourceError>(e))
        .or_else(|| try_as::<crate::sources::http::HttpError>(e))
        .or_else(|| try_as::<crate::snapshot::SnapshotError>(e))
        .or_else(|| try_as::<crate::diff::DiffError>(e))
        .or_else(|| try_as::<crate::merge::MergeError>(e))
        .or_else(|| try_as::<crate::history::HistoryError>(e))
        .or_else(|| try_as::<crate::catalog::CatalogError>(e))
        .or_else(|| try_as::<crate::warehouse::WarehouseError>(e))
        .or_else(|| try_as::<crate::warehouse::lock::LockError>(e))
        .or_else(|| try_as::<crate::report::ReportError>(e))
        .or_else(|| try_as::<crate::ddl::DdlError>(e))
}

/// The failure's class: the outermost error that classifies itself (wrapping variants such as
/// `DiffError::Snapshot` answer with their cause's class). A run that failed for a reason no
/// type classifies is an environment failure (exit 1: the run's stage and message say what
/// happened); anything else unclassified is a bug.
pub fn class(error: &anyhow::Error) -> ErrorClass {
    error.chain().find_map(class_of).unwrap_or_else(|| {
        if error.chain().any(|e| e.is::<RunError>()) {
            ErrorClass::Environment
        } else {
            ErrorClass::Bug
        }
    })
}

/// Exit codes: 1 for every failure the message explains (the user or the environment must act),
/// 2 only for what looks like a bug.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    class(error).exit_code()
}

/// The JSON document `--json` prints on stdout when a command fails: status, run id, pipeline,
/// stage, error, help, class and exit code (the error text already redacted).
pub fn failure_json(error: &anyhow::Error, text: &str, code: u8) -> String {
    let run = error.chain().find_map(|e| e.downcast_ref::<RunError>());
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
        "class": class(error),
        "exit_code": code,
    }))
    .expect("serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::MergeError;
    use crate::snapshot::SnapshotError;

    fn in_run(cause: anyhow::Error) -> anyhow::Error {
        RunError {
            run_id: "r".into(),
            pipeline: "p".into(),
            stage: crate::model::states::Stage::Merge,
            source: cause,
        }
        .into()
    }

    fn sql(message: &str) -> anyhow::Error {
        MergeError::Sql {
            step: "build".into(),
            message: message.into(),
        }
        .into()
    }

    #[test]
    fn each_error_says_who_must_act_and_the_exit_code_follows() {
        // A bug in odsync's own SQL is a bug even inside a run; the machine running out of
        // memory is not.
        assert_eq!(class(&in_run(sql("Binder Error: column x not found"))), ErrorClass::Bug);
        assert_eq!(exit_code(&in_run(sql("Binder Error: column x not found"))), 2);
        assert_eq!(
            class(&in_run(sql("Out of Memory Error: could not allocate"))),
            ErrorClass::Environment
        );
        assert_eq!(exit_code(&in_run(sql("Out of Memory Error: could not allocate"))), 1);
        // Wrapping variants answer with their cause; context strings do not hide the class.
        let missing = crate::diff::DiffError::Snapshot(SnapshotError::NoSuchVersion {
            pipeline: "p".into(),
            version: 9,
        });
        assert_eq!(
            class(&anyhow::Error::from(missing).context("reading")),
            ErrorClass::User
        );
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full");
        assert_eq!(
            class(&anyhow::Error::from(io).context("writing x")),
            ErrorClass::Environment
        );
        // Unclassified: a failed run says what happened (1); anything else looks like a bug (2).
        assert_eq!(exit_code(&in_run(anyhow::anyhow!("the fetch stopped"))), 1);
        assert_eq!(exit_code(&anyhow::anyhow!("something odd")), 2);
    }

    #[test]
    fn the_failure_document_carries_the_class() {
        let e = in_run(sql("Binder Error: column x not found"));
        let doc: serde_json::Value = serde_json::from_str(&failure_json(&e, "merge SQL\nHelp: report it", 2)).unwrap();
        assert_eq!(doc["class"], "bug");
        assert_eq!(doc["stage"], "merge");
        assert_eq!(doc["help"], "report it");
        assert_eq!(doc["exit_code"], 2);
    }
}
