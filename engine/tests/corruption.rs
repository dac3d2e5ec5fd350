//! Hostile bytes in a live replica object (reliability scorecard R3/R4): random words are
//! written into the header, the section index, descriptors and their lease words, the
//! allocation hints, slot states, transaction chains (which can form cycles), journal cells
//! and agent records (op records, intents, pin entries pointing anywhere), through a second
//! mapping of the object file, as a buggy or hostile process on the node would. After each
//! corruption every public call runs on a worker thread under a watchdog and inside
//! `catch_unwind`: it must return an error or bytes inside the section bounds, in bounded
//! time, never panic, hang or die by a signal. Attach must refuse garbage, and the node
//! registry must survive random bytes too.
//!
//! Offsets come from the header image this file parses from the object itself ([`Image`],
//! a mirror of `HeaderImage` in engine/src/layout.rs), not from the engine.
//!
//! `SEED` replays a run; `CORRUPTION_CASES` sets the number of random cases (default 1000).
//! A fatal signal prints the case that was running before the process dies.

// The test pokes shared words from outside the engine, as another process would; the loom
// facade (engine/src/sync.rs) is engine-internal.
#![allow(clippy::disallowed_types)]

mod domain;

use domain::Domain;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::time::{Duration, Instant};

use ckpt_engine::{
    AttachError, Changes, CreateOptions, ReadElement, Registry, RegistryLimits, Replica,
    ReplicaAttributes, ReplicaLimits, Role, SectionError, SectionFilter, Sharing, TIME_END,
    WriteElement, wall_clock,
};

// ---- the layout, as this test reads it -----------------------------------------------

/// Mirror of `HeaderImage` (engine/src/layout.rs): the first 200 bytes of every replica.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Image {
    magic: [u8; 8],
    layout_version: u32,
    header_size: u32,
    total_size: u64,
    instance: u64,
    hash_seed: u64,
    created_ns: i64,
    creation_flags: u32,
    max_sections: u32,
    checkpoint_size: u64,
    retention_ns: i64,
    max_section_size: u64,
    max_section_id_size: u64,
    agent_capacity: u32,
    pin_words: u32,
    slot_count: u32,
    index_capacity: u32,
    journal_capacity: u32,
    id_stride: u32,
    slot_meta_stride: u32,
    checksum: u32,
    slot_stride: u64,
    off_agents: u64,
    off_descs: u64,
    off_ids: u64,
    off_index: u64,
    off_slot_meta: u64,
    off_slot_hint: u64,
    off_desc_hint: u64,
    off_journal: u64,
    off_slots: u64,
}

const _: () = assert!(size_of::<Image>() == 200);

macro_rules! fields {
    ($(($name:ident, $width:expr)),* $(,)?) => {
        &[$((stringify!($name), core::mem::offset_of!(Image, $name), $width)),*]
    };
}

/// Every header-image field: name, byte offset, width.
const FIELDS: &[(&str, usize, usize)] = fields![
    (magic, 8),
    (layout_version, 4),
    (header_size, 4),
    (total_size, 8),
    (instance, 8),
    (hash_seed, 8),
    (created_ns, 8),
    (creation_flags, 4),
    (max_sections, 4),
    (checkpoint_size, 8),
    (retention_ns, 8),
    (max_section_size, 8),
    (max_section_id_size, 8),
    (agent_capacity, 4),
    (pin_words, 4),
    (slot_count, 4),
    (index_capacity, 4),
    (journal_capacity, 4),
    (id_stride, 4),
    (slot_meta_stride, 4),
    (checksum, 4),
    (slot_stride, 8),
    (off_agents, 8),
    (off_descs, 8),
    (off_ids, 8),
    (off_index, 8),
    (off_slot_meta, 8),
    (off_slot_hint, 8),
    (off_desc_hint, 8),
    (off_journal, 8),
    (off_slots, 8),
];

/// Dynamic header words (layout.rs `hdr`).
const D: u64 = 1024;
const HDR_WORDS: &[(&str, u64)] = &[
    ("ROLE", D),
    ("TERM", D + 8),
    ("HEAD_SEQ", D + 64),
    ("ACKED_SEQ", D + 128),
    ("STORED_BYTES", D + 192),
    ("BUDGET_DIRTY", D + 200),
    ("STRUCT_LOCK", D + 256),
    ("INDEX_SEQ", D + 264),
    ("SECTION_COUNT", D + 272),
    ("TOMBSTONES", D + 280),
    ("GENERATED_IDS", D + 288),
    ("MULTI_OWNER", D + 320),
    ("MULTI_SEQ", D + 328),
    ("NOTIFY|WAITERS", D + 384),
];
const H_HEAD_SEQ: u64 = D + 64;
const H_STRUCT_LOCK: u64 = D + 256;
const H_INDEX_SEQ: u64 = D + 264;
const H_GENERATED_IDS: u64 = D + 288;
const H_MULTI_OWNER: u64 = D + 320;
const H_MULTI_SEQ: u64 = D + 328;

const AGENT_SIZE: u64 = 128;
const AGENT_WORDS: &[&str] = &[
    "STATE", "PID", "OP", "OP_DESC", "OP_SLOTS", "OP_DELTA", "INTENT", "WAITING", "PIN0", "PIN1",
    "PIN2", "PIN3", "PIN4", "PIN5", "PIN6", "pad",
];
const A_STATE: u64 = 0;
const A_OP: u64 = 16;
const A_OP_DESC: u64 = 24;
const A_OP_SLOTS: u64 = 32;
const A_OP_DELTA: u64 = 40;
const A_INTENT: u64 = 48;
const PINS_PER_AGENT: u64 = 7;

const DESC_SIZE: u64 = 64;
const DESC_WORDS: &[&str] = &[
    "CURRENT",
    "STATE",
    "LEASE",
    "EXPIRATION",
    "KEY",
    "pad5",
    "pad6",
    "pad7",
];
const DS_CURRENT: u64 = 0;
const DS_STATE: u64 = 8;
const DS_LEASE: u64 = 16;
const DS_KEY: u64 = 32;

const META_WORDS: &[&str] = &["STATE", "SIZE", "VERSION", "LAST_UPDATE", "TXN", "TXN_OLD"];
const M_STATE: u64 = 0;
const M_SIZE: u64 = 8;
const M_TXN: u64 = 32;
const M_TXN_OLD: u64 = 40;

const CELL_SIZE: u64 = 48;
const NONE: u64 = u32::MAX as u64;
const MAX_SEQ: u64 = (1 << 50) - 1;

// Encodings (layout.rs, replica.rs, journal.rs).
const KIND_OWNED: u64 = 1;
const KIND_LIVE: u64 = 2;
const AG_ALIVE: u64 = 1;
const OP_WRITE: u64 = 1;
const OP_TXN: u64 = 2;
const OP_CREATE: u64 = 3;
const OP_DELETE: u64 = 4;
const PH_PREPARED: u64 = 3;
const PH_COMMITTING: u64 = 5;

fn state_word(kind: u64, payload: u64) -> u64 {
    kind | (payload << 8)
}
fn owner_word(ix: u64, generation: u64) -> u64 {
    ((generation & 0xff_ffff) << 16) | ((ix + 1) & 0xffff)
}
fn agent_word(status: u64, generation: u64, token: u32) -> u64 {
    status | ((generation & 0xff_ffff) << 8) | (u64::from(token) << 32)
}
/// A token no process holds (its lock file does not exist): the record reads as dead.
const DEAD_TOKEN: u32 = 0x0dea_dbee;

/// A second, independent mapping of a replica object, with its parsed image.
struct Object {
    map: memmap2::MmapRaw,
    img: Image,
}

impl Object {
    fn open(path: &Path) -> Self {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open object");
        let map = memmap2::MmapRaw::map_raw(&file).expect("map object");
        assert!(map.len() >= size_of::<Image>());
        // SAFETY: the mapping holds at least 200 bytes; an unaligned read by value.
        let img = unsafe { core::ptr::read_unaligned(map.as_ptr().cast::<Image>()) };
        assert_eq!(
            img.total_size,
            map.len() as u64,
            "parsed image does not fit the file"
        );
        Self { map, img }
    }

    /// Maps the object again, keeping the image parsed before any corruption.
    fn reopen(path: &Path, img: Image) -> Self {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open object");
        let map = memmap2::MmapRaw::map_raw(&file).expect("map object");
        assert_eq!(img.total_size, map.len() as u64, "the object changed size");
        Self { map, img }
    }

    fn word(&self, off: u64) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= self.map.len() as u64,
            "test offset {off} out of range"
        );
        // SAFETY: in bounds and 8-aligned (page-aligned base); shared words are accessed
        // atomically by the engine too.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(off as usize).cast()) }
    }

    fn get(&self, off: u64) -> u64 {
        self.word(off).load(SeqCst)
    }

    fn set(&self, off: u64, v: u64) {
        self.word(off).store(v, SeqCst);
    }

    /// Writes a `u32` (index entries) by rewriting its half of the word.
    fn set32(&self, off: u64, v: u32) {
        let base = off & !7;
        let shift = (off & 7) * 8;
        let w = self.word(base);
        let old = w.load(SeqCst);
        w.store(
            (old & !(0xffff_ffff << shift)) | (u64::from(v) << shift),
            SeqCst,
        );
    }

    fn get32(&self, off: u64) -> u32 {
        (self.get(off & !7) >> ((off & 7) * 8)) as u32
    }

    fn agent(&self, ix: u64, w: u64) -> u64 {
        self.img.off_agents + ix * AGENT_SIZE + w
    }
    fn desc(&self, d: u64, w: u64) -> u64 {
        self.img.off_descs + d * DESC_SIZE + w
    }
    fn meta(&self, s: u64, w: u64) -> u64 {
        self.img.off_slot_meta + s * u64::from(self.img.slot_meta_stride) + w
    }
    fn index(&self, i: u64) -> u64 {
        self.img.off_index + 4 * i
    }
    fn cell(&self, c: u64, w: u64) -> u64 {
        self.img.off_journal + c * CELL_SIZE + 8 * w
    }
    fn hint_words(n: u64) -> u64 {
        let l0 = n.div_ceil(64);
        l0 + l0.div_ceil(64)
    }

    /// Index of the first ALIVE agent record (the creating thread's).
    fn alive_agent(&self) -> Option<(u64, u64)> {
        (0..u64::from(self.img.agent_capacity)).find_map(|ix| {
            let st = self.get(self.agent(ix, A_STATE));
            (st & 0xff == AG_ALIVE).then_some((ix, (st >> 8) & 0xff_ffff))
        })
    }

    /// Descriptor and current slot of every LIVE descriptor.
    fn live_descs(&self) -> Vec<(u64, u64)> {
        (0..u64::from(self.img.max_sections))
            .filter(|&d| self.get(self.desc(d, DS_STATE)) & 0xff == KIND_LIVE)
            .map(|d| (d, self.get(self.desc(d, DS_CURRENT)) & NONE))
            .collect()
    }
}

