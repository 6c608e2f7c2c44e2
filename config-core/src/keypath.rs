//! How key paths are written in errors: `routes[1].match.host`, `plugins."my plugin".rate`.

/// A user-chosen key as it appears in a key path: bare when TOML allows, quoted otherwise.
pub fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// Appends a key path to a prefix: `routes[1]` + `match.host`, `tools.claude` + `[2]`.
pub fn join(prefix: &str, rest: &str) -> String {
    let rest = rest.trim_start_matches('.');
    match (prefix.is_empty(), rest.is_empty() || rest == "?") {
        (true, _) => rest.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_joins() {
        assert_eq!(key("per-user_1"), "per-user_1");
        assert_eq!(key("my plugin"), "\"my plugin\"");
        assert_eq!(key(""), "\"\"");
        assert_eq!(join("", "a.b"), "a.b");
        assert_eq!(join("routes[1]", "match.host"), "routes[1].match.host");
        assert_eq!(join("tools.claude", "[2]"), "tools.claude[2]");
        assert_eq!(join("plugins.p", ""), "plugins.p");
        assert_eq!(join("plugins.p", "?"), "plugins.p");
        assert_eq!(join("plugins.p", ".rate"), "plugins.p.rate");
    }
}
