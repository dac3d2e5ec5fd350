//! Checkpoint handles (`SaCkptCheckpointHandleT`): sections, data, iteration,
//! synchronize, status.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ckpt_engine::{Role, SectionCursor, SectionFilter, SectionGuard, set_write_tag};
use ckpt_transport::wire::{DirOp, DirReply, ReadElem, RemoteOp, RemoteResult, WriteElem};

use crate::cluster;
use crate::error::{Error, Result, VectorError, from_registry, from_section, from_vector};
use crate::library::{LibInner, Pending, lib_of, time_limit};
use crate::shared::Instance;
use crate::types::{
    ArrivalElement, CheckpointHandle, CheckpointStatus, CreationFlags, Invocation, OpenFlags,
    ReadElement, SectionDescriptor, SectionState, SectionsChosen, TIME_END, WriteElement,
};

static NEXT_CHECKPOINT: AtomicU64 = AtomicU64::new(1);

/// How long a close waits for ckptd's answer (the close itself cannot fail).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The longest a remote operation waits for ckptd's answer. ckptd answers every one
/// well before (an ALL_REPLICAS write within its write timeout, a forwarded one when the
/// primary answers or its node is lost); this only bounds a daemon that stops answering.
const REMOTE_WAIT: Duration = Duration::from_secs(30);

pub(crate) struct CkptInner {
    pub(crate) handle: CheckpointHandle,
    /// The journal tag of this handle's changes (24 bits, never 0).
    pub(crate) tag: u32,
    pub(crate) lib: Weak<LibInner>,
    pub(crate) inst: Arc<Instance>,
    pub(crate) flags: OpenFlags,
    pub(crate) closed: AtomicBool,
    collocated_async: bool,
    all_replicas: bool,
    max_section_size: u64,
    write_bytes: u64,
    b02: bool,
    /// Cluster mode: writes this handle made directly on the node's replica (as the
    /// primary) that no synchronize confirmed yet, as (term, highest commit seq) per term.
    unconfirmed: Mutex<Vec<(u64, u64)>>,
}

/// Terms an unconfirmed list keeps apart; older ones merge into the oldest kept (which
/// only makes a synchronize more careful).
const UNCONFIRMED_TERMS: usize = 8;

impl CkptInner {
    pub(crate) fn new(lib: Weak<LibInner>, inst: Arc<Instance>, flags: OpenFlags) -> Arc<Self> {
        let n = NEXT_CHECKPOINT.fetch_add(1, Relaxed);
        let (write_bytes, b02) = match lib.upgrade() {
            Some(l) => (l.config.limits.write_bytes, l.requested.is_b02()),
            None => (u64::MAX, true),
        };
        Arc::new(Self {
            handle: CheckpointHandle(n),
            tag: (n % u64::from(ckpt_engine::MAX_WRITE_TAG)) as u32 + 1,
            lib,
            collocated_async: inst.attrs.creation_flags.is_collocated_async(),
            all_replicas: inst
                .attrs
                .creation_flags
                .contains(CreationFlags::WR_ALL_REPLICAS),
            max_section_size: inst.attrs.max_section_size,
            write_bytes,
            b02,
            inst,
            flags,
            closed: AtomicBool::new(false),
            unconfirmed: Mutex::new(Vec::new()),
        })
    }

    /// The term the node's replica is primary in, read before a direct write: the write,
    /// if the engine accepts it, is in this term or a later one.
    #[inline]
    fn direct_term(&self) -> u64 {
        if self.inst.cluster.is_none() {
            return 0;
        }
        self.inst.replica.role().1
    }

    /// Records a direct write accepted in `term` (or later), for synchronize.
    #[inline]
    fn wrote_direct(&self, term: u64) {
        if self.inst.cluster.is_none() {
            return;
        }
        self.wrote_at(term, self.inst.replica.commit_seq());
    }

    /// Records a write at `seq` of the primary's journal in `term`, for synchronize.
    fn wrote_at(&self, term: u64, seq: u64) {
        let mut u = self.unconfirmed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = u.iter().position(|(t, _)| *t == term) {
            u[i].1 = u[i].1.max(seq);
        } else if u.len() < UNCONFIRMED_TERMS {
            u.push((term, seq));
        } else if let Some(last) = u.last_mut() {
            last.1 = last.1.max(seq);
        }
    }

