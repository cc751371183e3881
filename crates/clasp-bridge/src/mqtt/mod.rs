//! MQTT client: the router joined to an external MQTT broker (see [`bridge`]), as MQTT 3.1.1 or
//! 5, over TCP or TLS ([`conn`]). Not the MQTT listener of `clasp relay` (brokers' clients come
//! to it); this one reaches out.

pub mod bridge;
pub mod conn;

pub use bridge::{MqttBridge, MqttBridgeConfig, MqttStats};
