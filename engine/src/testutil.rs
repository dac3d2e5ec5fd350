//! Helpers for unit tests: private domain directories under /dev/shm.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

static N: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty domain directory (mode 0700) unique to this test run.
pub(crate) fn temp_domain() -> PathBuf {
    let base = std::env::temp_dir();
    let shm = PathBuf::from("/dev/shm");
    let root = if shm.is_dir() { shm } else { base };
    let dir = root.join(format!(
        "ckpt-unit-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    crate::domain::ensure_domain(&dir).expect("create test domain");
    dir
}
