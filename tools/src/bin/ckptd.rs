//! `ckptd`: the node daemon of a ckpt cluster (one per node). See `transport/DESIGN.md`.
//!
//! ```text
//! ckptd --config /etc/ckpt/cluster.toml --node 1
//! ```
//!
//! Logs go to stderr (`RUST_LOG=ckpt_tools=debug` for more). SIGTERM or SIGINT stops it
//! cleanly; the node's replica objects stay, so a restarted ckptd picks them up again.

use std::path::PathBuf;
use std::process::ExitCode;

use ckpt_tools::ckptd;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "ckptd", version, about = "ckpt node daemon (cluster mode)")]
struct Args {
    /// The cluster file (TOML).
    #[arg(long)]
    config: PathBuf,
    /// This node's id in the cluster file.
    #[arg(long)]
    node: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    ckptd::main(&args.config, args.node)
}
