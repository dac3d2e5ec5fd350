//! Typed access to the words of one mapped replica. Geometry comes from the header image
//! validated at attach and kept in process memory, so a later scribble on the header
//! cannot move our bounds. Indices read from shared memory become [`Desc`], [`Slot`] or
//! [`AgentIx`] only through the range-checking constructors; with validated geometry every
//! accessor is then in bounds by construction.

use crate::hint::{Hint, words_for};
use crate::layout::{AGENT_SIZE, CELL_SIZE, DESC_SIZE, HeaderImage, meta};
use crate::protocol::Slots;
use crate::shm::Mapping;
use crate::sync::{AtomicU32, AtomicU64};

/// A descriptor index known to be `< max_sections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Desc(pub(crate) u32);
/// A slot index known to be `< slot_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Slot(pub(crate) u32);
/// An agent index known to be `< agent_capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AgentIx(pub(crate) u32);

/// The words of one fixed-size record in the mapping (a descriptor, an agent, a slot's
/// meta words before its pins, a journal cell), located once. A hot path that touches a
/// record several times holds this reference: the compiler must reload the geometry from
/// `Region` after every ordered atomic, but not a reference it already holds, and a word
/// at a constant offset needs no bounds check.
#[repr(transparent)]
pub(crate) struct Rec<const N: usize>([AtomicU64; N]);

impl<const N: usize> Rec<N> {
    /// The word at byte offset `off` (a layout constant) of the record.
    #[inline(always)]
    pub(crate) fn at(&self, off: u64) -> &AtomicU64 {
        &self.0[(off / 8) as usize]
    }

    /// Word `i` (a constant) of the record.
    #[inline(always)]
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        &self.0[i]
    }
}

/// Words of a descriptor.
pub(crate) const DESC_WORDS: usize = (DESC_SIZE / 8) as usize;
/// Words of an agent record.
pub(crate) const AGENT_WORDS: usize = (AGENT_SIZE / 8) as usize;
/// Words of a journal cell.
pub(crate) const CELL_WORDS: usize = (CELL_SIZE / 8) as usize;
/// A slot's meta words before its pin words.
pub(crate) const META_WORDS: usize = (meta::PINS / 8) as usize;

/// `p`, computed where it is asked for, in one register: without this the compiler keeps
/// a record's region base and offset apart (two registers, for its addressing modes) and,
/// short of registers on the write path, spills them: stores, which queue behind a
/// copy's.
#[inline(always)]
// The pointer passes through a register and nothing dereferences it in the asm.
#[allow(clippy::pointers_in_nomem_asm_block)]
fn opaque(p: *mut u8) -> *mut u8 {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    {
        let mut p = p;
        // SAFETY: an empty instruction sequence that only names the register holding `p`;
        // it reads and writes no memory, and `p` comes back unchanged.
        unsafe {
            core::arch::asm!("/* {0} */", inout(reg) p, options(pure, nomem, nostack, preserves_flags));
        }
        p
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(loom))))]
    p
}

#[derive(Debug)]
pub(crate) struct Region {
    map: Mapping,
    pub(crate) img: HeaderImage,
    /// Where the hot regions start in this mapping: one load per access instead of the
    /// mapping's base plus the region's offset.
    bases: Bases,
}

/// The start of each region the data path touches, in this process's mapping.
#[derive(Debug)]
struct Bases {
    descs: *mut u8,
    metas: *mut u8,
    agents: *mut u8,
    journal: *mut u8,
    slots: *mut u8,
}

// SAFETY: the pointers are into the mapping the `Region` owns (itself `Send` and `Sync`:
// shared memory accessed atomically) and are only dereferenced through the accessors
// below, exactly as `map.ptr()` plus an offset would be.
unsafe impl Send for Bases {}
// SAFETY: as for `Send`.
unsafe impl Sync for Bases {}

