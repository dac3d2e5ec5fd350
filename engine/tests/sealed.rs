//! Replicas in sealed memfds (engine/DESIGN.md §9 "Sealed objects", §23.1): shared by
//! descriptor, never by name, and sealed so that nobody holding a descriptor — the same
//! uid, root — can change their length under the others' mappings. A descriptor offered to
//! `attach_fd` is untrusted: it must be a memfd carrying the seals, with a valid header of
//! its exact length.

mod domain;

use domain::Domain;

use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use ckpt_engine::{
    AttachError, CreateOptions, Replica, ReplicaAttributes, ReplicaLimits, SectionError, TIME_END,
};
use rustix::fs::{FallocateFlags, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

fn attrs() -> ReplicaAttributes {
    ReplicaAttributes {
        creation_flags: 0,
        checkpoint_size: 16 * 1024,
        retention_ns: 0,
        max_sections: 16,
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
        instance: 7,
        ..CreateOptions::default()
    }
}

fn sut(domain: &Domain) -> Replica {
    let r = Replica::create_sealed(&domain.0, "c0000000000000007", &attrs(), &opts())
        .expect("create a sealed replica");
    for k in 0..16u8 {
        r.create_section(Some(&[b's', k]), TIME_END, &[k; 1000])
            .expect("populate");
    }
    r
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).expect("dup")
}

fn len(fd: impl AsFd) -> u64 {
    rustix::fs::fstat(fd).expect("fstat").st_size as u64
}

/// Every byte of a descriptor's object.
fn bytes_of(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut out = vec![0u8; len(fd) as usize];
    let mut at = 0;
    while at < out.len() {
        let n = rustix::io::pread(fd, &mut out[at..], at as u64).expect("pread");
        assert!(n > 0, "short object");
        at += n;
    }
    out
}

/// A memfd holding `bytes`, with `seals` added.
fn memfd_with(bytes: &[u8], seals: SealFlags) -> OwnedFd {
    let fd = rustix::fs::memfd_create("forged", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd_create");
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).expect("fill the memfd");
    let fd = OwnedFd::from(f);
    if !seals.is_empty() {
        rustix::fs::fcntl_add_seals(&fd, seals).expect("add seals");
    }
    fd
}

/// Reads every section (every slot's page is touched): a mapping cut short would fault.
fn read_everything(r: &Replica) {
    for k in 0..16u8 {
        assert_eq!(
            r.read_to_vec(&[b's', k]).expect("read a section"),
            vec![k; 1000]
        );
    }
    assert!(r.fsck().is_clean(), "{}", r.fsck());
}

const ALL: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

#[test]
fn a_sealed_replica_lives_in_a_sealed_memfd_and_a_second_attach_by_descriptor_shares_it() {
    let domain = Domain::new("sealed-share");
    let sut = sut(&domain);
    assert_eq!(sut.path(), None, "no name in any directory");
    let fd = sut
        .sealed_fd()
        .expect("a sealed replica has its descriptor");
    assert_eq!(rustix::fs::fcntl_get_seals(fd).expect("seals"), ALL);
    assert_eq!(len(fd), sut.object_size());
    assert!(
        std::fs::read_dir(&domain.0)
            .expect("list")
            .flatten()
            .all(|e| e.file_name() == "procs"),
        "nothing but liveness locks in the domain"
    );

    let other = Replica::attach_fd(&domain.0, dup(fd)).expect("attach by descriptor");
    assert_eq!(other.instance(), 7);
    other
        .overwrite(b"s\x03", b"shared")
        .expect("write through the second mapping");
    assert_eq!(sut.read_to_vec(b"s\x03").expect("read"), b"shared");
    assert!(other.sealed_fd().is_some());
}

#[test]
fn every_resize_of_a_sealed_replica_by_a_holder_of_its_descriptor_is_refused() {
    let domain = Domain::new("sealed-resize");
    let sut = sut(&domain);
    let holder = dup(sut.sealed_fd().expect("fd"));
    let size = len(&holder);
    let proc_path = format!("/proc/self/fd/{}", holder.as_raw_fd());
    let mut tried = Vec::new();
    let mut expect_eperm = |way: &str, r: Result<(), Errno>| {
        assert_eq!(r, Err(Errno::PERM), "{way} must be refused with EPERM");
        assert_eq!(len(&holder), size, "{way} changed the length");
        read_everything(&sut);
        tried.push(way.to_owned());
    };
    expect_eperm(
        "ftruncate to half",
        rustix::fs::ftruncate(&holder, size / 2),
    );
    expect_eperm("ftruncate to 0", rustix::fs::ftruncate(&holder, 0));
    expect_eperm(
        "ftruncate to twice",
        rustix::fs::ftruncate(&holder, size * 2),
    );
    expect_eperm(
        "fallocate past the end",
        rustix::fs::fallocate(&holder, FallocateFlags::empty(), size, 4096),
    );
    expect_eperm(
        "open(/proc/self/fd/N, O_TRUNC)",
        rustix::fs::open(&proc_path, OFlags::RDWR | OFlags::TRUNC, Mode::empty()).map(drop),
    );
    expect_eperm(
        "a second open of /proc/self/fd/N, then ftruncate",
        rustix::fs::open(&proc_path, OFlags::RDWR, Mode::empty())
            .and_then(|f| rustix::fs::ftruncate(f, size / 2)),
    );
    let c = std::ffi::CString::new(proc_path.clone()).expect("no NUL");
    // SAFETY: a valid NUL-terminated path; truncate has no other preconditions.
    let rc = unsafe { libc::truncate(c.as_ptr(), (size / 2) as libc::off_t) };
    expect_eperm(
        "truncate(2) of /proc/self/fd/N",
        if rc == 0 {
            Ok(())
        } else {
            Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ))
        },
    );
    expect_eperm(
        "adding F_SEAL_WRITE (would stop the writers)",
        rustix::fs::fcntl_add_seals(&holder, SealFlags::WRITE),
    );
    expect_eperm(
        "adding F_SEAL_FUTURE_WRITE",
        rustix::fs::fcntl_add_seals(&holder, SealFlags::FUTURE_WRITE),
    );
    // The kernel checks seals, not capabilities: the same holds for root.
    println!(
        "refused as uid {}: {}",
        rustix::process::geteuid().as_raw(),
        tried.join("; ")
    );
    // Writes through the existing mappings go on.
    sut.overwrite(b"s\x00", &[0; 1000])
        .expect("write after the attempts");
}

