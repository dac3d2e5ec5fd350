//! The `#[repr(C)]` mirror of `include/saAis.h`, `include/saCkpt.h` and
//! `include/opensaf/cpsv_papi.h`.
//!
//! The headers are the source of truth; `tests/c_layout.rs` compiles them and checks every size,
//! offset and constant here against what the C compiler says.
//!
//! Mapping rules:
//!
//! - A C `typedef` of an integer stays a type alias (`SaSizeT = u64`), and its `#define`d values
//!   are consts of that alias, so each name means exactly what it means in C. This is the one
//!   place where the workspace's "avoid type aliases" rule gives way.
//! - A C `enum` becomes an `i32` newtype with one const per enumerator, never a Rust `enum`: a C
//!   caller can pass any `int`, and a Rust `enum` holding an unlisted value is undefined
//!   behaviour.
//! - Names, including field names, are the standard's, so they read the same on both sides.
//! - Callback pointers are `Option<unsafe extern "C" fn>`: `None` is C's `NULL`, and calling
//!   into C code is never something the compiler can check.
//!
//! The layout asserts next to each struct hold for 64-bit targets (the LP64 table of the
//! specification facts, §3.2). On 32-bit targets the C layout test is the check.

#![allow(
    non_snake_case,
    reason = "field names are the SAF standard's, as in the C headers"
)]

use core::ffi::{c_char, c_void};
use core::fmt;
#[cfg(target_pointer_width = "64")]
use core::mem::offset_of;

// ---------------------------------------------------------------------------------------------
// saAis.h: scalars
// ---------------------------------------------------------------------------------------------

/// C `char`; signed or unsigned as the platform's `char` is.
pub type SaInt8T = c_char;
/// C `short`.
pub type SaInt16T = i16;
/// C `int`.
pub type SaInt32T = i32;
/// C `long long`.
pub type SaInt64T = i64;
/// C `unsigned char`.
pub type SaUint8T = u8;
/// C `unsigned short`.
pub type SaUint16T = u16;
/// C `unsigned int`.
pub type SaUint32T = u32;
/// C `unsigned long long`.
pub type SaUint64T = u64;

/// Nanoseconds: since 1970-01-01 00:00 UTC for an absolute time, otherwise a duration.
pub type SaTimeT = SaInt64T;
/// Chosen by the caller of an asynchronous call and handed back in its callback.
pub type SaInvocationT = SaUint64T;
/// A size in bytes.
pub type SaSizeT = SaUint64T;
/// An offset in bytes.
pub type SaOffsetT = SaUint64T;
/// A file descriptor, widened, that polls readable while callbacks are pending.
pub type SaSelectionObjectT = SaUint64T;

/// The beginning of time.
pub const SA_TIME_BEGIN: SaTimeT = 0;
/// The largest time: "never" as an expiration time.
pub const SA_TIME_END: SaTimeT = i64::MAX;
/// As a timeout: no limit. The same value as [`SA_TIME_END`].
pub const SA_TIME_MAX: SaTimeT = SA_TIME_END;
/// An unknown time: the smallest `SaTimeT`.
pub const SA_TIME_UNKNOWN: SaTimeT = i64::MIN;
/// One microsecond.
pub const SA_TIME_ONE_MICROSECOND: SaTimeT = 1_000;
/// One millisecond.
pub const SA_TIME_ONE_MILLISECOND: SaTimeT = 1_000_000;
/// One second.
pub const SA_TIME_ONE_SECOND: SaTimeT = 1_000_000_000;
/// One minute.
pub const SA_TIME_ONE_MINUTE: SaTimeT = 60_000_000_000;
/// One hour.
pub const SA_TIME_ONE_HOUR: SaTimeT = 3_600_000_000_000;
/// One day.
pub const SA_TIME_ONE_DAY: SaTimeT = 86_400_000_000_000;

/// Track flag: report the current state. Track flags are common AIS definitions; the
/// checkpoint service itself does not track.
pub const SA_TRACK_CURRENT: SaUint8T = 0x01;
/// Track flag: report every change with the full state.
pub const SA_TRACK_CHANGES: SaUint8T = 0x02;
/// Track flag: report only what changed.
pub const SA_TRACK_CHANGES_ONLY: SaUint8T = 0x04;
/// Track flag: only the local node.
pub const SA_TRACK_LOCAL: SaUint8T = 0x08;
/// Track flag: include the start step.
pub const SA_TRACK_START_STEP: SaUint8T = 0x10;
/// Track flag: include the validate step.
pub const SA_TRACK_VALIDATE_STEP: SaUint8T = 0x20;

