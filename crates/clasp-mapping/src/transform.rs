//! Value transforms, applied in a chain. Configured as tables tagged by `type` (snake_case,
//! the reference's tags): `{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0,
//! to_max = 1.0 }`.
//!
//! Numeric steps read an Int, a Float or a Bool (0/1) and give a Float (an Int for `to_int`);
//! any other value passes a numeric step unchanged. A step may drop an update (`deadband`,
//! `rate_limit` never do: they hold or limit; `deadband` drops changes too small to matter).

use std::collections::BTreeMap;

use clasp_proto::Value;
use serde::{Deserialize, Serialize};

use crate::curve::CurveType;
use crate::expr::Expr;

/// One step of a chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    /// Pass the value through.
    Identity,
    /// Linear map of [from_min, from_max] onto [to_min, to_max]; with `clamp`, the result
    /// stays within the target range.
    Scale {
        /// Input range start.
        from_min: f64,
        /// Input range end (not equal to `from_min`).
        from_max: f64,
        /// Output range start.
        to_min: f64,
        /// Output range end.
        to_max: f64,
        /// Keep the result within [to_min, to_max].
        #[serde(default)]
        clamp: bool,
    },
    /// Keep within [min, max] (min ≤ max).
    Clamp {
        /// Lowest value.
        min: f64,
        /// Highest value.
        max: f64,
    },
    /// min + max − x: 1 − x on the default [0, 1].
    Invert {
        /// Range start.
        #[serde(default)]
        min: f64,
        /// Range end.
        #[serde(default = "one")]
        max: f64,
    },
    /// A response curve on [0, 1].
    Curve {
        /// Which curve.
        curve_type: CurveType,
    },
    /// The inverse of a monotonic curve (made by [`Transform::inverse`]; not configurable).
    #[serde(skip)]
    CurveInverse {
        /// The curve inverted.
        curve_type: CurveType,
    },
    /// An expression of `x` (or `value`), e.g. `x * 2 - 1` (see [`crate::expr`]).
    Expression {
        /// The expression.
        expr: String,
    },
    /// round(x · steps) / steps.
    Quantize {
        /// Steps per unit (> 0).
        steps: f64,
    },
    /// |x| < threshold gives 0 (the reference's dead zone around zero).
    DeadZone {
        /// Half-width of the zone (≥ 0).
        threshold: f64,
    },
    /// Drops changes smaller than `threshold` from the last value let through (per address).
    Deadband {
        /// Smallest change let through (≥ 0).
        threshold: f64,
    },
    /// Exponential smoothing: out = last + factor · (x − last); the first value passes.
    Smooth {
        /// 0 < factor ≤ 1 (1: no smoothing).
        factor: f64,
    },
    /// At most `max_delta` of change per update.
    RateLimit {
        /// Largest step (> 0).
        max_delta: f64,
    },
    /// 1.0 when the value is above (below, equal to) `value`, else 0.0.
    Threshold {
        /// The threshold.
        value: f64,
        /// How to compare.
        #[serde(default)]
        mode: ThresholdMode,
    },
    /// Looks the value up (as text: `1`, `0.5`, `true`, `go`) in a table.
    Lookup {
        /// Keys to results.
        table: BTreeMap<String, Literal>,
        /// The result for a key not in the table (`None`: the input unchanged).
        #[serde(default)]
        default: Option<Literal>,
    },
    /// Rounds to `decimals` places (≤ 15).
    Round {
        /// Decimal places.
        #[serde(default)]
        decimals: u32,
    },
    /// |x|.
    Abs,
    /// −x.
    Negate,
    /// x ^ exponent.
    Power {
        /// The exponent (not 0).
        exponent: f64,
    },
    /// Logarithm (natural without `base`); x ≤ 0 passes unchanged.
    Log {
        /// The base (> 0, not 1).
        #[serde(default)]
        base: Option<f64>,
    },
    /// base ^ x (e ^ x without `base`): the inverse of `log` (made by [`Transform::inverse`]).
    #[serde(skip)]
    Exp {
        /// The base.
        base: Option<f64>,
    },
    /// The remainder of x / divisor (divisor ≠ 0).
    Modulo {
        /// The divisor.
        divisor: f64,
    },
    /// Rounds to an Int.
    ToInt,
    /// A Float.
    ToFloat,
    /// Converts to `to_type` (strings are parsed; bool = number ≠ 0).
    MapType {
        /// The type wanted.
        to_type: TypeName,
    },
    /// One 7-bit half of a 14-bit value (0..16383): MIDI's MSB (x >> 7) or LSB (x & 127).
    Split14 {
        /// Which half.
        part: Half,
    },
    /// One byte of a 16-bit value (0..65535): a fixture's coarse (x >> 8) or fine (x & 255)
    /// DMX channel.
    Split16 {
        /// Which byte.
        part: Byte,
    },
}

