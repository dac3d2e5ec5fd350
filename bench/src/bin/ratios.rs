//! `ratios`: every benchmarked engine operation beside its fair baseline, in one run, and the
//! acceptance ratios with their targets.
//!
//! ```text
//! cargo run --release -p ckpt-bench --bin ratios [-- --json] [-- --strict]
//! ```
//!
//! `--json` prints one JSON object instead of the text table; `--strict` exits with status 1
//! when a target fails.
//!
//! Each table row is one [`measure_pair`]: the op and its baseline in interleaved batches,
//! the ratio being the median of per-batch ratios. The acceptance ratios are then measured
//! again, [`ROUNDS`] times each in rotation, and the median round is checked against the
//! target (the spread over rounds is printed beside it): this VM has phases of seconds in
//! which everything runs up to 1.5x slower, and interleaving is what keeps a ratio honest
//! through them.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ckpt_bench::{
    ApiCase, BenchDomain, DataCase, LOOKUP_SECTIONS, LookupCase, Op, PageBuf, PairTiming, SECTION,
    SIZES, calibrate, measure_pair,
};

/// Wall time one batch aims at.
const BATCH: Duration = Duration::from_millis(3);
/// Repetitions of each acceptance pair.
const ROUNDS: usize = 5;

struct Row {
    op: String,
    size: String,
    ns: f64,
    baseline: String,
    baseline_ns: f64,
    ratio: f64,
    note: String,
}

struct Target {
    name: &'static str,
    limit: f64,
    rounds: Vec<PairTiming>,
    /// A second pair reported beside the checked one (cold lookups).
    beside: Vec<PairTiming>,
}

impl Target {
    fn median(&self) -> PairTiming {
        let mut v = self.rounds.clone();
        v.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
        v[v.len() / 2]
    }
    fn spread(&self) -> (f64, f64) {
        let r = self.rounds.iter().map(|t| t.ratio);
        (
            r.clone().fold(f64::INFINITY, f64::min),
            r.fold(0.0, f64::max),
        )
    }
    fn pass(&self) -> bool {
        self.median().ratio <= self.limit
    }
    fn detail(&self) -> String {
        let m = self.median();
        let (lo, hi) = self.spread();
        let mut s = format!(
            "{} vs {}, rounds {lo:.2}..{hi:.2}",
            fmt_ns(m.a_ns),
            fmt_ns(m.b_ns)
        );
        if !self.beside.is_empty() {
            let mut v = self.beside.clone();
            v.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
            let c = v[v.len() / 2];
            let _ = write!(
                s,
                "; cold random keys: {} vs {} = {:.2}x",
                fmt_ns(c.a_ns),
                fmt_ns(c.b_ns),
                c.ratio
            );
        }
        s
    }
}

fn pair(a: &mut impl FnMut(), b: &mut impl FnMut()) -> PairTiming {
    let iters = calibrate(BATCH, &mut *a).min(calibrate(BATCH, &mut *b));
    measure_pair(iters, a, b)
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

fn count_label(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M sect", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k sect", n / 1_000),
        n => format!("{n} sect"),
    }
}

fn main() -> ExitCode {
    let mut json = false;
    let mut strict = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "--strict" => strict = true,
            other => {
                eprintln!("ratios: unknown argument {other:?} (known: --json, --strict)");
                return ExitCode::from(2);
            }
        }
    }
    let started = Instant::now();
    let domain = match BenchDomain::new() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ratios: cannot create a domain under /dev/shm: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tty = !json && std::io::stderr().is_terminal();
    let progress = |what: &str| {
        if tty {
            eprint!("\r{what:<48}\r");
        }
    };
    let result = run(&domain, &progress);
    progress("");
    match result {
        Ok((rows, targets)) => {
            let elapsed = started.elapsed();
            if json {
                println!("{}", to_json(&rows, &targets, elapsed));
            } else {
                print_text(&rows, &targets, elapsed);
            }
            if strict && targets.iter().any(|t| !t.pass()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ratios: {e}");
            ExitCode::FAILURE
        }
    }
}

type Outcome = (Vec<Row>, Vec<Target>);

