//! Configuration of the OSC listener.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

/// What an inbound OSC message becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InboundMode {
    /// A SET: the value is stored as a param (the reference's behaviour).
    #[default]
    Set,
    /// A PUBLISH of an event carrying the value; nothing is stored.
    Publish,
}

/// A byte rate limit as a token bucket: `per_sec` bytes a second on average, bursts of up to
/// `burst` bytes. A message larger than `burst` is never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRate {
    /// Sustained bytes per second (at least 1).
    pub per_sec: u64,
    /// Largest burst in bytes (at least 1).
    pub burst: u64,
}

/// Settings of an [`OscListener`](crate::OscListener). Every field has a working default.
#[derive(Debug, Clone, PartialEq)]
pub struct OscConfig {
    /// CLASP prefix of OSC addresses: empty maps `/synth/volume` to `/synth/volume`, `/osc`
    /// maps it to `/osc/synth/volume` (the reference's behaviour).
    pub namespace: String,
    /// Token every OSC session is opened with, so the router's scopes limit what OSC peers may
    /// read and write; `None` for a router in open mode.
    pub token: Option<String>,
    /// Whether inbound messages are SETs or event PUBLISHes.
    pub mode: InboundMode,
    /// Most OSC source addresses with a session at once; datagrams from further sources are
    /// ignored and counted.
    pub max_peers: usize,
    /// A source that sends nothing for this long has its session closed (its self-registered
    /// feedback with it: registration is renewed by any datagram).
    pub session_timeout: Duration,
    /// Static feedback targets: each gets the changes under [`OscConfig::feedback_pattern`]
    /// for as long as the listener runs.
    pub feedback: Vec<SocketAddr>,
    /// OSC-side pattern (within the namespace) the static feedback targets get.
    pub feedback_pattern: String,
    /// OSC address prefix of the control messages (`<prefix>/subscribe`,
    /// `<prefix>/unsubscribe`; errors come back as `<prefix>/error`). Addresses under it are
    /// never written to the router.
    pub control_prefix: String,
    /// Send a peer its own changes back when it is subscribed to them.
    pub echo: bool,
    /// Write floats to OSC peers as doubles (`d`) instead of 32-bit floats (`f`).
    pub float64: bool,
    /// Furthest ahead a bundle time tag may be; later bundles are dropped and counted.
    pub max_schedule_ahead: Duration,
    /// Most scheduled (future) bundles one peer may have pending.
    pub max_scheduled_per_peer: usize,
    /// Deepest bundle nesting accepted.
    pub max_bundle_depth: usize,
    /// Deepest array-argument nesting accepted.
    pub max_array_depth: usize,
    /// Most self-registered feedback patterns per peer.
    pub max_registrations_per_peer: usize,
    /// Most current values sent to a peer when it registers a pattern.
    pub max_snapshot: usize,
    /// Sources verified by configuration: a source in one of these blocks gets feedback
    /// without the cookie round trip (for peers such as TouchOSC that cannot do it). Empty by
    /// default: no source is trusted for its address alone, loopback included. Static
    /// [`OscConfig::feedback`] targets are always verified.
    pub allow: Vec<IpNet>,
    /// Outbound limit per destination, verified or not (static targets included); what does
    /// not fit is dropped and counted. `None`: no limit.
    pub send_rate: Option<ByteRate>,
}

impl Default for OscConfig {
    fn default() -> Self {
        OscConfig {
            namespace: String::new(),
            token: None,
            mode: InboundMode::Set,
            max_peers: 256,
            session_timeout: Duration::from_secs(30),
            feedback: Vec::new(),
            feedback_pattern: "/**".to_owned(),
            control_prefix: "/clasp".to_owned(),
            echo: false,
            float64: false,
            max_schedule_ahead: Duration::from_secs(3600),
            max_scheduled_per_peer: 256,
            max_bundle_depth: 8,
            max_array_depth: 8,
            max_registrations_per_peer: 16,
            max_snapshot: 256,
            allow: Vec::new(),
            send_rate: Some(ByteRate {
                per_sec: 1 << 20,
                burst: 2 << 20,
            }),
        }
    }
}
