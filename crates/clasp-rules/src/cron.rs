//! Cron-like schedules: five fields, `minute hour day-of-month month day-of-week`.
//!
//! | field | values | names |
//! |---|---|---|
//! | minute | 0–59 | |
//! | hour | 0–23 | |
//! | day of month | 1–31 | |
//! | month | 1–12 | `jan`–`dec` |
//! | day of week | 0–7 (0 and 7 are Sunday) | `sun`–`sat` |
//!
//! Each field is a comma-separated list of items; an item is `*` (every value), a value `5`,
//! a range `1-5`, or either with a step: `*/15`, `10-50/20`, `5/10` (from 5 to the end, every
//! 10). Names are case-insensitive. `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`
//! and `@yearly` (`@annually`) stand for the usual expressions.
//!
//! As in classic cron, when both day fields are restricted (neither is exactly `*`) a day
//! matches if **either** matches (`0 9 1 * mon`: the 1st of the month and every Monday);
//! otherwise both must. An expression that can never fire (`0 0 30 feb *`) is refused.
//!
//! Times are minutes of a fixed offset from UTC (no daylight-saving rules): the engine turns
//! the wall clock into local minutes with the offset given in the rules file.

use std::fmt;

/// Minutes in a day.
const DAY: i64 = 1440;
/// How far [`Cron::next_after`] looks ahead: 8 years covers the longest gap between two
/// 29ths of February (2096 → 2104).
const LOOKAHEAD_DAYS: i64 = 366 * 8 + 1;

/// A parsed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1–31.
    days: u32,
    /// Bits 1–12.
    months: u16,
    /// Bits 0–6, 0 = Sunday.
    weekdays: u8,
    /// Day of month restricted (the field is not exactly `*`).
    days_restricted: bool,
    /// Day of week restricted.
    weekdays_restricted: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Field {
    fn value(&self, text: &str) -> Result<u32, String> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            // Months are named from 1, weekdays from 0.
            return Ok(i as u32 + self.min);
        }
        let v: u32 = text
            .parse()
            .map_err(|_| format!("{}: `{text}` is not a number", self.name))?;
        if v < self.min || v > self.max {
            return Err(format!(
                "{}: {v} is out of range ({}–{})",
                self.name, self.min, self.max
            ));
        }
        Ok(v)
    }

    /// The set of values `text` selects, as bits.
    fn parse(&self, text: &str) -> Result<u64, String> {
        let mut bits = 0u64;
        for item in text.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s
                        .parse()
                        .map_err(|_| format!("{}: step `{s}` is not a number", self.name))?;
                    if step == 0 || step > self.max {
                        return Err(format!(
                            "{}: step {step} is out of range (1–{})",
                            self.name, self.max
                        ));
                    }
                    (r, step)
                }
                None => (item, 1),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(format!("{}: range {a}-{b} goes backwards", self.name));
                }
                (a, b)
            } else if range.is_empty() {
                return Err(format!("{}: empty item in `{text}`", self.name));
            } else {
                let a = self.value(range)?;
                // `5/10`: from 5 to the end.
                (a, if item.contains('/') { self.max } else { a })
            };
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok(bits)
    }
}

impl Cron {
    /// Parses `text`; the error names the field and what is wrong with it.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let t = text.trim();
        let expanded = match t.to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            s if s.starts_with('@') => {
                return Err(format!(
                    "unknown shorthand `{t}` (@hourly, @daily, @weekly, @monthly, @yearly)"
                ));
            }
            _ => t,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, dom, mo, dow] = fields[..] else {
            return Err(format!(
                "a schedule has 5 fields (minute hour day-of-month month day-of-week); `{t}` has {}",
                fields.len()
            ));
        };
        let mut weekdays = DAY_OF_WEEK.parse(dow)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        let cron = Cron {
            minutes: MINUTE.parse(mi)?,
            hours: HOUR.parse(h)? as u32,
            days: DAY_OF_MONTH.parse(dom)? as u32,
            months: MONTH.parse(mo)? as u16,
            weekdays: weekdays as u8,
            days_restricted: dom != "*",
            weekdays_restricted: dow != "*",
        };
        if cron.next_after(0).is_none() {
            return Err(format!("`{t}` never fires (no such day)"));
        }
        Ok(cron)
    }

    /// Whether the local minute `minute` (minutes since 1970-01-01 00:00 local) matches.
    pub fn matches(&self, minute: i64) -> bool {
        let day = minute.div_euclid(DAY);
        let in_day = minute.rem_euclid(DAY);
        self.day_matches(day)
            && self.hours & (1 << (in_day / 60)) != 0
            && self.minutes & (1 << (in_day % 60)) != 0
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, month, dom) = civil_from_days(day);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let weekday = (day + 4).rem_euclid(7); // 1970-01-01 was a Thursday.
        let by_dom = self.days & (1 << dom) != 0;
        let by_dow = self.weekdays & (1 << weekday) != 0;
        if self.days_restricted && self.weekdays_restricted {
            by_dom || by_dow
        } else {
            by_dom && by_dow
        }
    }

    /// The first matching local minute strictly after `minute`, if one comes within eight
    /// years.
    pub fn next_after(&self, minute: i64) -> Option<i64> {
        let start = minute.checked_add(1)?;
        let mut day = start.div_euclid(DAY);
        let mut from = start.rem_euclid(DAY);
        for _ in 0..LOOKAHEAD_DAYS {
            if self.day_matches(day)
                && let Some(t) = self.first_time_from(from)
            {
                return day.checked_mul(DAY)?.checked_add(t);
            }
            day = day.checked_add(1)?;
            from = 0;
        }
        None
    }

    /// The first matching minute of a day at or after `from` (minutes into the day).
    fn first_time_from(&self, from: i64) -> Option<i64> {
        (from..DAY)
            .find(|t| self.hours & (1 << (t / 60)) != 0 && self.minutes & (1 << (t % 60)) != 0)
    }
}