// ---------------------------------------------------------------------------------------------
// saAis.h: enumerations
// ---------------------------------------------------------------------------------------------

/// Declares the `i32` newtype of a C enum, with the derives every such type needs.
macro_rules! c_enum {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct $name(pub i32);

        const _: () = assert!(size_of::<$name>() == 4 && align_of::<$name>() == 4);
    };
}

c_enum!(
    /// C `SaBoolT`.
    SaBoolT
);
/// False.
pub const SA_FALSE: SaBoolT = SaBoolT(0);
/// True.
pub const SA_TRUE: SaBoolT = SaBoolT(1);

c_enum!(
    /// How much `saCkptDispatch` runs before it returns.
    SaDispatchFlagsT
);
/// Run at most one pending callback.
pub const SA_DISPATCH_ONE: SaDispatchFlagsT = SaDispatchFlagsT(1);
/// Run every callback pending at the call.
pub const SA_DISPATCH_ALL: SaDispatchFlagsT = SaDispatchFlagsT(2);
/// Run callbacks as they come, until the handle is finalized.
pub const SA_DISPATCH_BLOCKING: SaDispatchFlagsT = SaDispatchFlagsT(3);

/// The result of every AIS function. There is no code 0.
///
/// `Debug` prints the standard name (`SA_AIS_ERR_NOT_EXIST`), or `SaAisErrorT(n)` for a value
/// the standard does not define.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaAisErrorT(pub i32);

const _: () = assert!(size_of::<SaAisErrorT>() == 4 && align_of::<SaAisErrorT>() == 4);

/// Success.
pub const SA_AIS_OK: SaAisErrorT = SaAisErrorT(1);
/// The library cannot be used any more.
pub const SA_AIS_ERR_LIBRARY: SaAisErrorT = SaAisErrorT(2);
/// The requested version is not supported.
pub const SA_AIS_ERR_VERSION: SaAisErrorT = SaAisErrorT(3);
/// A callback the call needs was not registered.
pub const SA_AIS_ERR_INIT: SaAisErrorT = SaAisErrorT(4);
/// An implementation timeout; whether the call took effect is unknown.
pub const SA_AIS_ERR_TIMEOUT: SaAisErrorT = SaAisErrorT(5);
/// The service cannot answer now; the caller may retry.
pub const SA_AIS_ERR_TRY_AGAIN: SaAisErrorT = SaAisErrorT(6);
/// A parameter is not valid.
pub const SA_AIS_ERR_INVALID_PARAM: SaAisErrorT = SaAisErrorT(7);
/// Out of memory.
pub const SA_AIS_ERR_NO_MEMORY: SaAisErrorT = SaAisErrorT(8);
/// The handle is not valid.
pub const SA_AIS_ERR_BAD_HANDLE: SaAisErrorT = SaAisErrorT(9);
/// The resource is in use.
pub const SA_AIS_ERR_BUSY: SaAisErrorT = SaAisErrorT(10);
/// Access is denied by the open mode.
pub const SA_AIS_ERR_ACCESS: SaAisErrorT = SaAisErrorT(11);
/// The object does not exist.
pub const SA_AIS_ERR_NOT_EXIST: SaAisErrorT = SaAisErrorT(12);
/// The name is too long.
pub const SA_AIS_ERR_NAME_TOO_LONG: SaAisErrorT = SaAisErrorT(13);
/// The object exists already (or differs from the one asked for).
pub const SA_AIS_ERR_EXIST: SaAisErrorT = SaAisErrorT(14);
/// No space left.
pub const SA_AIS_ERR_NO_SPACE: SaAisErrorT = SaAisErrorT(15);
/// The call was interrupted.
pub const SA_AIS_ERR_INTERRUPT: SaAisErrorT = SaAisErrorT(16);
/// The name was not found.
pub const SA_AIS_ERR_NAME_NOT_FOUND: SaAisErrorT = SaAisErrorT(17);
/// Out of resources other than memory.
pub const SA_AIS_ERR_NO_RESOURCES: SaAisErrorT = SaAisErrorT(18);
/// The call is not supported.
pub const SA_AIS_ERR_NOT_SUPPORTED: SaAisErrorT = SaAisErrorT(19);
/// The operation is not allowed on this object.
pub const SA_AIS_ERR_BAD_OPERATION: SaAisErrorT = SaAisErrorT(20);
/// The operation failed.
pub const SA_AIS_ERR_FAILED_OPERATION: SaAisErrorT = SaAisErrorT(21);
/// A message error.
pub const SA_AIS_ERR_MESSAGE_ERROR: SaAisErrorT = SaAisErrorT(22);
/// The queue is full.
pub const SA_AIS_ERR_QUEUE_FULL: SaAisErrorT = SaAisErrorT(23);
/// The queue is not available.
pub const SA_AIS_ERR_QUEUE_NOT_AVAILABLE: SaAisErrorT = SaAisErrorT(24);
/// The flags are not valid.
pub const SA_AIS_ERR_BAD_FLAGS: SaAisErrorT = SaAisErrorT(25);
/// The value is too big.
pub const SA_AIS_ERR_TOO_BIG: SaAisErrorT = SaAisErrorT(26);
/// No more sections: the end of an iteration.
pub const SA_AIS_ERR_NO_SECTIONS: SaAisErrorT = SaAisErrorT(27);
/// No operation was performed.
pub const SA_AIS_ERR_NO_OP: SaAisErrorT = SaAisErrorT(28);
/// A repair is pending.
pub const SA_AIS_ERR_REPAIR_PENDING: SaAisErrorT = SaAisErrorT(29);
/// No bindings.
pub const SA_AIS_ERR_NO_BINDINGS: SaAisErrorT = SaAisErrorT(30);
/// The node is not, or was not, a cluster member (B.02 clients only).
pub const SA_AIS_ERR_UNAVAILABLE: SaAisErrorT = SaAisErrorT(31);
/// An upgrade campaign detected an error.
pub const SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED: SaAisErrorT = SaAisErrorT(32);
/// An upgrade campaign procedure failed.
pub const SA_AIS_ERR_CAMPAIGN_PROC_FAILED: SaAisErrorT = SaAisErrorT(33);
/// An upgrade campaign was canceled.
pub const SA_AIS_ERR_CAMPAIGN_CANCELED: SaAisErrorT = SaAisErrorT(34);
/// An upgrade campaign failed.
pub const SA_AIS_ERR_CAMPAIGN_FAILED: SaAisErrorT = SaAisErrorT(35);
/// An upgrade campaign is suspended.
pub const SA_AIS_ERR_CAMPAIGN_SUSPENDED: SaAisErrorT = SaAisErrorT(36);
/// An upgrade campaign is being suspended.
pub const SA_AIS_ERR_CAMPAIGN_SUSPENDING: SaAisErrorT = SaAisErrorT(37);
/// Access is denied by security.
pub const SA_AIS_ERR_ACCESS_DENIED: SaAisErrorT = SaAisErrorT(38);
/// Not ready.
pub const SA_AIS_ERR_NOT_READY: SaAisErrorT = SaAisErrorT(39);
/// A deployment error.
pub const SA_AIS_ERR_DEPLOYMENT: SaAisErrorT = SaAisErrorT(40);

