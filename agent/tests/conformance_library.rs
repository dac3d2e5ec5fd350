//! Conformance: the library handle (spec §2.1), dispatch and callbacks (§5), version
//! negotiation (§6) and handle lifetimes (§4.11). One test per rule, named as the rule;
//! agent/tests/README.md maps every rule of the spec to its tests.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use ckpt_agent::{
    Callbacks, Checkpoint, DispatchFlags, Error, Invocation, Library, OpenFlags, Result,
    SectionsChosen, TIME_END, Version, negotiate,
};
use common::*;

type Opened = Arc<Mutex<Vec<(Invocation, Result<Checkpoint>)>>>;
type Synced = Arc<Mutex<Vec<(Invocation, Result<()>)>>>;

/// Callbacks that record what they are given.
fn recording() -> (Callbacks, Opened, Synced) {
    let opened: Opened = Arc::default();
    let synced: Synced = Arc::default();
    let (o, s) = (Arc::clone(&opened), Arc::clone(&synced));
    let callbacks = Callbacks {
        open: Some(Box::new(move |inv, r| o.lock().unwrap().push((inv, r)))),
        synchronize: Some(Box::new(move |inv, r| s.lock().unwrap().push((inv, r)))),
    };
    (callbacks, opened, synced)
}

fn invocations(synced: &Synced) -> Vec<Invocation> {
    synced.lock().unwrap().iter().map(|(i, _)| *i).collect()
}

// ---- §6 version negotiation ---------------------------------------------------------

#[test]
fn initialize_accepts_b01_and_b02_and_grants_b0202() {
    let d = Domain::new();
    for (major, minor) in [(1, 0), (1, 1), (1, 255), (2, 0), (2, 1), (2, 2), (2, 9)] {
        let v = Version::new(b'B', major, minor);
        assert_eq!(negotiate(v), Ok(Version::B_02_02), "{v:?}");
        let lib = Library::initialize_with(d.config(), v, Callbacks::default())
            .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        lib.finalize().unwrap();
    }
}

#[test]
fn initialize_ignores_the_requested_minor_version() {
    for minor in [0, 1, 2, 3, 100, 255] {
        assert_eq!(
            negotiate(Version::new(b'B', 1, minor)),
            Ok(Version::B_02_02)
        );
        assert_eq!(
            negotiate(Version::new(b'B', 2, minor)),
            Ok(Version::B_02_02)
        );
    }
}

#[test]
fn initialize_refuses_release_a_c_and_b3_with_version_and_reports_b0202() {
    let d = Domain::new();
    for v in [
        Version::new(b'A', 1, 1),
        Version::new(b'A', 2, 2),
        Version::new(b'C', 1, 1),
        Version::new(b'B', 3, 1),
        Version::new(b'B', 255, 0),
        Version::new(b'b', 2, 2),
    ] {
        assert_eq!(negotiate(v), Err(Version::B_02_02), "{v:?}");
        let r = Library::initialize_with(d.config(), v, Callbacks::default());
        assert_eq!(r.err(), Some(Error::Version), "{v:?}");
    }
}

#[test]
fn initialize_grants_a_b_major_below_the_highest_supported() {
    // "Success when ... the highest major supported for it is >= the requested major."
    let d = Domain::new();
    let v = Version::new(b'B', 0, 0);
    assert_eq!(negotiate(v), Ok(Version::B_02_02));
    let lib = Library::initialize_with(d.config(), v, Callbacks::default()).unwrap();
    assert_eq!(lib.requested_version(), v);
}

#[test]
fn the_requested_version_is_remembered_per_handle() {
    let d = Domain::new();
    let b01 = d.lib(Version::new(b'B', 1, 0));
    let b02 = d.lib(Version::new(b'B', 2, 0));
    assert_eq!(b01.requested_version(), Version::new(b'B', 1, 0));
    assert_eq!(b02.requested_version(), Version::new(b'B', 2, 0));
}

