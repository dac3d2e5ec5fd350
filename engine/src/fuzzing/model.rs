//! The plain in-memory model of a checkpoint's sections, the one reference both model
//! checks compare the engine with: the proptest state machine (`engine/tests/model.rs`) and
//! the `arena_ops` fuzz target's model mode. [`Model`] holds the state and the rules; [`Op`]
//! is the alphabet of operations both drive; [`Sut`] applies an [`Op`] to a
//! replica and to the model and compares the results.
//!
//! The model follows `saf-ckpt-spec.md` §4.1–4.7 and the error lists of §2.3–2.4. The spec
//! leaves some choices open. These are the ones made here, and the engine follows them:
//!
//! - A vector write is validated whole before anything is applied (§0 item 4). First come
//!   each element's arguments and its section, in element order. Then comes the
//!   checkpointSize budget, with the elements applied in order. The error names the first
//!   failing element (§2.4): for the budget, the element whose growth crosses it.
//!   `read_many` fails at the first failing element, in element order.
//! - `create_section` checks maxSections (NO_SPACE) before checkpointSize (NO_RESOURCES).
//! - An explicit empty id, and an expiration time before the epoch, are INVALID_PARAM.
//! - Expired sections read as absent at once (§4.2). The engine reaps them lazily
//!   (`reap_expired`), so until then they still count in `status()` and hold their
//!   descriptor and bytes against maxSections and checkpointSize. Their id is free at
//!   once: creating it again replaces the expired section.
//! - A write of zero bytes at an offset past the end grows the section to that offset.
//! - A read buffer longer than maxSectionSize is not refused. (§2.4 lists `dataSize >
//!   maxSectionSize` as INVALID_PARAM for Read, so the C shim must check it.)
//! - Every data change (create, overwrite, write) sets the section's last update to the
//!   model's clock; a new expiration does not.
//!
//! Generated ids are not predicted. The model names a generated section with a
//! [`placeholder`] (`0xff`, counter), which explicit ids never use, and [`Sut`] maps it to
//! the id the engine returned.
//!
//! [`Sut`]: super::sut::Sut

use core::fmt::{self, Debug};
use std::collections::BTreeMap;

use crate::{
    ReplicaAttributes, ReplicaLimits, SectionError, SectionFilter, Status, TIME_END, VectorError,
};

/// Bytes of explicit ids: never a digit, so they cannot collide with generated ids.
/// Includes 0, because ids are binary (§4.1).
pub const ID_BYTES: [u8; 3] = [b'a', b'b', 0];
/// First byte of the model's placeholder for a generated id.
pub const GENERATED: u8 = 0xff;

/// Bytes as a byte-string literal, so failures print short.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteStr<'a>(pub &'a [u8]);

impl Debug for ByteStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// A section as the model holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Section {
    /// The section's bytes; the length is its size.
    pub data: Vec<u8>,
    /// Absolute expiration ([`TIME_END`] for never).
    pub expiration: i64,
    /// The clock at the last data change. `None` for the default section, which is
    /// created before the caller can set the clock.
    pub last_update: Option<i64>,
}

impl Debug for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} exp {} updated {:?}",
            ByteStr(&self.data),
            self.expiration,
            self.last_update
        )
    }
}

/// The model of one checkpoint replica: its geometry, its clock and its sections.
#[derive(Clone)]
pub struct Model {
    /// The checkpoint's geometry.
    pub attrs: ReplicaAttributes,
    /// The engine limits the replica under test is made with (the model ignores them).
    pub limits: ReplicaLimits,
    /// The clock: a section whose expiration is at or before it is expired.
    pub now: i64,
    /// Every section still stored, expired or not, by id (placeholders for generated ids).
    pub sections: BTreeMap<Vec<u8>, Section>,
    /// The counter of the next generated id's [`placeholder`].
    generated: u32,
}

impl Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.attrs;
        let sections: BTreeMap<ByteStr<'_>, &Section> =
            self.sections.iter().map(|(k, v)| (ByteStr(k), v)).collect();
        f.debug_struct("Model")
            .field("max_sections", &a.max_sections)
            .field("max_section_size", &a.max_section_size)
            .field("max_section_id_size", &a.max_section_id_size)
            .field("checkpoint_size", &a.checkpoint_size)
            .field("limits", &self.limits)
            .field("now", &self.now)
            .field("sections", &sections)
            .finish()
    }
}

