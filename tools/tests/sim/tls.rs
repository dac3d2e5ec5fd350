//! A TLS crypto provider whose every draw follows the seed, so a replay sends the same
//! handshake bytes: *ring*'s provider, with its random source and its key exchange
//! replaced.
//!
//! - Random bytes (hello randoms and the like) come from a per-thread generator that
//!   [`reseed`] sets before each seed's run (the simulation runs every host on the test's
//!   thread, one at a time, so the order of draws is the run's own).
//! - The key exchange is a stand-in named X25519: each side's share is 32 drawn bytes
//!   and the shared secret is their XOR, which both sides compute alike. It has no
//!   secrecy at all, and needs none on a simulated network; *ring*'s real X25519 draws its
//!   private key from the OS, which nothing can seed.
//! - Signatures are deterministic already (the cluster certificates are Ed25519), and
//!   the certificates themselves are fixed (tests/sim/certs).

use std::cell::Cell;
use std::sync::Arc;

use quinn::rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use quinn::rustls::{Error, NamedGroup};

use crate::plan::Rng;

std::thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// Starts this thread's draws for the run of `seed`.
pub(crate) fn reseed(seed: u64) {
    RNG.with(|r| r.set(Rng::new(seed ^ 0x7473_6c5f_7369_6d00).next_u64()));
}

fn fill(buf: &mut [u8]) {
    RNG.with(|r| {
        let mut rng = Rng::new(r.get());
        for chunk in buf.chunks_mut(8) {
            let v = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        r.set(rng.next_u64());
    });
}

#[derive(Debug)]
struct SeededRandom;

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        fill(buf);
        Ok(())
    }
}

#[derive(Debug)]
struct XorGroup;

struct XorShare([u8; 32]);

impl SupportedKxGroup for XorGroup {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut share = [0u8; 32];
        fill(&mut share);
        Ok(Box::new(XorShare(share)))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

impl ActiveKeyExchange for XorShare {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, Error> {
        if peer.len() != self.0.len() {
            return Err(Error::from(quinn::rustls::PeerMisbehaved::InvalidKeyShare));
        }
        let secret: Vec<u8> = self.0.iter().zip(peer).map(|(a, b)| a ^ b).collect();
        Ok(SharedSecret::from(secret))
    }

    fn pub_key(&self) -> &[u8] {
        &self.0
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

static SEEDED_RANDOM: SeededRandom = SeededRandom;
static XOR_GROUP: XorGroup = XorGroup;

/// The provider every simulated node's mesh uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        kx_groups: vec![&XOR_GROUP],
        secure_random: &SEEDED_RANDOM,
        ..quinn::rustls::crypto::ring::default_provider()
    })
}
