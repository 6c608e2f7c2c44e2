//! TOML text → [`RawConfig`], collecting syntax errors, unknown keys and shape errors.
//!
//! The reading itself is `orchestra_config_core::read`, shared with the plugins and the agent;
//! this module turns what it finds into [`ConfigError`]s naming the file.

use orchestra_config_core::{read, Found};

use crate::schema::RawConfig;
use crate::ConfigError;

pub(crate) use orchestra_config_core::keypath::{join, key};
/// Deserializes a value as `T`, recording unknown keys and the first shape error under its
/// prefix as errors of the file.
pub(crate) use orchestra_config_core::read::typed_in as typed;

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

/// Records problems found by the shared readers (and the plugins) as errors of `file`.
pub(crate) fn record(file: &str, found: Vec<Found>, errors: &mut Vec<ConfigError>) {
    errors.extend(found.into_iter().map(|f| ConfigError::found(file, f)));
}
