//! `[plugins.NAME]` with `kind = "limits"`: `max_body`, `max_header_bytes`, `max_uri_length`.

use std::sync::Arc;

use serde::Deserialize;

use super::{LimitsConfig, LimitsPlugin};
use crate::section::{Built, PluginKind, Section, Size};

/// The `limits` kind.
pub(crate) const KIND: PluginKind = PluginKind::new("limits", build);

#[derive(Debug, Deserialize)]
struct RawLimits {
    #[allow(dead_code)] // dispatched on by the registry
    kind: String,
    max_body: Option<Size>,
    max_header_bytes: Option<Size>,
    max_uri_length: Option<i64>,
}

fn build(name: &str, table: toml::Value, s: &mut Section<'_>) -> Built {
    let raw: RawLimits = s.typed(table)?;
    let cfg = LimitsConfig {
        max_body: s.size("max_body", raw.max_body.as_ref()),
        max_header_bytes: s.size("max_header_bytes", raw.max_header_bytes.as_ref()),
        max_uri_length: s.positive("max_uri_length", raw.max_uri_length, i64::MAX),
    };
    if s.failed() {
        return None;
    }
    if cfg == LimitsConfig::default() {
        s.invalid(
            "",
            "",
            "set at least one of max_body, max_header_bytes, max_uri_length",
        );
        return None;
    }
    Some(Arc::new(LimitsPlugin::new(name, cfg)))
}