    fn unconfirmed(&self) -> Vec<(u64, u64)> {
        self.unconfirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A synchronize confirmed (or reported lost) the writes of `seen`; later ones stay.
    fn confirmed(&self, seen: &[(u64, u64)]) {
        let mut u = self.unconfirmed.lock().unwrap_or_else(|e| e.into_inner());
        u.retain(|(t, s)| !seen.iter().any(|(st, ss)| st == t && s <= ss));
    }

    /// Closes once: the registry's open count, the library's table, pending callbacks.
    /// Returns whether this call closed it.
    pub(crate) fn close_inner(&self) -> bool {
        if self.closed.swap(true, AcqRel) {
            return false;
        }
        self.inst.watch.unsubscribe(self.handle);
        if let Some(lib) = lib_of(&self.lib) {
            lib.lock().checkpoints.remove(&self.handle);
            lib.cancel(self.handle);
        }
        match &self.inst.cluster {
            Some(client) => {
                let op = DirOp::Close {
                    instance: self.inst.id,
                    node: 0,
                };
                // ckptd closes it anyway when this process's session ends.
                let _ = client.request(op, Some(CLOSE_WAIT));
            }
            None => {
                if let Some(reg) = &self.inst.registry {
                    let _ = reg.close(self.inst.id);
                }
            }
        }
        true
    }

    pub(crate) fn subscribe_arrivals(self: &Arc<Self>) {
        if self.flags.contains(OpenFlags::READ) && !self.closed.load(Acquire) {
            Instance::subscribe(&self.inst, self);
        }
    }

    /// Every section now, as arrival elements (a resync): from the replica the handle's
    /// reads come from (the active one, through ckptd, when that is elsewhere; nothing
    /// when it cannot be reached now).
    pub(crate) fn every_section(&self) -> Vec<ArrivalElement> {
        if self.remote_reads() {
            let op = RemoteOp::Sections {
                filter: 5, // SA_CKPT_SECTIONS_ANY
                time: 0,
            };
            return match self.remote(op, Some(REMOTE_WAIT)) {
                Ok(RemoteResult::Sections { items }) => items
                    .into_iter()
                    .map(|s| ArrivalElement {
                        section_id: s.id,
                        offset: 0,
                        size: s.size,
                    })
                    .collect(),
                _ => Vec::new(),
            };
        }
        self.inst
            .replica
            .sections(SectionFilter::Any)
            .map(|s| ArrivalElement {
                section_id: s.id,
                offset: 0,
                size: s.size,
            })
            .collect()
    }

    #[inline]
    fn open(&self) -> Result<()> {
        if self.closed.load(Relaxed) {
            return Err(Error::BadHandle);
        }
        Ok(())
    }

    #[inline]
    fn need(&self, flag: OpenFlags) -> Result<()> {
        if !self.flags.contains(flag) {
            return Err(Error::Access);
        }
        Ok(())
    }

    /// Standalone: a collocated asynchronous checkpoint without an active replica has no
    /// data yet. In a cluster the active replica may be elsewhere: the node that orders
    /// the writes answers (NotExist when there is none).
    #[inline]
    fn active(&self) -> Result<()> {
        if self.collocated_async && self.inst.cluster.is_none() && !self.inst.is_active() {
            return Err(Error::NotExist);
        }
        Ok(())
    }

    /// Whether writes go to ckptd: ALL_REPLICAS writes are ordered (and published) by the
    /// daemon of the primary's node; other writes go there unless the node's replica is
    /// the primary.
    #[inline]
    fn remote_writes(&self) -> bool {
        self.inst.cluster.is_some()
            && (self.all_replicas || !self.inst.local || !self.inst.is_active())
    }

    /// Whether reads go to ckptd: an asynchronous checkpoint is read from its active
    /// replica; an ALL_REPLICAS one from the node's replica when there is one.
    #[inline]
    fn remote_reads(&self) -> bool {
        self.inst.cluster.is_some()
            && (!self.inst.local || (!self.all_replicas && !self.inst.is_active()))
    }

    fn remote(&self, op: RemoteOp, timeout: Option<Duration>) -> Result<RemoteResult> {
        let client = self.inst.cluster.as_ref().ok_or(Error::BadHandle)?;
        match client.remote(self.inst.id, op, timeout)? {
            RemoteResult::Failed { code, .. } => Err(Error::from_code(code)),
            r => Ok(r),
        }
    }

    fn remote_done(&self, op: RemoteOp) -> Result<()> {
        match self.remote(op, Some(REMOTE_WAIT))? {
            RemoteResult::Done => Ok(()),
            RemoteResult::Applied { term, seq } => {
                self.wrote_at(term, seq);
                Ok(())
            }
            _ => Err(Error::Library("ckptd answered with the wrong result")),
        }
    }

    /// A remote multi-element operation: the failing element's index comes back.
    fn remote_vector(&self, op: RemoteOp) -> Result<RemoteResult, VectorError> {
        let client = self.inst.cluster.as_ref().ok_or(VectorError {
            index: 0,
            error: Error::BadHandle,
        })?;
        match client.remote(self.inst.id, op, Some(REMOTE_WAIT)) {
            Ok(RemoteResult::Failed { code, index }) => Err(VectorError {
                index: index.map_or(0, |i| i as usize),
                error: Error::from_code(code),
            }),
            Ok(r) => Ok(r),
            Err(error) => Err(VectorError { index: 0, error }),
        }
    }

    fn reap(&self) {
        if self.inst.is_active() {
            self.inst.replica.reap_expired(ckpt_engine::wall_clock());
        }
    }
}

/// A checkpoint handle. Dropping it closes it.
///
/// Every method takes `&self` and may be called from several threads. After
/// [`Checkpoint::close`] or the finalize of its library, every call gives `BadHandle`.
///
/// Section ids are byte strings; the empty id is the default section (which exists only
/// when `maxSections == 1`). Checks come in this order: `BadHandle`, `Access` (the open
/// flags), `NotExist` (no active replica yet), then the arguments.
pub struct Checkpoint {
    pub(crate) inner: Arc<CkptInner>,
}

impl core::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("handle", &self.inner.handle)
            .field("instance", &self.inner.inst.id)
            .field("flags", &self.inner.flags)
            .finish_non_exhaustive()
    }
}