impl SaAisErrorT {
    /// The standard name of this code, or `None` for a value the standard does not define.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            SA_AIS_OK => "SA_AIS_OK",
            SA_AIS_ERR_LIBRARY => "SA_AIS_ERR_LIBRARY",
            SA_AIS_ERR_VERSION => "SA_AIS_ERR_VERSION",
            SA_AIS_ERR_INIT => "SA_AIS_ERR_INIT",
            SA_AIS_ERR_TIMEOUT => "SA_AIS_ERR_TIMEOUT",
            SA_AIS_ERR_TRY_AGAIN => "SA_AIS_ERR_TRY_AGAIN",
            SA_AIS_ERR_INVALID_PARAM => "SA_AIS_ERR_INVALID_PARAM",
            SA_AIS_ERR_NO_MEMORY => "SA_AIS_ERR_NO_MEMORY",
            SA_AIS_ERR_BAD_HANDLE => "SA_AIS_ERR_BAD_HANDLE",
            SA_AIS_ERR_BUSY => "SA_AIS_ERR_BUSY",
            SA_AIS_ERR_ACCESS => "SA_AIS_ERR_ACCESS",
            SA_AIS_ERR_NOT_EXIST => "SA_AIS_ERR_NOT_EXIST",
            SA_AIS_ERR_NAME_TOO_LONG => "SA_AIS_ERR_NAME_TOO_LONG",
            SA_AIS_ERR_EXIST => "SA_AIS_ERR_EXIST",
            SA_AIS_ERR_NO_SPACE => "SA_AIS_ERR_NO_SPACE",
            SA_AIS_ERR_INTERRUPT => "SA_AIS_ERR_INTERRUPT",
            SA_AIS_ERR_NAME_NOT_FOUND => "SA_AIS_ERR_NAME_NOT_FOUND",
            SA_AIS_ERR_NO_RESOURCES => "SA_AIS_ERR_NO_RESOURCES",
            SA_AIS_ERR_NOT_SUPPORTED => "SA_AIS_ERR_NOT_SUPPORTED",
            SA_AIS_ERR_BAD_OPERATION => "SA_AIS_ERR_BAD_OPERATION",
            SA_AIS_ERR_FAILED_OPERATION => "SA_AIS_ERR_FAILED_OPERATION",
            SA_AIS_ERR_MESSAGE_ERROR => "SA_AIS_ERR_MESSAGE_ERROR",
            SA_AIS_ERR_QUEUE_FULL => "SA_AIS_ERR_QUEUE_FULL",
            SA_AIS_ERR_QUEUE_NOT_AVAILABLE => "SA_AIS_ERR_QUEUE_NOT_AVAILABLE",
            SA_AIS_ERR_BAD_FLAGS => "SA_AIS_ERR_BAD_FLAGS",
            SA_AIS_ERR_TOO_BIG => "SA_AIS_ERR_TOO_BIG",
            SA_AIS_ERR_NO_SECTIONS => "SA_AIS_ERR_NO_SECTIONS",
            SA_AIS_ERR_NO_OP => "SA_AIS_ERR_NO_OP",
            SA_AIS_ERR_REPAIR_PENDING => "SA_AIS_ERR_REPAIR_PENDING",
            SA_AIS_ERR_NO_BINDINGS => "SA_AIS_ERR_NO_BINDINGS",
            SA_AIS_ERR_UNAVAILABLE => "SA_AIS_ERR_UNAVAILABLE",
            SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED => "SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED",
            SA_AIS_ERR_CAMPAIGN_PROC_FAILED => "SA_AIS_ERR_CAMPAIGN_PROC_FAILED",
            SA_AIS_ERR_CAMPAIGN_CANCELED => "SA_AIS_ERR_CAMPAIGN_CANCELED",
            SA_AIS_ERR_CAMPAIGN_FAILED => "SA_AIS_ERR_CAMPAIGN_FAILED",
            SA_AIS_ERR_CAMPAIGN_SUSPENDED => "SA_AIS_ERR_CAMPAIGN_SUSPENDED",
            SA_AIS_ERR_CAMPAIGN_SUSPENDING => "SA_AIS_ERR_CAMPAIGN_SUSPENDING",
            SA_AIS_ERR_ACCESS_DENIED => "SA_AIS_ERR_ACCESS_DENIED",
            SA_AIS_ERR_NOT_READY => "SA_AIS_ERR_NOT_READY",
            SA_AIS_ERR_DEPLOYMENT => "SA_AIS_ERR_DEPLOYMENT",
            _ => return None,
        })
    }
}

