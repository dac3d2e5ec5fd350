//! Replication support: the [`Applier`] (the node daemon's changes on a replica whose role
//! refuses local ones), the replication position, and the acknowledgement wait.

mod domain;

use domain::Domain;

use std::time::Duration;

use ckpt_engine::{
    ChangeKind, Changes, CreateOptions, Replica, ReplicaAttributes, ReplicaLimits, Role,
    SectionError, Sharing, TIME_END, WriteElement,
};
use proptest::prelude::*;
use proptest::test_runner::Config;

fn attrs(max_sections: u32, max_section_size: u64, checkpoint_size: u64) -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size,
        retention_ns: 0,
        max_sections,
        max_section_size,
        max_section_id_size: 16,
    }
}

fn in_memory(max_sections: u32, max_section_size: u64, checkpoint_size: u64) -> Replica {
    Replica::create_in_memory(
        &attrs(max_sections, max_section_size, checkpoint_size),
        &ReplicaLimits::default(),
    )
    .unwrap()
}

/// A replica (8 sections of 64 bytes) whose role refuses local changes.
fn replica_role() -> Replica {
    let sut = in_memory(8, 64, 8 * 64);
    sut.set_role(Role::Replica, 1);
    sut
}

/// What a journal record says, without its time and writer: kind, id, offset, length,
/// expiration.
#[derive(Debug, PartialEq, Eq)]
struct Record(ChangeKind, Option<Vec<u8>>, u64, u64, i64);

/// Every change after `after`.
fn changes(r: &Replica, after: u64) -> Vec<Record> {
    let mut out = Vec::new();
    assert_eq!(
        r.changes_since(after, &mut out, usize::MAX),
        Changes::UpTo(r.commit_seq())
    );
    out.into_iter()
        .map(|c| Record(c.kind, c.id, c.offset, c.len, c.expiration))
        .collect()
}

fn assert_clean(r: &Replica) {
    let report = r.fsck();
    assert!(report.is_clean(), "{report}");
}

// ---- the applier ------------------------------------------------------------------------

#[test]
fn applier_changes_succeed_on_a_replica_while_the_normal_api_gets_not_primary() {
    let sut = replica_role();
    let one = |id, offset, data| WriteElement { id, offset, data };

    assert_eq!(
        sut.create_section(Some(b"a"), TIME_END, b"x"),
        Err(SectionError::NotPrimary)
    );
    let applier = sut.applier();
    assert_eq!(
        applier.create_section(Some(b"a"), TIME_END, b"hello"),
        Ok(b"a".to_vec())
    );
    assert_eq!(
        sut.write(&[one(b"a", 0, b"j")]).map_err(|e| e.kind),
        Err(SectionError::NotPrimary)
    );
    assert_eq!(sut.overwrite(b"a", b"x"), Err(SectionError::NotPrimary));
    assert_eq!(sut.set_expiration(b"a", 5), Err(SectionError::NotPrimary));
    assert_eq!(sut.delete_section(b"a"), Err(SectionError::NotPrimary));
    assert_eq!(sut.reap_expired(i64::MAX - 1), 0);

    applier.write(b"a", 0, b"j").unwrap();
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"jello");
    applier.write_many(&[one(b"a", 5, b"!")]).unwrap();
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"jello!");
    applier.overwrite(b"a", b"bye").unwrap();
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"bye");
    let later = ckpt_engine::wall_clock() + 3_600_000_000_000;
    applier.set_expiration(b"a", later).unwrap();
    assert_eq!(sut.section_info(b"a").unwrap().expiration, later);
    let generated = applier.create_section(None, TIME_END, b"g").unwrap();
    assert_eq!(sut.read_to_vec(&generated).unwrap(), b"g");
    assert_eq!(applier.delete(b"a"), Ok(true));
    assert!(!sut.contains(b"a"));
    assert_eq!(sut.role(), (Role::Replica, 1));
    assert_clean(&sut);
}