#[test]
fn b01_and_b02_handles_in_one_process_keep_their_own_rules() {
    let d = Domain::new();
    let b01 = d.lib(Version::B_01_01);
    let b02 = d.lib(Version::B_02_02);
    // The name rule.
    let bare = b01.open("bare", Some(&attrs(1)), CRW, TIME_END).unwrap();
    assert!(matches!(
        b02.open("bare", None, RW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    drop(bare);
    // The ACCESS rules, on one checkpoint opened write-only through both handles.
    let _keep = create(&b02, NAME, &attrs(1));
    let w01 = open(&b01, NAME, OpenFlags::WRITE);
    let w02 = open(&b02, NAME, OpenFlags::WRITE);
    assert!(w01.status().is_ok());
    assert_eq!(w02.status(), Err(Error::Access));
    assert!(w01.sections(SectionsChosen::Any).is_ok());
    assert_eq!(w02.sections(SectionsChosen::Any).err(), Some(Error::Access));
    // The attribute match.
    let other = attrs_retention(1, 5 * MINUTE);
    assert!(b02.open(NAME, Some(&other), CRW, TIME_END).is_ok());
    assert_eq!(
        b01.open(NAME, Some(&other), CRW, TIME_END).err(),
        Some(Error::Exist)
    );
}

#[test]
fn b02_rules_apply_to_every_b02_minor_unlike_the_opensaf_quirk() {
    let d = Domain::new();
    let lib = d.lib(Version::new(b'B', 2, 1));
    assert!(matches!(
        lib.open("bare", Some(&attrs(1)), CRW, TIME_END),
        Err(Error::InvalidParam(_))
    ));
    let _c = create(&lib, NAME, &attrs(1));
    let w = open(&lib, NAME, OpenFlags::WRITE);
    assert_eq!(w.status(), Err(Error::Access));
}

#[test]
fn unavailable_is_never_shown_to_b01_clients() {
    assert_eq!(
        Error::Unavailable.for_version(Version::B_01_01),
        Error::TryAgain
    );
    assert_eq!(
        Error::Unavailable.for_version(Version::new(b'B', 1, 0)),
        Error::TryAgain
    );
    assert_eq!(
        Error::Unavailable.for_version(Version::B_02_02),
        Error::Unavailable
    );
    assert_eq!(
        Error::NotExist.for_version(Version::B_01_01),
        Error::NotExist
    );
}

// ---- §2.1 saCkptInitialize ------------------------------------------------------------

#[test]
fn initialize_without_callbacks_registers_none() {
    let d = Domain::new();
    let lib = d.lib(Version::B_02_02);
    let ck = create(&lib, NAME, &attrs(1));
    assert_eq!(
        lib.open_async(1, OTHER, Some(&attrs(1)), CRW).err(),
        Some(Error::Init)
    );
    assert_eq!(ck.synchronize_async(2), Err(Error::Init));
}

#[test]
fn initialize_registers_only_the_callbacks_given() {
    let d = Domain::new();
    let opens = Arc::new(AtomicUsize::new(0));
    let o = Arc::clone(&opens);
    let only_open = d.lib_with(
        Version::B_02_02,
        Callbacks {
            open: Some(Box::new(move |_, _| {
                o.fetch_add(1, Ordering::SeqCst);
            })),
            synchronize: None,
        },
    );
    let ck = create(&only_open, NAME, &attrs(1));
    assert_eq!(ck.synchronize_async(1), Err(Error::Init));
    only_open
        .open_async(2, OTHER, Some(&attrs(1)), CRW)
        .unwrap();
    wait_readable(&only_open);
    only_open.dispatch(DispatchFlags::All).unwrap();
    assert_eq!(opens.load(Ordering::SeqCst), 1);

    let only_sync = d.lib_with(
        Version::B_02_02,
        Callbacks {
            open: None,
            synchronize: Some(Box::new(|_, _| {})),
        },
    );
    let ck2 = create(&only_sync, NAME, &attrs(1));
    assert_eq!(
        only_sync.open_async(3, OTHER, None, RW).err(),
        Some(Error::Init)
    );
    assert_eq!(ck2.synchronize_async(4), Ok(()));
}

#[test]
fn handle_numbers_are_never_zero_and_never_reused() {
    let d = Domain::new();
    let l1 = d.lib(Version::B_02_02);
    let l2 = d.lib(Version::B_02_02);
    assert_ne!(l1.handle().0, 0);
    assert_ne!(l2.handle().0, 0);
    assert_ne!(l1.handle(), l2.handle());
    let c1 = create(&l1, NAME, &attrs(1));
    let h1 = c1.handle();
    assert_ne!(h1.0, 0);
    c1.close().unwrap();
    let c2 = open(&l1, NAME, RW);
    let c3 = open(&l2, NAME, RW);
    assert_ne!(c2.handle().0, 0);
    assert_ne!(c2.handle(), h1);
    assert_ne!(c3.handle(), c2.handle());
}

// ---- §2.1 saCkptSelectionObjectGet, §5 -------------------------------------------------

#[test]
fn selection_object_polls_readable_while_callbacks_are_pending_and_not_after_dispatch() {
    let d = Domain::new();
    let (cb, _, synced) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    let fd = lib.selection_object().unwrap();
    let ck = create(&lib, NAME, &attrs(1));
    assert!(!readable(fd), "readable with nothing pending");
    ck.synchronize_async(1).unwrap();
    ck.synchronize_async(2).unwrap();
    assert!(readable(fd), "not readable with callbacks pending");
    lib.dispatch(DispatchFlags::One).unwrap();
    assert!(readable(fd), "not readable with one callback still pending");
    lib.dispatch(DispatchFlags::One).unwrap();
    assert!(
        !readable(fd),
        "readable after every callback was dispatched"
    );
    assert_eq!(invocations(&synced), [1, 2]);
    // And readable again for the next one.
    ck.synchronize_async(3).unwrap();
    assert!(readable(fd));
    lib.dispatch(DispatchFlags::All).unwrap();
    assert!(!readable(fd));
}

#[test]
fn selection_object_is_stable_until_finalize_and_bad_handle_after() {
    let d = Domain::new();
    let lib = d.lib(Version::B_02_02);
    let fd = lib.selection_object().unwrap();
    assert!(fd >= 0);
    assert_eq!(lib.selection_object(), Ok(fd));
    lib.finalize().unwrap();
    assert_eq!(lib.selection_object(), Err(Error::BadHandle));
}

// ---- §2.1 saCkptDispatch, §5 ------------------------------------------------------------

#[test]
fn dispatch_one_and_all_return_at_once_when_nothing_is_pending() {
    let d = Domain::new();
    let (cb, _, synced) = recording();
    let lib = Arc::new(d.lib_with(Version::B_02_02, cb));
    let l = Arc::clone(&lib);
    let r = within("dispatch ONE and ALL with nothing pending", move || {
        (
            l.dispatch(DispatchFlags::One),
            l.dispatch(DispatchFlags::All),
        )
    });
    assert_eq!(r, (Ok(()), Ok(())));
    assert!(synced.lock().unwrap().is_empty());
}

#[test]
fn dispatch_one_runs_at_most_one_pending_callback() {
    let d = Domain::new();
    let (cb, _, synced) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    let ck = create(&lib, NAME, &attrs(1));
    for i in 1..=3 {
        ck.synchronize_async(i).unwrap();
    }
    lib.dispatch(DispatchFlags::One).unwrap();
    assert_eq!(invocations(&synced), [1]);
    lib.dispatch(DispatchFlags::One).unwrap();
    assert_eq!(invocations(&synced), [1, 2]);
    lib.dispatch(DispatchFlags::One).unwrap();
    lib.dispatch(DispatchFlags::One).unwrap();
    assert_eq!(invocations(&synced), [1, 2, 3]);
}

#[test]
fn dispatch_all_runs_every_pending_callback() {
    let d = Domain::new();
    let (cb, _, synced) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    let ck = create(&lib, NAME, &attrs(1));
    for i in 1..=5 {
        ck.synchronize_async(i * 10).unwrap();
    }
    lib.dispatch(DispatchFlags::All).unwrap();
    assert_eq!(invocations(&synced), [10, 20, 30, 40, 50]);
    assert!(synced.lock().unwrap().iter().all(|(_, r)| r.is_ok()));
}

#[test]
fn dispatch_flags_other_than_one_all_blocking_are_invalid_param() {
    assert_eq!(DispatchFlags::from_c(1), Ok(DispatchFlags::One));
    assert_eq!(DispatchFlags::from_c(2), Ok(DispatchFlags::All));
    assert_eq!(DispatchFlags::from_c(3), Ok(DispatchFlags::Blocking));
    for bad in [0, 4, 0x100, u32::MAX] {
        assert!(
            matches!(DispatchFlags::from_c(bad), Err(Error::InvalidParam(_))),
            "{bad}"
        );
    }
}

#[test]
fn dispatch_blocking_runs_callbacks_as_they_come_and_returns_when_another_thread_finalizes() {
    let d = Domain::new();
    let (cb, _, synced) = recording();
    let lib = Arc::new(d.lib_with(Version::B_02_02, cb));
    let ck = create(&lib, NAME, &attrs(1));
    let l = Arc::clone(&lib);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(l.dispatch(DispatchFlags::Blocking));
    });
    ck.synchronize_async(1).unwrap();
    eventually("the blocking dispatcher ran the first callback", || {
        synced.lock().unwrap().len() == 1
    });
    ck.synchronize_async(2).unwrap();
    eventually("the blocking dispatcher ran the second callback", || {
        synced.lock().unwrap().len() == 2
    });
    assert!(rx.try_recv().is_err(), "BLOCKING returned before finalize");
    lib.finalize().unwrap();
    let r = rx
        .recv_timeout(PATIENCE)
        .expect("BLOCKING did not return after finalize");
    assert_eq!(r, Ok(()));
}

#[test]
fn several_threads_may_dispatch_one_handle_concurrently() {
    let d = Domain::new();
    let (cb, _, synced) = recording();
    let lib = Arc::new(d.lib_with(Version::B_02_02, cb));
    let ck = create(&lib, NAME, &attrs(1));
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..4 {
        let l = Arc::clone(&lib);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let flags = if t % 2 == 0 {
                DispatchFlags::Blocking
            } else {
                DispatchFlags::One
            };
            let r = loop {
                match l.dispatch(flags) {
                    Ok(()) if flags == DispatchFlags::One => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    r => break r,
                }
            };
            let _ = tx.send(r);
        });
    }
    for i in 0..200 {
        ck.synchronize_async(i).unwrap();
    }
    eventually("every callback dispatched", || {
        synced.lock().unwrap().len() >= 200
    });
    lib.finalize().unwrap();
    let mut got = invocations(&synced);
    got.sort_unstable();
    assert_eq!(
        got,
        (0..200).collect::<Vec<_>>(),
        "each callback exactly once"
    );
    for _ in 0..4 {
        let r = rx.recv_timeout(PATIENCE).expect("a dispatcher hung");
        // BLOCKING returns OK; ONE sees the finalized handle.
        assert!(r == Ok(()) || r == Err(Error::BadHandle), "{r:?}");
    }
}

