//! Conformance: data access (spec §2.4) with §4.5 (writes beyond the section size), §4.6
//! (reads past the end), §4.7 (checkpointSize and memoryUsed), §4.9 (atomicity and order)
//! and §4.10 (timeouts). One test per rule, named as the rule; agent/tests/README.md maps
//! every rule of the spec to its tests.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ckpt_agent::{
    Callbacks, Checkpoint, CreationAttributes, CreationFlags, Error, Library, OpenFlags,
    ReadElement, SectionState, SectionsChosen, TIME_END, VectorError, Version, WriteElement,
};
use common::*;

const B02: Version = Version::B_02_02;

fn el<'a>(id: &'a [u8], offset: u64, data: &'a [u8]) -> WriteElement<'a> {
    WriteElement {
        section_id: id,
        offset,
        data,
    }
}

/// A checkpoint with sections `a` = "aaaa" and `b` = "bbbb" (1 KiB each at most).
fn two_sections(lib: &Library, a: &CreationAttributes) -> Checkpoint {
    let ck = create(lib, NAME, a);
    ck.create_section(Some(b"a"), TIME_END, b"aaaa").unwrap();
    ck.create_section(Some(b"b"), TIME_END, b"bbbb").unwrap();
    ck
}

fn read(ck: &Checkpoint, id: &[u8]) -> Vec<u8> {
    ck.read_vec(id, 0).unwrap()
}

const UPDATE_OPTIONS: [CreationFlags; 3] = [
    CreationFlags::WR_ALL_REPLICAS,
    CreationFlags::WR_ACTIVE_REPLICA,
    CreationFlags::WR_ACTIVE_REPLICA_WEAK,
];

// ---- §2.4 saCkptCheckpointWrite, §4.5 --------------------------------------------------------

#[test]
fn write_applies_the_elements_in_order() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.write(&[
        el(b"a", 0, b"1111"),
        el(b"b", 1, b"XY"),
        el(b"a", 2, b"22"),
        el(b"a", 3, b"3"),
    ])
    .unwrap();
    assert_eq!(read(&ck, b"a"), b"1123");
    assert_eq!(read(&ck, b"b"), b"bXYb");
}

#[test]
fn write_grows_a_section_as_needed() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.write(&[el(b"a", 2, b"123456")]).unwrap();
    assert_eq!(read(&ck, b"a"), b"aa123456");
    let s = ck.sections(SectionsChosen::Any).unwrap();
    let sizes: Vec<u64> = s.map(|s| s.unwrap().size).collect();
    assert!(sizes.contains(&8));
    // Up to maxSectionSize exactly.
    ck.write(&[el(b"b", 1023, b"z")]).unwrap();
    assert_eq!(read(&ck, b"b").len(), 1024);
}

#[test]
fn a_write_past_the_end_leaves_a_hole_of_zeros() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.write(&[el(b"a", 10, b"end")]).unwrap();
    assert_eq!(read(&ck, b"a"), b"aaaa\0\0\0\0\0\0end");
    // Also after a shrink: the old bytes do not reappear.
    ck.overwrite(b"b", b"b").unwrap();
    ck.write(&[el(b"b", 3, b"!")]).unwrap();
    assert_eq!(read(&ck, b"b"), b"b\0\0!");
}

