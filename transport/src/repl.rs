//! Replication, sans IO: a primary streams its change journal to the other replicas of a
//! checkpoint ([`Primary`]); a replica applies what it receives and acknowledges it
//! ([`apply_diff`]).
//!
//! Identity is `(term, seq)`: the term is the checkpoint's replication term, decided by the
//! directory when it names a primary; the seq is the primary's journal seq. Every replica
//! persists the position it has applied in its header
//! ([`Replica::replication_position`]), so a restarted daemon resumes where it was.
//!
//! Diffs are *state based*: a journal record says which section changed, and the primary
//! sends that section's bytes as they are when the diff is built (`DiffOp::Put` of the
//! whole section, or `DiffOp::Write` of the range one write touched). Several changes of
//! one section in a batch coalesce into one op, so a lagging replica receives each hot
//! section once per batch however often it was overwritten. A replica applies a batch
//! only if it starts exactly where the replica is (`base == seq`), so an old batch can
//! never bring back an older value.
//!
//! A replica that cannot follow the journal (it is new, in an older term, or the ring
//! lapped it) is brought up by a *snapshot*: a `Retain` of the section ids present, then
//! a `Put` of each section (within one term, only sections whose version is newer than
//! what the replica acknowledged: the per-section-version resync), and a final frame that
//! names the seq the snapshot corresponds to. The journal stream continues from there.
//! While a snapshot is being applied the replica's position is [`INCOMPLETE`], so it is
//! never mistaken for an up-to-date one.
//!
//! The driver (ckptd, or the simulation) feeds received frames and `now`, calls
//! [`Primary::poll`] when the journal moved or a deadline passed, sends the returned
//! [`Transmit`]s and publishes [`Primary::acked_floor`] in the replica header, which is
//! what `saCkptCheckpointSynchronize` waits for.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ckpt_engine::{Change, ChangeKind, Changes, Replica, SectionError, SectionFilter};

use crate::wire::{DiffOp, Frame};

/// `base` of a snapshot frame.
pub const SNAPSHOT: u64 = u64::MAX;

/// Replication position seq of a replica in the middle of a snapshot.
pub const INCOMPLETE: u64 = u64::MAX;

/// Tuning of a [`Primary`].
#[derive(Clone, Debug)]
pub struct ReplConfig {
    /// Journal records read per batch.
    pub max_batch_changes: usize,
    /// Section bytes per `Diff` frame (a single larger section still goes in one frame).
    pub max_batch_bytes: usize,
    /// Bytes sent but not acknowledged, per replica, before the primary stops sending to
    /// it (what it sends after that is coalesced).
    pub window_bytes: u64,
    /// With frames unacknowledged and no progress for this long, the primary probes the
    /// replica's position again and resends from there.
    pub resend_after: Duration,
    /// How often an unanswered probe is repeated (a replica whose node has not created
    /// its object yet ignores diffs).
    pub probe_every: Duration,
}

impl Default for ReplConfig {
    fn default() -> Self {
        Self {
            max_batch_changes: 4096,
            max_batch_bytes: 4 << 20,
            window_bytes: 64 << 20,
            resend_after: Duration::from_secs(2),
            probe_every: Duration::from_millis(100),
        }
    }
}

/// A frame for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination node.
    pub node: u32,
    /// The frame.
    pub frame: Frame,
}

/// What the primary learned from a replica that the driver must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryEvent {
    /// A replica is in a newer term: this primary has been replaced. Stop taking writes
    /// and ask the directory.
    Fenced {
        /// The newer term.
        term: u64,
    },
}

#[derive(Debug)]
enum Phase {
    /// Asking the replica where it is (an empty diff it answers with its position).
    Probe { sent_at: Option<Duration> },
    /// Following the journal.
    Stream,
    /// Sending a snapshot.
    Snapshot(Snapshot),
}

#[derive(Debug)]
struct Snapshot {
    /// Sections still to send, in order.
    todo: VecDeque<Vec<u8>>,
    /// Only sections whose version is newer than this (0: all).
    newer_than: u64,
    /// The seq the snapshot brings the replica to.
    mark: u64,
    /// Whether the first frame (with the `Retain`) went out.
    started: bool,
}

#[derive(Debug)]
struct Follower {
    up: bool,
    acked: u64,
    sent: u64,
    phase: Phase,
    /// (mark, bytes) of frames not yet acknowledged.
    unacked: VecDeque<(u64, u64)>,
    unacked_bytes: u64,
    last_progress: Duration,
}

