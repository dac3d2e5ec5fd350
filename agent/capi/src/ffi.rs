//! What every export shares: the panic guard, and turning C arguments (names, section ids,
//! buffers) into Rust values with the standard's `SA_AIS_ERR_INVALID_PARAM` for malformed ones.

use core::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::types::{
    SA_AIS_ERR_INVALID_PARAM, SA_AIS_ERR_LIBRARY, SA_AIS_ERR_NO_MEMORY, SA_AIS_OK,
    SA_MAX_NAME_LENGTH, SaAisErrorT, SaCkptSectionIdT, SaNameT,
};

/// What an export's body returns: `Err` carries the code to return.
pub(crate) type Outcome = Result<(), SaAisErrorT>;

/// Runs an export's body: `Ok` becomes `SA_AIS_OK`, `Err(code)` the code, and a panic
/// `SA_AIS_ERR_LIBRARY` (no unwinding ever reaches the C caller).
pub(crate) fn guard(body: impl FnOnce() -> Outcome) -> SaAisErrorT {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SA_AIS_OK,
        Ok(Err(code)) => code,
        Err(payload) => {
            // Dropping the payload runs foreign code that could itself panic.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            SA_AIS_ERR_LIBRARY
        }
    }
}

/// `SA_AIS_ERR_INVALID_PARAM` unless `pointer` is non-NULL.
pub(crate) fn non_null<T>(pointer: *const T) -> Outcome {
    if pointer.is_null() {
        Err(SA_AIS_ERR_INVALID_PARAM)
    } else {
        Ok(())
    }
}

/// The bytes of a checkpoint name: `SA_AIS_ERR_INVALID_PARAM` for NULL, a length of 0 or one
/// above `SA_MAX_NAME_LENGTH`.
///
/// # Safety
///
/// `name` is NULL or points to a readable `SaNameT` that outlives `'a`.
pub(crate) unsafe fn name<'a>(name: *const SaNameT) -> Result<&'a [u8], SaAisErrorT> {
    // SAFETY: the caller's contract: NULL or a valid SaNameT living for 'a.
    let name = unsafe { name.as_ref() }.ok_or(SA_AIS_ERR_INVALID_PARAM)?;
    let length = usize::from(name.length);
    if length == 0 || length > SA_MAX_NAME_LENGTH {
        return Err(SA_AIS_ERR_INVALID_PARAM);
    }
    Ok(&name.value[..length])
}

/// The bytes of a section id. `{0, NULL}` is the empty id (the default section, or "generate
/// one" for section create); a length without bytes or bytes without a length is
/// `SA_AIS_ERR_INVALID_PARAM`.
///
/// # Safety
///
/// When `id.idLen > 0` and `id.id` is non-NULL, `id.id` points to `id.idLen` readable bytes
/// that outlive `'a`.
pub(crate) unsafe fn section_id<'a>(id: &SaCkptSectionIdT) -> Result<&'a [u8], SaAisErrorT> {
    match (id.idLen, id.id.is_null()) {
        (0, true) => Ok(&[]),
        (0, false) | (_, true) => Err(SA_AIS_ERR_INVALID_PARAM),
        // SAFETY: non-NULL with idLen bytes, by the caller's contract.
        (len, false) => Ok(unsafe { core::slice::from_raw_parts(id.id, usize::from(len)) }),
    }
}

/// `SA_AIS_ERR_INVALID_PARAM` for a NULL buffer with a size: the check on a buffer argument
/// that needs no handle.
pub(crate) fn check_buffer(data: *const c_void, size: u64) -> Outcome {
    if size > 0 && data.is_null() {
        return Err(SA_AIS_ERR_INVALID_PARAM);
    }
    Ok(())
}

