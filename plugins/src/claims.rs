//! [`Claims`]: the verified claims of a JWT, kept in the [`PluginCtx`](crate::PluginCtx) for the
//! plugins after the `jwt` plugin (rate limiting by `jwt:CLAIM`, forwarding as headers).

use std::borrow::Cow;
use std::fmt::Write;

use serde_json::{Map, Value};

/// The claim set of a verified token (the JSON object of its payload).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Wraps a decoded claim object.
    pub fn new(map: Map<String, Value>) -> Self {
        Claims(map)
    }

    /// The raw JSON value of claim `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// The `sub` claim, when it is a string.
    pub fn subject(&self) -> Option<&str> {
        self.0.get("sub").and_then(Value::as_str)
    }

    /// Claim `name` as text: strings as they are, numbers and booleans in JSON notation, arrays
    /// of those joined with `,`; `None` for a missing claim, `null` and objects.
    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        scalar_text(self.0.get(name)?).or_else(|| match self.0.get(name)? {
            Value::Array(items) => {
                let mut out = String::new();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{}", scalar_text(item)?);
                }
                Some(Cow::Owned(out))
            }
            _ => None,
        })
    }
}

fn scalar_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_scalars_and_arrays() {
        let v: Value = serde_json::json!({
            "sub": "u1", "n": 42, "admin": true, "roles": ["a", "b"], "obj": {"x": 1}, "nul": null
        });
        let Value::Object(map) = v else {
            panic!("object")
        };
        let c = Claims::new(map);
        assert_eq!(c.subject(), Some("u1"));
        assert_eq!(c.get_str("n").as_deref(), Some("42"));
        assert_eq!(c.get_str("admin").as_deref(), Some("true"));
        assert_eq!(c.get_str("roles").as_deref(), Some("a,b"));
        assert_eq!(c.get_str("obj"), None);
        assert_eq!(c.get_str("nul"), None);
        assert_eq!(c.get_str("missing"), None);
    }
}