impl fmt::Debug for SaAisErrorT {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "SaAisErrorT({})", self.0),
        }
    }
}

c_enum!(
    /// A service of the AIS, for instance the major id of a notification.
    SaServicesT
);
/// Hardware Platform Interface.
pub const SA_SVC_HPI: SaServicesT = SaServicesT(1);
/// Availability Management Framework.
pub const SA_SVC_AMF: SaServicesT = SaServicesT(2);
/// Cluster Membership.
pub const SA_SVC_CLM: SaServicesT = SaServicesT(3);
/// Checkpoint: this service.
pub const SA_SVC_CKPT: SaServicesT = SaServicesT(4);
/// Event.
pub const SA_SVC_EVT: SaServicesT = SaServicesT(5);
/// Message.
pub const SA_SVC_MSG: SaServicesT = SaServicesT(6);
/// Lock.
pub const SA_SVC_LCK: SaServicesT = SaServicesT(7);
/// Information Model Management.
pub const SA_SVC_IMMS: SaServicesT = SaServicesT(8);
/// Log. The misspelling `SCV` is the standard's own, kept for source compatibility.
pub const SA_SCV_LOG: SaServicesT = SaServicesT(9);
/// Notification.
pub const SA_SVC_NTF: SaServicesT = SaServicesT(10);
/// Naming.
pub const SA_SVC_NAM: SaServicesT = SaServicesT(11);
/// Timer.
pub const SA_SVC_TMR: SaServicesT = SaServicesT(12);
/// Software Management Framework.
pub const SA_SVC_SMF: SaServicesT = SaServicesT(13);
/// Security.
pub const SA_SVC_SEC: SaServicesT = SaServicesT(14);
/// Platform Management.
pub const SA_SVC_PLM: SaServicesT = SaServicesT(15);

// ---------------------------------------------------------------------------------------------
// saAis.h: structures
// ---------------------------------------------------------------------------------------------

/// The capacity of [`SaNameT::value`].
pub const SA_MAX_NAME_LENGTH: usize = 256;

