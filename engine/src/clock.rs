//! The wall clock of the data path: `CLOCK_REALTIME`, read through the TSC.
//!
//! Every write stamps its slot with `lastUpdate`, and `clock_gettime(CLOCK_REALTIME)` was
//! the largest single cost of a small overwrite: about 23 ns on the project machine, most
//! of it the vDSO's fenced `rdtsc`. This module reads the TSC without the fence (about
//! 10 ns) and converts it with an anchor `(tsc, ns)` and a rate taken from the kernel's own
//! clock, re-anchoring on `clock_gettime` at least every [`MAX_HORIZON_NS`]:
//!
//! - The rate comes from two samples of (TSC, realtime) at least [`MIN_BASELINE_NS`] apart,
//!   each taken between two TSC reads at most [`MAX_PAIR_TICKS`] apart, so the error a
//!   sample brings is bounded and the rate's relative error is at most twice that over the
//!   baseline. The horizon is at most 1/64 of the baseline: an extrapolated time is off by
//!   at most about 1/32 of one sample's error (a few ns), plus whatever NTP slewing changed
//!   within one horizon (at 500 ppm, 0.5 µs).
//! - Every re-anchor compares the extrapolation with the kernel's answer. More than
//!   [`TOLERANCE_NS`] apart (the clock was set, the VM migrated, the TSC is not what the
//!   kernel said), the calibration starts over from the new sample; after
//!   [`MAX_FAILURES`] such starts in a row (no extrapolation verified between them) the
//!   TSC is no longer used in this process. Between two anchors nothing is checked: a
//!   TSC whose rate changed under the process (a migrated VM) is off by at most the
//!   change over one horizon before the next anchor notices.
//! - The TSC is used only on x86-64 with an invariant TSC and when the kernel's own
//!   clocksource is `tsc`. Elsewhere, and until the first calibration is done, every call
//!   is `clock_gettime`.
//!
//! The anchor ([`TscClock`]) is process-global, written by one thread at a time under a
//! sequence lock (readers never wait: a reader that meets a writer asks the kernel). All
//! of it is process-local state: nothing here lives in shared memory. The clocks it reads
//! come through [`Source`], so the tests can drive it with a machine of their own.

use crate::sync::{AtomicU64, Ordering::*, fence};

/// `CLOCK_REALTIME` from the kernel, in ns since the epoch.
#[inline]
pub(crate) fn os_realtime() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec)
}

/// The wall clock in ns since the epoch: [`os_realtime`], through the TSC where it can be.
#[inline]
pub fn wall_clock() -> i64 {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        tsc::now()
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri))))]
    {
        os_realtime()
    }
}

/// Longest time extrapolated from one anchor.
pub(crate) const MAX_HORIZON_NS: i64 = 1_000_000;
/// Shortest baseline a rate is taken over.
pub(crate) const MIN_BASELINE_NS: i64 = 1_000_000;
/// Widest a (TSC, realtime) sample may be, in TSC ticks, to count.
pub(crate) const MAX_PAIR_TICKS: u64 = 2_000;
/// Largest disagreement between an extrapolation and the kernel before starting over
/// (plus 0.1% of the time extrapolated over).
pub(crate) const TOLERANCE_NS: i64 = 20_000;
/// Disagreements in a row (with no verified extrapolation between them) after which this
/// process stops using the TSC.
pub(crate) const MAX_FAILURES: u64 = 4;

#[cfg_attr(not(all(target_arch = "x86_64", not(miri))), allow(dead_code))]
/// Where a [`TscClock`] reads its two clocks (the machine's, or a test's).
pub(crate) trait Source {
    /// The TSC.
    fn tsc(&self) -> u64;
    /// `CLOCK_REALTIME`, ns since the epoch.
    fn realtime(&self) -> i64;
    /// Whether the TSC may stand in for the kernel's clock at all (asked once).
    fn trusted(&self) -> bool;
}

