//! Real ingest servers for the relay tests, none of them written here: nginx with
//! the RTMP module (`live on`, `record all`) stands in for YouTube, Twitch and the
//! like, and stunnel in front of one makes it an RTMPS ingest. Node-Media-Server 4
//! is another server whose push relay publishes into prism. Everything listens
//! on 127.0.0.1, lives in a private directory under `CARGO_TARGET_TMPDIR`, and is
//! stopped by PID by the value that started it (never by name).
//!
//! # Telling a clean unpublish from a dropped connection
//!
//! Observed with Debian's libnginx-mod-rtmp 1.2.2 (error_log at `info`), ffmpeg
//! publishing `-re -c copy -f flv`:
//!
//! ```text
//! ffmpeg ends normally (it sends FCUnpublish, then deleteStream):
//!   [info] 29324#29324: *1 publish: name='cleankey' args='' type=live silent=0, ...
//!   [info] 29324#29324: *1 deleteStream, ...          <- the client's command
//!   [info] 29324#29324: *1 disconnect, ...
//!   [info] 29324#29324: *1 deleteStream, ...          <- nginx's own cleanup
//! ffmpeg killed with SIGKILL mid-stream:
//!   [info] 29324#29324: *4 publish: name='killkey2' args='' type=live silent=0, ...
//!   [info] 29324#29324: *4 disconnect, ...
//!   [info] 29324#29324: *4 deleteStream, ...          <- nginx's own cleanup only
//! ```
//!
//! The module's source explains it (ngx_rtmp_cmd_module.c): `deleteStream` is
//! logged by `ngx_rtmp_cmd_delete_stream`, which runs both for the client's
//! `deleteStream` command and from the disconnect handler, and the disconnect
//! handler logs `disconnect` first. FCUnpublish is not handled (nor logged) by the
//! module at all. So: a `deleteStream` (or `closeStream`, the other command that
//! ends a publish) logged on a connection *before* its `disconnect` means the
//! publisher unpublished; `disconnect` first means the connection just dropped.
//! A clean end that closes with unread data gets `recv() failed (104: Connection
//! reset by peer)` after the `deleteStream` and still counts as clean, as it should.
//! The access log and the recording cannot tell the two apart: both get a
//! `PUBLISH` line and a playable file.

use std::collections::HashMap;
use std::fs;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::{Frame, framemd5_of_file, require};

/// Where Debian's libnginx-mod-rtmp puts the module.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// Bound for a sink to come up (bind, fork its worker) or go down.
pub const SINK_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound for nginx to log the end of a publish once the publisher is gone.
pub const UNPUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

const POLL: Duration = Duration::from_millis(20);

/// How a publish to a [`NginxSink`] ended, as nginx-rtmp logged it (see the module
/// documentation for the evidence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Still publishing: no disconnect logged and the worker is alive (maybe stopped).
    Live,
    /// The publisher sent `deleteStream` (or `closeStream`) before its connection
    /// closed: a deliberate unpublish.
    Clean,
    /// The connection closed without an unpublish command first (killed or crashed
    /// publisher, network cut).
    Dropped,
    /// nginx refused the publish: another publisher already held the name.
    Rejected,
    /// The sink itself was killed while the publish was live.
    SinkKilled,
}

/// One publish (nginx-rtmp `publish` command) seen by a sink.
#[derive(Debug, Clone)]
pub struct Publish {
    /// The stream name, without its `?query`.
    pub stream: String,
    /// The nginx worker that served it.
    pub worker: u32,
    /// nginx's connection number (`*N` in the log), unique per worker.
    pub connection: u64,
    pub ending: Ending,
}

