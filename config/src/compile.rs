//! [`RawConfig`] → [`Snapshot`]: validates every value and reference, collecting all errors.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use orchestra_lb::Target;
use orchestra_plugins::{Chain, HeaderRules, HeadersPlugin, Plugin};

use crate::duration::parse_duration;
use crate::parse::{join, key, typed};
use crate::route::{HostMatch, PathMatch, Route, RouteTable};
use crate::schema::*;
use crate::snapshot::*;
use crate::{ConfigError, ErrorKind};

pub(crate) struct Compiler<'a> {
    pub(crate) file: &'a str,
    pub(crate) errors: &'a mut Vec<ConfigError>,
}

impl Compiler<'_> {
    pub(crate) fn err(&mut self, path: impl Into<String>, kind: ErrorKind) {
        self.errors.push(ConfigError::new(self.file, path, kind));
    }

    pub(crate) fn invalid(
        &mut self,
        path: impl Into<String>,
        value: &str,
        reason: impl Into<String>,
    ) {
        self.err(
            path,
            ErrorKind::Invalid {
                value: value.to_string(),
                reason: reason.into(),
            },
        );
    }

    pub(crate) fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(v) => parse_duration(v).unwrap_or_else(|reason| {
                self.invalid(path, v, format!("invalid duration: {reason}"));
                default
            }),
        }
    }

    /// Like [`Self::duration`], but zero is refused (it cannot work as a timeout or period).
    pub(crate) fn positive_duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(path, value, default);
        if d.is_zero() {
            self.invalid(path, value.unwrap_or("0s"), "must be greater than zero");
            return default;
        }
        d
    }

    /// A byte size written as an integer or a string with a unit (`64KiB`, `1GiB`).
    pub(crate) fn size(&mut self, path: &str, value: Option<&toml::Value>) -> Option<u64> {
        match value? {
            toml::Value::Integer(n) if *n > 0 => Some(*n as u64),
            toml::Value::String(s) => crate::size::parse_size(s)
                .map_err(|reason| self.invalid(path, s, reason))
                .ok(),
            other => {
                self.invalid(
                    path,
                    &other.to_string(),
                    "expected a size such as 1048576 or \"64KiB\"",
                );
                None
            }
        }
    }

    fn listen_addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        value
            .parse()
            .map_err(|_| self.invalid(path, value, "expected IP:PORT, e.g. 0.0.0.0:8080"))
            .ok()
    }

    fn target_addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        if let Ok(a) = value.parse() {
            return Some(a);
        }
        match value.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(a)) => Some(a),
            Ok(None) => {
                self.invalid(path, value, "host name resolved to no address");
                None
            }
            Err(e) => {
                self.invalid(path, value, format!("expected IP:PORT or HOST:PORT ({e})"));
                None
            }
        }
    }

    fn header_name(&mut self, path: &str, name: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.invalid(path, name, "not a valid HTTP header name"))
            .ok()
    }

    fn header_pairs(
        &mut self,
        path: &str,
        map: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (k, v) in map {
            let p = join(path, &key(k));
            let name = self.header_name(&p, k);
            let value = HeaderValue::from_str(v)
                .map_err(|_| self.invalid(&p, v, "not a valid HTTP header value"))
                .ok();
            if let (Some(n), Some(v)) = (name, value) {
                out.push((n, v));
            }
        }
        out
    }
}

