//! The standard's value types, in Rust.

use crate::error::{Error, Result};

/// `SA_TIME_END`: never (expiration), forever (retention), no limit (timeouts).
pub const TIME_END: i64 = i64::MAX;

/// `SaVersionT`: release code (`b'B'`), major and minor version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// Release code, an ASCII letter (`b'B'`).
    pub release: u8,
    /// Major version.
    pub major: u8,
    /// Minor version (ignored on input).
    pub minor: u8,
}

impl Version {
    /// B.02.02, the version this library implements.
    pub const B_02_02: Self = Self::new(b'B', 2, 2);
    /// B.01.01, the version openais clients ask for.
    pub const B_01_01: Self = Self::new(b'B', 1, 1);

    /// A version.
    pub const fn new(release: u8, major: u8, minor: u8) -> Self {
        Self {
            release,
            major,
            minor,
        }
    }

    /// Whether a client that asked for this version gets the B.02 rules (the ACCESS
    /// checks of StatusGet, IterationInitialize and RetentionDurationSet, the `safCkpt=`
    /// name rule, retentionDuration ignored by the open-with-create match, codes above 29).
    /// The minor version is ignored, as the standard says (OpenSAF's quirk of asking for
    /// minor > 1 too is not followed).
    pub const fn is_b02(self) -> bool {
        self.major >= 2
    }
}

/// Version negotiation (`saCkptInitialize`): `Ok(granted)` when release `B` with a major of
/// at most 2 is asked for (the standard's rule: the highest major supported, 2, is at least
/// the one requested; the answer is always B.02.02, the highest major and minor of the
/// release); otherwise `Err(the version to report)` with `SA_AIS_ERR_VERSION`, also B.02.02
/// (the only release supported, whichever side of it the request was).
pub fn negotiate(requested: Version) -> core::result::Result<Version, Version> {
    if requested.release == b'B' && requested.major <= 2 {
        Ok(Version::B_02_02)
    } else {
        Err(Version::B_02_02)
    }
}

macro_rules! flags {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $flag:ident = $v:expr;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u32);
        impl $name {
            $($(#[$fm])* pub const $flag: Self = Self($v);)*
            /// Every defined bit.
            pub const ALL: Self = Self(0 $(| $v)*);
            /// Whether every bit of `other` is set.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
            /// Whether a bit outside the defined ones is set.
            pub const fn has_unknown_bits(self) -> bool {
                self.0 & !Self::ALL.0 != 0
            }
        }
        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                Self(self.0 | rhs.0)
            }
        }
    };
}

flags! {
    /// `SaCkptCheckpointCreationFlagsT`: exactly one update option, optionally COLLOCATED.
    CreationFlags {
        /// `SA_CKPT_WR_ALL_REPLICAS`: synchronous update of every replica.
        WR_ALL_REPLICAS = 0x1;
        /// `SA_CKPT_WR_ACTIVE_REPLICA`: asynchronous, the active replica is updated.
        WR_ACTIVE_REPLICA = 0x2;
        /// `SA_CKPT_WR_ACTIVE_REPLICA_WEAK`: asynchronous, weak atomicity (never weaker
        /// than ACTIVE_REPLICA here: commits are copy-on-write).
        WR_ACTIVE_REPLICA_WEAK = 0x4;
        /// `SA_CKPT_CHECKPOINT_COLLOCATED`: the application places the active replica.
        CHECKPOINT_COLLOCATED = 0x8;
    }
}

impl CreationFlags {
    /// Checks the combination: no unknown bit and exactly one update option.
    pub fn validate(self) -> Result<()> {
        let wr = self.0 & 0x7;
        if self.has_unknown_bits() || wr.count_ones() != 1 {
            return Err(Error::InvalidParam(
                "creationFlags needs exactly one of WR_ALL_REPLICAS, WR_ACTIVE_REPLICA, WR_ACTIVE_REPLICA_WEAK",
            ));
        }
        Ok(())
    }

    /// Collocated with asynchronous update: no active replica until one is set.
    pub const fn is_collocated_async(self) -> bool {
        self.contains(Self::CHECKPOINT_COLLOCATED) && !self.contains(Self::WR_ALL_REPLICAS)
    }
}

flags! {
    /// `SaCkptCheckpointOpenFlagsT`.
    OpenFlags {
        /// `SA_CKPT_CHECKPOINT_READ`.
        READ = 0x1;
        /// `SA_CKPT_CHECKPOINT_WRITE`.
        WRITE = 0x2;
        /// `SA_CKPT_CHECKPOINT_CREATE`.
        CREATE = 0x4;
    }
}

/// `SaCkptCheckpointCreationAttributesT`. Sizes in bytes, durations in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreationAttributes {
    /// Update option and placement.
    pub creation_flags: CreationFlags,
    /// Bytes of section data a replica may hold (enforced: NO_RESOURCES beyond it).
    pub checkpoint_size: u64,
    /// How long the checkpoint outlives its last close, ns ([`TIME_END`]: forever).
    pub retention_duration: i64,
    /// Sections at most; 1 means a single default section.
    pub max_sections: u32,
    /// Bytes per section at most.
    pub max_section_size: u64,
    /// Bytes per section id at most.
    pub max_section_id_size: u64,
}

impl CreationAttributes {
    /// Whether two creations ask for the same checkpoint (the open-with-create match):
    /// flags and every size; the retention duration only when `with_retention` (B.01).
    pub fn matches(&self, other: &Self, with_retention: bool) -> bool {
        self.creation_flags == other.creation_flags
            && self.checkpoint_size == other.checkpoint_size
            && self.max_sections == other.max_sections
            && self.max_section_size == other.max_section_size
            && self.max_section_id_size == other.max_section_id_size
            && (!with_retention || self.retention_duration == other.retention_duration)
    }
}

