//! `[[routes]]`: matchers (host, path, methods, headers), the target and the plugin chain.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;
use orchestra_plugins::Chain;

use super::Compiler;
use crate::parse::{join, typed};
use crate::route::{HostMatch, PathMatch, Route};
use crate::schema::RawRoute;
use crate::snapshot::PluginDef;
use crate::ErrorKind;

pub(super) fn routes(
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
