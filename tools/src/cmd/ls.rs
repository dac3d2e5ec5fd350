//! `ckpt ls`: the checkpoints of a domain, from its registry.

use std::path::Path;
use std::process::ExitCode;

use ckpt_engine::{Registry, Sharing};

/// Prints one line per checkpoint.
pub fn run(dir: &Path) -> Result<ExitCode, String> {
    let reg = Registry::open(dir, Sharing::default())
        .map_err(|e| format!("{e} (domain {}; is CKPT_DIR right?)", dir.display()))?;
    let entries = reg.entries();
    println!(
        "{:<32} {:>10} {:>6} {:>9} {:>14}",
        "NAME", "INSTANCE", "OPENS", "UNLINKED", "RETENTION_MS"
    );
    for e in &entries {
        println!(
            "{:<32} {:>10} {:>6} {:>9} {:>14}",
            String::from_utf8_lossy(&e.name),
            e.instance,
            e.opens,
            if e.unlinked { "yes" } else { "no" },
            e.retention_ns / 1_000_000
        );
    }
    if entries.is_empty() {
        println!("(no checkpoints in {})", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
