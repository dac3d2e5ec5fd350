//! The library life cycle: `saCkptInitialize`, `saCkptSelectionObjectGet`, `saCkptDispatch`,
//! `saCkptFinalize`, and OpenSAF's `ncsCkptRegisterCkptArrivalCallback`.

use ckpt_agent::{
    ArrivalElement, Callbacks, Checkpoint, CheckpointHandle, DispatchFlags, Invocation, Library,
    Version, negotiate,
};

use crate::error::code;
use crate::ffi::{guard, non_null};
use crate::handles::{self, LibraryEntry};
use crate::types::{
    SA_AIS_ERR_BAD_HANDLE, SA_AIS_ERR_INVALID_PARAM, SA_AIS_ERR_VERSION, SA_AIS_OK, SaAisErrorT,
    SaCkptCallbacksT, SaCkptCheckpointOpenCallbackT, SaCkptCheckpointSynchronizeCallbackT,
    SaCkptHandleT, SaCkptIOVectorElementT, SaCkptSectionIdT, SaDispatchFlagsT, SaSelectionObjectT,
    SaVersionT, ncsCkptCkptArrivalCallbackT,
};

/// `saCkptInitialize`: negotiates the version and creates a library handle.
///
/// # Arguments
///
/// - `ckpt_handle` (out): the new library handle.
/// - `callbacks` (in, may be NULL): the open and synchronize callbacks; NULL members are not
///   registered.
/// - `version` (in/out): the version asked for; on return, the version the library provides
///   (`{'B', 2, 2}` for any B.01 or B.02 request), also when the answer is
///   `SA_AIS_ERR_VERSION`.
///
/// The requested version is remembered: a client that asked for major version 0 or 1 gets the
/// B.01 behaviour (the 56-byte status descriptor, bare checkpoint names, no B.02-only codes).
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL `ckpt_handle` or `version`),
/// `SA_AIS_ERR_VERSION`, `SA_AIS_ERR_NO_MEMORY`, `SA_AIS_ERR_NO_RESOURCES`,
/// `SA_AIS_ERR_LIBRARY`.
///
/// # Safety
///
/// Each pointer is NULL or valid for its access: `ckpt_handle` writable, `callbacks` readable,
/// `version` readable and writable. Registered callbacks are called from `saCkptDispatch`
/// until the handle is finalized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptInitialize(
    ckpt_handle: *mut SaCkptHandleT,
    callbacks: *const SaCkptCallbacksT,
    version: *mut SaVersionT,
) -> SaAisErrorT {
    guard(|| {
        non_null(ckpt_handle)?;
        non_null(version)?;
        // SAFETY: non-NULL, and readable by the caller's contract.
        let asked = unsafe { version.read() };
        let requested = Version::new(asked.releaseCode, asked.majorVersion, asked.minorVersion);
        let negotiated = negotiate(requested);
        let (Ok(granted) | Err(granted)) = negotiated;
        let reported = SaVersionT {
            releaseCode: granted.release,
            majorVersion: granted.major,
            minorVersion: granted.minor,
        };
        // SAFETY: non-NULL, and writable by the caller's contract.
        unsafe { version.write(reported) };
        if negotiated.is_err() {
            return Err(SA_AIS_ERR_VERSION);
        }
        // SAFETY: NULL or readable, by the caller's contract.
        let registered = unsafe { callbacks.as_ref() }.copied().unwrap_or_default();
        let handle = handles::new_library_handle();
        let callbacks = Callbacks {
            open: registered
                .saCkptCheckpointOpenCallback
                .map(|cb| open_callback(cb, handle, requested)),
            synchronize: registered
                .saCkptCheckpointSynchronizeCallback
                .map(|cb| synchronize_callback(cb, requested)),
        };
        let library = Library::initialize(requested, callbacks).map_err(|e| code(e, requested))?;
        handles::insert_library(
            handle,
            LibraryEntry {
                library,
                version: requested,
            },
        );
        // SAFETY: non-NULL, and writable by the caller's contract.
        unsafe { ckpt_handle.write(handle) };
        Ok(())
    })
}

/// The agent's open callback for a C one: enters the opened checkpoint in the handle table
/// and passes its handle (0 and the error when the open failed).
fn open_callback(
    cb: SaCkptCheckpointOpenCallbackT,
    library: u64,
    version: Version,
) -> ckpt_agent::OpenCallback {
    Box::new(
        move |invocation: Invocation, opened: ckpt_agent::Result<Checkpoint>| {
            let (handle, error) = match opened {
                Ok(checkpoint) => match handles::insert_checkpoint(checkpoint, library) {
                    Ok(handle) => (handle, SA_AIS_OK),
                    // The library handle was finalized meanwhile: the checkpoint closes here.
                    Err(_closed) => (0, SA_AIS_ERR_BAD_HANDLE),
                },
                Err(e) => (0, code(e, version)),
            };
            // SAFETY: the application registered `cb` with saCkptInitialize for exactly this
            // call, from saCkptDispatch, with these argument types.
            unsafe { cb(invocation, handle, error) };
        },
    )
}

/// The agent's synchronize callback for a C one.
fn synchronize_callback(
    cb: SaCkptCheckpointSynchronizeCallbackT,
    version: Version,
) -> ckpt_agent::SynchronizeCallback {
    Box::new(
        move |invocation: Invocation, outcome: ckpt_agent::Result<()>| {
            let error = outcome.map_or_else(|e| code(e, version), |()| SA_AIS_OK);
            // SAFETY: the application registered `cb` with saCkptInitialize for exactly this
            // call, from saCkptDispatch, with these argument types.
            unsafe { cb(invocation, error) };
        },
    )
}

