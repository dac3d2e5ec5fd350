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
