//! ckptd's metrics: counters and a histogram the event loop keeps, gauges it reads from
//! its state when scraped, rendered in the Prometheus text exposition format (0.0.4), and
//! a small HTTP/1.1 responder for `GET /metrics`.
//!
//! The names, types and labels are listed in README.md, "Metrics" (a test below checks
//! that every family rendered here is there). They stand in for the standard's NTF
//! notifications too: evictions, resyncs and exhausted resources are counted.
//!
//! The event loop owns [`Metrics`] (plain fields, no locks). The HTTP side runs as tasks
//! of the daemon's runtime and never touches the loop's state: for each scrape it posts a
//! one-shot channel into the loop, which renders the text between two events and sends it
//! back. A client that is slow, silent or too large is cut off by a deadline and a size
//! bound, and only a few connections are served at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use ckpt_transport::wire::{RemoteOp, RemoteResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::serve::code;

/// Upper bounds of the synchronize latency buckets, in microseconds (50 µs to 10 s).
const SYNC_BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Where ckptd met an engine refusal: a write it served as the primary's daemon, or a
/// replication diff it applied to this node's replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Apply,
    Serve,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Serve => "serve",
        }
    }
}

/// Why a synchronize ckptd served did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncFailure {
    /// This node stopped being the primary's (TRY_AGAIN).
    Demoted,
    /// Its deadline passed before every replica acked (TIMEOUT).
    TimedOut,
    /// The caller's writes were lost with a deposed primary (FAILED_OPERATION).
    WritesLost,
}

impl SyncFailure {
    const ALL: [Self; 3] = [Self::Demoted, Self::TimedOut, Self::WritesLost];

    fn label(self) -> &'static str {
        match self {
            Self::Demoted => "demoted",
            Self::TimedOut => "timeout",
            Self::WritesLost => "writes_lost",
        }
    }
}

/// The counters of one checkpoint instance on this node.
#[derive(Debug, Default)]
struct Counters {
    writes: u64,
    write_bytes: u64,
    resyncs_started: u64,
    resyncs_finished: u64,
    /// Times this node started the checkpoint over (`CkptAssign::from_nothing`).
    started_over: u64,
    /// Engine TryAgain (no free or spare slot), by [`Path`] (apply, serve).
    slots: [u64; 2],
    /// NO_RESOURCES, by path.
    no_resources: [u64; 2],
    /// NO_SPACE, by path.
    no_space: [u64; 2],
    evictions_requested: BTreeMap<u32, u64>,
    evictions_applied: BTreeMap<u32, u64>,
}

/// A cumulative histogram over [`SYNC_BUCKETS_US`].
#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or below each bound (not yet cumulative).
    buckets: [u64; SYNC_BUCKETS_US.len()],
    count: u64,
    sum_ns: u128,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let us = d.as_micros();
        if let Some(i) = SYNC_BUCKETS_US.iter().position(|b| us <= u128::from(*b)) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_ns += d.as_nanos();
    }
}

/// What the event loop counts (the gauges it reads when scraped: [`Gauges`]).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    instances: BTreeMap<u64, Counters>,
    sync: Histogram,
    sync_failures: [u64; SyncFailure::ALL.len()],
    /// Corrections of the directory's count of this node's opens (`DirOp::Opens`).
    open_corrections: u64,
}

impl Metrics {
    fn at(&mut self, instance: u64) -> &mut Counters {
        self.instances.entry(instance).or_default()
    }

    /// A write ckptd applied (as the daemon ordering `instance`'s writes) carrying `bytes`
    /// of section data.
    pub(crate) fn wrote(&mut self, instance: u64, bytes: u64) {
        let c = self.at(instance);
        c.writes += 1;
        c.write_bytes += bytes;
    }

