//! The grammar every Orchestra config file shares, below the crates that own a file's schema.
//!
//! Three config readers use it: the gateway's `orchestra-config` (the `gateway.toml` schema),
//! `orchestra-plugins` (each plugin reads its own `[plugins.NAME]` table) and `orchestra-agent`
//! (the agent's config file). Each keeps its own error type; this crate reports [`Found`]
//! problems (a key path and a [`Problem`]) that they turn into theirs, so every file reports an
//! unknown key, a wrong type or a bad value the same way, with the same key path syntax:
//!
//! - [`read`]: TOML text → a table ([`read::document`], syntax errors with line and column), and a
//!   TOML value → a serde type ([`read::typed`]), reporting every unknown key and the first shape
//!   error at its key path;
//! - [`keypath`]: how key paths are written (`routes[2].match.host`, `plugins."my plugin".rate`);
//! - [`values`]: checks of values written as strings, each reporting at its key path (durations,
//!   byte sizes, header names and values);
//! - [`duration`] and [`size`]: the grammar of `250ms` and `64KiB`;
//! - [`report`]: how a `check` command prints the errors of a config it rejects.
//!
//! It sits below `orchestra-plugins` and `orchestra-config` (which depends on the plugins for
//! their types), so that both, and the agent, share one implementation without a cycle.

pub mod duration;
mod found;
pub mod keypath;
pub mod read;
pub mod report;
pub mod size;
pub mod values;

pub use found::{Found, FromFound, Problem};
