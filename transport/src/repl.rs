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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use ckpt_engine::{Change, ChangeKind, Changes, Replica, SectionError, SectionFilter};

use crate::wire::{DiffOp, DiffOpRef, DiffRef, DiffWriter, Encode, Frame};

/// `base` of a snapshot frame.
pub const SNAPSHOT: u64 = u64::MAX;

/// Replication position seq of a replica in the middle of a snapshot.
pub const INCOMPLETE: u64 = u64::MAX;

/// Tuning of a [`Primary`].
#[derive(Clone, Debug)]
pub struct ReplConfig {
    /// Journal records read per batch.
    pub max_batch_changes: usize,
    /// Bytes per `Diff` frame, journal batches and snapshot parts alike: a frame stops
    /// taking sections once it holds this much (a single larger section still goes in one
    /// frame).
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
            max_batch_bytes: 1 << 20,
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

/// A `Diff` frame for a node, already encoded: its body, kind byte first (what
/// [`Frame::decode`] and [`DiffRef::decode`] take, and the mesh sends). See
/// [`Primary::poll_encoded`].
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedDiff {
    /// Destination node.
    pub node: u32,
    /// The frame body.
    pub body: Vec<u8>,
}

impl core::fmt::Debug for EncodedDiff {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EncodedDiff")
            .field("node", &self.node)
            .field("len", &self.body.len())
            .finish()
    }
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

/// Where a [`Primary`]'s replication to one replica stands ([`Primary::follower`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FollowerStatus {
    /// The connection to its node is up.
    pub up: bool,
    /// The seq it acknowledged (0 until its first answer in this term; [`INCOMPLETE`]
    /// when it last said it is mid-snapshot).
    pub acked: u64,
    /// The seq the frames sent to it so far bring it to.
    pub sent: u64,
    /// Bytes of frames sent to it and not acknowledged yet: the part of its lag on the
    /// wire (changes not sent yet are still in the journal, counted in seqs only).
    pub unacked_bytes: u64,
    /// It is being sent a snapshot.
    pub snapshot: bool,
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
        // Frames apply in order on one stream, so the ack of a mark covers every frame
        // before it, snapshot parts (marked SNAPSHOT, acknowledged only by the mark that
        // ends the snapshot) included. Stopping at the first part kept a finished
        // snapshot's bytes counted against the window for good.
        let covered = self
            .unacked
            .iter()
            .rposition(|&(mark, _)| mark != SNAPSHOT && mark <= seq);
        if let Some(last) = covered {
            for (_, bytes) in self.unacked.drain(..=last) {
                self.unacked_bytes -= bytes;
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
    /// The last poll stopped short for want of room on a link.
    wants_room: bool,
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
            wants_room: false,
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

    /// Where replication to `node` stands (for monitoring; ckptd's metrics).
    pub fn follower(&self, node: u32) -> Option<FollowerStatus> {
        self.followers.get(&node).map(|f| FollowerStatus {
            up: f.up,
            acked: f.acked,
            sent: f.sent,
            unacked_bytes: f.unacked_bytes,
            snapshot: matches!(f.phase, Phase::Snapshot(_)),
        })
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
        self.poll_into(replica, now, &|_| usize::MAX, out)
    }

    /// [`Self::poll`] for a driver that sends bytes: the frames come encoded, each
    /// section's bytes copied once, from `replica` into the frame, and at most about
    /// `room(node)` bytes of them go to each node (probes always go; a frame is not split,
    /// so the last one may exceed it). When a node's room stopped it,
    /// [`Self::wants_room`] says so until the next poll: poll again once the link to that
    /// node has drained, so the replica is fed as fast as the link takes bytes and what
    /// it does not take yet stays in the journal, to be coalesced.
    pub fn poll_encoded(
        &mut self,
        replica: &Replica,
        now: Duration,
        room: &dyn Fn(u32) -> usize,
        out: &mut Vec<EncodedDiff>,
    ) -> Option<Duration> {
        self.poll_into(replica, now, room, out)
    }

    /// Whether the last [`Self::poll_encoded`] left frames unsent for want of room on a
    /// link.
    pub fn wants_room(&self) -> bool {
        self.wants_room
    }

    fn poll_into<S: Sink>(
        &mut self,
        replica: &Replica,
        now: Duration,
        room: &dyn Fn(u32) -> usize,
        out: &mut S,
    ) -> Option<Duration> {
        self.wants_room = false;
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
            let mut budget = Budget {
                room: room(node),
                used: 0,
            };
            match &mut f.phase {
                Phase::Probe { sent_at } => {
                    let due =
                        sent_at.is_none_or(|t| now.saturating_sub(t) >= self.config.probe_every);
                    if due {
                        *sent_at = Some(now);
                        let probe = out.begin(self.instance, self.term, f.acked, 0);
                        out.push(node, probe, f.acked);
                    }
                    let t = sent_at.unwrap_or(now) + self.config.probe_every;
                    wake(t);
                }
                Phase::Snapshot(_) => {
                    self.send_snapshot(node, replica, now, &mut budget, out);
                    wake(now + self.config.resend_after);
                }
                Phase::Stream => {
                    self.send_stream(node, replica, now, &mut budget, out);
                    let f = &self.followers[&node];
                    if !f.unacked.is_empty() {
                        wake(f.last_progress + self.config.resend_after);
                    }
                }
            }
        }
        next
    }

    fn send_stream<S: Sink>(
        &mut self,
        node: u32,
        replica: &Replica,
        now: Duration,
        budget: &mut Budget,
        out: &mut S,
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
            if budget.full() {
                self.wants_room = true;
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
                    self.send_snapshot(node, replica, now, budget, out);
                    return;
                }
            };
            if upto == f.sent {
                return; // the next change is still being written
            }
            let max_bytes = self.config.max_batch_bytes;
            let (kept, mark, estimate) = cut_batch(replica, &self.changes, upto, max_bytes);
            let base = f.sent;
            let mut batch = out.begin(self.instance, self.term, base, estimate);
            batch_ops(replica, &self.changes[..kept], &mut batch);
            let bytes = batch.bytes();
            f.sent = mark;
            f.note_sent(mark, bytes as u64, now);
            budget.used += bytes;
            out.push(node, batch, mark);
        }
    }

    fn send_snapshot<S: Sink>(
        &mut self,
        node: u32,
        replica: &Replica,
        now: Duration,
        budget: &mut Budget,
        out: &mut S,
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
            if budget.full() {
                self.wants_room = true;
                return;
            }
            let Phase::Snapshot(s) = &mut f.phase else {
                return;
            };
            // Room for a frame that ends just past `max_bytes` with one more section.
            let mut batch = out.begin(instance, term, SNAPSHOT, max_bytes + max_bytes / 8);
            if !s.started {
                let ids: Vec<&[u8]> = s.todo.iter().map(Vec::as_slice).collect();
                batch.op(&DiffOpRef::Retain { ids });
                s.started = true;
            }
            while batch.bytes() < max_bytes {
                let Some(id) = s.todo.pop_front() else { break };
                put_op(replica, &id, s.newer_than, &mut batch);
            }
            let last = s.todo.is_empty();
            let mark = if last { s.mark } else { SNAPSHOT };
            let snap_mark = s.mark;
            let bytes = batch.bytes();
            f.note_sent(mark, bytes as u64, now);
            budget.used += bytes;
            out.push(node, batch, mark);
            if last {
                f.sent = snap_mark;
                f.phase = Phase::Stream;
                return;
            }
        }
    }
}

