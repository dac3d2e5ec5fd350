//! The examples run as the README says and do what they print. `cargo test` builds the
//! examples next to the test binaries (`target/<profile>/examples/`).

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: cargo test builds the examples first",
        path.display()
    );
    path
}

/// A domain of its own, removed afterwards.
struct Domain(PathBuf);

impl Domain {
    fn new(tag: &str) -> Self {
        Self(PathBuf::from(format!(
            "/dev/shm/ckpt-example-{tag}-{}",
            std::process::id()
        )))
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn writer_reader_reader_process_reads_the_text_the_writer_wrote() {
    let domain = Domain::new("wr");
    let out = Command::new(example("writer_reader"))
        .env("CKPT_DIR", &domain.0)
        .output()
        .expect("run writer_reader");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrote = stdout
        .lines()
        .find_map(|l| l.strip_prefix("writer: wrote "))
        .expect("the writer reports what it wrote");
    let read = stdout
        .lines()
        .find_map(|l| l.strip_prefix("reader: read "))
        .expect("the reader reports what it read");
    assert_eq!(read, wrote);
    assert!(stdout.contains("writer: library finalized"), "{stdout}");
}

#[test]
fn counter_standby_continues_from_the_value_the_killed_active_stored() {
    let domain = Domain::new("counter");
    let out = Command::new(example("counter_standby"))
        .env("CKPT_DIR", &domain.0)
        .output()
        .expect("run counter_standby");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: u32 = stdout
        .lines()
        .find_map(|l| l.split("it last reported stored ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .expect("the orchestrator reports the last stored value");
    let resumed: u32 = stdout
        .lines()
        .find_map(|l| {
            l.trim_start_matches("  | ")
                .strip_prefix("standby: active, resuming from ")
        })
        .and_then(|n| n.trim().parse().ok())
        .expect("the standby reports where it resumed");
    assert!(
        resumed >= last,
        "resumed from {resumed}, stored {last}\n{stdout}"
    );
    assert!(
        stdout.contains("signal: 9"),
        "the active was killed with SIGKILL\n{stdout}"
    );
}