impl Follower {
    fn new() -> Self {
        Self {
            up: false,
            acked: 0,
            sent: 0,
            phase: Phase::Probe { sent_at: None },
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            last_progress: Duration::ZERO,
        }
    }

    fn probe(&mut self) {
        self.phase = Phase::Probe { sent_at: None };
        self.unacked.clear();
        self.unacked_bytes = 0;
    }

    fn note_sent(&mut self, mark: u64, bytes: u64, now: Duration) {
        if self.unacked.is_empty() {
            self.last_progress = now;
        }
        self.unacked.push_back((mark, bytes));
        self.unacked_bytes += bytes;
    }

    fn note_acked(&mut self, seq: u64, now: Duration) {
        if seq > self.acked || self.acked == INCOMPLETE {
            self.acked = seq;
        }
        self.last_progress = now;
        while let Some(&(mark, bytes)) = self.unacked.front() {
            if mark != SNAPSHOT && mark <= seq {
                self.unacked.pop_front();
                self.unacked_bytes -= bytes;
            } else {
                break;
            }
        }
    }
}

/// The primary side of one checkpoint: one journal, streamed to every other replica.
#[derive(Debug)]
pub struct Primary {
    instance: u64,
    term: u64,
    config: ReplConfig,
    followers: BTreeMap<u32, Follower>,
    changes: Vec<Change>,
}

impl Primary {
    /// The primary of `instance` in `term` (≥ 1), with no replicas yet.
    pub fn new(instance: u64, term: u64, config: ReplConfig) -> Self {
        Self {
            instance,
            term,
            config,
            followers: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    /// The checkpoint instance.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The replication term this primary writes in.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Sets the other replicas (the directory's replica set minus this node). New ones
    /// start with a probe; removed ones stop counting for [`Self::acked_floor`].
    pub fn set_replicas(&mut self, nodes: &[u32], up: impl Fn(u32) -> bool) {
        self.followers.retain(|n, _| nodes.contains(n));
        for &n in nodes {
            self.followers.entry(n).or_insert_with(|| {
                let mut f = Follower::new();
                f.up = up(n);
                f
            });
        }
    }

    /// The replicas it streams to.
    pub fn replicas(&self) -> impl Iterator<Item = u32> + '_ {
        self.followers.keys().copied()
    }

    /// The connection to `node` is (re)established: probe its position.
    pub fn peer_up(&mut self, node: u32) {
        if let Some(f) = self.followers.get_mut(&node) {
            f.up = true;
            f.probe();
        }
    }

    /// The connection to `node` is gone: stop sending until it returns.
    pub fn peer_down(&mut self, node: u32) {
        if let Some(f) = self.followers.get_mut(&node) {
            f.up = false;
            f.probe();
        }
    }

    /// The highest seq every replica acknowledged, or `None` with no other replica.
    pub fn acked_floor(&self) -> Option<u64> {
        self.followers
            .values()
            .map(|f| if f.acked == INCOMPLETE { 0 } else { f.acked })
            .min()
    }

    /// The seq `node` acknowledged.
    pub fn acked_by(&self, node: u32) -> Option<u64> {
        self.followers.get(&node).map(|f| f.acked)
    }

    /// An `Ack` from `node`.
    pub fn on_ack(&mut self, node: u32, term: u64, seq: u64, replica: &Replica, now: Duration) {
        if term != self.term {
            return;
        }
        let Some(f) = self.followers.get_mut(&node) else {
            return;
        };
        match &f.phase {
            Phase::Probe { sent_at: Some(_) } => {
                if seq == INCOMPLETE || seq > replica.commit_seq() {
                    // Mid-snapshot, or claims more than this journal has: start over.
                    f.acked = 0;
                    f.phase = Phase::Snapshot(start_snapshot(replica, 0));
                } else {
                    f.acked = seq;
                    f.sent = seq;
                    f.phase = Phase::Stream;
                }
                f.last_progress = now;
            }
            Phase::Probe { sent_at: None } => {}
            Phase::Stream => f.note_acked(seq, now),
            Phase::Snapshot(s) => {
                if !s.started || seq == INCOMPLETE {
                    return;
                }
                // Acks of frames sent before the snapshot carry older seqs: ignore them.
                if seq >= s.mark {
                    f.note_acked(seq, now);
                }
            }
        }
    }

    /// A `Stale` from `node`: it is in another term.
    pub fn on_stale(&mut self, node: u32, term: u64) -> Option<PrimaryEvent> {
        if term > self.term {
            return Some(PrimaryEvent::Fenced { term });
        }
        let f = self.followers.get_mut(&node)?;
        if !matches!(f.phase, Phase::Snapshot(_)) {
            // Behind our term: it needs everything, from a snapshot.
            f.acked = 0;
            f.unacked.clear();
            f.unacked_bytes = 0;
            f.phase = Phase::Snapshot(Snapshot {
                todo: VecDeque::new(),
                newer_than: 0,
                mark: 0,
                started: false,
            });
        }
        None
    }

    /// Produces the frames due now: probes, journal batches, snapshot parts. Returns when
    /// it wants to be polled again at the latest (besides journal changes and received
    /// frames).
    pub fn poll(
        &mut self,
        replica: &Replica,
        now: Duration,
        out: &mut Vec<Transmit>,
    ) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut wake = |t: Duration| next = Some(next.map_or(t, |n: Duration| n.min(t)));
        let nodes: Vec<u32> = self.followers.keys().copied().collect();
        for node in nodes {
            let f = self.followers.get_mut(&node).expect("listed");
            if !f.up {
                continue;
            }
            // No progress for too long with frames outstanding: probe and resend.
            if !f.unacked.is_empty()
                && now.saturating_sub(f.last_progress) >= self.config.resend_after
            {
                f.probe();
            }
            match &mut f.phase {
                Phase::Probe { sent_at } => {
                    let due =
                        sent_at.is_none_or(|t| now.saturating_sub(t) >= self.config.probe_every);
                    if due {
                        *sent_at = Some(now);
                        out.push(Transmit {
                            node,
                            frame: Frame::Diff {
                                instance: self.instance,
                                term: self.term,
                                base: f.acked,
                                mark: f.acked,
                                ops: Vec::new(),
                            },
                        });
                    }
                    let t = sent_at.unwrap_or(now) + self.config.probe_every;
                    wake(t);
                }
                Phase::Snapshot(_) => {
                    self.send_snapshot(node, replica, now, out);
                    wake(now + self.config.resend_after);
                }
                Phase::Stream => {
                    self.send_stream(node, replica, now, out);
                    let f = &self.followers[&node];
                    if !f.unacked.is_empty() {
                        wake(f.last_progress + self.config.resend_after);
                    }
                }
            }
        }
        next
    }

