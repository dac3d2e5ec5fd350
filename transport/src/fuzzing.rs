//! The fuzz harness of the wire codec, shared by the cargo-fuzz target `wire_decode` in
//! `fuzz/` and by the replay of its committed corpus in `transport/tests/fuzz_corpus.rs`, so
//! both run one body. Not part of the crate's API: compiled only with the `fuzzing` feature.
//!
//! [`wire_decode`] feeds the input to every decoding entry point of [`crate::wire`]:
//! - [`Frame::decode`] with the input as one frame body;
//! - [`split_frame`] over the input as a stream, and a [`FrameReader`] fed the same stream
//!   in small pieces, which must produce the same frames and errors;
//! - each composite type's [`Decode`] impl on the input after its first byte, which picks
//!   the type;
//! - the borrowing diff decoder: [`DiffRef::decode`] on the input as a body and
//!   [`DiffOpRef::decode_from`] as a composite, which must agree with [`Frame::decode`] and
//!   [`DiffOp`]'s decoder; the ops of a decoded diff, fed to a [`DiffWriter`], must give the
//!   body back.
//!
//! The codec is canonical (fixed-width little-endian integers, strict `bool` and `Option`
//! tags, exact counts, UTF-8 checked), so whatever decodes must re-encode to exactly the
//! bytes it was decoded from, in [`Frame::encoded_len`] or [`Encode::wire_len`] bytes, and
//! decode again to the same value.

use core::fmt::Debug;

use crate::wire::{
    Attrs, CkptAssign, DEFAULT_MAX_FRAME, Dec, Decode, DiffOp, DiffOpRef, DiffRef, DiffWriter,
    DirOp, DirReply, Enc, Encode, Frame, FrameReader, ReadElem, RemoteOp, RemoteResult, ReqId,
    SectionEntry, TableVersion, WireError, WriteElem, split_frame,
};

/// The kind byte of [`Frame::Diff`] (transport/DESIGN.md §2).
const KIND_DIFF: u8 = 0x20;

/// Frames a stream is read for at most (each takes at least 5 bytes anyway).
const MAX_FRAMES: usize = 1 << 16;

/// The `wire_decode` target; see the module docs.
pub fn wire_decode(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        round_trip(&frame, Some(data));
    }
    diff_ref(data);
    stream(data);
    if let Some((&pick, rest)) = data.split_first() {
        composite(pick, rest);
    }
}

/// Encodes `frame`, checks the length and, when `body` is the body it was decoded from,
/// that the encoding is exactly that body; then decodes the encoding again.
fn round_trip(frame: &Frame, body: Option<&[u8]>) {
    let mut out = Vec::new();
    frame.encode(&mut out);
    assert_eq!(
        out.len(),
        frame.encoded_len(),
        "{frame:?}: encoded_len is wrong"
    );
    let split = split_frame(&out, usize::MAX);
    let Ok(Some((total, encoded))) = split else {
        panic!("{frame:?}: its own encoding does not split: {split:?}");
    };
    assert_eq!(total, out.len(), "{frame:?}: the length prefix is wrong");
    assert_eq!(
        encoded[0],
        frame.kind(),
        "{frame:?}: the kind byte is wrong"
    );
    if let Some(body) = body {
        assert_eq!(encoded, body, "{frame:?} re-encodes to other bytes");
    }
    assert_eq!(
        Frame::decode(encoded).as_ref(),
        Ok(frame),
        "{frame:?} does not decode back"
    );
}

/// The input as a byte stream: frames split off the whole buffer, and frames from a reader
/// that gets the bytes in pieces, must agree. The first byte picks the piece size and a
/// small or the default frame limit.
fn stream(data: &[u8]) {
    let pick = data.first().copied().unwrap_or(0);
    let max_frame = if pick & 0x80 != 0 {
        64
    } else {
        DEFAULT_MAX_FRAME
    };
    let piece = 1 + usize::from(pick % 13);

    let mut split: Vec<Result<Frame, WireError>> = Vec::new();
    let mut rest = data;
    while split.len() < MAX_FRAMES {
        match split_frame(rest, max_frame) {
            Ok(Some((total, body))) => {
                assert!(
                    total == 4 + body.len() && total <= rest.len(),
                    "split_frame took {total} bytes for a body of {}",
                    body.len()
                );
                let frame = Frame::decode(body);
                if let Ok(f) = &frame {
                    round_trip(f, Some(body));
                }
                split.push(frame);
                rest = &rest[total..];
            }
            Ok(None) => break,
            Err(e) => {
                split.push(Err(e));
                break;
            }
        }
    }

    let mut read: Vec<Result<Frame, WireError>> = Vec::new();
    let mut reader = FrameReader::new(max_frame);
    'pieces: for bytes in data.chunks(piece) {
        reader.push(bytes);
        while read.len() < MAX_FRAMES {
            match reader.next() {
                Ok(Some(f)) => read.push(Ok(f)),
                Ok(None) => break,
                Err(e @ (WireError::EmptyFrame | WireError::TooLong { .. })) => {
                    // The stream is unreadable from here on, and says so again.
                    assert_eq!(reader.next(), Err(e), "a length error is not sticky");
                    read.push(Err(e));
                    break 'pieces;
                }
                Err(e) => read.push(Err(e)),
            }
        }
        assert!(
            reader.buffered() <= data.len(),
            "the reader buffers more than it got"
        );
    }
    assert_eq!(read, split, "FrameReader and split_frame disagree");
    let _ = (format!("{reader:?}"), reader.max_frame());
}

