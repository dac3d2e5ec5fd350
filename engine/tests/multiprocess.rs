//! Several processes on one replica: writer processes write while reader processes read.
//! A `harness = false` test (the binary re-executes itself as its children, role in
//! `CKPT_TEST_ROLE`); it prints `test … ok/FAILED` and `PASS`/`FAIL` lines and exits
//! non-zero if a test failed.
//!
//! - `writer_processes_lose_no_update_while_reader_processes_see_only_whole_values`: two
//!   writer processes each run a fixed mix of overwrites, multi-element writes,
//!   multi-section writes, creates, deletes and expiration changes on their own sections,
//!   and both overwrite two shared sections; two reader processes and a reader thread of
//!   the parent validate every value and every multi-section snapshot meanwhile, and a
//!   journal follower in the parent (what the replication daemon does: `wait_for_changes`,
//!   `changes_since`) reads every change as it is committed. At the end every section
//!   holds the last value its writer was told was written (the shared ones: the last value
//!   of one of the two writers), the follower has read exactly one record per acknowledged
//!   change with no hole, `fsck` is clean and no slot is busy.
//! - `readers_racing_a_writer_never_lose_a_slot_from_the_allocator`: reader processes pin
//!   one section's versions while the parent overwrites it as fast as it can with few
//!   spare slots; every write must succeed and every free slot must stay allocatable.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_engine::{
    ChangeKind, Changes, CreateOptions, Replica, ReplicaAttributes, ReplicaLimits, SectionError,
    SectionFilter, Sharing, TIME_END,
};
use support::{
    Cmd, Domain, Event, Layout, Proc, ROLE, ReadStats, Rng, SECTION_SIZE, Sect, child_command,
    decode, do_create, do_multi_element, do_overwrite, do_txn, encode, future_expiration,
};

const OBJECT: &str = "mp";
const WRITERS: u32 = 2;
/// Journal ring of the first test: the follower must never fall a ring behind.
const JOURNAL_CELLS: u64 = 1 << 17;
const READERS: usize = 2;

const TEST_WRITERS: &str =
    "writer_processes_lose_no_update_while_reader_processes_see_only_whole_values";
const TEST_SLOTS: &str = "readers_racing_a_writer_never_lose_a_slot_from_the_allocator";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child started without {name}"))
}

fn env_u64(name: &str) -> u64 {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// Writer `w`'s own sections (writers are numbered from 1).
fn own_layout(w: u32) -> Layout {
    Layout::new(w, 3, 3, 3)
}

/// Everything in the first test's replica.
fn full_layout() -> Layout {
    (2..=WRITERS)
        .fold(own_layout(1), |l, w| l.merge(own_layout(w)))
        .with_shared(2)
}

/// The one section of the second test.
fn race_layout() -> Layout {
    Layout::new(9, 1, 0, 0)
}

fn layout_named(name: &str) -> Layout {
    if name == "race" {
        race_layout()
    } else {
        full_layout()
    }
}

fn attrs(max_sections: u32) -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: u64::from(max_sections) * SECTION_SIZE as u64,
        retention_ns: 0,
        max_sections,
        max_section_size: SECTION_SIZE as u64,
        max_section_id_size: 32,
    }
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("writer") => writer_child(),
        Ok("reader") => support::reader_child(
            Path::new(&env("CKPT_TEST_DIR")),
            OBJECT,
            &layout_named(&env("CKPT_TEST_LAYOUT")),
            env_u64("CKPT_TEST_SEED"),
        ),
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
    support::run_seeded(vec![
        (TEST_WRITERS, false, Box::new(writers_test)),
        (TEST_SLOTS, false, Box::new(race_test)),
    ]);
}

// ---- the writer child ------------------------------------------------------------------

