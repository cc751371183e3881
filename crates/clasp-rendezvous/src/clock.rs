//! Time sources: a monotonic clock for expiry and rate limits, a wall clock for timestamps.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Where the service gets its time. Inject a [`ManualClock`] to test expiry without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time since an arbitrary fixed origin; never goes back.
    fn monotonic(&self) -> Duration;
    /// Wall-clock time, µs since the Unix epoch (for `registeredAt`, `lastSeen`, and to age
    /// registrations loaded after a restart).
    fn wall_micros(&self) -> u64;
}

/// The real clocks: [`Instant`] and [`SystemTime`].
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn wall_micros(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to (for tests): [`ManualClock::advance`] moves both the
/// monotonic and the wall clock.
#[derive(Debug)]
pub struct ManualClock {
    /// (monotonic, wall µs)
    now: Mutex<(Duration, u64)>,
}

impl ManualClock {
    /// Monotonic time 0, wall time `wall_micros`.
    pub fn new(wall_micros: u64) -> Self {
        ManualClock {
            now: Mutex::new((Duration::ZERO, wall_micros)),
        }
    }

    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        now.0 += by;
        now.1 = now
            .1
            .saturating_add(u64::try_from(by.as_micros()).unwrap_or(u64::MAX));
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        self.now.lock().0
    }

    fn wall_micros(&self) -> u64 {
        self.now.lock().1
    }
}
