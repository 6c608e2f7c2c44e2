//! Which config values are secrets, and how they are hidden wherever a config is shown.
//!
//! Secrets written in the config file are the admin token (`admin.token`) and the webhook
//! credentials of alert rules (every value of `alerts[N].headers`, and the user-info and query of
//! `alerts[N].webhook`). URL-valued keys that may carry credentials (`alerts[N].webhook`,
//! `backend.url`) are shown with their user-info and query values replaced. Secrets kept in other
//! files or in the environment (JWT `secret_env` / `secret_file`, the agents' keys file,
//! `admin.token_env`) are referenced by name only; their contents never enter the config text.
//!
//! Three places use this module:
//! - [`ConfigError::new`](crate::ConfigError::new) redacts the offending value (and serde's
//!   message, which quotes it) when the key path is a secret, so `check`, reload errors, logs and
//!   admin error bodies never echo one;
//! - [`mask_config_text`] rewrites a config text with every secret replaced by [`MASK`], keeping
//!   the layout and comments (for `GET /admin/config` and the config history);
//! - the compiler refuses [`MASK`] itself as a secret's value, so a config fetched from the admin
//!   API and sent back unchanged cannot silently replace a real secret with `"***"`.

use std::borrow::Cow;

use toml_edit::{DocumentMut, Item, TableLike, Value};

use orchestra_config_core::Problem;

use crate::ErrorKind;

/// What a secret is shown as.
pub const MASK: &str = "***";

/// How a key path's value may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    /// Shown as written.
    Public,
    /// Never shown: replaced by [`MASK`].
    Secret,
    /// A URL that may carry credentials: shown with user-info and query values masked.
    Url,
}

/// The sensitivity of the value at a key path such as `admin.token` or
/// `alerts[2].headers.Authorization`.
pub fn sensitivity(path: &str) -> Sensitivity {
    if path == "admin.token" {
        return Sensitivity::Secret;
    }
    if let Some(rest) = alert_element_rest(path) {
        if rest == "headers" || rest.starts_with("headers.") {
            return Sensitivity::Secret;
        }
        if rest == "webhook" {
            return Sensitivity::Url;
        }
    }
    if path == "backend.url" {
        return Sensitivity::Url;
    }
    Sensitivity::Public
}

/// For `alerts[N].rest`, returns `rest`.
fn alert_element_rest(path: &str) -> Option<&str> {
    let after = path.strip_prefix("alerts[")?;
    let close = after.find(']')?;
    after[..close].parse::<usize>().ok()?;
    after[close + 1..].strip_prefix('.')
}

/// `value` as it may be shown at `path`.
pub fn redact<'a>(path: &str, value: &'a str) -> Cow<'a, str> {
    match sensitivity(path) {
        Sensitivity::Public => Cow::Borrowed(value),
        Sensitivity::Secret if value.is_empty() => Cow::Borrowed(value),
        Sensitivity::Secret => Cow::Borrowed(MASK),
        Sensitivity::Url => mask_url(value),
    }
}

/// Redacts what an error at `path` would otherwise quote of the value.
pub(crate) fn redact_error(path: &str, kind: ErrorKind) -> ErrorKind {
    match (sensitivity(path), kind) {
        (Sensitivity::Public, kind) => kind,
        (_, ErrorKind::Problem(Problem::Invalid { value, reason })) => Problem::Invalid {
            value: redact(path, &value).into_owned(),
            reason,
        }
        .into(),
        // serde's messages quote the value ("invalid type: integer `123`, expected a string").
        (_, ErrorKind::Problem(Problem::Shape { .. })) => Problem::Shape {
            message: "wrong type or shape (the value is secret and not shown)".into(),
        }
        .into(),
        (_, kind) => kind,
    }
}

/// `url` with its user-info replaced by [`MASK`] and every query value by [`MASK`]:
/// `https://user:pw@host/p?token=x` → `https://***@host/p?token=***`.
pub fn mask_url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let after = &rest[authority_end..];
    let (path, query, fragment) = split_query(after);
    if !authority.contains('@') && query.is_none() {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end + 3]);
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(MASK);
                }
                None => out.push_str(pair),
            }
        }
    }
    out.push_str(fragment);
    Cow::Owned(out)
}

/// Splits `path?query#fragment` (after the authority) into its parts.
fn split_query(s: &str) -> (&str, Option<&str>, &str) {
    let (before_frag, fragment) = match s.find('#') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    match before_frag.find('?') {
        Some(i) => (&before_frag[..i], Some(&before_frag[i + 1..]), fragment),
        None => (before_frag, None, fragment),
    }
}

/// The config `text` with every secret value replaced by `"***"`, layout and comments kept.
///
/// A text that does not parse as TOML is withheld entirely (a running config always parses; this
/// only guards against showing an unparsed secret by accident).
pub fn mask_config_text(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return "# config text withheld: it does not parse as TOML, so its secrets cannot be masked\n"
            .to_string();
    };
    if let Some(admin) = doc.get_mut("admin").and_then(Item::as_table_like_mut) {
        if let Some(token) = admin.get_mut("token") {
            mask_item(token);
        }
    }
    if let Some(backend) = doc.get_mut("backend").and_then(Item::as_table_like_mut) {
        if let Some(url) = backend.get_mut("url") {
            mask_url_item(url);
        }
    }
    match doc.get_mut("alerts") {
        Some(Item::ArrayOfTables(rules)) => {
            for rule in rules.iter_mut() {
                mask_alert(rule);
            }
        }
        Some(Item::Value(Value::Array(rules))) => {
            for rule in rules.iter_mut() {
                if let Some(t) = rule.as_inline_table_mut() {
                    mask_alert(t);
                }
            }
        }
        _ => {}
    }
    doc.to_string()
}

