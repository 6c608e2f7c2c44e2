//! Process lifecycle: `run` is the default subcommand, and SIGTERM drains in-flight
//! requests before exiting 0.

mod common;

use common::*;
use testkit::request::get;
use testkit::EchoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let echo = EchoServer::start("slow").await.expect("echo");
    let mut gw = gateway()
        .grace_period("20s")
        .config(upstream_and_route("slow", echo.addr(), "all", "/"))
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
        .config(catch_all_echo(echo.addr()))
        .start()
        .await
        .expect("`orchestra-gateway -c FILE` runs the gateway");
    assert_eq!(get(&http_client(), &gw.http_url("/x")).await.status, 200);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_healthz_exits_0() {
    // An orchestrator may send SIGTERM as soon as the process answers /healthz.
    let echo = EchoServer::start("a").await.expect("echo");
    let mut gw = start_catch_all(echo.addr()).await;
    let status = gw.terminate().await.expect("exit after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status} (killed by the signal: no handler installed yet?); stderr:\n{}",
        gw.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_http_port_is_a_startup_error_not_ready() {
    // Another process holds the port for the whole test.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let addr = holder.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[listeners]\nhttp = \"{addr}\"\n\n[server]\nthreads = 1\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let stderr_path = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn");
    let claims_ready = |text: &str| {
        testkit::gateway::flatten_log_lines(text)
            .iter()
            .any(|l| l["message"] == "ready")
    };

    // Wait (bounded) for the first decisive event: exit, or a "ready" claim.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if claims_ready(&text) || std::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    drop(holder);

    assert!(
        !claims_ready(&text),
        "gateway logged ready while {addr} belongs to another process; stderr:\n{text}"
    );
    let status =
        exit.unwrap_or_else(|| panic!("gateway neither exited nor failed; stderr:\n{text}"));
    assert!(!status.success(), "exit status {status}");
    assert!(
        text.contains(&addr.to_string()),
        "error should name {addr}; stderr:\n{text}"
    );
}
