//! Checks of config values written as strings, each pushing a [`Found`] at its key path when the
//! value is not acceptable, with the same wording in every config file.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::keypath::{join, key};
use crate::Found;

/// A duration such as `250ms` (see [`crate::duration`]); `None` when absent or invalid.
pub fn duration(path: &str, value: Option<&str>, found: &mut Vec<Found>) -> Option<Duration> {
    let v = value?;
    crate::duration::parse_duration(v)
        .map_err(|reason| {
            found.push(Found::invalid(
                path,
                v,
                format!("invalid duration: {reason}"),
            ))
        })
        .ok()
}

/// A byte size written as a string with a unit (see [`crate::size`]); `None` when invalid.
pub fn size_text(path: &str, value: &str, found: &mut Vec<Found>) -> Option<u64> {
    crate::size::parse_size(value)
        .map_err(|reason| found.push(Found::invalid(path, value, reason)))
        .ok()
}

/// An integer within `range`, when given; `None` when absent or out of range.
pub fn int_in(
    path: &str,
    value: Option<i64>,
    range: RangeInclusive<i64>,
    found: &mut Vec<Found>,
) -> Option<i64> {
    let n = value?;
    if range.contains(&n) {
        return Some(n);
    }
    let reason = format!("must be between {} and {}", range.start(), range.end());
    found.push(Found::invalid(path, n.to_string(), reason));
    None
}

/// An HTTP header name.
pub fn header_name(path: &str, name: &str, found: &mut Vec<Found>) -> Option<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| found.push(Found::invalid(path, name, "not a valid HTTP header name")))
        .ok()
}

/// A table of header names to values (`set`, `add`, `match.headers`), each pair at `path.NAME`;
/// pairs with an invalid name or value are left out.
pub fn header_pairs(
    path: &str,
    map: &BTreeMap<String, String>,
    found: &mut Vec<Found>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let p = join(path, &key(k));
        let name = header_name(&p, k, found);
        let value = HeaderValue::from_str(v)
            .map_err(|_| found.push(Found::invalid(&p, v, "not a valid HTTP header value")))
            .ok();
        if let (Some(n), Some(v)) = (name, value) {
            out.push((n, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_reported_at_their_path() {
        let mut found = Vec::new();
        assert_eq!(
            duration("t", Some("2s"), &mut found),
            Some(Duration::from_secs(2))
        );
        assert_eq!(duration("t", None, &mut found), None);
        assert!(found.is_empty());
        assert_eq!(duration("a.t", Some("2"), &mut found), None);
        assert_eq!(size_text("a.s", "3 parsecs", &mut found), None);
        assert_eq!(header_name("a.h", "x y", &mut found), None);
        let map = BTreeMap::from([
            ("ok".to_string(), "v".to_string()),
            ("x-bad".to_string(), "a\nb".to_string()),
        ]);
        assert_eq!(header_pairs("a.set", &map, &mut found).len(), 1);
        assert_eq!(int_in("a.n", Some(3), 1..=3, &mut found), Some(3));
        assert_eq!(int_in("a.n", None, 1..=3, &mut found), None);
        assert_eq!(int_in("a.n", Some(0), 1..=3, &mut found), None);
        let paths: Vec<_> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.t", "a.s", "a.h", "a.set.x-bad", "a.n"]);
        assert_eq!(
            found[4],
            Found::invalid("a.n", "0", "must be between 1 and 3")
        );
    }
}
