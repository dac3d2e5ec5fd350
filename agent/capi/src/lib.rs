//! ckpt-capi: `libSaCkpt.so.1`, the standard C ABI of the checkpoint service over ckpt-agent.
//!
//! The C interface is fixed by the SA Forum: `saAis.h` (SAI-AIS-CPROG-B.05.01) and `saCkpt.h`
//! (SAI-AIS-CKPT-B.02.02), shipped in this crate's `include/` directory together with
//! `opensaf/cpsv_papi.h` (OpenSAF's arrival callback) and `ckpt/ckpt_ext.h` (this service's
//! extensions). Those headers are the source of truth. [`types`] mirrors them as `#[repr(C)]`
//! Rust types, and a C compile test checks the two against each other.
//!
//! The library exports the 24 `saCkpt*` functions of B.02.02, OpenSAF's
//! `ncsCkptRegisterCkptArrivalCallback` and `ckptCheckpointReadLocal`. Each is a thin shim
//! over [`ckpt_agent`]:
//!
//! - **Handles** are numbers in process-wide tables: a library handle stands for a
//!   [`ckpt_agent::Library`], a checkpoint handle for a [`ckpt_agent::Checkpoint`] (its value is
//!   the agent's own handle number, so the arrival callback names the same handle), an iteration
//!   handle for a [`ckpt_agent::SectionIterator`]. None is ever 0 or reused. Finalizing a library
//!   handle invalidates its checkpoint handles, closing a checkpoint invalidates its iteration
//!   handles; a stale or garbage handle gives `SA_AIS_ERR_BAD_HANDLE`.
//! - **Checks** come in the standard's order: NULL pointers, malformed names and section ids,
//!   and bad enum values give `SA_AIS_ERR_INVALID_PARAM` before any handle is looked at; then
//!   ckpt-agent checks the rest in its documented order.
//! - **Errors** map onto `SaAisErrorT` in one table, gated by the version the client asked for
//!   (codes newer than its version are never shown to it).
//! - **Panics** never cross the boundary: each export catches them and returns
//!   `SA_AIS_ERR_LIBRARY`.
//! - **Versions**: a client that asked for major version 1 (or 0) gets the 56-byte B.01
//!   `SaCkptCheckpointDescriptorT` and may use bare checkpoint names; a B.02 client gets the
//!   64-byte descriptor and must use `safCkpt=` names. Generated section ids and read buffers
//!   the library allocates come from `malloc`, so both `free()` (B.01) and
//!   `saCkptSectionIdFree` / `saCkptIOVectorElementDataFree` (B.02) release them.
//!
//! ```
//! use SaCkpt::types::{SA_AIS_ERR_VERSION, SA_AIS_OK, SaVersionT};
//! use SaCkpt::saCkptInitialize;
//!
//! // A client that asks for C.01.01 gets SA_AIS_ERR_VERSION and the version it could have.
//! let mut version = SaVersionT { releaseCode: b'C', majorVersion: 1, minorVersion: 1 };
//! let mut handle = 0;
//! // SAFETY: both pointers are valid for the call; callbacks may be NULL.
//! let rc = unsafe { saCkptInitialize(&mut handle, core::ptr::null(), &mut version) };
//! assert_eq!(rc, SA_AIS_ERR_VERSION);
//! assert_eq!(version, SaVersionT { releaseCode: b'B', majorVersion: 2, minorVersion: 2 });
//! # let _ = SA_AIS_OK;
//! ```

#![allow(
    non_snake_case,
    reason = "the library is libSaCkpt, the name C programs link with (-lSaCkpt); exported \
              names and fields are the SAF standard's"
)]

mod checkpoint;
mod data;
mod error;
mod ffi;
mod handles;
mod library;
mod section;
pub mod types;

pub use checkpoint::{
    saCkptActiveReplicaSet, saCkptCheckpointClose, saCkptCheckpointOpen, saCkptCheckpointOpenAsync,
    saCkptCheckpointRetentionDurationSet, saCkptCheckpointStatusGet, saCkptCheckpointUnlink,
};
pub use data::{
    ckptCheckpointReadLocal, saCkptCheckpointRead, saCkptCheckpointSynchronize,
    saCkptCheckpointSynchronizeAsync, saCkptCheckpointWrite, saCkptIOVectorElementDataFree,
    saCkptSectionOverwrite,
};
pub use library::{
    ncsCkptRegisterCkptArrivalCallback, saCkptDispatch, saCkptFinalize, saCkptInitialize,
    saCkptSelectionObjectGet,
};
pub use section::{
    saCkptSectionCreate, saCkptSectionDelete, saCkptSectionExpirationTimeSet, saCkptSectionIdFree,
    saCkptSectionIterationFinalize, saCkptSectionIterationInitialize, saCkptSectionIterationNext,
};
