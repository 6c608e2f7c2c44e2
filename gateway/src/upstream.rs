//! How a picked target becomes a pingora [`HttpPeer`]: protocol (ALPN), TLS and timeouts.
//!
//! pingora pools connections per peer (address, TLS name and options), so every request to the
//! same target of an unchanged upstream reuses idle connections from one pool. The peers of every
//! target are built once, when a config is applied ([`PeerIndex`], kept in
//! [`crate::state::Live`]); every front takes its attempt's peer from there
//! ([`PeerIndex::peer_for`]).

use std::borrow::Cow;
use std::net::SocketAddr;

use orchestra_config::{Snapshot, Upstream, UpstreamProtocol};
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;

use crate::pipeline::Picked;

/// Builds the peer for one attempt to `addr` of `upstream`.
///
/// `upgrade` marks a WebSocket (or other HTTP/1.1 upgrade) request: it must go over HTTP/1.1 and
/// has no read timeout once upgraded, since a tunnel may stay quiet for long stretches.
fn build_peer(
    upstream: &Upstream,
    addr: SocketAddr,
    upgrade: bool,
    preserve_header_case: bool,
) -> HttpPeer {
    let (tls, sni) = match &upstream.tls {
        Some(t) if t.sni.is_empty() => (true, addr.ip().to_string()),
        Some(t) => (true, t.sni.clone()),
        None => (false, String::new()),
    };
    let mut peer = HttpPeer::new(addr, tls, sni);
    let o = &mut peer.options;
    let t = upstream.timeouts;
    o.connection_timeout = Some(t.connect);
    o.total_connection_timeout = Some(t.connect * 2);
    o.read_timeout = (!upgrade).then_some(t.read);
    o.write_timeout = Some(t.write);
    o.idle_timeout = Some(t.idle);
    // `server.preserve_header_case`, response side (the request side is the listener's).
    o.discard_h1_header_case = !preserve_header_case;
    o.alpn = match (upstream.protocol, upgrade) {
        (_, true) | (UpstreamProtocol::H1, _) => ALPN::H1,
        (UpstreamProtocol::H2, false) => ALPN::H2H1,
        (UpstreamProtocol::H2c, false) => ALPN::H2,
    };
    if let Some(t) = &upstream.tls {
        o.verify_cert = t.verify;
        o.verify_hostname = t.verify;
    }
    peer
}

/// The peers of every target of a snapshot, built when the snapshot is applied: per upstream
/// (snapshot order), per target (balancer order), the plain and the upgrade peer.
#[derive(Debug, Default)]
pub struct PeerIndex {
    peers: Vec<Vec<[HttpPeer; 2]>>,
    /// `server.preserve_header_case` of the snapshot, for peers built on demand.
    preserve_header_case: bool,
}

impl PeerIndex {
    /// Builds the peers of every target of `snapshot`.
    pub fn build(snapshot: &Snapshot) -> PeerIndex {
        let case = snapshot.server.preserve_header_case;
        let peers = snapshot
            .upstreams
            .iter()
            .map(|u| {
                u.balancer
                    .targets()
                    .iter()
                    .map(|t| {
                        [
                            build_peer(u, t.addr, false, case),
                            build_peer(u, t.addr, true, case),
                        ]
                    })
                    .collect()
            })
            .collect();
        PeerIndex {
            peers,
            preserve_header_case: case,
        }
    }

    /// The peer of target `target` of upstream `upstream`, for an upgrade request or not.
    pub fn get(&self, upstream: usize, target: usize, upgrade: bool) -> Option<&HttpPeer> {
        self.peers
            .get(upstream)?
            .get(target)
            .map(|p| &p[usize::from(upgrade)])
    }

    /// The peer every front uses for an attempt to `picked`'s target: the one built when the
    /// config was applied, or — for a target this index does not hold — one built now by the
    /// same builder, so the pool key is the same whichever front asks.
    pub fn peer_for(&self, picked: &Picked, upgrade: bool) -> Cow<'_, HttpPeer> {
        match self.get(picked.upstream_index, picked.target_index, upgrade) {
            Some(peer) => Cow::Borrowed(peer),
            None => Cow::Owned(build_peer(
                &picked.upstream,
                picked.addr,
                upgrade,
                self.preserve_header_case,
            )),
        }
    }
}
