//! Helpers shared by the wire tests (`wire.rs`) and the fuzz corpus tests (`fuzz_corpus.rs`).

use ckpt_transport::wire::{
    Attrs, CkptAssign, DiffOp, DirOp, DirReply, Frame, PROTOCOL_VERSION, RemoteOp, RemoteResult,
    ReqId, SectionEntry, TableVersion,
};

/// The request id of every request and reply frame.
pub(crate) const REQ: ReqId = ReqId {
    node: 3,
    incarnation: 9,
    counter: 27,
};

/// The attributes of [`ckpt`].
pub(crate) const ATTRS: Attrs = Attrs {
    creation_flags: 2,
    checkpoint_size: 1 << 20,
    retention: 1_000,
    max_sections: 4,
    max_section_size: 4096,
    max_section_id_size: 16,
};

/// The table version of the vote frames.
pub(crate) const VERSION: TableVersion = TableVersion {
    term: 8,
    leader: 1,
    n: 40,
};

/// The checkpoint of the assignment and open frames.
pub(crate) fn ckpt() -> CkptAssign {
    CkptAssign {
        instance: 5,
        name: "safCkpt=a".to_owned(),
        attrs: ATTRS,
        replicas: vec![1, 2, 3],
        primary: Some(2),
        term: 4,
        unlinked: true,
        from_nothing: false,
    }
}

/// One frame of every kind, for tests that want them all at once.
pub(crate) fn one_of_each_kind() -> Vec<Frame> {
    let req = REQ;
    let ckpt = ckpt();
    vec![
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: 2,
            incarnation: 3,
        },
        Frame::Welcome {
            node: 2,
            incarnation: 3,
            shm_dir: "/dev/shm/ckpt/n2".to_owned(),
            sealed: true,
        },
        Frame::Descriptors {
            instances: vec![5, u64::MAX],
            last: true,
        },
        Frame::ListDescriptors,
        Frame::Request {
            req,
            op: DirOp::Open {
                name: "n".to_owned(),
                attrs: Some(ckpt.attrs),
                flags: 7,
                node: 1,
            },
        },
        Frame::Reply {
            req,
            result: DirReply::Opened { ckpt: ckpt.clone() },
        },
        Frame::DirState {
            term: 1,
            leader: 2,
            state: vec![1, 2, 3],
        },
        Frame::Assign { dir_term: 8, ckpt },
        Frame::Unassign {
            dir_term: 8,
            instance: 5,
        },
        Frame::Leader {
            dir_term: 8,
            leader: 1,
            members: vec![1, 2],
            sent: 123_456_789,
        },
        Frame::Positions {
            node: 2,
            items: vec![(5, 4, 15), (6, 1, u64::MAX)],
        },
        Frame::Vote {
            term: 9,
            version: VERSION,
        },
        Frame::VoteReply {
            term: 9,
            granted: true,
            state: vec![4, 5],
        },
        Frame::LeaderAck {
            dir_term: 9,
            sent: 123_456_789,
            version: TableVersion {
                term: 9,
                leader: 2,
                n: 1,
            },
        },
        Frame::Diff {
            instance: 5,
            term: 4,
            base: 10,
            mark: 15,
            ops: diff_ops(),
        },
        Frame::Ack {
            instance: 5,
            term: 4,
            seq: 15,
        },
        Frame::Stale {
            instance: 5,
            term: 6,
        },
        Frame::Remote {
            req,
            instance: 5,
            op: RemoteOp::CreateSection {
                id: None,
                expiration: i64::MAX,
                data: vec![1],
            },
        },
        Frame::RemoteReply {
            req,
            result: RemoteResult::Sections {
                items: vec![SectionEntry {
                    id: b"s".to_vec(),
                    expiration: 1,
                    size: 2,
                    last_update: 3,
                    state: 1,
                }],
            },
        },
    ]
}

/// One diff op of each kind.
pub(crate) fn diff_ops() -> Vec<DiffOp> {
    vec![
        DiffOp::Put {
            id: b"a".to_vec(),
            expiration: -1,
            data: vec![0; 100],
        },
        DiffOp::Write {
            id: b"a".to_vec(),
            offset: 3,
            data: vec![9; 3],
        },
        DiffOp::Delete { id: b"b".to_vec() },
        DiffOp::Expire {
            id: vec![],
            expiration: 77,
        },
        DiffOp::Retain {
            ids: vec![b"a".to_vec(), vec![]],
        },
    ]
}
