//! What a seed decides before the simulation starts: the cluster shape and the fault
//! schedule. Everything here is a pure function of the seed, so replaying a seed replays
//! the same schedule whatever else differs between runs.

use std::fmt;
use std::time::Duration;

/// A small, dependency-free PRNG (SplitMix64): the same sequence on every platform and
/// with every version of every crate.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Whether an event of probability `p` happens.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub(crate) fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Which node a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The node whose replica of the ACTIVE_REPLICA checkpoint is the primary when the
    /// fault starts (split brain when it is isolated).
    Primary,
    Node(u32),
}

/// A change of the network between some hosts, undone when the episode ends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NetFault {
    /// The target can reach nobody and nobody reaches it.
    Isolate(Target),
    /// Only the link between two nodes is cut (a non-transitive partition).
    Cut(u32, u32),
    /// Datagrams from the first node to the second are dropped.
    OneWay(u32, u32),
    /// Datagrams between two nodes are held and delivered at the end (a clog).
    Hold(u32, u32),
    /// The maximum latency of every link rises (reordering with it).
    Slow(Duration),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct NetEpisode {
    /// Its index in the seed's schedule (what `SIM_KEEP` names).
    pub(crate) id: usize,
    pub(crate) at: Duration,
    pub(crate) len: Duration,
    pub(crate) fault: NetFault,
}

/// Datagram loss, duplication and link flapping (turmoil's `fail_rate`: a link drops
/// everything in flight and recovers on the next tick).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NoiseEpisode {
    /// Its index in the seed's schedule (what `SIM_KEEP` names).
    pub(crate) id: usize,
    pub(crate) at: Duration,
    pub(crate) len: Duration,
    pub(crate) loss: f64,
    pub(crate) dup: f64,
    pub(crate) flap: f64,
}

/// A host crash: its software stops (every task and socket); its heap replicas survive
/// unless `wipe` (a node whose tmpfs dies with it); it restarts after `down`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrashEpisode {
    /// Its index in the seed's schedule (what `SIM_KEEP` names).
    pub(crate) id: usize,
    pub(crate) at: Duration,
    pub(crate) down: Duration,
    pub(crate) target: Target,
    pub(crate) wipe: bool,
}

/// Everything a seed decides up front.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) nodes: Vec<u32>,
    pub(crate) two_node: bool,
    /// Node the ALL_REPLICAS writer starts on (so it creates its checkpoint there).
    pub(crate) b_node: u32,
    /// Length of the faulty phase, from the moment both writers are ready.
    pub(crate) active: Duration,
    pub(crate) net: Vec<NetEpisode>,
    pub(crate) noise: Vec<NoiseEpisode>,
    pub(crate) crashes: Vec<CrashEpisode>,
}

impl Plan {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        // One seed in five runs the corosync-style two-node cluster.
        let two_node = seed % 5 == 4;
        let nodes: Vec<u32> = if two_node { vec![1, 2] } else { vec![1, 2, 3] };
        let b_node = rng.pick(&nodes);
        let active = rng.ms(6_000, 12_000);

        let mut net = Vec::new();
        let mut t = rng.ms(200, 1_000);
        while t < active {
            // Two-node mode has a leader on each side of a partition longer than the
            // failure detection (by design: it needs fencing, as corosync's two_node), so
            // its partitions stay shorter than the idle timeout.
            let len = if two_node {
                rng.ms(50, 350)
            } else {
                rng.ms(200, 2_500)
            };
            let (a, b) = two(&mut rng, &nodes);
            let fault = match rng.below(10) {
                0..=3 => NetFault::Isolate(Target::Primary),
                4 => NetFault::Isolate(Target::Node(rng.pick(&nodes))),
                5 => NetFault::Cut(a, b),
                6 => NetFault::OneWay(a, b),
                7 | 8 => NetFault::Hold(a, b),
                _ => NetFault::Slow(rng.ms(60, 400)),
            };
            net.push(NetEpisode {
                id: net.len(),
                at: t,
                len,
                fault,
            });
            t += len + rng.ms(300, 1_500);
        }

        let mut noise = Vec::new();
        if rng.chance(0.6) {
            let mut t = rng.ms(0, 2_000);
            while t < active {
                let len = rng.ms(300, 2_000);
                let loss = if rng.chance(0.7) {
                    0.01 + 0.29 * rng.below(100) as f64 / 100.0
                } else {
                    0.0
                };
                let dup = if rng.chance(0.5) {
                    0.05 + 0.45 * rng.below(100) as f64 / 100.0
                } else {
                    0.0
                };
                let flap = if rng.chance(0.3) { 0.002 } else { 0.0 };
                noise.push(NoiseEpisode {
                    id: noise.len(),
                    at: t,
                    len,
                    loss,
                    dup,
                    flap,
                });
                t += len + rng.ms(200, 2_000);
            }
        }

        let mut crashes = Vec::new();
        let mut wiped = false;
        if rng.chance(0.7) {
            let mut t = rng.ms(500, 2_500);
            while t < active {
                let down = rng.ms(100, 2_000);
                let target = if rng.chance(0.5) {
                    Target::Primary
                } else {
                    Target::Node(rng.pick(&nodes))
                };
                let wipe = !wiped && rng.chance(0.15);
                wiped |= wipe;
                crashes.push(CrashEpisode {
                    id: crashes.len(),
                    at: t,
                    down,
                    target,
                    wipe,
                });
                t += down + rng.ms(800, 3_000);
            }
        }
        Self {
            seed,
            nodes,
            two_node,
            b_node,
            active,
            net,
            noise,
            crashes,
        }
    }
}

impl Plan {
    /// Keeps only the episodes `spec` names (`net0,noise1,crash0`; empty: none): a seed's
    /// schedule reduced by hand to the faults a failure needs.
    pub(crate) fn keep(&mut self, spec: &str) {
        let keep: Vec<&str> = spec.split(',').map(str::trim).collect();
        let kept = |kind: &str, id: usize| keep.contains(&format!("{kind}{id}").as_str());
        self.net.retain(|e| kept("net", e.id));
        self.noise.retain(|e| kept("noise", e.id));
        self.crashes.retain(|e| kept("crash", e.id));
    }
}

fn two(rng: &mut Rng, nodes: &[u32]) -> (u32, u32) {
    let a = rng.pick(nodes);
    let others: Vec<u32> = nodes.iter().copied().filter(|n| *n != a).collect();
    (a, rng.pick(&others))
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: nodes {:?}{}, ALL_REPLICAS writer on node {}, faults for {:?} after both writers are ready",
            self.seed,
            self.nodes,
            if self.two_node { " (two_node)" } else { "" },
            self.b_node,
            self.active
        )?;
        for e in &self.net {
            let i = e.id;
            writeln!(
                f,
                "  net{i:<2}  +{:>6?} for {:>6?}: {:?}",
                e.at, e.len, e.fault
            )?;
        }
        for e in &self.noise {
            let i = e.id;
            writeln!(
                f,
                "  noise{i:<2}+{:>6?} for {:>6?}: loss {:.2} dup {:.2} flap {}",
                e.at, e.len, e.loss, e.dup, e.flap
            )?;
        }
        for e in &self.crashes {
            let i = e.id;
            writeln!(
                f,
                "  crash{i:<2}+{:>6?} down {:>6?}: {:?}{}",
                e.at,
                e.down,
                e.target,
                if e.wipe { " (replicas wiped)" } else { "" }
            )?;
        }
        Ok(())
    }
}