/// A zero-copy view of a section's bytes, pinned until dropped (writers meanwhile
/// publish new versions elsewhere; this one stays intact).
#[derive(Debug)]
pub struct Borrowed<'a> {
    view: View<'a>,
}

#[derive(Debug)]
enum View<'a> {
    Pinned(SectionGuard<'a>),
    /// A copy from the active replica on another node (cluster mode).
    Copied(Vec<u8>),
}

impl Borrowed<'_> {
    /// The section's version (journal seq of its last change on this node's replica; 0
    /// for a copy read from another node).
    pub fn version(&self) -> u64 {
        match &self.view {
            View::Pinned(g) => g.version(),
            View::Copied(_) => 0,
        }
    }
}

impl core::ops::Deref for Borrowed<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.view {
            View::Pinned(g) => g,
            View::Copied(v) => v,
        }
    }
}

impl Checkpoint {
    /// This handle's number.
    pub fn handle(&self) -> CheckpointHandle {
        self.inner.handle
    }

    /// The flags it was opened with.
    pub fn open_flags(&self) -> OpenFlags {
        self.inner.flags
    }

    /// The creation attributes of the checkpoint.
    pub fn attributes(&self) -> crate::CreationAttributes {
        self.inner.inst.attrs
    }

    /// The instance id (distinguishes a checkpoint from one re-created under the same
    /// name after an unlink).
    pub fn instance(&self) -> u64 {
        self.inner.inst.id
    }

    /// `saCkptCheckpointClose`: the handle becomes invalid and its pending callbacks are
    /// cancelled. At the last close of the checkpoint on the node it is deleted if it was
    /// unlinked, otherwise its retention starts. A second close gives `BadHandle`.
    pub fn close(&self) -> Result<()> {
        if self.inner.close_inner() {
            Ok(())
        } else {
            Err(Error::BadHandle)
        }
    }

    /// `saCkptCheckpointRetentionDurationSet` (ns; [`TIME_END`]: forever). Errors:
    /// `InvalidParam` (negative), `BadHandle`, `Access` (B.02 clients without WRITE),
    /// `BadOperation` (the checkpoint was unlinked). The new duration shows in
    /// [`Checkpoint::status`] (a choice: the standard is silent).
    pub fn set_retention_duration(&self, retention: i64) -> Result<()> {
        let c = &self.inner;
        if retention < 0 {
            return Err(Error::InvalidParam("negative retentionDuration"));
        }
        c.open()?;
        if c.b02 {
            c.need(OpenFlags::WRITE)?;
        }
        if let Some(client) = &c.inst.cluster {
            let op = DirOp::SetRetention {
                instance: c.inst.id,
                retention,
            };
            return match client.request(op, None)? {
                DirReply::Done => {
                    c.inst.retention.store(retention, Relaxed);
                    Ok(())
                }
                r => Err(cluster::reply_error(&r, c.b02)),
            };
        }
        let reg = c
            .inst
            .registry
            .as_ref()
            .ok_or(Error::Library("no node registry"))?;
        let info = reg.info(c.inst.id).ok_or(Error::NotExist)?;
        if info.unlinked {
            return Err(Error::BadOperation);
        }
        reg.set_retention(c.inst.id, retention)
            .map_err(from_registry)
    }

