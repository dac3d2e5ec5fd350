//! Section management: create (with generated ids), delete, expiration, id free, and the
//! section iteration.

use core::ffi::c_void;
use std::sync::PoisonError;

use ckpt_agent::{SectionState, SectionsChosen};

use crate::error::code;
use crate::ffi::{Outcome, bytes, check_buffer, free, guard, malloc_copy, non_null, section_id};
use crate::handles;
use crate::types::{
    SA_AIS_ERR_BAD_HANDLE, SA_AIS_ERR_INVALID_PARAM, SA_AIS_ERR_LIBRARY, SA_CKPT_SECTION_CORRUPTED,
    SA_CKPT_SECTION_VALID, SaAisErrorT, SaCkptCheckpointHandleT, SaCkptSectionCreationAttributesT,
    SaCkptSectionDescriptorT, SaCkptSectionIdT, SaCkptSectionIterationHandleT,
    SaCkptSectionsChosenT, SaSizeT, SaTimeT, SaUint8T,
};

/// `saCkptSectionCreate`: creates a section holding `initial_data`.
///
/// `attrs.sectionId` is in/out: the empty id `{0, NULL}` asks for a generated id (when
/// `maxSections > 1`), which is written back as a `malloc`ed `{idLen, id}`: a B.02 client
/// frees it with `saCkptSectionIdFree`, a B.01 client with `free()`. `attrs.expirationTime`
/// is absolute (`SA_TIME_END`: never).
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL `attrs` or `sectionId`, an id with a length but
/// no bytes or bytes but no length, NULL data with a size, an id longer than
/// maxSectionIdSize, an expiration already past, data larger than maxSectionSize),
/// `SA_AIS_ERR_BAD_HANDLE`, `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_NOT_EXIST` (no active replica),
/// `SA_AIS_ERR_EXIST` (the id exists, or maxSections is 1), `SA_AIS_ERR_NO_SPACE`,
/// `SA_AIS_ERR_NO_RESOURCES`, `SA_AIS_ERR_NO_MEMORY`.
///
/// # Safety
///
/// `attrs` is NULL or readable, and its `sectionId` NULL or readable and writable, with
/// `idLen` bytes at `id`; `initial_data` is NULL or readable for `initial_data_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionCreate(
    checkpoint_handle: SaCkptCheckpointHandleT,
    attrs: *mut SaCkptSectionCreationAttributesT,
    initial_data: *const c_void,
    initial_data_size: SaSizeT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable, by the caller's contract.
        let attrs = unsafe { attrs.as_ref() }.ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        let id_place = attrs.sectionId;
        // SAFETY: NULL or readable, by the caller's contract.
        let given = unsafe { id_place.as_ref() }.ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        // SAFETY: idLen bytes at id, by the caller's contract.
        let id = unsafe { section_id(given) }?;
        check_buffer(initial_data, initial_data_size)?;
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        // SAFETY: initial_data_size bytes at initial_data, by the caller's contract.
        let data = unsafe { bytes(initial_data, initial_data_size, entry.max_section_size) }?;
        let generate = id.is_empty();
        let created = entry
            .checkpoint
            .create_section((!generate).then_some(id), attrs.expirationTime, data)
            .map_err(|e| code(e, entry.version))?;
        if generate {
            let give_back = |created: &[u8]| -> Outcome {
                let id_len = u16::try_from(created.len()).map_err(|_| SA_AIS_ERR_LIBRARY)?;
                let copy = malloc_copy(created)?;
                let generated = SaCkptSectionIdT {
                    idLen: id_len,
                    id: copy,
                };
                // SAFETY: non-NULL (checked above), and writable by the caller's contract.
                unsafe { id_place.write(generated) };
                Ok(())
            };
            if let Err(failed) = give_back(&created) {
                // The caller cannot learn the id: take the section back.
                let _ = entry.checkpoint.delete_section(&created);
                return Err(failed);
            }
        }
        Ok(())
    })
}

/// `saCkptSectionDelete`.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL or malformed id, the default section),
/// `SA_AIS_ERR_BAD_HANDLE`, `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_NOT_EXIST`.
///
/// # Safety
///
/// `section_id` is NULL or readable, with `idLen` bytes at `id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionDelete(
    checkpoint_handle: SaCkptCheckpointHandleT,
    section_id: *const SaCkptSectionIdT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable, by the caller's contract.
        let id = unsafe { section_id.as_ref() }.ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        // SAFETY: idLen bytes at id, by the caller's contract.
        let id = unsafe { crate::ffi::section_id(id) }?;
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        entry
            .checkpoint
            .delete_section(id)
            .map_err(|e| code(e, entry.version))
    })
}

/// `saCkptSectionIdFree` (B.02): frees an id that `saCkptSectionCreate` generated.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL, checked first), `SA_AIS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `id` is NULL or an id `saCkptSectionCreate` generated and nobody freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionIdFree(
    checkpoint_handle: SaCkptCheckpointHandleT,
    id: *mut SaUint8T,
) -> SaAisErrorT {
    guard(|| {
        non_null(id)?;
        handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        // SAFETY: a live malloc allocation from saCkptSectionCreate, by the caller's contract.
        unsafe { free(id.cast()) };
        Ok(())
    })
}

