//! Arbitrary bytes into every decoder of the wire codec, with canonical round trips.
//! The harness is `ckpt_transport::fuzzing::wire_decode`, which the corpus replay test runs too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ckpt_transport::fuzzing::wire_decode(data));
