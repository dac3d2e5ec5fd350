//! The change journal: a ring of fixed-size cells, one per committed change, numbered by a
//! gap-free sequence (`commit_seq`). Replication and arrival callbacks read it with
//! [`Replica::changes_since`]; a reader that falls more than a ring behind is told to
//! resync from the sections themselves.
//!
//! A cell is claimed for seq `S` by one CAS of its first word from "done with `S - cap`"
//! (or empty) to "writing `S` by agent `ix`", so a seq is never handed out without its cell
//! and the journal has no holes. A claimer takes the first cell after the claimed ones and
//! never skips one, so the claimed seqs are always `1..=head`: the head is where they end.
//! HEAD_SEQ is a hint of it, raised by each claimer with a plain store (no second locked
//! instruction per change) and so possibly behind, even moved back by a claimer that stalled
//! between its check and its store; [`Replica::commit_seq`] finds the head from the hint
//! by following the claimed cells (jumping a lap at once where a cell holds a later seq). The writer fills the other words, and completes the cell
//! (`DONE`) after its change is published, or marks it an abort record when the change
//! was rolled back. A writer that dies leaves `WRITING` cells naming its agent; recovery
//! completes or aborts them according to how it resolved the writer's operation.
//!
//! Cell words: `w0 = seq << 14 | status << 12 | agent`, `w1 = desc | generation << 32`,
//! `w2 = offset` (or the expiration time; an overwrite leaves it as it was, its offset is
//! 0), `w3 = length`, `w4 = kind | tag << 8 | slot << 32`
//! (the tag is the writing thread's [`set_write_tag`], 24 bits),
//! `w5 = wall-clock time`. Seqs are 50-bit (at 10^7 commits/s, 3.5 years per replica
//! incarnation).

use crate::error::SectionError;
use crate::layout::{NONE, hdr};
use crate::region::{AgentIx, CELL_WORDS, Desc, Rec, Slot};
use crate::replica::{AgentCtx, Replica, SPIN_LIMIT};
use crate::sync::{AtomicU64, Ordering::*, backoff, fence, spin_hint};

/// A section was created (its initial data is `offset..offset+len` of the section).
pub const KIND_CREATE: u64 = 1;
/// A section was deleted.
pub const KIND_DELETE: u64 = 2;
/// A section's data was replaced (`len` is the new size).
pub const KIND_OVERWRITE: u64 = 3;
/// Bytes `offset..offset+len` of a section were written.
pub const KIND_WRITE: u64 = 4;
/// A section's expiration time changed (in `offset`).
pub const KIND_EXPIRATION: u64 = 5;
/// A rolled-back change: occupies its seq, carries nothing.
pub const KIND_ABORT: u64 = 15;

/// Largest tag [`set_write_tag`] records (24 bits).
pub const MAX_WRITE_TAG: u32 = (1 << 24) - 1;

std::thread_local! {
    static WRITE_TAG: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Sets the tag recorded in the journal with every change this thread makes from now on
/// (cut to 24 bits; 0 by default). Readers of the journal see it in [`Change::tag`]: the
/// agent layer tags each change with the handle that made it, so arrival callbacks can
/// skip the writer's own changes.
#[inline]
pub fn set_write_tag(tag: u32) {
    WRITE_TAG.with(|t| t.set(tag & MAX_WRITE_TAG));
}

#[inline]
fn write_tag() -> u64 {
    u64::from(WRITE_TAG.with(core::cell::Cell::get))
}

/// Agent WAITING bit of a thread blocked in [`Replica::wait_for_changes`].
const WAIT_CHANGES: u64 = 1;
/// Agent WAITING bit of a thread blocked in [`Replica::wait_for_acked`].
const WAIT_ACK: u64 = 2;

/// The waiter count and futex word of a WAITING bit.
fn waiter_words(kind: u64) -> (u64, u64) {
    if kind == WAIT_ACK {
        (hdr::ACK_WAITERS, hdr::ACK_NOTIFY)
    } else {
        (hdr::WAITERS, hdr::NOTIFY)
    }
}

pub(crate) const ST_WRITING: u64 = 1;
pub(crate) const ST_DONE: u64 = 2;
const SEQ_SHIFT: u32 = 14;
const AGENT_MASK: u64 = 0xfff;
/// Largest seq the cell encoding holds.
pub const MAX_SEQ: u64 = (1 << 50) - 1;

#[inline]
pub(crate) const fn cell_word(seq: u64, status: u64, ix: u32) -> u64 {
    (seq << SEQ_SHIFT) | (status << 12) | (ix as u64 & AGENT_MASK)
}
#[inline]
pub(crate) const fn cell_seq(w: u64) -> u64 {
    w >> SEQ_SHIFT
}
#[inline]
pub(crate) const fn cell_status(w: u64) -> u64 {
    (w >> 12) & 3
}
#[inline]
pub(crate) const fn cell_agent(w: u64) -> u32 {
    (w & AGENT_MASK) as u32
}

/// What a journal record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Section created with `len` bytes of initial data.
    Create,
    /// Section deleted.
    Delete,
    /// Section data replaced; its size became `len`.
    Overwrite,
    /// `len` bytes written at `offset`.
    Write,
    /// Expiration time set (the new time is in [`Change::expiration`]).
    Expiration,
}

