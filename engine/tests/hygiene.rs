//! Shared-memory object hygiene (reliability scorecard R10, R9): a planted symlink or an
//! object already at the target name makes create fail without touching the target;
//! attach refuses objects with a wrong mode, a wrong owner or a wrong file type; a full
//! tmpfs gives `NoResources` at create and nothing is left behind, and reserved space
//! never faults later.
//!
//! CI runs as root, so every test here runs there. The full-tmpfs test re-executes this
//! binary inside a private mount namespace (`unshare --mount --propagation private`) with
//! a 1 MiB tmpfs mounted over a private directory; the other-uid test re-executes it as
//! `nobody` with `setpriv`. Where the machine truly cannot (not root, no `unshare`), the
//! test prints `SKIPPED: <why>`.

mod domain;

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ckpt_engine::{
    AttachError, CreateError, CreateOptions, Registry, RegistryError, RegistryLimits, Replica,
    ReplicaAttributes, ReplicaLimits, Sharing, ShmBuffer, TIME_END, WriteElement,
};
use domain::Domain;

/// Environment variable that turns a re-executed test binary into a child role.
const ROLE: &str = "CKPT_HYGIENE_ROLE";
/// Directory handed to a child role.
const DIR: &str = "CKPT_HYGIENE_DIR";
/// uid and gid of `nobody` (used for chown and setpriv; need not exist in /etc/passwd).
const NOBODY: u32 = 65534;

fn attrs() -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 4 * 1024,
        retention_ns: 0,
        max_sections: 4,
        max_section_size: 1024,
        max_section_id_size: 16,
    }
}

fn opts() -> CreateOptions {
    CreateOptions {
        limits: ReplicaLimits {
            agents: 64,
            spare_slots: 4,
            journal_cells: 64,
        },
        ..CreateOptions::default()
    }
}

fn create(domain: &Path, name: &str) -> Result<Replica, CreateError> {
    Replica::create(domain, name, &attrs(), &opts())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

fn is_root() -> bool {
    euid() == 0
}

/// Everything about a file a create must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    ino: u64,
    mtime_ns: i64,
}

