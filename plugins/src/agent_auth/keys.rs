//! The agents' keys file (`[agents] keys_file`): its format, its checks and the errors that
//! name the entry and the key without ever quoting a secret. The format is described in the
//! docs of [`super`].

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

/// An error reading the keys file. `Display` names the file, the entry and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysFileError {
    /// The file could not be read.
    #[error("{path}: cannot read the agent keys file: {reason}")]
    Io {
        /// The path as given.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The text is not valid TOML or has the wrong shape.
    #[error("{path}: {message} (expected [[agent]] entries with id, api_key and secret)")]
    Parse {
        /// The file (`<text>` when parsed from a string).
        path: String,
        /// The parser's message.
        message: String,
    },
    /// An entry is not acceptable.
    #[error("{path}: agent[{index}].{key}: {reason}")]
    Invalid {
        /// The file (`<text>` when parsed from a string).
        path: String,
        /// Position of the `[[agent]]` entry, from 0.
        index: usize,
        /// The offending key (`id`, `api_key`, `secret`).
        key: &'static str,
        /// What is wrong (never the secret itself).
        reason: String,
    },
}

/// Shortest accepted HMAC secret, in bytes (SPEC: "at least 32 bytes").
pub const MIN_SECRET_LEN: usize = 32;

/// Longest accepted agent id.
pub const MAX_AGENT_ID_LEN: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeysFile {
    #[serde(default)]
    agent: Vec<RawAgentKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgentKey {
    id: String,
    api_key: String,
    secret: String,
}

/// One agent's credentials.
pub(super) struct AgentKey {
    pub(super) api_key: Vec<u8>,
    pub(super) secret: Vec<u8>,
}

/// `message` with every `` `...` `` and `"..."` span replaced by `…`.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(q);
                open = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

/// The agents' credentials, by agent id.
#[derive(Default)]
pub struct AgentKeys {
    pub(super) agents: HashMap<String, AgentKey>,
}

impl fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.agents.keys().collect();
        ids.sort();
        f.debug_struct("AgentKeys").field("agents", &ids).finish()
    }
}

impl AgentKeys {
    /// Parses a keys file's text (see the module doc).
    pub fn from_toml(text: &str) -> Result<Self, KeysFileError> {
        Self::parse(text, "<text>")
    }

    fn parse(text: &str, path: &str) -> Result<Self, KeysFileError> {
        let raw: RawKeysFile = toml::from_str(text).map_err(|e| {
            // serde quotes the offending value ("invalid type: integer `123`"), which may be a
            // secret: keep the message, drop the quoted values, say where.
            let at = e
                .span()
                .map(|s| {
                    format!(
                        " (line {})",
                        text[..s.start.min(text.len())].matches('\n').count() + 1
                    )
                })
                .unwrap_or_default();
            KeysFileError::Parse {
                path: path.to_string(),
                // An unknown field's name is a key, never a value: keep it.
                message: match e.message().trim() {
                    m if m.starts_with("unknown field") => format!("{m}{at}"),
                    m => format!("{}{at}", without_quoted_values(m)),
                },
            }
        })?;
        let mut agents = HashMap::with_capacity(raw.agent.len());
        for (index, k) in raw.agent.into_iter().enumerate() {
            let invalid = |key: &'static str, reason: String| KeysFileError::Invalid {
                path: path.to_string(),
                index,
                key,
                reason,
            };
            if !valid_agent_id(&k.id) {
                return Err(invalid(
                    "id",
                    format!(
                        "{:?} is not a valid agent id (1-{MAX_AGENT_ID_LEN} visible ASCII characters, no ':')",
                        k.id
                    ),
                ));
            }
            if k.api_key.is_empty() {
                return Err(invalid("api_key", "must not be empty".into()));
            }
            if k.secret.len() < MIN_SECRET_LEN {
                return Err(invalid(
                    "secret",
                    format!(
                        "has {} bytes; HMAC-SHA256 secrets need at least {MIN_SECRET_LEN}",
                        k.secret.len()
                    ),
                ));
            }
            if agents.contains_key(&k.id) {
                return Err(invalid("id", format!("{:?} appears twice", k.id)));
            }
            agents.insert(
                k.id,
                AgentKey {
                    api_key: k.api_key.into_bytes(),
                    secret: k.secret.into_bytes(),
                },
            );
        }
        Ok(AgentKeys { agents })
    }

    /// Reads and parses the keys file at `path`.
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| KeysFileError::Io {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &shown)
    }

    /// Number of agents.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// True when no agent is configured.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// True when `agent_id` has credentials in this file.
    pub fn contains(&self, agent_id: &str) -> bool {
        self.agents.contains_key(agent_id)
    }
}

