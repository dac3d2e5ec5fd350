//! What the tests that build and run C programs share: the C compiler, the built
//! `libSaCkpt.so` laid out as an installed library, scratch and domain directories, and running
//! a program with a time limit.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The crate's `include/` directory.
pub fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// A file of the crate (`tests/c/conformance.c`, `examples/...`).
pub fn crate_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The C compiler. Its absence fails the test: a C test that did not run is not a pass.
pub fn c_compiler() -> PathBuf {
    find_on_path("cc").unwrap_or_else(|| {
        panic!(
            "no `cc` on PATH: this test compiles C programs against include/ and libSaCkpt, and \
             cannot check the C ABI without a C compiler; install one (e.g. gcc)"
        )
    })
}

pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// The `libSaCkpt.so` cargo built for this test run: `cargo test` builds the crate's cdylib
/// next to the test binary (`target/<profile>/deps/`) and copies it one level up.
pub fn built_shared_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [
        deps.join("libSaCkpt.so"),
        deps.parent()
            .map_or_else(PathBuf::new, |p| p.join("libSaCkpt.so")),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "libSaCkpt.so is not next to the test binary (looked for {candidates:?}); \
                 `cargo test -p ckpt-capi` builds it because the crate type includes cdylib"
            )
        })
}

/// The built library laid out as installed in `dir`: the file `libSaCkpt.so.1` (its SONAME)
/// and the link-time name `libSaCkpt.so` pointing at it.
pub fn install_shared_library(dir: &Path) {
    let real = dir.join("libSaCkpt.so.1");
    fs::copy(built_shared_library(), &real).expect("copy libSaCkpt.so");
    std::os::unix::fs::symlink("libSaCkpt.so.1", dir.join("libSaCkpt.so"))
        .expect("symlink libSaCkpt.so");
}

/// Warnings are errors: the programs and headers must compile clean.
pub const C_WARNINGS: [&str; 4] = ["-Wall", "-Wextra", "-pedantic", "-Werror"];

/// Compiles `sources` into `output` against `include/` and the library installed in `lib_dir`
/// (found at run time through an rpath to `lib_dir`).
pub fn compile_and_link(sources: &[&Path], output: &Path, lib_dir: &Path) {
    let mut cc = Command::new(c_compiler());
    cc.args(C_WARNINGS)
        .arg("-std=c99")
        .arg("-I")
        .arg(include_dir())
        .arg("-o")
        .arg(output)
        .args(sources)
        .arg("-L")
        .arg(lib_dir)
        .arg("-lSaCkpt")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-pthread");
    run_ok(&mut cc);
}

/// Runs `command`, fails the test with its output unless it succeeds, and returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let shown = shown(command);
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {shown}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn shown(command: &Command) -> String {
    format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// What a program run with [`run_limited`] did.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// A description for assertion messages.
    pub fn describe(&self) -> String {
        let how = match self.status.signal() {
            Some(signal) => format!("killed by signal {signal} (a crash)"),
            None => format!("{}", self.status),
        };
        format!(
            "{how}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `command` to its end, killing it after `limit` (a hang is a failure, not a stuck
/// test run).
pub fn run_limited(command: &mut Command, limit: Duration) -> Finished {
    let shown = shown(command);
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {shown}: {error}"));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the program") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = reader.join().unwrap_or_default();
            panic!(
                "{shown} did not finish within {limit:?}; its output so far:\n{}",
                String::from_utf8_lossy(&stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    Finished {
        status,
        stdout,
        stderr,
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "ckpt-capi-{tag}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Under the system temp dir.
    pub fn new(tag: &str) -> Self {
        Self::under(&std::env::temp_dir(), tag)
    }

    /// A checkpoint domain (`CKPT_DIR`) of its own under `/dev/shm`.
    pub fn domain(tag: &str) -> Self {
        let path = Path::new("/dev/shm").join(unique(tag));
        // The library creates the domain directory itself (mode 0700).
        Self(path)
    }

    fn under(parent: &Path, tag: &str) -> Self {
        let path = parent.join(unique(tag));
        fs::create_dir(&path).unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `N passed, N failed` summary line of a C test program.
pub fn summary(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().rev().find(|l| l.contains(" passed, "))?;
    let (passed, rest) = line.split_once(" passed, ")?;
    let failed = rest.strip_suffix(" failed")?;
    Some((passed.trim().parse().ok()?, failed.trim().parse().ok()?))
}