fn snapshot(path: &Path) -> Snapshot {
    let m = fs::metadata(path).unwrap();
    Snapshot {
        bytes: fs::read(path).unwrap(),
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        ino: m.ino(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    }
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

// ---- planted names ------------------------------------------------------------------

#[test]
fn symlink_at_target_name_fails_create_and_leaves_victim_untouched() {
    let domain = Domain::new("hygiene-symlink");
    let elsewhere = Domain::new("hygiene-victim");
    let victim = elsewhere.path("victim");
    write_file(&victim, b"precious bytes that must survive", 0o640);
    let before = snapshot(&victim);
    std::os::unix::fs::symlink(&victim, domain.path("obj")).unwrap();

    let sut = create(&domain.0, "obj");

    assert_eq!(sut.err(), Some(CreateError::AlreadyExists));
    assert_eq!(
        snapshot(&victim),
        before,
        "the symlink's target was touched"
    );
    let link = fs::symlink_metadata(domain.path("obj")).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "the planted symlink was replaced"
    );
    assert_eq!(fs::read_link(domain.path("obj")).unwrap(), victim);

    // A dangling symlink: create must not make its target appear.
    let target = elsewhere.path("would-be-created");
    std::os::unix::fs::symlink(&target, domain.path("dangling")).unwrap();
    assert_eq!(
        create(&domain.0, "dangling").err(),
        Some(CreateError::AlreadyExists)
    );
    assert!(
        !target.exists(),
        "create followed a dangling symlink and made its target"
    );

    // The node registry object is created the same way.
    std::os::unix::fs::symlink(&victim, domain.path("registry")).unwrap();
    let got = Registry::open(&domain.0, Sharing::default());
    assert!(
        matches!(
            got,
            Err(RegistryError::Attach(AttachError::WrongMode { .. }))
        ),
        "registry through a symlink: {:?}",
        got.err()
    );
    assert_eq!(
        snapshot(&victim),
        before,
        "the registry touched the symlink's target"
    );
}

#[test]
fn pre_existing_object_at_target_name_fails_create_and_leaves_it_untouched() {
    let domain = Domain::new("hygiene-preexisting");
    write_file(&domain.path("plain"), b"someone else's object", 0o600);
    let before = snapshot(&domain.path("plain"));

    assert_eq!(
        create(&domain.0, "plain").err(),
        Some(CreateError::AlreadyExists)
    );
    assert_eq!(snapshot(&domain.path("plain")), before);

    // A live replica with data: a second create of its name changes nothing in it.
    let live = create(&domain.0, "live").unwrap();
    live.create_section(Some(b"a"), TIME_END, b"committed")
        .unwrap();
    let before = snapshot(&domain.path("live"));
    assert_eq!(
        create(&domain.0, "live").err(),
        Some(CreateError::AlreadyExists)
    );
    assert_eq!(snapshot(&domain.path("live")), before);
    let again = Replica::attach(&domain.0, "live", Sharing::default()).unwrap();
    assert_eq!(again.read_to_vec(b"a").unwrap(), b"committed");
    assert!(again.fsck().is_clean(), "{}", again.fsck());
}

#[test]
fn a_shm_buffer_keeps_its_bytes_and_leaves_no_name_in_its_directory() {
    let domain = Domain::new("hygiene-buffer");
    let mut buffer = ShmBuffer::create(&domain.0, 3 * 4096 + 5).unwrap();
    assert_eq!(buffer.as_slice().len(), 3 * 4096 + 5);
    assert!(buffer.as_slice().iter().all(|&b| b == 0));
    buffer.as_mut_slice()[4096..4100].copy_from_slice(b"shm!");
    assert_eq!(&buffer.as_slice()[4096..4100], b"shm!");
    // Unlinked at creation: nothing to open, nothing left behind.
    assert_eq!(names_in(&domain.0), Vec::<String>::new());
    drop(buffer);
    assert_eq!(names_in(&domain.0), Vec::<String>::new());
}

#[test]
fn fifo_directory_or_socket_at_the_name_is_refused_by_create_and_attach() {
    let domain = Domain::new("hygiene-types");
    mkfifo(&domain.path("fifo"));
    fs::create_dir(domain.path("dir")).unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(domain.path("sock")).unwrap();

    for name in ["fifo", "dir", "sock"] {
        assert_eq!(
            create(&domain.0, name).err(),
            Some(CreateError::AlreadyExists),
            "{name}"
        );
    }
    let fifo = Replica::attach(&domain.0, "fifo", Sharing::default()).err();
    assert!(
        matches!(fifo, Some(AttachError::WrongMode { mode }) if is_fifo(mode)),
        "fifo: {fifo:?}"
    );
    let dir = Replica::attach(&domain.0, "dir", Sharing::default()).err();
    assert!(
        matches!(
            dir,
            Some(AttachError::Io(libc::EISDIR) | AttachError::WrongMode { .. })
        ),
        "directory: {dir:?}"
    );
    let sock = Replica::attach(&domain.0, "sock", Sharing::default()).err();
    assert!(
        matches!(
            sock,
            Some(AttachError::Io(libc::ENXIO) | AttachError::WrongMode { .. })
        ),
        "socket: {sock:?}"
    );
    assert!(
        fs::metadata(domain.path("fifo"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    assert!(
        fs::read_dir(domain.path("dir")).unwrap().next().is_none(),
        "the directory changed"
    );

    // A symlink to a real replica elsewhere is refused at attach too.
    let elsewhere = Domain::new("hygiene-types-real");
    drop(create(&elsewhere.0, "real").unwrap());
    std::os::unix::fs::symlink(elsewhere.path("real"), domain.path("link")).unwrap();
    let link = Replica::attach(&domain.0, "link", Sharing::default()).err();
    assert!(
        matches!(link, Some(AttachError::WrongMode { .. })),
        "symlink: {link:?}"
    );
}

fn is_fifo(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFIFO
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

// ---- mode and owner -----------------------------------------------------------------

#[test]
fn created_objects_are_owner_only_or_exactly_group_shared() {
    let domain = Domain::new("hygiene-modes-created");
    let sut = create(&domain.0, "private").unwrap();
    let m = fs::metadata(domain.path("private")).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.uid(), euid());
    drop(sut);

    // Group-shared: 0660 with the configured group (root may name any group).
    let group = if is_root() { NOBODY } else { egid() };
    let sharing = Sharing { group: Some(group) };
    let shared = CreateOptions { sharing, ..opts() };
    drop(Replica::create(&domain.0, "shared", &attrs(), &shared).unwrap());
    let m = fs::metadata(domain.path("shared")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.gid()), (0o660, group));
    assert!(Replica::attach(&domain.0, "shared", sharing).is_ok());
    // Without the group configured, a group-accessible object is refused.
    let plain = Replica::attach(&domain.0, "shared", Sharing::default()).err();
    assert!(
        matches!(plain, Some(AttachError::WrongMode { .. })),
        "{plain:?}"
    );
}

#[test]
fn attach_refuses_an_object_with_a_mode_wider_than_allowed() {
    let domain = Domain::new("hygiene-modes");
    drop(create(&domain.0, "obj").unwrap());
    let path = domain.path("obj");
    let gid = fs::metadata(&path).unwrap().gid();
    let with_group = Sharing { group: Some(gid) };
    let other_group = Sharing {
        group: Some(gid.wrapping_add(1)),
    };
    let cases: &[(u32, Sharing, bool)] = &[
        (0o600, Sharing::default(), true),
        (0o644, Sharing::default(), false),
        (0o666, Sharing::default(), false),
        (0o604, Sharing::default(), false),
        (0o601, Sharing::default(), false),
        (0o620, Sharing::default(), false),
        (0o660, Sharing::default(), false),
        (0o660, with_group, true),
        (0o640, with_group, true),
        (0o664, with_group, false),
        (0o670, with_group, false),
        (0o666, with_group, false),
        (0o660, other_group, false),
    ];
    for &(mode, sharing, ok) in cases {
        chmod(&path, mode);
        let got = Replica::attach(&domain.0, "obj", sharing);
        if ok {
            assert!(
                got.is_ok(),
                "mode {mode:o} with {sharing:?}: {:?}",
                got.err()
            );
        } else {
            assert!(
                matches!(got, Err(AttachError::WrongMode { mode: m }) if m & 0o777 == mode),
                "mode {mode:o} with {sharing:?}: {:?}",
                got.as_ref().err()
            );
        }
    }

    // The registry checks its object the same way.
    chmod(&path, 0o600);
    drop(Registry::open(&domain.0, Sharing::default()).unwrap());
    chmod(&domain.path("registry"), 0o666);
    let got = Registry::open(&domain.0, Sharing::default()).err();
    assert!(
        matches!(
            got,
            Some(RegistryError::Attach(AttachError::WrongMode { .. }))
        ),
        "{got:?}"
    );
}

#[test]
fn attach_refuses_an_object_owned_by_another_uid() {
    if !is_root() {
        println!("SKIPPED: chown to another uid needs root");
        return;
    }
    let domain = Domain::new("hygiene-owner");
    drop(create(&domain.0, "obj").unwrap());
    chown(&domain.path("obj"), NOBODY, NOBODY);
    let got = Replica::attach(&domain.0, "obj", Sharing::default()).err();
    assert_eq!(got, Some(AttachError::WrongOwner { uid: NOBODY }));
    // Group-shared does not help: the owner must be us.
    chmod(&domain.path("obj"), 0o660);
    let got = Replica::attach(
        &domain.0,
        "obj",
        Sharing {
            group: Some(NOBODY),
        },
    )
    .err();
    assert_eq!(got, Some(AttachError::WrongOwner { uid: NOBODY }));

    drop(Registry::open(&domain.0, Sharing::default()).unwrap());
    chown(&domain.path("registry"), NOBODY, NOBODY);
    let got = Registry::open(&domain.0, Sharing::default()).err();
    assert_eq!(
        got,
        Some(RegistryError::Attach(AttachError::WrongOwner {
            uid: NOBODY
        }))
    );
}

#[test]
fn domain_directory_that_is_a_symlink_shared_or_foreign_is_refused() {
    let real = Domain::new("hygiene-domain-real");
    let link = real
        .0
        .with_file_name(format!("ckpt-hygiene-domain-link-{}", std::process::id()));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&real.0, &link).unwrap();
    let got = ckpt_engine::ensure_domain(&link);
    fs::remove_file(&link).unwrap();
    assert_eq!(
        got,
        Err(libc::ENOTDIR),
        "a symlinked domain directory was accepted"
    );

    chmod(&real.0, 0o777);
    assert_eq!(
        ckpt_engine::ensure_domain(&real.0),
        Err(libc::EACCES),
        "mode 0777 accepted"
    );
    chmod(&real.0, 0o720);
    assert_eq!(
        ckpt_engine::ensure_domain(&real.0),
        Err(libc::EACCES),
        "mode 0720 accepted"
    );
    chmod(&real.0, 0o700);
    assert_eq!(ckpt_engine::ensure_domain(&real.0), Ok(()));
    if is_root() {
        chown(&real.0, NOBODY, NOBODY);
        assert_eq!(
            ckpt_engine::ensure_domain(&real.0),
            Err(libc::EACCES),
            "foreign owner accepted"
        );
        chown(&real.0, 0, 0);
    } else {
        println!("SKIPPED: foreign-owned domain directory (chown needs root)");
    }
}

// ---- child processes ----------------------------------------------------------------

/// The child role this process was started in, if any.
fn role() -> Option<(String, PathBuf)> {
    let role = std::env::var(ROLE).ok()?;
    let dir = std::env::var_os(DIR).map(PathBuf::from)?;
    Some((role, dir))
}

struct ChildRun {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Re-executes this test binary for test `name` in role `role`, behind `wrapper` (e.g.
/// `unshare ...`), and waits for it (killing it after `limit`).
fn run_child(wrapper: &[&str], name: &str, role: &str, dir: &Path, limit: Duration) -> ChildRun {
    let exe = std::env::current_exe().unwrap();
    let (prog, pre) = wrapper.split_first().unwrap();
    let mut child = Command::new(prog)
        .args(pre)
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {role} child did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ChildRun {
        status,
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// `statvfs` free bytes of the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid out-parameter; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
    st.f_bfree * st.f_frsize
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const TMPFS_TEST: &str =
    "full_shm_gives_no_resources_leaves_nothing_behind_and_reserved_space_never_faults";

#[test]
fn full_shm_gives_no_resources_leaves_nothing_behind_and_reserved_space_never_faults() {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "tmpfs");
        return tmpfs_child(&dir);
    }
    if !is_root() {
        println!("SKIPPED: mounting a tmpfs in a private mount namespace needs root");
        return;
    }
    let mnt = Domain::new("hygiene-tmpfs");
    let wrapper = ["unshare", "--mount", "--propagation", "private"];
    let run = match std::panic::catch_unwind(|| {
        run_child(
            &wrapper,
            TMPFS_TEST,
            "tmpfs",
            &mnt.0,
            Duration::from_secs(60),
        )
    }) {
        Ok(run) => run,
        Err(_) if Command::new("unshare").arg("--help").output().is_err() => {
            println!("SKIPPED: no `unshare` binary on this machine");
            return;
        }
        Err(p) => std::panic::resume_unwind(p),
    };
    if let Some(why) = run.stdout.lines().find_map(|l| l.strip_prefix("SKIPPED: ")) {
        println!("SKIPPED: {why}");
        return;
    }
    if !run.stdout.contains("tmpfs-child:") && run.stderr.contains("unshare") {
        println!(
            "SKIPPED: cannot make a private mount namespace: {}",
            run.stderr.trim()
        );
        return;
    }
    assert!(
        run.status.success() && run.stdout.contains("tmpfs-child: all checks passed"),
        "tmpfs child failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    for line in run
        .stdout
        .lines()
        .filter_map(|l| l.find("tmpfs-child:").map(|i| &l[i..]))
    {
        println!("{line}");
    }
    // The mount was private: nothing the child made is visible here.
    assert!(
        names_in(&mnt.0).is_empty(),
        "the child's tmpfs leaked: {:?}",
        names_in(&mnt.0)
    );
}

/// Runs in a private mount namespace: a 1 MiB tmpfs over `dir`.
fn tmpfs_child(dir: &Path) {
    println!("tmpfs-child: started");
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid NUL-terminated strings; a fresh tmpfs over a private directory in a
    // mount namespace that only this process uses.
    let rc = unsafe {
        libc::mount(
            c"ckpt-hygiene".as_ptr(),
            c.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"size=1m,mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        println!(
            "SKIPPED: mount -t tmpfs: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    // A umask that would strip the owner's write bit: objects must still be exactly 0600.
    // SAFETY: umask has no preconditions; this process runs one test.
    unsafe { libc::umask(0o277) };
    let domain = dir.join("dom");
    ckpt_engine::ensure_domain(&domain).unwrap();
    // Register this process (its lock file) while there is room.
    let tiny = RegistryLimits {
        entries: 4,
        openers: 4,
    };
    drop(Registry::open_with(&domain, Sharing::default(), tiny).unwrap());
    fs::remove_file(domain.join("registry")).unwrap();
    let baseline = names_in(&domain);

    // 1. Bigger than the whole tmpfs.
    let big = ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 16 << 17,
        retention_ns: 0,
        max_sections: 16,
        max_section_size: 128 << 10,
        max_section_id_size: 16,
    };
    let free = free_bytes(&domain);
    let got = Replica::create(&domain, "big", &big, &opts()).err();
    assert!(
        matches!(got, Some(CreateError::NoResources { needed }) if needed > 1 << 20),
        "replica bigger than the tmpfs: {got:?}"
    );
    assert_eq!(
        names_in(&domain),
        baseline,
        "a failed create left something behind"
    );
    assert_eq!(free_bytes(&domain), free, "a failed create kept space");
    println!("tmpfs-child: bigger than the tmpfs -> {got:?}");

    // 2. Fits an empty tmpfs but not the room left: fallocate fails part-way.
    let filler = dir.join("filler");
    fs::write(&filler, vec![0xa5u8; 640 << 10]).unwrap();
    let medium = ReplicaAttributes {
        checkpoint_size: 4 * (96 << 10),
        max_sections: 4,
        max_section_size: 96 << 10,
        ..big
    };
    let free = free_bytes(&domain);
    let got = Replica::create(&domain, "medium", &medium, &opts()).err();
    match got {
        Some(CreateError::NoResources { needed }) => {
            assert!(needed > free && needed < 1 << 20, "{needed} vs {free}");
        }
        other => panic!("replica larger than the room left: {other:?}"),
    }
    assert_eq!(
        names_in(&domain),
        baseline,
        "a failed create left something behind"
    );
    assert_eq!(
        free_bytes(&domain),
        free,
        "a part-way fallocate kept its pages"
    );
    println!("tmpfs-child: larger than the room left ({free} bytes) -> {got:?}");
    fs::remove_file(&filler).unwrap();

    // 3. A replica that fits, then a tmpfs filled to the last byte: every write lands in
    // reserved, pre-faulted pages (no SIGBUS), and the next create is refused.
    let small = ReplicaAttributes {
        checkpoint_size: 4 * (16 << 10),
        max_sections: 4,
        max_section_size: 16 << 10,
        ..big
    };
    let sut = Replica::create(&domain, "fits", &small, &opts()).unwrap();
    let m = fs::metadata(domain.join("fits")).unwrap();
    assert_eq!(
        m.mode() & 0o7777,
        0o600,
        "umask 0277 changed the object's mode"
    );
    for id in [b"s0", b"s1", b"s2", b"s3"] {
        sut.create_section(Some(id), TIME_END, b"").unwrap();
    }
    let mut fill = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&filler)
        .unwrap();
    let chunk = vec![0x5au8; 4096];
    loop {
        match fill.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("fill the tmpfs: {e}"),
        }
    }
    assert!(
        free_bytes(&domain) < 4096,
        "the tmpfs is not full: {}",
        free_bytes(&domain)
    );
    for round in 0..3u8 {
        for (k, id) in [b"s0", b"s1", b"s2", b"s3"].into_iter().enumerate() {
            let data = vec![round * 16 + k as u8; 16 << 10];
            sut.overwrite(id, &data).unwrap();
            sut.write(&[WriteElement {
                id,
                offset: 100,
                data: b"patched",
            }])
            .unwrap();
        }
    }
    for (k, id) in [b"s0", b"s1", b"s2", b"s3"].into_iter().enumerate() {
        let mut want = vec![2 * 16 + k as u8; 16 << 10];
        want[100..107].copy_from_slice(b"patched");
        assert_eq!(sut.read_to_vec(id).unwrap(), want);
    }
    assert!(sut.fsck().is_clean(), "{}", sut.fsck());
    println!("tmpfs-child: 24 writes into a full tmpfs landed in reserved pages");

    let before = names_in(&domain);
    let got = Replica::create(&domain, "one-more", &small, &opts()).err();
    assert!(
        matches!(got, Some(CreateError::NoResources { .. })),
        "create in a full tmpfs: {got:?}"
    );
    let got = Registry::open_with(&domain, Sharing::default(), tiny).err();
    assert!(
        matches!(
            got,
            Some(RegistryError::Create(CreateError::NoResources { .. }))
        ),
        "registry in a full tmpfs: {got:?}"
    );
    assert_eq!(
        names_in(&domain),
        before,
        "a refused create left something behind"
    );
    drop(sut);
    println!("tmpfs-child: all checks passed");
}

const OTHER_UID_TEST: &str = "another_uid_can_neither_attach_nor_create_in_our_domain";

#[test]
fn another_uid_can_neither_attach_nor_create_in_our_domain() {
    if let Some((role, dir)) = role() {
        assert_eq!(role, "other-uid");
        return other_uid_child(&dir);
    }
    if !is_root() {
        println!("SKIPPED: running a child as another uid needs root");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        println!("SKIPPED: no `setpriv` binary on this machine");
        return;
    }
    // A domain traversable by others (0711 is allowed: nobody can list or write it), with
    // a private object, a mistakenly world-writable one and the registry.
    let domain = Domain::new("hygiene-other-uid");
    chmod(&domain.0, 0o711);
    drop(create(&domain.0, "private").unwrap());
    drop(create(&domain.0, "widened").unwrap());
    chmod(&domain.path("widened"), 0o666);
    drop(Registry::open(&domain.0, Sharing::default()).unwrap());
    let before = names_in(&domain.0);
    let wrapper = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ];
    let run = run_child(
        &wrapper,
        OTHER_UID_TEST,
        "other-uid",
        &domain.0,
        Duration::from_secs(30),
    );
    assert!(
        run.status.success() && run.stdout.contains("other-uid-child: all checks passed"),
        "other-uid child failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    for line in run
        .stdout
        .lines()
        .filter_map(|l| l.find("other-uid-child:").map(|i| &l[i..]))
    {
        println!("{line}");
    }
    assert_eq!(
        names_in(&domain.0),
        before,
        "the other uid left something in our domain"
    );
}

fn other_uid_child(dir: &Path) {
    assert_eq!(euid(), NOBODY, "the child did not drop to nobody");
    let got = Replica::attach(dir, "private", Sharing::default()).err();
    assert_eq!(
        got,
        Some(AttachError::Io(libc::EACCES)),
        "attach of a 0600 object of root"
    );
    let got = Replica::attach(dir, "widened", Sharing::default()).err();
    assert_eq!(
        got,
        Some(AttachError::WrongOwner { uid: 0 }),
        "attach of a 0666 object of root"
    );
    let got = create(dir, "mine").err();
    assert_eq!(
        got,
        Some(CreateError::Io(libc::EACCES)),
        "create in root's 0711 domain"
    );
    let got = Registry::open(dir, Sharing::default()).err();
    assert!(got.is_some(), "opened root's registry as nobody");
    println!("other-uid-child: all checks passed ({got:?})");
}
