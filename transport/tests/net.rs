//! The QUIC peer mesh over loopback UDP (and one run over turmoil's simulated network):
//! identity checks, frame delivery and order, loss and return of a peer.

#![cfg(feature = "net")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ckpt_transport::net::{Mesh, MeshConfig, MeshError, MeshEvent, MeshHandle, MeshSocket};
use ckpt_transport::tls::{self, CaRoots, ClusterCa, NodeMaterial};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// How long any expected event may take; generous, since speed is measured elsewhere.
const PATIENCE: Duration = Duration::from_secs(10);

/// How long to watch for something that must not happen: several redial rounds.
const WATCH: Duration = Duration::from_secs(3);

/// Frame kind used by these tests (the driver does not look at it).
const KIND: u8 = 0x7f;

/// One CA and certificates for some nodes.
struct Certs {
    roots: CaRoots,
    nodes: BTreeMap<u32, NodeMaterial>,
    ca: ClusterCa,
}

impl Certs {
    fn new(nodes: &[u32]) -> Self {
        let ca = tls::generate_ca().unwrap();
        let nodes = nodes
            .iter()
            .map(|&n| (n, tls::issue_node_cert(&ca, n).unwrap()))
            .collect();
        Self {
            roots: ca.roots().unwrap(),
            nodes,
            ca,
        }
    }

    fn config(&self, node: u32, peers: &BTreeMap<u32, SocketAddr>) -> MeshConfig {
        let identity = self.nodes[&node].identity().unwrap();
        MeshConfig::new(identity, self.roots.clone(), peers.clone())
    }
}

/// A running mesh and every event it reported so far.
struct Node {
    id: u32,
    handle: MeshHandle,
    events: UnboundedReceiver<MeshEvent>,
    seen: Vec<MeshEvent>,
}

impl Node {
    async fn start(config: MeshConfig, socket: MeshSocket) -> Self {
        let id = config.node;
        let (handle, events) = Mesh::start(config, socket).await.unwrap();
        Self {
            id,
            handle,
            events,
            seen: Vec::new(),
        }
    }

    /// Collects events until `done` holds for them; panics after [`PATIENCE`].
    async fn until(&mut self, what: &str, done: impl Fn(&[MeshEvent]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.seen.push(event),
                Ok(None) => panic!(
                    "node {}: events ended before {what}: {}",
                    self.id,
                    self.log()
                ),
                Err(_) => panic!(
                    "node {}: no {what} within {PATIENCE:?}: {}",
                    self.id,
                    self.log()
                ),
            }
        }
    }

    async fn until_up(&mut self, peer: u32) {
        let up = MeshEvent::PeerUp(peer);
        self.until(&format!("PeerUp({peer})"), |seen| seen.contains(&up))
            .await;
    }

    /// Collects events for `time`.
    async fn watch(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            self.seen.push(event);
        }
    }

    /// The events so far, frames shortened to their length.
    fn log(&self) -> String {
        let mut out = String::new();
        for event in &self.seen {
            match event {
                MeshEvent::Frame(from, body) => write!(out, "Frame({from}, {} B) ", body.len()),
                other => write!(out, "{other:?} "),
            }
            .unwrap();
        }
        out
    }

    fn frames_from(&self, peer: u32) -> Vec<&Bytes> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                MeshEvent::Frame(from, body) if *from == peer => Some(body),
                _ => None,
            })
            .collect()
    }

    fn saw_anything_of(&self, peer: u32) -> bool {
        self.seen.iter().any(|e| match e {
            MeshEvent::PeerUp(n) | MeshEvent::PeerDown(n) | MeshEvent::Frame(n, _) => *n == peer,
        })
    }
}

/// Binds `n` loopback UDP sockets, so every node's address is known before any starts.
fn sockets(n: usize) -> (Vec<UdpSocket>, Vec<SocketAddr>) {
    let socks: Vec<_> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    (socks, addrs)
}

/// A test frame: kind, sender, sequence number, then `pad` filler bytes.
fn frame(from: u32, seq: u32, pad: usize) -> Bytes {
    let mut body = vec![KIND];
    body.extend_from_slice(&from.to_le_bytes());
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend((0..pad).map(|i| (i % 251) as u8));
    Bytes::from(body)
}

/// Padding of frame `seq`: mostly small, with a few large frames split over many packets.
fn pad_of(seq: u32) -> usize {
    if seq % 50 == 7 {
        300_000
    } else {
        (seq as usize * 37) % 2000
    }
}