fn run(
    domain: &BenchDomain,
    progress: &dyn Fn(&str),
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let mut rows = Vec::new();

    // The table: every op at every size against its memcpy.
    for op in Op::ALL {
        for size in SIZES {
            progress(&format!("{op} {}", size_label(size)));
            let mut case = DataCase::new(domain, op, size)?;
            let mut base = case.baseline();
            let t = pair(&mut || case.run(), &mut || base.run());
            let dir = if matches!(op, Op::Read | Op::Borrow) {
                "from"
            } else {
                "into"
            };
            rows.push(Row {
                op: op.name().to_owned(),
                size: size_label(size),
                ns: t.a_ns,
                baseline: "memcpy".to_owned(),
                baseline_ns: t.b_ns,
                ratio: t.ratio,
                note: format!(
                    "memcpy {dir} {} slot(s) of {}",
                    base.slots(),
                    size_label(case.stride())
                ),
            });
            if op == Op::Read && (size == 4096 || size == 1 << 20) {
                // Check of the baseline itself: its anonymous mapping against a copy straight
                // out of the engine's /dev/shm slot (a held borrow, so no engine work).
                progress(&format!("baseline check {}", size_label(size)));
                let guard = case.arena().borrow(&SECTION)?;
                let mut out = PageBuf::new(size, 0);
                let t = pair(
                    &mut || {
                        out.copy_from_slice(black_box(&guard[..]));
                        black_box(&mut out[..]);
                    },
                    &mut || base.run(),
                );
                rows.push(Row {
                    op: "memcpy from engine slot".to_owned(),
                    size: size_label(size),
                    ns: t.a_ns,
                    baseline: "memcpy".to_owned(),
                    baseline_ns: t.b_ns,
                    ratio: t.ratio,
                    note: "baseline check: /dev/shm slot vs anonymous map".to_owned(),
                });
            }
        }
    }

    // Lookups: one hot section, and random keys, among 1k and 1M sections.
    let [few, many] = LOOKUP_SECTIONS;
    progress(&format!("creating {few} sections"));
    let mut small = LookupCase::new(domain, few)?;
    progress(&format!("creating {many} sections"));
    let t0 = Instant::now();
    let mut large = LookupCase::new(domain, many)?;
    let setup = t0.elapsed();
    let object = large.arena().object_size();
    progress("lookups");
    let hot = pair(&mut || large.hot(), &mut || small.hot());
    let cold = pair(&mut || large.cold(), &mut || small.cold());
    for (kind, t, note) in [
        ("hot", hot, "same id every call".to_owned()),
        ("cold", cold, "uniformly random existing id".to_owned()),
    ] {
        rows.push(Row {
            op: format!("lookup {kind} (contains)"),
            size: count_label(few),
            ns: t.b_ns,
            baseline: String::new(),
            baseline_ns: f64::NAN,
            ratio: f64::NAN,
            note: note.clone(),
        });
        rows.push(Row {
            op: format!("lookup {kind} (contains)"),
            size: count_label(many),
            ns: t.a_ns,
            baseline: format!("{kind}, {}", count_label(few)),
            baseline_ns: t.b_ns,
            ratio: t.ratio,
            note: if kind == "hot" {
                format!(
                    "object {} MiB; {many} creates took {:.1} s",
                    object >> 20,
                    setup.as_secs_f64()
                )
            } else {
                note
            },
        });
    }

    // Acceptance: each pair again, ROUNDS times in rotation.
    let mut overwrite = DataCase::new(domain, Op::Overwrite, 4096)?;
    let mut overwrite_base = overwrite.baseline();
    let mut read = DataCase::new(domain, Op::Read, 4096)?;
    let mut read_base = read.baseline();
    let mut borrow_small = DataCase::new(domain, Op::Borrow, SIZES[0])?;
    let mut borrow_large = DataCase::new(domain, Op::Borrow, SIZES[SIZES.len() - 1])?;
    let mut targets = vec![
        Target {
            name: "overwrite 4 KiB / fair memcpy",
            limit: 1.5,
            rounds: vec![],
            beside: vec![],
        },
        Target {
            name: "copy-out read 4 KiB / fair memcpy",
            limit: 1.5,
            rounds: vec![],
            beside: vec![],
        },
        Target {
            name: "borrow 1 MiB / borrow 64 B",
            limit: 1.5,
            rounds: vec![],
            beside: vec![],
        },
        Target {
            name: "lookup hot, 1M / 1k sections",
            limit: 2.0,
            rounds: vec![],
            beside: vec![],
        },
        Target {
            name: "API overwrite 4 KiB / engine",
            limit: 1.2,
            rounds: vec![],
            beside: vec![],
        },
        Target {
            name: "API read 4 KiB / engine",
            limit: 1.2,
            rounds: vec![],
            beside: vec![],
        },
        Target {
            name: "API borrow 4 KiB / engine",
            limit: 1.2,
            rounds: vec![],
            beside: vec![],
        },
    ];
    let mut api_overwrite = ApiCase::new(domain, Op::Overwrite, 4096)?;
    let mut api_read = ApiCase::new(domain, Op::Read, 4096)?;
    let mut api_borrow = ApiCase::new(domain, Op::Borrow, 4096)?;
    let mut borrow = DataCase::new(domain, Op::Borrow, 4096)?;
    for round in 0..ROUNDS {
        progress(&format!("acceptance round {}/{ROUNDS}", round + 1));
        targets[0]
            .rounds
            .push(pair(&mut || overwrite.run(), &mut || overwrite_base.run()));
        targets[1]
            .rounds
            .push(pair(&mut || read.run(), &mut || read_base.run()));
        targets[2]
            .rounds
            .push(pair(&mut || borrow_large.run(), &mut || borrow_small.run()));
        targets[3]
            .rounds
            .push(pair(&mut || large.hot(), &mut || small.hot()));
        targets[3]
            .beside
            .push(pair(&mut || large.cold(), &mut || small.cold()));
        targets[4]
            .rounds
            .push(pair(&mut || api_overwrite.run(), &mut || overwrite.run()));
        targets[5]
            .rounds
            .push(pair(&mut || api_read.run(), &mut || read.run()));
        targets[6]
            .rounds
            .push(pair(&mut || api_borrow.run(), &mut || borrow.run()));
    }
    Ok((rows, targets))
}