/// One element of a vector write.
#[derive(Clone)]
pub struct WriteOp {
    /// The section (a placeholder for a generated id).
    pub id: Vec<u8>,
    /// Where the data goes.
    pub offset: u64,
    /// The bytes written.
    pub data: Vec<u8>,
}

impl Debug for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}@{}={:?}",
            ByteStr(&self.id),
            self.offset,
            ByteStr(&self.data)
        )
    }
}

/// One read: of a single section, or one element of a vector read.
#[derive(Clone)]
pub struct ReadOp {
    /// The section (a placeholder for a generated id).
    pub id: Vec<u8>,
    /// Where the read starts.
    pub offset: u64,
    /// The length of the buffer.
    pub len: usize,
}

impl Debug for ReadOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}+{}", ByteStr(&self.id), self.offset, self.len)
    }
}

/// An operation on the replica and the model. Ids are the model's: a [`placeholder`]
/// stands for the id the engine generated.
#[derive(Clone)]
pub enum Op {
    /// `create_section`; `id: None` asks for a generated id.
    Create {
        /// The explicit id, or `None`.
        id: Option<Vec<u8>>,
        /// Absolute expiration.
        expiration: i64,
        /// The initial bytes.
        data: Vec<u8>,
    },
    /// `delete_section`.
    Delete {
        /// The section.
        id: Vec<u8>,
    },
    /// `set_expiration`.
    SetExpiration {
        /// The section.
        id: Vec<u8>,
        /// The new absolute expiration.
        expiration: i64,
    },
    /// `overwrite`.
    Overwrite {
        /// The section.
        id: Vec<u8>,
        /// The new bytes.
        data: Vec<u8>,
    },
    /// `write`, a vector write.
    Write(Vec<WriteOp>),
    /// `read`.
    Read(ReadOp),
    /// `read_many`, a vector read.
    ReadMany(Vec<ReadOp>),
    /// Borrows the section. If `overwrite` is given and the borrow succeeds, the section
    /// is overwritten while the guard is held. The guard must keep showing the old bytes.
    Borrow {
        /// The section.
        id: Vec<u8>,
        /// The bytes to overwrite it with while borrowed.
        overwrite: Option<Vec<u8>>,
    },
    /// `section_info` and `contains`.
    Info {
        /// The section.
        id: Vec<u8>,
    },
    /// `sections`, the listing.
    List(SectionFilter),
    /// `status`.
    Status,
    /// Moves the clock forward by this many nanoseconds.
    AdvanceClock(i64),
    /// `reap_expired` at this time.
    Reap {
        /// The time to reap at (not the clock's).
        now: i64,
    },
}

impl Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = |e: &i64| {
            if *e == TIME_END {
                "never".to_string()
            } else {
                e.to_string()
            }
        };
        match self {
            Self::Create {
                id: Some(id),
                expiration,
                data,
            } => {
                write!(
                    f,
                    "Create({:?}, exp {}, {:?})",
                    ByteStr(id),
                    exp(expiration),
                    ByteStr(data)
                )
            }
            Self::Create {
                id: None,
                expiration,
                data,
            } => {
                write!(
                    f,
                    "Create(generated, exp {}, {:?})",
                    exp(expiration),
                    ByteStr(data)
                )
            }
            Self::Delete { id } => write!(f, "Delete({:?})", ByteStr(id)),
            Self::SetExpiration { id, expiration } => {
                write!(f, "SetExpiration({:?}, {})", ByteStr(id), exp(expiration))
            }
            Self::Overwrite { id, data } => {
                write!(f, "Overwrite({:?}, {:?})", ByteStr(id), ByteStr(data))
            }
            Self::Write(elems) => write!(f, "Write{elems:?}"),
            Self::Read(r) => write!(f, "Read({r:?})"),
            Self::ReadMany(elems) => write!(f, "ReadMany{elems:?}"),
            Self::Borrow { id, overwrite } => {
                write!(
                    f,
                    "Borrow({:?}, then overwrite {:?})",
                    ByteStr(id),
                    overwrite.as_deref().map(ByteStr)
                )
            }
            Self::Info { id } => write!(f, "Info({:?})", ByteStr(id)),
            Self::List(filter) => write!(f, "List({filter:?})"),
            Self::Status => f.write_str("Status"),
            Self::AdvanceClock(by) => write!(f, "AdvanceClock({by})"),
            Self::Reap { now } => write!(f, "Reap({now})"),
        }
    }
}

