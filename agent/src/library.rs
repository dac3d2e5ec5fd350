//! The library handle (`SaCkptHandleT`): initialize, finalize, open, unlink, the
//! selection object and dispatch.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ckpt_engine::{Registry, Replica, ReplicaAttributes, ReplicaLimits, Role, Sharing};
use ckpt_transport::wire::{Attrs, DirOp, DirReply};

use crate::checkpoint::{Checkpoint, CkptInner};
use crate::cluster::{self, Client};
use crate::error::{Error, Result, from_attach, from_registry};
use crate::shared;
use crate::types::{
    ArrivalElement, CheckpointHandle, CreationAttributes, CreationFlags, DispatchFlags, Invocation,
    LibraryHandle, Limits, OpenFlags, TIME_END, Version, negotiate,
};

/// The open callback: the invocation given to [`Library::open_async`] and the opened
/// checkpoint (or why it could not be opened).
pub type OpenCallback = Box<dyn Fn(Invocation, Result<Checkpoint>) + Send + Sync>;
/// The synchronize callback: the invocation given to
/// [`Checkpoint::synchronize_async`] and the outcome.
pub type SynchronizeCallback = Box<dyn Fn(Invocation, Result<()>) + Send + Sync>;
/// The arrival callback (the NCS hot-standby extension): which checkpoint changed and
/// the elements written.
pub type ArrivalCallback = Box<dyn Fn(CheckpointHandle, &[ArrivalElement]) + Send + Sync>;

/// `SaCkptCallbacksT`: the callbacks a library handle may run in [`Library::dispatch`].
#[derive(Default)]
pub struct Callbacks {
    /// `saCkptCheckpointOpenCallback`.
    pub open: Option<OpenCallback>,
    /// `saCkptCheckpointSynchronizeCallback`.
    pub synchronize: Option<SynchronizeCallback>,
}

impl core::fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Callbacks")
            .field("open", &self.open.is_some())
            .field("synchronize", &self.synchronize.is_some())
            .finish()
    }
}

