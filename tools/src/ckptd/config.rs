//! The cluster file (TOML), shared by every node: which nodes exist, where they listen,
//! which are directors, their certificates, and the timeouts.
//!
//! ```toml
//! two_node = true                # corosync-style two-node quorum (see transport/DESIGN.md)
//! ca = "certs/ca.pem"            # the cluster CA (`ckpt cert`)
//! keep_alive_ms = 250            # QUIC keep-alive
//! idle_timeout_ms = 1000         # a silent peer is dead after this long
//!
//! [[node]]
//! id = 1
//! name = "blade-1"
//! address = "10.0.0.1:7100"      # QUIC (UDP)
//! director = true
//! cert = "certs/node-1.pem"
//! key = "certs/node-1.key"
//! shm_dir = "/dev/shm/ckpt/cluster"
//! socket = "/run/ckpt/ckptd.sock" # agents of this node connect here
//! metrics = "127.0.0.1:9464"     # optional: Prometheus text on GET /metrics (off without)
//! # metrics_allow_remote = true  # needed for a non-loopback metrics address
//! # sealed = true                # replicas as sealed memfds passed to agents (see below)
//! ```
//!
//! Relative paths are relative to the cluster file's directory.
//!
//! The metrics endpoint (README.md, "Metrics", lists what it serves) has no
//! authentication and no TLS, so it must listen on a loopback address (port 0 picks a free
//! one): a scraper on the node, or a local proxy, reaches it. Any other address, the
//! unspecified `0.0.0.0` and `[::]` included, is refused unless the node's table also says
//! `metrics_allow_remote = true`, for a network where its exposure is acceptable.
//!
//! `sealed = true` makes the node keep its replicas as sealed memfds instead of files in
//! `shm_dir` (engine/DESIGN.md §23.1, "Truncation and the trust boundary"): agents get
//! each replica as a descriptor over the agent socket, and nobody holding one, the same
//! uid or root, can shrink or grow it under the others' mappings. The price: replicas exist
//! only while ckptd or an agent holds them. A restarted ckptd takes back those its agents
//! hold (they hand them back when they reconnect); the others are lost on this node, which
//! the cluster then treats like a node whose tmpfs was wiped (resynced from the primary,
//! or given up). `ckpt ls`, `show`, `dump`, `fsck` and `watch` ask the running ckptd for
//! the descriptors. `shm_dir` still holds ckptd's files and the processes' liveness locks,
//! and its file system's size still bounds the node's replicas (counted, since memfds are
//! not in it). Switching a node between the two modes needs its agents restarted.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A parsed, validated cluster file.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Corosync-style two-node mode.
    pub two_node: bool,
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// QUIC keep-alive interval.
    pub keep_alive: Duration,
    /// Idle timeout after which a peer counts as dead.
    pub idle_timeout: Duration,
    /// Directory heartbeat interval.
    pub heartbeat: Duration,
    /// Silence after which a new directory leader is elected.
    pub election_timeout: Duration,
    /// Checkpoints the cluster holds at most.
    pub max_checkpoints: usize,
    /// The nodes, sorted by id.
    pub nodes: Vec<NodeConfig>,
}

/// One `[[node]]` table.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Node id (≥ 1, unique).
    pub id: u32,
    /// Human name.
    pub name: String,
    /// QUIC address.
    pub address: SocketAddr,
    /// Whether the node can lead the directory.
    pub director: bool,
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// Directory of the node's replica objects (a tmpfs).
    pub shm_dir: PathBuf,
    /// Unix socket the node's agents use.
    pub socket: PathBuf,
    /// Where ckptd serves its metrics; `None`: nowhere (the default).
    pub metrics: Option<MetricsConfig>,
    /// Replicas as sealed memfds passed to agents by descriptor (`sealed = true`), not
    /// files in `shm_dir`.
    pub sealed: bool,
}

/// A node's metrics endpoint: Prometheus text format on `GET /metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The TCP address it listens on (port 0: any free one).
    pub address: SocketAddr,
    /// Whether `address` may be off loopback (`metrics_allow_remote`).
    pub allow_remote: bool,
}

