//! Byte sizes written with units: `1048576`, `64KiB`, `10MB`, `1.5GiB`.

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
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4MiB"), Ok(4 * 1024 * 1024));
        assert!(parse_size("0").is_err());
        assert!(parse_size("4 MiBs").is_err());
    }
}
