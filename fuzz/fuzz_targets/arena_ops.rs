//! Random section operations on a heap arena, against the model (first byte even) or with
//! the mapping's bytes mutated between operations (first byte odd).
//! The harness is `ckpt_engine::fuzzing::arena_ops`, which the corpus replay test runs too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_engine::fuzzing::arena_ops(data));
