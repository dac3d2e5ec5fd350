//! The throughput and latency sweep: every operation of [`SweepCase::OPS`] at every size and
//! section count of the plan that fits this machine ([`Limits`]).
//!
//! Per cell: throughput from the median of [`ckpt_bench::BATCHES`] batches
//! ([`ckpt_bench::measure`], batches [`ckpt_bench::calibrate`]d to the plan's length), and
//! latency percentiles from single calls each timed on its own (`Instant` around one call;
//! the timer's own cost, `timer_overhead_ns` in the context, is included).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use ckpt_bench::{BenchDomain, SweepCase, calibrate, fmt_ns, measure, percentile, size_label};

use super::limits::Limits;
use crate::cmd::format::{Align, Table, size};

/// Sizes, counts and timings of one sweep.
#[derive(Clone, Debug)]
pub struct SweepPlan {
    /// Bytes per call.
    pub sizes: Vec<usize>,
    /// Sections in the rotation (powers of two).
    pub counts: Vec<u32>,
    /// Wall time one throughput batch aims at.
    pub batch: Duration,
    /// Wall time the latency samples of one cell aim at.
    pub latency_time: Duration,
    /// Latency samples per cell at least and at most.
    pub latency_samples: (usize, usize),
}

/// One measured cell.
#[derive(Clone, Debug)]
pub struct Row {
    /// The operation's name.
    pub op: &'static str,
    /// Bytes per call.
    pub size: usize,
    /// Sections in the rotation.
    pub sections: u32,
    /// Median ns per call over the batches.
    pub ns: f64,
    /// Bytes per call over `ns`, in MiB/s.
    pub mib_s: f64,
    /// Single-call latency percentiles, ns.
    pub p50_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// Single calls timed.
    pub samples: usize,
    /// The replica object's bytes.
    pub object_bytes: u64,
}

/// A cell: measured, or skipped with the reason.
#[derive(Clone, Debug)]
pub enum Cell {
    /// It ran.
    Measured(Row),
    /// It did not run.
    Skipped {
        /// The operation's name.
        op: &'static str,
        /// Bytes per call.
        size: usize,
        /// Sections.
        sections: u32,
        /// Why.
        why: String,
    },
}

impl Cell {
    /// `op size x sections`, the cell's name in `skipped`.
    pub fn name(&self) -> String {
        let (op, size, sections) = match self {
            Self::Measured(r) => (r.op, r.size, r.sections),
            Self::Skipped {
                op, size, sections, ..
            } => (*op, *size, *sections),
        };
        format!("sweep {op} {} x {sections}", size_label(size))
    }
}

/// Cells in the plan.
pub fn cells(plan: &SweepPlan) -> usize {
    SweepCase::OPS.len() * plan.sizes.len() * plan.counts.len()
}

/// Runs the sweep; `step` is called before each cell with its name.
pub fn run(
    domain: &BenchDomain,
    limits: &Limits,
    plan: &SweepPlan,
    step: &mut dyn FnMut(&str),
) -> Vec<Cell> {
    let mut out = Vec::with_capacity(cells(plan));
    for &sections in &plan.counts {
        for &bytes in &plan.sizes {
            for op in SweepCase::OPS {
                let name = format!("{op} {} x {sections}", size_label(bytes));
                step(&name);
                let skipped = |why: String| Cell::Skipped {
                    op: op.name(),
                    size: bytes,
                    sections,
                    why,
                };
                let estimate = SweepCase::estimated_bytes(op, bytes, sections);
                if let Err(why) = limits.fits(estimate) {
                    out.push(skipped(why));
                    continue;
                }
                match SweepCase::new(domain, op, bytes, sections) {
                    Ok(mut case) => out.push(Cell::Measured(measure_cell(&mut case, plan))),
                    Err(e) => out.push(skipped(format!("setup failed: {e}"))),
                }
            }
        }
    }
    out
}

fn measure_cell(case: &mut SweepCase, plan: &SweepPlan) -> Row {
    let iters = calibrate(plan.batch, || case.run());
    let ns = measure(iters, || case.run());
    let (lo, hi) = plan.latency_samples;
    let want = (plan.latency_time.as_nanos() as f64 / ns.max(1.0)) as usize;
    let n = want.clamp(lo.max(1), hi.max(lo).max(1));
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        case.run();
        lat.push(t.elapsed().as_nanos() as f64);
    }
    Row {
        op: case.op().name(),
        size: case.size(),
        sections: case.sections(),
        ns,
        mib_s: case.size() as f64 / (1 << 20) as f64 / (ns / 1e9),
        p50_ns: percentile(&lat, 0.5),
        p99_ns: percentile(&lat, 0.99),
        samples: n,
        object_bytes: case.object_size(),
    }
}

