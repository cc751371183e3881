//! DMX universes as the router sees them: `/{ns}/{universe}/{channel}` is one slot (channels
//! 1–512, as lighting people count them) and `/{ns}/{universe}` the whole frame (512 bytes).
//! Universe numbers are the protocol's own (Art-Net's Port-Address from 0, sACN's from 1): no
//! one is added or taken away.

use clasp_proto::Value;

/// Slots in a DMX universe (after the start code).
pub const SLOTS: usize = 512;

/// What an address under a lighting namespace names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One slot: `channel` is 1-based.
    Channel {
        /// The universe.
        universe: u16,
        /// The channel, 1..=512.
        channel: u16,
    },
    /// The whole frame of a universe.
    Frame {
        /// The universe.
        universe: u16,
    },
}

/// Reads `/{prefix}/{universe}[/{channel}]`; `None` for anything else (a channel out of
/// 1..=512, a universe that is not a number, more segments).
pub fn parse(prefix: &str, address: &str) -> Option<Target> {
    let rest = address.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let universe = number(parts.next()?)?;
    match (parts.next(), parts.next()) {
        (None, _) => Some(Target::Frame { universe }),
        (Some(ch), None) => {
            let channel = number(ch)?;
            (1..=SLOTS as u16)
                .contains(&channel)
                .then_some(Target::Channel { universe, channel })
        }
        _ => None,
    }
}

/// A decimal u16 without sign, leading `+` or leading zeros (one spelling per number).
fn number(s: &str) -> Option<u16> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// The address of one channel.
pub fn channel_address(prefix: &str, universe: u16, channel: u16) -> String {
    format!("{prefix}/{universe}/{channel}")
}

/// The address of a universe's whole frame.
pub fn frame_address(prefix: &str, universe: u16) -> String {
    format!("{prefix}/{universe}")
}

/// A value as a DMX level: an integer is the level itself (clamped to 0–255), a float is
/// normalised (0.0–1.0 → 0–255, rounded to the nearest level, never truncated; clamped), a
/// bool is full or off. `None` for other types.
pub fn level(v: &Value) -> Option<u8> {
    match v {
        Value::Int(i) => Some((*i).clamp(0, 255) as u8),
        Value::Float(f) if f.is_nan() => None,
        // `as` saturates; the clamp keeps 1.0 < f from wrapping anything.
        Value::Float(f) => Some((f.clamp(0.0, 1.0) * 255.0).round() as u8),
        Value::Bool(b) => Some(if *b { 255 } else { 0 }),
        _ => None,
    }
}

/// A whole frame: bytes (up to 512; the rest of the universe is 0), or an array of levels.
/// `None` when it is neither, is longer than 512 or holds something that is not a level.
pub fn frame(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Bytes(b) if b.len() <= SLOTS => Some(b.to_vec()),
        Value::Array(items) if items.len() <= SLOTS => items.iter().map(level).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse("/artnet", "/artnet/0/1"),
            Some(Target::Channel {
                universe: 0,
                channel: 1
            })
        );
        assert_eq!(
            parse("/sacn", "/sacn/63999"),
            Some(Target::Frame { universe: 63999 })
        );
        for bad in [
            "/artnet/1/0",
            "/artnet/1/513",
            "/artnet/01/1",
            "/artnet/-1",
            "/artnet/x/1",
            "/artnet/1/1/1",
            "/artnet",
            "/artnetx/1",
            "/artnet/70000",
        ] {
            assert_eq!(parse("/artnet", bad), None, "{bad}");
        }
        assert_eq!(channel_address("/dmx", 2, 512), "/dmx/2/512");
    }

    #[test]
    fn levels_are_scaled_not_truncated() {
        assert_eq!(level(&Value::Float(1.0)), Some(255));
        assert_eq!(level(&Value::Float(0.5)), Some(128));
        assert_eq!(level(&Value::Float(0.999)), Some(255));
        assert_eq!(level(&Value::Float(0.002)), Some(1));
        assert_eq!(level(&Value::Float(7.0)), Some(255));
        assert_eq!(level(&Value::Float(-1.0)), Some(0));
        assert_eq!(level(&Value::Float(f64::NAN)), None);
        assert_eq!(level(&Value::Int(200)), Some(200));
        assert_eq!(level(&Value::Int(300)), Some(255));
        assert_eq!(level(&Value::Bool(true)), Some(255));
        assert_eq!(level(&Value::String("1".into())), None);
        assert_eq!(
            frame(&Value::Array(vec![Value::Int(1), Value::Float(1.0)])),
            Some(vec![1, 255])
        );
        assert_eq!(frame(&Value::Bytes(vec![0; 513].into())), None);
    }
}
