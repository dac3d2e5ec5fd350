//! `ckpt bench`: what the checkpoint service costs on this machine, in three parts.
//!
//! 1. A sweep ([`sweep`]): write at an offset, overwrite and copy-out read over section
//!    sizes 64 B … 16 MiB and section counts 1 … 64k: throughput (median of batches) and
//!    single-call p50/p99, for every configuration that fits the machine's `/dev/shm`
//!    and memory limits ([`limits`]); the others are skipped, saying why.
//! 2. Single-node ratios (`peers`): the engine's acceptance ratios against a memcpy over
//!    the same working set, and ckpt against LMDB and a Redis server it starts itself.
//! 3. Cluster ratios ([`cluster`]): replication on two in-process ckptd nodes against raw
//!    quinn.
//!
//! Every ratio is measured in the same run as both of its sides, interleaved, so that a
//! shared machine slows both alike; absolute times are context. `--json` prints one object
//! `{"mode", "ratios", "context", "skipped", "targets", "sweep", "seconds"}`; `--csv` and
//! `--svg` write the sweep. Anything that could not run is in `skipped` with the reason.

use std::io::{IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ckpt_bench::{BenchDomain, LOOKUP_SECTIONS};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value as Json};

use super::Error;
use limits::Limits;
use peers::PeerPlan;
use report::Report;
use sweep::{Cell, SweepPlan};

pub mod cluster;
mod interrupt;
pub mod limits;
mod lmdb;
mod peers;
mod plot;
mod redis_server;
pub mod report;
pub mod sweep;

/// `ckpt bench` options.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// A short run (under two minutes on two busy cores): sizes 64 B, 1 KiB, 4 KiB, 64 KiB,
    /// 1 MiB, 16 MiB over 1 and 1024 sections, shorter batches and samples.
    #[arg(long)]
    pub quick: bool,
    /// Tiny sizes and iteration counts: checks that every part runs (for tests); the
    /// figures mean nothing.
    #[arg(long, conflicts_with = "quick")]
    pub smoke: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write the sweep as CSV to FILE (`-`: standard output, in place of the table).
    #[arg(long, value_name = "FILE|-")]
    pub csv: Option<PathBuf>,
    /// Write an SVG plot of the sweep: throughput against size, a panel per operation.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Only the cluster ratios (two in-process ckptd nodes against raw quinn).
    #[arg(long)]
    pub cluster_only: bool,
    /// Leave out the sweep.
    #[arg(long, conflicts_with = "cluster_only")]
    pub no_sweep: bool,
    /// Leave out the cluster ratios.
    #[arg(long, conflicts_with = "cluster_only")]
    pub no_cluster: bool,
}

/// How long and how wide a run is.
#[derive(Clone, Debug)]
struct Plan {
    mode: &'static str,
    sweep: SweepPlan,
    peers: PeerPlan,
    cluster: cluster::Params,
}

impl Plan {
    fn new(args: &Args) -> Self {
        const KIB: usize = 1 << 10;
        const MIB: usize = 1 << 20;
        if args.smoke {
            Self {
                mode: "smoke",
                sweep: SweepPlan {
                    sizes: vec![64, 4 * KIB],
                    counts: vec![1, 16],
                    batch: Duration::from_micros(100),
                    latency_time: Duration::from_micros(500),
                    latency_samples: (10, 200),
                },
                peers: PeerPlan {
                    batch: Duration::from_micros(100),
                    rounds: 1,
                    lookup_sections: [1_000, 1_000_000],
                    redis_samples: 20,
                    redis_warmup: 5,
                },
                cluster: cluster::Params::smoke(),
            }
        } else if args.quick {
            Self {
                mode: "quick",
                sweep: SweepPlan {
                    sizes: vec![64, KIB, 4 * KIB, 64 * KIB, MIB, 16 * MIB],
                    counts: vec![1, 1024],
                    batch: Duration::from_millis(1),
                    latency_time: Duration::from_millis(20),
                    latency_samples: (20, 5_000),
                },
                peers: PeerPlan {
                    batch: Duration::from_millis(2),
                    rounds: 9,
                    lookup_sections: LOOKUP_SECTIONS,
                    redis_samples: 1_000,
                    redis_warmup: 100,
                },
                cluster: cluster::Params::quick(),
            }
        } else {
            Self {
                mode: "full",
                sweep: SweepPlan {
                    sizes: (0..10).map(|i| 64 << (2 * i)).collect(),
                    counts: vec![1, 1024, 65536],
                    batch: Duration::from_millis(3),
                    latency_time: Duration::from_millis(100),
                    latency_samples: (50, 50_000),
                },
                peers: PeerPlan {
                    batch: Duration::from_millis(3),
                    rounds: 9,
                    lookup_sections: LOOKUP_SECTIONS,
                    redis_samples: 5_000,
                    redis_warmup: 500,
                },
                cluster: cluster::Params::full(),
            }
        }
    }
}

