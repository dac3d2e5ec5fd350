//! A throw-away cluster on loopback: certificates, a cluster file, per-node shm
//! directories and sockets, all under one temporary directory, removed on drop. The
//! failover demo and the multi-node tests use it.

use std::fmt::Write as _;
use std::io;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};

use ckpt_transport::tls::write_cluster_certs;

use super::config::ClusterConfig;

/// A loopback cluster's files.
#[derive(Debug)]
pub struct LocalCluster {
    root: PathBuf,
    shm_root: PathBuf,
    /// The cluster file.
    pub config_path: PathBuf,
    /// Its parsed form.
    pub config: ClusterConfig,
}

impl LocalCluster {
    /// Makes certificates and a cluster file for `nodes` (all directors), on free UDP
    /// ports of 127.0.0.1, with the given idle timeout (ms).
    pub fn create(
        tag: &str,
        nodes: &[u32],
        two_node: bool,
        idle_timeout_ms: u64,
    ) -> io::Result<Self> {
        Self::create_with_directors(tag, nodes, nodes, two_node, idle_timeout_ms)
    }

    /// As [`LocalCluster::create`], with only `directors` in the director role.
    pub fn create_with_directors(
        tag: &str,
        nodes: &[u32],
        directors: &[u32],
        two_node: bool,
        idle_timeout_ms: u64,
    ) -> io::Result<Self> {
        Self::create_with_options(tag, nodes, directors, two_node, idle_timeout_ms, false)
    }

    /// As [`LocalCluster::create_with_directors`]; with `sealed`, every node keeps its
    /// replicas as sealed memfds (`sealed = true`).
    pub fn create_with_options(
        tag: &str,
        nodes: &[u32],
        directors: &[u32],
        two_node: bool,
        idle_timeout_ms: u64,
        sealed: bool,
    ) -> io::Result<Self> {
        let unique = format!("ckpt-{tag}-{}-{}", std::process::id(), nanos());
        let root = std::env::temp_dir().join(&unique);
        let shm_root = Path::new("/dev/shm").join(&unique);
        std::fs::create_dir_all(&root)?;
        let certs = root.join("certs");
        write_cluster_certs(&certs, nodes, false).map_err(io::Error::other)?;
        let mut toml = String::new();
        let _ = writeln!(toml, "two_node = {two_node}");
        let _ = writeln!(toml, "ca = \"certs/ca.pem\"");
        let _ = writeln!(toml, "keep_alive_ms = {}", (idle_timeout_ms / 4).max(1));
        let _ = writeln!(toml, "idle_timeout_ms = {idle_timeout_ms}");
        for &n in nodes {
            // Reserve a free port (released just before ckptd binds it).
            let port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
            let _ = writeln!(
                toml,
                "\n[[node]]\nid = {n}\naddress = \"127.0.0.1:{port}\"\ndirector = {}",
                directors.contains(&n)
            );
            let _ = writeln!(
                toml,
                "cert = \"certs/node-{n}.pem\"\nkey = \"certs/node-{n}.key\""
            );
            let _ = writeln!(
                toml,
                "shm_dir = \"{}\"",
                shm_root.join(format!("node-{n}")).display()
            );
            let _ = writeln!(toml, "socket = \"node-{n}.sock\"");
            let _ = writeln!(toml, "sealed = {sealed}");
        }
        let config_path = root.join("cluster.toml");
        std::fs::write(&config_path, &toml)?;
        let config = ClusterConfig::load(&config_path).map_err(io::Error::other)?;
        Ok(Self {
            root,
            shm_root,
            config_path,
            config,
        })
    }

    /// The agent socket of node `n`.
    pub fn socket(&self, n: u32) -> PathBuf {
        self.config
            .node(n)
            .map(|c| c.socket.clone())
            .unwrap_or_default()
    }

    /// The shm directory of node `n`.
    pub fn shm_dir(&self, n: u32) -> PathBuf {
        self.config
            .node(n)
            .map(|c| c.shm_dir.clone())
            .unwrap_or_default()
    }

    /// Where its files live.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether its nodes keep their replicas as sealed memfds.
    pub fn is_sealed(&self) -> bool {
        self.config.nodes.iter().any(|n| n.sealed)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.shm_root);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