/// Writes the set of a field as `*` (all, when `star` allows it) or ranges `1-5,7`.
fn write_field(f: &mut fmt::Formatter<'_>, bits: u64, lo: u32, hi: u32, star: bool) -> fmt::Result {
    let full = (lo..=hi).all(|v| bits & (1 << v) != 0);
    if full && star {
        return f.write_str("*");
    }
    let mut first = true;
    let mut v = lo;
    while v <= hi {
        if bits & (1 << v) == 0 {
            v += 1;
            continue;
        }
        let start = v;
        while v < hi && bits & (1 << (v + 1)) != 0 {
            v += 1;
        }
        if !first {
            f.write_str(",")?;
        }
        first = false;
        if start == v {
            write!(f, "{start}")?;
        } else {
            write!(f, "{start}-{v}")?;
        }
        v += 1;
    }
    Ok(())
}

impl fmt::Display for Cron {
    /// The expression in a normal form that parses back to the same schedule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_field(f, self.minutes, 0, 59, true)?;
        f.write_str(" ")?;
        write_field(f, self.hours.into(), 0, 23, true)?;
        f.write_str(" ")?;
        write_field(f, self.days.into(), 1, 31, !self.days_restricted)?;
        f.write_str(" ")?;
        write_field(f, self.months.into(), 1, 12, true)?;
        f.write_str(" ")?;
        write_field(f, self.weekdays.into(), 0, 6, !self.weekdays_restricted)
    }
}

/// (year, month 1–12, day 1–31) of the day `z` days after 1970-01-01, proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Days are counted in 400-year eras starting on 0000-03-01, so leap days end a year.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days from 1970-01-01 to (year, month, day), proleptic Gregorian (the inverse of
/// [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * 60 + mi
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for z in [-800_000, -1, 0, 59, 60, 11_016, 19_782, 1_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn fields_lists_ranges_steps_names() {
        let c = Cron::parse("*/15 9-17 * jan,jun-aug mon-fri").unwrap();
        assert_eq!(c.to_string(), "0,15,30,45 9-17 * 1,6-8 1-5");
        assert_eq!(
            Cron::parse("5/20 0 * * 7").unwrap().to_string(),
            "5,25,45 0 * * 0"
        );
        assert_eq!(Cron::parse("@daily").unwrap().to_string(), "0 0 * * *");
        assert_eq!(
            Cron::parse("0 0 1-31 * *").unwrap().to_string(),
            "0 0 1-31 * *"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = |s| Cron::parse(s).unwrap_err();
        assert!(e("60 * * * *").contains("minute: 60 is out of range (0–59)"));
        assert!(e("0 24 * * *").contains("hour: 24 is out of range"));
        assert!(e("0 0 0 * *").contains("day of month: 0 is out of range"));
        assert!(e("0 0 * 13 *").contains("month: 13"));
        assert!(e("0 0 * * 8").contains("day of week: 8"));
        assert!(e("0 0 * *").contains("5 fields"));
        assert!(e("*/0 * * * *").contains("step 0"));
        assert!(e("5-1 * * * *").contains("backwards"));
        assert!(e("x * * * *").contains("not a number"));
        assert!(e("0 0 30 feb *").contains("never fires"));
        assert!(e("@often").contains("shorthand"));
        assert!(e("1,,2 * * * *").contains("empty item"));
    }

    #[test]
    fn next_after_crosses_hours_days_months_and_years() {
        let c = Cron::parse("30 * * * *").unwrap();
        assert_eq!(
            c.next_after(at(2024, 5, 1, 10, 29)),
            Some(at(2024, 5, 1, 10, 30))
        );
        assert_eq!(
            c.next_after(at(2024, 5, 1, 10, 30)),
            Some(at(2024, 5, 1, 11, 30))
        );
        assert_eq!(
            c.next_after(at(2024, 12, 31, 23, 45)),
            Some(at(2025, 1, 1, 0, 30))
        );
        let leap = Cron::parse("0 12 29 2 *").unwrap();
        assert_eq!(
            leap.next_after(at(2024, 3, 1, 0, 0)),
            Some(at(2028, 2, 29, 12, 0))
        );
        assert_eq!(
            leap.next_after(at(2097, 1, 1, 0, 0)),
            Some(at(2104, 2, 29, 12, 0))
        );
    }

    #[test]
    fn restricted_day_fields_are_either_or() {
        // 2024-05-01 is a Wednesday.
        let c = Cron::parse("0 9 13 * fri").unwrap();
        assert_eq!(
            c.next_after(at(2024, 5, 1, 0, 0)),
            Some(at(2024, 5, 3, 9, 0))
        );
        assert_eq!(
            c.next_after(at(2024, 5, 10, 9, 0)),
            Some(at(2024, 5, 13, 9, 0))
        );
        let only_fridays = Cron::parse("0 9 * * fri").unwrap();
        assert!(only_fridays.matches(at(2024, 5, 3, 9, 0)));
        assert!(!only_fridays.matches(at(2024, 5, 13, 9, 0)));
    }
}