#[test]
fn applied_changes_appear_in_changes_since_with_their_kinds_and_ids() {
    let sut = replica_role();
    let applier = sut.applier();
    let start = sut.commit_seq();
    applier.put(b"a", TIME_END, b"hello").unwrap();
    applier.write(b"a", 2, b"LL").unwrap();
    applier.put(b"a", TIME_END, b"bye").unwrap();
    applier.set_expiration(b"a", 1 << 62).unwrap();

    let a = Some(b"a".to_vec());
    assert_eq!(
        changes(&sut, start),
        vec![
            Record(ChangeKind::Create, a.clone(), 0, 5, 0),
            Record(ChangeKind::Write, a.clone(), 2, 2, 0),
            Record(ChangeKind::Overwrite, a.clone(), 0, 3, 0),
            Record(ChangeKind::Expiration, a.clone(), 0, 0, 1 << 62),
        ]
    );
    // Once deleted, the earlier records are superseded (no id), the delete names it.
    let before_delete = sut.commit_seq();
    assert_eq!(applier.delete(b"a"), Ok(true));
    assert_eq!(
        changes(&sut, before_delete),
        vec![Record(ChangeKind::Delete, a, 0, 0, 0)]
    );
    // So an arrival watcher blocked on this node is woken by an applied change.
    assert!(sut.wait_for_changes(start, Duration::ZERO));
}

#[test]
fn put_creates_then_replaces_data_size_and_expiration() {
    let sut = replica_role();
    let applier = sut.applier();
    let later = ckpt_engine::wall_clock() + 3_600_000_000_000;

    applier.put(b"a", TIME_END, b"first version").unwrap();
    let info = sut.section_info(b"a").unwrap();
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"first version");
    assert_eq!((info.size, info.expiration), (13, TIME_END));

    applier.put(b"a", later, b"second").unwrap();
    let info = sut.section_info(b"a").unwrap();
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"second");
    assert_eq!((info.size, info.expiration), (6, later));
    assert_eq!(sut.status().sections, 1);
    assert_eq!(sut.status().memory_used, 6);

    // The same expiration again: only the data changes (one journal record).
    let before = sut.commit_seq();
    applier.put(b"a", later, b"third").unwrap();
    assert_eq!(sut.commit_seq(), before + 1);
    assert_clean(&sut);
}

#[test]
fn put_replaces_a_section_that_expired_but_was_not_reaped() {
    let sut = replica_role();
    let applier = sut.applier();
    applier.create_section(Some(b"a"), 1, b"stale").unwrap();
    assert!(!sut.contains(b"a"));

    applier.put(b"a", TIME_END, b"fresh").unwrap();
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"fresh");
    assert_eq!(sut.status().sections, 1);
    assert_clean(&sut);
}

#[test]
fn put_validates_its_arguments_before_changing_anything() {
    let sut = replica_role();
    let applier = sut.applier();
    applier.put(b"a", TIME_END, b"keep").unwrap();
    assert_eq!(
        applier.put(b"a", TIME_END, &[0; 65]),
        Err(SectionError::TooBig)
    );
    assert!(matches!(
        applier.put(b"a", -1, b"new"),
        Err(SectionError::BadArgument(_))
    ));
    assert!(matches!(
        applier.put(&[b'x'; 17], TIME_END, b"new"),
        Err(SectionError::BadArgument(_))
    ));
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"keep");
}

#[test]
fn put_on_a_default_section_checkpoint_replaces_the_default_section_only() {
    let sut = in_memory(1, 64, 64);
    sut.set_role(Role::Replica, 1);
    let applier = sut.applier();
    applier.put(b"", TIME_END, b"data").unwrap();
    assert_eq!(sut.read_to_vec(b"").unwrap(), b"data");
    assert_eq!(
        applier.put(b"other", TIME_END, b"data"),
        Err(SectionError::Exists)
    );
    assert!(matches!(
        applier.put(b"", 5, b"data"),
        Err(SectionError::BadArgument(_))
    ));
    assert!(matches!(
        applier.delete(b""),
        Err(SectionError::BadArgument(_))
    ));
}

#[test]
fn delete_of_an_absent_section_is_ok_false() {
    let sut = replica_role();
    let applier = sut.applier();
    let before = sut.commit_seq();
    assert_eq!(applier.delete(b"never"), Ok(false));
    applier.put(b"a", TIME_END, b"x").unwrap();
    assert_eq!(applier.delete(b"a"), Ok(true));
    assert_eq!(applier.delete(b"a"), Ok(false));
    // Only the create and the delete that happened were journalled.
    assert_eq!(sut.commit_seq(), before + 2);
}

