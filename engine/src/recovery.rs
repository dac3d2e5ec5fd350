//! Crash recovery: whoever finds an agent record whose process is dead (its lock file is
//! unlocked) claims the record with its own token and undoes or completes everything the
//! dead agent had in flight, from the shared words alone:
//!
//! - its operation record (kind, phase, descriptor, slots) says whether the change passed
//!   its commit point: then it is rolled forward, else rolled back;
//! - its intent word names the slot or descriptor it may have been claiming;
//! - its pin entries name the slots it pinned;
//! - journal cells still WRITING under its index are completed or turned into aborts;
//! - locks it held (structural, multi-section publish) are repaired and released;
//! - its waiter flag is discounted.
//!
//! Recovery is idempotent and restartable: every step checks that the word it changes
//! still holds the dead owner's value, and a recoverer that dies itself leaves the record
//! RECOVERING under its own (now dead) token, which the next one takes over.

use crate::layout::{
    KIND_FREE, KIND_LIVE, KIND_OWNED, KIND_RETIRED, NONE, PINS_PER_AGENT, agent as ag, current_gen,
    current_slot, current_word, desc as dw, hdr, meta, state_kind, state_word,
};
use crate::protocol;
use crate::region::{AgentIx, Desc, Slot};
use crate::replica::{
    AG_ALIVE, AG_FREE, AG_RECOVERING, OP_CREATE, OP_DELETE, OP_EXPIRE, OP_NONE, OP_TXN, OP_WRITE,
    PH_COMMITTING, PH_PREPARED, PH_RESERVED, PH_RESERVING, Replica, ag_gen, ag_status, ag_token,
    ag_word, op_kind, op_phase, owner_word,
};
use crate::sync::Ordering::*;

impl Replica {
    /// Recovers every agent whose process is dead. Returns how many.
    pub fn recover_dead_agents(&self) -> usize {
        let mut n = 0;
        for ix in 0..self.region.img.agent_capacity {
            let ix = AgentIx(ix);
            let seen = self.region.agent(ix, ag::STATE).load(Acquire);
            let status = ag_status(seen);
            if status == AG_FREE {
                continue;
            }
            if (status == AG_ALIVE || status == AG_RECOVERING) && self.token_alive(ag_token(seen)) {
                continue;
            }
            if self.recover_agent(ix) {
                n += 1;
            }
        }
        n
    }

    /// Recovers agent `ix` if its process (or the process recovering it) is dead.
    /// Returns whether this call recovered it.
    pub(crate) fn recover_agent(&self, ix: AgentIx) -> bool {
        let Ok(me) = self.own_token() else {
            return false;
        };
        let state = self.region.agent(ix, ag::STATE);
        let seen = state.load(Acquire);
        if ag_status(seen) == AG_FREE {
            return false;
        }
        if self.token_alive(ag_token(seen)) {
            return false;
        }
        let generation = ag_gen(seen);
        if state
            .compare_exchange(
                seen,
                ag_word(AG_RECOVERING, generation, me),
                AcqRel,
                Acquire,
            )
            .is_err()
        {
            return false;
        }
        let owner = owner_word(ix.0, generation);
        self.resolve(ix, owner);
        // Free the record under a new generation: every lease or lock word naming the old
        // owner word is now recognisably stale.
        state.store(ag_word(AG_FREE, generation.wrapping_add(1), 0), SeqCst);
        true
    }

    /// Releases this process's agent `ix` (at drop): it is idle, so only pins and the
    /// waiter flag can remain, and those are cleaned the same way as for a dead agent.
    pub(crate) fn release_agent(&self, ix: AgentIx, owner: u64) {
        let state = self.region.agent(ix, ag::STATE);
        let seen = state.load(Acquire);
        if ag_status(seen) != AG_ALIVE || owner_word(ix.0, ag_gen(seen)) != owner {
            return;
        }
        let generation = ag_gen(seen);
        self.resolve(ix, owner_word(ix.0, generation));
        let _ = state.compare_exchange(
            seen,
            ag_word(AG_FREE, generation.wrapping_add(1), 0),
            AcqRel,
            Relaxed,
        );
    }