#[test]
fn dispatch_on_a_finalized_handle_is_bad_handle() {
    let d = Domain::new();
    let lib = d.lib(Version::B_02_02);
    lib.finalize().unwrap();
    for f in [
        DispatchFlags::One,
        DispatchFlags::All,
        DispatchFlags::Blocking,
    ] {
        assert_eq!(lib.dispatch(f), Err(Error::BadHandle));
    }
}

// ---- §5 callbacks -------------------------------------------------------------------------

#[test]
fn callbacks_run_only_inside_dispatch_in_the_calling_thread() {
    let d = Domain::new();
    let seen: Arc<Mutex<Vec<ThreadId>>> = Arc::default();
    let s = Arc::clone(&seen);
    let lib = Arc::new(d.lib_with(
        Version::B_02_02,
        Callbacks {
            open: Some(Box::new(move |_, _| {
                s.lock().unwrap().push(std::thread::current().id());
            })),
            synchronize: None,
        },
    ));
    lib.open_async(7, NAME, Some(&attrs(1)), CRW).unwrap();
    wait_readable(&lib);
    // The open is done and its result pending; nothing ran it.
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        seen.lock().unwrap().is_empty(),
        "callback ran outside dispatch"
    );
    let l = Arc::clone(&lib);
    let dispatcher = std::thread::spawn(move || {
        l.dispatch(DispatchFlags::All).unwrap();
        std::thread::current().id()
    })
    .join()
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), [dispatcher]);
}

