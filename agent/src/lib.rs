//! ckpt-agent: the SAF AIS Checkpoint Service API (SAI-AIS-CKPT B.02.02, and B.01
//! clients) in idiomatic Rust, on top of ckpt-engine.
//!
//! On one node it needs no daemon: checkpoints live in shared memory (`/dev/shm/ckpt/...`)
//! and every process that opens one reads and writes it directly. In a cluster
//! ([`Config::cluster`], or the `CKPT_CLUSTER_SOCKET` environment variable: the mode is
//! always explicit) the node's `ckptd` decides opens, placement and the active replica,
//! and ships changes to other nodes; the data path still maps the node's replica directly,
//! and synchronize waits until every replica has acknowledged. A [`Library`] is the
//! standard's library handle (`saCkptInitialize`), a [`Checkpoint`] a checkpoint handle
//! (`saCkptCheckpointOpen`); dropping either finalizes or closes it. Every call returns an
//! [`Error`] that maps onto one `SaAisErrorT` ([`Error::code`]).
//!
//! ```no_run
//! use ckpt_agent::{Callbacks, CreationAttributes, CreationFlags, Library, OpenFlags, Version, TIME_END};
//!
//! let lib = Library::initialize(Version::B_02_02, Callbacks::default())?;
//! let attrs = CreationAttributes {
//!     creation_flags: CreationFlags::WR_ACTIVE_REPLICA,
//!     checkpoint_size: 1 << 20,
//!     retention_duration: 1_000_000_000,
//!     max_sections: 16,
//!     max_section_size: 4096,
//!     max_section_id_size: 32,
//! };
//! let ck = lib.open(
//!     "safCkpt=counter",
//!     Some(&attrs),
//!     OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
//!     TIME_END,
//! )?;
//! ck.create_section(Some(b"state"), TIME_END, b"0")?;
//! ck.overwrite(b"state", b"42")?;
//! assert_eq!(&*ck.borrow(b"state")?, b"42");
//! # Ok::<(), ckpt_agent::Error>(())
//! ```
//!
//! Choices where the standard is silent (each one tested in `agent/tests/`):
//! - a section expiration already past at create is `InvalidParam` (it is absolute time;
//!   a past value is almost always a duration passed by mistake); set later, a past time
//!   expires the section at once;
//! - StatusGet reports the retention duration currently in force (after
//!   RetentionDurationSet), not the one given at creation;
//! - the B.02 rules apply to clients that asked for major version 2 (the minor is
//!   ignored);
//! - the retention of a checkpoint whose last opener died (SIGKILL) starts when another
//!   process of the node first notices the death (at its next initialize or open, which
//!   sweep the registry), not at the death itself: never early, possibly late by the time
//!   nobody used the service;
//! - expired sections are deleted by whoever next touches the checkpoint (status,
//!   iteration, a create that finds it full, reads and lookups already treat them as
//!   absent), so an idle checkpoint nobody opens keeps them until then.

#![forbid(unsafe_code)]

mod arrival;
mod checkpoint;
mod cluster;
pub mod error;
mod library;
mod shared;
pub mod types;

pub use checkpoint::{Borrowed, Checkpoint, SectionIterator};
pub use cluster::CLUSTER_SOCKET_ENV;
pub use error::{Error, Result, VectorError};
pub use library::{ArrivalCallback, Callbacks, Config, Library, OpenCallback, SynchronizeCallback};
pub use types::*;
