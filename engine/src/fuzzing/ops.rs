//! `arena_ops`: random section operations on a heap arena, in one of two modes chosen by the
//! low bit of the first input byte.
//!
//! - **Model mode** (even): a [`Sut`] compares every result with [`Model`], the plain
//!   in-memory model (values, error kinds, the failing element of vector calls); after
//!   every step `fsck` must be clean and quiescent, `status()` must be the model's, every
//!   section must hold the model's bytes and every journal record must lie inside its
//!   section.
//! - **Mutation mode** (odd): between operations, words and bytes of the mapping are
//!   overwritten, as a buggy or hostile process on the node could. Nothing is compared with
//!   a model; every call must return an error or in-bounds bytes, and must not panic, hang
//!   or fault. The arena is heap-backed, so a read outside it trips the address sanitizer.
//!
//! The rest of the input is a stream of choices ([`Input`]); it ends the run when consumed.

use std::time::Duration;

use super::attach::{check_journal, check_read_only};
use super::input::Input;
use super::model::{ID_BYTES, Model, Op, ReadOp, WriteOp};
use super::sut::{Sut, T0, clock, replica_geometry, set_clock};
use crate::layout::{HEADER_DYNAMIC, HEADER_SIZE};
use crate::sync::{AtomicU64, Ordering::Relaxed};
use crate::{
    ReadElement, Replica, ReplicaAttributes, ReplicaLimits, Role, SectionFilter, TIME_END,
    WriteElement,
};

/// Operations per run at most (a long input is cut here, to keep runs short).
const MAX_STEPS: usize = 200;
/// Ids the mutation mode remembers.
const MAX_KNOWN: usize = 16;

/// What the operation generator knows about the arena.
struct Ctx<'a> {
    /// Ids to pick often (the model's, or those the mutation mode saw created).
    known: &'a [Vec<u8>],
    /// Known ids with their sizes, for reads at a section's edges.
    sized: &'a [(Vec<u8>, u64)],
    max: u64,
    max_id: u64,
    now: i64,
}

