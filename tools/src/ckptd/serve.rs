//! Checkpoint operations ckptd performs for others (`Remote` frames, transport/DESIGN.md
//! §7): writes it orders as the primary's daemon, and reads of the replica it holds.
//! Pure functions over a [`Replica`]; the event loop decides where an operation runs.

use ckpt_engine::{
    Change, Changes, Replica, SectionError, SectionFilter, VectorError, WriteElement,
};
use ckpt_transport::wire::{ArrivalItem, RemoteOp, RemoteResult, SectionEntry};

/// Most journal changes one answer to [`RemoteOp::Changes`] covers.
const CHANGES_BATCH: usize = 1024;
/// Most bytes of section ids one answer to [`RemoteOp::Changes`] carries (ids may be long;
/// the frame stays far below the wire's limit).
const CHANGES_ID_BYTES: usize = 1 << 20;

/// `SaAisErrorT` values of remote answers.
pub mod code {
    /// SA_AIS_ERR_LIBRARY
    pub const LIBRARY: u32 = 2;
    /// SA_AIS_ERR_TIMEOUT
    pub const TIMEOUT: u32 = 5;
    /// SA_AIS_ERR_TRY_AGAIN
    pub const TRY_AGAIN: u32 = 6;
    /// SA_AIS_ERR_INVALID_PARAM
    pub const INVALID_PARAM: u32 = 7;
    /// SA_AIS_ERR_NOT_EXIST
    pub const NOT_EXIST: u32 = 12;
    /// SA_AIS_ERR_EXIST
    pub const EXIST: u32 = 14;
    /// SA_AIS_ERR_NO_SPACE
    pub const NO_SPACE: u32 = 15;
    /// SA_AIS_ERR_NO_RESOURCES
    pub const NO_RESOURCES: u32 = 18;
    /// SA_AIS_ERR_BAD_OPERATION
    pub const BAD_OPERATION: u32 = 20;
    /// SA_AIS_ERR_FAILED_OPERATION: a synchronize whose caller's writes were lost with a
    /// deposed primary.
    pub const FAILED_OPERATION: u32 = 21;
}

/// The `SaAisErrorT` of an engine error.
pub fn section_code(e: SectionError) -> u32 {
    match e {
        SectionError::BadArgument(_) | SectionError::TooBig => code::INVALID_PARAM,
        SectionError::Exists => code::EXIST,
        SectionError::NoResources => code::NO_RESOURCES,
        SectionError::NoSpace => code::NO_SPACE,
        SectionError::NotExist => code::NOT_EXIST,
        SectionError::NotPrimary | SectionError::TryAgain => code::TRY_AGAIN,
        _ => code::LIBRARY,
    }
}

fn failed(e: SectionError) -> RemoteResult {
    RemoteResult::Failed {
        code: section_code(e),
        index: None,
    }
}

fn failed_at(e: VectorError) -> RemoteResult {
    RemoteResult::Failed {
        code: section_code(e.kind),
        index: u32::try_from(e.index).ok(),
    }
}

/// Whether `op` changes the checkpoint (and so must run where writes are ordered).
pub fn is_write(op: &RemoteOp) -> bool {
    matches!(
        op,
        RemoteOp::Write { .. }
            | RemoteOp::Overwrite { .. }
            | RemoteOp::CreateSection { .. }
            | RemoteOp::DeleteSection { .. }
            | RemoteOp::SetExpiration { .. }
    )
}

