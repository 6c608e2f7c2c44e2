//! The command line: help, version, `check`, and refusals to start on a bad config, bad flags
//! or an exposed secret — each with a clear message and a non-zero exit.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::agent::{run_to_exit, SECRET_ENV};

const GOOD: &str = r#"
gateway = "127.0.0.1:8443"
server_name = "localhost"
insecure = true
id = "worker-1"
api_key = "ak_worker1"
secret_env = "ORCHESTRA_TEST_AGENT_SECRET"
workdir = "work"

[tools]
custom = ["bash", "-c", "{prompt}"]
"#;

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_and_version() {
    let (status, out, _) = run_to_exit(&["--help"], &[]);
    assert!(status.success());
    for flag in [
        "--config",
        "--gateway",
        "--id",
        "--api-key",
        "--secret-env",
        "--ca",
        "--insecure",
        "--transport",
        "--log-format",
    ] {
        assert!(out.contains(flag), "--help lists {flag}:\n{out}");
    }
    let (status, out, _) = run_to_exit(&["--version"], &[]);
    assert!(status.success());
    assert_eq!(
        out.trim(),
        format!("orchestra-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_accepts_a_good_config_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agent.toml", GOOD, 0o644);
    let env = [(SECRET_ENV, "a secret of thirty-two bytes or more!")];
    let (status, out, err) = run_to_exit(&["check", "-c", s(&cfg)], &env);
    assert!(status.success(), "{err}");
    assert!(
        out.contains("ok: gateway 127.0.0.1:8443 over quic"),
        "{out}"
    );
    let (status, out, err) = run_to_exit(
        &[
            "check",
            "-c",
            s(&cfg),
            "--gateway",
            "gw.example.com:9443",
            "--transport",
            "ws",
            "--id",
            "w2",
        ],
        &env,
    );
    assert!(status.success(), "{err}");
    assert!(
        out.contains("gateway gw.example.com:9443 over ws, agent \"w2\""),
        "{out}"
    );
}

#[test]
fn a_bad_config_lists_every_error_with_file_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let text = GOOD
        .replace("gateway = \"127.0.0.1:8443\"", "gateway = \"127.0.0.1\"")
        .replace(
            "workdir = \"work\"",
            "workdir = \"work\"\nmax_tasks = -1\nfavourite_colour = \"blue\"",
        )
        .replace("{prompt}\"]", "{prompt}\"]\nbroken = [\"x\", \"{nope}\"]");
    let cfg = write(dir.path(), "agent.toml", &text, 0o600);
    let env = [(SECRET_ENV, "a secret of thirty-two bytes or more!")];
    let (status, _, err) = run_to_exit(&["check", "-c", s(&cfg)], &env);
    assert_eq!(status.code(), Some(1));
    let f = s(&cfg);
    for want in [
        format!("{f}: favourite_colour: unknown key"),
        format!("{f}: gateway: invalid value \"127.0.0.1\": expected HOST:PORT"),
        format!("{f}: max_tasks: invalid value \"-1\": must be between 1 and 1024"),
        format!("{f}: tools.broken[1]: invalid value \"{{nope}}\": unknown placeholder {{nope}}"),
        format!("{f}: 4 error(s)"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    // `run` refuses to start with the same errors, as JSON log lines, and exits 1.
    let (status, _, err) = run_to_exit(&["run", "-c", f], &env);
    assert_eq!(status.code(), Some(1));
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines
        .iter()
        .all(|l| l["level"] == "ERROR" && l["message"] == "invalid config"));
    assert!(lines.iter().any(|l| l["error"]
        .as_str()
        .unwrap()
        .contains("gateway: invalid value")));
}

#[test]
fn unreadable_and_malformed_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (status, _, err) = run_to_exit(&["check", "-c", s(&missing)], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!("{}: cannot read file:", s(&missing))),
        "{err}"
    );
    let cfg = write(dir.path(), "broken.toml", "gateway = \"x\n", 0o600);
    let (status, _, err) = run_to_exit(&["check", "-c", s(&cfg)], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!("{}: line 1, column", s(&cfg))),
        "{err}"
    );
    // A PEM file without a certificate for `ca`.
    let pem = write(dir.path(), "ca.pem", "not a certificate\n", 0o644);
    let cfg = write(dir.path(), "agent.toml", GOOD, 0o600);
    let env = [(SECRET_ENV, "a secret of thirty-two bytes or more!")];
    let (status, _, err) = run_to_exit(&["check", "-c", s(&cfg), "--ca", s(&pem)], &env);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "command line: --ca: invalid value {:?}: no PEM certificate",
            s(&pem)
        )),
        "{err}"
    );
}

