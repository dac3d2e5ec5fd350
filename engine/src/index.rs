//! The section index: open addressing (linear probing) from a keyed hash of the section id
//! to a descriptor, O(1) at any number of sections. Lookups take no lock: they validate
//! against `INDEX_SEQ`, a seqcount made odd around every structural change (which happens
//! under the owner-tracked structural lock), and retry instead of answering a false
//! NOT_EXIST. The index is derived data: if a structural-lock holder dies, recovery
//! rebuilds it from the descriptors, whose state word is the truth. Tombstones are bounded:
//! past a quarter of the capacity the index is rebuilt under the lock.

use crate::error::SectionError;
use crate::layout::{KIND_LIVE, NONE, current_gen, current_slot, desc as dw, hdr, state_kind};
use crate::region::Desc;
use crate::replica::{AgentCtx, Replica, SPIN_LIMIT, TIME_END};
use crate::sync::{Ordering::*, backoff, fence};
use core::cell::Cell;

const EMPTY: u32 = 0;
const TOMB: u32 = u32::MAX;
/// Index positions the one-pass lookup tries (its home and the ones after it) before the
/// probing path.
const INLINE_PROBES: u32 = 4;
const HASH_MASK: u64 = (1 << 48) - 1;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Up to 8 bytes of an id as a little-endian word, zero-padded: how ids are hashed and
/// stored. Byte by byte for a short tail, so no call to `memcpy` for a variable length.
#[inline]
fn id_word(chunk: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(chunk) {
        Ok(b) => u64::from_le_bytes(b),
        Err(_) => chunk
            .iter()
            .take(8)
            .enumerate()
            .fold(0, |w, (i, &b)| w | (u64::from(b) << (8 * i))),
    }
}

/// A keyed 64-bit hash of an id (the seed is random per replica).
#[inline]
pub(crate) fn hash_id(seed: u64, id: &[u8]) -> u64 {
    const K0: u64 = 0x9e37_79b9_7f4a_7c15;
    const K1: u64 = 0xd6e8_feb8_6659_fd93;
    let mut h = seed ^ (id.len() as u64).wrapping_mul(K0);
    for c in id.chunks(8) {
        h = fold(h ^ id_word(c), K1);
    }
    fold(h, K0)
}

std::thread_local! {
    /// The section this thread last found: (replica uid, descriptor). A process-local
    /// hint, outside the shared-memory protocol (and the loom model).
    static LAST_FOUND: Cell<(u64, u32)> = const { Cell::new((0, u32::MAX)) };
}

/// [`Replica::id_matches`] for an id of several words (or none): out of line, so the
/// one-word compare of the common path is laid out, and its registers allocated, alone.
#[cold]
#[inline(never)]
fn id_matches_long(words: &[crate::sync::AtomicU64], id: &[u8]) -> bool {
    if id.len() > words.len() * 8 {
        return false;
    }
    words
        .iter()
        .zip(id.chunks(8))
        .all(|(w, chunk)| w.load(Relaxed) == id_word(chunk))
}

impl Replica {
    /// `len << 48 | hash` of an id.
    #[inline]
    pub(crate) fn key_of(&self, id: &[u8]) -> u64 {
        ((id.len() as u64) << 48) | (hash_id(self.region.img.hash_seed, id) & HASH_MASK)
    }

    /// Writes a descriptor's id (zero-padded words) and key. The descriptor is OWNED.
    pub(crate) fn store_id(&self, d: Desc, id: &[u8], key: u64) {
        let words = self.region.id_words(d);
        for (w, chunk) in words.iter().zip(id.chunks(8)) {
            w.store(id_word(chunk), Relaxed);
        }
        self.region.desc(d, dw::KEY).store(key, Release);
    }

    /// A descriptor's id as stored (length from the key, clamped to the id area).
    pub(crate) fn read_id(&self, d: Desc) -> Vec<u8> {
        let key = self.region.desc(d, dw::KEY).load(Acquire);
        let words = self.region.id_words(d);
        let max = (self.region.img.max_section_id_size as usize).min(words.len() * 8);
        let len = ((key >> 48) as usize).min(max);
        let mut out = Vec::with_capacity(len);
        for w in words {
            if out.len() >= len {
                break;
            }
            let b = w.load(Relaxed).to_le_bytes();
            let take = (len - out.len()).min(8);
            out.extend_from_slice(&b[..take]);
        }
        out
    }

