//! The rules file as written: what serde reads from TOML or JSON, before any checking.
//! [`crate::RuleSet`] is the checked form.

use std::fmt;

use clasp_mapping::curve::CurveType;
use clasp_mapping::transform::Transform;
use clasp_proto::Value;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// A whole rules file: optional `[settings]` and the `[[rule]]` tables (`"rule"` or
/// `"rules"` in JSON).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Settings for every rule.
    #[serde(default)]
    pub settings: Settings,
    /// The rules, in the order they are tried.
    #[serde(default, alias = "rules")]
    pub rule: Vec<RuleSpec>,
}

/// The `[settings]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Time between two writes of a ramp (default `20ms`: 50 per second).
    #[serde(default)]
    pub ramp_step: Option<String>,
    /// The offset from UTC schedules are read in, `+01:00`, `-05:30` or `Z` (default UTC).
    /// A fixed offset: no daylight-saving changes.
    #[serde(default)]
    pub utc_offset: Option<String>,
    /// How many rule firings one chain of cause and effect may hold (default 8, 1–64).
    #[serde(default)]
    pub max_chain: Option<u32>,
}

/// One `[[rule]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name: letters, digits, `_`, `-` and `.`.
    pub id: String,
    /// `false` keeps the rule in the file without running it (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// After a firing, further firings for the same trigger address within this time are
    /// suppressed (`500ms`, `2s`; default none).
    #[serde(default)]
    pub cooldown: Option<String>,
    /// What makes the rule fire.
    pub trigger: TriggerSpec,
    /// What must hold when it fires (all of them).
    #[serde(default)]
    pub conditions: Vec<ConditionSpec>,
    /// What it does, in order.
    pub actions: Vec<ActionSpec>,
}

fn yes() -> bool {
    true
}

/// A trigger, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TriggerSpec {
    /// A param matching `pattern` changes value (with `events`, an event there fires too).
    Change {
        /// Address pattern: `*`, `**` (last) and `{name}` captures.
        pattern: String,
        /// Also fire on events published at matching addresses.
        #[serde(default)]
        events: bool,
    },
    /// A numeric value at `address` crosses `above` upwards or `below` downwards.
    Threshold {
        /// The address (or a pattern: each matching address is tracked on its own).
        address: String,
        /// Fire when the value rises above this.
        #[serde(default)]
        above: Option<f64>,
        /// Fire when the value falls below this.
        #[serde(default)]
        below: Option<f64>,
        /// How far back the value must go before the threshold fires again (default 0).
        #[serde(default)]
        hysteresis: f64,
    },
    /// An event is published at an address matching `pattern`.
    Event {
        /// Address pattern.
        pattern: String,
    },
    /// Every `every` (`5s`, `1m`), counted from when the engine starts.
    Interval {
        /// The period.
        every: String,
    },
    /// A cron-like schedule on the wall clock (see [`crate::cron`]).
    Schedule {
        /// Five fields: minute hour day-of-month month day-of-week.
        cron: String,
        /// Offset from UTC for this schedule (default: the settings' `utc_offset`).
        #[serde(default)]
        utc_offset: Option<String>,
    },
}

/// A condition on live state: `address` `op` `value`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// The address read (may use the trigger's `{name}` captures).
    pub address: String,
    /// The comparison.
    pub op: Op,
    /// The value compared with.
    pub value: Literal,
}

/// A comparison of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Equal (numbers compare as numbers: 1 equals 1.0).
    Eq,
    /// Not equal.
    Ne,
    /// Greater than (numbers only).
    Gt,
    /// Greater than or equal (numbers only).
    Gte,
    /// Less than (numbers only).
    Lt,
    /// Less than or equal (numbers only).
    Lte,
}

impl Op {
    /// Its name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
        }
    }
}

/// An action, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionSpec {
    /// SET `address` to `value`.
    Set {
        /// Target address (may use the trigger's `{name}` captures).
        address: String,
        /// The value.
        value: Literal,
    },
    /// PUBLISH an event at `address`.
    Publish {
        /// Target address (may use captures).
        address: String,
        /// The payload (default: none, null).
        #[serde(default)]
        value: Option<Literal>,
    },
    /// SET the trigger's value, through `transform`, at `address`.
    SetFromTrigger {
        /// Target address (may use captures; default: the trigger's own address).
        #[serde(default)]
        address: Option<String>,
        /// clasp-mapping transforms, applied in order.
        #[serde(default)]
        transform: Vec<Transform>,
    },
    /// Move `address` to `to` over `over`, from its current value (or `from`).
    Ramp {
        /// Target address (may use captures).
        address: String,
        /// The final value (a number; an integer makes every step an integer).
        to: Literal,
        /// How long (`2s`).
        over: String,
        /// The start value (default: the address's current value).
        #[serde(default)]
        from: Option<f64>,
        /// The shape (clasp-mapping curves; default `linear`).
        #[serde(default)]
        curve: Option<CurveType>,
        /// Time between two writes (default: the settings' `ramp_step`).
        #[serde(default)]
        step: Option<String>,
    },
    /// Wait, then carry on with the next action.
    Delay {
        /// How long (`500ms`, `5m`).
        #[serde(rename = "for")]
        duration: String,
    },
    /// SETs and PUBLISHes applied together, atomically.
    Bundle {
        /// `set`, `publish` and `set_from_trigger` actions.
        actions: Vec<ActionSpec>,
    },
}

impl ActionSpec {
    /// Its `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionSpec::Set { .. } => "set",
            ActionSpec::Publish { .. } => "publish",
            ActionSpec::SetFromTrigger { .. } => "set_from_trigger",
            ActionSpec::Ramp { .. } => "ramp",
            ActionSpec::Delay { .. } => "delay",
            ActionSpec::Bundle { .. } => "bundle",
        }
    }
}

/// A value written in the file: a bool, an integer, a float, a string, or an array of those.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    String(String),
    /// An array of bools, numbers and strings (not of arrays).
    Array(Vec<Literal>),
}

impl Literal {
    /// As a CLASP value.
    pub fn to_value(&self) -> Value {
        match self {
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Float(f) => Value::Float(*f),
            Literal::String(s) => Value::String(s.as_str().into()),
            Literal::Array(a) => Value::Array(a.iter().map(Literal::to_value).collect()),
        }
    }

    /// The number it is, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Literal::Int(i) => Some(*i as f64),
            Literal::Float(f) => Some(*f),
            _ => None,
        }
    }
}

struct LiteralVisitor {
    /// Inside an array: no nested arrays.
    nested: bool,
}

impl<'de> Visitor<'de> for LiteralVisitor {
    type Value = Literal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nested {
            f.write_str("a bool, number or string (arrays do not nest)")
        } else {
            f.write_str("a bool, number, string or array")
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Literal, E> {
        Ok(Literal::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
        Ok(Literal::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
        Ok(i64::try_from(v).map_or(Literal::Float(v as f64), Literal::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Literal, E> {
        Ok(Literal::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
        Ok(Literal::String(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Literal, A::Error> {
        if self.nested {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Element>()? {
            out.push(v.0);
        }
        Ok(Literal::Array(out))
    }
}

/// An array element: a literal that is not an array.
struct Element(Literal);

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Element, D::Error> {
        d.deserialize_any(LiteralVisitor { nested: true })
            .map(Element)
    }
}

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Literal, D::Error> {
        d.deserialize_any(LiteralVisitor { nested: false })
    }
}
