//! `[plugins.NAME]` with `kind = "jwt"`: `algorithms`, `secret_env` / `secret_file`, `jwks_file`,
//! `issuer`, `audience`, `leeway`, `required_claims`, `cookie`, `query`, `forward` (see the
//! module docs of [`super`]).
//!
//! Secrets and key files are read here, when the config is loaded, so a missing variable or an
//! unreadable file is a config error naming its key; a reload reads them again
//! ([`PluginKind::reads_files`]). Relative paths are relative to the working directory, like the
//! other paths of the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestra_config_core::keypath::{join, key};
use serde::Deserialize;

use super::{parse_algorithm, JwtConfig, JwtKeySet, JwtPlugin};
use crate::section::{Built, OneOrMany, PluginKind, Section};

/// The `jwt` kind.
pub(crate) const KIND: PluginKind = PluginKind::new("jwt", build).reading_files();

#[derive(Debug, Deserialize)]
struct RawJwt {
    #[allow(dead_code)] // dispatched on by the registry
    kind: String,
    algorithms: Vec<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    jwks_file: Option<String>,
    issuer: Option<OneOrMany>,
    audience: Option<OneOrMany>,
    leeway: Option<String>,
    required_claims: Option<Vec<String>>,
    cookie: Option<String>,
    query: Option<String>,
    #[serde(default)]
    forward: BTreeMap<String, String>,
}

fn build(name: &str, table: toml::Value, s: &mut Section<'_>) -> Built {
    let raw: RawJwt = s.typed(table)?;
    let mut algorithms = Vec::new();
    for (i, a) in raw.algorithms.iter().enumerate() {
        match parse_algorithm(a) {
            Ok(alg) => algorithms.push(alg),
            Err(reason) => s.invalid(&format!("algorithms[{i}]"), a, reason),
        }
    }
    let (secret, secret_key) = secret(s, &raw);
    let jwks = raw.jwks_file.as_deref().and_then(|f| {
        std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the file: {e}"))
            .and_then(|text| JwtKeySet::from_json(&text))
            .map_err(|reason| s.invalid("jwks_file", f, reason))
            .ok()
    });
    let leeway = s.duration("leeway", raw.leeway.as_deref());
    let mut forward = Vec::new();
    for (claim, header) in &raw.forward {
        let k = join("forward", &key(claim));
        if let Some(h) = s.header_name(&k, header) {
            forward.push((claim.clone(), h));
        }
    }
    for (k, v) in [("cookie", &raw.cookie), ("query", &raw.query)] {
        if v.as_deref() == Some("") {
            s.invalid(k, "", "must not be empty");
        }
    }
    if s.failed() {
        return None;
    }
    let mut cfg = JwtConfig::new(algorithms);
    cfg.hmac_secret = secret;
    cfg.jwks = jwks;
    cfg.issuer = raw
        .issuer
        .as_ref()
        .map(OneOrMany::to_vec)
        .unwrap_or_default();
    cfg.audience = raw
        .audience
        .as_ref()
        .map(OneOrMany::to_vec)
        .unwrap_or_default();
    if let Some(l) = leeway {
        cfg.leeway = l;
    }
    if let Some(r) = raw.required_claims {
        cfg.required_claims = r;
    }
    cfg.cookie = raw.cookie;
    cfg.query = raw.query;
    cfg.forward = forward;
    match JwtPlugin::new(name, cfg) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            let (k, value) = match e.key {
                "secret" => (secret_key, raw.secret_env.or(raw.secret_file)),
                "jwks" => ("jwks_file", raw.jwks_file),
                "algorithms" => ("algorithms", Some(raw.algorithms.join(", "))),
                other => (other, None),
            };
            s.invalid(k, value.unwrap_or_default(), e.reason);
            None
        }
    }
}

/// The HMAC secret from `secret_env` or `secret_file`, and the key that names it.
fn secret(s: &mut Section<'_>, raw: &RawJwt) -> (Option<Vec<u8>>, &'static str) {
    match (&raw.secret_env, &raw.secret_file) {
        (Some(_), Some(f)) => {
            s.invalid(
                "secret_file",
                f,
                "set either secret_env or secret_file, not both",
            );
            (None, "secret_file")
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) => (Some(v.into_bytes()), "secret_env"),
            Err(e) => {
                s.invalid("secret_env", var, format!("environment variable: {e}"));
                (None, "secret_env")
            }
        },
        (None, Some(f)) => match read_secret(f) {
            Ok(b) => (Some(b), "secret_file"),
            Err(reason) => {
                s.invalid("secret_file", f, reason);
                (None, "secret_file")
            }
        },
        (None, None) => (None, "secret_env"),
    }
}

/// Reads a secret file; one trailing newline is not part of the secret.
fn read_secret(path: &str) -> Result<Vec<u8>, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(bytes)
}
