//! The arena against a plain in-memory model. Random section operations, with random ids,
//! sizes and offsets including invalid ones, go to a heap replica and to a `BTreeMap`. Every
//! result must match: values, error kinds, and the erroneous element of vector calls. After
//! every step `fsck` must be clean, `status()` must be the model's, and every section must
//! hold the model's bytes, so a failed call provably changed nothing.
//!
//! The model follows `saf-ckpt-spec.md` §4.1–4.7 and the error lists of §2.3–2.4. The spec
//! leaves some choices open. These are the ones made here, and the engine follows them:
//!
//! - A vector write is validated whole before anything is applied (§0 item 4). First come
//!   each element's arguments and its section, in element order. Then comes the
//!   checkpointSize budget, with the elements applied in order. The error names the first
//!   failing element (§2.4): for the budget, the element whose growth crosses it.
//!   `read_many` fails at the first failing element, in element order.
//! - `create_section` checks maxSections (NO_SPACE) before checkpointSize (NO_RESOURCES).
//! - An explicit empty id, and an expiration time before the epoch, are INVALID_PARAM.
//! - Expired sections read as absent at once (§4.2). The engine reaps them lazily
//!   (`reap_expired`), so until then they still count in `status()` and hold their
//!   descriptor and bytes against maxSections and checkpointSize. Their id is free at
//!   once: creating it again replaces the expired section.
//! - A write of zero bytes at an offset past the end grows the section to that offset.
//! - A read buffer longer than maxSectionSize is not refused. (§2.4 lists `dataSize >
//!   maxSectionSize` as INVALID_PARAM for Read, so the C shim must check it.)
//!
//! Generated ids are not predicted. The model names a generated section with a placeholder
//! (`0xff`, counter), which explicit ids never use, and the test maps it to the id the
//! engine returned. The replica's clock is a thread-local cell that the test controls.

use core::fmt::{self, Debug};
use core::mem::discriminant;
use std::cell::Cell;
use std::collections::BTreeMap;

use ckpt_engine::{
    ReadElement, Replica, ReplicaAttributes, ReplicaLimits, SectionError, SectionFilter, Status,
    TIME_END, VectorError, WriteElement,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// The clock's value when a test case starts: 1 s after the epoch, so times just before it
/// are still positive.
const T0: i64 = 1_000_000_000;
/// Bytes of explicit ids: never a digit, so they cannot collide with generated ids.
/// Includes 0, because ids are binary (§4.1).
const ID_BYTES: [u8; 3] = [b'a', b'b', 0];
/// First byte of the model's placeholder for a generated id.
const GENERATED: u8 = 0xff;

thread_local! {
    /// The clock of the replicas this thread drives. It is per thread, so the tests
    /// running in parallel do not move each other's time.
    static NOW: Cell<i64> = const { Cell::new(T0) };
}

fn test_clock() -> i64 {
    NOW.with(Cell::get)
}

// ---- the model --------------------------------------------------------------------------

#[derive(Clone, PartialEq, Eq)]
struct Section {
    data: Vec<u8>,
    expiration: i64,
    /// The clock at the last data change. `None` for the default section, which is
    /// created before the test can set the clock.
    last_update: Option<i64>,
}

#[derive(Clone)]
struct Model {
    attrs: ReplicaAttributes,
    limits: ReplicaLimits,
    now: i64,
    sections: BTreeMap<Vec<u8>, Section>,
    generated: u32,
}

#[derive(Clone)]
struct WriteOp {
    id: Vec<u8>,
    offset: u64,
    data: Vec<u8>,
}

#[derive(Clone)]
struct ReadOp {
    id: Vec<u8>,
    offset: u64,
    len: usize,
}

#[derive(Clone)]
enum Op {
    /// `id: None` asks for a generated id.
    Create {
        id: Option<Vec<u8>>,
        expiration: i64,
        data: Vec<u8>,
    },
    Delete {
        id: Vec<u8>,
    },
    SetExpiration {
        id: Vec<u8>,
        expiration: i64,
    },
    Overwrite {
        id: Vec<u8>,
        data: Vec<u8>,
    },
    Write(Vec<WriteOp>),
    Read(ReadOp),
    ReadMany(Vec<ReadOp>),
    /// Borrows the section. If `overwrite` is given and the borrow succeeds, the section
    /// is overwritten while the guard is held. The guard must keep showing the old bytes.
    Borrow {
        id: Vec<u8>,
        overwrite: Option<Vec<u8>>,
    },
    Info {
        id: Vec<u8>,
    },
    List(SectionFilter),
    Status,
    AdvanceClock(i64),
    Reap {
        now: i64,
    },
}

/// Bytes as a byte-string literal, so failures print short.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct B<'a>(&'a [u8]);

impl Debug for B<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl Debug for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} exp {} updated {:?}",
            B(&self.data),
            self.expiration,
            self.last_update
        )
    }
}

impl Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.attrs;
        let sections: BTreeMap<B<'_>, &Section> =
            self.sections.iter().map(|(k, v)| (B(k), v)).collect();
        f.debug_struct("Model")
            .field("max_sections", &a.max_sections)
            .field("max_section_size", &a.max_section_size)
            .field("max_section_id_size", &a.max_section_id_size)
            .field("checkpoint_size", &a.checkpoint_size)
            .field("limits", &self.limits)
            .field("now", &self.now)
            .field("sections", &sections)
            .finish()
    }
}

