//! Checkpoint management: open (blocking and asynchronous), close, unlink, retention,
//! the active replica and status.

use ckpt_agent::{CreationAttributes, CreationFlags, OpenFlags};

use crate::error::code;
use crate::ffi::{Outcome, guard, name, non_null};
use crate::handles;
use crate::types::{
    SA_AIS_ERR_BAD_FLAGS, SA_AIS_ERR_BAD_HANDLE, SA_AIS_ERR_INVALID_PARAM, SaAisErrorT,
    SaCkptCheckpointCreationAttributesT, SaCkptCheckpointDescriptorB01T,
    SaCkptCheckpointDescriptorT, SaCkptCheckpointHandleT, SaCkptCheckpointOpenFlagsT,
    SaCkptHandleT, SaInvocationT, SaNameT, SaTimeT,
};

fn attributes(c: &SaCkptCheckpointCreationAttributesT) -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags(c.creationFlags),
        checkpoint_size: c.checkpointSize,
        retention_duration: c.retentionDuration,
        max_sections: c.maxSections,
        max_section_size: c.maxSectionSize,
        max_section_id_size: c.maxSectionIdSize,
    }
}

fn c_attributes(a: &CreationAttributes) -> SaCkptCheckpointCreationAttributesT {
    SaCkptCheckpointCreationAttributesT {
        creationFlags: a.creation_flags.0,
        checkpointSize: a.checkpoint_size,
        retentionDuration: a.retention_duration,
        maxSections: a.max_sections,
        maxSectionSize: a.max_section_size,
        maxSectionIdSize: a.max_section_id_size,
    }
}

/// The open checks that need no library handle, in ckpt-agent's order (flags, CREATE against
/// the attributes, the attributes, the timeout): what a call with an unknown handle reports
/// before `SA_AIS_ERR_BAD_HANDLE`.
fn check_open_arguments(
    attrs: Option<&CreationAttributes>,
    flags: OpenFlags,
    timeout: SaTimeT,
) -> Outcome {
    if flags.0 == 0 || flags.has_unknown_bits() {
        return Err(SA_AIS_ERR_BAD_FLAGS);
    }
    match (flags.contains(OpenFlags::CREATE), attrs) {
        (true, None) | (false, Some(_)) => return Err(SA_AIS_ERR_INVALID_PARAM),
        (true, Some(a)) => {
            let sizes_fit = u64::from(a.max_sections)
                .checked_mul(a.max_section_size)
                .is_some_and(|cap| a.checkpoint_size <= cap);
            if a.creation_flags.validate().is_err()
                || a.max_sections == 0
                || a.max_section_size == 0
                || a.retention_duration < 0
                || !sizes_fit
            {
                return Err(SA_AIS_ERR_INVALID_PARAM);
            }
        }
        (false, None) => {}
    }
    if timeout < 0 {
        return Err(SA_AIS_ERR_INVALID_PARAM);
    }
    Ok(())
}

