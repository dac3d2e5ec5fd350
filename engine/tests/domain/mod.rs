//! A private domain directory for one test (under /dev/shm when there is one), made
//! empty at the start and removed at the end. Shared by every engine test file (the
//! multi-process ones through `support`).

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::path::{Path, PathBuf};

/// A test's domain directory: `<root>/ckpt-<tag>-<pid>-<n>`. Never the same path twice in
/// one process: the engine caches a process's liveness lock by domain path, so in a
/// recreated directory this process would look dead to the others.
#[derive(Debug)]
pub(crate) struct Domain(pub(crate) PathBuf);

static DOMAINS: std::sync::Mutex<u32> = std::sync::Mutex::new(0);

impl Domain {
    pub(crate) fn new(tag: &str) -> Self {
        let root = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = {
            let mut n = DOMAINS.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let dir = root.join(format!("ckpt-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ckpt_engine::ensure_domain(&dir).expect("create the test domain");
        Self(dir)
    }

    /// The path of object `name` in the domain.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