    /// `saCkptActiveReplicaSet`: makes the local replica active. Only for a collocated
    /// checkpoint with asynchronous update (`BadOperation` otherwise); needs WRITE
    /// (`Access`). Until it is called such a checkpoint has no active replica and data,
    /// section, status and iteration calls give `NotExist`.
    pub fn set_active_replica(&self) -> Result<()> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::WRITE)?;
        if !c.collocated_async {
            return Err(Error::BadOperation);
        }
        if let Some(client) = &c.inst.cluster {
            // The directory names the active replica; ckptd switches the local replica to
            // primary (new term) before it answers.
            let op = DirOp::SetActive {
                instance: c.inst.id,
                node: 0,
            };
            return match client.request(op, None)? {
                DirReply::Done => Ok(()),
                r => Err(cluster::reply_error(&r, c.b02)),
            };
        }
        let (role, term) = c.inst.replica.role();
        if role != Role::Primary {
            c.inst.replica.set_role(Role::Primary, term + 1);
        }
        Ok(())
    }

    /// `saCkptCheckpointStatusGet`. Expired sections are reaped first, so they are not
    /// counted. Errors: `BadHandle`, `Access` (B.02 clients without READ), `NotExist`
    /// (no active replica).
    pub fn status(&self) -> Result<CheckpointStatus> {
        let c = &self.inner;
        c.open()?;
        if c.b02 {
            c.need(OpenFlags::READ)?;
        }
        c.active()?;
        let (sections, memory_used) = if c.remote_reads() {
            match c.remote(RemoteOp::Status, Some(REMOTE_WAIT))? {
                RemoteResult::Status {
                    sections,
                    memory_used,
                } => (sections, memory_used),
                _ => return Err(Error::Library("ckptd answered with the wrong result")),
            }
        } else {
            c.reap();
            let st = c.inst.replica.status();
            (st.sections, st.memory_used)
        };
        let mut attributes = c.inst.attrs;
        if c.inst.cluster.is_some() {
            attributes.retention_duration = c.inst.retention.load(Relaxed);
        } else if let Some(info) = c.inst.registry.as_ref().and_then(|r| r.info(c.inst.id)) {
            attributes.retention_duration = info.retention_ns;
        }
        Ok(CheckpointStatus {
            attributes,
            number_of_sections: sections,
            memory_used,
        })
    }

    // ---- sections ---------------------------------------------------------------

    /// `saCkptSectionCreate`. `id = None` generates an id (returned; with `Some` the id
    /// given is returned). `expiration` is absolute (ns since the epoch; [`TIME_END`]:
    /// never). Errors: `BadHandle`, `Access`, `NotExist` (no active replica), `Exist` (the
    /// id exists, or `maxSections == 1`: the default section is the only one),
    /// `InvalidParam` (an empty or too long id, a negative expiration, **an expiration
    /// already past** — a choice where the standard is silent: creating a section that
    /// is dead on arrival is always a bug, typically a duration passed for an absolute
    /// time — or initial data larger than maxSectionSize), `NoSpace` (maxSections
    /// reached, after reaping expired sections), `NoResources` (checkpointSize).
    pub fn create_section(
        &self,
        id: Option<&[u8]>,
        expiration: i64,
        initial_data: &[u8],
    ) -> Result<Vec<u8>> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::WRITE)?;
        c.active()?;
        let attrs = &c.inst.attrs;
        if attrs.max_sections == 1 {
            return Err(Error::Exist);
        }
        if let Some(id) = id {
            if id.is_empty() {
                return Err(Error::InvalidParam("empty section id"));
            }
            if id.len() as u64 > attrs.max_section_id_size {
                return Err(Error::InvalidParam(
                    "section id longer than maxSectionIdSize",
                ));
            }
        }
        if expiration < 0 {
            return Err(Error::InvalidParam("negative expirationTime"));
        }
        if expiration != TIME_END && expiration <= ckpt_engine::wall_clock() {
            return Err(Error::InvalidParam(
                "expirationTime is already past (it is absolute, not a duration)",
            ));
        }
        if initial_data.len() as u64 > c.max_section_size {
            return Err(Error::InvalidParam(
                "initial data larger than maxSectionSize",
            ));
        }
        if initial_data.len() as u64 > c.write_bytes {
            return Err(Error::NoResources);
        }
        if c.remote_writes() {
            let op = RemoteOp::CreateSection {
                id: id.map(<[u8]>::to_vec),
                expiration,
                data: initial_data.to_vec(),
            };
            return match c.remote(op, Some(REMOTE_WAIT))? {
                RemoteResult::Created { id } => Ok(id),
                _ => Err(Error::Library("ckptd answered with the wrong result")),
            };
        }
        set_write_tag(c.tag);
        let term = c.direct_term();
        let r = match c.inst.replica.create_section(id, expiration, initial_data) {
            Err(ckpt_engine::SectionError::NoSpace) => {
                c.reap();
                c.inst
                    .replica
                    .create_section(id, expiration, initial_data)
                    .map_err(from_section)
            }
            r => r.map_err(from_section),
        };
        if r.is_ok() {
            c.wrote_direct(term);
        }
        r
    }

    fn check_not_default(&self, id: &[u8]) -> Result<()> {
        if id.is_empty() && self.inner.inst.attrs.max_sections == 1 {
            return Err(Error::InvalidParam("the default section"));
        }
        Ok(())
    }

    /// `saCkptSectionDelete`. Errors: `BadHandle`, `Access`, `NotExist`, `InvalidParam`
    /// (the default section cannot be deleted).
    pub fn delete_section(&self, id: &[u8]) -> Result<()> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::WRITE)?;
        c.active()?;
        self.check_not_default(id)?;
        if c.remote_writes() {
            return c.remote_done(RemoteOp::DeleteSection { id: id.to_vec() });
        }
        set_write_tag(c.tag);
        let term = c.direct_term();
        c.inst.replica.delete_section(id).map_err(from_section)?;
        c.wrote_direct(term);
        Ok(())
    }

    /// `saCkptSectionExpirationTimeSet` (absolute; [`TIME_END`]: never). A time already
    /// past expires the section now. Errors: `BadHandle`, `Access`, `NotExist`,
    /// `InvalidParam` (the default section's time is fixed; a negative time).
    pub fn set_section_expiration(&self, id: &[u8], expiration: i64) -> Result<()> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::WRITE)?;
        c.active()?;
        self.check_not_default(id)?;
        if expiration < 0 {
            return Err(Error::InvalidParam("negative expirationTime"));
        }
        if c.remote_writes() {
            return c.remote_done(RemoteOp::SetExpiration {
                id: id.to_vec(),
                expiration,
            });
        }
        set_write_tag(c.tag);
        let term = c.direct_term();
        c.inst
            .replica
            .set_expiration(id, expiration)
            .map_err(from_section)?;
        c.wrote_direct(term);
        Ok(())
    }

    /// `saCkptSectionIterationInitialize`: the sections chosen, each one present for the
    /// whole iteration returned exactly once. Errors: `BadHandle`, `Access` (B.02
    /// clients without READ), `NotExist` (no active replica), `InvalidParam` (a negative
    /// time for LEQ/GEQ).
    pub fn sections(&self, chosen: SectionsChosen) -> Result<SectionIterator> {
        let c = &self.inner;
        c.open()?;
        if c.b02 {
            c.need(OpenFlags::READ)?;
        }
        c.active()?;
        let filter = match chosen {
            SectionsChosen::Forever => SectionFilter::Forever,
            SectionsChosen::Any => SectionFilter::Any,
            SectionsChosen::Corrupted => SectionFilter::Corrupted,
            SectionsChosen::LeqExpirationTime(t) | SectionsChosen::GeqExpirationTime(t)
                if t < 0 =>
            {
                return Err(Error::InvalidParam("negative expirationTime"));
            }
            SectionsChosen::LeqExpirationTime(t) => SectionFilter::ExpiringAtOrBefore(t),
            SectionsChosen::GeqExpirationTime(t) => SectionFilter::ExpiringAtOrAfter(t),
        };
        if c.remote_reads() {
            let (code, time) = match chosen {
                SectionsChosen::Forever => (1, 0),
                SectionsChosen::LeqExpirationTime(t) => (2, t),
                SectionsChosen::GeqExpirationTime(t) => (3, t),
                SectionsChosen::Corrupted => (4, 0),
                SectionsChosen::Any => (5, 0),
            };
            let op = RemoteOp::Sections { filter: code, time };
            let RemoteResult::Sections { items } = c.remote(op, Some(REMOTE_WAIT))? else {
                return Err(Error::Library("ckptd answered with the wrong result"));
            };
            let listed = items
                .into_iter()
                .map(|s| SectionDescriptor {
                    id: s.id,
                    expiration_time: s.expiration,
                    size: s.size,
                    state: SectionState::Valid,
                    last_update: s.last_update,
                })
                .collect();
            return Ok(SectionIterator {
                ckpt: Arc::clone(c),
                cursor: c.inst.replica.section_cursor(filter),
                listed: Some(listed),
                done: false,
            });
        }
        c.reap();
        Ok(SectionIterator {
            ckpt: Arc::clone(c),
            cursor: c.inst.replica.section_cursor(filter),
            listed: None,
            done: false,
        })
    }

    // ---- data -------------------------------------------------------------------

    /// `saCkptCheckpointWrite`: the elements in order; sections grow as needed (holes
    /// read as zeros). All or nothing: a failed call wrote nothing, and the error names
    /// the first failing element. Errors: `BadHandle`, `Access`, `NotExist` (no active
    /// replica, or no such section), `InvalidParam` (data larger than maxSectionSize),
    /// `NoResources` (offset + size beyond maxSectionSize, checkpointSize, more bytes than
    /// the node's per-write limit).
    pub fn write(&self, elements: &[WriteElement<'_>]) -> Result<(), VectorError> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::WRITE)?;
        c.active()?;
        let mut total = 0u64;
        for (index, e) in elements.iter().enumerate() {
            total = total.saturating_add(e.data.len() as u64);
            if total > c.write_bytes {
                return Err(VectorError {
                    index,
                    error: Error::NoResources,
                });
            }
        }
        if c.remote_writes() {
            let elems = elements
                .iter()
                .map(|e| WriteElem {
                    id: e.section_id.to_vec(),
                    offset: e.offset,
                    data: e.data.to_vec(),
                })
                .collect();
            if let RemoteResult::Applied { term, seq } =
                c.remote_vector(RemoteOp::Write { elems })?
            {
                c.wrote_at(term, seq);
            }
            return Ok(());
        }
        // The engine's elements have the same shape; a small vector stays on the stack.
        let mut buf: [ckpt_engine::WriteElement<'_>; 4] = [ckpt_engine::WriteElement {
            id: &[],
            offset: 0,
            data: &[],
        }; 4];
        let heap: Vec<ckpt_engine::WriteElement<'_>>;
        let engine: &[ckpt_engine::WriteElement<'_>] = if elements.len() <= buf.len() {
            for (b, e) in buf.iter_mut().zip(elements) {
                *b = engine_elem(e);
            }
            &buf[..elements.len()]
        } else {
            heap = elements.iter().map(engine_elem).collect();
            &heap
        };
        set_write_tag(c.tag);
        let term = c.direct_term();
        c.inst.replica.write(engine).map_err(from_vector)?;
        c.wrote_direct(term);
        Ok(())
    }

    /// `saCkptSectionOverwrite`: replaces the section's data; its size becomes
    /// `data.len()`. Errors: `BadHandle`, `Access`, `NotExist`, `InvalidParam` (larger
    /// than maxSectionSize), `NoResources` (checkpointSize, the per-write limit).
    #[inline]
    pub fn overwrite(&self, id: &[u8], data: &[u8]) -> Result<()> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::WRITE)?;
        c.active()?;
        if data.len() as u64 > c.max_section_size {
            return Err(Error::InvalidParam("data larger than maxSectionSize"));
        }
        if data.len() as u64 > c.write_bytes {
            return Err(Error::NoResources);
        }
        if c.remote_writes() {
            return c.remote_done(RemoteOp::Overwrite {
                id: id.to_vec(),
                data: data.to_vec(),
            });
        }
        set_write_tag(c.tag);
        let term = c.direct_term();
        c.inst.replica.overwrite(id, data).map_err(from_section)?;
        c.wrote_direct(term);
        Ok(())
    }

    #[inline]
    fn check_read(&self, offset: u64, len: usize) -> Result<()> {
        // Spec §2.4 (OpenSAF): a caller's buffer with dataSize 0 is refused; a buffer the
        // library allocates is `read_vec`.
        if len == 0 {
            return Err(Error::InvalidParam("a caller's buffer with dataSize 0"));
        }
        if len as u64 > self.inner.max_section_size {
            return Err(Error::InvalidParam("dataSize larger than maxSectionSize"));
        }
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.inner.max_section_size)
        {
            return Err(Error::InvalidParam(
                "dataOffset + dataSize beyond maxSectionSize",
            ));
        }
        Ok(())
    }

    /// `saCkptCheckpointRead` into the caller's buffers: each element gets
    /// `read_size = min(buf.len(), size - offset)`. Errors: `BadHandle`, `Access`,
    /// `NotExist`, `InvalidParam` (an empty buffer, a buffer or offset + buffer beyond
    /// maxSectionSize, an offset past the end of the section). On error, earlier elements
    /// may have been read.
    pub fn read(&self, elements: &mut [ReadElement<'_>]) -> Result<(), VectorError> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::READ)?;
        c.active()?;
        if c.remote_reads() {
            return self.read_remote(elements);
        }
        self.read_elements(elements)
    }

    /// One element of [`Checkpoint::read`]: reads into `buf` from `offset`; returns
    /// `readSize`.
    #[inline]
    pub fn read_into(&self, id: &[u8], offset: u64, buf: &mut [u8]) -> Result<usize> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::READ)?;
        c.active()?;
        self.check_read(offset, buf.len())?;
        if c.remote_reads() {
            let mut one = [ReadElement {
                section_id: id,
                offset,
                buf,
                read_size: 0,
            }];
            self.read_remote(&mut one).map_err(|e| e.error)?;
            return Ok(one[0].read_size);
        }
        c.inst.replica.read(id, offset, buf).map_err(from_section)
    }

    /// Read with a library-allocated buffer (`dataBuffer == NULL`): the bytes from
    /// `offset` to the end of the section (empty when `offset` is the size).
    pub fn read_vec(&self, id: &[u8], offset: u64) -> Result<Vec<u8>> {
        let c = &self.inner;
        if c.remote_reads() && !c.closed.load(Relaxed) && c.flags.contains(OpenFlags::READ) {
            let op = RemoteOp::Read {
                elems: vec![ReadElem {
                    id: id.to_vec(),
                    offset,
                    size: 0,
                }],
            };
            return match c.remote(op, Some(REMOTE_WAIT))? {
                RemoteResult::Data { mut items } if items.len() == 1 => {
                    Ok(items.pop().unwrap_or_default())
                }
                _ => Err(Error::Library("ckptd answered with the wrong result")),
            };
        }
        let b = self.borrow(id)?;
        let at = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= b.len())
            .ok_or(Error::InvalidParam(
                "dataOffset past the end of the section",
            ))?;
        Ok(b[at..].to_vec())
    }

    /// The local replica, read directly (the hot-standby fast path; on one node it is the
    /// active replica, in a cluster it may lag). Same rules as [`Checkpoint::read`] except
    /// that a checkpoint without an active replica can still be read.
    pub fn read_local(&self, elements: &mut [ReadElement<'_>]) -> Result<(), VectorError> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::READ)?;
        if !c.inst.local {
            // No replica on this node: the active one answers.
            return self.read_remote(elements);
        }
        self.read_elements(elements)
    }

    fn read_remote(&self, elements: &mut [ReadElement<'_>]) -> Result<(), VectorError> {
        for (index, e) in elements.iter().enumerate() {
            self.check_read(e.offset, e.buf.len())
                .map_err(|error| VectorError { index, error })?;
        }
        let elems = elements
            .iter()
            .map(|e| ReadElem {
                id: e.section_id.to_vec(),
                offset: e.offset,
                size: e.buf.len() as u64,
            })
            .collect();
        let RemoteResult::Data { items } = self.inner.remote_vector(RemoteOp::Read { elems })?
        else {
            return Err(VectorError {
                index: 0,
                error: Error::Library("ckptd answered with the wrong result"),
            });
        };
        for (index, (e, item)) in elements.iter_mut().zip(items.iter()).enumerate() {
            if item.len() > e.buf.len() {
                return Err(VectorError {
                    index,
                    error: Error::Library("ckptd answered more bytes than asked"),
                });
            }
            e.buf[..item.len()].copy_from_slice(item);
            e.read_size = item.len();
        }
        Ok(())
    }

    fn read_elements(&self, elements: &mut [ReadElement<'_>]) -> Result<(), VectorError> {
        let replica = &self.inner.inst.replica;
        for (index, e) in elements.iter_mut().enumerate() {
            let at = |error| VectorError { index, error };
            self.check_read(e.offset, e.buf.len()).map_err(at)?;
            e.read_size = replica
                .read(e.section_id, e.offset, e.buf)
                .map_err(|k| at(from_section(k)))?;
        }
        Ok(())
    }

    /// Zero-copy read: a guard over the section's current bytes, valid while held.
    /// Errors: `BadHandle`, `Access`, `NotExist`, `TryAgain` (too many borrows held).
    #[inline]
    pub fn borrow(&self, id: &[u8]) -> Result<Borrowed<'_>> {
        let c = &self.inner;
        c.open()?;
        c.need(OpenFlags::READ)?;
        c.active()?;
        if c.remote_reads() {
            let op = RemoteOp::Read {
                elems: vec![ReadElem {
                    id: id.to_vec(),
                    offset: 0,
                    size: 0,
                }],
            };
            return match c.remote(op, Some(REMOTE_WAIT))? {
                RemoteResult::Data { mut items } if items.len() == 1 => Ok(Borrowed {
                    view: View::Copied(items.pop().unwrap_or_default()),
                }),
                _ => Err(Error::Library("ckptd answered with the wrong result")),
            };
        }
        let guard = c.inst.replica.borrow(id).map_err(from_section)?;
        Ok(Borrowed {
            view: View::Pinned(guard),
        })
    }

    // ---- synchronize --------------------------------------------------------------

    fn check_synchronize(&self) -> Result<()> {
        let c = &self.inner;
        c.open()?;
        if c.inst
            .attrs
            .creation_flags
            .contains(CreationFlags::WR_ALL_REPLICAS)
        {
            return Err(Error::BadOperation);
        }
        c.need(OpenFlags::WRITE)?;
        c.active()?;
        Ok(())
    }

    /// `saCkptCheckpointSynchronize`: returns once every replica has the updates made
    /// before the call. On one node without a daemon the local replica is the only one,
    /// so this returns at once. Errors: `InvalidParam` (negative timeout), `BadHandle`,
    /// `BadOperation` (an ALL_REPLICAS checkpoint), `Access`, `NotExist`.
    pub fn synchronize(&self, timeout: i64) -> Result<()> {
        if timeout < 0 {
            return Err(Error::InvalidParam("negative timeout"));
        }
        self.check_synchronize()?;
        wait_replicas(&self.inner, time_limit(timeout))
    }

    /// `saCkptCheckpointSynchronizeAsync`: the checks of [`Checkpoint::synchronize`] (and
    /// `Init` without a synchronize callback) at call time; the outcome arrives through
    /// the synchronize callback in dispatch.
    pub fn synchronize_async(&self, invocation: Invocation) -> Result<()> {
        let c = &self.inner;
        c.open()?;
        let lib = lib_of(&c.lib).ok_or(Error::BadHandle)?;
        if !lib.has_synchronize_callback() {
            return Err(Error::Init);
        }
        self.check_synchronize()?;
        if c.inst.cluster.is_none() {
            lib.push(Pending::Synchronize(c.handle, invocation, Ok(())));
            return Ok(());
        }
        let c = Arc::clone(c);
        std::thread::Builder::new()
            .name("ckpt-sync".into())
            .spawn(move || {
                let r = wait_replicas(&c, None);
                if let Some(lib) = lib_of(&c.lib) {
                    lib.push(Pending::Synchronize(c.handle, invocation, r));
                }
            })
            .map_err(|_| Error::NoResources)?;
        Ok(())
    }
}

fn engine_elem<'a>(e: &WriteElement<'a>) -> ckpt_engine::WriteElement<'a> {
    ckpt_engine::WriteElement {
        id: e.section_id,
        offset: e.offset,
        data: e.data,
    }
}

