//! The applications of the simulation: writers that behave as `ckpt-agent` does in
//! cluster mode (agent/src/checkpoint.rs), over in-memory agent sessions.
//!
//! - Open, section creation and every ALL_REPLICAS write go to the node's ckptd.
//! - An ACTIVE_REPLICA write goes straight into the node's replica (the mapping the agent
//!   holds from the open) when that replica's role is primary, else to ckptd, which
//!   forwards it to the primary. Synchronize waits for the replica header's acked seq in
//!   the first case and asks ckptd in the second.
//!
//! Every attempt is recorded with its outcome, so the checks can tell what must, may and
//! must not be in the final state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ckpt_engine::{Replica, Role, WriteElement};
use ckpt_tools::ckptd::serve::{code, section_code};
use ckpt_tools::ckptd::{LocalSession, MemoryStore};
use ckpt_transport::wire::{
    Attrs, CkptAssign, DirOp, DirReply, Frame, PROTOCOL_VERSION, RemoteOp, RemoteResult, ReqId,
    WriteElem,
};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, error::TryRecvError};

use super::plan::Rng;

/// Section ids: an 8-byte counter written in place, a 4096-byte log in which the write of
/// value `v` sets byte `v` (so no write can hide the loss of another), and a blob that
/// overwrites replace (its size changes with the value).
pub(crate) const COUNTER: &[u8] = b"counter";
pub(crate) const LOG: &[u8] = b"log";
pub(crate) const BLOB: &[u8] = b"blob";
pub(crate) const LOG_LEN: u64 = 4096;

/// SA_CKPT_WR_ALL_REPLICAS, SA_CKPT_WR_ACTIVE_REPLICA.
pub(crate) const ALL_REPLICAS: u32 = 0x1;
/// SA_AIS_ERR_FAILED_OPERATION: a synchronize reports writes lost with a deposed primary.
const FAILED_OPERATION: u32 = 21;
pub(crate) const ACTIVE_REPLICA: u32 = 0x2;
/// SA_CKPT_CHECKPOINT_READ | WRITE, and CREATE.
const OPEN_RW: u32 = 0x3;
const OPEN_CREATE: u32 = 0x4;
/// SA_AIS_ERR_NOT_EXIST
pub(crate) const NOT_EXIST: u32 = code::NOT_EXIST;
const TIME_END: i64 = i64::MAX;

/// How long the application waits for ckptd before it counts the outcome as unknown and
/// starts over with a new session (ckptd answers an ALL_REPLICAS write within 5 s).
const PATIENCE: Duration = Duration::from_secs(8);
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);

/// The blob's content for value `v`: the value, then a filler whose length depends on it.
pub(crate) fn blob(v: u64) -> Vec<u8> {
    let mut d = v.to_le_bytes().to_vec();
    d.extend(std::iter::repeat_n(
        v as u8,
        (v.wrapping_mul(37) % 200) as usize,
    ));
    d
}

/// The value of a blob, if it is one `blob` made.
pub(crate) fn blob_value(d: &[u8]) -> Option<u64> {
    let v = u64::from_le_bytes(d.get(..8)?.try_into().ok()?);
    (blob(v) == d).then_some(v)
}

pub(crate) fn attrs(flags: u32) -> Attrs {
    Attrs {
        creation_flags: flags,
        checkpoint_size: 16 * 1024,
        retention: 3_600_000_000_000,
        max_sections: 8,
        max_section_size: LOG_LEN,
        max_section_id_size: 16,
    }
}

/// One simulated host as the harness and the applications see it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Its replicas (heap-backed; they outlive a crash of the host's software).
    pub(crate) store: MemoryStore,
    /// Where its ckptd takes agent sessions (set by the host's software when it starts).
    pub(crate) sessions: Option<UnboundedSender<LocalSession>>,
    /// Starts of its software so far.
    pub(crate) boots: u32,
    /// Whether its software runs.
    pub(crate) running: bool,
}