/// nginx with the RTMP module on 127.0.0.1, one application with `live on` and
/// `record all`: a real ingest server whose recordings a test can hash.
///
/// Recordings are `<record dir>/<stream>-<unix seconds>-run<N>.flv`, where N counts
/// the starts of this sink (1, then 2 after the first [`restart`](Self::restart)):
/// `record_unique` keeps publishes in different seconds apart, the run number keeps
/// a restarted sink from touching the files of the one before, and `record_append`
/// makes two publishes of one stream in the same second of the same run share a
/// file instead of the second truncating the first: no recording overwrites another.
pub struct NginxSink {
    app: String,
    dir: PathBuf,
    port: u16,
    run: u32,
    master: Option<Child>,
    /// Workers stopped by `stop_reading`, for `resume` (and `kill`).
    stopped: Vec<u32>,
    /// With `Some(port)`, nginx asks its own HTTP server on that port whether a
    /// publish may go ahead (`on_publish`), which answers 403: nginx then closes
    /// the connection right after the publish command, as many platforms do for
    /// a wrong key.
    refuse_on: Option<u16>,
}

impl NginxSink {
    /// Like [`Self::start`], but every publish is refused the way nginx-rtmp
    /// refuses one its `on_publish` hook denies: the connection is closed right
    /// after the publish command, with no onStatus.
    pub async fn start_refusing_publish(app: &str) -> Self {
        Self::launch_new(app, true).await
    }

    /// Starts nginx in the foreground with one RTMP application `app` on a free
    /// loopback port: `live on`, `record all`, `chunk_size 4096`, a single worker,
    /// no HTTP server. The relay publishes with the destination's key as the stream
    /// name, so a test finds that publish's recording under the key.
    pub async fn start(app: &str) -> Self {
        Self::launch_new(app, false).await
    }

    async fn launch_new(app: &str, refuse: bool) -> Self {
        become_subreaper();
        let dir = private_dir("nginx");
        fs::create_dir_all(dir.join("rec")).unwrap();
        let mut sink = Self {
            app: app.to_owned(),
            dir,
            port: 0,
            run: 0,
            master: None,
            stopped: Vec::new(),
            refuse_on: None,
        };
        // A port picked in advance can be taken before nginx binds it: pick another.
        for _ in 0..5 {
            sink.port = pick_port();
            if refuse {
                sink.refuse_on = Some(pick_port());
            }
            if sink.launch().await {
                return sink;
            }
        }
        panic!(
            "nginx could not bind a free port in 5 tries ({:?})",
            sink.dir
        );
    }

