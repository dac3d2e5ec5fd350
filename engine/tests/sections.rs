//! Section operations on one replica, single process: the rules of saf-ckpt-spec.md §4.

use ckpt_engine::{
    ReadElement, Replica, ReplicaAttributes, ReplicaLimits, SectionError, SectionFilter, TIME_END,
    WriteElement,
};

fn attrs(max_sections: u32, max_section_size: u64) -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: u64::from(max_sections) * max_section_size,
        retention_ns: 0,
        max_sections,
        max_section_size,
        max_section_id_size: 32,
    }
}

fn replica(max_sections: u32, max_section_size: u64) -> Replica {
    Replica::create_in_memory(
        &attrs(max_sections, max_section_size),
        &ReplicaLimits::default(),
    )
    .unwrap()
}

#[test]
fn created_section_reads_back_its_initial_data() {
    let r = replica(10, 100);
    r.create_section(Some(b"a"), TIME_END, b"hello").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(r.read(b"a", 0, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(&*r.borrow(b"a").unwrap(), b"hello");
    assert_eq!(r.status().sections, 1);
    assert_eq!(r.status().memory_used, 5);
}

#[test]
fn overwrite_replaces_data_and_size() {
    let r = replica(10, 100);
    r.create_section(Some(b"a"), TIME_END, b"hello world")
        .unwrap();
    r.overwrite(b"a", b"bye").unwrap();
    assert_eq!(r.read_to_vec(b"a").unwrap(), b"bye");
    assert_eq!(r.status().memory_used, 3);
}

#[test]
fn write_at_offset_grows_section_with_zero_hole() {
    let r = replica(10, 100);
    r.create_section(Some(b"a"), TIME_END, b"ab").unwrap();
    r.write(&[WriteElement {
        id: b"a",
        offset: 4,
        data: b"xy",
    }])
    .unwrap();
    assert_eq!(r.read_to_vec(b"a").unwrap(), b"ab\0\0xy");
}

#[test]
fn multi_section_write_applies_all_elements() {
    let r = replica(10, 100);
    r.create_section(Some(b"a"), TIME_END, b"").unwrap();
    r.create_section(Some(b"b"), TIME_END, b"").unwrap();
    r.write(&[
        WriteElement {
            id: b"b",
            offset: 0,
            data: b"B1",
        },
        WriteElement {
            id: b"a",
            offset: 0,
            data: b"A1",
        },
        WriteElement {
            id: b"b",
            offset: 2,
            data: b"B2",
        },
    ])
    .unwrap();
    assert_eq!(r.read_to_vec(b"a").unwrap(), b"A1");
    assert_eq!(r.read_to_vec(b"b").unwrap(), b"B1B2");
    let (mut x, mut y) = ([0u8; 4], [0u8; 4]);
    let mut elems = [
        ReadElement {
            id: b"a",
            offset: 0,
            buf: &mut x,
            read: 0,
        },
        ReadElement {
            id: b"b",
            offset: 1,
            buf: &mut y,
            read: 0,
        },
    ];
    r.read_many(&mut elems).unwrap();
    assert_eq!((elems[0].read, elems[1].read), (2, 3));
}

#[test]
fn failing_element_leaves_every_section_unchanged() {
    let r = replica(10, 100);
    r.create_section(Some(b"a"), TIME_END, b"old").unwrap();
    let err = r
        .write(&[
            WriteElement {
                id: b"a",
                offset: 0,
                data: b"new",
            },
            WriteElement {
                id: b"missing",
                offset: 0,
                data: b"x",
            },
        ])
        .unwrap_err();
    assert_eq!((err.index, err.kind), (1, SectionError::NotExist));
    assert_eq!(r.read_to_vec(b"a").unwrap(), b"old");
}

#[test]
fn delete_then_create_same_id_and_iteration_sees_each_once() {
    let r = replica(10, 100);
    for i in 0..5u8 {
        r.create_section(Some(&[b'a' + i]), TIME_END, &[i]).unwrap();
    }
    r.delete_section(b"c").unwrap();
    assert_eq!(r.read(b"c", 0, &mut [0u8; 1]), Err(SectionError::NotExist));
    r.create_section(Some(b"c"), TIME_END, b"again").unwrap();
    let mut ids: Vec<_> = r.sections(SectionFilter::Any).map(|s| s.id).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            b"a".to_vec(),
            b"b".to_vec(),
            b"c".to_vec(),
            b"d".to_vec(),
            b"e".to_vec()
        ]
    );
}

