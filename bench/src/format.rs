//! Labels for sizes, section counts and times in the runners' tables.

/// `4096` → `4 KiB`, `1048576` → `1 MiB`, `100` → `100 B` (exact multiples only).
pub fn size_label(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// `1000` → `1k sect`, `1000000` → `1M sect`, `1024` → `1024 sect`.
pub fn count_label(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M sect", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k sect", n / 1_000),
        n => format!("{n} sect"),
    }
}

/// Nanoseconds for people: `129.4 ns`, `24.1 us`, `12.3 ms`; `-` when not finite.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".to_owned()
    } else if ns >= 10_000_000.0 {
        format!("{:.1} ms", ns / 1e6)
    } else if ns >= 10_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_use_the_largest_exact_unit() {
        assert_eq!(size_label(64), "64 B");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(16 << 20), "16 MiB");
        assert_eq!(size_label(1536), "1536 B");
        assert_eq!(count_label(1_000_000), "1M sect");
        assert_eq!(count_label(1_000), "1k sect");
        assert_eq!(count_label(1024), "1024 sect");
        assert_eq!(fmt_ns(129.44), "129.4 ns");
        assert_eq!(fmt_ns(24_100.0), "24.1 us");
        assert_eq!(fmt_ns(f64::NAN), "-");
    }
}
