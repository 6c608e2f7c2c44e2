//! rustls client configurations of Orchestra's own clients: `orchestra-agent` dialing the gateway
//! (QUIC and WebSocket) and `orchestra-loadtest` driving it (TCP+TLS and QUIC).
//!
//! One place builds them, with the ring provider named explicitly (no process-wide default is
//! needed), the versions the transport allows ([`Versions`]), the ALPN protocols to offer, and
//! one of two ways to check the server ([`Verify`]): a root store the caller filled (a `ca` file,
//! the public web PKI, a system bundle), or — development and self-signed test setups only —
//! any certificate ([`AnyCertificate`]), whose handshake signatures are still checked so the peer
//! must hold the key of the certificate it shows. Where the roots come from, and how a bad one is
//! reported, stays with each client.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How the server's certificate is checked.
#[derive(Debug)]
pub enum Verify {
    /// Against these roots (and the server name), as rustls's WebPKI verifier does.
    Roots(RootCertStore),
    /// Any certificate is accepted; handshake signatures are still checked (development only).
    AnyCertificate,
}

/// The TLS versions offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3 (rustls's safe defaults), for TCP.
    Safe,
    /// TLS 1.3 only, as QUIC requires.
    Tls13Only,
}

/// A client configuration that checks the server by `verify`, offers `versions` and the `alpn`
/// protocols in order.
pub fn client_config(
    verify: Verify,
    versions: Versions,
    alpn: &[&[u8]],
) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone());
    let builder = match versions {
        Versions::Safe => builder.with_safe_default_protocol_versions(),
        Versions::Tls13Only => builder.with_protocol_versions(&[&rustls::version::TLS13]),
    }?;
    let mut config = match verify {
        Verify::Roots(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::AnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Accepts any server certificate, still checking the handshake signatures with the provider's
/// algorithms ([`Verify::AnyCertificate`]).
#[derive(Debug)]
pub struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
