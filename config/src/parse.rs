//! TOML text → [`RawConfig`], collecting syntax errors, unknown keys and shape errors.
//!
//! The reading itself is `orchestra_config_core::read`, shared with the plugins and the agent;
//! this module turns what it finds into [`ConfigError`]s naming the file.

use orchestra_config_core::{read, Found};
use serde::de::DeserializeOwned;

use crate::schema::RawConfig;
use crate::ConfigError;

pub(crate) use orchestra_config_core::keypath::{join, key};

/// Parses `text`; returns `None` only when the document cannot be read at all.
pub(crate) fn parse(text: &str, file: &str, errors: &mut Vec<ConfigError>) -> Option<RawConfig> {
    match read::document(text) {
        Ok(table) => typed::<RawConfig>(toml::Value::Table(table), "", file, errors),
        Err(found) => {
            errors.push(ConfigError::found(file, found));
            None
        }
    }
}

/// Deserializes `value` as `T`, recording unknown keys and the first shape error under `prefix`.
pub(crate) fn typed<T: DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    read::typed_into(value, prefix, errors, |f| ConfigError::found(file, f))
}

/// Records problems found by the shared readers (and the plugins) as errors of `file`.
pub(crate) fn record(file: &str, found: Vec<Found>, errors: &mut Vec<ConfigError>) {
    errors.extend(found.into_iter().map(|f| ConfigError::found(file, f)));
}
