//! Players: subscribing to a stream (live or not yet), the wait for a stream that
//! is not live (bounded in time and in number), and each batch of packets to the
//! socket.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use std::time::Duration;

use crate::hub::Packet;
use crate::relay::Playback;
use crate::stream_name::StreamName;
use crate::timestamp::Rebaser;

use super::{Connection, Next, Role};

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A play: accepted when the connection does nothing else yet and the hub lets it
    /// subscribe. A stream that is not live yet is waited for, as one of the bounded
    /// waiting players.
    pub(super) async fn on_play(&mut self, stream_id: u32, name: &StreamName) -> Next {
        if !matches!(self.role, Role::Idle) {
            self.session.reject_play(
                stream_id,
                "NetStream.Play.Failed",
                "this connection already publishes or plays",
            );
            return Next::Close;
        }
        let pulled = self.pulled(name).await;
        let (hub_name, awaiting_user) = match pulled
            .map(|local| Ok((local, None)))
            .unwrap_or_else(|| self.playback(name))
        {
            Ok(found) => found,
            Err(reason) => {
                tracing::info!(stream = %name.masked(), "play refused: {reason}");
                self.session
                    .reject_play(stream_id, "NetStream.Play.StreamNotFound", reason);
                return Next::Close;
            }
        };
        match self.ctx.hub.subscribe(&name.app, &hub_name) {
            Ok(subscriber) => {
                let waiting = if self.ctx.hub.is_live(&name.app, &hub_name) {
                    tracing::info!(stream = %name.masked(), "playing");
                    None
                } else {
                    tracing::info!(stream = %name.masked(), "playing; waiting for the stream to start");
                    self.ctx
                        .grace
                        .standby()
                        .title_for_players(&self.ctx.hub, &name.app, &hub_name);
                    Some((self.ctx.waiting.enter(), Instant::now()))
                };
                self.session.accept_play(stream_id);
                self.role = Role::Playing {
                    stream_id,
                    subscriber,
                    rebaser: Rebaser::new(),
                    waiting,
                    awaiting_user,
                };
                Next::Continue
            }
            Err(err) => {
                tracing::warn!(stream = %name.masked(), "play refused: {err}");
                self.session
                    .reject_play(stream_id, "NetStream.Play.Failed", &err.to_string());
                Next::Close
            }
        }
    }

    /// In a cluster, when the stream the player names is not live here but on
    /// another node: the hub name of this node's pull of it from there.
    async fn pulled(&self, name: &StreamName) -> Option<String> {
        let cluster = self.ctx.cluster.get()?;
        if let Playback::Live { .. } = self.ctx.relay.playback(&name.app, &name.name) {
            return None;
        }
        if self.ctx.hub.is_live(&name.app, &name.name) {
            return None;
        }
        let local = cluster
            .pulled(&name.app, &name.name, self.ctx.play_by_key)
            .await?;
        tracing::info!(stream = %name.masked(), "pulled from the node that holds the stream");
        Some(local)
    }

    /// The hub's name for the stream a player names, and the user it waits for
    /// when that user is not live (see [`Relay::playback`]). A player names a
    /// stream by its user's name or its id; by its key only when
    /// `rtmp.play_by_key` allows it.
    fn playback(&self, name: &StreamName) -> Result<(String, Option<String>), &'static str> {
        match self.ctx.relay.playback(&name.app, &name.name) {
            Playback::Live { key } => Ok((key, None)),
            Playback::AwaitUser => Ok((awaited_user(&name.name), Some(name.name.clone()))),
            Playback::Ambiguous => {
                Err("this user publishes more than one stream: play one by its stream id")
            }
            Playback::Unknown if self.ctx.play_by_key => Ok((name.name.clone(), None)),
            Playback::Unknown => Err("no stream by that name: play a user's name or a stream id"),
        }
    }

    /// A player waits for a user who is not live: once they are, it moves over to
    /// their stream (same connection, its timestamps go on).
    pub(super) fn follow_user(&mut self) {
        let Role::Playing {
            subscriber,
            awaiting_user,
            ..
        } = &mut self.role
        else {
            return;
        };
        let Some(user) = awaiting_user.as_deref() else {
            return;
        };
        let app = subscriber.stream().app().to_owned();
        if let Playback::Live { key } = self.ctx.relay.playback(&app, user)
            && let Ok(live) = self.ctx.hub.subscribe(&app, &key)
        {
            *subscriber = live;
            *awaiting_user = None;
        }
    }

    /// In a cluster, a player waiting for a stream that is not live here moves to
    /// it once it is live on another node: to this node's pull of it from there.
    pub(super) async fn follow_elsewhere(&mut self) {
        let Some(cluster) = self.ctx.cluster.get() else {
            return;
        };
        let Role::Playing {
            subscriber,
            awaiting_user,
            waiting: Some(_),
            ..
        } = &self.role
        else {
            return;
        };
        let app = subscriber.stream().app().to_owned();
        let (name, by_key) = match awaiting_user {
            Some(user) => (user.clone(), false),
            None => (subscriber.stream().name().to_owned(), self.ctx.play_by_key),
        };
        // Waiting on a pull already (or on a name no publisher can take).
        if name.starts_with('\u{0}') {
            return;
        }
        let Some(local) = cluster.pulled(&app, &name, by_key).await else {
            return;
        };
        if let Ok(live) = self.ctx.hub.subscribe(&app, &local)
            && let Role::Playing {
                subscriber,
                awaiting_user,
                ..
            } = &mut self.role
        {
            tracing::info!("the stream went live on another node; pulled from there");
            *subscriber = live;
            *awaiting_user = None;
        }
    }

    /// When a player waiting for a stream that is not live gives up; `None` unless one
    /// waits. The hub, not the protocol, knows whether a stream is live, so this deadline
    /// is the driver's own.
    pub(super) fn play_wait_deadline(&self) -> Option<Instant> {
        match &self.role {
            Role::Playing {
                waiting: Some((_, since)),
                ..
            } => Some(*since + self.ctx.play_wait),
            _ => None,
        }
    }

    /// The stream went live: the player no longer counts as waiting.
    /// (A player that waits sees the title card meanwhile, which is not the stream.)
    pub(super) fn stop_waiting(&mut self) {
        if let Role::Playing { waiting, .. } = &mut self.role {
            *waiting = None;
        }
    }

    /// Tells a waiting player its stream is not there and lets go of it.
    pub(super) fn give_up_waiting(&mut self, reason: &str) {
        if let Role::Playing { stream_id, .. } = self.role {
            self.session
                .reject_play(stream_id, "NetStream.Play.StreamNotFound", reason);
            self.role = Role::Idle;
        }
    }

    /// Encodes a batch of packets for the player: payloads are shared, only chunk
    /// headers are written, and timestamps are rebased to start at 0.
    pub(super) fn send_batch(&mut self) {
        let Role::Playing {
            stream_id, rebaser, ..
        } = &mut self.role
        else {
            self.batch.clear();
            return;
        };
        for packet in self.batch.drain(..) {
            let timestamp = packet.stamp(rebaser);
            self.session
                .send_media(*stream_id, packet.type_id(), timestamp, &packet.payload);
        }
    }

    /// The stream ended: tells the player so and lets go of it.
    pub(super) fn end_play(&mut self) {
        if let Role::Playing { stream_id, .. } = self.role {
            tracing::info!("stream ended; closing player");
            self.session.end_play(stream_id);
            self.role = Role::Idle;
        }
    }
}

