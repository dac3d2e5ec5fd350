//! Conformance: checkpoint management (spec §2.2): open, close, unlink, retention,
//! ActiveReplicaSet and StatusGet, with §4.3 (retention), §4.4 (unlink while open), §4.8
//! (collocated checkpoints and flags), §4.10 (timeouts), §4.12 (names) and §4.13 (the
//! attribute match). One test per rule, named as the rule; agent/tests/README.md maps
//! every rule of the spec to its tests.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use ckpt_agent::{
    Callbacks, Config, CreationAttributes, CreationFlags, Error, Library, Limits, OpenFlags,
    ReadElement, SectionsChosen, TIME_END, Version, WriteElement,
};
use common::*;

const B01: Version = Version::B_01_01;
const B02: Version = Version::B_02_02;

fn flags(bits: u32) -> CreationFlags {
    CreationFlags(bits)
}

// ---- §2.2 saCkptCheckpointOpen ------------------------------------------------------------

#[test]
fn open_with_create_creates_a_missing_checkpoint_with_the_attributes_given() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = CreationAttributes {
        creation_flags: CreationFlags::WR_ALL_REPLICAS,
        checkpoint_size: 3000,
        retention_duration: 7 * MINUTE,
        max_sections: 5,
        max_section_size: 600,
        max_section_id_size: 9,
    };
    let ck = create(&lib, NAME, &a);
    assert_eq!(ck.attributes(), a);
    assert_eq!(ck.status().unwrap().attributes, a);
    assert_eq!(ck.open_flags(), CRW);
}

#[test]
fn open_with_create_of_an_existing_matching_checkpoint_opens_it() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let first = create(&lib, NAME, &attrs(1));
    first.overwrite(b"", b"first").unwrap();
    let second = create(&lib, NAME, &attrs(1));
    assert_eq!(second.instance(), first.instance());
    assert_eq!(second.read_vec(b"", 0).unwrap(), b"first");
}