/// Where checkpoints live and the node's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The domain directory (default: `CKPT_DIR`, else `/dev/shm/ckpt/<CKPT_DOMAIN or
    /// default>`).
    pub domain: PathBuf,
    /// Node limits.
    pub limits: Limits,
    /// Cluster mode: the Unix socket of this node's `ckptd` (default: the
    /// `CKPT_CLUSTER_SOCKET` environment variable). `None` is standalone mode, where
    /// checkpoints live on this node only and no daemon is needed. In cluster mode the
    /// replica objects live in the directory ckptd names, and `domain` is not used.
    pub cluster: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domain: ckpt_engine::default_domain(),
            limits: Limits::default(),
            cluster: std::env::var_os(cluster::CLUSTER_SOCKET_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// Pending arrival elements per library beyond which the changes of a checkpoint are
/// folded into one "every section" callback (a reader that does not dispatch cannot grow
/// the queue without bound).
const ARRIVAL_BACKLOG: usize = 1 << 16;

pub(crate) enum Pending {
    Open(Invocation, Result<Checkpoint>),
    Synchronize(CheckpointHandle, Invocation, Result<()>),
    Arrival(CheckpointHandle, Vec<ArrivalElement>),
    /// Every section of the checkpoint, read at dispatch time (resync or backlog).
    ArrivalAll(CheckpointHandle),
}

#[derive(Default)]
pub(crate) struct LibState {
    pub(crate) finalized: bool,
    pub(crate) queue: VecDeque<Pending>,
    pub(crate) checkpoints: BTreeMap<CheckpointHandle, Arc<CkptInner>>,
    arrival_backlog: usize,
    event: Option<OwnedFd>,
}

pub(crate) struct LibInner {
    pub(crate) handle: LibraryHandle,
    pub(crate) requested: Version,
    pub(crate) config: Config,
    /// Standalone: the domain's node registry (cluster mode maps none; see `shared`).
    pub(crate) registry: Option<Arc<Registry>>,
    pub(crate) cluster: Option<Arc<Client>>,
    open_cb: Option<SharedOpen>,
    sync_cb: Option<SharedSync>,
    arrival_cb: Mutex<Option<SharedArrival>>,
    pub(crate) state: Mutex<LibState>,
    cond: Condvar,
}

type SharedOpen = Arc<dyn Fn(Invocation, Result<Checkpoint>) + Send + Sync>;
type SharedSync = Arc<dyn Fn(Invocation, Result<()>) + Send + Sync>;
type SharedArrival = Arc<dyn Fn(CheckpointHandle, &[ArrivalElement]) + Send + Sync>;

static NEXT_LIBRARY: AtomicU64 = AtomicU64::new(1);

impl LibInner {
    /// The standalone node registry (every library has one outside cluster mode).
    pub(crate) fn registry(&self) -> Result<&Arc<Registry>> {
        self.registry
            .as_ref()
            .ok_or(Error::Library("no node registry in cluster mode"))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, LibState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn has_synchronize_callback(&self) -> bool {
        self.sync_cb.is_some()
    }

    pub(crate) fn has_arrival(&self) -> bool {
        self.arrival_cb
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Queues a callback; the selection object becomes readable.
    pub(crate) fn push(&self, p: Pending) {
        let mut s = self.lock();
        if s.finalized {
            return;
        }
        match &p {
            Pending::Arrival(h, elems) => {
                if s.arrival_backlog + elems.len() > ARRIVAL_BACKLOG {
                    let h = *h;
                    if !s
                        .queue
                        .iter()
                        .any(|q| matches!(q, Pending::ArrivalAll(x) if *x == h))
                    {
                        s.queue
                            .retain(|q| !matches!(q, Pending::Arrival(x, _) if *x == h));
                        Self::recount_backlog(&mut s);
                        Self::enqueue(&mut s, Pending::ArrivalAll(h));
                    }
                    drop(s);
                    self.cond.notify_all();
                    return;
                }
                s.arrival_backlog += elems.len();
            }
            Pending::ArrivalAll(h)
                if s.queue
                    .iter()
                    .any(|q| matches!(q, Pending::ArrivalAll(x) if x == h)) =>
            {
                return;
            }
            _ => {}
        }
        Self::enqueue(&mut s, p);
        drop(s);
        self.cond.notify_all();
    }

    fn enqueue(s: &mut LibState, p: Pending) {
        if s.queue.is_empty()
            && let Some(fd) = &s.event
        {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
        s.queue.push_back(p);
    }

    fn recount_backlog(s: &mut LibState) {
        s.arrival_backlog = s
            .queue
            .iter()
            .map(|q| match q {
                Pending::Arrival(_, e) => e.len(),
                _ => 0,
            })
            .sum();
    }

    fn pop(s: &mut LibState) -> Option<Pending> {
        let p = s.queue.pop_front()?;
        if let Pending::Arrival(_, e) = &p {
            s.arrival_backlog = s.arrival_backlog.saturating_sub(e.len());
        }
        if s.queue.is_empty() {
            Self::drain_event(s);
        }
        Some(p)
    }

    fn drain_event(s: &LibState) {
        if let Some(fd) = &s.event {
            let mut b = [0u8; 8];
            let _ = rustix::io::read(fd, &mut b);
        }
    }

    /// Drops the pending callbacks of a closed checkpoint.
    pub(crate) fn cancel(&self, h: CheckpointHandle) {
        let mut s = self.lock();
        s.queue.retain(|q| match q {
            Pending::Synchronize(x, ..) | Pending::Arrival(x, _) | Pending::ArrivalAll(x) => {
                *x != h
            }
            Pending::Open(..) => true,
        });
        Self::recount_backlog(&mut s);
        if s.queue.is_empty() {
            Self::drain_event(&s);
        }
    }

    fn run(self: &Arc<Self>, p: Pending) {
        match p {
            Pending::Open(inv, r) => match &self.open_cb {
                Some(cb) => cb(inv, r),
                None => drop(r),
            },
            Pending::Synchronize(h, inv, r) => {
                // A checkpoint closed meanwhile has its callbacks cancelled.
                if self.lock().checkpoints.contains_key(&h)
                    && let Some(cb) = &self.sync_cb
                {
                    cb(inv, r);
                }
            }
            Pending::Arrival(h, elems) => {
                let open = self.lock().checkpoints.contains_key(&h);
                let cb = self
                    .arrival_cb
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if open && let Some(cb) = cb {
                    cb(h, &elems);
                }
            }
            Pending::ArrivalAll(h) => {
                let ck = self.lock().checkpoints.get(&h).cloned();
                let cb = self
                    .arrival_cb
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if let (Some(ck), Some(cb)) = (ck, cb) {
                    let elems = ck.every_section();
                    if !elems.is_empty() {
                        cb(h, &elems);
                    }
                }
            }
        }
    }
}

/// A library handle (`SaCkptHandleT`). Dropping it finalizes it.
///
/// Thread-safe: every method takes `&self`; several threads may dispatch at once.
pub struct Library {
    pub(crate) inner: Arc<LibInner>,
}

impl core::fmt::Debug for Library {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Library")
            .field("handle", &self.inner.handle)
            .field("requested", &self.inner.requested)
            .finish_non_exhaustive()
    }
}

/// Checks a checkpoint name: 1..=256 bytes, and for B.02 clients an LDAP DN whose first
/// RDN is `safCkpt=` (B.01 clients may use bare names, as openais clients do).
pub(crate) fn check_name(requested: Version, name: &[u8]) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidParam("checkpoint name is empty"));
    }
    if name.len() > 256 {
        return Err(Error::InvalidParam("checkpoint name longer than 256 bytes"));
    }
    if requested.is_b02() && !name.starts_with(b"safCkpt=") {
        return Err(Error::InvalidParam(
            "a B.02 checkpoint name is a DN starting with safCkpt=",
        ));
    }
    Ok(())
}

