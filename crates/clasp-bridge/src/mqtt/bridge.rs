//! The MQTT client bridge (MQTT 3.1.1 or 5, over TCP or TLS): subscribes to topics on a broker and writes
//! what arrives under its namespace, as params (state, the usual meaning of a topic's latest
//! message; MQTT 3.1.1 does not tell a subscriber whether a live message was retained), or as
//! events for the topics matching `events`; payloads as JSON, numbers, text or bytes. Changes
//! under the namespace made by anyone else are published to their topics (params retained). Its own
//! publishes are not taken back (MQTT 5 subscribes with "no local"; with 3.1.1 they are
//! recognised and dropped); it reconnects with back-off and subscribes again on every
//! connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clasp_mapping::echo::Echoes;
use clasp_mapping::{Write, WriteKind};
use clasp_mqtt::Topics;
use clasp_mqtt::payload::{to_payload, to_value};
use clasp_proto::{SignalType, Value};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Endpoint, Incoming, Login, Version, tls_config};
use crate::link::{BridgeError, LinkSubscription, RouterLink};

/// One MQTT client bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttBridgeConfig {
    /// The broker: `HOST:PORT`, `mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (TLS,
    /// 8883).
    pub broker: String,
    /// `"3.1.1"` (the default, what every broker speaks) or `"5"`.
    #[serde(default = "default_version")]
    pub version: String,
    /// PEM file of the CA certificates to trust for `mqtts` instead of the public roots (a
    /// broker with a private CA or a self-signed certificate).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for brokers that authenticate clients by certificate.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<String>,
    /// The client id (default `clasp-bridge-<random>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name and password, if the broker wants them.
    #[serde(default)]
    pub username: Option<String>,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// Topic filters to mirror (default `#`: everything).
    #[serde(default = "default_topics")]
    pub subscribe: Vec<String>,
    /// Topic filters whose messages are events, not params (`sensors/+/button`).
    #[serde(default)]
    pub events: Vec<String>,
    /// QoS of subscriptions and publishes: 0 or 1 (default 1).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// The prefix (default `/mqtt`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

fn default_version() -> String {
    "3.1.1".into()
}

fn default_topics() -> Vec<String> {
    vec!["#".into()]
}

fn default_qos() -> u8 {
    1
}

fn default_namespace() -> String {
    "/mqtt".into()
}

impl MqttBridgeConfig {
    /// A bridge of `broker` with every other setting at its default.
    pub fn new(broker: &str) -> MqttBridgeConfig {
        MqttBridgeConfig {
            broker: broker.into(),
            version: default_version(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            client_id: None,
            username: None,
            password: None,
            subscribe: default_topics(),
            events: Vec::new(),
            qos: default_qos(),
            namespace: default_namespace(),
        }
    }

    /// Checks the settings: where and how to connect, and the topic mapping.
    pub fn check(&self) -> Result<(Endpoint, Topics), BridgeError> {
        let bad = |why: String| BridgeError::Config(why);
        let (tls, rest) = match self.broker.split_once("://") {
            Some(("mqtts" | "ssl" | "tls", rest)) => (true, rest),
            Some(("mqtt" | "tcp", rest)) => (false, rest),
            Some((scheme, _)) => {
                return Err(bad(format!(
                    "MQTT broker `{}`: unknown scheme `{scheme}` (use mqtt:// or mqtts://)",
                    self.broker
                )));
            }
            None => (false, self.broker.as_str()),
        };
        let rest = rest.trim_end_matches('/');
        let with_port = rest
            .rsplit_once(':')
            .filter(|(h, _)| !h.contains(':') || h.ends_with(']'));
        let (host, port) = match with_port {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad(format!("MQTT broker `{}`: bad port `{p}`", self.broker)))?,
            ),
            None if self.broker.contains("://") => (rest, if tls { 8883 } else { 1883 }),
            None => {
                return Err(bad(format!(
                    "MQTT broker `{}`: expected HOST:PORT or mqtt[s]://HOST[:PORT]",
                    self.broker
                )));
            }
        };
        let host = host.trim_matches(['[', ']']).to_owned();
        if host.is_empty() {
            return Err(bad(format!("MQTT broker `{}`: no host", self.broker)));
        }
        let version = match self.version.as_str() {
            "3.1.1" | "3" | "4" => Version::V311,
            "5" | "5.0" => Version::V5,
            v => {
                return Err(bad(format!("MQTT version `{v}`: use \"3.1.1\" or \"5\"")));
            }
        };
        if !tls && (self.ca_file.is_some() || self.cert_file.is_some()) {
            return Err(bad(format!(
                "MQTT broker `{}`: ca_file/cert_file need an mqtts:// broker",
                self.broker
            )));
        }
        let tls = if tls {
            Some(tls_config(
                self.ca_file.as_deref(),
                self.cert_file.as_deref(),
                self.key_file.as_deref(),
            )?)
        } else {
            None
        };
        if self.qos > 1 {
            return Err(bad(format!("MQTT qos {}: use 0 or 1", self.qos)));
        }
        if self.subscribe.is_empty() {
            return Err(bad("MQTT bridge with nothing to subscribe to".into()));
        }
        let topics = Topics::new(&self.namespace)
            .ok()
            .filter(|_| !self.namespace.is_empty())
            .ok_or_else(|| {
                bad(format!(
                    "MQTT namespace `{}` must be an address such as /mqtt",
                    self.namespace
                ))
            })?;
        Ok((
            Endpoint {
                host,
                port,
                tls,
                version,
            },
            topics,
        ))
    }
}

