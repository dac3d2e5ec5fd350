//! Conformance: arrival callbacks (the NCS hot-standby extension,
//! `ncsCkptRegisterCkptArrivalCallback`, issue #3): another handle's write, overwrite or
//! section create is reported through dispatch with exactly the elements written; the
//! writer's own handle and handles without READ are not called back; the data can be
//! read at once. agent/tests/README.md maps every rule to its tests.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ckpt_agent::{
    ArrivalElement, Callbacks, Checkpoint, CheckpointHandle, DispatchFlags, Library, OpenFlags,
    TIME_END, Version, WriteElement,
};
use ckpt_engine::{Replica, Sharing};
use common::*;

const B02: Version = Version::B_02_02;

type Arrivals = Arc<Mutex<Vec<(CheckpointHandle, Vec<ArrivalElement>)>>>;

/// Registers a recording arrival callback on `lib`.
fn record(lib: &Library) -> Arrivals {
    let got: Arrivals = Arc::default();
    let g = Arc::clone(&got);
    lib.register_arrival_callback(Box::new(move |h, elems| {
        g.lock().unwrap().push((h, elems.to_vec()));
    }))
    .unwrap();
    got
}

/// Every element reported for `h`, in order.
fn elements(got: &Arrivals, h: CheckpointHandle) -> Vec<ArrivalElement> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(x, _)| *x == h)
        .flat_map(|(_, e)| e.clone())
        .collect()
}

fn element(id: &[u8], offset: u64, size: u64) -> ArrivalElement {
    ArrivalElement {
        section_id: id.to_vec(),
        offset,
        size,
    }
}

const MARKER: &[u8] = b"marker";

/// Writes the marker section through `writer`, then dispatches `lib` until the marker's
/// arrival reached `h`: every change made before it has been reported by then.
fn settle(lib: &Library, got: &Arrivals, h: CheckpointHandle, writer: &Checkpoint) {
    writer.overwrite(MARKER, b"!").unwrap();
    eventually("the marker arrived", || {
        lib.dispatch(DispatchFlags::All).unwrap();
        elements(got, h).last() == Some(&element(MARKER, 0, 1))
    });
}

/// A checkpoint of 8 sections with `s` (16 bytes) and the marker section.
fn setup(lib: &Library) -> Checkpoint {
    let ck = create(lib, NAME, &attrs(8));
    ck.create_section(Some(b"s"), TIME_END, &[0; 16]).unwrap();
    ck.create_section(Some(MARKER), TIME_END, b"").unwrap();
    ck
}

/// A writer and, in another library, a reader handle with a recording arrival callback:
/// what most tests here start from.
struct Subscribed {
    d: Domain,
    lib: Library,
    /// The writer's library (kept open while the test runs).
    _writer_lib: Library,
    writer: Checkpoint,
    reader: Checkpoint,
    got: Arrivals,
}

fn subscribed() -> Subscribed {
    let d = Domain::new();
    let lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    let reader = open(&lib, NAME, OpenFlags::READ);
    let got = record(&lib);
    Subscribed {
        d,
        lib,
        _writer_lib: writer_lib,
        writer,
        reader,
        got,
    }
}

#[test]
fn another_handles_write_delivers_exactly_the_elements_written() {
    let d = Domain::new();
    let reader_lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    writer.create_section(Some(b"t"), TIME_END, b"").unwrap();
    let reader = open(&reader_lib, NAME, OpenFlags::READ);
    let got = record(&reader_lib);
    writer
        .write(&[
            WriteElement {
                section_id: b"s",
                offset: 2,
                data: b"xy",
            },
            WriteElement {
                section_id: b"t",
                offset: 0,
                data: b"123",
            },
        ])
        .unwrap();
    settle(&reader_lib, &got, reader.handle(), &writer);
    assert_eq!(
        elements(&got, reader.handle()),
        [
            element(b"s", 2, 2),
            element(b"t", 0, 3),
            element(MARKER, 0, 1)
        ]
    );
}

#[test]
fn another_handles_overwrite_and_section_create_are_delivered_with_the_new_size() {
    let t = subscribed();
    let (reader_lib, writer, reader, got) = (&t.lib, &t.writer, &t.reader, &t.got);
    writer.overwrite(b"s", b"four").unwrap();
    writer
        .create_section(Some(b"new"), TIME_END, b"initial")
        .unwrap();
    let generated = writer.create_section(None, TIME_END, b"").unwrap();
    settle(reader_lib, got, reader.handle(), writer);
    assert_eq!(
        elements(got, reader.handle()),
        [
            element(b"s", 0, 4),
            element(b"new", 0, 7),
            element(&generated, 0, 0),
            element(MARKER, 0, 1)
        ]
    );
}