/// Fires when a waiting player's place was taken by a newer one.
pub(super) async fn evicted(role: &Role) {
    match role {
        Role::Playing {
            waiting: Some((ticket, _)),
            ..
        } => ticket.evicted().cancelled().await,
        _ => std::future::pending().await,
    }
}

/// The next batch of the player's packets; `false` when the stream ended.
pub(super) async fn recv_batch(role: &Role, batch: &mut Vec<Packet>) -> bool {
    match role {
        Role::Playing { subscriber, .. } => subscriber.recv_batch(batch).await,
        _ => std::future::pending().await,
    }
}

/// Whether the stream a player plays has started (its packets are not only the
/// title card shown while it waits).
pub(super) fn stream_started(role: &Role) -> bool {
    match role {
        Role::Playing { subscriber, .. } => subscriber.stream().is_live(),
        _ => true,
    }
}

/// How often a player waiting for a user looks whether they went live.
pub(super) const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// How often a waiting player in a cluster asks the registry whether its stream
/// went live on another node: a Redis lookup each time, so less often.
pub(super) const FOLLOW_ELSEWHERE_EVERY: Duration = Duration::from_secs(1);

/// The hub's name for the entry players of a user who is not live wait on: a name
/// no publisher can take (network names have no control characters), so a
/// publisher whose key is that user's name can never reach those players.
fn awaited_user(user: &str) -> String {
    format!("\u{0}user:{user}")
}

/// Whether the player waits for a user to go live.
pub(super) fn awaits_user(role: &Role) -> bool {
    matches!(
        role,
        Role::Playing {
            awaiting_user: Some(_),
            ..
        }
    )
}
