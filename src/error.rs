//! The one error type at the application edge.

use std::net::SocketAddr;

use crate::config::ConfigError;

/// Why prism could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration did not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Presets, user files or TLS could not be set up.
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    /// The RTMPS certificate or key could not be loaded.
    #[error(transparent)]
    ServerTls(#[from] crate::server::tls::ServerTlsError),
    /// Logging could not be set up.
    #[error(transparent)]
    Logging(#[from] crate::logging::LoggingError),
    /// The node cannot take part in the cluster it is configured for.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The connection workers' threads could not be started.
    #[error("cannot start the connection workers: {0}")]
    Workers(std::io::Error),
}
