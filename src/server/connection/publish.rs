//! Becoming a publisher (through `server::admission`, as every input does), then
//! the publisher's media into the hub.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::hub::Publisher;
use crate::rtmp::server::ServerEvent;
use crate::server::admission::{self, Refusal};
use crate::stream_name::StreamName;

use super::{Connection, Next, Role};

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A publish: accepted when the connection does nothing else yet and
    /// [`admission::admit`] admits it (the per-address limit, the authorization,
    /// the cluster's lease, the hub's room). The callback may take a while: this
    /// connection waits (reading nothing meanwhile), no other does.
    pub(super) async fn on_publish(
        &mut self,
        stream_id: u32,
        mut name: StreamName,
        shutdown: &CancellationToken,
    ) -> Next {
        if !matches!(self.role, Role::Idle) {
            self.session.reject_publish(
                stream_id,
                "NetStream.Publish.BadName",
                "this connection already publishes or plays",
            );
            return Next::Close;
        }
        match admission::admit(&self.ctx, &mut name, self.peer, &self.kick, shutdown).await {
            Ok(admitted) => {
                self.session.accept_publish(stream_id);
                self.role = Role::Publishing {
                    stream_id,
                    publisher: admitted.publisher,
                    relay: admitted.relay,
                    plan: admitted.plan,
                    _slot: admitted.slot,
                };
                Next::Continue
            }
            Err(Refusal::Shutdown) => Next::Close,
            Err(refusal) => {
                tracing::warn!(stream = %name.masked(), "publish refused: {refusal}");
                self.session.reject_publish(
                    stream_id,
                    refusal.status_code(),
                    &refusal.peer_description(),
                );
                Next::Close
            }
        }
    }

    /// Hands a publisher's metadata or media message to the hub; ignored unless this
    /// connection publishes.
    pub(super) fn media_to_hub(&self, event: ServerEvent) {
        let Some(publisher) = self.publisher() else {
            return;
        };
        match event {
            ServerEvent::Metadata { metadata, .. } => publisher.set_metadata(&metadata, 0),
            ServerEvent::Audio {
                timestamp, payload, ..
            } => publisher.push_audio(timestamp, payload),
            ServerEvent::Video {
                timestamp, payload, ..
            } => publisher.push_video(timestamp, payload),
            ServerEvent::Data {
                timestamp, payload, ..
            } => publisher.push_data(timestamp, payload),
            _ => {}
        }
    }

    /// Hands what this read brought to the stream's subscribers: once per read,
    /// not once per message (see [`crate::hub::Publisher::flush`]).
    pub(super) fn deliver(&self) {
        if let Some(publisher) = self.publisher() {
            publisher.flush();
        }
    }

    /// The publisher unpublished: its stream ends now (no grace period).
    pub(super) fn unpublish(&mut self) {
        if matches!(self.role, Role::Publishing { .. }) {
            tracing::info!("unpublished");
            self.role = Role::Idle;
        }
    }

    fn publisher(&self) -> Option<&Publisher> {
        // (A backup's packets go to the hub too: it decides what is on air.)
        match &self.role {
            Role::Publishing { publisher, .. } => Some(publisher),
            _ => None,
        }
    }
}
