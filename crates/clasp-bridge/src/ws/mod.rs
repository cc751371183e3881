//! WebSocket JSON: web pages and tools that speak `{"address": …, "value": …}` over a
//! WebSocket, as a server they connect to or as a client of theirs (see [`bridge`]).

pub mod bridge;
pub mod json;

pub use bridge::{WsBridge, WsBridgeConfig, WsMode, WsStats};