    /// A write `op` ckptd served (as the daemon ordering `instance`'s writes), answered
    /// `result`.
    pub(crate) fn served(&mut self, instance: u64, op: &RemoteOp, result: &RemoteResult) {
        match result {
            RemoteResult::Failed { code, .. } => self.refused(instance, Path::Serve, *code),
            _ => self.wrote(instance, write_bytes(op)),
        }
    }

    /// An answer or an engine error (as its `SaAisErrorT`) met on `path`: counts the
    /// exhausted resources (TRY_AGAIN for slots, NO_RESOURCES, NO_SPACE); others are not
    /// counted.
    pub(crate) fn refused(&mut self, instance: u64, path: Path, code: u32) {
        let c = self.at(instance);
        let p = path as usize;
        match code {
            code::TRY_AGAIN => c.slots[p] += 1,
            code::NO_RESOURCES => c.no_resources[p] += 1,
            code::NO_SPACE => c.no_space[p] += 1,
            _ => {}
        }
    }

    /// This node's replica of `instance` started receiving a snapshot.
    pub(crate) fn resync_started(&mut self, instance: u64) {
        self.at(instance).resyncs_started += 1;
    }

    /// This node's replica of `instance` applied a snapshot's last frame.
    pub(crate) fn resync_finished(&mut self, instance: u64) {
        self.at(instance).resyncs_finished += 1;
    }

    /// This node started `instance` over from no sections: the directory found no copy of
    /// its state left.
    pub(crate) fn started_over(&mut self, instance: u64) {
        self.at(instance).started_over += 1;
    }

    /// This node asked the directory to evict `node`'s replica of `instance`.
    pub(crate) fn eviction_requested(&mut self, instance: u64, node: u32) {
        *self
            .at(instance)
            .evictions_requested
            .entry(node)
            .or_default() += 1;
    }

    /// The directory answered such a request Done: `node` is out of the replica set.
    pub(crate) fn eviction_applied(&mut self, instance: u64, node: u32) {
        *self.at(instance).evictions_applied.entry(node).or_default() += 1;
    }

    /// A synchronize this node served succeeded after `latency`.
    /// This node sent the directory a correction of its count of the node's opens.
    pub(crate) fn open_corrected(&mut self) {
        self.open_corrections += 1;
    }

    pub(crate) fn synchronized(&mut self, latency: Duration) {
        self.sync.observe(latency);
    }

    /// A synchronize this node served failed.
    pub(crate) fn sync_failed(&mut self, why: SyncFailure) {
        self.sync_failures[why as usize] += 1;
    }

    /// Drops the counters of an instance this node no longer holds a replica of.
    pub(crate) fn forget(&mut self, instance: u64) {
        self.instances.remove(&instance);
    }

    /// The text of a scrape: these counters and the gauges `g`.
    pub(crate) fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(4096 + 1024 * g.replicas.len());
        let o = &mut out;
        let names: BTreeMap<u64, &str> = g
            .replicas
            .iter()
            .map(|r| (r.instance, r.name.as_str()))
            .collect();
        let inst = |i: u64| Labels::new().instance(i, names.get(&i).copied());
        let per_instance = |o: &mut String, f: &Family, value: &dyn Fn(&Counters) -> u64| {
            f.head(o);
            for (i, c) in &self.instances {
                f.sample(o, &inst(*i), value(c));
            }
        };
        per_instance(o, &WRITES, &|c| c.writes);
        per_instance(o, &WRITE_BYTES, &|c| c.write_bytes);
        per_instance(o, &RESYNCS_STARTED, &|c| c.resyncs_started);
        per_instance(o, &RESYNCS_FINISHED, &|c| c.resyncs_finished);
        per_instance(o, &STARTED_OVER, &|c| c.started_over);
        SLOTS.head(o);
        for (i, c) in &self.instances {
            for p in [Path::Apply, Path::Serve] {
                SLOTS.sample(o, &inst(*i).with("op", p.label()), c.slots[p as usize]);
            }
        }
        RESOURCES.head(o);
        for (i, c) in &self.instances {
            for p in [Path::Apply, Path::Serve] {
                for (code, n) in [("NO_RESOURCES", c.no_resources), ("NO_SPACE", c.no_space)] {
                    let l = inst(*i).with("op", p.label()).with("code", code);
                    RESOURCES.sample(o, &l, n[p as usize]);
                }
            }
        }
        for requested in [true, false] {
            let f = if requested {
                &EVICTIONS_REQUESTED
            } else {
                &EVICTIONS_APPLIED
            };
            f.head(o);
            for (i, c) in &self.instances {
                let by_node = if requested {
                    &c.evictions_requested
                } else {
                    &c.evictions_applied
                };
                for (n, v) in by_node {
                    f.sample(o, &inst(*i).node(*n), *v);
                }
            }
        }

