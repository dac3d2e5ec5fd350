//! The deterministic simulation of a whole cluster (issue 5, point 10): real ckptd nodes
//! (`ckptd::run_in`) on turmoil hosts, QUIC with mutual TLS over turmoil's simulated UDP,
//! heap-backed replicas per host (they outlive a crash of the host's software, as shm
//! outlives a daemon, unless the crash wipes them), simulated time for every timer and for
//! the replicas' wall clock, and a fault schedule drawn from the seed: partitions (the
//! primary's host isolated: split brain; one link cut; one direction cut), clogged links,
//! latency spikes, datagram loss and duplication, flapping links, host crashes and
//! restarts (one may lose its replicas).
//!
//! Two writers behave as agents do (tests/sim/app.rs), one on a non-collocated
//! ACTIVE_REPLICA checkpoint (A), one on an ALL_REPLICAS checkpoint (B), both opened on
//! directors. Every step the harness checks
//!
//! - (c) a replica's replication position `(term, seq)` never goes backwards, and no two
//!   nodes hold the primary role in one term;
//!
//! then, after the faulty phase, it heals everything and checks
//!
//! - (e) each writer completes a write, and for A a synchronize, on the session it has;
//!   then every node opens both checkpoints and synchronizes A (30 s simulated each);
//! - (b) once quiet, every replica of each replica set is byte-identical;
//! - (a) every ALL_REPLICAS write answered OK is in the final state;
//! - (d) no write accepted by a primary whose term was superseded (a direct write while a
//!   replica elsewhere held the primary role in a newer term) is in it;
//! - and every write a synchronize on the same session confirmed is in it, nothing refused
//!   or never written is, the sections are intact.
//!
//! Each write sets its own byte of a log section, so no later write hides a lost one.
//!
//! ```sh
//! cargo test -p ckpt-tools --test sim                            # seeds 0..100 and REGRESSIONS
//! SIM_SEEDS=1000 cargo test -p ckpt-tools --test sim             # seeds 0..1000
//! SIM_FROM=6000 SIM_SEEDS=9000 cargo test -p ckpt-tools --test sim # seeds 6000..9000
//! SIM_SEED=42 cargo test -p ckpt-tools --test sim -- --nocapture  # one seed: plan, events, report
//! SIM_SEED=42 SIM_KEEP=net0,crash1 cargo test ...                 # only those faults of its plan
//! SIM_SEED=42 RUST_LOG=ckpt_tools=info,turmoil=info cargo test ... # with ckptd's logs
//! ```
//!
//! A failing seed reports its plan, its events, what the nodes hold and say, the replay
//! command, and the known bug whose signature it showed (tests/sim/diagnose.rs); the test
//! fails with the list of failing seeds.
//!
//! Reproducibility: the seed decides the cluster shape, the fault schedule, the writers'
//! choices, turmoil's latencies and link failures, datagram loss and duplication, and
//! every draw quinn makes (its endpoint RNG, the connection ids it issues and dials with,
//! its stateless-reset key: `MeshSocket::Abstract::rng_seed`); hosts run one at a time on
//! the test's thread in simulated time, ckptd's loop polls its inputs in a fixed order and
//! keeps its maps ordered, so a replay applies the same schedule at the same simulated
//! instants. The TLS handshakes follow the seed too (tests/sim/tls.rs,
//! `MeshSocket::Abstract::tls_provider`): a crypto provider whose random bytes come from
//! the seed and whose key exchange is a deterministic stand-in, with fixed Ed25519
//! certificates (tests/sim/certs; Ed25519 signs deterministically). Before, rustls drew
//! its hello randoms and ECDHE keys from the OS, and about one seed in thirty went two
//! ways over a few runs (a late handshake datagram's garbage, unmasked with keys quinn
//! derives from the connection id, had valid reserved bits or not); seed 4101 gave ten
//! event digests in twenty runs, and now gives one. Not simulated: `ckpt_engine::wall_clock()`,
//! which ckptd reads to reap expired sections (the writers' sections never expire).

#[path = "sim/app.rs"]
mod app;
#[path = "sim/diagnose.rs"]
mod diagnose;
#[path = "sim/plan.rs"]
mod plan;
#[path = "sim/tls.rs"]
mod tls;
#[path = "sim/trace.rs"]
mod trace;
#[path = "../../transport/tests/support/turmoil_udp.rs"]
mod turmoil_udp;
#[path = "sim/udp.rs"]
mod udp;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use ckpt_engine::{Replica, Role, SectionFilter};
use ckpt_tools::ckptd::{ClusterConfig, MemoryStore, NodeConfig, NodeEnv, Store, run_in};
use ckpt_transport::net::MeshSocket;
use ckpt_transport::repl::INCOMPLETE;
use ckpt_transport::wire::{CkptAssign, DirOp, DirReply, RemoteOp, RemoteResult};
use tokio::sync::{mpsc, watch};

use app::{Answer, App, Client, Goal, Kind, Log, Op, Outcome, Slot, Slots};
use diagnose::{Diagnosis, View};
use plan::{NetFault, Plan, Target};
use udp::Noise;

const PORT: u16 = 7100;
const TICK: Duration = Duration::from_millis(1);
const LATENCY: Duration = Duration::from_millis(20);
/// Simulated time each check after the heal may take at most.
const LIVENESS: Duration = Duration::from_secs(30);
/// The simulated wall clock starts at 2023-11-14.
const EPOCH_SECS: u64 = 1_700_000_000;

fn ip(node: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, node as u8))
}

/// The replicas' wall clock: the simulated one. The engine's clock is a plain `fn`, so it
/// asks turmoil, whose current host is set while a host runs.
fn sim_clock() -> i64 {
    turmoil::since_epoch().map_or(EPOCH_SECS as i64 * 1_000_000_000, |d| d.as_nanos() as i64)
}

/// The cluster CA and node certificates: fixed files (made once with `ckpt cert`), so a
/// replay in another process sends the same certificate bytes (`tls.rs`). Their keys
/// secure nothing but this simulated network.
fn certs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sim/certs")
}

