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
//! Each table row is one [`measure_pair_for`]: the op and its baseline in interleaved
//! batches, the ratio being the median of per-batch ratios. The acceptance ratios
//! ([`EngineRatios`], and the API over the engine) are then measured again, [`ROUNDS`] times
//! each in rotation, and the median round is checked against the target (the spread over
//! rounds is printed beside it): this VM has phases of seconds in which everything runs up
//! to 1.5x slower, and interleaving is what keeps a ratio honest through them.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ckpt_bench::{
    ApiCase, BenchDomain, DataCase, EngineRatio, EngineRatios, LOOKUP_SECTIONS, Op, PageBuf,
    PairTiming, Rounds, SECTION, SIZES, count_label, fmt_ns, measure_pair_for, size_label,
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
    rounds: Rounds,
    /// A second pair reported beside the checked one (cold lookups).
    beside: Option<Rounds>,
}

impl Target {
    fn new(name: &'static str, limit: f64) -> Self {
        Self {
            name,
            limit,
            rounds: Rounds::default(),
            beside: None,
        }
    }
    fn median(&self) -> PairTiming {
        self.rounds
            .median()
            .unwrap_or_else(|| unreachable!("ROUNDS >= 1"))
    }
    fn pass(&self) -> bool {
        self.median().ratio <= self.limit
    }
    fn detail(&self) -> String {
        let m = self.median();
        let (lo, hi) = self.rounds.spread();
        let mut s = format!(
            "{} vs {}, rounds {lo:.2}..{hi:.2}",
            fmt_ns(m.a_ns),
            fmt_ns(m.b_ns)
        );
        if let Some(c) = self.beside.as_ref().and_then(Rounds::median) {
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
    measure_pair_for(BATCH, a, b)
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
                // Check of the baseline itself: its /dev/shm buffers against a copy straight
                // out of the engine's slot (a held borrow, so no engine work).
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
                    note: "baseline check: engine slot vs baseline buffers".to_owned(),
                });
            }
        }
    }

    // Lookups: one hot section, and random keys, among 1k and 1M sections (the cases of
    // the acceptance ratios below).
    let [few, many] = LOOKUP_SECTIONS;
    progress(&format!("creating {few} and {many} sections"));
    let mut engine = EngineRatios::new(domain, LOOKUP_SECTIONS)?;
    let setup = engine.lookup_setup();
    let (small, large) = engine.lookups();
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

    // Acceptance: each pair again, ROUNDS times in rotation: the engine's own ratios, then
    // the API over the engine.
    let mut api_targets = [
        Target::new("API overwrite 4 KiB / engine", 1.2),
        Target::new("API read 4 KiB / engine", 1.2),
        Target::new("API borrow 4 KiB / engine", 1.2),
    ];
    let mut api_overwrite = ApiCase::new(domain, Op::Overwrite, 4096)?;
    let mut api_read = ApiCase::new(domain, Op::Read, 4096)?;
    let mut api_borrow = ApiCase::new(domain, Op::Borrow, 4096)?;
    let mut borrow = DataCase::new(domain, Op::Borrow, 4096)?;
    for round in 0..ROUNDS {
        progress(&format!("acceptance round {}/{ROUNDS}", round + 1));
        engine.round(BATCH);
        let [api_ow, api_rd, api_bw] = &mut api_targets;
        api_ow
            .rounds
            .push(pair(&mut || api_overwrite.run(), &mut || {
                engine.overwrite().run();
            }));
        api_rd
            .rounds
            .push(pair(&mut || api_read.run(), &mut || engine.read().run()));
        api_bw
            .rounds
            .push(pair(&mut || api_borrow.run(), &mut || borrow.run()));
    }
    let mut targets: Vec<Target> = EngineRatio::ALL
        .iter()
        .map(|&r| Target {
            name: r.describe(),
            limit: r.limit(),
            rounds: engine.rounds(r).clone(),
            beside: (r == EngineRatio::LookupHot).then(|| engine.cold_lookup().clone()),
        })
        .collect();
    targets.extend(api_targets);
    Ok((rows, targets))
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
            let (lo, hi) = t.rounds.spread();
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
