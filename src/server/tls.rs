//! TLS for the RTMPS listener: the operator's certificate chain and key, read once
//! at start, served with rustls (ring provider, TLS 1.2 and 1.3).
//!
//! Every way the files can be wrong is a startup error that names the file, so
//! a typo in a path never turns into a listener that silently refuses everyone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

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
/// RTMPS connection shares.
pub fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, ServerTlsError> {
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
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| pair_error(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = std::env::temp_dir().join(format!("prism-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let Err(err) = acceptor(&missing, &missing) else {
            panic!("a missing file is refused")
        };
        assert!(
            err.to_string().contains("rtmps.cert_file") && err.to_string().contains("missing.pem"),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let Err(err) = acceptor(&empty, &missing) else {
            panic!("a file without a certificate is refused")
        };
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
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
        assert!(acceptor(&cert_a, &key_a).is_ok());
        let Err(err) = acceptor(&cert_a, &key_b) else {
            panic!("a key of another certificate is refused")
        };
        assert!(matches!(err, ServerTlsError::Pair { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
