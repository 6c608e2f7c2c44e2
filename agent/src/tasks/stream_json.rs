//! Claude Code's `--output-format stream-json` lines → output items and the task's result.
//!
//! Each line is one JSON message; the mapping (SPEC "Agents"):
//!
//! | line | items |
//! |---|---|
//! | `{"type":"system", "subtype":"init", "session_id", "model", ...}` | one `system` item; the session id is remembered |
//! | `{"type":"assistant","message":{"content":[blocks]}}` | one item per block: `text` and `thinking` → `assistant`, `tool_use` → `tool` (text `NAME INPUT-JSON`) |
//! | `{"type":"user","message":{"content":[blocks]}}` | `tool_result` blocks → `tool-result` (their text; `error: ` first when `is_error`), `text` blocks → `user`; string content → `user` |
//! | `{"type":"result", "subtype", "is_error", "result", "usage", "session_id", ...}` | one `system` item (the result text); usage and session id go to the task's result |
//! | any other JSON object with a `type` | one `system` item |
//! | not a JSON object | one `stdout` item (the line as is) |
//!
//! Every item keeps its JSON in `json`: the line itself, or — when a message has several content
//! blocks — the line with `message.content` reduced to that item's block, so each item is a
//! well-formed message of its own. `text` is truncated (never `json`) when both together would
//! exceed [`ITEM_MAX`], keeping each frame below `MAX_FRAME`.

use orchestra_proto::v1::{OutputItem, OutputKind, TokenUsage};
use serde_json::Value;

/// Largest `text` + `json` of one item (960 KiB, below the 1 MiB frame cap).
pub const ITEM_MAX: usize = 960 * 1024;

/// What the `result` line (and `system` init) told about the task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolReport {
    /// Token usage, when reported.
    pub usage: Option<TokenUsage>,
    /// The tool's session id, for a later resume.
    pub session_id: Option<String>,
    /// The tool reported a failure (`is_error`).
    pub is_error: bool,
    /// Its final text (`result`) or subtype.
    pub message: String,
}

/// One line's items, and what it reported.
#[derive(Debug, Default)]
pub struct Mapped {
    /// The items, in order.
    pub items: Vec<OutputItem>,
    /// Set by `result` lines.
    pub report: Option<ToolReport>,
    /// Set by lines carrying a `session_id`.
    pub session_id: Option<String>,
}

/// Maps one line of a stream-json tool.
pub fn map_line(line: &str) -> Mapped {
    let value: Value = match serde_json::from_str(line) {
        Ok(v @ Value::Object(_)) => v,
        _ => return plain(OutputKind::Stdout, line),
    };
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Mapped {
        session_id: value
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Default::default()
    };
    match kind {
        "assistant" | "user" => blocks(&value, line, kind == "assistant", &mut out.items),
        "result" => {
            let text = value
                .get("result")
                .and_then(Value::as_str)
                .or_else(|| value.get("subtype").and_then(Value::as_str))
                .unwrap_or("result");
            out.report = Some(ToolReport {
                usage: value.get("usage").map(usage),
                session_id: out.session_id.clone(),
                is_error: value
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                message: text.to_string(),
            });
            out.items
                .push(item(OutputKind::System, text.to_string(), line.to_string()));
        }
        _ => {
            let subtype = value.get("subtype").and_then(Value::as_str);
            let text = match (kind, subtype) {
                ("", _) => "message".to_string(),
                (k, Some(s)) => format!("{k}: {s}"),
                (k, None) => k.to_string(),
            };
            out.items
                .push(item(OutputKind::System, text, line.to_string()));
        }
    }
    out
}

fn plain(kind: OutputKind, line: &str) -> Mapped {
    Mapped {
        items: vec![OutputItem {
            kind: kind as i32,
            text: line.to_string(),
            json: String::new(),
        }],
        ..Default::default()
    }
}

fn blocks(value: &Value, line: &str, assistant: bool, items: &mut Vec<OutputItem>) {
    let default_kind = if assistant {
        OutputKind::Assistant
    } else {
        OutputKind::User
    };
    let content = value.pointer("/message/content");
    let list = match content {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::String(s)) => {
            items.push(item(default_kind, s.clone(), line.to_string()));
            return;
        }
        _ => {
            items.push(item(default_kind, String::new(), line.to_string()));
            return;
        }
    };
    for block in list {
        let (kind, text) = block_item(block, default_kind);
        let json = if list.len() == 1 {
            line.to_string()
        } else {
            let mut one = value.clone();
            if let Some(c) = one.pointer_mut("/message/content") {
                *c = Value::Array(vec![block.clone()]);
            }
            one.to_string()
        };
        items.push(item(kind, text, json));
    }
}

