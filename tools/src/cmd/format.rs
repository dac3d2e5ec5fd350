//! Human formats shared by the operator commands: sizes, durations, wall-clock times,
//! checkpoint names and section ids, aligned tables and the hex dump.

use std::fmt::Write as _;
use std::io::{self, Write};

use ckpt_engine::TIME_END;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// `1536` → `1.5 KiB`; below 1 KiB in bytes.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in nanoseconds, to its two largest units: `1m 40s`, `2h 5m`, `250ms`.
pub(crate) fn duration(ns: i64) -> String {
    if ns < 0 {
        return format!("-{}", duration(ns.checked_neg().unwrap_or(i64::MAX)));
    }
    if ns < NANOS_PER_SEC {
        return match ns {
            0 => "0s".to_owned(),
            1..1_000 => format!("{ns}ns"),
            1_000..1_000_000 => format!("{}µs", ns / 1_000),
            _ => format!("{}ms", ns / 1_000_000),
        };
    }
    let secs = ns / NANOS_PER_SEC;
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|p| p.0 != 0).unwrap_or(3);
    let mut out = format!("{}{}", parts[first].0, parts[first].1);
    if let Some(next) = parts.get(first + 1).filter(|p| p.0 != 0) {
        let _ = write!(out, " {}{}", next.0, next.1);
    }
    out
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A wall-clock time (ns since the epoch) in RFC 3339, UTC, to the millisecond:
/// `2025-06-01T12:00:00.123Z`.
pub(crate) fn time(ns: i64) -> String {
    let secs = ns.div_euclid(NANOS_PER_SEC);
    let millis = ns.rem_euclid(NANOS_PER_SEC) / 1_000_000;
    let (year, month, day) = civil(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3_600,
        tod / 60 % 60,
        tod % 60
    )
}

/// `t` relative to `now` (both ns since the epoch): `3s ago`, `in 5m`.
pub(crate) fn relative(t: i64, now: i64) -> String {
    let d = now.saturating_sub(t);
    if d >= 0 {
        format!("{} ago", duration(d))
    } else {
        format!("in {}", duration(d.checked_neg().unwrap_or(i64::MAX)))
    }
}

/// A section's expiration: `never`, or the time and how far it is.
pub(crate) fn expiration(ns: i64, now: i64) -> String {
    if ns == TIME_END {
        return "never".to_owned();
    }
    let when = if ns <= now {
        "expired".to_owned()
    } else {
        relative(ns, now)
    };
    format!("{} ({when})", time(ns))
}

/// A checkpoint name for display: printable ASCII and UTF-8 as they are, anything else
/// (control bytes, invalid UTF-8) escaped, so hostile names cannot drive the terminal.
pub(crate) fn name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A section id for display, in the form [`parse_section_id`] reads back: printable ASCII
/// as text (`11`, `state`), anything else in hex (`0x00ff`); the default section (empty
/// id) is `(default)`.
pub(crate) fn section_id(id: &[u8]) -> String {
    if id.is_empty() {
        return "(default)".to_owned();
    }
    if is_text_id(id) {
        return String::from_utf8_lossy(id).into_owned();
    }
    format!("0x{}", hex(id))
}

fn is_text_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.iter().all(|b| (0x20..0x7f).contains(b))
        && !id.starts_with(b"0x")
        && id.first() != Some(&b' ')
        && id.last() != Some(&b' ')
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A section id as given on the command line: `0x` and hex digits, or the text itself.
pub(crate) fn parse_section_id(arg: &str) -> Result<Vec<u8>, String> {
    let Some(digits) = arg.strip_prefix("0x") else {
        return Ok(arg.as_bytes().to_vec());
    };
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!(
            "section id {arg:?}: hex needs an even number of digits after 0x"
        ));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("section id {arg:?}: {digits:?} is not hex"))
        })
        .collect()
}

