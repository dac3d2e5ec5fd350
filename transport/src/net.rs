//! The peer mesh: one mutual-TLS QUIC connection per ordered pair of nodes, on tokio.
//!
//! [`Mesh::start`] opens one quinn endpoint (a real UDP socket, or any
//! [`quinn::AsyncUdpSocket`] such as a simulation adapter) and returns a [`MeshHandle`] to
//! send with and a channel of [`MeshEvent`]s. As `transport/DESIGN.md` §3 lays out:
//!
//! - each node **dials** every peer (server name `node-<id>.ckpt`, see
//!   [`tls::server_name`]) and **sends** only on the connection it dialed, over one
//!   long-lived unidirectional stream, so everything it sends to a peer arrives in order;
//!   [`MeshEvent::PeerUp`] and [`MeshEvent::PeerDown`] follow that connection;
//! - it **receives** on the connections it accepted: the peer's node id comes from its client
//!   certificate ([`tls::node_id_from_cert`]); an id that is ours or not among
//!   [`MeshConfig::peers`] is refused;
//! - a lost dialed connection is redialled with backoff (50 ms doubling to 1 s) until
//!   shutdown; frames sent while a peer is down are dropped ([`MeshHandle::send`] says so),
//!   since the protocols above retransmit.
//!
//! The accepting side grants the dialer its stream only after checking the dialer's
//! identity (the transport configuration allows no streams until then), so `PeerUp` means
//! the peer accepted us, not merely that our handshake finished.
//!
//! Frames on the stream are `len: u32 LE` then `len` bytes of body (kind byte first). The
//! driver does not parse bodies: it splits the stream and delivers each body in
//! [`MeshEvent::Frame`]. A length of 0 or above [`MeshConfig::max_frame`] closes the
//! connection. Application close codes: 0 closed (shutdown, or the dialer gave the link
//! up), 1 refused (not a cluster peer), 2 bad frame length, 3 replaced by a newer connection
//! from the same node, 4 stream not granted.
//!
//! Queues are unbounded in both directions (per peer for sending, one event channel for
//! receiving): the protocols above bound what they keep in flight with their own windows
//! and acknowledgements. A sender that wants to produce only as fast as a link takes bytes
//! reads [`MeshHandle::queued`] and waits for [`MeshHandle::drained`].

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{
    Connection, ConnectionError, Endpoint, EndpointConfig, RecvStream, SendStream, VarInt,
};
use rustls_pki_types::CertificateDer;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::tls::{self, CaRoots, NodeIdentity, TlsError, TransportSettings};

/// The default [`MeshConfig::max_frame`]: 96 MiB (twice the 40 MB write limit, plus headroom).
pub const DEFAULT_MAX_FRAME: usize = 96 << 20;

/// First redial delay after a failed or lost connection.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Largest redial delay.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a dialer waits for the accepting node to grant its stream.
const GRANT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`MeshHandle::shutdown`] waits for connections to close and tasks to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// At most this many queued frames go into one write.
const WRITE_BATCH: usize = 64;
/// A received frame body's buffer is reserved up to this size at once; a longer body's
/// grows as its bytes arrive.
const BODY_RESERVE: usize = 8 << 20;

const CLOSE_CLOSED: u32 = 0;
const CLOSE_REFUSED: u32 = 1;
const CLOSE_BAD_FRAME: u32 = 2;
const CLOSE_REPLACED: u32 = 3;
const CLOSE_NO_STREAM: u32 = 4;

/// What a node's mesh needs to know.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// This node's id; it must be the one [`MeshConfig::identity`] names.
    pub node: u32,
    /// The other nodes and their addresses. An entry for [`MeshConfig::node`] is ignored.
    pub peers: BTreeMap<u32, SocketAddr>,
    /// This node's certificate and key.
    pub identity: NodeIdentity,
    /// The cluster CA that every peer's certificate must chain to.
    pub roots: CaRoots,
    /// QUIC timers and windows.
    pub transport: TransportSettings,
    /// The largest frame body accepted or sent, in bytes (at most `u32::MAX`).
    pub max_frame: usize,
}

