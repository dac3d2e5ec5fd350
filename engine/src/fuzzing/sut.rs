//! The system under test of both model checks: a heap replica driven in step with the
//! [`Model`]. [`Sut::step`] applies an [`Op`] to both and compares every result: values,
//! error kinds, and the erroneous element of vector calls. [`Sut::check_invariants`], run
//! after every step, checks that `fsck` is clean, `status()` is the model's, and every
//! section holds the model's bytes, so a failed call provably changed nothing.
//!
//! The replica's clock is a thread-local cell ([`clock`], [`set_clock`]) that the caller
//! controls; `Op::AdvanceClock` moves it with the model's. It is per thread, so the tests
//! running in parallel do not move each other's time.

use core::fmt::{self, Debug, Display};
use core::mem::discriminant;
use std::cell::Cell;
use std::collections::BTreeMap;

use super::model::{ByteStr, ID_BYTES, Model, Op};
use crate::{
    ReadElement, Replica, ReplicaAttributes, ReplicaLimits, SectionError, VectorError, WriteElement,
};

/// The clock's value when a run starts: 1 s after the epoch, so times just before it are
/// still positive.
pub const T0: i64 = 1_000_000_000;

/// Small engine limits: few journal cells make the ring wrap; 3 spare slots are the fewest
/// a 3-section write (or an overwrite under a held guard) needs.
pub const SMALL_LIMITS: ReplicaLimits = ReplicaLimits {
    agents: 64,
    spare_slots: 3,
    journal_cells: 64,
};

/// A model check's replica geometry: the attributes (no creation flags, no retention), and
/// [`SMALL_LIMITS`] if `small_limits`, else the default limits.
pub fn replica_geometry(
    max_sections: u32,
    max_section_size: u64,
    max_section_id_size: u64,
    checkpoint_size: u64,
    small_limits: bool,
) -> (ReplicaAttributes, ReplicaLimits) {
    let attrs = ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size,
        retention_ns: 0,
        max_sections,
        max_section_size,
        max_section_id_size,
    };
    let limits = if small_limits {
        SMALL_LIMITS
    } else {
        ReplicaLimits::default()
    };
    (attrs, limits)
}

thread_local! {
    /// The clock of the replicas this thread drives.
    static NOW: Cell<i64> = const { Cell::new(T0) };
}

/// The clock of the replicas this thread drives, for [`Replica::set_clock`].
pub fn clock() -> i64 {
    NOW.with(Cell::get)
}

/// Sets this thread's [`clock`].
pub fn set_clock(now: i64) {
    NOW.with(|c| c.set(now));
}

/// A heap replica, the model of it, and the ids the engine generated (placeholder → real
/// id).
#[derive(Debug)]
pub struct Sut {
    /// The replica under test.
    pub replica: Replica,
    /// The model, as of the last step.
    pub model: Model,
    generated: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Sut {
    /// A heap replica with `model`'s geometry and limits, its clock set to `model.now`, and
    /// `model`'s sections created in it (the default section is there already).
    pub fn new(model: &Model) -> Self {
        set_clock(model.now);
        let (attrs, limits) = (&model.attrs, &model.limits);
        let mut replica = match Replica::create_in_memory(attrs, limits) {
            Ok(r) => r,
            Err(e) => panic!("valid geometry {attrs:?} {limits:?} refused: {e}"),
        };
        replica.set_clock(clock);
        for (id, s) in model.sections.iter().filter(|(id, _)| !id.is_empty()) {
            let created = replica.create_section(Some(id), s.expiration, &s.data);
            assert_eq!(
                created.as_deref(),
                Ok(id.as_slice()),
                "initial section {:?}",
                ByteStr(id)
            );
        }
        Self {
            replica,
            model: model.clone(),
            generated: BTreeMap::new(),
        }
    }

    /// The engine's id for the model's `id`: the generated one for a placeholder.
    pub fn real(&self, id: &[u8]) -> Vec<u8> {
        self.generated
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_vec())
    }

    /// The model's id for the engine's `real` one: the placeholder of a generated id.
    pub fn model_id(&self, real: &[u8]) -> Vec<u8> {
        let mut it = self.generated.iter().filter(|(_, r)| r.as_slice() == real);
        it.next().map_or_else(|| real.to_vec(), |(p, _)| p.clone())
    }

