//! One connection to an MQTT broker as MQTT 3.1.1 or 5 (rumqttc's two clients behind one
//! face), over TCP or TLS (rustls with the public roots or a given CA, and an optional client
//! certificate).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::link::BridgeError;

/// The MQTT protocol version spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5: subscriptions with "no local", so the broker does not send our publishes back.
    V5,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The broker's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// TLS configuration, when the broker speaks `mqtts`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The protocol version.
    pub version: Version,
}

/// What the broker sent that the bridge acts on.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// The connection is up.
    Connected,
    /// A message.
    Publish {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Bytes,
    },
    /// Anything else.
    Other,
}

/// A client and its event loop, of either version.
pub(crate) enum Conn {
    V311(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    V5(v5::AsyncClient, Box<v5::EventLoop>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::V311(..) => "Conn::V311",
            Conn::V5(..) => "Conn::V5",
        })
    }
}

/// Login details.
#[derive(Debug, Clone)]
pub(crate) struct Login<'a> {
    pub(crate) id: String,
    pub(crate) username: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
}

fn qos(q: u8) -> rumqttc::QoS {
    if q == 0 {
        rumqttc::QoS::AtMostOnce
    } else {
        rumqttc::QoS::AtLeastOnce
    }
}

fn qos5(q: u8) -> v5::mqttbytes::QoS {
    if q == 0 {
        v5::mqttbytes::QoS::AtMostOnce
    } else {
        v5::mqttbytes::QoS::AtLeastOnce
    }
}

impl Conn {
    /// A client that connects when first polled (and again after every error).
    pub(crate) fn new(at: &Endpoint, login: Login<'_>) -> Conn {
        let transport = match &at.tls {
            Some(cfg) => Transport::tls_with_config(TlsConfiguration::Rustls(cfg.clone())),
            None => Transport::Tcp,
        };
        let keep_alive = Duration::from_secs(30);
        match at.version {
            Version::V311 => {
                let mut o = rumqttc::MqttOptions::new(login.id, &at.host, at.port);
                o.set_keep_alive(keep_alive).set_clean_session(true);
                o.set_transport(transport);
                if let (Some(u), Some(p)) = (login.username, login.password) {
                    o.set_credentials(u, p);
                }
                let (c, e) = rumqttc::AsyncClient::new(o, 1024);
                Conn::V311(c, Box::new(e))
            }
            Version::V5 => {
                let mut o = v5::MqttOptions::new(login.id, &at.host, at.port);
                o.set_keep_alive(keep_alive).set_clean_start(true);
                o.set_transport(transport);
                if let (Some(u), Some(p)) = (login.username, login.password) {
                    o.set_credentials(u, p);
                }
                let (c, e) = v5::AsyncClient::new(o, 1024);
                Conn::V5(c, Box::new(e))
            }
        }
    }

    /// Whether the broker leaves our own publishes out of what it sends us.
    pub(crate) fn no_local(&self) -> bool {
        matches!(self, Conn::V5(..))
    }

    /// The next event; an error means the connection is down (the next poll reconnects).
    pub(crate) async fn poll(&mut self) -> Result<Incoming, String> {
        match self {
            Conn::V311(_, events) => match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    Ok(Incoming::Connected)
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    Ok(Incoming::Publish {
                        topic: p.topic,
                        payload: p.payload,
                    })
                }
                Ok(_) => Ok(Incoming::Other),
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    Err(format!("the broker refused the connection: {code:?}"))
                }
                Err(e) => Err(e.to_string()),
            },
            Conn::V5(_, events) => match events.poll().await {
                Ok(v5::Event::Incoming(v5::Incoming::ConnAck(_))) => Ok(Incoming::Connected),
                Ok(v5::Event::Incoming(v5::Incoming::Publish(p))) => {
                    match String::from_utf8(p.topic.to_vec()) {
                        Ok(topic) => Ok(Incoming::Publish {
                            topic,
                            payload: p.payload,
                        }),
                        Err(_) => Ok(Incoming::Other),
                    }
                }
                Ok(_) => Ok(Incoming::Other),
                Err(v5::ConnectionError::ConnectionRefused(code)) => {
                    Err(format!("the broker refused the connection: {code:?}"))
                }
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// Subscribes (MQTT 5: with "no local").
    pub(crate) fn subscribe(&self, filter: &str, q: u8) {
        match self {
            Conn::V311(c, _) => {
                let _ = c.try_subscribe(filter, qos(q));
            }
            Conn::V5(c, _) => {
                let mut f = v5::mqttbytes::v5::Filter::new(filter, qos5(q));
                f.nolocal = true;
                let _ = c.try_subscribe_many([f]);
            }
        }
    }

    /// Queues a publish; `false` when the queue is full.
    pub(crate) fn publish(&self, topic: String, q: u8, retain: bool, payload: Vec<u8>) -> bool {
        match self {
            Conn::V311(c, _) => c.try_publish(topic, qos(q), retain, payload).is_ok(),
            Conn::V5(c, _) => c.try_publish(topic, qos5(q), retain, payload).is_ok(),
        }
    }

    /// Sends DISCONNECT (best effort).
    pub(crate) fn disconnect(&self) {
        let _ = match self {
            Conn::V311(c, _) => c.try_disconnect().map_err(drop),
            Conn::V5(c, _) => c.try_disconnect().map_err(drop),
        };
    }
}

/// The TLS client configuration: the public roots, or only `ca_file`'s certificates when one
/// is given; a client certificate when `cert_file` and `key_file` are.
pub(crate) fn tls_config(
    ca_file: Option<&str>,
    cert_file: Option<&str>,
    key_file: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, BridgeError> {
    let bad = |why: String| BridgeError::Config(format!("MQTT TLS: {why}"));
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(format!("cannot read the CA file {path}: {e}")))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("CA file {path}: {e}")))?;
            if certs.is_empty() {
                return Err(bad(format!("no certificate in the CA file {path}")));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| bad(format!("CA file {path}: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(e.to_string()))?
    .with_root_certificates(roots);
    let cfg = match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(format!("cannot read the certificate {cert}: {e}")))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("certificate {cert}: {e}")))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(format!("cannot read the private key {key}: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(bad("give both cert_file and key_file, or neither".into())),
    };
    Ok(Arc::new(cfg))
}
