//! HTTP: a REST and Server-Sent Events door to the router for web pages, scripts and tools
//! that speak HTTP (see [`server`]).

pub mod api;
pub mod server;
pub mod webhook;

pub use server::{HttpBridge, HttpBridgeConfig, HttpStats};
pub use webhook::{WebhookConfig, WebhookStats};
