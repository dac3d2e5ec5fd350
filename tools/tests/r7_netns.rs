//! Reliability tier R7: three real `ckptd` processes, each in its own network namespace,
//! under network and process faults, checked Jepsen-style. A `harness = false` test (it
//! re-executes itself for the agent roles); it prints the seed, a report per round, and,
//! as its last line, `N passed, N failed`. It needs root, `ip` (netns), `nft` (netdev
//! egress hook) and `tc` (tbf); without them it prints `SKIPPED: R7 (<why>)` and exits 0
//! without claiming a pass.
//!
//! ```sh
//! cargo test -p ckpt-tools --test r7_netns                        # one 50 s round (CI)
//! R7_DURATION=1800 cargo test -p ckpt-tools --test r7_netns       # 30 min, rounds of 120 s
//! SEED=42 R7_DURATION=50 cargo test -p ckpt-tools --test r7_netns # replay a seed's schedule
//! ```
//!
//! `R7_DURATION` is the total faulty time in seconds (default 50), `R7_ROUND` the faulty
//! time of one round (default: all of it up to 120 s), `SEED` fixes the fault schedule,
//! the placements and the agents' choices, `R7_KEEP=1` keeps the histories and daemon logs
//! (the directory is printed). The kernel's packet loss and duplication and the threads'
//! timing are not seeded: a replay repeats the schedule, not every packet.
//!
//! The set-up: namespaces `ckr7-<pid>-n1..n3` (10.77.0.1–3/24 on `eth0`) joined by veth
//! pairs to a bridge in `ckr7-<pid>-br`; one `ckptd` per node namespace (`ip netns exec`),
//! all three directors, certificates from `write_cluster_certs` (what `ckpt cert` does),
//! its own shm directory and Unix socket per node. Every round uses two fresh
//! non-collocated checkpoints, so each has a replica on all three nodes: `all`
//! (WR_ALL_REPLICAS) and `async` (WR_ACTIVE_REPLICA, synchronized by its writers); the node
//! creating each (its first primary) is drawn from the seed.
//!
//! Per node, a writer process (an agent in cluster mode through `CKPT_CLUSTER_SOCKET`)
//! owns two sections in each checkpoint and overwrites them with increasing, unique values
//! (value = header naming checkpoint, writer, section and counter, a counter-derived
//! payload of varying length, and an FNV checksum). It logs each write before issuing it
//! (`invoked`) and logs it `acknowledged` when an ALL_REPLICAS write returned OK, or when a
//! later `synchronize` of the handle that wrote it returned OK (the writes a
//! FAILED_OPERATION synchronize covered stay indeterminate; after a TIMEOUT or TRY_AGAIN
//! they wait for the next synchronize, as the agent keeps them unconfirmed). Any error
//! makes a write indeterminate, never a failure of the tier.
//! Per node, a reader process reads the other writers' sections (the ALL_REPLICAS
//! checkpoint from its local replica, the asynchronous one through the active replica and
//! with the explicit local read) and logs the value it decoded, or the bytes if they are
//! not a complete value.
//!
//! Faults, from the seed, during the faulty time of a round: nftables 5 % loss and 2 %
//! duplication on every node's egress, tbf 20 Mbit/s on both ends of every link, and one
//! at a time (the first three in a seeded order, so every round has each): a 3 s
//! partition of one node (nft drops everything to and from it), SIGSTOP of one daemon for
//! 0.3–2.5 s then SIGCONT, kill -9 of one daemon restarted 0.5–2.5 s later with the same
//! cluster file and shm directory.
//!
//! Then everything is healed (rules and qdiscs removed, SIGCONT, dead daemons restarted),
//! the writers stop and synchronize what they still hold, and a checker process opens both
//! checkpoints on every node, synchronizes, and reads every node's replica locally (the
//! replica object listed with the engine, the bytes read with `read_local`) until the
//! three agree (60 s at most). Checks, one per property per round:
//!
//! - `settled`: after the heal every node's synchronize returned OK;
//! - `lost_all_replicas = 0` and `lost_synchronized = 0`: every acknowledged write is on
//!   every replica (the final value of each section is at least its highest acknowledged
//!   one);
//! - `unexpected = 0`: no value read or left in a replica that no writer invoked there;
//! - `no_torn_reads`: every value read or left is complete;
//! - `replicas_identical`: the three replicas of each checkpoint are byte-identical;
//! - `faults_injected`: every fault was injected and removed as planned;
//! - `daemons_stayed_up`: no daemon exited unless this test killed it.
//!
//! Also printed, not checked: the nftables counters (packets seen, dropped, duplicated),
//! what the daemons logged (peers down, leader changes, primaries named, evictions), calls
//! that took over 3 s, and reads that went backwards.
//!
//! Cleanup on every path (a panic included): children are killed (they also get SIGKILL
//! if this process dies: PR_SET_PDEATHSIG), namespaces deleted, directories removed; a
//! watchdog does the same and exits 1 if the run outlives its bound; the namespaces and
//! directories of a run that was itself killed (its pid gone) are removed at the next
//! start.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[path = "../../engine/tests/support/tier.rs"]
mod tier;

use ckpt_agent::{
    Callbacks, Checkpoint, Config, CreationAttributes, CreationFlags, Error, Library, OpenFlags,
    ReadElement, TIME_END, Version,
};
use ckpt_engine::{Replica, SectionFilter, Sharing};
use ckpt_tools::ckptd;
use ckpt_transport::tls::write_cluster_certs;
use tier::{collect, select};

const ROLE: &str = "CKPT_R7_ROLE";
const TEST_NAME: &str = "r7_real_daemons_in_netns_under_faults_lose_no_acknowledged_write";
const NODES: [u8; 3] = [1, 2, 3];
const SECTIONS: u8 = 2;
const PORT: u16 = 7100;
const SECOND: i64 = 1_000_000_000;
/// Checkpoint tags in values and logs.
const ALL: usize = 0;
const ASYNC: usize = 1;
const CK_NAMES: [&str; 2] = ["all", "async"];

// ---- small helpers ---------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn env_str(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// A small seeded PRNG (splitmix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [lo, hi) milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex_or_dash(b: &[u8]) -> String {
    if b.is_empty() { "-".into() } else { hex(b) }
}

fn err_name(e: Error) -> &'static str {
    e.name().trim_start_matches("SA_AIS_ERR_")
}

fn section_id(writer: u8, s: u8) -> Vec<u8> {
    format!("w{writer}s{s}").into_bytes()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn seed() -> u64 {
    std::env::var("SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000)
        })
}

// ---- values: complete or not -----------------------------------------------------------

const MAGIC: &[u8; 4] = b"R7v1";
/// magic, (checkpoint, writer, section, 0), counter, length.
const HEADER: usize = 4 + 4 + 8 + 4;

