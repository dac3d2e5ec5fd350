//! Criterion benchmarks of the replica arena's data path.
//!
//! One group per operation (`overwrite`, `read`, `borrow`, `write_at_offset`,
//! `create_delete`), each with `engine/<size>` and its fair `memcpy/<size>` baseline (same
//! bytes, same slot working set; see `ckpt_bench::DataCase::baseline`) for sizes 64 B,
//! 4 KiB, 64 KiB and 1 MiB; then `lookup_1k` and `lookup_1m` with a hot and a random
//! (`cold`) key; then `api` with `overwrite`, `read` and `borrow` of 4 KiB through the
//! application API (`api/<op>`) beside the engine (`engine/<op>`). For the acceptance
//! ratios in one process run, use the `ratios` binary.

#![forbid(unsafe_code)]

use std::time::Duration;

use ckpt_bench::{ApiCase, BenchDomain, DataCase, LookupCase, Op, SIZES};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn data_path(c: &mut Criterion, domain: &BenchDomain) {
    for op in Op::ALL {
        let mut group = c.benchmark_group(op.name());
        for size in SIZES {
            let mut case = DataCase::new(domain, op, size)
                .unwrap_or_else(|e| panic!("setting up {op} {size} B: {e}"));
            let mut base = case.baseline();
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new("engine", size), |b| b.iter(|| case.run()));
            group.bench_function(BenchmarkId::new("memcpy", size), |b| b.iter(|| base.run()));
        }
        group.finish();
    }
}

fn lookups(c: &mut Criterion, domain: &BenchDomain) {
    for (name, sections) in [("lookup_1k", 1_000), ("lookup_1m", 1_000_000)] {
        let mut case = LookupCase::new(domain, sections)
            .unwrap_or_else(|e| panic!("setting up {sections} sections: {e}"));
        let mut group = c.benchmark_group(name);
        group.bench_function("hot", |b| b.iter(|| case.hot()));
        group.bench_function("cold", |b| b.iter(|| case.cold()));
        group.finish();
    }
}

fn api(c: &mut Criterion, domain: &BenchDomain) {
    let mut group = c.benchmark_group("api");
    group.throughput(Throughput::Bytes(4096));
    for op in [Op::Overwrite, Op::Read, Op::Borrow] {
        let mut engine = DataCase::new(domain, op, 4096)
            .unwrap_or_else(|e| panic!("setting up engine {op}: {e}"));
        let mut api =
            ApiCase::new(domain, op, 4096).unwrap_or_else(|e| panic!("setting up API {op}: {e}"));
        group.bench_function(BenchmarkId::new("engine", op.name()), |b| {
            b.iter(|| engine.run());
        });
        group.bench_function(BenchmarkId::new("api", op.name()), |b| b.iter(|| api.run()));
    }
    group.finish();
}

fn arena(c: &mut Criterion) {
    let domain = BenchDomain::new().expect("a writable /dev/shm for the bench domain");
    data_path(c, &domain);
    lookups(c, &domain);
    api(c, &domain);
}

criterion_group! {
    name = benches;
    // 50 benchmarks: modest timings keep `cargo bench -p ckpt-bench` to a few minutes.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = arena
}
criterion_main!(benches);
