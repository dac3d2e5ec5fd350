//! The checkpoint API across processes on one node. A `harness = false` test: the binary
//! re-executes itself as its child processes (the role in `CKPT_AGENT_TEST_ROLE`, the
//! domain in `CKPT_DIR`), drives them through stdin and reads their stdout lines, always
//! with a deadline (a child that does not answer in time fails the check, never hangs it).
//! It prints `test … ok/FAILED` and one `PASS`/`FAIL` line per check, and exits non-zero
//! if a check failed. Each check runs in its own domain directory under /dev/shm.
//!
//! - `retention_runs_from_the_death_of_the_last_opener`: a child creates a checkpoint with
//!   a short retention, writes and is killed with SIGKILL; the parent's next open finds
//!   the data; a re-open within the retention cancels the deletion (another process still
//!   finds it after the first deadline); once the retention has run out with nobody
//!   open, a fresh initialize and open find nothing and the replica object is gone. (With
//!   no daemon nobody sees a SIGKILL happen: the engine starts the retention clock of a
//!   killed last opener at the first sweep that notices the death, never earlier; so the
//!   parent opens right after the kill, and times the rest from its own closes.)
//! - `unlink_while_open_in_another_process_keeps_the_old_instance_for_its_opener`: a child
//!   holds a checkpoint open; the parent unlinks it (an open without CREATE then gives
//!   NotExist), creates a new one under the same name (another instance) and works on
//!   it, while the child keeps reading and writing the old one; at the child's exit the
//!   old replica object is gone. An unlinked checkpoint whose last opener is killed goes
//!   at the next sweep.
//! - `arrival_callbacks_reach_a_reader_in_another_process`: a reader process with an
//!   arrival callback dispatches in a BLOCKING thread while the parent overwrites, writes
//!   (several elements, several sections) and creates sections; the reader reports
//!   exactly the elements written (section, offset, size) and the bytes it read in the
//!   callback; deletes and expiration changes are not arrivals; the parent's writing
//!   handle gets no callback for its own writes while its reading handle does.
//! - `a_process_out_of_file_descriptors_gets_no_resources_until_it_has_some_again`: a child
//!   that has used up its descriptors gets NO_RESOURCES (not LIBRARY) from initialize in a
//!   new domain, from creating and from opening a checkpoint, and succeeds at all three
//!   once it has closed a few.

#[path = "../../engine/tests/support/tier.rs"]
mod tier;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ckpt_agent::{
    ArrivalElement, Callbacks, Checkpoint, CheckpointHandle, Config, CreationAttributes,
    CreationFlags, DispatchFlags, Error, Library, OpenFlags, TIME_END, Version, WriteElement,
};

const ROLE: &str = "CKPT_AGENT_TEST_ROLE";
/// How long a child may take to answer.
const ANSWER: Duration = Duration::from_secs(10);
/// The retention of the first check: short, with margins of [`MARGIN`] around it.
const RETENTION: Duration = Duration::from_millis(800);
const MARGIN: Duration = Duration::from_millis(400);

const TEST_RETENTION: &str = "retention_runs_from_the_death_of_the_last_opener";
const TEST_UNLINK: &str =
    "unlink_while_open_in_another_process_keeps_the_old_instance_for_its_opener";
const TEST_ARRIVAL: &str = "arrival_callbacks_reach_a_reader_in_another_process";
const TEST_FDS: &str =
    "a_process_out_of_file_descriptors_gets_no_resources_until_it_has_some_again";

/// A check: what failed, if anything.
type Check = fn() -> Result<(), String>;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
    }
    let tests: [(&str, Check); 4] = [
        (TEST_RETENTION, retention_test),
        (TEST_UNLINK, unlink_test),
        (TEST_ARRIVAL, arrival_test),
        (TEST_FDS, fds_test),
    ];
    tier::run_tests(tier::chosen(&tests));
}

// ---- plumbing ---------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    if b.is_empty() {
        return "-".to_owned();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// A fresh domain directory for one check (never the same path twice in a process: the
/// engine keys a process's liveness lock by path), removed at its end.
struct Domain(PathBuf);

