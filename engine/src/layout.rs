//! Byte layout of a replica object: the immutable header image, the geometry derived from
//! it, and the word encodings shared by every region. `engine/DESIGN.md` is the prose
//! version of this file; keep the two in step.

use crate::error::AttachError;

/// First eight bytes of every replica object.
pub(crate) const REPLICA_MAGIC: [u8; 8] = *b"CKPTREP\0";
/// Bumped on every incompatible change of the layout. 0 means "not yet initialised".
pub(crate) const LAYOUT_VERSION: u32 = 3;
/// The header occupies the first page.
pub(crate) const HEADER_SIZE: u64 = 4096;
/// Offset of the mutable (atomic) part of the header.
pub(crate) const HEADER_DYNAMIC: u64 = 1024;
/// Bytes per agent record.
pub(crate) const AGENT_SIZE: u64 = 128;
/// Bytes per section descriptor.
pub(crate) const DESC_SIZE: u64 = 64;
/// Bytes per journal cell.
pub(crate) const CELL_SIZE: u64 = 48;
/// Pins an agent may hold at once (borrows + an in-progress copy-out read).
pub(crate) const PINS_PER_AGENT: usize = 7;
/// "No slot" / "no descriptor".
pub(crate) const NONE: u32 = u32::MAX;

/// Hard caps on the geometry; attach refuses anything larger, so arithmetic on validated
/// values cannot overflow.
pub(crate) const MAX_SECTIONS_CAP: u64 = 1 << 26;
pub(crate) const MAX_AGENTS_CAP: u64 = 4096;
pub(crate) const MAX_JOURNAL_CAP: u64 = 1 << 22;
pub(crate) const MAX_ID_SIZE_CAP: u64 = 1 << 16;
pub(crate) const MAX_OBJECT_SIZE: u64 = 1 << 46;

/// The immutable part of the header, written once before the version store publishes it.
/// Read into process-local memory at attach; never referenced in place afterwards.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderImage {
    pub(crate) magic: [u8; 8],
    /// Written last, with `SeqCst` (the SYNC POINT of creation).
    pub(crate) layout_version: u32,
    pub(crate) header_size: u32,
    pub(crate) total_size: u64,
    pub(crate) instance: u64,
    pub(crate) hash_seed: u64,
    pub(crate) created_ns: i64,
    // Creation attributes (SaCkptCheckpointCreationAttributesT).
    pub(crate) creation_flags: u32,
    pub(crate) max_sections: u32,
    pub(crate) checkpoint_size: u64,
    pub(crate) retention_ns: i64,
    pub(crate) max_section_size: u64,
    pub(crate) max_section_id_size: u64,
    // Geometry.
    pub(crate) agent_capacity: u32,
    pub(crate) pin_words: u32,
    pub(crate) slot_count: u32,
    pub(crate) index_capacity: u32,
    pub(crate) journal_capacity: u32,
    pub(crate) id_stride: u32,
    pub(crate) slot_meta_stride: u32,
    /// Checksum of every other field (see [`HeaderImage::checksum`]).
    pub(crate) checksum: u32,
    pub(crate) slot_stride: u64,
    pub(crate) off_agents: u64,
    pub(crate) off_descs: u64,
    pub(crate) off_ids: u64,
    pub(crate) off_index: u64,
    pub(crate) off_slot_meta: u64,
    pub(crate) off_slot_hint: u64,
    pub(crate) off_desc_hint: u64,
    pub(crate) off_journal: u64,
    pub(crate) off_slots: u64,
}

const _: () = assert!(size_of::<HeaderImage>() == 200);
const _: () = assert!(core::mem::offset_of!(HeaderImage, layout_version) == 8);
const _: () = assert!((size_of::<HeaderImage>() as u64) < HEADER_DYNAMIC);

