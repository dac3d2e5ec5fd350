//! Replication support for the node daemon: the [`Applier`], which makes the changes of a
//! replica's primary on an object whose role refuses local changes, and the replication
//! position the daemon resumes from after a restart.
//!
//! An applier operation is the normal operation with the role check skipped, nothing else:
//! the same validation, the same copy-on-write commit and crash recovery, the same journal
//! records (so arrival watchers and journal consumers on this node see applied changes),
//! the same reaping rules. The flag is a const generic of the internal functions, so the
//! normal path keeps exactly the code it had.
//!
//! ```
//! use ckpt_engine::{Replica, ReplicaAttributes, ReplicaLimits, Role, SectionError, TIME_END};
//!
//! let attrs = ReplicaAttributes {
//!     creation_flags: 0,
//!     checkpoint_size: 4096,
//!     retention_ns: 0,
//!     max_sections: 4,
//!     max_section_size: 1024,
//!     max_section_id_size: 16,
//! };
//! let sut = Replica::create_in_memory(&attrs, &ReplicaLimits::default()).unwrap();
//! sut.set_role(Role::Replica, 1);
//! assert_eq!(sut.create_section(Some(b"a"), TIME_END, b"x"), Err(SectionError::NotPrimary));
//!
//! let applier = sut.applier();
//! applier.put(b"a", TIME_END, b"from the primary").unwrap();
//! sut.set_replication_position(1, 17);
//! assert_eq!(sut.read_to_vec(b"a").unwrap(), b"from the primary");
//! assert_eq!(sut.replication_position(), (1, 17));
//! ```

use crate::error::{SectionError, VectorError};
use crate::layout::{KIND_LIVE, NONE, current_gen, current_slot, desc as dw, hdr, state_kind};
use crate::region::Desc;
use crate::replica::{Replica, SPIN_LIMIT, TIME_END, WriteElement};
use crate::sync::{Ordering::*, backoff};

/// Attempts of [`Applier::put`] when concurrent creates and deletes of the same id keep
/// moving it between "absent" and "present".
const PUT_TRIES: u32 = 16;
/// Attempts to read a consistent (generation, id) of one descriptor in
/// [`Applier::retain`] before it is skipped as being recreated meanwhile.
const READ_TRIES: u32 = 64;

/// Changes a replica regardless of its role: the node daemon's handle for applying the
/// primary's changes on a [`Role::Replica`](crate::Role::Replica) object, and for ordering
/// the writes of a checkpoint whose role stays `Replica` for applications. Obtained with
/// [`Replica::applier`].
///
/// Every method behaves exactly like the [`Replica`] method of the same name (or the one
/// named in its doc), errors included, except that it never returns
/// [`SectionError::NotPrimary`].
#[derive(Clone, Copy, Debug)]
pub struct Applier<'r> {
    replica: &'r Replica,
}

