//! The slot protocol: how a section's committed version is published, pinned by readers,
//! retired by the next writer and freed once no reader holds it. This is the part that
//! makes reads lock-free and tear-free, so it is written against [`crate::sync`] alone and
//! model-checked with loom on a heap-backed arena (`engine/tests/loom.rs`).
//!
//! Words involved (all in shared memory, all atomic):
//! - `current` (per descriptor): `generation << 32 | slot`, the committed version;
//! - `state` (per slot): `kind | payload << 8` with kind FREE, OWNED (payload = owner),
//!   LIVE (payload = descriptor), RETIRED (payload = retirement tag) or CACHED (payload =
//!   the owner that keeps it for its next write);
//! - `pins` (per slot): one bit per agent.
//!
//! Rules:
//! 1. A slot's bytes are written only while its state is OWNED by the writer, and never
//!    after it has been published.
//! 2. A reader sets its pin bit, then re-reads `current` (both `SeqCst`); it reads the slot
//!    only if `current` still names it. A writer publishes the new slot (`SeqCst`), marks
//!    the old one RETIRED (`SeqCst`), then reads the pins (`SeqCst`). By the total order of
//!    `SeqCst` operations, either the reader sees the new `current` (and retries), or the
//!    writer sees the pin (and does not free).
//! 3. A RETIRED slot becomes FREE by a CAS from the exact RETIRED word, done by whoever
//!    observes it RETIRED with no pins after the retirement: the writer, or the last reader
//!    to unpin. Only one CAS wins.
//! 4. A writer that finds no pin at all after publishing (rule 2's scan) may keep the old
//!    slot instead of retiring it: CAS from LIVE to CACHED for itself. No reader can be
//!    reading it (any later pin sees the new `current` and lets go, and the unpins it read
//!    zeros from happen-before the scan), so it is as good as FREE, only reserved. Its
//!    owner takes it back by CAS CACHED → OWNED, and so may any allocator when the pool is
//!    dry; one CAS wins. This saves the free list two round trips per overwrite.
//! 5. Every transition into OWNED names its owner, so after a crash the dead owner's slots
//!    are identified from the state words alone: no step leaves an ambiguous state.

#![allow(unreachable_pub)] // `pub` so the loom integration test can drive it.

use crate::layout::{
    KIND_CACHED, KIND_FREE, KIND_LIVE, KIND_OWNED, KIND_RETIRED, NONE, current_gen, current_slot,
    current_word, state_kind, state_word,
};
use crate::sync::{
    AtomicU64,
    Ordering::{Acquire, Release, SeqCst},
    fence, spin_hint,
};

/// How many times a reader re-tries a pin whose slot was superseded under it before it
/// gives up with [`PinError::Contended`].
pub const PIN_RETRIES: u32 = 1024;

/// Access to the per-slot words of one arena.
pub trait Slots {
    /// The state word of slot `s`, if `s` is in range.
    fn state(&self, s: u32) -> Option<&AtomicU64>;
    /// The pin words of slot `s`, if `s` is in range.
    fn pins(&self, s: u32) -> Option<&[AtomicU64]>;
}

/// Why a pin did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinError {
    /// The section is gone (its generation moved on, or it has no slot).
    Gone,
    /// `current` names a slot out of range.
    Corrupted,
    /// Writers kept superseding the slot for [`PIN_RETRIES`] attempts.
    Contended,
}

/// The state word of a slot owned by `owner`.
#[inline]
pub const fn owned(owner: u64) -> u64 {
    state_word(KIND_OWNED, owner)
}

/// The state word of a slot committed (or superseded, not yet retired) for `desc`.
#[inline]
pub const fn live(desc: u32) -> u64 {
    state_word(KIND_LIVE, desc as u64)
}

/// The state word of a superseded slot waiting for its pins to drain. `tag` identifies
/// this retirement (the journal seq of the version the slot held, unique per commit), so
/// a stale unpinner that read the word before the slot was freed, reused and retired again
/// cannot free it by a CAS from an equal-looking word (the ABA loom found).
#[inline]
pub const fn retired(tag: u64) -> u64 {
    state_word(KIND_RETIRED, tag & ((1 << 56) - 1))
}

/// The state word of a free slot kept by `owner` for its next write.
#[inline]
pub const fn cached(owner: u64) -> u64 {
    state_word(KIND_CACHED, owner)
}

