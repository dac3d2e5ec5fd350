//! The directory (the CPD role of the classic implementations), sans IO.
//!
//! Every node runs a [`Directory`]; on director nodes (`director = true` in the cluster
//! file) it can lead. The leader owns the cluster's checkpoint table: names, instances,
//! replica sets, the primary of each checkpoint and its replication term, cluster-wide
//! opens and retention. It answers `Request` frames, tells replica nodes what they hold
//! (`Assign`/`Unassign`), sends its table to the other directors after each change
//! (`DirState`) and a heartbeat (`Leader`) to every node it reaches.
//!
//! - **Quorum**: a decision needs a majority of the configured nodes (itself included).
//!   In two-node mode one node is enough, once both have been seen together since start
//!   (corosync's `two_node` + `wait_for_all`; "seen" meaning this node holds a table at
//!   least as new as the other's, not just a connection); a partition of a two-node cluster then has
//!   two leaders, which is why that mode needs fencing in production (documented, as for
//!   corosync).
//! - **Election by votes and leases**: when no leader is heard for `election_timeout`,
//!   the lowest-id reachable director asks every node for its vote in a term above any it
//!   knows ([`Frame::Vote`]); a node grants one vote per term, and none while it follows
//!   another leader. A grant, and every acknowledged heartbeat, promises to follow nobody
//!   else for one election timeout; the leader steps down when fewer than a majority of
//!   promises hold. Leadership is **sticky**: a returning director follows the leader it
//!   hears and cannot win votes while that leader's followers are promised to it. A
//!   restarted node stays quiet (no vote, no acknowledgement) for one election timeout.
//! - **Committed tables**: each decision is a new [`TableVersion`], sent to every node;
//!   its effects (answers, assignments) are released once a majority acknowledged it. A
//!   new leader starts from the newest table among its voters, so nothing it answered is
//!   forgotten by the next leader.
//! - **Terms**: a checkpoint's replication term is `dir_term << 32 | n`, so a term minted
//!   by a later leader is always higher than any minted before it.
//! - **Requests** carry a [`ReqId`]; the leader remembers recent answers per requesting
//!   node, so a request retried after a reconnect or a leader change is applied once.
//! - **A node's death** (no connection for the transport's idle timeout and ckptd's
//!   restart grace) closes its opens and removes it from every replica set; a
//!   non-collocated checkpoint whose primary died gets a new primary (the in-sync replica
//!   that reported the highest position) in a new term, on a tick once the positions are
//!   in. A collocated checkpoint waits for the application's ActiveReplicaSet.
//! - **Positions**: every node reports the replication position `(term, seq)` of the
//!   replicas it holds to the leader ([`Frame::Positions`], or [`Directory::report_position`]
//!   on the leader's own node). Promotion takes the surviving replica with the highest
//!   complete position; a replica without a report ranks below every reported one, a
//!   replica in the middle of a snapshot below both; among equals the lowest node id wins.
//! - **Eviction**: the primary's node may ask to drop a replica that does not acknowledge
//!   ([`DirOp::Evict`]). The checkpoint gets a new term without that node, which gets
//!   `Unassign`. The table remembers the eviction until the node reports a complete
//!   position in that term or a later one (it was added back by an open and resynced from
//!   the primary): until then it is never promoted, neither by a primary's death nor by
//!   ActiveReplicaSet, since its replica may lack writes the reduced set acknowledged.
//!
//! Time is the driver's monotonic `now`; retention counts in it, so a wall-clock jump
//! changes neither retention nor failure detection.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::repl::{INCOMPLETE, Transmit};
use crate::wire::{
    Attrs, CkptAssign, Dec, Decode, DirOp, DirReply, Enc, Encode, Frame, ReqId, TableVersion,
    WireError,
};

/// `SaAisErrorT` values the directory answers with.
pub mod code {
    /// SA_AIS_ERR_TRY_AGAIN
    pub const TRY_AGAIN: u32 = 6;
    /// SA_AIS_ERR_INVALID_PARAM
    pub const INVALID_PARAM: u32 = 7;
    /// SA_AIS_ERR_NOT_EXIST
    pub const NOT_EXIST: u32 = 12;
    /// SA_AIS_ERR_EXIST
    pub const EXIST: u32 = 14;
    /// SA_AIS_ERR_NO_RESOURCES
    pub const NO_RESOURCES: u32 = 18;
    /// SA_AIS_ERR_BAD_OPERATION
    pub const BAD_OPERATION: u32 = 20;
}

/// `creationFlags` bits the directory looks at.
pub mod flags {
    /// SA_CKPT_WR_ALL_REPLICAS
    pub const WR_ALL_REPLICAS: u32 = 0x1;
    /// SA_CKPT_CHECKPOINT_COLLOCATED
    pub const COLLOCATED: u32 = 0x8;
    /// SA_CKPT_CHECKPOINT_CREATE (open flags)
    pub const OPEN_CREATE: u32 = 0x4;
}

/// Static configuration of the directory on one node.
#[derive(Clone, Debug)]
pub struct DirConfig {
    /// This node.
    pub node: u32,
    /// Every configured node (this one included).
    pub nodes: Vec<u32>,
    /// The director nodes.
    pub directors: Vec<u32>,
    /// Two-node mode (quorum of one once both nodes were seen).
    pub two_node: bool,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Silence after which a new leader is elected.
    pub election_timeout: Duration,
    /// Checkpoints the cluster holds at most.
    pub max_checkpoints: usize,
}

/// One checkpoint in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Cluster-wide instance id.
    pub instance: u64,
    /// Its name.
    pub name: String,
    /// Creation attributes.
    pub attrs: Attrs,
    /// Nodes holding a replica.
    pub replicas: Vec<u32>,
    /// The node whose replica orders writes (the active replica).
    pub primary: Option<u32>,
    /// Replication term of the current primary.
    pub term: u64,
    /// Unlinked: the name is free, the instance lives while open.
    pub unlinked: bool,
    /// Opens per node.
    pub openers: BTreeMap<u32, u32>,
    /// Retention duration, ns.
    pub retention: i64,
    /// Since when nobody has it open (monotonic), if so.
    pub idle_since: Option<Duration>,
    /// Nodes evicted from `replicas` that have not resynced since, each with the term its
    /// eviction minted. Such a node is not promoted until it reports a complete position
    /// in that term or a later one.
    pub evicted: BTreeMap<u32, u64>,
    /// Replicas that died while in sync, each with the last complete position it
    /// reported (a primary: at least its term's start): when no replica in sync is left,
    /// one that comes back is promoted only if it holds at least as much as each of these
    /// (a replica's ends when it is back, in the set, or without what it held).
    pub departed: BTreeMap<u32, (u64, u64)>,
    /// Evicted directors the leader will place again (to resync): node → (evictions since
    /// it last resynced, not before). The time is on this node's clock; the table carries
    /// what is left of the wait, like `idle_since`, so a new leader keeps both the
    /// schedule and the doubling backoff ([`READMIT_AFTER`]).
    pub readmit: BTreeMap<u32, (u32, Duration)>,
    /// The term in which the leader named a primary knowing that no replica held any of
    /// the checkpoint's state (`promotion_choice`): that primary starts the checkpoint over
    /// ([`CkptAssign::from_nothing`]). A later term ends it.
    pub lost_in: Option<u64>,
}

impl Entry {
    fn assign(&self) -> CkptAssign {
        CkptAssign {
            instance: self.instance,
            name: self.name.clone(),
            attrs: self.attrs,
            replicas: self.replicas.clone(),
            primary: self.primary,
            term: self.term,
            unlinked: self.unlinked,
            from_nothing: self.primary.is_some() && self.lost_in == Some(self.term),
        }
    }

    fn collocated(&self) -> bool {
        self.attrs.creation_flags & flags::COLLOCATED != 0
            && self.attrs.creation_flags & flags::WR_ALL_REPLICAS == 0
    }

    fn open_count(&self) -> u32 {
        self.openers.values().sum()
    }

    /// Whether `node`, not in the set, left it in sync while this non-collocated
    /// checkpoint still waits for a primary: what it holds may be what the promotion waits
    /// for (the primary it was, cut off, confirmed writes nobody else has), so it is
    /// placed again when it shows up (a report, an open, a corrected open count) rather
    /// than told the placement without it, which made its daemon drop that state and left
    /// the checkpoint without a primary for good (simulation seed 861).
    fn awaits(&self, node: u32) -> bool {
        !self.collocated()
            && !self.unlinked
            && self.primary.is_none()
            && self.departed.contains_key(&node)
            && !self.evicted.contains_key(&node)
            && !self.replicas.contains(&node)
    }

    /// When retention deletes the checkpoint, if nobody has it open.
    fn retention_due(&self) -> Option<Duration> {
        let since = self.idle_since.filter(|_| self.open_count() == 0)?;
        Some(
            since
                .checked_add(Duration::from_nanos(self.retention.max(0).unsigned_abs()))
                .unwrap_or(Duration::MAX),
        )
    }
}

/// What the directory asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a frame to another node.
    Send(Transmit),
    /// Answer to a request this node made.
    Reply {
        /// The request.
        req: ReqId,
        /// The answer.
        result: DirReply,
    },
    /// The placement of a checkpoint this node holds a replica of, or has open: new, or
    /// changed (a node without a replica learns where the primary is).
    Assign(CkptAssign),
    /// This node no longer holds a replica of the instance.
    Unassign(u64),
    /// The leader changed (`None`: no leader with quorum is known).
    Leader(Option<u32>),
}

const REMEMBERED_REPLIES: usize = 1024;
/// How long the answers to one requester incarnation are kept after its last request.
/// A requester retries a request for at most 30 s (ckptd's give-up), so nothing asks
/// for them after this; without the bound every daemon restart (a new incarnation)
/// would leave up to [`REMEMBERED_REPLIES`] answers in the table for good.
pub const REPLY_MEMORY: Duration = Duration::from_secs(120);

/// This node's promise to follow one leader (or to vote for one candidate) and nobody
/// else until `until`.
#[derive(Clone, Copy, Debug)]
struct Promise {
    leader: u32,
    term: u64,
    until: Duration,
}

