//! Conformance: section management (spec §2.3) with §4.1 (the default section and section
//! ids) and §4.2 (section expiration). One test per rule, named as the rule;
//! agent/tests/README.md maps every rule of the spec to its tests.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use ckpt_agent::{
    CreationAttributes, Error, OpenFlags, SectionDescriptor, SectionState, SectionsChosen,
    TIME_END, Version, WriteElement,
};
use common::*;

const B01: Version = Version::B_01_01;
const B02: Version = Version::B_02_02;
const HOUR: i64 = 60 * MINUTE;

fn ids(it: impl Iterator<Item = ckpt_agent::Result<SectionDescriptor>>) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = it.map(|s| s.unwrap().id).collect();
    v.sort();
    v
}

fn all(ck: &ckpt_agent::Checkpoint, chosen: SectionsChosen) -> Vec<SectionDescriptor> {
    ck.sections(chosen).unwrap().map(|s| s.unwrap()).collect()
}

// ---- §4.1 the default section -----------------------------------------------------------

#[test]
fn a_default_section_exists_if_and_only_if_max_sections_is_one() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let single = create(&lib, NAME, &attrs(1));
    let st = single.status().unwrap();
    assert_eq!(st.number_of_sections, 1);
    let s = all(&single, SectionsChosen::Any);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].id, b"");
    assert_eq!(s[0].size, 0);
    assert_eq!(s[0].expiration_time, TIME_END);
    assert_eq!(s[0].state, SectionState::Valid);

    let multi = create(&lib, OTHER, &attrs(2));
    assert_eq!(multi.status().unwrap().number_of_sections, 0);
    assert!(all(&multi, SectionsChosen::Any).is_empty());
}

#[test]
fn the_default_section_is_reached_with_the_empty_id_in_read_write_and_overwrite() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    ck.write(&[WriteElement {
        section_id: b"",
        offset: 0,
        data: b"hello world",
    }])
    .unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(ck.read_into(b"", 6, &mut buf), Ok(5));
    assert_eq!(&buf, b"world");
    ck.overwrite(b"", b"bye").unwrap();
    assert_eq!(ck.read_vec(b"", 0).unwrap(), b"bye");
    let st = ck.status().unwrap();
    assert_eq!((st.number_of_sections, st.memory_used), (1, 3));
}

#[test]
fn the_default_section_expiration_is_time_end_and_setting_it_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    for t in [now() + HOUR, TIME_END, 0] {
        assert!(
            matches!(
                ck.set_section_expiration(b"", t),
                Err(Error::InvalidParam(_))
            ),
            "{t}"
        );
    }
    assert_eq!(
        all(&ck, SectionsChosen::Forever)[0].expiration_time,
        TIME_END
    );
}

#[test]
fn the_default_section_cannot_be_deleted_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    assert!(matches!(
        ck.delete_section(b""),
        Err(Error::InvalidParam(_))
    ));
    assert_eq!(ck.status().unwrap().number_of_sections, 1);
}

#[test]
fn section_create_on_a_default_section_checkpoint_is_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    assert_eq!(
        ck.create_section(Some(b"x"), TIME_END, b"").err(),
        Some(Error::Exist)
    );
    assert_eq!(
        ck.create_section(None, TIME_END, b"").err(),
        Some(Error::Exist)
    );
    assert_eq!(
        ck.create_section(Some(b"a-very-long-id-beyond-16"), now() - 1, &[0; 4096])
            .err(),
        Some(Error::Exist),
        "whatever else is wrong with the arguments"
    );
}

#[test]
fn the_empty_id_is_not_exist_when_max_sections_is_above_one() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let mut buf = [0u8; 1];
    let ne = Some(Error::NotExist);
    assert_eq!(ck.read_into(b"", 0, &mut buf).err(), ne);
    assert_eq!(ck.read_vec(b"", 0).err(), ne);
    assert_eq!(
        ck.write(&[WriteElement {
            section_id: b"",
            offset: 0,
            data: b"x",
        }])
        .err()
        .map(|e| e.error),
        ne
    );
    assert_eq!(ck.overwrite(b"", b"x").err(), ne);
    assert_eq!(ck.delete_section(b"").err(), ne);
    assert_eq!(ck.set_section_expiration(b"", TIME_END).err(), ne);
}

