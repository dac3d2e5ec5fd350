//! What a domain directory holds, as the operator commands see it.
//!
//! Two kinds of directory, told apart by what is in them:
//! - **standalone** (`/dev/shm/ckpt/<domain>`): the node registry (`registry`) names every
//!   checkpoint; replica objects are `r-<instance in hex>`;
//! - **a ckptd node's shm directory**: replica objects are `c<instance in hex>`, and the
//!   directory table ckptd keeps there (`ckptd.directory`, when this node holds one) gives
//!   names, replica nodes, the active replica and opens per node. A sealed node's
//!   (`ckptd.sealed` in it) replica objects are sealed memfds that are not in the
//!   directory: their descriptors come from the node's running ckptd, over the agent
//!   socket the marker names (or `CKPT_CLUSTER_SOCKET`), and without it they cannot be
//!   read at all.
//!
//! Nothing here creates anything: a directory without a registry is not given one. Every
//! object is attached on its own, and anything that goes wrong with one (a damaged header,
//! even a panic in code reading it) becomes an error string for that object alone.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ckpt_agent::CLUSTER_SOCKET_ENV;
use ckpt_engine::registry::{EntryInfo, replica_name};
use ckpt_engine::{AttachError, Registry, RegistryError, Replica, Role, Sharing};
use ckpt_transport::directory::{DirConfig, Directory, Entry};
use serde::Serialize;

use super::Error;
use super::format;
use crate::ckptd::object_name;
use crate::ckptd::store::{DIRECTORY_FILE, SEALED_FILE, parse_object_name};

/// File name of the node registry in a domain directory.
const REGISTRY_FILE: &str = "registry";

/// How to point `ckpt` at another domain, for error messages.
pub(crate) const CHOOSE_DIR: &str = "pass --dir DIR, or set CKPT_DIR=DIR (CKPT_DOMAIN=NAME \
     means /dev/shm/ckpt/NAME); for a ckptd node, DIR is the node's shm_dir in the cluster file";

/// Runs `f`, turning a panic into an error string: the bytes being read are untrusted, and
/// one damaged object must not stop the listing of the others.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        format!("{what}: internal error reading it ({why})")
    })
}

/// A registry error in words, with the errno spelled out.
pub(crate) fn registry_error(e: RegistryError) -> String {
    match e {
        RegistryError::Io(errno) => format!(
            "node registry: {}",
            std::io::Error::from_raw_os_error(errno)
        ),
        e => e.to_string(),
    }
}

/// One domain directory, read.
#[derive(Debug)]
pub(crate) struct Domain {
    dir: PathBuf,
    /// The node registry, if the directory has one (`Err`: it could not be opened).
    registry: Option<Result<Registry, String>>,
    /// ckptd's directory table, if the directory has one (`Err`: it could not be read).
    table: Option<Result<Vec<Entry>, String>>,
    /// Replica object names (`r-…`, `c…`), sorted.
    objects: Vec<String>,
    /// A sealed node's replicas, by object name: the descriptors its ckptd passed.
    sealed: BTreeMap<String, OwnedFd>,
}

/// A checkpoint instance found in a domain, not yet attached.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    /// Its name, when the registry or the directory table says.
    pub(crate) name: Option<Vec<u8>>,
    pub(crate) instance: u64,
    /// The local replica object's name (`None`: this node holds no replica of it).
    pub(crate) object: Option<String>,
    /// A cluster checkpoint (ckptd's), not a standalone one.
    pub(crate) cluster: bool,
    /// What the node registry says (standalone).
    pub(crate) entry: Option<EntryInfo>,
    /// What ckptd's directory table says (cluster).
    pub(crate) placement: Option<Entry>,
}