#[tokio::test]
async fn three_nodes_exchange_frames_in_order_both_ways() {
    const FRAMES: u32 = 200;
    let certs = Certs::new(&[1, 2, 3]);
    let (socks, addrs) = sockets(3);
    let all: BTreeMap<u32, SocketAddr> = (1..=3).zip(addrs).collect();
    let mut nodes = Vec::new();
    for (id, sock) in (1..=3).zip(socks) {
        // Every node's peer map holds the whole cluster: its own entry is ignored.
        nodes.push(Node::start(certs.config(id, &all), MeshSocket::Udp(sock)).await);
    }
    for node in &mut nodes {
        let me = node.id;
        for peer in (1..=3).filter(|&p| p != me) {
            node.until_up(peer).await;
        }
    }
    for node in &nodes {
        for peer in (1..=3).filter(|&p| p != node.id) {
            for seq in 0..FRAMES {
                assert!(node.handle.send(peer, frame(node.id, seq, pad_of(seq))));
            }
        }
    }
    for node in &mut nodes {
        let me = node.id;
        node.until("every frame", |seen| {
            let frames = seen
                .iter()
                .filter(|e| matches!(e, MeshEvent::Frame(..)))
                .count();
            frames == 2 * FRAMES as usize
        })
        .await;
        for peer in (1..=3).filter(|&p| p != me) {
            let got = node.frames_from(peer);
            assert_eq!(got.len(), FRAMES as usize, "node {me} from {peer}");
            for (seq, body) in (0..FRAMES).zip(got) {
                assert_eq!(
                    *body,
                    frame(peer, seq, pad_of(seq)),
                    "node {me} from {peer} #{seq}"
                );
            }
        }
        assert!(
            !node
                .seen
                .iter()
                .any(|e| matches!(e, MeshEvent::PeerDown(_))),
            "{}",
            node.log()
        );
    }
    for node in &nodes {
        node.handle.shutdown().await;
    }
}

