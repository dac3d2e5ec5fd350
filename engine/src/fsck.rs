//! Invariant checks of a replica object (and, in `registry.rs`, of the node registry).
//! Read-only: recovery is a separate, explicit step ([`Replica::recover_dead_agents`]).
//!
//! Structural invariants hold at every instant; the accounting ones (no slot owned, no
//! lease held, journal complete, `memoryUsed` exact) only when no live agent is in the
//! middle of an operation. When the replica is busy those are skipped and the report says
//! so ([`Report::quiescent`] is false).
//!
//! The replication words of the header (the replication position, ACKED_SEQ and the
//! acknowledgement futex) have no invariant checkable from a snapshot and are not looked
//! at: any position is valid, it is in the primary's numbering (not related to HEAD_SEQ),
//! and a waiter count may exceed the waiters flagged in agent records (engine/DESIGN.md
//! §20, "Not checked").

use core::fmt;

use crate::journal::{ST_DONE, cell_seq, cell_status};
use crate::layout::{
    HeaderImage, KIND_CACHED, KIND_FREE, KIND_LIVE, KIND_OWNED, KIND_RETIRED, NONE, PINS_PER_AGENT,
    agent as ag, current_slot, desc as dw, hdr, meta, state_kind, state_payload,
};
use crate::region::{AgentIx, Desc, Slot};
use crate::replica::{
    AG_ALIVE, AG_FREE, OP_NONE, Replica, TIME_END, ag_status, ag_token, op_kind, owner_ix,
};
use crate::sync::Ordering::*;

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Stable short name of the invariant (see engine/DESIGN.md "Invariants").
    pub invariant: &'static str,
    /// What was found.
    pub detail: String,
}

/// The result of a check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Broken invariants, in the order found (capped at [`MAX_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// Whether the accounting checks ran (no live agent was mid-operation).
    pub quiescent: bool,
    /// Live sections found.
    pub sections: u64,
    /// Slots neither free nor current: retired-but-pinned or in flight.
    pub busy_slots: u64,
    /// Free slots a live agent keeps for its next write (its spare).
    pub cached_slots: u64,
}

/// Reports stop collecting after this many violations.
pub const MAX_VIOLATIONS: usize = 1000;

impl Report {
    /// No violation.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    pub(crate) fn push(&mut self, invariant: &'static str, detail: impl Into<String>) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                invariant,
                detail: detail.into(),
            });
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            write!(f, "clean ({} sections", self.sections)?;
        } else {
            write!(
                f,
                "{} violation(s) ({} sections",
                self.violations.len(),
                self.sections
            )?;
        }
        if !self.quiescent {
            f.write_str(", busy: accounting checks skipped")?;
        }
        f.write_str(")")?;
        for v in &self.violations {
            write!(f, "\n  {}: {}", v.invariant, v.detail)?;
        }
        Ok(())
    }
}