impl Debug for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}={:?}", B(&self.id), self.offset, B(&self.data))
    }
}

impl Debug for ReadOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}+{}", B(&self.id), self.offset, self.len)
    }
}

impl Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = |e: &i64| {
            if *e == TIME_END {
                "never".to_string()
            } else {
                e.to_string()
            }
        };
        match self {
            Self::Create {
                id: Some(id),
                expiration,
                data,
            } => {
                write!(
                    f,
                    "Create({:?}, exp {}, {:?})",
                    B(id),
                    exp(expiration),
                    B(data)
                )
            }
            Self::Create {
                id: None,
                expiration,
                data,
            } => {
                write!(
                    f,
                    "Create(generated, exp {}, {:?})",
                    exp(expiration),
                    B(data)
                )
            }
            Self::Delete { id } => write!(f, "Delete({:?})", B(id)),
            Self::SetExpiration { id, expiration } => {
                write!(f, "SetExpiration({:?}, {})", B(id), exp(expiration))
            }
            Self::Overwrite { id, data } => write!(f, "Overwrite({:?}, {:?})", B(id), B(data)),
            Self::Write(elems) => write!(f, "Write{elems:?}"),
            Self::Read(r) => write!(f, "Read({r:?})"),
            Self::ReadMany(elems) => write!(f, "ReadMany{elems:?}"),
            Self::Borrow { id, overwrite } => {
                write!(
                    f,
                    "Borrow({:?}, then overwrite {:?})",
                    B(id),
                    overwrite.as_deref().map(B)
                )
            }
            Self::Info { id } => write!(f, "Info({:?})", B(id)),
            Self::List(filter) => write!(f, "List({filter:?})"),
            Self::Status => f.write_str("Status"),
            Self::AdvanceClock(by) => write!(f, "AdvanceClock({by})"),
            Self::Reap { now } => write!(f, "Reap({now})"),
        }
    }
}

fn bad_argument() -> SectionError {
    SectionError::BadArgument("")
}

impl Model {
    fn new(attrs: ReplicaAttributes, limits: ReplicaLimits) -> Self {
        let mut sections = BTreeMap::new();
        if attrs.max_sections == 1 {
            // §4.1: the default section exists from the start, never expires, is empty.
            sections.insert(
                Vec::new(),
                Section {
                    data: Vec::new(),
                    expiration: TIME_END,
                    last_update: None,
                },
            );
        }
        Self {
            attrs,
            limits,
            now: T0,
            sections,
            generated: 0,
        }
    }

    fn max_size(&self) -> u64 {
        self.attrs.max_section_size
    }

    fn is_default_checkpoint(&self) -> bool {
        self.attrs.max_sections == 1
    }

    fn is_expired(&self, s: &Section) -> bool {
        s.expiration != TIME_END && s.expiration <= self.now
    }

    /// A section present and not expired (§4.2).
    fn live(&self, id: &[u8]) -> Option<&Section> {
        self.sections.get(id).filter(|s| !self.is_expired(s))
    }

    /// `memoryUsed`: the bytes of every section still stored, expired or not (§4.7).
    fn used(&self) -> u64 {
        self.sections.values().map(|s| s.data.len() as u64).sum()
    }

    fn status(&self) -> Status {
        Status {
            sections: self.sections.len() as u32,
            memory_used: self.used(),
        }
    }

    fn create(
        &mut self,
        id: Option<&[u8]>,
        expiration: i64,
        data: &[u8],
    ) -> Result<Vec<u8>, SectionError> {
        // §4.1: with maxSections == 1, SectionCreate gives EXIST whatever the id.
        if self.is_default_checkpoint() {
            return Err(SectionError::Exists);
        }
        // §2.3: initialDataSize > maxSectionSize is INVALID_PARAM (`TooBig`).
        if data.len() as u64 > self.max_size() {
            return Err(SectionError::TooBig);
        }
        // An absolute time (§4.2) before the epoch is refused, as fsck's `expiration`
        // invariant requires.
        if expiration < 0 {
            return Err(bad_argument());
        }
        let mut generated = None;
        let key = match id {
            Some(id) => {
                // §4.1: idLen ≤ maxSectionIdSize. (A placeholder stands for a generated
                // id, which is never too long.)
                let known = self.sections.contains_key(id);
                if id.len() as u64 > self.attrs.max_section_id_size && !known {
                    return Err(bad_argument());
                }
                // §4.1 and §2.3: with maxSections > 1 no section has the empty id (only
                // the default section does), and idLen 0 with an id is INVALID_PARAM.
                if id.is_empty() {
                    return Err(bad_argument());
                }
                if self.live(id).is_some() {
                    return Err(SectionError::Exists);
                }
                // §4.2: an expired section was deleted when its time came. If it has not
                // been reaped yet, its id is free all the same.
                if self.sections.get(id).is_some_and(|s| self.is_expired(s)) {
                    self.sections.remove(id);
                }
                id.to_vec()
            }
            None => {
                // A generated id needs at least one byte (the engine's documented rule).
                if self.attrs.max_section_id_size == 0 {
                    return Err(bad_argument());
                }
                let mut n = self.generated;
                while self.sections.contains_key(&placeholder(n)) {
                    n += 1;
                }
                generated = Some(n);
                placeholder(n)
            }
        };
        // §4.7: maxSections reached is NO_SPACE (the "resources exhausted" case), checked
        // before checkpointSize, which is enforced with NO_RESOURCES.
        if self.sections.len() >= self.attrs.max_sections as usize {
            return Err(SectionError::NoSpace);
        }
        if self.used() + data.len() as u64 > self.attrs.checkpoint_size {
            return Err(SectionError::NoResources);
        }
        if let Some(n) = generated {
            self.generated = n + 1;
        }
        let section = Section {
            data: data.to_vec(),
            expiration,
            last_update: Some(self.now),
        };
        self.sections.insert(key.clone(), section);
        Ok(key)
    }

