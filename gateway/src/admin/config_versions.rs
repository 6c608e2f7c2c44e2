//! `GET /admin/config/history/{version}`: one remembered version with its text, secrets masked
//! (the dashboard diffs two of them).

use http::StatusCode;
use serde_json::Value;

use super::{error, json_response, version_json, Resp};
use crate::state::GatewayState;

/// The version `n` of the history, or 404.
pub(super) fn version(state: &GatewayState, n: &str) -> Resp {
    let Ok(n) = n.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "PARAM_001",
            format!("version must be a number, not {n:?}"),
        );
    };
    let versions = state.history.versions();
    let Some(v) = versions.iter().find(|v| v.version == n) else {
        let kept: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
        return error(
            StatusCode::NOT_FOUND,
            "PARAM_001",
            format!(
                "version {n} is not in the history (kept: {})",
                kept.join(", ")
            ),
        );
    };
    let mut body = version_json(v);
    if let Value::Object(m) = &mut body {
        m.insert("format".into(), "toml".into());
        m.insert(
            "config".into(),
            orchestra_config::secrets::mask_config_text(&v.text).into(),
        );
    }
    json_response(StatusCode::OK, body)
}