/// `saCkptCheckpointOpen`: opens, and with `SA_CKPT_CHECKPOINT_CREATE` creates, a checkpoint.
///
/// # Arguments
///
/// - `checkpoint_name`: 1..=256 bytes; for a B.02 client a DN starting with `safCkpt=`.
/// - `attrs`: required with CREATE, NULL without; an existing checkpoint must have the same
///   attributes (the retention duration is compared for B.01 clients only).
/// - `timeout`: a duration in ns (`SA_TIME_MAX`: no limit).
/// - `checkpoint_handle` (out): the new checkpoint handle.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL name or out pointer, name length, B.02 name
/// without `safCkpt=`, CREATE without attributes or attributes without CREATE, invalid
/// attributes, negative timeout), `SA_AIS_ERR_BAD_FLAGS`, `SA_AIS_ERR_BAD_HANDLE`,
/// `SA_AIS_ERR_NOT_EXIST`, `SA_AIS_ERR_EXIST`, `SA_AIS_ERR_NO_RESOURCES`,
/// `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_TRY_AGAIN`.
///
/// # Safety
///
/// `checkpoint_name` and `attrs` are NULL or readable; `checkpoint_handle` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointOpen(
    ckpt_handle: SaCkptHandleT,
    checkpoint_name: *const SaNameT,
    attrs: *const SaCkptCheckpointCreationAttributesT,
    flags: SaCkptCheckpointOpenFlagsT,
    timeout: SaTimeT,
    checkpoint_handle: *mut SaCkptCheckpointHandleT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable, by the caller's contract.
        let name = unsafe { name(checkpoint_name) }?;
        non_null(checkpoint_handle)?;
        // SAFETY: NULL or readable, by the caller's contract.
        let attrs = unsafe { attrs.as_ref() }.map(attributes);
        let flags = OpenFlags(flags);
        let Some(library) = handles::library(ckpt_handle) else {
            check_open_arguments(attrs.as_ref(), flags, timeout)?;
            return Err(SA_AIS_ERR_BAD_HANDLE);
        };
        let checkpoint = library
            .library
            .open(name, attrs.as_ref(), flags, timeout)
            .map_err(|e| code(e, library.version))?;
        let handle = handles::insert_checkpoint(checkpoint, ckpt_handle)
            .map_err(|_closed| SA_AIS_ERR_BAD_HANDLE)?;
        // SAFETY: non-NULL, and writable by the caller's contract.
        unsafe { checkpoint_handle.write(handle) };
        Ok(())
    })
}

/// `saCkptCheckpointOpenAsync`: the checks of `saCkptCheckpointOpen` now, the open itself in
/// the background; the open callback receives `invocation`, the checkpoint handle (0 on
/// failure) and the outcome from `saCkptDispatch`.
///
/// Errors: as `saCkptCheckpointOpen` (without the timeout), and `SA_AIS_ERR_INIT` when no
/// open callback was registered.
///
/// # Safety
///
/// `checkpoint_name` and `attrs` are NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointOpenAsync(
    ckpt_handle: SaCkptHandleT,
    invocation: SaInvocationT,
    checkpoint_name: *const SaNameT,
    attrs: *const SaCkptCheckpointCreationAttributesT,
    flags: SaCkptCheckpointOpenFlagsT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable, by the caller's contract.
        let name = unsafe { name(checkpoint_name) }?;
        // SAFETY: NULL or readable, by the caller's contract.
        let attrs = unsafe { attrs.as_ref() }.map(attributes);
        let flags = OpenFlags(flags);
        let Some(library) = handles::library(ckpt_handle) else {
            check_open_arguments(attrs.as_ref(), flags, 0)?;
            return Err(SA_AIS_ERR_BAD_HANDLE);
        };
        library
            .library
            .open_async(invocation, name, attrs.as_ref(), flags)
            .map_err(|e| code(e, library.version))
    })
}

/// `saCkptCheckpointClose`: invalidates the handle (and its iteration handles) and cancels
/// its pending callbacks. At the last close on the node an unlinked checkpoint is deleted;
/// otherwise its retention starts.
///
/// Errors: `SA_AIS_ERR_BAD_HANDLE` (also after a close, or after the library handle was
/// finalized).
///
/// # Safety
///
/// None beyond the C calling convention: any handle value is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointClose(
    checkpoint_handle: SaCkptCheckpointHandleT,
) -> SaAisErrorT {
    guard(|| {
        let removed = handles::remove_checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        let entry = &removed.checkpoint;
        let outcome = entry.checkpoint.close().map_err(|e| code(e, entry.version));
        drop(removed);
        outcome
    })
}

/// `saCkptCheckpointUnlink`: the name disappears at once (an open with CREATE makes a new
/// checkpoint); open handles keep working, and the checkpoint is deleted at its last close.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL or malformed name), `SA_AIS_ERR_BAD_HANDLE`,
/// `SA_AIS_ERR_NOT_EXIST`.
///
/// # Safety
///
/// `checkpoint_name` is NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointUnlink(
    ckpt_handle: SaCkptHandleT,
    checkpoint_name: *const SaNameT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable, by the caller's contract.
        let name = unsafe { name(checkpoint_name) }?;
        let library = handles::library(ckpt_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        library
            .library
            .unlink(name)
            .map_err(|e| code(e, library.version))
    })
}