    fn delete(&mut self, id: &[u8]) -> Result<(), SectionError> {
        // §4.1: the default section cannot be deleted (INVALID_PARAM).
        if self.is_default_checkpoint() && id.is_empty() {
            return Err(bad_argument());
        }
        self.live(id).ok_or(SectionError::NotExist)?;
        self.sections.remove(id);
        Ok(())
    }

    fn set_expiration(&mut self, id: &[u8], expiration: i64) -> Result<(), SectionError> {
        // §4.1: the default section's expiration is fixed (INVALID_PARAM).
        if (self.is_default_checkpoint() && id.is_empty()) || expiration < 0 {
            return Err(bad_argument());
        }
        self.live(id).ok_or(SectionError::NotExist)?;
        self.sections.get_mut(id).expect("live").expiration = expiration;
        Ok(())
    }

    fn overwrite(&mut self, id: &[u8], data: &[u8]) -> Result<(), SectionError> {
        // §2.4: dataSize > maxSectionSize is INVALID_PARAM (`TooBig`).
        if data.len() as u64 > self.max_size() {
            return Err(SectionError::TooBig);
        }
        let old = self.live(id).ok_or(SectionError::NotExist)?.data.len() as u64;
        let new = data.len() as u64;
        if new > old && self.used() + (new - old) > self.attrs.checkpoint_size {
            return Err(SectionError::NoResources);
        }
        let now = self.now;
        let s = self.sections.get_mut(id).expect("live");
        // §4.5: the size becomes exactly dataSize.
        s.data = data.to_vec();
        s.last_update = Some(now);
        Ok(())
    }

    /// §2.4 and §4.9: all or nothing, and the error names the first failing element. The
    /// whole vector is validated before anything is applied (§0 item 4): first every
    /// element's arguments and section, in element order; then the checkpointSize budget,
    /// with the elements applied in order, so the error names the element whose growth
    /// crosses it.
    fn write(&mut self, elems: &[WriteOp]) -> Result<(), VectorError> {
        let max = self.max_size();
        for (index, e) in elems.iter().enumerate() {
            let fail = |kind| Err(VectorError { index, kind });
            // §2.4: dataSize > maxSectionSize is INVALID_PARAM.
            if e.data.len() as u64 > max {
                return fail(SectionError::TooBig);
            }
            // §4.5: dataOffset + dataSize > maxSectionSize is NO_RESOURCES (OpenSAF).
            if e.offset
                .checked_add(e.data.len() as u64)
                .is_none_or(|end| end > max)
            {
                return fail(SectionError::NoResources);
            }
            if self.live(&e.id).is_none() {
                return fail(SectionError::NotExist);
            }
        }
        let mut staged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut used = self.used();
        for (index, e) in elems.iter().enumerate() {
            let bytes = staged
                .entry(e.id.clone())
                .or_insert_with(|| self.sections[&e.id].data.clone());
            let (start, end) = (e.offset as usize, e.offset as usize + e.data.len());
            if end > bytes.len() {
                // §4.5: sections grow, and holes read as zeros. §4.7: checkpointSize.
                used += (end - bytes.len()) as u64;
                if used > self.attrs.checkpoint_size {
                    return Err(VectorError {
                        index,
                        kind: SectionError::NoResources,
                    });
                }
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(&e.data);
        }
        let now = self.now;
        for (id, data) in staged {
            let s = self.sections.get_mut(&id).expect("live");
            s.data = data;
            s.last_update = Some(now);
        }
        Ok(())
    }

    /// §4.6: `readSize = min(dataSize, sectionSize - dataOffset)`. `dataOffset >
    /// sectionSize` is INVALID_PARAM. `dataOffset == sectionSize` reads 0 bytes.
    fn read(&self, r: &ReadOp) -> Result<Vec<u8>, SectionError> {
        let s = self.live(&r.id).ok_or(SectionError::NotExist)?;
        let size = s.data.len() as u64;
        if r.offset > size {
            return Err(bad_argument());
        }
        let n = (size - r.offset).min(r.len as u64) as usize;
        Ok(s.data[r.offset as usize..][..n].to_vec())
    }

    fn read_many(&self, elems: &[ReadOp]) -> Result<Vec<Vec<u8>>, VectorError> {
        elems
            .iter()
            .enumerate()
            .map(|(index, r)| self.read(r).map_err(|kind| VectorError { index, kind }))
            .collect()
    }

    fn info(&self, id: &[u8]) -> Result<(i64, u64, Option<i64>), SectionError> {
        let s = self.live(id).ok_or(SectionError::NotExist)?;
        Ok((s.expiration, s.data.len() as u64, s.last_update))
    }

    /// `SaCkptSectionsChosenT`: expired sections are never listed; CORRUPTED finds none,
    /// because commits are copy-on-write.
    fn list(&self, filter: SectionFilter) -> Vec<(Vec<u8>, i64, u64)> {
        self.sections
            .iter()
            .filter(|(_, s)| !self.is_expired(s))
            .filter(|(_, s)| match filter {
                SectionFilter::Any => true,
                SectionFilter::Forever => s.expiration == TIME_END,
                SectionFilter::ExpiringAtOrBefore(t) => s.expiration <= t,
                SectionFilter::ExpiringAtOrAfter(t) => s.expiration >= t,
                SectionFilter::Corrupted => false,
            })
            .map(|(id, s)| (id.clone(), s.expiration, s.data.len() as u64))
            .collect()
    }

    fn reap(&mut self, now: i64) -> usize {
        let before = self.sections.len();
        self.sections
            .retain(|_, s| s.expiration == TIME_END || s.expiration > now);
        before - self.sections.len()
    }

    /// Applies `op`, ignoring its result (the reference state machine's step).
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create {
                id,
                expiration,
                data,
            } => {
                let _ = self.create(id.as_deref(), *expiration, data);
            }
            Op::Delete { id } => {
                let _ = self.delete(id);
            }
            Op::SetExpiration { id, expiration } => {
                let _ = self.set_expiration(id, *expiration);
            }
            Op::Overwrite { id, data } => {
                let _ = self.overwrite(id, data);
            }
            Op::Write(elems) => {
                let _ = self.write(elems);
            }
            Op::Borrow {
                id,
                overwrite: Some(data),
            } => {
                if self.live(id).is_some() {
                    let _ = self.overwrite(id, data);
                }
            }
            Op::AdvanceClock(by) => self.now += by,
            Op::Reap { now } => {
                let _ = self.reap(*now);
            }
            Op::Read(_)
            | Op::ReadMany(_)
            | Op::Borrow {
                overwrite: None, ..
            }
            | Op::Info { .. }
            | Op::List(_)
            | Op::Status => {}
        }
    }
}

