//! mDNS / DNS-SD: [`Advertiser`] publishes a router as `_clasp._tcp.local.`; [`MdnsBrowser`]
//! and [`browse`] find routers.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{IfKind, Receiver, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::device::{Device, RouterInfo, Source, insert_merged, sort_devices, truncate};
use crate::{MDNS_SERVICE_TYPE, Result};

/// Longest DNS label (the instance name is one label).
const MAX_LABEL: usize = 63;
/// Most TXT entries kept from one resolved instance.
const MAX_TXT_ENTRIES: usize = 64;

/// How an [`Advertiser`] publishes.
#[derive(Debug, Clone, Default)]
pub struct AdvertiseOptions {
    /// Addresses for the A/AAAA records. Empty (the default): every interface address, kept
    /// up to date by mdns-sd as interfaces change.
    pub addresses: Vec<IpAddr>,
    /// Host name (`foo.local.`). Default: `clasp-<id>.local.`, unique per router, so two
    /// routers on one machine never fight over a host name.
    pub hostname: Option<String>,
    /// Also publish on loopback interfaces (off by default, as in mdns-sd).
    pub include_loopback: bool,
}

/// An mDNS registration of one router; dropping it sends the goodbye and stops the daemon.
pub struct Advertiser {
    daemon: ServiceDaemon,
    fullname: String,
    hostname: String,
    info: RouterInfo,
    unregistered: bool,
}

impl fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.fullname)
            .field("hostname", &self.hostname)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Advertiser {
    /// Advertises `info` on every interface address.
    pub fn new(info: RouterInfo) -> Result<Advertiser> {
        Advertiser::with_options(info, AdvertiseOptions::default())
    }

    /// Advertises `info` as `options` say.
    pub fn with_options(info: RouterInfo, options: AdvertiseOptions) -> Result<Advertiser> {
        let record = info.record()?;
        let instance = instance_label(&info.name);
        let hostname = options
            .hostname
            .clone()
            .unwrap_or_else(|| default_hostname(&info.id));
        let daemon = ServiceDaemon::new()?;
        if options.include_loopback {
            daemon.enable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
        }
        let auto = options.addresses.is_empty();
        let service = ServiceInfo::new(
            MDNS_SERVICE_TYPE,
            &instance,
            &hostname,
            options.addresses.as_slice(),
            info.ws_port,
            record.as_slice(),
        );
        let service = match service {
            Ok(s) if auto => s.enable_addr_auto(),
            Ok(s) => s,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e.into());
            }
        };
        let fullname = service.get_fullname().to_owned();
        if let Err(e) = daemon.register(service) {
            let _ = daemon.shutdown();
            return Err(e.into());
        }
        tracing::debug!(%fullname, %hostname, port = info.ws_port, "mDNS advertising");
        Ok(Advertiser {
            daemon,
            fullname,
            hostname,
            info,
            unregistered: false,
        })
    }

    /// The registered instance's full name (`<name>._clasp._tcp.local.`).
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// The host name the A/AAAA records are published under.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// What is advertised.
    pub fn info(&self) -> &RouterInfo {
        &self.info
    }

    /// Unregisters (waiting up to a second for the goodbye to be sent) and stops the daemon.
    pub async fn stop(mut self) {
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            self.unregistered = true;
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv_async()).await;
        }
        // Drop shuts the daemon down.
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        // Commands run in order on the daemon thread: goodbye first, then exit.
        if !self.unregistered {
            let _ = self.daemon.unregister(&self.fullname);
        }
        let _ = self.daemon.shutdown();
    }
}

/// The instance label for `name`: dots (label separators) become `-`, cut to 63 bytes.
pub(crate) fn instance_label(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c == '.' || c.is_control() { '-' } else { c })
        .collect();
    let label = truncate(cleaned.trim(), MAX_LABEL);
    if label.is_empty() {
        "CLASP Router".to_owned()
    } else {
        label.to_owned()
    }
}

/// `clasp-<first 12 alphanumerics of id>.local.`
fn default_hostname(id: &str) -> String {
    let tag: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("clasp-{tag}.local.")
}

