//! Replicas in sealed memfds (DESIGN.md §9, "Sealed objects"; §23.1): created by one
//! process (ckptd), shared by passing the descriptor (`SCM_RIGHTS`), never by name. The
//! kernel refuses every change of their length, to root too, so no holder of a descriptor
//! can make the others' mappings fault.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::{CreateOptions, Replica, Role};
use crate::error::{AttachError, CreateError};
use crate::layout::{HEADER_SIZE, HeaderImage, ReplicaAttributes};
use crate::region::Region;
use crate::shm;
use crate::sync::Ordering::SeqCst;

impl Replica {
    /// Creates a replica as an anonymous memfd (`name` only shows in `/proc/<pid>/fd`):
    /// its whole size reserved with `posix_fallocate` (a full memory cgroup gives
    /// [`CreateError::NoResources`]), sealed with `F_SEAL_SHRINK | F_SEAL_GROW |
    /// F_SEAL_SEAL` before anything else can see it, pre-faulted, then initialised like
    /// [`Replica::create`]. Other processes get it only through its descriptor
    /// ([`Replica::sealed_fd`], passed over a Unix socket) and [`Replica::attach_fd`].
    ///
    /// `domain` is the directory whose `procs/` records this process's liveness (the
    /// objects themselves are not in it); `opts.sharing` does not apply (the descriptor is
    /// the access).
    pub fn create_sealed(
        domain: &Path,
        name: &str,
        attrs: &ReplicaAttributes,
        opts: &CreateOptions,
    ) -> Result<Self, CreateError> {
        let img = super::new_image(attrs, opts)?;
        let map = shm::create_sealed(name, img.total_size)?;
        let replica = Self::init(map, img, Some(domain.to_path_buf()), None)?;
        if opts.role == Role::Replica {
            replica.set_role(Role::Replica, 0);
        }
        Ok(replica)
    }

    /// Attaches a replica from a descriptor received from another process, which is
    /// untrusted: it must be a regular tmpfs file (a memfd) carrying at least the seals
    /// `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` ([`AttachError::NotSealed`] otherwise),
    /// and its header page is validated against its length (as [`Replica::attach`] does)
    /// before the rest is mapped, pre-faulted. Dead agents found in it are recovered
    /// before this returns. The replica keeps `fd`.
    ///
    /// Owner and mode are not checked, unlike a named object's: nothing can open a memfd
    /// by name, and the seals, not the uid, are what keep its length.
    pub fn attach_fd(domain: &Path, fd: OwnedFd) -> Result<Self, AttachError> {
        let len = shm::check_sealed(fd.as_fd())?;
        if len < HEADER_SIZE {
            return Err(AttachError::NotInitialized);
        }
        // The header page alone first: a huge object is not mapped (nor pre-faulted)
        // before its header has said it is a replica of exactly that size.
        let head = shm::map_sealed(fd.as_fd(), HEADER_SIZE)?;
        if Region::version_word(&head).load(SeqCst) == 0 {
            return Err(AttachError::NotInitialized);
        }
        // SAFETY: the mapping is a header long; the image is read by value (volatile,
        // since other processes share the page) and validated before use.
        let img = unsafe { core::ptr::read_volatile(head.ptr().cast::<HeaderImage>()) };
        drop(head);
        img.validate(len)?;
        // Sealed: the length cannot have changed since `check_sealed`.
        let map = shm::keep_fd(shm::map_sealed(fd.as_fd(), len)?, fd);
        let replica = Self::from_region(Region::new(map, img), Some(domain.to_path_buf()), None);
        replica.recover_dead_agents();
        Ok(replica)
    }

    /// The sealed memfd this replica lives in ([`Replica::create_sealed`],
    /// [`Replica::attach_fd`]); `None` for a named object or an in-memory replica.
    pub fn sealed_fd(&self) -> Option<BorrowedFd<'_>> {
        self.region.mapping().sealed_fd()
    }
}
