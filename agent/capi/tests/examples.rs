//! The C examples (`examples/*.c`) build against the headers and `libSaCkpt.so`, run, and do
//! what they print.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::{TempDir, compile_and_link, crate_file, install_shared_library, run_limited};

/// Builds `examples/<name>.c` into `scratch`.
fn build(name: &str, scratch: &Path) -> PathBuf {
    install_shared_library(scratch);
    let program = scratch.join(name);
    compile_and_link(
        &[&crate_file(&format!("examples/{name}.c"))],
        &program,
        scratch,
    );
    program
}

#[test]
fn cpsv_demo_reader_process_reads_the_text_the_writer_wrote() {
    let scratch = TempDir::new("cpsv-demo");
    let program = build("cpsv_demo", scratch.path());
    let domain = TempDir::domain("cpsv-demo");
    let run = run_limited(
        Command::new(&program).env("CKPT_DIR", domain.path()),
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "{}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().collect();
    let wrote = lines
        .iter()
        .find_map(|l| l.strip_prefix("writer: wrote "))
        .unwrap_or_else(|| panic!("the writer reports what it wrote: {}", run.describe()));
    let read = lines
        .iter()
        .find_map(|l| l.strip_prefix("reader: read "))
        .unwrap_or_else(|| panic!("the reader reports what it read: {}", run.describe()));
    assert_eq!(read, wrote);
    // Every step of the writer, in order.
    let steps = [
        "writer: library initialized (B.02.02)",
        "writer: checkpoint safCkpt=DemoCkpt,safApp=safCkptService opened",
        "writer: this node's replica is active",
        "writer: section 11 created",
        "writer: synchronized",
        "reader: checkpoint safCkpt=DemoCkpt,safApp=safCkptService opened for reading",
        "writer: checkpoint unlinked",
        "writer: checkpoint closed",
        "writer: library finalized",
    ];
    let positions: Vec<Option<usize>> = steps
        .iter()
        .map(|s| lines.iter().position(|l| l == s))
        .collect();
    assert!(
        positions.iter().all(Option::is_some) && positions.is_sorted(),
        "the steps {steps:#?} in order: {}",
        run.describe()
    );
}

/// A child whose stdout lines arrive on a channel.
struct Lines {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the example");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Lines until one satisfies `want`, for at most `limit`; the matching line.
    fn until(&mut self, limit: Duration, mut want: impl FnMut(&str) -> bool) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no expected line within {limit:?}; the example printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Whatever it prints until it exits (its stdout closes).
    fn rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line.clone());
            rest.push(line);
        }
        rest
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // Only this test's own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stored(line: &str) -> Option<u32> {
    line.strip_prefix("stored ")?.parse().ok()
}

#[test]
fn counter_standby_resumes_from_the_value_the_killed_active_stored() {
    let scratch = TempDir::new("counter");
    let program = build("counter", scratch.path());
    let domain = TempDir::domain("counter");
    let mut active = Lines::spawn(
        Command::new(&program)
            .arg("active")
            .env("CKPT_DIR", domain.path()),
    );
    let mut standby = Lines::spawn(
        Command::new(&program)
            .args(["standby", "3"])
            .env("CKPT_DIR", domain.path()),
    );
    standby.until(Duration::from_secs(10), |l| l == "standby: following");
    let mut last = 0;
    active.until(Duration::from_secs(20), |l| {
        last = stored(l).unwrap_or(last);
        last >= 10
    });

    // SIGKILL: the active gets no chance to clean up.
    active.child.kill().expect("kill the active");
    let status = active.child.wait().expect("wait for the active");
    assert!(!status.success());
    for line in active.rest() {
        last = stored(&line).unwrap_or(last);
    }

    // Tell the standby to take over, as an availability manager would.
    standby
        .child
        .stdin
        .as_mut()
        .expect("piped stdin")
        .write_all(b"take over\n")
        .expect("tell the standby");
    let taking_over = standby.until(Duration::from_secs(10), |l| {
        l.starts_with("standby: taking over")
    });
    let arrivals: u32 = taking_over
        .strip_prefix("standby: taking over after ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the number of arrival callbacks");
    assert!(
        arrivals > 0,
        "the standby followed the active: {taking_over}"
    );
    let resumed_line = standby.until(Duration::from_secs(10), |l| {
        l.starts_with("standby: active, resuming from ")
    });
    let resumed: u32 = resumed_line
        .trim_start_matches("standby: active, resuming from ")
        .parse()
        .expect("the value it resumed from");
    assert!(
        resumed >= last,
        "resumed from {resumed}, but the active had stored {last}"
    );
    let next = standby.until(Duration::from_secs(10), |l| stored(l).is_some());
    assert_eq!(stored(&next), Some(resumed + 1));
    let _ = standby.rest();
    let status = standby.child.wait().expect("wait for the standby");
    assert!(
        status.success(),
        "the standby ends cleanly after its 3 ticks: {status}\n{}",
        standby.seen.join("\n")
    );
}
