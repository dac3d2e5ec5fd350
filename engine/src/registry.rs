//! The node registry: one shared object per domain (`<domain>/registry`) mapping checkpoint
//! names to replica instances, with per-process open counts, the unlinked flag, the time of
//! the last close and the retention duration. It is what lets processes on one node find
//! each other's checkpoints with no daemon, and what reclaims them when nobody does.
//!
//! Registry operations are control-path and rare, so they run under one lock word whose
//! holder is identified by its process token (dead holders are detected by their lock
//! file, as for agents) and a dirty flag: a taker that finds the flag set after a dead
//! holder re-derives every entry from first principles ([`Registry::repair`]). Open counts
//! are kept per process (opener records), so a process that dies holding opens loses them
//! at the next sweep, which starts the retention clock of checkpoints it left unopened.
//!
//! Replica objects are named `r-<instance as 16 hex digits>` in the same domain.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64 as ProcessCounter;

use crate::error::{AttachError, CreateError};
use crate::fsck::Report;
use crate::layout::HEADER_SIZE;
use crate::liveness;
use crate::replica::{CreateOptions, Replica, Role};
use crate::shm::{self, Mapping, Sharing};
use crate::sync::{AtomicU64, Ordering::*};
use crate::{ReplicaAttributes, ReplicaLimits};

const MAGIC: [u8; 8] = *b"CKPTREG\0";
const VERSION: u32 = 1;
const ENTRY_SIZE: u64 = 320;
const OPENER_SIZE: u64 = 32;
/// Longest checkpoint name (`SA_MAX_NAME_LENGTH`).
pub const MAX_NAME: usize = 256;
const NAME_OFF: u64 = 64;

// Header words (object offsets).
const H_VERSION: u64 = 8; // u32 at 8, header_size u32 at 12
const H_TOTAL: u64 = 16;
const H_ENTRIES: u64 = 24; // entry capacity
const H_OPENERS: u64 = 32; // opener capacity
const D_LOCK: u64 = 1024; // token << 32 | thread tag, 0 = free
const D_DIRTY: u64 = 1032;
const D_NEXT_INSTANCE: u64 = 1040;
const D_SEQ: u64 = 1048; // bumped on every change

// Entry words.
const E_STATE: u64 = 0; // kind | token << 32 (token for CREATING / DELETING)
const E_INSTANCE: u64 = 8;
const E_FLAGS: u64 = 16; // bit 0: unlinked
const E_RETENTION: u64 = 24; // ns
const E_LAST_CLOSE: u64 = 32; // CLOCK_BOOTTIME ns of the last close; 0 while open
const E_NAME_LEN: u64 = 40;
const E_CREATED: u64 = 48; // wall clock ns

const ENT_FREE: u64 = 0;
const ENT_CREATING: u64 = 1;
const ENT_ACTIVE: u64 = 2;
const ENT_DELETING: u64 = 3;
const FLAG_UNLINKED: u64 = 1;

// Opener words.
const O_TOKEN: u64 = 0;
const O_INSTANCE: u64 = 8;
const O_COUNT: u64 = 16;

/// Capacities of a new registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Checkpoints (names plus unlinked instances still open) on the node.
    pub entries: u32,
    /// (process, checkpoint) pairs with opens.
    pub openers: u32,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        Self {
            entries: 4096,
            openers: 16384,
        }
    }
}

/// Why a registry operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// No checkpoint has that name (or instance). (NOT_EXIST)
    NotExist,
    /// The name is too long or empty. (INVALID_PARAM)
    BadName,
    /// The registry is full. (NO_RESOURCES)
    NoSpace,
    /// The lock or a concurrent create outlasted the bounded wait. (TRY_AGAIN)
    TryAgain,
    /// The registry object could not be attached.
    Attach(AttachError),
    /// An object could not be created.
    Create(CreateError),
    /// The operating system refused with this errno.
    Io(i32),
}

impl core::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotExist => f.write_str("no such checkpoint"),
            Self::BadName => f.write_str("checkpoint name empty or longer than 256 bytes"),
            Self::NoSpace => f.write_str("node registry full"),
            Self::TryAgain => f.write_str("node registry busy, try again"),
            Self::Attach(e) => write!(f, "node registry: {e}"),
            Self::Create(e) => write!(f, "node registry: {e}"),
            Self::Io(e) => write!(f, "node registry: system error {e}"),
        }
    }
}

impl core::error::Error for RegistryError {}