#[test]
fn open_async_without_an_open_callback_is_init() {
    let d = Domain::new();
    let lib = d.lib_with(
        Version::B_02_02,
        Callbacks {
            open: None,
            synchronize: Some(Box::new(|_, _| {})),
        },
    );
    assert_eq!(
        lib.open_async(1, NAME, Some(&attrs(1)), CRW).err(),
        Some(Error::Init)
    );
    // Nothing was created either.
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn synchronize_async_without_a_synchronize_callback_is_init() {
    let d = Domain::new();
    let lib = d.lib_with(
        Version::B_02_02,
        Callbacks {
            open: Some(Box::new(|_, _| {})),
            synchronize: None,
        },
    );
    let ck = create(&lib, NAME, &attrs(1));
    assert_eq!(ck.synchronize_async(1), Err(Error::Init));
    assert!(!readable(lib.selection_object().unwrap()));
}

#[test]
fn open_callback_delivers_the_invocation_and_a_usable_checkpoint() {
    let d = Domain::new();
    let (cb, opened, _) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    lib.open_async(0xfeed, NAME, Some(&attrs(1)), CRW).unwrap();
    wait_readable(&lib);
    lib.dispatch(DispatchFlags::All).unwrap();
    let (inv, r) = opened.lock().unwrap().pop().expect("open callback");
    assert_eq!(inv, 0xfeed);
    let ck = r.expect("opened");
    ck.overwrite(b"", b"async").unwrap();
    let other = open(&lib, NAME, RW);
    assert_eq!(other.read_vec(b"", 0).unwrap(), b"async");
    assert_eq!(other.instance(), ck.instance());
}

#[test]
fn open_callback_delivers_open_errors_with_the_invocation() {
    let d = Domain::new();
    let (cb, opened, _) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    lib.open_async(1, NAME, None, RW).unwrap();
    let _c = create(&lib, OTHER, &attrs(1));
    lib.open_async(2, OTHER, Some(&attrs(2)), CRW).unwrap();
    eventually("both open results", || {
        lib.dispatch(DispatchFlags::All).unwrap();
        opened.lock().unwrap().len() == 2
    });
    let mut got: Vec<(Invocation, Option<Error>)> = opened
        .lock()
        .unwrap()
        .drain(..)
        .map(|(i, r)| (i, r.err()))
        .collect();
    got.sort_by_key(|g| g.0);
    assert_eq!(got, [(1, Some(Error::NotExist)), (2, Some(Error::Exist))]);
}

#[test]
fn open_async_makes_the_argument_checks_at_call_time() {
    let d = Domain::new();
    let (cb, opened, _) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    assert_eq!(
        lib.open_async(1, NAME, None, OpenFlags(8)).err(),
        Some(Error::BadFlags)
    );
    assert!(matches!(
        lib.open_async(2, NAME, None, CRW),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        lib.open_async(3, NAME, Some(&attrs(1)), RW),
        Err(Error::InvalidParam(_))
    ));
    assert!(matches!(
        lib.open_async(4, "bare", Some(&attrs(1)), CRW),
        Err(Error::InvalidParam(_))
    ));
    let mut bad = attrs(1);
    bad.checkpoint_size = 2048;
    assert!(matches!(
        lib.open_async(5, NAME, Some(&bad), CRW),
        Err(Error::InvalidParam(_))
    ));
    std::thread::sleep(Duration::from_millis(50));
    lib.dispatch(DispatchFlags::All).unwrap();
    assert!(opened.lock().unwrap().is_empty());
}

#[test]
fn open_async_on_a_finalized_handle_is_bad_handle() {
    let d = Domain::new();
    let (cb, _, _) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    lib.finalize().unwrap();
    assert_eq!(
        lib.open_async(1, NAME, Some(&attrs(1)), CRW).err(),
        Some(Error::BadHandle)
    );
}

#[test]
fn synchronize_callback_runs_in_dispatch_of_the_library_the_checkpoint_was_opened_with() {
    let d = Domain::new();
    let (cb_a, _, synced_a) = recording();
    let (cb_b, _, synced_b) = recording();
    let a = d.lib_with(Version::B_02_02, cb_a);
    let b = d.lib_with(Version::B_02_02, cb_b);
    let ck = create(&a, NAME, &attrs(1));
    let _also_b = open(&b, NAME, RW);
    ck.synchronize_async(99).unwrap();
    assert!(!readable(b.selection_object().unwrap()));
    b.dispatch(DispatchFlags::All).unwrap();
    assert!(synced_b.lock().unwrap().is_empty());
    a.dispatch(DispatchFlags::All).unwrap();
    let got = synced_a.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 99);
    assert_eq!(got[0].1, Ok(()));
}