/// The median cost of timing one call: two `Instant` reads around nothing.
pub fn timer_overhead_ns() -> f64 {
    let v: Vec<f64> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as f64
        })
        .collect();
    percentile(&v, 0.5)
}

/// MiB/s for people: `812 MiB/s`, `12.4 GiB/s`.
fn rate(mib_s: f64) -> String {
    if mib_s >= 10_240.0 {
        format!("{:.1} GiB/s", mib_s / 1024.0)
    } else {
        format!("{mib_s:.0} MiB/s")
    }
}

/// The table of the sweep, skipped cells included.
pub fn write_table(cells: &[Cell], out: &mut dyn Write) -> io::Result<()> {
    let mut table = Table::new(&[
        ("op", Align::Left),
        ("size", Align::Right),
        ("sections", Align::Right),
        ("ns/op", Align::Right),
        ("throughput", Align::Right),
        ("p50", Align::Right),
        ("p99", Align::Right),
        ("samples", Align::Right),
        ("object", Align::Right),
    ]);
    for cell in cells {
        match cell {
            Cell::Measured(r) => table.push(vec![
                r.op.to_owned(),
                size_label(r.size),
                r.sections.to_string(),
                fmt_ns(r.ns),
                rate(r.mib_s),
                fmt_ns(r.p50_ns),
                fmt_ns(r.p99_ns),
                r.samples.to_string(),
                size(r.object_bytes),
            ]),
            Cell::Skipped {
                op, size, sections, ..
            } => table.push(vec![
                (*op).to_owned(),
                size_label(*size),
                sections.to_string(),
                "skipped".to_owned(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]),
        }
    }
    table.write(out)
}

/// The sweep as CSV: one line per cell; skipped cells have empty figures and the reason.
pub fn write_csv(cells: &[Cell], out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "op,size_bytes,sections,ns_per_op,mib_per_s,p50_ns,p99_ns,latency_samples,object_bytes,skipped"
    )?;
    for cell in cells {
        match cell {
            Cell::Measured(r) => writeln!(
                out,
                "{},{},{},{:.1},{:.1},{:.0},{:.0},{},{},",
                r.op,
                r.size,
                r.sections,
                r.ns,
                r.mib_s,
                r.p50_ns,
                r.p99_ns,
                r.samples,
                r.object_bytes
            )?,
            Cell::Skipped {
                op,
                size,
                sections,
                why,
            } => writeln!(
                out,
                "{op},{size},{sections},,,,,,,\"{}\"",
                why.replace('"', "\"\"")
            )?,
        }
    }
    Ok(())
}

/// The measured cells as JSON objects.
pub fn json_rows(cells: &[Cell]) -> serde_json::Value {
    use super::report::number;
    cells
        .iter()
        .filter_map(|c| match c {
            Cell::Measured(r) => Some(serde_json::json!({
                "op": r.op,
                "size": r.size,
                "sections": r.sections,
                "ns_per_op": number(r.ns),
                "mib_per_s": number(r.mib_s),
                "p50_ns": number(r.p50_ns),
                "p99_ns": number(r.p99_ns),
                "latency_samples": r.samples,
                "object_bytes": r.object_bytes,
            })),
            Cell::Skipped { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Cell> {
        vec![
            Cell::Measured(Row {
                op: "overwrite",
                size: 64,
                sections: 1,
                ns: 50.0,
                mib_s: 1220.7,
                p50_ns: 60.0,
                p99_ns: 90.0,
                samples: 100,
                object_bytes: 1 << 20,
            }),
            Cell::Skipped {
                op: "read",
                size: 16 << 20,
                sections: 65536,
                why: "needs about 1.0 TiB, \"too much\"".to_owned(),
            },
        ]
    }

    #[test]
    fn csv_has_a_line_per_cell_and_quotes_reasons() {
        let mut out = Vec::new();
        write_csv(&sample(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], "overwrite,64,1,50.0,1220.7,60,90,100,1048576,");
        assert!(lines[2].ends_with(",\"needs about 1.0 TiB, \"\"too much\"\"\""));
    }

    #[test]
    fn skipped_cells_are_named_and_shown() {
        let cells = sample();
        assert_eq!(cells[1].name(), "sweep read 16 MiB x 65536");
        let mut out = Vec::new();
        write_table(&cells, &mut out).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("skipped"));
    }
}