/// A name of at most [`SA_MAX_NAME_LENGTH`] bytes; `length` counts the bytes of `value` in use.
/// `value` is not NUL-terminated.
///
/// `Debug` shows only the bytes in use (all of `value` if `length` is out of range).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaNameT {
    /// The number of bytes of `value` in use.
    pub length: SaUint16T,
    /// The name's bytes.
    pub value: [SaUint8T; SA_MAX_NAME_LENGTH],
}

const _: () = {
    assert!(size_of::<SaNameT>() == 258);
    assert!(align_of::<SaNameT>() == 2);
};
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(SaNameT, length) == 0);
    assert!(offset_of!(SaNameT, value) == 2);
};

impl fmt::Debug for SaNameT {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = self
            .value
            .get(..usize::from(self.length))
            .unwrap_or(&self.value);
        f.debug_struct("SaNameT")
            .field("length", &self.length)
            .field("value", &format_args!("\"{}\"", used.escape_ascii()))
            .finish()
    }
}

/// A specification version such as `{'B', 2, 2}`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaVersionT {
    /// An upper-case letter: `b'B'` for this service.
    pub releaseCode: SaUint8T,
    /// The major version.
    pub majorVersion: SaUint8T,
    /// The minor version, ignored on input to `saCkptInitialize`.
    pub minorVersion: SaUint8T,
}

const _: () = {
    assert!(size_of::<SaVersionT>() == 3);
    assert!(align_of::<SaVersionT>() == 1);
};
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(SaVersionT, releaseCode) == 0);
    assert!(offset_of!(SaVersionT, majorVersion) == 1);
    assert!(offset_of!(SaVersionT, minorVersion) == 2);
};

// ---------------------------------------------------------------------------------------------
// saCkpt.h: handles and flags
// ---------------------------------------------------------------------------------------------

/// A library handle, from `saCkptInitialize`. 0 is never valid.
pub type SaCkptHandleT = SaUint64T;
/// A checkpoint handle, from a checkpoint open. 0 is never valid.
pub type SaCkptCheckpointHandleT = SaUint64T;
/// A section iteration handle. 0 is never valid.
pub type SaCkptSectionIterationHandleT = SaUint64T;

/// Creation flags: exactly one `SA_CKPT_WR_*` mode, optionally with
/// [`SA_CKPT_CHECKPOINT_COLLOCATED`].
pub type SaCkptCheckpointCreationFlagsT = SaUint32T;
/// Synchronous update of every replica.
pub const SA_CKPT_WR_ALL_REPLICAS: SaCkptCheckpointCreationFlagsT = 0x1;
/// Asynchronous update through the active replica, atomic per call.
pub const SA_CKPT_WR_ACTIVE_REPLICA: SaCkptCheckpointCreationFlagsT = 0x2;
/// Asynchronous update through the active replica; an interrupted call may corrupt sections.
pub const SA_CKPT_WR_ACTIVE_REPLICA_WEAK: SaCkptCheckpointCreationFlagsT = 0x4;
/// The users choose the active replica with `saCkptActiveReplicaSet`.
pub const SA_CKPT_CHECKPOINT_COLLOCATED: SaCkptCheckpointCreationFlagsT = 0x8;

/// Open flags.
pub type SaCkptCheckpointOpenFlagsT = SaUint32T;
/// Open for reading.
pub const SA_CKPT_CHECKPOINT_READ: SaCkptCheckpointOpenFlagsT = 0x1;
/// Open for writing.
pub const SA_CKPT_CHECKPOINT_WRITE: SaCkptCheckpointOpenFlagsT = 0x2;
/// Create the checkpoint if it does not exist.
pub const SA_CKPT_CHECKPOINT_CREATE: SaCkptCheckpointOpenFlagsT = 0x4;

// ---------------------------------------------------------------------------------------------
// saCkpt.h: structures
// ---------------------------------------------------------------------------------------------

/// The attributes a checkpoint is created with.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaCkptCheckpointCreationAttributesT {
    /// One `SA_CKPT_WR_*` mode, optionally with [`SA_CKPT_CHECKPOINT_COLLOCATED`].
    pub creationFlags: SaCkptCheckpointCreationFlagsT,
    /// The net bytes of application data each replica can hold.
    pub checkpointSize: SaSizeT,
    /// How long the checkpoint outlives its last close (a duration).
    pub retentionDuration: SaTimeT,
    /// The most sections; 1 means a single default section.
    pub maxSections: SaUint32T,
    /// The largest section, in bytes.
    pub maxSectionSize: SaSizeT,
    /// The longest section id, in bytes.
    pub maxSectionIdSize: SaSizeT,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    type T = SaCkptCheckpointCreationAttributesT;
    assert!(size_of::<T>() == 48);
    assert!(align_of::<T>() == 8);
    assert!(offset_of!(T, creationFlags) == 0);
    assert!(offset_of!(T, checkpointSize) == 8);
    assert!(offset_of!(T, retentionDuration) == 16);
    assert!(offset_of!(T, maxSections) == 24);
    assert!(offset_of!(T, maxSectionSize) == 32);
    assert!(offset_of!(T, maxSectionIdSize) == 40);
};