#[test]
fn write_is_all_or_nothing_and_names_the_first_failing_element() {
    let d = Domain::new();
    let lib = d.lib(B02);
    for (i, wr) in UPDATE_OPTIONS.into_iter().enumerate() {
        let name = format!("safCkpt=w{i}");
        let ck = create(&lib, &name, &attrs_flags(4, wr));
        ck.create_section(Some(b"a"), TIME_END, b"aaaa").unwrap();
        ck.create_section(Some(b"b"), TIME_END, b"bbbb").unwrap();
        let big = [0u8; 1025];
        let cases: [(&[WriteElement<'_>], VectorError); 3] = [
            (
                &[el(b"a", 0, b"XX"), el(b"b", 0, b"YY"), el(b"nope", 0, b"Z")],
                VectorError {
                    index: 2,
                    error: Error::NotExist,
                },
            ),
            (
                &[el(b"a", 0, b"XX"), el(b"b", 0, &big), el(b"nope", 0, b"")],
                VectorError {
                    index: 1,
                    error: Error::InvalidParam("data larger than maxSectionSize"),
                },
            ),
            (
                &[
                    el(b"a", 0, b"XX"),
                    el(b"b", 0, b"YY"),
                    el(b"a", 1020, b"12345"),
                ],
                VectorError {
                    index: 2,
                    error: Error::NoResources,
                },
            ),
        ];
        for (elements, want) in cases {
            let got = ck.write(elements).unwrap_err();
            assert_eq!(got.index, want.index, "{wr:?} {elements:?}");
            assert_eq!(got.error.code(), want.error.code(), "{wr:?} {elements:?}");
            assert_eq!(read(&ck, b"a"), b"aaaa", "an earlier element was applied");
            assert_eq!(read(&ck, b"b"), b"bbbb", "an earlier element was applied");
        }
        // Nothing is left corrupted, whatever the update option.
        assert!(
            ck.sections(SectionsChosen::Any)
                .unwrap()
                .all(|s| s.unwrap().state == SectionState::Valid)
        );
        assert_eq!(ck.sections(SectionsChosen::Corrupted).unwrap().count(), 0);
    }
}

#[test]
fn write_with_data_larger_than_max_section_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let e = ck.write(&[el(b"a", 0, &[1; 1025])]).unwrap_err();
    assert_eq!(e.index, 0);
    assert!(matches!(e.error, Error::InvalidParam(_)), "{e}");
    assert_eq!(read(&ck, b"a"), b"aaaa");
}

#[test]
fn write_with_offset_plus_size_beyond_max_section_size_is_no_resources() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    for (offset, len) in [(1, 1024), (1024, 1), (1000, 25), (u64::MAX, 1)] {
        let data = vec![1u8; len];
        let e = ck.write(&[el(b"a", offset, &data)]).unwrap_err();
        assert_eq!(
            e,
            VectorError {
                index: 0,
                error: Error::NoResources
            },
            "{offset}+{len}"
        );
    }
    assert_eq!(read(&ck, b"a"), b"aaaa");
}

#[test]
fn write_needs_write_else_access() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let r = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(
        r.write(&[el(b"a", 0, b"x")]).unwrap_err().error,
        Error::Access
    );
    assert_eq!(read(&ck, b"a"), b"aaaa");
}

#[test]
fn write_to_a_missing_section_is_not_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    assert_eq!(
        ck.write(&[el(b"c", 0, b"x")]).unwrap_err(),
        VectorError {
            index: 0,
            error: Error::NotExist
        }
    );
}

#[test]
fn write_of_no_elements_changes_nothing() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    assert_eq!(ck.write(&[]), Ok(()));
    assert_eq!(read(&ck, b"a"), b"aaaa");
}

#[test]
fn a_completed_write_is_seen_at_once_by_every_other_handle_and_process() {
    if let Some(dir) = child_domain() {
        let lib = Library::initialize_with(config_at(&dir), B02, Callbacks::default()).unwrap();
        let ck = lib.open(NAME, None, OpenFlags::READ, TIME_END).unwrap();
        assert_eq!(ck.read_vec(b"a", 0).unwrap(), b"written by the parent");
        return;
    }
    let d = Domain::new();
    let lib = d.lib(B02);
    let other_lib = d.lib(B02);
    for wr in UPDATE_OPTIONS {
        let ck = create(&lib, NAME, &attrs_flags(4, wr));
        let reader = open(&other_lib, NAME, OpenFlags::READ);
        ck.create_section(Some(b"a"), TIME_END, b"").unwrap();
        ck.write(&[el(b"a", 0, b"written by the parent")]).unwrap();
        assert_eq!(read(&reader, b"a"), b"written by the parent");
        let status = run_child(
            "a_completed_write_is_seen_at_once_by_every_other_handle_and_process",
            d.path(),
        );
        assert!(status.success(), "{wr:?}: the child read something else");
        drop(reader);
        drop(ck);
        lib.unlink(NAME).unwrap();
    }
}