fn cluster_config(plan: &Plan) -> ClusterConfig {
    let certs = certs();
    ClusterConfig {
        two_node: plan.two_node,
        ca: certs.join("ca.pem"),
        keep_alive: Duration::from_millis(150),
        idle_timeout: Duration::from_millis(600),
        heartbeat: Duration::from_millis(100),
        election_timeout: Duration::from_millis(400),
        max_checkpoints: 64,
        nodes: plan
            .nodes
            .iter()
            .map(|&id| NodeConfig {
                id,
                name: format!("node-{id}"),
                address: SocketAddr::new(ip(id), PORT),
                director: true,
                cert: certs.join(format!("node-{id}.pem")),
                key: certs.join(format!("node-{id}.key")),
                shm_dir: PathBuf::new(),
                socket: PathBuf::new(),
                metrics: None,
                sealed: false,
            })
            .collect(),
    }
}

/// The seed of quinn's endpoint RNG for one start of one node.
fn quinn_seed(seed: u64, node: u32, boot: u32) -> [u8; 32] {
    let mut rng = plan::Rng::new(seed ^ (u64::from(node) << 40) ^ (u64::from(boot) << 48));
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}

/// Adds node `node`'s host to `sim`: its ckptd, restarted by `bounce` with the store its
/// slot holds then.
fn add_host(sim: &mut turmoil::Sim<'_>, node: u32, seed: u64, shared: &Shared) {
    let Shared {
        slots,
        noise,
        config,
    } = shared.clone();
    sim.host(ip(node), move || {
        let (slots, noise, config) = (Rc::clone(&slots), Arc::clone(&noise), config.clone());
        async move {
            let (tx, sessions) = mpsc::unbounded_channel();
            let (store, boot) = {
                let mut all = slots.borrow_mut();
                let s = all.get_mut(&node).expect("slot");
                s.sessions = Some(tx);
                s.boots += 1;
                (s.store.clone(), s.boots)
            };
            let udp = turmoil::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
            let env = NodeEnv {
                socket: Some(MeshSocket::Abstract {
                    socket: Arc::new(udp::noisy_socket(udp, noise)),
                    runtime: Arc::new(quinn::TokioRuntime),
                    rng_seed: Some(quinn_seed(seed, node, boot)),
                    tls_provider: Some(tls::provider()),
                }),
                store: Some(Store::Memory(store)),
                agents: false,
                tail_threads: false,
                incarnation: Some(u64::from(boot)),
                sessions: Some(sessions),
            };
            // Never stopped: hosts are crashed instead.
            let (_stop, stop) = watch::channel(false);
            run_in(config, node, env, stop)
                .await
                .map_err(|e| format!("node {node}: {e}"))?;
            Ok(())
        }
    });
}

/// What the hosts' software shares with the harness.
#[derive(Clone)]
struct Shared {
    slots: Rc<RefCell<Slots>>,
    noise: Arc<Mutex<Noise>>,
    config: ClusterConfig,
}

/// (c), sampled after every step: what it remembers of one replica object.
struct Seen {
    /// Held so that another object cannot reuse the address.
    _replica: Arc<Replica>,
    term: u64,
    /// The last complete seq seen in `term`.
    seq: Option<u64>,
}

#[derive(Default)]
struct Sampler {
    seen: BTreeMap<usize, Seen>,
    /// What each node's replica of each instance holds, as a position: the replication
    /// position, or `(term, commit seq)` for an ACTIVE_REPLICA primary (a primary's
    /// journal numbers its term).
    holds: BTreeMap<(u32, u64), (u64, u64)>,
}

impl Sampler {
    /// Checks (c); returns the primary roles of `active` (the ACTIVE_REPLICA checkpoint):
    /// (term, node).
    fn sample(&mut self, slots: &Slots, active: Option<u64>) -> Result<Vec<(u64, u32)>, String> {
        self.holds.clear();
        for (&node, slot) in slots {
            for instance in slot.store.instances() {
                let Some(r) = slot.store.replica(instance) else {
                    continue;
                };
                let (term, seq) = r.replication_position();
                let s = self
                    .seen
                    .entry(Arc::as_ptr(&r) as usize)
                    .or_insert_with(|| Seen {
                        _replica: Arc::clone(&r),
                        term,
                        seq: None,
                    });
                if term < s.term {
                    return Err(format!(
                        "(c) the replica of {instance:x} on node {node} went back from term {:x} to ({term:x}, {seq})",
                        s.term
                    ));
                }
                if term > s.term {
                    s.term = term;
                    s.seq = None;
                }
                if seq != INCOMPLETE {
                    if let Some(before) = s.seq.filter(|b| seq < *b) {
                        return Err(format!(
                            "(c) the replica of {instance:x} on node {node} went back from ({term:x}, {before}) to ({term:x}, {seq})"
                        ));
                    }
                    s.seq = Some(seq);
                }
                let (role, role_term) = r.role();
                if role == Role::Primary && role_term == term {
                    self.holds.insert((node, instance), (term, r.commit_seq()));
                } else if seq != INCOMPLETE {
                    self.holds.insert((node, instance), (term, seq));
                }
            }
        }
        let mut primaries = Vec::new();
        if let Some(i) = active {
            for (&node, slot) in slots {
                let Some(r) = slot.store.replica(i) else {
                    continue;
                };
                let (role, term) = r.role();
                if role != Role::Primary {
                    continue;
                }
                if let Some((_, other)) = primaries.iter().find(|(t, _)| *t == term) {
                    return Err(format!(
                        "(c) nodes {other} and {node} both hold the primary role of {i:x} in term {term:x}"
                    ));
                }
                primaries.push((term, node));
            }
        }
        Ok(primaries)
    }
}

/// A failed seed (the panic payload).
struct Failure {
    /// The failure and the known bugs, in one line.
    summary: String,
    /// Everything needed to understand it.
    report: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CrashState {
    Planned,
    Down(u32),
    Done,
}

/// One seed's simulation.
struct Harness<'a> {
    plan: Plan,
    sim: turmoil::Sim<'a>,
    slots: Rc<RefCell<Slots>>,
    noise: Arc<Mutex<Noise>>,
    apps: Vec<App>,
    log: Log,
    now: Duration,
    sampler: Sampler,
    diag: Diagnosis,
    /// The directory formed: the writers started.
    formed: bool,
    net_active: Option<(usize, NetFault)>,
    noise_active: Option<usize>,
    crash_state: Vec<CrashState>,
    /// Per writer, the (op, value) of writes that only a wiped node's replica held when
    /// its tmpfs was lost: nothing could keep them.
    wiped_out: Vec<BTreeSet<(Op, u64)>>,
    /// Per writer, the (node, term) of primaries whose tmpfs was lost before any other
    /// replica held a position of their term: their term left nothing behind, so the
    /// writes a primary they deposed accepted may survive (see `check_history`).
    gone_terms: Vec<BTreeSet<(u32, u64)>>,
}

