//! Reliability tier R9, resource exhaustion and denial of service. A `harness = false`
//! test (it re-executes itself inside a private mount namespace); it prints `test … ok /
//! FAILED / SKIPPED` and, as its last line, `N passed, N failed`. A test that cannot run
//! here prints `SKIPPED: <why>` and is not counted as passed. `SEED` fixes the junk.
//!
//! - (a) `/dev/shm` is replaced by a 1 MiB tmpfs in a private mount namespace (`unshare
//!   --mount`, root only). Standalone: checkpoints are created until the next open says
//!   `SA_AIS_ERR_NO_RESOURCES`; the tmpfs is then filled to the last byte and every existing
//!   checkpoint keeps taking writes and section creates (its space was reserved at
//!   creation: no SIGBUS), a new open is still NO_RESOURCES, and once a checkpoint is
//!   unlinked and closed its space serves a new one. Under ckptd (a one-node cluster whose
//!   replicas live on that tmpfs): the same, through the daemon, whose open answers
//!   NO_RESOURCES when it cannot create the replica (it used to answer NOT_EXIST).
//! - (b) every limit, through two ckptd nodes (the second node's calls go to the primary):
//!   more checkpoints than the cluster's `max_checkpoints` (NO_RESOURCES), more sections
//!   than `maxSections` (NO_SPACE), an id longer than `maxSectionIdSize`, data larger than
//!   `maxSectionSize` (INVALID_PARAM), a write past `maxSectionSize` and anything beyond
//!   `checkpointSize` (NO_RESOURCES); after each refusal both replicas still hold every
//!   byte written before. The 40,000,000-byte limit on the data of one write call (NO_RESOURCES,
//!   nothing written) is checked on a standalone node, whose spare slots can be configured
//!   (a cluster replica reserves 64 spare slots of `maxSectionSize`).
//! - (c) two real `ckptd` processes; while an agent measures the replication throughput
//!   of an ALL_REPLICAS checkpoint, `R9_JUNK` (default 10,000) junk datagrams (random bytes,
//!   malformed QUIC Initials, unknown versions, short headers) and `R9_CONNECTS` (default
//!   300) handshakes with foreign-CA or no certificates hit both daemons' QUIC ports. The
//!   daemons stay up, their RSS grows by less than 64 MiB (printed before and after), the
//!   throughput during the flood is at least half the one without (printed), and
//!   replication still works after it.
//! - (d) a peer presenting a certificate of a foreign CA, and one presenting none, are
//!   rejected by ckptd's TLS handshake (a TLS alert), while a certificate of the cluster CA
//!   is accepted. A certificate of the cluster CA naming the wrong node is covered by
//!   `transport/tests/net.rs` (`node_presenting_node_2_certificate_where_node_3_is_expected_is_refused`,
//!   `mesh_does_not_start_with_the_certificate_of_another_node`), which this tier does not
//!   duplicate.

mod support;
#[path = "../../engine/tests/support/tier.rs"]
mod tier;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ckpt_agent::{
    Callbacks, Checkpoint, Config, CreationAttributes, CreationFlags, Error, Library, Limits,
    OpenFlags, TIME_END, Version, WriteElement,
};
use ckpt_tools::ckptd::{self, LocalCluster};
use ckpt_transport::tls;
use quinn::rustls;
use tier::{TestFn, Verdict, chosen, collect, run_tests};

const ROLE: &str = "CKPT_R9_ROLE";
const SECOND: i64 = 1_000_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Fails the test with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

const TMPFS_STANDALONE: &str =
    "full_dev_shm_gives_no_resources_at_open_and_existing_checkpoints_keep_working";
const TMPFS_CLUSTER: &str =
    "full_dev_shm_under_ckptd_gives_no_resources_at_open_and_existing_checkpoints_keep_working";
const TMPFS_SEALED: &str =
    "a_sealed_ckptd_counts_its_memfds_against_a_full_dev_shm_and_existing_checkpoints_keep_working";

const TESTS: &[(&str, TestFn)] = &[
    (TMPFS_STANDALONE, || {
        full_tmpfs(TMPFS_STANDALONE, "standalone")
    }),
    (TMPFS_CLUSTER, || full_tmpfs(TMPFS_CLUSTER, "cluster")),
    (TMPFS_SEALED, || full_tmpfs(TMPFS_SEALED, "sealed")),
    (
        "every_limit_returns_its_error_through_the_cluster_and_loses_nothing",
        || limits_through_the_cluster().into(),
    ),
    (
        "more_than_40_000_000_bytes_in_one_write_is_no_resources_and_writes_nothing",
        || forty_million_bytes().into(),
    ),
    (
        "junk_datagrams_and_handshake_floods_leave_ckptd_up_bounded_and_replicating",
        || junk_flood().into(),
    ),
    (
        "peers_with_a_foreign_ca_certificate_or_none_are_rejected_at_the_handshake",
        || foreign_and_missing_certificates().into(),
    ),
];

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let result = match role.as_str() {
            "standalone" => tmpfs_child(),
            "cluster" => cluster_on_full_tmpfs(false),
            "sealed" => cluster_on_full_tmpfs(true),
            other => Err(format!("unknown role {other}")),
        };
        let code = match result {
            Ok(()) => {
                println!("tmpfs-child: all checks passed");
                0
            }
            Err(why) => {
                println!("tmpfs-child: FAILED: {why}");
                1
            }
        };
        std::process::exit(code);
    }
    // No ignored (stress) variants: the long settings are environment variables.
    let chosen = chosen(TESTS);
    println!("running {} tests", chosen.len());
    run_tests(chosen);
}

// ---- helpers -------------------------------------------------------------------------

/// A small seeded PRNG (splitmix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

fn seed() -> u64 {
    std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn rw() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE
}

fn crw() -> OpenFlags {
    OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE
}