impl Domain {
    /// Reads `dir` as a user of its registry: opening the registry sweeps it, as every
    /// agent's initialize and open do (the opens of dead processes are dropped, and
    /// checkpoints whose retention ran out are deleted), so the opens and retention shown
    /// are current. Only a missing or unreadable directory is an error; a damaged
    /// registry or table is recorded and reported by the commands.
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        Self::read(dir, true)
    }

    /// As [`Domain::open`], but attaching the registry changes nothing in it (no sweep,
    /// no repair): for `fsck`, which reports what it finds.
    pub(crate) fn inspect(dir: &Path) -> Result<Self, Error> {
        Self::read(dir, false)
    }

    fn read(dir: &Path, sweep: bool) -> Result<Self, Error> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Usage(format!(
                    "{} is not a directory, so not a checkpoint domain; {CHOOSE_DIR}",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Usage(format!(
                    "no checkpoint domain at {} (the directory does not exist: no \
                     checkpoint was ever created there); {CHOOSE_DIR}",
                    dir.display()
                )));
            }
            Err(e) => {
                return Err(Error::System(format!(
                    "cannot read the domain directory {}: {e}",
                    dir.display()
                )));
            }
        }
        // First: its sweep may delete objects, which the listing must then not show.
        let registry = dir.join(REGISTRY_FILE).exists().then(|| {
            guarded("node registry", || {
                if sweep {
                    Registry::open(dir, Sharing::default())
                } else {
                    Registry::attach(dir, Sharing::default())
                }
            })
            .and_then(|r| r.map_err(registry_error))
        });
        let listing = std::fs::read_dir(dir).map_err(|e| {
            Error::System(format!(
                "cannot list the domain directory {}: {e}",
                dir.display()
            ))
        })?;
        let mut objects: Vec<String> = listing
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| standalone_instance(n).is_some() || parse_object_name(n).is_some())
            .collect();
        let sealed = sealed_objects(dir)?;
        objects.extend(sealed.keys().cloned());
        objects.sort();
        objects.dedup();
        let table = match std::fs::read(dir.join(DIRECTORY_FILE)) {
            Ok(bytes) => Some(guarded(DIRECTORY_FILE, || decode_table(&bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(format!("{DIRECTORY_FILE}: {e}"))),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            registry,
            table,
            objects,
            sealed,
        })
    }

    /// Maps the replica object `name`: a sealed node's from the descriptor its ckptd
    /// passed, any other from the directory.
    pub(crate) fn attach_object(&self, name: &str) -> Result<Replica, AttachError> {
        match self.sealed.get(name) {
            Some(fd) => {
                let own = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 0)
                    .map_err(|e| AttachError::Io(e.raw_os_error()))?;
                Replica::attach_fd(&self.dir, own)
            }
            None => Replica::attach(&self.dir, name, Sharing::default()),
        }
    }

    /// Whether the object `name` is gone from the directory (a sealed node's replicas are
    /// not in it: they go only with their descriptors).
    pub(crate) fn object_gone(&self, name: &str) -> bool {
        !self.sealed.contains_key(name) && !self.dir.join(name).exists()
    }

    /// The node registry, when the directory has a readable one.
    pub(crate) fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref().and_then(|r| r.as_ref().ok())
    }

    /// Whether this is a ckptd node's directory (cluster objects or ckptd's table in it).
    pub(crate) fn is_cluster(&self) -> bool {
        self.table.is_some() || self.objects.iter().any(|o| parse_object_name(o).is_some())
    }

    /// Why the registry the directory has could not be opened.
    pub(crate) fn registry_error(&self) -> Option<&String> {
        self.registry.as_ref().and_then(|r| r.as_ref().err())
    }

    /// Why ckptd's directory table the directory has could not be read.
    pub(crate) fn table_error(&self) -> Option<&String> {
        self.table.as_ref().and_then(|t| t.as_ref().err())
    }

    /// Problems with the directory as a whole (registry or table unreadable), for stderr.
    pub(crate) fn problems(&self) -> Vec<String> {
        let registry = self.registry_error();
        registry
            .into_iter()
            .chain(self.table_error())
            .cloned()
            .collect()
    }

    /// The replica object names in the directory (`r-…` and `c…`), sorted.
    pub(crate) fn objects(&self) -> &[String] {
        &self.objects
    }

    /// Every checkpoint instance: the registry's, the directory table's, and replica
    /// objects neither accounts for. Sorted by name, then instance.
    pub(crate) fn checkpoints(&self) -> Vec<Checkpoint> {
        let mut out = Vec::new();
        if let Some(reg) = self.registry() {
            for entry in guarded("node registry", || reg.entries()).unwrap_or_default() {
                out.push(Checkpoint {
                    name: Some(entry.name.clone()),
                    instance: entry.instance,
                    object: Some(replica_name(entry.instance)),
                    cluster: false,
                    entry: Some(entry),
                    placement: None,
                });
            }
        }
        if let Some(Ok(table)) = &self.table {
            for placement in table {
                let object = object_name(placement.instance);
                out.push(Checkpoint {
                    name: Some(placement.name.as_bytes().to_vec()),
                    instance: placement.instance,
                    object: self.objects.contains(&object).then_some(object),
                    cluster: true,
                    entry: None,
                    placement: Some(placement.clone()),
                });
            }
        }
        for object in &self.objects {
            if out.iter().any(|c| c.object.as_ref() == Some(object)) {
                continue;
            }
            let (instance, cluster) = match parse_object_name(object) {
                Some(i) => (i, true),
                None => (standalone_instance(object).unwrap_or(0), false),
            };
            out.push(Checkpoint {
                name: None,
                instance,
                object: Some(object.clone()),
                cluster,
                entry: None,
                placement: None,
            });
        }
        out.sort_by(|a, b| (&a.name, a.instance).cmp(&(&b.name, b.instance)));
        out
    }

    /// The checkpoint `name` (a linked one before an unlinked one still open, the newest
    /// instance first), or the one whose replica object is named `name`.
    pub(crate) fn find(&self, name: &str) -> Result<Checkpoint, Error> {
        let mut all = self.checkpoints();
        let linked = |c: &Checkpoint| {
            !(c.entry.as_ref().is_some_and(|e| e.unlinked)
                || c.placement.as_ref().is_some_and(|p| p.unlinked))
        };
        let best = all
            .iter()
            .enumerate()
            .filter(|(_, c)| c.name.as_deref() == Some(name.as_bytes()))
            .max_by_key(|(_, c)| (linked(c), c.instance))
            .or_else(|| {
                all.iter()
                    .enumerate()
                    .find(|(_, c)| c.object.as_deref() == Some(name))
            })
            .map(|(i, _)| i);
        match best {
            Some(i) => Ok(all.swap_remove(i)),
            None => {
                let mut msg = format!(
                    "no checkpoint named {:?} in {}; `ckpt ls` lists them",
                    name,
                    self.dir.display()
                );
                for p in self.problems() {
                    msg.push_str(&format!(" (and {p})"));
                }
                Err(Error::NotFound(msg))
            }
        }
    }
}

