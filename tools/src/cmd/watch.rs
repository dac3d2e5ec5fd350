//! `ckpt watch NAME`: the checkpoint's changes as they commit, one line each, from the
//! replica's change journal — the same arrival notification the hot-standby callback
//! uses: the watcher sleeps on the replica's futex and writers wake it, no polling.
//!
//! On a ckptd node without a replica of the checkpoint, the watch goes through the node's
//! ckptd (`--socket`, or `CKPT_CLUSTER_SOCKET`): it opens the checkpoint for reading and
//! prints what the arrival callback reports (the primary's journal, through ckptd), which
//! names the section, offset and size of each change, not its seq, kind or time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_agent::{ArrivalElement, CLUSTER_SOCKET_ENV, DispatchFlags, OpenFlags};
use ckpt_engine::{Change, ChangeKind, Changes};
use serde::Serialize;

use super::Error;
use super::format;
use super::inspect::Domain;

/// `ckpt watch` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint's name (or its replica object's file name).
    pub name: String,
    /// Stop after this many changes.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Start after this journal seq instead of now (`0`: whatever the journal still holds).
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Watch through this ckptd agent socket when this node holds no replica of the
    /// checkpoint (cluster mode; default: $CKPT_CLUSTER_SOCKET).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// How long one wait on the replica lasts before the watcher looks at Ctrl-C and at
/// whether the checkpoint still exists.
const WAIT: Duration = Duration::from_millis(200);
/// Changes read from the journal at a time.
const BATCH: usize = 256;

#[derive(Serialize)]
struct ChangeJson {
    seq: u64,
    kind: &'static str,
    /// Display form of the section id; `null` when that section has since been deleted
    /// or recreated (the change is superseded).
    section: Option<String>,
    section_hex: Option<String>,
    offset: u64,
    size: u64,
    time_ns: i64,
    /// `expiration` changes only: the new time (ns since the epoch; `null` for never).
    expiration_ns: Option<i64>,
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Create => "create",
        ChangeKind::Delete => "delete",
        ChangeKind::Overwrite => "overwrite",
        ChangeKind::Write => "write",
        ChangeKind::Expiration => "expiration",
    }
}

fn line(c: &Change, json: bool) -> Result<String, Error> {
    let new_expiration = (c.kind == ChangeKind::Expiration
        && c.expiration != ckpt_engine::TIME_END)
        .then_some(c.expiration);
    if json {
        let j = ChangeJson {
            seq: c.seq,
            kind: kind_name(c.kind),
            section: c.id.as_deref().map(format::section_id),
            section_hex: c.id.as_deref().map(format::hex),
            offset: c.offset,
            size: c.len,
            time_ns: c.time,
            expiration_ns: new_expiration,
        };
        return serde_json::to_string(&j).map_err(|e| Error::Output(e.into()));
    }
    let mut text = format!(
        "seq={} kind={} section={} offset={} size={} time={}",
        c.seq,
        kind_name(c.kind),
        c.id.as_deref()
            .map_or_else(|| "?".to_owned(), format::section_id),
        c.offset,
        c.len,
        format::time(c.time)
    );
    if c.kind == ChangeKind::Expiration {
        let when = new_expiration.map_or_else(|| "never".to_owned(), format::time);
        text.push_str(&format!(" expiration={when}"));
    }
    Ok(text)
}

/// A flag raised by SIGINT or SIGTERM, so the watch ends cleanly (its agent record in the
/// replica released) rather than by the default action.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let spawned = std::thread::Builder::new()
        .name("ckpt-signals".into())
        .spawn(move || {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let signalled = rt.block_on(async {
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return false;
                };
                tokio::select! {
                    _ = int.recv() => true,
                    _ = term.recv() => true,
                }
            });
            if signalled {
                flag.store(true, Ordering::SeqCst);
            }
        });
    // Without the thread Ctrl-C still ends the watch, by the default action.
    drop(spawned);
    stop
}

