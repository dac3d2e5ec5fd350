//! The committed fuzz corpus of the wire codec as a regression test: every file in
//! `fuzz/corpus/wire_decode/` goes through the harness the cargo-fuzz target runs
//! (`ckpt_transport::fuzzing::wire_decode`). Inputs of bugs not fixed yet wait in
//! `fuzz/known-crashes/`, which is not replayed.
//!
//! The seed files (`seed-*`: one frame of each kind as a body and as a stream, and every
//! composite value, diff ops also through the borrowing decoder) are written by the ignored test `write_seed_corpus`:
//! `cargo test -p ckpt-transport --test fuzz_corpus -- --ignored write_seed_corpus`.

use std::panic::{catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

mod support;

use ckpt_transport::fuzzing::wire_decode;
use ckpt_transport::wire::{
    ArrivalItem, DirOp, DirReply, Enc, Encode, Frame, ReadElem, RemoteOp, RemoteResult,
    SectionEntry, WriteElem,
};
use support::{ATTRS, REQ, VERSION, ckpt, diff_ops, one_of_each_kind};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wire_decode")
}

#[test]
fn wire_decode_corpus_replays_cleanly() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        if let Err(p) = catch_unwind(|| wire_decode(&data)) {
            eprintln!("fuzz corpus replay failed on {}", file.display());
            resume_unwind(p);
        }
    }
    println!("replayed {} wire_decode corpus files", files.len());
    assert!(
        !files.is_empty(),
        "no corpus files in {}: nothing was replayed",
        dir.display()
    );
}

// ---- seed files ---------------------------------------------------------------------------

fn entry() -> SectionEntry {
    SectionEntry {
        id: b"s".to_vec(),
        expiration: 1,
        size: 2,
        last_update: 3,
        state: 1,
    }
}

fn dir_ops() -> Vec<DirOp> {
    vec![
        DirOp::Open {
            name: "n".to_owned(),
            attrs: Some(ATTRS),
            flags: 7,
            node: 1,
        },
        DirOp::Close {
            instance: 5,
            node: 2,
        },
        DirOp::Unlink {
            name: "n".to_owned(),
        },
        DirOp::SetRetention {
            instance: 5,
            retention: -1,
        },
        DirOp::SetActive {
            instance: 5,
            node: 2,
        },
        DirOp::Evict {
            instance: 5,
            node: 2,
            term: 4,
        },
        DirOp::Resign {
            instance: 5,
            node: 2,
            term: 4,
        },
        DirOp::Opens {
            instance: 5,
            node: 3,
            count: 2,
        },
    ]
}

fn dir_replies() -> Vec<DirReply> {
    vec![
        DirReply::Done,
        DirReply::Opened { ckpt: ckpt() },
        DirReply::Failed { code: 7 },
        DirReply::NotLeader { leader: Some(1) },
        DirReply::NotLeader { leader: None },
    ]
}

fn remote_ops() -> Vec<RemoteOp> {
    vec![
        RemoteOp::Write {
            elems: vec![WriteElem {
                id: b"a".to_vec(),
                offset: 1,
                data: b"xy".to_vec(),
            }],
        },
        RemoteOp::Overwrite {
            id: b"a".to_vec(),
            data: b"z".to_vec(),
        },
        RemoteOp::Read {
            elems: vec![ReadElem {
                id: b"a".to_vec(),
                offset: 0,
                size: 9,
            }],
        },
        RemoteOp::CreateSection {
            id: None,
            expiration: i64::MAX,
            data: vec![1],
        },
        RemoteOp::CreateSection {
            id: Some(b"c".to_vec()),
            expiration: 5,
            data: vec![],
        },
        RemoteOp::DeleteSection { id: b"a".to_vec() },
        RemoteOp::SetExpiration {
            id: b"a".to_vec(),
            expiration: 3,
        },
        RemoteOp::Synchronize {
            timeout_ns: 1_000,
            after: vec![(1, 2)],
        },
        RemoteOp::Sections {
            filter: 2,
            time: 10,
        },
        RemoteOp::Status,
        RemoteOp::Changes {
            epoch: 3,
            since: 40,
            wait_ms: 500,
        },
    ]
}

