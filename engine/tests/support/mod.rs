//! Shared by the multi-process tests (`crash.rs`, `multiprocess.rs`): self-validating
//! section values, a small seeded PRNG, the checking reader loop (run in reader child
//! processes and in a thread of the parent), and the child-process plumbing.
//!
//! A value is a [`Record`]: a 24-byte header (magic, section tag, seq, length, mask) and a
//! body whose every byte is derived from (seq, tag, position). A torn copy, a mix of two
//! versions, a value shown under the wrong section or a wrong length all fail
//! [`decode`]. Seqs only grow per writer (`seq >> 48` names the writer), so a reader that
//! ever sees a section's seq go backwards has seen a value that was later rolled back.

#![allow(dead_code)] // Each test binary uses its own part of this module.

#[path = "../domain/mod.rs"]
mod domain;
pub(crate) mod tier;

pub(crate) use domain::Domain;
pub(crate) use tier::select;

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use ckpt_engine::{ReadElement, Replica, SectionError, Sharing};

pub(crate) const MAGIC: u32 = 0xC4EC_4B17;
/// Header bytes of a record.
pub(crate) const HDR: usize = 24;
/// `maxSectionSize` of the test replicas; multi-element and multi-section writes always
/// write whole records of this length, so a grown section is exactly one record.
pub(crate) const SECTION_SIZE: usize = 512;

// ---- PRNG ------------------------------------------------------------------------------

/// splitmix64: small, seeded, good enough to pick kill points and payload shapes.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.index(i + 1));
        }
    }
}