fn fmt_ns(ns: f64) -> String {
    if ns.is_nan() {
        "-".to_owned()
    } else if ns >= 10_000.0 {
        format!("{:.1} us", ns / 1000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

fn print_text(rows: &[Row], targets: &[Target], elapsed: Duration) {
    println!(
        "{:<24} {:>8} {:>10}  {:<12} {:>10} {:>8}  note",
        "op", "size", "ns/op", "baseline", "base ns/op", "ratio"
    );
    for r in rows {
        let ratio = if r.ratio.is_nan() {
            "-".to_owned()
        } else {
            format!("{:.2}x", r.ratio)
        };
        println!(
            "{:<24} {:>8} {:>10}  {:<12} {:>10} {:>8}  {}",
            r.op,
            r.size,
            fmt_ns(r.ns),
            r.baseline,
            fmt_ns(r.baseline_ns),
            ratio,
            r.note
        );
    }
    println!();
    println!("acceptance (same run, median of {ROUNDS} interleaved rounds):");
    for t in targets {
        println!(
            "  {:<34} {:>6.2}x  target <= {:.1}x  {}  ({})",
            t.name,
            t.median().ratio,
            t.limit,
            if t.pass() { "PASS" } else { "FAIL" },
            t.detail()
        );
    }
    println!("total {:.1} s", elapsed.as_secs_f64());
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".to_owned()
    }
}

fn to_json(rows: &[Row], targets: &[Target], elapsed: Duration) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"op\":{},\"size\":{},\"ns\":{},\"baseline\":{},\"baseline_ns\":{},\
                 \"ratio\":{},\"note\":{}}}",
                json_str(&r.op),
                json_str(&r.size),
                json_num(r.ns),
                json_str(&r.baseline),
                json_num(r.baseline_ns),
                json_num(r.ratio),
                json_str(&r.note)
            )
        })
        .collect();
    let targets: Vec<String> = targets
        .iter()
        .map(|t| {
            let m = t.median();
            let (lo, hi) = t.spread();
            format!(
                "{{\"name\":{},\"ratio\":{},\"ns\":{},\"baseline_ns\":{},\"min\":{},\"max\":{},\
                 \"limit\":{},\"pass\":{},\"detail\":{}}}",
                json_str(t.name),
                json_num(m.ratio),
                json_num(m.a_ns),
                json_num(m.b_ns),
                json_num(lo),
                json_num(hi),
                json_num(t.limit),
                t.pass(),
                json_str(&t.detail())
            )
        })
        .collect();
    format!(
        "{{\"rows\":[{}],\"targets\":[{}],\"seconds\":{}}}",
        rows.join(","),
        targets.join(","),
        json_num(elapsed.as_secs_f64())
    )
}