pub(crate) type Slots = BTreeMap<u32, Slot>;

/// A time-stamped event list, printed when a seed fails.
#[derive(Debug, Default)]
pub(crate) struct Log(Vec<(Duration, String)>);

impl Log {
    pub(crate) fn add(&mut self, now: Duration, what: String) {
        self.0.push((now, what));
    }

    /// A digest of the events: equal for two runs that went the same way.
    pub(crate) fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }

    pub(crate) fn tail(&self, n: usize) -> String {
        let mut s = String::new();
        for (t, e) in &self.0[self.0.len().saturating_sub(n)..] {
            let _ = writeln!(s, "  {:>9.3}s {e}", t.as_secs_f64());
        }
        s
    }
}

/// An answer from ckptd.
#[derive(Debug)]
pub(crate) enum Answer {
    Dir(DirReply),
    Remote(RemoteResult),
}

/// An agent session with one node's ckptd.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) node: u32,
    tx: UnboundedSender<Frame>,
    rx: UnboundedReceiver<Bytes>,
    id: u64,
    next: u64,
    answers: BTreeMap<u64, Answer>,
    /// The daemon ended the session (its host crashed).
    pub(crate) dead: bool,
}

impl Client {
    /// Opens a session with the ckptd of `node`, if its software runs.
    pub(crate) fn connect(slot: &Slot, node: u32, id: u64) -> Option<Self> {
        if !slot.running {
            return None;
        }
        let (tx, to_node) = mpsc::unbounded_channel();
        let (from_node, rx) = mpsc::unbounded_channel();
        slot.sessions
            .as_ref()?
            .send(LocalSession { to_node, from_node })
            .ok()?;
        tx.send(Frame::Hello {
            version: PROTOCOL_VERSION,
            node,
            incarnation: id,
        })
        .ok()?;
        Some(Self {
            node,
            tx,
            rx,
            id,
            next: 0,
            answers: BTreeMap::new(),
            dead: false,
        })
    }

    fn req(&mut self) -> ReqId {
        self.next += 1;
        ReqId {
            node: 0,
            incarnation: self.id,
            counter: self.next,
        }
    }

    fn send(&mut self, f: Frame) {
        if self.tx.send(f).is_err() {
            self.dead = true;
        }
    }

    /// Sends a directory request; returns its number.
    pub(crate) fn request(&mut self, op: DirOp) -> u64 {
        let req = self.req();
        self.send(Frame::Request { req, op });
        req.counter
    }

    /// Sends a checkpoint operation; returns its number.
    pub(crate) fn remote(&mut self, instance: u64, op: RemoteOp) -> u64 {
        let req = self.req();
        self.send(Frame::Remote { req, instance, op });
        req.counter
    }

    /// Reads what ckptd sent.
    pub(crate) fn poll(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(b) => match Frame::decode(&b[4..]) {
                    Ok(Frame::Reply { req, result }) => {
                        self.answers.insert(req.counter, Answer::Dir(result));
                    }
                    Ok(Frame::RemoteReply { req, result }) => {
                        self.answers.insert(req.counter, Answer::Remote(result));
                    }
                    Ok(Frame::Welcome { .. }) => {}
                    other => panic!("node {} sent an agent {other:?}", self.node),
                },
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    /// The answer to request `n`, once it came.
    pub(crate) fn take(&mut self, n: u64) -> Option<Answer> {
        self.answers.remove(&n)
    }
}

/// The consistency level of a writer's checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Active,
    AllReplicas,
}

/// What an attempt wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    /// `counter` := v in place and `log[v]` := 1, in one write.
    Write,
    /// `blob` := blob(v).
    Overwrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pending,
    Ok,
    /// Refused: the write did not happen.
    Failed(u32),
    /// TIMEOUT, or no answer: it may or may not have happened.
    Unknown,
}