/// A section id: `idLen` bytes at `id`, compared by length and bytes (not a C string).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SaCkptSectionIdT {
    /// The number of bytes at `id`.
    pub idLen: SaUint16T,
    /// The id's bytes; NULL when `idLen` is 0.
    pub id: *mut SaUint8T,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<SaCkptSectionIdT>() == 16);
    assert!(align_of::<SaCkptSectionIdT>() == 8);
    assert!(offset_of!(SaCkptSectionIdT, idLen) == 0);
    assert!(offset_of!(SaCkptSectionIdT, id) == 8);
};

/// The empty id that names the default section of a checkpoint with `maxSections == 1`.
pub const SA_CKPT_DEFAULT_SECTION_ID: SaCkptSectionIdT = SaCkptSectionIdT {
    idLen: 0,
    id: core::ptr::null_mut(),
};
/// The empty id that asks `saCkptSectionCreate` to generate an id (when `maxSections > 1`).
/// The same bits as [`SA_CKPT_DEFAULT_SECTION_ID`].
pub const SA_CKPT_GENERATED_SECTION_ID: SaCkptSectionIdT = SaCkptSectionIdT {
    idLen: 0,
    id: core::ptr::null_mut(),
};

/// The attributes of `saCkptSectionCreate`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SaCkptSectionCreationAttributesT {
    /// In/out: a generated id is written back through it.
    pub sectionId: *mut SaCkptSectionIdT,
    /// Absolute; [`SA_TIME_END`] means never.
    pub expirationTime: SaTimeT,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    type T = SaCkptSectionCreationAttributesT;
    assert!(size_of::<T>() == 16);
    assert!(align_of::<T>() == 8);
    assert!(offset_of!(T, sectionId) == 0);
    assert!(offset_of!(T, expirationTime) == 8);
};

c_enum!(
    /// The state of a section.
    SaCkptSectionStateT
);
/// The section's data is whole.
pub const SA_CKPT_SECTION_VALID: SaCkptSectionStateT = SaCkptSectionStateT(1);
/// An interrupted weak write left the section corrupted: it can only be overwritten or deleted.
pub const SA_CKPT_SECTION_CORRUPTED: SaCkptSectionStateT = SaCkptSectionStateT(2);

/// What `saCkptSectionIterationNext` reports about a section.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SaCkptSectionDescriptorT {
    /// The section's id; the library owns the bytes.
    pub sectionId: SaCkptSectionIdT,
    /// Absolute; [`SA_TIME_END`] means never.
    pub expirationTime: SaTimeT,
    /// The bytes of data in the section.
    pub sectionSize: SaSizeT,
    /// Valid or corrupted.
    pub sectionState: SaCkptSectionStateT,
    /// The absolute time of the last update.
    pub lastUpdate: SaTimeT,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    type T = SaCkptSectionDescriptorT;
    assert!(size_of::<T>() == 48);
    assert!(align_of::<T>() == 8);
    assert!(offset_of!(T, sectionId) == 0);
    assert!(offset_of!(T, expirationTime) == 16);
    assert!(offset_of!(T, sectionSize) == 24);
    assert!(offset_of!(T, sectionState) == 32);
    assert!(offset_of!(T, lastUpdate) == 40);
};

c_enum!(
    /// Which sections an iteration returns.
    SaCkptSectionsChosenT
);
/// Sections whose expiration time is [`SA_TIME_END`].
pub const SA_CKPT_SECTIONS_FOREVER: SaCkptSectionsChosenT = SaCkptSectionsChosenT(1);
/// Sections that expire at or before the given time.
pub const SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME: SaCkptSectionsChosenT = SaCkptSectionsChosenT(2);
/// Sections that expire at or after the given time.
pub const SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME: SaCkptSectionsChosenT = SaCkptSectionsChosenT(3);
/// Corrupted sections.
pub const SA_CKPT_SECTIONS_CORRUPTED: SaCkptSectionsChosenT = SaCkptSectionsChosenT(4);
/// Every section.
pub const SA_CKPT_SECTIONS_ANY: SaCkptSectionsChosenT = SaCkptSectionsChosenT(5);

