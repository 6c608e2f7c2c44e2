//! [`RawConfig`] → [`Snapshot`]: validates every value and reference, collecting all errors.
//!
//! This module holds the [`Compiler`] (the file name and the error list, with the value checks
//! every section uses), the order in which sections are compiled, and the small sections
//! (`[listeners]`, `[admin]`, `[server]`, `[plugins.*]`, whose tables the plugins read
//! themselves); `upstreams` and `routes` have their own modules, `services`, `upstream_policy`
//! and `alerts` theirs.

mod routes;
mod upstreams;

use routes::routes;
use upstreams::upstreams;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use orchestra_config_core::{values, Found, Problem};
use orchestra_plugins::registry;

use crate::parse::key;
use crate::route::RouteTable;
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
            Problem::Invalid {
                value: value.to_string(),
                reason: reason.into(),
            }
            .into(),
        );
    }

    pub(crate) fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let mut found = Vec::new();
        let d = values::duration(path, value, &mut found);
        self.record(found);
        d.unwrap_or(default)
    }

    /// A count between 1 and `max`; `default` when absent or invalid.
    pub(crate) fn count(
        &mut self,
        path: &str,
        value: Option<i64>,
        max: i64,
        default: usize,
    ) -> usize {
        let mut found = Vec::new();
        let n = values::int_in(path, value, 1..=max, &mut found);
        self.record(found);
        n.map_or(default, |n| n as usize)
    }

    /// Records problems found by the shared value checks.
    pub(crate) fn record(&mut self, found: Vec<Found>) {
        crate::parse::record(self.file, found, self.errors);
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

    fn header_pairs(
        &mut self,
        path: &str,
        map: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut found = Vec::new();
        let out = values::header_pairs(path, map, &mut found);
        self.record(found);
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
    let threads = c.count("server.threads", raw.threads, 1024, 2);
    let d = DownstreamLimits::default();
    let max_connections = c.count(
        "server.max_connections",
        raw.max_connections,
        10_000_000,
        d.max_connections,
    );
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
        preserve_header_case: raw.preserve_header_case.unwrap_or(false),
    }
}

fn plugins(
    c: &mut Compiler<'_>,
    raw: BTreeMap<String, toml::Value>,
    previous: Option<&Snapshot>,
) -> HashMap<String, PluginDef> {
    let mut out: HashMap<String, PluginDef> = HashMap::new();
    for (name, value) in raw {
        // An unchanged definition keeps its instance, and with it its state (e.g. rate buckets),
        // unless building it reads files (a `jwt` secret or JWKS may rotate under the same table).
        if let Some(old) = previous.and_then(|p| p.plugins.get(&name)) {
            if old.definition == value && !registry::reads_files(&value) {
                out.insert(name, old.clone());
                continue;
            }
        }
        let definition = value.clone();
        let path = format!("plugins.{}", key(&name));
        let mut found = Vec::new();
        let built = registry::build(&name, value, &path, &mut found);
        c.record(found);
        if let Some(plugin) = built {
            out.insert(name, PluginDef { definition, plugin });
        }
    }
    out
}
