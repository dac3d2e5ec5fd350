//! `ckpt demo failover`: the 1+1 failover scenario on two ckptd nodes on loopback.
//!
//! The parent makes a throw-away cluster (certificates, cluster file, shm directories),
//! starts `ckptd` for nodes 1 and 2, an *active* process on node 1 and a *standby* process
//! on node 2. The active opens a collocated checkpoint, makes its replica active, and
//! every 50 ms overwrites a counter and synchronizes (the confirmed barrier: the standby
//! node has acknowledged it), reporting each synchronized value. After about 2 s the
//! parent kills the active process and node 1's ckptd with SIGKILL and tells the standby
//! to take over: it makes its own replica active (retrying while node 2 notices node 1's
//! death and takes the directory over), reads the counter and carries on counting.
//!
//! The last line is `failover: standby resumed at N; last synchronized M; lost K`; the
//! exit status is 0 iff nothing synchronized was lost (N ≥ M).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_agent::{
    Callbacks, Config, CreationAttributes, CreationFlags, Error, Library, OpenFlags, Version,
};

use crate::ckptd::LocalCluster;

const NAME: &str = "safCkpt=FailoverDemo,safApp=safCkptService";
const SECOND: i64 = 1_000_000_000;

fn attrs() -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        checkpoint_size: 4096,
        retention_duration: 10 * SECOND,
        max_sections: 1,
        max_section_size: 4096,
        max_section_id_size: 0,
    }
}

/// Runs the scenario (or, with `role`, one of its child processes).
pub fn run(role: Option<&str>, socket: Option<&Path>) -> Result<ExitCode, String> {
    match (role, socket) {
        (Some("active"), Some(s)) => active(s),
        (Some("standby"), Some(s)) => standby(s),
        (Some(r), _) => Err(format!("unknown role {r} (or no --socket)")),
        (None, _) => parent(),
    }
}

struct Kids(Vec<(String, Child)>);

impl Kids {
    fn kill(&mut self, name: &str) {
        if let Some((_, c)) = self.0.iter_mut().find(|(n, _)| n == name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Kids {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // SIGTERM first (ckptd stops cleanly), then make sure.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(c.id() as i32).expect("child pid"),
                rustix::process::Signal::TERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c) in &mut self.0 {
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn parent() -> Result<ExitCode, String> {
    // This binary runs the daemon too (`ckpt daemon`, what `ckptd` runs).
    let me = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let cluster = LocalCluster::create("failover", &[1, 2], true, 1000)
        .map_err(|e| format!("cannot make the demo cluster: {e}"))?;
    println!(
        "demo cluster in {} (two nodes, two-node quorum, mutual TLS)",
        cluster.root().display()
    );
    let mut kids = Kids(Vec::new());
    for n in [1u32, 2] {
        let log = std::fs::File::create(cluster.root().join(format!("ckptd-{n}.log")))
            .map_err(|e| format!("log file: {e}"))?;
        let child = Command::new(&me)
            .arg("daemon")
            .arg("--config")
            .arg(&cluster.config_path)
            .arg("--node")
            .arg(n.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start ckptd: {e}"))?;
        println!("started ckptd for node {n} (pid {})", child.id());
        kids.0.push((format!("ckptd-{n}"), child));
    }
    wait_for_socket(&cluster.socket(1))?;
    wait_for_socket(&cluster.socket(2))?;

    let spawn_role = |role: &str, node: u32| {
        Command::new(&me)
            .args(["demo", "failover", "--role", role, "--socket"])
            .arg(cluster.socket(node))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {role}: {e}"))
    };
    let mut active = spawn_role("active", 1)?;
    let active_out = active.stdout.take().ok_or("no active stdout")?;
    kids.0.push(("active".into(), active));
    let (tx, rx) = mpsc::channel::<String>();
    let tx_active = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(active_out).lines().map_while(Result::ok) {
            if tx_active.send(format!("A {line}")).is_err() {
                break;
            }
        }
    });
    let mut standby = spawn_role("standby", 2)?;
    let standby_out = standby.stdout.take().ok_or("no standby stdout")?;
    let mut standby_in: ChildStdin = standby.stdin.take().ok_or("no standby stdin")?;
    kids.0.push(("standby".into(), standby));
    std::thread::spawn(move || {
        for line in BufReader::new(standby_out).lines().map_while(Result::ok) {
            if tx.send(format!("S {line}")).is_err() {
                break;
            }
        }
    });

    // Let the active count and synchronize for ~2 s once the standby is attached.
    let mut last_synced: Option<u64> = None;
    let mut standby_ready = false;
    let mut counting_since: Option<Instant> = None;
    let overall = Instant::now();
    loop {
        if overall.elapsed() > Duration::from_secs(60) {
            return Err("the active and standby did not get going within 60 s".into());
        }
        let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if let Some(v) = line.strip_prefix("A synced ") {
            let v: u64 = v.trim().parse().map_err(|_| format!("bad line {line}"))?;
            if v.is_multiple_of(10) {
                println!("active: counter {v} synchronized");
            }
            last_synced = Some(v);
        } else if line == "S ready" {
            println!("standby: checkpoint open on node 2 (hot standby)");
            standby_ready = true;
        } else if let Some(msg) = line.strip_prefix("A ").or_else(|| line.strip_prefix("S ")) {
            println!("{msg}");
        }
        if standby_ready && last_synced.is_some() && counting_since.is_none() {
            counting_since = Some(Instant::now());
        }
        if counting_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
            break;
        }
    }
    kids.kill("active");
    kids.kill("ckptd-1");
    // Lines the active printed before it died still count.
    while let Ok(line) = rx.try_recv() {
        if let Some(v) = line.strip_prefix("A synced ") {
            last_synced = v.trim().parse().ok().or(last_synced);
        }
    }
    let m = last_synced.unwrap_or(0);
    println!("killed the active process and node 1's ckptd (SIGKILL); last synchronized value {m}");
    writeln!(standby_in, "takeover").map_err(|e| format!("standby: {e}"))?;
    let t0 = Instant::now();
    let mut resumed = None;
    while resumed.is_none() {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if let Some(v) = line.strip_prefix("S resumed ") {
                    resumed = Some(
                        v.trim()
                            .parse::<u64>()
                            .map_err(|_| format!("bad line {line}"))?,
                    );
                } else if let Some(msg) = line.strip_prefix("S ") {
                    println!("{msg}");
                }
            }
            Err(_) => return Err("the standby did not take over within 60 s".into()),
        }
    }
    let n = resumed.unwrap_or(0);
    println!(
        "standby: active on node 2 after {:.1} s, counter {n}",
        t0.elapsed().as_secs_f64()
    );
    // Let the standby show it carries on, then stop everything.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        if let Some(msg) = line.strip_prefix("S ") {
            println!("{msg}");
            if msg.starts_with("continued") {
                break;
            }
        }
    }
    drop(standby_in);
    drop(kids);
    drop(cluster);
    let lost = m.saturating_sub(n);
    println!("failover: standby resumed at {n}; last synchronized {m}; lost {lost}");
    Ok(if lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn wait_for_socket(p: &Path) -> Result<(), String> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if std::os::unix::net::UnixStream::connect(p).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("ckptd did not open {}", p.display()))
}

