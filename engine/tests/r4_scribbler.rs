//! Reliability tier R4, scribbler and truncation: a chaos process corrupts a LIVE replica
//! object while four reader processes and one writer process use it. A `harness = false`
//! test: the binary re-executes itself as reader, writer and chaos children (role in
//! `CKPT_TEST_ROLE`) and prints `test … ok/FAILED`, then `N passed, N failed` as its last
//! line.
//!
//! The chaos process maps the whole object and, at random offsets of every region (header
//! image, dynamic header words, agent table, descriptors, id area, section index, slot
//! metadata, allocation hints, change journal, slot data), flips bits, rewrites header
//! fields and dynamic words, and writes plausible-looking words (state words, owner words,
//! odd seqcounts, `u32::MAX` slots). Each reader loops over every read-side call (read at
//! offsets, copy-out, zero-copy borrow held across later calls, multi-section snapshot,
//! section info, iteration, status, the change journal, a bounded wait for changes, fresh
//! attaches, fsck); the writer over every write-side call (overwrite, multi-element and
//! multi-section writes, section create and delete, expiration changes, reaping, dead-agent
//! recovery, generated ids), recreating what the chaos made disappear. The run is cut into
//! rounds (`R4_ROUND_MS`, default 2000): each round the parent creates a fresh object and
//! every child moves to it (dropping its handle on the wrecked one), so the whole way from
//! a healthy replica to a wrecked one is exercised again and again.
//!
//! Pass: no child dies by a signal (SIGSEGV, SIGBUS), panics, or spends longer than
//! `R4_OP_LIMIT_MS` (default 5000) in one call (a watchdog thread in each child exits it
//! with a HANG line); every length, size, count and journal record a call returns lies
//! inside the checkpoint's attributes; the chaos process really corrupted the object, and
//! the damage surfaced as errors. Errors are counted per kind and printed, with each side's
//! slowest call (and what it returned) and the calls that took over a second. The engine
//! bounds each wait by a number of tries and by 250 ms of yielding (engine/DESIGN.md §11,
//! "Bounded waits"), so on garbage that looks like a held lock or an odd seqcount a call
//! gives up in about a quarter of a second even on a loaded machine; the limit leaves room
//! for calls that wait more than once. A hung child prints its threads' stacks (gdb, when
//! the machine has it) into the failure. Values that read back without an error yet
//! fail validation (a flipped data bit: sections carry no checksum) are counted and printed
//! as a known limit.
//!
//! Truncation (engine/DESIGN.md §23.1 "Truncation and the trust boundary"): a process that
//! can open the object for writing can shrink it, and every process that maps it then dies
//! by SIGBUS at its next access beyond the new end. Nothing cheap in the engine can stop
//! that for a plain tmpfs file. So:
//!
//! - `shrink_attempts_…_are_refused…` runs the chaos process as another uid (`nobody`,
//!   root only, else SKIPPED): it maps the object while still root, then drops its
//!   privileges, keeps scribbling through the mapping and tries to shrink the object every
//!   way it can (open for writing, `truncate(2)`, its own `/proc/self/map_files` entry).
//!   Every attempt must be refused, the object's size must not change, and nobody dies.
//! - `same_uid_shrink_…` shrinks a live object as the owner: the children that die by
//!   SIGBUS are printed as the documented KNOWN LIMIT, never counted as passed; only its
//!   check that a fresh attach refuses the short object (the engine's cheap protection)
//!   counts, and only if it fails.
//! - `sealed_…` is the closure ckptd uses (`sealed = true`): the objects are sealed memfds
//!   (`Replica::create_sealed`) that the parent holds, as ckptd does, and every child
//!   attaches by descriptor (reopening `/proc/<parent>/fd/N`, which gives it the same
//!   power as a descriptor passed over a socket). The chaos process runs as the owner (as
//!   root on CI) and, besides scribbling and punching holes (zeroed pages: a scribble, not
//!   a fault), tries every shrink and grow: each must fail with EPERM, the size must not
//!   change, and nobody, the parent included, dies. tools/tests/r4_sealed.rs runs the same
//!   against real ckptd processes and agents.
//!
//! `SEED` replays a run; `R4_DURATION` (seconds, default 10) sets the main run,
//! `R4_SHRINK_DURATION` (default 3) the refused-shrink run (one object: once it is
//! `nobody`, the chaos process cannot open another).

// The chaos process pokes shared words from outside the engine, as another process would;
// the loom facade (engine/src/sync.rs) is engine-internal.
#![allow(clippy::disallowed_types)]

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ckpt_engine::{
    AttachError, Changes, CreateOptions, ReadElement, Replica, ReplicaAttributes, ReplicaLimits,
    SectionError, SectionFilter, Sharing, TIME_END, wall_clock,
};
use support::tier::{Kid, Test, Verdict, describe, env, run_tests, say};
use support::{
    Domain, HDR, Layout, ROLE, Rng, SECTION_SIZE, Sect, child_command, decode, die_with_parent,
    do_create, do_multi_element, do_overwrite, do_txn, encode, future_expiration,
};

const OBJECT: &str = "r4";
const READERS: usize = 4;
const MAX_SECTIONS: u32 = 16;
const MAX_ID: u64 = 32;
/// uid and gid of `nobody` (need not exist in /etc/passwd).
const NOBODY: u32 = 65534;

fn layout() -> Layout {
    Layout::new(0, 4, 4, 6)
}

fn attrs() -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: u64::from(MAX_SECTIONS) * SECTION_SIZE as u64,
        retention_ns: 0,
        max_sections: MAX_SECTIONS,
        max_section_size: SECTION_SIZE as u64,
        max_section_id_size: MAX_ID,
    }
}

fn env_u64(name: &str) -> u64 {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

// ---- main ------------------------------------------------------------------------------

type TestFn = fn(u64) -> Verdict;

const TESTS: &[(&str, TestFn)] = &[
    (
        "scribbler_corrupting_a_live_replica_kills_no_reader_or_writer_and_surfaces_as_errors",
        scribbler,
    ),
    (
        "shrink_attempts_by_a_scribbler_without_write_access_are_refused_and_kill_no_one",
        refused_shrink,
    ),
    (
        "same_uid_shrink_of_a_live_standalone_object_is_the_documented_trust_boundary",
        same_uid_shrink,
    ),
    (
        "sealed_object_resize_attempts_by_a_holder_of_its_descriptor_even_root_fail_and_kill_no_one",
        sealed_resize,
    ),
];

/// Who the chaos process is, and what it can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chaos {
    /// The owner, scribbling a named object.
    Owner,
    /// `nobody` after mapping a named object: tries to shrink it too.
    Nobody,
    /// The owner (root on CI), holding a sealed memfd: tries to shrink and grow it too.
    Sealed,
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("reader") => reader_child(),
        Ok("writer") => writer_child(),
        Ok("chaos") => chaos_child(),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
    let names: Vec<(&str, bool)> = TESTS.iter().map(|t| (t.0, false)).collect();
    let chosen: Vec<_> = support::select(&names)
        .into_iter()
        .zip(TESTS)
        .filter(|(on, _)| *on)
        .map(|(_, t)| t)
        .collect();
    let seed = support::run_seed();
    println!(
        "running {} tests (seed {seed}; replay with SEED={seed})",
        chosen.len()
    );
    run_tests(
        chosen
            .iter()
            .enumerate()
            .map(|(k, (name, test))| {
                let run: Test<'_> = Box::new(move || test(support::mix64(seed ^ k as u64)));
                (*name, run)
            })
            .collect(),
    );
}

