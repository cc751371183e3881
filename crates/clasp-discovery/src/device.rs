//! The device model shared by every discovery source, and the key/value record a router
//! publishes (mDNS TXT entries, broadcast ANNOUNCE signals).

use std::collections::BTreeMap;
use std::net::IpAddr;

use clasp_proto::Features;

use crate::{DEFAULT_WS_PATH, DEFAULT_WS_PORT, Error, PROTOCOL_VERSION, Result};

/// Longest TXT entry (`key=value`) DNS allows.
const MAX_TXT_ENTRY: usize = 255;
/// Record keys written by [`RouterInfo::record`] itself; extras may not use them.
const RESERVED_KEYS: [&str; 5] = ["version", "id", "name", "features", "ws"];

/// Where a device was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// mDNS / DNS-SD browsing.
    Mdns,
    /// UDP broadcast scan.
    Broadcast,
    /// A rendezvous (WAN) server.
    Rendezvous,
}

/// A discovered CLASP router.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Stable router identity: the record's `id`, else the mDNS fullname or WELCOME session.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Addresses the router is reachable at, preferred first.
    pub addresses: Vec<IpAddr>,
    /// WebSocket port.
    pub ws_port: u16,
    /// WebSocket URL at the preferred address (IPv6 bracketed); empty without addresses.
    pub ws_url: String,
    /// Features the router offers.
    pub features: Features,
    /// Protocol version the router reports (1; reference mDNS advertisers write 2 for the same
    /// protocol).
    pub version: u8,
    /// Every record entry as received (mDNS TXT or broadcast ANNOUNCE).
    pub txt: BTreeMap<String, String>,
    /// The source that found it first.
    pub source: Source,
}

impl Device {
    /// Builds a device from a router record, the addresses it was seen at and its source.
    /// `fallback_id`/`fallback_name` are used when the record has no `id`/`name`.
    pub fn from_record(
        txt: BTreeMap<String, String>,
        addresses: impl IntoIterator<Item = IpAddr>,
        fallback_id: &str,
        fallback_name: &str,
        source: Source,
    ) -> Device {
        let ws_port = txt
            .get("ws")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_WS_PORT);
        let version = txt
            .get("version")
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(PROTOCOL_VERSION);
        let features = txt
            .get("features")
            .map_or(Features::CLIENT_DEFAULT, |f| features_from_letters(f));
        let id = txt
            .get("id")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| fallback_id.to_owned());
        let name = txt
            .get("name")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| fallback_name.to_owned());
        let mut device = Device {
            id,
            name,
            addresses: Vec::new(),
            ws_port,
            ws_url: String::new(),
            features,
            version,
            txt,
            source,
        };
        device.add_addresses(addresses);
        device
    }

    /// The WebSocket URL of this device at `addr` (`ws://[v6]:port/path` for IPv6).
    pub fn ws_url_for(&self, addr: IpAddr) -> String {
        let scheme = match self.txt.get("tls").map(String::as_str) {
            Some("1" | "true") => "wss",
            _ => "ws",
        };
        let path = self
            .txt
            .get("path")
            .filter(|p| p.starts_with('/'))
            .map_or(DEFAULT_WS_PATH, String::as_str);
        let port = self.ws_port;
        match addr {
            IpAddr::V4(a) => format!("{scheme}://{a}:{port}{path}"),
            IpAddr::V6(a) => format!("{scheme}://[{a}]:{port}{path}"),
        }
    }

    /// Adds addresses (deduplicated), re-sorts them by preference and refreshes `ws_url`.
    pub fn add_addresses(&mut self, addresses: impl IntoIterator<Item = IpAddr>) {
        for a in addresses {
            if !self.addresses.contains(&a) {
                self.addresses.push(a);
            }
        }
        // Stable sort: within a rank the first-seen address stays first.
        self.addresses.sort_by_key(|a| address_rank(*a));
        self.ws_url = self
            .addresses
            .first()
            .map(|a| self.ws_url_for(*a))
            .unwrap_or_default();
    }

    /// Merges what `other` (the same router seen again or by another source) knows.
    /// Entries this device's record lacks are taken from `other` (e.g. the real WebSocket port
    /// of a router first seen through a bare WELCOME).
    pub fn merge(&mut self, other: Device) {
        let mine = &self.txt;
        let lacks = |k: &str| !mine.contains_key(k) && other.txt.contains_key(k);
        let [id, name, ws, features, version] =
            ["id", "name", "ws", "features", "version"].map(lacks);
        if id {
            self.id.clone_from(&other.id);
        }
        if name {
            self.name.clone_from(&other.name);
        }
        if ws {
            self.ws_port = other.ws_port;
        }
        if features {
            self.features = other.features;
        }
        if version {
            self.version = other.version;
        }
        for (k, v) in other.txt {
            self.txt.entry(k).or_insert(v);
        }
        self.add_addresses(other.addresses);
    }

    /// Whether `other` describes the same router: same id, or (for records without an `id`
    /// entry, e.g. from the reference implementation) a shared address and WebSocket port.
    pub fn same_router(&self, other: &Device) -> bool {
        if self.id == other.id {
            return true;
        }
        let both_have_ids = self.txt.contains_key("id") && other.txt.contains_key("id");
        !both_have_ids
            && self.ws_port == other.ws_port
            && self.addresses.iter().any(|a| other.addresses.contains(a))
    }
}

