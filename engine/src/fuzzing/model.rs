//! The plain in-memory model of a checkpoint's sections that the `arena_ops` target checks
//! the engine against. It mirrors the model of `engine/tests/model.rs` (the proptest state
//! machine) rule for rule; that file's module docs give the spec references and the choices
//! the spec leaves open. Keep the two in step.

use std::collections::BTreeMap;

use crate::{ReplicaAttributes, SectionError, SectionFilter, Status, TIME_END, VectorError};

/// Bytes of explicit ids: never a digit, so they cannot collide with generated ids.
pub(crate) const ID_BYTES: [u8; 3] = [b'a', b'b', 0];
/// First byte of the model's placeholder for a generated id.
pub(crate) const GENERATED: u8 = 0xff;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) data: Vec<u8>,
    pub(crate) expiration: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct WriteOp {
    pub(crate) id: Vec<u8>,
    pub(crate) offset: u64,
    pub(crate) data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub(crate) struct ReadOp {
    pub(crate) id: Vec<u8>,
    pub(crate) offset: u64,
    pub(crate) len: usize,
}

#[derive(Clone, Debug)]
pub(crate) struct Model {
    pub(crate) attrs: ReplicaAttributes,
    pub(crate) now: i64,
    pub(crate) sections: BTreeMap<Vec<u8>, Section>,
    generated: u32,
}

fn bad_argument() -> SectionError {
    SectionError::BadArgument("")
}

/// The model's name for the `n`th generated id.
pub(crate) fn placeholder(n: u32) -> Vec<u8> {
    vec![GENERATED, (n % 256) as u8]
}

impl Model {
    pub(crate) fn new(attrs: ReplicaAttributes, now: i64) -> Self {
        let mut sections = BTreeMap::new();
        if attrs.max_sections == 1 {
            sections.insert(
                Vec::new(),
                Section {
                    data: Vec::new(),
                    expiration: TIME_END,
                },
            );
        }
        Self {
            attrs,
            now,
            sections,
            generated: 0,
        }
    }

    pub(crate) fn max_size(&self) -> u64 {
        self.attrs.max_section_size
    }

    fn is_default_checkpoint(&self) -> bool {
        self.attrs.max_sections == 1
    }

    pub(crate) fn is_expired(&self, s: &Section) -> bool {
        s.expiration != TIME_END && s.expiration <= self.now
    }

    pub(crate) fn live(&self, id: &[u8]) -> Option<&Section> {
        self.sections.get(id).filter(|s| !self.is_expired(s))
    }

    fn used(&self) -> u64 {
        self.sections.values().map(|s| s.data.len() as u64).sum()
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            sections: self.sections.len() as u32,
            memory_used: self.used(),
        }
    }

    pub(crate) fn create(
        &mut self,
        id: Option<&[u8]>,
        expiration: i64,
        data: &[u8],
    ) -> Result<Vec<u8>, SectionError> {
        if self.is_default_checkpoint() {
            return Err(SectionError::Exists);
        }
        if data.len() as u64 > self.max_size() {
            return Err(SectionError::TooBig);
        }
        if expiration < 0 {
            return Err(bad_argument());
        }
        let mut generated = None;
        let key = match id {
            Some(id) => {
                let known = self.sections.contains_key(id);
                if id.len() as u64 > self.attrs.max_section_id_size && !known {
                    return Err(bad_argument());
                }
                if id.is_empty() {
                    return Err(bad_argument());
                }
                if self.live(id).is_some() {
                    return Err(SectionError::Exists);
                }
                if self.sections.get(id).is_some_and(|s| self.is_expired(s)) {
                    self.sections.remove(id);
                }
                id.to_vec()
            }
            None => {
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
        };
        self.sections.insert(key.clone(), section);
        Ok(key)
    }

    pub(crate) fn delete(&mut self, id: &[u8]) -> Result<(), SectionError> {
        if self.is_default_checkpoint() && id.is_empty() {
            return Err(bad_argument());
        }
        self.live(id).ok_or(SectionError::NotExist)?;
        self.sections.remove(id);
        Ok(())
    }

    pub(crate) fn set_expiration(
        &mut self,
        id: &[u8],
        expiration: i64,
    ) -> Result<(), SectionError> {
        if (self.is_default_checkpoint() && id.is_empty()) || expiration < 0 {
            return Err(bad_argument());
        }
        self.live(id).ok_or(SectionError::NotExist)?;
        if let Some(s) = self.sections.get_mut(id) {
            s.expiration = expiration;
        }
        Ok(())
    }

    pub(crate) fn overwrite(&mut self, id: &[u8], data: &[u8]) -> Result<(), SectionError> {
        if data.len() as u64 > self.max_size() {
            return Err(SectionError::TooBig);
        }
        let old = self.live(id).ok_or(SectionError::NotExist)?.data.len() as u64;
        let new = data.len() as u64;
        if new > old && self.used() + (new - old) > self.attrs.checkpoint_size {
            return Err(SectionError::NoResources);
        }
        if let Some(s) = self.sections.get_mut(id) {
            s.data = data.to_vec();
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, elems: &[WriteOp]) -> Result<(), VectorError> {
        let max = self.max_size();
        for (index, e) in elems.iter().enumerate() {
            let fail = |kind| Err(VectorError { index, kind });
            if e.data.len() as u64 > max {
                return fail(SectionError::TooBig);
            }
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
            let bytes = staged.entry(e.id.clone()).or_insert_with(|| {
                self.sections
                    .get(&e.id)
                    .map(|s| s.data.clone())
                    .unwrap_or_default()
            });
            let (start, end) = (e.offset as usize, e.offset as usize + e.data.len());
            if end > bytes.len() {
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
        for (id, data) in staged {
            if let Some(s) = self.sections.get_mut(&id) {
                s.data = data;
            }
        }
        Ok(())
    }

    pub(crate) fn read(&self, r: &ReadOp) -> Result<Vec<u8>, SectionError> {
        let s = self.live(&r.id).ok_or(SectionError::NotExist)?;
        let size = s.data.len() as u64;
        if r.offset > size {
            return Err(bad_argument());
        }
        let n = (size - r.offset).min(r.len as u64) as usize;
        Ok(s.data[r.offset as usize..][..n].to_vec())
    }

    pub(crate) fn read_many(&self, elems: &[ReadOp]) -> Result<Vec<Vec<u8>>, VectorError> {
        elems
            .iter()
            .enumerate()
            .map(|(index, r)| self.read(r).map_err(|kind| VectorError { index, kind }))
            .collect()
    }

    /// Expiration and size of a live section.
    pub(crate) fn info(&self, id: &[u8]) -> Result<(i64, u64), SectionError> {
        let s = self.live(id).ok_or(SectionError::NotExist)?;
        Ok((s.expiration, s.data.len() as u64))
    }

    pub(crate) fn list(&self, filter: SectionFilter) -> Vec<(Vec<u8>, i64, u64)> {
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

    pub(crate) fn reap(&mut self, now: i64) -> usize {
        let before = self.sections.len();
        self.sections
            .retain(|_, s| s.expiration == TIME_END || s.expiration > now);
        before - self.sections.len()
    }
}