impl Ctx<'_> {
    /// A random id: mostly of a valid length, sometimes empty or one byte too long.
    fn random_id(&self, inp: &mut Input<'_>) -> Vec<u8> {
        let longest = self.max_id as usize;
        if longest > 0 && inp.weighted(&[3, 1]) == 0 {
            let len = 1 + inp.below(longest as u64) as usize;
            return (0..len).map(|_| ID_BYTES[inp.below(3) as usize]).collect();
        }
        if inp.u8() & 1 == 0 {
            Vec::new()
        } else {
            (0..=longest)
                .map(|_| ID_BYTES[inp.below(3) as usize])
                .collect()
        }
    }

    /// An id: a known one with weight `known_weight` (against 2 for a random one).
    fn id_weighted(&self, inp: &mut Input<'_>, known_weight: u8) -> Vec<u8> {
        if self.known.is_empty() || inp.weighted(&[2, known_weight]) == 0 {
            self.random_id(inp)
        } else {
            self.known[inp.below(self.known.len() as u64) as usize].clone()
        }
    }

    fn id(&self, inp: &mut Input<'_>) -> Vec<u8> {
        self.id_weighted(inp, 3)
    }

    /// Up to two bytes over `maxSectionSize`, mostly at most `short` bytes long.
    fn data_within(&self, inp: &mut Input<'_>, short: u64) -> Vec<u8> {
        let len = match inp.weighted(&[4, 2, 1]) {
            0 => inp.below(short + 1),
            1 => inp.below(self.max + 1),
            _ => self.max + 1 + inp.below(2),
        };
        inp.data(len as usize)
    }

    fn data(&self, inp: &mut Input<'_>) -> Vec<u8> {
        self.data_within(inp, self.max.div_ceil(2))
    }

    /// In range, past `maxSectionSize`, or so large that `offset + size` overflows.
    fn offset(&self, inp: &mut Input<'_>) -> u64 {
        match inp.weighted(&[6, 3, 1]) {
            0 => inp.below(self.max / 2 + 1),
            1 => inp.below(self.max + 2),
            _ => u64::MAX - 1,
        }
    }

    /// Mostly never or soon; sometimes already past or exactly now; rarely before the epoch.
    fn expiration(&self, inp: &mut Input<'_>) -> i64 {
        match inp.weighted(&[12, 6, 3, 1]) {
            0 => TIME_END,
            1 => inp.range(self.now + 1, self.now + 8),
            2 => inp.range(self.now - 2, self.now),
            _ => -1,
        }
    }

    fn read(&self, inp: &mut Input<'_>) -> ReadOp {
        let len = inp.below(self.max + 2) as usize;
        if !self.sized.is_empty() && inp.weighted(&[1, 3]) == 1 {
            let (id, size) = &self.sized[inp.below(self.sized.len() as u64) as usize];
            let offset = match inp.below(3) {
                0 => *size,
                1 => size + 1,
                _ => inp.below(size + 1),
            };
            return ReadOp {
                id: id.clone(),
                offset,
                len,
            };
        }
        ReadOp {
            id: self.id(inp),
            offset: inp.below(self.max + 3),
            len,
        }
    }

    /// 1–4 elements over 1–3 ids, mostly known ones.
    fn write(&self, inp: &mut Input<'_>) -> Vec<WriteOp> {
        let ids: Vec<Vec<u8>> = (0..=inp.below(3))
            .map(|_| self.id_weighted(inp, 12))
            .collect();
        (0..=inp.below(4))
            .map(|_| WriteOp {
                id: ids[inp.below(ids.len() as u64) as usize].clone(),
                offset: self.offset(inp),
                data: self.data_within(inp, self.max.div_ceil(3)),
            })
            .collect()
    }

    fn filter(&self, inp: &mut Input<'_>) -> SectionFilter {
        let t = |inp: &mut Input<'_>| match inp.weighted(&[3, 1, 1]) {
            0 => inp.range(self.now - 2, self.now + 6),
            1 => TIME_END,
            _ => 0,
        };
        match inp.below(5) {
            0 => SectionFilter::Any,
            1 => SectionFilter::Forever,
            2 => SectionFilter::Corrupted,
            3 => SectionFilter::ExpiringAtOrBefore(t(inp)),
            _ => SectionFilter::ExpiringAtOrAfter(t(inp)),
        }
    }

    fn op(&self, inp: &mut Input<'_>) -> Op {
        match inp.weighted(&[5, 2, 2, 3, 5, 3, 2, 2, 1, 2, 1, 2, 1]) {
            0 => Op::Create {
                id: (inp.weighted(&[3, 1]) == 0).then(|| self.id(inp)),
                expiration: self.expiration(inp),
                data: self.data(inp),
            },
            1 => Op::Delete { id: self.id(inp) },
            2 => Op::SetExpiration {
                id: self.id(inp),
                expiration: self.expiration(inp),
            },
            3 => Op::Overwrite {
                id: self.id(inp),
                data: self.data(inp),
            },
            4 => Op::Write(self.write(inp)),
            5 => Op::Read(self.read(inp)),
            6 => Op::ReadMany((0..=inp.below(4)).map(|_| self.read(inp)).collect()),
            7 => Op::Borrow {
                id: self.id(inp),
                overwrite: (inp.u8() & 1 == 1).then(|| self.data(inp)),
            },
            8 => Op::Info { id: self.id(inp) },
            9 => Op::List(self.filter(inp)),
            10 => Op::Status,
            11 => Op::AdvanceClock(inp.range(0, 3)),
            _ => Op::Reap {
                now: inp.range(self.now - 1, self.now + 6),
            },
        }
    }
}

/// Random geometry: up to 8 sections of up to 64 bytes, ids up to 6 bytes, a budget that
/// is often below `maxSections * maxSectionSize`, and mostly small engine limits (a
/// 64-cell journal that wraps, 3 spare slots).
fn geometry(inp: &mut Input<'_>) -> (ReplicaAttributes, ReplicaLimits) {
    let max_sections = match inp.weighted(&[1, 3, 3]) {
        0 => 1,
        1 => inp.range(2, 4),
        _ => inp.range(5, 8),
    } as u32;
    let max_section_size = 1 + inp.below(64);
    let max_section_id_size = inp.below(7);
    let knobs = inp.u8();
    let cap = u64::from(max_sections) * max_section_size;
    let checkpoint_size = if knobs & 1 == 0 {
        cap
    } else {
        inp.below(cap + 1)
    };
    replica_geometry(
        max_sections,
        max_section_size,
        max_section_id_size,
        checkpoint_size,
        knobs & 6 != 0,
    )
}

fn new_replica(attrs: &ReplicaAttributes, limits: &ReplicaLimits) -> Replica {
    let mut r = match Replica::create_in_memory(attrs, limits) {
        Ok(r) => r,
        Err(e) => panic!("valid geometry {attrs:?} {limits:?} refused: {e}"),
    };
    set_clock(T0);
    r.set_clock(clock);
    r
}

/// The `arena_ops` target; see the module docs.
pub fn arena_ops(data: &[u8]) {
    let mut inp = Input::new(data);
    if inp.u8() & 1 == 0 {
        model_mode(&mut inp);
    } else {
        mutation_mode(&mut inp);
    }
}

