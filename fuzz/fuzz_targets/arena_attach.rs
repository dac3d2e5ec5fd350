//! Arbitrary bytes as a replica object file: attach, then every read-only call.
//! The harness is `ckpt_engine::fuzzing::arena_attach`, which the corpus replay test runs too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_engine::fuzzing::arena_attach(data));