    #[inline]
    fn id_matches(&self, d: Desc, id: &[u8]) -> bool {
        let words = self.region.id_words(d);
        // Ids of one word (the common case) in one compare. (The empty id compares no
        // word: its descriptor's first word may hold a former id's.)
        if (1..=8).contains(&id.len())
            && let Some(w) = words.first()
        {
            return w.load(Relaxed) == id_word(id);
        }
        id_matches_long(words, id)
    }

    /// Raw probe: the descriptor the index maps `id` to, if any. Callers validate.
    pub(crate) fn probe(&self, id: &[u8], key: u64) -> Option<Desc> {
        let cap = self.region.img.index_capacity;
        let mut pos = (key & HASH_MASK) as u32;
        for _ in 0..cap {
            let e = self.region.index_entry(pos).load(Acquire);
            if e == EMPTY {
                return None;
            }
            if e != TOMB
                && let Some(d) = self.region.desc_ix(e - 1)
                && self.region.desc(d, dw::KEY).load(Acquire) == key
                && self.id_matches(d, id)
            {
                return Some(d);
            }
            pos = pos.wrapping_add(1);
        }
        None
    }

    /// Finds a live, unexpired section: its descriptor and generation. Errors: `NotExist`,
    /// `TryAgain` (a structural change kept the index busy past the bounded wait).
    #[inline]
    pub(crate) fn lookup(&self, id: &[u8]) -> Result<(Desc, u32), SectionError> {
        if id.len() as u64 > self.region.img.max_section_id_size {
            return Err(SectionError::NotExist);
        }
        let key = self.key_of(id);
        if let Some((d, cur)) = self.lookup_home::<false>(id, key) {
            return Ok((d, current_gen(cur)));
        }
        self.lookup_key(id, key)
    }

    /// The lookup of the section this thread found last in this replica, for the
    /// copy-out read (repeated reads of one section are a checkpoint reader's hot path):
    /// the descriptor [`LAST_FOUND`] names, if it holds `id` and passes the checks of
    /// [`Replica::lookup_home`]. `None` sends the caller to the index. The caller checked
    /// the id's length.
    ///
    /// Only a hint: the descriptor's own words are the proof (as for an index hit), so a
    /// hint naming another section, or a descriptor since reused, costs a miss, never a
    /// wrong answer. What it saves is the front of the read's dependency chain, before
    /// the descriptor's address is known: the keyed hash (two dependent 128-bit
    /// multiplies) and the index load. It is per thread, so threads reading different
    /// sections never write a shared line, and per replica (its process-unique uid).
    ///
    /// Measured (engine/DESIGN.md section 17): a 4 KiB read 49 → 41 ns, a 4 KiB overwrite
    /// 112.7 → 108.0 ns on the AMD EPYC (it was slower on a Xeon, as the borrow still is,
    /// which keeps the index lookup). `EXACT`: see [`Replica::confirm`].
    #[inline]
    pub(crate) fn lookup_cached<const EXACT: bool>(&self, id: &[u8]) -> Option<(Desc, u64)> {
        let (uid, d) = LAST_FOUND.with(Cell::get);
        if uid != self.uid {
            return None;
        }
        self.confirm::<EXACT>(self.region.desc_ix(d)?, id, |key| {
            key >> 48 == id.len() as u64
        })
    }

    /// Notes `d` as the section this thread found last.
    #[inline]
    fn note_found(&self, d: Desc) {
        LAST_FOUND.with(|c| c.set((self.uid, d.0)));
    }