/// The seed of this run: `SEED` if set, else from the clock. Printed by the parent.
pub(crate) fn run_seed() -> u64 {
    if let Some(s) = std::env::var("SEED").ok().and_then(|s| s.parse().ok()) {
        return s;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    mix64(t.as_nanos() as u64 ^ u64::from(std::process::id()))
}

/// A seeded test: runs with a seed, describes what failed.
pub(crate) type SeededTest = Box<dyn Fn(u64) -> Result<(), String>>;

/// The runner of the multi-process test binaries: the tests the command line selects
/// ([`select`]; `ignored` marks the stress tests), each run with a seed mixed from the
/// run's ([`run_seed`], printed for replay), by [`tier::run_tests`].
pub(crate) fn run_seeded(tests: Vec<(&'static str, bool, SeededTest)>) {
    let names: Vec<(&str, bool)> = tests.iter().map(|t| (t.0, t.1)).collect();
    let seed = run_seed();
    let chosen: Vec<(&str, tier::Test<'_>)> = select(&names)
        .into_iter()
        .zip(tests)
        .enumerate()
        .filter(|(_, (on, _))| *on)
        .map(|(k, (_, (name, _, test)))| {
            let run = move || tier::Verdict::from(test(mix64(seed ^ k as u64)));
            (name, Box::new(run) as tier::Test<'_>)
        })
        .collect();
    println!(
        "running {} tests (seed {seed}; replay with SEED={seed})",
        chosen.len()
    );
    tier::run_tests(chosen);
}

// ---- records ---------------------------------------------------------------------------

/// A decoded, validated section value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) tag: u32,
    pub(crate) seq: u64,
    pub(crate) len: usize,
    /// Multi-section writes: the bit set of the group's sections it wrote.
    pub(crate) mask: u32,
}

impl Record {
    pub(crate) fn writer(&self) -> u64 {
        self.seq >> 48
    }
}

/// Body word `k` of record (`seq`, `tag`). Cheap (the writer's time should go to the
/// engine), and injective in `seq` for a fixed position, so words of two versions differ
/// everywhere.
fn body_word(seq: u64, tag: u32, k: usize) -> [u8; 8] {
    let base = seq.wrapping_mul(0xa076_1d64_78bd_642f) ^ (u64::from(tag) << 44);
    base.wrapping_add((k as u64).wrapping_mul(0xe703_7ed1_a0b4_28db))
        .to_le_bytes()
}

/// The bytes of record (`seq`, `tag`, `mask`) of length `len` (`HDR..=SECTION_SIZE`).
pub(crate) fn encode(seq: u64, tag: u32, mask: u32, len: usize) -> Vec<u8> {
    assert!((HDR..=SECTION_SIZE).contains(&len));
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&mask.to_le_bytes());
    v.resize(len, 0);
    for (k, chunk) in v.chunks_mut(8).enumerate().skip(HDR / 8) {
        let n = chunk.len();
        chunk.copy_from_slice(&body_word(seq, tag, k)[..n]);
    }
    v
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Validates `bytes` as one whole record of section `tag`.
pub(crate) fn decode(bytes: &[u8], tag: u32) -> Result<Record, String> {
    if bytes.len() < HDR {
        return Err(format!("{} bytes: shorter than a header", bytes.len()));
    }
    if le32(bytes, 0) != MAGIC {
        return Err(format!(
            "bad magic {:#x} ({} bytes)",
            le32(bytes, 0),
            bytes.len()
        ));
    }
    let seen_tag = le32(bytes, 4);
    let mut s = [0u8; 8];
    s.copy_from_slice(&bytes[8..16]);
    let seq = u64::from_le_bytes(s);
    let len = le32(bytes, 16) as usize;
    let mask = le32(bytes, 20);
    if seen_tag != tag {
        return Err(format!(
            "value of section tag {seen_tag:#x} (seq {seq:#x}) shown as {tag:#x}"
        ));
    }
    if len != bytes.len() {
        return Err(format!(
            "seq {seq:#x}: header says {len} bytes, section holds {}",
            bytes.len()
        ));
    }
    for (k, chunk) in bytes.chunks(8).enumerate().skip(HDR / 8) {
        let w = body_word(seq, tag, k);
        if chunk != &w[..chunk.len()] {
            return Err(format!(
                "seq {seq:#x}: body differs at byte {} (torn or mixed)",
                k * 8
            ));
        }
    }
    Ok(Record {
        tag,
        seq,
        len,
        mask,
    })
}

// ---- the section layout of a test replica ----------------------------------------------

/// One section the tests use: its id and tag (tag = group << 8 | index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sect {
    pub(crate) id: Vec<u8>,
    pub(crate) tag: u32,
}

pub(crate) const GROUP_PERM: u32 = 1;
pub(crate) const GROUP_TXN: u32 = 2;
pub(crate) const GROUP_EPH: u32 = 3;
pub(crate) const GROUP_SHARED: u32 = 4;

/// The sections of one test replica. `owner` distinguishes the sets of several writers
/// (tag bits 12..16, id prefix).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// Never deleted; overwritten and written element-wise.
    pub(crate) perm: Vec<Sect>,
    /// Groups of never-deleted sections written only by multi-section writes within the
    /// group (one record per section, same seq, `mask` = which of them the write covered).
    pub(crate) txn_groups: Vec<Vec<Sect>>,
    /// Created and deleted.
    pub(crate) eph: Vec<Sect>,
    /// Never deleted; overwritten by several writers at once.
    pub(crate) shared: Vec<Sect>,
}

fn sect(owner: u32, group: u32, i: u32) -> Sect {
    let g = match group {
        GROUP_PERM => 's',
        GROUP_TXN => 't',
        GROUP_EPH => 'e',
        _ => 'x',
    };
    Sect {
        id: format!("w{owner}{g}{i}").into_bytes(),
        tag: (owner << 12) | (group << 8) | i,
    }
}

impl Layout {
    pub(crate) fn new(owner: u32, perm: u32, txn: u32, eph: u32) -> Self {
        let group: Vec<Sect> = (0..txn).map(|i| sect(owner, GROUP_TXN, i)).collect();
        Self {
            perm: (0..perm).map(|i| sect(owner, GROUP_PERM, i)).collect(),
            txn_groups: if group.is_empty() {
                Vec::new()
            } else {
                vec![group]
            },
            eph: (0..eph).map(|i| sect(owner, GROUP_EPH, i)).collect(),
            shared: Vec::new(),
        }
    }

    /// The first multi-section group.
    pub(crate) fn txn(&self) -> &[Sect] {
        self.txn_groups.first().map_or(&[], |g| g.as_slice())
    }

    /// The sections of both layouts (groups stay apart).
    pub(crate) fn merge(mut self, other: Self) -> Self {
        self.perm.extend(other.perm);
        self.txn_groups.extend(other.txn_groups);
        self.eph.extend(other.eph);
        self.shared.extend(other.shared);
        self
    }

    pub(crate) fn with_shared(mut self, n: u32) -> Self {
        self.shared = (0..n).map(|i| sect(0xf, GROUP_SHARED, i)).collect();
        self
    }

    /// Sections that always exist.
    pub(crate) fn permanent(&self) -> impl Iterator<Item = &Sect> {
        self.perm
            .iter()
            .chain(self.txn_groups.iter().flatten())
            .chain(&self.shared)
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Sect> {
        self.permanent().chain(&self.eph)
    }
}

// ---- write operations (shared by writers and the parent) -------------------------------

/// What one write operation did, for the journal accounting of `multiprocess.rs`: how
/// many journal records it produced when it succeeded.
pub(crate) type Records = usize;

/// Overwrites `s` with a record of random length.
pub(crate) fn do_overwrite(
    r: &Replica,
    rng: &mut Rng,
    s: &Sect,
    seq: u64,
) -> Result<Records, SectionError> {
    let len = HDR + rng.index(SECTION_SIZE - HDR + 1);
    r.overwrite(&s.id, &encode(seq, s.tag, 0, len)).map(|()| 1)
}

/// Splits `data` (written at offset 0) into 1..=`max_parts` contiguous elements.
fn split<'a>(
    rng: &mut Rng,
    id: &'a [u8],
    data: &'a [u8],
    max_parts: usize,
) -> Vec<ckpt_engine::WriteElement<'a>> {
    let parts = 1 + rng.index(max_parts);
    let mut cuts: Vec<usize> = (0..parts - 1)
        .map(|_| 1 + rng.index(data.len() - 1))
        .collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| ckpt_engine::WriteElement {
            id,
            offset: w[0] as u64,
            data: &data[w[0]..w[1]],
        })
        .collect()
}

