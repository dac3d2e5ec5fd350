//! Helpers shared by the multi-node tests: agents in cluster mode, retries while a
//! cluster forms, the hot-standby local read.

#![allow(dead_code)] // each test crate uses its own subset

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ckpt_agent::{Callbacks, Checkpoint, Config, Error, Library, ReadElement, Version};
use ckpt_tools::ckptd::LocalCluster;

/// A B.02.02 library in cluster mode on node `node`.
pub(crate) fn library(cluster: &LocalCluster, node: u32) -> Library {
    let config = Config {
        cluster: Some(cluster.socket(node)),
        ..Config::default()
    };
    Library::initialize_with(config, Version::B_02_02, Callbacks::default())
        .expect("initialize in cluster mode")
}

/// Retries `f` while it says TryAgain or Unavailable (the directory is still forming),
/// for up to 20 s.
pub(crate) fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let start = Instant::now();
    loop {
        match f() {
            Err(Error::TryAgain | Error::Unavailable)
                if start.elapsed() < Duration::from_secs(20) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// The section's bytes (up to 4 KiB) read from the node's own replica.
pub(crate) fn read_local(ck: &Checkpoint, id: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut el = [ReadElement {
        section_id: id,
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    ck.read_local(&mut el).expect("local read");
    let n = el[0].read_size;
    buf.truncate(n);
    buf
}

/// How the nodes of a test cluster keep their replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Objects {
    /// Files in each node's shm directory (the default).
    Files,
    /// Sealed memfds, passed to agents by descriptor (`sealed = true`).
    Sealed,
}

/// A loopback cluster of `nodes`, `directors` leading the directory, keeping replicas as
/// `objects` say.
pub(crate) fn local_cluster(
    tag: &str,
    nodes: &[u32],
    directors: &[u32],
    two_node: bool,
    idle_timeout_ms: u64,
    objects: Objects,
) -> LocalCluster {
    LocalCluster::create_with_options(
        tag,
        nodes,
        directors,
        two_node,
        idle_timeout_ms,
        objects == Objects::Sealed,
    )
    .expect("cluster files")
}

/// Node `node`'s replica of `instance`, attached as a process on that node would: from
/// its shm directory, or, on a sealed node, from the descriptor its ckptd passes.
pub(crate) fn replica_on(
    cluster: &LocalCluster,
    node: u32,
    instance: u64,
) -> Result<ckpt_engine::Replica, String> {
    let dir = cluster.shm_dir(node);
    if !cluster.is_sealed() {
        return ckpt_engine::Replica::attach(
            &dir,
            &ckpt_tools::ckptd::object_name(instance),
            ckpt_engine::Sharing::default(),
        )
        .map_err(|e| e.to_string());
    }
    let held =
        ckpt_tools::ckptd::sealed::descriptors(&cluster.socket(node), Duration::from_secs(5))
            .map_err(|e| format!("ask node {node}'s ckptd: {e}"))?;
    let (_, fd) = held
        .replicas
        .into_iter()
        .find(|(i, _)| *i == instance)
        .ok_or_else(|| format!("node {node} holds no replica of {instance:#x}"))?;
    ckpt_engine::Replica::attach_fd(&dir, fd).map_err(|e| e.to_string())
}

/// Whether node `node` holds a replica of `instance` (a file in its shm directory, or a
/// sealed replica its ckptd holds).
pub(crate) fn holds(cluster: &LocalCluster, node: u32, instance: u64) -> bool {
    if !cluster.is_sealed() {
        return cluster
            .shm_dir(node)
            .join(ckpt_tools::ckptd::object_name(instance))
            .exists();
    }
    ckpt_tools::ckptd::sealed::descriptors(&cluster.socket(node), Duration::from_secs(5))
        .is_ok_and(|h| h.replicas.iter().any(|(i, _)| *i == instance))
}

/// A real ckptd process for node `node` of the cluster file `config`: logs at `rust_log`
/// (plain text) into `log`, no stdin or stdout. The caller may add to the environment,
/// then spawns it.
pub(crate) fn ckptd_command(config: &Path, node: u32, rust_log: &str, log: File) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ckptd"));
    cmd.arg("--config")
        .arg(config)
        .arg("--node")
        .arg(node.to_string())
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    cmd
}
