//! `ckpt bench`: a `--smoke` run reports every ratio as a finite positive number, LMDB and
//! Redis really ran, and the CSV and SVG outputs are written and parse; the cluster
//! benchmarks at tiny sizes deliver the bytes. No timing is checked (the machine is
//! shared): the figures of a smoke run mean nothing.

#![forbid(unsafe_code)]

use std::path::Path;
use std::process::Command;

use ckpt_tools::cmd::bench::RATIO_KEYS;
use ckpt_tools::cmd::bench::cluster::{
    Cluster, Params, QuinnBaseline, SECTION_BYTES, all_replicas_4096, replication_vs_quinn_bulk,
    sync_idle_vs_overwrite_64,
};
use serde_json::Value;

fn redis_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn positive(v: Option<&Value>) -> bool {
    v.and_then(Value::as_f64)
        .is_some_and(|x| x.is_finite() && x > 0.0)
}

#[test]
fn smoke_run_reports_every_ratio_and_writes_csv_and_svg() {
    let dir = std::env::temp_dir().join(format!("ckpt-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (csv, svg) = (dir.join("sweep.csv"), dir.join("sweep.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["bench", "--smoke", "--json", "--csv"])
        .arg(&csv)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("ckpt runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ckpt bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    let skipped = &report["skipped"];
    let redis = redis_installed();
    if !redis {
        eprintln!("SKIPPED: redis-server not installed");
        let why = skipped["redis_set_4096_over_ckpt"]
            .as_str()
            .unwrap_or_default();
        assert!(why.contains("not installed"), "redis skip reason: {why:?}");
    }
    for key in RATIO_KEYS {
        if key == "redis_set_4096_over_ckpt" && !redis {
            continue;
        }
        assert!(
            positive(report["ratios"].get(key)),
            "{key}: {:?} (skipped: {:?})",
            report["ratios"].get(key),
            skipped.get(key)
        );
        assert!(skipped.get(key).is_none(), "{key} is also skipped");
    }
    let ratios = report["ratios"].as_object().unwrap();
    assert!(
        ratios.keys().all(|k| RATIO_KEYS.contains(&k.as_str())),
        "{ratios:?}"
    );
    let context = &report["context"];
    for key in [
        "overwrite_64_ns",
        "borrow_64_ns",
        "overwrite_4096_ns",
        "memcpy_4096_ns",
        "lmdb_put_4096_ns",
        "lmdb_get_4096_ns",
        "backlog_stream_mib_s",
        "backlog_join_mib_s",
        "memory_budget_bytes",
    ] {
        assert!(
            positive(context.get(key)),
            "context {key}: {:?}",
            context.get(key)
        );
    }
    if redis {
        assert!(positive(context.get("redis_set_4096_p50_ns")));
    }
    assert!(context["memory_bound"].is_string());
    assert!(report["targets"]["overwrite_4096_vs_memcpy"]["met"].is_boolean());

    check_csv(&csv, report["sweep"].as_array().map_or(0, Vec::len));
    check_svg(&svg);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One header and one line per cell (2 sizes x 2 counts x 3 ops), ten fields each; the
/// measured lines' figures parse and are positive, and they are the JSON's sweep rows.
fn check_csv(path: &Path, measured_in_json: usize) {
    let text = std::fs::read_to_string(path).expect("the CSV was written");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(header.len(), 10, "{header:?}");
    assert_eq!(header[0], "op");
    let mut measured = 0;
    let mut cells = 0;
    for line in lines {
        cells += 1;
        let fields: Vec<&str> = line.splitn(10, ',').collect();
        assert_eq!(fields.len(), 10, "{line}");
        if fields[9].is_empty() {
            measured += 1;
            for f in &fields[1..9] {
                let x: f64 = f.parse().unwrap_or_else(|_| panic!("{f:?} in {line}"));
                assert!(x > 0.0, "{line}");
            }
        }
    }
    assert_eq!(cells, 12, "{text}");
    assert_eq!(measured, measured_in_json);
    assert!(measured > 0, "{text}");
}

/// A whole SVG document with text elements and plotted lines.
fn check_svg(path: &Path) {
    let svg = std::fs::read_to_string(path).expect("the SVG was written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(100)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert!(svg.contains("<polyline"), "a line per section count");
    for op in ["write_at_offset", "overwrite", "read"] {
        assert!(svg.contains(op), "a panel for {op}");
    }
}

#[test]
fn csv_to_stdout_with_json_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["bench", "--smoke", "--json", "--csv", "-"])
        .output()
        .expect("ckpt runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--csv"));
}

fn all_positive(what: &str, v: &[f64], n: usize) {
    assert_eq!(v.len(), n, "{what}: {v:?}");
    assert!(v.iter().all(|x| x.is_finite() && *x > 0.0), "{what}: {v:?}");
}

#[test]
fn replication_benchmarks_deliver_the_bytes_and_report_positive_numbers() {
    let params = Params::smoke();
    let mut sut = Cluster::start().expect("two ckptd nodes");
    let mut quinn = QuinnBaseline::start(&sut).expect("the quinn baseline");

    let bulk = replication_vs_quinn_bulk(&mut sut, &mut quinn, &params).expect("backlog");
    assert_eq!(bulk.bytes, 4 * SECTION_BYTES as u64);
    assert_eq!(
        bulk.verified_bytes,
        2 * 2 * bulk.bytes,
        "node 2 read back the backlog, streamed and joined, in both rounds"
    );
    assert_eq!(
        bulk.quinn_bytes,
        2 * bulk.bytes,
        "quinn delivered the bytes"
    );
    all_positive("streamed backlog", &bulk.stream_ns, 2);
    all_positive("joining replica's catch-up", &bulk.join_ns, 2);
    all_positive("node 2 open", &bulk.open_ns, 2);
    all_positive("quinn bulk", &bulk.quinn_ns, 2);
    all_positive("bulk ratios", &bulk.ratios, 2);
    all_positive("join ratios", &bulk.join_ratios, 2);

    let all = all_replicas_4096(&mut sut, &mut quinn, &params).expect("baselines");
    all_positive("quinn echo", &all.echo_ns, 20);
    all_positive("ckptd round trip", &all.ckptd_rt_ns, 20);
    all_positive("unix pair", &all.unix_pair_ns, 20);
    match &all.write_ns {
        Ok(w) => all_positive("ALL_REPLICAS overwrite", w, 20),
        // Reported under `skipped` by `ckpt bench`; the smoke run above checks the ratio.
        Err(e) => eprintln!("SKIPPED: ALL_REPLICAS overwrite: {e}"),
    }
    if !all.is_synchronous() {
        eprintln!(
            "SKIPPED: ALL_REPLICAS ratio: {} of {} overwrites were on node 2 when they returned",
            all.synchronous.0, all.synchronous.1
        );
    }
    drop(quinn);

    let sync = sync_idle_vs_overwrite_64(&mut sut, &params).expect("synchronize pair");
    assert!(
        sync.delivered,
        "node 2 holds the last write after a synchronize"
    );
    all_positive(
        "synchronize pair",
        &[sync.sync_ns, sync.overwrite_ns, sync.ratio],
        3,
    );
    assert!(sync.iters >= 1);
}
