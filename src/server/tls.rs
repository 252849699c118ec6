//! TLS for the RTMPS listener: the operator's certificate chain and key, read once
//! at start, served with rustls (ring provider) in the TLS versions the
//! configuration lists (`[rtmps] tls_versions`, 1.2 and 1.3 by default).
//!
//! Every way the files can be wrong is a startup error that names the file, so
//! a typo in a path never turns into a listener that silently refuses everyone.
//!
//! No TLS 1.3 session tickets are sent. librtmp (rtmpdump, GStreamer's rtmpsrc and
//! rtmpsink, encoders built on it) reads the socket through GnuTLS and treats every
//! negative return of `gnutls_record_recv` as a byte count: the tickets a TLS 1.3
//! server sends after the handshake make that call return an error code, which
//! corrupts librtmp's buffer and fails its RTMP handshake ("handshake failed").
//! Without tickets librtmp works under TLS 1.3 too. Resumption is worth nothing
//! here anyway: an RTMPS connection lives as long as the stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::SupportedProtocolVersion;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsVersion;

/// Why the RTMPS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// The certificate file could not be read or parsed.
    #[error("rtmps.cert_file {}: {reason}", path.display())]
    Cert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file could not be read or parsed.
    #[error("rtmps.key_file {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not belong to the certificate).
    #[error("rtmps: certificate {} and key {}: {reason}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// Reads the PEM certificate chain and private key and builds the acceptor every
/// RTMPS connection shares, offering exactly `versions`.
pub fn acceptor(
    cert_file: &Path,
    key_file: &Path,
    versions: &[TlsVersion],
) -> Result<TlsAcceptor, ServerTlsError> {
    let cert_error = |reason: String| ServerTlsError::Cert {
        path: cert_file.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no PEM certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| ServerTlsError::Key {
        path: key_file.to_owned(),
        reason: e.to_string(),
    })?;
    let pair_error = |reason: String| ServerTlsError::Pair {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&protocol_versions(versions))
        .map_err(|e| pair_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| pair_error(e.to_string()))?;
    // See the module documentation: tickets break librtmp under TLS 1.3.
    config.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// rustls' versions for the configured ones, each once, in the configured order.
fn protocol_versions(versions: &[TlsVersion]) -> Vec<&'static SupportedProtocolVersion> {
    let mut out: Vec<&'static SupportedProtocolVersion> = Vec::with_capacity(2);
    for version in versions {
        let rustls_version = match version {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        };
        if !out.iter().any(|v| v.version == rustls_version.version) {
            out.push(rustls_version);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("prism-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let Err(err) = acceptor(&missing, &missing, &TlsVersion::all()) else {
            panic!("a missing file is refused")
        };
        assert!(
            err.to_string().contains("rtmps.cert_file") && err.to_string().contains("missing.pem"),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let Err(err) = acceptor(&empty, &missing, &TlsVersion::all()) else {
            panic!("a file without a certificate is refused")
        };
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The version a client offering `client` negotiates with an acceptor built for
    /// `server`, or the client's error.
    async fn negotiate(
        server: &[TlsVersion],
        client: &[&'static SupportedProtocolVersion],
    ) -> Result<rustls::ProtocolVersion, String> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = std::env::temp_dir().join(format!(
            "prism-tls-versions-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        let (cert_path, key_path) = (dir.join("chain.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, leaf.pem()).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        let acceptor = acceptor(&cert_path, &key_path, server).unwrap();
        let _ = std::fs::remove_dir_all(&dir);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(client)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (client, _server) = tokio::join!(
            connector.connect(name, client_io),
            acceptor.accept(server_io)
        );
        let client = client.map_err(|e| e.to_string())?;
        Ok(client.get_ref().1.protocol_version().unwrap())
    }

    #[tokio::test]
    async fn the_acceptor_offers_exactly_the_configured_versions() {
        use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
        use rustls::version::{TLS12, TLS13};
        let both: &[&'static SupportedProtocolVersion] = &[&TLS13, &TLS12];
        assert_eq!(negotiate(&TlsVersion::all(), both).await, Ok(TLSv1_3));
        assert_eq!(negotiate(&TlsVersion::all(), &[&TLS12]).await, Ok(TLSv1_2));
        assert_eq!(negotiate(&[TlsVersion::Tls12], both).await, Ok(TLSv1_2));
        assert_eq!(negotiate(&[TlsVersion::Tls13], both).await, Ok(TLSv1_3));
        let refused = negotiate(&[TlsVersion::Tls13], &[&TLS12]).await;
        assert!(
            refused.is_err(),
            "1.3 alone refuses a 1.2 client: {refused:?}"
        );
        let refused = negotiate(&[TlsVersion::Tls12], &[&TLS13]).await;
        assert!(
            refused.is_err(),
            "1.2 alone refuses a 1.3 client: {refused:?}"
        );
        // Listed twice is the same as once.
        let twice = [TlsVersion::Tls12, TlsVersion::Tls12];
        assert_eq!(negotiate(&twice, both).await, Ok(TLSv1_2));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("prism-tls-pair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let cert_path = dir.join(format!("{name}-cert.pem"));
            let key_path = dir.join(format!("{name}-key.pem"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        };
        let (cert_a, key_a) = make("a");
        let (_, key_b) = make("b");
        assert!(acceptor(&cert_a, &key_a, &TlsVersion::all()).is_ok());
        let Err(err) = acceptor(&cert_a, &key_b, &TlsVersion::all()) else {
            panic!("a key of another certificate is refused")
        };
        assert!(matches!(err, ServerTlsError::Pair { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
