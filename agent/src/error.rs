//! One error type for the whole API, mapped onto `SaAisErrorT` in one table
//! ([`Error::code`]).

use core::fmt;

/// What went wrong. Each variant is one `SaAisErrorT`; the detail strings say which rule
/// was broken and are for people, not for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The library is broken (shared memory failed an integrity check, or the system
    /// refused something that cannot fail). `SA_AIS_ERR_LIBRARY`
    Library(&'static str),
    /// The requested version is not supported. `SA_AIS_ERR_VERSION`
    Version,
    /// The callback that the call needs was not registered at initialize.
    /// `SA_AIS_ERR_INIT`
    Init,
    /// The timeout expired; whether the operation took effect is unknown.
    /// `SA_AIS_ERR_TIMEOUT`
    Timeout,
    /// The service is busy; retrying may succeed. `SA_AIS_ERR_TRY_AGAIN`
    TryAgain,
    /// An argument is invalid. `SA_AIS_ERR_INVALID_PARAM`
    InvalidParam(&'static str),
    /// Out of process memory. `SA_AIS_ERR_NO_MEMORY`
    NoMemory,
    /// The handle is invalid: never obtained, closed, finalized, or its library handle
    /// was finalized. `SA_AIS_ERR_BAD_HANDLE`
    BadHandle,
    /// The handle was not opened with the access the call needs. `SA_AIS_ERR_ACCESS`
    Access,
    /// The checkpoint or section does not exist, or the checkpoint has no active replica.
    /// `SA_AIS_ERR_NOT_EXIST`
    NotExist,
    /// It exists already (or differs from what open-with-create asked for).
    /// `SA_AIS_ERR_EXIST`
    Exist,
    /// `maxSections` sections exist already. `SA_AIS_ERR_NO_SPACE`
    NoSpace,
    /// A size limit would be exceeded (checkpointSize, maxSectionSize at an offset, the
    /// node's limits, shared memory). `SA_AIS_ERR_NO_RESOURCES`
    NoResources,
    /// The operation does not apply to this checkpoint. `SA_AIS_ERR_BAD_OPERATION`
    BadOperation,
    /// The open flags are invalid. `SA_AIS_ERR_BAD_FLAGS`
    BadFlags,
    /// The iteration is over. `SA_AIS_ERR_NO_SECTIONS`
    NoSections,
    /// The node is not a cluster member (B.02 clients only). `SA_AIS_ERR_UNAVAILABLE`
    Unavailable,
    /// A synchronize cannot confirm the handle's earlier writes: some were accepted by an
    /// active replica that was replaced before they reached the others, and are lost.
    /// Reported once; later synchronizes confirm the writes made after it.
    /// `SA_AIS_ERR_FAILED_OPERATION`
    FailedOperation,
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// The `SaAisErrorT` value.
    pub const fn code(self) -> i32 {
        match self {
            Self::Library(_) => 2,
            Self::Version => 3,
            Self::Init => 4,
            Self::Timeout => 5,
            Self::TryAgain => 6,
            Self::InvalidParam(_) => 7,
            Self::NoMemory => 8,
            Self::BadHandle => 9,
            Self::Access => 11,
            Self::NotExist => 12,
            Self::Exist => 14,
            Self::NoSpace => 15,
            Self::NoResources => 18,
            Self::BadOperation => 20,
            Self::BadFlags => 25,
            Self::NoSections => 27,
            Self::Unavailable => 31,
            Self::FailedOperation => 21,
        }
    }

    /// The error a `SaAisErrorT` value names (values this API never returns, and OK,
    /// become `Library`): how answers from ckptd are turned back into errors.
    pub const fn from_code(code: u32) -> Self {
        match code {
            3 => Self::Version,
            4 => Self::Init,
            5 => Self::Timeout,
            6 => Self::TryAgain,
            7 => Self::InvalidParam("refused by the cluster directory"),
            8 => Self::NoMemory,
            9 => Self::BadHandle,
            11 => Self::Access,
            12 => Self::NotExist,
            14 => Self::Exist,
            15 => Self::NoSpace,
            18 => Self::NoResources,
            20 => Self::BadOperation,
            25 => Self::BadFlags,
            27 => Self::NoSections,
            31 => Self::Unavailable,
            21 => Self::FailedOperation,
            _ => Self::Library("unexpected error code from ckptd"),
        }
    }

    /// The `SA_AIS_ERR_*` name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Library(_) => "SA_AIS_ERR_LIBRARY",
            Self::Version => "SA_AIS_ERR_VERSION",
            Self::Init => "SA_AIS_ERR_INIT",
            Self::Timeout => "SA_AIS_ERR_TIMEOUT",
            Self::TryAgain => "SA_AIS_ERR_TRY_AGAIN",
            Self::InvalidParam(_) => "SA_AIS_ERR_INVALID_PARAM",
            Self::NoMemory => "SA_AIS_ERR_NO_MEMORY",
            Self::BadHandle => "SA_AIS_ERR_BAD_HANDLE",
            Self::Access => "SA_AIS_ERR_ACCESS",
            Self::NotExist => "SA_AIS_ERR_NOT_EXIST",
            Self::Exist => "SA_AIS_ERR_EXIST",
            Self::NoSpace => "SA_AIS_ERR_NO_SPACE",
            Self::NoResources => "SA_AIS_ERR_NO_RESOURCES",
            Self::BadOperation => "SA_AIS_ERR_BAD_OPERATION",
            Self::BadFlags => "SA_AIS_ERR_BAD_FLAGS",
            Self::NoSections => "SA_AIS_ERR_NO_SECTIONS",
            Self::Unavailable => "SA_AIS_ERR_UNAVAILABLE",
            Self::FailedOperation => "SA_AIS_ERR_FAILED_OPERATION",
        }
    }

    /// This error as a client of `version` may see it: codes added after B.01 (above
    /// 29) are never shown to B.01 clients ([`Error::Unavailable`] becomes
    /// [`Error::TryAgain`]).
    pub const fn for_version(self, version: crate::Version) -> Self {
        match self {
            Self::Unavailable if version.major < 2 => Self::TryAgain,
            e => e,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Library(why) => write!(f, "{}: {why}", self.name()),
            Self::InvalidParam(why) => write!(f, "{}: {why}", self.name()),
            other => f.write_str(other.name()),
        }
    }
}