#[tokio::test]
async fn node_with_a_foreign_ca_certificate_never_gets_peer_up_and_its_frames_are_never_delivered()
{
    let certs = Certs::new(&[1, 2]);
    let foreign = Certs::new(&[3]);
    let (mut socks, addrs) = sockets(3);
    let all: BTreeMap<u32, SocketAddr> = (1..=3).zip(addrs).collect();
    let mut intruder_config = foreign.config(3, &all);
    // It even trusts the cluster CA (whose certificate is no secret).
    intruder_config.roots = certs.roots.clone();
    let mut intruder = Node::start(intruder_config, MeshSocket::Udp(socks.pop().unwrap())).await;
    let mut n2 = Node::start(certs.config(2, &all), MeshSocket::Udp(socks.pop().unwrap())).await;
    let mut n1 = Node::start(certs.config(1, &all), MeshSocket::Udp(socks.pop().unwrap())).await;
    n1.until_up(2).await;
    n2.until_up(1).await;

    let deadline = Instant::now() + WATCH;
    while Instant::now() < deadline {
        for peer in [1, 2] {
            assert!(
                !intruder.handle.send(peer, frame(3, 0, 10)),
                "{}",
                intruder.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(n1.handle.send(2, frame(1, 0, 10)));
    n2.until("the frame from node 1", |seen| {
        seen.iter().any(|e| matches!(e, MeshEvent::Frame(1, _)))
    })
    .await;
    n1.watch(Duration::ZERO).await;
    intruder.watch(Duration::ZERO).await;
    assert!(!n1.saw_anything_of(3), "{}", n1.log());
    assert!(!n2.saw_anything_of(3), "{}", n2.log());
    assert!(intruder.seen.is_empty(), "{}", intruder.log());
    for node in [&n1, &n2, &intruder] {
        node.handle.shutdown().await;
    }
}

#[tokio::test]
async fn node_presenting_node_2_certificate_where_node_3_is_expected_is_refused() {
    let certs = Certs::new(&[1, 2]);
    let (mut socks, addrs) = sockets(2);
    let (addr1, impostor_addr) = (addrs[0], addrs[1]);
    // Node 1 believes node 3 lives where the holder of node 2's certificate listens.
    let n1_peers = BTreeMap::from([(3, impostor_addr)]);
    let impostor_peers = BTreeMap::from([(1, addr1)]);
    let mut impostor = Node::start(
        certs.config(2, &impostor_peers),
        MeshSocket::Udp(socks.pop().unwrap()),
    )
    .await;
    let mut n1 = Node::start(
        certs.config(1, &n1_peers),
        MeshSocket::Udp(socks.pop().unwrap()),
    )
    .await;

    let deadline = Instant::now() + WATCH;
    while Instant::now() < deadline {
        assert!(!n1.handle.send(3, frame(1, 0, 10)));
        assert!(!impostor.handle.send(1, frame(2, 0, 10)));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    n1.watch(Duration::ZERO).await;
    impostor.watch(Duration::ZERO).await;
    // Node 1's dial fails the server-name check, and node 1 refuses node 2 (not its peer).
    assert!(n1.seen.is_empty(), "{}", n1.log());
    assert!(impostor.seen.is_empty(), "{}", impostor.log());

    // Control: a node 1 that expects node 2 at that address reaches it.
    let (mut socks, _) = sockets(1);
    let control_peers = BTreeMap::from([(2, impostor_addr)]);
    let control_sock = MeshSocket::Udp(socks.pop().unwrap());
    let mut control = Node::start(certs.config(1, &control_peers), control_sock).await;
    control.until_up(2).await;
    control.handle.shutdown().await;
    n1.handle.shutdown().await;
    impostor.handle.shutdown().await;
}

#[tokio::test]
async fn mesh_does_not_start_with_the_certificate_of_another_node() {
    let certs = Certs::new(&[2]);
    let mut config = certs.config(2, &BTreeMap::new());
    config.node = 3;
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let err = Mesh::start(config, MeshSocket::Bind(loopback))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            MeshError::IdentityMismatch {
                identity: 2,
                config: 3
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn shut_down_peer_yields_peer_down_and_peer_up_again_after_restart_on_the_same_address() {
    let certs = Certs::new(&[1, 2]);
    let (mut socks, addrs) = sockets(2);
    let all: BTreeMap<u32, SocketAddr> = (1..=2).zip(addrs.clone()).collect();
    let mut n2 = Node::start(certs.config(2, &all), MeshSocket::Udp(socks.pop().unwrap())).await;
    let mut n1 = Node::start(certs.config(1, &all), MeshSocket::Udp(socks.pop().unwrap())).await;
    n1.until_up(2).await;
    n2.until_up(1).await;

    n2.handle.shutdown().await;
    drop(n2);
    n1.until("PeerDown(2)", |seen| seen.contains(&MeshEvent::PeerDown(2)))
        .await;
    assert!(!n1.handle.send(2, frame(1, 0, 10)));

    // The old endpoint releases its socket once its tasks are gone; retry the bind.
    let deadline = Instant::now() + PATIENCE;
    let sock = loop {
        match UdpSocket::bind(addrs[1]) {
            Ok(sock) => break sock,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebinding {}: {e}", addrs[1]);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot rebind {}: {e}", addrs[1]),
        }
    };
    let mut n2 = Node::start(certs.config(2, &all), MeshSocket::Udp(sock)).await;
    let ups = |seen: &[MeshEvent]| seen.iter().filter(|e| **e == MeshEvent::PeerUp(2)).count();
    n1.until("PeerUp(2) again", |seen| ups(seen) == 2).await;
    n2.until_up(1).await;
    assert!(n1.handle.send(2, frame(1, 1, 10)));
    assert!(n2.handle.send(1, frame(2, 1, 10)));
    n2.until("a frame from 1", |seen| {
        seen.contains(&MeshEvent::Frame(1, frame(1, 1, 10)))
    })
    .await;
    n1.until("a frame from 2", |seen| {
        seen.contains(&MeshEvent::Frame(2, frame(2, 1, 10)))
    })
    .await;
    n1.handle.shutdown().await;
    n2.handle.shutdown().await;
}

#[tokio::test]
async fn bad_length_prefix_closes_the_connection_without_crashing_the_receiver() {
    const MAX_FRAME: usize = 4096;
    let certs = Certs::new(&[1, 2]);
    let (mut socks, addrs) = sockets(2);
    let all: BTreeMap<u32, SocketAddr> = (1..=2).zip(addrs.clone()).collect();
    let mut config = certs.config(1, &all);
    config.max_frame = MAX_FRAME;
    let raw_sock = socks.pop().unwrap();
    let mut n1 = Node::start(config, MeshSocket::Udp(socks.pop().unwrap())).await;

    // A hand-driven node 2 with a valid certificate that writes raw bytes.
    let identity = certs.nodes[&2].identity().unwrap();
    let settings = tls::TransportSettings::default();
    let client = tls::quinn_client_config(&identity, &certs.roots, &settings).unwrap();
    let runtime = Arc::new(quinn::TokioRuntime);
    let raw =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), None, raw_sock, runtime).unwrap();
    let dial = async || {
        let conn = raw
            .connect_with(client.clone(), addrs[0], &tls::server_name(1))
            .unwrap();
        let conn = conn.await.unwrap();
        let stream = tokio::time::timeout(PATIENCE, conn.open_uni())
            .await
            .unwrap()
            .unwrap();
        (conn, stream)
    };

    let too_long = u32::try_from(MAX_FRAME + 1).unwrap();
    for bad in [too_long, 0, u32::MAX] {
        let (conn, mut stream) = dial().await;
        // A good frame first: it is delivered; the bad length then closes the connection.
        let mut bytes = 9u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&frame(2, bad, 0));
        bytes.extend_from_slice(&bad.to_le_bytes());
        bytes.extend_from_slice(&[KIND; 64]);
        stream.write_all(&bytes).await.unwrap();
        let closed = tokio::time::timeout(PATIENCE, conn.closed()).await.unwrap();
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, quinn::VarInt::from_u32(2), "{close}");
            }
            other => panic!("length {bad}: connection ended with {other}"),
        }
        let good = MeshEvent::Frame(2, frame(2, bad, 0));
        n1.until("the good frame", |seen| seen.contains(&good))
            .await;
    }

    // The receiver still serves: a well-formed stream on a new connection is delivered,
    // including a frame of exactly `max_frame` bytes.
    let (_conn, mut stream) = dial().await;
    let big = frame(2, 1, MAX_FRAME - 9);
    let mut bytes = u32::try_from(big.len()).unwrap().to_le_bytes().to_vec();
    bytes.extend_from_slice(&big);
    stream.write_all(&bytes).await.unwrap();
    let expected = MeshEvent::Frame(2, big);
    n1.until("the max_frame frame", |seen| seen.contains(&expected))
        .await;
    assert_eq!(n1.frames_from(2).len(), 4);
    n1.handle.shutdown().await;
    raw.close(quinn::VarInt::from_u32(0), b"done");
}