/// `saCkptSelectionObjectGet`: a file descriptor that polls readable while callbacks are
/// pending on `ckpt_handle`. It stays valid until `saCkptFinalize`.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL `selection_object`, checked first),
/// `SA_AIS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `selection_object` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSelectionObjectGet(
    ckpt_handle: SaCkptHandleT,
    selection_object: *mut SaSelectionObjectT,
) -> SaAisErrorT {
    guard(|| {
        non_null(selection_object)?;
        let entry = handles::library(ckpt_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        let fd = entry
            .library
            .selection_object()
            .map_err(|e| code(e, entry.version))?;
        let fd = SaSelectionObjectT::try_from(fd).map_err(|_| SA_AIS_ERR_BAD_HANDLE)?;
        // SAFETY: non-NULL, and writable by the caller's contract.
        unsafe { selection_object.write(fd) };
        Ok(())
    })
}

/// `saCkptDispatch`: runs pending callbacks in the calling thread. `SA_DISPATCH_ONE` runs at
/// most one and `SA_DISPATCH_ALL` all that are pending (both return at once if none is);
/// `SA_DISPATCH_BLOCKING` runs them as they come and returns after `saCkptFinalize`.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (a flag value other than 1..=3, checked first),
/// `SA_AIS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// The registered callbacks must be safe to call from this thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptDispatch(
    ckpt_handle: SaCkptHandleT,
    dispatch_flags: SaDispatchFlagsT,
) -> SaAisErrorT {
    guard(|| {
        let flags = u32::try_from(dispatch_flags.0)
            .ok()
            .and_then(|f| DispatchFlags::from_c(f).ok())
            .ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        let entry = handles::library(ckpt_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        entry
            .library
            .dispatch(flags)
            .map_err(|e| code(e, entry.version))
    })
}

/// `saCkptFinalize`: closes every checkpoint opened through `ckpt_handle` (their retention
/// starts), cancels pending callbacks, closes the selection object and invalidates the handle
/// with its checkpoint and iteration handles. A blocking dispatch on it returns.
///
/// Errors: `SA_AIS_ERR_BAD_HANDLE` (also for a second finalize).
///
/// # Safety
///
/// None beyond the C calling convention: any handle value is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptFinalize(ckpt_handle: SaCkptHandleT) -> SaAisErrorT {
    guard(|| {
        let removed = handles::remove_library(ckpt_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        let entry = &removed.library;
        let outcome = entry.library.finalize().map_err(|e| code(e, entry.version));
        drop(removed);
        outcome
    })
}

/// `ncsCkptRegisterCkptArrivalCallback` (OpenSAF, `opensaf/cpsv_papi.h`): from now on,
/// updates made through other handles (of this or other processes) to checkpoints opened for
/// reading through `ckpt_handle` are reported to `callback` from `saCkptDispatch`.
///
/// Each report is an array of `SaCkptIOVectorElementT`, one per section written, with
/// `sectionId` (its bytes valid only during the call), `dataOffset` and `dataSize` of the
/// update (for a section create or overwrite, offset 0 and the new size), `dataBuffer` NULL
/// and `readSize` 0: the callback reads the data it wants with `saCkptCheckpointRead`.
/// Registering again replaces the callback.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL `callback`, checked first),
/// `SA_AIS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `callback` is NULL or a function of the declared type, callable from the dispatching
/// thread until the handle is finalized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ncsCkptRegisterCkptArrivalCallback(
    ckpt_handle: SaCkptHandleT,
    callback: Option<ncsCkptCkptArrivalCallbackT>,
) -> SaAisErrorT {
    guard(|| {
        let callback = callback.ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        let entry = handles::library(ckpt_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        entry
            .library
            .register_arrival_callback(Box::new(move |h, elements| {
                deliver_arrival(callback, h, elements);
            }))
            .map_err(|e| code(e, entry.version))
    })
}

/// Calls a C arrival callback with the elements as an `SaCkptIOVectorElementT` array whose
/// section ids point into a copy owned by this frame.
fn deliver_arrival(
    callback: ncsCkptCkptArrivalCallbackT,
    checkpoint: CheckpointHandle,
    elements: &[ArrivalElement],
) {
    // Ids longer than an SaCkptSectionIdT can express cannot be created from C; skip them.
    let elements: Vec<&ArrivalElement> = elements
        .iter()
        .filter(|e| u16::try_from(e.section_id.len()).is_ok())
        .collect();
    if elements.is_empty() {
        return;
    }
    let mut ids: Vec<u8> = elements
        .iter()
        .flat_map(|e| e.section_id.iter().copied())
        .collect();
    let base = ids.as_mut_ptr();
    let mut at = 0;
    let mut vector: Vec<SaCkptIOVectorElementT> = elements
        .iter()
        .map(|e| {
            let len = e.section_id.len();
            let id = if len == 0 {
                core::ptr::null_mut()
            } else {
                base.wrapping_add(at)
            };
            at += len;
            SaCkptIOVectorElementT {
                sectionId: SaCkptSectionIdT {
                    // Filtered above: every length fits.
                    idLen: u16::try_from(len).unwrap_or(0),
                    id,
                },
                dataBuffer: core::ptr::null_mut(),
                dataSize: e.size,
                dataOffset: e.offset,
                readSize: 0,
            }
        })
        .collect();
    let count = u32::try_from(vector.len()).unwrap_or(u32::MAX);
    // SAFETY: the application registered `callback` for this call, made from saCkptDispatch;
    // `vector` holds `count` elements and its ids point into `ids`, both alive (and not
    // otherwise borrowed) until the call returns.
    unsafe { callback(checkpoint.0, vector.as_mut_ptr(), count) };
    drop(vector);
    drop(ids);
}
