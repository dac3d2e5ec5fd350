//! The directory (the CPD role of the classic implementations), sans IO.
//!
//! Every node runs a [`Directory`]; on director nodes (`director = true` in the cluster
//! file) it can lead. The leader owns the cluster's checkpoint table: names, instances,
//! replica sets, the primary of each checkpoint and its replication term, cluster-wide
//! opens and retention. It answers `Request` frames, tells replica nodes what they hold
//! (`Assign`/`Unassign`), sends its table to the other directors after each change
//! (`DirState`) and a heartbeat (`Leader`) to every node it reaches.
//!
//! - **Quorum**: a director leads only while it reaches a majority of the configured
//!   nodes (itself included). In two-node mode one node is enough, once both have been
//!   seen together since start (corosync's `two_node` + `wait_for_all`); a partition of a
//!   two-node cluster then has two leaders, which is why that mode needs fencing in
//!   production (documented, as for corosync).
//! - **Election**: when no leader is heard for `election_timeout`, the lowest-id director
//!   that has quorum takes over with a term one above the highest it has seen.
//!   Leadership is **sticky**: a director that returns follows the leader it hears and
//!   never claims while one is alive. Of two claims the higher term wins (then the lower
//!   id).
//! - **Terms**: a checkpoint's replication term is `dir_term << 32 | n`, so a term minted
//!   by a later leader is always higher than any minted before it.
//! - **Requests** carry a [`ReqId`]; the leader remembers recent answers per requesting
//!   node, so a request retried after a reconnect or a leader change is applied once.
//! - **A node's death** (no connection for the transport's idle timeout) closes its opens
//!   and removes it from every replica set; a non-collocated checkpoint whose primary
//!   died gets a new primary (the surviving replica that reported the highest position)
//!   in a new term. A collocated checkpoint waits for the application's ActiveReplicaSet.
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
use crate::wire::{Attrs, CkptAssign, Dec, DirOp, DirReply, Enc, Frame, ReqId, WireError};

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
        }
    }

    fn collocated(&self) -> bool {
        self.attrs.creation_flags & flags::COLLOCATED != 0
            && self.attrs.creation_flags & flags::WR_ALL_REPLICAS == 0
    }

    fn open_count(&self) -> u32 {
        self.openers.values().sum()
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
    /// This node holds (or now holds differently) a replica of a checkpoint.
    Assign(CkptAssign),
    /// This node no longer holds a replica of the instance.
    Unassign(u64),
    /// The leader changed (`None`: no leader with quorum is known).
    Leader(Option<u32>),
}

const REMEMBERED_REPLIES: usize = 1024;

/// The directory of one node.
#[derive(Debug)]
pub struct Directory {
    cfg: DirConfig,
    reachable: BTreeSet<u32>,
    seen_all: bool,
    leader: Option<u32>,
    dir_term: u64,
    heard: Duration,
    next_beat: Duration,
    /// Term counter within `dir_term` for checkpoint terms.
    minted: u32,
    entries: BTreeMap<u64, Entry>,
    next_instance: u64,
    replies: BTreeMap<(u32, u64), VecDeque<(u64, DirReply)>>,
    /// Replication positions reported by nodes: (instance, node) → (term, seq).
    positions: BTreeMap<(u64, u32), (u64, u64)>,
    /// The table changed outside a call that can send it to the other directors
    /// ([`Directory::report_position`]); the next tick does.
    state_dirty: bool,
}

