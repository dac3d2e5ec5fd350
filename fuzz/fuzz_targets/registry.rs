//! Arbitrary bytes as a domain's node registry: open, lookups, control operations, sweep,
//! fsck.
//! The harness is `ckpt_engine::fuzzing::registry`, which the corpus replay test runs too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_engine::fuzzing::registry(data));