impl Library {
    /// `saCkptInitialize` with the default [`Config`].
    pub fn initialize(requested: Version, callbacks: Callbacks) -> Result<Self> {
        Self::initialize_with(Config::default(), requested, callbacks)
    }

    /// `saCkptInitialize`: negotiates the version (see [`negotiate`]; the requested
    /// version is remembered and gates B.01/B.02 behaviour), opens the node registry of
    /// the domain (sweeping what retention has expired) and registers the callbacks. In
    /// cluster mode it connects to ckptd instead (the cluster's directory stands in for
    /// the registry).
    pub fn initialize_with(
        config: Config,
        requested: Version,
        callbacks: Callbacks,
    ) -> Result<Self> {
        negotiate(requested).map_err(|_| Error::Version)?;
        let (cluster, registry) = match &config.cluster {
            Some(socket) => (Some(Client::connect(socket)?), None),
            None => (
                None,
                Some(shared::registry(&config.domain, &config.limits)?),
            ),
        };
        let event = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(|e| match e {
            rustix::io::Errno::MFILE | rustix::io::Errno::NFILE => Error::NoResources,
            rustix::io::Errno::NOMEM => Error::NoMemory,
            _ => Error::Library("eventfd refused"),
        })?;
        let open_cb = callbacks.open.map(Arc::from);
        let sync_cb = callbacks.synchronize.map(Arc::from);
        let inner = Arc::new(LibInner {
            handle: LibraryHandle(NEXT_LIBRARY.fetch_add(1, Relaxed)),
            requested,
            config,
            registry,
            cluster,
            open_cb,
            sync_cb,
            arrival_cb: Mutex::new(None),
            state: Mutex::new(LibState {
                event: Some(event),
                ..LibState::default()
            }),
            cond: Condvar::new(),
        });
        Ok(Self { inner })
    }

