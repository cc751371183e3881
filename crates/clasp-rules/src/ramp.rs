//! Ramps in progress: a value moved from where it was to a target over a time, one write per
//! step, the last exactly the target.

use std::time::Duration;

use clasp_mapping::curve::CurveType;
use clasp_proto::Value;

/// A ramp running on one address.
#[derive(Debug, Clone)]
pub(crate) struct Ramp {
    /// The rule that started it (index in the engine).
    pub(crate) rule: usize,
    /// The chain of firings it belongs to.
    pub(crate) chain: Vec<usize>,
    from: f64,
    to: Value,
    to_f: f64,
    start: Duration,
    over: Duration,
    step: Duration,
    curve: CurveType,
    /// Steps are whole numbers (the target is an Int).
    int: bool,
    next: Duration,
    last: Option<Value>,
}

/// The value of a ramp at some time, and whether it is the last.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepOut {
    pub(crate) value: Option<Value>,
    pub(crate) done: bool,
}

impl Ramp {
    /// A ramp from `from` to `to` starting at `start`; `over` is more than zero.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        rule: usize,
        chain: Vec<usize>,
        from: f64,
        to: Value,
        to_f: f64,
        start: Duration,
        over: Duration,
        step: Duration,
        curve: CurveType,
    ) -> Ramp {
        let int = matches!(to, Value::Int(_));
        Ramp {
            rule,
            chain,
            from,
            to,
            to_f,
            start,
            over,
            step,
            curve,
            int,
            next: start.saturating_add(step.min(over)),
            last: None,
        }
    }

    /// When its next write is due.
    pub(crate) fn due(&self) -> Duration {
        self.next
    }

    fn end(&self) -> Duration {
        self.start.saturating_add(self.over)
    }

    /// The value at `t` (not after the end).
    fn at(&self, t: Duration) -> Value {
        let p = t.saturating_sub(self.start).as_secs_f64() / self.over.as_secs_f64();
        let y = self.from + (self.to_f - self.from) * self.curve.apply(p);
        if self.int {
            Value::Int(y.round() as i64)
        } else {
            Value::Float(y)
        }
    }

    /// Moves to `now`: the value to write then (none if it has not changed since the last
    /// write, when steps are whole numbers), and whether the ramp is over. Late polls skip
    /// the steps missed: the value is always the one for `now`.
    pub(crate) fn advance(&mut self, now: Duration) -> StepOut {
        if now >= self.end() {
            return StepOut {
                value: Some(self.to.clone()),
                done: true,
            };
        }
        let v = self.at(now);
        let k = now.saturating_sub(self.start).as_nanos() / self.step.as_nanos().max(1);
        let k = u32::try_from(k + 1).unwrap_or(u32::MAX);
        self.next = self
            .start
            .checked_add(self.step.saturating_mul(k))
            .map_or(self.end(), |n| n.min(self.end()));
        if self.last.as_ref() == Some(&v) {
            return StepOut {
                value: None,
                done: false,
            };
        }
        self.last = Some(v.clone());
        StepOut {
            value: Some(v),
            done: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn linear_steps_end_on_the_target() {
        let mut r = Ramp::new(
            0,
            vec![],
            0.0,
            Value::Float(1.0),
            1.0,
            ms(1000),
            ms(100),
            ms(20),
            CurveType::Linear,
        );
        assert_eq!(r.due(), ms(1020));
        let mut seen = Vec::new();
        let mut t = r.due();
        loop {
            let s = r.advance(t);
            seen.push(s.value.clone().unwrap());
            if s.done {
                break;
            }
            t = r.due();
        }
        let xs: Vec<f64> = seen.iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(xs.len(), 5);
        for (x, want) in xs.iter().zip([0.2, 0.4, 0.6, 0.8, 1.0]) {
            assert!((x - want).abs() < 1e-9, "{xs:?}");
        }
        assert_eq!(seen.last(), Some(&Value::Float(1.0)));
    }

    #[test]
    fn late_polls_skip_missed_steps_and_integers_do_not_repeat() {
        let mut r = Ramp::new(
            0,
            vec![],
            0.0,
            Value::Int(2),
            2.0,
            ms(0),
            ms(1000),
            ms(20),
            CurveType::Linear,
        );
        let s = r.advance(ms(510));
        assert_eq!(s.value, Some(Value::Int(1)));
        assert_eq!(r.due(), ms(520));
        assert_eq!(r.advance(ms(520)).value, None);
        assert_eq!(
            r.advance(ms(5000)),
            StepOut {
                value: Some(Value::Int(2)),
                done: true
            }
        );
    }
}
