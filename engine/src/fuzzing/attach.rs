//! `arena_attach`: arbitrary bytes as a replica object file, attached and then read with
//! every read-only call. Also the scratch domains the file-backed targets use, and the
//! read-only sweep with its bounds checks, which `arena_ops` reuses on mutated arenas.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use crate::sync::{AtomicU64, Ordering::Relaxed};
use crate::{ChangeKind, Changes, Replica, SectionFilter, Sharing, TIME_END};

/// The largest object a short input is zero-extended to (see [`object_bytes`]).
const MAX_EXTENDED: u64 = 1 << 20;
/// The file name the attach target writes its input to.
const OBJECT: &str = "r-fuzz";

static SCRATCH_SEQ: AtomicU64 = AtomicU64::new(0);
static SWEEP_STALE: Once = Once::new();

thread_local! {
    static SCRATCH: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("ckpt-fuzz")
    } else {
        std::env::temp_dir().join("ckpt-fuzz")
    }
}

/// This thread's scratch domain, `/dev/shm/ckpt-fuzz/p<pid>-<n>`: a private domain
/// directory made on first use. The first use in a process also removes the scratch
/// domains of processes that are gone (a fuzzer exits without cleaning up).
pub(crate) fn scratch_domain() -> PathBuf {
    SCRATCH.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                let base = scratch_base();
                SWEEP_STALE.call_once(|| remove_stale(&base));
                let dir = base.join(format!(
                    "p{}-{}",
                    std::process::id(),
                    SCRATCH_SEQ.fetch_add(1, Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&dir);
                if let Err(e) = crate::domain::ensure_domain(&dir) {
                    panic!("fuzz scratch domain {}: errno {e}", dir.display());
                }
                dir
            })
            .clone()
    })
}

fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix('p'))
            .and_then(|n| n.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes this thread's scratch domain (the replay tests call it when done).
pub fn cleanup() {
    if let Some(dir) = SCRATCH.with(|s| s.borrow_mut().take()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The length of the object made from `data`: both the replica and the registry format
/// keep their total size in the `u64` at byte 16. When that names a size from the input's
/// length up to 1 MiB, the input is zero-extended to it, so seeds need not carry the long
/// runs of zeros a fresh object is mostly made of. Otherwise the object is the input as it
/// is, and a mismatch is the engine's to find.
pub(crate) fn object_len(data: &[u8]) -> u64 {
    let claimed = data
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes);
    match claimed {
        Some(c) if c >= data.len() as u64 && c <= MAX_EXTENDED => c,
        _ => data.len() as u64,
    }
}

/// Writes `data` (extended as [`object_len`] says) to `path`, mode 0600, replacing any file.
pub(crate) fn plant(path: &Path, data: &[u8]) -> std::io::Result<std::fs::File> {
    let _ = std::fs::remove_file(path);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.set_len(object_len(data))?;
    Ok(f)
}

/// The `arena_attach` target: `data` as a replica object. Attach must refuse it or give a
/// replica on which every read-only call returns an error or in-bounds bytes, without
/// panicking, hanging or faulting.
pub fn arena_attach(data: &[u8]) {
    let domain = scratch_domain();
    if let Err(e) = plant(&domain.join(OBJECT), data) {
        panic!("cannot write the fuzz object: {e}");
    }
    let got = Replica::attach(&domain, OBJECT, Sharing::default());
    // The mapping outlives the name.
    let _ = Replica::remove(&domain, OBJECT);
    match got {
        Ok(r) => check_read_only(&r, &[]),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Ids every sweep probes besides those the iteration finds: the default section's, a
/// short one, and one past any `maxSectionIdSize`.
fn probe_ids(max_id: u64) -> Vec<Vec<u8>> {
    let long = usize::try_from(max_id.saturating_add(1)).unwrap_or(usize::MAX);
    vec![Vec::new(), b"a".to_vec(), vec![b'a'; long.min(1 << 16)]]
}

/// Every read-only call on `r`, checking that whatever comes back is within the bounds the
/// attributes set: sizes at most `maxSectionSize`, ids at most `maxSectionIdSize`, counts
/// at most `maxSections`, journal records inside a section. Borrowed bytes are all touched,
/// so a view past the mapping faults (or trips the address sanitizer) here.
pub(crate) fn check_read_only(r: &Replica, extra: &[Vec<u8>]) {
    let a = r.attributes();
    let (max, max_id) = (a.max_section_size, a.max_section_id_size);
    let _ = (
        r.status(),
        r.role(),
        r.acked_seq(),
        r.replication_position(),
    );
    let _ = (r.instance(), r.object_size(), r.spare_slots(), r.path());
    let head = r.commit_seq();

    let now = crate::wall_clock();
    let mut ids: Vec<Vec<u8>> = Vec::new();
    for filter in [
        SectionFilter::Any,
        SectionFilter::Forever,
        SectionFilter::Corrupted,
        SectionFilter::ExpiringAtOrBefore(now),
        SectionFilter::ExpiringAtOrAfter(now),
        SectionFilter::ExpiringAtOrBefore(TIME_END),
        SectionFilter::ExpiringAtOrAfter(i64::MIN),
    ] {
        let mut n = 0u64;
        for info in r.sections(filter) {
            n += 1;
            assert!(
                n <= u64::from(a.max_sections),
                "sections({filter:?}) returned more than maxSections"
            );
            assert!(info.size <= max, "section size {} > max {max}", info.size);
            assert!(
                info.id.len() as u64 <= max_id,
                "section id of {} bytes > max {max_id}",
                info.id.len()
            );
            if filter == SectionFilter::Corrupted {
                panic!("sections(Corrupted) returned a section");
            }
            if ids.len() < 16 && !ids.contains(&info.id) {
                ids.push(info.id);
            }
        }
    }
    ids.extend(probe_ids(max_id));
    ids.extend(extra.iter().cloned());

    let mut buf = vec![0u8; usize::try_from(max.min(1 << 16)).unwrap_or(1 << 16) + 1];
    for id in &ids {
        if let Ok(n) = r.read(id, 0, &mut buf) {
            assert!(
                n <= buf.len() && n as u64 <= max,
                "read gave {n} bytes, max {max}"
            );
        }
        if let Ok(n) = r.read(id, 1, &mut [0u8; 3]) {
            assert!(
                n <= 3 && (n as u64) < max.max(1),
                "read at 1 gave {n} bytes"
            );
        }
        let _ = r.read(id, u64::MAX, &mut buf);
        if let Ok(g) = r.borrow(id) {
            assert!(
                g.len() as u64 <= max,
                "borrow gave {} bytes, max {max}",
                g.len()
            );
            core::hint::black_box(g.iter().fold(0u8, |x, y| x ^ y));
            let _ = g.version();
        }
        if let Ok(v) = r.read_to_vec(id) {
            assert!(v.len() as u64 <= max, "read_to_vec gave {} bytes", v.len());
        }
        if let Ok(info) = r.section_info(id) {
            assert!(
                info.size <= max,
                "section_info size {} > max {max}",
                info.size
            );
            assert!(info.id.len() as u64 <= max_id, "section_info id too long");
        }
        let _ = r.contains(id);
    }

    let mut bufs: Vec<Vec<u8>> = ids.iter().take(3).map(|_| vec![0u8; 40]).collect();
    let mut elems: Vec<crate::ReadElement<'_>> = ids
        .iter()
        .zip(&mut bufs)
        .map(|(id, buf)| crate::ReadElement {
            id,
            offset: 0,
            buf,
            read: 0,
        })
        .collect();
    match r.read_many(&mut elems) {
        Ok(()) => {
            for e in &elems {
                assert!(e.read <= 40, "read_many read {} bytes into 40", e.read);
            }
        }
        Err(e) => assert!(
            e.index < elems.len().max(1),
            "read_many error index {}",
            e.index
        ),
    }

    check_journal(r, 0, max);
    let _ = r.changes_since(head.saturating_sub(3), &mut Vec::new(), 2);
    let _ = r.changes_since(u64::MAX - 1, &mut Vec::new(), 2);
    let _ = r.wait_for_changes(u64::MAX, Duration::ZERO);

    let agents = r.agents();
    assert!(
        agents.len() <= r.region.img.agent_capacity as usize,
        "agents() returned more than the agent table holds"
    );
    let report = r.fsck();
    assert!(report.violations.len() <= crate::fsck::MAX_VIOLATIONS);
    let _ = report.to_string();
}

/// Reads the journal from `after` in chunks, checking every record against the bounds.
/// Returns where it stopped.
pub(crate) fn check_journal(r: &Replica, after: u64, max: u64) -> u64 {
    let mut seq = after;
    let mut out = Vec::new();
    for _ in 0..8 {
        out.clear();
        match r.changes_since(seq, &mut out, 64) {
            Changes::UpTo(to) => {
                assert!(to >= seq, "changes_since({seq}) went back to {to}");
                assert!(out.len() <= 64, "changes_since returned {} > 64", out.len());
                let mut last = seq;
                for c in &out {
                    assert!(
                        c.seq > last && c.seq <= to,
                        "change seq {} out of order",
                        c.seq
                    );
                    last = c.seq;
                    if c.kind != ChangeKind::Expiration {
                        assert!(
                            c.offset.checked_add(c.len).is_some_and(|end| end <= max),
                            "change at {} + {} past maxSectionSize {max}",
                            c.offset,
                            c.len
                        );
                    }
                }
                if to == seq {
                    return seq;
                }
                seq = to;
            }
            Changes::Resync(point) => {
                let _ = r.resync_point();
                if point <= seq {
                    return seq;
                }
                seq = point;
            }
        }
    }
    seq
}
