//! The whole API on one node against a plain in-memory model. Random call sequences go to
//! a few library handles (B.01 and B.02 clients), the checkpoint handles they open and the
//! section iterations those start, and to a model made of `BTreeMap`s. The model predicts
//! every result: the error (compared by `SaAisErrorT`, the detail strings are for people),
//! the bytes read, `readSize`, the status, the instance an open finds, the sections an
//! iteration returns, `erroneousVectorIndex`, the open and synchronize callbacks a dispatch
//! runs and whether the selection object is readable. After every step the replica
//! objects in the domain directory are exactly the model's live instances, and every
//! instance that an open READ handle can see holds the model's sections, bytes and status,
//! so a failed call provably changed nothing.
//!
//! - `api_matches_model_under_random_calls`: every call, invalid ones included (bad names,
//!   flags and attributes, closed and finalized handles, stale iterations), starting from
//!   one or two libraries and no checkpoint.
//! - `data_path_matches_model_under_random_calls`: section, data, iteration and dispatch
//!   calls only, on one checkpoint opened three times (READ|WRITE twice, READ once), so
//!   sequences go deeper into the sections' states.
//!
//! The model follows `saf-ckpt-spec.md` §2 and §4–§6; where it is silent, the choices
//! documented in the crate docs and on each method (order of checks, the per-call byte
//! limit checked before the engine's checks, an expiration already past refused at
//! create). The engine's own choices (vector writes validated whole, element-local errors
//! before the checkpointSize budget; maxSections before checkpointSize) come from
//! `engine/tests/model.rs`.
//!
//! Not modelled: real time. Section expirations are `TIME_END` or far in the future (or
//! invalid), retention durations 0, an hour or forever, so nothing expires during a case.
//! Open timeouts never matter on one node. The asynchronous open runs in a thread: the
//! test dispatches until its callback has run before the next call. Arrival callbacks
//! come from a watcher thread at its own pace and are covered by `multiprocess.rs` and
//! the conformance tests.
//!
//! Every test case gets its own domain directory under /dev/shm, removed at its end.

use core::fmt::{self, Debug};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use ckpt_agent::{
    Callbacks, Checkpoint, CheckpointStatus, Config, CreationAttributes, CreationFlags,
    DispatchFlags, Error, Library, Limits, OpenFlags, ReadElement, SectionIterator, SectionState,
    SectionsChosen, TIME_END, VectorError, Version, WriteElement,
};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::Config as ProptestConfig;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// An hour, in ns: a retention that never runs out during a test case.
const HOUR: i64 = 3_600_000_000_000;
/// Far in the future (2096): expiration times at and after it never pass during a test.
const FAR: i64 = 4_000_000_000_000_000_000;
/// An absolute time already past (1 ns after the epoch).
const PAST: i64 = 1;
/// Bytes of explicit section ids (binary ids, so 0 too); generated ids are digits.
const ID_BYTES: [u8; 3] = [b'a', b'b', 0];
/// First byte of the model's placeholder for a generated id (never in an explicit id).
const GENERATED: u8 = 0xff;
/// Valid checkpoint names: two DNs and a bare name (B.01 clients only).
const NAMES: [&[u8]; 3] = [b"safCkpt=a", b"safCkpt=b", b"plain"];

const MAX_LIBS: usize = 4;
const MAX_CKS: usize = 12;
const MAX_ITERS: usize = 8;

const READ: OpenFlags = OpenFlags::READ;
const WRITE: OpenFlags = OpenFlags::WRITE;
const INVALID: Error = Error::InvalidParam("");

/// Bytes, printed short.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Bytes(Vec<u8>);

impl Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 32 {
            write!(f, "<{} bytes>", self.0.len())
        } else {
            write!(f, "b\"{}\"", self.0.escape_ascii())
        }
    }
}

// ---- the model --------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct LibM {
    b02: bool,
    open_cb: bool,
    sync_cb: bool,
    finalized: bool,
    /// Synchronize callbacks queued: (checkpoint handle, invocation).
    pending: Vec<(usize, u64)>,
}

#[derive(Clone, PartialEq, Eq)]
struct SecM {
    data: Vec<u8>,
    expiration: i64,
}

impl Debug for SecM {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = if self.expiration == TIME_END {
            "never".to_owned()
        } else {
            format!("FAR+{}", self.expiration - FAR)
        };
        write!(f, "{:?} exp {exp}", Bytes(self.data.clone()))
    }
}

#[derive(Clone, Debug)]
struct InstM {
    name: Vec<u8>,
    /// As created.
    attrs: CreationAttributes,
    /// In force (RetentionDurationSet).
    retention: i64,
    unlinked: bool,
    opens: usize,
    /// Has an active replica (a collocated asynchronous checkpoint has none until
    /// ActiveReplicaSet).
    active: bool,
    deleted: bool,
    sections: BTreeMap<Vec<u8>, SecM>,
}

impl InstM {
    fn used(&self) -> u64 {
        self.sections.values().map(|s| s.data.len() as u64).sum()
    }

    fn max(&self) -> u64 {
        self.attrs.max_section_size
    }

    fn is_default(&self) -> bool {
        self.attrs.max_sections == 1
    }
}

#[derive(Clone, Debug)]
struct HandleM {
    lib: usize,
    inst: usize,
    flags: OpenFlags,
    closed: bool,
}

#[derive(Clone, Debug)]
struct IterM {
    ck: usize,
    inst: usize,
    /// The sections chosen when it started.
    expected: BTreeSet<Vec<u8>>,
    /// Sections created, deleted or given another expiration since: they may or may not
    /// be returned (the standard guarantees only the sections present throughout).
    dirty: BTreeSet<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct Model {
    limits: Limits,
    /// The valid creation attributes of this case (so opens often match).
    pool: Vec<CreationAttributes>,
    libs: Vec<LibM>,
    insts: Vec<InstM>,
    names: BTreeMap<Vec<u8>, usize>,
    cks: Vec<HandleM>,
    iters: Vec<IterM>,
    generated: u32,
    /// Only section, data, iteration and dispatch calls (the data-path test).
    data_only: bool,
    /// The calls that made the initial state (replayed on the handles by `init_test`),
    /// and the state before them.
    prelude: Vec<Op>,
    before_prelude: Option<Box<Self>>,
}

#[derive(Clone)]
struct WriteOp {
    id: Bytes,
    offset: u64,
    data: Bytes,
}

impl Debug for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}={:?}", self.id, self.offset, self.data)
    }
}

#[derive(Clone)]
struct ReadOp {
    id: Bytes,
    offset: u64,
    len: usize,
}

impl Debug for ReadOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}+{}", self.id, self.offset, self.len)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Initialize {
        version: Version,
        open_cb: bool,
        sync_cb: bool,
    },
    Finalize(usize),
    /// Checks the selection object, then dispatches ALL (or ONE).
    Dispatch {
        lib: usize,
        all: bool,
    },
    /// Open-async, then dispatch ALL until the open callback has run.
    OpenAsync {
        lib: usize,
        invocation: u64,
        name: Bytes,
        attrs: Option<CreationAttributes>,
        flags: u32,
    },
    Open {
        lib: usize,
        name: Bytes,
        attrs: Option<CreationAttributes>,
        flags: u32,
        timeout: i64,
    },
    Close(usize),
    Unlink {
        lib: usize,
        name: Bytes,
    },
    SetRetention {
        ck: usize,
        retention: i64,
    },
    SetActive(usize),
    Status(usize),
    Synchronize {
        ck: usize,
        timeout: i64,
    },
    SynchronizeAsync {
        ck: usize,
        invocation: u64,
    },
    /// `id: None` asks for a generated id.
    Create {
        ck: usize,
        id: Option<Bytes>,
        expiration: i64,
        data: Bytes,
    },
    Delete {
        ck: usize,
        id: Bytes,
    },
    SetExpiration {
        ck: usize,
        id: Bytes,
        expiration: i64,
    },
    Overwrite {
        ck: usize,
        id: Bytes,
        data: Bytes,
    },
    Write {
        ck: usize,
        elems: Vec<WriteOp>,
    },
    /// `read` (or `read_local`) into buffers of the given lengths.
    Read {
        ck: usize,
        elems: Vec<ReadOp>,
        local: bool,
    },
    /// `read_vec`: from `offset` to the end.
    ReadVec {
        ck: usize,
        id: Bytes,
        offset: u64,
    },
    IterInit {
        ck: usize,
        chosen: SectionsChosen,
    },
    IterNext(usize),
}

/// §6: release B, and a major no higher than the highest supported (2).
fn valid_version(v: Version) -> bool {
    v.release == b'B' && v.major <= 2
}

fn check_name(b02: bool, name: &[u8]) -> Result<(), Error> {
    if name.is_empty() || name.len() > 256 || (b02 && !name.starts_with(b"safCkpt=")) {
        return Err(INVALID);
    }
    Ok(())
}

fn check_attributes(a: &CreationAttributes, l: &Limits) -> Result<(), Error> {
    let wr = a.creation_flags.0 & 0x7;
    if a.creation_flags.0 & !0xf != 0 || wr.count_ones() != 1 {
        return Err(INVALID);
    }
    if a.max_sections == 0 || a.max_section_size == 0 || a.retention_duration < 0 {
        return Err(INVALID);
    }
    if a.checkpoint_size > u64::from(a.max_sections) * a.max_section_size {
        return Err(INVALID);
    }
    if a.max_sections > l.sections
        || a.max_section_size > l.section_size
        || a.max_section_id_size > l.section_id_size
    {
        return Err(Error::NoResources);
    }
    Ok(())
}

