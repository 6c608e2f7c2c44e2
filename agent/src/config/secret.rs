//! Where the HMAC secret comes from, and the refusal to use one that other users can read.
//!
//! Three sources, exactly one of them: `secret_env` (an environment variable, the recommended
//! one; `--secret-env` on the command line), `secret_file` (a file of its own, mode 0600, for
//! systemd credentials and the like; trailing newlines are dropped), or `secret` in the config
//! file itself, which is then required to be mode 0600. A config file that holds a secret and
//! is readable by group or others is refused even when `--secret-env` overrides it: the secret
//! it holds is exposed either way.

use std::fmt;
use std::path::Path;

use super::error::{ConfigError, ErrorKind, COMMAND_LINE};

/// The HMAC key (its bytes); never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// The secret-related keys as written, and the flag.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SecretKeys<'a> {
    pub inline: Option<&'a str>,
    pub env: Option<&'a str>,
    pub file: Option<&'a str>,
    pub env_flag: Option<&'a str>,
}

/// What the checks need from the environment (injected in tests).
pub(crate) struct SecretEnv<'a> {
    /// Reads an environment variable.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The permission bits of a file, or why they cannot be read.
    pub mode: &'a dyn Fn(&Path) -> Result<u32, String>,
    /// Reads a file.
    pub read: &'a dyn Fn(&Path) -> Result<Vec<u8>, String>,
}

/// Resolves the secret; `config_mode` is the config file's permission bits.
pub(crate) fn resolve(
    keys: SecretKeys<'_>,
    file: &str,
    config_mode: Option<u32>,
    env: &SecretEnv<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<Secret> {
    if keys.inline.is_some() {
        if let Some(mode) = config_mode.filter(|m| m & 0o077 != 0) {
            errors.push(ConfigError::new(
                file,
                "secret",
                ErrorKind::Exposed {
                    path: file.to_string(),
                    mode: mode & 0o7777,
                },
            ));
            return None;
        }
    }
    if let Some(var) = keys.env_flag {
        return from_env(var, COMMAND_LINE, "--secret-env", env, errors);
    }
    let set = [keys.inline, keys.env, keys.file]
        .iter()
        .filter(|k| k.is_some())
        .count();
    if set > 1 {
        errors.push(ConfigError::invalid(
            file,
            "secret",
            "",
            "secret, secret_env and secret_file are exclusive: keep one",
        ));
        return None;
    }
    if let Some(s) = keys.inline {
        if s.is_empty() {
            errors.push(ConfigError::invalid(
                file,
                "secret",
                "",
                "must not be empty",
            ));
            return None;
        }
        return Some(Secret(s.as_bytes().to_vec()));
    }
    if let Some(var) = keys.env {
        return from_env(var, file, "secret_env", env, errors);
    }
    if let Some(path) = keys.file {
        return from_file(path, file, env, errors);
    }
    errors.push(ConfigError::new(
        file,
        "secret_env",
        ErrorKind::Missing {
            hint: "secret_env = \"ORCHESTRA_AGENT_SECRET\" (or secret_file, or secret in a \
                   mode-0600 config file)"
                .into(),
        },
    ));
    None
}

fn from_env(
    var: &str,
    file: &str,
    path: &str,
    env: &SecretEnv<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<Secret> {
    match (env.var)(var) {
        Some(v) if !v.is_empty() => Some(Secret(v.into_bytes())),
        _ => {
            errors.push(ConfigError::invalid(
                file,
                path,
                var,
                "this environment variable is not set or is empty; export the agent's secret in it",
            ));
            None
        }
    }
}

fn from_file(
    path: &str,
    file: &str,
    env: &SecretEnv<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<Secret> {
    let p = Path::new(path);
    match (env.mode)(p) {
        Ok(mode) if mode & 0o077 != 0 => {
            errors.push(ConfigError::new(
                file,
                "secret_file",
                ErrorKind::Exposed {
                    path: path.to_string(),
                    mode: mode & 0o7777,
                },
            ));
            return None;
        }
        Ok(_) => {}
        Err(reason) => {
            errors.push(ConfigError::invalid(file, "secret_file", path, reason));
            return None;
        }
    }
    match (env.read)(p) {
        Ok(mut bytes) => {
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if bytes.is_empty() {
                errors.push(ConfigError::invalid(
                    file,
                    "secret_file",
                    path,
                    "the file is empty",
                ));
                return None;
            }
            Some(Secret(bytes))
        }
        Err(reason) => {
            errors.push(ConfigError::invalid(file, "secret_file", path, reason));
            None
        }
    }
}

/// The permission bits of `path`.
pub(crate) fn file_mode(path: &Path) -> Result<u32, String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .map_err(|e| format!("cannot read it: {e}"))
}

/// Reads `path`.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(keys: SecretKeys<'_>, mode: u32) -> (Option<Secret>, Vec<String>) {
        let var = |name: &str| (name == "SET").then(|| "env-secret".to_string());
        let file_mode = move |p: &Path| {
            if p == Path::new("open.key") {
                Ok(0o100644)
            } else {
                Ok(0o100600)
            }
        };
        let read = |_: &Path| Ok(b"file-secret\n".to_vec());
        let env = SecretEnv {
            var: &var,
            mode: &file_mode,
            read: &read,
        };
        let mut errors = Vec::new();
        let s = resolve(keys, "agent.toml", Some(mode), &env, &mut errors);
        (s, errors.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn sources() {
        let (s, _) = run(
            SecretKeys {
                env: Some("SET"),
                ..Default::default()
            },
            0o644,
        );
        assert_eq!(s.unwrap().as_bytes(), b"env-secret");
        let (s, _) = run(
            SecretKeys {
                file: Some("ok.key"),
                ..Default::default()
            },
            0o644,
        );
        assert_eq!(s.unwrap().as_bytes(), b"file-secret");
        let (s, _) = run(
            SecretKeys {
                inline: Some("inline"),
                ..Default::default()
            },
            0o600,
        );
        assert_eq!(s.unwrap().as_bytes(), b"inline");
    }

    #[test]
    fn exposed_secrets_are_refused() {
        let (s, errors) = run(
            SecretKeys {
                inline: Some("inline"),
                env_flag: Some("SET"),
                ..Default::default()
            },
            0o640,
        );
        assert!(s.is_none());
        assert!(errors[0]
            .contains("agent.toml: secret: agent.toml holds a secret but its mode is 0640"));
        let (s, errors) = run(
            SecretKeys {
                file: Some("open.key"),
                ..Default::default()
            },
            0o600,
        );
        assert!(s.is_none());
        assert!(
            errors[0].contains("secret_file: open.key holds a secret"),
            "{errors:?}"
        );
    }

    #[test]
    fn missing_and_conflicting() {
        let (_, errors) = run(SecretKeys::default(), 0o600);
        assert!(errors[0].starts_with("agent.toml: secret_env: required"));
        let (_, errors) = run(
            SecretKeys {
                env: Some("UNSET"),
                ..Default::default()
            },
            0o600,
        );
        assert!(errors[0]
            .contains("secret_env: invalid value \"UNSET\": this environment variable is not set"));
        let (_, errors) = run(
            SecretKeys {
                env: Some("SET"),
                inline: Some("x"),
                ..Default::default()
            },
            0o600,
        );
        assert!(errors[0].contains("exclusive"));
        let (_, errors) = run(
            SecretKeys {
                env_flag: Some("UNSET"),
                ..Default::default()
            },
            0o600,
        );
        assert!(errors[0].starts_with("command line: --secret-env: invalid value \"UNSET\""));
    }
}
