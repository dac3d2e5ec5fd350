//! Shared-memory objects: create (exclusive, no symlinks, space reserved up front,
//! pre-faulted), attach (owner and mode checked), remove. Also the heap backing used by
//! simulations and model tests. The file descriptor of a named object is closed once
//! mapped; a sealed memfd (DESIGN.md §9, "Sealed objects") keeps its descriptor, which is
//! the only way to reach it.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FallocateFlags, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use crate::error::{AttachError, CreateError, errno};
use crate::sync::AtomicU64;

/// Who may open an object besides its owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sharing {
    /// A group whose members may attach too (objects become 0660 with this group).
    pub group: Option<u32>,
}

impl Sharing {
    fn final_mode(self) -> u32 {
        if self.group.is_some() { 0o660 } else { 0o600 }
    }
}

/// A mapped object: base pointer and length, kept alive by its backing.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
    _backing: Backing,
    /// The sealed memfd behind the mapping (`None` for a named object or the heap).
    sealed: Option<OwnedFd>,
}

#[derive(Debug)]
enum Backing {
    Mmap(#[allow(dead_code)] memmap2::MmapRaw),
    Heap(#[allow(dead_code)] Box<[AtomicU64]>),
}

// SAFETY: the mapping is plain memory shared with other processes anyway; every access
// goes through atomics or through slots the protocol gives one party at a time.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Zeroed heap memory, 8-byte aligned.
    pub(crate) fn heap(len: u64) -> Option<Self> {
        let words = usize::try_from(len.div_ceil(8)).ok()?;
        let mut v = Vec::new();
        v.try_reserve_exact(words).ok()?;
        v.extend((0..words).map(|_| AtomicU64::new(0)));
        let mut b = v.into_boxed_slice();
        let ptr = b.as_mut_ptr().cast::<u8>();
        Some(Self {
            ptr,
            len: words * 8,
            _backing: Backing::Heap(b),
            sealed: None,
        })
    }

    fn map(file: &impl AsFd, len: u64) -> Result<Self, i32> {
        let len = usize::try_from(len).map_err(|_| libc::EFBIG)?;
        let raw = memmap2::MmapOptions::new()
            .len(len)
            .populate()
            .map_raw(&file.as_fd())
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let ptr = raw.as_mut_ptr();
        Ok(Self {
            ptr,
            len,
            _backing: Backing::Mmap(raw),
            sealed: None,
        })
    }

    /// The sealed memfd behind the mapping, if it is one.
    pub(crate) fn sealed_fd(&self) -> Option<BorrowedFd<'_>> {
        self.sealed.as_ref().map(AsFd::as_fd)
    }
}

/// Creates `path` exclusively (never following a symlink, never reusing an existing
/// object), reserves `len` bytes with `posix_fallocate`, and maps it pre-faulted. The
/// object is 0600 until [`widen`] is called after initialisation.
pub(crate) fn create(path: &Path, len: u64) -> Result<Mapping, CreateError> {
    let fd: OwnedFd = rustix::fs::open(
        path,
        OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| match e {
        Errno::EXIST | Errno::LOOP => CreateError::AlreadyExists,
        e => CreateError::Io(errno(e)),
    })?;
    let cleanup = |e: CreateError| {
        let _ = rustix::fs::unlink(path);
        e
    };
    // umask may have narrowed the mode; make it exactly 0600.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))
        .map_err(|e| cleanup(CreateError::Io(errno(e))))?;
    match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len) {
        Ok(()) => {}
        Err(Errno::NOSPC | Errno::FBIG | Errno::NOMEM) => {
            return Err(cleanup(CreateError::NoResources { needed: len }));
        }
        Err(e) => return Err(cleanup(CreateError::Io(errno(e)))),
    }
    let file = File::from(fd);
    Mapping::map(&file, len).map_err(|e| {
        if e == libc::ENOMEM {
            cleanup(CreateError::NoResources { needed: len })
        } else {
            cleanup(CreateError::Io(e))
        }
    })
}

/// A private buffer in `/dev/shm` (or any tmpfs directory): an object created the way a
/// replica object is (exclusive, never through a symlink, 0600, every byte reserved with
/// `posix_fallocate`, mapped pre-faulted), then unlinked at once, so its pages are the same
/// kind of memory as an arena's and no other process can open it afterwards. Made for
/// benchmark baselines that must copy into the same memory as the engine does.
#[derive(Debug)]
pub struct ShmBuffer {
    map: Mapping,
}

impl ShmBuffer {
    /// A buffer of `len` bytes (at least 1), created as a hidden name in `dir` and unlinked
    /// before this returns. Errors as [`crate::Replica::create`]'s for the object: no space
    /// is `NoResources`.
    pub fn create(dir: &Path, len: usize) -> Result<Self, CreateError> {
        use std::sync::atomic::{AtomicU64 as Counter, Ordering};
        static NEXT: Counter = Counter::new(0);
        let name = format!(
            ".buffer-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let map = create(&path, len.max(1) as u64)?;
        rustix::fs::unlink(&path).map_err(|e| CreateError::Io(errno(e)))?;
        Ok(Self { map })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, alive as long as `self`, and nobody else can
        // reach the unlinked object (the trust boundary of engine/DESIGN.md section 1:
        // whoever opened it in the instant before the unlink could still truncate it).
        unsafe { core::slice::from_raw_parts(self.map.ptr(), self.map.len()) }
    }

    /// The bytes, for writing.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference.
        unsafe { core::slice::from_raw_parts_mut(self.map.ptr(), self.map.len()) }
    }
}