// ---- the object, as the chaos process sees it --------------------------------------------

/// One region of the object: name and byte range.
#[derive(Clone, Copy, Debug)]
struct Area {
    name: &'static str,
    start: u64,
    end: u64,
}

/// Header-image fields (engine/DESIGN.md §3): name, offset, width.
const FIELDS: &[(&str, u64, u64)] = &[
    ("magic", 0, 8),
    ("layout_version", 8, 4),
    ("header_size", 12, 4),
    ("total_size", 16, 8),
    ("instance", 24, 8),
    ("hash_seed", 32, 8),
    ("creation_flags", 48, 4),
    ("max_sections", 52, 4),
    ("checkpoint_size", 56, 8),
    ("max_section_size", 72, 8),
    ("max_section_id_size", 80, 8),
    ("agent_capacity", 88, 4),
    ("slot_count", 96, 4),
    ("index_capacity", 100, 4),
    ("journal_capacity", 104, 4),
    ("checksum", 116, 4),
    ("slot_stride", 120, 8),
    ("off_descs", 136, 8),
    ("off_index", 152, 8),
    ("off_slot_meta", 160, 8),
    ("off_journal", 184, 8),
    ("off_slots", 192, 8),
];

/// Dynamic header words (engine/DESIGN.md §4).
const HDR_WORDS: &[(&str, u64)] = &[
    ("ROLE", 1024),
    ("TERM", 1032),
    ("APPLIED_SELECT", 1040),
    ("HEAD_SEQ", 1088),
    ("ACKED_SEQ", 1152),
    ("STORED_BYTES", 1216),
    ("BUDGET_DIRTY", 1224),
    ("STRUCT_LOCK", 1280),
    ("INDEX_SEQ", 1288),
    ("SECTION_COUNT", 1296),
    ("TOMBSTONES", 1304),
    ("GENERATED_IDS", 1312),
    ("MULTI_OWNER", 1344),
    ("MULTI_SEQ", 1352),
    ("NOTIFY|WAITERS", 1408),
    ("ACK_NOTIFY|ACK_WAITERS", 1472),
];

/// A writable shared mapping of the whole object, made by the chaos process itself.
struct Scribble {
    map: memmap2::MmapRaw,
    len: u64,
    areas: Vec<Area>,
}

impl Scribble {
    fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("chaos: open {}: {e}", path.display()));
        let map = memmap2::MmapOptions::new()
            .map_raw(&file)
            .unwrap_or_else(|e| panic!("chaos: map: {e}"));
        drop(file);
        let len = map.len() as u64;
        let mut s = Self {
            map,
            len,
            areas: Vec::new(),
        };
        // Region bounds from the header image, read once before any damage.
        let off = |at: u64| s.get(at);
        let total = off(16).min(len);
        let o: Vec<u64> = (0..9).map(|k| off(128 + 8 * k).min(total)).collect();
        let named = [
            ("agent table", o[0], o[1]),
            ("descriptors", o[1], o[2]),
            ("id area", o[2], o[3]),
            ("section index", o[3], o[4]),
            ("slot metadata", o[4], o[5]),
            ("allocation hints", o[5], o[7]),
            ("change journal", o[7], o[8]),
            ("slot data", o[8], total),
        ];
        s.areas.push(Area {
            name: "header image",
            start: 0,
            end: 200,
        });
        s.areas.push(Area {
            name: "dynamic header",
            start: 1024,
            end: 4096,
        });
        for (name, start, end) in named {
            assert!(
                start % 8 == 0 && start < end,
                "chaos: region {name} {start}..{end}"
            );
            s.areas.push(Area { name, start, end });
        }
        s
    }

    /// The shared word at byte offset `at` (8-aligned, inside the mapping).
    fn word(&self, at: u64) -> &AtomicU64 {
        assert!(at.is_multiple_of(8) && at + 8 <= self.len, "word {at}");
        // SAFETY: `at` is 8-aligned and the word lies inside the mapping (asserted), which
        // is page-aligned and lives as long as `self`. Other processes access the same
        // memory only through atomics (or plain copies of slot data, which the engine
        // treats as untrusted), so an atomic view of it is sound.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(at as usize).cast()) }
    }

    fn get(&self, at: u64) -> u64 {
        self.word(at).load(Relaxed)
    }

    /// Stores the low `width` bytes of `v` at byte offset `at` (any alignment inside one
    /// word), leaving the word's other bytes alone.
    fn put(&self, at: u64, width: u64, v: u64) {
        let base = at & !7;
        let shift = (at - base) * 8;
        let mask = if width == 8 {
            u64::MAX
        } else {
            ((1u64 << (8 * width)) - 1) << shift
        };
        let w = self.word(base);
        let _ = w.fetch_update(Relaxed, Relaxed, |old| {
            Some((old & !mask) | ((v << shift) & mask))
        });
    }
}

/// A word value that parses as something meaningful to the engine more often than a random
/// one does.
fn plausible(rng: &mut Rng, old: u64) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.next_u64(),
        3 => rng.below(64),
        // A state word: kind 0..=5, payload an owner word or a small number.
        4 => rng.below(6) | (((rng.below(64) + 1) | (rng.below(4) << 16)) << 8),
        // An owner word: (generation << 16) | (ix + 1).
        5 => (rng.below(8) << 16) | (rng.below(130) + 1),
        // A current word: generation << 32 | slot (sometimes NONE).
        6 => {
            (rng.below(8) << 32)
                | (if rng.chance(30) {
                    0xffff_ffff
                } else {
                    rng.below(90)
                })
        }
        7 => old.wrapping_add(1),
        8 => old.wrapping_sub(1),
        9 => old | 1,
        10 => old ^ (1 << rng.below(64)),
        _ => u64::from(u32::MAX),
    }
}

// ---- child plumbing ----------------------------------------------------------------------

/// Set by the stdin thread when the parent says `q` (or goes away).
static STOP: AtomicBool = AtomicBool::new(false);
/// The object the parent said to move to next (`attach NAME`), not yet taken.
static NEXT: Mutex<Option<String>> = Mutex::new(None);
static PENDING: AtomicBool = AtomicBool::new(false);
/// Start of the call in flight (ms since [`base`] + 1; 0 = none), and its name.
static OP_START: AtomicU64 = AtomicU64::new(0);
static OP_NAME: AtomicUsize = AtomicUsize::new(0);

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64 + 1
}

/// Reads the parent's commands from stdin in a thread of its own: `attach NAME` (move to
/// that object) and `q` (stop; also end of file).
fn listen() {
    std::thread::spawn(|| {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if let Some(name) = line.strip_prefix("attach ") {
                *NEXT.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.to_owned());
                PENDING.store(true, Relaxed);
            } else if line == "q" {
                break;
            }
        }
        STOP.store(true, Relaxed);
    });
}

/// Whether to leave the current object: stop, or a move is pending.
fn leave() -> bool {
    STOP.load(Relaxed) || PENDING.load(Relaxed)
}

/// Waits for the next object to use; `None` once told to stop.
fn next_object() -> Option<String> {
    loop {
        if STOP.load(Relaxed) {
            return None;
        }
        if let Some(name) = NEXT.lock().unwrap_or_else(|p| p.into_inner()).take() {
            PENDING.store(false, Relaxed);
            return Some(name);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Exits the child with a HANG line when one call runs longer than `limit`.
fn start_watchdog(names: &'static [&'static str], limit: Duration) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let start = OP_START.load(Relaxed);
            if start != 0 && now_ms().saturating_sub(start) > limit.as_millis() as u64 {
                let name = names.get(OP_NAME.load(Relaxed)).copied().unwrap_or("?");
                println!(
                    "HANG {name} has run {} ms (limit {} ms)",
                    now_ms() - start,
                    limit.as_millis()
                );
                print_stacks();
                let _ = std::io::stdout().flush();
                std::process::exit(3);
            }
        }
    });
}

