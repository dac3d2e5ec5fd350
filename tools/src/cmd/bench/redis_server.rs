//! A Redis server as a peer: Debian's `redis-server`, started by the benchmark on a free
//! loopback port with persistence off (`--save "" --appendonly no`), and stopped when the
//! [`RedisServer`] drops (also on an error path; Ctrl-C kills it through
//! [`super::interrupt`]). The client is the `redis` crate's synchronous connection: one
//! client, one command at a time, no pipelining.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::interrupt;

/// How long the server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server` child.
#[derive(Debug)]
pub(super) struct RedisServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// Why the server is not there.
#[derive(Debug)]
pub(super) enum StartError {
    /// `redis-server` is not on the PATH.
    NotInstalled,
    /// It started but did not come up.
    Failed(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotInstalled => {
                f.write_str("redis-server not installed (Debian: apt-get install redis-server)")
            }
            Self::Failed(why) => write!(f, "redis-server did not start: {why}"),
        }
    }
}

impl RedisServer {
    /// Starts `redis-server` with its working directory and log in `dir` (made here), on
    /// a free port of 127.0.0.1, and waits until it answers.
    pub(super) fn start(dir: &Path) -> Result<Self, StartError> {
        std::fs::create_dir_all(dir).map_err(|e| StartError::Failed(e.to_string()))?;
        let mut last = String::new();
        // Another process may take the port between our probe and the server's bind.
        for _ in 0..3 {
            let port = free_port().map_err(|e| StartError::Failed(e.to_string()))?;
            let log = dir.join(format!("redis-{port}.log"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--protected-mode", "yes", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir)
                .arg("--logfile")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StartError::NotInstalled);
                }
                Err(e) => return Err(StartError::Failed(e.to_string())),
            };
            interrupt::register_child(child.id());
            let mut server = Self { child, port, log };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(StartError::Failed(last))
    }

    /// Polls PING until the server answers, it exits, or [`START_TIMEOUT`].
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited ({status}): {}", self.log_tail()));
            }
            if let Ok(mut con) = self.connect() {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query(&mut con);
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "no answer on port {} within {} s: {}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the server's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// The loopback port.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// A new client connection (TCP, RESP2).
    pub(super) fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        client.get_connection_with_timeout(Duration::from_secs(5))
    }

    /// `redis_version` from `INFO server`.
    pub(super) fn version(&self) -> Option<String> {
        let mut con = self.connect().ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        interrupt::forget_child(self.child.id());
    }
}

/// A TCP port of 127.0.0.1 that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_answers_a_set_and_stops_on_drop() {
        let domain = ckpt_bench::BenchDomain::new().unwrap();
        let sut = match RedisServer::start(&domain.path().join("redis")) {
            Ok(s) => s,
            Err(StartError::NotInstalled) => {
                eprintln!("SKIPPED: redis-server not installed");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let mut con = sut.connect().unwrap();
        redis::cmd("SET")
            .arg("k")
            .arg(&[1u8, 2, 3][..])
            .exec(&mut con)
            .unwrap();
        let back: Vec<u8> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
        assert_eq!(back, [1, 2, 3]);
        assert!(sut.version().is_some());
        let port = sut.port();
        drop(con);
        drop(sut);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
