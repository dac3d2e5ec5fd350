//! [`Replica`]: one checkpoint replica in shared memory, and every data and section
//! operation on it. The lock-free protocol is in [`crate::protocol`]; the section index,
//! journal and recovery live in their own files as further `impl Replica` blocks.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64 as ProcessCounter;

use crate::error::{AttachError, CreateError, SectionError, VectorError};
use crate::journal::{CellFields, CellWord, section_word};
use crate::layout::{
    HEADER_SIZE, HeaderImage, KIND_CACHED, KIND_FREE, KIND_LIVE, KIND_OWNED, LAYOUT_VERSION, NONE,
    PINS_PER_AGENT, ReplicaAttributes, ReplicaLimits, agent as ag, compute_image, current_gen,
    current_slot, current_word, desc as dw, hdr, meta, state_kind, state_payload, state_word,
};
use crate::liveness;
use crate::protocol::{self, PinError};
use crate::region::{AGENT_WORDS, AgentIx, DESC_WORDS, Desc, META_WORDS, Rec, Region, Slot};
use crate::shm::{self, Mapping, Sharing};
use crate::sync::{AtomicU64, Ordering::*, backoff};

mod sealed;

/// `SA_TIME_END`: a section that never expires.
pub const TIME_END: i64 = i64::MAX;

/// A wall clock in nanoseconds since the epoch (injectable for simulation).
pub type Clock = fn() -> i64;

/// The default [`Clock`]: `CLOCK_REALTIME`, read through the TSC where it can be (see
/// the `clock` module).
pub use crate::clock::wall_clock;

/// Replication role of a replica (header `role`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Takes local writes (the standalone default).
    #[default]
    Primary,
    /// Receives changes from the primary only; local writes give [`SectionError::NotPrimary`].
    Replica,
}

/// Which sections an iteration returns (`SaCkptSectionsChosenT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionFilter {
    /// Sections that never expire.
    Forever,
    /// Sections expiring at or before the time.
    ExpiringAtOrBefore(i64),
    /// Sections expiring at or after the time.
    ExpiringAtOrAfter(i64),
    /// Corrupted sections (never any here: commits are copy-on-write).
    Corrupted,
    /// Every section.
    Any,
}

/// What [`Replica::sections`] and [`Replica::section_info`] report about a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// The section id (empty for the default section).
    pub id: Vec<u8>,
    /// Absolute expiration, ns since the epoch ([`TIME_END`] for never).
    pub expiration: i64,
    /// Current size in bytes.
    pub size: u64,
    /// Wall-clock time of the last update, ns since the epoch.
    pub last_update: i64,
    /// Journal seq of the last change (the per-section version).
    pub version: u64,
}

/// `numberOfSections` and `memoryUsed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Sections present.
    pub sections: u32,
    /// Bytes of section data stored.
    pub memory_used: u64,
}

/// One element of a multi-element write.
#[derive(Clone, Copy, Debug)]
pub struct WriteElement<'a> {
    /// Target section.
    pub id: &'a [u8],
    /// Byte offset in the section.
    pub offset: u64,
    /// Bytes to write there.
    pub data: &'a [u8],
}

/// One element of a multi-element read.
#[derive(Debug)]
pub struct ReadElement<'a> {
    /// Source section.
    pub id: &'a [u8],
    /// Byte offset in the section.
    pub offset: u64,
    /// Destination; its length is the most that is read.
    pub buf: &'a mut [u8],
    /// Out: bytes actually read (`readSize`).
    pub read: usize,
}

// Operation records in the agent slot (kind | phase << 8 | count << 16).
pub(crate) const OP_NONE: u64 = 0;
pub(crate) const OP_WRITE: u64 = 1;
pub(crate) const OP_TXN: u64 = 2;
pub(crate) const OP_CREATE: u64 = 3;
pub(crate) const OP_DELETE: u64 = 4;
pub(crate) const OP_EXPIRE: u64 = 5;
pub(crate) const PH_RESERVING: u64 = 1;
pub(crate) const PH_RESERVED: u64 = 2;
pub(crate) const PH_PREPARED: u64 = 3;
pub(crate) const PH_DONE: u64 = 4;
pub(crate) const PH_COMMITTING: u64 = 5;

pub(crate) const fn op_kind(w: u64) -> u64 {
    w & 0xff
}
pub(crate) const fn op_phase(w: u64) -> u64 {
    (w >> 8) & 0xff
}

// Agent state word: status | gen << 8 | token << 32.
pub(crate) const AG_FREE: u64 = 0;
pub(crate) const AG_ALIVE: u64 = 1;
pub(crate) const AG_RECOVERING: u64 = 2;
pub(crate) const fn ag_word(status: u64, generation: u64, token: u32) -> u64 {
    status | ((generation & 0xff_ffff) << 8) | ((token as u64) << 32)
}
pub(crate) const fn ag_status(w: u64) -> u64 {
    w & 0xff
}
pub(crate) const fn ag_gen(w: u64) -> u64 {
    (w >> 8) & 0xff_ffff
}
pub(crate) const fn ag_token(w: u64) -> u32 {
    (w >> 32) as u32
}
/// The owner word that stands for agent `ix` at generation `generation` in leases and
/// slot/descriptor states. Never 0.
pub(crate) const fn owner_word(ix: u32, generation: u64) -> u64 {
    ((generation & 0xff_ffff) << 16) | (ix as u64 + 1)
}
pub(crate) const fn owner_ix(owner: u64) -> u32 {
    ((owner & 0xffff) as u32).wrapping_sub(1)
}
pub(crate) const fn owner_gen(owner: u64) -> u64 {
    owner >> 16
}

/// Token used for heap-backed replicas, whose only process is this one.
const HEAP_TOKEN: u32 = 1;
/// Bounded waits.
pub(crate) const SPIN_LIMIT: u32 = 20_000;
const ALLOC_TRIES: u32 = 256;
/// Copy-out reads tried without a pin before a read pins the slot (a writer recycling the
/// slot under every try: a section overwritten faster than it can be copied).
const OPTIMISTIC_READS: u32 = 2;

/// The calling thread's agent in one replica.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AgentCtx {
    pub(crate) ix: AgentIx,
    pub(crate) owner: u64,
}

impl AgentCtx {
    /// The pin word of a slot's meta that holds this agent's pin bit.
    #[inline]
    pub(crate) fn pin_word(&self) -> usize {
        (self.ix.0 / 64) as usize
    }

    /// This agent's bit in its pin word.
    #[inline]
    pub(crate) fn pin_bit(&self) -> u64 {
        1 << (self.ix.0 % 64)
    }
}

#[derive(Clone, Copy)]
struct CachedAgent {
    uid: u64,
    epoch: u64,
    ctx: AgentCtx,
}

impl CachedAgent {
    /// No agent: uid 0 names no replica (uids start at 1).
    const NONE: Self = Self {
        uid: 0,
        epoch: 0,
        ctx: AgentCtx {
            ix: AgentIx(0),
            owner: 0,
        },
    };
}

/// The calling thread's agents. When the thread exits, its agents are queued in
/// [`EXITED`] and released by the next thread that registers in the same replica (or by
/// the replica's drop), so thread pools that recycle threads do not exhaust the table.
struct ThreadAgents(Vec<CachedAgent>);

impl Drop for ThreadAgents {
    fn drop(&mut self) {
        let epoch = liveness::fork_epoch();
        let mut exited = EXITED.lock().unwrap_or_else(|p| p.into_inner());
        exited.extend(
            self.0
                .iter()
                .filter(|c| c.epoch == epoch)
                .map(|c| (c.uid, c.ctx.ix.0, c.ctx.owner)),
        );
    }
}

thread_local! {
    static AGENTS: RefCell<ThreadAgents> = const { RefCell::new(ThreadAgents(Vec::new())) };
    /// The agent this thread used last, in front of [`AGENTS`]: a plain `Copy` cell, so
    /// the write path's lookup is one thread-local load and two compares (no destructor
    /// registration check, no `RefCell` borrow, no search). Only a hint: a replica's uid
    /// is never reused in the process and a fork changes the epoch, so a stale entry
    /// cannot match.
    static LAST_AGENT: Cell<CachedAgent> = const { Cell::new(CachedAgent::NONE) };
}

/// Agents of exited threads: (replica uid, agent index, owner word).
static EXITED: Mutex<Vec<(u64, u32, u64)>> = Mutex::new(Vec::new());

static NEXT_UID: ProcessCounter = ProcessCounter::new(1);

/// One replica of a checkpoint, mapped into this process.
///
/// All methods take `&self` and may be called from any number of threads and processes at
/// once. Each thread that touches a replica gets its own agent record in it (released when
/// this `Replica` is dropped), which is where its pins, leases and in-flight work are
/// recorded for crash recovery.
#[derive(Debug)]
pub struct Replica {
    pub(crate) region: Region,
    pub(crate) domain: Option<PathBuf>,
    path: Option<PathBuf>,
    /// Process-unique, never reused: names this mapping in thread-local state.
    pub(crate) uid: u64,
    registered: Mutex<Vec<(u32, u64, u64)>>,
    /// Serialises this process's writers of the replication position (DESIGN.md §18).
    pub(crate) position_writer: Mutex<()>,
    /// The injected wall clock, if any (`None`: [`wall_clock`], called directly so the
    /// write path can inline it).
    pub(crate) clock: Option<Clock>,
}

/// An agent's record, located once by a write.
type AgentRec = Rec<AGENT_WORDS>;

/// The op record (engine/DESIGN.md "Crash recovery"): what this agent is doing, for
/// whoever recovers it.
impl AgentRec {
    #[inline]
    fn set_op(&self, kind: u64, phase: u64) {
        if kind != OP_NONE {
            // Recovery acts on OP_DESC/OP_SLOTS: a new operation must not inherit the
            // previous one's (the Release store below orders these first).
            self.at(ag::OP_DESC).store(u64::from(NONE), Relaxed);
            self.at(ag::OP_SLOTS).store(u64::MAX, Relaxed);
        }
        self.store_op(kind, phase);
    }

    /// Stores OP (Release) with `kind`, `phase` and the bumped count.
    #[inline]
    fn store_op(&self, kind: u64, phase: u64) {
        let w = self.at(ag::OP);
        let count = w.load(Relaxed) >> 16;
        w.store(kind | (phase << 8) | ((count + 1) << 16), Release);
    }

    /// Starts a write whose record words are known up front: OP_DESC and OP_SLOTS first,
    /// then OP (Release), so recovery, which reads them only under a kind other than
    /// OP_NONE, never pairs the new kind with the previous operation's words. (The
    /// operation before always ended with OP_NONE.) Not OP_DELTA: recovery reads a
    /// write's delta only in a phase that `reserve` reaches, and `reserve` stores it
    /// first. Two stores fewer than [`Self::set_op`] followed by the words.
    #[inline]
    fn begin_op(&self, kind: u64, desc: u64, slots: u64) {
        self.at(ag::OP_DESC).store(desc, Relaxed);
        self.at(ag::OP_SLOTS).store(slots, Relaxed);
        self.store_op(kind, 0);
    }

    #[inline]
    fn set_phase(&self, phase: u64) {
        let w = self.at(ag::OP);
        let cur = w.load(Relaxed);
        w.store((cur & !0xff00) | (phase << 8), Release);
    }
}

/// The section a single-section write commits to, located once.
#[derive(Clone, Copy)]
struct Target<'r> {
    d: Desc,
    generation: u32,
    rec: &'r Rec<DESC_WORDS>,
}

/// Options for [`Replica::create`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CreateOptions {
    /// Engine limits (agents, spares, journal).
    pub limits: ReplicaLimits,
    /// Group access.
    pub sharing: Sharing,
    /// Instance id recorded in the header (the registry assigns it).
    pub instance: u64,
    /// Role the replica starts in (term 0). A collocated asynchronous checkpoint starts as
    /// [`Role::Replica`]: it has no active replica until one is set.
    pub role: Role,
}

