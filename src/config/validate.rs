//! Checks that a loaded configuration makes sense before anything starts, with an
//! error that names the key.

use super::{Config, ConfigError};

impl Config {
    /// Refuses values that parse but cannot work (zero timeouts, limits that
    /// contradict each other, an RTMPS listener without its certificate...).
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if !(128..=65_536).contains(&self.rtmp.chunk_size) {
            return invalid("rtmp.chunk_size", "must be between 128 and 65536");
        }
        if self.rtmp.max_connections == 0
            || self.rtmp.max_connections_per_ip == 0
            || self.rtmp.max_publishers_per_ip == 0
        {
            return invalid("rtmp.max_connections(_per_ip)", "must be at least 1");
        }
        if self.rtmp.handshake_timeout_secs == 0
            || self.rtmp.idle_timeout_secs == 0
            || self.rtmp.play_wait_secs == 0
        {
            return invalid("rtmp.*_timeout_secs", "timeouts must be at least 1 second");
        }
        if self.rtmps.listen.is_some()
            && (self.rtmps.cert_file.is_none() || self.rtmps.key_file.is_none())
        {
            return invalid(
                "rtmps.listen",
                "RTMPS needs rtmps.cert_file and rtmps.key_file (PEM)",
            );
        }
        if let Some(url) = &self.cluster.redis_url
            && !url::Url::parse(url).is_ok_and(|u| u.scheme() == "redis" && u.host().is_some())
        {
            return invalid("cluster.redis_url", "must be redis://HOST[:PORT][/DB]");
        }
        if self.cluster.lease_secs < 3 {
            return invalid(
                "cluster.lease_secs",
                "must be at least 3 (a lease is renewed every third of it)",
            );
        }
        if let Some((key, reason)) = self.hls.problem() {
            return invalid(key, &reason);
        }
        let profiles = crate::transcode::Profiles::new(&self.profiles);
        if let Err(reason) = self.hls.ladder_spec(&profiles) {
            return invalid("hls.ladder", &reason);
        }
        if self.record.dir.as_os_str().is_empty() {
            return invalid("record.dir", "must name a directory");
        }
        if self
            .record
            .on_record_done
            .first()
            .is_some_and(String::is_empty)
        {
            return invalid(
                "record.on_record_done",
                "the first item is the program to run",
            );
        }
        if let Some(upload) = &self.record.upload
            && !upload
                .url
                .strip_prefix("s3://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        {
            return invalid("record.upload.url", "must be s3://BUCKET[/PREFIX]");
        }
        if self.standby.enabled && self.standby.max_secs == 0 {
            return invalid(
                "standby.max_secs",
                "must be at least 1 (or turn the slate off with standby.enabled = false)",
            );
        }
        if let Some(file) = &self.standby.file
            && !file.is_file()
        {
            return invalid(
                "standby.file",
                &format!("{} is not a readable file", file.display()),
            );
        }
        if let Some(passphrase) = &self.srt.passphrase
            && !(10..=79).contains(&passphrase.len())
        {
            return invalid("srt.passphrase", "an SRT passphrase is 10 to 79 characters");
        }
        if self.rtmps.tls_versions.is_empty() {
            return invalid(
                "rtmps.tls_versions",
                "list at least one TLS version: \"1.2\", \"1.3\"",
            );
        }
        if !(128..=0xFF_FFFF).contains(&self.limits.max_message_len) {
            return invalid("limits.max_message_len", "must be between 128 and 16777215");
        }
        if self.limits.max_chunk_streams < 4 {
            return invalid("limits.max_chunk_streams", "must be at least 4");
        }
        if self.limits.max_pending_bytes < self.limits.max_message_len as usize {
            return invalid(
                "limits.max_pending_bytes",
                "must be at least limits.max_message_len",
            );
        }
        if self.limits.max_pending_bytes_total < self.limits.max_pending_bytes {
            return invalid(
                "limits.max_pending_bytes_total",
                "must be at least limits.max_pending_bytes",
            );
        }
        if !(1..=4096).contains(&self.limits.min_chunk_size) {
            return invalid("limits.min_chunk_size", "must be between 1 and 4096");
        }
        if self.limits.max_commands_per_sec == 0 {
            return invalid("limits.max_commands_per_sec", "must be at least 1");
        }
        if self.hub.queue_max_packets == 0 || self.hub.queue_max_bytes == 0 {
            return invalid("hub.queue_max_*", "must be positive");
        }
        if !(128..=65_536).contains(&self.relay.chunk_size) {
            return invalid("relay.chunk_size", "must be between 128 and 65536");
        }
        if self.relay.connect_timeout_secs == 0 || self.relay.stall_timeout_secs == 0 {
            return invalid("relay.*_timeout_secs", "timeouts must be at least 1 second");
        }
        if self.relay.backoff_initial_ms == 0 || self.relay.backoff_max_secs == 0 {
            return invalid("relay.backoff_*", "backoff delays must be positive");
        }
        if self.transcode.max_encoders == 0 || self.transcode.stall_timeout_secs == 0 {
            return invalid(
                "transcode.max_encoders / stall_timeout_secs",
                "must be at least 1",
            );
        }
        if let crate::transcode::AudioOnlyVideo::Still(image) = &self.transcode.audio_only_video
            && !image.is_file()
        {
            return invalid(
                "transcode.audio_only_video",
                "not \"off\", \"black\" or an image file that exists",
            );
        }
        if self.profiles.values().any(|p| p.args.is_empty()) {
            return invalid("profiles.*.args", "a profile needs ffmpeg output arguments");
        }
        if self.http.token.as_deref().is_some_and(|t| t.len() < 16) {
            return invalid("http.token", "use at least 16 characters");
        }
        if self.http.max_connections == 0 {
            return invalid("http.max_connections", "must be at least 1");
        }
        if self.http.header_timeout_secs == 0 || self.http.request_timeout_secs == 0 {
            return invalid("http.*_timeout_secs", "timeouts must be at least 1 second");
        }
        if self.http.protect_reads && self.http.token.is_none() {
            return invalid("http.protect_reads", "needs http.token");
        }
        if let Some(url) = &self.auth.publish_url
            && let Err(reason) = crate::auth::check_url(url)
        {
            return invalid("auth.publish_url", reason);
        }
        if !(1..=crate::auth::MAX_TIMEOUT_MS).contains(&self.auth.timeout_ms) {
            return invalid("auth.timeout_ms", "must be between 1 and 60000");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be \"text\" or \"json\"");
        }
        let log = &self.log;
        for (key, value) in [
            ("log.buffer_lines", log.buffer_lines as u64),
            ("log.peer_burst", u64::from(log.peer_burst)),
            (
                "log.peer_lines_per_minute",
                u64::from(log.peer_lines_per_minute),
            ),
            ("log.all_peers_burst", u64::from(log.all_peers_burst)),
            (
                "log.all_peers_lines_per_sec",
                u64::from(log.all_peers_lines_per_sec),
            ),
            ("log.summary_secs", log.summary_secs),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        Ok(())
    }
}
