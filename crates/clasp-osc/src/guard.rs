//! Defences against reflection and amplification. OSC runs over UDP, where a source address can
//! be forged, and has no authentication, so what the listener sends each address is bounded:
//!
//! * until a source is **verified**, it is sent at most [`AMPLIFICATION_FACTOR`] times the bytes
//!   received from it (the rule of QUIC, RFC 9000 §8); what does not fit is dropped, never
//!   queued;
//! * a source is verified by echoing a cookie ([`Cookies`]), by being in the allow-list, or by
//!   being a static feedback target;
//! * every destination, verified or not, has a byte rate limit ([`ByteRate`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clasp_proto::rate::{Rate, TokenBucket};
use ipnet::IpNet;
use ring::hmac;
use subtle::ConstantTimeEq;

use crate::config::ByteRate;

/// An unverified source is sent at most this many times the bytes it sent.
pub(crate) const AMPLIFICATION_FACTOR: u64 = 3;
/// A cookie is accepted in the window it was issued in and in the next one.
const COOKIE_WINDOW: Duration = Duration::from_secs(60);
/// Bytes of the HMAC-SHA256 tag a cookie keeps (128 bits, as QUIC's retry integrity tag).
const TAG_LEN: usize = 16;
/// Length of a cookie: the tag in base64url without padding. Short, so that the smallest
/// datagram that asks for one (`/clasp/verify` alone, 20 bytes) buys a budget (60) that holds
/// the answer (44).
const COOKIE_LEN: usize = 22;

/// Issues and checks cookies without keeping state per cookie: a cookie is the HMAC-SHA256
/// (truncated to 128 bits), under a random key drawn when the listener starts, of a coarse time
/// window and the source address (IP and port).
#[derive(Debug)]
pub(crate) struct Cookies {
    key: hmac::Key,
    start: Instant,
}

impl Cookies {
    /// A new issuer with a fresh key from the OS random generator.
    pub(crate) fn new(now: Instant) -> Result<Cookies, ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        Ok(Cookies {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng)?,
            start: now,
        })
    }

    fn window(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / COOKIE_WINDOW.as_secs()
    }

    /// The cookie of `addr` now.
    pub(crate) fn issue(&self, addr: SocketAddr, now: Instant) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(self.window(now), addr))
    }

    fn tag(&self, window: u64, addr: SocketAddr) -> [u8; TAG_LEN] {
        let full = hmac::sign(&self.key, &mac_input(window, addr));
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }

    /// Whether `cookie` was issued to `addr` in this window or the previous one (compared in
    /// constant time).
    pub(crate) fn check(&self, addr: SocketAddr, cookie: &str, now: Instant) -> bool {
        if cookie.len() != COOKIE_LEN {
            return false;
        }
        let Ok(tag) = URL_SAFE_NO_PAD.decode(cookie) else {
            return false;
        };
        let w = self.window(now);
        [Some(w), w.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|w| bool::from(self.tag(w, addr)[..].ct_eq(&tag)))
    }
}

/// Window, then the address as 16 bytes (IPv4 mapped into IPv6), then the port.
fn mac_input(window: u64, addr: SocketAddr) -> [u8; 26] {
    let ip = match addr.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let mut input = [0u8; 26];
    input[..8].copy_from_slice(&window.to_be_bytes());
    input[8..24].copy_from_slice(&ip.octets());
    input[24..].copy_from_slice(&addr.port().to_be_bytes());
    input
}

/// Whether `ip` is in one of the `allow` blocks (an IPv4-mapped IPv6 address counts as IPv4).
pub(crate) fn is_allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allow.iter().any(|net| net.contains(&ip))
}

/// Why a message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The source is unverified and the message would exceed its amplification budget.
    Amplification,
    /// The destination's rate limit has no room for it.
    Rate,
}

/// What one destination may still be sent.
#[derive(Debug)]
pub(crate) struct SendGuard {
    verified: bool,
    /// Bytes received from the source.
    received: u64,
    /// Bytes sent to it.
    sent: u64,
    bucket: Option<Bucket>,
    /// Something was refused for the amplification budget since the last cookie went out.
    starved: bool,
    /// Something was refused for the amplification budget since the guard was made.
    missed: bool,
}

impl SendGuard {
    /// A destination's guard, verified from the start or not.
    pub(crate) fn new(verified: bool, rate: Option<ByteRate>, now: Instant) -> SendGuard {
        SendGuard {
            verified,
            received: 0,
            sent: 0,
            bucket: rate.map(|rate| Bucket::new(rate, now)),
            starved: false,
            missed: false,
        }
    }

    /// Counts a datagram of `n` bytes from the source.
    pub(crate) fn received(&mut self, n: usize) {
        self.received = self.received.saturating_add(n as u64);
    }

    /// Takes `n` bytes from the budget and the rate limit if both have room.
    pub(crate) fn admit(&mut self, n: usize, now: Instant) -> Result<(), Refusal> {
        let n = n as u64;
        if !self.verified
            && self.sent.saturating_add(n) > self.received.saturating_mul(AMPLIFICATION_FACTOR)
        {
            self.starved = true;
            self.missed = true;
            return Err(Refusal::Amplification);
        }
        if let Some(b) = &mut self.bucket
            && !b.take(n, now)
        {
            return Err(Refusal::Rate);
        }
        self.sent = self.sent.saturating_add(n);
        Ok(())
    }

