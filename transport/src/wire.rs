//! The frames node daemons exchange, and their byte encoding.
//!
//! `transport/DESIGN.md` §2 specifies the format; this module is its executable form. Every
//! frame is `len: u32 LE` (the bytes that follow), `kind: u8`, then the body's fields in
//! order, little-endian, without padding.
//!
//! - [`Frame`] is one frame; [`Frame::encode`] appends it to a buffer with a single reserve,
//!   and [`Frame::decode`] parses one frame body (kind byte onwards).
//! - [`FrameReader`] splits a byte stream into frames; [`split_frame`] does the same for one
//!   buffer without allocating.
//! - [`Enc`] and [`Dec`] are the primitive field codec, public so that other modules can
//!   encode their own blobs (the directory state) the same way; [`Encode`] and [`Decode`]
//!   let them embed the composite types of this module.
//!
//! The decoder is written for hostile input: it never panics, never indexes out of bounds,
//! rejects unknown kinds and tags, short bodies and trailing bytes, and checks every element
//! count against the bytes left before it reserves anything. A decoded frame's heap
//! footprint is therefore bounded by a small multiple of the frame's length (a `Vec` holds a
//! 24-byte header per element where the wire holds as little as a 4-byte length).
//!
//! ```
//! use ckpt_transport::wire::{DEFAULT_MAX_FRAME, Frame, FrameReader, PROTOCOL_VERSION};
//!
//! let hello = Frame::Hello { version: PROTOCOL_VERSION, node: 2, incarnation: 7 };
//! let mut out = Vec::with_capacity(hello.encoded_len());
//! hello.encode(&mut out);
//!
//! let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
//! reader.push(&out[..5]);
//! assert_eq!(reader.next(), Ok(None)); // waits for the rest
//! reader.push(&out[5..]);
//! assert_eq!(reader.next(), Ok(Some(hello)));
//! ```

use core::fmt;

/// The protocol version a node announces in [`Frame::Hello`].
pub const PROTOCOL_VERSION: u16 = 1;

/// The default limit on a frame's length (the bytes after the length prefix): the 40 MB
/// write limit twice, plus headroom.
pub const DEFAULT_MAX_FRAME: usize = 96 << 20;

/// The most descriptors one [`Frame::Descriptors`] carries (a receiver reserves room for
/// this many per message; a longer list is sent as several frames).
pub const MAX_DESCRIPTORS: usize = 64;

/// Bytes of the length prefix in front of every frame.
const PREFIX_LEN: usize = 4;

// Frame kinds (DESIGN.md §2).
const KIND_HELLO: u8 = 0x01;
const KIND_WELCOME: u8 = 0x02;
const KIND_DESCRIPTORS: u8 = 0x03;
const KIND_LIST_DESCRIPTORS: u8 = 0x04;
const KIND_REQUEST: u8 = 0x10;
const KIND_REPLY: u8 = 0x11;
const KIND_DIR_STATE: u8 = 0x12;
const KIND_ASSIGN: u8 = 0x13;
const KIND_UNASSIGN: u8 = 0x14;
const KIND_LEADER: u8 = 0x15;
const KIND_POSITIONS: u8 = 0x16;
const KIND_VOTE: u8 = 0x17;
const KIND_VOTE_REPLY: u8 = 0x18;
const KIND_LEADER_ACK: u8 = 0x19;
const KIND_DIFF: u8 = 0x20;
const KIND_ACK: u8 = 0x21;
const KIND_STALE: u8 = 0x22;
const KIND_REMOTE: u8 = 0x30;
const KIND_REMOTE_REPLY: u8 = 0x31;

// Fewest bytes one element of each `Vec` takes on the wire, used to reject counts that the
// rest of the frame could not hold before anything is allocated.
const MIN_U32: usize = 4;
const MIN_BYTES: usize = 4;
/// `DiffOp::Delete` or `DiffOp::Retain` with nothing inside: tag and one `u32`.
const MIN_DIFF_OP: usize = 1 + 4;
const MIN_WRITE_ELEM: usize = 4 + 8 + 4;
const MIN_READ_ELEM: usize = 4 + 8 + 8;
const MIN_SECTION_ENTRY: usize = 4 + 8 + 8 + 8 + 1;
const MIN_ARRIVAL_ITEM: usize = 8 + 8 + 4 + 8 + 8;
/// One `(instance, term, seq)` of [`Frame::Positions`].
const MIN_POSITION: usize = 8 + 8 + 8;

/// Why bytes are not a valid frame.
///
/// Any of these on a peer connection is a protocol error that closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A `bool` byte is neither 0 nor 1.
    #[error("bool byte is {0}, not 0 or 1")]
    BadBool(u8),
    /// A `str` field is not valid UTF-8.
    #[error("string field is not valid UTF-8")]
    BadUtf8,
    /// A `Vec` count is larger than the bytes left in the frame could hold.
    #[error("element count exceeds what the rest of the frame can hold")]
    CountTooLarge,
    /// A frame has length zero, so it has no kind byte.
    #[error("frame is empty (no kind byte)")]
    EmptyFrame,
    /// A frame's length prefix exceeds the receiver's limit.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLong {
        /// The length the prefix announced.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// Bytes are left after the frame's last field.
    #[error("bytes left after the frame's last field")]
    TrailingBytes,
    /// The frame ends in the middle of a field.
    #[error("frame ends in the middle of a field")]
    Truncated,
    /// The kind byte names no frame.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// An enum or `Option` tag names no variant.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// The type whose tag this is (`"DirOp"`, `"Option"`, ...).
        what: &'static str,
        /// The tag byte read.
        tag: u8,
    },
}

/// One frame between node daemons (DESIGN.md §2); the comment of each variant names its
/// kind byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `0x01`: the first frame on every connection, naming the sender.
    Hello {
        /// The sender's protocol version ([`PROTOCOL_VERSION`]).
        version: u16,
        /// The sender's node id.
        node: u32,
        /// The sender daemon's incarnation: it changes on every restart.
        incarnation: u64,
    },
    /// `0x02`: ckptd's answer to an agent's [`Frame::Hello`] on the node's Unix socket.
    Welcome {
        /// This node's id.
        node: u32,
        /// The daemon's incarnation.
        incarnation: u64,
        /// The node's directory: its replica objects, which agents map (unless `sealed`),
        /// and the liveness lock files of every process that maps a replica.
        shm_dir: String,
        /// The node keeps its replicas as sealed memfds: they are not in `shm_dir`, and
        /// agents get them only as descriptors ([`Frame::Descriptors`]).
        sealed: bool,
    },
    /// `0x03`: sealed replica objects passed over the node's Unix socket, one descriptor
    /// per instance, in order, as `SCM_RIGHTS` on the message that carries the frame's
    /// first byte (at most [`MAX_DESCRIPTORS`]).
    ///
    /// ckptd sends it to an agent just before the [`Frame::Reply`] to an open whose
    /// checkpoint has a replica on the node, and to a [`Frame::ListDescriptors`]; an
    /// agent sends it to a sealed node's ckptd right after the [`Frame::Welcome`], with
    /// every replica it holds (a restarted ckptd takes them back). A list of any length
    /// ends with a frame whose `last` is true (empty, when there is nothing to pass).
    Descriptors {
        /// The checkpoint instances whose replicas the descriptors are.
        instances: Vec<u64>,
        /// No more `Descriptors` frames follow for this request or hand-back.
        last: bool,
    },
    /// `0x04`: a tool (`ckpt ls`) asks a sealed node's ckptd for every replica it holds;
    /// the answer is [`Frame::Descriptors`] frames.
    ListDescriptors,
    /// `0x10`: a directory operation sent to the leader director.
    Request {
        /// The request id; a retry carries the same id so the operation is applied once.
        req: ReqId,
        /// The operation.
        op: DirOp,
    },
    /// `0x11`: the leader director's answer to a [`Frame::Request`].
    Reply {
        /// The id of the request answered.
        req: ReqId,
        /// The outcome.
        result: DirReply,
    },
    /// `0x12`: the leader's directory state, sent to the standby director.
    DirState {
        /// The directory term of the state.
        term: u64,
        /// The leader director's node id.
        leader: u32,
        /// The encoded directory state (the directory module's own format).
        state: Vec<u8>,
    },
    /// `0x13`: the directory tells a checkpoint's replica nodes its placement.
    Assign {
        /// The directory term of the decision.
        dir_term: u64,
        /// The checkpoint's placement.
        ckpt: CkptAssign,
    },
    /// `0x14`: the directory tells a node to drop its replica of a checkpoint.
    Unassign {
        /// The directory term of the decision.
        dir_term: u64,
        /// The checkpoint instance.
        instance: u64,
    },
    /// `0x15`: the leader director's heartbeat.
    Leader {
        /// The directory term.
        dir_term: u64,
        /// The leader director's node id.
        leader: u32,
        /// The node ids the leader counts as cluster members.
        members: Vec<u32>,
        /// When the leader sent it, on the leader's monotonic clock (ns): echoed by
        /// [`Frame::LeaderAck`], so the leader knows from when a follower's lease runs.
        sent: u64,
    },
    /// `0x16`: a node reports to the leader director the replication position of replicas
    /// it holds (periodically, and whenever one changes), for promotion decisions.
    ///
    /// A report updates the positions it lists and leaves the node's others as they were.
    Positions {
        /// The reporting node.
        node: u32,
        /// `(instance, term, seq)` per replica: the position its header records
        /// (`seq` is [`crate::repl::INCOMPLETE`] while a snapshot is being applied).
        items: Vec<(u64, u64, u64)>,
    },
    /// `0x17`: a director asks for a node's vote to lead in `term`.
    Vote {
        /// The term it would lead in.
        term: u64,
        /// The candidate's table version: the voter sends its table back if it is newer.
        version: TableVersion,
    },
    /// `0x18`: a node's answer to [`Frame::Vote`].
    VoteReply {
        /// The term voted in (when refused: the highest term the voter knows).
        term: u64,
        /// Whether the vote is granted: the voter then follows nobody else for one
        /// election timeout.
        granted: bool,
        /// The voter's table (the directory module's own format) when it is newer than
        /// the candidate's, else empty.
        state: Vec<u8>,
    },
    /// `0x19`: a node acknowledges the leader's heartbeat or table.
    LeaderAck {
        /// The highest directory term the node follows (above the leader's: it is deposed).
        dir_term: u64,
        /// The `sent` of the heartbeat acknowledged (0: a table, no lease renewal).
        sent: u64,
        /// The table version the node holds.
        version: TableVersion,
    },
    /// `0x20`: changes of a checkpoint that the primary streams to a replica.
    Diff {
        /// The checkpoint instance.
        instance: u64,
        /// The replication term of the primary that sent the diff.
        term: u64,
        /// The seq the replica must already have applied for `ops` to follow on.
        base: u64,
        /// The seq the replica has reached once it has applied `ops`.
        mark: u64,
        /// The changes, applied in order.
        ops: Vec<DiffOp>,
    },
    /// `0x21`: a replica acknowledges the diffs it applied.
    Ack {
        /// The checkpoint instance.
        instance: u64,
        /// The replication term the replica follows.
        term: u64,
        /// The highest seq the replica applied.
        seq: u64,
    },
    /// `0x22`: "your term is stale; mine is `term`".
    Stale {
        /// The checkpoint instance.
        instance: u64,
        /// The sender's (newer) replication term.
        term: u64,
    },
    /// `0x30`: a checkpoint operation forwarded to the node of the active replica or primary.
    Remote {
        /// The request id; a retry carries the same id so the operation is applied once.
        req: ReqId,
        /// The checkpoint instance.
        instance: u64,
        /// The operation.
        op: RemoteOp,
    },
    /// `0x31`: the answer to a [`Frame::Remote`].
    RemoteReply {
        /// The id of the request answered.
        req: ReqId,
        /// The outcome.
        result: RemoteResult,
    },
}

