//! MQTT client: the router joined to an external MQTT broker (see [`bridge`]). Not the MQTT
//! listener of `clasp relay` (brokers' clients come to it); this one reaches out.

pub mod bridge;

pub use bridge::{MqttBridge, MqttBridgeConfig, MqttStats};