#[test]
fn updates_from_one_writer_are_seen_in_order() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.overwrite(b"a", &0u64.to_le_bytes()).unwrap();
    ck.overwrite(b"b", &0u64.to_le_bytes()).unwrap();
    let reader_lib = d.lib(B02);
    let reader = open(&reader_lib, NAME, OpenFlags::READ);
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let check = std::thread::spawn(move || {
        let value = |id: &[u8]| {
            let mut b = [0u8; 8];
            assert_eq!(reader.read_into(id, 0, &mut b), Ok(8));
            u64::from_le_bytes(b)
        };
        let (mut last_a, mut reads) = (0, 0u64);
        while !stop.load(Ordering::Acquire) || reads < 100 {
            // b is written after a: whatever b shows, a shows at least as much.
            let b = value(b"b");
            let a = value(b"a");
            assert!(a >= b, "saw b = {b} before a = {a}");
            assert!(a >= last_a, "a went back from {last_a} to {a}");
            last_a = a;
            reads += 1;
        }
    });
    for i in 1..=3000u64 {
        ck.overwrite(b"a", &i.to_le_bytes()).unwrap();
        ck.write(&[el(b"b", 0, &i.to_le_bytes())]).unwrap();
    }
    done.store(true, Ordering::Release);
    check.join().unwrap();
}

#[test]
fn calls_from_many_threads_on_one_handle_are_safe() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = Arc::new(create(&lib, NAME, &attrs(8)));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let ck = Arc::clone(&ck);
            std::thread::spawn(move || {
                let id = [b't', t];
                ck.create_section(Some(&id), TIME_END, b"").unwrap();
                for i in 0..500u32 {
                    ck.write(&[el(&id, u64::from(i % 4) * 4, &i.to_le_bytes())])
                        .unwrap();
                    let mut b = [0u8; 4];
                    ck.read_into(&id, u64::from(i % 4) * 4, &mut b).unwrap();
                    assert_eq!(u32::from_le_bytes(b), i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..4u8 {
        let want: Vec<u8> = (496..500u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(read(&ck, &[b't', t]), want);
    }
}

// ---- §2.4 saCkptSectionOverwrite ---------------------------------------------------------

#[test]
fn overwrite_replaces_the_data_and_the_size_becomes_data_size() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.overwrite(b"a", b"xy").unwrap();
    assert_eq!(read(&ck, b"a"), b"xy");
    ck.overwrite(b"a", b"longer data").unwrap();
    assert_eq!(read(&ck, b"a"), b"longer data");
    ck.overwrite(b"a", b"").unwrap();
    assert_eq!(read(&ck, b"a"), b"");
    assert_eq!(ck.status().unwrap().memory_used, 4);
}

#[test]
fn overwrite_with_data_larger_than_max_section_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    assert!(matches!(
        ck.overwrite(b"a", &[0; 1025]),
        Err(Error::InvalidParam(_))
    ));
    ck.overwrite(b"a", &[0; 1024]).unwrap();
}

#[test]
fn overwrite_needs_write_else_access() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let r = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(r.overwrite(b"a", b"x"), Err(Error::Access));
    assert_eq!(read(&ck, b"a"), b"aaaa");
}

#[test]
fn overwrite_of_a_missing_section_is_not_exist() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    assert_eq!(ck.overwrite(b"c", b"x"), Err(Error::NotExist));
}

// ---- §4.7 checkpointSize and memoryUsed ------------------------------------------------------

#[test]
fn checkpoint_size_is_enforced_with_no_resources() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = CreationAttributes {
        checkpoint_size: 16,
        ..attrs(4)
    };
    let ck = two_sections(&lib, &a); // 8 bytes used
    // Element 2 takes it from 13 to 17 bytes.
    // A write that grows past it, naming the element that crosses.
    let e = ck
        .write(&[
            el(b"a", 0, b"AAAA"),
            el(b"a", 4, b"12345"),
            el(b"b", 4, b"1234"),
        ])
        .unwrap_err();
    assert_eq!(
        e,
        VectorError {
            index: 2,
            error: Error::NoResources
        }
    );
    assert_eq!(read(&ck, b"a"), b"aaaa");
    // An overwrite that grows past it.
    assert_eq!(ck.overwrite(b"a", &[1; 13]), Err(Error::NoResources));
    // A create past it.
    assert_eq!(
        ck.create_section(Some(b"c"), TIME_END, &[1; 13]).err(),
        Some(Error::NoResources)
    );
    // Exactly up to it is fine; rewriting in place or shrinking is always fine.
    ck.overwrite(b"a", &[1; 12]).unwrap();
    assert_eq!(ck.status().unwrap().memory_used, 16);
    ck.write(&[el(b"a", 0, b"in place")]).unwrap();
    ck.overwrite(b"a", b"").unwrap();
    ck.create_section(Some(b"c"), TIME_END, &[1; 12]).unwrap();
    assert_eq!(ck.status().unwrap().memory_used, 16);
}