/// The id of a forwarded request, unique in the cluster, so that a retry across reconnects
/// or a director failover is applied once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqId {
    /// The node that issued the request.
    pub node: u32,
    /// That node daemon's incarnation.
    pub incarnation: u64,
    /// A counter, increasing per request within the incarnation.
    pub counter: u64,
}

/// The version of the directory's table: the directory term and leader that produced it
/// and a counter of that leader's changes. A leader's versions increase; a later term's
/// are higher than every earlier term's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableVersion {
    /// The directory term of the leader that produced it.
    pub term: u64,
    /// That leader's node id.
    pub leader: u32,
    /// Changes that leader made, counted.
    pub n: u64,
}

impl TableVersion {
    /// Encoded length in bytes.
    pub const LEN: usize = 8 + 4 + 8;
}

impl Encode for TableVersion {
    fn wire_len(&self) -> usize {
        Self::LEN
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_u64(self.term);
        enc.put_u32(self.leader);
        enc.put_u64(self.n);
    }
}

impl Decode for TableVersion {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            term: dec.u64()?,
            leader: dec.u32()?,
            n: dec.u64()?,
        })
    }
}

/// A checkpoint's creation attributes (`SaCkptCheckpointCreationAttributesT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// `SA_CKPT_WR_*` and `SA_CKPT_CHECKPOINT_COLLOCATED` flags.
    pub creation_flags: u32,
    /// Total size of all sections' data, in bytes.
    pub checkpoint_size: u64,
    /// Retention duration in nanoseconds after the last close.
    pub retention: i64,
    /// Maximum number of sections.
    pub max_sections: u32,
    /// Maximum size of one section's data, in bytes.
    pub max_section_size: u64,
    /// Maximum length of a section id, in bytes.
    pub max_section_id_size: u64,
}

/// The directory's placement of one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CkptAssign {
    /// The checkpoint instance (a new one each time a name is created anew).
    pub instance: u64,
    /// The checkpoint's name.
    pub name: String,
    /// The checkpoint's creation attributes.
    pub attrs: Attrs,
    /// The nodes holding a replica.
    pub replicas: Vec<u32>,
    /// The node of the primary (the active replica), if one is chosen.
    pub primary: Option<u32>,
    /// The replication term of this placement.
    pub term: u64,
    /// Whether the name has been unlinked (the checkpoint lives on until its last close).
    pub unlinked: bool,
    /// Whether the directory named the primary knowing that no replica holds any of the
    /// checkpoint's state (every copy was lost, and nobody that left the set held any):
    /// the primary starts the checkpoint over from no sections instead of giving the
    /// role back for a replica made empty.
    pub from_nothing: bool,
}

/// One section in a [`RemoteResult::Sections`] listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionEntry {
    /// The section id.
    pub id: Vec<u8>,
    /// The expiration time in nanoseconds (`SA_TIME_END` for none).
    pub expiration: i64,
    /// The size of the section's data, in bytes.
    pub size: u64,
    /// The time of the last update, in nanoseconds.
    pub last_update: i64,
    /// The `SaCkptSectionStateT` value.
    pub state: u8,
}

/// One change in a [`RemoteResult::Changes`]: a write, an overwrite or a section
/// creation, as the arrival callback reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrivalItem {
    /// Its seq in the primary's journal.
    pub seq: u64,
    /// Who made it, as the primary's journal tells writers apart (agent and write tag):
    /// equal for consecutive changes of one writer, opaque otherwise.
    pub writer: u64,
    /// The section id.
    pub id: Vec<u8>,
    /// The byte offset written (0 for an overwrite or a creation).
    pub offset: u64,
    /// The bytes written (for an overwrite or a creation, the section's new size).
    pub size: u64,
}

/// One element of a [`RemoteOp::Write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteElem {
    /// The section id.
    pub id: Vec<u8>,
    /// The offset in the section to write at.
    pub offset: u64,
    /// The bytes to write.
    pub data: Vec<u8>,
}

/// One element of a [`RemoteOp::Read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadElem {
    /// The section id.
    pub id: Vec<u8>,
    /// The offset in the section to read from.
    pub offset: u64,
    /// The number of bytes to read.
    pub size: u64,
}

/// A directory operation, carried by [`Frame::Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirOp {
    /// Tag 1: open (and maybe create) a checkpoint by name for a node.
    Open {
        /// The checkpoint's name.
        name: String,
        /// The creation attributes, if the open may create the checkpoint.
        attrs: Option<Attrs>,
        /// The `SA_CKPT_CHECKPOINT_*` open flags.
        flags: u32,
        /// The node that opens.
        node: u32,
    },
    /// Tag 2: a node closes one open of a checkpoint.
    Close {
        /// The checkpoint instance.
        instance: u64,
        /// The node that closes.
        node: u32,
    },
    /// Tag 3: unlink a checkpoint's name.
    Unlink {
        /// The checkpoint's name.
        name: String,
    },
    /// Tag 4: change a checkpoint's retention duration.
    SetRetention {
        /// The checkpoint instance.
        instance: u64,
        /// The new retention duration, in nanoseconds.
        retention: i64,
    },
    /// Tag 5: make a node's replica the active one (`saCkptActiveReplicaSet`).
    SetActive {
        /// The checkpoint instance.
        instance: u64,
        /// The node whose replica becomes active.
        node: u32,
    },
    /// Tag 6: the primary's node asks to drop a replica that does not acknowledge from the
    /// checkpoint's replica set (which gives the checkpoint a new term).
    Evict {
        /// The checkpoint instance.
        instance: u64,
        /// The node whose replica is dropped.
        node: u32,
        /// The checkpoint term the requester is primary in.
        term: u64,
    },
    /// Tag 8: node `node`'s agents hold `count` opens of the checkpoint: the table's count
    /// for that node becomes `count`. The node's daemon sends it when the table and its
    /// agents disagree (the table lost the node's opens while it was away).
    Opens {
        /// The checkpoint instance.
        instance: u64,
        /// The node whose opens these are.
        node: u32,
        /// How many its agents hold.
        count: u32,
    },
    /// Tag 7: a node's replica does not hold the checkpoint's state (it was lost with the
    /// node's tmpfs and made anew): the directory keeps the node as a replica that must
    /// resync before it can be promoted, and when it was named primary names another.
    Resign {
        /// The checkpoint instance.
        instance: u64,
        /// The resigning node (the requester).
        node: u32,
        /// The checkpoint term it was named primary in.
        term: u64,
    },
}

