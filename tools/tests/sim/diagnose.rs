//! Naming the known product bug behind a failure. The invariants fail on their own; this
//! module watches for the signature each known bug leaves (in what ckptd logs, in the
//! placements opens return, in the replicas) so that a failing seed says which bug it
//! ran into. A failure with no signature is a new bug.
//!
//! The bugs, each with the smallest schedule that shows it, are described in [`BUGS`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ckpt_transport::wire::CkptAssign;

use super::app::{self, App, Log, Outcome, Slots};
use super::plan::Plan;
use super::trace::Logged;

/// Known bugs: (name, what goes wrong, where).
pub(crate) const BUGS: &[(&str, &str)] = &[
    (
        AMNESIA,
        "a director that restarts before the others elected a new leader leads again with a \
         reused directory term (its own restarts at 0) and an empty table, and its DirState \
         replaces the other directors' tables (same term, accepted): checkpoints are \
         forgotten, instance ids and replication terms are minted a second time \
         (transport/src/directory.rs: Directory::tick/become_leader, the DirState handler)",
    ),
    (
        LEADERLESS,
        "a directory leader that restarts within the restart grace comes back with no leader \
         and no table; the others still follow it (its connection is up again, and the \
         election needs the leader unreachable: heartbeat silence alone does not count), and \
         it never claims while a lower-id director is reachable: no leader, every open, close \
         and ActiveReplicaSet retried until the 30 s give-up (transport/src/directory.rs \
         Directory::tick; a NotLeader {leader: None} from the followed leader is ignored)",
    ),
    (
        GRACE_QUORUM,
        "ckptd tells the directory that a peer is down only after the restart grace (the idle \
         timeout) and the directory counts such peers for its quorum: a leader cut off from \
         everyone keeps leading through the grace and declares the peers dead one by one as \
         each grace expires (the others still count), shrinking replica sets to itself and \
         promoting itself (tools/src/ckptd/node.rs on_tick/down_since; \
         transport/src/directory.rs has_quorum, peer_down)",
    ),
    (
        TWO_LEADERS,
        "with one link between two directors cut while both reach a third node, each side \
         has a quorum (counted from open connections, not from nodes that accept this leader), \
         so both lead at once in different directory terms and the middle node counts for \
         both: each declares the other dead, shrinks replica sets and promotes its own \
         primaries (transport/src/directory.rs: leadership needs votes, or a quorum of \
         nodes acknowledging this leader's term)",
    ),
    (
        STALE_TABLE,
        "a director becomes leader with the table it last received although another director \
         holds a newer one (the previous leader's DirState reached only some directors): it \
         re-announces older replication terms and demotes primaries named since; the nodes \
         apply those older assignments, and a primary of the older term is fenced by its \
         replicas and re-promoted by the next Assign, in a loop (transport/src/directory.rs \
         become_leader takes no table from the others, DirState has no version; \
         tools/src/ckptd/node.rs on_assign accepts a term older than its replica's)",
    ),
    (
        NO_PRIMARY,
        "when a non-collocated checkpoint's primary dies and no replica is left to promote, \
         the directory sets primary None and never names one again, even when replicas come \
         back by opens: every write and synchronize is TRY_AGAIN for good \
         (transport/src/directory.rs node_died/promotion_choice; open and peer_up never \
         promote)",
    ),
    (
        ZOMBIE,
        "a node the directory drops from a replica set (declared dead, or cut off while a new \
         primary was named) is never told: nothing is sent to nodes outside the set, and on \
         its return the leader re-sends only the assignments that include it. The node keeps \
         its replica and its stale placement: a fenced old primary answers its agents' writes \
         and synchronizes TRY_AGAIN for good (its placement still names itself), its \
         hot-standby readers read a replica nobody updates (transport/src/directory.rs \
         node_died/peer_up; Positions reported for a replica outside the set are ignored \
         instead of answered with Unassign)",
    ),
    (
        STALE_PROMOTION,
        "the directory promotes a replica that holds less than another one: it ranks \
         candidates by the positions nodes last reported (a replica with no report ranks below \
         reported ones, so a fresh leader without reports picks by node id), and a node \
         dropped as dead that an open added back ranks like any other without having resynced \
         (only evicted nodes are marked): ALL_REPLICAS-acknowledged and synchronized writes \
         only the better replica held are lost, and the promoted replica's snapshot erases \
         them from the others (transport/src/directory.rs promotion_choice, node_died, open)",
    ),
    (
        VACUOUS_SYNC,
        "a synchronize, or an ALL_REPLICAS write, returns OK on a primary that reaches no \
         other node: a directory leader shrank the replica set to the primary alone (one \
         deciding during the restart grace, or one of two leaders), so there is nobody to \
         wait for, while the majority promotes a replica without those writes \
         (transport/src/directory.rs node_died with a connectivity quorum; \
         tools/src/ckptd/node.rs poll_primary takes commit_seq as acknowledged when the set \
         is the primary alone)",
    ),
    (
        DEPOSED_SYNC,
        "a synchronize returns OK on a primary whose term is superseded: while it was cut off \
         its own directory (leading through the restart grace, see \
         directory-decides-without-quorum) shrank its replica set to nodes that had not heard \
         of the new term (a node that was down meanwhile), so they ack its diffs; the writes \
         this synchronize confirms are truncated when it is fenced (transport/src/directory.rs \
         node_died without a real quorum; a replica acks any primary of the term it holds)",
    ),
    (
        STAGING_RESTART,
        "a node that becomes the primary of an ALL_REPLICAS checkpoint again in a term it was \
         already primary of (its ckptd restarted within the restart grace, or it was fenced and \
         re-assigned) makes a new staging copy whose journal starts again at a few seqs: its \
         replicas are snapshotted from (term, N) back to (term, 3), a position no longer names \
         one state within a term, and a replica away during the change can later be taken for \
         up to date at a seq of the old numbering (tools/src/ckptd/node.rs \
         on_assign/staging_copy)",
    ),
    (
        WIPED_PRIMARY,
        "a node whose replicas were lost (its tmpfs with it) restarts within the restart grace, \
         so the directory never saw it die; the leader re-sends the assignment naming it \
         primary in the same term, ckptd creates an empty replica, becomes its primary at \
         (term, 0), and the replicas answering the probe with a higher seq get a snapshot of \
         nothing: every section, synchronized or not, is deleted cluster-wide \
         (tools/src/ckptd/node.rs on_assign makes a newly created, empty replica the primary)",
    ),
    (
        EVICT_CASCADE,
        "the primary of an ALL_REPLICAS checkpoint asks to evict a replica that stalls a write; \
         the eviction mints a new term, the new Primary starts every replica at acked 0 \
         (probing), but the staged queue keeps its timestamps, so the next tick finds every \
         other replica behind a write older than EVICT_AFTER and evicts the healthy ones too: \
         the set shrinks to the primary alone (tools/src/ckptd/node.rs evict_stuck)",
    ),
    (
        DROPPED_NOT_EXIST,
        "a node dropped from a replica set by an eviction removes its replica and the \
         placement with it, so its agents' operations on a checkpoint they still have open \
         answer NOT_EXIST for good instead of going to the primary (tools/src/ckptd/node.rs \
         on_unassign keeps no placement in `remotes`)",
    ),
];