        SYNC.head(o);
        let name = SYNC.name;
        let mut cumulative = 0;
        for (b, n) in SYNC_BUCKETS_US.iter().zip(self.sync.buckets) {
            cumulative += n;
            let le = (*b as f64 / 1e6).to_string();
            sample(
                o,
                &format!("{name}_bucket"),
                &Labels::new().with("le", &le),
                cumulative,
            );
        }
        let inf = Labels::new().with("le", "+Inf");
        sample(o, &format!("{name}_bucket"), &inf, self.sync.count);
        let (secs, ns) = (
            self.sync.sum_ns / 1_000_000_000,
            self.sync.sum_ns % 1_000_000_000,
        );
        sample(
            o,
            &format!("{name}_sum"),
            &Labels::new(),
            format!("{secs}.{ns:09}"),
        );
        sample(o, &format!("{name}_count"), &Labels::new(), self.sync.count);
        SYNC_FAILURES.head(o);
        for why in SyncFailure::ALL {
            let l = Labels::new().with("reason", why.label());
            SYNC_FAILURES.sample(o, &l, self.sync_failures[why as usize]);
        }

        COMMIT_SEQ.head(o);
        for r in &g.replicas {
            COMMIT_SEQ.sample(o, &inst(r.instance), r.commit_seq);
        }
        QUESTIONS.head(o);
        for r in g.replicas.iter().filter(|r| r.primary) {
            QUESTIONS.sample(o, &inst(r.instance), r.questions);
        }
        let per_replica = |o: &mut String, f: &Family, value: &dyn Fn(&Lag) -> u64| {
            f.head(o);
            for r in &g.replicas {
                for lag in &r.lag {
                    f.sample(o, &inst(r.instance).node(lag.node), value(lag));
                }
            }
        };
        per_replica(o, &LAG_SEQ, &|l| l.seq);
        per_replica(o, &LAG_BYTES, &|l| l.bytes);
        per_replica(o, &CONNECTED, &|l| u64::from(l.up));
        per_replica(o, &SNAPSHOT, &|l| u64::from(l.snapshot));

        let primaries = g.replicas.iter().filter(|r| r.primary).count();
        let node_wide = [
            (&LEADER, u64::from(g.leader)),
            (&TERM, g.directory_term),
            (&PEERS, g.peers_connected),
            (&SESSIONS, g.agent_sessions),
            (&HELD, g.replicas.len() as u64),
            (&PRIMARIES, primaries as u64),
            (&OPEN_CORRECTIONS, self.open_corrections),
        ];
        for (f, v) in node_wide {
            f.head(o);
            f.sample(o, &Labels::new(), v);
        }
        out
    }
}

/// A metric family: its name, type and help text.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

impl Family {
    fn head(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
    }

    fn sample(&self, out: &mut String, labels: &Labels, value: u64) {
        sample(out, self.name, labels, value);
    }
}