/// The leader director's answer to a [`DirOp`], carried by [`Frame::Reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirReply {
    /// Tag 1: the operation was applied.
    Done,
    /// Tag 2: the checkpoint is open; here is its placement.
    Opened {
        /// The checkpoint's placement.
        ckpt: CkptAssign,
    },
    /// Tag 3: the operation failed.
    Failed {
        /// The `SaAisErrorT` value.
        code: u32,
    },
    /// Tag 4: the receiver is not the leader director.
    NotLeader {
        /// The leader, if the receiver knows it.
        leader: Option<u32>,
    },
}

/// One change in a [`Frame::Diff`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffOp {
    /// Tag 1: create a section, or replace a whole section.
    Put {
        /// The section id.
        id: Vec<u8>,
        /// The expiration time in nanoseconds.
        expiration: i64,
        /// The section's whole data.
        data: Vec<u8>,
    },
    /// Tag 2: write bytes into a section.
    Write {
        /// The section id.
        id: Vec<u8>,
        /// The offset in the section.
        offset: u64,
        /// The bytes written.
        data: Vec<u8>,
    },
    /// Tag 3: delete a section.
    Delete {
        /// The section id.
        id: Vec<u8>,
    },
    /// Tag 4: change a section's expiration time.
    Expire {
        /// The section id.
        id: Vec<u8>,
        /// The new expiration time in nanoseconds.
        expiration: i64,
    },
    /// Tag 5: delete every section not listed (closes a resync).
    Retain {
        /// The ids of the sections to keep.
        ids: Vec<Vec<u8>>,
    },
}

impl DiffOp {
    /// The op borrowed: what [`DiffRef`] holds and the replica's applier takes.
    pub fn as_ref(&self) -> DiffOpRef<'_> {
        match self {
            Self::Put {
                id,
                expiration,
                data,
            } => DiffOpRef::Put {
                id,
                expiration: *expiration,
                data,
            },
            Self::Write { id, offset, data } => DiffOpRef::Write {
                id,
                offset: *offset,
                data,
            },
            Self::Delete { id } => DiffOpRef::Delete { id },
            Self::Expire { id, expiration } => DiffOpRef::Expire {
                id,
                expiration: *expiration,
            },
            Self::Retain { ids } => DiffOpRef::Retain {
                ids: ids.iter().map(Vec::as_slice).collect(),
            },
        }
    }
}

/// A [`DiffOp`] whose byte strings are borrowed from the frame it was decoded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiffOpRef<'a> {
    /// [`DiffOp::Put`].
    Put {
        /// The section id.
        id: &'a [u8],
        /// The expiration time in nanoseconds.
        expiration: i64,
        /// The section's whole data.
        data: &'a [u8],
    },
    /// [`DiffOp::Write`].
    Write {
        /// The section id.
        id: &'a [u8],
        /// The offset in the section.
        offset: u64,
        /// The bytes written.
        data: &'a [u8],
    },
    /// [`DiffOp::Delete`].
    Delete {
        /// The section id.
        id: &'a [u8],
    },
    /// [`DiffOp::Expire`].
    Expire {
        /// The section id.
        id: &'a [u8],
        /// The new expiration time in nanoseconds.
        expiration: i64,
    },
    /// [`DiffOp::Retain`].
    Retain {
        /// The ids of the sections to keep.
        ids: Vec<&'a [u8]>,
    },
}

impl<'a> DiffOpRef<'a> {
    /// Reads one op (tag, then fields), borrowing its byte strings from the input.
    pub fn decode_from(dec: &mut Dec<'a>) -> Result<Self, WireError> {
        Ok(match dec.u8()? {
            1 => Self::Put {
                id: dec.bytes()?,
                expiration: dec.i64()?,
                data: dec.bytes()?,
            },
            2 => Self::Write {
                id: dec.bytes()?,
                offset: dec.u64()?,
                data: dec.bytes()?,
            },
            3 => Self::Delete { id: dec.bytes()? },
            4 => Self::Expire {
                id: dec.bytes()?,
                expiration: dec.i64()?,
            },
            5 => Self::Retain {
                ids: dec.vec(MIN_BYTES, Dec::bytes)?,
            },
            tag => {
                return Err(WireError::UnknownTag {
                    what: "DiffOp",
                    tag,
                });
            }
        })
    }

    /// The op with its byte strings copied.
    pub fn to_owned(&self) -> DiffOp {
        match *self {
            Self::Put {
                id,
                expiration,
                data,
            } => DiffOp::Put {
                id: id.to_vec(),
                expiration,
                data: data.to_vec(),
            },
            Self::Write { id, offset, data } => DiffOp::Write {
                id: id.to_vec(),
                offset,
                data: data.to_vec(),
            },
            Self::Delete { id } => DiffOp::Delete { id: id.to_vec() },
            Self::Expire { id, expiration } => DiffOp::Expire {
                id: id.to_vec(),
                expiration,
            },
            Self::Retain { ref ids } => DiffOp::Retain {
                ids: ids.iter().map(|id| id.to_vec()).collect(),
            },
        }
    }
}

/// A [`Frame::Diff`] decoded without copying its ops' bytes: ids and data borrow from the
/// frame body, so a replica applies them straight from the received bytes.
///
/// It accepts exactly the bodies [`Frame::decode`] decodes to a `Diff`, with the same
/// checks and errors (tags, counts against the bytes left, no trailing bytes); what it
/// allocates is one `Vec` of ops (and of ids for a `Retain`), bounded by the frame's
/// length as for `Frame::decode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffRef<'a> {
    /// The checkpoint instance.
    pub instance: u64,
    /// The replication term of the primary that sent the diff.
    pub term: u64,
    /// The seq the replica must already have applied for `ops` to follow on.
    pub base: u64,
    /// The seq the replica has reached once it has applied `ops`.
    pub mark: u64,
    /// The changes, applied in order.
    pub ops: Vec<DiffOpRef<'a>>,
}

impl<'a> DiffRef<'a> {
    /// Decodes a frame body (kind byte first) if it is a `Diff`: `Ok(None)` for a body of
    /// another kind (or an empty one), which [`Frame::decode`] takes.
    pub fn decode(body: &'a [u8]) -> Result<Option<Self>, WireError> {
        let Some((&KIND_DIFF, fields)) = body.split_first() else {
            return Ok(None);
        };
        let mut dec = Dec::new(fields);
        let diff = Self {
            instance: dec.u64()?,
            term: dec.u64()?,
            base: dec.u64()?,
            mark: dec.u64()?,
            ops: dec.vec(MIN_DIFF_OP, DiffOpRef::decode_from)?,
        };
        dec.finish()?;
        Ok(Some(diff))
    }

    /// The owned frame.
    pub fn to_frame(&self) -> Frame {
        Frame::Diff {
            instance: self.instance,
            term: self.term,
            base: self.base,
            mark: self.mark,
            ops: self.ops.iter().map(DiffOpRef::to_owned).collect(),
        }
    }
}

/// Builds a [`Frame::Diff`] op by op straight into its encoding, so a primary copies each
/// section's bytes once, from the replica into the buffer that goes to the network.
///
/// [`DiffWriter::finish`] returns the frame body (kind byte first, no length prefix: what
/// [`Frame::decode`] and [`DiffRef::decode`] take and the mesh sends), byte for byte what
/// [`Frame::encode`] writes after the prefix for the same frame. `mark` and the op count
/// are filled in at the end.
pub struct DiffWriter {
    buf: Vec<u8>,
    ops: usize,
}

/// Offset of `mark` in a `Diff` body: kind, instance, term, base.
const DIFF_MARK_AT: usize = 1 + 8 + 8 + 8;
/// Offset of the op count in a `Diff` body.
const DIFF_COUNT_AT: usize = DIFF_MARK_AT + 8;

impl DiffWriter {
    /// Bytes of a `Diff` body without ops.
    pub const EMPTY_LEN: usize = DIFF_COUNT_AT + 4;