    fn send_stream(
        &mut self,
        node: u32,
        replica: &Replica,
        now: Duration,
        out: &mut Vec<Transmit>,
    ) {
        loop {
            let f = self.followers.get_mut(&node).expect("listed");
            if f.unacked_bytes >= self.config.window_bytes {
                return;
            }
            let head = replica.commit_seq();
            if f.sent >= head {
                return;
            }
            self.changes.clear();
            let upto = match replica.changes_since(
                f.sent,
                &mut self.changes,
                self.config.max_batch_changes,
            ) {
                Changes::UpTo(s) => s,
                Changes::Resync(_) => {
                    // The ring lapped it: resend the sections newer than what it has.
                    let acked = f.acked;
                    f.phase = Phase::Snapshot(start_snapshot(replica, acked));
                    self.send_snapshot(node, replica, now, out);
                    return;
                }
            };
            if upto == f.sent {
                return; // the next change is still being written
            }
            let (ops, bytes) = batch_ops(replica, &self.changes);
            let base = f.sent;
            f.sent = upto;
            f.note_sent(upto, bytes.max(1), now);
            out.push(Transmit {
                node,
                frame: Frame::Diff {
                    instance: self.instance,
                    term: self.term,
                    base,
                    mark: upto,
                    ops,
                },
            });
        }
    }

