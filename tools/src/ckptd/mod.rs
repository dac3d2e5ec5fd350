//! `ckptd`, the node daemon of a ckpt cluster, as a library: [`spawn`] runs a node on a
//! thread of its own (tests start several in one process), [`run`] runs one in the
//! current tokio runtime (the `ckptd` binary). `transport/DESIGN.md` describes the
//! protocol; `config` the cluster file.

pub mod config;
pub mod local;
mod metrics;
mod node;
pub mod sealed;
pub mod serve;
pub mod store;

pub use config::{ClusterConfig, ConfigError, MetricsConfig, NodeConfig};
pub use local::LocalCluster;
pub use node::{LocalSession, NodeEnv, NodeHandle, StartError, object_name, run, run_in, spawn};
pub use store::{MemoryStore, SealedStore, Store};

/// The whole `ckptd` program: logs to stderr (`RUST_LOG`), runs node `node` of the
/// cluster file until SIGTERM or SIGINT. `ckpt daemon` and the `ckptd` binary both call it.
pub fn main(config: &std::path::Path, node: u32) -> std::process::ExitCode {
    use std::process::ExitCode;
    use tokio::signal::unix::{SignalKind, signal};

    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cluster = match ClusterConfig::load(config) {
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
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("ckptd: cannot handle SIGTERM/SIGINT: {e}");
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
        match run(cluster, node, stop_rx).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ckptd: {e}");
                ExitCode::from(1)
            }
        }
    })
}
