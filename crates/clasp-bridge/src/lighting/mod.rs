//! Lighting: DMX universes under a namespace ([`universe`]), merging sources on input
//! ([`merge`]) and pacing output ([`pace`]), shared by the Art-Net ([`artnet_bridge`]), sACN
//! ([`sacn_bridge`]) and DMX-over-USB ([`dmx_bridge`]) bridges, with their codecs
//! ([`artnet`], [`sacn`], [`enttec`]).

pub mod artnet;
pub mod artnet_bridge;
pub mod common;
pub mod dmx_bridge;
pub mod enttec;
pub mod merge;
pub mod open_dmx;
pub mod pace;
pub mod sacn;
pub mod sacn_bridge;
pub mod universe;
