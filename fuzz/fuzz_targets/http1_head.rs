//! Raw HTTP/1 request head bytes → what the gateway does in front of pingora's proxy: http types,
//! `RequestHead` (host, normalized path, upgrade), upgrade filtering, `X-Forwarded-*`, routing.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orchestra_config::harness::{check_sample_route, sample_snapshot};
use orchestra_config::Snapshot;

static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&selector, head)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = if selector & 1 == 0 {
        IpAddr::from([203, 0, 113, selector])
    } else {
        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(selector)])
    };
    let trust_peer = selector & 2 != 0;
    if let Some(checked) = orchestra_ingress::harness::check_head(head, peer, trust_peer) {
        let snapshot = SNAPSHOT.get_or_init(sample_snapshot);
        check_sample_route(
            snapshot,
            &checked.method,
            checked.host.as_deref(),
            &checked.path,
        );
    }
});