/// Offsets of the mutable header words (from the object's start). Each contended group
/// sits on its own cache line.
pub(crate) mod hdr {
    use super::HEADER_DYNAMIC as D;
    pub(crate) const ROLE: u64 = D; // u64: 1 primary, 2 replica
    pub(crate) const TERM: u64 = D + 8;
    // Replication position (DESIGN.md §18): a double buffer of (term, seq) pairs; the
    // selector counts publishes and its low bit names the current pair.
    pub(crate) const APPLIED_SELECT: u64 = D + 16;
    pub(crate) const APPLIED_TERM: [u64; 2] = [D + 24, D + 40];
    pub(crate) const APPLIED_SEQ: [u64; 2] = [D + 32, D + 48];
    pub(crate) const HEAD_SEQ: u64 = D + 64; // highest claimed journal seq (commit_seq)
    pub(crate) const ACKED_SEQ: u64 = D + 128; // highest seq every replica acked (ckptd)
    pub(crate) const STORED_BYTES: u64 = D + 192;
    pub(crate) const BUDGET_DIRTY: u64 = D + 200;
    pub(crate) const STRUCT_LOCK: u64 = D + 256; // owner word, 0 = free
    pub(crate) const INDEX_SEQ: u64 = D + 264; // seqcount, odd while the index changes
    pub(crate) const SECTION_COUNT: u64 = D + 272;
    pub(crate) const TOMBSTONES: u64 = D + 280;
    pub(crate) const GENERATED_IDS: u64 = D + 288;
    pub(crate) const MULTI_OWNER: u64 = D + 320; // owner of an in-progress multi-section publish
    pub(crate) const MULTI_SEQ: u64 = D + 328; // seqcount, odd while one publishes
    pub(crate) const NOTIFY: u64 = D + 384; // u32 futex word
    pub(crate) const WAITERS: u64 = D + 388; // u32 count of futex waiters
    pub(crate) const ACK_NOTIFY: u64 = D + 448; // u32 futex word of wait_for_acked
    pub(crate) const ACK_WAITERS: u64 = D + 452; // u32 count of wait_for_acked waiters
}

// The replication position shares the ROLE/TERM cache line (written by the node daemon
// only); the acknowledgement futex has a line of its own.
const _: () = assert!(hdr::APPLIED_SEQ[1] + 8 <= hdr::ROLE + 64);
const _: () = assert!(hdr::ACK_NOTIFY.is_multiple_of(64) && hdr::ACK_NOTIFY > hdr::WAITERS);

/// Agent record word offsets (from the record's start).
pub(crate) mod agent {
    pub(crate) const STATE: u64 = 0;
    pub(crate) const PID: u64 = 8;
    pub(crate) const OP: u64 = 16;
    pub(crate) const OP_DESC: u64 = 24;
    pub(crate) const OP_SLOTS: u64 = 32;
    pub(crate) const OP_DELTA: u64 = 40;
    pub(crate) const INTENT: u64 = 48; // kind << 32 | index of a slot (1) or descriptor (2) being claimed
    pub(crate) const WAITING: u64 = 56; // bit 0: in wait_for_changes; bit 1: in wait_for_acked
    pub(crate) const PINS: u64 = 64; // PINS_PER_AGENT words: slot | count << 32
    pub(crate) const SPARE: u64 = 120; // the slot this agent keeps CACHED, or NONE
}
const _: () = assert!(
    agent::PINS + 8 * PINS_PER_AGENT as u64 <= agent::SPARE && agent::SPARE + 8 <= AGENT_SIZE
);

/// Descriptor word offsets.
pub(crate) mod desc {
    pub(crate) const CURRENT: u64 = 0; // gen << 32 | slot
    pub(crate) const STATE: u64 = 8; // kind | owner << 8
    pub(crate) const LEASE: u64 = 16; // owner word, 0 = free
    pub(crate) const EXPIRATION: u64 = 24; // i64 ns since the epoch
    pub(crate) const KEY: u64 = 32; // id length << 48 | 48-bit hash of the id
}

/// Slot metadata word offsets.
pub(crate) mod meta {
    pub(crate) const STATE: u64 = 0;
    pub(crate) const SIZE: u64 = 8;
    pub(crate) const VERSION: u64 = 16;
    pub(crate) const LAST_UPDATE: u64 = 24;
    pub(crate) const TXN: u64 = 32; // next slot of the transaction | desc << 32
    pub(crate) const TXN_OLD: u64 = 40; // old slot | gen << 32
    pub(crate) const PINS: u64 = 48;
}