/// One committed change, as read from the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its seq.
    pub seq: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The section's id, when the section still exists under the same incarnation
    /// (`None` if it was deleted or recreated since: the change is then superseded).
    pub id: Option<Vec<u8>>,
    /// Byte offset of the change.
    pub offset: u64,
    /// Bytes changed (for `Overwrite` and `Create`, the new size).
    pub len: u64,
    /// New expiration time (`Expiration` only; otherwise 0).
    pub expiration: i64,
    /// Wall-clock time of the change, ns since the epoch.
    pub time: i64,
    /// The agent (thread of a process) that made it: see [`Replica::is_own_agent`].
    pub agent: u32,
    /// The writer's [`set_write_tag`] at the time.
    pub tag: u32,
}

impl Change {
    /// What an arrival callback reports of this change: the section id, the offset and
    /// the size written. `None` for deletes and expiration changes, which are not
    /// arrivals, and for a change whose section was deleted or recreated since (nothing
    /// of it is left to read). An overwrite or a creation reports the whole section.
    pub fn arrival(&self) -> Option<(&[u8], u64, u64)> {
        let offset = match self.kind {
            ChangeKind::Create | ChangeKind::Overwrite => 0,
            ChangeKind::Write => self.offset,
            ChangeKind::Delete | ChangeKind::Expiration => return None,
        };
        Some((self.id.as_deref()?, offset, self.len))
    }

    /// Who made it, as one number: equal for the changes of one agent under one write
    /// tag, opaque otherwise.
    pub fn writer(&self) -> u64 {
        (u64::from(self.agent) << 32) | u64::from(self.tag)
    }
}

/// Answer of [`Replica::changes_since`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changes {
    /// The changes after the asked seq were appended, up to and including this seq (equal
    /// to the asked seq when there is nothing new yet).
    UpTo(u64),
    /// The ring lapped the reader: changes were lost, read every section again. The
    /// payload is the seq to continue from after the resync.
    Resync(u64),
}

/// Whether the cell word `seen` lets `seq` claim its cell: empty on the ring's first lap
/// (seq 0 never exists, so a cell's first occupant finds it empty), else holding the seq a
/// ring before, done.
#[inline(always)]
fn cell_free(seen: u64, seq: u64, cap: u64) -> bool {
    match seq.checked_sub(cap).filter(|&p| p > 0) {
        None => seen == 0,
        Some(p) => cell_seq(seen) == p && cell_status(seen) == ST_DONE,
    }
}

/// The payload words of a journal cell, as a claim fills them.
#[derive(Clone, Copy)]
pub(crate) struct CellFields<'r> {
    /// The section, as [`section_word`] makes it.
    pub(crate) section: CellWord<'r>,
    pub(crate) s: Slot,
    pub(crate) offset: u64,
    pub(crate) len: CellWord<'r>,
    pub(crate) kind: u64,
    /// The change's wall-clock time (a data change: the time its slot was stamped with,
    /// so one clock read serves both).
    pub(crate) time: CellWord<'r>,
}

/// A journal cell's section word: the descriptor and its generation.
#[inline(always)]
pub(crate) fn section_word(d: Desc, generation: u32) -> u64 {
    u64::from(d.0) | (u64::from(generation) << 32)
}

/// Where a payload word of a journal cell comes from.
#[derive(Clone, Copy)]
pub(crate) enum CellWord<'r> {
    /// This value.
    Is(u64),
    /// The value of a word the writer stored before and nobody else writes (its op
    /// record, its own slot's meta), read when the cell is filled: an overwrite's commit
    /// reads its section, size and time back instead of keeping them in registers across
    /// the copy's call (where they would be spilled: a store each).
    Load(&'r AtomicU64),
}

