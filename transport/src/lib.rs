//! ckpt-transport: the cluster protocol of ckpt.
//!
//! - [`wire`]: the frames node daemons exchange, with an explicit little-endian encoding
//!   and a decoder that never panics on hostile bytes;
//! - [`fdpass`]: those frames on a node's Unix socket with descriptors attached (a sealed
//!   node's replica objects);
//! - [`repl`]: the sans-IO replication state machines (a primary streaming its change
//!   journal to replicas, a replica applying diffs and acknowledging them);
//! - [`directory`]: the sans-IO directory (names, placement, terms, quorum);
//! - [`tls`]: the cluster CA and node certificates, and the rustls configurations that
//!   check them;
//! - [`net`]: the quinn driver, one mutual-TLS QUIC connection per ordered pair of nodes.
//!
//! `transport/DESIGN.md` describes the protocol.

#![forbid(unsafe_code)]

pub mod directory;
pub mod fdpass;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "net")]
pub mod net;
pub mod repl;
#[cfg(feature = "net")]
pub mod tls;
pub mod wire;
