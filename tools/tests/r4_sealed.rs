//! Reliability tier R4 with ckptd, sealed (`sealed = true`; engine/DESIGN.md §23.1): the
//! truncation trust boundary closed by sealed memfds, proved against real ckptd processes
//! and agent processes. A `harness = false` test: the binary re-executes itself as writer,
//! reader and chaos agents (role in `CKPT_R4S_ROLE`) and prints `test … ok/FAILED`, then
//! `N passed, N failed` as its last line.
//!
//! - `a_descriptor_holder_…`: two sealed ckptd processes; on node 1 a writer agent
//!   (overwrite + synchronize), two reader agents, and a chaos agent that holds the
//!   replica's descriptor (it opened the checkpoint, as any agent) and also reopens
//!   ckptd's own descriptors through `/proc/<ckptd>/fd`; a reader agent on node 2. The
//!   chaos agent, the same uid as ckptd (root on CI), tries every shrink and grow all the
//!   time: each must fail with EPERM. Meanwhile node 1's ckptd is killed with SIGKILL and
//!   started again: the agents hand it their descriptors back, and replication goes on.
//!   Pass: no process dies, readers never see a value go back, the writer synchronizes
//!   after the restart, node 2 ends with the last value, and the object kept its size.
//! - `ckptd_refuses_…`: a fake agent hands a sealed ckptd back an unsealed copy of a
//!   replica, a sealed copy under another instance, a pipe, and a frame naming more
//!   descriptors than it carries: ckptd takes none of them and keeps serving.
//!
//! `R4S_DURATION` (seconds, default 6) sets how long the agents run.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;
#[path = "../../engine/tests/support/tier.rs"]
mod tier;

use ckpt_agent::{
    Callbacks, Checkpoint, Config, CreationAttributes, CreationFlags, Library, OpenFlags, TIME_END,
    Version,
};
use ckpt_tools::ckptd::{LocalCluster, sealed};
use ckpt_transport::fdpass::{FdReader, send_frame_blocking};
use ckpt_transport::wire::{DEFAULT_MAX_FRAME, Frame, PROTOCOL_VERSION};
use rustix::fs::{FallocateFlags, SealFlags};
use support::retry;
use tier::{Kid, TestFn, Verdict, chosen, describe, env, run_tests, say};

const ROLE: &str = "CKPT_R4S_ROLE";
const NAME: &str = "safCkpt=r4-sealed";
const SECOND: i64 = 1_000_000_000;

const TESTS: &[(&str, TestFn)] = &[
    (
        "a_descriptor_holder_even_root_cannot_resize_a_sealed_replica_and_no_agent_or_ckptd_dies",
        descriptor_holder,
    ),
    (
        "ckptd_refuses_unsealed_foreign_or_miscounted_descriptors_handed_back_and_keeps_serving",
        refused_hand_backs,
    ),
];

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let code = match role.as_str() {
            "writer" => writer(),
            "reader" => reader(),
            "chaos" => chaos(),
            other => {
                eprintln!("unknown role {other}");
                2
            }
        };
        std::process::exit(code);
    }
    let chosen = chosen(TESTS);
    println!("running {} tests", chosen.len());
    run_tests(chosen);
}

// ---- the cluster -----------------------------------------------------------------------

/// Real sealed ckptd processes, logs in the cluster's directory.
struct Daemons {
    children: Vec<(u32, Child)>,
    cluster: LocalCluster,
}

impl Daemons {
    fn start(tag: &str) -> Result<Self, String> {
        // A 3 s idle timeout: a daemon killed and started again within it keeps its
        // node's opens and replicas in the directory.
        let cluster = LocalCluster::create_with_options(tag, &[1, 2], &[1, 2], true, 3000, true)
            .map_err(|e| format!("cluster files: {e}"))?;
        let mut d = Self {
            children: Vec::new(),
            cluster,
        };
        for n in [1, 2] {
            d.spawn(n)?;
        }
        Ok(d)
    }