/// The caller's `size` bytes at `data` (empty for size 0, whatever `data` is).
/// `SA_AIS_ERR_INVALID_PARAM` for NULL with a size, or a size above `limit` (the checkpoint's
/// maxSectionSize: no valid call passes more, so a larger size is refused before the buffer is
/// touched).
///
/// # Safety
///
/// When `0 < size <= limit` and `data` is non-NULL, `data` points to `size` readable bytes
/// that outlive `'a` and are not written meanwhile (the C caller's contract for an input
/// buffer).
pub(crate) unsafe fn bytes<'a>(
    data: *const c_void,
    size: u64,
    limit: u64,
) -> Result<&'a [u8], SaAisErrorT> {
    check_buffer(data, size)?;
    if size == 0 {
        return Ok(&[]);
    }
    if size > limit {
        return Err(SA_AIS_ERR_INVALID_PARAM);
    }
    let len = object_size(size)?;
    // SAFETY: non-NULL, len <= isize::MAX, and readable for len bytes by the caller's
    // contract.
    Ok(unsafe { core::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// `size` as the length of an object, `SA_AIS_ERR_INVALID_PARAM` beyond `isize::MAX`.
pub(crate) fn object_size(size: u64) -> Result<usize, SaAisErrorT> {
    usize::try_from(size)
        .ok()
        .filter(|&len| isize::try_from(len).is_ok())
        .ok_or(SA_AIS_ERR_INVALID_PARAM)
}

/// A `malloc`ed copy of `bytes` (so that C may release it with `free()`); NULL for no bytes.
/// `SA_AIS_ERR_NO_MEMORY` when `malloc` fails.
pub(crate) fn malloc_copy(bytes: &[u8]) -> Result<*mut u8, SaAisErrorT> {
    if bytes.is_empty() {
        return Ok(core::ptr::null_mut());
    }
    // SAFETY: malloc has no preconditions; a NULL result is handled below.
    let copy = unsafe { libc::malloc(bytes.len()) }.cast::<u8>();
    if copy.is_null() {
        return Err(SA_AIS_ERR_NO_MEMORY);
    }
    // SAFETY: `copy` is a fresh allocation of bytes.len() bytes, disjoint from `bytes`.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len()) };
    Ok(copy)
}

/// Releases what [`malloc_copy`] returned (or what the C caller passes back as such).
///
/// # Safety
///
/// `pointer` is NULL or a live allocation of the C library's `malloc`, not used afterwards.
pub(crate) unsafe fn free(pointer: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { libc::free(pointer) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SA_AIS_ERR_BAD_HANDLE;

    #[test]
    fn guard_turns_a_panic_into_err_library() {
        let sut = guard(|| panic!("a bug"));
        assert_eq!(sut, SA_AIS_ERR_LIBRARY);
    }

    #[test]
    fn guard_returns_ok_or_the_error_code() {
        assert_eq!(guard(|| Ok(())), SA_AIS_OK);
        assert_eq!(guard(|| Err(SA_AIS_ERR_BAD_HANDLE)), SA_AIS_ERR_BAD_HANDLE);
    }

    #[test]
    fn a_name_of_length_zero_or_above_256_is_invalid() {
        let mut sut = SaNameT {
            length: 0,
            value: [b'a'; SA_MAX_NAME_LENGTH],
        };
        // SAFETY: a valid SaNameT.
        assert_eq!(unsafe { name(&sut) }, Err(SA_AIS_ERR_INVALID_PARAM));
        sut.length = 257;
        // SAFETY: as above.
        assert_eq!(unsafe { name(&sut) }, Err(SA_AIS_ERR_INVALID_PARAM));
        sut.length = 256;
        // SAFETY: as above.
        assert_eq!(unsafe { name(&sut) }.map(<[u8]>::len), Ok(256));
        // SAFETY: NULL is allowed.
        let null = unsafe { name(core::ptr::null()) };
        assert_eq!(null, Err(SA_AIS_ERR_INVALID_PARAM));
    }

    #[test]
    fn a_section_id_needs_both_a_length_and_bytes_or_neither() {
        let mut byte = 7u8;
        let cases = [
            (0, core::ptr::null_mut(), Ok(0)),
            (0, &raw mut byte, Err(SA_AIS_ERR_INVALID_PARAM)),
            (1, core::ptr::null_mut(), Err(SA_AIS_ERR_INVALID_PARAM)),
            (1, &raw mut byte, Ok(1)),
        ];
        for (len, id, expected) in cases {
            let sut = SaCkptSectionIdT { idLen: len, id };
            // SAFETY: `id` is NULL or points to one byte, and len is at most 1.
            assert_eq!(unsafe { section_id(&sut) }.map(<[u8]>::len), expected);
        }
    }

    #[test]
    fn a_malloc_copy_holds_the_bytes_and_an_empty_one_is_null() {
        assert!(malloc_copy(&[]).unwrap().is_null());
        let sut = malloc_copy(b"abc").unwrap();
        // SAFETY: malloc_copy returned 3 initialised bytes.
        assert_eq!(unsafe { core::slice::from_raw_parts(sut, 3) }, b"abc");
        // SAFETY: a live malloc allocation, not used afterwards.
        unsafe { free(sut.cast()) };
    }
}