/// What the registry knows about one checkpoint instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// Checkpoint name.
    pub name: Vec<u8>,
    /// Instance id (names the replica object).
    pub instance: u64,
    /// Unlinked: the name is gone, the instance lives until its last close.
    pub unlinked: bool,
    /// Opens by live processes.
    pub opens: u64,
    /// Retention duration, ns.
    pub retention_ns: i64,
    /// Nanoseconds since the last close (`None` while open).
    pub closed_for_ns: Option<i64>,
    /// Still being created.
    pub creating: bool,
}

/// A replica found or created through the registry, with this process's open counted.
#[derive(Debug)]
pub struct Opened {
    /// The mapped replica.
    pub replica: Replica,
    /// Its instance id.
    pub instance: u64,
    /// Whether this call created it.
    pub created: bool,
}

/// The node registry of one domain.
#[derive(Debug)]
pub struct Registry {
    map: Mapping,
    entries: u32,
    openers: u32,
    domain: PathBuf,
    sharing: Sharing,
}

fn boottime() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec)
        .max(1)
}

fn geometry(entries: u64, openers: u64) -> Option<(u64, u64, u64)> {
    if entries == 0 || openers == 0 || entries > 1 << 20 || openers > 1 << 22 {
        return None;
    }
    let off_entries = HEADER_SIZE;
    let off_openers = off_entries + entries * ENTRY_SIZE;
    let total = (off_openers + openers * OPENER_SIZE).div_ceil(4096) * 4096;
    Some((off_entries, off_openers, total))
}

static NEXT_TAG: ProcessCounter = ProcessCounter::new(1);

thread_local! {
    static THREAD_TAG: u64 = NEXT_TAG.fetch_add(1, Relaxed) & 0xffff_ffff;
}

/// Name of the replica object of `instance`.
pub fn replica_name(instance: u64) -> String {
    format!("r-{instance:016x}")
}

impl Registry {
    /// Opens (creating if needed) the registry of `domain`, then sweeps it.
    pub fn open(domain: &Path, sharing: Sharing) -> Result<Self, RegistryError> {
        Self::open_with(domain, sharing, RegistryLimits::default())
    }

