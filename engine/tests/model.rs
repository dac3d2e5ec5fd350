//! The arena against a plain in-memory model. Random section operations, with random ids,
//! sizes and offsets including invalid ones, go to a heap replica and to a `BTreeMap`. Every
//! result must match: values, error kinds, and the erroneous element of vector calls. After
//! every step `fsck` must be clean, `status()` must be the model's, and every section must
//! hold the model's bytes, so a failed call provably changed nothing.
//!
//! The model, its rules and the choices the spec leaves open are in
//! `ckpt_engine::fuzzing::model` (`engine/src/fuzzing/model.rs`); the replica driven in step
//! with it, which compares the results, is `ckpt_engine::fuzzing::sut::Sut`. The
//! `arena_ops` fuzz target checks the engine with the same two. This file holds the proptest
//! strategies, the state machine, and a small test for each disagreement found.
//!
//! Generated ids are not predicted. The model names a generated section with a placeholder
//! (`0xff`, counter), which explicit ids never use, and the test maps it to the id the
//! engine returned. The replica's clock is a thread-local cell that the test controls.

use ckpt_engine::fuzzing::model::{ID_BYTES, Model, Op, ReadOp, WriteOp};
use ckpt_engine::fuzzing::sut::{Sut, T0, clock, replica_geometry, set_clock};
use ckpt_engine::{
    ReadElement, Replica, SectionError, SectionFilter, Status, TIME_END, WriteElement,
};
use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

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
                // Mostly few journal cells, so the ring wraps.
                let (attrs, limits) = replica_geometry(
                    max_sections,
                    max_section_size,
                    max_section_id_size,
                    checkpoint_size,
                    knobs & 2 == 0,
                );
                Model::new(attrs, limits, T0)
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

            /// Applies `op` to the replica and to the test's model, compares the results,
            /// and checks that the test's model is still the reference's.
            fn apply(mut sut: Sut, after: &Model, op: Op) -> Sut {
                sut.step(&op);
                assert_eq!(
                    sut.model.sections, after.sections,
                    "the test's model diverged from the reference"
                );
                sut
            }

            /// After every step: `fsck` is clean and quiescent, no slot is busy (no guard
            /// is held between steps), `status()` is the model's, and so is every
            /// section's data.
            fn check_invariants(sut: &Sut, _: &Model) {
                sut.check_invariants(None);
            }
        }
    };
}

arena_machine!(
    AnyGeometry,
    prop_oneof![1 => Just(1u32), 3 => 2..=4u32, 3 => 5..=8u32]
);
arena_machine!(DefaultSection, Just(1u32));

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
    let (attrs, limits) =
        replica_geometry(max_sections, max_section_size, 4, checkpoint_size, false);
    Replica::create_in_memory(&attrs, &limits).expect("valid geometry")
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
    set_clock(T0);
    sut.set_clock(clock);
    sut.create_section(Some(b"a"), T0 + 1, b"old").unwrap();
    set_clock(T0 + 1);
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