/// Lower is preferred: routable IPv4, other IPv4, routable IPv6, link-local IPv6 (unusable in
/// a URL without a zone), loopback last.
fn address_rank(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(v4) if v4.is_loopback() => 5,
        IpAddr::V4(v4) if v4.is_link_local() || v4.is_unspecified() => 1,
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.is_loopback() => 5,
        IpAddr::V6(v6) if v6.is_unicast_link_local() || v6.is_unspecified() => 3,
        IpAddr::V6(_) => 2,
    }
}

/// Adds `device` to `list`, merging it into an entry for the same router.
pub(crate) fn insert_merged(list: &mut Vec<Device>, device: Device) {
    match list.iter_mut().find(|d| d.same_router(&device)) {
        Some(existing) => existing.merge(device),
        None => list.push(device),
    }
}

/// Sorts a result list deterministically (name, then id).
pub(crate) fn sort_devices(list: &mut [Device]) {
    list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
}

/// Letters of the features in TXT `features`: p = param, e = event, s = stream, g = gesture,
/// t = timeline.
pub fn features_to_letters(f: Features) -> String {
    [
        (Features::PARAM, 'p'),
        (Features::EVENT, 'e'),
        (Features::STREAM, 's'),
        (Features::GESTURE, 'g'),
        (Features::TIMELINE, 't'),
    ]
    .into_iter()
    .filter(|(bit, _)| f.0 & bit != 0)
    .map(|(_, c)| c)
    .collect()
}

/// Features from TXT `features`: letters (case-insensitive, unknown ones ignored) or, leniently,
/// comma-separated names (`param,event`).
pub fn features_from_letters(s: &str) -> Features {
    if s.contains(',') || s.len() > 5 && s.chars().all(|c| c.is_ascii_alphabetic() || c == ',') {
        let named = Features::from_names(s.split(',').map(str::trim));
        if named.0 != 0 {
            return named;
        }
    }
    Features(s.chars().fold(0, |m, c| {
        m | match c.to_ascii_lowercase() {
            'p' => Features::PARAM,
            'e' => Features::EVENT,
            's' => Features::STREAM,
            'g' => Features::GESTURE,
            't' => Features::TIMELINE,
            _ => 0,
        }
    }))
}

/// What a router publishes about itself, identically over mDNS and broadcast.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterInfo {
    /// Stable identity (WELCOME session of broadcast answers, TXT `id`). Keep it across
    /// restarts (e.g. persist it) so scanners see the same device.
    pub id: String,
    /// Human name (TXT `name`, WELCOME name, mDNS instance name).
    pub name: String,
    /// Features offered.
    pub features: Features,
    /// WebSocket port.
    pub ws_port: u16,
    /// Extra record entries, e.g. `quic`, `tcp`, `path`, `tls`.
    pub extras: BTreeMap<String, String>,
}

