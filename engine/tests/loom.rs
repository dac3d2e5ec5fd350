//! Loom model of the slot protocol (`ckpt_engine::protocol`): publish, retire, pin, unpin,
//! and the writer's spare (a superseded slot kept CACHED for the next write), on a
//! heap-backed arena.
//!
//! Run with
//! `CARGO_TARGET_DIR=target/loom RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2
//! cargo test -j2 -p ckpt-engine --release --test loom`.
//!
//! The arena ([`Arena`]) has, per slot, a state word, [`PIN_WORDS`] pin words and the slot's
//! bytes in a `loom::cell::UnsafeCell`, plus one descriptor's `current` word. Each slot holds a
//! two-word record `[version, check(slot, version)]`, written word by word like a `memcpy`,
//! so loom reports any read that is not ordered after the write (a data race) and the reader
//! checks that what it read is one complete committed version of that very slot.
//!
//! Writers follow rule 1 of the protocol (bytes written only while OWNED) and, after their
//! commits, claim and scribble over every slot they can get, as the next commit would: a slot
//! freed while a reader still reads it then shows up as a data race.
//!
//! Loom note: loom gives a SeqCst *load* the newest SeqCst store only among stores that
//! are themselves SeqCst, and the store made by `AtomicU64::new` is a Release store. A
//! SeqCst load could therefore read a word's initial value after another thread's SeqCst
//! RMW, which breaks the Dekker argument of rule 2 and gives false alarms. Every word
//! here is therefore re-stored with SeqCst right after creation ([`sc_word`]).

#![cfg(loom)]

use std::sync::atomic::{
    AtomicBool,
    Ordering::{Relaxed, Release},
};

use ckpt_engine::protocol::{
    FREE, Retired, Slots, before_fill, cached, claim_free, live, owned, pin, publish, read_begin,
    read_validate, retire, retire_or_keep, retired, take_cached, try_free_retired, unpin,
};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering::SeqCst};
use loom::thread;

/// The descriptor whose versions the model commits.
const DESC: u32 = 5;
/// Its generation (constant: nothing deletes it here).
const GEN: u32 = 3;
/// The writer's owner word.
const WRITER: u64 = 0x77;
/// Pin words per slot (two, so the pin scan of `try_free_retired` covers several words).
const PIN_WORDS: usize = 2;

/// A reader's pin position: `(word, bit)`.
type Pin = (usize, u64);
const READER_A: Pin = (0, 1 << 1);
const READER_B: Pin = (1, 1 << 1);
const READER_B_SAME_WORD: Pin = (0, 1 << 2);

/// Steps of one commit: claim, write word 0, write word 1, mark LIVE, publish, retire.
const COMMIT_STEPS: usize = 6;

/// What a writer scribbles over a slot it has reclaimed.
const SCRIBBLE: [u64; 2] = [u64::MAX, u64::MAX];

/// `current` as `protocol.rs` encodes it: `generation << 32 | slot`.
const fn current_word(generation: u32, slot: u32) -> u64 {
    ((generation as u64) << 32) | slot as u64
}

/// The record's second word: depends on the slot so a record in the wrong slot is caught.
const fn check(slot: u32, version: u64) -> u64 {
    version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((slot as u64) << 40) ^ 0x00c0_ffee
}

/// An atomic word whose initial value loom treats as a SeqCst store (see the module doc).
fn sc_word(value: u64) -> AtomicU64 {
    let w = AtomicU64::new(value);
    w.store(value, SeqCst);
    w
}

/// A heap-backed arena of one descriptor and `n` slots.
#[derive(Debug)]
struct Arena {
    current: AtomicU64,
    state: Vec<AtomicU64>,
    pins: Vec<Vec<AtomicU64>>,
    data: Vec<UnsafeCell<[u64; 2]>>,
}

impl Slots for Arena {
    fn state(&self, s: u32) -> Option<&AtomicU64> {
        self.state.get(s as usize)
    }

    fn pins(&self, s: u32) -> Option<&[AtomicU64]> {
        self.pins.get(s as usize).map(Vec::as_slice)
    }
}

/// One commit: where the new version went and whether the writer's retire freed the old.
#[derive(Clone, Copy, Debug)]
struct Commit {
    version: u64,
    slot: u32,
    old: u32,
    freed_old: bool,
}