    fn spawn(&mut self, n: u32) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(n))
            .map_err(|e| format!("log file: {e}"))?;
        let child = support::ckptd_command(&self.cluster.config_path, n, "info", log)
            .spawn()
            .map_err(|e| format!("spawn ckptd: {e}"))?;
        self.children.retain(|(m, _)| *m != n);
        self.children.push((n, child));
        Ok(())
    }

    fn log_path(&self, n: u32) -> PathBuf {
        self.cluster.root().join(format!("ckptd-{n}.log"))
    }

    fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    fn pid(&self, n: u32) -> u32 {
        self.children
            .iter()
            .find(|(m, _)| *m == n)
            .map_or(0, |(_, c)| c.id())
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self, n: u32) {
        if let Some((_, c)) = self.children.iter_mut().find(|(m, _)| *m == n) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every daemon still runs; else which one ended, how, and its log.
    fn alive(&mut self) -> Result<(), String> {
        for (n, c) in &mut self.children {
            if let Ok(Some(st)) = c.try_wait() {
                let log =
                    std::fs::read_to_string(self.cluster.root().join(format!("ckptd-{n}.log")))
                        .unwrap_or_default();
                return Err(format!("ckptd {n} {}\n{log}", describe(st).1));
            }
        }
        Ok(())
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// This test binary again, as a child in `role` with `vars` set.
fn child_command(role: &str, vars: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.env(ROLE, role).stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn library(socket: &Path) -> Result<Library, String> {
    let config = Config {
        cluster: Some(socket.to_path_buf()),
        ..Config::default()
    };
    let start = Instant::now();
    loop {
        match Library::initialize_with(config.clone(), Version::B_02_02, Callbacks::default()) {
            Ok(lib) => return Ok(lib),
            Err(_) if start.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("initialize at {}: {e}", socket.display())),
        }
    }
}

fn attrs() -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA,
        checkpoint_size: 16 * 4096,
        retention_duration: 10 * SECOND,
        max_sections: 16,
        max_section_size: 4096,
        max_section_id_size: 16,
    }
}

/// Creates the checkpoint through `lib` (read and write).
fn create(lib: &Library) -> Result<Checkpoint, String> {
    retry(|| {
        lib.open(
            NAME,
            Some(&attrs()),
            OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
            10 * SECOND,
        )
    })
    .map_err(|e| format!("create: {e}"))
}

fn open(lib: &Library, flags: OpenFlags) -> Result<Checkpoint, String> {
    retry(|| lib.open(NAME, None, flags, 10 * SECOND)).map_err(|e| format!("open: {e}"))
}

// ---- child processes -------------------------------------------------------------------

/// A child agent whose stdout lines arrive on a channel.
/// Reads the parent's commands (`q`: stop; `ckptd PID`: node 1's daemon is now PID).
fn listen(ckptd: Option<Arc<Mutex<u32>>>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if let (Some(pid), Some(c)) = (line.strip_prefix("ckptd "), &ckptd) {
                *c.lock().unwrap_or_else(|p| p.into_inner()) = pid.parse().unwrap_or(0);
            } else if line == "q" {
                break;
            }
        }
        s.store(true, Ordering::Relaxed);
    });
    stop
}

/// A child's library on the node of `CKPT_R4S_SOCKET` and the checkpoint opened there
/// with `flags`; `None` after saying `ERR …` to the parent.
fn child_checkpoint(flags: OpenFlags) -> Option<(Library, Checkpoint)> {
    let lib = match library(Path::new(&env("CKPT_R4S_SOCKET"))) {
        Ok(l) => l,
        Err(e) => {
            say(&format!("ERR {e}"));
            return None;
        }
    };
    let Ok(ck) = open(&lib, flags) else {
        say("ERR open");
        return None;
    };
    Some((lib, ck))
}

