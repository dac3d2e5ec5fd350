//! The wire codec: round trips, pinned bytes, and hostile input (transport/DESIGN.md §2).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ckpt_transport::wire::{
    ArrivalItem, Attrs, CkptAssign, DEFAULT_MAX_FRAME, Dec, DiffOp, DiffOpRef, DiffRef, DiffWriter,
    DirOp, DirReply, Enc, Frame, FrameReader, MAX_DESCRIPTORS, ReadElem, RemoteOp, RemoteResult,
    ReqId, SectionEntry, TableVersion, WireError, WriteElem, split_frame,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

mod support;
use support::one_of_each_kind;

/// Counts the bytes the current thread allocates, so tests can bound what decoding reserves.
struct CountingAlloc;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: allocations during thread teardown are not counted.
    let _ = ALLOCATED.try_with(|n| n.set(n.get().saturating_add(bytes)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; counting touches only a thread-local `Cell` that does not
// allocate (const-initialised, no destructor).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout` (every allocation goes through it).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the bytes it allocated on this thread.
fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

/// The most a decoded frame may take on the heap per byte of frame.
///
/// Each `Vec` reserves its whole count up front, and nested `Vec`s reserve against the same
/// remaining bytes, so the bound is the sum along the deepest nesting: a `Diff` whose ops
/// (5 bytes each at least, `size_of::<DiffOp>()` in memory) start with a `Retain` whose ids
/// (4 bytes each at least, 24 in memory) hold bytes.
fn heap_per_wire_byte() -> usize {
    let per_op = size_of::<DiffOp>().div_ceil(5);
    let per_id = size_of::<Vec<u8>>().div_ceil(4);
    let per_section = size_of::<SectionEntry>().div_ceil(4 + 8 + 8 + 8 + 1);
    let per_write = size_of::<WriteElem>().div_ceil(4 + 8 + 4);
    let per_read = size_of::<ReadElem>().div_ceil(4 + 8 + 8);
    let per_position = size_of::<(u64, u64, u64)>().div_ceil(8 + 8 + 8);
    let deepest = per_op + per_id + 1;
    [
        deepest,
        per_section + 1,
        per_write + 1,
        per_read + 1,
        per_position + 1,
    ]
    .into_iter()
    .max()
    .unwrap()
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out);
    out
}

/// The body (kind byte onwards) of a frame's encoding.
fn body(frame: &Frame) -> Vec<u8> {
    encode(frame)[4..].to_vec()
}

/// The body a [`DiffWriter`] builds for `frame` (a `Diff`), op by op.
fn write_diff(frame: &Frame) -> Vec<u8> {
    let Frame::Diff {
        instance,
        term,
        base,
        mark,
        ops,
    } = frame
    else {
        panic!("not a diff: {frame:?}");
    };
    let mut sut = DiffWriter::new(*instance, *term, *base, 0);
    for op in ops {
        sut.op(&op.as_ref());
    }
    assert_eq!(sut.ops(), ops.len());
    sut.finish(*mark)
}

/// [`DiffRef::decode`] and [`Frame::decode`] agree on `bytes`: the same diff, the same
/// error, or (another kind) no diff.
fn diff_ref_agrees(bytes: &[u8]) {
    let frame = Frame::decode(bytes);
    match DiffRef::decode(bytes) {
        Ok(Some(diff)) => assert_eq!(Ok(diff.to_frame()), frame),
        Ok(None) => assert!(
            bytes.first() != Some(&0x20),
            "a diff body was taken for another kind"
        ),
        Err(e) => assert_eq!(frame, Err(e)),
    }
}

// Strategies covering every variant of every type.

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..12)
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z/]{1,10}", "\\PC{0,6}"]
}

fn req_id() -> impl Strategy<Value = ReqId> {
    (any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(node, incarnation, counter)| ReqId {
        node,
        incarnation,
        counter,
    })
}

fn table_version() -> impl Strategy<Value = TableVersion> {
    (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(term, leader, n)| TableVersion {
        term,
        leader,
        n,
    })
}

fn attrs() -> impl Strategy<Value = Attrs> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<i64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                creation_flags,
                checkpoint_size,
                retention,
                max_sections,
                max_section_size,
                max_section_id_size,
            )| Attrs {
                creation_flags,
                checkpoint_size,
                retention,
                max_sections,
                max_section_size,
                max_section_id_size,
            },
        )
}

fn ckpt_assign() -> impl Strategy<Value = CkptAssign> {
    (
        any::<u64>(),
        string(),
        attrs(),
        vec(any::<u32>(), 0..5),
        option::of(any::<u32>()),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(instance, name, attrs, replicas, primary, term, unlinked, from_nothing)| CkptAssign {
                instance,
                name,
                attrs,
                replicas,
                primary,
                term,
                unlinked,
                from_nothing,
            },
        )
}