impl Checkpoint {
    /// Its name for display (`?` when nobody says).
    pub(crate) fn display_name(&self) -> String {
        self.name
            .as_deref()
            .map_or_else(|| "?".to_owned(), format::name)
    }

    /// Maps the local replica (`None`: this node holds none).
    pub(crate) fn attach(&self, domain: &Domain) -> Option<Result<Replica, String>> {
        let object = self.object.as_deref()?;
        let attached = guarded(object, || domain.attach_object(object))
            .and_then(|r| r.map_err(|e| format!("{object}: cannot attach: {e}")));
        Some(match attached {
            Err(_) if self.entry.as_ref().is_some_and(|e| e.creating) => {
                Err(format!("{object}: still being created"))
            }
            other => other,
        })
    }

    /// Whether it is an object nothing accounts for that was deleted since the directory
    /// was listed (one being deleted: not worth a report).
    pub(crate) fn vanished(
        &self,
        replica: Option<&Result<Replica, String>>,
        domain: &Domain,
    ) -> bool {
        self.entry.is_none()
            && self.placement.is_none()
            && replica.is_some_and(|r| r.is_err())
            && self.object.as_ref().is_some_and(|o| domain.object_gone(o))
    }

    /// Its registry or table state: `linked`, `unlinked`, `creating`, or `unregistered`
    /// (an object no registry entry or table entry accounts for).
    fn state(&self) -> &'static str {
        match (&self.entry, &self.placement) {
            (Some(e), _) if e.creating => "creating",
            (Some(e), _) if e.unlinked => "unlinked",
            (_, Some(p)) if p.unlinked => "unlinked",
            (Some(_), _) | (_, Some(_)) => "linked",
            (None, None) => "unregistered",
        }
    }

    /// What `ls` and `show` print about it; `replica` is what [`Checkpoint::attach`] gave.
    pub(crate) fn summary(&self, replica: Option<&Result<Replica, String>>) -> Summary {
        let local = replica.and_then(|r| r.as_ref().ok());
        let read = local.map(|r| {
            guarded("replica", || {
                let (role, term) = r.role();
                (
                    r.attributes(),
                    r.status(),
                    r.object_size(),
                    role,
                    term,
                    r.commit_seq(),
                    r.acked_seq(),
                )
            })
        });
        let from_replica = read.as_ref().and_then(|r| r.as_ref().ok()).copied();
        let error = replica
            .and_then(|r| r.as_ref().err())
            .cloned()
            .or_else(|| read.and_then(Result::err));
        let attrs = from_replica.map(|f| f.0);
        let table_attrs = self.placement.as_ref().map(|p| p.attrs);
        let flags = attrs
            .map(|a| a.creation_flags)
            .or(table_attrs.map(|a| a.creation_flags));
        Summary {
            name: self.name.as_deref().map(format::name),
            instance: self.instance,
            object: self.object.clone(),
            mode: if self.cluster {
                "cluster"
            } else {
                "standalone"
            },
            state: self.state(),
            creation_flags: flags,
            creation_flag_names: flags.map(flag_names).unwrap_or_default(),
            checkpoint_size: attrs
                .map(|a| a.checkpoint_size)
                .or(table_attrs.map(|a| a.checkpoint_size)),
            max_sections: attrs
                .map(|a| a.max_sections)
                .or(table_attrs.map(|a| a.max_sections)),
            max_section_size: attrs
                .map(|a| a.max_section_size)
                .or(table_attrs.map(|a| a.max_section_size)),
            max_section_id_size: attrs
                .map(|a| a.max_section_id_size)
                .or(table_attrs.map(|a| a.max_section_id_size)),
            sections: from_replica.map(|f| f.1.sections),
            memory_used: from_replica.map(|f| f.1.memory_used),
            object_size: from_replica.map(|f| f.2),
            local_replica: self.object.is_some(),
            local_role: from_replica.map(|f| match f.3 {
                Role::Primary => "primary",
                Role::Replica => "replica",
            }),
            local_term: from_replica.map(|f| f.4),
            local_active: from_replica.map(|f| f.3 == Role::Primary),
            commit_seq: from_replica.map(|f| f.5),
            acked_seq: from_replica.map(|f| f.6),
            replica_nodes: self.placement.as_ref().map(|p| p.replicas.clone()),
            active_node: self.placement.as_ref().and_then(|p| p.primary),
            opens: self
                .entry
                .as_ref()
                .map(|e| e.opens)
                .or(self.placement.as_ref().map(|p| {
                    p.openers
                        .values()
                        .map(|&n| u64::from(n))
                        .fold(0, u64::saturating_add)
                })),
            opens_by_node: self.placement.as_ref().map(|p| p.openers.clone()),
            retention_ns: self
                .entry
                .as_ref()
                .map(|e| e.retention_ns)
                .or(self.placement.as_ref().map(|p| p.retention))
                .or(attrs.map(|a| a.retention_ns)),
            closed_for_ns: self.entry.as_ref().and_then(|e| e.closed_for_ns),
            error,
        }
    }
}