    fn send_snapshot(
        &mut self,
        node: u32,
        replica: &Replica,
        now: Duration,
        out: &mut Vec<Transmit>,
    ) {
        let max_bytes = self.config.max_batch_bytes;
        let window = self.config.window_bytes;
        let (instance, term) = (self.instance, self.term);
        let f = self.followers.get_mut(&node).expect("listed");
        let Phase::Snapshot(s) = &mut f.phase else {
            return;
        };
        if !s.started && s.todo.is_empty() && s.mark == 0 {
            // Requested by a Stale: take it now.
            *s = start_snapshot(replica, s.newer_than);
        }
        loop {
            if f.unacked_bytes >= window {
                return;
            }
            let Phase::Snapshot(s) = &mut f.phase else {
                return;
            };
            let mut ops = Vec::new();
            let mut bytes = 0usize;
            if !s.started {
                let ids: Vec<Vec<u8>> = s.todo.iter().cloned().collect();
                bytes += ids.iter().map(|i| i.len() + 4).sum::<usize>();
                ops.push(DiffOp::Retain { ids });
                s.started = true;
            }
            while bytes < max_bytes {
                let Some(id) = s.todo.pop_front() else { break };
                if let Some(op) = put_op(replica, &id, s.newer_than) {
                    bytes += op_bytes(&op);
                    ops.push(op);
                }
            }
            let last = s.todo.is_empty();
            let mark = if last { s.mark } else { SNAPSHOT };
            let snap_mark = s.mark;
            f.note_sent(mark, bytes.max(1) as u64, now);
            out.push(Transmit {
                node,
                frame: Frame::Diff {
                    instance,
                    term,
                    base: SNAPSHOT,
                    mark,
                    ops,
                },
            });
            if last {
                f.sent = snap_mark;
                f.phase = Phase::Stream;
                return;
            }
        }
    }
}

/// Starts a snapshot: the seq it brings a replica to, then the ids present.
fn start_snapshot(replica: &Replica, newer_than: u64) -> Snapshot {
    let mark = replica.resync_point();
    let todo = replica.sections(SectionFilter::Any).map(|s| s.id).collect();
    Snapshot {
        todo,
        newer_than,
        mark,
        started: false,
    }
}

/// A `Put` of section `id` as it is now, if its version is newer than `newer_than`.
fn put_op(replica: &Replica, id: &[u8], newer_than: u64) -> Option<DiffOp> {
    let info = replica.section_info(id).ok()?;
    if newer_than != 0 && info.version <= newer_than {
        return None;
    }
    let data = replica.read_to_vec(id).ok()?;
    Some(DiffOp::Put {
        id: id.to_vec(),
        expiration: info.expiration,
        data,
    })
}

fn op_bytes(op: &DiffOp) -> usize {
    match op {
        DiffOp::Put { id, data, .. } | DiffOp::Write { id, data, .. } => id.len() + data.len() + 24,
        DiffOp::Delete { id } | DiffOp::Expire { id, .. } => id.len() + 16,
        DiffOp::Retain { ids } => ids.iter().map(|i| i.len() + 4).sum::<usize>() + 8,
    }
}

/// Turns a batch of journal records into ops, one per section, in the order of each
/// section's last change (so a delete that made room precedes the create that used it).
fn batch_ops(replica: &Replica, changes: &[Change]) -> (Vec<DiffOp>, u64) {
    #[derive(Default)]
    struct Touch {
        last: usize,
        count: usize,
        write: Option<(u64, u64)>,
        deleted: bool,
        only_expiration: bool,
    }
    let mut touched: BTreeMap<&[u8], Touch> = BTreeMap::new();
    let mut lost_delete = false;
    for (i, c) in changes.iter().enumerate() {
        let Some(id) = c.id.as_deref() else {
            // Superseded. A delete whose section id is gone (descriptor reused) is only
            // recoverable by naming what exists.
            lost_delete |= c.kind == ChangeKind::Delete;
            continue;
        };
        let t = touched.entry(id).or_insert_with(|| Touch {
            only_expiration: true,
            ..Touch::default()
        });
        t.last = i;
        t.count += 1;
        t.deleted = c.kind == ChangeKind::Delete;
        t.only_expiration &= c.kind == ChangeKind::Expiration;
        t.write = (c.kind == ChangeKind::Write).then_some((c.offset, c.len));
    }
    let mut order: Vec<(&[u8], Touch)> = touched.into_iter().collect();
    order.sort_by_key(|(_, t)| t.last);
    let mut ops = Vec::with_capacity(order.len() + 1);
    let mut bytes = 0u64;
    for (id, t) in order {
        let op = match replica.section_info(id) {
            Err(_) => DiffOp::Delete { id: id.to_vec() },
            Ok(info) if t.only_expiration => DiffOp::Expire {
                id: id.to_vec(),
                expiration: info.expiration,
            },
            Ok(info) => match t.write.filter(|_| t.count == 1 && !t.deleted) {
                Some((offset, len)) if offset <= info.size => {
                    let end = (offset + len).min(info.size);
                    let mut data = vec![0; (end - offset) as usize];
                    match replica.read(id, offset, &mut data) {
                        Ok(n) => {
                            data.truncate(n);
                            DiffOp::Write {
                                id: id.to_vec(),
                                offset,
                                data,
                            }
                        }
                        Err(_) => continue,
                    }
                }
                _ => match replica.read_to_vec(id) {
                    Ok(data) => DiffOp::Put {
                        id: id.to_vec(),
                        expiration: info.expiration,
                        data,
                    },
                    // Deleted between the two reads: a later record says so.
                    Err(_) => continue,
                },
            },
        };
        bytes += op_bytes(&op) as u64;
        ops.push(op);
    }
    if lost_delete {
        let ids: Vec<Vec<u8>> = replica.sections(SectionFilter::Any).map(|s| s.id).collect();
        let op = DiffOp::Retain { ids };
        bytes += op_bytes(&op) as u64;
        ops.push(op);
    }
    (ops, bytes)
}