/// One read: the slot a reader pinned and the record it read there.
#[derive(Clone, Copy, Debug)]
struct Read {
    slot: u32,
    record: [u64; 2],
    /// Whether this reader's final `unpin` freed the slot.
    freed: bool,
    /// Slots (one bit each) that the reader's abandoned pins freed on `pin`'s retry path.
    abandoned_frees: u32,
}

impl Arena {
    /// `n` slots; version 0 is committed in slot 0 and current, the others are FREE.
    fn new(n: u32) -> Self {
        Self {
            current: sc_word(current_word(GEN, 0)),
            state: (0..n)
                .map(|s| sc_word(if s == 0 { live(DESC) } else { FREE }))
                .collect(),
            pins: (0..n)
                .map(|_| (0..PIN_WORDS).map(|_| sc_word(0)).collect())
                .collect(),
            data: (0..n).map(|s| UnsafeCell::new([0, check(s, 0)])).collect(),
        }
    }

    fn current_slot(&self) -> u32 {
        self.current.load(SeqCst) as u32
    }

    /// Writes the record word by word; the caller owns the slot.
    fn write(&self, slot: u32, record: [u64; 2]) {
        for (i, word) in record.into_iter().enumerate() {
            // SAFETY: loom's cell hands out a valid pointer; the caller holds the slot OWNED.
            self.data[slot as usize].with_mut(|p| unsafe { (*p)[i] = word });
        }
    }

    /// Commits `version` over the committed slot `old`: claim the lowest FREE slot, write
    /// it while OWNED, mark it LIVE, publish it, retire `old`.
    fn commit(&self, old: u32, version: u64) -> Commit {
        self.commit_steps(old, version, COMMIT_STEPS)
            .expect("a whole commit completes")
    }

    /// The first `steps` of [`Self::commit`] ([`COMMIT_STEPS`] is all of them): a writer
    /// that dies after `steps` steps. Returns the commit if it completed.
    fn commit_steps(&self, old: u32, version: u64, steps: usize) -> Option<Commit> {
        let n = self.state.len() as u32;
        let mut step = 0..steps;
        step.next()?;
        let slot = (0..n)
            .find(|&s| claim_free(&self.state[s as usize], WRITER))
            .expect("the model sizes the arena so a FREE slot always exists");
        assert_ne!(slot, old, "claimed the slot that is still current");
        for (i, word) in [version, check(slot, version)].into_iter().enumerate() {
            step.next()?;
            // SAFETY: loom's cell hands out a valid pointer; the slot is OWNED by us.
            self.data[slot as usize].with_mut(|p| unsafe { (*p)[i] = word });
        }
        step.next()?;
        self.state[slot as usize].store(live(DESC), SeqCst);
        step.next()?;
        publish(&self.current, GEN, slot);
        step.next()?;
        // The retirement's tag is the version the old slot held (versions are sequential).
        let freed_old = retire(
            &self.state[old as usize],
            &self.pins[old as usize],
            DESC,
            version - 1,
        );
        Some(Commit {
            version,
            slot,
            old,
            freed_old,
        })
    }

    /// [`Self::commit`] as `write_one` makes it: the new version goes into the writer's
    /// CACHED spare when it keeps one, and the old slot becomes the next spare when no pin
    /// is set ([`retire_or_keep`]).
    fn commit_keeping(&self, old: u32, version: u64) -> Commit {
        let n = self.state.len() as u32;
        let slot = (0..n)
            .find(|&s| take_cached(&self.state[s as usize], WRITER, WRITER))
            .or_else(|| (0..n).find(|&s| claim_free(&self.state[s as usize], WRITER)))
            .expect("the model sizes the arena so a FREE or CACHED slot always exists");
        assert_ne!(slot, old, "took the slot that is still current");
        self.write(slot, [version, check(slot, version)]);
        self.state[slot as usize].store(live(DESC), SeqCst);
        publish(&self.current, GEN, slot);
        let done = retire_or_keep(
            &self.state[old as usize],
            &self.pins[old as usize],
            DESC,
            version - 1,
            WRITER,
        );
        assert_ne!(done, Retired::Untouched, "the old slot was not LIVE");
        Commit {
            version,
            slot,
            old,
            freed_old: done == Retired::Freed,
        }
    }

