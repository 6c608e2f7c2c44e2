//! The certificate of the TLS listener and of the QUIC endpoint (HTTP/3 and the agent protocol).
//!
//! With `[tls] cert/key` configured, both files are loaded and checked before any listener starts
//! (pingora would panic on a bad file). Without them a self-signed certificate is generated with
//! `rcgen` for `localhost`, `127.0.0.1`, `::1` and the host name, written to
//! `{data_dir}/tls/self-signed.crt` and `.key`, and its location logged.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orchestra_config::{Snapshot, TlsFiles};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why the listener certificate could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable item of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// Certificate generation failed.
    #[error("generating the self-signed certificate: {0}")]
    Generate(String),
    /// The key is of an unsupported type or does not parse.
    #[error("{path}: unsupported private key: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The reason.
        reason: String,
    },
}

/// The loaded certificate, ready for rustls.
#[derive(Debug, Clone)]
pub struct ListenerCert {
    /// Chain and signing key.
    pub certified: Arc<CertifiedKey>,
    /// Where the certificate came from (for logs).
    pub cert_path: PathBuf,
    /// True when generated at start.
    pub generated: bool,
}

/// Loads the configured certificate or generates the self-signed one.
pub fn listener_cert(snapshot: &Snapshot) -> Result<ListenerCert, TlsError> {
    let (files, generated) = match &snapshot.tls {
        Some(f) => (f.clone(), false),
        None => (self_signed(&snapshot.server.data_dir)?, true),
    };
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
    Ok(ListenerCert {
        certified: Arc::new(CertifiedKey::new(certs, signing)),
        cert_path: files.cert,
        generated,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path)?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut BufReader::new(&data[..])).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("bad PEM: {e}"),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read(path)?;
    rustls_pemfile::private_key(&mut BufReader::new(&data[..]))
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("bad PEM: {e}"),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: path.to_path_buf(),
            what: "no PRIVATE KEY block found".into(),
        })
}

/// Generates (each start) the self-signed certificate under `data_dir/tls/`.
fn self_signed(data_dir: &Path) -> Result<TlsFiles, TlsError> {
    let dir = data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|source| TlsError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(h) = host_name().filter(|h| h != "localhost") {
        names.push(h);
    }
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let files = TlsFiles {
        cert: dir.join("self-signed.crt"),
        key: dir.join("self-signed.key"),
    };
    write_file(&files.cert, generated.cert.pem().as_bytes(), 0o644)?;
    write_file(
        &files.key,
        generated.key_pair.serialize_pem().as_bytes(),
        0o600,
    )?;
    tracing::info!(
        cert = %files.cert.display(),
        key = %files.key.display(),
        "no [tls] configured: generated a self-signed certificate for localhost, 127.0.0.1, ::1"
    );
    Ok(files)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Write to a temporary name and rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

fn host_name() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