const AMNESIA: &str = "directory-restart-amnesia";
const LEADERLESS: &str = "followers-of-a-restarted-leader";
const GRACE_QUORUM: &str = "directory-decides-without-quorum";
const TWO_LEADERS: &str = "two-directory-leaders";
const STALE_TABLE: &str = "leader-with-stale-table";
const NO_PRIMARY: &str = "checkpoint-left-without-primary";
const ZOMBIE: &str = "dropped-replica-never-told";
const STALE_PROMOTION: &str = "less-up-to-date-replica-promoted";
const VACUOUS_SYNC: &str = "acknowledged-by-a-lone-primary";
const DEPOSED_SYNC: &str = "synchronize-on-deposed-primary";
const STAGING_RESTART: &str = "all-replicas-primary-restart";
const WIPED_PRIMARY: &str = "empty-replica-resumes-as-primary";
const EVICT_CASCADE: &str = "eviction-cascade";
const DROPPED_NOT_EXIST: &str = "dropped-node-answers-not-exist";

/// What the diagnosis reads of the simulation.
pub(crate) struct View<'a> {
    pub(crate) now: Duration,
    pub(crate) plan: &'a Plan,
    pub(crate) slots: &'a Slots,
    pub(crate) apps: &'a [App],
    /// What each node's replica of each instance holds, as a position (see
    /// `Sampler::holds` in sim.rs), as sampled after the previous step.
    pub(crate) holds: &'a BTreeMap<(u32, u64), (u64, u64)>,
}