/// A target of the issues, for the `targets` map.
#[derive(Clone, Copy, Debug)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

/// Every ratio key a run reports: the single-node ones (`peers`), then the cluster's.
pub const RATIO_KEYS: [&str; 10] = [
    "overwrite_4096_vs_memcpy",
    "read_4096_vs_memcpy",
    "borrow_1048576_vs_64",
    "lookup_1m_vs_1k",
    "lmdb_put_4096_over_ckpt",
    "lmdb_get_4096_over_ckpt",
    "redis_set_4096_over_ckpt",
    "replication_vs_quinn_bulk",
    "all_replicas_4096_vs_baseline",
    "sync_idle_vs_overwrite_64",
];

fn target(key: &str) -> Option<Target> {
    Some(match key {
        "overwrite_4096_vs_memcpy" | "read_4096_vs_memcpy" | "borrow_1048576_vs_64" => {
            Target::AtMost(1.5)
        }
        "lookup_1m_vs_1k" | "sync_idle_vs_overwrite_64" => Target::AtMost(2.0),
        "all_replicas_4096_vs_baseline" => Target::AtMost(1.5),
        "lmdb_put_4096_over_ckpt" => Target::AtLeast(10.0),
        "lmdb_get_4096_over_ckpt" => Target::AtLeast(1.5),
        "redis_set_4096_over_ckpt" => Target::AtLeast(100.0),
        "replication_vs_quinn_bulk" => Target::AtLeast(0.7),
        _ => return None,
    })
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Self::AtMost(t) => v <= t,
            Self::AtLeast(t) => v >= t,
        }
    }
    fn text(self) -> String {
        match self {
            Self::AtMost(t) => format!("<= {t}"),
            Self::AtLeast(t) => format!(">= {t}"),
        }
    }
}

