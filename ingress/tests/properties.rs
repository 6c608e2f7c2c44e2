//! The HTTP/1 head fuzz target's checks (`fuzz/fuzz_targets/http1_head.rs`) as a bounded property
//! test in the normal test run: generated heads mixing bypass spellings, hosts, upgrades and
//! forwarded headers.

use std::net::IpAddr;

use orchestra_ingress::harness::check_head;
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("//"),
        Just("."),
        Just(".."),
        Just("%2e"),
        Just("%2E%2e"),
        Just("%2F"),
        Just("%5c"),
        Just("%70"),
        Just("private"),
        Just("api"),
        Just("%3f"),
        Just("%"),
        Just("\\"),
        Just("a"),
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|v| format!("/{}", v.concat()))
}

fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Host: a.example".to_string()),
        Just("Host: a.example:8080".to_string()),
        Just("Host: bad host".to_string()),
        Just("Host: u@a.example".to_string()),
        Just("Upgrade: websocket\r\nConnection: Upgrade".to_string()),
        Just("Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings".to_string()),
        Just("Upgrade: WebSocket, h2c".to_string()),
        Just("X-Forwarded-For: 6.6.6.6".to_string()),
        Just("X-Forwarded-For: 1.2.3.4, 10.0.0.1".to_string()),
        Just("X-Forwarded-Proto: https".to_string()),
        Just("X-Forwarded-Host: evil.example".to_string()),
        "[a-z-]{1,8}: [ -~]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn http1_heads(
        method in prop_oneof![Just("GET"), Just("POST"), Just("OPTIONS"), Just("BREW")],
        path in path(),
        query in proptest::option::of("[a-z=&%.]{0,8}"),
        headers in proptest::collection::vec(header(), 0..5),
        peer in any::<[u8; 4]>(),
        trust in any::<bool>(),
    ) {
        let mut text = format!("{method} {path}");
        if let Some(q) = query {
            text.push('?');
            text.push_str(&q);
        }
        text.push_str(" HTTP/1.1\r\n");
        for h in headers {
            text.push_str(&h);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        let _ = check_head(text.as_bytes(), IpAddr::from(peer), trust);
    }

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), trust in any::<bool>()) {
        let _ = check_head(&bytes, IpAddr::from([127, 0, 0, 1]), trust);
    }
}

/// The harness does reach routing for ordinary and bypass-shaped heads.
#[test]
fn harness_accepts_and_normalizes_known_heads() {
    let peer = IpAddr::from([10, 0, 0, 1]);
    let head = b"GET /public/%2e%2E/%70rivate//x?q=1 HTTP/1.1\r\nHost: a.example\r\n\
                 Upgrade: h2c\r\nConnection: Upgrade\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
    let checked = check_head(head, peer, false).expect("accepted");
    assert_eq!(checked.path, "/private/x");
    assert_eq!(checked.host.as_deref(), Some("a.example"));
    assert!(check_head(b"GET /a%2Fb HTTP/1.1\r\n\r\n", peer, true).is_none());
    assert!(check_head(b"GET /.. HTTP/1.1\r\n\r\n", peer, true).is_none());
}
