//! The mapping engine: rules that carry values from one address (or pattern) to another,
//! transformed on the way, one way or both ways.
//!
//! ```toml
//! [[mapping]]
//! from = "/midi/{dev}/ch/1/cc/{n}"
//! to = "/mixer/{dev}/{n}/volume"
//! transform = [{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 }]
//! both_ways = true
//! ```
//!
//! * **Patterns** ([`pattern`]): `{name}` captures one segment of the source address and the
//!   target template uses it; `*` and `**` match without capturing (one way only).
//! * **Transforms** ([`transform`]): scale, clamp, invert, curve, expression, quantize,
//!   deadband, smooth, threshold, lookup, type conversions and more, in a chain, with the
//!   reference's serde tags (`type = "snake_case"`). Bad parameters are refused when the
//!   mapping is loaded, never at the first value.
//! * **Both ways, with feedback**: when the target changes from elsewhere the source gets the
//!   new value through the inverse chain (motorised faders, LED rings, apps' UIs). A chain that
//!   cannot be inverted needs an explicit `inverse` chain, or loading fails and says which step.
//! * **No loops** ([`Engine`]): the engine never acts on the echo of its own writes, and never
//!   writes a value an address already holds.
//!
//! Sans-IO: [`Engine::on_update`] takes what the router delivered and returns the writes to
//! make; whoever hosts it (a bridge, the router) does the I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod curve;
pub mod echo;
mod engine;
pub mod expr;
pub mod pattern;
mod spec;
pub mod transform;

pub use engine::{Engine, Write, WriteKind, describe};
pub use spec::{MappingSpec, Rule};

/// Why a mapping cannot be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// A source pattern or target template is malformed.
    #[error("address pattern `{pattern}`: {why}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        why: String,
    },
    /// A transform's parameters are unusable.
    #[error("transform {index} (`{kind}`): {why}")]
    Transform {
        /// Its position in the chain, from 1.
        index: usize,
        /// Its `type`.
        kind: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The rule as a whole does not hold together.
    #[error("{0}")]
    Rule(String),
}
