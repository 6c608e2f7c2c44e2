//! Human durations for command-line flags: `250ms`, `10s`, `5m`, `1h`, `1.5s`, or a bare number of
//! seconds (`10`).

use std::time::Duration;

/// Parses `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"750us"`, `"1.5s"` or a bare number of seconds.
///
/// Returns a message naming the bad input on error (suitable for clap's `value_parser`).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {input:?}: expected e.g. 250ms, 10s, 5m"))?;
    let secs_per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "invalid duration {input:?}: unknown unit {other:?} (use ns, us, ms, s, m, h)"
            ))
        }
    };
    let secs = value * secs_per_unit;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {input:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("750us"), Ok(Duration::from_micros(750)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10 parsecs").is_err());
    }
}