fn validate_attributes(attrs: &ReplicaAttributes) -> Result<(), CreateError> {
    let cap = u64::from(attrs.max_sections).checked_mul(attrs.max_section_size);
    if attrs.max_sections == 0
        || attrs.max_section_size == 0
        || cap.is_none_or(|c| attrs.checkpoint_size > c)
        || attrs.retention_ns < 0
    {
        return Err(CreateError::InvalidAttributes);
    }
    Ok(())
}

/// An absolute expiration time is never negative (fsck's `expiration` invariant).
fn check_expiration(expiration: i64) -> Result<(), SectionError> {
    if expiration < 0 {
        return Err(SectionError::BadArgument(&"negative expiration time"));
    }
    Ok(())
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u64::from_ne_bytes(b)
}

/// The validated layout of a new replica object of `attrs` (a fresh hash seed).
pub(crate) fn new_image(
    attrs: &ReplicaAttributes,
    opts: &CreateOptions,
) -> Result<HeaderImage, CreateError> {
    validate_attributes(attrs)?;
    compute_image(
        attrs,
        &opts.limits,
        opts.instance,
        random_u64(),
        wall_clock(),
    )
    .ok_or(CreateError::InvalidAttributes)
}

impl Replica {
    /// Creates the replica object `name` in `domain` (a directory, normally
    /// `/dev/shm/ckpt/<domain>`): exclusive create that never follows a symlink, mode 0600
    /// (0660 with a group), the whole size reserved with `posix_fallocate` (a full tmpfs
    /// gives [`CreateError::NoResources`], never SIGBUS later), pre-faulted, then
    /// initialised and published by the version store. With `max_sections == 1` the
    /// default section exists from the start.
    pub fn create(
        domain: &Path,
        name: &str,
        attrs: &ReplicaAttributes,
        opts: &CreateOptions,
    ) -> Result<Self, CreateError> {
        let img = new_image(attrs, opts)?;
        let path = domain.join(name);
        let map = shm::create(&path, img.total_size)?;
        let replica = Self::init(map, img, Some(domain.to_path_buf()), Some(path.clone()))?;
        // After the default section exists (a non-primary could not create it); attachers
        // through the registry wait for the creator, so none sees the primary role.
        if opts.role == Role::Replica {
            replica.set_role(Role::Replica, 0);
        }
        shm::widen(&path, opts.sharing).map_err(|e| {
            let _ = shm::remove(&path);
            CreateError::Io(e)
        })?;
        Ok(replica)
    }

    /// Creates a replica in process memory (simulation, model tests, benchmarks of the
    /// protocol without tmpfs). Behaves like a shared one used by a single process.
    pub fn create_in_memory(
        attrs: &ReplicaAttributes,
        limits: &ReplicaLimits,
    ) -> Result<Self, CreateError> {
        validate_attributes(attrs)?;
        let img = compute_image(attrs, limits, 0, random_u64(), wall_clock())
            .ok_or(CreateError::InvalidAttributes)?;
        let map = Mapping::heap(img.total_size).ok_or(CreateError::NoResources {
            needed: img.total_size,
        })?;
        Self::init(map, img, None, None)
    }

    fn init(
        map: Mapping,
        img: HeaderImage,
        domain: Option<PathBuf>,
        path: Option<PathBuf>,
    ) -> Result<Self, CreateError> {
        // Write the image with the version still 0, then the regions, then the version
        // (SeqCst) as the single SYNC POINT that makes the object attachable.
        let mut staged = img;
        staged.layout_version = 0;
        // SAFETY: the mapping is at least `total_size >= HEADER_SIZE` bytes, page-aligned,
        // and nobody else can have attached (the version is 0), so this plain write races
        // with no one.
        unsafe {
            core::ptr::write_volatile(map.ptr().cast::<HeaderImage>(), staged);
        }
        let region = Region::new(map, img);
        region.slot_hint().fill();
        region.desc_hint().fill();
        for d in 0..img.max_sections {
            region
                .desc(Desc(d), dw::CURRENT)
                .store(current_word(0, NONE), Relaxed);
            region
                .desc(Desc(d), dw::EXPIRATION)
                .store(TIME_END as u64, Relaxed);
        }
        // SYNC POINT: everything above happens-before any attacher's Acquire of the version.
        Region::version_word(region.mapping()).store(LAYOUT_VERSION, SeqCst);
        let replica = Self::from_region(region, domain, path);
        if img.max_sections == 1 && replica.create_default_section().is_err() {
            if let Some(path) = &replica.path {
                let _ = shm::remove(path);
            }
            return Err(CreateError::InvalidAttributes);
        }
        Ok(replica)
    }

    fn from_region(region: Region, domain: Option<PathBuf>, path: Option<PathBuf>) -> Self {
        Self {
            region,
            domain,
            path,
            uid: NEXT_UID.fetch_add(1, Relaxed),
            registered: Mutex::new(Vec::new()),
            position_writer: Mutex::new(()),
            clock: None,
        }
    }

    /// Attaches the existing replica object `name` in `domain`: owner and mode checked
    /// with `fstat`, every header field validated, pre-faulted mapping. Dead agents found
    /// in it are recovered before this returns.
    pub fn attach(domain: &Path, name: &str, sharing: Sharing) -> Result<Self, AttachError> {
        let path = domain.join(name);
        let map = shm::attach(&path, sharing, HEADER_SIZE)?;
        if Region::version_word(&map).load(SeqCst) == 0 {
            return Err(AttachError::NotInitialized);
        }
        // SAFETY: the mapping is at least a header long; the image is read by value
        // (volatile, since other processes share the page) and validated before use.
        let img = unsafe { core::ptr::read_volatile(map.ptr().cast::<HeaderImage>()) };
        img.validate(map.len() as u64)?;
        let replica = Self::from_region(
            Region::new(map, img),
            Some(domain.to_path_buf()),
            Some(path),
        );
        replica.recover_dead_agents();
        Ok(replica)
    }

    /// Removes the replica object `name` from `domain`. Processes that have it mapped keep
    /// a valid mapping until they drop it.
    pub fn remove(domain: &Path, name: &str) -> Result<(), i32> {
        shm::remove(&domain.join(name))
    }