// ---- randomness ----------------------------------------------------------------------

/// splitmix64: small, seedable, good enough to pick corruptions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One of the values, chosen with `rng` (the values may draw from `rng` too).
macro_rules! one_of {
    ($rng:expr; $($v:expr),+ $(,)?) => {{
        let xs = [$($v),+];
        xs[$rng.below(xs.len() as u64) as usize]
    }};
}

fn seed() -> u64 {
    match std::env::var("SEED") {
        Ok(s) => s.parse().expect("SEED must be a u64"),
        Err(_) => wall_clock() as u64 ^ u64::from(std::process::id()),
    }
}

// ---- what a corruption writes --------------------------------------------------------

/// One shared word a corruption may hit.
#[derive(Clone, Copy, Debug)]
enum Word {
    /// A word of the 200-byte header image (only attach and fsck read it after attach).
    Image(u64),
    Hdr(usize),
    Agent(u64, u64),
    Desc(u64, u64),
    Id(u64, u64),
    Index(u64),
    Meta(u64, u64),
    SlotHint(u64),
    DescHint(u64),
    Cell(u64, u64),
    Data(u64),
}

impl Word {
    fn random(rng: &mut Rng, img: &Image) -> Self {
        let slots = u64::from(img.slot_count);
        let descs = u64::from(img.max_sections);
        let meta_words = u64::from(img.slot_meta_stride) / 8;
        match rng.below(100) {
            0..3 => Self::Image(rng.below(size_of::<Image>() as u64 / 8)),
            3..12 => Self::Hdr(rng.below(HDR_WORDS.len() as u64) as usize),
            12..32 => Self::Agent(rng.below(u64::from(img.agent_capacity)), rng.below(16)),
            32..47 => Self::Desc(rng.below(descs), rng.below(8)),
            47..50 => Self::Id(rng.below(descs), rng.below(u64::from(img.id_stride) / 8)),
            50..58 => Self::Index(rng.below(u64::from(img.index_capacity))),
            58..76 => Self::Meta(rng.below(slots), rng.below(meta_words)),
            76..80 => Self::SlotHint(rng.below(Object::hint_words(slots))),
            80..84 => Self::DescHint(rng.below(Object::hint_words(descs))),
            84..97 => Self::Cell(rng.below(u64::from(img.journal_capacity)), rng.below(6)),
            _ => Self::Data(rng.below(slots * img.slot_stride / 8)),
        }
    }

    fn offset(self, o: &Object) -> u64 {
        match self {
            Self::Image(w) => 8 * w,
            Self::Hdr(i) => HDR_WORDS[i].1,
            Self::Agent(ix, w) => o.agent(ix, 8 * w),
            Self::Desc(d, w) => o.desc(d, 8 * w),
            Self::Id(d, w) => o.img.off_ids + d * u64::from(o.img.id_stride) + 8 * w,
            Self::Index(i) => o.index(i),
            Self::Meta(s, w) => o.meta(s, 8 * w),
            Self::SlotHint(w) => o.img.off_slot_hint + 8 * w,
            Self::DescHint(w) => o.img.off_desc_hint + 8 * w,
            Self::Cell(c, w) => o.cell(c, w),
            Self::Data(w) => o.img.off_slots + 8 * w,
        }
    }

    /// The word's current value (index entries are `u32`).
    fn read(self, o: &Object) -> u64 {
        match self {
            Self::Index(_) => u64::from(o.get32(self.offset(o))),
            _ => o.get(self.offset(o)),
        }
    }

    fn name(self) -> String {
        match self {
            Self::Image(w) => {
                let (lo, hi) = (8 * w as usize, 8 * w as usize + 8);
                let names: Vec<&str> = FIELDS
                    .iter()
                    .filter(|f| f.1 < hi && lo < f.1 + f.2)
                    .map(|f| f.0)
                    .collect();
                format!("image.{}", names.join("+"))
            }
            Self::Hdr(i) => format!("hdr.{}", HDR_WORDS[i].0),
            Self::Agent(ix, w) => format!("agent[{ix}].{}", AGENT_WORDS[w as usize]),
            Self::Desc(d, w) => format!("desc[{d}].{}", DESC_WORDS[w as usize]),
            Self::Id(d, w) => format!("id[{d}].word{w}"),
            Self::Index(i) => format!("index[{i}]"),
            Self::Meta(s, w) => match META_WORDS.get(w as usize) {
                Some(n) => format!("meta[{s}].{n}"),
                None => format!("meta[{s}].PINS{}", w - 6),
            },
            Self::SlotHint(w) => format!("slot_hint[{w}]"),
            Self::DescHint(w) => format!("desc_hint[{w}]"),
            Self::Cell(c, w) => format!("cell[{c}].w{w}"),
            Self::Data(w) => format!("slot_data[{}]", 8 * w),
        }
    }
}

/// Values that mean something to the engine at `word`, plus plain noise.
fn value_for(rng: &mut Rng, img: &Image, word: Word, old: u64, head: u64) -> u64 {
    if rng.chance(20) {
        return rng.next();
    }
    if rng.chance(10) {
        return old ^ (1 << rng.below(64));
    }
    let slots = u64::from(img.slot_count);
    let descs = u64::from(img.max_sections);
    let agents = u64::from(img.agent_capacity);
    let cap = u64::from(img.journal_capacity);
    let slot = |rng: &mut Rng| match rng.below(6) {
        0 => slots,
        1 => NONE,
        2 => rng.next() & NONE,
        _ => rng.below(slots),
    };
    let desc = |rng: &mut Rng| match rng.below(5) {
        0 => descs,
        1 => NONE,
        2 => rng.next() & NONE,
        _ => rng.below(descs),
    };
    let generation = |rng: &mut Rng| one_of!(rng; 0, 1, 2, 3, NONE, rng.next() & NONE);
    let owner = |rng: &mut Rng| match rng.below(5) {
        0 => 0,
        1 => rng.next(),
        _ => owner_word(
            one_of!(rng; rng.below(agents), agents, 0xfffe),
            rng.below(4),
        ),
    };
    let state = |rng: &mut Rng| {
        let kind = one_of!(rng; 0, 1, 2, 3, 4, 0xff);
        let payload = match rng.below(3) {
            0 => desc(rng),
            1 => owner(rng),
            _ => rng.next() >> 8,
        };
        state_word(kind, payload)
    };
    let (next, prev, lap) = (
        head.wrapping_add(1),
        head.wrapping_sub(cap),
        head.wrapping_add(cap),
    );
    let seq = |rng: &mut Rng| {
        let any = rng.next() >> 14;
        one_of!(rng; 0, head, next, prev, lap, MAX_SEQ, MAX_SEQ + 1, u64::MAX, any)
    };
    match word {
        Word::Hdr(i) => match HDR_WORDS[i].0 {
            "ROLE" => one_of!(rng; 0, 1, 2, 3),
            "HEAD_SEQ" | "ACKED_SEQ" => seq(rng),
            "STRUCT_LOCK" | "MULTI_OWNER" => owner(rng),
            "INDEX_SEQ" | "MULTI_SEQ" => one_of!(rng; old.wrapping_add(1), old | 1, u64::MAX),
            "GENERATED_IDS" => one_of!(rng; u64::MAX, u64::MAX - 1, 0),
            _ => one_of!(rng; 0, 1, u64::MAX, u64::MAX / 2, rng.below(1 << 20)),
        },
        Word::Agent(_, w) => match w {
            0 => agent_word(
                one_of!(rng; 0, 1, 2, 3, 0xff),
                rng.below(4),
                one_of!(rng; 0, DEAD_TOKEN, rng.next() as u32),
            ),
            2 => one_of!(rng; 0, 1, 2, 3, 4, 5, 0xff) | (rng.below(7) << 8) | (rng.below(9) << 16),
            3 => desc(rng) | (generation(rng) << 32),
            4 => slot(rng) | (slot(rng) << 32),
            5 => one_of!(rng; 0, 1, u64::MAX, i64::MIN as u64, i64::MAX as u64, rng.below(4096)),
            6 => one_of!(rng; u64::MAX, (1 << 32) | slot(rng), (2 << 32) | desc(rng), 3 << 32),
            7 => one_of!(rng; 0, 1, u64::MAX),
            8..=14 => slot(rng) | (one_of!(rng; 0, 1, 2, NONE) << 32),
            _ => rng.next(),
        },
        Word::Desc(_, w) => match w {
            0 => slot(rng) | (generation(rng) << 32),
            1 => state(rng),
            2 => owner(rng),
            3 => one_of!(rng; TIME_END as u64, 0, u64::MAX, wall_clock() as u64, i64::MIN as u64),
            4 => {
                let id = img.max_section_id_size;
                let len = one_of!(rng; 0, 1, id, id + 1, 0xffff);
                (len << 48) | (if rng.chance(50) { old } else { rng.next() } & ((1 << 48) - 1))
            }
            _ => rng.next(),
        },
        Word::Index(_) => one_of!(rng; 0, NONE, desc(rng) + 1, rng.next() & NONE),
        Word::Meta(s, w) => match w {
            0 => state(rng),
            1 => {
                let max = img.max_section_size;
                one_of!(rng; 0, max, max + 1, u64::MAX, rng.next())
            }
            4 => one_of!(rng; s, slot(rng)) | (desc(rng) << 32),
            5 => slot(rng) | (generation(rng) << 32),
            _ if w >= 6 => one_of!(rng; 0, u64::MAX, 1 << rng.below(64)),
            _ => one_of!(rng; 0, u64::MAX, rng.next()),
        },
        Word::SlotHint(_) | Word::DescHint(_) => one_of!(rng; 0, u64::MAX, rng.next()),
        Word::Cell(_, w) => match w {
            0 => (seq(rng) << 14) | (rng.below(4) << 12) | one_of!(rng; rng.below(agents), 0xfff),
            1 => desc(rng) | (generation(rng) << 32),
            4 => one_of!(rng; 0, 1, 2, 3, 4, 5, 15, rng.below(256)) | (slot(rng) << 32),
            _ => one_of!(rng; 0, u64::MAX, img.max_section_size, rng.next()),
        },
        Word::Image(_) => {
            one_of!(rng; 0, 1, old.wrapping_add(1), old ^ (1 << rng.below(64)), u64::MAX)
        }
        Word::Id(..) | Word::Data(_) => rng.next(),
    }
}

