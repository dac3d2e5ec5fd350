//! ckptd's metrics endpoint (README.md, "Metrics"): nodes in this process serve the
//! Prometheus text format on loopback; scrapes over a plain TcpStream parse, count what
//! ckptd did, and a bad request or a non-loopback address is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ckpt_agent::{Checkpoint, CreationAttributes, CreationFlags, Library, OpenFlags, TIME_END};
use ckpt_tools::ckptd::{self, ClusterConfig, LocalCluster, MetricsConfig, StartError};

mod support;
use support::{library, retry};

const SECOND: i64 = 1_000_000_000;

/// A cluster file for `nodes` whose nodes all serve metrics on a free loopback port.
fn with_metrics(tag: &str, nodes: &[u32], two_node: bool) -> LocalCluster {
    let mut cluster = LocalCluster::create(tag, nodes, two_node, 600).expect("cluster files");
    for n in &mut cluster.config.nodes {
        n.metrics = Some(MetricsConfig {
            address: "127.0.0.1:0".parse().expect("address"),
            allow_remote: false,
        });
    }
    cluster
}

fn open_on(lib: &Library, name: &str, attrs: Option<&CreationAttributes>) -> Checkpoint {
    let flags = if attrs.is_some() {
        OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE
    } else {
        OpenFlags::READ | OpenFlags::WRITE
    };
    retry(|| lib.open(name, attrs, flags, 10 * SECOND)).expect("open")
}

/// Sends `request` as it is and reads the response until the server closes: (status,
/// head, body).
fn exchange(at: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(at).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.write_all(request).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(body.len(), length, "the whole body, as announced");
    (status, head.to_owned(), body.to_owned())
}

/// `GET /metrics`, parsed.
fn scrape(at: SocketAddr) -> Exposition {
    let (status, head, body) = exchange(at, b"GET /metrics HTTP/1.1\r\nHost: ckptd\r\n\r\n");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    Exposition::parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// One sample line: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed as the text format 0.0.4 says.
#[derive(Debug)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    /// Checks every line: `# HELP` and `# TYPE` once per family and before its samples,
    /// sample names and label names well formed, label values quoted and escaped, values
    /// numbers; and each sample's family has both a HELP and a TYPE.
    fn parse(text: &str) -> Result<Self, String> {
        if !text.ends_with('\n') {
            return Err("the text does not end with a line feed".into());
        }
        let mut help = BTreeSet::new();
        let mut types = BTreeMap::new();
        let mut sampled = BTreeSet::new();
        let mut samples = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest.split_once(' ').ok_or_else(|| bad("no help text"))?;
                if !metric_name(name) || doc.trim().is_empty() || !help.insert(name.to_owned()) {
                    return Err(bad("bad or repeated HELP"));
                }
                if sampled.contains(name) {
                    return Err(bad("HELP after the family's samples"));
                }
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or_else(|| bad("no type"))?;
                let known = ["counter", "gauge", "histogram", "summary", "untyped"];
                if !metric_name(name) || !known.contains(&kind) {
                    return Err(bad("bad TYPE"));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(bad("repeated TYPE"));
                }
                if sampled.contains(name) {
                    return Err(bad("TYPE after the family's samples"));
                }
            } else if line.starts_with('#') || line.is_empty() {
                continue;
            } else {
                let s = sample(line).map_err(|e| bad(&e))?;
                let family = family_of(&s.name, &types)
                    .ok_or_else(|| bad("a sample of a family without TYPE"))?;
                if !help.contains(&family) {
                    return Err(bad("a sample of a family without HELP"));
                }
                sampled.insert(family);
                samples.push(s);
            }
        }
        Ok(Self { samples, types })
    }

    /// The samples named `name` whose labels include `labels`.
    fn find<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> Vec<&'a Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .collect()
    }

    /// The value of the one sample named `name` with (at least) `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(found.len(), 1, "one {name} with {labels:?}: {found:?}");
        found[0].value
    }
}

fn metric_name(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The family a sample belongs to: its own name, or a histogram's or summary's for the
/// `_bucket`, `_sum` and `_count` series.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(types.get(base)?.as_str(), "histogram" | "summary").then(|| base.to_owned())
    })
}

/// Parses `name{k="v",…} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ']).ok_or("no value after the name")?;
    let name = &line[..end];
    if !metric_name(name) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(mut l) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = l.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = l.split_once("=\"").ok_or("a label without =\"")?;
            if !label_name(key) {
                return Err(format!("bad label name {key:?}"));
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next().ok_or("an unterminated label value")? {
                    (_, '\\') => match chars.next().ok_or("a dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (at, '"') => break at,
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("repeated label {key}"));
            }
            l = &after[close + 1..];
            if let Some(next) = l.strip_prefix(',') {
                l = next;
            } else if !l.starts_with('}') {
                return Err("labels not separated by commas".into());
            }
        }
    }
    let mut words = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = match words.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = words.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if words.next().is_some() {
        return Err("more than a value and a timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn replicated() -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA,
        checkpoint_size: 16 * 4096,
        retention_duration: 10 * SECOND,
        max_sections: 16,
        max_section_size: 4096,
        max_section_id_size: 16,
    }
}