/// Prints every thread's stack of this process (gdb in batch mode, when the machine has
/// it) as `STACK` lines, so a HANG names the loop that did not give up.
fn print_stacks() {
    let out = std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-p", &std::process::id().to_string()])
        .args(["-ex", "thread apply all bt 40"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // The engine's frames and the test's: enough to name the loop.
                let ours = line.contains(" at engine/") && !line.contains("print_stacks");
                if line.starts_with("Thread") || (line.starts_with('#') && ours) {
                    println!("STACK {line}");
                }
            }
        }
        Err(e) => println!("STACK (no stacks: gdb: {e})"),
    }
}

/// What a reader or writer child saw.
#[derive(Default)]
struct Tally {
    ops: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// Longest call: µs and name.
    slowest: (u64, &'static str),
    /// What the slowest call returned.
    slowest_gave: String,
    /// Calls that took longer than a second, per call name.
    slow: BTreeMap<&'static str, u64>,
    /// Values outside the attributes: count and the first few.
    bounds: u64,
    bound_notes: Vec<String>,
    /// Values read without an error that fail validation.
    undetected: u64,
}

impl Tally {
    /// Counts one error; numbers in its text (a garbage version, sizes) are folded, so
    /// the kinds stay few.
    fn error(&mut self, kind: String) {
        let mut folded = String::with_capacity(kind.len());
        for c in kind.chars() {
            if !c.is_ascii_digit() {
                folded.push(c);
            } else if !folded.ends_with('#') {
                folded.push('#');
            }
        }
        *self.errors.entry(folded).or_default() += 1;
    }

    fn result<T, E: std::fmt::Debug>(&mut self, r: &Result<T, E>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => self.error(format!("{e:?}")),
        }
    }

    fn bound(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.bounds += 1;
            if self.bound_notes.len() < 5 {
                self.bound_notes.push(what());
            }
        }
    }

    /// Runs one call under the watchdog, timing it.
    fn timed<T: std::fmt::Debug>(
        &mut self,
        names: &'static [&'static str],
        ix: usize,
        f: impl FnOnce() -> T,
    ) -> T {
        OP_NAME.store(ix, Relaxed);
        OP_START.store(now_ms(), Relaxed);
        let t0 = Instant::now();
        let out = f();
        let us = t0.elapsed().as_micros() as u64;
        OP_START.store(0, Relaxed);
        self.ops += 1;
        if us > self.slowest.0 {
            self.slowest = (us, names[ix]);
            self.slowest_gave = format!("{out:?}").chars().take(60).collect();
        }
        if us > 1_000_000 {
            *self.slow.entry(names[ix]).or_default() += 1;
        }
        out
    }

    /// The lines the parent parses.
    fn print(&self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "OPS {} {}", self.ops, self.ok);
        let _ = writeln!(
            out,
            "SLOWEST {} {} -> {}",
            self.slowest.0, self.slowest.1, self.slowest_gave
        );
        for (name, n) in &self.slow {
            let _ = writeln!(out, "SLOW {n} {name}");
        }
        for (kind, n) in &self.errors {
            let _ = writeln!(out, "ERR {n} {kind}");
        }
        let _ = writeln!(out, "BOUNDS {}", self.bounds);
        for n in &self.bound_notes {
            let _ = writeln!(out, "NOTE {n}");
        }
        let _ = writeln!(out, "UNDETECTED {}", self.undetected);
        let _ = writeln!(out, "END");
        let _ = out.flush();
    }
}

// ---- reader child ------------------------------------------------------------------------

const READER_OPS: &[&str] = &[
    "read",
    "read at an offset",
    "read_to_vec",
    "borrow",
    "read_many",
    "section_info",
    "sections",
    "status",
    "changes_since",
    "wait_for_changes",
    "attach",
    "fsck",
    "drop",
];

/// Attaches the object the parent named: a name in the domain, or, for a sealed object,
/// the parent's descriptor as `/proc/<pid>/fd/N` (reopened: the same memfd, with the same
/// seals, as a descriptor passed over a socket).
fn attach_named(dir: &Path, name: &str) -> Result<Replica, AttachError> {
    if name.starts_with("/proc/") {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name)
            .map_err(|e| AttachError::Io(e.raw_os_error().unwrap_or(libc::EIO)))?;
        return Replica::attach_fd(dir, file.into());
    }
    Replica::attach(dir, name, Sharing::default())
}

fn reader_child() -> ! {
    die_with_parent();
    let dir = PathBuf::from(env("CKPT_TEST_DIR"));
    let mut rng = Rng::new(env_u64("CKPT_TEST_SEED"));
    listen();
    start_watchdog(
        READER_OPS,
        Duration::from_millis(env_u64("CKPT_R4_OP_LIMIT_MS")),
    );
    let mut t = Tally::default();
    say("R");
    while let Some(name) = next_object() {
        let r = match attach_named(&dir, &name) {
            Ok(r) => r,
            Err(e) => {
                say(&format!("AFAIL {name} {e}"));
                continue;
            }
        };
        say(&format!("A {name}"));
        read_until_told(&r, &dir, &name, &mut rng, &mut t);
        // Dropping releases this process's agents in whatever the chaos left of the table.
        t.timed(READER_OPS, READER_OPS.len() - 1, || drop(r));
    }
    t.print();
    std::process::exit(0);
}

