//! Advertising other services than a router over mDNS/DNS-SD: [`Services`] publishes a few
//! `(service type, port)` pairs (say `_oscjson._tcp` and `_osc._udp` for an OSCQuery app)
//! under one instance name and one host name, and says goodbye when dropped.

use std::fmt;
use std::net::IpAddr;

use mdns_sd::{ServiceDaemon, ServiceInfo};

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