/// Claims a FREE slot for `owner`. The CAS writes the owner's identity, which is what lets
/// recovery tell a dead owner's slots apart without any other record.
#[inline]
pub fn claim_free(state: &AtomicU64, owner: u64) -> bool {
    state
        .compare_exchange(KIND_FREE, owned(owner), SeqCst, SeqCst)
        .is_ok()
}

/// Pins the slot `current` names for generation `generation`, for the agent whose bit is
/// `bit` in pin word `word`. `on_begin(slot)` runs before the pin bit is set and
/// `on_abandon(slot, freed)` after it is cleared again on a retry (`freed`: that unpin
/// freed the slot, which the caller must make allocatable again), so the caller can keep a crash
/// record of every bit it may have set.
pub fn pin<S: Slots + ?Sized>(
    slots: &S,
    current: &AtomicU64,
    generation: u32,
    word: usize,
    bit: u64,
    mut on_begin: impl FnMut(u32),
    mut on_abandon: impl FnMut(u32, bool),
) -> Result<u32, PinError> {
    let mut seen = current.load(SeqCst);
    for _ in 0..PIN_RETRIES {
        if current_gen(seen) != generation || current_slot(seen) == NONE {
            return Err(PinError::Gone);
        }
        let slot = current_slot(seen);
        let pins = slots.pins(slot).ok_or(PinError::Corrupted)?;
        let pin_word = pins.get(word).ok_or(PinError::Corrupted)?;
        on_begin(slot);
        pin_word.fetch_or(bit, SeqCst);
        let now = current.load(SeqCst);
        if now == seen {
            return Ok(slot);
        }
        // Superseded (or deleted) between our load and our pin: let go and follow it.
        let freed = unpin(slots, slot, word, bit);
        on_abandon(slot, freed);
        seen = now;
        spin_hint();
    }
    Err(PinError::Contended)
}

/// Clears this agent's pin on `slot`; frees the slot if it was retired and this was the
/// last pin. Returns whether this call freed it.
pub fn unpin<S: Slots + ?Sized>(slots: &S, slot: u32, word: usize, bit: u64) -> bool {
    let (Some(state), Some(pins)) = (slots.state(slot), slots.pins(slot)) else {
        return false;
    };
    if let Some(w) = pins.get(word) {
        w.fetch_and(!bit, SeqCst);
    }
    try_free_retired(state, pins)
}

/// Publishes `slot` as the committed version of a descriptor at `generation`.
#[inline]
pub fn publish(current: &AtomicU64, generation: u32, slot: u32) {
    current.store(current_word(generation, slot), SeqCst);
}

/// Retires a superseded slot of `desc` (CAS from LIVE for `desc`, so a slot that is no
/// longer this descriptor's is never touched) and frees it at once when nobody pins it.
/// Returns whether it was freed (the caller then re-sets its allocation hint).
pub fn retire(state: &AtomicU64, pins: &[AtomicU64], desc: u32, tag: u64) -> bool {
    if state
        .compare_exchange(live(desc), retired(tag), SeqCst, SeqCst)
        .is_err()
    {
        return false;
    }
    try_free_retired(state, pins)
}

/// Starts a pin-free (seqlock) read of the slot that `current` held as `seen_current`
/// for `desc`: the slot's VERSION if it is LIVE(desc) and still current, else `None` (it
/// is changing hands: retry or pin). Copy the bytes next, then call [`read_validate`].
///
/// The order of the loads is the proof (each found by loom when it was otherwise):
/// 1. VERSION first, Acquire, and writers store it with Release after the bytes: the copy
///    then sees that version's bytes, and an occupant still being written is followed by
///    a state load that sees its claim (not LIVE). Loaded after the state, a reader could
///    pair the old occupant's LIVE with the new one's VERSION and validate a torn copy.
/// 2. Then the state, LIVE(desc).
/// 3. Then `current` again, unchanged. The version seen may belong to an occupant that is
///    LIVE but not yet published (or never will be, if its writer dies): `current` naming
///    the slot after VERSION was loaded means it was published by then (a writer reuses a
///    slot only after publishing its successor, so the stale word cannot reappear except
///    by publishing this version). The read takes effect at that load.
#[inline]
pub fn read_begin(
    current: &AtomicU64,
    seen_current: u64,
    state: &AtomicU64,
    version: &AtomicU64,
    desc: u32,
) -> Option<u64> {
    let seen = version.load(Acquire);
    if state.load(Acquire) != live(desc) || current.load(Acquire) != seen_current {
        return None;
    }
    Some(seen)
}