#[test]
fn a_secret_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inline = GOOD.replace(
        "secret_env = \"ORCHESTRA_TEST_AGENT_SECRET\"",
        "secret = \"a secret of thirty-two bytes or more!\"",
    );
    let cfg = write(dir.path(), "agent.toml", &inline, 0o644);
    let f = s(&cfg);
    for cmd in ["check", "run"] {
        let (status, _, err) = run_to_exit(&[cmd, "-c", f], &[]);
        assert_eq!(status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!("{f}: secret: {f} holds a secret but its mode is 0644 (readable by group or others); run `chmod 600 {f}`")),
            "{cmd}: {err}"
        );
    }
    // Overriding with --secret-env does not make the exposed file acceptable.
    let (status, _, err) = run_to_exit(
        &["check", "-c", f, "--secret-env", SECRET_ENV],
        &[(SECRET_ENV, "another secret")],
    );
    assert_eq!(status.code(), Some(1), "{err}");
    // Mode 0600: accepted.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (status, _, err) = run_to_exit(&["check", "-c", f], &[]);
    assert!(status.success(), "{err}");
    // secret_file follows the same rule.
    let key = write(dir.path(), "agent.key", "file secret\n", 0o640);
    let text = GOOD.replace(
        "secret_env = \"ORCHESTRA_TEST_AGENT_SECRET\"",
        &format!("secret_file = {:?}", s(&key)),
    );
    let cfg = write(dir.path(), "agent2.toml", &text, 0o644);
    let (status, _, err) = run_to_exit(&["check", "-c", s(&cfg)], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("secret_file:") && err.contains("mode is 0640"),
        "{err}"
    );
}

#[test]
fn a_missing_secret_variable_and_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "agent.toml", GOOD, 0o600);
    let f = s(&cfg);
    let (status, _, err) = run_to_exit(&["check", "-c", f], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(&format!(
            "{f}: secret_env: invalid value \"{SECRET_ENV}\": this environment variable is not set"
        )),
        "{err}"
    );
    let env = [(SECRET_ENV, "a secret of thirty-two bytes or more!")];
    let (status, _, err) = run_to_exit(
        &[
            "check",
            "-c",
            f,
            "--transport",
            "udp",
            "--gateway",
            "nohost",
        ],
        &env,
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains(
            "command line: --transport: invalid value \"udp\": expected \"quic\" or \"ws\""
        ),
        "{err}"
    );
    assert!(
        err.contains("command line: --gateway: invalid value \"nohost\""),
        "{err}"
    );
    // Flags clap itself rejects: usage error, exit 2.
    let (status, _, err) = run_to_exit(&["run", "-c", f, "--no-such-flag"], &env);
    assert_eq!(status.code(), Some(2), "{err}");
    let (status, _, err) = run_to_exit(&["run", "-c", f, "--ca", "x.pem", "--insecure"], &env);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/agent.toml");
    // `--insecure` replaces its `ca` (the gateway's generated certificate, absent here).
    let (status, out, err) = run_to_exit(
        &["check", "-c", s(&shipped), "--insecure"],
        &[(
            "ORCHESTRA_AGENT_SECRET",
            "a secret of thirty-two bytes or more!",
        )],
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("ok:"), "{out}");
}
