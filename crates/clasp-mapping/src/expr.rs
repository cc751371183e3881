//! Expressions of one input (`x`, also `value`): `x * 2 - 1`, `sin(x * PI)`, `ln(x + 1)`.
//! Parsed once, with exmex (floats, `+ - * / ^`, `sin cos tan exp ln log10 log2 sqrt abs`
//! and more, constants `PI`, `E`, `TAU`).

use exmex::prelude::*;

/// Longest expression accepted (a config value, but parsers get bounded input everywhere).
pub const MAX_EXPR_LEN: usize = 1024;

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    flat: FlatEx<f64>,
    /// For each variable exmex asks for (in its order): all are the input.
    vars: usize,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        self.text == other.text
    }
}

impl Expr {
    /// Parses `text`; the only variables allowed are `x` and `value`.
    pub fn parse(text: &str) -> Result<Expr, String> {
        if text.len() > MAX_EXPR_LEN {
            return Err(format!(
                "the expression is {} bytes long; the limit is {MAX_EXPR_LEN}",
                text.len()
            ));
        }
        let flat = exmex::parse::<f64>(text).map_err(|e| e.to_string())?;
        for name in flat.var_names() {
            if name != "x" && name != "value" {
                return Err(format!(
                    "unknown variable `{name}` (the input is `x`, or `value`)"
                ));
            }
        }
        let vars = flat.var_names().len();
        Ok(Expr {
            text: text.to_owned(),
            flat,
            vars,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its value at `x` (`None` when it is not a finite number there).
    pub fn eval(&self, x: f64) -> Option<f64> {
        let args = [x; 2];
        let v = self.flat.eval(&args[..self.vars]).ok()?;
        v.is_finite().then_some(v)
    }
}
