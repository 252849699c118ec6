//! A node among several behind one balancer: draining before it stops, and the
//! registry the nodes share in Redis ([`Cluster`]): which node holds each stream
//! (one publisher per stream in the whole cluster, by a lease its node renews),
//! where each node can be reached, and which node a player's stream lives on. A
//! node without `[cluster] redis_url` has no [`Cluster`] and behaves exactly as a
//! single prism (it can still be drained, which a lone node's restart benefits
//! from too).

pub mod drain;
pub mod node;
pub mod origin;
pub mod registry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use drain::Drain;
pub use node::{ClusterError, NodeInfo};
pub use registry::{Registry, RegistryError};

use crate::config::RegistryDown;
use crate::hub::Hub;
use crate::stream_name::StreamName;

/// How often held streams are checked for having ended (their leases are then
/// released at once, so that the encoder's reconnect elsewhere is not refused).
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// A claim younger than this is not released for not being live yet: the claim
/// comes just before the stream goes live in the hub.
const CLAIM_SETTLES: Duration = Duration::from_secs(2);

/// What a publish's claim on its stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node holds the stream's lease.
    Granted,
    /// The registry is unreachable and `on_registry_down = "allow"`: published
    /// without a lease, which is taken once Redis returns.
    Unregistered,
    /// Another node (this id) holds the stream.
    Elsewhere(String),
    /// The registry is unreachable and `on_registry_down = "refuse"`.
    RegistryDown,
}

/// A stream this node holds, or publishes while the registry is away.
#[derive(Debug)]
struct Held {
    app: String,
    name: String,
    /// The registry's index keys that name it (`prism:name:APP/ID`, the user's,
    /// `prism:id:ID`), once its relay has started.
    index: Vec<String>,
    /// Ends the local stream when another node turns out to hold it.
    kick: Option<CancellationToken>,
    since: Instant,
}

/// This node's part in the cluster.
#[derive(Debug)]
pub struct Cluster {
    node: NodeInfo,
    registry: Registry,
    lease: Duration,
    on_down: RegistryDown,
    hub: Arc<Hub>,
    drain: Arc<Drain>,
    /// By lease key.
    held: Mutex<HashMap<String, Held>>,
    /// Renew now: a stream was claimed or described.
    changed: Notify,
    /// Streams pulled from other nodes for players here.
    pulls: Arc<origin::OriginPulls>,
}

