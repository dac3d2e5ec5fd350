//! `ckpt fsck`: checks the registry and every replica object of a domain.

use std::path::Path;
use std::process::ExitCode;

use ckpt_engine::{Registry, Replica, Sharing};

/// Checks everything; exit status 1 when any invariant is broken.
pub fn run(dir: &Path) -> Result<ExitCode, String> {
    let reg = Registry::open(dir, Sharing::default())
        .map_err(|e| format!("{e} (domain {}; is CKPT_DIR right?)", dir.display()))?;
    let mut bad = 0;
    let report = reg.fsck();
    println!("registry: {report}");
    bad += report.violations.len();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with("r-"))
        .collect();
    names.sort();
    for name in names {
        match Replica::attach(dir, &name, Sharing::default()) {
            Ok(r) => {
                let report = r.fsck();
                println!("{name}: {report}");
                bad += report.violations.len();
            }
            Err(e) => {
                println!("{name}: cannot attach: {e}");
                bad += 1;
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