#[test]
fn memory_used_is_the_sum_of_section_sizes() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(8));
    let mut want = 0u64;
    for (i, n) in [0usize, 1, 100, 1024, 7].into_iter().enumerate() {
        ck.create_section(Some(&[i as u8 + 1]), TIME_END, &vec![0; n])
            .unwrap();
        want += n as u64;
        assert_eq!(ck.status().unwrap().memory_used, want);
    }
    let listed: u64 = ck
        .sections(SectionsChosen::Any)
        .unwrap()
        .map(|s| s.unwrap().size)
        .sum();
    assert_eq!(listed, want);
}

// ---- §2.4 saCkptCheckpointRead, §4.6 ------------------------------------------------------

#[test]
fn read_needs_read_else_access() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let _ck = two_sections(&lib, &attrs(4));
    let w = open(&lib, NAME, OpenFlags::WRITE);
    let mut buf = [0u8; 4];
    assert_eq!(w.read_into(b"a", 0, &mut buf), Err(Error::Access));
    assert_eq!(w.read_vec(b"a", 0).err(), Some(Error::Access));
    assert_eq!(w.borrow(b"a").err(), Some(Error::Access));
    let mut r = [ReadElement {
        section_id: b"a",
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    assert_eq!(w.read(&mut r).unwrap_err().error, Error::Access);
}

#[test]
fn read_size_is_the_smaller_of_data_size_and_what_the_section_holds_past_the_offset() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.overwrite(b"a", b"0123456789").unwrap();
    let mut small = [0u8; 3];
    let mut large = [0xeeu8; 100];
    let mut elems = [
        ReadElement {
            section_id: b"a",
            offset: 2,
            buf: &mut small,
            read_size: 99,
        },
        ReadElement {
            section_id: b"a",
            offset: 6,
            buf: &mut large,
            read_size: 99,
        },
    ];
    ck.read(&mut elems).unwrap();
    assert_eq!((elems[0].read_size, elems[1].read_size), (3, 4));
    assert_eq!(&small, b"234");
    // Copied to the start of the buffer (not shifted by the section offset); the rest
    // of the buffer is untouched.
    assert_eq!(&large[..4], b"6789");
    assert!(large[4..].iter().all(|&b| b == 0xee));
}

#[test]
fn read_from_an_offset_equal_to_the_size_reads_nothing() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let mut buf = [0u8; 4];
    assert_eq!(ck.read_into(b"a", 4, &mut buf), Ok(0));
    assert_eq!(ck.read_vec(b"a", 4).unwrap(), b"");
}

#[test]
fn read_from_an_offset_past_the_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let mut buf = [0u8; 4];
    assert!(matches!(
        ck.read_into(b"a", 5, &mut buf),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(ck.read_vec(b"a", 5), Err(Error::InvalidParam(_))));
}