impl CellWord<'_> {
    #[inline(always)]
    fn get(self) -> u64 {
        match self {
            Self::Is(v) => v,
            Self::Load(w) => w.load(Relaxed),
        }
    }
}

impl Replica {
    fn journal_mask(&self) -> u64 {
        u64::from(self.region.img.journal_capacity) - 1
    }

    /// The seq of the latest claimed change (`commit_seq`): a synchronize barrier waits
    /// until replicas have applied this. Never moves back.
    ///
    /// Found from the HEAD_SEQ hint by following claimed cells (SeqCst loads: a waiter in
    /// [`Replica::wait_for_changes`] pairs them with the claims' SeqCst CAS). At most about
    /// two rings of cells are looked at, so a corrupted ring cannot hold it up.
    pub fn commit_seq(&self) -> u64 {
        let cap = u64::from(self.region.img.journal_capacity);
        let mut head = self.region.hdr(hdr::HEAD_SEQ).load(SeqCst).min(MAX_SEQ);
        for _ in 0..2 * cap + 2 {
            let next = head + 1;
            if next > MAX_SEQ {
                break;
            }
            let held = cell_seq(self.region.cell(next, 0).load(SeqCst));
            if held == next {
                head = next;
            } else if held > next && (held - next).is_multiple_of(cap) {
                // A lap (or more) ahead of the hint: every seq up to `held` was claimed.
                head = held;
            } else {
                break;
            }
        }
        head
    }

    /// Raises the HEAD_SEQ hint to `seq`, the seq just claimed (a plain store: see the
    /// module's notes; a claimer that stalls here may move it back, which costs a later
    /// [`Replica::commit_seq`] a longer walk and nothing else).
    #[inline(always)]
    fn raise_head(&self, seq: u64) {
        let head = self.region.hdr(hdr::HEAD_SEQ);
        if head.load(Relaxed) < seq {
            head.store(seq, Release);
        }
    }

    /// The seq every replica has acknowledged (published by the cluster daemon).
    pub fn acked_seq(&self) -> u64 {
        self.region.hdr(hdr::ACKED_SEQ).load(Acquire)
    }

    /// Publishes the replicas' acknowledged seq (never moves it backwards), and wakes the
    /// threads blocked in [`Replica::wait_for_acked`] when it moved and some are: no
    /// syscall when nobody waits.
    pub fn set_acked_seq(&self, seq: u64) {
        // SeqCst: the publisher's half of the handshake with a waiter's SeqCst increment of
        // ACK_WAITERS followed by its SeqCst load of ACKED_SEQ (DESIGN.md §15).
        let before = self.region.hdr(hdr::ACKED_SEQ).fetch_max(seq, SeqCst);
        if before < seq {
            self.wake(hdr::ACK_WAITERS, hdr::ACK_NOTIFY);
        }
    }

    /// Lowers the acknowledged seq to `seq` (a replica joined the set and has acknowledged
    /// less). Waiters need no wake-up: nothing they wait for became true.
    pub fn lower_acked_seq(&self, seq: u64) {
        self.region.hdr(hdr::ACKED_SEQ).fetch_min(seq, SeqCst);
    }

    /// Blocks until ACKED_SEQ is at least `seq` or `timeout` passes; returns whether it is
    /// (the confirmed synchronize barrier: `wait_for_acked(commit_seq(), ..)`). Returns at
    /// once, without a syscall, when it already is. Waiters announce themselves as in
    /// [`Replica::wait_for_changes`], so a waiter killed while waiting is discounted by
    /// recovery.
    pub fn wait_for_acked(&self, seq: u64, timeout: std::time::Duration) -> bool {
        let acked = || self.region.hdr(hdr::ACKED_SEQ).load(SeqCst) >= seq;
        if acked() {
            return true;
        }
        self.wait_until(WAIT_ACK, acked, timeout)
    }

