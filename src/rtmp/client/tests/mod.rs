//! Client session tests: against prism's own server session in the in-memory pair
//! (`with_server.rs`, the handshake and the publish deadline in `deadline.rs`), against a
//! scripted server that says exactly what each test needs (`scripted.rs`), and against
//! hostile input (`hostile.rs`).

use bytes::Bytes;

use super::*;
use crate::rtmp::amf0;

mod deadline;
mod hostile;
mod scripted;
mod with_server;

const KEY: &str = "live_8c1d2e3f?token=s3cr3t";
const TC_URL: &str = "rtmp://127.0.0.1:1935/live";

fn config() -> ClientConfig {
    ClientConfig::new(TC_URL, KEY)
}

/// The `"onMetaData", {...}` body the hub stores for a stream.
fn on_metadata_body(metadata: &Amf0Value) -> Bytes {
    let mut body = BytesMut::new();
    amf0::encode(&"onMetaData".into(), &mut body);
    amf0::encode(metadata, &mut body);
    body.freeze()
}