impl Directory {
    /// A directory that knows nothing yet.
    pub fn new(cfg: DirConfig, now: Duration) -> Self {
        Self {
            reachable: BTreeSet::new(),
            seen_all: cfg.nodes.len() <= 1,
            leader: None,
            dir_term: 0,
            heard: now,
            next_beat: now,
            minted: 0,
            entries: BTreeMap::new(),
            next_instance: 1,
            replies: BTreeMap::new(),
            positions: BTreeMap::new(),
            state_dirty: false,
            cfg,
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

    /// The table (complete on the leader and, a heartbeat behind, on standby directors).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The replication position `(term, seq)` this node last heard `node` report for
    /// `instance` (the leader hears them all).
    pub fn position(&self, instance: u64, node: u32) -> Option<(u64, u64)> {
        self.positions.get(&(instance, node)).copied()
    }

    /// Whether this node reaches a quorum of the configured nodes.
    pub fn has_quorum(&self) -> bool {
        let members = self.reachable.len() + 1;
        if self.cfg.two_node && self.cfg.nodes.len() == 2 {
            return self.seen_all || members >= 2;
        }
        members > self.cfg.nodes.len() / 2
    }

    fn is_director(&self) -> bool {
        self.cfg.directors.contains(&self.cfg.node)
    }

    /// Whether this node is in the cluster (reaches a quorum, or follows a leader).
    pub fn in_cluster(&self) -> bool {
        self.leader.is_some()
    }

    /// The connection to `node` came up.
    pub fn peer_up(&mut self, node: u32, now: Duration, out: &mut Vec<Output>) {
        if node == self.cfg.node || !self.cfg.nodes.contains(&node) {
            return;
        }
        let had_quorum = self.has_quorum();
        self.reachable.insert(node);
        if self.reachable.len() + 1 == self.cfg.nodes.len() {
            self.seen_all = true;
        }
        if !had_quorum && self.has_quorum() && !self.is_leader() {
            // Back in a quorum: give the leader it now reaches (if any) an election timeout
            // to announce itself before claiming, so a returning director never takes over
            // from a live leader by winning a tie of terms.
            self.heard = now;
        }
        if self.is_leader() {
            self.send_heartbeat(node, out);
            // Tell the node what it holds (it may have restarted).
            let held: Vec<CkptAssign> = self
                .entries
                .values()
                .filter(|e| e.replicas.contains(&node))
                .map(Entry::assign)
                .collect();
            for ckpt in held {
                self.send(
                    node,
                    Frame::Assign {
                        dir_term: self.dir_term,
                        ckpt,
                    },
                    out,
                );
            }
            if self.cfg.directors.contains(&node) {
                self.send_state_to(node, now, out);
            }
        }
    }

    /// The connection to `node` is gone (after the transport's idle timeout).
    pub fn peer_down(&mut self, node: u32, now: Duration, out: &mut Vec<Output>) {
        if !self.reachable.remove(&node) {
            return;
        }
        if self.leader == Some(node) {
            self.set_leader(None, out);
            self.heard = now;
        }
        if self.is_leader() {
            if !self.has_quorum() {
                self.set_leader(None, out);
                return;
            }
            self.node_died(node, now, out);
        }
    }

    /// A frame from another node.
    pub fn on_frame(&mut self, from: u32, frame: Frame, now: Duration, out: &mut Vec<Output>) {
        match frame {
            Frame::Leader {
                dir_term, leader, ..
            } => {
                if dir_term < self.dir_term
                    || (dir_term == self.dir_term
                        && self
                            .leader
                            .is_some_and(|l| l < leader && l != self.cfg.node))
                {
                    return;
                }
                if self.is_leader() && dir_term == self.dir_term && self.cfg.node < leader {
                    return; // we win the tie; our heartbeat tells it
                }
                self.dir_term = dir_term;
                self.heard = now;
                if self.leader != Some(leader) {
                    self.set_leader(Some(leader), out);
                }
            }
            Frame::DirState {
                term,
                leader,
                state,
            } if term >= self.dir_term && !self.is_leader() => {
                if let Ok(t) = decode_table(&state, now) {
                    self.dir_term = term;
                    self.entries = t.entries;
                    self.next_instance = t.next_instance;
                    self.minted = t.minted;
                    self.replies = t.replies;
                    self.heard = now;
                    if self.leader != Some(leader) {
                        self.set_leader(Some(leader), out);
                    }
                }
            }
            Frame::Request { req, op } => {
                if self.is_leader() {
                    let result = self.handle(req, op, now, out);
                    self.send(from, Frame::Reply { req, result }, out);
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
                let mut changed = false;
                for (instance, term, seq) in items {
                    changed |= self.note_position(node, instance, term, seq);
                }
                if changed {
                    self.broadcast_state(now, out);
                }
            }
            _ => {}
        }
    }

    /// A request made on this node (by ckptd for one of its agents). The answer comes
    /// back as [`Output::Reply`], now or when the leader answers; the caller retries
    /// with the same `req` until it has one or its timeout passes.
    pub fn request(&mut self, req: ReqId, op: DirOp, now: Duration, out: &mut Vec<Output>) {
        match self.leader {
            Some(l) if l == self.cfg.node => {
                let result = self.handle(req, op, now, out);
                out.push(Output::Reply { req, result });
            }
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
        if self.note_position(node, instance, term, seq) {
            self.state_dirty = true; // the next tick sends the table
        }
    }

    /// Records a reported position; returns whether the table changed (an evicted node
    /// has resynced: a complete position in its eviction's term or later).
    fn note_position(&mut self, node: u32, instance: u64, term: u64, seq: u64) -> bool {
        let leads = self.is_leader();
        let Some(e) = self.entries.get_mut(&instance) else {
            return false;
        };
        if !e.replicas.contains(&node) {
            return false; // stale (dropped since) or bogus: nothing to promote
        }
        self.positions.insert((instance, node), (term, seq));
        let resynced = seq != INCOMPLETE && e.evicted.get(&node).is_some_and(|t| term >= *t);
        if leads && resynced {
            e.evicted.remove(&node);
            return true;
        }
        false
    }

    /// Timers: heartbeats, elections, retention. Returns the next deadline.
    pub fn tick(&mut self, now: Duration, out: &mut Vec<Output>) -> Duration {
        if self.is_leader() {
            if !self.has_quorum() {
                self.set_leader(None, out);
            } else {
                if now >= self.next_beat {
                    let nodes: Vec<u32> = self.reachable.iter().copied().collect();
                    for n in nodes {
                        self.send_heartbeat(n, out);
                    }
                    self.next_beat = now + self.cfg.heartbeat;
                }
                if self.state_dirty {
                    self.broadcast_state(now, out);
                }
                self.expire_retention(now, out);
            }
        } else if self.is_director()
            && now.saturating_sub(self.heard) >= self.cfg.election_timeout
            && self.has_quorum()
            && self.leader.is_none_or(|l| !self.reachable.contains(&l))
        {
            let lowest = self
                .cfg
                .directors
                .iter()
                .copied()
                .filter(|d| *d == self.cfg.node || self.reachable.contains(d))
                .min();
            if lowest == Some(self.cfg.node) {
                self.become_leader(now, out);
            }
        }
        self.state_dirty = false;
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

    fn become_leader(&mut self, now: Duration, out: &mut Vec<Output>) {
        self.dir_term += 1;
        self.minted = 0;
        self.set_leader(Some(self.cfg.node), out);
        self.next_beat = now + self.cfg.heartbeat; // the heartbeats below are the first
        // Whoever is not reachable now is dead for the table.
        let dead: Vec<u32> = self
            .cfg
            .nodes
            .iter()
            .copied()
            .filter(|n| *n != self.cfg.node && !self.reachable.contains(n))
            .collect();
        for n in dead {
            self.node_died(n, now, out);
        }
        let nodes: Vec<u32> = self.reachable.iter().copied().collect();
        for n in nodes {
            self.send_heartbeat(n, out);
        }
        self.broadcast_state(now, out);
        // Re-announce every assignment in the new directory term.
        let all: Vec<CkptAssign> = self.entries.values().map(Entry::assign).collect();
        for a in all {
            self.assign_everywhere(&a, out);
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
        self.positions.retain(|(_, n), _| *n != node);
        let ids: Vec<u64> = self.entries.keys().copied().collect();
        for id in ids {
            let mut changed = false;
            let mut promote = false;
            {
                let e = self.entries.get_mut(&id).expect("listed");
                if e.openers.remove(&node).is_some() {
                    changed = true;
                    if e.open_count() == 0 {
                        e.idle_since = Some(now);
                    }
                }
                if e.replicas.contains(&node) {
                    e.replicas.retain(|n| *n != node);
                    changed = true;
                }
                if e.primary == Some(node) {
                    e.primary = None;
                    promote = !e.collocated();
                }
            }
            if promote {
                let best = self.promotion_choice(id);
                let term = self.mint_term();
                let e = self.entries.get_mut(&id).expect("listed");
                e.primary = best;
                e.term = term;
            }
            if changed || promote {
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
        self.broadcast_state(now, out);
    }

    /// The replica of `instance` to promote: the highest complete reported position, then
    /// replicas without a report, then replicas in the middle of a snapshot; the lowest
    /// node id among equals. An evicted node that has not resynced is never chosen.
    fn promotion_choice(&self, instance: u64) -> Option<u32> {
        let e = &self.entries[&instance];
        e.replicas
            .iter()
            .copied()
            .filter(|n| !e.evicted.contains_key(n))
            .max_by_key(|n| {
                let rank = match self.positions.get(&(instance, *n)) {
                    Some(&(term, seq)) if seq != INCOMPLETE => (2, term, seq),
                    None => (1, 0, 0),
                    Some(_) => (0, 0, 0),
                };
                (rank, Reverse(*n))
            })
    }

    fn handle(&mut self, req: ReqId, op: DirOp, now: Duration, out: &mut Vec<Output>) -> DirReply {
        let key = (req.node, req.incarnation);
        if let Some((_, r)) = self
            .replies
            .get(&key)
            .and_then(|done| done.iter().find(|(c, _)| *c == req.counter))
        {
            return r.clone();
        }
        let result = self.apply(req.node, op, now, out);
        let done = self.replies.entry(key).or_default();
        done.push_back((req.counter, result.clone()));
        while done.len() > REMEMBERED_REPLIES {
            done.pop_front();
        }
        self.broadcast_state(now, out);
        result
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
                if e.open_count() == 0 {
                    e.idle_since = Some(now);
                    if e.unlinked {
                        self.delete(instance, out);
                    }
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
            } => self.evict(requester, instance, node, term, out),
        }
    }

    /// [`DirOp::Evict`]: `requester`, primary of `instance` in `term`, drops `node`.
    fn evict(
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
        if !e.replicas.contains(&node) {
            // Evicted already (a second request, or one from the term before): done.
            // Never in the set (or dropped otherwise): the request makes no sense.
            return if e.evicted.contains_key(&node) {
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
        let a = e.assign();
        self.positions.remove(&(instance, node));
        self.assign_everywhere(&a, out);
        self.unassign(node, instance, out);
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
        // evicted node) come back by opening. An evicted node stays unpromotable until it
        // has resynced.
        let placed = e.collocated() || director || e.evicted.contains_key(&node);
        if placed && !e.replicas.contains(&node) {
            e.replicas.push(node);
            e.replicas.sort_unstable();
        }
        let a = e.assign();
        self.assign_everywhere(&a, out);
        DirReply::Opened { ckpt: a }
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

    fn expire_retention(&mut self, now: Duration, out: &mut Vec<Output>) {
        let due: Vec<u64> = self
            .entries
            .values()
            .filter(|e| e.retention_due().is_some_and(|due| now >= due))
            .map(|e| e.instance)
            .collect();
        if due.is_empty() {
            return;
        }
        for id in due {
            self.delete(id, out);
        }
        self.broadcast_state(now, out);
    }

    fn assign_everywhere(&mut self, a: &CkptAssign, out: &mut Vec<Output>) {
        for &n in &a.replicas {
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

    fn send_heartbeat(&self, node: u32, out: &mut Vec<Output>) {
        let mut members: Vec<u32> = self.reachable.iter().copied().collect();
        members.push(self.cfg.node);
        members.sort_unstable();
        self.send(
            node,
            Frame::Leader {
                dir_term: self.dir_term,
                leader: self.cfg.node,
                members,
            },
            out,
        );
    }

    fn broadcast_state(&self, now: Duration, out: &mut Vec<Output>) {
        if !self.is_leader() {
            return;
        }
        for &d in &self.cfg.directors {
            if d != self.cfg.node && self.reachable.contains(&d) {
                self.send_state_to(d, now, out);
            }
        }
    }

    fn send_state_to(&self, node: u32, now: Duration, out: &mut Vec<Output>) {
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

struct Table {
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
        entries,
        next_instance,
        minted,
        replies,
    })
}