    /// Claims the next seq for a change by agent `a` and fills its cell (status WRITING).
    /// The common case in line: the cell after the head is free and the CAS takes it.
    #[inline(always)]
    pub(crate) fn claim_seq(&self, a: AgentCtx, f: CellFields<'_>) -> Result<u64, SectionError> {
        let cap = u64::from(self.region.img.journal_capacity);
        // The cell after the hint, which is the head unless another claim is in flight.
        // Saturating: HEAD_SEQ is a shared word; past MAX_SEQ the slow path fails.
        let seq = self
            .region
            .hdr(hdr::HEAD_SEQ)
            .load(Acquire)
            .saturating_add(1);
        let cell = self.region.cell_rec(seq);
        let w0 = cell.word(0);
        let seen = w0.load(Acquire);
        // SeqCst: the store half of the handshake with a waiter (see `notify`).
        let (seq, cell) = if seq <= MAX_SEQ
            && cell_free(seen, seq, cap)
            && w0
                .compare_exchange(seen, cell_word(seq, ST_WRITING, a.ix.0), SeqCst, Acquire)
                .is_ok()
        {
            (seq, cell)
        } else {
            // The fields stay out of the slow path's arguments: passed there, they would
            // be written to the stack on the common path too.
            self.claim_cell_slow(a.ix)?
        };
        self.fill_cell(cell, seq, f);
        Ok(seq)
    }

    /// Fills `cell`, the cell of `seq` just claimed (WRITING), and raises the head to it.
    #[inline(always)]
    fn fill_cell(&self, cell: &Rec<CELL_WORDS>, seq: u64, f: CellFields<'_>) {
        let CellFields {
            section,
            s,
            offset,
            len,
            kind,
            time,
        } = f;
        // Seqlock discipline: the WRITING mark is ordered before the payload.
        fence(Release);
        cell.word(1).store(section.get(), Relaxed);
        // An overwrite's offset is 0 by its kind: one store fewer on the hottest path.
        if kind != KIND_OVERWRITE {
            cell.word(2).store(offset, Relaxed);
        }
        cell.word(3).store(len.get(), Relaxed);
        cell.word(4)
            .store(kind | (write_tag() << 8) | (u64::from(s.0) << 32), Relaxed);
        let time = time.get();
        cell.word(5).store(time, Relaxed);
        self.raise_head(seq);
    }

    /// [`Self::claim_seq`] when the first try did not get the cell: the bounded wait for
    /// one, claimed (WRITING) for agent `ix`; the caller fills it.
    #[cold]
    #[inline(never)]
    fn claim_cell_slow(&self, ix: AgentIx) -> Result<(u64, &Rec<CELL_WORDS>), SectionError> {
        let cap = u64::from(self.region.img.journal_capacity);
        let mut seq = self.commit_seq().saturating_add(1);
        let mut since = None;
        for i in 0..SPIN_LIMIT {
            if seq > MAX_SEQ {
                return Err(SectionError::NoResources);
            }
            let cell = self.region.cell_rec(seq);
            let w0 = cell.word(0);
            let seen = w0.load(Acquire);
            let prev = seq.checked_sub(cap).filter(|&p| p > 0);
            if cell_free(seen, seq, cap) {
                if w0
                    .compare_exchange(seen, cell_word(seq, ST_WRITING, ix.0), SeqCst, Acquire)
                    .is_ok()
                {
                    return Ok((seq, cell));
                }
                continue;
            }
            let held = cell_seq(seen);
            if held >= seq {
                // Someone claimed it (or later ones wrapped here): move past, to the first
                // cell not claimed (never beyond it: the claimed seqs stay gap-free).
                seq = held.max(self.commit_seq()).saturating_add(1);
                continue;
            }
            if cell_status(seen) == ST_WRITING && prev.is_some_and(|p| held == p) {
                // The change a ring ago is still being written: wait for it, recovering
                // its writer if it died.
                if i % 256 == 255 {
                    self.recover_cell_owner(cell_agent(seen));
                }
                if !backoff(i, &mut since) {
                    break;
                }
                continue;
            }
            // A gap-free journal never holds anything else here.
            return Err(SectionError::Corrupted(
                &"journal cell holds an impossible seq",
            ));
        }
        Err(SectionError::TryAgain)
    }

    fn recover_cell_owner(&self, ix: u32) {
        let Some(ix) = self.region.agent_ix(ix) else {
            return;
        };
        self.recover_agent(ix);
    }

    /// Marks the change at `seq` complete.
    #[inline]
    pub(crate) fn complete_seq(&self, seq: u64) {
        let w0 = self.region.cell(seq, 0);
        let seen = w0.load(Relaxed);
        if cell_seq(seen) == seq {
            w0.store(cell_word(seq, ST_DONE, cell_agent(seen)), Release);
        }
    }

