//! The https listener (ALPN h2 + http/1.1) with the generated or a configured certificate,
//! and TLS toward upstreams.

mod common;

use common::admin::Admin;
use common::*;
use testkit::request::get;
use testkit::tls::SelfSigned;
use testkit::EchoServer;

/// A gateway with the https listener (generated certificate) in front of `echo`.
async fn start_https(echo: &EchoServer) -> testkit::GatewayProcess {
    gateway()
        .https(true)
        .config(catch_all_echo(echo.addr()))
        .start()
        .await
        .expect("gateway")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_generated_cert_negotiates_h2() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_https(&echo).await;

    let pem = gw.self_signed_cert_pem().unwrap_or_else(|e| {
        panic!(
            "no certificate at {}: {e}",
            gw.self_signed_cert_path().display()
        )
    });
    assert!(String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----"));
    let key = std::fs::read_to_string(gw.self_signed_key_path()).expect("generated key file");
    assert!(key.contains("PRIVATE KEY-----"), "key file is not PEM");

    let resp = tls_client(&gw, false)
        .get(gw.https_url("/secure?x=1"))
        .send()
        .await
        .expect("TLS request trusting only the generated cert");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-request-id").is_some());
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["path"], "/secure?x=1");
    assert_eq!(body["server"], "a");

    // ALPN http/1.1 on the same port.
    let resp = tls_client(&gw, true)
        .get(gw.https_url("/secure-h1"))
        .send()
        .await
        .expect("TLS http/1.1 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
}

/// The value of the counter `name` in a Prometheus exposition.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{metrics}"))
}

/// TCP probes of the TLS port (connect, then close) and a client speaking plain HTTP to it fail
/// their handshakes: each is counted in `orchestra_tls_handshake_failures_total`, none is logged
/// as an error (a load balancer's TCP health check would otherwise log one per probe), and the
/// listener keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tls_handshakes_are_counted_not_logged_as_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = gateway()
        .https(true)
        .admin(true)
        .config(catch_all_echo(echo.addr()))
        .start()
        .await
        .expect("gateway");
    let https = gw.https_addr().expect("https listener");
    let admin = Admin::new(&gw);
    let name = "orchestra_tls_handshake_failures_total";
    let before = counter(&admin.metrics().await, name);
    for _ in 0..3 {
        drop(
            tokio::net::TcpStream::connect(https)
                .await
                .expect("connect"),
        );
    }
    let mut plain = tokio::net::TcpStream::connect(https)
        .await
        .expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the listener closes a non-TLS client");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut now = counter(&admin.metrics().await, name);
    while now < before + 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        now = counter(&admin.metrics().await, name);
    }
    assert!(
        now >= before + 4,
        "4 failed handshakes counted: {before} -> {now}"
    );
    let stderr = gw.stderr();
    let logged_as_error = stderr
        .lines()
        .filter(|l| l.contains("handshake") && l.contains("ERROR"))
        .collect::<Vec<_>>();
    assert!(logged_as_error.is_empty(), "{logged_as_error:#?}");
    let resp = tls_client(&gw, false)
        .get(gw.https_url("/after"))
        .send()
        .await
        .expect("TLS request after the probes");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_cert_is_valid_for_the_loopback_ip() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_https(&echo).await;
    let addr = gw.https_addr().expect("https");
    let resp = tls_client(&gw, false)
        .get(format!("https://127.0.0.1:{}/ip", addr.port()))
        .send()
        .await
        .expect("TLS to 127.0.0.1 with the generated cert");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_certificate_is_served() {
    let echo = EchoServer::start("a").await.expect("echo");
    let cert = SelfSigned::localhost().expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_path = dir.path().join("gw.pem");
    let key_path = dir.path().join("gw.key");
    std::fs::write(&cert_path, &cert.cert_pem).expect("write cert");
    std::fs::write(&key_path, &cert.key_pem).expect("write key");

    let gw = gateway()
        .https(true)
        .config(format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n{}{}",
            cert_path.display(),
            key_path.display(),
            upstream("echo", &[echo.addr()], ""),
            route("all", "path_prefix = \"/\"", "echo", "")
        ))
        .start()
        .await
        .expect("gateway");

    let resp = tls_client_trusting(&gw, cert.cert_pem.as_bytes(), false)
        .get(gw.https_url("/configured"))
        .send()
        .await
        .expect("TLS trusting only the configured cert");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
}

async fn tls_upstream_sees(protocol: &str) -> serde_json::Value {
    let echo = EchoServer::start_tls("tls-up").await.expect("tls echo");
    let gw = start_gateway(format!(
        "{}{}",
        upstream(
            "secure",
            &[echo.addr()],
            &format!("protocol = \"{protocol}\"\ntls = true\nsni = \"localhost\"\nverify = false")
        ),
        route("all", "path_prefix = \"/\"", "secure", "")
    ))
    .await;
    let resp = get(&http_client(), &gw.http_url("/to-tls")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(echo.count(), 1);
    resp.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_with_h2() {
    let body = tls_upstream_sees("h2").await;
    assert_eq!(body["tls"], true);
    assert_eq!(body["version"], "HTTP/2.0", "{body}");
    assert_eq!(body["path"], "/to-tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_with_h1() {
    let body = tls_upstream_sees("h1").await;
    assert_eq!(body["tls"], true);
    assert_eq!(body["version"], "HTTP/1.1", "{body}");
}