/// Word kinds shared by descriptor and slot state words.
pub(crate) const KIND_FREE: u64 = 0;
pub(crate) const KIND_OWNED: u64 = 1;
pub(crate) const KIND_LIVE: u64 = 2;
/// Slot: superseded, waiting for pins to drain. Descriptor: being deleted.
pub(crate) const KIND_RETIRED: u64 = 3;
/// Slot only: free, but kept by the agent named in the payload (its `SPARE`) for its next
/// write; any allocator may take it over by CAS when the pool runs dry.
pub(crate) const KIND_CACHED: u64 = 4;

#[inline]
pub(crate) const fn state_word(kind: u64, payload: u64) -> u64 {
    kind | (payload << 8)
}
#[inline]
pub(crate) const fn state_kind(word: u64) -> u64 {
    word & 0xff
}
#[inline]
pub(crate) const fn state_payload(word: u64) -> u64 {
    word >> 8
}

/// `desc.current`: generation and slot in one word, so one load validates both.
#[inline]
pub(crate) const fn current_word(generation: u32, slot: u32) -> u64 {
    ((generation as u64) << 32) | slot as u64
}
#[inline]
pub(crate) const fn current_gen(word: u64) -> u32 {
    (word >> 32) as u32
}
#[inline]
pub(crate) const fn current_slot(word: u64) -> u32 {
    word as u32
}

/// What the caller asks for when creating a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAttributes {
    /// `SaCkptCheckpointCreationFlagsT`.
    pub creation_flags: u32,
    /// Budget of stored bytes (`checkpointSize`).
    pub checkpoint_size: u64,
    /// `retentionDuration`, in nanoseconds.
    pub retention_ns: i64,
    /// `maxSections`; 1 means a single default section.
    pub max_sections: u32,
    /// `maxSectionSize`.
    pub max_section_size: u64,
    /// `maxSectionIdSize`.
    pub max_section_id_size: u64,
}

/// Engine-side sizing of a replica object beyond the standard's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaLimits {
    /// Threads (across all processes) that may use the replica at once. Rounded up to 64.
    pub agents: u32,
    /// Spare slots beyond `max_sections`: bounds concurrent writers plus pinned old versions.
    pub spare_slots: u32,
    /// Journal cells (rounded up to a power of two).
    pub journal_cells: u32,
}

impl Default for ReplicaLimits {
    fn default() -> Self {
        Self {
            agents: 128,
            spare_slots: 0,
            journal_cells: 4096,
        }
    }
}

/// Bytes a replica object with these attributes and limits takes (`None`: out of the
/// ranges a create accepts). What a create reserves, for budgets kept outside a file
/// system (a sealed node's memfds).
pub fn object_size(attrs: &ReplicaAttributes, limits: &ReplicaLimits) -> Option<u64> {
    compute_image(attrs, limits, 0, 0, 0).map(|img| img.total_size)
}