/// One write attempt.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    /// The agent session (a synchronize confirms the writes of its own session only: a
    /// writer on a new session is a new process as far as ckptd knows).
    pub(crate) session: u64,
    pub(crate) value: u64,
    pub(crate) op: Op,
    pub(crate) node: u32,
    /// Written straight into the node's replica (the agent's shm path).
    pub(crate) direct: bool,
    pub(crate) end: Duration,
    pub(crate) outcome: Outcome,
    /// Accepted by a direct write on a primary whose term was already superseded: a node
    /// holding a replica of the checkpoint had the primary role in a newer term.
    pub(crate) deposed: Option<(u32, u64)>,
}

/// One synchronize.
#[derive(Clone, Debug)]
pub(crate) struct SyncRecord {
    pub(crate) session: u64,
    pub(crate) node: u32,
    /// Waited on the local replica's acked seq (the node's replica was the primary).
    pub(crate) direct: bool,
    pub(crate) start: Duration,
    pub(crate) ok: bool,
    /// Answered FAILED_OPERATION: writes of the session were lost with a deposed primary;
    /// a later synchronize confirms only what the session wrote after this one started.
    pub(crate) lost: bool,
}

#[derive(Debug)]
enum State {
    Detached,
    Opening {
        req: u64,
        until: Duration,
    },
    Creating {
        req: u64,
        until: Duration,
    },
    Ready,
    Writing {
        req: u64,
        until: Duration,
    },
    SyncRemote {
        after: Vec<(u64, u64)>,
        req: u64,
        start: Duration,
        until: Duration,
    },
    SyncLocal {
        after: Vec<(u64, u64)>,
        /// The primary's term when it began: a later one numbers another journal.
        term: u64,
        seq: u64,
        start: Duration,
        until: Duration,
    },
}

/// What the writer is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goal {
    /// Write (and synchronize) at random.
    Run,
    /// Finish what is under way, start nothing.
    Idle,
    /// One write (and, for ACTIVE_REPLICA, one synchronize) that succeed, retrying.
    Confirm,
}

/// A writer.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) name: &'static str,
    pub(crate) ckpt: String,
    pub(crate) kind: Kind,
    /// Its incarnation in request ids; each session gets the next.
    id: u64,
    /// The node it uses (or will use).
    pub(crate) node: u32,
    client: Option<Client>,
    /// The replica the open mapped on the node, if the node holds one.
    mapped: Option<Arc<Replica>>,
    pub(crate) instance: Option<u64>,
    /// Sections still to create before the first write.
    to_create: usize,
    state: State,
    wake: Duration,
    next_value: u64,
    rng: Rng,
    pub(crate) goal: Goal,
    /// When the last [`Goal::Confirm`] was met.
    pub(crate) confirmed: Option<Duration>,
    confirm_wrote: bool,
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) syncs: Vec<SyncRecord>,
    /// As the agent keeps per handle: direct writes no synchronize confirmed yet, as
    /// (term, highest commit seq).
    unconfirmed: Vec<(u64, u64)>,
    pending: Option<usize>,
    /// Placements the opens returned.
    pub(crate) placements: Vec<CkptAssign>,
    /// Something the writer saw that must not happen.
    pub(crate) violation: Option<String>,
}

impl App {
    pub(crate) fn new(name: &'static str, kind: Kind, node: u32, id: u64, seed: u64) -> Self {
        Self {
            name,
            ckpt: format!("safCkpt={name}"),
            kind,
            id: id << 32,
            node,
            client: None,
            mapped: None,
            instance: None,
            to_create: 3,
            state: State::Detached,
            wake: Duration::ZERO,
            next_value: 1,
            rng: Rng::new(seed ^ id.wrapping_mul(0x9e37_79b9)),
            goal: Goal::Run,
            confirmed: None,
            confirm_wrote: false,
            attempts: Vec::new(),
            syncs: Vec::new(),
            unconfirmed: Vec::new(),
            pending: None,
            violation: None,
            placements: Vec::new(),
        }
    }

    fn flags(&self) -> u32 {
        match self.kind {
            Kind::Active => ACTIVE_REPLICA,
            Kind::AllReplicas => ALL_REPLICAS,
        }
    }