/// `saCkptCheckpointRetentionDurationSet` (a duration in ns; `SA_TIME_END`: forever).
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (negative), `SA_AIS_ERR_BAD_HANDLE`,
/// `SA_AIS_ERR_ACCESS` (B.02 clients without WRITE), `SA_AIS_ERR_BAD_OPERATION` (unlinked).
///
/// # Safety
///
/// None beyond the C calling convention: any handle value is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointRetentionDurationSet(
    checkpoint_handle: SaCkptCheckpointHandleT,
    retention_duration: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        if retention_duration < 0 {
            return Err(SA_AIS_ERR_INVALID_PARAM);
        }
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        entry
            .checkpoint
            .set_retention_duration(retention_duration)
            .map_err(|e| code(e, entry.version))
    })
}

/// `saCkptActiveReplicaSet`: makes this node's replica the active one.
///
/// Errors: `SA_AIS_ERR_BAD_HANDLE`, `SA_AIS_ERR_ACCESS` (not opened for WRITE),
/// `SA_AIS_ERR_BAD_OPERATION` (not collocated, or ALL_REPLICAS).
///
/// # Safety
///
/// None beyond the C calling convention: any handle value is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptActiveReplicaSet(
    checkpoint_handle: SaCkptCheckpointHandleT,
) -> SaAisErrorT {
    guard(|| {
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        entry
            .checkpoint
            .set_active_replica()
            .map_err(|e| code(e, entry.version))
    })
}

/// `saCkptCheckpointStatusGet`: the creation attributes (with the retention duration in
/// force), the number of sections and the bytes stored.
///
/// For a client that asked for major version 1 (or 0) the library writes the 56-byte B.01 layout
/// (`memoryUsed` a 32-bit count at offset 52, saturated at `UINT32_MAX`), which is what its
/// headers declare; for B.02 clients the 64-byte B.02.02 layout of `saCkpt.h`.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL, checked first), `SA_AIS_ERR_BAD_HANDLE`,
/// `SA_AIS_ERR_ACCESS` (B.02 clients without READ), `SA_AIS_ERR_NOT_EXIST` (no active
/// replica).
///
/// # Safety
///
/// `checkpoint_status` is NULL or writable for the descriptor of the client's version (56
/// bytes for B.01 clients, 64 for B.02 ones).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointStatusGet(
    checkpoint_handle: SaCkptCheckpointHandleT,
    checkpoint_status: *mut SaCkptCheckpointDescriptorT,
) -> SaAisErrorT {
    guard(|| {
        non_null(checkpoint_status)?;
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        let status = entry
            .checkpoint
            .status()
            .map_err(|e| code(e, entry.version))?;
        let checkpoint_creation_attributes = c_attributes(&status.attributes);
        if !entry.version.is_b02() {
            let b01 = SaCkptCheckpointDescriptorB01T {
                checkpointCreationAttributes: checkpoint_creation_attributes,
                numberOfSections: status.number_of_sections,
                memoryUsed: u32::try_from(status.memory_used).unwrap_or(u32::MAX),
            };
            // SAFETY: non-NULL; a B.01 client's descriptor is the 56-byte B.01 structure,
            // writable by the caller's contract. write_unaligned: its alignment is C's, which
            // the B.01 structure shares, but nothing is assumed.
            unsafe {
                checkpoint_status
                    .cast::<SaCkptCheckpointDescriptorB01T>()
                    .write_unaligned(b01);
            }
        } else {
            let b02 = SaCkptCheckpointDescriptorT {
                checkpointCreationAttributes: checkpoint_creation_attributes,
                numberOfSections: status.number_of_sections,
                memoryUsed: status.memory_used,
            };
            // SAFETY: non-NULL and writable for the B.02.02 descriptor by the caller's
            // contract.
            unsafe { checkpoint_status.write_unaligned(b02) };
        }
        Ok(())
    })
}