/// The value writer `writer` writes as its `counter`th write, to section `s` of
/// checkpoint `ck`: 32–391 bytes, ending with an FNV-1a checksum of the rest.
fn encode(ck: usize, writer: u8, s: u8, counter: u64) -> Vec<u8> {
    let key = counter ^ (u64::from(writer) << 40) ^ (u64::from(s) << 48) ^ ((ck as u64) << 56);
    let len = 32 + (mix(key) % 360) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&[ck as u8, writer, s, 0]);
    v.extend_from_slice(&counter.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    let mut x = key;
    while v.len() < len - 8 {
        x = mix(x.wrapping_add(0x9e37_79b9_7f4a_7c15));
        v.push(x as u8);
    }
    let sum = fnv(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// A complete value's (checkpoint, writer, section, counter), or None.
fn decode(b: &[u8]) -> Option<(usize, u8, u8, u64)> {
    if b.len() < HEADER + 8 || &b[..4] != MAGIC {
        return None;
    }
    let (ck, writer, s) = (usize::from(b[4]), b[5], b[6]);
    let counter = u64::from_le_bytes(b[8..16].try_into().ok()?);
    if ck > 1 {
        return None;
    }
    (encode(ck, writer, s, counter) == b).then_some((ck, writer, s, counter))
}

// ---- what this process owns (for cleanup on every path) --------------------------------

struct Owned {
    pids: BTreeSet<u32>,
    netns: Vec<String>,
    dirs: Vec<PathBuf>,
    keep: bool,
}

static OWNED: Mutex<Owned> = Mutex::new(Owned {
    pids: BTreeSet::new(),
    netns: Vec::new(),
    dirs: Vec::new(),
    keep: false,
});
static FINISHED: AtomicBool = AtomicBool::new(false);

fn owned() -> MutexGuard<'static, Owned> {
    OWNED.lock().unwrap_or_else(|p| p.into_inner())
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

/// Kills every process still registered (never reaped, so the pid is still ours), deletes
/// the namespaces and removes the directories. Idempotent.
fn cleanup_everything() {
    let (pids, netns, dirs, keep) = {
        let mut o = owned();
        (
            std::mem::take(&mut o.pids),
            std::mem::take(&mut o.netns),
            std::mem::take(&mut o.dirs),
            o.keep,
        )
    };
    for &pid in &pids {
        signal(pid, rustix::process::Signal::CONT);
        signal(pid, rustix::process::Signal::KILL);
    }
    if !pids.is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    for ns in netns.iter().rev() {
        let _ = run_cmd("ip", &["netns", "del", ns], Duration::from_secs(10));
    }
    for d in dirs {
        if keep {
            println!("R7: kept {}", d.display());
        } else {
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

/// Spawns `cmd` with PR_SET_PDEATHSIG = SIGKILL, registered for cleanup.
fn spawn_owned(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: between fork and exec the closure makes one prctl system call, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn()?;
    owned().pids.insert(child.id());
    Ok(child)
}

/// Kills (SIGCONT first, so a stopped one dies at once) and reaps `child`.
fn reap(child: &mut Child) -> Option<ExitStatus> {
    if matches!(child.try_wait(), Ok(None)) {
        signal(child.id(), rustix::process::Signal::CONT);
        let _ = child.kill();
    }
    let st = child.wait().ok();
    owned().pids.remove(&child.id());
    st
}

/// The child's status if it has exited (then it is reaped and unregistered).
fn exited(child: &mut Child) -> Option<ExitStatus> {
    match child.try_wait() {
        Ok(Some(st)) => {
            owned().pids.remove(&child.id());
            Some(st)
        }
        _ => None,
    }
}

/// Runs a command to completion within `limit`; its stdout, or why it failed.
fn run_cmd(program: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut child = Command::new(tool(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{program}`: {e}"))?;
    let (out, err, status) = collect(&mut child, limit);
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => Err(format!(
            "`{program} {}`: {s}: {}",
            args.join(" "),
            err.trim()
        )),
        None => Err(format!(
            "`{program} {}` took more than {limit:?}",
            args.join(" ")
        )),
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run_cmd("ip", args, Duration::from_secs(10))
}

/// Runs `args` inside namespace `ns`.
fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let program = args.first().map(|p| tool(p)).unwrap_or_default();
    let program = program.to_string_lossy();
    let mut all = vec!["netns", "exec", ns, &program];
    all.extend_from_slice(args.get(1..).unwrap_or_default());
    ip(&all)
}

/// `name` as found in PATH, else in /usr/sbin or /sbin (root's tools, when PATH lacks
/// them), else as is.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `name` is `ckr7-<pid>-…` of a run whose process is gone.
fn left_by_dead_run(name: &str) -> bool {
    name.strip_prefix("ckr7-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && !pid_alive(pid))
}

/// Deletes the namespaces and directories of runs that were killed before their cleanup.
fn sweep_stale() {
    if let Ok(list) = ip(&["netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if left_by_dead_run(name) {
                println!("R7: deleting the namespace {name} left by a dead run");
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    for parent in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in entries.flatten() {
            if left_by_dead_run(&e.file_name().to_string_lossy()) {
                println!("R7: removing {} left by a dead run", e.path().display());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

// ---- main ----------------------------------------------------------------------------

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let result = match role.as_str() {
            "writer" => writer(),
            "reader" => reader(),
            "check" => checker(),
            other => Err(format!("unknown role {other}")),
        };
        match result {
            Ok(()) => std::process::exit(0),
            Err(why) => {
                eprintln!("r7 {role}: {why}");
                std::process::exit(1);
            }
        }
    }
    // `--list` and name filters as libtest has them; no ignored variant (the long run is
    // selected by R7_DURATION).
    if !select(&[(TEST_NAME, false)])[0] {
        println!("0 passed, 0 failed");
        return;
    }

    let seed = seed();
    let duration = env_u64("R7_DURATION", 50).max(5);
    let round_secs = env_u64("R7_ROUND", duration.min(120)).clamp(5, duration);
    let rounds = duration.div_ceil(round_secs);
    owned().keep = std::env::var_os("R7_KEEP").is_some_and(|v| !v.is_empty() && v != "0");
    let replay = format!(
        "SEED={seed} R7_DURATION={duration} R7_ROUND={round_secs} cargo test -p ckpt-tools --test r7_netns"
    );
    println!("running 1 test");
    println!("R7 seed: {seed} ({rounds} round(s) of {round_secs} s faulty time; replay: {replay})");

    if let Some(why) = preflight() {
        println!("test {TEST_NAME} ... SKIPPED\nSKIPPED: R7 ({why})");
        println!("1 skipped (not counted as passed)\n0 passed, 0 failed");
        return;
    }

    // The watchdog: whatever hangs, the run ends within its bound, cleaned up.
    let bound = Duration::from_secs(120 + rounds * (round_secs + 240));
    let replay_w = replay.clone();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < bound {
            if FINISHED.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        println!(
            "R7: watchdog: the run outlived its bound of {bound:?}; cleaning up (seed {seed}; replay: {replay_w})"
        );
        cleanup_everything();
        println!("test {TEST_NAME} ... FAILED (watchdog)\n0 passed, 1 failed");
        std::process::exit(1);
    });

    let t0 = Instant::now();
    let outcome = std::panic::catch_unwind(|| run(seed, rounds, round_secs, duration));
    cleanup_everything();
    FINISHED.store(true, Ordering::SeqCst);
    let secs = t0.elapsed().as_secs_f64();
    let checks = match outcome {
        Ok(Ok(checks)) => checks,
        Ok(Err(Setup::Skip(why))) => {
            println!("test {TEST_NAME} ... SKIPPED\nSKIPPED: R7 ({why})");
            println!("1 skipped (not counted as passed)\n0 passed, 0 failed");
            return;
        }
        Ok(Err(Setup::Fail(why))) => vec![("setup".to_owned(), Err(why))],
        Err(_) => vec![("run".to_owned(), Err("panicked".to_owned()))],
    };
    let passed = checks.iter().filter(|(_, r)| r.is_ok()).count();
    let failed = checks.len() - passed;
    for (name, r) in &checks {
        match r {
            Ok(()) => println!("check {name} ... ok"),
            Err(why) => println!("check {name} ... FAILED: {why}"),
        }
    }
    if failed > 0 {
        println!("test {TEST_NAME} ... FAILED ({secs:.1} s)");
        println!(
            "R7 FAILED with seed {seed}; replay: {replay} (add R7_KEEP=1 to keep the histories \
             and daemon logs)"
        );
    } else {
        println!("test {TEST_NAME} ... ok ({secs:.1} s)");
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Why R7 cannot run here, if it cannot.
fn preflight() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("network namespaces, nftables and tc need root".into());
    }
    for (tool, args, pkg) in [
        ("ip", &["-V"][..], "iproute2"),
        ("nft", &["--version"][..], "nftables"),
        ("tc", &["-V"][..], "iproute2"),
    ] {
        if let Err(e) = run_cmd(tool, args, Duration::from_secs(10)) {
            return Some(format!(
                "`{tool}` is not usable ({e}); install {pkg} (.ci/run does)"
            ));
        }
    }
    None
}

enum Setup {
    Skip(String),
    Fail(String),
}

type Checks = Vec<(String, Result<(), String>)>;

fn run(seed: u64, rounds: u64, round_secs: u64, duration: u64) -> Result<Checks, Setup> {
    sweep_stale();
    let mut world = World::setup()?;
    let mut checks = Vec::new();
    let mut left = duration;
    for r in 1..=rounds {
        let secs = left.min(round_secs);
        left -= secs;
        let report = world.round(r, seed, Duration::from_secs(secs));
        let failed = report.iter().any(|(_, res)| res.is_err());
        checks.extend(report);
        if failed {
            world.print_daemon_logs(40);
        }
    }
    drop(world);
    Ok(checks)
}

// ---- the world: namespaces, daemons --------------------------------------------------

struct Daemon {
    node: u8,
    child: Option<Child>,
    /// Exits this test did not cause, this round.
    self_exits: Vec<String>,
}

struct World {
    prefix: String,
    root: PathBuf,
    config: PathBuf,
    shm_dirs: Vec<PathBuf>,
    sockets: Vec<PathBuf>,
    daemons: Vec<Daemon>,
}

impl World {
    fn ns(&self, node: u8) -> String {
        format!("{}-n{node}", self.prefix)
    }

    fn bridge(&self) -> String {
        format!("{}-br", self.prefix)
    }

    fn setup() -> Result<Self, Setup> {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let unique = format!("ckr7-{pid}-{nanos}");
        let root = std::env::temp_dir().join(&unique);
        let shm_root = Path::new("/dev/shm").join(&unique);
        {
            let mut o = owned();
            o.dirs.push(root.clone());
            o.dirs.push(shm_root.clone());
        }
        let fail = |what: &str, e: &dyn std::fmt::Display| Setup::Fail(format!("{what}: {e}"));
        std::fs::create_dir_all(&root).map_err(|e| fail("temporary directory", &e))?;
        std::fs::create_dir_all(&shm_root).map_err(|e| fail("shm directory", &e))?;
        let nodes: Vec<u32> = NODES.iter().map(|&n| u32::from(n)).collect();
        write_cluster_certs(&root.join("certs"), &nodes, false)
            .map_err(|e| fail("certificates", &e))?;
        let mut toml = String::new();
        let _ = writeln!(toml, "two_node = false\nca = \"certs/ca.pem\"");
        let _ = writeln!(toml, "keep_alive_ms = 250\nidle_timeout_ms = 1000");
        let mut shm_dirs = Vec::new();
        let mut sockets = Vec::new();
        for n in NODES {
            let shm = shm_root.join(format!("node-{n}"));
            let sock = root.join(format!("node-{n}.sock"));
            let _ = writeln!(
                toml,
                "\n[[node]]\nid = {n}\naddress = \"10.77.0.{n}:{PORT}\"\ndirector = true\n\
                 cert = \"certs/node-{n}.pem\"\nkey = \"certs/node-{n}.key\"\n\
                 shm_dir = \"{}\"\nsocket = \"{}\"",
                shm.display(),
                sock.display()
            );
            shm_dirs.push(shm);
            sockets.push(sock);
        }
        let config = root.join("cluster.toml");
        std::fs::write(&config, &toml).map_err(|e| fail("cluster file", &e))?;
        ckptd::ClusterConfig::load(&config).map_err(|e| fail("cluster file", &e))?;

        let mut w = Self {
            prefix: format!("ckr7-{pid}"),
            root,
            config,
            shm_dirs,
            sockets,
            daemons: Vec::new(),
        };
        w.network()?;
        for n in NODES {
            w.daemons.push(Daemon {
                node: n,
                child: None,
                self_exits: Vec::new(),
            });
            w.start_daemon(n).map_err(Setup::Fail)?;
        }
        // Every daemon listens on its socket before any agent starts.
        let start = Instant::now();
        while !w.sockets.iter().all(|s| s.exists()) {
            if start.elapsed() > Duration::from_secs(30) {
                return Err(Setup::Fail(
                    "the daemons did not open their sockets within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(w)
    }

    /// The namespaces and links, and a probe of the fault tools.
    fn network(&mut self) -> Result<(), Setup> {
        let br = self.bridge();
        owned().netns.push(br.clone());
        if let Err(e) = ip(&["netns", "add", &br]) {
            return Err(Setup::Skip(format!(
                "cannot create a network namespace: {e}"
            )));
        }
        let fail = Setup::Fail;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]).map_err(fail)?;
        ip(&["-n", &br, "link", "set", "br0", "up"]).map_err(fail)?;
        for n in NODES {
            let ns = self.ns(n);
            owned().netns.push(ns.clone());
            ip(&["netns", "add", &ns]).map_err(fail)?;
            let port = format!("p{n}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])
            .map_err(fail)?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"]).map_err(fail)?;
            ip(&["-n", &br, "link", "set", &port, "up"]).map_err(fail)?;
            let addr = format!("10.77.0.{n}/24");
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]).map_err(fail)?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"]).map_err(fail)?;
            ip(&["-n", &ns, "link", "set", "lo", "up"]).map_err(fail)?;
        }
        // The fault tools work here (egress hook: Linux 5.16+; tbf).
        if let Err(e) = self.degrade() {
            return Err(Setup::Skip(format!(
                "the faults cannot be injected here: {e}"
            )));
        }
        self.heal_network().map_err(fail)
    }

    /// Loss 5 %, duplication 2 % on every node's egress; tbf 20 Mbit/s both ways.
    fn degrade(&self) -> Result<(), String> {
        for n in NODES {
            let ns = self.ns(n);
            let script = "table netdev ckr7 {\n\
                 \tchain out {\n\
                 \t\ttype filter hook egress device \"eth0\" priority 0; policy accept;\n\
                 \t\tcounter\n\
                 \t\tnumgen random mod 100 < 5 counter drop\n\
                 \t\tnumgen random mod 100 < 2 counter dup to \"eth0\"\n\
                 \t}\n}\n";
            self.nft(&ns, "loss", script)?;
            in_ns(&ns, &tbf("eth0"))?;
            in_ns(&self.bridge(), &tbf(&format!("p{n}")))?;
        }
        Ok(())
    }

    /// Packets the loss table saw, dropped and duplicated, over every node.
    fn loss_counters(&self) -> [u64; 3] {
        let mut total = [0u64; 3];
        for n in NODES {
            let Ok(out) = in_ns(&self.ns(n), &["nft", "list", "table", "netdev", "ckr7"]) else {
                continue;
            };
            let counts = out
                .split("packets ")
                .skip(1)
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        total
    }

    /// How often each daemon's log shows the events the faults should cause, since `from`
    /// (byte offsets).
    fn log_summary(&self, from: &[u64]) -> String {
        let kinds = [
            ("peer down", "peer down"),
            ("directory leader", "leader changes"),
            ("now the primary", "primaries named"),
            ("evict", "evictions asked"),
            ("ckptd started", "starts"),
        ];
        let mut counts = [0usize; 5];
        for n in NODES {
            let log = std::fs::read(self.log_path(n)).unwrap_or_default();
            let start = usize::try_from(from[usize::from(n - 1)])
                .unwrap_or(0)
                .min(log.len());
            let text = String::from_utf8_lossy(&log[start..]);
            for line in text.lines() {
                for (i, (pat, _)) in kinds.iter().enumerate() {
                    if line.contains(pat) {
                        counts[i] += 1;
                    }
                }
            }
        }
        kinds
            .iter()
            .zip(counts)
            .map(|((_, what), c)| format!("{what} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn log_marks(&self) -> Vec<u64> {
        NODES
            .iter()
            .map(|&n| std::fs::metadata(self.log_path(n)).map_or(0, |m| m.len()))
            .collect()
    }

    fn nft(&self, ns: &str, tag: &str, script: &str) -> Result<(), String> {
        let file = self.root.join(format!("{ns}-{tag}.nft"));
        std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
        let path = file.to_string_lossy().into_owned();
        in_ns(ns, &["nft", "-f", &path]).map(drop)
    }

    /// Node `n` cut off: nothing in or out of its `eth0`.
    fn partition(&self, n: u8) -> Result<(), String> {
        let script = "table netdev ckr7part {\n\
             \tchain in { type filter hook ingress device \"eth0\" priority -10; policy drop; }\n\
             \tchain out { type filter hook egress device \"eth0\" priority -10; policy drop; }\n\
             }\n";
        self.nft(&self.ns(n), "part", script)
    }

    fn unpartition(&self, n: u8) -> Result<(), String> {
        in_ns(
            &self.ns(n),
            &["nft", "delete", "table", "netdev", "ckr7part"],
        )
        .map(drop)
    }

    /// Every rule and qdiscs gone.
    fn heal_network(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for n in NODES {
            let ns = self.ns(n);
            if let Err(e) = in_ns(&ns, &["nft", "flush", "ruleset"]) {
                errors.push(e);
            }
            for (space, dev) in [
                (ns.clone(), "eth0".to_owned()),
                (self.bridge(), format!("p{n}")),
            ] {
                // Fails when there is no qdisc: then check there is none of ours.
                if in_ns(&space, &["tc", "qdisc", "del", "dev", &dev, "root"]).is_err() {
                    match in_ns(&space, &["tc", "qdisc", "show", "dev", &dev]) {
                        Ok(s) if !s.contains("tbf") => {}
                        Ok(s) => errors.push(format!("{space} {dev}: tbf still there: {s}")),
                        Err(e) => errors.push(e),
                    }
                }
            }
            match in_ns(&ns, &["nft", "list", "ruleset"]) {
                Ok(s) if s.trim().is_empty() => {}
                Ok(s) => errors.push(format!("{ns}: rules left: {s}")),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn log_path(&self, n: u8) -> PathBuf {
        self.root.join(format!("ckptd-{n}.log"))
    }

    fn start_daemon(&mut self, n: u8) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(n))
            .map_err(|e| format!("ckptd {n} log: {e}"))?;
        let ns = self.ns(n);
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", &ns])
            .arg(env!("CARGO_BIN_EXE_ckptd"))
            .arg("--config")
            .arg(&self.config)
            .arg("--node")
            .arg(n.to_string())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = spawn_owned(&mut cmd).map_err(|e| format!("spawn ckptd {n}: {e}"))?;
        self.daemons[usize::from(n - 1)].child = Some(child);
        Ok(())
    }

    fn daemon_pid(&self, n: u8) -> Option<u32> {
        self.daemons[usize::from(n - 1)]
            .child
            .as_ref()
            .map(Child::id)
    }

    /// Notes (and restarts) daemons that exited without being killed by this test.
    fn watch_daemons(&mut self) {
        for i in 0..self.daemons.len() {
            let d = &mut self.daemons[i];
            let Some(c) = d.child.as_mut() else { continue };
            if let Some(st) = exited(c) {
                let n = d.node;
                d.self_exits
                    .push(format!("ckptd {n} exited by itself: {st}"));
                d.child = None;
                println!("  ckptd {n} exited by itself ({st}): restarted");
                if let Err(e) = self.start_daemon(n) {
                    println!("  {e}");
                }
            }
        }
    }

    fn kill_daemon(&mut self, n: u8) {
        if let Some(mut c) = self.daemons[usize::from(n - 1)].child.take() {
            let _ = c.kill();
            let _ = c.wait();
            owned().pids.remove(&c.id());
        }
    }

    fn print_daemon_logs(&self, lines: usize) {
        for n in NODES {
            let log = std::fs::read_to_string(self.log_path(n)).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            let from = all.len().saturating_sub(lines);
            println!("---- ckptd {n} log (last {} lines) ----", all.len() - from);
            for l in &all[from..] {
                println!("{l}");
            }
        }
    }

    /// Sleeps `d` while watching the daemons.
    fn pause(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.watch_daemons();
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
    }

    fn spawn_agent(&self, role: &str, node: u8, env: &[(&str, String)]) -> Result<Child, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let dir = env
            .iter()
            .find(|(k, _)| *k == "R7_DIR")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| self.root.clone());
        let out = std::fs::File::create(dir.join(format!("{role}-{node}.stderr")))
            .map_err(|e| format!("agent output: {e}"))?;
        let mut cmd = Command::new(tool("ip"));
        cmd.args(["netns", "exec", &self.ns(node)])
            .arg(exe)
            .env(ROLE, role)
            .env("R7_NODE", node.to_string())
            .env(
                ckpt_agent::CLUSTER_SOCKET_ENV,
                &self.sockets[usize::from(node - 1)],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        spawn_owned(&mut cmd).map_err(|e| format!("spawn {role} {node}: {e}"))
    }

    // ---- one round ------------------------------------------------------------------

    fn round(&mut self, r: u64, seed: u64, faulty: Duration) -> Checks {
        let t0 = Instant::now();
        let mut rng = Rng::new(seed ^ r.wrapping_mul(0x5851_f42d_4c95_7f2d));
        for d in &mut self.daemons {
            d.self_exits.clear();
        }
        let dir = self.root.join(format!("round-{r}"));
        let mut checks: Checks = Vec::new();
        let name = |p: &str| format!("round{r}.{p}");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            checks.push((name("setup"), Err(format!("round directory: {e}"))));
            return checks;
        }
        let ck_names = [
            format!("safCkpt=r7-{}-{r}-all", std::process::id()),
            format!("safCkpt=r7-{}-{r}-async", std::process::id()),
        ];
        let creators = [NODES[rng.below(3) as usize], NODES[rng.below(3) as usize]];
        println!(
            "round {r}: {:.0} s faulty; `all` created on node {}, `async` on node {}",
            faulty.as_secs_f64(),
            creators[ALL],
            creators[ASYNC]
        );

        // The agents.
        let mut agents: Vec<(String, Child)> = Vec::new();
        let common = |node: u8, rng: &mut Rng| {
            vec![
                ("R7_DIR", dir.to_string_lossy().into_owned()),
                ("R7_ALL", ck_names[ALL].clone()),
                ("R7_ASYNC", ck_names[ASYNC].clone()),
                ("R7_CHILD_SEED", rng.next_u64().to_string()),
                (
                    "R7_CREATE",
                    format!(
                        "{}{}",
                        if creators[ALL] == node { "all," } else { "" },
                        if creators[ASYNC] == node { "async" } else { "" }
                    ),
                ),
            ]
        };
        let mut spawn_failed = None;
        for role in ["writer", "reader"] {
            for n in NODES {
                let env = common(n, &mut rng);
                match self.spawn_agent(role, n, &env) {
                    Ok(c) => agents.push((format!("{role} {n}"), c)),
                    Err(e) => spawn_failed = Some(e),
                }
            }
        }
        let ready = if let Some(e) = spawn_failed {
            Err(e)
        } else {
            self.wait_ready(&dir, &mut agents)
        };
        if let Err(e) = ready {
            for (_, c) in &mut agents {
                reap(c);
            }
            checks.push((name("setup"), Err(e)));
            return checks;
        }
        let ready_at = t0.elapsed();
        let marks = self.log_marks();

        // The faulty time.
        let mut events = Vec::new();
        let mut fault_errors = Vec::new();
        if let Err(e) = self.degrade() {
            fault_errors.push(format!("loss/duplication/tbf: {e}"));
        }
        let start = Instant::now();
        let faulty_from = unix_ms();
        let mut kinds = [0u64, 1, 2];
        for i in (1..kinds.len()).rev() {
            kinds.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut k = 0;
        loop {
            let gap = rng.millis(800, 2500);
            let kind = if k < kinds.len() {
                kinds[k]
            } else {
                rng.below(3)
            };
            k += 1;
            let node = NODES[rng.below(3) as usize];
            let len = match kind {
                0 => Duration::from_secs(3),
                1 => rng.millis(300, 2500),
                _ => rng.millis(500, 2500),
            };
            if start.elapsed() + gap + len > faulty {
                break;
            }
            self.pause(gap);
            let at = start.elapsed().as_secs_f64();
            let what = match kind {
                0 => match self.partition(node) {
                    Ok(()) => {
                        self.pause(len);
                        if let Err(e) = self.unpartition(node) {
                            fault_errors.push(format!("ending the partition of n{node}: {e}"));
                        }
                        format!("partition n{node} {:.1}s", len.as_secs_f64())
                    }
                    Err(e) => {
                        fault_errors.push(format!("partition n{node}: {e}"));
                        format!("partition n{node} FAILED")
                    }
                },
                1 => match self.daemon_pid(node) {
                    Some(pid) => {
                        signal(pid, rustix::process::Signal::STOP);
                        self.pause(len);
                        signal(pid, rustix::process::Signal::CONT);
                        format!("SIGSTOP ckptd n{node} {:.1}s", len.as_secs_f64())
                    }
                    None => {
                        fault_errors.push(format!("SIGSTOP n{node}: no daemon running"));
                        format!("SIGSTOP n{node} FAILED")
                    }
                },
                _ => {
                    self.kill_daemon(node);
                    self.pause(len);
                    match self.start_daemon(node) {
                        Ok(()) => format!(
                            "kill -9 ckptd n{node}, restarted {:.1}s later",
                            len.as_secs_f64()
                        ),
                        Err(e) => {
                            fault_errors.push(format!("restarting ckptd n{node}: {e}"));
                            format!("kill -9 ckptd n{node}, restart FAILED")
                        }
                    }
                }
            };
            events.push(format!("{at:.1}s {what}"));
        }
        let rest = faulty.saturating_sub(start.elapsed());
        self.pause(rest);

        // Heal everything.
        let [seen, dropped, duplicated] = self.loss_counters();
        let healed = self.heal_network();
        for n in NODES {
            if let Some(pid) = self.daemon_pid(n) {
                signal(pid, rustix::process::Signal::CONT);
            }
        }
        self.watch_daemons();
        for n in NODES {
            if self.daemons[usize::from(n - 1)].child.is_none() {
                let _ = self.start_daemon(n);
            }
        }
        println!("  faults: {}", events.join(", "));
        println!(
            "  nftables: {seen} packets out, {dropped} dropped, {duplicated} duplicated; \
             daemon logs: {}",
            self.log_summary(&marks)
        );

        // The agents stop: the writers synchronize what they hold first.
        let _ = std::fs::write(dir.join("stop"), b"");
        let stop_start = Instant::now();
        let mut agent_trouble = Vec::new();
        for (what, c) in &mut agents {
            while exited(c).is_none() && stop_start.elapsed() < Duration::from_secs(45) {
                self.watch_daemons();
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Ok(None) = c.try_wait() {
                agent_trouble.push(format!("{what} did not stop within 45 s (killed)"));
            }
            if let Some(st) = reap(c)
                && !st.success()
            {
                agent_trouble.push(format!("{what} exited with {st}"));
            }
        }
        for t in &agent_trouble {
            println!("  {t}");
        }
        let stop_took = stop_start.elapsed();

        // The checker.
        let check_start = Instant::now();
        let check = self.run_checker(&dir, &ck_names);
        println!(
            "  agents stopped in {:.1} s, checker {:.1} s",
            stop_took.as_secs_f64(),
            check_start.elapsed().as_secs_f64()
        );
        self.watch_daemons();
        let daemon_exits: Vec<String> = self
            .daemons
            .iter()
            .flat_map(|d| d.self_exits.iter().cloned())
            .collect();

        // The verdicts.
        let analysis = analyse(&dir, &check, faulty_from);
        analysis.print(ready_at, t0.elapsed());
        let ok_if = |cond: bool, why: String| if cond { Ok(()) } else { Err(why) };
        checks.push((
            name("settled"),
            check.as_ref().map_err(Clone::clone).and_then(|c| {
                ok_if(
                    c.synced && healed.is_ok(),
                    format!(
                        "after the heal: {}; heal: {}",
                        c.sync_note,
                        healed.as_ref().err().map_or("ok", String::as_str)
                    ),
                )
            }),
        ));
        checks.push((
            name("lost_all_replicas"),
            ok_if(
                analysis.lost[ALL] == 0,
                format!(
                    "{} acknowledged ALL_REPLICAS write(s) missing: {}",
                    analysis.lost[ALL],
                    analysis.lost_detail[ALL].join("; ")
                ),
            ),
        ));
        checks.push((
            name("lost_synchronized"),
            ok_if(
                analysis.lost[ASYNC] == 0,
                format!(
                    "{} synchronized write(s) missing: {}",
                    analysis.lost[ASYNC],
                    analysis.lost_detail[ASYNC].join("; ")
                ),
            ),
        ));
        checks.push((
            name("unexpected"),
            ok_if(
                analysis.unexpected == 0,
                format!(
                    "{} value(s) no writer wrote there: {}",
                    analysis.unexpected,
                    analysis.unexpected_detail.join("; ")
                ),
            ),
        ));
        checks.push((
            name("no_torn_reads"),
            ok_if(
                analysis.torn == 0,
                format!(
                    "{} incomplete value(s): {}",
                    analysis.torn,
                    analysis.torn_detail.join("; ")
                ),
            ),
        ));
        checks.push((
            name("replicas_identical"),
            ok_if(
                analysis.identical,
                format!("replicas differ: {}", analysis.diff_detail.join("; ")),
            ),
        ));
        if k <= kinds.len() {
            println!(
                "  note: a round this short had room for {} of the 3 kinds of fault (17 s has room for all)",
                k - 1
            );
        }
        checks.push((
            name("faults_injected"),
            ok_if(fault_errors.is_empty(), fault_errors.join("; ")),
        ));
        checks.push((
            name("daemons_stayed_up"),
            ok_if(daemon_exits.is_empty(), daemon_exits.join("; ")),
        ));
        if !agent_trouble.is_empty() {
            println!(
                "  (agent trouble is reported, not a check: {})",
                agent_trouble.len()
            );
        }
        if !owned().keep && !checks.iter().any(|(_, r)| r.is_err()) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        checks
    }

    /// Waits until every writer logged READY (its checkpoints open, its sections made).
    fn wait_ready(&mut self, dir: &Path, agents: &mut [(String, Child)]) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let ready = NODES.iter().all(|n| {
                std::fs::read_to_string(dir.join(format!("w{n}.log")))
                    .is_ok_and(|s| s.lines().any(|l| l == "READY"))
            });
            if ready {
                return Ok(());
            }
            for (what, c) in agents.iter_mut() {
                if let Some(st) = exited(c) {
                    return Err(format!("{what} exited before it was ready: {st}"));
                }
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err("the writers were not ready within 60 s".into());
            }
            self.pause(Duration::from_millis(100));
        }
    }

    fn run_checker(&mut self, dir: &Path, ck_names: &[String; 2]) -> Result<Final, String> {
        let join = |v: &[PathBuf]| {
            v.iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(";")
        };
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let out_path = dir.join("final.txt");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, "check")
            .env("R7_SOCKETS", join(&self.sockets))
            .env("R7_SHM", join(&self.shm_dirs))
            .env("R7_ALL", &ck_names[ALL])
            .env("R7_ASYNC", &ck_names[ASYNC])
            .env("R7_OUT", &out_path)
            .env_remove(ckpt_agent::CLUSTER_SOCKET_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_owned(&mut cmd).map_err(|e| format!("spawn the checker: {e}"))?;
        let (out, err, status) = collect(&mut child, Duration::from_secs(100));
        owned().pids.remove(&child.id());
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        match status {
            Some(st) if st.success() && text.lines().any(|l| l == "DONE") => {
                Ok(Final::parse(&text))
            }
            Some(st) => Err(format!("the checker: {st}\n{out}\n{err}")),
            None => Err(format!(
                "the checker hung (killed after 100 s)\n{out}\n{err}"
            )),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            if let Some(mut c) = d.child.take() {
                reap(&mut c);
            }
        }
        cleanup_everything();
    }
}

/// `tc` arguments shaping `dev` to 20 Mbit/s.
fn tbf(dev: &str) -> [&str; 13] {
    [
        "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "20mbit", "burst", "32kbit",
        "latency", "100ms",
    ]
}

// ---- the final state the checker reports -----------------------------------------------

/// A replica's sections: id → bytes.
type Sections = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Default)]
struct Final {
    synced: bool,
    sync_note: String,
    settle_note: String,
    /// node → checkpoint → section id → bytes (None: the replica could not be read).
    replicas: BTreeMap<u8, [Option<Sections>; 2]>,
    notes: Vec<String>,
}

impl Final {
    fn parse(text: &str) -> Self {
        let mut f = Self::default();
        let mut sync_ok = 0;
        let mut sync_notes = Vec::new();
        for line in text.lines() {
            let p: Vec<&str> = line.split(' ').collect();
            match p.as_slice() {
                ["SYNC", node, res] => {
                    if *res == "OK" {
                        sync_ok += 1;
                    }
                    sync_notes.push(format!("node {node}: {res}"));
                }
                ["SETTLE", rest @ ..] => f.settle_note = rest.join(" "),
                ["F", node, ck, id, data] => {
                    let (Ok(node), Ok(ck), Some(id), Some(data)) = (
                        node.parse::<u8>(),
                        ck.parse::<usize>(),
                        unhex(id),
                        unhex(data),
                    ) else {
                        continue;
                    };
                    let e = f.replicas.entry(node).or_default();
                    if ck < 2 {
                        e[ck].get_or_insert_with(BTreeMap::new).insert(id, data);
                    }
                }
                ["R", node, ck] => {
                    // A replica that was read (maybe with no section).
                    if let (Ok(node), Ok(ck)) = (node.parse::<u8>(), ck.parse::<usize>())
                        && ck < 2
                    {
                        f.replicas.entry(node).or_default()[ck].get_or_insert_with(BTreeMap::new);
                    }
                }
                ["NOTE", rest @ ..] => f.notes.push(rest.join(" ")),
                _ => {}
            }
        }
        f.synced = sync_ok == NODES.len();
        f.sync_note = sync_notes.join(", ");
        f
    }
}

// ---- the Jepsen-style analysis -----------------------------------------------------------

type Key = (usize, u8, u8);

#[derive(Default)]
struct Analysis {
    invoked_n: [usize; 2],
    acked_n: [usize; 2],
    indeterminate_n: [usize; 2],
    sync_results: BTreeMap<String, usize>,
    reads_ok: usize,
    /// Calls that took more than 3 s, and the slowest.
    slow_calls: usize,
    slowest: Option<(u64, String)>,
    read_errors: BTreeMap<String, usize>,
    stale_reads: usize,
    lost: [usize; 2],
    lost_detail: [Vec<String>; 2],
    unexpected: usize,
    unexpected_detail: Vec<String>,
    torn: usize,
    torn_detail: Vec<String>,
    identical: bool,
    diff_detail: Vec<String>,
    final_note: String,
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn push_detail(v: &mut Vec<String>, s: String) {
    if v.len() < 8 {
        v.push(s);
    } else if v.len() == 8 {
        v.push("…".into());
    }
}

fn analyse(dir: &Path, check: &Result<Final, String>, faulty_from: u64) -> Analysis {
    let mut a = Analysis::default();
    for who in NODES
        .iter()
        .flat_map(|n| [format!("w{n}"), format!("r{n}")])
    {
        for line in lines_of(&dir.join(format!("{who}.log"))) {
            let p: Vec<&str> = line.split(' ').collect();
            if let ["L", op, ck, ms, res, at] = p.as_slice() {
                a.slow_calls += 1;
                let ms: u64 = ms.parse().unwrap_or(0);
                if a.slowest.as_ref().is_none_or(|(m, _)| ms > *m) {
                    let ck = CK_NAMES[ck.parse::<usize>().unwrap_or(0).min(1)];
                    let at = at.parse::<u64>().unwrap_or(0).saturating_sub(faulty_from) as f64;
                    a.slowest = Some((
                        ms,
                        format!("{who} {op} {ck} -> {res}, called at {:.1}s", at / 1000.0),
                    ));
                }
            }
        }
    }
    let mut invoked: HashMap<Key, HashSet<u64>> = HashMap::new();
    let mut acked: HashMap<Key, Vec<u64>> = HashMap::new();
    for w in NODES {
        for line in lines_of(&dir.join(format!("w{w}.log"))) {
            let p: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| p.get(i).and_then(|s| s.parse::<u64>().ok());
            match (p.first().copied(), num(1), num(2), num(3)) {
                (Some("I"), Some(ck), Some(s), Some(c)) if ck < 2 => {
                    invoked
                        .entry((ck as usize, w, s as u8))
                        .or_default()
                        .insert(c);
                    a.invoked_n[ck as usize] += 1;
                }
                (Some("A"), Some(ck), Some(s), Some(c)) if ck < 2 => {
                    acked.entry((ck as usize, w, s as u8)).or_default().push(c);
                    a.acked_n[ck as usize] += 1;
                }
                (Some("E"), Some(ck), _, _) if ck < 2 => a.indeterminate_n[ck as usize] += 1,
                (Some("S"), _, _, _) => {
                    *a.sync_results
                        .entry(p.get(2).copied().unwrap_or("?").to_owned())
                        .or_default() += 1;
                }
                _ => {}
            }
        }
    }
    let was_invoked = |k: &Key, c: u64| invoked.get(k).is_some_and(|set| set.contains(&c));

    // Reads.
    for r in NODES {
        let mut last: HashMap<(usize, String, u8, u8), u64> = HashMap::new();
        for line in lines_of(&dir.join(format!("r{r}.log"))) {
            let p: Vec<&str> = line.split(' ').collect();
            match p.as_slice() {
                ["R", ck, mode, w, s, c] => {
                    let (Ok(ck), Ok(w), Ok(s), Ok(c)) = (
                        ck.parse::<usize>(),
                        w.parse::<u8>(),
                        s.parse::<u8>(),
                        c.parse::<u64>(),
                    ) else {
                        continue;
                    };
                    a.reads_ok += 1;
                    if !was_invoked(&(ck, w, s), c) {
                        a.unexpected += 1;
                        push_detail(
                            &mut a.unexpected_detail,
                            format!(
                                "reader {r} read {} w{w}s{s} = {c}, never invoked",
                                CK_NAMES[ck.min(1)]
                            ),
                        );
                    }
                    let k = (ck, (*mode).to_owned(), w, s);
                    if let Some(&prev) = last.get(&k)
                        && c < prev
                    {
                        a.stale_reads += 1;
                    }
                    last.insert(k, c);
                }
                ["U", ck, mode, w, s, bytes] => {
                    a.unexpected += 1;
                    push_detail(
                        &mut a.unexpected_detail,
                        format!(
                            "reader {r} read {ck}/{mode} w{w}s{s}: another section's value {bytes}"
                        ),
                    );
                }
                ["T", ck, mode, w, s, bytes] => {
                    a.torn += 1;
                    push_detail(
                        &mut a.torn_detail,
                        format!("reader {r} read {ck}/{mode} w{w}s{s}: {bytes}"),
                    );
                }
                ["X", err, n] => {
                    *a.read_errors.entry((*err).to_owned()).or_default() += n.parse().unwrap_or(0);
                }
                _ => {}
            }
        }
    }

    // The final state.
    let Ok(f) = check else {
        a.final_note = format!(
            "no final state: {}",
            check.as_ref().err().map_or("", String::as_str)
        );
        a.identical = false;
        a.diff_detail.push("the checker did not report".into());
        // Every acknowledged write counts as not shown to be present.
        for (k, v) in &acked {
            a.lost[k.0] += v.len();
        }
        for ck in [ALL, ASYNC] {
            a.lost_detail[ck].push("no final state to check against".into());
        }
        return a;
    };
    a.final_note = format!("{}; {}", f.sync_note, f.settle_note);
    for n in &f.notes {
        println!("  checker: {n}");
    }
    a.identical = true;
    for ck in [ALL, ASYNC] {
        let mut reference: Option<(u8, &Sections)> = None;
        for node in NODES {
            let Some(rep) = f.replicas.get(&node).and_then(|r| r[ck].as_ref()) else {
                a.identical = false;
                a.diff_detail.push(format!(
                    "{}: node {node}'s replica was not read",
                    CK_NAMES[ck]
                ));
                continue;
            };
            // Every value left must be complete and invoked there.
            for (id, data) in rep {
                let loc = String::from_utf8_lossy(id).into_owned();
                match decode(data) {
                    None => {
                        a.torn += 1;
                        push_detail(
                            &mut a.torn_detail,
                            format!(
                                "node {node} {} {loc}: final bytes {}",
                                CK_NAMES[ck],
                                hex(data)
                            ),
                        );
                    }
                    Some((dck, w, s, c)) => {
                        if dck != ck || section_id(w, s) != *id || !was_invoked(&(ck, w, s), c) {
                            a.unexpected += 1;
                            push_detail(
                                &mut a.unexpected_detail,
                                format!(
                                    "node {node} {} {loc}: final value {} w{w}s{s} = {c}",
                                    CK_NAMES[ck], CK_NAMES[dck]
                                ),
                            );
                        }
                    }
                }
            }
            match reference {
                None => reference = Some((node, rep)),
                Some((rn, r0)) if r0 != rep => {
                    a.identical = false;
                    let ids: BTreeSet<&Vec<u8>> = r0.keys().chain(rep.keys()).collect();
                    for id in ids {
                        let (x, y) = (r0.get(id), rep.get(id));
                        if x != y {
                            let show = |v: Option<&Vec<u8>>| {
                                v.map_or("absent".to_owned(), |b| {
                                    decode(b)
                                        .map_or("incomplete".into(), |(_, _, _, c)| c.to_string())
                                })
                            };
                            a.diff_detail.push(format!(
                                "{} {}: node {rn} {} vs node {node} {}",
                                CK_NAMES[ck],
                                String::from_utf8_lossy(id),
                                show(x),
                                show(y)
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Lost: an acknowledged write above the value its section ends with on some replica.
    for (k, counters) in &acked {
        let &(ck, w, s) = k;
        let id = section_id(w, s);
        let mut worst: Option<(usize, u8, Option<u64>)> = None;
        for node in NODES {
            let fin = f
                .replicas
                .get(&node)
                .and_then(|r| r[ck].as_ref())
                .and_then(|m| m.get(&id))
                .and_then(|b| decode(b))
                .filter(|&(dck, dw, ds, _)| (dck, dw, ds) == (ck, w, s))
                .map(|(_, _, _, c)| c);
            let below = counters
                .iter()
                .filter(|&&c| fin.is_none_or(|f| c > f))
                .count();
            if below > 0 && worst.is_none_or(|(n, _, _)| below > n) {
                worst = Some((below, node, fin));
            }
        }
        if let Some((n, node, fin)) = worst {
            a.lost[ck] += n;
            let max = counters.iter().max().copied().unwrap_or(0);
            push_detail(
                &mut a.lost_detail[ck],
                format!(
                    "{} w{w}s{s}: highest acknowledged {max}, node {node} ends at {}",
                    CK_NAMES[ck],
                    fin.map_or("nothing".to_owned(), |c| c.to_string())
                ),
            );
        }
    }
    a
}

impl Analysis {
    fn print(&self, ready_at: Duration, total: Duration) {
        let sum = |x: [usize; 2]| x[0] + x[1];
        println!(
            "  writes: invoked {} (all {}, async {}), acknowledged {} (all {}, async {}), \
             indeterminate {} (all {}, async {}); synchronize results {:?}",
            sum(self.invoked_n),
            self.invoked_n[ALL],
            self.invoked_n[ASYNC],
            sum(self.acked_n),
            self.acked_n[ALL],
            self.acked_n[ASYNC],
            sum(self.indeterminate_n),
            self.indeterminate_n[ALL],
            self.indeterminate_n[ASYNC],
            self.sync_results
        );
        println!(
            "  reads: {} complete, errors {:?}; going backwards (informational) {}",
            self.reads_ok, self.read_errors, self.stale_reads
        );
        if let Some((ms, what)) = &self.slowest {
            println!(
                "  calls over 3 s (informational): {}, the slowest {:.1} s ({what})",
                self.slow_calls,
                *ms as f64 / 1000.0
            );
        }
        println!("  final: {}", self.final_note);
        println!(
            "  lost {} (all {}, async {}), unexpected {}, torn {}, replicas identical: {}; \
             writers ready after {:.1} s, round {:.1} s",
            sum(self.lost),
            self.lost[ALL],
            self.lost[ASYNC],
            self.unexpected,
            self.torn,
            if self.identical { "yes" } else { "NO" },
            ready_at.as_secs_f64(),
            total.as_secs_f64()
        );
    }
}

// ---- agent roles --------------------------------------------------------------------------

/// The history file: one line per event, each written with one `write` call.
struct History(std::fs::File);

impl History {
    fn create(path: &Path) -> Result<Self, String> {
        std::fs::File::create(path)
            .map(Self)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn line(&mut self, s: &str) {
        let mut b = String::with_capacity(s.len() + 1);
        b.push_str(s);
        b.push('\n');
        let _ = self.0.write_all(b.as_bytes());
    }
}

fn attrs(ck: usize) -> CreationAttributes {
    CreationAttributes {
        creation_flags: if ck == ALL {
            CreationFlags::WR_ALL_REPLICAS
        } else {
            CreationFlags::WR_ACTIVE_REPLICA
        },
        checkpoint_size: 8 * 512,
        retention_duration: 3600 * SECOND,
        max_sections: 8,
        max_section_size: 512,
        max_section_id_size: 16,
    }
}

/// A library in cluster mode (`CKPT_CLUSTER_SOCKET`), once ckptd answers.
fn init_library(limit: Duration) -> Result<Library, String> {
    let start = Instant::now();
    loop {
        match Library::initialize(Version::B_02_02, Callbacks::default()) {
            Ok(lib) => {
                if lib.config().cluster.is_none() {
                    return Err("not in cluster mode".into());
                }
                return Ok(lib);
            }
            Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("initialize: {e}")),
        }
    }
}

struct AgentEnv {
    node: u8,
    dir: PathBuf,
    names: [String; 2],
    create: [bool; 2],
    seed: u64,
}

impl AgentEnv {
    fn load() -> Result<Self, String> {
        let create = env_str("R7_CREATE").unwrap_or_default();
        Ok(Self {
            node: env_str("R7_NODE")?
                .parse()
                .map_err(|e| format!("R7_NODE: {e}"))?,
            dir: PathBuf::from(env_str("R7_DIR")?),
            names: [env_str("R7_ALL")?, env_str("R7_ASYNC")?],
            create: [create.contains("all"), create.contains("async")],
            seed: env_u64("R7_CHILD_SEED", 1),
        })
    }

    fn stopped(&self) -> bool {
        self.dir.join("stop").exists()
    }
}

struct WCk {
    handle: Option<Checkpoint>,
    created: [bool; SECTIONS as usize],
    /// Writes (section, counter) no synchronize confirmed yet (async only).
    pending: Vec<(u8, u64)>,
    last_sync: Instant,
    errors_in_row: u32,
}

fn writer() -> Result<(), String> {
    let env = AgentEnv::load()?;
    let node = env.node;
    let mut rng = Rng::new(env.seed);
    let mut h = History::create(&env.dir.join(format!("w{node}.log")))?;
    let lib = init_library(Duration::from_secs(60))?;
    let mut cks: Vec<WCk> = (0..2)
        .map(|_| WCk {
            handle: None,
            created: [false; SECTIONS as usize],
            pending: Vec::new(),
            last_sync: Instant::now(),
            errors_in_row: 0,
        })
        .collect();
    let mut counter = 0u64;

    let open = |ck: usize, h: &mut History| -> Option<Checkpoint> {
        let flags = OpenFlags::READ | OpenFlags::WRITE;
        let r = if env.create[ck] {
            lib.open(
                &env.names[ck],
                Some(&attrs(ck)),
                flags | OpenFlags::CREATE,
                5 * SECOND,
            )
        } else {
            lib.open(&env.names[ck], None, flags, 5 * SECOND)
        };
        match r {
            Ok(c) => {
                h.line(&format!("O {ck} OK"));
                Some(c)
            }
            Err(e) => {
                h.line(&format!("O {ck} {}", err_name(e)));
                None
            }
        }
    };

    // One write (or section creation) to section `s` of `ck`.
    let write_one = |ck: usize, s: u8, cks: &mut Vec<WCk>, h: &mut History, counter: &mut u64| {
        let c = &mut cks[ck];
        if c.handle.is_none() {
            c.handle = open(ck, h);
            c.errors_in_row = 0;
            if c.handle.is_none() {
                return;
            }
        }
        let Some(handle) = c.handle.as_ref() else {
            return;
        };
        *counter += 1;
        let v = *counter;
        let id = section_id(node, s);
        let data = encode(ck, node, s, v);
        let created = c.created[usize::from(s)];
        h.line(&format!(
            "I {ck} {s} {v} {}",
            if created { "w" } else { "c" }
        ));
        let t = Instant::now();
        let r = if created {
            handle.overwrite(&id, &data)
        } else {
            handle.create_section(Some(&id), TIME_END, &data).map(drop)
        };
        slow(h, if created { "write" } else { "create" }, ck, t, r.err());
        match r {
            Ok(()) => {
                c.created[usize::from(s)] = true;
                c.errors_in_row = 0;
                if ck == ALL {
                    h.line(&format!("A {ck} {s} {v}"));
                } else if created {
                    c.pending.push((s, v));
                } else {
                    // A section created through ckptd is not tracked by synchronize.
                    h.line(&format!("E {ck} {s} {v} created-untracked"));
                }
            }
            Err(e) => {
                h.line(&format!("E {ck} {s} {v} {}", err_name(e)));
                match e {
                    Error::Exist if !created => c.created[usize::from(s)] = true,
                    Error::NotExist if created => c.created[usize::from(s)] = false,
                    _ => {}
                }
                c.errors_in_row += 1;
                if e == Error::BadHandle || c.errors_in_row >= 25 {
                    reopen(c, ck, h);
                }
            }
        }
    };

    // Set-up: both checkpoints open, every section made.
    let start = Instant::now();
    loop {
        let done = cks
            .iter()
            .all(|c| c.handle.is_some() && c.created.iter().all(|&x| x));
        if done || env.stopped() || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        for ck in [ALL, ASYNC] {
            for s in 0..SECTIONS {
                if cks[ck].handle.is_none() || !cks[ck].created[usize::from(s)] {
                    write_one(ck, s, &mut cks, &mut h, &mut counter);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    h.line("READY");

    while !env.stopped() {
        let ck = rng.below(2) as usize;
        let s = rng.below(u64::from(SECTIONS)) as u8;
        write_one(ck, s, &mut cks, &mut h, &mut counter);
        let a = &cks[ASYNC];
        if !a.pending.is_empty()
            && (a.pending.len() >= 6 || a.last_sync.elapsed() > Duration::from_millis(250))
        {
            synchronize(&mut cks[ASYNC], &mut h);
        }
        std::thread::sleep(rng.millis(2, 10));
    }

    // Stopped (after the heal): confirm what is still pending.
    let start = Instant::now();
    while !cks[ASYNC].pending.is_empty()
        && cks[ASYNC].handle.is_some()
        && start.elapsed() < Duration::from_secs(25)
    {
        if synchronize(&mut cks[ASYNC], &mut h) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (s, v) in cks[ASYNC].pending.drain(..) {
        h.line(&format!("E {ASYNC} {s} {v} never-synchronized"));
    }
    h.line("DONE");
    drop(cks);
    drop(lib);
    Ok(())
}

/// Logs a call that took more than 3 s (`L op checkpoint ms result`): liveness, reported
/// but not a check.
fn slow(h: &mut History, op: &str, ck: usize, t: Instant, e: Option<Error>) {
    let took = t.elapsed();
    if took > Duration::from_secs(3) {
        h.line(&format!(
            "L {op} {ck} {} {} {}",
            took.as_millis(),
            e.map_or("OK", err_name),
            unix_ms().saturating_sub(took.as_millis() as u64)
        ));
    }
}

/// Drops the handle (its unconfirmed writes stay indeterminate); the next write reopens.
fn reopen(c: &mut WCk, ck: usize, h: &mut History) {
    for (s, v) in c.pending.drain(..) {
        h.line(&format!("E {ck} {s} {v} reopened"));
    }
    c.handle = None;
    c.errors_in_row = 0;
}

/// Synchronizes the async checkpoint; true once the outcome is final (OK or
/// FAILED_OPERATION).
fn synchronize(c: &mut WCk, h: &mut History) -> bool {
    let Some(handle) = c.handle.as_ref() else {
        return false;
    };
    let n = c.pending.len();
    let t = Instant::now();
    let r = handle.synchronize(2 * SECOND);
    slow(h, "synchronize", ASYNC, t, r.err());
    c.last_sync = Instant::now();
    match r {
        Ok(()) => {
            for (s, v) in c.pending.drain(..) {
                h.line(&format!("A {ASYNC} {s} {v}"));
            }
            h.line(&format!("S {ASYNC} OK {n}"));
            true
        }
        Err(Error::FailedOperation) => {
            for (s, v) in c.pending.drain(..) {
                h.line(&format!("E {ASYNC} {s} {v} FAILED_OPERATION"));
            }
            h.line(&format!("S {ASYNC} FAILED_OPERATION {n}"));
            true
        }
        Err(e) => {
            h.line(&format!("S {ASYNC} {} {n}", err_name(e)));
            if e == Error::BadHandle {
                reopen(c, ASYNC, h);
            }
            false
        }
    }
}

/// The section's bytes read from the node's own replica.
fn read_local_vec(ck: &Checkpoint, id: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 512]; // maxSectionSize: a larger buffer is INVALID_PARAM
    let mut el = [ReadElement {
        section_id: id,
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    ck.read_local(&mut el).map_err(|e| e.error)?;
    let n = el[0].read_size;
    buf.truncate(n);
    Ok(buf)
}

fn reader() -> Result<(), String> {
    let env = AgentEnv::load()?;
    let node = env.node;
    let mut rng = Rng::new(env.seed);
    let mut h = History::create(&env.dir.join(format!("r{node}.log")))?;
    let lib = init_library(Duration::from_secs(60))?;
    let others: Vec<u8> = NODES.iter().copied().filter(|&n| n != node).collect();
    let mut cks: [Option<Checkpoint>; 2] = [None, None];
    let mut errors_in_row = [0u32; 2];
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    while !env.stopped() {
        let ck = rng.below(2) as usize;
        let w = others[rng.below(others.len() as u64) as usize];
        let s = rng.below(u64::from(SECTIONS)) as u8;
        let local = ck == ASYNC && rng.below(2) == 0;
        let mode = if local { "l" } else { "r" };
        if cks[ck].is_none() {
            match lib.open(&env.names[ck], None, OpenFlags::READ, 5 * SECOND) {
                Ok(c) => cks[ck] = Some(c),
                Err(e) => {
                    *errors.entry(err_name(e)).or_default() += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let Some(handle) = cks[ck].as_ref() else {
            continue;
        };
        let id = section_id(w, s);
        let t = Instant::now();
        let r = if local {
            read_local_vec(handle, &id)
        } else {
            handle.read_vec(&id, 0)
        };
        slow(&mut h, "read", ck, t, r.as_ref().err().copied());
        match r {
            Ok(bytes) => {
                errors_in_row[ck] = 0;
                match decode(&bytes) {
                    Some((dck, dw, ds, c)) if (dck, dw, ds) == (ck, w, s) => {
                        h.line(&format!("R {ck} {mode} {w} {s} {c}"));
                    }
                    Some(_) => h.line(&format!("U {ck} {mode} {w} {s} {}", hex_or_dash(&bytes))),
                    None => h.line(&format!("T {ck} {mode} {w} {s} {}", hex_or_dash(&bytes))),
                }
            }
            Err(e) => {
                *errors.entry(err_name(e)).or_default() += 1;
                errors_in_row[ck] += 1;
                if e == Error::BadHandle || errors_in_row[ck] >= 50 {
                    cks[ck] = None;
                    errors_in_row[ck] = 0;
                }
            }
        }
        std::thread::sleep(rng.millis(3, 10));
    }
    for (e, n) in &errors {
        h.line(&format!("X {e} {n}"));
    }
    h.line("DONE");
    drop(cks);
    drop(lib);
    Ok(())
}

/// Opens both checkpoints on every node, synchronizes, and reads every node's replica
/// locally until they agree (45 s at most); writes what it found to `R7_OUT`.
fn checker() -> Result<(), String> {
    let sockets: Vec<PathBuf> = env_str("R7_SOCKETS")?
        .split(';')
        .map(PathBuf::from)
        .collect();
    let shm: Vec<PathBuf> = env_str("R7_SHM")?.split(';').map(PathBuf::from).collect();
    let names = [env_str("R7_ALL")?, env_str("R7_ASYNC")?];
    let out_path = PathBuf::from(env_str("R7_OUT")?);
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);

    let mut libs = Vec::new();
    for (i, sock) in sockets.iter().enumerate() {
        let config = Config {
            cluster: Some(sock.clone()),
            ..Config::default()
        };
        let lib = loop {
            match Library::initialize_with(config.clone(), Version::B_02_02, Callbacks::default()) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(format!("initialize on node {}: {e}", i + 1)),
            }
        };
        libs.push(lib);
    }
    let mut handles: Vec<[Checkpoint; 2]> = Vec::new();
    for (i, lib) in libs.iter().enumerate() {
        let open = |ck: usize| loop {
            match lib.open(
                &names[ck],
                None,
                OpenFlags::READ | OpenFlags::WRITE,
                5 * SECOND,
            ) {
                Ok(c) => break Ok(c),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => break Err(format!("open {} on node {}: {e}", names[ck], i + 1)),
            }
        };
        handles.push([open(ALL)?, open(ASYNC)?]);
    }

    let known: BTreeSet<Vec<u8>> = NODES
        .iter()
        .flat_map(|&w| (0..SECTIONS).map(move |s| section_id(w, s)))
        .collect();
    let start = Instant::now();
    let mut attempts = 0;
    let (sync, snaps, identical) = loop {
        attempts += 1;
        let sync: Vec<String> = handles
            .iter()
            .map(|h| match h[ASYNC].synchronize(5 * SECOND) {
                Ok(()) => "OK".to_owned(),
                Err(e) => err_name(e).to_owned(),
            })
            .collect();
        let mut snaps = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            let mut per = Vec::new();
            for ck in [ALL, ASYNC] {
                per.push(snapshot(&h[ck], &shm[i], &known));
            }
            snaps.push(per);
        }
        let identical = [ALL, ASYNC].iter().all(|&ck| {
            snaps
                .iter()
                .all(|s| s[ck].is_ok() && s[ck].as_ref().ok() == snaps[0][ck].as_ref().ok())
        });
        let all_ok = sync.iter().all(|s| s == "OK");
        if (all_ok && identical) || Instant::now() > deadline {
            break (sync, snaps, identical);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for (i, s) in sync.iter().enumerate() {
        let _ = writeln!(out, "SYNC {} {s}", i + 1);
    }
    let _ = writeln!(
        out,
        "SETTLE replicas {} after {attempts} attempt(s), {:.1} s",
        if identical { "agreed" } else { "still differ" },
        start.elapsed().as_secs_f64()
    );
    for (i, per) in snaps.iter().enumerate() {
        for (ck, snap) in per.iter().enumerate() {
            match snap {
                Ok(m) => {
                    let _ = writeln!(out, "R {} {ck}", i + 1);
                    for (id, data) in m {
                        let _ = writeln!(out, "F {} {ck} {} {}", i + 1, hex(id), hex_or_dash(data));
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "NOTE node {} {}: {e}", i + 1, CK_NAMES[ck]);
                }
            }
        }
    }
    out.push_str("DONE\n");
    std::fs::write(&out_path, out).map_err(|e| format!("{}: {e}", out_path.display()))?;
    drop(handles);
    if std::env::var_os("R7_KEEP").is_none_or(|v| v.is_empty() || v == "0") {
        // The next round uses new checkpoints: these go once closed.
        for name in &names {
            let _ = libs[0].unlink(name);
        }
    }
    drop(libs);
    Ok(())
}

/// A node's replica of `ck`: the sections its replica object lists (engine) plus the known
/// ids, each read with the explicit local read.
fn snapshot(ck: &Checkpoint, shm: &Path, known: &BTreeSet<Vec<u8>>) -> Result<Sections, String> {
    let object = ckptd::object_name(ck.instance());
    let replica = Replica::attach(shm, &object, Sharing::default())
        .map_err(|e| format!("attach {}: {e:?}", shm.join(&object).display()))?;
    let mut ids: BTreeSet<Vec<u8>> = replica.sections(SectionFilter::Any).map(|s| s.id).collect();
    let listed = ids.clone();
    ids.extend(known.iter().cloned());
    let mut m = BTreeMap::new();
    for id in ids {
        match read_local_vec(ck, &id) {
            Ok(b) => {
                let direct = replica.read_to_vec(&id).ok();
                if direct.as_ref() != Some(&b) {
                    return Err(format!(
                        "section {}: the local read and the replica object disagree",
                        String::from_utf8_lossy(&id)
                    ));
                }
                m.insert(id, b);
            }
            Err(Error::NotExist) if !listed.contains(&id) => {}
            Err(e) => {
                return Err(format!(
                    "local read of {}: {e}",
                    String::from_utf8_lossy(&id)
                ));
            }
        }
    }
    Ok(m)
}
