//! What the gateway checks and rewrites on every request head before the pipeline trusts it.
//!
//! Every front (HTTP/1.1, HTTP/2, HTTP/3, WebSocket upgrades, the gateway's own services) turns
//! its request head into a [`RequestHead`] with [`RequestHead::parse`] and the pipeline routes on
//! that; so a rule here holds on every protocol at once.
//!
//! | module | what it does |
//! |---|---|
//! | [`normalize`] | the request path in canonical form: percent-encoding, duplicate slashes, dot segments; encoded `/` and `\` and paths above `/` refused |
//! | [`head`] | the head as routing sees it: method, host, normalized path, query, upgrade kind |
//! | [`forwarded`] | `X-Forwarded-For` / `-Proto` / `-Host` toward the upstream, trusted only from `trusted_proxies` |
//! | [`upgrade`] | only `Upgrade: websocket` may open a tunnel; other upgrade tokens are removed |
//! | `harness` | the invariants above as panicking checks, for the fuzz targets (`fuzz/`) and property tests |

pub mod forwarded;
#[doc(hidden)]
pub mod harness;
pub mod head;
pub mod normalize;
pub mod upgrade;

pub use forwarded::{set_forwarded, Scheme};
pub use head::{HeadError, RequestHead};
pub use normalize::{normalize_path, PathError};
pub use upgrade::{strip_foreign_upgrade, Upgrade};