    /// The common lookup in one pass, for the read path: the section sits at its home
    /// position of the index or one of the next few ([`INLINE_PROBES`] in all), is live,
    /// and never expires. Returns its descriptor and
    /// `current` word, or `None` for anything else (a collision, a structural change, an
    /// expiration time, an absent section), which [`Replica::lookup`] then answers.
    /// `key` is [`Replica::key_of`] `id`, whose length the caller checked. `EXACT`: see
    /// [`Replica::confirm`].
    #[inline]
    pub(crate) fn lookup_home<const EXACT: bool>(
        &self,
        id: &[u8],
        key: u64,
    ) -> Option<(Desc, u64)> {
        // The home position and the few after it: with linear probing at a load of up to
        // one half, about a third of the sections sit past their home, and the probing
        // path under INDEX_SEQ costs two to three times this one. A descriptor that passes
        // `confirm` is the section wherever its entry was found (ids are unique), so the
        // extra positions need no more validation than the home one.
        let home = (key & HASH_MASK) as u32;
        for i in 0..INLINE_PROBES {
            let e = self.region.index_entry(home.wrapping_add(i)).load(Acquire);
            if e == EMPTY {
                return None;
            }
            let Some(d) = self.region.desc_ix(e.wrapping_sub(1)) else {
                continue;
            };
            if self.region.desc(d, dw::KEY).load(Acquire) != key {
                continue;
            }
            let found = self.confirm::<EXACT>(d, id, |k| k == key)?;
            self.note_found(d);
            return Some(found);
        }
        None
    }

    /// Whether `d` is the live, unexpired section `id` (its KEY passing `key_ok`, its id
    /// words equal to `id`), with `INDEX_SEQ` even and unchanged around the checks, so
    /// no structural change (which rewrites descriptors) overlapped them: the same
    /// validation as [`Replica::lookup_key`]. Returns `d` and its `current` word.
    ///
    /// `EXACT`: the caller compares the returned `current` word with CURRENT again before
    /// it uses anything (a pin-free read's `read_begin`), or its generation under the
    /// section's lease (a write: the generation moves exactly when the incarnation
    /// does), so INDEX_SEQ is not needed. The
    /// words checked here change only when the descriptor passes to another incarnation
    /// (deleted, then created again), which changes CURRENT's generation first: an equal
    /// word later proves they belonged to the incarnation `current` names. Loaded before
    /// that compare (the fence below orders them), they cannot be a later one's.
    #[inline]
    fn confirm<const EXACT: bool>(
        &self,
        d: Desc,
        id: &[u8],
        key_ok: impl FnOnce(u64) -> bool,
    ) -> Option<(Desc, u64)> {
        let seq = self.region.hdr(hdr::INDEX_SEQ);
        let rec = self.region.desc_rec(d);
        let before = if EXACT { 0 } else { seq.load(Acquire) };
        // CURRENT first (see `EXACT` above); the rest only once the id matched, so that
        // few values are live across the id's compare (spilled, they would be stores).
        let cur = rec.at(dw::CURRENT).load(Acquire);
        let found = key_ok(rec.at(dw::KEY).load(Acquire))
            && self.id_matches(d, id)
            && state_kind(rec.at(dw::STATE).load(Acquire)) == KIND_LIVE
            && current_slot(cur) != NONE
            && rec.at(dw::EXPIRATION).load(Relaxed) as i64 == TIME_END;
        if EXACT {
            fence(Acquire);
            return found.then_some((d, cur));
        }
        (found && before.is_multiple_of(2) && seq.load(Acquire) == before).then_some((d, cur))
    }

    pub(crate) fn lookup_key(&self, id: &[u8], key: u64) -> Result<(Desc, u32), SectionError> {
        let seq = self.region.hdr(hdr::INDEX_SEQ);
        let mut since = None;
        for attempt in 0..SPIN_LIMIT {
            let before = seq.load(Acquire);
            if before % 2 == 1 {
                if !self.wait_struct(attempt, &mut since) {
                    break;
                }
                continue;
            }
            let found = self.probe(id, key).map(|d| {
                (
                    d,
                    self.region.desc(d, dw::CURRENT).load(Acquire),
                    self.region.desc(d, dw::STATE).load(Acquire),
                )
            });
            if seq.load(Acquire) != before {
                continue;
            }
            let Some((d, cur, state)) = found else {
                return Err(SectionError::NotExist);
            };
            if state_kind(state) != KIND_LIVE || current_slot(cur) == NONE {
                return Err(SectionError::NotExist);
            }
            let exp = self.region.desc(d, dw::EXPIRATION).load(Relaxed) as i64;
            if exp != TIME_END && exp <= self.now() {
                return Err(SectionError::NotExist);
            }
            self.note_found(d);
            return Ok((d, current_gen(cur)));
        }
        Err(SectionError::TryAgain)
    }

