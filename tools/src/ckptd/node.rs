//! One node daemon: the mesh to the other nodes, the directory, the node's replicas (as
//! primary: journal tailing and streaming; as replica: applying diffs), and the Unix
//! socket its agents use.
//!
//! Everything runs on one current-thread tokio runtime in one task (the event loop), so
//! the state needs no locks; blocking waits on replica journals run on small threads that
//! only post "instance N moved" into the loop.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ckpt_engine::{
    CreateOptions, Replica, ReplicaAttributes, ReplicaLimits, Role, SectionFilter, Sharing,
};
use ckpt_transport::directory::{DirConfig, Directory, Output};
use ckpt_transport::fdpass::{self, FdReader};
use ckpt_transport::net::{Mesh, MeshConfig, MeshEvent, MeshHandle, MeshSocket};
use ckpt_transport::repl::{self, EncodedDiff, Primary, PrimaryEvent, ReplConfig, Transmit};
use ckpt_transport::tls::{CaRoots, NodeIdentity, TransportSettings};
use ckpt_transport::wire::{
    CkptAssign, DiffOp, DiffRef, DirOp, DirReply, Frame, MAX_DESCRIPTORS, PROTOCOL_VERSION,
    RemoteOp, RemoteResult, ReqId,
};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::config::{ClusterConfig, ConfigError};
use super::metrics::{self, Gauges, Lag, Metrics, ReplicaGauges, SyncFailure};
use super::serve::{self, code};
use super::store::{SEALED_FILE, SealedStore, Store};
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
    /// The node's table is not acceptable (a metrics address off loopback, say).
    #[error(transparent)]
    Config(#[from] ConfigError),
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

/// How a node runs, beyond its cluster file: what the daemon uses by default, and what a
/// simulation replaces (its network, heap-backed replicas, in-memory agent sessions, no
/// threads, a fixed incarnation).
#[derive(Debug)]
pub struct NodeEnv {
    /// The mesh's UDP socket; `None` binds the node's address from the cluster file.
    pub socket: Option<MeshSocket>,
    /// Where replicas live; `None`: the node's shm directory from the cluster file.
    pub store: Option<Store>,
    /// Listen for agents on the node's Unix socket.
    pub agents: bool,
    /// Tail primaries' journals on threads (else every tick polls them).
    pub tail_threads: bool,
    /// The daemon's incarnation (request ids); `None`: from the clock and pid.
    pub incarnation: Option<u64>,
    /// Agent sessions over channels instead of the Unix socket.
    pub sessions: Option<mpsc::UnboundedReceiver<LocalSession>>,
}

impl Default for NodeEnv {
    fn default() -> Self {
        Self {
            socket: None,
            store: None,
            agents: true,
            tail_threads: true,
            incarnation: None,
            sessions: None,
        }
    }
}

/// An agent session over channels: frames in, encoded frames out (what the Unix socket
/// would carry).
#[derive(Debug)]
pub struct LocalSession {
    /// Frames from the agent.
    pub to_node: mpsc::UnboundedReceiver<Frame>,
    /// Encoded frames to the agent.
    pub from_node: mpsc::UnboundedSender<Bytes>,
}

enum Msg {
    /// A frame from an agent session, with the descriptors that came with it.
    Agent(u64, Frame, Vec<OwnedFd>),
    AgentGone(u64),
    Moved(u64),
    /// The metrics endpoint wants a scrape's text.
    Scrape(oneshot::Sender<String>),
    /// [`NodeHandle::hold_replication`]; answered once in force.
    HoldReplication(bool, oneshot::Sender<()>),
}

struct Session {
    tx: SessionTx,
    /// The agent's session key from its `Hello` (its pid in the high bits).
    key: Option<u64>,
    opens: Vec<u64>,
    /// Sealed node: the agent has not finished handing back the replicas it holds
    /// (`Descriptors` with `last`), which a restarted daemon waits for (`awaiting`).
    handback: bool,
}

/// Where a session's frames go: the Unix socket (frames may carry descriptors), or an
/// in-memory session's channel (no descriptors: simulations keep no sealed replicas).
enum SessionTx {
    Socket(mpsc::UnboundedSender<(Bytes, Vec<OwnedFd>)>),
    Channel(mpsc::UnboundedSender<Bytes>),
}

impl SessionTx {
    fn send(&self, bytes: Bytes, fds: Vec<OwnedFd>) {
        match self {
            Self::Socket(tx) => {
                let _ = tx.send((bytes, fds));
            }
            Self::Channel(tx) => {
                debug_assert!(fds.is_empty(), "descriptors for an in-memory session");
                let _ = tx.send(bytes);
            }
        }
    }
}

/// The file, in the node's shm directory, where ckptd keeps which agent session holds
/// which opens, so that a restarted ckptd hands them back to the agents that reconnect
/// (and closes those of agents that died meanwhile).
const SESSIONS_FILE: &str = "ckptd.sessions";

/// The pid in an agent's session key.
fn key_pid(key: u64) -> i32 {
    i32::try_from(key >> 24).unwrap_or(0)
}

struct PendingReq {
    session: Option<u64>,
    agent_req: ReqId,
    op: DirOp,
    started: Duration,
    last_try: Duration,
}

/// Who asked for a remote operation, and how to answer.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Agent {
        session: u64,
        req: ReqId,
    },
    Peer {
        node: u32,
        req: ReqId,
    },
    /// An agent's ActiveReplicaSet, waiting until the old active replica's daemon has
    /// brought this node's replica up to date (a synchronize) before it goes to the
    /// directory.
    Catchup {
        session: u64,
        req: ReqId,
        instance: u64,
    },
}

/// A remote operation forwarded to the primary's node.
struct Forwarded {
    origin: Origin,
    node: u32,
    write: bool,
    /// When it is answered anyway (TIMEOUT for a write, TRY_AGAIN for a read): the
    /// primary's node answers every operation well before this, so passing it means the
    /// answer was lost (a link made anew while it was sent) and no peer-down will come.
    deadline: Duration,
}

/// A synchronize waiting for the replicas' acks.
struct SyncWait {
    seq: u64,
    deadline: Option<Duration>,
    origin: Origin,
    /// When it arrived.
    since: Duration,
}

/// A question for the arrivals after `since` (`RemoteOp::Changes`), held until the
/// journal has some or `deadline` passes.
struct ChangesWait {
    since: u64,
    deadline: Duration,
    origin: Origin,
}

/// An ALL_REPLICAS write applied to the staging copy, waiting for every replica's ack
/// before it is published (applied to the node's replica) and answered.
struct Staged {
    /// The staging copy's commit seq after the write.
    seq: u64,
    change: Change,
    origin: Option<Origin>,
    result: RemoteResult,
    since: Duration,
}

enum Change {
    Op(RemoteOp),
    Reap(i64),
}

/// ALL_REPLICAS on the node that orders the checkpoint's writes: a private, heap-backed
/// copy takes every write first and is what the replicas are streamed from; the node's
/// replica (the one agents read) gets each write only once every replica acked it.
struct Staging {
    replica: Arc<Replica>,
    queue: VecDeque<Staged>,
    last_reap: Duration,
}

struct Local {
    replica: Arc<Replica>,
    assign: CkptAssign,
    primary: Option<Primary>,
    waker: Option<Arc<Waker>>,
    staging: Option<Staging>,
    syncs: Vec<SyncWait>,
    /// Arrival questions from nodes without a replica, waiting for a change.
    changes: Vec<ChangesWait>,
    /// Since when each other replica of the set could have acknowledged in the current
    /// term: when this node's `Primary` started (a new term probes every replica from
    /// scratch) or when the replica joined the set. An ALL_REPLICAS write stalls a replica
    /// only from then on (`evict_stuck`).
    waiting_since: BTreeMap<u32, Duration>,
    /// The replica was made empty here for a checkpoint that already had a term (the
    /// node's replicas were lost, or it was dropped from the set and added back) and no
    /// primary of this term or a later one has synced it since: its position says
    /// nothing (`report_positions`).
    empty: Option<u64>,
    /// Set while this node leads with a replica made empty (`empty`), alone in the set
    /// (nobody else to take the role): the commit seq of the replica that orders writes
    /// when it began. Leading does not sync it: until an agent's write commits there, the
    /// replica still holds nothing, and a replica that joins may hold the state (seed
    /// 11041: a wiped node alone in the set led, and its empty snapshot erased the copy
    /// a node added back held). Once one commits, the replica is the checkpoint.
    led_empty: Option<u64>,
    /// Replicas whose first answer this primary must see before it acts on it: its own
    /// replica was made empty when it was named primary, which is right only for a
    /// checkpoint that was just created (see `must_not_lead`). A replica that answers
    /// with a position holding state makes this node give the role back (`vet_answer`).
    vet: std::collections::BTreeSet<u32>,
    /// What this replica held when this node last became its primary: the position it
    /// had applied (or, when it was primary already, that term and its commit seq). A
    /// synchronize's writes of that term up to this seq are in it; later ones are lost.
    base: Option<(u64, u64)>,
    /// This node was the primary of `base`'s term already and goes on ordering the same
    /// replica's writes (not started over, not ALL_REPLICAS, whose writes move to a
    /// staging copy): every write of that term its journal holds is in it, also one an
    /// agent made after `base` was read but before the new role was (it checked the old
    /// role first, and its seq is past `base`).
    continued: bool,
}

impl Local {
    fn new(replica: Arc<Replica>, assign: CkptAssign) -> Self {
        Self {
            replica,
            assign,
            primary: None,
            waker: None,
            staging: None,
            syncs: Vec::new(),
            changes: Vec::new(),
            waiting_since: BTreeMap::new(),
            empty: None,
            led_empty: None,
            vet: std::collections::BTreeSet::new(),
            base: None,
            continued: false,
        }
    }

    /// The newest checkpoint term this replica is known to be in: the term of its role
    /// (set when this node became its primary, or when it was fenced or demoted), of its
    /// replication position (the primary it last applied from), or of the assignment it
    /// holds.
    fn term(&self) -> u64 {
        let (_, role_term) = self.replica.role();
        let (position_term, _) = self.replica.replication_position();
        role_term.max(position_term).max(self.assign.term)
    }

    /// Whether this replica shows that its node was the primary in `term` (see
    /// `Node::must_not_lead`): its role's term, set when the node became the primary, or
    /// its position's term, set as it published (no other primary writes in that term).
    fn led_in(&self, term: u64) -> bool {
        term != 0
            && (self.replica.role().1 == term || self.replica.replication_position().0 == term)
    }

    /// Whether this node, named the primary by `a`, starts the checkpoint over from no
    /// sections (`CkptAssign::from_nothing`): only before it has led in that term, after
    /// which its replica is the checkpoint (a restarted daemon named again goes by the
    /// ordinary rules of `Node::must_not_lead`).
    fn starts_over(&self, a: &CkptAssign) -> bool {
        a.from_nothing && !self.led_in(a.term)
    }

    /// The replica that orders writes here: an ALL_REPLICAS primary's staging copy,
    /// else the node's replica.
    fn ordering(&self) -> &Arc<Replica> {
        self.staging.as_ref().map_or(&self.replica, |s| &s.replica)
    }

    /// Whether the directory has placed this replica (one held from the previous run
    /// has only `hold`'s placeholder, without a name, until then).
    fn placed(&self) -> bool {
        !self.assign.name.is_empty()
    }

    /// Whether a primary has synced this replica since it was made empty (or, leading it
    /// alone, an agent's write committed in it: `led_empty`).
    fn synced(&self) -> bool {
        if let Some(at) = self.led_empty {
            return self.ordering().commit_seq() > at;
        }
        let (term, seq) = self.replica.replication_position();
        self.empty
            .is_none_or(|since| term != 0 && term >= since && seq != repl::INCOMPLETE)
    }

