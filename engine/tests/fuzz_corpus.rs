//! The committed fuzz corpus as regression tests: every file in
//! `fuzz/corpus/{arena_attach,arena_ops,registry}/` goes through the harness its cargo-fuzz
//! target runs (`ckpt_engine::fuzzing`), so an input that once found a bug or new coverage
//! is replayed by `cargo test`. Inputs of bugs not fixed yet wait in `fuzz/known-crashes/`,
//! which is not replayed.
//!
//! The seed files made by the engine (`seed-*`) are written by the ignored test
//! `write_seed_corpus`; run it after a layout change, which makes the old seeds inputs that
//! attach refuses:
//! `cargo test -p ckpt-engine --test fuzz_corpus -- --ignored write_seed_corpus`.

mod domain;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use ckpt_engine::{
    CreateOptions, Registry, RegistryLimits, Replica, ReplicaAttributes, ReplicaLimits, Role,
    Sharing, TIME_END, WriteElement, fuzzing, wall_clock,
};
use domain::Domain;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Runs every corpus file of `target` through `harness`; a failure names the file.
fn replay(target: &str, harness: fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("read corpus file");
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| harness(&data))) {
            eprintln!("fuzz corpus replay failed on {}", file.display());
            fuzzing::cleanup();
            resume_unwind(p);
        }
    }
    fuzzing::cleanup();
    println!("replayed {} {target} corpus files", files.len());
    assert!(
        !files.is_empty(),
        "no corpus files in {}: nothing was replayed",
        dir.display()
    );
}

#[test]
fn arena_attach_corpus_replays_cleanly() {
    replay("arena_attach", fuzzing::arena_attach);
}

#[test]
fn arena_ops_corpus_replays_cleanly() {
    replay("arena_ops", fuzzing::arena_ops);
}

#[test]
fn registry_corpus_replays_cleanly() {
    replay("registry", fuzzing::registry);
}

// ---- seed files ---------------------------------------------------------------------------

/// The object without its trailing zeros: the harnesses zero-extend an input to the total
/// size its header names, so the seed need not carry them.
fn trimmed(mut bytes: Vec<u8>) -> Vec<u8> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.truncate(end.max(24));
    bytes
}

fn small_limits() -> ReplicaLimits {
    ReplicaLimits {
        agents: 64,
        spare_slots: 3,
        journal_cells: 64,
    }
}

fn attrs(max_sections: u32, max_section_size: u64, checkpoint_size: u64) -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size,
        retention_ns: 0,
        max_sections,
        max_section_size,
        max_section_id_size: 8,
    }
}

fn create(domain: &Path, name: &str, a: &ReplicaAttributes, limits: ReplicaLimits) -> Replica {
    let opts = CreateOptions {
        limits,
        ..CreateOptions::default()
    };
    Replica::create(domain, name, a, &opts).expect("create seed replica")
}

/// Sections, a deleted one, an overwrite, a grown section, a two-section write, an
/// expiration: most kinds of journal record and slot state.
fn populate(r: &Replica) {
    for (i, id) in [&b"s0"[..], b"s1", b"s2", b"s3"].into_iter().enumerate() {
        r.create_section(Some(id), TIME_END, &vec![i as u8 + 1; 8 * (i + 1)])
            .unwrap();
    }
    r.create_section(Some(b"gone"), TIME_END, b"x").unwrap();
    r.delete_section(b"gone").unwrap();
    r.overwrite(b"s0", b"overwritten").unwrap();
    let elem = |id, offset, data| WriteElement { id, offset, data };
    r.write(&[elem(b"s1", 20, b"tail")]).unwrap();
    r.write(&[elem(b"s2", 0, b"A"), elem(b"s3", 3, b"B")])
        .unwrap();
    r.set_expiration(b"s3", wall_clock() + 3_600_000_000_000)
        .unwrap();
    r.create_section(None, TIME_END, b"generated").unwrap();
}

