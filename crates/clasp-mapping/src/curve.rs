//! Response curves on [0, 1] (the easings.net set and a CSS-style cubic Bézier), with the
//! inverse of the monotonic ones for feedback.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// A curve from [0, 1] to (about) [0, 1]; the input is clamped to [0, 1] first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurveType {
    /// y = x.
    Linear,
    /// Quadratic in (the reference's name; same as `quad_in`).
    EaseIn,
    /// Quadratic out.
    EaseOut,
    /// Quadratic in-out.
    EaseInOut,
    /// Quadratic in.
    QuadIn,
    /// Quadratic out.
    QuadOut,
    /// Quadratic in-out.
    QuadInOut,
    /// Cubic in.
    CubicIn,
    /// Cubic out.
    CubicOut,
    /// Cubic in-out.
    CubicInOut,
    /// Exponential in.
    ExpoIn,
    /// Exponential out.
    ExpoOut,
    /// Exponential in-out.
    ExpoInOut,
    /// Sine in.
    SineIn,
    /// Sine out.
    SineOut,
    /// Sine in-out.
    SineInOut,
    /// Circular in.
    CircIn,
    /// Circular out.
    CircOut,
    /// Circular in-out.
    CircInOut,
    /// Elastic in (overshoots: no inverse).
    ElasticIn,
    /// Elastic out (overshoots: no inverse).
    ElasticOut,
    /// Bounce out (not monotonic: no inverse).
    BounceOut,
    /// Back in (undershoots: no inverse).
    BackIn,
    /// Back out (overshoots: no inverse).
    BackOut,
    /// Cubic Bézier from (0,0) to (1,1) through control points (x1, y1) and (x2, y2), as CSS's
    /// `cubic-bezier()`; x1 and x2 must lie in [0, 1].
    Bezier {
        /// First control point, x.
        x1: f64,
        /// First control point, y.
        y1: f64,
        /// Second control point, x.
        x2: f64,
        /// Second control point, y.
        y2: f64,
    },
}

impl CurveType {
    /// The curve at `x` (clamped to [0, 1]).
    pub fn apply(self, x: f64) -> f64 {
        let x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
        match self {
            CurveType::Linear => x,
            CurveType::EaseIn | CurveType::QuadIn => x * x,
            CurveType::EaseOut | CurveType::QuadOut => 1.0 - (1.0 - x) * (1.0 - x),
            CurveType::EaseInOut | CurveType::QuadInOut => {
                if x < 0.5 {
                    2.0 * x * x
                } else {
                    1.0 - (-2.0 * x + 2.0).powi(2) / 2.0
                }
            }
            CurveType::CubicIn => x.powi(3),
            CurveType::CubicOut => 1.0 - (1.0 - x).powi(3),
            CurveType::CubicInOut => {
                if x < 0.5 {
                    4.0 * x.powi(3)
                } else {
                    1.0 - (-2.0 * x + 2.0).powi(3) / 2.0
                }
            }
            CurveType::ExpoIn => {
                if x == 0.0 {
                    0.0
                } else {
                    2f64.powf(10.0 * x - 10.0)
                }
            }
            CurveType::ExpoOut => {
                if x == 1.0 {
                    1.0
                } else {
                    1.0 - 2f64.powf(-10.0 * x)
                }
            }
            CurveType::ExpoInOut => {
                if x == 0.0 || x == 1.0 {
                    x
                } else if x < 0.5 {
                    2f64.powf(20.0 * x - 10.0) / 2.0
                } else {
                    (2.0 - 2f64.powf(-20.0 * x + 10.0)) / 2.0
                }
            }
            CurveType::SineIn => 1.0 - (x * PI / 2.0).cos(),
            CurveType::SineOut => (x * PI / 2.0).sin(),
            CurveType::SineInOut => -((PI * x).cos() - 1.0) / 2.0,
            CurveType::CircIn => 1.0 - (1.0 - x * x).sqrt(),
            CurveType::CircOut => (1.0 - (x - 1.0).powi(2)).sqrt(),
            CurveType::CircInOut => {
                if x < 0.5 {
                    (1.0 - (1.0 - (2.0 * x).powi(2)).sqrt()) / 2.0
                } else {
                    ((1.0 - (-2.0 * x + 2.0).powi(2)).sqrt() + 1.0) / 2.0
                }
            }
            CurveType::ElasticIn => {
                if x == 0.0 || x == 1.0 {
                    x
                } else {
                    let c4 = 2.0 * PI / 3.0;
                    -(2f64.powf(10.0 * x - 10.0)) * ((x * 10.0 - 10.75) * c4).sin()
                }
            }
            CurveType::ElasticOut => {
                if x == 0.0 || x == 1.0 {
                    x
                } else {
                    let c4 = 2.0 * PI / 3.0;
                    2f64.powf(-10.0 * x) * ((x * 10.0 - 0.75) * c4).sin() + 1.0
                }
            }
            CurveType::BounceOut => bounce_out(x),
            CurveType::BackIn => {
                let (c1, c3) = (1.70158, 2.70158);
                c3 * x.powi(3) - c1 * x * x
            }
            CurveType::BackOut => {
                let (c1, c3) = (1.70158, 2.70158);
                1.0 + c3 * (x - 1.0).powi(3) + c1 * (x - 1.0).powi(2)
            }
            CurveType::Bezier { x1, y1, x2, y2 } => bezier(x1, y1, x2, y2, x),
        }
    }

