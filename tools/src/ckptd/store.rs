//! Where a node keeps its replica objects: files in its shm directory (the daemon), or
//! heap-backed replicas in a map (simulations and tests, where several simulated hosts
//! share one process and must not share a directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ckpt_engine::{Clock, CreateOptions, Replica, ReplicaAttributes, Sharing};

/// A node's replica objects.
#[derive(Clone, Debug)]
pub enum Store {
    /// Objects in this shm directory, which agents map too.
    Shm(PathBuf),
    /// Heap-backed replicas, by object name; the map is shared with whoever made it.
    Memory(MemoryStore),
}

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
            Self::Shm(dir) => {
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
            Self::Shm(dir) => std::fs::read(dir.join(DIRECTORY_FILE)).ok(),
            Self::Memory(m) => m
                .directory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// The directory agents map replicas from (empty for a memory store).
    pub fn dir(&self) -> &Path {
        match self {
            Self::Shm(d) => d,
            Self::Memory(_) => Path::new(""),
        }
    }

    /// Maps an existing object.
    pub fn attach(&self, name: &str) -> Result<Arc<Replica>, String> {
        match self {
            Self::Shm(d) => Replica::attach(d, name, Sharing::default())
                .map(Arc::new)
                .map_err(|e| e.to_string()),
            Self::Memory(m) => m.lock().get(name).cloned().ok_or_else(|| "absent".into()),
        }
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
            Self::Memory(m) => m.lock().keys().cloned().collect(),
        }
    }
}
