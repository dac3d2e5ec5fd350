//! `ckpt demo`: the single-node writer/reader sample through the checkpoint API (no daemon).
//!
//! The parent starts a reader process and a writer process. The writer initializes the
//! library, opens the checkpoint with create, creates a section, writes a text and
//! synchronizes; the reader opens the same checkpoint for reading, registers the arrival
//! callback (the NCS hot-standby extension: the replica's futex wakes it, no polling),
//! dispatches, and reads the text it is told arrived — straight from shared memory. Then
//! the parent runs a short overwrite/read/borrow loop to show the data-path cost.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_agent::{
    Callbacks, Config, CreationAttributes, CreationFlags, DispatchFlags, Library, OpenFlags,
    TIME_END, Version, WriteElement,
};

/// `ckpt demo` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// `failover`: the two-node failover scenario (ckptd on loopback); without it, the
    /// single-node writer/reader demo with no daemon.
    scenario: Option<String>,
    /// Internal: run as one of the demo's child processes.
    #[arg(long, hide = true)]
    role: Option<String>,
    /// Internal: the ckptd socket of a failover child.
    #[arg(long, hide = true)]
    socket: Option<std::path::PathBuf>,
    /// Checkpoint name.
    #[arg(long, default_value = "safCkpt=DemoCkpt,safApp=safCkptService")]
    name: String,
    /// Iterations of the throughput loop (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    iterations: u64,
}

const SECTION: &[u8] = b"11";
const TEXT: &[u8] = b"The quick brown fox jumped over the lazy dog";

fn attrs() -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ALL_REPLICAS,
        checkpoint_size: 1024 * 1024,
        retention_duration: 0,
        max_sections: 16,
        max_section_size: 64 * 1024,
        max_section_id_size: 64,
    }
}

/// Runs the demo (or one of its child roles).
pub fn run(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    match args.scenario.as_deref() {
        Some("failover") => {
            return super::failover::run(args.role.as_deref(), args.socket.as_deref());
        }
        Some(other) => return Err(format!("unknown demo {other} (try: ckpt demo failover)")),
        None => {}
    }
    match args.role.as_deref() {
        Some("writer") => writer(dir, args),
        Some("reader") => reader(dir, args),
        Some(other) => Err(format!("unknown role {other}")),
        None => parent(dir, args),
    }
}

fn library(dir: &Path, callbacks: Callbacks) -> Result<Library, String> {
    let config = Config {
        domain: dir.to_path_buf(),
        ..Config::default()
    };
    Library::initialize_with(config, Version::B_02_02, callbacks).map_err(|e| {
        format!(
            "cannot initialize the checkpoint library in {}: {e}",
            dir.display()
        )
    })
}

fn parent(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    println!("ckpt demo: no daemon, domain {}", dir.display());
    let lib = library(dir, Callbacks::default())?;
    // A leftover from an interrupted run would be found instead of created.
    let _ = lib.unlink(&args.name);
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
        throughput(&lib, args.iterations)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn writer(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    let lib = library(dir, Callbacks::default())?;
    let flags = OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE;
    let ck = lib
        .open(&args.name, Some(&attrs()), flags, TIME_END)
        .map_err(|e| format!("writer: open failed: {e}"))?;
    println!(
        "Writer: checkpoint {} opened (instance {})",
        args.name,
        ck.instance()
    );
    // Give the reader the time to open and register its callback first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !ck.status().is_ok_and(|s| s.number_of_sections > 0) {
        std::thread::sleep(Duration::from_millis(2));
    }
    ck.create_section(Some(SECTION), TIME_END, b"")
        .map_err(|e| format!("writer: section create: {e}"))?;
    println!(
        "Writer: section {} created",
        String::from_utf8_lossy(SECTION)
    );
    ck.write(&[WriteElement {
        section_id: SECTION,
        offset: 0,
        data: TEXT,
    }])
    .map_err(|e| format!("writer: write: {e}"))?;
    println!(
        "Writer: wrote {} bytes: \"{}\"",
        TEXT.len(),
        String::from_utf8_lossy(TEXT)
    );
    match ck.synchronize(TIME_END) {
        // An ALL_REPLICAS checkpoint is synchronous: there is nothing to synchronize.
        Ok(()) | Err(ckpt_agent::Error::BadOperation) => println!("Writer: replicas in sync"),
        Err(e) => return Err(format!("writer: synchronize: {e}")),
    }
    // Keep the checkpoint open until the reader has read it.
    while Instant::now() < deadline && ck.read_vec(b"ack", 0).is_err() {
        std::thread::sleep(Duration::from_millis(2));
    }
    lib.unlink(&args.name)
        .map_err(|e| format!("writer: unlink: {e}"))?;
    ck.close().map_err(|e| format!("writer: close: {e}"))?;
    lib.finalize()
        .map_err(|e| format!("writer: finalize: {e}"))?;
    println!("Writer: checkpoint unlinked and closed");
    Ok(ExitCode::SUCCESS)
}

