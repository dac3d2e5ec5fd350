//! Data access: write, overwrite, read (into the caller's buffers or library-allocated ones),
//! the read buffer free, synchronize, and the local-replica read extension.

use core::ffi::c_void;

use ckpt_agent::{Checkpoint, ReadElement, WriteElement};

use crate::error::code;
use crate::ffi::{
    Outcome, bytes, check_buffer, free, guard, malloc_copy, non_null, object_size, section_id,
};
use crate::handles::{self, CheckpointEntry};
use crate::types::{
    SA_AIS_ERR_BAD_HANDLE, SA_AIS_ERR_INVALID_PARAM, SaAisErrorT, SaCkptCheckpointHandleT,
    SaCkptIOVectorElementT, SaCkptSectionIdT, SaInvocationT, SaSizeT, SaTimeT, SaUint32T,
};

/// Where `erroneousVectorIndex` goes (the pointer may be NULL).
#[derive(Clone, Copy)]
struct ErrorIndex(*mut SaUint32T);

impl ErrorIndex {
    /// Stores `index` unless the pointer is NULL.
    ///
    /// # Safety
    ///
    /// The pointer is NULL or writable.
    unsafe fn set(self, index: usize) {
        if !self.0.is_null() {
            let index = SaUint32T::try_from(index).unwrap_or(SaUint32T::MAX);
            // SAFETY: non-NULL, and writable by the caller's contract.
            unsafe { self.0.write(index) };
        }
    }
}

/// The caller's vector of `count` elements; `SA_AIS_ERR_INVALID_PARAM` for NULL.
///
/// # Safety
///
/// `vector` is NULL or points to `count` elements valid for `'a`, not otherwise accessed
/// meanwhile.
unsafe fn vector<'a>(
    vector: *mut SaCkptIOVectorElementT,
    count: SaUint32T,
) -> Result<&'a mut [SaCkptIOVectorElementT], SaAisErrorT> {
    non_null(vector)?;
    let count = usize::try_from(count).map_err(|_| SA_AIS_ERR_INVALID_PARAM)?;
    // SAFETY: non-NULL with `count` elements, by the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(vector, count) })
}

/// Checks every element's section id (the checks that need no handle); on a malformed one,
/// its index.
///
/// # Safety
///
/// Each element's id has `idLen` readable bytes at `id` when both are set.
unsafe fn check_ids(elements: &[SaCkptIOVectorElementT]) -> Result<(), usize> {
    for (index, e) in elements.iter().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { section_id(&e.sectionId) }.map_err(|_| index)?;
    }
    Ok(())
}

/// `saCkptCheckpointWrite`: writes the elements in order, all or nothing; sections grow as
/// needed. `readSize` is ignored. On failure `*erroneous_vector_index` (if not NULL) is the
/// first failing element; on success it is left alone.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL vector; an element with a malformed id or a NULL
/// buffer with a size, checked before the handle; data larger than maxSectionSize),
/// `SA_AIS_ERR_BAD_HANDLE`, `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_NOT_EXIST` (no such section, or no
/// active replica), `SA_AIS_ERR_NO_RESOURCES` (offset + size beyond maxSectionSize, the
/// checkpoint size). A `dataSize` above maxSectionSize is refused as soon as the handle is
/// known, before the access checks, so that no slice is ever made of a buffer larger than any
/// valid call passes.
///
/// # Safety
///
/// `io_vector` is NULL or readable for `number_of_elements` elements, each with `idLen` bytes
/// at its id and `dataSize` bytes at its `dataBuffer`; `erroneous_vector_index` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointWrite(
    checkpoint_handle: SaCkptCheckpointHandleT,
    io_vector: *const SaCkptIOVectorElementT,
    number_of_elements: SaUint32T,
    erroneous_vector_index: *mut SaUint32T,
) -> SaAisErrorT {
    let at = ErrorIndex(erroneous_vector_index);
    guard(|| {
        non_null(io_vector)?;
        let count = usize::try_from(number_of_elements).map_err(|_| SA_AIS_ERR_INVALID_PARAM)?;
        // SAFETY: non-NULL with `count` readable elements, by the caller's contract.
        let elements = unsafe { core::slice::from_raw_parts(io_vector, count) };
        let failed_at = |index: usize, error: SaAisErrorT| {
            // SAFETY: NULL or writable, by the caller's contract.
            unsafe { at.set(index) };
            error
        };
        for (index, e) in elements.iter().enumerate() {
            // SAFETY: idLen bytes at id, by the caller's contract.
            let id = unsafe { section_id(&e.sectionId) };
            if id.is_err() || check_buffer(e.dataBuffer, e.dataSize).is_err() {
                return Err(failed_at(index, SA_AIS_ERR_INVALID_PARAM));
            }
        }
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        let mut writes = Vec::with_capacity(count);
        for (index, e) in elements.iter().enumerate() {
            // SAFETY: idLen bytes at id, by the caller's contract (checked well-formed above).
            let section_id = unsafe { section_id(&e.sectionId) }?;
            // SAFETY: dataSize bytes at dataBuffer, by the caller's contract.
            let data = unsafe { bytes(e.dataBuffer, e.dataSize, entry.max_section_size) }
                .map_err(|error| failed_at(index, error))?;
            writes.push(WriteElement {
                section_id,
                offset: e.dataOffset,
                data,
            });
        }
        entry
            .checkpoint
            .write(&writes)
            .map_err(|v| failed_at(v.index, code(v.error, entry.version)))
    })
}

