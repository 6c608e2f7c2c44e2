//! Gateway config bodies from typed calls: upstreams, routes and plugins rendered as the TOML
//! that [`GatewayBuilder::config`](super::GatewayBuilder::config) appends after the listeners it
//! writes itself.
//!
//! Each piece renders to the same text whatever the order of the builder calls, with defaults a
//! test rarely needs to change (`round_robin`, timeouts generous enough for a loaded machine), so
//! a test names only what it is about:
//!
//! ```
//! use testkit::gateway::toml::{ConfigBody, Plugin, Route, Upstream};
//! let addr = "127.0.0.1:9".parse().unwrap();
//! let body = ConfigBody::new()
//!     .upstream(Upstream::new("echo", &[addr]))
//!     .route(Route::prefix("api", "/api/", "echo").plugins(&["rl"]))
//!     .plugin(Plugin::new("rl", "rate_limit").set("key", "client_ip").set("rate", "3/min"));
//! assert!(body.as_str().contains("[plugins.rl]"));
//! ```

use std::fmt;
use std::net::SocketAddr;

/// The timeouts an [`Upstream`] gets unless the test sets its own.
pub const DEFAULT_TIMEOUTS: &str =
    "timeouts = { connect = \"1s\", read = \"20s\", idle = \"60s\" }";

/// A config body: `[[upstreams]]`, `[[routes]]`, `[plugins.*]` and any raw TOML, in call order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigBody {
    text: String,
}

impl ConfigBody {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an `[[upstreams]]` entry.
    pub fn upstream(self, upstream: Upstream) -> Self {
        self.raw(&upstream.to_string())
    }

    /// Appends a `[[routes]]` entry (routes match in file order).
    pub fn route(self, route: Route) -> Self {
        self.raw(&route.to_string())
    }

    /// Appends a `[plugins.NAME]` table.
    pub fn plugin(self, plugin: Plugin) -> Self {
        self.raw(&plugin.to_string())
    }

    /// Appends upstream `upstream` with the one target `addr` and route `route` on
    /// `path_prefix = prefix` to it: the smallest body that serves something.
    pub fn service(self, upstream: &str, addr: SocketAddr, route: &str, prefix: &str) -> Self {
        self.upstream(Upstream::new(upstream, &[addr]))
            .route(Route::prefix(route, prefix, upstream))
    }

    /// Appends TOML written by hand (sections the typed calls do not cover).
    pub fn raw(mut self, toml: &str) -> Self {
        self.text.push_str(toml);
        self
    }

    /// The TOML text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ConfigBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<ConfigBody> for String {
    fn from(body: ConfigBody) -> String {
        body.text
    }
}

/// `targets = [ { addr = "A" }, ... ]`'s value.
pub fn targets(addrs: &[SocketAddr]) -> String {
    let items: Vec<String> = addrs
        .iter()
        .map(|a| format!("{{ addr = \"{a}\" }}"))
        .collect();
    format!("[ {} ]", items.join(", "))
}

/// An `[[upstreams]]` entry: protocol `h1` (the gateway's default), `round_robin`,
/// [`DEFAULT_TIMEOUTS`] unless a line sets `timeouts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    name: String,
    addrs: Vec<SocketAddr>,
    balancer: String,
    lines: Vec<String>,
}

impl Upstream {
    /// Upstream `name` balancing over `addrs`.
    pub fn new(name: &str, addrs: &[SocketAddr]) -> Self {
        Self {
            name: name.to_string(),
            addrs: addrs.to_vec(),
            balancer: "round_robin".to_string(),
            lines: Vec::new(),
        }
    }

    /// Another `balancer` (`peak_ewma`, `least_request`, ...).
    pub fn balancer(mut self, balancer: &str) -> Self {
        self.balancer = balancer.to_string();
        self
    }

    /// Own `timeouts` instead of the defaults, e.g. `timeouts("1s", "200ms", "60s")`.
    pub fn timeouts(self, connect: &str, read: &str, idle: &str) -> Self {
        self.line(&format!(
            "timeouts = {{ connect = \"{connect}\", read = \"{read}\", idle = \"{idle}\" }}"
        ))
    }

    /// Extra TOML lines in the entry (`retry = {...}`, `health_check = {...}`); a line setting
    /// `timeouts` replaces the defaults.
    pub fn line(mut self, toml: &str) -> Self {
        push_line(&mut self.lines, toml);
        self
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let own_timeouts = self.lines.iter().any(|l| l.contains("timeouts"));
        write!(
            f,
            "[[upstreams]]\nname = \"{}\"\nbalancer = \"{}\"\ntargets = {}\n{}\n{}\n\n",
            self.name,
            self.balancer,
            targets(&self.addrs),
            if own_timeouts { "" } else { DEFAULT_TIMEOUTS },
            self.lines.join("\n"),
        )
    }
}

/// A `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    name: String,
    match_toml: String,
    upstream: String,
    lines: Vec<String>,
}