/// Runs the benchmarks and prints the results to `out`.
pub fn run(args: &Args, out: &mut dyn Write) -> Result<ExitCode, Error> {
    if args.json && args.csv.as_deref() == Some(Path::new("-")) {
        return Err(Error::Usage(
            "--csv - and --json both want standard output; give --csv a file".to_owned(),
        ));
    }
    interrupt::install();
    let started = Instant::now();
    let plan = Plan::new(args);
    let mut report = Report::default();
    report.text("mode", plan.mode);
    machine_context(&mut report);

    // What the flags leave out is said, never silently missing.
    if args.cluster_only {
        for key in &RATIO_KEYS[..7] {
            report.skip(key, "left out: --cluster-only");
        }
    }
    if args.no_cluster {
        for key in &RATIO_KEYS[7..] {
            report.skip(key, "left out: --no-cluster");
        }
    }
    if args.no_sweep || args.cluster_only {
        report.text("sweep", "left out");
    }

    let bar = progress_bar();
    let cells = if args.cluster_only {
        Vec::new()
    } else {
        let domain = BenchDomain::new()
            .map_err(|e| Error::System(format!("cannot create a domain under /dev/shm: {e}")))?;
        let limits = Limits::probe(Path::new("/dev/shm"))
            .map_err(|e| Error::System(format!("statvfs /dev/shm: {e}")))?;
        limits_context(&limits, &mut report);
        let sweep_cells = if args.no_sweep {
            0
        } else {
            sweep::cells(&plan.sweep)
        };
        let cluster_steps = if args.no_cluster { 0 } else { 4 };
        bar.set_length((sweep_cells + plan.peers.rounds.max(1) + 2 + cluster_steps) as u64);
        report.num("timer_overhead_ns", sweep::timer_overhead_ns());
        let mut step = |what: &str| {
            bar.set_message(what.to_owned());
            bar.inc(1);
        };
        let cells = if args.no_sweep {
            Vec::new()
        } else {
            sweep::run(&domain, &limits, &plan.sweep, &mut step)
        };
        for cell in &cells {
            if let Cell::Skipped { why, .. } = cell {
                report.skip(&cell.name(), why.clone());
            }
        }
        peers::run(&domain, &limits, &plan.peers, &mut report, &mut step);
        cells
    };
    if args.cluster_only || !args.no_cluster {
        if args.cluster_only {
            bar.set_length(4);
        }
        let progress = |what: &str| {
            bar.set_message(what.to_owned());
            bar.inc(1);
        };
        if let Err(e) = cluster::run(&plan.cluster, &mut report, &progress) {
            if args.cluster_only {
                bar.finish_and_clear();
                return Err(Error::System(format!("the cluster did not start: {e}")));
            }
            // The last three of RATIO_KEYS are the cluster's.
            for key in &RATIO_KEYS[7..] {
                report.skip(key, format!("the cluster did not start: {e}"));
            }
        }
    }
    bar.finish_and_clear();
    report.drop_invalid_ratios();
    let seconds = started.elapsed().as_secs_f64();

    if let Some(path) = &args.csv
        && path != Path::new("-")
    {
        let mut file = std::fs::File::create(path)
            .map_err(|e| Error::System(format!("{}: {e}", path.display())))?;
        sweep::write_csv(&cells, &mut file)
            .map_err(|e| Error::System(format!("{}: {e}", path.display())))?;
    }
    if let Some(path) = &args.svg {
        let title = format!("ckpt bench --{}: throughput against size", plan.mode);
        plot::write_svg(&cells, &title, path).map_err(Error::System)?;
    }
    if args.json {
        let mut object = Map::new();
        object.insert("mode".to_owned(), Json::from(plan.mode));
        for (name, map) in report.json_maps() {
            object.insert(name.to_owned(), map);
        }
        object.insert("targets".to_owned(), targets_json(&report));
        object.insert("sweep".to_owned(), sweep::json_rows(&cells));
        object.insert("seconds".to_owned(), report::number(seconds));
        serde_json::to_writer_pretty(&mut *out, &Json::Object(object))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        if !cells.is_empty() {
            if args.csv.as_deref() == Some(Path::new("-")) {
                sweep::write_csv(&cells, out)?;
            } else {
                writeln!(out, "sweep ({}):", plan.mode)?;
                sweep::write_table(&cells, out)?;
            }
            writeln!(out)?;
        }
        report.write_text(out)?;
        writeln!(out)?;
        writeln!(out, "targets:")?;
        for key in RATIO_KEYS {
            let Some(t) = target(key) else { continue };
            let state = match report.ratio(key) {
                Some(v) if t.met(v) => format!("{v:.3}  met"),
                Some(v) => format!("{v:.3}  NOT met"),
                None => "skipped".to_owned(),
            };
            writeln!(out, "  {key:<32} {:<8} {state}", t.text())?;
        }
        writeln!(out, "total {seconds:.1} s")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `{key: {"target": "<= 1.5", "value": x, "met": bool}}` for every measured ratio with a
/// target.
fn targets_json(report: &Report) -> Json {
    let map: Map<String, Json> = report
        .ratios
        .iter()
        .filter_map(|r| {
            let t = target(r.key)?;
            Some((
                r.key.to_owned(),
                serde_json::json!({
                    "target": t.text(),
                    "value": report::number(r.value),
                    "met": t.met(r.value),
                }),
            ))
        })
        .collect();
    Json::Object(map)
}

/// A progress bar on stderr when it is a terminal, else a hidden one.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The machine: CPU model, cores, load at the start.
fn machine_context(report: &mut Report) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
    });
    if let Some(cpu) = cpu {
        report.text("cpu", cpu);
    }
    if let Ok(n) = std::thread::available_parallelism() {
        report.num("cpus", n.get() as f64);
    }
    if let Some(load) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
    {
        report.num("load_avg_1m_at_start", load);
    }
}

/// The `/dev/shm` and memory limits and which one bounds the run.
fn limits_context(limits: &Limits, report: &mut Report) {
    report.num("shm_size_bytes", limits.shm_size as f64);
    report.num("shm_free_bytes", limits.shm_free as f64);
    if let Some(c) = &limits.cgroup {
        report.num("cgroup_version", f64::from(c.version));
        match c.limit {
            Some(l) => report.num("cgroup_memory_limit_bytes", l as f64),
            None => report.text("cgroup_memory_limit_bytes", "unlimited"),
        }
    }
    if let Some(a) = limits.mem_available {
        report.num("mem_available_bytes", a as f64);
    }
    report.text("memory_bound", limits.bound().0);
    report.num("memory_budget_bytes", limits.budget() as f64);
    report.text("limits", limits.describe());
}