    fn wait_struct(&self, attempt: u32, since: &mut Option<std::time::Instant>) -> bool {
        if attempt % 256 == 255 {
            let holder = self.region.hdr(hdr::STRUCT_LOCK).load(Acquire);
            if holder != 0 {
                self.owner_gone(holder);
            }
        }
        backoff(attempt, since)
    }

    /// Inserts `d` (under the structural lock, seqcount odd). The caller checked that no
    /// live entry has the same id.
    pub(crate) fn index_insert(&self, d: Desc, key: u64) {
        for attempt in 0..2 {
            let cap = self.region.img.index_capacity;
            let mut pos = (key & HASH_MASK) as u32;
            for _ in 0..cap {
                let entry = self.region.index_entry(pos);
                let e = entry.load(Acquire);
                if e == EMPTY || e == TOMB {
                    if e == TOMB {
                        let _ =
                            self.region
                                .hdr(hdr::TOMBSTONES)
                                .fetch_update(AcqRel, Acquire, |t| t.checked_sub(1));
                    }
                    entry.store(d.0 + 1, Release);
                    return;
                }
                pos = pos.wrapping_add(1);
            }
            // Capacity is twice maxSections, so a full index means corruption: rebuild it
            // from the descriptors (which frees at least half of it), then insert.
            if attempt == 0 {
                self.rebuild_index();
            }
        }
    }

    /// Removes `d` (under the structural lock, seqcount odd).
    pub(crate) fn index_remove(&self, d: Desc, key: u64) {
        let cap = self.region.img.index_capacity;
        let mut pos = (key & HASH_MASK) as u32;
        for _ in 0..cap {
            let entry = self.region.index_entry(pos);
            let e = entry.load(Acquire);
            if e == EMPTY {
                return;
            }
            if e == d.0 + 1 {
                entry.store(TOMB, Release);
                self.region.hdr(hdr::TOMBSTONES).fetch_add(1, AcqRel);
                return;
            }
            pos = pos.wrapping_add(1);
        }
    }

    /// Rebuilds the index and the section count from the descriptors (under the lock).
    pub(crate) fn rebuild_index(&self) {
        let img = &self.region.img;
        for i in 0..img.index_capacity {
            self.region.index_entry(i).store(EMPTY, Relaxed);
        }
        let mut live = 0u64;
        for d in 0..img.max_sections {
            let d = Desc(d);
            if state_kind(self.region.desc(d, dw::STATE).load(Acquire)) != KIND_LIVE {
                continue;
            }
            let key = self.region.desc(d, dw::KEY).load(Acquire);
            let mut pos = (key & HASH_MASK) as u32;
            for _ in 0..img.index_capacity {
                let entry = self.region.index_entry(pos);
                if entry.load(Relaxed) == EMPTY {
                    entry.store(d.0 + 1, Release);
                    live += 1;
                    break;
                }
                pos = pos.wrapping_add(1);
            }
        }
        self.region.hdr(hdr::SECTION_COUNT).store(live, Release);
        self.region.hdr(hdr::TOMBSTONES).store(0, Release);
    }

