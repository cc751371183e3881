//! MIDI: a MIDI 1.0 byte-stream parser ([`parse`]), the messages and their bytes
//! ([`message`]), and the address layout both ways ([`layout`]).

pub mod bridge;
pub mod layout;
pub mod message;
pub mod parse;

pub use bridge::{MidiBridge, MidiConfig, MidiStats, run};
pub use layout::{Decoder, Inbound, encode};
pub use message::MidiMsg;
pub use parse::{Parser, Skipped};