/// Bytes of section `id` version `v`, `len` long.
fn pattern(id: &[u8], v: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31) as u8 ^ id[0] ^ (v as u8))
        .collect()
}

fn domain_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from("/dev/shm").join(format!(
        "ckpt-r9-{tag}-{}-{}",
        std::process::id(),
        seed() % 1_000_000
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn standalone(domain: &Path, limits: Limits) -> Result<Library, String> {
    let config = Config {
        domain: domain.to_path_buf(),
        limits,
        cluster: None,
    };
    Library::initialize_with(config, Version::B_02_02, Callbacks::default())
        .map_err(|e| format!("initialize a standalone library: {e}"))
}

// ---- (a) a full /dev/shm ---------------------------------------------------------------

/// Runs test `name` in a child, role `role`, inside a private mount namespace with a
/// 1 MiB tmpfs mounted over /dev/shm.
fn full_tmpfs(name: &str, role: &str) -> Verdict {
    if !is_root() {
        return Verdict::Skipped(
            "mounting a tmpfs over /dev/shm in a private mount namespace needs root".into(),
        );
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Verdict::Fail(format!("own path: {e}")),
    };
    // The shell runs inside the new namespace: mount, then become this test again.
    let script = "mount -t tmpfs -o size=1m,mode=1777 ckpt-r9 /dev/shm || \
                  { echo \"SKIPPED: mount -t tmpfs over /dev/shm failed\"; exit 0; }; \
                  exec \"$0\" \"$@\"";
    let spawned = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(&exe)
        .args([name, "--exact"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Verdict::Skipped(format!("cannot run `unshare`: {e}")),
    };
    let (out, err, status) = collect(&mut child, Duration::from_secs(180));
    if let Some(why) = out.lines().find_map(|l| l.strip_prefix("SKIPPED: ")) {
        return Verdict::Skipped(why.to_owned());
    }
    for l in out.lines().filter(|l| l.starts_with("tmpfs-child:")) {
        println!("  {l}");
    }
    let Some(status) = status else {
        return Verdict::Fail(format!("the tmpfs child hung\n{out}\n{err}"));
    };
    if !out.contains("tmpfs-child:") && err.contains("unshare") {
        return Verdict::Skipped(format!("no private mount namespace: {}", err.trim()));
    }
    if let Some(sig) = status.signal() {
        return Verdict::Fail(format!(
            "the tmpfs child died by signal {sig}{}\n{err}",
            if sig == rustix::process::Signal::BUS.as_raw() {
                " (SIGBUS)"
            } else {
                ""
            }
        ));
    }
    if let Some(what) = out
        .lines()
        .find_map(|l| l.strip_prefix("tmpfs-child: KNOWN BUG: "))
    {
        return Verdict::KnownBug(what.to_owned());
    }
    if status.success() && out.contains("tmpfs-child: all checks passed") {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("tmpfs child: {status}\n{out}\n--- stderr\n{err}"))
    }
}

/// Writes `path` until the file system is full; returns the bytes left (< a page).
fn fill(path: &Path) -> Result<u64, String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("filler: {e}"))?;
    let chunk = vec![0x5au8; 4096];
    loop {
        match std::io::Write::write(&mut f, &chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    drop(f);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let free = free_bytes(dir);
    ensure!(free < 4096, "the tmpfs is not full: {free} bytes free");
    Ok(free)
}

fn free_bytes(path: &Path) -> u64 {
    rustix::fs::statvfs(path).map_or(0, |st| st.f_bfree * st.f_frsize)
}

/// Inside the private mount namespace, with a 1 MiB tmpfs on /dev/shm.
fn tmpfs_child() -> Result<(), String> {
    let total = rustix::fs::statvfs("/dev/shm").map_or(0, |st| st.f_blocks * st.f_frsize);
    ensure!(
        total <= 1 << 20,
        "/dev/shm is {total} bytes: not the 1 MiB tmpfs"
    );
    let domain = PathBuf::from("/dev/shm/ckpt-r9");
    let limits = Limits {
        checkpoints: 32,
        openers: 64,
        agents: 8,
        spare_slots: 2,
        journal_cells: 64,
        ..Limits::default()
    };
    let lib = standalone(&domain, limits)?;
    let attrs = CreationAttributes {
        creation_flags: CreationFlags::WR_ALL_REPLICAS,
        checkpoint_size: 4 * 16 * 1024,
        retention_duration: 0,
        max_sections: 4,
        max_section_size: 16 * 1024,
        max_section_id_size: 16,
    };
    let ids: [&[u8]; 4] = [b"s0", b"s1", b"s2", b"s3"];
    let mut open = Vec::new();
    let refused = loop {
        let name = format!("safCkpt=fill-{}", open.len());
        match lib.open(&name, Some(&attrs), crw(), TIME_END) {
            Ok(ck) => {
                for id in ids {
                    ck.create_section(Some(id), TIME_END, &pattern(id, 0, 16 * 1024))
                        .map_err(|e| format!("{name}: create section: {e}"))?;
                }
                open.push((name, ck));
            }
            Err(e) => break e,
        }
        ensure!(open.len() < 32, "32 checkpoints fit in 1 MiB?");
    };
    ensure!(
        refused == Error::NoResources
            && refused.code() == 18
            && refused.name() == "SA_AIS_ERR_NO_RESOURCES",
        "open on a full /dev/shm: {refused:?}"
    );
    ensure!(!open.is_empty(), "not even one checkpoint fit");
    println!(
        "tmpfs-child: {} checkpoints fit in 1 MiB, the next open -> {} ({})",
        open.len(),
        refused.name(),
        refused.code()
    );

    // Fill what is left to the last byte: the existing checkpoints must not need any.
    let filler = PathBuf::from("/dev/shm/filler");
    let free = fill(&filler)?;
    for round in 1..=3u32 {
        for (name, ck) in &open {
            for id in ids {
                ck.overwrite(id, &pattern(id, round, 16 * 1024))
                    .map_err(|e| format!("{name}: overwrite on a full tmpfs: {e}"))?;
            }
            ck.write(&[WriteElement {
                section_id: b"s0",
                offset: 100,
                data: b"patched",
            }])
            .map_err(|e| format!("{name}: write on a full tmpfs: {e}"))?;
            ck.delete_section(b"s3")
                .map_err(|e| format!("{name}: delete on a full tmpfs: {e}"))?;
            ck.create_section(Some(b"s3"), TIME_END, &pattern(b"s3", round, 16 * 1024))
                .map_err(|e| format!("{name}: section create on a full tmpfs: {e}"))?;
        }
    }
    for (name, ck) in &open {
        for id in ids {
            let mut want = pattern(id, 3, 16 * 1024);
            if id == b"s0" {
                want[100..107].copy_from_slice(b"patched");
            }
            let got = ck
                .read_vec(id, 0)
                .map_err(|e| format!("{name}: read: {e}"))?;
            ensure!(got == want, "{name}: section {id:?} lost its bytes");
        }
    }
    println!(
        "tmpfs-child: tmpfs full ({free} bytes free): 3 rounds of overwrite, write, delete and \
         create in each existing checkpoint succeeded and read back"
    );
    let again = lib
        .open("safCkpt=one-more", Some(&attrs), crw(), TIME_END)
        .err();
    ensure!(
        again == Some(Error::NoResources),
        "open on a full tmpfs: {again:?}"
    );
    // An existing checkpoint opens again without new space.
    let (first, _) = &open[0];
    let second = lib
        .open(first.as_str(), None, rw(), TIME_END)
        .map_err(|e| format!("reopen {first}: {e}"))?;
    drop(second);

    // Space returns when a checkpoint goes (unlink + last close, retention 0).
    let (name, ck) = open.pop().expect("one");
    lib.unlink(&name)
        .map_err(|e| format!("unlink {name}: {e}"))?;
    drop(ck);
    let reborn = lib
        .open("safCkpt=reborn", Some(&attrs), crw(), TIME_END)
        .map_err(|e| format!("create after freeing a checkpoint's space: {e}"))?;
    reborn
        .create_section(Some(b"s0"), TIME_END, b"fresh")
        .map_err(|e| format!("reborn: {e}"))?;
    println!(
        "tmpfs-child: a new open is NO_RESOURCES again; after unlinking {name} its space serves \
         a new checkpoint"
    );
    drop(reborn);
    drop(open);
    drop(lib);
    let _ = std::fs::remove_file(&filler);
    let _ = std::fs::remove_dir_all(&domain);
    Ok(())
}

/// The same through ckptd (a one-node cluster in this process), whose replicas and
/// directory live on the 1 MiB /dev/shm too.
/// `sealed`: the node keeps its replicas as sealed memfds, which are in no tmpfs; ckptd
/// counts them against its shm_dir's file system, so the 1 MiB bounds them all the same.
fn cluster_on_full_tmpfs(sealed: bool) -> Result<(), String> {
    let total = rustix::fs::statvfs("/dev/shm").map_or(0, |st| st.f_blocks * st.f_frsize);
    ensure!(
        total <= 1 << 20,
        "/dev/shm is {total} bytes: not the 1 MiB tmpfs"
    );
    let cluster = LocalCluster::create_with_options("r9-full", &[1], &[1], false, 1000, sealed)
        .map_err(|e| format!("cluster files: {e}"))?;
    let node = ckptd::spawn(cluster.config.clone(), 1).map_err(|e| format!("node 1: {e}"))?;
    let result = cluster_checks(&cluster);
    node.stop();
    result
}

fn cluster_checks(cluster: &LocalCluster) -> Result<(), String> {
    let config = Config {
        cluster: Some(cluster.socket(1)),
        limits: Limits {
            checkpoints: 32,
            openers: 64,
            ..Limits::default()
        },
        ..Config::default()
    };
    let lib = support::retry(|| {
        Library::initialize_with(config.clone(), Version::B_02_02, Callbacks::default())
    })
    .map_err(|e| format!("initialize in cluster mode: {e}"))?;
    // ckptd gives every replica 64 spare slots and 4096 journal cells: small sections.
    let attrs = CreationAttributes {
        creation_flags: CreationFlags::WR_ALL_REPLICAS,
        checkpoint_size: 64,
        retention_duration: 0,
        max_sections: 2,
        max_section_size: 64,
        max_section_id_size: 8,
    };
    let mut open = Vec::new();
    let refused = loop {
        let name = format!("safCkpt=cfill-{}", open.len());
        match support::retry(|| lib.open(&name, Some(&attrs), crw(), 10 * SECOND)) {
            Ok(ck) => open.push(ck),
            Err(e) => break e,
        }
        ensure!(open.len() < 32, "32 checkpoints fit in 1 MiB?");
    };
    let free = free_bytes(Path::new("/dev/shm"));
    println!(
        "tmpfs-child: {} checkpoints fit in ckptd's 1 MiB, the next open -> {} ({}); {free} \
         bytes left",
        open.len(),
        refused.name(),
        refused.code()
    );
    ensure!(!open.is_empty(), "not even one checkpoint fit");
    // Fill what is left to the last byte; the existing checkpoints keep working.
    let free = fill(Path::new("/dev/shm/filler"))?;
    for round in 1..=3u32 {
        for (k, ck) in open.iter().enumerate() {
            let data = pattern(b"s", round, 64);
            let got = if round == 1 {
                ck.create_section(Some(b"s"), TIME_END, &data).map(drop)
            } else {
                ck.overwrite(b"s", &data)
            };
            got.map_err(|e| format!("checkpoint {k}, round {round}: {e}"))?;
            let back = ck.read_vec(b"s", 0).map_err(|e| format!("read: {e}"))?;
            ensure!(back == data, "checkpoint {k} lost its bytes");
        }
    }
    println!(
        "tmpfs-child: tmpfs full ({free} bytes free): 3 rounds of writes in each existing \
         checkpoint succeeded and read back"
    );
    if refused == Error::NoResources {
        return Ok(());
    }
    let name = format!("safCkpt=cfill-{}", open.len());
    let reopen = lib.open(&name, None, rw(), 10 * SECOND).err();
    let unlink = lib.unlink(&name);
    Err(format!(
        "open on a full shm_dir: {refused:?} (then open without create: {reopen:?}, unlink: \
         {unlink:?})"
    ))
}

// ---- (b) every limit -------------------------------------------------------------------

/// Two in-process nodes, agents on both.
struct Pair {
    nodes: Vec<ckptd::NodeHandle>,
    cluster: LocalCluster,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for n in self.nodes.drain(..) {
            n.stop();
        }
    }
}

fn open_retry(
    lib: &Library,
    name: &str,
    attrs: Option<&CreationAttributes>,
) -> Result<Checkpoint, Error> {
    let flags = if attrs.is_some() { crw() } else { rw() };
    support::retry(|| lib.open(name, attrs, flags, 10 * SECOND))
}

fn limits_through_the_cluster() -> Result<(), String> {
    let mut cluster = LocalCluster::create("r9-limits", &[1, 2], true, 1000)
        .map_err(|e| format!("cluster files: {e}"))?;
    cluster.config.max_checkpoints = 3;
    let mut pair = Pair {
        nodes: Vec::new(),
        cluster,
    };
    for n in [1, 2] {
        let node = ckptd::spawn(pair.cluster.config.clone(), n)
            .map_err(|e| format!("start node {n}: {e}"))?;
        pair.nodes.push(node);
    }
    let lib1 = support::library(&pair.cluster, 1);
    let lib2 = support::library(&pair.cluster, 2);
    let attrs = CreationAttributes {
        creation_flags: CreationFlags::WR_ALL_REPLICAS,
        checkpoint_size: 250,
        retention_duration: 10 * SECOND,
        max_sections: 3,
        max_section_size: 100,
        max_section_id_size: 8,
    };
    let c1 = open_retry(&lib1, "safCkpt=limits", Some(&attrs)).map_err(|e| format!("open: {e}"))?;
    let c2 = open_retry(&lib2, "safCkpt=limits", None).map_err(|e| format!("open on 2: {e}"))?;
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for id in [&b"a"[..], b"b"] {
        let data = pattern(id, 1, 100);
        support::retry(|| c1.create_section(Some(id), TIME_END, &data))
            .map_err(|e| format!("create {id:?}: {e}"))?;
        model.insert(id.to_vec(), data);
    }
    // Everything is held on both replicas, as written.
    let check = |model: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str| -> Result<(), String> {
        for (id, want) in model {
            for (n, ck) in [(1, &c1), (2, &c2)] {
                let got = ck
                    .read_vec(id, 0)
                    .map_err(|e| format!("{what}: read: {e}"))?;
                ensure!(
                    &got == want,
                    "after {what}: section {id:?} read on node {n} changed"
                );
                let local = read_local(ck, id, 100)?;
                ensure!(
                    &local == want,
                    "after {what}: node {n}'s replica of {id:?} changed"
                );
            }
        }
        Ok(())
    };
    check(&model, "creating a and b")?;
    let mut lines = Vec::new();
    for (n, ck) in [(1, &c1), (2, &c2)] {
        let cases: Vec<(&str, Result<(), Error>, Error)> = vec![
            (
                "section beyond checkpointSize (251 of 250 bytes)",
                ck.create_section(Some(b"c"), TIME_END, &[7; 51]).map(drop),
                Error::NoResources,
            ),
            (
                "section id of 9 bytes (maxSectionIdSize 8)",
                ck.create_section(Some(b"123456789"), TIME_END, b"x")
                    .map(drop),
                Error::InvalidParam(""),
            ),
            (
                "initial data of 101 bytes (maxSectionSize 100)",
                ck.create_section(Some(b"big"), TIME_END, &[1; 101])
                    .map(drop),
                Error::InvalidParam(""),
            ),
            (
                "overwrite with 101 bytes",
                ck.overwrite(b"a", &[1; 101]),
                Error::InvalidParam(""),
            ),
            (
                "write of 41 bytes at offset 60 (past maxSectionSize)",
                ck.write(&[WriteElement {
                    section_id: b"a",
                    offset: 60,
                    data: &[2; 41],
                }])
                .map_err(|e| e.error),
                Error::NoResources,
            ),
        ];
        for (what, got, want) in cases {
            ensure!(
                got.err().map(Error::code) == Some(want.code()),
                "node {n}: {what}: got {got:?}, want {}",
                want.name()
            );
            lines.push(format!("node {n}: {what} -> {}", want.name()));
            check(&model, what)?;
        }
    }
    // Fill the budget exactly, then the section limit.
    let data = pattern(b"c", 1, 50);
    c2.create_section(Some(b"c"), TIME_END, &data)
        .map_err(|e| format!("the last 50 bytes of the budget: {e}"))?;
    model.insert(b"c".to_vec(), data);
    check(&model, "creating c")?;
    for (n, ck) in [(1, &c1), (2, &c2)] {
        let got = ck.create_section(Some(b"d"), TIME_END, b"").err();
        ensure!(
            got == Some(Error::NoSpace),
            "node {n}: a 4th section of 3: {got:?}"
        );
        lines.push(format!(
            "node {n}: a 4th section of 3 -> SA_AIS_ERR_NO_SPACE"
        ));
        let got = ck.overwrite(b"c", &[3; 51]).err();
        ensure!(
            got == Some(Error::NoResources),
            "node {n}: growing c past checkpointSize: {got:?}"
        );
        lines.push(format!(
            "node {n}: overwrite growing the data past checkpointSize -> SA_AIS_ERR_NO_RESOURCES"
        ));
        check(&model, "the full checkpoint")?;
    }
    // The cluster holds three checkpoints at most.
    let small = CreationAttributes {
        checkpoint_size: 100,
        max_sections: 1,
        ..attrs
    };
    let _x = open_retry(&lib1, "safCkpt=x", Some(&small)).map_err(|e| format!("x: {e}"))?;
    let _y = open_retry(&lib2, "safCkpt=y", Some(&small)).map_err(|e| format!("y: {e}"))?;
    for (n, lib) in [(1, &lib1), (2, &lib2)] {
        let got = lib
            .open("safCkpt=z", Some(&small), crw(), 10 * SECOND)
            .err();
        ensure!(
            got == Some(Error::NoResources),
            "node {n}: a 4th checkpoint of max_checkpoints 3: {got:?}"
        );
        lines.push(format!(
            "node {n}: a 4th checkpoint (max_checkpoints 3) -> SA_AIS_ERR_NO_RESOURCES"
        ));
    }
    check(&model, "refused opens")?;
    for l in lines {
        println!("  {l}");
    }
    println!("  after every refusal both replicas held every byte written before");
    Ok(())
}

/// The data of one write call is at most 40,000,000 bytes (OpenSAF's
/// `CPSV_MAX_DATA_SIZE`); beyond it NO_RESOURCES, and nothing is written. The elements all
/// go to one section of 1,000,000 bytes, so the replica stays small.
fn forty_million_bytes() -> Result<(), String> {
    const PART: usize = 1_000_000;
    let domain = domain_dir("40m");
    let limits = Limits {
        spare_slots: 2,
        agents: 8,
        // One journal record per element, and a write may use half the ring.
        journal_cells: 128,
        ..Limits::default()
    };
    let lib = standalone(&domain, limits)?;
    let attrs = CreationAttributes {
        creation_flags: CreationFlags::WR_ALL_REPLICAS,
        checkpoint_size: PART as u64,
        retention_duration: 0,
        max_sections: 2,
        max_section_size: PART as u64,
        max_section_id_size: 8,
    };
    let result = (|| {
        let ck = lib
            .open("safCkpt=forty", Some(&attrs), crw(), TIME_END)
            .map_err(|e| format!("open: {e}"))?;
        let v1 = pattern(b"a", 1, PART);
        let v2 = pattern(b"a", 2, PART);
        ck.create_section(Some(b"a"), TIME_END, b"")
            .map_err(|e| format!("create: {e}"))?;
        ck.write(&elems(40, &v1))
            .map_err(|e| format!("a write of exactly 40,000,000 bytes: {e}"))?;
        let got = ck.write(&elems(41, &v2)).err();
        ensure!(
            got.map(|e| (e.index, e.error)) == Some((40, Error::NoResources)),
            "a write of 41,000,000 bytes: {got:?}"
        );
        ensure!(
            ck.read_vec(b"a", 0).map_err(|e| e.to_string())? == v1,
            "the refused write changed the section"
        );
        println!(
            "  40 elements of 1,000,000 bytes in one write succeed; 41 -> element 40: \
             SA_AIS_ERR_NO_RESOURCES, nothing written"
        );
        Ok(())
    })();
    drop(lib);
    let _ = std::fs::remove_dir_all(&domain);
    result
}

/// `n` elements writing `data` at offset 0 of section `a`.
fn elems(n: usize, data: &[u8]) -> Vec<WriteElement<'_>> {
    (0..n)
        .map(|_| WriteElement {
            section_id: b"a",
            offset: 0,
            data,
        })
        .collect()
}