/// The confirmed barrier: every replica acknowledged the seq current now, and the
/// primary holds every write this handle made directly on a replica that was primary then
/// (one accepted by a primary deposed before it reached the others is lost: reported once
/// as `FailedOperation`). ckptd publishes the acknowledged seq in the replica header, so
/// with nothing pending this is two loads and no syscall. Standalone there is no other
/// replica.
fn wait_replicas(c: &CkptInner, limit: Option<Duration>) -> Result<()> {
    let Some(client) = &c.inst.cluster else {
        return Ok(());
    };
    let after = c.unconfirmed();
    let r = &c.inst.replica;
    let (role, term) = r.role();
    let local = c.inst.local
        && c.inst.is_active()
        && role == Role::Primary
        && after.iter().all(|(t, _)| *t == term);
    if local {
        let seq = r.commit_seq();
        if !r.wait_for_acked(seq, limit.unwrap_or(Duration::MAX)) {
            return Err(Error::Timeout);
        }
        if r.role() == (Role::Primary, term) {
            c.confirmed(&after);
            return Ok(());
        }
        // A new term began while it waited: its seqs number another journal, so the
        // acknowledgement says nothing about these writes. The primary decides.
    }
    // The primary is elsewhere (or was replaced since some of this handle's writes): its
    // daemon checks them and waits for the acks.
    let timeout_ns = limit.map_or(TIME_END, |d| d.as_nanos().min(i64::MAX as u128) as i64);
    // ckptd answers TIMEOUT at the deadline; the margin covers the round trips.
    let wait = limit.map(|d| d.saturating_add(Duration::from_secs(5)));
    let op = RemoteOp::Synchronize {
        timeout_ns,
        after: after.clone(),
    };
    match client.remote(c.inst.id, op, wait)? {
        RemoteResult::Done => {
            c.confirmed(&after);
            Ok(())
        }
        RemoteResult::Failed { code, .. } => {
            let e = Error::from_code(code);
            if matches!(e, Error::FailedOperation) {
                c.confirmed(&after); // reported: the next one starts afresh
            }
            Err(e)
        }
        _ => Err(Error::Library("ckptd answered with the wrong result")),
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        self.inner.close_inner();
    }
}

