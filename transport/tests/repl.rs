//! The replication core between two in-memory replicas, frames passed by hand: what the
//! primary streams converges the replica, stale terms are refused, a lagging or new
//! replica is brought up by a snapshot.

use std::time::Duration;

use ckpt_engine::{
    Replica, ReplicaAttributes, ReplicaLimits, Role, SectionFilter, TIME_END, WriteElement,
};
use ckpt_transport::repl::{INCOMPLETE, Primary, PrimaryEvent, ReplConfig, Transmit, apply_diff};
use ckpt_transport::wire::Frame;

fn replica(journal_cells: u32) -> Replica {
    let attrs = ReplicaAttributes {
        creation_flags: 2,
        checkpoint_size: 64 * 1024,
        retention_ns: 0,
        max_sections: 16,
        max_section_size: 4096,
        max_section_id_size: 16,
    };
    let limits = ReplicaLimits {
        journal_cells,
        ..ReplicaLimits::default()
    };
    Replica::create_in_memory(&attrs, &limits).expect("in-memory replica")
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

/// Delivers frames both ways until nothing moves; returns how many Stale frames the
/// primary got (and whether it was fenced).
fn pump(
    p: &mut Primary,
    primary: &Replica,
    node: u32,
    rep: &Replica,
    now: Duration,
) -> Option<PrimaryEvent> {
    for _ in 0..1000 {
        let mut out: Vec<Transmit> = Vec::new();
        p.poll(primary, now, &mut out);
        if out.is_empty() {
            return None;
        }
        for t in out {
            assert_eq!(t.node, node);
            let Frame::Diff {
                instance,
                term,
                base,
                mark,
                ops,
            } = t.frame
            else {
                panic!("primary sent {:?}", t.frame);
            };
            match apply_diff(rep, instance, term, base, mark, &ops) {
                Frame::Ack { term, seq, .. } => p.on_ack(node, term, seq, primary, now),
                Frame::Stale { term, .. } => {
                    if let Some(e) = p.on_stale(node, term) {
                        return Some(e);
                    }
                }
                other => panic!("replica answered {other:?}"),
            }
        }
    }
    panic!("replication did not settle");
}

#[test]
fn a_replica_fed_by_the_primary_ends_byte_identical_and_acked_at_its_commit_seq() {
    let primary = replica(4096);
    let rep = replica(4096);
    rep.set_role(Role::Replica, 0);
    let mut p = Primary::new(7, 1, ReplConfig::default());
    p.set_replicas(&[2], |_| true);
    p.peer_up(2);
    primary
        .create_section(Some(b"a"), TIME_END, b"first")
        .unwrap();
    primary.create_section(Some(b"b"), 1 << 62, b"bee").unwrap();
    let now = Duration::from_secs(1);
    assert_eq!(pump(&mut p, &primary, 2, &rep, now), None);
    assert_eq!(contents(&rep), contents(&primary));
    // Incremental changes: an overwrite, a write at an offset, a delete, an expiration.
    for i in 0..50u32 {
        primary
            .overwrite(b"a", format!("value {i}").as_bytes())
            .unwrap();
    }
    primary
        .write(&[WriteElement {
            id: b"b",
            offset: 2,
            data: b"EEEE",
        }])
        .unwrap();
    primary.create_section(Some(b"c"), TIME_END, b"c").unwrap();
    primary.delete_section(b"c").unwrap();
    primary.set_expiration(b"a", 1 << 61).unwrap();
    assert_eq!(pump(&mut p, &primary, 2, &rep, now), None);
    assert_eq!(contents(&rep), contents(&primary));
    assert_eq!(p.acked_floor(), Some(primary.commit_seq()));
    assert_eq!(rep.replication_position(), (1, primary.commit_seq()));
}

#[test]
fn a_replica_that_the_journal_lapped_is_resynced_from_section_versions() {
    let primary = replica(64);
    let rep = replica(64);
    rep.set_role(Role::Replica, 0);
    let mut p = Primary::new(7, 1, ReplConfig::default());
    p.set_replicas(&[2], |_| true);
    p.peer_up(2);
    for i in 0..8u8 {
        primary
            .create_section(Some(&[b's', i]), TIME_END, &[i; 10])
            .unwrap();
    }
    let now = Duration::from_secs(1);
    pump(&mut p, &primary, 2, &rep, now);
    // The replica is away while far more changes than the journal holds happen.
    p.peer_down(2);
    for i in 0..500u32 {
        let id = [b's', (i % 3) as u8];
        primary.overwrite(&id, &i.to_le_bytes()).unwrap();
    }
    primary.delete_section(&[b's', 7]).unwrap();
    p.peer_up(2);
    pump(&mut p, &primary, 2, &rep, now);
    assert_eq!(contents(&rep), contents(&primary));
    assert_ne!(rep.replication_position().1, INCOMPLETE);
}

#[test]
fn a_diff_of_an_older_term_is_refused_and_fences_the_old_primary() {
    let primary = replica(4096);
    let rep = replica(4096);
    rep.set_role(Role::Replica, 0);
    rep.set_replication_position(5, 0);
    let mut old = Primary::new(7, 3, ReplConfig::default());
    old.set_replicas(&[2], |_| true);
    old.peer_up(2);
    primary
        .create_section(Some(b"x"), TIME_END, b"stale")
        .unwrap();
    let event = pump(&mut old, &primary, 2, &rep, Duration::from_secs(1));
    assert_eq!(event, Some(PrimaryEvent::Fenced { term: 5 }));
    assert!(
        contents(&rep).is_empty(),
        "a fenced primary's write reached the replica"
    );
}

/// A primary of term 3 (instance 7) holding section `x` = "held", and node 2's replica,
/// synced by it.
fn synced_by_a_primary_of_term_3() -> (Replica, Primary, Replica) {
    let old_primary = replica(4096);
    old_primary
        .create_section(Some(b"x"), TIME_END, b"held")
        .unwrap();
    let rep = replica(4096);
    rep.set_role(Role::Replica, 0);
    let mut old = Primary::new(7, 3, ReplConfig::default());
    old.set_replicas(&[2], |_| true);
    old.peer_up(2);
    assert_eq!(
        pump(&mut old, &old_primary, 2, &rep, Duration::from_secs(1)),
        None
    );
    (old_primary, old, rep)
}

#[test]
fn a_replica_whose_node_was_named_primary_in_a_newer_term_fences_the_older_primary() {
    // Node 2 was the primary of term 5 (an ALL_REPLICAS one publishes into its replica,
    // whose position stays where it was named until a write is published) and restarted:
    // its replica is at (3, 1) of the primary it replaced, its role says term 5.
    let (old_primary, mut old, rep) = synced_by_a_primary_of_term_3();
    let now = Duration::from_secs(1);
    let held = old_primary.commit_seq();
    assert_eq!(rep.replication_position(), (3, held));
    rep.set_role(Role::Replica, 5);

    // The primary of term 3, cut off meanwhile, goes on: its diffs are refused.
    old_primary.overwrite(b"x", b"confirmed by nobody").unwrap();
    let event = pump(&mut old, &old_primary, 2, &rep, now);
    assert_eq!(event, Some(PrimaryEvent::Fenced { term: 5 }));
    assert_eq!(
        rep.read_to_vec(b"x").unwrap(),
        b"held",
        "a write of a primary older than this node's own term reached its replica"
    );
    assert_eq!(old.acked_by(2), Some(held), "it acknowledged nothing more");
}

#[test]
fn a_replica_named_under_a_new_primary_asks_it_for_a_snapshot_naming_the_term_it_holds() {
    // The replica holds (3, n) of the primary of term 3; the directory then named it a
    // replica under another primary in term 5, and its role says so.
    let (_, _, rep) = synced_by_a_primary_of_term_3();
    let now = Duration::from_secs(1);
    let held = rep.replication_position();
    rep.set_role(Role::Replica, 5);

    // The new primary's probe: the answer names the term of what the replica holds (a
    // primary vetting its replicas reads it as the state they hold), not its role's.
    let answer = apply_diff(&rep, 7, 5, 0, 0, &[]);
    assert_eq!(
        answer,
        Frame::Stale {
            instance: 7,
            term: held.0
        }
    );
    // The replaced primary's diffs are refused with the newer term, which fences it.
    let answer = apply_diff(&rep, 7, 3, held.1, held.1, &[]);
    assert_eq!(
        answer,
        Frame::Stale {
            instance: 7,
            term: 5
        }
    );

    // And the new primary brings it up by snapshot.
    let primary = replica(4096);
    primary
        .create_section(Some(b"x"), TIME_END, b"newer")
        .unwrap();
    let mut p = Primary::new(7, 5, ReplConfig::default());
    p.set_replicas(&[2], |_| true);
    p.peer_up(2);
    assert_eq!(pump(&mut p, &primary, 2, &rep, now), None);
    assert_eq!(contents(&rep), contents(&primary));
    assert_eq!(rep.replication_position().0, 5);
}

#[test]
fn a_new_primary_term_brings_an_old_replica_up_by_snapshot_and_truncates_its_divergent_tail() {
    let primary = replica(4096);
    let rep = replica(4096);
    // The replica holds a tail the new primary never had (an old primary's writes).
    rep.create_section(Some(b"old"), TIME_END, b"divergent")
        .unwrap();
    rep.create_section(Some(b"k"), TIME_END, b"old value")
        .unwrap();
    rep.set_role(Role::Replica, 1);
    rep.set_replication_position(1, rep.commit_seq());
    primary
        .create_section(Some(b"k"), TIME_END, b"new value")
        .unwrap();
    let mut p = Primary::new(7, 2, ReplConfig::default());
    p.set_replicas(&[2], |_| true);
    p.peer_up(2);
    assert_eq!(
        pump(&mut p, &primary, 2, &rep, Duration::from_secs(1)),
        None
    );
    assert_eq!(contents(&rep), contents(&primary));
    assert_eq!(rep.replication_position().0, 2);
}