// ---- (c) junk and handshake floods -----------------------------------------------------

/// Real ckptd processes (RSS is per process), logs in the cluster's directory.
struct Daemons {
    children: Vec<(u32, Child)>,
    cluster: LocalCluster,
}

impl Daemons {
    fn start(tag: &str, nodes: &[u32]) -> Result<Self, String> {
        let cluster = LocalCluster::create(tag, nodes, true, 1000)
            .map_err(|e| format!("cluster files: {e}"))?;
        let mut d = Self {
            children: Vec::new(),
            cluster,
        };
        for &n in nodes {
            let log = std::fs::File::create(d.cluster.root().join(format!("ckptd-{n}.log")))
                .map_err(|e| format!("log file: {e}"))?;
            let child = support::ckptd_command(&d.cluster.config_path, n, "warn", log)
                .spawn()
                .map_err(|e| format!("spawn ckptd: {e}"))?;
            d.children.push((n, child));
        }
        Ok(d)
    }

    fn library(&mut self, n: u32) -> Result<Library, String> {
        let config = Config {
            cluster: Some(self.cluster.socket(n)),
            ..Config::default()
        };
        let start = Instant::now();
        loop {
            self.alive()?;
            match Library::initialize_with(config.clone(), Version::B_02_02, Callbacks::default()) {
                Ok(lib) => return Ok(lib),
                Err(_) if start.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("initialize on node {n}: {e}")),
            }
        }
    }

    fn alive(&mut self) -> Result<(), String> {
        for (n, c) in &mut self.children {
            if let Ok(Some(st)) = c.try_wait() {
                let log =
                    std::fs::read_to_string(self.cluster.root().join(format!("ckptd-{n}.log")))
                        .unwrap_or_default();
                return Err(format!("ckptd {n} exited: {st}\n{log}"));
            }
        }
        Ok(())
    }

    /// Resident set of each daemon, KiB.
    fn rss(&self) -> Vec<u64> {
        self.children
            .iter()
            .map(|(_, c)| {
                std::fs::read_to_string(format!("/proc/{}/status", c.id()))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    })
                    .unwrap_or(0)
            })
            .collect()
    }

    fn addr(&self, n: u32) -> SocketAddr {
        self.cluster
            .config
            .node(n)
            .map(|c| c.address)
            .expect("configured node")
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                let pid = i32::try_from(c.id())
                    .ok()
                    .and_then(rustix::process::Pid::from_raw);
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
        }
        for (_, c) in &mut self.children {
            let start = Instant::now();
            while matches!(c.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// ALL_REPLICAS overwrites of one 4 KiB section for `window`: writes per second.
fn throughput(ck: &Checkpoint, window: Duration, base: &mut u32) -> Result<f64, String> {
    let start = Instant::now();
    let mut n = 0u64;
    let mut buf = vec![0u8; 4096];
    while start.elapsed() < window {
        *base += 1;
        buf[..4].copy_from_slice(&base.to_le_bytes());
        ck.overwrite(b"t", &buf)
            .map_err(|e| format!("overwrite #{n}: {e}"))?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Section `id` read from the node's own replica (`max` = maxSectionSize: a read may not
/// ask for more).
fn read_local(ck: &Checkpoint, id: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; max];
    let mut el = [ckpt_agent::ReadElement {
        section_id: id,
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    ck.read_local(&mut el)
        .map_err(|e| format!("local read of {id:?}: {e}"))?;
    let n = el[0].read_size;
    buf.truncate(n);
    Ok(buf)
}

/// The other node's replica holds write `v` (within 5 s).
fn replicated(ck: &Checkpoint, v: u32) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let got = read_local(ck, b"t", 4096).unwrap_or_default();
        if got.len() == 4096 && got[..4] == v.to_le_bytes() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A QUIC Initial-looking datagram with something wrong in it, or plain noise.
fn junk(rng: &mut Rng) -> Vec<u8> {
    let mut d = Vec::with_capacity(1300);
    match rng.below(5) {
        // Noise of any length.
        0 => {
            d.resize(1 + rng.below(1400) as usize, 0);
            rng.fill(&mut d);
        }
        // Long header, version 1, Initial, garbage everywhere after the header fields.
        1 | 2 => {
            d.push(0xc0 | rng.below(4) as u8);
            d.extend_from_slice(&1u32.to_be_bytes());
            let dcid = if rng.below(8) == 0 {
                21 + rng.below(200)
            } else {
                8 + rng.below(13)
            };
            d.push(dcid as u8);
            d.extend((0..dcid).map(|_| rng.next_u64() as u8));
            d.push(rng.below(21) as u8);
            d.extend((0..d[d.len() - 1]).map(|_| rng.next_u64() as u8));
            // Token length and length: random varints, often absurd.
            d.push(0x40 | rng.below(64) as u8);
            d.push(rng.next_u64() as u8);
            d.extend_from_slice(&(0x8000_0000u32 | rng.below(1 << 30) as u32).to_be_bytes());
            let pad = 1200usize.saturating_sub(d.len());
            let at = d.len();
            d.resize(at + pad, 0);
            rng.fill(&mut d[at..]);
        }
        // An unknown version (asks for version negotiation).
        3 => {
            d.push(0xc0);
            d.extend_from_slice(&0x1a2a_3a4au32.to_be_bytes());
            d.push(8);
            d.extend((0..8).map(|_| rng.next_u64() as u8));
            d.push(0);
            d.resize(1200, 0);
        }
        // A short header for a connection that does not exist.
        _ => {
            d.push(0x40 | rng.below(64) as u8);
            d.resize(20 + rng.below(1200) as usize, 0);
            let end = d.len();
            rng.fill(&mut d[1..end]);
        }
    }
    d
}

/// A client TLS configuration that trusts the cluster CA and presents `identity`'s
/// certificate (or none).
fn client_config(
    roots: &tls::CaRoots,
    ca_der: &rustls::pki_types::CertificateDer<'static>,
    identity: Option<&tls::NodeIdentity>,
) -> Result<quinn::ClientConfig, String> {
    let settings = tls::TransportSettings::default();
    if let Some(id) = identity {
        return tls::quinn_client_config(id, roots, &settings).map_err(|e| e.to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = rustls::RootCertStore::empty();
    store.add(ca_der.clone()).map_err(|e| e.to_string())?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![tls::ALPN.to_vec()];
    let quic =
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(
        settings
            .quinn_transport_config()
            .map_err(|e| e.to_string())?,
    ));
    Ok(config)
}

/// How a handshake with a node ended.
#[derive(Debug, PartialEq, Eq)]
enum Dial {
    /// The node closed it with this TLS alert (QUIC CRYPTO_ERROR 0x100 + alert).
    Alert(u8),
    /// Closed or failed otherwise.
    Other(String),
    /// Established, and still open a second later.
    Accepted,
}

async fn dial(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    to: SocketAddr,
    node: u32,
) -> Dial {
    let connecting = match endpoint.connect_with(config, to, &tls::server_name(node)) {
        Ok(c) => c,
        Err(e) => return Dial::Other(format!("connect: {e}")),
    };
    let reason = match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Err(_) => return Dial::Other("handshake timed out".into()),
        Ok(Err(e)) => e,
        // TLS 1.3: the client finishes first; the server's verdict on its certificate
        // comes after.
        Ok(Ok(conn)) => match tokio::time::timeout(Duration::from_secs(1), conn.closed()).await {
            Err(_) => {
                conn.close(quinn::VarInt::from_u32(0), b"done");
                return Dial::Accepted;
            }
            Ok(e) => e,
        },
    };
    let code = match &reason {
        quinn::ConnectionError::ConnectionClosed(c) => Some(u64::from(c.error_code)),
        quinn::ConnectionError::TransportError(t) => Some(u64::from(t.code)),
        _ => None,
    };
    match code {
        Some(c) if (0x100..0x200).contains(&c) => Dial::Alert((c - 0x100) as u8),
        _ => Dial::Other(reason.to_string()),
    }
}

/// Paces a generator by the time the flood has been on: `due(k)` of `n` spread over
/// `span` of flood time; waits while the flood is off. False once told to finish.
struct Pace {
    on: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    active: Duration,
    last: Option<Instant>,
}

impl Pace {
    fn new(on: &Arc<AtomicBool>, done: &Arc<AtomicBool>) -> Self {
        Self {
            on: on.clone(),
            done: done.clone(),
            active: Duration::ZERO,
            last: None,
        }
    }

    /// Flood time elapsed so far, after waiting for the flood to be on.
    fn now(&mut self) -> Option<Duration> {
        loop {
            if self.done.load(Relaxed) {
                return None;
            }
            if self.on.load(Relaxed) {
                let t = Instant::now();
                if let Some(l) = self.last {
                    self.active += t - l;
                }
                self.last = Some(t);
                return Some(self.active);
            }
            self.last = None;
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

fn junk_flood() -> Result<(), String> {
    let n_junk = env_or("R9_JUNK", 10_000);
    let n_connects = env_or("R9_CONNECTS", 300);
    // Flood time over which they are spread; quiet slices alternate with flood slices.
    let span = Duration::from_millis(env_or("R9_FLOOD_MS", 3000));
    let slice = Duration::from_millis(250);
    let mut d = Daemons::start("r9-junk", &[1, 2])?;
    let lib1 = d.library(1)?;
    let lib2 = d.library(2)?;
    let attrs = CreationAttributes {
        creation_flags: CreationFlags::WR_ALL_REPLICAS,
        checkpoint_size: 8192,
        retention_duration: 10 * SECOND,
        max_sections: 2,
        max_section_size: 4096,
        max_section_id_size: 8,
    };
    let c1 = open_retry(&lib1, "safCkpt=flood", Some(&attrs)).map_err(|e| format!("open: {e}"))?;
    let c2 = open_retry(&lib2, "safCkpt=flood", None).map_err(|e| format!("open on 2: {e}"))?;
    support::retry(|| c1.create_section(Some(b"t"), TIME_END, &[0; 4096]))
        .map_err(|e| format!("create: {e}"))?;
    let mut v = 0u32;
    // Warm up.
    throughput(&c1, Duration::from_millis(500), &mut v)?;
    ensure!(replicated(&c2, v), "writes did not reach node 2");
    let rss_before = d.rss();

    // The generators: datagrams from one thread, handshakes from another, both at both
    // daemons, paced over the flood time and idle while the flood is off.
    let targets = [d.addr(1), d.addr(2)];
    let on = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let dialed = Arc::new(AtomicU64::new(0));
    let sender = {
        let (mut pace, sent) = (Pace::new(&on, &done), sent.clone());
        let seed = seed();
        println!("  junk seed {seed} (replay with SEED={seed})");
        let mut rng = Rng::new(seed);
        std::thread::spawn(move || -> Result<(), String> {
            let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let mut k = 0u64;
            while k < n_junk {
                let Some(now) = pace.now() else { break };
                while k < n_junk && span.mul_f64(k as f64 / n_junk as f64) <= now {
                    let _ = sock.send_to(&junk(&mut rng), targets[(k % 2) as usize]);
                    k += 1;
                    sent.store(k, Relaxed);
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            Ok(())
        })
    };
    let certs = d.cluster.root().join("certs");
    let roots = tls::CaRoots::load(&certs.join("ca.pem")).map_err(|e| e.to_string())?;
    let ca = tls::ClusterCa::load(&certs).map_err(|e| e.to_string())?;
    let ca_der = ca.cert_der().clone();
    let foreign = tls::generate_ca().map_err(|e| e.to_string())?;
    let foreign_id = tls::issue_node_cert(&foreign, 2)
        .and_then(|m| m.identity())
        .map_err(|e| e.to_string())?;
    let with_foreign = client_config(&roots, &ca_der, Some(&foreign_id))?;
    let with_none = client_config(&roots, &ca_der, None)?;
    let dialer = {
        let (mut pace, dialed) = (Pace::new(&on, &done), dialed.clone());
        std::thread::spawn(move || -> Result<BTreeMap<String, u64>, String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .map_err(|e| e.to_string())?;
                let mut outcomes = BTreeMap::new();
                let mut set = tokio::task::JoinSet::new();
                let mut k = 0u64;
                while k < n_connects {
                    let Some(now) = pace.now() else { break };
                    while k < n_connects && span.mul_f64(k as f64 / n_connects as f64) <= now {
                        let config = if k.is_multiple_of(2) {
                            with_foreign.clone()
                        } else {
                            with_none.clone()
                        };
                        let node = (k / 2 % 2) as usize;
                        let (ep, to) = (endpoint.clone(), targets[node]);
                        set.spawn(async move { dial(&ep, config, to, node as u32 + 1).await });
                        k += 1;
                        dialed.store(k, Relaxed);
                    }
                    while let Some(o) = set.try_join_next() {
                        if let Ok(o) = o {
                            *outcomes.entry(format!("{o:?}")).or_insert(0) += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                while let Some(o) = set.join_next().await {
                    if let Ok(o) = o {
                        *outcomes.entry(format!("{o:?}")).or_insert(0) += 1;
                    }
                }
                endpoint.close(quinn::VarInt::from_u32(0), b"done");
                Ok(outcomes)
            })
        })
    };
    // Alternate quiet and flood slices until the generators are through (flood time is
    // half the time; a generator that falls far behind fails the test), writing
    // throughout; count writes and time per kind of slice.
    let cap = span * 4 + Duration::from_secs(30);
    let mut quiet = (0u64, Duration::ZERO);
    let mut flood = (0u64, Duration::ZERO);
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut k = 0u32;
    let result = loop {
        let finished = sent.load(Relaxed) >= n_junk && dialed.load(Relaxed) >= n_connects;
        if (finished && k.is_multiple_of(2)) || start.elapsed() > cap {
            break Ok(());
        }
        let flooding = k % 2 == 1;
        on.store(flooding, Relaxed);
        let t0 = Instant::now();
        let mut n = 0u64;
        let mut failed = None;
        while t0.elapsed() < slice {
            v += 1;
            buf[..4].copy_from_slice(&v.to_le_bytes());
            if let Err(e) = c1.overwrite(b"t", &buf) {
                failed = Some(format!("overwrite during the flood test: {e}"));
                break;
            }
            n += 1;
        }
        let spent = t0.elapsed();
        let acc = if flooding { &mut flood } else { &mut quiet };
        acc.0 += n;
        acc.1 += spent;
        if let Some(e) = failed {
            break Err(e);
        }
        k += 1;
    };
    on.store(false, Relaxed);
    done.store(true, Relaxed);
    let sender_result = sender
        .join()
        .map_err(|_| "the junk sender panicked".to_owned())?;
    let outcomes = dialer
        .join()
        .map_err(|_| "the dialer panicked".to_owned())??;
    result?;
    sender_result?;
    ensure!(
        replicated(&c2, v),
        "writes during the flood did not reach node 2"
    );
    // Let the daemons drop what the handshakes left behind.
    std::thread::sleep(Duration::from_millis(1500));
    d.alive()?;
    let rss_after = d.rss();
    let after = throughput(&c1, Duration::from_secs(1), &mut v)?;
    ensure!(
        replicated(&c2, v),
        "writes after the flood did not reach node 2"
    );
    d.alive()?;
    let rate = |(n, t): (u64, Duration)| n as f64 / t.as_secs_f64().max(1e-9);
    let (quiet_rate, flood_rate) = (rate(quiet), rate(flood));
    let ratio = flood_rate / quiet_rate.max(1e-9);
    println!(
        "  flood: {} junk datagrams and {} handshakes at both daemons, over {:.1} s of flood \
         slices alternating with {:.1} s of quiet ones ({slice:?} each)",
        sent.load(Relaxed),
        dialed.load(Relaxed),
        flood.1.as_secs_f64(),
        quiet.1.as_secs_f64()
    );
    println!("  handshake outcomes: {outcomes:?}");
    for (k, (n, _)) in d.children.iter().enumerate() {
        println!(
            "  ckptd {n} RSS: {} KiB before, {} KiB after (+{} KiB)",
            rss_before[k],
            rss_after[k],
            rss_after[k].saturating_sub(rss_before[k])
        );
    }
    println!(
        "  ALL_REPLICAS 4 KiB overwrites replicated to node 2: {quiet_rate:.0}/s in quiet \
         slices, {flood_rate:.0}/s in flood slices ({:.0}%), {after:.0}/s after the flood",
        ratio * 100.0
    );
    ensure!(
        sent.load(Relaxed) == n_junk && dialed.load(Relaxed) == n_connects,
        "the generators fell behind: {} of {n_junk} datagrams, {} of {n_connects} handshakes",
        sent.load(Relaxed),
        dialed.load(Relaxed)
    );
    ensure!(
        !outcomes.keys().any(|k| k.contains("Accepted")),
        "a handshake without a cluster certificate was accepted: {outcomes:?}"
    );
    for (k, (n, _)) in d.children.iter().enumerate() {
        let grew = rss_after[k].saturating_sub(rss_before[k]);
        ensure!(grew < 64 * 1024, "ckptd {n} RSS grew by {grew} KiB");
    }
    if ratio < 0.5 {
        return Err(format!(
            "throughput during the flood is {:.0}% of the one without (want at least 50%)",
            ratio * 100.0
        ));
    }
    Ok(())
}

// ---- (d) identities ----------------------------------------------------------------------

fn foreign_and_missing_certificates() -> Result<(), String> {
    let cluster = LocalCluster::create("r9-tls", &[1, 2], true, 1000)
        .map_err(|e| format!("cluster files: {e}"))?;
    let node = ckptd::spawn(cluster.config.clone(), 1).map_err(|e| format!("node 1: {e}"))?;
    let result = (|| {
        let certs = cluster.root().join("certs");
        let roots = tls::CaRoots::load(&certs.join("ca.pem")).map_err(|e| e.to_string())?;
        let ca = tls::ClusterCa::load(&certs).map_err(|e| e.to_string())?;
        let foreign = tls::generate_ca().map_err(|e| e.to_string())?;
        let foreign_id = tls::issue_node_cert(&foreign, 2)
            .and_then(|m| m.identity())
            .map_err(|e| e.to_string())?;
        let own_id = tls::NodeIdentity::load_node(&certs, 2).map_err(|e| e.to_string())?;
        let to = cluster.config.node(1).map(|c| c.address).expect("node 1");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // The control first: it also waits until the node listens.
        let cases = [
            (
                "node 2's certificate of the cluster CA (control)",
                Some(&own_id),
                true,
            ),
            (
                "node 2's id, certificate of a foreign CA",
                Some(&foreign_id),
                false,
            ),
            ("no client certificate", None, false),
        ];
        rt.block_on(async {
            let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
                .map_err(|e| e.to_string())?;
            for (what, id, accepted) in cases {
                let config = client_config(&roots, ca.cert_der(), id)?;
                // The node may still be binding its socket: the control retries.
                let mut got = dial(&endpoint, config.clone(), to, 1).await;
                let end = Instant::now() + Duration::from_secs(10);
                while accepted && got != Dial::Accepted && Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    got = dial(&endpoint, config.clone(), to, 1).await;
                }
                if accepted {
                    ensure!(got == Dial::Accepted, "{what}: {got:?}");
                } else {
                    ensure!(
                        matches!(got, Dial::Alert(_)),
                        "{what}: not rejected by a TLS alert: {got:?}"
                    );
                }
                println!("  {what}: {got:?}");
            }
            endpoint.close(quinn::VarInt::from_u32(0), b"done");
            Ok(())
        })
    })();
    node.stop();
    result
}
