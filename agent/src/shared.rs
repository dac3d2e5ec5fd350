//! Process-wide state: one node registry per domain and one mapping per checkpoint
//! instance, shared by every handle of the process (so the engine's per-process agent
//! bookkeeping, and the arrival watcher, see one `Replica` per instance).
//!
//! In cluster mode no registry is mapped: the cluster's directory holds names, opens and
//! retention, and a node registry in ckptd's directory would be one more shared object
//! any agent could damage (or shrink under the others) with nothing in it to share.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, Weak};

use ckpt_engine::{Opened, Registry, RegistryLimits, Replica, Role, Sharing};

use crate::arrival::Watch;
use crate::cluster::Client;
use crate::error::{Result, from_registry};
use crate::types::{CreationAttributes, CreationFlags, Limits};

static REGISTRIES: Mutex<Vec<(PathBuf, Weak<Registry>)>> = Mutex::new(Vec::new());
static INSTANCES: Mutex<Vec<Weak<Instance>>> = Mutex::new(Vec::new());

/// The registry of `domain`, opened (and swept) once per process while in use.
pub(crate) fn registry(domain: &Path, limits: &Limits) -> Result<Arc<Registry>> {
    let mut all = REGISTRIES.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|(_, w)| w.strong_count() > 0);
    if let Some(r) = all
        .iter()
        .find(|(d, _)| d == domain)
        .and_then(|(_, w)| w.upgrade())
    {
        r.sweep();
        return Ok(r);
    }
    let reg = Registry::open_with(
        domain,
        Sharing::default(),
        RegistryLimits {
            entries: limits.checkpoints,
            openers: limits.openers,
        },
    )
    .map_err(from_registry)?;
    let reg = Arc::new(reg);
    all.push((domain.to_path_buf(), Arc::downgrade(&reg)));
    Ok(reg)
}

/// One checkpoint instance mapped into this process.
#[derive(Debug)]
pub(crate) struct Instance {
    /// Standalone: the node registry that counts this instance's opens (`None` in cluster
    /// mode, where the directory does).
    pub(crate) registry: Option<Arc<Registry>>,
    /// Cluster mode: the session with ckptd, which owns opens, retention and the role.
    pub(crate) cluster: Option<Arc<Client>>,
    /// Cluster mode: the retention duration in force (the directory holds the truth).
    pub(crate) retention: AtomicI64,
    pub(crate) id: u64,
    /// The node's replica; in cluster mode on a node without one, an empty placeholder
    /// that nothing reads (every operation goes through ckptd).
    pub(crate) replica: Replica,
    /// Whether `replica` is a real replica of the checkpoint.
    pub(crate) local: bool,
    /// The attributes it was created with.
    pub(crate) attrs: CreationAttributes,
    pub(crate) watch: Watch,
}

impl Instance {
    /// Whether the checkpoint has an active replica (a collocated asynchronous one has
    /// none until ActiveReplicaSet).
    pub(crate) fn is_active(&self) -> bool {
        self.replica.role().0 == Role::Primary
    }
}

/// The process's mapping of the instance `opened` names (the new mapping is dropped if
/// one exists already).
pub(crate) fn instance(registry: &Arc<Registry>, opened: Opened) -> Arc<Instance> {
    let mut all = INSTANCES.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| w.strong_count() > 0);
    if let Some(i) = all.iter().filter_map(Weak::upgrade).find(|i| {
        i.id == opened.instance
            && i.cluster.is_none()
            && i.registry
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, registry))
    }) {
        return i;
    }
    let a = opened.replica.attributes();
    let inst = Arc::new(Instance {
        registry: Some(Arc::clone(registry)),
        cluster: None,
        retention: AtomicI64::new(a.retention_ns),
        id: opened.instance,
        attrs: CreationAttributes {
            creation_flags: CreationFlags(a.creation_flags),
            checkpoint_size: a.checkpoint_size,
            retention_duration: a.retention_ns,
            max_sections: a.max_sections,
            max_section_size: a.max_section_size,
            max_section_id_size: a.max_section_id_size,
        },
        replica: opened.replica,
        local: true,
        watch: Watch::default(),
    });
    all.push(Arc::downgrade(&inst));
    inst
}

/// The process's mapping of cluster instance `id` (the new mapping is dropped if one
/// exists already). `local`: `replica` is the node's replica (else a placeholder).
pub(crate) fn cluster_instance(
    client: &Arc<Client>,
    id: u64,
    attrs: CreationAttributes,
    replica: Replica,
    local: bool,
) -> Arc<Instance> {
    let mut all = INSTANCES.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|w| w.strong_count() > 0);
    if let Some(i) = all.iter().filter_map(Weak::upgrade).find(|i| {
        i.id == id && i.local == local && i.cluster.as_ref().is_some_and(|c| Arc::ptr_eq(c, client))
    }) {
        return i;
    }
    let inst = Arc::new(Instance {
        registry: None,
        cluster: Some(Arc::clone(client)),
        retention: AtomicI64::new(attrs.retention_duration),
        id,
        attrs,
        replica,
        local,
        watch: Watch::default(),
    });
    all.push(Arc::downgrade(&inst));
    inst
}

/// The instances of `client`'s session whose node replica this process holds as a sealed
/// memfd (what it hands a restarted ckptd back).
pub(crate) fn held_sealed(client: &Arc<Client>) -> Vec<Arc<Instance>> {
    let all = INSTANCES.lock().unwrap_or_else(|p| p.into_inner());
    all.iter()
        .filter_map(Weak::upgrade)
        .filter(|i| {
            i.local
                && i.replica.sealed_fd().is_some()
                && i.cluster.as_ref().is_some_and(|c| Arc::ptr_eq(c, client))
        })
        .collect()
}