    /// The RTMP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtmp://127.0.0.1:PORT/<app>`: the ingest URL a destination is configured with.
    pub fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/{}", self.port, self.app)
    }

    /// `rtmp://127.0.0.1:PORT/<app>/<stream>`: what a publisher connects to.
    pub fn stream_url(&self, stream: &str) -> String {
        format!("{}/{stream}", self.url())
    }

    /// The application name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The sink's private directory (config, logs, recordings), kept when a test
    /// fails and removed otherwise.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// nginx's error log (level info): the evidence behind [`Self::publishes`].
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// Every recording of `stream`, oldest first (by run of this sink, then by the
    /// second its publish started). Empty when nothing was published yet.
    pub fn recordings(&self, stream: &str) -> Vec<PathBuf> {
        let prefix = format!("{stream}-");
        let mut found: Vec<(u32, u64, PathBuf)> = fs::read_dir(self.dir.join("rec"))
            .unwrap()
            .filter_map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name()?.to_str()?;
                let middle = name.strip_prefix(&prefix)?.strip_suffix(".flv")?;
                let (seconds, run) = middle.rsplit_once("-run")?;
                Some((run.parse().ok()?, seconds.parse().ok()?, path))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, _, path)| path).collect()
    }

    /// The latest recording of `stream`; panics when there is none.
    pub fn recording(&self, stream: &str) -> PathBuf {
        self.recordings(stream).pop().unwrap_or_else(|| {
            panic!(
                "no recording of {stream:?} in {:?}; error log:\n{}",
                self.dir.join("rec"),
                self.log_text()
            )
        })
    }

    /// Waits until the latest recording of `stream` holds at least `min_bytes`, and
    /// returns it: the publish reached the sink and media is being written.
    pub async fn wait_recording(&self, stream: &str, min_bytes: u64, timeout: Duration) -> PathBuf {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(path) = self.recordings(stream).pop()
                && file_len(&path) >= min_bytes
            {
                return path;
            }
            assert!(
                Instant::now() < deadline,
                "no recording of {stream:?} reached {min_bytes} bytes within {timeout:?} ({:?}); \
                 error log:\n{}",
                self.recordings(stream),
                self.log_text()
            );
            sleep(POLL).await;
        }
    }

    /// Every publish of `stream` this sink has seen (across restarts), oldest
    /// first, with how each ended according to nginx's own log.
    pub fn publishes(&self, stream: &str) -> Vec<Publish> {
        let master = self.master_pid();
        parse_publishes(&self.log_text(), |worker| {
            master.is_some_and(|m| process_alive(worker) && parent_of(worker) == Some(m))
        })
        .into_iter()
        .filter(|p| p.stream == stream)
        .collect()
    }

    /// Waits until nginx logs a publish of `stream` that is still live: the
    /// publisher is past connect and publish.
    pub async fn wait_publishing(&self, stream: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .publishes(stream)
                .last()
                .is_some_and(|p| p.ending == Ending::Live)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nobody published {stream:?} within {timeout:?}; error log:\n{}",
                self.log_text()
            );
            sleep(POLL).await;
        }
    }

    /// Waits until the latest publish of `stream` has ended, and says how.
    pub async fn wait_unpublished(&self, stream: &str, timeout: Duration) -> Ending {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(last) = self.publishes(stream).pop()
                && last.ending != Ending::Live
            {
                return last.ending;
            }
            assert!(
                Instant::now() < deadline,
                "the publish of {stream:?} did not end within {timeout:?}; error log:\n{}",
                self.log_text()
            );
            sleep(POLL).await;
        }
    }

    /// Whether the latest publish of `stream` ended with the publisher's own
    /// `deleteStream`/`closeStream` rather than a dropped connection (waits up to
    /// [`UNPUBLISH_TIMEOUT`] for it to end). See the module documentation.
    pub async fn saw_clean_unpublish(&self, stream: &str) -> bool {
        self.wait_unpublished(stream, UNPUBLISH_TIMEOUT).await == Ending::Clean
    }

    /// The PID of the nginx master while it runs.
    pub fn master_pid(&self) -> Option<u32> {
        self.master.as_ref().map(Child::id)
    }

    /// The PIDs of this nginx's worker processes (children of its master): the
    /// processes that hold the RTMP connections, for signals and memory checks.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.master_pid().map(children_of).unwrap_or_default()
    }

    /// Kills the sink abruptly, like a crashed ingest: SIGKILL to the master, then
    /// to its workers (by PID, found as the master's children), and returns once
    /// all are gone. Publishers see their connection reset. The directory and port
    /// stay for [`Self::restart`].
    pub fn kill(&mut self) {
        let Some(mut master) = self.master.take() else {
            return;
        };
        let mut workers = children_of(master.id());
        workers.append(&mut self.stopped);
        workers.sort_unstable();
        workers.dedup();
        // The master first, so that it cannot fork a replacement for a worker. Its
        // orphaned workers then become children of this process (see
        // `become_subreaper`), which reaps them: when this returns, all are gone.
        let _ = master.kill();
        let _ = master.wait();
        for worker in workers {
            signal(worker, libc::SIGKILL);
            reap(worker);
        }
    }

    /// Starts the sink again after [`Self::kill`], on the same port, with the same
    /// directory, logs and recordings (new recordings get the next run number).
    /// The port is below the kernel's ephemeral range (see `pick_port`), so no
    /// outgoing connection can have taken it meanwhile; another test binding it
    /// on purpose is retried until [`SINK_START_TIMEOUT`].
    pub async fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + SINK_START_TIMEOUT;
        while !self.launch().await {
            assert!(
                Instant::now() < deadline,
                "nginx could not bind 127.0.0.1:{} again",
                self.port
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// Makes the sink stop reading without closing anything: SIGSTOP to this
    /// nginx's worker(s), so its socket buffers fill (a few MB on loopback) and
    /// then the publisher blocks, like a stalled ingest. Returns once the workers
    /// are stopped.
    pub async fn stop_reading(&mut self) {
        let workers = self.worker_pids();
        assert!(!workers.is_empty(), "nginx has no worker to stop");
        for &worker in &workers {
            signal(worker, libc::SIGSTOP);
        }
        let deadline = Instant::now() + SINK_START_TIMEOUT;
        while !workers.iter().all(|&w| process_state(w) == Some('T')) {
            assert!(Instant::now() < deadline, "nginx workers did not stop");
            sleep(POLL).await;
        }
        self.stopped = workers;
    }

    /// Undoes [`Self::stop_reading`]: SIGCONT to the stopped workers.
    pub fn resume(&mut self) {
        for worker in self.stopped.drain(..) {
            signal(worker, libc::SIGCONT);
        }
    }

    /// Writes this run's config and starts nginx on `self.port`. False when the
    /// port was taken; panics on any other failure.
    async fn launch(&mut self) -> bool {
        let run = self.run + 1;
        let conf = self.dir.join("nginx.conf");
        fs::write(&conf, self.config(run)).unwrap();
        let nginx = nginx_binary();
        assert!(
            Path::new(RTMP_MODULE).is_file(),
            "{RTMP_MODULE} (Debian package libnginx-mod-rtmp) is required by this test. \
             Run scripts/test, which installs the test dependencies (see README)."
        );
        let stderr = self.dir.join("nginx.stderr");
        let mut master = Command::new(&nginx)
            .arg("-p")
            .arg(format!("{}/", self.dir.display()))
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(self.error_log())
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(append_to(&stderr))
            .stderr(append_to(&stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", nginx.display()));
        let pid = master.id();
        let deadline = Instant::now() + SINK_START_TIMEOUT;
        loop {
            if let Some(status) = master.try_wait().unwrap() {
                let output = fs::read_to_string(&stderr).unwrap_or_default() + &self.log_text();
                if output.contains("Address already in use") {
                    return false;
                }
                panic!("nginx exited at start ({status}):\n{output}");
            }
            if listening(pid, self.port) && !children_of(pid).is_empty() {
                self.master = Some(master);
                self.run = run;
                return true;
            }
            if Instant::now() >= deadline {
                let _ = master.kill();
                let _ = master.wait();
                panic!("nginx did not come up; error log:\n{}", self.log_text());
            }
            sleep(POLL).await;
        }
    }

    fn config(&self, run: u32) -> String {
        let dir = self.dir.display();
        // As root, nginx would run its worker as `nobody`, which cannot write here.
        let user = if effective_uid() == Some(0) {
            "user root;\n"
        } else {
            ""
        };
        format!(
            r#"load_module {RTMP_MODULE};
{user}worker_processes 1;
pid "{dir}/nginx.pid";
lock_file "{dir}/nginx.lock";
error_log "{dir}/error.log" info;
events {{
    worker_connections 256;
}}
rtmp {{
    access_log "{dir}/access.log";
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application {app} {{
            live on;{on_publish}
            record all;
            record_path "{dir}/rec";
            record_unique on;
            record_append on;
            record_suffix -run{run}.flv;
        }}
    }}
}}
"#,
            port = self.port,
            app = self.app,
            on_publish = match self.refuse_on {
                Some(port) => format!("\n            on_publish http://127.0.0.1:{port}/publish;"),
                None => String::new(),
            },
        ) + &self.refusing_http()
    }

    /// The HTTP server that answers `on_publish` with 403, when publishes are refused.
    fn refusing_http(&self) -> String {
        let Some(port) = self.refuse_on else {
            return String::new();
        };
        let dir = self.dir.display();
        format!(
            r#"http {{
    access_log off;
    client_body_temp_path "{dir}/body";
    proxy_temp_path "{dir}/proxy";
    fastcgi_temp_path "{dir}/fastcgi";
    uwsgi_temp_path "{dir}/uwsgi";
    scgi_temp_path "{dir}/scgi";
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 403; }}
    }}
}}
"#
        )
    }

    fn log_text(&self) -> String {
        fs::read_to_string(self.error_log()).unwrap_or_default()
    }
}

