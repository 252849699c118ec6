//! A node among several behind one balancer: draining before it stops. A node
//! without `[cluster]` settings behaves exactly as a single prism (it can still be
//! drained, which a single prism's restart benefits from too).

pub mod drain;

pub use drain::Drain;