impl Domain {
    fn new(tag: &str) -> Self {
        let root = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = root.join(format!("ckpt-agent-mp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn config(&self) -> Config {
        Config {
            domain: self.0.clone(),
            ..Config::default()
        }
    }

    fn library(&self) -> Result<Library, String> {
        Library::initialize_with(self.config(), Version::B_02_02, Callbacks::default())
            .map_err(|e| format!("initialize: {e}"))
    }

    /// Whether the replica object of `instance` is in the domain directory.
    fn has_object(&self, instance: u64) -> bool {
        self.0.join(format!("r-{instance:016x}")).exists()
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process: line commands on stdin, line answers on stdout (read by a thread, so
/// every wait has a deadline). Killed and reaped when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    fn spawn(name: &'static str, domain: &Domain, vars: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().expect("the test binary's own path");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, name)
            .env("CKPT_DIR", &domain.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a child process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            name,
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: cannot send {line:?}: {e}", self.name))
    }

    /// The next line, within `within`.
    fn line_within(&mut self, within: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(within) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "{}: no answer within {:.1} s",
                self.name,
                within.as_secs_f64()
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("{}: exited without answering", self.name))
            }
        }
    }

    fn line(&mut self) -> Result<String, String> {
        self.line_within(ANSWER)
    }

    /// The next line, which must start with `prefix`; returns the rest.
    fn expect(&mut self, prefix: &str) -> Result<String, String> {
        let l = self.line()?;
        match l.strip_prefix(prefix) {
            Some(rest) => Ok(rest.trim_start().to_owned()),
            None => Err(format!("{}: expected {prefix:?}, got {l:?}", self.name)),
        }
    }

    /// Sends `cmd` and returns the answer, which must start with `prefix`.
    fn ask(&mut self, cmd: &str, prefix: &str) -> Result<String, String> {
        self.send(cmd)?;
        self.expect(prefix)
    }

    /// SIGKILL, then reap.
    fn kill9(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        self.child
            .wait()
            .map(drop)
            .map_err(|e| format!("{}: reap: {e}", self.name))
    }

    /// Waits (bounded) for the child to exit by itself; it must exit with 0.
    fn exited(&mut self) -> Result<(), String> {
        let end = Instant::now() + ANSWER;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => return Err(format!("{}: exited with {st}", self.name)),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(2)),
                Ok(None) => return Err(format!("{}: did not exit", self.name)),
                Err(e) => return Err(format!("{}: wait: {e}", self.name)),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// Eight sections of up to 64 bytes, retained `retention_ns` after the last close.
fn attrs(retention_ns: i64) -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA,
        checkpoint_size: 8 * 64,
        retention_duration: retention_ns,
        max_sections: 8,
        max_section_size: 64,
        max_section_id_size: 16,
    }
}

const RW: OpenFlags = OpenFlags(OpenFlags::READ.0 | OpenFlags::WRITE.0);
const CREATE_RW: OpenFlags = OpenFlags(RW.0 | OpenFlags::CREATE.0);

fn read_all(ck: &Checkpoint, id: &[u8]) -> Result<Vec<u8>, Error> {
    ck.borrow(id).map(|b| b.to_vec())
}

// ---- child processes --------------------------------------------------------------------

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child started without {name}"))
}

/// Runs child `role` and exits.
fn child(role: &str) -> ! {
    // A failed or killed parent leaves no child behind.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let code = match role {
        "creator" => creator(),
        "opener" => opener(),
        "holder" => holder(),
        "reader" => reader(false),
        "poll-reader" => reader(true),
        "starved" => starved(),
        other => {
            eprintln!("unknown role {other}");
            2
        }
    };
    std::process::exit(code)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn init() -> Library {
    Library::initialize(Version::B_02_02, Callbacks::default()).expect("initialize")
}

/// Creates `CKPT_TEST_NAME` with retention `CKPT_TEST_RETENTION_MS`, creates section `s`
/// with `CKPT_TEST_DATA`, says `READY <instance>`, then waits to be killed.
fn creator() -> i32 {
    let lib = init();
    let ms: i64 = env("CKPT_TEST_RETENTION_MS").parse().expect("ms");
    let ck = lib
        .open(
            env("CKPT_TEST_NAME"),
            Some(&attrs(ms * 1_000_000)),
            CREATE_RW,
            TIME_END,
        )
        .expect("create the checkpoint");
    ck.create_section(Some(b"s"), TIME_END, env("CKPT_TEST_DATA").as_bytes())
        .expect("create section s");
    say(&format!("READY {:x}", ck.instance()));
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    // Not reached in the test (SIGKILL comes first); leave without closing anyway.
    std::process::exit(0)
}

