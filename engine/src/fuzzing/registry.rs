//! `registry`: arbitrary bytes as a domain's node registry object. Opening it (attach,
//! repair, sweep) must refuse it or give a registry on which lookups, listings, the
//! control operations, sweeps and `fsck` return errors or values, never panic or hang.

use std::time::{Duration, SystemTime};

use super::attach::{plant, scratch_domain};
use crate::registry::MAX_NAME;
use crate::{Registry, RegistryLimits, ReplicaAttributes, ReplicaLimits, Sharing};

/// Capacities of a registry the open creates (when the input is not initialised).
const LIMITS: RegistryLimits = RegistryLimits {
    entries: 4,
    openers: 4,
};

/// The `registry` target; see the module docs.
pub fn registry(data: &[u8]) {
    let domain = scratch_domain();
    // Objects the previous input left: the registry and the replicas it made.
    if let Ok(entries) = std::fs::read_dir(&domain) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name == "registry" || name.starts_with("r-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    match plant(&domain.join("registry"), data) {
        // Dated long ago: an object that is not initialised is then a dead creator's and is
        // replaced at once, instead of after the 1 s the open grants a live creator.
        Ok(f) => {
            let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        }
        Err(e) => panic!("cannot write the fuzz registry: {e}"),
    }
    let reg = match Registry::open_with(&domain, Sharing::default(), LIMITS) {
        Ok(reg) => reg,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };

    let listed = reg.entries();
    for e in &listed {
        assert!(
            e.name.len() <= MAX_NAME,
            "entry name of {} bytes",
            e.name.len()
        );
    }
    for e in listed.iter().take(8) {
        if let Some(instance) = reg.lookup(&e.name) {
            let _ = reg.info(instance);
        }
        let _ = reg.info(e.instance);
    }
    for name in [&b""[..], b"safCkpt=fuzz", &[b'x'; MAX_NAME + 1]] {
        let _ = reg.lookup(name);
    }
    let _ = reg.fsck().to_string();

    // Control operations on whatever the registry lists.
    for e in listed.iter().take(3) {
        let _ = reg.add_open(e.instance);
        let _ = reg.close(e.instance);
        let _ = reg.close(e.instance);
        let _ = reg.set_retention(e.instance, 1_000_000_000);
    }
    if let Some(e) = listed.first() {
        let _ = reg.open_replica(&e.name, None);
        let _ = reg.unlink(&e.name);
    }
    let attrs = ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 128,
        retention_ns: 0,
        max_sections: 2,
        max_section_size: 64,
        max_section_id_size: 8,
    };
    let limits = ReplicaLimits {
        agents: 64,
        spare_slots: 3,
        journal_cells: 64,
    };
    if let Ok(opened) = reg.open_replica(b"safCkpt=fuzz", Some((&attrs, &limits))) {
        let _ = reg.lookup(b"safCkpt=fuzz");
        let _ = reg.close(opened.instance);
    }
    let _ = reg.unlink(b"safCkpt=fuzz");
    let _ = reg.sweep();
    let _ = reg.entries();
    let _ = reg.fsck().to_string();
}
