//! A strict reader of the Prometheus text exposition format (0.0.4) for tests of `/metrics`:
//! every line must be a `# HELP`, a `# TYPE` or a well-formed sample of a declared family.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The metric name (with its `_bucket` / `_sum` / `_count` suffix).
    pub name: String,
    /// Label names to values, escapes resolved.
    pub labels: BTreeMap<String, String>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

/// Parses Prometheus text format 0.0.4 strictly, panicking on the first line that is not a
/// `# HELP`, `# TYPE` or well-formed sample line, on a sample whose family has no `# TYPE`
/// before it, on a repeated series, or on a missing final newline.
pub fn strict_exposition(text: &str) -> Vec<PromSample> {
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(_)) if is_metric_name(name) => {}
                (Some("TYPE"), Some(name), Some(ty)) if is_metric_name(name) => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                        "bad type, {}",
                        at()
                    );
                    assert!(
                        types.insert(name.to_string(), ty.to_string()).is_none(),
                        "second TYPE, {}",
                        at()
                    );
                }
                _ => panic!("bad comment, {}", at()),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment, {}", at());
        let (name, labels, rest) = parse_sample_head(line).unwrap_or_else(|| panic!("{}", at()));
        let mut fields = rest.split(' ');
        let value = fields.next().unwrap_or_default();
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value, {}", at())),
        };
        if let Some(ts) = fields.next() {
            assert!(ts.parse::<i64>().is_ok(), "bad timestamp, {}", at());
        }
        assert!(fields.next().is_none(), "trailing fields, {}", at());
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&name);
        assert!(
            types.contains_key(family),
            "sample before its TYPE, {}",
            at()
        );
        let key = format!("{name}{labels:?}");
        assert!(seen.insert(key), "repeated series, {}", at());
        out.push(PromSample {
            name,
            labels,
            value,
        });
    }
    out
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name{labels} ` of a sample line: the name, the labels (escapes resolved) and the rest
/// after the single space.
fn parse_sample_head(line: &str) -> Option<(String, BTreeMap<String, String>, &str)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // label name
            let start = chars.peek()?.0;
            if body[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = body[start..].find('=')? + start;
            let key = &body[start..eq];
            if !is_label_name(key) {
                return None;
            }
            while chars.peek()?.0 <= eq {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    '"' => break,
                    '\n' => return None,
                    c => value.push(c),
                }
            }
            if labels.insert(key.to_string(), value).is_some() {
                return None;
            }
            match chars.next()?.1 {
                ',' => continue,
                '}' => break,
                _ => return None,
            }
        }
        let consumed = chars.peek().map(|(i, _)| *i).unwrap_or(body.len());
        rest = &body[consumed..];
    }
    let rest = rest.strip_prefix(' ')?;
    Some((name.to_string(), labels, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_samples_with_escaped_labels_and_histogram_suffixes() {
        let text = "# HELP req Requests.\n# TYPE req counter\nreq{route=\"a\\\"b\",code=\"200\"} 3\n\
                    # TYPE lat histogram\nlat_bucket{le=\"+Inf\"} 2 1700000000\nlat_sum 0.5\nlat_count 2\n";
        let samples = strict_exposition(text);
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].name, "req");
        assert_eq!(samples[0].labels["route"], "a\"b");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[3].name, "lat_count");
    }

    #[test]
    #[should_panic(expected = "sample before its TYPE")]
    fn a_sample_without_its_type_is_refused() {
        strict_exposition("req 1\n");
    }

    #[test]
    #[should_panic(expected = "repeated series")]
    fn a_repeated_series_is_refused() {
        strict_exposition("# TYPE req gauge\nreq 1\nreq 2\n");
    }
}
