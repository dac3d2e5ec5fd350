//! Where a node keeps its replica objects: files in its shm directory (the daemon),
//! sealed memfds that only the daemon and its agents hold (the daemon with `sealed =
//! true`), or heap-backed replicas in a map (simulations and tests, where several
//! simulated hosts share one process and must not share a directory).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ckpt_engine::{Clock, CreateError, CreateOptions, Replica, ReplicaAttributes, Sharing};

/// A node's replica objects.
#[derive(Clone, Debug)]
pub enum Store {
    /// Objects in this shm directory, which agents map too.
    Shm(PathBuf),
    /// Sealed memfds (engine/DESIGN.md §23.1): agents get them as descriptors over the
    /// agent socket, and a restarted daemon takes them back from its agents.
    Sealed(SealedStore),
    /// Heap-backed replicas, by object name; the map is shared with whoever made it.
    Memory(MemoryStore),
}

/// A sealed node's replicas, by object name. Nothing names them outside this map: the
/// directory keeps only the daemon's files (directory state, sessions, the sealed marker)
/// and the processes' liveness locks. What they may take of shared memory is bounded the
/// way files in the directory would be: all of them together, plus what the directory's
/// file system holds, stay within that file system's size (a `size=` tmpfs keeps bounding
/// the node's replicas, although memfds are not in it).
#[derive(Clone, Debug)]
pub struct SealedStore {
    dir: PathBuf,
    objects: Arc<Mutex<BTreeMap<String, Arc<Replica>>>>,
}

impl SealedStore {
    /// An empty store whose liveness locks and files live in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            objects: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Replica>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `needed` more bytes fit the budget (module docs).
    fn fits(&self, objects: &BTreeMap<String, Arc<Replica>>, needed: u64) -> bool {
        let Ok(st) = rustix::fs::statvfs(&self.dir) else {
            return true;
        };
        if st.f_blocks == 0 {
            return true; // a tmpfs without a size limit
        }
        let size = st.f_blocks.saturating_mul(st.f_frsize);
        let files = st
            .f_blocks
            .saturating_sub(st.f_bfree)
            .saturating_mul(st.f_frsize);
        let held: u64 = objects.values().map(|r| r.object_size()).sum();
        files.saturating_add(held).saturating_add(needed) <= size
    }
}

/// The file, in a sealed node's shm directory, that says so: it holds the agent socket
/// where `ckpt` asks ckptd for the replicas' descriptors.
pub const SEALED_FILE: &str = "ckptd.sealed";

/// Heap-backed replicas by object name, shared between a node and its test harness.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<String, Arc<Replica>>>>,
    /// The directory's durable state (see [`Store::save_directory`]).
    directory: Arc<Mutex<Option<Vec<u8>>>>,
    clock: Option<Clock>,
}

/// The file, in the shm directory, that keeps the directory's durable state across a
/// restart of the daemon (not of the node: it is on the tmpfs).
pub const DIRECTORY_FILE: &str = "ckptd.directory";