/// One element of a read or write vector.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SaCkptIOVectorElementT {
    /// The section to access.
    pub sectionId: SaCkptSectionIdT,
    /// The data; for a read, NULL asks the library to allocate the buffer.
    pub dataBuffer: *mut c_void,
    /// The bytes to write, or the most to read.
    pub dataSize: SaSizeT,
    /// Where in the section the access starts.
    pub dataOffset: SaOffsetT,
    /// Set by a read to the bytes read; ignored by a write.
    pub readSize: SaSizeT,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    type T = SaCkptIOVectorElementT;
    assert!(size_of::<T>() == 48);
    assert!(align_of::<T>() == 8);
    assert!(offset_of!(T, sectionId) == 0);
    assert!(offset_of!(T, dataBuffer) == 16);
    assert!(offset_of!(T, dataSize) == 24);
    assert!(offset_of!(T, dataOffset) == 32);
    assert!(offset_of!(T, readSize) == 40);
};

/// What `saCkptCheckpointStatusGet` reports, in the B.02.02 layout (`memoryUsed` is
/// `SaSizeT`). Clients that initialized with major version 1 get
/// [`SaCkptCheckpointDescriptorB01T`] instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaCkptCheckpointDescriptorT {
    /// The attributes the checkpoint was created with.
    pub checkpointCreationAttributes: SaCkptCheckpointCreationAttributesT,
    /// The number of sections, the default section included.
    pub numberOfSections: SaUint32T,
    /// The bytes of stored data: the sum of the section sizes.
    pub memoryUsed: SaSizeT,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    type T = SaCkptCheckpointDescriptorT;
    assert!(size_of::<T>() == 64);
    assert!(align_of::<T>() == 8);
    assert!(offset_of!(T, checkpointCreationAttributes) == 0);
    assert!(offset_of!(T, numberOfSections) == 48);
    assert!(offset_of!(T, memoryUsed) == 56);
};

/// The status descriptor as the B.01 and B.02.01 headers (and openais) declare it, with a
/// 32-bit `memoryUsed`: 56 bytes on 64-bit targets instead of 64.
///
/// Not part of `saCkpt.h`. The library writes this layout for clients that initialized with
/// major version 1, whose programs were built against those headers; writing the B.02.02
/// layout would overrun their 56-byte structure.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SaCkptCheckpointDescriptorB01T {
    /// The attributes the checkpoint was created with.
    pub checkpointCreationAttributes: SaCkptCheckpointCreationAttributesT,
    /// The number of sections, the default section included.
    pub numberOfSections: SaUint32T,
    /// The bytes of stored data, truncated to 32 bits.
    pub memoryUsed: SaUint32T,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    type T = SaCkptCheckpointDescriptorB01T;
    assert!(size_of::<T>() == 56);
    assert!(align_of::<T>() == 8);
    assert!(offset_of!(T, checkpointCreationAttributes) == 0);
    assert!(offset_of!(T, numberOfSections) == 48);
    assert!(offset_of!(T, memoryUsed) == 52);
};

c_enum!(
    /// A checkpoint state value in a state-change notification.
    SaCkptCheckpointStatusT
);
/// The checkpoint reached `maxSections`.
pub const SA_CKPT_SECTION_RESOURCES_EXHAUSTED: SaCkptCheckpointStatusT = SaCkptCheckpointStatusT(1);
/// The checkpoint is below `maxSections` again.
pub const SA_CKPT_SECTION_RESOURCES_AVAILABLE: SaCkptCheckpointStatusT = SaCkptCheckpointStatusT(2);

c_enum!(
    /// The state id in a state-change notification.
    SaCkptStateT
);
/// The state id of [`SaCkptCheckpointStatusT`] values.
pub const SA_CKPT_CHECKPOINT_STATUS: SaCkptStateT = SaCkptStateT(1);

// ---------------------------------------------------------------------------------------------
// saCkpt.h: callbacks
// ---------------------------------------------------------------------------------------------

/// Reports the outcome of `saCkptCheckpointOpenAsync`: (invocation, checkpoint handle, error).
pub type SaCkptCheckpointOpenCallbackT =
    unsafe extern "C" fn(SaInvocationT, SaCkptCheckpointHandleT, SaAisErrorT);

/// Reports the outcome of `saCkptCheckpointSynchronizeAsync`: (invocation, error).
pub type SaCkptCheckpointSynchronizeCallbackT = unsafe extern "C" fn(SaInvocationT, SaAisErrorT);

