//! The directory state machine, driven as a cluster: several `Directory` values, a router
//! that carries their frames (through the wire codec) over links the test makes and breaks,
//! and an explicit clock (transport/DESIGN.md §5). Nothing sleeps and nothing reads a clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use ckpt_transport::directory::{DirConfig, Directory, Entry, Output, REPLY_MEMORY, code, flags};
use ckpt_transport::repl::INCOMPLETE;
use ckpt_transport::wire::{Attrs, CkptAssign, DirOp, DirReply, Frame, ReqId};

const HEARTBEAT: Duration = Duration::from_millis(100);
const ELECTION: Duration = Duration::from_millis(500);
const STEP: Duration = Duration::from_millis(10);
/// How long a new leader waits for replicas' position reports before it promotes.
const POSITIONS_WAIT: Duration = Duration::from_millis(1500);

/// Creation flags of an asynchronous non-collocated checkpoint (SA_CKPT_WR_ACTIVE_REPLICA).
const NON_COLLOCATED: u32 = 0x2;
/// Creation flags of a collocated checkpoint (SA_CKPT_WR_ACTIVE_REPLICA | COLLOCATED).
const COLLOCATED: u32 = 0x2 | flags::COLLOCATED;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn attrs(creation_flags: u32, retention: Duration) -> Attrs {
    Attrs {
        creation_flags,
        checkpoint_size: 1 << 20,
        retention: i64::try_from(retention.as_nanos()).unwrap(),
        max_sections: 8,
        max_section_size: 4096,
        max_section_id_size: 16,
    }
}

/// One node of the simulated cluster.
struct Node {
    sut: Directory,
    /// Every output other than `Send`, in order.
    log: Vec<Output>,
    /// What the directory told this node it holds (`Assign` minus `Unassign`).
    held: BTreeMap<u64, CkptAssign>,
}

/// Directories of a cluster, the links between them and a clock.
struct Cluster {
    nodes: Vec<u32>,
    directors: Vec<u32>,
    two_node: bool,
    live: BTreeMap<u32, Node>,
    /// Connected pairs, lower id first.
    links: BTreeSet<(u32, u32)>,
    /// Frames sent and not yet delivered: (from, to, frame).
    queue: VecDeque<(u32, u32, Frame)>,
    now: Duration,
    counter: u64,
}

fn pair(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

impl Cluster {
    /// Every node started at time zero, none connected.
    fn new(nodes: &[u32], directors: &[u32]) -> Self {
        let mut c = Self {
            nodes: nodes.to_vec(),
            directors: directors.to_vec(),
            two_node: false,
            live: BTreeMap::new(),
            links: BTreeSet::new(),
            queue: VecDeque::new(),
            now: Duration::ZERO,
            counter: 0,
        };
        for &n in nodes {
            c.start(n);
        }
        c
    }

    /// Two director nodes in two-node mode.
    fn two_node() -> Self {
        let mut c = Self::new(&[], &[1, 2]);
        c.nodes = vec![1, 2];
        c.two_node = true;
        c.start(1);
        c.start(2);
        c
    }

    /// Nodes 1, 2 (directors) and 3, fully connected, with node 1 elected.
    fn three_with_leader() -> Self {
        let mut c = Self::new(&[1, 2, 3], &[1, 2]);
        c.connect_all();
        c.run_for(ELECTION + HEARTBEAT);
        assert_eq!(c.leaders(), [Some(1); 3]);
        c
    }

    /// Nodes 1, 2 and 3, all directors, fully connected, node 1 elected; checkpoint "a"
    /// opened on node 3.
    fn three_directors_with_a() -> (Self, CkptAssign) {
        let mut c = Self::new(&[1, 2, 3], &[1, 2, 3]);
        c.connect_all();
        c.run_for(ELECTION + HEARTBEAT);
        assert_eq!(c.leaders(), [Some(1); 3]);
        let a = c.open(3, "a", NON_COLLOCATED);
        (c, a)
    }

    /// After a while, one leader everywhere, and each name opened on `node` is the
    /// instance it was.
    fn assert_one_leader_keeps(&mut self, node: u32, names: &[(&str, &CkptAssign)]) {
        self.run_for(ELECTION * 4);
        let leader = self.dir(1).leader().expect("a leader");
        assert_eq!(self.leaders(), vec![Some(leader); self.live.len()]);
        for (name, was) in names {
            assert_eq!(
                self.open(node, name, NON_COLLOCATED).instance,
                was.instance,
                "{name}"
            );
        }
    }

    /// Starts (or restarts, with an empty state) `node`, connected to nobody.
    fn start(&mut self, node: u32) {
        let cfg = DirConfig {
            node,
            nodes: self.nodes.clone(),
            directors: self.directors.clone(),
            two_node: self.two_node,
            heartbeat: HEARTBEAT,
            election_timeout: ELECTION,
            max_checkpoints: 64,
        };
        let node_state = Node {
            sut: Directory::new(cfg, self.now),
            log: Vec::new(),
            held: BTreeMap::new(),
        };
        self.live.insert(node, node_state);
    }

    /// What `node`'s daemon writes to its store now (its durable directory state).
    fn save(&mut self, node: u32) -> Option<Vec<u8>> {
        let now = self.now;
        self.live.get_mut(&node).unwrap().sut.durable_state(now)
    }

    /// `node`'s daemon starts from `saved` (what it had written before it stopped).
    fn restore(&mut self, node: u32, saved: &[u8]) {
        let now = self.now;
        self.live.get_mut(&node).unwrap().sut.restore(saved, now);
    }

    fn dir(&self, node: u32) -> &Directory {
        &self.live[&node].sut
    }

    fn leaders(&self) -> Vec<Option<u32>> {
        self.live.values().map(|n| n.sut.leader()).collect()
    }

    fn entry(&self, node: u32, instance: u64) -> Option<Entry> {
        self.dir(node)
            .entries()
            .find(|e| e.instance == instance)
            .cloned()
    }

    fn table(&self, node: u32) -> Vec<Entry> {
        self.dir(node).entries().cloned().collect()
    }

    fn held(&self, node: u32, instance: u64) -> Option<&CkptAssign> {
        self.live[&node].held.get(&instance)
    }

    /// Takes a directory's outputs: frames into the queue (through the codec), the rest
    /// into the node's log.
    fn absorb(&mut self, node: u32, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send(t) => {
                    assert_ne!(t.node, node, "a directory never sends to itself");
                    let mut bytes = Vec::new();
                    t.frame.encode(&mut bytes);
                    let frame = Frame::decode(&bytes[4..]).expect("every frame decodes");
                    assert_eq!(frame, t.frame);
                    self.queue.push_back((node, t.node, frame));
                }
                other => {
                    let n = self.live.get_mut(&node).expect("live");
                    match &other {
                        Output::Assign(a) if a.replicas.contains(&node) => {
                            n.held.insert(a.instance, a.clone());
                        }
                        // A placement without this node: it drops its replica.
                        Output::Assign(a) => {
                            n.held.remove(&a.instance);
                        }
                        Output::Unassign(i) => {
                            n.held.remove(i);
                        }
                        _ => {}
                    }
                    n.log.push(other);
                }
            }
        }
    }

    /// Delivers queued frames over live links until nothing is left.
    fn deliver(&mut self) {
        let mut delivered = 0;
        while let Some((from, to, frame)) = self.queue.pop_front() {
            delivered += 1;
            assert!(delivered < 100_000, "frames keep bouncing");
            if !self.links.contains(&pair(from, to)) {
                continue; // no connection: lost
            }
            let mut out = Vec::new();
            let now = self.now;
            let n = self.live.get_mut(&to).expect("linked nodes are live");
            n.sut.on_frame(from, frame, now, &mut out);
            self.absorb(to, out);
        }
    }

    /// Connects `a` and `b` (both sides see the peer come up); delivers nothing yet.
    fn link(&mut self, a: u32, b: u32) {
        assert!(self.live.contains_key(&a) && self.live.contains_key(&b));
        self.links.insert(pair(a, b));
        for (x, y) in [(a, b), (b, a)] {
            let mut out = Vec::new();
            let now = self.now;
            self.live.get_mut(&x).unwrap().sut.peer_up(y, now, &mut out);
            self.absorb(x, out);
        }
    }

    fn connect(&mut self, a: u32, b: u32) {
        self.link(a, b);
        self.deliver();
    }

    fn connect_all(&mut self) {
        let ids: Vec<u32> = self.live.keys().copied().collect();
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i + 1..] {
                self.link(a, b);
            }
        }
        self.deliver();
    }

    /// Breaks the link (the transport's idle timeout passed): frames in flight are lost.
    fn disconnect(&mut self, a: u32, b: u32) {
        if !self.links.remove(&pair(a, b)) {
            return;
        }
        self.queue.retain(|(f, t, _)| pair(*f, *t) != pair(a, b));
        for (x, y) in [(a, b), (b, a)] {
            if let Some(n) = self.live.get_mut(&x) {
                let mut out = Vec::new();
                n.sut.peer_down(y, self.now, &mut out);
                self.absorb(x, out);
            }
        }
        self.deliver();
    }

    /// Cuts every link of `node` at once (nothing it sends meanwhile gets through); it
    /// keeps running alone.
    fn isolate(&mut self, node: u32) {
        let peers: Vec<u32> = self.live.keys().copied().filter(|n| *n != node).collect();
        for &p in &peers {
            self.links.remove(&pair(node, p));
        }
        self.queue.retain(|(f, t, _)| *f != node && *t != node);
        for p in peers {
            for (x, y) in [(node, p), (p, node)] {
                let mut out = Vec::new();
                let now = self.now;
                self.live
                    .get_mut(&x)
                    .unwrap()
                    .sut
                    .peer_down(y, now, &mut out);
                self.absorb(x, out);
            }
        }
        self.deliver();
    }

    /// `node` dies: its links go down and its state is gone.
    fn kill(&mut self, node: u32) {
        self.isolate(node);
        self.live.remove(&node);
    }

    fn tick(&mut self, node: u32) -> Duration {
        let mut out = Vec::new();
        let now = self.now;
        let next = self.live.get_mut(&node).unwrap().sut.tick(now, &mut out);
        self.absorb(node, out);
        next
    }

    /// Advances the clock by `dt`, ticks every node and delivers.
    fn step(&mut self, dt: Duration) {
        self.now += dt;
        let ids: Vec<u32> = self.live.keys().copied().collect();
        for n in ids {
            self.tick(n);
            self.deliver();
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(STEP);
        }
    }

    fn next_req(&mut self, node: u32) -> ReqId {
        self.counter += 1;
        ReqId {
            node,
            incarnation: 1,
            counter: self.counter,
        }
    }

    /// Makes a request on `node` and returns the answer it gets.
    fn request_as(&mut self, node: u32, req: ReqId, op: DirOp) -> DirReply {
        let mut out = Vec::new();
        let now = self.now;
        self.live
            .get_mut(&node)
            .unwrap()
            .sut
            .request(req, op, now, &mut out);
        self.absorb(node, out);
        self.deliver();
        self.live[&node]
            .log
            .iter()
            .rev()
            .find_map(|o| match o {
                Output::Reply { req: r, result } if *r == req => Some(result.clone()),
                _ => None,
            })
            .expect("the request was answered")
    }

    fn request(&mut self, node: u32, op: DirOp) -> DirReply {
        let req = self.next_req(node);
        self.request_as(node, req, op)
    }

    fn open_op(node: u32, name: &str, creation_flags: u32, retention: Duration) -> DirOp {
        DirOp::Open {
            name: name.to_owned(),
            attrs: Some(attrs(creation_flags, retention)),
            flags: flags::OPEN_CREATE,
            node,
        }
    }

    /// Opens (creating if needed, with a minute's retention) `name` on `node`.
    fn open(&mut self, node: u32, name: &str, creation_flags: u32) -> CkptAssign {
        self.open_retained(node, name, creation_flags, ms(60_000))
    }

    /// Opens the non-collocated checkpoint `name` from `node`, checks that it is placed on
    /// `replicas` with `primary`, and has every replica report seq 5 in its first term.
    fn open_reported(
        &mut self,
        node: u32,
        name: &str,
        primary: u32,
        replicas: &[u32],
    ) -> CkptAssign {
        let a = self.open(node, name, NON_COLLOCATED);
        assert_eq!(
            (a.primary, a.replicas.as_slice()),
            (Some(primary), replicas)
        );
        for &n in replicas {
            self.report(n, &[(a.instance, a.term, 5)]);
        }
        a
    }

    fn open_retained(
        &mut self,
        node: u32,
        name: &str,
        creation_flags: u32,
        retention: Duration,
    ) -> CkptAssign {
        match self.request(node, Self::open_op(node, name, creation_flags, retention)) {
            DirReply::Opened { ckpt } => ckpt,
            other => panic!("open of {name} on {node}: {other:?}"),
        }
    }

    fn close(&mut self, node: u32, instance: u64) -> DirReply {
        self.request(node, DirOp::Close { instance, node })
    }

    fn evict(&mut self, requester: u32, instance: u64, node: u32, term: u64) -> DirReply {
        self.request(
            requester,
            DirOp::Evict {
                instance,
                node,
                term,
            },
        )
    }

    /// `node` reports replica positions to its leader, as its ckptd does.
    /// Kills `node` and starts it again without its replicas, linked to `peers`: it
    /// reports the checkpoint made anew, and node 1 reports `held` (instance, term, seq)
    /// for it. Returns node 1's entry once a promotion has had time to happen.
    fn restart_wiped(&mut self, node: u32, peers: &[u32], held: (u64, u64, u64)) -> Entry {
        self.kill(node);
        self.run_for(ELECTION * 4);
        self.start(node);
        for n in peers {
            self.connect(node, *n);
        }
        self.run_for(ELECTION * 2);
        self.report(node, &[(held.0, 0, INCOMPLETE)]);
        self.report(1, &[held]);
        self.run_for(POSITIONS_WAIT * 5);
        self.entry(1, held.0).unwrap()
    }

    /// Links every node again and has `node` report `position`; returns node 1's entry of
    /// its checkpoint once a promotion has had time to happen.
    fn back_with(&mut self, node: u32, position: (u64, u64, u64)) -> Entry {
        self.connect_all();
        self.run_for(ELECTION * 2);
        self.report(node, &[position]);
        self.run_for(POSITIONS_WAIT * 5);
        self.entry(1, position.0).unwrap()
    }

    fn report(&mut self, node: u32, items: &[(u64, u64, u64)]) {
        let leader = self.dir(node).leader().expect("a leader to report to");
        if leader == node {
            let sut = &mut self.live.get_mut(&node).unwrap().sut;
            for &(instance, term, seq) in items {
                sut.report_position(node, instance, term, seq);
            }
        } else {
            let frame = Frame::Positions {
                node,
                items: items.to_vec(),
            };
            self.queue.push_back((node, leader, frame));
            self.deliver();
        }
    }
}