#[test]
fn scrapes_parse_and_count_writes_synchronizes_lag_and_the_leader() {
    let cluster = with_metrics("metrics", &[1, 2], true);
    let n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    let n2 = ckptd::spawn(cluster.config.clone(), 2).expect("node 2");
    let at1 = n1.metrics.expect("node 1 serves metrics");
    let at2 = n2.metrics.expect("node 2 serves metrics");
    assert!(at1.ip().is_loopback() && at1.port() != 0, "{at1}");

    // Created on node 1: node 1's replica is the primary, node 2 holds the other one.
    let lib1 = library(&cluster, 1);
    let lib2 = library(&cluster, 2);
    let on1 = open_on(&lib1, "safCkpt=metrics", Some(&replicated()));
    let on2 = open_on(&lib2, "safCkpt=metrics", None);
    let instance = on1.instance().to_string();
    let ck = [("instance", instance.as_str()), ("name", "safCkpt=metrics")];

    // A direct write on the primary's node: shared memory only, ckptd does not see it,
    // but its replica's journal head moves.
    on1.create_section(Some(b"direct"), TIME_END, b"on node 1")
        .expect("direct write");
    let before = scrape(at1);
    let direct_seq = before.value("ckptd_replica_commit_seq", &ck);
    assert!(direct_seq >= 1.0, "the direct write is in the journal");
    assert!(
        before
            .find("ckptd_writes_total", &ck)
            .iter()
            .all(|s| s.value == 0.0),
        "no write went through ckptd yet: {:?}",
        before.find("ckptd_writes_total", &[])
    );

    // Writes from node 2 go to node 1's daemon: 2 + 10 + 2 bytes of section data.
    retry(|| on2.create_section(Some(b"k"), TIME_END, b"v1")).expect("create from node 2");
    on2.overwrite(b"k", b"0123456789")
        .expect("overwrite from node 2");
    on2.write(&[ckpt_agent::WriteElement {
        section_id: b"k",
        offset: 4,
        data: b"xy",
    }])
    .expect("write from node 2");
    on2.synchronize(10 * SECOND)
        .expect("synchronize from node 2");

    let m1 = scrape(at1);
    let m2 = scrape(at2);
    for m in [&m1, &m2] {
        for family in ["ckptd_writes_total", "ckptd_replication_lag_seq"] {
            assert!(m.types.contains_key(family), "{family} is always described");
        }
    }
    assert_eq!(
        m1.value("ckptd_writes_total", &ck),
        3.0,
        "three writes via ckptd"
    );
    assert_eq!(m1.value("ckptd_write_bytes_total", &ck), 14.0);
    assert!(
        m2.find("ckptd_writes_total", &ck)
            .iter()
            .all(|s| s.value == 0.0),
        "node 2 forwarded them: it applied none"
    );
    assert!(
        m1.value("ckptd_replica_commit_seq", &ck) >= direct_seq + 3.0,
        "the journal head moved with the three writes"
    );
    assert!(
        m2.value("ckptd_replica_commit_seq", &ck) >= 1.0,
        "node 2's replica applied them"
    );

    // The synchronize was served by node 1's daemon.
    let sync = "ckptd_synchronize_duration_seconds";
    let count = m1.value(&format!("{sync}_count"), &[]);
    assert!(count >= 1.0, "the synchronize is in the histogram");
    assert_eq!(
        m1.value(&format!("{sync}_bucket"), &[("le", "+Inf")]),
        count
    );
    let buckets: Vec<f64> = m1
        .find(&format!("{sync}_bucket"), &[])
        .iter()
        .map(|s| s.value)
        .collect();
    assert!(buckets.len() >= 10, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert!(m1.value(&format!("{sync}_sum"), &[]) >= 0.0);

    // Lag, per replica, on the primary's node only: nothing left after the synchronize.
    let to2 = [ck[0], ck[1], ("node", "2")];
    assert_eq!(m1.value("ckptd_replication_lag_seq", &to2), 0.0);
    assert_eq!(m1.value("ckptd_replication_lag_bytes", &to2), 0.0);
    assert_eq!(m1.value("ckptd_replication_connected", &to2), 1.0);
    assert!(
        m2.find("ckptd_replication_lag_seq", &ck).is_empty(),
        "node 2 is not the primary"
    );
    // Node 2's new replica was brought up by a snapshot of node 1's.
    let started = m2.value("ckptd_resyncs_started_total", &ck);
    let finished = m2.value("ckptd_resyncs_finished_total", &ck);
    assert!(
        finished >= 1.0 && started >= finished,
        "resyncs: {started} started, {finished} finished"
    );
    assert_eq!(m1.value("ckptd_resyncs_started_total", &ck), 0.0);
    assert_eq!(m1.value("ckptd_checkpoints_primary", &[]), 1.0);
    assert_eq!(m2.value("ckptd_checkpoints_primary", &[]), 0.0);
    assert_eq!(m2.value("ckptd_checkpoints_held", &[]), 1.0);

    // One leader; both nodes see each other and their agent.
    let leaders: Vec<f64> = [&m1, &m2]
        .iter()
        .map(|m| m.value("ckptd_directory_leader", &[]))
        .collect();
    assert!(
        leaders == [1.0, 0.0] || leaders == [0.0, 1.0],
        "exactly one leader: {leaders:?}"
    );
    for m in [&m1, &m2] {
        assert_eq!(m.value("ckptd_peers_connected", &[]), 1.0);
        assert!(m.value("ckptd_agent_sessions", &[]) >= 1.0);
        assert!(m.value("ckptd_directory_term", &[]) >= 1.0);
    }
}

#[test]
fn bad_requests_are_refused_and_a_slow_client_is_cut_off() {
    let cluster = with_metrics("metrics-http", &[1], false);
    let n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    let at = n1.metrics.expect("node 1 serves metrics");

    assert_eq!(exchange(at, b"GARBAGE\r\n\r\n").0, 400);
    assert_eq!(exchange(at, b"GET /metrics HTTP/2.0\r\n\r\n").0, 400);
    assert_eq!(exchange(at, b"GET /nope HTTP/1.1\r\n\r\n").0, 404);
    let (status, head, _) = exchange(at, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 405);
    assert!(head.contains("Allow: GET"), "{head}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.resize(16 * 1024, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(exchange(at, &huge).0, 400, "a head over the size bound");

    // A client that trickles its request is cut off at the read deadline, however
    // often it sends a byte; meanwhile others are served.
    let mut slow = TcpStream::connect(at).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let start = Instant::now();
    let mut closed = false;
    let mut served_meanwhile = false;
    while start.elapsed() < Duration::from_secs(6) {
        if slow.write_all(b"G").is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 64];
        match slow.read(&mut b) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("an answer to a request that never ended"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true; // reset
                break;
            }
        }
        if !served_meanwhile {
            let m = scrape(at);
            assert_eq!(m.value("ckptd_checkpoints_held", &[]), 0.0);
            served_meanwhile = true;
        }
    }
    assert!(closed, "a trickling client is cut off");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "after its read deadline, not at once: {:?}",
        start.elapsed()
    );
}