/// One multi-element write to one section: a whole `SECTION_SIZE` record in 2..=6
/// shuffled elements, sometimes preceded by a garbage element the later ones cover
/// (elements apply in order).
pub(crate) fn do_multi_element(
    r: &Replica,
    rng: &mut Rng,
    s: &Sect,
    seq: u64,
) -> Result<Records, SectionError> {
    let data = encode(seq, s.tag, 0, SECTION_SIZE);
    let mut elems = split(rng, &s.id, &data, 6);
    rng.shuffle(&mut elems);
    let garbage = vec![0xa5 ^ seq as u8; 1 + rng.index(SECTION_SIZE / 2)];
    if rng.chance(30) {
        let off = rng.index(SECTION_SIZE - garbage.len() + 1) as u64;
        elems.insert(
            0,
            ckpt_engine::WriteElement {
                id: &s.id,
                offset: off,
                data: &garbage,
            },
        );
    }
    let n = elems.len();
    r.write(&elems).map(|()| n).map_err(|e| e.kind)
}

/// One multi-section write over a subset (at least two) of `group`: every chosen section
/// gets a whole record with the same seq and the subset as `mask`, in 1..=2 elements each,
/// all elements shuffled together.
/// Returns the records written and the subset (as a mask over `group`).
pub(crate) fn do_txn(
    r: &Replica,
    rng: &mut Rng,
    group: &[Sect],
    seq: u64,
) -> Result<(Records, u32), SectionError> {
    let n = group.len();
    let full = (1u32 << n) - 1;
    let mut mask = (rng.next_u64() as u32) & full;
    while mask.count_ones() < 2 {
        mask |= 1 << rng.index(n);
    }
    do_txn_mask(r, rng, group, seq, mask).map(|n| (n, mask))
}

