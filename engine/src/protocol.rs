//! The slot protocol: how a section's committed version is published, pinned by readers,
//! retired by the next writer and freed once no reader holds it. This is the part that
//! makes reads lock-free and tear-free, so it is written against [`crate::sync`] alone and
//! model-checked with loom on a heap-backed arena (`engine/tests/loom.rs`).
//!
//! Words involved (all in shared memory, all atomic):
//! - `current` (per descriptor): `generation << 32 | slot`, the committed version;
//! - `state` (per slot): `kind | payload << 8` with kind FREE, OWNED (payload = owner),
//!   LIVE (payload = descriptor) or RETIRED (payload = descriptor);
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
//! 4. Every transition into OWNED names its owner, so after a crash the dead owner's slots
//!    are identified from the state words alone: no step leaves an ambiguous state.

#![allow(unreachable_pub)] // `pub` so the loom integration test can drive it.

use crate::layout::{
    KIND_FREE, KIND_LIVE, KIND_OWNED, KIND_RETIRED, NONE, current_gen, current_slot, current_word,
    state_kind, state_word,
};
use crate::sync::{AtomicU64, Ordering::SeqCst, spin_hint};

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
pub const LIVE: u64 = KIND_LIVE;
