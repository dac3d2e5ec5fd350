//! ckpt-bench: what the engine's data path costs next to the memory traffic it cannot avoid.
//!
//! Every engine operation is measured beside a *fair* memcpy baseline of the same size, in the
//! same run: the baseline copies the same bytes between the same private buffer and a
//! pre-faulted mapping whose working set equals the slots the arena actually cycles through
//! for that case (observed through the public API, see [`DataCase::slots`]), so neither side
//! gets a hot 4 KiB buffer the other does not.
//!
//! Three front ends share these fixtures:
//! - `benches/arena.rs`: criterion groups per operation and size, with the baseline in each
//!   group (`cargo bench -p ckpt-bench`);
//! - `src/bin/ratios.rs`: one run that measures each operation against its baseline with
//!   [`measure_pair`] and checks the acceptance ratios of [`EngineRatios`]
//!   (`cargo run --release -p ckpt-bench --bin ratios`);
//! - `ckpt bench` (in ckpt-tools): the [`SweepCase`] sweeps over sizes and section counts,
//!   the same [`EngineRatios`], and the ratios against LMDB, Redis and the cluster.
//!
//! The central types: [`BenchDomain`] (a private domain directory under `/dev/shm`),
//! [`DataCase`] (one operation at one size, with its baseline), [`LookupCase`] (index
//! lookups among `n` sections), [`SweepCase`] (one operation over `n` sections in rotation)
//! and [`Rounds`] (a same-run ratio repeated in interleaved rounds, judged by its median).
//!
//! ```no_run
//! use ckpt_bench::{BenchDomain, DataCase, Op, measure_pair};
//!
//! let domain = BenchDomain::new().expect("a writable /dev/shm");
//! let mut case = DataCase::new(&domain, Op::Overwrite, 4096).expect("tmpfs space");
//! let mut base = case.baseline();
//! let t = measure_pair(1000, || case.run(), || base.run());
//! println!("overwrite 4 KiB: {:.0} ns vs memcpy {:.0} ns", t.a_ns, t.b_ns);
//! ```

#![forbid(unsafe_code)]

mod acceptance;
mod format;
mod sweep;

pub use acceptance::{EngineRatio, EngineRatios, Rounds};
pub use format::{count_label, fmt_ns, size_label};
pub use sweep::{SweepCase, estimated_object_size};

use std::collections::BTreeSet;
use std::fmt;
use std::hint::black_box;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ckpt_engine::{
    CreateError, CreateOptions, Replica, ReplicaAttributes, ReplicaLimits, SectionError, ShmBuffer,
    TIME_END, WriteElement,
};

/// The section sizes every data-path group covers.
pub const SIZES: [usize; 4] = [64, 4096, 64 * 1024, 1024 * 1024];

/// Section counts of the lookup cases.
pub const LOOKUP_SECTIONS: [u32; 2] = [1_000, 1_000_000];

/// The id of section `i`: its index as 8 little-endian bytes (no formatting on the hot path).
#[inline]
pub fn section_id(i: u64) -> [u8; 8] {
    i.to_le_bytes()
}

/// Creation attributes for a benchmark replica: `max_sections` sections of at most
/// `max_section_size` bytes, 8-byte ids, and a budget equal to the full capacity (so the
/// budget check never fails and a same-size overwrite needs no budget CAS).
pub fn attributes(max_sections: u32, max_section_size: u64) -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: u64::from(max_sections) * max_section_size,
        retention_ns: 0,
        max_sections,
        max_section_size,
        max_section_id_size: 8,
    }
}

// ---- domain and arenas ---------------------------------------------------------------

/// A private domain directory `/dev/shm/ckpt-bench-<pid>-<n>`, removed with everything in it
/// on drop. Directories left by killed runs (their pid is gone) are swept on creation.
#[derive(Debug)]
pub struct BenchDomain {
    dir: PathBuf,
    next: AtomicU32,
}