impl MeshConfig {
    /// A configuration for `identity`'s node with default transport settings and
    /// [`DEFAULT_MAX_FRAME`].
    pub fn new(identity: NodeIdentity, roots: CaRoots, peers: BTreeMap<u32, SocketAddr>) -> Self {
        Self {
            node: identity.node(),
            peers,
            identity,
            roots,
            transport: TransportSettings::default(),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// The UDP socket a mesh runs on.
#[derive(Debug)]
pub enum MeshSocket {
    /// Bind a UDP socket to this address (port 0 picks a free port).
    Bind(SocketAddr),
    /// An already bound UDP socket.
    Udp(std::net::UdpSocket),
    /// Any socket quinn can drive, such as a network simulator's.
    Abstract {
        /// The socket.
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        /// The runtime that drives quinn's timers and tasks.
        runtime: Arc<dyn quinn::Runtime>,
        /// Seed of every draw quinn makes (its endpoint RNG, the connection ids it issues
        /// and the ones it dials with, its stateless-reset key), for reproducible
        /// simulations; `None` draws from the OS. Not for production: a seeded endpoint's
        /// ids and resets are predictable.
        rng_seed: Option<[u8; 32]>,
        /// The TLS crypto provider, for reproducible simulations: one whose random draws
        /// and key exchange follow a seed makes every handshake byte the same on a replay
        /// (`None`: *ring*'s, drawing from the OS). Not for production.
        tls_provider: Option<Arc<rustls::crypto::CryptoProvider>>,
    },
}

/// What the mesh reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshEvent {
    /// Our connection to this node is established: [`MeshHandle::send`] to it now queues.
    PeerUp(u32),
    /// Our connection to this node is lost; it is being redialled.
    PeerDown(u32),
    /// A frame body (kind byte first) that this node sent us.
    Frame(u32, Bytes),
}

/// Errors of [`Mesh::start`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The UDP socket could not be bound or the endpoint not made.
    #[error("mesh socket: {0}")]
    Bind(#[source] io::Error),
    /// The identity names another node than the configuration.
    #[error("the certificate names node {identity} but the mesh is configured as node {config}")]
    IdentityMismatch {
        /// The node the certificate names.
        identity: u32,
        /// [`MeshConfig::node`].
        config: u32,
    },
    /// [`MeshConfig::max_frame`] is 0 or above `u32::MAX`.
    #[error("max_frame {0} is not in 1..=u32::MAX")]
    MaxFrameOutOfRange(usize),
    /// The TLS or transport configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The peer mesh driver; see the [module documentation](self).
#[derive(Debug)]
pub struct Mesh(());

impl Mesh {
    /// Starts the mesh of `config.node` on `socket`: accepts peers' connections and dials
    /// every peer. Must be called within a tokio runtime.
    ///
    /// Events arrive on the returned receiver until the mesh shuts down (see
    /// [`MeshHandle::shutdown`]; dropping every handle also shuts it down).
    pub async fn start(
        config: MeshConfig,
        socket: MeshSocket,
    ) -> Result<(MeshHandle, mpsc::UnboundedReceiver<MeshEvent>), MeshError> {
        if config.identity.node() != config.node {
            return Err(MeshError::IdentityMismatch {
                identity: config.identity.node(),
                config: config.node,
            });
        }
        if config.max_frame == 0 || u32::try_from(config.max_frame).is_err() {
            return Err(MeshError::MaxFrameOutOfRange(config.max_frame));
        }
        let provider = match &socket {
            MeshSocket::Abstract {
                tls_provider: Some(p),
                ..
            } => Arc::clone(p),
            _ => tls::provider(),
        };
        let server = tls::quinn_server_config_with(
            Arc::clone(&provider),
            &config.identity,
            &config.roots,
            &config.transport,
        )?;
        let mut client = tls::quinn_client_config_with(
            provider,
            &config.identity,
            &config.roots,
            &config.transport,
        )?;
        let endpoint = match socket {
            MeshSocket::Bind(addr) => {
                let udp = std::net::UdpSocket::bind(addr).map_err(MeshError::Bind)?;
                tokio_endpoint(server, udp)?
            }
            MeshSocket::Udp(udp) => tokio_endpoint(server, udp)?,
            MeshSocket::Abstract {
                socket,
                runtime,
                rng_seed,
                ..
            } => {
                let endpoint_config = match rng_seed {
                    Some(seed) => {
                        seeded_client(&mut client, seed);
                        seeded_endpoint_config(seed)
                    }
                    None => EndpointConfig::default(),
                };
                Endpoint::new_with_abstract_socket(endpoint_config, Some(server), socket, runtime)
                    .map_err(MeshError::Bind)?
            }
        };

        let mut peers = config.peers;
        peers.remove(&config.node);
        let (events, events_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            node: config.node,
            peers,
            max_frame: config.max_frame,
            endpoint,
            client,
            events,
            links: Mutex::new(BTreeMap::new()),
            drained: Notify::new(),
            accepted: Mutex::new(BTreeMap::new()),
        });
        let mut tasks = vec![tokio::spawn(accept_loop(
            shared.clone(),
            shutdown_rx.clone(),
        ))];
        for (&peer, &addr) in &shared.peers {
            tasks.push(tokio::spawn(dial_loop(
                shared.clone(),
                peer,
                addr,
                shutdown_rx.clone(),
            )));
        }
        info!(node = shared.node, addr = ?shared.endpoint.local_addr().ok(), "mesh started");
        let handle = MeshHandle {
            inner: Arc::new(HandleInner {
                shared,
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        };
        Ok((handle, events_rx))
    }
}

/// Sends frames to peers and shuts the mesh down. Clones share one mesh.
#[derive(Debug, Clone)]
pub struct MeshHandle {
    inner: Arc<HandleInner>,
}

impl MeshHandle {
    /// Queues `frame` (a body, kind byte first; the driver adds the length prefix) to `node`.
    ///
    /// Returns whether it was queued on a live connection. It is not when `node` is down or
    /// unknown, or when `frame` is empty or longer than [`MeshConfig::max_frame`]. A queued
    /// frame can still be lost with its connection. The queue is unbounded; QUIC flow
    /// control paces the writes.
    pub fn send(&self, node: u32, frame: Bytes) -> bool {
        let shared = &self.inner.shared;
        if frame.is_empty() || frame.len() > shared.max_frame {
            warn!(
                node = shared.node,
                peer = node,
                len = frame.len(),
                "not sending a frame of this length"
            );
            return false;
        }
        let len = frame.len() + 4;
        lock(&shared.links).get(&node).is_some_and(|link| {
            // Counted before it is queued, so the writer never subtracts it first.
            link.queued.fetch_add(len, Ordering::Relaxed);
            let sent = link.tx.send(frame).is_ok();
            if !sent {
                link.queued.fetch_sub(len, Ordering::Relaxed);
            }
            sent
        })
    }

    /// Bytes queued to `node` (length prefixes included) that its connection's stream has
    /// not taken yet; 0 when it is down. QUIC takes bytes as the peer's flow control
    /// allows, so this grows when a sender outpaces the peer.
    pub fn queued(&self, node: u32) -> usize {
        lock(&self.inner.shared.links)
            .get(&node)
            .map_or(0, |link| link.queued.load(Ordering::Relaxed))
    }

    /// Completes once a link's stream has taken queued bytes since the last time it
    /// completed (at once if that happened meanwhile): the moment to look at
    /// [`Self::queued`] again.
    pub async fn drained(&self) {
        self.inner.shared.drained.notified().await;
    }

    /// Whether our connection to `node` is up.
    pub fn is_up(&self, node: u32) -> bool {
        lock(&self.inner.shared.links).contains_key(&node)
    }

    /// This node's id.
    pub fn node(&self) -> u32 {
        self.inner.shared.node
    }

    /// The local address of the mesh's socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.shared.endpoint.local_addr()
    }

    /// Closes every connection and the endpoint, and waits briefly for peers to be told
    /// and for the mesh's tasks to end. No events follow (not even `PeerDown`), and the
    /// event channel closes.
    ///
    /// The socket is released once every clone of this handle is dropped.
    pub async fn shutdown(&self) {
        let shared = &self.inner.shared;
        self.inner.shutdown.send_replace(true);
        shared
            .endpoint
            .close(VarInt::from_u32(CLOSE_CLOSED), b"shutdown");
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, shared.endpoint.wait_idle()).await;
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for mut task in tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        lock(&shared.links).clear();
        lock(&shared.accepted).clear();
        info!(node = shared.node, "mesh shut down");
    }
}

/// What the handle owns; dropping the last handle shuts the mesh down.
#[derive(Debug)]
struct HandleInner {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.shared
            .endpoint
            .close(VarInt::from_u32(CLOSE_CLOSED), b"shutdown");
    }
}

/// State the mesh's tasks share.
#[derive(Debug)]
struct Shared {
    node: u32,
    peers: BTreeMap<u32, SocketAddr>,
    max_frame: usize,
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    events: mpsc::UnboundedSender<MeshEvent>,
    /// The queue of each peer whose dialed connection is up.
    links: Mutex<BTreeMap<u32, Link>>,
    /// Notified whenever a link's stream took queued bytes.
    drained: Notify,
    /// The newest accepted connection of each peer.
    accepted: Mutex<BTreeMap<u32, Connection>>,
}

/// The sending side of a dialed connection that is up.
#[derive(Debug)]
struct Link {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Bytes in `tx` not yet taken by the stream.
    queued: Arc<AtomicUsize>,
}

impl Shared {
    fn emit(&self, event: MeshEvent) {
        // The receiver may be gone; nothing to do then.
        let _ = self.events.send(event);
    }
}

/// An endpoint configuration whose every draw comes from `seed`: quinn's own RNG, the
/// connection ids it issues and the key of its stateless resets. quinn draws the last two
/// from the thread's RNG otherwise, and a simulation's replay then went another way where
/// a datagram's fate depended on those bytes (a late Initial's header protection is keyed
/// by the connection id).
fn seeded_endpoint_config(seed: [u8; 32]) -> EndpointConfig {
    let mut draw = SplitMix::new(&seed, 0);
    let mut reset_key = [0u8; 32];
    for chunk in reset_key.chunks_mut(8) {
        chunk.copy_from_slice(&draw.next().to_le_bytes());
    }
    let mut config = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset_key,
    )));
    config.rng_seed(Some(seed));
    let ids = Arc::new(Mutex::new(SplitMix::new(&seed, 1)));
    config.cid_generator(move || {
        let seed = lock(&ids).next();
        Box::new(SeededCids(SplitMix(seed)))
    });
    config
}