const WRITES: Family = Family {
    name: "ckptd_writes_total",
    kind: "counter",
    help: "Writes ckptd applied as the daemon ordering the checkpoint's writes: agents' writes \
           that do not go to shared memory directly (from other nodes; all ALL_REPLICAS writes).",
};
const WRITE_BYTES: Family = Family {
    name: "ckptd_write_bytes_total",
    kind: "counter",
    help: "Bytes of section data in those writes.",
};
const RESYNCS_STARTED: Family = Family {
    name: "ckptd_resyncs_started_total",
    kind: "counter",
    help: "Snapshots (full, or of the sections newer than the replica's) this node's replica \
           started receiving.",
};
const RESYNCS_FINISHED: Family = Family {
    name: "ckptd_resyncs_finished_total",
    kind: "counter",
    help: "Snapshots this node's replica applied in full.",
};
const STARTED_OVER: Family = Family {
    name: "ckptd_started_over_total",
    kind: "counter",
    help: "Times this node, named the primary after every copy of the checkpoint's state was \
           lost (each replica made empty or cut off in the middle of a snapshot), started it \
           over from no sections: its sections, and every write in them, are gone.",
};
const SLOTS: Family = Family {
    name: "ckptd_slot_exhaustion_total",
    kind: "counter",
    help: "Engine TryAgain (no free or spare slot) on a write ckptd served (op=serve) or a \
           replication diff it applied (op=apply).",
};
const RESOURCES: Family = Family {
    name: "ckptd_section_resource_exhaustion_total",
    kind: "counter",
    help: "NO_RESOURCES (checkpoint or section size) and NO_SPACE (section count) on a write \
           ckptd served (op=serve) or a replication diff it applied (op=apply).",
};
const EVICTIONS_REQUESTED: Family = Family {
    name: "ckptd_evictions_requested_total",
    kind: "counter",
    help: "Evictions of a replica that does not acknowledge ALL_REPLICAS writes, asked of the \
           directory by this node (the primary's).",
};
const EVICTIONS_APPLIED: Family = Family {
    name: "ckptd_evictions_applied_total",
    kind: "counter",
    help: "Those evictions the directory carried out (the replica left the set in a new term).",
};
const SYNC: Family = Family {
    name: "ckptd_synchronize_duration_seconds",
    kind: "histogram",
    help: "Synchronizes this node served as the primary's daemon (from other nodes, and \
           ActiveReplicaSet catch-ups), from arrival until every replica acked; one on the \
           primary's own node waits in shared memory, without ckptd.",
};
const SYNC_FAILURES: Family = Family {
    name: "ckptd_synchronize_failures_total",
    kind: "counter",
    help: "Synchronizes this node served that failed: timeout (TIMEOUT), demoted (no longer the \
           primary's daemon: TRY_AGAIN), writes_lost (FAILED_OPERATION).",
};
const COMMIT_SEQ: Family = Family {
    name: "ckptd_replica_commit_seq",
    kind: "gauge",
    help: "Head of this node's replica's change journal: it moves with every write, agents' \
           direct writes to shared memory included.",
};
const QUESTIONS: Family = Family {
    name: "ckptd_arrival_questions_held",
    kind: "gauge",
    help: "On the primary's node: questions for arrivals (from agents with arrival callbacks \
           on nodes without a replica) held until the next change.",
};
const LAG_SEQ: Family = Family {
    name: "ckptd_replication_lag_seq",
    kind: "gauge",
    help: "On the primary's node, per replica node: journal seqs the replica has not \
           acknowledged (commit seq minus acked seq).",
};
const LAG_BYTES: Family = Family {
    name: "ckptd_replication_lag_bytes",
    kind: "gauge",
    help: "On the primary's node, per replica node: bytes of frames sent and not acknowledged \
           yet (changes not sent yet count in ckptd_replication_lag_seq only).",
};
const CONNECTED: Family = Family {
    name: "ckptd_replication_connected",
    kind: "gauge",
    help: "On the primary's node, per replica node: 1 while the connection to it is up.",
};
const SNAPSHOT: Family = Family {
    name: "ckptd_replication_snapshot",
    kind: "gauge",
    help: "On the primary's node, per replica node: 1 while the replica is sent a snapshot.",
};
const LEADER: Family = Family {
    name: "ckptd_directory_leader",
    kind: "gauge",
    help: "1 on the node leading the directory, 0 elsewhere.",
};
const TERM: Family = Family {
    name: "ckptd_directory_term",
    kind: "gauge",
    help: "The directory term this node knows.",
};
const PEERS: Family = Family {
    name: "ckptd_peers_connected",
    kind: "gauge",
    help: "Other nodes of the cluster file this node has a connection to.",
};
const SESSIONS: Family = Family {
    name: "ckptd_agent_sessions",
    kind: "gauge",
    help: "Agent sessions connected to this node's ckptd.",
};
const HELD: Family = Family {
    name: "ckptd_checkpoints_held",
    kind: "gauge",
    help: "Checkpoint replicas this node holds.",
};
const OPEN_CORRECTIONS: Family = Family {
    name: "ckptd_open_corrections_total",
    kind: "counter",
    help: "Corrections of the directory's count of this node's opens, sent when it differed \
           from what the node's agents hold (after the node was away longer than the grace).",
};
const PRIMARIES: Family = Family {
    name: "ckptd_checkpoints_primary",
    kind: "gauge",
    help: "Of those, the checkpoints whose writes this node orders (the primary's).",
};

