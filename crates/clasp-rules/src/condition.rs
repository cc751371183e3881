//! Conditions on live state: `address op value`, read from the latest value the engine has
//! seen at the address. An address never seen makes the condition false.

use std::collections::HashMap;

use clasp_mapping::pattern::{Captures, Template};
use clasp_proto::Value;

use crate::address;
use crate::locate::Seg;
use crate::ruleset::Problem;
use crate::spec::{ConditionSpec, Literal, Op};

/// A condition ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) address: Template,
    op: Op,
    value: Value,
}

/// Whether two values are equal, numbers by value (1 = 1.0) and arrays element by element.
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.as_f64() == b.as_f64()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        _ => a == b,
    }
}

impl Condition {
    /// Checks `spec` (its address may use `captures`).
    pub(crate) fn compile(spec: &ConditionSpec, captures: &[String]) -> Result<Condition, Problem> {
        let address = address::template(&spec.address, captures, vec![Seg::Key("address")])?;
        let ordered = !matches!(spec.op, Op::Eq | Op::Ne);
        if ordered && spec.value.as_f64().is_none_or(f64::is_nan) {
            return Err(Problem::new(
                vec![Seg::Key("value")],
                format!(
                    "`{}` compares numbers; the value must be a number",
                    spec.op.name()
                ),
            ));
        }
        if let Literal::Float(f) = spec.value
            && !f.is_finite()
        {
            return Err(Problem::new(
                vec![Seg::Key("value")],
                "the value must be a finite number".into(),
            ));
        }
        Ok(Condition {
            address,
            op: spec.op,
            value: spec.value.to_value(),
        })
    }

    /// Whether it holds now. `Err` says why it cannot be evaluated (a value that is not a
    /// number for `gt`, an address the captures cannot fill); the rule does not fire then.
    pub(crate) fn holds(
        &self,
        caps: &Captures,
        values: &HashMap<String, Value>,
    ) -> Result<bool, String> {
        let Some(addr) = self.address.fill(caps) else {
            return Err(format!(
                "condition address `{}` cannot be filled from the trigger",
                self.address.as_str()
            ));
        };
        let Some(current) = values.get(&addr) else {
            return Ok(false);
        };
        let ordering = match self.op {
            Op::Eq => return Ok(same(current, &self.value)),
            Op::Ne => return Ok(!same(current, &self.value)),
            _ => {
                let (Some(x), Some(y)) = (current.as_f64(), self.value.as_f64()) else {
                    return Err(format!(
                        "condition `{addr} {} {}`: `{addr}` holds a {}, not a number",
                        self.op.name(),
                        show(&self.value),
                        current.type_name()
                    ));
                };
                x.partial_cmp(&y)
            }
        };
        let Some(o) = ordering else {
            return Ok(false);
        };
        Ok(match self.op {
            Op::Gt => o.is_gt(),
            Op::Gte => o.is_ge(),
            Op::Lt => o.is_lt(),
            _ => o.is_le(),
        })
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(address: &str, op: Op, value: Literal) -> Condition {
        let spec = ConditionSpec {
            address: address.into(),
            op,
            value,
        };
        Condition::compile(&spec, &["r".to_owned()]).unwrap()
    }

    #[test]
    fn comparisons() {
        let mut values = HashMap::new();
        values.insert("/mode".to_owned(), Value::from("home"));
        values.insert("/lux".to_owned(), Value::Int(40));
        values.insert("/room/k/temp".to_owned(), Value::Float(21.5));
        let caps = Captures::from([("r".to_owned(), "k".to_owned())]);
        let holds = |c: Condition| c.holds(&caps, &values);
        assert_eq!(
            holds(cond("/mode", Op::Eq, Literal::String("home".into()))),
            Ok(true)
        );
        assert_eq!(
            holds(cond("/mode", Op::Ne, Literal::String("home".into()))),
            Ok(false)
        );
        assert_eq!(holds(cond("/lux", Op::Eq, Literal::Float(40.0))), Ok(true));
        assert_eq!(holds(cond("/lux", Op::Lt, Literal::Int(50))), Ok(true));
        assert_eq!(holds(cond("/lux", Op::Gte, Literal::Int(40))), Ok(true));
        assert_eq!(holds(cond("/lux", Op::Gt, Literal::Int(40))), Ok(false));
        assert_eq!(
            holds(cond("/room/{r}/temp", Op::Lte, Literal::Float(21.5))),
            Ok(true)
        );
        // Never seen: false.
        assert_eq!(holds(cond("/nobody", Op::Eq, Literal::Int(0))), Ok(false));
        assert_eq!(holds(cond("/nobody", Op::Ne, Literal::Int(0))), Ok(false));
        // A string compared as a number: an error, and the rule does not fire.
        let e = holds(cond("/mode", Op::Gt, Literal::Int(1))).unwrap_err();
        assert!(e.contains("`/mode` holds a string, not a number"), "{e}");
    }

    #[test]
    fn ordered_comparisons_need_numbers() {
        let spec = ConditionSpec {
            address: "/a".into(),
            op: Op::Gt,
            value: Literal::String("x".into()),
        };
        let e = Condition::compile(&spec, &[]).unwrap_err();
        assert!(e.message.contains("`gt` compares numbers"));
    }
}