/// `saCkptSectionOverwrite`: replaces the section's data; its size becomes `data_size`.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL or malformed id, NULL buffer, more than
/// maxSectionSize), `SA_AIS_ERR_BAD_HANDLE`, `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_NOT_EXIST`,
/// `SA_AIS_ERR_NO_RESOURCES`.
///
/// # Safety
///
/// `section_id` is NULL or readable with `idLen` bytes at `id`; `data_buffer` is NULL or
/// readable for `data_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptSectionOverwrite(
    checkpoint_handle: SaCkptCheckpointHandleT,
    section_id: *const SaCkptSectionIdT,
    data_buffer: *const c_void,
    data_size: SaSizeT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable, by the caller's contract.
        let id = unsafe { section_id.as_ref() }.ok_or(SA_AIS_ERR_INVALID_PARAM)?;
        // SAFETY: idLen bytes at id, by the caller's contract.
        let id = unsafe { crate::ffi::section_id(id) }?;
        non_null(data_buffer)?;
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        // SAFETY: data_size bytes at data_buffer, by the caller's contract.
        let data = unsafe { bytes(data_buffer, data_size, entry.max_section_size) }?;
        entry
            .checkpoint
            .overwrite(id, data)
            .map_err(|e| code(e, entry.version))
    })
}

/// Which replica a read reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replica {
    /// The active one (`saCkptCheckpointRead`).
    Active,
    /// This node's (`ckptCheckpointReadLocal`).
    Local,
}

/// What `saCkptCheckpointRead` and `ckptCheckpointReadLocal` share.
///
/// # Safety
///
/// As `saCkptCheckpointRead`.
unsafe fn read(
    checkpoint_handle: SaCkptCheckpointHandleT,
    io_vector: *mut SaCkptIOVectorElementT,
    number_of_elements: SaUint32T,
    erroneous_vector_index: *mut SaUint32T,
    replica: Replica,
) -> SaAisErrorT {
    let at = ErrorIndex(erroneous_vector_index);
    guard(|| {
        // SAFETY: NULL or writable, by the caller's contract.
        unsafe { at.set(0) };
        // SAFETY: NULL or `number_of_elements` elements, by the caller's contract.
        let elements = unsafe { vector(io_vector, number_of_elements) }?;
        let failed_at = |index: usize, error: SaAisErrorT| {
            // SAFETY: NULL or writable, by the caller's contract.
            unsafe { at.set(index) };
            error
        };
        // SAFETY: the ids are the caller's, readable by its contract.
        unsafe { check_ids(elements) }
            .map_err(|index| failed_at(index, SA_AIS_ERR_INVALID_PARAM))?;
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        // The handle, access and active-replica checks come before any element's.
        match replica {
            Replica::Active => entry.checkpoint.read(&mut []),
            Replica::Local => entry.checkpoint.read_local(&mut []),
        }
        .map_err(|v| code(v.error, entry.version))?;
        let mut allocated = Vec::new();
        for (index, e) in elements.iter_mut().enumerate() {
            // SAFETY: the element is the caller's, with valid id and buffer by its contract.
            match unsafe { read_element(&entry, e, replica) } {
                Ok(true) => allocated.push(index),
                Ok(false) => {}
                Err(error) => {
                    // The caller learns of no buffer this failed call allocated.
                    for &i in &allocated {
                        // SAFETY: read_element malloc'ed it in this call; nobody else has
                        // it.
                        unsafe { free(elements[i].dataBuffer) };
                        elements[i].dataBuffer = core::ptr::null_mut();
                        elements[i].readSize = 0;
                    }
                    return Err(failed_at(index, error));
                }
            }
        }
        Ok(())
    })
}