// Quorum and election.

#[test]
fn lowest_id_director_is_elected_once_quorum_holds() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect_all();
    c.run_for(ELECTION - STEP);
    assert_eq!(
        c.leaders(),
        [None; 3],
        "nobody claims before the election timeout"
    );

    c.run_for(STEP + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(1); 3]);
    assert!(c.dir(1).is_leader());
    assert!(c.live.values().all(|n| n.sut.term() == 1));
    assert!(c.live[&2].log.contains(&Output::Leader(Some(1))));
}

#[test]
fn lowest_reachable_director_leads_when_lower_ones_are_down() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.kill(1);
    c.connect(2, 3);
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(2); 2]);
}

#[test]
fn node_alone_in_three_has_no_leader() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect(2, 3);
    c.run_for(ELECTION * 4);
    assert!(!c.dir(1).has_quorum());
    assert_eq!(c.dir(1).leader(), None);
    assert!(
        !c.live[&1]
            .log
            .iter()
            .any(|o| matches!(o, Output::Leader(Some(_))))
    );
    assert_eq!(
        c.request(1, Cluster::open_op(1, "a", COLLOCATED, Duration::ZERO)),
        DirReply::NotLeader { leader: None }
    );
    assert_eq!(c.dir(2).leader(), Some(2), "the other two have quorum");
}

#[test]
fn leader_that_loses_quorum_steps_down_and_the_majority_elects_another() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    c.isolate(1);
    assert_eq!(
        c.dir(1).leader(),
        Some(1),
        "its followers' promises still hold"
    );
    c.run_for(ELECTION);
    assert_eq!(c.dir(1).leader(), None, "they lapsed: it steps down");
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [None, Some(2), Some(2)]);
    assert_eq!(c.dir(2).term(), 2);
}

#[test]
fn returning_lower_id_director_does_not_take_over() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    c.isolate(1);
    c.run_for(ELECTION * 2);
    assert_eq!(c.leaders(), [None, Some(2), Some(2)]);

    // The partition heals. Node 1 ticks before the leader's heartbeat reaches it, long
    // after it last heard a leader: it must still not claim.
    c.link(1, 2);
    c.link(1, 3);
    c.tick(1);
    c.deliver();
    assert_eq!(c.leaders(), [Some(2); 3]);
    c.run_for(ELECTION * 4);
    assert_eq!(c.leaders(), [Some(2); 3]);
    assert_eq!(c.dir(1).term(), 2);

    // Restarted from nothing, it follows too.
    c.kill(1);
    c.start(1);
    c.run_for(ELECTION * 2); // alone: no quorum, no claim
    c.link(1, 2);
    c.link(1, 3);
    c.tick(1);
    c.deliver();
    c.run_for(ELECTION * 4);
    assert_eq!(c.leaders(), [Some(2); 3]);
    assert!(!c.live[&1].log.contains(&Output::Leader(Some(1))));
}

#[test]
fn two_node_mode_needs_both_seen_once_then_survives_alone() {
    let mut c = Cluster::two_node();
    c.run_for(ELECTION * 4);
    assert_eq!(
        c.leaders(),
        [None, None],
        "wait_for_all: not before both were seen"
    );

    c.connect(1, 2);
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(1), Some(1)]);

    c.kill(2);
    c.run_for(ELECTION * 4);
    assert_eq!(
        c.dir(1).leader(),
        Some(1),
        "one node keeps quorum once both were seen"
    );
    let a = c.open(1, "a", NON_COLLOCATED);
    assert_eq!(a.replicas, [1]);

    // A restarted node alone has not seen both since its start.
    c.start(2);
    c.run_for(ELECTION * 4);
    assert_eq!(c.dir(2).leader(), None);
}

// Opens, placement and requests.

#[test]
fn open_places_replicas_per_the_placement_policy() {
    let mut c = Cluster::three_with_leader();

    let col = c.open(3, "col", COLLOCATED);
    assert_eq!(col.replicas, [3], "collocated: the opener's node");
    assert_eq!(
        col.primary, None,
        "no active replica until ActiveReplicaSet"
    );
    assert_eq!(col.term, 0);

    let pay = c.open(3, "pay", NON_COLLOCATED);
    assert_eq!(
        pay.replicas,
        [1, 2, 3],
        "payload opener: it and the directors"
    );
    assert_eq!(pay.primary, Some(3));
    assert!(pay.term > 0);

    let dir = c.open(2, "dir", NON_COLLOCATED);
    assert_eq!(dir.replicas, [1, 2], "director opener: the directors");
    assert_eq!(dir.primary, Some(2));

    // Each replica node was told; the others were not.
    assert_eq!(c.held(3, col.instance), Some(&col));
    assert_eq!(c.held(1, col.instance), None);
    for n in [1, 2, 3] {
        assert_eq!(c.held(n, pay.instance), Some(&pay));
    }
    assert_eq!(c.held(3, dir.instance), None);
    let instances = BTreeSet::from([col.instance, pay.instance, dir.instance]);
    assert_eq!(instances.len(), 3, "each creation is a new instance");
}

#[test]
fn second_open_on_another_node_joins_a_collocated_checkpoint() {
    let mut c = Cluster::three_with_leader();
    let first = c.open(3, "c", COLLOCATED);
    let second = c.open(2, "c", COLLOCATED);
    assert_eq!(second.instance, first.instance);
    assert_eq!(second.replicas, [2, 3]);
    let e = c.entry(1, first.instance).unwrap();
    assert_eq!(e.openers, BTreeMap::from([(2, 1), (3, 1)]));
    assert_eq!(
        c.held(3, first.instance),
        Some(&second),
        "the first opener hears of it"
    );
    assert_eq!(c.held(2, first.instance), Some(&second));

    // A different non-collocated open does not add the payload opener.
    let n = c.open(3, "n", NON_COLLOCATED);
    c.connect_all();
    let again = c.request(
        3,
        DirOp::Open {
            name: "n".to_owned(),
            attrs: None,
            flags: 0,
            node: 3,
        },
    );
    assert_eq!(again, DirReply::Opened { ckpt: n });
}

