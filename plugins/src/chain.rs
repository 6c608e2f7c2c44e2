//! The [`Plugin`] trait and the ordered [`Chain`] a route runs.
//!
//! Phases, each with a default so a plugin implements only what it needs:
//! - [`Plugin::on_request`]: request head, in route order; may edit the upstream headers, fill the
//!   [`PluginCtx`], or stop the request with a [`Reject`] (an error, or a plain answer such as a
//!   CORS preflight `204`).
//! - [`Plugin::on_request_body`]: each request body chunk with the running total, in route order,
//!   for plugins whose [`Plugin::inspects_body`] is true (the chain skips the phase otherwise).
//! - [`Plugin::on_response`]: response head, in reverse order. Before it, [`Chain::on_response`]
//!   applies the headers request-phase plugins queued in [`PluginCtx::response_headers`].
//! - [`Plugin::maintenance`]: housekeeping the gateway runs on a timer (e.g. every 10 s), off the
//!   request path.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::{Claims, HeaderOps};

/// Values plugins hand to each other and to the pipeline within one request.
#[derive(Debug, Default, Clone)]
pub struct PluginCtx {
    /// The authenticated subject, once an authentication plugin has set it (`jwt`: the `sub`
    /// claim).
    pub subject: Option<String>,
    /// The verified JWT claims, once the `jwt` plugin has accepted a token.
    pub claims: Option<Arc<Claims>>,
    /// The API key the client authenticated with, once an authentication plugin has set it
    /// (read by `rate_limit` with `key = "api_key"`).
    pub api_key: Option<String>,
    /// Headers for the response to the client, queued in the request phase (CORS headers,
    /// `RateLimit` headers). [`Chain::on_response`] applies them with *set* semantics (replacing
    /// any upstream value), except `Vary`, whose tokens are merged into the existing field.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a plugin sees of a request in the request phase.
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request target as received (before any `strip_prefix`): the path, optionally followed by
    /// `?query`. Fronts should pass the full path-and-query so that plugins can read query
    /// parameters (`jwt` with `query = "token"`) and measure the URI (`limits`); read it through
    /// [`RequestView::path_only`] and [`RequestView::query`].
    pub path: &'a str,
    /// The headers that will be sent upstream.
    pub headers: &'a mut dyn HeaderOps,
    /// The client's address: the connected peer, or, when the peer is one of the gateway's
    /// `[server] trusted_proxies`, the client it forwards for (resolved once by the gateway with
    /// [`TrustedProxies::resolve`](crate::TrustedProxies::resolve)). `None` when unknown.
    pub client_ip: Option<IpAddr>,
    /// Per-request values shared across the chain.
    pub ctx: &'a mut PluginCtx,
}

impl RequestView<'_> {
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(self.path, |(p, _)| p)
    }

    /// The query string (after `?`, without it), when the front passed one.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }
}

/// A plugin's decision to answer the request itself instead of proxying it.
///
/// Two kinds of answer:
/// - an **error** (`plain_answer == false`, built with [`Reject::new`]): the gateway sends
///   `status`, `headers` and the JSON error body `{"error": {"code", "message", "request_id"}}`;
/// - a **plain answer** (`plain_answer == true`, built with [`Reject::plain_answer`]): a normal
///   answer such as a CORS
///   preflight `204`; the gateway sends `status` and `headers` with an empty body and no JSON,
///   and does not count it as an error. `code` is empty and `message` is for logs only.
#[derive(Debug, Clone)]
pub struct Reject {
    /// Status code of the gateway's answer.
    pub status: StatusCode,
    /// Platform error code for the JSON body (e.g. `RATE_LIMITED`); empty for a plain answer.
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
    /// Extra response headers (e.g. `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `true` for a plain answer without an error body (see the type's doc).
    pub plain_answer: bool,
}