fn remote_results() -> Vec<RemoteResult> {
    vec![
        RemoteResult::Done,
        RemoteResult::Failed {
            code: 9,
            index: Some(1),
        },
        RemoteResult::Data {
            items: vec![b"ab".to_vec(), vec![]],
        },
        RemoteResult::Created { id: b"7".to_vec() },
        RemoteResult::Sections {
            items: vec![entry()],
        },
        RemoteResult::Status {
            sections: 2,
            memory_used: 30,
        },
        RemoteResult::Applied { term: 4, seq: 15 },
        RemoteResult::Changes {
            epoch: 3,
            upto: 42,
            lapped: false,
            items: vec![ArrivalItem {
                seq: 41,
                writer: 7,
                id: b"s".to_vec(),
                offset: 4,
                size: 2,
            }],
        },
    ]
}

/// One frame of each kind (its diff has every kind of op), those carrying a directory or
/// remote operation once per operation.
fn frames() -> Vec<Frame> {
    let mut frames: Vec<Frame> = one_of_each_kind()
        .into_iter()
        .filter(|f| {
            !matches!(
                f,
                Frame::Request { .. }
                    | Frame::Reply { .. }
                    | Frame::Remote { .. }
                    | Frame::RemoteReply { .. }
            )
        })
        .collect();
    frames.extend(
        dir_ops()
            .into_iter()
            .map(|op| Frame::Request { req: REQ, op }),
    );
    frames.extend(
        dir_replies()
            .into_iter()
            .map(|result| Frame::Reply { req: REQ, result }),
    );
    frames.extend(remote_ops().into_iter().map(|op| Frame::Remote {
        req: REQ,
        instance: 5,
        op,
    }));
    frames.extend(
        remote_results()
            .into_iter()
            .map(|result| Frame::RemoteReply { req: REQ, result }),
    );
    frames
}

/// `value` encoded behind the byte that makes the harness decode it as type `pick`.
fn composite<T: Encode>(pick: u8, value: &T) -> Vec<u8> {
    let mut out = vec![pick];
    Enc::new(&mut out).put(value);
    out
}

#[test]
#[ignore = "writes the seed files of fuzz/corpus/wire_decode; run by hand after a format change"]
fn write_seed_corpus() {
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stream = Vec::new();
    for (i, frame) in frames().iter().enumerate() {
        let mut out = Vec::new();
        frame.encode(&mut out);
        seeds.push((
            format!("seed-body-{i:02}-{:02x}", frame.kind()),
            out[4..].to_vec(),
        ));
        stream.extend_from_slice(&out);
    }
    // The stream's first byte (the low byte of the first length prefix) picks the piece
    // size the reader gets the stream in.
    seeds.push(("seed-stream".to_owned(), stream));
    let mut pushed = |name: &str, bytes: Vec<u8>| seeds.push((format!("seed-{name}"), bytes));
    pushed("req-id", composite(0, &REQ));
    pushed("table-version", composite(1, &VERSION));
    pushed("attrs", composite(2, &ATTRS));
    pushed("ckpt-assign", composite(3, &ckpt()));
    pushed("section-entry", composite(4, &entry()));
    let write = WriteElem {
        id: b"a".to_vec(),
        offset: 1,
        data: b"xy".to_vec(),
    };
    pushed("write-elem", composite(5, &write));
    let read = ReadElem {
        id: b"a".to_vec(),
        offset: 0,
        size: 9,
    };
    pushed("read-elem", composite(6, &read));
    for (i, v) in dir_ops().iter().enumerate() {
        pushed(&format!("dir-op-{i}"), composite(7, v));
    }
    for (i, v) in dir_replies().iter().enumerate() {
        pushed(&format!("dir-reply-{i}"), composite(8, v));
    }
    for (i, v) in diff_ops().iter().enumerate() {
        pushed(&format!("diff-op-{i}"), composite(9, v));
        // The same bytes through the borrowing decoder (`DiffOpRef`) too.
        pushed(&format!("diff-op-ref-{i}"), composite(12, v));
    }
    for (i, v) in remote_ops().iter().enumerate() {
        pushed(&format!("remote-op-{i}"), composite(10, v));
    }
    for (i, v) in remote_results().iter().enumerate() {
        pushed(&format!("remote-result-{i}"), composite(11, v));
    }

    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("seed-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    for (name, bytes) in seeds {
        std::fs::write(dir.join(&name), &bytes).unwrap();
        println!("wire_decode/{name}: {} bytes", bytes.len());
    }
    // Each seed must pass the harness it is written for.
    for frame in frames() {
        let mut out = Vec::new();
        frame.encode(&mut out);
        wire_decode(&out[4..]);
    }
}