    /// Turns the change at `seq` into an abort record and completes it.
    pub(crate) fn abort_seq(&self, seq: u64) {
        let w0 = self.region.cell(seq, 0);
        let seen = w0.load(Relaxed);
        if cell_seq(seen) == seq {
            self.region
                .cell(seq, 4)
                .store(KIND_ABORT | (u64::from(NONE) << 32), Relaxed);
            w0.store(cell_word(seq, ST_DONE, cell_agent(seen)), Release);
        }
    }

    /// Resolves every WRITING cell of agent `ix` (recovery): completes it when the
    /// change was rolled forward, makes it an abort record otherwise.
    pub(crate) fn resolve_cells_of(&self, ix: AgentIx, forward: bool) {
        let cap = u64::from(self.region.img.journal_capacity);
        for c in 0..cap {
            let w0 = self.region.cell(c, 0);
            let seen = w0.load(Acquire);
            if cell_status(seen) != ST_WRITING || cell_agent(seen) != ix.0 {
                continue;
            }
            let seq = cell_seq(seen);
            if seq & self.journal_mask() != c {
                continue;
            }
            // The op record decides (expiration changes have one too): the cell's own
            // words may be a ring old, as the writer fills them after claiming the cell.
            if forward {
                self.complete_seq(seq);
            } else {
                self.abort_seq(seq);
            }
            // The writer may have died between claiming the cell and raising the hint.
            self.region.hdr(hdr::HEAD_SEQ).fetch_max(seq, AcqRel);
        }
    }

    /// Reads the changes after seq `after` into `out` (at most `max`), in seq order. Stops
    /// at the first change still being written. Abort records are skipped silently.
    pub fn changes_since(&self, after: u64, out: &mut Vec<Change>, max: usize) -> Changes {
        let cap = u64::from(self.region.img.journal_capacity);
        let head = self.commit_seq();
        if head > after && head - after > cap {
            return Changes::Resync(self.resync_point());
        }
        let mut seq = after;
        let mut taken = 0;
        while seq < head && taken < max {
            let next = seq + 1;
            let mut got = None;
            for attempt in 0..SPIN_LIMIT {
                let w0 = self.region.cell(next, 0);
                let before = w0.load(Acquire);
                if cell_seq(before) > next {
                    return Changes::Resync(self.resync_point());
                }
                if cell_seq(before) < next {
                    // Not claimed after all (the head was read from a ring being
                    // rewritten, or a corrupted one): nothing further is readable yet.
                    return Changes::UpTo(seq);
                }
                if cell_status(before) == ST_WRITING {
                    if attempt == 63 {
                        // Stuck: if its writer died, recover it now (one liveness check).
                        self.recover_cell_owner(cell_agent(before));
                    }
                    if attempt < 64 {
                        spin_hint();
                        continue;
                    }
                    return Changes::UpTo(seq);
                }
                let w1 = self.region.cell(next, 1).load(Relaxed);
                let w2 = self.region.cell(next, 2).load(Relaxed);
                let w3 = self.region.cell(next, 3).load(Relaxed);
                let w4 = self.region.cell(next, 4).load(Relaxed);
                let w5 = self.region.cell(next, 5).load(Relaxed);
                fence(Acquire);
                if w0.load(Relaxed) != before {
                    continue;
                }
                got = Some((before, w1, w2, w3, w4, w5));
                break;
            }
            let Some((before, w1, w2, w3, w4, w5)) = got else {
                return Changes::UpTo(seq);
            };
            seq = next;
            let kind = match w4 & 0xff {
                KIND_CREATE => ChangeKind::Create,
                KIND_DELETE => ChangeKind::Delete,
                KIND_OVERWRITE => ChangeKind::Overwrite,
                KIND_WRITE => ChangeKind::Write,
                KIND_EXPIRATION => ChangeKind::Expiration,
                _ => continue,
            };
            let max = self.region.img.max_section_size;
            // An overwrite's `w2` is whatever the cell held before: its offset is 0.
            let w2 = if kind == ChangeKind::Overwrite { 0 } else { w2 };
            let impossible = match kind {
                // Its writer records the time in `w2` and no length.
                ChangeKind::Expiration => w3 != 0,
                _ => w2.checked_add(w3).is_none_or(|end| end > max),
            };
            if impossible {
                // A record no writer can have made: the ring is corrupted, resync.
                return Changes::Resync(self.resync_point());
            }
            let id = self.id_for_change(w1, kind);
            let expiration = if kind == ChangeKind::Expiration {
                w2 as i64
            } else {
                0
            };
            let offset = if kind == ChangeKind::Expiration {
                0
            } else {
                w2
            };
            out.push(Change {
                seq: next,
                kind,
                id,
                offset,
                len: w3,
                expiration,
                time: w5 as i64,
                agent: cell_agent(before),
                tag: ((w4 >> 8) & u64::from(MAX_WRITE_TAG)) as u32,
            });
            taken += 1;
        }
        Changes::UpTo(seq)
    }

