//! The built-in plugin kinds, and the dispatch of a `[plugins.NAME]` table on its `kind`.
//!
//! [`KINDS`] is the one list of plugin kinds: the config crate knows none of them. See the crate
//! docs for how to add one.

use std::sync::Arc;

use orchestra_config_core::keypath::join;
use orchestra_config_core::{Found, Problem};

use crate::section::{PluginKind, Section};
use crate::{cors, headers, ip_filter, jwt, limits, rate_limit, Plugin};

/// Every plugin kind, in the order error messages list them.
pub static KINDS: &[PluginKind] = &[
    headers::config::KIND,
    rate_limit::config::KIND,
    jwt::config::KIND,
    cors::config::KIND,
    ip_filter::config::KIND,
    limits::config::KIND,
];

/// The kind registered as `kind`.
pub fn find(kind: &str) -> Option<&'static PluginKind> {
    KINDS.iter().find(|k| k.kind() == kind)
}

/// The `kind` a plugin table names, if it is a string.
pub fn kind_of(table: &toml::Value) -> Option<&str> {
    table.get("kind").and_then(|k| k.as_str())
}

/// True when the plugin `table` describes reads files or the environment when built (see
/// [`PluginKind::reads_files`]).
pub fn reads_files(table: &toml::Value) -> bool {
    kind_of(table)
        .and_then(find)
        .is_some_and(|k| k.reads_files())
}

/// Builds the plugin `name` from its table at key path `path` (`plugins.NAME`). Returns `None`
/// exactly when problems were pushed to `found`.
pub fn build(
    name: &str,
    table: toml::Value,
    path: &str,
    found: &mut Vec<Found>,
) -> Option<Arc<dyn Plugin>> {
    let Some(kind) = kind_of(&table).map(str::to_owned) else {
        found.push(Found::new(
            join(path, "kind"),
            Problem::Shape {
                message: "missing string key `kind`".into(),
            },
        ));
        return None;
    };
    let Some(builder) = find(&kind) else {
        let known: Vec<_> = KINDS.iter().map(|k| k.kind()).collect();
        found.push(Found::invalid(
            join(path, "kind"),
            &kind,
            format!("unknown plugin kind (known: {})", known.join(", ")),
        ));
        return None;
    };
    let mut section = Section::new(path, found);
    match builder.build(name, table, &mut section) {
        Some(plugin) if !section.failed() => Some(plugin),
        Some(_) => None,
        None => {
            if !section.failed() {
                section.invalid(
                    "",
                    kind,
                    "the plugin could not be built and gave no reason (a bug: please report it)",
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests;
