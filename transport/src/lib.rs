//! ckpt-transport: the QUIC replication transport of ckpt (a sans-IO protocol core and a
//! quinn driver with mutual TLS). Built in the cluster issue; until then this crate is
//! empty and nothing depends on it.