/// The open-with-create match (§4.13): retention compared for B.01 clients only.
fn same_checkpoint(a: &CreationAttributes, b: &CreationAttributes, b02: bool) -> bool {
    a.creation_flags == b.creation_flags
        && a.checkpoint_size == b.checkpoint_size
        && a.max_sections == b.max_sections
        && a.max_section_size == b.max_section_size
        && a.max_section_id_size == b.max_section_id_size
        && (b02 || a.retention_duration == b.retention_duration)
}

fn collocated_async(a: &CreationAttributes) -> bool {
    a.creation_flags.0 & 0x8 != 0 && a.creation_flags.0 & 0x1 == 0
}

fn placeholder(n: u32) -> Vec<u8> {
    vec![GENERATED, (n % 256) as u8]
}

fn chosen_matches(chosen: SectionsChosen, expiration: i64) -> bool {
    match chosen {
        SectionsChosen::Any => true,
        SectionsChosen::Forever => expiration == TIME_END,
        SectionsChosen::LeqExpirationTime(t) => expiration <= t,
        SectionsChosen::GeqExpirationTime(t) => expiration >= t,
        SectionsChosen::Corrupted => false,
    }
}

type VResult<T> = Result<T, (usize, Error)>;

impl Model {
    fn new(limits: Limits, pool: Vec<CreationAttributes>, libs: Vec<(bool, bool, bool)>) -> Self {
        Self {
            limits,
            pool,
            libs: libs
                .into_iter()
                .map(|(b02, open_cb, sync_cb)| LibM {
                    b02,
                    open_cb,
                    sync_cb,
                    finalized: false,
                    pending: Vec::new(),
                })
                .collect(),
            insts: Vec::new(),
            names: BTreeMap::new(),
            cks: Vec::new(),
            iters: Vec::new(),
            generated: 0,
            data_only: false,
            prelude: Vec::new(),
            before_prelude: None,
        }
    }

    fn handle(&self, ck: usize) -> Result<&HandleM, Error> {
        let h = &self.cks[ck];
        if h.closed {
            return Err(Error::BadHandle);
        }
        Ok(h)
    }

    fn b02(&self, ck: usize) -> bool {
        self.libs[self.cks[ck].lib].b02
    }

    /// `BadHandle`, `Access` without `need`, `NotExist` without an active replica: the
    /// first checks of the section and data calls. Returns the instance.
    fn data_checks(&self, ck: usize, need: OpenFlags) -> Result<usize, Error> {
        let h = self.handle(ck)?;
        if !h.flags.contains(need) {
            return Err(Error::Access);
        }
        if !self.insts[h.inst].active {
            return Err(Error::NotExist);
        }
        Ok(h.inst)
    }

    /// Marks `id` of instance `k` as changed for the iterations over it.
    fn touch(&mut self, k: usize, id: &[u8]) {
        for it in self.iters.iter_mut().filter(|it| it.inst == k) {
            it.dirty.insert(id.to_vec());
        }
    }

    fn live_entries(&self) -> usize {
        self.insts.iter().filter(|i| !i.deleted).count()
    }

    fn delete_inst(&mut self, k: usize) {
        let inst = &mut self.insts[k];
        inst.deleted = true;
        if self.names.get(&inst.name) == Some(&k) {
            self.names.remove(&inst.name);
        }
    }

    /// The close of one handle: at the instance's last close it is deleted if unlinked
    /// or without retention (§4.3, §4.4); otherwise it is retained.
    fn close_handle(&mut self, ck: usize) {
        let h = &mut self.cks[ck];
        h.closed = true;
        let (lib, k) = (h.lib, h.inst);
        self.libs[lib].pending.retain(|p| p.0 != ck);
        let inst = &mut self.insts[k];
        inst.opens -= 1;
        if inst.opens == 0 && (inst.unlinked || inst.retention == 0) {
            self.delete_inst(k);
        }
    }

    // ---- library handles ----------------------------------------------------------------

    fn initialize(&mut self, version: Version, open_cb: bool, sync_cb: bool) -> Result<(), Error> {
        if !valid_version(version) {
            return Err(Error::Version);
        }
        self.libs.push(LibM {
            b02: version.major >= 2,
            open_cb,
            sync_cb,
            finalized: false,
            pending: Vec::new(),
        });
        Ok(())
    }

    fn finalize(&mut self, lib: usize) -> Result<(), Error> {
        if self.libs[lib].finalized {
            return Err(Error::BadHandle);
        }
        self.libs[lib].finalized = true;
        for ck in 0..self.cks.len() {
            if self.cks[ck].lib == lib && !self.cks[ck].closed {
                self.close_handle(ck);
            }
        }
        self.libs[lib].pending.clear();
        Ok(())
    }

    /// The invocations of the callbacks a dispatch ALL (or ONE) runs.
    fn dispatch(&mut self, lib: usize, all: bool) -> Result<Vec<u64>, Error> {
        if self.libs[lib].finalized {
            return Err(Error::BadHandle);
        }
        let pending = &mut self.libs[lib].pending;
        let n = if all {
            pending.len()
        } else {
            pending.len().min(1)
        };
        Ok(pending.drain(..n).map(|p| p.1).collect())
    }

    /// Returns the instance opened.
    fn open(
        &mut self,
        lib: usize,
        name: &[u8],
        attrs: Option<&CreationAttributes>,
        flags: u32,
        timeout: i64,
    ) -> Result<usize, Error> {
        self.check_open(lib, name, attrs, flags)?;
        if timeout < 0 {
            return Err(INVALID);
        }
        if self.libs[lib].finalized {
            return Err(Error::BadHandle);
        }
        self.open_checked(lib, name, attrs, flags)
    }

    /// The argument checks of open and open-async.
    fn check_open(
        &self,
        lib: usize,
        name: &[u8],
        attrs: Option<&CreationAttributes>,
        flags: u32,
    ) -> Result<(), Error> {
        check_name(self.libs[lib].b02, name)?;
        let f = OpenFlags(flags);
        if flags == 0 || f.has_unknown_bits() {
            return Err(Error::BadFlags);
        }
        match (f.contains(OpenFlags::CREATE), attrs) {
            (true, None) | (false, Some(_)) => Err(INVALID),
            (true, Some(a)) => check_attributes(a, &self.limits),
            (false, None) => Ok(()),
        }
    }

    /// The open callback's outcome (the call's own errors first), and the synchronize
    /// callbacks the dispatch that delivers it runs before it.
    fn open_async(
        &mut self,
        lib: usize,
        name: &[u8],
        attrs: Option<&CreationAttributes>,
        flags: u32,
    ) -> Result<(Result<usize, Error>, Vec<u64>), Error> {
        self.check_open(lib, name, attrs, flags)?;
        if self.libs[lib].finalized {
            return Err(Error::BadHandle);
        }
        if !self.libs[lib].open_cb {
            return Err(Error::Init);
        }
        let opened = self.open_checked(lib, name, attrs, flags);
        let before = self.dispatch(lib, true)?;
        Ok((opened, before))
    }

    /// Open after the checks: finds the checkpoint or creates it.
    fn open_checked(
        &mut self,
        lib: usize,
        name: &[u8],
        attrs: Option<&CreationAttributes>,
        flags: u32,
    ) -> Result<usize, Error> {
        let b02 = self.libs[lib].b02;
        let f = OpenFlags(flags);
        let k = match (self.names.get(name), attrs) {
            (Some(&k), Some(a)) if !same_checkpoint(&self.insts[k].attrs, a, b02) => {
                return Err(Error::Exist);
            }
            (Some(&k), _) => k,
            (None, None) => return Err(Error::NotExist),
            (None, Some(a)) => {
                if self.live_entries() >= self.limits.checkpoints as usize {
                    return Err(Error::NoResources);
                }
                let mut sections = BTreeMap::new();
                if a.max_sections == 1 {
                    sections.insert(
                        Vec::new(),
                        SecM {
                            data: Vec::new(),
                            expiration: TIME_END,
                        },
                    );
                }
                self.insts.push(InstM {
                    name: name.to_vec(),
                    attrs: *a,
                    retention: a.retention_duration,
                    unlinked: false,
                    opens: 0,
                    active: !collocated_async(a),
                    deleted: false,
                    sections,
                });
                let k = self.insts.len() - 1;
                self.names.insert(name.to_vec(), k);
                k
            }
        };
        self.insts[k].opens += 1;
        self.cks.push(HandleM {
            lib,
            inst: k,
            flags: f,
            closed: false,
        });
        Ok(k)
    }

    fn unlink(&mut self, lib: usize, name: &[u8]) -> Result<(), Error> {
        check_name(self.libs[lib].b02, name)?;
        if self.libs[lib].finalized {
            return Err(Error::BadHandle);
        }
        let k = self.names.remove(name).ok_or(Error::NotExist)?;
        self.insts[k].unlinked = true;
        if self.insts[k].opens == 0 {
            self.delete_inst(k);
        }
        Ok(())
    }

    // ---- checkpoint handles -------------------------------------------------------------

    fn close(&mut self, ck: usize) -> Result<(), Error> {
        self.handle(ck)?;
        self.close_handle(ck);
        Ok(())
    }

