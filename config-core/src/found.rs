//! A problem found in a config file, at its key path.

use std::fmt;

/// What is wrong at a key path (the variants every config file shares; each crate's error kind
/// holds one, and adds its own). Its `Display` is the message after `FILE: KEY_PATH: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The text is not valid TOML.
    Syntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A key the schema does not know (typo, or a key of another section).
    UnknownKey,
    /// The value has the wrong type or shape, or a required key is missing.
    Shape {
        /// The deserializer's description.
        message: String,
    },
    /// The value has the right type but is not acceptable.
    Invalid {
        /// The offending value as written.
        value: String,
        /// Why it is rejected and what is expected.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax {
                line,
                column,
                message,
            } => write!(f, "line {line}, column {column}: {message}"),
            Problem::UnknownKey => write!(f, "unknown key"),
            Problem::Shape { message } => write!(f, "{message}"),
            Problem::Invalid { value, reason } => write!(f, "invalid value {value:?}: {reason}"),
        }
    }
}

/// One problem and the key path where it was found (empty for the whole document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Key path such as `plugins.per-user.rate`.
    pub path: String,
    /// What is wrong.
    pub problem: Problem,
}

impl Found {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, problem: Problem) -> Self {
        Found {
            path: path.into(),
            problem,
        }
    }

    /// A [`Problem::Invalid`] at `path`.
    pub fn invalid(
        path: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Found::new(
            path,
            Problem::Invalid {
                value: value.into(),
                reason: reason.into(),
            },
        )
    }
}

/// A config reader's own error type, built from a problem found in `file` (what
/// [`crate::read::typed_in`] pushes).
pub trait FromFound {
    /// The error for `found` in `file`.
    fn from_found(file: &str, found: Found) -> Self;
}
