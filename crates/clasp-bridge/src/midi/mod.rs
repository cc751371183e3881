//! MIDI: a MIDI 1.0 byte-stream parser ([`parse`]), the messages and their bytes
//! ([`message`]), the address layout both ways ([`layout`]), the bridge ([`bridge`]) and, with
//! the `alsa` feature, ALSA sequencer ports (`seq`).

pub mod bridge;
pub mod layout;
pub mod message;
pub mod parse;
#[cfg(feature = "alsa")]
pub mod seq;

pub use bridge::{MidiBridge, MidiConfig, MidiStats, run};
pub use layout::{Decoder, Inbound, encode};
pub use message::MidiMsg;
pub use parse::{Parser, Skipped};
