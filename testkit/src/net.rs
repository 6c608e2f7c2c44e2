//! Loopback port helpers.

use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// Returns a `127.0.0.1` address whose port was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0` and releasing the socket, so another
/// process may take it before the caller binds it; callers that start a process on it
/// should be ready to retry.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// Returns `n` distinct `127.0.0.1` addresses whose ports were free a moment ago.
///
/// Each port is held until all `n` are picked, so two of them can never be the same port (the
/// kernel may hand a just-released port to the next `127.0.0.1:0` bind, which is how calling
/// [`free_addr`] once per listener gave one gateway the same port for two listeners). The
/// caveat of [`free_addr`] about other processes still holds.
pub fn free_addrs(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    held.iter().map(TcpListener::local_addr).collect()
}

/// TCP sockets bound by [`closed_addr`], kept until the process exits.
static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());

/// Returns a `127.0.0.1` address on which nothing listens, for "upstream down" tests.
///
/// The port stays bound, without `listen`, by a socket this process keeps until it exits: a
/// connection to it is refused, and no other test or process can take the port in the
/// meantime (a released port could be handed to the next server that binds `127.0.0.1:0`, which
/// would then answer what the test expects to fail).
pub fn closed_addr() -> std::io::Result<SocketAddr> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    let addr = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound socket has no IP address"))?;
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_addr_refuses_connections_and_cannot_be_taken() {
        let addr = closed_addr().expect("closed addr");
        let err = std::net::TcpStream::connect(addr).expect_err("nothing listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        let err = TcpListener::bind(addr).expect_err("the port is held");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    }
}