impl Region {
    /// `img` must have passed [`HeaderImage::validate`] against `map.len()`.
    pub(crate) fn new(map: Mapping, img: HeaderImage) -> Self {
        debug_assert_eq!(img.total_size, map.len() as u64);
        // In bounds: validation put every region inside the mapping (and `wrapping_add`
        // would merely make a bad offset fail the accessors' debug checks).
        let at = |off: u64| map.ptr().wrapping_add(off as usize);
        let bases = Bases {
            descs: at(img.off_descs),
            metas: at(img.off_slot_meta),
            agents: at(img.off_agents),
            journal: at(img.off_journal),
            slots: at(img.off_slots),
        };
        Self { map, img, bases }
    }

    #[inline]
    fn word(&self, off: u64) -> &AtomicU64 {
        debug_assert!(off.is_multiple_of(8) && off + 8 <= self.map.len() as u64);
        // SAFETY: callers pass offsets inside validated regions (see the module doc), so
        // `off + 8 <= len`; every region start and stride is a multiple of 8 and the base
        // is page-aligned, so the pointer is aligned for `AtomicU64`. Shared bytes are only
        // ever accessed atomically through these references.
        unsafe { &*self.map.ptr().add(off as usize).cast::<AtomicU64>() }
    }

    #[inline]
    fn words(&self, off: u64, n: u64) -> &[AtomicU64] {
        debug_assert!(off.is_multiple_of(8) && off + 8 * n <= self.map.len() as u64);
        // SAFETY: as in `word`, for `n` consecutive aligned words inside the mapping.
        unsafe {
            core::slice::from_raw_parts(
                self.map.ptr().add(off as usize).cast::<AtomicU64>(),
                n as usize,
            )
        }
    }

    /// The image's `layout_version` field as an atomic (the creation SYNC POINT).
    pub(crate) fn version_word(map: &Mapping) -> &AtomicU32 {
        // SAFETY: the mapping is at least a header long (checked by the caller) and offset
        // 8 is 4-aligned; accessed only atomically.
        unsafe { &*map.ptr().add(8).cast::<AtomicU32>() }
    }

    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    #[inline]
    pub(crate) fn hdr(&self, off: u64) -> &AtomicU64 {
        self.word(off)
    }

    #[inline]
    pub(crate) fn hdr32(&self, off: u64) -> &AtomicU32 {
        debug_assert!(off.is_multiple_of(4) && off < crate::layout::HEADER_SIZE);
        // SAFETY: `off` is a constant inside the header page, 4-aligned.
        unsafe { &*self.map.ptr().add(off as usize).cast::<AtomicU32>() }
    }

    #[inline]
    pub(crate) fn desc_ix(&self, d: u32) -> Option<Desc> {
        (d < self.img.max_sections).then_some(Desc(d))
    }
    #[inline]
    pub(crate) fn slot_ix(&self, s: u32) -> Option<Slot> {
        (s < self.img.slot_count).then_some(Slot(s))
    }
    #[inline]
    pub(crate) fn agent_ix(&self, a: u32) -> Option<AgentIx> {
        (a < self.img.agent_capacity).then_some(AgentIx(a))
    }

    /// Byte `off` of the region starting at `base` (one of `self.bases`), where the caller
    /// has `len` bytes: a whole record, a slot's pins or its data, inside a validated
    /// region, so in the mapping and 8-aligned (checked in debug builds).
    #[inline]
    fn at(&self, base: *mut u8, off: u64, len: usize) -> *mut u8 {
        debug_assert!({
            let at = base.addr() - self.map.ptr().addr() + off as usize;
            at.is_multiple_of(8) && at + len <= self.map.len()
        });
        // SAFETY: `base` is a region's start in this mapping and the callers' offsets stay
        // inside that validated region, so the result is in the same allocation.
        let p = unsafe { base.add(off as usize) };
        opaque(p)
    }

    /// `N` consecutive words at byte `off` of the region starting at `base`, as one
    /// record.
    #[inline]
    fn rec<const N: usize>(&self, base: *mut u8, off: u64) -> &Rec<N> {
        // SAFETY: as in `word`, for `N` consecutive aligned words inside the mapping (see
        // `at`); `Rec<N>` is a transparent wrapper of `[AtomicU64; N]`, which has the
        // layout of `N` words.
        unsafe { &*self.at(base, off, 8 * N).cast::<Rec<N>>() }
    }

