//! What kind of failure an error is. Each error type says so itself ([`Classify`], implemented
//! beside the type, variant by variant); `commands/outcome.rs` turns the class into the exit
//! code and the `--json` failure document. A leaf: this module imports no other.

use serde::Serialize;

/// Who has to act on a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// What the user asked for or gave: arguments, a pipeline file, an input file, a data
    /// change that needs a decision (a publication shift). Exit 1.
    User,
    /// What the machine or the upstream did: network, an API that refused or answered
    /// inconsistently, a full disk, a lock held, a damaged warehouse file. Exit 1.
    Environment,
    /// What looks like a bug in odsync: nothing the user can fix. Exit 2.
    Bug,
}

impl ErrorClass {
    /// The documented exit code: 1 for a failure the message explains, 2 for a bug.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::User | ErrorClass::Environment => 1,
            ErrorClass::Bug => 2,
        }
    }
}

/// An error that knows its class.
pub trait Classify {
    fn class(&self) -> ErrorClass;
}

/// A problem with what the user asked for (arguments, missing snapshot), as opposed to a bug.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

impl Classify for UserError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

impl Classify for std::io::Error {
    fn class(&self) -> ErrorClass {
        ErrorClass::Environment
    }
}

/// True when the error is stdout closing early (`odsync runs | head`): not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