/// An election this director runs.
#[derive(Debug)]
struct Candidacy {
    term: u64,
    started: Duration,
    granted: BTreeSet<u32>,
    /// Voters that granted with a table newer than this node's (in two-node mode, with
    /// any table: unused there).
    informed: BTreeSet<u32>,
    /// Nodes that answered (granted or not).
    answered: BTreeSet<u32>,
    /// The newest table a voter sent.
    best: Option<Table>,
    /// Two-node mode: the other tables a voter sent (see [`Directory::merge_diverged`]).
    diverged: Vec<Table>,
}

/// The directory of one node.
#[derive(Debug)]
pub struct Directory {
    cfg: DirConfig,
    reachable: BTreeSet<u32>,
    seen_all: bool,
    leader: Option<u32>,
    /// The highest term of a leader this node has followed or been.
    dir_term: u64,
    /// The highest term this node voted (or ran) in.
    voted: u64,
    promise: Option<Promise>,
    /// Until then this node neither votes, nor acknowledges a leader, nor runs: a promise
    /// it made before it restarted may still be counted on.
    quiet_until: Duration,
    heard: Duration,
    next_beat: Duration,
    candidacy: Option<Candidacy>,
    /// Leader: until when each follower's promise holds, on this node's clock.
    leases: BTreeMap<u32, Duration>,
    /// Leader: the table version each node acknowledged in this term.
    acked: BTreeMap<u32, TableVersion>,
    /// Leader: when the table was last sent to each node.
    state_sent: BTreeMap<u32, (TableVersion, Duration)>,
    /// Leader: effects of decisions not yet on a quorum, released in order once they are.
    held: VecDeque<(TableVersion, Output)>,
    leader_since: Duration,
    /// Leader: since when each non-collocated checkpoint without a primary has waited
    /// for one (this leader's view; not part of the table).
    orphaned: BTreeMap<u64, Duration>,
    version: TableVersion,
    /// Term counter within `dir_term` for checkpoint terms.
    minted: u32,
    entries: BTreeMap<u64, Entry>,
    next_instance: u64,
    replies: BTreeMap<(u32, u64), VecDeque<(u64, DirReply)>>,
    /// When each requester incarnation in `replies` last asked this director (this
    /// node's clock; not replicated: a director stamps what it learns at its next tick).
    replies_used: BTreeMap<(u32, u64), Duration>,
    /// Replication positions reported by nodes: (instance, node) → (term, seq).
    positions: BTreeMap<(u64, u32), (u64, u64)>,
    /// The table changed outside a call that can publish it
    /// ([`Directory::report_position`]); the next tick does.
    dirty: bool,
    /// Effects of such a call, for the next tick.
    unpublished: Vec<Output>,
    /// The durable state changed since [`Directory::durable_state`] last returned it.
    durable_dirty: bool,
}

/// How long a new leader waits for every surviving replica's position report before it
/// promotes without one (nodes report every second, and at once when one changes).
const POSITIONS_WAIT: Duration = Duration::from_millis(1500);
/// An evicted director that is still connected is placed again (to resync) this long
/// after its eviction, doubled for each eviction since it last resynced (at most 32×):
/// the set gets its redundancy back once the node is healthy, and a node that stays
/// unhealthy stalls ALL_REPLICAS writes (for the primary's eviction delay) ever more
/// rarely.
const READMIT_AFTER: Duration = Duration::from_secs(5);

impl Directory {
    /// A directory that knows nothing yet (at start, or after a restart: it then waits an
    /// election timeout before it votes, acknowledges or runs, so that no promise it made
    /// before is broken).
    pub fn new(cfg: DirConfig, now: Duration) -> Self {
        Self {
            reachable: BTreeSet::new(),
            seen_all: cfg.nodes.len() <= 1,
            leader: None,
            dir_term: 0,
            voted: 0,
            promise: None,
            quiet_until: now + cfg.election_timeout,
            heard: now,
            next_beat: now,
            candidacy: None,
            leases: BTreeMap::new(),
            acked: BTreeMap::new(),
            state_sent: BTreeMap::new(),
            held: VecDeque::new(),
            leader_since: now,
            orphaned: BTreeMap::new(),
            version: TableVersion::default(),
            minted: 0,
            entries: BTreeMap::new(),
            next_instance: 1,
            replies: BTreeMap::new(),
            replies_used: BTreeMap::new(),
            positions: BTreeMap::new(),
            dirty: false,
            unpublished: Vec::new(),
            durable_dirty: false,
            cfg,
        }
    }