impl BenchDomain {
    /// Creates the directory (mode 0700, via [`ckpt_engine::ensure_domain`]).
    pub fn new() -> io::Result<Self> {
        static INSTANCE: AtomicU32 = AtomicU32::new(0);
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/dev/shm/ckpt-bench-{}-{n}", std::process::id()));
        ckpt_engine::ensure_domain(&dir).map_err(io::Error::from_raw_os_error)?;
        sweep_stale(std::fs::metadata(&dir)?.uid());
        Ok(Self {
            dir,
            next: AtomicU32::new(0),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates a fresh replica object in this domain (pre-faulted by the engine).
    pub fn arena(&self, attrs: &ReplicaAttributes) -> Result<Arena, CreateError> {
        self.arena_with(attrs, ReplicaLimits::default())
    }

    /// [`Self::arena`] with engine limits other than the defaults (fewer spare slots keep
    /// large sections affordable).
    pub fn arena_with(
        &self,
        attrs: &ReplicaAttributes,
        limits: ReplicaLimits,
    ) -> Result<Arena, CreateError> {
        let name = format!("r{}", self.next.fetch_add(1, Ordering::Relaxed));
        let options = CreateOptions {
            limits,
            ..CreateOptions::default()
        };
        let replica = Replica::create(&self.dir, &name, attrs, &options)?;
        Ok(Arena {
            replica,
            domain: self.dir.clone(),
            name,
        })
    }
}

impl Drop for BenchDomain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes `/dev/shm/ckpt-bench-<pid>-*` directories of user `uid` whose process no longer
/// exists (a run stopped by Ctrl-C leaves its objects, up to a few hundred MiB, behind).
fn sweep_stale(uid: u32) {
    let Ok(entries) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("ckpt-bench-")) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        let mine = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if mine && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One replica object in a [`BenchDomain`]; the object is unlinked on drop.
#[derive(Debug)]
pub struct Arena {
    replica: Replica,
    domain: PathBuf,
    name: String,
}

impl Arena {
    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
}

impl core::ops::Deref for Arena {
    type Target = Replica;
    fn deref(&self) -> &Replica {
        &self.replica
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        let _ = Replica::remove(&self.domain, &self.name);
    }
}

// ---- baseline ------------------------------------------------------------------------

/// Which way a baseline copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Private buffer → mapping (what a write does).
    In,
    /// Mapping → private buffer (what a copy-out read does).
    Out,
}

/// `count` buffers of `stride` bytes in one pre-faulted `/dev/shm` mapping, used in
/// rotation: the memcpy baseline with the same working set as the arena, in the same kind
/// of memory (a tmpfs object made like a replica object, [`ShmBuffer`]).
#[derive(Debug)]
pub struct RotatingBuffers {
    map: ShmBuffer,
    stride: usize,
    count: usize,
    next: usize,
}

impl RotatingBuffers {
    /// Maps `count * stride` bytes in the tmpfs directory `dir` and writes every byte.
    pub fn new(dir: &Path, count: usize, stride: usize) -> Result<Self, CreateError> {
        let count = count.max(1);
        let len = count
            .checked_mul(stride.max(1))
            .ok_or(CreateError::NoResources { needed: u64::MAX })?;
        let mut map = ShmBuffer::create(dir, len)?;
        map.as_mut_slice().fill(0x5a);
        Ok(Self {
            map,
            stride,
            count,
            next: 0,
        })
    }

    /// Buffers in the rotation.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The first `len` bytes of the next buffer, for writing.
    #[inline]
    pub fn next_mut(&mut self, len: usize) -> &mut [u8] {
        let at = self.next * self.stride;
        self.next = if self.next + 1 == self.count {
            0
        } else {
            self.next + 1
        };
        &mut self.map.as_mut_slice()[at..at + len]
    }

    /// The first `len` bytes of the next buffer, for reading.
    #[inline]
    pub fn next(&mut self, len: usize) -> &[u8] {
        let at = self.next * self.stride;
        self.next = if self.next + 1 == self.count {
            0
        } else {
            self.next + 1
        };
        &self.map.as_slice()[at..at + len]
    }
}

/// A private (heap) buffer that starts on a page boundary.
///
/// The engine side and the baseline side both use these, so both copies see the same
/// relative alignment between source and destination. It matters: glibc's large `malloc`
/// returns page + 16 bytes, and copying a page-aligned slot into such a buffer hits 4 KiB
/// aliasing (on this Xeon a 4 KiB copy-out went from about 40 ns to 140 ns).
#[derive(Debug)]
pub struct PageBuf {
    bytes: Vec<u8>,
    at: usize,
    len: usize,
}

impl PageBuf {
    /// `len` bytes of `fill`, page-aligned.
    pub fn new(len: usize, fill: u8) -> Self {
        let bytes = vec![fill; len + 4096];
        let at = (4096 - bytes.as_ptr().addr() % 4096) % 4096;
        Self { bytes, at, len }
    }
}

impl core::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.at..self.at + self.len]
    }
}

