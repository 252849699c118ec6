//! A real S3-compatible server for the upload tests: `s3s-fs` (installed by
//! scripts/install-test-deps with `cargo install`), which checks SigV4
//! signatures and keeps each object as a file under its root directory, so a
//! test reads what arrived straight from disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

/// The access key the test server accepts.
pub const ACCESS_KEY: &str = "prism-test-access";
/// The secret key the test server accepts.
pub const SECRET_KEY: &str = "prism-test-secret-0123456789";

/// The `s3s-fs` binary: on PATH, else in cargo's bin directory.
pub fn s3s_fs() -> PathBuf {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin").join("s3s-fs"));
    match cargo_bin.filter(|path| path.is_file()) {
        Some(path) => path,
        None => super::require("s3s-fs"),
    }
}

/// `s3s-fs` serving `root` on 127.0.0.1, killed (by PID, on drop) when the test
/// ends. Its log (operations at debug level) is kept.
pub struct S3Server {
    child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    pub root: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl S3Server {
    /// Starts the server on `port` (0 for any) with `bucket` created.
    pub async fn start(root: &Path, bucket: &str, port: u16) -> Self {
        std::fs::create_dir_all(root.join(bucket)).unwrap();
        let mut child = tokio::process::Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .env("RUST_LOG", "s3s=debug,s3s_fs=debug")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("s3s-fs starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
                if let Some(at) = line.find("server is running at http://") {
                    let rest = &line[at + "server is running at http://".len()..];
                    let addr = rest.split_whitespace().next().unwrap_or(rest);
                    return addr.trim().parse().expect("s3s-fs address");
                }
            }
            panic!("s3s-fs exited: {}", log.lock().unwrap());
        })
        .await
        .expect("s3s-fs listens");
        let keep = std::sync::Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = keep.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Self {
            child,
            addr,
            root: root.to_owned(),
            log,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The stored object `key` of `bucket`, as bytes.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(bucket).join(key)).ok()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops the server (by its PID).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
