//! The MQTT client bridge (MQTT 3.1.1, plain TCP): subscribes to topics on a broker and writes
//! what arrives under its namespace, as params (state, the usual meaning of a topic's latest
//! message; MQTT 3.1.1 does not tell a subscriber whether a live message was retained), or as
//! events for the topics matching `events`; payloads as JSON, numbers, text or bytes. Changes
//! under the namespace made by anyone else are published to their topics (params retained). Its own
//! publishes coming back from the broker are recognised and dropped; it reconnects with
//! back-off and subscribes again on every connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clasp_mapping::echo::Echoes;
use clasp_mapping::{Write, WriteKind};
use clasp_mqtt::Topics;
use clasp_mqtt::payload::{to_payload, to_value};
use clasp_proto::{SignalType, Value};
use futures_util::{FutureExt, StreamExt};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::link::{BridgeError, LinkSubscription, RouterLink};

/// One MQTT client bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttBridgeConfig {
    /// The broker, `HOST:PORT`.
    pub broker: String,
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
    /// Checks the settings; the broker's host and port, and the topic mapping.
    pub fn check(&self) -> Result<(String, u16, Topics), BridgeError> {
        let bad = |why: String| BridgeError::Config(why);
        let (host, port) = self
            .broker
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)))
            .ok_or_else(|| bad(format!("MQTT broker `{}`: expected HOST:PORT", self.broker)))?;
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
        Ok((host, port, topics))
    }
}

/// Counters of a running MQTT client bridge.
pub type MqttStats = crate::stats::BridgeStats;

/// An MQTT client bridge subscribed to its namespace, ready to [`MqttBridge::run`].
#[derive(Debug)]
pub struct MqttBridge {
    link: RouterLink,
    cfg: MqttBridgeConfig,
    host: String,
    port: u16,
    topics: Topics,
    sub: LinkSubscription,
}

impl MqttBridge {
    /// Checks the settings and subscribes to the namespace (the state found now is not sent).
    pub async fn start(link: RouterLink, cfg: MqttBridgeConfig) -> Result<MqttBridge, BridgeError> {
        let (host, port, topics) = cfg.check()?;
        let mut sub = link
            .subscribe(&format!("{}/**", topics.namespace()))
            .await?;
        link.sync().await?;
        while let Some(Some(_)) = sub.next().now_or_never() {}
        Ok(MqttBridge {
            link,
            cfg,
            host,
            port,
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
            host,
            port,
            topics,
            mut sub,
        } = self;
        let id = cfg
            .client_id
            .clone()
            .unwrap_or_else(|| format!("clasp-bridge-{:08x}", fastrand::u32(..)));
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts.set_credentials(u.clone(), p.clone());
        }
        let qos = if cfg.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let (client, mut events) = AsyncClient::new(opts, 1024);
        // Publishes of ours the broker sends back (MQTT 3.1.1 has no "no local").
        let mut sent_out = Echoes::new();
        // Router writes of ours the router sends back.
        let mut written = Echoes::new();
        let mut backoff = Duration::from_millis(250);
        let mut connected_once = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = client.try_disconnect();
                    return Ok(());
                }
                ev = events.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(250);
                        if connected_once {
                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        connected_once = true;
                        for t in &cfg.subscribe {
                            let _ = client.try_subscribe(t.clone(), qos);
                        }
                        tracing::info!(broker = %cfg.broker, "MQTT bridge connected");
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        let payload = Value::Bytes(p.payload.clone());
                        if sent_out.is_echo(&p.topic, &payload) {
                            continue;
                        }
                        let Ok(address) = topics.address(&p.topic) else {
                            stats.skipped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let w = Write {
                            address,
                            value: to_value(&p.payload),
                            kind: if cfg.events.iter().any(|f| rumqttc::matches(&p.topic, f)) {
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
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(broker = %cfg.broker, error = %e, "MQTT broker unreachable; retrying");
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
                    sent_out.sent(&topic, &Value::Bytes(payload.clone()));
                    match client.try_publish(topic.into_owned(), qos, param, payload.to_vec()) {
                        Ok(()) => {
                            stats.messages_out.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            stats.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}