    /// Whether an operation is under way.
    pub(crate) fn busy(&self) -> bool {
        !matches!(self.state, State::Detached | State::Ready)
    }

    pub(crate) fn set_goal(&mut self, goal: Goal) {
        self.goal = goal;
        if goal == Goal::Confirm {
            self.confirmed = None;
            self.confirm_wrote = false;
        }
    }

    fn lose_session(&mut self, now: Duration, why: &str, log: &mut Log) {
        log.add(
            now,
            format!("{}: session with node {} lost: {why}", self.name, self.node),
        );
        if let Some(i) = self.pending.take() {
            self.attempts[i].outcome = Outcome::Unknown;
            self.attempts[i].end = now;
        }
        self.client = None;
        self.mapped = None;
        self.state = State::Detached;
        self.wake = now + self.rng.ms(50, 300);
    }

    /// Advances the writer after a simulation step.
    pub(crate) fn step(&mut self, now: Duration, slots: &Slots, log: &mut Log) {
        if let Some(c) = self.client.as_mut() {
            c.poll();
            if c.dead {
                self.lose_session(now, "ckptd gone", log);
            }
        }
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Detached => {
                self.state = State::Detached;
                if self.goal != Goal::Idle && now >= self.wake {
                    self.attach(now, slots, log);
                }
            }
            State::Opening { req, until } => self.opening(req, until, now, slots, log),
            State::Creating { req, until } => {
                match self.client.as_mut().and_then(|c| c.take(req)) {
                    Some(Answer::Remote(
                        RemoteResult::Created { .. }
                        | RemoteResult::Failed {
                            code: code::EXIST, ..
                        },
                    )) => {
                        self.to_create -= 1;
                        self.state = State::Ready;
                    }
                    Some(a) => {
                        log.add(now, format!("{}: create section: {a:?}", self.name));
                        self.state = State::Ready;
                        self.wake = now + self.rng.ms(50, 200);
                    }
                    None if now >= until => self.lose_session(now, "create unanswered", log),
                    None => self.state = State::Creating { req, until },
                }
            }
            State::Ready => self.ready(now, slots, log),
            State::Writing { req, until } => match self.client.as_mut().and_then(|c| c.take(req)) {
                Some(Answer::Remote(r)) => {
                    let outcome = match r {
                        RemoteResult::Done => Outcome::Ok,
                        RemoteResult::Applied { term, seq } => {
                            self.wrote_at(term, seq);
                            Outcome::Ok
                        }
                        RemoteResult::Failed {
                            code: code::TIMEOUT,
                            ..
                        } => Outcome::Unknown,
                        RemoteResult::Failed { code, .. } => Outcome::Failed(code),
                        other => panic!("{}: a write answered {other:?}", self.name),
                    };
                    self.finish_attempt(now, outcome, log);
                }
                Some(a) => panic!("{}: a write answered {a:?}", self.name),
                None if now >= until => self.lose_session(now, "write unanswered", log),
                None => self.state = State::Writing { req, until },
            },
            State::SyncRemote {
                after,
                req,
                start,
                until,
            } => match self.client.as_mut().and_then(|c| c.take(req)) {
                Some(Answer::Remote(r)) => {
                    let ok = matches!(r, RemoteResult::Done);
                    let lost = matches!(
                        r,
                        RemoteResult::Failed {
                            code: FAILED_OPERATION,
                            ..
                        }
                    );
                    if ok || lost {
                        self.confirmed(&after);
                    }
                    self.finish_sync(now, start, false, (ok, lost), &format!("{r:?}"), log);
                }
                Some(a) => panic!("{}: a synchronize answered {a:?}", self.name),
                None if now >= until => self.lose_session(now, "synchronize unanswered", log),
                None => {
                    self.state = State::SyncRemote {
                        after,
                        req,
                        start,
                        until,
                    }
                }
            },
            State::SyncLocal {
                after,
                term,
                seq,
                start,
                until,
            } => {
                let acked = self.mapped.as_ref().map_or(0, |r| r.acked_seq());
                let role = self.mapped.as_ref().map(|r| r.role());
                if acked >= seq && role != Some((Role::Primary, term)) {
                    // A new term began meanwhile: as the agent, ask the primary.
                    self.sync_remote(now, after, start);
                } else if acked >= seq {
                    self.confirmed(&after);
                    self.finish_sync(now, start, true, (true, false), "acked", log);
                } else if now >= until {
                    self.finish_sync(now, start, true, (false, false), "TIMEOUT", log);
                } else {
                    self.state = State::SyncLocal {
                        after,
                        term,
                        seq,
                        start,
                        until,
                    };
                }
            }
        }
    }

    fn attach(&mut self, now: Duration, slots: &Slots, log: &mut Log) {
        if !slots[&self.node].running {
            let up: Vec<u32> = slots
                .iter()
                .filter(|(_, s)| s.running)
                .map(|(n, _)| *n)
                .collect();
            if up.is_empty() {
                self.wake = now + Duration::from_millis(100);
                return;
            }
            self.node = self.rng.pick(&up);
        }
        self.id += 1;
        self.unconfirmed.clear();
        let Some(mut c) = Client::connect(&slots[&self.node], self.node, self.id) else {
            self.wake = now + Duration::from_millis(100);
            return;
        };
        log.add(
            now,
            format!("{}: session with node {}", self.name, self.node),
        );
        let req = c.request(DirOp::Open {
            name: self.ckpt.clone(),
            attrs: Some(attrs(self.flags())),
            flags: OPEN_RW | OPEN_CREATE,
            node: 0,
        });
        self.client = Some(c);
        self.state = State::Opening {
            req,
            until: now + Duration::from_secs(35),
        };
    }

    fn opening(&mut self, req: u64, until: Duration, now: Duration, slots: &Slots, log: &mut Log) {
        match self.client.as_mut().and_then(|c| c.take(req)) {
            Some(Answer::Dir(DirReply::Opened { ckpt })) => {
                if let Some(i) = self.instance.filter(|i| *i != ckpt.instance) {
                    self.violation.get_or_insert(format!(
                        "{}: {} named instance {i:x}, now {:x} (replicas {:?}, primary {:?}, term {:x})",
                        self.name, self.ckpt, ckpt.instance, ckpt.replicas, ckpt.primary, ckpt.term
                    ));
                }
                self.instance = Some(ckpt.instance);
                self.placements.push(ckpt.clone());
                self.mapped = if ckpt.replicas.contains(&self.node) {
                    slots[&self.node].store.replica(ckpt.instance)
                } else {
                    None
                };
                log.add(
                    now,
                    format!(
                        "{}: opened {:x} on node {}: replicas {:?} primary {:?} term {:x}{}",
                        self.name,
                        ckpt.instance,
                        self.node,
                        ckpt.replicas,
                        ckpt.primary,
                        ckpt.term,
                        if self.mapped.is_some() {
                            ", mapped"
                        } else {
                            ""
                        }
                    ),
                );
                self.state = State::Ready;
            }
            Some(a) => {
                log.add(
                    now,
                    format!("{}: open on node {}: {a:?}", self.name, self.node),
                );
                self.client = None;
                self.state = State::Detached;
                self.wake = now + self.rng.ms(100, 400);
            }
            None if now >= until => self.lose_session(now, "open unanswered", log),
            None => self.state = State::Opening { req, until },
        }
    }

    fn ready(&mut self, now: Duration, slots: &Slots, log: &mut Log) {
        if now < self.wake || self.goal == Goal::Idle {
            return;
        }
        let instance = self.instance.expect("opened");
        if self.to_create > 0 {
            let (id, data) = match self.to_create {
                3 => (COUNTER, 0u64.to_le_bytes().to_vec()),
                2 => (LOG, vec![0; LOG_LEN as usize]),
                _ => (BLOB, blob(0)),
            };
            let c = self.client.as_mut().expect("attached");
            let req = c.remote(
                instance,
                RemoteOp::CreateSection {
                    id: Some(id.to_vec()),
                    expiration: TIME_END,
                    data,
                },
            );
            self.state = State::Creating {
                req,
                until: now + PATIENCE,
            };
            return;
        }
        match self.goal {
            Goal::Run => {
                if self.rng.chance(0.01) {
                    let others: Vec<u32> =
                        slots.keys().copied().filter(|n| *n != self.node).collect();
                    self.node = self.rng.pick(&others);
                    log.add(now, format!("{}: moves to node {}", self.name, self.node));
                    self.client = None;
                    self.mapped = None;
                    self.state = State::Detached;
                    return;
                }
                if self.kind == Kind::Active && self.rng.chance(0.2) {
                    self.sync(now);
                } else {
                    self.write(now, slots, log);
                }
            }
            Goal::Confirm if self.confirmed.is_none() => {
                if !self.confirm_wrote {
                    self.write(now, slots, log);
                } else if self.kind == Kind::Active {
                    self.sync(now);
                } else {
                    self.confirmed = Some(now);
                }
            }
            Goal::Confirm | Goal::Idle => {}
        }
    }

    fn write(&mut self, now: Duration, slots: &Slots, log: &mut Log) {
        let instance = self.instance.expect("opened");
        let value = self.next_value;
        if value >= LOG_LEN {
            return; // the log is full: this seed wrote enough
        }
        self.next_value += 1;
        let op = if self.rng.chance(0.7) {
            Op::Write
        } else {
            Op::Overwrite
        };
        let direct = self.kind == Kind::Active
            && self
                .mapped
                .as_ref()
                .is_some_and(|r| r.role().0 == Role::Primary);
        self.attempts.push(Attempt {
            session: self.id,
            value,
            op,
            node: self.node,
            direct,
            end: now,
            outcome: Outcome::Pending,
            deposed: None,
        });
        let i = self.attempts.len() - 1;
        if direct {
            let r = Arc::clone(self.mapped.as_ref().expect("checked"));
            let term = r.role().1;
            let counter = value.to_le_bytes();
            let result = match op {
                Op::Write => r
                    .write(&[
                        WriteElement {
                            id: COUNTER,
                            offset: 0,
                            data: &counter,
                        },
                        WriteElement {
                            id: LOG,
                            offset: value,
                            data: &[1],
                        },
                    ])
                    .map_err(|e| section_code(e.kind)),
                Op::Overwrite => r.overwrite(BLOB, &blob(value)).map_err(section_code),
            };
            let outcome = match result {
                Ok(()) => Outcome::Ok,
                Err(code) => Outcome::Failed(code),
            };
            if outcome == Outcome::Ok {
                self.attempts[i].deposed = superseded(slots, instance, self.node, term);
                self.wrote_at(term, r.commit_seq());
            }
            self.pending = Some(i);
            self.finish_attempt(now, outcome, log);
            return;
        }
        let op = match op {
            Op::Write => RemoteOp::Write {
                elems: vec![
                    WriteElem {
                        id: COUNTER.to_vec(),
                        offset: 0,
                        data: value.to_le_bytes().to_vec(),
                    },
                    WriteElem {
                        id: LOG.to_vec(),
                        offset: value,
                        data: vec![1],
                    },
                ],
            },
            Op::Overwrite => RemoteOp::Overwrite {
                id: BLOB.to_vec(),
                data: blob(value),
            },
        };
        let c = self.client.as_mut().expect("attached");
        let req = c.remote(instance, op);
        self.pending = Some(i);
        self.state = State::Writing {
            req,
            until: now + PATIENCE,
        };
    }

    fn finish_attempt(&mut self, now: Duration, outcome: Outcome, log: &mut Log) {
        let i = self.pending.take().expect("an attempt");
        let a = &mut self.attempts[i];
        a.outcome = outcome;
        a.end = now;
        log.add(
            now,
            format!(
                "{}: {:?} {} on node {}{}: {outcome:?}{}",
                self.name,
                a.op,
                a.value,
                a.node,
                if a.direct { " (direct)" } else { "" },
                a.deposed
                    .map(|(n, t)| format!(" DEPOSED: node {n} is primary in term {t:x}"))
                    .unwrap_or_default()
            ),
        );
        if outcome == Outcome::Ok && self.goal == Goal::Confirm {
            self.confirm_wrote = true;
        }
        if outcome == Outcome::Failed(NOT_EXIST) {
            // The sections are gone: the checkpoint started over after every copy of its
            // state was lost (the directory's `from_nothing`). An application creates
            // them again, as at the start (EXIST where one is still there).
            self.to_create = 3;
        }
        self.state = State::Ready;
        self.wake = now
            + match outcome {
                Outcome::Ok => self.rng.ms(5, 60),
                _ => self.rng.ms(50, 200),
            };
    }

    /// A write of the session at `seq` of the primary's journal in `term`.
    fn wrote_at(&mut self, term: u64, seq: u64) {
        match self.unconfirmed.iter_mut().find(|(t, _)| *t == term) {
            Some(e) => e.1 = e.1.max(seq),
            None => self.unconfirmed.push((term, seq)),
        }
    }

    /// A synchronize confirmed (or reported lost) the writes of `seen`.
    fn confirmed(&mut self, seen: &[(u64, u64)]) {
        self.unconfirmed
            .retain(|(t, s)| !seen.iter().any(|(st, ss)| st == t && s <= ss));
    }

    fn sync(&mut self, now: Duration) {
        let after = self.unconfirmed.clone();
        let local = self.mapped.as_ref().filter(|r| {
            let (role, term) = r.role();
            role == Role::Primary && after.iter().all(|(t, _)| *t == term)
        });
        if let Some(r) = local {
            self.state = State::SyncLocal {
                after,
                term: r.role().1,
                seq: r.commit_seq(),
                start: now,
                until: now + SYNC_TIMEOUT,
            };
            return;
        }
        self.sync_remote(now, after, now);
    }

    /// A synchronize through ckptd, which checks `after` on the primary.
    fn sync_remote(&mut self, now: Duration, after: Vec<(u64, u64)>, start: Duration) {
        let instance = self.instance.expect("opened");
        let c = self.client.as_mut().expect("attached");
        let req = c.remote(
            instance,
            RemoteOp::Synchronize {
                timeout_ns: SYNC_TIMEOUT.as_nanos() as i64,
                after: after.clone(),
            },
        );
        self.state = State::SyncRemote {
            after,
            req,
            start,
            until: now + PATIENCE,
        };
    }

    fn finish_sync(
        &mut self,
        now: Duration,
        start: Duration,
        direct: bool,
        (ok, lost): (bool, bool),
        what: &str,
        log: &mut Log,
    ) {
        log.add(
            now,
            format!(
                "{}: synchronize on node {}{}: {what}",
                self.name,
                self.node,
                if direct { " (local)" } else { "" }
            ),
        );
        self.syncs.push(SyncRecord {
            session: self.id,
            node: self.node,
            direct,
            start,
            ok,
            lost,
        });
        if ok && self.goal == Goal::Confirm && self.confirm_wrote {
            self.confirmed = Some(now);
        }
        self.state = State::Ready;
        self.wake = now + self.rng.ms(5, 60);
    }
}

/// A node other than `me` whose replica of `instance` has the primary role in a term
/// newer than `term`, if any: proof that `term` was superseded.
pub(crate) fn superseded(slots: &Slots, instance: u64, me: u32, term: u64) -> Option<(u32, u64)> {
    slots.iter().find_map(|(n, s)| {
        let r = s.store.replica(instance)?;
        let (role, t) = r.role();
        (*n != me && role == Role::Primary && t > term).then_some((*n, t))
    })
}
