//! How much `/dev/shm` a benchmark configuration may take on this machine.
//!
//! Three things bound it: the tmpfs's free space (`statvfs`), the memory cgroup's limit
//! minus its usage (tmpfs pages are charged to the cgroup of the process that faults them;
//! cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`, the smallest along the path to the
//! root), and `MemAvailable` (there is no swap for tmpfs pages to go to). The tightest of
//! them is the bound; a configuration runs only if it fits in half of it, so the rest of
//! the machine keeps room. A configuration that does not fit is skipped with the reason:
//! past these limits an arena is an OOM kill, not an error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cmd::format::size;

/// A memory cgroup limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// 1 or 2.
    pub version: u8,
    /// The cgroup directory the process is in.
    pub dir: PathBuf,
    /// The smallest limit along the path (`None`: unlimited).
    pub limit: Option<u64>,
    /// Bytes charged to the cgroup now.
    pub usage: Option<u64>,
}

/// The limits found, and the bound they make.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The tmpfs's size.
    pub shm_size: u64,
    /// Bytes an unprivileged process may still allocate in it.
    pub shm_free: u64,
    /// The memory cgroup, when one was found.
    pub cgroup: Option<Cgroup>,
    /// `MemAvailable` from /proc/meminfo.
    pub mem_available: Option<u64>,
}

impl Limits {
    /// Reads the limits for objects in `shm` (normally `/dev/shm`).
    pub fn probe(shm: &Path) -> std::io::Result<Self> {
        let vfs = rustix::fs::statvfs(shm)?;
        Ok(Self {
            shm_size: vfs.f_blocks.saturating_mul(vfs.f_frsize),
            shm_free: vfs.f_bavail.saturating_mul(vfs.f_frsize),
            cgroup: memory_cgroup(),
            mem_available: mem_available(),
        })
    }

    /// The tightest limit: its name and its bytes.
    pub fn bound(&self) -> (&'static str, u64) {
        let mut bound = ("/dev/shm free space", self.shm_free);
        if let Some(Cgroup {
            version,
            limit: Some(limit),
            usage,
            ..
        }) = &self.cgroup
        {
            let room = limit.saturating_sub(usage.unwrap_or(0));
            if room < bound.1 {
                let name = if *version == 2 {
                    "cgroup v2 memory.max less memory.current"
                } else {
                    "cgroup v1 memory.limit_in_bytes less memory.usage_in_bytes"
                };
                bound = (name, room);
            }
        }
        if let Some(avail) = self.mem_available
            && avail < bound.1
        {
            bound = ("MemAvailable", avail);
        }
        bound
    }

    /// Bytes one configuration may take: half the bound.
    pub fn budget(&self) -> u64 {
        self.bound().1 / 2
    }

    /// `Ok` when `bytes` fit the budget, else why not.
    pub fn fits(&self, bytes: u64) -> Result<(), String> {
        if bytes <= self.budget() {
            Ok(())
        } else {
            let (name, bound) = self.bound();
            Err(format!(
                "needs about {} of /dev/shm, more than half of the {} bound ({})",
                size(bytes),
                name,
                size(bound)
            ))
        }
    }

    /// One paragraph for people: each limit, the bound and the budget.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "/dev/shm: tmpfs {}, {} free",
            size(self.shm_size),
            size(self.shm_free)
        );
        match &self.cgroup {
            Some(c) => {
                let file = if c.version == 2 {
                    "memory.max"
                } else {
                    "memory.limit_in_bytes"
                };
                let limit = c.limit.map_or("unlimited".to_owned(), size);
                let _ = write!(
                    s,
                    "; cgroup v{} {} ({}): {limit}",
                    c.version,
                    file,
                    c.dir.display()
                );
                if let Some(u) = c.usage {
                    let _ = write!(s, ", {} in use", size(u));
                }
            }
            None => s.push_str("; no memory cgroup found"),
        }
        if let Some(a) = self.mem_available {
            let _ = write!(s, "; MemAvailable {}", size(a));
        }
        let (name, bound) = self.bound();
        let _ = write!(
            s,
            ". Bound by {name} ({}); a configuration may take up to half: {}",
            size(bound),
            size(self.budget())
        );
        s
    }
}

