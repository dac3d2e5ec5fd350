//! The single-node ratios of `ckpt bench`: the engine's acceptance ratios
//! ([`EngineRatios`], as `ckpt-bench`'s `ratios` runner measures them) and ckpt against
//! two real peers on the same machine, LMDB ([`super::lmdb`]) and a Redis server
//! ([`super::redis_server`]).
//!
//! Every ratio is measured in the same run as its two sides: the engine and LMDB pairs as
//! interleaved batches ([`measure_pair_for`]), repeated in rounds in rotation and judged by
//! the median round ([`Rounds`]); the Redis pair as single calls, each timed, in alternating
//! blocks (50 SETs, 1000 ckpt overwrites, ...), judged by the ratio of the two p50s.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use ckpt_bench::{
    BenchDomain, DataCase, EngineRatio, EngineRatios, Op, PageBuf, PairTiming, Rounds, calibrate,
    fmt_ns, measure, measure_pair_for, percentile,
};

use super::limits::Limits;
use super::lmdb::Lmdb;
use super::redis_server::RedisServer;
use super::report::{Ratio, Report};

/// Sizes and repetitions of the single-node ratios.
#[derive(Clone, Copy, Debug)]
pub(super) struct PeerPlan {
    /// Wall time one batch aims at.
    pub(super) batch: Duration,
    /// Rounds of each batch pair; a ratio is the median round. Nine, not five: on this
    /// VM one round in five or six lands in a slow phase of a few seconds, and with five a
    /// run's median moved by up to 0.05 from run to run.
    pub(super) rounds: usize,
    /// Sections of the two lookup cases.
    pub(super) lookup_sections: [u32; 2],
    /// Timed single Redis calls (rounded up to whole blocks; the ckpt side makes
    /// `CKPT_BLOCK / REDIS_BLOCK` times as many).
    pub(super) redis_samples: usize,
    /// Untimed Redis calls first (rounded up to whole blocks; ckpt's likewise).
    pub(super) redis_warmup: usize,
}

/// The keys this module reports: the first seven of [`super::RATIO_KEYS`].
const KEYS: &[&str] = super::RATIO_KEYS.split_at(7).0;

