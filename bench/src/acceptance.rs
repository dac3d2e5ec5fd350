//! The engine's acceptance ratios, measured the way every same-run ratio of this crate is:
//! each pair in interleaved batches ([`crate::measure_pair`]), the pair repeated in rounds in
//! rotation with the others, and the median round judged ([`Rounds`]). This VM has phases
//! of seconds in which everything runs up to 1.5x slower; interleaving keeps a ratio honest
//! through them.
//!
//! ```no_run
//! use std::time::Duration;
//! use ckpt_bench::{BenchDomain, EngineRatio, EngineRatios, LOOKUP_SECTIONS};
//!
//! let domain = BenchDomain::new().expect("a writable /dev/shm");
//! let mut sut = EngineRatios::new(&domain, LOOKUP_SECTIONS).expect("tmpfs space");
//! for _ in 0..5 {
//!     sut.round(Duration::from_millis(3));
//! }
//! let overwrite = sut.rounds(EngineRatio::Overwrite4096).median().expect("5 rounds");
//! println!("overwrite 4 KiB / memcpy: {:.2}x", overwrite.ratio);
//! ```

use std::time::{Duration, Instant};

use crate::{
    BenchDomain, DataCase, LookupCase, Op, PairTiming, SIZES, SetupError, attributes,
    estimated_object_size, measure_pair_for,
};
use ckpt_engine::ReplicaLimits;

/// One same-run ratio measured in several rounds.
#[derive(Clone, Debug, Default)]
pub struct Rounds(Vec<PairTiming>);

impl Rounds {
    /// Adds one round.
    pub fn push(&mut self, t: PairTiming) {
        self.0.push(t);
    }

    /// Rounds so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no round was measured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The round with the median ratio (the upper one of an even count).
    pub fn median(&self) -> Option<PairTiming> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
        v.get(v.len() / 2).copied()
    }

    /// The smallest and largest ratio over the rounds (`(inf, 0)` when empty).
    pub fn spread(&self) -> (f64, f64) {
        let r = self.0.iter().map(|t| t.ratio);
        (
            r.clone().fold(f64::INFINITY, f64::min),
            r.fold(0.0, f64::max),
        )
    }
}

/// The engine's acceptance ratios (issue 2), by their report key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineRatio {
    /// 4 KiB overwrite ÷ a memcpy into the same working set.
    Overwrite4096,
    /// 4 KiB copy-out read ÷ a memcpy out of the same working set.
    Read4096,
    /// Borrow of a 1 MiB section ÷ borrow of a 64 B section.
    Borrow1MiBVs64,
    /// Lookup of one hot section among 1M sections ÷ among 1k.
    LookupHot,
}

impl EngineRatio {
    /// Every ratio, in report order.
    pub const ALL: [Self; 4] = [
        Self::Overwrite4096,
        Self::Read4096,
        Self::Borrow1MiBVs64,
        Self::LookupHot,
    ];

    /// The key in JSON reports.
    pub fn key(self) -> &'static str {
        match self {
            Self::Overwrite4096 => "overwrite_4096_vs_memcpy",
            Self::Read4096 => "read_4096_vs_memcpy",
            Self::Borrow1MiBVs64 => "borrow_1048576_vs_64",
            Self::LookupHot => "lookup_1m_vs_1k",
        }
    }

    /// What is divided by what, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Overwrite4096 => "overwrite 4 KiB / fair memcpy",
            Self::Read4096 => "copy-out read 4 KiB / fair memcpy",
            Self::Borrow1MiBVs64 => "borrow 1 MiB / borrow 64 B",
            Self::LookupHot => "lookup hot, 1M / 1k sections",
        }
    }

    /// The target: the ratio must stay at or below it.
    pub fn limit(self) -> f64 {
        match self {
            Self::Overwrite4096 | Self::Read4096 | Self::Borrow1MiBVs64 => 1.5,
            Self::LookupHot => 2.0,
        }
    }
}

/// The cases behind [`EngineRatio`], each pair measured once per [`Self::round`].
#[derive(Debug)]
pub struct EngineRatios {
    overwrite: DataCase,
    overwrite_base: crate::Baseline,
    read: DataCase,
    read_base: crate::Baseline,
    borrow_small: DataCase,
    borrow_large: DataCase,
    few: LookupCase,
    many: LookupCase,
    lookup_setup: Duration,
    rounds: [Rounds; 4],
    cold: Rounds,
}

