//! Socket options for media connections, in both directions.

use tokio::net::TcpStream;

/// Turns Nagle off: media must not wait for the peer's delayed ACK (it adds tens of
/// milliseconds to every small message that follows a large one).
pub fn send_at_once(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)
}

/// The TCP socket under a connection, plain or TLS, for socket options.
pub trait OverTcp {
    /// The socket itself.
    fn tcp(&self) -> &TcpStream;
}

impl OverTcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl OverTcp for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl OverTcp for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Acknowledges the ingest's next segment at once instead of after the delayed-ACK
/// timer. During setup an ingest that uses Nagle (nginx-rtmp does) holds each small
/// reply until its previous segment is acknowledged, so every round trip of the
/// handshake and the connect/createStream/publish exchange waited 40 ms for our
/// delayed ACK (seen on the wire by the fan-out benchmark). Linux clears the flag
/// again by itself, so it is set before every read of the setup.
pub fn ack_at_once(tcp: &TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = tcp.set_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = tcp;
}