    fn set_retention(&mut self, ck: usize, retention: i64) -> Result<(), Error> {
        if retention < 0 {
            return Err(INVALID);
        }
        let h = self.handle(ck)?;
        if self.b02(ck) && !h.flags.contains(WRITE) {
            return Err(Error::Access);
        }
        let k = h.inst;
        let inst = &mut self.insts[k];
        if inst.unlinked {
            return Err(Error::BadOperation);
        }
        inst.retention = retention;
        Ok(())
    }

    fn set_active(&mut self, ck: usize) -> Result<(), Error> {
        let h = self.handle(ck)?;
        if !h.flags.contains(WRITE) {
            return Err(Error::Access);
        }
        let k = h.inst;
        let inst = &mut self.insts[k];
        if !collocated_async(&inst.attrs) {
            return Err(Error::BadOperation);
        }
        inst.active = true;
        Ok(())
    }

    fn status(&self, ck: usize) -> Result<CheckpointStatus, Error> {
        let h = self.handle(ck)?;
        if self.b02(ck) && !h.flags.contains(READ) {
            return Err(Error::Access);
        }
        let inst = &self.insts[h.inst];
        if !inst.active {
            return Err(Error::NotExist);
        }
        Ok(CheckpointStatus {
            attributes: CreationAttributes {
                retention_duration: inst.retention,
                ..inst.attrs
            },
            number_of_sections: inst.sections.len() as u32,
            memory_used: inst.used(),
        })
    }

    fn check_synchronize(&self, ck: usize) -> Result<(), Error> {
        let h = self.handle(ck)?;
        let inst = &self.insts[h.inst];
        if inst
            .attrs
            .creation_flags
            .contains(CreationFlags::WR_ALL_REPLICAS)
        {
            return Err(Error::BadOperation);
        }
        if !h.flags.contains(WRITE) {
            return Err(Error::Access);
        }
        if !inst.active {
            return Err(Error::NotExist);
        }
        Ok(())
    }

    fn synchronize(&self, ck: usize, timeout: i64) -> Result<(), Error> {
        if timeout < 0 {
            return Err(INVALID);
        }
        self.check_synchronize(ck)
    }

    fn synchronize_async(&mut self, ck: usize, invocation: u64) -> Result<(), Error> {
        let h = self.handle(ck)?;
        let lib = h.lib;
        if !self.libs[lib].sync_cb {
            return Err(Error::Init);
        }
        self.check_synchronize(ck)?;
        self.libs[lib].pending.push((ck, invocation));
        Ok(())
    }

    // ---- sections -----------------------------------------------------------------------

    fn create(
        &mut self,
        ck: usize,
        id: Option<&[u8]>,
        expiration: i64,
        data: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let k = self.data_checks(ck, WRITE)?;
        let write_bytes = self.limits.write_bytes;
        let inst = &self.insts[k];
        let a = inst.attrs;
        // §4.1: with maxSections == 1 SectionCreate gives EXIST whatever the id.
        if inst.is_default() {
            return Err(Error::Exist);
        }
        if let Some(id) = id
            && (id.is_empty() || id.len() as u64 > a.max_section_id_size)
        {
            return Err(INVALID);
        }
        // Negative, or (the crate's choice) already past.
        if expiration < 0 || (expiration != TIME_END && expiration < FAR) {
            return Err(INVALID);
        }
        if data.len() as u64 > a.max_section_size {
            return Err(INVALID);
        }
        if data.len() as u64 > write_bytes {
            return Err(Error::NoResources);
        }
        let key = match id {
            Some(id) if inst.sections.contains_key(id) => return Err(Error::Exist),
            Some(id) => id.to_vec(),
            None if a.max_section_id_size == 0 => return Err(INVALID),
            None => placeholder(self.generated),
        };
        // §4.7: maxSections reached is NO_SPACE, checked before checkpointSize.
        if inst.sections.len() >= a.max_sections as usize {
            return Err(Error::NoSpace);
        }
        if inst.used() + data.len() as u64 > a.checkpoint_size {
            return Err(Error::NoResources);
        }
        if id.is_none() {
            self.generated += 1;
        }
        self.insts[k].sections.insert(
            key.clone(),
            SecM {
                data: data.to_vec(),
                expiration,
            },
        );
        self.touch(k, &key);
        Ok(key)
    }

    fn delete(&mut self, ck: usize, id: &[u8]) -> Result<(), Error> {
        let k = self.data_checks(ck, WRITE)?;
        let inst = &mut self.insts[k];
        if inst.is_default() && id.is_empty() {
            return Err(INVALID);
        }
        inst.sections.remove(id).ok_or(Error::NotExist)?;
        self.touch(k, id);
        Ok(())
    }

    fn set_expiration(&mut self, ck: usize, id: &[u8], expiration: i64) -> Result<(), Error> {
        let k = self.data_checks(ck, WRITE)?;
        let inst = &mut self.insts[k];
        if (inst.is_default() && id.is_empty()) || expiration < 0 {
            return Err(INVALID);
        }
        inst.sections.get_mut(id).ok_or(Error::NotExist)?.expiration = expiration;
        self.touch(k, id);
        Ok(())
    }

    fn overwrite(&mut self, ck: usize, id: &[u8], data: &[u8]) -> Result<(), Error> {
        let k = self.data_checks(ck, WRITE)?;
        let write_bytes = self.limits.write_bytes;
        let inst = &mut self.insts[k];
        if data.len() as u64 > inst.max() {
            return Err(INVALID);
        }
        if data.len() as u64 > write_bytes {
            return Err(Error::NoResources);
        }
        let used = inst.used();
        let old = inst.sections.get(id).ok_or(Error::NotExist)?.data.len() as u64;
        let new = data.len() as u64;
        if new > old && used + (new - old) > inst.attrs.checkpoint_size {
            return Err(Error::NoResources);
        }
        // §4.5: the size becomes exactly dataSize.
        inst.sections.get_mut(id).expect("present").data = data.to_vec();
        Ok(())
    }