/// What the event loop reads from its state for a scrape.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) leader: bool,
    pub(crate) directory_term: u64,
    pub(crate) peers_connected: u64,
    pub(crate) agent_sessions: u64,
    /// One per replica this node holds.
    pub(crate) replicas: Vec<ReplicaGauges>,
}

/// One replica this node holds.
#[derive(Debug, Default)]
pub(crate) struct ReplicaGauges {
    pub(crate) instance: u64,
    /// The checkpoint's name, when known (empty for a replica reattached after a restart,
    /// until the directory's assignment names it).
    pub(crate) name: String,
    pub(crate) commit_seq: u64,
    /// This node orders its writes.
    pub(crate) primary: bool,
    /// Arrival questions held (on the primary's node).
    pub(crate) questions: u64,
    /// On the primary's node: each other replica.
    pub(crate) lag: Vec<Lag>,
}

/// Where replication to one replica stands, on the primary's node.
#[derive(Debug, Default)]
pub(crate) struct Lag {
    pub(crate) node: u32,
    pub(crate) seq: u64,
    pub(crate) bytes: u64,
    pub(crate) up: bool,
    pub(crate) snapshot: bool,
}

/// Bytes of section data a write carries (0 for a delete or an expiration change).
pub(crate) fn write_bytes(op: &RemoteOp) -> u64 {
    match op {
        RemoteOp::Write { elems } => elems.iter().map(|e| e.data.len() as u64).sum(),
        RemoteOp::Overwrite { data, .. } | RemoteOp::CreateSection { data, .. } => {
            data.len() as u64
        }
        _ => 0,
    }
}

/// A sample's label set, rendered as `{k="v",…}` (nothing when empty).
struct Labels(String);

impl Labels {
    fn new() -> Self {
        Self(String::new())
    }

    fn with(mut self, key: &str, value: &str) -> Self {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push_str(key);
        self.0.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => self.0.push_str("\\\\"),
                '"' => self.0.push_str("\\\""),
                '\n' => self.0.push_str("\\n"),
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }

    /// `instance`, and `name` when known.
    fn instance(self, instance: u64, name: Option<&str>) -> Self {
        let l = self.with("instance", &instance.to_string());
        match name.filter(|n| !n.is_empty()) {
            Some(n) => l.with("name", n),
            None => l,
        }
    }

    fn node(self, node: u32) -> Self {
        self.with("node", &node.to_string())
    }
}

fn sample(out: &mut String, name: &str, labels: &Labels, value: impl std::fmt::Display) {
    let close = if labels.0.is_empty() { "" } else { "}" };
    let _ = writeln!(out, "{name}{}{close} {value}", labels.0);
}