#[test]
fn open_refuses_missing_names_and_different_attributes() {
    let mut c = Cluster::three_with_leader();
    let missing = c.request(
        3,
        DirOp::Open {
            name: "x".to_owned(),
            attrs: None,
            flags: 0,
            node: 3,
        },
    );
    assert_eq!(
        missing,
        DirReply::Failed {
            code: code::NOT_EXIST
        }
    );
    c.open(3, "x", COLLOCATED);
    let other = c.request(3, Cluster::open_op(3, "x", NON_COLLOCATED, Duration::ZERO));
    assert_eq!(other, DirReply::Failed { code: code::EXIST });
}

#[test]
fn retried_request_id_is_applied_once() {
    let mut c = Cluster::three_with_leader();
    let req = c.next_req(3);
    let op = Cluster::open_op(3, "a", COLLOCATED, Duration::ZERO);
    let first = c.request_as(3, req, op.clone());
    let second = c.request_as(3, req, op.clone());
    assert_eq!(first, second);
    let DirReply::Opened { ckpt } = first else {
        panic!("{first:?}")
    };
    assert_eq!(c.entry(1, ckpt.instance).unwrap().openers[&3], 1);

    // The answers travel with the table: a retry to the next leader is not applied again.
    c.kill(1);
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.dir(3).leader(), Some(2));
    assert_eq!(c.request_as(3, req, op), second);
    assert_eq!(c.entry(2, ckpt.instance).unwrap().openers[&3], 1);
}

#[test]
fn answers_kept_for_retries_are_forgotten_once_their_requester_has_stopped_asking() {
    let mut c = Cluster::three_with_leader();
    let req = c.next_req(3);
    let op = Cluster::open_op(3, "a", COLLOCATED, Duration::ZERO);
    let DirReply::Opened { ckpt } = c.request_as(3, req, op.clone()) else {
        panic!("open refused")
    };
    // Within the memory a retry is answered, not applied again, however late it comes.
    c.run_for(REPLY_MEMORY / 2);
    c.request_as(3, req, op.clone());
    assert_eq!(c.entry(1, ckpt.instance).unwrap().openers[&3], 1);
    // The retry counted as a use: the memory runs from it, then lapses.
    c.run_for(REPLY_MEMORY / 2 + HEARTBEAT);
    c.request_as(3, req, op.clone());
    assert_eq!(c.entry(1, ckpt.instance).unwrap().openers[&3], 1);
    c.run_for(REPLY_MEMORY + HEARTBEAT);
    // Forgotten (no requester retries for this long: ckptd gives up after 30 s), so the
    // same id is now a new request; its incarnation's answers no longer fill the table.
    c.request_as(3, req, op);
    assert_eq!(c.entry(1, ckpt.instance).unwrap().openers[&3], 2);
}

// Close, retention and unlink.

#[test]
fn last_close_and_retention_expiry_delete_the_checkpoint_in_monotonic_time() {
    let mut c = Cluster::three_with_leader();
    let retention = ms(1000);
    let a = c.open_retained(3, "a", NON_COLLOCATED, retention);
    c.open(3, "a", NON_COLLOCATED);
    assert_eq!(c.close(3, a.instance), DirReply::Done);
    c.run_for(retention * 2);
    assert!(c.entry(1, a.instance).is_some(), "one open is left");

    assert_eq!(c.close(3, a.instance), DirReply::Done);
    let closed = c.now;
    assert_eq!(
        c.entry(1, a.instance).unwrap().idle_since,
        Some(closed),
        "retention counts from the last close"
    );
    assert_eq!(
        c.close(3, a.instance),
        DirReply::Failed {
            code: code::NOT_EXIST
        },
        "nothing left to close"
    );
    c.run_for(retention - STEP);
    assert!(c.entry(1, a.instance).is_some());
    assert!(c.held(3, a.instance).is_some());
    c.step(STEP);
    assert!(c.entry(1, a.instance).is_none());
    assert!(c.entry(2, a.instance).is_none(), "the standby hears of it");
    for n in [1, 2, 3] {
        assert!(
            c.held(n, a.instance).is_none(),
            "node {n} is told to drop it"
        );
    }
}

#[test]
fn reopen_within_retention_keeps_the_checkpoint() {
    let mut c = Cluster::three_with_leader();
    let a = c.open_retained(3, "a", NON_COLLOCATED, ms(300));
    c.close(3, a.instance);
    c.run_for(ms(200));
    let again = c.open(3, "a", NON_COLLOCATED);
    assert_eq!(again.instance, a.instance);
    c.run_for(ms(1000));
    assert_eq!(c.entry(1, a.instance).unwrap().idle_since, None);
}

#[test]
fn leader_tick_deadline_is_the_next_heartbeat_or_an_earlier_retention_expiry() {
    let mut c = Cluster::new(&[1], &[1]);
    c.run_for(ELECTION + STEP);
    assert!(c.dir(1).is_leader());
    let a = c.open_retained(1, "a", COLLOCATED, ms(30));
    c.close(1, a.instance);
    let closed = c.now;
    let next = c.tick(1);
    assert!(next > c.now);
    assert!(
        next <= closed + ms(30),
        "retention due at +30 ms, deadline {next:?}"
    );

    c.run_for(ms(40));
    assert!(c.entry(1, a.instance).is_none());
    let beat = c.tick(1);
    assert!(
        beat > c.now && beat <= c.now + HEARTBEAT,
        "{beat:?} at {:?}",
        c.now
    );
    c.now += STEP; // a tick early does not push the heartbeat out
    assert_eq!(c.tick(1), beat);
}

#[test]
fn unlink_frees_the_name_while_the_instance_lives_until_its_last_close() {
    let mut c = Cluster::three_with_leader();
    let old = c.open_retained(3, "a", NON_COLLOCATED, ms(60_000));
    assert_eq!(
        c.request(
            3,
            DirOp::Unlink {
                name: "a".to_owned()
            }
        ),
        DirReply::Done
    );
    let e = c.entry(1, old.instance).unwrap();
    assert!(e.unlinked);
    assert!(
        c.held(3, old.instance).unwrap().unlinked,
        "replicas are told"
    );
    assert_eq!(
        c.request(
            3,
            DirOp::Unlink {
                name: "a".to_owned()
            }
        ),
        DirReply::Failed {
            code: code::NOT_EXIST
        },
        "the name is gone"
    );
    let plain = DirOp::Open {
        name: "a".to_owned(),
        attrs: None,
        flags: 0,
        node: 2,
    };
    assert_eq!(
        c.request(2, plain),
        DirReply::Failed {
            code: code::NOT_EXIST
        }
    );
    assert_eq!(
        c.request(
            3,
            DirOp::SetRetention {
                instance: old.instance,
                retention: 1
            }
        ),
        DirReply::Failed {
            code: code::BAD_OPERATION
        }
    );

    let new = c.open(2, "a", NON_COLLOCATED);
    assert_ne!(
        new.instance, old.instance,
        "the free name makes a new checkpoint"
    );

    // The last close deletes the unlinked instance at once, despite its retention.
    assert_eq!(c.close(3, old.instance), DirReply::Done);
    assert!(c.entry(1, old.instance).is_none());
    assert!(c.held(3, old.instance).is_none());
    assert!(c.entry(1, new.instance).is_some());
}

// Node death, promotion and positions.

#[test]
fn opens_sets_a_nodes_count_which_stops_or_starts_retention_and_places_like_an_open() {
    let mut c = Cluster::three_with_leader();
    let retention = ms(1000);
    let pay = c.open_retained(3, "pay", NON_COLLOCATED, retention);
    assert_eq!(c.close(3, pay.instance), DirReply::Done);
    assert_eq!(c.entry(1, pay.instance).unwrap().idle_since, Some(c.now));
    let opens = |instance, node, count| DirOp::Opens {
        instance,
        node,
        count,
    };

    // Node 3's agents still hold two opens (the table lost them): the count comes back,
    // and retention stops.
    assert_eq!(c.request(3, opens(pay.instance, 3, 2)), DirReply::Done);
    let e = c.entry(1, pay.instance).unwrap();
    assert_eq!(e.openers, BTreeMap::from([(3, 2)]));
    assert_eq!(e.idle_since, None);
    c.run_for(retention * 2);
    assert!(c.entry(1, pay.instance).is_some(), "still open on node 3");
    assert_eq!(c.table(2), c.table(1), "the standby has the same table");

    // Down to none: retention starts from then, and deletes it.
    assert_eq!(c.request(3, opens(pay.instance, 3, 0)), DirReply::Done);
    let e = c.entry(1, pay.instance).unwrap();
    assert!(e.openers.is_empty());
    assert_eq!(e.idle_since, Some(c.now));
    c.run_for(retention);
    assert!(c.entry(1, pay.instance).is_none(), "retention deleted it");
    assert_eq!(
        c.request(3, opens(pay.instance, 3, 1)),
        DirReply::Failed {
            code: code::NOT_EXIST
        },
        "a deleted checkpoint stays deleted"
    );

    // A collocated checkpoint gets a replica on the node, as an open would give it.
    let col = c.open(2, "col", COLLOCATED);
    assert_eq!(col.replicas, [2]);
    assert_eq!(c.request(3, opens(col.instance, 3, 1)), DirReply::Done);
    assert_eq!(c.entry(1, col.instance).unwrap().replicas, [2, 3]);
    assert_eq!(c.held(3, col.instance).unwrap().replicas, [2, 3]);

    // An unlinked checkpoint whose last opens go is deleted at once.
    assert_eq!(
        c.request(1, DirOp::Unlink { name: "col".into() }),
        DirReply::Done
    );
    assert_eq!(c.close(2, col.instance), DirReply::Done);
    assert_eq!(c.request(3, opens(col.instance, 3, 0)), DirReply::Done);
    assert!(c.entry(1, col.instance).is_none());
}