    fn own_token(&self) -> Result<u32, ()> {
        match &self.domain {
            None => Ok(1),
            Some(d) => crate::liveness::process_lock(d)
                .map(|l| l.token())
                .map_err(|_| ()),
        }
    }

    fn resolve(&self, ix: AgentIx, owner: u64) {
        let forward = self.resolve_op(ix, owner);
        self.resolve_intent(ix, owner);
        self.resolve_spare(ix, owner);
        self.resolve_cells_of(ix, forward);
        self.resolve_pins(ix);
        self.resolve_locks(owner);
        self.resolve_leases(owner);
        self.drop_waiter(ix);
        self.region.agent(ix, ag::OP).store(OP_NONE, Release);
        self.region.agent(ix, ag::INTENT).store(u64::MAX, Release);
    }

    /// Frees the slot the agent kept CACHED for its next write, if it still does, or had
    /// taken from there (OWNED, not published: a write takes its own spare with no INTENT
    /// record, SPARE naming the slot throughout). Runs after [`Self::resolve_op`], so a
    /// write rolled forward has made its slot LIVE already.
    fn resolve_spare(&self, ix: AgentIx, owner: u64) {
        let spare = self.region.agent(ix, ag::SPARE);
        if let Some(s) = self.region.slot_ix(spare.load(Acquire) as u32) {
            let state = self.region.meta(s, meta::STATE);
            let freed = [protocol::cached(owner), protocol::owned(owner)]
                .into_iter()
                .any(|held| {
                    state
                        .compare_exchange(held, KIND_FREE, SeqCst, SeqCst)
                        .is_ok()
                });
            if freed {
                self.region.slot_hint().set(s.0);
            }
        }
        spare.store(u64::from(NONE), Release);
    }

