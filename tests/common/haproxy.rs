//! HAProxy (Debian's package) in front of prism, as a balancer of a hosted service
//! runs it: TCP mode, a PROXY protocol v2 header on every connection to the
//! backends (`send-proxy-v2`), and optionally an HTTP health check of each
//! backend's `/healthz`. Started in the foreground on a free loopback port and
//! stopped by its PID.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::require;
use super::sinks::{on_path, pick_port};

/// One backend: a prism node's RTMP listener, and the HTTP listener whose
/// `/healthz` HAProxy checks (when given) to stop sending it new connections.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub rtmp: SocketAddr,
    pub health: Option<SocketAddr>,
}

/// A running HAProxy; stopped (SIGKILL by PID, then reaped) by [`Haproxy::stop`]
/// or when dropped.
pub struct Haproxy {
    child: Child,
    /// Where encoders and players connect.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Haproxy {
    /// Balances the RTMP port over `backends` (`leastconn`), sending each a PROXY
    /// v2 header; with `source`, HAProxy connects to the backends from that
    /// address, so that a backend can tell the balancer's address from the
    /// client's.
    pub async fn start(backends: &[Backend], source: Option<IpAddr>) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "haproxy-{}-{}",
            std::process::id(),
            pick_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let addr: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, pick_port()).into();
            let config = dir.join("haproxy.cfg");
            std::fs::write(&config, configuration(addr, backends, source)).unwrap();
            let mut child = Command::new(on_path("haproxy").unwrap_or_else(|| require("haproxy")))
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.join("stderr")).unwrap(),
                ))
                .kill_on_drop(true)
                .spawn()
                .expect("haproxy starts");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(addr).await.is_ok() {
                    return Self { child, addr, dir };
                }
                if child.try_wait().unwrap().is_some() || tokio::time::Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill().await;
        }
        let log = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
        panic!("haproxy did not start in 5 tries: {log}");
    }

    /// `rtmp://ADDR/<path>` through the balancer.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.addr)
    }

    /// Waits (bounded) until HAProxy has logged `part` on stderr, e.g. `node0 is
    /// DOWN` once a health check failed.
    pub async fn wait_log(&self, part: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
            if log.contains(part) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "haproxy never logged {part:?}: {log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills HAProxy by its PID and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The configuration: one TCP frontend on `addr`, one backend per prism node.
fn configuration(addr: SocketAddr, backends: &[Backend], source: Option<IpAddr>) -> String {
    let mut text = format!(
        "global\n    maxconn 2000\n\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 300s\n    \
         timeout server 300s\n\n\
         frontend rtmp\n    bind {addr}\n    default_backend prism\n\n\
         backend prism\n    balance leastconn\n"
    );
    if backends.iter().any(|b| b.health.is_some()) {
        text.push_str(
            "    option httpchk GET /healthz\n    http-check expect status 200\n    \
             default-server inter 300ms fastinter 300ms downinter 300ms fall 1 rise 1\n",
        );
    }
    for (i, backend) in backends.iter().enumerate() {
        write!(text, "    server node{i} {} send-proxy-v2", backend.rtmp).unwrap();
        if let Some(source) = source {
            write!(text, " source {source}").unwrap();
        }
        if let Some(health) = backend.health {
            write!(text, " check addr {} port {}", health.ip(), health.port()).unwrap();
        }
        text.push('\n');
    }
    text
}