/// Makes `client` draw the connection ids of its first Initials from `seed`.
fn seeded_client(client: &mut quinn::ClientConfig, seed: [u8; 32]) {
    let ids = Mutex::new(SplitMix::new(&seed, 2));
    client.initial_dst_cid_provider(Arc::new(move || {
        let id = lock(&ids).next().to_le_bytes();
        quinn_proto::ConnectionId::new(&id)
    }));
}

/// SplitMix64: a seeded sequence for simulations (not for secrets).
struct SplitMix(u64);

impl SplitMix {
    /// The sequence of `seed` numbered `stream`.
    fn new(seed: &[u8; 32], stream: u64) -> Self {
        let folded = seed
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .fold(stream.wrapping_mul(0xa076_1d64_78bd_642f), |a, x| {
                a.rotate_left(17) ^ x
            });
        Self(folded)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Connection ids of 8 bytes from a seeded sequence.
struct SeededCids(SplitMix);

impl quinn_proto::ConnectionIdGenerator for SeededCids {
    fn generate_cid(&mut self) -> quinn_proto::ConnectionId {
        quinn_proto::ConnectionId::new(&self.0.next().to_le_bytes())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

fn tokio_endpoint(
    server: quinn::ServerConfig,
    udp: std::net::UdpSocket,
) -> Result<Endpoint, MeshError> {
    Endpoint::new(
        EndpointConfig::default(),
        Some(server),
        udp,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(MeshError::Bind)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a map operation that cannot leave the map inconsistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens on shutdown.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Dials `peer` until shutdown, running the link while connected.
async fn dial_loop(
    shared: Arc<Shared>,
    peer: u32,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let node = shared.node;
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let dialed = tokio::select! {
            biased;
            () = shutdown_signalled(&mut shutdown) => return,
            dialed = dial(&shared, peer, addr) => dialed,
        };
        match dialed {
            Ok((conn, stream)) => {
                backoff = BACKOFF_MIN;
                failures = 0;
                if run_link(&shared, peer, conn, stream, &mut shutdown)
                    .await
                    .is_break()
                {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                // The first failure of a streak is worth a line; the rest repeat it.
                if failures == 1 {
                    info!(node, peer, %addr, error = %e, "cannot connect to peer; retrying");
                } else {
                    debug!(node, peer, %addr, error = %e, failures, "cannot connect to peer");
                }
            }
        }
        tokio::select! {
            biased;
            () = shutdown_signalled(&mut shutdown) => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error(transparent)]
    Connect(#[from] quinn::ConnectError),
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("the peer did not grant a stream within {GRANT_TIMEOUT:?}")]
    NoStream,
}

/// Connects to `peer` and opens the stream it sends on.
async fn dial(
    shared: &Shared,
    peer: u32,
    addr: SocketAddr,
) -> Result<(Connection, SendStream), DialError> {
    let connecting =
        shared
            .endpoint
            .connect_with(shared.client.clone(), addr, &tls::server_name(peer))?;
    let conn = connecting.await?;
    // The accepting node grants the stream once it has accepted our identity.
    match tokio::time::timeout(GRANT_TIMEOUT, conn.open_uni()).await {
        Ok(Ok(stream)) => Ok((conn, stream)),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            conn.close(VarInt::from_u32(CLOSE_NO_STREAM), b"no stream granted");
            Err(DialError::NoStream)
        }
    }
}

/// Writes queued frames to `peer` until the connection is lost (`Continue`: redial) or
/// the mesh shuts down (`Break`).
async fn run_link(
    shared: &Shared,
    peer: u32,
    conn: Connection,
    mut stream: SendStream,
    shutdown: &mut watch::Receiver<bool>,
) -> std::ops::ControlFlow<()> {
    let node = shared.node;
    let (tx, mut queue) = mpsc::unbounded_channel::<Bytes>();
    let queued = Arc::new(AtomicUsize::new(0));
    lock(&shared.links).insert(
        peer,
        Link {
            tx,
            queued: queued.clone(),
        },
    );
    info!(node, peer, remote = %conn.remote_address(), "peer up");
    shared.emit(MeshEvent::PeerUp(peer));
    let mut chunks = Vec::with_capacity(2 * WRITE_BATCH);
    let reason = loop {
        tokio::select! {
            biased;
            () = shutdown_signalled(shutdown) => {
                lock(&shared.links).remove(&peer);
                return std::ops::ControlFlow::Break(());
            }
            e = conn.closed() => break e.to_string(),
            Some(frame) = queue.recv() => {
                chunks.clear();
                push_frame(&mut chunks, frame);
                while chunks.len() < 2 * WRITE_BATCH {
                    match queue.try_recv() {
                        Ok(frame) => push_frame(&mut chunks, frame),
                        Err(_) => break,
                    }
                }
                let taken: usize = chunks.iter().map(Bytes::len).sum();
                if let Err(e) = stream.write_all_chunks(&mut chunks).await {
                    break e.to_string();
                }
                queued.fetch_sub(taken, Ordering::Relaxed);
                shared.drained.notify_one();
            }
        }
    };
    lock(&shared.links).remove(&peer);
    // Tell the peer too, in case only the stream failed.
    conn.close(VarInt::from_u32(CLOSE_CLOSED), b"link lost");
    info!(node, peer, %reason, "peer down");
    shared.emit(MeshEvent::PeerDown(peer));
    std::ops::ControlFlow::Continue(())
}

/// Appends a frame's length prefix and body.
fn push_frame(chunks: &mut Vec<Bytes>, frame: Bytes) {
    // `MeshHandle::send` admits only frames of at most `max_frame <= u32::MAX` bytes.
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    chunks.push(Bytes::copy_from_slice(&len.to_le_bytes()));
    chunks.push(frame);
}

/// Accepts connections until shutdown, serving each in its own task.
async fn accept_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut served = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown_signalled(&mut shutdown) => break,
            incoming = shared.endpoint.accept() => match incoming {
                Some(incoming) => {
                    served.spawn(serve(shared.clone(), incoming));
                }
                None => break,
            },
            Some(_) = served.join_next() => {}
        }
    }
    served.shutdown().await;
}

/// Completes an incoming connection, checks the peer's identity, and reads its frames.
async fn serve(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let node = shared.node;
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            info!(node, %remote, error = %e, "incoming connection failed its handshake");
            return;
        }
    };
    let peer = match peer_node(&conn) {
        Some(peer) if peer != node && shared.peers.contains_key(&peer) => peer,
        other => {
            warn!(node, %remote, peer = ?other, "refusing a node that is not a cluster peer");
            conn.close(VarInt::from_u32(CLOSE_REFUSED), b"not a cluster peer");
            return;
        }
    };
    if let Some(old) = lock(&shared.accepted).insert(peer, conn.clone()) {
        old.close(VarInt::from_u32(CLOSE_REPLACED), b"replaced");
    }
    debug!(node, peer, %remote, "accepted peer connection");
    conn.set_max_concurrent_uni_streams(VarInt::from_u32(1));
    let reason = loop {
        let stream = match conn.accept_uni().await {
            Ok(stream) => stream,
            Err(e) => break e.to_string(),
        };
        match read_frames(&shared, peer, stream).await {
            Ok(()) => {}
            Err(FrameError::Length(len)) => {
                warn!(
                    node,
                    peer, len, "closing a connection that sent a bad frame length"
                );
                conn.close(VarInt::from_u32(CLOSE_BAD_FRAME), b"bad frame length");
                break format!("bad frame length {len}");
            }
            Err(e) => debug!(node, peer, error = %e, "peer stream ended"),
        }
    };
    debug!(node, peer, %reason, "accepted peer connection ended");
    let mut accepted = lock(&shared.accepted);
    if accepted
        .get(&peer)
        .is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        accepted.remove(&peer);
    }
}

