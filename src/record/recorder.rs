//! The recorder: one task per recorded stream, subscribed to it like a player,
//! writing what it gets to files (see the module documentation of
//! [`crate::record`]).
//!
//! Writes go through a 256 KiB buffer and are flushed at least every second, so
//! a crash loses at most about a second; a closed file is also synced to disk
//! before its hook runs. The recorder's queue is bounded like any subscriber's: a
//! disk slower than the stream makes it skip to the next keyframe (counted),
//! never hold the publisher back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::fs::File;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::mp4_file::Mp4File;
use super::segmenter::{Segmenter, Step};
use super::status::{RecordingState, RecordingStatus};
use super::{RecordConfig, RecordFormat, hook, naming};
use crate::flv::{FlvHeader, FlvWriter};
use crate::hub::{Hub, Packet, Subscriber, SubscriberKind};
use crate::timestamp::Rebaser;

/// How often buffered writes reach the file at the latest.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// What every recorder shares.
#[derive(Debug, Clone)]
pub struct RecordContext {
    /// The streams.
    pub hub: Arc<Hub>,
    /// The shutdown tree: recorders and their hooks are its tasks.
    pub tracker: TaskTracker,
    /// `[record]`.
    pub config: RecordConfig,
    /// Uploads complete files, when `[record.upload]` is set.
    pub uploader: Option<Arc<super::upload::Uploader>>,
}

/// One stream's recording, as its owner asks for it.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Where files go (`record.dir`, or the user's).
    pub dir: PathBuf,
    /// The stream's app.
    pub app: String,
    /// The stream's key in the hub (never written anywhere).
    pub key: String,
    /// The public name files are named by: the user's name or the stream id.
    pub name: String,
}

impl Recording {
    /// Starts recording the live stream `self.key` until it ends or `stop` is
    /// cancelled; the returned status follows it.
    pub fn start(self, ctx: &RecordContext, stop: CancellationToken) -> Arc<RecordingStatus> {
        let status = Arc::new(RecordingStatus::new());
        let subscriber = match ctx
            .hub
            .subscribe_as(&self.app, &self.key, SubscriberKind::Recorder)
        {
            Ok(subscriber) => subscriber,
            Err(err) => {
                fail(&status, format!("cannot subscribe to the stream: {err}"));
                return status;
            }
        };
        let task = Recorder {
            ctx: ctx.clone(),
            recording: self,
            status: Arc::clone(&status),
        };
        ctx.tracker.spawn(task.run(subscriber, stop));
        status
    }
}

/// Why a recording stopped early.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Flv(#[from] crate::flv::FlvError),
    #[error("{0}")]
    Mp4(#[from] crate::fmp4::Fmp4Error),
}

struct Recorder {
    ctx: RecordContext,
    recording: Recording,
    status: Arc<RecordingStatus>,
}

/// The file being written.
struct Open {
    path: PathBuf,
    out: BufWriter<File>,
    /// `None` for FLV.
    mp4: Option<Mp4File>,
}

impl Recorder {
    async fn run(self, subscriber: Subscriber, stop: CancellationToken) {
        let started = SystemTime::now();
        let guard = Unfinished(&self.status);
        let result = self.record(&subscriber, &stop, started).await;
        std::mem::forget(guard);
        match result {
            Ok(()) => self.status.update(|s| s.state = RecordingState::Finished),
            Err(err) => {
                tracing::warn!(
                    app = %self.recording.app,
                    name = %self.recording.name,
                    "recording stopped, the stream goes on: {err}"
                );
                fail(&self.status, err.to_string());
            }
        }
        let dropped = subscriber.dropped();
        self.status.update(|s| s.dropped_frames = dropped);
    }

    async fn record(
        &self,
        subscriber: &Subscriber,
        stop: &CancellationToken,
        started: SystemTime,
    ) -> Result<(), RecordError> {
        let config = &self.ctx.config;
        let mut segmenter = Segmenter::new(config.segment_secs * 1000, config.max_bytes);
        let mut rebaser = Rebaser::new();
        let mut batch = Vec::with_capacity(256);
        let mut index = 1;
        let mut file = self.open(started, index).await?;
        let mut flushed = Instant::now();
        loop {
            let more = tokio::select! {
                more = subscriber.recv_batch(&mut batch) => more,
                () = stop.cancelled() => false,
            };
            if !more {
                break;
            }
            // Counted once per batch: the status lock is shared with the API.
            let mut batch_bytes = 0u64;
            for packet in batch.drain(..) {
                let timestamp = packet.stamp(&mut rebaser);
                // An MP4 file's tracks are fixed by its initialization segment: a new
                // configuration (another picture size, the slate's) starts a new file.
                let new_config = file.mp4.as_ref().is_some_and(|m| m.config_changed(&packet));
                if segmenter.next(&packet, timestamp) == Step::Cut || new_config {
                    self.close(file).await?;
                    index += 1;
                    file = self.open(started, index).await?;
                    if file.mp4.is_none() {
                        let preamble: Vec<Packet> = segmenter.preamble().cloned().collect();
                        for header in &preamble {
                            let written = write_tag(&mut file, header, timestamp).await?;
                            segmenter.wrote(written);
                            batch_bytes += written as u64;
                        }
                    }
                }
                let written = match &mut file.mp4 {
                    None => write_tag(&mut file, &packet, timestamp).await?,
                    Some(mp4) => {
                        let (video, audio) = segmenter.configs();
                        let bytes = mp4.push(&packet, timestamp, video, audio)?;
                        write_bytes(&mut file, &bytes).await?
                    }
                };
                segmenter.wrote(written);
                batch_bytes += written as u64;
            }
            self.status.update(|s| s.bytes += batch_bytes);
            if flushed.elapsed() >= FLUSH_EVERY {
                file.out.flush().await.map_err(|e| io(&file.path, e))?;
                flushed = Instant::now();
                let dropped = subscriber.dropped();
                self.status.update(|s| s.dropped_frames = dropped);
            }
        }
        self.close(file).await
    }