impl Drop for NginxSink {
    fn drop(&mut self) {
        self.kill();
        remove_unless_panicking(&self.dir);
    }
}

/// stunnel in server mode in front of a sink: TLS on a free loopback port,
/// forwarded to `127.0.0.1:<backend>`. Its certificate is a leaf for `localhost`
/// and `127.0.0.1` signed by a CA generated for this front alone (a CA plus a leaf,
/// not a self-signed end entity, which webpki refuses as a trust anchor).
pub struct StunnelFront {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl StunnelFront {
    /// Generates the certificates and starts stunnel forwarding to `backend_port`.
    pub async fn start(backend_port: u16) -> Self {
        let stunnel = ["stunnel4", "stunnel"]
            .into_iter()
            .find_map(on_path)
            .unwrap_or_else(|| require("stunnel4"));
        let dir = private_dir("stunnel");
        fs::create_dir_all(&dir).unwrap();
        write_certificates(&dir);
        for _ in 0..5 {
            let port = pick_port();
            let conf = dir.join("stunnel.conf");
            fs::write(
                &conf,
                format!(
                    "foreground = yes\n\
                     pid = {dir}/stunnel.pid\n\
                     output = {dir}/stunnel.log\n\
                     [rtmps]\n\
                     accept = 127.0.0.1:{port}\n\
                     connect = 127.0.0.1:{backend_port}\n\
                     cert = {dir}/server-chain.pem\n\
                     key = {dir}/server-key.pem\n\
                     TIMEOUTclose = 0\n",
                    dir = dir.display()
                ),
            )
            .unwrap();
            let stderr = dir.join("stunnel.stderr");
            let mut child = Command::new(&stunnel)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(append_to(&stderr))
                .stderr(append_to(&stderr))
                .spawn()
                .unwrap_or_else(|e| panic!("{} starts: {e}", stunnel.display()));
            let deadline = Instant::now() + SINK_START_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let output = fs::read_to_string(&stderr).unwrap_or_default();
                    if output.contains("Address already in use") {
                        break;
                    }
                    panic!("stunnel exited at start ({status}):\n{output}");
                }
                if listening(child.id(), port) {
                    return Self { dir, port, child };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "stunnel did not come up:\n{}",
                        fs::read_to_string(&stderr).unwrap_or_default()
                    );
                }
                sleep(POLL).await;
            }
        }
        panic!("stunnel could not bind a free port in 5 tries ({dir:?})");
    }

    /// The TLS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM) a client must trust: prism gets it as
    /// `[tls] ca_file`, ffmpeg as `-ca_file`.
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `rtmps://localhost:PORT/<app>`: the name the certificate is for.
    pub fn url(&self, app: &str) -> String {
        format!("rtmps://localhost:{}/{app}", self.port)
    }

    /// The PID of the stunnel process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for StunnelFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_unless_panicking(&self.dir);
    }
}

