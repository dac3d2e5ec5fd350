//! Cluster mode: the agent's session with its node's `ckptd`.
//!
//! A library in cluster mode holds one Unix-socket session with ckptd for its whole life
//! (it ends when the library and its checkpoint handles are all dropped).
//! Control operations (open, close, unlink, retention, active replica) are `Request`
//! frames answered by `Reply` frames (transport/DESIGN.md §2), matched by request id, so
//! several threads can wait at once. ckptd notices the session end when the process dies
//! and closes what it had open, cluster-wide. The data path goes through here only when
//! the checkpoint's writes are ordered elsewhere (`Remote` frames: writes off the
//! primary, ALL_REPLICAS writes, reads of an asynchronous checkpoint whose active replica
//! is on another node, any access from a node without a replica); otherwise the node's
//! replica objects are mapped directly.
//!
//! When ckptd cannot be reached, calls fail with `TryAgain` (never a silent fallback to
//! standalone), and the next call tries to connect again.
//!
//! Answers are read by whoever waits: a caller waiting for its answer reads the socket
//! itself when no other thread is reading (one thread wake-up less per call than a
//! dedicated reader handing it over), and dispatches whatever else comes to the threads
//! it belongs to; a background thread reads when the socket is readable and no caller
//! is, and notices the session's end (then reconnects).
//!
//! A sealed node (`Welcome { sealed }`) keeps its replicas as sealed memfds: ckptd passes
//! the descriptor of the node's replica with the answer to an open (`Descriptors` just
//! before the `Reply`), and on every (re)connection the session hands ckptd back the
//! descriptors of the replicas this process holds, so a restarted ckptd gets them again
//! (transport/DESIGN.md §7).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ckpt_transport::fdpass::{FdReader, send_frame_blocking};
use ckpt_transport::wire::{
    DEFAULT_MAX_FRAME, DirOp, DirReply, Frame, MAX_DESCRIPTORS, PROTOCOL_VERSION, RemoteOp,
    RemoteResult, ReqId,
};

use crate::error::{Error, Result};

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// The environment variable that puts agents in cluster mode: the path of ckptd's socket.
pub const CLUSTER_SOCKET_ENV: &str = "CKPT_CLUSTER_SOCKET";

/// What ckptd told us when the session started.
#[derive(Debug)]
struct Link {
    stream: UnixStream,
    /// One frame at a time on the stream (a large frame takes several writes).
    write: Mutex<()>,
    /// The read side: whoever holds it reads (a caller waiting for its answer, or the
    /// background reader).
    read: Mutex<ReadSide>,
    node: u32,
    shm_dir: PathBuf,
    /// The node keeps its replicas as sealed memfds, passed as descriptors.
    sealed: bool,
}

/// The stream's read state, kept by whoever reads.
#[derive(Debug)]
struct ReadSide {
    reader: FdReader,
    /// Descriptors ckptd passed, which belong to the `Reply` right after them.
    passed: Vec<(u64, OwnedFd)>,
    /// The stream ended or broke: nothing more to read.
    ended: bool,
}

/// What one turn at reading the stream found.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Frames were read (and dispatched), or at least bytes of one.
    Read,
    /// Nothing came before the deadline (or, not blocking, nothing was there).
    Idle,
    /// The stream ended or broke.
    Ended,
}

#[derive(Debug)]
enum Answer {
    /// A directory answer, with the sealed replicas ckptd passed just before it (an open's
    /// answer on a sealed node whose replica is local).
    Dir(DirReply, Vec<(u64, OwnedFd)>),
    Remote(RemoteResult),
}

#[derive(Debug, Default)]
struct Waiting {
    replies: HashMap<u64, Answer>,
    /// Bumped when the session ends (waiters give up).
    generation: u64,
    link: Option<Arc<Link>>,
}

/// One session with ckptd.
#[derive(Debug)]
pub(crate) struct Client {
    socket: PathBuf,
    session: u64,
    counter: AtomicU64,
    state: Mutex<Waiting>,
    cond: Condvar,
}