fn placeholder(n: u32) -> Vec<u8> {
    vec![GENERATED, (n % 256) as u8]
}

// ---- strategies -------------------------------------------------------------------------

/// Random geometry: up to 8 sections of up to 64 bytes, ids up to 6 bytes, and a
/// checkpointSize that is often below `maxSections * maxSectionSize`.
fn geometry(max_sections: BoxedStrategy<u32>) -> BoxedStrategy<Model> {
    (
        max_sections,
        1..=64u64,
        0..=6u64,
        any::<prop::sample::Index>(),
        0..4u8,
    )
        .prop_map(
            |(max_sections, max_section_size, max_section_id_size, budget, knobs)| {
                let cap = u64::from(max_sections) * max_section_size;
                let checkpoint_size = if knobs & 1 == 0 {
                    cap
                } else {
                    budget.index(cap as usize + 1) as u64
                };
                let attrs = ReplicaAttributes {
                    creation_flags: 0,
                    checkpoint_size,
                    retention_ns: 0,
                    max_sections,
                    max_section_size,
                    max_section_id_size,
                };
                // Few journal cells make the ring wrap; 3 spare slots are the fewest a
                // 3-section write (or an overwrite under a held guard) needs.
                let limits = if knobs & 2 == 0 {
                    ReplicaLimits {
                        agents: 64,
                        spare_slots: 3,
                        journal_cells: 64,
                    }
                } else {
                    ReplicaLimits::default()
                };
                Model::new(attrs, limits)
            },
        )
        .prop_flat_map(|m| {
            // Start with some sections, so that the first steps find some (the test
            // creates them in the replica first).
            let (longest, max) = (m.attrs.max_section_id_size as usize, m.max_size() as usize);
            let ids =
                prop::collection::vec(prop::sample::select(ID_BYTES.to_vec()), 1..=longest.max(1));
            let exp = prop_oneof![3 => Just(TIME_END), 1 => T0 + 1..=T0 + 8];
            let data = prop::collection::vec(any::<u8>(), 0..=max);
            let count = if longest == 0 {
                0
            } else {
                m.attrs.max_sections as usize
            };
            (Just(m), prop::collection::vec((ids, exp, data), 0..=count))
        })
        .prop_map(|(mut m, initial)| {
            for (id, expiration, data) in initial {
                let _ = m.create(Some(&id), expiration, &data);
            }
            m
        })
        .boxed()
}

/// An id: mostly a known one (present or expired), else a random one that is mostly of a
/// valid length, sometimes empty or one byte too long.
fn id_strategy(m: &Model) -> BoxedStrategy<Vec<u8>> {
    id_strategy_weighted(m, 3)
}

/// As [`id_strategy`], with `known_weight` (against 2 for a random id) the weight of a
/// known id.
fn id_strategy_weighted(m: &Model, known_weight: u32) -> BoxedStrategy<Vec<u8>> {
    let longest = m.attrs.max_section_id_size as usize;
    let bytes = || prop::sample::select(ID_BYTES.to_vec());
    let invalid = prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(bytes(), longest + 1)
    ];
    let random = if longest == 0 {
        invalid.boxed()
    } else {
        prop_oneof![3 => prop::collection::vec(bytes(), 1..=longest), 1 => invalid].boxed()
    };
    let known: Vec<Vec<u8>> = m.sections.keys().cloned().collect();
    if known.is_empty() {
        random
    } else {
        prop_oneof![2 => random, known_weight => prop::sample::select(known)].boxed()
    }
}