/// Runs `CKPT_TEST_OPS` operations on its own sections and the shared ones, then reports
/// what it was told succeeded: `DONE <ops> <journal records> <TryAgain retries>`, then
/// `S <id> <seq>` per own section (`-` when it should not exist) and `X <id> <seq>` per
/// shared section (its last write there, 0 for none), then `END`.
fn writer_child() -> ! {
    support::die_with_parent();
    let dir = env("CKPT_TEST_DIR");
    let w = env_u64("CKPT_TEST_WRITER") as u32;
    let ops = env_u64("CKPT_TEST_OPS");
    let mut rng = Rng::new(env_u64("CKPT_TEST_SEED"));
    let own = own_layout(w);
    let shared = full_layout().shared;
    let r = Replica::attach(Path::new(&dir), OBJECT, Sharing::default()).unwrap_or_else(|e| {
        eprintln!("writer {w}: attach failed: {e}");
        std::process::exit(2);
    });
    // The parent created every permanent section with seq 1 and the even ephemeral ones
    // with seq 2 (writer 0); this writer's seqs are w << 48 | n.
    let mut last: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
    for s in own.permanent() {
        last.insert(s.id.clone(), Some(1));
    }
    for (i, s) in own.eph.iter().enumerate() {
        last.insert(s.id.clone(), (i % 2 == 0).then_some(2));
    }
    let mut shared_last: Vec<u64> = vec![0; shared.len()];
    let mut records = 0usize;
    let mut retries = 0u64;
    let mut seq = u64::from(w) << 48;
    let mut done = 0;
    while done < ops {
        seq += 1;
        let pick = rng.below(100);
        let res: Result<(), SectionError> = match pick {
            0..=24 => {
                let s = &own.perm[rng.index(own.perm.len())];
                do_overwrite(&r, &mut rng, s, seq).map(|n| {
                    records += n;
                    last.insert(s.id.clone(), Some(seq));
                })
            }
            25..=44 => {
                let s = &own.perm[rng.index(own.perm.len())];
                do_multi_element(&r, &mut rng, s, seq).map(|n| {
                    records += n;
                    last.insert(s.id.clone(), Some(seq));
                })
            }
            45..=64 => {
                let group = own.txn();
                do_txn(&r, &mut rng, group, seq).map(|(n, mask)| {
                    records += n;
                    for (i, s) in group.iter().enumerate() {
                        if mask & (1 << i) != 0 {
                            last.insert(s.id.clone(), Some(seq));
                        }
                    }
                })
            }
            65..=84 => {
                let s = &own.eph[rng.index(own.eph.len())];
                if last[&s.id].is_some() {
                    r.delete_section(&s.id).map(|()| {
                        records += 1;
                        last.insert(s.id.clone(), None);
                    })
                } else {
                    do_create(&r, &mut rng, s, seq).map(|n| {
                        records += n;
                        last.insert(s.id.clone(), Some(seq));
                    })
                }
            }
            85..=89 => {
                let s = &own.eph[rng.index(own.eph.len())];
                match last[&s.id] {
                    Some(_) => r
                        .set_expiration(&s.id, future_expiration(&mut rng))
                        .map(|()| records += 1),
                    None => match r.set_expiration(&s.id, future_expiration(&mut rng)) {
                        Err(SectionError::NotExist) => Ok(()),
                        other => {
                            eprintln!("writer {w}: set_expiration of a deleted section: {other:?}");
                            std::process::exit(3);
                        }
                    },
                }
            }
            _ => {
                let k = rng.index(shared.len());
                do_overwrite(&r, &mut rng, &shared[k], seq).map(|n| {
                    records += n;
                    shared_last[k] = seq;
                })
            }
        };
        match res {
            Ok(()) => done += 1,
            Err(SectionError::TryAgain) if retries < 100_000 => {
                retries += 1;
                std::thread::yield_now();
            }
            Err(e) => {
                eprintln!("writer {w}: op {pick} seq {seq:#x} failed: {e:?}");
                std::process::exit(3);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "DONE {done} {records} {retries}");
    for (id, v) in &last {
        let v = v.map_or("-".to_owned(), |s| s.to_string());
        let _ = writeln!(out, "S {} {v}", String::from_utf8_lossy(id));
    }
    for (s, v) in shared.iter().zip(&shared_last) {
        let _ = writeln!(out, "X {} {v}", String::from_utf8_lossy(&s.id));
    }
    let _ = writeln!(out, "END");
    let _ = out.flush();
    drop(r);
    std::process::exit(0);
}

// ---- shared parent plumbing -------------------------------------------------------------

fn create_replica(dir: &Path, max_sections: u32, limits: ReplicaLimits) -> Result<Replica, String> {
    let opts = CreateOptions {
        limits,
        sharing: Sharing::default(),
        instance: 1,
        ..CreateOptions::default()
    };
    Replica::create(dir, OBJECT, &attrs(max_sections), &opts).map_err(|e| format!("create: {e}"))
}

fn spawn_reader(dir: &Path, layout: &str, seed: u64) -> Proc {
    let cmd = child_command(
        "reader",
        &[
            ("CKPT_TEST_DIR", dir.display().to_string()),
            ("CKPT_TEST_LAYOUT", layout.to_owned()),
            ("CKPT_TEST_SEED", seed.to_string()),
        ],
    );
    let mut p = Proc::spawn(cmd, true);
    p.expect_line("R");
    p
}

/// Stops a reader child: its stats, and its violation lines into `violations`.
fn stop_reader(mut p: Proc, violations: &mut Vec<String>) -> ReadStats {
    p.send(b'q');
    let mut stats = None;
    while let Some(l) = p.line() {
        if l == "END" {
            break;
        }
        if let Some(v) = l.strip_prefix("V ") {
            violations.push(v.to_owned());
        } else if let Some(s) = ReadStats::parse(&l) {
            stats = Some(s);
        }
    }
    let _ = p.child.wait();
    stats.unwrap_or_else(|| {
        violations.push("a reader ended without stats".into());
        ReadStats::default()
    })
}

/// fsck with nobody active: clean, quiescent, no busy slot, no dead agent.
fn check_idle(r: &Replica) -> Vec<String> {
    let mut f = Vec::new();
    let report = r.fsck();
    if !report.is_clean() || !report.quiescent || report.busy_slots != 0 {
        f.push(format!("fsck: {report}; busy slots {}", report.busy_slots));
    }
    let dead: Vec<_> = r.agents().into_iter().filter(|a| !a.alive).collect();
    if !dead.is_empty() {
        f.push(format!("agent records of exited processes left: {dead:?}"));
    }
    f
}

// ---- test 1 ----------------------------------------------------------------------------

fn writers_test(seed: u64) -> Result<(), String> {
    let ops: u64 = std::env::var("MP_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150_000);
    let dom = Domain::new("mp");
    let dir = dom.0.clone();
    let layout = full_layout();
    let limits = ReplicaLimits {
        agents: 128,
        spare_slots: 0,
        journal_cells: JOURNAL_CELLS as u32,
    };
    let r = create_replica(&dir, 32, limits)?;
    let mut setup_records = 0usize;
    for s in layout.permanent() {
        r.create_section(Some(&s.id), TIME_END, &encode(1, s.tag, 0, SECTION_SIZE))
            .map_err(|e| format!("{e}"))?;
        setup_records += 1;
    }
    for w in 1..=WRITERS {
        for s in own_layout(w).eph.iter().step_by(2) {
            r.create_section(Some(&s.id), TIME_END, &encode(2, s.tag, 0, 100))
                .map_err(|e| format!("{e}"))?;
            setup_records += 1;
        }
    }

    let t0 = Instant::now();
    let writing = AtomicBool::new(true);
    let (writer_reports, child_stats, thread_stats, violations, followed) =
        std::thread::scope(|scope| {
            let follower = scope.spawn(|| follow_journal(&r, &writing));
            let (cmd_tx, cmd_rx) = mpsc::channel();
            let (ev_tx, ev_rx) = mpsc::channel();
            let thread = scope.spawn({
                let (r, layout) = (&r, &layout);
                move || {
                    support::reader_loop(
                        r,
                        layout,
                        seed ^ 0x5eed,
                        "parent reader",
                        &cmd_rx,
                        &mut |ev| {
                            let _ = ev_tx.send(ev);
                        },
                    )
                }
            });
            let readers: Vec<Proc> = (0..READERS)
                .map(|i| spawn_reader(&dir, "full", support::mix64(seed ^ (i as u64 + 1))))
                .collect();
            let writers: Vec<Proc> = (1..=WRITERS)
                .map(|w| {
                    let cmd = child_command(
                        "writer",
                        &[
                            ("CKPT_TEST_DIR", dir.display().to_string()),
                            ("CKPT_TEST_WRITER", w.to_string()),
                            ("CKPT_TEST_OPS", ops.to_string()),
                            (
                                "CKPT_TEST_SEED",
                                support::mix64(seed ^ (u64::from(w) << 32)).to_string(),
                            ),
                        ],
                    );
                    Proc::spawn(cmd, false)
                })
                .collect();
            let mut reports = Vec::new();
            for mut p in writers {
                let mut lines = Vec::new();
                while let Some(l) = p.line() {
                    if l == "END" {
                        break;
                    }
                    lines.push(l);
                }
                let status = p.child.wait().ok().and_then(|s| s.code());
                reports.push((status, lines));
            }
            writing.store(false, Ordering::SeqCst);
            let followed = follower.join().expect("the journal follower");
            let mut violations = Vec::new();
            let mut child_stats = ReadStats::default();
            for p in readers {
                child_stats.merge(&stop_reader(p, &mut violations));
            }
            let _ = cmd_tx.send(Cmd::Stop);
            let thread_stats = thread.join().expect("the parent reader thread");
            while let Ok(ev) = ev_rx.try_recv() {
                if let Event::Violation(v) = ev {
                    violations.push(v);
                }
            }
            (reports, child_stats, thread_stats, violations, followed)
        });
    let busy_secs = t0.elapsed().as_secs_f64();

    let mut failures = Vec::new();
    // What the writers were told.
    let mut expect: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut shared_last: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let (mut records, mut done, mut retries) = (setup_records, 0u64, 0u64);
    for (k, (status, lines)) in writer_reports.iter().enumerate() {
        if *status != Some(0) {
            failures.push(format!("writer {} ended with {status:?}", k + 1));
            continue;
        }
        for l in lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["DONE", d, n, t] => {
                    done += d.parse::<u64>().unwrap_or(0);
                    records += n.parse::<usize>().unwrap_or(0);
                    retries += t.parse::<u64>().unwrap_or(0);
                }
                ["S", id, "-"] => {
                    expect.insert((*id).to_owned(), None);
                }
                ["S", id, v] => {
                    expect.insert((*id).to_owned(), v.parse().ok());
                }
                ["X", id, v] => shared_last
                    .entry((*id).to_owned())
                    .or_default()
                    .push(v.parse().unwrap_or(0)),
                _ => failures.push(format!("writer {}: unexpected line {l:?}", k + 1)),
            }
        }
    }
    // Every section holds the last value its writer was told was written.
    let all: Vec<&Sect> = layout.all().collect();
    for s in &all {
        let id = String::from_utf8_lossy(&s.id).into_owned();
        let now = match r.read_to_vec(&s.id) {
            Ok(v) => match decode(&v, s.tag) {
                Ok(rec) => Some(rec.seq),
                Err(e) => {
                    failures.push(format!("section {id}: {e}"));
                    continue;
                }
            },
            Err(SectionError::NotExist) => None,
            Err(e) => {
                failures.push(format!("section {id}: {e:?}"));
                continue;
            }
        };
        if let Some(lasts) = shared_last.get(&id) {
            let ok = match now {
                Some(seq) if lasts.iter().all(|&l| l == 0) => seq == 1,
                Some(seq) => lasts.contains(&seq),
                None => false,
            };
            if !ok {
                failures.push(format!(
                    "shared section {id} holds {now:?}, the writers' last writes were {lasts:?}"
                ));
            }
        } else if let Some(want) = expect.get(&id)
            && now != *want
        {
            failures.push(format!(
                "section {id} holds seq {now:?}, its writer was last told {want:?} (lost update)"
            ));
        }
    }
    // The journal: the follower saw exactly one record per acknowledged change, in order,
    // with no hole, and the ring reads through to commit_seq.
    let head = r.commit_seq();
    let followed = followed.map_err(|e| format!("journal follower: {e}"))?;
    if followed.cursor != head {
        failures.push(format!(
            "the journal follower stopped at {} below commit_seq {head}",
            followed.cursor
        ));
    }
    if followed.records != records as u64 {
        failures.push(format!(
            "{} journal records for {records} acknowledged changes",
            followed.records
        ));
    }
    let status = r.status();
    if followed.creates - followed.deletes != i64::from(status.sections) {
        failures.push(format!(
            "journal: {} creates - {} deletes, but {} sections",
            followed.creates, followed.deletes, status.sections
        ));
    }
    let mut ring = Vec::new();
    let from = head.saturating_sub(JOURNAL_CELLS);
    let read = r.changes_since(from, &mut ring, usize::MAX);
    if read != Changes::UpTo(head) {
        failures.push(format!(
            "journal read from {from} gives {read:?}, commit_seq is {head}"
        ));
    }
    let listed: u64 = r.sections(SectionFilter::Any).map(|s| s.size).sum();
    if listed != status.memory_used {
        failures.push(format!(
            "memoryUsed {} but the sections hold {listed} bytes",
            status.memory_used
        ));
    }
    failures.extend(check_idle(&r));

    let mut reads = child_stats.clone();
    reads.merge(&thread_stats);
    println!("--- {TEST_WRITERS} ---");
    println!(
        "{WRITERS} writer processes: {done} operations acknowledged in {busy_secs:.2} s ({retries} TryAgain retries)"
    );
    println!(
        "journal follower: {} records up to commit_seq {head}, no hole, {} waits: {:?}",
        followed.records, followed.waits, followed.kinds
    );
    println!("{READERS} reader processes + 1 reader thread: {reads}");
    println!("torn reads: {}", reads.torn + reads.mixed);
    for v in violations.iter().chain(&reads.notes).take(20) {
        failures.push(format!("reader: {v}"));
    }
    if reads.violations() > 0 || !violations.is_empty() {
        failures.push(format!("readers saw violations: {reads}"));
    }
    drop(r);
    Replica::remove(&dir, OBJECT).map_err(|e| format!("remove: errno {e}"))?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// What the journal follower read.
#[derive(Debug, Default)]
struct Followed {
    cursor: u64,
    records: u64,
    creates: i64,
    deletes: i64,
    waits: u64,
    kinds: BTreeMap<String, u64>,
}

/// Follows the journal while `writing`, then to `commit_seq`: every change once, in order.
fn follow_journal(r: &Replica, writing: &AtomicBool) -> Result<Followed, String> {
    let mut f = Followed::default();
    let mut out = Vec::new();
    loop {
        let done = !writing.load(Ordering::SeqCst);
        if done && f.cursor == r.commit_seq() {
            return Ok(f);
        }
        if !r.wait_for_changes(f.cursor, Duration::from_millis(5)) {
            f.waits += 1;
            continue;
        }
        out.clear();
        match r.changes_since(f.cursor, &mut out, 4096) {
            Changes::UpTo(x) => {
                for c in &out {
                    if c.seq <= f.cursor || c.seq > x {
                        return Err(format!("record {} out of order after {}", c.seq, f.cursor));
                    }
                    f.records += 1;
                    *f.kinds.entry(format!("{:?}", c.kind)).or_default() += 1;
                    match c.kind {
                        ChangeKind::Create => f.creates += 1,
                        ChangeKind::Delete => f.deletes += 1,
                        _ => {}
                    }
                }
                if x == f.cursor && done {
                    // Nothing more is readable although commit_seq is ahead: a hole.
                    std::thread::sleep(Duration::from_millis(50));
                    if r.changes_since(f.cursor, &mut out, 1) == Changes::UpTo(f.cursor) {
                        return Err(format!(
                            "the journal stops at {} below commit_seq {}",
                            f.cursor,
                            r.commit_seq()
                        ));
                    }
                }
                f.cursor = x;
            }
            Changes::Resync(x) => {
                return Err(format!("fell a ring behind at {} (head {x})", f.cursor));
            }
        }
    }
}

// ---- test 2 ----------------------------------------------------------------------------

fn race_test(seed: u64) -> Result<(), String> {
    let dom = Domain::new("mp-race");
    let dir = dom.0.clone();
    let layout = race_layout();
    let s = &layout.perm[0];
    // Few spares: a handful of slots lost from the allocator starves the writer.
    let limits = ReplicaLimits {
        agents: 64,
        spare_slots: 8,
        journal_cells: 1 << 12,
    };
    let r = create_replica(&dir, 2, limits)?;
    r.create_section(Some(&s.id), TIME_END, &encode(1, s.tag, 0, SECTION_SIZE))
        .map_err(|e| format!("{e}"))?;
    let readers: Vec<Proc> = (0..READERS)
        .map(|i| spawn_reader(&dir, "race", support::mix64(seed ^ i as u64)))
        .collect();
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let mut writes = 0u64;
    let mut failures = Vec::new();
    while t0.elapsed() < Duration::from_millis(1500) {
        writes += 1;
        if let Err(e) = do_overwrite(&r, &mut rng, s, 1 + writes) {
            let report = r.fsck();
            failures.push(format!(
                "overwrite {writes} failed with {e:?}; fsck: {report}"
            ));
            break;
        }
    }
    let mut violations = Vec::new();
    let mut reads = ReadStats::default();
    for p in readers {
        reads.merge(&stop_reader(p, &mut violations));
    }
    failures.extend(check_idle(&r));
    println!("--- {TEST_SLOTS} ---");
    println!(
        "{writes} overwrites of one section (8 spare slots) against {READERS} reader processes: {reads}"
    );
    failures.extend(
        violations
            .into_iter()
            .take(10)
            .map(|v| format!("reader: {v}")),
    );
    if reads.violations() > 0 {
        failures.push(format!("readers saw violations: {reads}"));
    }
    drop(r);
    Replica::remove(&dir, OBJECT).map_err(|e| format!("remove: errno {e}"))?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}