impl Cluster {
    /// This node in the cluster `config` describes (`None` without `redis_url`),
    /// reachable at the addresses its listeners are bound to unless `advertise_*`
    /// says otherwise. Redis is not contacted here: a node starts while Redis is
    /// away. Call [`Self::run`] to keep its presence and leases alive.
    pub fn new(
        config: &crate::config::Config,
        rtmp: std::net::SocketAddr,
        http: std::net::SocketAddr,
        hub: Arc<Hub>,
        drain: Arc<Drain>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Option<Arc<Self>>, ClusterError> {
        let proxied = config.rtmp.proxy_protocol;
        let config = &config.cluster;
        let Some(url) = &config.redis_url else {
            return Ok(None);
        };
        let node = NodeInfo::of(config, proxied, rtmp, http)?;
        let pulls = Arc::new(origin::OriginPulls::new(
            Arc::clone(&hub),
            tracker,
            shutdown,
        ));
        Ok(Some(Arc::new(Self {
            node,
            registry: Registry::new(url).map_err(ClusterError::Registry)?,
            lease: Duration::from_secs(config.lease_secs),
            on_down: config.on_registry_down,
            hub,
            drain,
            held: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            pulls,
        })))
    }

    /// This node.
    pub fn node(&self) -> &NodeInfo {
        &self.node
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims `name` for a publish on this node: granted when its lease is free
    /// (or this node's already), refused when another node holds it.
    pub async fn claim(&self, name: &StreamName) -> Claim {
        let key = lease_key(&name.app, &name.name);
        let claim = match self
            .registry
            .take(&key, &self.node.node_id, self.lease)
            .await
        {
            Ok(holder) if holder == self.node.node_id => Claim::Granted,
            Ok(holder) => return Claim::Elsewhere(holder),
            Err(err) => match self.on_down {
                RegistryDown::Allow => {
                    tracing::warn!(stream = %name.masked(), "publishing without a lease ({err}); it is taken once the registry returns");
                    Claim::Unregistered
                }
                RegistryDown::Refuse => return Claim::RegistryDown,
            },
        };
        self.held()
            .entry(key)
            .and_modify(|held| held.since = Instant::now())
            .or_insert_with(|| Held {
                app: name.app.clone(),
                name: name.name.clone(),
                index: Vec::new(),
                kick: None,
                since: Instant::now(),
            });
        self.changed.notify_one();
        claim
    }

    /// Names a claimed stream in the registry, by its id and its user's name (what
    /// players and the API use), and says how to end it should another node turn
    /// out to hold it.
    pub fn describe(
        &self,
        name: &StreamName,
        id: &str,
        user: Option<&str>,
        kick: CancellationToken,
    ) {
        let key = lease_key(&name.app, &name.name);
        if let Some(held) = self.held().get_mut(&key) {
            held.index = std::iter::once(format!("prism:id:{id}"))
                .chain(std::iter::once(name_key(&name.app, id)))
                .chain(user.map(|user| name_key(&name.app, user)))
                .collect();
            held.kick = Some(kick);
        }
        self.changed.notify_one();
    }

    /// The node that holds the stream players call `app/name` (its id, its user's
    /// name, or with `by_key` its publish key), unless that is this node or no node.
    pub async fn locate(&self, app: &str, name: &str, by_key: bool) -> Option<NodeInfo> {
        let mut holder = self.registry.get(&name_key(app, name)).await.ok().flatten();
        if holder.is_none() && by_key {
            holder = self
                .registry
                .get(&lease_key(app, name))
                .await
                .ok()
                .flatten();
        }
        self.other_node(holder?).await
    }

    /// Where a player here finds `app/name` when another node holds it: the hub
    /// name of this node's pull of it from that node (started unless it runs).
    /// `None` when no other node holds it (it is local, or nowhere yet).
    pub async fn pulled(&self, app: &str, name: &str, by_key: bool) -> Option<String> {
        let origin = self.locate(app, name, by_key).await?;
        Some(self.pulls.ensure(app, name, origin))
    }

    /// Streams this node pulls from other nodes for its players now.
    pub fn pulls_running(&self) -> usize {
        self.pulls.running()
    }

    /// The node that holds the stream with this id, unless that is this node or none.
    pub async fn locate_id(&self, id: &str) -> Option<NodeInfo> {
        let holder = self
            .registry
            .get(&format!("prism:id:{id}"))
            .await
            .ok()
            .flatten();
        self.other_node(holder?).await
    }

    async fn other_node(&self, node_id: String) -> Option<NodeInfo> {
        if node_id == self.node.node_id {
            return None;
        }
        let info = self
            .registry
            .get(&node_key(&node_id))
            .await
            .ok()
            .flatten()?;
        serde_json::from_str(&info).ok()
    }

    /// Every node present in the registry (this one included).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, RegistryError> {
        let values = self.registry.values_under("prism:node:").await?;
        Ok(values
            .iter()
            .filter_map(|value| serde_json::from_str(value).ok())
            .collect())
    }

    /// Keeps this node's presence and its leases alive until `shutdown`, releases
    /// the leases of streams that ended, and takes those published while Redis was
    /// away; at shutdown releases everything it holds.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let renew_every = self.lease / 3;
        let mut next_renewal = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(CHECK_EVERY) => {}
                () = self.changed.notified() => next_renewal = Instant::now(),
            }
            self.release_ended().await;
            if Instant::now() >= next_renewal {
                self.renew().await;
                next_renewal = Instant::now() + renew_every;
            }
        }
        self.leave().await;
    }

    /// One round: this node's presence, then every held stream's lease and index.
    async fn renew(&self) {
        let presence = self.node.with_draining(self.drain.is_draining());
        let presence = serde_json::to_string(&presence).unwrap_or_default();
        if self
            .registry
            .set(&node_key(&self.node.node_id), &presence, self.lease)
            .await
            .is_err()
        {
            return;
        }
        let keys: Vec<(String, Vec<String>)> = self
            .held()
            .iter()
            .map(|(key, held)| (key.clone(), held.index.clone()))
            .collect();
        for (key, index) in keys {
            match self
                .registry
                .take(&key, &self.node.node_id, self.lease)
                .await
            {
                Ok(holder) if holder == self.node.node_id => {
                    for entry in &index {
                        if self
                            .registry
                            .set(entry, &self.node.node_id, self.lease)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Ok(holder) => self.lost(&key, &holder),
                Err(_) => return,
            }
        }
    }

    /// Another node holds a stream this node publishes (both published while Redis
    /// was away): this node's copy ends, so that the cluster has one again.
    fn lost(&self, key: &str, holder: &str) {
        if let Some(held) = self.held().remove(key) {
            tracing::warn!(
                node = holder,
                "another node holds a stream published here while the registry was away; ending it here"
            );
            if let Some(kick) = held.kick {
                kick.cancel();
            }
        }
    }

    /// Releases the leases and index entries of streams that are no longer live.
    async fn release_ended(&self) {
        let ended: Vec<(String, Held)> = {
            let mut held = self.held();
            let keys: Vec<String> = held
                .iter()
                .filter(|(_, h)| {
                    h.since.elapsed() >= CLAIM_SETTLES && !self.hub.is_live(&h.app, &h.name)
                })
                .map(|(key, _)| key.clone())
                .collect();
            keys.into_iter()
                .filter_map(|key| held.remove_entry(&key))
                .collect()
        };
        for (key, held) in ended {
            self.release(&key, &held).await;
        }
    }

    async fn release(&self, key: &str, held: &Held) {
        // Failures are left to the keys' expiry.
        let me = &self.node.node_id;
        for entry in held.index.iter().map(String::as_str).chain([key]) {
            if self.registry.release(entry, me).await.is_err() {
                return;
            }
        }
    }

    /// At shutdown: every lease and this node's presence, released.
    async fn leave(&self) {
        let held: Vec<(String, Held)> = self.held().drain().collect();
        for (key, held) in &held {
            self.release(key, held).await;
        }
        let _ = self.registry.delete(&node_key(&self.node.node_id)).await;
    }
}

/// The lease of stream `app/name`: the name is a publish key, so only a digest of
/// it goes into Redis.
fn lease_key(app: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{app}/{name}"));
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("prism:lease:{hex}")
}

/// A public name of a stream (its id, its user's name) in the index.
fn name_key(app: &str, name: &str) -> String {
    format!("prism:name:{app}/{name}")
}

/// A node's presence.
fn node_key(node_id: &str) -> String {
    format!("prism:node:{node_id}")
}