    #[inline]
    pub(crate) fn desc_rec(&self, d: Desc) -> &Rec<DESC_WORDS> {
        self.rec(self.bases.descs, u64::from(d.0) * DESC_SIZE)
    }
    #[inline]
    pub(crate) fn desc(&self, d: Desc, off: u64) -> &AtomicU64 {
        self.desc_rec(d).at(off)
    }
    /// Slot `s`'s meta words before its pins.
    #[inline]
    pub(crate) fn meta_rec(&self, s: Slot) -> &Rec<META_WORDS> {
        self.rec(
            self.bases.metas,
            u64::from(s.0) * u64::from(self.img.slot_meta_stride),
        )
    }
    #[inline]
    pub(crate) fn meta(&self, s: Slot, off: u64) -> &AtomicU64 {
        self.meta_rec(s).at(off)
    }
    #[inline]
    pub(crate) fn pins(&self, s: Slot) -> &[AtomicU64] {
        let off = u64::from(s.0) * u64::from(self.img.slot_meta_stride) + meta::PINS;
        let n = self.img.pin_words as usize;
        let pins = self.at(self.bases.metas, off, 8 * n);
        // SAFETY: as in `words`: slot `s`'s pin words lie inside its meta record
        // (`slot_meta_stride` covers `meta::PINS + 8 * pin_words`), in the validated meta
        // region.
        unsafe { core::slice::from_raw_parts(pins.cast(), n) }
    }
    #[inline]
    pub(crate) fn agent_rec(&self, a: AgentIx) -> &Rec<AGENT_WORDS> {
        self.rec(self.bases.agents, u64::from(a.0) * AGENT_SIZE)
    }
    #[inline]
    pub(crate) fn agent(&self, a: AgentIx, off: u64) -> &AtomicU64 {
        self.agent_rec(a).at(off)
    }
    #[inline]
    pub(crate) fn id_words(&self, d: Desc) -> &[AtomicU64] {
        let stride = u64::from(self.img.id_stride);
        self.words(self.img.off_ids + u64::from(d.0) * stride, stride / 8)
    }
    #[inline]
    pub(crate) fn index_entry(&self, i: u32) -> &AtomicU32 {
        let i = u64::from(i & (self.img.index_capacity - 1));
        let off = self.img.off_index + i * 4;
        // SAFETY: `i < index_capacity` by the mask (a power of two), so the entry lies in the
        // index region; 4-aligned; accessed only atomically.
        unsafe { &*self.map.ptr().add(off as usize).cast::<AtomicU32>() }
    }
    /// The journal cell for `seq`.
    #[inline]
    pub(crate) fn cell_rec(&self, seq: u64) -> &Rec<CELL_WORDS> {
        let c = seq & (u64::from(self.img.journal_capacity) - 1);
        self.rec(self.bases.journal, c * CELL_SIZE)
    }
    /// Word `w` (0..6) of journal cell for `seq`.
    #[inline]
    pub(crate) fn cell(&self, seq: u64, w: usize) -> &AtomicU64 {
        self.cell_rec(seq).word(w)
    }
    pub(crate) fn slot_hint(&self) -> Hint<'_> {
        let n = u64::from(self.img.slot_count);
        Hint::new(
            self.words(self.img.off_slot_hint, words_for(n)),
            self.img.slot_count,
        )
    }
    pub(crate) fn desc_hint(&self) -> Hint<'_> {
        let n = u64::from(self.img.max_sections);
        Hint::new(
            self.words(self.img.off_desc_hint, words_for(n)),
            self.img.max_sections,
        )
    }
    /// Start of slot `s`'s data bytes (`slot_stride` long).
    #[inline]
    pub(crate) fn slot_ptr(&self, s: Slot) -> *mut u8 {
        // Slot `s < slot_count` lies inside the validated slot region.
        let off = u64::from(s.0) * self.img.slot_stride;
        self.at(self.bases.slots, off, self.img.slot_stride as usize)
    }
}

impl Slots for Region {
    fn state(&self, s: u32) -> Option<&AtomicU64> {
        self.slot_ix(s).map(|s| self.meta(s, meta::STATE))
    }
    fn pins(&self, s: u32) -> Option<&[AtomicU64]> {
        self.slot_ix(s).map(|s| Self::pins(self, s))
    }
}