fn bad_argument() -> SectionError {
    SectionError::BadArgument(&"")
}

/// The model's name for the `n`th generated id: [`GENERATED`], then `n` mod 256.
pub fn placeholder(n: u32) -> Vec<u8> {
    vec![GENERATED, (n % 256) as u8]
}

impl Model {
    /// A new replica's model, its clock at `now`. With `maxSections == 1` it holds the
    /// default section.
    pub fn new(attrs: ReplicaAttributes, limits: ReplicaLimits, now: i64) -> Self {
        let mut sections = BTreeMap::new();
        if attrs.max_sections == 1 {
            // §4.1: the default section exists from the start, never expires, is empty.
            sections.insert(
                Vec::new(),
                Section {
                    data: Vec::new(),
                    expiration: TIME_END,
                    last_update: None,
                },
            );
        }
        Self {
            attrs,
            limits,
            now,
            sections,
            generated: 0,
        }
    }

    /// `maxSectionSize`.
    pub fn max_size(&self) -> u64 {
        self.attrs.max_section_size
    }

    fn is_default_checkpoint(&self) -> bool {
        self.attrs.max_sections == 1
    }

    /// Whether `s` has expired by the model's clock (§4.2).
    pub fn is_expired(&self, s: &Section) -> bool {
        s.expiration != TIME_END && s.expiration <= self.now
    }

    /// A section present and not expired (§4.2).
    pub fn live(&self, id: &[u8]) -> Option<&Section> {
        self.sections.get(id).filter(|s| !self.is_expired(s))
    }

    /// `memoryUsed`: the bytes of every section still stored, expired or not (§4.7).
    fn used(&self) -> u64 {
        self.sections.values().map(|s| s.data.len() as u64).sum()
    }

    /// `status()`: every section still stored, expired or not, and their bytes (§4.7).
    pub fn status(&self) -> Status {
        Status {
            sections: self.sections.len() as u32,
            memory_used: self.used(),
        }
    }

    /// `create_section`: the new section's id, a [`placeholder`] for a generated one.
    pub fn create(
        &mut self,
        id: Option<&[u8]>,
        expiration: i64,
        data: &[u8],
    ) -> Result<Vec<u8>, SectionError> {
        // §4.1: with maxSections == 1, SectionCreate gives EXIST whatever the id.
        if self.is_default_checkpoint() {
            return Err(SectionError::Exists);
        }
        // §2.3: initialDataSize > maxSectionSize is INVALID_PARAM (`TooBig`).
        if data.len() as u64 > self.max_size() {
            return Err(SectionError::TooBig);
        }
        // An absolute time (§4.2) before the epoch is refused, as fsck's `expiration`
        // invariant requires.
        if expiration < 0 {
            return Err(bad_argument());
        }
        let mut generated = None;
        let key = match id {
            Some(id) => {
                // §4.1: idLen ≤ maxSectionIdSize. (A placeholder stands for a generated
                // id, which is never too long.)
                let known = self.sections.contains_key(id);
                if id.len() as u64 > self.attrs.max_section_id_size && !known {
                    return Err(bad_argument());
                }
                // §4.1 and §2.3: with maxSections > 1 no section has the empty id (only
                // the default section does), and idLen 0 with an id is INVALID_PARAM.
                if id.is_empty() {
                    return Err(bad_argument());
                }
                if self.live(id).is_some() {
                    return Err(SectionError::Exists);
                }
                // §4.2: an expired section was deleted when its time came. If it has not
                // been reaped yet, its id is free all the same.
                if self.sections.get(id).is_some_and(|s| self.is_expired(s)) {
                    self.sections.remove(id);
                }
                id.to_vec()
            }
            None => {
                // A generated id needs at least one byte (the engine's documented rule).
                if self.attrs.max_section_id_size == 0 {
                    return Err(bad_argument());
                }
                let mut n = self.generated;
                while self.sections.contains_key(&placeholder(n)) {
                    n += 1;
                }
                generated = Some(n);
                placeholder(n)
            }
        };
        // §4.7: maxSections reached is NO_SPACE (the "resources exhausted" case), checked
        // before checkpointSize, which is enforced with NO_RESOURCES.
        if self.sections.len() >= self.attrs.max_sections as usize {
            return Err(SectionError::NoSpace);
        }
        if self.used() + data.len() as u64 > self.attrs.checkpoint_size {
            return Err(SectionError::NoResources);
        }
        if let Some(n) = generated {
            self.generated = n + 1;
        }
        let section = Section {
            data: data.to_vec(),
            expiration,
            last_update: Some(self.now),
        };
        self.sections.insert(key.clone(), section);
        Ok(key)
    }