#[test]
fn a_metrics_address_off_loopback_is_refused() {
    let cluster = LocalCluster::create("metrics-remote", &[1], false, 600).expect("files");
    let text = std::fs::read_to_string(&cluster.config_path).expect("cluster file");
    assert!(text.contains("id = 1\n"), "{text}");

    // In the cluster file: refused with the node, the reason and the way out.
    let remote = text.replace("id = 1\n", "id = 1\nmetrics = \"0.0.0.0:9464\"\n");
    let e = ClusterConfig::parse(&remote, cluster.root())
        .expect_err("0.0.0.0 is not loopback")
        .to_string();
    for want in [
        "node 1",
        "0.0.0.0:9464",
        "loopback",
        "metrics_allow_remote = true",
    ] {
        assert!(e.contains(want), "{want:?} in {e:?}");
    }
    let allowed = remote.replace("id = 1\n", "id = 1\nmetrics_allow_remote = true\n");
    let c = ClusterConfig::parse(&allowed, cluster.root()).expect("explicitly allowed");
    let m = c.nodes[0].metrics.expect("metrics configured");
    assert_eq!((m.address.port(), m.allow_remote), (9464, true));
    let local = text.replace("id = 1\n", "id = 1\nmetrics = \"127.0.0.1:9464\"\n");
    assert!(ClusterConfig::parse(&local, cluster.root()).is_ok());

    // A configuration built in code is checked when the node starts.
    let mut config = cluster.config.clone();
    config.nodes[0].metrics = Some(MetricsConfig {
        address: "192.0.2.1:9464".parse().expect("address"),
        allow_remote: false,
    });
    match ckptd::spawn(config, 1) {
        Err(e @ StartError::Config(_)) => {
            assert!(e.to_string().contains("loopback"), "{e}");
        }
        other => panic!("a non-loopback metrics address started: {other:?}"),
    }

    // Without the key there is no endpoint.
    let n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    assert_eq!(n1.metrics, None);
}

#[test]
fn a_library_dropped_ends_its_session_with_ckptd() {
    let cluster = with_metrics("sessions", &[1, 2], true);
    let n1 = ckptd::spawn(cluster.config.clone(), 1).expect("node 1");
    let _n2 = ckptd::spawn(cluster.config.clone(), 2).expect("node 2");
    let at1 = n1.metrics.expect("node 1 serves metrics");
    let sessions = || scrape(at1).value("ckptd_agent_sessions", &[]);

    let keep = library(&cluster, 1);
    let lib = library(&cluster, 1);
    let ck = open_on(&lib, "safCkpt=sessions", Some(&replicated()));
    ck.create_section(Some(b"s"), TIME_END, b"x")
        .expect("write");
    let _ = retry(|| keep.open("safCkpt=sessions", None, OpenFlags::READ, 10 * SECOND))
        .expect("a second session opens it too");
    assert_eq!(sessions(), 2.0, "both libraries have a session");

    drop(ck);
    drop(lib);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions() != 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        sessions(),
        1.0,
        "the dropped library's session ended; the other one stays"
    );
}