#[test]
fn generated_ids_are_distinct() {
    let r = replica(10, 100);
    let a = r.create_section(None, TIME_END, b"").unwrap();
    let b = r.create_section(None, TIME_END, b"").unwrap();
    assert_ne!(a, b);
    assert!(r.contains(&a) && r.contains(&b));
}

#[test]
fn max_sections_reached_gives_no_space() {
    let r = replica(2, 100);
    r.create_section(Some(b"a"), TIME_END, b"").unwrap();
    r.create_section(Some(b"b"), TIME_END, b"").unwrap();
    assert_eq!(
        r.create_section(Some(b"c"), TIME_END, b""),
        Err(SectionError::NoSpace)
    );
}

#[test]
fn default_section_exists_when_max_sections_is_one() {
    let r = replica(1, 100);
    r.overwrite(b"", b"data").unwrap();
    assert_eq!(r.read_to_vec(b"").unwrap(), b"data");
    assert_eq!(
        r.create_section(Some(b"x"), TIME_END, b""),
        Err(SectionError::Exists)
    );
}

#[test]
fn many_overwrites_do_not_leak_slots() {
    let r = replica(4, 64);
    r.create_section(Some(b"a"), TIME_END, b"").unwrap();
    for i in 0..10_000u32 {
        r.overwrite(b"a", &i.to_le_bytes()).unwrap();
    }
    assert_eq!(r.read_to_vec(b"a").unwrap(), 9999u32.to_le_bytes());
}

/// An overwrite fills its new version before it finds the section (engine/DESIGN.md
/// section 23): every refusal after that gives the slot back. Far more refusals than the
/// pool has slots, then the sections still take writes and fsck finds nothing held.
#[test]
fn refused_overwrites_give_back_the_slot_they_filled() {
    let r = Replica::create_in_memory(
        &attrs(2, 64),
        &ReplicaLimits {
            spare_slots: 2,
            ..ReplicaLimits::default()
        },
    )
    .unwrap();
    r.create_section(Some(b"a"), TIME_END, b"1").unwrap();
    r.create_section(Some(b"gone"), TIME_END, b"2").unwrap();
    r.delete_section(b"gone").unwrap();
    for i in 0..1_000u32 {
        let v = i.to_le_bytes();
        assert_eq!(r.overwrite(b"never", &v), Err(SectionError::NotExist));
        assert_eq!(r.overwrite(b"gone", &v), Err(SectionError::NotExist));
        // Found through this thread's hint (the last section it wrote), then refused.
        r.overwrite(b"a", &v).unwrap();
        assert_eq!(r.overwrite(b"gone", &v), Err(SectionError::NotExist));
        assert_eq!(r.overwrite(b"a", &[0; 65]), Err(SectionError::TooBig));
    }
    r.create_section(Some(b"b"), TIME_END, b"3").unwrap();
    r.overwrite(b"b", b"after").unwrap();
    assert_eq!(r.read_to_vec(b"a").unwrap(), 999u32.to_le_bytes());
    assert_eq!(r.read_to_vec(b"b").unwrap(), b"after");
    let report = r.fsck();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn short_lived_threads_beyond_the_agent_table_all_get_an_agent() {
    let r = replica(4, 64);
    r.create_section(Some(b"a"), TIME_END, b"").unwrap();
    // The default table has 128 agents; every thread exits before the next starts.
    for i in 0..400u32 {
        std::thread::scope(|s| {
            s.spawn(|| r.overwrite(b"a", &i.to_le_bytes()).unwrap());
        });
    }
    assert_eq!(r.read_to_vec(b"a").unwrap(), 399u32.to_le_bytes());
    // An exited thread's agent is released by the next thread that registers. A scoped
    // thread's join returns once its closure is done, before its thread-local destructor
    // queues the agent, so the last two threads' agents may both still be held (besides
    // this thread's): never more.
    assert!(
        r.agents().len() <= 3,
        "agents of exited threads were not released: {}",
        r.agents().len()
    );
}

#[test]
fn waiter_is_woken_by_a_write_from_another_thread() {
    let r = replica(4, 64);
    r.create_section(Some(b"a"), TIME_END, b"").unwrap();
    let before = r.commit_seq();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| r.wait_for_changes(before, std::time::Duration::from_secs(10)));
        std::thread::sleep(std::time::Duration::from_millis(20));
        r.overwrite(b"a", b"x").unwrap();
        assert!(
            waiter.join().unwrap(),
            "the waiter timed out instead of being woken"
        );
    });
    assert!(!r.wait_for_changes(r.commit_seq(), std::time::Duration::from_millis(10)));
}