/// Up to two bytes over `maxSectionSize`, mostly within it.
fn data_strategy(m: &Model) -> BoxedStrategy<Vec<u8>> {
    data_strategy_within(m, m.max_size().div_ceil(2) as usize)
}

/// As [`data_strategy`], mostly at most `short` bytes long.
fn data_strategy_within(m: &Model, short: usize) -> BoxedStrategy<Vec<u8>> {
    let max = m.max_size() as usize;
    let len = prop_oneof![4 => 0..=short, 2 => 0..=max, 1 => max + 1..=max + 2];
    len.prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
        .boxed()
}

/// In range, past `maxSectionSize`, or so large that `offset + size` overflows.
fn offset_strategy(m: &Model) -> BoxedStrategy<u64> {
    let max = m.max_size();
    prop_oneof![6 => 0..=max / 2, 3 => 0..=max + 1, 1 => Just(u64::MAX - 1)].boxed()
}

/// Mostly never or soon; sometimes already past or exactly now; rarely before the epoch.
fn expiration_strategy(m: &Model) -> BoxedStrategy<i64> {
    let now = m.now;
    prop_oneof![12 => Just(TIME_END), 6 => now + 1..=now + 8, 3 => now - 2..=now, 1 => Just(-1)]
        .boxed()
}

/// An id and an offset: often a known section at, just past, or within its end.
fn read_strategy(m: &Model) -> BoxedStrategy<ReadOp> {
    let max = m.max_size();
    let len = 0..=max as usize + 1;
    let random = (id_strategy(m), 0..=max + 2, len.clone())
        .prop_map(|(id, offset, len)| ReadOp { id, offset, len })
        .boxed();
    let sized: Vec<(Vec<u8>, u64)> = m
        .sections
        .iter()
        .map(|(id, s)| (id.clone(), s.data.len() as u64))
        .collect();
    if sized.is_empty() {
        return random;
    }
    let at_edges = prop::sample::select(sized)
        .prop_flat_map(move |(id, size)| {
            let offset = prop_oneof![Just(size), Just(size + 1), 0..=size];
            (Just(id), offset, len.clone())
        })
        .prop_map(|(id, offset, len)| ReadOp { id, offset, len });
    prop_oneof![1 => random, 3 => at_edges].boxed()
}

/// 1–4 elements over 1–3 ids, mostly known ones, with data short enough that several
/// elements often fit.
fn write_strategy(m: &Model) -> BoxedStrategy<Vec<WriteOp>> {
    let data = data_strategy_within(m, m.max_size().div_ceil(3) as usize);
    let offset = offset_strategy(m);
    prop::collection::vec(id_strategy_weighted(m, 12), 1..=3)
        .prop_flat_map(move |ids| {
            let elem = (prop::sample::select(ids), offset.clone(), data.clone())
                .prop_map(|(id, offset, data)| WriteOp { id, offset, data });
            prop::collection::vec(elem, 1..=4)
        })
        .boxed()
}

fn filter_strategy(m: &Model) -> BoxedStrategy<SectionFilter> {
    let now = m.now;
    let t = prop_oneof![3 => now - 2..=now + 6, 1 => Just(TIME_END), 1 => Just(0)];
    prop_oneof![
        Just(SectionFilter::Any),
        Just(SectionFilter::Forever),
        Just(SectionFilter::Corrupted),
        t.clone().prop_map(SectionFilter::ExpiringAtOrBefore),
        t.prop_map(SectionFilter::ExpiringAtOrAfter),
    ]
    .boxed()
}

fn op_strategy(m: &Model) -> BoxedStrategy<Op> {
    let id = id_strategy(m);
    let create_id = prop_oneof![3 => id.clone().prop_map(Some), 1 => Just(None)];
    let now = m.now;
    prop_oneof![
        5 => (create_id, expiration_strategy(m), data_strategy(m))
            .prop_map(|(id, expiration, data)| Op::Create { id, expiration, data }),
        2 => id.clone().prop_map(|id| Op::Delete { id }),
        2 => (id.clone(), expiration_strategy(m))
            .prop_map(|(id, expiration)| Op::SetExpiration { id, expiration }),
        3 => (id.clone(), data_strategy(m)).prop_map(|(id, data)| Op::Overwrite { id, data }),
        5 => write_strategy(m).prop_map(Op::Write),
        3 => read_strategy(m).prop_map(Op::Read),
        2 => prop::collection::vec(read_strategy(m), 1..=4).prop_map(Op::ReadMany),
        2 => (id.clone(), prop::option::of(data_strategy(m)))
            .prop_map(|(id, overwrite)| Op::Borrow { id, overwrite }),
        1 => id.prop_map(|id| Op::Info { id }),
        2 => filter_strategy(m).prop_map(Op::List),
        1 => Just(Op::Status),
        2 => (0..=3i64).prop_map(Op::AdvanceClock),
        1 => (now - 1..=now + 6).prop_map(|now| Op::Reap { now }),
    ]
    .boxed()
}

