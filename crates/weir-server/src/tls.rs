//! Optional TLS on both listeners: rustls with the `ring` crypto provider, one certificate chain
//! and private key (PEM files) loaded once at [`crate::start`].
//!
//! When [`crate::ServerConfig::tls`] is set, the HTTP and the native listener accept TLS only. The
//! handshake runs in the connection's own task (never in the accept loop), under the listener's
//! existing timeout — the HTTP header-read timeout, the native handshake timeout — and while the
//! connection holds its connection-limit permit, so a client that opens TCP and never sends a
//! ClientHello costs one slot for a bounded time and delays no one else.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the server's certificate and key are: both PEM files, read at start.
///
/// ```
/// use weir_server::tls::TlsConfig;
///
/// let tls = TlsConfig::new("/etc/weir/server.crt", "/etc/weir/server.key");
/// assert_eq!(tls.cert_chain.to_str(), Some("/etc/weir/server.crt"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (`-----BEGIN CERTIFICATE-----` blocks).
    pub cert_chain: PathBuf,
    /// The leaf's private key: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or
    /// SEC1 (`BEGIN EC PRIVATE KEY`).
    pub private_key: PathBuf,
}

impl TlsConfig {
    /// A config from the two PEM paths.
    pub fn new(cert_chain: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            cert_chain: cert_chain.into(),
            private_key: private_key.into(),
        }
    }
}

/// Why the TLS certificate or key could not be loaded; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but holds no usable PEM block of the expected kind.
    #[error("invalid TLS {what} {}: {reason}", path.display())]
    Invalid {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the pair (e.g. the key does not match the leaf certificate).
    #[error(
        "the TLS certificate chain {} and private key {} cannot be used together: {reason}",
        cert_chain.display(),
        private_key.display()
    )]
    Mismatch {
        /// The certificate chain file.
        cert_chain: PathBuf,
        /// The private key file.
        private_key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
}

/// The acceptors of both listeners, built from one certificate and key.
#[derive(Clone)]
pub(crate) struct Acceptors {
    /// For the HTTP listener (ALPN `http/1.1`).
    pub(crate) http: tokio_rustls::TlsAcceptor,
    /// For the native listener.
    pub(crate) native: tokio_rustls::TlsAcceptor,
}

impl fmt::Debug for Acceptors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptors").finish_non_exhaustive()
    }
}

/// Reads and checks the certificate chain and key, and builds the listeners' acceptors.
pub(crate) fn load(config: &TlsConfig) -> Result<Acceptors, TlsError> {
    let certs = read_certs(&config.cert_chain)?;
    let key = read_key(&config.private_key)?;
    let mismatch = |reason: String| TlsError::Mismatch {
        cert_chain: config.cert_chain.clone(),
        private_key: config.private_key.clone(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let native = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| mismatch(e.to_string()))?;
    let mut http = native.clone();
    // The HTTP listener speaks HTTP/1.1 only; a client that offers ALPN learns so in the
    // handshake.
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Acceptors {
        http: tokio_rustls::TlsAcceptor::from(Arc::new(http)),
        native: tokio_rustls::TlsAcceptor::from(Arc::new(native)),
    })
}

const CERT_CHAIN: &str = "certificate chain";
const PRIVATE_KEY: &str = "private key";

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(CERT_CHAIN, path)?;
    let invalid = |reason: String| TlsError::Invalid {
        what: CERT_CHAIN,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "no CERTIFICATE block (expected PEM, leaf certificate first)".to_string(),
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(PRIVATE_KEY, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        what: PRIVATE_KEY,
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY, RSA PRIVATE KEY or \
                 EC PRIVATE KEY block (expected PEM)"
                .to_string(),
            other => format!("not PEM: {other}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("nope.crt");
        let key = dir.path().join("nope.key");
        let err = load(&TlsConfig::new(&cert, &key)).expect_err("missing file");
        let text = err.to_string();
        assert!(text.contains("certificate chain"), "{text}");
        assert!(text.contains(&cert.display().to_string()), "{text}");
    }

    #[test]
    fn a_file_without_pem_blocks_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("empty.crt");
        std::fs::write(&cert, "not a certificate\n").expect("write");
        let key = dir.path().join("k.key");
        let err = load(&TlsConfig::new(&cert, &key)).expect_err("no PEM");
        let text = err.to_string();
        assert!(text.contains("no CERTIFICATE block"), "{text}");
        assert!(text.contains(&cert.display().to_string()), "{text}");
    }
}