/// Runs the engine, LMDB and Redis ratios into `report`.
pub(super) fn run(
    domain: &BenchDomain,
    limits: &Limits,
    plan: &PeerPlan,
    report: &mut Report,
    step: &mut dyn FnMut(&str),
) {
    let need = EngineRatios::estimated_bytes(plan.lookup_sections);
    if let Err(why) = limits.fits(need) {
        for key in KEYS {
            report.skip(key, why.clone());
        }
        return;
    }
    step(&format!(
        "creating {} + {} sections",
        plan.lookup_sections[0], plan.lookup_sections[1]
    ));
    let mut engine = match EngineRatios::new(domain, plan.lookup_sections) {
        Ok(e) => e,
        Err(e) => {
            for key in KEYS {
                report.skip(key, format!("setup failed: {e}"));
            }
            return;
        }
    };
    report.num("lookup_sections_few", f64::from(plan.lookup_sections[0]));
    report.num("lookup_sections_many", f64::from(plan.lookup_sections[1]));
    report.num("lookup_setup_s", engine.lookup_setup().as_secs_f64());

    let lmdb = Lmdb::open(&domain.path().join("lmdb"), 4096);
    let mut lmdb_rounds = (Rounds::default(), Rounds::default());
    let mut lmdb_failed: Option<String> = None;
    {
        let mut reader = match &lmdb {
            Ok(l) => l.reader().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let payload = PageBuf::new(4096, 0x33);
        let mut out = PageBuf::new(4096, 0);
        for round in 0..plan.rounds.max(1) {
            step(&format!("engine and LMDB ratios, round {}", round + 1));
            engine.round(plan.batch);
            let (Ok(lmdb), Ok(reader)) = (&lmdb, &mut reader) else {
                continue;
            };
            let mut put = || {
                if let Err(e) = lmdb.put(&payload) {
                    lmdb_failed.get_or_insert(format!("put: {e}"));
                }
            };
            lmdb_rounds
                .0
                .push(measure_pair_for(plan.batch, &mut put, || {
                    engine.overwrite().run();
                }));
            let mut get = || {
                if let Err(e) = reader.get(&mut out) {
                    lmdb_failed.get_or_insert(format!("get: {e}"));
                }
            };
            lmdb_rounds
                .1
                .push(measure_pair_for(plan.batch, &mut get, || {
                    engine.read().run();
                }));
        }
    }
    engine_ratios(&engine, report);
    extra_context(domain, plan, report);

    let lmdb_why = match (&lmdb, &lmdb_failed) {
        (Err(e), _) => Some(format!("LMDB environment: {e}")),
        (Ok(_), Some(e)) => Some(format!("LMDB {e}")),
        (Ok(l), None) => {
            report.text(
                "lmdb_env",
                format!(
                    "{} (tmpfs), MDB_NOSYNC, map 64 MiB, one 4 KiB value; liblmdb bundled \
                     with the lmdb-sys crate",
                    l.dir().display()
                ),
            );
            None
        }
    };
    match lmdb_why {
        Some(why) => {
            report.skip("lmdb_put_4096_over_ckpt", why.clone());
            report.skip("lmdb_get_4096_over_ckpt", why);
        }
        None => {
            push_peer(
                report,
                "lmdb_put_4096_over_ckpt",
                &lmdb_rounds.0,
                ("lmdb_put_4096_ns", "LMDB put+commit"),
                ("lmdb_pair_ckpt_overwrite_4096_ns", "ckpt overwrite"),
            );
            push_peer(
                report,
                "lmdb_get_4096_over_ckpt",
                &lmdb_rounds.1,
                ("lmdb_get_4096_ns", "LMDB renew+get+copy+reset"),
                ("lmdb_pair_ckpt_read_4096_ns", "ckpt copy-out read"),
            );
        }
    }
    drop(lmdb);

    step("starting redis-server");
    redis(domain.path(), &mut engine, plan, report);
}

/// The four engine ratios and their absolute sides.
fn engine_ratios(engine: &EngineRatios, report: &mut Report) {
    let sides = |r: EngineRatio| match r {
        EngineRatio::Overwrite4096 => ("overwrite_4096_ns", "memcpy_4096_ns"),
        EngineRatio::Read4096 => ("read_4096_ns", "memcpy_out_4096_ns"),
        EngineRatio::Borrow1MiBVs64 => ("borrow_1048576_ns", "borrow_64_ns"),
        EngineRatio::LookupHot => ("lookup_hot_many_ns", "lookup_hot_few_ns"),
    };
    for r in EngineRatio::ALL {
        let rounds = engine.rounds(r);
        let Some(m) = rounds.median() else {
            report.skip(r.key(), "no round was measured");
            continue;
        };
        let (a, b) = sides(r);
        report.num(a, m.a_ns);
        report.num(b, m.b_ns);
        push(report, r.key(), m, rounds, r.describe());
    }
    if let Some(c) = engine.cold_lookup().median() {
        report.num("lookup_cold_many_ns", c.a_ns);
        report.num("lookup_cold_few_ns", c.b_ns);
        report.num("lookup_cold_many_vs_few", c.ratio);
    }
}

fn push(report: &mut Report, key: &'static str, m: PairTiming, rounds: &Rounds, what: &str) {
    let (lo, hi) = rounds.spread();
    report.ratios.push(Ratio {
        key,
        value: m.ratio,
        ckpt: fmt_ns(m.a_ns),
        baseline: fmt_ns(m.b_ns),
        note: format!(
            "{what}; median of {} interleaved rounds, {lo:.2}..{hi:.2}",
            rounds.len()
        ),
    });
}

/// A peer ratio: `a` is the peer, `b` ckpt; the ratio is peer time / ckpt time.
fn push_peer(
    report: &mut Report,
    key: &'static str,
    rounds: &Rounds,
    (peer_key, peer): (&str, &str),
    (ckpt_key, ckpt): (&str, &str),
) {
    let Some(m) = rounds.median() else {
        report.skip(key, "no round was measured");
        return;
    };
    report.num(peer_key, m.a_ns);
    report.num(ckpt_key, m.b_ns);
    let (lo, hi) = rounds.spread();
    report.ratios.push(Ratio {
        key,
        value: m.ratio,
        ckpt: format!("{} {ckpt}", fmt_ns(m.b_ns)),
        baseline: format!("{} {peer}", fmt_ns(m.a_ns)),
        note: format!(
            "peer / ckpt; median of {} interleaved rounds, {lo:.2}..{hi:.2}",
            rounds.len()
        ),
    });
}

/// Absolute figures the ratios do not give: a 64 B overwrite.
fn extra_context(domain: &BenchDomain, plan: &PeerPlan, report: &mut Report) {
    match DataCase::new(domain, Op::Overwrite, 64) {
        Ok(mut case) => {
            let iters = calibrate(plan.batch, || case.run());
            report.num("overwrite_64_ns", measure(iters, || case.run()));
        }
        Err(e) => report.skip("overwrite_64_ns", format!("setup failed: {e}")),
    }
    report.num("batch_ms", plan.batch.as_secs_f64() * 1e3);
    report.num("rounds", plan.rounds.max(1) as f64);
}

/// Single Redis calls before ckpt's turn in the Redis pair.
const REDIS_BLOCK: usize = 50;
/// Single ckpt calls before Redis's turn: more, because each takes about a thousandth of
/// a Redis call. A block of 50 was mostly the first calls after 50 system calls and
/// socket wake-ups (cold caches and predictors), which put its p50 at 160–250 ns against
/// 125 ns in steady state.
const CKPT_BLOCK: usize = 20 * REDIS_BLOCK;

/// Redis SET p50 ÷ ckpt overwrite p50, 4 KiB: single calls, each timed on its own, in
/// alternating blocks of [`REDIS_BLOCK`] Redis calls and [`CKPT_BLOCK`] ckpt calls (each
/// side mostly in its steady state, and drift of the machine hits both).
fn redis(dir: &Path, engine: &mut EngineRatios, plan: &PeerPlan, report: &mut Report) {
    const KEY: &str = "redis_set_4096_over_ckpt";
    let server = match RedisServer::start(&dir.join("redis")) {
        Ok(s) => s,
        Err(e) => {
            report.skip(KEY, e.to_string());
            return;
        }
    };
    let mut con = match server.connect() {
        Ok(c) => c,
        Err(e) => {
            report.skip(KEY, format!("connecting to redis-server: {e}"));
            return;
        }
    };
    let payload = PageBuf::new(4096, 0x44);
    let mut set_ns = Vec::with_capacity(plan.redis_samples);
    let mut ckpt_ns = Vec::with_capacity(plan.redis_samples * (CKPT_BLOCK / REDIS_BLOCK));
    let warmup = plan.redis_warmup.div_ceil(REDIS_BLOCK);
    let blocks = warmup + plan.redis_samples.div_ceil(REDIS_BLOCK).max(1);
    for block in 0..blocks {
        let timed = block >= warmup;
        for _ in 0..REDIS_BLOCK {
            let t = Instant::now();
            let r = redis::cmd("SET")
                .arg(black_box("bench-s0"))
                .arg(black_box(&payload[..]))
                .exec(&mut con);
            let el = t.elapsed();
            if let Err(e) = r {
                report.skip(KEY, format!("SET failed: {e}"));
                return;
            }
            if timed {
                set_ns.push(el.as_nanos() as f64);
            }
        }
        let overwrite = engine.overwrite();
        for _ in 0..CKPT_BLOCK {
            let t = Instant::now();
            overwrite.run();
            let el = t.elapsed();
            if timed {
                ckpt_ns.push(el.as_nanos() as f64);
            }
        }
    }
    let stored: redis::RedisResult<Vec<u8>> = redis::cmd("GET").arg("bench-s0").query(&mut con);
    if !stored.is_ok_and(|v| v[..] == payload[..]) {
        report.skip(KEY, "redis-server did not return the value SET");
        return;
    }
    let (set, ckpt) = (percentile(&set_ns, 0.5), percentile(&ckpt_ns, 0.5));
    report.num("redis_set_4096_p50_ns", set);
    report.num("redis_set_4096_p99_ns", percentile(&set_ns, 0.99));
    report.num("redis_pair_ckpt_overwrite_4096_p50_ns", ckpt);
    report.num(
        "redis_pair_ckpt_overwrite_4096_p99_ns",
        percentile(&ckpt_ns, 0.99),
    );
    report.text(
        "redis_server",
        format!(
            "redis-server {} on 127.0.0.1:{} (--save \"\" --appendonly no), redis crate sync \
             client, one connection, no pipelining",
            server
                .version()
                .unwrap_or_else(|| "(version unknown)".to_owned()),
            server.port()
        ),
    );
    report.ratios.push(Ratio {
        key: KEY,
        value: set / ckpt,
        ckpt: format!("{} ckpt overwrite p50", fmt_ns(ckpt)),
        baseline: format!("{} Redis SET p50", fmt_ns(set)),
        note: format!(
            "peer / ckpt; p50s of {} and {} single calls, in alternating blocks of \
             {REDIS_BLOCK} and {CKPT_BLOCK} (timer included)",
            set_ns.len(),
            ckpt_ns.len()
        ),
    });
}