/// What `ls --json` gives per checkpoint (and `show --json` at its top level). Field names
/// are stable; `null` means unknown here (no readable local replica, no table entry).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Summary {
    /// The checkpoint name (`null` for an object nothing names).
    pub(crate) name: Option<String>,
    /// Instance id (a new one each time the name is created anew).
    pub(crate) instance: u64,
    /// The local replica object's file name in the domain directory.
    pub(crate) object: Option<String>,
    /// `standalone` or `cluster`.
    pub(crate) mode: &'static str,
    /// `linked`, `unlinked` (name gone, alive while open), `creating`, `unregistered`.
    pub(crate) state: &'static str,
    /// `SaCkptCheckpointCreationFlagsT`, and its set flags by their standard names.
    pub(crate) creation_flags: Option<u32>,
    pub(crate) creation_flag_names: Vec<&'static str>,
    /// The creation attributes (`checkpointSize`, `maxSections`, ...).
    pub(crate) checkpoint_size: Option<u64>,
    pub(crate) max_sections: Option<u32>,
    pub(crate) max_section_size: Option<u64>,
    pub(crate) max_section_id_size: Option<u64>,
    /// `numberOfSections` and `memoryUsed` of the local replica.
    pub(crate) sections: Option<u32>,
    pub(crate) memory_used: Option<u64>,
    /// Bytes the local replica object reserves in shared memory.
    pub(crate) object_size: Option<u64>,
    /// Whether this node holds a replica.
    pub(crate) local_replica: bool,
    /// The local replica's header: role (`primary`, `replica`) and term.
    pub(crate) local_role: Option<&'static str>,
    pub(crate) local_term: Option<u64>,
    /// Whether the local replica is the active one (it is the primary).
    pub(crate) local_active: Option<bool>,
    /// The local replica's journal: last committed seq, and the seq every replica acked.
    pub(crate) commit_seq: Option<u64>,
    pub(crate) acked_seq: Option<u64>,
    /// Cluster: the nodes holding a replica, and the node of the active replica.
    pub(crate) replica_nodes: Option<Vec<u32>>,
    pub(crate) active_node: Option<u32>,
    /// Opens (standalone: by live processes of this node; cluster: all nodes).
    pub(crate) opens: Option<u64>,
    pub(crate) opens_by_node: Option<BTreeMap<u32, u32>>,
    /// Retention duration in force, and how long ago the last close was (while closed).
    pub(crate) retention_ns: Option<i64>,
    pub(crate) closed_for_ns: Option<i64>,
    /// Why the local replica could not be read.
    pub(crate) error: Option<String>,
}