/// Applies the write `op` to `replica` whatever its role (the caller is the daemon that
/// orders this checkpoint's writes). Returns the answer and, when it changed something,
/// the operation as it must be replayed elsewhere to give the same state (a generated
/// section id made explicit).
pub fn apply_write(replica: &Replica, op: &RemoteOp) -> (RemoteResult, Option<RemoteOp>) {
    let a = replica.applier();
    match op {
        RemoteOp::Write { elems } => {
            let es: Vec<WriteElement<'_>> = elems
                .iter()
                .map(|e| WriteElement {
                    id: &e.id,
                    offset: e.offset,
                    data: &e.data,
                })
                .collect();
            match a.write_many(&es) {
                Ok(()) => (RemoteResult::Done, Some(op.clone())),
                Err(e) => (failed_at(e), None),
            }
        }
        RemoteOp::Overwrite { id, data } => match a.overwrite(id, data) {
            Ok(()) => (RemoteResult::Done, Some(op.clone())),
            Err(e) => (failed(e), None),
        },
        RemoteOp::CreateSection {
            id,
            expiration,
            data,
        } => match a.create_section(id.as_deref(), *expiration, data) {
            Ok(made) => (
                RemoteResult::Created { id: made.clone() },
                Some(RemoteOp::CreateSection {
                    id: Some(made),
                    expiration: *expiration,
                    data: data.clone(),
                }),
            ),
            Err(e) => (failed(e), None),
        },
        RemoteOp::DeleteSection { id } => match a.delete(id) {
            Ok(true) => (RemoteResult::Done, Some(op.clone())),
            Ok(false) => (failed(SectionError::NotExist), None),
            Err(e) => (failed(e), None),
        },
        RemoteOp::SetExpiration { id, expiration } => match a.set_expiration(id, *expiration) {
            Ok(()) => (RemoteResult::Done, Some(op.clone())),
            Err(e) => (failed(e), None),
        },
        _ => (
            RemoteResult::Failed {
                code: code::INVALID_PARAM,
                index: None,
            },
            None,
        ),
    }
}

/// Answers a read-only `op` from `replica`. A read element of size 0 reads from its
/// offset to the end of the section.
pub fn read(replica: &Replica, op: &RemoteOp) -> RemoteResult {
    match op {
        RemoteOp::Read { elems } => {
            let mut items = Vec::with_capacity(elems.len());
            for (index, e) in elems.iter().enumerate() {
                if e.size == 0 {
                    // Size 0: from the offset to the end (a library-allocated buffer).
                    match replica.read_to_vec(&e.id) {
                        Ok(v) => match usize::try_from(e.offset).ok().filter(|o| *o <= v.len()) {
                            Some(o) => items.push(v[o..].to_vec()),
                            None => {
                                return RemoteResult::Failed {
                                    code: code::INVALID_PARAM,
                                    index: u32::try_from(index).ok(),
                                };
                            }
                        },
                        Err(k) => {
                            return RemoteResult::Failed {
                                code: section_code(k),
                                index: u32::try_from(index).ok(),
                            };
                        }
                    }
                    continue;
                }
                let Ok(size) = usize::try_from(e.size) else {
                    return RemoteResult::Failed {
                        code: code::INVALID_PARAM,
                        index: u32::try_from(index).ok(),
                    };
                };
                let max = replica.attributes().max_section_size;
                if e.size > max {
                    return RemoteResult::Failed {
                        code: code::INVALID_PARAM,
                        index: u32::try_from(index).ok(),
                    };
                }
                let mut buf = vec![0u8; size];
                match replica.read(&e.id, e.offset, &mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        items.push(buf);
                    }
                    Err(k) => {
                        return RemoteResult::Failed {
                            code: section_code(k),
                            index: u32::try_from(index).ok(),
                        };
                    }
                }
            }
            RemoteResult::Data { items }
        }
        RemoteOp::Sections { filter, time } => {
            let f = match filter {
                1 => SectionFilter::Forever,
                2 => SectionFilter::ExpiringAtOrBefore(*time),
                3 => SectionFilter::ExpiringAtOrAfter(*time),
                4 => SectionFilter::Corrupted,
                5 => SectionFilter::Any,
                _ => {
                    return RemoteResult::Failed {
                        code: code::INVALID_PARAM,
                        index: None,
                    };
                }
            };
            let items = replica
                .sections(f)
                .map(|s| SectionEntry {
                    id: s.id,
                    expiration: s.expiration,
                    size: s.size,
                    last_update: s.last_update,
                    state: 1, // SA_CKPT_SECTION_VALID
                })
                .collect();
            RemoteResult::Sections { items }
        }
        RemoteOp::Status => {
            let s = replica.status();
            RemoteResult::Status {
                sections: s.sections,
                memory_used: s.memory_used,
            }
        }
        _ => RemoteResult::Failed {
            code: code::INVALID_PARAM,
            index: None,
        },
    }
}

