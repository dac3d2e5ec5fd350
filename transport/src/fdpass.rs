//! Frames with descriptors on a node's Unix socket (agents ↔ ckptd, `ckpt` → ckptd): a
//! sealed node passes its replica objects as memfd descriptors (`SCM_RIGHTS`) with
//! [`Frame::Descriptors`] (DESIGN.md §7, "Sealed nodes").
//!
//! On a stream socket the kernel hands a message's descriptors to the `recvmsg` that reads
//! the first byte of that message, and never those of two messages to one call. So a
//! receiver that queues descriptors in arrival order, and takes `instances.len()` of them
//! from the front when it decodes a `Descriptors` frame, pairs each descriptor with its
//! instance, provided every sender passes a frame's descriptors with the frame's first
//! byte ([`send_frame`]). Descriptors a peer attaches to anything else end up paired with
//! the wrong instance or not at all: whoever receives them validates what it maps
//! (`Replica::attach_fd` checks the header's instance), and the queue is bounded.
//!
//! Blocking and non-blocking sockets alike: these are single calls, which a tokio driver
//! wraps in `try_io`.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::wire::{Frame, FrameReader, MAX_DESCRIPTORS, WireError};

/// The most descriptors the kernel passes with one message (`SCM_MAX_FD`): a receiver's
/// room per `recvmsg`, so that no message it can be sent is ever cut short.
const SCM_MAX_FD: usize = 253;

/// Descriptors a receiver keeps waiting for their frame at most.
const MAX_QUEUED: usize = 4 * MAX_DESCRIPTORS;

/// Why a stream of frames with descriptors cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum FdStreamError {
    /// A `Descriptors` frame arrived with fewer descriptors than instances.
    #[error("a Descriptors frame names {named} instances but {queued} descriptors came")]
    MissingDescriptors {
        /// Instances the frame names.
        named: usize,
        /// Descriptors received and not yet claimed.
        queued: usize,
    },
    /// More descriptors arrived than frames claimed.
    #[error("more than {MAX_QUEUED} descriptors arrived that no frame claims")]
    TooManyDescriptors,
    /// The bytes are not frames.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Splits a socket's bytes into frames and pairs each [`Frame::Descriptors`] with the
/// descriptors that came with it.
#[derive(Debug)]
pub struct FdReader {
    frames: FrameReader,
    fds: VecDeque<OwnedFd>,
}

impl FdReader {
    /// A reader for frames up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            frames: FrameReader::new(max_frame),
            fds: VecDeque::new(),
        }
    }

    /// One `recvmsg` from `socket` into `buf`: the bytes go to the frame reader, the
    /// descriptors (close-on-exec) to the queue. Returns the bytes read (0: end of
    /// stream). A blocking socket blocks; a non-blocking one may give `WouldBlock`.
    pub fn recv(&mut self, socket: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(socket, buf, RecvFlags::empty())
    }

    /// [`FdReader::recv`] that never blocks (`MSG_DONTWAIT`): `WouldBlock` when nothing
    /// is there to read.
    pub fn try_recv(&mut self, socket: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(socket, buf, RecvFlags::DONTWAIT)
    }

    fn recv_with(
        &mut self,
        socket: impl AsFd,
        buf: &mut [u8],
        flags: RecvFlags,
    ) -> io::Result<usize> {
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(SCM_MAX_FD))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | flags,
        )?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                self.fds.extend(fds);
            }
        }
        if got.flags.contains(ReturnFlags::CTRUNC) || self.fds.len() > MAX_QUEUED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                FdStreamError::TooManyDescriptors,
            ));
        }
        self.frames.push(&buf[..got.bytes]);
        Ok(got.bytes)
    }

    /// The next whole frame, with its descriptors (one per instance of a `Descriptors`
    /// frame, in order; none for the other kinds). `Ok(None)`: more bytes are needed.
    #[expect(
        clippy::should_implement_trait,
        reason = "Ok(None) means \"not yet\", not the end, and errors are not items"
    )]
    pub fn next(&mut self) -> Result<Option<(Frame, Vec<OwnedFd>)>, FdStreamError> {
        let Some(frame) = self.frames.next()? else {
            return Ok(None);
        };
        let named = match &frame {
            Frame::Descriptors { instances, .. } => instances.len(),
            _ => 0,
        };
        if self.fds.len() < named {
            return Err(FdStreamError::MissingDescriptors {
                named,
                queued: self.fds.len(),
            });
        }
        let fds = self.fds.drain(..named).collect();
        Ok(Some((frame, fds)))
    }
}

