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

use ckpt_tools::ckptd::{self, ClusterConfig};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cluster = match ClusterConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ckptd: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ckptd: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ckptd: cannot handle SIGTERM: {e}");
                return ExitCode::from(2);
            }
        };
        let mut int = match signal(SignalKind::interrupt()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ckptd: cannot handle SIGINT: {e}");
                return ExitCode::from(2);
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            stop_tx.send_replace(true);
        });
        match ckptd::run(cluster, args.node, stop_rx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ckptd: {e}");
                ExitCode::from(1)
            }
        }
    })
}