impl View<'_> {
    fn running(&self, node: u32) -> bool {
        self.slots.get(&node).is_some_and(|s| s.running)
    }

    fn boot(&self, node: u32) -> u32 {
        self.slots.get(&node).map_or(0, |s| s.boots)
    }

    fn all_replicas(&self, instance: u64) -> bool {
        self.apps
            .iter()
            .any(|a| a.instance == Some(instance) && a.kind == app::Kind::AllReplicas)
    }

    fn majority(&self, reached: usize) -> bool {
        reached * 2 > self.plan.nodes.len()
    }
}

/// The signatures seen so far, and what is needed to recognise them.
#[derive(Debug, Default)]
pub(crate) struct Diagnosis {
    /// (bug, evidence), in the order seen.
    pub(crate) known: Vec<(&'static str, String)>,
    /// The leader each node follows, as its ckptd announced it.
    views: BTreeMap<u32, Option<u32>>,
    /// Each node's peers whose connection is up, as its ckptd announced them.
    links: BTreeMap<u32, BTreeSet<u32>>,
    /// When each node's ckptd last started.
    started: BTreeMap<u32, Duration>,
    /// Directory terms claimed: term → (node, its start, when).
    claims: BTreeMap<u64, (u32, u32, Duration)>,
    /// Primaries announced: (instance, term) → (node, its start).
    primaries: BTreeMap<(u64, u64), (u32, u32)>,
    /// (instance, term) → the primary it named (opens, roles): one, ever.
    terms: BTreeMap<(u64, u64), u32>,
    /// The highest replication term seen per instance.
    max_terms: BTreeMap<u64, u64>,
    /// When each node's replicas were last wiped.
    wiped: BTreeMap<u32, Duration>,
    /// Eviction requests: (instance, node, when).
    evictions: Vec<(u64, u32, Duration)>,
    /// Replicas ckptd removed: (node, instance).
    removed: BTreeSet<(u32, u64)>,
    /// Attempts and synchronizes of each writer already looked at.
    scanned: BTreeMap<usize, (usize, usize)>,
    /// Since when two nodes lead; since when a node follows one that does not.
    two_leaders: Option<Duration>,
    orphaned: Option<Duration>,
}

impl Diagnosis {
    fn note(&mut self, bug: &'static str, evidence: String, now: Duration, log: &mut Log) {
        if !self.known.iter().any(|(b, _)| *b == bug) {
            log.add(now, format!("KNOWN BUG {bug}: {evidence}"));
            self.known.push((bug, evidence));
        }
    }

    /// Every node follows one leader: the directory formed.
    pub(crate) fn formed(&self, nodes: usize) -> bool {
        let leaders: BTreeSet<Option<u32>> = self.views.values().copied().collect();
        self.views.len() == nodes && leaders.len() == 1 && !leaders.contains(&None)
    }

    /// The node's replicas were lost.
    pub(crate) fn wiped(&mut self, node: u32, now: Duration) {
        self.wiped.insert(node, now);
    }

    /// What a ckptd logged.
    pub(crate) fn logged(&mut self, e: &Logged, v: &View<'_>, log: &mut Log) {
        let Some(node) = e.node() else { return };
        let at = e.at.as_secs_f64();
        match e.message.as_str() {
            "peer up" | "peer down" => {
                if let Some(peer) = e.u64("peer").and_then(|p| u32::try_from(p).ok()) {
                    let links = self.links.entry(node).or_default();
                    if e.message == "peer up" {
                        links.insert(peer);
                    } else {
                        links.remove(&peer);
                    }
                }
            }
            "ckptd started" => {
                self.views.insert(node, None);
                self.links.remove(&node);
                self.started.insert(node, e.at);
            }
            "directory leader" => {
                let leader = e
                    .fields
                    .get("leader")
                    .and_then(|l| l.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok());
                self.views.insert(node, leader);
                if leader == Some(node)
                    && let Some(term) = e.u64("term")
                {
                    self.claimed(node, term, e.at, v, log);
                }
            }
            "this node is now the primary" => {
                if let (Some(instance), Some(term)) = (e.u64("instance"), e.u64("term")) {
                    self.promoted(node, instance, term, e.at, v, log);
                }
            }
            "this node is no longer the primary" => {
                if let (Some(instance), Some(term)) = (e.u64("instance"), e.u64("term")) {
                    self.term_order(instance, term, &format!("node {node} is demoted"), v, log);
                }
            }
            "a replica does not ack: asking the directory to evict it" => {
                let (Some(instance), Some(n)) = (e.u64("instance"), e.u64("node")) else {
                    return;
                };
                let n = n as u32;
                let previous = self
                    .evictions
                    .iter()
                    .rev()
                    .find(|(i, m, t)| {
                        *i == instance && *m != n && e.at - *t < Duration::from_secs(1)
                    })
                    .copied();
                if let Some((_, other, t)) = previous {
                    let evidence = format!(
                        "node {node} asks to evict node {n} from {instance:x} at {at:.3}s, {:?} after node {other}",
                        e.at - t
                    );
                    self.note(EVICT_CASCADE, evidence, v.now, log);
                }
                self.evictions.push((instance, n, e.at));
            }
            "replica removed" => {
                if let Some(instance) = e.u64("instance") {
                    self.removed.insert((node, instance));
                }
            }
            _ => {}
        }
    }