/// Reads one element; `Ok(true)` when the library allocated its buffer.
///
/// # Safety
///
/// `e.sectionId` has `idLen` readable bytes at `id`; a non-NULL `e.dataBuffer` is writable for
/// `e.dataSize` bytes (when that is at most the checkpoint's maxSectionSize) and not
/// otherwise accessed meanwhile.
unsafe fn read_element(
    entry: &CheckpointEntry,
    e: &mut SaCkptIOVectorElementT,
    replica: Replica,
) -> Result<bool, SaAisErrorT> {
    let version = entry.version;
    let checkpoint = &entry.checkpoint;
    // SAFETY: the caller's contract.
    let id = unsafe { section_id(&e.sectionId) }?;
    let offset = e.dataOffset;
    if e.dataBuffer.is_null() {
        // The library allocates exactly the bytes read; dataSize is ignored.
        let data = match replica {
            Replica::Active => checkpoint.read_vec(id, offset),
            Replica::Local => read_local_vec(checkpoint, id, offset, entry.max_section_size),
        }
        .map_err(|e| code(e, version))?;
        let copy = malloc_copy(&data)?;
        e.dataBuffer = copy.cast();
        e.readSize = data.len() as SaSizeT;
        return Ok(!copy.is_null());
    }
    if e.dataSize > entry.max_section_size {
        return Err(SA_AIS_ERR_INVALID_PARAM);
    }
    let len = object_size(e.dataSize)?;
    // SAFETY: non-NULL, len <= isize::MAX, writable for len bytes and unaliased by the caller's
    // contract. The bytes are only written (a read copies into them).
    let buf = unsafe { core::slice::from_raw_parts_mut(e.dataBuffer.cast::<u8>(), len) };
    let read = match replica {
        Replica::Active => checkpoint.read_into(id, offset, buf),
        Replica::Local => {
            let mut one = [ReadElement {
                section_id: id,
                offset,
                buf,
                read_size: 0,
            }];
            checkpoint
                .read_local(&mut one)
                .map(|()| one[0].read_size)
                .map_err(|v| v.error)
        }
    }
    .map_err(|e| code(e, version))?;
    e.readSize = read as SaSizeT;
    Ok(false)
}

/// The local replica's bytes of a section from `offset` to its end, read into a buffer that
/// grows until one read returns less than it holds (that last read is one consistent
/// version of the section).
fn read_local_vec(
    checkpoint: &Checkpoint,
    id: &[u8],
    offset: u64,
    max_section_size: u64,
) -> ckpt_agent::Result<Vec<u8>> {
    let room = max_section_size.saturating_sub(offset);
    if room == 0 {
        // At or past maxSectionSize nothing can be read, and a read of 0 bytes is refused:
        // the last byte tells whether the offset is the section's end (an empty read) or past
        // it (invalid).
        return match offset.cmp(&max_section_size) {
            core::cmp::Ordering::Equal => {
                let mut last = [0u8; 1];
                let mut one = [ReadElement {
                    section_id: id,
                    offset: offset - 1,
                    buf: &mut last,
                    read_size: 0,
                }];
                checkpoint.read_local(&mut one).map_err(|v| v.error)?;
                if one[0].read_size == 1 {
                    Ok(Vec::new())
                } else {
                    Err(ckpt_agent::Error::InvalidParam(
                        "dataOffset past the end of the section",
                    ))
                }
            }
            _ => Err(ckpt_agent::Error::InvalidParam(
                "dataOffset beyond maxSectionSize",
            )),
        };
    }
    let mut want = room.min(4096);
    loop {
        let len = usize::try_from(want).map_err(|_| ckpt_agent::Error::NoMemory)?;
        let mut buf = vec![0u8; len];
        let mut one = [ReadElement {
            section_id: id,
            offset,
            buf: &mut buf,
            read_size: 0,
        }];
        checkpoint.read_local(&mut one).map_err(|v| v.error)?;
        let read = one[0].read_size;
        if read < len || want == room {
            buf.truncate(read);
            return Ok(buf);
        }
        want = want.saturating_mul(2).min(room);
    }
}

