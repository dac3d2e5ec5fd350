//! Domains: the directory that holds one node's replica objects, registry and process
//! lock files. `CKPT_DIR` names it outright; otherwise it is `/dev/shm/ckpt/<CKPT_DOMAIN>`
//! (`default` when unset), so separate applications or test runs can keep apart.

use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use rustix::io::Errno;

/// The domain directory this process uses by default.
pub fn default_domain() -> PathBuf {
    if let Some(dir) = std::env::var_os("CKPT_DIR") {
        return PathBuf::from(dir);
    }
    let name = std::env::var("CKPT_DOMAIN").unwrap_or_else(|_| "default".to_owned());
    let name = if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        "default".to_owned()
    } else {
        name
    };
    PathBuf::from("/dev/shm/ckpt").join(name)
}

/// Creates `dir` (and its parent) with mode 0700 if missing. An existing directory must
/// be a real directory (not a symlink) owned by this user and not writable by others.
pub fn ensure_domain(dir: &Path) -> Result<(), i32> {
    if let Some(parent) = dir.parent() {
        make_dir(parent, 0o1777).or_else(|e| if parent.is_dir() { Ok(()) } else { Err(e) })?;
    }
    make_dir(dir, 0o700)?;
    let st = rustix::fs::lstat(dir).map_err(crate::error::errno)?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFDIR {
        return Err(libc::ENOTDIR);
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(libc::EACCES);
    }
    if st.st_mode & 0o022 != 0 {
        return Err(libc::EACCES);
    }
    Ok(())
}

fn make_dir(dir: &Path, mode: u32) -> Result<(), i32> {
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(mode)) {
        Ok(()) => {
            // mkdir applies the umask; set the intended mode exactly.
            let _ = rustix::fs::chmod(dir, Mode::from_raw_mode(mode));
            Ok(())
        }
        Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(crate::error::errno(e)),
    }
}