/// Geometry computed from attributes and limits. Pure arithmetic; checked.
pub(crate) fn compute_image(
    attrs: &ReplicaAttributes,
    limits: &ReplicaLimits,
    instance: u64,
    hash_seed: u64,
    created_ns: i64,
) -> Option<HeaderImage> {
    let max_sections = u64::from(attrs.max_sections);
    if max_sections == 0 || max_sections > MAX_SECTIONS_CAP {
        return None;
    }
    if attrs.max_section_id_size > MAX_ID_SIZE_CAP {
        return None;
    }
    let agents = u64::from(limits.agents.max(1)).div_ceil(64) * 64;
    if agents > MAX_AGENTS_CAP {
        return None;
    }
    let pin_words = agents / 64;
    // Default spares: enough for every agent to hold one old version pinned while one
    // writer per agent has a slot in flight, capped so huge arenas stay affordable.
    let spares = if limits.spare_slots == 0 {
        (agents / 2).clamp(8, 64)
    } else {
        u64::from(limits.spare_slots)
    };
    let slot_count = max_sections.checked_add(spares)?;
    if slot_count >= u64::from(NONE) {
        return None;
    }
    let journal = u64::from(limits.journal_cells.max(64)).next_power_of_two();
    if journal > MAX_JOURNAL_CAP {
        return None;
    }
    let index_capacity = (max_sections * 2).next_power_of_two().max(16);
    let id_stride = attrs.max_section_id_size.max(8).div_ceil(8) * 8;
    let slot_meta_stride = (meta::PINS + 8 * pin_words).div_ceil(64) * 64;
    let slot_stride = attrs.max_section_size.max(1).div_ceil(64).checked_mul(64)?;
    let hint_words = |n: u64| {
        let l0 = n.div_ceil(64);
        l0 + l0.div_ceil(64)
    };

    let mut off = HEADER_SIZE;
    let mut take = |len: u64, align: u64| -> Option<u64> {
        let start = off.div_ceil(align) * align;
        off = start.checked_add(len)?;
        Some(start)
    };
    let off_agents = take(agents * AGENT_SIZE, 64)?;
    let off_descs = take(max_sections * DESC_SIZE, 64)?;
    let off_ids = take(max_sections.checked_mul(id_stride)?, 64)?;
    let off_index = take(index_capacity * 4, 64)?;
    let off_slot_meta = take(slot_count * slot_meta_stride, 64)?;
    let off_slot_hint = take(hint_words(slot_count) * 8, 64)?;
    let off_desc_hint = take(hint_words(max_sections) * 8, 64)?;
    let off_journal = take(journal * CELL_SIZE, 64)?;
    let off_slots = take(slot_count.checked_mul(slot_stride)?, 4096)?;
    let total_size = off.div_ceil(4096) * 4096;
    if total_size > MAX_OBJECT_SIZE {
        return None;
    }
    let mut img = HeaderImage {
        magic: REPLICA_MAGIC,
        layout_version: LAYOUT_VERSION,
        header_size: HEADER_SIZE as u32,
        total_size,
        instance,
        hash_seed,
        created_ns,
        creation_flags: attrs.creation_flags,
        max_sections: attrs.max_sections,
        checkpoint_size: attrs.checkpoint_size,
        retention_ns: attrs.retention_ns,
        max_section_size: attrs.max_section_size,
        max_section_id_size: attrs.max_section_id_size,
        agent_capacity: agents as u32,
        pin_words: pin_words as u32,
        slot_count: slot_count as u32,
        index_capacity: index_capacity as u32,
        journal_capacity: journal as u32,
        id_stride: id_stride as u32,
        slot_meta_stride: slot_meta_stride as u32,
        checksum: 0,
        slot_stride,
        off_agents,
        off_descs,
        off_ids,
        off_index,
        off_slot_meta,
        off_slot_hint,
        off_desc_hint,
        off_journal,
        off_slots,
    };
    img.checksum = img.checksum();
    Some(img)
}

impl HeaderImage {
    /// A 32-bit checksum over every field but itself, so a change to a field that does not
    /// feed the geometry (instance, hash seed, attributes hidden by rounding) is caught.
    pub(crate) fn checksum(&self) -> u32 {
        let words = [
            u64::from_le_bytes(self.magic),
            u64::from(self.layout_version) | (u64::from(self.header_size) << 32),
            self.total_size,
            self.instance,
            self.hash_seed,
            self.created_ns as u64,
            u64::from(self.creation_flags) | (u64::from(self.max_sections) << 32),
            self.checkpoint_size,
            self.retention_ns as u64,
            self.max_section_size,
            self.max_section_id_size,
            u64::from(self.agent_capacity) | (u64::from(self.pin_words) << 32),
            u64::from(self.slot_count) | (u64::from(self.index_capacity) << 32),
            u64::from(self.journal_capacity) | (u64::from(self.id_stride) << 32),
            u64::from(self.slot_meta_stride),
            self.slot_stride,
            self.off_agents,
            self.off_descs,
            self.off_ids,
            self.off_index,
            self.off_slot_meta,
            self.off_slot_hint,
            self.off_desc_hint,
            self.off_journal,
            self.off_slots,
        ];
        let h = words.iter().fold(0x243f_6a88_85a3_08d3u64, |h, &w| {
            let p = u128::from(h ^ w) * 0x9e37_79b9_7f4a_7c15u128;
            (p as u64) ^ ((p >> 64) as u64)
        });
        (h ^ (h >> 32)) as u32
    }