/// Streams the changes of checkpoint `args.name` to `out` until Ctrl-C, `--count`
/// changes, or the checkpoint's deletion (exit 1).
pub fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let domain = Domain::open(dir)?;
    let socket = args
        .socket
        .clone()
        .or_else(|| std::env::var_os(CLUSTER_SOCKET_ENV).map(PathBuf::from));
    let ck = match domain.find(&args.name) {
        Ok(ck) => ck,
        // The node may not know it yet: its ckptd asks the cluster.
        Err(Error::NotFound(_)) if args.since.is_none() && socket.is_some() => {
            return through_ckptd(socket.as_deref().expect("checked"), &args.name, args, out);
        }
        Err(e) => return Err(e),
    };
    let shown = ck.display_name();
    let replica = match ck.attach(&domain) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            return Err(Error::NotFound(format!(
                "{shown}: {e}; `ckpt fsck` checks it"
            )));
        }
        None => {
            let Some(socket) = socket else {
                return Err(Error::NotFound(format!(
                    "{shown} has no replica on this node; watch it on a node that has one \
                     (`ckpt show {shown}` lists them), or through this node's ckptd: pass \
                     --socket PATH (`socket` in the cluster file) or set {CLUSTER_SOCKET_ENV}"
                )));
            };
            if args.since.is_some() {
                return Err(Error::Usage(format!(
                    "--since reads a replica's journal, and this node holds no replica of \
                     {shown}; watch without it, or on a node that has one"
                )));
            }
            return through_ckptd(&socket, &args.name, args, out);
        }
    };
    let object = ck.object.as_deref().map(|o| dir.join(o));
    let stop = stop_flag();
    let mut after = args.since.unwrap_or_else(|| replica.commit_seq());
    eprintln!(
        "watching {shown} (instance {}) after seq {after}; Ctrl-C stops",
        ck.instance
    );
    let mut seen = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    let mut checked = Instant::now();
    while args.count.is_none_or(|n| seen < n) && !stop.load(Ordering::SeqCst) {
        batch.clear();
        let want = args.count.map_or(BATCH, |n| {
            usize::try_from(n - seen).unwrap_or(BATCH).min(BATCH)
        });
        match replica.changes_since(after, &mut batch, want) {
            Changes::UpTo(seq) => after = seq,
            Changes::Resync(seq) => {
                eprintln!(
                    "ckpt: the journal wrapped past this watch: changes up to seq {seq} were \
                     missed (read the sections with `ckpt show {shown}`)"
                );
                after = seq;
            }
        }
        for c in &batch {
            writeln!(out, "{}", line(c, args.json)?)?;
            seen += 1;
        }
        out.flush()?;
        if !batch.is_empty() {
            continue;
        }
        if replica.wait_for_changes(after, WAIT) && replica.commit_seq() > after {
            // A change is claimed but still being written: give its writer a moment.
            std::thread::sleep(Duration::from_millis(1));
        }
        if checked.elapsed() >= Duration::from_secs(1) {
            checked = Instant::now();
            if object.as_ref().is_some_and(|o| !o.exists()) {
                eprintln!("ckpt: {shown} was deleted; the watch ends");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct ArrivalJson {
    kind: &'static str,
    section: String,
    section_hex: String,
    offset: u64,
    size: u64,
}

fn arrival_line(e: &ArrivalElement, json: bool) -> Result<String, Error> {
    if json {
        let j = ArrivalJson {
            kind: "arrival",
            section: format::section_id(&e.section_id),
            section_hex: format::hex(&e.section_id),
            offset: e.offset,
            size: e.size,
        };
        return serde_json::to_string(&j).map_err(|e| Error::Output(e.into()));
    }
    Ok(format!(
        "kind=arrival section={} offset={} size={}",
        format::section_id(&e.section_id),
        e.offset,
        e.size
    ))
}

/// Watches `name` through the ckptd at `socket`: an open for reading with an arrival
/// callback, dispatched on a thread of its own, until Ctrl-C or `--count` arrivals.
fn through_ckptd(
    socket: &Path,
    name: &str,
    args: &Args,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    let lib = super::rm::ckptd_library(socket)?;
    let (tx, rx) = mpsc::channel();
    lib.register_arrival_callback(Box::new(move |_, elements| {
        for e in elements {
            let _ = tx.send(e.clone());
        }
    }))
    .map_err(|e| Error::System(format!("ckptd refused the arrival callback: {e}")))?;
    let ck = match lib.open(name, None, OpenFlags::READ, 10 * 1_000_000_000) {
        Ok(ck) => ck,
        Err(ckpt_agent::Error::NotExist) => {
            return Err(Error::NotFound(format!(
                "no checkpoint named {name:?} in the cluster of {}",
                socket.display()
            )));
        }
        Err(e) => return Err(Error::System(format!("ckptd refused the open: {e}"))),
    };
    eprintln!(
        "watching {name} through ckptd at {} (no replica on this node); Ctrl-C stops",
        socket.display()
    );
    let lib = Arc::new(lib);
    let dispatcher = {
        let lib = Arc::clone(&lib);
        std::thread::spawn(move || lib.dispatch(DispatchFlags::Blocking))
    };
    let stop = stop_flag();
    let mut seen = 0u64;
    let mut result = Ok(ExitCode::SUCCESS);
    while args.count.is_none_or(|n| seen < n) && !stop.load(Ordering::SeqCst) {
        match rx.recv_timeout(WAIT) {
            Ok(e) => {
                let written = arrival_line(&e, args.json).and_then(|l| {
                    writeln!(out, "{l}")
                        .and_then(|()| out.flush())
                        .map_err(Error::from)
                });
                if let Err(e) = written {
                    result = Err(e);
                    break;
                }
                seen += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = ck.close();
    // Ends the dispatcher's blocking dispatch.
    let _ = lib.finalize();
    let _ = dispatcher.join();
    result
}
