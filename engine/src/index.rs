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
use crate::sync::{Ordering::*, fence, spin_hint, yield_now};

const EMPTY: u32 = 0;
const TOMB: u32 = u32::MAX;
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
        if id.len() > words.len() * 8 {
            return false;
        }
        words
            .iter()
            .zip(id.chunks(8))
            .all(|(w, chunk)| w.load(Relaxed) == id_word(chunk))
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
        if let Some((d, cur)) = self.lookup_home(id, key) {
            return Ok((d, current_gen(cur)));
        }
        self.lookup_key(id, key)
    }

    /// The common lookup in one pass, for the read path: the section sits at its home
    /// position of the index, is live, and never expires. Returns its descriptor and
    /// `current` word, or `None` for anything else (a collision, a structural change, an
    /// expiration time, an absent section), which [`Replica::lookup`] then answers. The
    /// same validation as `lookup_key`: `INDEX_SEQ` even and unchanged around the probe.
    #[inline]
    /// `key` is [`Replica::key_of`] `id`, whose length the caller checked.
    pub(crate) fn lookup_home(&self, id: &[u8], key: u64) -> Option<(Desc, u64)> {
        let seq = self.region.hdr(hdr::INDEX_SEQ);
        let before = seq.load(Acquire);
        let e = self
            .region
            .index_entry((key & HASH_MASK) as u32)
            .load(Acquire);
        let d = self.region.desc_ix(e.wrapping_sub(1))?;
        let cur = self.region.desc(d, dw::CURRENT).load(Acquire);
        let state = self.region.desc(d, dw::STATE).load(Acquire);
        let exp = self.region.desc(d, dw::EXPIRATION).load(Relaxed) as i64;
        let found = self.region.desc(d, dw::KEY).load(Acquire) == key
            && self.id_matches(d, id)
            && state_kind(state) == KIND_LIVE
            && current_slot(cur) != NONE
            && exp == TIME_END;
        (found && before.is_multiple_of(2) && seq.load(Acquire) == before).then_some((d, cur))
    }

    pub(crate) fn lookup_key(&self, id: &[u8], key: u64) -> Result<(Desc, u32), SectionError> {
        let seq = self.region.hdr(hdr::INDEX_SEQ);
        for attempt in 0..SPIN_LIMIT {
            let before = seq.load(Acquire);
            if before % 2 == 1 {
                self.wait_struct(attempt);
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
            if exp != TIME_END && exp <= (self.clock)() {
                return Err(SectionError::NotExist);
            }
            return Ok((d, current_gen(cur)));
        }
        Err(SectionError::TryAgain)
    }

    fn wait_struct(&self, attempt: u32) {
        if attempt % 256 == 255 {
            let holder = self.region.hdr(hdr::STRUCT_LOCK).load(Acquire);
            if holder != 0 {
                self.owner_gone(holder);
            }
        }
        if attempt > 64 {
            yield_now();
        } else {
            spin_hint();
        }
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
        a: &AgentCtx,
        f: impl FnOnce() -> Result<R, SectionError>,
    ) -> Result<R, SectionError> {
        let lock = self.region.hdr(hdr::STRUCT_LOCK);
        let mut expect = 0;
        let mut taken = false;
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
                    if i > 64 { yield_now() } else { spin_hint() }
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
    use super::hash_id;
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
            match r.lookup_home(key.as_bytes(), r.key_of(key.as_bytes())) {
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
}