    /// Completes or undoes the recorded operation; returns whether it was rolled forward.
    fn resolve_op(&self, ix: AgentIx, owner: u64) -> bool {
        let op = self.region.agent(ix, ag::OP).load(Acquire);
        let kind = op_kind(op);
        let phase = op_phase(op);
        let op_desc = self.region.agent(ix, ag::OP_DESC).load(Acquire);
        let op_slots = self.region.agent(ix, ag::OP_SLOTS).load(Acquire);
        let delta = self.region.agent(ix, ag::OP_DELTA).load(Acquire) as i64;
        let d = self.region.desc_ix(op_desc as u32);
        let generation = (op_desc >> 32) as u32;
        let new = self.region.slot_ix(op_slots as u32);
        let old = self.region.slot_ix((op_slots >> 32) as u32);
        // What the reservation counter holds of this op: RESERVED and later phases applied
        // `delta`; RESERVING may or may not have.
        let reserved = matches!(phase, PH_RESERVED | PH_PREPARED | PH_COMMITTING);
        if phase == PH_RESERVING {
            self.region.hdr(hdr::BUDGET_DIRTY).store(1, SeqCst);
        }
        let undo_reservation = |this: &Self| {
            if reserved && delta != 0 {
                this.undo_delta(ix, op, delta);
            }
        };
        match kind {
            OP_WRITE => {
                let Some(d) = d else { return false };
                let published = new.is_some_and(|n| {
                    self.region.desc(d, dw::CURRENT).load(Acquire) == current_word(generation, n.0)
                });
                if published {
                    if let Some(old) = old {
                        self.settle_old_slot(d, old);
                    }
                    true
                } else {
                    if let Some(n) = new {
                        self.drop_unpublished_slot(n, d, owner);
                    }
                    undo_reservation(self);
                    false
                }
            }
            OP_CREATE => {
                if phase == PH_COMMITTING {
                    // Past its commit point (F10): committed, whatever became of it since.
                    return true;
                }
                let Some(d) = d else {
                    undo_reservation(self);
                    return false;
                };
                let st = self.region.desc(d, dw::STATE).load(Acquire);
                let cur = self.region.desc(d, dw::CURRENT).load(Acquire);
                let committed = state_kind(st) == KIND_LIVE
                    && current_gen(cur) == generation
                    && new.is_some_and(|n| current_slot(cur) == n.0);
                if committed {
                    return true;
                }
                if st == state_word(KIND_OWNED, owner) {
                    if current_gen(cur) == generation {
                        self.region
                            .desc(d, dw::CURRENT)
                            .store(current_word(generation, NONE), SeqCst);
                    }
                    if let Some(n) = new {
                        self.drop_unpublished_slot(n, d, owner);
                    }
                    self.free_desc(d);
                } else if let Some(n) = new {
                    // The descriptor was already released by the failing op.
                    self.drop_unpublished_slot(n, d, owner);
                }
                undo_reservation(self);
                false
            }
            OP_DELETE => {
                let Some(d) = d else { return false };
                let st = self.region.desc(d, dw::STATE).load(Acquire);
                let cur = self.region.desc(d, dw::CURRENT).load(Acquire);
                if st != state_word(KIND_RETIRED, owner) && current_gen(cur) != generation {
                    // Past its commit point and its descriptor already freed (maybe reused):
                    // only the hints may be missing.
                    if let Some(old) = old {
                        self.settle_old_slot(d, old);
                    }
                    if st == KIND_FREE {
                        self.region.desc_hint().set(d.0);
                    }
                    return true;
                }
                if st == state_word(KIND_RETIRED, owner) {
                    // Past its commit point: finish it. The deleter may have died inside
                    // its critical section, before moving `current` to the next generation.
                    if current_gen(cur) == generation {
                        let next = current_word(generation.wrapping_add(1), NONE);
                        let _ = self
                            .region
                            .desc(d, dw::CURRENT)
                            .compare_exchange(cur, next, SeqCst, SeqCst);
                    }
                    match old {
                        Some(old)
                            if protocol::is_live_for(
                                self.region.meta(old, meta::STATE).load(SeqCst),
                                d.0,
                            ) =>
                        {
                            self.finish_delete(owner, d, old);
                        }
                        _ => {
                            // The slot was already retired; whether its bytes were
                            // subtracted is unknown.
                            self.region.hdr(hdr::BUDGET_DIRTY).store(1, SeqCst);
                            if let Some(old) = old {
                                self.settle_old_slot(d, old);
                            }
                            self.free_desc(d);
                        }
                    }
                    true
                } else {
                    false
                }
            }
            OP_TXN => self.resolve_txn(ix, op, op_slots as u32, owner, reserved, delta),
            OP_EXPIRE => {
                // PREPARED: the seq is claimed and filled; apply the change (again). Its
                // op record keeps the new time where other ops keep their byte delta.
                let Some(d) = d else { return false };
                if phase != PH_PREPARED {
                    return false;
                }
                if current_gen(self.region.desc(d, dw::CURRENT).load(Acquire)) == generation {
                    self.region
                        .desc(d, dw::EXPIRATION)
                        .store(delta as u64, SeqCst);
                }
                true
            }
            _ => false,
        }
    }

    /// The superseded slot `old` of `d` after a roll-forward: retire it if still live, free
    /// it if retired with no pin, and make sure a free one is in the allocation hint (the
    /// dead agent may have died between any two of those steps). Leaves it alone if it is
    /// `d`'s current slot again (the descriptor was freed and reused meanwhile).
    fn settle_old_slot(&self, d: Desc, old: Slot) {
        if current_slot(self.region.desc(d, dw::CURRENT).load(SeqCst)) == old.0 {
            return;
        }
        let state = self.region.meta(old, meta::STATE);
        let seen = state.load(SeqCst);
        if protocol::is_live_for(seen, d.0) {
            self.retire_slot(d, old);
        } else if state_kind(seen) == KIND_RETIRED {
            if protocol::try_free_retired(state, self.region.pins(old)) {
                self.region.slot_hint().set(old.0);
            }
        } else if seen == KIND_FREE {
            self.region.slot_hint().set(old.0);
        }
    }

