//! Arrival callbacks (the NCS hot-standby extension), driven by the engine's change
//! journal: one watcher thread per checkpoint instance in a process while some handle
//! there has arrival callbacks on it. It sleeps on the replica's notification futex, so
//! writers make no system call unless a watcher waits (DESIGN.md property 8), reads the
//! changes since it last looked, and queues one callback per run of changes by one
//! writer to each subscribed handle except the writer's own.
//!
//! In cluster mode on a node without a replica there is no journal here to watch: the
//! watcher asks the primary's journal instead, through ckptd (`RemoteOp::Changes`, a long
//! poll the primary's daemon holds until a change comes). Its seqs count in one primary's
//! term; when the primary changes, or its journal lapped the watcher, every subscriber
//! gets every section (changes may have been lost with the old primary).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ckpt_engine::{Change, Changes};
use ckpt_transport::wire::{ArrivalItem, RemoteOp, RemoteResult};

use crate::checkpoint::CkptInner;
use crate::cluster::Client;
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
/// How long the primary's daemon may hold a remote watcher's question with no change.
const REMOTE_POLL_MS: u32 = 1000;
/// How long a remote watcher waits for the answer to its question (ckptd answers well
/// before: after `REMOTE_POLL_MS`, or when the forwarding gives up).
const REMOTE_ANSWER_WAIT: Duration = Duration::from_secs(10);
/// How long the watcher waits for the answer to where the primary's journal is, when a
/// handle subscribes.
const POSITION_WAIT: Duration = Duration::from_secs(2);
/// The pause before a remote watcher asks again after a failed question.
const REMOTE_RETRY: Duration = Duration::from_millis(100);

struct Sub {
    ckpt: Weak<CkptInner>,
    handle: CheckpointHandle,
    tag: u32,
    /// Changes up to this seq happened before the subscription.
    from: u64,
    /// Remote watchers: the primary term `from` counts in (0: not known yet, from the
    /// watcher's next answer on).
    epoch: u64,
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
    fn subscribed(&self, handle: CheckpointHandle) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subs
            .iter()
            .any(|s| s.handle == handle)
    }

    /// The subscribers whose handles are still open, each as `f` makes it; `None` (and
    /// the watcher marked stopped) when there are none left.
    fn live<T>(&self, f: impl Fn(&Sub, Arc<CkptInner>) -> T) -> Option<Vec<T>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.subs.retain(|x| {
            x.ckpt
                .upgrade()
                .is_some_and(|c| !c.closed.load(std::sync::atomic::Ordering::Acquire))
        });
        if s.subs.is_empty() {
            s.running = false;
            return None;
        }
        Some(
            s.subs
                .iter()
                .filter_map(|x| x.ckpt.upgrade().map(|c| f(x, c)))
                .collect(),
        )
    }

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
        let remote = match &this.cluster {
            Some(client) if !this.local => Some(Arc::clone(client)),
            _ => None,
        };
        if remote.is_some() && this.watch.subscribed(ck.handle) {
            return;
        }
        // Where the journal the watcher follows is now (asked before the lock: a remote
        // answer takes a round trip).
        let (epoch, from) = match &remote {
            None => (0, this.replica.commit_seq()),
            Some(client) => primary_position(client, this.id).unwrap_or((0, 0)),
        };
        let mut s = this.watch.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.subs.iter().any(|x| x.handle == ck.handle) {
            return;
        }
        s.subs.push(Sub {
            ckpt: Arc::downgrade(ck),
            handle: ck.handle,
            tag: ck.tag,
            from,
            epoch,
        });
        if !s.running {
            s.running = true;
            let inst = Arc::clone(this);
            let spawned = std::thread::Builder::new()
                .name("ckpt-arrival".into())
                // It starts where the subscription does: a change committed before the
                // thread runs is still reported.
                .spawn(move || match remote {
                    None => watch(&inst, from),
                    Some(client) => watch_remote(&inst, &client, epoch, from),
                });
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
        let Some(subs) = inst.watch.live(|x, c| (c, x.tag, x.from)) else {
            return;
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
                resync(subs.iter().map(|(ck, _, _)| ck));
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
        let arrivals = changes.iter().filter_map(|ch| {
            if ch.seq <= *from {
                return None;
            }
            let (id, offset, size) = ch.arrival()?;
            if ch.tag == *tag && inst.replica.is_own_agent(ch.agent) {
                return None;
            }
            let element = ArrivalElement {
                section_id: id.to_vec(),
                offset,
                size,
            };
            Some((ch.writer(), element))
        });
        queue_runs(ck, arrivals);
    }
}