/// `SaCkptSectionsChosenT`: which sections an iteration returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionsChosen {
    /// `SA_CKPT_SECTIONS_FOREVER`: sections that never expire.
    Forever,
    /// `SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME`: expiring at or before the time.
    LeqExpirationTime(i64),
    /// `SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME`: expiring at or after the time.
    GeqExpirationTime(i64),
    /// `SA_CKPT_SECTIONS_CORRUPTED`: none here (commits are copy-on-write).
    Corrupted,
    /// `SA_CKPT_SECTIONS_ANY`.
    Any,
}

impl SectionsChosen {
    /// From the C values (1..=5) and the time argument.
    pub fn from_c(value: u32, time: i64) -> Result<Self> {
        Ok(match value {
            1 => Self::Forever,
            2 => Self::LeqExpirationTime(time),
            3 => Self::GeqExpirationTime(time),
            4 => Self::Corrupted,
            5 => Self::Any,
            _ => return Err(Error::InvalidParam("sectionsChosen is not 1..=5")),
        })
    }
}

/// `SaDispatchFlagsT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchFlags {
    /// `SA_DISPATCH_ONE`: at most one pending callback.
    One,
    /// `SA_DISPATCH_ALL`: every pending callback.
    All,
    /// `SA_DISPATCH_BLOCKING`: callbacks as they come, until finalize.
    Blocking,
}

impl DispatchFlags {
    /// From the C values (1..=3).
    pub fn from_c(value: u32) -> Result<Self> {
        Ok(match value {
            1 => Self::One,
            2 => Self::All,
            3 => Self::Blocking,
            _ => return Err(Error::InvalidParam("dispatchFlags is not 1..=3")),
        })
    }
}

/// `SaCkptCheckpointDescriptorT`: what StatusGet reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointStatus {
    /// The creation attributes, with the retention duration currently in force (a
    /// RetentionDurationSet shows here).
    pub attributes: CreationAttributes,
    /// Sections present (expired ones are reaped first).
    pub number_of_sections: u32,
    /// Bytes of section data stored.
    pub memory_used: u64,
}

/// `SaCkptSectionStateT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionState {
    /// `SA_CKPT_SECTION_VALID`.
    Valid,
    /// `SA_CKPT_SECTION_CORRUPTED` (never reported: commits are copy-on-write).
    Corrupted,
}

/// `SaCkptSectionDescriptorT`: one section, as iteration returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionDescriptor {
    /// The id (empty for the default section).
    pub id: Vec<u8>,
    /// Absolute expiration, ns since the epoch ([`TIME_END`]: never).
    pub expiration_time: i64,
    /// Bytes of data.
    pub size: u64,
    /// Always [`SectionState::Valid`] here.
    pub state: SectionState,
    /// Time of the last update, ns since the epoch.
    pub last_update: i64,
}

/// One element of a multi-element write (`SaCkptIOVectorElementT` as Write uses it).
#[derive(Clone, Copy, Debug)]
pub struct WriteElement<'a> {
    /// Target section (empty: the default section).
    pub section_id: &'a [u8],
    /// Byte offset in the section.
    pub offset: u64,
    /// The bytes.
    pub data: &'a [u8],
}

/// One element of a multi-element read into a caller's buffer.
#[derive(Debug)]
pub struct ReadElement<'a> {
    /// Source section (empty: the default section).
    pub section_id: &'a [u8],
    /// Byte offset in the section.
    pub offset: u64,
    /// Destination; its length is `dataSize`, the most read.
    pub buf: &'a mut [u8],
    /// Out: `readSize`.
    pub read_size: usize,
}

/// What an arrival callback reports for one change: the element of the write, without
/// data (`dataBuffer` NULL and `readSize` 0, as the NCS extension specifies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrivalElement {
    /// The section written.
    pub section_id: Vec<u8>,
    /// Where.
    pub offset: u64,
    /// How many bytes (for an overwrite or a create, the new size of the section).
    pub size: u64,
}

/// A checkpoint handle's number (`SaCkptCheckpointHandleT`): unique in the process,
/// never 0, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointHandle(pub u64);

/// A library handle's number (`SaCkptHandleT`): unique in the process, never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LibraryHandle(pub u64);

/// `SaInvocationT`: the caller's tag for an asynchronous call.
pub type Invocation = u64;

/// Node limits (configurable; DESIGN.md "Limits and errors"). Beyond them: NO_RESOURCES.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Checkpoints on the node (used when this process creates the node registry).
    pub checkpoints: u32,
    /// Openers ((process, checkpoint) pairs) on the node (idem).
    pub openers: u32,
    /// `maxSections` at most.
    pub sections: u32,
    /// `maxSectionSize` at most.
    pub section_size: u64,
    /// `maxSectionIdSize` at most.
    pub section_id_size: u64,
    /// Bytes of data in one write or overwrite call.
    pub write_bytes: u64,
    /// Threads (of all processes) using one checkpoint at once.
    pub agents: u32,
    /// Spare slots per replica beyond `maxSections` (concurrent writers plus readers
    /// pinning old versions); 0 lets the engine choose.
    pub spare_slots: u32,
    /// Change-journal cells per replica (arrival callbacks and replication lag).
    pub journal_cells: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            checkpoints: 10_000,
            openers: 40_000,
            sections: 1 << 24,
            section_size: 1 << 32,
            section_id_size: 4096,
            write_bytes: 40_000_000,
            agents: 128,
            spare_slots: 0,
            journal_cells: 4096,
        }
    }
}
