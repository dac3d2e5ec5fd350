//! ckpt-capi: `libSaCkpt.so.1`, the standard C ABI of the checkpoint service over ckpt-agent.
//!
//! The C interface is fixed by the SA Forum: `saAis.h` (SAI-AIS-CPROG-B.05.01) and `saCkpt.h`
//! (SAI-AIS-CKPT-B.02.02), shipped in this crate's `include/` directory together with
//! `opensaf/cpsv_papi.h` (OpenSAF's arrival callback) and `ckpt/ckpt_ext.h` (this service's
//! extensions). Those headers are the source of truth. [`types`] mirrors them as `#[repr(C)]`
//! Rust types, and a C compile test checks the two against each other.
//!
//! So far the crate holds that type layer; the exported `saCkpt*` functions come next.
//!
//! ```
//! use ckpt_capi::types::{SA_AIS_ERR_VERSION, SaAisErrorT, SaVersionT};
//!
//! // The version a B.02.02 library reports from saCkptInitialize.
//! let version = SaVersionT { releaseCode: b'B', majorVersion: 2, minorVersion: 2 };
//! assert_eq!(version.releaseCode, b'B');
//!
//! // Error codes are plain ints on the C side, so any value can arrive; Debug names the
//! // standard ones.
//! assert_eq!(format!("{SA_AIS_ERR_VERSION:?}"), "SA_AIS_ERR_VERSION");
//! assert_eq!(SaAisErrorT(99).name(), None);
//! ```

pub mod types;