    /// Runs `f` under the structural lock with the index seqcount odd.
    pub(crate) fn with_struct_lock<R>(
        &self,
        a: AgentCtx,
        f: impl FnOnce() -> Result<R, SectionError>,
    ) -> Result<R, SectionError> {
        let lock = self.region.hdr(hdr::STRUCT_LOCK);
        let mut expect = 0;
        let mut taken = false;
        let mut since = None;
        for i in 0..SPIN_LIMIT * 4 {
            match lock.compare_exchange(expect, a.owner, AcqRel, Acquire) {
                Ok(_) => {
                    taken = true;
                    break;
                }
                Err(h) => {
                    expect = 0;
                    if h != 0 && i % 256 == 255 && self.owner_gone(h) {
                        // Its recovery left the lock to us only if it still names `h`.
                        expect = h;
                    }
                    if !backoff(i, &mut since) {
                        break;
                    }
                }
            }
        }
        if !taken {
            return Err(SectionError::TryAgain);
        }
        let seq = self.region.hdr(hdr::INDEX_SEQ);
        if seq.load(Acquire) % 2 == 1 {
            // Taken over from a dead holder mid-change.
            self.rebuild_index();
        } else {
            seq.fetch_add(1, SeqCst);
        }
        // Seqlock writer discipline: the odd count is ordered before the entry stores
        // (needed on weakly ordered machines; free on x86).
        fence(Release);
        let out = f();
        let tombs = self.region.hdr(hdr::TOMBSTONES).load(Acquire);
        if tombs > u64::from(self.region.img.index_capacity / 4) {
            self.rebuild_index();
        }
        seq.fetch_add(1, SeqCst);
        lock.store(0, Release);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{LAST_FOUND, hash_id};
    use crate::{Replica, ReplicaAttributes, ReplicaLimits, SectionError, TIME_END, wall_clock};

    /// Reads take a one-pass path when a section sits at its home position of the index
    /// and the full probe otherwise; both must answer the same. 100 sections in an index
    /// of 256 entries always displace some (and tombstones from deletes displace more).
    #[test]
    fn reads_agree_whether_a_section_sits_at_its_home_position_or_not() {
        let attrs = ReplicaAttributes {
            creation_flags: 0,
            checkpoint_size: 100 * 16,
            retention_ns: 0,
            max_sections: 128,
            max_section_size: 16,
            max_section_id_size: 24,
        };
        let r = Replica::create_in_memory(&attrs, &ReplicaLimits::default()).unwrap();
        let id = |i: u32| format!("section-{i:05}-{}", "x".repeat((i % 9) as usize));
        let later = wall_clock() + 3_600_000_000_000;
        for i in 0..100 {
            let exp = if i % 10 == 0 { later } else { TIME_END };
            r.create_section(Some(id(i).as_bytes()), exp, &i.to_le_bytes())
                .unwrap();
        }
        for i in (0..100).step_by(3) {
            r.delete_section(id(i).as_bytes()).unwrap();
        }
        let (mut home, mut away) = (0, 0);
        let mut buf = [0u8; 16];
        for i in 0..100 {
            let key = id(i);
            let got = r.read(key.as_bytes(), 0, &mut buf);
            if i % 3 == 0 {
                assert_eq!(got, Err(SectionError::NotExist), "{key} was deleted");
                continue;
            }
            assert_eq!(got, Ok(4), "{key}");
            assert_eq!(buf[..4], i.to_le_bytes(), "{key}");
            assert_eq!(r.read(key.as_bytes(), 5, &mut buf).map_err(|_| ()), Err(()));
            match r.lookup_home::<false>(key.as_bytes(), r.key_of(key.as_bytes())) {
                Some(_) => home += 1,
                None => away += 1,
            }
        }
        assert!(
            home > 0 && away > 0,
            "home {home}, away {away}: both paths must run"
        );
        assert_eq!(
            r.read(b"never-created", 0, &mut buf),
            Err(SectionError::NotExist)
        );
        assert_eq!(r.read(&[0u8; 25], 0, &mut buf), Err(SectionError::NotExist));
    }

    #[test]
    fn hash_depends_on_seed_length_and_every_byte() {
        assert_ne!(hash_id(1, b"abc"), hash_id(2, b"abc"));
        assert_ne!(hash_id(1, b""), hash_id(1, b"\0"));
        assert_ne!(hash_id(1, b"abcdefgh1"), hash_id(1, b"abcdefgh2"));
    }

    /// A read tries the descriptor this thread found last before the index. Whatever
    /// that hint names (the other section of the same id length, a descriptor deleted and
    /// reused for another id, a descriptor out of range, a descriptor of another replica),
    /// the read answers what the index answers.
    #[test]
    fn reads_ignore_a_last_found_hint_that_names_the_wrong_descriptor() {
        let attrs = ReplicaAttributes {
            creation_flags: 0,
            checkpoint_size: 8 * 16,
            retention_ns: 0,
            max_sections: 8,
            max_section_size: 16,
            max_section_id_size: 16,
        };
        let r = Replica::create_in_memory(&attrs, &ReplicaLimits::default()).unwrap();
        r.create_section(Some(b"alpha-01"), TIME_END, b"A").unwrap();
        r.create_section(Some(b"alpha-02"), TIME_END, b"B").unwrap();
        let desc = |id: &[u8]| r.lookup(id).unwrap().0.0;
        let (a, b) = (desc(b"alpha-01"), desc(b"alpha-02"));
        let read = |id: &[u8], hint: (u64, u32)| {
            LAST_FOUND.with(|c| c.set(hint));
            let mut buf = [0u8; 4];
            r.read(id, 0, &mut buf).map(|n| buf[..n].to_vec())
        };

        // The hint is what the read path uses: a read found through the index leaves it.
        assert_eq!(read(b"alpha-02", (0, 0)), Ok(b"B".to_vec()));
        assert_eq!(LAST_FOUND.with(|c| c.get()), (r.uid, b));
        assert_eq!(
            r.lookup_cached::<false>(b"alpha-02").map(|(d, _)| d.0),
            Some(b)
        );

        for hint in [b, u32::MAX, 8, 1000] {
            assert_eq!(
                read(b"alpha-01", (r.uid, hint)),
                Ok(b"A".to_vec()),
                "hint {hint}"
            );
        }
        assert_eq!(read(b"alpha-02", (r.uid, a)), Ok(b"B".to_vec()));
        assert_eq!(read(b"alpha-02", (r.uid + 1, b)), Ok(b"B".to_vec()));
        assert_eq!(read(b"alpha-0", (r.uid, a)), Err(SectionError::NotExist));
        // Ids are zero-padded words: only the length tells these two apart.
        r.create_section(Some(b"zz\0"), TIME_END, b"Z").unwrap();
        let z = desc(b"zz\0");
        assert_eq!(read(b"zz", (r.uid, z)), Err(SectionError::NotExist));
        assert_eq!(read(b"zz\0\0", (r.uid, z)), Err(SectionError::NotExist));
        assert_eq!(read(b"zz\0", (r.uid, z)), Ok(b"Z".to_vec()));

        // Deleted, then its descriptor reused for another id of the same length.
        r.delete_section(b"alpha-01").unwrap();
        assert_eq!(read(b"alpha-01", (r.uid, a)), Err(SectionError::NotExist));
        r.create_section(Some(b"gamma-03"), TIME_END, b"C").unwrap();
        let c = desc(b"gamma-03");
        assert_eq!(read(b"alpha-01", (r.uid, c)), Err(SectionError::NotExist));
        assert_eq!(read(b"gamma-03", (r.uid, c)), Ok(b"C".to_vec()));
        assert_eq!(read(b"gamma-03", (r.uid, b)), Ok(b"C".to_vec()));
    }

    /// The default section's id is empty: no id word to compare. It is found by the
    /// index and by the hint, and one-word ids (compared in one load) are not it.
    #[test]
    fn the_default_sections_empty_id_is_found_by_the_hint_and_the_index() {
        let attrs = ReplicaAttributes {
            creation_flags: 0,
            checkpoint_size: 16,
            retention_ns: 0,
            max_sections: 1,
            max_section_size: 16,
            max_section_id_size: 8,
        };
        let r = Replica::create_in_memory(&attrs, &ReplicaLimits::default()).unwrap();
        let d = r.lookup(b"").unwrap().0.0;
        r.overwrite(b"", b"E").unwrap();
        let mut buf = [0u8; 4];
        for hint in [(0, 0), (r.uid, d)] {
            LAST_FOUND.with(|c| c.set(hint));
            assert_eq!(r.read(b"", 0, &mut buf), Ok(1), "hint {hint:?}");
            assert_eq!(&buf[..1], b"E");
            LAST_FOUND.with(|c| c.set(hint));
            assert_eq!(r.read(b"\0", 0, &mut buf), Err(SectionError::NotExist));
            LAST_FOUND.with(|c| c.set(hint));
            assert_eq!(r.overwrite(b"\0\0", b"x"), Err(SectionError::NotExist));
        }
        r.overwrite(b"", b"E2").unwrap();
        assert_eq!(r.read(b"", 0, &mut buf), Ok(2));
        assert_eq!(&buf[..2], b"E2");
    }
}
