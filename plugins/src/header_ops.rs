//! [`HeaderOps`]: the header edits a plugin may make, independent of the front's header type.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Header access that both fronts implement over their own header types (pingora's
/// `RequestHeader`/`ResponseHeader` keep a case map beside the `HeaderMap`, so plugins must not
/// touch the map directly).
pub trait HeaderOps {
    /// The first value of `name`, if present.
    fn get(&self, name: &HeaderName) -> Option<&HeaderValue>;
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: HeaderName, value: HeaderValue);
    /// Adds `value` to `name`, keeping existing values.
    fn append(&mut self, name: HeaderName, value: HeaderValue);
    /// Removes every value of `name`.
    fn remove(&mut self, name: &HeaderName);

    /// Read-only view of the whole header map, when the front keeps one.
    ///
    /// Plugins use it to see repeated fields (several `Cookie` lines in HTTP/2, several
    /// `X-Forwarded-For` lines) and to measure the header block (`limits.max_header_bytes`).
    /// Fronts should implement it; the default `None` makes those plugins fall back to the first
    /// value of a field, and `max_header_bytes` cannot be checked.
    fn as_map(&self) -> Option<&HeaderMap> {
        None
    }
}

impl HeaderOps for HeaderMap {
    fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        HeaderMap::get(self, name)
    }
    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }
    fn append(&mut self, name: HeaderName, value: HeaderValue) {
        HeaderMap::append(self, name, value);
    }
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
    fn as_map(&self) -> Option<&HeaderMap> {
        Some(self)
    }
}

/// Calls `f` on every value of `name` in field order (only the first when the front has no
/// [`HeaderOps::as_map`]); stops early when `f` returns `false`.
pub(crate) fn for_each_value<'h>(
    headers: &'h dyn HeaderOps,
    name: &HeaderName,
    mut f: impl FnMut(&'h HeaderValue) -> bool,
) {
    match headers.as_map() {
        Some(map) => {
            for v in map.get_all(name) {
                if !f(v) {
                    return;
                }
            }
        }
        None => {
            if let Some(v) = headers.get(name) {
                f(v);
            }
        }
    }
}

/// Adds `token` to the response's `Vary` header unless it (or `*`) is already listed.
pub(crate) fn merge_vary(headers: &mut dyn HeaderOps, token: &HeaderValue) {
    let wanted = token.as_bytes();
    let mut present = false;
    for_each_value(headers, &http::header::VARY, |v| {
        present = v
            .as_bytes()
            .split(|&b| b == b',')
            .map(|t| t.trim_ascii())
            .any(|t| t == b"*" || t.eq_ignore_ascii_case(wanted));
        !present
    });
    if !present {
        headers.append(http::header::VARY, token.clone());
    }
}