fn one() -> f64 {
    1.0
}

/// How [`Transform::Threshold`] compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMode {
    /// x > value.
    #[default]
    Above,
    /// x < value.
    Below,
    /// |x − value| < 0.001.
    Equal,
}

/// A type for [`Transform::MapType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeName {
    /// Int.
    Int,
    /// Float.
    Float,
    /// Bool.
    Bool,
    /// String.
    String,
}

/// A half of a 14-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Half {
    /// The high 7 bits.
    Msb,
    /// The low 7 bits.
    Lsb,
}

/// Which byte of a 16-bit value [`Transform::Split16`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Byte {
    /// The high byte.
    Coarse,
    /// The low byte.
    Fine,
}

/// A value written in a config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// true / false.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number.
    Float(f64),
    /// Text.
    String(String),
}

impl Literal {
    /// As a CLASP value.
    pub fn to_value(&self) -> Value {
        match self {
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Float(f) => Value::Float(*f),
            Literal::String(s) => Value::String(s.as_str().into()),
        }
    }
}

/// What a stateful step remembers about one address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepState {
    last: Option<f64>,
}

/// A step ready to run: the transform, with its expression parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    transform: Transform,
    expr: Option<Expr>,
}

/// The key [`Transform::Lookup`] looks a value up by.
fn lookup_key(v: &Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(format!("{}", *f as i64)),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::String(s) => Some(s.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn finite(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(format!("`{name}` must be a finite number"))
    }
}

impl Transform {
    /// Its `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Transform::Identity => "identity",
            Transform::Scale { .. } => "scale",
            Transform::Clamp { .. } => "clamp",
            Transform::Invert { .. } => "invert",
            Transform::Curve { .. } => "curve",
            Transform::CurveInverse { .. } => "curve (inverse)",
            Transform::Expression { .. } => "expression",
            Transform::Quantize { .. } => "quantize",
            Transform::DeadZone { .. } => "dead_zone",
            Transform::Deadband { .. } => "deadband",
            Transform::Smooth { .. } => "smooth",
            Transform::RateLimit { .. } => "rate_limit",
            Transform::Threshold { .. } => "threshold",
            Transform::Lookup { .. } => "lookup",
            Transform::Round { .. } => "round",
            Transform::Abs => "abs",
            Transform::Negate => "negate",
            Transform::Power { .. } => "power",
            Transform::Log { .. } => "log",
            Transform::Exp { .. } => "exp",
            Transform::Modulo { .. } => "modulo",
            Transform::ToInt => "to_int",
            Transform::ToFloat => "to_float",
            Transform::MapType { .. } => "map_type",
            Transform::Split14 { .. } => "split14",
            Transform::Split16 { .. } => "split16",
        }
    }

    /// Checks its parameters and parses its expression.
    pub fn prepare(self) -> Result<Step, String> {
        let mut expr = None;
        match &self {
            Transform::Scale {
                from_min,
                from_max,
                to_min,
                to_max,
                ..
            } => {
                for (n, v) in [
                    ("from_min", from_min),
                    ("from_max", from_max),
                    ("to_min", to_min),
                    ("to_max", to_max),
                ] {
                    finite(n, *v)?;
                }
                if from_min == from_max {
                    return Err(format!(
                        "the input range is empty (from_min = from_max = {from_min})"
                    ));
                }
            }
            Transform::Clamp { min, max } => {
                finite("min", *min)?;
                finite("max", *max)?;
                if min > max {
                    return Err(format!("min ({min}) is above max ({max})"));
                }
            }
            Transform::Invert { min, max } => {
                finite("min", *min)?;
                finite("max", *max)?;
            }
            Transform::Curve { curve_type } | Transform::CurveInverse { curve_type } => {
                curve_type.validate()?;
            }
            Transform::Expression { expr: text } => expr = Some(Expr::parse(text)?),
            Transform::Quantize { steps } => {
                if !(steps.is_finite() && *steps > 0.0) {
                    return Err(format!("steps must be above 0 (got {steps})"));
                }
            }
            Transform::DeadZone { threshold } | Transform::Deadband { threshold } => {
                if !(threshold.is_finite() && *threshold >= 0.0) {
                    return Err(format!("threshold must be 0 or more (got {threshold})"));
                }
            }
            Transform::Smooth { factor } => {
                if !(*factor > 0.0 && *factor <= 1.0) {
                    return Err(format!("factor must be in (0, 1] (got {factor})"));
                }
            }
            Transform::RateLimit { max_delta } => {
                if !(max_delta.is_finite() && *max_delta > 0.0) {
                    return Err(format!("max_delta must be above 0 (got {max_delta})"));
                }
            }
            Transform::Threshold { value, .. } => finite("value", *value)?,
            Transform::Round { decimals } => {
                if *decimals > 15 {
                    return Err(format!("decimals must be 15 or fewer (got {decimals})"));
                }
            }
            Transform::Power { exponent } => {
                if !(exponent.is_finite() && *exponent != 0.0) {
                    return Err(format!(
                        "exponent must be a finite number other than 0 (got {exponent})"
                    ));
                }
            }
            Transform::Log { base } | Transform::Exp { base } => {
                if let Some(b) = base
                    && !(b.is_finite() && *b > 0.0 && *b != 1.0)
                {
                    return Err(format!("base must be above 0 and not 1 (got {b})"));
                }
            }
            Transform::Modulo { divisor } => {
                if !(divisor.is_finite() && *divisor != 0.0) {
                    return Err(format!(
                        "divisor must be a finite number other than 0 (got {divisor})"
                    ));
                }
            }
            Transform::Identity
            | Transform::Lookup { .. }
            | Transform::Abs
            | Transform::Negate
            | Transform::ToInt
            | Transform::ToFloat
            | Transform::MapType { .. }
            | Transform::Split14 { .. }
            | Transform::Split16 { .. } => {}
        }
        Ok(Step {
            transform: self,
            expr,
        })
    }

    /// The step that undoes this one, for the way back (`Err`: it cannot be undone, and why).
    /// Filters and roundings undo as `identity`.
    pub fn inverse(&self) -> Result<Transform, String> {
        Ok(match self {
            Transform::Scale {
                from_min,
                from_max,
                to_min,
                to_max,
                clamp,
            } => {
                if to_min == to_max {
                    return Err(
                        "the output range is empty, so the input cannot be recovered".into(),
                    );
                }
                Transform::Scale {
                    from_min: *to_min,
                    from_max: *to_max,
                    to_min: *from_min,
                    to_max: *from_max,
                    clamp: *clamp,
                }
            }
            Transform::Clamp { min, max } => Transform::Clamp {
                min: *min,
                max: *max,
            },
            Transform::Invert { min, max } => Transform::Invert {
                min: *min,
                max: *max,
            },
            Transform::Curve { curve_type } => {
                if !curve_type.monotonic() {
                    return Err("this curve turns back, so it has no inverse".into());
                }
                Transform::CurveInverse {
                    curve_type: *curve_type,
                }
            }
            Transform::CurveInverse { curve_type } => Transform::Curve {
                curve_type: *curve_type,
            },
            Transform::Expression { .. } => {
                return Err("an expression has no automatic inverse".into());
            }
            Transform::Threshold { .. } => return Err("a threshold loses the value".into()),
            Transform::Abs => return Err("abs loses the sign".into()),
            Transform::Modulo { .. } => return Err("modulo loses the quotient".into()),
            Transform::Lookup { table, .. } => {
                let mut back = BTreeMap::new();
                for (k, v) in table {
                    let key = lookup_key(&v.to_value())
                        .ok_or("a lookup result is not a number, bool or text")?;
                    if back
                        .insert(key.clone(), Literal::String(k.clone()))
                        .is_some()
                    {
                        return Err(format!(
                            "two keys look up to `{key}`, so it cannot be reversed"
                        ));
                    }
                }
                Transform::Lookup {
                    table: back,
                    default: None,
                }
            }
            Transform::Negate => Transform::Negate,
            Transform::Power { exponent } => Transform::Power {
                exponent: 1.0 / exponent,
            },
            Transform::Log { base } => Transform::Exp { base: *base },
            Transform::Exp { base } => Transform::Log { base: *base },
            Transform::Split14 { part: Half::Msb } => Transform::Scale {
                from_min: 0.0,
                from_max: 1.0,
                to_min: 0.0,
                to_max: 128.0,
                clamp: false,
            },
            Transform::Split14 { part: Half::Lsb } => {
                return Err("the low 7 bits lose the high ones".into());
            }
            Transform::Split16 { part: Byte::Coarse } => Transform::Scale {
                from_min: 0.0,
                from_max: 1.0,
                to_min: 0.0,
                to_max: 256.0,
                clamp: false,
            },
            Transform::Split16 { part: Byte::Fine } => {
                return Err("the fine byte loses the coarse one".into());
            }
            Transform::Identity
            | Transform::Quantize { .. }
            | Transform::DeadZone { .. }
            | Transform::Deadband { .. }
            | Transform::Smooth { .. }
            | Transform::RateLimit { .. }
            | Transform::Round { .. }
            | Transform::ToInt
            | Transform::ToFloat
            | Transform::MapType { .. } => Transform::Identity,
        })
    }
}