// ---- model mode -------------------------------------------------------------------------

/// Steps a [`Sut`], which compares every result with the model and checks the invariants
/// after each step; the journal records of each step must also lie inside their section.
fn model_mode(inp: &mut Input<'_>) {
    let (attrs, limits) = geometry(inp);
    let mut sut = Sut::new(&Model::new(attrs, limits, T0));
    let mut journal = 0;
    for _ in 0..MAX_STEPS {
        if inp.is_empty() {
            break;
        }
        let model = &sut.model;
        let known: Vec<Vec<u8>> = model.sections.keys().cloned().collect();
        let sized: Vec<(Vec<u8>, u64)> = model
            .sections
            .iter()
            .map(|(id, s)| (id.clone(), s.data.len() as u64))
            .collect();
        let ctx = Ctx {
            known: &known,
            sized: &sized,
            max: model.attrs.max_section_size,
            max_id: model.attrs.max_section_id_size,
            now: model.now,
        };
        let op = ctx.op(inp);
        sut.step(&op);
        sut.check_invariants(Some(&op));
        journal = check_journal(&sut.replica, journal, sut.model.max_size());
    }
}

// ---- mutation mode ----------------------------------------------------------------------

/// Overwrites one word or byte of the mapping, mostly in the metadata regions.
fn mutate(r: &Replica, inp: &mut Input<'_>) {
    let img = r.region.img;
    let map = r.region.mapping();
    let len = map.len() as u64;
    let regions = [
        (HEADER_DYNAMIC, HEADER_DYNAMIC + 512),
        (img.off_agents, img.off_descs),
        (img.off_descs, img.off_ids),
        (img.off_ids, img.off_index),
        (img.off_index, img.off_slot_meta),
        (img.off_slot_meta, img.off_slot_hint),
        (img.off_slot_hint, img.off_journal),
        (img.off_journal, img.off_slots),
        (img.off_slots, len),
        (0, HEADER_SIZE),
    ];
    let (start, end) = regions[inp.weighted(&[5, 4, 5, 1, 2, 5, 2, 3, 1, 1])];
    let off = (start + inp.below(end.saturating_sub(start).max(8))) & !7;
    if off + 8 > len {
        return;
    }
    // SAFETY: `off` is 8-aligned and `off + 8 <= len`, inside the mapping, whose base is
    // 8-aligned (heap words or a page); the engine accesses shared words only atomically,
    // and slot bytes are copied only while no call runs (this thread is the only user).
    let word = unsafe { &*map.ptr().add(off as usize).cast::<AtomicU64>() };
    let old = word.load(Relaxed);
    let new = match inp.below(8) {
        0 => 0,
        1 => u64::MAX,
        2 => old ^ (1 << inp.below(64)),
        3 => old.wrapping_add(inp.range(-4, 4) as u64),
        4 => inp.u64(),
        // A state word: kind | small payload << 8.
        5 => inp.below(4) | (inp.below(64) << 8),
        // A pair word: small | small << 32 (current words, op records, pins).
        6 => inp.below(16) | (inp.below(16) << 32),
        _ => {
            let shift = 8 * inp.below(8);
            (old & !(0xff << shift)) | (u64::from(inp.u8()) << shift)
        }
    };
    word.store(new, Relaxed);
}

/// Checks a section result against the bounds.
fn check_len(what: &str, n: u64, max: u64) {
    assert!(n <= max, "{what} gave {n} bytes, max {max}");
}

