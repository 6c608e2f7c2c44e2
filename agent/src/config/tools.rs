//! The tool table (`[tools]`): how a task's tool name becomes a command line.
//!
//! Each entry is an argv template, either a plain array or a table:
//! ```toml
//! [tools]
//! custom = ["bash", "-c", "{prompt}"]
//! claude = { argv = ["claude", "-p", "{prompt}", "--output-format", "stream-json", "--verbose"],
//!            resume = ["--resume", "{session_id}"] }
//! ```
//! Placeholders are replaced inside each argument, which stays **one** argument whatever the
//! prompt contains: no shell is involved unless the template itself runs one (`bash -c`).
//! `{prompt}` is the task's prompt, `{cwd}` its working directory, `{task_id}` its id;
//! `{session_id}` (only in `resume`) the tool session to resume. `{{` and `}}` are literal
//! braces. Substitution is a single pass: a prompt containing `{cwd}` stays as written.
//!
//! `format = "stream-json"` makes stdout a JSON-lines stream mapped to output items (see
//! `tasks::stream_json`); without `format`, an argv containing `--output-format stream-json`
//! (Claude Code's flag) selects it, anything else is `"lines"`. `stdin = "null"` gives the
//! process no stdin (for tools that would wait for its end); the default `"pipe"` lets
//! `TaskInput` reach it.

use std::collections::BTreeMap;

use super::error::ConfigError;
use super::raw::{self, RawTool};

/// How a tool's stdout is turned into output items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Each line is a `stdout` item.
    Lines,
    /// Each line is a Claude Code `stream-json` message.
    StreamJson,
}

/// What the task process gets as stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// A pipe fed by `TaskInput`.
    Pipe,
    /// `/dev/null`.
    Null,
}

/// One entry of the tool table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The command line; `argv[0]` is the program (looked up in `PATH`).
    pub argv: Vec<Template>,
    /// Appended when the task names a session to resume.
    pub resume: Vec<Template>,
    /// How stdout is read.
    pub format: OutputFormat,
    /// What stdin is.
    pub stdin: StdinMode,
}

/// The values substituted into a template for one task.
#[derive(Debug, Clone, Copy)]
pub struct TaskVars<'a> {
    /// `{prompt}`.
    pub prompt: &'a str,
    /// `{cwd}`.
    pub cwd: &'a str,
    /// `{task_id}`.
    pub task_id: &'a str,
    /// `{session_id}`; empty when the task starts a new session.
    pub session_id: &'a str,
}

impl Tool {
    /// The command line of a task: argv, then the `resume` arguments when a session is named.
    pub fn command(&self, vars: &TaskVars<'_>) -> Vec<String> {
        let resume = if vars.session_id.is_empty() {
            &[][..]
        } else {
            &self.resume[..]
        };
        self.argv
            .iter()
            .chain(resume)
            .map(|t| t.render(vars))
            .collect()
    }

    /// True when the tool can resume a session (it has `resume` arguments).
    pub fn can_resume(&self) -> bool {
        !self.resume.is_empty()
    }
}

/// `format` when the config does not set it: Claude Code's `--output-format stream-json`.
pub fn detect_format(argv: &[String]) -> OutputFormat {
    let flag = argv
        .windows(2)
        .any(|w| w[0] == "--output-format" && w[1] == "stream-json");
    if flag || argv.iter().any(|a| a == "--output-format=stream-json") {
        OutputFormat::StreamJson
    } else {
        OutputFormat::Lines
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Prompt,
    Cwd,
    TaskId,
    SessionId,
}

/// One argument with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `{session_id}` is accepted only when `allow_session` is set.
    pub fn parse(text: &str, allow_session: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                literal.push('{');
                rest = after;
                continue;
            }
            if let Some(after) = tail.strip_prefix("}}") {
                literal.push('}');
                rest = after;
                continue;
            }
            if tail.starts_with('}') {
                return Err("unmatched `}`: write `}}` for a literal brace".into());
            }
            let end = tail
                .find('}')
                .ok_or("unclosed `{`: write `{{` for a literal brace")?;
            let part = match &tail[1..end] {
                "prompt" => Part::Prompt,
                "cwd" => Part::Cwd,
                "task_id" => Part::TaskId,
                "session_id" if allow_session => Part::SessionId,
                "session_id" => {
                    return Err("{session_id} is only allowed in `resume` arguments".into())
                }
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: use {{prompt}}, {{cwd}} or {{task_id}}"
                    ))
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = &tail[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// The argument for one task.
    pub fn render(&self, vars: &TaskVars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            out.push_str(match part {
                Part::Literal(s) => s,
                Part::Prompt => vars.prompt,
                Part::Cwd => vars.cwd,
                Part::TaskId => vars.task_id,
                Part::SessionId => vars.session_id,
            });
        }
        out
    }

    /// True when the template is empty (renders to nothing fixed and has no placeholder).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

