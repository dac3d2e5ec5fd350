//! The operator CLI end to end: the built `ckpt` binary run against domains this test
//! fills through ckpt-agent (standalone), through the C example (libSaCkpt), and through
//! a two-node ckptd cluster — asserting what it prints and how it exits.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_agent::{
    Callbacks, Checkpoint, Config, CreationAttributes, CreationFlags, Library, OpenFlags, TIME_END,
    Version, WriteElement,
};
use ckpt_tools::ckptd::{self, LocalCluster};
use serde_json::Value;

mod support;

const SECOND: i64 = 1_000_000_000;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh domain directory under /dev/shm, removed on drop.
struct TempDomain(PathBuf);

impl TempDomain {
    fn new(tag: &str) -> Self {
        Self(unique_path(Path::new("/dev/shm"), tag))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// A standalone library on this domain (never cluster mode, whatever the environment).
    fn library(&self) -> Library {
        let config = Config {
            domain: self.0.clone(),
            cluster: None,
            ..Config::default()
        };
        Library::initialize_with(config, Version::B_02_02, Callbacks::default())
            .expect("initialize a standalone library")
    }
}

impl Drop for TempDomain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique_path(parent: &Path, tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    parent.join(format!(
        "ckpt-cli-{tag}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn attrs(max_sections: u32, retention: i64) -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA,
        checkpoint_size: u64::from(max_sections) * 1024,
        retention_duration: retention,
        max_sections,
        max_section_size: 1024,
        max_section_id_size: 16,
    }
}

fn create(lib: &Library, name: &str, attrs: &CreationAttributes) -> Checkpoint {
    lib.open(
        name,
        Some(attrs),
        OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
        TIME_END,
    )
    .expect("create the checkpoint")
}

/// What one run of `ckpt` did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stdout_bytes: Vec<u8>,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.describe()))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stdout_bytes: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

fn ckpt_command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ckpt"));
    c.arg("--dir")
        .arg(dir)
        .env_remove("CKPT_CLUSTER_SOCKET")
        .env_remove("CKPT_DIR")
        .env_remove("CKPT_DOMAIN");
    c
}

fn ckpt(dir: &Path, args: &[&str]) -> Run {
    ckpt_command(dir)
        .args(args)
        .output()
        .expect("run ckpt")
        .into()
}

/// The table row (line of `ls`) that starts with `name` followed by a column gap.
fn row<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    listing.lines().find(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with("  "))
    })
}

