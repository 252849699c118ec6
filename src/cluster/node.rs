//! A node as the others see it: its id and where its RTMP and HTTP listeners are
//! reached, as written to the registry.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;

/// Why this node cannot take part in the cluster it is configured for; prism does
/// not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The listener is bound to a wildcard address, which other nodes cannot dial.
    #[error(
        "cluster.{key}: the listener is bound to {bound}, which other nodes cannot reach; \
         set cluster.{key} to this node's HOST:PORT"
    )]
    Advertise {
        /// `advertise_rtmp` or `advertise_http`.
        key: &'static str,
        /// The bound address.
        bound: SocketAddr,
    },
    /// The registry's URL was refused.
    #[error("cluster.redis_url: {0}")]
    Registry(super::RegistryError),
}

/// A node in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `[cluster] node_id`, or the host name.
    pub node_id: String,
    /// `HOST:PORT` of its RTMP listener, for pulls of its streams.
    pub rtmp: String,
    /// `HOST:PORT` of its HTTP listener, for its stream list and forwarded control.
    pub http: String,
    /// Whether its RTMP listener expects a PROXY protocol header first (`[rtmp]
    /// proxy_protocol`): a node that pulls from it sends one.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Whether it drains (takes no new publishes).
    #[serde(default)]
    pub draining: bool,
}

impl NodeInfo {
    /// This node, from its configuration and the addresses its listeners are bound to.
    pub fn of(
        config: &ClusterConfig,
        proxy_protocol: bool,
        rtmp: SocketAddr,
        http: SocketAddr,
    ) -> Result<Self, ClusterError> {
        let advertise = |configured: &Option<String>, bound: SocketAddr, key| match configured {
            Some(address) => Ok(address.clone()),
            None if bound.ip().is_unspecified() => Err(ClusterError::Advertise { key, bound }),
            None => Ok(bound.to_string()),
        };
        Ok(Self {
            node_id: config.node_id.clone().unwrap_or_else(host_name),
            rtmp: advertise(&config.advertise_rtmp, rtmp, "advertise_rtmp")?,
            http: advertise(&config.advertise_http, http, "advertise_http")?,
            proxy_protocol,
            draining: false,
        })
    }

    /// The same node, saying whether it drains.
    pub fn with_draining(&self, draining: bool) -> Self {
        Self {
            draining,
            ..self.clone()
        }
    }
}

/// The machine's host name (a Kubernetes pod's name), or `prism`.
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if done == 0 && !name.is_empty() => name.to_owned(),
        _ => "prism".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_default_to_the_bound_ones_unless_wildcard() {
        let mut config = ClusterConfig {
            node_id: Some("n1".into()),
            ..ClusterConfig::default()
        };
        let rtmp: SocketAddr = "10.0.0.5:1935".parse().unwrap();
        let http: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        let node = NodeInfo::of(&config, false, rtmp, http).unwrap();
        assert_eq!(
            (node.rtmp.as_str(), node.http.as_str()),
            ("10.0.0.5:1935", "10.0.0.5:8080")
        );

        let wildcard: SocketAddr = "0.0.0.0:1935".parse().unwrap();
        let err = NodeInfo::of(&config, false, wildcard, http).unwrap_err();
        assert!(err.to_string().contains("cluster.advertise_rtmp"), "{err}");
        config.advertise_rtmp = Some("prism-1.internal:1935".into());
        let node = NodeInfo::of(&config, false, wildcard, http).unwrap();
        assert_eq!(node.rtmp, "prism-1.internal:1935");
        assert!(!host_name().is_empty());
    }
}