    /// Checks every field of an image read from an untrusted object: recomputing the
    /// geometry from the attributes must give back exactly the stored image.
    pub(crate) fn validate(&self, object_len: u64) -> Result<(), AttachError> {
        if self.magic != REPLICA_MAGIC {
            return Err(AttachError::BadMagic);
        }
        if self.layout_version != LAYOUT_VERSION {
            return Err(AttachError::UnsupportedVersion(self.layout_version));
        }
        if self.total_size != object_len {
            return Err(AttachError::SizeMismatch {
                header: self.total_size,
                object: object_len,
            });
        }
        let attrs = self.attributes();
        let limits = ReplicaLimits {
            agents: self.agent_capacity,
            spare_slots: self.slot_count.wrapping_sub(self.max_sections),
            journal_cells: self.journal_capacity,
        };
        if attrs.max_sections == 0
            || attrs.max_section_size == 0
            || attrs.retention_ns < 0
            || u64::from(attrs.max_sections)
                .checked_mul(attrs.max_section_size)
                .is_none_or(|cap| attrs.checkpoint_size > cap)
        {
            return Err(AttachError::CorruptHeader(
                "creation attributes out of range",
            ));
        }
        if self.checksum != self.checksum() {
            return Err(AttachError::CorruptHeader("header checksum mismatch"));
        }
        if self.slot_count <= self.max_sections {
            return Err(AttachError::CorruptHeader("slot count below max sections"));
        }
        let expect = compute_image(
            &attrs,
            &limits,
            self.instance,
            self.hash_seed,
            self.created_ns,
        )
        .ok_or(AttachError::CorruptHeader("geometry out of range"))?;
        if expect != *self {
            return Err(AttachError::CorruptHeader(
                "geometry does not match attributes",
            ));
        }
        Ok(())
    }

    pub(crate) fn attributes(&self) -> ReplicaAttributes {
        ReplicaAttributes {
            creation_flags: self.creation_flags,
            checkpoint_size: self.checkpoint_size,
            retention_ns: self.retention_ns,
            max_sections: self.max_sections,
            max_section_size: self.max_section_size,
            max_section_id_size: self.max_section_id_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> ReplicaAttributes {
        ReplicaAttributes {
            creation_flags: 2,
            checkpoint_size: 100 * 4096,
            retention_ns: 0,
            max_sections: 100,
            max_section_size: 4096,
            max_section_id_size: 32,
        }
    }

    #[test]
    fn computed_image_validates_against_its_own_size() {
        let img = compute_image(&attrs(), &ReplicaLimits::default(), 7, 9, 0).unwrap();
        assert_eq!(img.validate(img.total_size), Ok(()));
        assert!(img.off_slots.is_multiple_of(4096));
        assert!(img.total_size >= img.off_slots + u64::from(img.slot_count) * img.slot_stride);
    }

    #[test]
    fn image_with_a_changed_offset_is_rejected() {
        let mut img = compute_image(&attrs(), &ReplicaLimits::default(), 7, 9, 0).unwrap();
        img.off_index += 8;
        assert!(matches!(
            img.validate(img.total_size),
            Err(AttachError::CorruptHeader(_))
        ));
    }

    #[test]
    fn zero_sections_or_huge_geometry_is_refused() {
        let mut a = attrs();
        a.max_sections = 0;
        assert!(compute_image(&a, &ReplicaLimits::default(), 1, 1, 0).is_none());
        let mut a = attrs();
        a.max_section_size = u64::MAX / 2;
        assert!(compute_image(&a, &ReplicaLimits::default(), 1, 1, 0).is_none());
    }
}