fn columns(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn ls_lists_every_checkpoint_with_its_section_count() {
    let domain = TempDomain::new("ls");
    let lib = domain.library();
    let a = create(&lib, "safCkpt=alpha", &attrs(10, 60 * SECOND));
    for id in ["one", "two", "three"] {
        a.create_section(Some(id.as_bytes()), TIME_END, b"12345")
            .expect("create section");
    }
    let b = create(&lib, "safCkpt=beta", &attrs(1, 0));
    b.overwrite(b"", b"default section data")
        .expect("write the default section");

    let run = ckpt(domain.path(), &["ls"]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let header = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        columns(header),
        [
            "NAME",
            "INSTANCE",
            "FLAGS",
            "SECTIONS",
            "USED",
            "SIZE",
            "REPLICAS",
            "ACTIVE",
            "ROLE/TERM",
            "OPENS",
            "RETENTION"
        ],
        "{}",
        run.describe()
    );
    let alpha = columns(row(&run.stdout, "safCkpt=alpha").expect("alpha is listed"));
    assert_eq!(
        alpha[2..],
        [
            "ACTIVE",
            "3/10",
            "15 B",
            "10.0 KiB",
            "local",
            "local",
            "primary/0",
            "1",
            "1m"
        ]
    );
    let beta = columns(row(&run.stdout, "safCkpt=beta").expect("beta is listed"));
    assert_eq!(beta[3..5], ["1/1", "20 B"]);
    // Columns are aligned: every row's INSTANCE column ends where the header's does.
    let end = header.find("INSTANCE").unwrap() + "INSTANCE".len();
    for line in run.stdout.lines().skip(1) {
        assert!(
            line[..end].ends_with(|c: char| c.is_ascii_digit()),
            "{line:?} is aligned under {header:?}"
        );
    }
    drop((a, b));
}

#[test]
fn ls_json_parses_and_has_the_stable_fields() {
    let domain = TempDomain::new("ls-json");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=json", &attrs(4, 5 * SECOND));
    ck.create_section(Some(b"s"), TIME_END, b"abc").unwrap();

    let run = ckpt(domain.path(), &["ls", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let v = run.json();
    assert_eq!(v["mode"], "standalone");
    assert_eq!(v["dir"], domain.path().display().to_string());
    let list = v["checkpoints"].as_array().expect("checkpoints array");
    assert_eq!(list.len(), 1);
    let c = &list[0];
    assert_eq!(c["name"], "safCkpt=json");
    assert_eq!(c["state"], "linked");
    assert_eq!(c["creation_flags"], 2);
    assert_eq!(c["creation_flag_names"][0], "SA_CKPT_WR_ACTIVE_REPLICA");
    assert_eq!(c["sections"], 1);
    assert_eq!(c["max_sections"], 4);
    assert_eq!(c["memory_used"], 3);
    assert_eq!(c["checkpoint_size"], 4096);
    assert_eq!(c["opens"], 1);
    assert_eq!(c["retention_ns"], 5 * SECOND);
    assert_eq!(c["local_role"], "primary");
    assert_eq!(c["local_active"], true);
    assert!(c["instance"].as_u64().is_some_and(|i| i > 0));
    assert!(c["object_size"].as_u64().is_some_and(|s| s > 4096));
    assert!(c["error"].is_null());
}

#[test]
fn show_lists_sections_with_their_ids_sizes_and_times() {
    let domain = TempDomain::new("show");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=show", &attrs(8, 0));
    ck.create_section(Some(b"alpha"), TIME_END, b"hello")
        .unwrap();
    ck.create_section(Some(&[0x00, 0x01, 0xff]), TIME_END, &[7u8; 300])
        .unwrap();
    // Year 2100: far ahead, so the section does not expire while the test runs.
    let expiration = 4_102_444_800 * SECOND;
    ck.create_section(Some(b"later"), expiration, b"x").unwrap();

    let run = ckpt(domain.path(), &["show", "safCkpt=show"]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let out = &run.stdout;
    assert_eq!(
        columns(row(out, "name").expect("a name line")),
        ["name", "safCkpt=show"]
    );
    assert!(out.contains("SA_CKPT_WR_ACTIVE_REPLICA (0x2)"), "{out}");
    assert!(out.contains("3 of 8 (maxSections)"), "{out}");
    let alpha = columns(row(out, "alpha").expect("section alpha"));
    assert_eq!(alpha[1..4], ["5 B", "valid", "never"]);
    assert!(
        alpha[4].ends_with("ago)"),
        "last update is a time: {alpha:?}"
    );
    let binary = columns(row(out, "0x0001ff").expect("the binary id, in hex"));
    assert_eq!(binary[1], "300 B");
    let later = columns(row(out, "later").expect("section later"));
    assert!(
        later[3].starts_with("2100-01-01T00:00:00.000Z (in "),
        "{later:?}"
    );
}

#[test]
fn show_json_lists_sections_with_ids_sizes_and_expirations() {
    let domain = TempDomain::new("show-json");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=show-json", &attrs(8, 0));
    ck.create_section(Some(b"a"), TIME_END, b"0123456789")
        .unwrap();
    ck.create_section(Some(&[0xfe]), 4_102_444_800 * SECOND, b"")
        .unwrap();

    let run = ckpt(domain.path(), &["show", "--json", "safCkpt=show-json"]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let v = run.json();
    assert_eq!(v["name"], "safCkpt=show-json");
    assert_eq!(v["sections"].as_array().map(Vec::len), Some(2));
    let find = |id: &str| {
        v["sections"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .unwrap_or_else(|| panic!("section {id} in {v}"))
    };
    let a = find("a");
    assert_eq!(a["id_hex"], "61");
    assert_eq!(a["size"], 10);
    assert_eq!(a["state"], "valid");
    assert!(a["expiration_ns"].is_null());
    assert!(a["last_update_ns"].as_i64().is_some_and(|t| t > 0));
    let fe = find("0xfe");
    assert_eq!(fe["size"], 0);
    assert_eq!(fe["expiration_ns"], 4_102_444_800 * SECOND);
    assert_eq!(fe["expiration"], "2100-01-01T00:00:00.000Z");
}

#[test]
fn dump_prints_the_bytes_as_a_hex_dump_or_raw() {
    let domain = TempDomain::new("dump");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=dump", &attrs(4, 0));
    let text = b"The Checkpoint Service\n";
    ck.create_section(Some(b"11"), TIME_END, text).unwrap();
    ck.create_section(Some(&[0xca, 0xfe]), TIME_END, &[0, 1, 2, 255])
        .unwrap();
    let single = create(&lib, "safCkpt=single", &attrs(1, 0));
    single.overwrite(b"", b"only").unwrap();

    let run = ckpt(domain.path(), &["dump", "safCkpt=dump", "11"]);
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(
        run.stdout,
        "00000000: 5468 6520 4368 6563 6b70 6f69 6e74 2053  The Checkpoint S\n\
         00000010: 6572 7669 6365 0a                        ervice.\n"
    );
    let raw = ckpt(domain.path(), &["dump", "--raw", "safCkpt=dump", "11"]);
    assert_eq!(raw.code, Some(0), "{}", raw.describe());
    assert_eq!(raw.stdout_bytes, text);
    let hex_id = ckpt(domain.path(), &["dump", "--raw", "safCkpt=dump", "0xcafe"]);
    assert_eq!(hex_id.stdout_bytes, [0, 1, 2, 255], "{}", hex_id.describe());
    // maxSections 1: the default section needs no id.
    let default = ckpt(domain.path(), &["dump", "--raw", "safCkpt=single"]);
    assert_eq!(default.stdout_bytes, b"only", "{}", default.describe());
}

#[test]
fn dump_of_a_missing_section_or_without_one_says_what_to_do() {
    let domain = TempDomain::new("dump-missing");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=d", &attrs(4, 0));
    ck.create_section(Some(b"here"), TIME_END, b"x").unwrap();

    let missing = ckpt(domain.path(), &["dump", "safCkpt=d", "gone"]);
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    assert!(
        missing.stderr.contains("no section gone in safCkpt=d")
            && missing.stderr.contains("`ckpt show safCkpt=d`"),
        "{}",
        missing.describe()
    );
    let unnamed = ckpt(domain.path(), &["dump", "safCkpt=d"]);
    assert_eq!(unnamed.code, Some(2), "{}", unnamed.describe());
    assert!(unnamed.stderr.contains("here"), "{}", unnamed.describe());
    let bad_hex = ckpt(domain.path(), &["dump", "safCkpt=d", "0xabc"]);
    assert_eq!(bad_hex.code, Some(2), "{}", bad_hex.describe());
}

/// Kills (by its own handle) a child still running when the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines `from` produces, on a channel.
fn lines_of(from: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn watch_with_count_prints_the_changes_a_thread_makes() {
    let domain = TempDomain::new("watch");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=watch", &attrs(4, 0));
    ck.create_section(Some(b"s"), TIME_END, b"before the watch")
        .unwrap();

    let mut child = ckpt_command(domain.path())
        .args(["watch", "safCkpt=watch", "--count", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ckpt watch");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut child = Reaped(child);
    let err_lines = lines_of(stderr);
    let ready = err_lines
        .recv_timeout(Duration::from_secs(20))
        .expect("watch says it is watching");
    assert!(ready.starts_with("watching safCkpt=watch"), "{ready}");

    std::thread::scope(|s| {
        s.spawn(|| {
            ck.overwrite(b"s", b"first").unwrap();
            ck.overwrite(b"s", b"second!").unwrap();
            ck.write(&[WriteElement {
                section_id: b"s",
                offset: 2,
                data: b"xyz",
            }])
            .unwrap();
        });
    });
    let out_lines = lines_of(stdout);
    let mut lines = Vec::new();
    while lines.len() < 3 {
        match out_lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("watch printed only {lines:#?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for watch") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "watch --count 3 did not end: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {lines:#?}");
    let out = lines.join("\n");
    assert!(
        out_lines.recv_timeout(Duration::from_secs(5)).is_err(),
        "only 3 lines: {out}"
    );
    let fields = |l: &str| -> Vec<String> {
        l.split(' ')
            .filter(|f| !f.starts_with("time=") && !f.starts_with("seq="))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        fields(&lines[0]),
        ["kind=overwrite", "section=s", "offset=0", "size=5"]
    );
    assert_eq!(
        fields(&lines[1]),
        ["kind=overwrite", "section=s", "offset=0", "size=7"]
    );
    assert_eq!(
        fields(&lines[2]),
        ["kind=write", "section=s", "offset=2", "size=3"]
    );
    let seqs: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("seq=")?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        seqs.len() == 3 && seqs.windows(2).all(|w| w[0] + 1 == w[1]),
        "{out}"
    );
}

#[test]
fn rm_makes_ls_drop_the_name_and_openers_keep_their_data_until_close() {
    let domain = TempDomain::new("rm");
    let lib = domain.library();
    let idle = create(&lib, "safCkpt=idle", &attrs(2, 60 * SECOND));
    idle.close().unwrap();
    let busy = create(&lib, "safCkpt=busy", &attrs(2, 60 * SECOND));
    busy.create_section(Some(b"k"), TIME_END, b"kept").unwrap();

    let listed = ckpt(domain.path(), &["ls"]);
    assert!(
        row(&listed.stdout, "safCkpt=idle").is_some(),
        "retention keeps it after its close: {}",
        listed.describe()
    );
    let rm = ckpt(domain.path(), &["rm", "safCkpt=idle"]);
    assert_eq!(rm.code, Some(0), "{}", rm.describe());
    assert!(rm.stdout.contains("deleted"), "{}", rm.describe());
    let rm = ckpt(domain.path(), &["rm", "safCkpt=busy"]);
    assert_eq!(rm.code, Some(0), "{}", rm.describe());
    assert!(rm.stdout.contains("1 open(s)"), "{}", rm.describe());

    let listed = ckpt(domain.path(), &["ls"]);
    assert_eq!(listed.code, Some(0), "{}", listed.describe());
    assert!(
        !listed.stdout.contains("safCkpt=idle"),
        "{}",
        listed.describe()
    );
    assert!(
        row(&listed.stdout, "safCkpt=busy (unlinked)").is_some(),
        "{}",
        listed.describe()
    );
    // The opener still has its data; the name is free for a new checkpoint.
    assert_eq!(busy.read_vec(b"k", 0).unwrap(), b"kept");
    assert!(
        lib.open("safCkpt=busy", None, OpenFlags::READ, TIME_END)
            .is_err()
    );
    busy.close().unwrap();
    let listed = ckpt(domain.path(), &["ls"]);
    assert!(
        listed.stdout.starts_with("no checkpoints in"),
        "{}",
        listed.describe()
    );
    let again = ckpt(domain.path(), &["rm", "safCkpt=busy"]);
    assert_eq!(again.code, Some(1), "{}", again.describe());
    assert!(
        again
            .stderr
            .contains("no checkpoint named \"safCkpt=busy\"")
            && again.stderr.contains("`ckpt ls`"),
        "{}",
        again.describe()
    );
}

#[test]
fn fsck_exits_0_when_healthy_and_1_after_a_header_byte_is_corrupted() {
    let domain = TempDomain::new("fsck");
    let lib = domain.library();
    let good = create(&lib, "safCkpt=good", &attrs(2, 60 * SECOND));
    good.create_section(Some(b"a"), TIME_END, b"1").unwrap();
    let bad = create(&lib, "safCkpt=bad", &attrs(2, 60 * SECOND));
    let instance = bad.instance();
    bad.close().unwrap();

    let healthy = ckpt(domain.path(), &["fsck"]);
    assert_eq!(healthy.code, Some(0), "{}", healthy.describe());
    assert!(
        healthy.stdout.contains("registry: clean")
            && healthy
                .stdout
                .contains("(safCkpt=good): clean (1 sections)"),
        "{}",
        healthy.describe()
    );

    // Flip the first byte of the header (the magic) of safCkpt=bad's replica object.
    corrupt_first_byte(&domain.path().join(format!("r-{instance:016x}")));

    let broken = ckpt(domain.path(), &["fsck"]);
    assert_eq!(broken.code, Some(1), "{}", broken.describe());
    assert!(
        broken.stdout.contains("(safCkpt=bad): cannot check")
            && broken.stdout.contains("(safCkpt=good): clean"),
        "the damaged object is reported and the others still checked: {}",
        broken.describe()
    );
    let json = ckpt(domain.path(), &["fsck", "--json"]);
    assert_eq!(json.code, Some(1), "{}", json.describe());
    let v = json.json();
    assert_eq!(v["clean"], false);
    let objects = v["objects"].as_array().expect("objects");
    let bad_json = objects
        .iter()
        .find(|o| o["name"] == "safCkpt=bad")
        .expect("the bad object is in the report");
    assert_eq!(bad_json["clean"], false);
    assert!(bad_json["error"].as_str().is_some_and(|e| !e.is_empty()));
    let good_json = objects
        .iter()
        .find(|o| o["name"] == "safCkpt=good")
        .expect("the good object is in the report");
    assert_eq!(good_json["clean"], true);
    assert_eq!(good_json["violations"].as_array().map(Vec::len), Some(0));

    // ls and show keep going: the good one is listed, the bad one reported, exit 1.
    let listed = ckpt(domain.path(), &["ls"]);
    assert_eq!(listed.code, Some(1), "{}", listed.describe());
    assert!(
        row(&listed.stdout, "safCkpt=good").is_some(),
        "{}",
        listed.describe()
    );
    assert!(
        listed.stderr.contains("safCkpt=bad") && listed.stderr.contains("ckpt fsck"),
        "{}",
        listed.describe()
    );
    let shown = ckpt(domain.path(), &["show", "safCkpt=bad"]);
    assert_eq!(shown.code, Some(1), "{}", shown.describe());
    assert!(shown.stdout.contains("safCkpt=bad"), "{}", shown.describe());
    drop(good);
}

/// Flips the first byte (the magic) of `file`.
fn corrupt_first_byte(file: &Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .expect("open the object");
    let mut byte = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut byte, 0).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, &[byte[0] ^ 0xff], 0).unwrap();
}

#[test]
fn a_damaged_registry_is_reported_and_the_replica_objects_still_listed() {
    let domain = TempDomain::new("bad-registry");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=orphaned", &attrs(2, 60 * SECOND));
    ck.create_section(Some(b"a"), TIME_END, b"still here")
        .unwrap();
    let object = format!("r-{:016x}", ck.instance());
    drop(ck);
    drop(lib);
    corrupt_first_byte(&domain.path().join("registry"));

    let listed = ckpt(domain.path(), &["ls"]);
    assert_eq!(listed.code, Some(1), "{}", listed.describe());
    let cols = columns(
        row(&listed.stdout, &format!("? ({object})")).unwrap_or_else(|| {
            panic!("the object is listed without a name: {}", listed.describe())
        }),
    );
    assert_eq!(cols[3..5], ["1/2", "10 B"], "{}", listed.describe());
    assert!(
        listed.stderr.contains("node registry"),
        "{}",
        listed.describe()
    );
    let shown = ckpt(domain.path(), &["dump", "--raw", &object, "a"]);
    assert_eq!(shown.stdout, "still here", "{}", shown.describe());
    let checked = ckpt(domain.path(), &["fsck"]);
    assert_eq!(checked.code, Some(1), "{}", checked.describe());
    assert!(
        checked.stdout.contains("registry: cannot check")
            && checked
                .stdout
                .contains(&format!("{object}: clean (1 sections)")),
        "{}",
        checked.describe()
    );
}

#[test]
fn fsck_changes_nothing_while_ls_sweeps_what_retention_has_expired() {
    let domain = TempDomain::new("sweep");
    let lib = domain.library();
    let ck = create(&lib, "safCkpt=short", &attrs(2, 1_000_000));
    let object = domain.path().join(format!("r-{:016x}", ck.instance()));
    ck.close().unwrap();
    std::thread::sleep(Duration::from_millis(50));

    let checked = ckpt(domain.path(), &["fsck"]);
    assert_eq!(checked.code, Some(0), "{}", checked.describe());
    assert!(
        checked.stdout.contains("(safCkpt=short): clean") && object.exists(),
        "fsck reports the expired checkpoint and leaves it: {}",
        checked.describe()
    );
    let listed = ckpt(domain.path(), &["ls"]);
    assert_eq!(listed.code, Some(0), "{}", listed.describe());
    assert!(
        listed.stdout.starts_with("no checkpoints in") && !object.exists(),
        "ls sweeps the registry as any agent does: {}",
        listed.describe()
    );
}

#[test]
fn a_missing_domain_is_a_usage_error_that_says_how_to_choose_one() {
    let dir = unique_path(Path::new("/dev/shm"), "absent");
    for cmd in ["ls", "fsck"] {
        let run = ckpt(&dir, &[cmd]);
        assert_eq!(run.code, Some(2), "{}", run.describe());
        assert!(
            run.stderr.contains(&dir.display().to_string())
                && run.stderr.contains("--dir")
                && run.stderr.contains("CKPT_DIR"),
            "{}",
            run.describe()
        );
        assert!(
            !dir.exists(),
            "a read-only command created {}",
            dir.display()
        );
    }
}

#[test]
fn show_of_an_unknown_name_exits_1_and_points_at_ls() {
    let domain = TempDomain::new("unknown");
    let lib = domain.library();
    let _ck = create(&lib, "safCkpt=known", &attrs(2, 0));
    let run = ckpt(domain.path(), &["show", "safCkpt=unknown"]);
    assert_eq!(run.code, Some(1), "{}", run.describe());
    assert!(
        run.stderr
            .contains("no checkpoint named \"safCkpt=unknown\"")
            && run.stderr.contains(&domain.path().display().to_string())
            && run.stderr.contains("`ckpt ls` lists them"),
        "{}",
        run.describe()
    );
}

// ---- the C example ---------------------------------------------------------------

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `libSaCkpt.so`, built next to this test binary (ckpt-capi is a dev-dependency and its
/// crate types include cdylib).
fn built_shared_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("target/<profile>/deps");
    [deps.join("libSaCkpt.so"), deps.join("../libSaCkpt.so")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "libSaCkpt.so is not next to the test binary in {}; cargo builds it for \
                 ckpt-capi (a dev-dependency of ckpt-tools)",
                deps.display()
            )
        })
}

/// Builds agent/capi/examples/`name`.c against the headers and libSaCkpt into `scratch`.
fn build_c_example(name: &str, scratch: &Path) -> PathBuf {
    let cc = find_on_path("cc").unwrap_or_else(|| {
        panic!(
            "no `cc` on PATH: this test builds the C example against libSaCkpt; install a C \
             compiler (e.g. gcc)"
        )
    });
    let capi = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/capi");
    std::fs::copy(built_shared_library(), scratch.join("libSaCkpt.so.1"))
        .expect("copy libSaCkpt.so");
    std::os::unix::fs::symlink("libSaCkpt.so.1", scratch.join("libSaCkpt.so"))
        .expect("symlink libSaCkpt.so");
    let program = scratch.join(name);
    let built = Command::new(cc)
        .args(["-Wall", "-Wextra", "-std=c99", "-I"])
        .arg(capi.join("include"))
        .arg("-o")
        .arg(&program)
        .arg(capi.join(format!("examples/{name}.c")))
        .arg("-L")
        .arg(scratch)
        .arg("-lSaCkpt")
        .arg(format!("-Wl,-rpath,{}", scratch.display()))
        .arg("-pthread")
        .output()
        .expect("run cc");
    assert!(
        built.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    program
}

#[test]
fn ls_show_dump_and_fsck_read_the_checkpoint_the_c_example_created() {
    let scratch = unique_path(&std::env::temp_dir(), "c-example");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _scratch = RemoveDir(scratch.clone());
    let program = build_c_example("cpsv_demo", &scratch);
    let domain = TempDomain::new("c-example");

    // `cpsv_demo writer` creates, writes and synchronizes, then keeps it open for 10 s.
    let mut child = Command::new(&program)
        .arg("writer")
        .env("CKPT_DIR", domain.path())
        .env_remove("CKPT_CLUSTER_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the C example");
    let lines = lines_of(child.stdout.take().expect("piped stdout"));
    let _writer = Reaped(child);
    let mut seen = Vec::new();
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the writer did not get ready: {seen:#?}"));
        let ready = line.starts_with("writer: keeping the checkpoint open");
        seen.push(line);
        if ready {
            break;
        }
    }
    let name = "safCkpt=DemoCkpt,safApp=safCkptService";
    let text = "The Checkpoint Service of the Service Availability Forum, from C";

    let listed = ckpt(domain.path(), &["ls"]);
    assert_eq!(listed.code, Some(0), "{}", listed.describe());
    let cols = columns(row(&listed.stdout, name).expect("the C checkpoint is listed"));
    assert_eq!(
        cols[2..],
        [
            "ACTIVE,COLLOCATED",
            "1/2",
            "64 B",
            "1.0 KiB",
            "local",
            "local",
            "primary/1",
            "1",
            "1m 40s"
        ]
    );

    let shown = ckpt(domain.path(), &["show", name]);
    assert_eq!(shown.code, Some(0), "{}", shown.describe());
    let section = columns(row(&shown.stdout, "11").expect("section 11 is shown"));
    assert_eq!(section[1..3], ["64 B", "valid"], "{}", shown.describe());
    assert!(
        shown
            .stdout
            .contains("SA_CKPT_WR_ACTIVE_REPLICA | SA_CKPT_CHECKPOINT_COLLOCATED (0xa)"),
        "{}",
        shown.describe()
    );

    let dumped = ckpt(domain.path(), &["dump", "--raw", name, "11"]);
    assert_eq!(dumped.stdout, text, "{}", dumped.describe());

    let checked = ckpt(domain.path(), &["fsck"]);
    assert_eq!(checked.code, Some(0), "{}", checked.describe());
    assert!(
        checked
            .stdout
            .contains(&format!("({name}): clean (1 sections")),
        "{}",
        checked.describe()
    );
}

// ---- a ckptd node ----------------------------------------------------------------

/// A collocated checkpoint `name` opened and made active on node 1 with a section
/// "counter" = "42", opened for reading on node 2, and synchronized: (node 1's library, its
/// handle, node 2's library, its handle).
fn active_and_standby(
    cluster: &LocalCluster,
    name: &str,
) -> (Library, Checkpoint, Library, Checkpoint) {
    let collocated = CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        checkpoint_size: 4 * 4096,
        retention_duration: 10 * SECOND,
        max_sections: 4,
        max_section_size: 4096,
        max_section_id_size: 16,
    };
    let lib1 = support::library(cluster, 1);
    let active = support::retry(|| {
        lib1.open(
            name,
            Some(&collocated),
            OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
            10 * SECOND,
        )
    })
    .expect("open on node 1");
    active.set_active_replica().expect("active on node 1");
    active
        .create_section(Some(b"counter"), TIME_END, b"42")
        .expect("create section");
    let lib2 = support::library(cluster, 2);
    let standby = support::retry(|| lib2.open(name, None, OpenFlags::READ, 10 * SECOND))
        .expect("open on node 2");
    active.synchronize(10 * SECOND).expect("synchronize");
    (lib1, active, lib2, standby)
}

#[test]
fn on_a_ckptd_node_ls_shows_replica_nodes_and_the_active_one_and_rm_goes_through_ckptd() {
    let cluster = LocalCluster::create("cli", &[1, 2], true, 600).expect("cluster files");
    let n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    let n2 = ckptd::spawn(cluster.config.clone(), 2).expect("node 2");
    let name = "safCkpt=cli-cluster";
    let (lib1, active, lib2, standby) = active_and_standby(&cluster, name);

    let dir = cluster.shm_dir(1);
    // The directory table reaches node 1's file once the decisions are made.
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let run = ckpt(&dir, &["ls", "--json"]);
        let v = run.json();
        let c = &v["checkpoints"][0];
        if c["replica_nodes"].as_array().is_some_and(|r| r.len() == 2) && c["opens"] == 2 {
            break v;
        }
        assert!(Instant::now() < deadline, "{}", run.describe());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(v["mode"], "cluster");
    let c = &v["checkpoints"][0];
    assert_eq!(c["name"], name);
    assert_eq!(c["mode"], "cluster");
    assert_eq!(c["active_node"], 1);
    assert_eq!(c["local_role"], "primary");
    assert_eq!(c["sections"], 1);
    assert_eq!(c["replica_nodes"], serde_json::json!([1, 2]));

    let listed = ckpt(&dir, &["ls"]);
    assert_eq!(listed.code, Some(0), "{}", listed.describe());
    let cols = columns(row(&listed.stdout, name).expect("listed on node 1"));
    assert_eq!(cols[6..8], ["1,2", "node 1"], "{}", listed.describe());
    // Node 2's replica follows: role replica.
    let on_two = ckpt(&cluster.shm_dir(2), &["show", name]);
    assert_eq!(on_two.code, Some(0), "{}", on_two.describe());
    assert!(
        on_two.stdout.contains("local replica: replica"),
        "{}",
        on_two.describe()
    );
    assert!(
        row(&on_two.stdout, "counter").is_some(),
        "{}",
        on_two.describe()
    );

    // Unlinking a cluster checkpoint needs ckptd.
    let refused = ckpt(&dir, &["rm", name]);
    assert_eq!(refused.code, Some(2), "{}", refused.describe());
    assert!(
        refused.stderr.contains("--socket"),
        "{}",
        refused.describe()
    );
    let socket = cluster.socket(1);
    let socket = socket.to_str().expect("a UTF-8 socket path");
    let removed = ckpt(&dir, &["rm", "--socket", socket, name]);
    assert_eq!(removed.code, Some(0), "{}", removed.describe());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = ckpt(&dir, &["ls", "--json"]);
        if run.json()["checkpoints"][0]["state"] == "unlinked" {
            break;
        }
        assert!(Instant::now() < deadline, "{}", run.describe());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop((active, standby, lib1, lib2));
    n1.stop();
    n2.stop();
}

#[test]
fn on_a_sealed_node_ls_show_dump_and_fsck_get_the_replicas_from_ckptd_and_say_so_when_it_is_down() {
    let cluster =
        LocalCluster::create_with_options("cli-sealed", &[1, 2], &[1, 2], true, 600, true)
            .expect("cluster files");
    let n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    let n2 = ckptd::spawn(cluster.config.clone(), 2).expect("node 2");
    let name = "safCkpt=cli-sealed";
    let (lib1, active, lib2, standby) = active_and_standby(&cluster, name);
    let object = ckptd::object_name(active.instance());

    let dir = cluster.shm_dir(1);
    assert!(
        !dir.join(&object).exists(),
        "a sealed node keeps no replica file"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let run = ckpt(&dir, &["ls", "--json"]);
        let v = run.json();
        if v["checkpoints"][0]["local_role"] == "primary" {
            break v;
        }
        assert!(Instant::now() < deadline, "{}", run.describe());
        std::thread::sleep(Duration::from_millis(100));
    };
    let c = &v["checkpoints"][0];
    assert_eq!(c["object"], object.as_str());
    assert_eq!(c["sections"], 1);
    assert_eq!(c["error"], Value::Null);

    let shown = ckpt(&dir, &["show", name]);
    assert_eq!(shown.code, Some(0), "{}", shown.describe());
    assert!(
        row(&shown.stdout, "counter").is_some(),
        "{}",
        shown.describe()
    );
    let dumped = ckpt(&dir, &["dump", "--raw", name, "counter"]);
    assert_eq!(dumped.code, Some(0), "{}", dumped.describe());
    assert_eq!(dumped.stdout_bytes, b"42");
    // Node 2's replica too, from node 2's ckptd.
    let on_two = ckpt(&cluster.shm_dir(2), &["show", name]);
    assert_eq!(on_two.code, Some(0), "{}", on_two.describe());
    assert!(
        row(&on_two.stdout, "counter").is_some(),
        "{}",
        on_two.describe()
    );

    let checked = ckpt(&dir, &["fsck", "--json"]);
    assert_eq!(checked.code, Some(0), "{}", checked.describe());
    let objects = checked.json()["objects"].clone();
    assert!(
        objects
            .as_array()
            .expect("objects")
            .iter()
            .any(|o| o["object"] == object.as_str() && o["clean"] == true),
        "{}",
        checked.describe()
    );

    // Without its ckptd, a sealed node's replicas cannot be read: a clear error.
    n1.stop();
    let down = ckpt(&dir, &["ls"]);
    assert_eq!(down.code, Some(2), "{}", down.describe());
    assert!(
        down.stderr.contains("sealed") && down.stderr.contains("does not answer"),
        "{}",
        down.describe()
    );
    drop((active, standby, lib1, lib2));
    n2.stop();
}

#[test]
fn watch_on_a_node_without_a_replica_prints_the_arrivals_through_its_ckptd() {
    let cluster =
        LocalCluster::create_with_options("cli-watch", &[1, 2, 3], &[1, 2], false, 600, false)
            .expect("cluster files");
    let nodes: Vec<_> = [1, 2, 3]
        .iter()
        .map(|&n| ckptd::spawn(cluster.config.clone(), n).expect("node"))
        .collect();
    let name = "safCkpt=cli-watch-remote";
    let attrs = CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA,
        checkpoint_size: 4 * 4096,
        retention_duration: 10 * SECOND,
        max_sections: 4,
        max_section_size: 4096,
        max_section_id_size: 16,
    };
    let lib1 = support::library(&cluster, 1);
    let ck = support::retry(|| {
        lib1.open(
            name,
            Some(&attrs),
            OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
            10 * SECOND,
        )
    })
    .expect("open on node 1");
    ck.create_section(Some(b"s"), TIME_END, b"before").unwrap();
    let dir3 = cluster.shm_dir(3);

    // Node 3 (no director) holds no replica: without ckptd's socket, the error says how.
    let refused = ckpt(&dir3, &["watch", name, "--count", "1"]);
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr.contains("--socket"),
        "{}",
        refused.describe()
    );
    let socket = cluster.socket(3);
    let socket = socket.to_str().expect("a UTF-8 socket path");
    let since = ckpt(&dir3, &["watch", name, "--since", "0", "--socket", socket]);
    assert_eq!(since.code, Some(2), "{}", since.describe());

    let mut child = ckpt_command(&dir3)
        .args(["watch", name, "--socket", socket])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ckpt watch");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let _child = Reaped(child);
    let ready = lines_of(stderr)
        .recv_timeout(Duration::from_secs(20))
        .expect("watch says it is watching");
    assert!(ready.contains("through ckptd"), "{ready}");
    let out = lines_of(stdout);
    // Its subscription starts after the open answered: write until the first arrival
    // shows, then let the stragglers come.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        ck.overwrite(b"s", b"warm").unwrap();
        if let Ok(line) = out.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(line, "kind=arrival section=s offset=0 size=4");
            break;
        }
        assert!(Instant::now() < deadline, "no arrival printed");
    }
    while let Ok(line) = out.recv_timeout(Duration::from_millis(1500)) {
        assert_eq!(line, "kind=arrival section=s offset=0 size=4");
    }

    ck.overwrite(b"s", b"first").unwrap();
    ck.write(&[WriteElement {
        section_id: b"s",
        offset: 2,
        data: b"xyz",
    }])
    .unwrap();
    ck.create_section(Some(b"t"), TIME_END, b"new").unwrap();
    let mut lines = Vec::new();
    while lines.len() < 3 {
        match out.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("watch printed only {lines:#?}"),
        }
    }
    assert_eq!(
        lines,
        [
            "kind=arrival section=s offset=0 size=5",
            "kind=arrival section=s offset=2 size=3",
            "kind=arrival section=t offset=0 size=3",
        ]
    );
    drop((ck, lib1));
    for n in nodes {
        n.stop();
    }
}
