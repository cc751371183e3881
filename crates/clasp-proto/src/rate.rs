//! The token bucket every rate limit in the workspace uses (the router core's per-session
//! message limit, the rendezvous API's per-source limit, the discovery responder, the OSC
//! listener's byte rate). Not part of the wire format; it lives here because every crate
//! depends on this one and it is as sans-IO as the codec: time is passed in, as the time since
//! any origin the caller keeps.

use std::time::Duration;

/// A sustained rate and a burst, in tokens (messages, bytes: whatever the caller counts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens held (the largest burst).
    pub burst: f64,
}

impl Rate {
    /// `per_sec` tokens a second, bursts of `burst`.
    pub fn new(per_sec: f64, burst: f64) -> Rate {
        Rate { per_sec, burst }
    }
}

/// A token bucket: it holds up to `burst` tokens and gains `per_sec` a second; taking more than
/// it holds is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    at: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub fn full(rate: Rate, now: Duration) -> TokenBucket {
        TokenBucket {
            tokens: rate.burst,
            at: now,
        }
    }

    /// Adds what time has brought since the last call (time going backwards adds nothing).
    pub fn refill(&mut self, rate: Rate, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.at = self.at.max(now);
    }

    /// Takes `cost` tokens at `now` if the bucket holds them; `false` (nothing taken) if not.
    pub fn take(&mut self, cost: f64, rate: Rate, now: Duration) -> bool {
        self.refill(rate, now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// The tokens held as of the last refill.
    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    /// Whether the bucket is full as of the last refill (its owner has been idle).
    pub fn is_full(&self, rate: Rate) -> bool {
        self.tokens >= rate.burst
    }

    /// How long until `cost` tokens are held, as of the last refill.
    pub fn wait(&self, cost: f64, rate: Rate) -> Duration {
        if self.tokens >= cost || rate.per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((cost - self.tokens) / rate.per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_the_sustained_rate() {
        let rate = Rate::new(10.0, 5.0);
        let t = Duration::from_secs;
        let mut b = TokenBucket::full(rate, t(100));
        for _ in 0..5 {
            assert!(b.take(1.0, rate, t(100)));
        }
        assert!(!b.take(1.0, rate, t(100)));
        assert_eq!(b.wait(1.0, rate), Duration::from_millis(100));
        assert!(b.take(1.0, rate, t(100) + Duration::from_millis(100)));
        // Idle for long: back to the burst, never above it.
        b.refill(rate, t(200));
        assert!(b.is_full(rate));
        assert_eq!(b.tokens(), 5.0);
        // Time going backwards neither adds tokens nor moves the clock back.
        assert!(b.take(5.0, rate, t(150)));
        assert!(!b.take(1.0, rate, t(150)));
        assert!(!b.take(1.0, rate, t(200)));
    }
}