#[test]
fn attach_fd_refuses_a_copy_that_is_unsealed_or_sealed_only_in_part() {
    let domain = Domain::new("sealed-unsealed");
    let sut = sut(&domain);
    let image = bytes_of(sut.sealed_fd().expect("fd"));
    for seals in [
        SealFlags::empty(),
        SealFlags::SHRINK,
        SealFlags::SHRINK | SealFlags::GROW,
        SealFlags::GROW | SealFlags::SEAL,
        SealFlags::SHRINK | SealFlags::SEAL,
    ] {
        let got = Replica::attach_fd(&domain.0, memfd_with(&image, seals)).err();
        // A memfd made without ALLOW_SEALING reports F_SEAL_SEAL alone; ours report
        // exactly what was added.
        assert_eq!(
            got,
            Some(AttachError::NotSealed {
                seals: seals.bits()
            }),
            "seals {seals:?}"
        );
        let text = got.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("not sealed"), "{text}");
    }
    // The same bytes fully sealed are a valid replica (its bytes are untrusted anyway;
    // what the seals guarantee is its length).
    let forged = Replica::attach_fd(&domain.0, memfd_with(&image, ALL)).expect("sealed copy");
    assert_eq!(forged.read_to_vec(b"s\x05").expect("read"), vec![5; 1000]);
}

#[test]
fn attach_fd_refuses_a_tmpfs_file_a_pipe_a_write_sealed_memfd_and_a_wrong_length() {
    let domain = Domain::new("sealed-refuse");
    let sut = sut(&domain);
    let image = bytes_of(sut.sealed_fd().expect("fd"));

    // A plain tmpfs file cannot be sealed at all (it carries F_SEAL_SEAL from birth).
    let path = domain.0.join("plain");
    std::fs::write(&path, &image).expect("write a plain file");
    let plain = OwnedFd::from(std::fs::File::open(&path).expect("open"));
    assert_eq!(
        Replica::attach_fd(&domain.0, plain).err(),
        Some(AttachError::NotSealed {
            seals: SealFlags::SEAL.bits()
        })
    );

    let (rd, _wr) = std::io::pipe().expect("pipe");
    assert!(matches!(
        Replica::attach_fd(&domain.0, OwnedFd::from(rd)).err(),
        Some(AttachError::WrongMode { .. })
    ));

    // Sealed against writes too: a shared writable mapping is refused, cleanly.
    let frozen = memfd_with(&image, ALL | SealFlags::WRITE);
    assert_eq!(
        Replica::attach_fd(&domain.0, frozen).err(),
        Some(AttachError::Io(libc::EPERM))
    );

    // Longer than its header says.
    let mut long = image.clone();
    long.extend_from_slice(&[0; 4096]);
    assert_eq!(
        Replica::attach_fd(&domain.0, memfd_with(&long, ALL)).err(),
        Some(AttachError::SizeMismatch {
            header: image.len() as u64,
            object: long.len() as u64,
        })
    );
    // Shorter than a header, or never initialised, or not a replica.
    assert_eq!(
        Replica::attach_fd(&domain.0, memfd_with(&image[..100], ALL)).err(),
        Some(AttachError::NotInitialized)
    );
    assert_eq!(
        Replica::attach_fd(&domain.0, memfd_with(&vec![0; image.len()], ALL)).err(),
        Some(AttachError::NotInitialized)
    );
    let mut junk = vec![0xa5u8; image.len()];
    junk[8..12].copy_from_slice(&1u32.to_ne_bytes());
    assert_eq!(
        Replica::attach_fd(&domain.0, memfd_with(&junk, ALL)).err(),
        Some(AttachError::BadMagic)
    );
}

#[test]
fn a_sealed_replica_with_one_section_has_its_default_section_and_refuses_misuse_as_others_do() {
    let domain = Domain::new("sealed-default");
    let one = ReplicaAttributes {
        max_sections: 1,
        checkpoint_size: 1024,
        ..attrs()
    };
    let r = Replica::create_sealed(&domain.0, "one", &one, &opts()).expect("create");
    r.overwrite(b"", b"default")
        .expect("the default section exists");
    assert_eq!(
        r.create_section(Some(b"x"), TIME_END, b""),
        Err(SectionError::Exists)
    );
}