    /// As [`Registry::open`], with the capacities used if this call creates it.
    pub fn open_with(
        domain: &Path,
        sharing: Sharing,
        limits: RegistryLimits,
    ) -> Result<Self, RegistryError> {
        crate::domain::ensure_domain(domain).map_err(RegistryError::Io)?;
        let path = domain.join("registry");
        for _ in 0..200 {
            match Self::attach_existing(&path, domain, sharing) {
                Ok(r) => {
                    r.sweep();
                    return Ok(r);
                }
                Err(RegistryError::Attach(AttachError::NotFound)) => {}
                Err(RegistryError::Attach(AttachError::NotInitialized)) => {
                    // A creator that died before publishing leaves an object that never
                    // initialises: past a grace period it is replaced.
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > std::time::Duration::from_secs(2));
                    if stale {
                        let _ = shm::remove(&path);
                    } else {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            let (e, o) = (u64::from(limits.entries), u64::from(limits.openers));
            let (_, _, total) =
                geometry(e, o).ok_or(RegistryError::Create(CreateError::InvalidAttributes))?;
            match shm::create(&path, total) {
                Ok(map) => {
                    let word = |off: u64| Self::word_at(&map, off);
                    word(0).store(u64::from_le_bytes(MAGIC), Relaxed);
                    word(H_TOTAL).store(total, Relaxed);
                    word(H_ENTRIES).store(e, Relaxed);
                    word(H_OPENERS).store(o, Relaxed);
                    word(D_NEXT_INSTANCE).store(1, Relaxed);
                    // SYNC POINT: version (with header size) last.
                    word(H_VERSION).store(u64::from(VERSION) | (HEADER_SIZE << 32), SeqCst);
                    shm::widen(&path, sharing).map_err(RegistryError::Io)?;
                    return Ok(Self {
                        map,
                        entries: e as u32,
                        openers: o as u32,
                        domain: domain.to_path_buf(),
                        sharing,
                    });
                }
                Err(CreateError::AlreadyExists) => continue,
                Err(e) => return Err(RegistryError::Create(e)),
            }
        }
        Err(RegistryError::TryAgain)
    }

    /// Attaches the existing registry of `domain` for inspection: unlike
    /// [`Registry::open`] it creates nothing and does not sweep, so what a checker looks at
    /// is what it reports (`ckpt fsck`). Fails with `Attach(`[`AttachError::NotFound`]`)`
    /// when the domain has no registry.
    pub fn attach(domain: &Path, sharing: Sharing) -> Result<Self, RegistryError> {
        Self::attach_existing(&domain.join("registry"), domain, sharing)
    }

    fn attach_existing(
        path: &Path,
        domain: &Path,
        sharing: Sharing,
    ) -> Result<Self, RegistryError> {
        let map = shm::attach(path, sharing, HEADER_SIZE).map_err(RegistryError::Attach)?;
        let word = |off: u64| Self::word_at(&map, off).load(SeqCst);
        let version = word(H_VERSION);
        if version == 0 {
            // A creator died before publishing: if it is stale, replace it.
            return Err(RegistryError::Attach(AttachError::NotInitialized));
        }
        if word(0) != u64::from_le_bytes(MAGIC) {
            return Err(RegistryError::Attach(AttachError::BadMagic));
        }
        if version != u64::from(VERSION) | (HEADER_SIZE << 32) {
            return Err(RegistryError::Attach(AttachError::UnsupportedVersion(
                version as u32,
            )));
        }
        let (e, o) = (word(H_ENTRIES), word(H_OPENERS));
        let (_, _, total) = geometry(e, o).ok_or(RegistryError::Attach(
            AttachError::CorruptHeader("registry capacities"),
        ))?;
        if total != word(H_TOTAL) || total != map.len() as u64 {
            return Err(RegistryError::Attach(AttachError::SizeMismatch {
                header: word(H_TOTAL),
                object: map.len() as u64,
            }));
        }
        Ok(Self {
            map,
            entries: e as u32,
            openers: o as u32,
            domain: domain.to_path_buf(),
            sharing,
        })
    }

    fn word_at(map: &Mapping, off: u64) -> &AtomicU64 {
        assert!(
            off.is_multiple_of(8) && off + 8 <= map.len() as u64,
            "registry word out of bounds"
        );
        // SAFETY: in bounds (checked above), 8-aligned (page-aligned base), and shared
        // words are only accessed atomically.
        unsafe { &*map.ptr().add(off as usize).cast::<AtomicU64>() }
    }

    fn w(&self, off: u64) -> &AtomicU64 {
        Self::word_at(&self.map, off)
    }

    fn entry(&self, i: u32, off: u64) -> &AtomicU64 {
        debug_assert!(i < self.entries);
        self.w(HEADER_SIZE + u64::from(i) * ENTRY_SIZE + off)
    }

    fn opener(&self, i: u32, off: u64) -> &AtomicU64 {
        debug_assert!(i < self.openers);
        self.w(HEADER_SIZE
            + u64::from(self.entries) * ENTRY_SIZE
            + u64::from(i) * OPENER_SIZE
            + off)
    }

    /// The domain directory.
    pub fn domain(&self) -> &Path {
        &self.domain
    }

    fn token(&self) -> Result<u32, RegistryError> {
        liveness::process_lock(&self.domain)
            .map(|l| l.token())
            .map_err(RegistryError::Io)
    }

    fn alive(&self, token: u32) -> bool {
        liveness::is_alive(&self.domain, token)
    }

    // ---- lock ---------------------------------------------------------------------

    fn locked<R>(
        &self,
        f: impl FnOnce(&Self) -> Result<R, RegistryError>,
    ) -> Result<R, RegistryError> {
        let me = (u64::from(self.token()?) << 32) | THREAD_TAG.with(|t| *t);
        let lock = self.w(D_LOCK);
        let mut took_over = false;
        let mut got = false;
        for i in 0..4000u32 {
            match lock.compare_exchange(0, me, AcqRel, Acquire) {
                Ok(_) => {
                    got = true;
                    break;
                }
                Err(h) if h == me => return Err(RegistryError::TryAgain), // re-entry: a bug
                Err(h) => {
                    if i % 16 == 15
                        && !self.alive((h >> 32) as u32)
                        && lock.compare_exchange(h, me, AcqRel, Acquire).is_ok()
                    {
                        took_over = true;
                        got = true;
                        break;
                    }
                    if i < 32 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(500));
                    }
                }
            }
        }
        if !got {
            return Err(RegistryError::TryAgain);
        }
        if took_over || self.w(D_DIRTY).load(Acquire) != 0 {
            self.repair_locked();
        }
        self.w(D_DIRTY).store(1, SeqCst);
        let out = f(self);
        self.w(D_SEQ).fetch_add(1, AcqRel);
        self.w(D_DIRTY).store(0, SeqCst);
        lock.store(0, Release);
        out
    }

    // ---- entries ------------------------------------------------------------------

    fn name_matches(&self, i: u32, name: &[u8]) -> bool {
        if self.entry(i, E_NAME_LEN).load(Acquire) != name.len() as u64 {
            return false;
        }
        self.read_name(i) == name
    }

    fn read_name(&self, i: u32) -> Vec<u8> {
        let len = (self.entry(i, E_NAME_LEN).load(Acquire) as usize).min(MAX_NAME);
        let mut out = Vec::with_capacity(len);
        for k in 0..len.div_ceil(8) as u64 {
            let b = self.entry(i, NAME_OFF + 8 * k).load(Relaxed).to_le_bytes();
            let take = (len - out.len()).min(8);
            out.extend_from_slice(&b[..take]);
        }
        out
    }