    /// Gives back a dead agent's reservation. Its op record goes to RESERVING first, so a
    /// recoverer that dies right after and is itself taken over finds the counter marked
    /// uncertain (and recounted) instead of undoing the delta a second time.
    fn undo_delta(&self, ix: AgentIx, op: u64, delta: i64) {
        self.region
            .agent(ix, ag::OP)
            .store((op & !0xff00) | (PH_RESERVING << 8), SeqCst);
        self.region
            .hdr(hdr::STORED_BYTES)
            .fetch_sub(delta as u64, AcqRel);
    }

    /// A slot prepared for descriptor `d` but never published: back to the pool.
    fn drop_unpublished_slot(&self, s: Slot, d: Desc, owner: u64) {
        let st = self.region.meta(s, meta::STATE);
        let seen = st.load(SeqCst);
        let current = current_slot(self.region.desc(d, dw::CURRENT).load(SeqCst));
        if seen == protocol::owned(owner) || (protocol::is_live_for(seen, d.0) && current != s.0) {
            // LIVE-but-unpublished slots are unreachable (no reader can have pinned them
            // through `current`), so they can be freed directly.
            if st.compare_exchange(seen, KIND_FREE, SeqCst, SeqCst).is_ok() {
                self.region.slot_hint().set(s.0);
            }
        }
    }

    fn resolve_txn(
        &self,
        ix: AgentIx,
        op: u64,
        head: u32,
        owner: u64,
        reserved: bool,
        delta: i64,
    ) -> bool {
        let phase = op_phase(op);
        let forward = phase == PH_COMMITTING;
        if forward {
            // Publish under the multi-section seqcount, in the dead owner's name (resolving
            // its locks afterwards releases it): the owner may have died before it took the
            // lock, and `read_many` must not see the roll-forward half done.
            let multi = self.region.hdr(hdr::MULTI_OWNER);
            let mut since = None;
            for i in 0..crate::replica::SPIN_LIMIT * 4 {
                match multi.compare_exchange(0, owner, AcqRel, Acquire) {
                    Ok(_) => break,
                    Err(h) if h == owner => break,
                    Err(h) => {
                        if i % 256 == 255 {
                            self.owner_gone(h);
                        }
                        if !crate::sync::backoff(i, &mut since) {
                            break;
                        }
                    }
                }
            }
            if multi.load(Acquire) == owner {
                let seq = self.region.hdr(hdr::MULTI_SEQ);
                if seq.load(Acquire).is_multiple_of(2) {
                    seq.fetch_add(1, SeqCst);
                }
            }
        }
        let mut next = head;
        let mut steps = 0;
        while let Some(s) = self.region.slot_ix(next) {
            steps += 1;
            if steps > self.region.img.slot_count {
                break;
            }
            let txn = self.region.meta(s, meta::TXN).load(Acquire);
            let txn_old = self.region.meta(s, meta::TXN_OLD).load(Acquire);
            next = txn as u32;
            let Some(d) = self.region.desc_ix((txn >> 32) as u32) else {
                continue;
            };
            let generation = (txn_old >> 32) as u32;
            let old = self.region.slot_ix(txn_old as u32);
            let state = self.region.meta(s, meta::STATE).load(SeqCst);
            if forward {
                if !protocol::is_live_for(state, d.0) {
                    continue;
                }
                let current = self.region.desc(d, dw::CURRENT);
                if let Some(old) = old {
                    let _ = current.compare_exchange(
                        current_word(generation, old.0),
                        current_word(generation, s.0),
                        SeqCst,
                        SeqCst,
                    );
                    if current.load(SeqCst) == current_word(generation, s.0) {
                        self.settle_old_slot(d, old);
                    }
                }
            } else {
                self.drop_unpublished_slot(s, d, owner);
            }
        }
        if !forward && reserved && delta != 0 {
            self.undo_delta(ix, op, delta);
        }
        forward
    }

