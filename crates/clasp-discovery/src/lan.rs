//! [`discover_lan`]: mDNS and UDP broadcast together.

use std::time::Duration;

use crate::device::{Device, insert_merged, sort_devices};
use crate::{DEFAULT_DISCOVERY_PORT, Error, Result, broadcast, mdns};

/// Browses mDNS and scans UDP broadcast port 7331 concurrently for `timeout`, and returns the
/// routers found, merged by identity (record `id`; for records without one, a shared address
/// and WebSocket port). Fails only when both sources fail; a single failure is logged.
pub async fn discover_lan(timeout: Duration) -> Result<Vec<Device>> {
    discover_lan_on(DEFAULT_DISCOVERY_PORT, timeout).await
}

/// [`discover_lan`] with the broadcast scan on UDP `port`.
pub async fn discover_lan_on(port: u16, timeout: Duration) -> Result<Vec<Device>> {
    let (m, b) = tokio::join!(
        mdns::browse(timeout),
        broadcast::broadcast_scan(port, timeout)
    );
    let mut devices = Vec::new();
    match (m, b) {
        (Err(m), Err(b)) => {
            return Err(Error::AllFailed {
                mdns: Box::new(m),
                broadcast: Box::new(b),
            });
        }
        (m, b) => {
            for list in [m, b] {
                match list {
                    Ok(list) => list
                        .into_iter()
                        .for_each(|d| insert_merged(&mut devices, d)),
                    Err(e) => tracing::warn!(error = %e, "a LAN discovery source failed"),
                }
            }
        }
    }
    sort_devices(&mut devices);
    Ok(devices)
}