/// Sends the encoded frame `bytes` with `fds` attached to its first byte, in one
/// `sendmsg`; returns how many bytes it took (at least one, unless `bytes` is empty),
/// and the caller writes the rest as plain bytes. `fds` must be at most
/// [`MAX_DESCRIPTORS`] long.
pub fn send_frame(socket: impl AsFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    debug_assert!(fds.len() <= MAX_DESCRIPTORS);
    if fds.is_empty() {
        return rustix::net::send(socket, bytes, SendFlags::NOSIGNAL).map_err(io::Error::from);
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_DESCRIPTORS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one frame",
        ));
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(io::Error::from)
}

/// [`send_frame`], then the rest of the frame, on a blocking socket.
pub fn send_frame_blocking(
    socket: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let socket = socket.as_fd();
    let mut sent = loop {
        match send_frame(socket, bytes, fds) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    while sent < bytes.len() {
        match rustix::net::send(socket, &bytes[sent..], SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    fn encode(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out);
        out
    }

    fn memfd(tag: &str) -> OwnedFd {
        rustix::fs::memfd_create(tag, rustix::fs::MemfdFlags::CLOEXEC).expect("memfd")
    }

    fn ino(fd: impl AsFd) -> u64 {
        rustix::fs::fstat(fd).expect("fstat").st_ino
    }

    #[test]
    fn descriptors_pair_with_their_frames_whatever_the_reads_cut() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let one = [memfd("one"), memfd("two")];
        let other = memfd("three");
        let f1 = Frame::Descriptors {
            instances: vec![1, 2],
            last: false,
        };
        let f2 = Frame::ListDescriptors;
        let f3 = Frame::Descriptors {
            instances: vec![3],
            last: true,
        };
        let b1: Vec<_> = one.iter().map(AsFd::as_fd).collect();
        send_frame_blocking(&a, &encode(&f1), &b1).expect("send 1");
        send_frame_blocking(&a, &encode(&f2), &[]).expect("send 2");
        send_frame_blocking(&a, &encode(&f3), &[other.as_fd()]).expect("send 3");
        drop(a);
        let mut sut = FdReader::new(1 << 20);
        let mut got = Vec::new();
        // Three bytes at a time: frames and descriptors arrive in pieces.
        let mut buf = [0u8; 3];
        loop {
            while let Some(x) = sut.next().expect("frames") {
                got.push(x);
            }
            if sut.recv(&b, &mut buf).expect("recv") == 0 {
                break;
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, f1);
        assert_eq!(
            got[0].1.iter().map(ino).collect::<Vec<_>>(),
            one.iter().map(ino).collect::<Vec<_>>()
        );
        assert_eq!((&got[1].0, got[1].1.len()), (&f2, 0));
        assert_eq!(got[2].0, f3);
        assert_eq!(ino(&got[2].1[0]), ino(&other));
    }

    #[test]
    fn a_descriptors_frame_without_its_descriptors_is_an_error() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let f = Frame::Descriptors {
            instances: vec![9],
            last: true,
        };
        send_frame_blocking(&a, &encode(&f), &[]).expect("send");
        let mut sut = FdReader::new(1 << 20);
        let mut buf = [0u8; 64];
        sut.recv(&b, &mut buf).expect("recv");
        assert!(matches!(
            sut.next(),
            Err(FdStreamError::MissingDescriptors {
                named: 1,
                queued: 0
            })
        ));
    }
}