#[test]
fn node_death_closes_its_opens_and_removes_its_replicas_cluster_wide() {
    let mut c = Cluster::three_with_leader();
    let col = c.open(3, "col", COLLOCATED);
    c.open(3, "col", COLLOCATED);
    c.open(2, "col", COLLOCATED);
    let pay = c.open_retained(3, "pay", NON_COLLOCATED, ms(60_000));
    c.report(3, &[(pay.instance, pay.term, 5)]);
    assert_eq!(c.dir(1).position(pay.instance, 3), Some((pay.term, 5)));

    c.kill(3);
    assert_eq!(
        c.dir(1).position(pay.instance, 3),
        None,
        "its reports die with it"
    );
    let e = c.entry(1, col.instance).unwrap();
    assert_eq!(e.openers, BTreeMap::from([(2, 1)]));
    assert_eq!(e.replicas, [2]);
    assert_eq!(c.held(2, col.instance).unwrap().replicas, [2]);

    let e = c.entry(1, pay.instance).unwrap();
    assert!(e.openers.is_empty());
    assert_eq!(e.idle_since, Some(c.now), "its retention starts");
    assert_eq!(e.replicas, [1, 2]);
    assert_eq!(c.table(2), c.table(1), "the standby has the same table");
}

#[test]
fn death_of_the_last_opener_deletes_an_unlinked_checkpoint() {
    let mut c = Cluster::three_with_leader();
    let a = c.open_retained(3, "a", NON_COLLOCATED, ms(60_000));
    c.request(
        3,
        DirOp::Unlink {
            name: "a".to_owned(),
        },
    );
    c.kill(3);
    assert!(c.entry(1, a.instance).is_none(), "as its last close would");
    assert!(c.held(1, a.instance).is_none());
    assert!(c.held(2, a.instance).is_none());
}

#[test]
fn primary_death_promotes_the_highest_reported_position_not_the_lowest_id() {
    let mut c = Cluster::three_with_leader();
    let higher_seq = c.open(3, "higher_seq", NON_COLLOCATED);
    let tie = c.open(3, "tie", NON_COLLOCATED);
    let silent = c.open(3, "silent", NON_COLLOCATED);
    let snapshot = c.open(3, "snapshot", NON_COLLOCATED);
    let newer_term = c.open(3, "newer_term", NON_COLLOCATED);
    let reported = c.open(3, "reported", NON_COLLOCATED);

    c.report(1, &[(higher_seq.instance, higher_seq.term, 40)]);
    c.report(2, &[(higher_seq.instance, higher_seq.term, 50)]);
    c.report(1, &[(tie.instance, tie.term, 50)]);
    c.report(2, &[(tie.instance, tie.term, 50)]);
    c.report(2, &[(snapshot.instance, snapshot.term, INCOMPLETE)]);
    c.report(1, &[(newer_term.instance, newer_term.term - 1, 999)]);
    c.report(2, &[(newer_term.instance, newer_term.term, 1)]);
    c.report(2, &[(reported.instance, reported.term, 0)]);
    assert_eq!(
        c.dir(1).position(higher_seq.instance, 2),
        Some((higher_seq.term, 50))
    );

    c.kill(3);
    let primary = |c: &Cluster, a: &CkptAssign| c.entry(1, a.instance).unwrap().primary;
    assert_eq!(
        primary(&c, &silent),
        None,
        "a choice waits for the reports of replicas in sync"
    );
    c.run_for(POSITIONS_WAIT);
    assert_eq!(primary(&c, &higher_seq), Some(2), "the higher seq wins");
    assert_eq!(primary(&c, &tie), Some(1), "a tie goes to the lowest id");
    assert_eq!(primary(&c, &silent), Some(1), "no reports: the lowest id");
    assert_eq!(
        primary(&c, &snapshot),
        Some(1),
        "a half-applied snapshot ranks last"
    );
    assert_eq!(
        primary(&c, &newer_term),
        Some(2),
        "the term counts before the seq"
    );
    assert_eq!(
        primary(&c, &reported),
        Some(2),
        "any report ranks above none"
    );

    for a in [
        &higher_seq,
        &tie,
        &silent,
        &snapshot,
        &newer_term,
        &reported,
    ] {
        let e = c.entry(1, a.instance).unwrap();
        assert!(e.term > a.term, "a promotion mints a new term");
        assert_eq!(e.replicas, [1, 2]);
        assert_eq!(c.held(2, a.instance).unwrap().primary, e.primary);
        assert_eq!(c.held(2, a.instance).unwrap().term, e.term);
    }
}

#[test]
fn a_set_that_shrinks_by_a_death_under_a_live_primary_goes_on_in_a_new_term() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    let col = c.open(3, "col", COLLOCATED);
    c.open(2, "col", COLLOCATED);
    c.request(
        3,
        DirOp::SetActive {
            instance: col.instance,
            node: 3,
        },
    );
    let col_term = c.entry(1, col.instance).unwrap().term;
    c.report(2, &[(a.instance, a.term, 5)]);

    c.kill(2);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(
        (e.replicas.as_slice(), e.primary),
        ([1, 3].as_slice(), Some(3))
    );
    assert!(
        e.term > a.term,
        "what the smaller set acknowledges must be told apart from what node 2 held"
    );
    assert_eq!(
        e.departed.get(&2),
        Some(&(a.term, 5)),
        "node 2 left holding its last report, of the old term"
    );
    for n in [1, 3] {
        assert_eq!(c.held(n, a.instance).unwrap().term, e.term);
        assert_eq!(c.held(n, a.instance).unwrap().primary, Some(3));
    }
    let e = c.entry(1, col.instance).unwrap();
    assert_eq!(
        (e.replicas.as_slice(), e.primary),
        ([3].as_slice(), Some(3))
    );
    assert!(e.term > col_term, "a collocated set shrinks the same way");

    // The primary dies: the replica in sync takes over in a new term; node 2, placed
    // back meanwhile, resyncs from it.
    let before = c.entry(1, a.instance).unwrap().term;
    c.report(1, &[(a.instance, before, 9)]);
    c.start(2);
    c.connect_all();
    c.run_for(ELECTION * 4);
    let t = c.entry(1, a.instance).unwrap().term;
    c.kill(3);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, Some(1), "the replica in sync takes over: {e:?}");
    assert!(e.term > t);
    assert!(
        e.evicted.contains_key(&2),
        "node 2, back since, resyncs from the new primary: {e:?}"
    );
}

#[test]
fn collocated_checkpoint_waits_for_active_replica_set_after_its_primary_dies() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", COLLOCATED);
    c.open(2, "a", COLLOCATED);
    c.request(
        3,
        DirOp::SetActive {
            instance: a.instance,
            node: 3,
        },
    );
    c.kill(3);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, None);
    assert_eq!(e.replicas, [2]);
}

#[test]
fn positions_are_kept_for_the_reporting_node_and_its_replicas_only() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    let d = c.open(2, "d", NON_COLLOCATED);
    c.report(
        3,
        &[(a.instance, a.term, 7), (d.instance, d.term, 8), (99, 1, 1)],
    );
    assert_eq!(c.dir(1).position(a.instance, 3), Some((a.term, 7)));
    assert_eq!(
        c.dir(1).position(d.instance, 3),
        None,
        "3 holds no replica of d"
    );
    assert_eq!(c.dir(1).position(99, 3), None, "no such checkpoint");

    // A frame naming another node than its sender is ignored.
    c.queue.push_back((
        3,
        1,
        Frame::Positions {
            node: 2,
            items: vec![(a.instance, a.term, 100)],
        },
    ));
    c.deliver();
    assert_eq!(c.dir(1).position(a.instance, 2), None);

    // A later report replaces the earlier one.
    c.report(3, &[(a.instance, a.term, 9)]);
    assert_eq!(c.dir(1).position(a.instance, 3), Some((a.term, 9)));
}

// Eviction.

#[test]
fn evict_mints_a_higher_term_and_removes_the_node() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    assert_eq!(c.evict(3, a.instance, 2, a.term), DirReply::Done);

    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.replicas, [1, 3]);
    assert_eq!(e.primary, Some(3));
    assert!(e.term > a.term);
    assert_eq!(e.evicted, BTreeMap::from([(2, e.term)]));
    assert!(
        c.held(2, a.instance).is_none(),
        "the evicted node is told to drop it"
    );
    assert!(
        c.live[&2].log.iter().any(|o| matches!(o, Output::Assign(x)
            if x.instance == a.instance && x.primary == Some(3) && !x.replicas.contains(&2))),
        "and where the primary is now"
    );
    for n in [1, 3] {
        let held = c.held(n, a.instance).unwrap();
        assert_eq!((held.replicas.as_slice(), held.term), (&[1, 3][..], e.term));
    }
    assert_eq!(c.table(2), c.table(1), "replicated to the standby");
}

#[test]
fn a_lone_primary_that_dies_is_never_replaced_by_a_replica_from_an_older_term() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    c.report(1, &[(a.instance, a.term, 5)]);
    c.report(2, &[(a.instance, a.term, 5)]);
    // The primary evicts both replicas (they stopped acknowledging): it is alone in the
    // set, so its synchronizes confirm writes nobody else holds, and it never reports them.
    assert_eq!(c.evict(3, a.instance, 2, a.term), DirReply::Done);
    let t = c.entry(1, a.instance).unwrap().term;
    assert_eq!(c.evict(3, a.instance, 1, t), DirReply::Done);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(
        (e.replicas.as_slice(), e.primary),
        ([3].as_slice(), Some(3))
    );
    let lone = e.term;

    // It dies; the directors come back into the set (node 2 reconnects) with what they
    // held from the first term.
    c.kill(3);
    c.run_for(ELECTION * 4);
    c.disconnect(1, 2);
    c.connect(1, 2);
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("nodes 1 and 2 keep a leader");
    assert!(
        c.entry(leader, a.instance).unwrap().replicas.contains(&2),
        "a returning director is placed again"
    );
    c.report(1, &[(a.instance, a.term, 5)]);
    c.report(2, &[(a.instance, a.term, 5)]);
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("nodes 1 and 2 keep a leader");
    let e = c.entry(leader, a.instance).unwrap();
    assert_eq!(
        e.primary, None,
        "a replica from term {} was promoted over the lone primary of term {lone}: {e:?}",
        a.term
    );
    assert!(e.departed.get(&3).is_some_and(|p| *p >= (lone, 0)));

    // The primary's node comes back without those writes (its shm was wiped and the
    // replica made anew from an old copy): they are gone for good, so the checkpoint
    // gets a primary again instead of waiting forever.
    c.start(3);
    c.connect_all();
    c.run_for(ELECTION * 4);
    c.report(3, &[(a.instance, a.term, 1)]);
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("a leader");
    let e = c.entry(leader, a.instance).unwrap();
    assert!(e.departed.is_empty(), "{e:?}");
    assert!(e.primary.is_some(), "left without a primary: {e:?}");
}