fn library(socket: &Path) -> Result<Library, String> {
    let config = Config {
        cluster: Some(socket.to_path_buf()),
        ..Config::default()
    };
    retry(|| Library::initialize_with(config.clone(), Version::B_02_02, Callbacks::default()))
        .map_err(|e| format!("initialize: {e}"))
}

/// Retries while the cluster is forming or failing over (TryAgain), for up to 30 s.
fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let t = Instant::now();
    loop {
        match f() {
            Err(Error::TryAgain | Error::Unavailable) if t.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn active(socket: &Path) -> Result<ExitCode, String> {
    let lib = library(socket)?;
    let flags = OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE;
    let ck = retry(|| lib.open(NAME, Some(&attrs()), flags, 10 * SECOND))
        .map_err(|e| format!("active: open: {e}"))?;
    retry(|| ck.set_active_replica()).map_err(|e| format!("active: set active: {e}"))?;
    say("active: checkpoint open on node 1, replica active");
    let mut i: u64 = 0;
    loop {
        i += 1;
        ck.overwrite(b"", i.to_string().as_bytes())
            .map_err(|e| format!("active: overwrite: {e}"))?;
        match ck.synchronize(SECOND) {
            Ok(()) => say(&format!("synced {i}")),
            Err(e) => say(&format!("active: synchronize of {i}: {e} (not counted)")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn standby(socket: &Path) -> Result<ExitCode, String> {
    let lib = library(socket)?;
    let flags = OpenFlags::READ | OpenFlags::WRITE;
    let ck = retry(|| match lib.open(NAME, None, flags, 10 * SECOND) {
        // Not created yet by the active.
        Err(Error::NotExist) => Err(Error::TryAgain),
        r => r,
    })
    .map_err(|e| format!("standby: open: {e}"))?;
    say("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    retry(|| ck.set_active_replica()).map_err(|e| format!("standby: set active: {e}"))?;
    let mut buf = [0u8; 32];
    let n = ck
        .read_into(b"", 0, &mut buf)
        .map_err(|e| format!("standby: read: {e}"))?;
    let value: u64 = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("standby: the counter is not a number")?;
    say(&format!("resumed {value}"));
    let mut v = value;
    for _ in 0..5 {
        v += 1;
        ck.overwrite(b"", v.to_string().as_bytes())
            .map_err(|e| format!("standby: overwrite: {e}"))?;
        std::thread::sleep(Duration::from_millis(50));
    }
    say(&format!("continued counting to {v} on node 2"));
    Ok(ExitCode::SUCCESS)
}
