//! ckpt-engine: the shared-memory replica engine of ckpt.
//!
//! A checkpoint replica is one object in a tmpfs directory (normally `/dev/shm/ckpt/<domain>`)
//! mapped by every process on the node that uses it. Sections are written copy-on-write
//! into a fixed pool of slots and published by one atomic store, so reads take no lock,
//! never see a torn section, and a writer killed with SIGKILL leaves the previous version
//! in place. `engine/DESIGN.md` gives the byte layout, the protocols and every invariant.
//!
//! The main types: [`Replica`] (one checkpoint replica: sections, reads, writes, the
//! change journal), [`Registry`] (the node's name → replica directory with open counts and
//! retention) and [`fsck`] (invariant checks). The node daemon applies a primary's changes
//! on a replica through an [`Applier`].

#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(loom))]
mod apply;
#[cfg(not(loom))]
mod clock;
#[cfg(not(loom))]
mod domain;
pub mod error;
#[cfg(not(loom))]
pub mod fsck;
#[cfg(all(feature = "fuzzing", not(loom)))]
#[doc(hidden)]
pub mod fuzzing;
mod hint;
#[cfg(not(loom))]
mod index;
#[cfg(not(loom))]
pub mod journal;
pub mod layout;
#[cfg(not(loom))]
mod liveness;
pub mod protocol;
#[cfg(not(loom))]
pub mod recovery;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
pub mod registry;
#[cfg(not(loom))]
mod replica;
#[cfg(not(loom))]
mod shm;
mod sync;
#[cfg(all(test, not(loom)))]
pub(crate) mod testutil;

#[cfg(not(loom))]
pub use apply::Applier;
#[cfg(not(loom))]
pub use domain::{default_domain, ensure_domain};
pub use error::{AttachError, CreateError, SectionError, VectorError};
#[cfg(not(loom))]
pub use fsck::Report;
#[cfg(not(loom))]
pub use journal::{Change, ChangeKind, Changes, MAX_WRITE_TAG, set_write_tag};
pub use layout::{ReplicaAttributes, ReplicaLimits};
#[cfg(not(loom))]
pub use recovery::AgentInfo;
#[cfg(not(loom))]
pub use registry::{Opened, Registry, RegistryError, RegistryLimits};
#[cfg(not(loom))]
pub use replica::{
    Clock, CreateOptions, ReadElement, Replica, Role, SectionCursor, SectionFilter, SectionGuard,
    SectionInfo, Sections, Status, TIME_END, WriteElement, wall_clock,
};
#[cfg(not(loom))]
pub use shm::{Sharing, ShmBuffer};
