//! Protocol upgrades: only `Upgrade: websocket` may turn a request into a tunnel.
//!
//! An `Upgrade: h2c` (or any other token) that reached an upstream able to switch protocols
//! would let every later request on that connection skip routing and plugins. So a request
//! whose `Upgrade` names anything but `websocket` is proxied as a plain request: the `Upgrade`
//! header and the `upgrade` token of `Connection` are removed before it leaves the gateway.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue};
use orchestra_plugins::HeaderOps;

/// What a request's `Upgrade` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// No `Upgrade` header.
    None,
    /// `Upgrade: websocket` (one token, any case).
    WebSocket,
    /// Anything else (`h2c`, `TLS/1.0`, several tokens...): removed before proxying.
    Other,
}

impl Upgrade {
    /// Classifies the `Upgrade` header(s) of `headers`.
    pub fn of(headers: &HeaderMap) -> Upgrade {
        let mut values = headers.get_all(UPGRADE).iter();
        match (values.next(), values.next()) {
            (None, _) => Upgrade::None,
            (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket") => {
                Upgrade::WebSocket
            }
            _ => Upgrade::Other,
        }
    }
}

/// Removes a non-WebSocket upgrade from the headers going upstream: the `Upgrade` header and the
/// `upgrade` token of `Connection` (the other `Connection` tokens are kept). Returns what the
/// request had asked for.
pub fn strip_foreign_upgrade(headers: &mut dyn HeaderOps) -> Upgrade {
    let kind = match headers.as_map() {
        Some(map) => Upgrade::of(map),
        None if headers.get(&UPGRADE).is_some() => Upgrade::Other,
        None => Upgrade::None,
    };
    if kind != Upgrade::Other {
        return kind;
    }
    headers.remove(&UPGRADE);
    let kept = headers.as_map().map(|map| {
        let mut kept: Vec<&[u8]> = Vec::new();
        for v in map.get_all(CONNECTION) {
            for token in v.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if !token.is_empty() && !token.eq_ignore_ascii_case(b"upgrade") {
                    kept.push(token);
                }
            }
        }
        kept.join(&b", "[..])
    });
    headers.remove(&CONNECTION);
    if let Some(kept) = kept.filter(|k| !k.is_empty()) {
        if let Ok(v) = HeaderValue::from_bytes(&kept) {
            headers.set(CONNECTION, v);
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn classifies() {
        assert_eq!(Upgrade::of(&map(&[])), Upgrade::None);
        assert_eq!(
            Upgrade::of(&map(&[("upgrade", "WebSocket")])),
            Upgrade::WebSocket
        );
        assert_eq!(Upgrade::of(&map(&[("upgrade", "h2c")])), Upgrade::Other);
        assert_eq!(
            Upgrade::of(&map(&[("upgrade", "websocket, h2c")])),
            Upgrade::Other
        );
        assert_eq!(
            Upgrade::of(&map(&[("upgrade", "websocket"), ("upgrade", "h2c")])),
            Upgrade::Other
        );
    }

    #[test]
    fn strips_other_upgrades_keeps_websocket() {
        let mut h = map(&[
            ("upgrade", "h2c"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ]);
        assert_eq!(strip_foreign_upgrade(&mut h), Upgrade::Other);
        assert!(h.get(UPGRADE).is_none());
        assert_eq!(
            h.get(CONNECTION).map(|v| v.as_bytes()),
            Some(&b"HTTP2-Settings"[..])
        );
        let mut h = map(&[("upgrade", "h2c"), ("connection", "upgrade")]);
        strip_foreign_upgrade(&mut h);
        assert!(h.get(CONNECTION).is_none() && h.get(UPGRADE).is_none());
        let mut h = map(&[("upgrade", "websocket"), ("connection", "Upgrade")]);
        assert_eq!(strip_foreign_upgrade(&mut h), Upgrade::WebSocket);
        assert!(h.get(UPGRADE).is_some() && h.get(CONNECTION).is_some());
    }
}