    /// Starts a diff of `instance` in `term` following on `base`, with room reserved for
    /// `capacity` bytes of body.
    pub fn new(instance: u64, term: u64, base: u64, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(Self::EMPTY_LEN));
        let mut enc = Enc::new(&mut buf);
        enc.put_u8(KIND_DIFF);
        enc.put_u64(instance);
        enc.put_u64(term);
        enc.put_u64(base);
        enc.put_u64(0); // mark, set by `finish`
        enc.put_u32(0); // op count, set by `finish`
        Self { buf, ops: 0 }
    }

    /// Bytes of the body so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no op was added yet.
    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// Ops added so far.
    pub fn ops(&self) -> usize {
        self.ops
    }

    /// Appends [`DiffOp::Put`].
    ///
    /// # Panics
    ///
    /// If `id` or `data` is longer than `u32::MAX`.
    pub fn put(&mut self, id: &[u8], expiration: i64, data: &[u8]) {
        self.buf.reserve(1 + 4 + id.len() + 8 + 4 + data.len());
        let mut enc = Enc::new(&mut self.buf);
        enc.put_u8(1);
        enc.put_bytes(id);
        enc.put_i64(expiration);
        enc.put_bytes(data);
        self.ops += 1;
    }

    /// Appends [`DiffOp::Write`].
    ///
    /// # Panics
    ///
    /// If `id` or `data` is longer than `u32::MAX`.
    pub fn write(&mut self, id: &[u8], offset: u64, data: &[u8]) {
        self.buf.reserve(1 + 4 + id.len() + 8 + 4 + data.len());
        let mut enc = Enc::new(&mut self.buf);
        enc.put_u8(2);
        enc.put_bytes(id);
        enc.put_u64(offset);
        enc.put_bytes(data);
        self.ops += 1;
    }

    /// Appends [`DiffOp::Delete`].
    pub fn delete(&mut self, id: &[u8]) {
        let mut enc = Enc::new(&mut self.buf);
        enc.put_u8(3);
        enc.put_bytes(id);
        self.ops += 1;
    }

    /// Appends [`DiffOp::Expire`].
    pub fn expire(&mut self, id: &[u8], expiration: i64) {
        let mut enc = Enc::new(&mut self.buf);
        enc.put_u8(4);
        enc.put_bytes(id);
        enc.put_i64(expiration);
        self.ops += 1;
    }

    /// Appends [`DiffOp::Retain`].
    ///
    /// # Panics
    ///
    /// If there are more than `u32::MAX` ids.
    pub fn retain<I: AsRef<[u8]>>(&mut self, ids: &[I]) {
        let mut enc = Enc::new(&mut self.buf);
        enc.put_u8(5);
        enc.put_u32(wire_u32(ids.len(), "element count"));
        for id in ids {
            enc.put_bytes(id.as_ref());
        }
        self.ops += 1;
    }

    /// Appends `op`.
    pub fn op(&mut self, op: &DiffOpRef<'_>) {
        match op {
            DiffOpRef::Put {
                id,
                expiration,
                data,
            } => self.put(id, *expiration, data),
            DiffOpRef::Write { id, offset, data } => self.write(id, *offset, data),
            DiffOpRef::Delete { id } => self.delete(id),
            DiffOpRef::Expire { id, expiration } => self.expire(id, *expiration),
            DiffOpRef::Retain { ids } => self.retain(ids),
        }
    }

    /// The frame body with `mark` and the op count in place.
    ///
    /// # Panics
    ///
    /// If more than `u32::MAX` ops were added.
    pub fn finish(mut self, mark: u64) -> Vec<u8> {
        self.buf[DIFF_MARK_AT..DIFF_COUNT_AT].copy_from_slice(&mark.to_le_bytes());
        self.buf[DIFF_COUNT_AT..Self::EMPTY_LEN]
            .copy_from_slice(&wire_u32(self.ops, "element count").to_le_bytes());
        self.buf
    }
}

impl fmt::Debug for DiffWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiffWriter")
            .field("len", &self.buf.len())
            .field("ops", &self.ops)
            .finish()
    }
}

/// A checkpoint operation forwarded to another node, carried by [`Frame::Remote`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteOp {
    /// Tag 1: `saCkptCheckpointWrite`.
    Write {
        /// The elements, written in order.
        elems: Vec<WriteElem>,
    },
    /// Tag 2: `saCkptSectionOverwrite`.
    Overwrite {
        /// The section id.
        id: Vec<u8>,
        /// The section's new data.
        data: Vec<u8>,
    },
    /// Tag 3: `saCkptCheckpointRead`.
    Read {
        /// The elements to read.
        elems: Vec<ReadElem>,
    },
    /// Tag 4: `saCkptSectionCreate`.
    CreateSection {
        /// The section id, or `None` for the default section.
        id: Option<Vec<u8>>,
        /// The expiration time in nanoseconds.
        expiration: i64,
        /// The initial data.
        data: Vec<u8>,
    },
    /// Tag 5: `saCkptSectionDelete`.
    DeleteSection {
        /// The section id.
        id: Vec<u8>,
    },
    /// Tag 6: `saCkptSectionExpirationTimeSet`.
    SetExpiration {
        /// The section id.
        id: Vec<u8>,
        /// The new expiration time in nanoseconds.
        expiration: i64,
    },
    /// Tag 7: `saCkptCheckpointSynchronize`.
    Synchronize {
        /// The timeout in nanoseconds.
        timeout_ns: i64,
        /// Writes the caller's handle made directly on a primary replica and that no
        /// synchronize confirmed yet, as `(term, seq)`: the highest commit seq per term.
        /// The primary answers `SA_AIS_ERR_FAILED_OPERATION` when its state may lack one
        /// (it was accepted by a primary deposed before it reached the others).
        after: Vec<(u64, u64)>,
    },
    /// Tag 8: list sections (`saCkptSectionIterationInitialize` and its iteration).
    Sections {
        /// The `SaCkptSectionsChosenT` filter.
        filter: u8,
        /// The expiration time the filter compares against, in nanoseconds.
        time: i64,
    },
    /// Tag 9: `saCkptCheckpointStatusGet`.
    Status,
    /// Tag 10: the arrivals the primary's journal holds after `since` (arrival callbacks
    /// on a node without a replica). Answered at once when there are some, when `epoch`
    /// is not the primary's current one (0 asks where the journal is), or when the
    /// journal lapped `since`; otherwise when the next change comes, or after `wait_ms`
    /// with none.
    Changes {
        /// The primary term `since` counts in (0: none yet).
        epoch: u64,
        /// The last seq already seen.
        since: u64,
        /// How long the primary may hold the question, in milliseconds.
        wait_ms: u32,
    },
}

/// The answer to a [`RemoteOp`], carried by [`Frame::RemoteReply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteResult {
    /// Tag 1: the operation succeeded.
    Done,
    /// Tag 2: the operation failed.
    Failed {
        /// The `SaAisErrorT` value.
        code: u32,
        /// The index of the failing element, for element-wise operations.
        index: Option<u32>,
    },
    /// Tag 3: the data read, one item per [`ReadElem`].
    Data {
        /// The bytes read for each element.
        items: Vec<Vec<u8>>,
    },
    /// Tag 4: the section was created.
    Created {
        /// The new section's id.
        id: Vec<u8>,
    },
    /// Tag 5: the section listing.
    Sections {
        /// The sections the filter chose.
        items: Vec<SectionEntry>,
    },
    /// Tag 6: the checkpoint's status.
    Status {
        /// The number of sections.
        sections: u32,
        /// The bytes of section data in use.
        memory_used: u64,
    },
    /// Tag 7: a write applied by the primary of an asynchronous checkpoint, at `seq` of
    /// its journal in `term` (what a later synchronize names in its `after`).
    Applied {
        /// The primary's term.
        term: u64,
        /// The primary's commit seq after the write.
        seq: u64,
    },
    /// Tag 8: the answer to [`RemoteOp::Changes`].
    Changes {
        /// The primary's term, which the seqs count in.
        epoch: u64,
        /// The seq the next question starts after.
        upto: u64,
        /// Changes after the asked seq were lost (the journal lapped it, or `epoch`
        /// changed): read every section again.
        lapped: bool,
        /// The arrivals after the asked seq, up to `upto`, oldest first.
        items: Vec<ArrivalItem>,
    },
}

