//! One node daemon: the mesh to the other nodes, the directory, the node's replicas (as
//! primary: journal tailing and streaming; as replica: applying diffs), and the Unix
//! socket its agents use.
//!
//! Everything runs on one current-thread tokio runtime in one task (the event loop), so
//! the state needs no locks; blocking waits on replica journals run on small threads that
//! only post "instance N moved" into the loop.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ckpt_engine::{CreateOptions, Replica, ReplicaAttributes, ReplicaLimits, Role, Sharing};
use ckpt_transport::directory::{DirConfig, Directory, Output};
use ckpt_transport::net::{Mesh, MeshConfig, MeshEvent, MeshHandle, MeshSocket};
use ckpt_transport::repl::{self, Primary, PrimaryEvent, ReplConfig, Transmit};
use ckpt_transport::tls::{CaRoots, NodeIdentity, TransportSettings};
use ckpt_transport::wire::{
    CkptAssign, DirOp, DirReply, Frame, FrameReader, PROTOCOL_VERSION, ReqId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::config::ClusterConfig;

/// The shm object name of a cluster instance's replica on a node.
pub fn object_name(instance: u64) -> String {
    format!("c{instance:016x}")
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node id is not in the cluster file.
    #[error("node {0} is not in the cluster file")]
    UnknownNode(u32),
    /// Certificates.
    #[error(transparent)]
    Tls(#[from] ckpt_transport::tls::TlsError),
    /// The QUIC mesh.
    #[error(transparent)]
    Mesh(#[from] ckpt_transport::net::MeshError),
    /// Socket or shm directory.
    #[error("{what}: {err}")]
    Io {
        /// What failed.
        what: String,
        /// Why.
        err: io::Error,
    },
}

enum Msg {
    Agent(u64, Frame),
    AgentGone(u64),
    Moved(u64),
}

struct Session {
    tx: mpsc::UnboundedSender<Bytes>,
    opens: Vec<u64>,
}

struct PendingReq {
    session: Option<u64>,
    agent_req: ReqId,
    op: DirOp,
    started: Duration,
    last_try: Duration,
}

struct Local {
    replica: Arc<Replica>,
    assign: CkptAssign,
    primary: Option<Primary>,
    waker: Option<Arc<Waker>>,
}

struct Waker {
    stop: AtomicBool,
    posted: AtomicBool,
}

/// How long ckptd keeps retrying a directory request nobody answers.
const REQUEST_GIVE_UP: Duration = Duration::from_secs(30);
const RETRY_EVERY: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(10);

struct Node {
    me: u32,
    incarnation: u64,
    shm_dir: PathBuf,
    origin: Instant,
    mesh: MeshHandle,
    dir: Directory,
    locals: BTreeMap<u64, Local>,
    sessions: HashMap<u64, Session>,
    pending: HashMap<ReqId, PendingReq>,
    counter: u64,
    msgs: mpsc::UnboundedSender<Msg>,
    repl: ReplConfig,
    limits: ReplicaLimits,
}

/// A running daemon (in this process, on its own thread).
#[derive(Debug)]
pub struct NodeHandle {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The node's id.
    pub node: u32,
}

impl NodeHandle {
    /// Stops the daemon cleanly (closes connections; replica objects stay for a restart).
    pub fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts node `node` of `cluster` on a thread of its own; returns once it listens.
pub fn spawn(cluster: ClusterConfig, node: u32) -> Result<NodeHandle, StartError> {
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("ckptd-{node}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    let _ = ready_tx.send(Err(StartError::Io {
                        what: "tokio runtime".into(),
                        err,
                    }));
                    return;
                }
            };
            rt.block_on(async move {
                match start(cluster, node).await {
                    Ok((n, listener, rx)) => {
                        let _ = ready_tx.send(Ok(()));
                        n.run(listener, rx, stop_rx).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|err| StartError::Io {
            what: "thread".into(),
            err,
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(NodeHandle {
            stop,
            thread: Some(thread),
            node,
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(StartError::Io {
            what: "daemon thread".into(),
            err: io::Error::other("exited during start"),
        }),
    }
}

/// Runs node `node` until `stop` turns true (SIGTERM in the binary).
pub async fn run(
    cluster: ClusterConfig,
    node: u32,
    stop: watch::Receiver<bool>,
) -> Result<(), StartError> {
    let (n, listener, rx) = start(cluster, node).await?;
    n.run(listener, rx, stop).await;
    Ok(())
}

async fn start(
    cluster: ClusterConfig,
    node: u32,
) -> Result<
    (
        Node,
        UnixListener,
        (
            mpsc::UnboundedReceiver<MeshEvent>,
            mpsc::UnboundedReceiver<Msg>,
        ),
    ),
    StartError,
> {
    let me = cluster
        .node(node)
        .ok_or(StartError::UnknownNode(node))?
        .clone();
    let identity = NodeIdentity::load(&me.cert, &me.key)?;
    let roots = CaRoots::load(&cluster.ca)?;
    let peers: BTreeMap<u32, std::net::SocketAddr> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != node)
        .map(|n| (n.id, n.address))
        .collect();
    let mut mc = MeshConfig::new(identity, roots, peers);
    mc.transport = TransportSettings {
        keep_alive: cluster.keep_alive,
        idle_timeout: cluster.idle_timeout,
        ..TransportSettings::default()
    };
    ckpt_engine::ensure_domain(&me.shm_dir).map_err(|errno| {
        io_err(
            format!("shm dir {}", me.shm_dir.display()),
            io::Error::from_raw_os_error(errno),
        )
    })?;
    if let Some(parent) = me.socket.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| io_err(format!("socket dir {}", parent.display()), err))?;
    }
    // A socket file left by a previous run (we hold no lock on it): replace it.
    let _ = std::fs::remove_file(&me.socket);
    let listener = UnixListener::bind(&me.socket)
        .map_err(|err| io_err(format!("agent socket {}", me.socket.display()), err))?;
    let (mesh, mesh_rx) = Mesh::start(mc, MeshSocket::Bind(me.address)).await?;
    let origin = Instant::now();
    let dir = Directory::new(
        DirConfig {
            node,
            nodes: cluster.nodes.iter().map(|n| n.id).collect(),
            directors: cluster
                .nodes
                .iter()
                .filter(|n| n.director)
                .map(|n| n.id)
                .collect(),
            two_node: cluster.two_node,
            heartbeat: cluster.heartbeat,
            election_timeout: cluster.election_timeout,
            max_checkpoints: cluster.max_checkpoints,
        },
        Duration::ZERO,
    );
    let (msgs, msgs_rx) = mpsc::unbounded_channel();
    let incarnation = incarnation();
    info!(node, incarnation, socket = %me.socket.display(), "ckptd started");
    let mut n = Node {
        me: node,
        incarnation,
        shm_dir: me.shm_dir.clone(),
        origin,
        mesh,
        dir,
        locals: BTreeMap::new(),
        sessions: HashMap::new(),
        pending: HashMap::new(),
        counter: 0,
        msgs,
        repl: ReplConfig::default(),
        limits: ReplicaLimits::default(),
    };
    n.reattach();
    Ok((n, listener, (mesh_rx, msgs_rx)))
}

fn io_err(what: String, err: io::Error) -> StartError {
    StartError::Io { what, err }
}

fn incarnation() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 40)
}

impl Node {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Replicas left by a previous run of this daemon: map them again (their agents keep
    /// using them); the directory's `Assign`s then say which are still ours.
    fn reattach(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.shm_dir) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(hex) = name.strip_prefix('c') else {
                continue;
            };
            let Ok(instance) = u64::from_str_radix(hex, 16) else {
                continue;
            };
            if hex.len() != 16 {
                continue;
            }
            match Replica::attach(&self.shm_dir, name, Sharing::default()) {
                Ok(r) => {
                    info!(instance, "reattached replica");
                    let a = r.attributes();
                    self.locals.insert(
                        instance,
                        Local {
                            replica: Arc::new(r),
                            assign: CkptAssign {
                                instance,
                                name: String::new(),
                                attrs: wire_attrs(&a),
                                replicas: vec![self.me],
                                primary: None,
                                term: 0,
                                unlinked: false,
                            },
                            primary: None,
                            waker: None,
                        },
                    );
                }
                Err(e) => warn!(instance, "cannot reattach {name}: {e}"),
            }
        }
    }

    async fn run(
        mut self,
        listener: UnixListener,
        (mut mesh_rx, mut msgs_rx): (
            mpsc::UnboundedReceiver<MeshEvent>,
            mpsc::UnboundedReceiver<Msg>,
        ),
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_session = 1u64;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                ev = mesh_rx.recv() => match ev {
                    Some(ev) => self.on_mesh(ev),
                    None => break,
                },
                msg = msgs_rx.recv() => if let Some(m) = msg { self.on_msg(m) },
                acc = listener.accept() => if let Ok((stream, _)) = acc {
                    if peer_allowed(&stream) {
                        let id = next_session;
                        next_session += 1;
                        self.start_session(id, stream);
                    } else {
                        warn!("refused an agent connection from another user");
                    }
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        for l in self.locals.values() {
            if let Some(w) = &l.waker {
                w.stop.store(true, Ordering::Release);
            }
        }
        self.mesh.shutdown().await;
        info!(node = self.me, "ckptd stopped");
    }

    fn start_session(&mut self, id: u64, stream: UnixStream) {
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let msgs = self.msgs.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(ckpt_transport::wire::DEFAULT_MAX_FRAME);
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => reader.push(&buf[..n]),
                }
                loop {
                    match reader.next() {
                        Ok(Some(f)) => {
                            let _ = msgs.send(Msg::Agent(id, f));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(session = id, "bad frame from an agent: {e}");
                            let _ = msgs.send(Msg::AgentGone(id));
                            return;
                        }
                    }
                }
            }
            let _ = msgs.send(Msg::AgentGone(id));
        });
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        self.sessions.insert(
            id,
            Session {
                tx,
                opens: Vec::new(),
            },
        );
        debug!(session = id, "agent connected");
    }

    fn to_session(&self, id: u64, frame: &Frame) {
        if let Some(s) = self.sessions.get(&id) {
            let mut out = Vec::with_capacity(frame.encoded_len());
            frame.encode(&mut out);
            let _ = s.tx.send(Bytes::from(out));
        }
    }

    fn send(&self, t: Transmit) {
        let mut out = Vec::with_capacity(t.frame.encoded_len());
        t.frame.encode(&mut out);
        // The mesh adds the length prefix itself.
        let body = Bytes::from(out).slice(4..);
        if !self.mesh.send(t.node, body) {
            debug!(node = t.node, "peer down: frame dropped");
        }
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Agent(s, f) => self.on_agent(s, f),
            Msg::AgentGone(s) => {
                if let Some(sess) = self.sessions.remove(&s) {
                    debug!(
                        session = s,
                        opens = sess.opens.len(),
                        "agent gone: closing its opens"
                    );
                    for instance in sess.opens {
                        self.dir_request(
                            None,
                            ReqId {
                                node: 0,
                                incarnation: 0,
                                counter: 0,
                            },
                            DirOp::Close {
                                instance,
                                node: self.me,
                            },
                        );
                    }
                }
            }
            Msg::Moved(instance) => {
                if let Some(w) = self.locals.get(&instance).and_then(|l| l.waker.as_ref()) {
                    w.posted.store(false, Ordering::Release);
                }
                self.poll_primary(instance);
            }
        }
    }

    fn on_agent(&mut self, session: u64, f: Frame) {
        match f {
            Frame::Hello { .. } => {
                let welcome = Frame::Welcome {
                    node: self.me,
                    incarnation: self.incarnation,
                    shm_dir: self.shm_dir.to_string_lossy().into_owned(),
                };
                self.to_session(session, &welcome);
            }
            Frame::Request { req, op } => {
                let op = match op {
                    DirOp::Open {
                        name, attrs, flags, ..
                    } => DirOp::Open {
                        name,
                        attrs,
                        flags,
                        node: self.me,
                    },
                    DirOp::Close { instance, .. } => DirOp::Close {
                        instance,
                        node: self.me,
                    },
                    DirOp::SetActive { instance, .. } => DirOp::SetActive {
                        instance,
                        node: self.me,
                    },
                    other => other,
                };
                self.dir_request(Some(session), req, op);
            }
            other => {
                warn!(
                    session,
                    kind = other.kind(),
                    "unexpected frame from an agent"
                );
            }
        }
    }

    fn dir_request(&mut self, session: Option<u64>, agent_req: ReqId, op: DirOp) {
        self.counter += 1;
        let req = ReqId {
            node: self.me,
            incarnation: self.incarnation,
            counter: self.counter,
        };
        let now = self.now();
        self.pending.insert(
            req,
            PendingReq {
                session,
                agent_req,
                op: op.clone(),
                started: now,
                last_try: now,
            },
        );
        let mut out = Vec::new();
        self.dir.request(req, op, now, &mut out);
        self.apply_outputs(out);
    }

    fn apply_outputs(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send(t) => self.send(t),
                Output::Reply { req, result } => self.on_dir_reply(req, result),
                Output::Assign(a) => self.on_assign(a),
                Output::Unassign(i) => self.on_unassign(i),
                Output::Leader(l) => {
                    info!(node = self.me, leader = ?l, term = self.dir.term(), "directory leader");
                }
            }
        }
    }

    fn on_dir_reply(&mut self, req: ReqId, result: DirReply) {
        if matches!(result, DirReply::NotLeader { .. }) {
            return; // retried on the tick
        }
        let Some(p) = self.pending.remove(&req) else {
            return;
        };
        let Some(session) = p.session else {
            return;
        };
        match (&p.op, &result) {
            (DirOp::Open { .. }, DirReply::Opened { ckpt }) => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.opens.push(ckpt.instance);
                } else {
                    // The agent left meanwhile: undo its open.
                    let instance = ckpt.instance;
                    self.dir_request(
                        None,
                        p.agent_req,
                        DirOp::Close {
                            instance,
                            node: self.me,
                        },
                    );
                    return;
                }
            }
            (DirOp::Close { instance, .. }, DirReply::Done) => {
                if let Some(s) = self.sessions.get_mut(&session)
                    && let Some(i) = s.opens.iter().position(|x| x == instance)
                {
                    s.opens.swap_remove(i);
                }
            }
            _ => {}
        }
        self.to_session(
            session,
            &Frame::Reply {
                req: p.agent_req,
                result,
            },
        );
    }

    fn on_assign(&mut self, a: CkptAssign) {
        let instance = a.instance;
        if !a.replicas.contains(&self.me) {
            self.on_unassign(instance);
            return;
        }
        if !self.locals.contains_key(&instance) {
            let name = object_name(instance);
            let replica = match Replica::attach(&self.shm_dir, &name, Sharing::default()) {
                Ok(r) => r,
                Err(_) => {
                    let attrs = engine_attrs(&a.attrs);
                    let opts = CreateOptions {
                        limits: self.limits,
                        sharing: Sharing::default(),
                        instance,
                        role: Role::Replica,
                    };
                    match Replica::create(&self.shm_dir, &name, &attrs, &opts) {
                        Ok(r) => r,
                        Err(e) => {
                            warn!(instance, "cannot create the replica: {e}");
                            return;
                        }
                    }
                }
            };
            self.locals.insert(
                instance,
                Local {
                    replica: Arc::new(replica),
                    assign: a.clone(),
                    primary: None,
                    waker: None,
                },
            );
        }
        let me = self.me;
        let mesh = self.mesh.clone();
        let msgs = self.msgs.clone();
        let repl_cfg = self.repl.clone();
        let l = self.locals.get_mut(&instance).expect("inserted");
        l.assign = a.clone();
        if a.primary == Some(me) {
            let fresh = l.primary.as_ref().is_none_or(|p| p.term() != a.term);
            if fresh {
                info!(instance, term = a.term, "this node is now the primary");
                l.replica.set_role(Role::Primary, a.term);
                l.replica
                    .set_replication_position(a.term, l.replica.commit_seq());
                l.primary = Some(Primary::new(instance, a.term, repl_cfg));
            }
            let others: Vec<u32> = a.replicas.iter().copied().filter(|n| *n != me).collect();
            if let Some(p) = l.primary.as_mut() {
                p.set_replicas(&others, |n| mesh.is_up(n));
            }
            if l.waker.is_none() {
                l.waker = Some(start_waker(instance, Arc::clone(&l.replica), msgs));
            }
        } else {
            if l.primary.take().is_some() {
                info!(instance, term = a.term, primary = ?a.primary, "this node is no longer the primary");
            }
            if let Some(w) = l.waker.take() {
                w.stop.store(true, Ordering::Release);
            }
            if l.replica.role().0 != Role::Replica {
                l.replica.set_role(Role::Replica, a.term);
            }
        }
        self.poll_primary(instance);
    }

    fn on_unassign(&mut self, instance: u64) {
        if let Some(l) = self.locals.remove(&instance) {
            if let Some(w) = &l.waker {
                w.stop.store(true, Ordering::Release);
            }
            info!(instance, "replica removed");
            let _ = Replica::remove(&self.shm_dir, &object_name(instance));
        }
    }

    fn on_mesh(&mut self, ev: MeshEvent) {
        let now = self.now();
        let mut out = Vec::new();
        match ev {
            MeshEvent::PeerUp(n) => {
                info!(node = self.me, peer = n, "peer up");
                self.dir.peer_up(n, now, &mut out);
                for l in self.locals.values_mut() {
                    if let Some(p) = l.primary.as_mut() {
                        p.peer_up(n);
                    }
                }
            }
            MeshEvent::PeerDown(n) => {
                info!(node = self.me, peer = n, "peer down");
                self.dir.peer_down(n, now, &mut out);
                for l in self.locals.values_mut() {
                    if let Some(p) = l.primary.as_mut() {
                        p.peer_down(n);
                    }
                }
            }
            MeshEvent::Frame(from, body) => match Frame::decode(&body) {
                Ok(f) => self.on_frame(from, f, now, &mut out),
                Err(e) => warn!(peer = from, "undecodable frame: {e}"),
            },
        }
        self.apply_outputs(out);
    }

    fn on_frame(&mut self, from: u32, f: Frame, now: Duration, out: &mut Vec<Output>) {
        match f {
            Frame::Diff {
                instance,
                term,
                base,
                mark,
                ops,
            } => {
                let Some(l) = self.locals.get_mut(&instance) else {
                    return; // not assigned here (yet): the primary probes again
                };
                if l.primary.as_ref().is_some_and(|p| term > p.term()) {
                    // A primary in a newer term exists: stop taking local writes.
                    warn!(instance, newer = term, "fenced by a newer primary");
                    l.primary = None;
                    if let Some(w) = l.waker.take() {
                        w.stop.store(true, Ordering::Release);
                    }
                    l.replica.set_role(Role::Replica, term);
                }
                if l.primary.is_some() && term <= l.primary.as_ref().map_or(0, Primary::term) {
                    // We are its primary: whoever sends this is stale.
                    let t = l.primary.as_ref().map_or(0, Primary::term);
                    self.send(Transmit {
                        node: from,
                        frame: Frame::Stale { instance, term: t },
                    });
                    return;
                }
                let reply = repl::apply_diff(&l.replica, instance, term, base, mark, &ops);
                self.send(Transmit {
                    node: from,
                    frame: reply,
                });
            }
            Frame::Ack {
                instance,
                term,
                seq,
            } => {
                if let Some(l) = self.locals.get_mut(&instance)
                    && let Some(p) = l.primary.as_mut()
                {
                    p.on_ack(from, term, seq, &l.replica, now);
                }
                self.poll_primary(instance);
            }
            Frame::Stale { instance, term } => {
                let mut fenced = false;
                if let Some(l) = self.locals.get_mut(&instance) {
                    if let Some(p) = l.primary.as_mut()
                        && let Some(PrimaryEvent::Fenced { term: t }) = p.on_stale(from, term)
                    {
                        warn!(instance, newer = t, "fenced: a replica is in a newer term");
                        fenced = true;
                    }
                    if fenced {
                        l.primary = None;
                        if let Some(w) = l.waker.take() {
                            w.stop.store(true, Ordering::Release);
                        }
                        l.replica.set_role(Role::Replica, term);
                    }
                }
                self.poll_primary(instance);
            }
            other => self.dir.on_frame(from, other, now, out),
        }
    }

    fn poll_primary(&mut self, instance: u64) {
        let now = self.now();
        let mut tx = Vec::new();
        if let Some(l) = self.locals.get_mut(&instance)
            && let Some(p) = l.primary.as_mut()
        {
            p.poll(&l.replica, now, &mut tx);
            let floor = p.acked_floor().unwrap_or_else(|| l.replica.commit_seq());
            if floor < l.replica.acked_seq() {
                // A replica joined: a synchronize from now on waits for it too.
                l.replica.lower_acked_seq(floor);
            } else {
                l.replica.set_acked_seq(floor);
            }
        }
        for t in tx {
            self.send(t);
        }
    }

    fn on_tick(&mut self) {
        let now = self.now();
        let mut out = Vec::new();
        self.dir.tick(now, &mut out);
        self.apply_outputs(out);
        // Retry directory requests without an answer.
        let due: Vec<ReqId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.last_try) >= RETRY_EVERY)
            .map(|(r, _)| *r)
            .collect();
        for req in due {
            let p = self.pending.get_mut(&req).expect("listed");
            if now.saturating_sub(p.started) >= REQUEST_GIVE_UP {
                let p = self.pending.remove(&req).expect("listed");
                if let Some(s) = p.session {
                    self.to_session(
                        s,
                        &Frame::Reply {
                            req: p.agent_req,
                            result: DirReply::Failed { code: 6 },
                        },
                    );
                }
                continue;
            }
            p.last_try = now;
            let op = p.op.clone();
            let mut out = Vec::new();
            self.dir.request(req, op, now, &mut out);
            self.apply_outputs(out);
        }
        let ids: Vec<u64> = self
            .locals
            .iter()
            .filter(|(_, l)| l.primary.is_some())
            .map(|(i, _)| *i)
            .collect();
        for i in ids {
            self.poll_primary(i);
        }
    }
}