pub(crate) fn do_txn_mask(
    r: &Replica,
    rng: &mut Rng,
    group: &[Sect],
    seq: u64,
    mask: u32,
) -> Result<Records, SectionError> {
    let datas: Vec<(usize, Vec<u8>)> = (0..group.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| (i, encode(seq, group[i].tag, mask, SECTION_SIZE)))
        .collect();
    let mut elems = Vec::new();
    for (i, data) in &datas {
        elems.extend(split(rng, &group[*i].id, data, 2));
    }
    rng.shuffle(&mut elems);
    let n = elems.len();
    r.write(&elems).map(|()| n).map_err(|e| e.kind)
}

/// An expiration time far in the future (or never).
pub(crate) fn future_expiration(rng: &mut Rng) -> i64 {
    if rng.chance(30) {
        return ckpt_engine::TIME_END;
    }
    ckpt_engine::wall_clock() + 3_600_000_000_000 + rng.below(1 << 40) as i64
}

/// Creates `s` with a record of random length.
pub(crate) fn do_create(
    r: &Replica,
    rng: &mut Rng,
    s: &Sect,
    seq: u64,
) -> Result<Records, SectionError> {
    let len = HDR + rng.index(SECTION_SIZE - HDR + 1);
    let exp = future_expiration(rng);
    r.create_section(Some(&s.id), exp, &encode(seq, s.tag, 0, len))
        .map(|_| 1)
}

// ---- the checking reader ---------------------------------------------------------------

/// What a reader saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadStats {
    /// Values validated whole.
    pub(crate) reads: u64,
    /// Values that failed validation (torn, mixed, wrong section, wrong length).
    pub(crate) torn: u64,
    /// `read_many` snapshots showing a multi-section write half applied.
    pub(crate) mixed: u64,
    /// A section's seq went backwards: a value seen was later rolled back.
    pub(crate) backwards: u64,
    /// Errors no reader should get (anything but `NotExist` on deleted sections and
    /// `TryAgain`).
    pub(crate) errors: u64,
    /// `TryAgain` answers (allowed; reported).
    pub(crate) try_again: u64,
    /// Longest single read call, µs.
    pub(crate) max_latency_us: u64,
    /// The first few violations, described.
    pub(crate) notes: Vec<String>,
}

impl ReadStats {
    pub(crate) fn violations(&self) -> u64 {
        self.torn + self.mixed + self.backwards + self.errors
    }

    fn note(&mut self, what: String) {
        if self.notes.len() < 8 {
            self.notes.push(what);
        }
    }

    pub(crate) fn merge(&mut self, o: &Self) {
        self.reads += o.reads;
        self.torn += o.torn;
        self.mixed += o.mixed;
        self.backwards += o.backwards;
        self.errors += o.errors;
        self.try_again += o.try_again;
        self.max_latency_us = self.max_latency_us.max(o.max_latency_us);
        for n in &o.notes {
            if self.notes.len() < 16 {
                self.notes.push(n.clone());
            }
        }
    }

    /// One line, parsed back by [`ReadStats::parse`].
    pub(crate) fn line(&self) -> String {
        format!(
            "STATS {} {} {} {} {} {} {}",
            self.reads,
            self.torn,
            self.mixed,
            self.backwards,
            self.errors,
            self.try_again,
            self.max_latency_us
        )
    }

    pub(crate) fn parse(line: &str) -> Option<Self> {
        let mut it = line
            .strip_prefix("STATS ")?
            .split_whitespace()
            .map(|w| w.parse::<u64>());
        let mut next = || it.next()?.ok();
        Some(Self {
            reads: next()?,
            torn: next()?,
            mixed: next()?,
            backwards: next()?,
            errors: next()?,
            try_again: next()?,
            max_latency_us: next()?,
            notes: Vec::new(),
        })
    }
}

impl std::fmt::Display for ReadStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} values verified, {} torn, {} half-applied multi-section snapshots, {} rolled-back values seen, \
             {} unexpected errors, {} TryAgain, longest read {} µs",
            self.reads,
            self.torn,
            self.mixed,
            self.backwards,
            self.errors,
            self.try_again,
            self.max_latency_us
        )
    }
}