#[test]
fn journal_reports_each_change_then_resync_once_lapped() {
    use ckpt_engine::{ChangeKind, Changes};
    let limits = ReplicaLimits {
        journal_cells: 64,
        ..ReplicaLimits::default()
    };
    let r = Replica::create_in_memory(&attrs(4, 64), &limits).unwrap();
    r.create_section(Some(b"a"), TIME_END, b"12").unwrap();
    r.write(&[WriteElement {
        id: b"a",
        offset: 1,
        data: b"xy",
    }])
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(r.changes_since(0, &mut out, 100), Changes::UpTo(2));
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].kind, out[0].id.as_deref(), out[0].len),
        (ChangeKind::Create, Some(&b"a"[..]), 2)
    );
    assert_eq!(
        (out[1].kind, out[1].offset, out[1].len),
        (ChangeKind::Write, 1, 2)
    );
    for _ in 0..100 {
        r.overwrite(b"a", b"z").unwrap();
    }
    match r.changes_since(2, &mut out, 1000) {
        Changes::Resync(from) => assert_eq!(from, r.commit_seq()),
        other => panic!("expected a resync after the ring lapped, got {other:?}"),
    }
}

#[test]
fn replica_that_is_not_primary_refuses_local_writes() {
    use ckpt_engine::Role;
    let r = replica(4, 64);
    r.create_section(Some(b"a"), TIME_END, b"v").unwrap();
    r.set_role(Role::Replica, 7);
    assert_eq!(r.role(), (Role::Replica, 7));
    assert_eq!(r.overwrite(b"a", b"w"), Err(SectionError::NotPrimary));
    assert_eq!(
        r.create_section(Some(b"b"), TIME_END, b""),
        Err(SectionError::NotPrimary)
    );
    assert_eq!(r.read_to_vec(b"a").unwrap(), b"v");
}

#[test]
fn journal_records_the_writer_tag_and_agent_of_each_change() {
    use ckpt_engine::{Changes, set_write_tag};
    let r = replica(4, 64);
    set_write_tag(7);
    r.create_section(Some(b"a"), TIME_END, b"1").unwrap();
    set_write_tag(0x1234_5678); // cut to 24 bits
    r.overwrite(b"a", b"2").unwrap();
    set_write_tag(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            set_write_tag(9);
            r.overwrite(b"a", b"3").unwrap();
        });
    });
    let mut out = Vec::new();
    assert_eq!(r.changes_since(0, &mut out, 10), Changes::UpTo(3));
    let tags: Vec<u32> = out.iter().map(|c| c.tag).collect();
    assert_eq!(tags, [7, 0x34_5678, 9]);
    // Two threads: two agents, both this process's.
    assert_eq!(out[0].agent, out[1].agent);
    assert_ne!(out[1].agent, out[2].agent);
    assert!(r.is_own_agent(out[0].agent) && r.is_own_agent(out[1].agent));
    assert!(!r.is_own_agent(out[0].agent + 1000));
}
