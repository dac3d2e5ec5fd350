//! Helpers shared by the multi-node tests: agents in cluster mode, retries while a
//! cluster forms, the hot-standby local read.

#![allow(dead_code)] // each test crate uses its own subset

use std::time::{Duration, Instant};

use ckpt_agent::{Callbacks, Checkpoint, Config, Error, Library, ReadElement, Version};
use ckpt_tools::ckptd::LocalCluster;

/// A B.02.02 library in cluster mode on node `node`.
pub(crate) fn library(cluster: &LocalCluster, node: u32) -> Library {
    let config = Config {
        cluster: Some(cluster.socket(node)),
        ..Config::default()
    };
    Library::initialize_with(config, Version::B_02_02, Callbacks::default())
        .expect("initialize in cluster mode")
}

/// Retries `f` while it says TryAgain or Unavailable (the directory is still forming),
/// for up to 20 s.
pub(crate) fn retry<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let start = Instant::now();
    loop {
        match f() {
            Err(Error::TryAgain | Error::Unavailable)
                if start.elapsed() < Duration::from_secs(20) =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// The section's bytes (up to 4 KiB) read from the node's own replica.
pub(crate) fn read_local(ck: &Checkpoint, id: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut el = [ReadElement {
        section_id: id,
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    ck.read_local(&mut el).expect("local read");
    let n = el[0].read_size;
    buf.truncate(n);
    buf
}