/// Compiles a parsed config; returns `None` when errors make a snapshot impossible.
pub(crate) fn compile(
    raw: RawConfig,
    file: &str,
    errors: &mut Vec<ConfigError>,
    previous: Option<&Snapshot>,
) -> Option<Snapshot> {
    let mut c = Compiler { file, errors };
    let listeners = listeners(&mut c, &raw.listeners);
    let admin = admin(&mut c, raw.admin.unwrap_or_default());
    let server = server(&mut c, &raw.server);
    let backend = crate::services::backend(&mut c, raw.backend, &server);
    let agents = crate::services::agents(&mut c, raw.agents);
    let tls = raw.tls.map(|t| TlsFiles {
        cert: PathBuf::from(t.cert),
        key: PathBuf::from(t.key),
    });

    let plugins = plugins(&mut c, raw.plugins, previous);
    let (upstreams, upstream_index) = upstreams(&mut c, raw.upstreams, previous);
    let realtime = crate::services::realtime(&mut c, raw.realtime, &plugins);
    let routes = routes(
        &mut c,
        raw.routes,
        &upstream_index,
        &plugins,
        agents.is_some(),
    );
    let monitor = crate::alerts::monitor(&mut c, raw.monitor);
    let known = crate::alerts::Known {
        routes: &routes,
        upstreams: &upstreams,
        agents_on: agents.is_some(),
        interval: monitor.interval,
    };
    let alerts = crate::alerts::alerts(&mut c, raw.alerts, &known);

    if !c.errors.is_empty() {
        return None;
    }
    Some(Snapshot {
        listeners,
        server,
        admin,
        tls,
        upstreams,
        routes: RouteTable::new(routes),
        plugins,
        backend,
        agents,
        realtime,
        alerts,
        monitor,
    })
}

fn listeners(c: &mut Compiler<'_>, raw: &RawListeners) -> Listeners {
    let http = c.listen_addr(
        "listeners.http",
        raw.http.as_deref().unwrap_or("0.0.0.0:8080"),
    );
    let https = raw
        .https
        .as_deref()
        .and_then(|a| c.listen_addr("listeners.https", a));
    let admin = raw
        .admin
        .as_deref()
        .and_then(|a| c.listen_addr("listeners.admin", a));
    for (name, other) in [("listeners.https", https), ("listeners.admin", admin)] {
        if let (Some(a), Some(b)) = (http, other) {
            if a == b {
                c.invalid(name, &b.to_string(), "same address as listeners.http");
            }
        }
    }
    if let (Some(a), Some(b)) = (https, admin) {
        if a == b {
            c.invalid(
                "listeners.admin",
                &b.to_string(),
                "same address as listeners.https",
            );
        }
    }
    // HTTP/3 is UDP: it may share the https port number (and any TCP listener's address).
    let h3 = raw
        .h3
        .as_deref()
        .and_then(|a| c.listen_addr("listeners.h3", a));
    Listeners {
        http,
        https,
        admin,
        h3,
        alt_svc: raw.alt_svc.unwrap_or(true),
    }
}

fn admin(c: &mut Compiler<'_>, raw: RawAdmin) -> AdminSettings {
    let token = match (raw.token, raw.token_env) {
        (Some(t), _) if t.is_empty() => {
            c.invalid("admin.token", "", "must not be empty (omit it to disable)");
            None
        }
        (Some(t), _) if t == crate::secrets::MASK => {
            c.invalid(
                "admin.token",
                &t,
                "\"***\" is what GET /admin/config shows in place of the token: write the real one",
            );
            None
        }
        (Some(t), _) => Some(t),
        (None, Some(var)) => match std::env::var(&var) {
            Ok(t) if !t.is_empty() => Some(t),
            _ => {
                c.invalid(
                    "admin.token_env",
                    &var,
                    "environment variable is unset or empty",
                );
                None
            }
        },
        (None, None) => None,
    };
    AdminSettings { token }
}