/// The answer to `Changes { since }` in primary term `term` when nothing came after it.
pub fn no_changes(term: u64, since: u64) -> RemoteResult {
    changes_answer(term, since, false, Vec::new())
}

fn changes_answer(term: u64, upto: u64, lapped: bool, items: Vec<ArrivalItem>) -> RemoteResult {
    RemoteResult::Changes {
        epoch: term,
        upto,
        lapped,
        items,
    }
}

/// The answer to `Changes { epoch, since }` from `replica`, the primary's replica in term
/// `term`; `None` while nothing was committed after `since` (the question waits).
///
/// Seqs count in one primary's journal, so a question in another term (or the first, in
/// term 0) gets where the journal is now, `lapped` unless it is the first: changes may
/// have been lost with the old primary. A `since` ahead of the journal is lapped too.
pub fn changes(replica: &Replica, term: u64, epoch: u64, since: u64) -> Option<RemoteResult> {
    let head = replica.commit_seq();
    if epoch != term {
        return Some(changes_answer(term, head, epoch != 0, Vec::new()));
    }
    if since > head {
        return Some(changes_answer(term, head, true, Vec::new()));
    }
    let mut out: Vec<Change> = Vec::new();
    let mut upto = match replica.changes_since(since, &mut out, CHANGES_BATCH) {
        Changes::Resync(from) => return Some(changes_answer(term, from, true, Vec::new())),
        Changes::UpTo(s) if s == since => return None,
        Changes::UpTo(s) => s,
    };
    let mut items: Vec<ArrivalItem> = Vec::new();
    let mut id_bytes = 0usize;
    for ch in &out {
        let Some((id, offset, size)) = ch.arrival() else {
            continue;
        };
        id_bytes += id.len();
        if id_bytes > CHANGES_ID_BYTES
            && let Some(last) = items.last()
        {
            // The rest comes with the next question.
            upto = last.seq;
            break;
        }
        items.push(ArrivalItem {
            seq: ch.seq,
            writer: ch.writer(),
            id: id.to_vec(),
            offset,
            size,
        });
    }
    Some(changes_answer(term, upto, false, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_engine::{ReplicaAttributes, ReplicaLimits, TIME_END};
    use proptest::prelude::*;

    /// Journal cells of the replica under test: small, so the ring laps.
    const CELLS: u64 = 64;
    const TERM: u64 = 7;

    #[derive(Clone, Debug)]
    enum Op {
        Create(u8, u8),
        Overwrite(u8, u8),
        Write(u8, u8, u8),
        Delete(u8),
        Expire(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..4u8, 1..16u8).prop_map(|(k, n)| Op::Create(k, n)),
            (0..4u8, 0..16u8).prop_map(|(k, n)| Op::Overwrite(k, n)),
            (0..4u8, 0..8u8, 1..8u8).prop_map(|(k, o, n)| Op::Write(k, o, n)),
            (0..4u8).prop_map(Op::Delete),
            (0..4u8).prop_map(Op::Expire),
        ]
    }

    /// One journal change as the model expects it: its section (id, incarnation) and,
    /// for an arrival, the offset and size reported.
    struct Expected {
        seq: u64,
        section: (u8, u32),
        arrival: Option<(u64, u64)>,
    }

    fn replica() -> Replica {
        let attrs = ReplicaAttributes {
            creation_flags: 2, // SA_CKPT_WR_ACTIVE_REPLICA
            checkpoint_size: 8 * 64,
            retention_ns: 0,
            max_sections: 8,
            max_section_size: 64,
            max_section_id_size: 8,
        };
        let limits = ReplicaLimits {
            journal_cells: CELLS as u32,
            ..ReplicaLimits::default()
        };
        Replica::create_in_memory(&attrs, &limits).expect("an in-memory replica")
    }

    /// Applies `ops` that the model says succeed (the others are skipped), returning the
    /// changes they made and the live incarnation of each section.
    fn run(r: &Replica, ops: &[Op]) -> (Vec<Expected>, [Option<u32>; 4]) {
        let mut live: [Option<u32>; 4] = [None; 4];
        let mut next = 0u32;
        let mut out = Vec::new();
        let mut note = |section, arrival| {
            out.push(Expected {
                seq: r.commit_seq(),
                section,
                arrival,
            });
        };
        for op in ops {
            match *op {
                Op::Create(k, n) if live[k as usize].is_none() => {
                    r.create_section(Some(&[b'a' + k]), TIME_END, &vec![k; n as usize])
                        .expect("create");
                    next += 1;
                    live[k as usize] = Some(next);
                    note((k, next), Some((0, u64::from(n))));
                }
                Op::Overwrite(k, n) if live[k as usize].is_some() => {
                    r.overwrite(&[b'a' + k], &vec![k; n as usize])
                        .expect("overwrite");
                    note((k, live[k as usize].unwrap()), Some((0, u64::from(n))));
                }
                Op::Write(k, o, n) if live[k as usize].is_some() => {
                    let size = r.section_info(&[b'a' + k]).expect("info").size;
                    let offset = u64::from(o).min(size);
                    let data = vec![k; n as usize];
                    r.write(&[WriteElement {
                        id: &[b'a' + k],
                        offset,
                        data: &data,
                    }])
                    .expect("write");
                    note((k, live[k as usize].unwrap()), Some((offset, u64::from(n))));
                }
                Op::Delete(k) if live[k as usize].is_some() => {
                    r.delete_section(&[b'a' + k]).expect("delete");
                    note((k, live[k as usize].take().unwrap()), None);
                }
                Op::Expire(k) if live[k as usize].is_some() => {
                    r.set_expiration(&[b'a' + k], TIME_END - 1)
                        .expect("expiration");
                    note((k, live[k as usize].unwrap()), None);
                }
                _ => {}
            }
        }
        (out, live)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// `changes` answers with exactly the arrivals after `since` whose section still
        /// lives, in order, up to the journal's head; lapped when the ring lapped `since`,
        /// when `since` is ahead of the journal or the term is another; nothing (the
        /// question waits) when nothing came after `since`.
        #[test]
        fn changes_are_the_live_arrivals_after_since_or_lapped(
            ops in proptest::collection::vec(op(), 0..150),
            pick in any::<u64>(),
            other_epoch in any::<bool>(),
        ) {
            let r = replica();
            let (expected, live) = run(&r, &ops);
            let head = r.commit_seq();
            let since = pick % (head + 2);
            let epoch = if other_epoch { TERM + 1 } else { TERM };
            let got = changes(&r, TERM, epoch, since);
            if other_epoch {
                prop_assert_eq!(got, Some(RemoteResult::Changes {
                    epoch: TERM, upto: head, lapped: true, items: vec![],
                }));
                return Ok(());
            }
            if since > head {
                prop_assert_eq!(got, Some(RemoteResult::Changes {
                    epoch: TERM, upto: head, lapped: true, items: vec![],
                }));
                return Ok(());
            }
            if since == head {
                prop_assert_eq!(got, None);
                return Ok(());
            }
            let Some(RemoteResult::Changes { epoch: e, upto, lapped, items }) = got else {
                return Err(TestCaseError::fail("not a Changes answer"));
            };
            prop_assert_eq!(e, TERM);
            if head - since > CELLS {
                prop_assert!(lapped, "the ring lapped seq {since} (head {head})");
                prop_assert!(items.is_empty());
                prop_assert!(upto > since && upto <= head);
                return Ok(());
            }
            prop_assert!(!lapped);
            prop_assert_eq!(upto, head);
            let want: Vec<(u64, Vec<u8>, u64, u64)> = expected
                .iter()
                .filter(|x| x.seq > since && live[x.section.0 as usize] == Some(x.section.1))
                .filter_map(|x| {
                    x.arrival.map(|(o, n)| (x.seq, vec![b'a' + x.section.0], o, n))
                })
                .collect();
            let got: Vec<(u64, Vec<u8>, u64, u64)> = items
                .into_iter()
                .map(|i| (i.seq, i.id, i.offset, i.size))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
