//! Fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` and by the replay of the
//! committed corpus in `engine/tests/fuzz_corpus.rs`, so both run one body. Not part of
//! the engine's API: compiled only with the `fuzzing` feature, hidden from the docs.
//!
//! Every harness takes arbitrary bytes and panics only when it finds a bug: a result out of
//! bounds, a disagreement with the model, or a panic inside the engine. A hang shows up as
//! the fuzzer's timeout, a fault as its crash report.
//!
//! - [`arena_attach`]: the bytes are a replica object file; attach and every read-only call.
//! - [`arena_ops`]: random operations on a heap arena, checked against a model, or with the
//!   mapping's bytes mutated between operations.
//! - [`registry()`]: the bytes are a domain's node registry.
//!
//! [`model`] is the plain in-memory model of a checkpoint's sections, and [`sut`] drives a
//! replica in step with it; the `arena_ops` model mode and the proptest state machine
//! (`engine/tests/model.rs`) both check the engine with them.
//!
//! The file-backed targets work in a private scratch domain under `/dev/shm/ckpt-fuzz`,
//! one per thread; [`cleanup`] removes the calling thread's.

mod attach;
mod input;
pub mod model;
mod ops;
mod registry;
pub mod sut;

pub use attach::{arena_attach, cleanup};
pub use ops::arena_ops;
pub use registry::registry;