    fn write_name(&self, i: u32, name: &[u8]) {
        for (k, chunk) in name.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.entry(i, NAME_OFF + 8 * k as u64)
                .store(u64::from_le_bytes(b), Relaxed);
        }
        self.entry(i, E_NAME_LEN).store(name.len() as u64, Release);
    }

    fn kind(&self, i: u32) -> u64 {
        self.entry(i, E_STATE).load(Acquire) & 0xff
    }

    /// The entry holding `name` (not unlinked), if any.
    fn find_name(&self, name: &[u8]) -> Option<u32> {
        (0..self.entries).find(|&i| {
            matches!(self.kind(i), ENT_CREATING | ENT_ACTIVE)
                && self.entry(i, E_FLAGS).load(Acquire) & FLAG_UNLINKED == 0
                && self.name_matches(i, name)
        })
    }

    fn find_instance(&self, instance: u64) -> Option<u32> {
        (0..self.entries).find(|&i| {
            self.kind(i) != ENT_FREE && self.entry(i, E_INSTANCE).load(Acquire) == instance
        })
    }

    fn opens_of(&self, instance: u64) -> u64 {
        (0..self.openers)
            .filter(|&o| {
                self.opener(o, O_TOKEN).load(Acquire) != 0
                    && self.opener(o, O_INSTANCE).load(Acquire) == instance
            })
            .map(|o| self.opener(o, O_COUNT).load(Acquire))
            // Saturating: the counts are shared words and may hold anything.
            .fold(0u64, u64::saturating_add)
    }

    fn check_name(name: &[u8]) -> Result<(), RegistryError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(RegistryError::BadName);
        }
        Ok(())
    }

    /// The instance currently named `name`.
    pub fn lookup(&self, name: &[u8]) -> Option<u64> {
        Self::check_name(name).ok()?;
        let i = self.find_name(name)?;
        (self.kind(i) == ENT_ACTIVE).then(|| self.entry(i, E_INSTANCE).load(Acquire))
    }

    /// Finds checkpoint `name`, or creates it with `attrs` when `create` is given: one
    /// process creates, concurrent openers wait for it (bounded) and attach. The open is
    /// counted for this process; balance it with [`Registry::close`].
    pub fn open_replica(
        &self,
        name: &[u8],
        create: Option<(&ReplicaAttributes, &ReplicaLimits)>,
    ) -> Result<Opened, RegistryError> {
        self.open_replica_as(name, create, Role::Primary)
    }

    /// As [`Registry::open_replica`]; a replica this call creates starts in `role`.
    pub fn open_replica_as(
        &self,
        name: &[u8],
        create: Option<(&ReplicaAttributes, &ReplicaLimits)>,
        role: Role,
    ) -> Result<Opened, RegistryError> {
        Self::check_name(name)?;
        for round in 0..400 {
            enum Step {
                Attach(u64),
                Create(u64, u32),
                Wait,
            }
            let step = self.locked(|r| {
                if let Some(i) = r.find_name(name) {
                    let inst = r.entry(i, E_INSTANCE).load(Acquire);
                    return Ok(match r.kind(i) {
                        ENT_ACTIVE => Step::Attach(inst),
                        _ => Step::Wait,
                    });
                }
                let Some((attrs, _)) = create else {
                    return Err(RegistryError::NotExist);
                };
                let i = (0..r.entries)
                    .find(|&i| r.kind(i) == ENT_FREE)
                    .ok_or(RegistryError::NoSpace)?;
                let inst = r.w(D_NEXT_INSTANCE).fetch_add(1, AcqRel);
                let token = r.token()?;
                r.entry(i, E_INSTANCE).store(inst, Relaxed);
                r.entry(i, E_FLAGS).store(0, Relaxed);
                r.entry(i, E_RETENTION)
                    .store(attrs.retention_ns as u64, Relaxed);
                r.entry(i, E_LAST_CLOSE).store(0, Relaxed);
                r.entry(i, E_CREATED)
                    .store(crate::replica::wall_clock() as u64, Relaxed);
                r.write_name(i, name);
                r.entry(i, E_STATE)
                    .store(ENT_CREATING | (u64::from(token) << 32), SeqCst);
                Ok(Step::Create(inst, i))
            })?;
            match step {
                Step::Wait => {
                    if round % 20 == 19 {
                        // Its creator may have died: the sweep's repair frees the entry.
                        self.sweep();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Step::Attach(inst) => {
                    let replica =
                        match Replica::attach(&self.domain, &replica_name(inst), self.sharing) {
                            Ok(r) => r,
                            // Deleted between our lookup and attach: look again.
                            Err(AttachError::NotFound) => continue,
                            Err(e) => return Err(RegistryError::Attach(e)),
                        };
                    match self.add_open(inst) {
                        Ok(()) => {}
                        Err(RegistryError::NotExist) => continue,
                        Err(e) => return Err(e),
                    }
                    return Ok(Opened {
                        replica,
                        instance: inst,
                        created: false,
                    });
                }
                Step::Create(inst, i) => {
                    let (attrs, limits) = create.ok_or(RegistryError::NotExist)?;
                    let opts = CreateOptions {
                        limits: *limits,
                        sharing: self.sharing,
                        instance: inst,
                        role,
                    };
                    let made = Replica::create(&self.domain, &replica_name(inst), attrs, &opts);
                    let ok = made.is_ok();
                    let finish = self.locked(|r| {
                        if ok {
                            r.entry(i, E_STATE).store(ENT_ACTIVE, SeqCst);
                            r.add_open_locked(inst)
                        } else {
                            r.entry(i, E_STATE).store(ENT_FREE, SeqCst);
                            Ok(())
                        }
                    });
                    let replica = made.map_err(RegistryError::Create)?;
                    finish?;
                    return Ok(Opened {
                        replica,
                        instance: inst,
                        created: true,
                    });
                }
            }
        }
        Err(RegistryError::TryAgain)
    }

    fn add_open_locked(&self, instance: u64) -> Result<(), RegistryError> {
        let token = u64::from(self.token()?);
        let i = self
            .find_instance(instance)
            .ok_or(RegistryError::NotExist)?;
        if self.kind(i) != ENT_ACTIVE {
            // Being deleted (its last close raced this open): the caller looks again.
            return Err(RegistryError::NotExist);
        }
        let mut free = None;
        for o in 0..self.openers {
            let t = self.opener(o, O_TOKEN).load(Acquire);
            if t == token && self.opener(o, O_INSTANCE).load(Acquire) == instance {
                self.opener(o, O_COUNT).fetch_add(1, AcqRel);
                self.entry(i, E_LAST_CLOSE).store(0, Release);
                return Ok(());
            }
            if t == 0 && free.is_none() {
                free = Some(o);
            }
        }
        let o = free.ok_or(RegistryError::NoSpace)?;
        self.opener(o, O_INSTANCE).store(instance, Relaxed);
        self.opener(o, O_COUNT).store(1, Relaxed);
        self.opener(o, O_TOKEN).store(token, Release);
        // A re-open cancels retention.
        self.entry(i, E_LAST_CLOSE).store(0, Release);
        Ok(())
    }

    /// Counts one more open of `instance` by this process.
    pub fn add_open(&self, instance: u64) -> Result<(), RegistryError> {
        self.locked(|r| r.add_open_locked(instance))
    }

    /// Counts one close of `instance` by this process. At the last close an unlinked
    /// instance is deleted at once; otherwise its retention clock starts.
    pub fn close(&self, instance: u64) -> Result<(), RegistryError> {
        let token = u64::from(self.token()?);
        let remove = self.locked(|r| {
            let i = r.find_instance(instance).ok_or(RegistryError::NotExist)?;
            let o = (0..r.openers)
                .find(|&o| {
                    r.opener(o, O_TOKEN).load(Acquire) == token
                        && r.opener(o, O_INSTANCE).load(Acquire) == instance
                })
                .ok_or(RegistryError::NotExist)?;
            let left = r.opener(o, O_COUNT).load(Acquire).saturating_sub(1);
            r.opener(o, O_COUNT).store(left, Release);
            if left == 0 {
                r.opener(o, O_TOKEN).store(0, Release);
            }
            Ok(r.after_last_close(i))
        })?;
        if remove {
            self.remove_instance(instance);
        }
        Ok(())
    }

    /// Under the lock: if `i` has no opens left, starts retention or, when unlinked or
    /// with zero retention, marks it DELETING (the caller removes it). Returns whether to
    /// remove.
    fn after_last_close(&self, i: u32) -> bool {
        let instance = self.entry(i, E_INSTANCE).load(Acquire);
        if self.kind(i) != ENT_ACTIVE || self.opens_of(instance) != 0 {
            return false;
        }
        let unlinked = self.entry(i, E_FLAGS).load(Acquire) & FLAG_UNLINKED != 0;
        let retention = self.entry(i, E_RETENTION).load(Acquire) as i64;
        if unlinked || retention <= 0 {
            self.mark_deleting(i);
            return true;
        }
        if self.entry(i, E_LAST_CLOSE).load(Acquire) == 0 {
            self.entry(i, E_LAST_CLOSE)
                .store(boottime() as u64, Release);
        }
        false
    }

    fn mark_deleting(&self, i: u32) {
        let token = self.token().unwrap_or(0);
        self.entry(i, E_STATE)
            .store(ENT_DELETING | (u64::from(token) << 32), SeqCst);
    }

    /// Removes the object of a DELETING instance, then frees its entry.
    fn remove_instance(&self, instance: u64) {
        let _ = Replica::remove(&self.domain, &replica_name(instance));
        let _ = self.locked(|r| {
            if let Some(i) = r.find_instance(instance)
                && r.kind(i) == ENT_DELETING
            {
                r.entry(i, E_STATE).store(ENT_FREE, SeqCst);
            }
            Ok(())
        });
    }

    /// Unlinks `name`: the name is gone at once (a create makes a new instance); the
    /// instance is deleted at its last close (now, if nobody has it open).
    pub fn unlink(&self, name: &[u8]) -> Result<(), RegistryError> {
        Self::check_name(name)?;
        let removed = self.locked(|r| {
            let i = r.find_name(name).ok_or(RegistryError::NotExist)?;
            r.entry(i, E_FLAGS).fetch_or(FLAG_UNLINKED, AcqRel);
            let inst = r.entry(i, E_INSTANCE).load(Acquire);
            Ok(r.after_last_close(i).then_some(inst))
        })?;
        if let Some(inst) = removed {
            self.remove_instance(inst);
        }
        Ok(())
    }

    /// Sets the retention duration of `instance` (ns).
    pub fn set_retention(&self, instance: u64, retention_ns: i64) -> Result<(), RegistryError> {
        self.locked(|r| {
            let i = r.find_instance(instance).ok_or(RegistryError::NotExist)?;
            r.entry(i, E_RETENTION)
                .store(retention_ns.max(0) as u64, Release);
            Ok(())
        })
    }

    /// Drops the opens of dead processes, then deletes every instance whose retention
    /// has run out (or that is unlinked with no opens left). Returns how many were
    /// deleted. Runs at every [`Registry::open`].
    pub fn sweep(&self) -> usize {
        let doomed = self
            .locked(|r| {
                r.repair_locked();
                let now = boottime();
                let mut doomed = Vec::new();
                for i in 0..r.entries {
                    if r.kind(i) != ENT_ACTIVE {
                        continue;
                    }
                    let inst = r.entry(i, E_INSTANCE).load(Acquire);
                    if r.opens_of(inst) != 0 {
                        continue;
                    }
                    let closed = r.entry(i, E_LAST_CLOSE).load(Acquire) as i64;
                    let retention = r.entry(i, E_RETENTION).load(Acquire) as i64;
                    let unlinked = r.entry(i, E_FLAGS).load(Acquire) & FLAG_UNLINKED != 0;
                    if unlinked || (closed > 0 && now.saturating_sub(closed) >= retention) {
                        r.mark_deleting(i);
                        doomed.push(inst);
                    } else if closed == 0 {
                        // Its openers died: the retention clock starts now.
                        r.entry(i, E_LAST_CLOSE).store(now as u64, Release);
                    }
                }
                Ok(doomed)
            })
            .unwrap_or_default();
        for inst in &doomed {
            self.remove_instance(*inst);
        }
        liveness::sweep(&self.domain);
        doomed.len()
    }

    fn drop_dead_openers(&self) {
        let mut verdict: Vec<(u64, bool)> = Vec::new();
        for o in 0..self.openers {
            let t = self.opener(o, O_TOKEN).load(Acquire);
            if t == 0 {
                continue;
            }
            let alive = match verdict.iter().find(|v| v.0 == t) {
                Some(v) => v.1,
                None => {
                    let a = self.alive(t as u32);
                    verdict.push((t, a));
                    a
                }
            };
            if !alive {
                self.opener(o, O_TOKEN).store(0, Release);
            }
        }
    }

    /// Under the lock after a dead holder: re-derive every entry.
    fn repair_locked(&self) {
        self.drop_dead_openers();
        for i in 0..self.entries {
            let st = self.entry(i, E_STATE).load(Acquire);
            let token = (st >> 32) as u32;
            match st & 0xff {
                ENT_FREE | ENT_ACTIVE => {}
                ENT_CREATING | ENT_DELETING if self.alive(token) => {}
                ENT_CREATING | ENT_DELETING => {
                    // Its creator or deleter died: the object (if any) goes, the entry too.
                    let inst = self.entry(i, E_INSTANCE).load(Acquire);
                    let _ = Replica::remove(&self.domain, &replica_name(inst));
                    self.entry(i, E_STATE).store(ENT_FREE, SeqCst);
                }
                _ => self.entry(i, E_STATE).store(ENT_FREE, SeqCst),
            }
            if self.entry(i, E_NAME_LEN).load(Acquire) > MAX_NAME as u64 {
                self.entry(i, E_STATE).store(ENT_FREE, SeqCst);
            }
        }
    }

    /// Every entry, for listing.
    pub fn entries(&self) -> Vec<EntryInfo> {
        (0..self.entries)
            .filter(|&i| matches!(self.kind(i), ENT_ACTIVE | ENT_CREATING))
            .map(|i| self.entry_info(i))
            .collect()
    }

    /// What the registry knows about `instance` (read without the lock), if it is there.
    pub fn info(&self, instance: u64) -> Option<EntryInfo> {
        let i = self.find_instance(instance)?;
        matches!(self.kind(i), ENT_ACTIVE | ENT_CREATING).then(|| self.entry_info(i))
    }

    fn entry_info(&self, i: u32) -> EntryInfo {
        let now = boottime();
        {
            {
                let inst = self.entry(i, E_INSTANCE).load(Acquire);
                let closed = self.entry(i, E_LAST_CLOSE).load(Acquire) as i64;
                EntryInfo {
                    name: self.read_name(i),
                    instance: inst,
                    unlinked: self.entry(i, E_FLAGS).load(Acquire) & FLAG_UNLINKED != 0,
                    opens: self.opens_of(inst),
                    retention_ns: self.entry(i, E_RETENTION).load(Acquire) as i64,
                    closed_for_ns: (closed > 0).then(|| now.saturating_sub(closed)),
                    creating: self.kind(i) == ENT_CREATING,
                }
            }
        }
    }

    /// Checks the registry's invariants: entry states valid, names within bounds, no two
    /// linked entries with one name, no two entries with one instance, every ACTIVE
    /// instance's object present, opener records naming existing instances, the lock
    /// free or held by a live process, no object in the domain that no entry accounts for.
    pub fn fsck(&self) -> Report {
        let mut r = Report {
            quiescent: true,
            ..Report::default()
        };
        let lock = self.w(D_LOCK).load(Acquire);
        if lock != 0 {
            r.quiescent = false;
            if !self.alive((lock >> 32) as u32) {
                r.push("registry-lock", "held by a dead process");
            }
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut instances: Vec<u64> = Vec::new();
        for i in 0..self.entries {
            let st = self.entry(i, E_STATE).load(Acquire);
            let kind = st & 0xff;
            if kind == ENT_FREE {
                continue;
            }
            if kind > ENT_DELETING {
                r.push("registry-entry-state", format!("entry {i}: state {kind}"));
                continue;
            }
            let len = self.entry(i, E_NAME_LEN).load(Acquire);
            if len == 0 || len > MAX_NAME as u64 {
                r.push("registry-name", format!("entry {i}: name length {len}"));
                continue;
            }
            let inst = self.entry(i, E_INSTANCE).load(Acquire);
            if instances.contains(&inst) {
                r.push(
                    "registry-instance-unique",
                    format!("instance {inst} in two entries"),
                );
            }
            instances.push(inst);
            let name = self.read_name(i);
            if self.entry(i, E_FLAGS).load(Acquire) & FLAG_UNLINKED == 0 {
                if names.contains(&name) {
                    r.push(
                        "registry-name-unique",
                        format!("name {:?} linked twice", String::from_utf8_lossy(&name)),
                    );
                }
                names.push(name);
            }
            if (kind == ENT_CREATING || kind == ENT_DELETING) && !self.alive((st >> 32) as u32) {
                r.push("registry-owner", format!("entry {i}: creator/deleter died"));
            }
            if kind == ENT_ACTIVE && !self.domain.join(replica_name(inst)).exists() {
                r.push(
                    "registry-object",
                    format!("instance {inst} has no replica object"),
                );
            }
        }
        for o in 0..self.openers {
            if self.opener(o, O_TOKEN).load(Acquire) == 0 {
                continue;
            }
            let inst = self.opener(o, O_INSTANCE).load(Acquire);
            if !instances.contains(&inst) {
                r.push(
                    "registry-opener",
                    format!("opener {o} names unknown instance {inst}"),
                );
            }
        }
        if let Ok(dir) = std::fs::read_dir(&self.domain) {
            for e in dir.flatten() {
                let name = e.file_name();
                let Some(hex) = name.to_str().and_then(|n| n.strip_prefix("r-")) else {
                    continue;
                };
                match u64::from_str_radix(hex, 16) {
                    Ok(inst) if instances.contains(&inst) => {}
                    _ => r.push(
                        "registry-orphan-object",
                        format!("{} is not in the registry", e.path().display()),
                    ),
                }
            }
        }
        r.sections = instances.len() as u64;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(retention_ns: i64) -> ReplicaAttributes {
        ReplicaAttributes {
            creation_flags: 0,
            checkpoint_size: 1000,
            retention_ns,
            max_sections: 10,
            max_section_size: 100,
            max_section_id_size: 16,
        }
    }

    #[test]
    fn open_with_create_then_open_finds_the_same_instance() {
        let dir = crate::testutil::temp_domain();
        let reg = Registry::open(&dir, Sharing::default()).unwrap();
        let a = reg
            .open_replica(b"ck", Some((&attrs(0), &ReplicaLimits::default())))
            .unwrap();
        assert!(a.created);
        let b = reg.open_replica(b"ck", None).unwrap();
        assert_eq!((b.instance, b.created), (a.instance, false));
        assert_eq!(reg.entries()[0].opens, 2);
        assert!(reg.fsck().is_clean(), "{}", reg.fsck());
    }

    #[test]
    fn replica_created_as_non_primary_refuses_writes_and_info_reports_it() {
        let dir = crate::testutil::temp_domain();
        let reg = Registry::open(&dir, Sharing::default()).unwrap();
        let limits = ReplicaLimits::default();
        let a = reg
            .open_replica_as(b"ck", Some((&attrs(5), &limits)), Role::Replica)
            .unwrap();
        assert_eq!(a.replica.role(), (Role::Replica, 0));
        assert_eq!(
            a.replica.create_section(Some(b"s"), i64::MAX, b""),
            Err(crate::SectionError::NotPrimary)
        );
        let info = reg.info(a.instance).unwrap();
        assert_eq!(
            (info.opens, info.retention_ns, info.unlinked),
            (1, 5, false)
        );
        assert_eq!(reg.info(a.instance + 1), None);
    }

    #[test]
    fn last_close_with_zero_retention_deletes_the_object() {
        let dir = crate::testutil::temp_domain();
        let reg = Registry::open(&dir, Sharing::default()).unwrap();
        let a = reg
            .open_replica(b"ck", Some((&attrs(0), &ReplicaLimits::default())))
            .unwrap();
        reg.close(a.instance).unwrap();
        assert_eq!(reg.lookup(b"ck"), None);
        assert!(!dir.join(replica_name(a.instance)).exists());
        assert!(reg.fsck().is_clean(), "{}", reg.fsck());
    }

    #[test]
    fn unlink_while_open_hides_the_name_and_deletes_at_last_close() {
        let dir = crate::testutil::temp_domain();
        let reg = Registry::open(&dir, Sharing::default()).unwrap();
        let a = reg
            .open_replica(
                b"ck",
                Some((&attrs(1_000_000_000), &ReplicaLimits::default())),
            )
            .unwrap();
        reg.unlink(b"ck").unwrap();
        assert_eq!(reg.lookup(b"ck"), None);
        let b = reg
            .open_replica(b"ck", Some((&attrs(0), &ReplicaLimits::default())))
            .unwrap();
        assert_ne!(a.instance, b.instance);
        assert!(dir.join(replica_name(a.instance)).exists());
        reg.close(a.instance).unwrap();
        assert!(!dir.join(replica_name(a.instance)).exists());
        assert!(reg.fsck().is_clean(), "{}", reg.fsck());
    }

    #[test]
    fn retention_keeps_a_closed_checkpoint_until_it_expires() {
        let dir = crate::testutil::temp_domain();
        let reg = Registry::open(&dir, Sharing::default()).unwrap();
        let a = reg
            .open_replica(b"ck", Some((&attrs(50_000_000), &ReplicaLimits::default())))
            .unwrap();
        reg.close(a.instance).unwrap();
        assert_eq!(reg.sweep(), 0);
        assert_eq!(reg.lookup(b"ck"), Some(a.instance));
        std::thread::sleep(std::time::Duration::from_millis(80));
        assert_eq!(reg.sweep(), 1);
        assert_eq!(reg.lookup(b"ck"), None);
        assert!(!dir.join(replica_name(a.instance)).exists());
    }

    #[test]
    fn names_are_bounded() {
        let dir = crate::testutil::temp_domain();
        let reg = Registry::open(&dir, Sharing::default()).unwrap();
        assert_eq!(
            reg.open_replica(&[b'x'; 257], None).unwrap_err(),
            RegistryError::BadName
        );
        assert_eq!(
            reg.open_replica(b"", None).unwrap_err(),
            RegistryError::BadName
        );
        assert_eq!(
            reg.open_replica(b"nope", None).unwrap_err(),
            RegistryError::NotExist
        );
    }
}