/// An event of [`MdnsBrowser`].
#[derive(Debug, Clone, PartialEq)]
pub enum MdnsEvent {
    /// A router was resolved (again, when its records change).
    Found(Device),
    /// A router said goodbye or its records expired.
    Lost {
        /// The id it was reported [`Found`](MdnsEvent::Found) with.
        id: String,
    },
}

/// A running mDNS browse for `_clasp._tcp.local.`. Events are read with [`next`](Self::next)
/// (async, no blocking thread of ours); dropping the browser stops the browse and the daemon.
pub struct MdnsBrowser {
    daemon: ServiceDaemon,
    events: Receiver<ServiceEvent>,
    /// fullname → device id, to report losses by id.
    ids: HashMap<String, String>,
}

impl fmt::Debug for MdnsBrowser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MdnsBrowser")
            .field("known", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl MdnsBrowser {
    /// Starts browsing on every non-loopback interface.
    pub fn start() -> Result<MdnsBrowser> {
        let daemon = ServiceDaemon::new()?;
        match daemon.browse(MDNS_SERVICE_TYPE) {
            Ok(events) => Ok(MdnsBrowser {
                daemon,
                events,
                ids: HashMap::new(),
            }),
            Err(e) => {
                let _ = daemon.shutdown();
                Err(e.into())
            }
        }
    }

    /// The next event; `None` when the daemon stopped.
    pub async fn next(&mut self) -> Option<MdnsEvent> {
        loop {
            match self.events.recv_async().await.ok()? {
                ServiceEvent::ServiceResolved(info) => {
                    let device = device_from_service(&info);
                    self.ids
                        .insert(info.get_fullname().to_owned(), device.id.clone());
                    return Some(MdnsEvent::Found(device));
                }
                ServiceEvent::ServiceRemoved(_, fullname) => {
                    if let Some(id) = self.ids.remove(&fullname) {
                        return Some(MdnsEvent::Lost { id });
                    }
                }
                ServiceEvent::SearchStopped(_) => return None,
                ServiceEvent::SearchStarted(_) | ServiceEvent::ServiceFound(..) => {}
            }
        }
    }
}

impl Drop for MdnsBrowser {
    fn drop(&mut self) {
        let _ = self.daemon.stop_browse(MDNS_SERVICE_TYPE);
        let _ = self.daemon.shutdown();
    }
}

/// Builds a [`Device`] from a resolved instance.
pub(crate) fn device_from_service(info: &ServiceInfo) -> Device {
    let txt: BTreeMap<String, String> = info
        .get_properties()
        .iter()
        .take(MAX_TXT_ENTRIES)
        .map(|p| (p.key().to_ascii_lowercase(), p.val_str().to_owned()))
        .collect();
    let fullname = info.get_fullname();
    let instance = fullname
        .strip_suffix(MDNS_SERVICE_TYPE)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(fullname);
    let has_ws = txt.contains_key("ws");
    let mut device = Device::from_record(
        txt,
        info.get_addresses().iter().copied(),
        fullname,
        instance,
        Source::Mdns,
    );
    if !has_ws && info.get_port() != 0 {
        // The SRV port is the WebSocket port when TXT does not say otherwise.
        device.ws_port = info.get_port();
        device.add_addresses([]);
    }
    device
}

/// Browses for `timeout` and returns the routers still present at its end, merged by identity.
/// The daemon is shut down before this returns.
pub async fn browse(timeout: Duration) -> Result<Vec<Device>> {
    let mut browser = MdnsBrowser::start()?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut found = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, browser.next()).await {
        match event {
            MdnsEvent::Found(d) => insert_merged(&mut found, d),
            MdnsEvent::Lost { id } => found.retain(|d: &Device| d.id != id),
        }
    }
    drop(browser);
    sort_devices(&mut found);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_hostnames() {
        assert_eq!(instance_label("a.b"), "a-b");
        assert_eq!(instance_label("  "), "CLASP Router");
        assert!(instance_label(&"ü".repeat(100)).len() <= 63);
        assert_eq!(default_hostname("AB-cd_ef"), "clasp-abcdef.local.");
    }
}
