//! The process-wide handle tables: C handle numbers to the ckpt-agent objects they stand for.
//!
//! One lock guards all three tables, so that finalizing a library handle removes it, its
//! checkpoint handles and their iteration handles at once (a concurrent call sees either all of
//! them or none). The lock is never held while ckpt-agent or C code runs: removed entries are
//! handed back to the caller and dropped (which closes checkpoints) after it is released.
//!
//! Handle numbers are never 0 and never reused. Library and iteration handles carry a tag in
//! their top bytes, so a handle of one kind passed where another is expected is not found;
//! checkpoint handles are the agent's own numbers (small integers), which the arrival callback
//! reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ckpt_agent::{Checkpoint, Library, SectionIterator, Version};

/// The tag of library handles ("SAL" in the top bytes).
const LIBRARY_TAG: u64 = 0x5341_4c00_0000_0000;
/// The tag of iteration handles ("SAI" in the top bytes).
const ITERATION_TAG: u64 = 0x5341_4900_0000_0000;
/// The counter bits below a tag.
const COUNTER_MASK: u64 = 0x0000_00ff_ffff_ffff;

/// A library handle's state.
#[derive(Debug)]
pub(crate) struct LibraryEntry {
    pub(crate) library: Library,
    /// The version the client asked for (it gates the B.01/B.02 behaviour).
    pub(crate) version: Version,
}

/// A checkpoint handle's state.
#[derive(Debug)]
pub(crate) struct CheckpointEntry {
    pub(crate) checkpoint: Checkpoint,
    /// The library handle it was opened through.
    pub(crate) library: u64,
    pub(crate) version: Version,
    /// The checkpoint's maxSectionSize (reads check caller buffers against it before making
    /// slices of them).
    pub(crate) max_section_size: u64,
}

/// An iteration handle's state.
#[derive(Debug)]
pub(crate) struct IterationEntry {
    pub(crate) iterator: SectionIterator,
    pub(crate) version: Version,
    /// The bytes of the id the last `saCkptSectionIterationNext` returned: the descriptor
    /// points into them until the next call, finalize or close.
    pub(crate) last_id: Vec<u8>,
}

#[derive(Debug)]
struct Tables {
    libraries: BTreeMap<u64, Arc<LibraryEntry>>,
    checkpoints: BTreeMap<u64, Arc<CheckpointEntry>>,
    iterations: BTreeMap<u64, (u64, Arc<Mutex<IterationEntry>>)>,
}

static TABLES: Mutex<Tables> = Mutex::new(Tables {
    libraries: BTreeMap::new(),
    checkpoints: BTreeMap::new(),
    iterations: BTreeMap::new(),
});

static NEXT_LIBRARY: AtomicU64 = AtomicU64::new(1);
static NEXT_ITERATION: AtomicU64 = AtomicU64::new(1);

fn tables() -> MutexGuard<'static, Tables> {
    // The tables are consistent after every statement, so a panic elsewhere leaves them usable.
    TABLES.lock().unwrap_or_else(PoisonError::into_inner)
}

fn next(counter: &AtomicU64, tag: u64) -> u64 {
    // 2^40 handles of each kind per process: counting one per nanosecond takes 18 minutes;
    // at a realistic rate far beyond any process's life. Wrapping would only risk reuse.
    tag | (counter.fetch_add(1, Relaxed) & COUNTER_MASK)
}

/// A fresh library handle number, reserved before the library exists (its callbacks need it).
pub(crate) fn new_library_handle() -> u64 {
    next(&NEXT_LIBRARY, LIBRARY_TAG)
}

pub(crate) fn insert_library(handle: u64, entry: LibraryEntry) {
    tables().libraries.insert(handle, Arc::new(entry));
}

pub(crate) fn library(handle: u64) -> Option<Arc<LibraryEntry>> {
    tables().libraries.get(&handle).cloned()
}

/// What finalizing a library handle removed; dropping it closes the checkpoints.
#[derive(Debug)]
pub(crate) struct RemovedLibrary {
    pub(crate) library: Arc<LibraryEntry>,
    _checkpoints: Vec<Arc<CheckpointEntry>>,
    _iterations: Vec<Arc<Mutex<IterationEntry>>>,
}