/// Applies one write and records it.
fn poke(o: &Object, word: Word, v: u64, log: &mut Vec<String>) {
    let off = word.offset(o);
    if let Word::Index(_) = word {
        let old = o.get32(off);
        o.set32(off, v as u32);
        log.push(format!("{} = {:#x} (was {old:#x})", word.name(), v as u32));
    } else {
        let old = o.get(off);
        o.set(off, v);
        log.push(format!("{} = {v:#x} (was {old:#x})", word.name()));
    }
}

/// Scribbles on `o`: one to four corruptions of these shapes, most of them single words.
fn corrupt_randomly(rng: &mut Rng, o: &Object) -> Vec<String> {
    let img = o.img;
    let head = o.get(H_HEAD_SEQ);
    let mut log = Vec::new();
    for _ in 0..1 + rng.below(4) {
        match rng.below(10) {
            // A record that reads as a dead agent, with garbage in its op record, intent
            // and pins: recovery will act on it.
            0 | 1 => {
                let ix = rng.below(u64::from(img.agent_capacity));
                let st = agent_word(one_of!(rng; 1, 2), rng.below(3), DEAD_TOKEN);
                poke(o, Word::Agent(ix, 0), st, &mut log);
                for _ in 0..1 + rng.below(6) {
                    let w = Word::Agent(ix, 1 + rng.below(14));
                    let v = value_for(rng, &img, w, w.read(o), head);
                    poke(o, w, v, &mut log);
                }
            }
            // A whole region overwritten (a storm over a free structure).
            2 => {
                let words: Vec<Word> = match rng.below(7) {
                    0 => (0..u64::from(img.slot_count))
                        .map(|s| Word::Meta(s, 0))
                        .collect(),
                    1 => (0..u64::from(img.slot_count))
                        .map(|s| Word::Meta(s, 4))
                        .collect(),
                    2 => (0..Object::hint_words(u64::from(img.slot_count)))
                        .map(Word::SlotHint)
                        .collect(),
                    3 => (0..u64::from(img.journal_capacity))
                        .map(|c| Word::Cell(c, 0))
                        .collect(),
                    4 => (0..u64::from(img.index_capacity))
                        .map(Word::Index)
                        .collect(),
                    5 => (0..u64::from(img.max_sections))
                        .map(|d| Word::Desc(d, 2))
                        .collect(),
                    _ => (0..u64::from(img.max_sections))
                        .map(|d| Word::Desc(d, 1))
                        .collect(),
                };
                let mut sub = Vec::new();
                for w in &words {
                    let v = value_for(rng, &img, *w, w.read(o), head);
                    poke(o, *w, v, &mut sub);
                }
                log.push(format!(
                    "storm over {} words: {}",
                    sub.len(),
                    sub.join("; ")
                ));
            }
            // A transaction chain of a dead agent that cycles through slot metadata.
            3 => log.extend(plant_txn_cycle(rng, o)),
            _ => {
                let w = Word::random(rng, &img);
                let v = value_for(rng, &img, w, w.read(o), head);
                poke(o, w, v, &mut log);
            }
        }
    }
    log
}

/// A dead agent in the middle of a multi-section write whose chain (meta TXN words) is a
/// cycle of random length, possibly a self-loop.
fn plant_txn_cycle(rng: &mut Rng, o: &Object) -> Vec<String> {
    let img = o.img;
    let slots = u64::from(img.slot_count);
    let mut log = Vec::new();
    let ix = rng.below(u64::from(img.agent_capacity));
    let len = 1 + rng.below(slots);
    let start = rng.below(slots);
    let chain: Vec<u64> = (0..len).map(|k| (start + k * 7) % slots).collect();
    let live = o.live_descs();
    for (k, &s) in chain.iter().enumerate() {
        let next = chain[(k + 1) % chain.len()];
        let (d, old) = if live.is_empty() {
            (0, NONE)
        } else {
            live[k % live.len()]
        };
        let generation = o.get(o.desc(d, DS_CURRENT)) >> 32;
        poke(o, Word::Meta(s, 4), next | (d << 32), &mut log);
        poke(o, Word::Meta(s, 5), old | (generation << 32), &mut log);
        if rng.chance(50) {
            poke(o, Word::Meta(s, 0), state_word(KIND_LIVE, d), &mut log);
        }
    }
    let phase = one_of!(rng; 0, PH_PREPARED, PH_COMMITTING);
    poke(
        o,
        Word::Agent(ix, 2),
        OP_TXN | (phase << 8) | (1 << 16),
        &mut log,
    );
    poke(o, Word::Agent(ix, 4), chain[0], &mut log);
    poke(
        o,
        Word::Agent(ix, 0),
        agent_word(AG_ALIVE, 0, DEAD_TOKEN),
        &mut log,
    );
    log
}

// ---- running calls under a watchdog --------------------------------------------------

/// How long one public call may take before it counts as a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

enum Msg {
    Step(&'static str),
    Done(Option<String>),
}

/// Handed to the worker: announces each call so the watchdog can name a hang or a panic.
struct Probe {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    err: AtomicU64,
    bytes_read: AtomicU64,
    /// The slowest call seen, for the report.
    slowest: Mutex<(Duration, String)>,
}

impl Probe {
    fn step(&self, name: &'static str) {
        let _ = self.tx.send(Msg::Step(name));
    }
    fn tally<T, E>(&self, r: &Result<T, E>) {
        match r {
            Ok(_) => self.stats.ok.fetch_add(1, Relaxed),
            Err(_) => self.stats.err.fetch_add(1, Relaxed),
        };
    }
}

/// Fails the test, naming the case and the call, when a result breaks a bound or a rule.
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            panic!("check failed: {}", format_args!($($arg)*));
        }
    };
}