/// Bytes a link may take in one poll, and what the frames made so far took.
struct Budget {
    room: usize,
    used: usize,
}

impl Budget {
    fn full(&self) -> bool {
        self.used >= self.room
    }
}

/// Where a primary's frames go: [`Transmit`]s of [`Frame::Diff`] ([`Primary::poll`]), or
/// frame bodies encoded as they are built ([`Primary::poll_encoded`]).
trait Sink {
    type Batch: Batch;
    /// A frame of `instance` in `term` following on `base`, whose ops should take about
    /// `capacity` bytes (what the buffer reserves: a grown buffer copies what it holds).
    fn begin(&self, instance: u64, term: u64, base: u64, capacity: usize) -> Self::Batch;
    /// Sends `batch` to `node`; applying it brings the replica to `mark`.
    fn push(&mut self, node: u32, batch: Self::Batch, mark: u64);
}

/// The ops of one `Diff` frame being built.
trait Batch {
    /// Appends an op (its bytes are copied).
    fn op(&mut self, op: &DiffOpRef<'_>);
    /// Bytes of the frame body so far.
    fn bytes(&self) -> usize;
}

/// A [`Frame::Diff`] being built.
struct FrameBatch {
    instance: u64,
    term: u64,
    base: u64,
    ops: Vec<DiffOp>,
    bytes: usize,
}

impl Batch for FrameBatch {
    fn op(&mut self, op: &DiffOpRef<'_>) {
        let op = op.to_owned();
        self.bytes += op.wire_len();
        self.ops.push(op);
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Sink for Vec<Transmit> {
    type Batch = FrameBatch;

    fn begin(&self, instance: u64, term: u64, base: u64, _capacity: usize) -> FrameBatch {
        FrameBatch {
            instance,
            term,
            base,
            ops: Vec::new(),
            bytes: DiffWriter::EMPTY_LEN,
        }
    }

    fn push(&mut self, node: u32, batch: FrameBatch, mark: u64) {
        Self::push(
            self,
            Transmit {
                node,
                frame: Frame::Diff {
                    instance: batch.instance,
                    term: batch.term,
                    base: batch.base,
                    mark,
                    ops: batch.ops,
                },
            },
        );
    }
}

impl Batch for DiffWriter {
    fn op(&mut self, op: &DiffOpRef<'_>) {
        // The inherent `DiffWriter::op`.
        Self::op(self, op);
    }

    fn bytes(&self) -> usize {
        self.len()
    }
}

impl Sink for Vec<EncodedDiff> {
    type Batch = DiffWriter;

    fn begin(&self, instance: u64, term: u64, base: u64, capacity: usize) -> DiffWriter {
        DiffWriter::new(instance, term, base, DiffWriter::EMPTY_LEN + capacity)
    }

    fn push(&mut self, node: u32, batch: DiffWriter, mark: u64) {
        Self::push(
            self,
            EncodedDiff {
                node,
                body: batch.finish(mark),
            },
        );
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

/// Adds a `Put` of section `id` as it is now, if its version is newer than `newer_than`.
/// The bytes go from the replica's slot straight into the frame.
fn put_op(replica: &Replica, id: &[u8], newer_than: u64, batch: &mut impl Batch) {
    let Ok(info) = replica.section_info(id) else {
        return;
    };
    if newer_than != 0 && info.version <= newer_than {
        return;
    }
    let Ok(data) = replica.borrow(id) else {
        return;
    };
    batch.op(&DiffOpRef::Put {
        id,
        expiration: info.expiration,
        data: &data,
    });
}

/// Wire bytes of an op beside its id and data (tag, two lengths, a 64-bit field).
const OP_OVERHEAD: usize = 1 + 4 + 8 + 4;

/// How many of `changes` (a prefix) one frame carries, the seq applying it brings a
/// replica to, and about how many bytes its ops take: all of them, up to `upto`, when the
/// sections they touch fit in `max_bytes` (counted at their current size, which bounds
/// what their op carries); otherwise the longest prefix that fits, up to the seq of its
/// last change. A first section larger than `max_bytes` goes alone.
fn cut_batch(
    replica: &Replica,
    changes: &[Change],
    upto: u64,
    max_bytes: usize,
) -> (usize, u64, usize) {
    let mut seen: BTreeSet<&[u8]> = BTreeSet::new();
    let mut bytes = 0usize;
    for (i, c) in changes.iter().enumerate() {
        let Some(id) = c.id.as_deref() else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        let size = replica
            .section_info(id)
            .map_or(0, |info| usize::try_from(info.size).unwrap_or(usize::MAX));
        let cost = OP_OVERHEAD.saturating_add(id.len()).saturating_add(size);
        if bytes > 0 && bytes.saturating_add(cost) > max_bytes {
            return (i, changes[i - 1].seq, bytes);
        }
        bytes = bytes.saturating_add(cost);
    }
    (changes.len(), upto, bytes)
}

/// Turns a batch of journal records into ops, one per section, in the order of each
/// section's last change (so a delete that made room precedes the create that used it).
/// Section bytes go from the replica's slots straight into the frame.
fn batch_ops(replica: &Replica, changes: &[Change], batch: &mut impl Batch) {
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
    for (id, t) in order {
        match replica.section_info(id) {
            Err(_) => batch.op(&DiffOpRef::Delete { id }),
            Ok(info) if t.only_expiration => batch.op(&DiffOpRef::Expire {
                id,
                expiration: info.expiration,
            }),
            Ok(info) => {
                // Deleted between the two reads: a later record says so.
                let Ok(data) = replica.borrow(id) else {
                    continue;
                };
                match t.write.filter(|_| t.count == 1 && !t.deleted) {
                    Some((offset, len)) if offset <= info.size => {
                        let size = data.len() as u64;
                        if offset > size {
                            continue; // shrunk since: a later record says so
                        }
                        let end = offset.saturating_add(len).min(info.size).min(size);
                        let range = offset as usize..end as usize;
                        batch.op(&DiffOpRef::Write {
                            id,
                            offset,
                            data: &data[range],
                        });
                    }
                    _ => batch.op(&DiffOpRef::Put {
                        id,
                        expiration: info.expiration,
                        data: &data,
                    }),
                }
            }
        }
    }
    if lost_delete {
        let ids: Vec<Vec<u8>> = replica.sections(SectionFilter::Any).map(|s| s.id).collect();
        let ids: Vec<&[u8]> = ids.iter().map(Vec::as_slice).collect();
        batch.op(&DiffOpRef::Retain { ids });
    }
}

/// Applies a `Diff` received for `instance` to the local replica and returns the answer
/// for the primary (`Ack` with the position now held, or `Stale` naming this replica's
/// term when the frame's term is older, or newer without being a snapshot).
///
/// Arrival callbacks on this node fire from the replica's own journal.
pub fn apply_diff(
    replica: &Replica,
    instance: u64,
    term: u64,
    base: u64,
    mark: u64,
    ops: &[DiffOp],
) -> Frame {
    apply_diff_ref(
        replica,
        &DiffRef {
            instance,
            term,
            base,
            mark,
            ops: ops.iter().map(DiffOp::as_ref).collect(),
        },
    )
}

/// [`apply_diff`] for a diff decoded in place ([`DiffRef::decode`]): section bytes go
/// from the received frame straight into the replica.
pub fn apply_diff_ref(replica: &Replica, diff: &DiffRef<'_>) -> Frame {
    apply_diff_checked(replica, diff).0
}

/// [`apply_diff_ref`], also returning the engine's refusal when an op could not be
/// applied (the frame then acknowledges the position the replica still holds), for a
/// driver that counts them (ckptd's metrics: spare slots or section resources exhausted).
pub fn apply_diff_checked(replica: &Replica, diff: &DiffRef<'_>) -> (Frame, Option<SectionError>) {
    let DiffRef {
        instance,
        term,
        base,
        mark,
        ref ops,
    } = *diff;
    let (pterm, pseq) = replica.replication_position();
    // A node named primary in a term holds that term in its replica's role (an
    // ALL_REPLICAS primary publishes into its replica, which keeps the position it was
    // named at until a write is published): a primary of an older term is fenced, even if
    // this replica's position is still of that term (a restarted ALL_REPLICAS primary
    // acknowledged the diffs of the primary it had replaced, which then confirmed a write
    // the promoted replica never had).
    let fence = pterm.max(replica.role().1);
    let stale = Frame::Stale {
        instance,
        term: fence,
    };
    if term < fence {
        return (stale, None);
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
        if let Err(e) = apply_ops(replica, ops) {
            // Leave the position INCOMPLETE: the primary's probe restarts the snapshot.
            return (ack(INCOMPLETE), Some(e));
        }
        if mark != SNAPSHOT {
            replica.set_replication_position(term, mark);
            return (ack(mark), None);
        }
        return (ack(INCOMPLETE), None);
    }
    if term > pterm {
        // A new primary's journal means nothing to this replica: ask for a snapshot,
        // naming the term of the position held (not the role's: a replica named in this
        // term holds nothing of it yet, and a primary vetting its replicas reads the
        // term as the state they hold).
        return (
            Frame::Stale {
                instance,
                term: pterm,
            },
            None,
        );
    }
    if base != pseq || mark < base {
        return (ack(pseq), None);
    }
    match apply_ops(replica, ops) {
        Ok(()) => {
            replica.set_replication_position(term, mark);
            (ack(mark), None)
        }
        Err(e) => (ack(pseq), Some(e)),
    }
}

/// Applies ops in order; an op refused for want of room is retried once the others are
/// in (a coalesced batch may grow one section before another shrinks).
fn apply_ops(replica: &Replica, ops: &[DiffOpRef<'_>]) -> Result<(), SectionError> {
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

fn apply_op(a: &ckpt_engine::Applier<'_>, op: &DiffOpRef<'_>) -> Result<(), SectionError> {
    match *op {
        DiffOpRef::Put {
            id,
            expiration,
            data,
        } => a.put(id, expiration, data),
        DiffOpRef::Write { id, offset, data } => a.write(id, offset, data),
        DiffOpRef::Delete { id } => a.delete(id).map(|_| ()),
        DiffOpRef::Expire { id, expiration } => match a.set_expiration(id, expiration) {
            Err(SectionError::NotExist) => Ok(()),
            r => r,
        },
        DiffOpRef::Retain { ref ids } => {
            let mut keep: Vec<&[u8]> = ids.clone();
            keep.sort_unstable();
            a.retain(|id| keep.binary_search(&id).is_ok()).map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use ckpt_engine::{ReplicaAttributes, ReplicaLimits, Role, TIME_END};

    use super::*;

    fn replica() -> Replica {
        let attrs = ReplicaAttributes {
            creation_flags: 2,
            checkpoint_size: 64 * 8192,
            retention_ns: 0,
            max_sections: 64,
            max_section_size: 8192,
            max_section_id_size: 16,
        };
        Replica::create_in_memory(&attrs, &ReplicaLimits::default()).expect("in-memory replica")
    }

    fn contents(r: &Replica) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
        let mut v: Vec<_> = r
            .sections(SectionFilter::Any)
            .map(|s| {
                let data = r.read_to_vec(&s.id).expect("read");
                (s.id, s.expiration, data)
            })
            .collect();
        v.sort();
        v
    }

    /// Applies encoded frames to `rep` and hands the answers back to `p`.
    fn deliver(p: &mut Primary, primary: &Replica, rep: &Replica, frames: &[EncodedDiff]) {
        for d in frames {
            let diff = DiffRef::decode(&d.body).unwrap().unwrap();
            match apply_diff_ref(rep, &diff) {
                Frame::Ack { term, seq, .. } => p.on_ack(d.node, term, seq, primary, NOW),
                Frame::Stale { term, .. } => assert_eq!(p.on_stale(d.node, term), None),
                other => panic!("replica answered {other:?}"),
            }
        }
    }

    const NOW: Duration = Duration::from_secs(1);

    /// A primary in term 1 whose replica on node 2 (empty, in term 1 at seq 0) follows
    /// its journal.
    fn streaming(config: ReplConfig) -> (Primary, Replica, Replica) {
        let primary = replica();
        let rep = replica();
        rep.set_role(Role::Replica, 1);
        rep.set_replication_position(1, 0);
        let mut p = Primary::new(7, 1, config);
        p.set_replicas(&[2], |_| true);
        p.peer_up(2);
        let mut out = Vec::new();
        p.poll_encoded(&primary, NOW, &|_| usize::MAX, &mut out);
        assert_eq!(out.len(), 1, "a probe");
        deliver(&mut p, &primary, &rep, &out);
        assert_eq!(p.acked_by(2), Some(0));
        (p, primary, rep)
    }

    #[test]
    fn encoded_frames_are_the_frames_poll_makes() {
        let source = replica();
        for i in 0..20u8 {
            source
                .create_section(Some(&[b's', i]), TIME_END, &[i; 3000])
                .unwrap();
        }
        let config = ReplConfig {
            max_batch_bytes: 10_000,
            ..ReplConfig::default()
        };
        let mut frames = Primary::new(7, 1, config.clone());
        let mut encoded = Primary::new(7, 1, config);
        for p in [&mut frames, &mut encoded] {
            p.set_replicas(&[2, 3], |_| true);
            p.peer_up(2);
            p.peer_up(3);
        }
        let check = |frames: &mut Primary, encoded: &mut Primary| {
            let mut a = Vec::new();
            let mut b = Vec::new();
            frames.poll(&source, NOW, &mut a);
            encoded.poll_encoded(&source, NOW, &|_| usize::MAX, &mut b);
            assert_eq!(a.len(), b.len());
            for (a, b) in a.iter().zip(&b) {
                assert_eq!(a.node, b.node);
                assert_eq!(Frame::decode(&b.body).as_ref(), Ok(&a.frame));
            }
            a.len()
        };
        assert_eq!(check(&mut frames, &mut encoded), 2, "probes");
        // Node 2 has nothing (snapshot), node 3 is at seq 5 of this term (journal).
        for p in [&mut frames, &mut encoded] {
            assert_eq!(p.on_stale(2, 0), None);
            p.on_ack(3, 1, 5, &source, NOW);
        }
        assert!(check(&mut frames, &mut encoded) > 4);
        source.overwrite(&[b's', 1], &[9; 100]).unwrap();
        source.delete_section(&[b's', 2]).unwrap();
        source.set_expiration(&[b's', 3], 1 << 60).unwrap();
        for p in [&mut frames, &mut encoded] {
            p.on_ack(3, 1, source.commit_seq() - 3, &source, NOW);
        }
        assert!(check(&mut frames, &mut encoded) > 0);
    }

    #[test]
    fn journal_batches_are_cut_at_max_batch_bytes_and_converge() {
        let max = 10_000;
        let (mut p, primary, rep) = streaming(ReplConfig {
            max_batch_bytes: max,
            ..ReplConfig::default()
        });
        for i in 0..30u8 {
            primary
                .create_section(Some(&[b's', i]), TIME_END, &[i; 3000])
                .unwrap();
        }
        // One section larger than a frame goes alone.
        primary.overwrite(&[b's', 7], &[7; 8000]).unwrap();
        let mut out = Vec::new();
        p.poll_encoded(&primary, NOW, &|_| usize::MAX, &mut out);
        assert!(out.len() >= 9, "{} frames", out.len());
        for d in &out {
            let diff = DiffRef::decode(&d.body).unwrap().unwrap();
            assert!(
                d.body.len() <= max || diff.ops.len() == 1,
                "{} bytes in {} ops",
                d.body.len(),
                diff.ops.len()
            );
            assert!(diff.mark > diff.base);
        }
        deliver(&mut p, &primary, &rep, &out);
        assert_eq!(contents(&rep), contents(&primary));
        assert_eq!(rep.replication_position(), (1, primary.commit_seq()));
        assert_eq!(p.acked_floor(), Some(primary.commit_seq()));
    }

    #[test]
    fn a_poll_makes_what_the_link_has_room_for_and_says_it_wants_more() {
        let (mut p, primary, rep) = streaming(ReplConfig {
            max_batch_bytes: 4096,
            ..ReplConfig::default()
        });
        for i in 0..12u8 {
            primary
                .create_section(Some(&[b's', i]), TIME_END, &[i; 3000])
                .unwrap();
        }
        let mut out = Vec::new();
        p.poll_encoded(&primary, NOW, &|_| 0, &mut out);
        assert!(out.is_empty());
        assert!(p.wants_room());
        p.poll_encoded(&primary, NOW, &|_| 1, &mut out);
        assert_eq!(out.len(), 1, "a frame is never split");
        assert!(p.wants_room());
        deliver(&mut p, &primary, &rep, &out);
        out.clear();
        p.poll_encoded(&primary, NOW, &|_| usize::MAX, &mut out);
        assert!(!p.wants_room());
        deliver(&mut p, &primary, &rep, &out);
        assert_eq!(contents(&rep), contents(&primary));
        // Nothing left: no frame, and no room wanted.
        out.clear();
        p.poll_encoded(&primary, NOW, &|_| 0, &mut out);
        assert!(out.is_empty());
        assert!(!p.wants_room());
    }

    #[test]
    fn follower_status_shows_what_is_sent_and_what_is_acknowledged() {
        let (mut p, primary, rep) = streaming(ReplConfig::default());
        assert_eq!(p.follower(3), None, "not a replica of it");
        primary
            .create_section(Some(b"a"), TIME_END, &[1; 100])
            .unwrap();
        let mut out = Vec::new();
        p.poll_encoded(&primary, NOW, &|_| usize::MAX, &mut out);
        let sut = p.follower(2).expect("node 2 follows");
        assert!(sut.up && !sut.snapshot);
        assert_eq!((sut.acked, sut.sent), (0, primary.commit_seq()));
        assert!(sut.unacked_bytes >= 100, "{sut:?}");
        deliver(&mut p, &primary, &rep, &out);
        let sut = p.follower(2).expect("node 2 follows");
        assert_eq!((sut.acked, sut.unacked_bytes), (primary.commit_seq(), 0));
        p.peer_down(2);
        assert!(!p.follower(2).expect("still in the set").up);
    }

    #[test]
    fn a_snapshot_goes_as_the_link_takes_it() {
        let primary = replica();
        for i in 0..16u8 {
            primary
                .create_section(Some(&[b's', i]), TIME_END, &[i; 5000])
                .unwrap();
        }
        let rep = replica();
        rep.set_role(Role::Replica, 0);
        let mut p = Primary::new(
            7,
            1,
            ReplConfig {
                max_batch_bytes: 8192,
                ..ReplConfig::default()
            },
        );
        p.set_replicas(&[2], |_| true);
        p.peer_up(2);
        let mut rounds = 0;
        loop {
            let mut out = Vec::new();
            p.poll_encoded(&primary, NOW, &|_| 10_000, &mut out);
            if out.is_empty() {
                break;
            }
            assert!(out.iter().map(|d| d.body.len()).sum::<usize>() < 10_000 + 8192 + 5100);
            deliver(&mut p, &primary, &rep, &out);
            rounds += 1;
        }
        assert!(rounds >= 8, "{rounds} polls");
        assert_eq!(contents(&rep), contents(&primary));
        assert_eq!(p.acked_floor(), Some(primary.resync_point()));
        let f = p.follower(2).expect("node 2 follows");
        assert_eq!(
            f.unacked_bytes, 0,
            "a finished snapshot's parts still count against the window: {f:?}"
        );
    }
}