/// Applies a `Diff` received for `instance` to the local replica and returns the answer
/// for the primary (`Ack` with the position now held, or `Stale` naming this replica's
/// term when the frame's term is older, or newer without being a snapshot).
///
/// `changed` is set when sections changed (arrival callbacks on this node fire from the
/// replica's own journal either way).
pub fn apply_diff(
    replica: &Replica,
    instance: u64,
    term: u64,
    base: u64,
    mark: u64,
    ops: &[DiffOp],
) -> Frame {
    let (pterm, pseq) = replica.replication_position();
    let stale = Frame::Stale {
        instance,
        term: pterm,
    };
    if term < pterm {
        return stale;
    }
    let ack = |seq| Frame::Ack {
        instance,
        term,
        seq,
    };
    if base == SNAPSHOT {
        if term > pterm || pseq != INCOMPLETE {
            replica.set_replication_position(term, INCOMPLETE);
        }
        if apply_ops(replica, ops).is_err() {
            // Leave the position INCOMPLETE: the primary's probe restarts the snapshot.
            return ack(INCOMPLETE);
        }
        if mark != SNAPSHOT {
            replica.set_replication_position(term, mark);
            return ack(mark);
        }
        return ack(INCOMPLETE);
    }
    if term > pterm {
        // A new primary's journal means nothing to this replica: ask for a snapshot.
        return stale;
    }
    if base != pseq || mark < base {
        return ack(pseq);
    }
    match apply_ops(replica, ops) {
        Ok(()) => {
            replica.set_replication_position(term, mark);
            ack(mark)
        }
        Err(_) => ack(pseq),
    }
}

/// Applies ops in order; an op refused for want of room is retried once the others are
/// in (a coalesced batch may grow one section before another shrinks).
fn apply_ops(replica: &Replica, ops: &[DiffOp]) -> Result<(), SectionError> {
    let a = replica.applier();
    let mut deferred = Vec::new();
    for op in ops {
        match apply_op(&a, op) {
            Ok(()) => {}
            Err(SectionError::NoSpace | SectionError::NoResources | SectionError::TryAgain) => {
                deferred.push(op);
            }
            Err(e) => return Err(e),
        }
    }
    for op in deferred {
        apply_op(&a, op)?;
    }
    Ok(())
}

fn apply_op(a: &ckpt_engine::Applier<'_>, op: &DiffOp) -> Result<(), SectionError> {
    match op {
        DiffOp::Put {
            id,
            expiration,
            data,
        } => a.put(id, *expiration, data),
        DiffOp::Write { id, offset, data } => a.write(id, *offset, data),
        DiffOp::Delete { id } => a.delete(id).map(|_| ()),
        DiffOp::Expire { id, expiration } => match a.set_expiration(id, *expiration) {
            Err(SectionError::NotExist) => Ok(()),
            r => r,
        },
        DiffOp::Retain { ids } => {
            let mut keep: Vec<&[u8]> = ids.iter().map(Vec::as_slice).collect();
            keep.sort_unstable();
            a.retain(|id| keep.binary_search(&id).is_ok()).map(|_| ())
        }
    }
}