fn server(c: &mut Compiler<'_>, raw: &RawServer) -> ServerSettings {
    let threads = match raw.threads {
        None => 2,
        Some(n) if (1..=1024).contains(&n) => n as usize,
        Some(n) => {
            c.invalid(
                "server.threads",
                &n.to_string(),
                "must be between 1 and 1024",
            );
            2
        }
    };
    let d = DownstreamLimits::default();
    let max_connections = match raw.max_connections {
        None => d.max_connections,
        Some(n) if (1..=10_000_000).contains(&n) => n as usize,
        Some(n) => {
            c.invalid(
                "server.max_connections",
                &n.to_string(),
                "must be between 1 and 10000000",
            );
            d.max_connections
        }
    };
    let limits = DownstreamLimits {
        header_read_timeout: c.positive_duration(
            "server.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            d.header_read_timeout,
        ),
        keepalive_timeout: c.positive_duration(
            "server.keepalive_timeout",
            raw.keepalive_timeout.as_deref(),
            d.keepalive_timeout,
        ),
        body_read_timeout: c.positive_duration(
            "server.body_read_timeout",
            raw.body_read_timeout.as_deref(),
            d.body_read_timeout,
        ),
        write_timeout: c.positive_duration(
            "server.write_timeout",
            raw.write_timeout.as_deref(),
            d.write_timeout,
        ),
        max_connections,
        max_request_body: c
            .size("server.max_request_body", raw.max_request_body.as_ref())
            .unwrap_or(d.max_request_body),
    };
    let mut nets = Vec::new();
    for (i, s) in raw.trusted_proxies.iter().flatten().enumerate() {
        match orchestra_plugins::parse_net(s) {
            Ok(n) => nets.push(n),
            Err(reason) => c.invalid(format!("server.trusted_proxies[{i}]"), s, reason),
        }
    }
    ServerSettings {
        threads,
        grace_period: c.positive_duration(
            "server.grace_period",
            raw.grace_period.as_deref(),
            Duration::from_secs(30),
        ),
        data_dir: PathBuf::from(raw.data_dir.as_deref().unwrap_or("data")),
        limits,
        trusted_proxies: orchestra_plugins::TrustedProxies::new(nets),
    }
}

fn plugins(
    c: &mut Compiler<'_>,
    raw: BTreeMap<String, toml::Value>,
    previous: Option<&Snapshot>,
) -> HashMap<String, PluginDef> {
    let mut out: HashMap<String, PluginDef> = HashMap::new();
    for (name, value) in raw {
        // An unchanged definition keeps its instance, and with it its state (e.g. rate buckets).
        // `jwt` is always rebuilt: its secret or JWKS file may have rotated under the same table.
        let rereads_files = crate::snapshot::definition_reads_files(&value);
        if let Some(old) = previous.and_then(|p| p.plugins.get(&name)) {
            if old.definition == value && !rereads_files {
                out.insert(name, old.clone());
                continue;
            }
        }
        let definition = value.clone();
        let path = format!("plugins.{}", key(&name));
        let Some(kind) = value
            .get("kind")
            .and_then(|k| k.as_str())
            .map(str::to_owned)
        else {
            c.err(
                join(&path, "kind"),
                ErrorKind::Shape {
                    message: "missing string key `kind`".into(),
                },
            );
            continue;
        };
        match kind.as_str() {
            "headers" => {
                let Some(p) = typed::<RawHeadersPlugin>(value, &path, c.file, c.errors) else {
                    continue;
                };
                let request = header_rules(c, &join(&path, "request"), &p.request);
                let response = header_rules(c, &join(&path, "response"), &p.response);
                let plugin: Arc<dyn Plugin> =
                    Arc::new(HeadersPlugin::new(name.clone(), request, response));
                out.insert(name, PluginDef { definition, plugin });
            }
            k if crate::plugin_specs::KINDS.contains(&k) => {
                let built =
                    crate::plugin_specs::build_plugin(&name, k, value, &path, c.file, c.errors);
                if let Some(plugin) = built {
                    out.insert(name, PluginDef { definition, plugin });
                }
            }
            k => c.invalid(
                join(&path, "kind"),
                k,
                "unknown plugin kind (known: headers, rate_limit, jwt, cors, ip_filter, limits)",
            ),
        }
    }
    out
}

fn header_rules(c: &mut Compiler<'_>, path: &str, raw: &RawHeaderRules) -> HeaderRules {
    let mut remove = Vec::new();
    for (i, n) in raw.remove.iter().enumerate() {
        if let Some(h) = c.header_name(&format!("{path}.remove[{i}]"), n) {
            remove.push(h);
        }
    }
    HeaderRules {
        remove,
        set: c.header_pairs(&join(path, "set"), &raw.set),
        add: c.header_pairs(&join(path, "add"), &raw.add),
    }
}