    /// The start of the next commit: claims every slot it can except `keep` (FREE ones and
    /// the writer's CACHED spare), scribbles over it and gives it back as FREE. Returns how
    /// many it reclaimed.
    fn reclaim_and_scribble(&self, keep: u32) -> usize {
        let mut reclaimed = 0;
        for s in (0..self.state.len() as u32).filter(|&s| s != keep) {
            let state = &self.state[s as usize];
            if claim_free(state, WRITER) || take_cached(state, WRITER, WRITER) {
                self.write(s, SCRIBBLE);
                let back = state.compare_exchange(owned(WRITER), FREE, SeqCst, SeqCst);
                assert!(back.is_ok(), "an OWNED slot changed state under its owner");
                reclaimed += 1;
            }
        }
        reclaimed
    }

    /// Reads a slot the caller has pinned and validated, checking that its state still
    /// says "committed or superseded for DESC" while the pin is held.
    fn read_pinned(&self, slot: u32) -> [u64; 2] {
        // SAFETY: loom's cell hands out a valid pointer; the pin keeps writers away (that
        // is the property under test: loom reports the race if it does not).
        let record = self.data[slot as usize].with(|p| unsafe { *p });
        let st = self.state[slot as usize].load(SeqCst);
        assert!(
            st == live(DESC) || st & 0xff == retired(0) & 0xff,
            "slot {slot} is pinned and validated but its state is {st:#x}"
        );
        record
    }

    /// One whole read: pin current, read, unpin.
    fn read(&self, (word, bit): Pin) -> Read {
        let mut abandoned_frees = 0;
        let slot = pin(
            self,
            &self.current,
            GEN,
            word,
            bit,
            |_| {},
            |s, freed| {
                if freed {
                    abandoned_frees |= 1 << s;
                }
            },
        )
        .expect("the descriptor is never deleted and the retries are not exhausted");
        let record = self.read_pinned(slot);
        let freed = unpin(self, slot, word, bit);
        Read {
            slot,
            record,
            freed,
            abandoned_frees,
        }
    }

    /// The quiescent invariants: no pin bit is set, the current slot is LIVE and every
    /// other slot is FREE (nothing leaked, nothing left RETIRED or OWNED).
    fn assert_quiescent(&self) {
        let cur = self.current.load(SeqCst);
        assert_eq!(cur >> 32, u64::from(GEN));
        let cur = cur as u32;
        for (s, state) in self.state.iter().enumerate() {
            let st = state.load(SeqCst);
            let want = if s as u32 == cur { live(DESC) } else { FREE };
            assert_eq!(
                st, want,
                "slot {s} ends in state {st:#x} (current is slot {cur})"
            );
            for (w, pins) in self.pins[s].iter().enumerate() {
                assert_eq!(pins.load(SeqCst), 0, "slot {s} pin word {w} leaked a bit");
            }
        }
    }
}

/// Checks a reader's records against the writer's commits: each is the complete record of a
/// committed version in the slot that version was written to, and versions never go back.
fn assert_reads_are_committed(reads: &[Read], commits: &[Commit]) {
    let mut last = 0;
    for r in reads {
        let [version, chk] = r.record;
        assert_eq!(
            chk,
            check(r.slot, version),
            "torn or foreign record {:?}",
            r
        );
        let written_to = if version == 0 {
            Some(0)
        } else {
            commits
                .iter()
                .find(|c| c.version == version)
                .map(|c| c.slot)
        };
        assert_eq!(
            written_to,
            Some(r.slot),
            "read {r:?} is no committed version of its slot"
        );
        assert!(
            version >= last,
            "reader went back from version {last} to {version}"
        );
        last = version;
    }
}

/// How many parties reported freeing each slot (writer retires plus reader unpins).
fn reported_frees(n: u32, commits: &[Commit], reads: &[Read]) -> Vec<u32> {
    let mut frees = vec![0; n as usize];
    for c in commits.iter().filter(|c| c.freed_old) {
        frees[c.old as usize] += 1;
    }
    for r in reads {
        if r.freed {
            frees[r.slot as usize] += 1;
        }
        for (s, count) in frees.iter_mut().enumerate() {
            if r.abandoned_frees & (1 << s) != 0 {
                *count += 1;
            }
        }
    }
    frees
}

/// How a model's writer commits: retiring the old slot ([`Arena::commit`]), or keeping
/// it as its spare when no pin is set ([`Arena::commit_keeping`], as `write_one` does).
#[derive(Clone, Copy, Debug)]
enum Writer {
    Retiring,
    Keeping,
}

