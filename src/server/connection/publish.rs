//! Becoming a publisher: the per-address publish limit, the authorization callback,
//! the hub's publish and the relay's start; then the publisher's media into the hub.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::auth::CallbackError;
use crate::cluster::Claim;
use crate::hub::{HubError, Publisher};
use crate::rtmp::server::ServerEvent;
use crate::stream_name::StreamName;

use super::{Connection, Next, Role};

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A publish: accepted when the connection does nothing else yet, its address
    /// may publish one more stream, the authorization allows it and the hub has room.
    /// The callback may take a while: this connection waits (reading nothing
    /// meanwhile), no other does.
    pub(super) async fn on_publish(
        &mut self,
        stream_id: u32,
        name: StreamName,
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
        if self.ctx.drain.is_draining() {
            tracing::warn!(stream = %name.masked(), "publish refused: this node is draining");
            // Rejected, not BadName: the encoder's next attempt (through the balancer,
            // to another node) should go ahead.
            self.session.reject_publish(
                stream_id,
                "NetStream.Publish.Rejected",
                "this server is draining; publish again to reach another",
            );
            return Next::Close;
        }
        let Some(slot) = self.ctx.publishers_per_ip.acquire(self.peer.ip()) else {
            tracing::warn!(stream = %name.masked(), "publish refused: too many publishers from this address");
            self.session.reject_publish(
                stream_id,
                "NetStream.Publish.Rejected",
                "too many streams published from this address",
            );
            return Next::Close;
        };
        // The callback has its own timeout; the idle timeout still bounds
        // the wait, and shutdown ends it at once.
        let authorize = self.ctx.relay.authorize(&name, self.peer.ip());
        let limit = self.ctx.session.idle_timeout;
        let authorized = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Next::Close,
            result = timeout(limit, authorize) => result.unwrap_or_else(|_| {
                Err(CallbackError::Timeout(limit).into())
            }),
        };
        let grant = match authorized {
            Ok(grant) => grant,
            Err(err) => {
                tracing::warn!(stream = %name.masked(), "publish refused: {err}");
                self.session
                    .reject_publish(stream_id, err.status_code(), err.peer_description());
                return Next::Close;
            }
        };
        if is_backup(&name.query) {
            return self.on_publish_backup(stream_id, name, &grant, slot);
        }
        if let Some(refusal) = self.claim(&name).await {
            self.session.reject_publish(stream_id, refusal.0, refusal.1);
            return Next::Close;
        }
        match self.ctx.hub.publish(&name) {
            Ok(publisher) => {
                self.session.accept_publish(stream_id);
                publisher.set_peer(self.peer);
                let relay = self.ctx.relay.start(&name, &grant, self.kick.clone());
                let standby = self.ctx.grace.standby();
                let plan = standby.plan(grant.user.as_ref().map(|u| (&*u.name, &u.standby)));
                standby.prepare(std::sync::Arc::clone(publisher.stream()), plan.clone());
                standby.watch(&self.ctx.hub, &publisher, plan.clone(), self.kick.clone());
                // The stream id, unlike the mask, tells two streams apart.
                let id = relay.stream_id();
                if let Some(cluster) = self.ctx.cluster.get() {
                    let user = grant.user.as_ref().map(|u| &*u.name);
                    cluster.describe(&name, &id.to_string(), user, self.kick.clone());
                }
                match &grant.user {
                    Some(user) => {
                        tracing::info!(stream = %name.masked(), stream_id = %id, user = %user.name, "publishing")
                    }
                    None => {
                        tracing::info!(stream = %name.masked(), stream_id = %id, "publishing")
                    }
                }
                self.role = Role::Publishing {
                    stream_id,
                    publisher,
                    relay: Some(relay),
                    plan,
                    _slot: slot,
                };
                Next::Continue
            }
            Err(err) => {
                tracing::warn!(stream = %name.masked(), "publish refused: {err}");
                let code = match err {
                    HubError::AlreadyPublishing | HubError::NoPrimary => {
                        "NetStream.Publish.BadName"
                    }
                    HubError::TooManyStreams(_) | HubError::TooManyAwaited(_) => {
                        "NetStream.Publish.Rejected"
                    }
                };
                self.session
                    .reject_publish(stream_id, code, &err.to_string());
                Next::Close
            }
        }
    }

    /// In a cluster, the stream's lease for this node: the refusal's status code and
    /// description when another node holds the stream, or when the registry is away
    /// and `on_registry_down = "refuse"`.
    async fn claim(&self, name: &StreamName) -> Option<(&'static str, &'static str)> {
        let cluster = self.ctx.cluster.get()?;
        match cluster.claim(name).await {
            Claim::Granted | Claim::Unregistered => None,
            Claim::Elsewhere(node) => {
                tracing::warn!(stream = %name.masked(), node, "publish refused: the stream is live on another node");
                Some((
                    "NetStream.Publish.BadName",
                    "this stream is already published (on another node)",
                ))
            }
            Claim::RegistryDown => {
                tracing::warn!(stream = %name.masked(), "publish refused: the stream registry is unreachable");
                Some((
                    "NetStream.Publish.Rejected",
                    "the stream registry is unreachable; try again",
                ))
            }
        }
    }

    /// A backup publish (`?role=backup`): it joins the live stream of the same key,
    /// or of the same user when users are configured, as its backup input. Its
    /// destinations are the primary's; it starts none.
    fn on_publish_backup(
        &mut self,
        stream_id: u32,
        mut name: StreamName,
        grant: &crate::relay::Grant,
        slot: crate::server::per_ip::IpSlot,
    ) -> Next {
        if let Some(user) = &grant.user
            && let Some(key) = self.ctx.relay.live_key_of_user(&name.app, &user.name)
        {
            name.name = key;
        }
        match self.ctx.hub.publish_backup(&name) {
            Ok(publisher) => {
                self.session.accept_publish(stream_id);
                tracing::info!(stream = %name.masked(), "publishing as the backup");
                self.role = Role::Publishing {
                    stream_id,
                    publisher,
                    relay: None,
                    plan: self.ctx.grace.standby().plan(None),
                    _slot: slot,
                };
                Next::Continue
            }
            Err(err) => {
                tracing::warn!(stream = %name.masked(), "backup publish refused: {err}");
                self.session.reject_publish(
                    stream_id,
                    "NetStream.Publish.BadName",
                    &err.to_string(),
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

/// Whether a publish query asks to be the stream's backup (`role=backup`).
fn is_backup(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "role" && v == "backup")
}