    /// Replaces the wall clock (simulation, tests).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = Some(clock);
    }

    /// The wall clock: the injected one, else [`wall_clock`].
    #[inline]
    pub(crate) fn now(&self) -> i64 {
        match self.clock {
            None => wall_clock(),
            Some(clock) => clock(),
        }
    }

    /// The creation attributes.
    pub fn attributes(&self) -> ReplicaAttributes {
        self.region.img.attributes()
    }

    /// The instance id recorded at creation.
    pub fn instance(&self) -> u64 {
        self.region.img.instance
    }

    /// Where the object lives (None for in-memory replicas).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Bytes the object occupies.
    pub fn object_size(&self) -> u64 {
        self.region.img.total_size
    }

    /// Spare slots beyond `max_sections`.
    pub fn spare_slots(&self) -> u32 {
        self.region.img.slot_count - self.region.img.max_sections
    }

    /// Role and term from the header.
    pub fn role(&self) -> (Role, u64) {
        let role = if self.region.hdr(hdr::ROLE).load(Acquire) == 2 {
            Role::Replica
        } else {
            Role::Primary
        };
        (role, self.region.hdr(hdr::TERM).load(Acquire))
    }

    /// Whether agent `ix` (a [`Change::agent`](crate::Change::agent)) is one of this
    /// process's agents in this replica, through this `Replica` (the agent layer keeps one
    /// per instance and process).
    pub fn is_own_agent(&self, ix: u32) -> bool {
        let epoch = liveness::fork_epoch();
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|&(i, e, _)| i == ix && e == epoch)
    }

    /// Sets role and term (the cluster's directory decides them).
    pub fn set_role(&self, role: Role, term: u64) {
        self.region.hdr(hdr::TERM).store(term, SeqCst);
        self.region
            .hdr(hdr::ROLE)
            .store(if role == Role::Replica { 2 } else { 1 }, SeqCst);
    }

    /// `numberOfSections` and `memoryUsed`.
    pub fn status(&self) -> Status {
        if self.region.hdr(hdr::BUDGET_DIRTY).load(Acquire) != 0 {
            self.recount_budget();
        }
        Status {
            sections: self.region.hdr(hdr::SECTION_COUNT).load(Acquire) as u32,
            memory_used: self.region.hdr(hdr::STORED_BYTES).load(Acquire),
        }
    }

    // ---- agents -------------------------------------------------------------------

    fn token(&self) -> Result<u32, SectionError> {
        match &self.domain {
            None => Ok(HEAP_TOKEN),
            Some(d) => liveness::process_lock(d)
                .map(|l| l.token())
                .map_err(|_| SectionError::TryAgain),
        }
    }

    /// Whether the process holding `token` lives.
    pub(crate) fn token_alive(&self, token: u32) -> bool {
        match &self.domain {
            None => token == HEAP_TOKEN,
            Some(d) => liveness::is_alive(d, token),
        }
    }

    /// The calling thread's agent, registering one on first use.
    #[inline]
    pub(crate) fn agent(&self) -> Result<AgentCtx, SectionError> {
        let epoch = liveness::fork_epoch();
        let c = LAST_AGENT.with(Cell::get);
        if c.uid == self.uid && c.epoch == epoch {
            return Ok(c.ctx);
        }
        self.agent_listed(epoch)
    }

    /// [`Self::agent`] past the last-agent cell: the thread's list, else a new one.
    #[cold]
    #[inline(never)]
    fn agent_listed(&self, epoch: u64) -> Result<AgentCtx, SectionError> {
        let uid = self.uid;
        let hit = AGENTS.with(|a| {
            a.borrow()
                .0
                .iter()
                .find(|c| c.uid == uid && c.epoch == epoch)
                .map(|c| c.ctx)
        });
        let ctx = match hit {
            Some(ctx) => ctx,
            None => self.register_agent(epoch)?,
        };
        LAST_AGENT.with(|c| c.set(CachedAgent { uid, epoch, ctx }));
        Ok(ctx)
    }

    fn register_agent(&self, epoch: u64) -> Result<AgentCtx, SectionError> {
        self.release_exited_threads();
        let token = self.token()?;
        let cap = self.region.img.agent_capacity;
        for round in 0..2 {
            let start = (std::thread::current().id().as_u64_hash() % u64::from(cap)) as u32;
            for k in 0..cap {
                let ix = AgentIx((start + k) % cap);
                let state = self.region.agent(ix, ag::STATE);
                let seen = state.load(Acquire);
                if ag_status(seen) != AG_FREE {
                    continue;
                }
                let generation = ag_gen(seen);
                if state
                    .compare_exchange(seen, ag_word(AG_ALIVE, generation, token), AcqRel, Relaxed)
                    .is_err()
                {
                    continue;
                }
                self.region
                    .agent(ix, ag::PID)
                    .store(u64::from(std::process::id()), Relaxed);
                self.region.agent(ix, ag::OP).store(OP_NONE, Relaxed);
                self.region.agent(ix, ag::INTENT).store(u64::MAX, Relaxed);
                self.region
                    .agent(ix, ag::SPARE)
                    .store(u64::from(NONE), Relaxed);
                for p in 0..PINS_PER_AGENT as u64 {
                    self.region.agent(ix, ag::PINS + 8 * p).store(0, Relaxed);
                }
                let ctx = AgentCtx {
                    ix,
                    owner: owner_word(ix.0, generation),
                };
                self.registered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((ix.0, epoch, ctx.owner));
                AGENTS.with(|a| {
                    let mut a = a.borrow_mut();
                    a.0.retain(|c| c.uid != self.uid);
                    a.0.push(CachedAgent {
                        uid: self.uid,
                        epoch,
                        ctx,
                    });
                });
                return Ok(ctx);
            }
            if round == 0 {
                self.recover_dead_agents();
            }
        }
        Err(SectionError::TryAgain)
    }

    /// Whether the agent behind `owner` is gone (dead process, or its record was already
    /// recovered and reused). Recovers it when its process is dead.
    pub(crate) fn owner_gone(&self, owner: u64) -> bool {
        let Some(ix) = self.region.agent_ix(owner_ix(owner)) else {
            return true;
        };
        let seen = self.region.agent(ix, ag::STATE).load(Acquire);
        if ag_gen(seen) != owner_gen(owner) || ag_status(seen) == AG_FREE {
            return true;
        }
        if ag_status(seen) == AG_ALIVE && self.token_alive(ag_token(seen)) {
            return false;
        }
        self.recover_agent(ix);
        let now = self.region.agent(ix, ag::STATE).load(Acquire);
        ag_gen(now) != owner_gen(owner) || ag_status(now) == AG_FREE
    }

    #[inline]
    pub(crate) fn set_op(&self, a: AgentCtx, kind: u64, phase: u64) {
        self.region.agent_rec(a.ix).set_op(kind, phase);
    }

    #[inline]
    fn set_phase(&self, a: AgentCtx, phase: u64) {
        self.region.agent_rec(a.ix).set_phase(phase);
    }

    // ---- leases -------------------------------------------------------------------

    /// Takes the lease of the section whose descriptor is `rec`.
    #[inline]
    pub(crate) fn lease(&self, a: AgentCtx, rec: &Rec<DESC_WORDS>) -> Result<(), SectionError> {
        // The common case, free, in line; anything else (held, ours already, a dead
        // holder) goes the bounded way below.
        let w = rec.at(dw::LEASE);
        if w.compare_exchange(0, a.owner, AcqRel, Acquire).is_ok() {
            return Ok(());
        }
        self.lease_slow(a, w)
    }

    /// [`Self::lease`] past its first try; `w` is the lease word.
    #[cold]
    #[inline(never)]
    fn lease_slow(&self, a: AgentCtx, w: &AtomicU64) -> Result<(), SectionError> {
        let mut holder = 0;
        let mut since = None;
        for i in 0..SPIN_LIMIT {
            match w.compare_exchange(holder, a.owner, AcqRel, Acquire) {
                Ok(_) => return Ok(()),
                Err(h) if h == a.owner => return Ok(()),
                Err(h) => {
                    if h == 0 {
                        holder = 0;
                        continue;
                    }
                    holder = 0;
                    if i % 256 == 255 && self.owner_gone(h) {
                        // Stale lease of a recovered agent: take it over from exactly `h`.
                        holder = h;
                        continue;
                    }
                    if !backoff(i, &mut since) {
                        break;
                    }
                }
            }
        }
        Err(SectionError::TryAgain)
    }

    #[inline]
    pub(crate) fn release_lease(&self, a: AgentCtx, rec: &Rec<DESC_WORDS>) {
        // Only this agent can hold its lease (a lease is taken over only once its owner is
        // recovered, i.e. dead), so a plain store releases it.
        let lease = rec.at(dw::LEASE);
        if lease.load(Relaxed) == a.owner {
            lease.store(0, Release);
        }
    }

    // ---- allocation ---------------------------------------------------------------

    /// A slot for `a` (whose record is `ar`) to fill: OWNED by it, recorded in its SPARE
    /// (its own spare) or its INTENT (any other).
    #[inline(always)]
    pub(crate) fn alloc_slot(&self, a: AgentCtx, ar: &AgentRec) -> Result<Slot, SectionError> {
        // This agent's spare first: the slot its previous write superseded, when nobody
        // was reading it (protocol rule 4). One CAS, no trip through the free list.
        let spare = ar.at(ag::SPARE);
        if let Some(s) = self.region.slot_ix(spare.load(Relaxed) as u32) {
            let state = self.region.meta_rec(s).at(meta::STATE);
            if state.load(Relaxed) == protocol::cached(a.owner) {
                // SPARE keeps naming it, and is its crash record (no INTENT store):
                // recovery frees the slot SPARE names when it finds it CACHED or OWNED by
                // the dead agent. Every other reader of SPARE (the next write, other
                // agents short of slots, fsck) acts only on a slot it finds CACHED.
                if protocol::take_cached(state, a.owner, a.owner) {
                    return Ok(s);
                }
            }
        }
        self.alloc_slot_from_pool(a)
    }

    /// [`Self::alloc_slot`] without a spare of this agent's: the pool, then the others'
    /// spares.
    #[cold]
    #[inline(never)]
    fn alloc_slot_from_pool(&self, a: AgentCtx) -> Result<Slot, SectionError> {
        let intent = self.region.agent(a.ix, ag::INTENT);
        let hint = self.region.slot_hint();
        let start = a.ix.0.wrapping_mul(4099);
        for round in 0..2 {
            for _ in 0..ALLOC_TRIES {
                let Some(cand) = hint.find(start) else { break };
                let Some(s) = self.region.slot_ix(cand) else {
                    break;
                };
                // Crash record only: the SeqCst claim below keeps it ordered before the claim.
                intent.store((1 << 32) | u64::from(cand), Relaxed);
                let state = self.region.meta(s, meta::STATE);
                if protocol::claim_free(state, a.owner) {
                    hint.clear(cand);
                    return Ok(s);
                }
                hint.clear(cand);
                if state.load(SeqCst) == KIND_FREE {
                    hint.set(cand);
                }
            }
            if round == 0 {
                if let Some(s) = self.take_spare_of_others(a) {
                    return Ok(s);
                }
                self.recover_dead_agents();
            }
        }
        Err(SectionError::TryAgain)
    }

    /// The pool is dry: takes over another agent's spare (CACHED) slot, if any.
    fn take_spare_of_others(&self, a: AgentCtx) -> Option<Slot> {
        let intent = self.region.agent(a.ix, ag::INTENT);
        for ix in 0..self.region.img.agent_capacity {
            let Some(s) = self
                .region
                .slot_ix(self.region.agent(AgentIx(ix), ag::SPARE).load(Relaxed) as u32)
            else {
                continue;
            };
            let state = self.region.meta(s, meta::STATE);
            let seen = state.load(SeqCst);
            if state_kind(seen) != KIND_CACHED {
                continue;
            }
            intent.store((1 << 32) | u64::from(s.0), Relaxed);
            if protocol::take_cached(state, state_payload(seen), a.owner) {
                return Some(s);
            }
        }
        None
    }

    /// Returns a slot this agent owns to the pool.
    pub(crate) fn free_owned_slot(&self, a_owner: u64, s: Slot) {
        let state = self.region.meta(s, meta::STATE);
        if state
            .compare_exchange(protocol::owned(a_owner), KIND_FREE, SeqCst, SeqCst)
            .is_ok()
        {
            self.region.slot_hint().set(s.0);
        }
    }

    fn alloc_desc(&self, a: AgentCtx) -> Result<Desc, SectionError> {
        let hint = self.region.desc_hint();
        let intent = self.region.agent(a.ix, ag::INTENT);
        for round in 0..2 {
            for _ in 0..ALLOC_TRIES {
                let Some(cand) = hint.find(a.ix.0.wrapping_mul(4099)) else {
                    break;
                };
                let Some(d) = self.region.desc_ix(cand) else {
                    break;
                };
                intent.store((2 << 32) | u64::from(cand), Relaxed);
                let state = self.region.desc(d, dw::STATE);
                if state
                    .compare_exchange(KIND_FREE, state_word(KIND_OWNED, a.owner), SeqCst, SeqCst)
                    .is_ok()
                {
                    hint.clear(cand);
                    return Ok(d);
                }
                hint.clear(cand);
                if state.load(SeqCst) == KIND_FREE {
                    hint.set(cand);
                }
            }
            if round == 0 {
                self.recover_dead_agents();
            }
        }
        Err(SectionError::NoSpace)
    }

    pub(crate) fn free_desc(&self, d: Desc) {
        self.region.desc(d, dw::LEASE).store(0, SeqCst);
        self.region.desc(d, dw::STATE).store(KIND_FREE, SeqCst);
        self.region.desc_hint().set(d.0);
    }

    /// Retires the superseded slot `old` of `d` after a single-section commit by `a`: kept
    /// as `a`'s spare when nobody pins it and `a` keeps none yet, else [`Self::retire_slot`].
    /// (`ar` is `a`'s record, `om` the meta words of `old`.)
    #[inline(always)]
    fn retire_slot_keep(
        &self,
        a: AgentCtx,
        ar: &AgentRec,
        d: Desc,
        old: Slot,
        om: &Rec<META_WORDS>,
    ) {
        let spare = ar.at(ag::SPARE);
        let keeps_one = self
            .region
            .slot_ix(spare.load(Relaxed) as u32)
            .is_some_and(|s| {
                self.region.meta_rec(s).at(meta::STATE).load(Relaxed) == protocol::cached(a.owner)
            });
        if keeps_one {
            return self.retire_slot_cold(d, old);
        }
        // Named before the state says CACHED: recovery frees what a dead keeper's SPARE
        // names (a SPARE naming a slot in any other state is ignored).
        spare.store(u64::from(old.0), Relaxed);
        let tag = om.at(meta::VERSION).load(Acquire);
        let done =
            protocol::retire_or_keep(om.at(meta::STATE), self.region.pins(old), d.0, tag, a.owner);
        if done == protocol::Retired::Freed {
            self.region.slot_hint().set(old.0);
        }
    }

    /// [`Self::retire_slot`] off a writer's common path (its agent keeps a spare already).
    #[cold]
    #[inline(never)]
    fn retire_slot_cold(&self, d: Desc, old: Slot) {
        self.retire_slot(d, old);
    }

    /// Retires the superseded slot `old` of `d`, freeing it now if no one pins it.
    pub(crate) fn retire_slot(&self, d: Desc, old: Slot) {
        let tag = self.region.meta(old, meta::VERSION).load(Acquire);
        if protocol::retire(
            self.region.meta(old, meta::STATE),
            self.region.pins(old),
            d.0,
            tag,
        ) {
            self.region.slot_hint().set(old.0);
        }
    }

    // ---- budget -------------------------------------------------------------------

    fn budget_bounded(&self) -> bool {
        let img = &self.region.img;
        img.checkpoint_size < u64::from(img.max_sections).saturating_mul(img.max_section_size)
    }

    /// Reserves `delta` stored bytes (negative deltas always succeed). The op record's
    /// phase goes RESERVING → RESERVED around the shared update, so recovery knows when the
    /// counter may hold a dead writer's delta.
    fn reserve(&self, a: AgentCtx, delta: i64) -> Result<(), SectionError> {
        self.region
            .agent(a.ix, ag::OP_DELTA)
            .store(delta as u64, Relaxed);
        self.set_phase(a, PH_RESERVING);
        let counter = self.region.hdr(hdr::STORED_BYTES);
        if delta > 0 && self.budget_bounded() {
            let limit = self.region.img.checkpoint_size;
            let mut cur = counter.load(Acquire);
            loop {
                let next = cur.saturating_add(delta as u64);
                if next > limit {
                    self.region.agent(a.ix, ag::OP_DELTA).store(0, Relaxed);
                    self.set_phase(a, 0);
                    return Err(SectionError::NoResources);
                }
                match counter.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                    Ok(_) => break,
                    Err(c) => cur = c,
                }
            }
        } else if delta != 0 {
            counter.fetch_add(delta as u64, AcqRel);
        }
        self.set_phase(a, PH_RESERVED);
        Ok(())
    }

    /// Gives back a reservation. The phase goes back to RESERVING first: a crash in
    /// between leaves the counter flagged uncertain instead of undone twice.
    fn unreserve(&self, a: AgentCtx, delta: i64) {
        if delta == 0 {
            // Nothing was (or needed to be) added: nothing to give back.
            return;
        }
        self.set_phase(a, PH_RESERVING);
        self.region
            .hdr(hdr::STORED_BYTES)
            .fetch_sub(delta as u64, AcqRel);
    }

    // ---- checks -------------------------------------------------------------------

    #[inline]
    fn check_primary(&self) -> Result<(), SectionError> {
        if self.region.hdr(hdr::ROLE).load(Relaxed) == 2 {
            return Err(SectionError::NotPrimary);
        }
        Ok(())
    }

    /// The role check of a local change; none for the replication applier (`APPLY`, a
    /// constant, so the normal path compiles to exactly `check_primary`).
    #[inline(always)]
    fn check_role<const APPLY: bool>(&self) -> Result<(), SectionError> {
        if APPLY {
            return Ok(());
        }
        self.check_primary()
    }

    #[inline]
    fn check_id(&self, id: &[u8]) -> Result<(), SectionError> {
        if id.len() as u64 > self.region.img.max_section_id_size || id.len() > u16::MAX as usize {
            return Err(SectionError::BadArgument(
                &"section id longer than maxSectionIdSize",
            ));
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn is_default_checkpoint(&self) -> bool {
        self.region.img.max_sections == 1
    }

    // ---- section create / delete -------------------------------------------------

    fn create_default_section(&self) -> Result<(), SectionError> {
        self.create_section_inner::<false>(&[], TIME_END, &[])
    }

    /// Creates a section. `id = None` asks for a generated id (returned). Errors:
    /// `Exists` (the id exists, or the checkpoint has only its default section),
    /// `NoSpace` (maxSections reached), `TooBig` (initial data larger than maxSectionSize),
    /// `BadArgument` (id too long or empty, negative expiration), `NoResources`
    /// (checkpointSize), `NotPrimary`,
    /// `TryAgain`.
    ///
    /// An expiration time already in the past is accepted: the section is created and is
    /// reaped (it reads as absent) from then on.
    pub fn create_section(
        &self,
        id: Option<&[u8]>,
        expiration: i64,
        data: &[u8],
    ) -> Result<Vec<u8>, SectionError> {
        self.create_section_as::<false>(id, expiration, data)
    }

    /// [`Replica::create_section`]; with `APPLY`, for the replication applier (no role
    /// check, here and in the reap of an expired id).
    pub(crate) fn create_section_as<const APPLY: bool>(
        &self,
        id: Option<&[u8]>,
        expiration: i64,
        data: &[u8],
    ) -> Result<Vec<u8>, SectionError> {
        if self.is_default_checkpoint() {
            return Err(SectionError::Exists);
        }
        if data.len() as u64 > self.region.img.max_section_size {
            return Err(SectionError::TooBig);
        }
        check_expiration(expiration)?;
        match id {
            Some(id) => {
                self.check_id(id)?;
                if id.is_empty() {
                    // Spec §4.1: only a default section has the empty id; `None` asks for
                    // a generated one.
                    return Err(SectionError::BadArgument(&"empty section id"));
                }
                self.reap_if_expired::<APPLY>(id);
                self.create_section_inner::<APPLY>(id, expiration, data)?;
                Ok(id.to_vec())
            }
            None => {
                let max = self.region.img.max_section_id_size.min(20) as usize;
                if max == 0 {
                    return Err(SectionError::BadArgument(&"maxSectionIdSize is 0"));
                }
                for _ in 0..64 {
                    // Wrapping: the counter is a shared word and may hold anything.
                    let n = self
                        .region
                        .hdr(hdr::GENERATED_IDS)
                        .fetch_add(1, AcqRel)
                        .wrapping_add(1);
                    let text = n.to_string();
                    let gen_id = &text.as_bytes()[text.len().saturating_sub(max)..];
                    match self.create_section_inner::<APPLY>(gen_id, expiration, data) {
                        Err(SectionError::Exists) => continue,
                        Err(e) => return Err(e),
                        Ok(()) => return Ok(gen_id.to_vec()),
                    }
                }
                Err(SectionError::NoSpace)
            }
        }
    }

    /// Deletes section `id` if it has expired but is not reaped yet: it already reads as
    /// absent (spec §4.2), so creating it again must not give `Exists`. Races like
    /// [`Replica::reap_expired`].
    fn reap_if_expired<const APPLY: bool>(&self, id: &[u8]) {
        let (Ok(()), Ok(a)) = (self.check_role::<APPLY>(), self.agent()) else {
            return;
        };
        let Some(d) = self.probe(id, self.key_of(id)) else {
            return;
        };
        let exp = self.region.desc(d, dw::EXPIRATION).load(Acquire) as i64;
        if exp == TIME_END || exp > self.now() {
            return;
        }
        let generation = current_gen(self.region.desc(d, dw::CURRENT).load(Acquire));
        let _ = self.delete_desc(a, d, generation);
    }

    fn create_section_inner<const APPLY: bool>(
        &self,
        id: &[u8],
        expiration: i64,
        data: &[u8],
    ) -> Result<(), SectionError> {
        self.check_role::<APPLY>()?;
        let a = self.agent()?;
        let key = self.key_of(id);
        if self.lookup_key(id, key).is_ok() {
            return Err(SectionError::Exists);
        }
        // maxSections reached is NO_SPACE before any budget check, whether or not
        // checkpointSize is below maxSections * maxSectionSize. `alloc_desc` decides races.
        if self.region.hdr(hdr::SECTION_COUNT).load(Acquire)
            >= u64::from(self.region.img.max_sections)
        {
            return Err(SectionError::NoSpace);
        }
        self.set_op(a, OP_CREATE, 0);
        let delta = data.len() as i64;
        if let Err(e) = self.reserve(a, delta) {
            self.set_op(a, OP_NONE, 0);
            return Err(e);
        }
        let fail = |e: SectionError| {
            self.unreserve(a, delta);
            self.set_op(a, OP_NONE, 0);
            e
        };
        let d = self.alloc_desc(a).map_err(fail)?;
        let generation =
            current_gen(self.region.desc(d, dw::CURRENT).load(Acquire)).wrapping_add(1);
        self.region
            .agent(a.ix, ag::OP_DESC)
            .store(u64::from(d.0) | (u64::from(generation) << 32), Release);
        let s = match self.alloc_slot(a, self.region.agent_rec(a.ix)) {
            Ok(s) => s,
            Err(e) => {
                self.free_desc(d);
                return Err(fail(e));
            }
        };
        self.region
            .agent(a.ix, ag::OP_SLOTS)
            .store(u64::from(s.0) | (u64::from(NONE) << 32), Release);
        self.store_id(d, id, key);
        self.region
            .desc(d, dw::EXPIRATION)
            .store(expiration as u64, Release);
        let time = self.now();
        self.fill_slot(s, &[], 0, &[(0, data)], data.len() as u64, time);
        let f = CellFields {
            section: CellWord::Is(section_word(d, generation)),
            s,
            offset: 0,
            len: CellWord::Is(data.len() as u64),
            kind: crate::journal::KIND_CREATE,
            time: CellWord::Is(time as u64),
        };
        let seq = match self.claim_seq(a, f) {
            Ok(seq) => seq,
            Err(e) => {
                self.free_owned_slot(a.owner, s);
                self.free_desc(d);
                return Err(fail(e));
            }
        };
        self.region.meta(s, meta::VERSION).store(seq, Release);
        self.region
            .meta(s, meta::STATE)
            .store(protocol::live(d.0), SeqCst);
        self.region
            .desc(d, dw::CURRENT)
            .store(current_word(generation, s.0), SeqCst);
        self.set_phase(a, PH_PREPARED);

        let outcome = self.with_struct_lock(a, || {
            if self.probe(id, key).is_some() {
                return Err(SectionError::Exists);
            }
            self.index_insert(d, key);
            // Commit point of a create.
            self.region
                .desc(d, dw::STATE)
                .store(state_word(KIND_LIVE, 0), SeqCst);
            // Said while the lock keeps everyone off the descriptor: once it is released the
            // section may be deleted, and its state would no longer tell recovery.
            self.set_phase(a, PH_COMMITTING);
            self.region.hdr(hdr::SECTION_COUNT).fetch_add(1, AcqRel);
            Ok(())
        });
        match outcome {
            Ok(()) => {
                self.complete_seq(seq);
                self.set_op(a, OP_NONE, PH_DONE);
                self.notify();
                Ok(())
            }
            Err(e) => {
                self.region
                    .desc(d, dw::CURRENT)
                    .store(current_word(generation, NONE), SeqCst);
                self.region
                    .meta(s, meta::STATE)
                    .store(protocol::owned(a.owner), SeqCst);
                self.free_owned_slot(a.owner, s);
                self.free_desc(d);
                self.abort_seq(seq);
                Err(fail(e))
            }
        }
    }

    /// Deletes a section. Errors: `NotExist`, `BadArgument` (the default section),
    /// `NotPrimary`, `TryAgain`.
    pub fn delete_section(&self, id: &[u8]) -> Result<(), SectionError> {
        self.delete_section_as::<false>(id)
    }

    /// [`Replica::delete_section`]; with `APPLY`, for the replication applier.
    pub(crate) fn delete_section_as<const APPLY: bool>(
        &self,
        id: &[u8],
    ) -> Result<(), SectionError> {
        if self.is_default_checkpoint() && id.is_empty() {
            return Err(SectionError::BadArgument(
                &"the default section cannot be deleted",
            ));
        }
        self.check_role::<APPLY>()?;
        self.check_id(id).map_err(|_| SectionError::NotExist)?;
        let a = self.agent()?;
        let (d, generation) = self.lookup(id)?;
        self.delete_desc(a, d, generation)
    }

    pub(crate) fn delete_desc(
        &self,
        a: AgentCtx,
        d: Desc,
        generation: u32,
    ) -> Result<(), SectionError> {
        let rec = self.region.desc_rec(d);
        self.lease(a, rec)?;
        let cur = self.region.desc(d, dw::CURRENT).load(Acquire);
        let live = state_kind(self.region.desc(d, dw::STATE).load(Acquire)) == KIND_LIVE;
        if current_gen(cur) != generation || current_slot(cur) == NONE || !live {
            self.release_lease(a, rec);
            return Err(SectionError::NotExist);
        }
        let Some(old) = self.region.slot_ix(current_slot(cur)) else {
            self.release_lease(a, rec);
            return Err(SectionError::Corrupted(
                &"descriptor names a slot out of range",
            ));
        };
        self.set_op(a, OP_DELETE, 0);
        self.region
            .agent(a.ix, ag::OP_DESC)
            .store(u64::from(d.0) | (u64::from(generation) << 32), Release);
        self.region
            .agent(a.ix, ag::OP_SLOTS)
            .store(u64::from(NONE) | (u64::from(old.0) << 32), Release);
        let f = CellFields {
            section: CellWord::Is(section_word(d, generation)),
            s: Slot(NONE),
            offset: 0,
            len: CellWord::Is(0),
            kind: crate::journal::KIND_DELETE,
            time: CellWord::Is(self.now() as u64),
        };
        let seq = match self.claim_seq(a, f) {
            Ok(seq) => seq,
            Err(e) => {
                self.set_op(a, OP_NONE, 0);
                self.release_lease(a, rec);
                return Err(e);
            }
        };
        self.set_phase(a, PH_PREPARED);
        let key = self.region.desc(d, dw::KEY).load(Acquire);
        let locked = self.with_struct_lock(a, || {
            // Commit point of a delete.
            self.region
                .desc(d, dw::STATE)
                .store(state_word(crate::layout::KIND_RETIRED, a.owner), SeqCst);
            self.index_remove(d, key);
            self.region
                .desc(d, dw::CURRENT)
                .store(current_word(generation.wrapping_add(1), NONE), SeqCst);
            self.region.hdr(hdr::SECTION_COUNT).fetch_sub(1, AcqRel);
            Ok(())
        });
        if let Err(e) = locked {
            self.abort_seq(seq);
            self.set_op(a, OP_NONE, 0);
            self.release_lease(a, rec);
            return Err(e);
        }
        self.finish_delete(a.owner, d, old);
        self.complete_seq(seq);
        self.set_op(a, OP_NONE, PH_DONE);
        self.notify();
        Ok(())
    }

    /// The part of a delete after its commit point (also run by recovery).
    pub(crate) fn finish_delete(&self, _owner: u64, d: Desc, old: Slot) {
        let size = self.region.meta(old, meta::SIZE).load(Acquire);
        if protocol::is_live_for(self.region.meta(old, meta::STATE).load(SeqCst), d.0) {
            self.retire_slot(d, old);
            self.region.hdr(hdr::STORED_BYTES).fetch_sub(size, AcqRel);
        }
        self.free_desc(d);
    }

    /// Sets a section's absolute expiration time ([`TIME_END`]: never). Errors:
    /// `NotExist`, `BadArgument` (the default section, or a negative time), `NotPrimary`.
    pub fn set_expiration(&self, id: &[u8], expiration: i64) -> Result<(), SectionError> {
        self.set_expiration_as::<false>(id, expiration)
    }

    /// [`Replica::set_expiration`]; with `APPLY`, for the replication applier.
    pub(crate) fn set_expiration_as<const APPLY: bool>(
        &self,
        id: &[u8],
        expiration: i64,
    ) -> Result<(), SectionError> {
        if self.is_default_checkpoint() && id.is_empty() {
            return Err(SectionError::BadArgument(
                &"the default section never expires",
            ));
        }
        check_expiration(expiration)?;
        self.check_role::<APPLY>()?;
        self.check_id(id).map_err(|_| SectionError::NotExist)?;
        let a = self.agent()?;
        let (d, generation) = self.lookup(id)?;
        let rec = self.region.desc_rec(d);
        self.lease(a, rec)?;
        let cur = self.region.desc(d, dw::CURRENT).load(Acquire);
        if current_gen(cur) != generation {
            self.release_lease(a, rec);
            return Err(SectionError::NotExist);
        }
        let slot = Slot(current_slot(cur));
        // The op record, not the journal cell, tells recovery what this was: a cell's kind
        // is written after the cell is claimed and may still be the one of a ring ago.
        self.set_op(a, OP_EXPIRE, 0);
        self.region
            .agent(a.ix, ag::OP_DESC)
            .store(u64::from(d.0) | (u64::from(generation) << 32), Relaxed);
        self.region
            .agent(a.ix, ag::OP_DELTA)
            .store(expiration as u64, Relaxed);
        let f = CellFields {
            section: CellWord::Is(section_word(d, generation)),
            s: slot,
            offset: expiration as u64,
            len: CellWord::Is(0),
            kind: crate::journal::KIND_EXPIRATION,
            time: CellWord::Is(self.now() as u64),
        };
        let seq = self.claim_seq(a, f);
        if let Ok(seq) = seq {
            self.set_phase(a, PH_PREPARED);
            self.region
                .desc(d, dw::EXPIRATION)
                .store(expiration as u64, SeqCst);
            self.complete_seq(seq);
        }
        self.set_op(a, OP_NONE, PH_DONE);
        self.release_lease(a, rec);
        self.notify();
        seq.map(|_| ())
    }

    /// Deletes every section whose expiration time is at or before `now`; returns how many.
    /// Does nothing on a [`Role::Replica`] (the node daemon reaps there, when it orders
    /// the changes, with [`Applier::reap_expired`](crate::Applier::reap_expired)).
    pub fn reap_expired(&self, now: i64) -> usize {
        self.reap_expired_as::<false>(now)
    }

    /// [`Replica::reap_expired`]; with `APPLY`, for the node daemon ordering the changes of
    /// a checkpoint whose role stays [`Role::Replica`] for applications.
    pub(crate) fn reap_expired_as<const APPLY: bool>(&self, now: i64) -> usize {
        // Only the primary reaps (replicas receive its deletes), so replicas never diverge
        // by clock.
        if self.check_role::<APPLY>().is_err() {
            return 0;
        }
        let Ok(a) = self.agent() else { return 0 };
        let mut n = 0;
        for d in 0..self.region.img.max_sections {
            let d = Desc(d);
            let exp = self.region.desc(d, dw::EXPIRATION).load(Acquire) as i64;
            if exp == TIME_END || exp > now {
                continue;
            }
            if state_kind(self.region.desc(d, dw::STATE).load(Acquire)) != KIND_LIVE {
                continue;
            }
            let generation = current_gen(self.region.desc(d, dw::CURRENT).load(Acquire));
            if self.delete_desc(a, d, generation).is_ok() {
                n += 1;
            }
        }
        n
    }

    // ---- writes -------------------------------------------------------------------

    /// Fills slot `s` (owned by the caller): the first `keep` bytes of `base`, zeros up to
    /// `size`, then each `(offset, bytes)` in order; records size and last update.
    #[inline(always)]
    fn fill_slot(
        &self,
        s: Slot,
        base: &[u8],
        keep: u64,
        elems: &[(u64, &[u8])],
        size: u64,
        time: i64,
    ) {
        self.fill_bytes(s, base, keep, elems, size);
        self.stamp_slot(s, size, time);
    }

    /// Records the size and last update of slot `s` (owned by the caller).
    #[inline(always)]
    fn stamp_slot(&self, s: Slot, size: u64, time: i64) {
        let m = self.region.meta_rec(s);
        m.at(meta::SIZE).store(size, Relaxed);
        m.at(meta::LAST_UPDATE).store(time as u64, Relaxed);
    }

    /// The bytes of [`Self::fill_slot`].
    #[inline(always)]
    fn fill_bytes(&self, s: Slot, base: &[u8], keep: u64, elems: &[(u64, &[u8])], size: u64) {
        // The claim that took this slot comes before its new bytes, for pin-free readers.
        protocol::before_fill();
        let dst = self.region.slot_ptr(s);
        debug_assert!(size <= self.region.img.slot_stride);
        // SAFETY: `s` is OWNED by this agent (claimed by CAS and not yet published), so no
        // other party reads or writes its bytes; every range below is within `size`, which
        // the callers bound by `max_section_size <= slot_stride`; `base` is a distinct
        // (live, immutable) slot or caller memory. Only a corrupted slot state (a current
        // slot marked FREE, then claimed as its own section's new slot) makes `base` this
        // very slot, so the base copy uses `copy`, which allows the overlap.
        unsafe {
            core::ptr::copy(base.as_ptr(), dst, keep as usize);
            // Zero only what no element covers: an overwrite writes each byte once.
            let zero = |from: u64, to: u64| {
                if to > from {
                    core::ptr::write_bytes(dst.add(from as usize), 0, (to - from) as usize);
                }
            };
            if let [(off, bytes)] = elems {
                zero(keep, (*off).min(size));
                zero(keep.max(*off + bytes.len() as u64), size);
            } else {
                let mut covered: Vec<(u64, u64)> = elems
                    .iter()
                    .map(|(off, b)| (*off, *off + b.len() as u64))
                    .collect();
                covered.sort_unstable();
                let mut zero_from = keep;
                for (from, to) in covered {
                    zero(zero_from, from.min(size));
                    zero_from = zero_from.max(to);
                }
                zero(zero_from, size);
            }
            for (off, bytes) in elems {
                core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.add(*off as usize), bytes.len());
            }
        }
    }

    /// The committed bytes of a slot the caller keeps from being recycled (pinned, or the
    /// current slot of a section whose lease the caller holds).
    fn slot_bytes(&self, s: Slot, len: u64) -> &[u8] {
        let len = len.min(self.region.img.slot_stride) as usize;
        // SAFETY: the slot is published (immutable) and cannot be freed while the caller
        // pins it or holds its section's lease; `len` is clamped to the slot.
        unsafe { core::slice::from_raw_parts(self.region.slot_ptr(s), len) }
    }

    /// Replaces a section's data; its size becomes `data.len()`. Errors: `NotExist`,
    /// `TooBig`, `NoResources`, `NotPrimary`, `TryAgain`.
    pub fn overwrite(&self, id: &[u8], data: &[u8]) -> Result<(), SectionError> {
        self.overwrite_as::<false>(id, data)
    }

    /// [`Replica::overwrite`]; with `APPLY`, for the replication applier.
    pub(crate) fn overwrite_as<const APPLY: bool>(
        &self,
        id: &[u8],
        data: &[u8],
    ) -> Result<(), SectionError> {
        if data.len() as u64 > self.region.img.max_section_size {
            return Err(SectionError::TooBig);
        }
        self.check_role::<APPLY>()?;
        let (d, generation) = self.lookup_for_write(id)?;
        let a = self.agent()?;
        let ar = self.region.agent_rec(a.ix);
        // The clock, the section, then the new version's bytes into a slot of this agent's,
        // before the lease (engine/DESIGN.md section 11): the copy never holds up another
        // writer of the section. The slot is OWNED and named by INTENT, so recovery frees
        // it if this writer dies before the lease. Without a slot at hand, the usual order
        // (lease, then a slot filled under it). The clock is read first: `rdtsc` after the
        // copy waits for its stores on the machine measured.
        let time = self.now();
        let Ok(new) = self.alloc_slot(a, ar) else {
            return self.overwrite_unfilled(a, d, generation, data);
        };
        let size = data.len() as u64;
        // Stamped first: the commit reads the size and time back from the slot, so that
        // they need not be kept across the copy's call.
        self.stamp_slot(new, size, time);
        self.fill_bytes(new, &[], 0, &[(0, data)], size);
        let target = Target {
            d,
            generation,
            rec: self.region.desc_rec(d),
        };
        if let Err(e) = self.lease(a, target.rec) {
            return self.refuse_filled(a, new, e);
        }
        let result = self.commit_filled(a, target, new);
        self.release_lease(a, target.rec);
        result
    }

    /// The commit of an overwrite under the lease of `t`, its new version `new` filled
    /// and stamped: [`Self::write_one_leased`]'s steps for one part that replaces all,
    /// written out for the hot path, with the size and time read back from `new`'s meta
    /// (the agent's own slot, which nobody else writes). On every refusal `new` goes back.
    #[inline(always)]
    fn commit_filled(&self, a: AgentCtx, t: Target<'_>, new: Slot) -> Result<(), SectionError> {
        let Target { d, generation, .. } = t;
        let (old, old_size) = match self.current_version(t) {
            Ok(v) => v,
            Err(e) => return self.refuse_filled(a, new, e),
        };
        let nm = self.region.meta_rec(new);
        let size = nm
            .at(meta::SIZE)
            .load(Relaxed)
            .min(self.region.img.max_section_size);
        let delta = size as i64 - old_size as i64;
        let ar = self.region.agent_rec(a.ix);
        ar.begin_op(
            OP_WRITE,
            section_word(d, generation),
            u64::from(new.0) | (u64::from(old.0) << 32),
        );
        if delta != 0
            && let Err(e) = self.reserve(a, delta)
        {
            ar.set_op(OP_NONE, 0);
            return self.refuse_filled(a, new, e);
        }
        // The section, size and time read back from the op record and the slot's stamp.
        let f = CellFields {
            section: CellWord::Load(ar.at(ag::OP_DESC)),
            s: new,
            offset: 0,
            len: CellWord::Load(nm.at(meta::SIZE)),
            kind: crate::journal::KIND_OVERWRITE,
            time: CellWord::Load(nm.at(meta::LAST_UPDATE)),
        };
        let seq = match self.claim_seq(a, f) {
            Ok(seq) => seq,
            Err(e) => return self.abandon_filled(a, new, e),
        };
        self.publish_version(a, ar, t, new, seq);
        self.complete_seq(seq);
        ar.set_op(OP_NONE, PH_DONE);
        self.notify();
        Ok(())
    }

    /// An overwrite without a slot at hand: the usual order (lease, then a slot filled
    /// under it). Out of line, off the common path.
    #[cold]
    #[inline(never)]
    fn overwrite_unfilled(
        &self,
        a: AgentCtx,
        d: Desc,
        generation: u32,
        data: &[u8],
    ) -> Result<(), SectionError> {
        self.write_one(a, d, generation, &[(0, data)], true)
    }

    /// An overwrite that got no journal seq under its lease: its filled slot goes back,
    /// its reservation (when its op record says it made one) is given back, and the op
    /// record closes. The delta is read from the op record, not passed: kept for this
    /// call, it would be spilled on the common path.
    #[cold]
    #[inline(never)]
    fn abandon_filled(&self, a: AgentCtx, new: Slot, e: SectionError) -> Result<(), SectionError> {
        let ar = self.region.agent_rec(a.ix);
        self.free_owned_slot(a.owner, new);
        if op_phase(ar.at(ag::OP).load(Relaxed)) == PH_RESERVED {
            self.unreserve(a, ar.at(ag::OP_DELTA).load(Relaxed) as i64);
        }
        ar.set_op(OP_NONE, 0);
        Err(e)
    }

    /// An overwrite refused before its lease: its filled slot goes back to the pool.
    #[cold]
    #[inline(never)]
    fn refuse_filled(&self, a: AgentCtx, s: Slot, e: SectionError) -> Result<(), SectionError> {
        self.free_owned_slot(a.owner, s);
        Err(e)
    }

    /// The section a write of `id` goes to: the one this thread found last first, as the
    /// copy-out read does.
    #[inline(always)]
    fn lookup_for_write(&self, id: &[u8]) -> Result<(Desc, u32), SectionError> {
        match self.lookup_cached::<true>(id) {
            Some((d, cur)) => Ok((d, current_gen(cur))),
            None => self.lookup_cold(id),
        }
    }

    /// [`Self::lookup`] off a write's common path (the section not where this thread
    /// found one last).
    #[cold]
    #[inline(never)]
    fn lookup_cold(&self, id: &[u8]) -> Result<(Desc, u32), SectionError> {
        self.lookup(id)
    }

    /// Writes several elements, in order; sections grow as needed and holes read as
    /// zeros. All or nothing: every element is validated and every section leased before
    /// anything is applied, and a writer killed mid-way is rolled forward or back by
    /// recovery. Errors name the first failing element: `NotExist`, `TooBig`,
    /// `NoResources` (offset + size beyond maxSectionSize, or checkpointSize),
    /// `NotPrimary`, `TryAgain`.
    pub fn write(&self, elems: &[WriteElement<'_>]) -> Result<(), VectorError> {
        self.write_as::<false>(elems)
    }

    /// [`Replica::write`]; with `APPLY`, for the replication applier.
    pub(crate) fn write_as<const APPLY: bool>(
        &self,
        elems: &[WriteElement<'_>],
    ) -> Result<(), VectorError> {
        let max = self.region.img.max_section_size;
        // Every element takes one journal record, all claimed before the commit: a write
        // needing more than half the ring could wait on its own records. Refused up front.
        let most = (self.region.img.journal_capacity / 2) as usize;
        if elems.len() > most {
            return Err(VectorError {
                index: most,
                kind: SectionError::NoResources,
            });
        }
        self.check_role::<APPLY>()?;
        let a = self.agent()?;
        let mut targets: Vec<(Desc, u32, usize)> = Vec::with_capacity(elems.len());
        // One pass in element order, so the error names the first failing element
        // (`erroneousVectorIndex`): an unknown section wins over a later oversized element.
        for (index, e) in elems.iter().enumerate() {
            let err = |kind| VectorError { index, kind };
            if e.data.len() as u64 > max {
                return Err(err(SectionError::TooBig));
            }
            if e.offset
                .checked_add(e.data.len() as u64)
                .is_none_or(|end| end > max)
            {
                return Err(err(SectionError::NoResources));
            }
            let (d, g) = self.lookup(e.id).map_err(err)?;
            targets.push((d, g, index));
        }
        let mut distinct: Vec<(Desc, u32, usize)> = targets.clone();
        distinct.sort_by_key(|t| t.0);
        distinct.dedup_by_key(|t| t.0);
        let result = if distinct.len() <= 1 {
            let Some(&(d, g, first)) = distinct.first() else {
                return Ok(());
            };
            let parts: Vec<(u64, &[u8])> = elems.iter().map(|e| (e.offset, e.data)).collect();
            self.write_one(a, d, g, &parts, false)
                .map_err(|kind| VectorError { index: first, kind })
        } else {
            self.write_txn(a, elems, &targets, &distinct)
        };
        result.map_err(|e| match e.kind {
            SectionError::NoResources => VectorError {
                index: self.budget_crossing(elems, &targets).unwrap_or(e.index),
                ..e
            },
            _ => e,
        })
    }

    /// The element whose growth first takes `memoryUsed` past `checkpointSize` when the
    /// elements are applied in order to the sizes committed now: the `erroneousVectorIndex`
    /// of a write refused for the budget. Exact unless other writers changed sizes meanwhile.
    fn budget_crossing(
        &self,
        elems: &[WriteElement<'_>],
        targets: &[(Desc, u32, usize)],
    ) -> Option<usize> {
        let limit = self.region.img.checkpoint_size;
        let mut used = self.region.hdr(hdr::STORED_BYTES).load(Acquire);
        let mut sizes: Vec<(Desc, u64)> = Vec::with_capacity(targets.len());
        for &(d, _, index) in targets {
            let k = match sizes.iter().position(|s| s.0 == d) {
                Some(k) => k,
                None => {
                    let s = self
                        .region
                        .slot_ix(current_slot(self.region.desc(d, dw::CURRENT).load(Acquire)))?;
                    sizes.push((d, self.region.meta(s, meta::SIZE).load(Acquire)));
                    sizes.len() - 1
                }
            };
            let end = elems[index].offset + elems[index].data.len() as u64;
            if end > sizes[k].1 {
                // Saturating: STORED_BYTES is a shared word and may hold anything.
                used = used.saturating_add(end - sizes[k].1);
                sizes[k].1 = end;
                if used > limit {
                    return Some(index);
                }
            }
        }
        None
    }

    /// Single-section commit: lease, copy-on-write into a fresh slot, journal, publish.
    #[inline(always)]
    fn write_one(
        &self,
        a: AgentCtx,
        d: Desc,
        generation: u32,
        parts: &[(u64, &[u8])],
        replace: bool,
    ) -> Result<(), SectionError> {
        // The clock first: its read is slow on some machines (a bare `rdtsc` takes about
        // 10 ns on the project's VM) and nothing before the fill needs it, so the lease and
        // the slot's checks go on meanwhile.
        let time = self.now();
        let target = Target {
            d,
            generation,
            rec: self.region.desc_rec(d),
        };
        self.lease(a, target.rec)?;
        let ar = self.region.agent_rec(a.ix);
        let result = self.write_one_leased(a, ar, target, parts, replace, time);
        self.release_lease(a, target.rec);
        result
    }

    /// [`Self::write_one`] under the lease, by `a` (whose record is `ar`).
    #[inline(always)]
    fn write_one_leased(
        &self,
        a: AgentCtx,
        ar: &AgentRec,
        target: Target<'_>,
        parts: &[(u64, &[u8])],
        replace: bool,
        time: i64,
    ) -> Result<(), SectionError> {
        let Target { d, generation, .. } = target;
        let (old, old_size) = self.current_version(target)?;
        let (keep, size) = if replace {
            (0, parts.first().map_or(0, |p| p.1.len() as u64))
        } else {
            let end = parts
                .iter()
                .map(|p| p.0 + p.1.len() as u64)
                .max()
                .unwrap_or(0);
            (old_size, old_size.max(end))
        };
        let delta = size as i64 - old_size as i64;
        ar.begin_op(
            OP_WRITE,
            u64::from(d.0) | (u64::from(generation) << 32),
            u64::from(NONE) | (u64::from(old.0) << 32),
        );
        // A write that keeps the size (every overwrite of a same-sized value) reserves
        // nothing: in phase 0 recovery has nothing to undo.
        if delta != 0
            && let Err(e) = self.reserve(a, delta)
        {
            ar.set_op(OP_NONE, 0);
            return Err(e);
        }
        let new = match self.alloc_slot(a, ar) {
            Ok(s) => s,
            Err(e) => {
                self.unreserve(a, delta);
                ar.set_op(OP_NONE, 0);
                return Err(e);
            }
        };
        ar.at(ag::OP_SLOTS)
            .store(u64::from(new.0) | (u64::from(old.0) << 32), Release);
        let base = self.slot_bytes(old, keep);
        self.fill_slot(new, base, keep, parts, size, time);
        // One journal record per element: exactly what was written.
        let mut seqs = [0u64; 8];
        let mut many = Vec::new();
        for (i, (off, bytes)) in parts.iter().enumerate() {
            let kind = if replace {
                crate::journal::KIND_OVERWRITE
            } else {
                crate::journal::KIND_WRITE
            };
            let f = CellFields {
                section: CellWord::Is(section_word(d, generation)),
                s: new,
                offset: *off,
                len: CellWord::Is(bytes.len() as u64),
                kind,
                time: CellWord::Is(time as u64),
            };
            match self.claim_seq(a, f) {
                Ok(seq) if i < seqs.len() => seqs[i] = seq,
                Ok(seq) => many.push(seq),
                Err(e) => {
                    for s in seqs.iter().take(i.min(8)).chain(many.iter()) {
                        self.abort_seq(*s);
                    }
                    self.free_owned_slot(a.owner, new);
                    self.unreserve(a, delta);
                    ar.set_op(OP_NONE, 0);
                    return Err(e);
                }
            }
        }
        let last = parts.len().checked_sub(1).map_or(0, |l| {
            if l < 8 {
                seqs[l]
            } else {
                many.last().copied().unwrap_or(0)
            }
        });
        self.publish_version(a, ar, target, new, last);
        for s in seqs.iter().take(parts.len().min(8)).chain(many.iter()) {
            self.complete_seq(*s);
        }
        ar.set_op(OP_NONE, PH_DONE);
        self.notify();
        Ok(())
    }

    /// The version `t`'s CURRENT names, which a single-section write under `t`'s lease
    /// supersedes: its slot and size (bounded by `max_section_size`). `NotExist` when the
    /// section is gone or another incarnation now.
    #[inline(always)]
    fn current_version(&self, t: Target<'_>) -> Result<(Slot, u64), SectionError> {
        let cur = t.rec.at(dw::CURRENT).load(Acquire);
        if current_gen(cur) != t.generation || current_slot(cur) == NONE {
            return Err(SectionError::NotExist);
        }
        let Some(old) = self.region.slot_ix(current_slot(cur)) else {
            return Err(SectionError::Corrupted(&"slot out of range"));
        };
        let size = self
            .region
            .meta_rec(old)
            .at(meta::SIZE)
            .load(Acquire)
            .min(self.region.img.max_section_size);
        Ok((old, size))
    }

    /// A single-section write's commit, under `t`'s lease: `new` (its journal records
    /// claimed, `last` the latest) becomes the current version, and the superseded slot
    /// (the high half of OP_SLOTS) is retired or kept as `a`'s spare. The caller completes
    /// its records and closes the op record.
    #[inline(always)]
    fn publish_version(&self, a: AgentCtx, ar: &AgentRec, t: Target<'_>, new: Slot, last: u64) {
        // The section and the superseded slot read back from the op record, which holds
        // them as the caller stored them (`t`'s section word in OP_DESC, `new | old << 32`
        // in OP_SLOTS, before the journal claim): not kept in registers across the
        // claim, whose slow path is a call (they would be spilled on the common path).
        let sw = ar.at(ag::OP_DESC).load(Relaxed);
        let slots = ar.at(ag::OP_SLOTS).load(Relaxed);
        let (d, generation) = (Desc(sw as u32), (sw >> 32) as u32);
        let nm = self.region.meta_rec(new);
        // Release: a pin-free reader that loads this VERSION sees the bytes before it.
        nm.at(meta::VERSION).store(last, Release);
        nm.at(meta::STATE).store(protocol::live(d.0), Release);
        // No PREPARED phase: recovery of a write decides by CURRENT alone (section 16).
        // Commit point.
        protocol::publish(t.rec.at(dw::CURRENT), generation, new.0);
        if let Some(old) = self.region.slot_ix((slots >> 32) as u32) {
            self.retire_slot_keep(a, ar, d, old, self.region.meta_rec(old));
        }
    }

    /// Multi-section commit with an intent record (see engine/DESIGN.md "Transactions").
    fn write_txn(
        &self,
        a: AgentCtx,
        elems: &[WriteElement<'_>],
        targets: &[(Desc, u32, usize)],
        distinct: &[(Desc, u32, usize)],
    ) -> Result<(), VectorError> {
        // Leases in ascending descriptor order: no deadlock between multi-section writers.
        for (k, &(d, _, index)) in distinct.iter().enumerate() {
            if let Err(kind) = self.lease(a, self.region.desc_rec(d)) {
                for &(d2, _, _) in &distinct[..k] {
                    self.release_lease(a, self.region.desc_rec(d2));
                }
                return Err(VectorError { index, kind });
            }
        }
        let result = self.write_txn_leased(a, elems, targets, distinct);
        for &(d, _, _) in distinct {
            self.release_lease(a, self.region.desc_rec(d));
        }
        result
    }

    fn write_txn_leased(
        &self,
        a: AgentCtx,
        elems: &[WriteElement<'_>],
        targets: &[(Desc, u32, usize)],
        distinct: &[(Desc, u32, usize)],
    ) -> Result<(), VectorError> {
        struct Plan {
            d: Desc,
            generation: u32,
            old: Slot,
            old_size: u64,
            size: u64,
            new: Slot,
        }
        let mut plans: Vec<Plan> = Vec::with_capacity(distinct.len());
        let mut delta: i64 = 0;
        for &(d, generation, index) in distinct {
            let cur = self.region.desc(d, dw::CURRENT).load(Acquire);
            if current_gen(cur) != generation || current_slot(cur) == NONE {
                return Err(VectorError {
                    index,
                    kind: SectionError::NotExist,
                });
            }
            let old = self.region.slot_ix(current_slot(cur)).ok_or(VectorError {
                index,
                kind: SectionError::Corrupted(&"slot out of range"),
            })?;
            let old_size = self
                .region
                .meta(old, meta::SIZE)
                .load(Acquire)
                .min(self.region.img.max_section_size);
            let end = targets
                .iter()
                .filter(|t| t.0 == d)
                .map(|t| elems[t.2].offset + elems[t.2].data.len() as u64)
                .max()
                .unwrap_or(0);
            let size = old_size.max(end);
            delta += size as i64 - old_size as i64;
            plans.push(Plan {
                d,
                generation,
                old,
                old_size,
                size,
                new: Slot(NONE),
            });
        }
        self.set_op(a, OP_TXN, 0);
        self.region
            .agent(a.ix, ag::OP_SLOTS)
            .store(u64::from(NONE), Release);
        let first = distinct[0].2;
        self.reserve(a, delta).map_err(|kind| {
            self.set_op(a, OP_NONE, 0);
            VectorError { index: first, kind }
        })?;
        let rollback = |plans: &[Plan], seqs: &[u64]| {
            for s in seqs {
                self.abort_seq(*s);
            }
            for p in plans.iter().filter(|p| p.new.0 != NONE) {
                self.region
                    .meta(p.new, meta::STATE)
                    .store(protocol::owned(a.owner), SeqCst);
                self.free_owned_slot(a.owner, p.new);
            }
            self.unreserve(a, delta);
            self.set_op(a, OP_NONE, 0);
        };
        // Prepare: one new slot per section, chained through slot metadata; the agent
        // record holds the chain head.
        let mut head = NONE;
        // One time for the whole transaction: every section's LAST_UPDATE and every record.
        let time = self.now();
        for k in 0..plans.len() {
            let new = match self.alloc_slot(a, self.region.agent_rec(a.ix)) {
                Ok(s) => s,
                Err(kind) => {
                    rollback(&plans, &[]);
                    return Err(VectorError {
                        index: distinct[k].2,
                        kind,
                    });
                }
            };
            let p = &mut plans[k];
            p.new = new;
            self.region
                .meta(new, meta::TXN)
                .store(u64::from(head) | (u64::from(p.d.0) << 32), Release);
            self.region.meta(new, meta::TXN_OLD).store(
                u64::from(p.old.0) | (u64::from(p.generation) << 32),
                Release,
            );
            head = new.0;
            self.region
                .agent(a.ix, ag::OP_SLOTS)
                .store(u64::from(head), Release);
            let parts: Vec<(u64, &[u8])> = targets
                .iter()
                .filter(|t| t.0 == p.d)
                .map(|t| (elems[t.2].offset, elems[t.2].data))
                .collect();
            let base = self.slot_bytes(p.old, p.old_size);
            self.fill_slot(new, base, p.old_size, &parts, p.size, time);
        }
        let mut seqs = Vec::with_capacity(elems.len());
        for t in targets {
            let p = plans
                .iter()
                .find(|p| p.d == t.0)
                .expect("every target has a plan");
            let e = &elems[t.2];
            let f = CellFields {
                section: CellWord::Is(section_word(p.d, p.generation)),
                s: p.new,
                offset: e.offset,
                len: CellWord::Is(e.data.len() as u64),
                kind: crate::journal::KIND_WRITE,
                time: CellWord::Is(time as u64),
            };
            match self.claim_seq(a, f) {
                Ok(s) => seqs.push(s),
                Err(kind) => {
                    rollback(&plans, &seqs);
                    return Err(VectorError { index: t.2, kind });
                }
            }
        }
        for p in &plans {
            let version = targets
                .iter()
                .zip(&seqs)
                .filter(|(t, _)| t.0 == p.d)
                .map(|(_, s)| *s)
                .max()
                .unwrap_or(0);
            self.region
                .meta(p.new, meta::VERSION)
                .store(version, Release);
            self.region
                .meta(p.new, meta::STATE)
                .store(protocol::live(p.d.0), Release);
        }
        // The publish lock first (readers of several sections then wait for the whole
        // publish): if it cannot be had, nothing is committed yet and all is rolled back.
        if let Err(kind) = self.lock_multi(a) {
            rollback(&plans, &seqs);
            return Err(VectorError { index: first, kind });
        }
        // Commit point: after this store recovery rolls forward instead of back.
        self.set_phase(a, PH_COMMITTING);
        for p in &plans {
            protocol::publish(self.region.desc(p.d, dw::CURRENT), p.generation, p.new.0);
        }
        self.unlock_multi(a);
        for p in &plans {
            self.retire_slot(p.d, p.old);
        }
        for s in &seqs {
            self.complete_seq(*s);
        }
        self.set_op(a, OP_NONE, PH_DONE);
        self.notify();
        Ok(())
    }

    /// Takes the multi-section publish lock and makes `MULTI_SEQ` odd.
    pub(crate) fn lock_multi(&self, a: AgentCtx) -> Result<(), SectionError> {
        let owner = self.region.hdr(hdr::MULTI_OWNER);
        let mut expect = 0;
        let mut since = None;
        for i in 0..SPIN_LIMIT * 4 {
            match owner.compare_exchange(expect, a.owner, AcqRel, Acquire) {
                Ok(_) => {
                    let seq = self.region.hdr(hdr::MULTI_SEQ);
                    if seq.load(Acquire).is_multiple_of(2) {
                        seq.fetch_add(1, SeqCst);
                    }
                    return Ok(());
                }
                Err(h) if h == a.owner => return Ok(()),
                Err(h) => {
                    expect = 0;
                    if h != 0 && i % 256 == 255 && self.owner_gone(h) {
                        expect = h;
                    }
                    if !backoff(i, &mut since) {
                        break;
                    }
                }
            }
        }
        Err(SectionError::TryAgain)
    }

    pub(crate) fn unlock_multi(&self, a: AgentCtx) {
        if self.region.hdr(hdr::MULTI_OWNER).load(Acquire) != a.owner {
            return;
        }
        let seq = self.region.hdr(hdr::MULTI_SEQ);
        if seq.load(Acquire) % 2 == 1 {
            seq.fetch_add(1, SeqCst);
        }
        let _ = self
            .region
            .hdr(hdr::MULTI_OWNER)
            .compare_exchange(a.owner, 0, AcqRel, Relaxed);
    }

    // ---- reads --------------------------------------------------------------------

    /// Pins the current slot of `d` for this agent; returns it and the pin-table entry.
    fn pin_current(
        &self,
        a: AgentCtx,
        d: Desc,
        generation: u32,
    ) -> Result<(Slot, usize), SectionError> {
        let current = self.region.desc(d, dw::CURRENT);
        let cur = current.load(SeqCst);
        if current_gen(cur) != generation || current_slot(cur) == NONE {
            return Err(SectionError::NotExist);
        }
        let mut free = None;
        for e in 0..PINS_PER_AGENT {
            let w = self.region.agent(a.ix, ag::PINS + 8 * e as u64);
            let v = w.load(Relaxed);
            if v >> 32 == 0 {
                free = free.or(Some(e));
            } else if v as u32 == current_slot(cur) {
                // Already pinned by this agent: it cannot have been freed, and `current`
                // named it a moment ago, so its bytes are this version's.
                w.store(v + (1 << 32), Relaxed);
                let s = self
                    .region
                    .slot_ix(v as u32)
                    .ok_or(SectionError::Corrupted(&"pin"))?;
                return Ok((s, e));
            }
        }
        let e = free.ok_or(SectionError::TryAgain)?;
        let entry = self.region.agent(a.ix, ag::PINS + 8 * e as u64);
        let pinned = protocol::pin(
            &self.region,
            current,
            generation,
            a.pin_word(),
            a.pin_bit(),
            // Crash record only: the SeqCst pin RMW that follows keeps it first.
            |s| entry.store(u64::from(s) | (1 << 32), Relaxed),
            |s, freed| {
                entry.store(0, Release);
                // `pin` let go of a superseded slot; if that unpin freed it (it was retired
                // meanwhile and ours was the last pin), it must be findable again.
                if freed {
                    self.region.slot_hint().set(s);
                }
            },
        );
        match pinned {
            Ok(s) => Ok((Slot(s), e)),
            Err(PinError::Gone) => Err(SectionError::NotExist),
            Err(PinError::Corrupted) => Err(SectionError::Corrupted(
                &"descriptor names a slot out of range",
            )),
            Err(PinError::Contended) => Err(SectionError::TryAgain),
        }
    }

    fn unpin_entry(&self, a: AgentCtx, e: usize) {
        let entry = self.region.agent(a.ix, ag::PINS + 8 * e as u64);
        let v = entry.load(Relaxed);
        if v >> 32 > 1 {
            entry.store(v - (1 << 32), Relaxed);
            return;
        }
        if protocol::unpin(&self.region, v as u32, a.pin_word(), a.pin_bit()) {
            self.region.slot_hint().set(v as u32);
        }
        entry.store(0, Release);
    }

    /// Copies section bytes from `offset` into `buf`; returns how many (`readSize` =
    /// `min(buf.len(), size - offset)`). Errors: `NotExist`, `BadArgument` (offset past the
    /// end of the section), `TryAgain`.
    #[inline]
    pub fn read(&self, id: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize, SectionError> {
        // The common case in one straight pass: found where this thread last found it
        // (or else at its home position) and read pin-free at the first try. Everything
        // else is out of line, so this path keeps its few values in registers.
        if id.len() as u64 > self.region.img.max_section_id_size {
            return Err(SectionError::NotExist);
        }
        // The keyed hash only when the hint missed, and at most once.
        let mut key = None;
        // Both without INDEX_SEQ: `read_optimistic_at` compares the `current` word they
        // return with CURRENT again before the copy (see `confirm`).
        let found = match self.lookup_cached::<true>(id) {
            Some(hit) => Some(hit),
            None => self.lookup_home::<true>(id, *key.insert(self.key_of(id))),
        };
        if let Some((d, cur)) = found
            && let Some(result) = self.read_optimistic_at(d, cur, offset, buf)
        {
            return result;
        }
        let key = key.unwrap_or_else(|| self.key_of(id));
        self.read_slow(id, key, offset, buf)
    }

    #[cold]
    #[inline(never)]
    fn read_slow(
        &self,
        id: &[u8],
        key: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, SectionError> {
        let (d, generation) = self.lookup_key(id, key)?;
        self.read_desc(d, generation, offset, buf)
    }

    /// A copy-out read of `d`: pin-free first, then pinned by this thread's agent
    /// (registered only then: the common read needs none).
    fn read_desc(
        &self,
        d: Desc,
        generation: u32,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, SectionError> {
        for _ in 0..OPTIMISTIC_READS {
            if let Some(result) = self.read_optimistic(d, generation, offset, buf) {
                return result;
            }
        }
        let a = self.agent()?;
        self.read_pinned(a, d, generation, offset, buf)
    }

    /// A copy-out read without a pin (a seqlock read, engine/DESIGN.md section 17): notes
    /// the current slot's state and VERSION, copies, and keeps the copy only if both are
    /// unchanged after it. A slot changes hands (its state leaves LIVE(d)) before anyone
    /// writes its bytes again, and a version is never rewritten in place, so an unchanged
    /// pair means the bytes copied are that version's. `None`: a writer recycled the slot
    /// during the copy (the caller retries, then pins).
    #[inline]
    fn read_optimistic(
        &self,
        d: Desc,
        generation: u32,
        offset: u64,
        buf: &mut [u8],
    ) -> Option<Result<usize, SectionError>> {
        let cur = self.region.desc(d, dw::CURRENT).load(Acquire);
        if current_gen(cur) != generation || current_slot(cur) == NONE {
            return Some(Err(SectionError::NotExist));
        }
        self.read_optimistic_at(d, cur, offset, buf)
    }

    /// [`Replica::read_optimistic`] from a `current` word of `d` already loaded (Acquire)
    /// that names a slot.
    #[inline]
    fn read_optimistic_at(
        &self,
        d: Desc,
        cur: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Option<Result<usize, SectionError>> {
        let current = self.region.desc(d, dw::CURRENT);
        let Some(s) = self.region.slot_ix(current_slot(cur)) else {
            return Some(Err(SectionError::Corrupted(
                &"descriptor names a slot out of range",
            )));
        };
        let m = self.region.meta_rec(s);
        let (state, version) = (m.at(meta::STATE), m.at(meta::VERSION));
        let seen = protocol::read_begin(current, cur, state, version, d.0)?;
        let size = m
            .at(meta::SIZE)
            .load(Acquire)
            .min(self.region.img.max_section_size);
        let n = size
            .checked_sub(offset)
            .map(|left| left.min(buf.len() as u64) as usize);
        if let Some(n) = n {
            // SAFETY: `offset + n <= size <= max_section_size <= slot_stride`, so the range
            // lies in the slot; `buf` is ours. A writer may be rewriting these bytes if the
            // slot was recycled since the loads above: the copy then holds garbage, which
            // the check below discards (both sides are plain bytes, any value is valid).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.region.slot_ptr(s).add(offset as usize),
                    buf.as_mut_ptr(),
                    n,
                );
            }
        }
        if !protocol::read_validate(state, version, d.0, seen) {
            return None;
        }
        Some(n.ok_or(SectionError::BadArgument(
            &"offset past the end of the section",
        )))
    }

    fn read_pinned(
        &self,
        a: AgentCtx,
        d: Desc,
        generation: u32,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, SectionError> {
        let (s, e) = self.pin_current(a, d, generation)?;
        let size = self
            .region
            .meta(s, meta::SIZE)
            .load(Acquire)
            .min(self.region.img.max_section_size);
        let result = if offset > size {
            Err(SectionError::BadArgument(
                &"offset past the end of the section",
            ))
        } else {
            let n = (size - offset).min(buf.len() as u64) as usize;
            // SAFETY: the slot is pinned (not recyclable) and published (immutable);
            // `offset + n <= size <= max_section_size <= slot_stride`; `buf` is ours.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    self.region.slot_ptr(s).add(offset as usize),
                    buf.as_mut_ptr(),
                    n,
                );
            }
            Ok(n)
        };
        self.unpin_entry(a, e);
        result
    }

    /// Reads a whole section into a new `Vec`.
    pub fn read_to_vec(&self, id: &[u8]) -> Result<Vec<u8>, SectionError> {
        let guard = self.borrow(id)?;
        Ok(guard.to_vec())
    }

    /// Reads several elements. When they span more than one section the result is a
    /// consistent snapshot: no multi-section write is seen half applied. Errors name the
    /// first failing element.
    pub fn read_many(&self, elems: &mut [ReadElement<'_>]) -> Result<(), VectorError> {
        let mut targets = Vec::with_capacity(elems.len());
        // A section that is not there fails its element only after the elements before it
        // were read, so the error names the first failing element.
        let mut missing = Ok(());
        for (index, e) in elems.iter().enumerate() {
            match self.lookup(e.id) {
                Ok(t) => targets.push(t),
                Err(kind) => {
                    missing = Err(VectorError { index, kind });
                    break;
                }
            }
        }
        let multi = targets.windows(2).any(|w| w[0].0 != w[1].0);
        let seq = self.region.hdr(hdr::MULTI_SEQ);
        let mut since = None;
        for attempt in 0..SPIN_LIMIT {
            let before = seq.load(SeqCst);
            if multi && before % 2 == 1 {
                if attempt % 256 == 255 {
                    let h = self.region.hdr(hdr::MULTI_OWNER).load(Acquire);
                    if h != 0 {
                        self.owner_gone(h);
                    }
                }
                if !backoff(attempt, &mut since) {
                    break;
                }
                continue;
            }
            for (index, (e, &(d, g))) in elems.iter_mut().zip(&targets).enumerate() {
                e.read = self
                    .read_desc(d, g, e.offset, e.buf)
                    .map_err(|kind| VectorError { index, kind })?;
            }
            if !multi || seq.load(SeqCst) == before {
                return missing;
            }
        }
        Err(VectorError {
            index: 0,
            kind: SectionError::TryAgain,
        })
    }

    /// Borrows a section's committed bytes without copying. The guard pins the version it
    /// shows: writers go on committing new versions meanwhile, and the bytes seen never
    /// change. Each thread may hold a few guards at once (`TryAgain` beyond); a guard
    /// held forever only keeps one spare slot busy. Errors: `NotExist`, `TryAgain`.
    pub fn borrow(&self, id: &[u8]) -> Result<SectionGuard<'_>, SectionError> {
        let a = self.agent()?;
        let (d, generation) = self.lookup(id)?;
        let (s, e) = self.pin_current(a, d, generation)?;
        let size = self
            .region
            .meta(s, meta::SIZE)
            .load(Acquire)
            .min(self.region.img.max_section_size);
        let version = self.region.meta(s, meta::VERSION).load(Acquire);
        Ok(SectionGuard {
            replica: self,
            agent: a,
            entry: e,
            slot: s,
            len: size as usize,
            version,
            epoch: liveness::fork_epoch(),
            _not_send: core::marker::PhantomData,
        })
    }

    /// Information about one section.
    pub fn section_info(&self, id: &[u8]) -> Result<SectionInfo, SectionError> {
        let (d, generation) = self.lookup(id)?;
        self.info_of(d, Some(generation))
            .ok_or(SectionError::NotExist)
    }

    fn info_of(&self, d: Desc, generation: Option<u32>) -> Option<SectionInfo> {
        for _ in 0..64 {
            let cur = self.region.desc(d, dw::CURRENT).load(SeqCst);
            if generation.is_some_and(|g| g != current_gen(cur)) || current_slot(cur) == NONE {
                return None;
            }
            if state_kind(self.region.desc(d, dw::STATE).load(Acquire)) != KIND_LIVE {
                return None;
            }
            let s = self.region.slot_ix(current_slot(cur))?;
            let info = SectionInfo {
                id: self.read_id(d),
                expiration: self.region.desc(d, dw::EXPIRATION).load(Acquire) as i64,
                size: self
                    .region
                    .meta(s, meta::SIZE)
                    .load(Acquire)
                    .min(self.region.img.max_section_size),
                last_update: self.region.meta(s, meta::LAST_UPDATE).load(Acquire) as i64,
                version: self.region.meta(s, meta::VERSION).load(Acquire),
            };
            if self.region.desc(d, dw::CURRENT).load(SeqCst) == cur {
                return Some(info);
            }
        }
        None
    }

    /// Iterates over the sections matching `filter`. Every section present for the whole
    /// iteration is returned exactly once, whatever is created or deleted meanwhile
    /// (sections never move between descriptors). Expired sections are skipped.
    pub fn sections(&self, filter: SectionFilter) -> Sections<'_> {
        Sections {
            replica: self,
            cursor: self.section_cursor(filter),
        }
    }

    /// As [`Replica::sections`], as a cursor that does not borrow the replica.
    pub fn section_cursor(&self, filter: SectionFilter) -> SectionCursor {
        SectionCursor {
            next: 0,
            filter,
            now: self.now(),
        }
    }

    /// Whether section `id` exists (and has not expired).
    pub fn contains(&self, id: &[u8]) -> bool {
        self.lookup(id).is_ok()
    }
}

/// A zero-copy view of one committed section version; dereferences to `[u8]`.
///
/// Not `Send`: the pin belongs to the thread's agent record.
#[derive(Debug)]
pub struct SectionGuard<'r> {
    replica: &'r Replica,
    agent: AgentCtx,
    entry: usize,
    slot: Slot,
    len: usize,
    version: u64,
    epoch: u64,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl SectionGuard<'_> {
    /// The journal seq that produced this version.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl core::ops::Deref for SectionGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.replica.slot_bytes(self.slot, self.len as u64)
    }
}

impl Drop for SectionGuard<'_> {
    fn drop(&mut self) {
        // A guard inherited across fork belongs to the parent's agent: the child must not
        // take the parent's pin away (the mapping is shared).
        if liveness::fork_epoch() != self.epoch {
            return;
        }
        self.replica.unpin_entry(self.agent, self.entry);
    }
}

/// Iterator returned by [`Replica::sections`].
#[derive(Debug)]
pub struct Sections<'r> {
    replica: &'r Replica,
    cursor: SectionCursor,
}

impl Iterator for Sections<'_> {
    type Item = SectionInfo;
    fn next(&mut self) -> Option<SectionInfo> {
        self.cursor.next(self.replica)
    }
}