impl Arena {
    fn commit_as(&self, writer: Writer, old: u32, version: u64) -> Commit {
        match writer {
            Writer::Retiring => self.commit(old, version),
            Writer::Keeping => self.commit_keeping(old, version),
        }
    }
}

/// Model 1 (and 5): one commit against one read; the writer then rewrites every slot it
/// can take, a kept spare included.
fn one_commit_against_one_read(writer: Writer) {
    loom::model(move || {
        let sut = Arc::new(Arena::new(2));
        let handle = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || {
                let c = sut.commit_as(writer, 0, 1);
                sut.reclaim_and_scribble(c.slot);
                c
            })
        };
        let read = sut.read(READER_A);
        let commit = handle.join().unwrap();

        assert_eq!(commit.slot, 1);
        assert_reads_are_committed(&[read], &[commit]);
        // At most once, not exactly once: a free inside pin's retry path is not reported
        // (see `every_slot_freed_by_a_reader_is_reported_to_a_caller`).
        let frees = reported_frees(2, &[commit], &[read]);
        assert!(
            frees[0] <= 1 && frees[1] == 0,
            "a slot was freed twice: {frees:?}"
        );
        sut.assert_quiescent();
        assert_eq!(sut.current_slot(), 1);
    });
}

#[test]
fn reader_never_sees_a_slot_rewritten_while_pinned() {
    one_commit_against_one_read(Writer::Retiring);
}

/// Model 5: the superseded slot kept as the writer's spare is never rewritten under a
/// reader either.
#[test]
fn slot_kept_as_the_writers_spare_is_never_rewritten_under_a_reader() {
    one_commit_against_one_read(Writer::Keeping);
}

/// Model 2 (and 6): two successive commits against a reader reading twice; slots are
/// reused (a keeping writer's second commit goes into the spare its first one kept, when
/// it kept one).
fn two_commits_against_two_reads(writer: Writer) {
    loom::model(move || {
        let sut = Arc::new(Arena::new(3));
        let handle = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || {
                let first = sut.commit_as(writer, 0, 1);
                let second = sut.commit_as(writer, first.slot, 2);
                sut.reclaim_and_scribble(second.slot);
                [first, second]
            })
        };
        let reads = [sut.read(READER_A), sut.read(READER_A)];
        let commits = handle.join().unwrap();

        assert_reads_are_committed(&reads, &commits);
        let frees = reported_frees(3, &commits, &reads);
        assert!(
            frees.iter().all(|&f| f <= 1),
            "a slot was freed twice: {frees:?}"
        );
        sut.assert_quiescent();
        assert_eq!(sut.current_slot(), commits[1].slot);
    });
}

#[test]
fn reader_following_two_commits_reads_only_committed_versions_in_order() {
    two_commits_against_two_reads(Writer::Retiring);
}

/// Model 6.
#[test]
fn reader_following_two_keeping_commits_reads_only_committed_versions_in_order() {
    two_commits_against_two_reads(Writer::Keeping);
}

/// Model 3: two readers hold the last pins of slot 0 while the writer supersedes and
/// retires it; the three parties race to free it.
fn last_unpins_race_the_retire(reader_b: Pin) {
    loom::model(move || {
        let sut = Arc::new(Arena::new(2));
        // Both readers pinned and validated slot 0 before the commit began.
        for (word, bit) in [READER_A, reader_b] {
            sut.pins[0][word].fetch_or(bit, SeqCst);
        }
        let readers = [READER_A, reader_b].map(|(word, bit)| {
            let sut = Arc::clone(&sut);
            thread::spawn(move || {
                let record = sut.read_pinned(0);
                let freed = unpin(&*sut, 0, word, bit);
                Read {
                    slot: 0,
                    record,
                    freed,
                    abandoned_frees: 0,
                }
            })
        });
        let commit = sut.commit(0, 1);
        sut.reclaim_and_scribble(commit.slot);
        let reads = readers.map(|r| r.join().unwrap());

        assert_reads_are_committed(&reads, &[commit]);
        let frees = reported_frees(2, &[commit], &reads);
        assert_eq!(frees, [1, 0], "slot 0 must be freed by exactly one party");
        sut.assert_quiescent();
    });
}

#[test]
fn exactly_one_of_two_last_unpinners_and_the_retiring_writer_frees_the_slot() {
    last_unpins_race_the_retire(READER_B);
}

#[test]
fn exactly_one_party_frees_the_slot_when_the_last_pins_share_a_word() {
    last_unpins_race_the_retire(READER_B_SAME_WORD);
}