#[test]
fn read_with_data_size_larger_than_max_section_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let mut buf = vec![0u8; 1025];
    assert!(matches!(
        ck.read_into(b"a", 0, &mut buf),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn read_with_offset_plus_data_size_beyond_max_section_size_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let mut buf = vec![0u8; 100];
    assert!(matches!(
        ck.read_into(b"a", 1000, &mut buf),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        ck.read_into(b"a", u64::MAX, &mut buf[..1]),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn read_into_a_caller_buffer_of_size_zero_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    assert!(matches!(
        ck.read_into(b"a", 0, &mut []),
        Err(Error::InvalidParam(_))
    ));
}

#[test]
fn read_with_a_library_allocated_buffer_returns_exactly_read_size_bytes() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.overwrite(b"a", b"0123456789").unwrap();
    assert_eq!(ck.read_vec(b"a", 0).unwrap(), b"0123456789");
    assert_eq!(ck.read_vec(b"a", 7).unwrap(), b"789");
    let none = ck.read_vec(b"a", 10).unwrap();
    assert!(none.is_empty());
    assert_eq!(&*ck.borrow(b"a").unwrap(), b"0123456789");
}

#[test]
fn read_of_a_missing_section_is_not_exist_and_names_the_element() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let (mut b0, mut b1, mut b2) = ([0u8; 4], [0u8; 4], [0u8; 4]);
    let mut elems = [
        ReadElement {
            section_id: b"a",
            offset: 0,
            buf: &mut b0,
            read_size: 0,
        },
        ReadElement {
            section_id: b"b",
            offset: 0,
            buf: &mut b1,
            read_size: 0,
        },
        ReadElement {
            section_id: b"c",
            offset: 0,
            buf: &mut b2,
            read_size: 0,
        },
    ];
    assert_eq!(
        ck.read(&mut elems).unwrap_err(),
        VectorError {
            index: 2,
            error: Error::NotExist
        }
    );
    let mut buf = [0u8; 1];
    assert_eq!(ck.read_into(b"c", 0, &mut buf), Err(Error::NotExist));
    assert_eq!(ck.read_vec(b"c", 0).err(), Some(Error::NotExist));
}

#[test]
fn read_names_the_first_failing_element() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    let (mut b0, mut b1, mut b2) = ([0u8; 4], [0u8; 4], vec![0u8; 2000]);
    let mut elems = [
        ReadElement {
            section_id: b"a",
            offset: 0,
            buf: &mut b0,
            read_size: 0,
        },
        ReadElement {
            section_id: b"b",
            offset: 9,
            buf: &mut b1,
            read_size: 0,
        },
        ReadElement {
            section_id: b"a",
            offset: 0,
            buf: &mut b2,
            read_size: 0,
        },
    ];
    let e = ck.read(&mut elems).unwrap_err();
    assert_eq!(e.index, 1);
    assert!(matches!(e.error, Error::InvalidParam(_)), "{e}");
}

// ---- §2.4 saCkptCheckpointSynchronize(Async), §4.10 ---------------------------------------

#[test]
fn synchronize_returns_once_previous_updates_reach_every_replica() {
    let d = Domain::new();
    let lib = d.lib(B02);
    for (i, wr) in [
        CreationFlags::WR_ACTIVE_REPLICA,
        CreationFlags::WR_ACTIVE_REPLICA_WEAK,
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("safCkpt=s{i}");
        let ck = create(&lib, &name, &attrs_flags(1, wr));
        let other_lib = d.lib(B02);
        let reader = open(&other_lib, &name, OpenFlags::READ);
        ck.overwrite(b"", b"synced").unwrap();
        assert_eq!(ck.synchronize(TIME_END), Ok(()));
        assert_eq!(ck.synchronize(0), Ok(()));
        assert_eq!(read(&reader, b""), b"synced");
    }
}

#[test]
fn synchronize_on_an_all_replicas_checkpoint_is_bad_operation() {
    let d = Domain::new();
    let (cb, got) = sync_recorder();
    let lib = d.lib_with(B02, cb);
    for (i, bits) in [0x1, 0x1 | 0x8].into_iter().enumerate() {
        let name = format!("safCkpt=all{i}");
        let ck = create(&lib, &name, &attrs_flags(1, CreationFlags(bits)));
        assert_eq!(ck.synchronize(TIME_END), Err(Error::BadOperation));
        assert_eq!(ck.synchronize_async(1), Err(Error::BadOperation));
        // Checked before the access.
        let r = open(&lib, &name, OpenFlags::READ);
        assert_eq!(r.synchronize(TIME_END), Err(Error::BadOperation));
    }
    lib.dispatch(ckpt_agent::DispatchFlags::All).unwrap();
    assert!(got.lock().unwrap().is_empty());
}

fn sync_recorder() -> (Callbacks, Arc<std::sync::Mutex<Vec<u64>>>) {
    let got: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let g = Arc::clone(&got);
    (
        Callbacks {
            open: None,
            synchronize: Some(Box::new(move |inv, r| {
                assert_eq!(r, Ok(()));
                g.lock().unwrap().push(inv);
            })),
        },
        got,
    )
}

#[test]
fn synchronize_needs_write_else_access() {
    let d = Domain::new();
    let (cb, got) = sync_recorder();
    let lib = d.lib_with(B02, cb);
    let _ck = create(&lib, NAME, &attrs(1));
    let r = open(&lib, NAME, OpenFlags::READ);
    assert_eq!(r.synchronize(TIME_END), Err(Error::Access));
    assert_eq!(r.synchronize_async(5), Err(Error::Access));
    lib.dispatch(ckpt_agent::DispatchFlags::All).unwrap();
    assert!(got.lock().unwrap().is_empty());
}

