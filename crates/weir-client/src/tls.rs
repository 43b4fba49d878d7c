//! TLS for the native connection: rustls with the `ring` crypto provider.
//!
//! [`TlsOptions`] says which certificate authorities to trust and which name the server's
//! certificate must carry; [`ConnectOptions::tls`] turns it on. The handshake runs right after
//! the TCP connect, under the connect timeout; the protocol's hello then travels inside the
//! session.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::conn::{ReadHalf, WriteHalf};
use crate::{ClientError, ConnectOptions};

/// How to secure the connection: the trusted certificate authorities and the server's name.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, ConnectOptions, TlsOptions};
///
/// let tls = TlsOptions::from_pem_file("/etc/weir/ca.pem", "weir.example.com")?;
/// let options = ConnectOptions::default().tls(tls).token("producer-token-0123456789");
/// let client = Client::connect_with("weir.example.com:7400", options).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsOptions {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

impl TlsOptions {
    /// Trusts the CA certificates in `ca_pem` (one or more PEM `CERTIFICATE` blocks) and expects
    /// the server's certificate to be valid for `server_name` (a DNS name or an IP address).
    pub fn from_pem(ca_pem: &[u8], server_name: &str) -> Result<TlsOptions, ClientError> {
        let certs = CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientError::Tls(format!("the CA certificates are not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Tls(
                "no CERTIFICATE block among the CA certificates (expected PEM)".to_string(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("unusable CA certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsOptions::with_config(Arc::new(config), server_name)
    }

    /// [`TlsOptions::from_pem`] with the CA certificates read from a PEM file; an unreadable
    /// file is an error naming it.
    pub fn from_pem_file(
        ca_path: impl AsRef<Path>,
        server_name: &str,
    ) -> Result<TlsOptions, ClientError> {
        let path = ca_path.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Tls(format!(
                "cannot read the CA certificates {}: {e}",
                path.display()
            ))
        })?;
        TlsOptions::from_pem(&pem, server_name).map_err(|e| match e {
            ClientError::Tls(reason) => ClientError::Tls(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// A ready rustls client configuration (other roots, client certificates, another
    /// provider) and the name the server's certificate must be valid for.
    pub fn with_config(
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<TlsOptions, ClientError> {
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Tls(format!("bad server name {server_name:?}: {e}")))?;
        Ok(TlsOptions {
            connector: tokio_rustls::TlsConnector::from(config),
            server_name,
        })
    }

    /// The name the server's certificate must be valid for.
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// These options over TLS: the connection is encrypted and the server authenticated by its
    /// certificate (see [`TlsOptions`]).
    pub fn tls(mut self, tls: TlsOptions) -> ConnectOptions {
        self.tls = Some(tls);
        self
    }
}

/// Splits a connected stream, after the TLS handshake when `tls` is set (bounded by `timeout`).
pub(crate) async fn secure(
    stream: TcpStream,
    tls: Option<&TlsOptions>,
    addr: &str,
    timeout: Duration,
) -> Result<(ReadHalf, WriteHalf), ClientError> {
    let Some(tls) = tls else {
        let (rd, wr) = stream.into_split();
        return Ok((Box::new(rd), Box::new(wr)));
    };
    let handshake = tls.connector.connect(tls.server_name.clone(), stream);
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(ClientError::Timeout(timeout)),
        Ok(Err(e)) => Err(ClientError::Handshake {
            addr: addr.to_string(),
            code: None,
            message: format!("TLS handshake failed: {}", tls_reason(&e)),
            retry_after: None,
        }),
        Ok(Ok(stream)) => {
            let (rd, wr) = tokio::io::split(stream);
            Ok((Box::new(rd), Box::new(wr)))
        }
    }
}

/// The rustls error behind an I/O error, when there is one (e.g. "invalid peer certificate:
/// UnknownIssuer").
fn tls_reason(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<TlsOptions, ClientError>) -> String {
        match result {
            Err(ClientError::Tls(reason)) => reason,
            other => panic!("expected a TLS setup error, got {other:?}"),
        }
    }

    #[test]
    fn a_ca_without_certificates_is_refused() {
        let reason = reason(TlsOptions::from_pem(b"hello\n", "localhost"));
        assert!(reason.contains("no CERTIFICATE block"), "{reason}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let path = std::env::temp_dir().join("weir-no-such-ca-file.pem");
        let reason = reason(TlsOptions::from_pem_file(&path, "localhost"));
        assert!(reason.contains(&path.display().to_string()), "{reason}");
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let reason = reason(TlsOptions::with_config(Arc::new(config), "not a name!"));
        assert!(reason.contains("bad server name"), "{reason}");
    }
}
