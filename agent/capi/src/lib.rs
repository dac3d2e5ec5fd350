//! ckpt-capi: `libSaCkpt.so.1`, the standard C ABI over ckpt-agent. Built in the C ABI
//! issue; until then this crate is empty.