// ---- the state machine ------------------------------------------------------------------

/// Random geometry, including the default-section one.
enum AnyGeometry {}
/// `maxSections == 1`: only the default section.
enum DefaultSection {}

/// Implements the reference machine and the test for a geometry: `$max_sections` is the
/// strategy for `maxSections`.
macro_rules! arena_machine {
    ($name:ident, $max_sections:expr) => {
        impl ReferenceStateMachine for $name {
            type State = Model;
            type Transition = Op;

            fn init_state() -> BoxedStrategy<Model> {
                geometry($max_sections.boxed())
            }

            fn transitions(state: &Model) -> BoxedStrategy<Op> {
                op_strategy(state)
            }

            fn apply(mut state: Model, op: &Op) -> Model {
                state.apply(op);
                state
            }
        }

        impl StateMachineTest for $name {
            type SystemUnderTest = Sut;
            type Reference = Self;

            fn init_test(model: &Model) -> Sut {
                Sut::new(model)
            }

            fn apply(sut: Sut, after: &Model, op: Op) -> Sut {
                sut.step(after, op)
            }

            fn check_invariants(sut: &Sut, _: &Model) {
                sut.check_invariants();
            }
        }
    };
}

arena_machine!(
    AnyGeometry,
    prop_oneof![1 => Just(1u32), 3 => 2..=4u32, 3 => 5..=8u32]
);
arena_machine!(DefaultSection, Just(1u32));

/// The replica under test, the model as of the last step, and the ids the engine
/// generated (placeholder → real id).
struct Sut {
    replica: Replica,
    model: Model,
    generated: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Sut {
    fn real(&self, id: &[u8]) -> Vec<u8> {
        self.generated
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_vec())
    }

    fn model_id(&self, real: &[u8]) -> Vec<u8> {
        let mut it = self.generated.iter().filter(|(_, r)| r.as_slice() == real);
        it.next().map_or_else(|| real.to_vec(), |(p, _)| p.clone())
    }
}

fn same_error(a: &SectionError, b: &SectionError) -> bool {
    discriminant(a) == discriminant(b)
}

fn check<T: PartialEq + Debug>(
    op: &Op,
    model: &Result<T, SectionError>,
    engine: &Result<T, SectionError>,
) {
    let agree = match (model, engine) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => same_error(a, b),
        _ => false,
    };
    assert!(agree, "{op:?}\n  model:  {model:?}\n  engine: {engine:?}");
}

fn check_vector<T: PartialEq + Debug>(
    op: &Op,
    model: &Result<T, VectorError>,
    engine: &Result<T, VectorError>,
) {
    let agree = match (model, engine) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.index == b.index && same_error(&a.kind, &b.kind),
        _ => false,
    };
    assert!(agree, "{op:?}\n  model:  {model:?}\n  engine: {engine:?}");
}

impl Sut {
    fn new(model: &Model) -> Self {
        NOW.with(|c| c.set(model.now));
        let mut replica =
            Replica::create_in_memory(&model.attrs, &model.limits).expect("valid geometry");
        replica.set_clock(test_clock);
        for (id, s) in model.sections.iter().filter(|(id, _)| !id.is_empty()) {
            let created = replica.create_section(Some(id), s.expiration, &s.data);
            assert_eq!(
                created.as_deref(),
                Ok(id.as_slice()),
                "initial section {:?}",
                B(id)
            );
        }
        Self {
            replica,
            model: model.clone(),
            generated: BTreeMap::new(),
        }
    }