/// `body` through the borrowing diff decoder, which must agree with [`Frame::decode`]: the
/// same diff or the same error for a diff body, `None` for any other. A [`DiffWriter`] fed
/// the decoded ops must give the body back.
fn diff_ref(body: &[u8]) {
    let borrowed = DiffRef::decode(body);
    if body.first() != Some(&KIND_DIFF) {
        assert_eq!(
            borrowed,
            Ok(None),
            "DiffRef::decode read a frame of another kind"
        );
        return;
    }
    let owned = Frame::decode(body);
    let diff = match (borrowed, owned) {
        (Ok(Some(diff)), Ok(frame)) => {
            assert_eq!(
                diff.to_frame(),
                frame,
                "DiffRef and Frame::decode read other diffs"
            );
            diff
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "DiffRef and Frame::decode fail differently");
            return;
        }
        (borrowed, owned) => {
            panic!("DiffRef and Frame::decode disagree: {borrowed:?} against {owned:?}")
        }
    };
    let mut writer = DiffWriter::new(diff.instance, diff.term, diff.base, body.len());
    for op in &diff.ops {
        assert_eq!(
            op.to_owned().as_ref(),
            *op,
            "{op:?}: to_owned and as_ref disagree"
        );
        writer.op(op);
    }
    assert_eq!(writer.ops(), diff.ops.len());
    assert_eq!(
        writer.finish(diff.mark),
        body,
        "DiffWriter re-encodes a decoded diff to other bytes"
    );
}

/// `bytes` as one diff op through both decoders: the same op (borrowed or owned) from the
/// same bytes, or the same error.
fn diff_op_ref(bytes: &[u8]) {
    let (mut a, mut b) = (Dec::new(bytes), Dec::new(bytes));
    match (DiffOpRef::decode_from(&mut a), DiffOp::decode_from(&mut b)) {
        (Ok(borrowed), Ok(owned)) => {
            assert_eq!(borrowed.to_owned(), owned, "the diff op decoders disagree");
            assert_eq!(
                a.remaining(),
                b.remaining(),
                "the diff op decoders read other lengths"
            );
        }
        (Err(x), Err(y)) => assert_eq!(x, y, "the diff op decoders fail differently"),
        (x, y) => panic!("the diff op decoders disagree: {x:?} against {y:?}"),
    }
}

/// `bytes` as one composite value of the type `pick` names.
fn composite(pick: u8, bytes: &[u8]) {
    match pick % 13 {
        0 => composite_as::<ReqId>(bytes),
        1 => composite_as::<TableVersion>(bytes),
        2 => composite_as::<Attrs>(bytes),
        3 => composite_as::<CkptAssign>(bytes),
        4 => composite_as::<SectionEntry>(bytes),
        5 => composite_as::<WriteElem>(bytes),
        6 => composite_as::<ReadElem>(bytes),
        7 => composite_as::<DirOp>(bytes),
        8 => composite_as::<DirReply>(bytes),
        9 => composite_as::<DiffOp>(bytes),
        10 => composite_as::<RemoteOp>(bytes),
        11 => composite_as::<RemoteResult>(bytes),
        _ => diff_op_ref(bytes),
    }
}

fn composite_as<T: Decode + Encode + PartialEq + Debug>(bytes: &[u8]) {
    let mut dec = Dec::new(bytes);
    let Ok(value) = dec.decode::<T>() else {
        return;
    };
    let used = bytes.len() - dec.remaining();
    let mut out = Vec::new();
    Enc::new(&mut out).put(&value);
    assert_eq!(out.len(), value.wire_len(), "{value:?}: wire_len is wrong");
    assert_eq!(out, bytes[..used], "{value:?} re-encodes to other bytes");
    let mut again = Dec::new(&out);
    assert_eq!(
        again.decode::<T>().as_ref(),
        Ok(&value),
        "{value:?} does not decode back"
    );
    assert_eq!(again.finish(), Ok(()));
}