#[test]
fn open_without_create_of_a_missing_checkpoint_is_not_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
    assert_eq!(
        lib.open(NAME, None, OpenFlags::READ, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn open_with_create_without_attributes_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    assert!(matches!(
        lib.open(NAME, None, CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        lib.open(NAME, None, OpenFlags::CREATE, TIME_END),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn open_with_attributes_without_create_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let _c = create(&lib, NAME, &attrs(1));
    assert!(matches!(
        lib.open(NAME, Some(&attrs(1)), RW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn a_checkpoint_can_be_opened_many_times_by_one_process() {
    let d = Domain::new();
    let l1 = d.lib(B02);
    let l2 = d.lib(B01);
    let w = create(&l1, NAME, &attrs(1));
    let r1 = open(&l1, NAME, OpenFlags::READ);
    let r2 = open(&l1, NAME, RW);
    let r3 = open(&l2, NAME, OpenFlags::READ);
    w.overwrite(b"", b"shared").unwrap();
    for r in [&r1, &r2, &r3] {
        assert_eq!(r.instance(), w.instance());
        assert_eq!(r.read_vec(b"", 0).unwrap(), b"shared");
    }
    let handles = [w.handle(), r1.handle(), r2.handle(), r3.handle()];
    for (i, h) in handles.iter().enumerate() {
        assert!(!handles[..i].contains(h), "handles are distinct");
    }
}

#[test]
fn concurrent_opens_with_create_of_one_name_make_one_checkpoint() {
    let d = Domain::new();
    let lib = Arc::new(d.lib(B02));
    let barrier = Arc::new(Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let l = Arc::clone(&lib);
            let b = Arc::clone(&barrier);
            std::thread::spawn(move || {
                b.wait();
                l.open(NAME, Some(&attrs(1)), CRW, TIME_END).unwrap()
            })
        })
        .collect();
    let cks: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(cks.iter().all(|c| c.instance() == cks[0].instance()));
}

#[test]
fn a_checkpoint_can_be_opened_by_several_processes() {
    if let Some(dir) = child_domain() {
        let lib = Library::initialize_with(config_at(&dir), B02, Callbacks::default()).unwrap();
        let ck = lib.open(NAME, Some(&attrs(4)), CRW, TIME_END).unwrap();
        assert_eq!(ck.read_vec(b"parent", 0).unwrap(), b"hello");
        ck.create_section(Some(b"child"), TIME_END, b"from the child")
            .unwrap();
        return;
    }
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"parent"), TIME_END, b"hello")
        .unwrap();
    let status = run_child("a_checkpoint_can_be_opened_by_several_processes", d.path());
    assert!(status.success(), "child failed: {status}");
    assert_eq!(ck.read_vec(b"child", 0).unwrap(), b"from the child");
}

#[test]
fn the_open_timeout_is_a_duration_and_time_end_means_no_limit() {
    let d = Domain::new();
    let lib = d.lib(B02);
    // One second as an absolute time is long past; as a duration it is plenty.
    let _c = lib.open(NAME, Some(&attrs(1)), CRW, 1_000_000_000).unwrap();
    assert!(lib.open(NAME, None, RW, 1_000_000_000).is_ok());
    assert!(lib.open(NAME, None, RW, TIME_END).is_ok());
}

#[test]
fn open_with_a_negative_timeout_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    assert!(matches!(
        lib.open(NAME, Some(&attrs(1)), CRW, -1),
        Err(Error::InvalidParam(_))
    ));
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist),
        "nothing was created"
    );
}

#[test]
fn open_with_checkpoint_size_above_max_sections_times_max_section_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let mut a = attrs(4);
    a.checkpoint_size = 4 * 1024 + 1;
    assert!(matches!(
        lib.open(NAME, Some(&a), CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    // Equal is fine.
    a.checkpoint_size = 4 * 1024;
    assert!(lib.open(NAME, Some(&a), CRW, TIME_END).is_ok());
    // An overflowing product does not wrap.
    let huge = CreationAttributes {
        max_sections: u32::MAX,
        max_section_size: u64::MAX,
        checkpoint_size: u64::MAX,
        ..attrs(1)
    };
    assert!(lib.open(OTHER, Some(&huge), CRW, TIME_END).is_err());
}

#[test]
fn open_with_invalid_creation_flags_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    for bits in [
        0,
        0x8,
        0x1 | 0x2,
        0x2 | 0x4,
        0x1 | 0x4,
        0x7,
        0x7 | 0x8,
        0x10,
        0x2 | 0x10,
    ] {
        let r = lib.open(NAME, Some(&attrs_flags(1, flags(bits))), CRW, TIME_END);
        assert!(matches!(r, Err(Error::InvalidParam(_))), "{bits:#x}: {r:?}");
    }
    for bits in [0x1, 0x2, 0x4, 0x1 | 0x8, 0x2 | 0x8, 0x4 | 0x8] {
        let name = format!("safCkpt=flags{bits}");
        let r = lib.open(name, Some(&attrs_flags(1, flags(bits))), CRW, TIME_END);
        assert!(r.is_ok(), "{bits:#x}: {r:?}");
    }
}

#[test]
fn open_with_zero_max_sections_or_max_section_size_or_negative_retention_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let mut a = attrs(1);
    a.max_sections = 0;
    a.checkpoint_size = 0;
    assert!(matches!(
        lib.open(NAME, Some(&a), CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    let mut a = attrs(1);
    a.max_section_size = 0;
    a.checkpoint_size = 0;
    assert!(matches!(
        lib.open(NAME, Some(&a), CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    let a = attrs_retention(1, -1);
    assert!(matches!(
        lib.open(NAME, Some(&a), CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn open_with_invalid_open_flags_is_bad_flags() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let _c = create(&lib, NAME, &attrs(1));
    for bits in [0, 0x8, 0x1 | 0x8, 0x10, 0x8000_0000] {
        assert_eq!(
            lib.open(NAME, None, OpenFlags(bits), TIME_END).err(),
            Some(Error::BadFlags),
            "{bits:#x}"
        );
    }
    assert_eq!(
        lib.open(NAME, Some(&attrs(1)), OpenFlags(0x7 | 0x8), TIME_END)
            .err(),
        Some(Error::BadFlags)
    );
}

#[test]
fn open_flags_grant_exactly_the_access_asked_for() {
    let d = Domain::new();
    let lib = d.lib(B02);
    // CREATE alone creates and opens, with neither READ nor WRITE.
    let c = lib
        .open(NAME, Some(&attrs(1)), OpenFlags::CREATE, TIME_END)
        .unwrap();
    assert_eq!(c.read_vec(b"", 0).err(), Some(Error::Access));
    assert_eq!(c.overwrite(b"", b"x"), Err(Error::Access));
    let r = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(r.overwrite(b"", b"x"), Err(Error::Access));
    let w = open(&lib, NAME, OpenFlags::WRITE);
    w.overwrite(b"", b"x").unwrap();
    assert_eq!(w.read_vec(b"", 0).err(), Some(Error::Access));
    assert_eq!(r.read_vec(b"", 0).unwrap(), b"x");
}

#[test]
fn open_beyond_the_node_limits_is_no_resources() {
    let d = Domain::new();
    let config = Config {
        limits: Limits {
            checkpoints: 2,
            sections: 100,
            section_size: 4096,
            section_id_size: 16,
            ..Limits::default()
        },
        ..d.config()
    };
    let lib = Library::initialize_with(config, B02, Callbacks::default()).unwrap();
    let mut a = attrs(101);
    a.checkpoint_size = 0;
    assert_eq!(
        lib.open(NAME, Some(&a), CRW, TIME_END).err(),
        Some(Error::NoResources)
    );
    let mut a = attrs(1);
    a.max_section_size = 4097;
    assert_eq!(
        lib.open(NAME, Some(&a), CRW, TIME_END).err(),
        Some(Error::NoResources)
    );
    let mut a = attrs(1);
    a.max_section_id_size = 17;
    assert_eq!(
        lib.open(NAME, Some(&a), CRW, TIME_END).err(),
        Some(Error::NoResources)
    );
    // The node registry holds two checkpoints.
    let _a = create(&lib, "safCkpt=a", &attrs(1));
    let _b = create(&lib, "safCkpt=b", &attrs(1));
    assert_eq!(
        lib.open("safCkpt=c", Some(&attrs(1)), CRW, TIME_END).err(),
        Some(Error::NoResources)
    );
}

#[test]
fn open_checks_arguments_before_the_library_handle() {
    let d = Domain::new();
    let lib = d.lib(B02);
    lib.finalize().unwrap();
    assert!(matches!(
        lib.open("", None, RW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        lib.open("bare", None, RW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        lib.open(NAME, None, CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        lib.open(NAME, None, RW, -5),
        Err(Error::InvalidParam(_))
    ));
    assert_eq!(
        lib.open(NAME, None, OpenFlags(8), TIME_END).err(),
        Some(Error::BadFlags)
    );
    // Valid arguments: the handle is what is wrong (not the missing checkpoint).
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::BadHandle)
    );
}

// ---- §4.13 the attribute match on open-with-create ----------------------------------------

#[test]
fn open_with_create_of_an_existing_checkpoint_with_other_attributes_is_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let base = attrs(4);
    let _c = create(&lib, NAME, &base);
    let variants = [
        CreationAttributes {
            creation_flags: CreationFlags::WR_ALL_REPLICAS,
            ..base
        },
        CreationAttributes {
            creation_flags: CreationFlags(0x2 | 0x8),
            ..base
        },
        CreationAttributes {
            checkpoint_size: 100,
            ..base
        },
        CreationAttributes {
            max_sections: 5,
            ..base
        },
        CreationAttributes {
            max_section_size: 2048,
            ..base
        },
        CreationAttributes {
            max_section_id_size: 15,
            ..base
        },
    ];
    for v in variants {
        assert_eq!(
            lib.open(NAME, Some(&v), CRW, TIME_END).err(),
            Some(Error::Exist),
            "{v:?}"
        );
    }
}

#[test]
fn b02_open_with_create_ignores_the_retention_duration() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let c = create(&lib, NAME, &attrs_retention(1, MINUTE));
    let again = create(&lib, NAME, &attrs_retention(1, 3 * MINUTE));
    assert_eq!(again.instance(), c.instance());
    // The retention in force is still the creator's.
    assert_eq!(
        again.status().unwrap().attributes.retention_duration,
        MINUTE
    );
}

#[test]
fn b01_open_with_create_compares_the_retention_duration() {
    let d = Domain::new();
    let lib = d.lib(B01);
    let c = create(&lib, NAME, &attrs_retention(1, MINUTE));
    assert_eq!(
        lib.open(NAME, Some(&attrs_retention(1, 3 * MINUTE)), CRW, TIME_END)
            .err(),
        Some(Error::Exist)
    );
    let same = create(&lib, NAME, &attrs_retention(1, MINUTE));
    assert_eq!(same.instance(), c.instance());
}

// ---- §4.12 names ----------------------------------------------------------------------------

#[test]
fn b01_client_may_use_a_bare_name_but_b02_client_needs_safckpt_dn() {
    let d = Domain::new();
    let b01 = d.lib(B01);
    let b02 = d.lib(B02);
    let bare = b01
        .open("defaults", Some(&attrs(1)), CRW, TIME_END)
        .unwrap();
    bare.overwrite(b"", b"openais").unwrap();
    for name in [
        "defaults",
        "safckpt=x",
        "safCkpt",
        "x,safCkpt=y",
        " safCkpt=x",
    ] {
        assert!(
            matches!(
                b02.open(name, Some(&attrs(1)), CRW, TIME_END),
                Err(Error::InvalidParam(_))
            ),
            "{name}"
        );
    }
    assert!(matches!(
        b02.unlink("defaults"),
        Err(Error::InvalidParam(_))
    ));
    let dn = b02
        .open("safCkpt=a,safApp=b", Some(&attrs(1)), CRW, TIME_END)
        .unwrap();
    drop(dn);
    assert_eq!(b01.unlink("defaults"), Ok(()));
}

#[test]
fn an_empty_name_is_invalid_param() {
    let d = Domain::new();
    for v in [B01, B02] {
        let lib = d.lib(v);
        assert!(matches!(
            lib.open("", Some(&attrs(1)), CRW, TIME_END),
            Err(Error::InvalidParam(_))
        ));
        assert!(matches!(
            lib.open("", None, RW, TIME_END),
            Err(Error::InvalidParam(_))
        ));
        assert!(matches!(lib.unlink(""), Err(Error::InvalidParam(_))));
    }
}

#[test]
fn a_name_length_counts_bytes_up_to_256() {
    let d = Domain::new();
    let lib = d.lib(B02);
    // 8 + 124 * 2 = 256 bytes, 132 characters.
    let longest = format!("safCkpt={}", "é".repeat(124));
    assert_eq!(longest.len(), 256);
    let c = lib.open(&longest, Some(&attrs(1)), CRW, TIME_END).unwrap();
    c.overwrite(b"", b"long").unwrap();
    assert_eq!(open(&lib, &longest, RW).read_vec(b"", 0).unwrap(), b"long");
    let too_long = format!("{longest}x");
    assert!(matches!(
        lib.open(&too_long, Some(&attrs(1)), CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(lib.unlink(&too_long), Err(Error::InvalidParam(_))));
}

#[test]
fn names_are_byte_strings_compared_whole() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = create(&lib, "safCkpt=a", &attrs(1));
    let a_nul = lib
        .open(&b"safCkpt=a\0"[..], Some(&attrs(1)), CRW, TIME_END)
        .unwrap();
    let ab = create(&lib, "safCkpt=ab", &attrs(1));
    assert_ne!(a.instance(), a_nul.instance());
    assert_ne!(a.instance(), ab.instance());
    assert_ne!(a_nul.instance(), ab.instance());
    assert_eq!(
        lib.open("safCkpt=A", None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

// ---- §2.2 saCkptCheckpointClose -----------------------------------------------------------

#[test]
fn close_invalidates_the_handle_and_a_second_close_is_bad_handle() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"data").unwrap();
    assert_eq!(ck.close(), Ok(()));
    let mut buf = [0u8; 4];
    assert_eq!(ck.close(), Err(Error::BadHandle));
    assert_eq!(
        ck.create_section(Some(b"t"), TIME_END, b"").err(),
        Some(Error::BadHandle)
    );
    assert_eq!(ck.delete_section(b"s"), Err(Error::BadHandle));
    assert_eq!(
        ck.set_section_expiration(b"s", TIME_END),
        Err(Error::BadHandle)
    );
    assert_eq!(
        ck.sections(SectionsChosen::Any).err(),
        Some(Error::BadHandle)
    );
    assert_eq!(
        ck.write(&[WriteElement {
            section_id: b"s",
            offset: 0,
            data: b"x",
        }])
        .map_err(|e| e.error),
        Err(Error::BadHandle)
    );
    assert_eq!(ck.overwrite(b"s", b"x"), Err(Error::BadHandle));
    assert_eq!(ck.read_into(b"s", 0, &mut buf), Err(Error::BadHandle));
    assert_eq!(
        ck.read(&mut [ReadElement {
            section_id: b"s",
            offset: 0,
            buf: &mut buf,
            read_size: 0,
        }])
        .map_err(|e| e.error),
        Err(Error::BadHandle)
    );
    assert_eq!(ck.read_vec(b"s", 0).err(), Some(Error::BadHandle));
    assert_eq!(ck.borrow(b"s").err(), Some(Error::BadHandle));
    assert_eq!(ck.status().err(), Some(Error::BadHandle));
    assert_eq!(ck.set_retention_duration(MINUTE), Err(Error::BadHandle));
    assert_eq!(ck.set_active_replica(), Err(Error::BadHandle));
    assert_eq!(ck.synchronize(TIME_END), Err(Error::BadHandle));
    assert_eq!(ck.synchronize_async(1), Err(Error::BadHandle));
}

#[test]
fn close_of_one_handle_leaves_the_other_handles_working() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = create(&lib, NAME, &attrs_retention(1, 0));
    let b = open(&lib, NAME, RW);
    a.overwrite(b"", b"kept").unwrap();
    a.close().unwrap();
    assert_eq!(b.read_vec(b"", 0).unwrap(), b"kept");
    b.overwrite(b"", b"still").unwrap();
    assert_eq!(open(&lib, NAME, RW).read_vec(b"", 0).unwrap(), b"still");
}

#[test]
fn dropping_a_checkpoint_closes_it() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs_retention(1, 0));
    let inst = ck.instance();
    assert!(replica_exists(d.path(), inst));
    drop(ck);
    assert!(!replica_exists(d.path(), inst));
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn process_death_closes_all_of_its_checkpoints() {
    if let Some(dir) = child_domain() {
        let lib = Library::initialize_with(config_at(&dir), B02, Callbacks::default()).unwrap();
        let a = lib
            .open(NAME, Some(&attrs_retention(1, 0)), CRW, TIME_END)
            .unwrap();
        let b = lib
            .open(OTHER, Some(&attrs_retention(1, 0)), CRW, TIME_END)
            .unwrap();
        a.overwrite(b"", b"orphan").unwrap();
        // Die without closing anything.
        std::mem::forget((a, b, lib));
        std::process::exit(0);
    }
    let d = Domain::new();
    let status = run_child("process_death_closes_all_of_its_checkpoints", d.path());
    assert!(status.success(), "child failed: {status}");
    // The child's opens died with it: its checkpoints (retention 0) are gone once the
    // registry is swept (at initialize and at open).
    let lib = d.lib(B02);
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
    assert_eq!(
        lib.open(OTHER, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

// ---- §2.2 saCkptCheckpointUnlink, §4.4 unlink while open -----------------------------------

#[test]
fn unlink_removes_the_name_at_once() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    lib.unlink(NAME).unwrap();
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
    drop(ck);
}

#[test]
fn unlink_while_open_keeps_old_handles_working_and_open_with_create_makes_a_new_instance() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let old = create(&lib, NAME, &attrs(1));
    let old_reader = open(&lib, NAME, OpenFlags::READ);
    old.overwrite(b"", b"old data").unwrap();
    lib.unlink(NAME).unwrap();
    let new = create(&lib, NAME, &attrs(1));
    assert_ne!(new.instance(), old.instance());
    assert_eq!(new.read_vec(b"", 0).unwrap(), b"", "a fresh checkpoint");
    new.overwrite(b"", b"new data").unwrap();
    old.overwrite(b"", b"old again").unwrap();
    assert_eq!(old_reader.read_vec(b"", 0).unwrap(), b"old again");
    assert_eq!(new.read_vec(b"", 0).unwrap(), b"new data");
    assert_eq!(open(&lib, NAME, RW).instance(), new.instance());
    // The old instance goes at its last close; the new one stays.
    let (old_id, new_id) = (old.instance(), new.instance());
    drop((old, old_reader));
    assert!(!replica_exists(d.path(), old_id));
    assert!(replica_exists(d.path(), new_id));
    assert_eq!(new.read_vec(b"", 0).unwrap(), b"new data");
}

#[test]
fn after_unlink_open_with_create_may_use_other_attributes() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let old = create(&lib, NAME, &attrs(1));
    lib.unlink(NAME).unwrap();
    // The old instance does not take part in the attribute match any more.
    let new = create(&lib, NAME, &attrs(8));
    assert_ne!(new.instance(), old.instance());
    assert_eq!(new.attributes().max_sections, 8);
    assert_eq!(old.attributes().max_sections, 1);
    assert_eq!(old.status().unwrap().attributes.max_sections, 1);
}

#[test]
fn an_unlinked_checkpoint_is_deleted_at_its_last_close() {
    let d = Domain::new();
    let lib = d.lib(B02);
    // A minute of retention: only the unlink makes the last close delete it.
    let a = create(&lib, NAME, &attrs(1));
    let b = open(&lib, NAME, RW);
    let inst = a.instance();
    lib.unlink(NAME).unwrap();
    a.close().unwrap();
    assert!(
        replica_exists(d.path(), inst),
        "deleted before its last close"
    );
    b.overwrite(b"", b"alive").unwrap();
    b.close().unwrap();
    assert!(!replica_exists(d.path(), inst), "kept after its last close");
}

#[test]
fn unlink_of_a_checkpoint_nobody_has_open_deletes_it_at_once() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    let inst = ck.instance();
    ck.close().unwrap();
    assert!(replica_exists(d.path(), inst), "retained after close");
    lib.unlink(NAME).unwrap();
    assert!(!replica_exists(d.path(), inst));
}

#[test]
fn a_second_unlink_is_not_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let _ck = create(&lib, NAME, &attrs(1));
    assert_eq!(lib.unlink(NAME), Ok(()));
    assert_eq!(lib.unlink(NAME), Err(Error::NotExist));
    assert_eq!(lib.unlink(OTHER), Err(Error::NotExist));
}

#[test]
fn unlink_may_be_called_by_a_process_that_never_opened_the_checkpoint() {
    if let Some(dir) = child_domain() {
        let lib = Library::initialize_with(config_at(&dir), B02, Callbacks::default()).unwrap();
        lib.unlink(NAME).unwrap();
        return;
    }
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    // Another library handle of this process that never opened it...
    let stranger = d.lib(B01);
    stranger.unlink(NAME).unwrap();
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
    ck.overwrite(b"", b"still mine").unwrap();
    // ...and another process.
    let again = create(&lib, NAME, &attrs(1));
    assert_ne!(again.instance(), ck.instance());
    let status = run_child(
        "unlink_may_be_called_by_a_process_that_never_opened_the_checkpoint",
        d.path(),
    );
    assert!(status.success(), "child failed: {status}");
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
    again.overwrite(b"", b"still works").unwrap();
    assert_eq!(again.read_vec(b"", 0).unwrap(), b"still works");
}

// ---- §2.2 saCkptCheckpointRetentionDurationSet, §4.3 retention -----------------------------

#[test]
fn retention_zero_deletes_the_checkpoint_at_its_last_close() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = create(&lib, NAME, &attrs_retention(1, 0));
    let b = open(&lib, NAME, RW);
    a.close().unwrap();
    assert!(replica_exists(d.path(), b.instance()));
    let inst = b.instance();
    b.close().unwrap();
    assert!(!replica_exists(d.path(), inst));
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn retention_keeps_a_closed_checkpoint_with_its_data() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"retained")
        .unwrap();
    ck.close().unwrap();
    let other = d.lib(B02);
    let again = open(&other, NAME, RW);
    assert_eq!(again.read_vec(b"s", 0).unwrap(), b"retained");
}

#[test]
fn retention_runs_from_the_last_explicit_close_and_the_checkpoint_is_gone_after_it() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs_retention(1, 200 * MS));
    ck.close().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The open's sweep finds the retention elapsed.
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn retention_runs_from_a_drop_and_from_finalize() {
    let d = Domain::new();
    let probe = d.lib(B02);
    {
        let lib = d.lib(B02);
        let ck = create(&lib, NAME, &attrs_retention(1, 200 * MS));
        drop(ck);
        let lib2 = d.lib(B02);
        let _ck2 = create(&lib2, OTHER, &attrs_retention(1, 200 * MS));
        lib2.finalize().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    // Initialize sweeps too.
    let _sweep = d.lib(B02);
    assert_eq!(
        probe.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
    assert_eq!(
        probe.open(OTHER, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn a_reopen_cancels_the_retention_timer() {
    let d = Domain::new();
    let lib = d.lib(B02);
    // Two seconds: the only timing this test needs is that a reopen right after a close
    // happens within them.
    let retention = 2000 * MS;
    let held = Duration::from_millis(2300);
    let first = create(&lib, NAME, &attrs_retention(1, retention));
    first.overwrite(b"", b"survivor").unwrap();
    first.close().unwrap();
    // Reopened well within the retention...
    let second = open(&lib, NAME, RW);
    // ...and held past the first close's deadline (with a sweep meanwhile).
    std::thread::sleep(held);
    let sweeper = d.lib(B02);
    drop(sweeper);
    second.close().unwrap();
    // The timer restarted at the second close: still there.
    let third = open(&lib, NAME, RW);
    assert_eq!(third.read_vec(b"", 0).unwrap(), b"survivor");
    third.close().unwrap();
    std::thread::sleep(held);
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn retention_time_end_keeps_a_closed_checkpoint_forever() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs_retention(1, TIME_END));
    ck.overwrite(b"", b"forever").unwrap();
    ck.close().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _sweep = d.lib(B02);
    assert_eq!(open(&lib, NAME, RW).read_vec(b"", 0).unwrap(), b"forever");
}

#[test]
fn retention_duration_set_changes_the_retention_of_the_checkpoint() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs_retention(1, MINUTE));
    ck.set_retention_duration(0).unwrap();
    let inst = ck.instance();
    ck.close().unwrap();
    assert!(!replica_exists(d.path(), inst), "retention 0 set: deleted");

    let ck = create(&lib, OTHER, &attrs_retention(1, 0));
    ck.set_retention_duration(MINUTE).unwrap();
    let inst = ck.instance();
    ck.close().unwrap();
    assert!(
        replica_exists(d.path(), inst),
        "retention a minute set: kept"
    );
}

#[test]
fn status_shows_the_retention_duration_currently_in_force() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs_retention(1, MINUTE));
    ck.set_retention_duration(5 * MINUTE).unwrap();
    let other = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(
        other.status().unwrap().attributes.retention_duration,
        5 * MINUTE
    );
    // The creation attributes are unchanged.
    assert_eq!(ck.attributes().retention_duration, MINUTE);
}

#[test]
fn retention_duration_set_negative_is_invalid_param_even_on_a_closed_handle() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    assert!(matches!(
        ck.set_retention_duration(-1),
        Err(Error::InvalidParam(_))
    ));
    ck.close().unwrap();
    assert!(matches!(
        ck.set_retention_duration(-1),
        Err(Error::InvalidParam(_))
    ));
    assert_eq!(ck.set_retention_duration(0), Err(Error::BadHandle));
}

#[test]
fn retention_duration_set_after_unlink_is_bad_operation() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    lib.unlink(NAME).unwrap();
    assert_eq!(ck.set_retention_duration(0), Err(Error::BadOperation));
}

#[test]
fn b02_retention_duration_set_without_write_is_access_but_b01_is_allowed() {
    let d = Domain::new();
    let b02 = d.lib(B02);
    let b01 = d.lib(B01);
    let _c = create(&b02, NAME, &attrs(1));
    let r02 = open(&b02, NAME, OpenFlags::READ);
    let r01 = open(&b01, NAME, OpenFlags::READ);
    assert_eq!(r02.set_retention_duration(0), Err(Error::Access));
    assert_eq!(r01.set_retention_duration(2 * MINUTE), Ok(()));
    assert_eq!(
        r02.status().unwrap().attributes.retention_duration,
        2 * MINUTE
    );
}

// ---- §2.2 saCkptActiveReplicaSet, §4.8 collocated checkpoints -------------------------------

#[test]
fn collocated_asynchronous_checkpoints_have_not_exist_before_active_replica_set_even_for_the_creator()
 {
    let d = Domain::new();
    let (cb, _) = sync_callbacks();
    let lib = d.lib_with(B02, cb);
    for (i, wr) in [
        CreationFlags::WR_ACTIVE_REPLICA,
        CreationFlags::WR_ACTIVE_REPLICA_WEAK,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("safCkpt=colloc{i}");
        let a = attrs_flags(4, wr | CreationFlags::CHECKPOINT_COLLOCATED);
        let creator = create(&lib, &name, &a);
        let other = open(&lib, &name, RW);
        for ck in [&creator, &other] {
            let mut buf = [0u8; 4];
            let ne = Some(Error::NotExist);
            assert_eq!(ck.create_section(Some(b"s"), TIME_END, b"").err(), ne);
            assert_eq!(ck.create_section(None, TIME_END, b"").err(), ne);
            assert_eq!(ck.delete_section(b"s").err(), ne);
            assert_eq!(ck.set_section_expiration(b"s", TIME_END).err(), ne);
            let w = [WriteElement {
                section_id: b"s",
                offset: 0,
                data: b"x",
            }];
            assert_eq!(ck.write(&w).err().map(|e| e.error), ne);
            assert_eq!(ck.overwrite(b"s", b"x").err(), ne);
            assert_eq!(ck.read_into(b"s", 0, &mut buf).err(), ne);
            let mut r = [ReadElement {
                section_id: b"s",
                offset: 0,
                buf: &mut buf,
                read_size: 0,
            }];
            assert_eq!(ck.read(&mut r).err().map(|e| e.error), ne);
            assert_eq!(ck.read_vec(b"s", 0).err(), ne);
            assert_eq!(ck.borrow(b"s").err(), ne);
            assert_eq!(ck.sections(SectionsChosen::Any).err(), ne);
            assert_eq!(ck.status().err(), ne);
            assert_eq!(ck.synchronize(TIME_END).err(), ne);
            assert_eq!(ck.synchronize_async(1).err(), ne);
        }
        creator.set_active_replica().unwrap();
        creator.create_section(Some(b"s"), TIME_END, b"x").unwrap();
        assert_eq!(other.read_vec(b"s", 0).unwrap(), b"x");
        assert_eq!(other.status().unwrap().number_of_sections, 1);
        assert_eq!(other.synchronize(TIME_END), Ok(()));
    }
}

fn sync_callbacks() -> (Callbacks, Arc<std::sync::Mutex<Vec<u64>>>) {
    let got: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let g = Arc::clone(&got);
    (
        Callbacks {
            open: None,
            synchronize: Some(Box::new(move |inv, _| g.lock().unwrap().push(inv))),
        },
        got,
    )
}

#[test]
fn active_replica_set_makes_the_checkpoint_usable_by_every_opener() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = attrs_flags(
        1,
        CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
    );
    let creator = create(&lib, NAME, &a);
    let other_lib = d.lib(B01);
    let writer = open(&other_lib, NAME, RW);
    assert_eq!(writer.overwrite(b"", b"x"), Err(Error::NotExist));
    writer.set_active_replica().unwrap();
    writer.overwrite(b"", b"active").unwrap();
    assert_eq!(creator.read_vec(b"", 0).unwrap(), b"active");
    // Setting it again is harmless.
    creator.set_active_replica().unwrap();
    assert_eq!(creator.read_vec(b"", 0).unwrap(), b"active");
}

#[test]
fn active_replica_set_without_write_is_access() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = attrs_flags(
        1,
        CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
    );
    let _c = create(&lib, NAME, &a);
    let reader = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(reader.set_active_replica(), Err(Error::Access));
    assert_eq!(reader.read_vec(b"", 0).err(), Some(Error::NotExist));
}

#[test]
fn active_replica_set_on_a_checkpoint_not_collocated_or_all_replicas_is_bad_operation() {
    let d = Domain::new();
    let lib = d.lib(B02);
    for (i, bits) in [0x1, 0x2, 0x4, 0x1 | 0x8].into_iter().enumerate() {
        let name = format!("safCkpt=n{i}");
        let ck = create(&lib, &name, &attrs_flags(1, flags(bits)));
        assert_eq!(
            ck.set_active_replica(),
            Err(Error::BadOperation),
            "{bits:#x}"
        );
    }
}

#[test]
fn all_replicas_collocated_is_a_valid_creation_with_an_active_replica() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = attrs_flags(
        1,
        CreationFlags::WR_ALL_REPLICAS | CreationFlags::CHECKPOINT_COLLOCATED,
    );
    let ck = create(&lib, NAME, &a);
    ck.overwrite(b"", b"at once").unwrap();
    assert_eq!(ck.read_vec(b"", 0).unwrap(), b"at once");
    assert_eq!(
        ck.status().unwrap().attributes.creation_flags,
        a.creation_flags
    );
}