// ---- §4.1 section ids, generated ids ------------------------------------------------------

#[test]
fn section_create_without_an_id_generates_a_new_one() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(16));
    let mut seen = HashSet::new();
    for i in 0..16u8 {
        let id = ck.create_section(None, TIME_END, &[i]).unwrap();
        assert!(!id.is_empty());
        assert!(id.len() <= 16);
        assert!(seen.insert(id.clone()), "generated id {id:?} twice");
        assert_eq!(ck.read_vec(&id, 0).unwrap(), [i]);
    }
    let listed: HashSet<Vec<u8>> = all(&ck, SectionsChosen::Any)
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, seen);
}

#[test]
fn generated_ids_fit_max_section_id_size_and_avoid_existing_ids() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = CreationAttributes {
        max_section_id_size: 1,
        ..attrs(12)
    };
    let ck = create(&lib, NAME, &a);
    // Take the ids a counter would give first.
    ck.create_section(Some(b"1"), TIME_END, b"mine").unwrap();
    ck.create_section(Some(b"2"), TIME_END, b"mine").unwrap();
    let mut seen = HashSet::new();
    // Ten 1-byte ids are generated (decimal digits: see the engine limit in README.md).
    for i in 0..8 {
        let id = ck
            .create_section(None, TIME_END, b"gen")
            .unwrap_or_else(|e| panic!("generated id {i} after {seen:?}: {e}"));
        assert_eq!(id.len(), 1);
        assert!(seen.insert(id.clone()));
        assert_eq!(ck.read_vec(&id, 0).unwrap(), b"gen");
    }
    assert_eq!(ck.read_vec(b"1", 0).unwrap(), b"mine");
    assert_eq!(ck.read_vec(b"2", 0).unwrap(), b"mine");
}

#[test]
fn a_generated_id_with_max_section_id_size_zero_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = CreationAttributes {
        max_section_id_size: 0,
        ..attrs(4)
    };
    let ck = create(&lib, NAME, &a);
    assert!(matches!(
        ck.create_section(None, TIME_END, b""),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn section_ids_are_binary_and_compared_by_length_and_bytes() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(8));
    let ids: [&[u8]; 5] = [b"a", b"a\0", b"\0a", b"\xff\x00\xfe", b"A"];
    for (i, id) in ids.iter().enumerate() {
        ck.create_section(Some(id), TIME_END, &[i as u8]).unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(ck.read_vec(id, 0).unwrap(), [i as u8], "{id:?}");
    }
    assert_eq!(
        ck.create_section(Some(b"a\0"), TIME_END, b"").err(),
        Some(Error::Exist)
    );
    assert_eq!(ck.read_vec(b"\0", 0).err(), Some(Error::NotExist));
}

#[test]
fn a_section_id_longer_than_max_section_id_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    assert!(matches!(
        ck.create_section(Some(&[b'x'; 17]), TIME_END, b""),
        Err(Error::InvalidParam(_))
    ));
    ck.create_section(Some(&[b'x'; 16]), TIME_END, b"").unwrap();
}

#[test]
fn ids_up_to_max_section_id_size_are_accepted_beyond_the_opensaf_cap_of_50() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = CreationAttributes {
        max_section_id_size: 200,
        ..attrs(4)
    };
    let ck = create(&lib, NAME, &a);
    let id = [7u8; 200];
    ck.create_section(Some(&id), TIME_END, b"long id").unwrap();
    assert_eq!(ck.read_vec(&id, 0).unwrap(), b"long id");
}

#[test]
fn an_empty_explicit_section_id_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    assert!(matches!(
        ck.create_section(Some(b""), TIME_END, b""),
        Err(Error::InvalidParam(_))
    ));
    assert_eq!(ck.status().unwrap().number_of_sections, 0);
}

// ---- §2.3 saCkptSectionCreate ------------------------------------------------------------

#[test]
fn section_create_stores_the_initial_data_and_returns_the_id_given() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    assert_eq!(
        ck.create_section(Some(b"s"), TIME_END, b"initial").unwrap(),
        b"s"
    );
    assert_eq!(ck.read_vec(b"s", 0).unwrap(), b"initial");
    // No initial data (a NULL buffer with size 0) is fine.
    ck.create_section(Some(b"empty"), TIME_END, b"").unwrap();
    assert_eq!(ck.read_vec(b"empty", 0).unwrap(), b"");
    let full = [9u8; 1024];
    ck.create_section(Some(b"full"), TIME_END, &full).unwrap();
    assert_eq!(ck.read_vec(b"full", 0).unwrap(), full);
}