/// `CLOCK_REALTIME` extrapolated from a TSC (see the module documentation). The words
/// are atomics because the one instance is shared by every thread of the process.
#[cfg_attr(not(all(target_arch = "x86_64", not(miri))), allow(dead_code))]
pub(crate) struct TscClock {
    /// Sequence lock over the anchor: odd while a thread rewrites it; 0 until the first
    /// anchor.
    seq: AtomicU64,
    /// Anchor: TSC ticks and realtime ns of one sample.
    base_tsc: AtomicU64,
    base_ns: AtomicU64,
    /// ns per tick as a 32.32 fixed-point number; 0 while uncalibrated.
    mult: AtomicU64,
    /// Ticks an anchor may be extrapolated over (0 while uncalibrated).
    horizon: AtomicU64,
    /// Calibration origin: the sample the rate is measured from.
    cal_tsc: AtomicU64,
    cal_ns: AtomicU64,
    /// Disagreements in a row.
    failures: AtomicU64,
    /// 0 unknown, 1 usable, 2 not to be used.
    usable: AtomicU64,
}

#[cfg_attr(not(all(target_arch = "x86_64", not(miri))), allow(dead_code))]
impl TscClock {
    pub(crate) const fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            base_tsc: AtomicU64::new(0),
            base_ns: AtomicU64::new(0),
            mult: AtomicU64::new(0),
            horizon: AtomicU64::new(0),
            cal_tsc: AtomicU64::new(0),
            cal_ns: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            usable: AtomicU64::new(0),
        }
    }

    /// The time now, in ns since the epoch.
    #[inline(always)]
    pub(crate) fn now(&self, src: &impl Source) -> i64 {
        let t = src.tsc();
        let seq = self.seq.load(Acquire);
        let base = self.base_tsc.load(Relaxed);
        let ns = self.base_ns.load(Relaxed);
        let mult = self.mult.load(Relaxed);
        let horizon = self.horizon.load(Relaxed);
        fence(Acquire);
        let delta = t.wrapping_sub(base);
        if seq & 1 == 0 && delta < horizon && self.seq.load(Relaxed) == seq {
            // `delta < horizon` (at most a few ms of ticks) and `mult` below 2^32 (under
            // one ns per tick for any TSC above 1 GHz; a slower one is refused below)
            // keep the product inside 64 bits.
            return (ns as i64).wrapping_add(((delta * mult) >> 32) as i64);
        }
        self.slow(src)
    }

    /// Whether the TSC is (still) used.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> bool {
        self.usable.load(Relaxed) != 2
    }

    fn usable(&self, src: &impl Source) -> bool {
        match self.usable.load(Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let ok = src.trusted();
                self.usable.store(if ok { 1 } else { 2 }, Relaxed);
                ok
            }
        }
    }

    /// The kernel's clock, and a new anchor (or calibration step) when this thread gets
    /// the sequence lock.
    #[cold]
    fn slow(&self, src: &impl Source) -> i64 {
        if !self.usable(src) {
            return src.realtime();
        }
        // One sample: realtime between two TSC reads close together.
        let a = src.tsc();
        let ns = src.realtime();
        let b = src.tsc();
        if b.wrapping_sub(a) > MAX_PAIR_TICKS || ns <= 0 {
            return ns;
        }
        let t = a + (b - a) / 2;
        let seq = self.seq.load(Relaxed);
        if seq & 1 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Acquire, Relaxed)
                .is_err()
        {
            return ns;
        }
        // The lock is held: the stores below are seen only by readers that then see an
        // odd or changed sequence.
        fence(Release);
        self.reanchor(t, ns);
        self.seq.store(seq + 2, Release);
        ns
    }

    /// Under the lock: takes the sample `(t, ns)` as the new anchor and refines the rate.
    fn reanchor(&self, t: u64, ns: i64) {
        let restart = |failed: bool| {
            self.cal_tsc.store(t, Relaxed);
            self.cal_ns.store(ns as u64, Relaxed);
            self.mult.store(0, Relaxed);
            self.horizon.store(0, Relaxed);
            if failed && self.failures.fetch_add(1, Relaxed) + 1 >= MAX_FAILURES {
                self.usable.store(2, Relaxed);
            }
        };
        let (old_tsc, old_ns, old_mult) = (
            self.base_tsc.load(Relaxed),
            self.base_ns.load(Relaxed) as i64,
            self.mult.load(Relaxed),
        );
        self.base_tsc.store(t, Relaxed);
        self.base_ns.store(ns as u64, Relaxed);
        let (cal_tsc, cal_ns) = (self.cal_tsc.load(Relaxed), self.cal_ns.load(Relaxed) as i64);
        if cal_ns == 0 || t <= cal_tsc || ns <= cal_ns {
            return restart(false);
        }
        if old_mult != 0 {
            // How far the last anchor's extrapolation is from the kernel now, against a
            // tolerance that grows by 0.1% of the time since that anchor (NTP slews the
            // kernel's clock by at most 0.05%: an idle process must not count that).
            let since = (i128::from(t.wrapping_sub(old_tsc)) * i128::from(old_mult)) >> 32;
            let predicted = i128::from(old_ns) + since;
            if (predicted - i128::from(ns)).abs() > i128::from(TOLERANCE_NS) + since / 1000 {
                return restart(true);
            }
            // Verified: the disagreements, if any, were not in a row.
            self.failures.store(0, Relaxed);
        }
        let elapsed_ns = (ns - cal_ns) as u64;
        if (elapsed_ns as i64) < MIN_BASELINE_NS {
            return;
        }
        let ticks = t - cal_tsc;
        let mult = ((u128::from(elapsed_ns) << 32) / u128::from(ticks)) as u64;
        if mult == 0 || mult >= 1 << 32 {
            // A TSC below 1 GHz, or nonsense: leave it to the kernel.
            self.usable.store(2, Relaxed);
            return;
        }
        // The horizon: 1/64 of the baseline, at most MAX_HORIZON_NS, in ticks.
        let horizon_ns = (elapsed_ns / 64).min(MAX_HORIZON_NS as u64);
        let horizon = ((u128::from(horizon_ns) << 32) / u128::from(mult)) as u64;
        self.mult.store(mult, Relaxed);
        self.horizon.store(horizon, Relaxed);
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod tsc {
    use super::*;

    /// The machine: `rdtsc` and `clock_gettime`.
    pub(super) struct Machine;

    impl Source for Machine {
        #[inline(always)]
        fn tsc(&self) -> u64 {
            // SAFETY: `rdtsc` has no preconditions on x86-64; it reads a counter.
            unsafe { core::arch::x86_64::_rdtsc() }
        }

        #[inline]
        fn realtime(&self) -> i64 {
            os_realtime()
        }

        fn trusted(&self) -> bool {
            // CPUID 0x8000_0007 EDX bit 8: the TSC runs at a constant rate in every C-
            // and P-state. Then the kernel must have chosen it as its own clocksource.
            let invariant = {
                let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
                max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
            };
            let kernel_uses_it = std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|s| s.trim() == "tsc");
            invariant && kernel_uses_it
        }
    }

    /// The process's clock.
    static CLOCK: TscClock = TscClock::new();

    #[inline(always)]
    pub(super) fn now() -> i64 {
        CLOCK.now(&Machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A machine in a test: true time advances `step` ns at every read of either clock;
    /// the TSC ticks `milliticks_per_ns` thousandths of a tick per ns; the kernel's clock is true
    /// time plus `offset`, plus up to `jitter` ns of noise per read.
    struct Fake {
        t: Cell<u64>,
        step: u64,
        milliticks_per_ns: u64,
        offset: Cell<i64>,
        jitter: u64,
        noise: Cell<u64>,
        trusted: bool,
        kernel_reads: Cell<u64>,
    }

    const EPOCH: i64 = 1_790_000_000_000_000_000;

    impl Fake {
        fn new(milliticks_per_ns: u64) -> Self {
            Self {
                t: Cell::new(1_000_000_000),
                step: 20,
                milliticks_per_ns,
                offset: Cell::new(0),
                jitter: 0,
                noise: Cell::new(0x9e37_79b9_7f4a_7c15),
                trusted: true,
                kernel_reads: Cell::new(0),
            }
        }

        fn advance(&self, ns: u64) {
            self.t.set(self.t.get() + ns);
        }

        /// The kernel's clock right now, without noise and without advancing.
        fn truth(&self) -> i64 {
            EPOCH + self.t.get() as i64 + self.offset.get()
        }
    }

    impl Source for Fake {
        fn tsc(&self) -> u64 {
            self.advance(self.step);
            self.t.get() * self.milliticks_per_ns / 1000
        }

        fn realtime(&self) -> i64 {
            self.advance(self.step);
            self.kernel_reads.set(self.kernel_reads.get() + 1);
            let mut x = self.noise.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.noise.set(x);
            let noise = if self.jitter == 0 {
                0
            } else {
                (x % (2 * self.jitter)) as i64 - self.jitter as i64
            };
            self.truth() + noise
        }

        fn trusted(&self) -> bool {
            self.trusted
        }
    }

    /// Calls `now` for `ns` of fake time, one call per `gap` ns; returns the worst
    /// distance from the kernel's clock.
    fn run(clock: &TscClock, src: &Fake, ns: u64, gap: u64) -> i64 {
        let until = src.t.get() + ns;
        let mut worst = 0;
        while src.t.get() < until {
            src.advance(gap);
            let got = clock.now(src);
            worst = worst.max((got - src.truth()).abs());
        }
        worst
    }

    #[test]
    fn a_calibrated_clock_follows_the_kernel_within_a_few_ns_and_rarely_asks_it() {
        let src = Fake::new(2_900);
        let clock = TscClock::new();
        // Calibration: a baseline of 64 ms makes the horizon the full millisecond.
        run(&clock, &src, 100_000_000, 1_000);
        let before = src.kernel_reads.get();
        let worst = run(&clock, &src, 100_000_000, 1_000);
        let asked = src.kernel_reads.get() - before;
        assert!(clock.in_use());
        assert!(worst <= 50, "{worst} ns from the kernel's clock");
        // 100000 calls over 100 ms; one re-anchor per millisecond.
        assert!(
            asked <= 200,
            "asked the kernel {asked} times in 100000 calls"
        );
    }

    #[test]
    fn a_step_of_the_kernel_clock_is_followed_at_the_next_anchor() {
        let src = Fake::new(3_000);
        let clock = TscClock::new();
        run(&clock, &src, 100_000_000, 1_000);
        src.offset.set(1_000_000_000);
        // Until the next re-anchor (at most one horizon away) the old time may stand.
        run(&clock, &src, MAX_HORIZON_NS as u64 + 10_000, 1_000);
        let worst = run(&clock, &src, 10_000_000, 1_000);
        assert!(
            worst <= 50,
            "{worst} ns from the kernel's clock after a step"
        );
        assert!(clock.in_use(), "one step must not give up the TSC");
    }

    #[test]
    fn a_tsc_the_kernel_clock_keeps_disagreeing_with_is_given_up() {
        let mut src = Fake::new(3_000);
        // The kernel's clock wanders by up to 200 µs from read to read.
        src.jitter = 200_000;
        let clock = TscClock::new();
        run(&clock, &src, 1_000_000_000, 1_000);
        assert!(!clock.in_use());
        // From then on every answer is the kernel's own.
        let reads = src.kernel_reads.get();
        for _ in 0..1000 {
            clock.now(&src);
        }
        assert_eq!(src.kernel_reads.get() - reads, 1000);
    }

    #[test]
    fn a_tsc_slower_than_one_gigahertz_is_not_used() {
        let src = Fake::new(500);
        let clock = TscClock::new();
        run(&clock, &src, 10_000_000, 1_000);
        assert!(!clock.in_use());
        assert_eq!(clock.now(&src), src.truth());
    }

    #[test]
    fn an_untrusted_tsc_is_never_used() {
        let mut src = Fake::new(3_000);
        src.trusted = false;
        let clock = TscClock::new();
        let reads = src.kernel_reads.get();
        for _ in 0..1000 {
            let got = clock.now(&src);
            assert_eq!(got, src.truth());
        }
        assert_eq!(src.kernel_reads.get() - reads, 1000);
        assert!(!clock.in_use());
    }

    #[test]
    fn the_wall_clock_stays_within_microseconds_of_the_kernels() {
        // Long enough for the calibration to finish and the horizon to grow.
        let until = os_realtime() + 300_000_000;
        let mut worst = 0i64;
        let mut calls = 0u64;
        while os_realtime() < until {
            for _ in 0..1000 {
                let before = os_realtime();
                let t = wall_clock();
                let after = os_realtime();
                calls += 1;
                // A preempted call is not the clock's fault: only tight brackets count.
                if after - before < 5_000 {
                    let off = if t < before {
                        before - t
                    } else if t > after {
                        t - after
                    } else {
                        0
                    };
                    worst = worst.max(off);
                }
            }
        }
        assert!(calls > 1000);
        assert!(
            worst < 2_000,
            "wall_clock strayed {worst} ns outside the kernel's bracket"
        );
    }
}