    /// Where a consumer continues after a resync: the last seq before the oldest change
    /// still being written, so a change that publishes after the consumer's snapshot of
    /// the sections is still delivered (replaying one it already saw is harmless: records
    /// say what to re-read, not what to apply).
    pub fn resync_point(&self) -> u64 {
        let head = self.commit_seq();
        let cap = u64::from(self.region.img.journal_capacity);
        let first = head.saturating_sub(cap - 1).max(1);
        for seq in first..=head {
            let w0 = self.region.cell(seq, 0).load(Acquire);
            if cell_seq(w0) != seq || cell_status(w0) != ST_DONE {
                return seq - 1;
            }
        }
        head
    }

    /// The id of the section a change names, if that incarnation still exists (for a
    /// delete: the id the descriptor held, while it is not reused).
    fn id_for_change(&self, w1: u64, kind: ChangeKind) -> Option<Vec<u8>> {
        let d = self.region.desc_ix(w1 as u32)?;
        let generation = (w1 >> 32) as u32;
        let cur = self
            .region
            .desc(d, crate::layout::desc::CURRENT)
            .load(Acquire);
        let now = crate::layout::current_gen(cur);
        let same =
            now == generation || (kind == ChangeKind::Delete && now == generation.wrapping_add(1));
        if !same {
            return None;
        }
        let id = self.read_id(d);
        // The same section throughout (its id cannot change while it lives). Only the
        // generation counts: an overwrite meanwhile moves the slot, not the section.
        let cur2 = self
            .region
            .desc(d, crate::layout::desc::CURRENT)
            .load(Acquire);
        (crate::layout::current_gen(cur2) == now).then_some(id)
    }

    /// How many threads are announced as blocked in [`Replica::wait_for_changes`]: while
    /// this is zero a write makes no wake-up syscall. (A waiter killed while waiting counts
    /// until it is recovered.)
    pub fn change_waiters(&self) -> u32 {
        self.region.hdr32(hdr::WAITERS).load(SeqCst)
    }

    /// Wakes waiters of [`Replica::wait_for_changes`], if there are any: no syscall on the
    /// write path when nobody waits.
    #[inline]
    pub(crate) fn notify(&self) {
        // No fence: every change claimed its cell with a SeqCst CAS, and a waiter, after
        // announcing itself (SeqCst), reads the cells up to the first one not claimed
        // (`commit_seq`, SeqCst loads); whichever cell it stops at, that cell's claimer
        // either is seen by the waiter or sees it.
        self.wake(hdr::WAITERS, hdr::NOTIFY);
    }

    /// If the waiter count at `waiters` is non-zero, bumps the futex word `word` and wakes
    /// every thread blocked on it. The caller's SeqCst RMW of the awaited word comes first.
    #[inline]
    fn wake(&self, waiters: u64, word: u64) {
        if self.region.hdr32(waiters).load(SeqCst) != 0 {
            self.wake_waiters(word);
        }
    }

    /// [`Self::wake`] once a waiter is seen: out of line, so a writer's common path (no
    /// waiter) is laid out, and its registers allocated, without it.
    #[cold]
    #[inline(never)]
    fn wake_waiters(&self, word: u64) {
        self.region.hdr32(word).fetch_add(1, SeqCst);
        #[cfg(not(loom))]
        let _ = rustix::thread::futex::wake(
            self.region.hdr32(word),
            rustix::thread::futex::Flags::empty(),
            i32::MAX as u32,
        );
    }

    /// Blocks until a change after `after` is committed or `timeout` passes. Returns
    /// whether there is something new. Waiters announce themselves in the header (and in
    /// their agent record, so a waiter killed while waiting is discounted by recovery).
    pub fn wait_for_changes(&self, after: u64, timeout: std::time::Duration) -> bool {
        let changed = || self.commit_seq() > after;
        if changed() {
            return true;
        }
        self.wait_until(WAIT_CHANGES, changed, timeout)
    }

