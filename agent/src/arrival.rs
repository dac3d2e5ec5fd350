//! Arrival callbacks (the NCS hot-standby extension), driven by the engine's change
//! journal: one watcher thread per checkpoint instance in a process while some handle
//! there has arrival callbacks on it. It sleeps on the replica's notification futex, so
//! writers make no system call unless a watcher waits (DESIGN.md property 8), reads the
//! changes since it last looked, and queues one callback per run of changes by one
//! writer to each subscribed handle except the writer's own.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ckpt_engine::{Change, ChangeKind, Changes};

use crate::checkpoint::CkptInner;
use crate::library::{Pending, lib_of};
use crate::shared::Instance;
use crate::types::{ArrivalElement, CheckpointHandle};

/// How long the watcher sleeps between checks that it still has subscribers.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Changes read per journal pass.
const BATCH: usize = 1024;
/// How long the watcher sleeps, not as a futex waiter, after a pass that found changes
/// before it looks again; only a look that finds nothing makes it a waiter. While changes
/// keep coming, writers then make no wake-up syscall (about a microsecond each, ten times
/// a local overwrite): at most one per quiet spell, at the cost of up to this much delay
/// in delivering changes that arrive during a burst.
const LINGER: Duration = Duration::from_micros(200);

struct Sub {
    ckpt: Weak<CkptInner>,
    handle: CheckpointHandle,
    tag: u32,
    /// Changes up to this seq happened before the subscription.
    from: u64,
}

#[derive(Default)]
struct WatchState {
    subs: Vec<Sub>,
    running: bool,
}

/// The subscribers of one instance and its watcher thread.
#[derive(Default)]
pub(crate) struct Watch {
    state: Mutex<WatchState>,
}

impl core::fmt::Debug for Watch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Watch")
            .field("subscribers", &s.subs.len())
            .field("running", &s.running)
            .finish()
    }
}

impl Watch {
    pub(crate) fn unsubscribe(&self, handle: CheckpointHandle) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subs
            .retain(|s| s.handle != handle);
    }
}

impl Instance {
    /// Subscribes `ck` to the changes made from now on; starts the watcher if needed.
    pub(crate) fn subscribe(this: &Arc<Self>, ck: &Arc<CkptInner>) {
        let mut s = this.watch.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.subs.iter().any(|x| x.handle == ck.handle) {
            return;
        }
        let from = this.replica.commit_seq();
        s.subs.push(Sub {
            ckpt: Arc::downgrade(ck),
            handle: ck.handle,
            tag: ck.tag,
            from,
        });
        if !s.running {
            s.running = true;
            let inst = Arc::clone(this);
            let spawned = std::thread::Builder::new()
                .name("ckpt-arrival".into())
                // It starts where the subscription does: a change committed before the
                // thread runs is still reported.
                .spawn(move || watch(&inst, from));
            if spawned.is_err() {
                // No thread: no callbacks; the subscription stays for the next attempt.
                s.running = false;
            }
        }
    }
}

fn watch(inst: &Arc<Instance>, from: u64) {
    let r = &inst.replica;
    let mut seen = from;
    let mut out: Vec<Change> = Vec::with_capacity(BATCH);
    // Whether the last pass delivered changes (then the next empty one lingers).
    let mut busy = false;
    loop {
        let subs: Vec<(Arc<CkptInner>, u32, u64)> = {
            let mut s = inst.watch.state.lock().unwrap_or_else(|p| p.into_inner());
            s.subs.retain(|x| {
                x.ckpt
                    .upgrade()
                    .is_some_and(|c| !c.closed.load(std::sync::atomic::Ordering::Acquire))
            });
            if s.subs.is_empty() {
                s.running = false;
                return;
            }
            s.subs
                .iter()
                .filter_map(|x| x.ckpt.upgrade().map(|c| (c, x.tag, x.from)))
                .collect()
        };
        out.clear();
        match r.changes_since(seen, &mut out, BATCH) {
            Changes::UpTo(s) => {
                if out.is_empty() {
                    if busy {
                        std::thread::sleep(LINGER);
                    } else {
                        r.wait_for_changes(seen, IDLE_WAIT);
                    }
                    busy = false;
                    continue;
                }
                deliver(inst, &subs, &out);
                busy = true;
                seen = s;
            }
            Changes::Resync(from) => {
                for (ck, _, _) in &subs {
                    if let Some(lib) = lib_of(&ck.lib) {
                        lib.push(Pending::ArrivalAll(ck.handle));
                    }
                }
                seen = from;
            }
        }
    }
}

/// Queues, for each subscriber, one callback per run of consecutive changes by one
/// writer (agent and tag), skipping the subscriber's own changes and those from before
/// it subscribed.
fn deliver(inst: &Instance, subs: &[(Arc<CkptInner>, u32, u64)], changes: &[Change]) {
    for (ck, tag, from) in subs {
        let Some(lib) = lib_of(&ck.lib) else {
            continue;
        };
        let mut run: Vec<ArrivalElement> = Vec::new();
        let mut writer = None;
        for ch in changes {
            if ch.seq <= *from {
                continue;
            }
            let element = match (ch.kind, &ch.id) {
                (ChangeKind::Create | ChangeKind::Overwrite, Some(id)) => ArrivalElement {
                    section_id: id.clone(),
                    offset: 0,
                    size: ch.len,
                },
                (ChangeKind::Write, Some(id)) => ArrivalElement {
                    section_id: id.clone(),
                    offset: ch.offset,
                    size: ch.len,
                },
                // Deletes and expiration changes are not arrivals; a change whose
                // section was deleted since has nothing left to read.
                _ => continue,
            };
            if ch.tag == *tag && inst.replica.is_own_agent(ch.agent) {
                continue;
            }
            let w = (ch.agent, ch.tag);
            if writer.is_some_and(|x| x != w) && !run.is_empty() {
                lib.push(Pending::Arrival(ck.handle, core::mem::take(&mut run)));
            }
            writer = Some(w);
            run.push(element);
        }
        if !run.is_empty() {
            lib.push(Pending::Arrival(ck.handle, run));
        }
    }
}