/// The position of an iteration over sections, owned apart from the replica (for
/// iteration handles that outlive a borrow): [`Replica::section_cursor`].
#[derive(Clone, Copy, Debug)]
pub struct SectionCursor {
    next: u32,
    filter: SectionFilter,
    now: i64,
}

impl SectionCursor {
    /// The next matching section of `replica` (the replica the cursor was made from).
    pub fn next(&mut self, replica: &Replica) -> Option<SectionInfo> {
        while self.next < replica.region.img.max_sections {
            let d = Desc(self.next);
            self.next += 1;
            let Some(info) = replica.info_of(d, None) else {
                continue;
            };
            if info.expiration != TIME_END && info.expiration <= self.now {
                continue;
            }
            let keep = match self.filter {
                SectionFilter::Any => true,
                SectionFilter::Forever => info.expiration == TIME_END,
                SectionFilter::ExpiringAtOrBefore(t) => info.expiration <= t,
                SectionFilter::ExpiringAtOrAfter(t) => info.expiration >= t,
                SectionFilter::Corrupted => false,
            };
            if keep {
                return Some(info);
            }
        }
        None
    }
}

impl Replica {
    /// Releases the agents of this replica whose threads have exited.
    fn release_exited_threads(&self) {
        let mine: Vec<(u32, u64)> = {
            let mut exited = EXITED.lock().unwrap_or_else(|p| p.into_inner());
            if exited.is_empty() {
                return;
            }
            let mine = exited
                .iter()
                .filter(|e| e.0 == self.uid)
                .map(|e| (e.1, e.2))
                .collect();
            exited.retain(|e| e.0 != self.uid);
            mine
        };
        if mine.is_empty() {
            return;
        }
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| !mine.iter().any(|m| m.0 == r.0 && m.1 == r.2));
        for (ix, owner) in mine {
            if let Some(ix) = self.region.agent_ix(ix) {
                self.release_agent(ix, owner);
            }
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let epoch = liveness::fork_epoch();
        let registered =
            core::mem::take(self.registered.get_mut().unwrap_or_else(|p| p.into_inner()));
        for (ix, e, owner) in registered {
            if e != epoch {
                continue;
            }
            if let Some(ix) = self.region.agent_ix(ix) {
                self.release_agent(ix, owner);
            }
        }
        let uid = self.uid;
        let _ = AGENTS.try_with(|a| a.borrow_mut().0.retain(|c| c.uid != uid));
        let _ = LAST_AGENT.try_with(|c| {
            if c.get().uid == uid {
                c.set(CachedAgent::NONE);
            }
        });
        EXITED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| e.0 != uid);
    }
}

trait ThreadIdHash {
    fn as_u64_hash(&self) -> u64;
}

impl ThreadIdHash for std::thread::ThreadId {
    fn as_u64_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}