/// Removes a library handle with its checkpoint and iteration handles.
pub(crate) fn remove_library(handle: u64) -> Option<RemovedLibrary> {
    let mut t = tables();
    let library = t.libraries.remove(&handle)?;
    let closed: Vec<u64> = t
        .checkpoints
        .iter()
        .filter(|(_, c)| c.library == handle)
        .map(|(&h, _)| h)
        .collect();
    let checkpoints = closed
        .iter()
        .filter_map(|h| t.checkpoints.remove(h))
        .collect();
    let iterations = remove_iterations_of(&mut t, &closed);
    Some(RemovedLibrary {
        library,
        _checkpoints: checkpoints,
        _iterations: iterations,
    })
}

/// Enters an opened checkpoint under `library`; gives it back if that library handle is gone
/// (finalized meanwhile).
pub(crate) fn insert_checkpoint(checkpoint: Checkpoint, library: u64) -> Result<u64, Checkpoint> {
    let mut t = tables();
    let Some(version) = t.libraries.get(&library).map(|l| l.version) else {
        drop(t);
        return Err(checkpoint);
    };
    let handle = checkpoint.handle().0;
    let max_section_size = checkpoint.attributes().max_section_size;
    t.checkpoints.insert(
        handle,
        Arc::new(CheckpointEntry {
            checkpoint,
            library,
            version,
            max_section_size,
        }),
    );
    Ok(handle)
}

pub(crate) fn checkpoint(handle: u64) -> Option<Arc<CheckpointEntry>> {
    tables().checkpoints.get(&handle).cloned()
}

/// What closing a checkpoint handle removed.
#[derive(Debug)]
pub(crate) struct RemovedCheckpoint {
    pub(crate) checkpoint: Arc<CheckpointEntry>,
    _iterations: Vec<Arc<Mutex<IterationEntry>>>,
}

/// Removes a checkpoint handle with its iteration handles.
pub(crate) fn remove_checkpoint(handle: u64) -> Option<RemovedCheckpoint> {
    let mut t = tables();
    let checkpoint = t.checkpoints.remove(&handle)?;
    let iterations = remove_iterations_of(&mut t, &[handle]);
    Some(RemovedCheckpoint {
        checkpoint,
        _iterations: iterations,
    })
}

fn remove_iterations_of(t: &mut Tables, checkpoints: &[u64]) -> Vec<Arc<Mutex<IterationEntry>>> {
    if checkpoints.is_empty() {
        return Vec::new();
    }
    let gone: Vec<u64> = t
        .iterations
        .iter()
        .filter(|(_, (c, _))| checkpoints.contains(c))
        .map(|(&h, _)| h)
        .collect();
    gone.iter()
        .filter_map(|h| t.iterations.remove(h).map(|(_, e)| e))
        .collect()
}

/// Enters an iteration of `checkpoint`; `None` if that checkpoint handle is gone (closed
/// meanwhile).
pub(crate) fn insert_iteration(iterator: SectionIterator, checkpoint: u64) -> Option<u64> {
    let mut t = tables();
    let version = t.checkpoints.get(&checkpoint)?.version;
    let handle = next(&NEXT_ITERATION, ITERATION_TAG);
    let entry = IterationEntry {
        iterator,
        version,
        last_id: Vec::new(),
    };
    t.iterations
        .insert(handle, (checkpoint, Arc::new(Mutex::new(entry))));
    Some(handle)
}

pub(crate) fn iteration(handle: u64) -> Option<Arc<Mutex<IterationEntry>>> {
    tables().iterations.get(&handle).map(|(_, e)| Arc::clone(e))
}

pub(crate) fn remove_iteration(handle: u64) -> Option<Arc<Mutex<IterationEntry>>> {
    tables().iterations.remove(&handle).map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_handles_are_tagged_never_zero_and_never_repeat() {
        let a = new_library_handle();
        let b = new_library_handle();
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(a & !COUNTER_MASK, LIBRARY_TAG);
        assert_eq!(b & !COUNTER_MASK, LIBRARY_TAG);
    }

    #[test]
    fn unknown_handles_are_not_found() {
        assert!(library(0).is_none());
        assert!(library(new_library_handle()).is_none());
        assert!(checkpoint(0).is_none());
        assert!(iteration(ITERATION_TAG).is_none());
        assert!(remove_library(0).is_none());
        assert!(remove_checkpoint(u64::MAX).is_none());
        assert!(remove_iteration(0xdead_beef).is_none());
    }
}