/// The node id in an established connection's client certificate.
fn peer_node(conn: &Connection) -> Option<u32> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    tls::node_id_from_cert(chain.first()?)
}

/// Why a stream of frames ended.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame length {0} is out of range")]
    Length(u32),
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
    #[error("the stream ended inside a frame")]
    Truncated,
}

/// Reads frames off one stream until it finishes cleanly or fails.
async fn read_frames(shared: &Shared, peer: u32, mut stream: RecvStream) -> Result<(), FrameError> {
    loop {
        let mut header = [0u8; 4];
        match stream.read_exact(&mut header).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(()),
            Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
            Err(quinn::ReadExactError::ReadError(e)) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(header);
        let len_usize = usize::try_from(len).map_err(|_| FrameError::Length(len))?;
        if len == 0 || len_usize > shared.max_frame {
            return Err(FrameError::Length(len));
        }
        shared.emit(MeshEvent::Frame(
            peer,
            read_body(&mut stream, len_usize).await?,
        ));
    }
}

/// Reads a body of `len` bytes into one buffer, reserved whole up to [`BODY_RESERVE`]
/// (a frame's chunks are copied in once) and grown beyond that only as data arrives.
async fn read_body(stream: &mut RecvStream, len: usize) -> Result<Bytes, FrameError> {
    let mut body = BytesMut::new();
    while body.len() < len {
        let chunk = stream
            .read_chunk(len - body.len(), true)
            .await?
            .ok_or(FrameError::Truncated)?;
        if body.is_empty() && chunk.bytes.len() == len {
            // The whole body in one chunk: no copy.
            return Ok(chunk.bytes);
        }
        if body.capacity() == 0 {
            body.reserve(len.min(BODY_RESERVE));
        }
        body.extend_from_slice(&chunk.bytes);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use quinn_proto::ConnectionIdGenerator;

    use super::*;

    fn ids(seed: [u8; 32]) -> Vec<quinn_proto::ConnectionId> {
        let mut draw = SplitMix::new(&seed, 1);
        let mut cids = SeededCids(SplitMix(draw.next()));
        (0..4).map(|_| cids.generate_cid()).collect()
    }

    #[test]
    fn a_seeded_endpoint_issues_the_same_connection_ids_for_one_seed_and_others_for_another() {
        let a = ids([7; 32]);
        assert_eq!(a, ids([7; 32]), "a replay draws the same ids");
        assert_ne!(a, ids([8; 32]));
        let distinct: std::collections::BTreeSet<_> = a.iter().map(|c| c.to_vec()).collect();
        assert_eq!(distinct.len(), a.len(), "the ids of one endpoint differ");
        assert!(a.iter().all(|c| c.len() == 8));
    }
}
