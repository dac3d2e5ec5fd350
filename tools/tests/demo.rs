//! `ckpt demo` does what the README says: the reader process gets the arrival callback and
//! reads the text the writer process wrote.

use std::process::Command;

#[test]
fn demo_reader_process_reads_the_text_the_writer_process_wrote() {
    let dir = std::path::PathBuf::from(format!("/dev/shm/ckpt-demo-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .arg("--dir")
        .arg(&dir)
        .args(["demo", "--iterations", "1000"])
        .output()
        .expect("run ckpt demo");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = "\"The quick brown fox jumped over the lazy dog\"";
    assert!(
        stdout.contains(&format!("Writer: wrote 44 bytes: {text}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Reader: arrival: section 11 offset 0 size 44"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Reader: read 44 bytes: {text}")),
        "{stdout}"
    );
    assert!(stdout.contains("overwrite"), "{stdout}");
}

/// The multi-process failover test: real ckptd processes on loopback; the active process
/// and its node's daemon are killed with SIGKILL; the standby takes over and has every
/// value the active saw synchronized.
#[test]
fn failover_demo_loses_nothing_synchronized_when_the_active_node_is_killed() {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["demo", "failover"])
        .output()
        .expect("run ckpt demo failover");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rest = last
        .strip_prefix("failover: standby resumed at ")
        .unwrap_or_else(|| panic!("last line: {last}\n{stdout}"));
    let (n, rest) = rest.split_once("; last synchronized ").expect("format");
    let (m, lost) = rest.split_once("; lost ").expect("format");
    let (n, m): (u64, u64) = (n.parse().expect("N"), m.parse().expect("M"));
    assert!(m > 0, "the active synchronized nothing: {stdout}");
    assert!(n >= m, "{stdout}");
    assert_eq!(lost, "0", "{stdout}");
    assert!(stdout.contains("killed the active process and node 1's ckptd (SIGKILL)"));
}
