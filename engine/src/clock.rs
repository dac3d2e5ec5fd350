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
//!   [`MAX_FAILURES`] such starts in a row the TSC is no longer used in this process.
//! - The TSC is used only on x86-64 with an invariant TSC and when the kernel's own
//!   clocksource is `tsc`. Elsewhere, and until the first calibration is done, every call
//!   is `clock_gettime`.
//!
//! The anchor is process-global, written by one thread at a time under a sequence lock
//! (readers never wait: a reader that meets a writer asks the kernel). All of it is
//! process-local state: nothing here lives in shared memory.

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
/// Disagreements in a row after which this process stops using the TSC.
pub(crate) const MAX_FAILURES: u64 = 4;

#[cfg(all(target_arch = "x86_64", not(miri)))]
mod tsc {
    use super::*;

    /// Sequence lock over the anchor: odd while a thread rewrites it; 0 until the first
    /// anchor.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    /// Anchor: TSC ticks and realtime ns of one sample.
    static BASE_TSC: AtomicU64 = AtomicU64::new(0);
    static BASE_NS: AtomicU64 = AtomicU64::new(0);
    /// ns per tick as a 32.32 fixed-point number; 0 while uncalibrated.
    static MULT: AtomicU64 = AtomicU64::new(0);
    /// Ticks an anchor may be extrapolated over (0 while uncalibrated).
    static HORIZON: AtomicU64 = AtomicU64::new(0);
    /// Calibration origin: the sample the rate is measured from.
    static CAL_TSC: AtomicU64 = AtomicU64::new(0);
    static CAL_NS: AtomicU64 = AtomicU64::new(0);
    /// Disagreements in a row.
    static FAILURES: AtomicU64 = AtomicU64::new(0);
    /// 0 unknown, 1 usable, 2 not to be used.
    static USABLE: AtomicU64 = AtomicU64::new(0);

    #[inline(always)]
    fn rdtsc() -> u64 {
        // SAFETY: `rdtsc` has no preconditions on x86-64; it reads a counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    #[inline]
    pub(super) fn now() -> i64 {
        let t = rdtsc();
        let seq = SEQ.load(Acquire);
        let base = BASE_TSC.load(Relaxed);
        let ns = BASE_NS.load(Relaxed);
        let mult = MULT.load(Relaxed);
        let horizon = HORIZON.load(Relaxed);
        fence(Acquire);
        let delta = t.wrapping_sub(base);
        if seq & 1 == 0 && delta < horizon && SEQ.load(Relaxed) == seq {
            // `delta < horizon` (at most a few ms of ticks) and `mult` below 2^32 (under
            // one ns per tick for any TSC above 1 GHz; a slower one is refused below)
            // keep the product inside 64 bits.
            return (ns as i64).wrapping_add(((delta * mult) >> 32) as i64);
        }
        slow()
    }

    /// Whether this machine's TSC may stand in for the kernel's clock.
    fn usable() -> bool {
        match USABLE.load(Relaxed) {
            1 => return true,
            2 => return false,
            _ => {}
        }
        // CPUID 0x8000_0007 EDX bit 8: the TSC runs at a constant rate in every C- and
        // P-state. Then the kernel must have chosen it as its own clocksource.
        let invariant = {
            let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
            max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
        };
        let kernel_uses_it = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|s| s.trim() == "tsc");
        let ok = invariant && kernel_uses_it;
        USABLE.store(if ok { 1 } else { 2 }, Relaxed);
        ok
    }

    /// The kernel's clock, and a new anchor (or calibration step) when this thread gets
    /// the sequence lock.
    #[cold]
    fn slow() -> i64 {
        if !usable() {
            return os_realtime();
        }
        // One sample: realtime between two TSC reads close together.
        let a = rdtsc();
        let ns = os_realtime();
        let b = rdtsc();
        if b.wrapping_sub(a) > MAX_PAIR_TICKS || ns <= 0 {
            return ns;
        }
        let t = a + (b - a) / 2;
        let seq = SEQ.load(Relaxed);
        if seq & 1 == 1
            || SEQ
                .compare_exchange(seq, seq + 1, Acquire, Relaxed)
                .is_err()
        {
            return ns;
        }
        // The lock is held: the stores below are seen only by readers that then see an
        // odd or changed SEQ.
        fence(Release);
        reanchor(t, ns);
        SEQ.store(seq + 2, Release);
        ns
    }

    /// Under the lock: takes the sample `(t, ns)` as the new anchor and refines the rate.
    fn reanchor(t: u64, ns: i64) {
        let restart = |failed: bool| {
            CAL_TSC.store(t, Relaxed);
            CAL_NS.store(ns as u64, Relaxed);
            MULT.store(0, Relaxed);
            HORIZON.store(0, Relaxed);
            if failed && FAILURES.fetch_add(1, Relaxed) + 1 >= MAX_FAILURES {
                USABLE.store(2, Relaxed);
            }
        };
        let (old_tsc, old_ns, old_mult) = (
            BASE_TSC.load(Relaxed),
            BASE_NS.load(Relaxed) as i64,
            MULT.load(Relaxed),
        );
        BASE_TSC.store(t, Relaxed);
        BASE_NS.store(ns as u64, Relaxed);
        let (cal_tsc, cal_ns) = (CAL_TSC.load(Relaxed), CAL_NS.load(Relaxed) as i64);
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
        }
        let elapsed_ns = (ns - cal_ns) as u64;
        if (elapsed_ns as i64) < MIN_BASELINE_NS {
            return;
        }
        let ticks = t - cal_tsc;
        let mult = ((u128::from(elapsed_ns) << 32) / u128::from(ticks)) as u64;
        if mult == 0 || mult >= 1 << 32 {
            // A TSC below 1 GHz, or nonsense: leave it to the kernel.
            USABLE.store(2, Relaxed);
            return;
        }
        // The horizon: 1/64 of the baseline, at most MAX_HORIZON_NS, in ticks.
        let horizon_ns = (elapsed_ns / 64).min(MAX_HORIZON_NS as u64);
        let horizon = ((u128::from(horizon_ns) << 32) / u128::from(mult)) as u64;
        MULT.store(mult, Relaxed);
        HORIZON.store(horizon, Relaxed);
        FAILURES.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