#[test]
fn retain_deletes_exactly_the_rejected_ids() {
    let sut = replica_role();
    let applier = sut.applier();
    for id in [&b"a"[..], b"b", b"c", b"d", b"e"] {
        applier.put(id, TIME_END, id).unwrap();
    }
    // An expired, unreaped section is offered too.
    applier.create_section(Some(b"old"), 1, b"x").unwrap();
    let offered = std::cell::RefCell::new(Vec::new());
    let deleted = applier
        .retain(|id| {
            offered.borrow_mut().push(id.to_vec());
            id == b"b" || id == b"d"
        })
        .unwrap();
    assert_eq!(deleted, 4);
    let mut offered = offered.into_inner();
    offered.sort();
    assert_eq!(offered, [&b"a"[..], b"b", b"c", b"d", b"e", b"old"]);
    let mut left: Vec<Vec<u8>> = sut
        .sections(ckpt_engine::SectionFilter::Any)
        .map(|s| s.id)
        .collect();
    left.sort();
    assert_eq!(left, [b"b".to_vec(), b"d".to_vec()]);
    assert_eq!(sut.status().sections, 2);
    assert_eq!(applier.retain(|_| true), Ok(0));
    assert_clean(&sut);
}

#[test]
fn write_beyond_max_section_size_fails_with_the_same_error_as_the_normal_api() {
    let primary = in_memory(8, 64, 8 * 64);
    primary.create_section(Some(b"a"), TIME_END, b"x").unwrap();
    let sut = replica_role();
    let applier = sut.applier();
    applier.put(b"a", TIME_END, b"x").unwrap();

    for (offset, len) in [(60, 8), (64, 1), (u64::MAX, 1), (0, 65)] {
        let data = vec![7; len];
        let normal = primary.write(&[WriteElement {
            id: b"a",
            offset,
            data: &data,
        }]);
        let applied = applier.write(b"a", offset, &data);
        assert!(normal.is_err(), "offset {offset} len {len}");
        assert_eq!(
            applied,
            normal.map_err(|e| e.kind),
            "offset {offset} len {len}"
        );
    }
    let data = [7; 65];
    assert_eq!(applier.overwrite(b"a", &data), Err(SectionError::TooBig));
    assert_eq!(primary.overwrite(b"a", &data), Err(SectionError::TooBig));
    assert_eq!(sut.read_to_vec(b"a").unwrap(), b"x");
}

#[test]
fn applier_reaps_expired_sections_on_a_replica_role_object() {
    let sut = replica_role();
    let applier = sut.applier();
    applier.put(b"a", 1, b"x").unwrap();
    applier.put(b"b", TIME_END, b"y").unwrap();
    assert_eq!(sut.reap_expired(10), 0);
    assert_eq!(sut.status().sections, 2);
    assert_eq!(applier.reap_expired(10), 1);
    assert_eq!(sut.status().sections, 1);
    assert_clean(&sut);
}

// ---- replication position ---------------------------------------------------------------

#[test]
fn replication_position_survives_detach_and_reattach() {
    let domain = Domain::new("apply-position");
    let opts = CreateOptions {
        role: Role::Replica,
        ..CreateOptions::default()
    };
    let sut = Replica::create(&domain.0, "r", &attrs(4, 64, 256), &opts).unwrap();
    assert_eq!(sut.replication_position(), (0, 0));
    sut.set_replication_position(3, 41);
    sut.set_replication_position(3, 42);
    drop(sut);

    let sut = Replica::attach(&domain.0, "r", Sharing::default()).unwrap();
    assert_eq!(sut.replication_position(), (3, 42));
    sut.set_replication_position(4, 1);
    assert_eq!(sut.replication_position(), (4, 1));
    assert_eq!(sut.role(), (Role::Replica, 0));
    assert_clean(&sut);
}

#[test]
fn replication_position_reads_whole_pairs_while_another_thread_stores_them() {
    let sut = replica_role();
    std::thread::scope(|s| {
        s.spawn(|| {
            for n in 1..=20_000u64 {
                sut.set_replication_position(n, n * 3);
            }
        });
        let mut last = 0;
        for _ in 0..20_000 {
            let (term, seq) = sut.replication_position();
            assert_eq!(seq, term * 3, "a torn position");
            assert!(term >= last, "the position went backwards");
            last = term;
        }
    });
    assert_eq!(sut.replication_position(), (20_000, 60_000));
}

// ---- acknowledgements -------------------------------------------------------------------

#[test]
fn wait_for_acked_returns_true_at_once_when_already_acked() {
    let sut = in_memory(8, 64, 512);
    sut.set_acked_seq(7);
    assert!(sut.wait_for_acked(7, Duration::from_secs(3600)));
    assert!(sut.wait_for_acked(0, Duration::from_secs(3600)));
}