    /// The waiter's half of a futex handshake (DESIGN.md §15): announce in the agent's
    /// WAITING bit `kind` and the kind's waiter count, then wait on the kind's futex word
    /// until `done` holds or `timeout` passes. `done` must read the awaited word with
    /// SeqCst. Without an agent, sleeps at most 10 ms and checks once.
    fn wait_until(&self, kind: u64, done: impl Fn() -> bool, timeout: std::time::Duration) -> bool {
        let (waiters, word) = waiter_words(kind);
        let Ok(a) = self.agent() else {
            std::thread::sleep(timeout.min(std::time::Duration::from_millis(10)));
            return done();
        };
        // None: a timeout beyond the clock's range, which waits without one.
        let deadline = std::time::Instant::now().checked_add(timeout);
        // Count first, flag second: a waiter killed in between leaves the count one too
        // high (an idle wake-up syscall per change), never too low (a lost wake-up).
        self.region.hdr32(waiters).fetch_add(1, SeqCst);
        self.region
            .agent(a.ix, crate::layout::agent::WAITING)
            .fetch_or(kind, SeqCst);
        let word = self.region.hdr32(word);
        let result = loop {
            let v = word.load(SeqCst);
            if done() {
                break true;
            }
            let ts = match deadline {
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        break false;
                    }
                    let left = deadline - now;
                    Some(rustix::time::Timespec {
                        tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                        tv_nsec: i64::from(left.subsec_nanos()),
                    })
                }
                None => None,
            };
            // Returns on a wake, a timeout, a signal, or at once when the word moved since
            // `v`: every case loops back to the check.
            let _ = rustix::thread::futex::wait(
                word,
                rustix::thread::futex::Flags::empty(),
                v,
                ts.as_ref(),
            );
        };
        self.drop_waits(a.ix, kind);
        result
    }

    /// Discounts agent `ix` as a waiter of every kind it is flagged for (recovery).
    pub(crate) fn drop_waiter(&self, ix: AgentIx) {
        self.drop_waits(ix, WAIT_CHANGES | WAIT_ACK);
    }

    /// Clears the WAITING bits `kinds` of agent `ix`, and takes one off the waiter count of
    /// each kind whose bit was set.
    fn drop_waits(&self, ix: AgentIx, kinds: u64) {
        let flag = self.region.agent(ix, crate::layout::agent::WAITING);
        let was = flag.fetch_and(!kinds, SeqCst);
        for kind in [WAIT_CHANGES, WAIT_ACK] {
            if was & kinds & kind != 0 {
                let w = self.region.hdr32(waiter_words(kind).0);
                let _ = w.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_word_round_trips_seq_status_and_agent() {
        let w = cell_word(MAX_SEQ, ST_WRITING, 4095);
        assert_eq!(cell_seq(w), MAX_SEQ);
        assert_eq!(cell_status(w), ST_WRITING);
        assert_eq!(cell_agent(w), 4095);
    }

    use crate::testutil::small_replica as small;

    #[test]
    fn dropping_a_waiter_discounts_each_kind_it_waits_for_once() {
        let sut = small();
        let a = sut.agent().unwrap();
        let flag = sut.region.agent(a.ix, crate::layout::agent::WAITING);
        for kind in [WAIT_CHANGES, WAIT_ACK] {
            sut.region.hdr32(waiter_words(kind).0).fetch_add(1, SeqCst);
            flag.fetch_or(kind, SeqCst);
        }
        // Another thread's wait, not flagged in this agent: it stays counted.
        sut.region.hdr32(hdr::ACK_WAITERS).fetch_add(1, SeqCst);

        sut.drop_waiter(a.ix);
        sut.drop_waiter(a.ix);
        assert_eq!(flag.load(SeqCst), 0);
        assert_eq!(sut.region.hdr32(hdr::WAITERS).load(SeqCst), 0);
        assert_eq!(sut.region.hdr32(hdr::ACK_WAITERS).load(SeqCst), 1);
    }

    #[test]
    fn changes_name_their_section_while_it_is_being_overwritten() {
        let sut = small();
        sut.create_section(Some(b"s"), crate::TIME_END, b"0")
            .unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut named = 0usize;
        let mut unnamed = None;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Relaxed) {
                    sut.overwrite(b"s", b"1").unwrap();
                }
            });
            let mut after = sut.commit_seq();
            let mut out = Vec::new();
            while named < 20_000 && unnamed.is_none() {
                out.clear();
                match sut.changes_since(after, &mut out, 64) {
                    Changes::UpTo(s) => after = s,
                    Changes::Resync(s) => after = s,
                }
                for ch in &out {
                    if ch.kind != ChangeKind::Overwrite || ch.id.as_deref() != Some(&b"s"[..]) {
                        unnamed.get_or_insert(ch.clone());
                    }
                    named += 1;
                }
            }
            stop.store(true, Relaxed);
        });
        assert_eq!(unnamed, None, "after {named} changes");
    }

    /// A heap-backed replica of `sections` sections of 8 bytes and a journal of `cells`.
    fn with_journal(sections: u32, cells: u32) -> Replica {
        let attrs = crate::ReplicaAttributes {
            creation_flags: 0,
            checkpoint_size: 8 * u64::from(sections),
            retention_ns: 0,
            max_sections: sections,
            max_section_size: 8,
            max_section_id_size: 8,
        };
        let limits = crate::ReplicaLimits {
            journal_cells: cells,
            ..crate::ReplicaLimits::default()
        };
        Replica::create_in_memory(&attrs, &limits).unwrap()
    }

    /// A replica with a journal of 64 cells and section `s`, created and then overwritten
    /// `times` times (seqs 1..=times + 1).
    fn overwritten(times: usize) -> Replica {
        let sut = with_journal(2, 64);
        sut.create_section(Some(b"s"), crate::TIME_END, b"0")
            .unwrap();
        for _ in 0..times {
            sut.overwrite(b"s", b"1").unwrap();
        }
        sut
    }

    #[test]
    fn the_head_is_found_past_a_hint_moved_back_and_the_next_claim_follows_it() {
        let sut = overwritten(9);
        assert_eq!(sut.commit_seq(), 10);
        // A claimer that stalled between its check and its store of the hint.
        sut.region.hdr(hdr::HEAD_SEQ).store(3, SeqCst);
        assert_eq!(sut.commit_seq(), 10);

        sut.overwrite(b"s", b"2").unwrap();
        assert_eq!(sut.commit_seq(), 11);
        let mut out = Vec::new();
        assert_eq!(sut.changes_since(0, &mut out, 100), Changes::UpTo(11));
        let seqs: Vec<u64> = out.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=11).collect::<Vec<u64>>());
        let report = sut.fsck();
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn the_head_is_found_from_a_hint_laps_behind_the_ring() {
        let sut = overwritten(199);
        for stale in [0, 5, 64, 130, 136, 199] {
            sut.region.hdr(hdr::HEAD_SEQ).store(stale, SeqCst);
            assert_eq!(sut.commit_seq(), 200, "from a hint of {stale}");
        }
        sut.overwrite(b"s", b"2").unwrap();
        assert_eq!(sut.commit_seq(), 201);
        let mut out = Vec::new();
        assert_eq!(sut.changes_since(200, &mut out, 10), Changes::UpTo(201));
        assert_eq!(out.len(), 1);
        let report = sut.fsck();
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn concurrent_writers_get_every_seq_once_and_leave_no_gap() {
        const WRITERS: u64 = 4;
        const EACH: u64 = 3_000;
        let sut = with_journal(WRITERS as u32, 1 << 15);
        for w in 0..WRITERS {
            sut.create_section(Some(&w.to_le_bytes()), crate::TIME_END, b"0")
                .unwrap();
        }
        std::thread::scope(|scope| {
            for w in 0..WRITERS {
                let sut = &sut;
                scope.spawn(move || {
                    for i in 0..EACH {
                        sut.overwrite(&w.to_le_bytes(), &i.to_le_bytes()).unwrap();
                    }
                });
            }
        });
        let total = WRITERS * (EACH + 1);
        assert_eq!(sut.commit_seq(), total);
        let mut out = Vec::new();
        let mut after = 0;
        while after < total {
            let before = out.len();
            match sut.changes_since(after, &mut out, 1024) {
                Changes::UpTo(s) => after = s,
                Changes::Resync(s) => panic!("resync to {s} within one ring"),
            }
            assert!(out.len() > before, "stuck after {after}");
        }
        let seqs: Vec<u64> = out.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=total).collect::<Vec<u64>>());
        for w in 0..WRITERS {
            let id = w.to_le_bytes();
            let of_w = out
                .iter()
                .filter(|c| c.kind == ChangeKind::Overwrite && c.id.as_deref() == Some(&id[..]))
                .count() as u64;
            assert_eq!(of_w, EACH, "overwrites of section {w}");
        }
        let report = sut.fsck();
        assert!(report.is_clean(), "{report}");
    }
}