impl Reject {
    /// An error answer with `status`, platform `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Reject {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            plain_answer: false,
        }
    }

    /// A plain answer with `status` and `headers` and an empty body (not an error).
    pub fn plain_answer(
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        message: impl Into<String>,
    ) -> Self {
        Reject {
            status,
            code: "",
            message: message.into(),
            headers,
            plain_answer: true,
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// One policy step on a route. Implementations are shared by all requests and all fronts, so
/// they keep per-request state in [`PluginCtx`] and shared state in atomics or sharded maps.
pub trait Plugin: Send + Sync + Debug {
    /// The plugin's config name (`[plugins.NAME]`).
    fn name(&self) -> &str;

    /// Runs before the request is sent upstream. `Err` stops the chain and the gateway answers
    /// with the rejection.
    fn on_request(&self, _req: &mut RequestView<'_>) -> Result<(), Reject> {
        Ok(())
    }

    /// True when the plugin wants [`Plugin::on_request_body`] calls. Default `false`.
    fn inspects_body(&self) -> bool {
        false
    }

    /// Runs for each chunk of the request body, after the request phase accepted the request.
    /// `total` is the number of body bytes received so far, this chunk included. `Err` stops the
    /// upload: the gateway answers with the rejection if the response has not started yet, and
    /// closes the connection otherwise. Not called for WebSocket frames after an upgrade.
    fn on_request_body(
        &self,
        _chunk: &[u8],
        _total: u64,
        _ctx: &mut PluginCtx,
    ) -> Result<(), Reject> {
        Ok(())
    }

    /// Runs on the response headers before they go to the client.
    fn on_response(&self, _status: StatusCode, _headers: &mut dyn HeaderOps, _ctx: &PluginCtx) {}

    /// Periodic housekeeping, called by the gateway on a timer off the request path (e.g. the
    /// rate limiter drops idle keys). Must be cheap when there is nothing to do.
    fn maintenance(&self) {}
}

/// The ordered plugins of one route.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    plugins: Vec<Arc<dyn Plugin>>,
    inspects_body: bool,
}

impl Chain {
    /// Builds a chain that runs `plugins` in the given order.
    pub fn new(plugins: Vec<Arc<dyn Plugin>>) -> Self {
        let inspects_body = plugins.iter().any(|p| p.inspects_body());
        Chain {
            plugins,
            inspects_body,
        }
    }

    /// True when the route has no plugins (the pipeline skips both phases).
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Names of the plugins in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().map(|p| p.name())
    }

    /// Runs every plugin's request phase in order, stopping at the first rejection.
    pub fn on_request(&self, req: &mut RequestView<'_>) -> Result<(), Reject> {
        self.plugins.iter().try_for_each(|p| p.on_request(req))
    }

    /// True when some plugin inspects the request body: only then must the front call
    /// [`Chain::on_request_body`].
    pub fn inspects_body(&self) -> bool {
        self.inspects_body
    }

    /// Runs the body phase of the plugins that inspect the body, in order, stopping at the
    /// first rejection. `total` counts the body bytes received so far, `chunk` included.
    pub fn on_request_body(
        &self,
        chunk: &[u8],
        total: u64,
        ctx: &mut PluginCtx,
    ) -> Result<(), Reject> {
        if !self.inspects_body {
            return Ok(());
        }
        self.plugins
            .iter()
            .filter(|p| p.inspects_body())
            .try_for_each(|p| p.on_request_body(chunk, total, ctx))
    }

    /// Applies the headers queued in [`PluginCtx::response_headers`] (set, `Vary` merged), then
    /// runs every plugin's response phase in reverse order.
    pub fn on_response(&self, status: StatusCode, headers: &mut dyn HeaderOps, ctx: &PluginCtx) {
        for (name, value) in &ctx.response_headers {
            if name == http::header::VARY {
                crate::header_ops::merge_vary(headers, value);
            } else {
                headers.set(name.clone(), value.clone());
            }
        }
        for p in self.plugins.iter().rev() {
            p.on_response(status, headers, ctx);
        }
    }

    /// Runs every plugin's [`Plugin::maintenance`].
    pub fn maintenance(&self) {
        for p in &self.plugins {
            p.maintenance();
        }
    }
}