impl EngineRatios {
    /// Sets up every case: 4 KiB overwrite and read with their baselines, 64 B and 1 MiB
    /// borrows, and lookups among `lookup_sections[0]` and `lookup_sections[1]` sections
    /// (every section created, which takes a few seconds for a million).
    pub fn new(domain: &BenchDomain, lookup_sections: [u32; 2]) -> Result<Self, SetupError> {
        let overwrite = DataCase::new(domain, Op::Overwrite, 4096)?;
        let overwrite_base = overwrite.baseline();
        let read = DataCase::new(domain, Op::Read, 4096)?;
        let read_base = read.baseline();
        let borrow_small = DataCase::new(domain, Op::Borrow, SIZES[0])?;
        let borrow_large = DataCase::new(domain, Op::Borrow, SIZES[SIZES.len() - 1])?;
        let few = LookupCase::new(domain, lookup_sections[0])?;
        let t = Instant::now();
        let many = LookupCase::new(domain, lookup_sections[1])?;
        let lookup_setup = t.elapsed();
        Ok(Self {
            overwrite,
            overwrite_base,
            read,
            read_base,
            borrow_small,
            borrow_large,
            few,
            many,
            lookup_setup,
            rounds: Default::default(),
            cold: Rounds::default(),
        })
    }

    /// An upper bound of the `/dev/shm` and memory bytes [`Self::new`] takes.
    pub fn estimated_bytes(lookup_sections: [u32; 2]) -> u64 {
        let data = |size: usize| {
            // The object plus a baseline over at most all its slots.
            let attrs = attributes(2, size as u64);
            2 * estimated_object_size(&attrs, &ReplicaLimits::default())
        };
        let lookups: u64 = lookup_sections
            .iter()
            .map(|&n| estimated_object_size(&attributes(n, 64), &ReplicaLimits::default()))
            .sum();
        2 * data(4096) + data(SIZES[0]) + data(SIZES[SIZES.len() - 1]) + lookups
    }

    /// Measures every pair once, each with batches of about `batch`; the cold-key lookups
    /// go beside the hot ones (see [`Self::cold_lookup`]).
    pub fn round(&mut self, batch: Duration) {
        let [overwrite, read, borrow, lookup] = &mut self.rounds;
        overwrite.push(measure_pair_for(
            batch,
            || self.overwrite.run(),
            || self.overwrite_base.run(),
        ));
        read.push(measure_pair_for(
            batch,
            || self.read.run(),
            || self.read_base.run(),
        ));
        borrow.push(measure_pair_for(
            batch,
            || self.borrow_large.run(),
            || self.borrow_small.run(),
        ));
        lookup.push(measure_pair_for(
            batch,
            || self.many.hot(),
            || self.few.hot(),
        ));
        self.cold.push(measure_pair_for(
            batch,
            || self.many.cold(),
            || self.few.cold(),
        ));
    }

    /// The rounds of one ratio.
    pub fn rounds(&self, r: EngineRatio) -> &Rounds {
        let i = EngineRatio::ALL
            .iter()
            .position(|x| *x == r)
            .unwrap_or_else(|| unreachable!("ALL lists every ratio"));
        &self.rounds[i]
    }

    /// Lookups of uniformly random existing keys, many ÷ few sections (context: one cache
    /// miss per lookup once the index outgrows the caches).
    pub fn cold_lookup(&self) -> &Rounds {
        &self.cold
    }

    /// The 4 KiB overwrite case (engine side of the API and peer ratios).
    pub fn overwrite(&mut self) -> &mut DataCase {
        &mut self.overwrite
    }

    /// The 4 KiB copy-out read case.
    pub fn read(&mut self) -> &mut DataCase {
        &mut self.read
    }

    /// The lookup cases: among few and among many sections.
    pub fn lookups(&mut self) -> (&mut LookupCase, &mut LookupCase) {
        (&mut self.few, &mut self.many)
    }

    /// How long creating the larger lookup case's sections took.
    pub fn lookup_setup(&self) -> Duration {
        self.lookup_setup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(ratio: f64) -> PairTiming {
        PairTiming {
            a_ns: ratio * 10.0,
            b_ns: 10.0,
            ratio,
        }
    }

    #[test]
    fn the_median_round_is_chosen_by_ratio_and_the_spread_spans_all() {
        let mut sut = Rounds::default();
        assert!(sut.median().is_none() && sut.is_empty());
        for r in [3.0, 1.0, 2.0] {
            sut.push(timing(r));
        }
        assert_eq!(sut.median(), Some(timing(2.0)));
        assert_eq!(sut.spread(), (1.0, 3.0));
        assert_eq!(sut.len(), 3);
    }

    #[test]
    fn keys_and_limits_name_every_ratio() {
        let keys: Vec<&str> = EngineRatio::ALL.iter().map(|r| r.key()).collect();
        assert_eq!(
            keys,
            [
                "overwrite_4096_vs_memcpy",
                "read_4096_vs_memcpy",
                "borrow_1048576_vs_64",
                "lookup_1m_vs_1k"
            ]
        );
        assert!(EngineRatio::ALL.iter().all(|r| r.limit() >= 1.5));
    }
}
