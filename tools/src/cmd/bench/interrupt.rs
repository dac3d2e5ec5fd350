//! Ctrl-C and SIGTERM during `ckpt bench`: kill the child processes it started (the Redis
//! server) and remove its `/dev/shm` objects, then exit 130. A normal end and an error
//! path clean up by `Drop`; a signal would skip the destructors, so this does it instead.

use std::path::Path;
use std::sync::Mutex;

/// Pids of running children to kill on a signal.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Registers a child process to kill if the run is interrupted.
pub(super) fn register_child(pid: u32) {
    lock().push(pid);
}

/// Forgets a child (it was stopped normally).
pub(super) fn forget_child(pid: u32) {
    lock().retain(|p| *p != pid);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<u32>> {
    // A panic while holding the lock leaves a plain Vec in a usable state.
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts a thread that waits for SIGINT or SIGTERM, then cleans up and exits 130. Returns
/// once the handlers are installed (or could not be: then a signal kills as before).
pub(super) fn install() {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                let _ = ready_tx.send(());
                return;
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    let _ = ready_tx.send(());
                    return;
                };
                let _ = ready_tx.send(());
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                cleanup();
                eprintln!("\nckpt bench: interrupted; stopped the children, removed its objects");
                std::process::exit(130);
            });
        });
    if spawned.is_ok() {
        let _ = ready_rx.recv();
    }
}

/// Kills the registered children and removes this process's benchmark directories.
fn cleanup() {
    for pid in lock().drain(..) {
        if let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let pid = std::process::id();
    let prefixes = [
        format!("ckpt-bench-{pid}-"),
        format!("ckpt-{}-{pid}-", super::cluster::TAG),
    ];
    for root in [Path::new("/dev/shm").to_path_buf(), std::env::temp_dir()] {
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if prefixes
                .iter()
                .any(|p| name.to_str().is_some_and(|n| n.starts_with(p.as_str())))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