/// The reader's calls on one object, until told to stop or to move on.
fn read_until_told(r: &Replica, dir: &Path, name: &str, rng: &mut Rng, t: &mut Tally) {
    let layout = layout();
    let all: Vec<&Sect> = layout.all().collect();
    let max = SECTION_SIZE as u64;
    let mut held = std::collections::VecDeque::new();
    let mut after = 0u64;
    while !leave() {
        let s = all[rng.index(all.len())];
        let op = match rng.below(1000) {
            0..=199 => 0,
            200..=279 => 1,
            280..=379 => 2,
            380..=529 => 3,
            530..=629 => 4,
            630..=699 => 5,
            700..=759 => 6,
            760..=799 => 7,
            800..=889 => 8,
            890..=979 => 9,
            980..=994 => 10,
            _ => 11,
        };
        match op {
            0 => {
                let mut buf = [0u8; SECTION_SIZE];
                let got = t.timed(READER_OPS, op, || r.read(&s.id, 0, &mut buf));
                t.result(&got);
                if let Ok(n) = got {
                    t.bound(n <= buf.len(), || format!("read returned {n} bytes"));
                    if decode(&buf[..n.min(buf.len())], s.tag).is_err() {
                        t.undetected += 1;
                    }
                }
            }
            1 => {
                let mut buf = [0u8; 40];
                let off = rng.below(2 * max);
                let got = t.timed(READER_OPS, op, || r.read(&s.id, off, &mut buf));
                t.result(&got);
                if let Ok(n) = got {
                    t.bound(n <= buf.len() && off + n as u64 <= max, || {
                        format!("read at {off} returned {n} bytes")
                    });
                }
            }
            2 => {
                let got = t.timed(READER_OPS, op, || r.read_to_vec(&s.id));
                t.result(&got);
                if let Ok(v) = &got {
                    t.bound(v.len() as u64 <= max, || {
                        format!("read_to_vec returned {} bytes", v.len())
                    });
                    if decode(v, s.tag).is_err() {
                        t.undetected += 1;
                    }
                }
            }
            3 => {
                let got = t.timed(READER_OPS, op, || r.borrow(&s.id));
                t.result(&got);
                if let Ok(g) = got {
                    t.bound(g.len() as u64 <= max, || {
                        format!("borrow gave {} bytes", g.len())
                    });
                    // Touch every byte: a view outside the mapping would fault here.
                    std::hint::black_box(g.iter().fold(0u8, |x, y| x ^ y));
                    if decode(&g, s.tag).is_err() {
                        t.undetected += 1;
                    }
                    held.push_back(g);
                }
                if held.len() > 3 {
                    held.pop_front();
                }
                // Guards held across later calls: their bytes stay readable.
                for g in &held {
                    std::hint::black_box(g.iter().fold(0u8, |x, y| x ^ y));
                }
            }
            4 => {
                let n = 2 + rng.index(3);
                let ids: Vec<&Sect> = (0..n).map(|_| all[rng.index(all.len())]).collect();
                let mut bufs = vec![[0u8; SECTION_SIZE]; n];
                let mut elems: Vec<ReadElement<'_>> = ids
                    .iter()
                    .zip(bufs.iter_mut())
                    .map(|(s, b)| ReadElement {
                        id: &s.id,
                        offset: 0,
                        buf: b,
                        read: 0,
                    })
                    .collect();
                let got = t.timed(READER_OPS, op, || r.read_many(&mut elems));
                let reads: Vec<usize> = elems.iter().map(|e| e.read).collect();
                match got {
                    Ok(()) => {
                        t.ok += 1;
                        for n in reads {
                            t.bound(n <= SECTION_SIZE, || format!("read_many read {n} bytes"));
                        }
                    }
                    Err(e) => t.error(format!("{:?}", e.kind)),
                }
            }
            5 => {
                let got = t.timed(READER_OPS, op, || r.section_info(&s.id));
                t.result(&got);
                if let Ok(info) = got {
                    t.bound(info.size <= max && info.id.len() as u64 <= MAX_ID, || {
                        format!(
                            "section_info: size {}, id {} bytes",
                            info.size,
                            info.id.len()
                        )
                    });
                }
            }
            6 => {
                let filter = [
                    SectionFilter::Any,
                    SectionFilter::Forever,
                    SectionFilter::Corrupted,
                ][rng.index(3)];
                let got: Vec<_> = t.timed(READER_OPS, op, || {
                    r.sections(filter).take(MAX_SECTIONS as usize + 1).collect()
                });
                t.ok += 1;
                t.bound(got.len() <= MAX_SECTIONS as usize, || {
                    format!("sections() yielded more than {MAX_SECTIONS}")
                });
                for info in got {
                    t.bound(info.size <= max && info.id.len() as u64 <= MAX_ID, || {
                        format!("sections(): size {}, id {} bytes", info.size, info.id.len())
                    });
                }
            }
            7 => {
                let _ = t.timed(READER_OPS, op, || r.status());
                t.ok += 1;
            }
            8 => {
                let mut out = Vec::new();
                let got = t.timed(READER_OPS, op, || r.changes_since(after, &mut out, 64));
                t.ok += 1;
                after = match got {
                    Changes::UpTo(s) | Changes::Resync(s) => s,
                };
                if rng.chance(5) {
                    after = rng.below(1 << 20);
                }
                t.bound(out.len() <= 64, || {
                    format!("changes_since returned {} for 64", out.len())
                });
                for ch in &out {
                    let inside = ch.offset.checked_add(ch.len).is_some_and(|e| e <= max)
                        && ch.id.as_ref().is_none_or(|id| id.len() as u64 <= MAX_ID);
                    t.bound(inside, || {
                        format!("change seq {} covers {}+{}", ch.seq, ch.offset, ch.len)
                    });
                }
            }
            9 => {
                let head = r.commit_seq();
                let _ = t.timed(READER_OPS, op, || {
                    r.wait_for_changes(head, Duration::from_millis(1))
                });
                t.ok += 1;
            }
            10 => {
                let got = t.timed(READER_OPS, op, || {
                    attach_named(dir, name).map(|other| {
                        let _ = other.status();
                        let _ = other.read_to_vec(&s.id);
                    })
                });
                match got {
                    Ok(()) => t.ok += 1,
                    Err(e) => t.error(format!("attach: {e:?}")),
                }
            }
            _ => {
                let report = t.timed(READER_OPS, op, || r.fsck());
                t.ok += 1;
                if !report.is_clean() {
                    t.error("fsck found violations".into());
                }
            }
        }
    }
}

// ---- writer child ------------------------------------------------------------------------

const WRITER_OPS: &[&str] = &[
    "overwrite",
    "multi-element write",
    "multi-section write",
    "create_section",
    "delete_section",
    "set_expiration",
    "reap_expired",
    "recover_dead_agents",
    "create_section (generated id)",
    "drop",
];

fn writer_child() -> ! {
    die_with_parent();
    let dir = PathBuf::from(env("CKPT_TEST_DIR"));
    let mut rng = Rng::new(env_u64("CKPT_TEST_SEED"));
    listen();
    start_watchdog(
        WRITER_OPS,
        Duration::from_millis(env_u64("CKPT_R4_OP_LIMIT_MS")),
    );
    let mut t = Tally::default();
    let mut seq = 1u64 << 48;
    say("R");
    while let Some(name) = next_object() {
        let r = match attach_named(&dir, &name) {
            Ok(r) => r,
            Err(e) => {
                say(&format!("AFAIL {name} {e}"));
                continue;
            }
        };
        say(&format!("A {name}"));
        write_until_told(&r, &mut rng, &mut t, &mut seq);
        t.timed(WRITER_OPS, WRITER_OPS.len() - 1, || drop(r));
    }
    t.print();
    std::process::exit(0);
}

/// The writer's calls on one object, until told to stop or to move on.
fn write_until_told(r: &Replica, rng: &mut Rng, t: &mut Tally, seq: &mut u64) {
    let layout = layout();
    while !leave() {
        *seq += 1;
        let perm = &layout.perm[rng.index(layout.perm.len())];
        let eph = &layout.eph[rng.index(layout.eph.len())];
        let op = match rng.below(100) {
            0..=29 => 0,
            30..=44 => 1,
            45..=59 => 2,
            60..=71 => 3,
            72..=81 => 4,
            82..=87 => 5,
            88..=91 => 6,
            92..=95 => 7,
            _ => 8,
        };
        let got: Result<(), SectionError> = match op {
            0 => t.timed(WRITER_OPS, op, || {
                do_overwrite(r, rng, perm, *seq).map(drop)
            }),
            1 => t.timed(WRITER_OPS, op, || {
                do_multi_element(r, rng, perm, *seq).map(drop)
            }),
            2 => t.timed(WRITER_OPS, op, || {
                do_txn(r, rng, layout.txn(), *seq).map(drop)
            }),
            3 => t.timed(WRITER_OPS, op, || do_create(r, rng, eph, *seq).map(drop)),
            4 => t.timed(WRITER_OPS, op, || r.delete_section(&eph.id)),
            5 => {
                let exp = future_expiration(rng);
                t.timed(WRITER_OPS, op, || r.set_expiration(&eph.id, exp))
            }
            6 => {
                t.timed(WRITER_OPS, op, || r.reap_expired(wall_clock()));
                Ok(())
            }
            7 => {
                t.timed(WRITER_OPS, op, || r.recover_dead_agents());
                Ok(())
            }
            _ => t.timed(WRITER_OPS, op, || {
                r.create_section(None, TIME_END, b"generated")
                    .and_then(|id| r.delete_section(&id))
            }),
        };
        t.result(&got);
        // Recreate what the chaos made disappear, so the protocols keep running.
        if got == Err(SectionError::NotExist) && op <= 2 {
            let lost: &[Sect] = if op == 2 {
                layout.txn()
            } else {
                core::slice::from_ref(perm)
            };
            for s in lost {
                let data = encode(*seq, s.tag, 0, HDR + rng.index(SECTION_SIZE - HDR + 1));
                let res = t.timed(WRITER_OPS, 3, || {
                    r.create_section(Some(&s.id), TIME_END, &data)
                });
                t.result(&res);
            }
        }
    }
}