#[test]
fn section_create_needs_write_else_access() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let _c = create(&lib, NAME, &attrs(4));
    let r = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(
        r.create_section(Some(b"s"), TIME_END, b"").err(),
        Some(Error::Access)
    );
    assert_eq!(
        r.create_section(None, TIME_END, b"").err(),
        Some(Error::Access)
    );
    // Access is checked before the default-section rule and the arguments.
    let _d = create(&lib, OTHER, &attrs(1));
    let r1 = open(&lib, OTHER, OpenFlags::READ);
    assert_eq!(
        r1.create_section(Some(b""), -1, b"").err(),
        Some(Error::Access)
    );
}

#[test]
fn section_create_with_initial_data_larger_than_max_section_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    assert!(matches!(
        ck.create_section(Some(b"s"), TIME_END, &[0; 1025]),
        Err(Error::InvalidParam(_))
    ));
    assert_eq!(ck.read_vec(b"s", 0).err(), Some(Error::NotExist));
}

#[test]
fn section_create_of_an_existing_id_is_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"first").unwrap();
    assert_eq!(
        ck.create_section(Some(b"s"), TIME_END, b"second").err(),
        Some(Error::Exist)
    );
    assert_eq!(ck.read_vec(b"s", 0).unwrap(), b"first");
}

#[test]
fn section_create_beyond_max_sections_is_no_space() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(3));
    for id in [&b"a"[..], b"b", b"c"] {
        ck.create_section(Some(id), TIME_END, b"").unwrap();
    }
    assert_eq!(
        ck.create_section(Some(b"d"), TIME_END, b"").err(),
        Some(Error::NoSpace)
    );
    assert_eq!(
        ck.create_section(None, TIME_END, b"").err(),
        Some(Error::NoSpace)
    );
    ck.delete_section(b"b").unwrap();
    ck.create_section(Some(b"d"), TIME_END, b"").unwrap();
}

#[test]
fn section_create_beyond_checkpoint_size_is_no_resources() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = CreationAttributes {
        checkpoint_size: 100,
        ..attrs(4)
    };
    let ck = create(&lib, NAME, &a);
    ck.create_section(Some(b"a"), TIME_END, &[1; 60]).unwrap();
    assert_eq!(
        ck.create_section(Some(b"b"), TIME_END, &[2; 41]).err(),
        Some(Error::NoResources)
    );
    assert_eq!(ck.read_vec(b"b", 0).err(), Some(Error::NotExist));
    ck.create_section(Some(b"b"), TIME_END, &[2; 40]).unwrap();
    assert_eq!(ck.status().unwrap().memory_used, 100);
}

#[test]
fn section_create_with_an_expiration_already_past_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    // A duration passed by mistake for an absolute time, the epoch, a second ago, negative.
    for t in [200 * MS, 0, now() - 1_000_000_000, -1] {
        assert!(
            matches!(
                ck.create_section(Some(b"s"), t, b""),
                Err(Error::InvalidParam(_))
            ),
            "{t}"
        );
    }
    assert_eq!(ck.status().unwrap().number_of_sections, 0);
}

#[test]
fn section_expiration_time_is_absolute() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let t = now() + HOUR;
    ck.create_section(Some(b"s"), t, b"").unwrap();
    let s = all(&ck, SectionsChosen::Any);
    assert_eq!(s[0].expiration_time, t);
    let t2 = now() + 2 * HOUR;
    ck.set_section_expiration(b"s", t2).unwrap();
    assert_eq!(all(&ck, SectionsChosen::Any)[0].expiration_time, t2);
}

// ---- §2.3 saCkptSectionDelete -----------------------------------------------------------

#[test]
fn section_delete_removes_the_section() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"old").unwrap();
    ck.create_section(Some(b"t"), TIME_END, b"kept").unwrap();
    ck.delete_section(b"s").unwrap();
    assert_eq!(ck.read_vec(b"s", 0).err(), Some(Error::NotExist));
    assert_eq!(ids(ck.sections(SectionsChosen::Any).unwrap()), [b"t"]);
    ck.create_section(Some(b"s"), TIME_END, b"new").unwrap();
    assert_eq!(ck.read_vec(b"s", 0).unwrap(), b"new");
}

