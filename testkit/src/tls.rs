//! Self-signed certificates and rustls configurations for tests.
//!
//! All configurations use rustls' `ring` provider explicitly, so they never depend on a
//! process-wide default provider being installed.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Boxed error used by the fallible helpers of this crate.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// ALPN protocol ids for HTTP/2 then HTTP/1.1, in server preference order.
pub const ALPN_H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A self-signed certificate and its private key.
#[derive(Clone, Debug)]
pub struct SelfSigned {
    /// The certificate, PEM encoded.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM encoded.
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl SelfSigned {
    /// Generates a certificate valid for `localhost`, `127.0.0.1` and `::1`.
    pub fn localhost() -> Result<Self, BoxError> {
        Self::for_names(&["localhost", "127.0.0.1", "::1"])
    }

    /// Generates a certificate for the given DNS names and/or IP addresses.
    pub fn for_names(names: &[&str]) -> Result<Self, BoxError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.key_pair.serialize_pem(),
            cert_der: certified.cert.der().clone(),
            key_der: certified.key_pair.serialize_der(),
        })
    }

    /// The certificate in DER form.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The private key in DER form.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// rustls' `ring` crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `cert` and offering the given ALPN protocols.
pub fn server_config(cert: &SelfSigned, alpn: &[&[u8]]) -> Result<ServerConfig, BoxError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der()], cert.key_der())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Parses every certificate of a PEM document.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, BoxError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err("no certificate found in PEM input".into());
    }
    Ok(certs)
}

/// A client configuration that trusts only the certificates in `ca_pem` and offers
/// the given ALPN protocols.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<ClientConfig, BoxError> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(ca_pem)? {
        roots.add(cert)?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