impl Harness<'_> {
    fn new(seed: u64) -> Self {
        tls::reseed(seed);
        let mut plan = Plan::new(seed);
        if let Ok(spec) = std::env::var("SIM_KEEP") {
            plan.keep(&spec);
        }
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(3600))
            .tick_duration(TICK)
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
            .min_message_latency(Duration::from_micros(200))
            .max_message_latency(LATENCY)
            .udp_capacity(4096)
            .enable_random_order()
            .rng_seed(seed)
            .build();
        let slots: Slots = plan
            .nodes
            .iter()
            .map(|&n| {
                let slot = Slot {
                    store: MemoryStore::new(Some(sim_clock)),
                    sessions: None,
                    boots: 0,
                    running: true,
                };
                (n, slot)
            })
            .collect();
        let shared = Shared {
            slots: Rc::new(RefCell::new(slots)),
            noise: Noise::new(seed.wrapping_mul(31)),
            config: cluster_config(&plan),
        };
        for &node in &plan.nodes {
            add_host(&mut sim, node, seed, &shared);
        }
        let apps = vec![
            App::new("A", Kind::Active, plan.nodes[0], 1, seed),
            App::new("B", Kind::AllReplicas, plan.b_node, 2, seed),
        ];
        Self {
            crash_state: vec![CrashState::Planned; plan.crashes.len()],
            plan,
            sim,
            slots: shared.slots,
            noise: shared.noise,
            apps,
            log: Log::default(),
            now: Duration::ZERO,
            sampler: Sampler::default(),
            diag: Diagnosis::default(),
            formed: false,
            net_active: None,
            noise_active: None,
            wiped_out: vec![BTreeSet::new(); 2],
            gone_terms: vec![BTreeSet::new(); 2],
        }
    }

    /// Hands the diagnosis what it reads.
    fn diagnose(&mut self, f: impl FnOnce(&mut Diagnosis, &View<'_>, &mut Log)) {
        let slots = self.slots.borrow();
        let view = View {
            now: self.now,
            plan: &self.plan,
            slots: &slots,
            apps: &self.apps,
            holds: &self.sampler.holds,
        };
        f(&mut self.diag, &view, &mut self.log);
    }

    /// Fails the seed with everything needed to understand and replay it.
    fn fail(&self, what: &str) -> ! {
        let (head, rest) = what.split_once('\n').unwrap_or((what, ""));
        let names: Vec<&str> = self.diag.known.iter().map(|(b, _)| *b).collect();
        let mut summary = format!(
            "seed {} failed at {:.3}s: {head}",
            self.plan.seed,
            self.now.as_secs_f64()
        );
        if !names.is_empty() {
            let _ = write!(summary, " [KNOWN BUG {}]", names.join(", "));
        }
        let keep = std::env::var("SIM_KEEP")
            .map(|k| format!(" SIM_KEEP={k}"))
            .unwrap_or_default();
        let mut report = format!("{summary}\n");
        if !rest.is_empty() {
            let _ = writeln!(report, "{rest}");
        }
        for (bug, evidence) in &self.diag.known {
            let _ = writeln!(
                report,
                "KNOWN BUG {bug}: {}\n  seen here: {evidence}",
                diagnose::describe(bug)
            );
        }
        let _ = write!(
            report,
            "{}events:\n{}replay: SIM_SEED={}{keep} cargo test -p ckpt-tools --test sim -- --nocapture",
            self.plan,
            self.log.tail(usize::MAX),
            self.plan.seed
        );
        std::panic::panic_any(Failure { summary, report })
    }

    /// A liveness failure: the report adds what every node holds and says.
    fn fail_dump(&mut self, what: &str) -> ! {
        let state = self.dump();
        self.fail(&format!("{what}\n{state}"))
    }

    /// One simulation step, the writers' turn, and the checks of every step.
    fn step(&mut self) {
        if let Err(e) = self.sim.step() {
            self.fail(&format!("a host failed: {e}"));
        }
        self.now = self.sim.elapsed();
        for e in trace::take() {
            self.diagnose(|d, v, log| d.logged(&e, v, log));
        }
        // The writers start once every node follows one directory leader (so that their
        // first opens are not retried in ckptd's HashMap order).
        self.formed = self.formed || self.diag.formed(self.plan.nodes.len());
        if self.formed {
            let slots = self.slots.borrow();
            for a in &mut self.apps {
                a.step(self.now, &slots, &mut self.log);
            }
        }
        let opened: Vec<CkptAssign> = self
            .apps
            .iter_mut()
            .flat_map(|a| a.placements.drain(..))
            .collect();
        for a in &opened {
            self.diagnose(|d, v, log| d.placement(a, v, log));
        }
        let sampled = {
            let slots = self.slots.borrow();
            self.sampler.sample(&slots, self.apps[0].instance)
        };
        match sampled {
            Ok(primaries) => {
                let instance = self.apps[0].instance.unwrap_or_default();
                for (term, node) in primaries {
                    self.diagnose(|d, v, log| d.role(instance, term, node, v, log));
                }
            }
            Err(e) => self.fail(&e),
        }
        self.diagnose(|d, v, log| d.step(v, log));
        if let Some(v) = self.apps.iter().find_map(|a| a.violation.clone()) {
            self.fail(&v);
        }
    }

    /// Steps until `done` holds or `limit` of simulated time passed; returns whether it
    /// held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// The node holding the primary role of A in the highest term.
    fn primary(&self) -> u32 {
        let slots = self.slots.borrow();
        self.apps[0]
            .instance
            .and_then(|i| {
                slots
                    .iter()
                    .filter_map(|(n, s)| {
                        let (role, term) = s.store.replica(i)?.role();
                        (role == Role::Primary).then_some((term, *n))
                    })
                    .max()
                    .map(|(_, n)| n)
            })
            .unwrap_or(self.plan.nodes[0])
    }

    fn resolve(&self, t: Target) -> u32 {
        match t {
            Target::Primary => self.primary(),
            Target::Node(n) => n,
        }
    }

    fn others(&self, n: u32) -> Vec<u32> {
        self.plan
            .nodes
            .iter()
            .copied()
            .filter(|m| *m != n)
            .collect()
    }

    fn net_start(&mut self, f: NetFault) -> NetFault {
        let f = match f {
            NetFault::Isolate(t) => NetFault::Isolate(Target::Node(self.resolve(t))),
            f => f,
        };
        match f {
            NetFault::Isolate(t) => {
                let n = self.resolve(t);
                for m in self.others(n) {
                    self.sim.partition(ip(n), ip(m));
                }
            }
            NetFault::Cut(a, b) => self.sim.partition(ip(a), ip(b)),
            NetFault::OneWay(a, b) => self.sim.partition_oneway(ip(a), ip(b)),
            NetFault::Hold(a, b) => self.sim.hold(ip(a), ip(b)),
            NetFault::Slow(d) => self.sim.set_max_message_latency(d),
        }
        self.log.add(self.now, format!("FAULT start {f:?}"));
        f
    }

    fn net_end(&mut self, f: NetFault) {
        match f {
            NetFault::Isolate(t) => {
                let n = self.resolve(t);
                for m in self.others(n) {
                    self.sim.repair(ip(n), ip(m));
                }
            }
            NetFault::Cut(a, b) => self.sim.repair(ip(a), ip(b)),
            NetFault::OneWay(a, b) => self.sim.repair_oneway(ip(a), ip(b)),
            NetFault::Hold(a, b) => self.sim.release(ip(a), ip(b)),
            NetFault::Slow(_) => self.sim.set_max_message_latency(LATENCY),
        }
        self.log.add(self.now, format!("FAULT end {f:?}"));
    }

    fn set_noise(&mut self, loss: f64, dup: f64, flap: f64) {
        {
            let mut n = self.noise.lock().unwrap();
            n.loss = loss;
            n.dup = dup;
        }
        self.sim.set_fail_rate(flap);
    }

    fn crash(&mut self, node: u32, wipe: bool) {
        self.sim.crash(ip(node));
        self.slots
            .borrow_mut()
            .get_mut(&node)
            .expect("slot")
            .running = false;
        let lost = if wipe { " (its replicas are lost)" } else { "" };
        self.log
            .add(self.now, format!("FAULT crash node {node}{lost}"));
    }

    fn restart(&mut self, node: u32, wipe: bool) {
        if wipe {
            self.note_wiped_out(node);
        }
        {
            let mut slots = self.slots.borrow_mut();
            let s = slots.get_mut(&node).expect("slot");
            if wipe {
                s.store = MemoryStore::new(Some(sim_clock));
            }
            s.running = true;
        }
        if wipe {
            self.diag.wiped(node, self.now);
        }
        self.sim.bounce(ip(node));
        self.log.add(self.now, format!("FAULT restart node {node}"));
    }

    /// Before `node`'s replicas are lost: notes the writes its replicas hold and no other
    /// node's does (crashed nodes keep theirs), which then cannot survive. Losing such a
    /// write is no fault of the cluster: every replica that had it is gone.
    fn note_wiped_out(&mut self, node: u32) {
        let slots = self.slots.borrow();
        for (i, app) in self.apps.iter().enumerate() {
            let Some(instance) = app.instance else {
                continue;
            };
            let state = |n: u32| slots[&n].store.replica(instance).map(|r| sections(&r));
            if let Some(r) = slots[&node].store.replica(instance)
                && let (Role::Primary, term) = r.role()
            {
                let reached = self.plan.nodes.iter().filter(|n| **n != node).any(|n| {
                    slots[n]
                        .store
                        .replica(instance)
                        .is_some_and(|o| o.replication_position().0 >= term)
                });
                if !reached {
                    self.gone_terms[i].insert((node, term));
                }
            }
            let Some(mine) = state(node) else { continue };
            let others: Vec<State> = self
                .plan
                .nodes
                .iter()
                .filter(|n| **n != node)
                .filter_map(|n| state(*n))
                .collect();
            let gone: Vec<String> = app
                .attempts
                .iter()
                .filter(|a| holds_or_newer(&mine, a.op, a.value))
                .filter(|a| !others.iter().any(|o| holds_or_newer(o, a.op, a.value)))
                .filter(|a| self.wiped_out[i].insert((a.op, a.value)))
                .map(|a| format!("{:?} {}", a.op, a.value))
                .collect();
            if !gone.is_empty() {
                self.log.add(
                    self.now,
                    format!(
                        "{}: only node {node}'s replica held {}: gone with it",
                        app.name,
                        gone.join(", ")
                    ),
                );
            }
        }
    }

    /// Applies the plan's faults due at `rel` (time since the faulty phase began).
    fn faults(&mut self, rel: Duration) {
        let due = self
            .plan
            .net
            .iter()
            .position(|e| e.at <= rel && rel < e.at + e.len);
        if self.net_active.map(|(i, _)| i) != due {
            if let Some((_, f)) = self.net_active.take() {
                self.net_end(f);
            }
            if let Some(i) = due {
                let f = self.net_start(self.plan.net[i].fault);
                self.net_active = Some((i, f));
            }
        }
        let due = self
            .plan
            .noise
            .iter()
            .position(|e| e.at <= rel && rel < e.at + e.len);
        if self.noise_active != due {
            self.noise_active = due;
            let (loss, dup, flap) = due.map_or((0.0, 0.0, 0.0), |i| {
                let e = self.plan.noise[i];
                (e.loss, e.dup, e.flap)
            });
            self.set_noise(loss, dup, flap);
            self.log.add(
                self.now,
                format!("FAULT noise: loss {loss:.2} dup {dup:.2} flap {flap}"),
            );
        }
        for i in 0..self.plan.crashes.len() {
            let e = self.plan.crashes[i];
            match self.crash_state[i] {
                CrashState::Planned if rel >= e.at => {
                    let n = self.resolve(e.target);
                    self.crash(n, e.wipe);
                    self.crash_state[i] = CrashState::Down(n);
                }
                CrashState::Down(n) if rel >= e.at + e.down => {
                    self.restart(n, e.wipe);
                    self.crash_state[i] = CrashState::Done;
                }
                _ => {}
            }
        }
    }

    /// Undoes every fault.
    fn heal(&mut self) {
        if let Some((_, f)) = self.net_active.take() {
            self.net_end(f);
        }
        self.set_noise(0.0, 0.0, 0.0);
        for &a in &self.plan.nodes {
            for &b in &self.plan.nodes {
                if a < b {
                    self.sim.repair(ip(a), ip(b));
                    self.sim.release(ip(a), ip(b));
                }
            }
        }
        self.sim.set_max_message_latency(LATENCY);
        for i in 0..self.crash_state.len() {
            if let CrashState::Down(n) = self.crash_state[i] {
                self.restart(n, self.plan.crashes[i].wipe);
                self.crash_state[i] = CrashState::Done;
            }
        }
        self.log.add(self.now, "HEAL: every fault undone".into());
    }

    /// A session for the checks, on `node`.
    fn client(&mut self, node: u32, id: u64) -> Option<Client> {
        Client::connect(&self.slots.borrow()[&node], node, id)
    }

    /// Sends one operation on `c` and steps until it is answered or `limit` passed.
    fn call(
        &mut self,
        c: &mut Client,
        limit: Duration,
        send: impl FnOnce(&mut Client) -> u64,
    ) -> Option<Answer> {
        let n = send(c);
        let mut answer = None;
        self.run_until(limit, |_| {
            c.poll();
            answer = c.take(n);
            answer.is_some() || c.dead
        });
        answer
    }

    fn open(&mut self, c: &mut Client, name: &str, limit: Duration) -> Option<Answer> {
        let open = DirOp::Open {
            name: name.to_owned(),
            attrs: None,
            flags: 0x3,
            node: 0,
        };
        self.call(c, limit, |c| c.request(open))
    }

    /// The whole scenario of one seed.
    fn run(&mut self) {
        // The cluster forms and both writers open their checkpoints.
        let ready = self.run_until(Duration::from_secs(20), |h| {
            h.apps.iter().all(|a| a.instance.is_some() && !a.busy())
        });
        if !ready {
            self.fail_dump("the writers could not open their checkpoints on a healthy cluster");
        }
        let start = self.now;
        self.log.add(self.now, "faulty phase starts".into());
        while self.now < start + self.plan.active {
            self.faults(self.now - start);
            self.step();
        }
        for a in &mut self.apps {
            a.set_goal(Goal::Idle);
        }
        self.heal();
        // The writers finish what they started; the cluster notices the heal.
        self.run_until(Duration::from_secs(10), |h| {
            h.apps.iter().all(|a| !a.busy())
        });
        self.run_for(Duration::from_secs(2));

        // (e) each writer writes, and synchronizes, on the session it has.
        for a in &mut self.apps {
            a.set_goal(Goal::Confirm);
        }
        let healed = self.now;
        if !self.run_until(LIVENESS, |h| h.apps.iter().all(|a| a.confirmed.is_some())) {
            let late: Vec<&str> = self
                .apps
                .iter()
                .filter(|a| a.confirmed.is_none())
                .map(|a| a.name)
                .collect();
            self.fail_dump(&format!(
                "(e) writers {late:?} could not write and synchronize within {LIVENESS:?} after the heal"
            ));
        }
        let took = self.now - healed;
        self.log.add(
            self.now,
            format!("writers confirmed {took:?} after the heal"),
        );
        for a in &mut self.apps {
            a.set_goal(Goal::Idle);
        }

        // Every node opens both checkpoints (which makes every director a replica again)
        // and synchronizes A.
        let names: Vec<(String, u64)> = self
            .apps
            .iter()
            .map(|a| (a.ckpt.clone(), a.instance.expect("opened")))
            .collect();
        let mut placement: Vec<Option<CkptAssign>> = vec![None; names.len()];
        for node in self.plan.nodes.clone() {
            let Some(mut c) = self.client(node, 1_000 + u64::from(node)) else {
                self.fail_dump(&format!("(e) node {node} takes no session after the heal"));
            };
            for (k, (name, instance)) in names.iter().enumerate() {
                match self.open(&mut c, name, LIVENESS) {
                    Some(Answer::Dir(DirReply::Opened { ckpt })) if ckpt.instance == *instance => {
                        self.diagnose(|d, v, log| d.placement(&ckpt, v, log));
                        placement[k] = Some(ckpt);
                    }
                    a => self.fail_dump(&format!(
                        "(e) open of {name} on node {node} after the heal: {a:?}"
                    )),
                }
            }
            // TRY_AGAIN while a primary changes hands.
            let (name, instance) = names[0].clone();
            let until = self.now + LIVENESS;
            loop {
                let sync = RemoteOp::Synchronize {
                    after: Vec::new(),
                    timeout_ns: 5_000_000_000,
                };
                match self.call(&mut c, LIVENESS, |c| c.remote(instance, sync)) {
                    Some(Answer::Remote(RemoteResult::Done)) => break,
                    a if self.now < until => {
                        let what = format!("check: synchronize {name} on node {node}: {a:?}");
                        self.log.add(self.now, what);
                        self.run_for(Duration::from_millis(100));
                    }
                    a => self.fail_dump(&format!(
                        "(e) synchronize of {name} from node {node} after the heal: {a:?}"
                    )),
                }
            }
            self.log.add(
                self.now,
                format!("check: node {node} opened both and synchronized"),
            );
        }
        let placement: Vec<CkptAssign> =
            placement.into_iter().map(|p| p.expect("opened")).collect();

        // Quiet: nothing moves for a second.
        let mut last = None;
        let mut since = self.now;
        let quiet = self.run_until(LIVENESS, |h| {
            let now = h.fingerprint();
            if last.as_ref() != Some(&now) {
                last = Some(now);
                since = h.now;
            }
            h.now - since >= Duration::from_secs(1)
        });
        if !quiet {
            self.fail_dump("the cluster did not settle after the heal");
        }
        self.check(&placement);
    }

    /// What every node holds, and what the directory says from every node (an open of
    /// each checkpoint): for a failure report.
    fn dump(&mut self) -> String {
        let mut out = String::new();
        {
            let slots = self.slots.borrow();
            for (n, s) in slots.iter() {
                for i in s.store.instances() {
                    if let Some(r) = s.store.replica(i) {
                        let _ = writeln!(
                            out,
                            "    node {n} replica {i:x}: role {:?} position {:x?} commit {} acked {}",
                            r.role(),
                            r.replication_position(),
                            r.commit_seq(),
                            r.acked_seq()
                        );
                    }
                }
            }
        }
        let names: Vec<String> = self.apps.iter().map(|a| a.ckpt.clone()).collect();
        // An open adds its (director) node to the replica set: ask from the writers'
        // nodes last, after seeing whether the directory still counts them in.
        let mut order = self.plan.nodes.clone();
        order.sort_by_key(|n| self.apps.iter().any(|a| a.node == *n));
        let mut sets: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for node in order {
            for (instance, set) in &sets {
                let held = self.slots.borrow()[&node]
                    .store
                    .replica(*instance)
                    .is_some();
                if held && !set.contains(&node) {
                    self.diagnose(|d, v, log| d.outside(node, *instance, set, v, log));
                }
            }
            let Some(mut c) = self.client(node, 2_000 + u64::from(node)) else {
                continue;
            };
            for name in &names {
                match self.open(&mut c, name, Duration::from_secs(1)) {
                    Some(Answer::Dir(DirReply::Opened { ckpt })) => {
                        let _ = writeln!(
                            out,
                            "    open {name} on node {node}: {:x} replicas {:?} primary {:?} term {:x}",
                            ckpt.instance, ckpt.replicas, ckpt.primary, ckpt.term
                        );
                        self.diagnose(|d, v, log| d.placement(&ckpt, v, log));
                        sets.insert(ckpt.instance, ckpt.replicas);
                    }
                    a => {
                        let _ = writeln!(out, "    open {name} on node {node}: {a:?}");
                    }
                }
            }
        }
        out
    }

    /// What the writers did, for the line of a passing seed.
    fn stats(&self) -> String {
        let mut out = Vec::new();
        for a in &self.apps {
            let count =
                |f: &dyn Fn(&app::Attempt) -> bool| a.attempts.iter().filter(|t| f(t)).count();
            out.push(format!(
                "{} {} writes ({} ok, {} deposed, {} unknown, {} refused), {}/{} synchronizes ok",
                a.name,
                a.attempts.len(),
                count(&|t| t.outcome == Outcome::Ok),
                count(&|t| t.deposed.is_some()),
                count(&|t| t.outcome == Outcome::Unknown),
                count(&|t| matches!(t.outcome, Outcome::Failed(_))),
                a.syncs.iter().filter(|s| s.ok).count(),
                a.syncs.len()
            ));
        }
        out.join("; ")
    }

    /// Every replica's position and its commit and acked seqs.
    fn fingerprint(&self) -> Vec<Fingerprint> {
        let slots = self.slots.borrow();
        let mut v = Vec::new();
        for (&n, s) in slots.iter() {
            for i in s.store.instances() {
                if let Some(r) = s.store.replica(i) {
                    v.push((
                        n,
                        i,
                        r.replication_position(),
                        r.commit_seq(),
                        r.acked_seq(),
                    ));
                }
            }
        }
        v
    }

    /// The final checks, on a healed and quiet cluster.
    fn check(&self, placement: &[CkptAssign]) {
        let slots = self.slots.borrow();
        for (i, (app, place)) in self.apps.iter().zip(placement).enumerate() {
            let instance = place.instance;
            // (b) every replica of the set holds the same sections.
            let mut states = Vec::new();
            for &n in &place.replicas {
                let Some(r) = slots[&n].store.replica(instance) else {
                    self.fail(&format!(
                        "(b) node {n} is in the replica set of {} but holds no replica",
                        app.name
                    ));
                };
                states.push((n, sections(&r)));
            }
            for w in states.windows(2) {
                if w[0].1 != w[1].1 {
                    self.fail(&format!(
                        "(b) the replicas of {} on nodes {} and {} differ on a quiet cluster (after a synchronize of A):\n    {}\n    {}",
                        app.name,
                        w[0].0,
                        w[1].0,
                        describe(&w[0].1),
                        describe(&w[1].1)
                    ));
                }
            }
            let (_, state) = &states[0];
            if let Err(e) = check_history(app, state, &self.wiped_out[i], &self.gone_terms[i]) {
                self.fail(&format!(
                    "{}: {e}\n    final state: {}",
                    app.name,
                    describe(state)
                ));
            }
        }
    }
}

