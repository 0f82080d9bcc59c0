//! Durations ("250ms", "5s", "2m", "1h", "30d") and sizes ("64KiB", "10MB", "512").
//!
//! Both are whole numbers with a case-sensitive unit, (docs/configuration.md, Configuration reference). Fractions
//! ("1.5s") are refused rather than rounded: a smaller unit says the same thing
//! exactly. Error messages are complete sentences for the user; the caller adds
//! the position and field.

use std::time::Duration;

const DURATION_UNITS: &str = "ms, s, m, h, d";
const SIZE_UNITS: &str = "B, KB, MB, GB, KiB, MiB, GiB";

/// Parses "250ms", "5s", "2m", "1h", "30d" (whitespace between number and unit allowed).
/// A bare number is an error: "30" could mean seconds or milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text, "a duration", "5s", DURATION_UNITS)?;
    let Some(number) = number else {
        return Err(format!(
            "fractional durations are not supported in \"{text}\": use a smaller unit, like 1500ms for 1.5s"
        ));
    };
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => {
            return Err(format!(
                "duration \"{text}\" has no unit: write \"{number}s\" or \"{number}ms\" (units: {DURATION_UNITS})"
            ))
        }
        other => return Err(unknown_unit(text, other, DURATION_UNITS, &["ms", "s", "m", "h", "d"])),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration \"{text}\" is too large"))
}

/// Parses "64KiB", "10MB", "512B" or a bare "512" (bytes).
/// KB/MB/GB are powers of 1000 and KiB/MiB/GiB powers of 1024, as in SI/IEC.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text, "a size", "64KiB", SIZE_UNITS)?;
    let Some(number) = number else {
        return Err(format!(
            "fractional sizes are not supported in \"{text}\": use a smaller unit, like 1536KiB for 1.5MiB"
        ));
    };
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            let known = ["B", "KB", "MB", "GB", "KiB", "MiB", "GiB"];
            return Err(unknown_unit(text, other, SIZE_UNITS, &known));
        }
    };
    number.checked_mul(multiplier).ok_or_else(|| format!("size \"{text}\" is too large"))
}

/// Splits "12unit" into (Some(12), "unit"); a fraction gives (None, unit).
/// Errors name what was expected (`what`, with an `example`).
fn split_number<'a>(text: &'a str, what: &str, example: &str, units: &str) -> Result<(Option<u64>, &'a str), String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("expected {what} like \"{example}\", found an empty string"));
    }
    if trimmed.starts_with('-') {
        return Err(format!("{what} cannot be negative: \"{text}\""));
    }
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    if digits_end == 0 {
        return Err(format!(
            "expected {what} like \"{example}\" (a whole number and a unit: {units}), found \"{text}\""
        ));
    }
    let rest = &trimmed[digits_end..];
    if let Some(fraction) = rest.strip_prefix('.') {
        if fraction.starts_with(|c: char| c.is_ascii_digit()) {
            return Ok((None, ""));
        }
    }
    let number = trimmed[..digits_end].parse::<u64>().map_err(|_| format!("{what} \"{text}\" is too large"))?;
    Ok((Some(number), rest.trim_start()))
}

fn unknown_unit(text: &str, unit: &str, units: &str, known: &[&str]) -> String {
    // Units are case-sensitive (mb is millibits to some); point at the intended one.
    match known.iter().find(|k| k.eq_ignore_ascii_case(unit)) {
        Some(k) => format!(
            "unknown unit \"{unit}\" in \"{text}\": units are case-sensitive, did you mean \"{k}\"? (units: {units})"
        ),
        None => format!("unknown unit \"{unit}\" in \"{text}\" (units: {units})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn bad_durations() {
        let err = parse_duration("30").unwrap_err();
        assert!(err.contains("has no unit") && err.contains("\"30s\""), "{err}");
        let err = parse_duration("1.5s").unwrap_err();
        assert!(err.contains("fractional") && err.contains("1500ms"), "{err}");
        let err = parse_duration("5S").unwrap_err();
        assert!(err.contains("did you mean \"s\""), "{err}");
        let err = parse_duration("5 days").unwrap_err();
        assert!(err.contains("unknown unit \"days\""), "{err}");
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration("").unwrap_err().contains("empty"));
        assert!(parse_duration("s").unwrap_err().contains("whole number"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1m30s").is_err());
        assert!(parse_duration("99999999999999999999s").unwrap_err().contains("too large"));
        assert!(parse_duration("18446744073709551615h").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("1KB"), Ok(1_000));
        assert_eq!(parse_size("2MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("3GiB"), Ok(3 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("16 KiB"), Ok(16 * 1024));
    }

    #[test]
    fn bad_sizes() {
        let err = parse_size("10mb").unwrap_err();
        assert!(err.contains("case-sensitive") && err.contains("\"MB\""), "{err}");
        let err = parse_size("1.5MB").unwrap_err();
        assert!(err.contains("fractional"), "{err}");
        assert!(parse_size("10TB").unwrap_err().contains("unknown unit \"TB\""));
        assert!(parse_size("big").is_err());
        assert!(parse_size("-1").unwrap_err().contains("negative"));
        assert!(parse_size("20000000000GiB").unwrap_err().contains("too large"));
    }
}