fn reader(dir: &Path, args: &Args) -> Result<ExitCode, String> {
    let lib = library(dir, Callbacks::default())?;
    let (tx, rx) = mpsc::channel();
    lib.register_arrival_callback(Box::new(move |_, elements| {
        for e in elements {
            let _ = tx.send((e.section_id.clone(), e.offset, e.size));
        }
    }))
    .map_err(|e| format!("reader: arrival callback: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let ck = loop {
        match lib.open(
            &args.name,
            None,
            OpenFlags::READ | OpenFlags::WRITE,
            TIME_END,
        ) {
            Ok(ck) => break ck,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("reader: open failed: {e}")),
        }
    };
    // Tell the writer the callback is in place (a section it waits for).
    ck.create_section(Some(b"ready"), TIME_END, b"")
        .map_err(|e| format!("reader: ready: {e}"))?;
    // Callbacks run in dispatch: here a thread dispatching until finalize.
    let lib = std::sync::Arc::new(lib);
    let dispatcher = {
        let lib = std::sync::Arc::clone(&lib);
        std::thread::spawn(move || lib.dispatch(DispatchFlags::Blocking))
    };
    let mut text = None;
    while text.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((id, offset, size)) = rx.recv_timeout(left) else {
            break;
        };
        println!(
            "Reader: arrival: section {} offset {offset} size {size}",
            String::from_utf8_lossy(&id)
        );
        if id == SECTION && size > 0 {
            let data = ck
                .read_vec(SECTION, 0)
                .map_err(|e| format!("reader: read failed: {e}"))?;
            text = Some(data);
        }
    }
    if text.is_some() {
        ck.create_section(Some(b"ack"), TIME_END, b"")
            .map_err(|e| format!("reader: ack: {e}"))?;
    }
    let _ = lib.finalize();
    let _ = dispatcher.join();
    let text = text.ok_or("reader: nothing arrived within 10 s")?;
    println!(
        "Reader: read {} bytes: \"{}\"",
        text.len(),
        String::from_utf8_lossy(&text)
    );
    if text != TEXT {
        return Err("reader: text differs from what the writer wrote".into());
    }
    Ok(ExitCode::SUCCESS)
}

fn throughput(lib: &Library, iterations: u64) -> Result<(), String> {
    let name = format!("safCkpt=ckpt-demo-throughput-{}", std::process::id());
    let flags = OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE;
    let ck = lib
        .open(&name, Some(&attrs()), flags, TIME_END)
        .map_err(|e| format!("throughput: open: {e}"))?;
    let data = vec![0x5au8; 4096];
    ck.create_section(Some(b"s"), TIME_END, &data)
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    for _ in 0..iterations {
        ck.overwrite(b"s", &data).map_err(|e| e.to_string())?;
    }
    let overwrite = t.elapsed().as_nanos() as f64 / iterations as f64;
    let mut buf = vec![0u8; 4096];
    let t = Instant::now();
    for _ in 0..iterations {
        ck.read_into(b"s", 0, &mut buf).map_err(|e| e.to_string())?;
    }
    let read = t.elapsed().as_nanos() as f64 / iterations as f64;
    let t = Instant::now();
    let mut sum = 0u64;
    for _ in 0..iterations {
        let g = ck.borrow(b"s").map_err(|e| e.to_string())?;
        sum += u64::from(g[0]);
    }
    let borrow = t.elapsed().as_nanos() as f64 / iterations as f64;
    std::hint::black_box(sum);
    println!("Data path through the API, 4 KiB section, {iterations} iterations, one thread:");
    println!(
        "  overwrite {overwrite:8.0} ns/op   read (copy-out) {read:8.0} ns/op   borrow (zero-copy) {borrow:6.0} ns/op"
    );
    println!(
        "  (`cargo run --release -p ckpt-bench --bin ratios` compares these with memcpy in /dev/shm)"
    );
    lib.unlink(&name).map_err(|e| e.to_string())?;
    ck.close().map_err(|e| e.to_string())?;
    Ok(())
}
