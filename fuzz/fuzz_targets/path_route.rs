//! Request path → normalization → route matching: the canonical form holds its invariants and a
//! path under `/private/` never reaches another route, however it was spelled.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use orchestra_config::harness::{check_sample_route, sample_snapshot};
use orchestra_config::Snapshot;

static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let snapshot = SNAPSHOT.get_or_init(sample_snapshot);
    let method = if selector & 1 == 0 {
        http::Method::GET
    } else {
        http::Method::DELETE
    };
    let host = match selector >> 1 & 3 {
        0 => None,
        1 => Some("a.example"),
        2 => Some("A.EXAMPLE:8080"),
        _ => Some("other.test"),
    };
    if let Some(normalized) = orchestra_ingress::harness::check_path(path) {
        check_sample_route(snapshot, &method, host, &normalized);
    }
});