/// Opens `CKPT_TEST_NAME` without CREATE and says `FOUND <data of s>` or `ERR <code>`.
fn opener() -> i32 {
    let lib = init();
    match lib.open(env("CKPT_TEST_NAME"), None, OpenFlags::READ, TIME_END) {
        Ok(ck) => match read_all(&ck, b"s") {
            Ok(data) => say(&format!("FOUND {}", hex(&data))),
            Err(e) => say(&format!("ERR {}", e.name())),
        },
        Err(e) => say(&format!("ERR {}", e.name())),
    }
    0
}

/// Opens `CKPT_TEST_NAME` (creating it with section `s` = "old-0" when `CKPT_TEST_CREATE`
/// is 1), says `READY <instance>`, then serves: `w <hex>` overwrites `s` (`OK`/`ERR`),
/// `r` reads it (`R <hex>`/`ERR`), `c <id> <hex>` creates a section, `st` answers
/// `ST <sections> <memory used>`, `rt <ns>` sets the retention duration, `q` closes
/// everything, says `BYE` and exits.
fn holder() -> i32 {
    let lib = init();
    let name = env("CKPT_TEST_NAME");
    let ck = if env("CKPT_TEST_CREATE") == "1" {
        let ck = lib
            .open(&name, Some(&attrs(TIME_END)), CREATE_RW, TIME_END)
            .expect("create the checkpoint");
        ck.create_section(Some(b"s"), TIME_END, b"old-0")
            .expect("create section s");
        ck
    } else {
        lib.open(&name, None, RW, TIME_END)
            .expect("open the checkpoint")
    };
    say(&format!("READY {:x}", ck.instance()));
    let answer = |r: Result<String, Error>| match r {
        Ok(s) => s,
        Err(e) => format!("ERR {}", e.name()),
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["w", data] => say(&answer(
                ck.overwrite(b"s", &unhex(data)).map(|()| "OK".into()),
            )),
            ["r"] => say(&answer(
                read_all(&ck, b"s").map(|d| format!("R {}", hex(&d))),
            )),
            ["c", id, data] => say(&answer(
                ck.create_section(Some(id.as_bytes()), TIME_END, &unhex(data))
                    .map(|_| "OK".into()),
            )),
            ["st"] => {
                say(&answer(ck.status().map(|s| {
                    format!("ST {} {}", s.number_of_sections, s.memory_used)
                })));
            }
            ["rt", ns] => say(&answer(
                ck.set_retention_duration(ns.parse().unwrap_or(-1))
                    .map(|()| "OK".into()),
            )),
            ["q"] => break,
            _ => say(&format!("ERR unknown command {line:?}")),
        }
    }
    drop(ck);
    drop(lib);
    say("BYE");
    0
}