    /// `node` leads the directory in `term`.
    fn claimed(&mut self, node: u32, term: u64, when: Duration, v: &View<'_>, log: &mut Log) {
        let at = when.as_secs_f64();
        // Two directors may claim one term (the lower id wins the tie); a claim of a term
        // below one already claimed, or of one claimed before this daemon started, forgot
        // it.
        let started = self.started.get(&node).copied().unwrap_or_default();
        let forgot = self
            .claims
            .range(term..)
            .find(|(t, (n, _, when))| **t > term || *n == node || *when < started)
            .map(|(t, c)| (*t, *c));
        if let Some((t, (n, b, _))) = forgot {
            let evidence = format!(
                "node {node} (start {}) leads the directory in term {term} at {at:.3}s; node {n} (start {b}) led in term {t} before",
                v.boot(node)
            );
            self.note(AMNESIA, evidence, v.now, log);
        }
        // Another director still leads, with a majority of connections of its own.
        let rivals: Vec<u32> = self
            .views
            .iter()
            .filter(|(m, l)| **m != node && **l == Some(**m) && v.running(**m))
            .filter(|(m, _)| v.majority(self.links.get(m).map_or(0, BTreeSet::len) + 1))
            .map(|(m, _)| *m)
            .collect();
        if !rivals.is_empty() && !v.plan.two_node {
            let evidence = format!(
                "node {node} leads the directory in term {term} from {at:.3}s while node(s) {rivals:?} still lead with a majority of connections"
            );
            self.note(TWO_LEADERS, evidence, v.now, log);
        }
        self.claims.insert(term, (node, v.boot(node), when));
    }

    /// `node` became the primary of `instance` in `term`.
    fn promoted(
        &mut self,
        node: u32,
        instance: u64,
        term: u64,
        when: Duration,
        v: &View<'_>,
        log: &mut Log,
    ) {
        let at = when.as_secs_f64();
        let leader = self.claims.get(&(term >> 32)).map(|c| c.0);
        // Did a replica hold more than the promoted one? An ACTIVE_REPLICA checkpoint may
        // lose what only an unreachable replica held; an ALL_REPLICAS one nothing.
        let all = v.all_replicas(instance);
        let reachable = |n: u32| {
            all || leader
                .is_some_and(|l| l == n || self.links.get(&l).is_some_and(|s| s.contains(&n)))
        };
        let mine = v.holds.get(&(node, instance)).copied();
        let better = v
            .holds
            .iter()
            .filter(|((n, i), _)| *i == instance && *n != node && reachable(*n))
            .map(|((n, _), h)| (*h, *n))
            .max();
        if let (Some(mine), Some((theirs, n))) = (mine, better)
            && theirs > mine
            && mine.0 < term
        {
            let evidence = format!(
                "node {node} becomes the primary of {instance:x} in term {term:x} at {at:.3}s holding {mine:x?}, while node {n} holds {theirs:x?}"
            );
            self.note(STALE_PROMOTION, evidence, v.now, log);
        }
        // The leader that minted the term: did it reach a majority?
        if let Some(l) = leader {
            let reached = self.links.get(&l).map_or(0, BTreeSet::len) + 1;
            if !v.majority(reached) && !v.plan.two_node {
                let evidence = format!(
                    "node {node} becomes the primary of {instance:x} in term {term:x} at {at:.3}s, a term minted by leader {l}, which reaches {reached} node(s) of {}",
                    v.plan.nodes.len()
                );
                self.note(GRACE_QUORUM, evidence, v.now, log);
            }
        }
        match self
            .primaries
            .insert((instance, term), (node, v.boot(node)))
        {
            Some((n, _)) if n != node => {
                let evidence = format!(
                    "term {term:x} of {instance:x} made node {n}, then node {node} primary (at {at:.3}s)"
                );
                self.note(AMNESIA, evidence, v.now, log);
            }
            Some((_, b)) => {
                let since = if b == v.boot(node) {
                    self.started.get(&node).copied().unwrap_or_default()
                } else {
                    Duration::ZERO
                };
                if self.wiped.get(&node).is_some_and(|w| *w >= since) {
                    let evidence = format!(
                        "node {node} lost its replicas and becomes the primary of {instance:x} in term {term:x} again, with an empty replica (at {at:.3}s)"
                    );
                    self.note(WIPED_PRIMARY, evidence, v.now, log);
                } else if all {
                    let evidence = format!(
                        "node {node} becomes the primary of {instance:x} in term {term:x} a second time{} (at {at:.3}s)",
                        if b == v.boot(node) {
                            ""
                        } else {
                            ", after its restart"
                        }
                    );
                    self.note(STAGING_RESTART, evidence, v.now, log);
                }
            }
            None => {}
        }
        self.term_order(
            instance,
            term,
            &format!("node {node} becomes its primary"),
            v,
            log,
        );
    }