// ---- the HTTP responder --------------------------------------------------------------

/// Bytes of a request (line and headers) read at most.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its whole request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client has to take the whole response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the event loop has to render a scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 8;

/// Serves `GET /metrics` on `listener` until the task is dropped (its connections with
/// it). `ask` posts a scrape's one-shot channel into the event loop (false: the loop is
/// gone).
pub(crate) async fn serve_http<F>(listener: TcpListener, ask: F)
where
    F: Fn(oneshot::Sender<String>) -> bool + Send + Sync + 'static,
{
    let ask = Arc::new(ask);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            acc = listener.accept() => match acc {
                Ok((stream, _)) => {
                    if conns.len() < MAX_CONNECTIONS {
                        conns.spawn(connection(stream, Arc::clone(&ask)));
                    }
                    // else dropped: closed at once
                }
                // Out of descriptors, say: let some connections end first.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A parsed request head, or the status to refuse it with.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    Refuse(u16),
}

/// Judges a request head (up to, not including, the blank line).
fn parse(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Refuse(400);
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Refuse(400);
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") || !target.starts_with('/') {
        return Request::Refuse(400);
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Request::Refuse(400);
    }
    let path = target.split('?').next().unwrap_or(target);
    match (path, method) {
        ("/metrics", "GET") => Request::Metrics,
        ("/metrics", _) => Request::Refuse(405),
        _ => Request::Refuse(404),
    }
}

/// Reads a request head: `Ok(Some(head))`, `Ok(None)` when it is larger than
/// [`MAX_REQUEST`] or the client closed before its end.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        let searched = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(searched + end);
            return Ok(Some(buf));
        }
        if buf.len() >= MAX_REQUEST {
            return Ok(None);
        }
    }
}