/// Registers an arrival callback, opens `CKPT_TEST_NAME` for READ, dispatches (BLOCKING in
/// a thread, or with `poll` ALL whenever the selection object polls readable) and says
/// `READY`. Each callback is reported as `CB <n>` and one line per element,
/// `E <id> <offset> <size> <bytes read at once>` (hex). `q` finalizes (a blocking
/// dispatcher returns), says `END` and exits.
fn reader(poll: bool) -> i32 {
    let lib = Arc::new(init());
    let ck: Arc<OnceLock<Checkpoint>> = Arc::new(OnceLock::new());
    let seen = Arc::clone(&ck);
    lib.register_arrival_callback(Box::new(
        move |h: CheckpointHandle, elems: &[ArrivalElement]| {
            let ck = seen
                .get()
                .expect("the checkpoint is open before callbacks run");
            let mut out = format!("CB {}", elems.len());
            if h != ck.handle() {
                out = format!("CB-OTHER-HANDLE {}", elems.len());
            }
            for e in elems {
                let bytes = match ck.borrow(&e.section_id) {
                    Ok(b) => {
                        let (at, end) = (e.offset as usize, (e.offset + e.size) as usize);
                        b.get(at..end)
                            .map_or_else(|| format!("RANGE-OF-{}", b.len()), hex)
                    }
                    Err(err) => format!("ERR-{}", err.name()),
                };
                out.push_str(&format!(
                    "\nE {} {} {} {bytes}",
                    hex(&e.section_id),
                    e.offset,
                    e.size
                ));
            }
            say(&out);
        },
    ))
    .expect("register the arrival callback");
    let opened = lib
        .open(env("CKPT_TEST_NAME"), None, OpenFlags::READ, TIME_END)
        .expect("open for READ");
    let _ = ck.set(opened);
    if poll {
        say("READY");
        poll_loop(&lib);
        let _ = lib.finalize();
        say("END");
        return 0;
    }
    let dispatcher = {
        let lib = Arc::clone(&lib);
        std::thread::spawn(move || lib.dispatch(DispatchFlags::Blocking))
    };
    say("READY");
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        if line.trim() == "q" {
            break;
        }
        line.clear();
    }
    let _ = lib.finalize();
    match dispatcher.join() {
        Ok(Ok(())) => say("END"),
        Ok(Err(e)) => say(&format!("ERR dispatch {e}")),
        Err(_) => say("ERR dispatcher panicked"),
    }
    0
}

/// Polls the selection object and stdin; dispatches ALL when callbacks are pending,
/// returns at `q` (or the end of stdin).
fn poll_loop(lib: &Library) {
    use rustix::event::{PollFd, PollFlags};
    use std::os::fd::{AsFd, BorrowedFd};
    let raw = lib.selection_object().expect("the selection object");
    // SAFETY: the selection object stays open until `lib` is finalized, after this loop.
    let sel = unsafe { BorrowedFd::borrow_raw(raw) };
    let stdin = std::io::stdin();
    let input = stdin.as_fd();
    let mut line = String::new();
    loop {
        let mut fds = [
            PollFd::new(&sel, PollFlags::IN),
            PollFd::new(&input, PollFlags::IN),
        ];
        if rustix::event::poll(&mut fds, None).is_err() {
            continue;
        }
        let (callbacks, command) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
        if callbacks {
            lib.dispatch(DispatchFlags::All).expect("dispatch");
        }
        if command {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(n) if n > 0 && line.trim() != "q" => {}
                _ => return,
            }
        }
    }
}

/// Uses up its file descriptors (soft limit lowered to 64), then tries: `a` initialize in
/// the fresh domain `CKPT_TEST_FRESH_DIR`, `b` create `safCkpt=new`, `c` open the existing
/// `safCkpt=there`, `d` initialize in its own domain again; says `OUT a=<code> b=… c=… d=…`
/// (`OK` or the error's name). Then it closes a few descriptors, tries `a`, `b`, `c` again
/// and says `BACK a=… b=… c=…`.
fn starved() -> i32 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lib = init();
    let max = getrlimit(Resource::Nofile).maximum;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(64),
            maximum: max,
        },
    )
    .expect("lower the descriptor limit");
    let mut hoard = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hoard.push(f);
    }
    let code = |r: Result<(), Error>| match r {
        Ok(()) => "OK".to_owned(),
        Err(e) => e.name().to_owned(),
    };
    let fresh = Config {
        domain: PathBuf::from(env("CKPT_TEST_FRESH_DIR")),
        ..Config::default()
    };
    let tries = |lib: &Library| {
        let a = code(
            Library::initialize_with(fresh.clone(), Version::B_02_02, Callbacks::default())
                .map(drop),
        );
        let b = code(
            lib.open("safCkpt=new", Some(&attrs(0)), CREATE_RW, TIME_END)
                .map(drop),
        );
        let c = code(
            lib.open("safCkpt=there", None, OpenFlags::READ, TIME_END)
                .map(drop),
        );
        format!("a={a} b={b} c={c}")
    };
    let out = tries(&lib);
    let d = code(Library::initialize(Version::B_02_02, Callbacks::default()).map(drop));
    say(&format!("OUT {out} d={d}"));
    hoard.truncate(hoard.len().saturating_sub(16));
    say(&format!("BACK {}", tries(&lib)));
    0
}