    /// §2.4, §4.5, §4.9: all or nothing. The per-call byte limit first (the element at
    /// which the total crosses it), then every element's arguments and section in element
    /// order, then the checkpointSize budget with the elements applied in order.
    fn write(&mut self, ck: usize, elems: &[WriteOp]) -> VResult<()> {
        let k = self.data_checks(ck, WRITE).map_err(|e| (0, e))?;
        let mut total = 0u64;
        for (i, e) in elems.iter().enumerate() {
            total += e.data.0.len() as u64;
            if total > self.limits.write_bytes {
                return Err((i, Error::NoResources));
            }
        }
        let inst = &mut self.insts[k];
        let max = inst.max();
        for (i, e) in elems.iter().enumerate() {
            if e.data.0.len() as u64 > max {
                return Err((i, INVALID));
            }
            if e.offset
                .checked_add(e.data.0.len() as u64)
                .is_none_or(|end| end > max)
            {
                return Err((i, Error::NoResources));
            }
            if !inst.sections.contains_key(&e.id.0) {
                return Err((i, Error::NotExist));
            }
        }
        let mut staged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut used = inst.used();
        for (i, e) in elems.iter().enumerate() {
            let bytes = staged
                .entry(e.id.0.clone())
                .or_insert_with(|| inst.sections[&e.id.0].data.clone());
            let (start, end) = (e.offset as usize, e.offset as usize + e.data.0.len());
            if end > bytes.len() {
                // §4.5: sections grow, holes read as zeros; §4.7: checkpointSize.
                used += (end - bytes.len()) as u64;
                if used > inst.attrs.checkpoint_size {
                    return Err((i, Error::NoResources));
                }
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(&e.data.0);
        }
        for (id, data) in staged {
            inst.sections.get_mut(&id).expect("present").data = data;
        }
        Ok(())
    }

    /// §4.6: `readSize = min(dataSize, sectionSize - dataOffset)`; an empty buffer (§2.4,
    /// OpenSAF), a buffer or an end beyond maxSectionSize, or an offset past the end of
    /// the section, is INVALID_PARAM.
    /// `read_local` skips the active-replica check.
    fn read(&self, ck: usize, elems: &[ReadOp], local: bool) -> VResult<Vec<Vec<u8>>> {
        let k = if local {
            let h = self.handle(ck).map_err(|e| (0, e))?;
            if !h.flags.contains(READ) {
                return Err((0, Error::Access));
            }
            h.inst
        } else {
            self.data_checks(ck, READ).map_err(|e| (0, e))?
        };
        let inst = &self.insts[k];
        let max = inst.max();
        let mut out = Vec::new();
        for (i, e) in elems.iter().enumerate() {
            if e.len == 0
                || e.len as u64 > max
                || e.offset
                    .checked_add(e.len as u64)
                    .is_none_or(|end| end > max)
            {
                return Err((i, INVALID));
            }
            let s = inst.sections.get(&e.id.0).ok_or((i, Error::NotExist))?;
            let size = s.data.len() as u64;
            if e.offset > size {
                return Err((i, INVALID));
            }
            let n = (size - e.offset).min(e.len as u64) as usize;
            out.push(s.data[e.offset as usize..][..n].to_vec());
        }
        Ok(out)
    }

    fn read_vec(&self, ck: usize, id: &[u8], offset: u64) -> Result<Vec<u8>, Error> {
        let k = self.data_checks(ck, READ)?;
        let s = self.insts[k].sections.get(id).ok_or(Error::NotExist)?;
        if offset > s.data.len() as u64 {
            return Err(INVALID);
        }
        Ok(s.data[offset as usize..].to_vec())
    }

    fn iter_init(&mut self, ck: usize, chosen: SectionsChosen) -> Result<(), Error> {
        let h = self.handle(ck)?;
        if self.b02(ck) && !h.flags.contains(READ) {
            return Err(Error::Access);
        }
        let k = h.inst;
        if !self.insts[k].active {
            return Err(Error::NotExist);
        }
        if let SectionsChosen::LeqExpirationTime(t) | SectionsChosen::GeqExpirationTime(t) = chosen
            && t < 0
        {
            return Err(INVALID);
        }
        let expected = self.insts[k]
            .sections
            .iter()
            .filter(|(_, s)| chosen_matches(chosen, s.expiration))
            .map(|(id, _)| id.clone())
            .collect();
        self.iters.push(IterM {
            ck,
            inst: k,
            expected,
            dirty: BTreeSet::new(),
        });
        Ok(())
    }

    /// Applies `op`, ignoring its result (the reference machine's step).
    fn apply(&mut self, op: &Op) {
        let _ = match op {
            Op::Initialize {
                version,
                open_cb,
                sync_cb,
            } => self.initialize(*version, *open_cb, *sync_cb),
            Op::Finalize(lib) => self.finalize(*lib),
            Op::Dispatch { lib, all } => self.dispatch(*lib, *all).map(drop),
            Op::OpenAsync {
                lib,
                name,
                attrs,
                flags,
                ..
            } => self
                .open_async(*lib, &name.0, attrs.as_ref(), *flags)
                .map(drop),
            Op::Open {
                lib,
                name,
                attrs,
                flags,
                timeout,
            } => self
                .open(*lib, &name.0, attrs.as_ref(), *flags, *timeout)
                .map(drop),
            Op::Close(ck) => self.close(*ck),
            Op::Unlink { lib, name } => self.unlink(*lib, &name.0),
            Op::SetRetention { ck, retention } => self.set_retention(*ck, *retention),
            Op::SetActive(ck) => self.set_active(*ck),
            Op::SynchronizeAsync { ck, invocation } => self.synchronize_async(*ck, *invocation),
            Op::Create {
                ck,
                id,
                expiration,
                data,
            } => self
                .create(*ck, id.as_ref().map(|b| &b.0[..]), *expiration, &data.0)
                .map(drop),
            Op::Delete { ck, id } => self.delete(*ck, &id.0),
            Op::SetExpiration { ck, id, expiration } => {
                self.set_expiration(*ck, &id.0, *expiration)
            }
            Op::Overwrite { ck, id, data } => self.overwrite(*ck, &id.0, &data.0),
            Op::Write { ck, elems } => self.write(*ck, elems).map_err(|e| e.1),
            Op::IterInit { ck, chosen } => self.iter_init(*ck, *chosen),
            Op::Status(_)
            | Op::Synchronize { .. }
            | Op::Read { .. }
            | Op::ReadVec { .. }
            | Op::IterNext(_) => Ok(()),
        };
    }
}

// ---- strategies -------------------------------------------------------------------------

fn flags_strategy() -> BoxedStrategy<CreationFlags> {
    prop_oneof![
        4 => Just(2u32),
        2 => Just(1u32),
        2 => Just(4u32),
        1 => Just(9u32),
        1 => Just(10u32),
        1 => Just(12u32),
    ]
    .prop_map(CreationFlags)
    .boxed()
}

/// Valid creation attributes within the case's limits: up to 5 sections of up to 24
/// bytes, ids up to 4 bytes (rarely 0), a checkpointSize often below the cap.
fn attrs_strategy() -> BoxedStrategy<CreationAttributes> {
    (
        flags_strategy(),
        prop_oneof![1 => Just(1u32), 5 => 2..=5u32],
        1..=24u64,
        prop_oneof![1 => Just(0u64), 8 => 1..=4u64],
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop_oneof![Just(0), Just(HOUR), Just(TIME_END)],
    )
        .prop_map(
            |(creation_flags, max_sections, max_section_size, id_size, budget, full, ret)| {
                let cap = u64::from(max_sections) * max_section_size;
                CreationAttributes {
                    creation_flags,
                    checkpoint_size: if full {
                        cap
                    } else {
                        budget.index(cap as usize + 1) as u64
                    },
                    retention_duration: ret,
                    max_sections,
                    max_section_size,
                    max_section_id_size: id_size,
                }
            },
        )
        .boxed()
}

/// One rule of [`check_attributes`] broken.
fn invalid_attrs(a: CreationAttributes, l: Limits, how: u8) -> CreationAttributes {
    let mut a = a;
    match how {
        0 => a.creation_flags = CreationFlags(0),
        1 => a.creation_flags = CreationFlags(8),
        2 => a.creation_flags = CreationFlags(3),
        3 => a.creation_flags = CreationFlags(a.creation_flags.0 | 0x10),
        4 => a.max_sections = 0,
        5 => a.max_section_size = 0,
        6 => a.retention_duration = -1,
        7 => a.checkpoint_size = u64::from(a.max_sections) * a.max_section_size + 1,
        8 => a.max_sections = l.sections + 1,
        9 => a.max_section_size = l.section_size + 1,
        _ => a.max_section_id_size = l.section_id_size + 1,
    }
    a
}

fn limits_strategy() -> BoxedStrategy<Limits> {
    (
        prop_oneof![3 => Just(40_000_000u64), 1 => 8..=40u64],
        prop_oneof![Just(3u32), Just(16u32)],
    )
        .prop_map(|(write_bytes, checkpoints)| Limits {
            checkpoints,
            openers: 64,
            sections: 6,
            section_size: 32,
            section_id_size: 6,
            write_bytes,
            agents: 8,
            spare_slots: 0,
            journal_cells: 64,
        })
        .boxed()
}

fn version_strategy() -> BoxedStrategy<Version> {
    let valid = [
        Version::B_02_02,
        Version::B_01_01,
        Version::new(b'B', 2, 1),
        Version::new(b'B', 1, 0),
        Version::new(b'B', 0, 1),
    ];
    let invalid = [
        Version::new(b'A', 1, 1),
        Version::new(b'C', 2, 2),
        Version::new(b'B', 3, 1),
        Version::new(b'b', 2, 2),
    ];
    prop_oneof![4 => prop::sample::select(valid.to_vec()), 1 => prop::sample::select(invalid.to_vec())]
        .boxed()
}

fn init_strategy() -> BoxedStrategy<Model> {
    (
        limits_strategy(),
        prop::collection::vec(attrs_strategy(), 3),
        prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 1..=2),
    )
        .prop_map(|(limits, pool, libs)| Model::new(limits, pool, libs))
        .boxed()
}

/// The data-path test's start: one checkpoint opened three times (READ|WRITE|CREATE,
/// READ|WRITE, and READ by the last library), made active if it is collocated.
fn data_init_strategy() -> BoxedStrategy<Model> {
    (
        limits_strategy(),
        attrs_strategy(),
        prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 1..=2),
    )
        .prop_map(|(limits, a, libs)| {
            let base = Model::new(limits, vec![a], libs);
            let name = Bytes(NAMES[0].to_vec());
            let open = |lib, attrs, flags| Op::Open {
                lib,
                name: name.clone(),
                attrs,
                flags,
                timeout: TIME_END,
            };
            let mut prelude = vec![
                open(0, Some(a), 7),
                open(0, None, 3),
                open(base.libs.len() - 1, None, 1),
            ];
            if collocated_async(&a) {
                prelude.push(Op::SetActive(1));
            }
            let mut m = base.clone();
            for op in &prelude {
                m.apply(op);
            }
            m.data_only = true;
            m.prelude = prelude;
            m.before_prelude = Some(Box::new(base));
            m
        })
        .boxed()
}

/// What the section strategies need to know about a handle's checkpoint.
#[derive(Clone, Debug)]
struct Geo {
    max: u64,
    id_size: u64,
    known: Vec<Vec<u8>>,
    /// The known sections' sizes.
    sizes: Vec<u64>,
}

fn geo(m: &Model, ck: usize) -> Geo {
    let inst = &m.insts[m.cks[ck].inst];
    Geo {
        max: inst.max(),
        id_size: inst.attrs.max_section_id_size,
        known: inst.sections.keys().cloned().collect(),
        sizes: inst
            .sections
            .values()
            .map(|s| s.data.len() as u64)
            .collect(),
    }
}

/// Mostly a known id; else a random one of a valid length, or empty or one byte too long.
fn id_strategy(g: &Geo) -> BoxedStrategy<Bytes> {
    id_strategy_from(g, g.known.clone(), 8)
}

/// As [`id_strategy`] for an explicit id to create: never a placeholder of a generated id
/// (its length would be the placeholder's, not the id's).
fn create_id_strategy(g: &Geo) -> BoxedStrategy<Bytes> {
    let known = g
        .known
        .iter()
        .filter(|id| id.first() != Some(&GENERATED))
        .cloned()
        .collect();
    id_strategy_from(g, known, 1)
}

/// A known id with weight `known_weight` against 2 for a random one.
fn id_strategy_from(g: &Geo, known: Vec<Vec<u8>>, known_weight: u32) -> BoxedStrategy<Bytes> {
    let size = g.id_size as usize;
    let bytes = || prop::sample::select(ID_BYTES.to_vec());
    let invalid = prop_oneof![Just(Vec::new()), prop::collection::vec(bytes(), size + 1)];
    let random = if size == 0 {
        invalid.boxed()
    } else {
        prop_oneof![4 => prop::collection::vec(bytes(), 1..=size.min(2)), 1 => invalid].boxed()
    };
    let s = if known.is_empty() {
        random
    } else {
        prop_oneof![2 => random, known_weight => prop::sample::select(known)].boxed()
    };
    s.prop_map(Bytes).boxed()
}

