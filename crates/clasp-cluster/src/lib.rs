//! Several CLASP routers as one, over NATS: params in a JetStream key-value bucket (the CLASP
//! revision is the KV revision, so a SET with an expected revision is a compare-and-set across
//! routers), signals on core NATS subjects, each router subscribing only for what its sessions
//! want.
//!
//! How addresses become keys and subjects ([`naming`]), how patterns become subscription
//! filters ([`interest`]), what a param's key holds ([`record`]) and the bucket itself
//! ([`kv`]).

pub mod interest;
pub mod kv;
pub mod locks;
pub mod naming;
pub mod record;

pub use interest::{Interest, interest};
pub use naming::{NamingError, Subjects};
