//! One module per `ckpt` subcommand.

pub mod cert;
pub mod demo;
pub mod failover;
pub mod fsck;
pub mod ls;
