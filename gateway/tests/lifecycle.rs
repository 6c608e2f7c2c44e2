//! Process lifecycle: `run` is the default subcommand, and SIGTERM drains in-flight
//! requests before exiting 0.

mod common;

use common::*;
use testkit::EchoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let echo = EchoServer::start("slow").await.expect("echo");
    let mut gw = gateway()
        .grace_period("20s")
        .config(format!(
            "{}{}",
            upstream("slow", &[echo.addr()], ""),
            route("all", "path_prefix = \"/\"", "slow", "")
        ))
        .start()
        .await
        .expect("gateway");
    // Signals belong after start-up: the gateway installs its SIGTERM handler when it
    // turns ready.
    wait_ready(&gw).await;

    let url = gw.http_url("/slow?ms=3000");
    let in_flight = tokio::spawn(async move {
        let resp = http_client().get(url).send().await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    tokio::time::timeout(WAIT, echo.requests().wait_for(1))
        .await
        .expect("the slow request reached the upstream");
    assert!(
        !in_flight.is_finished(),
        "the slow request must still be in flight when SIGTERM is sent"
    );

    let status = gw.terminate().await.expect("gateway exits after SIGTERM");
    let (http_status, body) = in_flight
        .await
        .expect("task")
        .expect("in-flight request completed despite SIGTERM");
    assert_eq!(http_status, 200);
    assert_eq!(body["path"], "/slow?ms=3000");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr:\n{}",
        gw.stderr()
    );

    assert!(
        tokio::net::TcpStream::connect(gw.http_addr())
            .await
            .is_err(),
        "listener still accepting after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_gateway_exits_0_on_sigterm() {
    let echo = EchoServer::start("a").await.expect("echo");
    let mut gw = start_catch_all(echo.addr()).await;
    // Signals belong after start-up: the gateway installs its SIGTERM handler when it
    // turns ready.
    wait_ready(&gw).await;
    let status = gw.terminate().await.expect("exit after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr:\n{}",
        gw.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_is_the_default_subcommand() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = gateway()
        .without_run_subcommand()
        .config(format!(
            "{}{}",
            upstream("echo", &[echo.addr()], ""),
            route("all", "path_prefix = \"/\"", "echo", "")
        ))
        .start()
        .await
        .expect("`orchestra-gateway -c FILE` runs the gateway");
    let resp = http_client()
        .get(gw.http_url("/x"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    wait_ready(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_fails_startup_with_the_error_on_stderr() {
    let err = gateway()
        .config("[[routes]]\nname = \"r\"\nmatch = { path_prefix = \"/\" }\nupstream = \"nope\"\n")
        .start()
        .await
        .expect_err("startup must fail");
    match err {
        testkit::LaunchError::Exited { status, stderr } => {
            assert!(!status.success(), "exit status {status}");
            assert!(stderr.contains("routes[0].upstream"), "stderr:\n{stderr}");
        }
        other => panic!("expected the process to exit, got {other}"),
    }
}
