//! Other services than routers over mDNS/DNS-SD: [`Services`] publishes a few
//! `(service type, port)` pairs (say `_oscjson._tcp` and `_osc._udp` for an OSCQuery app)
//! under one instance name and one host name, and says goodbye when dropped;
//! [`browse_services`] finds the instances of a service type.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::Result;
use crate::mdns::instance_label;

/// One service to publish: its type (`_oscjson._tcp.local.`), port and TXT entries.
#[derive(Debug, Clone)]
pub struct Service {
    /// Full service type, ending in `.local.`.
    pub service_type: String,
    /// SRV port.
    pub port: u16,
    /// TXT entries.
    pub txt: Vec<(String, String)>,
}

/// mDNS registrations of one application's services; dropping it sends the goodbyes and
/// stops the daemon.
pub struct Services {
    daemon: ServiceDaemon,
    fullnames: Vec<String>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("fullnames", &self.fullnames)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Publishes every service as instance `name` on host `hostname` (`foo.local.`), with A/AAAA
    /// records for `address`, or for every interface address (kept up to date) when it is
    /// `None`.
    pub fn publish(
        name: &str,
        hostname: &str,
        address: Option<IpAddr>,
        services: &[Service],
    ) -> Result<Services> {
        let daemon = ServiceDaemon::new()?;
        let instance = instance_label(name);
        let mut fullnames = Vec::with_capacity(services.len());
        for s in services {
            let addrs: Vec<IpAddr> = address.into_iter().collect();
            let registered = ServiceInfo::new(
                &s.service_type,
                &instance,
                hostname,
                addrs.as_slice(),
                s.port,
                s.txt.as_slice(),
            )
            .map(|i| {
                if address.is_none() {
                    i.enable_addr_auto()
                } else {
                    i
                }
            })
            .and_then(|i| {
                let full = i.get_fullname().to_owned();
                daemon.register(i).map(|()| full)
            });
            match registered {
                Ok(full) => fullnames.push(full),
                Err(e) => {
                    let _ = daemon.shutdown();
                    return Err(e.into());
                }
            }
        }
        tracing::debug!(?fullnames, %hostname, "mDNS advertising");
        Ok(Services { daemon, fullnames })
    }

    /// The registered instances' full names (`<name>.<type>`).
    pub fn fullnames(&self) -> &[String] {
        &self.fullnames
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        // Commands run in order on the daemon thread: goodbyes first, then exit.
        for f in &self.fullnames {
            let _ = self.daemon.unregister(f);
        }
        let _ = self.daemon.shutdown();
    }
}

/// A service instance found by [`browse_services`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundService {
    /// The instance name (`VRChat-Client-A1B2C3`).
    pub instance: String,
    /// The host name from its SRV record (`foo.local.`).
    pub host: String,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// The SRV port.
    pub port: u16,
}

/// Most instances kept from one browse.
const MAX_FOUND: usize = 1024;

/// Browses `service_type` (`_oscjson._tcp.local.`) for `wait`, or until an instance whose name
/// contains `stop_at` is resolved; returns the instances resolved and still present, sorted by
/// name. The daemon is shut down before this returns.
pub async fn browse_services(
    service_type: &str,
    wait: Duration,
    stop_at: Option<&str>,
) -> Result<Vec<FoundService>> {
    let daemon = ServiceDaemon::new()?;
    let events = match daemon.browse(service_type) {
        Ok(e) => e,
        Err(e) => {
            let _ = daemon.shutdown();
            return Err(e.into());
        }
    };
    let suffix = format!(".{service_type}");
    let deadline = tokio::time::Instant::now() + wait;
    let mut found: Vec<(String, FoundService)> = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv_async()).await {
        match event {
            ServiceEvent::ServiceResolved(info) => {
                let full = info.get_fullname().to_owned();
                let instance = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
                let mut addresses: Vec<IpAddr> = info.get_addresses().iter().copied().collect();
                addresses.sort_by_key(|a| (a.is_ipv6(), *a));
                let service = FoundService {
                    instance,
                    host: info.get_hostname().to_owned(),
                    addresses,
                    port: info.get_port(),
                };
                let done = stop_at.is_some_and(|n| service.instance.contains(n));
                found.retain(|(f, _)| *f != full);
                if found.len() < MAX_FOUND {
                    found.push((full, service));
                }
                if done {
                    break;
                }
            }
            ServiceEvent::ServiceRemoved(_, full) => found.retain(|(f, _)| *f != full),
            ServiceEvent::SearchStopped(_) => break,
            _ => {}
        }
    }
    let _ = daemon.stop_browse(service_type);
    let _ = daemon.shutdown();
    let mut out: Vec<FoundService> = found.into_iter().map(|(_, s)| s).collect();
    out.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(out)
}