fn panic_text(p: &(dyn core::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Runs `f` on a fresh thread; fails with `case` and the call in progress when a call
/// panics or does not return within [`CALL_TIMEOUT`].
fn guarded(case: &str, stats: &Arc<Stats>, f: impl FnOnce(&Probe) + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let probe = Probe {
        tx: tx.clone(),
        stats: stats.clone(),
    };
    std::thread::Builder::new()
        .name("corruption-worker".into())
        .spawn(move || {
            let out = catch_unwind(AssertUnwindSafe(|| f(&probe)));
            let _ = tx.send(Msg::Done(out.err().map(|p| panic_text(&*p))));
        })
        .expect("spawn worker");
    let mut step = "start";
    let mut since = Instant::now();
    loop {
        let msg = rx.recv_timeout(CALL_TIMEOUT);
        let took = since.elapsed();
        {
            let mut slowest = stats.slowest.lock().unwrap();
            if took > slowest.0 {
                *slowest = (took, step.to_owned());
            }
        }
        since = Instant::now();
        match msg {
            Ok(Msg::Step(s)) => step = s,
            Ok(Msg::Done(None)) => return,
            Ok(Msg::Done(Some(text))) => panic!("{case}\n  => panicked in `{step}`: {text}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{case}\n  => `{step}` did not return within {CALL_TIMEOUT:?} (hang)")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{case}\n  => the worker vanished during `{step}`")
            }
        }
    }
}

// A fatal signal (SIGBUS, SIGSEGV, or SIGABRT from a non-unwinding panic such as a failed
// `unsafe` precondition) kills the process before any test output is shown: the handler
// writes the running cases to stderr first, then lets the signal take its course.

const NOTE_SLOTS: usize = 4;
const NOTE_LEN: usize = 1024;
static NOTES: [[AtomicU8; NOTE_LEN]; NOTE_SLOTS] =
    [const { [const { AtomicU8::new(0) }; NOTE_LEN] }; NOTE_SLOTS];
static NOTE_LENS: [AtomicUsize; NOTE_SLOTS] = [const { AtomicUsize::new(0) }; NOTE_SLOTS];
static NOTE_BUSY: [AtomicBool; NOTE_SLOTS] = [const { AtomicBool::new(false) }; NOTE_SLOTS];
static HANDLER: Once = Once::new();

extern "C" fn on_fatal_signal(sig: libc::c_int) {
    let head = b"\n*** corruption.rs: fatal signal while running:\n";
    // SAFETY: write(2) and signal(2) are async-signal-safe; buffers are live statics/stack.
    unsafe {
        libc::write(2, head.as_ptr().cast(), head.len());
        for (slot, len) in NOTES.iter().zip(&NOTE_LENS) {
            let n = len.load(Relaxed).min(NOTE_LEN);
            let mut buf = [0u8; NOTE_LEN + 1];
            for (b, a) in buf.iter_mut().zip(slot.iter()).take(n) {
                *b = a.load(Relaxed);
            }
            buf[n] = b'\n';
            if n > 0 {
                libc::write(2, buf.as_ptr().cast(), n + 1);
            }
        }
        // Returning re-executes the faulting access, which now takes the default action.
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Where a test notes the case it runs, for the fatal-signal handler.
struct CaseNote(usize);

impl CaseNote {
    fn claim() -> Self {
        HANDLER.call_once(|| {
            for sig in [libc::SIGBUS, libc::SIGSEGV, libc::SIGABRT] {
                // SAFETY: installs a handler that only does async-signal-safe work.
                unsafe {
                    libc::signal(
                        sig,
                        on_fatal_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    );
                }
            }
        });
        loop {
            for (i, busy) in NOTE_BUSY.iter().enumerate() {
                if busy.compare_exchange(false, true, AcqRel, Relaxed).is_ok() {
                    return Self(i);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn set(&self, text: &str) {
        let b = text.as_bytes();
        let n = b.len().min(NOTE_LEN);
        NOTE_LENS[self.0].store(0, Relaxed);
        for (a, &x) in NOTES[self.0].iter().zip(&b[..n]) {
            a.store(x, Relaxed);
        }
        NOTE_LENS[self.0].store(n, Release);
    }
}

impl Drop for CaseNote {
    fn drop(&mut self) {
        NOTE_LENS[self.0].store(0, Relaxed);
        NOTE_BUSY[self.0].store(false, Release);
    }
}

// ---- replicas under test -------------------------------------------------------------

const MAX_SECTION: u64 = 256;
const MAX_ID: u64 = 13;
const IDS: &[&[u8]] = &[
    b"s0",
    b"s1",
    b"s2",
    b"s3",
    b"s4",
    b"s5",
    b"gone",
    b"never",
    b"0123456789abc",
];

fn attrs() -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 1500,
        retention_ns: 0,
        max_sections: 8,
        max_section_size: MAX_SECTION,
        max_section_id_size: MAX_ID,
    }
}

fn limits() -> ReplicaLimits {
    ReplicaLimits {
        agents: 64,
        spare_slots: 8,
        journal_cells: 64,
    }
}

/// A replica with sections, a deleted one (a tombstone), journal history, an expiration,
/// a multi-section write and a retired slot kept by a leaked pin.
fn populated(domain: &Path, name: &str) -> Replica {
    let opts = CreateOptions {
        limits: limits(),
        ..CreateOptions::default()
    };
    let r = Replica::create(domain, name, &attrs(), &opts).expect("create replica");
    for (i, id) in IDS[..6].iter().enumerate() {
        r.create_section(Some(id), TIME_END, &vec![i as u8 + 1; 20 + 10 * i])
            .unwrap();
    }
    r.create_section(Some(b"gone"), TIME_END, b"x").unwrap();
    r.delete_section(b"gone").unwrap();
    r.overwrite(b"s0", b"overwritten").unwrap();
    r.write(&[WriteElement {
        id: b"s1",
        offset: 40,
        data: b"tail",
    }])
    .unwrap();
    r.write(&[
        WriteElement {
            id: b"s2",
            offset: 0,
            data: b"A",
        },
        WriteElement {
            id: b"s3",
            offset: 3,
            data: b"B",
        },
    ])
    .unwrap();
    r.set_expiration(b"s4", wall_clock() + 3_600_000_000_000)
        .unwrap();
    let guard = r.borrow(b"s5").unwrap();
    r.overwrite(b"s5", b"new value").unwrap();
    // The old version of s5 stays RETIRED and pinned by this thread's agent record.
    std::mem::forget(guard);
    r
}

/// Every public call on `r`, checking that whatever comes back lies inside the bounds.
fn sweep(r: &Replica, p: &Probe) {
    let a = r.attributes();
    let max = a.max_section_size;
    p.step("status");
    let _ = r.status();
    p.step("role/commit_seq/acked_seq");
    let _ = (r.role(), r.commit_seq(), r.acked_seq());
    for id in IDS {
        let mut buf = [0u8; 300];
        p.step("read");
        let got = r.read(id, 0, &mut buf);
        p.tally(&got);
        if let Ok(n) = got {
            check!(
                n <= buf.len() && n as u64 <= max,
                "read gave {n} bytes, max {max}"
            );
            p.stats.bytes_read.fetch_add(n as u64, Relaxed);
        }
        p.step("read at an offset");
        if let Ok(n) = r.read(id, 7, &mut buf[..5]) {
            check!(n <= 5, "read at offset gave {n} bytes into 5");
        }
        p.step("read far past the end");
        let _ = r.read(id, u64::MAX, &mut buf);
        p.step("borrow");
        let got = r.borrow(id);
        p.tally(&got);
        if let Ok(g) = got {
            check!(
                g.len() as u64 <= max,
                "borrow gave {} bytes, max {max}",
                g.len()
            );
            // Touch every byte: an out-of-range view would fault here.
            std::hint::black_box(g.iter().fold(0u8, |x, y| x ^ y));
        }
        p.step("read_to_vec");
        if let Ok(v) = r.read_to_vec(id) {
            check!(
                v.len() as u64 <= max,
                "read_to_vec gave {} bytes, max {max}",
                v.len()
            );
        }
        p.step("section_info");
        let _ = r.section_info(id);
        p.step("contains");
        let _ = r.contains(id);
    }
    p.step("read_many");
    let (mut x, mut y) = ([0u8; 64], [0u8; 300]);
    let mut elems = [
        ReadElement {
            id: b"s2",
            offset: 0,
            buf: &mut x,
            read: 0,
        },
        ReadElement {
            id: b"s3",
            offset: 1,
            buf: &mut y,
            read: 0,
        },
    ];
    if r.read_many(&mut elems).is_ok() {
        check!(
            elems[0].read <= 64 && elems[1].read <= 300,
            "read_many overran its buffers"
        );
    }
    for filter in [
        SectionFilter::Any,
        SectionFilter::Forever,
        SectionFilter::ExpiringAtOrBefore(i64::MAX),
        SectionFilter::ExpiringAtOrAfter(0),
        SectionFilter::Corrupted,
    ] {
        p.step("sections");
        let n = r.sections(filter).count();
        check!(
            n <= a.max_sections as usize,
            "sections() returned {n} sections"
        );
    }
    p.step("changes_since");
    let mut out = Vec::new();
    let _ = r.changes_since(0, &mut out, 1000);
    check!(
        out.len() <= 1000,
        "changes_since returned {} changes for max 1000",
        out.len()
    );
    p.step("changes_since near the head");
    let head = r.commit_seq();
    let _ = r.changes_since(head.saturating_sub(5), &mut out, 3);
    let _ = r.changes_since(u64::MAX - 1, &mut out, 3);
    p.step("wait_for_changes");
    let _ = r.wait_for_changes(u64::MAX, Duration::from_millis(1));

    p.step("overwrite");
    p.tally(&r.overwrite(b"s0", b"rewritten after corruption"));
    p.step("write");
    p.tally(&r.write(&[WriteElement {
        id: b"s1",
        offset: 100,
        data: b"more",
    }]));
    p.step("write to two sections");
    p.tally(&r.write(&[
        WriteElement {
            id: b"s3",
            offset: 0,
            data: b"T1",
        },
        WriteElement {
            id: b"s2",
            offset: 10,
            data: b"T2",
        },
    ]));
    p.step("create_section");
    p.tally(&r.create_section(Some(b"fresh"), TIME_END, b"fresh data"));
    p.step("create_section with a generated id");
    p.tally(&r.create_section(None, TIME_END, b"generated"));
    p.step("set_expiration");
    p.tally(&r.set_expiration(b"s3", wall_clock() - 1));
    p.step("delete_section");
    p.tally(&r.delete_section(b"s4"));
    p.step("reap_expired");
    let _ = r.reap_expired(wall_clock());
    p.step("set_role/set_acked_seq");
    r.set_role(Role::Primary, 7);
    r.set_acked_seq(r.commit_seq());
    p.step("overwrite as primary");
    p.tally(&r.overwrite(b"s1", &[7u8; MAX_SECTION as usize]));
    p.step("agents");
    let _ = r.agents();
    p.step("fsck");
    let _ = r.fsck();
    p.step("recover_dead_agents");
    let _ = r.recover_dead_agents();
    p.step("read after writes");
    let mut buf = [0u8; 300];
    if let Ok(n) = r.read(b"s1", 0, &mut buf) {
        check!(n as u64 <= max, "read gave {n} bytes, max {max}");
    }
}

/// A second `Replica` attaching the same object must refuse it or work like the first.
fn attach_and_sweep(domain: &Path, name: &str, p: &Probe) {
    p.step("attach from another Replica");
    let got = Replica::attach(domain, name, Sharing::default());
    p.tally(&got);
    if let Ok(other) = got {
        p.step("status (attached)");
        let _ = other.status();
        p.step("borrow (attached)");
        if let Ok(g) = other.borrow(b"s2") {
            check!(
                g.len() as u64 <= MAX_SECTION,
                "borrow gave {} bytes",
                g.len()
            );
            std::hint::black_box(g.iter().fold(0u8, |x, y| x ^ y));
        }
        p.step("sections (attached)");
        let _ = other.sections(SectionFilter::Any).count();
        p.step("overwrite (attached)");
        let _ = other.overwrite(b"s2", b"from the second attach");
        p.step("fsck (attached)");
        let _ = other.fsck();
        p.step("drop (attached)");
        drop(other);
    }
}

/// Creates and populates a replica, lets `scribble` corrupt it through a second mapping,
/// Creates and populates a replica, then `rounds` times lets `scribble` corrupt it through
/// a second mapping and runs every call on it (and on a second attach) under the watchdog:
/// later rounds start from whatever the engine made of the earlier damage.
fn corrupt_and_sweep(
    domain: &Path,
    name: &str,
    label: &str,
    rounds: u32,
    note: &CaseNote,
    stats: &Arc<Stats>,
    mut scribble: impl FnMut(&Object) -> Vec<String>,
) {
    let r = Arc::new(populated(domain, name));
    let img = Object::open(&domain.join(name)).img;
    let mut history = Vec::new();
    for round in 0..rounds {
        let obj = Object::reopen(&domain.join(name), img);
        history.push(format!("round {round}: {}", scribble(&obj).join("; ")));
        drop(obj);
        let case = format!("{label}: {}", history.join(" | "));
        note.set(&case);
        let (dir, n, r) = (domain.to_path_buf(), name.to_owned(), r.clone());
        let last = round + 1 == rounds;
        guarded(&case, stats, move |p| {
            sweep(&r, p);
            attach_and_sweep(&dir, &n, p);
            if last {
                p.step("drop");
                drop(r);
            }
        });
    }
    let _ = Replica::remove(domain, name);
}

// ---- random corruption of live objects -------------------------------------------------

#[test]
fn random_words_anywhere_in_a_live_object_give_errors_or_in_bounds_bytes() {
    let domain = Domain::new("corruption-random");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let seed = seed();
    let cases: u64 = std::env::var("CORRUPTION_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    println!("seed {seed} (SEED={seed} replays), {cases} cases");
    let mut rng = Rng(seed);
    let started = Instant::now();
    for case in 0..cases {
        let name = format!("r{case}");
        let label = format!("SEED={seed} case {case}");
        let rounds = 1 + rng.below(3) as u32;
        corrupt_and_sweep(&domain.0, &name, &label, rounds, &note, &stats, |o| {
            corrupt_randomly(&mut rng, o)
        });
    }
    let slowest = stats.slowest.lock().unwrap().clone();
    println!(
        "{cases} cases in {:?}: {} calls ok, {} refused, {} bytes read; slowest call {:?} ({})",
        started.elapsed(),
        stats.ok.load(Relaxed),
        stats.err.load(Relaxed),
        stats.bytes_read.load(Relaxed),
        slowest.0,
        slowest.1,
    );
    // Not vacuous: corrupted replicas still serve most calls, and some are refused.
    assert!(
        stats.ok.load(Relaxed) > cases * 10,
        "too few calls succeeded to mean anything"
    );
    assert!(stats.err.load(Relaxed) > 0, "no call was ever refused");
}

// ---- targeted corruptions of the free structures -------------------------------------

#[test]
fn transaction_chains_that_cycle_through_slot_metadata_are_recovered_in_bounded_time() {
    let domain = Domain::new("corruption-txn-cycle");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    for (k, (len, phase)) in [
        (1, PH_COMMITTING),
        (1, PH_PREPARED),
        (2, PH_COMMITTING),
        (5, 0),
        (16, PH_COMMITTING),
        (16, PH_PREPARED),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("c{k}");
        let label = format!("txn cycle of {len} slots in phase {phase}");
        let r = populated(&domain.0, &name);
        let o = Object::open(&domain.0.join(&name));
        let slots = u64::from(o.img.slot_count);
        let live = o.live_descs();
        let ix = 40;
        for i in 0..len {
            let s = i % slots;
            let (d, old) = live[i as usize % live.len()];
            let generation = o.get(o.desc(d, DS_CURRENT)) >> 32;
            o.set(o.meta(s, M_TXN), ((i + 1) % len) | (d << 32));
            o.set(o.meta(s, M_TXN_OLD), old | (generation << 32));
            o.set(o.meta(s, M_STATE), state_word(KIND_LIVE, d));
        }
        o.set(o.agent(ix, A_OP), OP_TXN | (phase << 8) | (1 << 16));
        o.set(o.agent(ix, A_OP_SLOTS), 0);
        o.set(o.agent(ix, A_STATE), agent_word(AG_ALIVE, 0, DEAD_TOKEN));
        drop(o);
        note.set(&label);
        let (dir, n) = (domain.0.clone(), name.clone());
        guarded(&label, &stats, move |p| {
            p.step("recover_dead_agents");
            let recovered = r.recover_dead_agents();
            check!(
                recovered >= 1,
                "the dead agent in the cycle was not recovered"
            );
            check!(
                r.agents().iter().all(|a| a.index != ix as u32),
                "agent {ix} still listed after recovery"
            );
            sweep(&r, p);
            attach_and_sweep(&dir, &n, p);
            p.step("drop");
            drop(r);
        });
        let _ = Replica::remove(&domain.0, &name);
    }
}

#[test]
fn dead_agents_with_pins_intents_and_op_records_pointing_anywhere_are_recovered() {
    let domain = Domain::new("corruption-dead-agents");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let mut rng = Rng(seed());
    for case in 0..24u64 {
        let name = format!("d{case}");
        let r = populated(&domain.0, &name);
        let o = Object::open(&domain.0.join(&name));
        let img = o.img;
        let mut log = Vec::new();
        let mut planted = Vec::new();
        for k in 0..4 {
            let ix = 20 + k * 9 + case % 5;
            planted.push(ix as u32);
            let n = u64::from(img.slot_count);
            let pick_slot = |rng: &mut Rng| one_of!(rng; 0, 1, n - 1, n, NONE, rng.next() & NONE);
            for e in 0..PINS_PER_AGENT {
                let v = pick_slot(&mut rng) | (one_of!(rng; 0, 1, 2, NONE) << 32);
                poke(&o, Word::Agent(ix, 8 + e), v, &mut log);
            }
            let claimed_desc = (2 << 32) | one_of!(rng; 0, 7, 8, NONE);
            let intent =
                one_of!(rng; (1 << 32) | pick_slot(&mut rng), claimed_desc, 3 << 32, u64::MAX);
            poke(&o, Word::Agent(ix, A_INTENT / 8), intent, &mut log);
            let op = one_of!(rng; OP_WRITE, OP_TXN, OP_CREATE, OP_DELETE, 9) | (rng.below(7) << 8);
            poke(&o, Word::Agent(ix, A_OP / 8), op, &mut log);
            let d = one_of!(rng; 0, 3, 7, 8, NONE);
            poke(
                &o,
                Word::Agent(ix, A_OP_DESC / 8),
                d | (rng.below(3) << 32),
                &mut log,
            );
            let slots = pick_slot(&mut rng) | (pick_slot(&mut rng) << 32);
            poke(&o, Word::Agent(ix, A_OP_SLOTS / 8), slots, &mut log);
            let delta = one_of!(rng; 0, 5, u64::MAX, i64::MIN as u64, i64::MAX as u64);
            poke(&o, Word::Agent(ix, A_OP_DELTA / 8), delta, &mut log);
            // Sometimes the same owner also holds descriptors, slots and locks.
            let owner = owner_word(ix, 1);
            if rng.chance(50) {
                poke(&o, Word::Desc(rng.below(8), DS_LEASE / 8), owner, &mut log);
                poke(
                    &o,
                    Word::Meta(rng.below(u64::from(img.slot_count)), 0),
                    state_word(KIND_OWNED, owner),
                    &mut log,
                );
                poke(
                    &o,
                    Word::Desc(rng.below(8), DS_STATE / 8),
                    state_word(KIND_OWNED, owner),
                    &mut log,
                );
            }
            if rng.chance(30) {
                poke(&o, Word::Hdr(6), owner, &mut log);
                poke(&o, Word::Hdr(7), o.get(H_INDEX_SEQ) | 1, &mut log);
            }
            if rng.chance(30) {
                poke(&o, Word::Hdr(11), owner, &mut log);
                poke(&o, Word::Hdr(12), o.get(H_MULTI_SEQ) | 1, &mut log);
            }
            poke(
                &o,
                Word::Agent(ix, 0),
                agent_word(one_of!(rng; 1, 2), 1, DEAD_TOKEN),
                &mut log,
            );
        }
        drop(o);
        let label = format!("dead agents {planted:?}: {}", log.join("; "));
        note.set(&label);
        let (dir, n) = (domain.0.clone(), name.clone());
        guarded(&label, &stats, move |p| {
            p.step("recover_dead_agents");
            let _ = r.recover_dead_agents();
            p.step("agents");
            let left: Vec<u32> = r
                .agents()
                .iter()
                .map(|a| a.index)
                .filter(|i| planted.contains(i))
                .collect();
            check!(left.is_empty(), "dead agents {left:?} survived recovery");
            sweep(&r, p);
            attach_and_sweep(&dir, &n, p);
            p.step("drop");
            drop(r);
        });
        let _ = Replica::remove(&domain.0, &name);
    }
}

#[test]
fn allocation_hints_all_clear_refuse_writes_and_all_set_still_allocate() {
    let domain = Domain::new("corruption-hints");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    for (k, fill) in [0u64, u64::MAX].into_iter().enumerate() {
        let name = format!("h{k}");
        let r = populated(&domain.0, &name);
        let o = Object::open(&domain.0.join(&name));
        for w in 0..Object::hint_words(u64::from(o.img.slot_count)) {
            o.set(o.img.off_slot_hint + 8 * w, fill);
        }
        for w in 0..Object::hint_words(u64::from(o.img.max_sections)) {
            o.set(o.img.off_desc_hint + 8 * w, fill);
        }
        drop(o);
        let label = format!("every hint word = {fill:#x}");
        note.set(&label);
        let (dir, n) = (domain.0.clone(), name.clone());
        guarded(&label, &stats, move |p| {
            p.step("overwrite");
            let got = r.overwrite(b"s0", b"after the hint scribble");
            if fill == 0 {
                // Free slots are invisible: a refusal, never a hang.
                check!(
                    got == Err(SectionError::TryAgain),
                    "overwrite with no hint bits: {got:?}"
                );
                p.step("create_section");
                let got = r.create_section(Some(b"new"), TIME_END, b"");
                check!(
                    got == Err(SectionError::NoSpace),
                    "create with no hint bits: {got:?}"
                );
            } else {
                check!(got.is_ok(), "overwrite with every hint bit set: {got:?}");
                p.step("create_section");
                let got = r.create_section(Some(b"new"), TIME_END, b"x");
                check!(got.is_ok(), "create with every hint bit set: {got:?}");
            }
            sweep(&r, p);
            attach_and_sweep(&dir, &n, p);
            p.step("drop");
            drop(r);
        });
        let _ = Replica::remove(&domain.0, &name);
    }
}

#[test]
fn slot_states_owned_by_agents_that_do_not_exist_give_try_again_not_a_hang() {
    let domain = Domain::new("corruption-owned-slots");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let r = populated(&domain.0, "o");
    let o = Object::open(&domain.0.join("o"));
    let live: Vec<u64> = o.live_descs().iter().map(|x| x.1).collect();
    for s in 0..u64::from(o.img.slot_count) {
        if !live.contains(&s) {
            o.set(
                o.meta(s, M_STATE),
                state_word(KIND_OWNED, owner_word(50, 7)),
            );
        }
    }
    drop(o);
    let label = "every non-current slot OWNED by agent 50 generation 7 (a FREE record)";
    note.set(label);
    let dir = domain.0.clone();
    guarded(label, &stats, move |p| {
        p.step("overwrite");
        let got = r.overwrite(b"s0", b"x");
        check!(
            got == Err(SectionError::TryAgain),
            "overwrite with no free slot: {got:?}"
        );
        p.step("read");
        let got = r.read_to_vec(b"s2");
        check!(got.is_ok(), "reads do not need a free slot: {got:?}");
        sweep(&r, p);
        attach_and_sweep(&dir, "o", p);
        p.step("drop");
        drop(r);
    });
}

#[test]
fn journal_cells_and_head_with_impossible_seqs_give_errors_not_panics() {
    let domain = Domain::new("corruption-journal");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let heads = [u64::MAX, u64::MAX - 1, MAX_SEQ, MAX_SEQ + 1, 0, 1];
    for (k, head) in heads.into_iter().enumerate() {
        for cells in 0..3u64 {
            let name = format!("j{k}-{cells}");
            let r = populated(&domain.0, &name);
            let o = Object::open(&domain.0.join(&name));
            let cap = u64::from(o.img.journal_capacity);
            o.set(H_HEAD_SEQ, head);
            for c in 0..cap {
                let w0 = match cells {
                    0 => continue,
                    // Every cell WRITING by a live agent (the creator) a ring ahead.
                    1 => {
                        ((head.wrapping_add(c) & MAX_SEQ) << 14)
                            | (1 << 12)
                            | o.alive_agent().unwrap().0
                    }
                    // Every cell DONE with a seq far beyond the head.
                    _ => ((MAX_SEQ - c) << 14) | (2 << 12),
                };
                o.set(o.cell(c, 0), w0);
            }
            drop(o);
            let label = format!("HEAD_SEQ = {head:#x}, cell pattern {cells}");
            note.set(&label);
            let (dir, n) = (domain.0.clone(), name.clone());
            guarded(&label, &stats, move |p| {
                sweep(&r, p);
                attach_and_sweep(&dir, &n, p);
                p.step("drop");
                drop(r);
            });
            let _ = Replica::remove(&domain.0, &name);
        }
    }
}

#[test]
fn generated_id_counter_at_its_maximum_gives_an_id_or_an_error() {
    let domain = Domain::new("corruption-genid");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let r = populated(&domain.0, "g");
    let o = Object::open(&domain.0.join("g"));
    o.set(H_GENERATED_IDS, u64::MAX);
    drop(o);
    let label = "GENERATED_IDS = u64::MAX";
    note.set(label);
    guarded(label, &stats, move |p| {
        p.step("create_section with a generated id");
        let got = r.create_section(None, TIME_END, b"x");
        if let Ok(id) = &got {
            check!(
                !id.is_empty() && id.len() as u64 <= MAX_ID,
                "generated id {id:?}"
            );
        }
        p.step("drop");
        drop(r);
    });
}

#[test]
fn index_full_of_garbage_is_rebuilt_and_sections_created_then_are_reachable() {
    let domain = Domain::new("corruption-index");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let r = populated(&domain.0, "i");
    let o = Object::open(&domain.0.join("i"));
    // No EMPTY or tombstone entry left: every entry names the first live descriptor, so
    // only its own section still matches and any insert finds the index full.
    let (first, _) = o.live_descs()[0];
    for i in 0..u64::from(o.img.index_capacity) {
        o.set32(o.index(i), first as u32 + 1);
    }
    drop(o);
    let label = "every index entry names the first live descriptor (no EMPTY entry)";
    note.set(label);
    guarded(label, &stats, move |p| {
        p.step("read");
        let got = r.read_to_vec(b"s0");
        check!(
            matches!(got, Ok(_) | Err(SectionError::NotExist)),
            "lookup in a full index: {got:?}"
        );
        p.step("create_section");
        let made = r.create_section(Some(b"fresh"), TIME_END, b"fresh data");
        p.step("read the new section");
        let back = r.read_to_vec(b"fresh");
        if made.is_ok() {
            check!(
                back.as_deref() == Ok(b"fresh data".as_slice()),
                "create_section returned Ok but the section reads {back:?}"
            );
        }
        p.step("fsck");
        let report = r.fsck();
        check!(
            !report.violations.iter().any(|v| v.invariant == "indexed"),
            "live sections unreachable through the index: {report}"
        );
        p.step("drop");
        drop(r);
    });
}

#[test]
fn locks_and_seqcounts_held_forever_give_try_again_in_bounded_time() {
    let domain = Domain::new("corruption-locks");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    // The holder is the creating thread's own (live) agent, which never lets go.
    for (k, what) in [
        "STRUCT_LOCK",
        "INDEX_SEQ",
        "MULTI_SEQ+MULTI_OWNER",
        "every LEASE",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("l{k}");
        let r = populated(&domain.0, &name);
        let o = Object::open(&domain.0.join(&name));
        let (ix, generation) = o.alive_agent().expect("the creator's agent record");
        let live_owner = owner_word(ix, generation);
        match what {
            "STRUCT_LOCK" => o.set(H_STRUCT_LOCK, live_owner),
            "INDEX_SEQ" => o.set(H_INDEX_SEQ, o.get(H_INDEX_SEQ) | 1),
            "MULTI_SEQ+MULTI_OWNER" => {
                o.set(H_MULTI_OWNER, live_owner);
                o.set(H_MULTI_SEQ, o.get(H_MULTI_SEQ) | 1);
            }
            _ => {
                for d in 0..u64::from(o.img.max_sections) {
                    o.set(o.desc(d, DS_LEASE), live_owner);
                }
            }
        }
        drop(o);
        let label = format!("{what} held by the live agent {ix}");
        note.set(&label);
        let (dir, n) = (domain.0.clone(), name.clone());
        let what = what.to_owned();
        guarded(&label, &stats, move |p| {
            let t = Instant::now();
            match what.as_str() {
                "STRUCT_LOCK" => {
                    p.step("create_section");
                    let got = r.create_section(Some(b"new"), TIME_END, b"");
                    check!(
                        got == Err(SectionError::TryAgain),
                        "create under a held lock: {got:?}"
                    );
                }
                "INDEX_SEQ" => {
                    p.step("read");
                    let got = r.read_to_vec(b"s0");
                    check!(
                        got == Err(SectionError::TryAgain),
                        "read with the index busy: {got:?}"
                    );
                }
                "MULTI_SEQ+MULTI_OWNER" => {
                    p.step("read_many");
                    let (mut x, mut y) = ([0u8; 8], [0u8; 8]);
                    let mut elems = [
                        ReadElement {
                            id: b"s2",
                            offset: 0,
                            buf: &mut x,
                            read: 0,
                        },
                        ReadElement {
                            id: b"s3",
                            offset: 0,
                            buf: &mut y,
                            read: 0,
                        },
                    ];
                    let got = r.read_many(&mut elems).map_err(|e| e.kind);
                    check!(
                        got == Err(SectionError::TryAgain),
                        "snapshot read mid-publish: {got:?}"
                    );
                }
                _ => {
                    p.step("overwrite");
                    let got = r.overwrite(b"s0", b"x");
                    check!(
                        got == Err(SectionError::TryAgain),
                        "overwrite of a leased section: {got:?}"
                    );
                }
            }
            let took = t.elapsed();
            check!(took < Duration::from_secs(2), "the refusal took {took:?}");
            sweep(&r, p);
            attach_and_sweep(&dir, &n, p);
            p.step("drop");
            drop(r);
        });
        let _ = Replica::remove(&domain.0, &name);
    }
}

#[test]
fn leases_held_by_owners_that_do_not_exist_are_taken_over() {
    let domain = Domain::new("corruption-leases");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let r = populated(&domain.0, "l");
    let o = Object::open(&domain.0.join("l"));
    let garbage = [
        owner_word(63, 5),
        owner_word(0xfffe, 0),
        0xdead_beef_0000_ffff,
        u64::MAX,
    ];
    for d in 0..u64::from(o.img.max_sections) {
        o.set(o.desc(d, DS_LEASE), garbage[d as usize % garbage.len()]);
    }
    drop(o);
    let label = "every descriptor LEASE names a stale or impossible owner";
    note.set(label);
    guarded(label, &stats, move |p| {
        for id in [b"s0", b"s1", b"s2", b"s3"] {
            p.step("overwrite");
            let got = r.overwrite(id, b"taken over");
            check!(
                got.is_ok(),
                "stale lease on {:?} not taken over: {got:?}",
                id
            );
        }
        p.step("drop");
        drop(r);
    });
}

/// Everything a caller is told must respect the bounds too: a size, length or id from
/// shared memory that a caller sizes a buffer by must not exceed the attributes.
#[test]
fn reported_sizes_lengths_and_ids_stay_within_the_attributes() {
    let domain = Domain::new("corruption-reported");
    let note = CaseNote::claim();
    let stats = Arc::new(Stats::default());
    let r = populated(&domain.0, "p");
    let o = Object::open(&domain.0.join("p"));
    let live = o.live_descs();
    let (d0, s0) = live[0];
    let (d1, _) = live[1];
    o.set(o.meta(s0, M_SIZE), u64::MAX);
    o.set(
        o.desc(d1, DS_KEY),
        (0xffff << 48) | (o.get(o.desc(d1, DS_KEY)) & ((1 << 48) - 1)),
    );
    let head = o.get(H_HEAD_SEQ);
    let c = head & (u64::from(o.img.journal_capacity) - 1);
    o.set(o.cell(c, 2), u64::MAX - 2);
    o.set(o.cell(c, 3), u64::MAX);
    drop(o);
    let label = format!(
        "meta[{s0}].SIZE (current slot of desc {d0}) = u64::MAX; desc[{d1}].KEY length = 0xffff; \
         journal cell of seq {head}: offset u64::MAX-2, len u64::MAX"
    );
    note.set(&label);
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let found = problems.clone();
    guarded(&label, &stats, move |p| {
        let mut bad = found.lock().unwrap();
        p.step("section_info");
        for id in IDS {
            if let Ok(info) = r.section_info(id)
                && info.size > MAX_SECTION
            {
                bad.push(format!(
                    "section_info({:?}).size = {}",
                    String::from_utf8_lossy(id),
                    info.size
                ));
            }
        }
        p.step("sections");
        for info in r.sections(SectionFilter::Any) {
            if info.size > MAX_SECTION {
                bad.push(format!("sections(): size {} > maxSectionSize", info.size));
            }
            if info.id.len() as u64 > MAX_ID {
                bad.push(format!(
                    "sections(): id of {} bytes > maxSectionIdSize",
                    info.id.len()
                ));
            }
        }
        p.step("changes_since");
        let mut out = Vec::new();
        let got = r.changes_since(0, &mut out, 1000);
        check!(
            matches!(got, Changes::UpTo(_) | Changes::Resync(_)),
            "{got:?}"
        );
        for ch in &out {
            if ch
                .offset
                .checked_add(ch.len)
                .is_none_or(|end| end > MAX_SECTION)
            {
                bad.push(format!(
                    "changes_since: seq {} {:?} covers {}+{}",
                    ch.seq, ch.kind, ch.offset, ch.len
                ));
            }
            if ch.id.as_ref().is_some_and(|id| id.len() as u64 > MAX_ID) {
                bad.push(format!(
                    "changes_since: seq {} names an id longer than maxSectionIdSize",
                    ch.seq
                ));
            }
        }
        p.step("drop");
        drop(r);
    });
    let bad = problems.lock().unwrap();
    assert!(
        bad.is_empty(),
        "{label}\n  => values beyond the attributes:\n    {}",
        bad.join("\n    ")
    );
}

// ---- attach refuses garbage ----------------------------------------------------------

/// Writes `bytes` as an object file (mode 0600) named `name` in `domain`.
fn plant(domain: &Path, name: &str, bytes: &[u8]) {
    let path = domain.join(name);
    let _ = std::fs::remove_file(&path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
}

/// Attaches under the watchdog; a successful attach is swept too.
fn attach_guarded(
    domain: &Path,
    name: &str,
    case: &str,
    stats: &Arc<Stats>,
) -> Result<(), AttachError> {
    let out = Arc::new(Mutex::new(None));
    let slot = out.clone();
    let (dir, n) = (domain.to_path_buf(), name.to_owned());
    guarded(case, stats, move |p| {
        p.step("attach");
        let got = Replica::attach(&dir, &n, Sharing::default());
        let res = got.as_ref().map(|_| ()).map_err(|e| *e);
        *slot.lock().unwrap() = Some(res);
        if let Ok(r) = got {
            sweep(&r, p);
            p.step("drop");
            drop(r);
        }
    });
    out.lock().unwrap().take().expect("attach result")
}

fn header_bytes(domain: &Path, name: &str) -> Vec<u8> {
    std::fs::read(domain.join(name)).unwrap()
}

#[test]
fn attach_refuses_garbage_bytes_of_any_length() {
    let domain = Domain::new("corruption-garbage");
    let stats = Arc::new(Stats::default());
    let mut rng = Rng(seed());
    let real = {
        let r = populated(&domain.0, "real");
        drop(r);
        header_bytes(&domain.0, "real")
    };
    for len in [0usize, 1, 100, 199, 200, 4095, 4096, 8192, real.len()] {
        for variant in 0..4 {
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let expect: fn(&AttachError) -> bool = match variant {
                // All zeros: a creator that has not published yet.
                0 => {
                    bytes.fill(0);
                    |e| *e == AttachError::NotInitialized
                }
                // Random bytes.
                1 => |e| matches!(e, AttachError::BadMagic | AttachError::NotInitialized),
                // The right magic and version over random bytes.
                2 => {
                    if len >= 12 {
                        bytes[..12].copy_from_slice(&real[..12]);
                    }
                    |e| {
                        matches!(
                            e,
                            AttachError::SizeMismatch { .. }
                                | AttachError::CorruptHeader(_)
                                | AttachError::NotInitialized
                        )
                    }
                }
                // A real header image over random regions: attachable; must then behave.
                _ => {
                    let n = len.min(200);
                    bytes[..n].copy_from_slice(&real[..n]);
                    |e| {
                        matches!(
                            e,
                            AttachError::SizeMismatch { .. } | AttachError::NotInitialized
                        )
                    }
                }
            };
            plant(&domain.0, "g", &bytes);
            let case = format!("{len} bytes, variant {variant}");
            match attach_guarded(&domain.0, "g", &case, &stats) {
                Err(e) => assert!(expect(&e), "{case}: unexpected refusal {e:?}"),
                Ok(()) => assert!(
                    variant == 3 && len == real.len(),
                    "{case}: garbage was attached"
                ),
            }
        }
    }
}

#[test]
fn attach_refuses_a_truncated_or_grown_object() {
    let domain = Domain::new("corruption-truncated");
    let stats = Arc::new(Stats::default());
    drop(populated(&domain.0, "t"));
    let full = header_bytes(&domain.0, "t");
    let total = full.len() as u64;
    for len in [
        0,
        100,
        4095,
        4096,
        8192,
        total - 4096,
        total - 1,
        total + 1,
        total + 4096,
    ] {
        plant(&domain.0, "t", &full);
        let f = OpenOptions::new()
            .write(true)
            .open(domain.0.join("t"))
            .unwrap();
        f.set_len(len).unwrap();
        drop(f);
        let case = format!("object of {total} bytes cut to {len}");
        let got = attach_guarded(&domain.0, "t", &case, &stats);
        let expected = if len < 4096 {
            got == Err(AttachError::NotInitialized)
        } else {
            got == Err(AttachError::SizeMismatch {
                header: total,
                object: len,
            })
        };
        assert!(expected, "{case}: {got:?}");
    }
}

#[test]
fn attach_refuses_a_wrong_magic_or_layout_version() {
    let domain = Domain::new("corruption-magic");
    let stats = Arc::new(Stats::default());
    drop(populated(&domain.0, "m"));
    let full = header_bytes(&domain.0, "m");
    for i in 0..8 {
        let mut bytes = full.clone();
        bytes[i] ^= 0x20;
        plant(&domain.0, "m", &bytes);
        let got = attach_guarded(&domain.0, "m", &format!("magic byte {i} flipped"), &stats);
        assert_eq!(got, Err(AttachError::BadMagic), "magic byte {i} flipped");
    }
    for v in [0u32, 1, 2, 4, 0x100, u32::MAX] {
        let mut bytes = full.clone();
        bytes[8..12].copy_from_slice(&v.to_ne_bytes());
        plant(&domain.0, "m", &bytes);
        let got = attach_guarded(&domain.0, "m", &format!("layout version {v}"), &stats);
        let want = if v == 0 {
            AttachError::NotInitialized
        } else {
            AttachError::UnsupportedVersion(v)
        };
        assert_eq!(got, Err(want), "layout version {v}");
    }
}

#[test]
fn attach_refuses_each_header_field_changed_one_at_a_time() {
    let domain = Domain::new("corruption-fields");
    let stats = Arc::new(Stats::default());
    drop(populated(&domain.0, "f"));
    let full = header_bytes(&domain.0, "f");
    let mut accepted = Vec::new();
    for &(field, off, width) in FIELDS {
        let orig = {
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(&full[off..off + width]);
            u64::from_ne_bytes(b)
        };
        let mask = if width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        let mut values = vec![
            0,
            1,
            orig.wrapping_add(1),
            orig.wrapping_sub(1),
            orig ^ (1 << 40),
            orig << 1,
            mask,
        ];
        values.iter_mut().for_each(|v| *v &= mask);
        values.sort_unstable();
        values.dedup();
        values.retain(|&v| v != orig);
        for v in values {
            let mut bytes = full.clone();
            bytes[off..off + width].copy_from_slice(&v.to_ne_bytes()[..width]);
            plant(&domain.0, "f", &bytes);
            let case = format!("header field {field} = {v:#x} (was {orig:#x})");
            match attach_guarded(&domain.0, "f", &case, &stats) {
                Err(_) => {}
                Ok(()) => accepted.push(case),
            }
        }
    }
    // Every change must be refused. Attach validates by recomputing the geometry, so a
    // field that does not feed the geometry (or feeds it through rounding) can only be
    // caught by a check over the whole image; whatever was accepted went through the sweep.
    assert!(
        accepted.is_empty(),
        "attach accepted {} changed headers:\n  {}",
        accepted.len(),
        accepted.join("\n  ")
    );
}

// ---- the node registry ---------------------------------------------------------------

/// Start of the opener table of a registry with 8 entries (registry.rs: a 4096-byte header,
/// 320-byte entries, 32-byte opener records).
const REG_OPENERS: u64 = 4096 + 8 * 320;

#[test]
fn random_bytes_in_the_registry_give_an_error_or_a_working_registry() {
    let stats = Arc::new(Stats::default());
    let note = CaseNote::claim();
    let seed = seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let small = ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 512,
        retention_ns: 1_000_000_000,
        max_sections: 2,
        max_section_size: 256,
        max_section_id_size: 8,
    };
    let reg_limits = RegistryLimits {
        entries: 8,
        openers: 16,
    };
    let mut opened_ok = 0;
    for case in 0..40u64 {
        let domain = Domain::new(&format!("corruption-{}", &format!("registry{case}")));
        let token;
        let size;
        {
            let reg = Registry::open_with(&domain.0, Sharing::default(), reg_limits).unwrap();
            let few = ReplicaLimits {
                agents: 64,
                spare_slots: 2,
                journal_cells: 64,
            };
            let a = reg.open_replica(b"alpha", Some((&small, &few))).unwrap();
            let b = reg.open_replica(b"beta", Some((&small, &few))).unwrap();
            reg.close(b.instance).unwrap();
            drop((a, b));
            let path = domain.0.join("registry");
            size = std::fs::metadata(&path).unwrap().len();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let map = memmap2::MmapRaw::map_raw(&file).unwrap();
            // Our own process token, as recorded in the opener table (first opener).
            let openers = REG_OPENERS;
            // SAFETY: in bounds of the registry mapping; read by value.
            token = unsafe {
                core::ptr::read_volatile(map.as_ptr().add(openers as usize).cast::<u64>())
            };
            let mut log = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let off = match rng.below(10) {
                    0 => rng.below(64) & !7,
                    1 => 1024 + 8 * rng.below(4),
                    2..=6 => 4096 + 320 * rng.below(8) + 8 * rng.below(40),
                    _ => openers + 32 * rng.below(16) + 8 * rng.below(3),
                };
                let held = rng.below(4) | (token << 32);
                let v = one_of!(rng; rng.next(), 0, u64::MAX, token, held, rng.below(300), 1, 2);
                // A lock word naming this live process makes every locked call wait its full
                // bound; that case has its own test below.
                let v = if off == 1024 && v >> 32 == token {
                    v ^ (1 << 63)
                } else {
                    v
                };
                // SAFETY: `off + 8 <= size` and 8-aligned; nobody else uses the file now.
                unsafe {
                    AtomicU64::from_ptr(map.as_mut_ptr().add(off as usize).cast()).store(v, SeqCst);
                };
                log.push(format!("registry[{off}] = {v:#x}"));
            }
            // Sometimes two opener records of this live process claim huge counts of one
            // instance.
            if rng.chance(25) {
                for k in 0..2u64 {
                    let o = openers + 32 * (8 + k);
                    for (w, v) in [(0, token), (8, 1), (16, u64::MAX - 1)] {
                        // SAFETY: as above.
                        unsafe {
                            AtomicU64::from_ptr(map.as_mut_ptr().add((o + w) as usize).cast())
                                .store(v, SeqCst);
                        };
                    }
                }
                log.push("two live opener records of instance 1 with count u64::MAX-1".into());
            }
            let case_text = format!(
                "SEED={seed} registry case {case} (size {size}): {}",
                log.join("; ")
            );
            note.set(&case_text);
            drop(reg);
            let dir = domain.0.clone();
            let ok = Arc::new(AtomicBool::new(false));
            let ok2 = ok.clone();
            guarded(&case_text, &stats, move |p| {
                p.step("Registry::open");
                let Ok(reg) = Registry::open(&dir, Sharing::default()) else {
                    return;
                };
                ok2.store(true, Relaxed);
                p.step("lookup");
                let _ = (reg.lookup(b"alpha"), reg.lookup(b"beta"));
                p.step("entries");
                let _ = reg.entries();
                p.step("fsck");
                let _ = reg.fsck();
                p.step("sweep");
                let _ = reg.sweep();
                p.step("open_replica");
                if let Ok(o) = reg.open_replica(b"alpha", Some((&small, &limits()))) {
                    p.step("close");
                    let _ = reg.close(o.instance);
                }
                p.step("open_replica (create)");
                if let Ok(o) = reg.open_replica(b"gamma", Some((&small, &limits()))) {
                    p.step("unlink");
                    let _ = reg.unlink(b"gamma");
                    p.step("close");
                    let _ = reg.close(o.instance);
                }
                p.step("set_retention");
                let _ = reg.set_retention(1, 5);
                p.step("add_open");
                let _ = reg.add_open(1);
                p.step("entries after use");
                let _ = reg.entries();
            });
            if ok.load(Relaxed) {
                opened_ok += 1;
            }
        }
    }
    let slowest = stats.slowest.lock().unwrap().clone();
    println!(
        "registry opened after corruption in {opened_ok} of 40 cases; slowest call {:?} ({})",
        slowest.0, slowest.1
    );
    assert!(
        opened_ok > 0,
        "the registry never survived a corruption: the test does nothing"
    );
}

#[test]
fn registry_lock_word_naming_a_live_process_gives_try_again_in_bounded_time() {
    let stats = Arc::new(Stats::default());
    let domain = Domain::new("corruption-registry-lock");
    let reg = Registry::open_with(
        &domain.0,
        Sharing::default(),
        RegistryLimits {
            entries: 8,
            openers: 16,
        },
    )
    .unwrap();
    let small = ReplicaAttributes {
        max_sections: 2,
        max_section_size: 64,
        checkpoint_size: 128,
        ..attrs()
    };
    let opened = reg
        .open_replica(b"alpha", Some((&small, &limits())))
        .unwrap();
    drop(opened.replica);
    let path = domain.0.join("registry");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let map = memmap2::MmapRaw::map_raw(&file).unwrap();
    // SAFETY: in bounds of the registry mapping (opener 0's token word); read by value.
    let token =
        unsafe { core::ptr::read_volatile(map.as_ptr().add(REG_OPENERS as usize).cast::<u64>()) };
    // SAFETY: the lock word at 1024 is in bounds and 8-aligned.
    unsafe {
        AtomicU64::from_ptr(map.as_mut_ptr().add(1024).cast())
            .store((token << 32) | 0xffff, SeqCst);
    };
    let label = "registry lock = this live process, a thread tag nobody has";
    let instance = opened.instance;
    guarded(label, &stats, move |p| {
        let t = Instant::now();
        p.step("add_open");
        let got = reg.add_open(instance);
        check!(
            got == Err(ckpt_engine::RegistryError::TryAgain),
            "add_open under a held lock: {got:?}"
        );
        p.step("lookup");
        check!(
            reg.lookup(b"alpha") == Some(instance),
            "lookups take no lock"
        );
        let took = t.elapsed();
        check!(took < Duration::from_secs(4), "the refusal took {took:?}");
    });
}

#[test]
fn registry_with_garbage_header_is_refused_not_trusted() {
    let stats = Arc::new(Stats::default());
    let domain = Domain::new("corruption-registry-header");
    drop(
        Registry::open_with(
            &domain.0,
            Sharing::default(),
            RegistryLimits {
                entries: 8,
                openers: 16,
            },
        )
        .unwrap(),
    );
    let path = domain.0.join("registry");
    let good = std::fs::read(&path).unwrap();
    let mut rng = Rng(seed());
    // Header words: magic, version|header size, total, entry and opener capacities.
    for off in [0usize, 8, 16, 24, 32] {
        for v in [0u64, 1, u64::MAX, 1 << 21, rng.next()] {
            let mut bytes = good.clone();
            bytes[off..off + 8].copy_from_slice(&v.to_ne_bytes());
            std::fs::remove_file(&path).unwrap();
            plant(&domain.0, "registry", &bytes);
            let case = format!("registry header word {off} = {v:#x}");
            let dir = domain.0.clone();
            let result = Arc::new(Mutex::new(String::new()));
            let out = result.clone();
            guarded(&case, &stats, move |p| {
                p.step("Registry::open");
                let got = Registry::open(&dir, Sharing::default());
                *out.lock().unwrap() = format!("{:?}", got.as_ref().map(|_| ()));
                if let Ok(reg) = got {
                    p.step("entries");
                    let _ = reg.entries();
                    p.step("fsck");
                    let _ = reg.fsck();
                }
            });
            let got = result.lock().unwrap().clone();
            // Magic, version and total size have one right value; a capacity may change
            // without changing the rounded object size, and then nothing can tell.
            let same_size = off >= 24 && {
                let (e, o) = if off == 24 { (v, 16) } else { (8, v) };
                e > 0
                    && o > 0
                    && e <= 1 << 20
                    && o <= 1 << 22
                    && (4096 + e * 320 + o * 32).div_ceil(4096) * 4096 == good.len() as u64
            };
            if same_size {
                println!("{case}: {got} (capacity change hidden by rounding)");
            } else {
                assert!(got.starts_with("Err"), "{case}: {got}");
            }
        }
    }
}
