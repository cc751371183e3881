//! Triggers, checked: what makes a rule fire, and the edge detection of thresholds.

use std::time::Duration;

use clasp_mapping::pattern::Pattern;
use clasp_proto::Value;

use crate::address;
use crate::cron::Cron;
use crate::duration::parse_duration;
use crate::locate::Seg;
use crate::ruleset::Problem;
use crate::spec::TriggerSpec;

/// Shortest interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// A trigger ready to run.
#[derive(Debug, Clone)]
pub(crate) enum Trigger {
    Change { pattern: Pattern, events: bool },
    Threshold(Threshold),
    Event { pattern: Pattern },
    Interval { every: Duration },
    Schedule { cron: Cron, offset_minutes: i64 },
}

/// A threshold trigger: fires once when the value crosses `above` upwards (re-armed below
/// `above - hysteresis`) or `below` downwards (re-armed above `below + hysteresis`).
#[derive(Debug, Clone)]
pub(crate) struct Threshold {
    pub(crate) pattern: Pattern,
    above: Option<f64>,
    below: Option<f64>,
    hysteresis: f64,
}

/// Whether each side of a threshold may fire (per address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arms {
    above: bool,
    below: bool,
}

impl Threshold {
    /// The state for a value seen without a crossing: armed on the sides it is not past.
    pub(crate) fn arms(&self, x: f64) -> Arms {
        Arms {
            above: self.above.is_none_or(|a| x <= a),
            below: self.below.is_none_or(|b| x >= b),
        }
    }

    /// Moves `arms` to the value `x`; whether a side fired.
    pub(crate) fn cross(&self, arms: &mut Arms, x: f64) -> bool {
        let mut fired = false;
        if let Some(a) = self.above {
            if arms.above && x > a {
                arms.above = false;
                fired = true;
            } else if !arms.above && x < a - self.hysteresis {
                arms.above = true;
            }
        }
        if let Some(b) = self.below {
            if arms.below && x < b {
                arms.below = false;
                fired = true;
            } else if !arms.below && x > b + self.hysteresis {
                arms.below = true;
            }
        }
        fired
    }
}

/// The number a threshold reads: an Int, a Float, or a Bool as 0 or 1.
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        other => other.as_f64().filter(|x| !x.is_nan()),
    }
}

/// A fixed offset from UTC: `Z`, `UTC`, `+01:00`, `-05:30`, `+0100`, `+1`; in minutes.
pub(crate) fn parse_offset(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let bad = || format!("`{t}` is not an offset from UTC (`Z`, `+01:00`, `-05:30`)");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 && rest.is_ascii() => rest.split_at(2),
        None => (rest, "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return Err(bad());
    }
    let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 || (h == 14 && m > 0) {
        return Err(format!("`{t}`: offsets go from -14:00 to +14:00"));
    }
    Ok(sign * (h * 60 + m))
}

fn finite(name: &'static str, v: f64) -> Result<f64, Problem> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Problem::new(
            vec![Seg::Key("trigger"), Seg::Key(name)],
            format!("`{name}` must be a finite number"),
        ))
    }
}

impl Trigger {
    /// Checks `spec`; `default_offset` is the settings' offset for schedules (minutes).
    pub(crate) fn compile(spec: &TriggerSpec, default_offset: i64) -> Result<Trigger, Problem> {
        let at = |k: &'static str| vec![Seg::Key("trigger"), Seg::Key(k)];
        Ok(match spec {
            TriggerSpec::Change { pattern, events } => Trigger::Change {
                pattern: address::pattern(pattern, at("pattern"))?,
                events: *events,
            },
            TriggerSpec::Event { pattern } => Trigger::Event {
                pattern: address::pattern(pattern, at("pattern"))?,
            },
            TriggerSpec::Threshold {
                address,
                above,
                below,
                hysteresis,
            } => {
                if above.is_none() && below.is_none() {
                    return Err(Problem::new(
                        vec![Seg::Key("trigger")],
                        "a threshold needs `above`, `below` or both".into(),
                    ));
                }
                if !(hysteresis.is_finite() && *hysteresis >= 0.0) {
                    return Err(Problem::new(
                        at("hysteresis"),
                        format!("`hysteresis` must be 0 or more (got {hysteresis})"),
                    ));
                }
                Trigger::Threshold(Threshold {
                    pattern: address::pattern(address, at("address"))?,
                    above: above.map(|a| finite("above", a)).transpose()?,
                    below: below.map(|b| finite("below", b)).transpose()?,
                    hysteresis: *hysteresis,
                })
            }
            TriggerSpec::Interval { every } => {
                let d = parse_duration(every).map_err(|e| Problem::new(at("every"), e))?;
                if d < MIN_INTERVAL {
                    return Err(Problem::new(
                        at("every"),
                        "an interval must be at least 1ms".into(),
                    ));
                }
                Trigger::Interval { every: d }
            }
            TriggerSpec::Schedule { cron, utc_offset } => Trigger::Schedule {
                cron: Cron::parse(cron).map_err(|e| Problem::new(at("cron"), e))?,
                offset_minutes: match utc_offset {
                    Some(o) => parse_offset(o).map_err(|e| Problem::new(at("utc_offset"), e))?,
                    None => default_offset,
                },
            },
        })
    }

    /// The pattern of addresses it watches, if it watches any.
    pub(crate) fn pattern(&self) -> Option<&Pattern> {
        match self {
            Trigger::Change { pattern, .. } | Trigger::Event { pattern } => Some(pattern),
            Trigger::Threshold(t) => Some(&t.pattern),
            Trigger::Interval { .. } | Trigger::Schedule { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(above: Option<f64>, below: Option<f64>, h: f64) -> Threshold {
        Threshold {
            pattern: Pattern::parse("/x").unwrap(),
            above,
            below,
            hysteresis: h,
        }
    }

    #[test]
    fn above_fires_once_and_rearms_below_the_hysteresis() {
        let t = th(Some(0.5), None, 0.1);
        let mut arms = t.arms(0.0);
        let fired: Vec<bool> = [0.6, 0.7, 0.45, 0.6, 0.39, 0.51]
            .iter()
            .map(|x| t.cross(&mut arms, *x))
            .collect();
        assert_eq!(fired, [true, false, false, false, false, true]);
    }

    #[test]
    fn below_fires_once_and_rearms_above_the_hysteresis() {
        let t = th(None, Some(0.2), 0.05);
        let mut arms = t.arms(1.0);
        let fired: Vec<bool> = [0.1, 0.0, 0.22, 0.1, 0.26, 0.19]
            .iter()
            .map(|x| t.cross(&mut arms, *x))
            .collect();
        assert_eq!(fired, [true, false, false, false, false, true]);
    }

    #[test]
    fn a_value_already_past_starts_disarmed() {
        let t = th(Some(0.5), None, 0.0);
        let mut arms = t.arms(0.9);
        assert!(!t.cross(&mut arms, 0.95));
        assert!(!t.cross(&mut arms, 0.4));
        assert!(t.cross(&mut arms, 0.6));
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("Z"), Ok(0));
        assert_eq!(parse_offset("+01:00"), Ok(60));
        assert_eq!(parse_offset("-05:30"), Ok(-330));
        assert_eq!(parse_offset("+0545"), Ok(345));
        assert_eq!(parse_offset("+2"), Ok(120));
        assert!(parse_offset("01:00").is_err());
        assert!(parse_offset("+15:00").is_err());
        assert!(parse_offset("+1:60").is_err());
        assert!(parse_offset("+é").is_err());
        assert!(parse_offset("+aé1").is_err());
    }
}