impl Frame {
    /// The frame's kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Hello { .. } => KIND_HELLO,
            Self::Welcome { .. } => KIND_WELCOME,
            Self::Descriptors { .. } => KIND_DESCRIPTORS,
            Self::ListDescriptors => KIND_LIST_DESCRIPTORS,
            Self::Request { .. } => KIND_REQUEST,
            Self::Reply { .. } => KIND_REPLY,
            Self::DirState { .. } => KIND_DIR_STATE,
            Self::Assign { .. } => KIND_ASSIGN,
            Self::Unassign { .. } => KIND_UNASSIGN,
            Self::Leader { .. } => KIND_LEADER,
            Self::Positions { .. } => KIND_POSITIONS,
            Self::Vote { .. } => KIND_VOTE,
            Self::VoteReply { .. } => KIND_VOTE_REPLY,
            Self::LeaderAck { .. } => KIND_LEADER_ACK,
            Self::Diff { .. } => KIND_DIFF,
            Self::Ack { .. } => KIND_ACK,
            Self::Stale { .. } => KIND_STALE,
            Self::Remote { .. } => KIND_REMOTE,
            Self::RemoteReply { .. } => KIND_REMOTE_REPLY,
        }
    }

    /// The exact number of bytes [`Frame::encode`] appends, length prefix included, computed
    /// without encoding.
    pub fn encoded_len(&self) -> usize {
        PREFIX_LEN + 1 + self.fields_len()
    }

    /// Appends the complete frame to `out`: length prefix, kind byte and body.
    ///
    /// `out` is reserved once for [`Frame::encoded_len`] bytes; nothing else allocates.
    ///
    /// # Panics
    ///
    /// If the frame, or one of its byte strings or lists, is longer than `u32::MAX` (4 GiB):
    /// the format cannot express it. Senders keep frames under the receivers' `max_frame`,
    /// far below that.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let total = self.encoded_len();
        out.reserve(total);
        let start = out.len();
        let mut enc = Enc::new(out);
        enc.put_u32(wire_u32(total - PREFIX_LEN, "frame length"));
        enc.put_u8(self.kind());
        self.encode_fields(&mut enc);
        debug_assert_eq!(
            out.len() - start,
            total,
            "encoded_len disagrees with encode"
        );
    }

    /// Decodes one frame body, starting at the kind byte (the length prefix already
    /// removed, as [`split_frame`] returns it).
    pub fn decode(frame: &[u8]) -> Result<Self, WireError> {
        if frame.is_empty() {
            return Err(WireError::EmptyFrame);
        }
        let mut dec = Dec::new(frame);
        let frame = match dec.u8()? {
            KIND_HELLO => Self::Hello {
                version: dec.u16()?,
                node: dec.u32()?,
                incarnation: dec.u64()?,
            },
            KIND_WELCOME => Self::Welcome {
                node: dec.u32()?,
                incarnation: dec.u64()?,
                shm_dir: dec.string()?,
                sealed: dec.bool()?,
            },
            KIND_DESCRIPTORS => {
                let instances = dec.vec(8, Dec::u64)?;
                if instances.len() > MAX_DESCRIPTORS {
                    return Err(WireError::CountTooLarge);
                }
                Self::Descriptors {
                    instances,
                    last: dec.bool()?,
                }
            }
            KIND_LIST_DESCRIPTORS => Self::ListDescriptors,
            KIND_REQUEST => Self::Request {
                req: dec.decode()?,
                op: dec.decode()?,
            },
            KIND_REPLY => Self::Reply {
                req: dec.decode()?,
                result: dec.decode()?,
            },
            KIND_DIR_STATE => Self::DirState {
                term: dec.u64()?,
                leader: dec.u32()?,
                state: dec.byte_vec()?,
            },
            KIND_ASSIGN => Self::Assign {
                dir_term: dec.u64()?,
                ckpt: dec.decode()?,
            },
            KIND_UNASSIGN => Self::Unassign {
                dir_term: dec.u64()?,
                instance: dec.u64()?,
            },
            KIND_LEADER => Self::Leader {
                dir_term: dec.u64()?,
                leader: dec.u32()?,
                members: dec.vec(MIN_U32, Dec::u32)?,
                sent: dec.u64()?,
            },
            KIND_POSITIONS => Self::Positions {
                node: dec.u32()?,
                items: dec.vec(MIN_POSITION, |dec| Ok((dec.u64()?, dec.u64()?, dec.u64()?)))?,
            },
            KIND_VOTE => Self::Vote {
                term: dec.u64()?,
                version: TableVersion::decode_from(&mut dec)?,
            },
            KIND_VOTE_REPLY => Self::VoteReply {
                term: dec.u64()?,
                granted: dec.bool()?,
                state: dec.byte_vec()?,
            },
            KIND_LEADER_ACK => Self::LeaderAck {
                dir_term: dec.u64()?,
                sent: dec.u64()?,
                version: TableVersion::decode_from(&mut dec)?,
            },
            KIND_DIFF => Self::Diff {
                instance: dec.u64()?,
                term: dec.u64()?,
                base: dec.u64()?,
                mark: dec.u64()?,
                ops: dec.vec(MIN_DIFF_OP, Dec::decode)?,
            },
            KIND_ACK => Self::Ack {
                instance: dec.u64()?,
                term: dec.u64()?,
                seq: dec.u64()?,
            },
            KIND_STALE => Self::Stale {
                instance: dec.u64()?,
                term: dec.u64()?,
            },
            KIND_REMOTE => Self::Remote {
                req: dec.decode()?,
                instance: dec.u64()?,
                op: dec.decode()?,
            },
            KIND_REMOTE_REPLY => Self::RemoteReply {
                req: dec.decode()?,
                result: dec.decode()?,
            },
            kind => return Err(WireError::UnknownKind(kind)),
        };
        dec.finish()?;
        Ok(frame)
    }

    /// Bytes of the body after the kind byte.
    fn fields_len(&self) -> usize {
        match self {
            Self::Hello { .. } => 2 + 4 + 8,
            Self::Welcome { shm_dir, .. } => 4 + 8 + 4 + shm_dir.len() + 1,
            Self::Descriptors { instances, .. } => 4 + 8 * instances.len() + 1,
            Self::ListDescriptors => 0,
            Self::Request { req, op } => req.wire_len() + op.wire_len(),
            Self::Reply { req, result } => req.wire_len() + result.wire_len(),
            Self::DirState { state, .. } => 8 + 4 + bytes_len(state),
            Self::Assign { ckpt, .. } => 8 + ckpt.wire_len(),
            Self::Unassign { .. } => 8 + 8,
            Self::Leader { members, .. } => 8 + 4 + 4 + 4 * members.len() + 8,
            Self::Vote { .. } => 8 + TableVersion::LEN,
            Self::VoteReply { state, .. } => 8 + 1 + bytes_len(state),
            Self::LeaderAck { .. } => 8 + 8 + TableVersion::LEN,
            Self::Positions { items, .. } => 4 + 4 + MIN_POSITION * items.len(),
            Self::Diff { ops, .. } => 8 * 4 + 4 + ops.iter().map(DiffOp::wire_len).sum::<usize>(),
            Self::Ack { .. } => 8 * 3,
            Self::Stale { .. } => 8 * 2,
            Self::Remote { req, op, .. } => req.wire_len() + 8 + op.wire_len(),
            Self::RemoteReply { req, result } => req.wire_len() + result.wire_len(),
        }
    }

    /// Writes the body after the kind byte.
    fn encode_fields(&self, enc: &mut Enc<'_>) {
        match self {
            Self::Hello {
                version,
                node,
                incarnation,
            } => {
                enc.put_u16(*version);
                enc.put_u32(*node);
                enc.put_u64(*incarnation);
            }
            Self::Welcome {
                node,
                incarnation,
                shm_dir,
                sealed,
            } => {
                enc.put_u32(*node);
                enc.put_u64(*incarnation);
                enc.put_str(shm_dir);
                enc.put_bool(*sealed);
            }
            Self::Descriptors { instances, last } => {
                enc.put_vec(instances, |enc, i| enc.put_u64(*i));
                enc.put_bool(*last);
            }
            Self::ListDescriptors => {}
            Self::Request { req, op } => {
                enc.put(req);
                enc.put(op);
            }
            Self::Reply { req, result } => {
                enc.put(req);
                enc.put(result);
            }
            Self::DirState {
                term,
                leader,
                state,
            } => {
                enc.put_u64(*term);
                enc.put_u32(*leader);
                enc.put_bytes(state);
            }
            Self::Assign { dir_term, ckpt } => {
                enc.put_u64(*dir_term);
                enc.put(ckpt);
            }
            Self::Unassign { dir_term, instance } => {
                enc.put_u64(*dir_term);
                enc.put_u64(*instance);
            }
            Self::Leader {
                dir_term,
                leader,
                members,
                sent,
            } => {
                enc.put_u64(*dir_term);
                enc.put_u32(*leader);
                enc.put_vec(members, |enc, node| enc.put_u32(*node));
                enc.put_u64(*sent);
            }
            Self::Vote { term, version } => {
                enc.put_u64(*term);
                version.encode_to(enc);
            }
            Self::VoteReply {
                term,
                granted,
                state,
            } => {
                enc.put_u64(*term);
                enc.put_bool(*granted);
                enc.put_bytes(state);
            }
            Self::LeaderAck {
                dir_term,
                sent,
                version,
            } => {
                enc.put_u64(*dir_term);
                enc.put_u64(*sent);
                version.encode_to(enc);
            }
            Self::Positions { node, items } => {
                enc.put_u32(*node);
                enc.put_vec(items, |enc, &(instance, term, seq)| {
                    enc.put_u64(instance);
                    enc.put_u64(term);
                    enc.put_u64(seq);
                });
            }
            Self::Diff {
                instance,
                term,
                base,
                mark,
                ops,
            } => {
                enc.put_u64(*instance);
                enc.put_u64(*term);
                enc.put_u64(*base);
                enc.put_u64(*mark);
                enc.put_vec(ops, Enc::put);
            }
            Self::Ack {
                instance,
                term,
                seq,
            } => {
                enc.put_u64(*instance);
                enc.put_u64(*term);
                enc.put_u64(*seq);
            }
            Self::Stale { instance, term } => {
                enc.put_u64(*instance);
                enc.put_u64(*term);
            }
            Self::Remote { req, instance, op } => {
                enc.put(req);
                enc.put_u64(*instance);
                enc.put(op);
            }
            Self::RemoteReply { req, result } => {
                enc.put(req);
                enc.put(result);
            }
        }
    }
}

