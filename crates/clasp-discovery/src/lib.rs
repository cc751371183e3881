//! LAN discovery of CLASP routers: mDNS (`_clasp._tcp.local.`) advertise and browse, UDP
//! broadcast responder and scan, and [`discover_lan`] combining both.
//!
//! # Router identity
//!
//! A router describes itself once, as a [`RouterInfo`] (stable `id`, `name`, features, WebSocket
//! port, optional extra key/value pairs). The same record is published as mDNS TXT entries by
//! the [`Advertiser`] and as the ANNOUNCE datagram of the [`BroadcastResponder`], so both sources
//! yield the same [`Device::id`] and [`discover_lan`] merges them into one device.
//!
//! ```no_run
//! # async fn demo() -> clasp_discovery::Result<()> {
//! use clasp_discovery::{Advertiser, BroadcastResponder, RouterInfo, discover_lan};
//! use clasp_proto::Features;
//! // Router side: keep both alive as long as the router runs.
//! let info = RouterInfo::new("Stage", Features::ROUTER, 7330).with_id("persisted-id");
//! let _mdns = Advertiser::new(info.clone())?;
//! let _udp = BroadcastResponder::bind(BroadcastResponder::default_addr(), info).await?.spawn()?;
//! // Client side.
//! for d in discover_lan(std::time::Duration::from_secs(3)).await? {
//!     println!("{} at {}", d.name, d.ws_url);
//! }
//! # Ok(()) }
//! ```
//!
//! # mDNS
//!
//! [`Advertiser`] registers instance `<name>._clasp._tcp.local.` on host `clasp-<id>.local.`
//! with A/AAAA records for the machine's real interface addresses (mdns-sd's address
//! auto-update, or explicit addresses), SRV port = WebSocket port, and TXT entries
//! `version=1`, `id=<id>`, `name=<name>`, `features=<letters>` (p = param, s = stream,
//! e = event, t = timeline, g = gesture), `ws=<port>` plus any extras (e.g. `quic=`, `tcp=`,
//! `path=`). Dropping it sends the mDNS goodbye and stops the daemon thread.
//!
//! `version=1` because TXT `version` names the CLASP protocol version, which is 1 (the frame
//! header's version bits and HELLO/WELCOME's version byte). The reference implementation's mDNS
//! advertiser wrote `2` while its protocol constant is 1; browsing therefore accepts any
//! version, reports it in [`Device::version`], and treats 1 and 2 alike.
//!
//! [`MdnsBrowser`] is the streaming browser (async, on mdns-sd's `recv_async`; dropping it shuts
//! the daemon down, so nothing outlives it) and [`browse`] the timed one.
//!
//! # UDP broadcast (port 7331)
//!
//! A scanner sends a standard CLASP binary frame carrying HELLO; the [`BroadcastResponder`]
//! answers each decodable HELLO, rate-limited per source address, with two unicast datagrams:
//!
//! 1. WELCOME (version 1, features, server time, `session` = the router's **stable** id, name) —
//!    exactly what the reference scanner understands;
//! 2. ANNOUNCE with namespace [`ANNOUNCE_NAMESPACE`] and one signal per record entry
//!    (`/clasp/discovery/<key>`, kind param, datatype `"string"`, value in `meta.default`),
//!    carrying `ws=<port>` and the rest of the TXT-equivalent record. The reference scanner
//!    ignores every non-WELCOME datagram, so this stays compatible while telling our scanner
//!    the real WebSocket port (a WELCOME cannot carry it). Without the ANNOUNCE (a reference
//!    responder, or the datagram was lost) the port falls back to [`DEFAULT_WS_PORT`].
//!
//! Garbage, non-HELLO frames and truncated datagrams are ignored without an answer.
//!
//! # What is tested, and what is not
//!
//! Tested here (`tests/`; `lan_netns.rs` needs root and the Debian package `iproute2`, and
//! prints `SKIPPED: <why>` without them): the broadcast protocol with real UDP sockets on 127.0.0.1, property
//! tests of the datagram and TXT parsers, and — when run as root with iproute2 — a real
//! two-host LAN emulated by two network namespaces joined by a veth pair: mDNS advertise in one
//! namespace and browse in the other (addresses, IPv6 bracketing, TXT records), broadcast scans
//! to the directed broadcast and to 255.255.255.255, [`discover_lan`] merging both sources,
//! the mDNS goodbye on drop, advertise + browse in one process, and that no mDNS daemon
//! thread outlives its owner.
//! Not testable here: a real multi-host LAN with switches, Wi-Fi access points that filter or
//! rate-limit multicast/broadcast, and interoperation with macOS (mDNSResponder) or Windows
//! responders/browsers.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unused_must_use)]

pub mod broadcast;
pub mod device;
pub mod lan;
pub mod mdns;
pub mod services;

pub use broadcast::{
    BroadcastResponder, ResponderTask, ScanOptions, broadcast_scan, directed_broadcasts,
    record_from_announce, scan,
};
pub use device::{Device, RouterInfo, Source, features_from_letters, features_to_letters};
pub use lan::{discover_lan, discover_lan_on};
pub use mdns::{AdvertiseOptions, Advertiser, MdnsBrowser, MdnsEvent, browse};
pub use services::{FoundService, Service, Services, browse_services};

/// mDNS service type of CLASP routers.
pub const MDNS_SERVICE_TYPE: &str = "_clasp._tcp.local.";
/// Default WebSocket port of a CLASP router.
pub const DEFAULT_WS_PORT: u16 = 7330;
/// Default UDP port of broadcast discovery.
pub const DEFAULT_DISCOVERY_PORT: u16 = 7331;
/// CLASP protocol version written in TXT `version` and in HELLO/WELCOME.
pub const PROTOCOL_VERSION: u8 = 1;
/// Default WebSocket path used in URLs when a record has no `path` entry.
pub const DEFAULT_WS_PATH: &str = "/clasp";
/// Namespace of the ANNOUNCE datagram a [`BroadcastResponder`] sends after its WELCOME.
pub const ANNOUNCE_NAMESPACE: &str = "/clasp/discovery";

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mDNS daemon failed.
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
    /// A socket operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A CLASP frame could not be encoded.
    #[error("encoding a CLASP frame: {0}")]
    Encode(#[from] clasp_proto::EncodeError),
    /// A router record entry is not publishable.
    #[error("invalid record entry {key:?}: {reason}")]
    InvalidRecord {
        /// The entry's key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Every discovery source failed.
    #[error("no discovery source worked: mDNS: {mdns}; broadcast: {broadcast}")]
    AllFailed {
        /// The mDNS failure.
        mdns: Box<Error>,
        /// The broadcast failure.
        broadcast: Box<Error>,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