impl core::error::Error for Error {}

/// A failed multi-element write or read: the error and the index of the element it
/// concerns (`erroneousVectorIndex`). A failed write wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorError {
    /// The first failing element.
    pub index: usize,
    /// Why.
    pub error: Error,
}

impl fmt::Display for VectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "element {}: {}", self.index, self.error)
    }
}

impl core::error::Error for VectorError {}

impl From<Error> for VectorError {
    fn from(error: Error) -> Self {
        Self { index: 0, error }
    }
}

pub(crate) fn from_section(e: ckpt_engine::SectionError) -> Error {
    use ckpt_engine::SectionError as S;
    match e {
        S::BadArgument(why) => Error::InvalidParam(why),
        S::Corrupted(why) => Error::Library(why),
        S::Exists => Error::Exist,
        S::NoResources => Error::NoResources,
        S::NoSpace => Error::NoSpace,
        // Standalone replicas are primaries unless they have no active replica yet,
        // which the agent checks first; anything else is a transient role change.
        S::NotPrimary => Error::TryAgain,
        S::NotExist => Error::NotExist,
        S::TooBig => Error::InvalidParam("data larger than maxSectionSize"),
        S::TryAgain => Error::TryAgain,
        _ => Error::Library("unknown engine error"),
    }
}

pub(crate) fn from_vector(e: ckpt_engine::VectorError) -> VectorError {
    VectorError {
        index: e.index,
        error: from_section(e.kind),
    }
}

/// An errno from the system: running out of something (descriptors, memory, space) is
/// transient and the caller's to handle, not a broken library.
fn from_errno(errno: i32, otherwise: Error) -> Error {
    const EPERM: i32 = 1;
    const EINTR: i32 = 4;
    const EAGAIN: i32 = 11;
    const ENOMEM: i32 = 12;
    const EACCES: i32 = 13;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    match errno {
        ENOMEM => Error::NoMemory,
        ENFILE | EMFILE | ENOSPC | EDQUOT => Error::NoResources,
        EAGAIN | EINTR => Error::TryAgain,
        EACCES | EPERM => Error::Access,
        _ => otherwise,
    }
}

pub(crate) fn from_create(e: ckpt_engine::CreateError) -> Error {
    use ckpt_engine::CreateError as C;
    match e {
        C::AlreadyExists => Error::TryAgain,
        C::InvalidAttributes => Error::InvalidParam("creation attributes out of range"),
        C::NoResources { .. } => Error::NoResources,
        C::Io(errno) => from_errno(
            errno,
            Error::Library("the system refused to create the replica object"),
        ),
        _ => Error::Library("the system refused to create the replica object"),
    }
}

pub(crate) fn from_attach(e: ckpt_engine::AttachError) -> Error {
    use ckpt_engine::AttachError as A;
    match e {
        A::NotFound => Error::NotExist,
        A::NotInitialized => Error::TryAgain,
        A::WrongOwner { .. } | A::WrongMode { .. } | A::NotSealed { .. } => Error::Access,
        A::Io(errno) => from_errno(errno, Error::Library("replica object unreadable")),
        _ => Error::Library("replica object failed validation"),
    }
}

pub(crate) fn from_registry(e: ckpt_engine::RegistryError) -> Error {
    use ckpt_engine::RegistryError as R;
    match e {
        R::NotExist => Error::NotExist,
        R::BadName => Error::InvalidParam("checkpoint name empty or longer than 256 bytes"),
        R::NoSpace => Error::NoResources,
        R::TryAgain => Error::TryAgain,
        R::Attach(a) => from_attach(a),
        R::Create(c) => from_create(c),
        R::Io(errno) => from_errno(errno, Error::Library("node registry unusable")),
        _ => Error::Library("node registry unusable"),
    }
}
