//! One data-path operation over many sections of one size: the cells of `ckpt bench`'s
//! throughput and latency sweeps.
//!
//! Unlike a [`crate::DataCase`] (one section, the fair-baseline geometry), a [`SweepCase`]
//! spreads its calls over `n` sections in a fixed pseudo-random rotation, so the working
//! set grows with `n` the way an application's does; and its replica has few spare slots
//! ([`SweepCase::limits`]), so that a 16 MiB section costs 9 slots, not the default 65.

use core::hint::black_box;

use ckpt_engine::{ReplicaAttributes, ReplicaLimits, TIME_END, WriteElement};

use crate::{Arena, BenchDomain, Op, PageBuf, SetupError, attributes, section_id};

/// Bytes of the replica object that [`ckpt_engine::Replica::create`] makes for `attrs`
/// and `limits`: an upper bound of the layout in engine/DESIGN.md (slots, slot metadata,
/// descriptors, ids, index, agents, journal, header), within a few pages plus 192 bytes
/// a slot. The engine has no public function for the exact figure; a benchmark must know
/// before it creates, because tmpfs pages beyond the memory limit are an OOM kill, not an
/// error.
pub fn estimated_object_size(attrs: &ReplicaAttributes, limits: &ReplicaLimits) -> u64 {
    let sections = u64::from(attrs.max_sections.max(1));
    let agents = u64::from(limits.agents.max(1)).div_ceil(64) * 64;
    let spares = if limits.spare_slots == 0 {
        (agents / 2).clamp(8, 64)
    } else {
        u64::from(limits.spare_slots)
    };
    let slots = sections + spares;
    let stride = attrs.max_section_size.max(1).div_ceil(64) * 64;
    let id = attrs.max_section_id_size.max(8).div_ceil(8) * 8;
    let journal = u64::from(limits.journal_cells.max(64)).next_power_of_two();
    // Slot metadata holds a pin bit per agent: 64 bytes up to 2048 agents, then more.
    let slot_meta = 64 + 8 * agents.div_ceil(64);
    let bytes = slots.saturating_mul(stride + slot_meta + 64)
        + sections * (64 + id + 16)
        + agents * 128
        + journal * 48
        + 64 * 1024;
    bytes.div_ceil(4096) * 4096
}

/// `op` at `size` bytes over `sections` sections of one replica, in rotation.
///
/// - [`Op::Overwrite`]: the whole `size`-byte section;
/// - [`Op::Read`]: a copy-out of the whole `size`-byte section;
/// - [`Op::WriteAt`]: `size` bytes at offset `size / 2` of a `2 * size`-byte section.
///
/// `size` is what the caller moves, the figure a throughput is computed from.
#[derive(Debug)]
pub struct SweepCase {
    op: Op,
    size: usize,
    sections: u32,
    arena: Arena,
    payload: PageBuf,
    out: PageBuf,
    next: u64,
}

/// The rotation's step: odd, so adding it modulo a power of two visits every section.
const STEP: u64 = 0x9e37_79b9;

impl SweepCase {
    /// The operations a sweep covers, in report order.
    pub const OPS: [Op; 3] = [Op::WriteAt, Op::Overwrite, Op::Read];

    /// The engine limits of a sweep replica: 64 agents, 8 spare slots.
    pub fn limits() -> ReplicaLimits {
        ReplicaLimits {
            agents: 64,
            spare_slots: 8,
            ..ReplicaLimits::default()
        }
    }

    /// The replica attributes of the case: room for `sections` sections of the size `op`
    /// works on (at least 2: `maxSections` 1 would mean the default section only).
    pub fn attributes(op: Op, size: usize, sections: u32) -> ReplicaAttributes {
        let section = if op == Op::WriteAt { 2 * size } else { size };
        attributes(sections.max(2), section as u64)
    }

    /// An upper bound of the bytes the case takes in `/dev/shm` (and so in memory).
    pub fn estimated_bytes(op: Op, size: usize, sections: u32) -> u64 {
        estimated_object_size(&Self::attributes(op, size, sections), &Self::limits())
    }

