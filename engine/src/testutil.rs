//! Helpers for unit tests: private domain directories under /dev/shm, small heap replicas.

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

/// A heap-backed replica of two sections of at most 32 bytes (8-byte ids, a budget of 64).
pub(crate) fn small_replica() -> crate::Replica {
    let attrs = crate::ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 64,
        retention_ns: 0,
        max_sections: 2,
        max_section_size: 32,
        max_section_id_size: 8,
    };
    crate::Replica::create_in_memory(&attrs, &crate::ReplicaLimits::default())
        .expect("a heap replica")
}