// ---- (a) retention ----------------------------------------------------------------------

fn retention_test() -> Result<(), String> {
    let domain = Domain::new("retention");
    let name = "safCkpt=retained";
    let vars = |extra: &[(&'static str, String)]| {
        let mut v = vec![("CKPT_TEST_NAME", name.to_owned())];
        v.extend_from_slice(extra);
        v
    };
    let mut creator = Proc::spawn(
        "creator",
        &domain,
        &vars(&[
            ("CKPT_TEST_RETENTION_MS", RETENTION.as_millis().to_string()),
            ("CKPT_TEST_DATA", "from the creator".to_owned()),
        ]),
    );
    let instance = u64::from_str_radix(&creator.expect("READY")?, 16)
        .map_err(|e| format!("creator: bad instance: {e}"))?;
    creator.kill9()?;

    // The creator died holding its open: the retention runs from there, so the next open
    // (well within it) finds the data.
    let lib = domain.library()?;
    let ck = lib
        .open(name, None, OpenFlags::READ, TIME_END)
        .map_err(|e| format!("open after the creator's death: {e}"))?;
    ensure(ck.instance() == instance, || "another instance".into())?;
    let data = read_all(&ck, b"s").map_err(|e| format!("read s: {e}"))?;
    ensure(data == b"from the creator", || {
        format!("s holds {:?}", data.escape_ascii().to_string())
    })?;
    ck.close().map_err(|e| format!("close: {e}"))?;
    let closed = Instant::now();

    // A re-open within the retention cancels the deletion: past the first deadline,
    // another process still finds it.
    std::thread::sleep(RETENTION / 2);
    let again = lib
        .open(name, None, OpenFlags::READ, TIME_END)
        .map_err(|e| format!("re-open within the retention: {e}"))?;
    ensure(closed.elapsed() < RETENTION, || {
        "the re-open came too late to test anything (slow machine)".into()
    })?;
    std::thread::sleep((RETENTION + MARGIN).saturating_sub(closed.elapsed()));
    let mut opener = Proc::spawn("opener", &domain, &vars(&[]));
    let found = opener.expect("")?;
    ensure(
        found == format!("FOUND {}", hex(b"from the creator")),
        || format!("another process, after the first deadline, got {found:?}"),
    )?;
    opener.exited()?;
    ensure(domain.has_object(instance), || {
        "the replica object went while open".into()
    })?;

    // Retention runs out with nobody open: a fresh initialize and open sweep it away.
    again.close().map_err(|e| format!("close: {e}"))?;
    drop(lib);
    std::thread::sleep(RETENTION + MARGIN);
    let lib = domain.library()?;
    match lib.open(name, None, OpenFlags::READ, TIME_END) {
        Err(Error::NotExist) => {}
        Ok(_) => return Err("still there after the retention ran out".into()),
        Err(e) => return Err(format!("open after the retention: {e}")),
    }
    ensure(!domain.has_object(instance), || {
        "the replica object outlived the retention".into()
    })
}

// ---- (b) unlink while open --------------------------------------------------------------

fn unlink_test() -> Result<(), String> {
    let domain = Domain::new("unlink");
    let name = "safCkpt=unlinked";
    let mut holder = Proc::spawn(
        "holder",
        &domain,
        &[
            ("CKPT_TEST_NAME", name.to_owned()),
            ("CKPT_TEST_CREATE", "1".to_owned()),
        ],
    );
    let old = u64::from_str_radix(&holder.expect("READY")?, 16)
        .map_err(|e| format!("holder: bad instance: {e}"))?;
    let lib = domain.library()?;
    lib.unlink(name).map_err(|e| format!("unlink: {e}"))?;
    // §4.4: the name is gone at once.
    match lib.open(name, None, RW, TIME_END) {
        Err(Error::NotExist) => {}
        other => return Err(format!("open after unlink: {other:?}")),
    }
    match lib.unlink(name) {
        Err(Error::NotExist) => {}
        other => return Err(format!("second unlink: {other:?}")),
    }
    ensure(domain.has_object(old), || {
        "the unlinked checkpoint went while open elsewhere".into()
    })?;

    // A create makes a new instance under the same name.
    let new = lib
        .open(name, Some(&attrs(TIME_END)), CREATE_RW, TIME_END)
        .map_err(|e| format!("create again: {e}"))?;
    ensure(new.instance() != old, || "the same instance again".into())?;
    new.create_section(Some(b"s"), TIME_END, b"new-0")
        .map_err(|e| format!("create s in the new one: {e}"))?;

    // The holder keeps working on the old one, and the two never mix.
    for round in 1..=3 {
        let data = format!("old-{round}");
        let ok = holder.ask(&format!("w {}", hex(data.as_bytes())), "")?;
        ensure(ok == "OK", || format!("holder's overwrite: {ok}"))?;
        new.overwrite(b"s", format!("new-{round}").as_bytes())
            .map_err(|e| format!("overwrite the new one: {e}"))?;
        let got = holder.ask("r", "R")?;
        ensure(unhex(&got) == data.as_bytes(), || {
            format!(
                "the holder reads {:?}",
                String::from_utf8_lossy(&unhex(&got))
            )
        })?;
        let mine = read_all(&new, b"s").map_err(|e| format!("read the new one: {e}"))?;
        ensure(mine == format!("new-{round}").as_bytes(), || {
            format!("the new one holds {:?}", mine.escape_ascii().to_string())
        })?;
    }
    let ok = holder.ask(&format!("c t {}", hex(b"only-old")), "")?;
    ensure(ok == "OK", || format!("holder's create: {ok}"))?;
    let st = holder.ask("st", "ST")?;
    ensure(st == "2 13", || format!("holder's status: {st}"))?;
    // §4.3: RetentionDurationSet after the unlink (by another process) is BAD_OPERATION.
    let rt = holder.ask("rt 1000000000", "")?;
    ensure(rt == "ERR SA_AIS_ERR_BAD_OPERATION", || {
        format!("holder's retention set after the unlink: {rt}")
    })?;
    match new.borrow(b"t") {
        Err(Error::NotExist) => {}
        other => {
            return Err(format!(
                "the old one's section shows in the new one: {other:?}"
            ));
        }
    }
    let status = new.status().map_err(|e| format!("status: {e}"))?;
    ensure(status.number_of_sections == 1, || {
        format!("the new one has {} sections", status.number_of_sections)
    })?;

    // At the holder's last close the old instance goes; the new one stays.
    let bye = holder.ask("q", "")?;
    ensure(bye == "BYE", || format!("holder: {bye}"))?;
    holder.exited()?;
    ensure(!domain.has_object(old), || {
        format!("r-{old:016x} outlived its last opener's exit")
    })?;
    ensure(domain.has_object(new.instance()), || {
        "the new instance's object went".into()
    })?;

    // An unlinked checkpoint whose last opener is killed goes at the next sweep.
    let mut killed = Proc::spawn(
        "holder",
        &domain,
        &[
            ("CKPT_TEST_NAME", name.to_owned()),
            ("CKPT_TEST_CREATE", "0".to_owned()),
        ],
    );
    let seen = u64::from_str_radix(&killed.expect("READY")?, 16)
        .map_err(|e| format!("holder: bad instance: {e}"))?;
    ensure(seen == new.instance(), || {
        "the holder opened another instance".into()
    })?;
    let second = new.instance();
    lib.unlink(name).map_err(|e| format!("unlink again: {e}"))?;
    new.close().map_err(|e| format!("close: {e}"))?;
    ensure(domain.has_object(second), || {
        "went while the holder has it open".into()
    })?;
    killed.kill9()?;
    drop(lib);
    let _sweep = domain.library()?;
    ensure(!domain.has_object(second), || {
        format!("r-{second:016x} outlived its killed last opener and a sweep")
    })
}

// ---- (c) arrival callbacks --------------------------------------------------------------

/// The arrival callbacks of the parent's library: the handle and the elements.
type Callbacked = Vec<(CheckpointHandle, Vec<ArrivalElement>)>;

/// One element a reader reports: (section id, offset, size, bytes read).
type Arrival = (Vec<u8>, u64, u64, Vec<u8>);

fn show(a: &[Arrival]) -> String {
    let e: Vec<String> = a
        .iter()
        .map(|(id, offset, size, data)| {
            format!(
                "{}@{offset}+{size}={:?}",
                id.escape_ascii(),
                data.escape_ascii().to_string()
            )
        })
        .collect();
    format!("[{}]", e.join(", "))
}

fn arrival(id: &[u8], offset: u64, data: &[u8]) -> Arrival {
    (id.to_vec(), offset, data.len() as u64, data.to_vec())
}

/// The reader's next `n` elements (over as many callbacks as it takes), then nothing more
/// for a short while.
fn arrivals(reader: &mut Proc, n: usize) -> Result<Vec<Arrival>, String> {
    let mut out = Vec::new();
    while out.len() < n {
        let l = reader.line()?;
        let count: usize = l
            .strip_prefix("CB ")
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("reader: expected a callback, got {l:?}"))?;
        for _ in 0..count {
            let e = reader.expect("E")?;
            let w: Vec<&str> = e.split(' ').collect();
            let [id, offset, size, bytes] = w.as_slice() else {
                return Err(format!("reader: bad element {e:?}"));
            };
            let num = |s: &str| s.parse::<u64>().map_err(|_| format!("reader: {e:?}"));
            if bytes.starts_with("ERR") || bytes.starts_with("RANGE") {
                return Err(format!("reader could not read {e:?}"));
            }
            out.push((unhex(id), num(offset)?, num(size)?, unhex(bytes)));
        }
    }
    match reader.line_within(Duration::from_millis(100)) {
        Err(_) => Ok(out),
        Ok(extra) => Err(format!(
            "reader: more than the {n} elements expected: {} then {extra:?}",
            show(&out)
        )),
    }
}

