//! The replication ratios of `ckpt bench` (issue 5), each a same-run ratio against a raw
//! baseline on the same machine, the same certificates and the same QUIC transport settings.
//!
//! - [`replication_vs_quinn_bulk`]: a backlog written on node 1 while its replication was
//!   held, streamed to node 2's replica, against one quinn stream carrying the same bytes
//!   (beside it, as context, the catch-up of a replica that joins with the backlog
//!   already written, its creation included);
//! - [`all_replicas_4096`]: a 4 KiB overwrite of an ALL_REPLICAS checkpoint with one
//!   remote replica, against a 4 KiB quinn echo plus one agent socket round trip to ckptd;
//! - [`sync_idle_vs_overwrite_64`]: `synchronize` with nothing pending against a 64 B local
//!   overwrite of the same checkpoint.
//!
//! [`Cluster`] runs two ckptd nodes in this process (each on its own thread and
//! current-thread runtime, as the daemon runs) with one agent library per node;
//! [`QuinnBaseline`] is a quinn server thread built the same way, with node 2's identity,
//! and a client endpoint with node 1's, driven from the measuring thread.
//!
//! `ckpt bench --cluster-only` runs [`run`] alone; tools/tests/bench.rs calls the three
//! benchmarks at tiny sizes.

use std::error::Error as StdError;
use std::hint::black_box;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ckpt_agent::{
    Callbacks, Checkpoint, Config, CreationAttributes, CreationFlags, Error as AgentError, Library,
    OpenFlags, ReadElement, TIME_END, Version,
};
use ckpt_bench::{api_attributes, fmt_ns, percentile};

use super::report::{Ratio, Report};
use crate::ckptd::{self, LocalCluster, NodeHandle};
use ckpt_transport::tls::{self, CaRoots, NodeIdentity, TransportSettings};
use ckpt_transport::wire::{DEFAULT_MAX_FRAME, Frame, FrameReader, PROTOCOL_VERSION};
use quinn::{Endpoint, EndpointConfig, RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, watch};

/// Errors of the fixtures; the text says what was being done.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// One second in the API's nanoseconds.
const SECOND: i64 = 1_000_000_000;
/// The idle timeout of the cluster (keep-alive a quarter of it): the cluster file default.
const IDLE_TIMEOUT_MS: u64 = 1000;
/// Bytes the quinn baseline sends, untimed, on its fresh connection before the timed
/// transfer.
const WARM_BYTES: usize = 8 << 20;
/// Bytes per section of the backlog.
pub const SECTION_BYTES: usize = 64 * 1024;
/// Section size of the ALL_REPLICAS write.
pub const ALL_REPLICAS_BYTES: usize = 4096;
/// Section size of the local overwrite beside the idle synchronize.
pub const SMALL_BYTES: usize = 64;
/// Overwrites checked against node 2's replica before and after the ALL_REPLICAS timing.
const VERIFY_WRITES: usize = 20;
/// The `LocalCluster` tag: directories are `ckpt-clusterbench-<pid>-<nanos>`.
pub(super) const TAG: &str = "clusterbench";

/// Sizes and repetitions of one run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Bytes of the backlog (a multiple of [`SECTION_BYTES`]).
    pub backlog_bytes: usize,
    /// Timed rounds of the backlog pair (each: one catch-up and one quinn transfer).
    pub backlog_rounds: usize,
    /// Untimed rounds before them.
    pub backlog_warmup: usize,
    /// Timed samples of each side of the ALL_REPLICAS triple.
    pub rtt_samples: usize,
    /// Untimed samples before them.
    pub rtt_warmup: usize,
    /// Wall time one batch of the synchronize pair aims at.
    pub batch: Duration,
    /// Batches per side of the synchronize pair (the median is reported).
    pub batches: usize,
}

impl Params {
    /// The default run: a 64 MiB backlog.
    pub fn full() -> Self {
        Self {
            backlog_bytes: 64 << 20,
            backlog_rounds: 7,
            backlog_warmup: 1,
            rtt_samples: 2000,
            rtt_warmup: 200,
            batch: Duration::from_millis(3),
            batches: 31,
        }
    }

    /// `--quick`: a 4 MiB backlog, few iterations.
    pub fn quick() -> Self {
        Self {
            backlog_bytes: 4 << 20,
            backlog_rounds: 3,
            backlog_warmup: 1,
            rtt_samples: 300,
            rtt_warmup: 50,
            batch: Duration::from_millis(1),
            batches: 11,
        }
    }

    /// `--smoke`: a 256 KiB backlog, a handful of samples (the figures mean nothing).
    pub fn smoke() -> Self {
        Self {
            backlog_bytes: 4 * SECTION_BYTES,
            backlog_rounds: 2,
            backlog_warmup: 0,
            rtt_samples: 20,
            rtt_warmup: 2,
            batch: Duration::from_micros(200),
            batches: 3,
        }
    }

    /// Sections of the backlog.
    fn backlog_sections(&self) -> usize {
        (self.backlog_bytes / SECTION_BYTES).max(1)
    }
}

// ---- the cluster ---------------------------------------------------------------------

/// Two ckptd nodes on loopback in this process and one agent library per node. Dropping
/// it finalizes the libraries, stops the nodes and removes the cluster's files.
pub struct Cluster {
    // Field order is drop order: libraries, then nodes, then the files.
    libs: Vec<Library>,
    nodes: Vec<NodeHandle>,
    files: LocalCluster,
    next_name: u32,
}

impl Cluster {
    /// Makes the cluster files, starts nodes 1 and 2 and initializes one library on each.
    pub fn start() -> Result<Self, BoxError> {
        sweep_stale();
        let files = LocalCluster::create(TAG, &[1, 2], true, IDLE_TIMEOUT_MS)
            .map_err(|e| format!("cluster files: {e}"))?;
        let mut nodes = Vec::new();
        for n in [1, 2] {
            nodes.push(
                ckptd::spawn(files.config.clone(), n).map_err(|e| format!("ckptd {n}: {e}"))?,
            );
        }
        let mut libs = Vec::new();
        for n in [1, 2] {
            let config = Config {
                cluster: Some(files.socket(n)),
                ..Config::default()
            };
            let lib = retry(|| {
                Library::initialize_with(config.clone(), Version::B_02_02, Callbacks::default())
            })
            .map_err(|e| format!("initialize on node {n}: {e}"))?;
            libs.push(lib);
        }
        Ok(Self {
            libs,
            nodes,
            files,
            next_name: 0,
        })
    }