/// Up to two bytes over maxSectionSize, mostly within it.
fn data_strategy(max: u64) -> BoxedStrategy<Bytes> {
    let m = max as usize;
    prop_oneof![4 => 0..=m.div_ceil(2), 2 => 0..=m, 1 => m + 1..=m + 2]
        .prop_flat_map(|n| prop::collection::vec(b'A'..=b'Z', n))
        .prop_map(Bytes)
        .boxed()
}

/// In range, past maxSectionSize, or so large that `offset + size` overflows.
fn offset_strategy(max: u64) -> BoxedStrategy<u64> {
    prop_oneof![6 => 0..=max / 2, 3 => 0..=max + 1, 1 => Just(u64::MAX - 1)].boxed()
}

fn create_expiration() -> BoxedStrategy<i64> {
    prop_oneof![8 => Just(TIME_END), 4 => FAR..=FAR + 3, 1 => Just(PAST), 1 => Just(-1)].boxed()
}

fn set_expiration() -> BoxedStrategy<i64> {
    prop_oneof![4 => Just(TIME_END), 4 => FAR..=FAR + 3, 1 => Just(-1)].boxed()
}

fn chosen_strategy() -> BoxedStrategy<SectionsChosen> {
    let t =
        || prop_oneof![4 => FAR - 1..=FAR + 4, 1 => Just(TIME_END), 1 => Just(0), 1 => Just(-1)];
    prop_oneof![
        2 => Just(SectionsChosen::Any),
        1 => Just(SectionsChosen::Forever),
        1 => Just(SectionsChosen::Corrupted),
        2 => t().prop_map(SectionsChosen::LeqExpirationTime),
        2 => t().prop_map(SectionsChosen::GeqExpirationTime),
    ]
    .boxed()
}

/// Random, or (mostly) a known section at, just past, or within its end, with a length
/// mostly within maxSectionSize.
fn read_strategy(g: &Geo) -> BoxedStrategy<ReadOp> {
    let max = g.max;
    let random = (id_strategy(g), offset_strategy(max), 0..=max as usize + 1)
        .prop_map(|(id, offset, len)| ReadOp { id, offset, len })
        .boxed();
    if g.known.is_empty() {
        return random;
    }
    let known: Vec<(Vec<u8>, u64)> = g.known.iter().cloned().zip(g.sizes.clone()).collect();
    let at_edges = prop::sample::select(known)
        .prop_flat_map(move |(id, size)| {
            let offset = prop_oneof![Just(size), Just(size + 1), 0..=size];
            (Just(id), offset)
        })
        .prop_flat_map(move |(id, offset)| {
            let room = max.saturating_sub(offset) as usize;
            let len = prop_oneof![4 => 0..=room, 1 => 0..=max as usize + 1];
            (Just(id), Just(offset), len)
        })
        .prop_map(|(id, offset, len)| ReadOp {
            id: Bytes(id),
            offset,
            len,
        });
    prop_oneof![1 => random, 3 => at_edges].boxed()
}

/// 1–3 (rarely 5–6) elements over 1–2 ids.
fn write_strategy(g: &Geo) -> BoxedStrategy<Vec<WriteOp>> {
    let (data, offset) = (data_strategy(g.max.div_ceil(2)), offset_strategy(g.max));
    // Mostly 1–3 elements; sometimes more than fit the agent's on-stack vector.
    let len = prop_oneof![6 => 1..=3usize, 1 => 5..=6usize];
    (prop::collection::vec(id_strategy(g), 1..=2), len)
        .prop_flat_map(move |(ids, len)| {
            let elem = (prop::sample::select(ids), offset.clone(), data.clone())
                .prop_map(|(id, offset, data)| WriteOp { id, offset, data });
            prop::collection::vec(elem, len)
        })
        .boxed()
}

/// A name for `open` or `unlink` by a B.02 client (`b02`) or a B.01 one: mostly a valid
/// one, sometimes empty or 257 bytes (or, for B.02, a bare name).
fn name_strategy(b02: bool) -> BoxedStrategy<Bytes> {
    let mut long = b"safCkpt=".to_vec();
    long.resize(257, b'x');
    let names =
        |n: &[&[u8]]| prop::sample::select(n.iter().map(|n| n.to_vec()).collect::<Vec<_>>());
    let valid = if b02 {
        prop_oneof![10 => names(&NAMES[..2]), 1 => names(&NAMES[2..])].boxed()
    } else {
        names(&NAMES).boxed()
    };
    prop_oneof![
        12 => valid,
        1 => prop::sample::select(vec![Vec::new(), long]),
    ]
    .prop_map(Bytes)
    .boxed()
}

/// A library and a name for it.
fn lib_name_strategy(m: &Model) -> BoxedStrategy<(usize, Bytes)> {
    let b02: Vec<bool> = m.libs.iter().map(|l| l.b02).collect();
    (0..m.libs.len())
        .prop_flat_map(move |lib| (Just(lib), name_strategy(b02[lib])))
        .boxed()
}

fn open_strategy(m: &Model) -> BoxedStrategy<Op> {
    let existing: BTreeMap<Vec<u8>, CreationAttributes> = m
        .names
        .iter()
        .map(|(n, &k)| (n.clone(), m.insts[k].attrs))
        .collect();
    let (pool, limits) = (m.pool.clone(), m.limits);
    let flags = prop_oneof![
        8 => Just(7u32),
        6 => Just(3u32),
        4 => 1..8u32,
        1 => Just(0u32),
        1 => (0..8u32).prop_map(|f| f | 0x8),
        1 => (0..8u32).prop_map(|f| f | 0x100),
    ];
    let timeout = prop_oneof![
        8 => Just(TIME_END),
        2 => Just(0),
        2 => Just(1_000_000_000),
        1 => Just(-1),
    ];
    (lib_name_strategy(m), flags, timeout, 0..20u8)
        .prop_flat_map(move |((lib, name), flags, timeout, consistent)| {
            let create = flags & OpenFlags::CREATE.0 != 0;
            // Mostly attributes exactly when CREATE is set.
            let with_attrs = create == (consistent != 0);
            let pool_pick = prop::sample::select(pool.clone());
            let invalid = (prop::sample::select(pool.clone()), 0..11u8)
                .prop_map(move |(a, how)| invalid_attrs(a, limits, how));
            let attrs = match existing.get(&name.0) {
                Some(&a) => {
                    let other = CreationAttributes {
                        retention_duration: if a.retention_duration == 0 { HOUR } else { 0 },
                        ..a
                    };
                    prop_oneof![
                        12 => Just(a),
                        2 => Just(other),
                        3 => pool_pick,
                        1 => invalid,
                    ]
                    .boxed()
                }
                None => prop_oneof![10 => pool_pick, 1 => invalid].boxed(),
            };
            let attrs = if with_attrs {
                attrs.prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            };
            (Just(lib), Just(name), attrs, Just(flags), Just(timeout))
        })
        .prop_map(|(lib, name, attrs, flags, timeout)| Op::Open {
            lib,
            name,
            attrs,
            flags,
            timeout,
        })
        .boxed()
}

/// A checkpoint handle: mostly an open one.
fn ck_strategy(m: &Model) -> BoxedStrategy<usize> {
    let open: Vec<usize> = (0..m.cks.len()).filter(|&c| !m.cks[c].closed).collect();
    if open.is_empty() {
        (0..m.cks.len()).boxed()
    } else {
        prop_oneof![6 => prop::sample::select(open), 1 => 0..m.cks.len()].boxed()
    }
}

