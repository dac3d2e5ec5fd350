//! quinn over turmoil's simulated UDP (reliability.md §2.1): the adapter of the transport's
//! network tests (`net.rs`), and of the cluster simulation (`tools/tests/sim.rs` includes
//! this file by path), which adds per-datagram loss and duplication through a [`Fate`]:
//! turmoil's `fail_rate` breaks whole links for a while instead.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Decides each outgoing datagram's fate: (dropped, sent twice).
pub(crate) type Fate = Box<dyn Fn() -> (bool, bool) + Send + Sync>;

/// A pending `turmoil::net::UdpSocket::readable()`.
type Readable = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A quinn socket over `turmoil::net::UdpSocket`: no GSO/GRO, ECN or backpressure.
pub(crate) struct TurmoilUdp {
    socket: Arc<turmoil::net::UdpSocket>,
    /// The pending `readable()` future of a receive that found nothing.
    readable: Mutex<Option<Readable>>,
    fate: Option<Fate>,
}

impl TurmoilUdp {
    /// Every datagram sent once, unless `fate` says otherwise.
    pub(crate) fn new(socket: turmoil::net::UdpSocket, fate: Option<Fate>) -> Self {
        Self {
            socket: Arc::new(socket),
            readable: Mutex::new(None),
            fate,
        }
    }
}

impl std::fmt::Debug for TurmoilUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurmoilUdp")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// turmoil's UDP never pushes back, so the socket is always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl quinn::UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl quinn::AsyncUdpSocket for TurmoilUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit<'_>) -> io::Result<()> {
        let (lose, twice) = self.fate.as_ref().map_or((false, false), |f| f());
        if lose {
            return Ok(());
        }
        let sent = self
            .socket
            .try_send_to(transmit.contents, transmit.destination);
        if twice {
            let _ = self
                .socket
                .try_send_to(transmit.contents, transmit.destination);
        }
        sent.map(drop)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.socket.try_recv_from(&mut bufs[0]) {
                Ok((len, addr)) => {
                    meta[0] = quinn::udp::RecvMeta::default();
                    meta[0].addr = addr;
                    meta[0].len = len;
                    meta[0].stride = len;
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut readable = self.readable.lock().unwrap();
            let future = readable.get_or_insert_with(|| {
                let socket = self.socket.clone();
                Box::pin(async move { socket.readable().await })
            });
            match future.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Ready (or failed): drop the future, which holds the socket's receive
                // lock, and try again.
                Poll::Ready(_) => *readable = None,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}
