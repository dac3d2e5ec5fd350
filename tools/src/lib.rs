//! ckpt-tools: the `ckpt` command (demo, fsck, ls). The subcommands live in [`cmd`], one
//! file each, so tests can drive them without spawning the binary.

pub mod cmd;