/// Set when some execution of model 4 took the retry path of `pin`.
static PIN_RETRIED: AtomicBool = AtomicBool::new(false);

/// Model 4: the reader's slot is superseded between its load of `current` and its pin.
#[test]
fn pin_superseded_before_it_lands_lets_go_and_follows_current() {
    PIN_RETRIED.store(false, Relaxed);
    loom::model(|| {
        let sut = Arc::new(Arena::new(3));
        let writer = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || {
                let first = sut.commit(0, 1);
                let second = sut.commit(first.slot, 2);
                sut.reclaim_and_scribble(second.slot);
                [first, second]
            })
        };
        let (word, bit) = READER_A;
        let mut begun = Vec::new();
        let mut abandoned = Vec::new();
        let pinned = pin(
            &*sut,
            &sut.current,
            GEN,
            word,
            bit,
            |s| begun.push(s),
            |s, _freed| {
                let left = sut.pins[s as usize][word].load(SeqCst) & bit;
                assert_eq!(
                    left, 0,
                    "abandoned slot {s} still carries the reader's pin bit"
                );
                abandoned.push(s);
            },
        );
        let slot = pinned.expect("pin follows the writer within its retries");
        let record = sut.read_pinned(slot);
        let freed = unpin(&*sut, slot, word, bit);
        let commits = writer.join().unwrap();

        // Every attempt but the last was abandoned, the last is the slot returned, and each
        // retry followed `current` to a different slot.
        assert_eq!(
            begun.len(),
            abandoned.len() + 1,
            "begun {begun:?}, abandoned {abandoned:?}"
        );
        assert_eq!(begun[..abandoned.len()], abandoned[..]);
        assert_eq!(begun.last(), Some(&slot));
        assert!(
            begun.windows(2).all(|w| w[0] != w[1]),
            "retried the same slot: {begun:?}"
        );
        if !abandoned.is_empty() {
            PIN_RETRIED.store(true, Relaxed);
        }
        assert_reads_are_committed(
            &[Read {
                slot,
                record,
                freed,
                abandoned_frees: 0,
            }],
            &commits,
        );
        sut.assert_quiescent();
    });
    assert!(
        PIN_RETRIED.load(Relaxed),
        "no execution exercised the retry path of pin"
    );
}

/// Model 2 with a second reader: one writer, two commits, two readers (three threads).
#[test]
fn two_readers_following_two_commits_read_only_committed_versions() {
    loom::model(|| {
        let sut = Arc::new(Arena::new(3));
        let writer = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || {
                let first = sut.commit(0, 1);
                let second = sut.commit(first.slot, 2);
                sut.reclaim_and_scribble(second.slot);
                [first, second]
            })
        };
        let other = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || sut.read(READER_B_SAME_WORD))
        };
        let mine = sut.read(READER_A);
        let theirs = other.join().unwrap();
        let commits = writer.join().unwrap();

        assert_reads_are_committed(&[mine], &commits);
        assert_reads_are_committed(&[theirs], &commits);
        let frees = reported_frees(3, &commits, &[mine, theirs]);
        assert!(
            frees.iter().all(|&f| f <= 1),
            "a slot was freed twice: {frees:?}"
        );
        sut.assert_quiescent();
    });
}

/// Crash points: a writer that dies after any step of a commit leaves a reader a complete
/// committed version (the old one until the publish, the new one after), and every slot
/// it touched is recognisable from its state word alone (rule 4).
#[test]
fn writer_dying_at_any_step_leaves_readers_a_committed_version() {
    for steps in 0..=COMMIT_STEPS {
        loom::model(move || {
            let sut = Arc::new(Arena::new(2));
            let writer = {
                let sut = Arc::clone(&sut);
                thread::spawn(move || sut.commit_steps(0, 1, steps))
            };
            let read = sut.read(READER_A);
            let commit = writer.join().unwrap();

            assert_eq!(commit.is_some(), steps == COMMIT_STEPS);
            let published = steps > 4;
            let commits = [Commit {
                version: 1,
                slot: 1,
                old: 0,
                freed_old: false,
            }];
            assert_reads_are_committed(&[read], if published { &commits } else { &[] });
            assert_eq!(sut.current_slot(), u32::from(published));
            let residue = sut.state[if published { 0 } else { 1 }].load(SeqCst);
            let expected: &[u64] = match steps {
                0 => &[FREE],
                1..=3 => &[owned(WRITER)],
                4 | 5 => &[live(DESC)],
                _ => &[FREE],
            };
            assert!(
                expected.contains(&residue),
                "after {steps} steps: {residue:#x}"
            );
            if steps == COMMIT_STEPS {
                sut.assert_quiescent();
            }
        });
    }
}