#[test]
fn the_default_section_is_reported_with_the_empty_id() {
    let d = Domain::new();
    let reader_lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = create(&writer_lib, NAME, &attrs(1));
    let reader = open(&reader_lib, NAME, OpenFlags::READ);
    let got = record(&reader_lib);
    writer.overwrite(b"", b"one").unwrap();
    writer
        .write(&[WriteElement {
            section_id: b"",
            offset: 3,
            data: b"two",
        }])
        .unwrap();
    eventually("two arrivals", || {
        reader_lib.dispatch(DispatchFlags::All).unwrap();
        elements(&got, reader.handle()).len() >= 2
    });
    assert_eq!(
        elements(&got, reader.handle()),
        [element(b"", 0, 3), element(b"", 3, 3)]
    );
}

#[test]
fn the_reader_can_read_the_data_at_once() {
    let d = Domain::new();
    let reader_lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    let reader = Arc::new(open(&reader_lib, NAME, OpenFlags::READ));
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (r, s) = (Arc::clone(&reader), Arc::clone(&seen));
    reader_lib
        .register_arrival_callback(Box::new(move |h, elems| {
            assert_eq!(h, r.handle());
            for e in elems {
                let mut buf = vec![0u8; e.size as usize];
                let n = r.read_into(&e.section_id, e.offset, &mut buf).unwrap();
                buf.truncate(n);
                s.lock().unwrap().push(buf);
            }
        }))
        .unwrap();
    let mut want = Vec::new();
    for i in 0..20u8 {
        let data = [i; 3];
        writer
            .write(&[WriteElement {
                section_id: b"s",
                offset: u64::from(i % 8),
                data: &data,
            }])
            .unwrap();
        // Each arrival is dispatched before the next write: the data read in the
        // callback is the data written.
        eventually("the arrival", || {
            reader_lib.dispatch(DispatchFlags::All).unwrap();
            seen.lock().unwrap().len() == usize::from(i) + 1
        });
        want.push(data.to_vec());
    }
    assert_eq!(*seen.lock().unwrap(), want);
}

#[test]
fn the_writers_own_handle_is_not_called_back() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let marker_lib = d.lib(B02);
    let own = setup(&lib);
    let sibling = open(&lib, NAME, OpenFlags::READ);
    let got = record(&lib);
    let marker = open(&marker_lib, NAME, RW);
    own.overwrite(b"s", b"mine").unwrap();
    settle(&lib, &got, own.handle(), &marker);
    // The writer's handle hears only the other writer...
    assert_eq!(elements(&got, own.handle()), [element(MARKER, 0, 1)]);
    // ...while another handle of the same library hears both.
    eventually("the sibling heard both", || {
        lib.dispatch(DispatchFlags::All).unwrap();
        elements(&got, sibling.handle()).len() >= 2
    });
    assert_eq!(
        elements(&got, sibling.handle()),
        [element(b"s", 0, 4), element(MARKER, 0, 1)]
    );
}

#[test]
fn handles_without_read_are_not_called_back() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    let write_only = open(&lib, NAME, OpenFlags::WRITE);
    let reader = open(&lib, NAME, OpenFlags::READ);
    let got = record(&lib);
    writer.overwrite(b"s", b"news").unwrap();
    settle(&lib, &got, reader.handle(), &writer);
    assert_eq!(elements(&got, reader.handle()).len(), 2);
    assert!(elements(&got, write_only.handle()).is_empty());
}

#[test]
fn changes_made_before_the_registration_are_not_reported() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    let reader = open(&lib, NAME, OpenFlags::READ);
    writer.overwrite(b"s", b"before").unwrap();
    let got = record(&lib);
    writer.overwrite(b"s", b"after!!").unwrap();
    settle(&lib, &got, reader.handle(), &writer);
    assert_eq!(
        elements(&got, reader.handle()),
        [element(b"s", 0, 7), element(MARKER, 0, 1)]
    );
}

#[test]
fn checkpoints_opened_after_the_registration_are_reported_too() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    let got = record(&lib);
    let reader = open(&lib, NAME, OpenFlags::READ);
    writer.overwrite(b"s", b"late").unwrap();
    settle(&lib, &got, reader.handle(), &writer);
    assert_eq!(
        elements(&got, reader.handle()),
        [element(b"s", 0, 4), element(MARKER, 0, 1)]
    );
}

#[test]
fn section_deletes_and_expiration_changes_are_not_arrivals() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    writer.create_section(Some(b"gone"), TIME_END, b"").unwrap();
    let reader = open(&lib, NAME, OpenFlags::READ);
    let got = record(&lib);
    writer
        .set_section_expiration(b"s", now() + 60 * MINUTE)
        .unwrap();
    writer.delete_section(b"gone").unwrap();
    settle(&lib, &got, reader.handle(), &writer);
    assert_eq!(elements(&got, reader.handle()), [element(MARKER, 0, 1)]);
}