/// Overwrites `counter` with 1, 2, 3, … and synchronizes every fifth value; prints
/// `S k` after each synchronize that succeeded and `END k` at the end.
fn writer() -> i32 {
    let stop = listen(None);
    let Some((_lib, ck)) = child_checkpoint(OpenFlags::READ | OpenFlags::WRITE) else {
        return 1;
    };
    say("R");
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        while ck.overwrite(b"counter", k.to_string().as_bytes()).is_err() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if k.is_multiple_of(5) && ck.synchronize(2 * SECOND).is_ok() {
            say(&format!("S {k}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    say(&format!("END {k}"));
    0
}

/// Reads `counter` over and over (`CKPT_R4S_LOCAL=1`: this node's replica, as a hot
/// standby does); a value that goes back or does not parse is bad. Prints `END ok bad
/// errors last`.
fn reader() -> i32 {
    let stop = listen(None);
    let Some((_lib, ck)) = child_checkpoint(OpenFlags::READ) else {
        return 1;
    };
    let local = env("CKPT_R4S_LOCAL") == "1";
    say("R");
    let (mut ok, mut bad, mut errors, mut last) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let got = if local {
            let mut el = [ckpt_agent::ReadElement {
                section_id: b"counter",
                offset: 0,
                buf: &mut buf,
                read_size: 0,
            }];
            ck.read_local(&mut el)
                .map(|()| el[0].read_size)
                .map(|n| buf[..n].to_vec())
                .map_err(drop)
        } else {
            ck.read_vec(b"counter", 0).map_err(drop)
        };
        match got {
            Ok(v) => match std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(n) if n >= last => {
                    last = n;
                    ok += 1;
                }
                _ => {
                    bad += 1;
                    say(&format!(
                        "BAD {:?} after {last}",
                        String::from_utf8_lossy(&v)
                    ));
                }
            },
            Err(_) => errors += 1,
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    say(&format!("END {ok} {bad} {errors} {last}"));
    0
}

/// The replica's memfds `pid` holds, as `/proc/<pid>/fd/N` paths.
fn memfds_of(pid: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_link(p).is_ok_and(|t| t.to_string_lossy().starts_with("/memfd:c"))
        })
        .collect()
}

/// What the chaos agent's attempts got.
#[derive(Default)]
struct Tally {
    attempts: u64,
    eperm: u64,
    other: u64,
    succeeded: u64,
    how: Vec<String>,
}

impl Tally {
    fn note(&mut self, way: &str, r: std::io::Result<()>) {
        self.attempts += 1;
        let text = match &r {
            Ok(()) => {
                self.succeeded += 1;
                "SUCCEEDED".to_owned()
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                self.eperm += 1;
                "EPERM".to_owned()
            }
            Err(e) => {
                self.other += 1;
                format!("refused otherwise ({e})")
            }
        };
        if !self.how.iter().any(|h| h.starts_with(way)) {
            self.how.push(format!("{way}: {text}"));
        }
    }

    /// Every way to change the length of the object behind `path` (a `/proc/…/fd/N`
    /// link to a sealed replica), and to seal it against the writers.
    fn attempt(&mut self, whose: &str, path: &Path) {
        // Closed meanwhile: nothing to try.
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        else {
            return;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        let io = |r: Result<(), rustix::io::Errno>| r.map_err(std::io::Error::from);
        self.note(
            &format!("{whose}: ftruncate to half"),
            io(rustix::fs::ftruncate(&f, len / 2)),
        );
        self.note(
            &format!("{whose}: ftruncate to 0"),
            io(rustix::fs::ftruncate(&f, 0)),
        );
        self.note(
            &format!("{whose}: ftruncate to twice"),
            io(rustix::fs::ftruncate(&f, len * 2)),
        );
        self.note(
            &format!("{whose}: fallocate past the end"),
            io(rustix::fs::fallocate(
                &f,
                FallocateFlags::empty(),
                len,
                1 << 20,
            )),
        );
        let trunc = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map(drop);
        self.note(&format!("{whose}: open(O_TRUNC)"), trunc);
        self.note(
            &format!("{whose}: F_ADD_SEALS F_SEAL_WRITE"),
            io(rustix::fs::fcntl_add_seals(&f, SealFlags::WRITE)),
        );
    }
}

/// An agent that holds the replica's descriptor (it opens the checkpoint like any agent)
/// and, until told to stop, tries to resize it, and ckptd's own descriptors through
/// `/proc/<ckptd>/fd`. Prints `RESIZE attempts eperm other succeeded own ckptd` and how.
fn chaos() -> i32 {
    let ckptd = Arc::new(Mutex::new(
        env("CKPT_R4S_CKPTD").parse::<u32>().unwrap_or(0),
    ));
    let stop = listen(Some(Arc::clone(&ckptd)));
    let Some((_lib, ck)) = child_checkpoint(OpenFlags::READ) else {
        return 1;
    };
    say(&format!(
        "R uid={} own memfds {}",
        rustix::process::geteuid().as_raw(),
        memfds_of("self").len()
    ));
    let mut t = Tally::default();
    let (mut own, mut theirs) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        for p in memfds_of("self") {
            own += 1;
            t.attempt("the agent's descriptor", &p);
        }
        let pid = *ckptd.lock().unwrap_or_else(|p| p.into_inner());
        for p in memfds_of(&pid.to_string()) {
            theirs += 1;
            t.attempt("ckptd's descriptor via /proc", &p);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(ck);
    say(&format!(
        "RESIZE {} {} {} {} {own} {theirs}",
        t.attempts, t.eperm, t.other, t.succeeded
    ));
    say(&format!("HOW {}", t.how.join("; ")));
    say("END");
    0
}

// ---- the tests -------------------------------------------------------------------------

fn descriptor_holder() -> Verdict {
    match run_descriptor_holder() {
        Ok(()) => Verdict::Pass,
        Err(e) => Verdict::Fail(e),
    }
}

fn run_descriptor_holder() -> Result<(), String> {
    let secs = std::env::var("R4S_DURATION")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6u64);
    let mut d = Daemons::start("r4s")?;
    let (s1, s2) = (d.cluster.socket(1), d.cluster.socket(2));
    let lib1 = library(&s1)?;
    let ck = create(&lib1)?;
    let instance = ck.instance();
    retry(|| ck.create_section(Some(b"counter"), TIME_END, b"0")).map_err(|e| e.to_string())?;
    retry(|| ck.synchronize(10 * SECOND)).map_err(|e| format!("synchronize: {e}"))?;
    let lib2 = library(&s2)?;
    let on2 = open(&lib2, OpenFlags::READ)?;
    let size = ckpt_engine::layout::object_size(
        &ckpt_engine::ReplicaAttributes {
            creation_flags: attrs().creation_flags.0,
            checkpoint_size: attrs().checkpoint_size,
            retention_ns: attrs().retention_duration,
            max_sections: attrs().max_sections,
            max_section_size: attrs().max_section_size,
            max_section_id_size: attrs().max_section_id_size,
        },
        &ckpt_engine::ReplicaLimits::default(),
    )
    .ok_or("object size")?;

    let vars = |socket: &Path, local: bool| {
        vec![
            ("CKPT_R4S_SOCKET", socket.display().to_string()),
            ("CKPT_R4S_LOCAL", if local { "1" } else { "0" }.to_owned()),
            ("CKPT_R4S_CKPTD", d.pid(1).to_string()),
        ]
    };
    let mut kids = vec![
        Kid::spawn(
            child_command("writer", &vars(&s1, false)),
            "writer on node 1",
        ),
        Kid::spawn(
            child_command("reader", &vars(&s1, false)),
            "reader 1 on node 1",
        ),
        Kid::spawn(
            child_command("reader", &vars(&s1, true)),
            "reader 2 on node 1",
        ),
        Kid::spawn(
            child_command("reader", &vars(&s2, true)),
            "reader on node 2",
        ),
    ];
    let mut chaos = Kid::spawn(
        child_command("chaos", &vars(&s1, false)),
        "chaos agent on node 1",
    );
    let mut problems = Vec::new();
    for k in kids.iter_mut().chain(std::iter::once(&mut chaos)) {
        match k.expect("R", Duration::from_secs(30)) {
            Ok(l) if k.who().starts_with("chaos") => println!("  chaos agent ready: {l}"),
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n  "));
    }
    std::thread::sleep(Duration::from_secs(secs / 2));
    // Node 1's daemon dies by SIGKILL and comes back: its agents hand the replica back.
    d.alive()?;
    d.kill(1);
    std::thread::sleep(Duration::from_millis(300));
    d.spawn(1)?;
    chaos.send(&format!("ckptd {}", d.pid(1)));
    let restarted = Instant::now();
    std::thread::sleep(Duration::from_secs(secs - secs / 2));
    // The writer synchronizes after the restart (give it the restart's few seconds).
    let mut synced_after = None;
    while synced_after.is_none() && restarted.elapsed() < Duration::from_secs(secs + 20) {
        while let Some(l) = kids[0].line(Duration::from_millis(100)) {
            if restarted.elapsed() > Duration::from_millis(500)
                && let Some(k) = l.strip_prefix("S ")
            {
                synced_after = k.parse::<u64>().ok();
            }
        }
    }
    if synced_after.is_none() {
        problems.push("the writer never synchronized after node 1's daemon restarted".into());
    }
    if let Err(e) = d.alive() {
        problems.push(e);
    }

    let (chaos_lines, chaos_end) = chaos.stop(Duration::from_secs(20));
    let mut last_written = 0;
    for k in &mut kids {
        let (lines, st) = k.stop(Duration::from_secs(30));
        match st {
            Some(st) if st.success() => {}
            Some(st) => problems.push(format!("{} {}", k.who(), describe(st).1)),
            None => problems.push(format!("{} did not stop", k.who())),
        }
        for l in &lines {
            if l.starts_with("BAD") || l.starts_with("ERR") {
                problems.push(format!("{}: {l}", k.who()));
            }
        }
        let end = lines
            .iter()
            .find_map(|l| l.strip_prefix("END "))
            .unwrap_or("");
        if k.who().starts_with("writer") {
            last_written = end.parse().unwrap_or(0);
        }
        println!("  {}: END {end}", k.who());
    }
    match chaos_end {
        Some(st) if st.success() => {}
        Some(st) => problems.push(format!("chaos agent {}", describe(st).1)),
        None => problems.push("chaos agent did not stop".into()),
    }
    let resize = chaos_lines
        .iter()
        .find_map(|l| l.strip_prefix("RESIZE "))
        .unwrap_or("0 0 0 0 0 0");
    let n: Vec<u64> = resize.split(' ').map(|w| w.parse().unwrap_or(0)).collect();
    println!(
        "  chaos agent: {} resize attempts, {} EPERM, {} refused otherwise, {} succeeded \
         ({} through its own descriptor, {} through ckptd's)",
        n[0], n[1], n[2], n[3], n[4], n[5]
    );
    if let Some(how) = chaos_lines.iter().find_map(|l| l.strip_prefix("HOW ")) {
        println!("    {how}");
    }
    if n[0] == 0 || n[4] == 0 || n[5] == 0 {
        problems.push(format!(
            "the chaos agent did not try through both descriptors ({resize})"
        ));
    }
    if n[1] != n[0] {
        problems.push(format!(
            "not every resize attempt failed with EPERM ({resize})"
        ));
    }
    if let Err(e) = d.alive() {
        problems.push(e);
    }
    if !d.log(1).contains("an agent handed the replica back") {
        problems.push(format!(
            "node 1's restarted daemon took no replica back:\n{}",
            d.log(1)
        ));
    }

    // Replication goes on: node 2 ends with the writer's last value.
    retry(|| ck.synchronize(10 * SECOND)).map_err(|e| format!("final synchronize: {e}"))?;
    let mut buf = [0u8; 32];
    let mut el = [ckpt_agent::ReadElement {
        section_id: b"counter",
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    on2.read_local(&mut el)
        .map_err(|e| format!("read on node 2: {e}"))?;
    let n = el[0].read_size;
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    if got != last_written.to_string() {
        problems.push(format!(
            "node 2 has {got:?}, the writer last wrote {last_written}"
        ));
    }
    // The object kept its size, in the restarted daemon too.
    let held = sealed::descriptors(&s1, Duration::from_secs(5))
        .map_err(|e| format!("ask node 1's ckptd: {e}"))?;
    match held.replicas.iter().find(|(i, _)| *i == instance) {
        Some((_, fd)) => {
            let len = rustix::fs::fstat(fd).map_or(0, |s| s.st_size as u64);
            if len != size {
                problems.push(format!("node 1's replica is {len} bytes, not {size}"));
            }
        }
        None => problems.push("node 1's restarted daemon does not hold the replica".into()),
    }
    drop((ck, on2, lib1, lib2));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n  "))
    }
}

fn refused_hand_backs() -> Verdict {
    match run_refused_hand_backs() {
        Ok(()) => Verdict::Pass,
        Err(e) => Verdict::Fail(e),
    }
}

/// A session with a sealed ckptd, as a (fake) agent: Hello, then its Welcome.
fn fake_agent(socket: &Path) -> Result<UnixStream, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    Frame::Hello {
        version: PROTOCOL_VERSION,
        node: 0,
        incarnation: (u64::from(std::process::id()) << 24) | 0xfff,
    }
    .encode(&mut out);
    stream.write_all(&out).map_err(|e| e.to_string())?;
    let mut reader = FdReader::new(DEFAULT_MAX_FRAME);
    let mut buf = [0u8; 4096];
    loop {
        if let Some((f, _)) = reader.next().map_err(|e| e.to_string())? {
            return match f {
                Frame::Welcome { sealed: true, .. } => Ok(stream),
                other => Err(format!("expected a sealed Welcome, got {other:?}")),
            };
        }
        if reader.recv(&stream, &mut buf).map_err(|e| e.to_string())? == 0 {
            return Err("ckptd closed the session".into());
        }
    }
}

fn hand_back(stream: &UnixStream, instances: Vec<u64>, fds: &[&OwnedFd]) -> Result<(), String> {
    let mut out = Vec::new();
    Frame::Descriptors {
        instances,
        last: true,
    }
    .encode(&mut out);
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    send_frame_blocking(stream, &out, &borrowed).map_err(|e| format!("hand back: {e}"))
}

/// A memfd holding `bytes`, with `seals` added.
fn memfd_with(bytes: &[u8], seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create(
        "forged",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .expect("memfd_create");
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).expect("fill the memfd");
    let fd = OwnedFd::from(f);
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).expect("add seals");
    }
    fd
}

fn run_refused_hand_backs() -> Result<(), String> {
    let mut d = Daemons::start("r4s-refuse")?;
    let s1 = d.cluster.socket(1);
    let lib1 = library(&s1)?;
    let ck = create(&lib1)?;
    let instance = ck.instance();
    retry(|| ck.create_section(Some(b"s"), TIME_END, b"kept")).map_err(|e| e.to_string())?;
    // A copy of the replica's bytes (what any holder of its descriptor can make).
    let held = sealed::descriptors(&s1, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let (_, real) = held
        .replicas
        .iter()
        .find(|(i, _)| *i == instance)
        .ok_or("node 1 holds no replica")?;
    let len = rustix::fs::fstat(real).map_err(|e| e.to_string())?.st_size as usize;
    let mut image = vec![0u8; len];
    let mut at = 0;
    while at < len {
        at += rustix::io::pread(real, &mut image[at..], at as u64).map_err(|e| e.to_string())?;
    }
    let all = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    let foreign = instance + 0x1000;
    let unsealed = memfd_with(&image, SealFlags::empty());
    let other_instance = memfd_with(&image, all);
    let (pipe_rd, _pipe_wr) = std::io::pipe().map_err(|e| e.to_string())?;
    let pipe_rd = OwnedFd::from(pipe_rd);
    let stranger = memfd_with(&image, all);

    let agent = fake_agent(&s1)?;
    // Unsealed, under an instance the node does not hold.
    hand_back(&agent, vec![foreign], &[&unsealed])?;
    // Sealed, but its header names another instance.
    hand_back(&agent, vec![foreign + 1], &[&other_instance])?;
    // Not a memfd at all.
    hand_back(&agent, vec![foreign + 2], &[&pipe_rd])?;
    // Another object than the replica the node holds, under its instance.
    hand_back(&agent, vec![instance], &[&stranger])?;
    // A frame naming two instances with one descriptor: the session ends.
    let mut out = Vec::new();
    Frame::Descriptors {
        instances: vec![foreign + 3, foreign + 4],
        last: true,
    }
    .encode(&mut out);
    send_frame_blocking(&agent, &out, &[unsealed.as_fd()]).map_err(|e| e.to_string())?;
    let mut rest = [0u8; 64];
    let closed = std::io::Read::read(&mut &agent, &mut rest).map_or(true, |n| n == 0);

    let mut problems = Vec::new();
    if !closed {
        problems.push("ckptd kept a session that sent a miscounted Descriptors frame".into());
    }
    std::thread::sleep(Duration::from_millis(300));
    if let Err(e) = d.alive() {
        problems.push(e);
    }
    let after = sealed::descriptors(&s1, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let instances: Vec<u64> = after.replicas.iter().map(|(i, _)| *i).collect();
    if instances != [instance] {
        problems.push(format!(
            "ckptd holds {instances:x?}, not just {instance:#x}"
        ));
    }
    let same = after
        .replicas
        .iter()
        .find(|(i, _)| *i == instance)
        .is_some_and(|(_, fd)| ckpt_tools::ckptd::store::same_object(fd, real));
    if !same {
        problems.push("ckptd's replica was replaced".into());
    }
    let log = d.log(1);
    let refusals = log
        .lines()
        .filter(|l| l.contains("refused a replica an agent handed back"))
        .count();
    if refusals != 4 {
        problems.push(format!("{refusals} refusals logged, not 4:\n{log}"));
    }
    for want in ["not sealed", "not ", "another object"] {
        if !log.contains(want) {
            problems.push(format!("no refusal saying {want:?} in the log"));
        }
    }
    // And it keeps serving: a write and a synchronize through it.
    retry(|| ck.overwrite(b"s", b"after")).map_err(|e| format!("write: {e}"))?;
    retry(|| ck.synchronize(10 * SECOND)).map_err(|e| format!("synchronize: {e}"))?;
    println!("  ckptd refused {refusals} hand-backs and dropped the miscounted session");
    drop((ck, lib1));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n  "))
    }
}
