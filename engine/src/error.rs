//! Typed errors, one enum per kind of operation, each `Copy` and documented with the
//! `SaAisErrorT` it stands for (the C ABI maps them in one table).

use core::fmt;

/// Why a replica object could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateError {
    /// An object (or a symlink) already has that name; it was left untouched. (EXIST)
    AlreadyExists,
    /// The attributes or limits are out of range. (INVALID_PARAM)
    InvalidAttributes,
    /// The operating system refused with this errno.
    Io(i32),
    /// The shared-memory file system cannot hold the object: `needed` bytes were asked
    /// for. Nothing was left behind. (NO_RESOURCES)
    NoResources { needed: u64 },
}

/// Why a replica object could not be attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The first bytes are not a ckpt replica.
    BadMagic,
    /// A header field is inconsistent with the rest.
    CorruptHeader(&'static str),
    /// The operating system refused with this errno.
    Io(i32),
    /// No object has that name. (NOT_EXIST)
    NotFound,
    /// The creator has not finished initialising it (or died doing so). (TRY_AGAIN)
    NotInitialized,
    /// A descriptor offered as a replica object is not sealed against resizing (it lacks
    /// one of `F_SEAL_SHRINK`, `F_SEAL_GROW`, `F_SEAL_SEAL`; `seals` is what it has):
    /// whoever else holds it could shrink it under every mapping. (ACCESS)
    NotSealed { seals: u32 },
    /// The object's owner is not this user. (ACCESS)
    WrongOwner { uid: u32 },
    /// The object is readable or writable by others than its owner (and group, when
    /// configured), or is not a regular file. (ACCESS)
    WrongMode { mode: u32 },
    /// The header's length does not match the object's.
    SizeMismatch { header: u64, object: u64 },
    /// The layout version is not one this build reads.
    UnsupportedVersion(u32),
}

/// Why a section operation failed. Each operation documents which variants it returns.
///
/// Two words: the explanations are referenced through one pointer (`&"why"`), so that a
/// `Result<(), SectionError>` or `Result<usize, SectionError>` comes back in registers
/// rather than through memory, a store and a spill fewer on every data-path call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SectionError {
    /// An argument is invalid: an id longer than `maxSectionIdSize`, a read offset past the
    /// end of the section, an operation not allowed on the default section. (INVALID_PARAM)
    BadArgument(&'static &'static str),
    /// The mapping holds values that break an invariant; nothing was changed. (LIBRARY)
    Corrupted(&'static &'static str),
    /// A section with that id exists, or the checkpoint has only its default section.
    /// (EXIST)
    Exists,
    /// `checkpointSize` would be exceeded, or a write reaches past `maxSectionSize`.
    /// (NO_RESOURCES)
    NoResources,
    /// `maxSections` sections exist already. (NO_SPACE)
    NoSpace,
    /// This replica is not the primary: local writes are refused. (TRY_AGAIN in
    /// standalone; the cluster forwards instead)
    NotPrimary,
    /// No section has that id (or it expired). (NOT_EXIST)
    NotExist,
    /// One element's data is larger than `maxSectionSize`. (INVALID_PARAM)
    TooBig,
    /// Contention or exhausted spare slots, agent slots or pins outlasted the bounded
    /// wait; retrying may succeed. (TRY_AGAIN)
    TryAgain,
}

/// A failed multi-element write or read: which element failed, and why. Nothing was
/// written (writes are all or nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorError {
    /// Index of the first failing element (`erroneousVectorIndex`).
    pub index: usize,
    /// What went wrong with it.
    pub kind: SectionError,
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyExists => f.write_str("an object with that name already exists"),
            Self::InvalidAttributes => f.write_str("checkpoint attributes or limits out of range"),
            Self::Io(e) => write!(
                f,
                "system error {e} ({})",
                std::io::Error::from_raw_os_error(*e)
            ),
            Self::NoResources { needed } => {
                write!(
                    f,
                    "shared memory cannot hold {needed} bytes (tmpfs or memory cgroup full)"
                )
            }
        }
    }
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("not a ckpt replica object"),
            Self::CorruptHeader(why) => write!(f, "corrupt replica header: {why}"),
            Self::Io(e) => write!(
                f,
                "system error {e} ({})",
                std::io::Error::from_raw_os_error(*e)
            ),
            Self::NotFound => f.write_str("no such replica object"),
            Self::NotInitialized => f.write_str("replica object is not initialised yet"),
            Self::NotSealed { seals } => write!(
                f,
                "descriptor is not sealed against resizing (seals {seals:#x}; needs \
                 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): refused"
            ),
            Self::WrongOwner { uid } => write!(f, "replica object owned by uid {uid}, not us"),
            Self::WrongMode { mode } => write!(f, "replica object has unsafe mode {mode:o}"),
            Self::SizeMismatch { header, object } => {
                write!(f, "header says {header} bytes but the object has {object}")
            }
            Self::UnsupportedVersion(v) => write!(f, "unsupported layout version {v}"),
        }
    }
}

impl fmt::Display for SectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadArgument(why) => write!(f, "invalid argument: {why}"),
            Self::Corrupted(why) => write!(f, "replica corrupted: {why}"),
            Self::Exists => f.write_str("section exists"),
            Self::NoResources => f.write_str("checkpoint size or maximum section size exceeded"),
            Self::NoSpace => f.write_str("maximum number of sections reached"),
            Self::NotPrimary => f.write_str("replica is not the primary"),
            Self::NotExist => f.write_str("no such section"),
            Self::TooBig => f.write_str("data larger than the maximum section size"),
            Self::TryAgain => f.write_str("resource busy, try again"),
        }
    }
}

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "element {}: {}", self.index, self.kind)
    }
}

impl core::error::Error for CreateError {}
impl core::error::Error for AttachError {}
impl core::error::Error for SectionError {}
impl core::error::Error for VectorError {}

// The point of the single-pointer explanations above.
const _: () = assert!(size_of::<Result<(), SectionError>>() == 16);
const _: () = assert!(size_of::<Result<usize, SectionError>>() == 16);

impl From<SectionError> for VectorError {
    fn from(kind: SectionError) -> Self {
        Self { index: 0, kind }
    }
}

pub(crate) fn errno(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}