    /// Assignments of a checkpoint come in increasing terms: an older one after a newer
    /// one means a leader acts on an older table than another leader decided on.
    fn term_order(&mut self, instance: u64, term: u64, how: &str, v: &View<'_>, log: &mut Log) {
        let max = self.max_terms.entry(instance).or_insert(term);
        if term < *max {
            let evidence = format!(
                "{instance:x} is assigned in term {term:x} ({how}) after term {:x} was minted (at {:.3}s)",
                *max,
                v.now.as_secs_f64()
            );
            self.note(STALE_TABLE, evidence, v.now, log);
        } else {
            *max = term;
        }
    }

    /// A term names one primary: a second one means it was minted twice.
    fn one_primary(
        &mut self,
        instance: u64,
        term: u64,
        node: u32,
        how: &str,
        v: &View<'_>,
        log: &mut Log,
    ) {
        let first = *self.terms.entry((instance, term)).or_insert(node);
        if first != node {
            let evidence = format!(
                "term {term:x} of {instance:x} named node {first} as primary, then node {node} ({how}, at {:.3}s)",
                v.now.as_secs_f64()
            );
            self.note(AMNESIA, evidence, v.now, log);
        }
    }

    /// A placement an open returned.
    pub(crate) fn placement(&mut self, a: &CkptAssign, v: &View<'_>, log: &mut Log) {
        self.term_order(a.instance, a.term, "an open", v, log);
        match a.primary {
            Some(p) => self.one_primary(a.instance, a.term, p, "an open", v, log),
            None => {
                let evidence = format!(
                    "the directory places {:x} ({}) on {:?} with no primary in term {:x} (at {:.3}s)",
                    a.instance,
                    a.name,
                    a.replicas,
                    a.term,
                    v.now.as_secs_f64()
                );
                self.note(NO_PRIMARY, evidence, v.now, log);
            }
        }
    }

    /// A node's replica holds the primary role in `term`.
    pub(crate) fn role(
        &mut self,
        instance: u64,
        term: u64,
        node: u32,
        v: &View<'_>,
        log: &mut Log,
    ) {
        self.one_primary(instance, term, node, "a replica's role", v, log);
    }

    /// `node` holds a replica of `instance` that the directory's replica set leaves out.
    pub(crate) fn outside(
        &mut self,
        node: u32,
        instance: u64,
        set: &[u32],
        v: &View<'_>,
        log: &mut Log,
    ) {
        let evidence = format!(
            "node {node} holds a replica of {instance:x}, but the replica set is {set:?} (at {:.3}s)",
            v.now.as_secs_f64()
        );
        self.note(ZOMBIE, evidence, v.now, log);
    }

    /// After each step: leadership over time and the writers' answers.
    pub(crate) fn step(&mut self, v: &View<'_>, log: &mut Log) {
        self.leadership(v, log);
        self.answers(v, log);
    }