    /// A slot or descriptor the agent may have been claiming when it died.
    fn resolve_intent(&self, ix: AgentIx, owner: u64) {
        let intent = self.region.agent(ix, ag::INTENT).load(Acquire);
        match intent >> 32 {
            1 => {
                if let Some(s) = self.region.slot_ix(intent as u32) {
                    self.free_owned_slot(owner, s);
                    // Freed now, or freed by the dead agent just before it could hint it
                    // (an overwrite refused after its copy gives its slot back): either
                    // way the slot belongs in the allocation hint. A slot taken again
                    // since costs an allocator one failed claim, nothing more.
                    if self.region.meta(s, meta::STATE).load(SeqCst) == KIND_FREE {
                        self.region.slot_hint().set(s.0);
                    }
                }
            }
            2 => {
                if let Some(d) = self.region.desc_ix(intent as u32)
                    && self.region.desc(d, dw::STATE).load(Acquire) == state_word(KIND_OWNED, owner)
                    && current_slot(self.region.desc(d, dw::CURRENT).load(Acquire)) == NONE
                {
                    self.free_desc(d);
                }
            }
            _ => {}
        }
    }

    /// Section leases the dead owner held: nothing of its is in flight any more.
    fn resolve_leases(&self, owner: u64) {
        for d in 0..self.region.img.max_sections {
            let lease = self.region.desc(Desc(d), dw::LEASE);
            if lease.load(Relaxed) == owner {
                let _ = lease.compare_exchange(owner, 0, AcqRel, Relaxed);
            }
        }
    }

    fn resolve_pins(&self, ix: AgentIx) {
        let word = (ix.0 / 64) as usize;
        let bit = 1u64 << (ix.0 % 64);
        for e in 0..PINS_PER_AGENT as u64 {
            let entry = self.region.agent(ix, ag::PINS + 8 * e);
            let v = entry.load(Acquire);
            if v != 0 {
                let freed = protocol::unpin(&self.region, v as u32, word, bit);
                // Freed now, or freed by the dead agent just before it could hint it.
                let free = self
                    .region
                    .slot_ix(v as u32)
                    .is_some_and(|s| self.region.meta(s, meta::STATE).load(SeqCst) == KIND_FREE);
                if freed || free {
                    self.region.slot_hint().set(v as u32);
                }
            }
            entry.store(0, Release);
        }
    }

    fn resolve_locks(&self, owner: u64) {
        let lock = self.region.hdr(hdr::STRUCT_LOCK);
        if lock.load(Acquire) == owner {
            let seq = self.region.hdr(hdr::INDEX_SEQ);
            // The holder may have died anywhere inside its change: the descriptors' state
            // words are the truth, the index and count are rebuilt from them.
            if seq.load(Acquire).is_multiple_of(2) {
                seq.fetch_add(1, SeqCst);
            }
            crate::sync::fence(Release);
            self.rebuild_index();
            seq.fetch_add(1, SeqCst);
            let _ = lock.compare_exchange(owner, 0, AcqRel, Relaxed);
        }
        let multi = self.region.hdr(hdr::MULTI_OWNER);
        if multi.load(Acquire) == owner {
            let seq = self.region.hdr(hdr::MULTI_SEQ);
            if seq.load(Acquire) % 2 == 1 {
                seq.fetch_add(1, SeqCst);
            }
            let _ = multi.compare_exchange(owner, 0, AcqRel, Relaxed);
        }
    }

