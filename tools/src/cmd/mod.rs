//! One module per `ckpt` subcommand, plus what the operator commands share: [`Error`] (and
//! its exit codes), the reading of a domain directory (`inspect`) and the human formats
//! (`format`).
//!
//! The operator commands (`ls`, `show`, `dump`, `watch`, `fsck`, `rm`) work on any domain
//! directory: a standalone one (`/dev/shm/ckpt/<domain>`, with the node registry) or a
//! ckptd node's shm directory (cluster objects, and the directory table ckptd keeps there;
//! a `sealed = true` node's replicas are not in it, and come from its running ckptd).
//! Everything they read from shared memory is untrusted: a damaged object is reported and
//! the others are still shown. Exit codes: 0 ok, 1 a violation or something not found,
//! 2 a usage or system error.

#![forbid(unsafe_code)]

use std::process::ExitCode;

pub mod bench;
pub mod cert;
pub mod demo;
pub mod dump;
pub mod failover;
mod format;
pub mod fsck;
mod inspect;
pub mod ls;
pub mod rm;
pub mod show;
pub mod watch;

/// Why an operator command failed; [`Error::exit_code`] is what `ckpt` exits with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The checkpoint, section or object asked for is not there (exit 1).
    #[error("{0}")]
    NotFound(String),
    /// Writing the output failed (a closed pipe ends the command quietly, exit 0).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The system refused, or the domain cannot be read (exit 2).
    #[error("{0}")]
    System(String),
    /// The arguments do not fit what was found (exit 2).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::NotFound(_) => ExitCode::from(1),
            Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Self::Output(_) | Self::System(_) | Self::Usage(_) => ExitCode::from(2),
        }
    }

    /// Whether `ckpt` should stay silent about it (the reader of the output went away).
    pub fn is_quiet(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}