    /// The library on node `n` (1 or 2).
    pub fn lib(&self, n: u32) -> &Library {
        &self.libs[n as usize - 1]
    }

    /// The cluster's files and parsed configuration.
    pub fn files(&self) -> &LocalCluster {
        &self.files
    }

    /// Holds back (or lets go) the replication frames of node `n`'s primaries
    /// ([`NodeHandle::hold_replication`]).
    fn hold_replication(&self, n: u32, hold: bool) {
        self.nodes[n as usize - 1].hold_replication(hold);
    }

    /// A checkpoint name not used before in this run.
    fn fresh_name(&mut self, what: &str) -> String {
        self.next_name += 1;
        format!("safCkpt=bench-{what}-{}", self.next_name)
    }

    /// Opens `name` on node `n` (creating it with `attrs` if given), retrying while the
    /// directory is still forming.
    fn open(
        &self,
        n: u32,
        name: &str,
        attrs: Option<&CreationAttributes>,
    ) -> Result<Checkpoint, BoxError> {
        let flags = if attrs.is_some() {
            OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE
        } else {
            OpenFlags::READ | OpenFlags::WRITE
        };
        retry(|| self.lib(n).open(name, attrs, flags, 10 * SECOND))
            .map_err(|e| format!("open {name} on node {n}: {e}").into())
    }