impl Summary {
    /// `1,2` (cluster), `local` or `-`.
    pub(crate) fn replicas_text(&self) -> String {
        match &self.replica_nodes {
            Some(nodes) if !nodes.is_empty() => nodes
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Some(_) => "none".to_owned(),
            None if self.local_replica => "local".to_owned(),
            None => "-".to_owned(),
        }
    }

    /// `node 2` (cluster), `local`, `none` or `-`.
    pub(crate) fn active_text(&self) -> String {
        match (self.active_node, &self.replica_nodes, self.local_active) {
            (Some(n), _, _) => format!("node {n}"),
            (None, Some(_), _) | (None, None, Some(false)) => "none".to_owned(),
            (None, None, Some(true)) => "local".to_owned(),
            (None, None, None) => "-".to_owned(),
        }
    }

    /// `primary/3` (role and term of the local replica) or `-`.
    pub(crate) fn role_text(&self) -> String {
        match (self.local_role, self.local_term) {
            (Some(role), Some(term)) => format!("{role}/{term}"),
            _ => "-".to_owned(),
        }
    }

    /// The retention, and while closed how much of it is left.
    pub(crate) fn retention_text(&self) -> String {
        let Some(r) = self.retention_ns else {
            return "-".to_owned();
        };
        match self.closed_for_ns {
            Some(closed) => format!(
                "{} ({} left)",
                format::duration(r),
                format::duration(r.saturating_sub(closed).max(0))
            ),
            None => format::duration(r),
        }
    }