fn transitions(m: &Model) -> BoxedStrategy<Op> {
    let mut arms: Vec<(u32, BoxedStrategy<Op>)> = Vec::new();
    let lifecycle = !m.data_only;
    if lifecycle && m.libs.len() < MAX_LIBS {
        arms.push((
            2,
            (version_strategy(), any::<bool>(), any::<bool>())
                .prop_map(|(version, open_cb, sync_cb)| Op::Initialize {
                    version,
                    open_cb,
                    sync_cb,
                })
                .boxed(),
        ));
    }
    if !m.libs.is_empty() {
        let libs = 0..m.libs.len();
        arms.push((
            3,
            (libs.clone(), prop::bool::weighted(0.7))
                .prop_map(|(lib, all)| Op::Dispatch { lib, all })
                .boxed(),
        ));
    }
    if lifecycle && !m.libs.is_empty() {
        arms.push((1, (0..m.libs.len()).prop_map(Op::Finalize).boxed()));
        arms.push((
            3,
            lib_name_strategy(m)
                .prop_map(|(lib, name)| Op::Unlink { lib, name })
                .boxed(),
        ));
        if m.cks.len() < MAX_CKS {
            let open_weight = if m.cks.iter().all(|h| h.closed) {
                40
            } else {
                10
            };
            arms.push((open_weight, open_strategy(m)));
            arms.push((
                3,
                (open_strategy(m), 1..1000u64)
                    .prop_map(|(op, invocation)| match op {
                        Op::Open {
                            lib,
                            name,
                            attrs,
                            flags,
                            ..
                        } => Op::OpenAsync {
                            lib,
                            invocation,
                            name,
                            attrs,
                            flags,
                        },
                        other => other,
                    })
                    .boxed(),
            ));
        }
    }
    if !m.cks.is_empty() {
        let ck = ck_strategy(m);
        let geos: Arc<Vec<Geo>> = Arc::new((0..m.cks.len()).map(|c| geo(m, c)).collect());
        let with = |f: fn(usize, &Geo) -> BoxedStrategy<Op>| {
            let geos = Arc::clone(&geos);
            ck.clone().prop_flat_map(move |c| f(c, &geos[c])).boxed()
        };
        if lifecycle {
            arms.push((3, ck.clone().prop_map(Op::Close).boxed()));
        }
        arms.push((
            2,
            (
                ck.clone(),
                prop_oneof![Just(0), Just(HOUR), Just(TIME_END), Just(-1)],
            )
                .prop_map(|(ck, retention)| Op::SetRetention { ck, retention })
                .boxed(),
        ));
        arms.push((2, ck.clone().prop_map(Op::SetActive).boxed()));
        let inactive: Vec<usize> = (0..m.cks.len())
            .filter(|&c| !m.cks[c].closed && !m.insts[m.cks[c].inst].active)
            .collect();
        if !inactive.is_empty() {
            arms.push((
                8,
                prop::sample::select(inactive)
                    .prop_map(Op::SetActive)
                    .boxed(),
            ));
        }
        arms.push((3, ck.clone().prop_map(Op::Status).boxed()));
        arms.push((
            2,
            (ck.clone(), prop_oneof![4 => Just(TIME_END), 1 => Just(-1)])
                .prop_map(|(ck, timeout)| Op::Synchronize { ck, timeout })
                .boxed(),
        ));
        arms.push((
            2,
            (ck.clone(), 1..1000u64)
                .prop_map(|(ck, invocation)| Op::SynchronizeAsync { ck, invocation })
                .boxed(),
        ));
        arms.push((
            12,
            with(|ck, g| {
                let id = prop_oneof![3 => create_id_strategy(g).prop_map(Some), 1 => Just(None)];
                (id, create_expiration(), data_strategy(g.max))
                    .prop_map(move |(id, expiration, data)| Op::Create {
                        ck,
                        id,
                        expiration,
                        data,
                    })
                    .boxed()
            }),
        ));
        arms.push((
            4,
            with(|ck, g| {
                id_strategy(g)
                    .prop_map(move |id| Op::Delete { ck, id })
                    .boxed()
            }),
        ));
        arms.push((
            4,
            with(|ck, g| {
                (id_strategy(g), set_expiration())
                    .prop_map(move |(id, expiration)| Op::SetExpiration { ck, id, expiration })
                    .boxed()
            }),
        ));
        arms.push((
            8,
            with(|ck, g| {
                (id_strategy(g), data_strategy(g.max))
                    .prop_map(move |(id, data)| Op::Overwrite { ck, id, data })
                    .boxed()
            }),
        ));
        arms.push((
            12,
            with(|ck, g| {
                write_strategy(g)
                    .prop_map(move |elems| Op::Write { ck, elems })
                    .boxed()
            }),
        ));
        arms.push((
            10,
            with(|ck, g| {
                (
                    prop::collection::vec(read_strategy(g), 1..=3),
                    prop::bool::weighted(0.2),
                )
                    .prop_map(move |(elems, local)| Op::Read { ck, elems, local })
                    .boxed()
            }),
        ));
        arms.push((
            4,
            with(|ck, g| {
                (
                    id_strategy(g),
                    prop_oneof![3 => 0..=g.max, 1 => Just(u64::MAX)],
                )
                    .prop_map(move |(id, offset)| Op::ReadVec { ck, id, offset })
                    .boxed()
            }),
        ));
        if m.iters.len() < MAX_ITERS {
            arms.push((
                4,
                (ck.clone(), chosen_strategy())
                    .prop_map(|(ck, chosen)| Op::IterInit { ck, chosen })
                    .boxed(),
            ));
        }
    }
    if !m.iters.is_empty() {
        arms.push((8, (0..m.iters.len()).prop_map(Op::IterNext).boxed()));
    }
    Union::new_weighted(arms).boxed()
}

/// Whether `op` still makes sense in `m` (shrinking drops earlier steps).
fn preconditions(m: &Model, op: &Op) -> bool {
    let (libs, cks, iters) = (m.libs.len(), m.cks.len(), m.iters.len());
    match op {
        Op::Initialize { .. } => true,
        Op::Finalize(lib) | Op::Dispatch { lib, .. } => *lib < libs,
        Op::Open { lib, .. } | Op::OpenAsync { lib, .. } | Op::Unlink { lib, .. } => *lib < libs,
        Op::Close(ck) | Op::SetActive(ck) | Op::Status(ck) => *ck < cks,
        Op::SetRetention { ck, .. }
        | Op::Synchronize { ck, .. }
        | Op::SynchronizeAsync { ck, .. }
        | Op::Create { ck, .. }
        | Op::Delete { ck, .. }
        | Op::SetExpiration { ck, .. }
        | Op::Overwrite { ck, .. }
        | Op::Write { ck, .. }
        | Op::Read { ck, .. }
        | Op::ReadVec { ck, .. }
        | Op::IterInit { ck, .. } => *ck < cks,
        Op::IterNext(it) => *it < iters,
    }
}

// ---- the system under test --------------------------------------------------------------

/// Every call, from one or two libraries and no handle.
struct ApiMachine;
/// Section, data, iteration and dispatch calls on one checkpoint opened three times.
struct DataMachine;

impl ReferenceStateMachine for ApiMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        init_strategy()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        transitions(state)
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        state.apply(op);
        state
    }

    fn preconditions(state: &Model, op: &Op) -> bool {
        preconditions(state, op)
    }
}

impl ReferenceStateMachine for DataMachine {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        data_init_strategy()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        transitions(state)
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        state.apply(op);
        state
    }

    fn preconditions(state: &Model, op: &Op) -> bool {
        preconditions(state, op)
    }
}

impl StateMachineTest for DataMachine {
    type SystemUnderTest = Sut;
    type Reference = Self;

    fn init_test(model: &Model) -> Sut {
        Sut::new(model)
    }

    fn apply(sut: Sut, after: &Model, op: Op) -> Sut {
        sut.step(after, op)
    }

    fn check_invariants(sut: &Sut, _: &Model) {
        sut.check_invariants();
    }
}

impl StateMachineTest for ApiMachine {
    type SystemUnderTest = Sut;
    type Reference = Self;

    fn init_test(model: &Model) -> Sut {
        Sut::new(model)
    }

    fn apply(sut: Sut, after: &Model, op: Op) -> Sut {
        sut.step(after, op)
    }

    fn check_invariants(sut: &Sut, _: &Model) {
        sut.check_invariants();
    }
}

type OpenSink = Arc<Mutex<Vec<(u64, Result<Checkpoint, Error>)>>>;

/// What one iteration has returned so far.
#[derive(Default)]
struct Seen {
    returned: BTreeSet<Vec<u8>>,
    ended: bool,
}

/// The handles under test (indexed like the model's), the model as of the last step, the
/// real instance of each model instance, and the ids the engine generated (placeholder →
/// real id). Dropping it closes everything and removes the domain directory.
struct Sut {
    domain: PathBuf,
    model: Model,
    libs: Vec<Library>,
    /// Per library: the invocations its synchronize callback received.
    delivered: Vec<Arc<Mutex<Vec<u64>>>>,
    /// Per library: what its open callback received.
    opened: Vec<OpenSink>,
    cks: Vec<Checkpoint>,
    iters: Vec<(SectionIterator, Seen)>,
    real_inst: Vec<u64>,
    generated: BTreeMap<Vec<u8>, (usize, Vec<u8>)>,
}

impl Drop for Sut {
    fn drop(&mut self) {
        self.iters.clear();
        self.cks.clear();
        self.opened.clear();
        self.libs.clear();
        let _ = std::fs::remove_dir_all(&self.domain);
    }
}

/// A new domain directory for each test case: the engine keys a process's liveness lock
/// by domain path, so a path is never used twice in one process.
fn new_domain() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let root = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let n = N.fetch_add(1, Relaxed);
    root.join(format!("ckpt-agent-model-{}-{n}", std::process::id()))
}

fn name<T>(r: &Result<T, Error>) -> Result<&T, &'static str> {
    r.as_ref().map_err(|e| e.name())
}

fn check<T: PartialEq + Debug>(op: &Op, want: &Result<T, Error>, got: &Result<T, Error>) {
    let (w, g) = (name(want), name(got));
    assert!(w == g, "{op:?}\n  model: {w:?}\n  agent: {g:?}");
}

fn check_vector<T: PartialEq + Debug>(op: &Op, want: &VResult<T>, got: &Result<T, VectorError>) {
    let w = want.as_ref().map_err(|e| (e.0, e.1.name()));
    let g = got.as_ref().map_err(|e| (e.index, e.error.name()));
    assert!(w == g, "{op:?}\n  model: {w:?}\n  agent: {g:?}");
}

/// Whether the selection object polls readable now.
fn readable(fd: RawFd) -> bool {
    // SAFETY: `fd` is a library's selection object, open until that library is
    // finalized, which cannot happen during this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).expect("poll the selection object") == 1
}

impl Sut {
    fn new(model: &Model) -> Self {
        let start = model.before_prelude.as_deref().unwrap_or(model);
        let mut sut = Self {
            domain: new_domain(),
            model: start.clone(),
            libs: Vec::new(),
            delivered: Vec::new(),
            opened: Vec::new(),
            cks: Vec::new(),
            iters: Vec::new(),
            real_inst: Vec::new(),
            generated: BTreeMap::new(),
        };
        for l in &start.libs {
            let version = if l.b02 {
                Version::B_02_02
            } else {
                Version::B_01_01
            };
            let lib = sut.initialize(version, l.open_cb, l.sync_cb);
            sut.libs.push(lib.expect("initialize a valid version"));
        }
        for op in &model.prelude {
            let mut after = sut.model.clone();
            after.apply(op);
            sut = sut.step(&after, op.clone());
        }
        sut.model.data_only = model.data_only;
        sut
    }