    /// Applies `op` to the replica and to the model, and compares the results. Panics on a
    /// disagreement.
    pub fn step(&mut self, op: &Op) {
        let r = &self.replica;
        match op {
            Op::Create {
                id,
                expiration,
                data,
            } => {
                let real = id.as_ref().map(|id| self.real(id));
                let model = self.model.create(id.as_deref(), *expiration, data);
                let engine = r.create_section(real.as_deref(), *expiration, data);
                match (&model, &engine, &real) {
                    (Ok(placeholder), Ok(got), None) => {
                        // §4.1: a new id, of 1..=maxSectionIdSize bytes. It must also avoid
                        // the bytes of explicit ids, or the two could collide in the model.
                        let longest = self.model.attrs.max_section_id_size as usize;
                        let taken = self.model.sections.keys().any(|k| self.real(k) == *got);
                        assert!(
                            (1..=longest).contains(&got.len())
                                && !taken
                                && !got.iter().any(|b| ID_BYTES.contains(b)),
                            "{op:?}: generated id {:?} is empty, too long, taken, or uses \
                             the bytes of explicit ids",
                            ByteStr(got)
                        );
                        let got = got.clone();
                        self.generated.retain(|_, r| *r != got);
                        self.generated.insert(placeholder.clone(), got);
                    }
                    (Ok(_), Ok(got), Some(real)) => assert_eq!(got, real, "{op:?}"),
                    _ => check(op, &model.clone().map(|_| ()), &engine.clone().map(|_| ())),
                }
            }
            Op::Delete { id } => {
                let engine = r.delete_section(&self.real(id));
                check(op, &self.model.delete(id), &engine);
            }
            Op::SetExpiration { id, expiration } => {
                let engine = r.set_expiration(&self.real(id), *expiration);
                check(op, &self.model.set_expiration(id, *expiration), &engine);
            }
            Op::Overwrite { id, data } => {
                let engine = r.overwrite(&self.real(id), data);
                check(op, &self.model.overwrite(id, data), &engine);
            }
            Op::Write(elems) => {
                let ids: Vec<Vec<u8>> = elems.iter().map(|e| self.real(&e.id)).collect();
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
                check_vector(op, &self.model.write(elems), &engine);
            }
            Op::Read(read) => {
                let mut buf = vec![0xee; read.len];
                let engine = r
                    .read(&self.real(&read.id), read.offset, &mut buf)
                    .map(|n| buf[..n].to_vec());
                check(op, &self.model.read(read), &engine);
            }
            Op::ReadMany(reads) => {
                let ids: Vec<Vec<u8>> = reads.iter().map(|e| self.real(&e.id)).collect();
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
                check_vector(op, &self.model.read_many(reads), &engine);
            }
            Op::Borrow { id, overwrite } => {
                let real = self.real(id);
                let model = self
                    .model
                    .live(id)
                    .map(|s| s.data.clone())
                    .ok_or(SectionError::NotExist);
                let guard = r.borrow(&real);
                check(
                    op,
                    &model,
                    &guard.as_ref().map(|g| g.to_vec()).map_err(|e| *e),
                );
                if let (Ok(guard), Some(data)) = (&guard, overwrite) {
                    let engine = r.overwrite(&real, data);
                    check(op, &self.model.overwrite(id, data), &engine);
                    // The borrow succeeded and `check` found the model agreeing: it is `Ok`.
                    let before = model.as_ref().expect("borrowed");
                    assert_eq!(
                        &guard[..],
                        before.as_slice(),
                        "{op:?}: a held guard's bytes changed"
                    );
                }
            }
            Op::Info { id } => {
                let real = self.real(id);
                let engine = r.section_info(&real).map(|i| {
                    assert_eq!(i.id, real, "{op:?}: section_info names another id");
                    (i.expiration, i.size, Some(i.last_update))
                });
                // The default section's creation time is not the model's: take the engine's.
                let engine_update = engine.as_ref().ok().and_then(|i| i.2);
                let model = self
                    .model
                    .info(id)
                    .map(|(e, s, l)| (e, s, l.or(engine_update)));
                check(op, &model, &engine);
                assert_eq!(
                    r.contains(&real),
                    model.is_ok(),
                    "{op:?}: contains disagrees"
                );
            }
            Op::List(filter) => {
                let mut engine: Vec<(Vec<u8>, i64, u64)> = r
                    .sections(*filter)
                    .map(|i| (self.model_id(&i.id), i.expiration, i.size))
                    .collect();
                engine.sort();
                let model = self.model.list(*filter);
                assert_eq!(engine, model, "{op:?}: sections() lists other sections");
            }
            Op::Status => assert_eq!(r.status(), self.model.status(), "{op:?}"),
            Op::AdvanceClock(by) => {
                self.model.now += by;
                set_clock(self.model.now);
            }
            Op::Reap { now } => {
                let engine = r.reap_expired(*now);
                assert_eq!(
                    engine,
                    self.model.reap(*now),
                    "{op:?}: reaped another number"
                );
            }
        }
    }

    /// Checks what must hold between steps: `fsck` is clean and quiescent, no slot is busy
    /// (no guard is held between steps), `status()` is the model's, and so is every
    /// section's data. `after` names the last step in the messages.
    pub fn check_invariants(&self, after: Option<&Op>) {
        let after = After(after);
        let report = self.replica.fsck();
        assert!(
            report.is_clean() && report.quiescent && report.busy_slots == 0,
            "{after}fsck: {report}"
        );
        assert_eq!(
            self.replica.status(),
            self.model.status(),
            "{after}status() disagrees with the model"
        );
        // Every section holds the model's bytes: a failed call changed nothing.
        for (id, s) in &self.model.sections {
            let got = self.replica.read_to_vec(&self.real(id));
            let want = if self.model.is_expired(s) {
                Err(SectionError::NotExist)
            } else {
                Ok(s.data.clone())
            };
            assert_eq!(got, want, "{after}section {:?}", ByteStr(id));
        }
    }
}

/// The prefix `after <op>: ` of a message, or nothing.
struct After<'a>(Option<&'a Op>);

impl Display for After<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(op) => write!(f, "after {op:?}: "),
            None => Ok(()),
        }
    }
}

fn same_error(a: &SectionError, b: &SectionError) -> bool {
    discriminant(a) == discriminant(b)
}

/// Model and engine agree: the same value, or errors of the same kind.
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

/// As [`check`], and a vector call's errors name the same element.
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