/// Regression (found by this model): when the retry path of `pin` lets go of a slot and its
/// `unpin` frees it, `pin` used to drop the "freed" result, so the caller could not re-set
/// its allocation hint and the FREE slot is invisible to allocation.
/// Interleaving: reader loads current = 0; writer publishes 1 and stores RETIRED on 0;
/// reader pins 0, sees current = 1, unpins 0 and frees it; the writer's own check then
/// finds 0 no longer RETIRED. Nobody reports the free.
#[test]
fn every_slot_freed_by_a_reader_is_reported_to_a_caller() {
    loom::model(|| {
        let sut = Arc::new(Arena::new(2));
        let writer = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || sut.commit(0, 1))
        };
        let read = sut.read(READER_A);
        let commit = writer.join().unwrap();

        sut.assert_quiescent();
        let frees = reported_frees(2, &[commit], &[read]);
        assert_eq!(
            frees,
            [1, 0],
            "slot 0 is FREE but no caller was told it freed it"
        );
    });
}

/// Regression (found by this model): `try_free_retired` CASes from the exact RETIRED word it
/// saw; before retirements were tagged with the version, a slot retired twice for the same
/// descriptor had the same word both times (ABA). An unpinner that saw "RETIRED, no pins" during the slot's first
/// retirement frees it during the second, under a newer reader's pin.
///
/// Here the newer reader is the writer's own agent, which pins the version it committed
/// before committing the next one (a borrow held across a write); any reader whose pin
/// lands in that window is hit the same way.
#[test]
fn stale_unpinner_never_frees_a_slot_reused_and_retired_again() {
    loom::model(|| {
        let sut = Arc::new(Arena::new(3));
        // Version 1 in slot 1 superseded version 0 in slot 0; the writer stored RETIRED on
        // slot 0 but has not yet run its free check; reader A still pins slot 0.
        sut.write(1, [1, check(1, 1)]);
        sut.state[1].store(live(DESC), SeqCst);
        publish(&sut.current, GEN, 1);
        sut.state[0].store(retired(0), SeqCst);
        sut.pins[0][READER_A.0].fetch_or(READER_A.1, SeqCst);

        // The writer's agent: finishes the retire of slot 0, commits version 2, pins it as a
        // reader, commits version 3 over it, then reads what it pinned.
        let agent = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || {
                let writer_freed_0 = try_free_retired(&sut.state[0], &sut.pins[0]);
                let second = sut.commit(1, 2);
                let (word, bit) = READER_B;
                let slot = pin(&*sut, &sut.current, GEN, word, bit, |_| {}, |_, _| {}).unwrap();
                assert_eq!(slot, second.slot);
                let third = sut.commit(second.slot, 3);
                let record = sut.read_pinned(slot);
                let freed = unpin(&*sut, slot, word, bit);
                (
                    writer_freed_0,
                    [second, third],
                    Read {
                        slot,
                        record,
                        freed,
                        abandoned_frees: 0,
                    },
                )
            })
        };
        // Reader A lets go of slot 0 (the stale party: it may stall between its pin check
        // and its CAS for as long as it likes).
        unpin(&*sut, 0, READER_A.0, READER_A.1);
        let (writer_freed_0, [second, third], read) = agent.join().unwrap();

        let first = Commit {
            version: 1,
            slot: 1,
            old: 0,
            freed_old: writer_freed_0,
        };
        assert_reads_are_committed(&[read], &[first, second, third]);
        sut.assert_quiescent();
    });
}

/// Model 7: the keeper reuses its spare while an allocator that found the pool dry takes
/// it over: exactly one of them gets it, and the state names the winner.
#[test]
fn a_spare_goes_to_exactly_one_of_its_keeper_and_a_dry_allocator() {
    const OTHER: u64 = 0x99;
    loom::model(|| {
        let sut = Arc::new(Arena::new(2));
        sut.state[1].store(cached(WRITER), SeqCst);
        let thief = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || take_cached(&sut.state[1], WRITER, OTHER))
        };
        let mine = take_cached(&sut.state[1], WRITER, WRITER);
        let theirs = thief.join().unwrap();

        assert!(mine != theirs, "keeper {mine}, thief {theirs}");
        let winner = if mine { WRITER } else { OTHER };
        assert_eq!(sut.state[1].load(SeqCst), owned(winner));
    });
}

