//! Config errors: each names where the value came from (the config file or the command line),
//! the key path (or the flag) and what is wrong, like `orchestra-gateway check`.

use std::fmt;

use orchestra_config_core::{Found, FromFound, Problem};

/// The `file` of an error about a command-line flag.
pub const COMMAND_LINE: &str = "command line";

/// What is wrong at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file could not be read.
    Io {
        /// The operating system's reason.
        reason: String,
    },
    /// What every config file can get wrong: syntax, an unknown key (typo, or a key of another
    /// program's config), a wrong type or shape, an unacceptable value.
    Problem(Problem),
    /// A required key is absent.
    Missing {
        /// What to write, e.g. `gateway = "HOST:PORT"`.
        hint: String,
    },
    /// A file holding a secret can be read by other users.
    Exposed {
        /// The file holding the secret.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// One config problem, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file name as given by the operator, or [`COMMAND_LINE`].
    pub file: String,
    /// Key path such as `tools.claude[2]`, or a flag such as `--gateway`; empty for whole-file
    /// problems.
    pub path: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// Creates an error at `path` in `file`.
    pub fn new(file: &str, path: impl Into<String>, kind: ErrorKind) -> Self {
        ConfigError {
            file: file.to_string(),
            path: path.into(),
            kind,
        }
    }

    /// The error for a problem found by the shared TOML reader (`orchestra_config_core`).
    pub fn found(file: &str, found: Found) -> Self {
        Self::new(file, found.path, found.problem.into())
    }

    /// A [`Problem::Invalid`] error.
    pub fn invalid(
        file: &str,
        path: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::found(file, Found::invalid(path, value, reason))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        match &self.kind {
            ErrorKind::Io { reason } => write!(f, "cannot read file: {reason}"),
            ErrorKind::Problem(p) => write!(f, "{p}"),
            ErrorKind::Missing { hint } => write!(f, "required; write e.g. {hint}"),
            ErrorKind::Exposed { path, mode } => write!(
                f,
                "{path} holds a secret but its mode is {mode:04o} (readable by group or others); \
                 run `chmod 600 {path}`, or take the secret from the environment (secret_env)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<Problem> for ErrorKind {
    fn from(p: Problem) -> Self {
        ErrorKind::Problem(p)
    }
}

impl FromFound for ConfigError {
    fn from_found(file: &str, found: Found) -> Self {
        ConfigError::found(file, found)
    }
}

/// Every error found in one config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
