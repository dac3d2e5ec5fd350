//! `ckptd`, the node daemon of a ckpt cluster, as a library: [`spawn`] runs a node on a
//! thread of its own (tests start several in one process), [`run`] runs one in the
//! current tokio runtime (the `ckptd` binary). `transport/DESIGN.md` describes the
//! protocol; `config` the cluster file.

pub mod config;
pub mod local;
mod node;

pub use config::{ClusterConfig, ConfigError, NodeConfig};
pub use local::LocalCluster;
pub use node::{NodeHandle, StartError, object_name, run, spawn};