    fn initialize(
        &mut self,
        version: Version,
        open_cb: bool,
        sync_cb: bool,
    ) -> Result<Library, Error> {
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&delivered);
        let opened = Arc::new(Mutex::new(Vec::new()));
        let open_sink = Arc::clone(&opened);
        let callbacks = Callbacks {
            open: open_cb.then(|| {
                Box::new(move |invocation: u64, r: Result<Checkpoint, Error>| {
                    open_sink
                        .lock()
                        .expect("callback sink")
                        .push((invocation, r));
                }) as ckpt_agent::OpenCallback
            }),
            synchronize: sync_cb.then(|| {
                Box::new(move |invocation: u64, r: Result<(), Error>| {
                    assert_eq!(r, Ok(()), "synchronize {invocation} failed");
                    sink.lock().expect("callback sink").push(invocation);
                }) as ckpt_agent::SynchronizeCallback
            }),
        };
        let config = Config {
            domain: self.domain.clone(),
            limits: self.model.limits,
            cluster: None,
        };
        let lib = Library::initialize_with(config, version, callbacks)?;
        self.delivered.push(delivered);
        self.opened.push(opened);
        Ok(lib)
    }

    /// The id to give the agent for model id `id` of instance `k`: a placeholder of
    /// that instance is the id the engine generated; anything else is itself.
    fn real(&self, k: usize, id: &[u8]) -> Vec<u8> {
        match self.generated.get(id) {
            Some((i, real)) if *i == k => real.clone(),
            _ => id.to_vec(),
        }
    }

    /// The model id of the agent's id `real` in instance `k`.
    fn model_id(&self, k: usize, real: &[u8]) -> Vec<u8> {
        self.generated
            .iter()
            .find(|(_, (i, r))| *i == k && r.as_slice() == real)
            .map_or_else(|| real.to_vec(), |(p, _)| p.clone())
    }

    /// `real` for the instance of checkpoint handle `ck`.
    fn real_ck(&self, ck: usize, id: &[u8]) -> Vec<u8> {
        self.real(self.model.cks[ck].inst, id)
    }

    /// Applies `op` to the handles and to the model, and compares the results.
    fn step(mut self, after: &Model, op: Op) -> Self {
        match &op {
            Op::Initialize {
                version,
                open_cb,
                sync_cb,
            } => {
                let want = self.model.initialize(*version, *open_cb, *sync_cb);
                let got = self.initialize(*version, *open_cb, *sync_cb);
                check(&op, &want, &got.as_ref().map(drop).map_err(|e| *e));
                if let Ok(lib) = got {
                    assert_eq!(lib.requested_version(), *version, "{op:?}");
                    self.libs.push(lib);
                }
            }
            Op::Finalize(lib) => {
                let want = self.model.finalize(*lib);
                check(&op, &want, &self.libs[*lib].finalize());
            }
            Op::Dispatch { lib, all } => {
                let pending = self.model.libs[*lib].pending.len();
                let want = self.model.dispatch(*lib, *all);
                let l = &self.libs[*lib];
                match l.selection_object() {
                    Ok(fd) => {
                        assert!(want.is_ok(), "{op:?}: a selection object after finalize");
                        assert_eq!(
                            readable(fd),
                            pending > 0,
                            "{op:?}: the selection object does not show the {pending} \
                             pending callbacks"
                        );
                    }
                    Err(e) => check(&op, &want.as_ref().map(drop).map_err(|e| *e), &Err(e)),
                }
                let flags = if *all {
                    DispatchFlags::All
                } else {
                    DispatchFlags::One
                };
                let got = l
                    .dispatch(flags)
                    .map(|()| core::mem::take(&mut *self.delivered[*lib].lock().expect("sink")));
                check(&op, &want, &got);
                if let Ok(fd) = l.selection_object() {
                    let left = self.model.libs[*lib].pending.len();
                    assert_eq!(
                        readable(fd),
                        left > 0,
                        "{op:?}: the selection object after dispatch, {left} pending"
                    );
                }
            }
            Op::OpenAsync {
                lib,
                invocation,
                name,
                attrs,
                flags,
            } => self.open_async(&op, *lib, *invocation, &name.0, attrs.as_ref(), *flags),
            Op::Open {
                lib,
                name,
                attrs,
                flags,
                timeout,
            } => {
                let before = self.model.insts.len();
                let want = self
                    .model
                    .open(*lib, &name.0, attrs.as_ref(), *flags, *timeout);
                let got =
                    self.libs[*lib].open(&name.0, attrs.as_ref(), OpenFlags(*flags), *timeout);
                self.opened_as(&op, before, want, got, *flags);
            }
            Op::Close(ck) => {
                let want = self.model.close(*ck);
                check(&op, &want, &self.cks[*ck].close());
            }
            Op::Unlink { lib, name } => {
                let want = self.model.unlink(*lib, &name.0);
                check(&op, &want, &self.libs[*lib].unlink(&name.0));
            }
            Op::SetRetention { ck, retention } => {
                let want = self.model.set_retention(*ck, *retention);
                check(
                    &op,
                    &want,
                    &self.cks[*ck].set_retention_duration(*retention),
                );
            }
            Op::SetActive(ck) => {
                let want = self.model.set_active(*ck);
                check(&op, &want, &self.cks[*ck].set_active_replica());
            }
            Op::Status(ck) => {
                let want = self.model.status(*ck);
                check(&op, &want, &self.cks[*ck].status());
            }
            Op::Synchronize { ck, timeout } => {
                let want = self.model.synchronize(*ck, *timeout);
                check(&op, &want, &self.cks[*ck].synchronize(*timeout));
            }
            Op::SynchronizeAsync { ck, invocation } => {
                let want = self.model.synchronize_async(*ck, *invocation);
                check(&op, &want, &self.cks[*ck].synchronize_async(*invocation));
            }
            Op::Create {
                ck,
                id,
                expiration,
                data,
            } => self.create(&op, *ck, id.as_ref(), *expiration, data),
            Op::Delete { ck, id } => {
                let want = self.model.delete(*ck, &id.0);
                check(
                    &op,
                    &want,
                    &self.cks[*ck].delete_section(&self.real_ck(*ck, &id.0)),
                );
            }
            Op::SetExpiration { ck, id, expiration } => {
                let want = self.model.set_expiration(*ck, &id.0, *expiration);
                let got =
                    self.cks[*ck].set_section_expiration(&self.real_ck(*ck, &id.0), *expiration);
                check(&op, &want, &got);
            }
            Op::Overwrite { ck, id, data } => {
                let want = self.model.overwrite(*ck, &id.0, &data.0);
                check(
                    &op,
                    &want,
                    &self.cks[*ck].overwrite(&self.real_ck(*ck, &id.0), &data.0),
                );
            }
            Op::Write { ck, elems } => {
                let want = self.model.write(*ck, elems);
                let ids: Vec<Vec<u8>> = elems.iter().map(|e| self.real_ck(*ck, &e.id.0)).collect();
                let vector: Vec<WriteElement<'_>> = elems
                    .iter()
                    .zip(&ids)
                    .map(|(e, id)| WriteElement {
                        section_id: id,
                        offset: e.offset,
                        data: &e.data.0,
                    })
                    .collect();
                check_vector(&op, &want, &self.cks[*ck].write(&vector));
            }
            Op::Read { ck, elems, local } => {
                let want = self.model.read(*ck, elems, *local);
                let ids: Vec<Vec<u8>> = elems.iter().map(|e| self.real_ck(*ck, &e.id.0)).collect();
                let mut bufs: Vec<Vec<u8>> = elems.iter().map(|e| vec![0xee; e.len]).collect();
                let mut vector: Vec<ReadElement<'_>> = elems
                    .iter()
                    .zip(&ids)
                    .zip(&mut bufs)
                    .map(|((e, id), buf)| ReadElement {
                        section_id: id,
                        offset: e.offset,
                        buf,
                        read_size: usize::MAX,
                    })
                    .collect();
                let c = &self.cks[*ck];
                let got = if *local {
                    c.read_local(&mut vector)
                } else {
                    c.read(&mut vector)
                };
                let got = got.map(|()| {
                    vector
                        .iter()
                        .map(|e| e.buf[..e.read_size].to_vec())
                        .collect::<Vec<_>>()
                });
                check_vector(&op, &want, &got);
            }
            Op::ReadVec { ck, id, offset } => {
                let want = self.model.read_vec(*ck, &id.0, *offset);
                check(
                    &op,
                    &want,
                    &self.cks[*ck].read_vec(&self.real_ck(*ck, &id.0), *offset),
                );
            }
            Op::IterInit { ck, chosen } => {
                let want = self.model.iter_init(*ck, *chosen);
                let got = self.cks[*ck].sections(*chosen);
                check(&op, &want, &got.as_ref().map(drop).map_err(|e| *e));
                if let Ok(it) = got {
                    assert_eq!(it.checkpoint(), self.cks[*ck].handle(), "{op:?}");
                    self.iters.push((it, Seen::default()));
                }
            }
            Op::IterNext(it) => self.iter_next(&op, *it),
        }
        assert_eq!(
            self.model.insts.len(),
            after.insts.len(),
            "the test's model diverged from the reference"
        );
        for (a, b) in self.model.insts.iter().zip(&after.insts) {
            assert_eq!(
                a.sections, b.sections,
                "the test's model diverged from the reference"
            );
        }
        self
    }

    /// Compares an open's outcome; keeps the handle.
    fn opened_as(
        &mut self,
        op: &Op,
        before: usize,
        want: Result<usize, Error>,
        got: Result<Checkpoint, Error>,
        flags: u32,
    ) {
        check(
            op,
            &want.as_ref().map(drop).map_err(|e| *e),
            &got.as_ref().map(drop).map_err(|e| *e),
        );
        if let (Ok(k), Ok(ck)) = (want, got) {
            let inst = &self.model.insts[k];
            assert_eq!(ck.attributes(), inst.attrs, "{op:?}: attributes");
            assert_eq!(ck.open_flags(), OpenFlags(flags), "{op:?}: flags");
            if k == before {
                assert!(
                    !self.real_inst.contains(&ck.instance()),
                    "{op:?}: a new checkpoint reuses instance {}",
                    ck.instance()
                );
                self.real_inst.push(ck.instance());
            } else {
                assert_eq!(
                    ck.instance(),
                    self.real_inst[k],
                    "{op:?}: opened another instance"
                );
            }
            self.cks.push(ck);
        }
    }

    /// Open-async, then dispatch ALL until the open callback has run (5 s at most): it
    /// delivers the synchronize callbacks queued before, then the open's outcome.
    fn open_async(
        &mut self,
        op: &Op,
        lib: usize,
        invocation: u64,
        name: &[u8],
        attrs: Option<&CreationAttributes>,
        flags: u32,
    ) {
        let before = self.model.insts.len();
        let want = self.model.open_async(lib, name, attrs, flags);
        let got = self.libs[lib].open_async(invocation, name, attrs, OpenFlags(flags));
        check(op, &want.as_ref().map(drop).map_err(|e| *e), &got);
        let Ok((want, synced)) = want else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut outcome = None;
        while outcome.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "{op:?}: no open callback within 5 s"
            );
            self.libs[lib]
                .dispatch(DispatchFlags::All)
                .expect("dispatch");
            let mut opened = self.opened[lib].lock().expect("sink");
            assert!(opened.len() <= 1, "{op:?}: {} open callbacks", opened.len());
            outcome = opened.pop();
            drop(opened);
            if outcome.is_none() {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        let (inv, got) = outcome.expect("an open callback");
        assert_eq!(inv, invocation, "{op:?}: the open callback's invocation");
        let delivered = core::mem::take(&mut *self.delivered[lib].lock().expect("sink"));
        assert_eq!(
            delivered, synced,
            "{op:?}: synchronize callbacks run by the dispatch"
        );
        self.opened_as(op, before, want, got, flags);
    }

    fn create(&mut self, op: &Op, ck: usize, id: Option<&Bytes>, expiration: i64, data: &Bytes) {
        let k = self.model.cks[ck].inst;
        let taken: Vec<Vec<u8>> = self.model.insts[k]
            .sections
            .keys()
            .map(|id| self.real(k, id))
            .collect();
        let real = id.map(|id| self.real(k, &id.0));
        let want = self
            .model
            .create(ck, id.map(|b| &b.0[..]), expiration, &data.0);
        let got = self.cks[ck].create_section(real.as_deref(), expiration, &data.0);
        match (&want, &got, &real) {
            (Ok(placeholder), Ok(got), None) => {
                // §4.1: a new id of 1..=maxSectionIdSize bytes; it must also avoid the
                // bytes of explicit ids, or the two could collide in this test.
                let longest = self.model.insts[k].attrs.max_section_id_size as usize;
                assert!(
                    (1..=longest).contains(&got.len())
                        && !taken.contains(got)
                        && !got.iter().any(|b| ID_BYTES.contains(b)),
                    "{op:?}: generated id {:?} is empty, too long, taken, or uses the bytes \
                     of explicit ids",
                    Bytes(got.clone())
                );
                // An id generated again (a small maxSectionIdSize wraps) now stands for
                // this section only.
                self.generated.retain(|_, (i, r)| !(*i == k && r == got));
                self.generated.insert(placeholder.clone(), (k, got.clone()));
            }
            (Ok(_), Ok(got), Some(real)) => assert_eq!(got, real, "{op:?}: returned id"),
            _ => check(
                op,
                &want.as_ref().map(drop).map_err(|e| *e),
                &got.as_ref().map(drop).map_err(|e| *e),
            ),
        }
    }

    /// One `next_section`: a section chosen when the iteration started and present since
    /// comes exactly once, with its current size and expiration; one created, deleted or
    /// given another expiration meanwhile may come or not; after `NoSections` nothing
    /// else; `BadHandle` once its checkpoint is closed.
    fn iter_next(&mut self, op: &Op, it: usize) {
        let m = &self.model.iters[it];
        let got = self.iters[it].0.next_section();
        if self.model.cks[m.ck].closed {
            check(op, &Err(Error::BadHandle), &got.map(drop));
            return;
        }
        let inst = &self.model.insts[m.inst];
        match got {
            Ok(d) => {
                let id = self.model_id(m.inst, &d.id);
                let seen = &mut self.iters[it].1;
                assert!(!seen.ended, "{op:?}: {:?} after NoSections", Bytes(id));
                let dirty = m.dirty.contains(&id);
                assert!(
                    dirty || m.expected.contains(&id),
                    "{op:?}: {:?} was not chosen (expected {:?})",
                    Bytes(id.clone()),
                    m.expected
                );
                if !dirty {
                    assert!(
                        seen.returned.insert(id.clone()),
                        "{op:?}: {:?} returned twice",
                        Bytes(id)
                    );
                    let s = &inst.sections[&id];
                    assert_eq!(
                        (d.size, d.expiration_time, d.state),
                        (s.data.len() as u64, s.expiration, SectionState::Valid),
                        "{op:?}: descriptor of {:?}",
                        Bytes(id)
                    );
                }
            }
            Err(Error::NoSections) => {
                let seen = &mut self.iters[it].1;
                seen.ended = true;
                let missing: Vec<&Vec<u8>> = m
                    .expected
                    .iter()
                    .filter(|id| !m.dirty.contains(*id) && !seen.returned.contains(*id))
                    .collect();
                assert!(missing.is_empty(), "{op:?}: never returned {missing:?}");
            }
            Err(e) => panic!("{op:?}: {e}"),
        }
    }

    /// After every step: the replica objects in the domain are the model's live instances,
    /// and every live instance an open READ handle can see holds the model's sections,
    /// bytes and status.
    fn check_invariants(&self) {
        let mut objects = BTreeSet::new();
        for e in std::fs::read_dir(&self.domain).expect("read the domain directory") {
            let name = e.expect("a directory entry").file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_prefix("r-") {
                objects.insert(u64::from_str_radix(hex, 16).expect("r-<hex>"));
            }
        }
        let live: BTreeSet<u64> = self
            .model
            .insts
            .iter()
            .zip(&self.real_inst)
            .filter(|(i, _)| !i.deleted)
            .map(|(_, r)| *r)
            .collect();
        assert_eq!(objects, live, "replica objects in the domain");
        for (k, inst) in self.model.insts.iter().enumerate() {
            if inst.deleted || !inst.active {
                continue;
            }
            let Some(h) = (0..self.cks.len()).find(|&c| {
                let h = &self.model.cks[c];
                !h.closed && h.inst == k && h.flags.contains(READ)
            }) else {
                continue;
            };
            let ck = &self.cks[h];
            let want = self.model.status(h);
            check(&Op::Status(h), &want, &ck.status());
            for (id, s) in &inst.sections {
                let got = ck.borrow(&self.real(k, id)).map(|b| b.to_vec());
                assert_eq!(got, Ok(s.data.clone()), "section {:?}", Bytes(id.clone()));
            }
            let ids: BTreeSet<Vec<u8>> = ck
                .sections(SectionsChosen::Any)
                .expect("iterate")
                .map(|d| self.model_id(k, &d.expect("a section").id))
                .collect();
            let want: BTreeSet<Vec<u8>> = inst.sections.keys().cloned().collect();
            assert_eq!(ids, want, "sections of instance {k}");
        }
    }
}

/// How many test cases (each with its own domain) one of the two tests may run: every
/// domain a process uses keeps one descriptor open for the process's life (the engine's
/// liveness lock), so the soft descriptor limit is raised to the hard one and shared by
/// the two tests, half for cases and half for shrinking.
fn case_budget() -> u32 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum.map(|m| m.min(1 << 20)),
            maximum: limit.maximum,
        },
    );
    let now = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    u32::try_from(now.saturating_sub(512) / 4).unwrap_or(u32::MAX)
}

/// `cases` (within [`case_budget`]) unless `PROPTEST_CASES` says otherwise. Failures are
/// not persisted: the minimal input is printed.
fn config(cases: u32) -> ProptestConfig {
    let budget = case_budget();
    let mut config = ProptestConfig {
        failure_persistence: None,
        max_shrink_iters: budget,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases.min(budget);
    }
    config
}

prop_state_machine! {
    #![proptest_config(config(2048))]

    #[test]
    fn api_matches_model_under_random_calls(sequential 1..100 => ApiMachine);
}

prop_state_machine! {
    #![proptest_config(config(1024))]

    #[test]
    fn data_path_matches_model_under_random_calls(sequential 1..100 => DataMachine);
}