    /// Applies `op` to the replica and to the model, and compares the results.
    fn step(mut self, after: &Model, op: Op) -> Self {
        let sut = &mut self;
        let r = &sut.replica;
        match &op {
            Op::Create {
                id,
                expiration,
                data,
            } => {
                let real = id.as_ref().map(|id| sut.real(id));
                let model = sut.model.create(id.as_deref(), *expiration, data);
                let engine = r.create_section(real.as_deref(), *expiration, data);
                match (&model, &engine, &real) {
                    (Ok(placeholder), Ok(got), None) => {
                        // §4.1: a new id, of 1..=maxSectionIdSize bytes. It must also avoid
                        // the bytes of explicit ids, or the two could collide in this test.
                        let longest = sut.model.attrs.max_section_id_size as usize;
                        let taken = sut.model.sections.keys().any(|k| sut.real(k) == *got);
                        assert!(
                            (1..=longest).contains(&got.len())
                                && !taken
                                && !got.iter().any(|b| ID_BYTES.contains(b)),
                            "{op:?}: generated id {:?} is empty, too long, taken, or uses \
                             the bytes of explicit ids",
                            B(got)
                        );
                        let got = got.clone();
                        sut.generated.retain(|_, r| *r != got);
                        sut.generated.insert(placeholder.clone(), got);
                    }
                    (Ok(_), Ok(got), Some(real)) => assert_eq!(got, real, "{op:?}"),
                    _ => check(&op, &model.clone().map(|_| ()), &engine.clone().map(|_| ())),
                }
            }
            Op::Delete { id } => {
                let engine = r.delete_section(&sut.real(id));
                check(&op, &sut.model.delete(id), &engine);
            }
            Op::SetExpiration { id, expiration } => {
                let engine = r.set_expiration(&sut.real(id), *expiration);
                check(&op, &sut.model.set_expiration(id, *expiration), &engine);
            }
            Op::Overwrite { id, data } => {
                let engine = r.overwrite(&sut.real(id), data);
                check(&op, &sut.model.overwrite(id, data), &engine);
            }
            Op::Write(elems) => {
                let ids: Vec<Vec<u8>> = elems.iter().map(|e| sut.real(&e.id)).collect();
                let vector: Vec<WriteElement<'_>> = elems
                    .iter()
                    .zip(&ids)
                    .map(|(e, id)| WriteElement {
                        id,
                        offset: e.offset,
                        data: &e.data,
                    })
                    .collect();
                let engine = r.write(&vector);
                check_vector(&op, &sut.model.write(elems), &engine);
            }
            Op::Read(read) => {
                let mut buf = vec![0xee; read.len];
                let engine = r
                    .read(&sut.real(&read.id), read.offset, &mut buf)
                    .map(|n| buf[..n].to_vec());
                check(&op, &sut.model.read(read), &engine);
            }
            Op::ReadMany(reads) => {
                let ids: Vec<Vec<u8>> = reads.iter().map(|e| sut.real(&e.id)).collect();
                let mut bufs: Vec<Vec<u8>> = reads.iter().map(|e| vec![0xee; e.len]).collect();
                let mut vector: Vec<ReadElement<'_>> = reads
                    .iter()
                    .zip(&ids)
                    .zip(&mut bufs)
                    .map(|((e, id), buf)| ReadElement {
                        id,
                        offset: e.offset,
                        buf,
                        read: 0,
                    })
                    .collect();
                let engine = r.read_many(&mut vector).map(|()| {
                    vector
                        .iter()
                        .map(|e| e.buf[..e.read].to_vec())
                        .collect::<Vec<_>>()
                });
                check_vector(&op, &sut.model.read_many(reads), &engine);
            }
            Op::Borrow { id, overwrite } => {
                let real = sut.real(id);
                let model = sut
                    .model
                    .live(id)
                    .map(|s| s.data.clone())
                    .ok_or(SectionError::NotExist);
                let guard = r.borrow(&real);
                check(
                    &op,
                    &model,
                    &guard.as_ref().map(|g| g.to_vec()).map_err(|e| *e),
                );
                if let (Ok(guard), Some(data)) = (&guard, overwrite) {
                    let engine = r.overwrite(&real, data);
                    check(&op, &sut.model.overwrite(id, data), &engine);
                    let before = model.as_ref().expect("borrowed");
                    assert_eq!(
                        &guard[..],
                        before.as_slice(),
                        "{op:?}: a held guard's bytes changed"
                    );
                }
            }
            Op::Info { id } => {
                let real = sut.real(id);
                let engine = r.section_info(&real).map(|i| {
                    assert_eq!(i.id, real, "{op:?}: section_info names another id");
                    (i.expiration, i.size, i.last_update)
                });
                let mut model = sut.model.info(id);
                if let (Ok((_, _, last @ None)), Ok((_, _, got))) = (&mut model, &engine) {
                    *last = Some(*got); // the default section's creation time is not ours
                }
                let model = model.map(|(e, s, l)| (e, s, l.expect("known")));
                check(&op, &model, &engine);
                assert_eq!(
                    r.contains(&real),
                    model.is_ok(),
                    "{op:?}: contains disagrees"
                );
            }
            Op::List(filter) => {
                let mut engine: Vec<(Vec<u8>, i64, u64)> = r
                    .sections(*filter)
                    .map(|i| (sut.model_id(&i.id), i.expiration, i.size))
                    .collect();
                engine.sort();
                let model = sut.model.list(*filter);
                assert_eq!(engine, model, "{op:?}: sections() lists other sections");
            }
            Op::Status => assert_eq!(r.status(), sut.model.status(), "{op:?}"),
            Op::AdvanceClock(by) => {
                sut.model.now += by;
                NOW.with(|c| c.set(sut.model.now));
            }
            Op::Reap { now } => {
                let engine = r.reap_expired(*now);
                assert_eq!(
                    engine,
                    sut.model.reap(*now),
                    "{op:?}: reaped another number"
                );
            }
        }
        assert_eq!(
            self.model.sections, after.sections,
            "the test's model diverged from the reference"
        );
        self
    }

    /// After every step: `fsck` is clean and quiescent, no slot is busy (no guard is held
    /// between steps), `status()` is the model's, and so is every section's data.
    fn check_invariants(&self) {
        let report = self.replica.fsck();
        assert!(
            report.is_clean() && report.quiescent && report.busy_slots == 0,
            "fsck: {report}"
        );
        assert_eq!(
            self.replica.status(),
            self.model.status(),
            "status() disagrees with the model"
        );
        // Every section holds the model's bytes: a failed call changed nothing.
        for (id, s) in &self.model.sections {
            let got = self.replica.read_to_vec(&self.real(id));
            let want = if self.model.is_expired(s) {
                Err(SectionError::NotExist)
            } else {
                Ok(s.data.clone())
            };
            assert_eq!(got, want, "section {:?}", B(id));
        }
    }
}