    /// Stops ordering writes: the waker ends, staged writes are answered TIMEOUT (their
    /// outcome is unknown: some replicas may have them), synchronizes TRY_AGAIN.
    fn demote(&mut self, out: &mut Vec<(Origin, RemoteResult)>, metrics: &mut Metrics) {
        self.primary = None;
        self.vet.clear();
        if self.led_empty.is_some() {
            if self.synced() {
                self.empty = None;
            } else {
                // It led with nothing and nothing was written: it still holds nothing,
                // and says so after a restart too (`hold`), as a replica in the middle
                // of a snapshot does (positions never go back).
                let (_, role_term) = self.replica.role();
                let (term, _) = self.replica.replication_position();
                self.replica.set_role(Role::Replica, role_term);
                self.replica
                    .set_replication_position(term.max(role_term), repl::INCOMPLETE);
            }
            self.led_empty = None;
        }
        if let Some(w) = self.waker.take() {
            w.stop();
        }
        if let Some(st) = self.staging.take() {
            for s in st.queue {
                if let Some(o) = s.origin {
                    out.push((o, fail(code::TIMEOUT)));
                }
            }
        }
        for w in self.syncs.drain(..) {
            metrics.sync_failed(SyncFailure::Demoted);
            out.push((w.origin, fail(code::TRY_AGAIN)));
        }
        // Asked again, the next primary answers from its own journal (lapped).
        for w in self.changes.drain(..) {
            out.push((w.origin, fail(code::TRY_AGAIN)));
        }
    }

    /// Answers the held arrival questions the journal now has changes for, or whose
    /// wait is over (`now`), in primary term `term`.
    fn answer_changes(&mut self, term: u64, now: Duration, out: &mut Vec<(Origin, RemoteResult)>) {
        let replica = &self.replica;
        let head = replica.commit_seq();
        self.changes.retain(|w| {
            // Nothing committed after it (the usual case on a tick): no journal read.
            let answer = if head == w.since {
                None
            } else {
                serve::changes(replica, term, term, w.since)
            };
            if let Some(r) = answer {
                out.push((w.origin, r));
                false
            } else if now >= w.deadline {
                out.push((w.origin, serve::no_changes(term, w.since)));
                false
            } else {
                true
            }
        });
    }
}

fn fail(code: u32) -> RemoteResult {
    RemoteResult::Failed { code, index: None }
}

fn all_replicas(a: &CkptAssign) -> bool {
    a.attrs.creation_flags & ckpt_transport::directory::flags::WR_ALL_REPLICAS != 0
}

fn collocated_async(a: &CkptAssign) -> bool {
    a.attrs.creation_flags & ckpt_transport::directory::flags::COLLOCATED != 0 && !all_replicas(a)
}

/// The position `replica` holds, as a promotion ranks it (what the node reports).
///
/// A replica holds what it applied: its replication position. The primary of an
/// asynchronous checkpoint holds its own journal, in which its replicas' positions count,
/// and its replication position only says where it became the primary: it holds what
/// every replica of its set acknowledged (what a synchronize confirmed), its acked seq.
/// (Ranked by the position it became the primary at, a primary whose set had shrunk to
/// itself, so that a synchronize had confirmed writes only it held, lost to a replica
/// holding less, and the promotion lost those writes: simulation seeds 2311 and 1050.
/// Ranked by its commit seq, it would count a tail no replica acknowledged: seeds 0..1000
/// then lost writes.) An ALL_REPLICAS primary's replicas count in its staging copy's
/// journal, not in this one.
fn held_position(replica: &Replica) -> (u64, u64) {
    let (term, seq) = replica.replication_position();
    let (role, role_term) = replica.role();
    let orders_here = role == Role::Primary
        && role_term == term
        && term != 0
        && seq != repl::INCOMPLETE
        && replica.attributes().creation_flags & ckpt_transport::directory::flags::WR_ALL_REPLICAS
            == 0;
    if orders_here {
        (term, seq.max(replica.acked_seq().min(replica.commit_seq())))
    } else {
        (term, seq)
    }
}

/// Makes `replica` a replica in `term`, first recording what it holds as its replication
/// position ([`held_position`]: it differs for a primary), so the node keeps reporting
/// that, after a restart too. Catching it up later is unchanged: a replica in an older
/// term gets a snapshot whatever its seq.
fn step_down(replica: &Replica, term: u64) {
    let held = held_position(replica);
    if held != replica.replication_position() {
        replica.set_replication_position(held.0, held.1);
    }
    replica.set_role(Role::Replica, term);
}

/// The tail thread of a primary's journal (see [`start_waker`]) and what ckptd tells it.
struct Waker {
    stop: AtomicBool,
    /// A `Moved` is on its way or being handled: ckptd's poll will see every change made
    /// until it runs, so the thread does not wait on the journal meanwhile.
    posted: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Waker {
    /// Ends the tail thread.
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.unpark();
    }

    /// ckptd took the last `Moved` and polls now: the thread may wait for what comes next.
    fn consumed(&self) {
        self.posted.store(false, Ordering::Release);
        self.unpark();
    }