/// Splits the first frame off `buf`, without allocating.
///
/// Returns `Ok(None)` while `buf` holds less than a whole frame, and `Ok(Some((total,
/// body)))` once it holds one: `total` is the bytes the frame takes, prefix included, and
/// `body` starts at the kind byte (the input of [`Frame::decode`]). A length of zero or above
/// `max_frame` is an error as soon as the 4 prefix bytes are there, before the body arrives.
pub fn split_frame(buf: &[u8], max_frame: usize) -> Result<Option<(usize, &[u8])>, WireError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<PREFIX_LEN>() else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_le_bytes(*prefix)).unwrap_or(usize::MAX);
    if len == 0 {
        return Err(WireError::EmptyFrame);
    }
    if len > max_frame {
        return Err(WireError::TooLong {
            len,
            max: max_frame,
        });
    }
    Ok(rest.get(..len).map(|body| (PREFIX_LEN + len, body)))
}

/// Splits a byte stream into frames.
///
/// Push bytes as they arrive and call [`FrameReader::next`] until it returns `Ok(None)`. The
/// reader buffers at most one partial frame plus what was pushed since the last call to
/// `next`; it never reserves space for a frame on the word of its length prefix alone.
///
/// A length prefix of zero or above `max_frame` makes the stream unreadable (the frame
/// boundaries are lost): the reader drops its buffer, ignores later pushes and returns the
/// same error from every later `next`. A whole frame that fails to decode is consumed, so the
/// caller may go on, though on a peer connection any error closes the connection.
pub struct FrameReader {
    /// Bytes received; those before `start` are consumed.
    buf: Vec<u8>,
    /// Offset in `buf` of the first byte not yet consumed.
    start: usize,
    /// The largest frame length accepted (the bytes after the prefix).
    max_frame: usize,
    /// The length error that made the stream unreadable.
    failed: Option<WireError>,
}

impl FrameReader {
    /// A reader accepting frames of at most `max_frame` bytes after the length prefix
    /// (usually [`DEFAULT_MAX_FRAME`]).
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame,
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or why the next frame is
    /// invalid.
    #[expect(
        clippy::should_implement_trait,
        reason = "Ok(None) means \"not yet\", not the end, and errors are not items"
    )]
    pub fn next(&mut self) -> Result<Option<Frame>, WireError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let pending = self.buf.get(self.start..).unwrap_or_default();
        match split_frame(pending, self.max_frame) {
            Ok(Some((total, body))) => {
                let frame = Frame::decode(body);
                self.start += total;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                frame.map(Some)
            }
            Ok(None) => {
                // Move the partial frame to the front once, so the buffer holds no more than
                // one frame while the rest of it arrives.
                if self.start > 0 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                Ok(None)
            }
            Err(err) => {
                self.failed = Some(err);
                self.buf = Vec::new();
                self.start = 0;
                Err(err)
            }
        }
    }

    /// The bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The largest frame length this reader accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buffered())
            .field("max_frame", &self.max_frame)
            .field("failed", &self.failed)
            .finish()
    }
}

/// Appends fields to a buffer in the wire encoding.
///
/// The caller reserves; every `put_*` appends with `extend_from_slice`.
pub struct Enc<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Enc<'a> {
    /// An encoder appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out }
    }

    /// Appends a `u8`.
    pub fn put_u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// Appends a `u16`, little-endian.
    pub fn put_u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a `u32`, little-endian.
    pub fn put_u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a `u64`, little-endian.
    pub fn put_u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends an `i64`, little-endian two's complement.
    pub fn put_i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a `bool` as one byte, 0 or 1.
    pub fn put_bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    /// Appends `bytes`: a `u32` length, then the bytes.
    ///
    /// # Panics
    ///
    /// If `v` is longer than `u32::MAX`.
    pub fn put_bytes(&mut self, v: &[u8]) {
        self.put_u32(wire_u32(v.len(), "byte string length"));
        self.out.extend_from_slice(v);
    }

    /// Appends a `str`: its UTF-8 bytes as `bytes`.
    ///
    /// # Panics
    ///
    /// If `v` is longer than `u32::MAX` bytes.
    pub fn put_str(&mut self, v: &str) {
        self.put_bytes(v.as_bytes());
    }

    /// Appends an `Option`: tag 0, or tag 1 followed by what `put` appends for the value.
    pub fn put_option<T: ?Sized>(&mut self, v: Option<&T>, put: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.put_u8(0),
            Some(v) => {
                self.put_u8(1);
                put(self, v);
            }
        }
    }

    /// Appends a `Vec`: a `u32` count, then what `put` appends for each item.
    ///
    /// # Panics
    ///
    /// If `items` has more than `u32::MAX` elements.
    pub fn put_vec<T>(&mut self, items: &[T], mut put: impl FnMut(&mut Self, &T)) {
        self.put_u32(wire_u32(items.len(), "element count"));
        for item in items {
            put(self, item);
        }
    }

    /// Appends a composite value ([`Encode`]).
    pub fn put<T: Encode + ?Sized>(&mut self, v: &T) {
        v.encode_to(self);
    }
}

impl fmt::Debug for Enc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enc").field("len", &self.out.len()).finish()
    }
}

/// Reads fields in the wire encoding from a byte slice.
///
/// Getters return [`WireError::Truncated`] rather than read past the end; those of single
/// fields (numbers, `bool`, `bytes`, `str`) consume nothing when they fail. Call
/// [`Dec::finish`] at the end to reject trailing bytes.
#[derive(Clone)]
pub struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    /// A decoder reading `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Succeeds if everything has been read, and fails with [`WireError::TrailingBytes`]
    /// otherwise.
    pub fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }

    /// Reads `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.buf = rest;
        Ok(*head)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|[v]| v)
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, WireError> {
        self.array().map(i64::from_le_bytes)
    }

    /// Reads a `bool`: one byte, 0 or 1.
    pub fn bool(&mut self) -> Result<bool, WireError> {
        let [v] = self.array::<1>()?;
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::BadBool(v)),
        }
    }

    /// Reads `bytes` (a `u32` length, then the bytes), borrowing them from the input.
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let mut peek = self.clone();
        let len = usize::try_from(peek.u32()?).map_err(|_| WireError::Truncated)?;
        let (bytes, rest) = peek.buf.split_at_checked(len).ok_or(WireError::Truncated)?;
        self.buf = rest;
        Ok(bytes)
    }

    /// Reads `bytes` into a new `Vec` (exactly as long as the bytes, which are in the input).
    pub fn byte_vec(&mut self) -> Result<Vec<u8>, WireError> {
        self.bytes().map(<[u8]>::to_vec)
    }

    /// Reads a `str`, borrowing it from the input.
    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let mut peek = self.clone();
        let s = core::str::from_utf8(peek.bytes()?).map_err(|_| WireError::BadUtf8)?;
        *self = peek;
        Ok(s)
    }

    /// Reads a `str` into a new `String`.
    pub fn string(&mut self) -> Result<String, WireError> {
        self.str().map(str::to_owned)
    }

    /// Reads an `Option`: tag 0, or tag 1 followed by what `read` reads.
    pub fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            tag => Err(WireError::UnknownTag {
                what: "Option",
                tag,
            }),
        }
    }

    /// Reads a `Vec` count, checking that the bytes left could hold that many items of at
    /// least `min_item_len` bytes each ([`WireError::CountTooLarge`] otherwise).
    pub fn count(&mut self, min_item_len: usize) -> Result<usize, WireError> {
        debug_assert!(min_item_len > 0, "every item takes at least one byte");
        let count = usize::try_from(self.u32()?).map_err(|_| WireError::CountTooLarge)?;
        if count > self.buf.len() / min_item_len.max(1) {
            return Err(WireError::CountTooLarge);
        }
        Ok(count)
    }

    /// Reads a `Vec`: a count (checked as [`Dec::count`] does, before anything is
    /// allocated), then that many items with `read`.
    pub fn vec<T>(
        &mut self,
        min_item_len: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let count = self.count(min_item_len)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(read(self)?);
        }
        Ok(items)
    }

    /// Reads a composite value ([`Decode`]).
    pub fn decode<T: Decode>(&mut self) -> Result<T, WireError> {
        T::decode_from(self)
    }
}

impl fmt::Debug for Dec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dec")
            .field("remaining", &self.buf.len())
            .finish()
    }
}

/// A composite value with a wire encoding, for embedding in other blobs with [`Enc::put`].
pub trait Encode {
    /// The exact number of bytes [`Encode::encode_to`] appends.
    fn wire_len(&self) -> usize;

    /// Appends the value's fields.
    fn encode_to(&self, enc: &mut Enc<'_>);
}

/// A composite value with a wire encoding, read with [`Dec::decode`].
pub trait Decode: Sized {
    /// Reads the value's fields.
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError>;
}

impl Encode for ReqId {
    fn wire_len(&self) -> usize {
        4 + 8 + 8
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_u32(self.node);
        enc.put_u64(self.incarnation);
        enc.put_u64(self.counter);
    }
}

impl Decode for ReqId {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            node: dec.u32()?,
            incarnation: dec.u64()?,
            counter: dec.u64()?,
        })
    }
}