#[test]
fn section_delete_needs_write_else_access() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"").unwrap();
    let r = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(r.delete_section(b"s"), Err(Error::Access));
    assert!(ck.read_vec(b"s", 0).is_ok());
}

#[test]
fn section_delete_of_a_missing_section_is_not_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    assert_eq!(ck.delete_section(b"nope"), Err(Error::NotExist));
    ck.create_section(Some(b"s"), TIME_END, b"").unwrap();
    ck.delete_section(b"s").unwrap();
    assert_eq!(ck.delete_section(b"s"), Err(Error::NotExist));
}

// ---- §2.3 saCkptSectionExpirationTimeSet, §4.2 -------------------------------------------

#[test]
fn expiration_time_set_needs_write_else_access() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"").unwrap();
    let r = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(
        r.set_section_expiration(b"s", now() + HOUR),
        Err(Error::Access)
    );
    assert_eq!(all(&ck, SectionsChosen::Any)[0].expiration_time, TIME_END);
}

#[test]
fn expiration_time_set_of_a_missing_section_is_not_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    assert_eq!(
        ck.set_section_expiration(b"nope", TIME_END),
        Err(Error::NotExist)
    );
}

#[test]
fn expiration_time_set_to_time_end_means_never() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let was = now() + 500 * MS;
    ck.create_section(Some(b"s"), was, b"saved").unwrap();
    ck.set_section_expiration(b"s", TIME_END).unwrap();
    ck.create_section(Some(b"t"), now() + 200 * MS, b"")
        .unwrap();
    eventually("t expired and s's first time passed", || {
        ck.read_vec(b"t", 0).err() == Some(Error::NotExist) && now() > was
    });
    assert_eq!(ck.read_vec(b"s", 0).unwrap(), b"saved");
    assert_eq!(ids(ck.sections(SectionsChosen::Forever).unwrap()), [b"s"]);
}

#[test]
fn expiration_time_set_in_the_past_expires_the_section_at_once() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"").unwrap();
    ck.set_section_expiration(b"s", now() - 1).unwrap();
    assert_eq!(ck.read_vec(b"s", 0).err(), Some(Error::NotExist));
    assert_eq!(ck.status().unwrap().number_of_sections, 0);
}

#[test]
fn expiration_time_set_negative_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"").unwrap();
    assert!(matches!(
        ck.set_section_expiration(b"s", -1),
        Err(Error::InvalidParam(_))
    ));
    assert!(ck.read_vec(b"s", 0).is_ok());
}

#[test]
fn a_section_is_deleted_automatically_at_its_expiration_time_while_the_checkpoint_is_open() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let reader_lib = d.lib(B02);
    let reader = open(&reader_lib, NAME, OpenFlags::READ);
    ck.create_section(Some(b"brief"), now() + 200 * MS, b"x")
        .unwrap();
    ck.create_section(Some(b"stays"), TIME_END, b"y").unwrap();
    eventually("the section expired", || {
        reader.read_vec(b"brief", 0).err() == Some(Error::NotExist)
    });
    let st = reader.status().unwrap();
    assert_eq!((st.number_of_sections, st.memory_used), (1, 1));
    assert_eq!(
        ids(reader.sections(SectionsChosen::Any).unwrap()),
        [b"stays"]
    );
    // Its id is free again.
    ck.create_section(Some(b"brief"), TIME_END, b"again")
        .unwrap();
}

#[test]
fn a_section_is_deleted_automatically_at_its_expiration_time_while_the_checkpoint_is_closed() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let expires = now() + 200 * MS;
    ck.create_section(Some(b"brief"), expires, b"x").unwrap();
    ck.create_section(Some(b"stays"), TIME_END, b"y").unwrap();
    ck.close().unwrap();
    while now() <= expires {
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = open(&lib, NAME, RW);
    assert_eq!(again.read_vec(b"brief", 0).err(), Some(Error::NotExist));
    assert_eq!(again.status().unwrap().number_of_sections, 1);
    assert_eq!(again.read_vec(b"stays", 0).unwrap(), b"y");
}

