//! `cluster_ratios`: the replication benchmarks of issue 5 on two in-process ckptd nodes,
//! each as a ratio against a baseline measured in the same run.
//!
//! ```text
//! cargo run --release -p ckpt-bench --bin cluster_ratios [-- --quick] [-- --json]
//! ```
//!
//! | key | ckpt side | baseline |
//! |---|---|---|
//! | `replication_vs_quinn_bulk` | throughput of a backlog (64 MiB; 4 MiB with `--quick`) caught up by a replica that joins | one quinn stream carrying the same bytes |
//! | `all_replicas_4096_vs_baseline` | p50 of a 4 KiB overwrite of an ALL_REPLICAS checkpoint with one remote replica | p50 of a 4 KiB quinn echo + p50 of one agent-socket round trip to ckptd |
//! | `sync_idle_vs_overwrite_64` | synchronize with nothing pending | a 64 B local overwrite of the same checkpoint |
//!
//! The machine is shared and noisy: the two sides always run interleaved (alternating
//! rounds, calls in rotation, or batches as in `ckpt_bench::measure_pair`) and medians are
//! reported; absolute times are context only. A ratio that cannot be measured honestly
//! (the operation fails, or does not do what the benchmark means to time) is listed under
//! `skipped` with the reason.
//!
//! `--json` prints one object `{"ratios": {...}, "context": {...}, "skipped": {...}}`.
//! The exit status is 0 unless the cluster could not be started.

#![forbid(unsafe_code)]

mod cluster;

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use cluster::{Params, Report, Value};

fn main() -> ExitCode {
    let mut json = false;
    let mut params = Params::full();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "--quick" => params = Params::quick(),
            other => {
                eprintln!("cluster_ratios: unknown argument {other:?} (known: --json, --quick)");
                return ExitCode::from(2);
            }
        }
    }
    let tty = !json && std::io::stderr().is_terminal();
    let progress = |what: &str| {
        if tty {
            eprint!("\r{what:<60}\r");
        }
    };
    let result = cluster::run(&params, &progress);
    progress("");
    match result {
        Ok(report) => {
            if json {
                println!("{}", to_json(&report));
            } else {
                print_text(&report);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cluster_ratios: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_text(report: &Report) {
    println!(
        "{:<30} {:>8}  {:<22} {:<30} note",
        "ratio", "value", "ckpt", "baseline"
    );
    for r in &report.ratios {
        println!(
            "{:<30} {:>7.3}x  {:<22} {:<30} {}",
            r.key, r.value, r.ckpt, r.baseline, r.note
        );
    }
    if !report.skipped.is_empty() {
        println!();
        println!("skipped:");
        for (key, why) in &report.skipped {
            println!("  {key}: {why}");
        }
    }
    println!();
    println!("context (absolute times: this run, this machine, only beside the ratios):");
    for (key, value) in &report.context {
        let shown = match value {
            Value::Num(x) if key.ends_with("_ns") => cluster::fmt_ns(*x),
            Value::Num(x) if x.fract() == 0.0 => format!("{x:.0}"),
            Value::Num(x) => format!("{x:.2}"),
            Value::Text(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
        };
        println!("  {key:<34} {shown}");
    }
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
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 2f64.powi(53) {
        format!("{x:.0}")
    } else if x.is_finite() {
        format!("{x:.4}")
    } else {
        "null".to_owned()
    }
}

fn to_json(report: &Report) -> String {
    let ratios: Vec<String> = report
        .ratios
        .iter()
        .map(|r| format!("{}:{}", json_str(r.key), json_num(r.value)))
        .collect();
    let context: Vec<String> = report
        .context
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Num(x) => json_num(*x),
                Value::Text(s) => json_str(s),
                Value::Bool(b) => b.to_string(),
            };
            format!("{}:{v}", json_str(k))
        })
        .collect();
    let skipped: Vec<String> = report
        .skipped
        .iter()
        .map(|(k, why)| format!("{}:{}", json_str(k), json_str(why)))
        .collect();
    format!(
        "{{\"ratios\":{{{}}},\"context\":{{{}}},\"skipped\":{{{}}}}}",
        ratios.join(","),
        context.join(","),
        skipped.join(",")
    )
}