/// (node, instance, position, commit seq, acked seq).
type Fingerprint = (u32, u64, (u64, u64), u64, u64);

/// A replica's sections: id → (expiration, data).
type State = BTreeMap<Vec<u8>, (i64, Vec<u8>)>;

fn sections(r: &Replica) -> State {
    r.sections(SectionFilter::Any)
        .map(|s| {
            let data = r.read_to_vec(&s.id).unwrap_or_default();
            (s.id, (s.expiration, data))
        })
        .collect()
}

fn describe(s: &State) -> String {
    let counter = s
        .get(app::COUNTER)
        .and_then(|(_, d)| Some(u64::from_le_bytes(d.get(..8)?.try_into().ok()?)));
    let log: Vec<usize> = s
        .get(app::LOG)
        .map(|(_, d)| {
            d.iter()
                .enumerate()
                .filter(|(_, b)| **b != 0)
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    let blob = s.get(app::BLOB).map(|(_, d)| app::blob_value(d));
    format!(
        "{} sections, counter {counter:?}, blob {blob:?}, log {}",
        s.len(),
        ranges(&log)
    )
}

/// `1-4,7,9-12`.
fn ranges(v: &[usize]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if i == j {
            let _ = write!(out, "{}", v[i]);
        } else {
            let _ = write!(out, "{}-{}", v[i], v[j]);
        }
        i = j + 1;
    }
    out
}

/// Whether `state` holds the value of a write or, for an `Overwrite`, one that replaced
/// it (the check wants the blob to hold the newest overwrite that had to be kept, or a
/// newer one: an overwrite only a wiped node held, even replaced there by another, is
/// gone with it).
fn holds_or_newer(state: &State, op: Op, value: u64) -> bool {
    match op {
        Op::Write => holds(state, op, value),
        Op::Overwrite => state
            .get(app::BLOB)
            .and_then(|(_, b)| app::blob_value(b))
            .is_some_and(|b| b >= value),
    }
}

/// Whether `state` holds the value of a write: the log's byte of a `Write`, the blob of an
/// `Overwrite`.
fn holds(state: &State, op: Op, value: u64) -> bool {
    match op {
        Op::Write => state
            .get(app::LOG)
            .and_then(|(_, log)| log.get(usize::try_from(value).ok()?))
            .is_some_and(|b| *b == 1),
        Op::Overwrite => state
            .get(app::BLOB)
            .and_then(|(_, b)| app::blob_value(b))
            .is_some_and(|b| b == value),
    }
}

/// The final state against what the writer did; `wiped_out` are writes that only a wiped
/// node held (see `Harness::note_wiped_out`), which need not survive. A write a deposed
/// primary accepted must not survive (d), unless the primary that deposed it lost its
/// tmpfs before its term reached any other replica (`gone_terms`): then no history of that
/// term is left to conflict with, and the deposed primary's, holding the writes
/// synchronized before it was cut off, is the one to keep (simulation seed 16077).
fn check_history(
    app: &App,
    state: &State,
    wiped_out: &BTreeSet<(Op, u64)>,
    gone_terms: &BTreeSet<(u32, u64)>,
) -> Result<(), String> {
    let (_, counter) = state.get(app::COUNTER).ok_or("no counter section")?;
    let counter: [u8; 8] = counter
        .as_slice()
        .try_into()
        .map_err(|_| format!("the counter has {} bytes", counter.len()))?;
    let counter = u64::from_le_bytes(counter);
    let (_, log) = state.get(app::LOG).ok_or("no log section")?;
    if log.len() as u64 != app::LOG_LEN || log.iter().any(|b| *b > 1) {
        return Err("the log section is damaged".into());
    }
    let (_, blob) = state.get(app::BLOB).ok_or("no blob section")?;
    let blob = app::blob_value(blob).ok_or("the blob section is damaged")?;
    if state.len() != 3 {
        return Err(format!("{} sections instead of 3", state.len()));
    }
    let in_log = |v: u64| log[v as usize] == 1;
    // A synchronize confirms the writes its session made before it.
    let synced = |a: &app::Attempt| {
        // An OK synchronize after it, with no report of lost writes in between (a report
        // covers the session's writes before it).
        app.syncs.iter().any(|s| {
            s.ok && s.session == a.session
                && s.start >= a.end
                && !app.syncs.iter().any(|r| {
                    r.lost && r.session == a.session && r.start >= a.end && r.start <= s.start
                })
        })
    };
    // What had to be kept: ALL_REPLICAS writes answered OK, synchronized writes.
    let must_keep = |a: &app::Attempt| {
        a.outcome == Outcome::Ok
            && a.deposed.is_none()
            && !wiped_out.contains(&(a.op, a.value))
            && (app.kind == Kind::AllReplicas || synced(a))
    };
    for a in &app.attempts {
        let kept = match a.op {
            Op::Write => in_log(a.value),
            Op::Overwrite => blob == a.value,
        };
        if let Some((n, t)) = a.deposed
            && !gone_terms.contains(&(n, t))
            && (kept || (a.op == Op::Write && counter == a.value))
        {
            return Err(format!(
                "(d) {:?} {} accepted on node {} after node {n} became primary in term {t:x} survives",
                a.op, a.value, a.node
            ));
        }
        if a.op == Op::Write && must_keep(a) && !kept {
            let at = a.end.as_secs_f64();
            return Err(if app.kind == Kind::AllReplicas {
                format!(
                    "(a) ALL_REPLICAS write {} acknowledged on node {} at {at:.3}s is lost",
                    a.value, a.node
                )
            } else {
                format!(
                    "synchronized write {} (acknowledged on node {}{} at {at:.3}s, synchronized after on the same session) is lost",
                    a.value,
                    a.node,
                    if a.direct { ", direct" } else { "" }
                )
            });
        }
        if let Outcome::Failed(code) = a.outcome
            && kept
        {
            return Err(format!(
                "{:?} {} refused with code {code} on node {} is in the final state",
                a.op, a.value, a.node
            ));
        }
    }
    // The counter and the blob hold the newest of what they may hold.
    let newest = |op: Op| {
        app.attempts
            .iter()
            .filter(|a| a.op == op && must_keep(a))
            .map(|a| a.value)
            .max()
            .unwrap_or(0)
    };
    // A write whose session was lost with it in flight (`Unknown`) may take effect at any
    // later time, after writes the writer made since: a write that a crashed node had
    // forwarded, held in the network, reached the primary after the writer had gone on
    // on another node (simulation seed 4101). As in Jepsen's model of an indeterminate
    // operation, what it wrote may then be what the counter or the blob holds.
    let late = |op: Op, value: u64| {
        app.attempts
            .iter()
            .any(|a| a.op == op && a.value == value && a.outcome == Outcome::Unknown)
    };
    if counter < newest(Op::Write) && !late(Op::Write, counter) {
        return Err(format!(
            "the counter is {counter}, older than write {}, which had to be kept",
            newest(Op::Write)
        ));
    }
    if blob < newest(Op::Overwrite) && !late(Op::Overwrite, blob) {
        return Err(format!(
            "the blob holds {blob}, older than overwrite {}, which had to be kept",
            newest(Op::Overwrite)
        ));
    }
    let written = |v: u64| {
        app.attempts
            .iter()
            .any(|a| a.op == Op::Write && a.value == v)
    };
    if let Some(v) = (0..app::LOG_LEN).find(|v| in_log(*v) && !written(*v)) {
        return Err(format!("log byte {v} is set, yet nobody wrote it"));
    }
    if counter != 0 && !(written(counter) && in_log(counter)) {
        return Err(format!(
            "the counter holds {counter}, which no kept write wrote"
        ));
    }
    Ok(())
}

/// A failed seed is reported by `run_part`, not by the panic hook (which would print
/// `Box<dyn Any>` for it); other panics keep the default hook.
fn quiet_failures() {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Failure>().is_none() {
                default(info);
            }
        }));
    });
}