// ---- chaos child -------------------------------------------------------------------------

/// Maps each object the parent names (`attach NAME`); with `CKPT_R4_DROP=1` drops to
/// `nobody` after mapping the first one and tries to shrink it too; with
/// `CKPT_R4_SEALED=1` (a sealed object, reopened through `/proc`) tries to shrink and grow
/// it as the owner, and punches holes in it. Scribbles until told to move on or stop (or
/// `CKPT_R4_DURATION_MS` ran out), then prints what it did.
fn chaos_child() -> ! {
    die_with_parent();
    let dir = PathBuf::from(env("CKPT_TEST_DIR"));
    let mut rng = Rng::new(env_u64("CKPT_TEST_SEED"));
    let end = Instant::now() + Duration::from_millis(env_u64("CKPT_R4_DURATION_MS"));
    let shrink = env("CKPT_R4_DROP") == "1";
    let sealed = env("CKPT_R4_SEALED") == "1";
    listen();
    let mut flips: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut fields, mut dynamic, mut words, mut holes) = (0u64, 0u64, 0u64, 0u64);
    let mut sh = ShrinkTally::default();
    let mut first = true;
    while let Some(name) = next_object() {
        let path = dir.join(&name);
        let s = Scribble::open(&path);
        // The sealed object's own descriptor (the reopened /proc link, as an agent holds).
        let holder = sealed.then(|| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("chaos: open {}: {e}", path.display()))
        });
        if shrink && first {
            drop_privileges();
            // A change of credentials clears the parent-death signal.
            die_with_parent();
        }
        first = false;
        say(&format!(
            "READY uid={}",
            rustix::process::geteuid().as_raw()
        ));
        let mut burst = 0u32;
        while !leave() && Instant::now() < end {
            let area = s.areas[rng.index(s.areas.len())];
            match rng.below(100) {
                // Flip 1..=4 bits of one word.
                0..=59 => {
                    let at = area.start + rng.below((area.end - area.start) / 8) * 8;
                    let mut mask = 0;
                    for _ in 0..=rng.below(4) {
                        mask |= 1 << rng.below(64);
                    }
                    s.word(at).fetch_xor(mask, Relaxed);
                    *flips.entry(area.name).or_default() += 1;
                }
                // Rewrite a header-image field.
                60..=69 => {
                    let (_, at, width) = FIELDS[rng.index(FIELDS.len())];
                    let old = s.get(at & !7) >> ((at & 7) * 8);
                    s.put(at, width, plausible(&mut rng, old));
                    fields += 1;
                }
                // Rewrite a dynamic header word.
                70..=84 => {
                    let (_, at) = HDR_WORDS[rng.index(HDR_WORDS.len())];
                    let v = plausible(&mut rng, s.get(at));
                    s.word(at).store(v, Relaxed);
                    dynamic += 1;
                }
                // A plausible word anywhere.
                _ => {
                    let at = area.start + rng.below((area.end - area.start) / 8) * 8;
                    let v = plausible(&mut rng, s.get(at));
                    s.word(at).store(v, Relaxed);
                    words += 1;
                }
            }
            if shrink && rng.chance(2) {
                sh.attempt(&path, &s);
            }
            if let Some(f) = &holder {
                if rng.chance(2) {
                    sh.attempt_resize(&path, f, &s);
                }
                // Zero a few pages of slot data or journal (what a descriptor still
                // allows: a write, which faults nobody).
                if rng.chance(16) {
                    let page = 4096;
                    let area = s.areas[rng.index(s.areas.len())];
                    let at = (area.start + rng.below((area.end - area.start).max(1))) / page * page;
                    let len = page * (1 + rng.below(4));
                    if rustix::fs::fallocate(
                        f,
                        rustix::fs::FallocateFlags::PUNCH_HOLE
                            | rustix::fs::FallocateFlags::KEEP_SIZE,
                        at,
                        len.min(s.len.saturating_sub(at)),
                    )
                    .is_ok()
                    {
                        holes += 1;
                    }
                }
            }
            // Bursts of damage, then a pause for the protocols to run on what is left.
            burst += 1;
            if burst > rng.below(8) as u32 {
                burst = 0;
                std::thread::sleep(Duration::from_micros(500 + rng.below(10_000)));
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (area, n) in &flips {
        let _ = writeln!(out, "FLIP {n} {area}");
    }
    let _ = writeln!(out, "REWRITE {fields} header-image fields");
    let _ = writeln!(out, "REWRITE {dynamic} dynamic header words");
    let _ = writeln!(out, "REWRITE {words} plausible words");
    if sealed {
        let _ = writeln!(out, "REWRITE {holes} punched holes (zeroed pages)");
    }
    let _ = writeln!(
        out,
        "SHRINK {} {} {} {} {}",
        sh.attempts,
        sh.refused,
        sh.succeeded,
        sh.other,
        sh.how.join("; ")
    );
    let _ = writeln!(out, "END");
    let _ = out.flush();
    std::process::exit(0);
}

/// Becomes `nobody` (supplementary groups, gid, uid), keeping the mapping.
fn drop_privileges() {
    // SAFETY: setgroups/setresgid/setresuid take plain integers; glibc applies them to
    // every thread of the process (only this one exists yet).
    let rc = unsafe {
        if libc::setgroups(0, core::ptr::null()) != 0 {
            -1
        } else if libc::setresgid(NOBODY, NOBODY, NOBODY) != 0 {
            -2
        } else {
            libc::setresuid(NOBODY, NOBODY, NOBODY)
        }
    };
    if rc != 0 {
        eprintln!(
            "chaos: cannot become nobody ({rc}): {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(4);
    }
}

/// The shrink attempts of a scribbler that holds a mapping but no write access, or the
/// resize attempts of one that holds a sealed object's descriptor.
#[derive(Default)]
struct ShrinkTally {
    attempts: u64,
    refused: u64,
    succeeded: u64,
    /// Refused, but not with EPERM (a sealed object must answer EPERM).
    other: u64,
    /// Each way tried, with the first answer it got.
    how: Vec<String>,
}

impl ShrinkTally {
    fn note(&mut self, way: &str, outcome: Result<(), std::io::Error>) {
        self.attempts += 1;
        let text = match &outcome {
            Ok(()) => {
                self.succeeded += 1;
                "SUCCEEDED".to_owned()
            }
            Err(e) => {
                self.refused += 1;
                if e.raw_os_error() != Some(libc::EPERM) {
                    self.other += 1;
                }
                format!("refused ({e})")
            }
        };
        if !self.how.iter().any(|h| h.starts_with(way)) {
            self.how.push(format!("{way}: {text}"));
        }
    }

    /// Every way to shrink the object to half its size without a writable descriptor.
    fn attempt(&mut self, path: &Path, s: &Scribble) {
        let half = s.len / 2;
        let via_open = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .and_then(|f| f.set_len(half))
        };
        self.note("open(O_WRONLY)+ftruncate", via_open(path));
        let rdwr = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(half));
        self.note("open(O_RDWR)+ftruncate", rdwr);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
        // SAFETY: a valid NUL-terminated path; truncate has no other preconditions.
        let rc = unsafe { libc::truncate(c.as_ptr(), half as libc::off_t) };
        let res = if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        };
        self.note("truncate(path)", res);
        // The mapping itself, reopened through /proc (needs CAP_SYS_ADMIN).
        let start = s.map.as_ptr() as usize;
        let own = PathBuf::from(format!(
            "/proc/self/map_files/{start:x}-{:x}",
            start + s.len as usize
        ));
        self.note("/proc/self/map_files+ftruncate", via_open(&own));
    }

    /// Every way to change a sealed object's length by the owner holding its descriptor
    /// `f` (opened through `path`, a `/proc/<pid>/fd/N` link): shrink, grow, truncate by
    /// path, and adding the seal that would stop the writers. Each must fail with EPERM.
    fn attempt_resize(&mut self, path: &Path, f: &std::fs::File, s: &Scribble) {
        let io = |r: Result<(), rustix::io::Errno>| r.map_err(std::io::Error::from);
        self.note("ftruncate to half", io(rustix::fs::ftruncate(f, s.len / 2)));
        self.note("ftruncate to 0", io(rustix::fs::ftruncate(f, 0)));
        self.note(
            "ftruncate to twice",
            io(rustix::fs::ftruncate(f, s.len * 2)),
        );
        self.note(
            "fallocate past the end",
            io(rustix::fs::fallocate(
                f,
                rustix::fs::FallocateFlags::empty(),
                s.len,
                1 << 20,
            )),
        );
        let trunc = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map(drop);
        self.note("open(O_TRUNC) of the /proc link", trunc);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
        // SAFETY: a valid NUL-terminated path; truncate has no other preconditions.
        let rc = unsafe { libc::truncate(c.as_ptr(), (s.len / 2) as libc::off_t) };
        let res = if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        };
        self.note("truncate(2) of the /proc link", res);
        let start = s.map.as_ptr() as usize;
        let own = PathBuf::from(format!(
            "/proc/self/map_files/{start:x}-{:x}",
            start + s.len as usize
        ));
        let via_map = std::fs::OpenOptions::new()
            .write(true)
            .open(&own)
            .and_then(|g| g.set_len(s.len / 2));
        self.note("/proc/self/map_files+ftruncate", via_map);
        self.note(
            "F_ADD_SEALS F_SEAL_WRITE",
            io(rustix::fs::fcntl_add_seals(f, rustix::fs::SealFlags::WRITE)),
        );
    }
}

