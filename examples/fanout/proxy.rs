//! The floor of a relay on tokio: a byte proxy (`--relays proxy`).
//!
//! It reads the publisher's connection and writes each read, as it is, to every
//! sink (a read no longer than a chunk header is held and joined to the next
//! one), and passes the first sink's replies back (the others' are read and
//! dropped: each sink gets the publisher's own handshake and commands, which
//! nginx-rtmp accepts without checking the echo in C2). No chunk parsing, no
//! allocation per read, one task, on a current-thread runtime as prism's
//! default is. What it costs per delivered Mbit is what any relay on tokio pays
//! before doing anything of its own (the wake-ups, the runtime's turn, the
//! reads, one write per message per destination), which tells apart the part of
//! prism's cost its own code adds from the part the runtime and the kernel
//! take. The benchmark runs it as a child of its own binary (`fanout
//! --proxy-listen P --proxy-to Q --proxy-sinks N`), so that its CPU is measured
//! as a relay's is.

use std::path::Path;
use std::process::{Child, Command};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::BenchError;
use crate::procs;
use crate::setup::{START_TIMEOUT, STOP_GRACE};

/// The read buffer: prism's read block size.
const BUFFER: usize = 64 * 1024;

/// The longest RTMP chunk header: basic header 3, message header 11, extended
/// timestamp 4.
const MAX_CHUNK_HEADER: usize = 18;

/// Runs the proxy until killed: every connection to `listen` is joined to
/// `sinks` new connections to `to` on 127.0.0.1.
pub fn serve(listen: u16, to: u16, sinks: usize) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(format!("the proxy's runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen))
            .await
            .map_err(|e| BenchError::Setup(format!("the proxy's listener: {e}")))?;
        loop {
            let (from, _) = listener
                .accept()
                .await
                .map_err(|e| BenchError::Setup(format!("the proxy's accept: {e}")))?;
            tokio::spawn(relay(from, to, sinks));
        }
    })
}

/// One publisher to `sinks` connections; ends at the first error or close.
async fn relay(from: TcpStream, to: u16, sinks: usize) {
    let _ = from.set_nodelay(true);
    let (mut from_read, from_write) = from.into_split();
    let mut back = Some(from_write);
    let mut outs = Vec::with_capacity(sinks);
    for _ in 0..sinks {
        let Ok(sink) = TcpStream::connect(("127.0.0.1", to)).await else {
            return;
        };
        let _ = sink.set_nodelay(true);
        let (mut replies, out) = sink.into_split();
        outs.push(out);
        match back.take() {
            Some(mut back) => tokio::spawn(async move {
                let _ = tokio::io::copy(&mut replies, &mut back).await;
            }),
            None => tokio::spawn(async move {
                let _ = tokio::io::copy(&mut replies, &mut tokio::io::sink()).await;
            }),
        };
    }
    let mut buf = vec![0u8; BUFFER];
    let mut held = 0;
    loop {
        let n = match from_read.read(&mut buf[held..]).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        held += n;
        // A read no longer than a chunk header waits for the next: ffmpeg
        // writes each chunk header apart from its payload, and a relay that
        // parses (prism, nginx-rtmp) writes a message once, not its header
        // alone. The floor should make as many writes as they do.
        if n > 0 && held <= MAX_CHUNK_HEADER {
            continue;
        }
        for out in &mut outs {
            if out.write_all(&buf[..held]).await.is_err() {
                return;
            }
        }
        if n == 0 {
            return;
        }
        held = 0;
    }
}

/// The proxy as the relay under test.
pub struct Proxy {
    child: Child,
}

impl Proxy {
    /// Starts this binary as a proxy from `port` to `sinks` connections to
    /// `sink_port`.
    pub fn start(dir: &Path, port: u16, sink_port: u16, sinks: usize) -> Result<Self, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let binary = std::env::current_exe()
            .map_err(|e| BenchError::Setup(format!("the benchmark's own path: {e}")))?;
        let mut command = Command::new(binary);
        command
            .arg("--proxy-listen")
            .arg(port.to_string())
            .arg("--proxy-to")
            .arg(sink_port.to_string())
            .arg("--proxy-sinks")
            .arg(sinks.to_string());
        let mut child = procs::spawn(command, &dir.join("proxy.log"), libc::SIGKILL)?;
        if let Err(e) = procs::wait_listening(&mut child, port, "the proxy", START_TIMEOUT) {
            procs::stop(&mut child, libc::SIGKILL, STOP_GRACE);
            return Err(e);
        }
        Ok(Self { child })
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it.
    pub fn stop(mut self) {
        procs::stop(&mut self.child, libc::SIGKILL, STOP_GRACE);
    }
}
