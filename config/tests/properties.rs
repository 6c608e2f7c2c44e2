//! The config and path/route fuzz targets' checks (`fuzz/fuzz_targets/{config,path_route}.rs`)
//! as bounded property tests in the normal test run.

use http::Method;
use orchestra_config::harness::{check_config, check_sample_route, sample_snapshot};
use orchestra_ingress::harness::check_path;
use proptest::prelude::*;

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[server]".to_string()),
        Just("header_read_timeout = \"0s\"".to_string()),
        Just("write_timeout = \"-1s\"".to_string()),
        Just("max_connections = 0".to_string()),
        Just("trusted_proxies = [\"10.0.0.0/8\", \"x\"]".to_string()),
        Just("[[upstreams]]".to_string()),
        Just("name = \"u\"".to_string()),
        Just("targets = [{ addr = \"127.0.0.1:1\", weight = 0 }]".to_string()),
        Just("targets = [{ addr = \"127.0.0.1:1\" }]".to_string()),
        Just("timeouts = { read = \"0s\" }".to_string()),
        Just("health_check = { interval = \"0ms\" }".to_string()),
        Just("[[routes]]".to_string()),
        Just("match = { path_prefix = \"/api/\", methods = [] }".to_string()),
        Just("match = { path = \"x\" }".to_string()),
        Just("upstream = \"u\"".to_string()),
        Just("serve = \"realtime\"".to_string()),
        Just("strip_prefix = true".to_string()),
        Just("plugins = [\"rl\"]".to_string()),
        Just("[plugins.rl]".to_string()),
        Just("kind = \"rate_limit\"".to_string()),
        Just("rate = \"0/s\"".to_string()),
        Just("rate = \"10/s\"".to_string()),
        "[a-z_]{1,8} = \"[ -~]{0,6}\"",
        "[ -~]{0,16}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn configs_compile_or_report(lines in proptest::collection::vec(line(), 0..16)) {
        let _ = check_config(&lines.join("\n"));
    }

    #[test]
    fn paths_route_canonically(
        pieces in proptest::collection::vec(prop_oneof![
            Just("/"), Just("//"), Just(".."), Just("."), Just("%2e%2E"), Just("%70"),
            Just("private"), Just("public"), Just("api"), Just("x"), Just("%2f"), Just("%72ivate"),
            Just("pr"), Just("\\"), Just("%41"),
        ], 0..10),
        delete in any::<bool>(),
    ) {
        let snapshot = sample_snapshot();
        let path = format!("/{}", pieces.concat());
        let method = if delete { Method::DELETE } else { Method::GET };
        if let Some(n) = check_path(&path) {
            check_sample_route(&snapshot, &method, None, &n);
        }
    }
}