    /// Creates the replica and all `sections` sections (a power of two), each filled.
    ///
    /// # Panics
    /// If `op` is not one of [`Self::OPS`] or `sections` is not a power of two.
    pub fn new(
        domain: &BenchDomain,
        op: Op,
        size: usize,
        sections: u32,
    ) -> Result<Self, SetupError> {
        assert!(Self::OPS.contains(&op), "a sweep does not do {op}");
        assert!(sections.is_power_of_two(), "{sections} sections");
        let attrs = Self::attributes(op, size, sections);
        let arena = domain.arena_with(&attrs, Self::limits())?;
        let initial = vec![0x11; attrs.max_section_size as usize];
        for i in 0..u64::from(sections) {
            arena.create_section(Some(&section_id(i)), TIME_END, &initial)?;
        }
        Ok(Self {
            op,
            size,
            sections,
            arena,
            payload: PageBuf::new(size, 0x22),
            out: PageBuf::new(size, 0),
            next: 0,
        })
    }

    /// The operation.
    pub fn op(&self) -> Op {
        self.op
    }

    /// Bytes the caller moves per call.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sections in the rotation.
    pub fn sections(&self) -> u32 {
        self.sections
    }

    /// Bytes the replica object takes.
    pub fn object_size(&self) -> u64 {
        self.arena.object_size()
    }

    /// Runs the operation once, on the next section of the rotation. Panics if the engine
    /// refuses it: a benchmark must not time an error path by accident.
    #[inline]
    pub fn run(&mut self) {
        self.next = (self.next + STEP) & u64::from(self.sections - 1);
        let id = section_id(self.next);
        let r = self.arena.replica();
        let result = match self.op {
            Op::Overwrite => r.overwrite(black_box(&id), black_box(&self.payload[..])),
            Op::Read => r
                .read(black_box(&id), 0, black_box(&mut self.out[..]))
                .map(|n| {
                    black_box(n);
                }),
            Op::WriteAt => r
                .write(&[WriteElement {
                    id: &id,
                    offset: black_box(self.size as u64 / 2),
                    data: black_box(&self.payload[..]),
                }])
                .map_err(|e| e.kind),
            Op::Borrow | Op::CreateDelete => unreachable!("checked in new"),
        };
        if let Err(e) = result {
            panic!("{} of {} B failed: {e}", self.op, self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sweep_op_runs_over_every_section() {
        let domain = BenchDomain::new().unwrap();
        for op in SweepCase::OPS {
            let mut sut = SweepCase::new(&domain, op, 64, 16).unwrap();
            for _ in 0..32 {
                sut.run();
            }
            assert_eq!(sut.arena.status().sections, 16, "{op}");
        }
    }

    #[test]
    fn the_size_estimate_bounds_the_real_object() {
        let domain = BenchDomain::new().unwrap();
        for (op, size, sections) in [
            (Op::Overwrite, 64, 1),
            (Op::Read, 1 << 20, 1),
            (Op::WriteAt, 4096, 16),
            (Op::Read, 65536, 4),
            (Op::Overwrite, 64, 4096),
        ] {
            let sut = SweepCase::new(&domain, op, size, sections).unwrap();
            let estimate = SweepCase::estimated_bytes(op, size, sections);
            assert!(
                sut.object_size() <= estimate,
                "{op} {size} x {sections}: {} > {estimate}",
                sut.object_size()
            );
            assert!(
                estimate <= sut.object_size() * 2 + (1 << 20),
                "{op} {size} x {sections}: estimate {estimate} far above {}",
                sut.object_size()
            );
        }
        for attrs in [attributes(2, 4096), attributes(1000, 64)] {
            let sut = domain.arena(&attrs).unwrap();
            assert!(sut.object_size() <= estimated_object_size(&attrs, &Default::default()));
        }
    }
}
