//! Durations as written in a rules file: a number and a unit, `500ms`, `2s`, `1.5s`, `5m`,
//! `1h`, or several of them run together, largest first: `1m30s`, `1h15m`.
//!
//! Units: `us` (microseconds), `ms`, `s`, `m` (minutes), `h`. A bare number is refused (`2`
//! could be seconds or milliseconds). The result is rounded to the microsecond and must not
//! exceed [`MAX_DURATION`].

use std::time::Duration;

/// The longest duration accepted: 366 days.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

const UNITS: [(&str, f64); 5] = [
    ("h", 3_600_000_000.0),
    ("m", 60_000_000.0),
    ("s", 1_000_000.0),
    ("ms", 1_000.0),
    ("us", 1.0),
];

/// Parses `text` (see the module documentation); the error says what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("a duration is a number and a unit (`500ms`, `2s`, `1m30s`)".into());
    }
    let mut rest = t;
    let mut total_us = 0f64;
    // Units must come largest first and at most once each.
    let mut last_rank: Option<usize> = None;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(format!("`{t}`: expected a number before `{after}`"));
        }
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!(
                "`{t}`: `{num}` has no unit (use `us`, `ms`, `s`, `m` or `h`)"
            ));
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "`{t}`: unknown unit `{unit}` (use `us`, `ms`, `s`, `m` or `h`)"
            ));
        };
        if last_rank.is_some_and(|r| rank <= r) {
            return Err(format!("`{t}`: units must go from largest to smallest"));
        }
        last_rank = Some(rank);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{t}`: `{num}` is not a number"))?;
        total_us += n * UNITS[rank].1;
        rest = next;
    }
    let max_us = MAX_DURATION.as_micros() as f64;
    if !total_us.is_finite() || total_us > max_us {
        return Err(format!("`{t}` is longer than 366 days"));
    }
    Ok(Duration::from_micros(total_us.round() as u64))
}

/// Writes `d` the way [`parse_duration`] reads it back (`1m30s`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut us = d.as_micros();
    if us == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        let size = size as u128;
        let n = us / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            us -= n * size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compounds() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse_duration("2").unwrap_err().contains("no unit"));
        assert!(parse_duration("2 s").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("2d")
                .unwrap_err()
                .contains("unknown unit `d`")
        );
        assert!(parse_duration("30s1m").unwrap_err().contains("largest"));
        assert!(
            parse_duration("1.2.3s")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(parse_duration("9999h").unwrap_err().contains("366 days"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for text in ["0s", "1m30s", "250ms", "1h1m1s1ms1us", "20ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
