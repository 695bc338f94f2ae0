//! The CLI's error type: a message with context plus the exit code it maps to.

use std::fmt;

/// Exit codes, documented in docs/CLI.md. Scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// Something went wrong (I/O, network, a refused operation).
    Error = 1,
    /// Bad usage or failed authentication (wrong passphrase, identity exists, bad input).
    Usage = 2,
    /// The command needs a running node (`kith daemon`) and none runs on this home.
    NoNode = 3,
}

/// A failed command: what to tell the user and which exit code to use.
#[derive(Debug)]
pub(crate) struct Failure {
    code: Code,
    error: anyhow::Error,
}

impl Failure {
    pub(crate) fn new(code: Code, error: impl Into<anyhow::Error>) -> Failure {
        Failure { code, error: error.into() }
    }

    pub(crate) fn usage(message: impl fmt::Display) -> Failure {
        Failure::new(Code::Usage, anyhow::anyhow!("{message}"))
    }

    pub(crate) fn code(&self) -> i32 {
        self.code as i32
    }

    /// A write to a closed stdout: the reader went away, which is not our failure.
    pub(crate) fn is_broken_pipe(&self) -> bool {
        self.error.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:#}", self.error)
        } else {
            write!(f, "{}", self.error)
        }
    }
}

/// Anything else becomes a plain error (exit 1); specific cases pick their code.
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::new(Code::Error, error)
    }
}

/// Shorthand for command results.
pub(crate) type Result<T = ()> = std::result::Result<T, Failure>;
