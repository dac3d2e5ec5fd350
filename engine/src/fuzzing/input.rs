//! The fuzz input as a stream of small bounded choices. Reads past the end give zeros, so
//! every byte string is a valid input and a truncated one is a shorter run, never an error.

/// A cursor over the fuzz input.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A value in `0..n` (0 when `n` is 0), from one byte when `n` fits one, else four.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        if n <= 256 {
            u64::from(self.u8()) % n
        } else {
            u64::from(self.u32()) % n
        }
    }

    /// A value in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        let span = hi.abs_diff(lo).saturating_add(1);
        lo.wrapping_add(self.below(span) as i64)
    }

    /// Picks an index by weights: `weights[i]` out of their sum.
    pub(crate) fn weighted(&mut self, weights: &[u8]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }

    /// `len` bytes made from one seed byte (`b, b+1, ...`), so that long data costs one
    /// input byte and offsets stay visible in the bytes.
    pub(crate) fn data(&mut self, len: usize) -> Vec<u8> {
        let b = self.u8();
        (0..len).map(|i| b.wrapping_add(i as u8)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero() {
        let mut sut = Input::new(&[7]);
        assert_eq!(sut.u8(), 7);
        assert!(sut.is_empty());
        assert_eq!((sut.u8(), sut.u32(), sut.below(5)), (0, 0, 0));
    }

    #[test]
    fn range_and_weighted_stay_in_bounds() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut sut = Input::new(&bytes);
        while !sut.is_empty() {
            assert!((-2..=3).contains(&sut.range(-2, 3)));
            assert!(sut.weighted(&[1, 0, 3]) != 1);
        }
        assert_eq!(Input::new(&[]).range(i64::MIN, i64::MAX), i64::MIN);
    }
}