    /// Creates file number `index` and writes the FLV header (an MP4 file's
    /// initialization segment waits for its first frame).
    async fn open(&self, started: SystemTime, index: u32) -> Result<Open, RecordError> {
        let path = naming::file_path(
            &self.recording.dir,
            &self.recording.app,
            &self.recording.name,
            started,
            index,
            self.ctx.config.format.extension(),
        );
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io(parent, e))?;
        }
        let handle = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| io(&path, e))?;
        let mut out = BufWriter::with_capacity(256 * 1024, handle);
        let (header, mp4) = match self.ctx.config.format {
            RecordFormat::Flv => {
                let header = FlvWriter::header(&FlvHeader {
                    has_audio: true,
                    has_video: true,
                });
                (header.to_vec(), None)
            }
            RecordFormat::Mp4 => (Vec::new(), Some(Mp4File::default())),
        };
        out.write_all(&header).await.map_err(|e| io(&path, e))?;
        tracing::info!(app = %self.recording.app, name = %self.recording.name, file = %path.display(), "recording");
        let shown = path.display().to_string();
        self.status.update(|s| {
            s.file = Some(shown);
            s.files = index;
            s.bytes += header.len() as u64;
        });
        Ok(Open { path, out, mp4 })
    }

    /// Flushes and syncs a complete file, then runs the hook on it.
    async fn close(&self, mut file: Open) -> Result<(), RecordError> {
        if let Some(mp4) = &mut file.mp4 {
            let last = mp4.finish()?;
            let written = write_bytes(&mut file, &last).await?;
            self.status.update(|s| s.bytes += written as u64);
        }
        file.out.flush().await.map_err(|e| io(&file.path, e))?;
        file.out
            .get_ref()
            .sync_all()
            .await
            .map_err(|e| io(&file.path, e))?;
        if !self.ctx.config.on_record_done.is_empty() {
            let command = hook::command_for(
                &self.ctx.config.on_record_done,
                &file.path,
                &self.recording.app,
                &self.recording.name,
            );
            hook::run(command, &self.ctx.tracker);
        }
        if let Some(uploader) = &self.ctx.uploader {
            uploader.enqueue(file.path, &self.recording.app);
        }
        Ok(())
    }
}

/// Writes `packet` as one FLV tag stamped `timestamp`; returns the bytes written.
async fn write_tag(file: &mut Open, packet: &Packet, timestamp: u32) -> Result<usize, RecordError> {
    let (header, trailer) = packet.flv_framing(timestamp)?;
    for part in [&header[..], &packet.payload[..], &trailer[..]] {
        file.out
            .write_all(part)
            .await
            .map_err(|e| io(&file.path, e))?;
    }
    Ok(header.len() + packet.payload.len() + trailer.len())
}

/// Writes what the MP4 muxer produced; a fragment goes to the file at once
/// (flushed), so that a crash loses at most the fragment being gathered.
async fn write_bytes(file: &mut Open, bytes: &[u8]) -> Result<usize, RecordError> {
    if bytes.is_empty() {
        return Ok(0);
    }
    file.out
        .write_all(bytes)
        .await
        .map_err(|e| io(&file.path, e))?;
    file.out.flush().await.map_err(|e| io(&file.path, e))?;
    Ok(bytes.len())
}

fn io(path: &Path, source: std::io::Error) -> RecordError {
    RecordError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Marks a recording failed if its task ends without saying how (a panic
/// unwinding through it), so that its status never claims a recording that
/// stopped.
struct Unfinished<'a>(&'a RecordingStatus);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        fail(
            self.0,
            "the recorder stopped unexpectedly (see the log)".into(),
        );
    }
}

fn fail(status: &RecordingStatus, error: String) {
    status.update(|s| {
        s.state = RecordingState::Failed;
        s.error = Some(error);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorder_that_unwinds_is_marked_failed() {
        let status = RecordingStatus::new();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = Unfinished(&status);
            panic!("a bug in a recorder");
        }));
        assert!(panicked.is_err());
        let now = status.snapshot();
        assert_eq!(now.state, RecordingState::Failed);
        assert!(now.error.unwrap().contains("stopped unexpectedly"));
    }
}
