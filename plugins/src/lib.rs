//! The per-route policy chain of Orchestra Gateway.
//!
//! A route names plugins (`plugins = ["a", "b"]`); the compiled config turns them into a [`Chain`]
//! of [`Plugin`] objects shared by every request on that route. The request pipeline runs the
//! chain for every front (HTTP/1.1, HTTP/2, WebSocket; HTTP/3 later) through [`HeaderOps`], so a
//! plugin never sees which protocol carried the request.
//!
//! - Request phase, in route order: a plugin may edit the headers sent upstream, store values in
//!   the [`PluginCtx`], or stop the request with a [`Reject`] (the gateway answers it with a JSON
//!   error body, or with a plain reply such as a CORS preflight `204`).
//! - Request body phase, for plugins that inspect the body (`limits`): each chunk with the running
//!   total.
//! - Response phase, in reverse order (the onion model of middleware stacks): headers queued in
//!   the request phase are applied, then each plugin may edit the response headers.
//!
//! | module | kind / role |
//! |---|---|
//! | [`headers`] | `headers`: add, set, remove headers |
//! | [`rate_limit`] | `rate_limit`: GCRA per key, `429` with `Retry-After` and `RateLimit` headers |
//! | [`jwt`] | `jwt`: bearer token verification (HS/RS/ES), claims to the context and upstream |
//! | [`cors`] | `cors`: preflight answers and CORS response headers |
//! | [`ip_filter`] | `ip_filter`: allow / deny CIDR lists |
//! | [`limits`] | `limits`: body, header block and URI size limits |
//! | [`client_ip`] | client address behind trusted proxies (`X-Forwarded-For`) |
//! | [`agent_auth`] | agent register signatures (HMAC, timestamp window, nonce replay cache); a library for the agent hub, not a route plugin |
//!
//! Parameters are parsed and validated by the `config` crate, which calls the typed
//! constructors here.

pub mod agent_auth;
pub mod chain;
mod claims;
pub mod client_ip;
pub mod cors;
pub mod headers;
pub mod ip_filter;
pub mod jwt;
pub mod limits;
pub mod ops;
pub mod rate_limit;
mod rate_store;

pub use chain::{Chain, Plugin, PluginCtx, Reject, RequestView};
pub use claims::Claims;
pub use client_ip::{parse_net, TrustedProxies};
pub use headers::{HeaderRules, HeadersPlugin};
pub use ipnet::IpNet;
pub use ops::HeaderOps;