/// Commands to a reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// Drop every pin and stop reading until the next command; acknowledge.
    Pause,
    Resume,
    Stop,
}

/// Per-reader memory: the highest seq seen per (section tag, writer).
#[derive(Debug, Default)]
struct Seen {
    last: HashMap<(u32, u64), u64>,
}

struct Checker<'e> {
    stats: ReadStats,
    seen: Seen,
    who: String,
    events: &'e mut dyn FnMut(Event),
}

/// What a reader reports as it happens.
#[derive(Debug)]
pub(crate) enum Event {
    /// Paused with no pin held.
    Paused,
    /// A violation, described (also counted in the stats).
    Violation(String),
}

fn is_eph(s: &Sect) -> bool {
    (s.tag >> 8) & 0xf == GROUP_EPH
}

impl Checker<'_> {
    fn note(&mut self, what: String) {
        self.stats.note(what.clone());
        (self.events)(Event::Violation(what));
    }

    /// Validates one value of `s`; returns it when whole.
    fn value(&mut self, s: &Sect, bytes: &[u8], track: bool) -> Option<Record> {
        match decode(bytes, s.tag) {
            Ok(rec) => {
                self.stats.reads += 1;
                if track {
                    let last = self.seen.last.entry((s.tag, rec.writer())).or_insert(0);
                    let before = *last;
                    *last = before.max(rec.seq);
                    if rec.seq < before {
                        self.stats.backwards += 1;
                        let what = format!(
                            "{}: section {} went back from seq {before:#x} to {:#x} (a value seen was rolled back)",
                            self.who,
                            String::from_utf8_lossy(&s.id),
                            rec.seq
                        );
                        self.note(what);
                    }
                }
                Some(rec)
            }
            Err(why) => {
                self.stats.torn += 1;
                let what = format!(
                    "{}: section {}: {why}",
                    self.who,
                    String::from_utf8_lossy(&s.id)
                );
                self.note(what);
                None
            }
        }
    }

    fn error(&mut self, s: &Sect, e: SectionError, may_be_absent: bool) {
        match e {
            SectionError::TryAgain => self.stats.try_again += 1,
            SectionError::NotExist if may_be_absent => {}
            e => {
                self.stats.errors += 1;
                let what = format!(
                    "{}: section {}: unexpected {e:?}",
                    self.who,
                    String::from_utf8_lossy(&s.id)
                );
                self.note(what);
            }
        }
    }

    /// The all-or-nothing rule on one `read_many` snapshot of a multi-section group: if
    /// the value of member `i` came from a write that also covered member `j`, then `j`
    /// holds that write's value or a later one.
    fn snapshot(&mut self, members: &[(usize, &Sect, Record)]) {
        for (i, si, ri) in members {
            for (j, sj, rj) in members {
                if i != j
                    && ri.mask & (1 << j) != 0
                    && ri.writer() == rj.writer()
                    && rj.seq < ri.seq
                {
                    self.stats.mixed += 1;
                    let what = format!(
                        "{}: multi-section write {:#x} half applied: {} has it, {} still holds {:#x}",
                        self.who,
                        ri.seq,
                        String::from_utf8_lossy(&si.id),
                        String::from_utf8_lossy(&sj.id),
                        rj.seq
                    );
                    self.note(what);
                }
            }
        }
    }
}