impl Replica {
    /// A handle whose changes skip the role check (for the node daemon only: applications
    /// must keep getting [`SectionError::NotPrimary`] on a replica). See [`Applier`].
    pub fn applier(&self) -> Applier<'_> {
        Applier { replica: self }
    }

    /// The replication position last stored by [`Replica::set_replication_position`]:
    /// `(term, seq)` of the last change of the primary applied here. `(0, 0)` in a new
    /// object. It lives in the object, so it survives detach and attach (and a restart of
    /// the node daemon), but not the object's removal.
    pub fn replication_position(&self) -> (u64, u64) {
        let select = self.region.hdr(hdr::APPLIED_SELECT);
        let mut since = None;
        let mut last = (0, 0);
        for attempt in 0..SPIN_LIMIT {
            // A double-buffer read: the pair named by the selector, accepted if the
            // selector did not move meanwhile. All SeqCst: a writer fills the other pair
            // before it moves the selector, and refills this one only after.
            let before = select.load(SeqCst);
            let k = (before & 1) as usize;
            let term = self.region.hdr(hdr::APPLIED_TERM[k]).load(SeqCst);
            let seq = self.region.hdr(hdr::APPLIED_SEQ[k]).load(SeqCst);
            if select.load(SeqCst) == before {
                return (term, seq);
            }
            last = (term, seq);
            // A retry means a writer published meanwhile, and a dead writer never moves
            // the selector again: lock-free. Bounded all the same, since shared memory is
            // untrusted: a process scribbling the selector without end gets the last pair
            // read (garbage in, garbage out, but no hang).
            if !backoff(attempt, &mut since) {
                break;
            }
        }
        last
    }

    /// Stores the replication position: `(term, seq)` of the last change of the primary
    /// applied here. Store it after applying that change; a daemon restarting after a
    /// crash in between applies that change again, which is harmless for the [`Applier`]'s
    /// idempotent operations ([`Applier::put`], [`Applier::write`] of the same bytes,
    /// [`Applier::delete`]).
    ///
    /// Crash-atomic: the pair is written into the idle half of a double buffer and
    /// published by one store, so a writer killed at any instruction leaves the old or the
    /// new position, never a mix. Writers of one process are serialised; writers in
    /// different processes must not overlap (there is one node daemon).
    pub fn set_replication_position(&self, term: u64, seq: u64) {
        let _writer = self
            .position_writer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let select = self.region.hdr(hdr::APPLIED_SELECT);
        let current = select.load(SeqCst);
        let idle = ((current & 1) ^ 1) as usize;
        self.region.hdr(hdr::APPLIED_TERM[idle]).store(term, SeqCst);
        self.region.hdr(hdr::APPLIED_SEQ[idle]).store(seq, SeqCst);
        // The publish. Wrapping: the selector is a shared word and may hold anything.
        select.store(current.wrapping_add(1), SeqCst);
    }
}

