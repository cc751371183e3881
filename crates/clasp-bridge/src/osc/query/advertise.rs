//! Advertising the OSC bridge over mDNS the way OSCQuery apps look for each other:
//! `_oscjson._tcp` for the OSCQuery HTTP server and `_osc._udp` for the OSC input, under one
//! instance name (VRChat, for one, wants both).

use std::net::{IpAddr, SocketAddr};

use clasp_discovery::{Service, Services};

use crate::link::BridgeError;

/// OSCQuery's service type.
pub const OSCJSON_SERVICE: &str = "_oscjson._tcp.local.";
/// The OSC input's service type.
pub const OSC_SERVICE: &str = "_osc._udp.local.";

/// Whether a server bound to `ip` is worth advertising: not when only this machine can reach
/// it (loopback).
pub fn reachable(ip: IpAddr) -> bool {
    !ip.is_loopback()
}

/// Publishes `name` with its OSCQuery server at `query` and OSC input at `osc`. The addresses
/// published are the bound IP when it is a specific one, every interface's otherwise. `None`
/// when the OSCQuery server is bound to loopback (nothing outside could use it).
pub fn publish(
    name: &str,
    query: SocketAddr,
    osc: SocketAddr,
) -> Result<Option<Services>, BridgeError> {
    if !reachable(query.ip()) {
        tracing::info!(%query, "OSCQuery bound to loopback: not advertised over mDNS");
        return Ok(None);
    }
    // Unique on the LAN: two machines may run bridges on the same ports.
    let hostname = format!(
        "clasp-osc-{}-{}-{:06x}.local.",
        query.port(),
        osc.port(),
        fastrand::u32(..0x100_0000)
    );
    let address = (!query.ip().is_unspecified()).then_some(query.ip());
    let services = [
        Service {
            service_type: OSCJSON_SERVICE.into(),
            port: query.port(),
            txt: Vec::new(),
        },
        Service {
            service_type: OSC_SERVICE.into(),
            port: osc.port(),
            txt: Vec::new(),
        },
    ];
    let published = Services::publish(name, &hostname, address, &services)
        .map_err(|e| BridgeError::Device(format!("cannot advertise over mDNS: {e}")))?;
    tracing::info!(names = ?published.fullnames(), "OSCQuery advertised over mDNS");
    Ok(Some(published))
}