/// Seeds beyond the default range that once failed and are fixed: they run every time.
/// 1050 and 2311: a primary whose set had shrunk to itself (so a synchronize confirmed
/// writes only it held) ranked, once demoted or restarted, below a replica that held
/// less, and the promotion lost those writes. 337: the first attempt at that fix (ranking
/// a primary by what its set acknowledged while it leads) steered it into the
/// ALL_REPLICAS restart fault (transport/DESIGN.md §8). 1917: a daemon whose replica was
/// made empty resigned the primary role of one term and took it in the next (a change of
/// the set), erasing the others' state with its snapshot. 2625: a primary left alone by a
/// death confirmed synchronizes by itself in the term the replica that had left before
/// held a prefix of, which was then promoted. 1032: a restarted ALL_REPLICAS primary
/// acknowledged the diffs of the primary it had replaced, which confirmed a write nobody
/// promoted held. 861: a former primary that left in sync, told the placement without it
/// when it came back, dropped the state the promotion waited for. 1297: a director placed
/// again in a set without a primary ranked as in sync and was promoted over the replica
/// holding an acknowledged write. 2077: writes only a wiped node held (not a fault; the
/// check once counted them). 4887: a replica made empty, its daemon restarted again,
/// resumed as the primary (the knowledge that it was empty died with the run). 3998: an
/// agent kept writing straight into a primary's replica its daemon had dropped. 5122: a
/// promotion without a replica in sync, made without the report of one that held an
/// acknowledged write. 3034: a two-node leader whose table never got a decision the
/// other node made alone. 5966: a wiped node whose writer reopened with CREATE counted
/// its new, empty replica as in sync. 6961 and 10016: a replica that had not heard from
/// a new primary kept applying the deposed one's diffs. 11041: a wiped node alone in the
/// set led, and erased the copy a node added back held. 3953: an ALL_REPLICAS primary
/// named again alone in a term it led numbered its journal anew. 3248: a wiped node's
/// floor kept a checkpoint without a primary for good. 16077: a primary promoted over a
/// cut-off one was wiped before it synced anyone, and a replica holding less was promoted
/// next. 17168: a wiped node's new replica, placed without a primary, acknowledged a
/// deposed primary's write. 17770: a wiped node elected with a stale director's vote.
/// 1031: an overwrite replaced on a wiped node only (a check that was too strict).
/// 15320: a wiped node leading a creation in a new term before its vetting ended.
/// 22841: a leader without a replica's report dropped it under a live primary that was
/// wiped next; a node added back with an old copy was promoted.
/// 25676: a director elected again ranked replicas by reports from before it was cut off.
/// 60873: a director dropped while cut off, elected before its report placed it again,
/// had the checkpoint open and was told the placement without it: its daemon dropped the
/// copy of a synchronized write that only a primary wiped meanwhile held besides.
const REGRESSIONS: &[u64] = &[
    337, 1050, 2311, 1917, 2625, 1032, 861, 1297, 2077, 4887, 3998, 5122, 3034, 5966, 6961, 10016,
    11041, 3953, 3248, 16077, 17168, 17770, 1031, 15320, 22841, 25676, 29012, 24827, 45264, 60873,
];