impl core::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.at..self.at + self.len]
    }
}

/// A memcpy of `len` bytes between a private buffer and rotating [`RotatingBuffers`].
#[derive(Debug)]
pub struct Baseline {
    bufs: RotatingBuffers,
    private: PageBuf,
    direction: Direction,
}

impl Baseline {
    /// A baseline copying `len` bytes per call over `slots` buffers of `stride` bytes,
    /// mapped in the tmpfs directory `dir`.
    pub fn new(
        dir: &Path,
        direction: Direction,
        len: usize,
        slots: usize,
        stride: usize,
    ) -> Result<Self, CreateError> {
        Ok(Self {
            bufs: RotatingBuffers::new(dir, slots, stride.max(len))?,
            private: PageBuf::new(len, 0xa5),
            direction,
        })
    }

    /// Buffers in the rotation (the working set, in slots).
    pub fn slots(&self) -> usize {
        self.bufs.count()
    }

    /// One copy.
    #[inline]
    pub fn run(&mut self) {
        let len = self.private.len;
        match self.direction {
            Direction::In => {
                let src = black_box(&self.private[..]);
                self.bufs.next_mut(len).copy_from_slice(src);
                black_box(&mut self.bufs);
            }
            Direction::Out => {
                let src = black_box(self.bufs.next(len));
                self.private.copy_from_slice(src);
                black_box(&mut self.private[..]);
            }
        }
    }
}

// ---- data-path cases -----------------------------------------------------------------