#[test]
fn a_lone_primary_that_comes_back_with_its_state_is_placed_again_and_promoted() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    c.report(1, &[(a.instance, a.term, 5)]);
    c.report(2, &[(a.instance, a.term, 5)]);
    // Node 3, the primary, evicts both others: alone, it confirms writes nobody else has.
    assert_eq!(c.evict(3, a.instance, 2, a.term), DirReply::Done);
    let t = c.entry(1, a.instance).unwrap().term;
    assert_eq!(c.evict(3, a.instance, 1, t), DirReply::Done);
    let lone = c.entry(1, a.instance).unwrap().term;
    c.report(3, &[(a.instance, lone, 9)]);

    // It is cut off long enough to be declared dead; the directors wait for it.
    c.isolate(3);
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("nodes 1 and 2 keep a leader");
    let e = c.entry(leader, a.instance).unwrap();
    assert!(!e.replicas.contains(&3) && e.primary.is_none(), "{e:?}");

    // Back, with what it held: a payload node is no director, yet the checkpoint waits
    // for it. Told the placement without it, its daemon would drop that state.
    c.connect_all();
    c.run_for(ELECTION * 4);
    c.report(3, &[(a.instance, lone, 9)]);
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("a leader");
    let e = c.entry(leader, a.instance).unwrap();
    assert!(e.replicas.contains(&3), "not placed again: {e:?}");
    assert_eq!(e.primary, Some(3), "what it holds is all there is: {e:?}");
    assert!(c.held(3, a.instance).unwrap().replicas.contains(&3));
}

#[test]
fn a_primary_that_dies_before_it_synced_anyone_leaves_the_promotion_to_the_replica_it_replaced() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5], &[1, 2]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(1); 5]);
    let a = c.open(3, "a", NON_COLLOCATED);
    assert_eq!(
        (a.primary, a.replicas.as_slice()),
        (Some(3), [1, 2, 3].as_slice())
    );
    // Node 3, the primary, evicts node 1; nodes 2 and 3 then hold seq 9 of the new term,
    // node 1 what it had before.
    c.report(1, &[(a.instance, a.term, 5)]);
    assert_eq!(c.evict(3, a.instance, 1, a.term), DirReply::Done);
    let t = c.entry(1, a.instance).unwrap().term;
    c.report(2, &[(a.instance, t, 9)]);
    c.report(3, &[(a.instance, t, 9)]);

    // Node 3 is cut off: node 2, in sync, is promoted over node 1.
    c.isolate(3);
    c.run_for(ELECTION * 4);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, Some(2), "{e:?}");

    // Node 2 dies before node 1 resynced from it, and comes back without its replica.
    let t2 = c.entry(1, a.instance).unwrap().term;
    let e = c.restart_wiped(2, &[1, 4, 5], (a.instance, a.term, 5));
    assert_eq!(
        e.primary, None,
        "node 1, which lacks what node 3 held at seq 9, was promoted: {e:?}"
    );

    // Node 3 comes back with it: placed again and promoted.
    let e = c.back_with(3, (a.instance, t, 9));
    assert_eq!(e.primary, Some(3), "{e:?}");
    assert!(e.term > t2);
}

#[test]
fn a_replica_dropped_by_a_leader_without_its_report_is_waited_for_once_the_primary_is_gone() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5], &[1, 2]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(1); 5]);
    let a = c.open_reported(3, "a", 3, &[1, 2, 3]);

    // Node 1 is cut off: node 2 leads and drops it. Nodes 2 and 3 go on to seq 9 in the
    // new term; node 1 keeps what it had.
    c.isolate(1);
    c.run_for(ELECTION * 4);
    let e = c.entry(2, a.instance).unwrap();
    assert_eq!(c.dir(2).leader(), Some(2));
    assert_eq!(e.replicas, [2, 3], "{e:?}");
    let t = e.term;
    c.report(2, &[(a.instance, t, 9)]);
    c.report(3, &[(a.instance, t, 9)]);

    // Node 1 comes back and is placed again with its old copy, marked to resync.
    c.connect_all();
    c.run_for(ELECTION);
    c.report(1, &[(a.instance, a.term, 5)]);
    c.run_for(HEARTBEAT);
    let e = c.entry(2, a.instance).unwrap();
    assert!(
        e.replicas.contains(&1) && e.evicted.contains_key(&1),
        "{e:?}"
    );

    // Node 2 is cut off: node 1 leads with node 2's table but none of its reports, and
    // drops it while node 3 is primary. Node 3 then dies and comes back without its
    // replica: node 2 is the only one left that held seq 9.
    c.isolate(2);
    c.run_for(ELECTION * 4);
    assert_eq!(c.dir(1).leader(), Some(1));
    let e = c.entry(1, a.instance).unwrap();
    assert!(!e.replicas.contains(&2), "{e:?}");
    let e = c.restart_wiped(3, &[1, 4, 5], (a.instance, a.term, 5));
    assert_eq!(
        e.primary, None,
        "node 1, which lacks what node 2 held at seq 9, was promoted: {e:?}"
    );

    // Node 2 comes back with it: placed again and promoted.
    let e = c.back_with(2, (a.instance, t, 9));
    assert_eq!(e.primary, Some(2), "{e:?}");
}

#[test]
fn a_director_dropped_while_away_is_placed_again_when_it_is_elected_before_it_reports() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(1); 3]);
    let a = c.open_reported(1, "a", 1, &[1, 2, 3]);

    // Node 1, the primary, is cut off: node 2 leads, drops it (and its opens), and
    // promotes node 3, which holds the most.
    c.isolate(1);
    while c.dir(2).leader() != Some(2) {
        assert!(c.now < ELECTION * 8, "node 2 leads");
        c.step(STEP);
    }
    c.report(2, &[(a.instance, a.term, 4)]);
    c.report(3, &[(a.instance, a.term, 5)]);
    c.run_for(POSITIONS_WAIT + HEARTBEAT);
    let e = c.entry(2, a.instance).unwrap();
    assert_eq!(
        (e.primary, e.replicas.as_slice()),
        (Some(3), [2, 3].as_slice())
    );
    assert!(e.departed.contains_key(&1), "{e:?}");

    // Node 2 dies; node 1 comes back to node 3 alone and is elected with node 3's table,
    // in which it has no replica. It still holds what it held.
    c.kill(2);
    c.connect(1, 3);
    c.run_for(ELECTION * 4);
    assert_eq!(c.dir(1).leader(), Some(1));
    assert_eq!(c.dir(3).leader(), Some(1));
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, Some(3), "{e:?}");
    assert!(
        e.replicas.contains(&1) && e.evicted.contains_key(&1),
        "a director the new leader reaches is placed again at once, marked to resync: {e:?}"
    );

    // Its daemon counts its agents' opens again before it reports: told the placement
    // without it, it would drop its replica (simulation seed 60873: the only copy of a
    // synchronized write besides a wiped primary's).
    let opens = DirOp::Opens {
        instance: a.instance,
        node: 1,
        count: 1,
    };
    assert_eq!(c.request(1, opens), DirReply::Done);
    c.run_for(HEARTBEAT);
    let held = c.held(1, a.instance).expect("node 1 keeps its replica");
    assert!(held.replicas.contains(&1), "{held:?}");
}

#[test]
fn a_director_placed_again_in_a_set_without_primary_is_not_ranked_as_in_sync() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    c.report(2, &[(a.instance, a.term, 5)]);
    // Node 2 is cut off and dropped; node 3 gives the role up and node 1 takes it.
    c.isolate(2);
    c.run_for(ELECTION * 4);
    let t = c.entry(1, a.instance).unwrap().term;
    let resign = |node, term| DirOp::Resign {
        instance: a.instance,
        node,
        term,
    };
    assert_eq!(c.request(3, resign(3, t)), DirReply::Done);
    c.run_for(HEARTBEAT);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(
        (e.primary, e.replicas.as_slice()),
        (Some(1), [1, 3].as_slice())
    );
    // Both hold more than node 2; then node 1 gives the role up too (it is marked; node 3,
    // which resynced from it, stays in sync).
    c.report(1, &[(a.instance, e.term, 20)]);
    c.report(3, &[(a.instance, e.term, 20)]);
    assert_eq!(c.request(1, resign(1, e.term)), DirReply::Done);

    // Node 2 comes back before the next promotion, with what it held when it left.
    c.connect(1, 2);
    c.connect(2, 3);
    c.report(2, &[(a.instance, a.term, 5)]);
    let e = c.entry(1, a.instance).unwrap();
    assert!(e.replicas.contains(&2));
    assert!(
        e.evicted.contains_key(&2),
        "a director placed again among others must resync: {e:?}"
    );
    c.run_for(POSITIONS_WAIT + HEARTBEAT);
    let e = c.entry(1, a.instance).unwrap();
    assert!(
        matches!(e.primary, Some(1 | 3)),
        "node 2, holding less, was promoted: {e:?}"
    );
}

#[test]
fn a_replica_in_a_term_the_table_never_recorded_makes_the_leader_decide_again_from_reports() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    // Node 2 holds a term this table does not know (a decision of a leader whose table
    // did not reach this one).
    c.report(2, &[(a.instance, a.term + 1, 7)]);
    let e = c.entry(1, a.instance).unwrap();
    assert!(
        e.term > a.term + 1,
        "a new term, above the unknown one: {e:?}"
    );
    assert_eq!(e.primary, None, "{e:?}");
    assert_eq!(e.evicted.len(), 3, "every replica must resync: {e:?}");
    assert_eq!(c.held(3, a.instance).unwrap().primary, None);

    // Nobody is in sync: the choice waits for every replica's report, longer than for
    // replicas in sync, then takes the most up to date.
    c.run_for(POSITIONS_WAIT * 2);
    assert_eq!(
        c.entry(1, a.instance).unwrap().primary,
        None,
        "node 1 and 3 unheard"
    );
    c.report(1, &[(a.instance, a.term, 9)]);
    c.report(3, &[(a.instance, a.term, 9)]);
    c.run_for(HEARTBEAT);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, Some(2), "the newest term wins: {e:?}");
    assert_eq!(c.held(1, a.instance).unwrap().primary, Some(2));
}

