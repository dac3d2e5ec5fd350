//! ckpt-tools: the `ckpt` command (ls, show, dump, watch, fsck, rm, cert, demo, bench)
//! and the node daemon `ckptd`.
//! The subcommands live in [`cmd`], one file each, so tests can drive them without
//! spawning the binary; the daemon's logic lives in [`ckptd`], so tests can run several
//! nodes in one process.

pub mod ckptd;
pub mod cmd;