    /// Short creation flags: `ACTIVE,COLLOCATED`.
    pub(crate) fn flags_text(&self) -> String {
        let Some(flags) = self.creation_flags else {
            return "-".to_owned();
        };
        let mut parts: Vec<String> = FLAGS
            .iter()
            .filter(|f| flags & f.0 != 0)
            .map(|f| f.2.to_owned())
            .collect();
        let unknown = flags & !FLAGS.iter().fold(0, |m, f| m | f.0);
        if unknown != 0 {
            parts.push(format!("{unknown:#x}"));
        }
        if parts.is_empty() {
            return "0".to_owned();
        }
        parts.join(",")
    }
}

/// The creation flags: value, standard name, short name.
const FLAGS: [(u32, &str, &str); 4] = [
    (0x1, "SA_CKPT_WR_ALL_REPLICAS", "ALL"),
    (0x2, "SA_CKPT_WR_ACTIVE_REPLICA", "ACTIVE"),
    (0x4, "SA_CKPT_WR_ACTIVE_REPLICA_WEAK", "WEAK"),
    (0x8, "SA_CKPT_CHECKPOINT_COLLOCATED", "COLLOCATED"),
];

/// The standard names of the flags set in `flags`.
pub(crate) fn flag_names(flags: u32) -> Vec<&'static str> {
    FLAGS
        .iter()
        .filter(|f| flags & f.0 != 0)
        .map(|f| f.1)
        .collect()
}

/// A sealed node's replicas, by object name, as its running ckptd passes them; none for
/// any other directory. The ckptd asked is the one the directory's marker names, or the
/// one at `CKPT_CLUSTER_SOCKET`; it must serve this very directory.
fn sealed_objects(dir: &Path) -> Result<BTreeMap<String, OwnedFd>, Error> {
    let marked = crate::ckptd::sealed::marked_socket(dir).map_err(|e| {
        Error::System(format!(
            "cannot read {}: {e}",
            dir.join(SEALED_FILE).display()
        ))
    })?;
    let Some(marked) = marked else {
        return Ok(BTreeMap::new());
    };
    let socket = std::env::var_os(CLUSTER_SOCKET_ENV)
        .filter(|v| !v.is_empty())
        .map_or(marked, PathBuf::from);
    let held = crate::ckptd::sealed::descriptors(&socket, Duration::from_secs(5)).map_err(|e| {
        Error::System(format!(
            "{} is a sealed ckptd node's directory (sealed = true): its replicas are sealed \
             memfds that only its ckptd and agents hold, not files, and the ckptd at {} does \
             not answer ({e}); start the node's ckptd, or set {CLUSTER_SOCKET_ENV} to its \
             agent socket",
            dir.display(),
            socket.display()
        ))
    })?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if !same(&held.shm_dir, dir) {
        return Err(Error::Usage(format!(
            "the ckptd at {} serves {}, not {}; set {CLUSTER_SOCKET_ENV} to the socket of \
             the node whose directory this is",
            socket.display(),
            held.shm_dir.display(),
            dir.display()
        )));
    }
    Ok(held
        .replicas
        .into_iter()
        .map(|(instance, fd)| (object_name(instance), fd))
        .collect())
}

/// The instance a standalone object name (`r-` and 16 hex digits) stands for.
fn standalone_instance(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("r-")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// ckptd's directory table from the bytes of its durable state file. A file that does
/// not decode gives no entries (the directory itself then starts empty, too).
fn decode_table(bytes: &[u8]) -> Vec<Entry> {
    let config = DirConfig {
        node: 0,
        nodes: Vec::new(),
        directors: Vec::new(),
        two_node: false,
        heartbeat: Duration::from_secs(1),
        election_timeout: Duration::from_secs(1),
        max_checkpoints: usize::MAX,
    };
    let mut dir = Directory::new(config, Duration::ZERO);
    dir.restore(bytes, Duration::ZERO);
    dir.entries().cloned().collect()
}
