//! The plumbing of the `harness = false` test binaries (the multi-process engine tests and
//! the reliability tiers R4, R4-sealed, R7 and R9): libtest's command line, a runner that
//! prints `N passed, N failed`, and child processes driven by lines on stdin and stdout.
//!
//! It depends on the standard library only, so the tiers of other crates include this very
//! file (`#[path = "../../engine/tests/support/tier.rs"] mod tier;`).

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Command-line handling, after libtest: `--list` (for cargo nextest and friends), name
/// filters (`--exact` too), `--ignored` (only the ignored tests: stress tests) and
/// `--include-ignored`. `names` pairs each test's name with whether it is ignored.
/// Returns which to run.
pub(crate) fn select(names: &[(&str, bool)]) -> Vec<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let (only_ignored, include_ignored) = (has("--ignored"), has("--include-ignored"));
    let exact = has("--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let matches = |n: &str| {
        filters.is_empty()
            || filters.iter().any(|f| {
                if exact {
                    f.as_str() == n
                } else {
                    n.contains(f.as_str())
                }
            })
    };
    if has("--list") {
        for (n, ignored) in names {
            if matches(n) && (!only_ignored || *ignored) {
                println!("{n}: test");
            }
        }
        std::process::exit(0);
    }
    names
        .iter()
        .map(|(n, ignored)| {
            let wanted = if only_ignored {
                *ignored
            } else {
                include_ignored || !*ignored
            };
            wanted && matches(n)
        })
        .collect()
}

/// How a tier test ended.
#[derive(Debug)]
pub(crate) enum Verdict {
    Pass,
    Fail(String),
    /// Could not run here; never counted as passed.
    Skipped(String),
    /// Ran, and showed a documented limit; counted neither way.
    KnownLimit(String),
    /// Showed a reported bug outside the tier's files (its exact signature); counted
    /// neither way. Any other wrong outcome is a failure.
    KnownBug(String),
}

impl From<Result<(), String>> for Verdict {
    fn from(r: Result<(), String>) -> Self {
        match r {
            Ok(()) => Self::Pass,
            Err(why) => Self::Fail(why),
        }
    }
}

/// A tier test: its verdict (or a `Result`, `Err` meaning failed).
pub(crate) type TestFn<V = Verdict> = fn() -> V;

/// A test ready to run.
pub(crate) type Test<'a> = Box<dyn FnOnce() -> Verdict + 'a>;

/// The tests of `tests` (none ignored) that the command line selects ([`select`]), ready
/// for [`run_tests`]. A test returns a [`Verdict`], or a `Result` (`Err`: failed).
pub(crate) fn chosen<V: Into<Verdict> + 'static>(
    tests: &[(&'static str, TestFn<V>)],
) -> Vec<(&'static str, Test<'static>)> {
    let names: Vec<(&str, bool)> = tests.iter().map(|t| (t.0, false)).collect();
    select(&names)
        .into_iter()
        .zip(tests)
        .filter(|(on, _)| *on)
        .map(|(_, &(name, test))| (name, Box::new(move || test().into()) as Test<'static>))
        .collect()
}

/// Runs the (already selected) tests in order, a panic counting as a failure, and prints
/// each outcome and `N passed, N failed`; exits with status 1 if one failed.
pub(crate) fn run_tests(tests: Vec<(&str, Test<'_>)>) {
    let (mut passed, mut failed, mut skipped, mut known) = (0, 0, 0, 0);
    for (name, test) in tests {
        let t0 = Instant::now();
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test))
            .unwrap_or_else(|_| Verdict::Fail("panicked".into()));
        let secs = t0.elapsed().as_secs_f64();
        match verdict {
            Verdict::Pass => {
                passed += 1;
                println!("test {name} ... ok ({secs:.1} s)");
            }
            Verdict::Fail(why) => {
                failed += 1;
                println!("test {name} ... FAILED ({secs:.1} s)\n{why}");
            }
            Verdict::Skipped(why) => {
                skipped += 1;
                println!("test {name} ... SKIPPED\nSKIPPED: {why}");
            }
            Verdict::KnownLimit(what) => {
                known += 1;
                println!("test {name} ... KNOWN LIMIT ({secs:.1} s)\nKNOWN LIMIT: {what}");
            }
            Verdict::KnownBug(what) => {
                known += 1;
                println!("test {name} ... KNOWN BUG ({secs:.1} s)\nKNOWN BUG: {what}");
            }
        }
    }
    if skipped > 0 {
        println!("{skipped} skipped (not counted as passed)");
    }
    if known > 0 {
        println!("{known} known limit(s) or bug(s) shown (not counted as passed)");
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// How a child ended, in words: whether it exited cleanly, and how.
pub(crate) fn describe(st: ExitStatus) -> (bool, String) {
    match (st.signal(), st.code()) {
        (Some(sig), _) => {
            let name = match sig {
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGBUS => "SIGBUS",
                libc::SIGABRT => "SIGABRT",
                libc::SIGKILL => "SIGKILL",
                _ => "a signal",
            };
            (false, format!("died by {name} ({sig})"))
        }
        (_, Some(0)) => (true, "exited cleanly".into()),
        (_, Some(3)) => (false, "hung in a call (its watchdog fired)".into()),
        (_, Some(101)) => (false, "panicked".into()),
        (_, code) => (false, format!("exited with {code:?}")),
    }
}

/// Waits up to `limit` for `child` to end; kills and reaps it after that (`None`).
pub(crate) fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` (killing it after `limit`); what it wrote to its stdout and stderr
/// (when piped) and how it ended (`None`: killed).
pub(crate) fn collect(child: &mut Child, limit: Duration) -> (String, String, Option<ExitStatus>) {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_or_kill(child, limit);
    (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
        status,
    )
}

/// A line to the parent, on stdout (a child's report).
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// An environment variable the parent must have set for this child.
pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child started without {name}"))
}

/// A child process driven by lines: commands on its stdin, its stdout lines on a channel.
pub(crate) struct Kid {
    who: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Kid {
    /// Starts `cmd` with piped stdin and stdout (stderr as the caller set it); `who` names
    /// it in errors.
    pub(crate) fn spawn(mut cmd: Command, who: impl Into<String>) -> Self {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn a child");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            who: who.into(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Its name in errors.
    pub(crate) fn who(&self) -> &str {
        &self.who
    }

    /// Waits up to `limit` for a line starting with `prefix`.
    pub(crate) fn expect(&mut self, prefix: &str, limit: Duration) -> Result<String, String> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return Ok(l);
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "{}: no {prefix:?} line within {limit:?} (got {:?})",
                        self.who, self.seen
                    ));
                }
            }
        }
    }

    /// The next line, if one comes within `limit` (kept for [`Kid::stop`]'s lines too).
    pub(crate) fn line(&mut self, limit: Duration) -> Option<String> {
        let l = self.lines.recv_timeout(limit).ok()?;
        self.seen.push(l.clone());
        Some(l)
    }

    /// Sends a command line.
    pub(crate) fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Tells it to stop (`q`), collects its report and reaps it. Returns its lines and how
    /// it ended (`None`: it did not end within `limit` and was killed).
    pub(crate) fn stop(&mut self, limit: Duration) -> (Vec<String>, Option<ExitStatus>) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"q\n");
        }
        let status = wait_or_kill(&mut self.child, limit);
        // The reader thread sees end of file once the child is gone.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(l);
        }
        (std::mem::take(&mut self.seen), status)
    }
}