fn arrival_test() -> Result<(), String> {
    let domain = Domain::new("arrival");
    let name = "safCkpt=arrivals";
    let lib = domain.library()?;
    let mine: Arc<Mutex<Callbacked>> = Arc::default();
    let sink = Arc::clone(&mine);
    lib.register_arrival_callback(Box::new(move |h, elems| {
        sink.lock().expect("sink").push((h, elems.to_vec()));
    }))
    .map_err(|e| format!("register: {e}"))?;
    let w = lib
        .open(name, Some(&attrs(0)), CREATE_RW, TIME_END)
        .map_err(|e| format!("create: {e}"))?;
    // Before the reading handles are open: reported to none of them.
    w.create_section(Some(b"s1"), TIME_END, b"before")
        .map_err(|e| format!("create s1: {e}"))?;
    let r = lib
        .open(name, None, OpenFlags::READ, TIME_END)
        .map_err(|e| format!("open for READ: {e}"))?;

    // Two reader processes: one dispatches BLOCKING in a thread, one polls.
    let mut readers = [
        Proc::spawn("reader", &domain, &[("CKPT_TEST_NAME", name.to_owned())]),
        Proc::spawn(
            "poll-reader",
            &domain,
            &[("CKPT_TEST_NAME", name.to_owned())],
        ),
    ];
    for r in &mut readers {
        r.expect("READY")?;
    }
    let step = |readers: &mut [Proc; 2], what: &str, want: Vec<Arrival>| {
        for reader in readers {
            let got = arrivals(reader, want.len())
                .map_err(|e| format!("{what}: {}: {e}", reader.name))?;
            ensure(got == want, || {
                format!(
                    "{what}: {} got\n      {}\n    expected\n      {}",
                    reader.name,
                    show(&got),
                    show(&want)
                )
            })?;
        }
        Ok::<(), String>(())
    };

    w.overwrite(b"s1", b"hello")
        .map_err(|e| format!("overwrite: {e}"))?;
    step(&mut readers, "overwrite", vec![arrival(b"s1", 0, b"hello")])?;

    let write = |elems: &[(&[u8], u64, &[u8])]| {
        let v: Vec<WriteElement<'_>> = elems
            .iter()
            .map(|&(section_id, offset, data)| WriteElement {
                section_id,
                offset,
                data,
            })
            .collect();
        w.write(&v).map_err(|e| format!("write: {e}"))
    };
    write(&[(b"s1", 1, b"EL"), (b"s1", 8, b"tail")])?;
    step(
        &mut readers,
        "two elements in one section",
        vec![arrival(b"s1", 1, b"EL"), arrival(b"s1", 8, b"tail")],
    )?;

    w.create_section(Some(b"s2"), TIME_END, b"second")
        .map_err(|e| format!("create s2: {e}"))?;
    step(&mut readers, "create", vec![arrival(b"s2", 0, b"second")])?;

    write(&[(b"s2", 0, b"S"), (b"s1", 0, b"h")])?;
    step(
        &mut readers,
        "one write over two sections",
        vec![arrival(b"s2", 0, b"S"), arrival(b"s1", 0, b"h")],
    )?;

    // Not arrivals: a delete, an expiration change. The next write is all that comes.
    w.create_section(Some(b"gone"), TIME_END, b"x")
        .map_err(|e| format!("create gone: {e}"))?;
    step(&mut readers, "create gone", vec![arrival(b"gone", 0, b"x")])?;
    w.delete_section(b"gone")
        .map_err(|e| format!("delete: {e}"))?;
    w.set_section_expiration(b"s2", TIME_END - 1)
        .map_err(|e| format!("set expiration: {e}"))?;
    w.overwrite(b"s2", b"")
        .map_err(|e| format!("overwrite: {e}"))?;
    step(&mut readers, "after a delete", vec![arrival(b"s2", 0, b"")])?;

    // In this process: the reading handle is called back, the writing one never.
    let want: Vec<(Vec<u8>, u64, u64)> = [
        (&b"s1"[..], 0, 5),
        (b"s1", 1, 2),
        (b"s1", 8, 4),
        (b"s2", 0, 6),
        (b"s2", 0, 1),
        (b"s1", 0, 1),
        (b"gone", 0, 1),
        (b"s2", 0, 0),
    ]
    .iter()
    .map(|&(id, o, s)| (id.to_vec(), o, s))
    .collect();
    let deadline = Instant::now() + ANSWER;
    let count = |m: &Mutex<Callbacked>| {
        m.lock()
            .expect("sink")
            .iter()
            .map(|(_, e)| e.len())
            .sum::<usize>()
    };
    while count(&mine) < want.len() && Instant::now() < deadline {
        lib.dispatch(DispatchFlags::All)
            .map_err(|e| format!("dispatch: {e}"))?;
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    lib.dispatch(DispatchFlags::All)
        .map_err(|e| format!("dispatch: {e}"))?;
    let got = mine.lock().expect("sink").clone();
    ensure(got.iter().all(|(h, _)| *h == r.handle()), || {
        format!(
            "callbacks for other handles than the reading one ({:?}; the writer is {:?}): {got:?}",
            r.handle(),
            w.handle()
        )
    })?;
    let elements: Vec<(Vec<u8>, u64, u64)> = got
        .iter()
        .flat_map(|(_, e)| e.iter())
        .map(|e| (e.section_id.clone(), e.offset, e.size))
        .collect();
    ensure(elements == want, || {
        format!("the reading handle got {elements:?}, expected {want:?}")
    })?;

    for reader in &mut readers {
        let end = reader.ask("q", "")?;
        ensure(end == "END", || format!("{}: {end}", reader.name))?;
        reader.exited()?;
    }
    Ok(())
}

// ---- (d) out of file descriptors --------------------------------------------------------

fn fds_test() -> Result<(), String> {
    let domain = Domain::new("fds");
    let fresh = Domain::new("fds-fresh");
    let lib = domain.library()?;
    let _there = lib
        .open("safCkpt=there", Some(&attrs(0)), CREATE_RW, TIME_END)
        .map_err(|e| format!("create: {e}"))?;
    let mut starved = Proc::spawn(
        "starved",
        &domain,
        &[("CKPT_TEST_FRESH_DIR", fresh.0.display().to_string())],
    );
    // Running out of descriptors is a lack of resources, not a broken library.
    let out = starved.expect("OUT")?;
    let want = "a=SA_AIS_ERR_NO_RESOURCES b=SA_AIS_ERR_NO_RESOURCES c=SA_AIS_ERR_NO_RESOURCES \
                d=SA_AIS_ERR_NO_RESOURCES";
    ensure(out == want, || format!("out of descriptors: {out}"))?;
    let back = starved.expect("BACK")?;
    ensure(back == "a=OK b=OK c=OK", || {
        format!("with descriptors again: {back}")
    })?;
    starved.exited()
}