/// True for 1–[`MAX_AGENT_ID_LEN`] visible ASCII characters without `:`.
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_AGENT_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// A keys file with two agents (`worker-1`, `worker-2`), for tests.
#[cfg(test)]
pub(super) const TEST_KEYS: &str = r#"
        [[agent]]
        id = "worker-1"
        api_key = "ak-1"
        secret = "s3cret-1-s3cret-1-s3cret-1-s3cret-1"

        [[agent]]
        id = "worker-2"
        api_key = "ak-2"
        secret = "s3cret-2-s3cret-2-s3cret-2-s3cret-2"
    "#;

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = TEST_KEYS;

    #[test]
    fn keys_file_errors_never_quote_a_value() {
        for text in [
            "[agents.w]\napi_key = \"ak\"\nsecret = 918273645\n",
            "[agents.w]\napi_key = \"ak\"\nsecret = [\"planted-9f2\"]\n",
            "[agents.w]\napi_key = \"planted-9f2\"\nsecret = \"planted-9f2\"\nextra = \"planted-9f2\"\n",
        ] {
            let e = AgentKeys::from_toml(text).expect_err("invalid keys file");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("918273645") && !shown.contains("planted-9f2"), "{shown}");
            assert!(shown.contains("(line "), "{shown}");
        }
        let keys = AgentKeys::from_toml(KEYS).expect("keys");
        assert!(!format!("{keys:?}").contains("s3cret"));
    }

    #[test]
    fn keys_file_errors() {
        let entry = |id: &str, key: &str, secret: &str| {
            format!("[[agent]]\nid = \"{id}\"\napi_key = \"{key}\"\nsecret = \"{secret}\"\n")
        };
        let long = "x".repeat(MIN_SECRET_LEN);
        let err = |text: &str| AgentKeys::from_toml(text).expect_err("invalid").to_string();
        assert!(err("[[agent]]\nid = \"a\"\napi_key = \"k\"\n").contains("secret"));
        assert!(err(&format!("{}extra = 1\n", entry("a", "k", &long))).contains("extra"));
        let e = err(&format!(
            "{}{}",
            entry("a", "k", &long),
            entry("a:b", "k", &long)
        ));
        assert!(e.contains("agent[1].id") && e.contains("a:b"), "{e}");
        let e = err(&entry("a", "k", "short"));
        assert!(
            e.contains("agent[0].secret") && e.contains("at least 32"),
            "{e}"
        );
        assert!(!e.contains("short"), "the secret is never printed: {e}");
        assert!(err(&entry("a", "", &long)).contains("agent[0].api_key"));
        let e = err(&format!(
            "{}{}",
            entry("a", "k", &long),
            entry("a", "k", &long)
        ));
        assert!(e.contains("appears twice"), "{e}");
        // The old `[agents.ID]` shape is refused with a hint at the right one.
        let e = err(&format!(
            "[agents.a]\napi_key = \"k\"\nsecret = \"{long}\"\n"
        ));
        assert!(e.contains("[[agent]]"), "{e}");
        let e = AgentKeys::load(Path::new("/nonexistent/keys.toml"))
            .expect_err("missing")
            .to_string();
        assert!(e.starts_with("/nonexistent/keys.toml: "), "{e}");
        let keys = AgentKeys::from_toml(KEYS).expect("keys");
        assert_eq!(keys.len(), 2);
        assert!(keys.contains("worker-2"));
        assert!(
            !format!("{keys:?}").contains("s3cret"),
            "secrets are not printed"
        );
    }
}
