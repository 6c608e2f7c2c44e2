//! TOML text → [`RawConfig`], collecting syntax errors, unknown keys and shape errors.

use serde::de::DeserializeOwned;

use crate::schema::RawConfig;
use crate::{ConfigError, ErrorKind};

/// Parses `text`; returns `None` only when the document cannot be read at all.
pub(crate) fn parse(text: &str, file: &str, errors: &mut Vec<ConfigError>) -> Option<RawConfig> {
    let value: toml::Value = match text.parse::<toml::Table>() {
        Ok(t) => toml::Value::Table(t),
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
    typed::<RawConfig>(value, "", file, errors)
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

/// Appends a key path to a prefix: `routes[1]` + `match.host`.
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