// ---- the parent side ---------------------------------------------------------------------

/// How a child ended.
/// Parsed report of a reader or writer.
#[derive(Default)]
struct Report {
    ops: u64,
    ok: u64,
    slowest: (u64, String),
    slow: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    bounds: u64,
    notes: Vec<String>,
    undetected: u64,
    hang: Option<String>,
    /// The hung child's stacks (`STACK` lines), when gdb could take them.
    stacks: Vec<String>,
    complete: bool,
}

fn parse_report(lines: &[String]) -> Report {
    let mut r = Report::default();
    for l in lines {
        let (head, rest) = l.split_once(' ').unwrap_or((l, ""));
        let num = |s: &str| s.split_whitespace().next().and_then(|w| w.parse().ok());
        match head {
            "OPS" => {
                let mut it = rest.split_whitespace().map(|w| w.parse().unwrap_or(0));
                r.ops = it.next().unwrap_or(0);
                r.ok = it.next().unwrap_or(0);
            }
            "SLOWEST" => {
                let (us, name) = rest.split_once(' ').unwrap_or((rest, ""));
                r.slowest = (us.parse().unwrap_or(0), name.to_owned());
            }
            "SLOW" => {
                let (n, name) = rest.split_once(' ').unwrap_or((rest, ""));
                *r.slow.entry(name.to_owned()).or_default() += n.parse().unwrap_or(0);
            }
            "ERR" => {
                let (n, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                *r.errors.entry(kind.to_owned()).or_default() += n.parse().unwrap_or(0);
            }
            "BOUNDS" => r.bounds = num(rest).unwrap_or(0),
            "NOTE" => r.notes.push(rest.to_owned()),
            "UNDETECTED" => r.undetected = num(rest).unwrap_or(0),
            "HANG" => r.hang = Some(rest.to_owned()),
            "STACK" => r.stacks.push(rest.to_owned()),
            "END" => r.complete = true,
            _ => {}
        }
    }
    r
}

/// What one run left: the problems found, the chaos process's report, and the size of
/// the last object before and after.
struct RunOutcome {
    problems: Vec<String>,
    chaos_lines: Vec<String>,
    size_before: u64,
    size_after: u64,
}

fn populate(r: &Replica, layout: &Layout) {
    for (k, s) in layout.all().enumerate() {
        let data = encode(k as u64 + 1, s.tag, 0, SECTION_SIZE);
        r.create_section(Some(&s.id), TIME_END, &data)
            .expect("populate the replica");
    }
}

fn r4_opts() -> CreateOptions {
    CreateOptions {
        limits: ReplicaLimits {
            agents: 64,
            spare_slots: 0,
            journal_cells: 4096,
        },
        ..CreateOptions::default()
    }
}

/// A fresh, populated replica object named `name` in `dir`; returns its size.
fn fresh_object(dir: &Path, name: &str) -> u64 {
    let creator = Replica::create(dir, name, &attrs(), &r4_opts()).expect("create the replica");
    populate(&creator, &layout());
    // The parent keeps no agent in it: drop the creator's handle (the object stays).
    drop(creator);
    std::fs::metadata(dir.join(name)).map_or(0, |m| m.len())
}

/// A fresh, populated sealed replica, which the parent keeps mapped (as ckptd does; its
/// mapping must survive the run too) with no agent in it. Returns the name the children
/// attach it by (`/proc/<pid>/fd/N`), its size, and the parent's replica.
fn fresh_sealed(dir: &Path) -> (String, u64, Replica) {
    let creator =
        Replica::create_sealed(dir, OBJECT, &attrs(), &r4_opts()).expect("create the replica");
    populate(&creator, &layout());
    let fd = rustix::io::fcntl_dupfd_cloexec(creator.sealed_fd().expect("sealed"), 0)
        .expect("dup the descriptor");
    drop(creator);
    let kept = Replica::attach_fd(dir, fd).expect("the parent's mapping");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&kept.sealed_fd().expect("sealed"));
    let name = format!("/proc/{}/fd/{raw}", std::process::id());
    (name, kept.object_size(), kept)
}