impl Step {
    /// The transform.
    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// Whether it keeps state per address.
    pub fn stateful(&self) -> bool {
        matches!(
            self.transform,
            Transform::Deadband { .. } | Transform::Smooth { .. } | Transform::RateLimit { .. }
        )
    }

    /// Applies the step; `None` drops the update.
    pub fn apply(&self, v: Value, state: &mut StepState) -> Option<Value> {
        let t = &self.transform;
        // Steps that are not plain numeric maps first.
        match t {
            Transform::Identity => return Some(v),
            Transform::Lookup { table, default } => {
                let hit = lookup_key(&v).and_then(|k| table.get(&k));
                return Some(match (hit, default) {
                    (Some(l), _) => l.to_value(),
                    (None, Some(d)) => d.to_value(),
                    (None, None) => v,
                });
            }
            Transform::MapType { to_type } => return Some(map_type(v, *to_type)),
            Transform::ToInt => {
                return Some(match number(&v) {
                    Some(x) if x.is_finite() => Value::Int(x.round() as i64),
                    _ => v,
                });
            }
            Transform::ToFloat => {
                return Some(match number(&v) {
                    Some(x) => Value::Float(x),
                    None => v,
                });
            }
            _ => {}
        }
        let Some(x) = number(&v) else {
            return Some(v);
        };
        let y = match t {
            Transform::Scale {
                from_min,
                from_max,
                to_min,
                to_max,
                clamp,
            } => {
                let y = to_min + (x - from_min) * (to_max - to_min) / (from_max - from_min);
                if *clamp {
                    y.clamp(to_min.min(*to_max), to_min.max(*to_max))
                } else {
                    y
                }
            }
            Transform::Clamp { min, max } => x.clamp(*min, *max),
            Transform::Invert { min, max } => min + max - x,
            Transform::Curve { curve_type } => curve_type.apply(x),
            Transform::CurveInverse { curve_type } => curve_type.invert(x),
            Transform::Expression { .. } => self.expr.as_ref()?.eval(x)?,
            Transform::Quantize { steps } => (x * steps).round() / steps,
            Transform::DeadZone { threshold } => {
                if x.abs() < *threshold {
                    0.0
                } else {
                    x
                }
            }
            Transform::Deadband { threshold } => {
                if let Some(last) = state.last
                    && (x - last).abs() < *threshold
                {
                    return None;
                }
                state.last = Some(x);
                x
            }
            Transform::Smooth { factor } => {
                let y = match state.last {
                    Some(last) => last + factor * (x - last),
                    None => x,
                };
                state.last = Some(y);
                y
            }
            Transform::RateLimit { max_delta } => {
                let y = match state.last {
                    Some(last) => last + (x - last).clamp(-max_delta, *max_delta),
                    None => x,
                };
                state.last = Some(y);
                y
            }
            Transform::Threshold { value, mode } => {
                let hit = match mode {
                    ThresholdMode::Above => x > *value,
                    ThresholdMode::Below => x < *value,
                    ThresholdMode::Equal => (x - value).abs() < 0.001,
                };
                f64::from(u8::from(hit))
            }
            Transform::Round { decimals } => {
                let m = 10f64.powi(*decimals as i32);
                (x * m).round() / m
            }
            Transform::Abs => x.abs(),
            Transform::Negate => -x,
            Transform::Power { exponent } => x.powf(*exponent),
            Transform::Log { base } => {
                if x <= 0.0 {
                    return Some(v);
                }
                match base {
                    Some(b) => x.log(*b),
                    None => x.ln(),
                }
            }
            Transform::Exp { base } => match base {
                Some(b) => b.powf(x),
                None => x.exp(),
            },
            Transform::Modulo { divisor } => x % divisor,
            Transform::Split14 { part } => {
                let n = x.round().clamp(0.0, 16383.0) as i64;
                return Some(Value::Int(match part {
                    Half::Msb => n >> 7,
                    Half::Lsb => n & 127,
                }));
            }
            Transform::Split16 { part } => {
                let n = x.round().clamp(0.0, 65535.0) as i64;
                return Some(Value::Int(match part {
                    Byte::Coarse => n >> 8,
                    Byte::Fine => n & 255,
                }));
            }
            Transform::Identity
            | Transform::Lookup { .. }
            | Transform::MapType { .. }
            | Transform::ToInt
            | Transform::ToFloat => return Some(v),
        };
        // NaN or infinity never leaves a chain.
        y.is_finite().then_some(Value::Float(y))
    }
}

fn map_type(v: Value, to: TypeName) -> Value {
    let text = match &v {
        Value::String(s) => Some(s.trim().to_owned()),
        _ => None,
    };
    let n = number(&v).or_else(|| text.as_deref().and_then(|t| t.parse::<f64>().ok()));
    match to {
        TypeName::Int => n
            .filter(|x| x.is_finite())
            .map_or(v, |x| Value::Int(x.round() as i64)),
        TypeName::Float => n.map_or(v, Value::Float),
        TypeName::Bool => match (&text, n) {
            (Some(t), _) if t.eq_ignore_ascii_case("true") => Value::Bool(true),
            (Some(t), _) if t.eq_ignore_ascii_case("false") => Value::Bool(false),
            (_, Some(x)) => Value::Bool(x != 0.0),
            _ => v,
        },
        TypeName::String => match v {
            Value::String(_) => v,
            Value::Int(i) => Value::String(i.to_string().into()),
            Value::Float(f) => Value::String(f.to_string().into()),
            Value::Bool(b) => Value::String(b.to_string().into()),
            other => other,
        },
    }
}