    /// Whether it rises over [0, 1] without turning back (so it has an inverse).
    pub fn monotonic(self) -> bool {
        match self {
            CurveType::ElasticIn
            | CurveType::ElasticOut
            | CurveType::BounceOut
            | CurveType::BackIn
            | CurveType::BackOut => false,
            CurveType::Bezier { y1, y2, .. } => {
                (0.0..=1.0).contains(&y1) && (0.0..=1.0).contains(&y2)
            }
            _ => true,
        }
    }

    /// Checks its parameters.
    pub fn validate(self) -> Result<(), String> {
        if let CurveType::Bezier { x1, y1, x2, y2 } = self {
            if ![x1, y1, x2, y2].iter().all(|v| v.is_finite()) {
                return Err("bezier control points must be finite".into());
            }
            if !(0.0..=1.0).contains(&x1) || !(0.0..=1.0).contains(&x2) {
                return Err(format!(
                    "bezier x1 and x2 must lie in [0, 1] (got {x1} and {x2})"
                ));
            }
        }
        Ok(())
    }

    /// The x in [0, 1] whose curve value is `y` (for a monotonic curve; found by bisection).
    pub fn invert(self, y: f64) -> f64 {
        if y.is_nan() {
            return 0.0;
        }
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        if y <= self.apply(lo) {
            return lo;
        }
        if y >= self.apply(hi) {
            return hi;
        }
        for _ in 0..60 {
            let mid = (lo + hi) / 2.0;
            if self.apply(mid) < y {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo + hi) / 2.0
    }
}

fn bounce_out(x: f64) -> f64 {
    let (n1, d1) = (7.5625, 2.75);
    if x < 1.0 / d1 {
        n1 * x * x
    } else if x < 2.0 / d1 {
        let x = x - 1.5 / d1;
        n1 * x * x + 0.75
    } else if x < 2.5 / d1 {
        let x = x - 2.25 / d1;
        n1 * x * x + 0.9375
    } else {
        let x = x - 2.625 / d1;
        n1 * x * x + 0.984375
    }
}

/// CSS cubic-bezier: solve x(t) = x for t (Newton, then bisection if Newton stalls), return y(t).
fn bezier(x1: f64, y1: f64, x2: f64, y2: f64, x: f64) -> f64 {
    let coord = |a: f64, b: f64, t: f64| {
        let u = 1.0 - t;
        3.0 * u * u * t * a + 3.0 * u * t * t * b + t * t * t
    };
    let slope = |a: f64, b: f64, t: f64| {
        let u = 1.0 - t;
        3.0 * u * u * a + 6.0 * u * t * (b - a) + 3.0 * t * t * (1.0 - b)
    };
    let mut t = x;
    for _ in 0..8 {
        let err = coord(x1, x2, t) - x;
        if err.abs() < 1e-9 {
            return coord(y1, y2, t);
        }
        let d = slope(x1, x2, t);
        if d.abs() < 1e-9 {
            break;
        }
        t = (t - err / d).clamp(0.0, 1.0);
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    t = x;
    for _ in 0..60 {
        if coord(x1, x2, t) < x {
            lo = t;
        } else {
            hi = t;
        }
        t = (lo + hi) / 2.0;
    }
    coord(y1, y2, t)
}
