//! The 1+1 counter of the OpenClovis checkpoint example, in Rust: an active process
//! overwrites a counter (a network-order u32) every 100 ms; a standby process follows it
//! as a hot standby (arrival callbacks); when the active process is killed with SIGKILL
//! the standby is told to take over (as an availability manager would), makes its own
//! replica active and continues from the stored value.
//!
//! ```text
//! cargo run -p ckpt-agent --example counter_standby
//! ```
//!
//! Exits 0 only if the standby continued from a value at least the last one the active
//! reported as stored.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ckpt_agent::{
    Callbacks, CreationAttributes, CreationFlags, DispatchFlags, Library, OpenFlags, TIME_END,
    Version,
};

const SECTION: &[u8] = b"counter";
const TICK: Duration = Duration::from_millis(100);

fn name() -> String {
    // One checkpoint per run, so two runs on one node do not share a counter.
    std::env::var("COUNTER_CKPT")
        .unwrap_or_else(|_| format!("safCkpt=counter-{},safApp=demo", std::process::id()))
}

fn attributes() -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        checkpoint_size: 8,
        retention_duration: 0,
        max_sections: 2,
        max_section_size: 4,
        max_section_id_size: 16,
    }
}

fn open(lib: &Library) -> Result<ckpt_agent::Checkpoint, String> {
    lib.open(
        name(),
        Some(&attributes()),
        OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
        TIME_END,
    )
    .map_err(|e| format!("open: {e}"))
}

/// Counts from the stored value (or 0) forever, printing `stored N` after each write.
fn count(ck: &ckpt_agent::Checkpoint, who: &str) -> Result<(), String> {
    ck.set_active_replica()
        .map_err(|e| format!("active replica set: {e}"))?;
    let start = match ck.read_vec(SECTION, 0) {
        Ok(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
        Ok(_) | Err(ckpt_agent::Error::NotExist) => {
            match ck.create_section(Some(SECTION), TIME_END, &0u32.to_be_bytes()) {
                Ok(_) | Err(ckpt_agent::Error::Exist) => {}
                Err(e) => return Err(format!("section create: {e}")),
            }
            0
        }
        Err(e) => return Err(format!("read: {e}")),
    };
    println!("{who}: active, resuming from {start}");
    let mut n = start;
    loop {
        n = n.wrapping_add(1);
        ck.overwrite(SECTION, &n.to_be_bytes())
            .map_err(|e| format!("overwrite: {e}"))?;
        println!("stored {n}");
        std::io::stdout().flush().ok();
        std::thread::sleep(TICK);
    }
}

fn active() -> Result<(), String> {
    let lib = Library::initialize(Version::B_02_02, Callbacks::default())
        .map_err(|e| format!("initialize: {e}"))?;
    let ck = open(&lib)?;
    count(&ck, "active")
}

/// Follows the active through arrival callbacks until told to take over on stdin.
fn standby() -> Result<(), String> {
    let lib = Arc::new(
        Library::initialize(Version::B_02_02, Callbacks::default())
            .map_err(|e| format!("initialize: {e}"))?,
    );
    let ck = open(&lib)?;
    let seen = Arc::new(AtomicU32::new(0));
    let arrivals = Arc::new(AtomicU32::new(0));
    {
        let arrivals = Arc::clone(&arrivals);
        lib.register_arrival_callback(Box::new(move |_, elements| {
            arrivals.fetch_add(elements.len() as u32, Ordering::Relaxed);
        }))
        .map_err(|e| format!("arrival callback: {e}"))?;
    }
    let dispatcher = {
        let lib = Arc::clone(&lib);
        std::thread::spawn(move || lib.dispatch(DispatchFlags::Blocking))
    };
    println!("standby: following");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("stdin: {e}"))?;
    // The hot-standby read of the local replica: the last value stored.
    if let Ok(v) = ck.read_vec(SECTION, 0)
        && v.len() == 4
    {
        seen.store(
            u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            Ordering::Relaxed,
        );
    }
    println!(
        "standby: taking over after {} arrival callbacks, last stored value {}",
        arrivals.load(Ordering::Relaxed),
        seen.load(Ordering::Relaxed)
    );
    let r = count(&ck, "standby");
    let _ = lib.finalize();
    let _ = dispatcher.join();
    r
}

fn child(role: &str) -> Result<(Child, BufReader<ChildStdout>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
    let mut c = Command::new(exe)
        .arg(role)
        .env("COUNTER_CKPT", name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the {role}: {e}"))?;
    let out = BufReader::new(c.stdout.take().ok_or("no stdout")?);
    Ok((c, out))
}

/// Reads lines until one satisfies `want` (bounded by `limit`), echoing them.
fn wait_line(
    out: &mut BufReader<ChildStdout>,
    limit: Duration,
    mut want: impl FnMut(&str) -> bool,
) -> Result<(), String> {
    let end = Instant::now() + limit;
    let mut line = String::new();
    while Instant::now() < end {
        line.clear();
        if out.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Err("the child exited".into());
        }
        print!("  | {line}");
        if want(line.trim_end()) {
            return Ok(());
        }
    }
    Err("timed out waiting for the child".into())
}

fn orchestrate() -> Result<(), String> {
    let (mut act, mut act_out) = child("active")?;
    let (mut sby, mut sby_out) = child("standby")?;
    wait_line(&mut sby_out, Duration::from_secs(10), |l| {
        l == "standby: following"
    })?;
    let mut last = 0u32;
    wait_line(&mut act_out, Duration::from_secs(10), |l| {
        if let Some(n) = l.strip_prefix("stored ").and_then(|n| n.parse().ok()) {
            last = n;
        }
        last >= 10
    })?;
    act.kill().map_err(|e| format!("kill: {e}"))?;
    let status = act.wait().map_err(|e| format!("wait: {e}"))?;
    // Anything printed before the kill is a stored value too.
    let mut rest = String::new();
    while act_out.read_line(&mut rest).unwrap_or(0) > 0 {
        if let Some(n) = rest
            .trim_end()
            .strip_prefix("stored ")
            .and_then(|n| n.parse().ok())
        {
            last = last.max(n);
        }
        rest.clear();
    }
    println!("orchestrator: active killed ({status}); it last reported stored {last}");
    sby.stdin
        .as_mut()
        .ok_or("no stdin")?
        .write_all(b"take over\n")
        .map_err(|e| format!("telling the standby: {e}"))?;
    let mut resumed = None;
    wait_line(&mut sby_out, Duration::from_secs(10), |l| {
        if let Some(n) = l
            .strip_prefix("standby: active, resuming from ")
            .and_then(|n| n.parse::<u32>().ok())
        {
            resumed = Some(n);
        }
        resumed.is_some()
    })?;
    wait_line(&mut sby_out, Duration::from_secs(10), |l| {
        l.starts_with("stored ")
    })?;
    let _ = sby.kill();
    let _ = sby.wait();
    let resumed = resumed.ok_or("the standby never resumed")?;
    if resumed >= last {
        println!("orchestrator: the standby continued from {resumed} >= {last}: OK");
        Ok(())
    } else {
        Err(format!(
            "the standby resumed from {resumed}, below the {last} the active stored"
        ))
    }
}

fn main() -> ExitCode {
    let r = match std::env::args().nth(1).as_deref() {
        None => orchestrate(),
        Some("active") => active(),
        Some("standby") => standby(),
        Some(other) => Err(format!("unknown role {other:?}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("counter_standby: {e}");
            ExitCode::FAILURE
        }
    }
}
