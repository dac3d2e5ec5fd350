//! One module per `ckpt` subcommand.

pub mod demo;
pub mod fsck;
pub mod ls;