    fn unpark(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// How long ckptd keeps retrying a directory request nobody answers.
const REQUEST_GIVE_UP: Duration = Duration::from_secs(30);
const RETRY_EVERY: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(10);
/// How often the node orders the reaping of expired sections of its ALL_REPLICAS
/// checkpoints.
const REAP_EVERY: Duration = Duration::from_millis(100);
/// How long an ALL_REPLICAS write waits for every replica before it is answered TIMEOUT
/// (it is still published once they ack).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a primary holds an arrival question (`RemoteOp::Changes`) with no change
/// to answer; below the forwarding node's bound for it (`WRITE_TIMEOUT`).
const CHANGES_WAIT_MAX: Duration = Duration::from_secs(2);
/// The most arrival questions a primary holds per checkpoint (one per watching process on
/// the nodes without a replica, normally).
const CHANGES_HELD_MAX: usize = 4096;
/// How long ActiveReplicaSet waits for the old active replica to bring this node's up to
/// date before it switches anyway.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long past its own bound (WRITE_TIMEOUT, or a synchronize's timeout) a forwarded
/// operation waits for the primary's node to answer.
const FORWARD_SLACK: Duration = Duration::from_secs(2);
/// The agent request id of the directory requests a daemon makes on its own behalf.
const NO_AGENT: ReqId = ReqId {
    node: 0,
    incarnation: 0,
    counter: 0,
};
/// How often a restarted daemon looks for agents of its previous run that died.
const ORPHAN_CHECK: Duration = Duration::from_secs(1);
/// How often the daemon compares the opens its agents hold with the directory's table
/// (`reconcile_opens`); a difference seen twice in a row is corrected.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);
/// How long a restarted sealed daemon waits for agents of its previous run to hand back a
/// replica the directory assigns it before it makes an empty one instead (the agents
/// reconnect within a second of the restart; a stopped one may never).
const RECLAIM_WAIT: Duration = Duration::from_secs(5);
/// How often positions are reported when they change (and at least every second).
const REPORT_EVERY: Duration = Duration::from_millis(100);
const REPORT_ANYWAY: Duration = Duration::from_secs(1);
/// How long an ALL_REPLICAS write waits for a live replica's ack before the primary's
/// daemon asks the directory to evict it (new term).
const EVICT_AFTER: Duration = Duration::from_secs(2);
/// Replication frames are made while the link to their replica's node has less than this
/// queued that its QUIC stream has not taken yet: enough to keep the stream fed between
/// two polls, little enough that frames are made as the link takes them (interleaved
/// with the connection's own work on this thread) and that a lagging replica's changes
/// wait in the journal, where they coalesce, rather than in a queue.
const LINK_AHEAD: usize = 2 << 20;

struct Node {
    me: u32,
    incarnation: u64,
    store: Store,
    origin: Instant,
    mesh: MeshHandle,
    dir: Directory,
    locals: BTreeMap<u64, Local>,
    /// Placements of checkpoints opened here without a replica here.
    remotes: BTreeMap<u64, CkptAssign>,
    sessions: BTreeMap<u64, Session>,
    /// Opens of agent sessions of a previous run of this daemon that have not reconnected.
    orphans: BTreeMap<u64, Vec<u64>>,
    last_orphan_check: Duration,
    /// When the opens were last compared with the table, and the differences found then
    /// (instance → (opens here, the table's count)).
    reconciled: (Duration, BTreeMap<u64, (u32, u32)>),
    pending: BTreeMap<ReqId, PendingReq>,
    forwarded: BTreeMap<ReqId, Forwarded>,
    counter: u64,
    msgs: mpsc::UnboundedSender<Msg>,
    repl: ReplConfig,
    limits: ReplicaLimits,
    tail_threads: bool,
    /// Peers whose connection dropped, since when: the directory hears of it only once
    /// it has lasted `restart_grace`.
    down_since: BTreeMap<u32, Duration>,
    /// The directors (positions are reported to each).
    directors: Vec<u32>,
    /// Positions last reported, and when.
    reported: (Vec<(u64, u64, u64)>, Duration),
    /// Evictions asked for: (instance, node, term).
    evicting: std::collections::BTreeSet<(u64, u32, u64)>,
    /// Primaries whose last poll left frames unmade for want of room on a link
    /// ([`LINK_AHEAD`]), polled again in this order when a link drains: one that made
    /// frames goes to the back, so primaries sharing a link take turns.
    waiting_room: VecDeque<u64>,
    /// Primary roles this node gave back (`DirOp::Resign`): (instance, term). The node
    /// never takes the primary role of `instance` in `term` again.
    resigned: std::collections::BTreeSet<(u64, u64)>,
    /// Checkpoints whose replica this node was assigned but could not create (its shm
    /// dir is full): an open of this node that the directory answers for one of them
    /// gets NO_RESOURCES, and the open is undone.
    create_failed: std::collections::BTreeSet<u64>,
    /// Sealed node: assignments of replicas this node does not hold yet while an agent of
    /// its previous run that has the checkpoint open may still hand the replica back
    /// (`awaiting`), with when to stop waiting ([`RECLAIM_WAIT`]).
    deferred: BTreeMap<u64, (CkptAssign, Duration)>,
    /// How long a dropped connection may stay down before the directory counts the node
    /// as gone: the idle timeout, so a daemon that restarts (its peers see the clean close
    /// at once) keeps its opens and replicas, while a crashed one, which its peers notice
    /// only after the idle timeout, is gone after twice that.
    restart_grace: Duration,
    /// The other nodes of the cluster file.
    peers: Vec<u32>,
    /// [`NodeHandle::hold_replication`]: primaries here make no replication frames.
    held: bool,
    metrics: Metrics,
    /// Where the metrics endpoint listens, and its task.
    metrics_server: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
}

/// A running daemon (in this process, on its own thread).
#[derive(Debug)]
pub struct NodeHandle {
    stop: watch::Sender<bool>,
    msgs: mpsc::UnboundedSender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The node's id.
    pub node: u32,
    /// Where its metrics endpoint listens (the port picked, for a configured port 0).
    pub metrics: Option<std::net::SocketAddr>,
}

impl NodeHandle {
    /// Holds back (`true`) or lets go (`false`) every replication frame of the primaries
    /// on this node, as a link with no room would: writes go on committing here and queue
    /// up in the journal, and on release the replicas catch up from it (or by resync if it
    /// lapped them). For benchmarks and tests in this process (a backlog built before it
    /// streams); nothing outside the process can reach it. Returns once the daemon has
    /// taken it in (at once if the daemon has stopped).
    pub fn hold_replication(&self, hold: bool) {
        let (tx, rx) = oneshot::channel();
        if self.msgs.send(Msg::HoldReplication(hold, tx)).is_ok() {
            let _ = rx.blocking_recv();
        }
    }

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
                match start(cluster, node, NodeEnv::default()).await {
                    Ok((n, listener, rx)) => {
                        let metrics = n.metrics_server.as_ref().map(|m| m.0);
                        let _ = ready_tx.send(Ok((metrics, n.msgs.clone())));
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
        Ok(Ok((metrics, msgs))) => Ok(NodeHandle {
            stop,
            msgs,
            thread: Some(thread),
            node,
            metrics,
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
    run_in(cluster, node, NodeEnv::default(), stop).await
}

/// Runs node `node` in the environment `env` (a simulation's, say) until `stop` turns
/// true.
pub async fn run_in(
    cluster: ClusterConfig,
    node: u32,
    env: NodeEnv,
    stop: watch::Receiver<bool>,
) -> Result<(), StartError> {
    let (n, listener, rx) = start(cluster, node, env).await?;
    n.run(listener, rx, stop).await;
    Ok(())
}

struct Inputs {
    mesh: mpsc::UnboundedReceiver<MeshEvent>,
    msgs: mpsc::UnboundedReceiver<Msg>,
    sessions: Option<mpsc::UnboundedReceiver<LocalSession>>,
}

async fn start(
    cluster: ClusterConfig,
    node: u32,
    env: NodeEnv,
) -> Result<(Node, Option<UnixListener>, Inputs), StartError> {
    let me = cluster
        .node(node)
        .ok_or(StartError::UnknownNode(node))?
        .clone();
    if let Some(m) = &me.metrics {
        m.check(node)?;
    }
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
    let store = env.store.unwrap_or_else(|| {
        if me.sealed {
            Store::Sealed(SealedStore::new(me.shm_dir.clone()))
        } else {
            Store::Shm(me.shm_dir.clone())
        }
    });
    if let Some(dir) = store.files_dir() {
        ckpt_engine::ensure_domain(dir).map_err(|errno| {
            io_err(
                format!("shm dir {}", dir.display()),
                io::Error::from_raw_os_error(errno),
            )
        })?;
        mark_sealed(dir, store.is_sealed(), &me.socket)
            .map_err(|err| io_err(format!("shm dir {}", dir.display()), err))?;
    }
    let listener = if env.agents {
        if let Some(parent) = me.socket.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| io_err(format!("socket dir {}", parent.display()), err))?;
        }
        // A socket file left by a previous run (we hold no lock on it): replace it.
        let _ = std::fs::remove_file(&me.socket);
        Some(
            UnixListener::bind(&me.socket)
                .map_err(|err| io_err(format!("agent socket {}", me.socket.display()), err))?,
        )
    } else {
        None
    };
    let socket = env.socket.unwrap_or(MeshSocket::Bind(me.address));
    let (mesh, mesh_rx) = Mesh::start(mc, socket).await?;
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
    let mut dir = dir;
    if let Some(state) = store.load_directory() {
        dir.restore(&state, Duration::ZERO);
        info!(node, term = dir.term(), "directory state restored");
    }
    let (msgs, msgs_rx) = mpsc::unbounded_channel();
    let metrics_server = match &me.metrics {
        Some(m) => {
            let what = || format!("metrics endpoint {}", m.address);
            let l = TcpListener::bind(m.address)
                .await
                .map_err(|err| io_err(what(), err))?;
            let at = l.local_addr().map_err(|err| io_err(what(), err))?;
            let to_loop = msgs.clone();
            let ask = move |tx| to_loop.send(Msg::Scrape(tx)).is_ok();
            info!(node, address = %at, "metrics on GET /metrics");
            Some((at, tokio::spawn(metrics::serve_http(l, ask))))
        }
        None => None,
    };
    let incarnation = env.incarnation.unwrap_or_else(incarnation);
    info!(node, incarnation, socket = %me.socket.display(), "ckptd started");
    let mut n = Node {
        me: node,
        incarnation,
        store,
        origin,
        mesh,
        dir,
        locals: BTreeMap::new(),
        remotes: BTreeMap::new(),
        sessions: BTreeMap::new(),
        orphans: BTreeMap::new(),
        last_orphan_check: Duration::ZERO,
        reconciled: (Duration::ZERO, BTreeMap::new()),
        pending: BTreeMap::new(),
        forwarded: BTreeMap::new(),
        counter: 0,
        msgs,
        repl: ReplConfig::default(),
        limits: ReplicaLimits::default(),
        tail_threads: env.tail_threads,
        down_since: BTreeMap::new(),
        directors: cluster
            .nodes
            .iter()
            .filter(|n| n.director)
            .map(|n| n.id)
            .collect(),
        reported: (Vec::new(), Duration::ZERO),
        evicting: std::collections::BTreeSet::new(),
        waiting_room: VecDeque::new(),
        resigned: std::collections::BTreeSet::new(),
        create_failed: std::collections::BTreeSet::new(),
        deferred: BTreeMap::new(),
        restart_grace: cluster.idle_timeout,
        peers: cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|n| *n != node)
            .collect(),
        held: false,
        metrics: Metrics::default(),
        metrics_server,
    };
    n.reattach();
    n.load_sessions();
    Ok((
        n,
        listener,
        Inputs {
            mesh: mesh_rx,
            msgs: msgs_rx,
            sessions: env.sessions,
        },
    ))
}

fn io_err(what: String, err: io::Error) -> StartError {
    StartError::Io { what, err }
}

/// A sealed node's directory says so ([`SEALED_FILE`], naming the agent socket `ckpt`
/// asks for descriptors), and holds no replica files: any left by an unsealed run are
/// removed (not adopted: the cluster resyncs or drops them like a wiped node's; agents
/// still mapping them must be restarted). An unsealed node's directory has no marker.
fn mark_sealed(dir: &std::path::Path, sealed: bool, socket: &std::path::Path) -> io::Result<()> {
    let marker = dir.join(SEALED_FILE);
    if !sealed {
        return match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let socket = std::path::absolute(socket)?;
    let tmp = dir.join(format!("{SEALED_FILE}.new"));
    std::fs::write(&tmp, format!("{}\n", socket.display()))?;
    std::fs::rename(&tmp, &marker)?;
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name();
        if let Some(name) = name.to_str()
            && super::store::parse_object_name(name).is_some()
        {
            warn!(
                object = name,
                "sealed node: removing a replica file of an unsealed run (not adopted)"
            );
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

fn incarnation() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 40)
}

/// What woke the daemon's loop.
enum Wake {
    Stop,
    Tick,
    Drained,
    Mesh(Option<MeshEvent>),
    Msg(Option<Msg>),
    Accept(io::Result<UnixStream>),
    Session(Option<LocalSession>),
}

async fn accept(l: &Option<UnixListener>) -> io::Result<UnixStream> {
    match l {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

async fn next_session(
    r: &mut Option<mpsc::UnboundedReceiver<LocalSession>>,
) -> Option<LocalSession> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

impl Node {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The agent sessions of a previous run, with their opens: orphans until their
    /// agents reconnect.
    fn load_sessions(&mut self) {
        let Some(dir) = self.store.files_dir() else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(dir.join(SESSIONS_FILE)) else {
            return;
        };
        for line in text.lines() {
            let mut words = line.split_ascii_whitespace().map(str::parse::<u64>);
            let (Some(Ok(key)), Some(Ok(instance))) = (words.next(), words.next()) else {
                continue;
            };
            self.orphans.entry(key).or_default().push(instance);
        }
        if !self.orphans.is_empty() {
            info!(
                sessions = self.orphans.len(),
                "agent sessions of the previous run wait to reconnect"
            );
        }
    }

    /// Writes the sessions' opens (a new file renamed over the old one).
    fn save_sessions(&self) {
        let Some(dir) = self.store.files_dir() else {
            return;
        };
        let mut text = String::new();
        let live = self
            .sessions
            .values()
            .filter_map(|s| s.key.map(|k| (k, &s.opens)));
        for (key, opens) in live.chain(self.orphans.iter().map(|(k, o)| (*k, o))) {
            for i in opens {
                text.push_str(&format!("{key} {i}\n"));
            }
        }
        let tmp = dir.join(format!("{SESSIONS_FILE}.new"));
        if std::fs::write(&tmp, text).is_err()
            || std::fs::rename(&tmp, dir.join(SESSIONS_FILE)).is_err()
        {
            warn!("cannot save the agent sessions");
        }
    }

    /// Closes the opens of orphaned sessions whose process is gone.
    fn reap_orphans(&mut self) {
        let dead: Vec<u64> = self
            .orphans
            .keys()
            .copied()
            .filter(|k| {
                rustix::process::Pid::from_raw(key_pid(*k)).is_none_or(|pid| {
                    rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
                })
            })
            .collect();
        if dead.is_empty() {
            return;
        }
        for key in dead {
            let opens = self.orphans.remove(&key).unwrap_or_default();
            info!(
                session = key,
                opens = opens.len(),
                "an agent of the previous run is gone: closing its opens"
            );
            self.close_opens(opens);
        }
        self.save_sessions();
        self.settle_deferred();
    }

    /// Makes the directory's count of this node's opens match what its agents hold (the
    /// live sessions, and those of a previous run that may reconnect). They differ when
    /// the directory closed the node's opens while it was away for longer than the grace
    /// (a long restart, a partition), though its agents kept their handles; then each
    /// checkpoint that still exists gets them back, before its retention deletes it.
    ///
    /// The table on a node is a heartbeat behind, and a count changes between an agent's
    /// open or close and its answer: so nothing is compared while an open, a close or a
    /// correction of this node waits for its answer, and only a difference seen at two
    /// checks in a row, unchanged, is corrected. Only a table that counts fewer opens
    /// than the agents hold is corrected: one that counts more catches up with the
    /// node's closes by itself (they are retried until answered), and correcting it from
    /// a lagging table only made more decisions for the directory (the simulation found
    /// the extra ones steering it into its known faults, seeds 2555 and 1682).
    fn reconcile_opens(&mut self) {
        let busy = self.pending.values().any(|p| {
            matches!(
                p.op,
                DirOp::Open { .. } | DirOp::Close { .. } | DirOp::Opens { .. }
            )
        });
        if busy || !self.dir.in_cluster() {
            self.reconciled.1.clear();
            return;
        }
        let mut held: BTreeMap<u64, u32> = BTreeMap::new();
        let opens = self.sessions.values().flat_map(|s| s.opens.iter());
        for instance in opens.chain(self.orphans.values().flatten()) {
            *held.entry(*instance).or_default() += 1;
        }
        let me = self.me;
        let differ: BTreeMap<u64, (u32, u32)> = self
            .dir
            .entries()
            .filter_map(|e| {
                let here = held.get(&e.instance).copied().unwrap_or(0);
                let table = e.openers.get(&me).copied().unwrap_or(0);
                (here > table).then_some((e.instance, (here, table)))
            })
            .collect();
        let before = std::mem::replace(&mut self.reconciled.1, differ);
        let due: Vec<(u64, u32, u32)> = self
            .reconciled
            .1
            .iter()
            .filter(|(i, d)| before.get(i) == Some(d))
            .map(|(i, (here, table))| (*i, *here, *table))
            .collect();
        for (instance, count, table) in due {
            self.metrics.open_corrected();
            warn!(
                instance,
                count,
                table,
                "the directory's count of this node's opens is not what its agents hold: correcting it"
            );
            self.dir_request(
                None,
                NO_AGENT,
                DirOp::Opens {
                    instance,
                    node: me,
                    count,
                },
            );
        }
    }

    fn close_opens(&mut self, opens: Vec<u64>) {
        for instance in opens {
            self.dir_request(
                None,
                NO_AGENT,
                DirOp::Close {
                    instance,
                    node: self.me,
                },
            );
        }
    }

    /// Replicas left by a previous run of this daemon: map them again (their agents keep
    /// using them); the directory's `Assign`s then say which are still ours. (A sealed
    /// node has none here: its agents hand them back, `take_back`.)
    fn reattach(&mut self) {
        for name in self.store.names() {
            let Some(instance) = super::store::parse_object_name(&name) else {
                continue;
            };
            match self.store.attach(&name) {
                Ok(r) => {
                    info!(instance, "reattached replica");
                    self.hold(instance, r);
                }
                Err(e) => warn!(instance, "cannot reattach {name}: {e}"),
            }
        }
    }

    /// Holds a replica of a previous run, with a placeholder placement until the
    /// directory's `Assign`.
    fn hold(&mut self, instance: u64, r: Arc<Replica>) {
        let a = r.attributes();
        let assign = CkptAssign {
            instance,
            name: String::new(),
            attrs: wire_attrs(&a),
            replicas: vec![self.me],
            primary: None,
            term: 0,
            unlinked: false,
            from_nothing: false,
        };
        let position = r.replication_position();
        let never_synced =
            (position == (0, 0) && r.role().0 == Role::Replica) || position.1 == repl::INCOMPLETE;
        let mut l = Local::new(r, assign);
        if never_synced {
            // Made empty by a run before this one (its tmpfs lost, then the daemon
            // restarted again before a primary synced it), or left in the middle of a
            // snapshot: that run's knowledge is gone with it, but the replica shows it,
            // and still holds nothing to lead with (simulation seed 4887: it resumed as
            // the primary and erased the others).
            l.empty = Some(1);
        }
        self.locals.insert(instance, l);
    }

    /// Whether an agent of this node's previous run that has `instance` open may still
    /// hand its replica back: an orphaned session (not reconnected; reaped once its
    /// process is gone), or one that reconnected and has not finished its hand-back.
    fn awaiting(&self, instance: u64) -> bool {
        self.orphans.values().any(|o| o.contains(&instance))
            || self
                .sessions
                .values()
                .any(|s| s.handback && s.opens.contains(&instance))
    }

    /// Applies the deferred assignments nobody is to hand back a replica for any more, or
    /// that waited [`RECLAIM_WAIT`].
    fn settle_deferred(&mut self) {
        let now = self.now();
        let ready: Vec<u64> = self
            .deferred
            .iter()
            .filter(|(i, (_, until))| now >= *until || !self.awaiting(**i))
            .map(|(i, _)| *i)
            .collect();
        for instance in ready {
            if let Some((a, until)) = self.deferred.remove(&instance) {
                if now >= until {
                    warn!(
                        instance,
                        "no agent handed the replica back in time: making it anew"
                    );
                }
                self.assign(a, false);
            }
        }
    }

    /// Descriptors of sealed replicas an agent handed back (`Descriptors` after its
    /// `Welcome`): each one is untrusted, and taken only if it is a sealed replica of
    /// that very instance, of a checkpoint this node may hold, and not another object
    /// than the one the node holds already.
    fn take_back(&mut self, session: u64, instances: Vec<u64>, fds: Vec<OwnedFd>, last: bool) {
        for (instance, fd) in instances.into_iter().zip(fds) {
            if !self.store.is_sealed() {
                warn!(
                    session,
                    instance, "a replica handed back to an unsealed node: ignored"
                );
                continue;
            }
            if self.remotes.contains_key(&instance) {
                debug!(
                    instance,
                    "a replica handed back that this node does not hold any more"
                );
                continue;
            }
            let known = self.locals.contains_key(&instance);
            match self.store.adopt(&object_name(instance), fd) {
                Ok(_) if known => {}
                Ok(r) => {
                    info!(session, instance, "an agent handed the replica back");
                    self.hold(instance, r);
                    if let Some((a, _)) = self.deferred.remove(&instance) {
                        self.assign(a, false);
                    }
                }
                Err(e) => warn!(
                    session,
                    instance, "refused a replica an agent handed back: {e}"
                ),
            }
        }
        if last {
            if let Some(s) = self.sessions.get_mut(&session) {
                s.handback = false;
            }
            self.settle_deferred();
        }
    }

    /// Passes `session` the descriptors of `instances`' sealed replicas (those this node
    /// holds), in `Descriptors` frames of at most [`MAX_DESCRIPTORS`], the last one
    /// marked (an empty one when there are none).
    fn pass_descriptors(&self, session: u64, instances: &[u64]) {
        let fds: Vec<(u64, OwnedFd)> = instances
            .iter()
            .filter_map(|i| {
                let fd = self.locals.get(i)?.replica.sealed_fd()?;
                match rustix::io::fcntl_dupfd_cloexec(fd, 0) {
                    Ok(d) => Some((*i, d)),
                    Err(e) => {
                        warn!(instance = *i, "cannot pass the replica's descriptor: {e}");
                        None
                    }
                }
            })
            .collect();
        let mut chunks: Vec<Vec<(u64, OwnedFd)>> = Vec::new();
        let mut it = fds.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(MAX_DESCRIPTORS).collect());
        }
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        let n = chunks.len();
        for (k, chunk) in chunks.into_iter().enumerate() {
            let (instances, fds): (Vec<u64>, Vec<OwnedFd>) = chunk.into_iter().unzip();
            let frame = Frame::Descriptors {
                instances,
                last: k + 1 == n,
            };
            self.to_session_with(session, &frame, fds);
        }
    }

    async fn run(
        mut self,
        listener: Option<UnixListener>,
        mut inputs: Inputs,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_id = 1u64;
        let mesh = self.mesh.clone();
        // Branches are polled in a fixed order (`biased`), so a run depends only on what
        // happens and when: tokio's default picks among ready branches at random, from a
        // seed a simulation cannot set, and two replays of one seed went apart at the
        // first instant two inputs were ready together. The peers' frames and the local
        // messages take turns at being first, so neither starves the other under load;
        // the tick and a stop come first (the tick is ready once per period).
        let mut mesh_first = true;
        loop {
            mesh_first = !mesh_first;
            let wake = if mesh_first {
                tokio::select! {
                    biased;
                    _ = stop.changed() => Wake::Stop,
                    _ = tick.tick() => Wake::Tick,
                    () = mesh.drained() => Wake::Drained,
                    ev = inputs.mesh.recv() => Wake::Mesh(ev),
                    msg = inputs.msgs.recv() => Wake::Msg(msg),
                    acc = accept(&listener) => Wake::Accept(acc),
                    s = next_session(&mut inputs.sessions) => Wake::Session(s),
                }
            } else {
                tokio::select! {
                    biased;
                    _ = stop.changed() => Wake::Stop,
                    _ = tick.tick() => Wake::Tick,
                    () = mesh.drained() => Wake::Drained,
                    msg = inputs.msgs.recv() => Wake::Msg(msg),
                    acc = accept(&listener) => Wake::Accept(acc),
                    s = next_session(&mut inputs.sessions) => Wake::Session(s),
                    ev = inputs.mesh.recv() => Wake::Mesh(ev),
                }
            };
            match wake {
                Wake::Stop | Wake::Mesh(None) => break,
                Wake::Tick => self.on_tick(),
                Wake::Drained => self.on_drained(),
                Wake::Mesh(Some(ev)) => self.on_mesh(ev),
                Wake::Msg(msg) => {
                    if let Some(m) = msg {
                        self.on_msg(m);
                    }
                }
                Wake::Accept(acc) => {
                    if let Ok(stream) = acc {
                        if peer_allowed(&stream) {
                            let id = next_id;
                            next_id += 1;
                            self.start_session(id, stream);
                        } else {
                            warn!("refused an agent connection from another user");
                        }
                    }
                }
                Wake::Session(Some(s)) => {
                    let id = next_id;
                    next_id += 1;
                    self.start_local_session(id, s);
                }
                Wake::Session(None) => inputs.sessions = None,
            }
        }
        for l in self.locals.values() {
            if let Some(w) = &l.waker {
                w.stop();
            }
        }
        if let Some((_, task)) = self.metrics_server.take() {
            task.abort();
        }
        self.mesh.shutdown().await;
        info!(node = self.me, "ckptd stopped");
    }

    fn start_session(&mut self, id: u64, stream: UnixStream) {
        let (rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<(Bytes, Vec<OwnedFd>)>();
        let msgs = self.msgs.clone();
        tokio::spawn(async move {
            let mut reader = FdReader::new(ckpt_transport::wire::DEFAULT_MAX_FRAME);
            let mut buf = vec![0u8; 64 * 1024];
            let sock: &UnixStream = rd.as_ref();
            loop {
                let got = loop {
                    if let Err(e) = sock.readable().await {
                        break Err(e);
                    }
                    match sock.try_io(Interest::READABLE, || reader.recv(sock, &mut buf)) {
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                            ) => {}
                        other => break other,
                    }
                };
                match got {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        debug!(session = id, "agent socket: {e}");
                        break;
                    }
                }
                loop {
                    match reader.next() {
                        Ok(Some((f, fds))) => {
                            let _ = msgs.send(Msg::Agent(id, f, fds));
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
            while let Some((b, fds)) = rx.recv().await {
                let mut sent = 0;
                if !fds.is_empty() {
                    // The descriptors go with the frame's first byte (`fdpass`).
                    let sock: &UnixStream = wr.as_ref();
                    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                    sent = loop {
                        if sock.writable().await.is_err() {
                            return;
                        }
                        match sock.try_io(Interest::WRITABLE, || {
                            fdpass::send_frame(sock, &b, &borrowed)
                        }) {
                            Ok(n) => break n,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                                ) => {}
                            Err(_) => return,
                        }
                    };
                }
                if wr.write_all(&b[sent..]).await.is_err() {
                    break;
                }
            }
        });
        self.sessions.insert(
            id,
            Session {
                tx: SessionTx::Socket(tx),
                key: None,
                opens: Vec::new(),
                handback: false,
            },
        );
        debug!(session = id, "agent connected");
    }

    fn start_local_session(&mut self, id: u64, s: LocalSession) {
        let LocalSession {
            mut to_node,
            from_node,
        } = s;
        let msgs = self.msgs.clone();
        tokio::spawn(async move {
            while let Some(f) = to_node.recv().await {
                if msgs.send(Msg::Agent(id, f, Vec::new())).is_err() {
                    return;
                }
            }
            let _ = msgs.send(Msg::AgentGone(id));
        });
        self.sessions.insert(
            id,
            Session {
                tx: SessionTx::Channel(from_node),
                key: None,
                opens: Vec::new(),
                handback: false,
            },
        );
    }

    fn to_session(&self, id: u64, frame: &Frame) {
        self.to_session_with(id, frame, Vec::new());
    }

    /// Sends `frame` to session `id` with `fds` attached to its first byte.
    fn to_session_with(&self, id: u64, frame: &Frame, fds: Vec<OwnedFd>) {
        if let Some(s) = self.sessions.get(&id) {
            let mut out = Vec::with_capacity(frame.encoded_len());
            frame.encode(&mut out);
            s.tx.send(Bytes::from(out), fds);
        }
    }

    fn send(&self, t: Transmit) -> bool {
        let mut out = Vec::with_capacity(t.frame.encoded_len());
        t.frame.encode(&mut out);
        // The mesh adds the length prefix itself.
        let body = Bytes::from(out).slice(4..);
        let sent = self.mesh.send(t.node, body);
        if !sent {
            debug!(node = t.node, "peer down: frame dropped");
        }
        sent
    }

    /// Sends a replication frame the primary encoded.
    fn send_diff(&self, d: EncodedDiff) -> bool {
        let sent = self.mesh.send(d.node, Bytes::from(d.body));
        if !sent {
            debug!(node = d.node, "peer down: frame dropped");
        }
        sent
    }

    fn answer(&self, origin: Origin, result: RemoteResult) {
        match origin {
            Origin::Agent { session, req } => {
                self.to_session(session, &Frame::RemoteReply { req, result });
            }
            Origin::Peer { node, req } => {
                self.send(Transmit {
                    node,
                    frame: Frame::RemoteReply { req, result },
                });
            }
            Origin::Catchup { .. } => {
                debug_assert!(false, "catch-ups finish in finish_forward");
            }
        }
    }

    /// An operation forwarded as `r` will get no answer: a write's outcome is unknown
    /// (TIMEOUT), a read can be asked again (TRY_AGAIN).
    fn forward_lost(&mut self, r: ReqId) {
        if let Some(f) = self.forwarded.remove(&r) {
            let c = if f.write {
                code::TIMEOUT
            } else {
                code::TRY_AGAIN
            };
            self.finish_forward(f, fail(c));
        }
    }

    /// The answer to an operation this node forwarded.
    fn finish_forward(&mut self, f: Forwarded, result: RemoteResult) {
        match f.origin {
            Origin::Catchup {
                session,
                req,
                instance,
            } => {
                if !matches!(result, RemoteResult::Done) {
                    warn!(
                        instance,
                        ?result,
                        "catching up before ActiveReplicaSet failed; switching anyway"
                    );
                }
                self.dir_request(
                    Some(session),
                    req,
                    DirOp::SetActive {
                        instance,
                        node: self.me,
                    },
                );
            }
            o => self.answer(o, result),
        }
    }

    fn answer_all(&self, list: Vec<(Origin, RemoteResult)>) {
        for (o, r) in list {
            self.answer(o, r);
        }
    }

    fn on_msg(&mut self, m: Msg) {
        match m {
            Msg::Agent(s, f, fds) => self.on_agent(s, f, fds),
            Msg::AgentGone(s) => {
                if let Some(sess) = self.sessions.remove(&s) {
                    debug!(
                        session = s,
                        opens = sess.opens.len(),
                        "agent gone: closing its opens"
                    );
                    self.close_opens(sess.opens);
                    self.save_sessions();
                    self.settle_deferred();
                }
            }
            Msg::Moved(instance) => {
                if let Some(w) = self.locals.get(&instance).and_then(|l| l.waker.as_ref()) {
                    w.consumed();
                }
                self.poll_primary(instance);
            }
            Msg::Scrape(tx) => {
                let _ = tx.send(self.metrics_text());
            }
            Msg::HoldReplication(hold, done) => {
                self.held = hold;
                if !hold {
                    // Whatever was held waits in the room (it found none).
                    self.on_drained();
                }
                let _ = done.send(());
            }
        }
    }

    /// A scrape's text: the counters, and the gauges read from the state now.
    fn metrics_text(&self) -> String {
        let mut g = Gauges {
            leader: self.dir.is_leader(),
            directory_term: self.dir.term(),
            peers_connected: self.peers.iter().filter(|n| self.mesh.is_up(**n)).count() as u64,
            agent_sessions: self.sessions.len() as u64,
            replicas: Vec::with_capacity(self.locals.len()),
        };
        for (i, l) in &self.locals {
            // An ALL_REPLICAS primary streams its staging copy's journal.
            let head = l.ordering().commit_seq();
            let lag = l.primary.iter().flat_map(|p| {
                p.replicas().filter_map(move |n| {
                    let f = p.follower(n)?;
                    let acked = if f.acked == repl::INCOMPLETE {
                        0
                    } else {
                        f.acked
                    };
                    Some(Lag {
                        node: n,
                        seq: head.saturating_sub(acked),
                        // Everything sent acknowledged: nothing is on the wire, whatever
                        // frames the primary still keeps in its count.
                        bytes: if acked >= f.sent { 0 } else { f.unacked_bytes },
                        up: f.up,
                        snapshot: f.snapshot,
                    })
                })
            });
            g.replicas.push(ReplicaGauges {
                instance: *i,
                name: l.assign.name.clone(),
                commit_seq: l.replica.commit_seq(),
                primary: l.primary.is_some(),
                questions: l.changes.len() as u64,
                lag: lag.collect(),
            });
        }
        self.metrics.render(&g)
    }

    fn on_agent(&mut self, session: u64, f: Frame, fds: Vec<OwnedFd>) {
        match f {
            Frame::Hello { incarnation, .. } => {
                let adopted = self.orphans.remove(&incarnation);
                let sealed = self.store.is_sealed();
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.key = Some(incarnation);
                    // Its hand-back follows the Welcome (transport/DESIGN.md §7).
                    s.handback = sealed;
                    if let Some(opens) = adopted {
                        info!(
                            session = incarnation,
                            opens = opens.len(),
                            "an agent of the previous run reconnected"
                        );
                        s.opens.extend(opens);
                        self.save_sessions();
                    }
                }
                let welcome = Frame::Welcome {
                    node: self.me,
                    incarnation: self.incarnation,
                    shm_dir: self.store.dir().to_string_lossy().into_owned(),
                    sealed,
                };
                self.to_session(session, &welcome);
            }
            Frame::Descriptors { instances, last } => {
                self.take_back(session, instances, fds, last);
            }
            Frame::ListDescriptors => {
                let all: Vec<u64> = self.locals.keys().copied().collect();
                self.pass_descriptors(session, &all);
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
                    DirOp::SetActive { instance, .. } => {
                        if self.catch_up(session, req, instance) {
                            return;
                        }
                        DirOp::SetActive {
                            instance,
                            node: self.me,
                        }
                    }
                    other => other,
                };
                self.dir_request(Some(session), req, op);
            }
            Frame::Remote { req, instance, op } => {
                self.on_remote(Origin::Agent { session, req }, instance, op);
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

    /// A checkpoint operation for the node that orders the checkpoint's writes: served
    /// here if that is this node, else forwarded there (agents' requests only: one hop).
    fn on_remote(&mut self, origin: Origin, instance: u64, op: RemoteOp) {
        if self
            .locals
            .get(&instance)
            .is_some_and(|l| l.primary.is_some())
        {
            self.serve(origin, instance, op);
            return;
        }
        let placement = self
            .locals
            .get(&instance)
            .map(|l| &l.assign)
            .or_else(|| self.remotes.get(&instance))
            .or_else(|| self.deferred.get(&instance).map(|d| &d.0));
        let target = match placement {
            // Open here without a placement: a restarted daemon whose node's opens the
            // directory closed meanwhile gets it back once `reconcile_opens` restored
            // them, if the checkpoint still exists.
            None if self.open_here(instance)
                && (!self.dir.in_cluster()
                    || self.dir.entries().any(|e| e.instance == instance)) =>
            {
                Err(code::TRY_AGAIN)
            }
            None => Err(code::NOT_EXIST),
            Some(a) => match a.primary {
                None if collocated_async(a) => Err(code::NOT_EXIST),
                None => Err(code::TRY_AGAIN),
                // Assigned here, not running as primary yet (or fenced meanwhile).
                Some(p) if p == self.me => Err(code::TRY_AGAIN),
                Some(p) => Ok(p),
            },
        };
        let node = match (target, origin) {
            (Ok(p), Origin::Agent { .. }) => p,
            (Ok(_), Origin::Peer { .. } | Origin::Catchup { .. }) => {
                // The sender's view of the primary is stale: it asks again.
                self.answer(origin, fail(code::TRY_AGAIN));
                return;
            }
            (Err(c), _) => {
                self.answer(origin, fail(c));
                return;
            }
        };
        self.counter += 1;
        let req = ReqId {
            node: self.me,
            incarnation: self.incarnation,
            counter: self.counter,
        };
        let write = serve::is_write(&op) || matches!(op, RemoteOp::Synchronize { .. });
        let bound = match &op {
            RemoteOp::Synchronize { timeout_ns, .. } => {
                Duration::from_nanos(u64::try_from(*timeout_ns).unwrap_or(0)).min(REQUEST_GIVE_UP)
            }
            _ => WRITE_TIMEOUT,
        };
        let deadline = self.now() + bound + FORWARD_SLACK;
        if !self.send(Transmit {
            node,
            frame: Frame::Remote { req, instance, op },
        }) {
            self.answer(origin, fail(code::TRY_AGAIN));
            return;
        }
        self.forwarded.insert(
            req,
            Forwarded {
                origin,
                node,
                write,
                deadline,
            },
        );
    }

    /// ActiveReplicaSet while the old active replica lives: first a synchronize on its
    /// node, so this node's replica has everything it acknowledged. Returns whether the
    /// request now waits for that.
    fn catch_up(&mut self, session: u64, req: ReqId, instance: u64) -> bool {
        let Some(l) = self.locals.get(&instance) else {
            return false;
        };
        let Some(old) = l.assign.primary.filter(|p| *p != self.me) else {
            return false;
        };
        if !self.mesh.is_up(old) {
            return false;
        }
        self.counter += 1;
        let fwd = ReqId {
            node: self.me,
            incarnation: self.incarnation,
            counter: self.counter,
        };
        let op = RemoteOp::Synchronize {
            timeout_ns: CATCH_UP_TIMEOUT.as_nanos() as i64,
            after: Vec::new(),
        };
        if !self.send(Transmit {
            node: old,
            frame: Frame::Remote {
                req: fwd,
                instance,
                op,
            },
        }) {
            return false;
        }
        self.forwarded.insert(
            fwd,
            Forwarded {
                origin: Origin::Catchup {
                    session,
                    req,
                    instance,
                },
                node: old,
                write: false,
                deadline: self.now() + CATCH_UP_TIMEOUT + FORWARD_SLACK,
            },
        );
        true
    }

    /// Serves `op` on this node, the one that orders `instance`'s writes.
    fn serve(&mut self, origin: Origin, instance: u64, op: RemoteOp) {
        let now = self.now();
        let Some(l) = self.locals.get_mut(&instance) else {
            self.answer(origin, fail(code::NOT_EXIST));
            return;
        };
        match op {
            RemoteOp::Synchronize { timeout_ns, after } => {
                if l.staging.is_some() {
                    self.answer(origin, fail(code::BAD_OPERATION));
                    return;
                }
                // The caller's direct writes on an earlier primary: in this replica only
                // up to what it held when it took over.
                let term = l.primary.as_ref().map(Primary::term);
                let head = l.replica.commit_seq();
                let held = |&(t, s): &(u64, u64)| {
                    Some(t) == term
                        || l.base.is_some_and(|(bt, bs)| {
                            bt == t
                                && bs != repl::INCOMPLETE
                                && (s <= bs || l.continued && s <= head)
                        })
                };
                if !after.iter().all(held) {
                    self.metrics.sync_failed(SyncFailure::WritesLost);
                    self.answer(origin, fail(code::FAILED_OPERATION));
                    return;
                }
                let seq = l.replica.commit_seq();
                if l.replica.acked_seq() >= seq {
                    self.metrics.synchronized(self.now().saturating_sub(now));
                    self.answer(origin, RemoteResult::Done);
                    return;
                }
                let deadline = (timeout_ns != i64::MAX)
                    .then(|| now + Duration::from_nanos(timeout_ns.max(0) as u64));
                l.syncs.push(SyncWait {
                    seq,
                    deadline,
                    origin,
                    since: now,
                });
            }
            RemoteOp::Changes {
                epoch,
                since,
                wait_ms,
            } => {
                let Some(term) = l.primary.as_ref().map(Primary::term) else {
                    self.answer(origin, fail(code::TRY_AGAIN));
                    return;
                };
                let result = serve::changes(&l.replica, term, epoch, since);
                let wait = Duration::from_millis(u64::from(wait_ms)).min(CHANGES_WAIT_MAX);
                match result {
                    Some(r) => self.answer(origin, r),
                    // Beyond the bound the question is answered at once: the asker polls.
                    None if wait.is_zero() || l.changes.len() >= CHANGES_HELD_MAX => {
                        self.answer(origin, serve::no_changes(term, since));
                    }
                    None => l.changes.push(ChangesWait {
                        since,
                        deadline: now + wait,
                        origin,
                    }),
                }
            }
            op if serve::is_write(&op) => {
                if let Some(st) = l.staging.as_mut() {
                    let (result, replay) = serve::apply_write(&st.replica, &op);
                    self.metrics.served(instance, &op, &result);
                    match replay {
                        None => {
                            self.answer(origin, result);
                            return;
                        }
                        Some(change) => st.queue.push_back(Staged {
                            seq: st.replica.commit_seq(),
                            change: Change::Op(change),
                            origin: Some(origin),
                            result,
                            since: now,
                        }),
                    }
                } else {
                    let (result, _) = serve::apply_write(&l.replica, &op);
                    self.metrics.served(instance, &op, &result);
                    // A plain write names its place in this primary's journal, which a
                    // later synchronize of the writer checks (see `after`).
                    let result = match (result, l.primary.as_ref()) {
                        (RemoteResult::Done, Some(p)) => RemoteResult::Applied {
                            term: p.term(),
                            seq: l.replica.commit_seq(),
                        },
                        (r, _) => r,
                    };
                    self.answer(origin, result);
                }
                self.poll_primary(instance);
            }
            op => {
                let result = serve::read(&l.replica, &op);
                self.answer(origin, result);
            }
        }
    }

    /// Closes, in the directory, an open this node took for an agent but cannot serve; the
    /// agent gets `code` instead.
    fn give_open_back(&mut self, agent_req: ReqId, instance: u64, code: u32) -> DirReply {
        let node = self.me;
        self.dir_request(None, agent_req, DirOp::Close { instance, node });
        DirReply::Failed { code }
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
        // What the directory must not forget is stored before anything it decided goes
        // out.
        if let Some(state) = self.dir.durable_state(self.now())
            && let Err(e) = self.store.save_directory(&state)
        {
            warn!("cannot keep the directory state: {e}");
        }
        for o in out {
            match o {
                Output::Send(t) => {
                    self.send(t);
                }
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
        if let (DirOp::Evict { instance, node, .. }, DirReply::Done) = (&p.op, &result) {
            self.metrics.eviction_applied(*instance, *node);
        }
        if let DirReply::Opened { ckpt } = &result
            && !ckpt.replicas.contains(&self.me)
        {
            self.remotes.insert(ckpt.instance, ckpt.clone());
        }
        let Some(session) = p.session else {
            return;
        };
        let result = match result {
            DirReply::Opened { ckpt }
                if ckpt.replicas.contains(&self.me)
                    && !self.locals.contains_key(&ckpt.instance)
                    && self.create_failed.remove(&ckpt.instance) =>
            {
                // Its replica here could not be made: the agent would find no object
                // (NOT_EXIST). Say why, and give the open back.
                self.give_open_back(p.agent_req, ckpt.instance, code::NO_RESOURCES)
            }
            DirReply::Opened { ckpt }
                if self.store.is_sealed()
                    && ckpt.replicas.contains(&self.me)
                    && !self.locals.contains_key(&ckpt.instance) =>
            {
                // A sealed replica an agent of the previous run may still hand back
                // (`deferred`): there is no descriptor to pass yet. Give the open back.
                self.give_open_back(p.agent_req, ckpt.instance, code::TRY_AGAIN)
            }
            other => other,
        };
        match (&p.op, &result) {
            (DirOp::Open { .. }, DirReply::Opened { ckpt }) => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.opens.push(ckpt.instance);
                    self.save_sessions();
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
            // Not open in the directory (it closed this node's opens while the node was
            // away, or the checkpoint is gone): closed here too.
            (
                DirOp::Close { instance, .. },
                DirReply::Done
                | DirReply::Failed {
                    code: code::NOT_EXIST,
                },
            ) => {
                if let Some(s) = self.sessions.get_mut(&session)
                    && let Some(i) = s.opens.iter().position(|x| x == instance)
                {
                    s.opens.swap_remove(i);
                    self.save_sessions();
                }
            }
            _ => {}
        }
        if let DirReply::Opened { ckpt } = &result
            && self.store.is_sealed()
            && ckpt.replicas.contains(&self.me)
        {
            // The agent maps the node's replica from this descriptor, which it has by the
            // time it reads the answer.
            self.pass_descriptors(session, &[ckpt.instance]);
        }
        self.to_session(
            session,
            &Frame::Reply {
                req: p.agent_req,
                result,
            },
        );
    }

    /// The newest checkpoint term this node knows `instance` in: its replica's, or that
    /// of the placement it keeps without one.
    fn held_term(&self, instance: u64) -> Option<u64> {
        match self.locals.get(&instance) {
            Some(l) => Some(l.term()),
            None => self.remotes.get(&instance).map(|a| a.term),
        }
    }

    /// Whether an `Open` of this node that may create checkpoint `name` is waiting for
    /// the directory's answer.
    fn creating(&self, name: &str) -> bool {
        self.pending.values().any(|p| {
            matches!(&p.op, DirOp::Open { name: n, attrs: Some(_), flags, .. }
                if n == name && flags & ckpt_transport::directory::flags::OPEN_CREATE != 0)
        })
    }

    /// Whether an agent of this node (or of its previous run, not reconnected yet) has
    /// `instance` open.
    fn open_here(&self, instance: u64) -> bool {
        self.sessions.values().any(|s| s.opens.contains(&instance))
            || self.orphans.values().any(|o| o.contains(&instance))
    }

    /// Gives the primary role of `instance` in `term` back to the directory, which names
    /// another replica primary in a new term; this node never takes the role in `term`.
    fn resign(&mut self, instance: u64, term: u64) {
        self.resigned.insert((instance, term));
        let pending = self.pending.values().any(|p| {
            matches!(p.op, DirOp::Resign { instance: i, term: t, .. } if i == instance && t == term)
        });
        if pending {
            return;
        }
        self.dir_request(
            None,
            NO_AGENT,
            DirOp::Resign {
                instance,
                node: self.me,
                term,
            },
        );
    }

    fn on_assign(&mut self, a: CkptAssign) {
        self.assign(a, true);
    }

    /// The directory's `Assign`, which, with `may_defer`, a sealed node that does not
    /// hold the replica yet puts off while an agent of its previous run may hand it back.
    fn assign(&mut self, a: CkptAssign, may_defer: bool) {
        let instance = a.instance;
        // A directory leader acting on an older table than the one this replica has
        // heard of: its assignment would demote the primary named since, or make this
        // node the primary of a superseded term. Terms only grow (a collocated checkpoint
        // stays at 0 until its first ActiveReplicaSet, and a change of the replica set
        // keeps the term), so an older one is never news.
        if let Some(held) = self.held_term(instance)
            && a.term < held
        {
            debug!(
                instance,
                term = a.term,
                held,
                "ignoring an assignment of an older term than the replica's"
            );
            return;
        }
        // Resignations of older terms are settled.
        self.resigned
            .retain(|(i, t)| *i != instance || *t >= a.term);
        if !a.replicas.contains(&self.me) {
            self.deferred.remove(&instance);
            self.drop_replica(instance);
            self.remotes.insert(instance, a);
            return;
        }
        self.remotes.remove(&instance);
        let mut created = false;
        if !self.locals.contains_key(&instance) && may_defer && self.awaiting(instance) {
            // Newest placement; the wait runs from the first one.
            let until = self
                .deferred
                .get(&instance)
                .map_or(self.now() + RECLAIM_WAIT, |d| d.1);
            debug!(
                instance,
                "an agent of the previous run may hand this replica back: waiting"
            );
            self.deferred.insert(instance, (a, until));
            return;
        }
        self.deferred.remove(&instance);
        if !self.locals.contains_key(&instance) {
            let name = object_name(instance);
            let replica = match self.store.attach(&name) {
                Ok(r) => r,
                Err(_) => {
                    let attrs = engine_attrs(&a.attrs);
                    let opts = CreateOptions {
                        limits: self.limits,
                        sharing: Sharing::default(),
                        instance,
                        role: Role::Replica,
                    };
                    match self.store.create(&name, &attrs, &opts) {
                        Ok(r) => {
                            created = true;
                            r
                        }
                        Err(e) => {
                            warn!(instance, "cannot create the replica: {e}");
                            self.create_failed.insert(instance);
                            return;
                        }
                    }
                }
            };
            let mut l = Local::new(replica, a.clone());
            // The directory mints a term when it names a primary, so a checkpoint with a
            // term may hold state elsewhere, unless this very assignment is the one its
            // creation by this node's open sends.
            // An open of this node with CREATE vouches for that only when it makes this
            // node the primary: a replica placed under another primary is empty whatever
            // an agent here asked (a wiped node whose writer reopened with CREATE counted
            // as in sync, and was promoted with nothing: simulation seed 5966).
            let fresh = self.creating(&a.name) && a.primary == Some(self.me);
            l.empty = (created && a.term != 0 && !fresh).then_some(a.term);
            let lost = l.empty.is_some();
            self.locals.insert(instance, l);
            self.create_failed.remove(&instance);
            if lost && a.primary != Some(self.me) {
                // The directory may count this replica as in sync (the node came back
                // within the restart grace, its tmpfs gone): it must not be promoted
                // before a primary has synced it.
                self.resign(instance, a.term);
            }
        }
        let me = self.me;
        if a.primary == Some(me) && self.must_not_lead(&a, created) {
            // Stay a replica (agents' writes get TRY_AGAIN meanwhile) until the directory
            // names another primary, which then resyncs this replica.
            let term = a.term;
            let l = self.locals.get_mut(&instance).expect("inserted");
            l.assign = a;
            let mut answers = Vec::new();
            l.demote(&mut answers, &mut self.metrics);
            l.waiting_since.clear();
            // Placed in this term, the replica refuses the diffs of any primary of an
            // older one, as any replica does (below): a node wiped and named the primary
            // again resigned, but its new replica, still at term 0, took a deposed
            // ALL_REPLICAS primary's snapshot and acknowledged a write the next primary
            // never had (simulation seed 24827).
            let (role, role_term) = l.replica.role();
            if role != Role::Replica || role_term < term {
                step_down(&l.replica, role_term.max(term));
            }
            self.answer_all(answers);
            self.resign(instance, term);
            return;
        }
        let mesh = self.mesh.clone();
        let msgs = self.msgs.clone();
        let repl_cfg = self.repl.clone();
        let limits = self.limits;
        let tail_threads = self.tail_threads;
        let now = self.now();
        let mut answers = Vec::new();
        let l = self.locals.get_mut(&instance).expect("inserted");
        l.assign = a.clone();
        if a.primary == Some(me) {
            let fresh = l.primary.as_ref().is_none_or(|p| p.term() != a.term);
            // Alone in the set with a replica made empty (`must_not_lead` lets it lead).
            let leads_empty = fresh
                && l.led_empty.is_none()
                && l.empty.is_some()
                && !l.synced()
                && !collocated_async(&a);
            let mut started_over = false;
            if fresh && l.starts_over(&a) {
                // Whatever this replica holds (a snapshot cut short) is no state the
                // checkpoint had: it starts over from no sections.
                warn!(
                    node = me,
                    instance,
                    term = a.term,
                    "no replica holds any of the checkpoint's state: starting it over, empty"
                );
                if let Err(e) = l.replica.applier().retain(|_| false) {
                    warn!(instance, "cannot empty the replica, resigning: {e}");
                    self.answer_all(answers);
                    self.resign(instance, a.term);
                    return;
                }
                self.metrics.started_over(instance);
                started_over = true;
            }
            if fresh {
                let was_primary = l.replica.role().0 == Role::Primary;
                l.base = Some(match l.replica.role() {
                    (Role::Primary, t) => (t, l.replica.commit_seq()),
                    _ => l.replica.replication_position(),
                });
                l.continued = was_primary && !started_over && !all_replicas(&a);
                info!(node = me, instance, term = a.term, base = ?l.base, "this node is now the primary");
                if all_replicas(&a) {
                    // Writes are ordered here, on a private copy; agents never write
                    // the node's replica directly.
                    l.replica.set_role(Role::Replica, a.term);
                    if l.staging.is_none() {
                        match staging_copy(&l.replica, &limits) {
                            Ok(r) => {
                                l.staging = Some(Staging {
                                    replica: Arc::new(r),
                                    queue: VecDeque::new(),
                                    last_reap: now,
                                });
                            }
                            Err(e) => {
                                warn!(instance, "cannot make the staging copy: {e}");
                                return;
                            }
                        }
                    }
                    let st = l.staging.as_ref().expect("made");
                    st.replica.set_role(Role::Primary, a.term);
                    st.replica
                        .set_replication_position(a.term, st.replica.commit_seq());
                } else {
                    l.replica.set_role(Role::Primary, a.term);
                    l.replica
                        .set_replication_position(a.term, l.replica.commit_seq());
                }
                l.primary = Some(Primary::new(instance, a.term, repl_cfg));
                if leads_empty {
                    l.led_empty = Some(l.ordering().commit_seq());
                }
                // Every replica starts from a probe in the new term.
                l.waiting_since.clear();
                if (created || !l.vet.is_empty())
                    && a.term != 0
                    && !collocated_async(&a)
                    && !a.from_nothing
                {
                    // Most likely the creation this node's open asked for, but a node
                    // whose replicas were lost may have asked too (see `must_not_lead`):
                    // every other replica must show it holds nothing before it gets
                    // anything from this one. A new term before they all answered
                    // vets the new set (seed 15320: a replica added by it got the empty
                    // snapshot unvetted, and the checkpoint's sections were erased).
                    l.vet = a.replicas.iter().copied().filter(|n| *n != me).collect();
                }
            }
            let others: Vec<u32> = a.replicas.iter().copied().filter(|n| *n != me).collect();
            if let Some(p) = l.primary.as_mut() {
                p.set_replicas(&others, |n| mesh.is_up(n));
            }
            l.waiting_since.retain(|n, _| others.contains(n));
            for n in others {
                l.waiting_since.entry(n).or_insert(now);
            }
            if l.waker.is_none() && tail_threads && l.staging.is_none() {
                l.waker = Some(start_waker(instance, Arc::clone(&l.replica), msgs));
            }
        } else {
            if l.primary.is_some() {
                info!(node = me, instance, term = a.term, primary = ?a.primary, "this node is no longer the primary");
            }
            l.demote(&mut answers, &mut self.metrics);
            l.waiting_since.clear();
            if l.replica.role().0 != Role::Replica {
                step_down(&l.replica, a.term);
            } else if l.replica.role().1 < a.term {
                // The role's term fences older primaries (`repl::apply_diff_checked`):
                // a replica placed in this term must refuse the diffs of any primary of
                // an older one, which may still be writing: the one a new primary
                // replaced (simulation seed 10016), or, with no primary named yet, one
                // deposed meanwhile (seed 17168: a wiped node's new replica acknowledged
                // a deposed ALL_REPLICAS primary's write, which was then lost).
                l.replica.set_role(Role::Replica, a.term);
            }
            if let Some(p) = a.primary {
                // Answer the primary's probe now rather than at its next one: its first
                // probe may have come before this replica existed.
                let reply = repl::apply_diff(&l.replica, instance, a.term, 0, 0, &[]);
                self.send(Transmit {
                    node: p,
                    frame: reply,
                });
            }
        }
        self.answer_all(answers);
        self.poll_primary(instance);
    }

    /// Whether this node, named the primary of `a` (its replica `created` by this
    /// assignment or not), must give the role back instead (`resign`): only while
    /// another replica of the set can take it — alone, this node's replica is the
    /// checkpoint, whatever it holds (then only an ALL_REPLICAS primary named again in a
    /// term it led resigns, to be named in a new term, as below).
    ///
    /// - **Its replica was lost** (its tmpfs died with the node, which restarted within the
    ///   restart grace, so the directory still names it): the replica was made empty now
    ///   for a checkpoint that already has a term, the state lives elsewhere, and as
    ///   primary its snapshot would erase it from every other replica. But a checkpoint
    ///   the directory just created also has a term (minted with its first primary, the
    ///   opener) and a replica made empty here by the assignment its creation sends. That
    ///   assignment comes while this node's creating `Open` waits for its answer (the
    ///   directory sends an open's assignments before its answer), so without such an
    ///   `Open` the replica was lost: resign. With one it may still be a loss (an agent
    ///   reopening with CREATE on a node that just restarted, the directory re-sending the
    ///   assignment meanwhile), so the node leads but vets each other replica's first
    ///   answer before acting on it (`vet_answer`): a replica that holds anything makes it
    ///   resign before it gets a snapshot; after a creation they are all empty. A
    ///   collocated checkpoint's primary is the application's choice (ActiveReplicaSet)
    ///   and is left to it.
    /// - **An ALL_REPLICAS primary in a term it was already primary of** (its ckptd
    ///   restarted, or it was fenced and assigned the same term again): its staging copy
    ///   is gone, and a new one numbers its journal from the few records of its copy, so
    ///   the replicas' positions `(term, seq)` would go back within the term and stop
    ///   naming one state (a replica at a seq of the old numbering would be taken for up
    ///   to date at the same seq of the new one). The engine cannot start a journal at a
    ///   given seq, and the replicas may hold staged writes this node never published, so
    ///   no numbering can continue the old one: only a new term (every replica resyncs
    ///   from the new primary's snapshot) keeps positions meaningful. The node's replica
    ///   shows it: becoming the primary set its role's term, publishing set its
    ///   position's term, and no other primary ever writes in this node's term.
    /// - A term it already resigned.
    fn must_not_lead(&self, a: &CkptAssign, created: bool) -> bool {
        let l = &self.locals[&a.instance];
        if l.primary.as_ref().is_some_and(|p| p.term() == a.term) {
            return false; // leading in this term already: a change of the set
        }
        if l.starts_over(a) {
            return false; // no replica holds any of the checkpoint's state
        }
        if !a.replicas.iter().any(|n| *n != self.me) {
            // Alone, this node's replica is the checkpoint whatever it holds; but a new
            // staging journal would number the writes of a term it led anew, its
            // replica's position going back within the term (simulation seed 3953): the
            // directory names it again in a new term.
            let again = all_replicas(a) && l.staging.is_none() && l.led_in(a.term);
            if again {
                warn!(
                    instance = a.instance,
                    term = a.term,
                    "alone, named the primary again in a term it was primary of: resigning for a new term"
                );
            }
            return again;
        }
        if self.resigned.contains(&(a.instance, a.term)) {
            return true;
        }
        if created && a.term != 0 && !collocated_async(a) && !self.creating(&a.name) {
            warn!(
                instance = a.instance,
                term = a.term,
                "named the primary of a checkpoint whose replica was lost here: resigning"
            );
            return true;
        }
        if l.empty.is_some() && !l.synced() && !collocated_async(a) {
            // Made empty here by an earlier assignment and not synced since: the
            // resignation of that term may have crossed a change of the set, which named
            // this node again in a new term (the directory refuses a resignation of
            // another term). Leading would erase the state the others hold.
            warn!(
                instance = a.instance,
                term = a.term,
                "named the primary again before a primary synced the replica made empty here: resigning"
            );
            return true;
        }
        if all_replicas(a) && l.staging.is_none() && l.led_in(a.term) {
            warn!(
                instance = a.instance,
                term = a.term,
                "named the primary again in a term it was primary of: resigning for a new term"
            );
            return true;
        }
        false
    }

    /// A replica's answer to this node's primary of `instance`, in `term`, with `seq` for an
    /// `Ack` (`None` for a `Stale`), checked while the replica is to be vetted (see
    /// `Local::vet`): a position of this term past 0 (even mid-snapshot), or of an older
    /// term than this primary's but not 0, means the replica holds state this node's
    /// replica, made empty, lacks. The node then gives the role back at once, before its
    /// `Primary` sends that replica a snapshot. Returns whether it did (the answer is
    /// dropped). Answers of other terms are left to the `Primary` (a newer term fences it).
    fn vet_answer(&mut self, instance: u64, from: u32, term: u64, seq: Option<u64>) -> bool {
        let Some(l) = self.locals.get_mut(&instance) else {
            return false;
        };
        let Some(ours) = l.primary.as_ref().map(Primary::term) else {
            return false;
        };
        if !l.vet.contains(&from) {
            return false;
        }
        let holds = match seq {
            Some(_) if term != ours => return false,
            Some(seq) => seq != 0,
            None if term >= ours => return false,
            None => term != 0,
        };
        l.vet.remove(&from);
        if !holds {
            return false;
        }
        warn!(
            instance,
            node = from,
            term = ours,
            "a replica holds state this node's new replica lacks: resigning"
        );
        let mut answers = Vec::new();
        l.demote(&mut answers, &mut self.metrics);
        l.waiting_since.clear();
        if l.replica.role().0 != Role::Replica {
            step_down(&l.replica, ours);
        }
        // Its own position (set when it became primary) names nothing the others hold.
        l.empty = Some(ours + 1);
        self.answer_all(answers);
        self.resign(instance, ours);
        true
    }

    /// Removes this node's replica of `instance` (its writes stop being ordered here).
    /// Returns the placement it held.
    fn drop_replica(&mut self, instance: u64) -> Option<CkptAssign> {
        let mut l = self.locals.remove(&instance)?;
        self.metrics.forget(instance);
        let mut answers = Vec::new();
        l.demote(&mut answers, &mut self.metrics);
        self.answer_all(answers);
        let (role, term) = l.replica.role();
        if role != Role::Replica {
            // Agents that mapped it keep their mappings: as a primary's, it took their
            // writes straight in and confirmed their synchronizes, with nobody ordering or
            // replicating them (simulation seed 3998). As a replica's, their writes are
            // refused and go through ckptd to the primary.
            step_down(&l.replica, term);
        }
        info!(instance, "replica removed");
        self.store.remove(&object_name(instance));
        self.resigned.retain(|(i, _)| *i != instance);
        Some(l.assign)
    }

    /// The directory's `Unassign`: this node no longer holds a replica of `instance`,
    /// because the node was dropped from its set (an eviction) or because the checkpoint
    /// was deleted; the frame does not say which. While an agent here has it open, the
    /// placement it had (without this node) stays, so the agent's operations go to the
    /// primary rather than answer NOT_EXIST for good: the primary answers NOT_EXIST for a
    /// deleted checkpoint, and the next directory answer (an open) or `Assign` replaces
    /// a placement that moved.
    fn on_unassign(&mut self, instance: u64) {
        self.deferred.remove(&instance);
        let Some(mut a) = self.drop_replica(instance) else {
            return;
        };
        if !self.open_here(instance) {
            return;
        }
        a.replicas.retain(|n| *n != self.me);
        if a.primary == Some(self.me) {
            a.primary = None;
        }
        self.remotes.insert(instance, a);
    }

    fn on_mesh(&mut self, ev: MeshEvent) {
        let now = self.now();
        let mut out = Vec::new();
        match ev {
            MeshEvent::PeerUp(n) => {
                info!(node = self.me, peer = n, "peer up");
                self.down_since.remove(&n);
                self.dir.peer_up(n, now, &mut out);
                for l in self.locals.values_mut() {
                    if let Some(p) = l.primary.as_mut() {
                        p.peer_up(n);
                    }
                }
            }
            MeshEvent::PeerDown(n) => {
                info!(node = self.me, peer = n, "peer down");
                self.down_since.entry(n).or_insert(now);
                for l in self.locals.values_mut() {
                    if let Some(p) = l.primary.as_mut() {
                        p.peer_down(n);
                    }
                }
                // Operations forwarded there: a write's outcome is unknown.
                let lost: Vec<ReqId> = self
                    .forwarded
                    .iter()
                    .filter(|(_, f)| f.node == n)
                    .map(|(r, _)| *r)
                    .collect();
                for r in lost {
                    self.forward_lost(r);
                }
            }
            // A diff is applied straight from the received bytes.
            MeshEvent::Frame(from, body) => match DiffRef::decode(&body) {
                Ok(Some(diff)) => self.on_diff(from, &diff),
                Ok(None) => match Frame::decode(&body) {
                    Ok(f) => self.on_frame(from, f, now, &mut out),
                    Err(e) => warn!(peer = from, "undecodable frame: {e}"),
                },
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
            } => self.on_diff(
                from,
                &DiffRef {
                    instance,
                    term,
                    base,
                    mark,
                    ops: ops.iter().map(DiffOp::as_ref).collect(),
                },
            ),
            Frame::Ack {
                instance,
                term,
                seq,
            } => {
                if self.vet_answer(instance, from, term, Some(seq)) {
                    return;
                }
                if let Some(l) = self.locals.get_mut(&instance)
                    && let Some(p) = l.primary.as_mut()
                {
                    let source = l.staging.as_ref().map_or(&l.replica, |s| &s.replica);
                    p.on_ack(from, term, seq, source, now);
                }
                self.poll_primary(instance);
            }
            Frame::Stale { instance, term } => {
                if self.vet_answer(instance, from, term, None) {
                    return;
                }
                let mut answers = Vec::new();
                if let Some(l) = self.locals.get_mut(&instance)
                    && let Some(p) = l.primary.as_mut()
                    && let Some(PrimaryEvent::Fenced { term: t }) = p.on_stale(from, term)
                {
                    warn!(instance, newer = t, "fenced: a replica is in a newer term");
                    l.demote(&mut answers, &mut self.metrics);
                    step_down(&l.replica, term);
                }
                self.answer_all(answers);
                self.poll_primary(instance);
            }
            Frame::Remote { req, instance, op } => {
                self.on_remote(Origin::Peer { node: from, req }, instance, op);
            }
            Frame::RemoteReply { req, result } => {
                if let Some(f) = self.forwarded.remove(&req) {
                    self.finish_forward(f, result);
                }
            }
            other => self.dir.on_frame(from, other, now, out),
        }
    }

    /// A diff from `from`'s primary: applied to this node's replica, and answered.
    fn on_diff(&mut self, from: u32, diff: &DiffRef<'_>) {
        let (instance, term) = (diff.instance, diff.term);
        let mut answers = Vec::new();
        let Some(l) = self.locals.get_mut(&instance) else {
            return; // not assigned here (yet): the primary probes again
        };
        if l.primary.as_ref().is_some_and(|p| term > p.term()) {
            // A primary in a newer term exists: stop taking local writes.
            warn!(instance, newer = term, "fenced by a newer primary");
            l.demote(&mut answers, &mut self.metrics);
            step_down(&l.replica, term);
        }
        if let Some(t) = l.primary.as_ref().map(Primary::term) {
            // We are its primary: whoever sends this is stale.
            self.send(Transmit {
                node: from,
                frame: Frame::Stale { instance, term: t },
            });
            self.answer_all(answers);
            return;
        }
        if !l.placed() && term <= l.term() {
            // Held from the previous run (`hold`), not placed by the directory yet: a
            // primary of a term this replica knows may have been deposed while the daemon
            // was down, and its writes, acknowledged here, would then look confirmed
            // (simulation seed 75: a restarted replica took a deposed primary's tail and
            // was promoted with it). Only a newer primary is taken before the placement;
            // the others probe again.
            self.answer_all(answers);
            return;
        }
        let (pterm, pseq) = l.replica.replication_position();
        let (reply, refused) = repl::apply_diff_checked(&l.replica, diff);
        if diff.base == repl::SNAPSHOT && term >= pterm {
            // A snapshot starts where the replica was not in one of this term already (a
            // restart of an interrupted one does not count again).
            if term > pterm || pseq != repl::INCOMPLETE {
                self.metrics.resync_started(instance);
            }
            if matches!(reply, Frame::Ack { seq, .. } if seq != repl::INCOMPLETE) {
                self.metrics.resync_finished(instance);
            }
        }
        if let Some(e) = refused {
            let path = metrics::Path::Apply;
            self.metrics.refused(instance, path, serve::section_code(e));
        }
        self.answer_all(answers);
        self.send(Transmit {
            node: from,
            frame: reply,
        });
    }

    /// A link took queued bytes: primaries that stopped for want of room make more.
    fn on_drained(&mut self) {
        let waiting: Vec<u64> = self.waiting_room.iter().copied().collect();
        for instance in waiting {
            self.poll_primary(instance);
        }
    }

    fn poll_primary(&mut self, instance: u64) {
        let now = self.now();
        let mut tx = Vec::new();
        let mut answers = Vec::new();
        let mesh = &self.mesh;
        let held = self.held;
        let room = |node: u32| {
            if held {
                0
            } else {
                LINK_AHEAD.saturating_sub(mesh.queued(node))
            }
        };
        let mut wants_room = false;
        if let Some(l) = self.locals.get_mut(&instance)
            && let Some(p) = l.primary.as_mut()
        {
            match l.staging.as_mut() {
                Some(st) => {
                    p.poll_encoded(&st.replica, now, &room, &mut tx);
                    wants_room = p.wants_room();
                    let floor = p.acked_floor().unwrap_or_else(|| st.replica.commit_seq());
                    publish(&l.replica, st, floor, p.term(), &mut answers);
                }
                None => {
                    p.poll_encoded(&l.replica, now, &room, &mut tx);
                    wants_room = p.wants_room();
                    let floor = p.acked_floor().unwrap_or_else(|| l.replica.commit_seq());
                    if floor < l.replica.acked_seq() {
                        // A replica joined: a synchronize from now on waits for it too.
                        l.replica.lower_acked_seq(floor);
                    } else {
                        l.replica.set_acked_seq(floor);
                    }
                    let acked = l.replica.acked_seq();
                    let metrics = &mut self.metrics;
                    l.syncs.retain(|w| {
                        if w.seq <= acked {
                            metrics.synchronized(now.saturating_sub(w.since));
                            answers.push((w.origin, RemoteResult::Done));
                            false
                        } else {
                            true
                        }
                    });
                }
            }
            let term = p.term();
            l.answer_changes(term, now, &mut answers);
        }
        let place = self.waiting_room.iter().position(|i| *i == instance);
        match place {
            None if wants_room => self.waiting_room.push_back(instance),
            Some(at) if !wants_room || !tx.is_empty() => {
                self.waiting_room.remove(at);
                if wants_room {
                    self.waiting_room.push_back(instance);
                }
            }
            _ => {}
        }
        for t in tx {
            self.send_diff(t);
        }
        self.answer_all(answers);
    }

    fn on_tick(&mut self) {
        let now = self.now();
        let mut out = Vec::new();
        let gone: Vec<u32> = self
            .down_since
            .iter()
            .filter(|(_, t)| now.saturating_sub(**t) >= self.restart_grace)
            .map(|(n, _)| *n)
            .collect();
        for n in gone {
            self.down_since.remove(&n);
            self.dir.peer_down(n, now, &mut out);
        }
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
        // Forwarded operations whose answer never came (it was lost with a link).
        let lost: Vec<ReqId> = self
            .forwarded
            .iter()
            .filter(|(_, f)| now >= f.deadline)
            .map(|(r, _)| *r)
            .collect();
        for r in lost {
            warn!(?r, "no answer to a forwarded operation: answered anyway");
            self.forward_lost(r);
        }
        if !self.orphans.is_empty() && now.saturating_sub(self.last_orphan_check) >= ORPHAN_CHECK {
            self.last_orphan_check = now;
            self.reap_orphans();
        }
        if now.saturating_sub(self.reconciled.0) >= RECONCILE_EVERY {
            self.reconciled.0 = now;
            self.reconcile_opens();
        }
        if !self.deferred.is_empty() {
            self.settle_deferred();
        }
        // Deadlines of synchronizes and ALL_REPLICAS writes; reaping ordered here.
        let mut answers = Vec::new();
        let metrics = &mut self.metrics;
        for l in self.locals.values_mut() {
            l.syncs.retain(|w| {
                if w.deadline.is_some_and(|d| now >= d) {
                    metrics.sync_failed(SyncFailure::TimedOut);
                    answers.push((w.origin, fail(code::TIMEOUT)));
                    false
                } else {
                    true
                }
            });
            if let Some(st) = l.staging.as_mut() {
                for s in st.queue.iter_mut() {
                    if s.origin.is_some() && now.saturating_sub(s.since) >= WRITE_TIMEOUT {
                        answers.push((s.origin.take().expect("checked"), fail(code::TIMEOUT)));
                    }
                }
                if now.saturating_sub(st.last_reap) >= REAP_EVERY {
                    st.last_reap = now;
                    let wall = ckpt_engine::wall_clock();
                    if st.replica.applier().reap_expired(wall) > 0 {
                        st.queue.push_back(Staged {
                            seq: st.replica.commit_seq(),
                            change: Change::Reap(wall),
                            origin: None,
                            result: RemoteResult::Done,
                            since: now,
                        });
                    }
                }
            }
        }
        self.answer_all(answers);
        let ids: Vec<u64> = self
            .locals
            .iter()
            .filter(|(_, l)| l.primary.is_some())
            .map(|(i, _)| *i)
            .collect();
        for i in ids {
            self.poll_primary(i);
        }
        self.evict_stuck(now);
        self.report_positions(now);
    }

    /// Tells the directors which (term, seq) each replica here has applied, so a primary's
    /// death promotes the most up-to-date survivor and an evicted replica is known to
    /// have resynced.
    fn report_positions(&mut self, now: Duration) {
        let since = now.saturating_sub(self.reported.1);
        if since < REPORT_EVERY {
            return;
        }
        let mut items: Vec<(u64, u64, u64)> = self
            .locals
            .iter_mut()
            .map(|(i, l)| {
                let (term, seq) = held_position(&l.replica);
                if l.synced() {
                    l.empty = None;
                    l.led_empty = None;
                }
                // A replica made empty for a checkpoint with state elsewhere holds nothing
                // a promotion may count on, whatever its (initial) position says: it
                // reports the rank of a replica in the middle of a snapshot.
                let seq = if l.empty.is_some() {
                    repl::INCOMPLETE
                } else {
                    seq
                };
                (*i, term, seq)
            })
            .collect();
        // A checkpoint whose promotion waits for what this node held when it left the
        // set (`departed`), while it holds no replica of it (its tmpfs was wiped, or
        // its daemon dropped it): reported as held by nobody, so the wait ends
        // (simulation seed 3248: a wiped node's floor kept a checkpoint without a
        // primary for good). Not while an agent may still hand a replica back.
        let me = self.me;
        let gone: Vec<(u64, u64, u64)> = self
            .dir
            .entries()
            .filter(|e| e.departed.contains_key(&me) && !self.locals.contains_key(&e.instance))
            .filter(|e| !self.deferred.contains_key(&e.instance) && !self.awaiting(e.instance))
            .map(|e| (e.instance, 0, repl::INCOMPLETE))
            .collect();
        items.extend(gone);
        if items == self.reported.0 && since < REPORT_ANYWAY {
            return;
        }
        for &(instance, term, seq) in &items {
            self.dir.report_position(self.me, instance, term, seq);
        }
        for &d in &self.directors {
            if d != self.me {
                self.send(Transmit {
                    node: d,
                    frame: Frame::Positions {
                        node: self.me,
                        items: items.clone(),
                    },
                });
            }
        }
        self.reported = (items, now);
    }

    /// ALL_REPLICAS writes waiting too long for a replica: ask the directory to evict the
    /// one furthest behind (one per term); only the directory may, and it mints a new
    /// term.
    fn evict_stuck(&mut self, now: Duration) {
        let mut asks = Vec::new();
        for (i, l) in &self.locals {
            let (Some(p), Some(st)) = (l.primary.as_ref(), l.staging.as_ref()) else {
                continue;
            };
            let Some(oldest) = st.queue.front() else {
                continue;
            };
            if now.saturating_sub(oldest.since) < EVICT_AFTER {
                continue;
            }
            // One eviction per term: the directory's first one mints a new term, in which
            // it refuses another asked in this one, and the new `Primary` measures the
            // stall of the others again from the start of that term.
            let term = p.term();
            if self.evicting.iter().any(|(e, _, t)| e == i && *t == term) {
                continue;
            }
            let stuck = p
                .replicas()
                .filter_map(|n| {
                    let acked = p.acked_by(n).unwrap_or(0);
                    let acked = if acked == repl::INCOMPLETE { 0 } else { acked };
                    // A replica stalls the write only from when it could first have acked
                    // it in this term: a new term (an eviction's) probes every replica
                    // from scratch, and a replica that just joined starts from a snapshot.
                    let since = l
                        .waiting_since
                        .get(&n)
                        .map_or(oldest.since, |t| oldest.since.max(*t));
                    (acked < oldest.seq && now.saturating_sub(since) >= EVICT_AFTER)
                        .then_some((acked, n))
                })
                .min();
            if let Some((_, n)) = stuck {
                warn!(
                    instance = *i,
                    node = n,
                    "a replica does not ack: asking the directory to evict it"
                );
                asks.push((*i, n, term));
            }
        }
        for (instance, node, term) in asks {
            self.metrics.eviction_requested(instance, node);
            self.evicting.insert((instance, node, term));
            self.dir_request(
                None,
                NO_AGENT,
                DirOp::Evict {
                    instance,
                    node,
                    term,
                },
            );
        }
    }
}

/// Publishes the staged ALL_REPLICAS writes every replica acked (`floor`): applies them
/// to the node's replica, in order, and answers their writers.
fn publish(
    replica: &Replica,
    st: &mut Staging,
    floor: u64,
    term: u64,
    answers: &mut Vec<(Origin, RemoteResult)>,
) {
    let mut last = None;
    while st.queue.front().is_some_and(|s| s.seq <= floor) {
        let s = st.queue.pop_front().expect("checked");
        match &s.change {
            Change::Op(op) => {
                let (r, _) = serve::apply_write(replica, op);
                if !matches!(r, RemoteResult::Done | RemoteResult::Created { .. }) {
                    // The staging copy and this replica took the same writes in the same
                    // order; a difference means the replica was changed behind our back.
                    warn!(instance = replica.instance(), result = ?r, "publishing a staged write failed");
                }
            }
            Change::Reap(now) => {
                replica.applier().reap_expired(*now);
            }
        }
        last = Some(s.seq);
        if let Some(o) = s.origin {
            answers.push((o, s.result));
        }
    }
    if let Some(seq) = last {
        replica.set_replication_position(term, seq);
        replica.set_acked_seq(replica.commit_seq());
    }
}

/// A private heap-backed copy of `replica`'s sections.
fn staging_copy(replica: &Replica, limits: &ReplicaLimits) -> Result<Replica, String> {
    let copy =
        Replica::create_in_memory(&replica.attributes(), limits).map_err(|e| e.to_string())?;
    let a = copy.applier();
    for s in replica.sections(SectionFilter::Any) {
        let data = replica.read_to_vec(&s.id).map_err(|e| format!("{e:?}"))?;
        a.put(&s.id, s.expiration, &data)
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(copy)
}

/// How long the tail thread sleeps at most before it looks at `stop` again.
const TAIL_IDLE: Duration = Duration::from_millis(200);

/// Starts the thread that tails a primary's journal and posts `Moved` when it grew.
///
/// A thread blocked in `wait_for_changes` is a waiter every write must wake with a futex
/// syscall (about a microsecond, ten times a local overwrite). So the thread waits on the
/// journal only while ckptd has nothing to do for this replica: from posting `Moved` until
/// ckptd has taken it (and polls the journal, seeing every change made so far) it parks on
/// its own, and writes meanwhile cost no syscall. Under a steady stream of writes that is
/// one wake-up per ckptd poll instead of one per write.
fn start_waker(
    instance: u64,
    replica: Arc<Replica>,
    msgs: mpsc::UnboundedSender<Msg>,
) -> Arc<Waker> {
    let w = Arc::new(Waker {
        stop: AtomicBool::new(false),
        posted: AtomicBool::new(false),
        thread: OnceLock::new(),
    });
    let w2 = Arc::clone(&w);
    let mut seen = replica.commit_seq();
    let _ = std::thread::Builder::new()
        .name(format!("tail-{instance:x}"))
        .spawn(move || {
            let _ = w2.thread.set(std::thread::current());
            while !w2.stop.load(Ordering::Acquire) {
                if w2.posted.load(Ordering::Acquire) {
                    // Woken by `consumed` or `stop` (an unpark before this park makes it
                    // return at once).
                    std::thread::park_timeout(TAIL_IDLE);
                    continue;
                }
                if replica.wait_for_changes(seen, TAIL_IDLE) {
                    seen = replica.commit_seq();
                    w2.posted.store(true, Ordering::Release);
                    if msgs.send(Msg::Moved(instance)).is_err() {
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
