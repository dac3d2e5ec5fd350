//! Shared helpers of the conformance tests (`conformance_*.rs`): a private domain per
//! test, creation attributes, bounded polling, the selection object's readiness and child
//! processes.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unreachable_pub)]

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ckpt_agent::{
    Callbacks, Checkpoint, Config, CreationAttributes, CreationFlags, Library, OpenFlags, TIME_END,
    Version,
};

/// A checkpoint name valid for every client version.
pub const NAME: &str = "safCkpt=conformance";
/// Another one.
pub const OTHER: &str = "safCkpt=other";
/// `SA_TIME_ONE_MILLISECOND`.
pub const MS: i64 = 1_000_000;
/// `SA_TIME_ONE_MINUTE`.
pub const MINUTE: i64 = 60_000_000_000;
/// READ | WRITE.
pub const RW: OpenFlags = OpenFlags(OpenFlags::READ.0 | OpenFlags::WRITE.0);
/// CREATE | READ | WRITE.
pub const CRW: OpenFlags = OpenFlags(OpenFlags::CREATE.0 | RW.0);
/// The environment variable that turns a test into the child half of a two-process test
/// (its value is the domain directory).
pub const CHILD: &str = "CKPT_CONFORMANCE_CHILD";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A domain directory of its own (`/dev/shm/ckpt-test-<pid>-<n>`), removed on drop.
/// Declare it first in a test so that it drops after every handle.
#[derive(Debug)]
pub struct Domain {
    path: PathBuf,
}

impl Domain {
    pub fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = PathBuf::from(format!("/dev/shm/ckpt-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> Config {
        config_at(&self.path)
    }

    /// A library handle without callbacks.
    pub fn lib(&self, version: Version) -> Library {
        self.lib_with(version, Callbacks::default())
    }

    /// A library handle with callbacks.
    pub fn lib_with(&self, version: Version, callbacks: Callbacks) -> Library {
        Library::initialize_with(self.config(), version, callbacks).expect("initialize")
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The configuration of the domain at `path`.
pub fn config_at(path: &Path) -> Config {
    Config {
        domain: path.to_path_buf(),
        ..Config::default()
    }
}

/// WR_ACTIVE_REPLICA, `max_sections` sections of 1 KiB each (all usable), ids of 16 bytes
/// at most, retained a minute.
pub fn attrs(max_sections: u32) -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA,
        checkpoint_size: u64::from(max_sections) * 1024,
        retention_duration: MINUTE,
        max_sections,
        max_section_size: 1024,
        max_section_id_size: 16,
    }
}

/// [`attrs`] with other creation flags.
pub fn attrs_flags(max_sections: u32, flags: CreationFlags) -> CreationAttributes {
    CreationAttributes {
        creation_flags: flags,
        ..attrs(max_sections)
    }
}

/// [`attrs`] with another retention duration.
pub fn attrs_retention(max_sections: u32, retention: i64) -> CreationAttributes {
    CreationAttributes {
        retention_duration: retention,
        ..attrs(max_sections)
    }
}

/// Opens `name` with CREATE | READ | WRITE.
pub fn create(lib: &Library, name: &str, a: &CreationAttributes) -> Checkpoint {
    lib.open(name, Some(a), CRW, TIME_END)
        .expect("open with CREATE")
}

/// Opens an existing `name` with `flags` (no CREATE).
pub fn open(lib: &Library, name: &str, flags: OpenFlags) -> Checkpoint {
    lib.open(name, None, flags, TIME_END)
        .expect("open without CREATE")
}

/// Now, as an absolute `SaTimeT` (ns since the epoch).
pub fn now() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_nanos()).expect("clock before 2262")
}

/// The longest any test waits for something that must happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `cond` every few milliseconds until it holds; panics after [`PATIENCE`].
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the selection object `fd` of this process polls readable right now. The fd is
/// duplicated through `pidfd_getfd` (a safe way to get an owned descriptor for a raw
/// one; the duplicate shares the eventfd, so it has the same readiness).
pub fn readable(fd: RawFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let me = pidfd_open(getpid(), PidfdFlags::empty()).expect("pidfd_open");
    let dup = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()).expect("pidfd_getfd");
    let mut fds = [PollFd::new(&dup, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let n = poll(&mut fds, Some(&zero)).expect("poll");
    n == 1 && fds[0].revents().contains(PollFlags::IN)
}

/// Waits until the library's selection object polls readable.
pub fn wait_readable(lib: &Library) {
    let fd = lib.selection_object().expect("selection object");
    eventually("selection object readable", || readable(fd));
}

/// Runs the test `name` of this test binary in a child process, with [`CHILD`] set to
/// `domain`; returns its exit status.
pub fn run_child(name: &str, domain: &Path) -> ExitStatus {
    let exe = std::env::current_exe().expect("test binary");
    Command::new(exe)
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(CHILD, domain)
        .status()
        .expect("spawn child")
}

/// In a child started by [`run_child`]: its domain.
pub fn child_domain() -> Option<PathBuf> {
    std::env::var_os(CHILD).map(PathBuf::from)
}

/// Runs `f` on another thread and returns its result; panics if it does not return within
/// [`PATIENCE`] (a hang).
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("did not return: {what}"))
}

/// Whether the replica object of checkpoint instance `instance` is still in the domain
/// (engine layout: `<domain>/r-<instance as 16 hex digits>`): how a test sees that a
/// checkpoint nobody can name any more was deleted.
pub fn replica_exists(domain: &Path, instance: u64) -> bool {
    domain.join(format!("r-{instance:016x}")).exists()
}