fn block_item(block: &Value, default_kind: OutputKind) -> (OutputKind, String) {
    let str_of = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or("");
    match str_of("type") {
        "text" => (default_kind, str_of("text").to_string()),
        "thinking" => (OutputKind::Assistant, str_of("thinking").to_string()),
        "tool_use" => {
            let input = block.get("input").map(Value::to_string).unwrap_or_default();
            (OutputKind::Tool, format!("{} {input}", str_of("name")))
        }
        "tool_result" => {
            let text = match block.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match p.get("type").and_then(Value::as_str) {
                        Some("text") => p
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        Some(other) => format!("[{other}]"),
                        None => String::new(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            let is_error = block
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let text = if is_error {
                format!("error: {text}")
            } else {
                text
            };
            (OutputKind::ToolResult, text)
        }
        _ => (default_kind, block.to_string()),
    }
}

fn usage(u: &Value) -> TokenUsage {
    let n = |key: &str| u.get(key).and_then(Value::as_u64).unwrap_or(0);
    TokenUsage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cache_read_input_tokens"),
        cache_write_tokens: n("cache_creation_input_tokens"),
    }
}

/// An item whose `text` is cut (at a character boundary, marked with `…`) so that `text` and
/// `json` together fit [`ITEM_MAX`].
fn item(kind: OutputKind, mut text: String, json: String) -> OutputItem {
    let budget = ITEM_MAX.saturating_sub(json.len());
    if text.len() > budget {
        let mut cut = budget.saturating_sub(3);
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    OutputItem {
        kind: kind as i32,
        text,
        json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(m: &Mapped) -> Vec<(OutputKind, &str)> {
        m.items
            .iter()
            .map(|i| (OutputKind::try_from(i.kind).unwrap(), i.text.as_str()))
            .collect()
    }

    #[test]
    fn claude_messages() {
        let init = r#"{"type":"system","subtype":"init","session_id":"s-1","model":"claude-x","tools":["Bash"]}"#;
        let m = map_line(init);
        assert_eq!(kinds(&m), [(OutputKind::System, "system: init")]);
        assert_eq!(m.session_id.as_deref(), Some("s-1"));
        assert_eq!(m.items[0].json, init);

        let assistant = r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]},"session_id":"s-1"}"#;
        let m = map_line(assistant);
        assert_eq!(
            kinds(&m),
            [
                (OutputKind::Assistant, "Let me look."),
                (OutputKind::Tool, r#"Bash {"command":"ls"}"#)
            ]
        );
        let second: Value = serde_json::from_str(&m.items[1].json).unwrap();
        assert_eq!(second["message"]["content"][0]["name"], "Bash");
        assert_eq!(second["message"]["content"].as_array().unwrap().len(), 1);
        assert_eq!(second["session_id"], "s-1");

        let user = r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"a.txt\nb.txt","is_error":false}]}}"#;
        let m = map_line(user);
        assert_eq!(kinds(&m), [(OutputKind::ToolResult, "a.txt\nb.txt")]);
        assert_eq!(m.items[0].json, user);

        let failed = r#"{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":"text","text":"no such file"}],"is_error":true}]}}"#;
        assert_eq!(
            kinds(&map_line(failed)),
            [(OutputKind::ToolResult, "error: no such file")]
        );

        let result = r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":1200,"result":"Done.","session_id":"s-1","total_cost_usd":0.01,"usage":{"input_tokens":10,"cache_creation_input_tokens":3,"cache_read_input_tokens":7,"output_tokens":20}}"#;
        let m = map_line(result);
        assert_eq!(kinds(&m), [(OutputKind::System, "Done.")]);
        let report = m.report.unwrap();
        assert_eq!(
            report.usage,
            Some(TokenUsage {
                input_tokens: 10,
                output_tokens: 20,
                cache_read_tokens: 7,
                cache_write_tokens: 3
            })
        );
        assert_eq!(report.session_id.as_deref(), Some("s-1"));
        assert!(!report.is_error);
    }

    #[test]
    fn not_json_and_unknown_types() {
        assert_eq!(
            kinds(&map_line("plain text")),
            [(OutputKind::Stdout, "plain text")]
        );
        assert_eq!(kinds(&map_line("[1,2]")), [(OutputKind::Stdout, "[1,2]")]);
        assert_eq!(
            kinds(&map_line(r#"{"type":"stream_event"}"#)),
            [(OutputKind::System, "stream_event")]
        );
        assert_eq!(
            kinds(&map_line(
                r#"{"type":"user","message":{"content":"hello"}}"#
            )),
            [(OutputKind::User, "hello")]
        );
    }

    #[test]
    fn text_is_truncated_to_fit_a_frame() {
        let big = "x".repeat(500 * 1024);
        let line = serde_json::json!({"type":"assistant","message":{"content":[{"type":"text","text":big}]}}).to_string();
        let m = map_line(&line);
        let i = &m.items[0];
        assert_eq!(i.json, line);
        assert!(i.text.len() + i.json.len() <= ITEM_MAX);
        assert!(i.text.ends_with('…'));
    }
}
