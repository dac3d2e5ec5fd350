//! Per-datagram loss and duplication for quinn over turmoil's simulated UDP (the adapter
//! is transport/tests/support/turmoil_udp.rs), which turmoil does not offer: its
//! `fail_rate` breaks whole links for a while instead.

use std::sync::{Arc, Mutex};

use super::plan::Rng;
use super::turmoil_udp::TurmoilUdp;

/// Loss and duplication of single datagrams, shared by every simulated host's socket, with
/// the RNG that decides them (seeded from the simulation's seed).
#[derive(Debug)]
pub(crate) struct Noise {
    /// Probability that a datagram is dropped.
    pub(crate) loss: f64,
    /// Probability that a datagram is sent twice.
    pub(crate) dup: f64,
    rng: Rng,
}

impl Noise {
    pub(crate) fn new(seed: u64) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            loss: 0.0,
            dup: 0.0,
            rng: Rng::new(seed),
        }))
    }
}

/// A quinn socket over turmoil's UDP whose datagrams `noise` drops and duplicates.
pub(crate) fn noisy_socket(
    socket: turmoil::net::UdpSocket,
    noise: Arc<Mutex<Noise>>,
) -> TurmoilUdp {
    let fate = move || {
        let mut n = noise.lock().unwrap();
        let (loss, dup) = (n.loss, n.dup);
        (n.rng.chance(loss), n.rng.chance(dup))
    };
    TurmoilUdp::new(socket, Some(Box::new(fate)))
}