#[test]
fn arrivals_run_only_inside_dispatch() {
    let t = subscribed();
    let (lib, writer, reader, got) = (&t.lib, &t.writer, &t.reader, &t.got);
    writer.overwrite(b"s", b"x").unwrap();
    wait_readable(lib);
    std::thread::sleep(Duration::from_millis(50));
    assert!(got.lock().unwrap().is_empty(), "ran outside dispatch");
    lib.dispatch(DispatchFlags::All).unwrap();
    assert_eq!(elements(got, reader.handle()), [element(b"s", 0, 1)]);
    assert!(!readable(lib.selection_object().unwrap()));
}

#[test]
fn close_cancels_pending_arrival_callbacks() {
    let t = subscribed();
    let (lib, writer, reader, got) = (&t.lib, &t.writer, &t.reader, &t.got);
    writer.overwrite(b"s", b"x").unwrap();
    wait_readable(lib);
    reader.close().unwrap();
    assert!(!readable(lib.selection_object().unwrap()));
    lib.dispatch(DispatchFlags::All).unwrap();
    assert!(got.lock().unwrap().is_empty());
}

#[test]
fn registering_again_replaces_the_arrival_callback() {
    let d = Domain::new();
    let lib = d.lib(B02);
    let writer_lib = d.lib(B02);
    let writer = setup(&writer_lib);
    let reader = open(&lib, NAME, OpenFlags::READ);
    let first = record(&lib);
    let second = record(&lib);
    writer.overwrite(b"s", b"x").unwrap();
    settle(&lib, &second, reader.handle(), &writer);
    assert!(first.lock().unwrap().is_empty());
    assert_eq!(elements(&second, reader.handle()).len(), 2);
}

#[test]
fn another_processes_writes_are_delivered() {
    if let Some(dir) = child_domain() {
        let lib = Library::initialize_with(config_at(&dir), B02, Callbacks::default()).unwrap();
        let ck = lib.open(NAME, None, RW, TIME_END).unwrap();
        ck.write(&[WriteElement {
            section_id: b"s",
            offset: 5,
            data: b"child",
        }])
        .unwrap();
        ck.overwrite(MARKER, b"!").unwrap();
        return;
    }
    let d = Domain::new();
    let lib = d.lib(B02);
    let ck = setup(&lib);
    let got = record(&lib);
    let status = run_child("another_processes_writes_are_delivered", d.path());
    assert!(status.success(), "child failed: {status}");
    eventually("the child's changes arrived", || {
        lib.dispatch(DispatchFlags::All).unwrap();
        elements(&got, ck.handle()).len() >= 2
    });
    assert_eq!(
        elements(&got, ck.handle()),
        [element(b"s", 5, 5), element(MARKER, 0, 1)]
    );
    let mut buf = [0u8; 5];
    assert_eq!(ck.read_into(b"s", 5, &mut buf), Ok(5));
    assert_eq!(&buf, b"child");
}

#[test]
fn writes_in_a_burst_rarely_find_the_arrival_watcher_waiting_to_be_woken() {
    let t = subscribed();
    let (reader_lib, writer, reader, got) = (&t.lib, &t.writer, &t.reader, &t.got);
    let d = &t.d;
    settle(reader_lib, got, reader.handle(), writer);
    let replica = Replica::attach(
        d.path(),
        &format!("r-{:016x}", writer.instance()),
        Sharing::default(),
    )
    .unwrap();
    // Idle, the watcher waits on the futex: the next write wakes it at once.
    eventually("the idle watcher waits", || replica.change_waiters() == 1);
    // One write every 20 µs for 100 ms: after each delivery the watcher looks again after
    // a while instead of waiting, so a write rarely finds a waiter it must wake.
    let mut woke = 0u32;
    let mut writes = 0u32;
    let end = Instant::now() + Duration::from_millis(100);
    while Instant::now() < end {
        let next = Instant::now() + Duration::from_micros(20);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        if replica.change_waiters() != 0 {
            woke += 1;
        }
        writer.overwrite(b"s", &[writes as u8; 16]).unwrap();
        writes += 1;
    }
    assert!(
        woke * 4 < writes,
        "{woke} of {writes} writes found a waiter to wake"
    );
    // And every one of them was still delivered.
    settle(reader_lib, got, reader.handle(), writer);
    let arrived = elements(got, reader.handle())
        .iter()
        .filter(|e| e.section_id == b"s")
        .count();
    assert_eq!(arrived, writes as usize);
}