/// A section iteration (`SaCkptSectionIterationHandleT`). It dies with its checkpoint:
/// after the checkpoint is closed (or its library finalized) it yields `BadHandle`.
pub struct SectionIterator {
    ckpt: Arc<CkptInner>,
    cursor: SectionCursor,
    /// Cluster mode with the active replica elsewhere: what it listed.
    listed: Option<std::collections::VecDeque<SectionDescriptor>>,
    done: bool,
}

impl core::fmt::Debug for SectionIterator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SectionIterator")
            .field("checkpoint", &self.ckpt.handle)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl SectionIterator {
    /// `saCkptSectionIterationNext`: the next section, `NoSections` at the end,
    /// `BadHandle` once the checkpoint is closed.
    pub fn next_section(&mut self) -> Result<SectionDescriptor> {
        if self.ckpt.closed.load(Acquire) {
            return Err(Error::BadHandle);
        }
        if let Some(l) = self.listed.as_mut() {
            return l.pop_front().ok_or(Error::NoSections);
        }
        match self.cursor.next(&self.ckpt.inst.replica) {
            Some(s) => Ok(SectionDescriptor {
                id: s.id,
                expiration_time: s.expiration,
                size: s.size,
                state: SectionState::Valid,
                last_update: s.last_update,
            }),
            None => Err(Error::NoSections),
        }
    }

    /// The checkpoint it iterates.
    pub fn checkpoint(&self) -> CheckpointHandle {
        self.ckpt.handle
    }
}

impl Iterator for SectionIterator {
    type Item = Result<SectionDescriptor>;

    /// Sections until the end (`None`); an `Err(BadHandle)` once if the checkpoint was
    /// closed meanwhile, then `None`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_section() {
            Ok(s) => Some(Ok(s)),
            Err(Error::NoSections) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