/// `saCkptSectionExpirationTimeSet` (absolute; `SA_TIME_END`: never; a time already past
/// expires the section now).
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL or malformed id, the default section, a negative
/// time), `SA_AIS_ERR_BAD_HANDLE`, `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_NOT_EXIST`.
///
/// # Safety
///
/// `section_id` is NULL or readable, with `idLen` bytes at `id`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionExpirationTimeSet(
    checkpoint_handle: SaCkptCheckpointHandleT,
    section_id: *const SaCkptSectionIdT,
    expiration_time: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable, by the caller's contract.
        let id = unsafe { section_id.as_ref() }.ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        // SAFETY: idLen bytes at id, by the caller's contract.
        let id = unsafe { crate::ffi::section_id(id) }?;
        let Some(entry) = handles::checkpoint(checkpoint_handle) else {
            if expiration_time < 0 {
                return Err(SA_AIS_ERR_INVALID_PARAM);
            }
            return Err(SA_AIS_ERR_BAD_HANDLE);
        };
        entry
            .checkpoint
            .set_section_expiration(id, expiration_time)
            .map_err(|e| code(e, entry.version))
    })
}

/// `saCkptSectionIterationInitialize`: an iteration over the sections chosen
/// (`expiration_time` is used by the LEQ and GEQ choices only). Each section present for the
/// whole iteration is returned exactly once.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL out pointer or a choice other than 1..=5,
/// checked first; a negative time for LEQ/GEQ), `SA_AIS_ERR_BAD_HANDLE`,
/// `SA_AIS_ERR_ACCESS` (B.02 clients without READ), `SA_AIS_ERR_NOT_EXIST` (no active
/// replica).
///
/// # Safety
///
/// `section_iteration_handle` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionIterationInitialize(
    checkpoint_handle: SaCkptCheckpointHandleT,
    sections_chosen: SaCkptSectionsChosenT,
    expiration_time: SaTimeT,
    section_iteration_handle: *mut SaCkptSectionIterationHandleT,
) -> SaAisErrorT {
    guard(|| {
        non_null(section_iteration_handle)?;
        let chosen = u32::try_from(sections_chosen.0)
            .ok()
            .and_then(|c| SectionsChosen::from_c(c, expiration_time).ok())
            .ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        let Some(entry) = handles::checkpoint(checkpoint_handle) else {
            if let SectionsChosen::LeqExpirationTime(t) | SectionsChosen::GeqExpirationTime(t) =
                chosen
                && t < 0
            {
                return Err(SA_AIS_ERR_INVALID_PARAM);
            }
            return Err(SA_AIS_ERR_BAD_HANDLE);
        };
        let iterator = entry
            .checkpoint
            .sections(chosen)
            .map_err(|e| code(e, entry.version))?;
        let handle =
            handles::insert_iteration(iterator, checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        // SAFETY: non-NULL, and writable by the caller's contract.
        unsafe { section_iteration_handle.write(handle) };
        Ok(())
    })
}

/// `saCkptSectionIterationNext`: the next section, `SA_AIS_ERR_NO_SECTIONS` at the end.
///
/// The library owns the bytes `section_descriptor.sectionId.id` points to: they stay valid
/// until the next call on this iteration, its finalize, or the close of its checkpoint. The
/// default section has the empty id `{0, NULL}`.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL, checked first), `SA_AIS_ERR_BAD_HANDLE` (the
/// iteration was finalized, or its checkpoint closed, or its library finalized),
/// `SA_AIS_ERR_NO_SECTIONS`.
///
/// # Safety
///
/// `section_descriptor` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionIterationNext(
    section_iteration_handle: SaCkptSectionIterationHandleT,
    section_descriptor: *mut SaCkptSectionDescriptorT,
) -> SaAisErrorT {
    guard(|| {
        non_null(section_descriptor)?;
        let iteration =
            handles::iteration(section_iteration_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        let mut iteration = iteration.lock().unwrap_or_else(PoisonError::into_inner);
        let version = iteration.version;
        let section = iteration
            .iterator
            .next_section()
            .map_err(|e| code(e, version))?;
        let id_len = u16::try_from(section.id.len()).map_err(|_| SA_AIS_ERR_LIBRARY)?;
        iteration.last_id = section.id;
        let id = if id_len == 0 {
            core::ptr::null_mut()
        } else {
            iteration.last_id.as_mut_ptr()
        };
        let descriptor = SaCkptSectionDescriptorT {
            sectionId: SaCkptSectionIdT { idLen: id_len, id },
            expirationTime: section.expiration_time,
            sectionSize: section.size,
            sectionState: match section.state {
                SectionState::Valid => SA_CKPT_SECTION_VALID,
                SectionState::Corrupted => SA_CKPT_SECTION_CORRUPTED,
            },
            lastUpdate: section.last_update,
        };
        // SAFETY: non-NULL, and writable by the caller's contract.
        unsafe { section_descriptor.write(descriptor) };
        Ok(())
    })
}

/// `saCkptSectionIterationFinalize`: frees the iteration (and the last id it returned).
///
/// Errors: `SA_AIS_ERR_BAD_HANDLE` (also when its checkpoint was closed or its library
/// finalized: those end their iterations).
///
/// # Safety
///
/// None beyond the C calling convention: any handle value is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionIterationFinalize(
    section_iteration_handle: SaCkptSectionIterationHandleT,
) -> SaAisErrorT {
    guard(|| {
        handles::remove_iteration(section_iteration_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        Ok(())
    })
}