/// Runs `op` on a (possibly corrupted) arena: only bounds are checked.
fn run_unchecked(r: &Replica, op: &Op, known: &mut Vec<Vec<u8>>) {
    let max = r.attributes().max_section_size;
    match op {
        Op::Create {
            id,
            expiration,
            data,
        } => {
            if let Ok(id) = r.create_section(id.as_deref(), *expiration, data)
                && known.len() < MAX_KNOWN
                && !known.contains(&id)
            {
                known.push(id);
            }
        }
        Op::Delete { id } => {
            let _ = r.delete_section(id);
        }
        Op::SetExpiration { id, expiration } => {
            let _ = r.set_expiration(id, *expiration);
        }
        Op::Overwrite { id, data } => {
            let _ = r.overwrite(id, data);
        }
        Op::Write(elems) => {
            let vector: Vec<WriteElement<'_>> = elems
                .iter()
                .map(|e| WriteElement {
                    id: &e.id,
                    offset: e.offset,
                    data: &e.data,
                })
                .collect();
            if let Err(e) = r.write(&vector) {
                assert!(
                    e.index < vector.len(),
                    "write error names element {}",
                    e.index
                );
            }
        }
        Op::Read(read) => {
            let mut buf = vec![0xee; read.len];
            if let Ok(n) = r.read(&read.id, read.offset, &mut buf) {
                check_len("read", n as u64, (read.len as u64).min(max));
            }
        }
        Op::ReadMany(reads) => {
            let mut bufs: Vec<Vec<u8>> = reads.iter().map(|e| vec![0xee; e.len]).collect();
            let mut vector: Vec<ReadElement<'_>> = reads
                .iter()
                .zip(&mut bufs)
                .map(|(e, buf)| ReadElement {
                    id: &e.id,
                    offset: e.offset,
                    buf,
                    read: 0,
                })
                .collect();
            match r.read_many(&mut vector) {
                Ok(()) => {
                    for e in &vector {
                        check_len("read_many", e.read as u64, (e.buf.len() as u64).min(max));
                    }
                }
                Err(e) => assert!(e.index < vector.len(), "read_many error index {}", e.index),
            }
        }
        Op::Borrow { id, overwrite } => {
            if let Ok(guard) = r.borrow(id) {
                check_len("borrow", guard.len() as u64, max);
                if let Some(data) = overwrite {
                    let _ = r.overwrite(id, data);
                }
                // Corrupted slot states may let the overwrite reuse the pinned slot, so its
                // bytes may change; they must stay readable and in bounds.
                check_len("borrow", guard.len() as u64, max);
                core::hint::black_box(guard.iter().fold(0u8, |x, y| x ^ y));
            }
        }
        Op::Info { id } => {
            if let Ok(info) = r.section_info(id) {
                check_len("section_info", info.size, max);
            }
            let _ = r.contains(id);
        }
        Op::List(filter) => {
            let n = r
                .sections(*filter)
                .inspect(|i| check_len("sections", i.size, max))
                .count();
            assert!(
                n <= r.attributes().max_sections as usize,
                "sections() gave {n}"
            );
        }
        Op::Status => {
            let _ = r.status();
        }
        Op::AdvanceClock(by) => set_clock(clock() + by),
        Op::Reap { now } => {
            let _ = r.reap_expired(*now);
        }
    }
}

/// The calls the model mode does not make: recovery, the replication applier, roles and
/// the replication words, the read-only sweep, journal reads and zero-timeout waits.
fn run_extra(r: &Replica, inp: &mut Input<'_>, ctx: &Ctx<'_>) {
    let max = r.attributes().max_section_size;
    match inp.below(9) {
        0 => {
            let _ = r.recover_dead_agents();
        }
        1 => {
            let id = ctx.id(inp);
            let _ = r.applier().put(&id, ctx.expiration(inp), &ctx.data(inp));
        }
        2 => {
            let id = ctx.id(inp);
            let _ = r.applier().write(&id, ctx.offset(inp), &ctx.data(inp));
        }
        3 => {
            let id = ctx.id(inp);
            let _ = r.applier().delete(&id);
            let keep = inp.u8();
            let _ = r
                .applier()
                .retain(|id| id.first().is_some_and(|b| b & keep != 0));
            let _ = r.applier().reap_expired(clock());
        }
        4 => {
            let role = if inp.u8() & 1 == 0 {
                Role::Primary
            } else {
                Role::Replica
            };
            r.set_role(role, u64::from(inp.u8()));
        }
        5 => {
            r.set_acked_seq(inp.below(1 << 20));
            r.lower_acked_seq(inp.below(1 << 20));
            r.set_replication_position(u64::from(inp.u8()), inp.u64());
            let _ = r.wait_for_acked(inp.u64(), Duration::ZERO);
            let _ = r.wait_for_changes(inp.u64(), Duration::ZERO);
        }
        6 => check_read_only(r, ctx.known),
        7 => {
            let _ = check_journal(r, inp.below(1 << 20), max);
        }
        _ => {
            let report = r.fsck();
            let _ = report.to_string();
            let _ = r.agents();
        }
    }
}

fn mutation_mode(inp: &mut Input<'_>) {
    let (attrs, limits) = geometry(inp);
    let r = new_replica(&attrs, &limits);
    let mut known: Vec<Vec<u8>> = Vec::new();
    for _ in 0..MAX_STEPS {
        if inp.is_empty() {
            break;
        }
        let ctx = Ctx {
            known: &known,
            sized: &[],
            max: attrs.max_section_size,
            max_id: attrs.max_section_id_size,
            now: clock(),
        };
        match inp.weighted(&[3, 5, 1]) {
            0 => mutate(&r, inp),
            1 => {
                let op = ctx.op(inp);
                run_unchecked(&r, &op, &mut known);
            }
            _ => run_extra(&r, inp, &ctx),
        }
    }
    check_read_only(&r, &known);
}
