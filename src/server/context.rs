//! What every input's task shares (RTMP connections, HTTP pushes): the hub, the
//! relay, the protocol's settings, the grace period, the limits, the node's
//! draining and cluster state.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::Hub;
use crate::relay::Relay;
use crate::rtmp::server::ServerConfig;
use crate::server::grace::PublisherGrace;
use crate::server::per_ip::PerIpLimit;
use crate::server::waiting::WaitingPlayers;

/// What every connection task shares.
#[derive(Debug)]
pub struct ConnectionContext {
    /// The stream registry.
    pub hub: Arc<Hub>,
    /// Authorizes publishers and starts their destinations.
    pub relay: Arc<Relay>,
    /// Session settings, the protocol's deadlines among them. Its `handshake_timeout` also
    /// bounds a TLS handshake, and its `idle_timeout` the authorization callback and a
    /// player that refuses to read.
    pub session: ServerConfig,
    /// How long a dropped publisher's stream waits for it to come back, and the
    /// shutdown tree the wait runs in.
    pub grace: PublisherGrace,
    /// Streams published at once per client address.
    pub publishers_per_ip: Arc<PerIpLimit>,
    /// How long a player may wait for a stream that is not live.
    pub play_wait: Duration,
    /// Whether players may name a stream by its publish key (`rtmp.play_by_key`).
    pub play_by_key: bool,
    /// The players waiting for streams that are not live, bounded.
    pub waiting: Arc<WaitingPlayers>,
    /// Whether this node drains: new publishes are refused.
    pub drain: Arc<crate::cluster::Drain>,
    /// The cluster's registry, with `[cluster] redis_url`: set once the listeners
    /// are bound (the node advertises their addresses), before any connection.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}