#[test]
fn wait_for_acked_returns_false_after_its_timeout_when_not_acked() {
    let sut = in_memory(8, 64, 512);
    sut.set_acked_seq(7);
    assert!(!sut.wait_for_acked(8, Duration::from_millis(20)));
    assert!(!sut.wait_for_acked(8, Duration::ZERO));
    assert_clean(&sut);
}

#[test]
fn wait_for_acked_returns_true_when_another_thread_publishes_the_seq() {
    let sut = in_memory(8, 64, 512);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            sut.set_acked_seq(4);
            std::thread::sleep(Duration::from_millis(30));
            sut.set_acked_seq(9);
        });
        assert!(sut.wait_for_acked(9, Duration::from_secs(60)));
    });
    assert_eq!(sut.acked_seq(), 9);
    // The waiter is discounted: no wake-up syscall is left for later publishes.
    assert_clean(&sut);
}

#[test]
fn wait_for_acked_without_a_time_limit_returns_when_the_seq_is_published() {
    let sut = in_memory(8, 64, 512);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            sut.set_acked_seq(1);
        });
        assert!(sut.wait_for_acked(1, Duration::MAX));
    });
}

#[test]
fn set_acked_seq_never_moves_it_backwards() {
    let sut = in_memory(8, 64, 512);
    sut.set_acked_seq(9);
    sut.set_acked_seq(4);
    assert_eq!(sut.acked_seq(), 9);
}

// ---- the applier against the normal API -------------------------------------------------

const IDS: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"e"];
/// Expirations the model uses: never, far in the future, long past.
const EXPIRATIONS: [i64; 3] = [TIME_END, 1 << 62, 1];

#[derive(Clone, Debug)]
enum Op {
    Put(usize, usize, Vec<u8>),
    Write(usize, u64, Vec<u8>),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    let data = prop::collection::vec(any::<u8>(), 0..72);
    prop_oneof![
        (id.clone(), 0..EXPIRATIONS.len(), data.clone()).prop_map(|(i, e, d)| Op::Put(i, e, d)),
        (id.clone(), 0..72u64, data).prop_map(|(i, o, d)| Op::Write(i, o, d)),
        id.prop_map(Op::Delete),
    ]
}

/// [`Applier::put`] spelled with the normal API.
fn normal_put(r: &Replica, id: &[u8], expiration: i64, data: &[u8]) -> Result<(), SectionError> {
    match r.overwrite(id, data) {
        Ok(()) if r.section_info(id)?.expiration != expiration => r.set_expiration(id, expiration),
        Ok(()) => Ok(()),
        Err(SectionError::NotExist) => r.create_section(Some(id), expiration, data).map(|_| ()),
        Err(e) => Err(e),
    }
}

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

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn applier_on_a_replica_matches_the_normal_api_on_a_primary(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        // Four sections of 64 bytes and a budget of 160: NoSpace and NoResources happen.
        let primary = in_memory(4, 64, 160);
        let sut = in_memory(4, 64, 160);
        sut.set_role(Role::Replica, 1);
        let applier = sut.applier();
        for op in &ops {
            // Ok(existed) for a delete, Ok(true) for the others.
            let (normal, applied) = match op {
                Op::Put(i, e, d) => (
                    normal_put(&primary, IDS[*i], EXPIRATIONS[*e], d).map(|()| true),
                    applier.put(IDS[*i], EXPIRATIONS[*e], d).map(|()| true),
                ),
                Op::Write(i, o, d) => (
                    primary
                        .write(&[WriteElement { id: IDS[*i], offset: *o, data: d }])
                        .map(|()| true)
                        .map_err(|e| e.kind),
                    applier.write(IDS[*i], *o, d).map(|()| true),
                ),
                Op::Delete(i) => (
                    match primary.delete_section(IDS[*i]) {
                        Ok(()) => Ok(true),
                        Err(SectionError::NotExist) => Ok(false),
                        Err(e) => Err(e),
                    },
                    applier.delete(IDS[*i]),
                ),
            };
            prop_assert_eq!(normal, applied, "{:?}", op);
        }
        for id in IDS {
            prop_assert_eq!(primary.read_to_vec(id), sut.read_to_vec(id));
            let info = |r: &Replica| r.section_info(id).map(|i| (i.size, i.expiration, i.version));
            prop_assert_eq!(info(&primary), info(&sut));
        }
        prop_assert_eq!(primary.status(), sut.status());
        prop_assert_eq!(changes(&primary, 0), changes(&sut, 0));
        prop_assert!(primary.fsck().is_clean());
        prop_assert!(sut.fsck().is_clean());
    }
}