/// `saCkptCheckpointRead`: reads each element's section from `dataOffset`; `readSize`
/// becomes `min(dataSize, sectionSize - dataOffset)`.
///
/// A NULL `dataBuffer` asks the library to allocate one of exactly the bytes from
/// `dataOffset` to the end of the section (`dataSize` is ignored; nothing is allocated and the
/// buffer stays NULL when that is 0 bytes). It comes from `malloc`: a B.02 client frees it with
/// `saCkptIOVectorElementDataFree`, a B.01 client with `free()`. When the call fails, the
/// buffers it allocated are freed again and their `dataBuffer` is NULL; caller buffers of
/// earlier elements may hold data.
///
/// `*erroneous_vector_index` (if not NULL) is set to 0 on entry and to the failing element on
/// failure.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL vector; a malformed id, checked before the handle;
/// `dataSize` or `dataOffset + dataSize` beyond maxSectionSize; `dataOffset` past the end of
/// the section), `SA_AIS_ERR_BAD_HANDLE`, `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_NOT_EXIST` (no
/// such section, or no active replica), `SA_AIS_ERR_NO_MEMORY`.
///
/// # Safety
///
/// `io_vector` is NULL or valid for reads and writes of `number_of_elements` elements, each
/// with `idLen` bytes at its id and, unless NULL, `dataSize` writable bytes at its
/// `dataBuffer`; `erroneous_vector_index` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointRead(
    checkpoint_handle: SaCkptCheckpointHandleT,
    io_vector: *mut SaCkptIOVectorElementT,
    number_of_elements: SaUint32T,
    erroneous_vector_index: *mut SaUint32T,
) -> SaAisErrorT {
    // SAFETY: the same contract.
    unsafe {
        read(
            checkpoint_handle,
            io_vector,
            number_of_elements,
            erroneous_vector_index,
            Replica::Active,
        )
    }
}

/// `ckptCheckpointReadLocal` (`ckpt/ckpt_ext.h`): `saCkptCheckpointRead` from this node's
/// replica, which may lag the active one; it works also while the checkpoint has no active
/// replica.
///
/// # Safety
///
/// As `saCkptCheckpointRead`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ckptCheckpointReadLocal(
    checkpoint_handle: SaCkptCheckpointHandleT,
    io_vector: *mut SaCkptIOVectorElementT,
    number_of_elements: SaUint32T,
    erroneous_vector_index: *mut SaUint32T,
) -> SaAisErrorT {
    // SAFETY: the same contract.
    unsafe {
        read(
            checkpoint_handle,
            io_vector,
            number_of_elements,
            erroneous_vector_index,
            Replica::Local,
        )
    }
}

/// `saCkptIOVectorElementDataFree` (B.02): frees a buffer `saCkptCheckpointRead` allocated.
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (NULL, checked first), `SA_AIS_ERR_BAD_HANDLE`.
///
/// # Safety
///
/// `data` is NULL or a buffer a read allocated and nobody freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptIOVectorElementDataFree(
    checkpoint_handle: SaCkptCheckpointHandleT,
    data: *mut c_void,
) -> SaAisErrorT {
    guard(|| {
        non_null(data)?;
        handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        // SAFETY: a live malloc allocation from a read, by the caller's contract.
        unsafe { free(data) };
        Ok(())
    })
}

/// `saCkptCheckpointSynchronize`: returns once every replica has the updates made before the
/// call (on one node, at once).
///
/// Errors: `SA_AIS_ERR_INVALID_PARAM` (negative timeout), `SA_AIS_ERR_BAD_HANDLE`,
/// `SA_AIS_ERR_BAD_OPERATION` (ALL_REPLICAS), `SA_AIS_ERR_ACCESS`, `SA_AIS_ERR_NOT_EXIST`.
///
/// # Safety
///
/// None beyond the C calling convention: any handle value is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointSynchronize(
    checkpoint_handle: SaCkptCheckpointHandleT,
    timeout: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        if timeout < 0 {
            return Err(SA_AIS_ERR_INVALID_PARAM);
        }
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        entry
            .checkpoint
            .synchronize(timeout)
            .map_err(|e| code(e, entry.version))
    })
}

/// `saCkptCheckpointSynchronizeAsync`: the checks of `saCkptCheckpointSynchronize` now; the
/// synchronize callback receives `invocation` and the outcome from `saCkptDispatch`.
///
/// Errors: as `saCkptCheckpointSynchronize`, and `SA_AIS_ERR_INIT` when no synchronize
/// callback was registered.
///
/// # Safety
///
/// None beyond the C calling convention: any handle value is accepted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn saCkptCheckpointSynchronizeAsync(
    checkpoint_handle: SaCkptCheckpointHandleT,
    invocation: SaInvocationT,
) -> SaAisErrorT {
    guard(|| -> Outcome {
        let entry = handles::checkpoint(checkpoint_handle).ok_or(SA_AIS_ERR_BAD_HANDLE)?;
        entry
            .checkpoint
            .synchronize_async(invocation)
            .map_err(|e| code(e, entry.version))
    })
}
