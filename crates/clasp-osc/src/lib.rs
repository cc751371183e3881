//! OSC over UDP listener for the CLASP router: OSC peers set params and get changes fed back.
//!
//! [`OscListener`] binds a UDP socket next to a running [`clasp_router::server::Server`] and
//! joins every OSC source address to the router as a session of its typed adapter door
//! ([`clasp_router::server::RouterHandle::open_adapter`]): OSC messages are submitted as
//! CLASP messages and what the router delivers is sent back as OSC, with no CLASP frames in
//! between. The session is opened with [`OscConfig::token`], so the router's authentication,
//! scopes and limits apply to OSC peers exactly as to native clients.
//!
//! * **Inbound**: an OSC message `/synth/volume ,f 0.5` becomes a SET of `<namespace>/synth/volume`
//!   (see [`map::args_to_value`] for the argument mapping). Bundles are applied atomically;
//!   their time tags are honoured (see [`time::plan`]): "immediately" or past times run now,
//!   future times are scheduled by the router, nested bundles never run before their parent.
//! * **Feedback**: changes under a pattern are sent as OSC messages to static targets
//!   ([`OscConfig::feedback`]) and to peers that register with `/clasp/subscribe <pattern>`
//!   (see [`OscListener`]); values map back as [`map::value_to_args`] says.
//! * **Amplification**: UDP source addresses can be forged, so a source is sent at most 3× the
//!   bytes it sent until it is verified (a cookie round trip, [`OscConfig::allow`], or a static
//!   target), and every destination has a byte rate limit ([`OscConfig::send_rate`]); see
//!   [`OscListener`].
//! * **Limits**: at most [`OscConfig::max_peers`] sources at once, idle sessions closed after
//!   [`OscConfig::session_timeout`], malformed datagrams counted and ignored
//!   ([`OscStatsHandle::snapshot`]).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

mod config;
mod guard;
mod listener;
pub mod map;
mod stats;
pub mod time;

pub use config::{ByteRate, InboundMode, OscConfig};
/// CIDR blocks of [`OscConfig::allow`].
pub use ipnet::IpNet;
pub use listener::{OscError, OscListener};
pub use stats::{OscStats, OscStatsHandle};
