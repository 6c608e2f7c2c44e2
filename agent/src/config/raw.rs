//! TOML text → the raw schema, collecting syntax errors, unknown keys and shape errors with
//! their key paths, through the reader the gateway's config uses (`orchestra-config-core`).

use std::collections::BTreeMap;

use orchestra_config_core::read::{self, typed_in as typed};
use orchestra_config_core::Problem;
use serde::Deserialize;

use super::error::ConfigError;
pub(crate) use orchestra_config_core::keypath::{join, key};

/// The agent config file as written; every key optional here, required ones are checked when
/// the file is validated (so that all missing keys are reported at once).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAgent {
    pub gateway: Option<String>,
    pub server_name: Option<String>,
    pub ca: Option<String>,
    pub insecure: Option<bool>,
    pub transport: Option<String>,
    pub id: Option<String>,
    pub api_key: Option<String>,
    pub secret: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    pub name: Option<String>,
    pub capabilities: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub max_tasks: Option<i64>,
    pub workdir: Option<String>,
    pub keep_alive: Option<String>,
    pub connect_timeout: Option<String>,
    pub stop_grace: Option<String>,
    pub reconnect: Option<RawReconnect>,
    pub output: Option<RawOutput>,
    /// Parsed entry by entry (an entry is an array or a table), see [`RawTool`].
    pub tools: Option<toml::Table>,
}

/// `[reconnect]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawReconnect {
    pub base: Option<String>,
    pub max: Option<String>,
    pub stable_after: Option<String>,
}

/// `[output]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOutput {
    pub memory_per_task: Option<String>,
    pub spill_per_task: Option<String>,
}

/// A `[tools]` entry written as a table.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawToolTable {
    pub argv: Vec<String>,
    pub resume: Option<Vec<String>>,
    pub format: Option<String>,
    pub stdin: Option<String>,
}

/// A `[tools]` entry.
#[derive(Debug)]
pub(crate) enum RawTool {
    /// `name = ["prog", "arg", ...]`.
    Argv(Vec<String>),
    /// `name = { argv = [...], ... }`.
    Table(RawToolTable),
}

/// Parses the whole file; `None` when it is not valid TOML or its shape is wrong.
pub(crate) fn parse(text: &str, file: &str, errors: &mut Vec<ConfigError>) -> Option<RawAgent> {
    match read::document(text) {
        Ok(table) => typed(toml::Value::Table(table), "", file, errors),
        Err(found) => {
            errors.push(ConfigError::found(file, found));
            None
        }
    }
}

/// Parses the entries of `[tools]`, in file order of their names.
pub(crate) fn tools(
    table: toml::Table,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, RawTool)> {
    let mut out = Vec::new();
    for (name, value) in table {
        let path = join("tools", &key(&name));
        let tool = match value {
            toml::Value::Array(_) => {
                typed::<Vec<String>>(value, &path, file, errors).map(RawTool::Argv)
            }
            toml::Value::Table(_) => {
                typed::<RawToolTable>(value, &path, file, errors).map(RawTool::Table)
            }
            other => {
                errors.push(ConfigError::new(
                    file,
                    path,
                    Problem::Shape {
                        message: format!(
                            "expected an argv array or a table, found {}",
                            other.type_str()
                        ),
                    }
                    .into(),
                ));
                None
            }
        };
        if let Some(tool) = tool {
            out.push((name, tool));
        }
    }
    out
}
