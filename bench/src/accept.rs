//! The accept loop the hyper-based benchmark servers share (`bench-upstream`, `bench-hyper`).

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Serves one accepted connection, plain or TLS.
pub trait ServeConn: Clone + Send + 'static {
    /// Serves `io` until the connection ends; errors are the client's business and dropped.
    fn serve<S>(self, io: S) -> impl Future<Output = ()> + Send
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

/// Accepts connections on `listener` forever, each served on a task of its own by a clone of
/// `server` (after the TLS handshake when `tls` is given; a failed handshake drops the
/// connection). Only a broken listener is returned: running out of file descriptors or a
/// connection reset before `accept` backs off briefly and goes on.
pub async fn accept_loop<C: ServeConn>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    server: C,
) -> io::Result<()> {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_transient_accept_error(&e) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(true);
        let (server, tls) = (server.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => server.serve(stream).await,
                Some(acceptor) => {
                    if let Ok(tls_stream) = acceptor.accept(stream).await {
                        server.serve(tls_stream).await;
                    }
                }
            }
        });
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}