fn replica_seeds(domain: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let read = |name: &str| trimmed(std::fs::read(domain.join(name)).expect("read seed"));
    let mut seeds = Vec::new();

    drop(create(domain, "empty", &attrs(4, 64, 256), small_limits()));
    seeds.push(("seed-empty", read("empty")));

    drop(create(domain, "default", &attrs(1, 32, 32), small_limits()));
    seeds.push(("seed-default-section", read("default")));

    let r = create(domain, "populated", &attrs(8, 64, 400), small_limits());
    populate(&r);
    drop(r);
    seeds.push(("seed-populated", read("populated")));

    // Read while the creator still has it mapped: its agent record is alive (for this
    // process, which is gone when the seed is used), with a pinned retired slot.
    let r = create(domain, "live", &attrs(8, 64, 400), small_limits());
    populate(&r);
    let guard = r.borrow(b"s2").unwrap();
    r.overwrite(b"s2", b"superseded while pinned").unwrap();
    let bytes = read("live");
    drop(guard);
    drop(r);
    seeds.push(("seed-live-agent-pinned", bytes));

    // The 64-cell journal lapped several times.
    let r = create(domain, "wrapped", &attrs(4, 48, 192), small_limits());
    populate_wrapped(&r);
    drop(r);
    seeds.push(("seed-journal-wrapped", read("wrapped")));

    // A replica with a replication position and acknowledgements; default agents and
    // spare slots.
    let limits = ReplicaLimits {
        journal_cells: 128,
        ..ReplicaLimits::default()
    };
    let r = create(domain, "replica", &attrs(8, 64, 512), limits);
    populate(&r);
    r.set_acked_seq(r.commit_seq());
    r.set_role(Role::Replica, 3);
    r.set_replication_position(3, 77);
    drop(r);
    seeds.push(("seed-replica-role", read("replica")));
    seeds
}

fn populate_wrapped(r: &Replica) {
    r.create_section(Some(b"w"), TIME_END, b"").unwrap();
    r.create_section(Some(b"v"), TIME_END, b"v").unwrap();
    for i in 0..200u64 {
        let data = [i as u8; 5];
        let elem = WriteElement {
            id: b"w",
            offset: i % 40,
            data: &data,
        };
        r.write(&[elem]).unwrap();
    }
}

fn registry_seeds(domain: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let limits = RegistryLimits {
        entries: 8,
        openers: 8,
    };
    let read = || trimmed(std::fs::read(domain.join("registry")).expect("read registry"));
    let mut seeds = Vec::new();
    let reg = Registry::open_with(domain, Sharing::default(), limits).expect("registry");
    seeds.push(("seed-empty", read()));

    let lim = small_limits();
    let a = attrs(2, 64, 128);
    let kept = reg.open_replica(b"safCkpt=open", Some((&a, &lim))).unwrap();
    let a = ReplicaAttributes {
        retention_ns: 3_600_000_000_000,
        ..a
    };
    let retained = reg
        .open_replica(b"safCkpt=retained", Some((&a, &lim)))
        .unwrap();
    reg.close(retained.instance).unwrap();
    let unlinked = reg
        .open_replica(b"safCkpt=unlinked", Some((&a, &lim)))
        .unwrap();
    reg.unlink(b"safCkpt=unlinked").unwrap();
    reg.add_open(kept.instance).unwrap();
    seeds.push(("seed-in-use", read()));
    drop((kept, retained, unlinked));
    seeds
}

#[test]
#[ignore = "writes the seed files of fuzz/corpus; run by hand after a layout change"]
fn write_seed_corpus() {
    let domain = Domain::new("fuzz-seeds");
    let targets = [
        ("arena_attach", replica_seeds(&domain.0)),
        ("registry", registry_seeds(&domain.0)),
        ("arena_ops", ops_seeds()),
    ];
    for (target, seeds) in targets {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), &bytes).unwrap();
            println!("{target}/{name}: {} bytes", bytes.len());
        }
    }
}

/// Operation streams from a fixed generator: model mode (first byte even) and mutation mode
/// (odd), short and long.
fn ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = |first: u8, n: usize| {
        let mut v = vec![first];
        v.extend((1..n).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        v
    };
    vec![
        ("seed-model-short", bytes(0, 64)),
        ("seed-model-long", bytes(2, 600)),
        ("seed-model-more", bytes(4, 300)),
        ("seed-mutation-short", bytes(1, 64)),
        ("seed-mutation-long", bytes(3, 600)),
        ("seed-mutation-more", bytes(5, 300)),
    ]
}