impl MetricsConfig {
    /// Refuses an address off loopback unless `allow_remote` says so: the endpoint has no
    /// authentication.
    pub fn check(&self, node: u32) -> Result<(), ConfigError> {
        if self.address.ip().is_loopback() || self.allow_remote {
            return Ok(());
        }
        Err(ConfigError(format!(
            "node {node}: metrics address {} is not a loopback address; the metrics endpoint \
             has no authentication, so set metrics_allow_remote = true in this [[node]] table \
             to serve it there anyway",
            self.address
        )))
    }
}

/// What is wrong with a cluster file.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    two_node: bool,
    ca: PathBuf,
    keep_alive_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    max_checkpoints: Option<usize>,
    node: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: u32,
    #[serde(default)]
    name: Option<String>,
    address: SocketAddr,
    #[serde(default)]
    director: bool,
    cert: PathBuf,
    key: PathBuf,
    shm_dir: PathBuf,
    socket: PathBuf,
    #[serde(default)]
    metrics: Option<SocketAddr>,
    #[serde(default)]
    metrics_allow_remote: bool,
    #[serde(default)]
    sealed: bool,
}

impl ClusterConfig {
    /// Reads and validates a cluster file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
            .map_err(|ConfigError(m)| ConfigError(format!("{}: {m}", path.display())))
    }

    /// Parses cluster-file text; relative paths are taken relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
        let idle_timeout = ms(raw.idle_timeout_ms, 1000);
        let keep_alive = ms(raw.keep_alive_ms, 250);
        if keep_alive.is_zero() || idle_timeout <= keep_alive {
            return Err(ConfigError(
                "keep_alive_ms must be > 0 and below idle_timeout_ms".into(),
            ));
        }
        let mut nodes = Vec::with_capacity(raw.node.len());
        for n in raw.node {
            if n.id == 0 {
                return Err(ConfigError("node ids start at 1".into()));
            }
            let node = NodeConfig {
                id: n.id,
                name: n.name.unwrap_or_else(|| format!("node-{}", n.id)),
                address: n.address,
                director: n.director,
                cert: abs(n.cert),
                key: abs(n.key),
                shm_dir: abs(n.shm_dir),
                socket: abs(n.socket),
                metrics: n.metrics.map(|address| MetricsConfig {
                    address,
                    allow_remote: n.metrics_allow_remote,
                }),
                sealed: n.sealed,
            };
            if let Some(m) = &node.metrics {
                m.check(node.id)?;
            } else if n.metrics_allow_remote {
                return Err(ConfigError(format!(
                    "node {}: metrics_allow_remote without a metrics address",
                    n.id
                )));
            }
            nodes.push(node);
        }
        nodes.sort_by_key(|n| n.id);
        if nodes.is_empty() {
            return Err(ConfigError("no [[node]] tables".into()));
        }
        if nodes.windows(2).any(|w| w[0].id == w[1].id) {
            return Err(ConfigError("two nodes share an id".into()));
        }
        if !nodes.iter().any(|n| n.director) {
            return Err(ConfigError("no node has director = true".into()));
        }
        if raw.two_node && nodes.len() != 2 {
            return Err(ConfigError(
                "two_node = true needs exactly two nodes".into(),
            ));
        }
        Ok(Self {
            two_node: raw.two_node,
            ca: abs(raw.ca),
            keep_alive,
            idle_timeout,
            heartbeat: ms(raw.heartbeat_ms, 100),
            election_timeout: ms(
                raw.election_timeout_ms,
                idle_timeout.as_millis() as u64 / 2 + 100,
            ),
            max_checkpoints: raw.max_checkpoints.unwrap_or(10_000),
            nodes,
        })
    }

    /// The node with id `id`.
    pub fn node(&self, id: u32) -> Option<&NodeConfig> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
        two_node = true
        ca = "c/ca.pem"
        [[node]]
        id = 2
        address = "127.0.0.1:7102"
        director = true
        cert = "c/node-2.pem"
        key = "c/node-2.key"
        shm_dir = "/dev/shm/x2"
        socket = "s2.sock"
        [[node]]
        id = 1
        address = "127.0.0.1:7101"
        director = true
        cert = "c/node-1.pem"
        key = "c/node-1.key"
        shm_dir = "/dev/shm/x1"
        socket = "s1.sock"
    "#;

    #[test]
    fn a_two_node_file_parses_with_sorted_nodes_and_resolved_paths() {
        let c = ClusterConfig::parse(TWO, Path::new("/etc/ckpt")).unwrap();
        assert!(c.two_node);
        assert_eq!(c.nodes[0].id, 1);
        assert_eq!(c.nodes[0].name, "node-1");
        assert_eq!(c.nodes[1].socket, Path::new("/etc/ckpt/s2.sock"));
        assert_eq!(c.ca, Path::new("/etc/ckpt/c/ca.pem"));
        assert_eq!(c.idle_timeout, Duration::from_secs(1));
    }

    #[test]
    fn duplicate_ids_unknown_keys_and_missing_directors_are_refused() {
        let dup = TWO.replace("id = 2", "id = 1");
        assert!(
            ClusterConfig::parse(&dup, Path::new("/"))
                .unwrap_err()
                .0
                .contains("share")
        );
        let unknown = TWO.replace("two_node = true", "two_node = true\nbogus = 1");
        assert!(ClusterConfig::parse(&unknown, Path::new("/")).is_err());
        let none = TWO.replace("director = true", "director = false");
        assert!(
            ClusterConfig::parse(&none, Path::new("/"))
                .unwrap_err()
                .0
                .contains("director")
        );
        let three = format!(
            "{TWO}\n[[node]]\nid = 3\naddress = \"127.0.0.1:1\"\ncert = \"a\"\nkey = \"b\"\nshm_dir = \"/x\"\nsocket = \"y\"\n"
        );
        assert!(
            ClusterConfig::parse(&three, Path::new("/"))
                .unwrap_err()
                .0
                .contains("two_node")
        );
    }

    #[test]
    fn sealed_replicas_are_off_by_default_and_chosen_per_node() {
        let c = ClusterConfig::parse(TWO, Path::new("/")).unwrap();
        assert!(c.nodes.iter().all(|n| !n.sealed));
        let on = TWO.replace(
            "socket = \"s2.sock\"",
            "socket = \"s2.sock\"\nsealed = true",
        );
        let c = ClusterConfig::parse(&on, Path::new("/")).unwrap();
        assert!(!c.nodes[0].sealed);
        assert!(c.nodes[1].sealed);
        let bad = TWO.replace("socket = \"s2.sock\"", "socket = \"s2.sock\"\nsealed = 1");
        assert!(ClusterConfig::parse(&bad, Path::new("/")).is_err());
    }

    #[test]
    fn metrics_are_off_by_default_and_on_at_a_loopback_address() {
        let c = ClusterConfig::parse(TWO, Path::new("/")).unwrap();
        assert_eq!(c.nodes[0].metrics, None);
        let on = TWO.replace(
            "socket = \"s1.sock\"",
            "socket = \"s1.sock\"\nmetrics = \"[::1]:9464\"",
        );
        let c = ClusterConfig::parse(&on, Path::new("/")).unwrap();
        let m = c.nodes[0].metrics.unwrap();
        assert_eq!(m.address, "[::1]:9464".parse().unwrap());
        assert!(!m.allow_remote);
        assert_eq!(c.nodes[1].metrics, None);
    }

    #[test]
    fn a_metrics_address_off_loopback_is_refused_unless_allowed() {
        for addr in ["10.0.0.1:9464", "0.0.0.0:9464", "[::]:9464"] {
            let off = TWO.replace(
                "socket = \"s2.sock\"",
                &format!("socket = \"s2.sock\"\nmetrics = \"{addr}\""),
            );
            let e = ClusterConfig::parse(&off, Path::new("/")).unwrap_err().0;
            assert!(
                e.contains("node 2") && e.contains("loopback"),
                "{addr}: {e}"
            );
            let allowed = off.replace(
                "socket = \"s2.sock\"",
                "socket = \"s2.sock\"\nmetrics_allow_remote = true",
            );
            let c = ClusterConfig::parse(&allowed, Path::new("/")).unwrap();
            let m = c.nodes[1].metrics.unwrap();
            assert_eq!((m.address, m.allow_remote), (addr.parse().unwrap(), true));
        }
    }
}
