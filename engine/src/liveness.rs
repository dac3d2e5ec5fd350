//! Process liveness without PID polling: every process that uses a domain holds an
//! exclusive `flock` on its own lock file `<domain>/procs/<token>.lock` for as long as it
//! lives. The kernel drops the lock when the process dies, even by SIGKILL, so "can I take
//! the lock?" answers "is it dead?" exactly, across PID namespaces and PID reuse.
//!
//! Tokens are random 32-bit values made unique by creating the file exclusively; the file
//! is locked under a temporary name and renamed into place, so a sweeper never sees a live
//! token's file unlocked. A forked child shares its parent's open file description, which
//! would keep the parent "alive": an `atfork` handler closes the inherited descriptors in
//! the child, which then registers its own token on first use.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64 as ProcessCounter, Ordering};
use std::sync::{Arc, Mutex, Once};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::errno;

/// This process's registration in one domain.
#[derive(Debug)]
pub(crate) struct ProcessLock {
    token: u32,
    _fd: OwnedFd,
}

impl ProcessLock {
    pub(crate) fn token(&self) -> u32 {
        self.token
    }
}

const MAX_FDS: usize = 256;
static LOCK_FDS: [AtomicI32; MAX_FDS] = [const { AtomicI32::new(-1) }; MAX_FDS];
static FORK_EPOCH: ProcessCounter = ProcessCounter::new(0);
static ATFORK: Once = Once::new();
/// This process's locks by domain, with the fork epoch each was taken in.
type LockMap = HashMap<PathBuf, (u64, Arc<ProcessLock>)>;
static LOCKS: Mutex<Option<LockMap>> = Mutex::new(None);

extern "C" fn after_fork_in_child() {
    // Only async-signal-safe work here: close inherited lock descriptors, bump the epoch.
    for slot in &LOCK_FDS {
        let fd = slot.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: `fd` was recorded by `register_fd` from an `OwnedFd` this process
            // (our parent, before the fork) holds; in the child nobody else uses it, and
            // the `OwnedFd` copy in the registry is forgotten below before it can close it.
            unsafe {
                libc::close(fd);
            }
        }
    }
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// How many forks this process has been through (0 in the original process).
pub(crate) fn fork_epoch() -> u64 {
    FORK_EPOCH.load(Ordering::Relaxed)
}

fn install_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registering a plain `extern "C"` handler that only does
        // async-signal-safe work; the pointer stays valid for the program's life.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

fn register_fd(fd: i32) {
    for slot in &LOCK_FDS {
        if slot
            .compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

fn unregister_fd(fd: i32) {
    for slot in &LOCK_FDS {
        if slot
            .compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

fn procs_dir(domain: &Path) -> PathBuf {
    domain.join("procs")
}

fn lock_path(domain: &Path, token: u32) -> PathBuf {
    procs_dir(domain).join(format!("{token:08x}.lock"))
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u32::from_ne_bytes(b)
}

/// This process's lock in `domain`, registering on first use (and again after a fork).
pub(crate) fn process_lock(domain: &Path) -> Result<Arc<ProcessLock>, i32> {
    install_atfork();
    let epoch = fork_epoch();
    let mut guard = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some((e, lock)) = map.get(domain) {
        if *e == epoch {
            return Ok(lock.clone());
        }
        // Inherited across fork: the descriptor was closed by the atfork handler; make
        // sure dropping the stale entry does not close a recycled number.
        if let Some((_, stale)) = map.remove(domain)
            && let Ok(stale) = Arc::try_unwrap(stale)
        {
            core::mem::forget(stale);
        }
    }
    let lock = Arc::new(new_lock(domain)?);
    map.insert(domain.to_path_buf(), (epoch, lock.clone()));
    Ok(lock)
}

fn new_lock(domain: &Path) -> Result<ProcessLock, i32> {
    let dir = procs_dir(domain);
    match rustix::fs::mkdir(&dir, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(errno(e)),
    }
    for _ in 0..64 {
        let token = random_u32();
        if token == 0 {
            continue;
        }
        let tmp = dir.join(format!(".tmp-{token:08x}-{}", std::process::id()));
        let fd: OwnedFd = match rustix::fs::open(
            &tmp,
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(errno(e)),
        };
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).map_err(errno)?;
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            lock_path(domain, token),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {
                register_fd(fd.as_raw_fd());
                return Ok(ProcessLock { token, _fd: fd });
            }
            Err(Errno::EXIST | Errno::NOENT) => {
                let _ = rustix::fs::unlink(&tmp);
                continue;
            }
            Err(e) => {
                let _ = rustix::fs::unlink(&tmp);
                return Err(errno(e));
            }
        }
    }
    Err(libc::EAGAIN)
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        unregister_fd(self._fd.as_raw_fd());
    }
}

/// Whether the process that registered `token` in `domain` is alive. A missing file means
/// dead (its process exited, or a sweeper removed a dead lock).
pub(crate) fn is_alive(domain: &Path, token: u32) -> bool {
    if token == 0 {
        return false;
    }
    let fd: OwnedFd = match rustix::fs::open(
        lock_path(domain, token),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return false,
        // Cannot tell (fd exhaustion, permissions): assume alive, never steal.
        Err(_) => return true,
    };
    // Dropping `fd` releases the shared lock if we got it.
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
        Ok(()) => false,
        Err(Errno::WOULDBLOCK) => true,
        Err(_) => true,
    }
}

/// Removes the lock files of dead processes (and stale temporaries). Returns how many.
pub(crate) fn sweep(domain: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(procs_dir(domain)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(fd) = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok() {
            // Holding the lock, nobody can be mid-registration under this name.
            if rustix::fs::unlink(&path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_token_is_alive_and_unknown_token_is_dead() {
        let dir = crate::testutil::temp_domain();
        let lock = process_lock(&dir).unwrap();
        assert!(is_alive(&dir, lock.token()));
        assert!(!is_alive(&dir, lock.token() ^ 0x5555_5555));
        assert_eq!(process_lock(&dir).unwrap().token(), lock.token());
    }

    #[test]
    fn sweep_keeps_live_locks_and_removes_dead_ones() {
        let dir = crate::testutil::temp_domain();
        let lock = process_lock(&dir).unwrap();
        // A dead process's lock file: present but unlocked.
        let dead = lock_path(&dir, 0x0bad_0bad);
        std::fs::write(&dead, b"").unwrap();
        assert_eq!(sweep(&dir), 1);
        assert!(!dead.exists());
        assert!(is_alive(&dir, lock.token()));
    }
}