/// Seeds to run: `SIM_SEED=<n>` alone, else `SIM_FROM..SIM_SEEDS` (0..100 by default)
/// and [`REGRESSIONS`].
fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let from: u64 = std::env::var("SIM_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut seeds: Vec<u64> = (from..n).collect();
    seeds.extend(REGRESSIONS.iter().copied().filter(|s| *s >= n || *s < from));
    seeds
}

/// Runs the seeds `s` with `s % of == part` (the seeds are split over a few tests so that
/// cargo's test threads share the cores). Every seed runs; the test fails at the end with
/// the list of failing seeds.
fn run_part(part: u64, of: u64) {
    quiet_failures();
    let _trace = trace::capture();
    let single = std::env::var_os("SIM_SEED").is_some();
    let mut failed = Vec::new();
    for seed in seeds().into_iter().filter(|s| s % of == part) {
        let t = std::time::Instant::now();
        let run = std::panic::catch_unwind(|| {
            let mut h = Harness::new(seed);
            h.run();
            if single {
                eprintln!("{}events:\n{}", h.plan, h.log.tail(usize::MAX));
            }
            (h.now, h.log.digest(), h.stats())
        });
        match run {
            Ok((simulated, digest, stats)) => eprintln!(
                "seed {seed}: ok ({:.1}s simulated, {:.2}s real, events {digest:016x}): {stats}",
                simulated.as_secs_f64(),
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                let summary = match e.downcast::<Failure>() {
                    Ok(f) => {
                        eprintln!("{}", if single { &f.report } else { &f.summary });
                        f.summary
                    }
                    Err(e) => {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default();
                        format!("seed {seed} panicked: {msg}")
                    }
                };
                failed.push((seed, summary));
            }
        }
    }
    if !failed.is_empty() {
        let mut s = String::new();
        for (seed, summary) in &failed {
            let _ = write!(
                s,
                "\n  {summary}\n    replay: SIM_SEED={seed} cargo test -p ckpt-tools --test sim -- --nocapture"
            );
        }
        panic!("{} seed(s) failed:{s}", failed.len());
    }
}

#[test]
fn simulated_cluster_keeps_its_guarantees_under_faults_part_0() {
    run_part(0, 4);
}

#[test]
fn simulated_cluster_keeps_its_guarantees_under_faults_part_1() {
    run_part(1, 4);
}

#[test]
fn simulated_cluster_keeps_its_guarantees_under_faults_part_2() {
    run_part(2, 4);
}

#[test]
fn simulated_cluster_keeps_its_guarantees_under_faults_part_3() {
    run_part(3, 4);
}

/// Seed 4101 went ten ways in twenty runs while rustls drew from the OS (see
/// "Reproducibility" above); run twice here, it must give the same events both times.
#[test]
fn a_seed_run_twice_gives_the_same_events() {
    quiet_failures();
    let _trace = trace::capture();
    let run = || {
        let mut h = Harness::new(4101);
        h.run();
        h.log.digest()
    };
    let (first, second) = (run(), run());
    assert_eq!(first, second, "seed 4101 replayed with other events");
}