/// Four readers, one writer and the chaos process, over `rounds` fresh objects of
/// `round` each: every round starts from a healthy replica and ends wrecked.
fn run_with_chaos(seed: u64, rounds: u32, round: Duration, chaos_is: Chaos) -> RunOutcome {
    let drop_to_nobody = chaos_is == Chaos::Nobody;
    let domain = Domain::new("r4");
    let op_limit = env_or("R4_OP_LIMIT_MS", 5_000);
    let total = round * rounds;
    let vars = |seed: u64| {
        vec![
            ("CKPT_TEST_DIR", domain.0.display().to_string()),
            ("CKPT_TEST_SEED", seed.to_string()),
            ("CKPT_R4_OP_LIMIT_MS", op_limit.to_string()),
        ]
    };
    let mut problems = Vec::new();
    let mut kids: Vec<Kid> = (0..READERS)
        .map(|k| {
            Kid::spawn(
                child_command("reader", &vars(support::mix64(seed + k as u64))),
                format!("reader {k}"),
            )
        })
        .collect();
    kids.push(Kid::spawn(
        child_command("writer", &vars(seed ^ 0x5eed)),
        "writer",
    ));
    let mut chaos_vars = vars(support::mix64(seed ^ 0xc4a05));
    chaos_vars.push((
        "CKPT_R4_DURATION_MS",
        (total + Duration::from_secs(60)).as_millis().to_string(),
    ));
    chaos_vars.push((
        "CKPT_R4_DROP",
        if drop_to_nobody { "1" } else { "0" }.into(),
    ));
    chaos_vars.push((
        "CKPT_R4_SEALED",
        if chaos_is == Chaos::Sealed { "1" } else { "0" }.into(),
    ));
    let mut chaos = Kid::spawn(child_command("chaos", &chaos_vars), "chaos");
    for k in &mut kids {
        if let Err(e) = k.expect("R", Duration::from_secs(20)) {
            problems.push(e);
        }
    }
    println!(
        "  {READERS} readers, 1 writer and the chaos process (as {}) on {rounds} fresh objects, \
         {round:?} each",
        match chaos_is {
            Chaos::Nobody => "nobody".to_owned(),
            Chaos::Owner => "the owner".to_owned(),
            Chaos::Sealed => format!(
                "the owner, uid {}, holding a sealed object's descriptor",
                rustix::process::geteuid().as_raw()
            ),
        }
    );
    let (mut size_before, mut last) = (0, String::new());
    // Sealed: the parent's mappings (the current object's, and the previous one's until
    // everyone has moved on).
    let mut kept: Vec<Replica> = Vec::new();
    for n in 0..rounds {
        if !problems.is_empty() {
            break;
        }
        let name = if chaos_is == Chaos::Sealed {
            let (name, size, replica) = fresh_sealed(&domain.0);
            size_before = size;
            kept.push(replica);
            name
        } else {
            let name = format!("{OBJECT}-{n}");
            size_before = fresh_object(&domain.0, &name);
            name
        };
        for k in &mut kids {
            k.send(&format!("attach {name}"));
        }
        for k in &mut kids {
            match k.expect("A", Duration::from_secs(20)) {
                Ok(l) if l == format!("A {name}") => {}
                Ok(l) => problems.push(format!("{}: {l}", k.who())),
                Err(e) => problems.push(e),
            }
        }
        chaos.send(&format!("attach {name}"));
        if let Err(e) = chaos.expect("READY", Duration::from_secs(20)) {
            problems.push(e);
        }
        std::thread::sleep(round);
        // Everyone has moved on from the previous object: unlink it (or let it go).
        if kept.len() > 1 {
            kept.remove(0);
        } else if !last.is_empty() && chaos_is != Chaos::Sealed {
            let _ = Replica::remove(&domain.0, &last);
        }
        last = name;
    }
    let path = domain.0.join(&last);
    let (chaos_lines, chaos_status) = chaos.stop(Duration::from_secs(20));
    match chaos_status {
        Some(st) if describe(st).0 => {}
        Some(st) => problems.push(format!("chaos process {}", describe(st).1)),
        None => problems.push("chaos process did not stop".into()),
    }
    let size_after = std::fs::metadata(&path).map_or(0, |m| m.len());
    let limit = Duration::from_millis(op_limit) + Duration::from_secs(10);
    let mut reports = Vec::new();
    for k in &mut kids {
        let (lines, st) = k.stop(limit);
        let rep = parse_report(&lines);
        match st {
            Some(st) => {
                let (clean, how) = describe(st);
                if !clean {
                    let hang = rep.hang.clone().unwrap_or_default();
                    let mut stacks = String::new();
                    for l in &rep.stacks {
                        let _ = write!(stacks, "\n      {l}");
                    }
                    problems.push(format!("{} {how} {hang}{stacks}", k.who()));
                }
            }
            None => problems.push(format!(
                "{} did not stop within {limit:?} (a call hung past its watchdog)",
                k.who()
            )),
        }
        if !rep.complete {
            problems.push(format!("{} printed no complete report", k.who()));
        }
        reports.push((k.who().to_owned(), rep));
    }
    summarize(&reports, &chaos_lines, &mut problems);
    // Whatever is left must not crash a fresh attach, fsck or a sweep of reads (nor, for
    // a sealed object, the parent's own mapping made before the chaos began).
    if let Some(mine) = kept.last() {
        let report = mine.fsck();
        println!(
            "  after the run: the parent's own mapping reads every section; fsck is {}",
            if report.is_clean() {
                "clean"
            } else {
                "not clean"
            }
        );
        for s in layout().all() {
            let _ = mine.read_to_vec(&s.id);
        }
    }
    match attach_named(&domain.0, &last) {
        Ok(r) => {
            let report = r.fsck();
            println!(
                "  after the run: attach works, fsck is {}",
                if report.is_clean() {
                    "clean".to_owned()
                } else {
                    format!("not clean ({} lines)", report.to_string().lines().count())
                }
            );
            for s in layout().all() {
                let _ = r.read_to_vec(&s.id);
            }
        }
        Err(e) => println!("  after the run: attach refuses the last object: {e}"),
    }
    RunOutcome {
        problems,
        chaos_lines,
        size_before,
        size_after,
    }
}

/// Prints the per-kind error counts and latencies; adds problems for out-of-bounds values,
/// idle children and damage that never surfaced.
fn summarize(reports: &[(String, Report)], chaos: &[String], problems: &mut Vec<String>) {
    let mut out = String::new();
    let mut corruptions = 0u64;
    for l in chaos {
        if let Some(rest) = l
            .strip_prefix("FLIP ")
            .or_else(|| l.strip_prefix("REWRITE "))
        {
            let (n, what) = rest.split_once(' ').unwrap_or((rest, ""));
            corruptions += n.parse::<u64>().unwrap_or(0);
            let _ = writeln!(out, "    chaos: {n} {what}");
        }
        if let Some(rest) = l.strip_prefix("SHRINK ") {
            let mut it = rest.splitn(5, ' ');
            let (a, r, s, o) = (
                it.next().unwrap_or("0"),
                it.next().unwrap_or("0"),
                it.next().unwrap_or("0"),
                it.next().unwrap_or("0"),
            );
            if a != "0" {
                let _ = writeln!(
                    out,
                    "    chaos: {a} resize attempts, {r} refused ({o} not with EPERM), {s} \
                     succeeded ({})",
                    it.next().unwrap_or("")
                );
            }
        }
    }
    if corruptions == 0 {
        problems.push("the chaos process corrupted nothing".into());
    }
    let mut total_errors = 0u64;
    for (role, filter) in [("readers", "reader"), ("writer", "writer")] {
        let mine: Vec<&Report> = reports
            .iter()
            .filter(|(w, _)| w.starts_with(filter))
            .map(|(_, r)| r)
            .collect();
        let ops: u64 = mine.iter().map(|r| r.ops).sum();
        let ok: u64 = mine.iter().map(|r| r.ok).sum();
        let undetected: u64 = mine.iter().map(|r| r.undetected).sum();
        let slowest = mine
            .iter()
            .map(|r| r.slowest.clone())
            .max()
            .unwrap_or_default();
        let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &mine {
            for (k, n) in &r.errors {
                *errors.entry(k).or_default() += n;
            }
        }
        let mut slow: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &mine {
            for (k, n) in &r.slow {
                *slow.entry(k).or_default() += n;
            }
        }
        let n_err: u64 = errors.values().sum();
        total_errors += n_err;
        let _ = writeln!(
            out,
            "    {role}: {ops} calls, {ok} ok, {n_err} errors; slowest call {} µs: {}; calls \
             over 1 s: {slow:?}; {undetected} values read without error that fail validation",
            slowest.0, slowest.1
        );
        for (k, n) in &errors {
            let _ = writeln!(out, "      {n:>8} {k}");
        }
        for r in &mine {
            if r.ops == 0 {
                problems.push(format!("a {filter} made no calls"));
            }
            if r.bounds > 0 {
                problems.push(format!(
                    "{} values outside the attributes, e.g. {:?}",
                    r.bounds, r.notes
                ));
            }
        }
    }
    let undetected: u64 = reports.iter().map(|(_, r)| r.undetected).sum();
    if undetected > 0 {
        let _ = writeln!(
            out,
            "    KNOWN LIMIT: {undetected} values read back without an error but failed \
             validation: a flipped data bit is invisible (sections carry no checksum)"
        );
    }
    if total_errors == 0 {
        problems.push(format!(
            "{corruptions} corruptions and not one error reported: the damage went unseen"
        ));
    }
    print!("{out}");
}

