//! How a plugin reads its own `[plugins.NAME]` table: the [`PluginKind`] each built-in plugin
//! declares (its `kind` and its build function), and the [`Section`] it reads through, which reports every problem at its
//! key path (`plugins.per-user.rate`) in the wording of the rest of the config.
//!
//! The config crate owns the file, the generic plugin table (`kind = "..."` and the rest) and the
//! error type; it hands each table to [`crate::registry::build`], which dispatches on `kind` to
//! the [`PluginKind`] registered for it. Problems are [`Found`] values (key path and
//! [`Problem`](orchestra_config_core::Problem)); the config crate names the file and redacts
//! secrets when it turns them into its errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use orchestra_config_core::keypath::join;
use orchestra_config_core::{read, values, Found};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{parse_net, Plugin};

/// What a kind's build function returns: the plugin, or `None` after reporting why.
pub type Built = Option<Arc<dyn Plugin>>;

/// Builds the plugin `name` from its whole table (including `kind`), reporting every problem
/// through the section. Returning `Some` with problems reported is allowed: the registry discards
/// the plugin then.
pub type BuildFn = fn(name: &str, table: toml::Value, section: &mut Section<'_>) -> Built;

/// One kind of plugin (`kind = "rate_limit"`): reads and validates its table, builds the plugin.
#[derive(Clone, Copy)]
pub struct PluginKind {
    kind: &'static str,
    build: BuildFn,
    reads_files: bool,
}

impl PluginKind {
    /// The kind selected by `kind = "<kind>"`, built by `build`.
    pub const fn new(kind: &'static str, build: BuildFn) -> Self {
        PluginKind {
            kind,
            build,
            reads_files: false,
        }
    }

    /// Marks a kind whose build reads files or the environment (secrets, key sets), so that a
    /// reload builds the plugin again even when its table is unchanged.
    pub const fn reading_files(self) -> Self {
        PluginKind {
            reads_files: true,
            ..self
        }
    }

    /// The value of `kind` that selects this plugin.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// True when building reads files or the environment (see [`Self::reading_files`]).
    pub fn reads_files(&self) -> bool {
        self.reads_files
    }

    /// Builds the plugin `name` from its table.
    pub fn build(&self, name: &str, table: toml::Value, section: &mut Section<'_>) -> Built {
        (self.build)(name, table, section)
    }
}

impl std::fmt::Debug for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginKind")
            .field("kind", &self.kind)
            .field("reads_files", &self.reads_files)
            .finish()
    }
}

/// The table of one plugin being read: its key path and the problems found so far.
pub struct Section<'a> {
    path: &'a str,
    found: &'a mut Vec<Found>,
    before: usize,
}

impl<'a> Section<'a> {
    /// A section at key path `path` (`plugins.NAME`), reporting into `found`.
    pub fn new(path: &'a str, found: &'a mut Vec<Found>) -> Self {
        let before = found.len();
        Section {
            path,
            found,
            before,
        }
    }

    /// The key path of `key` in this table (`""` is the table itself).
    pub fn key_path(&self, key: &str) -> String {
        join(self.path, key)
    }

    /// True once a problem was reported through this section.
    pub fn failed(&self) -> bool {
        self.found.len() > self.before
    }

    /// Deserializes the table as `T`, reporting unknown keys and shape errors.
    pub fn typed<T: DeserializeOwned>(&mut self, table: toml::Value) -> Option<T> {
        read::typed(table, self.path, self.found)
    }

    /// Reports `value` at `key` as invalid, for `reason`.
    pub fn invalid(&mut self, key: &str, value: impl Into<String>, reason: impl Into<String>) {
        self.found
            .push(Found::invalid(self.key_path(key), value, reason));
    }

    /// CIDR networks or addresses (`key[i]` for each bad one).
    pub fn nets(&mut self, key: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            match parse_net(s) {
                Ok(n) => out.push(n),
                Err(reason) => self.invalid(&format!("{key}[{i}]"), s, reason),
            }
        }
        out
    }

    /// An HTTP header name.
    pub fn header_name(&mut self, key: &str, name: &str) -> Option<HeaderName> {
        values::header_name(&self.key_path(key), name, self.found)
    }

    /// A table of header names to values.
    pub fn header_pairs(
        &mut self,
        key: &str,
        map: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        values::header_pairs(&self.key_path(key), map, self.found)
    }

    /// A duration such as `10s`, when given.
    pub fn duration(&mut self, key: &str, value: Option<&str>) -> Option<Duration> {
        values::duration(&self.key_path(key), value, self.found)
    }

    /// An integer between 1 and `max`, when given.
    pub fn positive(&mut self, key: &str, value: Option<i64>, max: i64) -> Option<u64> {
        values::int_in(&self.key_path(key), value, 1..=max, self.found).map(|n| n as u64)
    }

    /// A byte size, when given.
    pub fn size(&mut self, key: &str, value: Option<&Size>) -> Option<u64> {
        match value? {
            Size::Bytes(n) => self.positive(key, Some(*n), i64::MAX),
            Size::Text(s) => values::size_text(&self.key_path(key), s, self.found),
        }
    }
}

/// A byte size as written: an integer, or a string with a unit (`"10MiB"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// A number of bytes.
    Bytes(i64),
    /// A number with a unit.
    Text(String),
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The items, each with its key path suffix (`""` for a single string, `[i]` in a list).
    pub fn items(&self) -> Vec<(String, &str)> {
        match self {
            OneOrMany::One(s) => vec![(String::new(), s.as_str())],
            OneOrMany::Many(v) => v
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("[{i}]"), s.as_str()))
                .collect(),
        }
    }

    /// The items as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.items()
            .into_iter()
            .map(|(_, s)| s.to_string())
            .collect()
    }

    /// True for `"*"` or `["*"]`.
    pub fn is_star(&self) -> bool {
        match self {
            OneOrMany::One(s) => s == "*",
            OneOrMany::Many(v) => v.len() == 1 && v[0] == "*",
        }
    }
}