    /// This handle's number.
    pub fn handle(&self) -> LibraryHandle {
        self.inner.handle
    }

    /// The version the client asked for at initialize.
    pub fn requested_version(&self) -> Version {
        self.inner.requested
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn alive(&self) -> Result<()> {
        if self.inner.lock().finalized {
            return Err(Error::BadHandle);
        }
        Ok(())
    }

    /// `saCkptSelectionObjectGet`: a file descriptor that polls readable while callbacks
    /// are pending. Valid until finalize (which closes it).
    pub fn selection_object(&self) -> Result<RawFd> {
        let s = self.inner.lock();
        match (&s.event, s.finalized) {
            (Some(fd), false) => Ok(fd.as_fd().as_raw_fd()),
            _ => Err(Error::BadHandle),
        }
    }

    /// `saCkptDispatch`: runs pending callbacks in this thread. `One` runs at most one,
    /// `All` every one pending; both return at once when none is. `Blocking` runs them
    /// as they come and returns when the handle is finalized (by any thread).
    pub fn dispatch(&self, flags: DispatchFlags) -> Result<()> {
        self.alive()?;
        match flags {
            DispatchFlags::One => {
                let p = LibInner::pop(&mut self.inner.lock());
                if let Some(p) = p {
                    self.inner.run(p);
                }
                Ok(())
            }
            DispatchFlags::All => loop {
                let p = LibInner::pop(&mut self.inner.lock());
                match p {
                    Some(p) => self.inner.run(p),
                    None => return Ok(()),
                }
            },
            DispatchFlags::Blocking => loop {
                let p = {
                    let mut s = self.inner.lock();
                    loop {
                        if s.finalized {
                            return Ok(());
                        }
                        if let Some(p) = LibInner::pop(&mut s) {
                            break p;
                        }
                        s = self.inner.cond.wait(s).unwrap_or_else(|p| p.into_inner());
                    }
                };
                self.inner.run(p);
            },
        }
    }

    /// `saCkptFinalize`: closes every checkpoint opened through this handle (their
    /// retention starts), cancels pending callbacks, closes the selection object and
    /// wakes blocking dispatchers. A second finalize gives `BadHandle`.
    pub fn finalize(&self) -> Result<()> {
        let (checkpoints, queue) = {
            let mut s = self.inner.lock();
            if s.finalized {
                return Err(Error::BadHandle);
            }
            s.finalized = true;
            s.event = None;
            s.arrival_backlog = 0;
            (
                core::mem::take(&mut s.checkpoints),
                core::mem::take(&mut s.queue),
            )
        };
        self.inner.cond.notify_all();
        for ck in checkpoints.into_values() {
            ck.close_inner();
        }
        // Pending open results hold checkpoints: closing them may take the lock.
        drop(queue);
        Ok(())
    }

    /// `ncsCkptRegisterCkptArrivalCallback`: from now on, every write, overwrite and
    /// section create made through another handle (of this or another process) to a
    /// checkpoint this library has open for READ is reported through dispatch with the
    /// elements written. The writer's own handle is not called back for the writes it
    /// makes directly on a replica mapped in its process; in cluster mode a write that
    /// goes through ckptd (off the primary) is reported to every subscriber, the writer's
    /// handle included. On a node without a replica the changes come from the primary's
    /// journal; when the primary changes, each subscriber gets every section once.
    /// Registering again replaces the callback.
    pub fn register_arrival_callback(&self, cb: ArrivalCallback) -> Result<()> {
        self.alive()?;
        *self
            .inner
            .arrival_cb
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Arc::from(cb));
        let open: Vec<Arc<CkptInner>> = self.inner.lock().checkpoints.values().cloned().collect();
        for ck in open {
            ck.subscribe_arrivals();
        }
        Ok(())
    }

