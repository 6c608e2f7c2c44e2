//! Where the gateway is and how the agent reaches and trusts it: `gateway`, `transport`,
//! `ca` / `insecure` (and their flags).

use std::fmt;
use std::path::PathBuf;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::error::{ConfigError, COMMAND_LINE};
use super::raw::RawAgent;
use super::Overrides;

/// How the agent reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC, ALPN `orchestra-agent/1` (the default).
    Quic,
    /// WebSocket over TLS at `wss://{gateway}/agent/ws`, for networks that block UDP.
    Ws,
}

impl Transport {
    /// `"quic"` or `"ws"`.
    pub(crate) fn parse(s: &str) -> Result<Transport, String> {
        match s {
            "quic" => Ok(Transport::Quic),
            "ws" => Ok(Transport::Ws),
            _ => Err("expected \"quic\" or \"ws\"".into()),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Quic => "quic",
            Transport::Ws => "ws",
        })
    }
}

/// Which certificates the agent trusts for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The certificates of a PEM file (`ca`).
    Ca {
        /// The file, as written.
        path: PathBuf,
        /// Its certificates.
        certs: Vec<CertificateDer<'static>>,
    },
    /// The public web PKI (Mozilla's roots, `webpki-roots`): no `ca`, no `insecure`.
    WebPki,
    /// Any certificate (`insecure = true`, development only).
    Insecure,
}

/// The gateway's address: a host name or IP address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAddr {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// UDP port (QUIC) or TCP port (WebSocket).
    pub port: u16,
}

impl GatewayAddr {
    /// `HOST:PORT`, `IPv4:PORT` or `[IPv6]:PORT`.
    pub(crate) fn parse(s: &str) -> Result<GatewayAddr, String> {
        const EXPECTED: &str = "expected HOST:PORT, e.g. 127.0.0.1:8443 or gw.example.com:8443";
        if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
            return Ok(GatewayAddr {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = s.rsplit_once(':').ok_or(EXPECTED)?;
        let port: u16 = port.parse().map_err(|_| EXPECTED)?;
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !valid_host || port == 0 {
            return Err(EXPECTED.into());
        }
        Ok(GatewayAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for GatewayAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The trust of the gateway's certificate: the `--ca` / `--insecure` flag, else the file's
/// `ca` / `insecure` (both at once is an error), else the web PKI. A `ca` file is read and
/// parsed here, so a missing or empty one is a config error, not a failure at connect time.
pub(crate) fn trust(
    file: &str,
    raw: &RawAgent,
    ov: &Overrides,
    errors: &mut Vec<ConfigError>,
) -> Option<Trust> {
    let (ca, insecure, origin) = if let Some(ca) = ov.ca.as_deref() {
        (Some(ca), false, Some("--ca"))
    } else if ov.insecure {
        (None, true, Some("--insecure"))
    } else {
        (raw.ca.as_deref(), raw.insecure.unwrap_or(false), None)
    };
    match (ca, insecure) {
        (Some(_), true) => {
            errors.push(ConfigError::invalid(
                file,
                "insecure",
                "true",
                "ca and insecure = true are exclusive: trust the gateway's certificate (ca) or, \
                 for development only, any certificate (insecure)",
            ));
            None
        }
        (Some(path), false) => {
            let at = |value: &str, reason: String| match origin {
                Some(flag) => ConfigError::invalid(COMMAND_LINE, flag, value, reason),
                None => ConfigError::invalid(file, "ca", value, reason),
            };
            match std::fs::read(path) {
                Ok(pem) => {
                    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
                    match certs {
                        Ok(certs) if !certs.is_empty() => Some(Trust::Ca {
                            path: PathBuf::from(path),
                            certs,
                        }),
                        Ok(_) => {
                            errors.push(at(path, "no PEM certificate in this file".into()));
                            None
                        }
                        Err(e) => {
                            errors.push(at(path, format!("malformed PEM: {e:?}")));
                            None
                        }
                    }
                }
                Err(e) => {
                    errors.push(at(path, format!("cannot read it: {e}")));
                    None
                }
            }
        }
        (None, true) => Some(Trust::Insecure),
        (None, false) => Some(Trust::WebPki),
    }
}
