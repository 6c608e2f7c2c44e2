//! [`GatewayBuilder`]: what to write into `gateway.toml` and how to start the process.

use std::path::PathBuf;
use std::time::Duration;

use super::{GatewayProcess, LaunchError};

/// Placeholder replaced by the `http` listener address (`127.0.0.1:PORT`).
pub const HTTP_PLACEHOLDER: &str = "@HTTP@";
/// Placeholder replaced by the `https` listener address (`127.0.0.1:PORT`).
pub const HTTPS_PLACEHOLDER: &str = "@HTTPS@";
/// Placeholder replaced by the data directory (`<tempdir>/data`).
pub const DATA_DIR_PLACEHOLDER: &str = "@DATA_DIR@";
/// Placeholder replaced by the temporary directory holding the config and logs.
pub const DIR_PLACEHOLDER: &str = "@DIR@";
/// Placeholder replaced by the `admin` listener address (`127.0.0.1:PORT`).
pub const ADMIN_PLACEHOLDER: &str = "@ADMIN@";

/// Describes a gateway to start; see [`GatewayProcess::builder`].
///
/// By default the generated config has an `http` listener, `threads = 1`,
/// `grace_period = "5s"` and `data_dir = "@DATA_DIR@"` (plus [`GatewayBuilder::server`] lines),
/// followed by the body given to
/// [`GatewayBuilder::config`] (upstreams, routes, plugins). [`GatewayBuilder::admin`] adds
/// an `admin` listener on a free port, [`GatewayBuilder::admin_token`] also an `[admin]`
/// table with that token. [`GatewayBuilder::raw_config`] replaces the whole file instead.
/// In both, the placeholders [`HTTP_PLACEHOLDER`], [`HTTPS_PLACEHOLDER`],
/// [`ADMIN_PLACEHOLDER`], [`DATA_DIR_PLACEHOLDER`] and [`DIR_PLACEHOLDER`] are substituted
/// (an admin port is allocated whenever the template mentions [`ADMIN_PLACEHOLDER`]).
#[derive(Clone, Debug)]
pub struct GatewayBuilder {
    pub(crate) bin: PathBuf,
    pub(crate) body: String,
    pub(crate) raw: Option<String>,
    pub(crate) https: bool,
    pub(crate) h3: bool,
    pub(crate) server_lines: Vec<String>,
    pub(crate) admin: bool,
    pub(crate) admin_token: Option<String>,
    pub(crate) threads: u32,
    pub(crate) grace_period: String,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) run_subcommand: bool,
    pub(crate) startup_timeout: Duration,
    pub(crate) files: Vec<(String, String)>,
}

impl GatewayBuilder {
    pub(crate) fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            body: String::new(),
            raw: None,
            https: false,
            h3: false,
            server_lines: Vec::new(),
            admin: false,
            admin_token: None,
            threads: 1,
            grace_period: "5s".to_string(),
            env: vec![("RUST_LOG".to_string(), "info".to_string())],
            run_subcommand: true,
            startup_timeout: Duration::from_secs(30),
            files: Vec::new(),
        }
    }

    /// Sets the part of the config after `[listeners]` and `[server]`: upstreams, routes,
    /// plugins, `[tls]`.
    pub fn config(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// Uses `template` as the whole config file (placeholders are still substituted).
    pub fn raw_config(mut self, template: impl Into<String>) -> Self {
        self.raw = Some(template.into());
        self
    }

    /// Also configures the `https` listener (default: off).
    pub fn https(mut self, on: bool) -> Self {
        self.https = on;
        self
    }

    /// Also configures the `h3` (QUIC, UDP) listener on the `https` port number, and with it
    /// the `https` listener (default: off).
    pub fn h3(mut self, on: bool) -> Self {
        self.h3 = on;
        self.https |= on;
        self
    }

    /// Adds a `key = value` line to the `[server]` table, e.g.
    /// `.server("header_read_timeout = \"1s\"")`.
    pub fn server(mut self, line: impl Into<String>) -> Self {
        self.server_lines.push(line.into());
        self
    }

    /// Also configures the `admin` listener on a free loopback port (default: off); see
    /// [`GatewayProcess::admin_addr`].
    pub fn admin(mut self, on: bool) -> Self {
        self.admin = on;
        self
    }

    /// Configures the admin listener with `[admin] token = "TOKEN"`.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin = true;
        self.admin_token = Some(token.into());
        self
    }

    /// Sets `server.threads` (default 1).
    pub fn threads(mut self, threads: u32) -> Self {
        self.threads = threads;
        self
    }

    /// Sets `server.grace_period` (default `"5s"`).
    pub fn grace_period(mut self, grace: impl Into<String>) -> Self {
        self.grace_period = grace.into();
        self
    }

    /// Sets an environment variable for the process (`RUST_LOG=info` is preset).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// Starts as `orchestra-gateway -c FILE` instead of `orchestra-gateway run -c FILE`.
    pub fn without_run_subcommand(mut self) -> Self {
        self.run_subcommand = false;
        self
    }

    /// Writes `contents` (placeholders substituted) to `name` in the gateway's temporary
    /// directory before it starts (e.g. an agent keys file the config names as `@DIR@/keys.toml`).
    pub fn file(mut self, name: impl Into<String>, contents: impl Into<String>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    /// How long to wait for `/healthz` (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Writes the config, starts the process and waits until it is healthy.
    pub async fn start(self) -> Result<GatewayProcess, LaunchError> {
        GatewayProcess::launch(self).await
    }

    /// The config template before placeholder substitution.
    pub(crate) fn template(&self) -> String {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut out = String::from("[listeners]\n");
        out.push_str(&format!("http = \"{HTTP_PLACEHOLDER}\"\n"));
        if self.https {
            out.push_str(&format!("https = \"{HTTPS_PLACEHOLDER}\"\n"));
        }
        if self.h3 {
            out.push_str(&format!("h3 = \"{HTTPS_PLACEHOLDER}\"\n"));
        }
        if self.admin {
            out.push_str(&format!("admin = \"{ADMIN_PLACEHOLDER}\"\n"));
        }
        out.push_str("\n[server]\n");
        out.push_str(&format!("threads = {}\n", self.threads));
        out.push_str(&format!("grace_period = \"{}\"\n", self.grace_period));
        out.push_str(&format!("data_dir = \"{DATA_DIR_PLACEHOLDER}\"\n"));
        for line in &self.server_lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        if let Some(token) = &self.admin_token {
            out.push_str(&format!(
                "[admin]\ntoken = {}\n\n",
                super::toml::quoted(token)
            ));
        }
        out.push_str(&self.body);
        out.push('\n');
        out
    }

    /// True when the started process needs an admin port.
    pub(crate) fn wants_admin(&self) -> bool {
        self.admin || self.template().contains(ADMIN_PLACEHOLDER)
    }
}