impl Client {
    /// Connects to ckptd at `socket` (TryAgain if it does not answer).
    pub(crate) fn connect(socket: &Path) -> Result<Arc<Self>> {
        let c = Arc::new(Self {
            socket: socket.to_path_buf(),
            // The pid in the high bits: a restarted ckptd tells a dead agent's session
            // from one that will reconnect.
            session: (u64::from(std::process::id()) << 24)
                | (NEXT_SESSION.fetch_add(1, Ordering::Relaxed) & 0xff_ffff),
            counter: AtomicU64::new(1),
            state: Mutex::new(Waiting::default()),
            cond: Condvar::new(),
        });
        c.link()?;
        Ok(c)
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live link, connecting (and starting its reader) if there is none.
    fn link(self: &Arc<Self>) -> Result<Arc<Link>> {
        let mut s = self.lock();
        if let Some(l) = &s.link {
            return Ok(Arc::clone(l));
        }
        let mut stream = UnixStream::connect(&self.socket).map_err(|_| Error::TryAgain)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|_| Error::TryAgain)?;
        let mut hello = Vec::new();
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: 0,
            incarnation: self.session,
        }
        .encode(&mut hello);
        stream.write_all(&hello).map_err(|_| Error::TryAgain)?;
        let mut reader = FdReader::new(DEFAULT_MAX_FRAME);
        let welcome = read_frame(&stream, &mut reader).ok_or(Error::TryAgain)?;
        let Frame::Welcome {
            node,
            shm_dir,
            sealed,
            ..
        } = welcome.0
        else {
            return Err(Error::TryAgain);
        };
        if sealed {
            // Before anything else on this session: a restarted ckptd takes back the
            // replicas this process holds (a first connection holds none).
            let held = crate::shared::held_sealed(self);
            let fds: Vec<(u64, BorrowedFd<'_>)> = held
                .iter()
                .filter_map(|i| Some((i.id, i.replica.sealed_fd()?)))
                .collect();
            hand_back(&stream, &fds)?;
        }
        stream.set_read_timeout(None).map_err(|_| Error::TryAgain)?;
        let link = Arc::new(Link {
            stream,
            write: Mutex::new(()),
            read: Mutex::new(ReadSide {
                reader,
                passed: Vec::new(),
                ended: false,
            }),
            node,
            shm_dir: PathBuf::from(shm_dir),
            sealed,
        });
        s.link = Some(Arc::clone(&link));
        let generation = s.generation;
        drop(s);
        let me = Arc::downgrade(self);
        let background = Arc::clone(&link);
        let spawned = std::thread::Builder::new()
            .name("ckpt-cluster".into())
            .spawn(move || {
                let link = background;
                loop {
                    // Readable (or ended): read what no caller did.
                    if !wait_readable(&link.stream, None) {
                        break;
                    }
                    let Some(c) = me.upgrade() else { return };
                    let mut side = link.read.lock().unwrap_or_else(|p| p.into_inner());
                    if side.ended
                        || c.read_turn(&link, &mut side, Some(Duration::ZERO)) == Turn::Ended
                    {
                        break;
                    }
                }
                if let Some(c) = me.upgrade() {
                    c.end(&link, generation);
                }
                drop(link);
                // ckptd went away (a restart, say): reconnect as soon as it is back, so
                // it hands this session's opens back (they stay registered meanwhile).
                let mut pause = Duration::from_millis(20);
                loop {
                    std::thread::sleep(pause);
                    let Some(c) = me.upgrade() else { return };
                    if c.lock().link.is_some() || c.link().is_ok() {
                        return;
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            });
        if spawned.is_err() {
            let mut s = self.lock();
            s.link = None;
            return Err(Error::NoResources);
        }
        Ok(link)
    }

    /// Marks the session of `generation` over: its link is dropped and every waiter told.
    fn end(&self, link: &Link, generation: u64) {
        link.read.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
        let mut s = self.lock();
        if s.generation == generation {
            s.generation += 1;
            s.link = None;
        }
        drop(s);
        self.cond.notify_all();
    }

    /// One turn at reading `link` (the caller holds its read side): waits up to `wait`
    /// for bytes (`None`: as long as it takes; zero: not at all), then reads what is there
    /// and dispatches every whole frame to the thread waiting for it.
    fn read_turn(&self, link: &Link, side: &mut ReadSide, wait: Option<Duration>) -> Turn {
        if side.ended {
            return Turn::Ended;
        }
        // A wait with a deadline that ends without bytes is over; otherwise the read below
        // says what there is (nothing, bytes, or the end).
        if wait != Some(Duration::ZERO) && !wait_readable(&link.stream, wait) && wait.is_some() {
            return Turn::Idle;
        }
        let mut buf = [0u8; 16 * 1024];
        let mut read = false;
        loop {
            match side.reader.try_recv(&link.stream, &mut buf) {
                Ok(0) => {
                    side.ended = true;
                    return Turn::Ended;
                }
                Ok(_) => read = true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    side.ended = true;
                    return Turn::Ended;
                }
            }
            loop {
                match side.reader.next() {
                    Ok(Some((f, fds))) => self.dispatch(side, f, fds),
                    Ok(None) => break,
                    Err(_) => {
                        side.ended = true;
                        return Turn::Ended;
                    }
                }
            }
        }
        if read { Turn::Read } else { Turn::Idle }
    }

    /// Hands one frame from ckptd to the thread waiting for it.
    fn dispatch(&self, side: &mut ReadSide, f: Frame, fds: Vec<OwnedFd>) {
        let (counter, answer) = match f {
            Frame::Reply { req, result } => (
                req.counter,
                Answer::Dir(result, std::mem::take(&mut side.passed)),
            ),
            Frame::RemoteReply { req, result } => (req.counter, Answer::Remote(result)),
            Frame::Descriptors { instances, .. } => {
                side.passed.extend(instances.into_iter().zip(fds));
                return;
            }
            _ => return,
        };
        self.lock().replies.insert(counter, answer);
        self.cond.notify_all();
    }

    /// This node's id.
    pub(crate) fn node(self: &Arc<Self>) -> Result<u32> {
        Ok(self.link()?.node)
    }

    /// The directory of this node's replica objects (sealed: of its liveness locks).
    pub(crate) fn shm_dir(self: &Arc<Self>) -> Result<PathBuf> {
        Ok(self.link()?.shm_dir.clone())
    }

    /// Whether the node keeps its replicas as sealed memfds.
    pub(crate) fn sealed(self: &Arc<Self>) -> Result<bool> {
        Ok(self.link()?.sealed)
    }

    /// Sends a directory request and waits for its answer (`timeout` None: as long as
    /// ckptd keeps the session; ckptd itself gives up after 30 s without a leader).
    pub(crate) fn request(
        self: &Arc<Self>,
        op: DirOp,
        timeout: Option<Duration>,
    ) -> Result<DirReply> {
        self.request_with_descriptors(op, timeout).map(|(r, _)| r)
    }

    /// [`Client::request`], with the descriptors of the sealed replicas ckptd passed with
    /// its answer (an open's, on a sealed node).
    pub(crate) fn request_with_descriptors(
        self: &Arc<Self>,
        op: DirOp,
        timeout: Option<Duration>,
    ) -> Result<(DirReply, Vec<(u64, OwnedFd)>)> {
        match self.call(|req| Frame::Request { req, op }, timeout)? {
            Answer::Dir(r, fds) => Ok((r, fds)),
            Answer::Remote(_) => Err(Error::Library("ckptd answered with the wrong frame")),
        }
    }

    /// Sends a checkpoint operation to the node that orders the checkpoint's writes
    /// (through ckptd) and waits for its answer.
    pub(crate) fn remote(
        self: &Arc<Self>,
        instance: u64,
        op: RemoteOp,
        timeout: Option<Duration>,
    ) -> Result<RemoteResult> {
        match self.call(|req| Frame::Remote { req, instance, op }, timeout)? {
            Answer::Remote(r) => Ok(r),
            Answer::Dir(..) => Err(Error::Library("ckptd answered with the wrong frame")),
        }
    }

    fn call(
        self: &Arc<Self>,
        frame: impl FnOnce(ReqId) -> Frame,
        timeout: Option<Duration>,
    ) -> Result<Answer> {
        let link = self.link()?;
        let counter = self.counter.fetch_add(1, Ordering::Relaxed);
        let req = ReqId {
            node: 0,
            incarnation: self.session,
            counter,
        };
        let mut buf = Vec::new();
        frame(req).encode(&mut buf);
        let generation = self.lock().generation;
        {
            let _one = link.write.lock().unwrap_or_else(|p| p.into_inner());
            (&link.stream)
                .write_all(&buf)
                .map_err(|_| Error::TryAgain)?;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.lock();
        loop {
            if let Some(r) = s.replies.remove(&counter) {
                return Ok(r);
            }
            if s.generation != generation {
                return Err(Error::TryAgain);
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::Timeout);
                    }
                    Some(d - now)
                }
            };
            // Nobody reads: read for ourselves (the answer then wakes this thread, not
            // another that would hand it over).
            if let Ok(mut side) = link.read.try_lock() {
                drop(s);
                let turn = self.read_turn(&link, &mut side, left);
                drop(side);
                if turn == Turn::Ended {
                    self.end(&link, generation);
                }
                // Another waiter may take over the reading.
                self.cond.notify_all();
                s = self.lock();
                continue;
            }
            s = match left {
                None => self.cond.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.cond
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The session ends with its last user: shutting the socket down wakes the
        // background reader (which finds no client and exits), and ckptd sees the end.
        let link = self
            .state
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .link
            .take();
        if let Some(link) = link {
            let _ = link.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Waits until `stream` has bytes to read or has ended (`true`), for up to `wait`
/// (`None`: without end); `false` when the wait is over or the poll failed.
fn wait_readable(stream: &UnixStream, wait: Option<Duration>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = wait.map(|w| Timespec {
        tv_sec: i64::try_from(w.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(w.subsec_nanos()),
    });
    let mut fds = [PollFd::new(stream, PollFlags::IN)];
    loop {
        match poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return n > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

fn read_frame(stream: &UnixStream, reader: &mut FdReader) -> Option<(Frame, Vec<OwnedFd>)> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match reader.next() {
            Ok(Some(f)) => return Some(f),
            Ok(None) => {}
            Err(_) => return None,
        }
        loop {
            match reader.recv(stream, &mut buf) {
                Ok(0) => return None,
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

/// Hands a sealed node's ckptd the replicas `held` (instance, descriptor), in frames of at
/// most [`MAX_DESCRIPTORS`], the last one saying so (an empty one when there are none).
fn hand_back(stream: &UnixStream, held: &[(u64, BorrowedFd<'_>)]) -> Result<()> {
    let mut chunks: Vec<&[(u64, BorrowedFd<'_>)]> = held.chunks(MAX_DESCRIPTORS).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let n = chunks.len();
    for (k, chunk) in chunks.into_iter().enumerate() {
        let frame = Frame::Descriptors {
            instances: chunk.iter().map(|h| h.0).collect(),
            last: k + 1 == n,
        };
        let mut buf = Vec::with_capacity(frame.encoded_len());
        frame.encode(&mut buf);
        let fds: Vec<BorrowedFd<'_>> = chunk.iter().map(|h| h.1.as_fd()).collect();
        send_frame_blocking(stream, &buf, &fds).map_err(|_| Error::TryAgain)?;
    }
    Ok(())
}

/// Maps a directory answer to the API's errors (`NotLeader`: the node is not in the
/// cluster right now: TryAgain, or Unavailable for B.02 clients).
pub(crate) fn reply_error(r: &DirReply, b02: bool) -> Error {
    match r {
        DirReply::Failed { code } => Error::from_code(*code),
        DirReply::NotLeader { .. } if b02 => Error::Unavailable,
        _ => Error::TryAgain,
    }
}
