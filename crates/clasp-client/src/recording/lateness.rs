//! Lateness figures: how long after its due instant each entry was sent, in a fixed-size
//! histogram (exact to the microsecond below 10 ms, to the millisecond up to 10 s), so a
//! playback looping for days uses no more memory than a short one.

use std::time::Duration;

/// Buckets of 1 µs below this many µs.
const FINE_US: u64 = 10_000;
/// Buckets of 1 ms from `FINE_US` on.
const COARSE: u64 = 10_000;

/// A histogram of lateness values.
#[derive(Debug, Clone)]
pub struct Lateness {
    buckets: Vec<u64>,
    count: u64,
    max: Duration,
    over_1ms: u64,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness {
            buckets: vec![0; (FINE_US + COARSE) as usize],
            count: 0,
            max: Duration::ZERO,
            over_1ms: 0,
        }
    }
}

impl Lateness {
    /// An empty histogram.
    pub fn new() -> Lateness {
        Lateness::default()
    }

    /// Counts one value.
    pub fn record(&mut self, late: Duration) {
        let us = late.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = if us < FINE_US {
            us
        } else {
            FINE_US + ((us - FINE_US) / 1000).min(COARSE - 1)
        };
        self.buckets[i as usize] += 1;
        self.count += 1;
        self.max = self.max.max(late);
        if late > Duration::from_millis(1) {
            self.over_1ms += 1;
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Values over 1 ms.
    pub fn over_1ms(&self) -> u64 {
        self.over_1ms
    }

    /// The `q` quantile (0.0 to 1.0; nearest rank), to the bucket: exact to 1 µs below 10 ms,
    /// rounded down to the millisecond above. Zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let i = i as u64;
                let us = if i < FINE_US {
                    i
                } else {
                    FINE_US + (i - FINE_US) * 1000
                };
                return Duration::from_micros(us).min(self.max);
            }
        }
        self.max
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Lateness) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.over_1ms += other.over_1ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut l = Lateness::new();
        assert_eq!(l.quantile(0.5), Duration::ZERO);
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        l.record(Duration::from_millis(25));
        assert_eq!(l.count(), 101);
        assert_eq!(l.quantile(0.5), Duration::from_micros(51));
        assert_eq!(l.quantile(0.99), Duration::from_micros(100));
        assert_eq!(l.quantile(1.0), Duration::from_millis(25));
        assert_eq!(l.max(), Duration::from_millis(25));
        assert_eq!(l.over_1ms(), 1);
    }
}