/// The seals a replica object shared by descriptor must carry: its length can change no
/// more (shrink and grow refused with EPERM, to root too), and no seal can be added or
/// removed (so nobody can add `F_SEAL_WRITE` and stop the writers either).
pub(crate) const REQUIRED_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Creates an anonymous memfd (`name` only shows in `/proc/<pid>/fd`) of `len` bytes,
/// reserved with `posix_fallocate` like a named object, sealed with [`REQUIRED_SEALS`]
/// before anything else can see it, and mapped pre-faulted. The mapping keeps the
/// descriptor.
pub(crate) fn create_sealed(name: &str, len: u64) -> Result<Mapping, CreateError> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| match e {
            Errno::MFILE | Errno::NFILE | Errno::NOMEM => CreateError::NoResources { needed: len },
            e => CreateError::Io(errno(e)),
        })?;
    match rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len) {
        Ok(()) => {}
        Err(Errno::NOSPC | Errno::FBIG | Errno::NOMEM) => {
            return Err(CreateError::NoResources { needed: len });
        }
        Err(e) => return Err(CreateError::Io(errno(e))),
    }
    rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS).map_err(|e| CreateError::Io(errno(e)))?;
    let mut map = Mapping::map(&fd, len).map_err(|e| {
        if e == libc::ENOMEM {
            CreateError::NoResources { needed: len }
        } else {
            CreateError::Io(e)
        }
    })?;
    map.sealed = Some(fd);
    Ok(map)
}

/// Checks a descriptor received from elsewhere (untrusted): a regular file on tmpfs (a
/// memfd), sealed with at least [`REQUIRED_SEALS`]. Returns its length.
pub(crate) fn check_sealed(fd: BorrowedFd<'_>) -> Result<u64, AttachError> {
    let st = rustix::fs::fstat(fd).map_err(|e| AttachError::Io(errno(e)))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(AttachError::WrongMode { mode: st.st_mode });
    }
    // Seals exist on tmpfs and hugetlbfs only; a hugetlbfs object is refused (its pages
    // come from a separate pool and its length must be a multiple of a huge page).
    let fs = rustix::fs::fstatfs(fd).map_err(|e| AttachError::Io(errno(e)))?;
    // TMPFS_MAGIC: tmpfs, and the internal mount behind memfds.
    if fs.f_type != 0x0102_1994 {
        return Err(AttachError::WrongMode { mode: st.st_mode });
    }
    let seals = match rustix::fs::fcntl_get_seals(fd) {
        Ok(s) => s,
        Err(Errno::INVAL) => SealFlags::empty(),
        Err(e) => return Err(AttachError::Io(errno(e))),
    };
    if !seals.contains(REQUIRED_SEALS) {
        return Err(AttachError::NotSealed {
            seals: seals.bits(),
        });
    }
    u64::try_from(st.st_size).map_err(|_| AttachError::CorruptHeader("size"))
}

/// Maps the first `len` bytes of a descriptor [`check_sealed`] accepted (the whole
/// object, or only its header page to validate it before committing to the rest).
pub(crate) fn map_sealed(fd: BorrowedFd<'_>, len: u64) -> Result<Mapping, AttachError> {
    Mapping::map(&fd, len).map_err(AttachError::Io)
}

/// Gives a mapping of the whole sealed object its descriptor to keep.
pub(crate) fn keep_fd(mut map: Mapping, fd: OwnedFd) -> Mapping {
    map.sealed = Some(fd);
    map
}

/// Opens the file behind `path` with the checks every shared object gets: no symlink, a
/// regular file, owned by us, no access for others (group access only when configured).
pub(crate) fn open_checked(path: &Path, sharing: Sharing) -> Result<(File, u64), AttachError> {
    let fd: OwnedFd = rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NOENT => AttachError::NotFound,
        Errno::LOOP => AttachError::WrongMode { mode: 0o120_777 },
        e => AttachError::Io(errno(e)),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| AttachError::Io(errno(e)))?;
    let mode = st.st_mode;
    if mode & libc::S_IFMT != libc::S_IFREG {
        return Err(AttachError::WrongMode { mode });
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(AttachError::WrongOwner { uid: st.st_uid });
    }
    let allowed = if sharing.group.is_some_and(|g| g == st.st_gid) {
        0o660
    } else {
        0o600
    };
    if mode & 0o777 & !allowed != 0 {
        return Err(AttachError::WrongMode { mode });
    }
    let len = u64::try_from(st.st_size).map_err(|_| AttachError::CorruptHeader("size"))?;
    Ok((File::from(fd), len))
}

/// Attaches an existing object after [`open_checked`].
pub(crate) fn attach(path: &Path, sharing: Sharing, min_len: u64) -> Result<Mapping, AttachError> {
    let (file, len) = open_checked(path, sharing)?;
    if len < min_len {
        return Err(AttachError::NotInitialized);
    }
    Mapping::map(&file, len).map_err(AttachError::Io)
}

/// Grants the configured group access once the object is initialised.
pub(crate) fn widen(path: &Path, sharing: Sharing) -> Result<(), i32> {
    if let Some(gid) = sharing.group {
        let gid = rustix::fs::Gid::from_raw(gid);
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            None,
            Some(gid),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)?;
        rustix::fs::chmod(path, Mode::from_raw_mode(sharing.final_mode())).map_err(errno)?;
    }
    Ok(())
}

/// Removes an object by name. Mappings others hold stay valid until they unmap.
pub(crate) fn remove(path: &Path) -> Result<(), i32> {
    match rustix::fs::unlink(path) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(errno(e)),
    }
}