#[test]
fn node_id_from_cert_round_trips_and_rejects_a_certificate_with_another_name() {
    let certs = Certs::new(&[0, 1, 4_294_967_295]);
    for (&node, material) in &certs.nodes {
        let identity = material.identity().unwrap();
        assert_eq!(
            tls::node_id_from_cert(&identity.cert_chain()[0]),
            Some(node)
        );
    }

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(certs.ca.cert_pem(), {
        rcgen::KeyPair::from_pem(&certs.ca.key_pem()).unwrap()
    })
    .unwrap();
    for sans in [
        vec!["node-5.example".to_owned()],
        vec!["node-5.ckpt".to_owned(), "localhost".to_owned()],
        vec!["node-x.ckpt".to_owned()],
    ] {
        let params = rcgen::CertificateParams::new(sans.clone()).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        assert_eq!(tls::node_id_from_cert(cert.der()), None, "{sans:?}");
    }
}

#[path = "support/turmoil_udp.rs"]
mod turmoil_udp;

/// quinn over turmoil's simulated UDP (reliability.md §2.1).
mod sim {
    use super::*;

    use super::turmoil_udp::TurmoilUdp;

    const PORT: u16 = 4433;
    const FRAMES: u32 = 100;

    async fn start(config: MeshConfig, seed: u8) -> (MeshHandle, UnboundedReceiver<MeshEvent>) {
        let bind = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT));
        let socket = turmoil::net::UdpSocket::bind(bind).await.unwrap();
        let socket = Arc::new(TurmoilUdp::new(socket, None));
        let socket = MeshSocket::Abstract {
            socket,
            runtime: Arc::new(quinn::TokioRuntime),
            rng_seed: Some([seed; 32]),
            tls_provider: None,
        };
        Mesh::start(config, socket).await.unwrap()
    }

    fn peer(host: &str) -> SocketAddr {
        SocketAddr::new(turmoil::lookup(host), PORT)
    }

    /// Adds node 2 to `sim`: it echoes every frame back to its sender.
    fn echo_host(sim: &mut turmoil::Sim<'_>, certs: &Arc<Certs>) {
        let certs = certs.clone();
        sim.host("node2", move || {
            let certs = certs.clone();
            async move {
                let config = certs.config(2, &BTreeMap::from([(1, peer("node1"))]));
                let (mesh, mut events) = start(config, 2).await;
                // Frames can arrive before our own connection to node 1 is up: hold them.
                let mut held = Vec::new();
                while let Some(event) = events.recv().await {
                    match event {
                        MeshEvent::Frame(from, body) if mesh.is_up(from) => {
                            assert!(mesh.send(from, body), "echo to {from}");
                        }
                        MeshEvent::Frame(from, body) => held.push((from, body)),
                        MeshEvent::PeerUp(to) => {
                            for (from, body) in held.drain(..) {
                                assert!(mesh.send(from, body), "echo to {from} (now {to} is up)");
                            }
                        }
                        MeshEvent::PeerDown(_) => {}
                    }
                }
                Ok(())
            }
        });
    }

    #[test]
    fn two_simulated_hosts_exchange_frames_over_the_mesh() {
        let certs = Arc::new(Certs::new(&[1, 2]));
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(120))
            .rng_seed(7)
            .build();
        echo_host(&mut sim, &certs);

        // Node 1 sends, then waits for every echo, in order.
        sim.client("node1", async move {
            let config = certs.config(1, &BTreeMap::from([(2, peer("node2"))]));
            let (mesh, mut events) = start(config, 1).await;
            let mut echoes = 0;
            while let Some(event) = events.recv().await {
                match event {
                    MeshEvent::PeerUp(2) => {
                        for seq in 0..FRAMES {
                            assert!(mesh.send(2, frame(1, seq, pad_of(seq))));
                        }
                    }
                    MeshEvent::Frame(2, body) => {
                        assert_eq!(body, frame(1, echoes, pad_of(echoes)), "echo {echoes}");
                        echoes += 1;
                        if echoes == FRAMES {
                            break;
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(echoes, FRAMES);
            mesh.shutdown().await;
            Ok(())
        });
        sim.run().unwrap();
        eprintln!("simulated time: {:?}", sim.elapsed());
    }

    #[test]
    fn crashed_simulated_host_is_down_within_the_idle_timeout_and_up_after_it_restarts() {
        let certs = Arc::new(Certs::new(&[1, 2]));
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(120))
            .rng_seed(11)
            .build();
        echo_host(&mut sim, &certs);

        // Node 1 records its events and, after each PeerUp, checks the link with an echo.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        sim.client("node1", async move {
            let config = certs.config(1, &BTreeMap::from([(2, peer("node2"))]));
            let (mesh, mut events) = start(config, 1).await;
            let mut echoes = 0;
            while let Some(event) = events.recv().await {
                log.lock().unwrap().push(event.clone());
                match event {
                    MeshEvent::PeerUp(2) => assert!(mesh.send(2, frame(1, 0, 10))),
                    MeshEvent::Frame(2, _) => {
                        echoes += 1;
                        if echoes == 2 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            mesh.shutdown().await;
            Ok(())
        });
        let has = |event: &MeshEvent| seen.lock().unwrap().contains(event);

        while !has(&MeshEvent::Frame(2, frame(1, 0, 10))) {
            assert!(
                !sim.step().unwrap(),
                "node 1 ended early: {:?}",
                seen.lock().unwrap()
            );
        }
        sim.crash("node2");
        let crashed = sim.elapsed();
        while !has(&MeshEvent::PeerDown(2)) {
            assert!(!sim.step().unwrap());
        }
        // Simulated time is deterministic: the idle timeout (1 s) plus a keep-alive at most.
        let noticed = sim.elapsed() - crashed;
        eprintln!("PeerDown {noticed:?} after the crash (simulated)");
        assert!(
            noticed <= Duration::from_millis(1500),
            "PeerDown after {noticed:?}"
        );
        sim.bounce("node2");
        while !sim.step().unwrap() {}
        let seen = seen.lock().unwrap();
        let ups = seen.iter().filter(|e| **e == MeshEvent::PeerUp(2)).count();
        assert_eq!(ups, 2, "{seen:?}");
    }
}