    /// `delete_section`.
    pub fn delete(&mut self, id: &[u8]) -> Result<(), SectionError> {
        // §4.1: the default section cannot be deleted (INVALID_PARAM).
        if self.is_default_checkpoint() && id.is_empty() {
            return Err(bad_argument());
        }
        self.live(id).ok_or(SectionError::NotExist)?;
        self.sections.remove(id);
        Ok(())
    }

    /// `set_expiration`; the last update stays.
    pub fn set_expiration(&mut self, id: &[u8], expiration: i64) -> Result<(), SectionError> {
        // §4.1: the default section's expiration is fixed (INVALID_PARAM).
        if (self.is_default_checkpoint() && id.is_empty()) || expiration < 0 {
            return Err(bad_argument());
        }
        self.live(id).ok_or(SectionError::NotExist)?;
        // The section is live: checked just above.
        self.sections.get_mut(id).expect("live").expiration = expiration;
        Ok(())
    }

    /// `overwrite`: the section becomes exactly `data`.
    pub fn overwrite(&mut self, id: &[u8], data: &[u8]) -> Result<(), SectionError> {
        // §2.4: dataSize > maxSectionSize is INVALID_PARAM (`TooBig`).
        if data.len() as u64 > self.max_size() {
            return Err(SectionError::TooBig);
        }
        let old = self.live(id).ok_or(SectionError::NotExist)?.data.len() as u64;
        let new = data.len() as u64;
        if new > old && self.used() + (new - old) > self.attrs.checkpoint_size {
            return Err(SectionError::NoResources);
        }
        let now = self.now;
        // The section is live: `old` was read from it just above.
        let s = self.sections.get_mut(id).expect("live");
        // §4.5: the size becomes exactly dataSize.
        s.data = data.to_vec();
        s.last_update = Some(now);
        Ok(())
    }

    /// `write`, §2.4 and §4.9: all or nothing, and the error names the first failing
    /// element. The whole vector is validated before anything is applied (§0 item 4): first
    /// every element's arguments and section, in element order; then the checkpointSize
    /// budget, with the elements applied in order, so the error names the element whose
    /// growth crosses it.
    pub fn write(&mut self, elems: &[WriteOp]) -> Result<(), VectorError> {
        let max = self.max_size();
        for (index, e) in elems.iter().enumerate() {
            let fail = |kind| Err(VectorError { index, kind });
            // §2.4: dataSize > maxSectionSize is INVALID_PARAM.
            if e.data.len() as u64 > max {
                return fail(SectionError::TooBig);
            }
            // §4.5: dataOffset + dataSize > maxSectionSize is NO_RESOURCES (OpenSAF).
            if e.offset
                .checked_add(e.data.len() as u64)
                .is_none_or(|end| end > max)
            {
                return fail(SectionError::NoResources);
            }
            if self.live(&e.id).is_none() {
                return fail(SectionError::NotExist);
            }
        }
        let mut staged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut used = self.used();
        for (index, e) in elems.iter().enumerate() {
            // Every element's section is live: checked in the loop above.
            let bytes = staged
                .entry(e.id.clone())
                .or_insert_with(|| self.sections[&e.id].data.clone());
            let (start, end) = (e.offset as usize, e.offset as usize + e.data.len());
            if end > bytes.len() {
                // §4.5: sections grow, and holes read as zeros. §4.7: checkpointSize.
                used += (end - bytes.len()) as u64;
                if used > self.attrs.checkpoint_size {
                    return Err(VectorError {
                        index,
                        kind: SectionError::NoResources,
                    });
                }
                bytes.resize(end, 0);
            }
            bytes[start..end].copy_from_slice(&e.data);
        }
        let now = self.now;
        for (id, data) in staged {
            // Staged ids are live sections: checked in the first loop.
            let s = self.sections.get_mut(&id).expect("live");
            s.data = data;
            s.last_update = Some(now);
        }
        Ok(())
    }

