//! A private domain directory for one test (under /dev/shm when there is one), made
//! empty at the start and removed at the end. Shared by the single-process test files.

use std::path::{Path, PathBuf};

/// A test's domain directory: `<root>/ckpt-<suite>-<tag>-<pid>`.
pub(crate) struct Domain(pub(crate) PathBuf);

impl Domain {
    pub(crate) fn new(suite: &str, tag: &str) -> Self {
        let root = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = root.join(format!("ckpt-{suite}-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ckpt_engine::ensure_domain(&dir).expect("create the test domain");
        Self(dir)
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
