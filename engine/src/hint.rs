//! A two-level bitmap of "maybe free" indices: the allocation hint for slots and
//! descriptors.
//!
//! The truth about whether an index is free is always its own state word (claimed by a
//! compare-and-swap that writes the owner's identity). This bitmap only says where to look,
//! so it may be stale in both directions without harm: a set bit whose state word is not
//! free costs one failed CAS; a free index whose bit is clear is invisible until someone
//! sets it again. Every path that frees an index records that index first (in its agent
//! record), so recovery after a crash re-sets the bit; bits are idempotent, so redoing is
//! always safe. There are no links, so corruption cannot create cycles.
//!
//! Level 0 has one bit per index; level 1 one bit per level-0 word ("this word may have a
//! bit set"). Clearing follows clear-then-recheck so a concurrent `set` is never hidden.

use crate::sync::{AtomicU64, Ordering::SeqCst};

/// A view over the hint words of one region.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hint<'a> {
    l0: &'a [AtomicU64],
    l1: &'a [AtomicU64],
    len: u32,
}

/// Number of `u64` words a hint over `len` indices needs.
pub(crate) const fn words_for(len: u64) -> u64 {
    let l0 = len.div_ceil(64);
    l0 + l0.div_ceil(64)
}

impl<'a> Hint<'a> {
    /// Splits `words` (exactly `words_for(len)` long) into the two levels.
    pub(crate) fn new(words: &'a [AtomicU64], len: u32) -> Self {
        let l0_len = (len as usize).div_ceil(64);
        let (l0, l1) = words.split_at(l0_len.min(words.len()));
        Self { l0, l1, len }
    }

    /// Marks every index free (creation only).
    pub(crate) fn fill(&self) {
        for (w, word) in self.l0.iter().enumerate() {
            let lo = w as u64 * 64;
            let n = (u64::from(self.len) - lo).min(64);
            word.store(if n == 64 { u64::MAX } else { (1u64 << n) - 1 }, SeqCst);
            if let Some(top) = self.l1.get(w / 64) {
                top.fetch_or(1 << (w % 64), SeqCst);
            }
        }
    }

    /// Says index `i` may be free.
    pub(crate) fn set(&self, i: u32) {
        let w = i as usize / 64;
        if let Some(word) = self.l0.get(w) {
            word.fetch_or(1 << (i % 64), SeqCst);
            if let Some(top) = self.l1.get(w / 64) {
                // Skipping the RMW when the summary bit is already set is safe: a `clear`
                // that then drops it re-checks the word after us (SeqCst) and re-sets it.
                let bit = 1 << (w % 64);
                if top.load(SeqCst) & bit == 0 {
                    top.fetch_or(bit, SeqCst);
                }
            }
        }
    }

    /// Says index `i` is taken.
    pub(crate) fn clear(&self, i: u32) {
        let w = i as usize / 64;
        let Some(word) = self.l0.get(w) else { return };
        let bit = 1u64 << (i % 64);
        let prev = word.fetch_and(!bit, SeqCst);
        if prev & !bit == 0
            && let Some(top) = self.l1.get(w / 64)
        {
            top.fetch_and(!(1 << (w % 64)), SeqCst);
            // A concurrent `set` may have landed between our two steps: re-publish it.
            if word.load(SeqCst) != 0 {
                top.fetch_or(1 << (w % 64), SeqCst);
            }
        }
    }

    /// An index whose bit is set, searching from `start` and wrapping.
    pub(crate) fn find(&self, start: u32) -> Option<u32> {
        let tops = self.l1.len();
        if tops == 0 {
            return None;
        }
        let first = (start as usize / 4096) % tops;
        for k in 0..=tops {
            let t = (first + k) % tops;
            let mut summary = self.l1[t].load(SeqCst);
            while summary != 0 {
                let b = summary.trailing_zeros() as usize;
                summary &= summary - 1;
                let w = t * 64 + b;
                let Some(word) = self.l0.get(w) else { break };
                let bits = word.load(SeqCst);
                if bits != 0 {
                    let i = (w * 64) as u64 + u64::from(bits.trailing_zeros());
                    if i < u64::from(self.len) {
                        return Some(i as u32);
                    }
                }
            }
        }
        None
    }

    /// Number of indices whose bit is set (fsck).
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.l0
            .iter()
            .map(|w| u64::from(w.load(SeqCst).count_ones()))
            .sum()
    }

    /// Whether index `i`'s bit is set (fsck).
    pub(crate) fn is_set(&self, i: u32) -> bool {
        self.l0
            .get(i as usize / 64)
            .is_some_and(|w| w.load(SeqCst) & (1 << (i % 64)) != 0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn words(len: u32) -> Vec<AtomicU64> {
        (0..words_for(u64::from(len)))
            .map(|_| AtomicU64::new(0))
            .collect()
    }

    #[test]
    fn fill_then_clear_everything_leaves_nothing_to_find() {
        let w = words(5000);
        let sut = Hint::new(&w, 5000);
        sut.fill();
        assert_eq!(sut.count(), 5000);
        for i in 0..5000 {
            sut.clear(i);
        }
        assert_eq!(sut.find(0), None);
        sut.set(4321);
        assert_eq!(sut.find(0), Some(4321));
        assert_eq!(sut.find(4999), Some(4321));
    }

    #[test]
    fn find_never_returns_an_index_beyond_len() {
        let w = words(70);
        let sut = Hint::new(&w, 70);
        sut.fill();
        for _ in 0..70 {
            let i = sut.find(0).unwrap();
            assert!(i < 70);
            sut.clear(i);
        }
        assert_eq!(sut.find(0), None);
    }

    #[test]
    fn garbage_words_yield_only_in_range_indices() {
        let w = words(100);
        for word in &w {
            word.store(u64::MAX, SeqCst);
        }
        let sut = Hint::new(&w, 100);
        let i = sut.find(7).unwrap();
        assert!(i < 100);
    }
}