#[test]
fn without_replicas_in_sync_a_choice_is_made_at_last_without_a_missing_report() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    c.report(2, &[(a.instance, a.term + 1, 7)]);
    c.report(1, &[(a.instance, a.term, 9)]);
    // Node 3 never reports (its replica could not be made): the checkpoint is not left
    // without a primary for good.
    c.run_for(POSITIONS_WAIT * 5);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, Some(2), "{e:?}");
}

#[test]
fn an_evicted_director_still_connected_is_placed_again_later_and_must_resync() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    assert_eq!(c.evict(3, a.instance, 2, a.term), DirReply::Done);
    let evicted = c.entry(1, a.instance).unwrap();
    assert_eq!(evicted.replicas, [1, 3]);

    // Not at once: a node that could not keep up gets a pause first.
    c.run_for(Duration::from_secs(2));
    assert_eq!(c.entry(1, a.instance).unwrap().replicas, [1, 3]);
    c.run_for(Duration::from_secs(4));
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.replicas, [1, 2, 3], "placed again after the pause");
    assert!(e.term > evicted.term, "in a new term");
    assert_eq!(
        e.evicted.get(&2),
        Some(&e.term),
        "it must resync before it counts as in sync"
    );
    assert_eq!(e.primary, Some(3));
    assert!(c.held(2, a.instance).is_some(), "node 2 is told to hold it");

    // Evicted again at once (still unhealthy): the next pause is twice as long.
    assert_eq!(c.evict(3, a.instance, 2, e.term), DirReply::Done);
    c.run_for(Duration::from_secs(7));
    assert_eq!(c.entry(1, a.instance).unwrap().replicas, [1, 3]);
    c.run_for(Duration::from_secs(4));
    assert_eq!(c.entry(1, a.instance).unwrap().replicas, [1, 2, 3]);
}

/// The readmit schedule and its doubling backoff are part of the replicated table: a
/// standby that takes over neither readmits early nor forgets how often the node was
/// evicted since it last resynced.
#[test]
fn a_new_leader_keeps_the_readmit_schedule_and_backoff_of_an_evicted_director() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    let in_set =
        |c: &Cluster, leader: u32| c.entry(leader, a.instance).unwrap().replicas.contains(&2);
    // Evicted, placed again after 5 s, evicted again at once: the next pause is 10 s.
    assert_eq!(c.evict(3, a.instance, 2, a.term), DirReply::Done);
    c.run_for(Duration::from_secs(6));
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.replicas, [1, 2, 3]);
    assert_eq!(c.evict(3, a.instance, 2, e.term), DirReply::Done);
    let copy = c.entry(2, a.instance).unwrap();
    assert_eq!(
        copy.readmit.get(&2).map(|r| r.0),
        Some(2),
        "the standby's copy counts both evictions: {copy:?}"
    );

    // The leader dies a second later. Node 2 leads, and places itself again only once
    // the 10 s are up, not 5 s after it took over.
    c.run_for(Duration::from_secs(1));
    c.kill(1);
    c.run_for(Duration::from_secs(7));
    assert_eq!(c.leaders(), [Some(2), Some(2)]);
    assert!(!in_set(&c, 2), "readmitted before its 10 s were up");
    c.run_for(Duration::from_secs(3));
    assert!(in_set(&c, 2), "placed again after 10 s");

    // Evicted once more before it resynced: the count survived, so 20 s now.
    let e = c.entry(2, a.instance).unwrap();
    assert_eq!(c.evict(3, a.instance, 2, e.term), DirReply::Done);
    c.run_for(Duration::from_secs(18));
    assert!(!in_set(&c, 2), "readmitted before its 20 s were up");
    c.run_for(Duration::from_secs(3));
    assert!(in_set(&c, 2), "placed again after 20 s");
}

#[test]
fn evict_refuses_stale_terms_non_members_and_non_primaries_and_is_idempotent() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    let bad = DirReply::Failed {
        code: code::BAD_OPERATION,
    };
    assert_eq!(
        c.evict(3, a.instance, 2, a.term + 1),
        bad,
        "not the current term"
    );
    assert_eq!(
        c.evict(1, a.instance, 2, a.term),
        bad,
        "1 is not the primary"
    );
    assert_eq!(c.evict(3, a.instance, 3, a.term), bad, "the primary itself");
    assert_eq!(c.evict(3, a.instance, 4, a.term), bad, "never in the set");
    assert_eq!(
        c.evict(3, 12345, 2, a.term),
        DirReply::Failed {
            code: code::NOT_EXIST
        }
    );
    assert_eq!(
        c.entry(1, a.instance).unwrap().term,
        a.term,
        "nothing changed"
    );

    assert_eq!(c.evict(3, a.instance, 2, a.term), DirReply::Done);
    let term = c.entry(1, a.instance).unwrap().term;
    assert_eq!(
        c.evict(3, a.instance, 2, a.term),
        DirReply::Done,
        "already gone, asked again in the old term"
    );
    assert_eq!(
        c.evict(3, a.instance, 1, a.term),
        bad,
        "the old term evicts nobody else"
    );
    assert_eq!(
        c.evict(1, a.instance, 2, term),
        bad,
        "an eviction done is done only for the primary that asked for it"
    );
    assert_eq!(c.entry(1, a.instance).unwrap().term, term);
}

#[test]
fn evicted_node_is_not_promoted_by_a_primary_death_before_it_resyncs() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    c.report(2, &[(a.instance, a.term, 1000)]);
    c.evict(3, a.instance, 2, a.term);
    let evicted_in = c.entry(1, a.instance).unwrap().term;
    assert_eq!(c.dir(1).position(a.instance, 2), None, "its report is void");

    // Node 2 opens it again, which adds its replica back, and reports positions that
    // are not a resync: a snapshot under way, then (late) a high seq of its old term.
    let back = c.open(2, "a", NON_COLLOCATED);
    assert_eq!(back.replicas, [1, 2, 3]);
    c.report(2, &[(a.instance, evicted_in, INCOMPLETE)]);
    assert!(c.entry(1, a.instance).unwrap().evicted.contains_key(&2));
    c.report(2, &[(a.instance, a.term, 2000)]);
    assert_eq!(c.dir(1).position(a.instance, 2), Some((a.term, 2000)));
    assert!(c.entry(1, a.instance).unwrap().evicted.contains_key(&2));
    assert!(c.entry(2, a.instance).unwrap().evicted.contains_key(&2));

    c.kill(3);
    c.run_for(POSITIONS_WAIT); // a fresh leader waits for the survivors' reports
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, Some(1), "node 2 has not resynced");
    assert!(e.term > evicted_in);
}

#[test]
fn evicted_node_that_resynced_in_the_new_term_is_promotable_again() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    c.evict(3, a.instance, 2, a.term);
    let evicted_in = c.entry(1, a.instance).unwrap().term;
    let back = c.open(2, "a", NON_COLLOCATED);
    assert!(back.term > evicted_in, "the set changes in a new term");
    c.report(2, &[(a.instance, evicted_in, 10)]);
    assert!(
        !c.entry(1, a.instance).unwrap().evicted.is_empty(),
        "the term it left proves nothing"
    );
    c.report(2, &[(a.instance, back.term, 10)]);
    assert!(c.entry(1, a.instance).unwrap().evicted.is_empty());
    assert!(
        c.entry(2, a.instance).unwrap().evicted.is_empty(),
        "the standby hears of the resync"
    );

    c.report(1, &[(a.instance, evicted_in, 5)]);
    c.kill(3);
    assert_eq!(c.entry(1, a.instance).unwrap().primary, Some(2));
}

#[test]
fn resync_reported_on_the_leaders_own_node_reaches_the_standby_on_the_next_tick() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    assert_eq!(c.evict(3, a.instance, 1, a.term), DirReply::Done);
    assert!(c.held(1, a.instance).is_none());
    let back = c.open(1, "a", NON_COLLOCATED);
    assert_eq!(back.replicas, [1, 2, 3]);
    assert!(c.entry(2, a.instance).unwrap().evicted.contains_key(&1));

    c.report(1, &[(a.instance, back.term, 4)]);
    assert!(c.entry(1, a.instance).unwrap().evicted.is_empty());
    c.step(STEP);
    assert!(c.entry(2, a.instance).unwrap().evicted.is_empty());
    assert_eq!(c.table(2), c.table(1));
}

#[test]
fn evicted_replica_of_a_collocated_checkpoint_is_not_made_active_before_it_resyncs() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", COLLOCATED);
    c.open(2, "a", COLLOCATED);
    let set_active = |node| DirOp::SetActive {
        instance: a.instance,
        node,
    };
    assert_eq!(c.request(3, set_active(3)), DirReply::Done);
    let t1 = c.entry(1, a.instance).unwrap().term;
    assert_eq!(c.evict(3, a.instance, 2, t1), DirReply::Done);
    let t2 = c.entry(1, a.instance).unwrap().term;
    assert_eq!(c.entry(1, a.instance).unwrap().replicas, [3]);

    // Its next open brings the replica back (in a new term), but it is not eligible yet.
    let back = c.open(2, "a", COLLOCATED);
    assert_eq!(back.replicas, [2, 3]);
    assert!(back.term > t2);
    assert_eq!(
        c.request(2, set_active(2)),
        DirReply::Failed {
            code: code::TRY_AGAIN
        }
    );
    c.report(2, &[(a.instance, t2, 3)]);
    assert_eq!(
        c.request(2, set_active(2)),
        DirReply::Failed {
            code: code::TRY_AGAIN
        },
        "a position in the term it was evicted in is not a resync"
    );
    c.report(2, &[(a.instance, back.term, 3)]);
    assert_eq!(c.request(2, set_active(2)), DirReply::Done);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(e.primary, Some(2));
    assert!(e.term > t2);
}

// Failover and terms.