fn start_waker(
    instance: u64,
    replica: Arc<Replica>,
    msgs: mpsc::UnboundedSender<Msg>,
) -> Arc<Waker> {
    let w = Arc::new(Waker {
        stop: AtomicBool::new(false),
        posted: AtomicBool::new(false),
    });
    let w2 = Arc::clone(&w);
    let seen = AtomicU64::new(replica.commit_seq());
    let _ = std::thread::Builder::new()
        .name(format!("tail-{instance:x}"))
        .spawn(move || {
            while !w2.stop.load(Ordering::Acquire) {
                let after = seen.load(Ordering::Relaxed);
                if replica.wait_for_changes(after, Duration::from_millis(200)) {
                    seen.store(replica.commit_seq(), Ordering::Relaxed);
                    if !w2.posted.swap(true, Ordering::AcqRel)
                        && msgs.send(Msg::Moved(instance)).is_err()
                    {
                        return;
                    }
                }
            }
        });
    w
}

fn peer_allowed(stream: &UnixStream) -> bool {
    let Ok(cred) = stream.peer_cred() else {
        return false;
    };
    let me = rustix::process::geteuid().as_raw();
    cred.uid() == me || cred.uid() == 0
}

fn engine_attrs(a: &ckpt_transport::wire::Attrs) -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: a.creation_flags,
        checkpoint_size: a.checkpoint_size,
        retention_ns: a.retention,
        max_sections: a.max_sections,
        max_section_size: a.max_section_size,
        max_section_id_size: a.max_section_id_size,
    }
}

fn wire_attrs(a: &ReplicaAttributes) -> ckpt_transport::wire::Attrs {
    ckpt_transport::wire::Attrs {
        creation_flags: a.creation_flags,
        checkpoint_size: a.checkpoint_size,
        retention: a.retention_ns,
        max_sections: a.max_sections,
        max_section_size: a.max_section_size,
        max_section_id_size: a.max_section_id_size,
    }
}

#[allow(dead_code)]
const _: u16 = PROTOCOL_VERSION;