// ---- the tests ---------------------------------------------------------------------------

fn scribbler(seed: u64) -> Verdict {
    let secs = env_or("R4_DURATION", 10);
    let round = Duration::from_millis(env_or("R4_ROUND_MS", 2000));
    let rounds = (Duration::from_secs(secs).as_millis() / round.as_millis().max(1)).max(1);
    let run = run_with_chaos(seed, rounds as u32, round, Chaos::Owner);
    if run.problems.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("  {}", run.problems.join("\n  ")))
    }
}

fn refused_shrink(seed: u64) -> Verdict {
    if !is_root() {
        return Verdict::Skipped(
            "running the scribbler as another uid (the refused-shrink setup) needs root".into(),
        );
    }
    let secs = env_or("R4_SHRINK_DURATION", 3);
    // One object only: once it is nobody, the chaos process cannot open another.
    let mut run = run_with_chaos(seed, 1, Duration::from_secs(secs), Chaos::Nobody);
    let shrink = run
        .chaos_lines
        .iter()
        .find_map(|l| l.strip_prefix("SHRINK "))
        .unwrap_or("0 0 0");
    let mut it = shrink.split_whitespace().map(|w| w.parse::<u64>().ok());
    let (attempts, refused, succeeded) = (
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    );
    if attempts == 0 {
        run.problems.push("no shrink was attempted".into());
    }
    if succeeded > 0 || refused != attempts {
        run.problems.push(format!(
            "{succeeded} of {attempts} shrink attempts succeeded ({shrink})"
        ));
    }
    if run.size_after != run.size_before {
        run.problems.push(format!(
            "the object's size changed from {} to {} bytes",
            run.size_before, run.size_after
        ));
    }
    if run.problems.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("  {}", run.problems.join("\n  ")))
    }
}

/// The closure of that boundary: sealed objects, whose owner (root on CI) holding a
/// descriptor tries every shrink and grow while it scribbles and readers and a writer run.
/// Every attempt fails with EPERM, no size changes, and nobody dies.
fn sealed_resize(seed: u64) -> Verdict {
    let secs = env_or("R4_SHRINK_DURATION", 3);
    let round = Duration::from_millis(env_or("R4_ROUND_MS", 2000));
    let rounds = (Duration::from_secs(secs).as_millis() / round.as_millis().max(1)).max(1);
    let mut run = run_with_chaos(seed, rounds as u32, round, Chaos::Sealed);
    let resize = run
        .chaos_lines
        .iter()
        .find_map(|l| l.strip_prefix("SHRINK "))
        .unwrap_or("0 0 0 0");
    let mut it = resize.split_whitespace().map(|w| w.parse::<u64>().ok());
    let (attempts, refused, succeeded, other) = (
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    );
    if attempts == 0 {
        run.problems.push("no resize was attempted".into());
    }
    if succeeded > 0 || refused != attempts || other > 0 {
        run.problems.push(format!(
            "{succeeded} of {attempts} resize attempts succeeded, {other} refused otherwise \
             than with EPERM ({resize})"
        ));
    }
    if run.size_after != run.size_before {
        run.problems.push(format!(
            "the object's size changed from {} to {} bytes",
            run.size_before, run.size_after
        ));
    }
    if run.problems.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("  {}", run.problems.join("\n  ")))
    }
}

/// Shrinks a live object as its owner: shows which children die by SIGBUS (the documented
/// trust boundary), and checks that a fresh attach refuses the short object.
fn same_uid_shrink(seed: u64) -> Verdict {
    let domain = Domain::new("r4-shrink");
    let creator = Replica::create(&domain.0, OBJECT, &attrs(), &CreateOptions::default())
        .expect("create the replica");
    populate(&creator, &layout());
    drop(creator);
    let path = domain.0.join(OBJECT);
    let vars = |seed: u64| {
        vec![
            ("CKPT_TEST_DIR", domain.0.display().to_string()),
            ("CKPT_TEST_SEED", seed.to_string()),
            ("CKPT_R4_OP_LIMIT_MS", "5000".to_owned()),
        ]
    };
    let mut kids = vec![
        Kid::spawn(child_command("reader", &vars(seed)), "reader 0"),
        Kid::spawn(child_command("reader", &vars(seed + 1)), "reader 1"),
        Kid::spawn(child_command("writer", &vars(seed + 2)), "writer"),
    ];
    for k in &mut kids {
        if let Err(e) = k.expect("R", Duration::from_secs(20)) {
            return Verdict::Fail(e);
        }
        k.send(&format!("attach {OBJECT}"));
        if let Err(e) = k.expect("A", Duration::from_secs(20)) {
            return Verdict::Fail(e);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let cut = size / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(cut))
        .expect("the owner can shrink its object");
    // Give the children time to touch the lost pages.
    std::thread::sleep(Duration::from_millis(1000));
    let mut sigbus = Vec::new();
    let mut other = Vec::new();
    for k in &mut kids {
        let (_, st) = k.stop(Duration::from_secs(10));
        match st {
            Some(st) if st.signal() == Some(libc::SIGBUS) => sigbus.push(k.who().to_owned()),
            Some(st) => other.push(format!("{} {}", k.who(), describe(st).1)),
            None => other.push(format!("{} did not stop", k.who())),
        }
    }
    // The cheap protection: attach compares the header's size with the file's.
    let attach = Replica::attach(&domain.0, OBJECT, Sharing::default()).err();
    let want = AttachError::SizeMismatch {
        header: size,
        object: cut,
    };
    if attach != Some(want) {
        return Verdict::Fail(format!(
            "  a fresh attach of the shrunk object gave {attach:?}, not {want:?}"
        ));
    }
    println!("  a fresh attach refuses the shrunk object: {want}");
    Verdict::KnownLimit(format!(
        "the owner shrank a live standalone object from {size} to {cut} bytes: {} of {} \
         processes mapping it died by SIGBUS ({}){}. Any process that can open the object \
         for writing (its uid, root) can do this; engine/DESIGN.md §23.1 \"Truncation and the \
         trust boundary\".",
        sigbus.len(),
        kids.len(),
        sigbus.join(", "),
        if other.is_empty() {
            String::new()
        } else {
            format!("; the others: {}", other.join(", "))
        }
    ))
}