/// A benchmarked data-path operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `overwrite` of a `size`-byte section with `size` new bytes.
    Overwrite,
    /// `read` of a whole `size`-byte section into a private buffer.
    Read,
    /// `borrow` of a `size`-byte section, guard dropped at once (no byte touched).
    Borrow,
    /// `write` of `size` bytes at offset `size / 2` into a `2 * size`-byte section (the
    /// copy-on-write moves the whole section: `2 * size` kept bytes plus `size` new ones).
    WriteAt,
    /// `create_section` with `size` bytes of initial data, then `delete_section`.
    CreateDelete,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Self; 5] = [
        Self::Overwrite,
        Self::Read,
        Self::Borrow,
        Self::WriteAt,
        Self::CreateDelete,
    ];

    /// Short name (criterion group, table row).
    pub fn name(self) -> &'static str {
        match self {
            Self::Overwrite => "overwrite",
            Self::Read => "read",
            Self::Borrow => "borrow",
            Self::WriteAt => "write_at_offset",
            Self::CreateDelete => "create_delete",
        }
    }

    fn direction(self) -> Direction {
        match self {
            Self::Read | Self::Borrow => Direction::Out,
            Self::Overwrite | Self::WriteAt | Self::CreateDelete => Direction::In,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a case could not be set up.
#[derive(Debug)]
pub enum SetupError {
    /// The replica could not be created.
    Create(CreateError),
    /// A section operation failed during setup.
    Section(SectionError),
    /// The baseline mapping failed.
    Io(io::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create(e) => write!(f, "creating the replica: {e}"),
            Self::Section(e) => write!(f, "preparing sections: {e}"),
            Self::Io(e) => write!(f, "mapping the baseline: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

impl From<CreateError> for SetupError {
    fn from(e: CreateError) -> Self {
        Self::Create(e)
    }
}
impl From<SectionError> for SetupError {
    fn from(e: SectionError) -> Self {
        Self::Section(e)
    }
}
impl From<io::Error> for SetupError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The section every data case works on.
pub const SECTION: [u8; 8] = *b"bench-s0";
/// The section [`Op::CreateDelete`] creates and deletes.
const TRANSIENT: [u8; 8] = *b"bench-s1";

/// One operation at one size on its own replica, plus what its fair baseline needs.
#[derive(Debug)]
pub struct DataCase {
    op: Op,
    size: usize,
    arena: Arena,
    payload: PageBuf,
    out: PageBuf,
    slots: usize,
    stride: usize,
}

impl DataCase {
    /// Creates the replica (2 sections of the size the op needs), the section, and
    /// observes the slot working set of the op.
    pub fn new(domain: &BenchDomain, op: Op, size: usize) -> Result<Self, SetupError> {
        let section_size = if op == Op::WriteAt { 2 * size } else { size };
        let arena = domain.arena(&attributes(2, section_size as u64))?;
        if op != Op::CreateDelete {
            arena.create_section(Some(&SECTION), TIME_END, &vec![0x11; section_size])?;
        }
        let stride = section_size.div_ceil(64) * 64;
        let mut case = Self {
            op,
            size,
            arena,
            payload: PageBuf::new(size, 0x22),
            out: PageBuf::new(size, 0),
            slots: 0,
            stride,
        };
        case.slots = case.observe_slots(64)?;
        Ok(case)
    }

    /// The operation.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The size label of the case (bytes moved by the caller).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The replica.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// Distinct data slots the operation cycled through while observed (1 for reads and
    /// borrows, which leave the section's slot in place).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Bytes between slot starts in the arena.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The fair baseline: a memcpy of [`Self::size`] bytes in the op's direction over
    /// [`Self::slots`] buffers of [`Self::stride`] bytes.
    pub fn baseline(&self) -> Baseline {
        // Only fails when the kernel refuses a mapping the arena itself got.
        Baseline::new(
            &self.arena.domain,
            self.op.direction(),
            self.size,
            self.slots,
            self.stride,
        )
        .unwrap_or_else(|e| panic!("baseline mapping for {} {} B: {e}", self.op, self.size))
    }

    /// Runs the operation once. Panics if the engine refuses it: a benchmark must not time
    /// an error path by accident.
    #[inline]
    pub fn run(&mut self) {
        if let Err(e) = self.try_run() {
            panic!("{} of {} B failed: {e}", self.op, self.size);
        }
    }

    #[inline(always)]
    fn try_run(&mut self) -> Result<(), SectionError> {
        let r = &self.arena.replica;
        match self.op {
            Op::Overwrite => r.overwrite(black_box(&SECTION), black_box(&self.payload[..])),
            Op::Read => {
                let n = r.read(black_box(&SECTION), 0, black_box(&mut self.out[..]))?;
                black_box(n);
                Ok(())
            }
            Op::Borrow => {
                let guard = r.borrow(black_box(&SECTION))?;
                black_box(guard.as_ptr());
                black_box(guard.len());
                Ok(())
            }
            Op::WriteAt => {
                let elem = WriteElement {
                    id: &SECTION,
                    offset: black_box(self.size as u64 / 2),
                    data: black_box(&self.payload[..]),
                };
                r.write(&[elem]).map_err(|e| e.kind)
            }
            Op::CreateDelete => {
                r.create_section(
                    Some(black_box(&TRANSIENT)),
                    TIME_END,
                    black_box(&self.payload[..]),
                )?;
                r.delete_section(black_box(&TRANSIENT))
            }
        }
    }

    /// Runs the op `rounds` times and borrows the result after each to see which slot the
    /// section's current version lives in; returns how many distinct slots appeared.
    fn observe_slots(&mut self, rounds: usize) -> Result<usize, SectionError> {
        let mut seen = BTreeSet::new();
        for _ in 0..rounds {
            match self.op {
                Op::CreateDelete => {
                    let r = &self.arena.replica;
                    r.create_section(Some(&TRANSIENT), TIME_END, &self.payload[..])?;
                    seen.insert(r.borrow(&TRANSIENT)?.as_ptr().addr());
                    r.delete_section(&TRANSIENT)?;
                }
                _ => {
                    self.try_run()?;
                    seen.insert(self.arena.replica.borrow(&SECTION)?.as_ptr().addr());
                }
            }
        }
        Ok(seen.len())
    }
}

// ---- API-level cases -----------------------------------------------------------------

/// The API's creation attributes of a benchmark checkpoint: room for 2 sections of `size`
/// bytes, 8-byte ids, a budget of the full capacity, no retention.
pub fn api_attributes(
    creation_flags: ckpt_agent::CreationFlags,
    size: usize,
) -> ckpt_agent::CreationAttributes {
    ckpt_agent::CreationAttributes {
        creation_flags,
        checkpoint_size: 2 * size as u64,
        retention_duration: 0,
        max_sections: 2,
        max_section_size: size as u64,
        max_section_id_size: 8,
    }
}

/// The same operation as a [`DataCase`] (same size, same geometry: 2 sections, 8-byte ids,
/// full budget), made through the application API (`ckpt-agent`): what the API adds over
/// the engine is the ratio of the two.
pub struct ApiCase {
    op: Op,
    // Field order: the checkpoint closes before its library finalizes.
    ck: ckpt_agent::Checkpoint,
    _lib: ckpt_agent::Library,
    payload: PageBuf,
    out: PageBuf,
}

impl fmt::Debug for ApiCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCase")
            .field("op", &self.op)
            .field("checkpoint", &self.ck)
            .finish_non_exhaustive()
    }
}

impl ApiCase {
    /// Opens a checkpoint in `domain` through the API and creates the section. Only
    /// [`Op::Overwrite`], [`Op::Read`] and [`Op::Borrow`] are supported.
    pub fn new(domain: &BenchDomain, op: Op, size: usize) -> Result<Self, ckpt_agent::Error> {
        use ckpt_agent::{Callbacks, Config, CreationFlags, Library, OpenFlags};
        assert!(
            matches!(op, Op::Overwrite | Op::Read | Op::Borrow),
            "ApiCase does not do {op}"
        );
        let config = Config {
            domain: domain.path().join("api"),
            ..Config::default()
        };
        let lib =
            Library::initialize_with(config, ckpt_agent::Version::B_02_02, Callbacks::default())?;
        let n = domain.next.fetch_add(1, Ordering::Relaxed);
        let attrs = api_attributes(CreationFlags::WR_ACTIVE_REPLICA, size);
        let ck = lib.open(
            format!("safCkpt=bench-{n}"),
            Some(&attrs),
            OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
            ckpt_agent::TIME_END,
        )?;
        ck.create_section(Some(&SECTION), TIME_END, &vec![0x11; size])?;
        Ok(Self {
            op,
            ck,
            _lib: lib,
            payload: PageBuf::new(size, 0x22),
            out: PageBuf::new(size, 0),
        })
    }

    /// Runs the operation once. Panics if the API refuses it.
    #[inline]
    pub fn run(&mut self) {
        let r = match self.op {
            Op::Overwrite => self
                .ck
                .overwrite(black_box(&SECTION), black_box(&self.payload[..])),
            Op::Read => self
                .ck
                .read_into(black_box(&SECTION), 0, black_box(&mut self.out[..]))
                .map(|n| {
                    black_box(n);
                }),
            Op::Borrow => self.ck.borrow(black_box(&SECTION)).map(|g| {
                black_box(g.as_ptr());
                black_box(g.len());
            }),
            _ => unreachable!("checked in new"),
        };
        if let Err(e) = r {
            panic!("API {} failed: {e}", self.op);
        }
    }
}

// ---- lookups -------------------------------------------------------------------------

/// Index lookups among `n` sections, through [`Replica::contains`]: key hash, index probe
/// and descriptor validation, with no agent registration, pin or copy (`section_info`
/// would add a `Vec` for the id, a 0-byte `read` the agent lookup and a pin).
#[derive(Debug)]
pub struct LookupCase {
    arena: Arena,
    sections: u32,
    hot: [u8; 8],
    rng: u64,
}

impl LookupCase {
    /// A replica of `sections` sections (`maxSectionSize` 64, ids [`section_id`]`(0..n)`,
    /// empty data), all created.
    pub fn new(domain: &BenchDomain, sections: u32) -> Result<Self, SetupError> {
        let arena = domain.arena(&attributes(sections, 64))?;
        for i in 0..u64::from(sections) {
            arena.create_section(Some(&section_id(i)), TIME_END, &[])?;
        }
        Ok(Self {
            arena,
            sections,
            hot: section_id(u64::from(sections / 2)),
            rng: 0x9e37_79b9_7f4a_7c15,
        })
    }

    /// Sections present.
    pub fn sections(&self) -> u32 {
        self.sections
    }

    /// The replica.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// Looks up the same section again (its index entry, descriptor and id stay cached).
    #[inline]
    pub fn hot(&mut self) {
        let found = self.arena.replica.contains(black_box(&self.hot));
        assert!(found, "the hot section is present");
    }

    /// Looks up a uniformly random existing section (xorshift + multiply-shift, about
    /// 2 ns, paid equally at every section count).
    #[inline]
    pub fn cold(&mut self) {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let i = ((x >> 32) * u64::from(self.sections)) >> 32;
        let found = self.arena.replica.contains(black_box(&section_id(i)));
        assert!(found, "every section below the count is present");
    }
}

// ---- timing harness --------------------------------------------------------------------

/// Batches per measurement (the median is reported).
pub const BATCHES: usize = 31;

/// Median ns per call of `f` over [`BATCHES`] batches of `iters` calls, after one warm-up
/// batch.
pub fn measure(iters: u64, mut f: impl FnMut()) -> f64 {
    let iters = iters.max(1);
    batch(iters, &mut f);
    let mut v: Vec<f64> = (0..BATCHES).map(|_| batch(iters, &mut f)).collect();
    median(&mut v)
}

/// Two measurements interleaved batch by batch, so drift on a shared machine hits both.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairTiming {
    /// Median ns per call of the first function.
    pub a_ns: f64,
    /// Median ns per call of the second function.
    pub b_ns: f64,
    /// Median of the per-batch-pair ratios a / b.
    pub ratio: f64,
}

/// Measures `a` and `b` in alternating batches of `iters` calls each.
pub fn measure_pair(iters: u64, a: impl FnMut(), b: impl FnMut()) -> PairTiming {
    let never = measure_pair_with(iters, BATCHES, a, b, || {
        Ok::<(), core::convert::Infallible>(())
    });
    match never {
        Ok(t) => t,
        Err(e) => match e {},
    }
}

/// [`measure_pair`] with `batches` batch pairs and `before_a` (untimed) before every batch
/// of `a`: for an `a` that must find a state `b` undoes (an idle synchronize measured
/// beside writes). Stops at the first error of `before_a`.
pub fn measure_pair_with<E>(
    iters: u64,
    batches: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
    mut before_a: impl FnMut() -> Result<(), E>,
) -> Result<PairTiming, E> {
    let iters = iters.max(1);
    let batches = batches.max(1);
    before_a()?;
    batch(iters, &mut a);
    batch(iters, &mut b);
    let mut va = Vec::with_capacity(batches);
    let mut vb = Vec::with_capacity(batches);
    let mut vr = Vec::with_capacity(batches);
    for k in 0..batches {
        // Alternate who goes first, so neither always runs on the other's cache leftovers.
        let (ta, tb) = if k % 2 == 0 {
            before_a()?;
            let ta = batch(iters, &mut a);
            (ta, batch(iters, &mut b))
        } else {
            let tb = batch(iters, &mut b);
            before_a()?;
            (batch(iters, &mut a), tb)
        };
        va.push(ta);
        vb.push(tb);
        vr.push(ta / tb.max(f64::MIN_POSITIVE));
    }
    Ok(PairTiming {
        a_ns: median(&mut va),
        b_ns: median(&mut vb),
        ratio: median(&mut vr),
    })
}

/// [`measure_pair`] with the batch length [`calibrate`]d so that a batch of the slower of
/// the two takes about `target`.
pub fn measure_pair_for(target: Duration, mut a: impl FnMut(), mut b: impl FnMut()) -> PairTiming {
    let iters = calibrate(target, &mut a).min(calibrate(target, &mut b));
    measure_pair(iters, a, b)
}

/// Calls per batch so that one batch of `f` takes about `target`.
pub fn calibrate(target: Duration, mut f: impl FnMut()) -> u64 {
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let el = t.elapsed();
        if el >= target / 8 || n >= 1 << 30 {
            let per = el.as_nanos().max(1) as f64 / n as f64;
            return ((target.as_nanos() as f64 / per) as u64).max(1);
        }
        n *= 2;
    }
}

fn batch(iters: u64, f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `q`-quantile (0 ≤ `q` ≤ 1) of `v` by nearest rank: `percentile(v, 0.5)` is the
/// median, `percentile(v, 0.99)` the p99. NaN when `v` is empty.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_runs_and_its_baseline_spans_the_observed_slots() {
        let domain = BenchDomain::new().unwrap();
        for op in Op::ALL {
            let mut sut = DataCase::new(&domain, op, 64).unwrap();
            sut.run();
            let mut base = sut.baseline();
            base.run();
            assert!(sut.slots() >= 1, "{op}");
            assert_eq!(base.slots(), sut.slots(), "{op}");
        }
    }

    #[test]
    fn lookups_find_hot_and_random_sections() {
        let domain = BenchDomain::new().unwrap();
        let mut sut = LookupCase::new(&domain, 100).unwrap();
        assert_eq!(sut.arena().status().sections, 100);
        for _ in 0..1000 {
            sut.hot();
            sut.cold();
        }
    }

    #[test]
    fn domain_directory_is_removed_on_drop() {
        let domain = BenchDomain::new().unwrap();
        let dir = domain.path().to_path_buf();
        let arena = domain.arena(&attributes(2, 64)).unwrap();
        assert!(dir.is_dir());
        drop(arena);
        drop(domain);
        assert!(!dir.exists());
    }

    #[test]
    fn page_buffers_start_on_a_page() {
        for len in [1, 64, 4096, 70_000] {
            let sut = PageBuf::new(len, 7);
            assert_eq!(sut.as_ptr().addr() % 4096, 0);
            assert_eq!(sut.len(), len);
        }
    }

    #[test]
    fn measurements_report_positive_times() {
        let mut x = 0u64;
        let mut y = 0u64;
        let t = measure_pair(
            1000,
            || x = black_box(x.wrapping_add(1)),
            || y = black_box(y.wrapping_add(1)),
        );
        assert!(t.a_ns > 0.0 && t.b_ns > 0.0 && t.ratio > 0.0);
        assert!(measure(100, || x = black_box(x ^ 1)) > 0.0);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_hook_runs_before_every_batch_of_a_and_its_error_stops_the_pair() {
        let mut hooks = 0;
        let t = measure_pair_with(
            10,
            5,
            || (),
            || (),
            || {
                hooks += 1;
                Ok::<(), ()>(())
            },
        );
        assert!(t.is_ok());
        assert_eq!(hooks, 6, "warm-up plus one per batch pair");
        let failed = measure_pair_with(10, 5, || (), || (), || Err("gone"));
        assert_eq!(failed, Err("gone"));
    }
}