/// A heap arena for the pin-free read (`read_begin` / `read_validate`): the same slots,
/// but each slot's bytes are Relaxed atomic words (the seqlock read races with writers by
/// design, which `UnsafeCell` would report), plus each slot's VERSION word.
#[derive(Debug)]
struct SeqArena {
    current: AtomicU64,
    state: Vec<AtomicU64>,
    version: Vec<AtomicU64>,
    pins: Vec<Vec<AtomicU64>>,
    data: Vec<[AtomicU64; 2]>,
}

impl SeqArena {
    /// `n` slots; version 0 is committed in slot 0 and current, the others are FREE.
    fn new(n: u32) -> Self {
        Self {
            current: sc_word(current_word(GEN, 0)),
            state: (0..n)
                .map(|s| sc_word(if s == 0 { live(DESC) } else { FREE }))
                .collect(),
            version: (0..n).map(|_| sc_word(0)).collect(),
            pins: (0..n)
                .map(|_| (0..PIN_WORDS).map(|_| sc_word(0)).collect())
                .collect(),
            data: (0..n).map(|s| [sc_word(0), sc_word(check(s, 0))]).collect(),
        }
    }

    /// A commit as `write_one` makes it: spare or FREE slot, `before_fill`, bytes, VERSION,
    /// LIVE, publish, keep or retire the old slot.
    fn commit(&self, old: u32, version: u64) -> u32 {
        let n = self.state.len() as u32;
        let slot = (0..n)
            .find(|&s| take_cached(&self.state[s as usize], WRITER, WRITER))
            .or_else(|| (0..n).find(|&s| claim_free(&self.state[s as usize], WRITER)))
            .expect("a FREE or CACHED slot always exists");
        before_fill();
        let [w0, w1] = &self.data[slot as usize];
        w0.store(version, Relaxed);
        w1.store(check(slot, version), Relaxed);
        self.version[slot as usize].store(version, Release);
        self.state[slot as usize].store(live(DESC), SeqCst);
        publish(&self.current, GEN, slot);
        let done = retire_or_keep(
            &self.state[old as usize],
            &self.pins[old as usize],
            DESC,
            version,
            WRITER,
        );
        assert_ne!(done, Retired::Untouched, "the old slot was not LIVE");
        slot
    }

    /// One pin-free read attempt: the record, if it validated.
    fn read(&self) -> Option<(u32, [u64; 2])> {
        let cur = self.current.load(SeqCst);
        let slot = cur as u32;
        let seen = read_begin(
            &self.current,
            cur,
            &self.state[slot as usize],
            &self.version[slot as usize],
            DESC,
        )?;
        let [w0, w1] = &self.data[slot as usize];
        let record = [w0.load(Relaxed), w1.load(Relaxed)];
        read_validate(
            &self.state[slot as usize],
            &self.version[slot as usize],
            DESC,
            seen,
        )
        .then_some((slot, record))
    }
}

/// Model 8: pin-free reads against a writer that commits three versions through two slots
/// (its spare is reused at once, so the slot a reader copies from is rewritten under it):
/// every validated copy is one whole committed version, in the slot it was written to.
#[test]
fn pin_free_read_keeps_only_whole_committed_versions() {
    loom::model(|| {
        let sut = Arc::new(SeqArena::new(2));
        let writer = {
            let sut = Arc::clone(&sut);
            thread::spawn(move || {
                let mut slots = vec![0];
                for version in 1..=3 {
                    let old = *slots.last().unwrap();
                    slots.push(sut.commit(old, version));
                }
                slots
            })
        };
        let reads = [sut.read(), sut.read()];
        let slots = writer.join().unwrap();

        let mut last = 0;
        for (slot, [version, chk]) in reads.into_iter().flatten() {
            assert_eq!(
                chk,
                check(slot, version),
                "torn copy validated: {version} in {slot}"
            );
            assert_eq!(
                slots.get(version as usize),
                Some(&slot),
                "version {version} was not written to slot {slot}"
            );
            assert!(version >= last, "went back from {last} to {version}");
            last = version;
        }
    });
}