fn upstreams(
    c: &mut Compiler<'_>,
    raw: Vec<toml::Value>,
    previous: Option<&Snapshot>,
) -> (Vec<Arc<Upstream>>, HashMap<String, usize>) {
    let mut out = Vec::new();
    let mut index = HashMap::new();
    for (i, value) in raw.into_iter().enumerate() {
        let path = format!("upstreams[{i}]");
        let definition = value.clone();
        let Some(u) = typed::<RawUpstream>(value, &path, c.file, c.errors) else {
            continue;
        };
        // An unchanged definition keeps its balancer, target statistics, health and ejection
        // state (pingora's connection pools are keyed by peer, so they carry over by themselves).
        let reused = previous
            .and_then(|p| p.upstreams.iter().find(|old| *old.name == *u.name))
            .filter(|old| old.definition == definition)
            .cloned();
        let built = match reused {
            Some(old) => Some(old),
            None => upstream(c, &path, u, definition).map(Arc::new),
        };
        if let Some(u) = built {
            if index.contains_key(&*u.name) {
                c.err(
                    join(&path, "name"),
                    ErrorKind::Duplicate {
                        what: "upstream",
                        name: u.name.to_string(),
                    },
                );
                continue;
            }
            index.insert(u.name.to_string(), out.len());
            out.push(u);
        }
    }
    (out, index)
}

fn upstream(
    c: &mut Compiler<'_>,
    path: &str,
    u: RawUpstream,
    definition: toml::Value,
) -> Option<Upstream> {
    if u.name.is_empty() {
        c.invalid(join(path, "name"), "", "must not be empty");
    }
    let policy = crate::upstream_policy::policy(c, path, &u);
    let protocol = match u.protocol.as_deref() {
        None | Some("h1") => UpstreamProtocol::H1,
        Some("h2") => UpstreamProtocol::H2,
        Some("h2c") => UpstreamProtocol::H2c,
        Some(p) => {
            c.invalid(join(path, "protocol"), p, "expected h1, h2 or h2c");
            UpstreamProtocol::H1
        }
    };
    if protocol == UpstreamProtocol::H2 && !u.tls {
        c.invalid(
            join(path, "protocol"),
            "h2",
            "h2 needs tls = true (use h2c for cleartext)",
        );
    }
    if protocol == UpstreamProtocol::H2c && u.tls {
        c.invalid(
            join(path, "protocol"),
            "h2c",
            "h2c is cleartext; use h2 with tls = true",
        );
    }
    if !u.tls && (u.sni.is_some() || u.verify.is_some()) {
        c.invalid(join(path, "tls"), "false", "sni and verify need tls = true");
    }
    let tls = u.tls.then(|| UpstreamTls {
        sni: u.sni.clone().unwrap_or_default(),
        verify: u.verify.unwrap_or(true),
    });
    let d = Timeouts::default();
    let tp = join(path, "timeouts");
    let timeouts = Timeouts {
        connect: c.positive_duration(
            &join(&tp, "connect"),
            u.timeouts.connect.as_deref(),
            d.connect,
        ),
        read: c.positive_duration(&join(&tp, "read"), u.timeouts.read.as_deref(), d.read),
        write: c.positive_duration(&join(&tp, "write"), u.timeouts.write.as_deref(), d.write),
        idle: c.positive_duration(&join(&tp, "idle"), u.timeouts.idle.as_deref(), d.idle),
    };
    if u.targets.is_empty() {
        c.invalid(join(path, "targets"), "[]", "must not be empty");
    }
    let mut targets = Vec::new();
    for (j, t) in u.targets.iter().enumerate() {
        let tpath = format!("{path}.targets[{j}]");
        let weight = match t.weight {
            None => 1,
            Some(w) if (1..=i64::from(u32::MAX)).contains(&w) => w as u32,
            Some(w) => {
                c.invalid(join(&tpath, "weight"), &w.to_string(), "must be at least 1");
                1
            }
        };
        if let Some(addr) = c.target_addr(&join(&tpath, "addr"), &t.addr) {
            targets.push(Target::new(addr, weight));
        }
    }
    Some(Upstream {
        name: u.name.into(),
        protocol,
        tls,
        timeouts,
        balancer: orchestra_lb::build(policy.strategy, targets, &policy.params),
        policy,
        definition,
    })
}