fn dir_op() -> impl Strategy<Value = DirOp> {
    prop_oneof![
        (string(), option::of(attrs()), any::<u32>(), any::<u32>()).prop_map(
            |(name, attrs, flags, node)| DirOp::Open {
                name,
                attrs,
                flags,
                node
            }
        ),
        (any::<u64>(), any::<u32>()).prop_map(|(instance, node)| DirOp::Close { instance, node }),
        string().prop_map(|name| DirOp::Unlink { name }),
        (any::<u64>(), any::<i64>()).prop_map(|(instance, retention)| DirOp::SetRetention {
            instance,
            retention
        }),
        (any::<u64>(), any::<u32>())
            .prop_map(|(instance, node)| DirOp::SetActive { instance, node }),
        (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(instance, node, term)| {
            DirOp::Evict {
                instance,
                node,
                term,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(instance, node, term)| {
            DirOp::Resign {
                instance,
                node,
                term,
            }
        }),
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(instance, node, count)| {
            DirOp::Opens {
                instance,
                node,
                count,
            }
        }),
    ]
}

fn dir_reply() -> impl Strategy<Value = DirReply> {
    prop_oneof![
        Just(DirReply::Done),
        ckpt_assign().prop_map(|ckpt| DirReply::Opened { ckpt }),
        any::<u32>().prop_map(|code| DirReply::Failed { code }),
        option::of(any::<u32>()).prop_map(|leader| DirReply::NotLeader { leader }),
    ]
}

fn diff_op() -> impl Strategy<Value = DiffOp> {
    prop_oneof![
        (bytes(), any::<i64>(), bytes()).prop_map(|(id, expiration, data)| DiffOp::Put {
            id,
            expiration,
            data
        }),
        (bytes(), any::<u64>(), bytes()).prop_map(|(id, offset, data)| DiffOp::Write {
            id,
            offset,
            data
        }),
        bytes().prop_map(|id| DiffOp::Delete { id }),
        (bytes(), any::<i64>()).prop_map(|(id, expiration)| DiffOp::Expire { id, expiration }),
        vec(bytes(), 0..4).prop_map(|ids| DiffOp::Retain { ids }),
    ]
}

fn remote_op() -> impl Strategy<Value = RemoteOp> {
    prop_oneof![
        vec(
            (bytes(), any::<u64>(), bytes()).prop_map(|(id, offset, data)| WriteElem {
                id,
                offset,
                data
            }),
            0..4
        )
        .prop_map(|elems| RemoteOp::Write { elems }),
        (bytes(), bytes()).prop_map(|(id, data)| RemoteOp::Overwrite { id, data }),
        vec(
            (bytes(), any::<u64>(), any::<u64>()).prop_map(|(id, offset, size)| ReadElem {
                id,
                offset,
                size
            }),
            0..4
        )
        .prop_map(|elems| RemoteOp::Read { elems }),
        (option::of(bytes()), any::<i64>(), bytes()).prop_map(|(id, expiration, data)| {
            RemoteOp::CreateSection {
                id,
                expiration,
                data,
            }
        }),
        bytes().prop_map(|id| RemoteOp::DeleteSection { id }),
        (bytes(), any::<i64>())
            .prop_map(|(id, expiration)| RemoteOp::SetExpiration { id, expiration }),
        (any::<i64>(), vec((any::<u64>(), any::<u64>()), 0..3))
            .prop_map(|(timeout_ns, after)| RemoteOp::Synchronize { timeout_ns, after }),
        (any::<u8>(), any::<i64>()).prop_map(|(filter, time)| RemoteOp::Sections { filter, time }),
        Just(RemoteOp::Status),
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(epoch, since, wait_ms)| {
            RemoteOp::Changes {
                epoch,
                since,
                wait_ms,
            }
        }),
    ]
}

fn section_entry() -> impl Strategy<Value = SectionEntry> {
    (
        bytes(),
        any::<i64>(),
        any::<u64>(),
        any::<i64>(),
        any::<u8>(),
    )
        .prop_map(|(id, expiration, size, last_update, state)| SectionEntry {
            id,
            expiration,
            size,
            last_update,
            state,
        })
}