    fn leadership(&mut self, v: &View<'_>, log: &mut Log) {
        // Two leaders for more than a second.
        let leaders: Vec<u32> = self
            .views
            .iter()
            .filter(|(n, l)| **l == Some(**n) && v.running(**n))
            .map(|(n, _)| *n)
            .collect();
        if leaders.len() > 1 && !v.plan.two_node {
            let since = *self.two_leaders.get_or_insert(v.now);
            if v.now - since >= Duration::from_secs(1) {
                let evidence = format!(
                    "nodes {leaders:?} all lead the directory since {:.3}s",
                    since.as_secs_f64()
                );
                self.note(TWO_LEADERS, evidence, v.now, log);
            }
        } else {
            self.two_leaders = None;
        }
        // A node following, for more than 3 s, a running leader that leads nothing.
        let stray = self.views.iter().find_map(|(n, l)| {
            let l = (*l)?;
            (l != *n && v.running(l) && self.views.get(&l) != Some(&Some(l))).then_some((*n, l))
        });
        match stray {
            None => self.orphaned = None,
            Some((n, l)) => {
                let since = *self.orphaned.get_or_insert(v.now);
                if v.now - since >= Duration::from_secs(3) {
                    let evidence = format!(
                        "node {n} follows node {l} as the directory leader since {:.3}s, but node {l} leads nothing",
                        since.as_secs_f64()
                    );
                    self.note(LEADERLESS, evidence, v.now, log);
                }
            }
        }
    }

    fn answers(&mut self, v: &View<'_>, log: &mut Log) {
        let mut notes = Vec::new();
        for (k, a) in v.apps.iter().enumerate() {
            let (attempts, syncs) = self.scanned.get(&k).copied().unwrap_or_default();
            for t in &a.attempts[attempts..] {
                let alone = self.links.get(&t.node).is_none_or(BTreeSet::is_empty);
                if t.outcome == Outcome::Ok
                    && a.kind == app::Kind::AllReplicas
                    && alone
                    && !v.plan.two_node
                {
                    notes.push((
                        VACUOUS_SYNC,
                        format!(
                            "{}: write {} answered OK on node {} at {:.3}s while the node had no connection to any other",
                            a.name,
                            t.value,
                            t.node,
                            t.end.as_secs_f64()
                        ),
                    ));
                }
                if t.outcome == Outcome::Failed(app::NOT_EXIST)
                    && let Some(i) = a.instance
                    && self.removed.contains(&(t.node, i))
                    // Still without one: a node that holds a replica again answers
                    // NOT_EXIST for sections that are gone (a checkpoint started over).
                    && v.slots.get(&t.node).is_none_or(|s| s.store.replica(i).is_none())
                {
                    notes.push((
                        DROPPED_NOT_EXIST,
                        format!(
                            "{} {} on node {}, which dropped its replica of {i:x}, answered NOT_EXIST (at {:.3}s)",
                            a.name,
                            t.value,
                            t.node,
                            t.end.as_secs_f64()
                        ),
                    ));
                }
            }
            for s in &a.syncs[syncs..] {
                // Confirmed by a primary whose term was superseded.
                let mine = a
                    .instance
                    .and_then(|i| Some((i, v.slots.get(&s.node)?.store.replica(i)?.role().1)));
                if s.ok
                    && s.direct
                    && let Some((i, term)) = mine
                    && let Some((n, t)) = app::superseded(v.slots, i, s.node, term)
                {
                    notes.push((
                        DEPOSED_SYNC,
                        format!(
                            "{}: a synchronize on node {} (primary in term {term:x}) returned OK at {:.3}s while node {n} was primary in term {t:x}",
                            a.name,
                            s.node,
                            v.now.as_secs_f64()
                        ),
                    ));
                }
                let alone = self.links.get(&s.node).is_none_or(BTreeSet::is_empty);
                // (In two-node mode a survivor is the whole set, by design.)
                if s.ok && s.direct && alone && !v.plan.two_node {
                    notes.push((
                        VACUOUS_SYNC,
                        format!(
                            "{}: a synchronize on node {} returned OK at {:.3}s while the node had no connection to any other",
                            a.name,
                            s.node,
                            v.now.as_secs_f64()
                        ),
                    ));
                }
            }
            let done = a
                .attempts
                .iter()
                .rposition(|t| t.outcome != Outcome::Pending)
                .map_or(0, |p| p + 1);
            self.scanned.insert(k, (done, a.syncs.len()));
        }
        for (bug, evidence) in notes {
            self.note(bug, evidence, v.now, log);
        }
    }
}

/// The description of a known bug.
pub(crate) fn describe(bug: &str) -> &'static str {
    BUGS.iter().find(|(b, _)| *b == bug).map_or("", |(_, d)| d)
}