    /// `saCkptCheckpointOpen`. With `attributes` (and [`OpenFlags::CREATE`]) the
    /// checkpoint is created if it does not exist; an existing one must match them
    /// ([`CreationAttributes::matches`], retention compared for B.01 clients only) or the
    /// answer is `Exist`. `timeout` is a duration in ns ([`TIME_END`]: no limit; negative:
    /// `InvalidParam`); on one node without a daemon an open never waits long, so it only
    /// bounds the wait for a concurrent creator.
    ///
    /// Errors, in the order checked: `InvalidParam` (name, CREATE without attributes or
    /// attributes without CREATE, attributes out of range, negative timeout), `BadFlags`,
    /// `BadHandle`, `NoResources` (node limits, shared memory), `NotExist`, `Exist`,
    /// `TryAgain`, `Access`.
    pub fn open(
        &self,
        name: impl AsRef<[u8]>,
        attributes: Option<&CreationAttributes>,
        flags: OpenFlags,
        timeout: i64,
    ) -> Result<Checkpoint> {
        let name = name.as_ref();
        self.check_open(name, attributes, flags)?;
        if timeout < 0 {
            return Err(Error::InvalidParam("negative timeout"));
        }
        open_checkpoint(&self.inner, name, attributes, flags, timeout)
    }

    fn check_open(
        &self,
        name: &[u8],
        attributes: Option<&CreationAttributes>,
        flags: OpenFlags,
    ) -> Result<()> {
        check_name(self.inner.requested, name)?;
        if flags.0 == 0 || flags.has_unknown_bits() {
            return Err(Error::BadFlags);
        }
        match (flags.contains(OpenFlags::CREATE), attributes) {
            (true, None) => {
                return Err(Error::InvalidParam("CREATE needs creation attributes"));
            }
            (false, Some(_)) => {
                return Err(Error::InvalidParam(
                    "creation attributes given without CREATE",
                ));
            }
            (true, Some(a)) => check_attributes(a, &self.inner.config.limits)?,
            (false, None) => {}
        }
        Ok(())
    }

    /// `saCkptCheckpointOpenAsync`: the same checks as [`Library::open`] at call time
    /// (and `Init` without an open callback); the outcome is delivered to the open
    /// callback through dispatch.
    pub fn open_async(
        &self,
        invocation: Invocation,
        name: impl AsRef<[u8]>,
        attributes: Option<&CreationAttributes>,
        flags: OpenFlags,
    ) -> Result<()> {
        let name = name.as_ref();
        self.check_open(name, attributes, flags)?;
        self.alive()?;
        if self.inner.open_cb.is_none() {
            return Err(Error::Init);
        }
        let inner = Arc::clone(&self.inner);
        let name = name.to_vec();
        let attributes = attributes.copied();
        std::thread::Builder::new()
            .name("ckpt-open".into())
            .spawn(move || {
                let r = open_checkpoint(&inner, &name, attributes.as_ref(), flags, TIME_END);
                inner.push(Pending::Open(invocation, r));
            })
            .map_err(|_| Error::NoResources)?;
        Ok(())
    }

    /// `saCkptCheckpointUnlink`: the name is gone at once (an open with CREATE makes a
    /// new checkpoint); handles already open keep working on the old one, which is
    /// deleted at its last close (now, if it has none).
    pub fn unlink(&self, name: impl AsRef<[u8]>) -> Result<()> {
        let name = name.as_ref();
        check_name(self.inner.requested, name)?;
        self.alive()?;
        if let Some(c) = &self.inner.cluster {
            let name = core::str::from_utf8(name)
                .map_err(|_| Error::InvalidParam("a cluster checkpoint name must be UTF-8"))?;
            return match c.request(DirOp::Unlink { name: name.into() }, None)? {
                DirReply::Done => Ok(()),
                r => Err(cluster::reply_error(&r, self.inner.requested.is_b02())),
            };
        }
        self.inner.registry()?.unlink(name).map_err(from_registry)
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        let _ = self.finalize();
    }
}

