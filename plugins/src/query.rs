//! Query-string values as the `jwt` plugin (a token in `?access_token=`) and the gateway's
//! realtime endpoints (`?token=`, SSE's `since`) read them: the first `name=value` pair,
//! percent-decoded with `+` as a space.

use std::borrow::Cow;

/// The raw (still encoded) value of the first non-empty `name=` pair of `query`.
pub fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// Percent-decodes a query value (`+` is a space); `None` when an escape is malformed or the
/// result is not UTF-8. Borrows when there is nothing to decode.
pub fn percent_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_takes_the_first_non_empty_pair() {
        assert_eq!(param("a=&a=1&a=2", "a"), Some("1"));
        assert_eq!(param("ab=1&b", "b"), None);
    }

    #[test]
    fn decodes_escapes_and_plus_and_refuses_malformed_ones() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert!(matches!(
            percent_decode("plain"),
            Some(Cow::Borrowed("plain"))
        ));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
