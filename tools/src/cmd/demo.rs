//! `ckpt demo`: the single-node writer/reader sample on the embedded engine (no daemon).
//!
//! The parent starts a reader process and a writer process. The writer opens the
//! checkpoint with create, creates a section, writes a text and synchronizes; the reader
//! opens the same checkpoint, waits on the arrival notification (a futex in the replica:
//! no polling), and reads the text back — straight from shared memory. Then the parent
//! runs a short overwrite/read/borrow loop to show the data-path cost.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ckpt_engine::{
    Registry, ReplicaAttributes, ReplicaLimits, SectionError, Sharing, TIME_END, WriteElement,
};

/// `ckpt demo` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Internal: run as the writer or reader child.
    #[arg(long, hide = true)]
    role: Option<String>,
    /// Checkpoint name.
    #[arg(long, default_value = "safCkpt=DemoCkpt,safApp=safCkptService")]
    name: String,
    /// Iterations of the throughput loop (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    iterations: u64,
}

const SECTION: &[u8] = b"11";
const TEXT: &[u8] = b"The quick brown fox jumped over the lazy dog";

fn attrs() -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0x1, // SA_CKPT_WR_ALL_REPLICAS
        checkpoint_size: 1024 * 1024,
        retention_ns: 0,
        max_sections: 16,
        max_section_size: 64 * 1024,
        max_section_id_size: 64,
    }
}

/// Runs the demo (or one of its child roles).
pub fn run(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    match args.role.as_deref() {
        Some("writer") => writer(dir, args),
        Some("reader") => reader(dir, args),
        Some(other) => Err(format!("unknown role {other}")),
        None => parent(dir, args),
    }
}

fn registry(dir: &Path) -> Result<Registry, String> {
    Registry::open(dir, Sharing::default())
        .map_err(|e| format!("cannot open the node registry in {}: {e}", dir.display()))
}

fn parent(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    println!("ckpt demo: embedded engine, domain {}", dir.display());
    let reg = registry(dir)?;
    // A leftover from an interrupted run would be found instead of created.
    let _ = reg.unlink(args.name.as_bytes());
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let spawn = |role: &str| {
        Command::new(&exe)
            .args([
                "--dir",
                &dir.to_string_lossy(),
                "demo",
                "--role",
                role,
                "--name",
                &args.name,
            ])
            .stdout(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {role}: {e}"))
    };
    let mut reader = spawn("reader")?;
    let mut writer = spawn("writer")?;
    let w = writer.wait().map_err(|e| e.to_string())?;
    let r = reader.wait().map_err(|e| e.to_string())?;
    if !w.success() || !r.success() {
        return Err(format!("writer exited with {w}, reader with {r}"));
    }
    if args.iterations > 0 {
        throughput(dir, args.iterations)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn writer(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    let reg = registry(dir)?;
    let opened = reg
        .open_replica(
            args.name.as_bytes(),
            Some((&attrs(), &ReplicaLimits::default())),
        )
        .map_err(|e| format!("writer: open failed: {e}"))?;
    println!(
        "Writer: checkpoint {} opened (instance {})",
        args.name, opened.instance
    );
    let ckpt = &opened.replica;
    ckpt.create_section(Some(SECTION), TIME_END, b"")
        .map_err(|e| format!("writer: section create: {e}"))?;
    println!(
        "Writer: section {} created",
        String::from_utf8_lossy(SECTION)
    );
    ckpt.write(&[WriteElement {
        id: SECTION,
        offset: 0,
        data: TEXT,
    }])
    .map_err(|e| format!("writer: write: {e}"))?;
    println!(
        "Writer: wrote {} bytes: \"{}\"",
        TEXT.len(),
        String::from_utf8_lossy(TEXT)
    );
    // Standalone: every replica is this one, so the barrier is the commit seq itself.
    println!("Writer: synchronize OK (commit seq {})", ckpt.commit_seq());
    // Keep the checkpoint open until the reader has read it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && ckpt.section_info(b"ack").is_err() {
        std::thread::sleep(Duration::from_millis(2));
    }
    reg.unlink(args.name.as_bytes())
        .map_err(|e| format!("writer: unlink: {e}"))?;
    reg.close(opened.instance)
        .map_err(|e| format!("writer: close: {e}"))?;
    println!("Writer: checkpoint unlinked and closed");
    Ok(ExitCode::SUCCESS)
}

fn reader(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    let reg = registry(dir)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let opened = loop {
        match reg.open_replica(args.name.as_bytes(), None) {
            Ok(o) => break o,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("reader: open failed: {e}")),
        }
    };
    let ckpt = &opened.replica;
    let mut seen = 0;
    let mut buf = vec![0u8; 1024];
    let n = loop {
        match ckpt.read(SECTION, 0, &mut buf) {
            Ok(n) if n > 0 => break n,
            Ok(_) | Err(SectionError::NotExist) if Instant::now() < deadline => {
                // Sleep on the replica's arrival futex until the writer commits something.
                let head = ckpt.commit_seq().max(seen);
                ckpt.wait_for_changes(head, Duration::from_millis(500));
                seen = head;
            }
            Ok(_) => return Err("reader: the writer wrote nothing".into()),
            Err(e) => return Err(format!("reader: read failed: {e}")),
        }
    };
    println!(
        "Reader: read {n} bytes: \"{}\"",
        String::from_utf8_lossy(&buf[..n])
    );
    if buf[..n] != *TEXT {
        return Err("reader: text differs from what the writer wrote".into());
    }
    ckpt.create_section(Some(b"ack"), TIME_END, b"")
        .map_err(|e| format!("reader: ack: {e}"))?;
    reg.close(opened.instance)
        .map_err(|e| format!("reader: close: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn throughput(dir: &Path, iterations: u64) -> Result<(), String> {
    let reg = registry(dir)?;
    let name = format!("ckpt-demo-throughput-{}", std::process::id());
    let opened = reg
        .open_replica(name.as_bytes(), Some((&attrs(), &ReplicaLimits::default())))
        .map_err(|e| format!("throughput: open: {e}"))?;
    let ckpt = &opened.replica;
    let data = vec![0x5au8; 4096];
    ckpt.create_section(Some(b"s"), TIME_END, &data)
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    for _ in 0..iterations {
        ckpt.overwrite(b"s", &data).map_err(|e| e.to_string())?;
    }
    let overwrite = t.elapsed().as_nanos() as f64 / iterations as f64;
    let mut buf = vec![0u8; 4096];
    let t = Instant::now();
    for _ in 0..iterations {
        ckpt.read(b"s", 0, &mut buf).map_err(|e| e.to_string())?;
    }
    let read = t.elapsed().as_nanos() as f64 / iterations as f64;
    let t = Instant::now();
    let mut sum = 0u64;
    for _ in 0..iterations {
        let g = ckpt.borrow(b"s").map_err(|e| e.to_string())?;
        sum += u64::from(g[0]);
    }
    let borrow = t.elapsed().as_nanos() as f64 / iterations as f64;
    std::hint::black_box(sum);
    println!("Data path, 4 KiB section, {iterations} iterations, one thread:");
    println!(
        "  overwrite {overwrite:8.0} ns/op   read (copy-out) {read:8.0} ns/op   borrow (zero-copy) {borrow:6.0} ns/op"
    );
    println!(
        "  (`cargo run --release -p ckpt-bench --bin ratios` compares these with memcpy in /dev/shm)"
    );
    reg.unlink(name.as_bytes()).map_err(|e| e.to_string())?;
    reg.close(opened.instance).map_err(|e| e.to_string())?;
    Ok(())
}