#[test]
fn synchronize_with_a_negative_timeout_is_invalid_param() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = create(&lib, NAME, &attrs(1));
    assert!(matches!(ck.synchronize(-1), Err(Error::InvalidParam(_))));
    // An argument error comes before the handle check.
    ck.close().unwrap();
    assert!(matches!(ck.synchronize(-1), Err(Error::InvalidParam(_))));
}

#[test]
fn synchronize_async_delivers_its_outcome_through_dispatch() {
    let d = Domain::new();
    let (cb, got) = sync_recorder();
    let lib = d.lib_with(B02, cb);
    let ck = create(&lib, NAME, &attrs(1));
    ck.overwrite(b"", b"x").unwrap();
    ck.synchronize_async(11).unwrap();
    ck.synchronize_async(12).unwrap();
    assert!(got.lock().unwrap().is_empty(), "ran before dispatch");
    lib.dispatch(ckpt_agent::DispatchFlags::All).unwrap();
    assert_eq!(*got.lock().unwrap(), [11, 12]);
}

#[test]
fn a_zero_length_write_element_is_accepted_like_any_write_ending_at_its_offset() {
    // openais refuses dataSize 0 with INVALID_PARAM; the spec file records that without
    // adopting it. Here it is a write of nothing: the section grows to the element's end
    // (its offset) if shorter, holes are zeros, and a missing section is still NOT_EXIST.
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = two_sections(&lib, &attrs(4));
    ck.write(&[el(b"a", 2, b"")]).unwrap();
    assert_eq!(read(&ck, b"a"), b"aaaa");
    ck.write(&[el(b"a", 6, b"")]).unwrap();
    assert_eq!(read(&ck, b"a"), b"aaaa\0\0");
    assert_eq!(
        ck.write(&[el(b"c", 0, b"")]).unwrap_err(),
        VectorError {
            index: 0,
            error: Error::NotExist
        }
    );
}

#[test]
fn checkpoint_calls_check_the_handle_then_access_then_the_active_replica_then_the_arguments() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let a = attrs_flags(
        4,
        CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
    );
    let rw = create(&lib, NAME, &a);
    let ro = open(&lib, NAME, OpenFlags::READ);
    let closed = open(&lib, NAME, RW);
    closed.close().unwrap();
    let too_big = [0u8; 1025];
    let bad_write = [el(b"", 0, &too_big)];
    let mut big_buf = vec![0u8; 1025];
    // A closed handle: BAD_HANDLE whatever else is wrong.
    assert_eq!(
        closed.write(&bad_write).unwrap_err().error,
        Error::BadHandle
    );
    assert_eq!(closed.overwrite(b"", &too_big), Err(Error::BadHandle));
    assert_eq!(
        closed.read_into(b"", 0, &mut big_buf),
        Err(Error::BadHandle)
    );
    assert_eq!(
        closed.create_section(Some(b""), -1, &too_big).err(),
        Some(Error::BadHandle)
    );
    // Without the access: ACCESS before the missing active replica and the arguments.
    assert_eq!(ro.write(&bad_write).unwrap_err().error, Error::Access);
    assert_eq!(ro.overwrite(b"", &too_big), Err(Error::Access));
    assert_eq!(
        ro.create_section(Some(b""), -1, &too_big).err(),
        Some(Error::Access)
    );
    assert_eq!(ro.delete_section(b""), Err(Error::Access));
    // No active replica: NOT_EXIST before the arguments.
    assert_eq!(rw.write(&bad_write).unwrap_err().error, Error::NotExist);
    assert_eq!(rw.overwrite(b"", &too_big), Err(Error::NotExist));
    assert_eq!(rw.read_into(b"", 0, &mut big_buf), Err(Error::NotExist));
    assert_eq!(
        rw.create_section(Some(b""), -1, &too_big).err(),
        Some(Error::NotExist)
    );
    // Then the arguments.
    rw.set_active_replica().unwrap();
    assert!(matches!(
        rw.write(&bad_write).unwrap_err().error,
        Error::InvalidParam(_)
    ));
    assert!(matches!(
        rw.overwrite(b"", &too_big),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        rw.read_into(b"", 0, &mut big_buf),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        rw.create_section(Some(b""), -1, &too_big),
        Err(Error::InvalidParam(_))
    ));
}