impl RouterInfo {
    /// A record with a fresh random id.
    pub fn new(name: impl Into<String>, features: Features, ws_port: u16) -> RouterInfo {
        RouterInfo {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: name.into(),
            features,
            ws_port,
            extras: BTreeMap::new(),
        }
    }

    /// Sets the stable id.
    pub fn with_id(mut self, id: impl Into<String>) -> RouterInfo {
        self.id = id.into();
        self
    }

    /// Adds an extra record entry.
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<String>) -> RouterInfo {
        self.extras.insert(key.into(), value.into());
        self
    }

    /// The record entries, in publication order, after validation: keys are non-empty
    /// printable ASCII without `=`, extras do not shadow the standard keys, and each
    /// `key=value` fits a TXT string (255 bytes; the name is truncated at a character
    /// boundary to fit).
    pub fn record(&self) -> Result<Vec<(String, String)>> {
        if self.id.is_empty() || self.id.len() > 128 {
            return Err(Error::InvalidRecord {
                key: "id".into(),
                reason: "must be 1 to 128 bytes",
            });
        }
        let mut out = vec![
            ("version".to_owned(), PROTOCOL_VERSION.to_string()),
            ("id".to_owned(), self.id.clone()),
            (
                "name".to_owned(),
                truncate(&self.name, MAX_TXT_ENTRY - "name=".len()).to_owned(),
            ),
            ("features".to_owned(), features_to_letters(self.features)),
            ("ws".to_owned(), self.ws_port.to_string()),
        ];
        for (k, v) in &self.extras {
            let bad = |reason| Error::InvalidRecord {
                key: k.clone(),
                reason,
            };
            if k.is_empty() || !k.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=') {
                return Err(bad("key must be printable ASCII without '='"));
            }
            if RESERVED_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(bad("key is written by the router record itself"));
            }
            if k.len() + 1 + v.len() > MAX_TXT_ENTRY {
                return Err(bad("key=value longer than 255 bytes"));
            }
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn letters_round_trip_and_tolerance() {
        let all = Features(0xF8);
        assert_eq!(features_to_letters(all), "pesgt");
        assert_eq!(features_from_letters("pesgt"), all);
        assert_eq!(features_from_letters("PSE"), Features(0xE0));
        assert_eq!(features_from_letters("pxz?"), Features(Features::PARAM));
        assert_eq!(features_from_letters("param,event"), Features(0xC0));
        assert_eq!(features_from_letters(""), Features(0));
    }

    #[test]
    fn ipv6_urls_are_bracketed_and_v4_preferred() {
        let v6: IpAddr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1).into();
        let v4: IpAddr = Ipv4Addr::new(10, 77, 0, 1).into();
        let mut txt = BTreeMap::new();
        txt.insert("ws".into(), "9001".into());
        let d = Device::from_record(txt.clone(), [v6], "x", "x", Source::Mdns);
        assert_eq!(d.ws_url, "ws://[fd77::1]:9001/clasp");
        let d = Device::from_record(txt, [v6, v4], "x", "x", Source::Mdns);
        assert_eq!(d.addresses, vec![v4, v6]);
        assert_eq!(d.ws_url, "ws://10.77.0.1:9001/clasp");
    }

    #[test]
    fn record_validation() {
        let info = RouterInfo::new("r", Features::ROUTER, 1).with_extra("ws", "2");
        assert!(info.record().is_err());
        let info = RouterInfo::new("r", Features::ROUTER, 1).with_extra("a=b", "2");
        assert!(info.record().is_err());
        let info = RouterInfo::new("é".repeat(300), Features::ROUTER, 1).with_extra("quic", "7");
        let rec = info.record().unwrap();
        assert!(rec.iter().all(|(k, v)| k.len() + 1 + v.len() <= 255));
    }
}