impl<'r> Applier<'r> {
    /// The replica this applier changes.
    pub fn replica(&self) -> &'r Replica {
        self.replica
    }

    /// Makes section `id` hold exactly `data` and expire at `expiration`: creates it if it
    /// is absent (or expired), else overwrites its data and then sets its expiration if it
    /// differs (two journal records, as the two calls would make). Errors: those of
    /// [`Replica::create_section`] and [`Replica::overwrite`], checked before anything
    /// changes where they concern the arguments (`TooBig`, `BadArgument` for a negative
    /// expiration or an expiring default section).
    pub fn put(&self, id: &[u8], expiration: i64, data: &[u8]) -> Result<(), SectionError> {
        let r = self.replica;
        if data.len() as u64 > r.attributes().max_section_size {
            return Err(SectionError::TooBig);
        }
        if expiration < 0 {
            return Err(SectionError::BadArgument(&"negative expiration time"));
        }
        if r.is_default_checkpoint() && id.is_empty() && expiration != TIME_END {
            return Err(SectionError::BadArgument(
                &"the default section never expires",
            ));
        }
        let mut last = SectionError::TryAgain;
        for _ in 0..PUT_TRIES {
            match r.overwrite_as::<true>(id, data) {
                Ok(()) => {
                    let set = match r.section_info(id) {
                        Ok(info) if info.expiration == expiration => Ok(()),
                        Ok(_) => r.set_expiration_as::<true>(id, expiration),
                        Err(e) => Err(e),
                    };
                    match set {
                        // Deleted (or expired) right after the overwrite: start again.
                        Err(SectionError::NotExist) => {
                            last = SectionError::NotExist;
                            continue;
                        }
                        done => return done,
                    }
                }
                Err(SectionError::NotExist) => {}
                Err(e) => return Err(e),
            }
            match r.create_section_as::<true>(Some(id), expiration, data) {
                Ok(_) => return Ok(()),
                // Created by someone else meanwhile: overwrite it. A default-section
                // checkpoint refuses every create with `Exists`: no point in retrying.
                Err(SectionError::Exists) if !r.is_default_checkpoint() => {
                    last = SectionError::Exists;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Writes `data` at `offset` of section `id`; the section grows as needed (holes read
    /// as zeros). As [`Replica::write`] with one element.
    pub fn write(&self, id: &[u8], offset: u64, data: &[u8]) -> Result<(), SectionError> {
        self.write_many(&[WriteElement { id, offset, data }])
            .map_err(|e| e.kind)
    }

    /// As [`Replica::write`]: several elements, all or nothing.
    pub fn write_many(&self, elems: &[WriteElement<'_>]) -> Result<(), VectorError> {
        self.replica.write_as::<true>(elems)
    }

    /// As [`Replica::overwrite`].
    pub fn overwrite(&self, id: &[u8], data: &[u8]) -> Result<(), SectionError> {
        self.replica.overwrite_as::<true>(id, data)
    }

    /// As [`Replica::create_section`]: returns the id used (generated when `id` is
    /// `None`).
    pub fn create_section(
        &self,
        id: Option<&[u8]>,
        expiration: i64,
        data: &[u8],
    ) -> Result<Vec<u8>, SectionError> {
        self.replica.create_section_as::<true>(id, expiration, data)
    }

    /// As [`Replica::delete_section`], except that an absent section is `Ok(false)`:
    /// returns whether the section existed.
    pub fn delete(&self, id: &[u8]) -> Result<bool, SectionError> {
        match self.replica.delete_section_as::<true>(id) {
            Ok(()) => Ok(true),
            Err(SectionError::NotExist) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// As [`Replica::set_expiration`].
    pub fn set_expiration(&self, id: &[u8], expiration: i64) -> Result<(), SectionError> {
        self.replica.set_expiration_as::<true>(id, expiration)
    }

    /// Deletes every section whose id `keep` rejects, expired ones included; returns how
    /// many it deleted. After a resync, `keep` says which ids the primary has. The default
    /// section of a default-section checkpoint cannot be deleted and is never offered.
    /// Sections created while it runs may or may not be offered. Errors: those of
    /// [`Replica::delete_section`] other than `NotExist` (a section deleted meanwhile is
    /// skipped); the sections already deleted stay deleted, and calling it again resumes.
    pub fn retain(&self, keep: impl Fn(&[u8]) -> bool) -> Result<usize, SectionError> {
        let r = self.replica;
        if r.is_default_checkpoint() {
            return Ok(0);
        }
        let a = r.agent()?;
        let mut deleted = 0;
        for d in 0..r.region.img.max_sections {
            let Some((generation, id)) = self.live_id(Desc(d)) else {
                continue;
            };
            if keep(&id) {
                continue;
            }
            match r.delete_desc(a, Desc(d), generation) {
                Ok(()) => deleted += 1,
                Err(SectionError::NotExist) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// The generation and id of descriptor `d` if it holds a section (expired or not),
    /// read consistently: the generation is the same before and after the id.
    fn live_id(&self, d: Desc) -> Option<(u32, Vec<u8>)> {
        let region = &self.replica.region;
        for _ in 0..READ_TRIES {
            let cur = region.desc(d, dw::CURRENT).load(SeqCst);
            if current_slot(cur) == NONE
                || state_kind(region.desc(d, dw::STATE).load(Acquire)) != KIND_LIVE
            {
                return None;
            }
            let id = self.replica.read_id(d);
            if current_gen(region.desc(d, dw::CURRENT).load(SeqCst)) == current_gen(cur) {
                return Some((current_gen(cur), id));
            }
        }
        None
    }

    /// As [`Replica::reap_expired`], but on any role: for the node daemon ordering the
    /// changes of a checkpoint whose role stays `Replica` for applications. Returns how
    /// many sections it deleted.
    pub fn reap_expired(&self, now: i64) -> usize {
        self.replica.reap_expired_as::<true>(now)
    }
}