pub(crate) fn check_attributes(a: &CreationAttributes, limits: &Limits) -> Result<()> {
    a.creation_flags.validate()?;
    if a.max_sections == 0 {
        return Err(Error::InvalidParam("maxSections is 0"));
    }
    if a.max_section_size == 0 {
        return Err(Error::InvalidParam("maxSectionSize is 0"));
    }
    if a.retention_duration < 0 {
        return Err(Error::InvalidParam("negative retentionDuration"));
    }
    if u64::from(a.max_sections)
        .checked_mul(a.max_section_size)
        .is_none_or(|cap| a.checkpoint_size > cap)
    {
        return Err(Error::InvalidParam(
            "checkpointSize larger than maxSections * maxSectionSize",
        ));
    }
    if a.max_sections > limits.sections
        || a.max_section_size > limits.section_size
        || a.max_section_id_size > limits.section_id_size
    {
        return Err(Error::NoResources);
    }
    Ok(())
}

fn open_checkpoint(
    lib: &Arc<LibInner>,
    name: &[u8],
    attributes: Option<&CreationAttributes>,
    flags: OpenFlags,
    timeout: i64,
) -> Result<Checkpoint> {
    if lib.lock().finalized {
        return Err(Error::BadHandle);
    }
    let limits = &lib.config.limits;
    let engine_attrs = attributes.map(|a| ReplicaAttributes {
        creation_flags: a.creation_flags.0,
        checkpoint_size: a.checkpoint_size,
        retention_ns: a.retention_duration,
        max_sections: a.max_sections,
        max_section_size: a.max_section_size,
        max_section_id_size: a.max_section_id_size,
    });
    let engine_limits = ReplicaLimits {
        agents: limits.agents,
        spare_slots: limits.spare_slots,
        journal_cells: limits.journal_cells,
    };
    if let Some(client) = &lib.cluster {
        return open_in_cluster(lib, client, name, attributes, flags, timeout);
    }
    let role = match attributes {
        Some(a) if a.creation_flags.is_collocated_async() => Role::Replica,
        _ => Role::Primary,
    };
    let registry = lib.registry()?;
    registry.sweep();
    let opened = registry
        .open_replica_as(
            name,
            engine_attrs.as_ref().map(|a| (a, &engine_limits)),
            role,
        )
        .map_err(from_registry)?;
    let created = opened.created;
    let instance_id = opened.instance;
    let inst = shared::instance(registry, opened);
    if let Some(a) = attributes
        && !created
        && !inst.attrs.matches(a, !lib.requested.is_b02())
    {
        let _ = registry.close(instance_id);
        return Err(Error::Exist);
    }
    let ck = CkptInner::new(Arc::downgrade(lib), inst, flags);
    {
        let mut s = lib.lock();
        if s.finalized {
            drop(s);
            // Finalized while this open ran: undo it, and say so.
            ck.close_inner();
            return Err(Error::BadHandle);
        }
        s.checkpoints.insert(ck.handle, Arc::clone(&ck));
    }
    if lib.has_arrival() {
        ck.subscribe_arrivals();
    }
    Ok(Checkpoint { inner: ck })
}

pub(crate) fn lib_of(w: &Weak<LibInner>) -> Option<Arc<LibInner>> {
    w.upgrade()
}

/// An SaTimeT duration as a wait bound (`TIME_END`: none).
pub(crate) fn time_limit(timeout: i64) -> Option<Duration> {
    (timeout != TIME_END).then(|| Duration::from_nanos(timeout.max(0) as u64))
}

