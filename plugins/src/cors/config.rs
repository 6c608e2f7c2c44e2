//! `[plugins.NAME]` with `kind = "cors"`: `origins`, `methods`, `headers`, `expose_headers`,
//! `credentials`, `max_age` (see the module docs of [`super`]).

use std::sync::Arc;

use http::Method;
use serde::Deserialize;

use super::{parse_origin, AllowedHeaders, AllowedOrigins, CorsConfig, CorsPlugin};
use crate::section::{Built, OneOrMany, PluginKind, Section};

/// The `cors` kind.
pub(crate) const KIND: PluginKind = PluginKind::new("cors", build);

#[derive(Debug, Deserialize)]
struct RawCors {
    #[allow(dead_code)] // dispatched on by the registry
    kind: String,
    origins: OneOrMany,
    methods: Option<Vec<String>>,
    headers: Option<OneOrMany>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    credentials: bool,
    max_age: Option<String>,
}

fn build(name: &str, table: toml::Value, s: &mut Section<'_>) -> Built {
    let raw: RawCors = s.typed(table)?;
    let mut cfg = CorsConfig::new(origins(s, &raw.origins));
    if let Some(methods) = &raw.methods {
        if methods.is_empty() {
            s.invalid("methods", "[]", "list at least one method");
        }
        cfg.methods = methods
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| s.invalid(&format!("methods[{i}]"), m, "not an HTTP method"))
                    .ok()
            })
            .collect();
    }
    cfg.headers = match &raw.headers {
        None => AllowedHeaders::List(Vec::new()),
        Some(h) if h.is_star() => AllowedHeaders::Any,
        Some(h) => AllowedHeaders::List(
            h.items()
                .into_iter()
                .filter_map(|(suffix, n)| s.header_name(&format!("headers{suffix}"), n))
                .collect(),
        ),
    };
    cfg.expose_headers = raw
        .expose_headers
        .iter()
        .enumerate()
        .filter_map(|(i, n)| s.header_name(&format!("expose_headers[{i}]"), n))
        .collect();
    cfg.credentials = raw.credentials;
    cfg.max_age = s.duration("max_age", raw.max_age.as_deref());
    if s.failed() {
        return None;
    }
    Some(Arc::new(CorsPlugin::new(name, cfg)))
}

fn origins(s: &mut Section<'_>, raw: &OneOrMany) -> AllowedOrigins {
    if raw.is_star() {
        return AllowedOrigins::Any;
    }
    let mut list = Vec::new();
    for (suffix, o) in raw.items() {
        let k = format!("origins{suffix}");
        if o == "*" {
            s.invalid(&k, o, "\"*\" must be the only origin");
        } else {
            match parse_origin(o) {
                Ok(o) => list.push(o),
                Err(reason) => s.invalid(&k, o, reason),
            }
        }
    }
    if list.is_empty() && !s.failed() {
        s.invalid("origins", "[]", "list at least one origin, or \"*\"");
    }
    AllowedOrigins::List(list)
}