/// Queues for each of `subs` one callback with every section: changes were lost.
fn resync<'a>(subs: impl Iterator<Item = &'a Arc<CkptInner>>) {
    for ck in subs {
        if let Some(lib) = lib_of(&ck.lib) {
            lib.push(Pending::ArrivalAll(ck.handle));
        }
    }
}

/// Queues for `ck` one callback per run of consecutive arrivals by one writer.
fn queue_runs(ck: &CkptInner, arrivals: impl Iterator<Item = (u64, ArrivalElement)>) {
    let Some(lib) = lib_of(&ck.lib) else {
        return;
    };
    let mut run: Vec<ArrivalElement> = Vec::new();
    let mut writer = None;
    for (w, element) in arrivals {
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

/// Where the journal of `instance`'s primary is now: (its term, its commit seq).
fn primary_position(client: &Arc<Client>, instance: u64) -> Option<(u64, u64)> {
    let op = RemoteOp::Changes {
        epoch: 0,
        since: 0,
        wait_ms: 0,
    };
    match client.remote(instance, op, Some(POSITION_WAIT)) {
        Ok(RemoteResult::Changes { epoch, upto, .. }) => Some((epoch, upto)),
        _ => None,
    }
}

/// The watcher of an instance this node holds no replica of: it follows the primary's
/// journal through ckptd, starting after `from` in primary term `epoch` (0: from where
/// the first answer says the journal is).
fn watch_remote(inst: &Arc<Instance>, client: &Arc<Client>, mut epoch: u64, mut seen: u64) {
    loop {
        let Some(subs) = inst.watch.live(|x, c| (c, x.epoch, x.from)) else {
            return;
        };
        let op = RemoteOp::Changes {
            epoch,
            since: seen,
            wait_ms: REMOTE_POLL_MS,
        };
        let asked = std::time::Instant::now();
        let ans = client.remote(inst.id, op, Some(REMOTE_ANSWER_WAIT));
        let Ok(RemoteResult::Changes {
            epoch: now_epoch,
            upto,
            lapped,
            items,
        }) = ans
        else {
            // ckptd unreachable, no primary now, or the checkpoint has no active replica
            // yet: ask again (the subscribers may be gone by then).
            std::thread::sleep(REMOTE_RETRY);
            continue;
        };
        if lapped {
            resync(subs.iter().map(|(ck, _, _)| ck));
        } else if now_epoch == epoch {
            for (ck, sub_epoch, from) in &subs {
                // A subscriber that knows no position yet starts after this answer; one
                // from an older term got every section when the term changed.
                let from = match *sub_epoch {
                    0 => continue,
                    e if e == now_epoch => *from,
                    _ => 0,
                };
                let arrivals = items
                    .iter()
                    .filter(|i| i.seq > from)
                    .map(|i: &ArrivalItem| {
                        let element = ArrivalElement {
                            section_id: i.id.clone(),
                            offset: i.offset,
                            size: i.size,
                        };
                        (i.writer, element)
                    });
                queue_runs(ck, arrivals);
            }
        }
        // Nothing new, answered at once (the primary holds no more questions): ask again
        // after a pause rather than at once.
        let idle = upto == seen && now_epoch == epoch && !lapped;
        epoch = now_epoch;
        seen = upto;
        {
            // Subscribers that knew no position start from here.
            let mut s = inst.watch.state.lock().unwrap_or_else(|p| p.into_inner());
            for x in s.subs.iter_mut().filter(|x| x.epoch == 0) {
                x.epoch = epoch;
                x.from = seen;
            }
        }
        if idle && asked.elapsed() < REMOTE_RETRY {
            std::thread::sleep(REMOTE_RETRY);
        }
    }
}