impl MemoryStore {
    /// An empty store whose replicas read the wall clock through `clock` (a simulation's
    /// clock), or the system's when `None`.
    pub fn new(clock: Option<Clock>) -> Self {
        Self {
            objects: Arc::default(),
            directory: Arc::default(),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Replica>>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica of cluster instance `instance`, if this node holds one.
    pub fn replica(&self, instance: u64) -> Option<Arc<Replica>> {
        self.lock().get(&super::object_name(instance)).cloned()
    }

    /// The instances this store holds a replica of.
    pub fn instances(&self) -> Vec<u64> {
        self.lock()
            .keys()
            .filter_map(|n| parse_object_name(n))
            .collect()
    }
}

/// The cluster instance an object name stands for (`c` and 16 hex digits).
pub fn parse_object_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix('c')?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl Store {
    /// Keeps the directory's durable state (its table, the terms it voted and followed)
    /// so that a restarted daemon neither forgets decisions a majority acknowledged nor
    /// votes twice in a term. Written whole and renamed into place.
    pub fn save_directory(&self, state: &[u8]) -> Result<(), String> {
        match self {
            Self::Shm(dir) | Self::Sealed(SealedStore { dir, .. }) => {
                let tmp = dir.join(format!("{DIRECTORY_FILE}.new"));
                std::fs::write(&tmp, state)
                    .and_then(|()| std::fs::rename(&tmp, dir.join(DIRECTORY_FILE)))
                    .map_err(|e| format!("{}: {e}", tmp.display()))
            }
            Self::Memory(m) => {
                *m.directory.lock().unwrap_or_else(|p| p.into_inner()) = Some(state.to_vec());
                Ok(())
            }
        }
    }

    /// The directory state [`Store::save_directory`] kept, if any.
    pub fn load_directory(&self) -> Option<Vec<u8>> {
        match self {
            Self::Shm(dir) | Self::Sealed(SealedStore { dir, .. }) => {
                std::fs::read(dir.join(DIRECTORY_FILE)).ok()
            }
            Self::Memory(m) => m
                .directory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// The directory agents map replicas from (sealed: where the liveness locks are;
    /// empty for a memory store).
    pub fn dir(&self) -> &Path {
        match self {
            Self::Shm(d) | Self::Sealed(SealedStore { dir: d, .. }) => d,
            Self::Memory(_) => Path::new(""),
        }
    }

    /// The directory where the daemon keeps its own files (`None` for a memory store).
    pub fn files_dir(&self) -> Option<&Path> {
        match self {
            Self::Shm(d) | Self::Sealed(SealedStore { dir: d, .. }) => Some(d),
            Self::Memory(_) => None,
        }
    }

    /// Whether replicas are sealed memfds, passed to agents as descriptors.
    pub fn is_sealed(&self) -> bool {
        matches!(self, Self::Sealed(_))
    }

    /// Maps an existing object.
    pub fn attach(&self, name: &str) -> Result<Arc<Replica>, String> {
        match self {
            Self::Shm(d) => Replica::attach(d, name, Sharing::default())
                .map(Arc::new)
                .map_err(|e| e.to_string()),
            Self::Sealed(s) => s.lock().get(name).cloned().ok_or_else(|| "absent".into()),
            Self::Memory(m) => m.lock().get(name).cloned().ok_or_else(|| "absent".into()),
        }
    }

    /// Takes back a sealed replica an agent held across a restart of the daemon. The
    /// descriptor is untrusted: it must be sealed, hold a valid replica of exactly the
    /// instance `name` stands for, and, if the store has that object already, be the
    /// same object. Returns the store's replica.
    pub fn adopt(&self, name: &str, fd: OwnedFd) -> Result<Arc<Replica>, String> {
        let Self::Sealed(s) = self else {
            return Err("this node keeps no sealed replicas".into());
        };
        let instance = parse_object_name(name).ok_or("not a replica object name")?;
        if let Some(have) = s.lock().get(name).cloned() {
            return match have.sealed_fd() {
                Some(mine) if same_object(mine, &fd) => Ok(have),
                _ => Err("another object than the one this node holds".into()),
            };
        }
        let r = Replica::attach_fd(&s.dir, fd).map_err(|e| e.to_string())?;
        if r.instance() != instance {
            return Err(format!(
                "it holds instance {:#x}, not {instance:#x}",
                r.instance()
            ));
        }
        let r = Arc::new(r);
        let mut objects = s.lock();
        let kept = objects
            .entry(name.to_owned())
            .or_insert_with(|| Arc::clone(&r));
        Ok(Arc::clone(kept))
    }

    /// Creates an object.
    pub fn create(
        &self,
        name: &str,
        attrs: &ReplicaAttributes,
        opts: &CreateOptions,
    ) -> Result<Arc<Replica>, String> {
        match self {
            Self::Shm(d) => Replica::create(d, name, attrs, opts)
                .map(Arc::new)
                .map_err(|e| e.to_string()),
            Self::Sealed(s) => {
                let needed = ckpt_engine::layout::object_size(attrs, &opts.limits)
                    .ok_or_else(|| CreateError::InvalidAttributes.to_string())?;
                if !s.fits(&s.lock(), needed) {
                    return Err(format!(
                        "{} (a sealed node's replicas count against {}'s file system)",
                        CreateError::NoResources { needed },
                        s.dir.display()
                    ));
                }
                let r = Replica::create_sealed(&s.dir, name, attrs, opts)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())?;
                s.lock().insert(name.to_owned(), Arc::clone(&r));
                Ok(r)
            }
            Self::Memory(m) => {
                let mut r =
                    Replica::create_in_memory(attrs, &opts.limits).map_err(|e| e.to_string())?;
                if let Some(c) = m.clock {
                    r.set_clock(c);
                }
                r.set_role(opts.role, 0);
                let r = Arc::new(r);
                m.lock().insert(name.to_owned(), Arc::clone(&r));
                Ok(r)
            }
        }
    }

    /// Removes an object (mappings stay valid until dropped).
    pub fn remove(&self, name: &str) {
        match self {
            Self::Shm(d) => {
                let _ = Replica::remove(d, name);
            }
            Self::Sealed(s) => {
                s.lock().remove(name);
            }
            Self::Memory(m) => {
                m.lock().remove(name);
            }
        }
    }

    /// The names of the replica objects present (what a restart reattaches).
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::Shm(d) => std::fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                        .filter(|n| parse_object_name(n).is_some())
                        .collect()
                })
                .unwrap_or_default(),
            Self::Sealed(s) => s.lock().keys().cloned().collect(),
            Self::Memory(m) => m.lock().keys().cloned().collect(),
        }
    }
}

/// Whether two descriptors are the same object (device and inode).
pub fn same_object(a: impl AsFd, b: impl AsFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}