/// Counters of a running MQTT client bridge.
pub type MqttStats = crate::stats::BridgeStats;

/// An MQTT client bridge subscribed to its namespace, ready to [`MqttBridge::run`].
#[derive(Debug)]
pub struct MqttBridge {
    link: RouterLink,
    cfg: MqttBridgeConfig,
    endpoint: Endpoint,
    topics: Topics,
    sub: LinkSubscription,
}

impl MqttBridge {
    /// Checks the settings and subscribes to the namespace (the state found now is not sent).
    pub async fn start(link: RouterLink, cfg: MqttBridgeConfig) -> Result<MqttBridge, BridgeError> {
        let (endpoint, topics) = cfg.check()?;
        let mut sub = link
            .subscribe(&format!("{}/**", topics.namespace()))
            .await?;
        link.sync().await?;
        while let Some(Some(_)) = sub.next().now_or_never() {}
        Ok(MqttBridge {
            link,
            cfg,
            endpoint,
            topics,
            sub,
        })
    }

    /// Runs until `stop`, connecting (and reconnecting) to the broker.
    pub async fn run(
        self,
        stats: Arc<MqttStats>,
        stop: CancellationToken,
    ) -> Result<(), BridgeError> {
        let MqttBridge {
            link,
            cfg,
            endpoint,
            topics,
            mut sub,
        } = self;
        let id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("clasp-bridge-{:08x}", fastrand::u32(..)));
        let login = Login {
            id,
            username: cfg.username.as_deref(),
            password: cfg.password.as_deref(),
        };
        let mut conn = Conn::new(&endpoint, login);
        let no_local = conn.no_local();
        // Publishes of ours the broker sends back (MQTT 3.1.1 has no "no local").
        let mut sent_out = Echoes::new();
        // Router writes of ours the router sends back.
        let mut written = Echoes::new();
        let mut backoff = Duration::from_millis(250);
        let mut connected_once = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    conn.disconnect();
                    return Ok(());
                }
                ev = conn.poll() => match ev {
                    Ok(Incoming::Connected) => {
                        backoff = Duration::from_millis(250);
                        if connected_once {
                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        connected_once = true;
                        for t in &cfg.subscribe {
                            conn.subscribe(t, cfg.qos);
                        }
                        tracing::info!(broker = %cfg.broker, version = %cfg.version, "MQTT bridge connected");
                    }
                    Ok(Incoming::Publish { topic, payload }) => {
                        stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        if !no_local && sent_out.is_echo(&topic, &Value::Bytes(payload.clone())) {
                            continue;
                        }
                        let Ok(address) = topics.address(&topic) else {
                            stats.skipped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let w = Write {
                            address,
                            value: to_value(&payload),
                            kind: if cfg.events.iter().any(|f| rumqttc::matches(&topic, f)) {
                                WriteKind::Event
                            } else {
                                WriteKind::Set
                            },
                            rule: 0,
                            feedback: false,
                        };
                        if w.kind == WriteKind::Set {
                            written.sent(&w.address, &w.value);
                        }
                        if let Err(e) = link.write(&w).await {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(address = %w.address, error = %e, "MQTT write to the router failed");
                        }
                    }
                    Ok(Incoming::Other) => {}
                    Err(e) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(broker = %cfg.broker, error = %e, "MQTT connection failed; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                },
                u = sub.next() => {
                    let Some(u) = u else { return Err(BridgeError::Closed) };
                    let param = u.kind == SignalType::Param;
                    if param && written.is_echo(&u.address, &u.value) {
                        continue;
                    }
                    let Some(topic) = topics.topic(&u.address) else { continue };
                    let payload = to_payload(&u.value);
                    if !no_local {
                        sent_out.sent(&topic, &Value::Bytes(payload.clone()));
                    }
                    if conn.publish(topic.into_owned(), cfg.qos, param, payload.to_vec()) {
                        stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