    /// Recomputes `memoryUsed` from the committed slots when a crash left it uncertain.
    /// Only done while no live agent is between reserving and committing, so the sum is
    /// exact; otherwise the flag stays set and a later call retries.
    pub(crate) fn recount_budget(&self) {
        let dirty = self.region.hdr(hdr::BUDGET_DIRTY);
        if dirty.load(Acquire) == 0 {
            return;
        }
        if self.agents_mid_op() {
            return;
        }
        let mut sum = 0u64;
        for d in 0..self.region.img.max_sections {
            let d = Desc(d);
            if state_kind(self.region.desc(d, dw::STATE).load(Acquire)) != KIND_LIVE {
                continue;
            }
            if let Some(s) = self
                .region
                .slot_ix(current_slot(self.region.desc(d, dw::CURRENT).load(Acquire)))
            {
                sum += self
                    .region
                    .meta(s, meta::SIZE)
                    .load(Acquire)
                    .min(self.region.img.max_section_size);
            }
        }
        if self.agents_mid_op() {
            return;
        }
        self.region.hdr(hdr::STORED_BYTES).store(sum, SeqCst);
        dirty.store(0, SeqCst);
    }

    fn agents_mid_op(&self) -> bool {
        (0..self.region.img.agent_capacity).any(|ix| {
            let ix = AgentIx(ix);
            let st = self.region.agent(ix, ag::STATE).load(Acquire);
            if ag_status(st) == AG_FREE {
                return false;
            }
            let op = self.region.agent(ix, ag::OP).load(Acquire);
            op_kind(op) != OP_NONE && op_phase(op) != 0
        })
    }
}

/// What one agent record says (for tools and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    /// Index in the agent table.
    pub index: u32,
    /// OS process id recorded at registration.
    pub pid: u32,
    /// Whether the record's process is alive.
    pub alive: bool,
    /// Whether the record is being recovered.
    pub recovering: bool,
    /// Kind of the operation in flight (0 = none; 1 write, 2 multi-section write,
    /// 3 section create, 4 section delete, 5 expiration change).
    pub op_kind: u8,
    /// Its phase.
    pub op_phase: u8,
    /// Pins held.
    pub pins: u32,
}

impl Replica {
    /// Every agent record in use.
    pub fn agents(&self) -> Vec<AgentInfo> {
        (0..self.region.img.agent_capacity)
            .filter_map(|ix| {
                let ix = AgentIx(ix);
                let st = self.region.agent(ix, ag::STATE).load(Acquire);
                if ag_status(st) == AG_FREE {
                    return None;
                }
                let op = self.region.agent(ix, ag::OP).load(Acquire);
                let pins = (0..PINS_PER_AGENT as u64)
                    .filter(|e| self.region.agent(ix, ag::PINS + 8 * e).load(Acquire) != 0)
                    .count() as u32;
                Some(AgentInfo {
                    index: ix.0,
                    pid: self.region.agent(ix, ag::PID).load(Acquire) as u32,
                    alive: self.token_alive(ag_token(st)),
                    recovering: ag_status(st) == AG_RECOVERING,
                    op_kind: op_kind(op) as u8,
                    op_phase: op_phase(op) as u8,
                    pins,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testutil::small_replica as small;

    #[test]
    fn a_writer_dead_after_taking_its_spare_leaves_no_slot_behind() {
        let sut = small();
        sut.create_section(Some(b"s"), crate::TIME_END, b"one")
            .unwrap();
        // The superseded version stays CACHED as this agent's spare.
        sut.overwrite(b"s", b"two").unwrap();
        let a = sut.agent().unwrap();
        let spare = sut
            .region
            .slot_ix(sut.region.agent(a.ix, ag::SPARE).load(SeqCst) as u32)
            .unwrap();
        let state = sut.region.meta(spare, meta::STATE);
        assert_eq!(state.load(SeqCst), protocol::cached(a.owner));

        // What the next overwrite does first (SPARE names the slot, no INTENT record),
        // and then its writer dies.
        assert!(protocol::take_cached(state, a.owner, a.owner));
        sut.resolve(a.ix, a.owner);

        assert_eq!(state.load(SeqCst), KIND_FREE);
        assert_eq!(sut.read_to_vec(b"s").unwrap(), b"two");
        let report = sut.fsck();
        assert!(report.is_clean(), "{report}");
    }
}