fn mask_alert(rule: &mut dyn TableLike) {
    if let Some(headers) = rule.get_mut("headers") {
        match headers.as_table_like_mut() {
            Some(t) => {
                for (_, v) in t.iter_mut() {
                    mask_item(v);
                }
            }
            None => mask_item(headers),
        }
    }
    if let Some(url) = rule.get_mut("webhook") {
        mask_url_item(url);
    }
}

/// Replaces a value by `"***"`, keeping its surrounding whitespace and comments.
fn mask_item(item: &mut Item) {
    match item.as_value_mut() {
        Some(v) => {
            let decor = v.decor().clone();
            *v = Value::from(MASK);
            *v.decor_mut() = decor;
        }
        None => *item = toml_edit::value(MASK),
    }
}

fn mask_url_item(item: &mut Item) {
    let Some(v) = item.as_value_mut() else {
        return mask_item(item);
    };
    let Some(s) = v.as_str() else {
        return mask_item(item);
    };
    if let Cow::Owned(masked) = mask_url(s) {
        let decor = v.decor().clone();
        *v = Value::from(masked);
        *v.decor_mut() = decor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitivity_of_paths() {
        assert_eq!(sensitivity("admin.token"), Sensitivity::Secret);
        assert_eq!(sensitivity("admin.token_env"), Sensitivity::Public);
        assert_eq!(
            sensitivity("alerts[3].headers.Authorization"),
            Sensitivity::Secret
        );
        assert_eq!(sensitivity("alerts[0].headers"), Sensitivity::Secret);
        assert_eq!(sensitivity("alerts[0].webhook"), Sensitivity::Url);
        assert_eq!(sensitivity("alerts[0].name"), Sensitivity::Public);
        assert_eq!(sensitivity("alerts.headers"), Sensitivity::Public);
        assert_eq!(sensitivity("backend.url"), Sensitivity::Url);
        assert_eq!(sensitivity("routes[0].name"), Sensitivity::Public);
    }

    #[test]
    fn urls_lose_credentials_and_query_values() {
        assert_eq!(
            mask_url("https://user:pw@hooks.example:8443/a/b?token=x&y=1#f"),
            "https://***@hooks.example:8443/a/b?token=***&y=***#f"
        );
        assert_eq!(mask_url("http://h/p"), "http://h/p");
        assert!(matches!(mask_url("http://h/p"), Cow::Borrowed(_)));
        assert_eq!(mask_url("http://tok@h"), "http://***@h");
        assert_eq!(mask_url("not a url"), "not a url");
    }

    #[test]
    fn errors_on_secret_paths_do_not_quote_the_value() {
        let k = redact_error(
            "admin.token",
            Problem::Invalid {
                value: "hunter2".into(),
                reason: "r".into(),
            }
            .into(),
        );
        assert!(!format!("{k:?}").contains("hunter2"));
        let k = redact_error(
            "alerts[0].headers.X",
            Problem::Shape {
                message: "invalid type: integer `12345`".into(),
            }
            .into(),
        );
        assert!(!format!("{k:?}").contains("12345"));
        let k = redact_error(
            "alerts[0].webhook",
            Problem::Invalid {
                value: "ftp://u:hunter2@h".into(),
                reason: "r".into(),
            }
            .into(),
        );
        assert_eq!(
            k,
            ErrorKind::Problem(Problem::Invalid {
                value: "ftp://***@h".into(),
                reason: "r".into()
            })
        );
    }

    #[test]
    fn config_text_is_masked_with_layout_kept() {
        let text = r#"# top comment
[admin]
token = "hunter2"   # keep me

[[alerts]]
name = "a"
webhook = "https://u:pw@h/x?k=v"
headers = { Authorization = "Bearer abc", "X-Key" = "def" }

[[alerts]]
name = "b"
[alerts.headers]
Authorization = "Bearer ghi"
"#;
        let masked = mask_config_text(text);
        for secret in ["hunter2", "Bearer abc", "def", "Bearer ghi", ":pw@", "k=v"] {
            assert!(!masked.contains(secret), "{secret} in {masked}");
        }
        assert!(masked.contains("# top comment"));
        assert!(masked.contains("token = \"***\"   # keep me"), "{masked}");
        assert!(masked.contains("https://***@h/x?k=***"), "{masked}");
        assert!(masked.contains("name = \"b\""));
    }

    #[test]
    fn dotted_and_inline_forms_are_masked() {
        let masked = mask_config_text("admin = { token = \"hunter2\" }\n");
        assert!(!masked.contains("hunter2"), "{masked}");
        let masked = mask_config_text("admin.token = \"hunter2\"\n");
        assert!(!masked.contains("hunter2"), "{masked}");
        let masked =
            mask_config_text("alerts = [ { name = \"a\", headers = { A = \"hunter2\" } } ]\n");
        assert!(!masked.contains("hunter2"), "{masked}");
        let masked = mask_config_text("[admin]\ntoken = 123456\n");
        assert!(!masked.contains("123456"), "{masked}");
        let masked = mask_config_text("[admin\ntoken = \"hunter2\"\n");
        assert!(!masked.contains("hunter2"), "{masked}");
    }
}
