//! A rules engine for server-side automation on a CLASP router: "when `/room/motion` goes
//! above 0.5, fade `/lights/hall/level` to 1 over 2 s".
//!
//! ```toml
//! [settings]
//! ramp_step = "20ms"      # ramps write 50 times a second (the default)
//! utc_offset = "+01:00"   # schedules read the wall clock at this fixed offset (default UTC)
//!
//! [[rule]]
//! id = "hall-lights-on-motion"
//! cooldown = "2s"
//! trigger = { type = "threshold", address = "/room/motion", above = 0.5, hysteresis = 0.1 }
//! conditions = [{ address = "/house/mode", op = "eq", value = "home" }]
//! actions = [
//!   { type = "ramp", address = "/lights/hall/level", to = 1.0, over = "2s", curve = "ease_in_out" },
//!   { type = "delay", for = "5m" },
//!   { type = "ramp", address = "/lights/hall/level", to = 0.0, over = "10s" },
//! ]
//! ```
//!
//! The same file can be JSON (`{"rule": [{"id": ..., "trigger": {...}, "actions": [...]}]}`);
//! [`Format::from_path`] picks the format by extension. `docs/rules.md` describes every
//! field; in short:
//!
//! * **Triggers** (`type`): `change` (a param matching `pattern` changes value; `events =
//!   true` adds events), `threshold` (`address`, `above` and/or `below`, `hysteresis`),
//!   `event` (`pattern`), `interval` (`every`), `schedule` (`cron`, five fields, see
//!   [`cron`]). Patterns use `*`, `**` (last) and `{name}` captures.
//! * **Conditions**: `address` `op` (`eq ne gt gte lt lte`) `value`, on the latest value the
//!   engine has seen; an address never seen makes a condition false.
//! * **Actions** (`type`): `set`, `publish`, `set_from_trigger` (the trigger's value through a
//!   chain of clasp-mapping transforms), `ramp`, `delay` (the following actions run after
//!   it), `bundle` (sets and publishes applied atomically). Addresses may use the trigger's
//!   `{name}` captures.
//! * **Cooldown**: a rule that fired for an address does not fire again for it within its
//!   cooldown (counted in [`RuleStats::suppressed_cooldown`]).
//!
//! # Hosting it
//!
//! Sans-IO, with an injected clock: every call takes `now`, a monotonic [`Duration`](std::time::Duration) from any
//! fixed start, and [`Engine::poll`] also the wall clock (µs since the Unix epoch) for
//! schedules.
//!
//! 1. [`RulesFile::parse`] the text (errors carry line and column), [`Engine::new`].
//! 2. Subscribe to [`Engine::subscriptions`]; give the params found to
//!    [`Engine::on_update`] with [`Origin::Snapshot`] (recorded, fire nothing).
//! 3. Give every update to [`Engine::on_update`] with its [`Origin`].
//! 4. Call [`Engine::poll`] when [`Engine::next_deadline`] says (at once after an update)
//!    and make the [`Output`]s it returns, in order: a [`Write::Bundle`] as one CLASP
//!    BUNDLE. Through the router's in-process door, attach the output's [`WriteId`] to the
//!    write and report its echo (`own`) as [`Origin::Own`].
//! 5. On a new file, [`Engine::replace`]; for `/metrics`, [`Engine::stats`].
//!
//! # Loops
//!
//! The engine acts on its own writes at once, when it makes them (a PUBLISH never comes
//! back to its sender, and a SET's echo may come late or not at all), and ignores their
//! echoes. Every write carries the chain of rule firings that led to it, from the first
//! cause (an update from someone else, or a timer), through delays and ramps. The guarantees:
//!
//! * within one chain a rule fires at most once: a write that would trigger a rule already
//!   in its chain is not acted on by that rule;
//! * a chain holds at most `max_chain` firings (setting, default 8);
//! * one cause leads to at most [`MAX_CASCADE`] firings;
//!
//! and every firing refused so is counted in [`RuleStats::suppressed_loop`]. So "on `/a` set
//! `/b` = a + 1" with "on `/b` set `/a` = b + 1" makes two writes per outside change of `/a`
//! and stops. These hold as long as echoes are recognised ([`Origin::Own`] is exact;
//! [`Origin::Unknown`] matches by address and value for 10 s); an echo taken for someone
//! else's write starts a new chain, though an unchanged value still triggers no `change`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod action;
mod address;
mod condition;
pub mod cron;
pub mod duration;
mod echo;
mod engine;
mod io;
mod locate;
mod parse;
mod ramp;
mod reload;
mod ruleset;
pub mod spec;
mod stats;
mod timers;
mod trigger;

use std::fmt;

pub use echo::ECHO_TTL;
pub use engine::{Engine, MAX_CASCADE};
pub use io::{BundleItem, Origin, Output, UpdateKind, Write, WriteId};
pub use locate::Location;
pub use parse::{Format, MAX_FILE};
pub use ruleset::{DEFAULT_MAX_CHAIN, DEFAULT_RAMP_STEP, MAX_RULES, RuleSet};
pub use spec::RulesFile;
pub use stats::{RuleStats, Stats};

/// Why a rules file cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The text is not TOML or JSON, or not shaped like a rules file: a missing field, a
    /// value of the wrong type, an unknown field or `type`.
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// A value is unusable: a bad pattern, duration, transform or schedule, a capture the
    /// trigger does not make, two rules with one id.
    #[error("{}", Invalid(.at, .rule, .field, .message))]
    Invalid {
        /// Where, when the text is known ([`RulesFile::parse`]).
        at: Option<Location>,
        /// The id of the rule at fault (none for `[settings]`).
        rule: Option<String>,
        /// The field at fault within the rule (`trigger.pattern`, `actions[1].over`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl RulesError {
    /// Where the problem is, if known.
    pub fn location(&self) -> Option<Location> {
        match self {
            RulesError::Syntax { at, .. } => Some(*at),
            RulesError::Invalid { at, .. } => *at,
        }
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        match self {
            RulesError::Syntax { message, .. } | RulesError::Invalid { message, .. } => message,
        }
    }
}

/// Display of [`RulesError::Invalid`]: `line 4, column 11: rule `x`: trigger.pattern: …`.
struct Invalid<'a>(
    &'a Option<Location>,
    &'a Option<String>,
    &'a String,
    &'a String,
);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = self.0 {
            write!(f, "{at}: ")?;
        }
        if let Some(rule) = self.1 {
            write!(f, "rule `{rule}`: ")?;
        }
        if !self.2.is_empty() {
            write!(f, "{}: ", self.2)?;
        }
        f.write_str(self.3)
    }
}
