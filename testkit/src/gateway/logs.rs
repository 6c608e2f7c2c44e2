//! Parsing the gateway's JSON log lines.

use serde_json::Value;

/// Lifts the fields of a `tracing-subscriber` JSON event to the top level.
///
/// `tracing-subscriber`'s JSON formatter nests event fields under `"fields"` unless
/// configured to flatten them; this helper accepts both shapes so tests can read
/// `line["request_id"]` either way. Top-level keys win over nested ones.
pub fn flatten_log_line(mut line: Value) -> Value {
    let Some(obj) = line.as_object_mut() else {
        return line;
    };
    if let Some(Value::Object(fields)) = obj.remove("fields") {
        for (key, value) in fields {
            obj.entry(key).or_insert(value);
        }
    }
    line
}

/// Every line of `text` that parses as a JSON object, flattened with
/// [`flatten_log_line`]; other lines are skipped.
pub fn flatten_log_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(Value::is_object)
        .map(flatten_log_line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_flat_lines_read_the_same() {
        let text = concat!(
            "{\"level\":\"INFO\",\"fields\":{\"log\":\"access\",\"status\":200}}\n",
            "not json\n",
            "{\"log\":\"access\",\"status\":404}\n",
        );
        let lines = flatten_log_lines(text);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["log"], "access");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[1]["status"], 404);
    }
}
