//! Socket.IO: the router as a client of a Socket.IO server (web apps, Node.js dashboards),
//! events both ways (see [`bridge`]), over a small Engine.IO v4 / Socket.IO v5 client on the
//! WebSocket transport ([`protocol`]). Written here rather than taken from `rust_socketio`,
//! whose async client pulls OpenSSL and a second HTTP stack into the build.

pub mod bridge;
pub mod protocol;

pub use bridge::{SocketIoBridge, SocketIoConfig};
