//! prism as a child process, for tests that measure it apart from the test's own
//! clients (memory, log volume) or drive it as an operator would.

use std::time::Duration;

use super::CHILD_TIMEOUT;

/// prism as a child process (`prism serve --config FILE`), so that its memory is
/// measured apart from the test's own clients. Its log lines are kept for waiting
/// on; it is killed on drop if the test fails before [`ChildPrism::stop`].
pub struct ChildPrism {
    pub child: tokio::process::Child,
    pub rtmp: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl ChildPrism {
    pub async fn start(tag: &str, config: &str) -> Self {
        Self::start_with_env(tag, config, &[]).await
    }

    /// Like [`Self::start`], with these environment variables set for prism.
    pub async fn start_with_env(tag: &str, config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(tag, config, env, std::net::Ipv4Addr::LOCALHOST).await
    }

    /// Like [`Self::start_with_env`], listening for RTMP and HTTP on `ip` (port 0):
    /// nodes of one test on 127.0.0.2, .3, .4 tell each other apart by address.
    pub async fn start_on(
        tag: &str,
        config: &str,
        env: &[(&str, &str)],
        ip: std::net::Ipv4Addr,
    ) -> Self {
        let any = std::net::SocketAddr::from((ip, 0));
        Self::start_at(tag, config, env, any, any).await
    }

    /// Like [`Self::start_with_env`], listening for RTMP and HTTP on these
    /// addresses: a node restarted on the same ports is the same backend to a
    /// balancer.
    pub async fn start_at(
        tag: &str,
        config: &str,
        env: &[(&str, &str)],
        rtmp: std::net::SocketAddr,
        http: std::net::SocketAddr,
    ) -> Self {
        use tokio::io::AsyncBufReadExt;
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hostile-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prism.toml");
        std::fs::write(&path, config).unwrap();
        let (rtmp, http) = (rtmp.to_string(), http.to_string());
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["serve", "--rtmp", &rtmp, "--http", &http])
            .arg("--config")
            .arg(&path)
            // No standby slate, players by key (see `Prism::start_with`).
            .env("PRISM_STANDBY__ENABLED", "false")
            .env("PRISM_RTMP__PLAY_BY_KEY", "true")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("prism starts");
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let field = |line: &str, key: &str| {
            line.split(key)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        };
        let (rtmp, http) = tokio::time::timeout(CHILD_TIMEOUT, async {
            let (mut rtmp, mut http) = (None, None);
            while let Some(line) = stderr.next_line().await.unwrap() {
                eprintln!("prism: {line}");
                http = http.or_else(|| field(&line, "http_addr="));
                rtmp = rtmp.or_else(|| field(&line, "rtmp_addr="));
                if let (Some(rtmp), Some(http)) = (rtmp, http) {
                    return (rtmp, http);
                }
            }
            panic!("prism exited without logging its addresses");
        })
        .await
        .expect("prism logs its listen addresses");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&lines);
        // Keep draining stderr so prism never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            rtmp,
            http,
            lines,
            client: super::http_client(),
        }
    }

    /// prism with its stderr going where the test says (a pipe nobody reads,
    /// /dev/full, a pipe the test measures), so its listen addresses cannot be
    /// read from its log: it binds port 0, RTMP on 127.0.0.1 and HTTP on
    /// 127.0.0.2, and the test finds the two listening sockets among prism's
    /// own file descriptors in /proc (no race with other tests, no probe
    /// connection). `RUST_LOG` is `rust_log`. [`Self::wait_log`] sees nothing.
    pub async fn start_with_stderr(
        tag: &str,
        config: &str,
        rust_log: &str,
        stderr: std::process::Stdio,
    ) -> Self {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("child-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("prism.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["serve", "--rtmp", "127.0.0.1:0", "--http", "127.0.0.2:0"])
            .arg("--config")
            .arg(&path)
            // No standby slate, players by key (see `Prism::start_with`).
            .env("PRISM_STANDBY__ENABLED", "false")
            .env("PRISM_RTMP__PLAY_BY_KEY", "true")
            .env("RUST_LOG", rust_log)
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("prism starts");
        let pid = child.id().expect("prism runs");
        let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
        let (rtmp, http) = loop {
            let sockets = listening_sockets(pid);
            let on = |ip: [u8; 4]| {
                sockets
                    .iter()
                    .copied()
                    .find(|a| a.ip() == std::net::Ipv4Addr::from(ip))
            };
            if let (Some(rtmp), Some(http)) = (on([127, 0, 0, 1]), on([127, 0, 0, 2])) {
                break (rtmp, http);
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("prism exited before listening: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prism did not listen within {CHILD_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self {
            child,
            rtmp,
            http,
            lines: Default::default(),
            client: super::http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{path}", self.rtmp)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("prism runs")
    }

    /// Resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }

    /// Waits until prism has logged a line containing every one of `parts`.
    pub async fn wait_log(&self, parts: &[&str]) {
        let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
        while !self
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| parts.iter().all(|p| l.contains(p)))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "prism never logged {parts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many lines logged so far contain `part`.
    pub fn count_logged(&self, part: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(part))
            .count()
    }

    /// Waits until exactly `n` lines containing `part` are logged (lines arrive
    /// through a pipe, a little after the event).
    pub async fn wait_log_count(&self, part: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.count_logged(part) < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(self.count_logged(part), n, "lines logged with {part:?}");
    }

    pub async fn get(&self, path: &str) -> String {
        let response = self
            .client
            .get(format!("http://{}{path}", self.http))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(response.status().is_success(), "GET {path}: {response:?}");
        response.text().await.unwrap()
    }

    /// A gauge without labels from /metrics.
    pub async fn gauge(&self, name: &str) -> f64 {
        let text = self.get("/metrics").await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    }

    /// `GET /api/v1/streams`: the live streams.
    pub async fn streams(&self) -> Vec<serde_json::Value> {
        let body: serde_json::Value = serde_json::from_str(&self.get("/api/v1/streams").await)
            .expect("the stream list is JSON");
        body["streams"].as_array().expect("a streams array").clone()
    }

    /// `POST /api/v1/drain`, with `token` as the bearer when given; the status.
    pub async fn drain(&self, token: Option<&str>) -> reqwest::StatusCode {
        let mut request = self
            .client
            .post(format!("http://{}/api/v1/drain", self.http));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status()
    }

    /// Waits (bounded by `within`) for prism to exit by itself; its exit status.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("prism exits by itself in time")
            .unwrap()
    }

    /// SIGTERM, then a clean exit within its grace period.
    pub async fn stop(mut self) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("prism exits within its grace period")
            .unwrap();
        assert!(status.success(), "a clean exit on SIGTERM: {status}");
    }
}

/// The IPv4 TCP sockets process `pid` listens on: the LISTEN entries of
/// /proc/net/tcp whose inode is one of the process's file descriptors.
pub fn listening_sockets(pid: u32) -> Vec<std::net::SocketAddr> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() <= 9 || fields[3] != "0A" || !inodes.contains(fields[9]) {
                return None;
            }
            // "0100007F:1F90": the address's network-order bytes printed as a
            // u32 of this host, then the port.
            let (ip, port) = fields[1].split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?.to_ne_bytes();
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(std::net::SocketAddr::from((ip, port)))
        })
        .collect()
}