fn arrival_item() -> impl Strategy<Value = ArrivalItem> {
    (
        any::<u64>(),
        any::<u64>(),
        bytes(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(seq, writer, id, offset, size)| ArrivalItem {
            seq,
            writer,
            id,
            offset,
            size,
        })
}

fn remote_result() -> impl Strategy<Value = RemoteResult> {
    prop_oneof![
        Just(RemoteResult::Done),
        (any::<u32>(), option::of(any::<u32>()))
            .prop_map(|(code, index)| RemoteResult::Failed { code, index }),
        vec(bytes(), 0..4).prop_map(|items| RemoteResult::Data { items }),
        bytes().prop_map(|id| RemoteResult::Created { id }),
        vec(section_entry(), 0..4).prop_map(|items| RemoteResult::Sections { items }),
        (any::<u32>(), any::<u64>()).prop_map(|(sections, memory_used)| RemoteResult::Status {
            sections,
            memory_used
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(term, seq)| RemoteResult::Applied { term, seq }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            vec(arrival_item(), 0..4)
        )
            .prop_map(|(epoch, upto, lapped, items)| RemoteResult::Changes {
                epoch,
                upto,
                lapped,
                items
            }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u16>(), any::<u32>(), any::<u64>()).prop_map(|(version, node, incarnation)| {
            Frame::Hello {
                version,
                node,
                incarnation,
            }
        }),
        (any::<u32>(), any::<u64>(), ".{0,24}", any::<bool>()).prop_map(
            |(node, incarnation, shm_dir, sealed)| Frame::Welcome {
                node,
                incarnation,
                shm_dir,
                sealed,
            }
        ),
        (vec(any::<u64>(), 0..=MAX_DESCRIPTORS), any::<bool>())
            .prop_map(|(instances, last)| Frame::Descriptors { instances, last }),
        Just(Frame::ListDescriptors),
        (req_id(), dir_op()).prop_map(|(req, op)| Frame::Request { req, op }),
        (req_id(), dir_reply()).prop_map(|(req, result)| Frame::Reply { req, result }),
        (any::<u64>(), any::<u32>(), bytes()).prop_map(|(term, leader, state)| Frame::DirState {
            term,
            leader,
            state
        }),
        (any::<u64>(), ckpt_assign()).prop_map(|(dir_term, ckpt)| Frame::Assign { dir_term, ckpt }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(dir_term, instance)| Frame::Unassign { dir_term, instance }),
        (
            any::<u64>(),
            any::<u32>(),
            vec(any::<u32>(), 0..5),
            any::<u64>()
        )
            .prop_map(|(dir_term, leader, members, sent)| Frame::Leader {
                dir_term,
                leader,
                members,
                sent,
            }),
        (any::<u64>(), table_version()).prop_map(|(term, version)| Frame::Vote { term, version }),
        (any::<u64>(), any::<bool>(), bytes()).prop_map(|(term, granted, state)| {
            Frame::VoteReply {
                term,
                granted,
                state,
            }
        }),
        (any::<u64>(), any::<u64>(), table_version()).prop_map(|(dir_term, sent, version)| {
            Frame::LeaderAck {
                dir_term,
                sent,
                version,
            }
        }),
        (
            any::<u32>(),
            vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..5)
        )
            .prop_map(|(node, items)| Frame::Positions { node, items }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            vec(diff_op(), 0..5)
        )
            .prop_map(|(instance, term, base, mark, ops)| Frame::Diff {
                instance,
                term,
                base,
                mark,
                ops
            }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(instance, term, seq)| Frame::Ack {
            instance,
            term,
            seq
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(instance, term)| Frame::Stale { instance, term }),
        (req_id(), any::<u64>(), remote_op()).prop_map(|(req, instance, op)| Frame::Remote {
            req,
            instance,
            op
        }),
        (req_id(), remote_result()).prop_map(|(req, result)| Frame::RemoteReply { req, result }),
    ]
}

#[test]
fn hello_encodes_to_pinned_bytes() {
    let sut = Frame::Hello {
        version: 1,
        node: 2,
        incarnation: 3,
    };
    #[rustfmt::skip]
    let expected = [
        15, 0, 0, 0,             // length: kind + 2 + 4 + 8
        0x01,                    // kind Hello
        1, 0,                    // version u16
        2, 0, 0, 0,              // node u32
        3, 0, 0, 0, 0, 0, 0, 0,  // incarnation u64
    ];
    assert_eq!(encode(&sut), expected);
    assert_eq!(Frame::decode(&expected[4..]), Ok(sut));
}

#[test]
fn ack_encodes_to_pinned_bytes() {
    let sut = Frame::Ack {
        instance: 0x0102,
        term: 7,
        seq: u64::MAX,
    };
    #[rustfmt::skip]
    let expected = [
        25, 0, 0, 0,
        0x21,
        0x02, 0x01, 0, 0, 0, 0, 0, 0,
        7, 0, 0, 0, 0, 0, 0, 0,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    assert_eq!(encode(&sut), expected);
}

#[test]
fn diff_encodes_to_pinned_bytes() {
    let sut = Frame::Diff {
        instance: 1,
        term: 2,
        base: 3,
        mark: 4,
        ops: vec![
            DiffOp::Put {
                id: b"ab".to_vec(),
                expiration: -1,
                data: vec![0xee],
            },
            DiffOp::Retain {
                ids: vec![b"ab".to_vec()],
            },
        ],
    };
    #[rustfmt::skip]
    let expected = [
        68, 0, 0, 0,
        0x20,
        1, 0, 0, 0, 0, 0, 0, 0,
        2, 0, 0, 0, 0, 0, 0, 0,
        3, 0, 0, 0, 0, 0, 0, 0,
        4, 0, 0, 0, 0, 0, 0, 0,
        2, 0, 0, 0,                                         // ops: 2
        1,                                                  //  Put
        2, 0, 0, 0, b'a', b'b',                             //   id
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,     //   expiration -1
        1, 0, 0, 0, 0xee,                                   //   data
        5,                                                  //  Retain
        1, 0, 0, 0,                                         //   ids: 1
        2, 0, 0, 0, b'a', b'b',
    ];
    assert_eq!(encode(&sut), expected);
    // Built op by op, the body is the same bytes, and it decodes in place to the same ops.
    let mut writer = DiffWriter::new(1, 2, 3, 0);
    assert!(writer.is_empty());
    writer.put(b"ab", -1, &[0xee]);
    writer.retain(&[b"ab"]);
    assert_eq!(writer.len(), expected.len() - 4);
    let written = writer.finish(4);
    assert_eq!(written, expected[4..]);
    assert_eq!(
        DiffRef::decode(&written),
        Ok(Some(DiffRef {
            instance: 1,
            term: 2,
            base: 3,
            mark: 4,
            ops: vec![
                DiffOpRef::Put {
                    id: b"ab",
                    expiration: -1,
                    data: &[0xee],
                },
                DiffOpRef::Retain { ids: vec![b"ab"] },
            ],
        }))
    );
}

#[test]
fn an_empty_diff_writer_makes_a_probe() {
    let sut = Frame::Diff {
        instance: 9,
        term: 8,
        base: 7,
        mark: 7,
        ops: Vec::new(),
    };
    let written = DiffWriter::new(9, 8, 7, 0).finish(7);
    assert_eq!(written.len(), DiffWriter::EMPTY_LEN);
    assert_eq!(written, body(&sut));
}

#[test]
fn diff_ref_leaves_other_kinds_to_frame_decode() {
    assert_eq!(DiffRef::decode(&[]), Ok(None));
    for frame in one_of_each_kind() {
        let bytes = body(&frame);
        match DiffRef::decode(&bytes) {
            Ok(Some(diff)) => assert_eq!(diff.to_frame(), frame),
            Ok(None) => assert!(!matches!(frame, Frame::Diff { .. })),
            Err(e) => panic!("{frame:?}: {e}"),
        }
    }
}

#[test]
fn remote_with_options_encodes_to_pinned_bytes() {
    let sut = Frame::Remote {
        req: ReqId {
            node: 1,
            incarnation: 2,
            counter: 3,
        },
        instance: 4,
        op: RemoteOp::CreateSection {
            id: Some(b"x".to_vec()),
            expiration: 0,
            data: vec![],
        },
    };
    #[rustfmt::skip]
    let expected = [
        48, 0, 0, 0,
        0x30,
        1, 0, 0, 0,                  // req.node
        2, 0, 0, 0, 0, 0, 0, 0,      // req.incarnation
        3, 0, 0, 0, 0, 0, 0, 0,      // req.counter
        4, 0, 0, 0, 0, 0, 0, 0,      // instance
        4,                           // CreateSection
        1, 1, 0, 0, 0, b'x',         //  id: Some(b"x")
        0, 0, 0, 0, 0, 0, 0, 0,      //  expiration
        0, 0, 0, 0,                  //  data: empty
    ];
    assert_eq!(encode(&sut), expected);
}

#[test]
fn evict_request_encodes_to_pinned_bytes() {
    let sut = Frame::Request {
        req: ReqId {
            node: 3,
            incarnation: 4,
            counter: 5,
        },
        op: DirOp::Evict {
            instance: 0x0102,
            node: 7,
            term: 1 << 32 | 2,
        },
    };
    #[rustfmt::skip]
    let expected = [
        42, 0, 0, 0,                 // length: kind + 20 + 1 + 8 + 4 + 8
        0x10,                        // kind Request
        3, 0, 0, 0,                  // req.node
        4, 0, 0, 0, 0, 0, 0, 0,      // req.incarnation
        5, 0, 0, 0, 0, 0, 0, 0,      // req.counter
        6,                           // Evict
        0x02, 0x01, 0, 0, 0, 0, 0, 0, //  instance
        7, 0, 0, 0,                  //  node
        2, 0, 0, 0, 1, 0, 0, 0,      //  term
    ];
    assert_eq!(encode(&sut), expected);
    assert_eq!(Frame::decode(&expected[4..]), Ok(sut));
}

#[test]
fn positions_encode_to_pinned_bytes() {
    let sut = Frame::Positions {
        node: 9,
        items: vec![(0x0102, 1 << 32 | 3, 40), (5, 6, u64::MAX)],
    };
    #[rustfmt::skip]
    let expected = [
        57, 0, 0, 0,                 // length: kind + 4 + 4 + 2 * 24
        0x16,                        // kind Positions
        9, 0, 0, 0,                  // node
        2, 0, 0, 0,                  // items: 2
        0x02, 0x01, 0, 0, 0, 0, 0, 0, //  instance
        3, 0, 0, 0, 1, 0, 0, 0,      //  term
        40, 0, 0, 0, 0, 0, 0, 0,     //  seq
        5, 0, 0, 0, 0, 0, 0, 0,      //  instance
        6, 0, 0, 0, 0, 0, 0, 0,      //  term
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // seq: INCOMPLETE
    ];
    assert_eq!(encode(&sut), expected);
    assert_eq!(Frame::decode(&expected[4..]), Ok(sut));
}

#[test]
fn evict_and_positions_cut_anywhere_are_rejected() {
    let evict = Frame::Request {
        req: ReqId {
            node: 1,
            incarnation: 2,
            counter: 3,
        },
        op: DirOp::Evict {
            instance: 4,
            node: 5,
            term: 6,
        },
    };
    let positions = Frame::Positions {
        node: 1,
        items: vec![(2, 3, 4), (5, 6, 7)],
    };
    for sut in [evict, positions] {
        let bytes = body(&sut);
        assert_eq!(Frame::decode(&bytes), Ok(sut.clone()));
        for cut in 1..bytes.len() {
            let result = Frame::decode(&bytes[..cut]);
            assert!(
                matches!(result, Err(WireError::Truncated | WireError::CountTooLarge)),
                "{sut:?} cut at {cut}: {result:?}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Frame::decode(&long), Err(WireError::TrailingBytes));
    }
}

#[test]
fn positions_count_beyond_the_frame_is_rejected_before_allocating() {
    // One item takes 24 bytes; 47 left cannot hold two.
    let mut sut = body(&Frame::Positions {
        node: 1,
        items: vec![(0, 0, 0)],
    });
    sut[5..9].copy_from_slice(&2u32.to_le_bytes());
    sut.extend_from_slice(&[0; 23]);
    assert_eq!(Frame::decode(&sut), Err(WireError::CountTooLarge));

    sut[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
    let (result, allocated) = allocated_by(|| Frame::decode(&sut));
    assert_eq!(result, Err(WireError::CountTooLarge));
    assert_eq!(allocated, 0);
}

#[test]
fn descriptor_frames_are_little_endian_and_at_most_max_descriptors_long() {
    let sut = Frame::Descriptors {
        instances: vec![0x0102_0304_0506_0708],
        last: true,
    };
    let bytes = body(&sut);
    assert_eq!(
        bytes,
        [
            0x03, 1, 0, 0, 0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 1
        ]
    );
    assert_eq!(body(&Frame::ListDescriptors), [0x04]);

    let full = Frame::Descriptors {
        instances: (0..MAX_DESCRIPTORS as u64).collect(),
        last: false,
    };
    assert_eq!(Frame::decode(&body(&full)), Ok(full));
    let over = Frame::Descriptors {
        instances: (0..=MAX_DESCRIPTORS as u64).collect(),
        last: false,
    };
    assert_eq!(
        Frame::decode(&body(&over)),
        Err(WireError::CountTooLarge),
        "a receiver reserves room for MAX_DESCRIPTORS descriptors per message"
    );
}

#[test]
fn every_frame_kind_round_trips() {
    let frames = one_of_each_kind();
    let kinds: Vec<u8> = frames.iter().map(Frame::kind).collect();
    assert_eq!(
        kinds,
        [
            0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
            0x20, 0x21, 0x22, 0x30, 0x31
        ]
    );
    for sut in frames {
        assert_eq!(Frame::decode(&body(&sut)), Ok(sut.clone()), "{sut:?}");
    }
}

#[test]
fn encode_appends_after_existing_bytes_with_one_reservation() {
    let sut = &one_of_each_kind()[7];
    let mut out = b"xyz".to_vec();
    out.shrink_to_fit();
    let ((), allocated) = allocated_by(|| sut.encode(&mut out));
    assert_eq!(&out[..3], b"xyz");
    assert_eq!(out.len(), 3 + sut.encoded_len());
    assert_eq!(allocated, out.capacity(), "one reservation, nothing else");

    let mut reserved = Vec::with_capacity(sut.encoded_len());
    let ((), allocated) = allocated_by(|| sut.encode(&mut reserved));
    assert_eq!(allocated, 0, "a reserved buffer needs no allocation");
}

#[test]
fn unknown_kind_is_rejected() {
    assert_eq!(Frame::decode(&[0x05]), Err(WireError::UnknownKind(0x05)));
    assert_eq!(
        Frame::decode(&[0xff, 0, 0]),
        Err(WireError::UnknownKind(0xff))
    );
}

#[test]
fn empty_frame_is_rejected() {
    assert_eq!(Frame::decode(&[]), Err(WireError::EmptyFrame));
    assert_eq!(
        split_frame(&[0, 0, 0, 0, 1], 10),
        Err(WireError::EmptyFrame)
    );
}

#[test]
fn unknown_tags_are_rejected_with_their_type() {
    let req = ReqId {
        node: 1,
        incarnation: 2,
        counter: 3,
    };
    let mut sut = body(&Frame::Request {
        req,
        op: DirOp::Unlink {
            name: String::new(),
        },
    });
    sut[21] = 9;
    assert_eq!(
        Frame::decode(&sut),
        Err(WireError::UnknownTag {
            what: "DirOp",
            tag: 9
        })
    );

    let mut sut = body(&Frame::Reply {
        req,
        result: DirReply::NotLeader { leader: None },
    });
    sut[22] = 2;
    assert_eq!(
        Frame::decode(&sut),
        Err(WireError::UnknownTag {
            what: "Option",
            tag: 2
        })
    );

    let mut sut = body(&Frame::RemoteReply {
        req,
        result: RemoteResult::Done,
    });
    sut[21] = 0;
    assert_eq!(
        Frame::decode(&sut),
        Err(WireError::UnknownTag {
            what: "RemoteResult",
            tag: 0
        })
    );
}

#[test]
fn bool_other_than_zero_or_one_is_rejected() {
    let Frame::Assign { ckpt, .. } = one_of_each_kind().swap_remove(7) else {
        unreachable!()
    };
    let mut sut = body(&Frame::Assign { dir_term: 1, ckpt });
    *sut.last_mut().unwrap() = 2;
    assert_eq!(Frame::decode(&sut), Err(WireError::BadBool(2)));
}

#[test]
fn invalid_utf8_name_is_rejected() {
    let req = ReqId {
        node: 1,
        incarnation: 2,
        counter: 3,
    };
    let mut sut = body(&Frame::Request {
        req,
        op: DirOp::Unlink {
            name: "ab".to_owned(),
        },
    });
    let at = sut.len() - 2;
    sut[at] = 0xff;
    assert_eq!(Frame::decode(&sut), Err(WireError::BadUtf8));
}

#[test]
fn count_beyond_the_frame_is_rejected_before_allocating() {
    // A Diff claiming u32::MAX ops in a 37-byte body.
    let mut sut = body(&Frame::Diff {
        instance: 1,
        term: 2,
        base: 3,
        mark: 4,
        ops: vec![],
    });
    sut[33..37].copy_from_slice(&u32::MAX.to_le_bytes());
    let (result, allocated) = allocated_by(|| Frame::decode(&sut));
    assert_eq!(result, Err(WireError::CountTooLarge));
    assert_eq!(allocated, 0);

    // Six members need 24 bytes; 20 are left (three members and the send time).
    let mut sut = body(&Frame::Leader {
        dir_term: 1,
        leader: 2,
        members: vec![0; 3],
        sent: 1,
    });
    sut[13..17].copy_from_slice(&6u32.to_le_bytes());
    assert_eq!(Frame::decode(&sut), Err(WireError::CountTooLarge));
}

#[test]
fn dec_reads_back_what_enc_wrote() {
    let mut out = Vec::new();
    let mut enc = Enc::new(&mut out);
    enc.put_u8(1);
    enc.put_u16(2);
    enc.put_u32(3);
    enc.put_u64(4);
    enc.put_i64(-5);
    enc.put_bool(true);
    enc.put_bytes(b"six");
    enc.put_str("sieben");
    enc.put_option(Some(&8u32), |enc, v| enc.put_u32(*v));
    enc.put_option(None::<&u32>, |enc, v| enc.put_u32(*v));
    enc.put_vec(&[9u64, 10], |enc, v| enc.put_u64(*v));
    enc.put(&ReqId {
        node: 11,
        incarnation: 12,
        counter: 13,
    });

    let mut sut = Dec::new(&out);
    assert_eq!(sut.u8(), Ok(1));
    assert_eq!(sut.u16(), Ok(2));
    assert_eq!(sut.u32(), Ok(3));
    assert_eq!(sut.u64(), Ok(4));
    assert_eq!(sut.i64(), Ok(-5));
    assert_eq!(sut.bool(), Ok(true));
    assert_eq!(sut.bytes(), Ok(&b"six"[..]));
    assert_eq!(sut.str(), Ok("sieben"));
    assert_eq!(sut.option(Dec::u32), Ok(Some(8)));
    assert_eq!(sut.option(Dec::u32), Ok(None));
    assert_eq!(sut.vec(8, Dec::u64), Ok(vec![9, 10]));
    assert_eq!(
        sut.decode::<ReqId>(),
        Ok(ReqId {
            node: 11,
            incarnation: 12,
            counter: 13
        })
    );
    assert!(sut.is_empty());
    assert_eq!(sut.finish(), Ok(()));
}

#[test]
fn dec_consumes_nothing_on_error() {
    let mut sut = Dec::new(&[5, 0, 0, 0, b'a']);
    assert_eq!(sut.bytes(), Err(WireError::Truncated));
    assert_eq!(sut.u64(), Err(WireError::Truncated));
    assert_eq!(sut.remaining(), 5);
    assert_eq!(sut.u32(), Ok(5));
    assert_eq!(sut.finish(), Err(WireError::TrailingBytes));
}

#[test]
fn split_frame_waits_for_the_whole_frame() {
    let frame = encode(&Frame::Stale {
        instance: 1,
        term: 2,
    });
    for cut in 0..frame.len() {
        assert_eq!(
            split_frame(&frame[..cut], DEFAULT_MAX_FRAME),
            Ok(None),
            "cut {cut}"
        );
    }
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    assert_eq!(
        split_frame(&two, DEFAULT_MAX_FRAME),
        Ok(Some((frame.len(), &frame[4..])))
    );
}

#[test]
fn oversized_length_is_rejected_before_buffering() {
    let mut sut = FrameReader::new(1024);
    sut.push(&1025u32.to_le_bytes());
    assert_eq!(
        sut.next(),
        Err(WireError::TooLong {
            len: 1025,
            max: 1024
        })
    );
    assert_eq!(sut.buffered(), 0);
    sut.push(&[0; 2048]);
    assert_eq!(sut.buffered(), 0, "a failed stream buffers nothing more");
    assert_eq!(
        sut.next(),
        Err(WireError::TooLong {
            len: 1025,
            max: 1024
        })
    );

    let mut sut = FrameReader::new(DEFAULT_MAX_FRAME);
    sut.push(&u32::MAX.to_le_bytes());
    let (result, allocated) = allocated_by(|| sut.next());
    assert!(matches!(result, Err(WireError::TooLong { .. })));
    assert_eq!(
        allocated, 0,
        "no space is reserved on the word of a length prefix"
    );

    let mut sut = FrameReader::new(DEFAULT_MAX_FRAME);
    sut.push(&[0, 0, 0, 0]);
    assert_eq!(sut.next(), Err(WireError::EmptyFrame));
}

#[test]
fn frame_of_exactly_max_frame_is_accepted() {
    let frame = Frame::DirState {
        term: 1,
        leader: 2,
        state: vec![7; 100],
    };
    let bytes = encode(&frame);
    let len = bytes.len() - 4;
    let mut sut = FrameReader::new(len);
    sut.push(&bytes);
    assert_eq!(sut.next(), Ok(Some(frame)));
    assert_eq!(
        split_frame(&bytes, len - 1),
        Err(WireError::TooLong { len, max: len - 1 })
    );
}

#[test]
fn reader_splits_a_stream_fed_one_byte_at_a_time() {
    let frames = one_of_each_kind();
    let mut stream = Vec::new();
    for frame in &frames {
        frame.encode(&mut stream);
    }
    let mut sut = FrameReader::new(DEFAULT_MAX_FRAME);
    let mut got = Vec::new();
    for byte in &stream {
        sut.push(std::slice::from_ref(byte));
        while let Some(frame) = sut.next().unwrap() {
            got.push(frame);
        }
    }
    assert_eq!(got, frames);
    assert_eq!(sut.buffered(), 0);
}

#[test]
fn reader_skips_a_malformed_frame_and_reads_the_next() {
    let mut sut = FrameReader::new(DEFAULT_MAX_FRAME);
    sut.push(&[2, 0, 0, 0, 0x01, 0]); // a Hello cut short
    sut.push(&encode(&Frame::Stale {
        instance: 1,
        term: 2,
    }));
    assert_eq!(sut.next(), Err(WireError::Truncated));
    assert_eq!(
        sut.next(),
        Ok(Some(Frame::Stale {
            instance: 1,
            term: 2
        }))
    );
    assert_eq!(sut.next(), Ok(None));
}

#[test]
fn large_diff_round_trips() {
    let sut = Frame::Diff {
        instance: 1,
        term: 1,
        base: 0,
        mark: 1,
        ops: vec![DiffOp::Put {
            id: b"big".to_vec(),
            expiration: 0,
            data: vec![0x5a; 40 << 20],
        }],
    };
    let bytes = encode(&sut);
    assert_eq!(bytes.len(), sut.encoded_len());
    let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
    for chunk in bytes.chunks(64 << 10) {
        reader.push(chunk);
        if let Some(frame) = reader.next().unwrap() {
            assert_eq!(frame, sut);
        }
    }
    assert_eq!(reader.buffered(), 0);
}

/// Decodes `bytes` as a body and through a reader, checking the allocation bound on the way.
fn decode_hostile(bytes: &[u8]) {
    let (result, allocated) = allocated_by(|| Frame::decode(bytes));
    let bound = heap_per_wire_byte() * bytes.len();
    assert!(
        allocated <= bound,
        "{allocated} bytes allocated for {} input bytes",
        bytes.len()
    );
    if let Ok(frame) = result {
        assert_eq!(
            frame.encoded_len(),
            bytes.len() + 4,
            "a valid decoding is canonical"
        );
        assert_eq!(body(&frame), bytes);
    }
}

/// Feeds `bytes` to a reader in `chunk`-sized pieces, draining it after each.
fn read_hostile(bytes: &[u8], chunk: usize) {
    let mut sut = FrameReader::new(256);
    for piece in bytes.chunks(chunk.max(1)) {
        sut.push(piece);
        loop {
            match sut.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(WireError::TooLong { .. } | WireError::EmptyFrame) => return,
                Err(_) => {}
            }
        }
        assert!(sut.buffered() <= 4 + 256 + chunk);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_frames_round_trip(sut in frame()) {
        let bytes = encode(&sut);
        prop_assert_eq!(split_frame(&bytes, DEFAULT_MAX_FRAME), Ok(Some((bytes.len(), &bytes[4..]))));
        prop_assert_eq!(Frame::decode(&bytes[4..]), Ok(sut));
    }

    #[test]
    fn encoded_len_matches_encode(sut in frame()) {
        prop_assert_eq!(encode(&sut).len(), sut.encoded_len());
    }

    #[test]
    fn truncated_frames_are_rejected_at_every_cut(sut in frame()) {
        let bytes = body(&sut);
        prop_assert_eq!(Frame::decode(&[]), Err(WireError::EmptyFrame));
        for cut in 1..bytes.len() {
            let result = Frame::decode(&bytes[..cut]);
            prop_assert!(
                matches!(result, Err(WireError::Truncated | WireError::CountTooLarge)),
                "cut {} of {}: {:?}", cut, bytes.len(), result
            );
        }
    }

    #[test]
    fn trailing_bytes_are_rejected(sut in frame(), tail in vec(any::<u8>(), 1..8)) {
        let mut bytes = body(&sut);
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(Frame::decode(&bytes), Err(WireError::TrailingBytes));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_over_allocate(
        bytes in vec(any::<u8>(), 0..200),
        chunk in 1usize..40,
    ) {
        decode_hostile(&bytes);
        read_hostile(&bytes, chunk);
    }

    #[test]
    fn bytes_after_a_known_kind_never_panic_and_never_over_allocate(
        kind in prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x20, 0x21,
            0x22, 0x30, 0x31,
        ]),
        tail in vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(5), Just(0xff), any::<u8>()], 0..200),
    ) {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&tail);
        decode_hostile(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic_and_never_over_allocate(
        sut in frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        chunk in 1usize..40,
    ) {
        let mut bytes = encode(&sut);
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        decode_hostile(&bytes[4..]);
        read_hostile(&bytes, chunk);
    }

    #[test]
    fn a_diff_written_op_by_op_is_its_encoding_and_decodes_in_place(
        instance in any::<u64>(),
        term in any::<u64>(),
        base in any::<u64>(),
        mark in any::<u64>(),
        ops in vec(diff_op(), 0..6),
    ) {
        let sut = Frame::Diff { instance, term, base, mark, ops };
        let written = write_diff(&sut);
        prop_assert_eq!(&written, &body(&sut));
        let diff = DiffRef::decode(&written).unwrap().unwrap();
        prop_assert_eq!(diff.to_frame(), sut);
    }

    #[test]
    fn diff_ref_agrees_with_frame_decode_on_mutated_and_cut_bodies(
        sut in frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = body(&sut);
        diff_ref_agrees(&bytes);
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        diff_ref_agrees(&bytes);
        diff_ref_agrees(&bytes[..cut.index(bytes.len() + 1)]);
    }

    #[test]
    fn diff_ref_agrees_with_frame_decode_on_arbitrary_diff_bodies(
        tail in vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(5), Just(0xff), any::<u8>()], 0..200),
    ) {
        let mut bytes = vec![0x20];
        bytes.extend_from_slice(&tail);
        diff_ref_agrees(&bytes);
    }

    #[test]
    fn reader_splits_any_chunking_of_a_stream(
        frames in vec(frame(), 0..8),
        cuts in vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut stream = Vec::new();
        for frame in &frames {
            frame.encode(&mut stream);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        cuts.push(0);
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut sut = FrameReader::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for piece in cuts.windows(2) {
            sut.push(&stream[piece[0]..piece[1]]);
            while let Some(frame) = sut.next().unwrap() {
                got.push(frame);
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(sut.buffered(), 0);
    }
}
