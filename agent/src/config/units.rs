//! Durations (`250ms`, `10s`, `5m`) and byte sizes (`64KiB`, `4MiB`) as the gateway's config
//! writes them (the same grammar as `orchestra-config`'s `duration` and `size` modules, kept
//! here so the agent does not pull in the gateway's config crate and its dependencies).

use std::time::Duration;

/// Parses a duration with a unit suffix (`us`, `ms`, `s`, `m`, `h`); a bare number is rejected
/// so that `30` is never misread.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| "missing unit: write e.g. 250ms, 10s, 5m or 1h".to_string())?;
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a number followed by a unit (us, ms, s, m, h)".to_string())?;
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?}: use us, ms, s, m or h")),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 365.0 * 86400.0 {
        return Err("out of range (at most one year)".to_string());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1024`, `64KiB`, `10MB`, `1.5GiB` (B, KB, KiB, MB, MiB, GB, GiB; KB = 1000 bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| "expected a size such as 1048576, 64KiB or 10MB".to_string())?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "unknown unit {u:?}: use B, KB, KiB, MB, MiB, GB or GiB"
            ))
        }
    };
    let bytes = (value * scale).round();
    if !(1.0..=1e15).contains(&bytes) {
        return Err("must be between 1 byte and 1 PB".into());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("1e9h").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4 MiBs").is_err());
    }
}