#[test]
fn non_collocated_asynchronous_checkpoints_have_an_active_replica_from_creation() {
    let d = Domain::new();
    let lib = d.lib(B02);
    for (i, wr) in [
        CreationFlags::WR_ACTIVE_REPLICA,
        CreationFlags::WR_ACTIVE_REPLICA_WEAK,
    ]
    .into_iter()
    .enumerate()
    {
        let ck = create(&lib, &format!("safCkpt=a{i}"), &attrs_flags(1, wr));
        ck.overwrite(b"", b"ready").unwrap();
        assert_eq!(ck.read_vec(b"", 0).unwrap(), b"ready");
        assert_eq!(ck.synchronize(TIME_END), Ok(()));
    }
}

// ---- §2.2 saCkptCheckpointStatusGet --------------------------------------------------------

#[test]
fn status_reports_the_creation_attributes_the_number_of_sections_and_memory_used() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = attrs(8);
    let ck = create(&lib, NAME, &a);
    let st = ck.status().unwrap();
    assert_eq!(
        (st.attributes, st.number_of_sections, st.memory_used),
        (a, 0, 0)
    );
    ck.create_section(Some(b"a"), TIME_END, &[1; 10]).unwrap();
    ck.create_section(Some(b"b"), TIME_END, b"").unwrap();
    ck.create_section(None, TIME_END, &[2; 5]).unwrap();
    ck.write(&[WriteElement {
        section_id: b"b",
        offset: 20,
        data: &[3; 7],
    }])
    .unwrap();
    let st = ck.status().unwrap();
    assert_eq!(st.number_of_sections, 3);
    assert_eq!(st.memory_used, 10 + 27 + 5);
    ck.overwrite(b"a", b"x").unwrap();
    ck.delete_section(b"b").unwrap();
    let st = ck.status().unwrap();
    assert_eq!((st.number_of_sections, st.memory_used), (2, 1 + 5));
}

#[test]
fn b02_status_get_without_read_is_access_but_b01_is_allowed() {
    let d = Domain::new();
    let b02 = d.lib(B02);
    let b01 = d.lib(B01);
    let _c = create(&b02, NAME, &attrs(1));
    assert_eq!(
        open(&b02, NAME, OpenFlags::WRITE).status().err(),
        Some(Error::Access)
    );
    assert_eq!(
        open(&b01, NAME, OpenFlags::WRITE)
            .status()
            .unwrap()
            .number_of_sections,
        1
    );
}

// ---- §2 errors common to every function --------------------------------------------------

#[test]
fn a_replica_object_that_fails_validation_is_library() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let inst = ck.instance();
    ck.close().unwrap();
    // Damage the header of the (retained, unmapped) replica object.
    let path = d.path().join(format!("r-{inst:016x}"));
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes[..64] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        lib.open(NAME, None, RW, TIME_END),
        Err(Error::Library(_))
    ));
    assert_eq!(Error::Library("any").code(), 2);
}