/// The values substituted for the placeholders of a config template.
#[derive(Clone, Debug, Default)]
pub(crate) struct Substitutions {
    pub(crate) http: String,
    pub(crate) https: String,
    pub(crate) admin: String,
    pub(crate) data_dir: String,
    pub(crate) dir: String,
}

impl Substitutions {
    /// Substitutes the placeholders of a config template.
    pub(crate) fn render(&self, template: &str) -> String {
        template
            .replace(HTTP_PLACEHOLDER, &self.http)
            .replace(HTTPS_PLACEHOLDER, &self.https)
            .replace(ADMIN_PLACEHOLDER, &self.admin)
            .replace(DATA_DIR_PLACEHOLDER, &self.data_dir)
            .replace(DIR_PLACEHOLDER, &self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_listeners_server_and_body() {
        let b = GatewayBuilder::new("/bin/true")
            .https(true)
            .grace_period("2s")
            .config("[[upstreams]]\nname = \"a\"\n");
        let subs = Substitutions {
            http: "127.0.0.1:1".into(),
            https: "127.0.0.1:2".into(),
            data_dir: "/d".into(),
            dir: "/t".into(),
            ..Substitutions::default()
        };
        let text = subs.render(&b.template());
        let parsed: toml_like::Doc = toml_like::parse(&text);
        assert_eq!(parsed.get("http"), Some("\"127.0.0.1:1\""));
        assert_eq!(parsed.get("https"), Some("\"127.0.0.1:2\""));
        assert_eq!(parsed.get("grace_period"), Some("\"2s\""));
        assert_eq!(parsed.get("data_dir"), Some("\"/d\""));
        assert!(text.contains("[[upstreams]]\nname = \"a\""));
    }

    #[test]
    fn https_listener_is_off_by_default() {
        let b = GatewayBuilder::new("/bin/true");
        assert!(!b.template().contains("https"));
        assert!(!b.wants_admin());
    }

    #[test]
    fn admin_listener_and_token() {
        let b = GatewayBuilder::new("/bin/true").admin_token("t\"k");
        assert!(b.wants_admin());
        let subs = Substitutions {
            admin: "127.0.0.1:3".into(),
            ..Substitutions::default()
        };
        let text = subs.render(&b.template());
        let parsed: toml_like::Doc = toml_like::parse(&text);
        assert_eq!(parsed.get("admin"), Some("\"127.0.0.1:3\""));
        assert_eq!(parsed.get("token"), Some("\"t\\\"k\""));
        assert!(text.contains("\n[admin]\n"));
        let raw = GatewayBuilder::new("/bin/true").raw_config("admin = \"@ADMIN@\"");
        assert!(raw.wants_admin());
    }

    /// Tiny `key = value` reader, enough for the assertions above.
    mod toml_like {
        pub struct Doc(Vec<(String, String)>);
        impl Doc {
            pub fn get(&self, key: &str) -> Option<&str> {
                self.0
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            }
        }
        pub fn parse(text: &str) -> Doc {
            Doc(text
                .lines()
                .filter_map(|l| l.split_once(" = "))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect())
        }
    }
}
