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

pub fn exit_code(error: &anyhow::Error) -> u8 {
    let user = error.chain().any(|e| {
        e.is::<UserError>()
            || e.is::<PipelineError>()
            || e.is::<SourceError>()
            || e.is::<HttpError>()
            || e.is::<CatalogError>()
            || e.is::<crate::pipeline::runner::ShiftError>()
            || matches!(e.downcast_ref::<DiffError>(), Some(DiffError::NotEnoughVersions { .. }))
            || matches!(
                e.downcast_ref::<MergeError>(),
                Some(MergeError::BadInput { .. } | MergeError::Input { .. })
            )
            || matches!(
                e.downcast_ref::<SnapshotError>(),
                Some(
                    SnapshotError::Locked { .. }
                        | SnapshotError::NoSuchVersion { .. }
                        | SnapshotError::VersionExists { .. }
                )
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
