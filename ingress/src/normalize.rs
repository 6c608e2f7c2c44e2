//! The request path in canonical form, before routing.
//!
//! A route's plugins must not be bypassed by spelling its path another way: `/%70rivate/x`,
//! `/public/../private/x`, `//private/x` and `/PRIVATE%2fx` all name (or try to name)
//! `/private/x` to an upstream framework that decodes and normalizes. So the gateway routes,
//! runs plugins on and forwards one spelling only. The steps (Envoy's `normalize_path` +
//! `merge_slashes` + `path_with_escaped_slashes_action: REJECT_REQUEST`, nginx's URI
//! normalization before `location` matching):
//!
//! 1. **Percent-encoding** (RFC 3986 §6.2.2.1–2): `%XX` of an unreserved character
//!    (`A-Z a-z 0-9 - . _ ~`) is decoded (`%70` → `p`, `%2e` → `.`); every other escape keeps
//!    its encoding with upper-case hex digits (`%3f` → `%3F`). An escape of `/` or `\`
//!    (`%2F`, `%5C`, any case) is refused: whether an upstream splits on it is anyone's guess.
//!    `%00` is refused too (a NUL truncates paths in C upstreams). A `%` not followed by two
//!    hex digits is refused. Decoding happens once: `%252e` stays `%252e`.
//! 2. **Duplicate slashes** are merged (`//a///b` → `/a/b`).
//! 3. **Dot segments** (RFC 3986 §5.2.4), raw or decoded in step 1: `.` is dropped, `..`
//!    removes the segment before it; a `..` with nothing left to remove climbs above `/` and is
//!    refused. A trailing `.` or `..` leaves a trailing `/` (`/a/b/..` → `/a/`).
//!
//! A raw `\` is refused (some servers treat it as `/`). The query string is not part of the
//! path and is never touched. `*` (`OPTIONS *`) is left as it is; an empty path is `/`.
//!
//! Already-normal paths (the common case) are checked in one pass and returned borrowed,
//! without allocating.

use std::borrow::Cow;

/// Why a path was refused (the request is answered 400 `PARAM_001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the request path must start with /")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in the request path")]
    BadEscape,
    /// `%2F` or `%5C` (any case).
    #[error("an encoded slash or backslash (%2F, %5C) is not accepted in the request path")]
    EncodedSlash,
    /// `%00`.
    #[error("an encoded NUL (%00) is not accepted in the request path")]
    EncodedNul,
    /// A raw `\`.
    #[error("a backslash is not accepted in the request path")]
    Backslash,
    /// More `..` segments than there are segments before them.
    #[error("the request path climbs above /")]
    AboveRoot,
}

/// The canonical form of `path` (no query), borrowed when it already is canonical.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    if path == "*" {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path.as_bytes())? {
        return Ok(Cow::Borrowed(path));
    }
    rewrite(path).map(Cow::Owned)
}

/// `A-Z a-z 0-9 - . _ ~` (RFC 3986 §2.3).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The escape `%XY` at `bytes[i..i + 3]`: its decoded byte, and whether it is written in
/// canonical form (upper-case hex of a byte that must stay encoded).
fn escape_at(bytes: &[u8], i: usize) -> Result<(u8, bool), PathError> {
    let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
        return Err(PathError::BadEscape);
    };
    let (Some(hv), Some(lv)) = (hex_value(h), hex_value(l)) else {
        return Err(PathError::BadEscape);
    };
    let v = hv << 4 | lv;
    match v {
        b'/' | b'\\' => Err(PathError::EncodedSlash),
        0 => Err(PathError::EncodedNul),
        _ => {
            let upper = !h.is_ascii_lowercase() && !l.is_ascii_lowercase();
            Ok((v, upper && !unreserved(v)))
        }
    }
}

/// One pass over a path starting with `/`: `Ok(true)` when it is already canonical, `Ok(false)`
/// when [`rewrite`] must build the canonical form, `Err` for what is refused whatever the form.
fn is_normal(bytes: &[u8]) -> Result<bool, PathError> {
    let mut normal = true;
    let mut segment_start = 1;
    let mut i = 1;
    // The leading `/` is at 0; each iteration looks at one byte after it.
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            None | Some(b'/') => {
                let segment = &bytes[segment_start..i];
                // An empty segment before another `/` is a duplicate slash (a trailing `/` is
                // kept); `.` and `..` are dot segments.
                if (segment.is_empty() && b.is_some()) || segment == b"." || segment == b".." {
                    normal = false;
                }
                segment_start = i + 1;
                i += 1;
            }
            Some(b'\\') => return Err(PathError::Backslash),
            Some(b'%') => {
                let (_, canonical) = escape_at(bytes, i)?;
                normal &= canonical;
                i += 3;
            }
            Some(_) => i += 1,
        }
    }
    Ok(normal)
}

