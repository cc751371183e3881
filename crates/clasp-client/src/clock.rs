//! Clock synchronisation with the router (NTP-style, protocol.md §3.11).

use std::time::{SystemTime, UNIX_EPOCH};

/// Weight of a new sample in the smoothed offset and round trip.
const ALPHA: f64 = 0.3;
/// How many round trips the jitter figure looks at.
const WINDOW: usize = 10;

/// The local wall clock in microseconds since the Unix epoch.
pub(crate) fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The estimated difference between the router's clock and ours.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    /// Router time minus local time, µs (smoothed).
    offset: f64,
    /// Round trip, µs (smoothed).
    rtt: f64,
    rtts: Vec<f64>,
    samples: u32,
}

/// A snapshot of the clock estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockStatus {
    /// Router time minus local time, in microseconds.
    pub offset_us: i64,
    /// Smoothed round trip to the router, in microseconds.
    pub rtt_us: u64,
    /// Standard deviation of the recent round trips, in microseconds.
    pub jitter_us: u64,
    /// SYNC exchanges taken into account (the WELCOME counts as one).
    pub samples: u32,
    /// 0 (unknown) to 1 (a tight, stable estimate), from round trip, jitter and sample count.
    pub quality: f64,
}

impl Clock {
    /// Takes one exchange: `t1` local send, `t2` router receive, `t3` router send, `t4` local
    /// receive (all µs).
    pub(crate) fn sample(&mut self, t1: u64, t2: u64, t3: u64, t4: u64) {
        let (t1, t2, t3, t4) = (t1 as f64, t2 as f64, t3 as f64, t4 as f64);
        let rtt = ((t4 - t1) - (t3 - t2)).max(0.0);
        let offset = ((t2 - t1) + (t3 - t4)) / 2.0;
        if self.samples == 0 {
            self.offset = offset;
            self.rtt = rtt;
        } else {
            self.offset += ALPHA * (offset - self.offset);
            self.rtt += ALPHA * (rtt - self.rtt);
        }
        if self.rtts.len() == WINDOW {
            self.rtts.remove(0);
        }
        self.rtts.push(rtt);
        self.samples = self.samples.saturating_add(1);
    }

    /// The router's current time in µs, by our estimate.
    pub(crate) fn server_time(&self) -> u64 {
        (wall_micros() as f64 + self.offset).max(0.0) as u64
    }

    pub(crate) fn status(&self) -> ClockStatus {
        let n = self.rtts.len().max(1) as f64;
        let mean = self.rtts.iter().sum::<f64>() / n;
        let var = self.rtts.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        let jitter = var.sqrt();
        let quality = if self.samples == 0 {
            0.0
        } else {
            // Full marks need a round trip and jitter under a millisecond and a few samples.
            let rtt_q = 1.0 / (1.0 + self.rtt / 1000.0);
            let jitter_q = 1.0 / (1.0 + jitter / 1000.0);
            let count_q = (f64::from(self.samples) / 5.0).min(1.0);
            rtt_q * jitter_q * count_q
        };
        ClockStatus {
            offset_us: self.offset.round() as i64,
            rtt_us: self.rtt.round() as u64,
            jitter_us: jitter.round() as u64,
            samples: self.samples,
            quality,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_exchange_gives_exact_offset_and_rtt() {
        let mut c = Clock::default();
        // Router is 1 s ahead; 100 µs each way; 10 µs processing.
        c.sample(1_000, 1_001_100, 1_001_110, 1_210);
        let s = c.status();
        assert_eq!(s.offset_us, 1_000_000);
        assert_eq!(s.rtt_us, 200);
        assert_eq!(s.samples, 1);
        assert!(s.quality > 0.0);
    }

    #[test]
    fn later_samples_are_smoothed() {
        let mut c = Clock::default();
        c.sample(0, 500, 500, 1_000); // offset 0
        c.sample(0, 1_500, 1_500, 1_000); // offset 1000
        assert_eq!(c.status().offset_us, 300);
    }
}
