//! Becoming a stream's publisher, whatever the way in (an RTMP publish, an HTTP
//! push): the node is not draining, the client's address may publish one more
//! stream, the key is authorized (user files, the callback), the cluster's lease
//! is this node's, and the hub has room; then the stream's destinations, standby
//! slate and registry entry start. One sequence, so that every input gets the
//! same keys, users, destinations, limits and status.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::context::ConnectionContext;
use super::per_ip::IpSlot;
use super::standby::StandbyPlan;
use crate::auth::CallbackError;
use crate::cluster::Claim;
use crate::hub::{HubError, Publisher};
use crate::relay::{AuthError, RelayHandle};
use crate::stream_name::StreamName;

/// A publisher admitted: what its input holds while it publishes.
#[derive(Debug)]
pub struct Admitted {
    /// Its side of the hub.
    pub publisher: Publisher,
    /// The stream's destinations (none for a backup: they are the primary's).
    pub relay: Option<RelayHandle>,
    /// What the standby slate would play for it.
    pub plan: StandbyPlan,
    /// Its place in the per-address publish limit.
    pub slot: IpSlot,
}

impl Admitted {
    /// Ends this input: a clean end (`dropped` false: an unpublish, the end of
    /// a push's body) ends the stream now; a drop hands it to the grace period
    /// (see [`super::grace::PublisherGrace::publisher_left`]), as an RTMP
    /// encoder's lost connection does. A backup input just leaves.
    pub fn finish(
        self,
        dropped: bool,
        ctx: &ConnectionContext,
        kick: &CancellationToken,
        shutdown: &CancellationToken,
    ) {
        let Self {
            publisher,
            relay,
            plan,
            ..
        } = self;
        match relay {
            Some(relay) if dropped => ctx
                .grace
                .publisher_left(publisher, relay, plan, kick, shutdown),
            relay => {
                // The hub's queues end first, so live destinations drain and
                // unpublish; then the relay handle stops the rest.
                drop(publisher);
                drop(relay);
            }
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The node drains: the encoder should publish again, through the balancer.
    #[error("this node is draining")]
    Draining,
    /// The address publishes as many streams as it may.
    #[error("too many publishers from this address")]
    TooManyFromAddress,
    /// The key or the callback refused it.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Another node of the cluster holds the stream.
    #[error("the stream is live on another node ({0})")]
    Elsewhere(String),
    /// The cluster's registry is away and `on_registry_down = "refuse"`.
    #[error("the stream registry is unreachable")]
    RegistryDown,
    /// The hub said no (the name is taken, too many streams).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// prism is shutting down.
    #[error("shutting down")]
    Shutdown,
}

impl Refusal {
    /// The onStatus code an RTMP encoder gets.
    pub fn status_code(&self) -> &'static str {
        match self {
            Self::Auth(err) => err.status_code(),
            Self::Elsewhere(_) | Self::Hub(HubError::AlreadyPublishing | HubError::NoPrimary) => {
                "NetStream.Publish.BadName"
            }
            _ => "NetStream.Publish.Rejected",
        }
    }

    /// What the encoder is told: no detail of prism's setup.
    pub fn peer_description(&self) -> String {
        match self {
            Self::Draining => "this server is draining; publish again to reach another".into(),
            Self::TooManyFromAddress => "too many streams published from this address".into(),
            Self::Auth(err) => err.peer_description().into(),
            Self::Elsewhere(_) => "this stream is already published (on another node)".into(),
            Self::RegistryDown => "the stream registry is unreachable; try again".into(),
            Self::Hub(err) => err.to_string(),
            Self::Shutdown => "the server is shutting down".into(),
        }
    }
}

/// Admits `name`'s publisher from `peer`, which a `kick` ends: as the stream's
/// primary, or as its backup when the query says `role=backup`. The
/// authorization callback may take a while: bounded by the idle timeout, ended
/// at once by `shutdown`.
pub async fn admit(
    ctx: &ConnectionContext,
    name: &mut StreamName,
    peer: SocketAddr,
    kick: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<Admitted, Refusal> {
    if ctx.drain.is_draining() {
        return Err(Refusal::Draining);
    }
    let slot = ctx
        .publishers_per_ip
        .acquire(peer.ip())
        .ok_or(Refusal::TooManyFromAddress)?;
    let limit = ctx.session.idle_timeout;
    let grant = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Err(Refusal::Shutdown),
        result = timeout(limit, ctx.relay.authorize(name, peer.ip())) => result.unwrap_or_else(|_| {
            Err(CallbackError::Timeout(limit).into())
        })?,
    };
    if is_backup(&name.query) {
        if let Some(user) = &grant.user
            && let Some(key) = ctx.relay.live_key_of_user(&name.app, &user.name)
        {
            name.name = key;
        }
        let publisher = ctx.hub.publish_backup(name)?;
        tracing::info!(stream = %name.masked(), "publishing as the backup");
        return Ok(Admitted {
            publisher,
            relay: None,
            plan: ctx.grace.standby().plan(None),
            slot,
        });
    }
    if let Some(cluster) = ctx.cluster.get() {
        match cluster.claim(name).await {
            Claim::Granted | Claim::Unregistered => {}
            Claim::Elsewhere(node) => return Err(Refusal::Elsewhere(node)),
            Claim::RegistryDown => return Err(Refusal::RegistryDown),
        }
    }
    let publisher = ctx.hub.publish(name)?;
    publisher.set_peer(peer);
    let relay = ctx.relay.start(name, &grant, kick.clone());
    let standby = ctx.grace.standby();
    let plan = standby.plan(grant.user.as_ref().map(|u| (&*u.name, &u.standby)));
    standby.prepare(Arc::clone(publisher.stream()), plan.clone());
    standby.watch(&ctx.hub, &publisher, plan.clone(), kick.clone());
    // The stream id, unlike the mask, tells two streams apart.
    let id = relay.stream_id();
    if let Some(cluster) = ctx.cluster.get() {
        let user = grant.user.as_ref().map(|u| &*u.name);
        cluster.describe(name, &id.to_string(), user, kick.clone());
    }
    match &grant.user {
        Some(user) => {
            tracing::info!(stream = %name.masked(), stream_id = %id, user = %user.name, "publishing")
        }
        None => tracing::info!(stream = %name.masked(), stream_id = %id, "publishing"),
    }
    Ok(Admitted {
        publisher,
        relay: Some(relay),
        plan,
        slot,
    })
}

/// Whether a publish query asks to be the stream's backup (`role=backup`).
fn is_backup(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "role" && v == "backup")
}