/// Validates the `[tools]` table: names, argv and `resume` templates, `format`, `stdin`.
pub(crate) fn build(
    file: &str,
    table: Option<toml::Table>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Tool> {
    let mut out = BTreeMap::new();
    let Some(table) = table.filter(|t| !t.is_empty()) else {
        super::missing(
            file,
            "tools",
            "[tools] custom = [\"bash\", \"-c\", \"{prompt}\"]",
            errors,
        );
        return out;
    };
    for (name, raw_tool) in raw::tools(table, file, errors) {
        let path = raw::join("tools", &raw::key(&name));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            errors.push(ConfigError::invalid(
                file,
                &path,
                &name,
                "tool names use letters, digits, '-' and '_'",
            ));
            continue;
        }
        let (argv, resume, format, stdin, argv_path) = match raw_tool {
            RawTool::Argv(argv) => (argv, Vec::new(), None, None, path.clone()),
            RawTool::Table(t) => (
                t.argv,
                t.resume.unwrap_or_default(),
                t.format,
                t.stdin,
                format!("{path}.argv"),
            ),
        };
        if argv.first().is_none_or(|p| p.is_empty()) {
            errors.push(ConfigError::invalid(
                file,
                &argv_path,
                format!("{argv:?}"),
                "needs a program as its first element",
            ));
            continue;
        }
        let mut templates = |args: &[String], base: &str, session: bool| -> Vec<Template> {
            args.iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    Template::parse(a, session)
                        .map_err(|reason| {
                            errors.push(ConfigError::invalid(
                                file,
                                format!("{base}[{i}]"),
                                a,
                                reason,
                            ))
                        })
                        .ok()
                })
                .collect()
        };
        let argv_t = templates(&argv, &argv_path, false);
        let resume_t = templates(&resume, &format!("{path}.resume"), true);
        let format = match format.as_deref() {
            None => detect_format(&argv),
            Some("lines") => OutputFormat::Lines,
            Some("stream-json") => OutputFormat::StreamJson,
            Some(other) => {
                errors.push(ConfigError::invalid(
                    file,
                    format!("{path}.format"),
                    other,
                    "expected \"lines\" or \"stream-json\"",
                ));
                OutputFormat::Lines
            }
        };
        let stdin = match stdin.as_deref() {
            None | Some("pipe") => StdinMode::Pipe,
            Some("null") => StdinMode::Null,
            Some(other) => {
                errors.push(ConfigError::invalid(
                    file,
                    format!("{path}.stdin"),
                    other,
                    "expected \"pipe\" or \"null\"",
                ));
                StdinMode::Pipe
            }
        };
        out.insert(
            name,
            Tool {
                argv: argv_t,
                resume: resume_t,
                format,
                stdin,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(prompt: &'a str, session_id: &'a str) -> TaskVars<'a> {
        TaskVars {
            prompt,
            cwd: "/w/t1",
            task_id: "t1",
            session_id,
        }
    }

    fn tool(argv: &[&str], resume: &[&str]) -> Tool {
        Tool {
            argv: argv
                .iter()
                .map(|a| Template::parse(a, false).unwrap())
                .collect(),
            resume: resume
                .iter()
                .map(|a| Template::parse(a, true).unwrap())
                .collect(),
            format: OutputFormat::Lines,
            stdin: StdinMode::Pipe,
        }
    }

    #[test]
    fn placeholders_are_substituted_once_inside_one_argument() {
        let t = tool(&["bash", "-c", "{prompt}", "--dir={cwd}", "{{x}}"], &[]);
        let argv = t.command(&vars("echo 'a b' {cwd}; rm -rf /tmp/nothing", ""));
        assert_eq!(
            argv,
            [
                "bash",
                "-c",
                "echo 'a b' {cwd}; rm -rf /tmp/nothing",
                "--dir=/w/t1",
                "{x}"
            ]
        );
    }

    #[test]
    fn resume_arguments_only_with_a_session() {
        let t = tool(&["claude", "-p", "{prompt}"], &["--resume", "{session_id}"]);
        assert_eq!(t.command(&vars("hi", "")), ["claude", "-p", "hi"]);
        assert_eq!(
            t.command(&vars("hi", "s-1")),
            ["claude", "-p", "hi", "--resume", "s-1"]
        );
    }

    #[test]
    fn bad_templates() {
        assert!(Template::parse("{promt}", false)
            .unwrap_err()
            .contains("unknown placeholder {promt}"));
        assert!(Template::parse("{prompt", false).is_err());
        assert!(Template::parse("a}b", false).is_err());
        assert!(Template::parse("{session_id}", false).is_err());
        assert!(Template::parse("{session_id}", true).is_ok());
    }

    #[test]
    fn stream_json_is_detected_from_claude_flags() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            detect_format(&argv(&["claude", "--output-format", "stream-json"])),
            OutputFormat::StreamJson
        );
        assert_eq!(
            detect_format(&argv(&["claude", "--output-format=stream-json"])),
            OutputFormat::StreamJson
        );
        assert_eq!(
            detect_format(&argv(&["bash", "-c", "{prompt}"])),
            OutputFormat::Lines
        );
    }
}
