//! Lighting: DMX universes under a namespace ([`universe`]), merging sources on input
//! ([`merge`]) and pacing output ([`pace`]), shared by the Art-Net, sACN and DMX-USB bridges.

pub mod artnet;
pub mod artnet_bridge;
pub mod common;
pub mod merge;
pub mod pace;
pub mod sacn;
pub mod sacn_bridge;
pub mod universe;