/// `cases` per test unless `PROPTEST_CASES` says otherwise. A failure is not persisted:
/// the minimal input is printed, and each one found so far has its own test below.
fn config(cases: u32) -> Config {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

prop_state_machine! {
    #![proptest_config(config(1024))]

    #[test]
    fn arena_matches_model_under_random_operations(sequential 1..64 => AnyGeometry);
}

prop_state_machine! {
    #![proptest_config(config(256))]

    #[test]
    fn default_section_checkpoint_matches_model(sequential 1..32 => DefaultSection);
}

// ---- regressions: each disagreement the model found, as its own small test ---------------

fn sut(max_sections: u32, max_section_size: u64, checkpoint_size: u64) -> Replica {
    let attrs = ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size,
        retention_ns: 0,
        max_sections,
        max_section_size,
        max_section_id_size: 4,
    };
    Replica::create_in_memory(&attrs, &ReplicaLimits::default()).expect("valid geometry")
}

fn element<'a>(id: &'a [u8], offset: u64, data: &'a [u8]) -> WriteElement<'a> {
    WriteElement { id, offset, data }
}

#[test]
fn write_names_an_unknown_section_before_a_later_oversized_element() {
    let sut = sut(4, 8, 32);
    sut.create_section(Some(b"a"), TIME_END, b"").unwrap();
    let err = sut
        .write(&[element(b"x", 0, b"1"), element(b"a", 0, &[0; 9])])
        .unwrap_err();
    assert_eq!((err.index, err.kind), (0, SectionError::NotExist));
}

#[test]
fn write_over_the_budget_names_the_element_that_crosses_it() {
    let sut = sut(4, 16, 10);
    sut.create_section(Some(b"a"), TIME_END, b"").unwrap();
    sut.create_section(Some(b"b"), TIME_END, b"").unwrap();
    let err = sut
        .write(&[element(b"a", 0, b""), element(b"a", 4, &[1; 8])])
        .unwrap_err();
    assert_eq!((err.index, err.kind), (1, SectionError::NoResources));
    let err = sut
        .write(&[
            element(b"b", 0, &[1; 4]),
            element(b"a", 0, &[1; 4]),
            element(b"b", 4, &[1; 4]),
        ])
        .unwrap_err();
    assert_eq!((err.index, err.kind), (2, SectionError::NoResources));
    assert_eq!(
        sut.status().memory_used,
        0,
        "a refused write changed nothing"
    );
}

#[test]
fn read_many_names_a_bad_offset_before_a_later_unknown_section() {
    let sut = sut(4, 8, 32);
    sut.create_section(Some(b"a"), TIME_END, b"ab").unwrap();
    let (mut x, mut y) = ([0u8; 2], [0u8; 2]);
    let mut elems = [
        ReadElement {
            id: b"a",
            offset: 3,
            buf: &mut x,
            read: 0,
        },
        ReadElement {
            id: b"x",
            offset: 0,
            buf: &mut y,
            read: 0,
        },
    ];
    let err = sut.read_many(&mut elems).unwrap_err();
    assert!(
        matches!((err.index, err.kind), (0, SectionError::BadArgument(_))),
        "{err:?}"
    );
}

#[test]
fn explicit_empty_id_is_refused_without_a_default_section() {
    let sut = sut(4, 8, 32);
    assert!(matches!(
        sut.create_section(Some(b""), TIME_END, b"x"),
        Err(SectionError::BadArgument(_))
    ));
    assert_eq!(sut.read_to_vec(b""), Err(SectionError::NotExist));
    assert_eq!(sut.status().sections, 0);
}

#[test]
fn expired_section_id_can_be_created_again_before_it_is_reaped() {
    let mut sut = sut(4, 8, 32);
    NOW.with(|c| c.set(T0));
    sut.set_clock(test_clock);
    sut.create_section(Some(b"a"), T0 + 1, b"old").unwrap();
    NOW.with(|c| c.set(T0 + 1));
    assert!(!sut.contains(b"a"));
    assert_eq!(
        sut.create_section(Some(b"a"), TIME_END, b"new"),
        Ok(b"a".to_vec())
    );
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"new");
    assert_eq!(
        sut.status(),
        Status {
            sections: 1,
            memory_used: 3
        }
    );
    assert!(sut.fsck().is_clean());
}

#[test]
fn max_sections_reached_is_no_space_even_when_the_budget_is_also_exceeded() {
    for checkpoint_size in [4, 16] {
        let sut = sut(2, 8, checkpoint_size);
        sut.create_section(Some(b"a"), TIME_END, b"12").unwrap();
        sut.create_section(Some(b"b"), TIME_END, b"12").unwrap();
        let got = sut.create_section(Some(b"c"), TIME_END, &[0; 8]);
        assert_eq!(
            got,
            Err(SectionError::NoSpace),
            "checkpointSize {checkpoint_size}"
        );
    }
}

#[test]
fn negative_expiration_is_refused() {
    let sut = sut(4, 8, 32);
    assert!(matches!(
        sut.create_section(Some(b"a"), -1, b""),
        Err(SectionError::BadArgument(_))
    ));
    sut.create_section(Some(b"a"), TIME_END, b"").unwrap();
    assert!(matches!(
        sut.set_expiration(b"a", -1),
        Err(SectionError::BadArgument(_))
    ));
    let report = sut.fsck();
    assert!(report.is_clean(), "{report}");
}
