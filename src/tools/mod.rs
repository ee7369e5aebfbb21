//! Small operator tools that a minimal (`FROM scratch`) image needs instead of curl, openssl
//! and friends: `healthcheck`, `wait-for`, `certs` and `embedded export`/`list`; and `verify`, the
//! integrity log's auditor.
//!
//! Each tool exposes a `clap::Args` struct and an async `run` function; `src/cli.rs` wires them
//! into the one subcommand enum. The parts other code reuses (PKI generation, the TCP wait, the
//! HTTP probe, the export) are plain library functions next to `run`.

pub mod backup;
pub mod certs;
pub mod export;
pub mod healthcheck;
pub mod migrate;
pub mod verify;
pub mod wait_for;

use std::time::Duration;

/// Parses a human duration such as `3s`, `500ms`, `2m`, `1h` or `1m30s`.
///
/// Units: `ms`, `s`, `m`, `h`. Every number needs a unit; fractions are allowed (`1.5s`).
/// Used as a clap `value_parser`, hence the `String` error.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration (expected e.g. 3s, 500ms, 2m)".to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(format!("invalid duration {input:?}: expected a number before {after:?}"));
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let value: f64 = num.parse().map_err(|_| format!("invalid duration {input:?}: {num:?} is not a number"))?;
        let secs_per_unit = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!("invalid duration {input:?}: missing unit after {num} (use ms, s, m or h)"));
            }
            other => {
                return Err(format!("invalid duration {input:?}: unknown unit {other:?} (use ms, s, m or h)"));
            }
        };
        let part = Duration::try_from_secs_f64(value * secs_per_unit)
            .map_err(|e| format!("invalid duration {input:?}: {e}"))?;
        total = total.checked_add(part).ok_or_else(|| format!("invalid duration {input:?}: too large"))?;
        rest = next;
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it (`3s`, `500ms`, `1.5s`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "3", "s", "3x", "-1s", "1..2s", "3 s", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_durations() {
        assert_eq!(fmt_duration(Duration::from_secs(3)), "3s");
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }
}