/// `xxd`'s layout: offset, 16 bytes in groups of two, then the printable ones.
pub(crate) fn hexdump(data: &[u8], out: &mut dyn Write) -> io::Result<()> {
    let mut line = String::with_capacity(80);
    for (n, row) in data.chunks(16).enumerate() {
        line.clear();
        let _ = write!(line, "{:08x}:", n * 16);
        for pair in row.chunks(2) {
            line.push(' ');
            for b in pair {
                let _ = write!(line, "{b:02x}");
            }
        }
        // Pad a short last row to the width of a full one (8 groups of 5 characters).
        let written = row.len() * 2 + row.len().div_ceil(2);
        line.extend(core::iter::repeat_n(' ', 40 - written));
        line.push_str("  ");
        line.extend(row.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        line.push('\n');
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Column alignment of a [`Table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// Rows printed with aligned columns, two spaces apart.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[(&'static str, Align)]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    /// Writes the header line, then the rows.
    pub(crate) fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        self.render(true, out)
    }

    /// Writes the rows only (a key/value list).
    pub(crate) fn write_rows(&self, out: &mut dyn Write) -> io::Result<()> {
        self.render(false, out)
    }

    fn render(&self, with_header: bool, out: &mut dyn Write) -> io::Result<()> {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([if with_header {
                    self.header[i].0.len()
                } else {
                    0
                }])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let header: Vec<String> = self.header.iter().map(|h| h.0.to_owned()).collect();
        let mut text = String::new();
        let header = with_header.then_some(&header);
        for row in header.into_iter().chain(&self.rows) {
            let mut line = String::new();
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                match self.header[i].1 {
                    Align::Right => {
                        line.extend(core::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left => {
                        line.push_str(cell);
                        if i != last {
                            line.extend(core::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        out.write_all(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units_with_one_decimal() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
        assert_eq!(size(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(250_000_000), "250ms");
        assert_eq!(duration(100 * NANOS_PER_SEC), "1m 40s");
        assert_eq!(duration(3_600 * NANOS_PER_SEC), "1h");
        assert_eq!(duration(90_061 * NANOS_PER_SEC), "1d 1h");
        assert_eq!(duration(i64::MAX), "106751d 23h");
        assert_eq!(duration(i64::MIN), "-106751d 23h");
    }

    #[test]
    fn times_are_rfc3339_utc_to_the_millisecond() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(1_709_210_096_789_000_000), "2024-02-29T12:34:56.789Z");
        assert_eq!(time(-1), "1969-12-31T23:59:59.999Z");
        // Out of any calendar's range, still no panic.
        let _ = time(i64::MAX);
        let _ = time(i64::MIN);
    }

    #[test]
    fn section_ids_round_trip_through_their_display_form() {
        for id in [&b"11"[..], b"state", b"\x00\xff", b"0xab", b" x", b"a\nb"] {
            assert_eq!(parse_section_id(&section_id(id)).unwrap(), id);
        }
        assert_eq!(section_id(b"\x00\xff"), "0x00ff");
        assert_eq!(section_id(b""), "(default)");
        assert!(parse_section_id("0xabc").is_err());
        assert!(parse_section_id("0xzz").is_err());
    }

    #[test]
    fn names_escape_control_bytes_and_invalid_utf8() {
        assert_eq!(name(b"safCkpt=a"), "safCkpt=a");
        assert_eq!(name(b"a\x1b[2Jb\xff"), "a\\u{1b}[2Jb\\xff");
    }

    #[test]
    fn hexdump_matches_xxd() {
        let mut out = Vec::new();
        hexdump(b"The Checkpoint Service\n", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "00000000: 5468 6520 4368 6563 6b70 6f69 6e74 2053  The Checkpoint S\n\
             00000010: 6572 7669 6365 0a                        ervice.\n"
        );
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&[("NAME", Align::Left), ("N", Align::Right)]);
        t.push(vec!["a".into(), "100".into()]);
        t.push(vec!["long-name".into(), "2".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME         N\na          100\nlong-name    2\n"
        );
    }
}
