//! The `limits` plugin: request size limits.
//!
//! ```toml
//! [plugins.limits]
//! kind = "limits"
//! max_body = "10MiB"         # bytes (integer) or a size with unit: B, KB, KiB, MB, MiB, GB, GiB
//! max_header_bytes = 16384   # the request's header block
//! max_uri_length = 4096      # path + "?" + query
//! ```
//! Each limit is optional (absent = not checked); at least one must be set.
//!
//! - `max_uri_length`: the request target's length (path and query, as received) above the
//!   limit → `414 URI Too Long`.
//! - `max_header_bytes`: the header block, counted as `name.len() + value.len() + 4` per field
//!   (`": "` and CRLF, the HTTP/1.1 wire size without the request line; the same count is used
//!   for HTTP/2 and HTTP/3, whose wire form is compressed) above the limit →
//!   `431 Request Header Fields Too Large`. Needs the front's [`HeaderOps::as_map`].
//! - `max_body`: a `Content-Length` above the limit → `413 Content Too Large` before anything is
//!   sent upstream; bodies without a length (chunked, HTTP/2 and HTTP/3 streams) are counted
//!   chunk by chunk in [`Plugin::on_request_body`] and stopped with `413` at the first chunk that
//!   crosses the limit. WebSocket frames after an upgrade are not counted.
//!
//! All rejections use code `PARAM_001`. Put `limits` first in the chain, so that the headers
//! other plugins add (forwarded claims) are not counted and oversized requests are refused
//! before any authentication work.
//!
//! [`HeaderOps::as_map`]: crate::HeaderOps::as_map

pub(crate) mod config;

use http::StatusCode;

use crate::{Plugin, PluginCtx, Reject, RequestView};

/// Typed parameters of a `limits` plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Largest request body in bytes.
    pub max_body: Option<u64>,
    /// Largest header block in bytes (see the module doc for the count).
    pub max_header_bytes: Option<u64>,
    /// Longest request target (path and query).
    pub max_uri_length: Option<u64>,
}

/// The `limits` plugin (see the module doc).
#[derive(Debug)]
pub struct LimitsPlugin {
    name: String,
    cfg: LimitsConfig,
}

impl LimitsPlugin {
    /// Creates the plugin named `name`.
    pub fn new(name: impl Into<String>, cfg: LimitsConfig) -> Self {
        LimitsPlugin {
            name: name.into(),
            cfg,
        }
    }

    fn too_large(&self, total: u64, max: u64) -> Reject {
        Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PARAM_001",
            format!("request body of {total} bytes exceeds the limit of {max} bytes"),
        )
    }
}

/// The header block size as counted by `max_header_bytes`.
pub fn header_block_bytes(map: &http::HeaderMap) -> u64 {
    map.iter()
        .map(|(n, v)| (n.as_str().len() + v.len() + 4) as u64)
        .sum()
}

impl Plugin for LimitsPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_request(&self, req: &mut RequestView<'_>) -> Result<(), Reject> {
        if let Some(max) = self.cfg.max_uri_length {
            let len = req.path.len() as u64;
            if len > max {
                return Err(Reject::new(
                    StatusCode::URI_TOO_LONG,
                    "PARAM_001",
                    format!("request URI of {len} bytes exceeds the limit of {max} bytes"),
                ));
            }
        }
        if let (Some(max), Some(map)) = (self.cfg.max_header_bytes, req.headers.as_map()) {
            let size = header_block_bytes(map);
            if size > max {
                return Err(Reject::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "PARAM_001",
                    format!("request headers of {size} bytes exceed the limit of {max} bytes"),
                ));
            }
        }
        if let Some(max) = self.cfg.max_body {
            // An unparsable Content-Length is the HTTP parser's business; the body is still
            // counted per chunk.
            let declared = req
                .headers
                .get(&http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok());
            if let Some(len) = declared.filter(|&len| len > max) {
                return Err(self.too_large(len, max));
            }
        }
        Ok(())
    }

    fn inspects_body(&self) -> bool {
        self.cfg.max_body.is_some()
    }

    fn on_request_body(
        &self,
        _chunk: &[u8],
        total: u64,
        _ctx: &mut PluginCtx,
    ) -> Result<(), Reject> {
        match self.cfg.max_body {
            Some(max) if total > max => Err(self.too_large(total, max)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, HeaderRules, HeadersPlugin};
    use http::{HeaderMap, HeaderValue, Method};
    use std::sync::Arc;

    fn chain(cfg: LimitsConfig) -> Chain {
        Chain::new(vec![Arc::new(LimitsPlugin::new("limits", cfg))])
    }

    fn head(c: &Chain, path: &str, headers: &mut HeaderMap) -> Result<(), Reject> {
        let mut ctx = PluginCtx::default();
        c.on_request(&mut RequestView {
            method: &Method::POST,
            path,
            headers,
            client_ip: None,
            ctx: &mut ctx,
        })
    }

    #[test]
    fn content_length_at_head_time() {
        let c = chain(LimitsConfig {
            max_body: Some(1000),
            ..Default::default()
        });
        let mut h = HeaderMap::new();
        h.insert("content-length", HeaderValue::from_static("1000"));
        head(&c, "/", &mut h).expect("at the limit");
        h.insert("content-length", HeaderValue::from_static("1001"));
        let e = head(&c, "/", &mut h).expect_err("over");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "PARAM_001")
        );
        h.insert("content-length", HeaderValue::from_static("garbage"));
        head(&c, "/", &mut h).expect("left to the parser; counted per chunk");
    }

    #[test]
    fn streamed_body_counted_per_chunk() {
        let c = chain(LimitsConfig {
            max_body: Some(10),
            ..Default::default()
        });
        assert!(c.inspects_body());
        let mut ctx = PluginCtx::default();
        let mut total = 0;
        for chunk in [&b"12345"[..], b"67890"] {
            total += chunk.len() as u64;
            c.on_request_body(chunk, total, &mut ctx).expect("within");
        }
        let e = c
            .on_request_body(b"x", total + 1, &mut ctx)
            .expect_err("over");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message.contains("11 bytes"));
        // Without max_body the chain skips the body phase entirely.
        assert!(!chain(LimitsConfig {
            max_uri_length: Some(1),
            ..Default::default()
        })
        .inspects_body());
    }

    #[test]
    fn header_bytes_and_uri_length() {
        let c = chain(LimitsConfig {
            max_header_bytes: Some(40),
            max_uri_length: Some(12),
            ..Default::default()
        });
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("0123456789")); // 3 + 10 + 4 = 17
        h.append("x-a", HeaderValue::from_static("0123456789")); // 34
        head(&c, "/short?q=1", &mut h).expect("within both");
        h.insert("x-b", HeaderValue::from_static("12")); // 34 + 9 = 43
        let e = head(&c, "/", &mut h).expect_err("headers");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "PARAM_001")
        );
        let e = head(&c, "/short?q=12345", &mut HeaderMap::new()).expect_err("uri with query");
        assert_eq!(e.status, StatusCode::URI_TOO_LONG);
    }

    #[test]
    fn body_phase_only_reaches_plugins_that_inspect() {
        let headers = HeadersPlugin::new("h", HeaderRules::default(), HeaderRules::default());
        let c = Chain::new(vec![
            Arc::new(headers),
            Arc::new(LimitsPlugin::new(
                "limits",
                LimitsConfig {
                    max_body: Some(1),
                    ..Default::default()
                },
            )),
        ]);
        let mut ctx = PluginCtx::default();
        assert!(c.on_request_body(b"xx", 2, &mut ctx).is_err());
    }
}