/// Builds the canonical form of a path that [`is_normal`] found not canonical.
fn rewrite(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut segment = String::new();
    let mut trailing_slash = false;
    let mut segments = path[1..].split('/').peekable();
    while let Some(raw) = segments.next() {
        let last = segments.peek().is_none();
        decode_segment(raw, &mut segment)?;
        match segment.as_str() {
            "" | "." => trailing_slash = last,
            ".." => {
                let parent = out.rfind('/').ok_or(PathError::AboveRoot)?;
                out.truncate(parent);
                trailing_slash = last;
            }
            s => {
                out.push('/');
                out.push_str(s);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Decodes the escapes of unreserved characters in one segment (no `/` inside) into `out`,
/// upper-casing the others.
fn decode_segment(raw: &str, out: &mut String) -> Result<(), PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.clear();
    let bytes = raw.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                out.push_str(&raw[plain..i]);
                let (v, _) = escape_at(bytes, i)?;
                if unreserved(v) {
                    out.push(char::from(v));
                } else {
                    out.push('%');
                    out.push(char::from(HEX[usize::from(v >> 4)]));
                    out.push(char::from(HEX[usize::from(v & 0xf)]));
                }
                i += 3;
                plain = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&raw[plain..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/api/v1/users/42",
            "/a.b/c..d/.e/f.",
            "/%3F",
            "/%25",
            "/%C3%A9t%C3%A9",
            "/a/b%20c",
            "/~user/_x-y",
            "/é",
            "*",
        ] {
            assert!(
                matches!(normalize_path(p), Ok(Cow::Borrowed(b)) if b == p),
                "{p:?} should be kept as it is"
            );
        }
        assert!(matches!(normalize_path(""), Ok(Cow::Borrowed("/"))));
    }

    #[test]
    fn unreserved_escapes_are_decoded_others_upper_cased() {
        let cases = [
            ("/%70rivate/x", "/private/x"),
            ("/%70%72%69%76%61%74%65", "/private"),
            ("/%41%5a%61%7A%30%39%2D%2E%5F%7E", "/AZaz09-._~"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%3Fb%2c", "/a%3Fb%2C"),
            ("/%e2%82%ac", "/%E2%82%AC"),
            ("/%252e", "/%252e"),
            ("/%25%32%65", "/%252e"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn dot_segments_and_duplicate_slashes() {
        let cases = [
            ("/public/../private/x", "/private/x"),
            ("/public/%2e%2e/private/x", "/private/x"),
            ("/public/%2E%2E/private/x", "/private/x"),
            ("/public/.%2e/private/x", "/private/x"),
            ("/./private/./x", "/private/x"),
            ("//private/x", "/private/x"),
            ("/private//x", "/private/x"),
            ("///a////b///", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/../", "/a/"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/.", "/"),
            ("/./", "/"),
            ("//", "/"),
            ("/a/./../b", "/b"),
            ("/a/b/c/../../d", "/a/d"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/b../c", "/a/b../c"),
            ("/%2e", "/"),
            ("/a/%2e%2e", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            ("/private%2Fx", PathError::EncodedSlash),
            ("/private%2fx", PathError::EncodedSlash),
            ("/a%5Cb", PathError::EncodedSlash),
            ("/a%5cb", PathError::EncodedSlash),
            ("/a\\b", PathError::Backslash),
            ("/..\\private", PathError::Backslash),
            ("/..", PathError::AboveRoot),
            ("/../", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc/passwd", PathError::AboveRoot),
            ("/a/b/../../../c", PathError::AboveRoot),
            ("/a%00b", PathError::EncodedNul),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%2g", PathError::BadEscape),
            ("/a//%", PathError::BadEscape),
            ("a/b", PathError::NotAbsolute),
            ("http://x/", PathError::NotAbsolute),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), Err(want), "{input}");
        }
    }

    /// A slow reference: decode, split, resolve, join; used to cross-check the fast path.
    fn reference(path: &str) -> Result<String, PathError> {
        if path.is_empty() {
            return Ok("/".into());
        }
        if path == "*" {
            return Ok("*".into());
        }
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        // Every segment is decoded (and its escapes checked) before dots are resolved.
        let decoded: Vec<String> = path[1..]
            .split('/')
            .map(|raw| {
                let mut s = String::new();
                decode_segment(raw, &mut s).map(|()| s)
            })
            .collect::<Result<_, _>>()?;
        let mut stack: Vec<String> = Vec::new();
        let mut trailing = false;
        let n = decoded.len();
        for (i, s) in decoded.into_iter().enumerate() {
            let last = i + 1 == n;
            match s.as_str() {
                "" | "." => trailing = last,
                ".." => {
                    stack.pop().ok_or(PathError::AboveRoot)?;
                    trailing = last;
                }
                _ => {
                    stack.push(s);
                    trailing = false;
                }
            }
        }
        let mut out = String::new();
        for s in &stack {
            out.push('/');
            out.push_str(s);
        }
        if out.is_empty() || trailing {
            out.push('/');
        }
        Ok(out)
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just("%2f".to_string()),
            Just("%5C".to_string()),
            Just("%70".to_string()),
            Just("%3f".to_string()),
            Just("%3F".to_string()),
            Just("%".to_string()),
            Just("%00".to_string()),
            Just("\\".to_string()),
            "[a-zA-Z0-9_~.-]{1,4}",
            "%[0-9a-fA-F]{2}",
            "[ -~]{1,3}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The fast path and the reference agree; the result is canonical (a fixed point, kept
        /// borrowed), starts with `/`, has no dot segment, no `//`, and no escape of an
        /// unreserved character.
        #[test]
        fn normal_form_properties(path in path_strategy()) {
            let got = normalize_path(&path).map(Cow::into_owned);
            prop_assert_eq!(&got, &reference(&path));
            if let Ok(n) = got {
                let again = normalize_path(&n);
                prop_assert!(matches!(again, Ok(Cow::Borrowed(b)) if b == n), "not a fixed point: {n:?}");
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.contains("//"));
                prop_assert!(n.split('/').all(|s| s != "." && s != ".."));
                prop_assert!(!n.contains('\\'));
                let borrowed = matches!(normalize_path(&path), Ok(Cow::Borrowed(_)));
                prop_assert_eq!(borrowed, n == path);
            }
        }

        /// Arbitrary text never panics, and whatever comes out is canonical.
        #[test]
        fn arbitrary_text(path in "\\PC{0,40}") {
            if let Ok(n) = normalize_path(&path) {
                prop_assert!(matches!(normalize_path(&n), Ok(Cow::Borrowed(_))));
            }
        }
    }
}