impl Encode for Attrs {
    fn wire_len(&self) -> usize {
        4 + 8 + 8 + 4 + 8 + 8
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_u32(self.creation_flags);
        enc.put_u64(self.checkpoint_size);
        enc.put_i64(self.retention);
        enc.put_u32(self.max_sections);
        enc.put_u64(self.max_section_size);
        enc.put_u64(self.max_section_id_size);
    }
}

impl Decode for Attrs {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            creation_flags: dec.u32()?,
            checkpoint_size: dec.u64()?,
            retention: dec.i64()?,
            max_sections: dec.u32()?,
            max_section_size: dec.u64()?,
            max_section_id_size: dec.u64()?,
        })
    }
}

impl Encode for CkptAssign {
    fn wire_len(&self) -> usize {
        8 + bytes_len(self.name.as_bytes())
            + self.attrs.wire_len()
            + 4
            + 4 * self.replicas.len()
            + option_len(self.primary.as_ref(), |_| 4)
            + 8
            + 1
            + 1
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_u64(self.instance);
        enc.put_str(&self.name);
        enc.put(&self.attrs);
        enc.put_vec(&self.replicas, |enc, node| enc.put_u32(*node));
        enc.put_option(self.primary.as_ref(), |enc, node| enc.put_u32(*node));
        enc.put_u64(self.term);
        enc.put_bool(self.unlinked);
        enc.put_bool(self.from_nothing);
    }
}

impl Decode for CkptAssign {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            instance: dec.u64()?,
            name: dec.string()?,
            attrs: dec.decode()?,
            replicas: dec.vec(MIN_U32, Dec::u32)?,
            primary: dec.option(Dec::u32)?,
            term: dec.u64()?,
            unlinked: dec.bool()?,
            from_nothing: dec.bool()?,
        })
    }
}

impl Encode for SectionEntry {
    fn wire_len(&self) -> usize {
        bytes_len(&self.id) + 8 + 8 + 8 + 1
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_bytes(&self.id);
        enc.put_i64(self.expiration);
        enc.put_u64(self.size);
        enc.put_i64(self.last_update);
        enc.put_u8(self.state);
    }
}

impl Decode for SectionEntry {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            id: dec.byte_vec()?,
            expiration: dec.i64()?,
            size: dec.u64()?,
            last_update: dec.i64()?,
            state: dec.u8()?,
        })
    }
}

impl Encode for ArrivalItem {
    fn wire_len(&self) -> usize {
        8 + 8 + bytes_len(&self.id) + 8 + 8
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_u64(self.seq);
        enc.put_u64(self.writer);
        enc.put_bytes(&self.id);
        enc.put_u64(self.offset);
        enc.put_u64(self.size);
    }
}

impl Decode for ArrivalItem {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            seq: dec.u64()?,
            writer: dec.u64()?,
            id: dec.byte_vec()?,
            offset: dec.u64()?,
            size: dec.u64()?,
        })
    }
}

impl Encode for WriteElem {
    fn wire_len(&self) -> usize {
        bytes_len(&self.id) + 8 + bytes_len(&self.data)
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_bytes(&self.id);
        enc.put_u64(self.offset);
        enc.put_bytes(&self.data);
    }
}

impl Decode for WriteElem {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            id: dec.byte_vec()?,
            offset: dec.u64()?,
            data: dec.byte_vec()?,
        })
    }
}

impl Encode for ReadElem {
    fn wire_len(&self) -> usize {
        bytes_len(&self.id) + 8 + 8
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        enc.put_bytes(&self.id);
        enc.put_u64(self.offset);
        enc.put_u64(self.size);
    }
}

impl Decode for ReadElem {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(Self {
            id: dec.byte_vec()?,
            offset: dec.u64()?,
            size: dec.u64()?,
        })
    }
}

impl Encode for DirOp {
    fn wire_len(&self) -> usize {
        1 + match self {
            Self::Open { name, attrs, .. } => {
                bytes_len(name.as_bytes()) + option_len(attrs.as_ref(), Attrs::wire_len) + 4 + 4
            }
            Self::Close { .. } => 8 + 4,
            Self::Unlink { name } => bytes_len(name.as_bytes()),
            Self::SetRetention { .. } => 8 + 8,
            Self::SetActive { .. } => 8 + 4,
            Self::Evict { .. } | Self::Resign { .. } => 8 + 4 + 8,
            Self::Opens { .. } => 8 + 4 + 4,
        }
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        match self {
            Self::Open {
                name,
                attrs,
                flags,
                node,
            } => {
                enc.put_u8(1);
                enc.put_str(name);
                enc.put_option(attrs.as_ref(), Enc::put);
                enc.put_u32(*flags);
                enc.put_u32(*node);
            }
            Self::Close { instance, node } => {
                enc.put_u8(2);
                enc.put_u64(*instance);
                enc.put_u32(*node);
            }
            Self::Unlink { name } => {
                enc.put_u8(3);
                enc.put_str(name);
            }
            Self::SetRetention {
                instance,
                retention,
            } => {
                enc.put_u8(4);
                enc.put_u64(*instance);
                enc.put_i64(*retention);
            }
            Self::SetActive { instance, node } => {
                enc.put_u8(5);
                enc.put_u64(*instance);
                enc.put_u32(*node);
            }
            Self::Evict {
                instance,
                node,
                term,
            } => {
                enc.put_u8(6);
                enc.put_u64(*instance);
                enc.put_u32(*node);
                enc.put_u64(*term);
            }
            Self::Resign {
                instance,
                node,
                term,
            } => {
                enc.put_u8(7);
                enc.put_u64(*instance);
                enc.put_u32(*node);
                enc.put_u64(*term);
            }
            Self::Opens {
                instance,
                node,
                count,
            } => {
                enc.put_u8(8);
                enc.put_u64(*instance);
                enc.put_u32(*node);
                enc.put_u32(*count);
            }
        }
    }
}

impl Decode for DirOp {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(match dec.u8()? {
            1 => Self::Open {
                name: dec.string()?,
                attrs: dec.option(Dec::decode)?,
                flags: dec.u32()?,
                node: dec.u32()?,
            },
            2 => Self::Close {
                instance: dec.u64()?,
                node: dec.u32()?,
            },
            3 => Self::Unlink {
                name: dec.string()?,
            },
            4 => Self::SetRetention {
                instance: dec.u64()?,
                retention: dec.i64()?,
            },
            5 => Self::SetActive {
                instance: dec.u64()?,
                node: dec.u32()?,
            },
            6 => Self::Evict {
                instance: dec.u64()?,
                node: dec.u32()?,
                term: dec.u64()?,
            },
            7 => Self::Resign {
                instance: dec.u64()?,
                node: dec.u32()?,
                term: dec.u64()?,
            },
            8 => Self::Opens {
                instance: dec.u64()?,
                node: dec.u32()?,
                count: dec.u32()?,
            },
            tag => return Err(WireError::UnknownTag { what: "DirOp", tag }),
        })
    }
}

impl Encode for DirReply {
    fn wire_len(&self) -> usize {
        1 + match self {
            Self::Done => 0,
            Self::Opened { ckpt } => ckpt.wire_len(),
            Self::Failed { .. } => 4,
            Self::NotLeader { leader } => option_len(leader.as_ref(), |_| 4),
        }
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        match self {
            Self::Done => enc.put_u8(1),
            Self::Opened { ckpt } => {
                enc.put_u8(2);
                enc.put(ckpt);
            }
            Self::Failed { code } => {
                enc.put_u8(3);
                enc.put_u32(*code);
            }
            Self::NotLeader { leader } => {
                enc.put_u8(4);
                enc.put_option(leader.as_ref(), |enc, node| enc.put_u32(*node));
            }
        }
    }
}

impl Decode for DirReply {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(match dec.u8()? {
            1 => Self::Done,
            2 => Self::Opened {
                ckpt: dec.decode()?,
            },
            3 => Self::Failed { code: dec.u32()? },
            4 => Self::NotLeader {
                leader: dec.option(Dec::u32)?,
            },
            tag => {
                return Err(WireError::UnknownTag {
                    what: "DirReply",
                    tag,
                });
            }
        })
    }
}

impl Encode for DiffOp {
    fn wire_len(&self) -> usize {
        1 + match self {
            Self::Put { id, data, .. } => bytes_len(id) + 8 + bytes_len(data),
            Self::Write { id, data, .. } => bytes_len(id) + 8 + bytes_len(data),
            Self::Delete { id } => bytes_len(id),
            Self::Expire { id, .. } => bytes_len(id) + 8,
            Self::Retain { ids } => 4 + ids.iter().map(|id| bytes_len(id)).sum::<usize>(),
        }
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        match self {
            Self::Put {
                id,
                expiration,
                data,
            } => {
                enc.put_u8(1);
                enc.put_bytes(id);
                enc.put_i64(*expiration);
                enc.put_bytes(data);
            }
            Self::Write { id, offset, data } => {
                enc.put_u8(2);
                enc.put_bytes(id);
                enc.put_u64(*offset);
                enc.put_bytes(data);
            }
            Self::Delete { id } => {
                enc.put_u8(3);
                enc.put_bytes(id);
            }
            Self::Expire { id, expiration } => {
                enc.put_u8(4);
                enc.put_bytes(id);
                enc.put_i64(*expiration);
            }
            Self::Retain { ids } => {
                enc.put_u8(5);
                enc.put_vec(ids, |enc, id| enc.put_bytes(id));
            }
        }
    }
}

