//! `[plugins.NAME]` with `kind = "headers"`: `request` and `response`, each with `set`, `add`
//! (tables of header name to value) and `remove` (a list of names).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{HeaderRules, HeadersPlugin};
use crate::section::{Built, PluginKind, Section};

/// The `headers` kind.
pub(crate) const KIND: PluginKind = PluginKind::new("headers", build);

#[derive(Debug, Deserialize)]
struct RawHeaders {
    #[allow(dead_code)] // dispatched on by the registry
    kind: String,
    #[serde(default)]
    request: RawHeaderRules,
    #[serde(default)]
    response: RawHeaderRules,
}

/// Header edits for one direction.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawHeaderRules {
    set: BTreeMap<String, String>,
    add: BTreeMap<String, String>,
    remove: Vec<String>,
}

fn build(name: &str, table: toml::Value, s: &mut Section<'_>) -> Built {
    let raw: RawHeaders = s.typed(table)?;
    let request = rules(s, "request", &raw.request);
    let response = rules(s, "response", &raw.response);
    Some(Arc::new(HeadersPlugin::new(name, request, response)))
}

fn rules(s: &mut Section<'_>, key: &str, raw: &RawHeaderRules) -> HeaderRules {
    let remove = raw
        .remove
        .iter()
        .enumerate()
        .filter_map(|(i, n)| s.header_name(&format!("{key}.remove[{i}]"), n))
        .collect();
    HeaderRules {
        remove,
        set: s.header_pairs(&format!("{key}.set"), &raw.set),
        add: s.header_pairs(&format!("{key}.add"), &raw.add),
    }
}