/// `MemAvailable` in bytes.
fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory cgroup of this process: v1 when a v1 memory hierarchy is mounted (it is the
/// one that accounts memory then), else v2.
fn memory_cgroup() -> Option<Cgroup> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mounts = parse_mountinfo(&mountinfo);
    let v1 = own.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_owned())
    });
    if let Some(path) = v1
        && let Some(m) = mounts.iter().find(|m| m.fstype == "cgroup" && m.memory)
    {
        return Some(read_cgroup(
            1,
            m,
            &path,
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
        ));
    }
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let m = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    let found = read_cgroup(2, m, path, "memory.max", "memory.current");
    // A v2 hierarchy without the memory controller has no memory.max anywhere.
    (found.limit.is_some() || found.usage.is_some()).then_some(found)
}

#[derive(Debug, PartialEq, Eq)]
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    memory: bool,
}

/// The cgroup mounts of a `/proc/self/mountinfo`.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let post: Vec<&str> = post.split_whitespace().collect();
            let fstype = (*post.first()?).to_owned();
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                root: (*pre.get(3)?).to_owned(),
                point: PathBuf::from(pre.get(4)?),
                memory: post
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == "memory")),
                fstype,
            })
        })
        .collect()
}

/// The smallest `limit_file` from the process's cgroup up to the mount's root, and the
/// usage of the deepest existing directory.
fn read_cgroup(version: u8, m: &Mount, path: &str, limit_file: &str, usage_file: &str) -> Cgroup {
    let rel = path
        .strip_prefix(m.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    let mut dir = m.point.join(rel);
    // Inside a container the process's path may not exist under the mount.
    while !dir.is_dir() && dir.starts_with(&m.point) && dir != m.point {
        dir.pop();
    }
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).ok();
    let usage = read(&dir, usage_file).and_then(|s| s.trim().parse().ok());
    let mut limit: Option<u64> = None;
    let mut at = dir.clone();
    loop {
        if let Some(l) = read(&at, limit_file).and_then(|s| parse_limit(&s)) {
            limit = Some(limit.map_or(l, |x| x.min(l)));
        }
        if at == m.point || !at.pop() || !at.starts_with(&m.point) {
            break;
        }
    }
    Cgroup {
        version,
        dir,
        limit,
        usage,
    }
}

/// A limit file's value; `None` for no limit (`max`, or v1's page-rounded `i64::MAX`).
fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let v: u64 = text.parse().ok()?;
    (v < 1 << 62).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_yields_the_cgroup_mounts() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 /ctr /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let sut = parse_mountinfo(text);
        assert_eq!(sut.len(), 2);
        assert!(sut[0].memory && sut[0].fstype == "cgroup");
        assert_eq!(sut[1].root, "/ctr");
        assert_eq!(sut[1].point, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unlimited_values_are_none() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("1073741824\n"), Some(1 << 30));
    }

    #[test]
    fn the_tightest_limit_bounds_and_half_of_it_is_the_budget() {
        let mut sut = Limits {
            shm_size: 8 << 30,
            shm_free: 8 << 30,
            cgroup: Some(Cgroup {
                version: 2,
                dir: PathBuf::from("/sys/fs/cgroup/x"),
                limit: Some(4 << 30),
                usage: Some(1 << 30),
            }),
            mem_available: Some(16 << 30),
        };
        assert_eq!(
            sut.bound(),
            ("cgroup v2 memory.max less memory.current", 3 << 30)
        );
        assert_eq!(sut.budget(), 3 << 29);
        assert!(sut.fits(1 << 30).is_ok());
        assert!(sut.fits(2 << 30).unwrap_err().contains("cgroup v2"));
        sut.mem_available = Some(1 << 30);
        assert_eq!(sut.bound().0, "MemAvailable");
        assert!(sut.describe().contains("Bound by MemAvailable"));
    }

    #[test]
    fn this_machine_has_limits() {
        let sut = Limits::probe(Path::new("/dev/shm")).unwrap();
        assert!(sut.shm_size > 0 && sut.budget() > 0, "{}", sut.describe());
    }
}
