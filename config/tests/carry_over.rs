//! Reload carry-over: unchanged upstreams and plugins keep their instances (and so their state).

use std::sync::Arc;

use orchestra_config::{compile_with, from_str};

const BASE: &str = r#"
[[upstreams]]
name = "a"
targets = [{ addr = "127.0.0.1:3001" }]

[[upstreams]]
name = "b"
targets = [{ addr = "127.0.0.1:3002" }]

[[routes]]
name = "r1"
match = { path_prefix = "/a/" }
upstream = "a"
plugins = ["h"]

[plugins.h]
kind = "headers"
request = { set = { "x-a" = "1" } }
"#;

#[test]
fn unchanged_definitions_are_reused_changed_ones_rebuilt() {
    let old = from_str(BASE, "v1.toml").expect("v1");
    old.upstreams[0].balancer.targets()[0].stats.record_error();

    // Same upstreams and plugin, one more route, `b` changed.
    let text = BASE.replace("127.0.0.1:3002", "127.0.0.1:3003")
        + "\n[[routes]]\nname = \"r2\"\nmatch = { path_prefix = \"/b/\" }\nupstream = \"b\"\n";
    let new = compile_with(&text, "v2.toml", Some(&old)).expect("v2");

    assert!(
        Arc::ptr_eq(&old.upstreams[0], &new.upstreams[0]),
        "a unchanged: reused"
    );
    assert_eq!(
        new.upstreams[0].balancer.targets()[0].stats.errors(),
        1,
        "stats kept"
    );
    assert!(
        !Arc::ptr_eq(&old.upstreams[1], &new.upstreams[1]),
        "b changed: rebuilt"
    );
    assert!(
        Arc::ptr_eq(&old.plugins["h"].plugin, &new.plugins["h"].plugin),
        "plugin reused"
    );
    assert_eq!(new.routes.len(), 2);
}

#[test]
fn changed_plugin_is_rebuilt() {
    let old = from_str(BASE, "v1.toml").expect("v1");
    let text = BASE.replace("\"x-a\" = \"1\"", "\"x-a\" = \"2\"");
    let new = compile_with(&text, "v2.toml", Some(&old)).expect("v2");
    assert!(!Arc::ptr_eq(
        &old.plugins["h"].plugin,
        &new.plugins["h"].plugin
    ));
    assert!(Arc::ptr_eq(&old.upstreams[0], &new.upstreams[0]));
}

#[test]
fn invalid_new_config_does_not_touch_previous() {
    let old = from_str(BASE, "v1.toml").expect("v1");
    let bad = BASE.replace("upstream = \"a\"", "upstream = \"zzz\"");
    let errs = compile_with(&bad, "v2.toml", Some(&old)).expect_err("invalid");
    assert_eq!(errs.0[0].path, "routes[0].upstream");
    assert_eq!(old.routes.len(), 1);
}