/// The callbacks given to `saCkptInitialize`; `None` is C's NULL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SaCkptCallbacksT {
    /// Called for `saCkptCheckpointOpenAsync`.
    pub saCkptCheckpointOpenCallback: Option<SaCkptCheckpointOpenCallbackT>,
    /// Called for `saCkptCheckpointSynchronizeAsync`.
    pub saCkptCheckpointSynchronizeCallback: Option<SaCkptCheckpointSynchronizeCallbackT>,
}

#[cfg(target_pointer_width = "64")]
const _: () = {
    type T = SaCkptCallbacksT;
    assert!(size_of::<T>() == 16);
    assert!(align_of::<T>() == 8);
    assert!(offset_of!(T, saCkptCheckpointOpenCallback) == 0);
    assert!(offset_of!(T, saCkptCheckpointSynchronizeCallback) == 8);
};

/// The OpenSAF arrival callback of `opensaf/cpsv_papi.h`: (checkpoint handle, ioVector,
/// numberOfElements).
#[allow(
    non_camel_case_types,
    reason = "the name is OpenSAF's, as in the C header"
)]
pub type ncsCkptCkptArrivalCallbackT =
    unsafe extern "C" fn(SaCkptCheckpointHandleT, *mut SaCkptIOVectorElementT, SaUint32T);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_run_from_one_to_forty_with_a_name_for_each() {
        let named = (-5..100).filter(|&code| SaAisErrorT(code).name().is_some());
        assert!(named.eq(1..=40));
    }

    #[test]
    fn every_error_name_is_distinct() {
        let mut names: Vec<_> = (1..=40)
            .filter_map(|code| SaAisErrorT(code).name())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 40);
    }

    #[test]
    fn debug_of_a_standard_error_code_is_its_name() {
        assert_eq!(format!("{SA_AIS_ERR_NOT_EXIST:?}"), "SA_AIS_ERR_NOT_EXIST");
        assert_eq!(format!("{SA_AIS_OK:?}"), "SA_AIS_OK");
    }

    #[test]
    fn debug_of_an_unknown_error_code_shows_the_number() {
        assert_eq!(format!("{:?}", SaAisErrorT(0)), "SaAisErrorT(0)");
        assert_eq!(format!("{:?}", SaAisErrorT(41)), "SaAisErrorT(41)");
    }

    #[test]
    fn default_and_generated_section_ids_are_the_same_empty_id() {
        for sut in [SA_CKPT_DEFAULT_SECTION_ID, SA_CKPT_GENERATED_SECTION_ID] {
            assert_eq!(sut.idLen, 0);
            assert!(sut.id.is_null());
        }
    }

    #[test]
    fn name_debug_shows_only_the_bytes_in_use() {
        let mut sut = SaNameT {
            length: 11,
            value: [b'x'; SA_MAX_NAME_LENGTH],
        };
        sut.value[..11].copy_from_slice(b"safCkpt=a\n\0");
        assert_eq!(
            format!("{sut:?}"),
            r#"SaNameT { length: 11, value: "safCkpt=a\n\x00" }"#
        );
    }

    #[test]
    fn name_debug_with_an_oversized_length_shows_the_whole_value() {
        let sut = SaNameT {
            length: 300,
            value: [b'y'; SA_MAX_NAME_LENGTH],
        };
        let shown = format!("{sut:?}");
        assert!(shown.starts_with("SaNameT { length: 300, value: \"yyy"));
        assert_eq!(shown.matches('y').count(), SA_MAX_NAME_LENGTH);
    }

    #[test]
    fn time_end_and_max_are_the_largest_time_and_unknown_the_smallest() {
        assert_eq!(SA_TIME_MAX, SA_TIME_END);
        assert_eq!(SA_TIME_END, SaTimeT::MAX);
        assert_eq!(SA_TIME_UNKNOWN, SaTimeT::MIN);
        assert_eq!(SA_TIME_ONE_DAY, 24 * SA_TIME_ONE_HOUR);
        assert_eq!(SA_TIME_ONE_HOUR, 60 * SA_TIME_ONE_MINUTE);
        assert_eq!(SA_TIME_ONE_MINUTE, 60 * SA_TIME_ONE_SECOND);
        assert_eq!(SA_TIME_ONE_SECOND, 1_000 * SA_TIME_ONE_MILLISECOND);
        assert_eq!(SA_TIME_ONE_MILLISECOND, 1_000 * SA_TIME_ONE_MICROSECOND);
    }

    #[test]
    fn callbacks_default_to_null() {
        let sut = SaCkptCallbacksT::default();
        assert!(sut.saCkptCheckpointOpenCallback.is_none());
        assert!(sut.saCkptCheckpointSynchronizeCallback.is_none());
    }
}
