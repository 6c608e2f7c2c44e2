//! Validation of whole config files (the secret rules have their own tests in `secret.rs`).

use super::*;

fn check(text: &str, ov: &Overrides) -> Result<AgentConfig, Vec<String>> {
    let var = |name: &str| (name == "AGENT_SECRET").then(|| "s".repeat(32));
    let env = SecretEnv {
        var: &var,
        mode: &|_| Ok(0o600),
        read: &|_| Ok(b"x".to_vec()),
    };
    validate(text, Path::new("agent.toml"), Some(0o600), ov, &env)
        .map_err(|e| e.0.iter().map(|e| e.to_string()).collect())
}

const GOOD: &str = r#"
gateway = "127.0.0.1:8443"
server_name = "localhost"
insecure = true
id = "worker-1"
api_key = "ak_worker1"
secret_env = "AGENT_SECRET"
capabilities = ["custom", "claude"]
max_tasks = 2
workdir = "/tmp/work"
metadata = { region = "eu" }

[reconnect]
base = "100ms"
max = "2s"

[output]
memory_per_task = "64KiB"

[tools]
custom = ["bash", "-c", "{prompt}"]
claude = { argv = ["claude", "-p", "{prompt}", "--output-format", "stream-json"], resume = ["--resume", "{session_id}"] }
plain = { argv = ["cat"], format = "lines", stdin = "null" }
"#;

#[test]
fn a_complete_file() {
    let c = check(GOOD, &Overrides::default()).unwrap();
    assert_eq!(c.gateway.to_string(), "127.0.0.1:8443");
    assert_eq!(c.transport, Transport::Quic);
    assert_eq!(c.trust, Trust::Insecure);
    assert_eq!(c.capabilities, ["custom", "claude"]);
    assert_eq!(c.max_tasks, 2);
    assert_eq!(c.tools["claude"].format, OutputFormat::StreamJson);
    assert!(c.tools["claude"].can_resume());
    assert_eq!(c.tools["plain"].stdin, StdinMode::Null);
    assert_eq!(c.tools["custom"].format, OutputFormat::Lines);
    assert_eq!(c.reconnect.base, Duration::from_millis(100));
    assert_eq!(c.reconnect.stable_after, Duration::from_secs(60));
    assert_eq!(c.output.memory_per_task, 64 * 1024);
    assert_eq!(c.metadata["region"], "eu");
    assert_eq!(c.secret.as_bytes().len(), 32);
}

#[test]
fn flags_override_the_file() {
    let ov = Overrides {
        gateway: Some("gw.example.com:9443".into()),
        id: Some("worker-2".into()),
        transport: Some("ws".into()),
        ..Default::default()
    };
    let c = check(GOOD, &ov).unwrap();
    assert_eq!(c.gateway.host, "gw.example.com");
    assert_eq!(c.gateway.port, 9443);
    assert_eq!(c.id, "worker-2");
    assert_eq!(c.transport, Transport::Ws);

    let bad = Overrides {
        gateway: Some("nowhere".into()),
        transport: Some("carrier-pigeon".into()),
        ..Default::default()
    };
    let errors = check(GOOD, &bad).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("command line: --gateway: invalid value \"nowhere\"")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("command line: --transport: invalid value \"carrier-pigeon\"")),
        "{errors:?}"
    );
}

#[test]
fn every_error_is_reported_with_its_key_path() {
    let text = r#"
gateway = "localhost"
transport = "udp"
api_key = "k"
secret_env = "AGENT_SECRET"
max_tasks = 0
keep_alive = "40s"
colour = "blue"
capabilities = ["custom", "qwen"]

[reconnect]
base = "1"
jitter = true

[tools]
custom = ["bash", "-c", "{promt}"]
claude = { argv = ["claude"], format = "xml", shell = true }
empty = []
"#;
    let errors = check(text, &Overrides::default()).unwrap_err();
    let want = [
        "agent.toml: colour: unknown key",
        "agent.toml: reconnect.jitter: unknown key",
        "agent.toml: gateway: invalid value \"localhost\": expected HOST:PORT",
        "agent.toml: transport: invalid value \"udp\": expected \"quic\" or \"ws\"",
        "agent.toml: id: required; write e.g. id = \"worker-1\"",
        "agent.toml: tools.claude.shell: unknown key",
        "agent.toml: tools.custom[2]: invalid value \"{promt}\": unknown placeholder {promt}",
        "agent.toml: tools.claude.format: invalid value \"xml\"",
        "agent.toml: tools.empty: invalid value \"[]\": needs a program",
        "agent.toml: capabilities[1]: invalid value \"qwen\": no [tools] entry",
        "agent.toml: max_tasks: invalid value \"0\": must be between 1 and 1024",
        "agent.toml: keep_alive: invalid value \"40s\": must be between",
        "agent.toml: reconnect.base: invalid value \"1\": missing unit",
    ];
    for w in want {
        assert!(
            errors.iter().any(|e| e.starts_with(w)),
            "missing {w:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), want.len(), "{errors:#?}");
}

#[test]
fn syntax_errors_have_a_line_and_column() {
    let errors = check("gateway = \n", &Overrides::default()).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("agent.toml: line 1, column"),
        "{errors:?}"
    );
}

#[test]
fn ca_and_insecure() {
    let text = GOOD.replace(
        "insecure = true",
        "insecure = true\nca = \"/nonexistent/ca.pem\"",
    );
    let errors = check(&text, &Overrides::default()).unwrap_err();
    assert!(errors[0].contains("exclusive"), "{errors:?}");
    // --insecure drops the file's ca; --ca the file's insecure.
    assert_eq!(
        check(
            &text,
            &Overrides {
                insecure: true,
                ..Default::default()
            }
        )
        .unwrap()
        .trust,
        Trust::Insecure
    );
    let errors = check(
        &text,
        &Overrides {
            ca: Some("/nonexistent/x.pem".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        errors[0].starts_with(
            "command line: --ca: invalid value \"/nonexistent/x.pem\": cannot read it"
        ),
        "{errors:?}"
    );
    let text = GOOD.replace("insecure = true", "");
    assert_eq!(
        check(&text, &Overrides::default()).unwrap().trust,
        Trust::WebPki
    );
}
