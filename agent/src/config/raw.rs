//! TOML text → the raw schema, collecting syntax errors, unknown keys and shape errors with
//! their key paths (the same approach as the gateway's `orchestra-config`).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{ConfigError, ErrorKind};

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
    let table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            errors.push(ConfigError::new(
                file,
                "",
                ErrorKind::Syntax {
                    line,
                    column,
                    message: e.message().trim().replace('\n', "; "),
                },
            ));
            return None;
        }
    };
    typed(toml::Value::Table(table), "", file, errors)
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
                    ErrorKind::Shape {
                        message: format!(
                            "expected an argv array or a table, found {}",
                            other.type_str()
                        ),
                    },
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

/// Deserializes `value` as `T`, recording unknown keys and the first shape error under `prefix`.
pub(crate) fn typed<T: DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| {
        unknown.push(join(prefix, &render(&path)));
    };
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    for path in unknown {
        errors.push(ConfigError::new(file, path, ErrorKind::UnknownKey));
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let path = join(prefix, &e.path().to_string().replace(".[", "["));
            let path = if path == "." { String::new() } else { path };
            errors.push(ConfigError::new(
                file,
                path,
                ErrorKind::Shape {
                    message: e.into_inner().message().to_string(),
                },
            ));
            None
        }
    }
}

/// A user-chosen key as it appears in a key path: bare when TOML allows, quoted otherwise.
pub(crate) fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// Appends a key path to a prefix: `tools` + `claude`, `tools.claude` + `[2]`.
pub(crate) fn join(prefix: &str, rest: &str) -> String {
    let rest = rest.trim_start_matches('.');
    match (prefix.is_empty(), rest.is_empty() || rest == "?") {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

fn render(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
        Path::Map { parent, key: k } => join(&render(parent), &key(k)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => render(parent),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}
