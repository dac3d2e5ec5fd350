//! ckpt-agent: the SAF AIS Checkpoint Service API (B.02.02 and B.01 clients) in idiomatic
//! Rust, on top of ckpt-engine. Built in the agent issue; until then this crate is empty.

#![forbid(unsafe_code)]
