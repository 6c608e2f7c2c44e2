//! Config errors: each names the file, the key path and what is wrong.

use std::fmt;

use orchestra_config_core::{Found, FromFound, Problem};

/// What is wrong at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Io {
        /// The operating system's reason.
        reason: String,
    },
    /// What every config file can get wrong: syntax, an unknown key, a wrong type or shape (or
    /// a required key missing), an unacceptable value.
    Problem(Problem),
    /// A name is defined twice.
    Duplicate {
        /// What kind of thing (`upstream`, `route`).
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A reference to something that is not defined.
    UnknownReference {
        /// What kind of thing is referenced (`upstream`, `plugin`).
        what: &'static str,
        /// The missing name.
        name: String,
    },
    /// A key of the product contract that this build does not implement yet.
    Unsupported {
        /// What is not supported, in words.
        what: String,
    },
}

/// One config problem, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file name as given by the operator.
    pub file: String,
    /// Key path such as `routes[2].upstream`; empty for whole-file problems.
    pub path: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ConfigError {
    /// Creates an error at `path` in `file`. When `path` holds a secret (see
    /// [`crate::secrets`]), the value and serde's message quoting it are redacted here, so no
    /// error built anywhere can echo a secret.
    pub fn new(file: &str, path: impl Into<String>, kind: ErrorKind) -> Self {
        let path = path.into();
        let kind = crate::secrets::redact_error(&path, kind);
        ConfigError {
            file: file.to_string(),
            path,
            kind,
        }
    }

    /// The error for a problem found by the shared readers (`orchestra_config_core`) or by a
    /// plugin reading its table, in `file`.
    pub fn found(file: &str, found: Found) -> Self {
        ConfigError::new(file, found.path, found.problem.into())
    }
}

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

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        match &self.kind {
            ErrorKind::Io { reason } => write!(f, "cannot read config file: {reason}"),
            ErrorKind::Problem(p) => write!(f, "{p}"),
            ErrorKind::Duplicate { what, name } => write!(f, "duplicate {what} name {name:?}"),
            ErrorKind::UnknownReference { what, name } => write!(f, "unknown {what} {name:?}"),
            ErrorKind::Unsupported { what } => {
                write!(f, "{what} is not supported by this build yet")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in one config, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

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