#[test]
fn standby_director_leads_after_the_leader_dies_with_the_same_table() {
    let mut c = Cluster::three_with_leader();
    let pay = c.open(3, "pay", NON_COLLOCATED);
    let dir = c.open(1, "dir", NON_COLLOCATED);
    let col = c.open(3, "col", COLLOCATED);
    c.open(2, "col", COLLOCATED);
    c.evict(3, pay.instance, 2, pay.term);
    let before = c.table(1);
    assert_eq!(c.table(2), before, "the standby's copy is current");

    c.kill(1);
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(2), Some(2)]);
    assert_eq!(c.dir(2).term(), 2);
    c.run_for(POSITIONS_WAIT); // the new leader waits for the survivors' reports

    let after = c.table(2);
    let ids = |t: &[Entry]| t.iter().map(|e| e.instance).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before), "same instances");

    let pay_now = c.entry(2, pay.instance).unwrap();
    let pay_before = before.iter().find(|e| e.instance == pay.instance).unwrap();
    assert_eq!(
        pay_now.replicas,
        [3],
        "the dead leader's replica is dropped"
    );
    assert_eq!(pay_now.primary, Some(3), "its primary lives");
    assert!(
        pay_now.term > pay_before.term && pay_now.term >> 32 == 2,
        "the set shrank under its live primary: a new term, minted by the new leader"
    );
    assert_eq!(
        pay_now.evicted, pay_before.evicted,
        "the eviction is remembered"
    );

    let dir_now = c.entry(2, dir.instance).unwrap();
    assert_eq!(dir_now.replicas, [2]);
    assert_eq!(
        dir_now.primary,
        Some(2),
        "the standby's replica is promoted"
    );
    assert!(dir_now.term > dir.term);
    assert_eq!(dir_now.term >> 32, 2, "minted by the new leader");
    assert!(
        dir_now.openers.is_empty(),
        "the dead leader's opens are closed"
    );

    assert_eq!(c.entry(2, col.instance).unwrap().replicas, [2, 3]);
    assert_eq!(c.held(3, pay.instance).unwrap().term, pay_now.term);

    // New instances do not collide with the old leader's.
    let fresh = c.open(3, "fresh", NON_COLLOCATED);
    assert!(!ids(&before).contains(&fresh.instance));
}

#[test]
fn retention_continues_on_the_standby_after_failover() {
    let mut c = Cluster::three_with_leader();
    let retention = ms(2000);
    let a = c.open_retained(3, "a", NON_COLLOCATED, retention);
    c.close(3, a.instance);
    let closed = c.now;
    c.run_for(ms(1000));
    c.open(3, "b", NON_COLLOCATED); // the table travels again, a second later

    c.kill(1);
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.dir(2).leader(), Some(2));
    while c.now < closed + retention - STEP {
        c.step(STEP);
    }
    assert!(c.entry(2, a.instance).is_some(), "not early");
    c.run_for(STEP * 2);
    assert!(
        c.entry(2, a.instance).is_none(),
        "counted from the close on the old leader, not from the last table"
    );
    assert!(c.held(3, a.instance).is_none());
}

#[test]
fn set_active_moves_the_primary_of_a_collocated_checkpoint_with_a_new_term() {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", COLLOCATED);
    c.open(2, "a", COLLOCATED);
    let set_active = |instance, node| DirOp::SetActive { instance, node };

    assert_eq!(c.request(3, set_active(a.instance, 3)), DirReply::Done);
    let first = c.entry(1, a.instance).unwrap();
    assert_eq!(first.primary, Some(3));
    assert!(first.term > 0);

    assert_eq!(c.request(2, set_active(a.instance, 2)), DirReply::Done);
    let second = c.entry(1, a.instance).unwrap();
    assert_eq!(second.primary, Some(2));
    assert!(second.term > first.term);
    for n in [2, 3] {
        let held = c.held(n, a.instance).unwrap();
        assert_eq!((held.primary, held.term), (Some(2), second.term));
    }

    assert_eq!(c.request(2, set_active(a.instance, 2)), DirReply::Done);
    assert_eq!(
        c.entry(1, a.instance).unwrap().term,
        second.term,
        "already active: no new term"
    );
    assert_eq!(
        c.request(1, set_active(a.instance, 1)),
        DirReply::Failed {
            code: code::NOT_EXIST
        },
        "node 1 holds no replica"
    );
    let n = c.open(3, "n", NON_COLLOCATED);
    assert_eq!(
        c.request(3, set_active(n.instance, 3)),
        DirReply::Failed {
            code: code::BAD_OPERATION
        }
    );
}

#[test]
fn terms_of_successive_decisions_strictly_increase() {
    let mut c = Cluster::three_with_leader();
    let mut terms = Vec::new();
    let term = |c: &Cluster, leader: u32, instance: u64| c.entry(leader, instance).unwrap().term;

    let pay = c.open(3, "pay", NON_COLLOCATED);
    terms.push(pay.term);
    let col = c.open(3, "col", COLLOCATED);
    c.open(2, "col", COLLOCATED);
    c.request(
        3,
        DirOp::SetActive {
            instance: col.instance,
            node: 3,
        },
    );
    terms.push(term(&c, 1, col.instance));
    c.evict(3, pay.instance, 2, pay.term);
    terms.push(term(&c, 1, pay.instance));
    let dir = c.open(1, "dir", NON_COLLOCATED);
    terms.push(dir.term);
    c.request(
        2,
        DirOp::SetActive {
            instance: col.instance,
            node: 2,
        },
    );
    terms.push(term(&c, 1, col.instance));

    c.kill(1); // the new leader promotes node 2 for "dir"
    c.run_for(ELECTION + HEARTBEAT + POSITIONS_WAIT);
    terms.push(term(&c, 2, dir.instance));
    c.request(
        3,
        DirOp::SetActive {
            instance: col.instance,
            node: 3,
        },
    );
    terms.push(term(&c, 2, col.instance));

    assert!(
        terms.windows(2).all(|w| w[0] < w[1]),
        "terms in decision order: {terms:x?}"
    );
}

/// At most one node considers itself leader at any instant.
fn assert_one_leader_at_most(c: &Cluster) {
    let leading: Vec<u32> = c
        .live
        .iter()
        .filter(|(_, n)| n.sut.is_leader())
        .map(|(id, _)| *id)
        .collect();
    assert!(
        leading.len() <= 1,
        "two leaders at {:?}: {leading:?}",
        c.now
    );
}

#[test]
fn cutting_one_link_never_makes_two_leaders() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    assert_eq!(c.leaders(), [Some(1); 3]);

    c.disconnect(1, 3);
    for _ in 0..500 {
        c.step(STEP);
        assert_one_leader_at_most(&c);
    }
    assert_eq!(
        c.dir(1).leader(),
        Some(1),
        "node 2's promise keeps node 1 leading"
    );
    assert_eq!(c.dir(2).leader(), Some(1));
    assert_eq!(c.dir(3).leader(), None, "node 3 cannot win node 2's vote");

    c.connect(1, 3);
    c.run_for(ELECTION);
    assert_eq!(c.leaders(), [Some(1); 3], "the heal deposes nobody");
    assert_eq!(c.dir(3).term(), 1);
}

#[test]
fn restarted_leader_learns_the_table_and_a_higher_term_before_it_leads_again() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    let a = c.open(3, "a", NON_COLLOCATED);
    let b = c.open(2, "b", NON_COLLOCATED);

    // Node 1 restarts at once, before the others' promises to it lapse.
    c.kill(1);
    c.start(1);
    c.connect_all();
    for _ in 0..400 {
        c.step(STEP);
        assert_one_leader_at_most(&c);
    }
    let leader = c
        .dir(2)
        .leader()
        .expect("the followers of the dead leader elect one");
    assert_eq!(c.leaders(), [Some(leader); 3]);
    assert!(c.dir(leader).term() > 1, "a new directory term");
    for n in [1, 2, 3] {
        let names: Vec<String> = c.table(n).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b"], "node {n} holds the table");
    }
    assert_eq!(c.open(1, "a", NON_COLLOCATED).instance, a.instance);
    assert_eq!(c.open(1, "b", NON_COLLOCATED).instance, b.instance);
    let c_new = c.open(3, "c", NON_COLLOCATED);
    assert!(
        c_new.instance != a.instance && c_new.instance != b.instance,
        "no instance id is minted twice"
    );
}

#[test]
fn answer_waits_until_a_quorum_holds_the_decision() {
    let mut c = Cluster::three_with_leader();
    // Node 1 leads; it can still reach node 3 but nothing from 2 or 3 comes back.
    c.links.remove(&pair(1, 2));
    c.links.remove(&pair(1, 3));
    let req = c.next_req(1);
    let mut out = Vec::new();
    let now = c.now;
    c.live.get_mut(&1).unwrap().sut.request(
        req,
        Cluster::open_op(1, "x", NON_COLLOCATED, ms(0)),
        now,
        &mut out,
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Reply { .. })),
        "no answer before a quorum holds the new table: {out:?}"
    );
    c.absorb(1, out);
    c.deliver();
    c.link(1, 2);
    c.link(1, 3);
    c.run_for(HEARTBEAT * 2);
    assert!(
        c.live[&1].log.iter().any(
            |o| matches!(o, Output::Reply { req: r, result: DirReply::Opened { .. } } if *r == req)
        ),
        "answered once the followers acknowledged it"
    );
}

#[test]
fn two_node_leader_that_restarts_takes_the_table_from_the_other_node() {
    let mut c = Cluster::two_node();
    c.connect_all();
    c.run_for(ELECTION * 2);
    assert_eq!(c.leaders(), [Some(1); 2]);
    let a = c.open(2, "a", NON_COLLOCATED);

    c.kill(1);
    c.run_for(HEARTBEAT);
    c.start(1);
    c.connect_all();
    for _ in 0..400 {
        c.step(STEP);
        assert_one_leader_at_most(&c);
    }
    let leader = c.dir(1).leader().expect("a leader");
    assert_eq!(c.leaders(), [Some(leader); 2]);
    assert_eq!(c.open(1, "a", NON_COLLOCATED).instance, a.instance);
    assert_ne!(c.open(1, "b", NON_COLLOCATED).instance, a.instance);
}

#[test]
fn two_node_member_that_lost_its_table_never_leads_alone_before_it_gets_the_other_ones() {
    let mut c = Cluster::two_node();
    c.connect_all();
    c.run_for(ELECTION * 2);
    assert_eq!(c.leaders(), [Some(1); 2]);
    let a = c.open(2, "a", NON_COLLOCATED);
    let saved = c.save(1).expect("the table changed since the start");

    // Node 2 comes back without its state (its shm was wiped) and connects, but nothing
    // gets through before node 1 dies: it was with node 1, yet never saw its table.
    c.kill(2);
    c.run_for(HEARTBEAT);
    c.start(2);
    c.link(1, 2);
    c.queue.clear();
    c.kill(1);
    c.run_for(ELECTION * 4);
    assert_eq!(
        c.dir(2).leader(),
        None,
        "a node that never held the table led alone and would mint names anew"
    );

    // Node 1 returns with its table: one leader, and the name keeps its instance.
    c.start(1);
    c.restore(1, &saved);
    c.connect_all();
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("a leader");
    assert_eq!(c.leaders(), [Some(leader); 2]);
    assert_eq!(c.open(2, "a", NON_COLLOCATED).instance, a.instance);
}

