//! OSC time tags (NTP format) and when a bundle should run. Pure functions: the caller passes
//! the current time, so tests need no clock.

use std::time::Duration;

use rosc::OscTime;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01), RFC 5905.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Microseconds since the Unix epoch of an OSC time tag; `None` for "immediately" (`0.1`,
/// and the all-zero tag some senders use for it).
///
/// Tags are read as RFC 4330 §3 says: with the top bit set they lie in 1968–2036 (era 0),
/// without it in 2036–2104 (era 1). Times before 1970 give 0 (long past: run now).
pub fn ntp_to_unix_micros(t: OscTime) -> Option<u64> {
    if t.seconds == 0 && t.fractional <= 1 {
        return None;
    }
    let seconds = if t.seconds & 0x8000_0000 != 0 {
        u64::from(t.seconds)
    } else {
        u64::from(t.seconds) + (1 << 32)
    };
    let frac_us = (u64::from(t.fractional) * 1_000_000) >> 32;
    Some((seconds * 1_000_000 + frac_us).saturating_sub(NTP_UNIX_OFFSET * 1_000_000))
}

/// The OSC time tag of `us` microseconds since the Unix epoch (exact for every µs value in
/// 1970–2104: [`ntp_to_unix_micros`] gives `us` back).
pub fn unix_micros_to_ntp(us: u64) -> OscTime {
    let seconds = us / 1_000_000 + NTP_UNIX_OFFSET;
    let sub = us % 1_000_000;
    // Rounded up, so that the truncating conversion back yields the same microsecond.
    let fractional = (sub << 32).div_ceil(1_000_000);
    OscTime {
        seconds: seconds as u32,
        fractional: fractional as u32,
    }
}

/// When the contents of a bundle run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Now: "immediately", or a time already past.
    Now,
    /// At this wall-clock time (µs since the Unix epoch), in the future.
    At(u64),
    /// Further ahead than accepted; the bundle is dropped.
    TooFar,
}

impl Due {
    /// The time to pass to nested bundles (`None` = now).
    pub fn parent(self) -> Option<u64> {
        match self {
            Due::At(t) => Some(t),
            _ => None,
        }
    }
}

/// When a bundle with time tag `tag` runs, given its parent's time (`None` = top level or a
/// parent that runs now), the current time `now_us` (µs since the Unix epoch) and the furthest
/// accepted schedule `max_ahead`.
///
/// A nested bundle never runs before its parent (OSC 1.0): an earlier tag, or "immediately",
/// is clamped to the parent's time.
pub fn plan(tag: OscTime, parent: Option<u64>, now_us: u64, max_ahead: Duration) -> Due {
    let at = match (ntp_to_unix_micros(tag), parent) {
        (None, p) => p,
        (Some(t), Some(p)) => Some(t.max(p)),
        (Some(t), None) => Some(t),
    };
    match at {
        Some(t) if t > now_us => {
            let limit = u64::try_from(max_ahead.as_micros()).unwrap_or(u64::MAX);
            if t - now_us > limit {
                Due::TooFar
            } else {
                Due::At(t)
            }
        }
        _ => Due::Now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: Duration = Duration::from_secs(3600);
    // 2025-01-01T00:00:00Z
    const NOW: u64 = 1_735_689_600_000_000;

    #[test]
    fn immediate_and_known_instants() {
        assert_eq!(ntp_to_unix_micros(OscTime::from((0, 1))), None);
        assert_eq!(ntp_to_unix_micros(OscTime::from((0, 0))), None);
        let unix0 = OscTime::from((NTP_UNIX_OFFSET as u32, 0));
        assert_eq!(ntp_to_unix_micros(unix0), Some(0));
        let half = OscTime::from((NTP_UNIX_OFFSET as u32 + 10, 1 << 31));
        assert_eq!(ntp_to_unix_micros(half), Some(10_500_000));
        // Before 1970 (but in era 0): long past.
        assert_eq!(ntp_to_unix_micros(OscTime::from((0x8000_0000, 0))), Some(0));
        // Era 1: the top bit clear means after 2036-02-07.
        let era1 = ntp_to_unix_micros(OscTime::from((5, 0))).unwrap_or(0);
        assert_eq!(era1, ((1u64 << 32) + 5 - NTP_UNIX_OFFSET) * 1_000_000);
    }

    #[test]
    fn plans_clamp_to_parent_and_bound_the_horizon() {
        let imm = OscTime::from((0, 1));
        assert_eq!(plan(imm, None, NOW, HOUR), Due::Now);
        let past = unix_micros_to_ntp(NOW - 1_000_000);
        assert_eq!(plan(past, None, NOW, HOUR), Due::Now);
        let soon = NOW + 300_000;
        assert_eq!(
            plan(unix_micros_to_ntp(soon), None, NOW, HOUR),
            Due::At(soon)
        );
        let far = unix_micros_to_ntp(NOW + 2 * 3600 * 1_000_000);
        assert_eq!(plan(far, None, NOW, HOUR), Due::TooFar);
        // Nested: "immediately" and earlier tags run at the parent's time.
        assert_eq!(plan(imm, Some(soon), NOW, HOUR), Due::At(soon));
        assert_eq!(plan(past, Some(soon), NOW, HOUR), Due::At(soon));
        let later = soon + 100_000;
        assert_eq!(
            plan(unix_micros_to_ntp(later), Some(soon), NOW, HOUR),
            Due::At(later)
        );
    }

    proptest! {
        #[test]
        fn micros_round_trip(us in 0u64..((1u64 << 32) + (1 << 31) - NTP_UNIX_OFFSET) * 1_000_000) {
            prop_assert_eq!(ntp_to_unix_micros(unix_micros_to_ntp(us)), Some(us));
        }

        #[test]
        fn any_tag_converts_without_panicking(s in any::<u32>(), f in any::<u32>(), p in proptest::option::of(any::<u64>()), now in any::<u64>()) {
            let _ = ntp_to_unix_micros(OscTime::from((s, f)));
            let _ = plan(OscTime::from((s, f)), p, now, HOUR);
        }
    }
}