fn routes(
    c: &mut Compiler<'_>,
    raw: Vec<toml::Value>,
    upstreams: &HashMap<String, usize>,
    plugins: &HashMap<String, PluginDef>,
    agents_on: bool,
) -> Vec<Route> {
    let mut out = Vec::new();
    let mut names = HashMap::new();
    for (i, value) in raw.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(r) = typed::<RawRoute>(value, &path, c.file, c.errors) else {
            continue;
        };
        let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
        if names.insert(name.clone(), i).is_some() {
            c.err(
                join(&path, "name"),
                ErrorKind::Duplicate {
                    what: "route",
                    name: name.clone(),
                },
            );
        }
        let target = crate::services::route_target(c, &path, &r, upstreams, agents_on);
        let mut chain = Vec::new();
        for (j, p) in r.plugins.iter().enumerate() {
            match plugins.get(p) {
                Some(def) => chain.push(Arc::clone(&def.plugin)),
                None => c.err(
                    format!("{path}.plugins[{j}]"),
                    ErrorKind::UnknownReference {
                        what: "plugin",
                        name: p.clone(),
                    },
                ),
            }
        }
        let mp = join(&path, "match");
        let host = match r.matcher.host.as_deref() {
            None | Some("*") => HostMatch::Any,
            Some(h) if h.starts_with("*.") && h.len() > 2 => {
                HostMatch::Suffix(h[1..].to_ascii_lowercase())
            }
            Some(h) if h.contains('*') || h.is_empty() => {
                c.invalid(
                    join(&mp, "host"),
                    h,
                    "expected *, an exact host or *.suffix",
                );
                HostMatch::Any
            }
            Some(h) => HostMatch::Exact(h.to_ascii_lowercase()),
        };
        let pathm = match (&r.matcher.path_prefix, &r.matcher.path) {
            (Some(_), Some(_)) => {
                c.invalid(
                    join(&mp, "path"),
                    "",
                    "set either path or path_prefix, not both",
                );
                PathMatch::Any
            }
            (Some(p), None) => path_value(c, &join(&mp, "path_prefix"), p, PathMatch::Prefix),
            (None, Some(p)) => path_value(c, &join(&mp, "path"), p, PathMatch::Exact),
            (None, None) => PathMatch::Any,
        };
        if r.strip_prefix && !matches!(pathm, PathMatch::Prefix(_)) {
            c.invalid(
                join(&path, "strip_prefix"),
                "true",
                "needs match.path_prefix",
            );
        }
        if r.matcher.methods.as_ref().is_some_and(Vec::is_empty) {
            c.invalid(
                format!("{mp}.methods"),
                "[]",
                "list at least one method (omit the key to match any method)",
            );
        }
        let methods = r.matcher.methods.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(j, m)| {
                    let upper = m.to_ascii_uppercase();
                    Method::from_bytes(upper.as_bytes())
                        .map_err(|_| {
                            c.invalid(format!("{mp}.methods[{j}]"), m, "not an HTTP method")
                        })
                        .ok()
                })
                .collect()
        });
        let headers = c.header_pairs(&join(&mp, "headers"), &r.matcher.headers);
        if let Some(target) = target {
            out.push(Route {
                name: name.into(),
                host,
                path: pathm,
                methods,
                headers,
                target,
                chain: Chain::new(chain),
                strip_prefix: r.strip_prefix,
            });
        }
    }
    out
}

fn path_value(
    c: &mut Compiler<'_>,
    path: &str,
    value: &str,
    make: fn(String) -> PathMatch,
) -> PathMatch {
    if value.starts_with('/') {
        make(value.to_string())
    } else {
        c.invalid(path, value, "must start with /");
        PathMatch::Any
    }
}
