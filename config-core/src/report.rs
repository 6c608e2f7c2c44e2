//! How a `check` command reports a config it rejects: every error on its own line of stderr
//! (each already names its file and key path), then `FILE: N error(s)`. `orchestra-gateway check`
//! and `orchestra-agent check` print the same way.

use std::fmt::Display;
use std::path::Path;

/// Prints `errors` to stderr, one a line, then the count line for `file`.
pub fn print_errors<E: Display>(file: &Path, errors: &[E]) {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!("{}: {} error(s)", file.display(), errors.len());
}