impl Decode for DiffOp {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(match dec.u8()? {
            1 => Self::Put {
                id: dec.byte_vec()?,
                expiration: dec.i64()?,
                data: dec.byte_vec()?,
            },
            2 => Self::Write {
                id: dec.byte_vec()?,
                offset: dec.u64()?,
                data: dec.byte_vec()?,
            },
            3 => Self::Delete {
                id: dec.byte_vec()?,
            },
            4 => Self::Expire {
                id: dec.byte_vec()?,
                expiration: dec.i64()?,
            },
            5 => Self::Retain {
                ids: dec.vec(MIN_BYTES, Dec::byte_vec)?,
            },
            tag => {
                return Err(WireError::UnknownTag {
                    what: "DiffOp",
                    tag,
                });
            }
        })
    }
}

impl Encode for RemoteOp {
    fn wire_len(&self) -> usize {
        1 + match self {
            Self::Write { elems } => 4 + elems.iter().map(WriteElem::wire_len).sum::<usize>(),
            Self::Overwrite { id, data } => bytes_len(id) + bytes_len(data),
            Self::Read { elems } => 4 + elems.iter().map(ReadElem::wire_len).sum::<usize>(),
            Self::CreateSection { id, data, .. } => {
                option_len(id.as_ref(), |id| bytes_len(id)) + 8 + bytes_len(data)
            }
            Self::DeleteSection { id } => bytes_len(id),
            Self::SetExpiration { id, .. } => bytes_len(id) + 8,
            Self::Synchronize { after, .. } => 8 + 4 + 16 * after.len(),
            Self::Sections { .. } => 1 + 8,
            Self::Status => 0,
            Self::Changes { .. } => 8 + 8 + 4,
        }
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        match self {
            Self::Write { elems } => {
                enc.put_u8(1);
                enc.put_vec(elems, Enc::put);
            }
            Self::Overwrite { id, data } => {
                enc.put_u8(2);
                enc.put_bytes(id);
                enc.put_bytes(data);
            }
            Self::Read { elems } => {
                enc.put_u8(3);
                enc.put_vec(elems, Enc::put);
            }
            Self::CreateSection {
                id,
                expiration,
                data,
            } => {
                enc.put_u8(4);
                enc.put_option(id.as_deref(), Enc::put_bytes);
                enc.put_i64(*expiration);
                enc.put_bytes(data);
            }
            Self::DeleteSection { id } => {
                enc.put_u8(5);
                enc.put_bytes(id);
            }
            Self::SetExpiration { id, expiration } => {
                enc.put_u8(6);
                enc.put_bytes(id);
                enc.put_i64(*expiration);
            }
            Self::Synchronize { timeout_ns, after } => {
                enc.put_u8(7);
                enc.put_i64(*timeout_ns);
                enc.put_vec(after, |enc, &(term, seq)| {
                    enc.put_u64(term);
                    enc.put_u64(seq);
                });
            }
            Self::Sections { filter, time } => {
                enc.put_u8(8);
                enc.put_u8(*filter);
                enc.put_i64(*time);
            }
            Self::Status => enc.put_u8(9),
            Self::Changes {
                epoch,
                since,
                wait_ms,
            } => {
                enc.put_u8(10);
                enc.put_u64(*epoch);
                enc.put_u64(*since);
                enc.put_u32(*wait_ms);
            }
        }
    }
}

impl Decode for RemoteOp {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(match dec.u8()? {
            1 => Self::Write {
                elems: dec.vec(MIN_WRITE_ELEM, Dec::decode)?,
            },
            2 => Self::Overwrite {
                id: dec.byte_vec()?,
                data: dec.byte_vec()?,
            },
            3 => Self::Read {
                elems: dec.vec(MIN_READ_ELEM, Dec::decode)?,
            },
            4 => Self::CreateSection {
                id: dec.option(Dec::byte_vec)?,
                expiration: dec.i64()?,
                data: dec.byte_vec()?,
            },
            5 => Self::DeleteSection {
                id: dec.byte_vec()?,
            },
            6 => Self::SetExpiration {
                id: dec.byte_vec()?,
                expiration: dec.i64()?,
            },
            7 => Self::Synchronize {
                timeout_ns: dec.i64()?,
                after: dec.vec(16, |dec| Ok((dec.u64()?, dec.u64()?)))?,
            },
            8 => Self::Sections {
                filter: dec.u8()?,
                time: dec.i64()?,
            },
            9 => Self::Status,
            10 => Self::Changes {
                epoch: dec.u64()?,
                since: dec.u64()?,
                wait_ms: dec.u32()?,
            },
            tag => {
                return Err(WireError::UnknownTag {
                    what: "RemoteOp",
                    tag,
                });
            }
        })
    }
}

impl Encode for RemoteResult {
    fn wire_len(&self) -> usize {
        1 + match self {
            Self::Done => 0,
            Self::Failed { index, .. } => 4 + option_len(index.as_ref(), |_| 4),
            Self::Data { items } => 4 + items.iter().map(|item| bytes_len(item)).sum::<usize>(),
            Self::Created { id } => bytes_len(id),
            Self::Sections { items } => 4 + items.iter().map(SectionEntry::wire_len).sum::<usize>(),
            Self::Status { .. } => 4 + 8,
            Self::Applied { .. } => 8 + 8,
            Self::Changes { items, .. } => {
                8 + 8 + 1 + 4 + items.iter().map(ArrivalItem::wire_len).sum::<usize>()
            }
        }
    }

    fn encode_to(&self, enc: &mut Enc<'_>) {
        match self {
            Self::Done => enc.put_u8(1),
            Self::Failed { code, index } => {
                enc.put_u8(2);
                enc.put_u32(*code);
                enc.put_option(index.as_ref(), |enc, index| enc.put_u32(*index));
            }
            Self::Data { items } => {
                enc.put_u8(3);
                enc.put_vec(items, |enc, item| enc.put_bytes(item));
            }
            Self::Created { id } => {
                enc.put_u8(4);
                enc.put_bytes(id);
            }
            Self::Sections { items } => {
                enc.put_u8(5);
                enc.put_vec(items, Enc::put);
            }
            Self::Status {
                sections,
                memory_used,
            } => {
                enc.put_u8(6);
                enc.put_u32(*sections);
                enc.put_u64(*memory_used);
            }
            Self::Applied { term, seq } => {
                enc.put_u8(7);
                enc.put_u64(*term);
                enc.put_u64(*seq);
            }
            Self::Changes {
                epoch,
                upto,
                lapped,
                items,
            } => {
                enc.put_u8(8);
                enc.put_u64(*epoch);
                enc.put_u64(*upto);
                enc.put_bool(*lapped);
                enc.put_vec(items, Enc::put);
            }
        }
    }
}

impl Decode for RemoteResult {
    fn decode_from(dec: &mut Dec<'_>) -> Result<Self, WireError> {
        Ok(match dec.u8()? {
            1 => Self::Done,
            2 => Self::Failed {
                code: dec.u32()?,
                index: dec.option(Dec::u32)?,
            },
            3 => Self::Data {
                items: dec.vec(MIN_BYTES, Dec::byte_vec)?,
            },
            4 => Self::Created {
                id: dec.byte_vec()?,
            },
            5 => Self::Sections {
                items: dec.vec(MIN_SECTION_ENTRY, Dec::decode)?,
            },
            6 => Self::Status {
                sections: dec.u32()?,
                memory_used: dec.u64()?,
            },
            7 => Self::Applied {
                term: dec.u64()?,
                seq: dec.u64()?,
            },
            8 => Self::Changes {
                epoch: dec.u64()?,
                upto: dec.u64()?,
                lapped: dec.bool()?,
                items: dec.vec(MIN_ARRIVAL_ITEM, Dec::decode)?,
            },
            tag => {
                return Err(WireError::UnknownTag {
                    what: "RemoteResult",
                    tag,
                });
            }
        })
    }
}

/// Bytes `bytes` (or a `str`) of this content takes: the `u32` length and the content.
fn bytes_len(v: &[u8]) -> usize {
    4 + v.len()
}

/// Bytes an `Option` takes: the tag, and the value if there is one.
fn option_len<T: ?Sized>(v: Option<&T>, len: impl FnOnce(&T) -> usize) -> usize {
    1 + v.map_or(0, len)
}

/// A length or count as the wire's `u32`.
///
/// # Panics
///
/// If `n` exceeds `u32::MAX`: the format cannot express it (see [`Frame::encode`]).
fn wire_u32(n: usize, what: &str) -> u32 {
    match u32::try_from(n) {
        Ok(n) => n,
        Err(_) => panic!("{what} {n} does not fit the wire's u32"),
    }
}