/// Open in cluster mode: the directory (through ckptd) decides; the node's replica, which
/// ckptd has created or mapped before it answers, is then mapped here.
fn open_in_cluster(
    lib: &Arc<LibInner>,
    client: &Arc<Client>,
    name: &[u8],
    attributes: Option<&CreationAttributes>,
    flags: OpenFlags,
    timeout: i64,
) -> Result<Checkpoint> {
    let name = core::str::from_utf8(name)
        .map_err(|_| Error::InvalidParam("a cluster checkpoint name must be UTF-8"))?;
    let attrs = attributes.map(|a| Attrs {
        creation_flags: a.creation_flags.0,
        checkpoint_size: a.checkpoint_size,
        retention: a.retention_duration,
        max_sections: a.max_sections,
        max_section_size: a.max_section_size,
        max_section_id_size: a.max_section_id_size,
    });
    let op = DirOp::Open {
        name: name.into(),
        attrs,
        flags: flags.0,
        node: 0,
    };
    let b02 = lib.requested.is_b02();
    let (reply, mut passed) = client.request_with_descriptors(op, time_limit(timeout))?;
    let ckpt = match reply {
        DirReply::Opened { ckpt } => ckpt,
        r => return Err(cluster::reply_error(&r, b02)),
    };
    let node = client.node()?;
    let undo = || {
        let _ = client.request(
            DirOp::Close {
                instance: ckpt.instance,
                node: 0,
            },
            None,
        );
    };
    let created_with = CreationAttributes {
        creation_flags: CreationFlags(ckpt.attrs.creation_flags),
        checkpoint_size: ckpt.attrs.checkpoint_size,
        retention_duration: ckpt.attrs.retention,
        max_sections: ckpt.attrs.max_sections,
        max_section_size: ckpt.attrs.max_section_size,
        max_section_id_size: ckpt.attrs.max_section_id_size,
    };
    let local = ckpt.replicas.contains(&node);
    let replica = if local {
        let dir = client.shm_dir()?;
        let attached = if client.sealed()? {
            // ckptd passed the replica's descriptor just before its answer.
            match passed
                .iter()
                .position(|(i, _)| *i == ckpt.instance)
                .map(|k| passed.swap_remove(k).1)
            {
                Some(fd) => Replica::attach_fd(&dir, fd),
                None => {
                    undo();
                    return Err(Error::Library(
                        "ckptd of a sealed node answered an open without the replica's \
                         descriptor",
                    ));
                }
            }
        } else {
            Replica::attach(&dir, &object_name(ckpt.instance), Sharing::default())
        };
        match attached {
            Ok(r) if r.instance() == ckpt.instance => r,
            Ok(_) => {
                undo();
                return Err(Error::Library("the node's replica is of another instance"));
            }
            Err(e) => {
                undo();
                return Err(from_attach(e));
            }
        }
    } else {
        // No replica on this node: every operation goes to the checkpoint's primary
        // through ckptd; the placeholder only keeps the handle's shape.
        match placeholder() {
            Some(r) => r,
            None => {
                undo();
                return Err(Error::NoMemory);
            }
        }
    };
    let inst = shared::cluster_instance(client, ckpt.instance, created_with, replica, local);
    let ck = CkptInner::new(Arc::downgrade(lib), inst, flags);
    {
        let mut s = lib.lock();
        if s.finalized {
            drop(s);
            ck.close_inner();
            return Err(Error::BadHandle);
        }
        s.checkpoints.insert(ck.handle, Arc::clone(&ck));
    }
    if lib.has_arrival() {
        ck.subscribe_arrivals();
    }
    Ok(Checkpoint { inner: ck })
}

/// An empty heap-backed replica that never becomes primary.
fn placeholder() -> Option<Replica> {
    let attrs = ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 64,
        retention_ns: 0,
        max_sections: 2,
        max_section_size: 64,
        max_section_id_size: 8,
    };
    let r = Replica::create_in_memory(&attrs, &ReplicaLimits::default()).ok()?;
    r.set_role(Role::Replica, 0);
    Some(r)
}

/// The shm object name of a cluster instance's replica (ckptd's naming).
pub(crate) fn object_name(instance: u64) -> String {
    format!("c{instance:016x}")
}
