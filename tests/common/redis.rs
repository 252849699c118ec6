//! redis-server (Debian's package) as the cluster's registry: on a free loopback
//! port, nothing saved to disk, stopped (and restarted on the same port) by PID.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::require;
use super::sinks::pick_port;

/// A running redis-server.
pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts redis-server on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        for _ in 0..5 {
            let addr: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, pick_port()).into();
            let mut server = Self { child: None, addr };
            if server.launch().await {
                return server;
            }
        }
        panic!("redis-server could not bind a free port in 5 tries");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    async fn launch(&mut self) -> bool {
        let port = self.addr.port().to_string();
        let mut child = Command::new(require("redis-server"))
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(self.addr).await.is_ok() {
                self.child = Some(child);
                return true;
            }
            if child.try_wait().unwrap().is_some() || tokio::time::Instant::now() > deadline {
                let _ = child.kill().await;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills it (SIGKILL by PID) and reaps it: its data is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        assert!(
            self.launch().await,
            "redis-server restarts on {}",
            self.addr
        );
    }

    /// `redis-cli KEYS pattern`, sorted.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let out = Command::new(require("redis-cli"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.addr.port().to_string(),
                "--raw",
                "KEYS",
                pattern,
            ])
            .output()
            .await
            .unwrap();
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }

    pub async fn stop(mut self) {
        self.kill().await;
    }
}
