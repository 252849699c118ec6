//! The PROXY protocol header (version 2, HAProxy's `send-proxy-v2`) that a TCP
//! balancer sends before the client's first byte: behind a balancer every
//! connection comes from the balancer's address, and without the header the
//! per-address limits, the log and the API would all see that one address.
//!
//! A listener either expects the header on every connection (`[rtmp]
//! proxy_protocol = true`) or on none: a connection without it on the first kind,
//! or with one on the second, is refused. Trusting a header from anyone is what
//! makes the address spoofable, so a listener that expects it must be reachable
//! only through the balancer (README, "Running several nodes").

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// The 12 bytes every version 2 header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part: signature, version and command, family, length of the rest.
const FIXED: usize = 16;

/// The most address and TLV bytes accepted after the fixed part. HAProxy sends 12
/// (IPv4) or 36 (IPv6) plus whatever TLVs it is told to add (unique id, TLS
/// details): a few hundred at most. The header's own limit is 65,535.
pub const MAX_REST: usize = 1024;

/// Why a connection's PROXY header was refused; the connection is closed with it
/// logged, and nothing else is affected.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The listener expects a header and the connection began with something else.
    #[error(
        "no PROXY protocol v2 header (this listener expects one from its balancer: \
         `send-proxy-v2` in HAProxy)"
    )]
    Missing,
    /// A version 1 (text) header: only version 2 is accepted.
    #[error("a PROXY protocol v1 header; only v2 is accepted (`send-proxy-v2` in HAProxy)")]
    Version1,
    /// A header on a listener that does not expect one (`[rtmp] proxy_protocol` off).
    #[error(
        "a PROXY protocol header on a listener that does not expect one ([rtmp] proxy_protocol is off)"
    )]
    Unexpected,
    /// The header claims more address and TLV bytes than [`MAX_REST`].
    #[error("PROXY protocol header of {0} bytes is too long (at most {MAX_REST})")]
    TooLong(usize),
    /// The header is not well formed.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    /// The connection closed or failed before the header was complete.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads exactly the header from `io`, leaving the client's own bytes unread, and
/// returns the client's address: `None` for a `LOCAL` header (the balancer's own
/// connection, e.g. a health check) or one that carries no IP addresses, where the
/// connection's own address stands.
pub async fn read<R>(io: &mut R) -> Result<Option<SocketAddr>, ProxyHeaderError>
where
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; FIXED + MAX_REST];
    io.read_exact(&mut header[..FIXED]).await?;
    let rest = rest_len(&header[..FIXED])?;
    io.read_exact(&mut header[FIXED..FIXED + rest]).await?;
    client_address(&header[..FIXED + rest])
}

/// Refuses a connection to a listener that does not expect a header when its first
/// byte starts one: `\r` cannot begin an RTMP handshake (C0 is 3) or a TLS record
/// (22), and neither can the `P` of `PROXY`. Waits for the first byte without
/// consuming it.
pub async fn refuse_unexpected(socket: &TcpStream) -> Result<(), ProxyHeaderError> {
    let mut first = [0u8; 1];
    match socket.peek(&mut first).await? {
        1 if first[0] == SIGNATURE[0] || first[0] == b'P' => Err(ProxyHeaderError::Unexpected),
        _ => Ok(()),
    }
}

/// From the fixed part: how many bytes follow it.
fn rest_len(fixed: &[u8]) -> Result<usize, ProxyHeaderError> {
    if fixed.starts_with(b"PROXY ") {
        return Err(ProxyHeaderError::Version1);
    }
    if fixed[..SIGNATURE.len()] != SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    let rest = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if rest > MAX_REST {
        return Err(ProxyHeaderError::TooLong(rest));
    }
    Ok(rest)
}

/// The client's address from a whole header (fixed part and the rest).
fn client_address(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let parsed =
        Header::try_from(header).map_err(|err| ProxyHeaderError::Invalid(err.to_string()))?;
    if parsed.command == Command::Local {
        return Ok(None);
    }
    Ok(match parsed.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Command, Protocol, Version};

    fn header(addresses: impl Into<ppp::v2::Addresses>, command: Command) -> Vec<u8> {
        Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn reads_the_clients_address_and_leaves_its_bytes_unread() {
        let client: SocketAddr = "203.0.113.7:50123".parse().unwrap();
        let proxy: SocketAddr = "10.0.0.2:1935".parse().unwrap();
        let mut input = header((client, proxy), Command::Proxy);
        input.extend_from_slice(&[3, 0, 0, 0]);
        let mut io = &input[..];
        assert_eq!(read(&mut io).await.unwrap(), Some(client));
        assert_eq!(
            io,
            &[3, 0, 0, 0],
            "the RTMP handshake's bytes stay for the session"
        );

        let v6: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        let to: SocketAddr = "[2001:db8::2]:1935".parse().unwrap();
        let input = header((v6, to), Command::Proxy);
        assert_eq!(read(&mut &input[..]).await.unwrap(), Some(v6));
    }

    #[tokio::test]
    async fn a_local_header_keeps_the_connections_own_address() {
        let input = header(ppp::v2::Addresses::Unspecified, Command::Local);
        assert_eq!(read(&mut &input[..]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn refuses_what_is_not_a_v2_header() {
        let rtmp = [3u8; 1537];
        assert!(matches!(
            read(&mut &rtmp[..]).await,
            Err(ProxyHeaderError::Missing)
        ));
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.2 50123 1935\r\n\x03";
        assert!(matches!(
            read(&mut &v1[..]).await,
            Err(ProxyHeaderError::Version1)
        ));
        let short = &SIGNATURE[..8];
        assert!(matches!(
            read(&mut &short[..]).await,
            Err(ProxyHeaderError::Io(_))
        ));
    }

    #[tokio::test]
    async fn bounds_the_length_and_checks_the_contents() {
        let mut long = SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(
            read(&mut &long[..]).await,
            Err(ProxyHeaderError::TooLong(65535))
        ));

        // Version 3, an IPv4 family with too few address bytes, an unknown command.
        for fixed in [[0x31, 0x11, 0, 12], [0x21, 0x11, 0, 4], [0x2f, 0x11, 0, 12]] {
            let mut bad = SIGNATURE.to_vec();
            bad.extend_from_slice(&fixed);
            bad.extend_from_slice(&[0u8; 12][..usize::from(fixed[3])]);
            let result = read(&mut &bad[..]).await;
            assert!(
                matches!(result, Err(ProxyHeaderError::Invalid(_))),
                "{fixed:?}: {result:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever follows the signature, the checks answer without panicking, and
        /// an address comes only from a header that says how long it is.
        #[test]
        fn any_bytes_after_the_signature_give_an_answer(
            fixed in proptest::array::uniform4(proptest::num::u8::ANY),
            rest in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let mut input = SIGNATURE.to_vec();
            input.extend_from_slice(&fixed);
            if let Ok(len) = rest_len(&input) {
                input.extend_from_slice(&rest);
                if len <= rest.len() {
                    let _ = client_address(&input[..FIXED + len]);
                }
            }
        }
    }
}
