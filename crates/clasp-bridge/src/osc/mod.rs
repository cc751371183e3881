//! OSC: apps and devices speaking OSC over UDP (TouchOSC, Resolume, QLab, TouchDesigner,
//! SuperCollider…) joined to the router under `/osc`, both ways (see [`bridge`]).

pub mod bridge;
pub mod query;

pub use bridge::{OscBridge, OscBridgeConfig, run};
