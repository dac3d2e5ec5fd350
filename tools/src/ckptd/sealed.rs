//! The replicas of a sealed node (`sealed = true`), as a tool gets them: they are not in
//! the node's shm directory, so `ckpt ls` (and the tests) ask the node's ckptd for their
//! descriptors over its agent socket (`ListDescriptors`, answered by `Descriptors` frames
//! with the descriptors attached; transport/DESIGN.md §7).

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ckpt_transport::fdpass::FdReader;
use ckpt_transport::wire::{DEFAULT_MAX_FRAME, Frame, PROTOCOL_VERSION};

use super::store::SEALED_FILE;

/// What a node's ckptd holds.
#[derive(Debug)]
pub struct Held {
    /// The node's shm directory, as ckptd names it.
    pub shm_dir: PathBuf,
    /// Whether the node keeps its replicas as sealed memfds.
    pub sealed: bool,
    /// Each replica ckptd holds (sealed nodes only), by instance, with a descriptor of
    /// its own.
    pub replicas: Vec<(u64, OwnedFd)>,
}

/// The agent socket a sealed node's directory names ([`SEALED_FILE`]), or `None` when the
/// directory is not a sealed node's.
pub fn marked_socket(dir: &Path) -> io::Result<Option<PathBuf>> {
    match std::fs::read_to_string(dir.join(SEALED_FILE)) {
        Ok(text) => Ok(Some(PathBuf::from(text.trim_end_matches('\n')))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Asks the ckptd at `socket` for every replica it holds (as the node's agents would, but
/// opening nothing: ckptd keeps no state for this session). Gives up after `timeout`
/// without an answer.
pub fn descriptors(socket: &Path, timeout: Duration) -> io::Result<Held> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut out = Vec::new();
    // Session key 0: no agent's (theirs carry their pid), so it adopts no orphaned opens.
    Frame::Hello {
        version: PROTOCOL_VERSION,
        node: 0,
        incarnation: 0,
    }
    .encode(&mut out);
    Frame::ListDescriptors.encode(&mut out);
    stream.write_all(&out)?;
    let mut reader = FdReader::new(DEFAULT_MAX_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let mut held: Option<Held> = None;
    loop {
        while let Some((frame, fds)) = reader.next().map_err(io::Error::other)? {
            match (frame, held.as_mut()) {
                (
                    Frame::Welcome {
                        shm_dir, sealed, ..
                    },
                    None,
                ) => {
                    held = Some(Held {
                        shm_dir: PathBuf::from(shm_dir),
                        sealed,
                        replicas: Vec::new(),
                    });
                }
                (Frame::Descriptors { instances, last }, Some(h)) => {
                    h.replicas.extend(instances.into_iter().zip(fds));
                    if last {
                        return held.ok_or_else(|| io::Error::other("no Welcome"));
                    }
                }
                (other, _) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected frame {:#04x} from ckptd", other.kind()),
                    ));
                }
            }
        }
        if reader.recv(&stream, &mut buf)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ckptd closed the connection before it had answered",
            ));
        }
    }
}