    /// What must survive a restart of this node's daemon, when it changed since the last
    /// call: the terms it voted in and followed, and its table. The driver stores it
    /// before it sends anything more, and passes it to [`Directory::restore`] at start.
    pub fn durable_state(&mut self, now: Duration) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.durable_dirty) {
            return None;
        }
        let mut buf = Vec::new();
        let mut e = Enc::new(&mut buf);
        e.put_u64(self.voted);
        e.put_u64(self.dir_term);
        e.put_bytes(&encode_table(self, now));
        Some(buf)
    }

    /// Restores what [`Directory::durable_state`] returned before a restart. The node
    /// still keeps quiet for an election timeout (the promises it made are not kept).
    /// Garbage is ignored: the node then starts empty, as a new one.
    pub fn restore(&mut self, bytes: &[u8], now: Duration) {
        let mut d = Dec::new(bytes);
        let parsed = (|| {
            let voted = d.u64()?;
            let dir_term = d.u64()?;
            let table = decode_table(d.bytes()?, now)?;
            d.finish()?;
            Ok::<_, WireError>((voted, dir_term, table))
        })();
        if let Ok((voted, dir_term, table)) = parsed {
            self.voted = voted.max(dir_term);
            self.dir_term = dir_term;
            self.install(table);
        }
    }

    /// The leader this node follows (itself included).
    pub fn leader(&self) -> Option<u32> {
        self.leader
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.leader == Some(self.cfg.node)
    }

    /// The directory term this node knows.
    pub fn term(&self) -> u64 {
        self.dir_term
    }

    /// The version of the table this node holds.
    pub fn version(&self) -> TableVersion {
        self.version
    }

    /// The table (complete on the leader and, a heartbeat behind, on every other node).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The replication position `(term, seq)` this node last heard `node` report for
    /// `instance` (the leader hears them all).
    pub fn position(&self, instance: u64, node: u32) -> Option<(u64, u64)> {
        self.positions.get(&(instance, node)).copied()
    }

    /// Nodes a decision needs (the leader included): a majority of the configured nodes,
    /// or one in two-node mode once both were seen together.
    fn needed(&self) -> usize {
        if self.two_node() && self.seen_all {
            return 1;
        }
        self.cfg.nodes.len() / 2 + 1
    }

    fn two_node(&self) -> bool {
        self.cfg.two_node && self.cfg.nodes.len() == 2
    }

    /// Two-node mode: the other node's table version became known. Being seen together
    /// (which lets one node decide alone afterwards) needs this node to hold a table at
    /// least as new as the other's, not a mere connection: a node that lost its state
    /// (its shm was wiped) and connected, but died or was cut off before the table came,
    /// would otherwise lead alone with an empty table and mint every name anew.
    ///
    /// "At least as new" is equality: a higher version does not mean a table holds the
    /// other's decisions. In a split both nodes lead, each in its own directory term, and
    /// the tables diverge: the one of the higher term may lack what the other decided
    /// after the split began (the simulation found a node back from such a split lead
    /// with its stale table and name itself primary again under a later one: seed
    /// 45264). The two meet again through an election, which merges them
    /// ([`Directory::merge_diverged`]).
    fn peer_version(&mut self, version: TableVersion) {
        if self.two_node() && self.version == version {
            self.seen_all = true;
        }
    }

    /// Whether this node reaches a quorum of the configured nodes (connections only: a
    /// leader counts the nodes whose promise it holds).
    pub fn has_quorum(&self) -> bool {
        self.reachable.len() + 1 >= self.needed()
    }

    /// Leader: itself plus the followers whose promise holds at `now`.
    fn lease_count(&self, now: Duration) -> usize {
        1 + self.leases.values().filter(|until| **until > now).count()
    }

    fn is_director(&self) -> bool {
        self.cfg.directors.contains(&self.cfg.node)
    }

    /// Whether this node is in the cluster (reaches a quorum, or follows a leader).
    pub fn in_cluster(&self) -> bool {
        self.leader.is_some()
    }

    fn lease(&self) -> Duration {
        self.cfg.election_timeout
    }

    fn promised_elsewhere(&self, leader: u32, now: Duration) -> Option<Promise> {
        self.promise.filter(|p| p.until > now && p.leader != leader)
    }

    /// The connection to `node` came up.
    pub fn peer_up(&mut self, node: u32, now: Duration, out: &mut Vec<Output>) {
        if node == self.cfg.node || !self.cfg.nodes.contains(&node) {
            return;
        }
        self.reachable.insert(node);
        if !self.two_node() && self.reachable.len() + 1 == self.cfg.nodes.len() {
            self.seen_all = true;
        }
        if self.is_leader() {
            self.send_heartbeat(node, now, out);
            self.send_state_to(node, now, out);
            // Tell the node what it holds and where the checkpoints it opened are (it may
            // have restarted, or missed changes while away).
            let held: Vec<CkptAssign> = self
                .entries
                .values()
                .filter(|e| e.replicas.contains(&node) || e.openers.contains_key(&node))
                .map(Entry::assign)
                .collect();
            // Released once the table they come from is on a quorum.
            let mut told = Vec::new();
            for ckpt in held {
                self.assign_to(node, ckpt, &mut told);
            }
            self.emit(told, out);
            let mut effects = Vec::new();
            if self.place_director(node, &mut effects) {
                self.publish(effects, now, out);
            }
        }
    }

    /// The node is gone for good: its connection has been down for the restart grace.
    /// The leader closes its opens and removes its replicas.
    pub fn peer_down(&mut self, node: u32, now: Duration, out: &mut Vec<Output>) {
        if !self.reachable.remove(&node) {
            return;
        }
        if self.is_leader() {
            let mut effects = Vec::new();
            self.node_died(node, now, &mut effects);
            self.publish(effects, now, out);
        }
    }

    /// A frame from another node.
    pub fn on_frame(&mut self, from: u32, frame: Frame, now: Duration, out: &mut Vec<Output>) {
        match frame {
            Frame::Leader {
                dir_term,
                leader,
                sent,
                ..
            } if leader == from => {
                if self.is_leader() && dir_term == self.dir_term && self.cfg.node < leader {
                    self.reassert(now, out);
                } else {
                    self.on_heartbeat(leader, dir_term, sent, now, out);
                }
            }
            Frame::DirState {
                term,
                leader,
                state,
            } if leader == from => {
                if !self.follow(leader, term, now, out) {
                    return;
                }
                if let Ok(t) = decode_table(&state, now) {
                    let version = t.version;
                    let newer = t.version > self.version
                        || (t.version.term, t.version.leader)
                            != (self.version.term, self.version.leader);
                    if newer && t.version.term <= term {
                        self.install(t);
                    }
                    self.peer_version(version);
                }
                let ack = Frame::LeaderAck {
                    dir_term: self.dir_term,
                    sent: 0,
                    version: self.version,
                };
                self.send(from, ack, out);
            }
            Frame::LeaderAck {
                dir_term,
                sent,
                version,
            } => self.on_leader_ack(from, dir_term, sent, version, now, out),
            Frame::Vote { term, version } => self.on_vote(from, term, version, now, out),
            Frame::VoteReply {
                term,
                granted,
                state,
            } => self.on_vote_reply(from, term, granted, &state, now, out),
            Frame::Request { req, op } => {
                if self.is_leader() {
                    self.handle(req, op, Some(from), now, out);
                } else {
                    let result = DirReply::NotLeader {
                        leader: self.leader,
                    };
                    self.send(from, Frame::Reply { req, result }, out);
                }
            }
            Frame::Reply { req, result } => out.push(Output::Reply { req, result }),
            Frame::Assign { dir_term, ckpt } if dir_term >= self.dir_term => {
                out.push(Output::Assign(ckpt));
            }
            Frame::Unassign { dir_term, instance } if dir_term >= self.dir_term => {
                out.push(Output::Unassign(instance));
            }
            // A node reports its own replicas only.
            Frame::Positions { node, items } if node == from => {
                let mut effects = Vec::new();
                let mut changed = false;
                for (instance, term, seq) in items {
                    changed |= self.note_position(node, instance, term, seq, &mut effects);
                }
                if changed {
                    self.publish(effects, now, out);
                } else {
                    self.emit(effects, out);
                }
            }
            _ => {}
        }
    }

    /// Whether this node follows `leader` in `term` (now or from this frame on). A
    /// promise to another leader, or to a candidate, in force blocks it unless the term is
    /// higher (that leader won a quorum this node was not part of).
    fn follow(&mut self, leader: u32, term: u64, now: Duration, out: &mut Vec<Output>) -> bool {
        if term < self.dir_term {
            return false;
        }
        if leader == self.cfg.node {
            return false;
        }
        if self.is_leader() && term == self.dir_term {
            // Only possible in two-node mode, where each side of a partition leads: of
            // two leaders in one term the lower id wins.
            if self.cfg.node < leader {
                return false;
            }
        } else if let Some(p) = self.promised_elsewhere(leader, now)
            && term <= p.term
        {
            return false;
        }
        if now < self.quiet_until {
            // Learn where the leader is (requests go there), promise nothing; a leader
            // heard keeps this node from running when its quiet period ends.
            self.heard = now;
            if self.leader != Some(leader) {
                self.set_leader(Some(leader), out);
            }
            return false;
        }
        if self.is_leader() {
            self.step_down(now, out);
        }
        self.candidacy = None;
        if term != self.dir_term {
            self.durable_dirty = true;
        }
        self.dir_term = term;
        self.voted = self.voted.max(term);
        self.promise = Some(Promise {
            leader,
            term,
            until: now + self.lease(),
        });
        self.heard = now;
        if self.leader != Some(leader) {
            self.set_leader(Some(leader), out);
        }
        true
    }

    fn on_heartbeat(
        &mut self,
        leader: u32,
        term: u64,
        sent: u64,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if self.follow(leader, term, now, out) {
            let ack = Frame::LeaderAck {
                dir_term: self.dir_term,
                sent,
                version: self.version,
            };
            self.send(leader, ack, out);
        } else if term < self.dir_term && now >= self.quiet_until {
            // A deposed leader: tell it the term that replaced it.
            let ack = Frame::LeaderAck {
                dir_term: self.dir_term,
                sent: 0,
                version: self.version,
            };
            self.send(leader, ack, out);
        }
    }

    fn on_leader_ack(
        &mut self,
        from: u32,
        dir_term: u64,
        sent: u64,
        version: TableVersion,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        if dir_term > self.dir_term {
            if self.is_leader() {
                self.step_down(now, out);
            }
            self.dir_term = dir_term;
            self.voted = self.voted.max(dir_term);
            return;
        }
        if !self.is_leader() || dir_term != self.dir_term {
            return;
        }
        if sent != 0 {
            let until = Duration::from_nanos(sent) + self.lease();
            let l = self.leases.entry(from).or_default();
            *l = (*l).max(until);
        }
        let a = self.acked.entry(from).or_default();
        *a = (*a).max(version);
        self.peer_version(version);
        if version < self.version {
            // Behind: send the table again, at most once per heartbeat per version.
            let due = self.state_sent.get(&from).is_none_or(|(v, at)| {
                *v != self.version || now.saturating_sub(*at) >= self.cfg.heartbeat
            });
            if due {
                self.send_state_to(from, now, out);
            }
        }
        self.release(out);
    }

    fn on_vote(
        &mut self,
        from: u32,
        term: u64,
        version: TableVersion,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        self.peer_version(version);
        // A node that holds no table (it lost its state, or never had one) cannot vouch
        // that a candidate's table is the newest: counted in a majority, it would break
        // the intersection with the majority that holds the newest table (the simulation
        // found a restarted stale director and a wiped node elect one another and forget
        // a promotion). It votes only for a candidate as empty as itself (a new cluster),
        // or in two-node mode, where a candidate needs both votes before the two were seen
        // together and so sees every table there is.
        let fresh = self.version == TableVersion::default();
        let uninformed = fresh && version != TableVersion::default() && !self.two_node();
        let refuse = uninformed
            || now < self.quiet_until
            || term <= self.voted
            || term <= self.dir_term
            || self.is_leader()
            || self.promised_elsewhere(from, now).is_some()
            || !self.cfg.directors.contains(&from);
        if refuse {
            let reply = Frame::VoteReply {
                term: self.voted.max(self.dir_term),
                granted: false,
                state: Vec::new(),
            };
            self.send(from, reply, out);
            return;
        }
        self.voted = term;
        self.durable_dirty = true;
        self.candidacy = None;
        self.promise = Some(Promise {
            leader: from,
            term,
            until: now + self.lease(),
        });
        self.heard = now;
        if self.leader.is_some() {
            self.set_leader(None, out);
        }
        // The table goes with the vote when it is newer; in two-node mode whenever the
        // versions differ, as two tables may have diverged in a split (`merge_diverged`).
        let state = if self.version > version || (self.two_node() && self.version != version) {
            encode_table(self, now)
        } else {
            Vec::new()
        };
        self.send(
            from,
            Frame::VoteReply {
                term,
                granted: true,
                state,
            },
            out,
        );
    }

    fn on_vote_reply(
        &mut self,
        from: u32,
        term: u64,
        granted: bool,
        state: &[u8],
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let alone = self.needed() <= 1;
        let Some(c) = self.candidacy.as_mut() else {
            return;
        };
        if !granted {
            if term >= c.term || alone {
                // Someone knows this term (or a later one): run again above it. In
                // two-node mode one vote is enough, so the other node's refusal (it
                // leads, or follows a leader) must stop the candidacy.
                self.voted = self.voted.max(term);
                self.candidacy = None;
            } else {
                c.answered.insert(from);
                self.try_win(now, out);
            }
            return;
        }
        if term != c.term {
            return;
        }
        c.answered.insert(from);
        c.granted.insert(from);
        if !state.is_empty() {
            c.informed.insert(from);
        }
        if !state.is_empty()
            && let Ok(t) = decode_table(state, now)
        {
            if c.best.as_ref().is_none_or(|b| t.version > b.version) {
                if let Some(old) = c.best.replace(t) {
                    c.diverged.push(old);
                }
            } else {
                c.diverged.push(t);
            }
        }
        // The voter's promise runs from when it received the vote, after `started`.
        let until = c.started + self.cfg.election_timeout;
        self.leases.insert(from, until);
        self.try_win(now, out);
    }

    /// A candidate with enough votes leads once every reachable node answered (so it
    /// starts from the newest table among them, also when fewer votes would do, as in
    /// two-node mode), or half an election timeout after it asked.
    fn try_win(&mut self, now: Duration, out: &mut Vec<Output>) {
        let Some(c) = self.candidacy.as_ref() else {
            return;
        };
        // A candidate without a table is in the position of a voter without one (see
        // `on_vote`): once a voter shows the cluster has a table, neither its own vote
        // nor that of another node without one may complete the majority, which must
        // meet the one that holds the newest table in a node that still holds it (the
        // simulation found a wiped node elected with a stale director's vote, forgetting
        // a promotion the wiped node had helped commit: seed 17770), unless every other
        // node granted: the newest table left anywhere is then among theirs. Two-node
        // mode has its own rule.
        let me = self.cfg.node;
        let everyone = self
            .cfg
            .nodes
            .iter()
            .all(|n| *n == me || c.granted.contains(n));
        let amnesiac = self.version == TableVersion::default()
            && c.best.is_some()
            && !everyone
            && !self.two_node();
        let enough = if amnesiac {
            c.informed.len() >= self.needed()
        } else {
            c.granted.len() + 1 >= self.needed()
        };
        let all = self.reachable.iter().all(|n| c.answered.contains(n));
        // A node that never held a table (it just started) waits for every node it
        // reaches: one of them may hold the table it lacks.
        let waited = now.saturating_sub(c.started) >= self.cfg.election_timeout / 2
            && (self.version != TableVersion::default() || c.best.is_some());
        if enough && (all || waited) {
            self.become_leader(now, out);
        }
    }

    /// A request made on this node (by ckptd for one of its agents). The answer comes
    /// back as [`Output::Reply`], now or when the leader answers; the caller retries
    /// with the same `req` until it has one or its timeout passes.
    pub fn request(&mut self, req: ReqId, op: DirOp, now: Duration, out: &mut Vec<Output>) {
        match self.leader {
            Some(l) if l == self.cfg.node => self.handle(req, op, None, now, out),
            Some(l) => self.send(l, Frame::Request { req, op }, out),
            None => out.push(Output::Reply {
                req,
                result: DirReply::NotLeader { leader: None },
            }),
        }
    }

    /// A replica position reported on this node for promotion decisions: the leader's own
    /// replicas (other nodes send [`Frame::Positions`]). Ignored unless `node` holds a
    /// replica of `instance` in this node's table.
    pub fn report_position(&mut self, node: u32, instance: u64, term: u64, seq: u64) {
        let mut effects = Vec::new();
        if self.note_position(node, instance, term, seq, &mut effects) && self.is_leader() {
            // Published by the next tick.
            self.dirty = true;
        }
        self.unpublished.extend(effects);
    }

    /// Records a reported position; returns whether the table changed (a node that had
    /// to resync has: a complete position in the term it was marked in, or later). A
    /// report from a node that holds no replica in the table makes the leader tell it
    /// where the checkpoint is (or that it is gone).
    fn note_position(
        &mut self,
        node: u32,
        instance: u64,
        term: u64,
        seq: u64,
        effects: &mut Vec<Output>,
    ) -> bool {
        let leads = self.is_leader();
        let Some(e) = self.entries.get_mut(&instance) else {
            if leads {
                self.unassign(node, instance, effects);
            }
            return false;
        };
        // Whether the promotion waits for it, as it was before its report.
        let awaited = e.awaits(node);
        // A departed replica back without what it last held (its shm was wiped, it was
        // made anew, or it holds less than its floor): nobody can bring that back, so it
        // no longer holds promotion up (the checkpoint would stay without a primary).
        let lost = e
            .departed
            .get(&node)
            .is_some_and(|floor| seq == INCOMPLETE || (term, seq) < *floor);
        // Back in the set with what it held: its report ranks it from now on.
        let back = e.replicas.contains(&node)
            && e.departed
                .get(&node)
                .is_some_and(|floor| seq != INCOMPLETE && (term, seq) >= *floor);
        let mut changed = false;
        if leads && (lost || back) {
            e.departed.remove(&node);
            changed = true;
        }
        if !e.replicas.contains(&node) {
            if !leads {
                return false;
            }
            let director = self.cfg.directors.contains(&node);
            let placeable = !e.collocated() && !e.unlinked && !e.evicted.contains_key(&node);
            if placeable && (director || awaited) {
                // A director dropped while away, or a replica the promotion awaits
                // (`Entry::awaits`): placed again (what it holds may be all that is left;
                // `promotion_choice` decides).
                self.add_replica(instance, node);
                self.positions.insert((instance, node), (term, seq));
                let a = self.entries[&instance].assign();
                self.assign_everywhere(&a, effects);
                return true;
            }
            // Dropped while away (declared dead, evicted, cut off): it holds a replica
            // nobody updates. The placement without it replaces it.
            let a = e.assign();
            self.assign_to(node, a, effects);
            return changed;
        }
        self.positions.insert((instance, node), (term, seq));
        if leads
            && term > e.term
            && seq != INCOMPLETE
            && term >> 32 <= self.dir_term
            && !e.collocated()
            && !e.unlinked
        {
            // A replica holds a term this table never recorded: a decision of a leader
            // whose table did not reach this one (two-node mode, where one node decides
            // alone, then lost its state). Its primary, placement and marks are out of
            // date, and the node it names primary ignores an assignment older than its
            // replica (simulation seed 3034: the checkpoint stayed without a primary for
            // good). Decided again from the replicas' reports, in a new term: every one
            // must resync from the primary named then. (A term of a later directory
            // term means this leader is the one out of date: left to the next election.)
            if term >> 32 == self.dir_term {
                self.minted = self
                    .minted
                    .max(u32::try_from(term & u64::from(u32::MAX)).unwrap_or(u32::MAX));
            }
            let t = self.mint_term();
            let e = self.entries.get_mut(&instance).expect("present");
            e.term = t;
            e.primary = None;
            for n in e.replicas.clone() {
                e.evicted.insert(n, t);
            }
            let a = e.assign();
            self.assign_everywhere(&a, effects);
            return true;
        }
        let resynced = seq != INCOMPLETE && e.evicted.get(&node).is_some_and(|t| term >= *t);
        if leads && resynced {
            e.evicted.remove(&node);
            return true;
        }
        changed
    }

    /// Timers: heartbeats, elections, lease expiry, retention, pending promotions.
    /// Returns the next deadline.
    pub fn tick(&mut self, now: Duration, out: &mut Vec<Output>) -> Duration {
        if !self.unpublished.is_empty() || self.dirty {
            let effects = std::mem::take(&mut self.unpublished);
            if self.dirty {
                self.publish(effects, now, out);
            } else {
                self.emit(effects, out);
            }
            self.dirty = false;
        }
        if self.is_leader() {
            if self.lease_count(now) < self.needed() {
                self.step_down(now, out);
            } else {
                if now >= self.next_beat {
                    let nodes: Vec<u32> = self.reachable.iter().copied().collect();
                    for n in nodes {
                        self.send_heartbeat(n, now, out);
                    }
                    self.next_beat = now + self.cfg.heartbeat;
                }
                self.forget_old_replies(now);
                let mut effects = Vec::new();
                let expired = self.expire_retention(now, &mut effects);
                let promoted = self.promote_pending(now, &mut effects);
                let readmitted = self.readmit_evicted(now, &mut effects);
                if expired || promoted || readmitted {
                    self.publish(effects, now, out);
                }
            }
        } else {
            if let Some(p) = self.promise
                && p.until <= now
                && self.leader == Some(p.leader)
            {
                // The leader went silent: nobody leads that this node knows of.
                self.promise = None;
                self.set_leader(None, out);
            }
            self.try_win(now, out);
            if self
                .candidacy
                .as_ref()
                .is_some_and(|c| now.saturating_sub(c.started) >= self.cfg.election_timeout)
            {
                self.candidacy = None; // lost (or votes lost): the next one has a higher term
            }
            if self.may_run(now) {
                self.run_election(now, out);
            }
        }
        let next = if self.is_leader() {
            // The next heartbeat, or an earlier retention expiry.
            self.entries
                .values()
                .filter_map(Entry::retention_due)
                .fold(self.next_beat, Duration::min)
        } else {
            (now + self.cfg.heartbeat).min(self.heard + self.cfg.election_timeout)
        };
        next.max(now + Duration::from_millis(1))
    }

    /// Whether this director should run for leader now: nobody leads that it knows of,
    /// it made no promise that holds, and it has heard no leader for an election timeout;
    /// the lowest-id reachable director runs first, the others an election timeout per
    /// rank later (in case the lowest one cannot win).
    fn may_run(&self, now: Duration) -> bool {
        if !self.is_director()
            || self.candidacy.is_some()
            || now < self.quiet_until
            || self.promise.is_some_and(|p| p.until > now)
            || self.reachable.len() + 1 < self.needed()
        {
            return false;
        }
        let rank = self
            .cfg
            .directors
            .iter()
            .filter(|d| **d < self.cfg.node && self.reachable.contains(d))
            .count();
        let wait =
            self.cfg.election_timeout * (1 + 2 * u32::try_from(rank).unwrap_or(u32::MAX / 4));
        now.saturating_sub(self.heard) >= wait
    }

    fn run_election(&mut self, now: Duration, out: &mut Vec<Output>) {
        let term = self.voted.max(self.dir_term) + 1;
        self.voted = term;
        self.durable_dirty = true;
        self.heard = now;
        self.leases.clear();
        self.candidacy = Some(Candidacy {
            term,
            started: now,
            granted: BTreeSet::new(),
            informed: BTreeSet::new(),
            answered: BTreeSet::new(),
            best: None,
            diverged: Vec::new(),
        });
        let nodes: Vec<u32> = self.reachable.iter().copied().collect();
        if nodes.is_empty() {
            self.try_win(now, out);
            return;
        }
        for n in nodes {
            self.send(
                n,
                Frame::Vote {
                    term,
                    version: self.version,
                },
                out,
            );
        }
    }

    fn become_leader(&mut self, now: Duration, out: &mut Vec<Output>) {
        let Some(c) = self.candidacy.take() else {
            return;
        };
        let mut diverged = c.diverged;
        match c.best {
            Some(t) if t.version > self.version => {
                if self.two_node() {
                    diverged.push(self.table());
                }
                self.install(t);
            }
            Some(t) => diverged.push(t),
            None => {}
        }
        if self.two_node() {
            for t in diverged {
                self.merge_diverged(t);
            }
        }
        // Two-node mode: the other node's vote came with its table when it was newer, so
        // this node now holds a table at least as new as the other's.
        if self.two_node() && c.granted.len() + 1 == self.cfg.nodes.len() {
            self.seen_all = true;
        }
        self.dir_term = c.term;
        self.promise = None;
        self.minted = 0;
        self.acked.clear();
        self.state_sent.clear();
        self.held.clear();
        self.leader_since = now;
        self.version = TableVersion {
            term: c.term,
            leader: self.cfg.node,
            n: 0,
        };
        self.set_leader(Some(self.cfg.node), out);
        self.next_beat = now + self.cfg.heartbeat; // the heartbeats below are the first
        let nodes: Vec<u32> = self.reachable.iter().copied().collect();
        for n in &nodes {
            self.send_heartbeat(*n, now, out);
        }
        let mut effects = Vec::new();
        // Whoever is not reachable now is dead for the table (primaries are named once
        // the survivors' positions are in, see `promote_pending`).
        let dead: Vec<u32> = self
            .cfg
            .nodes
            .iter()
            .copied()
            .filter(|n| *n != self.cfg.node && !self.reachable.contains(n))
            .collect();
        // What the nodes it reaches reported may be from before this node last lost them
        // (a director cut off, then elected again): they report again within a second,
        // inside the wait for positions, and until then rank as unreported. Held, a
        // report from before a cut ranked a replica that had since taken writes below
        // one that had not (simulation seed 25676). The dead keep theirs: their floors
        // come from them.
        let me = self.cfg.node;
        let reachable = &self.reachable;
        self.positions
            .retain(|(_, n), _| *n == me || !reachable.contains(n));
        // A director it reaches (itself included) that a set lacks, dropped by another
        // leader while it was away, is placed again now, as one that comes back to a
        // leader is (`peer_up`): the placements below go to every node that has the
        // checkpoint open, and told one without it, its daemon drops its replica. Left
        // to its next report, a director that had its checkpoint open again dropped the
        // copy of a synchronized write which only a primary, wiped and back within the
        // restart grace, held besides (simulation seed 60873). Their placements are among
        // those re-announced below; made before the dead die, so that no placement sent
        // for a death names a term older than one minted here.
        let mut reached: Vec<u32> = self.reachable.iter().copied().collect();
        reached.push(me);
        let mut superseded = Vec::new();
        for n in reached {
            self.place_director(n, &mut superseded);
        }
        for n in dead {
            self.node_died(n, now, &mut effects);
        }
        // Re-announce every assignment in the new directory term.
        let all: Vec<CkptAssign> = self.entries.values().map(Entry::assign).collect();
        for a in all {
            self.assign_everywhere(&a, &mut effects);
        }
        self.publish(effects, now, out);
    }

    /// Two-node mode: the two sides of a partition both led in this term and met again;
    /// this side wins the tie (the lower id). Each side minted checkpoint terms the other
    /// does not know, and nodes ignore assignments older than what they hold, so this
    /// leader moves to a new directory term and re-announces every placement with a
    /// primary in a term minted there, above anything either side minted.
    fn reassert(&mut self, now: Duration, out: &mut Vec<Output>) {
        let term = self.voted.max(self.dir_term) + 1;
        self.voted = term;
        self.dir_term = term;
        self.minted = 0;
        self.durable_dirty = true;
        self.acked.clear();
        self.version = TableVersion {
            term,
            leader: self.cfg.node,
            n: 0,
        };
        let nodes: Vec<u32> = self.reachable.iter().copied().collect();
        for n in &nodes {
            self.send_heartbeat(*n, now, out);
        }
        let mut effects = Vec::new();
        let ids: Vec<u64> = self
            .entries
            .values()
            .filter(|e| e.primary.is_some())
            .map(|e| e.instance)
            .collect();
        for id in ids {
            let t = self.mint_term();
            let e = self.entries.get_mut(&id).expect("listed");
            e.term = t;
            let a = e.assign();
            self.assign_everywhere(&a, &mut effects);
        }
        self.publish(effects, now, out);
    }

    fn step_down(&mut self, now: Duration, out: &mut Vec<Output>) {
        // Decisions not on a quorum are dropped: their requests are retried with the
        // next leader, which has them if they reached any node of its quorum.
        self.held.clear();
        self.leases.clear();
        self.acked.clear();
        self.heard = now;
        self.set_leader(None, out);
    }

    /// This node's table, as a voter would send it.
    fn table(&self) -> Table {
        Table {
            version: self.version,
            entries: self.entries.clone(),
            next_instance: self.next_instance,
            minted: self.minted,
            replies: self.replies.clone(),
        }
    }

    /// Two-node mode, a new leader: takes from `other`, a table that may have diverged
    /// from this node's in a split (both nodes led, each in its own directory term), every
    /// checkpoint whose entry there has the higher replication term. Terms order the
    /// decisions about one checkpoint across both sides (each side mints above what it
    /// knew, and a replica refuses assignments older than what it holds), so the entry
    /// with the higher term is the later placement and the one its replicas follow; the
    /// other names a primary deposed since. A checkpoint only one side knows is left as
    /// this table has it: created by the other side during the split, or deleted by this
    /// one, which a table cannot tell apart.
    fn merge_diverged(&mut self, other: Table) {
        for (id, theirs) in other.entries {
            if let Some(mine) = self.entries.get_mut(&id)
                && theirs.term > mine.term
            {
                *mine = theirs;
                self.durable_dirty = true;
            }
        }
    }

    fn install(&mut self, t: Table) {
        self.durable_dirty = true;
        self.entries = t.entries;
        self.next_instance = t.next_instance;
        self.minted = t.minted;
        self.replies = t.replies;
        self.version = t.version;
    }

    /// Leader: a decision was made: a new table version. Its effects wait until a quorum
    /// holds that version; the table goes to every node now.
    fn publish(&mut self, effects: Vec<Output>, now: Duration, out: &mut Vec<Output>) {
        if !self.is_leader() {
            return;
        }
        self.version.n += 1;
        self.durable_dirty = true;
        let v = self.version;
        self.held.extend(effects.into_iter().map(|e| (v, e)));
        let nodes: Vec<u32> = self.reachable.iter().copied().collect();
        for n in nodes {
            self.send_state_to(n, now, out);
        }
        self.release(out);
    }

    /// Leader: effects that follow from the table as it is: released once the current
    /// version is on a quorum.
    fn emit(&mut self, effects: Vec<Output>, out: &mut Vec<Output>) {
        if !self.is_leader() {
            return;
        }
        let v = self.version;
        self.held.extend(effects.into_iter().map(|e| (v, e)));
        self.release(out);
    }

    /// Leader: releases the effects of every version a quorum acknowledged.
    fn release(&mut self, out: &mut Vec<Output>) {
        let mut versions: Vec<TableVersion> = self
            .acked
            .values()
            .copied()
            .filter(|v| v.term == self.dir_term && v.leader == self.cfg.node)
            .collect();
        versions.push(self.version);
        versions.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&committed) = versions.get(self.needed() - 1) else {
            return;
        };
        while self.held.front().is_some_and(|(v, _)| *v <= committed) {
            let (_, o) = self.held.pop_front().expect("front");
            out.push(o);
        }
    }

    fn set_leader(&mut self, leader: Option<u32>, out: &mut Vec<Output>) {
        if self.leader != leader {
            self.leader = leader;
            out.push(Output::Leader(leader));
        }
    }

    fn mint_term(&mut self) -> u64 {
        self.minted += 1;
        (self.dir_term << 32) | u64::from(self.minted)
    }

    fn node_died(&mut self, node: u32, now: Duration, out: &mut Vec<Output>) {
        // Its reports die with it: a node that comes back reports again.
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        for id in ids {
            let mut changed = false;
            let e = &self.entries[&id];
            // A set that shrinks under a live primary goes on in a new term, as one that
            // grows does (`add_replica`): what the smaller set acknowledges is then told
            // apart by its term from what the node that left held. In the same term, a
            // primary left alone confirmed synchronizes by itself, and once it was cut
            // off too, the replica that had left before it, holding less in that term,
            // met the floor the primary left and was promoted.
            let shrinks = e.replicas.contains(&node) && e.primary.is_some_and(|p| p != node);
            let old_term = e.term;
            let new_term = shrinks.then(|| self.mint_term());
            {
                let last = self.positions.get(&(id, node)).copied();
                let e = self.entries.get_mut(&id).expect("listed");
                if e.openers.remove(&node).is_some() {
                    changed = true;
                    if e.open_count() == 0 {
                        e.idle_since = Some(now);
                    }
                }
                if e.replicas.contains(&node) {
                    e.replicas.retain(|n| *n != node);
                    if let Some(t) = new_term {
                        e.term = t;
                    }
                    // A primary may have written in its term whatever its last report
                    // says (it may have been cut off since, confirming writes to replicas
                    // that all died, or to nobody when it was alone in the set): a
                    // replica that takes over must hold a position in that term at least.
                    let floor = (e.primary == Some(node) && e.term != 0).then_some((e.term, 0));
                    // Without a primary, a replica that never reported to this leader may
                    // hold anything up to the current term: the promotion waits for it as
                    // for a primary (it died with the only copy of an acknowledged write,
                    // the others all marked, in simulation seed 5122).
                    let floor = floor.or_else(|| {
                        (e.primary.is_none() && last.is_none() && !e.collocated() && e.term != 0)
                            .then_some((e.term, 0))
                    });
                    // A replica that leaves a live primary without a report to this leader
                    // (one that took over without the replicas' reports) holds, for all
                    // it knows, what that primary had acknowledged in the term then: if
                    // the primary dies as well before another replica in sync is left,
                    // the promotion must not go to one that holds less (simulation seed
                    // 22841: a new leader dropped a cut-off replica, the primary was
                    // wiped next, and a node added back with an old copy was promoted
                    // over the one that held a synchronized write).
                    let floor = floor.or_else(|| {
                        (shrinks && last.is_none() && !e.collocated() && old_term != 0)
                            .then_some((old_term, 0))
                    });
                    let reported = last.filter(|p| p.1 != INCOMPLETE);
                    // A replica marked to resync leaves nothing to wait for, unless the
                    // checkpoint has no primary: then what it reported may be the most
                    // there is (it may hold writes the others never got).
                    if (!e.evicted.contains_key(&node) || e.primary.is_none())
                        && let Some(p) = reported.max(floor)
                    {
                        // What it held may be needed if nobody better comes back.
                        e.departed.insert(node, p);
                    }
                    changed = true;
                }
                e.evicted.remove(&node);
                if e.primary == Some(node) {
                    e.primary = None;
                    if e.collocated() {
                        changed = true;
                    }
                    // Non-collocated: `promote_pending` names the next one.
                }
            }
            if changed {
                let e = &self.entries[&id];
                if e.unlinked && e.open_count() == 0 {
                    // Its last opener died: as its last close, this deletes it.
                    self.delete(id, out);
                } else {
                    let a = e.assign();
                    self.assign_everywhere(&a, out);
                }
            }
        }
        self.positions.retain(|(_, n), _| *n != node);
        self.promote_pending(now, out);
    }

    /// Leader: names a primary for every non-collocated checkpoint without one that has a
    /// replica to promote, once the positions of its replicas are in (or after
    /// [`POSITIONS_WAIT`]). Returns whether it named one.
    fn promote_pending(&mut self, now: Duration, out: &mut Vec<Output>) -> bool {
        if !self.is_leader() {
            return false;
        }
        let patient = now.saturating_sub(self.leader_since) < POSITIONS_WAIT;
        let ids: Vec<u64> = self
            .entries
            .values()
            .filter(|e| e.primary.is_none() && !e.collocated() && !e.replicas.is_empty())
            .map(|e| e.instance)
            .collect();
        self.orphaned.retain(|i, _| ids.contains(i));
        let mut any = false;
        for id in ids {
            let e = &self.entries[&id];
            // A choice among replicas in sync waits for their reports (a fresh leader
            // may not have them yet).
            let synced: Vec<u32> = e
                .replicas
                .iter()
                .copied()
                .filter(|n| !e.evicted.contains_key(n))
                .collect();
            // Without one in sync, what each replica holds decides: all of them.
            let ranked: &[u32] = if synced.is_empty() {
                &e.replicas
            } else {
                &synced
            };
            let missing = ranked
                .iter()
                .any(|n| !self.positions.contains_key(&(id, *n)));
            // Without a replica in sync, nothing says who holds what but the reports, and
            // a replica added back since holds what it held when it left, perhaps the
            // most there is: every report is waited for, for longer (a choice made
            // without the report of one whose packets were held lost a write only it
            // and a wiped node had acknowledged: simulation seed 5122).
            let since = *self.orphaned.entry(id).or_insert(now);
            let waited = now.saturating_sub(since.max(self.leader_since));
            let wait = if synced.is_empty() {
                waited < POSITIONS_WAIT * 4
            } else {
                patient
            };
            if missing && wait {
                continue;
            }
            let Some((best, from_nothing)) =
                self.promotion_choice(id, waited >= POSITIONS_WAIT * 4)
            else {
                continue;
            };
            let term = self.mint_term();
            let e = self.entries.get_mut(&id).expect("listed");
            e.primary = Some(best);
            e.term = term;
            if from_nothing {
                e.lost_in = Some(term);
            }
            // What a replica away from the set held stays a floor: the new primary holds
            // it, but if it dies before any other replica has it, that replica may be
            // the only one left that does (simulation seed 16077: the primary promoted
            // over it was wiped before it synced anyone, and a replica holding less was
            // promoted next, losing a synchronized write). It no longer holds anything
            // up while a primary is named, nor once a replica in sync is (the choice
            // then goes by them), and ends when that node is back (`note_position`).
            let set = e.replicas.clone();
            e.departed.retain(|n, _| !set.contains(n));
            e.evicted.remove(&best);
            // The others resync from it in its term.
            for n in e.replicas.clone() {
                if n != best && e.evicted.contains_key(&n) {
                    e.evicted.insert(n, term);
                }
            }
            let a = e.assign();
            self.assign_everywhere(&a, out);
            any = true;
        }
        any
    }

    /// The replica of `instance` to promote, if one may be.
    ///
    /// Replicas in sync (not marked to resync) first: the highest complete reported
    /// position, then replicas without a report, then replicas in the middle of a
    /// snapshot; the lowest node id among equals. When none is in sync (every one that
    /// was died, and the set holds nodes added back since), a replica that reports a
    /// complete position at least as high as the last one every departed replica
    /// reported: nothing another one acknowledged is lost by naming it.
    ///
    /// When nothing is left to choose from — every replica of the set has reported, every
    /// report is of a replica made empty or left in the middle of a snapshot, no replica
    /// that left the set is waited for, and the wait for reports is over (`waited`) —
    /// every copy of the checkpoint's state is gone, and waiting longer only keeps it
    /// without a primary for good (simulation seed 29012: the only copy of an
    /// ALL_REPLICAS checkpoint was wiped). The lowest node of the set is then named to
    /// start it over from no sections (the `bool`, [`CkptAssign::from_nothing`]).
    fn promotion_choice(&self, instance: u64, waited: bool) -> Option<(u32, bool)> {
        let e = &self.entries[&instance];
        let rank = |n: u32| {
            let rank = match self.positions.get(&(instance, n)) {
                Some(&(term, seq)) if seq != INCOMPLETE => (2, term, seq),
                None => (1, 0, 0),
                Some(_) => (0, 0, 0),
            };
            (rank, Reverse(n))
        };
        // In sync by the table, but in the middle of a snapshot (or made anew): it holds
        // nothing to count on.
        let midway = |n: u32| matches!(self.positions.get(&(instance, n)), Some(&(_, INCOMPLETE)));
        let synced = e
            .replicas
            .iter()
            .copied()
            .filter(|n| !e.evicted.contains_key(n) && !midway(*n))
            .max_by_key(|n| rank(*n));
        if let Some(n) = synced {
            return Some((n, false));
        }
        let floor = e.departed.values().copied().max().unwrap_or((0, 0));
        let holding = e
            .replicas
            .iter()
            .copied()
            .filter(|n| {
                self.positions
                    .get(&(instance, *n))
                    .is_some_and(|p| p.1 != INCOMPLETE && *p >= floor)
            })
            .max_by_key(|n| rank(*n));
        if let Some(n) = holding {
            return Some((n, false));
        }
        let nothing = waited && e.departed.is_empty() && e.replicas.iter().all(|n| midway(*n));
        e.replicas
            .iter()
            .copied()
            .min()
            .filter(|_| nothing)
            .map(|n| (n, true))
    }

    /// Leader: drops the answers kept for requester incarnations that have not asked for
    /// [`REPLY_MEMORY`] (those of daemons since restarted, mostly); the next table sent
    /// and saved is smaller by them.
    fn forget_old_replies(&mut self, now: Duration) {
        let used = &mut self.replies_used;
        used.retain(|k, _| self.replies.contains_key(k));
        let before = self.replies.len();
        self.replies.retain(|k, _| {
            let last = *used.entry(*k).or_insert(now);
            now.saturating_sub(last) < REPLY_MEMORY
        });
        if self.replies.len() != before {
            used.retain(|k, _| self.replies.contains_key(k));
            self.dirty = true;
        }
    }

    /// Leader: answers a request (from `from`, or made on this node) once the decision
    /// is on a quorum.
    fn handle(
        &mut self,
        req: ReqId,
        op: DirOp,
        from: Option<u32>,
        now: Duration,
        out: &mut Vec<Output>,
    ) {
        let answer = |result: DirReply| match from {
            Some(n) => Output::Send(Transmit {
                node: n,
                frame: Frame::Reply { req, result },
            }),
            None => Output::Reply { req, result },
        };
        let key = (req.node, req.incarnation);
        self.replies_used.insert(key, now);
        if let Some((_, r)) = self
            .replies
            .get(&key)
            .and_then(|done| done.iter().find(|(c, _)| *c == req.counter))
        {
            // Applied already: answered once what holds it now is on a quorum.
            let o = answer(r.clone());
            self.held.push_back((self.version, o));
            self.release(out);
            return;
        }
        let mut effects = Vec::new();
        let result = self.apply(req.node, op, now, &mut effects);
        let done = self.replies.entry(key).or_default();
        done.push_back((req.counter, result.clone()));
        while done.len() > REMEMBERED_REPLIES {
            done.pop_front();
        }
        effects.push(answer(result));
        self.publish(effects, now, out);
    }

    /// Applies `op`, which node `requester` asked for.
    fn apply(
        &mut self,
        requester: u32,
        op: DirOp,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> DirReply {
        match op {
            DirOp::Open {
                name,
                attrs,
                flags: open_flags,
                node,
            } => self.open(name, attrs, open_flags, node, out),
            DirOp::Close { instance, node } => {
                let Some(e) = self.entries.get_mut(&instance) else {
                    return DirReply::Failed {
                        code: code::NOT_EXIST,
                    };
                };
                match e.openers.get_mut(&node) {
                    Some(c) if *c > 1 => *c -= 1,
                    Some(_) => {
                        e.openers.remove(&node);
                    }
                    None => {
                        return DirReply::Failed {
                            code: code::NOT_EXIST,
                        };
                    }
                }
                self.after_close(instance, now, out);
                DirReply::Done
            }
            DirOp::Opens {
                instance,
                node,
                count,
            } => {
                let Some(e) = self.entries.get_mut(&instance) else {
                    return DirReply::Failed {
                        code: code::NOT_EXIST,
                    };
                };
                let held = e.openers.get(&node).copied().unwrap_or(0);
                if count == 0 {
                    e.openers.remove(&node);
                } else {
                    e.openers.insert(node, count);
                }
                if count > held {
                    // The checkpoint is in use again. A collocated one has a replica on
                    // every opener's node; the directors of another one come back as the
                    // directory places them (on its readmit schedule), not because their
                    // opens were counted again (placing them here too, with a new term,
                    // steered the simulation into a stuck promotion: seed 1682).
                    e.idle_since = None;
                    let grows = e.awaits(node) || (e.collocated() && !e.replicas.contains(&node));
                    if grows {
                        self.add_replica(instance, node);
                    }
                    let a = self.entries[&instance].assign();
                    if grows {
                        self.assign_everywhere(&a, out);
                    } else {
                        // Only the node may lack the placement (its daemon restarted).
                        self.assign_to(node, a, out);
                    }
                } else if count < held {
                    self.after_close(instance, now, out);
                }
                DirReply::Done
            }
            DirOp::Unlink { name } => {
                let Some(id) = self.by_name(&name) else {
                    return DirReply::Failed {
                        code: code::NOT_EXIST,
                    };
                };
                let e = self.entries.get_mut(&id).expect("found");
                e.unlinked = true;
                if e.open_count() == 0 {
                    self.delete(id, out);
                } else {
                    let a = e.assign();
                    self.assign_everywhere(&a, out);
                }
                DirReply::Done
            }
            DirOp::SetRetention {
                instance,
                retention,
            } => {
                let Some(e) = self.entries.get_mut(&instance) else {
                    return DirReply::Failed {
                        code: code::NOT_EXIST,
                    };
                };
                if e.unlinked {
                    return DirReply::Failed {
                        code: code::BAD_OPERATION,
                    };
                }
                e.retention = retention;
                DirReply::Done
            }
            DirOp::SetActive { instance, node } => {
                let Some(e) = self.entries.get(&instance) else {
                    return DirReply::Failed {
                        code: code::NOT_EXIST,
                    };
                };
                if !e.collocated() {
                    return DirReply::Failed {
                        code: code::BAD_OPERATION,
                    };
                }
                if !e.replicas.contains(&node) {
                    return DirReply::Failed {
                        code: code::NOT_EXIST,
                    };
                }
                if e.evicted.contains_key(&node) {
                    // Added back but not resynced yet: it may lack acknowledged writes.
                    return DirReply::Failed {
                        code: code::TRY_AGAIN,
                    };
                }
                if e.primary != Some(node) {
                    let term = self.mint_term();
                    let e = self.entries.get_mut(&instance).expect("found");
                    e.primary = Some(node);
                    e.term = term;
                }
                let a = self.entries[&instance].assign();
                self.assign_everywhere(&a, out);
                DirReply::Done
            }
            DirOp::Evict {
                instance,
                node,
                term,
            } => self.evict(requester, instance, node, term, now, out),
            DirOp::Resign {
                instance,
                node,
                term,
            } => self.resign(requester, instance, node, term, out),
        }
    }

    /// [`DirOp::Evict`]: `requester`, primary of `instance` in `term`, drops `node`.
    fn evict(
        &mut self,
        requester: u32,
        instance: u64,
        node: u32,
        term: u64,
        now: Duration,
        out: &mut Vec<Output>,
    ) -> DirReply {
        let Some(e) = self.entries.get(&instance) else {
            return DirReply::Failed {
                code: code::NOT_EXIST,
            };
        };
        if !e.replicas.contains(&node) {
            // Evicted already (a second request, or one from the term before): done, but
            // only for the primary, the one node whose request it could be a retry of (a
            // deposed primary must not read "done" as leave to commit without the node).
            // Never in the set (or dropped otherwise): the request makes no sense.
            return if e.evicted.contains_key(&node) && e.primary == Some(requester) {
                DirReply::Done
            } else {
                DirReply::Failed {
                    code: code::BAD_OPERATION,
                }
            };
        }
        if term != e.term || e.primary != Some(requester) || e.primary == Some(node) {
            return DirReply::Failed {
                code: code::BAD_OPERATION,
            };
        }
        let term = self.mint_term();
        let e = self.entries.get_mut(&instance).expect("found");
        e.term = term;
        e.replicas.retain(|n| *n != node);
        e.evicted.insert(node, term);
        let times = e.readmit.get(&node).map_or(0, |r| r.0).saturating_add(1);
        let delay = READMIT_AFTER * (1u32 << (times - 1).min(5));
        e.readmit.insert(node, (times, now + delay));
        let a = e.assign();
        self.positions.remove(&(instance, node));
        self.assign_everywhere(&a, out);
        // The node learns it holds no replica and where the primary is.
        self.assign_to(node, a, out);
        DirReply::Done
    }

    /// [`DirOp::Resign`]: `node`, named primary of `instance` in `term`, lost the
    /// checkpoint's state. Another replica is promoted as if the primary had died; the
    /// node stays in the set, unpromotable until it has resynced.
    fn resign(
        &mut self,
        requester: u32,
        instance: u64,
        node: u32,
        term: u64,
        out: &mut Vec<Output>,
    ) -> DirReply {
        let Some(e) = self.entries.get(&instance) else {
            return DirReply::Failed {
                code: code::NOT_EXIST,
            };
        };
        if requester != node {
            return DirReply::Failed {
                code: code::BAD_OPERATION,
            };
        }
        if e.primary != Some(node) {
            // A replica made anew: it holds nothing until it resyncs from the primary.
            if e.replicas.contains(&node) {
                let t = e.term;
                let e = self.entries.get_mut(&instance).expect("found");
                e.evicted.insert(node, t);
                self.positions.remove(&(instance, node));
            }
            return DirReply::Done;
        }
        if e.term != term {
            return DirReply::Failed {
                code: code::BAD_OPERATION,
            };
        }
        let new_term = self.mint_term();
        let e = self.entries.get_mut(&instance).expect("found");
        e.evicted.insert(node, new_term);
        e.primary = None;
        e.term = new_term;
        // Its reported position stays: what it holds may still be the most there is.
        // Non-collocated: `promote_pending` names another primary on the next tick.
        let a = self.entries[&instance].assign();
        self.assign_everywhere(&a, out);
        DirReply::Done
    }

    fn by_name(&self, name: &str) -> Option<u64> {
        self.entries
            .values()
            .find(|e| !e.unlinked && e.name == name)
            .map(|e| e.instance)
    }

    fn open(
        &mut self,
        name: String,
        attrs: Option<Attrs>,
        open_flags: u32,
        node: u32,
        out: &mut Vec<Output>,
    ) -> DirReply {
        let id = match self.by_name(&name) {
            Some(id) => {
                if let Some(a) = &attrs
                    && open_flags & flags::OPEN_CREATE != 0
                    && !same_attrs(a, &self.entries[&id].attrs)
                {
                    return DirReply::Failed { code: code::EXIST };
                }
                id
            }
            None => {
                let Some(a) = attrs.filter(|_| open_flags & flags::OPEN_CREATE != 0) else {
                    return DirReply::Failed {
                        code: code::NOT_EXIST,
                    };
                };
                if self.entries.len() >= self.cfg.max_checkpoints {
                    return DirReply::Failed {
                        code: code::NO_RESOURCES,
                    };
                }
                let instance = (self.dir_term << 40) | self.next_instance;
                self.next_instance += 1;
                let collocated = a.creation_flags & flags::COLLOCATED != 0
                    && a.creation_flags & flags::WR_ALL_REPLICAS == 0;
                let (replicas, primary) = if collocated {
                    (vec![node], None)
                } else if self.cfg.directors.contains(&node) {
                    let mut r: Vec<u32> = self
                        .cfg
                        .directors
                        .iter()
                        .copied()
                        .filter(|d| *d == node || *d == self.cfg.node || self.reachable.contains(d))
                        .collect();
                    r.sort_unstable();
                    (r, Some(node))
                } else {
                    let mut r = vec![node];
                    r.extend(
                        self.cfg
                            .directors
                            .iter()
                            .copied()
                            .filter(|d| *d == self.cfg.node || self.reachable.contains(d)),
                    );
                    r.sort_unstable();
                    r.dedup();
                    (r, Some(node))
                };
                let term = if primary.is_some() {
                    self.mint_term()
                } else {
                    0
                };
                let retention = a.retention;
                self.entries.insert(
                    instance,
                    Entry {
                        instance,
                        name,
                        attrs: a,
                        replicas,
                        primary,
                        term,
                        unlinked: false,
                        openers: BTreeMap::new(),
                        retention,
                        idle_since: None,
                        evicted: BTreeMap::new(),
                        departed: BTreeMap::new(),
                        readmit: BTreeMap::new(),
                        lost_in: None,
                    },
                );
                instance
            }
        };
        let director = self.cfg.directors.contains(&node);
        let e = self.entries.get_mut(&id).expect("present");
        *e.openers.entry(node).or_default() += 1;
        e.idle_since = None;
        // Placement: collocated → every opener's node; otherwise the directors (and an
        // evicted node) come back by opening. A node added to a checkpoint that has a
        // primary must resync from it before it can be promoted; without a primary,
        // `promotion_choice` decides whether what it holds is enough.
        let placed = e.collocated() || director || e.evicted.contains_key(&node) || e.awaits(node);
        if placed {
            self.add_replica(id, node);
        }
        let e = &self.entries[&id];
        let a = e.assign();
        self.assign_everywhere(&a, out);
        DirReply::Opened { ckpt: a }
    }

    /// Adds `node`'s replica to the set of `instance`. It counts as in sync only when the
    /// checkpoint has no state anywhere else (no primary, no replica that died in sync,
    /// no other replica in the set of a non-collocated one): otherwise it must resync from
    /// the primary, or (without one) hold at least what the departed ones held, before it
    /// can be promoted.
    fn add_replica(&mut self, instance: u64, node: u32) {
        let e = &self.entries[&instance];
        if e.replicas.contains(&node) {
            return;
        }
        // Without a primary, the others (in sync or marked) hold the checkpoint's state,
        // whatever the new one holds: ranked with them as if in sync, a director placed
        // again with an old copy was promoted over the set's former primary, marked
        // after it resigned, holding an acknowledged write nobody else had (simulation
        // seed 1297). A collocated set's replicas are the openers' and wait for
        // ActiveReplicaSet, which refuses a marked one.
        let joins = !e.collocated() && !e.replicas.is_empty();
        // With a primary (or others to rank it against), the set changes in a new term:
        // a position in it can only come from a primary, so it proves the replica caught
        // up (a position in the old term proves nothing: the node may have left it before
        // its end).
        let term = if e.primary.is_some() || joins {
            self.mint_term()
        } else {
            e.term
        };
        let e = self.entries.get_mut(&instance).expect("present");
        e.term = term;
        e.replicas.push(node);
        e.replicas.sort_unstable();
        if e.primary.is_some() || joins || !e.departed.is_empty() || e.evicted.contains_key(&node) {
            e.evicted.insert(node, term);
        }
    }

    /// Leader: places again the evicted directors that are connected and whose backoff
    /// ran out ([`READMIT_AFTER`]); each comes back marked to resync. Returns whether the
    /// table changed.
    fn readmit_evicted(&mut self, now: Duration, out: &mut Vec<Output>) -> bool {
        let mut changed = false;
        // A node that resynced (or was dropped) is off the schedule, its backoff reset.
        for e in self.entries.values_mut() {
            let before = e.readmit.len();
            let evicted = &e.evicted;
            e.readmit.retain(|n, _| evicted.contains_key(n));
            changed |= e.readmit.len() != before;
        }
        let due: Vec<(u64, u32)> = self
            .entries
            .values()
            .filter(|e| !e.collocated() && !e.unlinked)
            .flat_map(|e| {
                e.evicted
                    .keys()
                    .filter(|n| !e.replicas.contains(n))
                    .map(move |n| (e.instance, *n))
            })
            .filter(|(_, n)| {
                self.cfg.directors.contains(n)
                    && (*n == self.cfg.node || self.reachable.contains(n))
            })
            .collect();
        for (instance, node) in due {
            let e = self.entries.get_mut(&instance).expect("listed");
            let (_, not_before) = *e.readmit.entry(node).or_insert_with(|| {
                // Evicted by an older version of the table, or dropped another way.
                changed = true;
                (1, now + READMIT_AFTER)
            });
            if now < not_before {
                continue;
            }
            self.add_replica(instance, node);
            let a = self.entries[&instance].assign();
            self.assign_everywhere(&a, out);
            changed = true;
        }
        changed
    }

    /// Placement of the non-collocated checkpoints that lack a director's replica
    /// (it died and came back, or was unreachable when they were created). Evicted
    /// nodes come back by opening, or after a pause ([`Self::readmit_evicted`]). Returns
    /// whether one changed.
    fn place_director(&mut self, node: u32, out: &mut Vec<Output>) -> bool {
        if !self.cfg.directors.contains(&node) {
            return false;
        }
        let ids: Vec<u64> = self
            .entries
            .values()
            .filter(|e| {
                !e.collocated()
                    && !e.unlinked
                    && !e.replicas.contains(&node)
                    && !e.evicted.contains_key(&node)
            })
            .map(|e| e.instance)
            .collect();
        for &id in &ids {
            self.add_replica(id, node);
            let a = self.entries[&id].assign();
            self.assign_everywhere(&a, out);
        }
        !ids.is_empty()
    }

    fn delete(&mut self, instance: u64, out: &mut Vec<Output>) {
        if let Some(e) = self.entries.remove(&instance) {
            for n in e.replicas {
                self.unassign(n, instance, out);
            }
            self.positions.retain(|(i, _), _| *i != instance);
        }
    }

    /// Tells `node` to drop its replica of `instance`.
    fn unassign(&self, node: u32, instance: u64, out: &mut Vec<Output>) {
        if node == self.cfg.node {
            out.push(Output::Unassign(instance));
        } else {
            self.send(
                node,
                Frame::Unassign {
                    dir_term: self.dir_term,
                    instance,
                },
                out,
            );
        }
    }

    /// Deletes the checkpoints whose retention expired; returns whether there was one.
    fn expire_retention(&mut self, now: Duration, out: &mut Vec<Output>) -> bool {
        let due: Vec<u64> = self
            .entries
            .values()
            .filter(|e| e.retention_due().is_some_and(|due| now >= due))
            .map(|e| e.instance)
            .collect();
        for &id in &due {
            self.delete(id, out);
        }
        !due.is_empty()
    }

    /// Tells `node` the placement `a` (which may not include it).
    fn assign_to(&self, node: u32, a: CkptAssign, out: &mut Vec<Output>) {
        if node == self.cfg.node {
            out.push(Output::Assign(a));
        } else {
            self.send(
                node,
                Frame::Assign {
                    dir_term: self.dir_term,
                    ckpt: a,
                },
                out,
            );
        }
    }

    /// After opens of `instance` were closed: with none left, retention starts, and an
    /// unlinked checkpoint goes now.
    fn after_close(&mut self, instance: u64, now: Duration, out: &mut Vec<Output>) {
        let Some(e) = self.entries.get_mut(&instance) else {
            return;
        };
        if e.open_count() == 0 {
            e.idle_since = Some(now);
            if e.unlinked {
                self.delete(instance, out);
            }
        }
    }

    /// Tells every node the placement concerns: those holding a replica, and those with
    /// the checkpoint open without one, whose daemons send its operations to the primary
    /// (without this, a promotion would leave them asking the dead one).
    fn assign_everywhere(&mut self, a: &CkptAssign, out: &mut Vec<Output>) {
        let mut nodes = a.replicas.clone();
        if let Some(e) = self.entries.get(&a.instance) {
            nodes.extend(e.openers.keys().filter(|n| !a.replicas.contains(n)));
        }
        for n in nodes {
            if n == self.cfg.node {
                out.push(Output::Assign(a.clone()));
            } else {
                self.send(
                    n,
                    Frame::Assign {
                        dir_term: self.dir_term,
                        ckpt: a.clone(),
                    },
                    out,
                );
            }
        }
    }

    fn send_heartbeat(&self, node: u32, now: Duration, out: &mut Vec<Output>) {
        let mut members: Vec<u32> = self.reachable.iter().copied().collect();
        members.push(self.cfg.node);
        members.sort_unstable();
        self.send(
            node,
            Frame::Leader {
                dir_term: self.dir_term,
                leader: self.cfg.node,
                members,
                sent: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX).max(1),
            },
            out,
        );
    }

    fn send_state_to(&mut self, node: u32, now: Duration, out: &mut Vec<Output>) {
        self.state_sent.insert(node, (self.version, now));
        let state = encode_table(self, now);
        self.send(
            node,
            Frame::DirState {
                term: self.dir_term,
                leader: self.cfg.node,
                state,
            },
            out,
        );
    }

    fn send(&self, node: u32, frame: Frame, out: &mut Vec<Output>) {
        out.push(Output::Send(Transmit { node, frame }));
    }
}

