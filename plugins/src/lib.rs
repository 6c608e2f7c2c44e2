//! The per-route policy chain of Orchestra Gateway.
//!
//! A route names plugins (`plugins = ["a", "b"]`); the compiled config turns them into a [`Chain`]
//! of [`Plugin`] objects shared by every request on that route. The request pipeline runs the
//! chain for every front (HTTP/1.1, HTTP/2, HTTP/3, WebSocket) through [`HeaderOps`], so a
//! plugin never sees which protocol carried the request.
//!
//! - Request phase, in route order: a plugin may edit the headers sent upstream, store values in
//!   the [`PluginCtx`], or stop the request with a [`Reject`] (the gateway answers it with a JSON
//!   error body, or with a plain answer such as a CORS preflight `204`).
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
//! | [`query`] | query-string values, percent-decoded (the `jwt` token parameter; the gateway's realtime endpoints) |
//! | [`agent_auth`] | agent register signatures (HMAC, timestamp window, nonce replay cache); a library for the agent hub, not a route plugin |
//!
//! ## Configuration: each plugin reads its own table
//!
//! A `[plugins.NAME]` table names its `kind`; the config crate (`orchestra-config`) knows nothing
//! else about plugins. It hands each table to [`registry::build`], which finds the
//! [`PluginKind`] registered for that `kind` in [`registry::KINDS`]; the kind deserializes and
//! validates the rest of the table through a [`Section`], which reports every problem at its key
//! path (`plugins.per-user.rate`), and builds the plugin with its typed constructor. The config
//! crate adds the file name and redacts secrets when it turns the problems into its errors.
//!
//! The dependency runs one way: `orchestra-config` depends on this crate (its snapshot holds the
//! [`Chain`]s), and both read TOML through `orchestra-config-core` (key paths, unknown keys, the
//! duration and size grammar), which sits below them.
//!
//! ### How to add a plugin
//!
//! Everything happens in this crate:
//! 1. write the plugin in its module (`src/NAME.rs`): a typed config, a constructor and an
//!    `impl Plugin`;
//! 2. add `src/NAME/config.rs`: a serde struct of the table (with a `kind: String` field, and no
//!    `deny_unknown_fields`: unknown keys are reported by the section), a
//!    `pub(crate) const KIND: PluginKind = PluginKind::new("NAME", build)` (add
//!    `.reading_files()` if building reads files or the environment), and its `build` function,
//!    which reads the table with [`Section::typed`], checks each value with the section's helpers
//!    (`invalid`, `duration`, `size`, `nets`, ...) and returns the plugin;
//! 3. append the kind to [`registry::KINDS`], and a row to the table above;
//! 4. test the table's good and bad values next to the others in `src/registry/tests.rs`.

pub mod agent_auth;
pub mod chain;
mod claims;
pub mod client_ip;
pub mod cors;
pub mod header_ops;
pub mod headers;
pub mod ip_filter;
pub mod jwt;
pub mod limits;
pub mod query;
pub mod rate_limit;
mod rate_store;
pub mod registry;
pub mod section;

pub use chain::{Chain, Plugin, PluginCtx, Reject, RequestView};
pub use claims::Claims;
pub use client_ip::{parse_net, TrustedProxies};
pub use header_ops::HeaderOps;
pub use headers::{HeaderRules, HeadersPlugin};
pub use ipnet::IpNet;
pub use section::{Built, PluginKind, Section};
