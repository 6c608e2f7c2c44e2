//! Balancer state across reloads: an ejected target stays ejected through an unrelated reload
//! (its upstream is carried over as the same instance), and a change to the upstream's own
//! definition starts it fresh.

mod common;
mod lb_common;

use std::time::{Duration, Instant};

use common::admin::Admin;
use common::*;
use lb_common::*;
use testkit::ControlledEcho;

/// Sends GETs (no retries configured) until `/admin/upstreams` shows `addr` ejected; bounded.
async fn eject(gw: &testkit::GatewayProcess, addr: std::net::SocketAddr) {
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0.. {
        let _ = client.get(gw.http_url(&format!("/e/{i}"))).send().await;
        if i % 5 == 4 && admin_target(gw, "api", addr).await["ejected"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "target {addr} was never ejected");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejected_target_stays_ejected_across_an_unrelated_reload() {
    let a = ControlledEcho::start("a").await.expect("echo");
    let mut b = ControlledEcho::start("b").await.expect("echo");
    let upstream = lb_upstream("api", "round_robin", &[a.addr(), b.addr()], "");
    let gw = gateway()
        .admin(true)
        .config(format!("{upstream}{}", catch_all("api")))
        .start()
        .await
        .expect("gateway");
    let admin = Admin::new(&gw);

    b.stop().await;
    eject(&gw, b.addr()).await;
    assert_eq!(admin_target(&gw, "api", a.addr()).await["ejected"], false);

    // Unrelated change: one more route in front of the catch-all. `api` is unchanged.
    let extra_route =
        "[[routes]]\nname = \"extra\"\nmatch = { path = \"/extra\" }\nupstream = \"api\"\n\n";
    admin
        .apply(&gw.config_text(&format!("{upstream}{extra_route}{}", catch_all("api"))))
        .await;
    let after = admin_target(&gw, "api", b.addr()).await;
    assert_eq!(
        after["ejected"], true,
        "ejection lost by an unrelated reload: {after}"
    );
    assert!(after["errors"].as_u64().unwrap_or(0) >= 5, "{after}");

    // While b is ejected, traffic goes to a only, even though b is back.
    b.restart().await.expect("restart b");
    let before = b.count();
    let client = http_client();
    for i in 0..20 {
        let r = client
            .get(gw.http_url(&format!("/x/{i}")))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        b.count(),
        before,
        "an ejected target received traffic after the reload"
    );

    // Changing api's own definition rebuilds it: fresh state, b no longer ejected.
    let changed = lb_upstream(
        "api",
        "round_robin",
        &[a.addr(), b.addr()],
        "ewma_decay = \"5s\"",
    );
    admin
        .apply(&gw.config_text(&format!("{changed}{}", catch_all("api"))))
        .await;
    let fresh = admin_target(&gw, "api", b.addr()).await;
    assert_eq!(fresh["ejected"], false, "{fresh}");
    assert_eq!(fresh["errors"], 0, "{fresh}");
}
