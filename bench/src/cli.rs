//! Command-line pieces the benchmark binaries share.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// An optional TLS listener with its certificate and key (ALPN h2, http/1.1).
#[derive(Debug, Args)]
pub struct TlsListen {
    /// Optional TLS listener (ALPN h2, http/1.1); needs --cert and --key.
    #[arg(long, requires_all = ["cert", "key"])]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for --tls-listen.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long)]
    pub key: Option<PathBuf>,
}