fn same_attrs(a: &Attrs, b: &Attrs) -> bool {
    a.creation_flags == b.creation_flags
        && a.checkpoint_size == b.checkpoint_size
        && a.max_sections == b.max_sections
        && a.max_section_size == b.max_section_size
        && a.max_section_id_size == b.max_section_id_size
}

#[derive(Debug)]
struct Table {
    version: TableVersion,
    entries: BTreeMap<u64, Entry>,
    next_instance: u64,
    minted: u32,
    replies: BTreeMap<(u32, u64), VecDeque<(u64, DirReply)>>,
}

/// The table as bytes for a standby director. Retention clocks travel as "idle for" (at
/// `now`, the leader's clock) so the standby's own monotonic clock can continue them.
fn encode_table(d: &Directory, now: Duration) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut e = Enc::new(&mut buf);
    d.version.encode_to(&mut e);
    e.put_u64(d.next_instance);
    e.put_u32(d.minted);
    e.put_u32(d.entries.len() as u32);
    for x in d.entries.values() {
        let mut tmp = Vec::new();
        Frame::Assign {
            dir_term: 0,
            ckpt: x.assign(),
        }
        .encode(&mut tmp);
        e.put_bytes(&tmp[4..]);
        e.put_u32(x.openers.len() as u32);
        for (n, c) in &x.openers {
            e.put_u32(*n);
            e.put_u32(*c);
        }
        e.put_i64(x.retention);
        e.put_u8(u8::from(x.idle_since.is_some()));
        let idle_for = x
            .idle_since
            .map_or(Duration::ZERO, |t| now.saturating_sub(t));
        e.put_u64(u64::try_from(idle_for.as_nanos()).unwrap_or(u64::MAX));
        e.put_u32(x.evicted.len() as u32);
        for (n, t) in &x.evicted {
            e.put_u32(*n);
            e.put_u64(*t);
        }
        e.put_u32(x.departed.len() as u32);
        for (n, (t, s)) in &x.departed {
            e.put_u32(*n);
            e.put_u64(*t);
            e.put_u64(*s);
        }
        e.put_u32(x.readmit.len() as u32);
        for (n, (times, not_before)) in &x.readmit {
            e.put_u32(*n);
            e.put_u32(*times);
            let wait = not_before.saturating_sub(now);
            e.put_u64(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    e.put_u32(d.replies.len() as u32);
    for ((node, inc), list) in &d.replies {
        e.put_u32(*node);
        e.put_u64(*inc);
        e.put_u32(list.len() as u32);
        for (c, r) in list {
            e.put_u64(*c);
            let mut tmp = Vec::new();
            Frame::Reply {
                req: ReqId {
                    node: 0,
                    incarnation: 0,
                    counter: 0,
                },
                result: r.clone(),
            }
            .encode(&mut tmp);
            e.put_bytes(&tmp[4..]);
        }
    }
    buf
}

fn decode_table(bytes: &[u8], now: Duration) -> Result<Table, WireError> {
    let mut d = Dec::new(bytes);
    let version = TableVersion::decode_from(&mut d)?;
    let next_instance = d.u64()?;
    let minted = d.u32()?;
    let n = d.u32()?;
    let mut entries = BTreeMap::new();
    for _ in 0..n {
        let Frame::Assign { ckpt, .. } = Frame::decode(d.bytes()?)? else {
            return Err(WireError::UnknownKind(0));
        };
        let mut openers = BTreeMap::new();
        for _ in 0..d.u32()? {
            let node = d.u32()?;
            openers.insert(node, d.u32()?);
        }
        let retention = d.i64()?;
        let idle = d.u8()? != 0;
        let idle_for = Duration::from_nanos(d.u64()?);
        let mut evicted = BTreeMap::new();
        for _ in 0..d.u32()? {
            let node = d.u32()?;
            evicted.insert(node, d.u64()?);
        }
        let mut departed = BTreeMap::new();
        for _ in 0..d.u32()? {
            let node = d.u32()?;
            departed.insert(node, (d.u64()?, d.u64()?));
        }
        let mut readmit = BTreeMap::new();
        for _ in 0..d.u32()? {
            let node = d.u32()?;
            let times = d.u32()?;
            // What was left of the wait when the table was sent: never early.
            let not_before = now.saturating_add(Duration::from_nanos(d.u64()?));
            readmit.insert(node, (times, not_before));
        }
        entries.insert(
            ckpt.instance,
            Entry {
                instance: ckpt.instance,
                name: ckpt.name,
                attrs: ckpt.attrs,
                replicas: ckpt.replicas,
                primary: ckpt.primary,
                term: ckpt.term,
                unlinked: ckpt.unlinked,
                openers,
                retention,
                // Idle since `idle_for` before it received the table: never early, late by
                // the frame's delay (or more if its clock started after that instant).
                idle_since: idle.then(|| now.saturating_sub(idle_for)),
                evicted,
                departed,
                readmit,
                lost_in: ckpt.from_nothing.then_some(ckpt.term),
            },
        );
    }
    let mut replies = BTreeMap::new();
    for _ in 0..d.u32()? {
        let node = d.u32()?;
        let inc = d.u64()?;
        let mut list = VecDeque::new();
        for _ in 0..d.u32()? {
            let c = d.u64()?;
            let Frame::Reply { result, .. } = Frame::decode(d.bytes()?)? else {
                return Err(WireError::UnknownKind(0));
            };
            list.push_back((c, result));
        }
        replies.insert((node, inc), list);
    }
    d.finish()?;
    Ok(Table {
        version,
        entries,
        next_instance,
        minted,
        replies,
    })
}
