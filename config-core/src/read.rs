//! TOML text → a table, and a TOML value → a serde type, reporting problems at their key paths.
//!
//! [`typed`] reads one element at a time (a route, an upstream, a plugin table), so an unknown
//! key or a wrong type in one element does not hide the problems of the next.

use serde::de::DeserializeOwned;

use crate::keypath::{join, key};
use crate::{Found, FromFound, Problem};

/// Parses a whole document; a syntax error is reported at the empty key path with its line and
/// column.
pub fn document(text: &str) -> Result<toml::Table, Found> {
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        Found::new(
            "",
            Problem::Syntax {
                line,
                column,
                message: e.message().trim().replace('\n', "; "),
            },
        )
    })
}

/// Deserializes `value` as `T`, pushing every unknown key and the first shape error (both under
/// `prefix`) to `found`. `None` when the shape is wrong; unknown keys alone still give `Some`.
pub fn typed<T: DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
    found: &mut Vec<Found>,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| {
        unknown.push(join(prefix, &render(&path)));
    };
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    found.extend(
        unknown
            .into_iter()
            .map(|path| Found::new(path, Problem::UnknownKey)),
    );
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let path = join(prefix, &e.path().to_string().replace(".[", "["));
            let path = if path == "." { String::new() } else { path };
            found.push(Found::new(
                path,
                Problem::Shape {
                    message: e.into_inner().message().to_string(),
                },
            ));
            None
        }
    }
}

/// [`typed`], with each problem turned into the caller's error type by `into` (the config
/// readers' wrappers: they add the file name).
pub fn typed_into<T: DeserializeOwned, E>(
    value: toml::Value,
    prefix: &str,
    errors: &mut Vec<E>,
    into: impl Fn(Found) -> E,
) -> Option<T> {
    let mut found = Vec::new();
    let out = typed(value, prefix, &mut found);
    errors.extend(found.into_iter().map(into));
    out
}

/// [`typed`] for a reader whose errors name the file: each problem becomes an `E` of `file`.
pub fn typed_in<T: DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
    file: &str,
    errors: &mut Vec<impl FromFound>,
) -> Option<T> {
    typed_into(value, prefix, errors, |f| FromFound::from_found(file, f))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        rate: String,
        #[serde(default)]
        tags: BTreeMap<String, Vec<u16>>,
    }

    fn read(text: &str) -> (Option<Sample>, Vec<Found>) {
        let mut found = Vec::new();
        let table = document(text).expect("test TOML");
        let v = typed::<Sample>(toml::Value::Table(table), "plugins.p", &mut found);
        (v, found)
    }

    #[test]
    fn unknown_keys_are_reported_at_their_path_and_do_not_fail_the_read() {
        let (v, found) = read("rate = \"1/s\"\nbogus = 1\n[tags]\n\"a b\" = [1]\n");
        assert!(v.is_some());
        assert_eq!(
            found,
            vec![Found::new("plugins.p.bogus", Problem::UnknownKey)]
        );
    }

    #[test]
    fn the_first_shape_error_names_its_path() {
        let (v, found) = read("rate = \"1/s\"\n[tags]\nx = [1, \"two\"]\n");
        assert!(v.is_none());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "plugins.p.tags.x[1]");
        assert!(matches!(found[0].problem, Problem::Shape { .. }));
        let (_, found) = read("");
        assert_eq!(found[0].path, "plugins.p");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = document("a = 1\nb = = 2\n").expect_err("bad TOML");
        assert_eq!(e.path, "");
        let Problem::Syntax { line, column, .. } = e.problem else {
            panic!("not a syntax error: {e:?}");
        };
        assert_eq!((line, column), (2, 5));
    }
}