async fn connection<F>(mut stream: TcpStream, ask: Arc<F>)
where
    F: Fn(oneshot::Sender<String>) -> bool + Send + Sync + 'static,
{
    let Ok(Ok(head)) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return; // a reset, or a client too slow: closed
    };
    let request = head.as_deref().map_or(Request::Refuse(400), parse);
    let (status, body) = match request {
        Request::Metrics => {
            let (tx, rx) = oneshot::channel();
            let text = if ask(tx) {
                tokio::time::timeout(SCRAPE_TIMEOUT, rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            } else {
                None
            };
            match text {
                Some(t) => (200, t),
                None => (503, "the node's event loop does not answer\n".to_owned()),
            }
        }
        Request::Refuse(s) => (s, format!("{}; try GET /metrics\n", reason(s))),
    };
    let content_type = if status == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if status == 405 { "Allow: GET\r\n" } else { "" };
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client still sends (a body, a rest of a large head) until it
        // closes: closing with unread bytes would reset the connection and could cut
        // the response short.
        let mut sink = [0u8; 1024];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sut() -> (Metrics, Gauges) {
        let mut m = Metrics::default();
        m.wrote(7, 10);
        m.wrote(7, 5);
        m.refused(7, Path::Serve, code::NO_SPACE);
        m.refused(7, Path::Apply, code::TRY_AGAIN);
        m.refused(7, Path::Serve, code::NOT_EXIST);
        m.eviction_requested(7, 3);
        m.started_over(7);
        m.synchronized(Duration::from_micros(70));
        m.synchronized(Duration::from_secs(20));
        m.sync_failed(SyncFailure::TimedOut);
        m.open_corrected();
        let g = Gauges {
            leader: true,
            directory_term: 4,
            peers_connected: 1,
            agent_sessions: 2,
            replicas: vec![ReplicaGauges {
                instance: 7,
                name: "safCkpt=a \"b\"\\c".into(),
                commit_seq: 9,
                primary: true,
                questions: 3,
                lag: vec![Lag {
                    node: 3,
                    seq: 2,
                    bytes: 100,
                    up: true,
                    snapshot: false,
                }],
            }],
        };
        (m, g)
    }

    #[test]
    fn counters_gauges_and_the_histogram_render_with_their_labels() {
        let (m, g) = sut();
        let text = m.render(&g);
        let l = r#"instance="7",name="safCkpt=a \"b\"\\c""#;
        for want in [
            format!("ckptd_writes_total{{{l}}} 2"),
            format!("ckptd_write_bytes_total{{{l}}} 15"),
            format!("ckptd_slot_exhaustion_total{{{l},op=\"apply\"}} 1"),
            format!("ckptd_slot_exhaustion_total{{{l},op=\"serve\"}} 0"),
            format!(
                "ckptd_section_resource_exhaustion_total{{{l},op=\"serve\",code=\"NO_SPACE\"}} 1"
            ),
            format!("ckptd_evictions_requested_total{{{l},node=\"3\"}} 1"),
            format!("ckptd_started_over_total{{{l}}} 1"),
            format!("ckptd_replication_lag_seq{{{l},node=\"3\"}} 2"),
            format!("ckptd_replication_lag_bytes{{{l},node=\"3\"}} 100"),
            format!("ckptd_replica_commit_seq{{{l}}} 9"),
            format!("ckptd_arrival_questions_held{{{l}}} 3"),
            "ckptd_open_corrections_total 1".into(),
            "ckptd_synchronize_duration_seconds_bucket{le=\"0.00005\"} 0".into(),
            "ckptd_synchronize_duration_seconds_bucket{le=\"0.0001\"} 1".into(),
            "ckptd_synchronize_duration_seconds_bucket{le=\"10\"} 1".into(),
            "ckptd_synchronize_duration_seconds_bucket{le=\"+Inf\"} 2".into(),
            "ckptd_synchronize_duration_seconds_sum 20.000070000".into(),
            "ckptd_synchronize_duration_seconds_count 2".into(),
            "ckptd_synchronize_failures_total{reason=\"timeout\"} 1".into(),
            "ckptd_directory_leader 1".into(),
            "ckptd_directory_term 4".into(),
            "ckptd_checkpoints_held 1".into(),
            "ckptd_checkpoints_primary 1".into(),
        ] {
            assert!(text.lines().any(|line| line == want), "{want} in\n{text}");
        }
        let total: u64 = text
            .lines()
            .filter(|l| l.starts_with("ckptd_section_resource_exhaustion_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, 1, "NOT_EXIST is no exhaustion");
    }

    #[test]
    fn a_forgotten_instance_has_no_counters_left() {
        let (mut m, _) = sut();
        m.forget(7);
        let text = m.render(&Gauges::default());
        assert!(!text.contains("instance=\"7\""), "{text}");
        assert!(text.contains("# TYPE ckptd_writes_total counter"));
    }

    #[test]
    fn every_family_is_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
        let (m, g) = sut();
        let text = m.render(&g);
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(families.len() >= 20, "{families:?}");
        for f in families {
            assert!(
                readme.contains(&format!("| `{f}` |")),
                "{f} is not in README.md"
            );
        }
    }

    #[test]
    fn requests_are_judged_by_method_path_and_version() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x"), Request::Metrics);
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0"), Request::Metrics);
        assert_eq!(parse(b"POST /metrics HTTP/1.1"), Request::Refuse(405));
        assert_eq!(parse(b"GET / HTTP/1.1"), Request::Refuse(404));
        assert_eq!(parse(b"GET /metricsx HTTP/1.1"), Request::Refuse(404));
        for bad in [
            &b"GET /metrics"[..],
            b"GET /metrics HTTP/2.0",
            b"GET  /metrics HTTP/1.1",
            b"get /metrics HTTP/1.1",
            b"GET metrics HTTP/1.1",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(parse(bad), Request::Refuse(400), "{bad:?}");
        }
    }
}
