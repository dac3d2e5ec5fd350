//! The one door to atomics and interior mutability in the engine.
//!
//! Under `cfg(loom)` every type here is loom's instrumented version, so the lock-free
//! protocols in [`crate::protocol`] can be model-checked on a heap-backed arena
//! (`engine/tests/loom.rs`). Everywhere else they are the standard types, which have the
//! same size and alignment as the plain integers they wrap and may therefore be placed
//! over shared memory. `clippy.toml` forbids naming the std types anywhere else.

#![allow(clippy::disallowed_types)] // This module is the one place allowed to name them.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Hint that we are spinning; a yield point under loom.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Give up the CPU for a moment while waiting on another party.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// How long a yielding wait may go on before it gives up (the caller answers TRY_AGAIN).
///
/// The attempt limits bound the work of a wait; this bounds its wall time. On a loaded
/// machine every yield can cost a whole scheduler slice, so 20000 yields on garbage that
/// looks like a held lock could take tens of seconds: a hang to the caller.
#[cfg(not(loom))]
pub(crate) const WAIT_BUDGET: std::time::Duration = std::time::Duration::from_millis(250);

/// One step `attempt` (counted from 0) of a bounded wait for another party: a spin for
/// the first 65 attempts, then a yield. `false` once the wait has yielded for longer than
/// [`WAIT_BUDGET`] (timed from its first yield, kept in `since`) and has passed attempt
/// 255, where every waiter has asked once whether the holder is dead: the caller gives up.
#[inline]
pub(crate) fn backoff(attempt: u32, since: &mut Option<std::time::Instant>) -> bool {
    if attempt <= 64 {
        spin_hint();
        return true;
    }
    yield_now();
    #[cfg(not(loom))]
    {
        let now = std::time::Instant::now();
        let first = *since.get_or_insert(now);
        attempt < 256 || now.duration_since(first) < WAIT_BUDGET
    }
    #[cfg(loom)]
    {
        let _ = since;
        true
    }
}

/// An `UnsafeCell` whose accesses loom can track (crossbeam-epoch's `primitive` pattern).
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

#[cfg(loom)]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::cell::UnsafeCell::new(value))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

/// An `UnsafeCell` whose accesses loom can track (crossbeam-epoch's `primitive` pattern).
#[cfg(not(loom))]
#[derive(Debug)]
#[allow(dead_code)] // Used by the heap backend of the protocol tests.
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