    /// Closes `cks` and unlinks `name` (its replicas go with the last close), then lets
    /// the nodes remove the replica objects before anything else is timed.
    ///
    /// Freeing a large replica's pages costs its daemon tens of milliseconds: had it run
    /// during the next timed part, it would have slowed that part (the quinn baseline
    /// after a catch-up). So this waits until both nodes' objects are gone (for up to
    /// 5 s), and then a little longer for the pages.
    fn remove(&self, name: &str, cks: impl IntoIterator<Item = Checkpoint>) {
        let mut instance = None;
        for ck in cks {
            instance = Some(ck.instance());
            let _ = ck.close();
        }
        let _ = retry(|| self.lib(1).unlink(name));
        if let Some(instance) = instance {
            let objects: Vec<_> = [1, 2]
                .iter()
                .map(|n| self.files.shm_dir(*n).join(ckptd::object_name(instance)))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(5);
            while objects.iter().any(|o| o.exists()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    /// The transport settings ckptd derives from the cluster file.
    pub fn transport_settings(&self) -> TransportSettings {
        TransportSettings {
            keep_alive: self.files.config.keep_alive,
            idle_timeout: self.files.config.idle_timeout,
            ..TransportSettings::default()
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.len())
            .field("config", &self.files.config_path)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.libs.clear();
        for node in self.nodes.drain(..) {
            node.stop();
        }
    }
}

/// Removes cluster directories of this runner (`/dev/shm` and the temporary directory)
/// whose process is gone: a run stopped by Ctrl-C leaves them behind.
fn sweep_stale() {
    let prefix = format!("ckpt-{TAG}-");
    for root in [Path::new("/dev/shm").to_path_buf(), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Retries `f` while it says TryAgain or Unavailable (a directory without a leader yet),
/// for up to 20 s.
fn retry<T>(mut f: impl FnMut() -> Result<T, AgentError>) -> Result<T, AgentError> {
    let start = Instant::now();
    loop {
        match f() {
            Err(AgentError::TryAgain | AgentError::Unavailable)
                if start.elapsed() < Duration::from_secs(20) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Reads section `id` of the local replica behind `ck` into `buf`; the bytes read.
fn read_local(ck: &Checkpoint, id: &[u8], buf: &mut [u8]) -> Result<usize, AgentError> {
    let mut el = [ReadElement {
        section_id: id,
        offset: 0,
        buf,
        read_size: 0,
    }];
    ck.read_local(&mut el).map_err(|e| e.error)?;
    Ok(el[0].read_size)
}

/// Whether the local replica behind `ck` holds exactly `want` in section `id`.
fn holds(ck: &Checkpoint, id: &[u8], want: &[u8], buf: &mut [u8]) -> bool {
    read_local(ck, id, buf).is_ok_and(|n| &buf[..n] == want)
}

// ---- the raw quinn baseline ------------------------------------------------------------

/// A quinn server (node 2's certificate, on a thread of its own) and a client endpoint
/// (node 1's certificate) driven by the measuring thread, with ckptd's TLS and transport
/// configuration. The server grants each connection one unidirectional stream (read to
/// its end, the byte count reported back in-process) and one bidirectional stream (an
/// echo), as the mesh grants its dialers their stream.
///
/// The client's runtime only runs while a call is in progress, so a connection would
/// idle out between phases: [`QuinnBaseline::connect`] makes a fresh one (untimed) for
/// each phase.
pub struct QuinnBaseline {
    conn: Option<Link>,
    endpoint: Endpoint,
    server_addr: SocketAddr,
    received: mpsc::UnboundedReceiver<u64>,
    stop: watch::Sender<bool>,
    server: Option<std::thread::JoinHandle<()>>,
    rt: tokio::runtime::Runtime,
}

struct Link {
    conn: quinn::Connection,
    echo: Option<(SendStream, RecvStream)>,
}

impl QuinnBaseline {
    /// Starts the server and the client endpoint from the cluster's files.
    pub fn start(cluster: &Cluster) -> Result<Self, BoxError> {
        let config = &cluster.files().config;
        let settings = cluster.transport_settings();
        let roots = CaRoots::load(&config.ca)?;
        let node = |n: u32| -> Result<NodeIdentity, BoxError> {
            let c = config.node(n).ok_or("node missing from the cluster file")?;
            Ok(NodeIdentity::load(&c.cert, &c.key)?)
        };
        let server_config = tls::quinn_server_config(&node(2)?, &roots, &settings)?;
        let client_config = tls::quinn_client_config(&node(1)?, &roots, &settings)?;

        let (stop, stop_rx) = watch::channel(false);
        let (received_tx, received) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = std::thread::Builder::new()
            .name("quinn-baseline".into())
            .spawn(move || serve(server_config, received_tx, stop_rx, ready_tx))?;
        let server_addr = ready_rx
            .recv()
            .map_err(|_| "the quinn baseline server did not start")??;

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let endpoint = {
            let _guard = rt.enter();
            let udp = UdpSocket::bind("127.0.0.1:0")?;
            let mut e = Endpoint::new(
                EndpointConfig::default(),
                None,
                udp,
                Arc::new(quinn::TokioRuntime),
            )?;
            e.set_default_client_config(client_config);
            e
        };
        Ok(Self {
            conn: None,
            endpoint,
            server_addr,
            received,
            stop,
            server: Some(server),
            rt,
        })
    }

    /// Replaces the connection with a new one (handshake included, untimed).
    pub fn connect(&mut self) -> Result<(), BoxError> {
        self.disconnect();
        // quinn spawns the connection's driver on the current runtime.
        let _guard = self.rt.enter();
        let connecting = self
            .endpoint
            .connect(self.server_addr, &tls::server_name(2))?;
        let conn = self.rt.block_on(connecting)?;
        self.conn = Some(Link { conn, echo: None });
        Ok(())
    }

    /// Closes the connection, if any.
    pub fn disconnect(&mut self) {
        if let Some(link) = self.conn.take() {
            link.conn.close(VarInt::from_u32(0), b"done");
            // Let the endpoint driver send the close.
            self.rt
                .block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
        }
    }

    /// Sends `data` on a new unidirectional stream and waits until the server has read
    /// it to its end; returns the time from opening the stream and the bytes received.
    pub fn bulk(&mut self, data: &[u8]) -> Result<(Duration, u64), BoxError> {
        let link = self.conn.as_mut().ok_or("not connected")?;
        let received = &mut self.received;
        self.rt.block_on(async {
            let start = Instant::now();
            let mut send = link.conn.open_uni().await?;
            send.write_all(data).await?;
            send.finish()?;
            let n = received
                .recv()
                .await
                .ok_or("the quinn baseline server stopped")?;
            Ok((start.elapsed(), n))
        })
    }

    /// One echo of `payload` (same length back into `buf`) on the connection's
    /// bidirectional stream, opened on first use.
    pub fn echo(&mut self, payload: &[u8], buf: &mut [u8]) -> Result<(), BoxError> {
        let link = self.conn.as_mut().ok_or("not connected")?;
        self.rt.block_on(async {
            if link.echo.is_none() {
                link.echo = Some(link.conn.open_bi().await?);
            }
            let (send, recv) = link.echo.as_mut().ok_or("no echo stream")?;
            send.write_all(payload).await?;
            recv.read_exact(buf).await?;
            Ok(())
        })
    }
}

impl std::fmt::Debug for QuinnBaseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuinnBaseline")
            .field("server_addr", &self.server_addr)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for QuinnBaseline {
    fn drop(&mut self) {
        self.disconnect();
        let _guard = self.rt.enter();
        self.endpoint.close(VarInt::from_u32(0), b"done");
        self.stop.send_replace(true);
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

/// The server thread: accepts connections until `stop`.
fn serve(
    config: quinn::ServerConfig,
    received: mpsc::UnboundedSender<u64>,
    mut stop: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<SocketAddr, BoxError>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    rt.block_on(async move {
        let bound = UdpSocket::bind("127.0.0.1:0").and_then(|udp| {
            Endpoint::new(
                EndpointConfig::default(),
                Some(config),
                udp,
                Arc::new(quinn::TokioRuntime),
            )
        });
        let endpoint = match bound.and_then(|e| e.local_addr().map(|a| (e, a))) {
            Ok((e, addr)) => {
                let _ = ready.send(Ok(addr));
                e
            }
            Err(e) => {
                let _ = ready.send(Err(e.into()));
                return;
            }
        };
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    tokio::spawn(serve_connection(incoming, received.clone()));
                }
            }
        }
        endpoint.close(VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    });
}

async fn serve_connection(incoming: quinn::Incoming, received: mpsc::UnboundedSender<u64>) {
    let Ok(conn) = incoming.await else { return };
    conn.set_max_concurrent_uni_streams(VarInt::from_u32(1));
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(1));
    let echo_conn = conn.clone();
    tokio::spawn(async move {
        while let Ok((mut send, mut recv)) = echo_conn.accept_bi().await {
            tokio::spawn(async move {
                while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
                    if send.write_all(&chunk.bytes).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    while let Ok(mut recv) = conn.accept_uni().await {
        let mut n = 0u64;
        while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
            n += chunk.bytes.len() as u64;
            black_box(&chunk.bytes);
        }
        let _ = received.send(n);
    }
}

// ---- one round trip to ckptd -------------------------------------------------------------

/// A session on a ckptd's agent socket, as an agent library opens one; [`Self::ping`]
/// sends `Hello` and waits for `Welcome`, which ckptd answers from its event loop without
/// the directory: the cost of one agent ↔ ckptd round trip.
struct CkptdSession {
    stream: UnixStream,
    reader: FrameReader,
    hello: Vec<u8>,
    buf: Vec<u8>,
}

impl CkptdSession {
    fn connect(socket: &Path) -> Result<Self, BoxError> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut hello = Vec::new();
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: 0,
            incarnation: u64::from(std::process::id()),
        }
        .encode(&mut hello);
        let mut s = Self {
            stream,
            reader: FrameReader::new(DEFAULT_MAX_FRAME),
            hello,
            buf: vec![0; 4096],
        };
        s.ping()?;
        Ok(s)
    }

    fn ping(&mut self) -> Result<(), BoxError> {
        self.stream.write_all(&self.hello)?;
        loop {
            match self.reader.next()? {
                Some(Frame::Welcome { node, .. }) => {
                    black_box(node);
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    let n = self.stream.read(&mut self.buf)?;
                    if n == 0 {
                        return Err("ckptd closed the session".into());
                    }
                    self.reader.push(&self.buf[..n]);
                }
            }
        }
    }
}

/// A 16-byte request/response over a Unix socket pair between two threads (context for
/// the ckptd round trip: the bare socket and wake-up cost).
struct UnixPair {
    stream: UnixStream,
    peer: Option<std::thread::JoinHandle<()>>,
}

impl UnixPair {
    fn start() -> Result<Self, BoxError> {
        let (stream, mut other) = UnixStream::pair()?;
        let peer = std::thread::Builder::new()
            .name("unix-echo".into())
            .spawn(move || {
                let mut b = [0u8; 16];
                while other.read_exact(&mut b).is_ok() {
                    if other.write_all(&b).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            stream,
            peer: Some(peer),
        })
    }

    fn ping(&mut self) -> Result<(), BoxError> {
        let mut b = [7u8; 16];
        self.stream.write_all(&b)?;
        self.stream.read_exact(&mut b)?;
        black_box(b);
        Ok(())
    }
}

impl Drop for UnixPair {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.peer.take() {
            let _ = t.join();
        }
    }
}

// ---- statistics --------------------------------------------------------------------------

/// The median (p50) of `v` (NaN when empty).
fn p50(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

// ---- 1. backlog catch-up against quinn bulk ------------------------------------------------

/// What [`replication_vs_quinn_bulk`] measured.
#[derive(Clone, Debug)]
pub struct BulkResult {
    /// Bytes of section data per round.
    pub bytes: u64,
    /// Per timed round: ns from the release of node 1's held replication until node 1's
    /// synchronize returned (the backlog streaming to a replica that exists).
    pub stream_ns: Vec<f64>,
    /// Per timed round: ns of the quinn transfer.
    pub quinn_ns: Vec<f64>,
    /// Per timed round: throughput ratio streaming / quinn (= quinn time / stream time).
    pub ratios: Vec<f64>,
    /// Per timed round: ns from node 2's open (creating its replica) until node 1's
    /// synchronize returned, for a replica that joins with the backlog already written.
    pub join_ns: Vec<f64>,
    /// Per timed round: ns node 2's open took (the first part of `join_ns`).
    pub open_ns: Vec<f64>,
    /// Per timed round: quinn time / join time.
    pub join_ratios: Vec<f64>,
    /// Section bytes node 2's replica read back correctly, summed over the timed rounds
    /// and both ways (streamed and joined).
    pub verified_bytes: u64,
    /// Bytes the quinn server received, summed over the timed rounds.
    pub quinn_bytes: u64,
    /// Per timed round, CPU time (ns) of the threads doing the work, where Linux reports
    /// it (empty elsewhere): node 1's and node 2's daemon threads while the backlog
    /// streamed, and the quinn sender (the measuring thread) and receiver (the server
    /// thread) during the transfer. Unlike the wall times they barely move when other
    /// processes compete for the cores.
    pub primary_cpu_ns: Vec<f64>,
    pub replica_cpu_ns: Vec<f64>,
    pub sender_cpu_ns: Vec<f64>,
    pub receiver_cpu_ns: Vec<f64>,
}

/// CPU time (ns) a thread of this process has run: the calling thread (`None`) or the
/// threads named `name`, from Linux's `/proc` (`None` where it cannot be read).
fn thread_cpu_ns(name: Option<&str>) -> Option<u64> {
    let schedstat = |dir: &Path| -> Option<u64> {
        std::fs::read_to_string(dir.join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let Some(name) = name else {
        return schedstat(Path::new("/proc/thread-self"));
    };
    let mut total = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = task.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name) {
            *total.get_or_insert(0) += schedstat(&dir)?;
        }
    }
    total
}

/// CPU time of the threads `names` (see [`thread_cpu_ns`]) while `f` runs.
fn cpu_during<T>(names: &[Option<&str>], f: impl FnOnce() -> T) -> (T, Option<Vec<f64>>) {
    let before: Option<Vec<u64>> = names.iter().map(|n| thread_cpu_ns(*n)).collect();
    let out = f();
    let after: Option<Vec<u64>> = names.iter().map(|n| thread_cpu_ns(*n)).collect();
    let spent = before.zip(after).map(|(b, a)| {
        b.iter()
            .zip(&a)
            .map(|(b, a)| a.saturating_sub(*b) as f64)
            .collect()
    });
    (out, spent)
}

/// Benchmark 1: streaming a pre-written backlog between two ckptd, ÷ raw quinn.
///
/// Each round: node 1 opens a fresh collocated ACTIVE_REPLICA checkpoint and makes its
/// replica active, node 2 opens it too (its replica is created and synchronized, empty),
/// node 1's replication is held back ([`NodeHandle::hold_replication`], as a link with
/// no room would), and node 1 writes the backlog in 64 KiB sections (untimed; node 2's
/// replica is checked to have none of it). Then the clock starts, the hold is released,
/// node 1 synchronizes (every replica acked), and the clock stops. Node 2's replica is
/// then read back and compared byte for byte. Beside it, in alternating order, the same
/// number of bytes goes over one quinn stream on a fresh connection (handshake and a
/// first 8 MiB transfer untimed, so its congestion window is open as the mesh's is) and
/// is read to its end. Each side's CPU time is reported beside the wall times: on a
/// shared machine it shows what each costs when the wall times mostly show who got the
/// cores.
///
/// As context, each round also times a replica that joins with the backlog already
/// written: from node 2's open, which creates the replica object (zeroing its pages
/// costs tens of milliseconds here), until node 1's synchronize returned.
pub fn replication_vs_quinn_bulk(
    cluster: &mut Cluster,
    quinn: &mut QuinnBaseline,
    params: &Params,
) -> Result<BulkResult, BoxError> {
    let sections = params.backlog_sections();
    let bytes = sections * SECTION_BYTES;
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let mut out = BulkResult {
        bytes: bytes as u64,
        stream_ns: Vec::new(),
        quinn_ns: Vec::new(),
        ratios: Vec::new(),
        join_ns: Vec::new(),
        open_ns: Vec::new(),
        join_ratios: Vec::new(),
        verified_bytes: 0,
        quinn_bytes: 0,
        primary_cpu_ns: Vec::new(),
        replica_cpu_ns: Vec::new(),
        sender_cpu_ns: Vec::new(),
        receiver_cpu_ns: Vec::new(),
    };
    for round in 0..params.backlog_warmup + params.backlog_rounds {
        let timed = round >= params.backlog_warmup;
        let mut quinn_side = || -> Result<_, BoxError> {
            quinn.connect()?;
            // Warm, as the mesh's connection to node 2 is: a first transfer (untimed)
            // opens the congestion window.
            quinn.bulk(&data[..data.len().min(WARM_BYTES)])?;
            let (r, cpu) = cpu_during(&[None, Some("quinn-baseline")], || quinn.bulk(&data));
            quinn.disconnect();
            Ok((r?, cpu))
        };
        let ((q, q_cpu), s) = if round % 2 == 0 {
            let q = quinn_side()?;
            (q, stream_backlog(cluster, sections, &data)?)
        } else {
            let s = stream_backlog(cluster, sections, &data)?;
            (quinn_side()?, s)
        };
        if q.1 != bytes as u64 {
            return Err(format!("quinn delivered {} of {bytes} bytes", q.1).into());
        }
        let j = join_backlog(cluster, sections, &data)?;
        if timed {
            out.stream_ns.push(ns(s.total));
            out.quinn_ns.push(ns(q.0));
            out.ratios.push(ns(q.0) / ns(s.total).max(1.0));
            out.join_ns.push(ns(j.total));
            out.open_ns.push(ns(j.open));
            out.join_ratios.push(ns(q.0) / ns(j.total).max(1.0));
            out.verified_bytes += s.verified + j.verified;
            out.quinn_bytes += q.1;
            if let (Some(q_cpu), Some(s_cpu)) = (q_cpu, &s.cpu) {
                out.sender_cpu_ns.push(q_cpu[0]);
                out.receiver_cpu_ns.push(q_cpu[1]);
                out.primary_cpu_ns.push(s_cpu[0]);
                out.replica_cpu_ns.push(s_cpu[1]);
            }
        }
    }
    Ok(out)
}

/// One timed replication of a backlog.
struct CatchUp {
    /// From the start (the hold's release, or node 2's open) to the return of node 1's
    /// synchronize.
    total: Duration,
    /// Node 2's open alone (zero when node 2 had opened before).
    open: Duration,
    /// Section bytes node 2's replica then held correctly.
    verified: u64,
    /// CPU time of node 1's and node 2's daemon threads during `total`.
    cpu: Option<Vec<f64>>,
}

/// The checkpoint of one backlog round: collocated, ACTIVE_REPLICA, one section per
/// [`SECTION_BYTES`] of `len` bytes.
fn backlog_attributes(sections: usize, len: usize) -> Result<CreationAttributes, BoxError> {
    Ok(CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        checkpoint_size: len as u64,
        retention_duration: 0,
        max_sections: u32::try_from(sections)?,
        max_section_size: SECTION_BYTES as u64,
        max_section_id_size: 8,
    })
}

/// Writes `data` on node 1 in sections of [`SECTION_BYTES`].
fn write_backlog(ck1: &Checkpoint, data: &[u8]) -> Result<(), BoxError> {
    for (i, chunk) in data.chunks(SECTION_BYTES).enumerate() {
        ck1.create_section(Some(&(i as u64).to_le_bytes()), TIME_END, chunk)
            .map_err(|e| format!("create section {i} on node 1: {e}"))?;
    }
    Ok(())
}

/// Section bytes of `data` node 2's replica holds (an error naming the first section it
/// lacks).
fn verify_backlog(ck2: &Checkpoint, data: &[u8]) -> Result<u64, BoxError> {
    let mut buf = vec![0u8; SECTION_BYTES];
    let mut verified = 0u64;
    for (i, chunk) in data.chunks(SECTION_BYTES).enumerate() {
        if !holds(ck2, &(i as u64).to_le_bytes(), chunk, &mut buf) {
            return Err(format!(
                "node 2's replica lacks section {i} after node 1's synchronize returned"
            )
            .into());
        }
        verified += chunk.len() as u64;
    }
    Ok(verified)
}

/// One backlog of `data` written on node 1 while its replication is held, then streamed
/// to node 2's replica, which existed and was synchronized before (an error if node 2
/// held any of it before the release, or lacks any of it once node 1's synchronize
/// returned).
fn stream_backlog(
    cluster: &mut Cluster,
    sections: usize,
    data: &[u8],
) -> Result<CatchUp, BoxError> {
    let name = cluster.fresh_name("stream");
    let attrs = backlog_attributes(sections, data.len())?;
    let ck1 = cluster.open(1, &name, Some(&attrs))?;
    let opened = retry(|| ck1.set_active_replica())
        .map_err(|e| BoxError::from(format!("set_active_replica: {e}")))
        .and_then(|()| cluster.open(2, &name, None));
    let ck2 = match opened {
        Ok(ck2) => ck2,
        Err(e) => {
            cluster.remove(&name, [ck1]);
            return Err(e);
        }
    };
    let result = stream_into(cluster, &ck1, &ck2, data);
    cluster.hold_replication(1, false);
    cluster.remove(&name, [ck1, ck2]);
    result
}

/// [`stream_backlog`] once both nodes have opened the checkpoint.
fn stream_into(
    cluster: &Cluster,
    ck1: &Checkpoint,
    ck2: &Checkpoint,
    data: &[u8],
) -> Result<CatchUp, BoxError> {
    ck1.synchronize(60 * SECOND)
        .map_err(|e| format!("synchronize on node 1 before the backlog: {e}"))?;
    cluster.hold_replication(1, true);
    write_backlog(ck1, data)?;
    let mut buf = vec![0u8; SECTION_BYTES];
    let early = (0..data.chunks(SECTION_BYTES).len())
        .filter(|i| read_local(ck2, &(*i as u64).to_le_bytes(), &mut buf).is_ok())
        .count();
    if early > 0 {
        return Err(format!(
            "node 2's replica held {early} backlog sections while replication was held"
        )
        .into());
    }
    let ((synced, total), cpu) = cpu_during(&[Some("ckptd-1"), Some("ckptd-2")], || {
        let start = Instant::now();
        cluster.hold_replication(1, false);
        let synced = ck1.synchronize(60 * SECOND);
        (synced, start.elapsed())
    });
    synced.map_err(|e| format!("synchronize on node 1: {e}"))?;
    Ok(CatchUp {
        total,
        open: Duration::ZERO,
        verified: verify_backlog(ck2, data)?,
        cpu,
    })
}

/// One catch-up of `data` in sections of [`SECTION_BYTES`] by a replica that joins once
/// it is written (an error if node 2's replica does not hold all of it once node 1's
/// synchronize returned).
fn join_backlog(cluster: &mut Cluster, sections: usize, data: &[u8]) -> Result<CatchUp, BoxError> {
    let name = cluster.fresh_name("backlog");
    let attrs = backlog_attributes(sections, data.len())?;
    let ck1 = cluster.open(1, &name, Some(&attrs))?;
    let result = (|| -> Result<(CatchUp, Checkpoint), BoxError> {
        retry(|| ck1.set_active_replica()).map_err(|e| format!("set_active_replica: {e}"))?;
        write_backlog(&ck1, data)?;
        let (timed, cpu) = cpu_during(&[Some("ckptd-1"), Some("ckptd-2")], || {
            let start = Instant::now();
            let ck2 = cluster.open(2, &name, None)?;
            let open = start.elapsed();
            ck1.synchronize(60 * SECOND)
                .map_err(|e| format!("synchronize on node 1: {e}"))?;
            Ok::<_, BoxError>((ck2, open, start.elapsed()))
        });
        let (ck2, open, total) = timed?;
        let verified = verify_backlog(&ck2, data)?;
        Ok((
            CatchUp {
                total,
                open,
                verified,
                cpu,
            },
            ck2,
        ))
    })();
    match result {
        Ok((c, ck2)) => {
            cluster.remove(&name, [ck1, ck2]);
            Ok(c)
        }
        Err(e) => {
            cluster.remove(&name, [ck1]);
            Err(e)
        }
    }
}

// ---- 2. ALL_REPLICAS write against a network and a socket round trip ------------------------

/// What [`all_replicas_4096`] measured.
#[derive(Clone, Debug)]
pub struct AllReplicasResult {
    /// ns per 4 KiB overwrite of the ALL_REPLICAS checkpoint, or why it could not be
    /// timed (the write failed).
    pub write_ns: Result<Vec<f64>, String>,
    /// Of the overwrites checked, how many node 2's replica held when they returned.
    pub synchronous: (usize, usize),
    /// ns per 4 KiB quinn echo.
    pub echo_ns: Vec<f64>,
    /// ns per agent-socket round trip to ckptd (Hello → Welcome).
    pub ckptd_rt_ns: Vec<f64>,
    /// ns per 16-byte request/response over a Unix socket pair between two threads.
    pub unix_pair_ns: Vec<f64>,
}

impl AllReplicasResult {
    /// Whether every checked overwrite was on node 2's replica when it returned.
    pub fn is_synchronous(&self) -> bool {
        self.synchronous.1 > 0 && self.synchronous.0 == self.synchronous.1
    }
}

/// Benchmark 2: a 4 KiB overwrite of an ALL_REPLICAS checkpoint (opened on node 1, where
/// the primary is, and on node 2, so both hold a replica) ÷ (a 4 KiB quinn echo + one
/// agent ↔ ckptd round trip), p50 of individually timed calls in rotation.
///
/// Before and after the timing, `VERIFY_WRITES` overwrites with distinct contents are
/// each read back from node 2's replica as soon as they return: an ALL_REPLICAS write
/// must be on every replica by then. A failing write does not stop the baselines; its
/// error is kept for `skipped`.
pub fn all_replicas_4096(
    cluster: &mut Cluster,
    quinn: &mut QuinnBaseline,
    params: &Params,
) -> Result<AllReplicasResult, BoxError> {
    let name = cluster.fresh_name("all");
    let attrs = api_attributes(CreationFlags::WR_ALL_REPLICAS, ALL_REPLICAS_BYTES);
    let id = b"section";
    let ck1 = cluster.open(1, &name, Some(&attrs))?;
    let ck2 = match cluster.open(2, &name, None) {
        Ok(ck) => ck,
        Err(e) => {
            cluster.remove(&name, [ck1]);
            return Err(e);
        }
    };
    let mut session = CkptdSession::connect(&cluster.files().socket(1))?;
    let mut pair = UnixPair::start()?;
    quinn.connect()?;

    let mut payload = vec![0x5au8; ALL_REPLICAS_BYTES];
    let mut echo_buf = vec![0u8; ALL_REPLICAS_BYTES];
    let mut read_buf = vec![0u8; ALL_REPLICAS_BYTES];
    let mut counter = 0u64;
    let mut stamp = |p: &mut [u8]| {
        // The high bit keeps these apart from the timed writes' stamps.
        counter += 1;
        p[..8].copy_from_slice(&(counter | 1 << 63).to_le_bytes());
    };
    let mut write_err = ck1
        .create_section(Some(id), TIME_END, &payload)
        .err()
        .map(|e| format!("create_section: {e}"));
    let mut synchronous = (0, 0);
    let mut verify = |payload: &mut [u8], synchronous: &mut (usize, usize)| {
        for _ in 0..VERIFY_WRITES {
            stamp(payload);
            if let Err(e) = ck1.overwrite(id, payload) {
                return Some(format!("overwrite: {e}"));
            }
            synchronous.1 += 1;
            if holds(&ck2, id, payload, &mut read_buf) {
                synchronous.0 += 1;
            }
        }
        None
    };
    if write_err.is_none() {
        write_err = verify(&mut payload, &mut synchronous);
    }

    let mut write = Vec::with_capacity(params.rtt_samples);
    let mut echo = Vec::with_capacity(params.rtt_samples);
    let mut ckptd_rt = Vec::with_capacity(params.rtt_samples);
    let mut unix_pair = Vec::with_capacity(params.rtt_samples);
    for k in 0..params.rtt_warmup + params.rtt_samples {
        let timed = k >= params.rtt_warmup;
        // Rotate who goes first, so no side always follows the same other one.
        for step in 0..4 {
            match (k + step) % 4 {
                0 if write_err.is_none() => {
                    payload[..8].copy_from_slice(&(k as u64).to_le_bytes());
                    let t = Instant::now();
                    let r = ck1.overwrite(black_box(id), black_box(&payload));
                    let el = t.elapsed();
                    match r {
                        Ok(()) if timed => write.push(ns(el)),
                        Ok(()) => {}
                        Err(e) => write_err = Some(format!("overwrite: {e}")),
                    }
                }
                0 => {}
                1 => {
                    let t = Instant::now();
                    quinn.echo(black_box(&payload), &mut echo_buf)?;
                    let el = t.elapsed();
                    black_box(&echo_buf);
                    if timed {
                        echo.push(ns(el));
                    }
                }
                2 => {
                    let t = Instant::now();
                    session.ping()?;
                    let el = t.elapsed();
                    if timed {
                        ckptd_rt.push(ns(el));
                    }
                }
                _ => {
                    let t = Instant::now();
                    pair.ping()?;
                    let el = t.elapsed();
                    if timed {
                        unix_pair.push(ns(el));
                    }
                }
            }
        }
    }
    if params.rtt_warmup + params.rtt_samples > 0 && echo_buf[8..] != payload[8..] {
        return Err("the quinn echo returned other bytes".into());
    }
    if write_err.is_none() {
        write_err = verify(&mut payload, &mut synchronous);
    }
    quinn.disconnect();
    drop(session);
    cluster.remove(&name, [ck1, ck2]);
    Ok(AllReplicasResult {
        write_ns: match write_err {
            None => Ok(write),
            Some(e) => Err(e),
        },
        synchronous,
        echo_ns: echo,
        ckptd_rt_ns: ckptd_rt,
        unix_pair_ns: unix_pair,
    })
}

// ---- 3. idle synchronize against a small local overwrite -------------------------------------

/// What [`sync_idle_vs_overwrite_64`] measured.
#[derive(Clone, Copy, Debug)]
pub struct SyncIdleResult {
    /// Median ns per idle synchronize.
    pub sync_ns: f64,
    /// Median ns per 64 B overwrite.
    pub overwrite_ns: f64,
    /// Median of the per-batch ratios synchronize / overwrite.
    pub ratio: f64,
    /// Calls per batch.
    pub iters: u64,
    /// Whether node 2's replica held the last overwrite after a synchronize that waited.
    pub delivered: bool,
}

/// Benchmark 3: `synchronize` with nothing pending ÷ a 64 B local overwrite of the same
/// collocated checkpoint (node 1 active, a replica on node 2), in interleaved batches.
///
/// Every overwrite gives ckptd something to replicate, so before each synchronize batch
/// one untimed synchronize waits for the acks: the timed ones then find nothing pending,
/// which is the case measured.
pub fn sync_idle_vs_overwrite_64(
    cluster: &mut Cluster,
    params: &Params,
) -> Result<SyncIdleResult, BoxError> {
    let name = cluster.fresh_name("sync");
    let attrs = api_attributes(
        CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        SMALL_BYTES,
    );
    let id = b"section";
    let ck1 = cluster.open(1, &name, Some(&attrs))?;
    let mut cks = vec![];
    let result = (|| -> Result<SyncIdleResult, BoxError> {
        retry(|| ck1.set_active_replica()).map_err(|e| format!("set_active_replica: {e}"))?;
        ck1.create_section(Some(id), TIME_END, &[0u8; SMALL_BYTES])
            .map_err(|e| format!("create_section: {e}"))?;
        let ck2 = cluster.open(2, &name, None)?;
        let payload = [0x33u8; SMALL_BYTES];
        ck1.overwrite(id, &payload)
            .map_err(|e| format!("overwrite: {e}"))?;
        // The synchronize that waits (node 2 catches up).
        ck1.synchronize(10 * SECOND)
            .map_err(|e| format!("synchronize: {e}"))?;
        let mut buf = [0u8; SMALL_BYTES];
        if !holds(&ck2, id, &payload, &mut buf) {
            return Err("node 2 lacks the write after a synchronize".into());
        }
        cks.push(ck2);

        let mut failed: Option<String> = None;
        let mut overwrite = || {
            if let Err(e) = ck1.overwrite(black_box(id), black_box(&payload)) {
                failed.get_or_insert(format!("overwrite: {e}"));
            }
        };
        let sync = || {
            // A failure here would be a timeout of the barrier: the next drain reports it.
            let r = ck1.synchronize(black_box(10 * SECOND));
            black_box(r.is_ok());
        };
        let drain = || ck1.synchronize(10 * SECOND);
        // Calibrate the synchronize first, with nothing pending (after the overwrites it
        // would wait for their acks and look a thousand times slower).
        drain().map_err(|e| format!("synchronize: {e}"))?;
        let sync_iters = ckpt_bench::calibrate(params.batch, sync);
        let iters = ckpt_bench::calibrate(params.batch, &mut overwrite).min(sync_iters);
        let t = ckpt_bench::measure_pair_with(iters, params.batches, sync, &mut overwrite, || {
            drain().map_err(|e| format!("synchronize (drain): {e}"))
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }

        let last = [0x44u8; SMALL_BYTES];
        ck1.overwrite(id, &last)
            .map_err(|e| format!("overwrite: {e}"))?;
        ck1.synchronize(10 * SECOND)
            .map_err(|e| format!("synchronize: {e}"))?;
        let delivered = holds(&cks[0], id, &last, &mut buf);
        Ok(SyncIdleResult {
            sync_ns: t.a_ns,
            overwrite_ns: t.b_ns,
            ratio: t.ratio,
            iters,
            delivered,
        })
    })();
    cluster.remove(&name, [ck1].into_iter().chain(cks));
    result
}

// ---- the whole run ---------------------------------------------------------------------------

fn mib_s(bytes: u64, ns: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / (ns / 1e9)
}

fn spread(v: &[f64]) -> (f64, f64) {
    (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// Runs the three benchmarks on one cluster into `report`; `progress` gets a line before
/// each. Fails only when the cluster cannot start; a benchmark that fails is `skipped`.
pub fn run(params: &Params, report: &mut Report, progress: &dyn Fn(&str)) -> Result<(), BoxError> {
    let started = Instant::now();
    progress("starting two ckptd nodes");
    let mut cluster = Cluster::start()?;
    let mut quinn = QuinnBaseline::start(&cluster)?;
    let settings = cluster.transport_settings();
    report.text(
        "transport",
        format!(
            "loopback, TLS 1.3 mutual (cluster CA, node certificates), keep-alive {} ms, \
             idle timeout {} ms, stream window {} MiB, connection windows {} MiB",
            settings.keep_alive.as_millis(),
            settings.idle_timeout.as_millis(),
            settings.stream_receive_window >> 20,
            settings.receive_window >> 20
        ),
    );

    let key = "replication_vs_quinn_bulk";
    progress(&format!(
        "{key}: {} MiB backlog x {} rounds",
        params.backlog_bytes >> 20,
        params.backlog_rounds
    ));
    match replication_vs_quinn_bulk(&mut cluster, &mut quinn, params) {
        Ok(r) => {
            let repl = p50(&r.stream_ns);
            let q = p50(&r.quinn_ns);
            let ratio = p50(&r.ratios);
            let (lo, hi) = spread(&r.ratios);
            report.ratios.push(Ratio {
                key,
                value: ratio,
                ckpt: format!("{} ({:.0} MiB/s)", fmt_ns(repl), mib_s(r.bytes, repl)),
                baseline: format!("{} ({:.0} MiB/s)", fmt_ns(q), mib_s(r.bytes, q)),
                note: format!(
                    "{} MiB backlog streamed to an existing replica, {} rounds, rounds \
                     {lo:.2}..{hi:.2}; throughput ratio",
                    r.bytes >> 20,
                    r.ratios.len()
                ),
            });
            let join = p50(&r.join_ns);
            let (join_lo, join_hi) = spread(&r.join_ratios);
            report.num("backlog_bytes", r.bytes as f64);
            report.num("backlog_rounds", r.ratios.len() as f64);
            report.num("backlog_stream_p50_ns", repl);
            report.num("backlog_stream_mib_s", mib_s(r.bytes, repl));
            report.num("backlog_join_p50_ns", join);
            report.num("backlog_join_mib_s", mib_s(r.bytes, join));
            report.num("backlog_join_ratio", p50(&r.join_ratios));
            report.num("backlog_join_ratio_min", join_lo);
            report.num("backlog_join_ratio_max", join_hi);
            report.num("backlog_join_node2_open_p50_ns", p50(&r.open_ns));
            report.num("backlog_quinn_bulk_p50_ns", q);
            report.num("backlog_quinn_bulk_mib_s", mib_s(r.bytes, q));
            report.num("backlog_ratio_min", lo);
            report.num("backlog_ratio_max", hi);
            report.num("backlog_verified_bytes", r.verified_bytes as f64);
            if !r.primary_cpu_ns.is_empty() {
                report.num("backlog_cpu_node1_p50_ns", p50(&r.primary_cpu_ns));
                report.num("backlog_cpu_node2_p50_ns", p50(&r.replica_cpu_ns));
                report.num("backlog_quinn_cpu_sender_p50_ns", p50(&r.sender_cpu_ns));
                report.num("backlog_quinn_cpu_receiver_p50_ns", p50(&r.receiver_cpu_ns));
            }
        }
        Err(e) => report.skip(key, e.to_string()),
    }

    let key = "all_replicas_4096_vs_baseline";
    progress(&format!("{key}: {} samples", params.rtt_samples));
    match all_replicas_4096(&mut cluster, &mut quinn, params) {
        Ok(r) => {
            let echo = p50(&r.echo_ns);
            let rt = p50(&r.ckptd_rt_ns);
            report.num("quinn_echo_4096_p50_ns", echo);
            report.num("ckptd_socket_round_trip_p50_ns", rt);
            report.num("unix_pair_round_trip_p50_ns", p50(&r.unix_pair_ns));
            report.text(
                "all_replicas_synchronous_checks",
                format!(
                    "{} of {} overwrites were on node 2's replica when they returned",
                    r.synchronous.0, r.synchronous.1
                ),
            );
            report.flag("all_replicas_synchronous", r.is_synchronous());
            match &r.write_ns {
                Err(e) => report.skip(key, e.clone()),
                Ok(w) => {
                    let write = p50(w);
                    report.num("all_replicas_4096_overwrite_p50_ns", write);
                    if r.is_synchronous() {
                        report.ratios.push(Ratio {
                            key,
                            value: write / (echo + rt),
                            ckpt: fmt_ns(write),
                            baseline: format!("{} + {}", fmt_ns(echo), fmt_ns(rt)),
                            note: format!(
                                "p50 of {} calls each, in rotation; baseline = quinn echo \
                                 4 KiB + ckptd socket round trip",
                                w.len()
                            ),
                        });
                    } else {
                        report.skip(
                            key,
                            format!(
                                "the overwrite returned before node 2's replica had the \
                                 bytes ({} of {} checks): ALL_REPLICAS writes do not wait \
                                 for the replicas yet (p50 {} on the local path)",
                                r.synchronous.0,
                                r.synchronous.1,
                                fmt_ns(write)
                            ),
                        );
                    }
                }
            }
        }
        Err(e) => report.skip(key, e.to_string()),
    }
    drop(quinn);

    let key = "sync_idle_vs_overwrite_64";
    progress(&format!("{key}: {} batch pairs", params.batches));
    match sync_idle_vs_overwrite_64(&mut cluster, params) {
        Ok(r) if !r.delivered => report.skip(
            key,
            "node 2's replica lacked the last write after a synchronize that waited",
        ),
        Ok(r) => {
            report.ratios.push(Ratio {
                key,
                value: r.ratio,
                ckpt: fmt_ns(r.sync_ns),
                baseline: fmt_ns(r.overwrite_ns),
                note: format!(
                    "median of {} interleaved batch pairs of {} calls; drained before each \
                     synchronize batch",
                    params.batches, r.iters
                ),
            });
            report.num("sync_idle_p50_ns", r.sync_ns);
            report.num("overwrite_64_cluster_p50_ns", r.overwrite_ns);
        }
        Err(e) => report.skip(key, e.to_string()),
    }
    progress("stopping the nodes");
    drop(cluster);
    report.num("cluster_seconds", started.elapsed().as_secs_f64());
    Ok(())
}