/// Node-Media-Server 4 (the npm package `node-media-server`, run as its own
/// `node-media-server` command) on two free loopback ports, RTMP and HTTP API, with
/// a private data directory and an API login made up for this instance. Its push
/// relay is the point: it publishes on message stream 1, then sends
/// `@setDataFrame`, audio and video on message stream 0.
pub struct NodeMediaServer {
    dir: PathBuf,
    rtmp_port: u16,
    http_port: u16,
    password: String,
    child: Child,
}

impl NodeMediaServer {
    /// Starts the server; panics (with its output) if it does not come up.
    pub async fn start() -> Self {
        let program = require("node-media-server");
        let dir = private_dir("nms");
        fs::create_dir_all(&dir).unwrap();
        let password = format!("pw-{:016x}", RandomState::new().hash_one(&dir));
        let secret = format!("jwt-{:032x}", RandomState::new().hash_one(&password));
        for _ in 0..5 {
            let (rtmp_port, http_port) = (pick_port(), pick_port());
            if rtmp_port == http_port {
                continue;
            }
            let config = serde_json::json!({
                "bind": "127.0.0.1",
                "notify": { "url": "" },
                "store": { "path": dir.join("data"), "maxHistory": 100 },
                "auth": {
                    "play": false,
                    "publish": false,
                    "secret": "",
                    "jwt": {
                        "secret": secret,
                        "expiresIn": "1h",
                        "refreshExpiresIn": "1h",
                        "algorithm": "HS256",
                        "users": [{ "username": "admin", "password": password, "role": "admin" }]
                    }
                },
                "rtmp": { "port": rtmp_port },
                "http": { "port": http_port },
                "webadmin": { "enable": false },
                "record": { "auto": false, "path": dir.join("record") }
            });
            let conf = dir.join("config.json");
            fs::write(&conf, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
            let output = dir.join("nms.log");
            let mut child = Command::new(&program)
                .arg("-c")
                .arg(&conf)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(append_to(&output))
                .stderr(append_to(&output))
                .spawn()
                .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
            let deadline = Instant::now() + SINK_START_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = fs::read_to_string(&output).unwrap_or_default();
                    if log.contains("EADDRINUSE") {
                        break;
                    }
                    panic!("node-media-server exited at start ({status}):\n{log}");
                }
                if listening(child.id(), rtmp_port) && listening(child.id(), http_port) {
                    return Self {
                        dir,
                        rtmp_port,
                        http_port,
                        password,
                        child,
                    };
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "node-media-server did not come up:\n{}",
                        fs::read_to_string(&output).unwrap_or_default()
                    );
                }
                sleep(POLL).await;
            }
        }
        panic!("node-media-server could not bind free ports in 5 tries ({dir:?})");
    }

    /// `rtmp://127.0.0.1:PORT/<path>` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.rtmp_port)
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("nms.log")).unwrap_or_default()
    }

    fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/v1{path}", self.http_port)
    }

    /// Calls the API with a fresh login; returns the JSON answer of a 2xx.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let client = super::http_client();
        let login: serde_json::Value = client
            .post(self.api("/login"))
            .json(&serde_json::json!({ "username": "admin", "password": self.password }))
            .send()
            .await
            .expect("the API answers")
            .error_for_status()
            .expect("the login is accepted")
            .json()
            .await
            .unwrap();
        let token = login["data"]["token"].as_str().expect("a token").to_owned();
        let mut request = client.request(method, self.api(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// Waits until something publishes `/app/name` here.
    pub async fn wait_publishing(&self, stream_path: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let streams = self.call(reqwest::Method::GET, "/streams", None).await;
            let live = streams["data"]["streams"]
                .as_array()
                .is_some_and(|streams| {
                    streams
                        .iter()
                        .any(|s| s["key"] == stream_path && s["status"] == "publishing")
                });
            if live {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{stream_path} never went live on node-media-server:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a push relay of the local `stream_path` to `url`.
    pub async fn push(&self, stream_path: &str, url: &str) {
        let body = serde_json::json!({ "url": url, "mode": "push", "streamPath": stream_path });
        self.call(reqwest::Method::POST, "/relay", Some(body)).await;
    }

    /// Stops the push relay to `url`: it closes its connection.
    pub async fn stop_push(&self, url: &str) {
        let body = serde_json::json!({ "url": url, "mode": "push" });
        self.call(reqwest::Method::DELETE, "/relay", Some(body))
            .await;
    }
}

impl Drop for NodeMediaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_unless_panicking(&self.dir);
    }
}

/// Writes `ca.pem`, `server-chain.pem` (leaf for `localhost` and `127.0.0.1`, then
/// the CA) and `server-key.pem` into `dir`.
pub fn write_certificates(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "prism test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::from_params(&ca_params, &ca_key);

    // A string that parses as an IP address becomes an IP SAN.
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    fs::write(dir.join("server-chain.pem"), leaf.pem() + &ca_cert.pem()).unwrap();
    fs::write(dir.join("server-key.pem"), leaf_key.serialize_pem()).unwrap();
}

/// Waits until the file at `path` exists and holds at least `min_bytes`: media
/// reached a sink. Panics after `timeout`.
pub async fn wait_for_recording(path: &Path, min_bytes: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while file_len(path) < min_bytes {
        assert!(
            Instant::now() < deadline,
            "{path:?} did not reach {min_bytes} bytes within {timeout:?} (has {})",
            file_len(path)
        );
        sleep(POLL).await;
    }
}

/// The packet hashes of a recording, to compare with the source
/// (`assert_source_from_keyframe`): what the ingest stored, byte for byte.
pub fn recording_framemd5(path: &Path) -> Vec<Frame> {
    framemd5_of_file(path)
}

/// Resident memory of a process in KiB (`VmRSS` in /proc/PID/status), for checks
/// that a stalled sink does not make the relay buffer without bound.
pub fn process_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

/// Parses nginx-rtmp's error log (level info) into publishes, oldest first.
/// `worker_alive` says whether a worker PID belongs to the running sink, to tell
/// a live publish from one whose sink was killed.
fn parse_publishes(log: &str, worker_alive: impl Fn(u32) -> bool) -> Vec<Publish> {
    struct Open {
        index: usize,
        unpublished: bool,
    }
    let ended = |unpublished: bool| {
        if unpublished {
            Ending::Clean
        } else {
            Ending::Dropped
        }
    };
    let mut publishes: Vec<Publish> = Vec::new();
    let mut open: HashMap<(u32, u64), Open> = HashMap::new();
    for line in log.lines() {
        let Some((worker, connection, message)) = parse_log_line(line) else {
            continue;
        };
        let key = (worker, connection);
        if let Some(rest) = message.strip_prefix("publish: name='") {
            // A second publish on one connection ends the first.
            if let Some(previous) = open.remove(&key) {
                publishes[previous.index].ending = ended(previous.unpublished);
            }
            open.insert(
                key,
                Open {
                    index: publishes.len(),
                    unpublished: false,
                },
            );
            publishes.push(Publish {
                stream: rest.split('\'').next().unwrap_or_default().to_owned(),
                worker,
                connection,
                ending: Ending::Live,
            });
        } else if message.starts_with("live: already publishing") {
            if let Some(refused) = open.remove(&key) {
                publishes[refused.index].ending = Ending::Rejected;
            }
        } else if message.starts_with("deleteStream") || message.starts_with("closeStream") {
            // Before `disconnect` this is the client's command; after it, nginx's
            // cleanup, when the connection is no longer open here.
            if let Some(publish) = open.get_mut(&key) {
                publish.unpublished = true;
            }
        } else if message.starts_with("disconnect")
            && let Some(publish) = open.remove(&key)
        {
            publishes[publish.index].ending = ended(publish.unpublished);
        }
    }
    for publish in open.into_values() {
        let publish = &mut publishes[publish.index];
        if !worker_alive(publish.worker) {
            publish.ending = Ending::SinkKilled;
        }
    }
    publishes
}

/// `2026/11/22 01:22:19 [info] 29324#29324: *4 message` -> (29324, 4, "message").
fn parse_log_line(line: &str) -> Option<(u32, u64, &str)> {
    let (_, rest) = line.split_once("] ")?;
    let (pids, rest) = rest.split_once(": ")?;
    let pid = pids.split('#').next()?.parse().ok()?;
    let (connection, message) = rest.strip_prefix('*')?.split_once(' ')?;
    Some((pid, connection.parse().ok()?, message))
}

/// A port for a sink to listen on, not in use right now.
///
/// Chosen at random below the kernel's ephemeral range: ports there are never
/// handed out to outgoing connections or to `bind(0)`, so neither the many
/// short-lived connections of concurrent tests nor prism's own port-0 listeners
/// can take it between this check and nginx's bind, or while a killed sink is
/// down before its restart. Only something binding that very port on purpose
/// (another sink drawing the same number) can collide; callers then pick again
/// (nginx and stunnel fail with EADDRINUSE).
pub fn pick_port() -> u16 {
    let ephemeral_low: u16 = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    for _ in 0..100 {
        let port = if ephemeral_low > LOW + 1_000 {
            let span = u64::from(ephemeral_low - LOW);
            LOW + (RandomState::new().hash_one(std::process::id()) % span) as u16
        } else {
            // An unusual kernel setting: fall back to a port the kernel picks.
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port` (from
/// /proc/net/tcp and the process's fds): the server is up, and it is ours, with
/// no probe connection to disturb its logs.
fn listening(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 9 && fields[1] == local && fields[3] == "0A")
                .then(|| format!("socket:[{}]", fields[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
}

/// The local address of `pid`'s TCP connection to `remote` (IPv4), from
/// /proc/net/tcp: what the server sees as that client's peer address, so a test
/// can find the server's log lines for one client it did not write itself.
pub fn client_addr_of(pid: u32, remote: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    let parse = |field: &str| -> Option<std::net::SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        // The kernel prints the address as a host-order u32 of network-order bytes.
        let ip = std::net::Ipv4Addr::from(ip.to_le_bytes());
        Some(std::net::SocketAddr::from((ip, port)))
    };
    let fds: Vec<PathBuf> = fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .collect();
    fs::read_to_string("/proc/net/tcp")
        .ok()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() <= 9 || parse(fields[2])? != remote {
                return None;
            }
            let inode = PathBuf::from(format!("socket:[{}]", fields[9]));
            fds.contains(&inode).then(|| parse(fields[1]))?
        })
}

/// The PIDs whose parent is `parent` (from /proc/*/stat; this kernel has no
/// /proc/PID/task/TID/children).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// State and parent PID from /proc/PID/stat (`pid (comm) S ppid ...`; comm may
/// contain spaces and parentheses, so parse after the last `)`).
fn stat_fields(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

pub fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid).map(|(_, parent)| parent)
}

/// The command name of a process (/proc/PID/comm: the executable's base name,
/// whatever path it was started by), or None when it is gone.
pub fn comm_of(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_owned())
}

pub fn process_state(pid: u32) -> Option<char> {
    stat_fields(pid).map(|(state, _)| state)
}

/// Alive and not a zombie.
pub fn process_alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|state| state != 'Z' && state != 'X')
}

/// Makes this test process the reaper of its orphaned descendants
/// (PR_SET_CHILD_SUBREAPER), so that the workers of a killed nginx master become
/// its children and [`reap`] can collect them by PID. Otherwise they would be left
/// to PID 1, which in some containers reaps late or never: zombies, and a `kill`
/// that cannot tell when its processes are gone.
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
        let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(done, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
    });
}

/// Waits for a killed process to be gone: reaps it when it is this process's
/// child (an adopted nginx worker), else waits for it to disappear or turn zombie.
pub fn reap(pid: u32) {
    let raw = libc::pid_t::try_from(pid).expect("PID fits pid_t");
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) writes only to `status`, a valid c_int.
        let reaped = unsafe { libc::waitpid(raw, &mut status, 0) };
        if reaped == raw {
            return;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let deadline = std::time::Instant::now() + SINK_START_TIMEOUT;
    while process_alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} survived SIGKILL"
        );
        std::thread::sleep(POLL);
    }
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `signal` to one process, by PID.
pub fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("PID fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions. A process that already
    // exited is not an error here.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The size of a file, 0 when it does not exist (yet).
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn append_to(path: &Path) -> Stdio {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .into()
}

/// A program on PATH, or (for nginx and haproxy, which live in /usr/sbin) that
/// directory.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn nginx_binary() -> PathBuf {
    on_path("nginx").unwrap_or_else(|| require("nginx"))
}

/// A fresh directory for one server of this test process.
fn private_dir(kind: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sinks")
        .join(format!(
            "{kind}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
    // Left over from an earlier process with the same PID.
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Removes a server's directory, but keeps it (and says where) when the test is
/// failing, so its logs and recordings can be read.
fn remove_unless_panicking(dir: &Path) {
    if std::thread::panicking() {
        eprintln!("test sink files kept in {}", dir.display());
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}