/// Reads `layout`'s sections in every way the API offers, validating everything, until
/// told to stop. `events` hears of every violation as it is found, and of every `Pause`
/// once every pin is dropped.
pub(crate) fn reader_loop(
    r: &Replica,
    layout: &Layout,
    seed: u64,
    who: &str,
    cmds: &Receiver<Cmd>,
    events: &mut dyn FnMut(Event),
) -> ReadStats {
    let mut ck = Checker {
        stats: ReadStats::default(),
        seen: Seen::default(),
        who: who.to_owned(),
        events,
    };
    let mut rng = Rng::new(seed);
    let mut held: VecDeque<(ckpt_engine::SectionGuard<'_>, Sect, Record)> = VecDeque::new();
    let all: Vec<&Sect> = layout.all().collect();
    let permanent: Vec<&Sect> = layout.permanent().collect();
    let widest = layout.txn_groups.iter().map(Vec::len).max().unwrap_or(0);
    let mut bufs = vec![[0u8; SECTION_SIZE]; widest.max(2)];
    let mut iter = 0u64;
    loop {
        iter += 1;
        let cmd = match cmds.try_recv() {
            Ok(c) => Some(c),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Cmd::Stop),
        };
        let mut cmd = cmd;
        while let Some(c) = cmd {
            held.clear();
            match c {
                Cmd::Pause => {
                    (ck.events)(Event::Paused);
                    cmd = Some(cmds.recv().unwrap_or(Cmd::Stop));
                }
                Cmd::Resume => cmd = None,
                Cmd::Stop => {
                    drop(held);
                    return ck.stats;
                }
            }
        }
        let t0 = Instant::now();
        match rng.below(10) {
            // Copy-out read of one section.
            0..=2 => {
                let s = all[rng.index(all.len())];
                match r.read(&s.id, 0, &mut bufs[0]) {
                    Ok(n) => {
                        ck.value(s, &bufs[0][..n], true);
                    }
                    Err(e) => ck.error(s, e, is_eph(s)),
                }
            }
            3 => {
                let s = all[rng.index(all.len())];
                match r.read_to_vec(&s.id) {
                    Ok(v) => {
                        ck.value(s, &v, true);
                    }
                    Err(e) => ck.error(s, e, is_eph(s)),
                }
            }
            // Zero-copy borrow, kept for a while: its bytes must never change.
            4 => {
                let s = all[rng.index(all.len())];
                match r.borrow(&s.id) {
                    Ok(g) => {
                        if let Some(rec) = ck.value(s, &g, true) {
                            held.push_back((g, s.clone(), rec));
                        }
                    }
                    Err(e) => ck.error(s, e, is_eph(s)),
                }
                if held.len() > 3 {
                    held.pop_front();
                }
                for (g, s, rec) in &held {
                    let again = ck.value(s, g, false);
                    if again.is_some_and(|a| a != *rec) {
                        ck.stats.torn += 1;
                        ck.note(format!("{who}: a borrowed value changed under its guard"));
                    }
                }
            }
            // Consistent snapshot of (a subset of) the multi-section group.
            5..=7 if widest >= 2 => {
                let group = &layout.txn_groups[rng.index(layout.txn_groups.len())];
                let n = group.len();
                let mut pick: Vec<usize> = (0..n).filter(|_| rng.chance(70)).collect();
                if pick.len() < 2 {
                    pick = (0..n).collect();
                }
                let mut elems: Vec<ReadElement<'_>> = Vec::with_capacity(pick.len());
                for (b, &i) in bufs.iter_mut().zip(&pick) {
                    elems.push(ReadElement {
                        id: &group[i].id,
                        offset: 0,
                        buf: b,
                        read: 0,
                    });
                }
                match r.read_many(&mut elems) {
                    Ok(()) => {
                        let reads: Vec<usize> = elems.iter().map(|e| e.read).collect();
                        drop(elems);
                        let mut members = Vec::with_capacity(pick.len());
                        for ((b, &i), n) in bufs.iter().zip(&pick).zip(reads) {
                            let s = &group[i];
                            if let Some(rec) = ck.value(s, &b[..n], true) {
                                members.push((i, s, rec));
                            }
                        }
                        ck.snapshot(&members);
                    }
                    Err(e) => ck.error(&group[pick[e.index]], e.kind, false),
                }
            }
            // A snapshot across unrelated permanent sections: each value whole.
            _ => {
                let a = permanent[rng.index(permanent.len())];
                let b = permanent[rng.index(permanent.len())];
                let (x, y) = bufs.split_at_mut(1);
                let mut elems = [
                    ReadElement {
                        id: &a.id,
                        offset: 0,
                        buf: &mut x[0],
                        read: 0,
                    },
                    ReadElement {
                        id: &b.id,
                        offset: 0,
                        buf: &mut y[0],
                        read: 0,
                    },
                ];
                match r.read_many(&mut elems) {
                    Ok(()) => {
                        let (na, nb) = (elems[0].read, elems[1].read);
                        ck.value(a, &bufs[0][..na], true);
                        ck.value(b, &bufs[1][..nb], true);
                    }
                    Err(e) => ck.error(if e.index == 0 { a } else { b }, e.kind, false),
                }
            }
        }
        let us = t0.elapsed().as_micros() as u64;
        ck.stats.max_latency_us = ck.stats.max_latency_us.max(us);
        if iter.is_multiple_of(4) {
            std::thread::yield_now();
        }
    }
}

