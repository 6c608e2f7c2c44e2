//! rustls client configurations for the gateway connection, built by
//! [`orchestra_tls_client`] (ring provider, explicitly, so no process-wide default is needed).
//!
//! Trust is the config's `ca` (the gateway's certificate or its CA, PEM), the public web PKI
//! (Mozilla's roots) when neither `ca` nor `insecure` is set, or — `insecure = true`, for
//! development only — any certificate. Even then the handshake signature is checked, so the
//! peer must hold the key of the certificate it shows.

use orchestra_tls_client::{Verify, Versions};
use rustls::{ClientConfig, RootCertStore};

use crate::config::Trust;

/// The TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS configuration: {0}")]
pub struct TlsError(pub String);

/// A client configuration for `trust`, offering `alpn`; TLS 1.3 only when `quic`.
pub fn client_config(trust: &Trust, alpn: &[&[u8]], quic: bool) -> Result<ClientConfig, TlsError> {
    let verify = match trust {
        Trust::Ca { certs, path } => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone()).map_err(|e| {
                    TlsError(format!("certificate in {} not usable: {e}", path.display()))
                })?;
            }
            Verify::Roots(roots)
        }
        Trust::WebPki => Verify::Roots(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        )),
        Trust::Insecure => Verify::AnyCertificate,
    };
    let versions = if quic {
        Versions::Tls13Only
    } else {
        Versions::Safe
    };
    orchestra_tls_client::client_config(verify, versions, alpn).map_err(|e| TlsError(e.to_string()))
}