    /// Marks the source verified: `None` if it already was, else whether anything was refused
    /// for its budget before.
    pub(crate) fn verify(&mut self) -> Option<bool> {
        if std::mem::replace(&mut self.verified, true) {
            None
        } else {
            self.starved = false;
            Some(std::mem::take(&mut self.missed))
        }
    }

    /// Whether the source is verified.
    pub(crate) fn is_verified(&self) -> bool {
        self.verified
    }

    /// Whether something was refused for the amplification budget since the last call.
    pub(crate) fn take_starved(&mut self) -> bool {
        std::mem::take(&mut self.starved)
    }
}

/// A token bucket of bytes, counting time since the guard was made.
#[derive(Debug)]
struct Bucket {
    rate: Rate,
    bucket: TokenBucket,
    origin: Instant,
}

impl Bucket {
    fn new(rate: ByteRate, now: Instant) -> Bucket {
        let rate = Rate::new(rate.per_sec as f64, rate.burst as f64);
        Bucket {
            rate,
            bucket: TokenBucket::full(rate, Duration::ZERO),
            origin: now,
        }
    }

    fn take(&mut self, n: u64, now: Instant) -> bool {
        let now = now.saturating_duration_since(self.origin);
        self.bucket.take(n as f64, self.rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_cookie_is_bound_to_its_address_and_expires() {
        let start = Instant::now();
        let c = Cookies::new(start).expect("random key");
        let a = addr("192.0.2.1:9000");
        let cookie = c.issue(a, start);
        assert_eq!(cookie.len(), COOKIE_LEN);
        assert!(c.check(a, &cookie, start));
        // Still good in the next window, not after.
        assert!(c.check(a, &cookie, start + COOKIE_WINDOW));
        assert!(!c.check(a, &cookie, start + COOKIE_WINDOW * 2));
        // Another port, another address, another listener: refused.
        assert!(!c.check(addr("192.0.2.1:9001"), &cookie, start));
        assert!(!c.check(addr("192.0.2.2:9000"), &cookie, start));
        let other = Cookies::new(start).expect("random key");
        assert!(!other.check(a, &cookie, start));
        // Garbage and tampering.
        assert!(!c.check(a, "", start));
        assert!(!c.check(a, &"A".repeat(COOKIE_LEN), start));
        assert!(!c.check(a, &"é".repeat(COOKIE_LEN), start));
        let mut t = cookie.into_bytes();
        t[0] = if t[0] == b'A' { b'B' } else { b'A' };
        assert!(!c.check(a, &String::from_utf8_lossy(&t), start));
    }

    #[test]
    fn an_unverified_source_gets_at_most_three_times_what_it_sent() {
        let now = Instant::now();
        let mut g = SendGuard::new(false, None, now);
        assert_eq!(g.admit(1, now), Err(Refusal::Amplification));
        assert!(g.take_starved());
        assert!(!g.take_starved());
        g.received(36);
        assert_eq!(g.admit(100, now), Ok(()));
        assert_eq!(g.admit(9, now), Err(Refusal::Amplification));
        assert_eq!(g.admit(8, now), Ok(()));
        assert_eq!(g.verify(), Some(true));
        assert_eq!(g.verify(), None);
        assert!(!g.take_starved(), "a verified source needs no cookie");
        assert_eq!(g.admit(1_000_000, now), Ok(()));
    }

    #[test]
    fn the_rate_limit_applies_to_verified_sources() {
        let now = Instant::now();
        let rate = ByteRate {
            per_sec: 1000,
            burst: 2000,
        };
        let mut g = SendGuard::new(true, Some(rate), now);
        assert_eq!(g.admit(1500, now), Ok(()));
        assert_eq!(g.admit(600, now), Err(Refusal::Rate));
        assert_eq!(g.admit(500, now), Ok(()));
        // Refilled at the rate, up to the burst.
        let later = now + Duration::from_millis(500);
        assert_eq!(g.admit(501, later), Err(Refusal::Rate));
        assert_eq!(g.admit(500, later), Ok(()));
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(g.admit(2001, much_later), Err(Refusal::Rate));
        assert_eq!(g.admit(2000, much_later), Ok(()));
        // A refused amplification does not use the rate.
        let mut u = SendGuard::new(false, Some(rate), now);
        u.received(10);
        assert_eq!(u.admit(31, now), Err(Refusal::Amplification));
        assert_eq!(u.admit(30, now), Ok(()));
    }

    #[test]
    fn allow_blocks_match_mapped_addresses() {
        let allow: Vec<IpNet> = ["192.168.1.0/24", "::1/128"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect();
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        assert!(is_allowed(&allow, ip("192.168.1.77")));
        assert!(is_allowed(&allow, ip("::ffff:192.168.1.77")));
        assert!(is_allowed(&allow, ip("::1")));
        assert!(!is_allowed(&allow, ip("192.168.2.1")));
        assert!(!is_allowed(&allow, ip("127.0.0.1")));
        assert!(!is_allowed(&[], ip("127.0.0.1")));
    }
}