/// Reader child: attach, say `R`, read until `q` (or stdin closes), print the stats.
/// Commands on stdin: `p` pause (answered `P`), `r` resume, `q` stop.
pub(crate) fn reader_child(dir: &Path, name: &str, layout: &Layout, seed: u64) -> ! {
    die_with_parent();
    let r = match Replica::attach(dir, name, Sharing::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reader: attach failed: {e}");
            std::process::exit(2);
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut b = [0u8; 1];
        loop {
            let cmd = match std::io::Read::read(&mut stdin, &mut b) {
                Ok(1) => match b[0] {
                    b'p' => Cmd::Pause,
                    b'r' => Cmd::Resume,
                    b'q' => Cmd::Stop,
                    _ => continue,
                },
                _ => Cmd::Stop,
            };
            if tx.send(cmd).is_err() || cmd == Cmd::Stop {
                return;
            }
        }
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "R");
    let _ = out.flush();
    let who = format!("reader pid {}", std::process::id());
    let mut printed = 0;
    let stats = reader_loop(&r, layout, seed, &who, &rx, &mut |ev| {
        match ev {
            Event::Paused => {
                let _ = writeln!(out, "P");
            }
            Event::Violation(what) if printed < 20 => {
                printed += 1;
                let _ = writeln!(out, "V {what}");
            }
            Event::Violation(_) => {}
        }
        let _ = out.flush();
    });
    let _ = writeln!(out, "{}", stats.line());
    for n in &stats.notes {
        let _ = writeln!(out, "NOTE {n}");
    }
    let _ = writeln!(out, "END");
    let _ = out.flush();
    drop(r);
    std::process::exit(0);
}

// ---- processes -------------------------------------------------------------------------

/// Children die with the parent (a failed or killed test leaves no writer spinning).
pub(crate) fn die_with_parent() {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
}

pub(crate) const ROLE: &str = "CKPT_TEST_ROLE";

/// The test binary itself, with `role` and `vars` in its environment.
pub(crate) fn child_command(role: &str, vars: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let mut c = Command::new(exe);
    c.env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

/// A child with line-oriented stdout (and stdin for readers).
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: BufReader<ChildStdout>,
}

impl Proc {
    pub(crate) fn spawn(mut cmd: Command, with_stdin: bool) -> Self {
        if with_stdin {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("spawn a child process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line (without the newline); `None` at end of file.
    pub(crate) fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.stdout.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim_end().to_owned()),
        }
    }

    /// Waits for the line `want`; panics with what came instead.
    pub(crate) fn expect_line(&mut self, want: &str) {
        match self.line() {
            Some(l) if l == want => {}
            other => panic!("child {}: expected {want:?}, got {other:?}", self.pid()),
        }
    }

    pub(crate) fn send(&mut self, b: u8) {
        let stdin = self.stdin.as_mut().expect("piped stdin");
        stdin.write_all(&[b]).expect("write to a child");
        stdin.flush().expect("flush to a child");
    }

    /// SIGKILL, then reap. Returns the signal that ended it (None: it exited by itself
    /// with the given code).
    pub(crate) fn kill9(&mut self) -> Result<i32, Option<i32>> {
        use std::os::unix::process::ExitStatusExt;
        let _ = self.child.kill();
        let st = self.child.wait().expect("reap a child");
        st.signal().ok_or(st.code())
    }
}

/// Waits at most `d`, polling `f`.
pub(crate) fn wait_until(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    f()
}