    /// `read`, §4.6: `readSize = min(dataSize, sectionSize - dataOffset)`. `dataOffset >
    /// sectionSize` is INVALID_PARAM. `dataOffset == sectionSize` reads 0 bytes.
    pub fn read(&self, r: &ReadOp) -> Result<Vec<u8>, SectionError> {
        let s = self.live(&r.id).ok_or(SectionError::NotExist)?;
        let size = s.data.len() as u64;
        if r.offset > size {
            return Err(bad_argument());
        }
        let n = (size - r.offset).min(r.len as u64) as usize;
        Ok(s.data[r.offset as usize..][..n].to_vec())
    }

    /// `read_many`: each element as [`read`](Self::read); the error names the first
    /// failing element.
    pub fn read_many(&self, elems: &[ReadOp]) -> Result<Vec<Vec<u8>>, VectorError> {
        elems
            .iter()
            .enumerate()
            .map(|(index, r)| self.read(r).map_err(|kind| VectorError { index, kind }))
            .collect()
    }

    /// `section_info` of a live section: expiration, size and last update (`None` for the
    /// default section, whose creation time is not the model's).
    pub fn info(&self, id: &[u8]) -> Result<(i64, u64, Option<i64>), SectionError> {
        let s = self.live(id).ok_or(SectionError::NotExist)?;
        Ok((s.expiration, s.data.len() as u64, s.last_update))
    }

    /// `sections(filter)` as (id, expiration, size), by id. `SaCkptSectionsChosenT`:
    /// expired sections are never listed; CORRUPTED finds none, because commits are
    /// copy-on-write.
    pub fn list(&self, filter: SectionFilter) -> Vec<(Vec<u8>, i64, u64)> {
        self.sections
            .iter()
            .filter(|(_, s)| !self.is_expired(s))
            .filter(|(_, s)| match filter {
                SectionFilter::Any => true,
                SectionFilter::Forever => s.expiration == TIME_END,
                SectionFilter::ExpiringAtOrBefore(t) => s.expiration <= t,
                SectionFilter::ExpiringAtOrAfter(t) => s.expiration >= t,
                SectionFilter::Corrupted => false,
            })
            .map(|(id, s)| (id.clone(), s.expiration, s.data.len() as u64))
            .collect()
    }

    /// `reap_expired(now)`: removes the sections expired at `now` (not the model's clock)
    /// and says how many.
    pub fn reap(&mut self, now: i64) -> usize {
        let before = self.sections.len();
        self.sections
            .retain(|_, s| s.expiration == TIME_END || s.expiration > now);
        before - self.sections.len()
    }

    /// Applies `op`, ignoring its result: the model's step without a replica (the proptest
    /// reference state machine's transition).
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Create {
                id,
                expiration,
                data,
            } => {
                let _ = self.create(id.as_deref(), *expiration, data);
            }
            Op::Delete { id } => {
                let _ = self.delete(id);
            }
            Op::SetExpiration { id, expiration } => {
                let _ = self.set_expiration(id, *expiration);
            }
            Op::Overwrite { id, data } => {
                let _ = self.overwrite(id, data);
            }
            Op::Write(elems) => {
                let _ = self.write(elems);
            }
            Op::Borrow {
                id,
                overwrite: Some(data),
            } => {
                if self.live(id).is_some() {
                    let _ = self.overwrite(id, data);
                }
            }
            Op::AdvanceClock(by) => self.now += by,
            Op::Reap { now } => {
                let _ = self.reap(*now);
            }
            Op::Read(_)
            | Op::ReadMany(_)
            | Op::Borrow {
                overwrite: None, ..
            }
            | Op::Info { .. }
            | Op::List(_)
            | Op::Status => {}
        }
    }
}