impl Route {
    /// Route `name` on `match = { MATCH_TOML }` (e.g. `path = "/x", methods = ["GET"]`) to
    /// `upstream`.
    pub fn matching(name: &str, match_toml: &str, upstream: &str) -> Self {
        Self {
            name: name.to_string(),
            match_toml: match_toml.to_string(),
            upstream: upstream.to_string(),
            lines: Vec::new(),
        }
    }

    /// Route `name` on `path_prefix = prefix` to `upstream`.
    pub fn prefix(name: &str, prefix: &str, upstream: &str) -> Self {
        Self::matching(name, &format!("path_prefix = {}", quoted(prefix)), upstream)
    }

    /// Runs `plugins` in this order.
    pub fn plugins(self, plugins: &[&str]) -> Self {
        let list: Vec<String> = plugins.iter().map(|p| quoted(p)).collect();
        self.line(&format!("plugins = [{}]", list.join(", ")))
    }

    /// `strip_prefix = true`.
    pub fn strip_prefix(self) -> Self {
        self.line("strip_prefix = true")
    }

    /// Extra TOML lines in the entry.
    pub fn line(mut self, toml: &str) -> Self {
        push_line(&mut self.lines, toml);
        self
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[[routes]]\nname = \"{}\"\nmatch = {{ {} }}\nupstream = \"{}\"\n{}\n\n",
            self.name,
            self.match_toml,
            self.upstream,
            self.lines.join("\n"),
        )
    }
}

/// A `[plugins.NAME]` table of some `kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    name: String,
    kind: String,
    lines: Vec<String>,
}

impl Plugin {
    /// Plugin instance `name` of `kind` (`rate_limit`, `jwt`, `cors`, ...).
    pub fn new(name: &str, kind: &str) -> Self {
        Self {
            name: name.to_string(),
            kind: kind.to_string(),
            lines: Vec::new(),
        }
    }

    /// `key = "value"` (a TOML string).
    pub fn set(self, key: &str, value: &str) -> Self {
        self.line(&format!("{key} = {}", quoted(value)))
    }

    /// Extra TOML lines (arrays, inline tables, numbers).
    pub fn line(mut self, toml: &str) -> Self {
        push_line(&mut self.lines, toml);
        self
    }
}

impl fmt::Display for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[plugins.{}]\nkind = \"{}\"\n{}\n\n",
            self.name,
            self.kind,
            self.lines.join("\n")
        )
    }
}

/// Adds `toml` to `lines` unless it is empty (callers pass `""` for "nothing extra").
fn push_line(lines: &mut Vec<String>, toml: &str) {
    if !toml.is_empty() {
        lines.push(toml.to_string());
    }
}

/// `value` as a TOML basic string (quoted; `"`, `\\` and newlines escaped).
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_service_renders_an_upstream_with_default_timeouts_and_a_prefix_route() {
        let body = ConfigBody::new().service("u", addr(1), "r", "/api/");
        let doc: toml::Table = body.as_str().parse().expect("valid TOML");
        let up = &doc["upstreams"][0];
        assert_eq!(up["name"].as_str(), Some("u"));
        assert_eq!(up["balancer"].as_str(), Some("round_robin"));
        assert_eq!(up["targets"][0]["addr"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(up["timeouts"]["read"].as_str(), Some("20s"));
        let route = &doc["routes"][0];
        assert_eq!(route["match"]["path_prefix"].as_str(), Some("/api/"));
        assert_eq!(route["upstream"].as_str(), Some("u"));
    }

    #[test]
    fn own_timeouts_replace_the_defaults_and_lines_keep_their_order() {
        let up = Upstream::new("slow", &[addr(1), addr(2)])
            .balancer("least_request")
            .timeouts("1s", "200ms", "60s")
            .line("retry = { attempts = 2 }");
        let doc: toml::Table = ConfigBody::new()
            .upstream(up)
            .as_str()
            .parse()
            .expect("valid TOML (one timeouts key)");
        let up = &doc["upstreams"][0];
        assert_eq!(up["timeouts"]["read"].as_str(), Some("200ms"));
        assert_eq!(up["balancer"].as_str(), Some("least_request"));
        assert_eq!(up["targets"].as_array().map(Vec::len), Some(2));
        assert_eq!(up["retry"]["attempts"].as_integer(), Some(2));
    }

    #[test]
    fn routes_and_plugins_render_their_lists_and_quote_values() {
        let body = ConfigBody::new()
            .route(
                Route::prefix("api", "/", "echo")
                    .plugins(&["a", "b"])
                    .strip_prefix(),
            )
            .plugin(Plugin::new("a", "headers").set("note", "say \"hi\"\\"));
        let doc: toml::Table = body.as_str().parse().expect("valid TOML");
        let route = &doc["routes"][0];
        let plugins: Vec<&str> = route["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert_eq!(plugins, ["a", "b"]);
        assert_eq!(route["strip_prefix"].as_bool(), Some(true));
        assert_eq!(doc["plugins"]["a"]["kind"].as_str(), Some("headers"));
        assert_eq!(doc["plugins"]["a"]["note"].as_str(), Some("say \"hi\"\\"));
    }
}
