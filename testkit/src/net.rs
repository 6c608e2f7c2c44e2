//! Loopback port helpers.

use std::net::{SocketAddr, TcpListener};

/// Returns a `127.0.0.1` address whose port was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and releasing the socket, so another
/// process may take it before the caller binds it; callers that start a process on it
/// should be ready to retry.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// Returns a `127.0.0.1` address on which nothing listens, for "upstream down" tests.
///
/// Same mechanism (and the same small race) as [`free_addr`]: a connection to it is
/// refused unless some other process binds the port in the meantime.
pub fn closed_addr() -> std::io::Result<SocketAddr> {
    free_addr()
}