#[test]
fn an_expired_section_frees_its_place_for_a_new_one() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(2));
    ck.create_section(Some(b"brief"), now() + 1000 * MS, b"")
        .unwrap();
    ck.create_section(Some(b"stays"), TIME_END, b"").unwrap();
    assert_eq!(
        ck.create_section(Some(b"new"), TIME_END, b"").err(),
        Some(Error::NoSpace)
    );
    eventually("room after the expiration", || {
        ck.create_section(Some(b"new"), TIME_END, b"").is_ok()
    });
    assert_eq!(
        ids(ck.sections(SectionsChosen::Any).unwrap()),
        [&b"new"[..], b"stays"]
    );
}

#[test]
fn last_update_is_the_absolute_time_of_the_last_update() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let before = now();
    ck.create_section(Some(b"s"), TIME_END, b"x").unwrap();
    let after = now();
    let created = all(&ck, SectionsChosen::Any)[0].last_update;
    assert!(
        before <= created && created <= after,
        "{before} {created} {after}"
    );
    std::thread::sleep(Duration::from_millis(5));
    let before = now();
    ck.overwrite(b"s", b"yy").unwrap();
    let after = now();
    let s = &all(&ck, SectionsChosen::Any)[0];
    assert!(before <= s.last_update && s.last_update <= after);
    assert!(s.last_update > created);
    assert_eq!(s.size, 2);
}

// ---- §2.3 saCkptSectionIterationInitialize / Next / Finalize --------------------------------

#[test]
fn iteration_returns_each_section_with_its_descriptor() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    let t = now() + HOUR;
    ck.create_section(Some(b"a"), t, b"12345").unwrap();
    ck.create_section(Some(b"b"), TIME_END, b"").unwrap();
    let mut s = all(&ck, SectionsChosen::Any);
    s.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(s.len(), 2);
    assert_eq!(
        (&s[0].id[..], s[0].expiration_time, s[0].size, s[0].state),
        (&b"a"[..], t, 5, SectionState::Valid)
    );
    assert_eq!(
        (&s[1].id[..], s[1].expiration_time, s[1].size, s[1].state),
        (&b"b"[..], TIME_END, 0, SectionState::Valid)
    );
}

#[test]
fn iteration_chooses_sections_by_expiration() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(8));
    let t1 = now() + HOUR;
    let t2 = t1 + HOUR;
    ck.create_section(Some(b"t1"), t1, b"").unwrap();
    ck.create_section(Some(b"t2"), t2, b"").unwrap();
    ck.create_section(Some(b"end"), TIME_END, b"").unwrap();
    let chosen = |c| ids(ck.sections(c).unwrap());
    assert_eq!(chosen(SectionsChosen::Forever), [b"end"]);
    assert_eq!(chosen(SectionsChosen::LeqExpirationTime(t1)), [b"t1"]);
    assert_eq!(
        chosen(SectionsChosen::LeqExpirationTime(t2)),
        [&b"t1"[..], b"t2"]
    );
    assert_eq!(
        chosen(SectionsChosen::GeqExpirationTime(t2)),
        [&b"end"[..], b"t2"]
    );
    assert_eq!(
        chosen(SectionsChosen::GeqExpirationTime(t1 + 1)),
        [&b"end"[..], b"t2"]
    );
    assert_eq!(chosen(SectionsChosen::Any).len(), 3);
    // Copy-on-write commits never leave a section corrupted.
    assert!(chosen(SectionsChosen::Corrupted).is_empty());
}

#[test]
fn the_iteration_expiration_time_is_used_only_for_leq_and_geq() {
    // The C values with a time that would be invalid for LEQ/GEQ.
    assert_eq!(SectionsChosen::from_c(1, -1), Ok(SectionsChosen::Forever));
    assert_eq!(SectionsChosen::from_c(4, -1), Ok(SectionsChosen::Corrupted));
    assert_eq!(SectionsChosen::from_c(5, -1), Ok(SectionsChosen::Any));
    assert_eq!(
        SectionsChosen::from_c(2, 7),
        Ok(SectionsChosen::LeqExpirationTime(7))
    );
    assert_eq!(
        SectionsChosen::from_c(3, 7),
        Ok(SectionsChosen::GeqExpirationTime(7))
    );
}