impl Replica {
    /// Checks every invariant of this replica object; see the module docs.
    pub fn fsck(&self) -> Report {
        let mut r = Report::default();
        let reg = &self.region;
        let img = reg.img;

        // 1. The header in the object still equals the validated image.
        // SAFETY: the mapping is at least a header long; read by value (volatile) since
        // the page is shared.
        let now_img =
            unsafe { core::ptr::read_volatile(reg.mapping().ptr().cast::<HeaderImage>()) };
        if now_img != img {
            r.push("header-immutable", "the header image changed after attach");
        }

        // 2. Agents.
        let mut alive = vec![false; img.agent_capacity as usize];
        let mut busy = false;
        for ix in 0..img.agent_capacity {
            let st = reg.agent(AgentIx(ix), ag::STATE).load(Acquire);
            match ag_status(st) {
                AG_FREE => {}
                AG_ALIVE if self.token_alive(ag_token(st)) => {
                    alive[ix as usize] = true;
                    if op_kind(reg.agent(AgentIx(ix), ag::OP).load(Acquire)) != OP_NONE {
                        busy = true;
                    }
                }
                AG_ALIVE => r.push(
                    "agent-dead-unrecovered",
                    format!("agent {ix}: process gone, not recovered"),
                ),
                2 if self.token_alive(ag_token(st)) => busy = true,
                2 => r.push(
                    "agent-dead-unrecovered",
                    format!("agent {ix}: recovery abandoned"),
                ),
                s => r.push("agent-state", format!("agent {ix}: status {s}")),
            }
        }
        let owner_alive = |owner: u64| {
            alive
                .get(owner_ix(owner) as usize)
                .copied()
                .unwrap_or(false)
        };
        for w in [hdr::STRUCT_LOCK, hdr::MULTI_OWNER] {
            let h = reg.hdr(w).load(Acquire);
            if h != 0 {
                busy = true;
                if !owner_alive(h) {
                    r.push("lock-owner", format!("a lock word names dead owner {h:#x}"));
                }
            }
        }
        r.quiescent = !busy;

        // 3. Descriptors and their current slots.
        let mut slot_ref: Vec<u32> = vec![NONE; img.slot_count as usize];
        let mut live = 0u64;
        let mut stored = 0u64;
        for d in 0..img.max_sections {
            let dd = Desc(d);
            let st = reg.desc(dd, dw::STATE).load(Acquire);
            let cur = reg.desc(dd, dw::CURRENT).load(Acquire);
            let lease = reg.desc(dd, dw::LEASE).load(Acquire);
            if lease != 0 && !owner_alive(lease) && r.quiescent {
                r.push(
                    "lease-owner",
                    format!("descriptor {d}: lease held by dead owner {lease:#x}"),
                );
            }
            match state_kind(st) {
                KIND_FREE => {
                    if current_slot(cur) != NONE {
                        r.push(
                            "free-desc-has-slot",
                            format!(
                                "descriptor {d} is free but names slot {}",
                                current_slot(cur)
                            ),
                        );
                    }
                    if !reg.desc_hint().is_set(d) {
                        r.push(
                            "free-desc-hinted",
                            format!("free descriptor {d} missing from the allocation hint"),
                        );
                    }
                }
                KIND_LIVE => {
                    live += 1;
                    let key = reg.desc(dd, dw::KEY).load(Acquire);
                    if key >> 48 > img.max_section_id_size {
                        r.push(
                            "id-length",
                            format!("descriptor {d}: id length {} too long", key >> 48),
                        );
                    }
                    let Some(s) = reg.slot_ix(current_slot(cur)) else {
                        r.push(
                            "live-desc-slot",
                            format!(
                                "descriptor {d}: current slot {} out of range",
                                current_slot(cur)
                            ),
                        );
                        continue;
                    };
                    if reg.meta(s, meta::STATE).load(Acquire) != crate::protocol::live(d) {
                        r.push(
                            "current-slot-live",
                            format!("descriptor {d}: slot {} is not LIVE for it", s.0),
                        );
                    }
                    if slot_ref[s.0 as usize] != NONE {
                        r.push(
                            "slot-shared",
                            format!("slot {} is current for two descriptors", s.0),
                        );
                    }
                    slot_ref[s.0 as usize] = d;
                    let size = reg.meta(s, meta::SIZE).load(Acquire);
                    if size > img.max_section_size {
                        r.push(
                            "section-size",
                            format!("descriptor {d}: size {size} > maxSectionSize"),
                        );
                    }
                    stored += size.min(img.max_section_size);
                    let id = self.read_id(dd);
                    if self.key_of(&id) != key {
                        r.push(
                            "id-key",
                            format!("descriptor {d}: key does not hash its id"),
                        );
                    } else if self.probe(&id, key) != Some(dd) {
                        r.push(
                            "indexed",
                            format!("descriptor {d} is not reachable through the index"),
                        );
                    }
                    let exp = reg.desc(dd, dw::EXPIRATION).load(Acquire) as i64;
                    if exp != TIME_END && exp < 0 {
                        r.push("expiration", format!("descriptor {d}: negative expiration"));
                    }
                }
                KIND_OWNED | KIND_RETIRED => {
                    let o = state_payload(st);
                    if !owner_alive(o) {
                        r.push(
                            "desc-owner",
                            format!("descriptor {d} held by dead owner {o:#x}"),
                        );
                    }
                }
                k => r.push("desc-state", format!("descriptor {d}: kind {k}")),
            }
        }
        r.sections = live;

        // 4. Index entries.
        let mut entries = 0u64;
        let mut tombs = 0u64;
        for i in 0..img.index_capacity {
            let e = reg.index_entry(i).load(Acquire);
            match e {
                0 => {}
                u32::MAX => tombs += 1,
                e => {
                    entries += 1;
                    match reg.desc_ix(e - 1) {
                        None => r.push(
                            "index-range",
                            format!("index entry {i} names descriptor {}", e - 1),
                        ),
                        Some(d) => {
                            if state_kind(reg.desc(d, dw::STATE).load(Acquire)) != KIND_LIVE
                                && r.quiescent
                            {
                                r.push(
                                    "index-live",
                                    format!("index entry {i} names non-live descriptor {}", d.0),
                                );
                            }
                        }
                    }
                }
            }
        }
        if r.quiescent {
            if entries != live {
                r.push(
                    "index-count",
                    format!("{entries} index entries for {live} live descriptors"),
                );
            }
            let count = reg.hdr(hdr::SECTION_COUNT).load(Acquire);
            if count != live {
                r.push(
                    "section-count",
                    format!("header counts {count} sections, {live} are live"),
                );
            }
            if reg.hdr(hdr::TOMBSTONES).load(Acquire) != tombs {
                r.push("tombstones", "tombstone count does not match the index");
            }
            if reg.hdr(hdr::INDEX_SEQ).load(Acquire) % 2 == 1
                || reg.hdr(hdr::MULTI_SEQ).load(Acquire) % 2 == 1
            {
                r.push("seqcount-even", "a seqcount is odd with no holder");
            }
        }

        // 5. Slots: every slot is free (and findable), current, retired and pinned, or
        // owned by a live agent.
        let mut pin_entries = vec![false; img.slot_count as usize];
        for ix in 0..img.agent_capacity {
            if !alive[ix as usize] {
                continue;
            }
            for e in 0..PINS_PER_AGENT as u64 {
                let v = reg.agent(AgentIx(ix), ag::PINS + 8 * e).load(Acquire);
                if v >> 32 != 0
                    && let Some(s) = reg.slot_ix(v as u32)
                {
                    pin_entries[s.0 as usize] = true;
                }
            }
        }
        let mut busy_slots = 0u64;
        let mut cached_slots = 0u64;
        for s in 0..img.slot_count {
            let ss = Slot(s);
            let st = reg.meta(ss, meta::STATE).load(Acquire);
            let pinned = reg.pins(ss).iter().any(|w| w.load(Acquire) != 0);
            if pinned && r.quiescent && !pin_entries[s as usize] {
                r.push(
                    "pin-recorded",
                    format!("slot {s} has a pin bit no live agent records"),
                );
            }
            match state_kind(st) {
                KIND_FREE => {
                    if slot_ref[s as usize] != NONE {
                        r.push("current-slot-live", format!("slot {s} is free but current"));
                    }
                    if !reg.slot_hint().is_set(s) {
                        r.push(
                            "free-slot-hinted",
                            format!("free slot {s} missing from the allocation hint (leak)"),
                        );
                    }
                }
                KIND_LIVE => {
                    if slot_ref[s as usize] == NONE {
                        busy_slots += 1;
                        if r.quiescent {
                            r.push(
                                "slot-leak",
                                format!("slot {s} is LIVE but no descriptor's current version"),
                            );
                        }
                    }
                }
                KIND_RETIRED => {
                    busy_slots += 1;
                    if !pinned && r.quiescent {
                        r.push(
                            "slot-leak",
                            format!("slot {s} is retired with no pin and was never freed"),
                        );
                    }
                }
                KIND_OWNED => {
                    busy_slots += 1;
                    if !owner_alive(state_payload(st)) {
                        r.push(
                            "slot-owner",
                            format!("slot {s} owned by a dead agent (leak)"),
                        );
                    } else if r.quiescent {
                        r.push(
                            "slot-leak",
                            format!("slot {s} owned while its owner is idle"),
                        );
                    }
                }
                KIND_CACHED => {
                    let keeper = state_payload(st);
                    if !owner_alive(keeper) {
                        r.push(
                            "slot-owner",
                            format!("slot {s} kept by a dead agent (leak)"),
                        );
                    } else {
                        cached_slots += 1;
                        let named = reg.agent_ix(owner_ix(keeper)).is_some_and(|ix| {
                            reg.agent(ix, ag::SPARE).load(Acquire) == u64::from(s)
                        });
                        if !named && r.quiescent {
                            r.push(
                                "slot-leak",
                                format!("slot {s} is cached but not its keeper's spare"),
                            );
                        }
                    }
                }
                k => r.push("slot-state", format!("slot {s}: kind {k}")),
            }
        }
        r.busy_slots = busy_slots;
        r.cached_slots = cached_slots;

        // 6. Accounting.
        if r.quiescent && reg.hdr(hdr::BUDGET_DIRTY).load(Acquire) == 0 {
            let used = reg.hdr(hdr::STORED_BYTES).load(Acquire);
            if used != stored {
                r.push(
                    "memory-used",
                    format!("memoryUsed is {used}, sections hold {stored}"),
                );
            }
        }

        // 7. Journal: gap-free and complete up to the head (the end of the claimed cells
        // after the HEAD_SEQ hint: a hint past them shows as a gap at the hint).
        let head = self.commit_seq();
        let cap = u64::from(img.journal_capacity);
        let first = head.saturating_sub(cap - 1).max(1);
        for seq in first..=head {
            let w0 = reg.cell(seq, 0).load(Acquire);
            if cell_seq(w0) != seq {
                r.push(
                    "journal-gap",
                    format!("seq {seq} missing (cell holds {})", cell_seq(w0)),
                );
            } else if cell_status(w0) != ST_DONE && r.quiescent {
                r.push(
                    "journal-open",
                    format!("seq {seq} still being written with no writer"),
                );
            }
        }
        for c in 0..cap {
            let w0 = reg.cell(c, 0).load(Acquire);
            if cell_seq(w0) > head {
                r.push(
                    "journal-ahead",
                    format!("cell {c} holds seq {} beyond the head {head}", cell_seq(w0)),
                );
            }
        }
        r
    }
}