#[test]
fn close_cancels_the_pending_callbacks_of_that_checkpoint() {
    let d = Domain::new();
    let (cb, _, synced) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    let fd = lib.selection_object().unwrap();
    let c1 = create(&lib, NAME, &attrs(1));
    let c2 = create(&lib, OTHER, &attrs(1));
    c1.synchronize_async(1).unwrap();
    c2.synchronize_async(2).unwrap();
    c1.synchronize_async(3).unwrap();
    c1.close().unwrap();
    lib.dispatch(DispatchFlags::All).unwrap();
    assert_eq!(invocations(&synced), [2]);
    // Only cancelled callbacks pending: the selection object is not readable.
    c2.synchronize_async(4).unwrap();
    drop(c2);
    assert!(!readable(fd));
    lib.dispatch(DispatchFlags::All).unwrap();
    assert_eq!(invocations(&synced), [2]);
}

// ---- §2.1 saCkptFinalize, §4.11 -----------------------------------------------------------

#[test]
fn finalize_twice_is_bad_handle() {
    let d = Domain::new();
    let lib = d.lib(Version::B_02_02);
    assert_eq!(lib.finalize(), Ok(()));
    assert_eq!(lib.finalize(), Err(Error::BadHandle));
}

#[test]
fn finalize_cancels_pending_callbacks_and_closes_a_pending_open_result() {
    let d = Domain::new();
    let (cb, opened, synced) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    let ck = create(&lib, NAME, &attrs(1));
    lib.open_async(2, OTHER, Some(&attrs_retention(1, 0)), CRW)
        .unwrap();
    // Only the open's result can make the selection object readable: it is pending.
    wait_readable(&lib);
    ck.synchronize_async(1).unwrap();
    let probe = d.lib(Version::B_02_02);
    // The pending result holds the checkpoint open.
    assert!(probe.open(OTHER, None, RW, TIME_END).is_ok());
    lib.finalize().unwrap();
    assert!(opened.lock().unwrap().is_empty());
    assert!(synced.lock().unwrap().is_empty());
    assert_eq!(lib.dispatch(DispatchFlags::All), Err(Error::BadHandle));
    // The checkpoint the cancelled open had opened (retention 0) was closed and deleted.
    assert_eq!(
        probe.open(OTHER, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn every_call_on_a_finalized_library_is_bad_handle() {
    let d = Domain::new();
    let (cb, _, _) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    let owner = d.lib(Version::B_02_02);
    let _c = create(&owner, NAME, &attrs(1));
    lib.finalize().unwrap();
    assert_eq!(
        lib.open(NAME, None, RW, TIME_END).err(),
        Some(Error::BadHandle)
    );
    assert_eq!(
        lib.open(OTHER, Some(&attrs(1)), CRW, TIME_END).err(),
        Some(Error::BadHandle)
    );
    assert_eq!(
        lib.open_async(1, NAME, None, RW).err(),
        Some(Error::BadHandle)
    );
    assert_eq!(lib.unlink(NAME), Err(Error::BadHandle));
    assert_eq!(lib.selection_object(), Err(Error::BadHandle));
    assert_eq!(lib.dispatch(DispatchFlags::All), Err(Error::BadHandle));
    assert_eq!(
        lib.register_arrival_callback(Box::new(|_, _| {})),
        Err(Error::BadHandle)
    );
    assert_eq!(lib.finalize(), Err(Error::BadHandle));
}

#[test]
fn finalize_closes_every_checkpoint_opened_through_the_handle() {
    let d = Domain::new();
    let (cb, _, _) = recording();
    let lib = d.lib_with(Version::B_02_02, cb);
    let c1 = create(&lib, NAME, &attrs(1));
    let c2 = create(&lib, OTHER, &attrs(4));
    c2.create_section(Some(b"s"), TIME_END, b"x").unwrap();
    lib.finalize().unwrap();
    for ck in [&c1, &c2] {
        assert_eq!(ck.status().err(), Some(Error::BadHandle));
        assert_eq!(ck.read_vec(b"", 0).err(), Some(Error::BadHandle));
        assert_eq!(ck.overwrite(b"", b"x"), Err(Error::BadHandle));
        assert_eq!(
            ck.sections(SectionsChosen::Any).err(),
            Some(Error::BadHandle)
        );
        assert_eq!(ck.set_retention_duration(0), Err(Error::BadHandle));
        assert_eq!(ck.synchronize(TIME_END), Err(Error::BadHandle));
        assert_eq!(ck.synchronize_async(1), Err(Error::BadHandle));
        assert_eq!(ck.close(), Err(Error::BadHandle));
    }
    // They still exist (retention a minute): finalize closed them, it did not delete them.
    let probe = d.lib(Version::B_02_02);
    let again = open(&probe, OTHER, RW);
    assert_eq!(again.read_vec(b"s", 0).unwrap(), b"x");
}

#[test]
fn finalize_starts_the_retention_of_its_checkpoints() {
    let d = Domain::new();
    let lib = d.lib(Version::B_02_02);
    let _c = create(&lib, NAME, &attrs_retention(1, 0));
    let probe = d.lib(Version::B_02_02);
    lib.finalize().unwrap();
    assert_eq!(
        probe.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn dropping_a_library_finalizes_it() {
    let d = Domain::new();
    let lib = d.lib(Version::B_02_02);
    let ck = create(&lib, NAME, &attrs_retention(1, 0));
    drop(lib);
    assert_eq!(ck.status().err(), Some(Error::BadHandle));
    let probe = d.lib(Version::B_02_02);
    assert_eq!(
        probe.open(NAME, None, RW, TIME_END).err(),
        Some(Error::NotExist)
    );
}

#[test]
fn finalize_frees_iterations_which_then_yield_bad_handle() {
    let d = Domain::new();
    let lib = d.lib(Version::B_02_02);
    let ck = create(&lib, NAME, &attrs(4));
    for id in [&b"a"[..], b"b", b"c"] {
        ck.create_section(Some(id), TIME_END, b"").unwrap();
    }
    let mut it = ck.sections(SectionsChosen::Any).unwrap();
    assert!(it.next_section().is_ok());
    lib.finalize().unwrap();
    assert_eq!(it.next_section(), Err(Error::BadHandle));
    assert_eq!(it.next(), Some(Err(Error::BadHandle)));
    assert_eq!(it.next(), None);
}

#[test]
fn finalize_while_another_thread_is_in_open_returns_it_an_error_or_success_never_a_hang() {
    let d = Domain::new();
    let lib = Arc::new(d.lib(Version::B_02_02));
    let owner = d.lib(Version::B_02_02);
    let _c = create(&owner, NAME, &attrs(1));
    let started = Arc::new(AtomicUsize::new(0));
    let mut waits = Vec::new();
    for t in 0..3 {
        let l = Arc::clone(&lib);
        let s = Arc::clone(&started);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut last = Ok(());
            for i in 0.. {
                s.fetch_add(1, Ordering::SeqCst);
                let r = if t == 0 {
                    l.open(NAME, None, RW, TIME_END).map(drop)
                } else {
                    let name = format!("safCkpt=t{t}-{i}");
                    l.open(name, Some(&attrs_retention(1, 0)), CRW, TIME_END)
                        .map(drop)
                };
                match r {
                    Ok(()) => last = Ok(()),
                    Err(e) => {
                        last = Err(e);
                        break;
                    }
                }
            }
            let _ = tx.send(last);
        });
        waits.push(rx);
    }
    eventually("the openers started", || {
        started.load(Ordering::SeqCst) > 30
    });
    lib.finalize().unwrap();
    for rx in waits {
        let r = rx.recv_timeout(PATIENCE).expect("an open hung");
        assert_eq!(r, Err(Error::BadHandle));
    }
}

#[test]
fn finalize_while_an_async_open_runs_leaves_no_open_behind() {
    let d = Domain::new();
    let probe_lib = d.lib(Version::B_02_02);
    for i in 0..20 {
        let name = format!("safCkpt=race{i}");
        // Retention 0: deleted at its last close, which only comes if nothing leaks an open.
        let held = create(&probe_lib, &name, &attrs_retention(1, 0));
        let (cb, _, _) = recording();
        let lib = d.lib_with(Version::B_02_02, cb);
        lib.open_async(1, &name, None, RW).unwrap();
        if i % 2 == 0 {
            std::thread::sleep(Duration::from_micros(200 * i));
        }
        lib.finalize().unwrap();
        drop(held);
        // Whatever the async open did (finished before the finalize, raced it, or saw the
        // handle finalized), its open is undone: the checkpoint goes at the last close.
        eventually("the last close deleted it", || {
            match probe_lib.open(&name, None, RW, TIME_END) {
                Err(Error::NotExist) => true,
                Ok(ck) => {
                    drop(ck);
                    false
                }
                Err(e) => panic!("{e}"),
            }
        });
    }
}

#[test]
fn finalize_from_inside_a_callback_ends_a_blocking_dispatch() {
    let d = Domain::new();
    let me: Arc<std::sync::OnceLock<std::sync::Weak<Library>>> = Arc::default();
    let m = Arc::clone(&me);
    let lib = Arc::new(d.lib_with(
        Version::B_02_02,
        Callbacks {
            open: None,
            synchronize: Some(Box::new(move |_, _| {
                let lib = m.get().and_then(std::sync::Weak::upgrade).unwrap();
                assert_eq!(lib.finalize(), Ok(()));
            })),
        },
    ));
    me.set(Arc::downgrade(&lib)).unwrap();
    let ck = create(&lib, NAME, &attrs(1));
    ck.synchronize_async(1).unwrap();
    let l = Arc::clone(&lib);
    let r = within("BLOCKING after a callback finalized", move || {
        l.dispatch(DispatchFlags::Blocking)
    });
    assert_eq!(r, Ok(()));
    assert_eq!(lib.finalize(), Err(Error::BadHandle));
    assert_eq!(ck.status().err(), Some(Error::BadHandle));
}