/// Whether the bytes copied since [`read_begin`] returned `seen` are that version's: the
/// slot is still LIVE(desc) with the same VERSION. Pairs with [`before_fill`].
#[inline]
pub fn read_validate(state: &AtomicU64, version: &AtomicU64, desc: u32, seen: u64) -> bool {
    fence(Acquire);
    state.load(Acquire) == live(desc) && version.load(Acquire) == seen
}

/// Called by a writer between claiming a slot (its state left LIVE) and writing its bytes:
/// a pin-free reader whose copy saw any of the new bytes then sees the claim when it
/// validates. Free on x86 (a compiler barrier).
#[inline]
pub fn before_fill() {
    fence(Release);
}

/// What [`retire_or_keep`] did with the superseded slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retired {
    /// Nobody pinned it: it is CACHED for the retiring writer.
    Kept,
    /// Retired and freed at once (the caller re-sets its allocation hint).
    Freed,
    /// Retired while pinned: the last unpinner frees it.
    Pinned,
    /// It was no longer LIVE for the descriptor: left alone.
    Untouched,
}

/// Retires a superseded slot of `desc` after the SeqCst publish of its successor, keeping
/// it CACHED for `owner` when no pin is set (rule 4), else as [`retire`] does.
#[inline(always)]
pub fn retire_or_keep(
    state: &AtomicU64,
    pins: &[AtomicU64],
    desc: u32,
    tag: u64,
    owner: u64,
) -> Retired {
    if pins.iter().all(|w| w.load(SeqCst) == 0) {
        if state.load(SeqCst) != live(desc) {
            return Retired::Untouched;
        }
        // A plain store, not a CAS: a LIVE slot changes state only under its section's
        // lease, which the caller holds, and nobody else acts on a slot that is LIVE (late
        // unpinners act on RETIRED ones only, takers on CACHED ones). Release orders the
        // scan's loads, and the reader unpins they saw, before the next occupant's bytes.
        state.store(cached(owner), Release);
        return Retired::Kept;
    }
    retire_pinned(state, pins, desc, tag)
}

/// [`retire_or_keep`] when a reader pins the slot: out of line, off a writer's common path.
#[cold]
#[inline(never)]
fn retire_pinned(state: &AtomicU64, pins: &[AtomicU64], desc: u32, tag: u64) -> Retired {
    if state
        .compare_exchange(live(desc), retired(tag), SeqCst, SeqCst)
        .is_err()
    {
        return Retired::Untouched;
    }
    if try_free_retired(state, pins) {
        Retired::Freed
    } else {
        Retired::Pinned
    }
}

/// Takes a CACHED slot for `owner`: its keeper's own reuse (`keeper == owner`), or a
/// take-over by an allocator that found the pool dry. Exactly one of racing takers wins.
#[inline]
pub fn take_cached(state: &AtomicU64, keeper: u64, owner: u64) -> bool {
    state
        .compare_exchange(cached(keeper), owned(owner), SeqCst, SeqCst)
        .is_ok()
}

/// Frees a RETIRED slot if no pin is set. Exactly one of several racing callers wins.
pub fn try_free_retired(state: &AtomicU64, pins: &[AtomicU64]) -> bool {
    let seen = state.load(SeqCst);
    if state_kind(seen) != KIND_RETIRED {
        return false;
    }
    if pins.iter().any(|w| w.load(SeqCst) != 0) {
        return false;
    }
    state
        .compare_exchange(seen, KIND_FREE, SeqCst, SeqCst)
        .is_ok()
}

/// Whether a slot state word says "committed or superseded for `desc`".
#[inline]
pub const fn is_live_for(word: u64, desc: u32) -> bool {
    word == live(desc)
}

/// Kind helpers re-exported for the model tests.
pub const FREE: u64 = KIND_FREE;
/// See [`FREE`].
pub const CACHED: u64 = KIND_CACHED;
/// See [`FREE`].
pub const LIVE: u64 = KIND_LIVE;