#[test]
fn iteration_initialize_with_a_bad_sections_chosen_value_is_invalid_param() {
    for bad in [0, 6, 100, u32::MAX] {
        assert!(
            matches!(SectionsChosen::from_c(bad, 0), Err(Error::InvalidParam(_))),
            "{bad}"
        );
    }
}

#[test]
fn iteration_initialize_with_a_negative_time_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    assert!(matches!(
        ck.sections(SectionsChosen::LeqExpirationTime(-1)),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        ck.sections(SectionsChosen::GeqExpirationTime(i64::MIN)),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn b02_iteration_initialize_without_read_is_access_but_b01_is_allowed() {
    let d = Domain::new();
    let b02 = d.lib(B02);
    let b01 = d.lib(B01);
    let c = create(&b02, NAME, &attrs(4));
    c.create_section(Some(b"s"), TIME_END, b"").unwrap();
    assert_eq!(
        open(&b02, NAME, OpenFlags::WRITE)
            .sections(SectionsChosen::Any)
            .err(),
        Some(Error::Access)
    );
    let w01 = open(&b01, NAME, OpenFlags::WRITE);
    assert_eq!(ids(w01.sections(SectionsChosen::Any).unwrap()), [b"s"]);
}

#[test]
fn iteration_next_is_no_sections_at_the_end() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"s"), TIME_END, b"").unwrap();
    let mut it = ck.sections(SectionsChosen::Any).unwrap();
    assert_eq!(it.next_section().unwrap().id, b"s");
    assert_eq!(it.next_section(), Err(Error::NoSections));
    assert_eq!(it.next_section(), Err(Error::NoSections));
    let other = create(&lib, OTHER, &attrs(4));
    let mut empty = other.sections(SectionsChosen::Any).unwrap();
    assert_eq!(empty.next_section(), Err(Error::NoSections));
    assert_eq!(empty.next(), None);
}

#[test]
fn iteration_returns_every_section_present_throughout_exactly_once() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(200));
    let before: Vec<Vec<u8>> = (0..60).map(|i| format!("s{i:03}").into_bytes()).collect();
    for id in &before {
        ck.create_section(Some(id), TIME_END, b"").unwrap();
    }
    let doomed = b"s059".to_vec();
    let mut it = ck.sections(SectionsChosen::Any).unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    for _ in 0..5 {
        got.push(it.next_section().unwrap().id);
    }
    // Changes during the iteration: new sections, rewritten ones, one deleted.
    for i in 0..40 {
        ck.create_section(Some(format!("n{i:03}").as_bytes()), TIME_END, b"")
            .unwrap();
    }
    for id in &before[..30] {
        ck.overwrite(id, &[1; 100]).unwrap();
    }
    if !got.contains(&doomed) {
        ck.delete_section(&doomed).unwrap();
    }
    got.extend(it.map(|s| s.unwrap().id));
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "a section returned twice");
    for id in &before {
        if *id != doomed {
            assert!(
                got.contains(id),
                "{:?} missing",
                String::from_utf8_lossy(id)
            );
        }
    }
}

#[test]
fn an_iteration_of_a_closed_checkpoint_is_bad_handle() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"a"), TIME_END, b"").unwrap();
    ck.create_section(Some(b"b"), TIME_END, b"").unwrap();
    let mut it = ck.sections(SectionsChosen::Any).unwrap();
    assert!(it.next_section().is_ok());
    ck.close().unwrap();
    assert_eq!(it.next_section(), Err(Error::BadHandle));
    assert_eq!(it.next(), Some(Err(Error::BadHandle)));
    assert_eq!(it.next(), None);
}

#[test]
fn iteration_finalize_frees_the_iteration() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(4));
    ck.create_section(Some(b"a"), TIME_END, b"").unwrap();
    ck.create_section(Some(b"b"), TIME_END, b"").unwrap();
    // Abandoned iterations (dropped mid-way) hold nothing: many in a row all work.
    for _ in 0..10_000 {
        let mut it = ck.sections(SectionsChosen::Any).unwrap();
        assert!(it.next_section().is_ok());
        drop(it);
    }
    assert_eq!(ids(ck.sections(SectionsChosen::Any).unwrap()), [b"a", b"b"]);
    ck.overwrite(b"a", b"writable").unwrap();
}