#[test]
fn a_node_that_lost_its_table_never_completes_a_majority_for_a_stale_candidate() {
    let (mut c, a) = Cluster::three_directors_with_a();
    let stale = c.save(1).expect("the table changed since the start");

    // Node 1 dies; node 2 leads and names "b" (on nodes 2 and 3).
    c.kill(1);
    c.run_for(ELECTION * 4);
    assert_eq!(c.dir(2).leader(), Some(2));
    let b = c.open(3, "b", NON_COLLOCATED);

    // Node 2 comes back without its state; node 1 with its stale table. Together they
    // are a majority of the nodes, but only node 3 holds the table that names "b".
    c.kill(2);
    c.start(2);
    c.start(1);
    c.restore(1, &stale);
    c.connect(1, 2);
    c.run_for(ELECTION * 4);
    assert_eq!(
        c.dir(1).leader(),
        None,
        "a stale director led with the vote of a node that has no table"
    );

    c.connect_all();
    c.assert_one_leader_keeps(1, &[("a", &a), ("b", &b)]);
}

#[test]
fn a_node_that_lost_its_table_does_not_lead_with_a_stale_vote_while_a_node_is_missing() {
    let (mut c, a) = Cluster::three_directors_with_a();
    let stale = c.save(3).expect("the table changed since the start");

    // Node 3 dies; nodes 1 and 2 name "b" (node 1 still leads).
    c.kill(3);
    c.run_for(ELECTION * 2);
    let b = c.open(2, "b", NON_COLLOCATED);
    let newest = c.save(2).expect("the table changed since node 3 left");

    // Node 1 comes back without its state (its shm was wiped), node 3 with its stale
    // table, node 2 not at all. The lowest director, node 1, asks for votes: node 3's
    // grant with its table, and node 1's own, would be a majority that does not meet
    // the one that named "b" in a node that still holds it.
    c.kill(1);
    c.kill(2);
    c.start(1);
    c.start(3);
    c.restore(3, &stale);
    c.connect(1, 3);
    c.run_for(ELECTION * 4);
    assert_eq!(
        [c.dir(1).leader(), c.dir(3).leader()],
        [None, None],
        "a node without a table led with a stale director's vote"
    );

    // Node 2 returns with the newest table: one leader, and both names are kept.
    c.start(2);
    c.restore(2, &newest);
    c.connect_all();
    c.assert_one_leader_keeps(3, &[("a", &a), ("b", &b)]);
}

#[test]
fn a_restarted_daemon_restores_its_table_so_a_majority_restart_forgets_nothing() {
    let mut c = Cluster::new(&[1, 2, 3], &[1, 2, 3]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    let a = c.open(3, "a", NON_COLLOCATED);
    let saved = c.save(3).expect("the table changed since the start");
    assert_eq!(c.save(3), None);

    // Every daemon restarts; only node 3 finds its saved state.
    for n in [1, 2, 3] {
        c.kill(n);
    }
    for n in [1, 2, 3] {
        c.start(n);
    }
    c.restore(3, &saved);
    c.connect_all();
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("a leader");
    assert_eq!(c.leaders(), [Some(leader); 3]);
    assert!(c.dir(leader).term() > 1);
    assert_eq!(c.open(1, "a", NON_COLLOCATED).instance, a.instance);
    assert_ne!(c.open(2, "b", NON_COLLOCATED).instance, a.instance);
}

#[test]
fn a_checkpoint_whose_every_replica_holds_nothing_starts_over_on_its_lowest_node_after_the_long_wait()
 {
    let mut c = Cluster::three_with_leader();
    let a = c.open(3, "a", NON_COLLOCATED);
    assert_eq!(
        (a.primary, a.replicas.as_slice(), a.from_nothing),
        (Some(3), [1, 2, 3].as_slice(), false)
    );
    // Nodes 1 and 2 are in the middle of a snapshot from node 3 when it dies and comes
    // back without its replica: no copy of the checkpoint's state is left anywhere.
    for n in [1, 2] {
        c.report(n, &[(a.instance, a.term, INCOMPLETE)]);
    }
    c.kill(3);
    c.run_for(ELECTION * 4);
    c.start(3);
    c.connect(3, 1);
    c.connect(3, 2);
    c.run_for(ELECTION * 2);
    c.report(3, &[(a.instance, 0, INCOMPLETE)]);
    let e = c.entry(1, a.instance).unwrap();
    assert_eq!(
        (e.primary, e.replicas.as_slice()),
        (None, [1, 2, 3].as_slice()),
        "{e:?}"
    );
    // Every report is in, but nothing is named before the long wait for reports (four
    // times the wait for positions since the primary died) is over.
    let mut since_death = ELECTION * 6;
    let named = (0..100).find_map(|_| {
        c.run_for(POSITIONS_WAIT / 10);
        since_death += POSITIONS_WAIT / 10;
        let e = c.entry(1, a.instance).unwrap();
        e.primary.map(|p| (p, e))
    });
    let (primary, e) = named.expect("a primary is named in the end");
    assert!(
        since_death >= POSITIONS_WAIT * 4,
        "named {since_death:?} after the primary died"
    );
    assert_eq!(primary, 1, "{e:?}");
    assert!(e.term > a.term, "{e:?}");
    for n in [1, 2, 3] {
        let held = c.held(n, a.instance).expect("placed");
        assert!(
            held.from_nothing && held.primary == Some(1) && held.term == e.term,
            "node {n} holds {held:?}"
        );
    }

    // The next term (node 1 gives the role back) is no longer a start over: node 2 now
    // holds what node 1 gave it.
    c.report(2, &[(a.instance, e.term, 0)]);
    let resign = DirOp::Resign {
        instance: a.instance,
        node: 1,
        term: e.term,
    };
    assert_eq!(c.request(1, resign), DirReply::Done);
    c.run_for(POSITIONS_WAIT * 2);
    let held = c.held(2, a.instance).expect("placed");
    assert_eq!(
        (held.primary, held.from_nothing),
        (Some(2), false),
        "{held:?}"
    );
}

#[test]
fn a_checkpoint_does_not_start_over_while_a_replica_that_left_the_set_may_hold_its_state() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5], &[1, 2]);
    c.connect_all();
    c.run_for(ELECTION + HEARTBEAT);
    let a = c.open(3, "a", NON_COLLOCATED);
    c.report(2, &[(a.instance, a.term, 7)]);
    c.report(1, &[(a.instance, a.term, INCOMPLETE)]);
    // Node 2, in sync at seq 7, is cut off and dropped; then node 3 is wiped.
    c.isolate(2);
    c.run_for(ELECTION * 4);
    let e = c.entry(1, a.instance).unwrap();
    assert!(!e.replicas.contains(&2), "{e:?}");
    let e = c.restart_wiped(3, &[1, 4, 5], (a.instance, a.term, INCOMPLETE));
    c.run_for(POSITIONS_WAIT * 10);
    let e2 = c.entry(1, a.instance).unwrap();
    assert_eq!(
        e2.primary, None,
        "started over without node 2: {e:?} then {e2:?}"
    );
    // Node 2 comes back with its copy, which is promoted.
    let e = c.back_with(2, (a.instance, a.term, 7));
    let held = c.held(2, a.instance).expect("placed");
    assert_eq!((e.primary, held.from_nothing), (Some(2), false), "{e:?}");
}

#[test]
fn two_node_tables_that_diverged_in_a_split_keep_the_later_primary_of_each_checkpoint() {
    // Node 2 leads (term 2) and node 1 follows with the same table.
    let mut c = Cluster::two_node();
    c.connect_all();
    c.run_for(ELECTION * 2);
    c.kill(1);
    c.run_for(ELECTION * 4);
    c.start(1);
    c.connect_all();
    c.run_for(ELECTION * 2);
    assert_eq!(c.leaders(), [Some(2); 2]);
    let a = c.open(1, "a", NON_COLLOCATED);
    assert_eq!(a.replicas, [1, 2]);
    let first = a.primary.expect("a primary");
    c.report(1, &[(a.instance, a.term, 5)]);
    c.report(2, &[(a.instance, a.term, 5)]);
    c.run_for(HEARTBEAT * 3);

    // Every frame between them is lost for a while, the connection staying up: node 1
    // elects itself in a higher directory term, alone (two-node mode), while node 2 goes
    // on leading in its own. Node 1's table keeps the checkpoint as it was.
    let until = c.now + ELECTION * 4;
    while c.now < until && c.dir(1).leader() != Some(1) {
        c.now += STEP;
        for n in [1, 2] {
            c.tick(n);
        }
        c.queue.clear();
    }
    assert_eq!(c.leaders(), [Some(1), Some(2)], "both lead: the split");
    assert!(c.dir(1).term() > c.dir(2).term());
    let split = c
        .save(1)
        .expect("node 1's table changed as it took the lead");

    // Node 1 dies there. Node 2, still leading, names the next primary in a new term.
    c.kill(1);
    c.run_for(POSITIONS_WAIT * 5);
    let later = c.entry(2, a.instance).expect("the checkpoint");
    assert_eq!(later.primary, Some(2), "node 2 took over from {first}");
    assert!(later.term > a.term);

    // Node 1 comes back with the table of its short lead, whose version is the higher
    // one: the leader of the two must still keep the later primary.
    c.start(1);
    c.restore(1, &split);
    c.connect_all();
    c.run_for(ELECTION * 4);
    let leader = c.dir(1).leader().expect("a leader");
    assert_eq!(c.leaders(), [Some(leader); 2]);
    let now = c.entry(leader, a.instance).expect("the checkpoint");
    assert_eq!(now.primary, Some(2), "the stale primary was named again");
    assert!(now.term >= later.term, "{} < {}", now.term, later.term);
    let reopened = c.open(1, "a", NON_COLLOCATED);
    assert_eq!(reopened.instance, a.instance);
    assert_eq!(reopened.primary, Some(2));
}
